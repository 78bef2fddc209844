"""Tests of DistributedMultiTypeHashTable on an in-process PS cluster."""

import contextlib
import json
import os
import re
import types

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.python.eager import context

from monolith.native_training import distributed_ps
from monolith.native_training import distributed_serving_ops
from monolith.native_training import distributed_ps_factory
from monolith.native_training import hash_filter_ops
from monolith.native_training import learning_rate_functions
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils
from monolith.native_training import test_utils
from monolith.native_training import utils
from monolith.native_training.model_export import export_context
from monolith.native_training.runtime.ops import gen_monolith_ops as ops

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


def test_the_global_step_is_read_once_on_the_worker(_fresh_graph):
  # Read on each PS, the step could differ between PS tasks within one
  # step (a dense optimizer increments it beside the tables' updates).
  table = _create({"a": _config(1)})
  step = tf1.train.get_or_create_global_step()
  table.apply_gradients({"a": (_id([1, 2]), _value([[1.0], [2.0]]))}, step)
  reads = [op for op in _fresh_graph.get_operations()
           if op.type == "ReadVariableOp" and op.name.startswith("dmtht_ag/")]
  assert len(reads) == 1 and "/job:ps" not in reads[0].device, reads
  optimizes = [op for op in _fresh_graph.get_operations()
               if op.type.startswith("MonolithMultiHashTableOptimize")]
  assert len(optimizes) == 2
  for op in optimizes:
    assert reads[0].outputs[0] in list(op.inputs)


def test_building_eagerly_is_a_clear_error():
  with context.eager_mode():
    with pytest.raises(RuntimeError,
                       match="DistributedMultiTypeHashTable builds graph-mode "
                       "ops .* called eagerly"):
      _create({"a": _config(1)})


def test_float16_transfers_are_refused_for_gpucuco_tables(monkeypatch):
  # The graph is only built: no GPU is needed past the support check.
  monkeypatch.setattr(multi_hash_table_ops, "check_gpu_tables_supported",
                      lambda in_this_process=True: None)
  config = _config(2)
  config.table_config.gpucuco.SetInParent()
  with pytest.raises(NotImplementedError,
                     match="transfer_float16 is not available for gpucuco"):
    _create({"a": config}, transfer_float16=True)
  # Refused before any table was built: the names are still free.
  assert all(t.on_gpu for t in _create({"a": config}).tables)


def test_gpucuco_tables_on_ps_tasks_need_no_gpu_where_the_graph_is_built(
    monkeypatch):
  # GPU kernels registered (as in a --config=cuda build), no GPU here.
  registered = multi_hash_table_ops.kernels.get_registered_kernels_for_op
  monkeypatch.setattr(
      multi_hash_table_ops.kernels, "get_registered_kernels_for_op",
      lambda op: types.SimpleNamespace(
          kernel=list(registered(op).kernel) +
          [types.SimpleNamespace(device_type="GPU")]))
  monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: [])
  config = _config(2)
  config.table_config.gpucuco.SetInParent()
  tables = _create({"a": config}).tables
  assert [t.handle.device for t in tables] == [
      "/job:ps/task:0/device:GPU:0", "/job:ps/task:1/device:GPU:0"]
  # A table of this process needs a GPU here, checked before the table
  # takes its name (so the same call fails the same way again).
  for _ in range(2):
    with pytest.raises(RuntimeError, match="TensorFlow sees none"):
      _create({"a": config}, num_ps=0)


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


def test_parameter_sync_clients_are_one_per_ps_on_its_device():
  with tf.Graph().as_default():
    clients = distributed_serving_ops.create_parameter_sync_clients(2)
    assert [c.device for c in clients
           ] == [utils.ps_device(0), utils.ps_device(1)]
    assert len(distributed_serving_ops.create_parameter_sync_clients(0)) == 1
    with export_context.enter_export_mode(export_context.ExportMode.STANDALONE):
      assert {c.device for c in
              distributed_serving_ops.create_parameter_sync_clients(2)} == {""}
    for bad in (-1, None, 2.0, True):
      with pytest.raises(ValueError,
                         match=f"ps_num must be an integer >= 0, got {bad!r}"):
        distributed_serving_ops.create_parameter_sync_clients(bad)


# Ops that de-duplicate, split and merge ids and values: the worker's.
_WORKER_OP_TYPES = ("Unique", "FloorMod", "DynamicPartition", "DynamicStitch",
                    "UnsortedSegmentSum", "GatherV2",
                    "MonolithDistributedPsPartition",
                    "MonolithDistributedPsGather",
                    "MonolithDistributedPsGatherFloat16",
                    "MonolithDistributedPsScatterAdd",
                    "MonolithDistributedPsPackIds")


def _check_placement(graph):
  """Splitting and merging on the worker (no device), tables on the PS."""
  ps_devices = (utils.ps_device(0), utils.ps_device(1))
  table_ops = 0
  for op in graph.get_operations():
    if op.type in _WORKER_OP_TYPES:
      assert op.device == "", op
    if (op.type.startswith("MonolithMultiHashTable") or
        op.type in ("MonolithDistributedPsLookupFloat16",
                    "MonolithDistributedPsUnpackIds")):
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
  # One fused partition for all tables, not a split per table and PS.
  types = [op.type for op in tf1.get_default_graph().get_operations()]
  assert "DynamicPartition" not in types
  assert types.count("MonolithDistributedPsPartition") == 2  # and lookup's
  assert looked_up["a"].shape.as_list() == [5, 1]
  assert looked_up["b"].shape.as_list() == [2, 2]
  with _session(cluster) as sess:
    values = sess.run(looked_up)
  np.testing.assert_array_equal(values["a"], [[3], [6], [1], [6], [0]])
  np.testing.assert_array_equal(values["b"], [[2, 2], [1, 1]])


def test_assign_takes_ids_of_any_shape(cluster):
  # Flattened, as it always did (MultiHashTable takes vectors only).
  table = _create({"a": _config(1)})
  table = table.assign({"a": (_id([[1], [2], [3]]), _value([1, 2, 3]))})
  table = table.assign({"a": (_id(5), _value([7]))})
  looked_up = table.lookup({"a": _id([1, 2, 3, 5])})["a"]
  with _session(cluster) as sess:
    np.testing.assert_array_equal(sess.run(looked_up), [[1], [2], [3], [7]])


def _save_slot_a(cluster, directory):
  """Saves slot a (dim 1, SGD) of ids -3 .. 8 on every PS into `directory`;
  returns the ids and their values."""
  ids = list(range(-3, 9))
  trained = np.array([[i] for i in ids], np.float32)
  save = _create({"a": _config(1)}).assign({
      "a": (_id(ids), _value(trained))
  }).save(str(directory)).as_op()
  with _session(cluster) as sess:
    sess.run(save)
  return ids, trained


def test_a_restore_takes_values_only_on_every_ps(cluster, tmp_path):
  # Slot a moves from SGD to adagrad: every PS restores its values only.
  ids, trained = _save_slot_a(cluster, tmp_path)
  adagrad = _config(1)
  adagrad.table_config.entry_config.segments[0].opt_config.adagrad.\
      initial_accumulator_value = 0.1
  with tf.Graph().as_default():
    changed = _create({"a": adagrad}, name_suffix="adagrad")
    basenames = multi_hash_table_ops.find_ps_checkpoints(
        str(tmp_path), "MonolithMultiHashTable")
    with pytest.raises(ValueError, match=r"values_only names \['b'\]"):
      changed.restore(basenames, values_only=["b"])
    looked_up = changed.restore(basenames, values_only=["a"]).lookup(
        {"a": _id(ids)})["a"]
    with _session(cluster) as sess:
      np.testing.assert_array_equal(sess.run(looked_up), trained)


