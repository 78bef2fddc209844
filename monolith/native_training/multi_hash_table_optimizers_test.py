"""The wiring of the hash table optimizers through MultiHashTable.

The optimizers' formulas are checked against scalar references in C++
(runtime/hash_table/optimizer/*_test.cc). These tests check what the Python
API and the table ops add around them, each so that it fails when that
wiring breaks:

* every optimizer config of entry.py reaches the engine: one MultiHashTable
  with a table per optimizer case and multi-segment entries, trained through
  `apply_gradients` and through `fused_lookup` / `fused_apply_gradient`,
  equals, value for value and dump for dump, one engine table per segment
  driven by the raw ops with that segment's own gradient slice, learning
  rate, global step and request time;
* learning rates are sliced per table and per segment, and learning-rate
  functions are evaluated at every run (SGD computed by hand);
* the global step and the request time reach the optimizers and the entries
  (batch_softmax, warmup and dynamic_wd_adagrad state, computed by hand);
* optimizer dumps round-trip through save and restore, and training goes on
  from the restored state exactly as from the saved one;
* the float16 stochastic rounding flag of the wrapper reaches the engine.
"""

import dataclasses
from typing import Any, Dict, List

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2
from monolith.native_training.runtime.ops import gen_monolith_ops

tf1 = tf.compat.v1
# MultiHashTable builds graphs for tf.compat.v1 sessions, as training does.
tf1.disable_eager_execution()

_GLOBAL_STEPS = [3, 7, 8, 20]
_LR_SCALES = [1.0, 0.5, 0.8, 0.3]
_REQ_TIMES = [1000, 2000, 2500, 4000]
_NUM_STEPS = len(_GLOBAL_STEPS)
_BIG_ID = 1 << 40
_NUM_SHARDS = 2

# ------------------------------------------------------------- the cases


@dataclasses.dataclass
class _Segment:
  dim: int
  optimizer: Any  # an entry.py builder or an OptimizerConfig
  base_lr: float
  initializer: Any = dataclasses.field(default_factory=entry.ZerosInitializer)


@dataclasses.dataclass
class _Case:
  segments: List[_Segment]
  # Per step, the ids whose gradients are applied (repeats are applied in
  # order). Default: two ids every step.
  ids: List[List[int]] = None
  # Whether the ids get random values (assign) before the first step;
  # otherwise they start at their initializer's value.
  assign: bool = True

  def __post_init__(self):
    if self.ids is None:
      self.ids = [[3, _BIG_ID]] * _NUM_STEPS

  @property
  def dim(self) -> int:
    return sum(s.dim for s in self.segments)

  @property
  def all_ids(self) -> List[int]:
    return sorted({i for ids in self.ids for i in ids})


def _one(dim, optimizer, base_lr, **kwargs) -> _Case:
  return _Case([_Segment(dim, optimizer, base_lr)], **kwargs)


# An id updated every step and one updated at the first and last step only
# (per-entry state: beta powers, last update step, batch softmax interval).
_SPARSE_IDS = [[1, 2], [1], [1], [2, 1]]


