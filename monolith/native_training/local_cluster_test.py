"""Runs local_cluster's launcher: real PS and worker processes on loopback.

A 2-PS, 2-worker cluster trains and checkpoints, and a 3-PS cluster resumes
from its checkpoint; a SIGKILLed PS task is restarted, restored from the
latest checkpoint by the chief and training goes on; without recovery a
worker fails naming the lost task; SIGTERM stops every task (the chief
saving first), and a worker waiting for its chief at once.
"""

import glob
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from typing import Callable, Dict, List, Set

from absl import app
from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training import local_cluster
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils
from monolith.native_training import test_utils
from monolith.native_training import utils

_MODULE = "monolith.native_training.local_cluster"


def _launch(model_dir: str, *flags: str, num_ps: int = 2) -> subprocess.Popen:
  env = utils.python_child_env()
  return subprocess.Popen(
      [sys.executable, "-m", _MODULE, f"--num_ps={num_ps}", "--num_workers=2",
       f"--model_dir={model_dir}", "--batch_size=64", "--vocab_size=100",
       "--learning_rate=0.1", "--log_every_secs=0.5", *flags],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      env=env)


def _run_to_the_end(model_dir: str, *flags: str, num_ps: int = 2) -> str:
  """Runs a cluster until it exits (killed after 240 s); checks that it
  exited 0 and returns its output."""
  launcher = _launch(model_dir, *flags, num_ps=num_ps)
  try:
    out, _ = launcher.communicate(timeout=240)
  finally:
    launcher.kill()
  out = out.decode(errors="replace")
  assert launcher.returncode == 0, out
  return out


class _Output:
  """Collects a launcher's output lines; waits for lines matching a regex."""

  def __init__(self, launcher: subprocess.Popen):
    self._lines = []
    self._changed = threading.Condition()
    self._thread = threading.Thread(target=self._read, args=(launcher,),
                                    daemon=True)
    self._thread.start()

  def _read(self, launcher: subprocess.Popen) -> None:
    for line in iter(launcher.stdout.readline, b""):
      with self._changed:
        self._lines.append(line.decode(errors="replace"))
        self._changed.notify_all()

  def text(self) -> str:
    with self._changed:
      return "".join(self._lines)

  def wait_for(self, pattern: str, timeout: float,
               accept: Callable[[re.Match], bool] = lambda m: True,
               after: int = 0) -> re.Match:
    """The first match of `pattern` in a line from line `after` on."""
    deadline = time.time() + timeout
    with self._changed:
      while True:
        for line in self._lines[after:]:
          match = re.search(pattern, line)
          if match and accept(match):
            return match
        left = deadline - time.time()
        assert left > 0, f"no line matching {pattern!r}:\n{self.text()}"
        self._changed.wait(left)

  def num_lines(self) -> int:
    with self._changed:
      return len(self._lines)

  def join(self, timeout: float) -> None:
    self._thread.join(timeout)


def _latest_step(model_dir: str) -> int:
  latest = tf.train.latest_checkpoint(model_dir)
  return int(latest.rsplit("-", 1)[1]) if latest else -1


def _wait_for_checkpoint(model_dir: str, step: int, output: _Output) -> None:
  """Waits up to 60 s for a checkpoint of `step` or later in `model_dir`."""
  deadline = time.time() + 60
  while _latest_step(model_dir) < step:
    assert time.time() < deadline, output.text()
    time.sleep(0.2)


def _entry_counts(ckpt_prefix: str, ps_index: int) -> Dict[str, int]:
  """Entries per table that PS `ps_index` saved in a checkpoint."""
  names, counts = multi_hash_table_ops.hash_table_ops.\
      monolith_multi_hash_table_feature_stat(
          f"{ckpt_prefix}.assets/MonolithMultiHashTable_{ps_index}")
  return dict(zip(names.numpy().astype(str), counts.numpy().tolist()))


def _saved_ids(ckpt_prefix: str, ps_index: int) -> Set[int]:
  """The ids (of all its tables) that PS `ps_index` saved in a checkpoint:
  each record is an EntryDump, its id (field 1, sfixed64) first."""
  basename = f"{ckpt_prefix}.assets/MonolithMultiHashTable_{ps_index}"
  digits = "[0-9]" * 5
  files = tf.io.gfile.glob(f"{glob.escape(basename)}-{digits}-of-{digits}")
  ids = set()
  dataset = tf.data.TFRecordDataset(sorted(files), compression_type="SNAPPY")
  for batch in dataset.batch(1 << 16):
    for record in batch.numpy():
      assert record[:1] == b"\x09", record[:16]
      ids.add(struct.unpack_from("<q", record, 1)[0])
  return ids


def _processes_with(*markers: str) -> List[int]:
  """Pids of the processes whose command line contains every marker (the
  arguments are NUL-separated)."""
  pids = []
  for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
      continue
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().decode(errors="replace")
    except OSError:
      continue
    if all(marker in cmdline for marker in markers):
      pids.append(int(pid))
  return pids


def _sigkill_once_both_workers_train(launcher: subprocess.Popen,
                                     output: _Output,
                                     task_pid: Callable[[], int]) -> str:
  """SIGKILLs the task `task_pid()` names once both workers trained a step;
  the launcher's output once it exited (killed if it does not in 90 s)."""
  try:
    for i in range(2):
      output.wait_for(rf"\[worker{i}\] worker {i}: step \d+", 90)
    os.kill(task_pid(), signal.SIGKILL)
    launcher.wait(90)
  finally:
    launcher.kill()
  output.join(10)
  return output.text()


