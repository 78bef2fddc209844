"""Tests of MultiHashTable, its meta-graph serialization and its listeners."""

import gc
import logging
import os
import pathlib
import re
import threading
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager import context

from monolith.native_training import basic_restore_hook
from monolith.native_training import entry
from monolith.native_training import hash_filter_ops
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils
from monolith.native_training import test_utils
from monolith.native_training import utils
from monolith.native_training.model_export import export_context
from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2

tf1 = tf.compat.v1
# MultiHashTable builds graphs for tf.compat.v1 sessions, as training does.
tf1.disable_eager_execution()


@pytest.fixture(autouse=True)
def _fresh_graph():
  """Each test builds its ops in a new default graph."""
  with tf.Graph().as_default() as graph:
    yield graph


def _id(x):
  return tf.constant(x, dtype=tf.int64)


def _value(x):
  return tf.constant(x, dtype=tf.float32)


def _from_configs(configs, *args, **kwargs):
  """Builds the table, then round-trips it through its proto (as import does)."""
  with tf.name_scope("scope") as scope:
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        configs, *args, **kwargs)
    proto = table.to_proto(export_scope=scope)
    return multi_hash_table_ops.MultiHashTable.from_proto(proto,
                                                          import_scope=scope)


@pytest.mark.parametrize("num_ps, ps_index", [(0, 0), (2, 2), (2, -1)])
def test_a_proto_placing_a_table_on_no_ps_is_refused(num_ps, ps_index):
  with tf.name_scope("scope") as scope:
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"a": test_utils.generate_test_hash_table_config(1)})
    table.set_ps_shard(2, 0)
    proto = table.to_proto(export_scope=scope)
  proto.num_ps = num_ps
  proto.ps_index = ps_index
  with pytest.raises(ValueError, match=f"ps_index {ps_index} is not in "
                     rf"\[0, num_ps={num_ps}\)"):
    multi_hash_table_ops.MultiHashTable.from_proto(proto, import_scope=scope)


@pytest.mark.parametrize("names, dims, problem", [
    (["a", "b"], [4], "2 table names but 1 dims"),
    (["a", "b"], [4, 0], r"dims \[4, 0\] are not all positive"),
    (["a", "b"], [8, 4], r"tables \(name, dim\) \[\('a', 8\), \('b', 4\)\] "
     r"are not the \[\('a', 4\), \('b', 8\)\] its creation op scope/\S+ "
     r"makes, in that order"),
    (["b", "a"], [8, 4], "are not the"),  # each table's dim, other order
    (["a", "b", "b"], [4, 8, 8], "are not the"),
    (["a", "c"], [4, 8], "are not the"),
])
def test_a_proto_whose_tables_are_not_the_created_ones_is_refused(
    names, dims, problem):
  """Lookups split the rows by the proto's dims: dims of another table
  order would hand each table the other's values, silently."""
  with tf.name_scope("scope") as scope:
    proto = multi_hash_table_ops.MultiHashTable.from_configs({
        "a": test_utils.generate_test_hash_table_config(4),
        "b": test_utils.generate_test_hash_table_config(8),
    }).to_proto(export_scope=scope)
  del proto.table_names[:]
  proto.table_names.extend(names)
  del proto.dims[:]
  proto.dims.extend(dims)
  with pytest.raises(ValueError, match=problem):
    multi_hash_table_ops.MultiHashTable.from_proto(proto, import_scope=scope)


@pytest.mark.parametrize("suffix, problem", [
    ("a/b", "path separator"),
    ("/../../x", "path separator"),
    ("tab\n", "control character"),
    ("x.meta", "meta files of table 'MonolithMultiHashTable_x'"),
    ("x-00000-of-00001-tmp", "shard suffix"),
    ("a" * 200, "longer than 200 bytes"),
])
def test_a_name_suffix_that_cannot_name_files_is_refused(suffix, problem):
  config = {"a": test_utils.generate_test_hash_table_config(1)}
  with pytest.raises(ValueError, match=re.escape(problem)):
    multi_hash_table_ops.MultiHashTable.from_configs(config,
                                                     name_suffix=suffix)
  with tf.name_scope("scope") as scope:
    proto = multi_hash_table_ops.MultiHashTable.from_configs(
        config, name_suffix="ok").to_proto(export_scope=scope)
  proto.shared_name = "MonolithMultiHashTable_" + suffix
  with pytest.raises(ValueError, match="MultiHashTableProto: .*" +
                     re.escape(problem)):
    multi_hash_table_ops.MultiHashTable.from_proto(proto, import_scope=scope)


@pytest.mark.parametrize("shared_name", ["hash_filter_0", "hash_filter_12",
                                         "hash_filter"])
def test_a_proto_named_as_the_hash_filters_files_is_refused(shared_name):
  # Saved beside the filters, its files would be theirs: each save deleted
  # or overwrote the other's.
  config = {"a": test_utils.generate_test_hash_table_config(1)}
  with tf.name_scope("scope") as scope:
    proto = multi_hash_table_ops.MultiHashTable.from_configs(
        config, name_suffix="ok").to_proto(export_scope=scope)
  proto.shared_name = shared_name
  with pytest.raises(ValueError, match="MultiHashTableProto: .*named as the "
                     r"hash filters' checkpoint files"):
    multi_hash_table_ops.MultiHashTable.from_proto(proto, import_scope=scope)


def test_name_suffixes_of_dots_dashes_and_spaces_are_taken():
  for suffix in ("v2.1", "a-b", "user ids", "meta", "x.meta.y"):
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"a": test_utils.generate_test_hash_table_config(1)},
        name_suffix=suffix)
    assert table.shared_name == "MonolithMultiHashTable_" + suffix


def test_lookup_assign_add_reinitialize():
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      configs={
          "slot0": test_utils.generate_test_hash_table_config(1),
          "not_used": test_utils.generate_test_hash_table_config(2),
          "slot1": test_utils.generate_test_hash_table_config(2),
          "slot2": test_utils.generate_test_hash_table_config(2),
      })
  table = table.assign_add({
      "slot0": (_id([0]), _value([[1]])),
      "slot1": (_id([1]), _value([[2, 2]])),
      "slot2": (_id([2, 3]), _value([[4, 4], [8, 8]])),
  })
  looked_up = table.lookup({
      "slot0": _id([0]),
      "slot1": _id([1]),
      "slot2": _id([2, 3])
  })
  with tf1.train.SingularMonitoredSession() as sess:
    values = sess.run(looked_up)
  np.testing.assert_array_equal(values["slot0"], [[1]])
  np.testing.assert_array_equal(values["slot1"], [[2, 2]])
  np.testing.assert_array_equal(values["slot2"], [[4, 4], [8, 8]])

  table, status_known = table.reinitialize("slot2", _id([1, 2, 3]))
  table, status_unknown = table.reinitialize("slot3", _id([1, 2, 3]))
  looked_up = table.lookup({"slot1": _id([1]), "slot2": _id([1, 2, 3])})
  with tf1.train.SingularMonitoredSession() as sess:
    values, known, unknown = sess.run(
        [looked_up, status_known, status_unknown])
  np.testing.assert_array_equal(values["slot1"], [[2, 2]])
  np.testing.assert_array_equal(values["slot2"], [[0, 0], [0, 0], [0, 0]])
  np.testing.assert_array_equal(known, [0, 1, 1])
  np.testing.assert_array_equal(unknown, [-1, -1, -1])


def _initial_values(graph_seed):
  """Two tables' random_uniform initial values of new ids, in a new graph
  with the graph-level seed `graph_seed` (None: none)."""
  with tf.Graph().as_default():
    if graph_seed is not None:
      tf1.set_random_seed(graph_seed)
    configs = {}
    for name in ("a", "b"):
      config = test_utils.generate_test_hash_table_config(4)
      init = config.table_config.entry_config.segments[0].init_config
      init.random_uniform.minval = -1
      init.random_uniform.maxval = 1
      configs[name] = config
    table = multi_hash_table_ops.MultiHashTable.from_configs(configs=configs)
    ids = _id(list(range(1000)))
    table = table.assign_add({name: (ids, tf.zeros([1000, 4]))
                              for name in configs})
    looked_up = table.lookup({name: ids for name in configs})
    with tf1.train.SingularMonitoredSession() as sess:
      values = sess.run(looked_up)
  return values["a"], values["b"]


def test_a_graph_level_seed_makes_initial_values_reproducible():
  a, b = _initial_values(7)
  a_again, b_again = _initial_values(7)
  np.testing.assert_array_equal(a, a_again)
  np.testing.assert_array_equal(b, b_again)
  # Tables of one graph draw apart; another seed, or none, draws anew.
  assert not np.array_equal(a, b)
  assert not np.array_equal(a, _initial_values(8)[0])
  assert not np.array_equal(_initial_values(None)[0],
                            _initial_values(None)[0])
  assert np.all((a >= -1) & (a < 1))


def test_serving_tables_carry_no_seeds():
  tf.random.set_seed(7)
  configs = {"a": test_utils.generate_test_hash_table_config(1)}
  with export_context.enter_export_mode(export_context.ExportMode.STANDALONE):
    serving = multi_hash_table_ops.MultiHashTable.from_configs(
        configs, name_suffix="serving")
  training = multi_hash_table_ops.MultiHashTable.from_configs(configs)
  assert serving.initializer.get_attr("seed") == 0
  assert serving.initializer.get_attr("seed2") == 0
  assert training.initializer.get_attr("seed") != 0


@pytest.mark.parametrize("fused", [False, True])
def test_a_lookup_output_still_held_is_not_reused_by_the_next_run(fused):
  # Large outputs are written into the buffer of the kernel's previous run
  # when nothing else holds it; a queue holding the previous run's output
  # (by reference, no copy) must keep its values.
  n = 20000  # x dim 4: above ReusedFloatOutput's 64 Ki floats
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      configs={"slot0": test_utils.generate_test_hash_table_config(4)})
  ids = np.arange(n, dtype=np.int64)
  table = table.assign({"slot0": (_id(ids), _value(np.repeat(
      ids.astype(np.float32)[:, None], 4, axis=1)))})
  assign = table.as_op()
  ids_ph = tf1.placeholder(tf.int64, [None])
  if fused:
    embeddings = tf.reshape(
        table.fused_lookup(ids_ph, tf.reshape(tf.size(ids_ph), [1]),
                           num_of_shards=1)[0], [-1, 4])
  else:
    embeddings = table.lookup({"slot0": ids_ph})["slot0"]
  queue = tf.queue.FIFOQueue(3, tf.float32, shapes=[[n, 4]])
  enqueue = queue.enqueue(embeddings)
  dequeue = queue.dequeue()
  with tf1.train.SingularMonitoredSession() as sess:
    sess.run(assign)
    sess.run(enqueue, {ids_ph: ids})
    sess.run(enqueue, {ids_ph: ids[::-1]})
    reused = sess.run(embeddings, {ids_ph: ids + 1})
    first, second = sess.run(dequeue), sess.run(dequeue)
    again = sess.run(embeddings, {ids_ph: ids})
  expected = np.repeat(ids.astype(np.float32)[:, None], 4, axis=1)
  np.testing.assert_array_equal(first, expected)
  np.testing.assert_array_equal(second, expected[::-1])
  np.testing.assert_array_equal(reused[:-1], expected[1:])
  np.testing.assert_array_equal(reused[-1], [0, 0, 0, 0])
  np.testing.assert_array_equal(again, expected)


def test_fused_apply_gradient_applies_an_id_of_several_shards_in_their_order():
  # The same ids in every shard's segment (the shards of several workers):
  # optimized shard by shard, as apply_gradients run once per shard does,
  # whatever the worker threads do (adagrad's result depends on the order).
  shards, n, dim = 16, 1024, 2
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  table_config.entry_config.segments.append(
      entry.CombineAsSegment(dim, entry.ZerosInitializer(),
                             entry.AdagradOptimizer(),
                             entry.Fp32Compressor()))
  entry.CuckooHashTableConfig().mutate_table(table_config)
  config = {"a": entry.HashTableConfigInstance(table_config, [0.5])}
  fused = multi_hash_table_ops.MultiHashTable.from_configs(
      config, name_suffix="fused")
  one_by_one = multi_hash_table_ops.MultiHashTable.from_configs(
      config, name_suffix="one_by_one")
  ids = np.tile(np.arange(n, dtype=np.int64) * 7919, shards)
  rng = np.random.default_rng(3)
  grads = rng.normal(size=[shards, n, dim]).astype(np.float32)
  # Of other widths (int64 counts, float64 gradients): cast, as the other
  # methods' inputs are (they failed on the op's dtype).
  slot_size = tf.constant([n] * shards, tf.int64)
  _, _, id_offsets, emb_offsets, indices = fused.fused_lookup(
      _id(ids), slot_size, shards)
  applied = fused.fused_apply_gradient(
      _id(ids), indices, slot_size,
      tf.constant(grads.reshape([-1]), tf.float64), id_offsets,
      tf.cast(emb_offsets, tf.int64), tf.constant(1, tf.int64),
      tf.constant(100, tf.int64), shards).as_op()
  shard_grads = tf1.placeholder(tf.float32, [n, dim])
  apply_one = one_by_one.apply_gradients(
      {"a": (_id(ids[:n]), shard_grads)}, tf.constant(1, tf.int64),
      tf.constant(100, tf.int64)).as_op()
  looked_up = [t.lookup({"a": _id(ids[:n])})["a"] for t in (fused, one_by_one)]
  with tf1.Session() as sess:
    sess.run([fused.initializer, one_by_one.initializer])
    sess.run(applied)
    for s in range(shards):
      sess.run(apply_one, {shard_grads: grads[s]})
    got, expected = sess.run(looked_up)
  np.testing.assert_array_equal(got, expected)


def test_stats_report_each_tables_entries_memory_and_time():
  table = multi_hash_table_ops.MultiHashTable.from_configs({
      "b": test_utils.generate_test_hash_table_config(4),
      "a": test_utils.generate_test_hash_table_config(1),
  })
  ids = tf1.placeholder(tf.int64, [None])
  fill = table.assign(
      {"b": (ids, tf.ones([tf.size(ids), 4]))},
      req_time=tf.constant(1_700_000_000, tf.int64)).as_op()
  stats = table.stats()
  # Of a table an update returned: fetching it does not run the update.
  added = table.assign_add({"a": (_id([5]), _value([[1]]))})
  stats_of_added = added.stats()
  value_of_5 = table.lookup({"a": _id([5])})["a"]
  assert table.table_names == ("a", "b")
  assert all(t.shape.as_list() == [2] for t in stats.values())
  with tf1.Session() as sess:
    sess.run(table.initializer)
    before = sess.run(stats)
    sess.run(fill, {ids: np.arange(100_000)})
    after = sess.run(stats)
    sess.run(stats_of_added)
    np.testing.assert_array_equal(sess.run(value_of_5), [[0]])
  assert before["entries"].tolist() == [0, 0]
  assert after["entries"].tolist() == [0, 100_000]
  assert after["latest_update_time"].tolist() == [0, 1_700_000_000]
  # Table b's 100k entries of 4 floats (and their state) at least.
  assert after["memory_bytes"][1] - before["memory_bytes"][1] > 100_000 * 16
  assert after["memory_bytes"][0] == before["memory_bytes"][0]


