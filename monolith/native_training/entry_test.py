"""Tests for entry: builder protos, segments, table configs."""

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import entry
from monolith.native_training import learning_rate_functions
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2


def _close(a, b):
  """Float proto fields are float32: compare at float32 precision."""
  return np.float32(a) == np.float32(b)


def test_sgd():
  config = entry.SgdOptimizer(0.01).as_proto()
  assert config.WhichOneof("type") == "sgd"
  assert _close(config.sgd.learning_rate, 0.01)
  assert not config.stochastic_rounding_float16
  # learning_rate=None keeps the proto default.
  default = entry.SgdOptimizer().as_proto()
  assert default.WhichOneof("type") == "sgd"
  assert not default.sgd.HasField("learning_rate")


def test_adagrad_positional_args_and_defaults():
  config = entry.AdagradOptimizer(0.01, 0.1, 10).as_proto()
  assert config.WhichOneof("type") == "adagrad"
  assert _close(config.adagrad.learning_rate, 0.01)
  assert _close(config.adagrad.initial_accumulator_value, 0.1)
  assert config.adagrad.hessian_compression_times == 10
  assert config.adagrad.HasField("warmup_steps")
  assert config.adagrad.warmup_steps == 0
  assert config.adagrad.weight_decay_factor == 0.0
  unset = entry.AdagradOptimizer().as_proto().adagrad
  assert not unset.HasField("learning_rate")
  assert not unset.HasField("initial_accumulator_value")
  assert _close(unset.learning_rate, 0.001)


def test_ftrl_maps_regularization_names():
  config = entry.FtrlOptimizer(0.01, 0.1, 1.0, 5, 0.2, 0.3).as_proto()
  assert config.WhichOneof("type") == "ftrl"
  ftrl = config.ftrl
  assert _close(ftrl.learning_rate, 0.01)
  assert _close(ftrl.initial_accumulator_value, 0.1)
  assert ftrl.beta == 1.0
  assert ftrl.warmup_steps == 5
  assert _close(ftrl.l1_regularization_strength, 0.2)
  assert _close(ftrl.l2_regularization_strength, 0.3)
  assert not entry.FtrlOptimizer().as_proto().ftrl.HasField(
      "l1_regularization_strength")


def test_group_optimizers():
  group_ftrl = entry.FTRLWithGroupSparsityOptimizer(
      learning_rate=0.1, l1_regularization=1.0,
      l2_regularization=2.0).as_proto()
  assert group_ftrl.WhichOneof("type") == "group_ftrl"
  assert group_ftrl.group_ftrl.l1_regularization_strength == 1.0
  assert group_ftrl.group_ftrl.l2_regularization_strength == 2.0
  assert group_ftrl.group_ftrl.beta == 1.0  # Proto default.

  group_adagrad = entry.AdaGradWithGroupLassoOptimizer(
      0.1, 0.5, 0.2, 3.0, 0.25).as_proto()
  assert group_adagrad.WhichOneof("type") == "group_adagrad"
  g = group_adagrad.group_adagrad
  assert g.beta == 0.5
  assert _close(g.initial_accumulator_value, 0.2)
  assert g.l2_regularization_strength == 3.0
  assert g.weight_decay_factor == 0.25


def test_dynamic_wd_adagrad_defaults_differ_from_proto():
  config = entry.DynamicWdAdagradOptimizer(0.01, 0.1, 1).as_proto()
  assert config.WhichOneof("type") == "dynamic_wd_adagrad"
  d = config.dynamic_wd_adagrad
  # The builder turns these on although the proto defaults are false.
  assert d.decouple_weight_decay and d.enable_dynamic_wd and d.flip_direction
  assert d.dynamic_wd_temperature == 1.0
  assert d.hessian_compression_times == 1


@pytest.mark.parametrize("builder, case, expected", [
    (entry.AdadeltaOptimizer(0.01, 0.0, 0.8, 0.02), "adadelta", {
        "averaging_ratio": 0.8,
        "epsilon": 0.02
    }),
    (entry.AdamOptimizer(0.01, 0.8, 0.9, True, 0.0, True, 0.02), "adam", {
        "beta1": 0.8,
        "beta2": 0.9,
        "use_beta1_warmup": True,
        "use_nesterov": True,
        "epsilon": 0.02
    }),
    (entry.AmsgradOptimizer(0.01, 0.8, 0.9, 0.0, True, 0.02), "amsgrad", {
        "beta1": 0.8,
        "beta2": 0.9,
        "use_nesterov": True
    }),
    (entry.MomentumOptimizer(0.01, 0.0, True, 0.5), "momentum", {
        "use_nesterov": True,
        "momentum": 0.5
    }),
    (entry.MovingAverageOptimizer(0.5), "moving_average", {
        "momentum": 0.5
    }),
    (entry.RmspropOptimizer(0.01, 0.0, 0.5), "rmsprop", {
        "momentum": 0.5
    }),
    (entry.RmspropV2Optimizer(0.01, 0.0, 0.5), "rmspropv2", {
        "momentum": 0.5
    }),
    (entry.BatchSoftmaxOptimizer(0.5), "batch_softmax", {
        "learning_rate": 0.5
    }),
])
def test_optimizer_oneof_and_fields(builder, case, expected):
  config = builder.as_proto()
  assert isinstance(config, embedding_hash_table_pb2.OptimizerConfig)
  assert config.WhichOneof("type") == case
  message = getattr(config, case)
  for field, value in expected.items():
    assert _close(getattr(message, field), value), field


