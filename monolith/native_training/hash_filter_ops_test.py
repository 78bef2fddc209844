"""Hash filters with tables: admission, intercept_gradient, save and restore."""

import contextlib
import os
import shutil
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import hash_filter_ops
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils
from monolith.native_training import test_utils
from monolith.native_training import utils
from monolith.native_training.model_export import export_context
from monolith.native_training.runtime.ops import gen_monolith_ops
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1
tf1.disable_eager_execution()


@pytest.fixture(autouse=True)
def _fresh_graph():
  with tf.Graph().as_default() as graph:
    yield graph


def _thresholds(default=0, **by_slot) -> bytes:
  config = embedding_hash_table_pb2.SlotOccurrenceThresholdConfig()
  config.default_occurrence_threshold = default
  for slot, threshold in by_slot.items():
    config.slot_occurrence_thresholds.add(slot=int(slot[1:]),
                                          occurrence_threshold=threshold)
  return config.SerializeToString()


def _table(hash_filter, name_suffix=""):
  return multi_hash_table_ops.MultiHashTable.from_configs(
      {"a": test_utils.generate_test_hash_table_config(1)},
      hash_filter=hash_filter,
      name_suffix=name_suffix)


def _ids(values):
  return tf.constant(values, dtype=tf.int64)


def _filter_to_save(capacity, split_num, thresholds, basename, name_suffix):
  """A sliding filter's `_admission_of_1_and_2` and its save to basename."""
  hash_filter = hash_filter_ops.create_hash_filter(
      capacity, split_num, thresholds, name_suffix=name_suffix)
  return (_admission_of_1_and_2(hash_filter),
          hash_filter_ops.save_hash_filter(hash_filter, basename, True))


def _admission_of_1_and_2(hash_filter) -> tf.Tensor:
  """The gradient rows of ids 1 and 2 through the filter: [[1], [1]] where
  both are admitted. Running it counts each once more."""
  embeddings = tf.ones([2, 1])
  out = hash_filter_ops.intercept_gradient(hash_filter, _ids([1, 2]),
                                           embeddings)
  return tf.gradients(tf.reduce_sum(out), embeddings)[0]


def test_sliding_filter_admits_ids_once_seen_often_enough():
  hash_filter = hash_filter_ops.create_hash_filter(1000, 5,
                                                   _thresholds(default=2))
  table = _table(hash_filter)
  ids = tf1.placeholder(tf.int64, [None])
  grads = -tf.ones_like(tf.cast(ids, tf.float32))[:, None]
  train = table.apply_gradients({
      "a": (ids, grads)
  }, global_step=tf.constant(0, tf.int64)).as_op()
  assign = table.assign({"a": (ids, tf.ones_like(grads) * 5)}).as_op()
  lookup = table.lookup({"a": _ids([1, 2, 3])})["a"][:, 0]
  with tf1.Session() as sess:
    sess.run(table.initializer)
    # The count before an update decides (the original's rule): id 1, seen
    # once per update, is created on its third update.
    sess.run(train, {ids: [1]})
    sess.run(train, {ids: [1]})
    np.testing.assert_array_equal(sess.run(lookup), [0, 0, 0])
    sess.run(train, {ids: [1]})
    np.testing.assert_array_equal(sess.run(lookup), [1, 0, 0])
    # Every occurrence counts: id 2, seen twice, is created by its next
    # occurrence, and gets both gradients of that update.
    sess.run(train, {ids: [2, 2]})
    np.testing.assert_array_equal(sess.run(lookup), [1, 0, 0])
    sess.run(train, {ids: [2, 2, 1]})
    np.testing.assert_array_equal(sess.run(lookup), [2, 2, 0])
    # assign goes through the filter too.
    sess.run(assign, {ids: [3]})
    sess.run(assign, {ids: [3]})
    np.testing.assert_array_equal(sess.run(lookup), [2, 2, 0])
    sess.run(assign, {ids: [3, 1]})
    np.testing.assert_array_equal(sess.run(lookup), [5, 2, 5])


def test_thresholds_per_slot_and_the_dummy_filter():
  slot1, slot2 = 1 << 48, 2 << 48
  hash_filter = hash_filter_ops.create_hash_filter(
      1000, 5, _thresholds(default=0, s2=1))
  table = _table(hash_filter)
  dummy_table = _table(hash_filter_ops.create_dummy_hash_filter("x"), "x")
  ids = _ids([slot1 | 1, slot2 | 1])
  values = tf.ones([2, 1])
  assign = table.assign({"a": (ids, values)}).as_op()
  dummy_assign = dummy_table.assign({"a": (ids, values)}).as_op()
  lookup = table.lookup({"a": ids})["a"][:, 0]
  dummy_lookup = dummy_table.lookup({"a": ids})["a"][:, 0]
  with tf1.Session() as sess:
    sess.run([table.initializer, dummy_table.initializer])
    sess.run([assign, dummy_assign])
    # Slot 1 has no threshold; slot 2 needs one earlier sighting.
    np.testing.assert_array_equal(sess.run(lookup), [1, 0])
    np.testing.assert_array_equal(sess.run(dummy_lookup), [1, 1])
    sess.run(assign)
    np.testing.assert_array_equal(sess.run(lookup), [1, 1])