def _cases() -> Dict[str, _Case]:
  """A table per optimizer case and two multi-segment tables, by name.

  Base learning rates differ from table to table and from segment to
  segment, so that a rate or a gradient slice handed to the wrong segment
  changes the result.
  """
  return {
      "adadelta":
          _one(3,
               entry.AdadeltaOptimizer(weight_decay_factor=0.05,
                                       averaging_ratio=0.8,
                                       epsilon=0.02), 0.6),
      "adagrad":
          _one(3,
               entry.AdagradOptimizer(initial_accumulator_value=0.2,
                                      weight_decay_factor=0.03),
               0.3,
               ids=[[5, 6, 5], [6, 5], [5, 5, 5], [6]]),
      "adagrad_warmup":
          _one(2,
               entry.AdagradOptimizer(initial_accumulator_value=0.1,
                                      warmup_steps=10), 0.25),
      "adam":
          _one(3,
               entry.AdamOptimizer(beta1=0.8,
                                   beta2=0.95,
                                   weight_decay_factor=0.04,
                                   epsilon=0.001),
               0.05,
               ids=_SPARSE_IDS),
      "adam_nesterov":
          _one(3,
               entry.AdamOptimizer(beta1=0.8,
                                   beta2=0.95,
                                   weight_decay_factor=0.04,
                                   use_nesterov=True,
                                   epsilon=0.001), 0.07),
      "amsgrad_nesterov":
          _one(3,
               entry.AmsgradOptimizer(beta1=0.8,
                                      beta2=0.95,
                                      weight_decay_factor=0.04,
                                      use_nesterov=True,
                                      epsilon=0.001), 0.06),
      # No assign: entries start at the initializer's 2.0.
      "batch_softmax":
          _Case([
              _Segment(1,
                       entry.BatchSoftmaxOptimizer(),
                       0.4,
                       initializer=entry.BatchSoftmaxInitializer(2.0))
          ],
                ids=_SPARSE_IDS,
                assign=False),
      "dynamic_wd_coupled_flip":
          _one(3,
               entry.DynamicWdAdagradOptimizer(initial_accumulator_value=0.1,
                                               weight_decay_factor=0.2,
                                               decouple_weight_decay=False,
                                               enable_dynamic_wd=True,
                                               flip_direction=True,
                                               dynamic_wd_temperature=1.0),
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
               0.2,
               ids=_SPARSE_IDS),
      "ftrl":
          _one(4,
               entry.FtrlOptimizer(initial_accumulator_value=0.1,
                                   beta=0.5,
                                   l1_regularization=0.35,
                                   l2_regularization=0.2), 0.5),
      "group_adagrad":
          _one(3,
               entry.AdaGradWithGroupLassoOptimizer(
                   beta=0.3,
                   initial_accumulator_value=0.1,
                   l2_regularization=0.05,
                   weight_decay_factor=0.02), 0.4),
      "group_ftrl":
          _one(3,
               entry.FTRLWithGroupSparsityOptimizer(
                   initial_accumulator_value=0.05,
                   beta=1.0,
                   l1_regularization=0.3,
                   l2_regularization=0.2), 0.45),
      "momentum":
          _one(3,
               entry.MomentumOptimizer(weight_decay_factor=0.05,
                                       momentum=0.7), 0.2),
      "momentum_nesterov":
          _one(3,
               entry.MomentumOptimizer(weight_decay_factor=0.05,
                                       use_nesterov=True,
                                       momentum=0.7), 0.15),
      "moving_average":
          _one(3, entry.MovingAverageOptimizer(momentum=0.6), 0.45),
      "rmsprop":
          _one(3,
               entry.RmspropOptimizer(learning_rate=0.001,
                                      weight_decay_factor=0.07,
                                      momentum=0.85), 0.3),
      "rmspropv2":
          _one(3,
               entry.RmspropV2Optimizer(learning_rate=0.001,
                                        weight_decay_factor=0.07,
                                        momentum=0.85), 0.25),
      "sgd":
          _one(3, entry.SgdOptimizer(learning_rate=0.9), 0.55),
      # Several optimizers in one entry, each with its own gradient slice and
      # learning rate (very different rates, so a wrong slice shows).
      "two_segments":
          _Case([
              _Segment(2, entry.AdagradOptimizer(initial_accumulator_value=0.1),
                       0.05),
              _Segment(3, entry.MomentumOptimizer(momentum=0.5), 0.7),
          ]),
      "three_segments":
          _Case([
              _Segment(1, entry.SgdOptimizer(), 0.3),
              _Segment(
                  2,
                  entry.FtrlOptimizer(initial_accumulator_value=0.1,
                                      beta=1.0,
                                      l1_regularization=0.1,
                                      l2_regularization=0.1), 0.9),
              _Segment(2, entry.AdamOptimizer(beta1=0.9, beta2=0.99), 0.01),
          ],
                ids=_SPARSE_IDS),
  }


def _table_config(
    segments: List[_Segment]
) -> embedding_hash_table_pb2.EmbeddingHashTableConfig:
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  for segment in segments:
    table_config.entry_config.segments.append(
        entry.CombineAsSegment(segment.dim, segment.initializer,
                               segment.optimizer, entry.Fp32Compressor()))
  return table_config


