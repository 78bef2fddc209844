"""Tests of DistributedMultiTypeHashTable on an in-process PS cluster."""

import contextlib
import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from monolith.native_training import distributed_ps
from monolith.native_training import distributed_ps_factory
from monolith.native_training import learning_rate_functions
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import test_utils
from monolith.native_training import utils

tf1 = tf.compat.v1
tf1.disable_eager_execution()

_config = test_utils.generate_test_hash_table_config


@pytest.fixture(scope="module")
def cluster():
  """One worker and two PS tasks, shared by the tests (sessions isolated)."""
  return test_utils.create_test_ps_cluster(2)


@pytest.fixture(autouse=True)
def _fresh_graph():
  """Each test builds its ops in a new default graph."""
  with tf.Graph().as_default() as graph:
    yield graph


@contextlib.contextmanager
def _session(cluster):
  """A session on the worker; it creates the tables on the PS tasks."""
  servers, config = cluster
  with tf1.train.SingularMonitoredSession(master=servers[0].target,
                                          config=config) as sess:
    yield sess


def _id(x):
  return tf.constant(x, dtype=tf.int64)


def _value(x):
  return tf.constant(x, dtype=tf.float32)


def _create(configs, num_ps=2, **kwargs):
  return distributed_ps_factory.create_native_multi_hash_table(
      num_ps, configs, **kwargs)


def test_ps_device():
  assert utils.PS_JOB_NAME == "ps"
  assert utils.ps_device(3) == "/job:ps/task:3/device:CPU:0"


def test_tables_live_on_the_ps_tasks_with_the_originals_names():
  table = _create({"a": _config(1)})
  assert [t.handle.device for t in table.tables
         ] == [utils.ps_device(0), utils.ps_device(1)]
  assert [t.shared_name for t in table.tables
         ] == ["MonolithMultiHashTable_0", "MonolithMultiHashTable_1"]
  suffixed = _create({"a": _config(1)}, name_suffix="x")
  assert [t.shared_name for t in suffixed.tables
         ] == ["MonolithMultiHashTable_x_0", "MonolithMultiHashTable_x_1"]
  local = _create({"a": _config(1)}, num_ps=0)
  assert isinstance(local, multi_hash_table_ops.MultiHashTable)
  assert local.shared_name == "MonolithMultiHashTable_"


# Ops that de-duplicate, split and merge ids and values: the worker's.
_WORKER_OP_TYPES = ("Unique", "FloorMod", "DynamicPartition", "DynamicStitch",
                    "UnsortedSegmentSum", "GatherV2")


def _check_placement(graph):
  """Splitting and merging on the worker (no device), tables on the PS."""
  ps_devices = (utils.ps_device(0), utils.ps_device(1))
  table_ops = 0
  for op in graph.get_operations():
    if op.type in _WORKER_OP_TYPES:
      assert op.device == "", op
    if op.type.startswith("MonolithMultiHashTable"):
      assert op.device in ps_devices, op
      table_ops += 1
  assert table_ops


def test_assign_add_then_lookup(cluster):
  table = _create({"a": _config(1), "b": _config(2), "unused": _config(3)})
  assert table.get_table_dim_sizes() == (1, 2, 3)
  table = table.assign_add({
      "a": (_id([1, 2, 3, 2]), _value([[1], [2], [3], [4]])),
      "b": (_id([5, 6]), _value([[1, 1], [2, 2]])),
  })
  looked_up = table.lookup({"a": _id([3, 2, 1, 2, 7]), "b": _id([6, 5])})
  _check_placement(tf1.get_default_graph())
  assert looked_up["a"].shape.as_list() == [5, 1]
  assert looked_up["b"].shape.as_list() == [2, 2]
  with _session(cluster) as sess:
    values = sess.run(looked_up)
  np.testing.assert_array_equal(values["a"], [[3], [6], [1], [6], [0]])
  np.testing.assert_array_equal(values["b"], [[2, 2], [1, 1]])