def test_threshold_above_15_is_a_clear_error():
  hash_filter = hash_filter_ops.create_hash_filter(1000, 5,
                                                   _thresholds(s7=16))
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"MonolithHashFilter.*16.*15"):
      sess.run(hash_filter)


def test_bad_filter_arguments():
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.InvalidArgumentError, match="capacity"):
      sess.run(hash_filter_ops.create_hash_filter(0, 5, name_suffix="c"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="split_num"):
      sess.run(hash_filter_ops.create_hash_filter(1000, 1, name_suffix="s"))
    # About 42 TB of cells: refused, not an out-of-memory kill.
    with pytest.raises(tf.errors.ResourceExhaustedError,
                       match=r"capacity 17592186044416 in 65536 splits needs "
                       r"\d+ bytes, more than the \d+ bytes of memory"):
      sess.run(hash_filter_ops.create_hash_filter(2**44, 65536,
                                                  name_suffix="huge"))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="SlotOccurrenceThresholdConfig"):
      sess.run(hash_filter_ops.create_hash_filter(1000, 5, b"\xff\xff",
                                                  name_suffix="b"))
  with pytest.raises(ValueError, match="filter_type"):
    hash_filter_ops.create_hash_filters(0, True, filter_type="bloom")


def test_switches_must_be_bools(tmp_path):
  # A config's "False" string is refused, not taken as on (or as off, as
  # the original's `is True` did).
  with pytest.raises(TypeError,
                     match="enable_hash_filter must be a bool, got str 'False'"):
    hash_filter_ops.create_hash_filters(0, "False")
  dummy = hash_filter_ops.create_dummy_hash_filter("switch")
  basename = os.path.join(str(tmp_path), "hash_filter_0")
  with pytest.raises(TypeError, match="enable_hash_filter .* int 1"):
    hash_filter_ops.save_hash_filter(dummy, basename, 1)
  with pytest.raises(TypeError, match="enable_hash_filter"):
    hash_filter_ops.restore_hash_filter(dummy, basename, None)
  for listener in (hash_filter_ops.HashFilterCheckpointSaverListener,
                   hash_filter_ops.HashFilterCheckpointRestorerListener):
    # Each switch is checked, whatever the other says.
    with pytest.raises(TypeError, match="enable_save_restore .* str"):
      listener(basename, [dummy], False, enable_save_restore="yes")
    with pytest.raises(ValueError, match="timeout_secs must be a number of "
                       r"seconds in \(0, 31536000\], or None"):
      listener(basename, [dummy], False, timeout_secs=0)
  # numpy's bools are bools.
  (f,) = hash_filter_ops.create_hash_filters(0, np.bool_(True))
  assert f.op.type != "MonolithDummyHashFilter"


def test_probabilistic_filter_admits_about_count_over_threshold():
  hash_filter = hash_filter_ops.create_probabilistic_filter(
      False, _thresholds(default=4))
  table = _table(hash_filter)
  n = 20000
  ids = _ids(np.arange(n))
  assign = table.assign({"a": (ids, tf.ones([n, 1]))}).as_op()
  admitted = tf.reduce_sum(table.lookup({"a": ids})["a"])
  with tf1.Session() as sess:
    sess.run(table.initializer)
    sess.run(assign)
    assert abs(sess.run(admitted) / n - 0.25) < 0.02


def test_intercept_gradient_zeroes_filtered_rows():
  hash_filter = hash_filter_ops.create_hash_filter(1000, 5,
                                                   _thresholds(default=1))
  ids = _ids([5, 6])
  embeddings = tf.constant([[1.0, 2.0], [3.0, 4.0]])
  out = hash_filter_ops.intercept_gradient(hash_filter, ids, embeddings)
  grad = tf.gradients(tf.reduce_sum(out * 3.0), embeddings)[0]
  with tf1.Session() as sess:
    np.testing.assert_array_equal(sess.run(out), [[1, 2], [3, 4]])
    # First pass: both ids counted once, below threshold 1 before it.
    np.testing.assert_array_equal(sess.run(grad), [[0, 0], [0, 0]])
    np.testing.assert_array_equal(sess.run(grad), [[3, 3], [3, 3]])


