"""Tests for test_utils and utils."""

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from unittest import mock

import pytest
import tensorflow as tf

from monolith.native_training import hash_table_utils
from monolith.native_training import test_utils
from monolith.native_training import utils


def test_generate_test_hash_table_config():
  config = test_utils.generate_test_hash_table_config(3, learning_rate=0.5)
  table_config = config.table_config
  assert table_config.WhichOneof("type") == "cuckoo"
  assert hash_table_utils.infer_dim_size(table_config) == 3
  (segment,) = table_config.entry_config.segments
  assert segment.init_config.WhichOneof("type") == "zeros"
  assert segment.opt_config.WhichOneof("type") == "sgd"
  assert not segment.opt_config.stochastic_rounding_float16
  assert segment.comp_config.WhichOneof("type") == "fp32"
  assert config.learning_rate_fns == [0.5]


def test_defaults_and_float16():
  config = test_utils.generate_test_hash_table_config(use_float16=True)
  (segment,) = config.table_config.entry_config.segments
  assert segment.dim_size == 2
  assert segment.opt_config.stochastic_rounding_float16
  assert config.learning_rate_fns == [1.0]


def test_same_arguments_give_same_config():
  assert str(test_utils.generate_test_hash_table_config(2)) == str(
      test_utils.generate_test_hash_table_config(2))
  assert str(test_utils.generate_test_hash_table_config(2)) != str(
      test_utils.generate_test_hash_table_config(4))


def test_create_test_ps_cluster_runs_a_graph_across_the_tasks():
  servers, config = test_utils.create_test_ps_cluster(1)
  assert len(servers) == 2
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [])
    with tf.device(utils.ps_device(0)):
      on_ps = x * 2
    on_worker = on_ps + 1
    run_metadata = tf.compat.v1.RunMetadata()
    with tf.compat.v1.Session(servers[0].target, config=config) as sess:
      assert sess.run(on_worker, {x: 3},
                      options=tf.compat.v1.RunOptions(
                          output_partition_graphs=True),
                      run_metadata=run_metadata) == 7
  # Ops without a device run on the worker.
  devices = {(node.op, node.device.split("/device:")[0])
             for g in run_metadata.partition_graphs for node in g.node}
  assert ("Mul", "/job:ps/replica:0/task:0") in devices
  assert ("AddV2", "/job:worker/replica:0/task:0") in devices


def test_create_test_ps_cluster_rejects_a_negative_count():
  with pytest.raises(ValueError, match="num_ps must be >= 0, got -1"):
    test_utils.create_test_ps_cluster(-1)


def _record_fsyncs(monkeypatch) -> list:
  """The paths os.fsync syncs from now on (they are still synced)."""
  synced = []
  real_fsync = os.fsync

  def fsync(fd):
    synced.append(os.readlink(f"/proc/self/fd/{fd}"))
    real_fsync(fd)

  monkeypatch.setattr(os, "fsync", fsync)
  return synced


def test_write_file_atomically_keeps_the_only_copy(tmp_path, monkeypatch):
  path = str(tmp_path / "g.num_ps")
  utils.write_file_atomically(path, "2\n")
  # A failed rename that left the old file: the temporary goes.
  monkeypatch.setattr(utils, "replace_file",
                      test_utils.failing_replace_file(False))
  with pytest.raises(tf.errors.UnavailableError):
    utils.write_file_atomically(path, "3\n")
  assert os.listdir(tmp_path) == ["g.num_ps"]
  # One that deleted it: the temporary, the only copy, stays.
  monkeypatch.setattr(utils, "replace_file",
                      test_utils.failing_replace_file(True))
  with pytest.raises(tf.errors.UnavailableError):
    utils.write_file_atomically(path, "3\n")
  [kept] = os.listdir(tmp_path)
  assert kept.startswith("g.num_ps.tmp-")
  with open(tmp_path / kept) as f:
    assert f.read() == "3\n"
  # A first write (nothing there before) loses nothing: the temporary goes.
  os.remove(tmp_path / kept)
  with pytest.raises(tf.errors.UnavailableError):
    utils.write_file_atomically(path, "4\n")
  assert os.listdir(tmp_path) == []


def test_fsync_local_syncs_local_paths_and_leaves_others(tmp_path, monkeypatch):
  file_path = tmp_path / "f"
  file_path.write_bytes(b"x")
  synced = _record_fsyncs(monkeypatch)
  utils.fsync_local(str(file_path))
  utils.fsync_local(str(tmp_path))
  utils.fsync_local("file://" + str(file_path))
  assert synced == [str(file_path), str(tmp_path), str(file_path)]
  utils.fsync_local("gs://bucket/folder/f")  # another file system's
  assert len(synced) == 3
  with pytest.raises(FileNotFoundError):
    utils.fsync_local(str(tmp_path / "missing"))


