"""Partial recovery of a restarted PS task, on in-process servers.

A PS task "restarts" by being replaced with a fresh server in the session
config's cluster_def (an in-process server cannot be stopped): the new
server starts with no variables, tables or `PsMonitor` queue, as a
restarted process does. Sessions share the PS tasks' state, as a real job's
do. The master must be in the cluster_def, so PS 0 (never restarted) is
also the master, as in the original's test.
"""

import hashlib
import os
import pathlib
import shutil
import traceback
from typing import List, NamedTuple, Sequence

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import basic_restore_hook
from monolith.native_training import distributed_ps_factory
from monolith.native_training import hash_filter_ops
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils
from monolith.native_training import test_utils
from monolith.native_training import utils
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1
tf1.disable_eager_execution()

# Id 0 lives on PS 0, id 1 on PS 1.
_IDS = np.array([0, 1], dtype=np.int64)


def _config(ps_servers: List[tf.distribute.Server]) -> tf1.ConfigProto:
  """A session config whose PS job is `ps_servers`, sharing their state."""
  cluster_def = tf.train.ClusterDef()
  job = cluster_def.job.add()
  job.name = utils.PS_JOB_NAME
  for i, server in enumerate(ps_servers):
    job.tasks[i] = server.target[len("grpc://"):]
  config = tf1.ConfigProto(cluster_def=cluster_def)
  config.experimental.share_session_state_in_clusterspec_propagation = True
  return config


class _Job(NamedTuple):
  train_op: tf.Operation
  v0: tf.Variable  # on PS 0
  v1: tf.Variable  # on PS 1
  embeddings: tf.Tensor  # of _IDS
  monitor: save_utils.PsMonitor
  hooks: List[tf1.train.SessionRunHook]
  scaffold: tf1.train.Scaffold


def _build_job(model_dir: str,
               original_hooks: bool,
               marking_hook_first: bool = False,
               occurrence_threshold: int = 0,
               new_tables: Sequence[str] = (),
               save_listeners: Sequence[
                   tf1.train.CheckpointSaverListener] = ()) -> _Job:
  """The job; with `original_hooks` as the original's users list them: the
  saver hook (NoFirstSaveCheckpointSaverHook with a PartialRecoverySaver)
  marks the PS tasks set up, no PsInitializedStateHook. With an
  `occurrence_threshold`, the PS tasks' hash filters admit an id seen more
  often. `new_tables`: as the restorer listener's; `save_listeners` the
  saver hook's after the tables'."""
  with tf.device(utils.ps_device(0)):
    global_step = tf1.train.get_or_create_global_step()
    v0 = tf1.Variable(0, name="v0")
  with tf.device(utils.ps_device(1)):
    v1 = tf1.Variable(0, name="v1")
  thresholds = embedding_hash_table_pb2.SlotOccurrenceThresholdConfig(
      default_occurrence_threshold=occurrence_threshold)
  filters = hash_filter_ops.create_hash_filters(2,
                                                occurrence_threshold > 0,
                                                thresholds.SerializeToString(),
                                                filter_capacity=1000,
                                                filter_split_num=5)
  table = distributed_ps_factory.create_native_multi_hash_table(
      2, {"slot": test_utils.generate_test_hash_table_config(1)},
      hash_filters=filters)
  ids = tf.constant(_IDS)
  train_op = tf.group(
      tf1.assign_add(global_step, 1), tf1.assign_add(v0, 1),
      tf1.assign_add(v1, 1),
      table.assign_add({
          "slot": (ids, tf.ones([2, 1]))
      }).as_op())
  embeddings = table.lookup({"slot": ids})["slot"]
  monitor = save_utils.PsMonitor(2, model_dir)
  saver = save_utils.PartialRecoverySaver(ps_monitor=monitor)
  basename = os.path.join(model_dir, "model.ckpt")
  restorer = basic_restore_hook.CheckpointRestorerHook(listeners=[
      multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
          basename, ps_monitor=monitor, new_tables=new_tables),
      hash_filter_ops.HashFilterCheckpointRestorerListener(
          basename, filters, enable_hash_filter=occurrence_threshold > 0,
          ps_monitor=monitor),
  ])
  saver_hook = (save_utils.NoFirstSaveCheckpointSaverHook
                if original_hooks else tf1.train.CheckpointSaverHook)(
                    model_dir,
                    save_steps=1,
                    saver=saver,
                    listeners=[
                        multi_hash_table_ops.
                        MultiHashTableCheckpointSaverListener(basename),
                        *save_listeners
                    ])
  hooks = ([restorer, saver_hook] if original_hooks else
           [restorer, save_utils.PsInitializedStateHook(monitor), saver_hook])
  if marking_hook_first:  # e.g. as MonitoredTrainingSession's chief hooks
    marking = hooks[1]  # NoFirstSave..., or PsInitializedStateHook
    hooks.remove(marking)
    hooks.insert(0, marking)
  scaffold = tf1.train.Scaffold(
      saver=saver,
      local_init_op=tf.group(*[t.initializer for t in table.tables]))
  return _Job(train_op, v0, v1, embeddings, monitor, hooks, scaffold)