def test_intercept_gradient_takes_rows_of_flattened_ids():
  # [B, L, dim] embeddings of B * L ids, as the original read them; the
  # gradient keeps the embeddings' shape.
  hash_filter = hash_filter_ops.create_hash_filter(1000, 5,
                                                   _thresholds(default=1))
  embeddings = tf.constant([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0],
                                                        [7.0, 8.0]]])
  out = hash_filter_ops.intercept_gradient(hash_filter, _ids([5, 6, 7, 8]),
                                           embeddings)
  grad = tf.gradients(tf.reduce_sum(out * 3.0), embeddings)[0]
  assert grad.op.op_def.output_arg[0].name == "filted_grad"  # the original's
  with tf1.Session() as sess:
    np.testing.assert_array_equal(sess.run(grad), np.zeros([2, 2, 2]))
    np.testing.assert_array_equal(sess.run(grad), np.full([2, 2, 2], 3.0))
  # Floats that do not split evenly over the ids: named.
  bad = hash_filter_ops.intercept_gradient(hash_filter, _ids([5, 6, 7]),
                                           embeddings)
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="embeddings must hold as many floats for each "
                       r"of the 3 ids, got shape \[2,2,2\]"):
      sess.run(bad)


def test_the_originals_op_module_aliases():
  assert hash_filter_ops.filter_ops is gen_monolith_ops
  assert hash_filter_ops.filter_save_op is gen_monolith_ops
  assert hash_filter_ops.filter_restore_op is gen_monolith_ops


def test_create_hash_filters_places_one_per_ps():
  filters = hash_filter_ops.create_hash_filters(2, True, _thresholds(1),
                                                filter_capacity=1000,
                                                filter_split_num=5)
  assert [f.device for f in filters] == [
      utils.ps_device(0), utils.ps_device(1)
  ]
  assert filters[1].op.get_attr("shared_name") == b"MonolithHashFilter_1"
  local = hash_filter_ops.create_hash_filters(0, False)
  assert local[0].op.type == "MonolithDummyHashFilter"


def _intercepted_grads(filters):
  """Gradients through intercept_gradient of ids 1, 2 (PS 0) and 4 (PS 1)."""
  grads = []
  for hash_filter, ids in zip(filters, ([1, 2], [4])):
    embeddings = tf.ones([len(ids), 1])
    out = hash_filter_ops.intercept_gradient(hash_filter, _ids(ids),
                                             embeddings)
    grads.append(tf.gradients(tf.reduce_sum(out), embeddings)[0])
  return grads


@contextlib.contextmanager
def _restoring(basename, num_ps, thresholds, **restorer_kwargs):
  """A fresh cluster of num_ps PS and a graph with their filters and a
  restorer listener of `basename`: yields (session, filters, restorer)."""
  servers, config = test_utils.create_test_ps_cluster(num_ps)
  with tf.Graph().as_default():
    filters = hash_filter_ops.create_hash_filters(num_ps, True, thresholds,
                                                  filter_capacity=1000,
                                                  filter_split_num=5)
    restorer = hash_filter_ops.HashFilterCheckpointRestorerListener(
        basename, filters, enable_hash_filter=True, **restorer_kwargs)
    with tf1.Session(servers[0].target, config=config) as sess:
      yield sess, filters, restorer