def test_assign_and_reinitialize(cluster):
  table = _create({"a": _config(2)})
  # Repeated ids are assigned in order, the last value wins, as locally.
  table = table.assign({
      "a": (_id([1, 2, 3, 1]), _value([[1, 1], [2, 2], [3, 3], [4, 4]]))
  })
  assigned = table.lookup({"a": _id([1, 2, 3])})
  reinitialized, status = table.reinitialize("a", _id([3, 8, 2, 1]))
  _, unknown_status = table.reinitialize("nope", _id([1, 2]))
  after = reinitialized.lookup({"a": _id([1, 2, 3, 8])})
  _check_placement(tf1.get_default_graph())
  with _session(cluster) as sess:
    np.testing.assert_array_equal(
        sess.run(assigned)["a"], [[4, 4], [2, 2], [3, 3]])
    # Statuses in the order of the ids, across the two PS: 8 was inserted.
    np.testing.assert_array_equal(sess.run(status), [1, 0, 1, 1])
    np.testing.assert_array_equal(sess.run(unknown_status), [-1, -1])
    np.testing.assert_array_equal(sess.run(after)["a"], np.zeros([4, 2]))


def test_learning_rate_follows_the_global_step_and_is_computed_on_worker(
    cluster):
  global_step = tf1.train.get_or_create_global_step()
  # 1.0 at step 0, then +0.1 a step (decaying "up" to 2.0 over 10 steps).
  learning_rate = learning_rate_functions.PolynomialDecay(
      initial_learning_rate=1.0, decay_steps=10, end_learning_rate=2.0)
  table = _create({"a": _config(1, learning_rate=learning_rate)})
  ids = _id([0, 1])
  train = table.apply_gradients({"a": (ids, tf.ones([2, 1]))},
                                global_step).as_op()
  next_step = global_step.assign_add(1)
  looked_up = table.lookup({"a": ids})["a"]

  graph = tf1.get_default_graph()
  schedule_ops = [
      op for op in graph.get_operations() if "PolynomialDecay" in op.name
  ]
  assert schedule_ops
  assert all(op.device == "" for op in schedule_ops)
  for i in range(2):
    sent = graph.get_operation_by_name(f"dmtht_ps_{i}/learning_rate")
    assert sent.device == utils.ps_device(i)
    assert sent.inputs[0].op.name.startswith("dmtht_learning_rate/")

  with _session(cluster) as sess:
    expected = 0.0
    for step in range(3):
      sess.run(train)
      sess.run(next_step)
      expected -= 1.0 + 0.1 * step
      np.testing.assert_allclose(sess.run(looked_up), [[expected]] * 2,
                                 rtol=1e-6)


def test_repeated_ids_are_sent_once_with_their_summed_gradient(cluster):
  table = _create({"a": _config(2)})
  ids = [0, 3, 0, 1, 3, 0, -1]
  grads = np.arange(14, dtype=np.float32).reshape([7, 2])
  updated = table.apply_gradients({"a": (_id(ids), _value(grads))},
                                  global_step=0)
  lookup_ids = [0, 1, 3, -1]
  looked_up = updated.lookup({"a": _id(lookup_ids)})["a"]
  optimize_ops = [
      op for op in tf1.get_default_graph().get_operations()
      if op.type == "MonolithMultiHashTableOptimize"
  ]
  assert [op.device for op in optimize_ops
         ] == [utils.ps_device(0), utils.ps_device(1)]
  _check_placement(tf1.get_default_graph())
  sent_ids = [op.inputs[1] for op in optimize_ops]
  with _session(cluster) as sess:
    values, sent = sess.run([looked_up, sent_ids])
  # Each PS gets its distinct ids in first-seen order (-1 mod 2 is 1).
  np.testing.assert_array_equal(sent[0], [0])
  np.testing.assert_array_equal(sent[1], [3, 1, -1])
  # SGD with learning rate 1: the summed gradient, applied once.
  expected = [-grads[[i for i, x in enumerate(ids) if x == y]].sum(axis=0)
              for y in lookup_ids]
  np.testing.assert_array_equal(values, expected)


def _cast_pairs(graph):
  """(source device, destination device) of each float16 Cast -> Cast."""
  pairs = []
  for op in graph.get_operations():
    if op.type == "Cast" and op.get_attr("DstT") == tf.float16:
      (consumer,) = op.outputs[0].consumers()
      assert consumer.type == "Cast"
      assert consumer.get_attr("DstT") == tf.float32
      pairs.append((op.device, consumer.device))
  return pairs


def _recv_types(run_metadata, device_prefix):
  """The dtypes of the _Recv nodes of the partitions on a device."""
  types = set()
  for graph_def in run_metadata.partition_graphs:
    for node in graph_def.node:
      if node.op == "_Recv" and node.device.startswith(device_prefix):
        types.add(node.attr["tensor_type"].type)
  return types