def test_stochastic_rounding_wrapper():
  config = entry.StochasticRoundingFloat16OptimizerWrapper(
      entry.AdagradOptimizer(0.1)).as_proto()
  assert config.stochastic_rounding_float16
  assert config.WhichOneof("type") == "adagrad"


def test_attribute_changes_show_in_proto():
  opt = entry.SgdOptimizer(0.1)
  opt.learning_rate = 0.5
  assert opt.as_proto().sgd.learning_rate == 0.5


def test_bad_field_value_names_the_field():
  # protobuf's exception type, as the original raised.
  with pytest.raises(TypeError, match="SgdOptimizer: invalid "
                     "learning_rate='fast'"):
    entry.SgdOptimizer("fast").as_proto()


def test_optimizer_base_is_abstract():
  with pytest.raises(TypeError):
    entry.Optimizer()


def test_initializers():
  zeros = entry.ZerosInitializer().as_proto()
  assert zeros.WhichOneof("type") == "zeros"

  constants = entry.ConstantsInitializer(0.5).as_proto()
  assert constants.WhichOneof("type") == "constants"
  assert constants.constants.constant == 0.5

  uniform = entry.RandomUniformInitializer(-0.5, 0.5).as_proto()
  assert uniform.WhichOneof("type") == "random_uniform"
  assert uniform.random_uniform.minval == -0.5
  assert uniform.random_uniform.maxval == 0.5
  default_uniform = entry.RandomUniformInitializer().as_proto().random_uniform
  assert not default_uniform.HasField("minval")
  assert _close(default_uniform.maxval, 0.05)

  batch_softmax = entry.BatchSoftmaxInitializer(2.0).as_proto()
  assert batch_softmax.WhichOneof("type") == "constants"
  assert batch_softmax.constants.constant == 2.0


def test_batch_softmax_initializer_rejects_small_interval():
  with pytest.raises(ValueError, match="init_step_interval"):
    entry.BatchSoftmaxInitializer(0.5)


def test_compressors():
  assert entry.Fp16Compressor().as_proto().WhichOneof("type") == "fp16"
  assert entry.Fp32Compressor().as_proto().WhichOneof("type") == "fp32"

  fixed_r8 = entry.FixedR8Compressor().as_proto()
  assert fixed_r8.WhichOneof("type") == "fixed_r8"
  assert fixed_r8.fixed_r8.HasField("r") and fixed_r8.fixed_r8.r == 1.0
  assert entry.FixedR8Compressor(2.0).as_proto().fixed_r8.r == 2.0

  one_bit = entry.OneBitCompressor().as_proto()
  assert one_bit.WhichOneof("type") == "one_bit"
  assert one_bit.one_bit.step_size == 200
  # The builder's amplitude default (0.05) differs from the proto's (0.1).
  assert _close(one_bit.one_bit.amplitude, 0.05)
  one_bit = entry.OneBitCompressor(step_size=10, amplitude=0.5).as_proto()
  assert one_bit.one_bit.step_size == 10
  assert one_bit.one_bit.amplitude == 0.5


def test_combine_as_segment_from_builders():
  segment = entry.CombineAsSegment(5, entry.ZerosInitializer(),
                                   entry.SgdOptimizer(0.1),
                                   entry.Fp16Compressor())
  assert isinstance(segment, embedding_hash_table_pb2.EntryConfig.Segment)
  assert segment.dim_size == 5
  assert segment.init_config.WhichOneof("type") == "zeros"
  assert segment.opt_config.WhichOneof("type") == "sgd"
  assert _close(segment.opt_config.sgd.learning_rate, 0.1)
  assert segment.comp_config.WhichOneof("type") == "fp16"


def test_combine_as_segment_from_protos():
  init = entry.ConstantsInitializer(3.0).as_proto()
  opt = entry.AdagradOptimizer(0.2).as_proto()
  comp = entry.OneBitCompressor().as_proto()
  segment = entry.CombineAsSegment(3, init, opt, comp)
  assert segment.init_config == init
  assert segment.opt_config == opt
  assert segment.comp_config == comp


