"""Tests that MultiHashTable checkpoint assets are deleted with their checkpoint.

MultiHashTableCheckpointSaverListener writes the tables of step N into
`<basename>-N.assets/` and `ckpt.info-N`; the Saver only deletes its own files
when `max_to_keep` drops a checkpoint, so the listener's `after_save` deletes
the rest. These tests drive a real MultiHashTable graph through a real Saver.
"""

import os
from unittest import mock

import tensorflow as tf
from tensorflow.python.training import saver as saver_module

from monolith.native_training import multi_hash_table_ops
from monolith.native_training import test_utils

tf1 = tf.compat.v1
# MultiHashTable builds graphs for tf.compat.v1 sessions, as training does.
tf1.disable_eager_execution()


class _FakeClock:
  """Stands in for the `time` module of tensorflow's saver.py.

  The Saver reads only `time.time()`: when it is built (the deadline of the
  next checkpoint kept by keep_checkpoint_every_n_hours) and when it records
  a checkpoint.
  """

  def __init__(self):
    self.now = 0.0

  def time(self) -> float:
    return self.now


def _build_graph():
  """A table updated by `train_op`, which also increments the global step.

  Returns:
    (table, train_op); train_op returns the new global step.
  """
  table = multi_hash_table_ops.MultiHashTable.from_configs({
      "slot0": test_utils.generate_test_hash_table_config(1),
      "slot1": test_utils.generate_test_hash_table_config(2),
  })
  global_step = tf1.train.get_or_create_global_step()
  update = table.assign_add({
      "slot0": (tf.constant([1, 2], tf.int64), tf.constant([[1.], [2.]])),
      "slot1": (tf.constant([3], tf.int64), tf.constant([[1., 2.]])),
  }).as_op()
  with tf.control_dependencies([update]):
    train_op = tf1.assign_add(global_step, 1)
  return table, train_op


def _save_steps(sess, saver, listener, basename, steps):
  """Saves each step as CheckpointSaverHook does: listener around saver."""
  for step in steps:
    listener.before_save(sess, step)
    saver.save(sess, basename, global_step=step)
    listener.after_save(sess, step)


def _assert_checkpoint_kept(basename, step):
  prefix = f"{basename}-{step}"
  assert tf.io.gfile.exists(prefix + ".index"), prefix
  asset_dir = prefix + ".assets"
  assert tf.io.gfile.isdir(asset_dir), asset_dir
  assert tf.io.gfile.listdir(asset_dir), asset_dir
  info_path = os.path.join(os.path.dirname(basename), f"ckpt.info-{step}")
  assert tf.io.gfile.exists(info_path), info_path


def _assert_checkpoint_deleted(basename, step):
  prefix = f"{basename}-{step}"
  assert not tf.io.gfile.exists(prefix + ".index"), prefix
  assert not tf.io.gfile.exists(prefix + ".assets"), prefix
  info_path = os.path.join(os.path.dirname(basename), f"ckpt.info-{step}")
  assert not tf.io.gfile.exists(info_path), info_path


def _listed(model_dir):
  """(asset dirs, ckpt.info files) in model_dir, as sorted base names."""
  names = [name.rstrip("/") for name in tf.io.gfile.listdir(model_dir)]
  return (sorted(n for n in names if n.endswith(".assets")),
          sorted(n for n in names if n.startswith("ckpt.info-")))


def test_saver_max_to_keep_deletes_assets_and_info(tmp_path):
  model_dir = os.path.join(tmp_path, "max_to_keep")
  basename = os.path.join(model_dir, "model.ckpt")
  with tf.Graph().as_default():
    table, train_op = _build_graph()
    saver = tf1.train.Saver(max_to_keep=2)
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    with tf1.Session() as sess:
      sess.run([tf1.global_variables_initializer(), table.initializer])
      sess.run(train_op)
      _save_steps(sess, saver, listener, basename, range(1, 6))

  for step in (1, 2, 3):
    _assert_checkpoint_deleted(basename, step)
  for step in (4, 5):
    _assert_checkpoint_kept(basename, step)
  assert _listed(model_dir) == (["model.ckpt-4.assets", "model.ckpt-5.assets"],
                                ["ckpt.info-4", "ckpt.info-5"])