def test_stats_of_a_copy_built_on_another_device_read_the_tables_task():
  # A table on one device (a PS task's), updated under another (the
  # worker's scope): the copy's stats read the table where it lives.
  with tf.device("/cpu:0"):
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"a": test_utils.generate_test_hash_table_config(1)})
  with tf.device("/cpu:1"):
    added = table.assign_add({"a": (_id([5, 6]), _value([[1], [2]]))})
    stats_of_added = added.stats()
  config = tf1.ConfigProto(device_count={"CPU": 2})
  with tf1.Session(config=config) as sess:
    sess.run(table.initializer)
    sess.run(added.as_op())
    assert sess.run(stats_of_added)["entries"].tolist() == [2]


def _summaries(directory):
  """{tag: [(step, value)]} of the event files in `directory`."""
  found = {}
  for name in sorted(os.listdir(directory)):
    for event in tf1.train.summary_iterator(os.path.join(directory, name)):
      for value in event.summary.value:
        found.setdefault(value.tag, []).append((event.step, value.simple_value))
  return found


def test_stats_hook_logs_each_table_and_filter_and_writes_summaries(
    tmp_path, caplog):
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": test_utils.generate_test_hash_table_config(2)},
      name_suffix="hook")
  hash_filter = hash_filter_ops.create_hash_filter(1000, 5,
                                                   name_suffix="hook")
  ids = tf1.placeholder(tf.int64, [None])
  global_step = tf1.train.get_or_create_global_step()
  train = tf.group(
      table.assign({"a": (ids, tf.ones([tf.size(ids), 2]))}).as_op(),
      global_step.assign_add(1))
  hook = multi_hash_table_ops.MultiHashTableStatsHook(
      hash_filters=[hash_filter], every_n_secs=3600,
      summary_dir=str(tmp_path))
  with caplog.at_level(logging.INFO):
    with tf1.train.MonitoredSession(hooks=[hook]) as sess:
      # Reported: the first step; where eager execution is on around a run
      # (TF2 programs), as its summaries are written.
      with context.eager_mode():
        sess.run(train, {ids: np.arange(100)})
      sess.run(train, {ids: np.arange(100, 300)})  # within the interval
    # Closing reports again.
  lines = [r.getMessage() for r in caplog.records
           if "MultiHashTable_hook table a:" in r.getMessage()]
  assert len(lines) == 2, lines
  assert re.search(r": 100 entries, [0-9.]+ MiB \([0-9]+ bytes per entry\)\.$",
                   lines[0]), lines[0]
  assert re.search(r": 300 entries, .*\+200 entries since", lines[1]), lines[1]
  filter_lines = [r for r in caplog.records
                  if "Hash filter MonolithHashFilterhook:" in r.getMessage()]
  assert [r.levelno for r in filter_lines] == [logging.INFO] * 2
  assert "0 of 1000 cells occupied, 0 failures" in filter_lines[0].getMessage()
  summaries = _summaries(str(tmp_path))
  assert summaries["hash_table/MonolithMultiHashTable_hook/a/entries"] == [
      (1, 100), (2, 300)]
  assert len(summaries["hash_filter/MonolithHashFilterhook/failures"]) == 2


def test_stats_hook_reports_a_multi_table_of_many_tables_in_one_line(
    tmp_path, caplog, monkeypatch):
  # 100 PS tasks of 2,000 tables each logged 200,000 lines a report.
  monkeypatch.setattr(multi_hash_table_ops.MultiHashTableStatsHook,
                      "MAX_TABLE_LINES", 3)
  names = ["a", "b", "c", "d"]
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {n: test_utils.generate_test_hash_table_config(2) for n in names},
      name_suffix="many")
  ids = tf1.placeholder(tf.int64, [None])
  global_step = tf1.train.get_or_create_global_step()
  train = tf.group(
      table.assign({
          n: (ids + 1000 * i, tf.ones([tf.size(ids), 2]))
          for i, n in enumerate(names[:3])
      }).as_op(), global_step.assign_add(1))
  hook = multi_hash_table_ops.MultiHashTableStatsHook(
      every_n_secs=3600, summary_dir=str(tmp_path))
  with caplog.at_level(logging.INFO):
    with tf1.train.MonitoredSession(hooks=[hook]) as sess:
      sess.run(train, {ids: np.arange(10)})
      sess.run(train, {ids: np.arange(30)})
  lines = [r.getMessage() for r in caplog.records
           if "MonolithMultiHashTable_many" in r.getMessage()]
  assert len(lines) == 2, lines  # the first step's and the closing report
  assert re.search(
      r"MultiHashTable MonolithMultiHashTable_many \(4 tables\): 90 entries,"
      r" [0-9.]+ MiB \([0-9]+ bytes per entry\), \+60 entries since the last "
      r"report; the largest: a \(30\), b \(30\), c \(30\)\.$",
      lines[1]), lines[1]
  summaries = _summaries(str(tmp_path))
  assert summaries["hash_table/MonolithMultiHashTable_many/entries"] == [
      (1, 30), (2, 90)]
  assert not any("/a/" in tag for tag in summaries)


def test_stats_hook_warns_while_a_filters_failures_grow(caplog):
  failures = tf1.get_variable("failures", [], tf.int64,
                              initializer=tf1.zeros_initializer())

  def stats(_):
    return {"capacity": tf.constant(300, tf.int64),
            "estimated_elements": tf.constant(299, tf.int64),
            "failures": failures.read_value(),
            "memory_bytes": tf.constant(2000, tf.int64)}

  hash_filter = hash_filter_ops.create_hash_filter(300, 5, name_suffix="full")
  fail = failures.assign_add(7)
  nothing = tf.no_op()
  with mock.patch.object(hash_filter_ops, "filter_stats", stats):
    hook = multi_hash_table_ops.MultiHashTableStatsHook(
        tables=[], hash_filters=[hash_filter], every_n_secs=1e-9)
    with caplog.at_level(logging.INFO):
      with tf1.train.MonitoredSession(hooks=[hook]) as sess:
        sess.run(fail)  # 7 at the first report: no earlier one to grow from
        sess.run(nothing)  # unchanged
        sess.run(fail)  # grew
  records = [r for r in caplog.records if "MonolithHashFilterfull" in
             r.getMessage()]
  assert [r.levelno for r in records] == [
      logging.INFO, logging.INFO, logging.WARNING, logging.INFO]
  assert "14 failures (+7 since the last report)" in records[2].getMessage()
  assert "give it a larger capacity" in records[2].getMessage()


def test_stats_hook_with_an_unwritable_summary_dir_only_logs(tmp_path,
                                                            caplog):
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": test_utils.generate_test_hash_table_config(1)},
      name_suffix="unwritable")
  blocked = tmp_path / "file"
  blocked.write_bytes(b"")  # a file where the summaries' folder would be
  hook = multi_hash_table_ops.MultiHashTableStatsHook(
      tables=[table], summary_dir=str(blocked / "summaries"))
  nothing = tf.no_op()
  with caplog.at_level(logging.INFO):
    with tf1.train.MonitoredSession(hooks=[hook]) as sess:
      sess.run(nothing)
  messages = [r.getMessage() for r in caplog.records]
  assert any("cannot write summaries to" in m for m in messages), messages
  assert sum("MultiHashTable_unwritable table a: 0 entries" in m
             for m in messages) == 2


def test_stats_hook_serves_sessions_made_again_on_a_finalized_graph():
  # A session made again with the same hooks (local_cluster after a lost
  # PS) calls begin() again on a finalized graph: building the report's
  # ops there failed ("Graph is finalized").
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": test_utils.generate_test_hash_table_config(1)},
      name_suffix="again")
  hook = multi_hash_table_ops.MultiHashTableStatsHook(tables=[table])
  nothing = tf.no_op()
  first = tf1.train.MonitoredSession(hooks=[hook])
  first.run(nothing)
  ops_after_first = len(tf1.get_default_graph().get_operations())
  with tf1.train.MonitoredSession(hooks=[hook]) as second:
    second.run(nothing)
  first.close()
  assert len(tf1.get_default_graph().get_operations()) == ops_after_first


def test_stats_hook_refuses_a_bad_interval():
  for bad in (0, -1.0, float("inf"), float("nan"), True, "60"):
    with pytest.raises(ValueError, match="every_n_secs"):
      multi_hash_table_ops.MultiHashTableStatsHook(every_n_secs=bad)


def _one_day_expiry_table():
  """A table "slot0" of dim 1 whose entries expire after a day."""
  config = test_utils.generate_test_hash_table_config(1)
  config.table_config.slot_expire_time_config.default_expire_time = 1  # day
  return multi_hash_table_ops.MultiHashTable.from_configs({"slot0": config})


def _evict_then_times(table, ids):
  """Evicts `table` in a session: (evicted count, [(id, update time)] of
  `ids` after it)."""
  table, evicted = table.evict()
  entries = table.lookup_entry({"slot0": _id(ids)})["slot0"]
  with tf1.train.SingularMonitoredSession() as sess:
    evicted, entries = sess.run([evicted, entries])
  dumps = [embedding_hash_table_pb2.EntryDump.FromString(e) for e in entries]
  return evicted.tolist()[0], [(d.id, d.last_update_ts_sec) for d in dumps]


def test_reinitialize_stamps_the_tables_time_not_the_clock():
  # A table trained on sample times (long ago): reinitializing an id must not
  # make the others look expired to the next eviction or save.
  table = _one_day_expiry_table()
  table = table.assign_add({"slot0": (_id([1, 2]), _value([[1], [2]]))},
                           req_time=tf.constant(1000, tf.int64))
  table, _ = table.reinitialize("slot0", _id([3]))
  assert _evict_then_times(table, [1, 2, 3]) == (0, [(1, 1000), (2, 1000),
                                                     (3, 1000)])


def test_a_req_time_far_ahead_of_the_clock_does_not_expire_the_rest():
  # One corrupt req_time (years ahead) must not become the tables' "now":
  # the next eviction (or save) would drop every other entry. Its entries
  # take the table's time (the time itself would keep them from ever
  # expiring).
  table = _one_day_expiry_table()
  now = int(time.time())
  far_ahead = now + 10 * 365 * 24 * 3600
  table = table.assign_add({"slot0": (_id([1, 2]), _value([[1], [2]]))},
                           req_time=tf.constant(now, tf.int64))
  table = table.assign_add({"slot0": (_id([3]), _value([[3]]))},
                           req_time=tf.constant(far_ahead, tf.int64))
  table = table.apply_gradients({"slot0": (_id([3]), _value([[0]]))},
                                global_step=tf.constant(1, tf.int64),
                                req_time=tf.constant(far_ahead, tf.int64))
  assert _evict_then_times(table, [1, 2, 3]) == (0, [(1, now), (2, now),
                                                     (3, now)])


def test_lookup_entry_of_many_ids_in_two_tables():
  # More ids than the op handles in one piece (16384), in both tables.
  configs = {"a": test_utils.generate_test_hash_table_config(2),
             "b": test_utils.generate_test_hash_table_config(1)}
  table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
  n = 40000
  a_ids = np.arange(n, dtype=np.int64)
  table = table.assign(
      {"a": (_id(a_ids), _value(np.stack([a_ids, -a_ids], 1)))})
  # b: ids present at even positions only.
  b_ids = np.arange(n, dtype=np.int64) + 7
  table = table.assign({"b": (_id(b_ids[::2]), _value(b_ids[::2, None]))})
  entries = table.lookup_entry({"a": _id(a_ids), "b": _id(b_ids)})
  with tf1.train.SingularMonitoredSession() as sess:
    entries = sess.run(entries)
  a = [embedding_hash_table_pb2.EntryDump.FromString(e) for e in entries["a"]]
  assert [d.id for d in a] == a_ids.tolist()
  assert all(list(d.num) == [d.id, -d.id] for d in a)
  b = [embedding_hash_table_pb2.EntryDump.FromString(e) for e in entries["b"]]
  assert [d.id for d in b[::2]] == b_ids[::2].tolist()
  assert [list(d.num) for d in b[::2]] == [[i] for i in b_ids[::2]]
  assert all(e == b"" for e in entries["b"][1::2])  # absent


def test_infer_dims_in_table_order():
  configs = {
      "b": test_utils.generate_test_hash_table_config(3),
      "a": test_utils.generate_test_hash_table_config(2),
  }
  assert multi_hash_table_ops.infer_dims(configs) == [2, 3]
  table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
  assert list(table.get_table_dim_sizes()) == [2, 3]


def test_apply_gradients():
  with tf1.Session() as sess:
    table = _from_configs({
        "slot0": test_utils.generate_test_hash_table_config(1),
        "slot1": test_utils.generate_test_hash_table_config(2),
    })
    sess.run(table.initializer)
    table = table.apply_gradients(
        {
            "slot0": (_id([0]), tf.constant(2.0)),
            "slot1": (_id([1, 2]), _value([[1, 3], [2, 4]])),
        },
        global_step=tf.constant(0, tf.int64))
    values = sess.run(table.lookup({"slot0": _id([0]), "slot1": _id([1, 2])}))
  np.testing.assert_array_equal(values["slot0"], [[-2]])
  np.testing.assert_array_equal(values["slot1"], [[-1, -3], [-2, -4]])


