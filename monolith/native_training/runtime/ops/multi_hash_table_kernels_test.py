"""Op-level tests of the multi hash table kernels (graph mode)."""

import os
import re
import subprocess
import sys
import textwrap

from google.protobuf import text_format
import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import utils
from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2
from monolith.native_training.runtime.ops import gen_monolith_ops as ops

tf1 = tf.compat.v1


def _table_config(dim, optimizer="sgd { learning_rate: 1.0 }", init="zeros {}"):
  return text_format.Parse(
      f"""entry_config {{ segments {{ dim_size: {dim}
          init_config {{ {init} }} opt_config {{ {optimizer} }} }} }}""",
      embedding_hash_table_pb2.EmbeddingHashTableConfig())


def _mtable(tables, shared_name="mtable"):
  """tables: list of (name, EmbeddingHashTableConfig)."""
  config = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig()
  for name, table in tables:
    config.names.append(name)
    config.configs.append(table)
  return ops.create_monolith_multi_hash_table(
      config=config.SerializeToString(),
      filter_handle=ops.monolith_dummy_hash_filter(shared_name=shared_name +
                                                   "_filter"),
      sync_client_handle=ops.monolith_dummy_sync_client(
          shared_name=shared_name + "_sync"),
      shared_name=shared_name)


@pytest.fixture
def graph():
  # On the CPU also where the op library has GPU kernels and TF sees a GPU
  # (the placer would put the create ops there, which refuse CPU configs).
  with tf.Graph().as_default() as g, g.device("/CPU:0"):
    yield g


def _run(fetches):
  with tf1.Session() as sess:
    return sess.run(fetches)


def test_assign_add_lookup_and_missing_ids(graph):
  h = _mtable([("a", _table_config(2)), ("b", _table_config(3))])
  ids = tf.constant([1, 2, 7], tf.int64)
  split = tf.constant([0, 2, 3], tf.int64)
  values = tf.constant([1, 2, 3, 4, 5, 6, 7], tf.float32)
  h = ops.monolith_multi_hash_table_assign_add(h, ids, split, values, 100)
  h = ops.monolith_multi_hash_table_assign_add(h, ids, split, values, 100)
  emb = ops.monolith_multi_hash_table_lookup(
      h, tf.constant([1, 2, 3, 7, 8], tf.int64),
      tf.constant([0, 3, 5], tf.int64))
  np.testing.assert_array_equal(
      _run(emb), [2, 4, 6, 8, 0, 0, 10, 12, 14, 0, 0, 0])


def test_lookup_of_several_requests_reads_each_requests_ids(graph):
  # The original offset every request after the first by the wrong split.
  h = _mtable([("a", _table_config(1)), ("b", _table_config(1))])
  h = ops.monolith_multi_hash_table_assign(
      h, tf.constant([1, 2, 10, 20], tf.int64),
      tf.constant([0, 2, 4], tf.int64), tf.constant([1., 2., 10., 20.]), 1)
  # Request 0: a=[1], b=[10]; request 1: a=[2, 1], b=[20].
  emb = ops.monolith_multi_hash_table_lookup(
      h, tf.constant([1, 10, 2, 1, 20], tf.int64),
      tf.constant([0, 1, 2, 4, 5], tf.int64))
  np.testing.assert_array_equal(_run(emb), [1, 10, 2, 1, 20])


def test_optimize_of_each_tables_gradients_equals_the_joined_ones(graph):
  # Adagrad (state read and written), repeated ids, an empty table, two
  # learning rates: both ops leave the same entries.
  adagrad = "adagrad { initial_accumulator_value: 0.1 }"
  tables = [("a", _table_config(2, adagrad)), ("b", _table_config(1, adagrad)),
            ("c", _table_config(3, adagrad))]
  ids = tf.constant([5, 5, 6, 9], tf.int64)
  split = tf.constant([0, 3, 3, 4], tf.int64)
  grads = [[1., 2., 3., 4., 0.5, -1.], [], [7., 8., 9.]]
  lr = tf.constant([0.5, 0.25, 0.125])
  joined = _mtable(tables, "joined")
  each = _mtable(tables, "each")
  joined = ops.monolith_multi_hash_table_optimize(
      joined, ids, split, tf.constant(sum(grads, [])), lr, 300, 7)
  each = ops.monolith_multi_hash_table_optimize_tables(
      each, ids, split, [tf.constant(g, tf.float32) for g in grads], lr, 300,
      7)
  fetch = [
      ops.monolith_multi_hash_table_lookup_entry(h, ids, split)
      for h in (joined, each)
  ]
  got_joined, got_each = _run(fetch)
  assert list(got_joined) == list(got_each)
  dump = embedding_hash_table_pb2.EntryDump.FromString(got_each[0])
  assert dump.id == 5 and len(dump.num) == 2 and dump.num[0] != 0


def test_lookup_of_each_tables_ids_equals_the_joined_lookup(graph):
  # Repeated and absent ids, an empty table, a table past the lookup's
  # piece size (16,384 ids) and more ids than the reused output keeps
  # below (65,536 floats), on both paths.
  tables = [("a", _table_config(2)), ("b", _table_config(1)),
            ("c", _table_config(3))]
  h = _mtable(tables, "each_lookup")
  rng = np.random.RandomState(7)
  # a's above 49 and c's 100 are absent.
  per_table = [rng.randint(-50, 60, 40000), np.array([], np.int64),
               np.array([5, 100, 5, 7])]
  stored = np.arange(-50, 50, dtype=np.int64)
  split = [0, 100, 100, 200]
  h = ops.monolith_multi_hash_table_assign(
      h, tf.constant(np.concatenate([stored, stored])),
      tf.constant(split, tf.int64),
      tf.constant(rng.uniform(-1, 1, 100 * 2 + 100 * 3), tf.float32), 5)
  each = ops.monolith_multi_hash_table_lookup_tables(
      h, [tf.constant(i, tf.int64) for i in per_table])
  joined = ops.monolith_multi_hash_table_lookup(
      h, tf.constant(np.concatenate(per_table), tf.int64),
      tf.constant(np.cumsum([0] + [len(i) for i in per_table]), tf.int64))
  with tf1.Session() as sess:
    got_each, got_joined = sess.run([each, joined])
    # Again: the kept output buffers are reused, not written under the
    # results still held.
    again = sess.run(each)
  assert [e.shape for e in got_each] == [(40000, 2), (0, 1), (4, 3)]
  np.testing.assert_array_equal(
      np.concatenate([e.ravel() for e in got_each]), got_joined)
  absent = per_table[0] >= 50
  assert absent.any() and np.all(got_each[0][absent] == 0)
  assert np.all(got_each[0][~absent] != 0)
  assert np.all(got_each[2][1] == 0) and np.all(got_each[2][0] != 0)
  np.testing.assert_array_equal(got_each[2][0], got_each[2][2])
  for first, second in zip(got_each, again):
    np.testing.assert_array_equal(first, second)


def test_lookup_of_each_tables_ids_checks_them(graph):
  h = _mtable([("a", _table_config(2)), ("b", _table_config(1))])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"id has 1 tensors; the table has 2 tables"):
    _run(ops.monolith_multi_hash_table_lookup_tables(
        h, [tf.constant([1], tf.int64)]))
  ids = tf1.placeholder(tf.int64)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"id\[1\] must be a vector, got shape \[1,1\] "
                     r"\(table b\)"):
    with tf1.Session() as sess:
      sess.run(ops.monolith_multi_hash_table_lookup_tables(
          h, [tf.constant([1], tf.int64), ids]), {ids: [[1]]})


