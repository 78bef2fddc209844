"""Every hash table optimizer through MultiHashTable.apply_gradients.

One graph holds one MultiHashTable with a table per optimizer case, plus a
two-segment and a three-segment entry (one optimizer and one learning rate
per segment). Each step feeds per-table ids and gradients, the global step
and a learning-rate scale; every segment's learning rate is its own base rate
times that scale. After each step the embeddings (`lookup`) and the optimizer
states (the EntryDumps of `lookup_entry`) are compared with NumPy references
written, in float64, from the formulas of runtime/hash_table/optimizer/*.cc
(the scalar references of optimizer_test.cc), including the deliberate
deviations from Monolith the README lists:

* warmup_steps scales the learning rate by min(1, (global_step + 1) / steps);
* FTRL shrinks by sign(z) * l1 (Monolith: signbit(z) * l1);
* rmsprop uses the learning rate passed in, not its config's learning_rate;
* dynamic_wd_adagrad scales the weight decay by gap ** (+-1 / temperature),
  gap = steps since the entry's last update, decoupled decay capped at 1;
* group_ftrl and group_adagrad act on the whole segment;
* batch_softmax (dim 1) tracks the step interval of each id;
* a dc config is delay-compensated SGD, which apply_gradients (the value
  looked up is the value updated) makes plain SGD;
* stochastic_rounding_float16 leaves one of the two float16 neighbours of the
  float32 result.
"""

import dataclasses
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1
# MultiHashTable builds graphs for tf.compat.v1 sessions, as training does.
tf1.disable_eager_execution()

_GLOBAL_STEPS = [3, 7, 8, 20]
_LR_SCALES = [1.0, 0.5, 0.8, 0.3]
_NUM_STEPS = len(_GLOBAL_STEPS)
_BIG_ID = 1 << 40
_RTOL = 1e-4
_ATOL = 1e-5

# ------------------------------------------------------ NumPy references


class _Ref:
  """A reference optimizer of one segment; state is a dict of arrays.

  `dump_case` is the SingleOptimizerDump case the engine writes (None: no
  dump entry); `dump` returns its expected fields.
  """
  dump_case: Optional[str] = None

  def init_state(self, dim: int) -> dict:
    del dim
    return {}

  def step(self, w, state, g, lr, gs):
    raise NotImplementedError

  def dump(self, state) -> dict:
    del state
    return {}


class _Sgd(_Ref):
  dump_case = "sgd"

  def step(self, w, state, g, lr, gs):
    return w - lr * g


class _Warmup(_Ref):
  """Scales the learning rate of `base` linearly over `steps` global steps."""

  def __init__(self, base: _Ref, steps: int):
    self.base, self.steps = base, steps
    self.dump_case = base.dump_case

  def init_state(self, dim):
    return self.base.init_state(dim)

  def step(self, w, state, g, lr, gs):
    scale = 1.0 if gs >= self.steps - 1 else (gs + 1) / self.steps
    return self.base.step(w, state, g, lr * scale, gs)

  def dump(self, state):
    return self.base.dump(state)


class _Adagrad(_Ref):
  dump_case = "adagrad"

  def __init__(self, init, wd=0.0):
    self.init, self.wd = init, wd

  def init_state(self, dim):
    return {"norm": np.full(dim, self.init)}

  def step(self, w, state, g, lr, gs):
    g = g + self.wd * w
    state["norm"] = state["norm"] + g * g
    return w - lr * g / np.sqrt(state["norm"])

  def dump(self, state):
    return {"norm": state["norm"]}


class _DynamicWdAdagrad(_Ref):
  dump_case = "dynamic_wd_adagrad"

  def __init__(self, init, wd, decouple, dynamic, flip, temperature):
    self.init, self.wd = init, wd
    self.decouple, self.dynamic = decouple, dynamic
    self.exponent = (-1.0 if flip else 1.0) / temperature
    self.capped = 0  # decoupled decays that hit the cap of 1

  def init_state(self, dim):
    return {"norm": np.full(dim, self.init), "last": -1}

  def step(self, w, state, g, lr, gs):
    last = state["last"]
    wd = self.wd
    if self.dynamic:
      gap = 1 if (last < 0 or gs <= last) else gs - last
      wd = self.wd * gap**self.exponent
    if self.decouple:
      decay = lr * wd
      if self.dynamic and decay > 1:
        decay = 1.0
        self.capped += 1
    else:
      g = g + wd * w
      decay = 0.0
    state["norm"] = state["norm"] + g * g
    state["last"] = gs
    return w - lr * g / np.sqrt(state["norm"]) - decay * w

  def dump(self, state):
    return {"norm": state["norm"], "last_update_step": state["last"]}