def test_fixed_r8_and_one_bit_segments_train_on_what_they_serve():
  # As the original: fixed_r8 lookups return the quantized value (the
  # gradient passes straight through); one_bit lookups return
  # amplitude * tanh(scale * x), the gradient scaled by its derivative, with
  # scale = init_scale * sqrt(1 + 0.005 * step) at the last multiple of
  # step_size.
  fixed_r8 = test_utils.generate_test_hash_table_config(2)
  fixed_r8.table_config.entry_config.segments[0].comp_config.fixed_r8.r = 1.0
  one_bit = test_utils.generate_test_hash_table_config(2)
  one_bit.table_config.entry_config.segments[0].comp_config.one_bit.CopyFrom(
      entry.OneBitCompressor(step_size=10, amplitude=0.5).as_proto().one_bit)
  raw = np.array([[0.1234, -0.3]], np.float32)
  grad = np.array([[1.0, 2.0]], np.float32)
  with tf1.Session() as sess:
    table = _from_configs({"fixed_r8": fixed_r8, "one_bit": one_bit})
    sess.run(table.initializer)
    table = table.assign({"fixed_r8": (_id([7]), raw), "one_bit": (_id([7]), raw)})
    before = sess.run(table.lookup({"fixed_r8": _id([7]), "one_bit": _id([7])}))
    table = table.apply_gradients(
        {"fixed_r8": (_id([7]), grad), "one_bit": (_id([7]), grad)},
        global_step=tf.constant(25, tf.int64))
    with tf.control_dependencies([table.as_op()]):
      after = sess.run(table.lookup({"fixed_r8": _id([7]), "one_bit": _id([7])}))

  def quantize(x):  # fixed_r8, r = 1: steps of 1/128 (half away from 0)
    return np.clip(np.trunc(x * 128 + np.copysign(0.5, x)), -128, 127) / 128

  np.testing.assert_allclose(before["fixed_r8"], quantize(raw), rtol=1e-6)
  np.testing.assert_allclose(before["one_bit"], 0.5 * np.tanh(raw), rtol=1e-6)
  # SGD with learning rate 1 on the raw floats.
  np.testing.assert_allclose(after["fixed_r8"], quantize(raw - grad), rtol=1e-6)
  scale = np.sqrt(1 + 0.005 * 20)
  trained = raw - grad * 0.5 * scale * (1 - np.tanh(scale * raw)**2)
  np.testing.assert_allclose(after["one_bit"], 0.5 * np.tanh(scale * trained),
                             rtol=1e-5)


def test_a_schedule_shared_by_tables_is_called_once():
  # 2,000 tables of one schedule built its ops 2,000 times (~13 ops each
  # for a polynomial decay).
  calls = {"shared": 0, "own": 0}

  def counted(name, value):

    def fn():
      calls[name] += 1
      return tf.constant(value, tf.float32)

    return fn

  shared = counted("shared", 0.5)
  configs = {
      f"t{i}": entry.HashTableConfigInstance(
          test_utils.generate_test_hash_table_config(1).table_config,
          [shared]) for i in range(50)
  }
  configs["z_own"] = entry.HashTableConfigInstance(
      test_utils.generate_test_hash_table_config(1).table_config,
      [counted("own", 2.0)])
  cc = multi_hash_table_ops.convert_to_cached_config(configs)
  rates = multi_hash_table_ops.learning_rate_tensor(cc)
  assert calls == {"shared": 1, "own": 1}
  with tf1.Session() as sess:
    np.testing.assert_array_equal(sess.run(rates), [0.5] * 50 + [2.0])


def test_learning_rate_tensor_uses_a_configs_tensor_when_set():
  two_segments = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  for _ in range(2):
    segment = two_segments.entry_config.segments.add(dim_size=1)
    segment.opt_config.sgd.SetInParent()
  configs = {
      "a": test_utils.generate_test_hash_table_config(1, learning_rate=0.5),
      "b": entry.HashTableConfigInstance(two_segments, [1.0, 2.0]),
      "c": test_utils.generate_test_hash_table_config(1, learning_rate=3),
      "d": test_utils.generate_test_hash_table_config(1, learning_rate=0.25),
  }
  # A set tensor replaces the config's functions; the others are called.
  configs["b"].set_learning_rate_tensor(_value([7, 8]))
  cc = multi_hash_table_ops.convert_to_cached_config(configs)
  rates = multi_hash_table_ops.learning_rate_tensor(cc)
  with tf1.Session() as sess:
    np.testing.assert_array_equal(sess.run(rates), [0.5, 7, 8, 3, 0.25])
  configs["b"].set_learning_rate_tensor(_value([7]))
  with pytest.raises(ValueError, match="table b: learning_rate_tensor has 1 "
                     "rates for 2 segments"):
    multi_hash_table_ops.learning_rate_tensor(cc)
  # A list or an array is taken as a tensor; what is no number is refused,
  # naming the table (it was an AttributeError on .shape).
  configs["b"].set_learning_rate_tensor(np.array([9, 10], np.float64))
  with tf1.Session() as sess:
    np.testing.assert_array_equal(
        sess.run(multi_hash_table_ops.learning_rate_tensor(cc)),
        [0.5, 9, 10, 3, 0.25])
  for bad, reason in (("fast", "dtype string"), ([[1], [2, 3]], "not a")):
    configs["b"].set_learning_rate_tensor(bad)
    with pytest.raises(ValueError,
                       match=f"table b: learning_rate_tensor .*{reason}"):
      multi_hash_table_ops.learning_rate_tensor(cc)


def test_raw_assign_add():
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(2)})
  ragged_id = table.get_ragged_id({"slot0": _id([4, 5, 4])})
  flat_value = table.get_flat_value({"slot0": _value([[1, 2], [3, 4], [5, 6]])})
  table = table.raw_assign_add(ragged_id, flat_value)
  with tf1.Session() as sess:
    sess.run(table.initializer)
    values = sess.run(table.lookup({"slot0": _id([4, 5])}))
  np.testing.assert_array_equal(values["slot0"], [[6, 8], [3, 4]])


def test_raw_ids_and_values_are_checked_per_table():
  """The raw kernels see only the total of floats: a's [1, 3] rows for its
  dim 2 wrote a with va[:2] and b with va[2] and vb."""
  table = multi_hash_table_ops.MultiHashTable.from_configs({
      "a": test_utils.generate_test_hash_table_config(2),
      "b": test_utils.generate_test_hash_table_config(3),
  })
  with pytest.raises(ValueError, match=r"the values of table a must be "
                     r"\[len\(ids\), 2\], got shape \(1, 3\)"):
    table.get_flat_value({"a": _value([[1, 2, 3]]), "b": _value([[4, 5]])})
  with pytest.raises(ValueError, match="the values of table b must be"):
    table.get_flat_value({"b": _value([[4, 5]])})
  with pytest.raises(ValueError, match=r"the values of table b must be "
                     r"\[len\(ids\), 3\], got shape \(2,\)"):
    table.get_flat_value({"b": _value([4, 5])})
  with pytest.raises(ValueError, match=r"the ids of table a must be 1-D"):
    table.get_ragged_id({"a": _id([[1]])})
  # Other integer widths are cast, as the other methods cast them.
  ragged = table.get_ragged_id({"a": tf.constant([1], tf.int32),
                                "b": _id([2])})
  flat = table.get_flat_value({"a": tf.constant([[1, 2]], tf.float64)})
  with tf1.Session() as sess:
    assert sess.run(ragged).to_list() == [[1], [2]]
    assert sess.run(flat).tolist() == [1, 2]


@pytest.mark.parametrize("method", ["assign", "assign_add", "apply_gradients"])
def test_values_of_the_wrong_size_do_not_spill_into_the_next_table(method):
  # The tables' values cross flattened and concatenated, and the kernel
  # checks only the total: three rows for a's two ids lent a's third row to
  # b ("a: [[1,1],[2,2]], b: [[3,3,9,9]]").
  table = multi_hash_table_ops.MultiHashTable.from_configs({
      "a": test_utils.generate_test_hash_table_config(2),
      "b": test_utils.generate_test_hash_table_config(4),
  })
  update = getattr(table, method)
  extra = (() if method != "apply_gradients" else
           (tf.constant(0, tf.int64),))
  bad = {
      "a": (_id([1, 2]), _value([[1, 1], [2, 2], [3, 3]])),
      "b": (_id([7]), _value([[9, 9]])),
  }
  with pytest.raises(ValueError,
                     match=r"the values of table a must be \[len\(ids\), 2\] "
                     r"= \[2, 2\], got shape \(3, 2\)"):
    update(bad, *extra)
  # Transposed: the right count, the wrong rows.
  with pytest.raises(ValueError,
                     match=r"the values of table a must be \[len\(ids\), 2\], "
                     r"got shape \(2, 3\)"):
    update({"a": (_id([1, 2, 3]), _value([[1, 1, 2], [2, 3, 3]]))}, *extra)
  # No ids, no values, whatever the shape.
  update({"a": (_id(np.zeros([0], np.int64)), tf.zeros([0, 1]))}, *extra)
  # Sizes known only at run time.
  values_a = tf1.placeholder(tf.float32, shape=None)
  updated = update({
      "a": (_id([1, 2]), values_a),
      "b": (_id([7]), _value([[9, 9, 9, 9]])),
  }, *extra)
  with tf1.Session() as sess:
    sess.run(table.initializer)
    # apply_gradients hands each table's gradients to the kernel as they
    # are; assign joins them after one check for all tables.
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=(r"value\[0\] \(table a\) has 6 floats; its 2 ids of dim 2 "
               r"need 4" if method == "apply_gradients" else
               r"the values of the tables a, b \(in this order\) must hold "
               r"len\(ids\) \* dim floats each.* \[6 4\] .* \[4 4\]")):
      sess.run(updated.as_op(),
               feed_dict={values_a: [[1, 1], [2, 2], [3, 3]]})
    looked_up = sess.run(table.lookup({"a": _id([1, 2]), "b": _id([7])}))
    np.testing.assert_array_equal(looked_up["a"], np.zeros([2, 2]))
    np.testing.assert_array_equal(looked_up["b"], np.zeros([1, 4]))
    # The right floats in another shape (flat, as the original accepts).
    sess.run(updated.as_op(), feed_dict={values_a: [1, 1, 2, 2]})
    looked_up = sess.run(table.lookup({"a": _id([1, 2]), "b": _id([7])}))
  sign = -1 if method == "apply_gradients" else 1  # sgd, learning rate 1
  np.testing.assert_array_equal(looked_up["a"], sign * np.array([[1, 1],
                                                                 [2, 2]]))
  np.testing.assert_array_equal(looked_up["b"], sign * np.full([1, 4], 9))


def test_apply_gradients_rejects_a_vector_global_step():
  # A vector global step used to abort the whole process on TF's CHECK
  # ("Must have a one element tensor") in the optimize kernel.
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      configs={"slot0": test_utils.generate_test_hash_table_config(1)})
  grads = {"slot0": (_id([0]), _value([[1]]))}
  # The reported call (an int32 vector) and an int64 one fail while the
  # graph is built.
  with pytest.raises(ValueError, match=r"global_step must be a scalar, got "
                     r"shape \[2\]"):
    table.apply_gradients(grads, global_step=tf.constant([3, 4]))
  with pytest.raises(ValueError,
                     match=r"global_step must be a scalar, got shape "
                     r"\[2\]"):
    table.apply_gradients(grads, global_step=tf.constant([3, 4], tf.int64))
  # Known only at run time, the kernel's own check rejects it.
  step = tf1.placeholder(tf.int64, shape=None)
  updated = table.apply_gradients(grads, global_step=step)
  looked_up = updated.lookup({"slot0": _id([0])})
  with tf1.Session() as sess:
    sess.run(table.initializer)
    for bad_step in ([3, 4], []):
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match="global_step must be a scalar"):
        sess.run(updated.as_op(), feed_dict={step: bad_step})
    # A negative step would reach the optimizers (warmup scaling the rate
    # to 0 while accumulators grow).
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"global_step must be >= 0 \(the training "
                       r"step\), got -1"):
      sess.run(updated.as_op(), feed_dict={step: -1})
    # The process lives on, and the table was not touched.
    np.testing.assert_array_equal(
        sess.run(table.lookup({"slot0": _id([0])}))["slot0"], [[0]])
    np.testing.assert_array_equal(
        sess.run(looked_up, feed_dict={step: 3})["slot0"], [[-1]])


def test_update_times_out_of_range_are_refused():
  # A time in milliseconds would become the table's "now" for expiry: every
  # entry would then look expired to saves and eviction.
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      configs={"slot0": test_utils.generate_test_hash_table_config(1)})
  req_time = tf1.placeholder(tf.int64, shape=[])
  ids_and_values = {"slot0": (_id([7]), _value([[1]]))}
  updates = [
      table.assign(ids_and_values, req_time=req_time).as_op(),
      table.assign_add(ids_and_values, req_time=req_time).as_op(),
      table.apply_gradients(ids_and_values, global_step=tf.constant(
          1, tf.int64), req_time=req_time).as_op(),
  ]
  with tf1.Session() as sess:
    sess.run(table.initializer)
    for update in updates:
      for bad in (1_700_000_000_000, -1, 2**32):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=f"= {bad} is not a time in seconds in "
                           r"\[0, 2\^32\)"):
          sess.run(update, feed_dict={req_time: bad})
    np.testing.assert_array_equal(
        sess.run(table.lookup({"slot0": _id([7])}))["slot0"], [[0]])
    sess.run(updates[0], feed_dict={req_time: 2**32 - 1})
    np.testing.assert_array_equal(
        sess.run(table.lookup({"slot0": _id([7])}))["slot0"], [[1]])


def test_adagrad_through_apply_gradients():
  config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  segment = config.entry_config.segments.add(dim_size=2)
  segment.init_config.zeros.SetInParent()
  segment.opt_config.adagrad.initial_accumulator_value = 0.1
  instance = entry.HashTableConfigInstance(config, [0.5])
  with tf1.Session() as sess:
    table = _from_configs({"s": instance})
    sess.run(table.initializer)
    grad = np.array([[0.3, -1.0]], np.float32)
    for step in range(3):
      table = table.apply_gradients({"s": (_id([7]), _value(grad))},
                                    global_step=tf.constant(step, tf.int64))
    got = sess.run(table.lookup({"s": _id([7])}))["s"]
  # Three adagrad steps of the same gradient, in closed form.
  num, norm = np.zeros(2), np.full(2, 0.1)
  for _ in range(3):
    norm += grad[0].astype(np.float64)**2
    num -= 0.5 * grad[0] / np.sqrt(norm)
  np.testing.assert_allclose(got[0], num, rtol=1e-5, atol=1e-6)


def test_save_restore_and_feature_stat_take_paths(tmp_path):
  basename = tmp_path / "table"
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _from_configs({"a": test_utils.generate_test_hash_table_config(1)})
    saved = table.assign({"a": (_id([3]), _value([[5]]))}).save(basename)
    sess.run(table.initializer)
    sess.run(saved.as_op())
    assert sess.run(table.feature_stat(basename))[1].tolist() == [1]
    looked_up = table.restore(basename).lookup({"a": _id([3])})["a"]
    assert sess.run(looked_up).tolist() == [[5]]