def test_combine_as_segment_takes_numpy_integers():
  segment = entry.CombineAsSegment(np.int64(4), entry.ZerosInitializer(),
                                   entry.SgdOptimizer(), entry.Fp32Compressor())
  assert segment.dim_size == 4


@pytest.mark.parametrize("dim_size, error", [(0, ValueError),
                                             (-1, ValueError),
                                             (np.int32(0), ValueError),
                                             (2.0, TypeError),
                                             (True, TypeError),
                                             ("4", TypeError)])
def test_combine_as_segment_rejects_bad_dim(dim_size, error):
  with pytest.raises(error, match="dim_size"):
    entry.CombineAsSegment(dim_size, entry.ZerosInitializer(),
                           entry.SgdOptimizer(), entry.Fp32Compressor())


@pytest.mark.parametrize("table_type", [entry.CuckooHashTableConfig,
                                        entry.GpucucoHashTableConfig])
@pytest.mark.parametrize("capacity", [-1, None, 1.5, "8"])
def test_a_capacity_that_is_no_count_is_refused(table_type, capacity):
  # It failed in mutate_table with protobuf's "Value out of range: -1".
  with pytest.raises(ValueError, match=f"{table_type.__name__} "
                     f"initial_capacity must be an integer >= 0, got "):
    table_type(capacity)


def test_combine_as_segment_rejects_wrong_config_type():
  with pytest.raises(TypeError, match="optimizer"):
    entry.CombineAsSegment(2, entry.ZerosInitializer(),
                           entry.ZerosInitializer().as_proto(),
                           entry.Fp32Compressor())
  with pytest.raises(TypeError, match="initializer"):
    entry.CombineAsSegment(2, entry.SgdOptimizer(), entry.SgdOptimizer(),
                           entry.Fp32Compressor())
  with pytest.raises(TypeError, match="compressor"):
    entry.CombineAsSegment(2, entry.ZerosInitializer(), entry.SgdOptimizer(),
                           None)


def test_cuckoo_hash_table_config():
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  assert table_config.WhichOneof("type") == "cuckoo"
  assert table_config.initial_capacity == 1
  assert not table_config.enable_feature_eviction

  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig(
      initial_capacity=1000,
      feature_evict_every_n_hours=24).mutate_table(table_config)
  assert table_config.initial_capacity == 1000
  assert table_config.enable_feature_eviction
  assert table_config.feature_evict_every_n_hours == 24


def test_gpucuco_hash_table_config():
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  entry.GpucucoHashTableConfig(initial_capacity=5000).mutate_table(
      table_config)
  assert table_config.WhichOneof("type") == "gpucuco"
  assert table_config.initial_capacity == 5000
  assert not table_config.HasField("cuckoo")


def _decay():
  return learning_rate_functions.PolynomialDecay(initial_learning_rate=0.01,
                                                 decay_steps=20,
                                                 end_learning_rate=0.05)


def _table_config(dim):
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  table_config.entry_config.segments.append(
      entry.CombineAsSegment(dim, entry.ZerosInitializer(),
                             entry.SgdOptimizer(), entry.Fp32Compressor()))
  return table_config


def test_hash_table_config_instance_str_identifies_config():
  config1 = entry.HashTableConfigInstance(_table_config(2), [0.1])
  config2 = entry.HashTableConfigInstance(_table_config(2), [0.1])
  assert str(config1) == str(config2)

  config3 = entry.HashTableConfigInstance(_table_config(2), [_decay()])
  config4 = entry.HashTableConfigInstance(_table_config(2), [_decay()])
  assert str(config3) == str(config4)
  assert str(config1) != str(config3)

  config5 = entry.HashTableConfigInstance(_table_config(3), [0.1])
  assert str(config1) != str(config5)
  assert str(config1) != str(
      entry.HashTableConfigInstance(_table_config(2), [0.2]))


def test_hash_table_config_instance_properties():
  table_config = _table_config(2)
  names = ["old_name"]
  config = entry.HashTableConfigInstance(table_config, [0.1],
                                         extra_restore_names=names)
  assert config.table_config is table_config
  assert config.learning_rate_fns == [0.1]
  assert config.extra_restore_names == ["old_name"]
  config.extra_restore_names.append("other")
  assert names == ["old_name"]  # A copy is kept.
  assert entry.HashTableConfigInstance(table_config,
                                       [0.1]).extra_restore_names == []
  assert config.learning_rate_tensor is None
  tensor = tf.constant([0.1])
  config.set_learning_rate_tensor(tensor)
  assert config.learning_rate_tensor is tensor


