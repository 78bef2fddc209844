"""Checkpoints of tables on PS tasks, on in-process clusters.

A 2-PS table (adagrad, so optimizer state matters) and a local table are
trained and saved through the saver listener once; fresh graphs on clusters
of 1 to 4 PS tasks restore them through the restorer listener.
"""

import contextlib
import logging
import os
import re
from typing import Dict, NamedTuple, Tuple
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import distributed_ps
from monolith.native_training import distributed_ps_factory
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils
from monolith.native_training import test_utils
from monolith.native_training import utils
from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2

tf1 = tf.compat.v1
tf1.disable_eager_execution()

_CLUSTERS = {}


def _cluster(num_ps):
  """One in-process cluster per PS count, shared (sessions are isolated)."""
  if num_ps not in _CLUSTERS:
    _CLUSTERS[num_ps] = test_utils.create_test_ps_cluster(num_ps)
  return _CLUSTERS[num_ps]


def _session(num_ps):
  servers, config = _cluster(num_ps)
  return tf1.train.SingularMonitoredSession(master=servers[0].target,
                                            config=config)


def _adagrad(dim, learning_rate):
  config = test_utils.generate_test_hash_table_config(
      dim, learning_rate=learning_rate)
  segment = config.table_config.entry_config.segments[0]
  segment.opt_config.adagrad.initial_accumulator_value = 0.1
  return config


def _configs():
  return {"a": _adagrad(2, 0.5), "b": _adagrad(3, 0.25)}


def _local_configs():
  return {"c": _adagrad(1, 0.5)}


# Ids of both signs, small and extreme.
_POOL = np.array([0, 1, 2, 3, 4, 5, 6, 7, 11, -1, -2, -3, -5, -6, 2**40 + 3,
                  -(2**50) - 7, 2**63 - 1, -(2**63)],
                 dtype=np.int64)
_EXTRA_ID = 987654  # assigned before a restore, which must drop it
_DIMS = {"a": 2, "b": 3, "c": 1}

Entries = Dict[Tuple[str, int], bytes]


def _entries(table, names, ids) -> Dict[str, tf.Tensor]:
  return table.lookup_entry({name: tf.constant(ids) for name in names})


def _parse(fetched: Dict[str, np.ndarray], ids) -> Entries:
  """{(table, id): serialized EntryDump} of the ids present."""
  out = {}
  for name, dumps in fetched.items():
    for i, raw in zip(ids, dumps):
      if embedding_hash_table_pb2.EntryDump.FromString(raw).num:
        out[(name, int(i))] = raw
  return out


class _Saved(NamedTuple):
  basename: str
  model_dir: str
  # Entries of the 2-PS table, by table and id, and the PS each was on.
  dist: Entries
  dist_ps: Dict[Tuple[str, int], int]
  local: Entries
  save_devices: Tuple[str]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> _Saved:
  model_dir = str(tmp_path_factory.mktemp("ps_ckpt"))
  basename = os.path.join(model_dir, "model.ckpt")
  with tf.Graph().as_default() as graph:
    dist = distributed_ps_factory.create_native_multi_hash_table(2, _configs())
    local = distributed_ps_factory.create_native_multi_hash_table(
        0, _local_configs(), name_suffix="local")
    global_step = tf1.train.get_or_create_global_step()
    ids = tf1.placeholder(tf.int64, [None])
    grads = {
        name: tf1.placeholder(tf.float32, [None, _DIMS[name]])
        for name in _DIMS
    }
    req_time = tf1.placeholder(tf.int64, [])
    train = tf.group(
        dist.apply_gradients({n: (ids, grads[n]) for n in ("a", "b")},
                             global_step, req_time).as_op(),
        local.apply_gradients({"c": (ids, grads["c"])}, global_step,
                              req_time).as_op(),
        global_step.assign_add(1))
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    saver = tf1.train.Saver()
    per_ps = []
    for i, table in enumerate(dist.tables):
      with distributed_ps.ps_device(i):
        per_ps.append(_entries(table, ("a", "b"), _POOL))
    local_entries = _entries(local, ("c",), _POOL)
    save_devices = tuple(
        sorted(op.device
               for op in graph.get_operations()
               if op.type in ("MonolithMultiHashTableSave",
                              "MonolithMultiHashTableFeatureStat")))
    rng = np.random.RandomState(3)
    with _session(2) as sess:
      for step in range(4):
        # Every id in the first step, random repeated ones afterwards.
        step_ids = _POOL if step == 0 else rng.choice(_POOL, 20)
        feed = {ids: step_ids, req_time: 1000 + step}
        for name, dim in _DIMS.items():
          feed[grads[name]] = rng.randint(-16, 17, [len(step_ids), dim]) / 8
        sess.run(train, feed)
      raw = sess.raw_session()
      listener.before_save(raw, 4)
      saver.save(raw, basename, global_step=4)
      listener.after_save(raw, 4)
      fetched_per_ps, fetched_local = sess.run([per_ps, local_entries])
  dist_entries, dist_ps = {}, {}
  for i, fetched in enumerate(fetched_per_ps):
    for key, raw in _parse(fetched, _POOL).items():
      assert key not in dist_entries, key
      dist_entries[key] = raw
      dist_ps[key] = i
  assert len(dist_entries) == 2 * len(_POOL)
  return _Saved(basename, model_dir, dist_entries, dist_ps,
                _parse(fetched_local, _POOL), save_devices)


