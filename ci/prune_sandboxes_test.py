"""Tests of prune_sandboxes: sandboxes of earlier commands go, newer stay."""

import hashlib
import os
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
  digest = hashlib.sha256(base.encode()).hexdigest()
  sandboxes = tmp_path / "shm" / f"bazel-sandbox.{digest}"
  (sandboxes / "processwrapper-sandbox").mkdir(parents=True)
  (sandboxes / "inaccessibleHelperDir").mkdir()
  return workspace, sandboxes


def make_sandbox(sandboxes, name, when):
  path = sandboxes / "processwrapper-sandbox" / name
  (path / "execroot" / "ws").mkdir(parents=True)
  os.symlink("/nonexistent", path / "execroot" / "ws" / "link")
  os.utime(path, (when, when))
  return path


def test_the_output_base_is_bazels_default(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", "/home/someone")
  monkeypatch.setattr(prune_sandboxes.getpass, "getuser", lambda: "someone")
  # Bazel's own: md5 of the workspace's real path under the user root.
  assert prune_sandboxes.output_base("/nonexistent/ws/main") == (
      "/home/someone/.cache/bazel/_bazel_someone/"
      "7d1c0f3ef80aa85d6fd09f97360e49fe")
  (tmp_path / "real").mkdir()
  os.symlink(tmp_path / "real", tmp_path / "link")
  assert prune_sandboxes.output_base(str(tmp_path / "link")) == (
      prune_sandboxes.output_base(str(tmp_path / "real")))


def test_sandboxes_older_than_the_command_go(layout):
  workspace, sandboxes = layout
  started = time.time()
  old = [make_sandbox(sandboxes, str(i), started - 60) for i in range(3)]
  # This command's own and those of one queued behind it stay.
  new = [
      make_sandbox(sandboxes, "3", started),
      make_sandbox(sandboxes, "4", started + 30),
  ]
  assert prune_sandboxes.prune(str(workspace), str(sandboxes.parent),
                               started) == 3
  assert not any(path.exists() for path in old)
  assert all(path.exists() for path in new)
  # The sandbox strategy's folder and Bazel's helpers stay.
  assert (sandboxes / "processwrapper-sandbox").is_dir()
  assert (sandboxes / "inaccessibleHelperDir").is_dir()


def test_a_missing_sandbox_folder_is_no_error(layout, tmp_path):
  workspace, _ = layout
  assert prune_sandboxes.prune(str(workspace), str(tmp_path / "none"),
                               time.time()) == 0