def _monitored_session(job: _Job, master: str, config: tf1.ConfigProto,
                       model_dir: str) -> tf1.train.MonitoredSession:
  return tf1.train.MonitoredSession(
      session_creator=tf1.train.ChiefSessionCreator(scaffold=job.scaffold,
                                                    master=master,
                                                    config=config,
                                                    checkpoint_dir=model_dir),
      hooks=job.hooks)


def _values(sess, job: _Job):
  v0, v1, embeddings = sess.run([job.v0, job.v1, job.embeddings])
  return int(v0), int(v1), embeddings[:, 0].tolist()


@pytest.mark.parametrize("original_hooks", [False, True])
def test_only_the_restarted_ps_is_restored(tmp_path, original_hooks,
                                          monkeypatch):
  model_dir = str(tmp_path)
  ps0, ps1 = (tf.distribute.Server.create_local_server() for _ in range(2))
  master = ps0
  with tf.Graph().as_default():
    job = _build_job(model_dir, original_hooks)
    # Step 1 is checkpointed (the saver hook saves every step).
    with _monitored_session(job, master.target, _config([ps0, ps1]),
                            model_dir) as sess:
      sess.run(job.train_op)
      assert _values(sess, job) == (1, 1, [1.0, 1.0])
    assert tf.train.latest_checkpoint(model_dir).endswith("-1")
    # Step 2 is not.
    with tf1.Session(master.target, config=_config([ps0, ps1])) as sess:
      sess.run(job.train_op)
      assert _values(sess, job) == (2, 2, [2.0, 2.0])
      assert job.monitor.uninitialized_ps_tasks(sess) == set()

    # PS 1 restarts: its variable and table come back from step 1's
    # checkpoint, PS 0 keeps step 2's values.
    ps1_restarted = tf.distribute.Server.create_local_server()
    config = _config([ps0, ps1_restarted])
    with tf1.Session(master.target, config=config) as sess:
      assert job.monitor.uninitialized_ps_tasks(sess) == {1}
      report = sess.run(job.monitor.report_uninitialized_ps())
      assert report.tolist() == [b"/job:ps/task:1"]
      assert job.monitor.is_ps_uninitialized(sess, utils.ps_device(1))
      assert not job.monitor.is_ps_uninitialized(sess, "/job:ps/task:0")
      assert job.monitor.is_ps_uninitialized(sess, "/job:worker/task:0")
    # Who looked at the PS tasks (each look is a run reaching every task).
    lookers = []
    look = job.monitor.uninitialized_ps_tasks
    monkeypatch.setattr(
        job.monitor, "uninitialized_ps_tasks", lambda sess: lookers.append(
            traceback.extract_stack()[-2].name) or look(sess))
    with _monitored_session(job, master.target, config, model_dir) as sess:
      # The tables' restorer looks once a restore for the devices it
      # restores (not once a device), besides the look for the global
      # step's device that finds the step it restores from.
      restores = lookers.count("is_ps_uninitialized")
      assert restores >= 1 and lookers.count("before_restore") == restores
      monkeypatch.undo()
      assert _values(sess, job) == (2, 1, [2.0, 1.0])
      assert job.monitor.uninitialized_ps_tasks(sess) == set()
      sess.run(job.train_op)
      assert _values(sess, job) == (3, 2, [3.0, 2.0])

    # The chief restarts, no PS does: nothing is restored, what step 4 (not
    # checkpointed) left stays.
    with tf1.Session(master.target, config=config) as sess:
      sess.run(job.train_op)
      assert _values(sess, job) == (4, 3, [4.0, 3.0])
    with _monitored_session(job, master.target, config, model_dir) as sess:
      assert _values(sess, job) == (4, 3, [4.0, 3.0])

    # Both restart: everything comes from the latest checkpoint, step 4's
    # (saved when the last session was created).
    ps0_restarted = tf.distribute.Server.create_local_server()
    config = _config([
        ps0_restarted,
        tf.distribute.Server.create_local_server()
    ])
    with _monitored_session(job, ps0_restarted.target, config,
                            model_dir) as sess:
      assert _values(sess, job) == (4, 3, [4.0, 3.0])