def test_segments_and_rates_appended_after_construction_count():
  # As the original: the table config and a list of rates are the
  # caller's, so code may build both after the instance.
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  rates = []
  config = entry.HashTableConfigInstance(table_config, rates)
  for dim, rate in ((2, 0.1), (3, 0.2)):
    table_config.entry_config.segments.append(
        entry.CombineAsSegment(dim, entry.ZerosInitializer(),
                               entry.SgdOptimizer(), entry.Fp32Compressor()))
    rates.append(rate)
  assert config.learning_rate_fns == [0.1, 0.2]
  assert len(config.table_config.entry_config.segments) == 2
  np.testing.assert_allclose(
      tf.get_static_value(config.call_learning_rate_fns()), [0.1, 0.2])


def test_a_builder_of_the_users_own_fills_its_case_as_the_original():
  # Ported code: builders of its own call the original's private helper.

  class MomentumLikeOptimizer(entry.Optimizer):

    def __init__(self, learning_rate=None):
      self.learning_rate = learning_rate

    def as_proto(self):
      config = embedding_hash_table_pb2.OptimizerConfig()
      entry._convert_to_proto(self, config.momentum)
      return config

  config = MomentumLikeOptimizer().as_proto()
  assert config.WhichOneof("type") == "momentum"
  assert MomentumLikeOptimizer(0.5).as_proto().momentum.learning_rate == 0.5


def test_call_learning_rate_fns():
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    global_step = tf.compat.v1.train.get_or_create_global_step()
    config = entry.HashTableConfigInstance(_table_config(2), [0.5, _decay()])
    rates = config.call_learning_rate_fns()
    assert rates.dtype == tf.float32
    assert rates.shape == (2,)
    assert rates.op.name.startswith("learning_rate")

    fewer = config.call_learning_rate_fns_fewer_ops()
    assert fewer[0] == 0.5  # Constants are returned as given.
    assert isinstance(fewer[1], tf.Tensor)

    sess.run(tf.compat.v1.global_variables_initializer())
    sess.run(tf.compat.v1.assign(global_step, 10))
    # Half way from 0.01 to 0.05.
    np.testing.assert_allclose(sess.run(rates), [0.5, 0.03], rtol=1e-6)
    np.testing.assert_allclose(sess.run(fewer[1]), 0.03, rtol=1e-6)


def test_call_learning_rate_fns_rejects_empty():
  config = entry.HashTableConfigInstance(_table_config(2), [])
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match="learning_rate_fns"):
      config.call_learning_rate_fns()
    with pytest.raises(ValueError, match="learning_rate_fns"):
      config.call_learning_rate_fns_fewer_ops()


def test_bad_learning_rate_fns_are_named():
  with pytest.raises(TypeError, match="learning_rate_fns must be a list .* "
                     "got float 0.05"):
    entry.HashTableConfigInstance(_table_config(2), 0.05)
  for not_a_list in ("0.05", {0.05}, (r for r in [0.05])):
    with pytest.raises(TypeError, match="learning_rate_fns must be a list"):
      entry.HashTableConfigInstance(_table_config(2), not_a_list)
  # Other sequences are taken, as the original took them.
  rates = entry.HashTableConfigInstance(_table_config(2), np.array([0.1]))
  assert rates.learning_rate_fns == [0.1]
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    assert sess.run(rates.call_learning_rate_fns()) == pytest.approx([0.1])
  with pytest.raises(TypeError, match=r"learning_rate_fns\[1\] must be a "
                     "number, a tensor or a callable, got None"):
    entry.HashTableConfigInstance(_table_config(2), [0.1, None])
  config = entry.HashTableConfigInstance(_table_config(2),
                                         [0.1, lambda: None])
  with tf.Graph().as_default():
    with pytest.raises(TypeError, match=r"learning_rate_fns\[1\] \(<function"
                       r".*\): it returned None"):
      config.call_learning_rate_fns()

    class NeedsStep:  # as Keras' LearningRateSchedule: called with the step

      def __call__(self, step):
        return 0.1 * 0.9**step

    needs_step = entry.HashTableConfigInstance(_table_config(2),
                                               [NeedsStep()])
    with pytest.raises(TypeError, match=r"learning_rate_fns\[0\]"):
      needs_step.call_learning_rate_fns_fewer_ops()


def test_a_config_instance_needs_a_table_config():
  with pytest.raises(TypeError, match="table_config must be an "
                     "EmbeddingHashTableConfig .*got CuckooHashTableConfig"):
    entry.HashTableConfigInstance(entry.CuckooHashTableConfig(), [0.1])


def test_a_builder_class_is_not_a_builder():
  with pytest.raises(TypeError, match=r"optimizer must be a OptimizerConfig "
                     r"or a builder of one, got the class SgdOptimizer \(an "
                     r"instance: SgdOptimizer\(\)\)"):
    entry.CombineAsSegment(2, entry.ZerosInitializer(), entry.SgdOptimizer,
                           entry.Fp32Compressor())