def test_feature_stat_reads_the_files_at_each_run(tmp_path):
  # The save, restore and feature_stat ops were not stateful: TF folded a
  # feature_stat of a constant path into the counts it read at the first
  # run, and every later run returned them.
  basename = str(tmp_path / "table")
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _from_configs({"a": test_utils.generate_test_hash_table_config(1)})
    ids = tf1.placeholder(tf.int64, [None])
    save = table.assign({
        "a": (ids, tf.ones([tf.size(ids), 1]))
    }).save(basename).as_op()
    counts = table.feature_stat(basename)[1]
    sess.run(table.initializer)
    for n in (3, 10, 20):
      sess.run(save, {ids: np.arange(n)})
      assert sess.run(counts).tolist() == [n]


def test_save_restore(tmp_path):
  basename = os.path.join(tmp_path, "save_restore", "table")
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _from_configs({
        "slot0": test_utils.generate_test_hash_table_config(1),
        "slot1": test_utils.generate_test_hash_table_config(2),
        "slot2": test_utils.generate_test_hash_table_config(2),
    })
    table = table.assign_add({
        "slot0": (_id([0, 1]), _value([[1], [2]])),
        "slot1": (_id([2, 3]), _value([[1, 2], [2, 3]])),
        "slot2": (_id([6, 7]), _value([[1, 1], [2, 2]])),
    })
    table = table.save(basename)
    sess.run(table.initializer)
    sess.run(table.as_op())
    features, counts = sess.run(table.feature_stat(basename))
  assert dict(zip(features.astype(str), counts)) == {
      "slot0": 2,
      "slot1": 2,
      "slot2": 2
  }

  with tf.Graph().as_default(), tf1.Session() as sess:
    # Other slots: slot1 is gone, slot3 is new.
    table = _from_configs({
        "slot0": test_utils.generate_test_hash_table_config(1),
        "slot2": test_utils.generate_test_hash_table_config(2),
        "slot3": test_utils.generate_test_hash_table_config(3),
    })
    table = table.restore(basename)
    looked_up = table.lookup({
        "slot0": _id([0, 1]),
        "slot2": _id([6, 7]),
        "slot3": _id([6])
    })
    sess.run(table.initializer)
    values = sess.run(looked_up)
  np.testing.assert_array_equal(values["slot0"], [[1], [2]])
  np.testing.assert_array_equal(values["slot2"], [[1, 1], [2, 2]])
  np.testing.assert_array_equal(values["slot3"], [[0, 0, 0]])


def test_a_file_system_error_is_not_taken_for_a_damaged_checkpoint(tmp_path):
  # TF gives some failures codes the checkpoint readers take for damaged
  # files (reading a directory: FailedPrecondition, as ENOTCONN or EPIPE
  # are): they are file system errors, Internal, naming the code, so that a
  # restore does not read past them for an older save.
  basename = os.path.join(tmp_path, "table")
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _from_configs({"s": test_utils.generate_test_hash_table_config(1)})
    sess.run(table.initializer)
    sess.run(table.assign({"s": (_id([1]), _value([[1]]))}).save(
        basename).as_op())
    meta = basename + ".meta-00000-of-00001"
    assert os.path.isfile(meta), os.listdir(tmp_path)
    os.remove(meta)
    os.mkdir(meta)
    # Not empty: an empty folder's size is 0 on some file systems (btrfs),
    # and nothing would be read from it.
    with open(os.path.join(meta, "file"), "w") as f:
      f.write("x")
    with pytest.raises(tf.errors.InternalError,
                       match=r"file system error \(FAILED_PRECONDITION\): "):
      sess.run(table.restore(basename).as_op())


def _sgd_segments(*dims: int) -> entry.HashTableConfigInstance:
  config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  for dim in dims:
    segment = config.entry_config.segments.add(dim_size=dim)
    segment.opt_config.sgd.SetInParent()
    segment.init_config.zeros.SetInParent()
  return entry.HashTableConfigInstance(config, [1.0] * len(dims))


@pytest.mark.parametrize("holding", [False, True])
def test_a_restore_into_other_segments_of_the_same_dim_fails(tmp_path,
                                                             holding):
  """Segments [1, 3] and [3, 1] hold 4 floats each: the records fit, but a
  restore would move the values across segments (a bias into a vector).
  It fails naming both layouts, the table as it was."""
  basename = os.path.join(tmp_path, "table")
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _from_configs({"s": _sgd_segments(1, 3)})
    table = table.assign({"s": (_id([5]), _value([[1, 2, 3, 4]]))})
    sess.run(table.initializer)
    sess.run(table.save(basename).as_op())
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _from_configs({"s": _sgd_segments(3, 1)})
    sess.run(table.initializer)
    if holding:
      sess.run(table.assign({"s": (_id([6]), _value([[9, 9, 9, 9]]))}).as_op())
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"holds table s with segment dims \[1, 3\], the "
                       r"table to restore has \[3, 1\]: its values would "
                       r"land in other segments"):
      sess.run(table.restore(basename).as_op())
    values = sess.run(table.lookup({"s": _id([5, 6])}))["s"]
  np.testing.assert_array_equal(values,
                                [[0, 0, 0, 0], [9, 9, 9, 9] if holding else
                                 [0, 0, 0, 0]])


def _adagrad(dim: int, rate: float) -> entry.HashTableConfigInstance:
  config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  segment = config.entry_config.segments.add(dim_size=dim)
  segment.init_config.zeros.SetInParent()
  segment.opt_config.adagrad.initial_accumulator_value = 0.1
  return entry.HashTableConfigInstance(config, [rate])


def test_values_only_restores_the_tables_whose_optimizer_changed(tmp_path):
  """Slot a moves from SGD to adagrad: its checkpointed state does not fit,
  so it restores its values only and starts adagrad's accumulators afresh;
  slot b (adagrad throughout) keeps its accumulators."""
  basename = os.path.join(tmp_path, "table")
  grad = np.array([[0.3, -1.0]], np.float32)

  def step(table, slots, global_step):
    return table.apply_gradients(
        {s: (_id([7]), _value(grad)) for s in slots},
        global_step=tf.constant(global_step, tf.int64))

  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _from_configs({"a": _sgd_segments(2), "b": _adagrad(2, 0.5)})
    sess.run(table.initializer)
    for global_step in range(2):
      sess.run(step(table, ["a", "b"], global_step).as_op())
    saved = sess.run(table.lookup({"a": _id([7]), "b": _id([7])}))
    sess.run(table.save(basename).as_op())
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = _from_configs({"a": _adagrad(2, 0.5), "b": _adagrad(2, 0.5)})
    sess.run(table.initializer)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="table a: .*'sgd', expected 'adagrad'"):
      sess.run(table.restore(basename).as_op())
    with pytest.raises(ValueError, match=r"values_only names \['c'\]"):
      table.restore(basename, values_only=["a", "c"])
    with pytest.raises(ValueError, match=r"names \['a'\] more than once"):
      table.restore(basename, values_only=["a", "a"])
    with pytest.raises(ValueError, match="a list of table names, got the "
                       "string 'a'"):
      table.restore(basename, values_only="a")
    restored = table.restore(basename, values_only=["a"])
    sess.run(restored.as_op())
    values = sess.run(table.lookup({"a": _id([7]), "b": _id([7])}))
    np.testing.assert_array_equal(values["a"], saved["a"])
    np.testing.assert_array_equal(values["b"], saved["b"])
    sess.run(step(table, ["a", "b"], 2).as_op())
    after = sess.run(table.lookup({"a": _id([7]), "b": _id([7])}))
  # a: one adagrad step from the initial accumulator; b: its third step.
  g = grad[0].astype(np.float64)
  np.testing.assert_allclose(
      after["a"][0], saved["a"][0] - 0.5 * g / np.sqrt(0.1 + g**2),
      rtol=1e-5)
  np.testing.assert_allclose(
      after["b"][0], saved["b"][0] - 0.5 * g / np.sqrt(0.1 + 3 * g**2),
      rtol=1e-5)


@pytest.mark.parametrize("on_ps", [False, True])
def test_a_save_or_restore_whose_caller_gave_up_stops(tmp_path, on_ps):
  """A run's deadline cancels its step, on a PS task too: the save stops and
  leaves no file, the restore (checking before it replaces) leaves the table
  as it was. Without it they ran on, holding the table."""
  folder = os.path.join(tmp_path, "cancelled")
  basename = os.path.join(folder, "table")
  num_ids = 1 << 20
  master, config = "", None
  if on_ps:
    servers, config = test_utils.create_test_ps_cluster(1)
    master = servers[0].target
  with tf.device(utils.ps_device(0) if on_ps else None):
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"slot": test_utils.generate_test_hash_table_config(16)})
  ids = tf1.placeholder(tf.int64, [None])
  assign = table.assign({"slot": (ids, tf.ones([tf.size(ids), 16]))}).as_op()
  save = table.save(basename).as_op()
  restore = table.restore(basename).as_op()
  looked_up = table.lookup({"slot": _id([num_ids])})["slot"]
  with tf1.Session(master, config=config) as sess:
    sess.run(table.initializer)
    sess.run(assign, {ids: np.arange(num_ids)})
    # Each op run once first (its graph registered on the PS), timed: the
    # deadline falls a tenth of the way into the work, whatever the host.
    deadline = test_utils.deadline_into(sess, save)
    for name in os.listdir(folder):
      os.remove(os.path.join(folder, name))
    with pytest.raises(tf.errors.DeadlineExceededError):
      sess.run(save, options=deadline)
    # A PS's op ends at its next batch of entries, after the worker's run.
    for _ in range(100):
      if not os.listdir(folder):
        break
      time.sleep(0.1)
    assert os.listdir(folder) == []

    sess.run(save)
    deadline = test_utils.deadline_into(sess, restore)
    sess.run(assign, {ids: [num_ids]})
    with pytest.raises(tf.errors.DeadlineExceededError):
      sess.run(restore, options=deadline)
    # The id assigned after the save is still there (the run below waits
    # for the restore, which holds the table).
    np.testing.assert_array_equal(sess.run(looked_up), [[1] * 16])


def test_save_restore_hook(tmp_path):
  _check_save_restore_hook(tmp_path, "SNAPPY")


def test_save_restore_hook_with_uncompressed_shards(tmp_path):
  _check_save_restore_hook(tmp_path, "")


def _check_save_restore_hook(tmp_path, compression_type):
  model_dir = os.path.join(tmp_path, "hooks" + compression_type)
  basename = os.path.join(model_dir, "model.ckpt")
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)})
  add_op = table.assign_add({"slot0": (_id([0]), _value([[1]]))}).as_op()
  sub_op = table.assign_add({"slot0": (_id([0]), _value([[-1]]))}).as_op()
  lookup = table.lookup({"slot0": _id([0])})["slot0"]
  global_step = tf1.train.get_or_create_global_step()
  step_op = tf1.assign_add(global_step, 1)
  saver = tf1.train.Saver()
  saver_hook = tf1.train.CheckpointSaverHook(
      model_dir,
      save_steps=1000,
      saver=saver,
      listeners=[
          multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
              basename, compression_type=compression_type)
      ])
  restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
      basename)
  with tf1.train.SingularMonitoredSession(hooks=[saver_hook]) as sess:
    sess.run([add_op, step_op])
  # The saver hook saved at the end (step 1); a later update...
  with tf1.train.SingularMonitoredSession() as sess:
    sess.run(sub_op)
    np.testing.assert_array_equal(sess.run(lookup), [[-1]])
    # ...is overridden by restoring.
    restorer.before_restore(sess.raw_session())
    np.testing.assert_array_equal(sess.run(lookup), [[1]])
  with tf.io.gfile.GFile(os.path.join(model_dir, "ckpt.info-1")) as f:
    assert re.search(r'key: "slot0"\s+value: 1', f.read())
  hook = basic_restore_hook.CheckpointRestorerHook(listeners=[restorer])
  with tf1.train.SingularMonitoredSession(hooks=[hook]) as sess:
    np.testing.assert_array_equal(sess.run(lookup), [[1]])


def test_the_restorer_listener_restores_values_only_where_told(tmp_path):
  model_dir = str(tmp_path / "model")
  basename = os.path.join(model_dir, "model.ckpt")
  with tf.Graph().as_default():
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"slot0": _sgd_segments(1), "slot1": _sgd_segments(1)})
    add_op = table.assign_add({
        "slot0": (_id([0]), _value([[3]])),
        "slot1": (_id([0]), _value([[4]]))
    }).as_op()
    step_op = tf1.assign_add(tf1.train.get_or_create_global_step(), 1)
    saver_hook = tf1.train.CheckpointSaverHook(
        model_dir,
        save_steps=1000,
        listeners=[
            multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
                basename)
        ])
    with tf1.train.SingularMonitoredSession(hooks=[saver_hook]) as sess:
      sess.run([add_op, step_op])
  # slot0 trains with adagrad from now on; slot1 keeps SGD.
  with tf.Graph().as_default():
    table = multi_hash_table_ops.MultiHashTable.from_configs({
        "slot0": _adagrad(1, 0.5),
        "slot1": _sgd_segments(1)
    })
    lookup = table.lookup({"slot0": _id([0]), "slot1": _id([0])})
    tf1.train.get_or_create_global_step()
    with pytest.raises(ValueError, match=r"values_only names \['slot2'\]"):
      multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
          basename, values_only=["slot2"])
    # (Both built before a session finalizes the graph.)
    whole = basic_restore_hook.CheckpointRestorerHook(listeners=[
        multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(basename)
    ])
    values_only = basic_restore_hook.CheckpointRestorerHook(listeners=[
        multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
            basename, values_only=["slot0"])
    ])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="expected 'adagrad'"):
      with tf1.train.SingularMonitoredSession(hooks=[whole]):
        pass
    with tf1.train.SingularMonitoredSession(hooks=[values_only]) as sess:
      values = sess.run(lookup)
  np.testing.assert_array_equal(values["slot0"], [[3]])
  np.testing.assert_array_equal(values["slot1"], [[4]])


