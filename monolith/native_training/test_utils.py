"""Helpers shared by hash table tests."""

from monolith.native_training import entry
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2


def generate_test_hash_table_config(
    dim: int = 2,
    use_float16: bool = False,
    learning_rate: float = 1.0) -> entry.HashTableConfigInstance:
  """A valid one-segment cuckoo table config for tests.

  The segment has `dim` floats, zeros initializer, SGD optimizer (with float16
  stochastic rounding when `use_float16`) and an fp32 serving compressor; its
  learning rate is the constant `learning_rate`.
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