def _no_tasks_left(model_dir: str) -> List[int]:
  """Waits a little for the tasks to vanish; returns those still there."""
  deadline = time.time() + 5
  while True:
    left = _processes_with(f"--model_dir={model_dir}")
    if not left or time.time() > deadline:
      return left
    time.sleep(0.1)


def _floats(pattern: str, text: str) -> List[float]:
  return [float(x) for x in re.findall(pattern, text)]


def test_trains_checkpoints_and_stops_every_task(tmp_path):
  model_dir = str(tmp_path / "ctr")
  # Enough steps that worker 1, which joins once the chief's setup is done
  # (a second or more of the chief's training, more on a loaded machine),
  # trains long enough to log rates.
  out = _run_to_the_end(model_dir, "--steps=1000", "--save_steps=500",
                        "--log_every_secs=0.1")
  assert "local_cluster: all 2 workers finished; stopping 2 PS tasks" in out
  summed = [0.0, 0.0, 0.0]
  for i in range(2):
    assert re.search(rf"\[ps{i}\] ps {i}: serving grpc://127\.0\.0\.1:\d+",
                     out), out
    assert re.search(
        rf"\[worker{i}\] worker {i}: step \d+ global_step \d+ loss [\d.]+ "
        r"examples/s \d+ ids/s \d+ ids/s per PS \[\d+ \d+\]", out), out
    (summary,) = re.findall(rf"\[worker{i}\] worker {i}: summary: .*", out)
    rates = re.search(
        r"examples \d+ ids \d+ secs [\d.]+ examples/s \d+ "
        r"ids/s (\d+) ids/s per PS \[(\d+) (\d+)\]", summary)
    assert rates, summary
    ids_per_s, ps0, ps1 = (float(x) for x in rates.groups())
    # Each PS serves the distinct ids that live on it: fewer than all ids
    # (vocab 100: most repeat within a step).
    assert 0 < ps0 and 0 < ps1 and ps0 + ps1 < ids_per_s, summary
    summed = [s + x for s, x in zip(summed, (ids_per_s, ps0, ps1))]
  # The cluster's rates: the workers' summed.
  cluster = re.search(
      r"local_cluster: 2 of 2 workers' summaries: examples/s \d+ ids/s "
      r"(\d+) ids/s per PS \[(\d+) (\d+)\]", out)
  assert cluster, out
  assert [float(x) for x in cluster.groups()] == summed, (cluster[0], summed)
  firsts = _floats(r"loss_first ([\d.]+)", out)
  lasts = _floats(r"loss_last ([\d.]+)", out)
  assert len(firsts) == len(lasts) == 2
  assert all(0 < x < 10 for x in firsts + lasts), out
  # The workers share the tables: together they learn.
  assert sum(lasts) < sum(firsts), out
  # The chief's checkpoints: dense variables (one shard per PS) and each PS's
  # hash tables in the checkpoint's asset directory.
  with open(os.path.join(model_dir, "checkpoint")) as f:
    (step,) = re.findall(r'^model_checkpoint_path: ".*model\.ckpt-(\d+)"',
                         f.read(), re.M)
  assert int(step) >= 1000
  prefix = os.path.join(model_dir, f"model.ckpt-{step}")
  assert os.path.exists(prefix + ".index")
  assets = os.listdir(prefix + ".assets")
  for i in range(2):
    assert any(
        re.fullmatch(rf"MonolithMultiHashTable_{i}-00000-of-\d{{5}}", a)
        for a in assets), assets
  assert _no_tasks_left(model_dir) == []

  # A fresh cluster of 3 PS tasks resumes from that checkpoint.
  out = _run_to_the_end(model_dir, "--steps=1500", "--save_steps=500",
                        num_ps=3)
  assert f"worker 0: resuming from {prefix}" in out, out
  assert f"worker 0: PS task(s) 0, 1, 2 restored from {prefix}" in out, out
  # Training went on from the checkpoint's global step (progress lines: a
  # worker that joined after the last step sums up "global_step 0") to the
  # last save.
  steps = [int(x) for x in re.findall(r"\bstep \d+ global_step (\d+)", out)]
  assert steps and min(steps) > int(step), out
  assert _latest_step(model_dir) >= 1500
  assert _no_tasks_left(model_dir) == []

  # Run again on the finished model_dir: no worker trains a step. (Its
  # global step, which another worker may have moved past the save's name.)
  done = int(tf.train.load_variable(tf.train.latest_checkpoint(model_dir),
                                    "global_step"))
  out = _run_to_the_end(model_dir, f"--steps={done}", num_ps=3)
  assert re.findall(r"summary: steps (\d+) global_step (\d+)", out) == [
      ("0", str(done))
  ] * 2, out
  assert int(tf.train.load_variable(tf.train.latest_checkpoint(model_dir),
                                    "global_step")) == done
  assert _no_tasks_left(model_dir) == []

  # With another --dim the chief says why it cannot resume (the restore's
  # own error named the PS tasks holding the variables).
  launcher = _launch(model_dir, f"--steps={done + 100}", "--dim=4")
  try:
    out = launcher.communicate(timeout=240)[0].decode(errors="replace")
  finally:
    launcher.kill()
  assert launcher.returncode == 1, out
  assert re.search(r"worker 0: cannot resume from \S+: it was written by "
                   r"another model, or of other flags \(--num_slots, --dim, "
                   r"--hidden\): \S+ is \[\d+, \d+\] there, "
                   r"\[\d+, \d+\] here", out), out
  # (The chief had exited: no save of its is announced.)
  assert "stopping the workers first (up to" in out, out
  assert _no_tasks_left(model_dir) == []


