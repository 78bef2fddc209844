"""Builders for the configs of embedding hash table entries.

An embedding table entry is made of segments; each segment has a dim size, an
initializer, an optimizer and a serving compressor. The classes here build the
corresponding `InitializerConfig`, `OptimizerConfig` and
`FloatCompressorConfig` protos (`as_proto()`), `CombineAsSegment` puts them
together as an `EntryConfig.Segment`, a `HashTableConfig` fills in the table
type, and `HashTableConfigInstance` pairs the finished
`EmbeddingHashTableConfig` with one learning-rate function per segment.

A builder's public attributes are named after the fields of its proto
message; attributes left as None keep the proto's defaults. `as_proto()`
checks only that each value fits its field's type; the engine checks the
values themselves (ranges, dims) when the table is created, and a bad one
fails the table's initializer with `tf.errors.InvalidArgumentError` naming
the segment, field and value.

The learning rate an optimizer applies is the segment's entry of
`HashTableConfigInstance.learning_rate_fns`, handed to the update ops at every
step; the `learning_rate` field of an optimizer config is carried in the proto
(for compatibility with Monolith's configs) but the engine does not read it.
"""

import abc
import collections.abc
import copy
import numbers
from typing import (Any, Callable, Dict, List, Optional, Sequence, Tuple,
                    Type, Union)

from google.protobuf import message
import numpy as np
import tensorflow as tf

from monolith.native_training import utils
from monolith.native_training.monolith_export import monolith_export
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

# A segment's learning rate: a number or tensor, or a callable with no
# arguments that returns one (e.g. a learning_rate_functions function).
LearningRate = Union[float, tf.Tensor, Callable[[], Union[float, tf.Tensor]]]


def _with_context(error: Exception, context: str) -> Exception:
  """A TypeError, or else a ValueError, as `error` is one, saying `context`
  first (not error's own type: a subclass may take other arguments)."""
  kind = TypeError if isinstance(error, TypeError) else ValueError
  return kind(f"{context}: {error}")


def _convert_to_proto(obj: object, proto: message.Message) -> None:
  """Sets `proto` (present even where empty) and, of its fields, each of
  `obj`'s public attributes that is not None: what every builder's
  `as_proto` does, under the original's name, which builders of users'
  own (e.g. for an optimizer `entry` lacks) call.

  Raises:
    TypeError, ValueError: an attribute's value does not fit its field
      (protobuf's exception, with the builder and field named).
  """
  proto.SetInParent()
  for field, value in vars(obj).items():
    if value is None or field.startswith("_"):
      continue
    try:
      setattr(proto, field, value)
    except (TypeError, ValueError) as e:
      # The same type as protobuf's (the original let those through).
      raise _with_context(
          e, f"{type(obj).__name__}: invalid {field}={value!r} for "
          f"{proto.DESCRIPTOR.full_name}") from e


class _OneofBuilder:
  """Builds a config message with one case of its `type` oneof set.

  Subclasses set `_CONFIG` (the message class) and `_CASE` (the oneof case);
  `as_proto()` returns a new `_CONFIG` whose case `_CASE` is set (even when
  it has no fields) and holds the builder's public, non-None attributes.
  """

  _CONFIG: Type[message.Message]
  _CASE: str

  def as_proto(self) -> message.Message:
    """Returns a new `_CONFIG` message with case `_CASE` filled.

    Raises:
      TypeError, ValueError: an attribute's value does not fit its proto
        field (protobuf's exception, with the builder and field named).
    """
    config = self._CONFIG()
    _convert_to_proto(self, getattr(config, self._CASE))
    return config


class Optimizer(abc.ABC):
  """The abstract base class of optimizer builders."""

  @abc.abstractmethod
  def as_proto(self) -> embedding_hash_table_pb2.OptimizerConfig:
    """Returns the optimizer config.

    Returns:
      A new `OptimizerConfig` with one case of its `type` oneof set.
    """


class _OneofOptimizer(_OneofBuilder, Optimizer):
  """An optimizer that fills the `OptimizerConfig.type` case `_CASE`."""

  _CONFIG = embedding_hash_table_pb2.OptimizerConfig