def _config(segments: List[_Segment],
            lr_scale: Any) -> entry.HashTableConfigInstance:
  """The config of an entry of `segments`; segment lr = base lr * lr_scale.

  The learning rates are functions, called when the table is built, so that
  lr_scale may be a placeholder fed at every step.
  """
  learning_rate_fns = [
      (lambda lr=segment.base_lr: lr * lr_scale) for segment in segments
  ]
  return entry.HashTableConfigInstance(_table_config(segments),
                                       learning_rate_fns)


def _steps(cases: Dict[str, _Case], seed: int) -> List[dict]:
  """The feeds of every step: scalars, and per table ids and gradients."""
  rng = np.random.RandomState(seed)
  steps = []
  for step in range(_NUM_STEPS):
    ids, grads = {}, {}
    for name, case in cases.items():
      ids[name] = np.array(case.ids[step], np.int64)
      grads[name] = rng.uniform(-1, 1,
                                (len(ids[name]), case.dim)).astype(np.float32)
    steps.append({
        "lr_scale": _LR_SCALES[step],
        "global_step": _GLOBAL_STEPS[step],
        "req_time": _REQ_TIMES[step],
        "ids": ids,
        "grads": grads,
    })
  return steps


def _initial_values(cases: Dict[str, _Case], seed: int) -> dict:
  """Random values of every id of the cases that assign them."""
  rng = np.random.RandomState(seed)
  return {
      name: (np.array(case.all_ids, np.int64),
             rng.uniform(-0.5, 0.5,
                         (len(case.all_ids), case.dim)).astype(np.float32))
      for name, case in cases.items()
      if case.assign
  }


class _Graph:
  """Placeholders of one training step of the cases' tables."""

  def __init__(self, cases: Dict[str, _Case]):
    self.cases = cases
    self.lr_scale = tf1.placeholder(tf.float32, [], name="lr_scale")
    self.global_step = tf1.placeholder(tf.int64, [], name="global_step")
    self.req_time = tf1.placeholder(tf.int64, [], name="req_time")
    self.ids = {
        name: tf1.placeholder(tf.int64, [None], name=f"{name}_ids")
        for name in cases
    }
    self.grads = {
        name: tf1.placeholder(tf.float32, [None, case.dim],
                              name=f"{name}_grads")
        for name, case in cases.items()
    }
    # For the fused ops: ids and flat gradients in the fused layout.
    self.fused_ids = tf1.placeholder(tf.int64, [None], name="fused_ids")
    self.fused_grads = tf1.placeholder(tf.float32, [None], name="fused_grads")
    self.fused_slot_size = tf1.placeholder(tf.int32, [None],
                                           name="fused_slot_size")

  def new_table(self, name_suffix: str) -> multi_hash_table_ops.MultiHashTable:
    return multi_hash_table_ops.MultiHashTable.from_configs(
        {
            name: _config(case.segments, self.lr_scale)
            for name, case in self.cases.items()
        },
        name_suffix=name_suffix)

  def apply_gradients(
      self, table: multi_hash_table_ops.MultiHashTable) -> tf.Operation:
    return table.apply_gradients(
        {name: (self.ids[name], self.grads[name]) for name in self.cases},
        global_step=self.global_step,
        req_time=self.req_time).as_op()

  def fused_apply_gradient(
      self, table: multi_hash_table_ops.MultiHashTable) -> tf.Operation:
    """Looks up the fused ids, then applies the fused gradients."""
    _, _, id_offsets, embedding_offsets, indices = table.fused_lookup(
        self.fused_ids, self.fused_slot_size, _NUM_SHARDS, self.req_time)
    return table.fused_apply_gradient(self.fused_ids, indices,
                                      self.fused_slot_size, self.fused_grads,
                                      id_offsets, embedding_offsets,
                                      self.global_step, self.req_time,
                                      _NUM_SHARDS).as_op()

  def feed(self, step: dict) -> dict:
    feed = {
        self.lr_scale: step["lr_scale"],
        self.global_step: step["global_step"],
        self.req_time: step["req_time"],
    }
    for name in self.cases:
      feed[self.ids[name]] = step["ids"][name]
      feed[self.grads[name]] = step["grads"][name]
    # Shard s gets the ids with id % _NUM_SHARDS == s, so the repeats of an
    # id stay in one shard, in order; shard-major, tables in sorted order.
    fused_ids, fused_grads, sizes = [], [], []
    for shard in range(_NUM_SHARDS):
      for name in sorted(self.cases):
        ids = step["ids"][name]
        mine = ids % _NUM_SHARDS == shard
        fused_ids.append(ids[mine])
        fused_grads.append(step["grads"][name][mine].reshape(-1))
        sizes.append(int(mine.sum()))
    feed[self.fused_ids] = np.concatenate(fused_ids)
    feed[self.fused_grads] = np.concatenate(fused_grads)
    feed[self.fused_slot_size] = sizes
    return feed