# PS 0 holds the global step (replica_device_setter places it first):
# killing it takes the step back to the checkpoint's too.
@pytest.mark.parametrize("killed", [1, 0])
def test_killed_ps_is_restarted_and_restored(tmp_path, killed):
  kept = 1 - killed
  model_dir = str(tmp_path / "ctr")
  # Many distinct ids, so that the tables keep growing: a PS restarted
  # empty and not restored would hold fewer entries at the next save.
  launcher = _launch(model_dir, "--steps=100000000", "--save_steps=100",
                     "--vocab_size=1000000", "--keep_checkpoints=100")
  output = _Output(launcher)
  try:
    pid = int(output.wait_for(
        rf"\[ps{killed}\] ps {killed}: serving \S+ \(pid (\d+)\)", 60)[1])
    output.wait_for(r"global_step (\d+)", 90,
                    accept=lambda m: int(m[1]) >= 250)
    # Worker 1 trains (it has a session to lose) and a checkpoint is there
    # to restore: on a loaded machine worker 1 can pass step 250 while the
    # chief still saves its first one.
    output.wait_for(r"\[worker1\] worker 1: step \d+", 90)
    _wait_for_checkpoint(model_dir, 100, output)
    os.kill(pid, signal.SIGKILL)
    output.wait_for(rf"local_cluster: ps{killed} exited with code -9; "
                    r"restarting it \(restart 1 of 3\)", 60)
    restored = output.wait_for(
        rf"\[worker0\] worker 0: PS task\(s\) {killed} restored from (\S+)",
        90)[1]
    restored_step = int(restored.rsplit("-", 1)[1])
    assert restored_step >= 100
    for i in range(2):
      output.wait_for(rf"\[worker{i}\] worker {i}: training again after", 60)
    # The next checkpoints after the restore.
    mark = output.num_lines()
    output.wait_for(r"global_step (\d+)", 90, after=mark,
                    accept=lambda m: int(m[1]) >= restored_step + 250)
    _wait_for_checkpoint(model_dir, restored_step + 200, output)
    # A closed terminal stops it as SIGTERM does (the chief saves).
    launcher.send_signal(signal.SIGHUP)
    launcher.wait(30)
  finally:
    launcher.kill()
  output.join(10)
  out = output.text()
  assert launcher.returncode == 128 + signal.SIGHUP, out
  assert "local_cluster: got SIGHUP; stopping" in out, out
  assert re.search(
      r"\[ps%d\] ps %d: serving \S+ \(pid (?!%d\))" % (killed, killed, pid),
      out), out
  # The other PS task kept running, and was not restored.
  assert not re.search(rf"PS task\(s\) {kept}",
                       out.split("restart 1 of 3")[1])
  # The killed task came back with every entry of the restored checkpoint.
  before = _entry_counts(restored, killed)
  after = _entry_counts(tf.train.latest_checkpoint(model_dir), killed)
  assert sorted(before) == sorted(after) and len(before) == 4, (before, after)
  for table, count in before.items():
    assert count > 0 and after[table] >= count, (before, after)
  # Every id, not only as many: new ids trained since would hide lost ones
  # in the counts.
  restored_ids = _saved_ids(restored, killed)
  assert len(restored_ids) > 0
  lost = restored_ids - _saved_ids(tf.train.latest_checkpoint(model_dir),
                                   killed)
  assert not lost, f"{len(lost)} ids of {len(restored_ids)} lost, e.g. " + (
      str(sorted(lost)[:5]))
  assert _no_tasks_left(model_dir) == []


def test_lost_ps_fails_the_workers_naming_it(tmp_path):
  model_dir = str(tmp_path / "ctr")
  # The workers would wait --ps_recovery_secs (120 s) for it; the launcher,
  # which will not restart it, tells them to stop waiting.
  launcher = _launch(model_dir, "--steps=100000000", "--max_ps_restarts=0")
  output = _Output(launcher)
  out = _sigkill_once_both_workers_train(
      launcher, output, lambda: int(
          output.wait_for(r"\[ps1\] ps 1: serving \S+ \(pid (\d+)\)",
                          60)[1]))
  assert launcher.returncode == 1, out
  assert re.search(r"local_cluster: (ps1 exited with code -9|worker\d exited "
                   r"with code 1); stopping the cluster", out), out
  # Each worker says which task it lost.
  for i in range(2):
    assert re.search(
        rf"\[worker{i}\] worker {i}: failed after \d+ steps: (\w+Error "
        r"involving [^\n]*/job:ps/replica:0/task:1|/job:ps/task:1 \(\S+\) "
        r"will not come back)", out), out
  assert _no_tasks_left(model_dir) == []


# The launcher as `main` runs it, except that the first ports it picks
# include one this process listens on (taken between pick and bind).
_LAUNCH_WITH_A_TAKEN_PORT = """
import socket
import sys

from absl import app

from monolith.native_training import local_cluster
from monolith.native_training import utils

taken = socket.socket()
taken.bind(("0.0.0.0", 0))
taken.listen()
picks = []


def free_ports(n):
  ports = real_free_ports(n)
  if not picks:
    ports[0] = taken.getsockname()[1]
  picks.append(ports)
  return ports


real_free_ports, utils.free_ports = utils.free_ports, free_ports
sys.argv[0] = "local_cluster"
app.run(local_cluster.main)
"""


