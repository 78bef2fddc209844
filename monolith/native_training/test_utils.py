"""Helpers shared by hash table tests."""

from monolith.native_training import entry
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2


def generate_test_hash_table_config(
    dim: int = 2,
    use_float16: bool = False,
    learning_rate: float = 1.0) -> entry.HashTableConfigInstance:
  """A valid one-segment cuckoo table config for tests.

  Args:
    dim: the segment's dim.
    use_float16: whether the SGD optimizer rounds stochastically to float16.
    learning_rate: the segment's constant learning rate.

  Returns:
    A config whose segment has `dim` floats, zeros initializer, SGD optimizer
    and an fp32 serving compressor, with learning rate `learning_rate`.
  """
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  table_config.cuckoo.SetInParent()
  segment = table_config.entry_config.segments.add()
  segment.dim_size = dim
  segment.opt_config.sgd.SetInParent()
  segment.opt_config.stochastic_rounding_float16 = use_float16
  segment.init_config.zeros.SetInParent()
  segment.comp_config.fp32.SetInParent()
  return entry.HashTableConfigInstance(table_config, [learning_rate])