def test_a_standalone_export_serves_every_ps_table_in_one_process(
    cluster, tmp_path, monkeypatch):
  configs = {"a": _config(2), "b": _config(1)}
  ids = list(range(-3, 9))
  trained = {
      "a": np.array([[i, -i] for i in ids], np.float32),
      "b": np.array([[10 * i] for i in ids], np.float32)
  }
  table = _create(configs)
  save = table.assign({
      name: (_id(ids), _value(values)) for name, values in trained.items()
  }).save(str(tmp_path)).as_op()
  with _session(cluster) as sess:
    sess.run(save)

  # An export job's cluster has no PS tasks: not checked for a standalone
  # export, which places nothing on them.
  monkeypatch.setenv("TF_CONFIG",
                     json.dumps({"cluster": {"worker": ["localhost:1"]}}))
  with tf.Graph().as_default() as graph:
    with export_context.enter_export_mode(
        export_context.ExportMode.STANDALONE):
      served = _create(configs)
      basenames = multi_hash_table_ops.find_ps_checkpoints(
          str(tmp_path), "MonolithMultiHashTable")
      assert len(basenames) == 2
      looked_up = served.restore(basenames).lookup(
          {name: _id(ids) for name in configs})
    # With the same PS count each table reads only its own PS's save,
    # from the SavedModel's copies of its files (assets) once exported.
    def saves_read(op):
      paths, ops = set(), [op.inputs[1].op]
      while ops:
        producer = ops.pop()
        if producer.type == "Const":
          paths.add(re.sub(r"(\.meta)?-[0-9]{5}-of-[0-9]{5}$", "",
                           tf.get_static_value(producer.outputs[0]).item()
                           .decode()))
        ops.extend(i.op for i in producer.inputs)
      return sorted(paths)

    read = [saves_read(op) for op in graph.get_operations()
            if op.type == "MonolithMultiHashTableRestoreResharded"]
    assert read == [[basenames[0]], [basenames[1]]]
    assets = sorted(
        os.path.basename(tf.get_static_value(asset).item().decode())
        for asset in graph.get_collection(tf1.GraphKeys.ASSET_FILEPATHS))
    assert assets == sorted(
        f"{os.path.basename(b)}{kind}-00000-of-00001"
        for b in basenames for kind in ("", ".meta"))
    on_ps = [op.name for op in graph.get_operations() if "/job:" in op.device]
    assert not on_ps
    # No cluster: the SavedModel's process holds both PS's tables.
    with tf1.train.SingularMonitoredSession() as sess:
      values = sess.run(looked_up)
  for name in configs:
    np.testing.assert_array_equal(values[name], trained[name])


def test_saves_given_as_tensors_of_a_ps_group_are_read_once_each(
    cluster, tmp_path):
  # An export's asset paths are tensors (fed when the SavedModel loads):
  # with ps_group each PS reads its own save, not both.
  ids, trained = _save_slot_a(cluster, tmp_path)
  saves = multi_hash_table_ops.find_ps_checkpoints(str(tmp_path),
                                                   "MonolithMultiHashTable")
  with tf.Graph().as_default() as graph:
    table = _create({"a": _config(1)}, name_suffix="fed")
    fed = [tf1.placeholder(tf.string, []) for _ in saves]
    with pytest.raises(ValueError, match="ps_group needs basenames as a list"):
      table.restore(fed[0], ps_group=True)
    with pytest.raises(ValueError, match=r"basenames\[0\] = .*_1' is not a "
                       "save of PS 0"):
      table.restore(saves[::-1], ps_group=True)
    looked_up = table.restore(fed, ps_group=True).lookup({"a": _id(ids)})["a"]
    restores = [op for op in graph.get_operations()
                if op.type == "MonolithMultiHashTableRestoreResharded"]
    # One save each (a pack of one tensor), not both.
    assert [op.inputs[1].op.type for op in restores] == ["Pack", "Pack"]
    assert [len(op.inputs[1].op.inputs) for op in restores] == [1, 1]
    with _session(cluster) as sess:
      np.testing.assert_array_equal(
          sess.run(looked_up, dict(zip(fed, saves))), trained)
      # A tensor that is not its PS's save fails, naming it.
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match=r"basenames\[(0|1)\] is not a save of PS \1"):
        sess.run(looked_up, dict(zip(fed, saves[::-1])))


def test_saves_of_a_group_are_checked_against_its_count(cluster, tmp_path):
  # Saves named as a PS group's are those its checkpoint holds: a stale
  # PS 2 left by an earlier save of 3 PS, or a PS left out, is refused (every
  # PS read every save given: the stale one's entries overwrote fresh ones),
  # and so is a save that never recorded its end.
  _save_slot_a(cluster, tmp_path)
  saves = multi_hash_table_ops.find_ps_checkpoints(str(tmp_path),
                                                   "MonolithMultiHashTable")
  stale = saves[0][:-1] + "2"
  with tf.Graph().as_default():
    table = _create({"a": _config(1)}, name_suffix="checked")
    for given in (saves + [stale], saves[:1]):
      for ps_group in (False, True):
        with pytest.raises(ValueError, match=re.escape(
            f"are named as saves of the PS group {saves[0][:-2]}_<j>, whose "
            f"checkpoint holds {saves}")):
          table.restore(given, ps_group=ps_group)
    save_utils.mark_ps_files_saving(str(tmp_path), "MonolithMultiHashTable")
    with pytest.raises(tf.errors.DataLossError,
                       match="began and never recorded its end"):
      table.restore(saves)


def test_save_records_the_ps_count_once_every_ps_saved(cluster, tmp_path):
  table = _create({"a": _config(1)})
  # An earlier save into the directory by 3 PS left PS 2's files.
  stale = tmp_path / "MonolithMultiHashTable_2.meta-00000-of-00001"
  stale.write_bytes(b"")
  save = table.assign({"a": (_id([1, 2]), _value([[1], [2]]))}).save(
      str(tmp_path)).as_op()
  # The mark of a save under way is written before either PS saves, the
  # count once both did (each whole: a temporary, then a rename).
  mark, write = [op for op in save.graph.get_operations()
                 if op.type == "MonolithWriteFileAtomically"]
  assert tf.get_static_value(mark.inputs[1]) == b"saving\n"
  assert tf.get_static_value(write.inputs[1]) == b"2\n"
  saves = [op for op in save.graph.get_operations()
           if op.type == "MonolithMultiHashTableSave"]
  assert sorted(op.device for op in saves) == [
      utils.ps_device(i) for i in range(2)]

  def waits_for(op):
    # Every op it runs after: inputs and control inputs, transitively.
    seen, todo = set(), [op]
    while todo:
      current = todo.pop()
      for before in list(current.control_inputs) + [
          t.op for t in current.inputs]:
        if before not in seen:
          seen.add(before)
          todo.append(before)
    return seen

  for op in saves:
    assert mark in waits_for(op)
  assert set(saves) <= waits_for(write)
  with _session(cluster) as sess:
    sess.run(save)
    assert save_utils.read_ps_count(str(tmp_path),
                                    "MonolithMultiHashTable") == 2
    # A save that began and never wrote its count (the job stopped): its
    # files are refused, not mixed with an earlier save's.
    sess.run(mark)
    with pytest.raises(tf.errors.DataLossError,
                       match="began and never recorded its end"):
      multi_hash_table_ops.find_ps_checkpoints(str(tmp_path),
                                               "MonolithMultiHashTable")
    sess.run(write)
  # Restores read this save's 2 PS, not the stale third.
  assert multi_hash_table_ops.find_ps_checkpoints(
      str(tmp_path), "MonolithMultiHashTable") == [
          str(tmp_path / f"MonolithMultiHashTable_{i}") for i in range(2)
      ]


def test_save_directories_with_a_trailing_slash_name_the_same_files(
    cluster, _fresh_graph, tmp_path):
  graph = _fresh_graph
  table = _create({"a": _config(1)})
  directory = tf1.placeholder(tf.string, [])
  # Fetching the basenames runs the saves' marks (files in the directory).
  assets = str(tmp_path / "assets")
  other = str(tmp_path / "other")
  os.makedirs(assets)
  os.makedirs(other)
  for given in (assets, assets + "/", assets + "//"):
    table.save(given)
  table.save(directory)
  basenames = [
      op.outputs[0]
      for op in graph.get_operations()
      if op.type == "StringJoin" and "dmtht_save_" in op.name
  ]
  assert len(basenames) == 8
  with tf1.Session(cluster[0][0].target, config=cluster[1]) as sess:
    for tensor_given in (other, other + "//"):
      joined = [
          b.decode()
          for b in sess.run(basenames, {directory: tensor_given})
      ]
      expected = other + "/MonolithMultiHashTable_"
      assert joined[:6] == [assets + "/MonolithMultiHashTable_0",
                            assets + "/MonolithMultiHashTable_1"] * 3
      assert joined[-2:] == [expected + "0", expected + "1"]


def test_saves_and_restores_take_paths(cluster, tmp_path, _fresh_graph):
  """pathlib.Path directories and basenames, as the listeners take them
  (TF's ops do not)."""
  table = _create({"a": _config(1)})
  table = table.assign({"a": (_id([1, 2]), _value([[1], [2]]))})
  saved = table.save(tmp_path).as_op()
  restored = table.restore([tmp_path / f"MonolithMultiHashTable_{i}"
                            for i in range(2)]).lookup({"a": _id([1, 2])})
  with _session(cluster) as sess:
    sess.run(saved)
    np.testing.assert_array_equal(sess.run(restored)["a"], [[1], [2]])
  assert os.path.exists(tmp_path / "MonolithMultiHashTable.num_ps")


def test_an_empty_save_directory_is_refused(cluster, _fresh_graph):
  table = _create({"a": _config(1)})
  with pytest.raises(ValueError, match="directory is empty"):
    table.save("")
  directory = tf1.placeholder(tf.string, [])
  save = table.save(directory).as_op()
  with tf1.Session(cluster[0][0].target, config=cluster[1]) as sess:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="directory is empty"):
      sess.run(save, {directory: ""})


