"""Tests for learning_rate_functions: schedules against closed-form values."""

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import learning_rate_functions


def _rates_at_steps(fn, steps):
  """Evaluates fn() in a fresh graph with the global step set to each step."""
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    global_step = tf.compat.v1.train.get_or_create_global_step()
    rate = fn()
    step_value = tf.compat.v1.placeholder(tf.int64, [])
    set_step = tf.compat.v1.assign(global_step, step_value)
    sess.run(tf.compat.v1.global_variables_initializer())
    rates = []
    for step in steps:
      sess.run(set_step, {step_value: step})
      rates.append(sess.run(rate))
    return np.array(rates)


def test_linear_decay_reaches_end_and_stays():
  fn = learning_rate_functions.PolynomialDecay(initial_learning_rate=0.01,
                                               decay_steps=10,
                                               end_learning_rate=0.11)
  steps = [0, 1, 2, 5, 10, 15]
  expected = [0.01, 0.02, 0.03, 0.06, 0.11, 0.11]
  np.testing.assert_allclose(_rates_at_steps(fn, steps), expected, rtol=1e-6)


def test_power_two_decay():
  fn = learning_rate_functions.PolynomialDecay(initial_learning_rate=1.0,
                                               decay_steps=4,
                                               end_learning_rate=0.0,
                                               power=2.0)
  steps = [0, 1, 2, 3, 4, 8]
  expected = [(1 - min(s, 4) / 4)**2 for s in steps]
  np.testing.assert_allclose(_rates_at_steps(fn, steps), expected, atol=1e-7)


@pytest.mark.parametrize("cycle", [True, 1, np.int64(2)])
def test_cycle_restarts_with_longer_period(cycle):
  # Integers as the original took them (its config files hold 0 and 1).
  fn = learning_rate_functions.PolynomialDecay(initial_learning_rate=1.0,
                                               decay_steps=10,
                                               end_learning_rate=0.0,
                                               cycle=cycle)
  steps = [0, 5, 10, 15, 20, 25]
  # The period is the first multiple of 10 that is >= step (10 at step 0).
  periods = [10, 10, 10, 20, 20, 30]
  expected = [1 - s / p for s, p in zip(steps, periods)]
  np.testing.assert_allclose(_rates_at_steps(fn, steps), expected, atol=1e-7)


def test_integer_initial_rate_gives_float_rate():
  fn = learning_rate_functions.PolynomialDecay(initial_learning_rate=1,
                                               decay_steps=2,
                                               end_learning_rate=0)
  np.testing.assert_allclose(_rates_at_steps(fn, [1]), [0.5])


def test_ops_are_under_the_polynomial_decay_scope_whatever_the_name():
  # As the original's, which never passed `name` on: a name that is no
  # valid scope works, and the result keeps its usual name.
  with tf.Graph().as_default():
    for name in ("my_lr", "warmup lr", "_private", None):
      rate = learning_rate_functions.PolynomialDecay(0.1, 10, name=name)()
      assert rate.op.name.startswith("PolynomialDecay"), (name, rate.op.name)
      assert rate.dtype == tf.float32
    with tf.name_scope("outer"):
      assert learning_rate_functions.PolynomialDecay(
          0.1, 10)().op.name == "outer/PolynomialDecay"


def test_str_identifies_class_and_params():
  fn1 = learning_rate_functions.PolynomialDecay(initial_learning_rate=0.01,
                                                decay_steps=10,
                                                end_learning_rate=0.11)
  fn2 = learning_rate_functions.PolynomialDecay(initial_learning_rate=0.01,
                                                decay_steps=10,
                                                end_learning_rate=0.11)
  fn3 = learning_rate_functions.PolynomialDecay(initial_learning_rate=0.01,
                                                decay_steps=20,
                                                end_learning_rate=0.11)
  assert str(fn1) == str(fn2)
  assert str(fn1) != str(fn3)
  assert str(fn1) == (
      'LearningRateFunction("PolynomialDecay",Params:cycle=False,'
      "decay_steps=10,end_learning_rate=0.11,initial_learning_rate=0.01,"
      "name=None,power=1.0)")


@pytest.mark.parametrize("decay_steps", [0, -3, float("nan"), 2j])
def test_non_positive_decay_steps_rejected(decay_steps):
  with pytest.raises(ValueError, match="decay_steps"):
    learning_rate_functions.PolynomialDecay(0.1, decay_steps)


@pytest.mark.parametrize("kwargs, message", [
    (dict(decay_steps="100"), "decay_steps must be a number or a tensor, got "
     "'100'"),
    (dict(initial_learning_rate="0.1"), "initial_learning_rate must be"),
    (dict(initial_learning_rate=None), "initial_learning_rate must be a "
     "number or a tensor, got None"),
    (dict(decay_steps=None), "decay_steps must be"),
    (dict(power=None), "power must be"),
    (dict(cycle="False"), "cycle must be a bool or an integer, got 'False'"),
    (dict(cycle=1.0), "cycle must be a bool or an integer, got 1.0"),
])
def test_arguments_of_the_wrong_kind_are_rejected(kwargs, message):
  # A string failed at the first session.run; the string "False" cycled.
  args = dict(initial_learning_rate=0.1, decay_steps=10)
  args.update(kwargs)
  with pytest.raises(TypeError, match=message):
    learning_rate_functions.PolynomialDecay(**args)


def test_base_class_is_abstract():
  with pytest.raises(TypeError):
    learning_rate_functions.LearningRateFunction()

  class Constant(learning_rate_functions.LearningRateFunction):

    def __init__(self, value):
      self.value = value

    def __call__(self):
      return tf.constant(self.value)

  assert str(Constant(0.5)) == (
      'LearningRateFunction("Constant",Params:value=0.5)')
  assert float(Constant(0.5)()) == 0.5


def test_drives_a_dense_optimizer():
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    global_step = tf.compat.v1.train.get_or_create_global_step()
    var = tf.compat.v1.Variable([1.0, 2.0])
    grad = tf.constant([1.0, 2.0])
    fn = learning_rate_functions.PolynomialDecay(initial_learning_rate=0.4,
                                                 decay_steps=4,
                                                 end_learning_rate=0.0)
    opt = tf.compat.v1.train.GradientDescentOptimizer(fn)
    train_op = opt.apply_gradients([(grad, var)], global_step=global_step)
    sess.run(tf.compat.v1.global_variables_initializer())
    for _ in range(3):
      sess.run(train_op)
    # Steps 0, 1, 2 use rates 0.4, 0.3, 0.2.
    np.testing.assert_allclose(sess.run(var), [1.0 - 0.9, 2.0 - 1.8],
                               rtol=1e-6)
    assert sess.run(global_step) == 3