def test_optimize_of_each_tables_gradients_names_the_table(graph):
  h = _mtable([("a", _table_config(2)), ("b", _table_config(1))])
  ids = tf.constant([5, 6], tf.int64)
  split = tf.constant([0, 1, 2], tf.int64)
  lr = tf.constant([0.5, 0.5])
  short = ops.monolith_multi_hash_table_optimize_tables(
      h, ids, split, [tf.constant([1., 2.]), tf.constant([1., 2.])], lr, 3, 1)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"value\[1\] \(table b\) has 2 floats; its 1 ids "
                     r"of dim 1 need 1"):
    _run(short)
  one = ops.monolith_multi_hash_table_optimize_tables(
      h, ids, split, [tf.constant([1., 2., 3.])], lr, 3, 1)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"value has 1 tensors; the table has 2 tables"):
    _run(one)


def test_reinitializing_an_unknown_table_is_logged_once_a_minute(graph,
                                                                 capfd):
  # As the original, statuses of -1 and no error: a step that does it
  # must not write a line each time.
  h = _mtable([("a", _table_config(1))], "reinit")
  _, missing = ops.monolith_multi_hash_table_reinitialize(
      h, "nope", tf.constant([5], tf.int64))
  with tf1.Session() as sess:
    for _ in range(3):
      assert sess.run(missing).tolist() == [-1]
  # (None where another test logged it within the minute.)
  err = capfd.readouterr().err
  assert err.count("Reinitialize: table nope does not exist in reinit") <= 1, (
      err)


def test_optimize_reinitialize_and_lookup_entry(graph):
  h = _mtable([("a", _table_config(2, init="ones {}"))])
  ids = tf.constant([5, 5, 6], tf.int64)
  h = ops.monolith_multi_hash_table_optimize(
      h, ids, tf.constant([0, 3], tf.int64),
      tf.constant([1, 1, 2, 2, 0.5, 0.5]), tf.constant([0.5]), 300, 7)
  emb = ops.monolith_multi_hash_table_lookup(h, tf.constant([5, 6], tf.int64),
                                             tf.constant([0, 2], tf.int64))
  entries = ops.monolith_multi_hash_table_lookup_entry(
      h, tf.constant([6, 9], tf.int64), tf.constant([0, 2], tf.int64))
  h2, status = ops.monolith_multi_hash_table_reinitialize(
      h, "a", tf.constant([5, 8], tf.int64))
  _, missing = ops.monolith_multi_hash_table_reinitialize(
      h, "nope", tf.constant([5], tf.int64))
  with tf.control_dependencies([h2]):
    after = ops.monolith_multi_hash_table_lookup(
        h, tf.constant([5], tf.int64), tf.constant([0, 1], tf.int64))
  with tf1.Session() as sess:
    emb_v, entries_v = sess.run([emb, entries])
    status_v, missing_v = sess.run([status, missing])
    after_v = sess.run(after)
  np.testing.assert_allclose(emb_v, [1 - 0.5 * 3, 1 - 0.5 * 3, 0.75, 0.75])
  dump = embedding_hash_table_pb2.EntryDump.FromString(entries_v[0])
  assert dump.id == 6 and list(dump.num) == [0.75, 0.75]
  assert dump.last_update_ts_sec == 300
  assert dump.opt.dump[0].HasField("sgd")
  assert entries_v[1] == b""  # as the original's
  np.testing.assert_array_equal(status_v, [1, 0])
  np.testing.assert_array_equal(missing_v, [-1])
  np.testing.assert_array_equal(after_v, [1, 1])


@pytest.mark.parametrize("split,message", [
    ([0, 1], "id_split has 2 elements, expected 3"),
    ([0, 2, 1], "id_split must start at 0 and end at the number of ids"),
    ([0, 3, 2], "id_split must be non-decreasing"),
])
def test_bad_id_split_is_invalid_argument(graph, split, message):
  h = _mtable([("a", _table_config(1)), ("b", _table_config(1))])
  op = ops.monolith_multi_hash_table_assign(
      h, tf.constant([1, 2], tf.int64), tf.constant(split, tf.int64),
      tf.constant([1., 2.]), 1)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    _run(op)


def test_short_values_and_learning_rates_are_invalid_argument(graph):
  h = _mtable([("a", _table_config(2))])
  ids, split = tf.constant([1], tf.int64), tf.constant([0, 1], tf.int64)
  short = ops.monolith_multi_hash_table_assign(h, ids, split,
                                               tf.constant([1.]), 1)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="value has 1 floats; the ids and table dims need 2"):
    _run(short)
  no_lr = ops.monolith_multi_hash_table_optimize(
      h, ids, split, tf.constant([1., 1.]), tf.constant([], tf.float32), 1, 0)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="learning_rate has 0 floats; the tables' optimizers"):
    _run(no_lr)


def test_bad_config_is_invalid_argument(graph):
  bad = _table_config(0)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="table a: .*dim_size must be positive"):
    _run(_mtable([("a", bad)]))


def test_a_config_without_tables_is_invalid_argument(graph):
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="config has no table; a multi hash table holds at "
                     "least one"):
    _run(_mtable([]))


def test_a_table_name_given_twice_is_invalid_argument(graph):
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'names table "a" twice \(tables 0 and 2\)'):
    _run(_mtable([("a", _table_config(1)), ("b", _table_config(2)),
                  ("a", _table_config(3))]))


def test_an_initial_capacity_past_memory_is_resource_exhausted(graph):
  # 64 tables of 2^34 entries reserve 32 TiB of slots: refused before any
  # is allocated, not the process killed.
  config = _table_config(1)
  config.initial_capacity = 1 << 34
  with pytest.raises(tf.errors.ResourceExhaustedError,
                     match="reserves 35184372088832 bytes of slots, more "
                     "than the .* bytes of memory this process may use"):
    _run(_mtable([(f"t{i}", config) for i in range(64)]))
  # Past the largest initial_capacity: that error, before memory.
  config.initial_capacity = (1 << 34) + 1
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="table b: initial_capacity 17179869185 is above "
                     "17179869184 entries"):
    _run(_mtable([("a", _table_config(1)), ("b", config)],
                 shared_name="too_large"))


def test_every_create_call_checks_the_existing_table(graph):
  # The kernel finds its table once; later calls feed other configs.
  config = tf1.placeholder(tf.string, [])
  handle = ops.create_monolith_multi_hash_table(
      config=config,
      filter_handle=ops.monolith_dummy_hash_filter(shared_name="fed_f"),
      sync_client_handle=ops.monolith_dummy_sync_client(shared_name="fed_s"),
      shared_name="fed")

  def serialized(dim):
    multi = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig()
    multi.names.append("a")
    multi.configs.append(_table_config(dim))
    return multi.SerializeToString()

  with tf1.Session() as sess:
    sess.run(handle, {config: serialized(1)})
    sess.run(handle, {config: serialized(1)})
    with pytest.raises(tf.errors.FailedPreconditionError,
                       match="table a was made from"):
      sess.run(handle, {config: serialized(2)})