class StochasticRoundingFloat16OptimizerWrapper(Optimizer):
  """Wraps an optimizer and turns on stochastic rounding to float16.

  After each update the engine rounds the segment's values to one of the two
  float16 values next to the float32 result, at random with the probability
  that keeps the expected value (the optimizer state stays float32).

  Args:
    optimizer: the optimizer whose config is wrapped.
  """

  def __init__(self, optimizer: Optimizer):
    self._optimizer = optimizer

  def as_proto(self) -> embedding_hash_table_pb2.OptimizerConfig:
    """Returns the wrapped optimizer's config with stochastic rounding on.

    Raises:
      TypeError, ValueError: the wrapped builder's `as_proto()` raises it.
    """
    config = self._optimizer.as_proto()
    config.stochastic_rounding_float16 = True
    return config


@monolith_export
class SgdOptimizer(_OneofOptimizer):
  r"""Stochastic gradient descent: x_{i+1} = x_i - \eta * grad.

  Args:
    learning_rate: the config's learning_rate (not read by the engine: \eta is
      the segment's learning-rate function).
  """

  _CASE = "sgd"

  def __init__(self, learning_rate: Optional[float] = None):
    self.learning_rate = learning_rate


@monolith_export
class AdagradOptimizer(_OneofOptimizer):
  r"""Adagrad (http://jmlr.org/papers/v12/duchi11a.html).

  g = grad + weight_decay_factor * x;  n_{i+1} = n_i + g^2;
  x_{i+1} = x_i - \eta / sqrt(n_{i+1}) * g.

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    initial_accumulator_value: the starting value of the accumulator n;
      None keeps the proto default (0.1).
    hessian_compression_times: kept in the config; unused (as in Monolith).
    warmup_steps: when positive, \eta is scaled by
      min(1, global_step / warmup_steps).
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
  r"""Adadelta (https://arxiv.org/abs/1212.5701).

  g = grad + weight_decay_factor * x;  a' = rho * a + (1 - rho) * g^2;
  u = sqrt(b + epsilon) / sqrt(a' + epsilon) * g;  x -= \eta * u;
  b' = rho * b + (1 - rho) * u^2.

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    weight_decay_factor: weight decay added to the gradient.
    averaging_ratio: rho, the decay of both averages, in [0, 1].
    epsilon: the offset under both square roots, at least 1.18e-38 (the
      least normal float; TF's kernels flush smaller ones to 0).
    warmup_steps: when positive, \eta is scaled by
      min(1, global_step / warmup_steps).
  """

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
  r"""Adam (https://arxiv.org/abs/1412.6980), with per-entry beta powers.

  g = grad + weight_decay_factor * x;
  m_{i+1} = beta1 * m_i + (1 - beta1) * g;
  v_{i+1} = beta2 * v_i + (1 - beta2) * g^2;
  x_{i+1} = x_i - \eta_t * m_{i+1} / (sqrt(v_{i+1}) + epsilon), with
  \eta_t = \eta * sqrt(1 - beta2^t) / (1 - beta1^t), t the entry's updates.

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    beta1: decay rate of the first moment, in [0, 1).
    beta2: decay rate of the second moment, in [0, 1).
    use_beta1_warmup: kept in the config; unused (as in Monolith).
    weight_decay_factor: weight decay added to the gradient.
    use_nesterov: whether the step uses the Nesterov form
      (1 - beta1) * g + beta1 * m_{i+1} in place of m_{i+1}.
    epsilon: offset that keeps the denominator away from zero, at least
      1.18e-38 (the least normal float; TF's kernels flush smaller ones to 0).
    warmup_steps: when positive, \eta is scaled by
      min(1, global_step / warmup_steps).
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
  """AMSGrad (https://openreview.net/forum?id=ryQu7f-RZ).

  Adam (see `AdamOptimizer`) whose step divides by the running maximum
  vhat = max(vhat, v) of the second moment instead of v.

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    beta1: decay rate of the first moment, in [0, 1).
    beta2: decay rate of the second moment, in [0, 1).
    weight_decay_factor: weight decay added to the gradient.
    use_nesterov: whether the step uses the Nesterov form of the moment.
    epsilon: offset that keeps the denominator away from zero, at least
      1.18e-38 (the least normal float; TF's kernels flush smaller ones to 0).
    warmup_steps: when positive, the learning rate is scaled by
      min(1, global_step / warmup_steps).
  """

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
  r"""Batch softmax's estimate of the steps between occurrences of an id.

  From https://research.google/pubs/pub48840/: the segment (dim 1) holds
  B = (1 - \eta) * B + \eta * (global_step - A), where A is the global step
  of the entry's previous update; the gradient is not used. Pair it with
  `BatchSoftmaxInitializer`.

  Args:
    learning_rate: the config's learning_rate (not read by the engine: \eta is
      the segment's learning-rate function).
  """

  _CASE = "batch_softmax"

  def __init__(self, learning_rate: Optional[float] = None):
    self.learning_rate = learning_rate


@monolith_export
class MomentumOptimizer(_OneofOptimizer):
  r"""SGD with (optionally Nesterov) momentum.

  dx = \eta * (grad + weight_decay_factor * x);  n' = momentum * n - dx;
  x += n' (plain) or x += -momentum * n + (1 + momentum) * n' (Nesterov).

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    weight_decay_factor: weight decay added to the gradient.
    use_nesterov: whether to use Nesterov momentum.
    momentum: the decay of the velocity n, in [0, 1].
    warmup_steps: when positive, \eta is scaled by
      min(1, global_step / warmup_steps).
  """

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
  """Keeps a moving average of the pushed values instead of descending.

  x = momentum * x + (1 - momentum) * grad, where "grad" is the value pushed;
  no learning rate, no optimizer state and no entry in the dumps.

  Args:
    momentum: the weight of the old value, in [0, 1].
  """

  _CASE = "moving_average"

  def __init__(self, momentum: float = 0.9):
    self.momentum = momentum


class _RmspropFamily(_OneofOptimizer):
  """The arguments of both RMSProp variants (see `RmspropOptimizer`)."""

  def __init__(self,
               learning_rate: Optional[float] = None,
               weight_decay_factor: float = 0.0,
               momentum: float = 0.9):
    self.learning_rate = learning_rate
    self.weight_decay_factor = weight_decay_factor
    self.momentum = momentum


@monolith_export
class RmspropOptimizer(_RmspropFamily):
  r"""RMSProp.

  dx = grad + weight_decay_factor * x;
  n' = momentum * n + (1 - momentum) * dx^2;  x -= \eta / (sqrt(n') + 1) * dx.
  Unlike Monolith, \eta is the segment's learning-rate function, not the
  config's learning_rate.

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    weight_decay_factor: weight decay added to the gradient.
    momentum: the decay of the accumulator n, in [0, 1].
  """

  _CASE = "rmsprop"


@monolith_export
class RmspropV2Optimizer(_RmspropFamily):
  r"""RMSProp, second variant: the new square is added with weight 1.

  dx = grad + weight_decay_factor * x;  n' = momentum * n + dx^2;
  x -= \eta / (sqrt(n') + 1) * dx.

  Args: as for `RmspropOptimizer`.
  """

  _CASE = "rmspropv2"


class _FtrlFamily(_OneofOptimizer):
  """The arguments of both FTRL optimizers (see `FtrlOptimizer`)."""

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


class FTRLWithGroupSparsityOptimizer(_FtrlFamily):
  """FTRL with group sparsity: L1 acts on the whole segment at once.

  The accumulators n and z are updated per coordinate as in `FtrlOptimizer`;
  the segment is then zero when the L2 norm |z| <= l1, else
  x = lr * z * (l1 - |z|) / |z| / (beta + sqrt(n) + l2 * lr).

  Args: as for `FtrlOptimizer`, l1 acting on the group; None keeps this
    config's proto defaults (initial_accumulator_value 0.0, beta 1.0).
  """

  _CASE = "group_ftrl"


@monolith_export
class AdaGradWithGroupLassoOptimizer(_OneofOptimizer):
  """Adagrad with a group-lasso penalty on the whole segment.

  g = grad + weight_decay_factor * x;  acc += max_i g_i^2;
  a = lr / (beta + sqrt(acc));  z = g - x / a;  x = 0 if |z| <= l2, else
  x = -a * (1 - l2 / |z|) * z, with |z| the segment's L2 norm.

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    beta: added to the accumulator's square root in the denominator; None
      keeps the proto default (0.0).
    initial_accumulator_value: the starting value of the accumulator; None
      keeps the proto default (0.1).
    l2_regularization: the group L2 regularization strength l2.
    weight_decay_factor: weight decay added to the gradient.
    warmup_steps: when positive, the learning rate is scaled by
      min(1, global_step / warmup_steps).
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

  Coupled: g = grad + wd * x; n += g^2; x -= lr / sqrt(n) * g.
  Decoupled: n += grad^2; x -= lr / sqrt(n) * grad + lr * wd * x.
  With enable_dynamic_wd, wd is scaled by gap ** (+-1 / temperature), gap the
  global steps since the entry's last update (1 for its first), and the
  decay lr * wd is capped at 1 (coupled or decoupled; at a rate of 0 or
  below, coupled decay keeps its unscaled factor).

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    initial_accumulator_value: the starting value of the accumulator n; None
      keeps the proto default (0.1).
    hessian_compression_times: kept in the config; unused.
    warmup_steps: when positive, the learning rate is scaled by
      min(1, global_step / warmup_steps).
    weight_decay_factor: the weight decay factor wd.
    decouple_weight_decay: whether the decay is applied apart from the
      gradient step (decoupled) or added to the gradient (coupled).
    enable_dynamic_wd: whether the decay is scaled by the number of steps
      since the entry was last updated.
    flip_direction: whether that scaling is inverted (rarely updated entries
      decay less instead of more).
    dynamic_wd_temperature: temperature of that scaling, > 0.
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
class FtrlOptimizer(_FtrlFamily):
  """FTRL-Proximal (https://dl.acm.org/citation.cfm?id=2488200).

  Per coordinate: n' = n + g^2;  sigma = (sqrt(n') - sqrt(n)) / lr;
  z += g - sigma * x;  x = 0 if |z| <= l1, else
  x = lr * (sign(z) * l1 - z) / (sqrt(n') + beta + l2 * lr). (Monolith uses
  signbit(z) for sign(z); the two agree when l1 = 0.)

  Args:
    learning_rate: the config's learning_rate (not read by the engine).
    initial_accumulator_value: the starting value of n; None keeps the
      proto default (0.1).
    beta: beta of FTRL; None keeps the proto default (0.0).
    warmup_steps: when positive, the learning rate is scaled by
      min(1, global_step / warmup_steps).
    l1_regularization: lambda1, the L1 regularization strength.
    l2_regularization: lambda2, the L2 regularization strength.
  """

  _CASE = "ftrl"


class Initializer(abc.ABC):
  """The abstract base class of initializer builders.

  The initializer gives a new entry's segment its first values, when an id is
  first written (assign, assign_add, apply_gradients, reinitialize); lookups
  of unknown ids return zeros and insert nothing.
  """

  @abc.abstractmethod
  def as_proto(self) -> embedding_hash_table_pb2.InitializerConfig:
    """Returns the initializer config.

    Returns:
      A new `InitializerConfig` with one case of its `type` oneof set.
    """


class _OneofInitializer(_OneofBuilder, Initializer):
  """An initializer that fills the `InitializerConfig.type` case `_CASE`."""

  _CONFIG = embedding_hash_table_pb2.InitializerConfig


@monolith_export
class ZerosInitializer(_OneofInitializer):
  """Initializes new embeddings to zeros."""

  _CASE = "zeros"


@monolith_export
class ConstantsInitializer(_OneofInitializer):
  """Initializes every element of new embeddings to `constant`.

  Args:
    constant: the value of every element.
  """

  _CASE = "constants"

  def __init__(self, constant: float):
    self.constant = constant


class RandomUniformInitializer(_OneofInitializer):
  """Initializes new embeddings uniformly in [minval, maxval).

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

  Args:
    init_step_interval: the starting interval, at least 1.

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
  """The abstract base class of serving compressor builders.

  The compressor encodes a segment's values in tables created for serving
  (SERVING entries, see `export_context`); training entries keep float32.
  """

  @abc.abstractmethod
  def as_proto(self) -> embedding_hash_table_pb2.FloatCompressorConfig:
    """Returns the compressor config.

    Returns:
      A new `FloatCompressorConfig` with one case of its `type` oneof set.
    """


class _OneofCompressor(_OneofBuilder, Compressor):
  """A compressor that fills the `FloatCompressorConfig.type` case `_CASE`."""

  _CONFIG = embedding_hash_table_pb2.FloatCompressorConfig


@monolith_export
class OneBitCompressor(_OneofCompressor):
  """Serves each element as one bit, decoded to +amplitude or -amplitude.

  The bit is whether amplitude * tanh(init_scale * x) > 0 (HashNet), so the
  served value is +-amplitude by the sign of x (0 and NaN give -amplitude).

  Training lookups return HashNet's amplitude * tanh(scale * x), scale
  growing every step_size global steps, and gradients pass through its
  derivative (see docs/hash_table.md, Compressors).

  Args:
    step_size: global steps between increases of HashNet's scale (> 0).
    amplitude: the magnitude of every served value.
  """

  _CASE = "one_bit"

  def __init__(self, step_size: int = 200, amplitude: float = 0.05):
    self.step_size = step_size
    self.amplitude = amplitude


@monolith_export
class FixedR8Compressor(_OneofCompressor):
  """Serves each element as 8 bits over the fixed range [-r, r].

  A value is served as the nearest multiple of r / 128 (ties away from zero),
  clamped to [-r, r - r / 128]. Training lookups return that quantized value
  too; gradients update the stored float (see docs/hash_table.md,
  Compressors).

  Args:
    fixed_range: r, finite and > 0.
  """

  _CASE = "fixed_r8"

  def __init__(self, fixed_range: float = 1.0):
    self.r = fixed_range


@monolith_export
class Fp16Compressor(_OneofCompressor):
  """Serves embeddings as float16 (round to nearest even), halving memory."""

  _CASE = "fp16"


@monolith_export
class Fp32Compressor(_OneofCompressor):
  """Serves embeddings as float32, unchanged."""

  _CASE = "fp32"


def _as_proto(builder: Any, proto_type: type, argument: str) -> Any:
  """`builder.as_proto()`, or `builder` itself, checked to be a `proto_type`."""
  if isinstance(builder, type):
    raise TypeError(f"{argument} must be a {proto_type.__name__} or a builder "
                    f"of one, got the class {builder.__name__} (an "
                    f"instance: {builder.__name__}())")
  proto = builder.as_proto() if hasattr(builder, "as_proto") else builder
  if not isinstance(proto, proto_type):
    raise TypeError(f"{argument} must be a {proto_type.__name__} or a builder "
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

  Args:
    dim_size: the number of floats of the segment, a positive int.
    initializer: a builder of this module or an `InitializerConfig`.
    optimizer: a builder of this module or an `OptimizerConfig`.
    compressor: a builder of this module or a `FloatCompressorConfig`.

  Returns:
    A new `EntryConfig.Segment` holding copies of the three configs.

  Raises:
    TypeError: `dim_size` is not an integer (a bool neither), or a config
      is neither a builder nor the expected proto (as the original's proto
      field assignments raised).
    ValueError: `dim_size` is below 1, or a builder's value does not fit its
      proto field.
  """
  # numbers.Integral: numpy integers too (dims read from arrays or configs).
  if isinstance(dim_size, bool) or not isinstance(dim_size, numbers.Integral):
    raise TypeError(f"dim_size must be a positive integer, got {dim_size!r}")
  if dim_size < 1:
    raise ValueError(f"dim_size must be a positive integer, got {dim_size!r}")
  segment = embedding_hash_table_pb2.EntryConfig.Segment()
  segment.dim_size = int(dim_size)
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
    """Writes this table type's fields into `table_config`.

    Args:
      table_config: the config to modify in place.
    """


class CuckooHashTableConfig(HashTableConfig):
  """A cuckoo hash table (the CPU engine's table type).

  Args:
    initial_capacity: the number of entries to reserve at creation.
    feature_evict_every_n_hours: when positive, turns on feature eviction and
      sets its interval; 0 leaves eviction off.
  """

  def __init__(self,
               initial_capacity: int = 1,
               feature_evict_every_n_hours: int = 0):
    self._initial_capacity = utils.check_count(
        initial_capacity, "CuckooHashTableConfig initial_capacity")
    self._feature_evict_every_n_hours = feature_evict_every_n_hours

  def mutate_table(
      self, table_config: embedding_hash_table_pb2.EmbeddingHashTableConfig
  ) -> None:
    """Sets the cuckoo type, the capacity and, if asked for, eviction.

    Args:
      table_config: the config to modify in place.
    """
    table_config.initial_capacity = self._initial_capacity
    table_config.cuckoo.SetInParent()
    if self._feature_evict_every_n_hours > 0:
      table_config.enable_feature_eviction = True
      table_config.feature_evict_every_n_hours = (
          self._feature_evict_every_n_hours)


class GpucucoHashTableConfig(HashTableConfig):
  """A table in GPU memory (see docs/gpu.md).

  `MultiHashTable.from_configs` puts a multi table of such tables on the
  GPU; it needs the CUDA op library (`--config=cuda`) and a GPU.

  Args:
    initial_capacity: the number of entries the first map holds before it
      grows.
  """

  def __init__(self, initial_capacity: int = 1 << 16):
    self._initial_capacity = utils.check_count(
        initial_capacity, "GpucucoHashTableConfig initial_capacity")

  def mutate_table(
      self, table_config: embedding_hash_table_pb2.EmbeddingHashTableConfig
  ) -> None:
    """Sets the gpucuco type and the capacity.

    Args:
      table_config: the config to modify in place.
    """
    table_config.initial_capacity = self._initial_capacity
    table_config.gpucuco.SetInParent()


class HashTableConfigInstance:
  """A table config with one learning rate (or function) per segment.

  `str()` identifies the configuration: two instances with the same table
  config and learning-rate functions print the same (the original merged
  such slots into one table; `MultiHashTable` keeps one table per slot).

  Args:
    table_config: the finished table config.
    learning_rate_fns: per segment, in segment order, a learning rate (a
      number or tensor) or a callable with no arguments that returns one
      (e.g. a `learning_rate_functions.LearningRateFunction`).
      `MultiHashTable` requires one per segment.
    extra_restore_names: the original's further table names to restore
      this table from; a copy is kept, but `MultiHashTable` does not read
      it (nor did the original's): tables restore from their own names.
  """

  def __init__(self,
               table_config: embedding_hash_table_pb2.EmbeddingHashTableConfig,
               learning_rate_fns: List[LearningRate],
               extra_restore_names: Optional[Sequence[str]] = None):
    # Any sequence, as the original took (e.g. a numpy array of rates); not
    # a set or a generator, whose order is not the segments'.
    if (isinstance(learning_rate_fns, (str, bytes)) or
        not isinstance(learning_rate_fns, (collections.abc.Sequence,
                                           np.ndarray))):
      raise TypeError("learning_rate_fns must be a list with a learning rate "
                      "(or a callable returning one) per segment, got "
                      f"{type(learning_rate_fns).__name__} "
                      f"{learning_rate_fns!r}")
    if not isinstance(table_config,
                      embedding_hash_table_pb2.EmbeddingHashTableConfig):
      raise TypeError(
          "table_config must be an EmbeddingHashTableConfig (e.g. made by "
          "CuckooHashTableConfig().mutate_table(config)), got "
          f"{type(table_config).__name__}")
    # A list is kept, as the original kept it (and the table config): code
    # that appends segments and their rates after construction counts on
    # it. Other sequences are copied into one.
    if not isinstance(learning_rate_fns, list):
      learning_rate_fns = list(learning_rate_fns)
    for i, fn in enumerate(learning_rate_fns):
      if fn is None or isinstance(fn, (str, bytes, bool)):
        raise TypeError(f"learning_rate_fns[{i}] must be a number, a tensor "
                        f"or a callable, got {fn!r}")
    self._table_config = table_config
    self.extra_restore_names = copy.copy(extra_restore_names) or []
    self._learning_rate_fns = learning_rate_fns
    self._learning_rate_tensor = None

  def __str__(self) -> str:
    """The deterministic serialized table config and the functions' `str()`."""
    serialized = self._table_config.SerializeToString(deterministic=True)
    fns = ", ".join(str(fn) for fn in self._learning_rate_fns)
    return f"TableConfigPB: {serialized}, LearningRateFns: [{fns}]"

  @property
  def table_config(self) -> embedding_hash_table_pb2.EmbeddingHashTableConfig:
    """The table config given at construction (not a copy)."""
    return self._table_config

  @property
  def learning_rate_fns(self) -> List[LearningRate]:
    """The per-segment learning rates or functions given at construction
    (the caller's list itself, where it gave a list)."""
    return self._learning_rate_fns

  @property
  def learning_rate_tensor(self) -> Optional[tf.Tensor]:
    """The tensor given to `set_learning_rate_tensor`, or None."""
    return self._learning_rate_tensor

  def set_learning_rate_tensor(self, learning_rate_tensor: tf.Tensor) -> None:
    """Records a tensor of this table's learning rates for later reading.

    Args:
      learning_rate_tensor: the tensor `learning_rate_tensor` returns.
    """
    self._learning_rate_tensor = learning_rate_tensor

  def _call_learning_rate_fns(
      self,
      cast: bool,
      called: Optional[Dict[int, Tuple[Any, Any]]] = None) -> List[Any]:
    if not self._learning_rate_fns:
      raise ValueError("learning_rate_fns must not be empty")
    rates = []
    for i, fn in enumerate(self._learning_rate_fns):
      if called is not None and callable(fn) and id(fn) in called:
        rates.append(called[id(fn)][1])
        continue
      try:
        rate = fn() if callable(fn) else fn
        if rate is None:
          raise TypeError("it returned None")
        # Tables' rates are stacked together: float64 schedules and tensors
        # are cast, numbers stay Python floats (one constant for them all).
        if cast or (tf.is_tensor(rate) and rate.dtype != tf.float32):
          rate = tf.cast(rate, dtype=tf.float32)
        elif not tf.is_tensor(rate):
          rate = float(rate)
      except (TypeError, ValueError) as e:
        raise _with_context(e, f"learning_rate_fns[{i}] ({fn!r})") from e
      if called is not None and callable(fn):
        called[id(fn)] = (fn, rate)  # fn kept: its id() stays its own
      rates.append(rate)
    return rates

  def call_learning_rate_fns(self) -> tf.Tensor:
    """Returns the per-segment learning rates stacked in a float32 vector.

    Callables are called (in the "learning_rate" name scope); constants are
    cast to float32.

    Returns:
      A float32 tensor of shape [number of segments].

    Raises:
      ValueError: `learning_rate_fns` is empty.
    """
    with tf.name_scope("learning_rate"):
      return tf.stack(self._call_learning_rate_fns(cast=True))

  def call_learning_rate_fns_fewer_ops(
      self,
      called: Optional[Dict[int, Tuple[Any, Any]]] = None
  ) -> List[Union[float, tf.Tensor]]:
    """Returns the per-segment learning rates as a list.

    Callables are called; constant rates are returned as Python floats,
    without ops, for the caller to stack with other tables' rates; tensors
    of other dtypes are cast to float32.

    Args:
      called: a dict to share between the calls of several configs: a
        function met before (the same object) gives the rate it gave then,
        so a schedule shared by 2,000 tables builds its ops once, not 2,000
        times (a random schedule then gives them one value).

    Returns:
      One learning rate (a float or a float32 scalar tensor) per segment.

    Raises:
      ValueError: `learning_rate_fns` is empty.
    """
    with tf.name_scope("learning_rate"):
      return self._call_learning_rate_fns(cast=False, called=called)