class _GroupAdagrad(_Ref):
  dump_case = "group_adagrad"

  def __init__(self, init, beta, l2, wd):
    self.init, self.beta, self.l2, self.wd = init, beta, l2, wd

  def init_state(self, dim):
    return {"acc": self.init}

  def step(self, w, state, g, lr, gs):
    g = g + self.wd * w
    state["acc"] += np.max(g * g)
    a = lr / (self.beta + np.sqrt(state["acc"]))
    z = g - w / a
    z_norm = np.linalg.norm(z)
    if z_norm <= self.l2:
      return np.zeros_like(w)
    return -a * (1 - self.l2 / z_norm) * z

  def dump(self, state):
    return {"grad_square_sum": state["acc"]}


class _Ftrl(_Ref):
  """FTRL-Proximal; `group`: L1 shrinks the segment's z norm as a whole."""

  def __init__(self, init, beta, l1, l2, group=False):
    self.init, self.beta, self.l1, self.l2 = init, beta, l1, l2
    self.group = group
    self.dump_case = "group_ftrl" if group else "ftrl"
    self.zeroed = self.kept = 0  # coordinates set to 0 / shrunk

  def init_state(self, dim):
    return {"n": np.full(dim, self.init), "z": np.zeros(dim)}

  def step(self, w, state, g, lr, gs):
    n_new = state["n"] + g * g
    sigma = (np.sqrt(n_new) - np.sqrt(state["n"])) / lr
    z = state["z"] + g - sigma * w
    state["n"], state["z"] = n_new, z
    denom = (self.beta + np.sqrt(n_new)) / lr + self.l2
    if self.group:
      z_norm = np.linalg.norm(z)
      if z_norm <= self.l1:
        w = np.zeros_like(z)
      else:
        w = -z * (1 - self.l1 / z_norm) / denom
    else:
      w = np.where(np.abs(z) <= self.l1, 0.0,
                   -(z - np.sign(z) * self.l1) / denom)
    self.zeroed += int(np.sum(w == 0))
    self.kept += int(np.sum(w != 0))
    return w

  def dump(self, state):
    return {"norm": state["n"], "zero": state["z"]}


class _Adadelta(_Ref):
  dump_case = "adadelta"

  def __init__(self, wd, rho, eps):
    self.wd, self.rho, self.eps = wd, rho, eps

  def init_state(self, dim):
    return {"acc": np.zeros(dim), "acc_up": np.zeros(dim)}

  def step(self, w, state, g, lr, gs):
    g = g + self.wd * w
    rho, eps = self.rho, self.eps
    state["acc"] = rho * state["acc"] + (1 - rho) * g * g
    update = np.sqrt((state["acc_up"] + eps) / (state["acc"] + eps)) * g
    state["acc_up"] = rho * state["acc_up"] + (1 - rho) * update * update
    return w - lr * update

  def dump(self, state):
    return {"accum": state["acc"], "accum_update": state["acc_up"]}