def test_each_ps_saves_its_table_and_ckpt_info_counts_the_cluster(saved):
  # Each save (and its count) runs on its table's device: the PS tasks save
  # in parallel, the local table where it lives.
  assert saved.save_devices == tuple(
      sorted(["/device:CPU:0"] * 2 + [utils.ps_device(0)] * 2 +
             [utils.ps_device(1)] * 2))
  asset_dir = saved.basename + "-4.assets"
  names = set(os.listdir(asset_dir))
  for shared_name in ("MonolithMultiHashTable_0", "MonolithMultiHashTable_1",
                      "MonolithMultiHashTable_local"):
    assert any(n.startswith(shared_name + ".meta-") for n in names), names
    assert any(n.startswith(shared_name + "-0") for n in names), names
  # Ids mod 2 as the original: the PS each entry was saved from.
  assert all(ps == key[1] % 2 for key, ps in saved.dist_ps.items())
  with open(os.path.join(saved.model_dir, "ckpt.info-4")) as f:
    info = f.read()
  for name in ("a", "b", "c"):
    assert re.search(rf'key: "{name}"\s+value: {len(_POOL)}\b', info), info


@pytest.mark.parametrize("num_ps", [1, 2, 3, 4])
def test_restore_into_any_number_of_ps(saved, tmp_path, num_ps):
  with tf.Graph().as_default() as graph:
    dist = distributed_ps_factory.create_native_multi_hash_table(
        num_ps, _configs())
    local = distributed_ps_factory.create_native_multi_hash_table(
        0, _local_configs(), name_suffix="local")
    # Entries that the restore must drop (tables are replaced).
    extra = tf.constant([_EXTRA_ID], tf.int64)
    assign = tf.group(
        dist.assign({
            "a": (extra, tf.ones([1, 2])),
            "b": (extra, tf.ones([1, 3]))
        }).as_op(),
        local.assign({"c": (extra, tf.ones([1, 1]))}).as_op())
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        saved.basename)
    restore_ops = [
        op for op in graph.get_operations()
        if op.type.startswith("MonolithMultiHashTableRestore")
    ]
    assert sorted((op.type, op.device) for op in restore_ops) == sorted(
        [("MonolithMultiHashTableRestoreResharded", utils.ps_device(i))
         for i in range(num_ps)] +
        [("MonolithMultiHashTableRestoreResharded", "/device:CPU:0")])
    ids = np.append(_POOL, _EXTRA_ID)
    per_ps = []
    for i, table in enumerate(dist.tables):
      with distributed_ps.ps_device(i):
        per_ps.append(_entries(table, ("a", "b"), ids))
    local_entries = _entries(local, ("c",), ids)
    # Saving the restored tables again: each PS holds exactly its ids.
    resaved = str(tmp_path / "resaved")
    tf.io.gfile.makedirs(resaved)
    saved_again = dist.save(resaved)
    with tf.control_dependencies([saved_again.as_op()]):
      counts = [
          table.feature_stat(os.path.join(resaved, table.shared_name))
          for table in dist.tables
      ]
    with _session(num_ps) as sess:
      sess.run(assign)
      restorer.before_restore(sess.raw_session())
      fetched_per_ps, fetched_local = sess.run([per_ps, local_entries])
      fetched_counts = sess.run(counts)
  restored = {}
  for i, fetched in enumerate(fetched_per_ps):
    for key, raw in _parse(fetched, ids).items():
      # No id lives on the wrong PS.
      assert key[1] % num_ps == i, (key, i)
      restored[key] = raw
  # Every entry, with its optimizer state and update time, and no other.
  assert restored == saved.dist
  assert _parse(fetched_local, ids) == saved.local
  for i, (features, table_counts) in enumerate(fetched_counts):
    on_ps = sum(1 for x in _POOL if x % num_ps == i)
    assert dict(zip(features.astype(str), table_counts)) == {
        "a": on_ps,
        "b": on_ps
    }