def test_restores_read_only_the_saves_that_can_hold_their_ids(
    tmp_path, _fresh_graph):
  for j in range(4):  # a 4-PS group's meta files
    (tmp_path / f"G_{j}.meta-00000-of-00001").write_bytes(b"")
  basenames = [str(tmp_path / f"G_{j}") for j in range(4)]

  def read_by_each_ps(num_ps, given):
    with tf.Graph().as_default() as graph:
      _create({"a": _config(1)}, num_ps=num_ps).restore(given)
      return [[b.decode() for b in tf.get_static_value(op.inputs[1]).ravel()]
              for op in graph.get_operations()
              if op.type == "MonolithMultiHashTableRestoreResharded"]

  # The whole group into 2 PS: PS i reads the saves j with j % 2 == i.
  assert read_by_each_ps(2, basenames) == [basenames[0::2], basenames[1::2]]
  # Part of it is refused (the ids of the PS left out would be lost).
  with pytest.raises(ValueError, match="whose checkpoint holds"):
    read_by_each_ps(3, basenames[:3])
  # Saves not named as one group's: every PS reads every save given.
  others = [str(tmp_path / "H_0"), str(tmp_path / "K_1")]
  assert read_by_each_ps(2, others) == [others] * 2


def test_a_distributed_export_is_refused():
  with export_context.enter_export_mode(
      export_context.ExportMode.DISTRIBUTED):
    with pytest.raises(NotImplementedError, match="ExportMode.STANDALONE"):
      _create({"a": _config(1)})


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
  # As the original names it.
  assert train.name == "dmtht_ao/done"
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


def test_each_ps_tables_take_its_rate_vector_whole(cluster):
  # Not a Reshape of each table's slice joined back on every PS (graphs of
  # hundreds of tables on tens of PS took minutes to build): the same
  # rates, so the same updates, in a graph whose size does not follow
  # tables x PS.
  configs = {
      "a": _config(1, learning_rate=0.5),
      "b": _config(2, learning_rate=0.25),
      "c": _config(1, learning_rate=1.0),
  }
  table = _create(configs)
  graph = tf1.get_default_graph()
  rates = [
      graph.get_operation_by_name(f"dmtht_ps_{i}/learning_rate").outputs[0]
      for i in range(2)
  ]
  creates = [op for op in graph.get_operations()
             if op.type == "CreateMonolithMultiHashTable"]
  assert len(creates) == 2
  # One serialized config for every PS, on none of them (the worker's).
  (config,) = {op.inputs[0] for op in creates}
  assert config.op.device == ""
  per_ps_ops = [op.type for op in graph.get_operations()
                if op.name.startswith("dmtht_ps_")]
  assert "Reshape" not in per_ps_ops and "ConcatV2" not in per_ps_ops
  ids = _id([0, 1, 2, 3])
  grads = {name: (ids, tf.ones([4, 1 if name != "b" else 2]))
           for name in configs}
  train = table.apply_gradients(
      grads, tf1.train.get_or_create_global_step()).as_op()
  looked_up = table.lookup({name: ids for name in configs})
  optimize_rates = {
      op.inputs[-3] for op in graph.get_operations()
      if op.type.startswith("MonolithMultiHashTableOptimize")
  }
  with _session(cluster) as sess:
    sess.run(train)
    values = sess.run(looked_up)
    np.testing.assert_allclose(sess.run(rates), [[0.5, 0.25, 1.0]] * 2)
  np.testing.assert_allclose(values["a"], [[-0.5]] * 4)
  np.testing.assert_allclose(values["b"], [[-0.25, -0.25]] * 4)
  np.testing.assert_allclose(values["c"], [[-1.0]] * 4)
  assert optimize_rates <= set(rates), optimize_rates


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


def _float16_crossings(graph):
  """(op type, its device, consumer type, its device) of each float16
  tensor consumed on another device."""
  crossings = []
  for op in graph.get_operations():
    for out in op.outputs:
      if out.dtype == tf.float16:
        for consumer in out.consumers():
          if consumer.device != op.device:
            crossings.append(
                (op.type, op.device, consumer.type, consumer.device))
  return crossings


def _recv_types(run_metadata, device_prefix):
  """The dtypes of the _Recv nodes of the partitions on a device."""
  types = set()
  for graph_def in run_metadata.partition_graphs:
    for node in graph_def.node:
      if node.op == "_Recv" and node.device.startswith(device_prefix):
        types.add(node.attr["tensor_type"].type)
  return types


@pytest.mark.parametrize("pack_ids", [True, False])
def test_ids_cross_packed(cluster, pack_ids):
  """With pack_ids, a PS receives one uint8 tensor of ids, no int64 ones."""
  table = _create({"a": _config(2), "b": _config(1)}, pack_ids=pack_ids)
  # Feature ids: slot in the top 16 bits.
  fids = [(3 << 48) | 12345, (3 << 48) | (2**48 - 2), (3 << 48) | 12345]
  assign = table.assign_add({"a": (_id(fids), _value([[1, 2], [3, 4],
                                                      [5, 6]]))}).as_op()
  # Fed: constant ids would be packed by constant folding, on the PS.
  ids = tf1.placeholder(tf.int64, [None])
  looked_up = table.lookup({"a": ids, "b": _id([-1])})
  graph = tf1.get_default_graph()
  _check_placement(graph)
  types = [op.type for op in graph.get_operations()]
  # A PS's ids of the assign and of the lookup.
  assert types.count("MonolithDistributedPsUnpackIds") == (4 if pack_ids
                                                           else 0)
  options = tf1.RunOptions(output_partition_graphs=True)
  metadata = tf1.RunMetadata()
  with _session(cluster) as sess:
    sess.run(assign)
    got = sess.run(looked_up, {ids: fids + [7]}, options=options,
                   run_metadata=metadata)
  np.testing.assert_array_equal(got["a"], [[6, 8], [3, 4], [6, 8], [0, 0]])
  np.testing.assert_array_equal(got["b"], [[0]])
  for i in range(2):
    assert _recv_types(metadata, f"/job:ps/replica:0/task:{i}") == (
        {types_pb2.DT_UINT8} if pack_ids else {types_pb2.DT_INT64})


def test_pack_ids_round_trips_the_partition():
  """Pack and unpack give the partition's ids and splits back exactly."""
  rng = np.random.default_rng(7)
  dims = [1, 3, 2, 4]
  tables = _random_tables(rng, dims, [50, 0, 300, 20], id_range=40)
  tables[2] = (np.int64(5) << 48) | rng.integers(0, 2**48, 300)
  ps_ids, ps_splits, _, _, _ = _partition(tables, 3, dims, unique=False)
  packed = [ops.monolith_distributed_ps_pack_ids(v, s)
            for v, s in zip(ps_ids, ps_splits)]
  unpacked = [ops.monolith_distributed_ps_unpack_ids(p, num_tables=4)
              for p in packed]
  want, got, sizes = _run([(ps_ids, ps_splits), unpacked,
                           [tf.size(p) for p in packed]])
  for p in range(3):
    np.testing.assert_array_equal(got[p][0], want[0][p])
    np.testing.assert_array_equal(got[p][1], want[1][p])
  # Each table's ids in the bytes their range needs: table 2's feature ids
  # in 6.
  for p in range(3):
    body = 0
    for t in range(4):
      ids = want[0][p][want[1][p][t]:want[1][p][t + 1]]
      if ids.size:
        span = int(ids.max()) - int(ids.min())
        width = max(1, (span.bit_length() + 7) // 8)
        assert t != 2 or width == 6
        body += ids.size * width
    assert sizes[p] == 4 * 16 + body


def test_pack_ids_names_bad_splits():
  ids = tf1.placeholder(tf.int64)
  split = tf1.placeholder(tf.int64)
  pack = ops.monolith_distributed_ps_pack_ids(ids, split)
  for bad_ids, bad_split, match in [
      ([1, 2, 3], [0, 5, 3], r"id_split: .*row splits\[1\] = 5 is past the "
       r"last \(3\)"),
      ([1, 2, 3], [0, 2, 1, 3], r"id_split: .*row splits\[2\] = 1 is below "
       r"row splits\[1\] = 2"),
      ([], [0], "id_split: .*need at least 2 values"),
      ([1], [0], "id_split must end at the number of ids"),
      ([1, 2], [1, 2], "id_split: .*must start at 0, got 1"),
      # Differences past int64 (a subtraction wrapped: reads past the ids).
      ([5], [0, 1, -2**63, -1, 1], r"id_split: .*row splits\[2\] = "
       r"-9223372036854775808 is below row splits\[1\] = 1")]:
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
      _run(pack, {ids: np.array(bad_ids, np.int64),
                  split: np.array(bad_split, np.int64)})


def test_unpack_ids_rejects_bad_bytes():
  packed = tf1.placeholder(tf.uint8)
  unpack = ops.monolith_distributed_ps_unpack_ids(packed, num_tables=2)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="fewer than the 32 of the headers of 2 tables"):
    _run(unpack, {packed: np.zeros(20, np.uint8)})
  header = np.zeros(32, np.uint8)
  header[12] = header[28] = 1
  header[8] = 3  # table 0 says 3 ids of 1 byte
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="table 0 \\(byte 0\\) says its ids end at byte 35"):
    _run(unpack, {packed: header})
  # A table count past int32 (the kernel's int) is refused when the graph
  # is built, not wrapped into a negative dimension.
  with pytest.raises(ValueError, match="out of range for an int32"):
    ops.monolith_distributed_ps_unpack_ids(packed, num_tables=2**63 - 1)