class _Adam(_Ref):
  """Adam / AMSGrad with per-entry beta powers (t = the entry's updates)."""

  def __init__(self, b1, b2, wd, eps, nesterov, amsgrad):
    self.b1, self.b2, self.wd, self.eps = b1, b2, wd, eps
    self.nesterov, self.amsgrad = nesterov, amsgrad
    self.dump_case = "amsgrad" if amsgrad else "adam"
    self.vhat_kept = 0  # coordinates where vhat > v

  def init_state(self, dim):
    return {"m": np.zeros(dim), "v": np.zeros(dim), "vhat": np.zeros(dim),
            "t": 0}

  def step(self, w, state, g, lr, gs):
    b1, b2 = self.b1, self.b2
    state["t"] += 1
    t = state["t"]
    lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    g = g + self.wd * w
    state["m"] = b1 * state["m"] + (1 - b1) * g
    state["v"] = b2 * state["v"] + (1 - b2) * g * g
    self.vhat_kept += int(np.sum(state["v"] < state["vhat"]))
    state["vhat"] = np.maximum(state["vhat"], state["v"])
    m = b1 * state["m"] + (1 - b1) * g if self.nesterov else state["m"]
    v = state["vhat"] if self.amsgrad else state["v"]
    return w - lr_t * m / (np.sqrt(v) + self.eps)

  def dump(self, state):
    t = state["t"]
    d = {"m": state["m"], "v": state["v"], "beta1_power": self.b1**(t + 1),
         "beta2_power": self.b2**(t + 1)}
    if self.amsgrad:
      d["vhat"] = state["vhat"]
    return d


class _Momentum(_Ref):
  dump_case = "momentum"

  def __init__(self, mu, wd, nesterov):
    self.mu, self.wd, self.nesterov = mu, wd, nesterov

  def init_state(self, dim):
    return {"n": np.zeros(dim)}

  def step(self, w, state, g, lr, gs):
    dx = lr * (g + self.wd * w)
    state["n"] = self.mu * state["n"] - dx
    return w + (self.mu * state["n"] - dx if self.nesterov else state["n"])

  def dump(self, state):
    return {"n": state["n"]}


class _MovingAverage(_Ref):
  """w = mu * w + (1 - mu) * grad; no learning rate, no dump entry."""

  def __init__(self, mu):
    self.mu = mu

  def step(self, w, state, g, lr, gs):
    return self.mu * w + (1 - self.mu) * g


class _Rmsprop(_Ref):

  def __init__(self, mu, wd, v2):
    self.mu, self.wd, self.v2 = mu, wd, v2
    self.dump_case = "rmspropv2" if v2 else "rmsprop"

  def init_state(self, dim):
    return {"n": np.zeros(dim)}

  def step(self, w, state, g, lr, gs):
    dx = g + self.wd * w
    state["n"] = self.mu * state["n"] + (1 if self.v2 else 1 - self.mu) * dx**2
    return w - lr / (np.sqrt(state["n"]) + 1) * dx

  def dump(self, state):
    return {"n": state["n"]}


class _BatchSoftmax(_Ref):
  """B = (1 - lr) * B + lr * (global_step - A); A = global_step."""
  dump_case = "batch_softmax"

  def init_state(self, dim):
    assert dim == 1
    return {"a": 0}

  def step(self, w, state, g, lr, gs):
    w = (1 - lr) * w + lr * (gs - state["a"])
    state["a"] = gs
    return w

  def dump(self, state):
    return {"global_step": state["a"]}


# ------------------------------------------------------------- the cases


@dataclasses.dataclass
class _Segment:
  dim: int
  optimizer: object  # an entry.py builder or an OptimizerConfig
  ref: _Ref
  base_lr: float
  initializer: object = dataclasses.field(
      default_factory=entry.ZerosInitializer)
  # The initial value of every element, for tables not set by assign.
  init_value: float = 0.0


@dataclasses.dataclass
class _Case:
  segments: List[_Segment]
  # Per step, the ids whose gradients are applied (repeats are applied in
  # order). Default: two ids every step.
  ids: List[List[int]] = None
  # Whether the ids get known random values (assign) before the first step;
  # otherwise they start at their initializer's value.
  assign: bool = True
  # float16 stochastic rounding: the result is only known to be a neighbour.
  fp16_rounding: bool = False

  def __post_init__(self):
    if self.ids is None:
      self.ids = [[3, _BIG_ID]] * _NUM_STEPS

  @property
  def dim(self) -> int:
    return sum(s.dim for s in self.segments)

  @property
  def all_ids(self) -> List[int]:
    return sorted({i for ids in self.ids for i in ids})


def _one(dim, optimizer, ref, base_lr, **kwargs) -> _Case:
  return _Case([_Segment(dim, optimizer, ref, base_lr)], **kwargs)