class _SegmentTables:
  """One engine table per segment of every case, driven by the raw ops.

  Each table holds one one-segment entry config and gets, through the
  generated ops directly, its segment's gradient slice, the learning rate
  base lr * lr_scale, the global step and the request time: none of
  MultiHashTable's id, gradient or learning-rate layouts is involved.
  """

  def __init__(self, graph: _Graph):
    self._graph = graph
    self._handles = {}  # (case name, segment index) -> handle
    for name, case in graph.cases.items():
      for k, segment in enumerate(case.segments):
        config = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig()
        config.names.append("t")
        config.configs.append(_table_config([segment]))
        shared_name = f"segment_{name}_{k}"
        create = gen_monolith_ops.create_monolith_multi_hash_table
        self._handles[name, k] = create(
            config=config.SerializeToString(),
            filter_handle=gen_monolith_ops.monolith_dummy_hash_filter(
                shared_name=shared_name + "_filter"),
            sync_client_handle=gen_monolith_ops.monolith_dummy_sync_client(
                shared_name=shared_name + "_sync"),
            shared_name=shared_name)

  def _each(self):
    for name, case in self._graph.cases.items():
      offset = 0
      for k, segment in enumerate(case.segments):
        yield name, k, self._handles[name, k], slice(offset,
                                                     offset + segment.dim)
        offset += segment.dim

  @staticmethod
  def _split(ids: tf.Tensor) -> tf.Tensor:
    return tf.stack([tf.constant(0, tf.int64), tf.size(ids, tf.int64)])

  def assign(self, initial: dict) -> tf.Operation:
    assigns = []
    for name, _, handle, part in self._each():
      if name in initial:
        ids, values = initial[name]
        assigns.append(
            gen_monolith_ops.monolith_multi_hash_table_assign(
                handle, ids, [0, len(ids)], values[:, part].reshape(-1),
                self._graph.req_time))
    return tf.group(assigns)

  def optimize(self) -> tf.Operation:
    g = self._graph
    updates = []
    for name, k, handle, part in self._each():
      lr = g.cases[name].segments[k].base_lr * g.lr_scale
      updates.append(
          gen_monolith_ops.monolith_multi_hash_table_optimize(
              handle, g.ids[name], self._split(g.ids[name]),
              tf.reshape(g.grads[name][:, part], [-1]), tf.reshape(lr, [1]),
              g.req_time, g.global_step))
    return tf.group(updates)

  def entries(self) -> Dict[tuple, tf.Tensor]:
    """Serialized EntryDumps of every id, per (case name, segment)."""
    entries = {}
    for name, k, handle, _ in self._each():
      ids = tf.constant(self._graph.cases[name].all_ids, tf.int64)
      lookup_entry = gen_monolith_ops.monolith_multi_hash_table_lookup_entry
      entries[name, k] = lookup_entry(handle, ids, self._split(ids))
    return entries


def _dumps(serialized) -> List[embedding_hash_table_pb2.EntryDump]:
  return [embedding_hash_table_pb2.EntryDump.FromString(s) for s in serialized]


