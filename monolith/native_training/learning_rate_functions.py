"""Learning-rate schedules for embedding segments and dense optimizers.

A `LearningRateFunction` is a callable with no arguments that returns the
current learning rate as a scalar tensor, built from the graph's global step.
It can be passed as a `learning_rate_fn` of an embedding table segment (see
`entry.HashTableConfigInstance`) or as the `learning_rate` of a
`tf.compat.v1.train` optimizer, which calls it when it builds its update ops.

`str()` of a function names its class and parameters; two functions with the
same class and parameters print the same, so table configs that use them
print the same too (`entry.HashTableConfigInstance`).
"""

import abc
import numbers
from typing import Optional, Union

import numpy as np
import tensorflow as tf

_Number = Union[int, float, tf.Tensor]


class LearningRateFunction(abc.ABC):
  """Base class of learning-rate schedules: implement `__call__`."""

  @abc.abstractmethod
  def __call__(self) -> tf.Tensor:
    """Returns the learning rate as a scalar tensor."""

  def __str__(self) -> str:
    params = ",".join(
        f"{key}={value}" for key, value in sorted(vars(self).items()))
    return f'LearningRateFunction("{type(self).__name__}",Params:{params})'


class PolynomialDecay(LearningRateFunction):
  """Decays `initial_learning_rate` to `end_learning_rate` over `decay_steps`.

  With `step` the global step, the learning rate is

    (initial - end) * (1 - step / decay_steps) ** power + end

  where, without `cycle`, `step` stops at `decay_steps` (the rate then stays
  at `end_learning_rate`); with `cycle`, `decay_steps` is replaced by the
  first multiple of it that is >= step (at least `decay_steps` itself), so the
  schedule restarts from a lower peak every `decay_steps` steps. This is the
  schedule of `tf.compat.v1.train.polynomial_decay`.

  The global step is `tf.compat.v1.train.get_or_create_global_step()` of the
  default graph, so call the function in graph mode.
  """

  def __init__(self,
               initial_learning_rate: _Number,
               decay_steps: _Number,
               end_learning_rate: _Number = 0.0001,
               power: _Number = 1.0,
               cycle: bool = False,
               name: Optional[str] = None):
    """Creates the schedule.

    Args:
      initial_learning_rate: learning rate at step 0.
      decay_steps: steps to decay over; a Python number must be positive.
      end_learning_rate: learning rate reached at `decay_steps`.
      power: power of the polynomial; 1.0 is a linear decay.
      cycle: whether to restart the decay after `decay_steps` steps (a bool,
        or an integer: nonzero is true).
      name: kept for the original's signature; the ops are under the
        "PolynomialDecay" scope whatever it is, as the original's (which
        never passed it on): any string, or None, is fine.

    Raises:
      ValueError: `decay_steps` is a Python number that is not positive.
      TypeError: a number is given as a string or None, or `cycle` is
        neither a bool nor an integer.
    """
    super().__init__()
    for arg, value in (("initial_learning_rate", initial_learning_rate),
                       ("decay_steps", decay_steps),
                       ("end_learning_rate", end_learning_rate),
                       ("power", power)):
      if value is None or isinstance(value, (str, bytes)):
        # Taken, a string failed at the first session.run (Cast string to
        # float), None where the rate was built, with TF's own error.
        raise TypeError(f"{arg} must be a number or a tensor, got {value!r}")
    if not isinstance(cycle, (bool, np.bool_, numbers.Integral)):
      # "False" is true. Integers (0, 1 from a config) the original took.
      raise TypeError(f"cycle must be a bool or an integer, got {cycle!r}")
    # `not > 0`: NaN too (every rate NaN), and a complex number.
    if isinstance(decay_steps, numbers.Number) and not (
        isinstance(decay_steps, numbers.Real) and decay_steps > 0):
      raise ValueError(f"decay_steps must be positive, got {decay_steps}")
    self.initial_learning_rate = initial_learning_rate
    self.decay_steps = decay_steps
    self.end_learning_rate = end_learning_rate
    self.power = power
    self.cycle = cycle
    self.name = name

  def __call__(self) -> tf.Tensor:
    global_step = tf.compat.v1.train.get_or_create_global_step()
    with tf.name_scope("PolynomialDecay") as scope:
      initial = tf.convert_to_tensor(self.initial_learning_rate,
                                     dtype_hint=tf.float32,
                                     name="initial_learning_rate")
      dtype = initial.dtype
      end = tf.cast(self.end_learning_rate, dtype)
      power = tf.cast(self.power, dtype)
      step = tf.cast(global_step, dtype)
      decay_steps = tf.cast(self.decay_steps, dtype)
      if self.cycle:
        # At step 0 the first period is used, not a zero-length one.
        periods = tf.maximum(tf.math.ceil(step / decay_steps), 1)
        decay_steps = decay_steps * periods
      else:
        step = tf.minimum(step, decay_steps)
      fraction = 1 - step / decay_steps
      # Named as the scope, as tf.compat.v1.train.polynomial_decay (the
      # original's) names its result.
      return tf.add((initial - end) * tf.pow(fraction, power), end,
                    name=scope)
