"""Tests for basic_restore_hook with real sessions and checkpoints."""

import os

import pytest
import tensorflow as tf

from monolith.native_training import basic_restore_hook
from monolith.native_training import save_utils


class _RecordingListener(basic_restore_hook.CheckpointRestorerListener):
  """Appends (name, stage) to a shared log."""

  def __init__(self, name, log):
    self._name = name
    self._log = log

  def begin(self):
    self._log.append((self._name, "begin"))

  def before_restore(self, session):
    self._log.append((self._name, "before_restore"))

  def after_restore(self, session):
    self._log.append((self._name, "after_restore"))

  def end(self, session):
    self._log.append((self._name, "end"))


class _CountHook(tf.compat.v1.train.SessionRunHook):

  def __init__(self):
    self.counts = dict.fromkeys(
        ["after_create_session", "before_run", "after_run", "end"], 0)

  def after_create_session(self, session, coord):
    self.counts["after_create_session"] += 1

  def before_run(self, run_context):
    self.counts["before_run"] += 1

  def after_run(self, run_context, run_values):
    self.counts["after_run"] += 1

  def end(self, session):
    self.counts["end"] += 1


def test_listeners_called_once_in_order():
  log = []
  with tf.Graph().as_default():
    global_step = tf.compat.v1.train.get_or_create_global_step()
    train_op = tf.compat.v1.assign_add(global_step, 1)
    hook = basic_restore_hook.CheckpointRestorerHook(listeners=[
        _RecordingListener("a", log),
        _RecordingListener("b", log),
    ])
    count_hook = _CountHook()
    with tf.compat.v1.train.SingularMonitoredSession(
        hooks=[hook, count_hook]) as sess:
      assert log == [("a", "begin"), ("b", "begin"), ("a", "before_restore"),
                     ("b", "before_restore"), ("a", "after_restore"),
                     ("b", "after_restore")]
      assert count_hook.counts["after_create_session"] == 1
      for _ in range(2):
        sess.run(train_op)
      assert len(log) == 6  # Nothing more while running.
  assert log[6:] == [("a", "end"), ("b", "end")]
  assert count_hook.counts == {
      "after_create_session": 1,
      "before_run": 2,
      "after_run": 2,
      "end": 1
  }


def test_no_listeners():
  with tf.Graph().as_default():
    global_step = tf.compat.v1.train.get_or_create_global_step()
    with tf.compat.v1.train.SingularMonitoredSession(
        hooks=[basic_restore_hook.CheckpointRestorerHook()]) as sess:
      assert sess.run(global_step) == 0


class _FailingListener(basic_restore_hook.CheckpointRestorerListener):

  def before_restore(self, session):
    raise tf.errors.UnavailableError(None, None, "PS 0 went away")


def test_a_restorer_whose_listener_failed_is_not_pending():
  # Its session creation fails; a later session of the graph, with hooks of
  # its own, must not be told a restorer has yet to run.
  with tf.Graph().as_default() as graph:
    tf.compat.v1.train.get_or_create_global_step()
    hook = basic_restore_hook.CheckpointRestorerHook([_FailingListener()])
    with pytest.raises(tf.errors.UnavailableError, match="PS 0 went away"):
      with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]):
        pass
    assert hook  # still referenced, as by a caller that keeps its hooks
    assert not basic_restore_hook.pending_restorer_hooks(graph)


def test_ported_subclasses_and_listeners_work_as_in_the_original():
  # A subclass overriding _restore (the original's hook called it), and a
  # listener of only what the original's hook called: no end.
  log = []

  class OnlyRestores:

    def begin(self):
      log.append("begin")

    def before_restore(self, session):
      log.append("before_restore")

    def after_restore(self, session):
      log.append("after_restore")

  class CustomRestore(basic_restore_hook.CheckpointRestorerHook):

    def _restore(self, session):
      log.append("custom")
      super()._restore(session)

  with tf.Graph().as_default() as graph:
    tf.compat.v1.train.get_or_create_global_step()
    hook = CustomRestore([OnlyRestores()])
    with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]):
      assert basic_restore_hook.pending_restorer_hooks(graph) == []
  assert log == ["begin", "custom", "before_restore", "after_restore"]


def test_base_listener_methods_are_no_ops():
  # They touch nothing of the session: a closed one would fail any call.
  listener = basic_restore_hook.CheckpointRestorerListener()
  with tf.Graph().as_default():
    session = tf.compat.v1.Session()
    session.close()
    assert listener.begin() is None
    assert listener.before_restore(session) is None
    assert listener.after_restore(session) is None
    assert listener.end(session) is None