# An id updated every step and one updated at the first and last step only
# (per-entry state: beta powers, last update step, batch softmax interval).
_SPARSE_IDS = [[1, 2], [1], [1], [2, 1]]


def _dc_config(lambda_: float) -> embedding_hash_table_pb2.OptimizerConfig:
  config = embedding_hash_table_pb2.OptimizerConfig()
  config.dc.lambda_ = lambda_
  return config


def _cases() -> Dict[str, _Case]:
  """The tables of the test graph by name, each with its references."""
  return {
      "adadelta":
          _one(3,
               entry.AdadeltaOptimizer(weight_decay_factor=0.05,
                                       averaging_ratio=0.8,
                                       epsilon=0.02),
               _Adadelta(0.05, 0.8, 0.02), 0.6),
      "adagrad":
          _one(3,
               entry.AdagradOptimizer(initial_accumulator_value=0.2,
                                      weight_decay_factor=0.03),
               _Adagrad(0.2, 0.03),
               0.3,
               ids=[[5, 6, 5], [6, 5], [5, 5, 5], [6]]),
      "adagrad_warmup":
          _one(2, entry.AdagradOptimizer(initial_accumulator_value=0.1,
                                         warmup_steps=10),
               _Warmup(_Adagrad(0.1), 10), 0.25),
      "adam":
          _one(3,
               entry.AdamOptimizer(beta1=0.8,
                                   beta2=0.95,
                                   weight_decay_factor=0.04,
                                   epsilon=0.001),
               _Adam(0.8, 0.95, 0.04, 0.001, nesterov=False, amsgrad=False),
               0.05,
               ids=_SPARSE_IDS),
      "adam_nesterov":
          _one(3,
               entry.AdamOptimizer(beta1=0.8,
                                   beta2=0.95,
                                   weight_decay_factor=0.04,
                                   use_nesterov=True,
                                   epsilon=0.001),
               _Adam(0.8, 0.95, 0.04, 0.001, nesterov=True, amsgrad=False),
               0.07),
      "amsgrad_nesterov":
          _one(3,
               entry.AmsgradOptimizer(beta1=0.8,
                                      beta2=0.95,
                                      weight_decay_factor=0.04,
                                      use_nesterov=True,
                                      epsilon=0.001),
               _Adam(0.8, 0.95, 0.04, 0.001, nesterov=True, amsgrad=True),
               0.06),
      # No assign: entries start at the initializer's 2.0.
      "batch_softmax":
          _Case([
              _Segment(1,
                       entry.BatchSoftmaxOptimizer(),
                       _BatchSoftmax(),
                       0.4,
                       initializer=entry.BatchSoftmaxInitializer(2.0),
                       init_value=2.0)
          ],
                ids=_SPARSE_IDS,
                assign=False),
      "dc":
          _one(3, _dc_config(0.5), _Sgd(), 0.35),
      "dynamic_wd_coupled":
          _one(3,
               entry.DynamicWdAdagradOptimizer(initial_accumulator_value=0.1,
                                               weight_decay_factor=0.2,
                                               decouple_weight_decay=False,
                                               enable_dynamic_wd=False),
               _DynamicWdAdagrad(0.1, 0.2, False, False, False, 1.0), 0.3),
      "dynamic_wd_coupled_flip":
          _one(3,
               entry.DynamicWdAdagradOptimizer(initial_accumulator_value=0.1,
                                               weight_decay_factor=0.2,
                                               decouple_weight_decay=False,
                                               enable_dynamic_wd=True,
                                               flip_direction=True,
                                               dynamic_wd_temperature=1.0),
               _DynamicWdAdagrad(0.1, 0.2, False, True, True, 1.0),
               0.3,
               ids=_SPARSE_IDS),
      "dynamic_wd_decoupled":
          _one(3,
               entry.DynamicWdAdagradOptimizer(initial_accumulator_value=0.1,
                                               weight_decay_factor=0.5,
                                               decouple_weight_decay=True,
                                               enable_dynamic_wd=True,
                                               flip_direction=False,
                                               dynamic_wd_temperature=0.5),
               _DynamicWdAdagrad(0.1, 0.5, True, True, False, 0.5),
               0.2,
               ids=_SPARSE_IDS),
      "ftrl":
          _one(4,
               entry.FtrlOptimizer(initial_accumulator_value=0.1,
                                   beta=0.5,
                                   l1_regularization=0.35,
                                   l2_regularization=0.2),
               _Ftrl(0.1, 0.5, 0.35, 0.2), 0.5),
      "group_adagrad":
          _one(3,
               entry.AdaGradWithGroupLassoOptimizer(
                   beta=0.3,
                   initial_accumulator_value=0.1,
                   l2_regularization=0.05,
                   weight_decay_factor=0.02),
               _GroupAdagrad(0.1, 0.3, 0.05, 0.02), 0.4),
      "group_adagrad_lasso":
          _one(3,
               entry.AdaGradWithGroupLassoOptimizer(
                   beta=0.3, initial_accumulator_value=0.1,
                   l2_regularization=50.0),
               _GroupAdagrad(0.1, 0.3, 50.0, 0.0), 0.4),
      "group_ftrl":
          _one(3,
               entry.FTRLWithGroupSparsityOptimizer(
                   initial_accumulator_value=0.05,
                   beta=1.0,
                   l1_regularization=0.3,
                   l2_regularization=0.2),
               _Ftrl(0.05, 1.0, 0.3, 0.2, group=True), 0.5),
      "momentum":
          _one(3, entry.MomentumOptimizer(weight_decay_factor=0.05,
                                          momentum=0.7),
               _Momentum(0.7, 0.05, nesterov=False), 0.2),
      "momentum_nesterov":
          _one(3,
               entry.MomentumOptimizer(weight_decay_factor=0.05,
                                       use_nesterov=True,
                                       momentum=0.7),
               _Momentum(0.7, 0.05, nesterov=True), 0.15),
      "moving_average":
          _one(3, entry.MovingAverageOptimizer(momentum=0.6),
               _MovingAverage(0.6), 0.45),
      # The config's learning_rate (0.001) is not used: the one passed is.
      "rmsprop":
          _one(3,
               entry.RmspropOptimizer(learning_rate=0.001,
                                      weight_decay_factor=0.07,
                                      momentum=0.85),
               _Rmsprop(0.85, 0.07, v2=False), 0.3),
      "rmspropv2":
          _one(3,
               entry.RmspropV2Optimizer(learning_rate=0.001,
                                        weight_decay_factor=0.07,
                                        momentum=0.85),
               _Rmsprop(0.85, 0.07, v2=True), 0.25),
      "sgd":
          _one(3, entry.SgdOptimizer(learning_rate=0.9), _Sgd(), 0.5),
      "sgd_fp16_rounding":
          _one(3,
               entry.StochasticRoundingFloat16OptimizerWrapper(
                   entry.SgdOptimizer()),
               _Sgd(),
               0.5,
               fp16_rounding=True),
      # Several optimizers in one entry: each segment gets its own slice of
      # the gradient and its own learning rate (very different rates, so a
      # wrong slice shows).
      "two_segments":
          _Case([
              _Segment(2, entry.AdagradOptimizer(initial_accumulator_value=0.1),
                       _Adagrad(0.1), 0.05),
              _Segment(3, entry.MomentumOptimizer(momentum=0.5),
                       _Momentum(0.5, 0.0, nesterov=False), 0.7),
          ]),
      "three_segments":
          _Case([
              _Segment(1, entry.SgdOptimizer(), _Sgd(), 0.3),
              _Segment(
                  2,
                  entry.FtrlOptimizer(initial_accumulator_value=0.1,
                                      beta=1.0,
                                      l1_regularization=0.1,
                                      l2_regularization=0.1),
                  _Ftrl(0.1, 1.0, 0.1, 0.1), 0.9),
              _Segment(
                  2, entry.AdamOptimizer(beta1=0.9, beta2=0.99),
                  _Adam(0.9, 0.99, 0.0, 0.01, nesterov=False, amsgrad=False),
                  0.01),
          ],
                ids=_SPARSE_IDS),
  }