@pytest.mark.parametrize("to_ps", [0, 2, 3])
def test_a_job_moves_between_a_local_table_and_ps_tables(saved, to_ps):
  # 0: the 2-PS tables ("MonolithMultiHashTable_<i>") into one local table
  # ("MonolithMultiHashTable_"); 2, 3: the local table
  # ("MonolithMultiHashTable_local") into PS tables of that suffix.
  configs, suffix, expected = ((_configs(), "", saved.dist) if to_ps == 0
                               else (_local_configs(), "local", saved.local))
  with tf.Graph().as_default():
    table = distributed_ps_factory.create_native_multi_hash_table(
        to_ps, configs, name_suffix=suffix)
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        saved.basename)
    ids = np.append(_POOL, _EXTRA_ID)
    tables = table.tables if to_ps else [table]
    fetch = []
    for i, t in enumerate(tables):
      with distributed_ps.ps_device(i) if to_ps else contextlib.nullcontext():
        fetch.append(_entries(t, list(configs), ids))
    with _session(max(to_ps, 1)) as sess:
      restorer.before_restore(sess.raw_session())
      fetched = sess.run(fetch)
  restored = {}
  for i, per_table in enumerate(fetched):
    for key, raw in _parse(per_table, ids).items():
      if to_ps:
        assert key[1] % to_ps == i, (key, i)
      restored[key] = raw
  assert restored == expected


def _saved_tables_and_a_new_one(new_one, suffix=""):
  """Builds, in the default graph, the tables the checkpoint holds and a
  new one of name suffix `suffix`: a local table (`new_one` "local") or a
  2-PS group ("ps"). Returns the 2-PS tables, the local table and the new
  MultiHashTables (one per PS)."""
  dist = distributed_ps_factory.create_native_multi_hash_table(2, _configs())
  local = distributed_ps_factory.create_native_multi_hash_table(
      0, _local_configs(), name_suffix="local")
  if new_one == "local":
    new = distributed_ps_factory.create_native_multi_hash_table(
        0, {"c": _adagrad(1, 0.5)}, name_suffix=suffix)
    return dist, local, [new]
  new = distributed_ps_factory.create_native_multi_hash_table(
      2, _local_configs(), name_suffix=suffix)
  return dist, local, new.tables


def _entries_of_new_tables(new_tables):
  """`_entries` of table "c" of each new table, on its PS if it has one."""
  fetch = []
  for i, table in enumerate(new_tables):
    with (distributed_ps.ps_device(i) if table.ps_shard else
          contextlib.nullcontext()):
      fetch.append(_entries(table, ("c",), _POOL))
  return fetch