def test_files_of_failed_saves_go_before_the_next_save(tmp_path):
  # A save that fails after the tables' (the Saver's, a filter's, past a
  # deadline) has no checkpoint and runs no after_save: with
  # ignore_save_errors, a dump per failing interval stayed until a save
  # succeeded.
  model_dir = os.path.join(tmp_path, "failed")
  basename = os.path.join(model_dir, "model.ckpt")
  with tf.Graph().as_default():
    table, train_op = _build_graph()
    saver = tf1.train.Saver(max_to_keep=2)
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    with tf1.Session() as sess:
      sess.run([tf1.global_variables_initializer(), table.initializer])
      sess.run(train_op)
      _save_steps(sess, saver, listener, basename, [1])
      for failed in (2, 3, 4):
        listener.before_save(sess, failed)
  _assert_checkpoint_kept(basename, 1)
  assert _listed(model_dir) == (["model.ckpt-1.assets", "model.ckpt-4.assets"],
                                ["ckpt.info-1", "ckpt.info-4"])


def test_checkpoint_saver_hook_keeps_assets_of_listed_checkpoints(tmp_path):
  model_dir = os.path.join(tmp_path, "hook")
  basename = os.path.join(model_dir, "model.ckpt")
  with tf.Graph().as_default():
    _, train_op = _build_graph()
    saver = tf1.train.Saver(max_to_keep=2)
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    hook = tf1.train.CheckpointSaverHook(model_dir,
                                         save_steps=1,
                                         saver=saver,
                                         listeners=[listener])
    stop_hook = tf1.train.StopAtStepHook(last_step=5)
    with tf1.train.SingularMonitoredSession(hooks=[hook, stop_hook]) as sess:
      while not sess.should_stop():
        last_step = sess.run(train_op)
  assert last_step == 5

  state = tf.train.get_checkpoint_state(model_dir)
  assert state.model_checkpoint_path == f"{basename}-5"
  listed_prefixes = [os.path.basename(p)
                     for p in state.all_model_checkpoint_paths]
  assert listed_prefixes == ["model.ckpt-4", "model.ckpt-5"]
  assert _listed(model_dir) == (
      sorted(p + ".assets" for p in listed_prefixes),
      sorted("ckpt.info-" + p.rpartition("-")[2] for p in listed_prefixes))
  for step in (4, 5):
    _assert_checkpoint_kept(basename, step)
  # The hook also saved step 0, when the session was created.
  for step in (0, 1, 2, 3):
    _assert_checkpoint_deleted(basename, step)


def test_keep_checkpoint_every_n_hours_keeps_assets_of_kept_files(tmp_path):
  model_dir = os.path.join(tmp_path, "every_n_hours")
  basename = os.path.join(model_dir, "model.ckpt")
  clock = _FakeClock()
  with (mock.patch.object(saver_module, "time", clock),
        tf.Graph().as_default()):
    table, train_op = _build_graph()
    # Built at time 0: the first checkpoint kept is one saved after 1 hour.
    saver = tf1.train.Saver(max_to_keep=2, keep_checkpoint_every_n_hours=1)
    listener = multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
        basename)
    with tf1.Session() as sess:
      sess.run([tf1.global_variables_initializer(), table.initializer])
      sess.run(train_op)
      _save_steps(sess, saver, listener, basename, (1, 2))
      # Step 3 is the first save past the hour, so when max_to_keep drops
      # it (at step 5) the Saver keeps its files.
      clock.now = 1.5 * 3600
      _save_steps(sess, saver, listener, basename, (3, 4, 5))

  state = tf.train.get_checkpoint_state(model_dir)
  listed_prefixes = [os.path.basename(p)
                     for p in state.all_model_checkpoint_paths]
  assert listed_prefixes == ["model.ckpt-4", "model.ckpt-5"]
  for step in (3, 4, 5):
    _assert_checkpoint_kept(basename, step)
  for step in (1, 2):
    _assert_checkpoint_deleted(basename, step)
  assert _listed(model_dir) == (
      [f"model.ckpt-{step}.assets" for step in (3, 4, 5)],
      [f"ckpt.info-{step}" for step in (3, 4, 5)])