def test_names_joined_alike_are_other_tables(graph):
  # ["a, b", "c"] and ["a", "b", "c"] print alike: compared one by one.
  first = _mtable([("a, b", _table_config(1)), ("c", _table_config(1))],
                  shared_name="joined")
  second = _mtable([("a", _table_config(1)), ("b", _table_config(1)),
                    ("c", _table_config(1))],
                   shared_name="joined")
  with tf1.Session() as sess:
    sess.run(first)
    with pytest.raises(tf.errors.FailedPreconditionError,
                       match=r'it has tables \["a, b", "c"\], this graph\'s '
                       r'config \["a", "b", "c"\]'):
      sess.run(second)


def test_read_and_is_initialized(graph):
  h = _mtable([("a", _table_config(1))], shared_name="shared_x")
  read = ops.read_monolith_multi_hash_table(shared_name="shared_x")
  other = ops.read_monolith_multi_hash_table(shared_name="never_created")
  with tf1.Session() as sess:
    assert not sess.run(ops.is_hash_table_initialized(read))
    sess.run(h)
    assert sess.run(ops.is_hash_table_initialized(read))
    assert not sess.run(ops.is_hash_table_initialized(other))
    # A handle of another resource is an error, not "not initialized".
    filter_handle = ops.monolith_dummy_hash_filter(shared_name="shared_x_f")
    sess.run(filter_handle)
    with pytest.raises(tf.errors.InvalidArgumentError, match="wrong type"):
      sess.run(ops.is_hash_table_initialized(filter_handle))


def test_read_needs_a_shared_name(graph):
  # Without one, TF drew a name of the kernel's own: a handle to nothing,
  # which the ops given it failed on with a name the user never chose.
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="shared_name must name the table to read"):
    _run(ops.is_hash_table_initialized(
        ops.read_monolith_multi_hash_table()))


def test_a_handle_of_another_resource_is_named_by_its_input(graph):
  h = _mtable([("a", _table_config(1))], "handles")
  filter_handle = ops.monolith_dummy_hash_filter(shared_name="handles_filter")
  with tf1.Session() as sess:
    sess.run(h)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="(?m)^mtable: .*wrong type"):
      sess.run(ops.monolith_multi_hash_table_lookup(
          filter_handle, tf.constant([1], tf.int64),
          tf.constant([0, 1], tf.int64)))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="(?m)^filter_handle: .*wrong type"):
      sess.run(ops.create_monolith_multi_hash_table(
          config=b"", filter_handle=h,
          sync_client_handle=ops.monolith_dummy_sync_client(
              shared_name="handles_sync"),
          shared_name="handles2"))


def _filled(graph_tables, shared_name):
  h = _mtable(graph_tables, shared_name)
  ids = tf.constant(list(range(100)) + list(range(1000, 1050)), tf.int64)
  split = tf.constant([0, 100, 150], tf.int64)
  values = tf.range(100 * 2 + 50 * 3, dtype=tf.float32)
  return ops.monolith_multi_hash_table_assign(h, ids, split, values, 5)


def test_save_restore_feature_stat(graph, tmp_path):
  basename = str(tmp_path / "ckpt" / "mtable")
  tf.io.gfile.makedirs(str(tmp_path / "ckpt"))
  h = _filled([("a", _table_config(2)), ("b", _table_config(3))], "src")
  save = ops.monolith_multi_hash_table_save(h, basename, nshards=3)
  # The restoring graph has table b and a new table c, not a.
  dst = _mtable([("c", _table_config(1)), ("b", _table_config(3))], "dst")
  restore = ops.monolith_multi_hash_table_restore(dst, basename)
  emb = ops.monolith_multi_hash_table_lookup(
      restore, tf.constant([5, 1000, 1049], tf.int64),
      tf.constant([0, 1, 3], tf.int64))
  features, counts = ops.monolith_multi_hash_table_feature_stat(basename)
  with tf1.Session() as sess:
    sess.run(save)
    emb_v = sess.run(emb)
    features_v, counts_v = sess.run([features, counts])
  files = sorted(os.listdir(tmp_path / "ckpt"))
  assert files == sorted([f"mtable-0000{i}-of-00003" for i in range(3)] +
                         [f"mtable.meta-0000{i}-of-00003" for i in range(3)])
  # c is not in the checkpoint: zeros. b's values start after a's 200.
  np.testing.assert_array_equal(
      emb_v, [0, 200, 201, 202, 200 + 49 * 3, 201 + 49 * 3, 202 + 49 * 3])
  assert dict(zip(features_v.astype(str), counts_v)) == {"a": 100, "b": 50}


def _saved_checkpoint(tmp_path, nshards=2):
  basename = str(tmp_path / "mtable")
  h = _filled([("a", _table_config(2)), ("b", _table_config(3))], "src")
  _run(ops.monolith_multi_hash_table_save(h, basename, nshards=nshards))
  return basename


def _read_meta(path):
  records = tf.data.TFRecordDataset([path]).batch(1 << 10)
  return [
      embedding_hash_table_pb2.MultiHashTableMetadata.FromString(r)
      for r in _run(tf.data.experimental.get_single_element(records))
  ]


def _strip_identity(basename, nshards):
  """Rewrites the meta files as the original writes them: name and count."""
  for s in range(nshards):
    path = f"{basename}.meta-{s:05d}-of-{nshards:05d}"
    metas = _read_meta(path)
    with tf.io.TFRecordWriter(path) as w:
      for meta in metas:
        w.write(
            embedding_hash_table_pb2.MultiHashTableMetadata(
                table_name=meta.table_name,
                num_entries=meta.num_entries).SerializeToString())


def _restore_into_new_table(basename):
  dst = _mtable([("a", _table_config(2)), ("b", _table_config(3))], "dst")
  _run(ops.monolith_multi_hash_table_restore(dst, basename))


def _read_shards_with_tf(basename, nshards, compression_type):
  """EntryDumps of every data shard, read by TF's own TFRecord reader."""
  paths = [f"{basename}-{s:05d}-of-{nshards:05d}" for s in range(nshards)]
  records = tf.data.TFRecordDataset(paths, compression_type=compression_type)
  batch = tf.data.experimental.get_single_element(records.batch(1 << 20))
  return [
      embedding_hash_table_pb2.EntryDump.FromString(r) for r in _run(batch)
  ]


@pytest.mark.parametrize("compression_type", ["SNAPPY", ""])
def test_checkpoints_are_tf_records_in_either_compression(
    graph, tmp_path, compression_type):
  # Dim 70,000: one EntryDump (5 bytes a float) outgrows a 256 KiB block.
  tables = [("a", _table_config(2)), ("big", _table_config(70000))]
  h = _mtable(tables, "src")
  h = ops.monolith_multi_hash_table_assign(
      h, tf.constant([1, 2, 3, 7, 8], tf.int64),
      tf.constant([0, 3, 5], tf.int64),
      tf.concat([tf.range(6, dtype=tf.float32),
                 tf.range(140000, dtype=tf.float32)], 0), 5)
  basename = str(tmp_path / "mtable")
  _run(ops.monolith_multi_hash_table_save(
      h, basename, nshards=2, compression_type=compression_type))
  dumps = _read_shards_with_tf(basename, 2, compression_type)
  by_id = {d.id: list(d.num) for d in dumps}
  assert sorted(by_id) == [1, 2, 3, 7, 8]
  assert by_id[2] == [2, 3]
  assert by_id[8] == list(range(70000, 140000))
  # Restore tells the formats apart on its own.
  dst = _mtable(tables, "dst")
  dst = ops.monolith_multi_hash_table_restore(dst, basename)
  emb = ops.monolith_multi_hash_table_lookup(
      dst, tf.constant([2, 8], tf.int64), tf.constant([0, 1, 2], tf.int64))
  got = _run(emb)
  np.testing.assert_array_equal(got[:2], [2, 3])
  np.testing.assert_array_equal(got[2:], np.arange(70000, 140000))