def _check_against_segments(what: str, case: _Case, entries, segment_entries,
                            req_time: int, updated: List[int]):
  """An entry is its segment tables' entries put together."""
  per_segment = [_dumps(segment_entries[k]) for k in range(len(case.segments))]
  for i, (got, *parts) in enumerate(zip(_dumps(entries), *per_segment)):
    where = f"{what}, id {case.all_ids[i]}"
    assert got.id == case.all_ids[i], where
    np.testing.assert_array_equal(np.array(got.num, np.float32),
                                  np.concatenate([p.num for p in parts]),
                                  err_msg=where)
    assert list(got.opt.dump) == [d for p in parts for d in p.opt.dump], where
    assert got.last_update_ts_sec == parts[0].last_update_ts_sec, where
    if got.id in updated:
      assert got.last_update_ts_sec == req_time, where


def test_every_optimizer_equals_its_segments_trained_alone():
  cases = _cases()
  with tf.Graph().as_default(), tf1.Session() as sess:
    g = _Graph(cases)
    table = g.new_table("apply")
    fused = g.new_table("fused")
    assert table.table_names == tuple(sorted(cases))
    segments = _SegmentTables(g)
    initial = _initial_values(cases, seed=7)
    sess.run([table.initializer, fused.initializer])
    sess.run([
        table.assign(initial, req_time=g.req_time).as_op(),
        fused.assign(initial, req_time=g.req_time).as_op(),
        segments.assign(initial)
    ],
             feed_dict={g.req_time: 10})
    train = [g.apply_gradients(table), g.fused_apply_gradient(fused),
             segments.optimize()]
    all_ids = {name: case.all_ids for name, case in cases.items()}
    fetches = {
        "apply": table.lookup_entry(all_ids),
        "fused": fused.lookup_entry(all_ids),
        "segments": segments.entries(),
    }
    for step, data in enumerate(_steps(cases, seed=11)):
      sess.run(train, feed_dict=g.feed(data))
      got = sess.run(fetches)
      for path in ("apply", "fused"):
        for name, case in cases.items():
          _check_against_segments(
              f"{path}: {name} after step {step}", case, got[path][name], {
                  k: got["segments"][name, k]
                  for k in range(len(case.segments))
              }, data["req_time"], data["ids"][name].tolist())


def _sgd_segment(dim: int, base_lr: float, optimizer=None) -> _Segment:
  return _Segment(dim, optimizer or entry.SgdOptimizer(learning_rate=0.9),
                  base_lr)


@pytest.mark.parametrize("path", ["apply_gradients", "fused"])
def test_learning_rates_are_sliced_per_table_and_segment(path):
  # Two tables of two segments each, SGD with configs of their own. The
  # configs' learning_rate (0.9, 0.5) is not the one applied.
  cases = {
      "a": _Case([
          _sgd_segment(2, 0.1),
          _sgd_segment(1, 2.0, entry.SgdOptimizer(learning_rate=0.5))
      ]),
      "b": _Case([_sgd_segment(1, 0.03),
                  _sgd_segment(2, 0.7)]),
  }
  steps = [{
      "lr_scale": scale,
      "global_step": 1,
      "req_time": 1,
      "ids": {
          "a": np.array([1, 2], np.int64),
          "b": np.array([7], np.int64)
      },
      "grads": {
          "a": np.array([[1, 2, 3], [4, 5, 6]], np.float32) * scale,
          "b": np.array([[1, 2, 3]], np.float32)
      },
  } for scale in (1.0, 0.5)]
  with tf.Graph().as_default(), tf1.Session() as sess:
    g = _Graph(cases)
    table = g.new_table("")
    train = (g.apply_gradients(table)
             if path == "apply_gradients" else g.fused_apply_gradient(table))
    lookup = table.lookup({"a": [1, 2], "b": [7]})
    sess.run(table.initializer)
    for step in steps:
      sess.run(train, feed_dict=g.feed(step))
    got = sess.run(lookup)
  # Per column, the segment's base rate; the rate is base * scale at each
  # step: w = 0 - lr_1 * g_1 - lr_2 * g_2, in float32.
  base = {"a": [0.1, 0.1, 2.0], "b": [0.03, 0.7, 0.7]}
  for name in cases:
    want = np.zeros_like(steps[0]["grads"][name])
    for step in steps:
      lr = np.float32(base[name]) * np.float32(step["lr_scale"])
      want = want - lr * step["grads"][name]
    np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_fused_lookup_layout():
  cases = {
      "a": _Case([_sgd_segment(2, 1.0)]),
      "b": _Case([_sgd_segment(1, 1.0)]),
  }
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _Graph(cases).new_table("")
    table = table.assign({
        "a": ([1, 2], [[1, 2], [3, 4]]),
        "b": ([7], [[7]]),
    })
    # Shard 0: a=[2], b=[]; shard 1: a=[1, 9], b=[7] (9 is unknown).
    outputs = table.fused_lookup(tf.constant([2, 1, 9, 7], tf.int64),
                                 tf.constant([1, 0, 2, 1], tf.int32),
                                 num_of_shards=2)
    sess.run(table.initializer)
    embeddings, splits, id_offsets, embedding_offsets, indices = sess.run(
        outputs)
  np.testing.assert_array_equal(embeddings, [3, 4, 1, 2, 0, 0, 7])
  np.testing.assert_array_equal(splits, [2, 5])
  np.testing.assert_array_equal(id_offsets, [0, 1, 1, 3, 4])
  np.testing.assert_array_equal(embedding_offsets, [0, 2, 2, 6, 7])
  np.testing.assert_array_equal(indices, [2, 1, 9, 7])