@pytest.mark.parametrize("new_one", ["local", "ps"])
def test_a_new_table_does_not_take_the_saves_of_a_live_one(saved, new_one):
  # A table without a save of its own reads those of the other layout (PS
  # tables for a local one, and the reverse) only where no table of the
  # graph owns them: a new local "MonolithMultiHashTable_" beside the live
  # 2-PS group "MonolithMultiHashTable_<i>", or a new 2-PS group
  # "MonolithMultiHashTable_local_<i>" beside the live local table
  # "MonolithMultiHashTable_local", took the live tables' entries.
  with tf.Graph().as_default():
    _, _, new_tables = _saved_tables_and_a_new_one(
        new_one, suffix="" if new_one == "local" else "local")
    new_name = ("MonolithMultiHashTable_ " if new_one == "local" else
                "MonolithMultiHashTable_local_[01]")
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        saved.basename)
    with _session(2) as sess:
      with pytest.raises(tf.errors.NotFoundError, match=new_name):
        restorer.before_restore(sess.raw_session())
    # Named in new_tables, it starts empty instead (still not taking the
    # live tables' saves).
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        saved.basename,
        new_tables=[t.ps_shard.group_prefix if t.ps_shard else t.shared_name
                    for t in new_tables[:1]])
    fetch = _entries_of_new_tables(new_tables)
    with _session(2) as sess:
      restorer.before_restore(sess.raw_session())
      for per_table in sess.run(fetch):
        assert _parse(per_table, _POOL) == {}


@pytest.mark.parametrize("new_one", ["local", "ps"])
def test_new_tables_named_to_the_restorer_start_empty(saved, new_one):
  # A table group added to the model since the checkpoint, named in
  # new_tables, starts empty (a warning) while the others restore; unnamed,
  # the restore fails with NotFound (above), so a lost table is never taken
  # for a new one.
  with tf.Graph().as_default():
    dist, local, new_tables = _saved_tables_and_a_new_one(new_one, "added")
    new_name = (new_tables[0].ps_shard.group_prefix if new_one == "ps" else
                new_tables[0].shared_name)
    with pytest.raises(ValueError, match="neither a MultiHashTable"):
      multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
          saved.basename, new_tables=["MonolithMultiHashTable_typo"])
    with pytest.raises(ValueError, match="a list of names"):
      multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
          saved.basename, new_tables=new_name)
    # Named too, the live tables the checkpoint holds restore all the same.
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        saved.basename,
        new_tables=[new_name, "MonolithMultiHashTable", local.shared_name])
    fetch = []
    for i, table in enumerate(dist.tables):
      with distributed_ps.ps_device(i):
        fetch.append(_entries(table, ("a", "b"), _POOL))
    fetch.append(_entries(local, ("c",), _POOL))
    fetch += _entries_of_new_tables(new_tables)
    with _session(2) as sess:
      with mock.patch.object(multi_hash_table_ops.logging,
                             "warning") as warning:
        restorer.before_restore(sess.raw_session())
      fetched = sess.run(fetch)
  assert any(new_name in (c[0][0] % c[0][1:]) and "start empty" in c[0][0]
             for c in warning.call_args_list)
  restored = {}
  for per_table in fetched[:2]:
    restored.update(_parse(per_table, _POOL))
  assert restored == saved.dist
  assert _parse(fetched[2], _POOL) == saved.local
  for per_table in fetched[3:]:
    assert _parse(per_table, _POOL) == {}