def _config(case: _Case, lr_scale: tf.Tensor) -> entry.HashTableConfigInstance:
  """The table config of `case`; segment lr = base lr * lr_scale."""
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  for segment in case.segments:
    table_config.entry_config.segments.append(
        entry.CombineAsSegment(segment.dim, segment.initializer,
                               segment.optimizer, entry.Fp32Compressor()))
  learning_rate_fns = [
      (lambda lr=segment.base_lr: lr * lr_scale) for segment in case.segments
  ]
  return entry.HashTableConfigInstance(table_config, learning_rate_fns)


class _RefTable:
  """The reference table of one case: id -> (embedding, segment states)."""

  def __init__(self, case: _Case):
    self._case = case
    self.values: Dict[int, np.ndarray] = {}
    self.states: Dict[int, List[dict]] = {}

  def _insert(self, i: int):
    if i not in self.values:
      self.values[i] = np.concatenate([
          np.full(s.dim, s.init_value, np.float64) for s in self._case.segments
      ])
      self.states[i] = [s.ref.init_state(s.dim) for s in self._case.segments]

  def assign(self, i: int, value: np.ndarray):
    self._insert(i)
    self.values[i] = value.astype(np.float64)

  def apply(self, ids, grads, lr_scale, global_step):
    for i, grad in zip(ids, grads):
      self._insert(i)
      w = self.values[i].copy()
      offset = 0
      for segment, state in zip(self._case.segments, self.states[i]):
        part = slice(offset, offset + segment.dim)
        lr = np.float32(segment.base_lr) * np.float32(lr_scale)
        w[part] = segment.ref.step(w[part], state,
                                   grad[part].astype(np.float64), float(lr),
                                   global_step)
        offset += segment.dim
      self.values[i] = w

  def expected(self, ids) -> np.ndarray:
    """Embeddings of `ids`; zeros for ids never inserted (lookup misses)."""
    return np.stack([
        self.values.get(i, np.zeros(self._case.dim)) for i in ids
    ])


