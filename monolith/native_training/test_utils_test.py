"""Tests for test_utils."""

from monolith.native_training import hash_table_utils
from monolith.native_training import test_utils


def test_generate_test_hash_table_config():
  config = test_utils.generate_test_hash_table_config(3, learning_rate=0.5)
  table_config = config.table_config
  assert table_config.WhichOneof("type") == "cuckoo"
  assert hash_table_utils.infer_dim_size(table_config) == 3
  (segment,) = table_config.entry_config.segments
  assert segment.init_config.WhichOneof("type") == "zeros"
  assert segment.opt_config.WhichOneof("type") == "sgd"
  assert not segment.opt_config.stochastic_rounding_float16
  assert segment.comp_config.WhichOneof("type") == "fp32"
  assert config.learning_rate_fns == [0.5]


def test_defaults_and_float16():
  config = test_utils.generate_test_hash_table_config(use_float16=True)
  (segment,) = config.table_config.entry_config.segments
  assert segment.dim_size == 2
  assert segment.opt_config.stochastic_rounding_float16
  assert config.learning_rate_fns == [1.0]


def test_same_arguments_give_same_config():
  assert str(test_utils.generate_test_hash_table_config(2)) == str(
      test_utils.generate_test_hash_table_config(2))
  assert str(test_utils.generate_test_hash_table_config(2)) != str(
      test_utils.generate_test_hash_table_config(4))