@pytest.mark.parametrize("live", ["user_1", "user_20240101"])
def test_a_new_table_beside_a_live_one_named_as_its_ps_table(tmp_path, live):
  # A new local table "MonolithMultiHashTable_user", without a save of its
  # own, looked for those of the PS group "MonolithMultiHashTable_user_<i>"
  # and took the live table "..._user_1" for PS 1 of an incomplete group
  # (NotFound), "..._user_20240101" for a damaged one (DataLoss): the job
  # could not restart once the table was added.
  basename = str(tmp_path / "model.ckpt")
  with tf.Graph().as_default():
    table = distributed_ps_factory.create_native_multi_hash_table(
        0, _local_configs(), name_suffix=live)
    tf1.train.get_or_create_global_step()
    assign = table.assign({
        "c": (tf.constant(_POOL), tf.ones([len(_POOL), 1]))
    }).as_op()
    entries = _entries(table, ("c",), _POOL)
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    saver = tf1.train.Saver()
    with _session(1) as sess:
      sess.run(assign)
      raw = sess.raw_session()
      listener.before_save(raw, 1)
      saver.save(raw, basename, global_step=1)
      listener.after_save(raw, 1)
      expected = _parse(sess.run(entries), _POOL)
  assert len(expected) == len(_POOL)
  with tf.Graph().as_default():
    table = distributed_ps_factory.create_native_multi_hash_table(
        0, _local_configs(), name_suffix=live)
    new = distributed_ps_factory.create_native_multi_hash_table(
        0, _local_configs(), name_suffix="user")
    tf1.train.get_or_create_global_step()
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        basename, new_tables=[new.shared_name])
    fetch = [_entries(table, ("c",), _POOL), _entries(new, ("c",), _POOL)]
    with _session(1) as sess:
      restorer.before_restore(sess.raw_session())
      restored, started = sess.run(fetch)
  assert _parse(restored, _POOL) == expected
  assert _parse(started, _POOL) == {}


def test_distributed_restore_method(saved):
  asset_dir = saved.basename + "-4.assets"
  old = multi_hash_table_ops.find_ps_checkpoints(asset_dir,
                                                 "MonolithMultiHashTable")
  assert old == [os.path.join(asset_dir, f"MonolithMultiHashTable_{j}")
                 for j in range(2)]
  with tf.Graph().as_default():
    dist = distributed_ps_factory.create_native_multi_hash_table(
        3, _configs(), name_suffix="other")
    dist = dist.restore(old)
    looked_up = dist.lookup({"a": tf.constant(_POOL)})["a"]
    with _session(3) as sess:
      got = sess.run(looked_up)
  expected = [
      list(
          embedding_hash_table_pb2.EntryDump.FromString(
              saved.dist[("a", int(i))]).num) for i in _POOL
  ]
  np.testing.assert_array_equal(got, expected)


def _touch(directory, *names):
  for name in names:
    with open(os.path.join(directory, name), "w"):
      pass


def test_find_ps_checkpoints_in_the_working_directory(tmp_path, monkeypatch):
  # Relative basenames ("G_0", "G_1": saves to ".") have the directory "",
  # which TF's listdir does not read: the group was found in none of its
  # files, and with its PS count record taken for an incomplete one.
  monkeypatch.chdir(tmp_path)
  _touch(str(tmp_path), "G_0.meta-00000-of-00001", "G_1.meta-00000-of-00001")
  assert multi_hash_table_ops.find_ps_checkpoints("", "G") == ["G_0", "G_1"]
  save_utils.write_ps_count("", "G", 2)
  assert multi_hash_table_ops.find_ps_checkpoints("", "G") == ["G_0", "G_1"]


def test_a_table_save_is_told_by_its_exact_name(tmp_path):
  # "T.meta-v2" is a legal table name: its files were taken for a save of
  # "T", whose restore then failed to find one.
  d = str(tmp_path)
  t = os.path.join(d, "T")
  _touch(d, "T.meta-v2-00000-of-00001", "T.meta-v2.meta-00000-of-00001")
  assert not multi_hash_table_ops._has_checkpoint(t)
  _touch(d, "T.meta-00000-of-00001-tmp-0123456789abcdef")
  assert multi_hash_table_ops._has_checkpoint(t)
  assert multi_hash_table_ops._has_checkpoint(t + ".meta-v2")