def test_a_rollback_restores_the_tables_of_the_step_restored(tmp_path):
  # Steps 0..3 saved, the table's value being the step; a session created
  # from step 1 (a rollback) gets step 1's tables too, and checkpoint 1 is
  # not saved over at session creation.
  model_dir = str(tmp_path / "model")
  basename = os.path.join(model_dir, "model.ckpt")

  def graph():
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"slot0": test_utils.generate_test_hash_table_config(1)})
    global_step = tf1.train.get_or_create_global_step()
    train = tf.group(
        table.assign_add({"slot0": (_id([0]), _value([[1]]))}).as_op(),
        tf1.assign_add(global_step, 1))
    saver = tf1.train.Saver(max_to_keep=10)
    hooks = [
        basic_restore_hook.CheckpointRestorerHook(listeners=[
            multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
                basename)
        ]),
        save_utils.NoFirstSaveCheckpointSaverHook(
            model_dir,
            save_steps=1,
            saver=saver,
            listeners=[
                multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
                    basename)
            ])
    ]
    lookup = table.lookup({"slot0": _id([0])})["slot0"]
    return saver, hooks, train, lookup, global_step

  with tf.Graph().as_default():
    saver, hooks, train, _, _ = graph()
    with tf1.train.MonitoredSession(
        session_creator=tf1.train.ChiefSessionCreator(
            scaffold=tf1.train.Scaffold(saver=saver)),
        hooks=hooks) as sess:
      for _ in range(3):
        sess.run(train)
  assert save_utils.latest_checkpoint(model_dir) == basename + "-3"
  index_mtime = os.path.getmtime(basename + "-1.index")
  assets = basename + "-1.assets"
  asset_mtimes = {f: os.path.getmtime(os.path.join(assets, f))
                  for f in os.listdir(assets)}

  with tf.Graph().as_default():
    saver, hooks, _, lookup, global_step = graph()
    with tf1.train.MonitoredSession(
        session_creator=tf1.train.ChiefSessionCreator(
            scaffold=tf1.train.Scaffold(saver=saver),
            checkpoint_filename_with_path=basename + "-1"),
        hooks=hooks) as sess:
      assert sess.run(global_step) == 1
      np.testing.assert_array_equal(sess.run(lookup), [[1]])
  assert os.path.getmtime(basename + "-1.index") == index_mtime
  assert {f: os.path.getmtime(os.path.join(assets, f))
          for f in os.listdir(assets)} == asset_mtimes


def test_a_saver_hook_listed_before_the_restorer_hook_is_refused(tmp_path):
  # Its save at session creation would write the new process's empty
  # tables over the checkpoint the restorer is about to read.
  model_dir = os.path.join(tmp_path, "order")
  basename = os.path.join(model_dir, "model.ckpt")
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)})
  add_op = table.assign_add({"slot0": (_id([0]), _value([[1]]))}).as_op()
  lookup = table.lookup({"slot0": _id([0])})["slot0"]
  step_op = tf1.assign_add(tf1.train.get_or_create_global_step(), 1)
  saver = tf1.train.Saver()

  def hooks(saver_first):
    saver_hook = tf1.train.CheckpointSaverHook(
        model_dir, save_steps=1000, saver=saver,
        listeners=[multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
            basename)])
    restorer_hook = basic_restore_hook.CheckpointRestorerHook([
        multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
            basename)])
    return ([saver_hook, restorer_hook] if saver_first else
            [restorer_hook, saver_hook])

  # Built before the first session finalizes the graph.
  first, wrong_order, last = hooks(False), [hooks(True)], hooks(False)
  with tf1.train.SingularMonitoredSession(hooks=first) as sess:
    sess.run([add_op, step_op])  # saved at step 1 when it closes
  with pytest.raises(RuntimeError, match="MultiHashTableCheckpointSaverListener "
                     "runs before a CheckpointRestorerHook") as raised:
    tf1.train.SingularMonitoredSession(hooks=wrong_order.pop(),
                                       checkpoint_dir=model_dir)
  # The failed session's restorer hook, never run, counts as pending while
  # it lives.
  del raised
  gc.collect()
  with tf1.train.SingularMonitoredSession(hooks=last,
                                          checkpoint_dir=model_dir) as sess:
    np.testing.assert_array_equal(sess.run(lookup), [[1]])


def test_bad_save_arguments_are_refused_when_the_graph_is_built(tmp_path):
  config = {"slot0": test_utils.generate_test_hash_table_config(1)}
  for bad in (0, -2, 100000):
    with pytest.raises(ValueError,
                       match=f"saver_parallel must be -1 .* got {bad}$"):
      multi_hash_table_ops.MultiHashTable.from_configs(
          config, saver_parallel=bad)
  table = multi_hash_table_ops.MultiHashTable.from_configs(config)
  with pytest.raises(ValueError, match='compression_type must be "SNAPPY" or '
                     "\"\" \\(uncompressed\\), got 'GZIP'"):
    table.save(str(tmp_path / "t"), compression_type="GZIP")
  with pytest.raises(ValueError, match="compression_type must be"):
    multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        str(tmp_path / "model.ckpt"), compression_type="gzip")


class _InodesAfterEachRun:
  """A session whose runs note the inode of every file under a folder."""

  def __init__(self, sess, root):
    self._sess = sess
    self.graph = sess.graph
    self._root = root
    self.snapshots = []

  def run(self, *args, **kwargs):
    result = self._sess.run(*args, **kwargs)
    self.snapshots.append({
        os.path.join(d, f): os.stat(os.path.join(d, f)).st_ino
        for d, _, files in os.walk(self._root) for f in files
    })
    return result


def test_saver_listener_writes_each_table_once(tmp_path):
  model_dir = os.path.join(tmp_path, "once")
  basename = os.path.join(model_dir, "model.ckpt")
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)})
  add_op = table.assign_add({"slot0": (_id([0, 1]), _value([[1], [2]]))})
  listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
      basename)
  with tf1.Session() as sess:
    sess.run(table.initializer)
    sess.run(add_op.as_op())
    recorder = _InodesAfterEachRun(sess, model_dir)
    listener.before_save(recorder, 7)
  first = next(s for s in recorder.snapshots if s)
  assert any(".assets" in path for path in first)
  # A file written again (renamed over) has another inode.
  assert recorder.snapshots[-1] == first
  with tf.io.gfile.GFile(os.path.join(model_dir, "ckpt.info-7")) as f:
    assert re.search(r'key: "slot0"\s+value: 2', f.read())


def test_checkpoint_listeners_take_the_tables_of_the_sessions_graph(
    tmp_path):
  # Steps run outside the graph's as_default() block (or in another
  # thread, whose default graph is its own): the listeners read the
  # default graph's tables at run time, found none (or another graph's),
  # and the save ran without its basenames fed.
  basename = os.path.join(tmp_path, "model.ckpt")
  with tf.Graph().as_default() as graph:
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"slot0": test_utils.generate_test_hash_table_config(1)})
    add = table.assign_add({"slot0": (_id([4]), _value([[2]]))}).as_op()
    lookup = table.lookup({"slot0": _id([4])})["slot0"]
    saver = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        basename)
    evictor = multi_hash_table_ops.MultiHashTableRestorerSaverListener(
        basename)
    tf1.train.get_or_create_global_step()
    tf_saver = tf1.train.Saver()
    init = [table.initializer, tf1.global_variables_initializer()]
  # Not `with sess`, which would make the graph the default again.
  sess = tf1.Session(graph=graph)
  try:
    sess.run(init)
    sess.run(add)
    saver.before_save(sess, 3)
    tf_saver.save(sess, basename, global_step=3)
    evictor.after_save(sess, 3)
    sess.run(add)
    restorer.before_restore(sess)
    np.testing.assert_array_equal(sess.run(lookup), [[2]])
  finally:
    sess.close()


class _DeadlineRecorder:
  """A session that notes each run's deadline (0: none)."""

  def __init__(self, sess):
    self._sess = sess
    self.graph = sess.graph
    self.deadlines_ms = []

  def run(self, *args, **kwargs):
    options = kwargs.get("options") or tf1.RunOptions()
    self.deadlines_ms.append(options.timeout_in_ms)
    return self._sess.run(*args, **kwargs)


def test_checkpoint_listeners_take_the_deadline_of_their_runs(tmp_path):
  # An hour by default, as the original; tables that take longer to write
  # (hundreds of GB, a remote file system) need more, or none.
  basename = str(tmp_path / "model.ckpt")
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)})
  # None is no deadline in practice (a year), not the session's own
  # operation_timeout_in_ms, which a run without a deadline would take.
  for kwargs, expected in (({}, 3600 * 1000),
                           ({"timeout_secs": None}, 365 * 24 * 3600 * 1000),
                           ({"timeout_secs": 7200.5}, 7200500)):
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename, **kwargs)
    evictor = multi_hash_table_ops.MultiHashTableRestorerSaverListener(
        basename, **kwargs)
    with tf1.Session() as sess:
      sess.run(table.initializer)
      recorder = _DeadlineRecorder(sess)
      listener.before_save(recorder, 1)
      # The evictions after it too (they took the session's own).
      evictor.after_save(recorder, 1)
    assert recorder.deadlines_ms == [expected, expected], kwargs
  # Past the deadline: what timed out, which argument to raise, what is
  # left running.

  class _TimedOut(_DeadlineRecorder):

    def run(self, *args, **kwargs):
      super().run(*args, **kwargs)
      raise tf.errors.DeadlineExceededError(None, None, "Timed out")

  listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
      basename, timeout_secs=2.5)
  with tf1.Session() as sess:
    sess.run(table.initializer)
    with pytest.raises(
        tf.errors.DeadlineExceededError,
        match=r"saving the MultiHashTables of step 3 to .*model.ckpt-3.assets/ "
        r"failed with DeadlineExceeded; it ran under a deadline of 2.5 s "
        r"\(timeout_secs of MultiHashTableCheckpointSaverListener: raise it, "
        r"or None for none\); the save ops still running were cancelled "
        r"\(each stops within a few thousand entries and deletes its "
        r"temporaries; tables saved before the deadline keep their files\); "
        r"the step's checkpoint is not written: Timed out"):
      listener.before_save(_TimedOut(sess), 3)
  for bad in (0, -1, float("nan"), float("inf"), 1e17, "3600", True):
    for listener_class in (
        multi_hash_table_ops.MultiHashTableCheckpointSaverListener,
        multi_hash_table_ops.MultiHashTableCheckpointRestorerListener,
        multi_hash_table_ops.MultiHashTableRestorerSaverListener):
      with pytest.raises(ValueError, match=r"timeout_secs must be a number of "
                         r"seconds in \(0, 31536000\], or None for no "
                         r"deadline \(a year\); got "):
        listener_class(basename, timeout_secs=bad)


def _ps_tables(num_ps):
  """Tables named and marked as those of PS 0 .. num_ps - 1 (all local)."""
  tables = []
  for i in range(num_ps):
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"slot0": test_utils.generate_test_hash_table_config(1)},
        name_suffix=str(i))
    assert table.set_ps_shard(num_ps, i)
    tables.append(table)
  return tables


def test_a_save_deletes_files_of_ps_beyond_its_count(tmp_path):
  model_dir = os.path.join(tmp_path, "fewer_ps")
  basename = os.path.join(model_dir, "model.ckpt")
  tables = _ps_tables(2)
  listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
      basename)
  asset_dir = model_dir + "/model.ckpt-5.assets/"
  os.makedirs(asset_dir)
  # Left by a save of step 5 with 4 PS tasks, killed before the Saver ran.
  stale = ["MonolithMultiHashTable_2-00000-of-00001",
           "MonolithMultiHashTable_2.meta-00000-of-00001",
           "MonolithMultiHashTable_3.meta-00000-of-00001-tmp-1234abcd"]
  kept = ["MonolithMultiHashTable_x-00000-of-00001", "notes.txt"]
  for name in stale + kept:
    with open(asset_dir + name, "w") as f:
      f.write("old")
  with tf1.Session() as sess:
    sess.run([t.initializer for t in tables])
    listener.before_save(sess, 5)
  names = set(os.listdir(asset_dir))
  assert not names & set(stale)
  assert set(kept) <= names
  assert multi_hash_table_ops.find_ps_checkpoints(
      asset_dir, "MonolithMultiHashTable") == [
          asset_dir + "MonolithMultiHashTable_0",
          asset_dir + "MonolithMultiHashTable_1"]
  with open(asset_dir + "MonolithMultiHashTable.num_ps") as f:
    assert f.read() == "2\n"
  # A recorded checkpoint saved again keeps them until its own save is
  # complete (a kill before would leave it without those PS's ids), then
  # records its count and deletes them.
  real_write = multi_hash_table_ops.save_utils.write_ps_count

  def save_keeping_stale_files_until_the_count():
    # Whether the stale files were still there when the count was written;
    # they are gone after the save.
    for name in stale:
      with open(asset_dir + name, "w") as f:
        f.write("old")
    recorded = []

    def write_after_checking(directory, group, num_ps):
      recorded.append(set(stale) <= set(os.listdir(asset_dir)))
      real_write(directory, group, num_ps)

    with tf1.Session() as sess, mock.patch.object(
        multi_hash_table_ops.save_utils, "write_ps_count",
        write_after_checking):
      sess.run([t.initializer for t in tables])
      listener.before_save(sess, 5)
    assert recorded == [True]
    assert not set(stale) & set(os.listdir(asset_dir))

  tf1.train.update_checkpoint_state(model_dir, basename + "-5")
  save_keeping_stale_files_until_the_count()
  # So does a checkpoint the state no longer lists whose files are there
  # (one keep_checkpoint_every_n_hours kept).
  tf1.train.update_checkpoint_state(
      model_dir, basename + "-9", all_model_checkpoint_paths=[basename + "-9"])
  with open(basename + "-5.index", "w"):
    pass
  save_keeping_stale_files_until_the_count()
  os.remove(basename + "-5.index")
  tf1.train.update_checkpoint_state(model_dir, basename + "-5")
  # Whatever else lies there, restores read the recorded 2 PS ...
  for name in stale:
    with open(asset_dir + name, "w") as f:
      f.write("old")
  assert multi_hash_table_ops.find_ps_checkpoints(
      asset_dir, "MonolithMultiHashTable") == [
          asset_dir + "MonolithMultiHashTable_0",
          asset_dir + "MonolithMultiHashTable_1"]
  # ... and a lost last PS is an error, not a checkpoint of 1 PS.
  for name in os.listdir(asset_dir):
    if name.startswith("MonolithMultiHashTable_1"):
      os.remove(asset_dir + name)
  with pytest.raises(tf.errors.NotFoundError,
                     match=r"not of PS \[1\] \(.*MonolithMultiHashTable"
                     r"\.num_ps says 2 PS tasks saved them\)"):
    multi_hash_table_ops.find_ps_checkpoints(asset_dir,
                                             "MonolithMultiHashTable")
  with open(asset_dir + "MonolithMultiHashTable.num_ps", "w") as f:
    f.write("two")
  with pytest.raises(tf.errors.DataLossError, match="holds b'two'"):
    multi_hash_table_ops.find_ps_checkpoints(asset_dir,
                                             "MonolithMultiHashTable")
  # Without a record (the original's checkpoints), a stray file of a PS
  # index no save writes is named, not taken for 10^12 PS tasks.
  os.remove(asset_dir + "MonolithMultiHashTable.num_ps")
  stray = "MonolithMultiHashTable_999999999999.meta-00000-of-00001"
  with open(asset_dir + stray, "w") as f:
    f.write("old")
  with pytest.raises(tf.errors.DataLossError,
                     match=re.escape(asset_dir + stray) +
                     " names PS task 999999999999"):
    multi_hash_table_ops.find_ps_checkpoints(asset_dir,
                                             "MonolithMultiHashTable")
  os.remove(asset_dir + stray)

  # A save that fails leaves the mark of an unfinished save, not the count
  # of other files: a restore refuses the files (the PS tasks rename their
  # own: some may be new, others old).
  class _FailingSession:
    graph = tf1.get_default_graph()

    def run(self, *args, **kwargs):
      del args, kwargs
      raise tf.errors.UnavailableError(None, None, "PS 1 went away")

  with open(asset_dir + "MonolithMultiHashTable.num_ps", "w") as f:
    f.write("2\n")
  with pytest.raises(tf.errors.UnavailableError):
    listener.before_save(_FailingSession(), 5)
  with pytest.raises(tf.errors.DataLossError,
                     match=r"MonolithMultiHashTable\.num_ps: a save of "
                     r"MonolithMultiHashTable's files into .* began and "
                     r"never recorded its end"):
    multi_hash_table_ops.find_ps_checkpoints(asset_dir,
                                             "MonolithMultiHashTable")