class _UninitializedAtSaves(tf1.train.CheckpointSaverListener):
  """Notes, at each save, the PS tasks not set up."""

  def __init__(self):
    self.monitor = None
    self.seen = []

  def before_save(self, session, global_step_value):
    self.seen.append(
        (global_step_value, self.monitor.uninitialized_ps_tasks(session)))


def test_a_restarted_ps_is_set_up_before_the_save_at_session_creation(
    tmp_path):
  """The saver hook's save when a session is created (a step no checkpoint
  holds, after a PS restarted) comes after the restored tasks are marked:
  workers wait for the mark, and before it they waited a whole save."""
  model_dir = str(tmp_path)
  ps0, ps1 = (tf.distribute.Server.create_local_server() for _ in range(2))
  listener = _UninitializedAtSaves()
  with tf.Graph().as_default():
    job = _build_job(model_dir, original_hooks=True,
                     save_listeners=[listener])
    listener.monitor = job.monitor
    with _monitored_session(job, ps0.target, _config([ps0, ps1]),
                            model_dir) as sess:
      sess.run(job.train_op)  # step 1, saved
    with tf1.Session(ps0.target, config=_config([ps0, ps1])) as sess:
      sess.run(job.train_op)  # step 2, not saved
    listener.seen.clear()
    config = _config([ps0, tf.distribute.Server.create_local_server()])
    with _monitored_session(job, ps0.target, config, model_dir) as sess:
      assert _values(sess, job) == (2, 1, [2.0, 1.0])
  assert listener.seen == [(2, set())]


def test_a_new_job_on_running_ps_tasks_does_not_take_their_state(tmp_path):
  # PS tasks kept running from job A hold A's tables, filters and setup.
  # Job B (another model dir, no checkpoint) starts empty, filters too, and
  # job A back on them restores its checkpoint, not B's state.
  dir_a, dir_b = str(tmp_path / "a"), str(tmp_path / "b")
  ps0, ps1 = (tf.distribute.Server.create_local_server() for _ in range(2))
  config = _config([ps0, ps1])

  def run_job(model_dir, steps):
    """The values after creating the session, and after each step."""
    with tf.Graph().as_default():
      # Ids are admitted at their second occurrence.
      job = _build_job(model_dir, original_hooks=False, occurrence_threshold=1)
      with _monitored_session(job, ps0.target, config, model_dir) as sess:
        values = [_values(sess, job)]
        for _ in range(steps):
          sess.run(job.train_op)
          values.append(_values(sess, job))
    return values

  # Step 1 counts the ids, step 2 admits them (the saver hook saves every
  # step, the last one also as the session ends).
  assert run_job(dir_a, 2) == [(0, 0, [0.0, 0.0]), (1, 1, [0.0, 0.0]),
                               (2, 2, [1.0, 1.0])]
  # Not A's embeddings (tables emptied) nor its counts (filters emptied).
  assert run_job(dir_b, 1) == [(0, 0, [0.0, 0.0]), (1, 1, [0.0, 0.0])]
  # The PS tasks were set up for B: A's checkpoint is restored.
  assert run_job(dir_a, 0) == [(2, 2, [1.0, 1.0])]