def test_the_originals_positional_arguments_keep_their_meaning():
  # The original's 5th argument was max_rpc_deadline_millis (30): it must
  # not turn on float16 transfers (or id packing off).
  table = distributed_ps_factory.create_native_multi_hash_table(
      2, {"a": _config(1)}, None, None, 30)
  assert table.transfer_float16 is False and table.pack_ids is True
  dist = distributed_ps.DistributedMultiTypeHashTable(
      2, {"a": _config(1)}, lambda i, c: table.tables[i], False, 30)
  assert dist.transfer_float16 is False and dist.pack_ids is True


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

  # Embeddings go float16 from each PS to the worker (converted there by
  # the gather), gradients float16 from the worker (the scatter-add's
  # outputs) to each PS, where a Cast reads them.
  graph = tf1.get_default_graph()
  ps = [utils.ps_device(0), utils.ps_device(1)]
  to_float16 = "MonolithDistributedPsLookupFloat16"
  scatter_add = "MonolithDistributedPsScatterAdd"
  assert sorted(_float16_crossings(graph)) == sorted([
      (to_float16, ps[0], "ConcatV2", ""),
      (to_float16, ps[1], "ConcatV2", ""),
      (scatter_add, "", "Cast", ps[0]),
      (scatter_add, "", "Cast", ps[1]),
  ])
  assert [op.type for op in graph.get_operations()
          ].count("MonolithDistributedPsGatherFloat16") == 1
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


def test_float16_transfer_saturates_past_its_range(cluster):
  # Summed gradients (and embeddings) past float16's range arrive as
  # +-65504, not inf: SGD would make the entry -inf, adagrad NaN for good.
  # A float32 infinity (training diverged) crosses as itself.
  ids = _id([0, 1, 1, 2, 4])
  table = _create({"a": _config(1, learning_rate=1.0)}, transfer_float16=True)
  grads_fed = tf1.placeholder(tf.float32, [None, 1])
  train = table.apply_gradients({"a": (ids, grads_fed)},
                                global_step=0).as_op()
  looked_up = table.lookup({"a": _id([0, 1, 2, 3, 4, 5])})["a"]
  big = table.assign({"a": (_id([3, 5]), _value([[1e30], [-np.inf]]))}).as_op()
  with _session(cluster) as sess:
    sess.run(train, {
        grads_fed: [[1e6], [40000.0], [40000.0], [float("nan")], [np.inf]]
    })
    sess.run(big)
    got = sess.run(looked_up)
  assert got[0, 0] == -65504 and got[1, 0] == -65504  # 80000 summed
  assert np.isnan(got[2, 0])  # NaN stays NaN
  assert got[3, 0] == 65504
  assert got[4, 0] == -np.inf  # an infinite gradient, SGD with rate 1
  assert got[5, 0] == -np.inf


@pytest.mark.parametrize("num_ps,transfer_float16,pack_ids",
                         [(2, False, True), (1, False, True), (2, True, True),
                          (1, True, True), (2, False, False),
                          (1, True, False)])
def test_ps_train_exactly_as_one_local_table(cluster, num_ps,
                                             transfer_float16, pack_ids):
  configs = {"a": _config(2, learning_rate=0.5),
             "b": _config(3, learning_rate=0.25)}
  # Gradient sums and values stay multiples of 1/32 below 64 in magnitude:
  # exact in float16 too (11 significant bits).
  dist = _create(configs, num_ps=num_ps, transfer_float16=transfer_float16,
                 pack_ids=pack_ids)
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
  # No ids, no values, whatever their shape, as MultiHashTable takes them.
  table = table.apply_gradients({"a": (empty, tf.zeros([0, 1]))},
                                global_step=0)
  table = table.assign({"a": (empty, tf.zeros([0, 1]))})
  table = table.assign_add({"a": (empty, tf.zeros([0, 3]))})
  table, status = table.reinitialize("a", empty)
  looked_up = table.lookup({"a": empty})["a"]
  with _session(cluster) as sess:
    values, status_value = sess.run([looked_up, status])
  assert values.shape == (0, 2)
  assert status_value.shape == (0,)


def test_bad_input_errors():
  configs = {"a": _config(1)}
  for bad in (-1, None, "2", 2.0, True):
    with pytest.raises(ValueError,
                       match=f"num_ps must be an integer >= 0, got {bad!r}"):
      _create(configs, num_ps=bad)
    with pytest.raises(ValueError, match="ps_num must be an integer >= 0"):
      hash_filter_ops.create_hash_filters(bad, True)
    with pytest.raises(ValueError, match="ps_num must be an integer >= 0"):
      save_utils.PsMonitor(bad)
  with pytest.raises(ValueError, match="num_ps must be >= 1, got 0"):
    distributed_ps.DistributedMultiTypeHashTable(0, configs, lambda i, c: None)
  for bad in (2.0, False):
    with pytest.raises(ValueError, match="num_ps must be an integer >= 1, "
                       f"got {bad}"):
      distributed_ps.DistributedMultiTypeHashTable(bad, configs,
                                                   lambda i, c: None)
  with pytest.raises(TypeError, match="returned a str for PS 0; expected a "
                     "MultiHashTable"):
    distributed_ps.DistributedMultiTypeHashTable(2, configs,
                                                 lambda i, c: "table")

  def other_tables(i, unused_configs):
    return multi_hash_table_ops.MultiHashTable.from_configs(
        {"b": _config(1)}, name_suffix=f"other_{i}")

  with pytest.raises(ValueError, match="for PS 0 has the tables"):
    distributed_ps.DistributedMultiTypeHashTable(2, configs, other_tables)
  shared = multi_hash_table_ops.MultiHashTable.from_configs(
      configs, name_suffix="shared")
  with pytest.raises(ValueError, match=r"returned the table of PS 0 "
                     r"\(MonolithMultiHashTable_shared\) for PS 1 too"):
    distributed_ps.DistributedMultiTypeHashTable(2, configs,
                                                 lambda i, c: shared)
  one_filter = hash_filter_ops.create_hash_filters(0, True)[0]
  with pytest.raises(TypeError, match=r"hash_filters must be a list of "
                     r"handles, one per PS task, got one handle, "
                     r"MonolithHashFilter\S*:0: pass \[handle\]"):
    _create(configs, hash_filters=one_filter)
  with pytest.raises(TypeError, match=r"sync_clients\[0\] is 3, not a "
                     "resource handle"):
    _create(configs, sync_clients=[3, None])
  with pytest.raises(ValueError, match="slot_to_config is empty"):
    _create({})
  with pytest.raises(ValueError, match="hash_filters has 1 handles; expected "
                     "one per PS task"):
    _create(configs, hash_filters=[None])
  # Handle i must be on PS task i: TF would move the table's creation op
  # to the handle's device without a word.
  filters = hash_filter_ops.create_hash_filters(2, True)
  for wrong in (filters[::-1], [filters[0]] * 2, [one_filter, filters[1]]):
    with pytest.raises(ValueError, match=r"hash_filters\[\d\] \(.*\) is on "
                       r".*, not PS task \d \(/job:ps/task:\d"):
      _create(configs, hash_filters=wrong)
  assert _create(configs, hash_filters=filters,
                 name_suffix="own_filters") is not None
  # Empty lists are none, as the original's sync_clients=[].
  assert _create(configs, hash_filters=[], sync_clients=[],
                 name_suffix="empty_lists") is not None

  table = _create(configs)
  with pytest.raises(ValueError, match=r"unknown table names \['b'\]"):
    table.lookup({"b": _id([1])})
  with pytest.raises(ValueError, match=r"unknown table names \['b'\]"):
    table.apply_gradients({"b": (_id([1]), _value([[1]]))}, global_step=0)
  # As MultiHashTable's: a list, an item that is no pair.
  with pytest.raises(TypeError, match="expected a dict keyed by table name"):
    table.lookup([_id([1])])
  with pytest.raises(TypeError, match=r"table a: expected a pair \(ids, "
                     r"values\), got tuple of 1"):
    table.assign({"a": (_id([1]),)})
  with pytest.raises(TypeError, match=r"table a: expected a pair"):
    table.apply_gradients({"a": _id([1])}, global_step=0)