@pytest.mark.parametrize("path", ["apply_gradients", "fused"])
def test_global_step_and_request_time_reach_the_entries(path):
  cases = {
      "t":
          _Case([
              _Segment(1,
                       entry.BatchSoftmaxOptimizer(),
                       0.25,
                       initializer=entry.BatchSoftmaxInitializer(2.0)),
              _Segment(
                  2,
                  entry.AdagradOptimizer(initial_accumulator_value=0.1,
                                         warmup_steps=10), 0.5),
              _Segment(
                  1,
                  entry.DynamicWdAdagradOptimizer(weight_decay_factor=0.0),
                  0.1),
          ])
  }
  grad = np.array([[0.0, 0.3, -1.0, 0.5]], np.float32)
  with tf.Graph().as_default(), tf1.Session() as sess:
    g = _Graph(cases)
    table = g.new_table("")
    train = (g.apply_gradients(table)
             if path == "apply_gradients" else g.fused_apply_gradient(table))
    lookup = table.lookup({"t": [4]})["t"]
    entries = table.lookup_entry({"t": [4]})["t"]
    sess.run(table.initializer)
    got = []
    for global_step, req_time in ((3, 1000), (7, 2000)):
      sess.run(train,
               feed_dict=g.feed({
                   "lr_scale": 1.0,
                   "global_step": global_step,
                   "req_time": req_time,
                   "ids": {"t": np.array([4], np.int64)},
                   "grads": {"t": grad},
               }))
      value, (dump,) = sess.run([lookup, entries])
      got.append((value[0], _dumps([dump])[0]))

  (value_1, dump_1), (value_2, dump_2) = got
  # batch_softmax: B = (1 - lr) B + lr (global_step - previous step), from 2.
  assert value_1[0] == 0.75 * 2.0 + 0.25 * 3
  assert value_2[0] == 0.75 * value_1[0] + 0.25 * (7 - 3)
  # adagrad with warmup: lr * min(1, global_step / 10).
  norm = 0.1 + grad[0, 1:3].astype(np.float64)**2
  want_1 = -0.5 * 0.3 * grad[0, 1:3] / np.sqrt(norm)
  norm += grad[0, 1:3].astype(np.float64)**2
  want_2 = want_1 - 0.5 * 0.7 * grad[0, 1:3] / np.sqrt(norm)
  np.testing.assert_allclose(value_1[1:3], want_1, rtol=1e-5)
  np.testing.assert_allclose(value_2[1:3], want_2, rtol=1e-5)
  # The steps and times the entry keeps.
  for dump, global_step, req_time in ((dump_1, 3, 1000), (dump_2, 7, 2000)):
    assert dump.last_update_ts_sec == req_time
    batch_softmax, adagrad, dynamic_wd = dump.opt.dump
    assert batch_softmax.batch_softmax.global_step == global_step
    assert adagrad.WhichOneof("type") == "adagrad"
    assert dynamic_wd.dynamic_wd_adagrad.last_update_step == global_step


