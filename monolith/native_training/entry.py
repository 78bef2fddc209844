"""Builders for the configs of embedding hash table entries.

An embedding table entry is made of segments; each segment has a dim size, an
initializer, an optimizer and a serving compressor. The classes here build the
corresponding `InitializerConfig`, `OptimizerConfig` and
`FloatCompressorConfig` protos (`as_proto()`), `CombineAsSegment` puts them
together as an `EntryConfig.Segment`, a `HashTableConfig` fills in the table
type, and `HashTableConfigInstance` pairs the finished
`EmbeddingHashTableConfig` with one learning-rate function per segment.

A builder's public attributes are named after the fields of its proto
message; attributes left as None keep the proto's defaults.
"""

import abc
import copy
from typing import Any, List, Optional, Sequence, Union

import tensorflow as tf

from monolith.native_training.monolith_export import monolith_export
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2


def _fill_message(message: Any, builder: object) -> None:
  """Marks `message` as set and copies `builder`'s public attributes into it.

  Raises:
    ValueError: an attribute's value does not fit its proto field.
  """
  message.SetInParent()
  for field, value in vars(builder).items():
    if value is None or field.startswith("_"):
      continue
    try:
      setattr(message, field, value)
    except (TypeError, ValueError) as e:
      raise ValueError(f"{type(builder).__name__}: invalid {field}={value!r} "
                       f"for {message.DESCRIPTOR.full_name}: {e}") from e


class Optimizer(abc.ABC):
  """The abstract base class of optimizer builders."""

  @abc.abstractmethod
  def as_proto(self) -> embedding_hash_table_pb2.OptimizerConfig:
    """Returns the optimizer config."""


class _OneofOptimizer(Optimizer):
  """An optimizer that fills the `OptimizerConfig.type` case `_CASE`."""

  _CASE: str

  def as_proto(self) -> embedding_hash_table_pb2.OptimizerConfig:
    config = embedding_hash_table_pb2.OptimizerConfig()
    _fill_message(getattr(config, self._CASE), self)
    return config


class StochasticRoundingFloat16OptimizerWrapper(Optimizer):
  """Wraps an optimizer and turns on stochastic rounding to float16."""

  def __init__(self, optimizer: Optimizer):
    self._optimizer = optimizer

  def as_proto(self) -> embedding_hash_table_pb2.OptimizerConfig:
    config = self._optimizer.as_proto()
    config.stochastic_rounding_float16 = True
    return config


@monolith_export
class SgdOptimizer(_OneofOptimizer):
  r"""Stochastic gradient descent: x_{i+1} = x_i - \eta * grad.

  Args:
    learning_rate: the learning rate \eta.
  """

  _CASE = "sgd"

  def __init__(self, learning_rate: Optional[float] = None):
    self.learning_rate = learning_rate


@monolith_export
class AdagradOptimizer(_OneofOptimizer):
  r"""Adagrad (http://jmlr.org/papers/v12/duchi11a.html).

  g_{i+1} = g_i + grad^2;  x_{i+1} = x_i - \eta / sqrt(g_{i+1}) * grad.

  Args:
    learning_rate: the learning rate \eta.
    initial_accumulator_value: the starting value of the accumulator g.
    hessian_compression_times: compression factor of the accumulator by
      hessian sketching during training; 1 means no compression.
    warmup_steps: deprecated.
    weight_decay_factor: weight decay added to the gradient.
  """

  _CASE = "adagrad"

  def __init__(self,
               learning_rate: Optional[float] = None,
               initial_accumulator_value: Optional[float] = None,
               hessian_compression_times: int = 1,
               warmup_steps: int = 0,
               weight_decay_factor: float = 0.0):
    self.learning_rate = learning_rate
    self.initial_accumulator_value = initial_accumulator_value
    self.hessian_compression_times = hessian_compression_times
    self.weight_decay_factor = weight_decay_factor
    self.warmup_steps = warmup_steps


@monolith_export
class AdadeltaOptimizer(_OneofOptimizer):
  """Adadelta (https://arxiv.org/abs/1212.5701)."""

  _CASE = "adadelta"

  def __init__(self,
               learning_rate: Optional[float] = None,
               weight_decay_factor: float = 0.0,
               averaging_ratio: float = 0.9,
               epsilon: float = 0.01,
               warmup_steps: int = 0):
    self.learning_rate = learning_rate
    self.weight_decay_factor = weight_decay_factor
    self.averaging_ratio = averaging_ratio
    self.epsilon = epsilon
    self.warmup_steps = warmup_steps