@pytest.mark.parametrize("num_ps", [0, 2])
def test_other_int_and_float_widths_are_cast(cluster, num_ps):
  # Rates of mixed dtypes (a float64 schedule, a numpy float64, a float32
  # tensor), int32 ids, float64 gradients and an int32 step train as their
  # int64 / float32 equivalents would.
  configs = {
      "a": _config(2, learning_rate=lambda: tf.constant(0.5, tf.float64)),
      "b": _config(1, learning_rate=np.float64(0.25)),
      "c": _config(1, learning_rate=tf.constant(2.0)),
  }
  table = _create(configs, num_ps=num_ps, name_suffix=f"widths_{num_ps}")
  ids = tf.constant([3, -2, 3], tf.int32)
  grads = {
      "a": tf.constant([[1, 2], [3, 4], [5, 6]], tf.float64),
      "b": tf.constant([[4], [8], [4]], tf.float16),
      "c": np.array([[1], [1], [1]], np.float64),
  }
  trained = table.apply_gradients(
      {name: (ids, grad) for name, grad in grads.items()},
      global_step=tf.constant(1, tf.int32),
      req_time=tf.constant(5, tf.int32))
  looked_up = trained.lookup({name: ids[:2] for name in configs})
  # Local and PS tables give the same static shapes.
  assert [looked_up[name].shape.as_list() for name in configs] == [[2, 2],
                                                                  [2, 1],
                                                                  [2, 1]]
  with _session(cluster) as sess:
    values = sess.run(looked_up)
  np.testing.assert_allclose(values["a"], [[-3, -4], [-1.5, -2]])
  np.testing.assert_allclose(values["b"], [[-2], [-2]])
  np.testing.assert_allclose(values["c"], [[-4], [-2]])


@pytest.mark.parametrize("num_ps", [0, 2])
def test_ids_and_values_of_another_kind_name_their_table(num_ps):
  table = _create({"a": _config(1)}, num_ps=num_ps)
  with pytest.raises(ValueError, match="the ids of table a must be int64, "
                     "got a float32 tensor"):
    table.lookup({"a": tf.constant([1.0])})
  with pytest.raises(ValueError, match="the ids of table a must be int64"):
    table.lookup({"a": ["x"]})
  # A list of id tensors is packed, as before.
  table.lookup({"a": [tf.constant(1, tf.int64), tf.constant(2, tf.int64)]})
  # Not truncated to integers.
  with pytest.raises(ValueError, match="the ids of table a must be int64, "
                     "got float64 values"):
    table.lookup({"a": np.array([1.5])})
  with pytest.raises(ValueError, match="got bool values"):
    table.lookup({"a": [True]})
  with pytest.raises(ValueError, match="global_step must be int64, got "
                     "float64 values"):
    table.apply_gradients({"a": (_id([1]), _value([[1]]))}, global_step=2.5)
  with pytest.raises(ValueError, match="the values of table a must be "
                     "float32, got a int32 tensor"):
    table.assign({"a": (_id([1]), tf.constant([[1]]))})
  with pytest.raises(ValueError, match="global_step must be int64, got a "
                     "float32 tensor"):
    table.apply_gradients({"a": (_id([1]), _value([[1]]))},
                          global_step=tf.constant(1.0))


@pytest.mark.parametrize("num_ps", [1, 2])
def test_values_of_the_wrong_size_name_their_table(cluster, num_ps):
  # On one PS the tables' values were flattened together unchecked: a's
  # extra row went to b.
  table = _create({"a": _config(1), "b": _config(2)}, num_ps=num_ps,
                  name_suffix=f"sizes_{num_ps}")
  with pytest.raises(ValueError, match=r"the values of table a must be "
                     r"\[len\(ids\), 1\] = \[2, 1\], got shape \(3, 1\)"):
    table.assign({"a": (_id([1, 2]), _value([[1], [2], [3]])),
                  "b": (_id([3]), _value([[4, 4]]))})
  with pytest.raises(ValueError, match=r"the values of table b must be "
                     r"\[len\(ids\), 2\], got shape \(2, 1\)"):
    table.apply_gradients({"b": (_id([3, 4]), _value([[4], [4]]))},
                          global_step=0)
  # Flat gradients of the right size train as [len(ids), dim].
  trained = table.apply_gradients({"b": (_id([3]), _value([1, 2]))},
                                  global_step=0)
  values = tf.compat.v1.placeholder(tf.float32, shape=None)
  updated = table.assign_add({"a": (_id([1, 2]), values),
                              "b": (_id([3]), _value([[4, 4]]))})
  update = updated.as_op()
  lookup = table.lookup({"a": _id([1, 2]), "b": _id([3])})
  train = trained.as_op()
  with _session(cluster) as sess:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"the values of table a must be \[len\(ids\), 1\]"):
      sess.run(update, feed_dict={values: [1, 2, 3]})
    sess.run(update, feed_dict={values: [5, 6]})
    sess.run(train)  # sgd, learning rate 1
    looked_up = sess.run(lookup)
  np.testing.assert_array_equal(looked_up["a"], [[5], [6]])
  np.testing.assert_array_equal(looked_up["b"], [[3, 2]])


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


# ---------------------------------------------------------------------------
# The worker's fused kernels (distributed_ps_ops.cc), against the stock ops
# they replace, in a local session.

_EXTREME_IDS = [-1, -2, -(2**63), 2**63 - 1, 2**62 + 1, 0, -7, 2**32, -(2**32)]


def _run(fetches, feed_dict=None):
  with tf1.Session() as sess:
    return sess.run(fetches, feed_dict)


def _random_tables(rng, dims, sizes, id_range):
  """Per table, ids with repeats (and the extreme ids in the last table)."""
  tables = []
  for t, n in enumerate(sizes):
    ids = rng.integers(-id_range, id_range, n).astype(np.int64)
    if t == len(sizes) - 1:
      ids = np.concatenate([ids, _EXTREME_IDS, _EXTREME_IDS[::2]])
    tables.append(ids)
  return tables


def _stock_partition(tables, num_ps, unique):
  """Per PS, its ids and row splits, as tf.unique + floormod would send."""
  ps_ids = [[] for _ in range(num_ps)]
  ps_splits = [[0] for _ in range(num_ps)]
  for ids in tables:
    sent = list(dict.fromkeys(ids.tolist())) if unique else ids.tolist()
    for p in range(num_ps):
      # Python's % is a floor modulo, as tf.math.floormod.
      mine = [x for x in sent if x % num_ps == p]
      ps_ids[p] += mine
      ps_splits[p].append(ps_splits[p][-1] + len(mine))
  return ps_ids, ps_splits


def _partition(tables, num_ps, dims, unique=True):
  """The partition's ps_ids, ps_id_splits, index, float_splits, id_counts."""
  return ops.monolith_distributed_ps_partition(
      ids=[np.asarray(t, np.int64) for t in tables],
      num_ps=num_ps,
      dims=dims,
      unique=unique)


@pytest.mark.parametrize("num_ps", [1, 2, 3, 4, 5, 7, 64])
@pytest.mark.parametrize("unique", [True, False])
def test_partition_sends_what_unique_and_floormod_send(num_ps, unique):
  rng = np.random.default_rng(num_ps)
  dims = [1, 3, 16, 2]
  tables = _random_tables(rng, dims, [50, 0, 300, 20], id_range=40)
  ps_ids, ps_splits, index, float_splits, id_counts = _run(
      _partition(tables, num_ps, dims, unique))
  assert id_counts.tolist() == [len(t) for t in tables]
  expected_ids, expected_splits = _stock_partition(tables, num_ps, unique)
  for p in range(num_ps):
    np.testing.assert_array_equal(ps_ids[p], expected_ids[p])
    np.testing.assert_array_equal(ps_splits[p], expected_splits[p])
  # The index points each id at its row in the PS results, concatenated.
  sizes = [
      sum((s[t + 1] - s[t]) * dims[t] for t in range(len(dims)))
      for s in expected_splits
  ]
  np.testing.assert_array_equal(float_splits, np.cumsum([0] + sizes))
  row_ids = np.full(float_splits[-1], 0, np.int64)
  row_tables = np.full(float_splits[-1], -1)
  for p in range(num_ps):
    offset = float_splits[p]
    for t, dim in enumerate(dims):
      for x in ps_ids[p][ps_splits[p][t]:ps_splits[p][t + 1]]:
        row_ids[offset], row_tables[offset] = x, t
        offset += dim
  position = 0
  for t, ids in enumerate(tables):
    for x in ids:
      assert (row_ids[index[position]], row_tables[index[position]]) == (x, t)
      position += 1
  if not unique:  # every id its own row
    assert len(set(index.tolist())) == len(index)


def test_partition_of_nothing():
  ps_ids, ps_splits, index, float_splits, id_counts = _run(
      _partition([np.zeros([0], np.int64)] * 2, 3, [4, 1]))
  assert id_counts.tolist() == [0, 0]
  assert [x.tolist() for x in ps_ids] == [[]] * 3
  assert [x.tolist() for x in ps_splits] == [[0, 0, 0]] * 3
  assert index.shape == (0,)
  assert float_splits.tolist() == [0, 0, 0, 0]