def test_restore_reads_shards_written_by_tf_record_writer(graph, tmp_path):
  # TF's writer cuts snappy blocks differently from ours; both must read.
  basename = str(tmp_path / "mtable")
  meta = embedding_hash_table_pb2.MultiHashTableMetadata(table_name="a",
                                                         num_entries=3000)
  with tf.io.TFRecordWriter(basename + ".meta-00000-of-00001") as w:
    w.write(meta.SerializeToString())
  records = tf.data.Dataset.from_tensor_slices([
      embedding_hash_table_pb2.EntryDump(
          id=i, num=[i, -i], last_update_ts_sec=7).SerializeToString()
      for i in range(3000)
  ])
  _run(tf.data.experimental.TFRecordWriter(
      basename + "-00000-of-00001", compression_type="SNAPPY").write(records))
  dst = _mtable([("a", _table_config(2))], "dst")
  dst = ops.monolith_multi_hash_table_restore(dst, basename)
  emb = ops.monolith_multi_hash_table_lookup(
      dst, tf.constant([0, 1234, 2999], tf.int64), tf.constant([0, 3], tf.int64))
  np.testing.assert_array_equal(_run(emb), [0, 0, 1234, -1234, 2999, -2999])


def test_save_rejects_an_unknown_compression_type(graph, tmp_path):
  h = _mtable([("a", _table_config(2))])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='compression_type must be "SNAPPY".*got "GZIP"'):
    _run(ops.monolith_multi_hash_table_save(h, str(tmp_path / "m"),
                                            compression_type="GZIP"))


def test_file_system_errors_keep_their_code(graph):
  # A storage layer's error crosses the engine with its code (here TF's
  # Unimplemented for a scheme no file system serves), not as Internal.
  h = _mtable([("a", _table_config(2))])
  with pytest.raises(tf.errors.UnimplementedError, match="nosuchfs"):
    _run(ops.monolith_multi_hash_table_save(h, "nosuchfs://bucket/m"))
  with pytest.raises(tf.errors.UnimplementedError, match="nosuchfs"):
    _run(ops.monolith_multi_hash_table_restore(h, "nosuchfs://bucket/m"))


def test_paths_holding_a_nul_byte_are_invalid_argument(graph, tmp_path):
  """A file system ends a path at a NUL byte: "model\\0.ckpt" was saved
  over the file "model" (and restores read "model")."""
  precious = tmp_path / "model"
  precious.write_bytes(b"precious")
  path = str(precious) + "\0.ckpt"
  h = _mtable([("a", _table_config(2))])
  hash_filter = ops.monolith_hash_filter(capacity=1000, split_num=5,
                                         shared_name="nul_filter")
  for op, name in (
      (ops.monolith_multi_hash_table_save(h, path), "basename"),
      (ops.monolith_multi_hash_table_restore(h, path), "basename"),
      (ops.monolith_multi_hash_table_restore_resharded(
          h, [str(tmp_path / "other"), path], id_modulus=1,
          id_remainder=0), r"basenames\[1\]"),
      (ops.monolith_multi_hash_table_feature_stat(path)[0], "basename"),
      (ops.monolith_write_file_atomically(path, "2\n"), "filename"),
      (ops.monolith_hash_filter_save(hash_filter, path), "basename"),
      (ops.monolith_hash_filter_restore(hash_filter, path), "basename"),
  ):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=name + r" holds a NUL byte at offset \d+ "
                       r"\(after \".*model\"\): not a path"):
      _run(op)
  assert sorted(os.listdir(tmp_path)) == ["model"]
  assert precious.read_bytes() == b"precious"


def test_missing_shard_is_not_found(graph, tmp_path):
  basename = _saved_checkpoint(tmp_path)
  os.remove(basename + "-00001-of-00002")
  with pytest.raises(tf.errors.NotFoundError,
                     match="mtable-00001-of-00002 is missing"):
    _restore_into_new_table(basename)
  with pytest.raises(tf.errors.NotFoundError, match="no multi hash table"):
    _restore_into_new_table(str(tmp_path / "other"))


def test_truncated_shard_is_data_loss(graph, tmp_path):
  basename = _saved_checkpoint(tmp_path)
  path = basename + "-00000-of-00002"
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(tf.errors.DataLossError, match="mtable-00000-of-00002"):
    _restore_into_new_table(basename)


def test_a_restore_failing_part_way_leaves_its_tables_empty(graph, tmp_path):
  # Empty tables are restored without a checking pass. Each shard holds
  # table a's records, then b's: a's restore, b's (sgd) do not fit its new
  # optimizer (adagrad). No table keeps part of the checkpoint.
  basename = _saved_checkpoint(tmp_path)
  dst = _mtable([("a", _table_config(2)),
                 ("b", _table_config(3, optimizer="adagrad {}"))], "dst")
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"Restore into dst failed part-way; tables a, b are "
                     r"left empty \(restore again once the cause is "
                     r"fixed\): .*table b"):
    _run(ops.monolith_multi_hash_table_restore(dst, basename))
  ids = tf.constant(list(range(100)) + list(range(1000, 1050)), tf.int64)
  emb = ops.monolith_multi_hash_table_lookup(
      dst, ids, tf.constant([0, 100, 150], tf.int64))
  np.testing.assert_array_equal(_run(emb), np.zeros(100 * 2 + 50 * 3))


@pytest.mark.parametrize("values_only, message", [
    (["c"], r"values_only names table c, which dst does not hold \(its "
     r"tables: a, b\)"),
    (["a", "a"], "values_only names table a twice"),
])
def test_values_only_must_name_each_table_once(graph, tmp_path, values_only,
                                                message):
  basename = _saved_checkpoint(tmp_path)
  dst = _mtable([("a", _table_config(2)), ("b", _table_config(3))], "dst")
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    _run(ops.monolith_multi_hash_table_restore(dst, basename,
                                                values_only=values_only))
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    _run(ops.monolith_multi_hash_table_restore_resharded(
        dst, [basename], id_modulus=1, id_remainder=0,
        values_only=values_only))


def test_corrupt_shard_is_data_loss(graph, tmp_path):
  basename = _saved_checkpoint(tmp_path)
  path = basename + "-00001-of-00002"
  with open(path, "r+b") as f:
    f.seek(20)
    f.write(b"\xff" * 16)
  with pytest.raises(tf.errors.DataLossError, match="mtable-00001-of-00002"):
    _restore_into_new_table(basename)


# Restores |basename| into a fresh table in a child process and prints the
# error and the child's peak RSS (KiB): a process's own peak cannot go down,
# so each restore gets its own.
_RESTORE_CHILD = """
import resource, sys
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
from monolith.native_training.runtime.ops import multi_hash_table_kernels_test as t
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
  t._restore_into_new_table(sys.argv[1])
  print("restored")
except tf.errors.DataLossError as e:
  print(" ".join(e.message.split()))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start)
"""