def test_a_start_without_checkpoint_empties_tasks_set_up_for_the_job(
    tmp_path):
  # Where there is no checkpoint the session initializes every variable,
  # those of PS tasks still set up for the job too: their tables and
  # filters start over with them (they kept trained embeddings and counts
  # beside fresh dense weights).
  model_dir = str(tmp_path / "model")
  ps0, ps1 = (tf.distribute.Server.create_local_server() for _ in range(2))
  config = _config([ps0, ps1])

  def run_job(steps, keep_variables=False):
    """The values after creating the session, and after each step;
    `keep_variables`: an init_op that initializes nothing."""
    with tf.Graph().as_default():
      # Ids are admitted at their second occurrence.
      job = _build_job(model_dir, original_hooks=False, occurrence_threshold=1)
      if keep_variables:
        job = job._replace(scaffold=tf1.train.Scaffold(
            init_op=tf.no_op(), saver=job.scaffold.saver,
            local_init_op=job.scaffold.local_init_op))
      with _monitored_session(job, ps0.target, config, model_dir) as sess:
        assert job.monitor.uninitialized_ps_tasks(sess) == set()
        values = [_values(sess, job)]
        for _ in range(steps):
          sess.run(job.train_op)
          values.append(_values(sess, job))
    return values

  assert run_job(2) == [(0, 0, [0.0, 0.0]), (1, 1, [0.0, 0.0]),
                        (2, 2, [1.0, 1.0])]
  # Without a checkpoint, a session that kept the variables (its global
  # step above 0) keeps the tables and counts beside them.
  shutil.move(model_dir, str(tmp_path / "moved_away"))
  assert run_job(1, keep_variables=True) == [(2, 2, [1.0, 1.0]),
                                             (3, 3, [2.0, 2.0])]
  # The user starts over in the same directory, the PS tasks still up.
  shutil.rmtree(model_dir)
  assert run_job(1) == [(0, 0, [0.0, 0.0]), (1, 1, [0.0, 0.0])]


def test_a_new_table_starts_empty_on_a_ps_task_set_up_for_another_job(
    tmp_path):
  dir_a, dir_b = str(tmp_path / "a"), str(tmp_path / "b")
  ps0, ps1 = (tf.distribute.Server.create_local_server() for _ in range(2))
  config = _config([ps0, ps1])
  with tf.Graph().as_default():
    job = _build_job(dir_a, original_hooks=False)
    with _monitored_session(job, ps0.target, config, dir_a) as sess:
      sess.run(job.train_op)
      assert _values(sess, job) == (1, 1, [1.0, 1.0])
  # Job B's checkpoint has the variables and no hash table: its tables are
  # new since.
  with tf.Graph().as_default():
    with tf.device(utils.ps_device(0)):
      tf1.train.get_or_create_global_step()
      tf1.Variable(7, name="v0")
    with tf.device(utils.ps_device(1)):
      tf1.Variable(7, name="v1")
    servers, scratch = test_utils.create_test_ps_cluster(2)
    with tf1.Session(servers[0].target, config=scratch) as sess:
      sess.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(sess, os.path.join(dir_b, "model.ckpt"),
                             global_step=0)
  with tf.Graph().as_default():
    job = _build_job(dir_b,
                     original_hooks=False,
                     new_tables=["MonolithMultiHashTable"])
    with _monitored_session(job, ps0.target, config, dir_b) as sess:
      assert _values(sess, job) == (7, 7, [0.0, 0.0])


def test_a_task_set_up_for_another_model_dir_is_not_set_up(tmp_path):
  servers, _ = test_utils.create_test_ps_cluster(2)
  shared = tf1.ConfigProto()
  dir_a, dir_b = str(tmp_path / "a"), str(tmp_path / "b")
  with tf.Graph().as_default():
    job_a = save_utils.PsMonitor(2, dir_a)
    # The same directory, spelled otherwise.
    job_a_again = save_utils.PsMonitor(
        2, os.path.relpath(dir_a) + "/")
    job_b = save_utils.PsMonitor(2, dir_b)
    unnamed = save_utils.PsMonitor(2)
    restart_1 = _remove_monitor_keys(2, [0, 1, 2])[1]
    with tf1.Session(servers[0].target, config=shared) as sess:
      job_a.setup_ps_initialized_state(sess)
      assert job_a_again.uninitialized_ps_tasks(sess) == set()
      # A monitor without a directory takes any job's tasks, as the
      # original's.
      assert unnamed.uninitialized_ps_tasks(sess) == set()
      assert job_b.uninitialized_ps_tasks(sess) == {0, 1}
      report = sess.run(job_b.report_uninitialized_ps()).tolist()
      assert report == [b"/job:ps/task:0", b"/job:ps/task:1"]
      job_b.setup_ps_initialized_state(sess)
      assert job_b.uninitialized_ps_tasks(sess) == set()
      assert job_a.uninitialized_ps_tasks(sess) == {0, 1}
      sess.run(restart_1)
    # A task set up by a job without a directory belongs to none.
    with tf1.Session(servers[0].target, config=shared) as sess:
      assert unnamed.uninitialized_ps_tasks(sess) == {1}
      unnamed.setup_ps_initialized_state(sess)
      # Both: that job trained on PS 0 too.
      assert job_b.uninitialized_ps_tasks(sess) == {0, 1}