@monolith_export
class AdamOptimizer(_OneofOptimizer):
  r"""Adam (https://arxiv.org/abs/1412.6980).

  m_{i+1} = beta1 * m_i + (1 - beta1) * grad;
  v_{i+1} = beta2 * v_i + (1 - beta2) * grad^2;
  x_{i+1} = x_i - \eta * m_{i+1} / sqrt(v_{i+1} + epsilon).

  Args:
    learning_rate: the learning rate \eta.
    beta1: decay rate of the first moment.
    beta2: decay rate of the second moment.
    use_beta1_warmup: whether to warm beta1 up over the first steps.
    weight_decay_factor: weight decay added to the gradient.
    use_nesterov: whether to use Nesterov momentum.
    epsilon: offset that keeps the denominator away from zero.
    warmup_steps: deprecated.
  """

  _CASE = "adam"

  def __init__(self,
               learning_rate: Optional[float] = None,
               beta1: float = 0.9,
               beta2: float = 0.99,
               use_beta1_warmup: bool = False,
               weight_decay_factor: float = 0.0,
               use_nesterov: bool = False,
               epsilon: float = 0.01,
               warmup_steps: int = 0):
    self.learning_rate = learning_rate
    self.beta1 = beta1
    self.beta2 = beta2
    self.use_beta1_warmup = use_beta1_warmup
    self.weight_decay_factor = weight_decay_factor
    self.use_nesterov = use_nesterov
    self.epsilon = epsilon
    self.warmup_steps = warmup_steps


class AmsgradOptimizer(_OneofOptimizer):
  """AMSGrad (https://openreview.net/forum?id=ryQu7f-RZ)."""

  _CASE = "amsgrad"

  def __init__(self,
               learning_rate: Optional[float] = None,
               beta1: float = 0.9,
               beta2: float = 0.99,
               weight_decay_factor: float = 0.0,
               use_nesterov: bool = False,
               epsilon: float = 0.01,
               warmup_steps: int = 0):
    self.learning_rate = learning_rate
    self.beta1 = beta1
    self.beta2 = beta2
    self.weight_decay_factor = weight_decay_factor
    self.use_nesterov = use_nesterov
    self.epsilon = epsilon
    self.warmup_steps = warmup_steps


@monolith_export
class BatchSoftmaxOptimizer(_OneofOptimizer):
  """Batch softmax (https://research.google/pubs/pub48840/).

  Args:
    learning_rate: the learning rate.
  """

  _CASE = "batch_softmax"

  def __init__(self, learning_rate: Optional[float] = None):
    self.learning_rate = learning_rate


@monolith_export
class MomentumOptimizer(_OneofOptimizer):
  """SGD with (optionally Nesterov) momentum."""

  _CASE = "momentum"

  def __init__(self,
               learning_rate: Optional[float] = None,
               weight_decay_factor: float = 0.0,
               use_nesterov: bool = False,
               momentum: float = 0.9,
               warmup_steps: int = 0):
    self.learning_rate = learning_rate
    self.weight_decay_factor = weight_decay_factor
    self.use_nesterov = use_nesterov
    self.momentum = momentum
    self.warmup_steps = warmup_steps


class MovingAverageOptimizer(_OneofOptimizer):
  """Keeps a moving average of the pushed values instead of descending."""

  _CASE = "moving_average"

  def __init__(self, momentum: float = 0.9):
    self.momentum = momentum


@monolith_export
class RmspropOptimizer(_OneofOptimizer):
  """RMSProp."""

  _CASE = "rmsprop"

  def __init__(self,
               learning_rate: Optional[float] = None,
               weight_decay_factor: float = 0.0,
               momentum: float = 0.9):
    self.learning_rate = learning_rate
    self.weight_decay_factor = weight_decay_factor
    self.momentum = momentum


@monolith_export
class RmspropV2Optimizer(_OneofOptimizer):
  """RMSProp, second variant of the update rule."""

  _CASE = "rmspropv2"

  def __init__(self,
               learning_rate: Optional[float] = None,
               weight_decay_factor: float = 0.0,
               momentum: float = 0.9):
    self.learning_rate = learning_rate
    self.weight_decay_factor = weight_decay_factor
    self.momentum = momentum