def test_filters_save_and_restore_with_the_checkpoint(tmp_path, monkeypatch):
  model_dir = str(tmp_path)
  basename = os.path.join(model_dir, "model.ckpt")
  servers, config = test_utils.create_test_ps_cluster(2)
  thresholds = _thresholds(default=2)
  with tf.Graph().as_default():
    filters = hash_filter_ops.create_hash_filters(2, True, thresholds,
                                                  filter_capacity=1000,
                                                  filter_split_num=5)
    # Ids 1 and 2 counted twice on PS 0's filter, 4 once on PS 1's (each
    # backward pass of intercept_gradient counts its ids).
    grads = _intercepted_grads(filters)
    listener = hash_filter_ops.HashFilterCheckpointSaverListener(
        basename, filters, enable_hash_filter=True)
    tf1.train.get_or_create_global_step()
    saver = tf1.train.Saver()
    with tf1.Session(servers[0].target, config=config) as sess:
      sess.run(tf1.global_variables_initializer())
      sess.run(grads)
      sess.run(grads[0])
      # Filters of PS 2 and 3 from an earlier save of step 7 with 4 PS:
      # restores would count 4 saved filters.
      os.makedirs(basename + "-7.assets")
      for stale in ("hash_filter_2-00000-of-00005",
                    "hash_filter_3-00004-of-00005-tmp-1"):
        with open(os.path.join(basename + "-7.assets", stale), "w") as f:
          f.write("stale")
      listener.before_save(sess, 7)
      saver.save(sess, basename, global_step=7)
  assets = sorted(os.listdir(basename + "-7.assets"))
  assert assets == ["hash_filter.num_ps"] + [
      f"hash_filter_{i}-{k:05d}-of-00005" for i in range(2) for k in range(5)
  ]
  with open(os.path.join(basename + "-7.assets", "hash_filter.num_ps")) as f:
    assert f.read() == "2\n"

  # A fresh cluster and graph: the restored counts decide. PS 0's ids were
  # seen twice (the threshold), PS 1's id once.
  with _restoring(basename, 2, thresholds) as (sess, filters, restorer):
    grads = _intercepted_grads(filters)
    restorer.before_restore(sess)
    admitted = sess.run(grads)
    np.testing.assert_array_equal(admitted[0], [[1], [1]])
    np.testing.assert_array_equal(admitted[1], [[0]])

  # A storage error reading the asset folder (TF's isdir reads any error
  # as False) fails the restore: the legacy layout beside the checkpoint
  # would hold no filter files, and every filter would be emptied.
  asset_dir = basename + "-7.assets/"
  real_stat = tf.io.gfile.stat

  def unavailable_stat(path):
    if path == asset_dir:
      raise tf.errors.UnavailableError(None, None, "storage unavailable")
    return real_stat(path)

  with monkeypatch.context() as patched:
    patched.setattr(tf.io.gfile, "stat", unavailable_stat)
    patched.setattr(tf.io.gfile, "isdir",
                    lambda path: path != asset_dir and os.path.isdir(path))
    with _restoring(basename, 2, thresholds) as (sess, filters, restorer):
      with pytest.raises(tf.errors.UnavailableError):
        restorer.before_restore(sess)

  # With a monitor that reports only PS 1 restarted, PS 0's filter keeps
  # what it counted since (nothing: ids 1 and 2 are not admitted).
  class _OnlyPs1Restarted:

    def uninitialized_ps_tasks(self, sess):
      return {1}

    def needs_restore(self, device, uninitialized):
      return utils.ps_task_of_device(device) in uninitialized

  with _restoring(basename, 2, thresholds,
                  ps_monitor=_OnlyPs1Restarted()) as (sess, filters, restorer):
    grads = _intercepted_grads(filters)
    restorer.before_restore(sess)
    # Restored, ids 1 and 2 would be admitted at once.
    np.testing.assert_array_equal(sess.run(grads[0]), [[0], [0]])
    # PS 1's id 4: counted once before the save, twice now (a fresh filter
    # would not admit it yet).
    sess.run(grads[1])
    np.testing.assert_array_equal(sess.run(grads[1]), [[1]])

  # Into 1 PS: not restored (counts are per id mod the PS count), with a
  # warning; ids 1 and 2 start over, also on a task that kept running and
  # counted them (twice: the next would admit them).
  with _restoring(basename, 1, thresholds) as (sess, filters, restorer):
    grad = _admission_of_1_and_2(filters[0])
    sess.run(grad)
    sess.run(grad)
    with mock.patch.object(hash_filter_ops.logging, "warning") as warning:
      restorer.before_restore(sess)
    np.testing.assert_array_equal(sess.run(grad), [[0], [0]])
    assert "saved by 2 PS tasks; this job has 1" in (
        warning.call_args[0][0] % warning.call_args[0][1:])

  # The original's legacy layout, "<checkpoint prefix>hash_filter_<i>"
  # beside the checkpoint (no asset directory), restores the same.
  legacy_dir = tmp_path / "legacy"
  legacy_dir.mkdir()
  for name in os.listdir(model_dir):
    if name.startswith("model.ckpt-7."):
      if os.path.isfile(os.path.join(model_dir, name)):
        shutil.copy(os.path.join(model_dir, name), legacy_dir / name)
  for name in os.listdir(basename + "-7.assets"):
    if name.startswith("hash_filter_"):
      shutil.copy(os.path.join(basename + "-7.assets", name),
                  legacy_dir / ("model.ckpt-7" + name))
  (legacy_dir / "checkpoint").write_text(
      'model_checkpoint_path: "model.ckpt-7"\n')
  with _restoring(str(legacy_dir / "model.ckpt"), 2,
                  thresholds) as (sess, filters, restorer):
    grads = _intercepted_grads(filters)
    restorer.before_restore(sess)
    admitted = sess.run(grads)
    np.testing.assert_array_equal(admitted[0], [[1], [1]])
    np.testing.assert_array_equal(admitted[1], [[0]])

  # PS 1's files lost (a partial copy): the recorded count says 2 PS saved,
  # so the restore fails naming them, not skipping every filter as if 1 PS
  # had saved. Then every filter file lost: the record still says 2 PS
  # saved counting filters (not a save without them, which records
  # nothing).
  asset_dir = basename + "-7.assets"
  # (With every file lost, either PS's restore may fail first.)
  for lost, named in (("hash_filter_1-", "hash_filter_1"),
                      ("hash_filter_", "hash_filter_[01]")):
    for name in os.listdir(asset_dir):
      if name.startswith(lost):
        os.remove(os.path.join(asset_dir, name))
    with _restoring(basename, 2, thresholds) as (sess, filters, restorer):
      with pytest.raises(tf.errors.NotFoundError, match=named):
        restorer.before_restore(sess)


@pytest.mark.parametrize("saved_with",
                         ["admission_off", "dummy_filters", "old_record"])