@pytest.mark.parametrize(
    "block, message",
    [
        # A block claiming 4 GiB in a file of a few bytes.
        (b"\xff\xff\xff\xf0" + b"\x00" * 8,
         r"snappy block at byte 0 is truncated \(4294967280 bytes claimed, "
         r"8 left in the file\)"),
        # A 5-byte block whose snappy header claims 4 GiB uncompressed.
        (b"\x00\x00\x00\x05" + b"\xff\xff\xff\xff\x0f",
         "snappy block at byte 0 is corrupt"),
    ])
def test_corrupt_snappy_block_lengths_are_data_loss(graph, tmp_path, block,
                                                    message):
  basename = _saved_checkpoint(tmp_path, nshards=1)
  # Without the identity fields (the original's meta files) nothing checks
  # the data file's size first: the reader itself must stop the block.
  _strip_identity(basename, 1)
  with open(basename + "-00000-of-00001", "wb") as f:
    f.write(block)
  child = subprocess.run([sys.executable, "-c", _RESTORE_CHILD, basename],
                         env=utils.python_child_env(),
                         capture_output=True, text=True, check=True)
  error, grown_kib = child.stdout.strip().splitlines()[-2:]
  assert re.search("mtable-00000-of-00001: " + message, error), error
  # Nothing was allocated for the claimed 4 GiB.
  assert int(grown_kib) < 1 << 20


# Restores |basename| into a fresh table on one worker thread (a process's
# first session sizes its pool, hence a child).
_ONE_THREAD_RESTORE_CHILD = """
import sys
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
from monolith.native_training.runtime.ops import multi_hash_table_kernels_test as t
dst = t._mtable([("a", t._table_config(2)), ("b", t._table_config(3))], "dst")
config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1,
                                  inter_op_parallelism_threads=1)
with tf.compat.v1.Session(config=config) as sess:
  try:
    sess.run(t.ops.monolith_multi_hash_table_restore(dst, sys.argv[1]))
  except tf.errors.DataLossError as e:
    print("DataLoss")
"""


def test_a_restore_stops_reading_shards_after_one_failed(graph, tmp_path):
  # It fails anyway: the shards not begun are not read (a large checkpoint's
  # error came only once every other shard was read).
  basename = _saved_checkpoint(tmp_path, nshards=16)
  with open(basename + "-00000-of-00016", "r+b") as f:
    f.seek(20)
    f.write(b"\xff" * 16)
  child = subprocess.run(
      [sys.executable, "-c", _ONE_THREAD_RESTORE_CHILD, basename],
      # The shards' INFO lines logged, whatever the caller's level.
      env=utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="0"),
      capture_output=True, text=True, check=True)
  assert child.stdout.strip().splitlines()[-1] == "DataLoss"
  assert "Restored shard" not in child.stderr, child.stderr


def test_feature_stat_ignores_temporary_files(graph, tmp_path):
  basename = _saved_checkpoint(tmp_path, nshards=1)
  # A leftover temporary file of an interrupted save.
  with open(basename + "-00000-of-00001-tmp-123", "wb") as f:
    f.write(b"partial")
  features, counts = ops.monolith_multi_hash_table_feature_stat(basename)
  features_v, counts_v = _run([features, counts])
  assert dict(zip(features_v.astype(str), counts_v)) == {"a": 100, "b": 50}


def _fused_table(shared_name):
  h = _mtable([("a", _table_config(1)), ("b", _table_config(2))], shared_name)
  return ops.monolith_multi_hash_table_assign(
      h, tf.constant([1, 2, 3, 10, 20], tf.int64),
      tf.constant([0, 3, 5], tf.int64),
      tf.constant([1., 2., 3., 10., 11., 20., 21.]), 1)


def test_fused_lookup_layout_and_values(graph):
  h = _fused_table("fused_lookup")
  # Shard 0: a=[1, 3], b=[20]; shard 1: a=[], b=[10, 99].
  ids = tf.constant([1, 3, 20, 10, 99], tf.int64)
  outputs = ops.monolith_multi_hash_table_fused_lookup(
      h, ids, tf.constant([2, 1, 0, 2], tf.int32), tf.constant(0, tf.int64),
      num_of_shards=2)
  emb, splits, id_offsets, emb_offsets, indices = _run(outputs)
  np.testing.assert_array_equal(emb, [1, 3, 20, 21, 10, 11, 0, 0])
  np.testing.assert_array_equal(splits, [4, 4])
  np.testing.assert_array_equal(id_offsets, [0, 2, 3, 3, 5])
  np.testing.assert_array_equal(emb_offsets, [0, 2, 4, 4, 8])
  np.testing.assert_array_equal(indices, [1, 3, 20, 10, 99])


def test_fused_optimize_with_and_without_grad_accumulation(graph):
  h = _fused_table("fused_opt")
  ids = tf.constant([1, 1, 20, 20], tf.int64)
  sizes = tf.constant([2, 1, 0, 1], tf.int32)
  _, _, id_offsets, emb_offsets, indices = (
      ops.monolith_multi_hash_table_fused_lookup(h, ids, sizes,
                                                 tf.constant(0, tf.int64),
                                                 num_of_shards=2))
  grads = tf.constant([1., 2., 1., 1., 1., 1.])
  update = ops.monolith_multi_hash_table_fused_optimize(
      h, ids, indices, sizes, grads, id_offsets, emb_offsets,
      tf.constant([1., 1.]), tf.constant(5, tf.int64),
      tf.constant(0, tf.int64), num_of_shards=2, enable_grad_accumulation=True)
  with tf.control_dependencies([update]):
    emb = ops.monolith_multi_hash_table_lookup(
        h, tf.constant([1, 20], tf.int64), tf.constant([0, 1, 2], tf.int64))
  # SGD with lr 1: a[1] -= 1 + 2; b[20] -= (1, 1) twice (two shards).
  np.testing.assert_array_equal(_run(emb), [1 - 3, 20 - 2, 21 - 2])