def test_find_ps_checkpoints(tmp_path):
  d = str(tmp_path)
  _touch(
      d, "T_0.meta-00000-of-00002", "T_0.meta-00001-of-00002",
      "T_0-00000-of-00002", "T_1.meta-00000-of-00001",
      "T_2.meta-00000-of-00001",
      # Not the group's: other groups, other names.
      "T_x_4.meta-00000-of-00001", "T_05.meta-00000-of-00001",
      "T_local.meta-00000-of-00001", "U_7.meta-00000-of-00001",
      "T_3.meta-00000-of-00001.bak", "T_3-00000-of-00001-tmp-1")
  assert multi_hash_table_ops.find_ps_checkpoints(d, "T") == [
      os.path.join(d, f"T_{j}") for j in range(3)
  ]
  # PS 3's save killed before it renamed its meta files: PS 3 counts.
  _touch(d, "T_3.meta-00000-of-00001-tmp-0123456789abcdef")
  assert multi_hash_table_ops.find_ps_checkpoints(d, "T") == [
      os.path.join(d, f"T_{j}") for j in range(4)
  ]
  assert multi_hash_table_ops.find_ps_checkpoints(d, "V") == []
  assert multi_hash_table_ops.find_ps_checkpoints(
      os.path.join(d, "missing"), "T") == []
  # Group T_x has PS 4's table only: an incomplete checkpoint.
  with pytest.raises(tf.errors.NotFoundError,
                     match=r"of PS \[4\] but not of PS \[0, 1, 2, 3\]"):
    multi_hash_table_ops.find_ps_checkpoints(d, "T_x")
  _touch(d, "T_x_0.meta-00000-of-00001")
  with pytest.raises(tf.errors.NotFoundError,
                     match=r"of PS \[0, 4\] but not of PS \[1, 2, 3\]"):
    multi_hash_table_ops.find_ps_checkpoints(d, "T_x")


def test_ps_checkpoints_to_read():
  old = [f"b{j}" for j in range(4)]
  shard = multi_hash_table_ops.PsShard
  # Same count: PS i reads old PS i only.
  assert [multi_hash_table_ops.ps_checkpoints_to_read(old, shard(4, i, "T"))
          for i in range(4)] == [[b] for b in old]
  # 4 into 2: PS i reads old PS i and i + 2.
  assert multi_hash_table_ops.ps_checkpoints_to_read(
      old, shard(2, 1, "T")) == ["b1", "b3"]
  # 4 into 3 (coprime): all.
  assert multi_hash_table_ops.ps_checkpoints_to_read(
      old, shard(3, 2, "T")) == old
  # 2 into 4: PS 3 reads old PS 1.
  assert multi_hash_table_ops.ps_checkpoints_to_read(
      old[:2], shard(4, 3, "T")) == ["b1"]


def test_ps_shard_is_recorded_and_survives_the_meta_graph():
  with tf.Graph().as_default():
    dist = distributed_ps_factory.create_native_multi_hash_table(
        3, {"a": _adagrad(1, 0.5)}, name_suffix="s")
    local = distributed_ps_factory.create_native_multi_hash_table(
        0, {"a": _adagrad(1, 0.5)})
    assert [t.ps_shard for t in dist.tables] == [
        multi_hash_table_ops.PsShard(3, i, "MonolithMultiHashTable_s")
        for i in range(3)
    ]
    assert local.ps_shard is None
    meta_graph = tf1.train.export_meta_graph()
  with tf.Graph().as_default():
    tf1.train.import_meta_graph(meta_graph)
    imported = tf1.get_collection(
        multi_hash_table_ops._MULTI_HASH_TABLE_GRAPH_KEY)  # pylint: disable=protected-access
    assert {t.shared_name: t.ps_shard for t in imported} == {
        "MonolithMultiHashTable_s_0":
            multi_hash_table_ops.PsShard(3, 0, "MonolithMultiHashTable_s"),
        "MonolithMultiHashTable_s_1":
            multi_hash_table_ops.PsShard(3, 1, "MonolithMultiHashTable_s"),
        "MonolithMultiHashTable_s_2":
            multi_hash_table_ops.PsShard(3, 2, "MonolithMultiHashTable_s"),
        "MonolithMultiHashTable_": None,
    }


def test_tables_not_named_by_ps_index_are_not_marked():
  with tf.Graph().as_default():

    def factory(i, configs):
      return multi_hash_table_ops.MultiHashTable.from_configs(
          configs, name_suffix=f"ps{i}x")

    dist = distributed_ps.DistributedMultiTypeHashTable(
        2, {"a": _adagrad(1, 0.5)}, factory)
    assert [t.ps_shard for t in dist.tables] == [None, None]
    with pytest.raises(ValueError, match=r"ps_index must be in \[0, 2\)"):
      dist.tables[0].set_ps_shard(2, 2)


