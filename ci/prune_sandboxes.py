"""Deletes a workspace's stale Bazel sandboxes from the sandbox base.

    python3 ci/prune_sandboxes.py WORKSPACE SANDBOX_BASE STARTED

Bazel 4.2's processwrapper sandbox leaves every action's sandbox directory
behind (~10k symlinks, ~35 MB of tmpfs each), even with
--experimental_sandbox_async_tree_delete_idle_threads=0: on /dev/shm, where
ci/bootstrap.sh puts them, they take gigabytes of memory within a day of
builds and then fill it ("No space left on device"). ./bazelw runs this
after each Bazel command, with STARTED the time (seconds since the epoch)
the command was started: a Bazel server runs one command at a time, so a
sandbox older than that belongs to a command that ended before this one
ran; newer ones (this command's, or one's queued behind it) stay.
"""

import getpass
import hashlib
import os
import shutil
import sys


def output_base(workspace: str) -> str:
  """Bazel's default output base of |workspace|."""
  user_root = os.path.expanduser(f"~/.cache/bazel/_bazel_{getpass.getuser()}")
  digest = hashlib.md5(os.path.realpath(workspace).encode()).hexdigest()
  return os.path.join(user_root, digest)


def prune(workspace: str, sandbox_base: str, started: float) -> int:
  """Deletes the sandboxes older than |started|; returns how many."""
  digest = hashlib.sha256(output_base(workspace).encode()).hexdigest()
  sandboxes = os.path.join(sandbox_base, f"bazel-sandbox.{digest}")
  if not os.path.isdir(sandboxes):
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
        if os.lstat(sandbox).st_mtime >= started - 1:
          continue
      except OSError:
        continue
      shutil.rmtree(sandbox, ignore_errors=True)
      pruned += 1
  return pruned


def main() -> None:
  if len(sys.argv) != 4:
    sys.exit(f"usage: {sys.argv[0]} WORKSPACE SANDBOX_BASE STARTED")
  pruned = prune(sys.argv[1], sys.argv[2], float(sys.argv[3]))
  if pruned:
    print(f"bazelw: deleted {pruned} stale sandboxes from {sys.argv[2]}",
          file=sys.stderr)


if __name__ == "__main__":
  main()