def test_tasks_set_up_before_fingerprints_take_the_next_jobs(tmp_path):
  servers, _ = test_utils.create_test_ps_cluster(2)
  shared = tf1.ConfigProto()
  with tf.Graph().as_default():
    job_a = save_utils.PsMonitor(2, str(tmp_path / "a"))
    job_b = save_utils.PsMonitor(2, str(tmp_path / "b"))
    forget_directory = _remove_monitor_keys(2, [2])
    with tf1.Session(servers[0].target, config=shared) as sess:
      job_a.setup_ps_initialized_state(sess)
      sess.run(forget_directory)  # as an earlier version left them
      # Not restored (rolled back) for lack of a fingerprint...
      assert job_a.uninitialized_ps_tasks(sess) == set()
      assert job_b.uninitialized_ps_tasks(sess) == set()
      # ...and A's once A's setup ran.
      job_a.setup_ps_initialized_state(sess)
      assert job_a.uninitialized_ps_tasks(sess) == set()
      assert job_b.uninitialized_ps_tasks(sess) == {0, 1}


@pytest.mark.parametrize("original_hooks", [False, True])
def test_hooks_listed_before_the_restorer_are_refused(tmp_path,
                                                      original_hooks):
  # Run first, the hook that marks PS tasks set up (the saver hook with the
  # original's lists) would mark them, and the saver hook save, before the
  # tables are restored.
  model_dir = str(tmp_path)
  servers, config = test_utils.create_test_ps_cluster(2)
  with tf.Graph().as_default():
    job = _build_job(model_dir, original_hooks, marking_hook_first=True)
    with pytest.raises(RuntimeError, match="runs before a "
                       "CheckpointRestorerHook"):
      _monitored_session(job, servers[0].target, config, model_dir)


def test_without_a_monitor_everything_is_restored(tmp_path):
  model_dir = str(tmp_path)
  with tf.Graph().as_default():
    with tf.device(utils.ps_device(0)):
      v0 = tf1.Variable(1, name="v0")
    saver = save_utils.PartialRecoverySaver()
    servers, config = test_utils.create_test_ps_cluster(1)
    with tf1.Session(servers[0].target, config=config) as sess:
      sess.run(v0.initializer)
      path = saver.save(sess, os.path.join(model_dir, "model.ckpt"))
      sess.run(tf1.assign(v0, 5))
      saver.restore(sess, path)
      assert sess.run(v0) == 1


@pytest.mark.parametrize("name, dtype, error, cause", [
    ("v1", tf.int32, tf.errors.NotFoundError, "missing from it"),
    ("v0", tf.float32, tf.errors.InvalidArgumentError, "does not match"),
])
def test_a_partial_restore_names_the_causes_of_its_errors(
    tmp_path, name, dtype, error, cause):
  path = str(tmp_path / "model.ckpt")
  servers, config = test_utils.create_test_ps_cluster(1)
  with tf.Graph().as_default():
    with tf.device(utils.ps_device(0)):
      v0 = tf1.Variable(1, name="v0")
    saver = save_utils.PartialRecoverySaver()
    with tf1.Session(servers[0].target, config=config) as sess:
      sess.run(v0.initializer)
      saver.save(sess, path)
  with tf.Graph().as_default():
    with tf.device(utils.ps_device(0)):
      # Missing from the checkpoint, or of another dtype than saved.
      tf1.Variable(tf.ones([], dtype), name=name)
    saver = save_utils.PartialRecoverySaver(
        ps_monitor=save_utils.PsMonitor(1))
    with tf1.Session(servers[0].target, config=config) as sess:
      with pytest.raises(error, match=f"Restoring from checkpoint {path} "
                         f"failed: .*{cause}.* Original error: "):
        saver.restore(sess, path)