def test_admission_turned_on_at_a_restart_starts_the_counts_over(
    tmp_path, saved_with):
  # A checkpoint saved with admission off (no filter listener's files) or
  # with stateless filters (their saves write no file, nor a PS count
  # record): restoring counting filters from it failed with NotFound, every
  # retry alike, so admission could not be turned on for a model.
  basename = os.path.join(str(tmp_path), "model.ckpt")
  servers, config = test_utils.create_test_ps_cluster(2)
  with tf.Graph().as_default():
    filters = hash_filter_ops.create_hash_filters(2, False)  # dummies
    listener = hash_filter_ops.HashFilterCheckpointSaverListener(
        basename, filters, enable_hash_filter=saved_with == "dummy_filters")
    tf1.train.get_or_create_global_step()
    saver = tf1.train.Saver()
    with tf1.Session(servers[0].target, config=config) as sess:
      sess.run(tf1.global_variables_initializer())
      listener.before_save(sess, 3)
      saver.save(sess, basename, global_step=3)
  assets = basename + "-3.assets"
  assert not [
      n for n in (os.listdir(assets) if os.path.isdir(assets) else [])
      if n.startswith("hash_filter")
  ]
  if saved_with == "old_record":
    # Builds of 2026-12-03 to 2026-12-06 recorded a PS count for stateless
    # filters: the restore failed naming files that were never written.
    # The job that saved it restarts as it was.
    os.makedirs(assets, exist_ok=True)
    save_utils.write_ps_count(assets, "hash_filter", 2)
    with tf.Graph().as_default():
      dummies = hash_filter_ops.create_hash_filters(2, False)
      restorer = hash_filter_ops.HashFilterCheckpointRestorerListener(
          basename, dummies, enable_hash_filter=True)
      with tf1.Session(servers[0].target, config=config) as sess:
        with mock.patch.object(hash_filter_ops.logging, "info") as info:
          restorer.before_restore(sess)
      assert any("keep no state: nothing of" in c[0][0]
                 for c in info.call_args_list)
    with _restoring(basename, 2, _thresholds(default=2)) as (sess, _,
                                                            restorer):
      with pytest.raises(tf.errors.NotFoundError,
                         match=r"hash_filter.num_ps says 2 PS tasks .* "
                         r"then delete that record"):
        restorer.before_restore(sess)
    os.remove(os.path.join(assets, "hash_filter.num_ps"))
  with _restoring(basename, 2, _thresholds(default=2)) as (sess, filters,
                                                          restorer):
    grads = _intercepted_grads(filters)
    with mock.patch.object(hash_filter_ops.logging, "warning") as warning:
      restorer.before_restore(sess)
    assert "the hash filters are not restored" in (
        warning.call_args[0][0] % warning.call_args[0][1:])
    # Fresh counts: ids are admitted once seen twice before (threshold 2).
    for admitted in ([[0], [0]], [[0], [0]], [[1], [1]]):
      np.testing.assert_array_equal(sess.run(grads[0]), admitted)


@pytest.mark.parametrize("checkpointed", ["recorded", "files_only", "no"])
def test_a_filter_save_keeps_files_of_ps_beyond_its_count_of_a_checkpoint(
    tmp_path, checkpointed):
  """Filters of PS 2 and 3 from a save of step 7 with 4 PS: where step 7
  has a checkpoint (the state lists it, or only its files are there, as
  keep_checkpoint_every_n_hours leaves them), a save of it again keeps
  them until its count is written (a kill before would leave that
  checkpoint without those PS's filters); a failed save's go first."""
  model_dir = str(tmp_path)
  basename = os.path.join(model_dir, "model.ckpt")
  asset_dir = basename + "-7.assets/"
  os.makedirs(asset_dir)
  stale = ["hash_filter_2-00000-of-00005", "hash_filter_3-00004-of-00005"]
  for name in stale:
    with open(asset_dir + name, "w") as f:
      f.write("old")
  if checkpointed == "recorded":
    tf1.train.update_checkpoint_state(model_dir, basename + "-7")
  elif checkpointed == "files_only":
    tf1.train.update_checkpoint_state(
        model_dir, basename + "-9",
        all_model_checkpoint_paths=[basename + "-9"])
    with open(basename + "-7.index", "w"):
      pass
  real_write = hash_filter_ops.save_utils.write_ps_count
  present_at_count = []

  def write_after_checking(directory, group, num_ps):
    present_at_count.append(set(stale) <= set(os.listdir(asset_dir)))
    real_write(directory, group, num_ps)

  servers, config = test_utils.create_test_ps_cluster(2)
  with tf.Graph().as_default():
    filters = hash_filter_ops.create_hash_filters(2, True, _thresholds(1),
                                                  filter_capacity=1000,
                                                  filter_split_num=5)
    listener = hash_filter_ops.HashFilterCheckpointSaverListener(
        basename, filters, enable_hash_filter=True)
    with tf1.Session(servers[0].target, config=config) as sess, \
        mock.patch.object(hash_filter_ops.save_utils, "write_ps_count",
                          write_after_checking):
      listener.before_save(sess, 7)
  assert present_at_count == [checkpointed != "no"]
  assert not set(stale) & set(os.listdir(asset_dir))
  with open(asset_dir + "hash_filter.num_ps") as f:
    assert f.read() == "2\n"


