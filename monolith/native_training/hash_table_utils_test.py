"""Tests for hash_table_utils."""

from monolith.native_training import entry
from monolith.native_training import hash_table_utils
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2


def _segment(dim):
  return entry.CombineAsSegment(dim, entry.ZerosInitializer(),
                                entry.SgdOptimizer(), entry.Fp32Compressor())


def test_infer_dim_size_sums_segments():
  config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  config.entry_config.segments.extend([_segment(1), _segment(8), _segment(3)])
  assert hash_table_utils.infer_dim_size(config) == 12


def test_infer_dim_size_of_single_segment():
  config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  config.entry_config.segments.append(_segment(16))
  assert hash_table_utils.infer_dim_size(config) == 16


def test_infer_dim_size_without_segments_is_zero():
  assert hash_table_utils.infer_dim_size(
      embedding_hash_table_pb2.EmbeddingHashTableConfig()) == 0