def _unnamed_factory(i, configs):
  """Tables not named "<prefix>_<i>": outside PS groups."""
  return multi_hash_table_ops.MultiHashTable.from_configs(
      configs, name_suffix=f"ps{i}x")


def _save_unnamed_tables(model_dir: str, num_ps: int) -> str:
  basename = os.path.join(model_dir, "model.ckpt")
  with tf.Graph().as_default():
    dist = distributed_ps.DistributedMultiTypeHashTable(
        num_ps, {"a": _adagrad(1, 0.5)}, _unnamed_factory)
    ids = tf.constant(_POOL)
    assign = dist.assign({"a": (ids, tf.ones([len(_POOL), 1]))}).as_op()
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    saver = tf1.train.Saver([tf1.train.get_or_create_global_step()])
    with _session(num_ps) as sess:
      sess.run(assign)
      raw = sess.raw_session()
      listener.before_save(raw, 1)
      saver.save(raw, basename, global_step=1)
  return basename


def test_a_local_table_named_as_a_ps_groups_keeps_live_ps_count_records(
    tmp_path):
  # A local table "<name>_" reads as the local one of a PS group "<name>":
  # a save deleted that group's files as another layout's, and with them
  # the PS count record of a PS table of the graph named "<name>".
  basename = os.path.join(str(tmp_path), "model.ckpt")
  with tf.Graph().as_default():
    dist = distributed_ps.DistributedMultiTypeHashTable(
        3, {"a": _adagrad(1, 0.5)}, _unnamed_factory)
    multi_hash_table_ops.MultiHashTable.from_configs(
        {"b": _adagrad(1, 0.5)}, name_suffix="ps0x_")
    ids = tf.constant(_POOL)
    assign = dist.assign({"a": (ids, tf.ones([len(_POOL), 1]))}).as_op()
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    with _session(3) as sess:
      sess.run(assign)
      listener.before_save(sess.raw_session(), 1)
  with open(f"{basename}-1.assets/MonolithMultiHashTable_ps0x.num_ps") as f:
    assert f.read() == "3\n"


@pytest.mark.parametrize("num_ps", [3, 2])
@pytest.mark.parametrize("recorded", [True, False])
def test_unnamed_ps_tables_restore_only_into_the_same_ps_count(
    tmp_path, num_ps, recorded, caplog):
  basename = _save_unnamed_tables(str(tmp_path), 3)
  records = [f"{basename}-1.assets/MonolithMultiHashTable_ps{i}x.num_ps"
             for i in range(3)]
  with open(records[1]) as f:
    assert f.read() == "3\n"
  if not recorded:
    # A save from before the records: restored as one of this PS count,
    # with a warning (the ids of old PS 2 are not where lookups look).
    for record in records:
      os.remove(record)
  with tf.Graph().as_default():
    dist = distributed_ps.DistributedMultiTypeHashTable(
        num_ps, {"a": _adagrad(1, 0.5)}, _unnamed_factory)
    assert [t.ps_placement for t in dist.tables] == [
        (num_ps, i) for i in range(num_ps)
    ]
    looked_up = dist.lookup({"a": tf.constant(_POOL)})["a"]
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        basename)
    with _session(num_ps) as sess:
      if not recorded:
        restorer.before_restore(sess.raw_session())
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and "no PS count record"
                    in r.getMessage()]
        assert len(warnings) == num_ps, warnings
        assert (f"is restored as a save by {num_ps} PS tasks" in warnings[0])
        found = sess.run(looked_up)
        assert (found == 1).all() == (num_ps == 3)
        return
      if num_ps != 3:
        # Each old PS's ids would stay on the PS of the same index, where
        # lookups (routed mod 2) miss most of them.
        with pytest.raises(tf.errors.FailedPreconditionError,
                           match=r"MonolithMultiHashTable_ps0x, the table of "
                           r"PS 0 of 2, was saved by 3 PS tasks"):
          restorer.before_restore(sess.raw_session())
        return
      restorer.before_restore(sess.raw_session())
      np.testing.assert_array_equal(sess.run(looked_up),
                                    np.ones([len(_POOL), 1]))


