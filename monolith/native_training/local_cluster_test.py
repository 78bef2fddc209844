"""Runs local_cluster's launcher: a real 2-PS, 2-worker cluster on loopback."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import List

_MODULE = "monolith.native_training.local_cluster"


def _launch(model_dir: str, *flags: str) -> subprocess.Popen:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  return subprocess.Popen(
      [sys.executable, "-m", _MODULE, "--num_ps=2", "--num_workers=2",
       f"--model_dir={model_dir}", "--batch_size=64", "--vocab_size=100",
       "--learning_rate=0.1", "--log_every_secs=0.5", *flags],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      env=env)


def _processes_with(marker: str) -> List[int]:
  """Pids of the processes whose command line contains `marker`."""
  pids = []
  for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
      continue
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().decode(errors="replace")
    except OSError:
      continue
    if marker in cmdline:
      pids.append(int(pid))
  return pids


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
  launcher = _launch(model_dir, "--steps=200", "--save_steps=100")
  try:
    out, _ = launcher.communicate(timeout=80)
  finally:
    launcher.kill()
  out = out.decode(errors="replace")
  assert launcher.returncode == 0, out
  assert "local_cluster: all 2 workers finished; stopping 2 PS tasks" in out
  for i in range(2):
    assert re.search(rf"\[ps{i}\] ps {i}: serving grpc://127\.0\.0\.1:\d+",
                     out), out
    assert re.search(
        rf"\[worker{i}\] worker {i}: step \d+ global_step \d+ loss [\d.]+ "
        r"examples/s \d+ ids/s \d+", out), out
    (summary,) = re.findall(rf"\[worker{i}\] worker {i}: summary: .*", out)
    assert re.search(r"examples \d+ ids \d+ secs [\d.]+ examples/s \d+ "
                     r"ids/s \d+", summary), summary
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
  assert int(step) >= 200
  prefix = os.path.join(model_dir, f"model.ckpt-{step}")
  assert os.path.exists(prefix + ".index")
  assets = os.listdir(prefix + ".assets")
  for i in range(2):
    assert any(
        re.fullmatch(rf"MonolithMultiHashTable_{i}-00000-of-\d{{5}}", a)
        for a in assets), assets
  assert _no_tasks_left(model_dir) == []


def test_sigterm_stops_every_task(tmp_path):
  model_dir = str(tmp_path / "ctr")
  launcher = _launch(model_dir, "--steps=1000000")
  lines = []
  training = threading.Event()

  def read():
    for line in iter(launcher.stdout.readline, b""):
      lines.append(line.decode(errors="replace"))
      if re.search(r"worker \d: step \d+", lines[-1]):
        training.set()

  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  try:
    assert training.wait(60), "".join(lines)
    assert len(_processes_with(f"--model_dir={model_dir}")) >= 4
    launcher.send_signal(signal.SIGTERM)
    launcher.wait(30)
  finally:
    launcher.kill()
  reader.join(10)
  out = "".join(lines)
  assert launcher.returncode == 128 + signal.SIGTERM, out
  assert "local_cluster: got SIGTERM; stopping 4 tasks" in out
  assert f"local_cluster: stopped; exit code {128 + signal.SIGTERM}" in out
  assert _no_tasks_left(model_dir) == []