def test_float16_transfer(cluster):
  rng = np.random.RandomState(0)
  values = rng.uniform(-1, 1, [8, 3]).astype(np.float32)
  grads = rng.uniform(-1, 1, [8, 3]).astype(np.float32)
  ids = _id(np.arange(8))
  table = _create({"a": _config(3, learning_rate=0.5)}, transfer_float16=True)
  assign = table.assign({"a": (ids, _value(values))}).as_op()
  looked_up = table.lookup({"a": ids})["a"]
  # Fed, so that constant folding does not compute the gradients on the PS.
  grads_fed = tf1.placeholder(tf.float32, [None, 3])
  train = table.apply_gradients({"a": (ids, grads_fed)},
                                global_step=0).as_op()

  # Embeddings go float16 from each PS to the worker, gradients float16
  # from the worker to each PS.
  graph = tf1.get_default_graph()
  ps = [utils.ps_device(0), utils.ps_device(1)]
  assert sorted(_cast_pairs(graph)) == sorted([(ps[0], ""), (ps[1], ""),
                                               ("", ps[0]), ("", ps[1])])
  for op in graph.get_operations():
    if op.type == "MonolithMultiHashTableOptimize":
      grad_cast = op.inputs[3].op
      assert (grad_cast.type, grad_cast.device) == ("Cast", op.device)
      assert grad_cast.inputs[0].dtype == tf.float16

  options = tf1.RunOptions(output_partition_graphs=True)
  with _session(cluster) as sess:
    sess.run(assign)
    lookup_metadata = tf1.RunMetadata()
    got = sess.run(looked_up, options=options, run_metadata=lookup_metadata)
    train_metadata = tf1.RunMetadata()
    sess.run(train, {grads_fed: grads},
             options=options,
             run_metadata=train_metadata)
    trained = sess.run(looked_up)
  # What crossed: only float16 embeddings into the worker; float16 gradients
  # (beside int64 ids and the float32 learning rate) into each PS.
  assert _recv_types(lookup_metadata, "/job:worker") == {types_pb2.DT_HALF}
  for i in range(2):
    assert types_pb2.DT_HALF in _recv_types(train_metadata,
                                            f"/job:ps/replica:0/task:{i}")
  # float16 keeps 11 significant bits.
  np.testing.assert_allclose(got, values, rtol=2**-11, atol=0)
  assert not np.array_equal(got, values)
  np.testing.assert_allclose(trained,
                             values - 0.5 * grads,
                             rtol=0,
                             atol=2**-9)


def test_two_ps_train_exactly_as_one_local_table(cluster):
  configs = {"a": _config(2, learning_rate=0.5),
             "b": _config(3, learning_rate=0.25)}
  dist = _create(configs)
  local = _create(configs, num_ps=0, name_suffix="local")
  id_pool = np.array([0, 1, 2, 5, -1, -6, 2**40 + 3, -(2**50) - 7],
                     dtype=np.int64)
  feeds = {
      name: (tf1.placeholder(tf.int64, [None]),
             tf1.placeholder(tf.float32, [None, dim]))
      for name, dim in (("a", 2), ("b", 3))
  }
  global_step = tf1.placeholder(tf.int64, [])
  train = tf.group(
      dist.apply_gradients(feeds, global_step).as_op(),
      local.apply_gradients(feeds, global_step).as_op())
  every_id = {name: _id(id_pool) for name in configs}
  dist_values = dist.lookup(every_id)
  local_values = local.lookup(every_id)

  rng = np.random.RandomState(1)
  with _session(cluster) as sess:
    for step in range(5):
      feed = {global_step: step}
      for name, dim in (("a", 2), ("b", 3)):
        ids, grads = feeds[name]
        # Repeated ids; gradients in eighths, so every sum is exact.
        feed[ids] = rng.choice(id_pool, size=12)
        feed[grads] = rng.randint(-16, 17, size=[12, dim]) / 8
      sess.run(train, feed)
    got, expected = sess.run([dist_values, local_values])
  for name in configs:
    assert np.any(expected[name])
    np.testing.assert_array_equal(got[name], expected[name])