class FTRLWithGroupSparsityOptimizer(_OneofOptimizer):
  """FTRL with group sparsity: L1 and L2 act on a whole segment at once.

  Args:
    learning_rate: alpha of FTRL.
    initial_accumulator_value: the starting value of the accumulator.
    beta: beta of FTRL.
    warmup_steps: deprecated.
    l1_regularization: lambda1, the L1 regularization strength.
    l2_regularization: lambda2, the L2 regularization strength.
  """

  _CASE = "group_ftrl"

  def __init__(self,
               learning_rate: Optional[float] = None,
               initial_accumulator_value: Optional[float] = None,
               beta: Optional[float] = None,
               warmup_steps: int = 0,
               l1_regularization: Optional[float] = None,
               l2_regularization: Optional[float] = None):
    self.learning_rate = learning_rate
    self.initial_accumulator_value = initial_accumulator_value
    self.beta = beta
    self.l1_regularization_strength = l1_regularization
    self.l2_regularization_strength = l2_regularization
    self.warmup_steps = warmup_steps


@monolith_export
class AdaGradWithGroupLassoOptimizer(_OneofOptimizer):
  """Adagrad with a group-lasso penalty on the whole segment.

  Args:
    learning_rate: the learning rate.
    beta: added to the accumulator's square root in the denominator.
    initial_accumulator_value: the starting value of the accumulator.
    l2_regularization: the group L2 regularization strength.
    weight_decay_factor: weight decay added to the gradient.
    warmup_steps: deprecated.
  """

  _CASE = "group_adagrad"

  def __init__(self,
               learning_rate: Optional[float] = None,
               beta: Optional[float] = None,
               initial_accumulator_value: Optional[float] = None,
               l2_regularization: Optional[float] = None,
               weight_decay_factor: float = 0.0,
               warmup_steps: int = 0):
    self.learning_rate = learning_rate
    self.beta = beta
    self.initial_accumulator_value = initial_accumulator_value
    self.l2_regularization_strength = l2_regularization
    self.weight_decay_factor = weight_decay_factor
    self.warmup_steps = warmup_steps


class DynamicWdAdagradOptimizer(_OneofOptimizer):
  """Adagrad with weight decay that can scale with the steps since the update.

  Args:
    learning_rate: the learning rate.
    initial_accumulator_value: the starting value of the accumulator.
    hessian_compression_times: accumulator compression factor; 1 is none.
    warmup_steps: deprecated.
    weight_decay_factor: the weight decay factor.
    decouple_weight_decay: whether the decay is applied apart from the
      gradient step (decoupled) or added to the gradient (coupled).
    enable_dynamic_wd: whether the decay is scaled by the number of steps
      since the entry was last updated.
    flip_direction: whether that scaling is inverted (rarely updated entries
      decay less instead of more).
    dynamic_wd_temperature: temperature of that scaling.
  """

  _CASE = "dynamic_wd_adagrad"

  def __init__(self,
               learning_rate: Optional[float] = None,
               initial_accumulator_value: Optional[float] = None,
               hessian_compression_times: int = 1,
               warmup_steps: int = 0,
               weight_decay_factor: float = 0.0,
               decouple_weight_decay: bool = True,
               enable_dynamic_wd: bool = True,
               flip_direction: bool = True,
               dynamic_wd_temperature: float = 1.0):
    self.learning_rate = learning_rate
    self.initial_accumulator_value = initial_accumulator_value
    self.hessian_compression_times = hessian_compression_times
    self.weight_decay_factor = weight_decay_factor
    self.warmup_steps = warmup_steps
    self.decouple_weight_decay = decouple_weight_decay
    self.enable_dynamic_wd = enable_dynamic_wd
    self.flip_direction = flip_direction
    self.dynamic_wd_temperature = dynamic_wd_temperature


@monolith_export
class FtrlOptimizer(_OneofOptimizer):
  """FTRL-Proximal (https://dl.acm.org/citation.cfm?id=2488200).

  Args:
    learning_rate: alpha of FTRL.
    initial_accumulator_value: the starting value of the accumulator.
    beta: beta of FTRL.
    warmup_steps: deprecated.
    l1_regularization: lambda1, the L1 regularization strength.
    l2_regularization: lambda2, the L2 regularization strength.
  """

  _CASE = "ftrl"

  def __init__(self,
               learning_rate: Optional[float] = None,
               initial_accumulator_value: Optional[float] = None,
               beta: Optional[float] = None,
               warmup_steps: int = 0,
               l1_regularization: Optional[float] = None,
               l2_regularization: Optional[float] = None):
    self.learning_rate = learning_rate
    self.initial_accumulator_value = initial_accumulator_value
    self.beta = beta
    self.l1_regularization_strength = l1_regularization
    self.l2_regularization_strength = l2_regularization
    self.warmup_steps = warmup_steps


class Initializer(abc.ABC):
  """The abstract base class of initializer builders."""

  @abc.abstractmethod
  def as_proto(self) -> embedding_hash_table_pb2.InitializerConfig:
    """Returns the initializer config."""