def test_training_lookups_take_each_tables_ids_serving_ones_the_originals_op():
  configs = {name: test_utils.generate_test_hash_table_config(2)
             for name in ("a", "b")}
  lookups = {}
  for mode in ("training", "serving"):
    with tf.Graph().as_default() as graph:
      if mode == "serving":
        with export_context.enter_export_mode(
            export_context.ExportMode.STANDALONE):
          table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
          looked_up = table.lookup({"b": _id([1, 2, 3])})
      else:
        table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
        looked_up = table.lookup({"b": _id([1, 2, 3])})
      assert looked_up["b"].shape.as_list() == [3, 2]
      lookups[mode] = sorted(op.type for op in graph.get_operations()
                             if op.type.startswith("MonolithMultiHashTableLookup"))
  assert lookups == {
      "training": ["MonolithMultiHashTableLookupTables"],
      "serving": ["MonolithMultiHashTableLookup"],
  }


def test_on_gpu_is_the_device_type_not_a_substring():
  config = {"a": test_utils.generate_test_hash_table_config(1)}
  with tf.Graph().as_default():
    for device in ("/job:gpu_ps/replica:0/task:0/device:CPU:0", "",
                   "/job:ps/task:0"):
      with tf.device(device):
        table = multi_hash_table_ops.MultiHashTable.from_configs(
            config, name_suffix=f"on_{len(device)}")
      assert not table.on_gpu, device


def test_gpu_ps_tables_restore_from_the_same_ps_count(tmp_path, monkeypatch):
  # The listeners' logic for gpucuco PS tables, run on CPU tables taken
  # for GPU ones (no GPU here): a plain restore of the PS's own checkpoint.
  monkeypatch.setattr(multi_hash_table_ops.MultiHashTable, "on_gpu",
                      property(lambda self: True))
  model_dir = os.path.join(tmp_path, "gpu_ps")
  basename = os.path.join(model_dir, "model.ckpt")

  def graph_of(num_ps):
    graph = tf.Graph()
    with graph.as_default():
      tables = _ps_tables(num_ps)
      step = tf1.train.get_or_create_global_step()
      writes = [t.assign({"slot0": (_id([i]), _value([[i + 1]]))}).as_op()
                for i, t in enumerate(tables)]
      lookups = [t.lookup({"slot0": _id([0, 1])})["slot0"] for t in tables]
    return graph, tables, step, writes, lookups

  graph, tables, step, writes, _ = graph_of(2)
  with graph.as_default(), tf1.Session() as sess:
    saver_listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    saver = tf1.train.Saver()
    sess.run([t.initializer for t in tables] +
             [tf1.global_variables_initializer()])
    sess.run(writes)
    saver_listener.before_save(sess, 0)
    saver.save(sess, basename, global_step=step)
  graph, tables, _, _, lookups = graph_of(2)
  with graph.as_default(), tf1.Session() as sess:
    multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        basename).before_restore(sess)
    first, second = sess.run(lookups)
  np.testing.assert_array_equal(first, [[1], [0]])
  np.testing.assert_array_equal(second, [[0], [2]])
  graph, tables, _, _, _ = graph_of(3)
  with graph.as_default(), tf1.Session() as sess:
    restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
        basename)
    with pytest.raises(NotImplementedError,
                       match="of 3 PS tasks cannot restore the checkpoint of "
                       "2 PS tasks"):
      restorer.before_restore(sess)


def test_a_table_named_as_a_ps_table_is_refused(tmp_path):
  _ps_tables(2)
  multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)},
      name_suffix="2")
  basename = os.path.join(tmp_path, "model.ckpt")
  for listener in (
      multi_hash_table_ops.MultiHashTableCheckpointSaverListener,
      multi_hash_table_ops.MultiHashTableCheckpointRestorerListener):
    with pytest.raises(ValueError,
                       match="MonolithMultiHashTable_2 is not a PS table"):
      listener(basename)


def test_a_table_of_another_config_is_not_reused():
  server = tf.distribute.Server.create_local_server()
  made = {"a": test_utils.generate_test_hash_table_config(1),
          "b": test_utils.generate_test_hash_table_config(2)}

  def session_of(configs, assign=None, filtered=False, other_dummy=False):
    graph = tf.Graph()
    with graph.as_default():
      hash_filter = hash_filter_ops.create_hash_filter(
          capacity=1000, split_num=7) if filtered else None
      if other_dummy:
        hash_filter = hash_filter_ops.create_dummy_hash_filter(
            name_suffix="_named_otherwise")
      table = multi_hash_table_ops.MultiHashTable.from_configs(
          configs, hash_filter=hash_filter, name_suffix="ps")
      if assign is not None:
        table = table.assign(assign())
      lookup = table.lookup({"a": _id([5])})["a"]
    sess = tf1.Session(server.target, graph=graph)
    return sess, table, lookup

  sess, table, _ = session_of(
      made, lambda: {"a": (_id([5]), _value([[3]])),
                     "b": (_id([5]), _value([[1, 1]]))})
  sess.run(table.initializer)
  sess.run(table.as_op())
  # Another graph of the same config shares the tables (as a PS's are).
  sess, table, lookup = session_of(made)
  sess.run(table.initializer)
  np.testing.assert_array_equal(sess.run(lookup), [[3]])
  # Also with a dummy filter of another name (dummies admit alike).
  sess, table, lookup = session_of(made, other_dummy=True)
  sess.run(table.initializer)
  np.testing.assert_array_equal(sess.run(lookup), [[3]])
  # And from a config that differs only where a live table does not read
  # it again (a rolling update of the workers' binary): the optimizer's
  # learning_rate field (rates come with every update) and the
  # initial_capacity (read when a table is made).
  rerated = {"a": test_utils.generate_test_hash_table_config(1),
             "b": made["b"]}
  rerated["a"].table_config.initial_capacity = 5000
  rerated["a"].table_config.entry_config.segments[0].opt_config.sgd.\
      learning_rate = 0.5
  sess, table, lookup = session_of(rerated)
  sess.run(table.initializer)
  np.testing.assert_array_equal(sess.run(lookup), [[3]])
  # A difference elsewhere is named, not one that may differ.
  sess, table, _ = session_of({
      "a": rerated["a"], "b": test_utils.generate_test_hash_table_config(3)})
  with pytest.raises(tf.errors.FailedPreconditionError,
                     match=r"table b was made from \{.*dim_size: 2"):
    sess.run(table.initializer)
  renamed = {"a": made["a"], "c": made["b"]}
  other_dim = {"a": test_utils.generate_test_hash_table_config(4),
               "b": made["b"]}
  for configs, message in ((renamed, r'it has tables \["a", "b"\], this '
                            r'graph\'s config \["a", "c"\]'),
                           (other_dim, r"table a was made from \{.*dim_size: 1"
                            r".*\}, this graph's config is \{.*dim_size: 4")):
    sess, table, _ = session_of(configs)
    with pytest.raises(tf.errors.FailedPreconditionError,
                       match="exists already .*" + message):
      sess.run(table.initializer)
  # The same config with admission turned on: the table's filter is the
  # dummy one it was made with.
  sess, table, _ = session_of(made, filtered=True)
  with pytest.raises(tf.errors.FailedPreconditionError,
                     match="exists already .*with another hash filter than "
                     r"this graph's filter_handle \(HashFilter\(capacity"):
    sess.run(table.initializer)


def test_a_table_is_built_outside_the_resource_managers_lock():
  """A table's slots are allocated and written when it is created (about
  0.4 s here for this one): that happens before the kernel asks TF's
  ResourceMgr, whose lock every resource lookup of the device takes, so a
  variable read goes on meanwhile (it waited for the whole build before).
  Up to three builds: on a loaded machine the reading thread may not run
  during one."""
  variable = tf1.get_variable("v", initializer=1.0, use_resource=True)
  read = variable.read_value()
  sess = tf1.Session()
  sess.run(variable.initializer)
  sess.run(read)
  builds = []
  for attempt in range(3):
    config = test_utils.generate_test_hash_table_config(1)
    config.table_config.initial_capacity = 1 << 22
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"a": config}, name_suffix=str(attempt))
    reads = []  # (start, end) of each read while the table is built
    built = threading.Event()

    def read_until_built(reads=reads, built=built):
      while not built.is_set():
        start = time.monotonic()
        sess.run(read)
        reads.append((start, time.monotonic()))

    reader = threading.Thread(target=read_until_built)
    reader.start()
    start = time.monotonic()
    try:
      sess.run(table.initializer)
    finally:
      end = time.monotonic()
      built.set()
      reader.join()
    # A read that began once the build was under way and ended well before
    # it ended (a waiting read ends with the build).
    margin = (end - start) / 8
    if any(start + margin <= began and ended <= end - margin
           for began, ended in reads):
      return
    builds.append((end - start, len(reads)))
  pytest.fail(f"no read ran during a build: (seconds, reads) {builds}")


@pytest.mark.parametrize("exported", [True, False])
def test_a_proto_without_serving_takes_it_from_the_tables_config(exported):
  """The original's protos and graphs older than the field: a table made
  in export mode still looks up with the original's op outside it (a
  SavedModel then needs no op of ours), a training table with ours."""
  configs = {"a": test_utils.generate_test_hash_table_config(1)}
  if exported:
    with export_context.enter_export_mode(export_context.ExportMode.STANDALONE):
      table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
  else:
    table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
  proto = table.to_proto()
  proto.ClearField("serving")
  imported = multi_hash_table_ops.MultiHashTable.from_proto(proto)
  graph = tf1.get_default_graph()
  before = {op.name for op in graph.get_operations()}
  imported.lookup({"a": _id([1])})
  added = {op.type for op in graph.get_operations() if op.name not in before}
  assert ("MonolithMultiHashTableLookup" in added) == exported
  assert ("MonolithMultiHashTableLookupTables" in added) == (not exported)


def test_arguments_of_the_wrong_kind_name_what_is_wrong():
  """Mistakes users make, refused naming the argument (they were errors
  from inside TF or Python: AttributeError, ConcatV2's rank, a scalar
  concat, a list with no items())."""
  config = test_utils.generate_test_hash_table_config(1)
  cases = [
      (lambda: multi_hash_table_ops.MultiHashTable.from_configs(
          {"a": config.table_config}), TypeError,
       r"configs\['a'\] must be an entry.HashTableConfigInstance, got "
       r"EmbeddingHashTableConfig \(wrap a table config"),
      (lambda: multi_hash_table_ops.MultiHashTable.from_configs({1: config}),
       TypeError, "table names must be str, got the int 1"),
      (lambda: multi_hash_table_ops.MultiHashTable.from_configs([config]),
       TypeError, "configs must be a dict of table name"),
      (lambda: multi_hash_table_ops.MultiHashTable.from_configs(
          {"a": entry.HashTableConfigInstance(
              config.table_config, [tf.constant([0.1, 0.2])])}), ValueError,
       r"table a: learning_rate_fns\[0\] gives a rate of shape \(2,\), not "
       r"a scalar \(one rate per segment\)"),
      (lambda: multi_hash_table_ops.MultiHashTable.from_configs(
          {"a": config}, hash_filter=[hash_filter_ops.create_hash_filter(
              100, 5)]), TypeError,
       "hash_filter must be one resource handle .*got list"),
      (lambda: multi_hash_table_ops.MultiHashTable.from_cached_config(
          {"a": config}), TypeError,
       r"from_cached_config takes a CachedConfig \(convert_to_cached_config"
       r"\(configs\)\), got the dict; for a dict of configs use "
       r"from_configs"),
      (lambda: multi_hash_table_ops.MultiHashTableStatsHook(
          hash_filters=hash_filter_ops.create_hash_filter(100, 5)),
       TypeError, "hash_filters must be a list of handles"),
  ]
  table = multi_hash_table_ops.MultiHashTable.from_configs({"a": config})
  cases += [
      (lambda: table.lookup({"a": _id([[1], [2]])}), ValueError,
       r"the ids of table a must be 1-D, got shape \(2, 1\) "
       r"\(e.g. tf.reshape\(ids, \[-1\]\)\)"),
      (lambda: table.assign({"a": (_id(1), _value([[1]]))}), ValueError,
       r"the ids of table a must be 1-D, got shape \(\)"),
      (lambda: table.lookup({"a": tf.ragged.constant([[1], [2, 3]],
                                                     dtype=tf.int64)}),
       TypeError, "the ids of table a are a RaggedTensor: pass a 1-D "
       r"tensor of every id \(e.g. its .values\)"),
      (lambda: table.lookup([_id([1])]), TypeError,
       r"expected a dict keyed by table name \(one of \['a'\]\), got list"),
      (lambda: table.lookup_entry([_id([1])]), TypeError,
       "expected a dict keyed by table name"),
      (lambda: table.assign({"a": (_id([1]),)}), TypeError,
       r"table a: expected a pair \(ids, values\), got tuple of 1"),
      (lambda: table.apply_gradients({"a": _id([1])}, global_step=0),
       TypeError, r"table a: expected a pair \(ids, values\)"),
  ]
  for make, error, message in cases:
    with pytest.raises(error, match=message):
      make()


def test_static_shapes_of_lookup_entry_and_evict():
  table = multi_hash_table_ops.MultiHashTable.from_configs({
      "a": test_utils.generate_test_hash_table_config(1),
      "b": test_utils.generate_test_hash_table_config(1)
  })
  entries = table.lookup_entry({
      "a": tf1.placeholder(tf.int64, [5]),
      "b": tf1.placeholder(tf.int64, [None])
  })
  assert entries["a"].shape.as_list() == [5]
  assert entries["b"].shape.as_list() == [None]
  assert table.evict()[1].shape.as_list() == [2]