def test_dumps_round_trip_through_save_restore(tmp_path):
  cases = _cases()
  steps = _steps(cases, seed=5)
  all_ids = {name: case.all_ids for name, case in cases.items()}
  basename = str(tmp_path / "tables")

  def build(sess):
    g = _Graph(cases)
    table = g.new_table("")
    sess.run(table.initializer)
    return g, table, g.apply_gradients(table)

  with tf.Graph().as_default(), tf1.Session() as saved_sess:
    g, table, train = build(saved_sess)
    saved_sess.run(table.assign(_initial_values(cases, seed=3)).as_op())
    for step in steps[:2]:
      saved_sess.run(train, feed_dict=g.feed(step))
    saved_sess.run(table.save(tf.constant(basename)).as_op())
    saved = saved_sess.run(table.lookup_entry(all_ids))
    saved_sess.run(train, feed_dict=g.feed(steps[2]))
    continued = saved_sess.run(table.lookup_entry(all_ids))

  with tf.Graph().as_default(), tf1.Session() as sess:
    g, table, train = build(sess)
    sess.run(table.restore(tf.constant(basename), strict=True).as_op())
    restored = sess.run(table.lookup_entry(all_ids))
    sess.run(train, feed_dict=g.feed(steps[2]))
    restored_continued = sess.run(table.lookup_entry(all_ids))

  for name in cases:
    # Values, every segment's optimizer state, update times.
    assert _dumps(restored[name]) == _dumps(saved[name]), name
    # Training goes on from the restored state as from the saved one.
    assert _dumps(restored_continued[name]) == _dumps(continued[name]), name
    assert _dumps(continued[name]) != _dumps(saved[name]), name


def test_stochastic_rounding_float16_reaches_the_engine():
  cases = {
      "s":
          _Case([
              _Segment(
                  3,
                  entry.StochasticRoundingFloat16OptimizerWrapper(
                      entry.SgdOptimizer()), 0.5)
          ])
  }
  rng = np.random.RandomState(2)
  ids = np.arange(50, dtype=np.int64)
  values = rng.uniform(-0.5, 0.5, (50, 3)).astype(np.float32)
  grads = rng.uniform(-1, 1, (50, 3)).astype(np.float32)
  with tf.Graph().as_default(), tf1.Session() as sess:
    g = _Graph(cases)
    table = g.new_table("")
    train = g.apply_gradients(table)
    lookup = table.lookup({"s": ids})["s"]
    sess.run(table.initializer)
    sess.run(table.assign({"s": (ids, values)}).as_op())
    sess.run(train,
             feed_dict=g.feed({
                 "lr_scale": 1.0,
                 "global_step": 0,
                 "req_time": 0,
                 "ids": {"s": ids},
                 "grads": {"s": grads},
             }))
    got = sess.run(lookup)
  exact = values - np.float32(0.5) * grads
  # One of the two float16 neighbours of the float32 result.
  np.testing.assert_array_equal(got, got.astype(np.float16).astype(np.float32))
  spacing = np.maximum(
      np.spacing(np.abs(exact).astype(np.float16)).astype(np.float32), 2**-24)
  assert np.all(np.abs(got - exact) <= spacing)
  assert not np.array_equal(got, exact)


def test_batch_softmax_requires_dim_1():
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  table_config.entry_config.segments.append(
      entry.CombineAsSegment(2, entry.BatchSoftmaxInitializer(1.0),
                             entry.BatchSoftmaxOptimizer(),
                             entry.Fp32Compressor()))
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"s": entry.HashTableConfigInstance(table_config, [0.1])})
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="batch_softmax.dim must be 1, got 2"):
      sess.run(table.initializer)


def test_learning_rates_must_match_segments():
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(table_config)
  for _ in range(2):
    table_config.entry_config.segments.append(
        entry.CombineAsSegment(1, entry.ZerosInitializer(),
                               entry.SgdOptimizer(), entry.Fp32Compressor()))
  with tf.Graph().as_default():
    with pytest.raises(ValueError,
                       match="1 learning rate functions for 2 segments"):
      multi_hash_table_ops.MultiHashTable.from_configs(
          {"s": entry.HashTableConfigInstance(table_config, [0.1])})