class _VariableFileListener(basic_restore_hook.CheckpointRestorerListener):
  """Restores `var` from the asset dir of the latest checkpoint.

  Plays the part of a hash table whose data is kept outside the TF checkpoint
  (as multi_hash_table_ops does): `_VariableFileSaver` writes it before the
  saver writes the checkpoint; this restores it after the session restored
  the checkpoint's variables.
  """

  def __init__(self, var, basename):
    self._helper = save_utils.SaveHelper(basename)
    self._ckpt_dir = os.path.dirname(basename)
    self._value = tf.compat.v1.placeholder(tf.float32, [])
    self._assign = var.assign(self._value)
    self.restored_from = None

  def before_restore(self, session):
    prefix = tf.train.latest_checkpoint(self._ckpt_dir)
    if prefix is None:
      return
    asset_dir = self._helper.get_ckpt_asset_dir(prefix)
    with tf.io.gfile.GFile(asset_dir + "side") as f:
      session.run(self._assign, {self._value: float(f.read())})
    self.restored_from = prefix


class _VariableFileSaver(tf.compat.v1.train.CheckpointSaverListener):

  def __init__(self, var, basename):
    self._var = var
    self._helper = save_utils.SaveHelper(basename)

  def before_save(self, session, global_step_value):
    asset_dir = self._helper.get_ckpt_asset_dir(
        self._helper.get_ckpt_prefix(global_step_value))
    tf.io.gfile.makedirs(asset_dir)
    with tf.io.gfile.GFile(asset_dir + "side", "w") as f:
      f.write(str(session.run(self._var)))


def _build(ckpt_dir):
  global_step = tf.compat.v1.train.get_or_create_global_step()
  # Not in the checkpoint: only the listeners save and restore it.
  side = tf.compat.v1.Variable(
      0.0, collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES], name="side")
  train_op = tf.group(tf.compat.v1.assign_add(global_step, 1),
                      side.assign_add(1.5))
  basename = os.path.join(ckpt_dir, "model.ckpt")
  restorer = _VariableFileListener(side, basename)
  saver_hook = tf.compat.v1.train.CheckpointSaverHook(
      ckpt_dir, save_steps=1000, listeners=[_VariableFileSaver(side, basename)])
  restore_hook = basic_restore_hook.CheckpointRestorerHook(
      listeners=[restorer])
  return global_step, side, train_op, restorer, [restore_hook, saver_hook]


def test_restores_data_saved_outside_the_checkpoint(tmp_path):
  ckpt_dir = str(tmp_path)
  with tf.Graph().as_default():
    _, side, train_op, restorer, hooks = _build(ckpt_dir)
    with tf.compat.v1.train.MonitoredTrainingSession(
        checkpoint_dir=ckpt_dir,
        hooks=hooks,
        save_checkpoint_steps=None,
        save_checkpoint_secs=None,
        save_summaries_steps=None,
        save_summaries_secs=None) as sess:
      assert restorer.restored_from is None  # Nothing to restore yet.
      for _ in range(3):
        sess.run(train_op)
      assert sess.run(side) == 4.5
    # The saver hook saved at the first and the last step.
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("model.ckpt-3")
    assert os.path.isfile(os.path.join(ckpt_dir, "model.ckpt-3.assets",
                                       "side"))

  with tf.Graph().as_default():
    global_step, side, train_op, restorer, hooks = _build(ckpt_dir)
    with tf.compat.v1.train.MonitoredTrainingSession(
        checkpoint_dir=ckpt_dir,
        hooks=hooks,
        save_checkpoint_steps=None,
        save_checkpoint_secs=None,
        save_summaries_steps=None,
        save_summaries_secs=None) as sess:
      assert restorer.restored_from.endswith("model.ckpt-3")
      # The step comes from the TF checkpoint, the side value from the file.
      assert sess.run([global_step, side]) == [3, 4.5]
      sess.run(train_op)
      assert sess.run(side) == 6.0


def test_hooks_called_directly_on_a_finalized_graph(tmp_path):
  """The flow of multi_hash_table_ops_test: hooks driven by hand."""
  ckpt_dir = str(tmp_path)
  with tf.Graph().as_default() as g:
    global_step, side, train_op, restorer, _ = _build(ckpt_dir)
    basename = os.path.join(ckpt_dir, "model.ckpt")
    saver = tf.compat.v1.train.Saver(tf.compat.v1.global_variables(),
                                     sharded=True,
                                     max_to_keep=10,
                                     keep_checkpoint_every_n_hours=2)
    saver_hook = tf.compat.v1.train.CheckpointSaverHook(
        ckpt_dir,
        save_steps=1000,
        saver=saver,
        listeners=[_VariableFileSaver(side, basename)])
    restore_hook = basic_restore_hook.CheckpointRestorerHook(
        listeners=[restorer])
    with tf.compat.v1.Session() as sess:
      saver_hook.begin()
      restore_hook.begin()
      sess.run([
          tf.compat.v1.global_variables_initializer(),
          tf.compat.v1.local_variables_initializer()
      ])
      g.finalize()
      sess.run(train_op)
      saver_hook.after_create_session(sess, None)  # Saves step 1.
      sess.run(train_op)
      assert sess.run(side) == 3.0
      restore_hook.after_create_session(sess, None)
      assert restorer.restored_from.endswith("model.ckpt-1")
      # The side value is back to what was saved with step 1.
      assert sess.run([global_step, side]) == [2, 1.5]