def test_fused_ops_validate_their_inputs(graph):
  h = _fused_table("fused_bad")
  # Refused when the graph is built where the length is known, by the
  # kernel otherwise.
  with pytest.raises(ValueError, match="fused_slot_size has 3 elements, not "
                     r"a multiple of num_of_shards \(2\)"):
    ops.monolith_multi_hash_table_fused_lookup(
        h, tf.constant([1], tf.int64), tf.constant([1, 0, 0], tf.int32),
        tf.constant(0, tf.int64), num_of_shards=2)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="fused_slot_size has 3 elements; expected tables"):
    _run(ops.monolith_multi_hash_table_fused_lookup(
        h, tf.constant([1], tf.int64),
        tf1.placeholder_with_default(tf.constant([1, 0, 0], tf.int32),
                                     [None]),
        tf.constant(0, tf.int64), num_of_shards=2))
  # Table 1 has dim 2: 2^30 of its ids make 2^31 floats.
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"fused_slot_size\[1\] = 1073741824 \(table 1, dim "
                     r"2\) brings the fused embeddings to 2147483648 floats, "
                     r"over 2\^31 - 1; split the batch"):
    _run(ops.monolith_multi_hash_table_fused_lookup(
        h, tf.constant([1], tf.int64), tf.constant([0, 1 << 30], tf.int32),
        tf.constant(0, tf.int64), num_of_shards=1))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="fused_slot_size sums to 2 ids but ids has 1"):
    _run(ops.monolith_multi_hash_table_fused_lookup(
        h, tf.constant([1], tf.int64), tf.constant([1, 1], tf.int32),
        tf.constant(0, tf.int64), num_of_shards=1))
  with pytest.raises(ValueError,
                     match=r"num_of_shards must be in \[1, 65536\], got "
                     "131072"):
    ops.monolith_multi_hash_table_fused_lookup(
        h, tf.constant([], tf.int64), tf.zeros([2 << 17], tf.int32),
        tf.constant(0, tf.int64), num_of_shards=1 << 17)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="grad_offsets does not match fused_slot_size"):
    _run(ops.monolith_multi_hash_table_fused_optimize(
        h, tf.constant([1], tf.int64), tf.constant([1], tf.int64),
        tf.constant([1, 0], tf.int32), tf.constant([1.]),
        tf.constant([0, 1, 1], tf.int32), tf.constant([0, 2, 2], tf.int32),
        tf.constant([1., 1.]), tf.constant(5, tf.int64),
        tf.constant(0, tf.int64), num_of_shards=1))
  # indices must be the fused lookup's: as many as ids (the shape function
  # where shapes are known, the kernel otherwise).
  for indices, error, match in [
      (tf.constant([1, 1], tf.int64), ValueError,
       "indices has 2 elements, ids 1"),
      (tf1.placeholder_with_default(tf.constant([1, 1], tf.int64), [None]),
       tf.errors.InvalidArgumentError, "indices has 2 elements, ids 1")]:
    with pytest.raises(error, match=match):
      _run(ops.monolith_multi_hash_table_fused_optimize(
          h, tf.constant([1], tf.int64), indices,
          tf.constant([1, 0], tf.int32), tf.constant([1.]),
          tf.constant([0, 1, 1], tf.int32), tf.constant([0, 2, 2], tf.int32),
          tf.constant([1., 1.]), tf.constant(5, tf.int64),
          tf.constant(0, tf.int64), num_of_shards=1))


def test_large_batches_run_in_parallel_pieces_correctly(graph):
  # 2 tables x 2 requests of 30,000 ids: above the parallel threshold, and
  # split into several pieces per segment.
  n = 30000
  h = _mtable([("a", _table_config(1)), ("b", _table_config(3))], "large")
  ids_a = np.arange(n, dtype=np.int64)
  ids_b = np.arange(n, dtype=np.int64) + 10**12
  values_a = ids_a.astype(np.float32)
  values_b = np.stack([ids_b % 1000, -(ids_b % 777), ids_b % 13],
                      axis=1).astype(np.float32)
  h = ops.monolith_multi_hash_table_assign(
      h, tf.constant(np.concatenate([ids_a, ids_b])),
      tf.constant([0, n, 2 * n], tf.int64),
      tf.constant(np.concatenate([values_a, values_b.ravel()])), 1)
  # Request 0 reads the ids forwards, request 1 backwards.
  lookup = ops.monolith_multi_hash_table_lookup(
      h, tf.constant(np.concatenate([ids_a, ids_b, ids_a[::-1], ids_b[::-1]])),
      tf.constant([0, n, 2 * n, 3 * n, 4 * n], tf.int64))
  got = _run(lookup)
  expected = np.concatenate([values_a, values_b.ravel(), values_a[::-1],
                             values_b[::-1].ravel()])
  np.testing.assert_array_equal(got, expected)


# --- A checkpoint written from the format spec, not by our writer. --------
# The original saves with TF's RecordWriter: TFRecord framing (u64 length,
# masked CRC32C of it, data, masked CRC32C of the data), and for data shards
# SNAPPY stream compression: blocks of [u32 big-endian length][raw snappy].


def _crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> bytes:
  crc = _crc32c(data)
  masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
  return masked.to_bytes(4, "little")


def _tfrecords(records) -> bytes:
  out = b""
  for data in records:
    length = len(data).to_bytes(8, "little")
    out += length + _masked_crc(length) + data + _masked_crc(data)
  return out


def _snappy_stream(raw: bytes) -> bytes:
  """One snappy block of literals (valid, uncompressed snappy)."""
  n, varint = len(raw), b""
  while True:
    varint += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
    n >>= 7
    if not n:
      break
  block = varint
  for start in range(0, len(raw), 65536):
    chunk = raw[start:start + 65536]
    if len(chunk) <= 60:
      block += bytes([(len(chunk) - 1) << 2]) + chunk
    else:
      block += bytes([61 << 2]) + (len(chunk) - 1).to_bytes(2, "little") + chunk
  return len(block).to_bytes(4, "big") + block


def test_restores_a_checkpoint_written_from_the_format_spec(graph, tmp_path):
  basename = str(tmp_path / "orig")
  entries = []
  for i, table in enumerate(["a", "a", "b"]):
    dump = embedding_hash_table_pb2.EntryDump(
        id=100 + i, num=[i + 0.5, -i - 0.25], last_update_ts_sec=1000 + i)
    dump.opt.dump.add().adagrad.norm.extend([1.0 + i, 2.0 + i])
    entries.append((table, dump))
  data = [d.SerializeToString() for _, d in entries]
  meta = [
      embedding_hash_table_pb2.MultiHashTableMetadata(
          table_name=name, num_entries=count).SerializeToString()
      for name, count in (("a", 2), ("b", 1))
  ]
  with open(basename + "-00000-of-00001", "wb") as f:
    f.write(_snappy_stream(_tfrecords(data)))
  with open(basename + ".meta-00000-of-00001", "wb") as f:
    f.write(_tfrecords(meta))

  adagrad = "adagrad { initial_accumulator_value: 0.1 }"
  h = _mtable([("a", _table_config(2, adagrad)),
               ("b", _table_config(2, adagrad))], "from_spec")
  h = ops.monolith_multi_hash_table_restore(h, basename)
  ids, split = tf.constant([100, 101, 102], tf.int64), tf.constant([0, 2, 3],
                                                                   tf.int64)
  restored = ops.monolith_multi_hash_table_lookup_entry(h, ids, split)
  with tf.control_dependencies([restored]):
    # One more adagrad step continues from the restored accumulators.
    h2 = ops.monolith_multi_hash_table_optimize(
        h, ids, split, tf.ones([6]), tf.constant([1., 1.]), 2000, 1)
  with tf.control_dependencies([h2]):
    after = ops.monolith_multi_hash_table_lookup(h, ids, split)
  with tf1.Session() as sess:
    restored_v = sess.run(restored)
    after_v = sess.run(after)
  for (_, expected), got in zip(entries, restored_v):
    assert embedding_hash_table_pb2.EntryDump.FromString(got) == expected
  expected_after = []
  for _, dump in entries:
    for value, norm in zip(dump.num, dump.opt.dump[0].adagrad.norm):
      expected_after.append(value - 1.0 / np.sqrt(norm + 1.0))
  np.testing.assert_allclose(after_v, expected_after, rtol=1e-6)