def test_fused_ops_check_num_of_shards_when_built():
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": test_utils.generate_test_hash_table_config(1)})
  ids = tf1.placeholder(tf.int64, [None])
  with pytest.raises(ValueError, match=r"num_of_shards must be in \[1, "
                     r"65536\], got 70000"):
    table.fused_lookup(ids, tf1.placeholder(tf.int32, [None]), 70000)
  with pytest.raises(ValueError, match="fused_slot_size has 3 elements, not "
                     r"a multiple of num_of_shards \(2\)"):
    table.fused_lookup(ids, tf1.placeholder(tf.int32, [3]), 2)


def test_fused_apply_gradient_takes_no_req_time_and_an_int32_step():
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": test_utils.generate_test_hash_table_config(1)})
  ids = tf.constant([3, 4], tf.int32)  # cast, as lookup does
  sizes = tf.constant([2], tf.int32)
  _, _, id_offsets, embedding_offsets, indices = table.fused_lookup(
      ids, sizes, 1)
  applied = table.fused_apply_gradient(
      ids, indices, sizes, _value([1, 2]), id_offsets, embedding_offsets,
      tf.constant(1, tf.int32), None, 1)
  with tf1.Session() as sess:
    sess.run(table.initializer)
    sess.run(applied.as_op())
    looked_up = sess.run(table.lookup({"a": ids})["a"])
  # generate_test_hash_table_config: sgd at rate 1, zeros initialized.
  np.testing.assert_allclose(looked_up, [[-1], [-2]])


def test_a_deleted_tables_filter_is_deleted_with_it():
  """The table's creation kernel held its call's filter for as long as the
  kernel lived: deleted, the table and its filter could not be made again
  in that session (the filter's kernel handed out the deleted filter, and
  the table's creation failed with NotFound), and the filter's memory
  stayed."""
  hash_filter = hash_filter_ops.create_hash_filter(capacity=1000,
                                                   split_num=7)
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": test_utils.generate_test_hash_table_config(1)},
      hash_filter=hash_filter)
  assign = table.assign({"a": (_id([5]), _value([[3]]))}).as_op()
  lookup = table.lookup({"a": _id([5])})["a"]
  delete = tf.group(
      tf.raw_ops.DestroyResourceOp(resource=table.handle),
      tf.raw_ops.DestroyResourceOp(resource=hash_filter))
  with tf1.Session() as sess:
    for _ in range(2):
      sess.run(table.initializer)
      sess.run(assign)
      np.testing.assert_array_equal(sess.run(lookup), [[3]])
      sess.run(delete)
    # A deleted table's filter is not kept alive: the same ops make both
    # anew, and the new table starts empty.
    sess.run(table.initializer)
    np.testing.assert_array_equal(sess.run(lookup), [[0]])


def test_graphs_creating_one_table_at_once_share_it():
  """Two graphs' creation ops of one table race (each builds one; one is
  kept): both sessions then use the same table."""
  server = tf.distribute.Server.create_local_server()
  config = {"a": test_utils.generate_test_hash_table_config(1)}
  sessions = []
  for _ in range(2):
    graph = tf.Graph()
    with graph.as_default():
      table = multi_hash_table_ops.MultiHashTable.from_configs(
          config, name_suffix="shared")
      assign = table.assign({"a": (_id([7]), _value([[5]]))}).as_op()
      lookup = table.lookup({"a": _id([7])})["a"]
    sessions.append((tf1.Session(server.target, graph=graph), table, assign,
                     lookup))
  errors = []

  def create(sess, table):
    try:
      sess.run(table.initializer)
    except tf.errors.OpError as e:
      errors.append(e)

  creators = [threading.Thread(target=create, args=(sess, table))
              for sess, table, _, _ in sessions]
  for creator in creators:
    creator.start()
  for creator in creators:
    creator.join()
  assert not errors
  sess, _, assign, _ = sessions[0]
  sess.run(assign)
  sess, _, _, lookup = sessions[1]
  np.testing.assert_array_equal(sess.run(lookup), [[5]])


def test_restorer_saver_listener_drops_expired_entries(tmp_path):
  model_dir = os.path.join(tmp_path, "expiry")
  basename = os.path.join(model_dir, "model.ckpt")
  config = test_utils.generate_test_hash_table_config(1)
  config.table_config.slot_expire_time_config.default_expire_time = 1  # day
  table = multi_hash_table_ops.MultiHashTable.from_configs({"slot0": config})
  day = 24 * 3600
  old = table.assign_add({"slot0": (_id([1]), _value([[1]]))},
                         req_time=tf.constant(10, tf.int64)).as_op()
  new = table.assign_add({"slot0": (_id([2]), _value([[2]]))},
                         req_time=tf.constant(10 + 2 * day, tf.int64)).as_op()
  after_the_save = table.assign_add(
      {"slot0": (_id([3]), _value([[3]]))},
      req_time=tf.constant(10 + 2 * day, tf.int64)).as_op()
  lookup = table.lookup({"slot0": _id([1, 2, 3])})["slot0"]
  saver_listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
      basename)
  restorer_saver = multi_hash_table_ops.MultiHashTableRestorerSaverListener(
      basename)
  tf1.train.get_or_create_global_step()
  saver = tf1.train.Saver()
  with tf1.train.SingularMonitoredSession() as sess:
    raw = sess.raw_session()
    sess.run(old)
    sess.run(new)
    saver_listener.before_save(raw, 1)
    saver.save(raw, basename, global_step=1)
    saver_listener.after_save(raw, 1)
    # Another worker's update between the save and the listener.
    sess.run(after_the_save)
    np.testing.assert_array_equal(sess.run(lookup), [[1], [2], [3]])
    restorer_saver.after_save(raw, 1)
    # Id 1 is two days older than the table's latest update: the save
    # skipped it, and the listener dropped it from the table; id 3, which
    # the save did not hold, stays.
    np.testing.assert_array_equal(sess.run(lookup), [[0], [2], [3]])
  late = multi_hash_table_ops.MultiHashTable.from_configs({"slot0": config},
                                                          name_suffix="late")
  with tf1.Session() as sess:
    with pytest.raises(ValueError, match=f"{late.shared_name} was created "
                       "after the restorer-saver listener"):
      restorer_saver.after_save(sess, 2)


def test_a_save_expires_each_table_by_its_own_config(tmp_path):
  basename = os.path.join(tmp_path, "own_expiry", "table")
  expiring = test_utils.generate_test_hash_table_config(1)
  expiring.table_config.slot_expire_time_config.default_expire_time = 1  # day
  # "a" sorts first and sets no expiry; "b" expires entries after a day.
  configs = {"a": test_utils.generate_test_hash_table_config(1),
             "b": expiring}
  day = 24 * 3600
  table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
  writes = []
  for req_time in (10, 10 + 2 * day):
    writes.append(table.assign_add(
        {name: (_id([req_time]), _value([[1]])) for name in configs},
        req_time=tf.constant(req_time, tf.int64)).as_op())
  save = table.save(basename).as_op()
  with tf1.Session() as sess:
    sess.run(table.initializer)
    for write in writes:
      sess.run(write)
    sess.run(save)
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
    restored = table.restore(basename)
    lookup = restored.lookup({name: _id([10, 10 + 2 * day])
                              for name in configs})
    sess.run(table.initializer)
    values = sess.run(lookup)
  np.testing.assert_array_equal(values["a"], [[1], [1]])
  np.testing.assert_array_equal(values["b"], [[0], [1]])


def test_a_table_created_after_the_listeners_is_named(tmp_path):
  basename = os.path.join(tmp_path, "late", "model.ckpt")
  config = test_utils.generate_test_hash_table_config(1)
  multi_hash_table_ops.MultiHashTable.from_configs({"slot0": config})
  saver_listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
      basename)
  late = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": config}, name_suffix="late")
  with tf1.Session() as sess:
    with pytest.raises(ValueError, match=f"MultiHashTable {late.shared_name} "
                       "was created after the saver listener"):
      saver_listener.before_save(sess, 1)
  # A listener built in another graph than the tables' says so too.
  elsewhere = tf.Graph()
  with elsewhere.as_default():
    other = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename + "_other")
  with tf1.Session() as sess:
    with pytest.raises(ValueError, match="or in another graph than the one "
                       "the listener was built in"):
      other.before_save(sess, 1)


def _expiring_config(expire_days_by_slot, evict_every_n_hours=None):
  config = test_utils.generate_test_hash_table_config(1)
  expire = config.table_config.slot_expire_time_config
  expire.default_expire_time = 100
  for slot, days in expire_days_by_slot.items():
    expire.slot_expire_times.add(slot=slot, expire_time=days)
  if evict_every_n_hours is not None:
    config.table_config.enable_feature_eviction = True
    config.table_config.feature_evict_every_n_hours = evict_every_n_hours
  return config


def test_evict_removes_expired_entries_of_each_table():
  day = 24 * 3600
  table = multi_hash_table_ops.MultiHashTable.from_configs({
      "a": _expiring_config({1: 1}),
      "b": _expiring_config({}),
  })
  slot1 = (1 << 48)
  slot2 = (2 << 48)
  old = table.assign_add(
      {
          "a": (_id([slot1 | 1, slot2 | 1]), _value([[1], [1]])),
          "b": (_id([slot1 | 1]), _value([[1]])),
      },
      req_time=tf.constant(day, tf.int64)).as_op()
  new = table.assign_add(
      {
          "a": (_id([slot1 | 2]), _value([[2]])),
          "b": (_id([slot1 | 2]), _value([[2]])),
      },
      req_time=tf.constant(3 * day, tf.int64)).as_op()
  evicted_table, evicted = table.evict()
  lookup = table.lookup({
      "a": _id([slot1 | 1, slot2 | 1, slot1 | 2]),
      "b": _id([slot1 | 1, slot1 | 2])
  })
  with tf1.Session() as sess:
    sess.run(table.initializer)
    sess.run([old])
    sess.run([new])
    # Table "a": slot 1 expires after a day, so its day-1 entry is gone two
    # days later; slot 2 (100 days) stays. Table "b" keeps everything.
    assert sess.run(evicted).tolist() == [1, 0]
    result = sess.run(lookup)
    np.testing.assert_array_equal(result["a"], [[0], [1], [2]])
    np.testing.assert_array_equal(result["b"], [[1], [2]])
    assert sess.run(evicted).tolist() == [0, 0]
    assert isinstance(evicted_table, multi_hash_table_ops.MultiHashTable)


@pytest.mark.parametrize("hours", [-1, 0, 2_000_000])
def test_feature_eviction_config_is_checked(hours):
  # Over 10^6 hours the evictor's clock would overflow.
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": _expiring_config({1: 1}, evict_every_n_hours=hours)},
      name_suffix=f"hours_{hours}")
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="feature_evict_every_n_hours must be > 0"):
      sess.run(table.initializer)


def test_a_table_with_feature_eviction_is_created_and_destroyed():
  # The background evictor starts with the table and stops with it.
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": _expiring_config({1: 1}, evict_every_n_hours=240)})
  lookup = table.lookup({"a": _id([1])})["a"]
  for _ in range(3):
    with tf1.Session() as sess:
      sess.run(table.initializer)
      np.testing.assert_array_equal(sess.run(lookup), [[0]])


def test_restorer_without_checkpoint_or_monitor_keeps_the_tables(
    tmp_path, caplog):
  # Workers that kept training may use them (with a monitor, every table
  # starts empty: partial_recovery_test).
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)})
  restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
      os.path.join(tmp_path, "empty", "model.ckpt"))
  lookup = table.lookup({"slot0": _id([3])})["slot0"]
  assign = table.assign({"slot0": (_id([3]), [[5.0]])}).as_op()
  with tf1.train.SingularMonitoredSession() as sess:
    sess.run(assign)
    np.testing.assert_array_equal(sess.run(lookup), [[5]])
    caplog.clear()
    with caplog.at_level(logging.INFO):
      restorer.before_restore(sess.raw_session())
    assert "hash tables are not restored" in caplog.text
    np.testing.assert_array_equal(sess.run(lookup), [[5]])


def test_restorer_with_a_state_naming_a_lost_checkpoint_fails(tmp_path):
  # tf.train.latest_checkpoint takes this for "no checkpoint": the tables
  # would start empty beside restored variables.
  multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)})
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-9"')
  restorer = multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
      os.path.join(tmp_path, "model.ckpt"))
  with tf1.train.SingularMonitoredSession() as sess:
    with pytest.raises(tf.errors.NotFoundError, match="model.ckpt-9"):
      restorer.before_restore(sess.raw_session())


def test_meta_graph_export():
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)})
  meta_graph = tf1.train.export_meta_graph()
  assert (multi_hash_table_ops._MULTI_HASH_TABLE_GRAPH_KEY
          in meta_graph.collection_def)
  with tf.Graph().as_default():
    tf1.train.import_meta_graph(meta_graph)
    (imported,) = tf1.get_collection(
        multi_hash_table_ops._MULTI_HASH_TABLE_GRAPH_KEY)
    assert imported.table_names == ("slot0",)
    assert imported.shared_name == table.shared_name


def test_an_imported_tables_name_is_taken():
  configs = {"slot0": test_utils.generate_test_hash_table_config(1)}
  with tf.Graph().as_default():
    multi_hash_table_ops.MultiHashTable.from_configs(configs, name_suffix="i")
    meta_graph = tf1.train.export_meta_graph()
  with tf.Graph().as_default():
    tf1.train.import_meta_graph(meta_graph)
    with pytest.raises(ValueError, match="has already been used"):
      multi_hash_table_ops.MultiHashTable.from_configs(configs,
                                                       name_suffix="i")


def test_a_model_imported_twice_into_one_graph_is_refused():
  # TF resources are found by shared name: the second import's tables
  # would be the first's (its restore would replace their entries).
  configs = {"slot0": test_utils.generate_test_hash_table_config(1)}
  with tf.Graph().as_default():
    multi_hash_table_ops.MultiHashTable.from_configs(configs)
    meta_graph = tf1.train.export_meta_graph()
  with tf.Graph().as_default():
    tf1.train.import_meta_graph(meta_graph, import_scope="v1")
    with pytest.raises(ValueError, match="v2/CreateMonolithMultiHashTable "
                       "would share the tables of v1/"):
      tf1.train.import_meta_graph(meta_graph, import_scope="v2")


def test_a_table_needs_a_config():
  with pytest.raises(ValueError, match="configs is empty"):
    multi_hash_table_ops.MultiHashTable.from_configs({})