@pytest.mark.parametrize("monitored", [False, True])
def test_saves_and_restores_take_their_own_deadline(tmp_path, monitored):
  # A session's operation_timeout_in_ms (e.g. a minute) may be too short
  # for a large model's save on a remote file system; the Saver's own runs
  # take no options, so they would take it.
  model_dir = str(tmp_path)

  class RecordingSession:
    """Notes each run's deadline."""

    def __init__(self, sess):
      self.sess = sess
      self.graph = sess.graph
      self.deadlines = []

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
      self.deadlines.append(options.timeout_in_ms if options else None)
      return self.sess.run(fetches, feed_dict, options, run_metadata)

  with tf.Graph().as_default():
    with tf.device(utils.ps_device(0)):
      v0 = tf1.Variable(1, name="v0")
    monitor = save_utils.PsMonitor(1) if monitored else None
    saver = save_utils.PartialRecoverySaver(ps_monitor=monitor,
                                            timeout_secs=7)
    servers, config = test_utils.create_test_ps_cluster(1)
    with tf1.Session(servers[0].target, config=config) as sess:
      sess.run(v0.initializer)
      recording = RecordingSession(sess)
      path = saver.save(recording, os.path.join(model_dir, "model.ckpt"))
      sess.run(tf1.assign(v0, 5))
      saver.restore(recording, path)
      assert sess.run(v0) == 1
      # The save's and the restore's runs; the monitor's look (a small read
      # of the PS tasks' marks) keeps the session's deadline.
      assert recording.deadlines.count(7000) == 2
      assert len(recording.deadlines) == (3 if monitor else 2)
      if monitor:
        # The saver's look counts for the session it was given, as the
        # setup that follows (setup_ps_initialized_state) needs.
        assert monitor._looked_in(recording)  # pylint: disable=protected-access
    with pytest.raises(ValueError, match="timeout_secs must be a number"):
      save_utils.PartialRecoverySaver(timeout_secs=0)


def test_a_task_lost_after_a_setup_is_not_marked_by_the_next_one():
  """The chief's PsInitializedStateHook and saver hook both set up, a save
  between them: a task restarted after the first (its state gone, nothing
  restored it) must not be marked set up by the second."""
  servers, _ = test_utils.create_test_ps_cluster(2)
  with tf.Graph().as_default():
    monitor = save_utils.PsMonitor(2)
    other_job = save_utils.PsMonitor(1)
    with tf1.Session(servers[0].target) as sess:
      assert monitor.uninitialized_ps_tasks(sess) == {0, 1}
      monitor.setup_ps_initialized_state(sess)
      # Both tasks set up for another job since (its count on PS 0, a newer
      # generation than PS 1's), as restarts would leave them unset.
      other_job.setup_ps_initialized_state(sess)
      with pytest.raises(tf.errors.AbortedError,
                         match="/job:ps/task:0, /job:ps/task:1 restarted "
                         "while the session was being set up"):
        monitor.setup_ps_initialized_state(sess)
      # The next round (a look, its restore, a setup) marks them.
      assert monitor.uninitialized_ps_tasks(sess) == {0, 1}
      monitor.setup_ps_initialized_state(sess)
      assert monitor.uninitialized_ps_tasks(sess) == set()
      # So with the hooks the other way round: the saver hook's setup,
      # then PsInitializedStateHook's (its log of the tasks is no look).
      monitor.setup_ps_initialized_state(sess)
      assert other_job.uninitialized_ps_tasks(sess) == {0}
      other_job.setup_ps_initialized_state(sess)
      with pytest.raises(tf.errors.AbortedError, match="restarted while"):
        save_utils.PsInitializedStateHook(monitor).after_create_session(
            sess, None)