def test_save_skips_entries_expired_by_the_attr_config(graph, tmp_path):
  basename = str(tmp_path / "expiring")
  day = 24 * 3600
  h = _mtable([("a", _table_config(1))], "expiring")
  h = ops.monolith_multi_hash_table_assign(
      h, tf.constant([1], tf.int64), tf.constant([0, 1], tf.int64),
      tf.constant([1.]), 10)
  h = ops.monolith_multi_hash_table_assign(
      h, tf.constant([2], tf.int64), tf.constant([0, 1], tf.int64),
      tf.constant([2.]), 10 + 2 * day)
  expire = embedding_hash_table_pb2.SlotExpireTimeConfig(default_expire_time=1)
  save = ops.monolith_multi_hash_table_save(
      h, basename, nshards=1,
      slot_expire_time_config=expire.SerializeToString())
  with tf1.Session() as sess:
    sess.run(save)
    features, counts = sess.run(
        ops.monolith_multi_hash_table_feature_stat(basename))
  # Entry 1 is two days older than the table's latest update: not saved.
  assert dict(zip(features.astype(str), counts)) == {"a": 1}


def test_save_refuses_an_expire_time_for_a_slot_past_15_bits(graph, tmp_path):
  h = _mtable([("a", _table_config(1))], "far_slot")
  expire = embedding_hash_table_pb2.SlotExpireTimeConfig()
  expire.slot_expire_times.add(slot=1 << 15, expire_time=1)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"slot 32768 is out of range \[0, 32768\)"):
    with tf1.Session() as sess:
      sess.run(ops.monolith_multi_hash_table_save(
          h, str(tmp_path / "far_slot"), nshards=1,
          slot_expire_time_config=expire.SerializeToString()))


def _lookup_after_restore(basename, ids, strict=False):
  dst = _mtable([("a", _table_config(2)), ("b", _table_config(3))], "dst")
  # An entry of table a that the checkpoint does not hold.
  dst = ops.monolith_multi_hash_table_assign(
      dst, tf.constant([123456], tf.int64), tf.constant([0, 1, 1], tf.int64),
      tf.constant([9.0, 9.0]), 5)
  restored = ops.monolith_multi_hash_table_restore(dst, basename, strict=strict)
  with tf.control_dependencies([restored.op]):
    return ops.monolith_multi_hash_table_lookup(
        restored, tf.constant(ids, tf.int64),
        tf.constant([0, len(ids), len(ids)], tf.int64))


def test_restore_replaces_the_entries_of_the_tables_it_restores(
    graph, tmp_path):
  basename = _saved_checkpoint(tmp_path)
  emb = _lookup_after_restore(basename, [0, 123456])
  # Id 0 comes from the checkpoint; 123456, assigned before the restore,
  # is gone (a merge kept it).
  np.testing.assert_array_equal(_run(emb), [0, 1, 0, 0])


def _damage_second_shard(basename):
  """Flips a byte in the middle of data shard 1 (its size unchanged)."""
  path = basename + "-00001-of-00002"
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    f.seek(0)
    f.write(data)


@pytest.mark.parametrize("damage", [
    "dim_changed", "optimizer_changed", "damaged_file"])
def test_a_failing_restore_keeps_the_entries_of_tables_that_hold_some(
    graph, tmp_path, damage):
  basename = _saved_checkpoint(tmp_path)
  b_dim = 3
  b_optimizer = "sgd { learning_rate: 1.0 }"
  error, message = tf.errors.InvalidArgumentError, "mtable-0000"
  if damage == "dim_changed":
    # The meta files say so: it fails before reading a record.
    b_dim = 4
    message = (r"mtable holds table b with segment dims \[3\], the table to "
               r"restore has \[4\]: its entries do not fit the table's")
  elif damage == "optimizer_changed":
    # Only the records say so (they hold sgd state).
    b_optimizer = "adagrad {}"
  else:
    _damage_second_shard(basename)
    error = tf.errors.DataLossError
  b_config = _table_config(b_dim, optimizer=b_optimizer)
  dst = _mtable([("a", _table_config(2)), ("b", b_config)], "dst")
  split = tf.constant([0, 1, 2], tf.int64)
  ids = tf.constant([123456, 654321], tf.int64)
  live = ops.monolith_multi_hash_table_assign(
      dst, ids, split, tf.range(2 + b_dim, dtype=tf.float32) + 10, 5)
  restore = ops.monolith_multi_hash_table_restore(dst, basename)
  lookup = ops.monolith_multi_hash_table_lookup(dst, ids, split)
  with tf1.Session() as sess:
    sess.run(live)
    with pytest.raises(error, match=message):
      sess.run(restore)
    # Checked before anything was dropped: the live entries are all there.
    np.testing.assert_array_equal(sess.run(lookup), np.arange(2 + b_dim) + 10)
    # Into the empty tables of a new table the restore fails part-way
    # (nothing to lose, so no checking pass), or up front (dim_changed).
    empty = _mtable([("a", _table_config(2)), ("b", b_config)], "empty")
    with pytest.raises(error, match=message):
      sess.run(ops.monolith_multi_hash_table_restore(empty, basename))


def test_strict_restore_fails_on_tables_the_graph_lacks(graph, tmp_path):
  basename = str(tmp_path / "mtable")
  h = _filled([("a", _table_config(2)), ("renamed", _table_config(3))], "src")
  _run(ops.monolith_multi_hash_table_save(h, basename, nshards=2))
  with pytest.raises(tf.errors.FailedPreconditionError,
                     match="the checkpoint's table renamed \\(50 entries\\) is "
                     "not in the graph"):
    _run(_lookup_after_restore(basename, [0], strict=True))
  # Not strict: a warning; table a is restored, b keeps its entries.
  np.testing.assert_array_equal(_run(_lookup_after_restore(basename, [0])),
                                [0, 1])


def test_save_over_a_checkpoint_with_another_shard_count(graph, tmp_path):
  basename = _saved_checkpoint(tmp_path, nshards=4)
  _saved_checkpoint(tmp_path, nshards=2)
  assert sorted(os.listdir(tmp_path)) == sorted(
      [f"mtable-0000{i}-of-00002" for i in range(2)] +
      [f"mtable.meta-0000{i}-of-00002" for i in range(2)])
  np.testing.assert_array_equal(_run(_lookup_after_restore(basename, [1])),
                                [2, 3])


def test_shards_of_two_saves_are_refused(graph, tmp_path):
  first = _saved_checkpoint(tmp_path / "first")
  second = _saved_checkpoint(tmp_path / "second")
  # Shard 0 copied in from another save: a mix of saves with no temporaries
  # of an interrupted save to complete either.
  for name in ("mtable-00000-of-00002", "mtable.meta-00000-of-00002"):
    with open(os.path.join(os.path.dirname(second), name), "rb") as f:
      data = f.read()
    with open(os.path.join(os.path.dirname(first), name), "wb") as f:
      f.write(data)
  with pytest.raises(tf.errors.DataLossError,
                     match="mixes saves: .*mtable.meta-00001-of-00002 is from "
                     "save"):
    _restore_into_new_table(first)


@pytest.mark.parametrize("nshards", [0, -2, 100000])
def test_save_bounds_nshards(graph, tmp_path, nshards):
  h = _mtable([("a", _table_config(2))])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="nshards must be -1 .* or in \\[1, 99999\\]"):
    _run(ops.monolith_multi_hash_table_save(h, str(tmp_path / "m"),
                                            nshards=nshards))