def test_shared_name_must_be_unique():
  configs = {"slot0": test_utils.generate_test_hash_table_config(1)}
  multi_hash_table_ops.MultiHashTable.from_configs(configs, name_suffix="x")
  with pytest.raises(ValueError, match="has already been used"):
    multi_hash_table_ops.MultiHashTable.from_configs(configs,
                                                     name_suffix="x")


def _gpucuco(config):
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  table_config.CopyFrom(config.table_config)
  entry.GpucucoHashTableConfig().mutate_table(table_config)
  return entry.HashTableConfigInstance(table_config, config.learning_rate_fns)


def test_gpucuco_tables_say_what_they_need():
  config = test_utils.generate_test_hash_table_config(2)
  try:
    multi_hash_table_ops.check_gpu_tables_supported()
  except RuntimeError as e:
    # No CUDA kernels in this build, or no GPU: said when the graph is built.
    with pytest.raises(RuntimeError, match="gpucuco tables need"):
      multi_hash_table_ops.MultiHashTable.from_configs({"a": _gpucuco(config)})
    # The dummy filters of create_hash_filters(..., False) are taken.
    with pytest.raises(RuntimeError, match="gpucuco tables need"):
      multi_hash_table_ops.MultiHashTable.from_configs(
          {"a": _gpucuco(config)},
          hash_filter=hash_filter_ops.create_hash_filters(0, False)[0])
    assert "gpucuco tables need" in str(e)
  typeless = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  typeless.CopyFrom(config.table_config)
  typeless.ClearField("cuckoo")
  typeless = entry.HashTableConfigInstance(typeless, config.learning_rate_fns)
  for cpu in (config, typeless):
    with pytest.raises(ValueError, match="gpucuco tables and CPU tables "
                       "cannot share"):
      multi_hash_table_ops.MultiHashTable.from_configs({
          "a": _gpucuco(config),
          "b": cpu
      })
  # A config without a type is a CPU table too: it was refused beside a
  # cuckoo one as of another type.
  multi_hash_table_ops.MultiHashTable.from_configs({
      "a": config,
      "b": typeless
  })
  # Configs gpucuco tables cannot take fail before the GPU is looked for.
  with pytest.raises(ValueError, match="take no hash filter"):
    multi_hash_table_ops.MultiHashTable.from_configs(
        {"a": _gpucuco(config)},
        hash_filter=hash_filter_ops.create_hash_filter(1000, 5,
                                                       name_suffix="gpu"))
  skip_zero = _gpucuco(config)
  skip_zero.table_config.skip_zero_embedding = True
  with pytest.raises(ValueError,
                     match=r"gpucuco tables \['a'\] set "
                     "skip_zero_embedding: GPU tables keep entries"):
    multi_hash_table_ops.MultiHashTable.from_configs({"a": skip_zero})


def test_uint64_ids_keep_their_bits_however_given():
  # A v1 fid of slot 600 lies past 2^63: as a Python int it was refused,
  # beside smaller ids taken for a float64 array.
  fid = (600 << 54) | 12345
  bits = fid - (1 << 64)
  for ids in ([fid, 5], (fid, 5), np.array([fid, 5], np.uint64),
              tf.constant(np.array([fid, 5], np.uint64))):
    got = tf.get_static_value(multi_hash_table_ops.as_ids(ids, "t"))
    assert got.tolist() == [bits, 5], type(ids)
  nested = multi_hash_table_ops.as_ids([[fid], [5]], "t", flatten=True)
  with tf1.Session() as sess:
    assert sess.run(nested).tolist() == [bits, 5]
  with pytest.raises(ValueError, match="the ids of table t must be int64"):
    multi_hash_table_ops.as_ids([1 << 64], "t")
  with pytest.raises(ValueError, match="the ids of table t must be int64, "
                     "got float64 values"):
    multi_hash_table_ops.as_ids([1.5], "t")


def test_unknown_table_name_is_a_clear_error():
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {"slot0": test_utils.generate_test_hash_table_config(1)})
  with pytest.raises(ValueError, match=r"unknown table names \['nope'\]"):
    table.lookup({"nope": _id([1])})


def test_exporting_builds_serving_entries():
  configs = {"slot0": test_utils.generate_test_hash_table_config(2)}
  with export_context.enter_export_mode(export_context.ExportMode.STANDALONE):
    cc = multi_hash_table_ops.convert_to_cached_config(configs)
  mconfig = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig.FromString(
      cc.mconfig)
  assert (mconfig.configs[0].entry_config.entry_type ==
          embedding_hash_table_pb2.EntryConfig.SERVING)
  assert cc.dims == (2,)


def _saved_table(tmp_path):
  """(basename, configs) of a one-table save in `tmp_path`."""
  basename = str(tmp_path / "table")
  configs = {"a": test_utils.generate_test_hash_table_config(1)}
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
    sess.run(table.initializer)
    sess.run(table.save(basename).as_op())
  return basename, configs


def test_a_standalone_export_takes_paths_of_every_kind(tmp_path):
  # A bytes basename was taken for a tensor: its files were not the
  # SavedModel's assets, which then read them where training wrote them.
  basename, configs = _saved_table(tmp_path)
  for path in (basename, basename.encode(), pathlib.Path(basename)):
    with tf.Graph().as_default() as graph:
      with export_context.enter_export_mode(
          export_context.ExportMode.STANDALONE):
        table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
        table.restore(path)
      assets = [tf.get_static_value(a).item().decode() for a in
                graph.get_collection(tf1.GraphKeys.ASSET_FILEPATHS)]
      assert sorted(os.path.basename(a) for a in assets) == sorted(
          os.listdir(tmp_path)), path
  # Bytes that are not UTF-8 are no path TF's file systems take.
  with pytest.raises(ValueError, match=r"the path b'/x/\\xe9' is not UTF-8"):
    table.restore(b"/x/\xe9")


def test_a_standalone_export_restores_outside_tf_functions(tmp_path):
  # Restored inside a function, a table's files went to the function's
  # asset collection, not the graph's: the SavedModel kept reading them
  # where training wrote them.
  basename, configs = _saved_table(tmp_path)
  with tf.Graph().as_default():
    with export_context.enter_export_mode(export_context.ExportMode.STANDALONE):
      table = multi_hash_table_ops.MultiHashTable.from_configs(configs)

      @tf.function(autograph=False)
      def restore():
        table.restore(basename)

      with pytest.raises(RuntimeError, match="outside any function graph"):
        restore.get_concrete_function()


def test_save_while_another_thread_trains(tmp_path):
  basename = os.path.join(tmp_path, "concurrent", "table")
  with tf.Graph().as_default(), tf1.Session() as sess:
    ids = _id(list(range(2000)))
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"s": test_utils.generate_test_hash_table_config(4)})
    sess.run(table.initializer)
    grad = tf.fill([2000, 4], -1.0)
    train = table.apply_gradients({"s": (ids, grad)},
                                  global_step=tf.constant(0, tf.int64)).as_op()
    sess.run(train)
    save = table.save(basename).as_op()
    stop = threading.Event()
    runs = [0]

    def trainer():
      while not stop.is_set():
        sess.run(train)
        runs[0] += 1

    thread = threading.Thread(target=trainer)
    thread.start()
    # Saves until one had a whole training run inside it (two runs ended
    # while it ran): a save alone in the table would prove nothing.
    overlapped = False
    for _ in range(200):
      before = runs[0]
      sess.run(save)
      if runs[0] - before >= 2:
        overlapped = True
        break
    stop.set()
    thread.join()
    total_runs = runs[0] + 1
  assert overlapped, "no save ran beside a training run"
  with tf.Graph().as_default(), tf1.Session() as sess:
    restored = multi_hash_table_ops.MultiHashTable.from_configs(
        {"s": test_utils.generate_test_hash_table_config(4)})
    sess.run(restored.initializer)
    values = sess.run(
        restored.restore(basename).lookup({"s": _id(list(range(2000)))})["s"])
  # Every entry was saved whole: all its dims were updated together, by
  # whole training runs (sgd, learning rate 1, gradient -1 a run).
  np.testing.assert_array_equal(values, np.repeat(values[:, :1], 4, axis=1))
  assert np.all(values >= 1) and np.all(values <= total_runs)
  np.testing.assert_array_equal(values, np.round(values))


def test_a_restore_is_whole_to_lookups_and_saves_beside_it(tmp_path):
  # Two checkpoints of one table: A holds ids [0, n) at 1, B ids [0, 2n) at
  # 2. Restores alternate between them while other threads look every id up
  # and save: each sees A or B whole, never a table halfway restored.
  n = 40000
  ids = list(range(2 * n))
  basename_a = os.path.join(tmp_path, "a", "table")
  basename_b = os.path.join(tmp_path, "b", "table")
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"s": test_utils.generate_test_hash_table_config(4)})
    sess.run(table.initializer)
    sess.run(
        table.assign({
            "s": (_id(ids[:n]), tf.ones([n, 4]))
        }).save(basename_a).as_op())
    sess.run(
        table.assign({
            "s": (_id(ids), tf.fill([2 * n, 4], 2.0))
        }).save(basename_b).as_op())
    restore_a = table.restore(basename_a).as_op()
    restore_b = table.restore(basename_b).as_op()
    lookup = table.lookup({"s": _id(ids)})["s"][:, 0]
    saved = os.path.join(tmp_path, "saved", "table")
    save = table.save(saved).as_op()
    saved_sizes = table.feature_stat(saved)[1]
    whole_a = np.array([1.0] * n + [0.0] * n)
    whole_b = np.full(2 * n, 2.0)
    stop = threading.Event()
    seen = {"a": 0, "b": 0, "partial": 0}
    sizes = set()
    # Both threads have run once before the restores end (a starved thread
    # would check nothing).
    looked_up, saved_once = threading.Event(), threading.Event()
    # A lookup or save that fails beside a restore ends its thread: the
    # error is the test's.
    errors = []

    def look_up():
      while not stop.is_set():
        values = sess.run(lookup)
        if np.array_equal(values, whole_a):
          seen["a"] += 1
        elif np.array_equal(values, whole_b):
          seen["b"] += 1
        else:
          seen["partial"] += 1
        looked_up.set()

    def save_and_count():
      while not stop.is_set():
        sess.run(save)
        sizes.update(sess.run(saved_sizes).tolist())
        saved_once.set()

    def keeping_errors(run):
      try:
        run()
      except tf.errors.OpError as e:
        errors.append(e)

    threads = [threading.Thread(target=keeping_errors, args=(look_up,)),
               threading.Thread(target=keeping_errors, args=(save_and_count,))]
    for thread in threads:
      thread.start()
    try:
      for i in range(15):
        if i == 14:
          assert looked_up.wait(60) and saved_once.wait(60)
        sess.run(restore_a)
        sess.run(restore_b)
    finally:
      stop.set()
      for thread in threads:
        thread.join()
  assert not errors, errors
  assert seen["partial"] == 0, seen
  assert seen["a"] + seen["b"] > 0
  assert sizes <= {n, 2 * n}, sizes


def test_building_eagerly_is_a_clear_error():
  with context.eager_mode():
    with pytest.raises(RuntimeError, match="builds graph-mode ops"):
      multi_hash_table_ops.MultiHashTable.from_configs(
          {"s": test_utils.generate_test_hash_table_config(1)})


def test_building_inside_a_tf_function_is_a_clear_error():
  # Its tables would be left out of the graph's collections (checkpoints,
  # initializers) and made again at every retrace.
  @tf.function
  def lookup(ids):
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"s": test_utils.generate_test_hash_table_config(1)})
    return table.lookup({"s": ids})["s"]

  with pytest.raises(RuntimeError, match="builds graph-mode ops .* called "
                     r"inside a function graph \(a tf.function"):
    lookup(_id([1]))


def test_building_inside_a_control_flow_v1_branch_is_a_clear_error():
  # Version 1 branches are built in the graph itself (no function graph):
  # the table failed at session creation with another op's error.
  was_v2 = tf1.control_flow_v2_enabled()
  tf1.disable_control_flow_v2()
  try:
    with tf.Graph().as_default():
      def branch():
        table = multi_hash_table_ops.MultiHashTable.from_configs(
            {"s": test_utils.generate_test_hash_table_config(1)})
        return table.lookup({"s": _id([1])})["s"]

      with pytest.raises(RuntimeError, match=r"called inside a control-flow "
                         r"context of the graph \(a tf.cond or "
                         r"tf.while_loop branch of control flow v1"):
        tf1.cond(tf1.placeholder(tf.bool, []), branch,
                 lambda: tf.zeros([1, 1]))
  finally:
    if was_v2:
      tf1.enable_control_flow_v2()


def test_checkpoint_listeners_built_eagerly_are_a_clear_error(tmp_path):
  basename = str(tmp_path / "model.ckpt")
  with context.eager_mode():
    for make in (
        lambda: multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
            basename),
        lambda: multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
            basename),
        lambda: multi_hash_table_ops.MultiHashTableRestorerSaverListener(
            basename),
        lambda: hash_filter_ops.HashFilterCheckpointSaverListener(
            basename, [], True),
        lambda: hash_filter_ops.HashFilterCheckpointRestorerListener(
            basename, [], True)):
      with pytest.raises(RuntimeError, match="called eagerly"):
        make()


def test_a_cached_config_built_eagerly_serves_a_graph():
  with context.eager_mode():
    cc = multi_hash_table_ops.convert_to_cached_config(
        {"s": test_utils.generate_test_hash_table_config(1)})
  table = multi_hash_table_ops.MultiHashTable.from_cached_config(cc)
  lookup = table.lookup({"s": _id([3])})["s"]
  with tf1.Session() as sess:
    sess.run(table.initializer)
    np.testing.assert_array_equal(sess.run(lookup), [[0]])


def test_saves_of_one_table_to_one_basename_do_not_mix(tmp_path):
  # Two threads saving the table to the same basename at once: each save
  # is whole and the checkpoint restores.
  basename = os.path.join(tmp_path, "twice", "table")
  n = 20000
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"s": test_utils.generate_test_hash_table_config(2)}, saver_parallel=4)
    sess.run(table.initializer)
    sess.run(table.assign({"s": (_id(list(range(n))), tf.ones([n, 2]))
                          }).as_op())
    save = table.save(basename).as_op()
    errors = test_utils.run_in_threads(sess, save, runs=8)
    assert not errors, errors
    assert sess.run(table.feature_stat(basename))[1].tolist() == [n]
  with tf.Graph().as_default(), tf1.Session() as sess:
    restored = multi_hash_table_ops.MultiHashTable.from_configs(
        {"s": test_utils.generate_test_hash_table_config(2)})
    sess.run(restored.initializer)
    values = sess.run(
        restored.restore(basename).lookup({"s": _id(list(range(n)))})["s"])
  np.testing.assert_array_equal(values, np.ones([n, 2]))
