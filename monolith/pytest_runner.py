"""Runs one test file under pytest inside `bazel test` (see defs.bzl).

Temporary files go under Bazel's TEST_TMPDIR and no cache is written into
the source tree.
"""

import os
import sys

import pytest


def main(argv: list) -> int:
  if len(argv) != 2:
    print(f"usage: {argv[0]} TEST_FILE", file=sys.stderr)
    return 2
  args = [argv[1], "-q", "-p", "no:cacheprovider"]
  tmp = os.environ.get("TEST_TMPDIR")
  if tmp:
    args.append(f"--basetemp={os.path.join(tmp, 'pytest')}")
  return pytest.main(args)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
