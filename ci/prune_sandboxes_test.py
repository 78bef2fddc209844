"""Tests of prune_sandboxes: stale sandboxes go, a running command's stay."""

import hashlib
import os
import subprocess
import time

import pytest

import prune_sandboxes


@pytest.fixture
def layout(tmp_path, monkeypatch):
  """A home with a workspace's output base, and a sandbox base."""
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  workspace = tmp_path / "workspace"
  workspace.mkdir()
  base = prune_sandboxes.output_base(str(workspace))
  os.makedirs(base)
  digest = hashlib.sha256(base.encode()).hexdigest()
  sandboxes = tmp_path / "shm" / f"bazel-sandbox.{digest}"
  (sandboxes / "processwrapper-sandbox").mkdir(parents=True)
  (sandboxes / "inaccessibleHelperDir").mkdir()
  return workspace, base, sandboxes


def make_sandbox(sandboxes, name, age_seconds):
  path = sandboxes / "processwrapper-sandbox" / name
  (path / "execroot" / "ws").mkdir(parents=True)
  os.symlink("/nonexistent", path / "execroot" / "ws" / "link")
  when = time.time() - age_seconds
  os.utime(path, (when, when))
  return path


def write_lock(base, pid):
  with open(os.path.join(base, "lock"), "w") as lock:
    lock.write(f"pid={pid}\nowner=client\ncwd=/somewhere\n")


def test_the_output_base_is_bazels_default(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", "/home/someone")
  monkeypatch.setattr(prune_sandboxes.getpass, "getuser", lambda: "someone")
  # Bazel's own: md5 of the workspace's real path under the user root.
  assert prune_sandboxes.output_base("/work/main") == (
      "/home/someone/.cache/bazel/_bazel_someone/"
      "835165e65df656dc9abbd58e53cf243e")
  os.symlink("/work/main", tmp_path / "link")
  assert prune_sandboxes.output_base(str(tmp_path / "link")) == (
      prune_sandboxes.output_base("/work/main"))


def test_stale_sandboxes_go_when_no_client_runs(layout):
  workspace, base, sandboxes = layout
  old = [make_sandbox(sandboxes, str(i), 60) for i in range(3)]
  new = make_sandbox(sandboxes, "3", -5)  # made after the check
  write_lock(base, 2**22 + 12345)  # no such process
  assert prune_sandboxes.prune(str(workspace), str(sandboxes.parent)) == 3
  assert not any(path.exists() for path in old)
  assert new.exists()
  # The sandbox strategy's folder and Bazel's helpers stay.
  assert (sandboxes / "processwrapper-sandbox").is_dir()
  assert (sandboxes / "inaccessibleHelperDir").is_dir()


def test_nothing_goes_while_a_client_runs(layout):
  workspace, base, sandboxes = layout
  old = make_sandbox(sandboxes, "1", 60)
  client = subprocess.Popen(["bash", "-c", "exec -a bazel sleep 60"])
  try:
    write_lock(base, client.pid)
    for _ in range(100):  # until exec has renamed it
      with open(f"/proc/{client.pid}/cmdline", "rb") as cmdline:
        if cmdline.read().startswith(b"bazel"):
          break
      time.sleep(0.01)
    assert prune_sandboxes.prune(str(workspace), str(sandboxes.parent)) == 0
    assert old.exists()
  finally:
    client.kill()
    client.wait()
  assert prune_sandboxes.prune(str(workspace), str(sandboxes.parent)) == 1
  assert not old.exists()


def test_missing_sandbox_base_or_lock_is_no_error(layout, tmp_path):
  workspace, base, sandboxes = layout
  assert prune_sandboxes.prune(str(workspace), str(tmp_path / "none")) == 0
  make_sandbox(sandboxes, "1", 60)
  # No lock file: no client has run since the output base was made.
  assert prune_sandboxes.prune(str(workspace), str(sandboxes.parent)) == 1
