"""Deletes a workspace's stale Bazel sandboxes from the sandbox base.

    python3 ci/prune_sandboxes.py WORKSPACE SANDBOX_BASE

Bazel 4.2's processwrapper sandbox leaves every action's sandbox directory
behind (~10k symlinks, ~35 MB of tmpfs each), even with
--experimental_sandbox_async_tree_delete_idle_threads=0: on /dev/shm, where
ci/bootstrap.sh puts them, they take gigabytes of memory within a day of
builds and then fill it ("No space left on device"). ./bazelw runs this
before each command. A Bazel client writes its pid into the output base's
lock file for its command; while that process is gone, no action runs, so
every sandbox there is stale. Only sandboxes older than that check go: a
command that starts meanwhile (another terminal) keeps its own.
"""

import getpass
import hashlib
import os
import shutil
import sys
import time


def output_base(workspace: str) -> str:
  """Bazel's default output base of |workspace|."""
  user_root = os.path.expanduser(f"~/.cache/bazel/_bazel_{getpass.getuser()}")
  digest = hashlib.md5(os.path.realpath(workspace).encode()).hexdigest()
  return os.path.join(user_root, digest)


def client_running(lock_path: str) -> bool:
  """Whether the Bazel client named in |lock_path| (pid=N) still runs."""
  try:
    with open(lock_path) as lock:
      fields = dict(
          line.split("=", 1) for line in lock.read().splitlines() if "=" in line)
    with open(f"/proc/{int(fields['pid'])}/cmdline", "rb") as cmdline:
      return b"bazel" in cmdline.read()
  except (OSError, KeyError, ValueError):
    return False


def prune(workspace: str, sandbox_base: str) -> int:
  """Deletes the stale sandboxes; returns how many."""
  checked = time.time()
  base = output_base(workspace)
  digest = hashlib.sha256(base.encode()).hexdigest()
  sandboxes = os.path.join(sandbox_base, f"bazel-sandbox.{digest}")
  if not os.path.isdir(sandboxes) or client_running(os.path.join(base, "lock")):
    return 0
  pruned = 0
  # processwrapper-sandbox, linux-sandbox, ...: kept, their entries go.
  for strategy in os.listdir(sandboxes):
    path = os.path.join(sandboxes, strategy)
    if not strategy.endswith("-sandbox") or not os.path.isdir(path):
      continue
    for entry in os.listdir(path):
      sandbox = os.path.join(path, entry)
      try:
        # A second of slack for the file system's timestamps.
        if os.lstat(sandbox).st_mtime >= checked - 1:
          continue
      except OSError:
        continue
      shutil.rmtree(sandbox, ignore_errors=True)
      pruned += 1
  return pruned


def main() -> None:
  if len(sys.argv) != 3:
    sys.exit(f"usage: {sys.argv[0]} WORKSPACE SANDBOX_BASE")
  pruned = prune(sys.argv[1], sys.argv[2])
  if pruned:
    print(f"bazelw: deleted {pruned} stale sandboxes from {sys.argv[2]}",
          file=sys.stderr)


if __name__ == "__main__":
  main()
