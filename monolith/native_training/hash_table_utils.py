"""Helpers on embedding hash table configs."""

from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2


def infer_dim_size(
    config: embedding_hash_table_pb2.EmbeddingHashTableConfig) -> int:
  """Returns the embedding dim of a table: the sum of its segments' dims.

  Args:
    config: the table config.

  Returns:
    The sum of `config.entry_config.segments[i].dim_size`; 0 without
    segments.
  """
  return sum(segment.dim_size for segment in config.entry_config.segments)