def test_the_filter_listener_alone_deletes_what_the_saver_deleted(tmp_path):
  # Without the tables' listener (which deletes whole asset folders), the
  # filters' files of checkpoints past max_to_keep, and of a failed save,
  # stayed.
  basename = os.path.join(str(tmp_path), "model.ckpt")
  hash_filters = hash_filter_ops.create_hash_filters(
      0, True, _thresholds(), filter_capacity=1000, filter_split_num=5)
  listener = hash_filter_ops.HashFilterCheckpointSaverListener(
      basename, hash_filters, enable_hash_filter=True)
  tf1.train.get_or_create_global_step()
  saver = tf1.train.Saver(max_to_keep=1)
  with tf1.Session() as sess:
    sess.run(tf1.global_variables_initializer())
    for step in (1, 2):
      listener.before_save(sess, step)
      saver.save(sess, basename, global_step=step)
      listener.after_save(sess, step)
    assert not os.path.exists(basename + "-1.assets")
    assert os.listdir(basename + "-2.assets")
    listener.before_save(sess, 3)  # whose Saver fails
    listener.before_save(sess, 4)
  assert sorted(n for n in os.listdir(str(tmp_path))
                if n.endswith(".assets")) == ["model.ckpt-2.assets",
                                              "model.ckpt-4.assets"]


def test_a_save_with_filters_off_deletes_a_killed_filter_save_of_its_step(
    tmp_path):
  # A run with filters on, killed in a save, left the step's filter files
  # (here with the record of a save under way); a run with filters off
  # saved the step again over them, and every later restore of that
  # checkpoint with filters on failed.
  basename = os.path.join(str(tmp_path), "model.ckpt")
  asset_dir = basename + "-5.assets"
  hash_filters = hash_filter_ops.create_hash_filters(
      0, True, _thresholds(), filter_capacity=1000, filter_split_num=5)
  filters_on = hash_filter_ops.HashFilterCheckpointSaverListener(
      basename, hash_filters, enable_hash_filter=True)
  filters_off = hash_filter_ops.HashFilterCheckpointSaverListener(
      basename, hash_filters, enable_hash_filter=False)
  restorer = hash_filter_ops.HashFilterCheckpointRestorerListener(
      basename, hash_filters, enable_hash_filter=True)
  tf1.train.get_or_create_global_step()
  saver = tf1.train.Saver()
  with tf1.Session() as sess:
    sess.run(tf1.global_variables_initializer())
    filters_on.before_save(sess, 5)
    save_utils.mark_ps_files_saving(asset_dir,
                                    hash_filter_ops._PS_COUNT_GROUP)
    assert len(os.listdir(asset_dir)) == 6  # killed: no checkpoint
    filters_off.before_save(sess, 5)
    saver.save(sess, basename, global_step=5)
    filters_off.after_save(sess, 5)
    assert not os.listdir(asset_dir)
    restorer.before_restore(sess)  # starts empty, with a warning
    # The files of a step with a checkpoint stay.
    filters_on.before_save(sess, 5)
    filters_off.before_save(sess, 5)
    assert len(os.listdir(asset_dir)) == 6
    # With save and restore off, nothing is deleted either.
    untouched = hash_filter_ops.HashFilterCheckpointSaverListener(
        basename, hash_filters, enable_hash_filter=True,
        enable_save_restore=False)
    filters_on.before_save(sess, 6)
    untouched.before_save(sess, 6)
  assert len(os.listdir(basename + "-6.assets")) == 6
  # Never a guard listener of the saver hook (its clean-up runs after
  # failed saves too).
  with pytest.raises(TypeError, match=r"is a HashFilterCheckpointSaverListener"
                     r", which saves files of the checkpoint"):
    save_utils.NoFirstSaveCheckpointSaverHook(
        str(tmp_path), save_steps=1, guard_saver_listeners=[filters_on])


def test_listeners_take_a_path_and_refuse_one_filter_outside_a_list(
    tmp_path):
  basename = tmp_path / "model.ckpt"
  hash_filter = hash_filter_ops.create_hash_filter(1000, 5)
  for listener in (hash_filter_ops.HashFilterCheckpointSaverListener,
                   hash_filter_ops.HashFilterCheckpointRestorerListener):
    with pytest.raises(TypeError, match=r"hash_filters must be a list of "
                       r"handles, one per PS task, got one handle"):
      listener(str(basename), hash_filter, enable_hash_filter=True)
  saver = hash_filter_ops.HashFilterCheckpointSaverListener(
      basename, [hash_filter], enable_hash_filter=True)
  restorer = hash_filter_ops.HashFilterCheckpointRestorerListener(
      basename, [hash_filter], enable_hash_filter=True)
  with tf1.Session() as sess:
    saver.before_save(sess, 1)
    with open(f"{basename}-1.index", "w"):  # the Saver's files
      pass
    tf1.train.update_checkpoint_state(str(tmp_path), f"{basename}-1")
    restorer.before_restore(sess)
  assert sorted(os.listdir(f"{basename}-1.assets")) == [
      "hash_filter.num_ps"] + [
          f"hash_filter_0-{k:05d}-of-00005" for k in range(5)]