def _lookup_results(ps_ids, ps_splits, dims, rng):
  """A table's made-up float32 results for each PS's ids."""
  return [
      rng.normal(size=sum((s[t + 1] - s[t]) * d for t, d in enumerate(dims))
                ).astype(np.float32) for s in ps_splits
  ]


@pytest.mark.parametrize("num_ps", [1, 2, 3])
def test_gather_returns_what_stitch_and_gather_return(num_ps):
  rng = np.random.default_rng(10 + num_ps)
  # Odd dims: float16 results of odd lengths are padded.
  dims = [1, 3, 16, 5, 64, 9]
  tables = _random_tables(rng, dims, [30, 7, 200, 0, 40, 11], id_range=25)
  id_counts = np.array([len(t) for t in tables], np.int64)
  ps_ids, ps_splits, index, float_splits, _ = _run(
      _partition(tables, num_ps, dims))
  results = _lookup_results(ps_ids, ps_splits, dims, rng)

  # Stock: per PS, per table rows; dynamic_stitch of each table's unique ids'
  # rows, then the gather back to every id (float16: casts on both sides).
  def stock(results):
    out = []
    for t, ids in enumerate(tables):
      unique, idx = tf.unique(tf.constant(ids))
      part = tf.cast(tf.math.floormod(unique, num_ps), tf.int32)
      positions = tf.dynamic_partition(tf.range(tf.size(unique)), part,
                                       num_ps)
      rows = []
      for p in range(num_ps):
        begin = sum((ps_splits[p][u + 1] - ps_splits[p][u]) * dims[u]
                    for u in range(t))
        n = ps_splits[p][t + 1] - ps_splits[p][t]
        rows.append(tf.reshape(results[p][begin:begin + n * dims[t]],
                               [n, dims[t]]))
      out.append(tf.gather(tf.dynamic_stitch(positions, rows), idx))
    return out

  kwargs = dict(index=index, id_counts=id_counts, num_tables=len(dims),
                dims=dims)
  gathered = ops.monolith_distributed_ps_gather(
      values=np.concatenate(results), **kwargs)
  # As the PS sends them: float16, each PS's padded to an even length.
  float16 = [
      tf.cast(np.concatenate([r, np.zeros(r.size % 2, np.float32)]),
              tf.float16) for r in results
  ]
  gathered16 = ops.monolith_distributed_ps_gather_float16(
      float16_pairs=tf.bitcast(tf.reshape(tf.concat(float16, 0), [-1, 2]),
                               tf.int32),
      float_splits=float_splits, **kwargs)
  expected = stock([tf.constant(r) for r in results])
  expected16 = stock([
      tf.cast(tf.cast(tf.constant(r), tf.float16), tf.float32)
      for r in results
  ])
  got, got16, want, want16 = _run([gathered, gathered16, expected,
                                   expected16])
  for t in range(len(dims)):
    assert got[t].shape == (len(tables[t]), dims[t])
    assert got[t].tobytes() == want[t].tobytes()
    assert got16[t].tobytes() == want16[t].tobytes()


@pytest.mark.parametrize("num_ps", [1, 2])
@pytest.mark.parametrize("unique", [True, False])
def test_gather_of_distinct_or_every_id(num_ps, unique):
  """Also the rows gathered as slices of the results (one PS, every id)."""
  rng = np.random.default_rng(30 + num_ps)
  dims = [16, 3, 5, 64]  # table 1 starts aligned, tables 2 and 3 do not
  tables = [rng.choice(1000, 20, replace=False) for _ in range(4)]
  tables[2] = np.concatenate([tables[2], tables[2][:4]])  # repeats
  tables = [t.astype(np.int64) for t in tables]
  ps_ids, ps_splits, index, _, _ = _run(
      _partition(tables, num_ps, dims, unique))
  # Rows that tell the id and the column.
  results = []
  for ids, splits in zip(ps_ids, ps_splits):
    rows = []
    for t, dim in enumerate(dims):
      for x in ids[splits[t]:splits[t + 1]]:
        rows += [x + j / 100 for j in range(dim)]
    results.append(np.array(rows, np.float32))
  values = tf.constant(np.concatenate(results))
  gathered = ops.monolith_distributed_ps_gather(
      values=values, index=index,
      id_counts=np.array([len(t) for t in tables], np.int64),
      num_tables=len(dims), dims=dims)
  got = _run(gathered)
  for t, dim in enumerate(dims):
    expected = np.array([[x + j / 100 for j in range(dim)] for x in tables[t]],
                        np.float32)
    np.testing.assert_array_equal(got[t], expected)


# Offsets past either end of a buffer (and the int32 extremes).
_BAD_OFFSETS = (-1, -(1 << 31), (1 << 31) - 1)


@pytest.mark.parametrize("dims", [[1], [3, 16], [16, 5, 1]])
def test_gather_and_scatter_of_random_indices(dims):
  """Fuzz (fixed seed, bounded) of the index values the worker's gather and
  scatter-add take: each run gives numpy's rows or sums, or, for any row
  outside the buffer, InvalidArgument naming the row, never a read or
  write past it."""
  rng = np.random.default_rng(sum(dims))
  num_tables = len(dims)
  values_ph = tf1.placeholder(tf.float32, [None])
  index_ph = tf1.placeholder(tf.int32, [None])
  counts_ph = tf1.placeholder(tf.int64, [num_tables])
  rows_ph = [tf1.placeholder(tf.float32, [None, d]) for d in dims]
  splits_ph = tf1.placeholder(tf.int64, [2])
  gather = ops.monolith_distributed_ps_gather(
      values=values_ph, index=index_ph, id_counts=counts_ph,
      num_tables=num_tables, dims=dims)
  scatter = ops.monolith_distributed_ps_scatter_add(
      values=rows_ph, index=index_ph, id_counts=counts_ph,
      float_splits=splits_ph, num_ps=1, dims=dims)[0]
  pairs_ph = tf1.placeholder(tf.int32, [None])
  gather16 = ops.monolith_distributed_ps_gather_float16(
      float16_pairs=pairs_ph, index=index_ph, id_counts=counts_ph,
      float_splits=splits_ph, num_tables=num_tables, dims=dims)
  refused = 0
  with tf1.Session() as sess:
    for _ in range(60):
      counts = rng.integers(0, 5, num_tables)
      row_dims = np.repeat(dims, counts)
      size = int(rng.integers(0, 80))
      index = np.array([
          rng.choice(_BAD_OFFSETS + (size - d + 1,)) if rng.random() < 0.1
          else rng.integers(0, max(size - d + 1, 1)) for d in row_dims
      ], np.int64)
      in_range = all(0 <= x <= size - d for x, d in zip(index, row_dims))
      values = rng.normal(size=size).astype(np.float32)
      feed = {values_ph: values, index_ph: index.astype(np.int32),
              counts_ph: counts}
      # As float16, padded to an even length (the pad is no row's).
      halfs = np.append(values.astype(np.float16),
                        np.zeros(size % 2, np.float16))
      feed16 = {pairs_ph: halfs.view(np.int32), index_ph: feed[index_ph],
                counts_ph: counts, splits_ph: np.array([0, size], np.int64)}
      if in_range:
        begin = np.concatenate([[0], np.cumsum(counts)])
        for gathered, source, fed in ((gather, values, feed),
                                      (gather16, halfs, feed16)):
          got = sess.run(gathered, fed)
          for t, d in enumerate(dims):
            expected = [source[x:x + d]
                        for x in index[begin[t]:begin[t + 1]]]
            np.testing.assert_array_equal(
                got[t], np.array(expected, np.float32).reshape(-1, d))
      else:
        refused += 1
        for gathered, fed in ((gather, feed), (gather16, feed16)):
          with pytest.raises(tf.errors.InvalidArgumentError,
                             match="index of row"):
            sess.run(gathered, fed)
      # The same rows added into a buffer of `size` floats (at most what
      # the rows hold).
      size = min(size, int(np.sum(row_dims)))
      in_range = all(0 <= x <= size - d for x, d in zip(index, row_dims))
      rows = [rng.normal(size=(c, d)).astype(np.float32)
              for c, d in zip(counts, dims)]
      feed = {index_ph: index.astype(np.int32), counts_ph: counts,
              splits_ph: np.array([0, size], np.int64)}
      feed.update(zip(rows_ph, rows))
      if in_range:
        expected = np.zeros(size, np.float32)
        for x, row in zip(index, [r for rs in rows for r in rs]):
          expected[x:x + len(row)] += row
        np.testing.assert_allclose(sess.run(scatter, feed), expected,
                                   rtol=1e-6, atol=1e-6)
      else:
        with pytest.raises(tf.errors.InvalidArgumentError):
          sess.run(scatter, feed)
  assert refused > 3