def test_negative_and_large_ids_go_to_id_floormod_num_ps(cluster):
  ids = [-1, -2, -(2**63), 2**63 - 1, 2**62 + 1, 0, -7]
  values = [[i + 1] for i in range(len(ids))]
  table = _create({"a": _config(1)})
  table = table.assign({"a": (_id(ids), _value(values))})
  looked_up = table.lookup({"a": _id(ids)})["a"]
  per_ps = []
  for i, ps_table in enumerate(table.tables):
    with distributed_ps.ps_device(i):
      per_ps.append(ps_table.lookup({"a": _id(ids)})["a"])
  with _session(cluster) as sess:
    got, got_per_ps = sess.run([looked_up, per_ps])
  np.testing.assert_array_equal(got, values)
  for i in range(2):
    # Python's % is a floor modulo too: -1 % 2 == 1.
    expected = [v if x % 2 == i else [0] for x, v in zip(ids, values)]
    np.testing.assert_array_equal(got_per_ps[i], expected)


def test_empty_batches(cluster):
  table = _create({"a": _config(2)})
  empty = _id(np.zeros([0], np.int64))
  table = table.apply_gradients({"a": (empty, tf.zeros([0, 2]))},
                                global_step=0)
  table, status = table.reinitialize("a", empty)
  looked_up = table.lookup({"a": empty})["a"]
  with _session(cluster) as sess:
    values, status_value = sess.run([looked_up, status])
  assert values.shape == (0, 2)
  assert status_value.shape == (0,)


def test_bad_input_errors():
  configs = {"a": _config(1)}
  with pytest.raises(ValueError, match="num_ps must be >= 0, got -1"):
    _create(configs, num_ps=-1)
  with pytest.raises(ValueError, match="num_ps must be >= 1, got 0"):
    distributed_ps.DistributedMultiTypeHashTable(0, configs, lambda i, c: None)
  with pytest.raises(TypeError, match="returned a str for PS 0; expected a "
                     "MultiHashTable"):
    distributed_ps.DistributedMultiTypeHashTable(2, configs,
                                                 lambda i, c: "table")

  def other_tables(i, unused_configs):
    return multi_hash_table_ops.MultiHashTable.from_configs(
        {"b": _config(1)}, name_suffix=f"other_{i}")

  with pytest.raises(ValueError, match="for PS 0 has the tables"):
    distributed_ps.DistributedMultiTypeHashTable(2, configs, other_tables)
  with pytest.raises(ValueError, match="slot_to_config is empty"):
    _create({})
  with pytest.raises(ValueError, match="hash_filters has 1 handles; expected "
                     "one per PS task"):
    _create(configs, hash_filters=[None])

  table = _create(configs)
  with pytest.raises(ValueError, match=r"unknown table names \['b'\]"):
    table.lookup({"b": _id([1])})
  with pytest.raises(ValueError, match=r"unknown table names \['b'\]"):
    table.apply_gradients({"b": (_id([1]), _value([[1]]))}, global_step=0)


def test_clusters_without_the_ps_tasks_are_rejected(monkeypatch):
  with pytest.raises(ValueError, match="num_ps is 2 but the cluster has no "
                     "'ps' job"):
    distributed_ps.check_ps_cluster({"worker": ["localhost:1"]}, 2)
  with pytest.raises(ValueError, match=r"lacks the tasks \[1\]"):
    distributed_ps.check_ps_cluster({"ps": ["localhost:2"]}, 2)
  with pytest.raises(ValueError, match="has no 'ps' job"):
    distributed_ps.check_ps_cluster(tf1.ConfigProto(), 1)
  distributed_ps.check_ps_cluster(
      tf.train.ClusterSpec({"ps": ["localhost:2", "localhost:3"]}), 2)
  distributed_ps.check_ps_cluster(tf1.ConfigProto(), 0)

  # The cluster of TF_CONFIG, when set, is checked when the table is built.
  monkeypatch.setenv(
      "TF_CONFIG",
      json.dumps({"cluster": {"worker": ["localhost:1"],
                              "ps": ["localhost:2"]}}))
  with pytest.raises(ValueError, match=r"lacks the tasks \[1\]"):
    _create({"a": _config(1)})
  _create({"a": _config(1)}, num_ps=1)


def test_a_session_without_the_ps_tasks_fails_naming_the_device():
  table = _create({"a": _config(1)})
  looked_up = table.lookup({"a": _id([1])})
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="/job:ps/task:"):
      sess.run(looked_up)