_SAY_CHILD = """
import sys, time
from monolith.native_training import local_cluster
time.sleep(0.5)  # the reader is gone by now
local_cluster._say("x" * 100000)
local_cluster._say("after")
sys.stderr.write("survived")
"""


def test_a_closed_stdout_does_not_stop_the_launcher():
  # `| tee log` killed by the same Ctrl-C: the launcher's next line raised
  # BrokenPipeError in the middle of its shutdown, before the chief's last
  # save.
  child = subprocess.Popen(
      [sys.executable, "-c", _SAY_CHILD],
      env=utils.python_child_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  child.stdout.close()
  _, stderr = child.communicate(timeout=120)
  assert child.returncode == 0, stderr.decode()
  assert stderr.decode().endswith("survived"), stderr.decode()


def test_a_taken_port_starts_the_cluster_again_on_new_ports(tmp_path):
  env = utils.python_child_env()
  launcher = subprocess.run(
      [sys.executable, "-c", _LAUNCH_WITH_A_TAKEN_PORT, "--num_ps=1",
       "--num_workers=1", f"--model_dir={tmp_path / 'ctr'}", "--steps=20",
       "--save_steps=10", "--batch_size=16", "--vocab_size=100"],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=240)
  out = launcher.stdout.decode(errors="replace")
  assert launcher.returncode == 0, out
  assert re.search(r"\[ps0\] ps 0: cannot listen on 127\.0\.0\.1:\d+ \(is its "
                   r"port taken\?\)", out), out
  assert ("local_cluster: ps0 could not listen on its port (another process "
          "took it after the launcher picked it); stopping the cluster") in out
  assert "local_cluster: starting every task again on new ports (attempt 2 " \
      "of 3)" in out
  assert len(re.findall(r"^local_cluster: ps 127", out, re.M)) == 2, out
  assert "local_cluster: all 1 workers finished" in out
  assert _latest_step(str(tmp_path / "ctr")) == 20, out


def test_unreachable_ps_tasks_are_named():
  with socket.socket() as listening, socket.socket() as closed:
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: refuses
    up = "127.0.0.1:%d" % listening.getsockname()[1]
    down = "127.0.0.1:%d" % closed.getsockname()[1]
    cluster = tf.train.ClusterSpec({"ps": [up, down], "worker": [down]})
    assert local_cluster._unreachable_ps_tasks(cluster) == [
        f"/job:ps/task:1 ({down})"]
    # An error that names no task (a session not ready in time) names the
    # PS tasks that refuse connections.
    error = tf.errors.DeadlineExceededError(
        None, None, "Session was not ready after waiting 60 secs.")
    assert local_cluster._tasks_named(error, 1, cluster) == (
        f"/job:ps/task:1 ({down}), unreachable")


def test_a_worker_names_the_ps_tasks_it_waits_for_at_start(
    monkeypatch, capsys):
  clock = [0.0]
  monkeypatch.setattr(local_cluster.time, "monotonic", lambda: clock[0])
  with socket.socket() as late, socket.socket() as up:
    late.bind(("127.0.0.1", 0))  # bound, not listening: refuses
    up.bind(("127.0.0.1", 0))
    up.listen()
    address = "127.0.0.1:%d" % late.getsockname()[1]
    cluster = tf.train.ClusterSpec({
        "ps": ["127.0.0.1:%d" % up.getsockname()[1], address]})

    def sleep(secs):
      clock[0] += secs
      if clock[0] >= 75:
        late.listen()  # PS 1 starts

    monkeypatch.setattr(local_cluster.time, "sleep", sleep)
    assert not local_cluster._wait_for_ps_tasks(
        3, cluster, local_cluster._RecoveryWait(60))
  assert clock[0] == 75
  assert capsys.readouterr().out == (
      f"worker 3: waiting 10 s for /job:ps/task:1 ({address}) to start\n"
      f"worker 3: waiting 70 s for /job:ps/task:1 ({address}) to start\n")


def test_a_worker_waiting_for_ps_tasks_at_start_stops_when_given_up(
    monkeypatch):
  # It waited for a PS task the launcher no longer restarts until the
  # launcher's SIGTERM ended it, silently.
  clock = [0.0]
  monkeypatch.setattr(local_cluster.time, "monotonic", lambda: clock[0])
  recovery = local_cluster._RecoveryWait(60)

  def sleep(secs):
    clock[0] += secs
    if clock[0] == 5:
      recovery.give_up()  # the launcher's SIGUSR1
    if clock[0] > 100:
      raise AssertionError("still waiting after it was given up")

  monkeypatch.setattr(local_cluster.time, "sleep", sleep)
  with socket.socket() as late:
    late.bind(("127.0.0.1", 0))  # bound, not listening: refuses
    address = "127.0.0.1:%d" % late.getsockname()[1]
    cluster = tf.train.ClusterSpec({"ps": [address]})
    gone = local_cluster._wait_for_ps_tasks(3, cluster, recovery)
  assert gone == [f"/job:ps/task:0 ({address})"]
  assert clock[0] == 5


def test_a_task_told_to_give_up_before_its_handler_is_not_killed():
  # The signal's default action ended a worker that had no handler yet
  # (still importing TF, or starting): the report the signal asks for was
  # lost. Tasks start with it ignored.
  child = local_cluster._Task(
      "w", [
          sys.executable, "-c", "import os, signal; "
          f"os.kill(os.getpid(), {int(local_cluster._GIVE_UP_SIGNAL)})"
      ], utils.python_child_env(), threading.Lock())
  assert child.process.wait(60) == 0
  child.join_output(5)
  # The launcher's own handling is as it was.
  assert signal.getsignal(local_cluster._GIVE_UP_SIGNAL) == signal.SIG_DFL


def test_a_second_stop_signal_ends_a_worker_at_once():
  # The first ends training after the step and lets the chief save; a
  # second was swallowed too, so a save that hung held the task until
  # SIGKILL.
  stop = local_cluster._StopAfterStep()
  previous = {s: signal.getsignal(s) for s in local_cluster._STOP_SIGNALS}
  try:
    for s in local_cluster._STOP_SIGNALS:
      signal.signal(s, stop)
    signal.raise_signal(signal.SIGTERM)
    assert stop.requested.is_set() and stop.signals == [signal.SIGTERM]
    assert all(
        signal.getsignal(s) == signal.SIG_DFL
        for s in local_cluster._STOP_SIGNALS)
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def test_lost_tasks_are_named_with_or_without_replica():
  error = tf.errors.UnavailableError(
      None, None, "from /job:worker/replica:0/task:1 and /job:ps/task:2, "
      "/job:ps/replica:0/task:0")
  assert local_cluster._tasks_named(error, 1) == (
      "/job:ps/replica:0/task:0, /job:ps/task:2")
  error = tf.errors.UnavailableError(None, None, "from /job:worker/task:0")
  assert local_cluster._tasks_named(error, 0) == "this worker"


def test_progress_rates_leave_out_a_recovery_wait(monkeypatch, capsys):
  clock = [0.0]
  monkeypatch.setattr(local_cluster.time, "monotonic", lambda: clock[0])
  progress = local_cluster._Progress(0, 1)
  ids = np.zeros([1, 10, 1], np.int64)  # 10 examples a step

  def step_at(t):
    clock[0] = t
    progress.add(ids, 0.5, 1, log_every_secs=5)

  for t in range(5):  # the first step starts the clock; 4 more by t=4
    step_at(float(t))
  clock[0] = 34.0  # a PS was lost after t=4 and came back 30 s later
  progress.restart_clock()
  step_at(35.0)  # 5 s of training since the first step: 5 steps, 50 examples
  lines = capsys.readouterr().out.splitlines()
  assert lines[-1].startswith("worker 0: step 6 ")
  assert "examples/s 10 ids/s 10 " in lines[-1]
  progress.summary()
  assert "examples/s 10 " in capsys.readouterr().out


def test_random_ctr_data_takes_any_vocab_size():
  """Hidden weights come from a hash of (slot, id), not a table of
  vocab_size weights (--vocab_size=10**9 needed 32 GB per worker): the
  same in every process, about N(0, 1), different per slot."""
  data = local_cluster.RandomCtrData(2, 3, 10**12, seed=1)
  ids, labels = data.batch(64)
  assert ids.shape == (2, 64, 3) and labels.shape == (64,)
  assert ids.max() < 10**12 and ids.max() > 10**9
  # The same in every process: fixed by the hash alone.
  np.testing.assert_allclose(
      local_cluster.RandomCtrData.hidden_weights(
          0, np.array([0, 1, 12345, 10**12])),
      [0.51774407, -0.40301579, -1.86152647, -0.13217142], rtol=1e-7)
  np.testing.assert_allclose(
      local_cluster.RandomCtrData.hidden_weights(3, np.array([7])),
      [0.51800836], rtol=1e-7)
  ids = np.arange(200000)
  weights = local_cluster.RandomCtrData.hidden_weights(0, ids)
  assert abs(weights.mean()) < 0.02 and abs(weights.std() - 1) < 0.02
  other_slot = local_cluster.RandomCtrData.hidden_weights(1, ids)
  assert abs(np.corrcoef(weights, other_slot)[0, 1]) < 0.02


def test_progress_losses_are_the_means_of_their_steps(monkeypatch, capsys):
  # A line's loss is the mean of the steps since the line before; the
  # summary's are those of the first and the last _LOSS_WINDOW steps.
  clock = [0.0]
  monkeypatch.setattr(local_cluster.time, "monotonic", lambda: clock[0])
  progress = local_cluster._Progress(0, 1)
  ids = np.zeros([1, 2, 1], np.int64)
  for step in range(1, 1001):
    clock[0] = float(step)
    progress.add(ids, float(step), step, log_every_secs=100)
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("worker 0: step 1 global_step 1 loss 1.0000")
  # Steps 2..101, then 102..201, ...
  assert lines[1].startswith("worker 0: step 101 global_step 101 loss "
                             "51.5000 "), lines[1]
  assert lines[2].startswith("worker 0: step 201 global_step 201 loss "
                             "151.5000 "), lines[2]
  progress.summary()
  summary = capsys.readouterr().out
  window = local_cluster._LOSS_WINDOW
  assert f"loss_first {(1 + window) / 2:.4f} " in summary, summary
  assert f"loss_last {1000 - (window - 1) / 2:.4f}" in summary, summary
  # A long run keeps no loss per step.
  tracemalloc.start()
  try:
    before = tracemalloc.get_traced_memory()[0]
    for step in range(1001, 21001):
      progress.add(ids, float(step), step, log_every_secs=1e9)
    grown = tracemalloc.get_traced_memory()[0] - before
  finally:
    tracemalloc.stop()
  assert grown < 100_000, grown


def test_only_process_groups_with_members_count_as_a_tasks_own():
  assert local_cluster._group_has_members(os.getpgrp())
  child = subprocess.Popen([sys.executable, "-c", "pass"],
                           start_new_session=True)
  child.wait()
  # Its group is empty: the number may be another group's by now.
  assert not local_cluster._group_has_members(child.pid)


def test_a_loss_while_the_chief_restores_gets_a_wait_of_its_own():
  recovery = local_cluster._RecoveryWait(limit_secs=120)
  assert not recovery.waiting() and not recovery.expired(1000)
  assert recovery.training_again(5) is None
  # PS 1 dies at 0; losses during the wait are part of it.
  assert recovery.lose(0)
  assert not recovery.lose(60) and not recovery.expired(119)
  assert recovery.expired(120)
  # It came back at 30 and the chief restores it for an hour (bounded by
  # --chief_setup_secs): a task lost again at 1000 is waited for 120 s
  # from then, not failed at once for the first loss's 120 s.
  recovery = local_cluster._RecoveryWait(limit_secs=120)
  recovery.lose(0)
  recovery.gone_seen()
  recovery.tasks_back()
  assert not recovery.waiting() and not recovery.expired(1000)
  assert recovery.lose(1000)
  assert not recovery.expired(1119) and recovery.expired(1120)
  recovery.gone_seen()
  recovery.tasks_back()
  # Training stopped at the first loss.
  assert recovery.training_again(1500) == 1500
  assert recovery.training_again(1600) is None


def test_a_model_dir_in_use_by_another_launcher_is_refused(tmp_path):
  held = local_cluster._lock_model_dir(str(tmp_path))
  try:
    with pytest.raises(app.UsageError,
                       match=re.escape(
                           f"--model_dir {tmp_path}/ is in use by another "
                           f"local_cluster (process {os.getpid()} holds ")):
      local_cluster._lock_model_dir(f"{tmp_path}/")
  finally:
    os.close(held)
  # Free once the holder is gone.
  os.close(local_cluster._lock_model_dir(f"file://{tmp_path}"))
  assert local_cluster._lock_model_dir("gs://bucket/model") is None
  # A lock file that cannot be opened is a usage error, not a traceback.
  (tmp_path / "other" / local_cluster._MODEL_DIR_LOCK).mkdir(parents=True)
  with pytest.raises(app.UsageError, match="cannot open its lock file .*"
                     "Is a directory"):
    local_cluster._lock_model_dir(str(tmp_path / "other"))


def test_a_session_not_ready_once_set_up_is_a_lost_task():
  # A PS restarting between the chief's restore and TF's readiness check
  # (a RuntimeError from TF's session manager): waited out as a loss.
  not_ready = RuntimeError(
      "Init operations did not make model ready.  Init op: init, init fn: "
      "None, local_init_op: group, error: Variables not initialized: w")
  lost = local_cluster._not_ready_as_lost_task(not_ready)
  assert isinstance(lost, local_cluster._LOST_TASK_ERRORS)
  assert "a PS task restarted meanwhile?" in lost.message
  assert "Variables not initialized: w" in lost.message
  assert local_cluster._not_ready_as_lost_task(
      RuntimeError("Graph is finalized and cannot be modified.")) is None


def test_a_session_a_lost_task_ended_is_closed_on_a_thread_of_its_own():
  # Its close may wait for the lost task for ever: never on the worker's
  # thread, and never keeping the worker alive; its hooks' end() (the
  # chief's last save) does not run.
  release = threading.Event()
  closing = threading.Event()
  closed_on = []

  class _BlockingTfSession:

    def close(self):
      closed_on.append(threading.current_thread())
      closing.set()
      release.wait(30)

  class _Session:

    def _tf_sess(self):
      return tf_sess

    def close(self):
      raise AssertionError("the session's hooks ran")

  tf_sess = _BlockingTfSession()
  try:
    local_cluster._abandon(_Session())
    assert closing.wait(30)
    assert closed_on[0] is not threading.current_thread()
    assert closed_on[0].daemon
  finally:
    release.set()


def test_losses_while_every_task_answers_fail_after_the_limit():
  # A hung PS, or --operation_timeout_ms shorter than a call: each new
  # session fails again while every port answers. Such losses are one
  # wait, from the first, until a step trains (they retried for ever).
  recovery = local_cluster._RecoveryWait(limit_secs=120)
  assert recovery.lose(0)
  for now in range(1, 120):
    recovery.tasks_back()  # nothing was gone: the wait goes on
    assert not recovery.lose(now) and not recovery.expired(now)
  assert recovery.expired(120)
  # The time new sessions took (the chief restoring a task that restarted
  # before it was seen gone) does not count.
  recovery = local_cluster._RecoveryWait(limit_secs=120)
  recovery.lose(0)
  recovery.tasks_back()
  recovery.pause(3600)
  assert not recovery.expired(3719) and recovery.expired(3720)
  # A step that trains ends it.
  recovery.trained()
  assert not recovery.waiting() and recovery.lose(500)
  assert not recovery.expired(619) and recovery.expired(620)


def test_a_worker_fails_when_its_chief_never_sets_up(monkeypatch):
  servers, config = test_utils.create_test_ps_cluster(0)
  with tf.Graph().as_default():
    tf.compat.v1.Variable(1.0)  # never initialized: never ready
    scaffold = tf.compat.v1.train.Scaffold()
    creator = local_cluster._WorkerSessionCreator(scaffold, servers[0].target,
                                                  config, max_wait_secs=2)
    with pytest.raises(tf.errors.FailedPreconditionError,
                       match="the chief did not set the session up within "
                       "--chief_setup_secs=2 s .*give every task the "
                       "chief's"):
      creator.create_session()


def test_a_worker_whose_ps_hosts_differ_from_the_chiefs_says_so():
  # The chief set the PS tasks up for 2 PS; this worker lists 1: it waited
  # --chief_setup_secs (an hour by default), then blamed --model_dir only.
  servers, config = test_utils.create_test_ps_cluster(2)
  config.isolate_session_state = False  # the worker's session sees the PS's
  with tf.Graph().as_default():
    chief_monitor = save_utils.PsMonitor(2)
    worker_monitor = save_utils.PsMonitor(1)
    with tf.compat.v1.Session(servers[0].target, config=config) as sess:
      chief_monitor.setup_ps_initialized_state(sess)
      assert worker_monitor.set_up_counts(sess) == [2]
    scaffold = tf.compat.v1.train.Scaffold(
        ready_op=worker_monitor.report_uninitialized_ps())
    creator = local_cluster._WorkerSessionCreator(scaffold, servers[0].target,
                                                  config, max_wait_secs=2,
                                                  ps_monitor=worker_monitor)
    with pytest.raises(tf.errors.FailedPreconditionError,
                       match="PS tasks were set up for 2 PS tasks, and this "
                       "worker's --ps_hosts lists 1: give every task the "
                       "chief's --ps_hosts; or a worker waits"):
      creator.create_session()


def test_bad_flags_are_refused(tmp_path):
  cases = (("--seed=-1", "--seed must be >= 0"),
          ("--seed=4294967295", "--seed + --num_workers - 1"),
          ("--ps_hosts=127.0.0.1:1", "--ps_hosts run one task "
           "of a cluster and need --task_type"),
          ("--model_dir=/proc/no/such", "--model_dir /proc/no/"
           "such: cannot create it"),
          ("--save_steps=0", "--save_steps must be >= 1"),
          ("--model_dir=", "--model_dir is empty"),
          ("--vocab_size=0", "--vocab_size must be >= 1"),
          (f"--vocab_size={(1 << 62) + 1}", "--vocab_size must be <= 2^62"),
          ("--chief_setup_secs=0",
           "--chief_setup_secs must be >= 1"),
          ("--stop_grace_secs=-1",
           "--stop_grace_secs must be >= 0"),
          ("--task_type=worker --ps_hosts=127.0.0.1:2222 "
           "--worker_hosts=127.0.0.1:2223 --task_index=1",
           "--task_index=1 is not a task of --worker_hosts (it "
           "lists 1: 0 to 0)"),
          ("--task_type=ps --ps_hosts=127.0.0.1 "
           "--worker_hosts=127.0.0.1:2223",
           "--ps_hosts: '127.0.0.1' is not host:port"),
          ("--task_type=ps --ps_hosts=127.0.0.1:2222 "
           "--worker_hosts=127.0.0.1:2223,127.0.0.1:2222",
           "127.0.0.1:2222 is listed twice in --ps_hosts and "
           "--worker_hosts"),
          # TF's servers listen on every interface.
          ("--task_type=ps --ps_hosts=localhost:2222 "
           "--worker_hosts=127.0.0.1:2222",
           "127.0.0.1:2222 is listed twice in --ps_hosts and "
           "--worker_hosts (as localhost:2222: one host)"),
          # --num_workers is the launcher's: a task counts --worker_hosts.
          ("--task_type=worker --task_index=2 --ps_hosts=a:1 "
           "--worker_hosts=a:2,b:2,c:2 --seed=4294967294",
           "--seed + 3 (the tasks of --worker_hosts) - 1 must be < 2^32"),
          ("--model_dir=/proc", "--model_dir /proc: cannot write in it"))
  # Four at a time: each process spends its time importing TF.
  for first in range(0, len(cases), 4):
    batch = cases[first:first + 4]
    launchers = [_launch(str(tmp_path / f"bad{first + i}"), *flag.split())
                 for i, (flag, _) in enumerate(batch)]
    try:
      for launcher, (flag, message) in zip(launchers, batch):
        out, _ = launcher.communicate(timeout=120)
        assert launcher.returncode != 0, flag
        assert message in out.decode(errors="replace"), (flag, out)
    finally:
      for launcher in launchers:
        if launcher.poll() is None:
          launcher.kill()
          launcher.wait()


class _FakeTask:

  def __init__(self, name, argv, env, lock):
    del argv, env, lock
    self.name = name
    self.process = subprocess.Popen([sys.executable, "-c", "pass"])
    self.process.wait()
    self.process.returncode = None  # as if running
    self.process.poll = lambda: None


def test_a_signal_as_the_launcher_stops_its_tasks_does_not_skip_that(
    monkeypatch, tmp_path):
  # A third signal just as the launcher's cleanup began raised out of it:
  # the tasks were left running.
  stopped = []
  monkeypatch.setattr(local_cluster, "_Task", _FakeTask)
  monkeypatch.setattr(local_cluster, "_say", lambda message: None)
  monkeypatch.setattr(local_cluster, "_stop_workers_first", lambda tasks: None)
  monkeypatch.setattr(local_cluster, "_stop", stopped.append)

  def interrupted_sleep(secs):
    raise local_cluster._Interrupted(signal.SIGINT)  # Ctrl-C while running

  monkeypatch.setattr(local_cluster.time, "sleep", interrupted_sleep)
  real_signal = signal.signal
  raised = []

  def signal_with_one_pending(signum, handler):
    # Where CPython runs a pending handler: at the first call of the
    # cleanup, which installs the handlers that only record signals.
    if handler is not local_cluster._raise_interrupted and not raised:
      raised.append(signum)
      raise local_cluster._Interrupted(signal.SIGTERM)
    return real_signal(signum, handler)

  monkeypatch.setattr(local_cluster.signal, "signal", signal_with_one_pending)
  previous = {s: signal.getsignal(s) for s in local_cluster._STOP_SIGNALS}
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS([
        "local_cluster", "--num_ps=1", "--num_workers=2",
        f"--model_dir={tmp_path}"
    ])
    exit_code = local_cluster._run_cluster({}, [])
  finally:
    flags.FLAGS.unparse_flags()
    for s, handler in previous.items():
      real_signal(s, handler)
  assert raised
  assert [[t.name for t in tasks] for tasks in stopped] == [
      ["ps0", "worker0", "worker1"]]
  assert exit_code == 128 + signal.SIGINT


def test_a_tasks_seed_is_checked_against_its_worker_hosts():
  # The launcher's --num_workers (2 by default) refused the last seed of a
  # one-worker cluster's task.
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS([
        "local_cluster", "--task_type=worker", "--ps_hosts=127.0.0.1:1",
        "--worker_hosts=127.0.0.1:2", f"--seed={2**32 - 1}"
    ])
    assert local_cluster._cluster_spec().num_tasks("worker") == 1
  finally:
    flags.FLAGS.unparse_flags()


def test_sigterm_stops_every_task(tmp_path):
  # No periodic save: only the chief's last one, before the PS stop.
  model_dir = str(tmp_path / "ctr")
  launcher = _launch(model_dir, "--steps=1000000", "--save_steps=1000000")
  output = _Output(launcher)
  try:
    # The chief's own step: worker 1 can train before the chief's session
    # is back, and a SIGTERM then ends the chief with nothing to save.
    output.wait_for(r"\[worker0\] worker 0: step \d+", 90)
    assert len(_processes_with(f"--model_dir={model_dir}")) >= 4
    launcher.send_signal(signal.SIGTERM)
    launcher.wait(30)
  finally:
    launcher.kill()
  output.join(10)
  out = output.text()
  assert launcher.returncode == 128 + signal.SIGTERM, out
  assert "local_cluster: got SIGTERM; stopping 4 tasks" in out
  assert "local_cluster: stopping the workers first" in out
  stopped = re.search(r"worker 0: got SIGTERM; stopping after (\d+) steps "
                      r"\(saving a checkpoint first\)", out)
  assert stopped and int(stopped.group(1)) > 0, out
  # The chief is stopped last (worker 1, if it had a session to stop,
  # first), so its save holds worker 1's last step.
  worker1_stop = out.find("worker 1: got SIGTERM")
  assert worker1_stop < stopped.start(), out
  assert f"local_cluster: stopped; exit code {128 + signal.SIGTERM}" in out
  assert _no_tasks_left(model_dir) == []
  # The last save holds the steps trained (global step past 0).
  with open(os.path.join(model_dir, "checkpoint")) as f:
    (step,) = re.findall(r'^model_checkpoint_path: ".*model\.ckpt-(\d+)"',
                         f.read(), re.M)
  assert int(step) > 0, out


def test_a_failed_worker_stops_the_others_after_the_chiefs_last_save(
    tmp_path):
  # No periodic save: only the chief's last one, while the PS tasks are up.
  model_dir = str(tmp_path / "ctr")
  launcher = _launch(model_dir, "--steps=1000000", "--save_steps=1000000")

  def worker1() -> int:
    (pid,) = _processes_with(f"--model_dir={model_dir}",
                             "--task_type=worker\0--task_index=1\0")
    return pid

  out = _sigkill_once_both_workers_train(launcher, _Output(launcher), worker1)
  assert launcher.returncode == 1, out
  assert ("local_cluster: worker1 exited with code -9; stopping the cluster"
          in out), out
  assert re.search(r"worker 0: got SIGTERM; stopping after \d+ steps "
                   r"\(saving a checkpoint first\)", out), out
  assert _latest_step(model_dir) > 0, out
  assert _no_tasks_left(model_dir) == []


def test_sigterm_stops_a_worker_waiting_for_the_chief(tmp_path):
  # Worker 1 run as one task of a cluster whose other tasks never start:
  # TF's session creation waits for them, and SIGTERM (the launcher's stop,
  # a cluster manager's) ends the process at once: no step to end, nothing
  # to save.
  ps_port, chief_port, worker_port = utils.free_ports(3)
  env = utils.python_child_env()
  worker = subprocess.Popen(
      [sys.executable, "-m", _MODULE, "--task_type=worker", "--task_index=1",
       f"--ps_hosts=127.0.0.1:{ps_port}",
       f"--worker_hosts=127.0.0.1:{chief_port},127.0.0.1:{worker_port}",
       f"--model_dir={tmp_path / 'ctr'}", "--chief_setup_secs=600"],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      env=env)
  output = _Output(worker)
  try:
    assert output.wait_for(r"worker 1: training to global step", 120), (
        output.text())
    time.sleep(2)  # into the wait for the chief
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
  finally:
    worker.kill()
  output.join(10)
  out = output.text()
  assert worker.returncode == -signal.SIGTERM, out