def test_two_listeners_of_other_filters_at_one_basename_are_refused(
    tmp_path, monkeypatch):
  # Filter files are named by position: a second group's listener would
  # overwrite the first's files, and restores would mix the two.
  basename = os.path.join(str(tmp_path), "model.ckpt")
  user = [hash_filter_ops.create_hash_filter(1000, 5, name_suffix="_user_0")]
  item = [hash_filter_ops.create_hash_filter(1000, 5, name_suffix="_item_0")]
  hash_filter_ops.HashFilterCheckpointSaverListener(
      basename, user, enable_hash_filter=True)
  # The same filters again, or another basename: fine.
  hash_filter_ops.HashFilterCheckpointSaverListener(
      basename, user, enable_hash_filter=True)
  hash_filter_ops.HashFilterCheckpointSaverListener(
      basename + "_item", item, enable_hash_filter=True)
  with pytest.raises(ValueError, match=r"another HashFilterCheckpointSaver"
                     r"Listener saves other hash filters \(.*_user_0.*\) at "
                     r".*model.ckpt: .*pass every filter to one listener"):
    hash_filter_ops.HashFilterCheckpointSaverListener(
        basename, item, enable_hash_filter=True)
  # The same path spelled otherwise.
  monkeypatch.chdir(tmp_path)
  for spelling in ("model.ckpt", str(tmp_path) + "//model.ckpt"):
    with pytest.raises(ValueError, match="another HashFilterCheckpointSaver"):
      hash_filter_ops.HashFilterCheckpointSaverListener(
          spelling, item, enable_hash_filter=True)


@pytest.mark.parametrize("mode", [
    export_context.ExportMode.STANDALONE, export_context.ExportMode.DISTRIBUTED
])
def test_exported_graphs_get_dummy_filters(mode):
  # A serving graph admits every id: sliding filters there allocated their
  # cells (840 MB each at the default capacity) at every model load.
  with tf.Graph().as_default() as graph:
    with export_context.enter_export_mode(mode):
      for ps_num in (0, 2):
        hash_filter_ops.create_hash_filters(ps_num, True)
    assert {op.type for op in graph.get_operations()} == {
        "MonolithDummyHashFilter"
    }


def test_restore_without_the_files_is_a_clear_error(tmp_path):
  hash_filter = hash_filter_ops.create_hash_filter(1000, 5, _thresholds(1))
  missing = os.path.join(str(tmp_path), "nothing", "hash_filter_0")
  restore = hash_filter_ops.restore_hash_filter(hash_filter, missing, True)
  with tf1.Session() as sess:
    with pytest.raises(tf.errors.NotFoundError, match="hash_filter_0"):
      sess.run(restore)


def test_restore_into_another_configuration_starts_the_counts_over(tmp_path):
  # A filter resized (capacity or split count) is not restored, with a
  # warning, so the job runs: it keeps its own counts (none after a
  # restart); the same configuration restores the checkpoint's.
  basename = os.path.join(str(tmp_path), "hash_filter_0")
  thresholds = _thresholds(default=2)
  count, save = _filter_to_save(1000, 5, thresholds, basename, "saved")
  with tf1.Session() as sess:
    sess.run(count)
    sess.run(count)
    sess.run(save)
  for capacity, split_num, counted_before, admitted in (
      (1000, 5, 0, [[1], [1]]), (1000, 7, 0, [[0], [0]]),
      (5000, 5, 0, [[0], [0]]), (5000, 5, 2, [[1], [1]])):
    with tf.Graph().as_default():
      hash_filter = hash_filter_ops.create_hash_filter(
          capacity, split_num, thresholds, name_suffix="restored")
      restore = hash_filter_ops.restore_hash_filter(hash_filter, basename,
                                                    True)
      grad = _admission_of_1_and_2(hash_filter)
      with tf1.Session() as sess:
        for _ in range(counted_before):
          sess.run(grad)
        sess.run(restore)
        # Seen twice (threshold 2) before the save, or by this filter before
        # the restore: admitted.
        np.testing.assert_array_equal(
            sess.run(grad), admitted,
            err_msg=f"{capacity} {split_num} {counted_before}")


def test_a_save_or_restore_whose_caller_gave_up_stops(tmp_path):
  # A run's deadline cancels its step: the splits not begun are not
  # written (the save leaves no file) or not read (the filter keeps its
  # counts).
  basename = os.path.join(str(tmp_path), "hash_filter_0")
  hash_filter = hash_filter_ops.create_hash_filter(
      20_000_000, 40, _thresholds(default=2), name_suffix="cancelled")
  save = hash_filter_ops.save_hash_filter(hash_filter, basename, True)
  restore = hash_filter_ops.restore_hash_filter(hash_filter, basename, True)
  grad = _admission_of_1_and_2(hash_filter)

  with tf1.Session() as sess:
    deadline = test_utils.deadline_into(sess, save)
    shutil.rmtree(str(tmp_path))
    with pytest.raises(tf.errors.DeadlineExceededError):
      sess.run(save, options=deadline)
    assert not os.path.exists(str(tmp_path)) or os.listdir(str(tmp_path)) == []
    sess.run(save)  # of no counts
    deadline = test_utils.deadline_into(sess, restore)
    sess.run(grad)
    sess.run(grad)
    with pytest.raises(tf.errors.DeadlineExceededError):
      sess.run(restore, options=deadline)
    # Seen twice (threshold 2) since the save: admitted.
    np.testing.assert_array_equal(sess.run(grad), [[1], [1]])