def test_unnamed_ps_placement_survives_the_meta_graph():
  with tf.Graph().as_default():
    distributed_ps.DistributedMultiTypeHashTable(2, {"a": _adagrad(1, 0.5)},
                                                 _unnamed_factory)
    meta_graph = tf1.train.export_meta_graph()
  with tf.Graph().as_default():
    tf1.train.import_meta_graph(meta_graph)
    imported = tf1.get_collection(
        multi_hash_table_ops._MULTI_HASH_TABLE_GRAPH_KEY)  # pylint: disable=protected-access
    assert {t.shared_name: (t.ps_shard, t.ps_placement) for t in imported
           } == {
               "MonolithMultiHashTable_ps0x": (None, (2, 0)),
               "MonolithMultiHashTable_ps1x": (None, (2, 1)),
           }


# With a suffix, the local table is named as its PS group's prefix, and
# the group's PS count record is a file of that name too.
@pytest.mark.parametrize("suffix", ["", "foo"])
@pytest.mark.parametrize("unfinished_ps, finished_ps", [(2, 0), (0, 2)])
def test_a_save_drops_another_layouts_unfinished_save_of_its_step(
    tmp_path, unfinished_ps, finished_ps, suffix):
  # A job of one layout (PS tables, or one local table) saved the tables of
  # step 5 and died before its Saver ran; a job of the other layout then
  # saved step 5 whole. A job of the first layout restoring step 5 read the
  # dead job's tables, not the checkpoint's: restores prefer a local
  # table's own files, and a PS group's PS files.
  basename = os.path.join(str(tmp_path), "model.ckpt")
  ids = np.array([1, 2, 3, -4], np.int64)

  def run(num_ps, value=None, save=None):
    with tf.Graph().as_default():
      table = distributed_ps_factory.create_native_multi_hash_table(
          num_ps, {"a": _adagrad(2, 0.5)}, name_suffix=suffix)
      global_step = tf1.train.get_or_create_global_step()
      assign = table.assign({
          "a": (tf.constant(ids), tf.fill([len(ids), 2], float(value or 0)))
      }).as_op()
      lookup = table.lookup({"a": tf.constant(ids)})["a"]
      at_step_5 = global_step.assign(5)
      listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
          basename)
      restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
          basename)
      saver = tf1.train.Saver()
      with _session(max(num_ps, 1)) as sess:
        raw = sess.raw_session()
        if value is None:
          restorer.before_restore(raw)
          return sess.run(lookup)
        sess.run([assign, at_step_5])
        listener.before_save(raw, 5)
        if save == "whole":
          saver.save(raw, basename, global_step=5)
          listener.after_save(raw, 5)

  run(unfinished_ps, value=1, save="tables only")
  run(finished_ps, value=2, save="whole")
  np.testing.assert_array_equal(run(unfinished_ps), np.full([len(ids), 2], 2))


def test_a_save_keeps_its_live_tables_named_like_another_layout(tmp_path):
  # "MonolithMultiHashTable_1" (a local table of suffix "1") is also named
  # as PS 1 of the group of "MonolithMultiHashTable_" (suffix ""): the
  # save of the step, which deletes that group's files, keeps it.
  basename = os.path.join(str(tmp_path), "model.ckpt")
  with tf.Graph().as_default():
    tables = [
        distributed_ps_factory.create_native_multi_hash_table(
            0, {"a": _adagrad(2, 0.5)}, name_suffix=suffix)
        for suffix in ("", "1")
    ]
    assert [t.shared_name for t in tables] == [
        "MonolithMultiHashTable_", "MonolithMultiHashTable_1"
    ]
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    with _session(1) as sess:
      listener.before_save(sess.raw_session(), 5)
  names = os.listdir(basename + "-5.assets")
  for table in tables:
    assert any(n.startswith(table.shared_name + "-") for n in names), names