@pytest.mark.parametrize("dim", [0, -3, 1 << 25])
def test_dims_out_of_range_are_refused_at_graph_build(dim):
  with tf.Graph().as_default():
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                       match=r"dims\[1\] must be in \[1, 2\^24\]"):
      _partition([[1], [2]], 2, [4, dim])
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                       match=r"dims\[1\] must be in \[1, 2\^24\]"):
      ops.monolith_distributed_ps_gather(
          values=tf.zeros([8]), index=tf.zeros([2], tf.int32),
          id_counts=np.array([1, 1], np.int64), num_tables=2, dims=[4, dim])


def _saturated_at_float16_range(x):
  """Finite floats clamped to float16's range; infinities and NaN kept."""
  return tf.where(tf.math.is_finite(x), tf.clip_by_value(x, -65504, 65504),
                  x)


def test_float16_conversions_are_tf_casts_bit_for_bit():
  """Every float16 (NaNs, infinities, subnormals) and many floats."""
  halves = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
  rng = np.random.default_rng(3)
  with np.errstate(invalid="ignore", over="ignore"):  # NaNs, infinities
    floats = np.concatenate([
        (rng.normal(size=20001) * 10**rng.uniform(-12, 7, 20001)),
        halves.view(np.float16).astype(np.float64),
    ]).astype(np.float32)
  specials = np.array(
      [0x7fc12345, 0xffa00001, 0x7f800001, 0x7f800000, 0xff800000, 0x1,
       0x80000001, 0x80000000, 0x33000001, 0x33000000, 0x477ff000,
       0x477fefff, 0x387fe000, 0x38800000], np.uint32).view(np.float32)
  floats = np.concatenate([floats, specials])  # odd: padded
  assert floats.size % 2
  as_float = ops.monolith_distributed_ps_gather_float16(
      float16_pairs=halves.view(np.int32),
      index=np.arange(2**16, dtype=np.int32),
      id_counts=np.array([2**16], np.int64),
      float_splits=np.array([0, 2**16], np.int64),
      num_tables=1,
      dims=[1])[0]
  # The floats in a table of dim 1 (every id a row, in pieces), beside one
  # of dim 3; the PS's float16 lookup against tf.cast of its float32 one
  # saturated at +-65504 (infinities and NaN kept).
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": _config(1), "b": _config(3)}, name_suffix="float16")
  ids = {"a": _id(np.arange(floats.size)), "b": _id(np.arange(10))}
  assign = table.assign({
      "a": (ids["a"], floats.reshape([-1, 1])),
      "b": (ids["b"], rng.normal(size=[10, 3]).astype(np.float32))
  }).as_op()
  ragged_id = table.get_ragged_id(ids)
  as_half = ops.monolith_distributed_ps_lookup_float16(
      mtable=table.handle, id=ragged_id.values, id_split=ragged_id.row_splits)
  with tf1.Session() as sess:
    sess.run(table.initializer)
    sess.run(assign)
    got_float, want_float, got_half, want_half = sess.run([
        as_float,
        tf.cast(tf.constant(halves.view(np.float16)), tf.float32), as_half,
        tf.cast(_saturated_at_float16_range(table.raw_lookup(ragged_id)),
                tf.float16)
    ])
  assert got_float.reshape([-1]).tobytes() == want_float.tobytes()
  assert want_half.size == floats.size + 30 and want_half.size % 2
  assert got_half.size == want_half.size + 1
  assert got_half[:-1].tobytes() == want_half.tobytes()
  assert got_half[-1] == 0
  # The table holds the floats themselves.
  assert want_half[:floats.size].tobytes() == _run(
      tf.cast(_saturated_at_float16_range(tf.constant(floats)),
              tf.float16)).tobytes()


@pytest.mark.parametrize("num_ps", [1, 2, 3])
@pytest.mark.parametrize("float16", [False, True])
def test_scatter_add_sums_as_unsorted_segment_sum(num_ps, float16):
  rng = np.random.default_rng(20 + num_ps)
  dims = [2, 16, 5, 64]
  tables = _random_tables(rng, dims, [40, 300, 0, 60], id_range=30)
  grads = [
      rng.normal(size=[len(ids), d]).astype(np.float32)
      for ids, d in zip(tables, dims)
  ]
  grads[0][:3] = -0.0  # the sum from zero makes these +0.0
  id_counts = np.array([len(t) for t in tables], np.int64)
  _, _, index, float_splits, _ = _partition(tables, num_ps, dims)
  dtype = tf.float16 if float16 else tf.float32
  got = ops.monolith_distributed_ps_scatter_add(
      values=grads,
      index=index,
      id_counts=id_counts,
      float_splits=float_splits,
      num_ps=num_ps,
      dims=dims,
      T=dtype)
  # Stock: the original apply_gradients' worker ops.
  per_table = []
  for ids, g in zip(tables, grads):
    unique, idx = tf.unique(tf.constant(ids))
    summed = tf.math.unsorted_segment_sum(g, idx, tf.size(unique))
    part = tf.cast(tf.math.floormod(unique, num_ps), tf.int32)
    per_table.append(tf.dynamic_partition(summed, part, num_ps))
  expected = [
      tf.cast(tf.concat([tf.reshape(t[p], [-1]) for t in per_table], 0),
              dtype) for p in range(num_ps)
  ]
  got, expected = _run([got, expected])
  for p in range(num_ps):
    assert got[p].dtype == expected[p].dtype
    assert got[p].tobytes() == expected[p].tobytes()


def test_scatter_copy_rows_keeps_bits_and_the_last_row():
  dims = [2]
  tables = [np.array([1, 3, 1, 2], np.int64)]
  rows = np.array([[-0.0, 1e-40], [1, 2], [5, -0.0], [3, 4]], np.float32)
  # Id 2 on PS 0 (floats [0, 2)), ids 1 and 3 on PS 1 (floats [2, 6)) at
  # offsets 2 and 4; id 1 twice: its last row wins.
  float_splits = np.array([0, 2, 6], np.int64)
  index = np.array([2, 4, 2, 0], np.int32)
  got = _run(ops.monolith_distributed_ps_scatter_add(
      values=[rows], index=index, id_counts=[4], float_splits=float_splits,
      num_ps=2, dims=dims, copy_rows=True))
  assert got[0].tobytes() == rows[3].tobytes()
  assert got[1].tobytes() == np.concatenate([rows[2], rows[1]]).tobytes()
  # Only the last of rows sharing a place goes on: no gradient.
  values = tf.constant(rows)
  copied = ops.monolith_distributed_ps_scatter_add(
      values=[values], index=index, id_counts=[4], float_splits=float_splits,
      num_ps=2, dims=dims, copy_rows=True)
  with pytest.raises(LookupError, match="copy_rows .* has no gradient"):
    tf.gradients(copied[1], values)


def test_assign_stores_the_values_as_given(cluster):
  # Rows are copied to the PS tasks, not added to zeros: -0.0 and
  # denormals keep their bits, as a local table's assign does.
  table = _create({"a": _config(2)})
  values = np.array([[-0.0, 1e-40], [1e-45, -3.5]], np.float32)
  table = table.assign({"a": (_id([4, 7]), _value(values))})
  looked_up = table.lookup({"a": _id([4, 7])})["a"]
  with _session(cluster) as sess:
    got = sess.run(looked_up)
  assert got.tobytes() == values.tobytes()


def test_fused_ops_gradients():
  dims = [2, 3]
  tables = [np.array([5, 1, 5, 5], np.int64), np.array([2, 7, 2], np.int64)]
  id_counts = np.array([4, 3], np.int64)
  _, _, index, float_splits, _ = _partition(tables, 2, dims)
  # The PS results, 10 floats: PS 0 holds id 2 of table b (3 floats), PS 1
  # ids 5 and 1 of table a (4) and 7 of table b (3).
  results = tf.constant(np.arange(1, 11, dtype=np.float32))
  rows = ops.monolith_distributed_ps_gather(
      values=results, index=index, id_counts=id_counts, num_tables=2,
      dims=dims)
  weights = [tf.constant(np.arange(8, dtype=np.float32).reshape([4, 2])),
             tf.constant(np.arange(9, dtype=np.float32).reshape([3, 3]))]
  loss = sum(tf.reduce_sum(r * w) for r, w in zip(rows, weights))
  (results_grad,) = tf.gradients(loss, [results])
  # ScatterAdd's gradient is the gather of its outputs' gradients.
  values = [tf.constant(np.arange(8, dtype=np.float32).reshape([4, 2])),
            tf.constant(np.arange(9, dtype=np.float32).reshape([3, 3]))]
  ps_values = ops.monolith_distributed_ps_scatter_add(
      values=values, index=index, id_counts=id_counts,
      float_splits=float_splits, num_ps=2, dims=dims)
  scale = [tf.range(tf.size(v), dtype=tf.float32) for v in ps_values]
  values_grad = tf.gradients(
      sum(tf.reduce_sum(v * s) for v, s in zip(ps_values, scale)), values)
  values_grad = tf.concat([tf.reshape(g, [-1]) for g in values_grad], 0)
  got, index_value, scale_value, values_grad_value = _run(
      [results_grad, index, scale, values_grad])
  expected = np.zeros(10, np.float32)
  position = 0
  for w, dim in zip([np.arange(8).reshape([4, 2]),
                     np.arange(9).reshape([3, 3])], dims):
    for row in w:
      expected[index_value[position]:index_value[position] + dim] += row
      position += 1
  np.testing.assert_array_equal(got, expected)
  flat_scale = np.concatenate(scale_value)
  expected = []
  position = 0
  for n, dim in zip(id_counts, dims):
    for _ in range(n):
      expected += list(flat_scale[index_value[position]:
                                  index_value[position] + dim])
      position += 1
  np.testing.assert_array_equal(values_grad_value, expected)