def test_filter_stats_report_what_the_filter_holds():
  sliding = hash_filter_ops.create_hash_filter(1000, 5, _thresholds(default=2),
                                               name_suffix="stats")
  dummy = hash_filter_ops.create_dummy_hash_filter(name_suffix="stats")
  grad = _admission_of_1_and_2(sliding)
  stats = hash_filter_ops.filter_stats(sliding)
  with tf1.Session() as sess:
    before = sess.run(stats)
    sess.run(grad)
    after = sess.run(stats)
    dummy_stats = sess.run(hash_filter_ops.filter_stats(dummy))
  assert before["capacity"] == after["capacity"] == 1000
  assert (before["estimated_elements"], after["estimated_elements"]) == (0, 2)
  assert before["failures"] == after["failures"] == 0
  assert after["memory_bytes"] > 1000
  assert dummy_stats == {"capacity": 0, "estimated_elements": 0,
                         "failures": 0, "memory_bytes": 0}


def test_dummy_and_disabled_filters_save_nothing(tmp_path):
  basename = os.path.join(str(tmp_path), "d", "hash_filter_0")
  dummy = hash_filter_ops.create_dummy_hash_filter("d")
  save = hash_filter_ops.save_hash_filter(dummy, basename, True)
  restore = hash_filter_ops.restore_hash_filter(dummy, basename, True)
  # The filter's handle, as the original's, so calls chain.
  assert isinstance(save, tf.Tensor) and isinstance(restore, tf.Tensor)
  with tf1.Session() as sess:
    sess.run(save)
    sess.run(restore)
  assert not [f for f in os.listdir(os.path.dirname(basename))
              if f.startswith("hash_filter_0")]
  assert hash_filter_ops.save_hash_filter(dummy, basename).type == "NoOp"


def test_a_filter_of_other_attrs_is_not_reused():
  server = tf.distribute.Server.create_local_server()

  def initialize(capacity):
    graph = tf.Graph()
    with graph.as_default():
      handle = hash_filter_ops.create_hash_filter(
          capacity=capacity, split_num=7, name_suffix="_reused")
    with tf1.Session(server.target, graph=graph) as sess:
      sess.run(handle)

  initialize(1000)
  initialize(1000)  # the same attrs: the filter is shared
  with pytest.raises(tf.errors.FailedPreconditionError,
                     match=r"hash filter MonolithHashFilter_reused exists "
                     r"already .*MonolithHashFilter\(.*capacity=2000"):
    initialize(2000)


def test_saves_of_one_filter_to_one_basename_do_not_mix(tmp_path):
  # Two threads saving the filter to the same basename at once: every save
  # is whole, and the checkpoint restores the counts.
  basename = os.path.join(str(tmp_path), "hash_filter_0")
  thresholds = _thresholds(default=2)
  count, save = _filter_to_save(200000, 7, thresholds, basename,
                                "saved_twice")
  with tf1.Session() as sess:
    sess.run(count)
    sess.run(count)
    errors = test_utils.run_in_threads(sess, save, runs=6)
  assert not errors, errors
  with tf.Graph().as_default():
    restored = hash_filter_ops.create_hash_filter(200000, 7, thresholds,
                                                  name_suffix="restored")
    restore = hash_filter_ops.restore_hash_filter(restored, basename, True)
    grad = _admission_of_1_and_2(restored)
    with tf1.Session() as sess:
      sess.run(restore)
      # Seen twice before the saves (threshold 2): admitted.
      np.testing.assert_array_equal(sess.run(grad), [[1], [1]])


def test_a_filter_takes_its_config_as_a_message_too():
  config = embedding_hash_table_pb2.SlotOccurrenceThresholdConfig()
  config.default_occurrence_threshold = 1
  for create in (
      lambda c: hash_filter_ops.create_hash_filter(100, 5, c, "msg"),
      lambda c: hash_filter_ops.create_probabilistic_filter(True, c, "msg")):
    # Both forms give the op the message's bytes.
    assert create(config).op.get_attr("config") == config.SerializeToString()
    assert (create(config.SerializeToString()).op.get_attr("config") ==
            config.SerializeToString())
    with pytest.raises(TypeError, match=r"config must be a .*\."
                       r"SlotOccurrenceThresholdConfig, got .*\."
                       "EmbeddingHashTableConfig"):
      create(embedding_hash_table_pb2.EmbeddingHashTableConfig())