def test_makedirs_durably_syncs_each_new_folders_parent(tmp_path,
                                                       monkeypatch):
  (tmp_path / "a").mkdir()
  synced = _record_fsyncs(monkeypatch)
  utils.makedirs_durably(str(tmp_path / "a" / "b" / "c") + "/")
  assert (tmp_path / "a" / "b" / "c").is_dir()
  assert synced == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]
  utils.makedirs_durably(str(tmp_path / "a" / "b"))  # exists: nothing new
  utils.makedirs_durably("file://" + str(tmp_path / "d"))
  assert (tmp_path / "d").is_dir()
  assert synced == [str(tmp_path / "a"), str(tmp_path / "a" / "b"),
                    str(tmp_path)]
  # A folder in the root: the root is synced (file:// included).
  with mock.patch.object(tf.io.gfile, "makedirs") as makedirs, \
       mock.patch.object(utils, "missing_folders",
                         return_value=["/new_top"]):
    utils.makedirs_durably("file:///new_top")
  makedirs.assert_called_once_with("/new_top")
  assert synced[-1] == "/"


def test_fsync_local_accepts_file_systems_without_fsync(tmp_path,
                                                         monkeypatch):
  def unsupported(fd):
    raise OSError(errno.EINVAL, "Invalid argument")

  monkeypatch.setattr(os, "fsync", unsupported)
  utils.fsync_local(str(tmp_path))  # nothing more to make durable

  def failing(fd):
    raise OSError(errno.EIO, "Input/output error")

  monkeypatch.setattr(os, "fsync", failing)
  with pytest.raises(OSError, match="Input/output error"):
    utils.fsync_local(str(tmp_path))


def test_run_in_threads_runs_every_thread_and_returns_their_errors():
  with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
    counter = tf.compat.v1.Variable(0, dtype=tf.int64, use_resource=True)
    count = counter.assign_add(1)
    sess.run(counter.initializer)
    assert test_utils.run_in_threads(sess, count, runs=5, threads=3) == []
    assert sess.run(counter) == 15
    failing = tf.debugging.check_numerics(tf.constant(float("nan")), "nan")
    errors = test_utils.run_in_threads(sess, failing, runs=2, threads=3)
    assert len(errors) == 3
    assert all(isinstance(e, tf.errors.InvalidArgumentError) for e in errors)


def test_replace_file_syncs_the_temporary_then_the_folder(tmp_path,
                                                          monkeypatch):
  path = tmp_path / "out"
  path.write_bytes(b"old")
  tmp = tmp_path / "out.tmp"
  tmp.write_bytes(b"new")
  synced = _record_fsyncs(monkeypatch)
  utils.replace_file(str(tmp), str(path))
  assert path.read_bytes() == b"new"
  assert not tmp.exists()
  assert synced == [str(tmp), str(tmp_path)]


_TASK = """
import time
from monolith.native_training import utils
utils.die_with_launcher()
print("armed", flush=True)
time.sleep(600)
"""

_LAUNCHER = """
import os, subprocess, sys, time
from monolith.native_training import utils
task = subprocess.Popen([sys.executable, "-c", sys.argv[1]],
                        env=utils.launcher_env(os.environ))
print(task.pid, flush=True)
task.wait()  # a task that ends early ends this too, and the test's reads
"""


def _gone(pid: int) -> bool:
  """Whether process `pid` has ended (a zombie nobody reaped counts)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
  except FileNotFoundError:
    return True


def test_a_task_dies_with_its_launcher():
  env = utils.python_child_env()
  launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, _TASK],
                              env=env, stdout=subprocess.PIPE, text=True)
  task = None
  try:
    task = int(launcher.stdout.readline())
    assert launcher.stdout.readline() == "armed\n"
    launcher.kill()
    launcher.wait(30)
    deadline = time.monotonic() + 30
    while not _gone(task) and time.monotonic() < deadline:
      time.sleep(0.05)
    assert _gone(task)
  finally:
    launcher.kill()
    if task is not None:
      with contextlib.suppress(ProcessLookupError):
        os.kill(task, signal.SIGKILL)


def test_a_task_whose_launcher_is_gone_ends_at_once():
  # Its parent is not the launcher named (no process has pid 0): the
  # launcher died before the task asked for the signal.
  env = utils.python_child_env(**{utils.LAUNCHER_PID_ENV: "0"})
  task = subprocess.run([sys.executable, "-c", _TASK], env=env,
                        capture_output=True, text=True, timeout=200)
  assert task.returncode == 1, task.stderr[-2000:]
  assert (f"launcher 0 is gone (this task's parent is now {os.getpid()}): "
          "exiting") in task.stderr, task.stderr[-2000:]
  assert "armed" not in task.stdout