def test_a_fresh_job_is_all_uninitialized_until_set_up():
  servers, _ = test_utils.create_test_ps_cluster(3)
  # Sessions share the PS tasks' state, as a real job's do.
  shared = tf1.ConfigProto()
  with tf.Graph().as_default():
    monitor = save_utils.PsMonitor(2)
    with tf1.Session(servers[0].target, config=shared) as sess:
      assert monitor.uninitialized_ps_tasks(sess) == {0, 1}
      monitor.setup_ps_initialized_state(sess)
      assert monitor.uninitialized_ps_tasks(sess) == set()
      assert sess.run(monitor.report_uninitialized_ps()).tolist() == []
      monitor.setup_ps_initialized_state(sess)
      assert monitor.uninitialized_ps_tasks(sess) == set()
  # A job restarted with 1 PS while PS 0 kept running: PS 0's tables are
  # sharded for 2 PS, so it is not set up for this job.
  with tf.Graph().as_default():
    one = save_utils.PsMonitor(1)
    with tf1.Session(servers[0].target, config=shared) as sess:
      assert one.uninitialized_ps_tasks(sess) == {0}
      one.setup_ps_initialized_state(sess)
      assert one.uninitialized_ps_tasks(sess) == set()
  # Back to 2 PS: PS 0 holds all ids now, set up for 1 PS, and is restored.
  # PS 1, up but out of the 1-PS job, still holds the first job's shard and
  # its count, but an older setup generation than PS 0's: restored too.
  with tf.Graph().as_default():
    again = save_utils.PsMonitor(2)
    with tf1.Session(servers[0].target, config=shared) as sess:
      assert again.uninitialized_ps_tasks(sess) == {0, 1}
      again.setup_ps_initialized_state(sess)
      assert again.uninitialized_ps_tasks(sess) == set()
  # A chief restarting in that job finds every task set up, and its setup
  # keeps them so (it writes nothing then).
  with tf.Graph().as_default():
    chief = save_utils.PsMonitor(2)
    with tf1.Session(servers[0].target, config=shared) as sess:
      assert chief.uninitialized_ps_tasks(sess) == set()
      chief.setup_ps_initialized_state(sess)
      assert chief.uninitialized_ps_tasks(sess) == set()
      assert sess.run(chief.report_uninitialized_ps()).tolist() == []
  # Through 3 PS and back to 2: every task that kept running is restored.
  with tf.Graph().as_default():
    three = save_utils.PsMonitor(3)
    with tf1.Session(servers[0].target, config=shared) as sess:
      assert three.uninitialized_ps_tasks(sess) == {0, 1, 2}
      three.setup_ps_initialized_state(sess)
  with tf.Graph().as_default():
    two = save_utils.PsMonitor(2)
    with tf1.Session(servers[0].target, config=shared) as sess:
      assert two.uninitialized_ps_tasks(sess) == {0, 1}


def _remove_monitor_keys(num_ps, keys):
  """Per PS task, an op removing `keys` from its PsMonitor table."""
  removes = []
  for i in range(num_ps):
    with tf.device(utils.ps_device(i)):
      removes.append(
          tf.raw_ops.LookupTableRemoveV2(
              table_handle=save_utils.ps_monitor_table(i),
              keys=tf.constant(keys, tf.int64)))
  return removes


def test_tasks_set_up_without_a_generation_count_as_set_up():
  # Set up by an earlier version: a count and no generation.
  servers, _ = test_utils.create_test_ps_cluster(2)
  shared = tf1.ConfigProto()
  with tf.Graph().as_default():
    monitor = save_utils.PsMonitor(2)
    forget_generation = _remove_monitor_keys(2, [1])
    with tf1.Session(servers[0].target, config=shared) as sess:
      monitor.setup_ps_initialized_state(sess)
      sess.run(forget_generation)
      assert monitor.uninitialized_ps_tasks(sess) == set()


def test_a_task_restarted_during_setup_is_not_marked_set_up():
  servers, _ = test_utils.create_test_ps_cluster(2)
  shared = tf1.ConfigProto()
  with tf.Graph().as_default():
    monitor = save_utils.PsMonitor(2)
    # A restart empties a task's table: remove its entries as one would.
    restart = _remove_monitor_keys(2, [0, 1])
    with tf1.Session(servers[0].target, config=shared) as sess:
      monitor.uninitialized_ps_tasks(sess)
      monitor.setup_ps_initialized_state(sess)
      sess.run(restart[0])
      # A restorer looks (and restores task 0); then task 1 restarts.
      assert monitor.uninitialized_ps_tasks(sess) == {0}
      sess.run(restart[1])
      with pytest.raises(tf.errors.AbortedError,
                         match=r"/job:ps/task:1 restarted while the session "
                         "was being set up"):
        monitor.setup_ps_initialized_state(sess)
      # Task 0 was marked; task 1 waits for the next setup, which restores
      # it and marks it.
      assert monitor.uninitialized_ps_tasks(sess) == {1}
      monitor.setup_ps_initialized_state(sess)
      assert monitor.uninitialized_ps_tasks(sess) == set()