class _OneofInitializer(Initializer):
  """An initializer that fills the `InitializerConfig.type` case `_CASE`."""

  _CASE: str

  def as_proto(self) -> embedding_hash_table_pb2.InitializerConfig:
    config = embedding_hash_table_pb2.InitializerConfig()
    _fill_message(getattr(config, self._CASE), self)
    return config


@monolith_export
class ZerosInitializer(_OneofInitializer):
  """Initializes new embeddings to zeros."""

  _CASE = "zeros"


@monolith_export
class ConstantsInitializer(_OneofInitializer):
  """Initializes every element of new embeddings to `constant`."""

  _CASE = "constants"

  def __init__(self, constant: float):
    self.constant = constant


class RandomUniformInitializer(_OneofInitializer):
  """Initializes new embeddings uniformly in [minval, maxval].

  Args:
    minval: the lower bound; None keeps the proto default (-0.05).
    maxval: the upper bound; None keeps the proto default (0.05).
  """

  _CASE = "random_uniform"

  def __init__(self,
               minval: Optional[float] = None,
               maxval: Optional[float] = None):
    self.minval = minval
    self.maxval = maxval


class BatchSoftmaxInitializer(_OneofInitializer):
  """Initializer of `BatchSoftmaxOptimizer` segments.

  The segment starts at the constant `init_step_interval`, the assumed number
  of steps between two occurrences of an id.

  Raises:
    ValueError: `init_step_interval` is below 1.
  """

  _CASE = "constants"

  def __init__(self, init_step_interval: float):
    if init_step_interval < 1:
      raise ValueError(
          f"init_step_interval should be >= 1, got {init_step_interval}")
    self.constant = init_step_interval


class Compressor(abc.ABC):
  """The abstract base class of serving compressor builders."""

  @abc.abstractmethod
  def as_proto(self) -> embedding_hash_table_pb2.FloatCompressorConfig:
    """Returns the compressor config."""


class _OneofCompressor(Compressor):
  """A compressor that fills the `FloatCompressorConfig.type` case `_CASE`."""

  _CASE: str

  def as_proto(self) -> embedding_hash_table_pb2.FloatCompressorConfig:
    config = embedding_hash_table_pb2.FloatCompressorConfig()
    _fill_message(getattr(config, self._CASE), self)
    return config


@monolith_export
class OneBitCompressor(_OneofCompressor):
  """Serves each element as one bit (its sign) times a learned scale."""

  _CASE = "one_bit"

  def __init__(self, step_size: int = 200, amplitude: float = 0.05):
    self.step_size = step_size
    self.amplitude = amplitude


@monolith_export
class FixedR8Compressor(_OneofCompressor):
  """Serves each element as 8 bits over the fixed range [-r, r]."""

  _CASE = "fixed_r8"

  def __init__(self, fixed_range: float = 1.0):
    self.r = fixed_range


@monolith_export
class Fp16Compressor(_OneofCompressor):
  """Serves embeddings as float16, halving their serving memory."""

  _CASE = "fp16"


@monolith_export
class Fp32Compressor(_OneofCompressor):
  """Serves embeddings as float32."""

  _CASE = "fp32"


def _as_proto(builder: Any, proto_type: type, argument: str) -> Any:
  """`builder.as_proto()`, or `builder` itself, checked to be a `proto_type`."""
  proto = builder.as_proto() if hasattr(builder, "as_proto") else builder
  if not isinstance(proto, proto_type):
    raise ValueError(f"{argument} must be a {proto_type.__name__} or a builder "
                     f"of one, got {type(builder).__name__}")
  return proto


def CombineAsSegment(
    dim_size: int,
    initializer: Union[Initializer, embedding_hash_table_pb2.InitializerConfig],
    optimizer: Union[Optimizer, embedding_hash_table_pb2.OptimizerConfig],
    compressor: Union[Compressor,
                      embedding_hash_table_pb2.FloatCompressorConfig]
) -> embedding_hash_table_pb2.EntryConfig.Segment:
  """Builds a segment of `dim_size` floats from its three configs.

  Each config is given either as a builder of this module or as its proto.

  Raises:
    ValueError: `dim_size` is not a positive integer, or a config is neither
      a builder nor the expected proto.
  """
  if isinstance(dim_size, bool) or not isinstance(dim_size,
                                                  int) or dim_size < 1:
    raise ValueError(f"dim_size must be a positive integer, got {dim_size!r}")
  segment = embedding_hash_table_pb2.EntryConfig.Segment()
  segment.dim_size = dim_size
  segment.init_config.CopyFrom(
      _as_proto(initializer, embedding_hash_table_pb2.InitializerConfig,
                "initializer"))
  segment.opt_config.CopyFrom(
      _as_proto(optimizer, embedding_hash_table_pb2.OptimizerConfig,
                "optimizer"))
  segment.comp_config.CopyFrom(
      _as_proto(compressor, embedding_hash_table_pb2.FloatCompressorConfig,
                "compressor"))
  return segment