_UNDER_MEMORY_LIMIT_CHILD = """
import resource
import numpy as np
import tensorflow as tf
tf.compat.v1.disable_eager_execution()
from monolith.native_training.runtime.ops import gen_monolith_ops as ops
from monolith.native_training.runtime.ops import multi_hash_table_kernels_test as t
with tf.Graph().as_default(), tf.device("/CPU:0"):
{graph}
  with tf.compat.v1.Session() as sess:
{setup}
    with open("/proc/self/statm") as f:
      mapped = int(f.read().split()[0]) * resource.getpagesize()
    limit = mapped + ({headroom_mb} << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
{run}
      print("ran")
    except tf.errors.ResourceExhaustedError as e:
      print(" ".join(e.message.split()))
"""


def _run_under_memory_limit(graph: str, setup: str, run: str,
                            headroom_mb: int) -> str:
  """Builds `graph` and runs `setup` (in session `sess`) in a child process,
  then `run` with an address space of what the child has mapped plus
  `headroom_mb`; returns the child's output: "ran", or the
  ResourceExhaustedError's message on one line."""
  script = _UNDER_MEMORY_LIMIT_CHILD.format(
      graph=textwrap.indent(textwrap.dedent(graph), "  "),
      setup=textwrap.indent(textwrap.dedent(setup), "    "),
      run=textwrap.indent(textwrap.dedent(run), "      "),
      headroom_mb=headroom_mb)
  child = subprocess.run([sys.executable, "-c", script],
                         env=utils.python_child_env(),
                         capture_output=True, text=True, timeout=300)
  assert child.returncode == 0, child.stderr[-3000:]
  return child.stdout


def test_a_kernel_out_of_memory_is_resource_exhausted():
  # Not only the tables' growth: a kernel's own vectors, sized by its
  # inputs, failing to allocate end the op, not the process.
  out = _run_under_memory_limit(
      """
      h = t._mtable([("a", t._table_config(1))])
      id_split = tf.compat.v1.placeholder(tf.int64, [None])
      lookup = ops.monolith_multi_hash_table_lookup(
          h, tf.constant([], tf.int64), id_split)
      """, """
      sess.run(lookup, {id_split: [0, 0]})
      # 20 M empty requests: 160 MB fed, whose per-request bookkeeping in
      # the kernel (~1 GB) is past the address space left to the process.
      splits = np.zeros(20_000_001, np.int64)
      """, "sess.run(lookup, {id_split: splits})", headroom_mb=400)
  assert re.search("MonolithMultiHashTableLookup .*: out of memory; give the "
                   "task more memory or send smaller batches", out), out


def test_creating_tables_out_of_memory_is_resource_exhausted():
  # Each table takes ~30 kB before its slots (its shards, its accessor):
  # 20,000 tables ran out of address space outside the slots' guard, and
  # std::bad_alloc ended the process. Which allocation fails is chance (a
  # table's slots are a quarter of it, guarded before): eight creations, of
  # which at least one fails outside the slots.
  out = _run_under_memory_limit(
      """
      config = t._table_config(1)
      tables = [(f"t{i}", config) for i in range(20_000)]
      creations = [t._mtable(tables, f"many{k}") for k in range(8)]
      few = t._mtable([("a", config)], "few")
      """, "sess.run(few)  # the session's threads start before the limit",
      """
      for creation in creations:
        try:
          sess.run(creation)
        except tf.errors.ResourceExhaustedError as e:
          print(" ".join(e.message.split()))
      """, headroom_mb=100)
  lines = out.splitlines()
  assert lines[-1] == "ran" and len(lines) == 9, out
  guarded = [line for line in lines if re.search(
      r"(creating|comparing) many\d( with this call's inputs)?: out of "
      r"memory", line)]
  slots = [line for line in lines if re.search(
      r"table t\d+: initial_capacity 1: its \d+ bytes of slots cannot be "
      r"allocated", line)]
  assert guarded and len(guarded) + len(slots) == 8, out


def test_a_table_that_cannot_grow_is_named_with_its_size():
  # After weeks of training, "a hash table could not grow" told a user
  # neither which table nor how large it had become. The batch lives in
  # variables set before the limit, so that the table's growth (~400 MB for
  # 4 M new ids of dim 16), not a copy of fed arrays, is what runs out.
  out = _run_under_memory_limit(
      """
      h = t._mtable([("a", t._table_config(16)), ("b", t._table_config(1))],
                    "grown")
      ids = tf.compat.v1.get_variable(
          "ids", initializer=tf.range(100_000, 4_100_000, dtype=tf.int64),
          use_resource=True)
      values = tf.compat.v1.get_variable(
          "values", initializer=tf.ones([64_000_000]), use_resource=True)
      n = tf.size(ids, out_type=tf.int64)
      assign = ops.monolith_multi_hash_table_assign(
          h, ids.read_value(), tf.stack([0, n, n]), values.read_value(), 0)
      first = ops.monolith_multi_hash_table_assign(
          h, tf.range(100_000, dtype=tf.int64),
          tf.constant([0, 100_000, 100_000], tf.int64),
          tf.ones([1_600_000]), 0)
      """, """
      sess.run([ids.initializer, values.initializer])
      sess.run(first)
      """, "sess.run(assign)", headroom_mb=100)
  assert re.search(r"table a of grown \(\d+ entries, \d+ bytes\) could not "
                   r"grow: out of memory", out), out


def test_a_table_whose_slots_expire_at_once_is_warned_of(graph, capfd):
  # expire_time left out reads 0 days: every entry of that slot would go at
  # the next save or eviction (as the original).
  config = _table_config(1)
  config.slot_expire_time_config.slot_expire_times.add(slot=3)
  config.slot_expire_time_config.slot_expire_times.add(slot=4, expire_time=2)
  _run(_mtable([("a", config), ("b", _table_config(1))], "expiring"))
  err = capfd.readouterr().err
  assert ("MultiHashTable expiring, table a: slot_expire_time_config: the "
          "expire_time of slot 3 is 0 days (or left out, which reads 0): "
          "every entry they cover expires at the next save or eviction") in err
  assert "table b:" not in err


def test_write_file_atomically(graph, tmp_path):
  path = str(tmp_path / "new_folder" / "g.num_ps")
  contents = tf1.placeholder(tf.string, [])
  write = ops.monolith_write_file_atomically(path, contents)
  with tf1.Session() as sess:
    sess.run(write, {contents: "saving\n"})
    sess.run(write, {contents: "3\n"})
  with open(path) as f:
    assert f.read() == "3\n"
  # No temporary stays beside it.
  assert os.listdir(tmp_path / "new_folder") == ["g.num_ps"]
  with pytest.raises(ValueError, match="contents must be a scalar"):
    ops.monolith_write_file_atomically(path, ["a", "b"])
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="filename is empty"):
    _run(ops.monolith_write_file_atomically("", "x"))
  # A folder that cannot be made (a file stands in its path): the error
  # names the file, and nothing is left.
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(tf.errors.OpError,
                     match="writing .*a_file/sub/g.num_ps"):
    _run(ops.monolith_write_file_atomically(
        str(blocker / "sub" / "g.num_ps"), "1\n"))
  assert sorted(os.listdir(tmp_path)) == ["a_file", "new_folder"]