def test_looks_of_a_session_that_failed_to_set_up_are_not_carried_over():
  # A session creation that failed after a restorer looked (PS 1 to
  # restore) left that look behind: the next creation, restoring PS 0 and
  # 1 after PS 0 restarted too, then counted PS 0 as restarted during its
  # setup (a spurious AbortedError, and PS 0 restored once more).
  servers, _ = test_utils.create_test_ps_cluster(2)
  shared = tf1.ConfigProto()
  with tf.Graph().as_default():
    monitor = save_utils.PsMonitor(2)
    restart = _remove_monitor_keys(2, [0, 1])
    with tf1.Session(servers[0].target, config=shared) as sess:
      monitor.uninitialized_ps_tasks(sess)
      monitor.setup_ps_initialized_state(sess)
      sess.run(restart[1])
    with tf1.Session(servers[0].target, config=shared) as failed:
      assert monitor.uninitialized_ps_tasks(failed) == {1}
    with tf1.Session(servers[0].target, config=shared) as sess:
      sess.run(restart[0])
      assert monitor.uninitialized_ps_tasks(sess) == {0, 1}
      monitor.setup_ps_initialized_state(sess)
      assert monitor.uninitialized_ps_tasks(sess) == set()


def test_bad_arguments():
  with tf.Graph().as_default():
    with pytest.raises(ValueError, match="ps_num"):
      save_utils.PsMonitor(-1)
    with pytest.raises(ValueError, match="ps_num"):
      save_utils.PsMonitor(ps_num=1.5)
    with pytest.raises(ValueError, match="model_dir"):
      save_utils.PsMonitor(1, "")
    tf1.Variable(0, name="v")
    with pytest.raises(ValueError, match="sharded=True"):
      save_utils.PartialRecoverySaver(sharded=False)
    with pytest.raises(ValueError, match="builder"):
      save_utils.PartialRecoverySaver(builder=None)
    # By position too (sharded is the Saver's third parameter, builder its
    # ninth): a positional call as the Saver's once failed with "multiple
    # values for argument 'sharded'".
    with pytest.raises(ValueError, match="sharded=True"):
      save_utils.PartialRecoverySaver(None, None, False)
    with pytest.raises(ValueError, match="builder"):
      save_utils.PartialRecoverySaver(None, None, True, 5, 10000.0, False,
                                      False, None, None)
    saver = save_utils.PartialRecoverySaver(None, None, True, 3)
    assert saver._max_to_keep == 3
    assert saver.saver_def.sharded
    assert save_utils.PsMonitor(0).num_ps == 0


def test_model_dir_fingerprints():
  fingerprint = save_utils.model_dir_fingerprint
  assert fingerprint(None) == 0
  assert fingerprint(pathlib.Path("/tmp/x")) == fingerprint("/tmp/x/")
  assert fingerprint("hdfs://nn/x/") == fingerprint("hdfs://nn/x")
  assert fingerprint("hdfs://nn/x") != fingerprint("hdfs://nn/y")
  # Other spellings of one directory: a restart spelling it so would take
  # every PS task for another job's and roll it back to the checkpoint.
  assert fingerprint("file:///tmp/x") == fingerprint("/tmp/x")
  assert fingerprint("gs://b//m/./") == fingerprint("gs://b/m")
  assert fingerprint("gs://b/../m") != fingerprint("gs://m")
  assert fingerprint("hdfs:///x") != fingerprint("hdfs://x/")
  # As PS tasks set up by an earlier version recorded them.
  assert fingerprint("hdfs://nn/x") == int.from_bytes(
      hashlib.sha256(b"hdfs://nn/x").digest()[:8], "little", signed=True)


@pytest.mark.parametrize("device, task", [
    ("/job:ps/task:3", 3),
    ("/job:ps/replica:0/task:1/device:CPU:0", 1),
    ("/job:ps", 0),
    ("/job:worker/task:1", None),
    ("", None),
    ("/device:CPU:0", None),
])
def test_ps_task_of_device(device, task):
  assert utils.ps_task_of_device(device) == task