class HashTableConfig(abc.ABC):
  """Sets the table-type fields of an `EmbeddingHashTableConfig`."""

  @abc.abstractmethod
  def mutate_table(
      self, table_config: embedding_hash_table_pb2.EmbeddingHashTableConfig
  ) -> None:
    """Writes this table type's fields into `table_config`."""


class CuckooHashTableConfig(HashTableConfig):
  """A cuckoo hash table.

  Args:
    initial_capacity: the number of entries to reserve at creation.
    feature_evict_every_n_hours: when positive, turns on feature eviction and
      sets its interval; 0 leaves eviction off.
  """

  def __init__(self,
               initial_capacity: int = 1,
               feature_evict_every_n_hours: int = 0):
    self._initial_capacity = initial_capacity
    self._feature_evict_every_n_hours = feature_evict_every_n_hours

  def mutate_table(
      self, table_config: embedding_hash_table_pb2.EmbeddingHashTableConfig
  ) -> None:
    table_config.initial_capacity = self._initial_capacity
    table_config.cuckoo.SetInParent()
    if self._feature_evict_every_n_hours > 0:
      table_config.enable_feature_eviction = True
      table_config.feature_evict_every_n_hours = (
          self._feature_evict_every_n_hours)


class HashTableConfigInstance:
  """A table config with one learning rate (or function) per segment.

  `str()` identifies the configuration: two instances with the same table
  config and learning-rate functions print the same, which is how slots that
  can share a table are found.

  Args:
    table_config: the finished table config.
    learning_rate_fns: per segment, a learning rate (a number or tensor) or a
      callable with no arguments that returns one (e.g. a
      `learning_rate_functions.LearningRateFunction`).
    extra_restore_names: further table names to restore this table from.
  """

  def __init__(self,
               table_config: embedding_hash_table_pb2.EmbeddingHashTableConfig,
               learning_rate_fns: List[Any],
               extra_restore_names: Optional[Sequence[str]] = None):
    self._table_config = table_config
    self.extra_restore_names = copy.copy(extra_restore_names) or []
    self._learning_rate_fns = learning_rate_fns
    self._learning_rate_tensor = None

  def __str__(self) -> str:
    serialized = self._table_config.SerializeToString(deterministic=True)
    fns = ", ".join(str(fn) for fn in self._learning_rate_fns)
    return f"TableConfigPB: {serialized}, LearningRateFns: [{fns}]"

  @property
  def table_config(self) -> embedding_hash_table_pb2.EmbeddingHashTableConfig:
    return self._table_config

  @property
  def learning_rate_fns(self) -> List[Any]:
    return self._learning_rate_fns

  @property
  def learning_rate_tensor(self) -> Optional[tf.Tensor]:
    """The tensor given to `set_learning_rate_tensor`, or None."""
    return self._learning_rate_tensor

  def set_learning_rate_tensor(self, learning_rate_tensor: tf.Tensor) -> None:
    self._learning_rate_tensor = learning_rate_tensor

  def _call_learning_rate_fns(self, cast: bool) -> List[Any]:
    if not self._learning_rate_fns:
      raise ValueError("learning_rate_fns must not be empty")
    rates = []
    for fn in self._learning_rate_fns:
      if callable(fn):
        rates.append(fn())
      elif cast:
        rates.append(tf.cast(fn, dtype=tf.float32))
      else:
        rates.append(fn)
    return rates

  def call_learning_rate_fns(self) -> tf.Tensor:
    """Returns the per-segment learning rates stacked in a float32 vector.

    Raises:
      ValueError: `learning_rate_fns` is empty.
    """
    with tf.name_scope("learning_rate"):
      return tf.stack(self._call_learning_rate_fns(cast=True))

  def call_learning_rate_fns_fewer_ops(self) -> List[Any]:
    """Returns the per-segment learning rates as a list.

    Callables are called; constant rates are returned as given, without ops,
    for the caller to stack with other tables' rates.

    Raises:
      ValueError: `learning_rate_fns` is empty.
    """
    with tf.name_scope("learning_rate"):
      return self._call_learning_rate_fns(cast=False)