def _error(fetch, match):
  with pytest.raises(tf.errors.InvalidArgumentError, match=match):
    _run(fetch)


def test_fused_ops_reject_bad_inputs():
  ids = np.array([1, 2, 3], np.int64)
  counts = np.array([2, 1], np.int64)
  # Fed, so that the kernels (not the shape functions) check them.
  ids_ph = tf1.placeholder(tf.int64)
  part = ops.monolith_distributed_ps_partition([ids[:2], ids_ph], num_ps=2,
                                               dims=[1, 2])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"ids\[1\] must "
                     r"be a vector, got shape \[1,1\]"):
    _run(part, {ids_ph: ids[2:].reshape([1, 1])})
  with pytest.raises(ValueError, match="dims has 2 elements; num_tables is 3"):
    ops.monolith_distributed_ps_partition([ids, ids, ids], num_ps=2,
                                          dims=[1, 2])
  with pytest.raises(ValueError, match="ids must be a vector"):
    ops.monolith_distributed_ps_partition(
        [ids, tf.constant(ids.reshape([1, 3]))], num_ps=2, dims=[1, 2])
  # Refused at graph build (the shape function), as the kernel would.
  with pytest.raises(ValueError, match=r"dims\[0\] must be in"):
    ops.monolith_distributed_ps_partition([ids], num_ps=2, dims=[0])

  values = np.arange(4, dtype=np.float32)
  index = tf1.placeholder(tf.int32)
  gather = ops.monolith_distributed_ps_gather(values, index, counts,
                                              num_tables=2, dims=[1, 2])
  for bad, match in [([0, 1, 3], "index of row 0 of table 1 is 3: a row of 2 "
                      "outside values' floats \\(4\\)"),
                     ([0, -1, 2], "index of row 1 of table 0 is -1"),
                     ([0, 1], "id_counts sums to 3 ids but 2 are given")]:
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
      _run(gather, {index: np.array(bad, np.int32)})
  pairs = tf1.placeholder(tf.int32)
  splits = tf1.placeholder(tf.int64)
  gather16 = ops.monolith_distributed_ps_gather_float16(
      pairs, index, counts, splits, num_tables=2, dims=[1, 2])
  for bad_pairs, bad_splits, bad_index, match in [
      ([0], [0, 4], [0, 1, 2], "float_splits\\[1\\] = 4 is past the 2 "
       "float16s of float16_pairs"),
      ([0, 0], [0, 2**63 - 1], [0, 1, 2], "float_splits\\[1\\] = "
       "9223372036854775807 is past the 4"),
      ([0, 0], [0, 3, 4], [0, 1, 2], "float16_pairs holds 4 float16s; "
       "float_splits needs 6"),
      ([0, 0, 0], [0, 1, 4], [0, 1, 2], "float16_pairs holds 6 float16s; "
       "float_splits needs 6|^$"),
      ([0, 0], [0, 4], [0, 1, 3], "index of row 0 of table 1 is 3: a row of "
       "2 outside float16_pairs' floats \\(float_splits' last\\) \\(4\\)"),
      # The end of the floats (2) is the last PS's padding, not a row: the
      # error counts as the index does (not the padded 3).
      ([0, 0], [0, 1, 2], [0, 2, 0], "index of row 1 of table 0 is 2: a row "
       "of 1 outside float16_pairs' floats \\(float_splits' last\\) "
       "\\(2\\)"),
      ([0, 0], [1, 4], [0, 1, 2], "float_splits must hold 0"),
      # A row that spans two PS (it read PS 0's padding as its last float).
      ([0, 0, 0], [0, 3, 4], [0, 1, 2], "index of row 0 of table 1 is 2: a "
       "row of 2 floats that crosses float_splits\\[1\\] = 3"),
      ([0, 0], [0, 3, 2], [0, 1, 2], "float_splits must be non-decreasing")]:
    feed = {pairs: np.array(bad_pairs, np.int32),
            splits: np.array(bad_splits, np.int64),
            index: np.array(bad_index, np.int32)}
    if match.endswith("|^$"):  # valid: padded PS 0
      _run(gather16, feed)
      continue
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
      _run(gather16, feed)

  splits = tf1.placeholder(tf.int64)
  values_ph = tf1.placeholder(tf.float32)
  scatter = ops.monolith_distributed_ps_scatter_add(
      [values[:2].reshape([2, 1]), values_ph], [1, 0, 2], counts, splits,
      num_ps=2, dims=[1, 2])
  good = {values_ph: values[2:].reshape([1, 2]),
          splits: np.array([0, 1, 4], np.int64)}
  _run(scatter, good)
  with pytest.raises(ValueError, match=r"values\[1\] must have dims\[1\] = 2 "
                     "columns"):
    ops.monolith_distributed_ps_scatter_add(
        [values[:2].reshape([2, 1]), values[2:].reshape([2, 1])], [1, 0, 2],
        counts, [0, 1, 4], num_ps=2, dims=[1, 2])
  for name, bad, match in [
      (values_ph, np.zeros([1, 3], np.float32), r"values\[1\] must be \[1, "
       r"2\] \(table 1's 1 ids of dim 2\), got shape \[1,3\]"),
      (values_ph, np.zeros([2, 2], np.float32), r"values\[1\] must be \[1, "
       r"2\]"),
      (values_ph, np.zeros([2], np.float32), r"values\[1\] must be"),
      (splits, [0, 4], "float_splits has 2 elements; expected num_ps \\+ 1"),
      (splits, [1, 1, 4], "float_splits must start at 0"),
      (splits, [0, 3, 2], "float_splits must be non-decreasing"),
      (splits, [0, 1, 3], "index of row 0 of table 1 is 2: a row of 2 "
       "outside float_splits' floats \\(3\\)"),
      # More floats than the ids' rows hold: refused, not allocated.
      (splits, [0, 1, 5], "float_splits ends at 5 floats, more than the 4 "
       "of the ids' rows"),
      (splits, [0, 1, 2**31 - 1], "float_splits ends at 2147483647 floats"),
      # A row that spans two PS (accepted: it mixed their gradients).
      (splits, [0, 3, 4], "index of row 0 of table 1 is 2: a row of 2 "
       "floats that crosses float_splits\\[1\\] = 3")]:
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
      _run(scatter, {**good, name: np.array(bad, name.dtype.as_numpy_dtype)})

  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": _config(1), "b": _config(2)}, name_suffix="bad")
  id_split = tf1.placeholder(tf.int64)
  lookup = ops.monolith_distributed_ps_lookup_float16(
      mtable=table.handle, id=ids, id_split=id_split)
  for bad, match in [([0, 3], "id_split has 2 elements, expected 3 "
                      "\\(number of tables \\+ 1\\)"),
                     ([1, 2, 3], "id_split must start at 0 and end at the "
                      "number of ids \\(3\\)"),
                     ([0, 2, 2], "id_split must start at 0 and end"),
                     ([0, 4, 3], "id_split must be non-decreasing"),
                     # Checked before anything is sized from it: no 2^62
                     # ids' worth of pieces or floats.
                     ([0, 1 << 62, 3], "id_split must be non-decreasing"),
                     ([0, -(1 << 62), 3], "id_split must be non-decreasing")
                    ]:
    with tf1.Session() as sess:
      sess.run(table.initializer)
      with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        sess.run(lookup, {id_split: np.array(bad, np.int64)})
  with pytest.raises(ValueError, match="id must be a vector"):
    ops.monolith_distributed_ps_lookup_float16(
        mtable=table.handle, id=ids.reshape([1, 3]), id_split=[0, 2, 3])


def test_split_by_ps_without_the_kernels():
  """assign's split: none for 1 PS, a bitwise and for powers of two."""
  # pylint: disable=protected-access
  ids = tf.constant(_EXTREME_IDS, tf.int64)
  for num_ps in (1, 2, 3, 4):
    split = distributed_ps._split_by_ps(ids, num_ps)
    got = _run(split.ids)
    for p in range(num_ps):
      assert got[p].tolist() == [x for x in _EXTREME_IDS if x % num_ps == p]
  graph = tf1.get_default_graph()
  assert [op.type for op in graph.get_operations()].count("FloorMod") == 1
  assert "BitwiseAnd" in [op.type for op in graph.get_operations()]