def _fp16_spacing(x: np.ndarray) -> np.ndarray:
  """The gap between consecutive float16 values around |x|."""
  half = np.abs(x).astype(np.float16)
  return np.maximum(np.spacing(half).astype(np.float64), 2.0**-24)


class MultiHashTableOptimizersTest(tf.test.TestCase):

  def _check_dump(self, name, step, ref_table, case, ids, serialized):
    for i, data in zip(ids, serialized):
      dump = embedding_hash_table_pb2.EntryDump.FromString(data)
      self.assertEqual(dump.id, i)
      states = ref_table.states[i]
      segments = [s for s in case.segments if s.ref.dump_case is not None]
      self.assertLen(dump.opt.dump, len(segments), msg=name)
      dumped = iter(dump.opt.dump)
      for segment, state in zip(case.segments, states):
        if segment.ref.dump_case is None:
          continue  # moving_average writes no dump entry
        single = next(dumped)
        self.assertEqual(single.WhichOneof("type"), segment.ref.dump_case,
                         msg=name)
        message = getattr(single, segment.ref.dump_case)
        for field, want in segment.ref.dump(state).items():
          got = getattr(message, field)
          what = f"{name} id {i} step {step}: {field}"
          if isinstance(want, int):
            self.assertEqual(got, want, msg=what)
          else:
            self.assertAllClose(np.array(got, np.float64),
                                want,
                                rtol=_RTOL,
                                atol=_ATOL,
                                msg=what)

  def test_every_optimizer_matches_numpy_reference(self):
    cases = _cases()
    rng = np.random.RandomState(7)
    with tf.Graph().as_default(), self.session() as sess:
      lr_scale = tf1.placeholder(tf.float32, [], name="lr_scale")
      global_step = tf1.placeholder(tf.int64, [], name="global_step")
      table = multi_hash_table_ops.MultiHashTable.from_configs(
          {name: _config(case, lr_scale) for name, case in cases.items()})
      self.assertEqual(table.table_names, tuple(sorted(cases)))
      ids_ph = {
          name: tf1.placeholder(tf.int64, [None], name=f"{name}_ids")
          for name in cases
      }
      grads_ph = {
          name: tf1.placeholder(tf.float32, [None, case.dim],
                                name=f"{name}_grads")
          for name, case in cases.items()
      }
      train = table.apply_gradients(
          {name: (ids_ph[name], grads_ph[name]) for name in cases},
          global_step=global_step).as_op()
      all_ids = {name: case.all_ids for name, case in cases.items()}
      lookup = table.lookup(all_ids)
      entries = table.lookup_entry(all_ids)

      refs = {name: _RefTable(case) for name, case in cases.items()}
      initial = {}
      for name, case in cases.items():
        if case.assign:
          initial[name] = (
              case.all_ids,
              rng.uniform(-0.5, 0.5,
                          (len(case.all_ids), case.dim)).astype(np.float32))
          for i, value in zip(*initial[name]):
            refs[name].assign(i, value)
      sess.run(table.initializer)
      sess.run(table.assign(initial).as_op())

      for step in range(_NUM_STEPS):
        feed = {lr_scale: _LR_SCALES[step], global_step: _GLOBAL_STEPS[step]}
        for name, case in cases.items():
          ids = case.ids[step]
          grads = rng.uniform(-1, 1, (len(ids), case.dim)).astype(np.float32)
          feed[ids_ph[name]] = ids
          feed[grads_ph[name]] = grads
          refs[name].apply(ids, grads, _LR_SCALES[step], _GLOBAL_STEPS[step])
        sess.run(train, feed_dict=feed)
        got, got_entries = sess.run([lookup, entries])
        for name, case in cases.items():
          want = refs[name].expected(case.all_ids)
          what = f"{name} after step {step}"
          if case.fp16_rounding:
            # One of the two float16 neighbours of the float32 result; the
            # reference then continues from the rounded values.
            self.assertAllEqual(got[name],
                                got[name].astype(np.float16).astype(np.float32),
                                msg=what)
            self.assertAllLessEqual(
                np.abs(got[name] - want) - _fp16_spacing(want), 1e-7)
            for i, value in zip(case.all_ids, got[name]):
              refs[name].values[i] = value.astype(np.float64)
          else:
            self.assertAllClose(got[name], want, rtol=_RTOL, atol=_ATOL,
                                msg=what)
          self._check_dump(name, step, refs[name], case, case.all_ids,
                           got_entries[name])

    # The data reached the branches the cases are there for.
    ftrl = cases["ftrl"].segments[0].ref
    self.assertGreater(ftrl.zeroed, 0)  # |z| <= l1
    self.assertGreater(ftrl.kept, 0)  # shrunk by sign(z) * l1
    group_ftrl = cases["group_ftrl"].segments[0].ref
    self.assertGreater(group_ftrl.kept, 0)
    self.assertGreater(cases["amsgrad_nesterov"].segments[0].ref.vhat_kept, 0)
    self.assertGreater(cases["dynamic_wd_decoupled"].segments[0].ref.capped,
                       0)
    self.assertAllEqual(refs["group_adagrad_lasso"].expected([3, _BIG_ID]),
                        np.zeros((2, 3)))

  def test_batch_softmax_requires_dim_1(self):
    table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
    entry.CuckooHashTableConfig().mutate_table(table_config)
    table_config.entry_config.segments.append(
        entry.CombineAsSegment(2, entry.BatchSoftmaxInitializer(1.0),
                               entry.BatchSoftmaxOptimizer(),
                               entry.Fp32Compressor()))
    with tf.Graph().as_default(), self.session() as sess:
      table = multi_hash_table_ops.MultiHashTable.from_configs(
          {"s": entry.HashTableConfigInstance(table_config, [0.1])})
      with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                  "batch_softmax.dim must be 1, got 2"):
        sess.run(table.initializer)

  def test_learning_rates_must_match_segments(self):
    table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
    entry.CuckooHashTableConfig().mutate_table(table_config)
    for _ in range(2):
      table_config.entry_config.segments.append(
          entry.CombineAsSegment(1, entry.ZerosInitializer(),
                                 entry.SgdOptimizer(), entry.Fp32Compressor()))
    with tf.Graph().as_default():
      with self.assertRaisesRegex(ValueError, "1 learning rate functions for "
                                  "2 segments"):
        multi_hash_table_ops.MultiHashTable.from_configs(
            {"s": entry.HashTableConfigInstance(table_config, [0.1])})


if __name__ == "__main__":
  tf.test.main()
