"""Kill tests of the warmup writers' atomic output.

A child process writes warmup files of several records to one path, each
version marked, over and over; the test SIGKILLs it at seeded random points
and then requires the path to hold no file yet or one whole version (every
record there, all of one version), as TF Serving would load it. The same
for warmup_data_check's install into a SavedModel: the installed file is
one whole file that passed the check, the model untouched. A tool
stopped by SIGTERM or SIGHUP leaves nothing of its unfinished output.
"""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import tensorflow as tf

from monolith.native_training import utils
from monolith.native_training.model_export import warmup_data_check
from monolith.native_training.model_export import warmup_io

SEED = 20261203
ROUNDS = 8
RECORDS = 6
# Each round starts TF in a child and installs once first: fewer rounds.
INSTALL_ROUNDS = 5

_WRITER = """
import sys
import tensorflow as tf
from monolith.native_training.model_export import warmup_io

out, records = sys.argv[1], int(sys.argv[2])
# About 4 MB a version, made once: the loop is nearly all writing.
logs = [
    warmup_io.predict_log("m", "", {
        "examples": tf.make_tensor_proto([b"x" * 65536] * 10)
    }) for _ in range(records)
]
version = 0
while True:
  version += 1
  for log in logs:
    log.predict_log.request.model_spec.signature_name = f"v{version}"
  warmup_io.write_prediction_logs(out, logs)
  print(version, flush=True)
"""


def test_a_killed_writer_leaves_the_previous_or_a_whole_file(tmp_path):
  rng = random.Random(SEED)
  out = str(tmp_path / "assets.extra" / "tf_serving_warmup_requests")
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  kills_inside_a_write = 0
  left_before = set()
  for _ in range(ROUNDS):
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, out, str(RECORDS)],
        stdout=subprocess.PIPE, env=env)
    # Past TF's import (about 2 s), then somewhere inside some write.
    first = child.stdout.readline()
    assert first, "the writer died before its first write"
    kills_inside_a_write += _kill_within(child, rng, 0.5, out, left_before)
    logs, problems = warmup_data_check.read_warmup_file(out)
    assert not problems, [p.reason for p in problems]
    assert len(logs) == RECORDS
    versions = {log.predict_log.request.model_spec.signature_name
                for log in logs}
    assert len(versions) == 1, versions
  # The kills fell inside writes too; a later write deletes what they left
  # once it is a few seconds old: no writer holds it locked.
  print(f"{kills_inside_a_write} of {ROUNDS} kills fell inside a write")
  assert kills_inside_a_write
  time.sleep(warmup_io.UNLOCKED_TEMP_SECONDS + 0.5)
  warmup_io.write_prediction_logs(out, [warmup_io.predict_log("m", "", {})])
  assert not _temporaries(out)


_INSTALLER = """
import sys
import tensorflow as tf
from monolith.native_training.model_export import warmup_data_check

model_dir, sources = sys.argv[1], sys.argv[2:]
copy = tf.io.gfile.copy


def noted_copy(*args, **kwargs):
  print("copy", flush=True)
  copy(*args, **kwargs)


tf.io.gfile.copy = noted_copy
i = 0
while True:
  _, installed = warmup_data_check.check_and_install(
      sources[i % len(sources)], model_dir, replay_requests=i % 2 == 0)
  print(f"installed {installed is not None}", flush=True)
  i += 1
"""


def _save_string_model(path):
  """A TF1-style model whose serving_default counts its [None] strings."""
  with tf.Graph().as_default():
    strings = tf.compat.v1.placeholder(tf.string, [None])
    count = tf.size(strings)
    with tf.compat.v1.Session() as session:
      builder = tf.compat.v1.saved_model.Builder(path)
      builder.add_meta_graph_and_variables(
          session, ["serve"],
          signature_def_map={
              "serving_default":
                  tf.compat.v1.saved_model.predict_signature_def(
                      {"strings": strings}, {"count": count})
          })
      builder.save()


def _sha256(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def test_a_killed_install_leaves_the_model_and_one_whole_checked_file(
    tmp_path):
  rng = random.Random(SEED)
  model_dir = str(tmp_path / "model" / "1")
  _save_string_model(model_dir)
  model_files = sorted(os.listdir(model_dir))
  model_sha = _sha256(os.path.join(model_dir, "saved_model.pb"))
  sources = []
  for name, signature in (("good_a", "serving_default"),
                          ("good_b", "serving_default"),
                          ("bad_c", "missing")):
    # About 4 MB each, told apart by the model name.
    logs = [
        warmup_io.predict_log(name, signature, {
            "strings": tf.make_tensor_proto([b"x" * 65536] * 10)
        }) for _ in range(RECORDS)
    ]
    sources.append(str(tmp_path / name))
    warmup_io.write_prediction_logs(sources[-1], logs)
  good = {_sha256(sources[0]): "good_a", _sha256(sources[1]): "good_b"}
  installed = os.path.join(model_dir, warmup_io.WARMUP_FILE_PATH)
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  kills_inside_an_install = 0
  left_before = set()
  for round_ in range(INSTALL_ROUNDS):
    child = subprocess.Popen(
        [sys.executable, "-c", _INSTALLER, model_dir] + sources,
        stdout=subprocess.PIPE, env=env)
    # Past TF's import and the first install, then anywhere (a copy, a
    # check, a replay, a rename), or every other round just after a copy
    # began.
    while (line := child.stdout.readline()) != b"installed True\n":
      assert line, "the installer died before its first install"
    within = 1.0
    if round_ % 2:
      while (line := child.stdout.readline()) != b"copy\n":
        assert line, "the installer died"
      within = 0.05
    kills_inside_an_install += _kill_within(child, rng, within, installed,
                                            left_before)
    assert _sha256(installed) in good
    assert warmup_data_check.check_warmup_file(installed, model_dir,
                                               replay_requests=False).ok
    assert sorted(os.listdir(model_dir)) == sorted(model_files +
                                                   ["assets.extra"])
    assert _sha256(os.path.join(model_dir, "saved_model.pb")) == model_sha
  print(f"{kills_inside_an_install} of {INSTALL_ROUNDS} kills fell inside "
        "an install")
  assert kills_inside_an_install
  # What the kills left goes with the next install, checked or not, once
  # no writer holds it; a file that fails the check is not installed.
  time.sleep(warmup_io.UNLOCKED_TEMP_SECONDS + 0.5)
  before = _sha256(installed)
  report, path = warmup_data_check.check_and_install(sources[2], model_dir)
  assert not report.ok and path is None
  assert _sha256(installed) == before
  assert not _temporaries(installed)
  _, path = warmup_data_check.check_and_install(sources[1], model_dir)
  assert path == installed and good[_sha256(installed)] == "good_b"


_STOPPED_TOOL = """
import sys
import time
from monolith.native_training.model_export import warmup_io

out = sys.argv[1]


def logs():
  yield warmup_io.predict_log("m", "", {})
  print("writing", flush=True)
  time.sleep(60)
  yield warmup_io.predict_log("m", "", {})


def main(argv):
  warmup_io.write_prediction_logs(out, logs())


warmup_io.run_tool("stopped_tool", main)
"""


def test_a_terminated_tool_removes_its_unfinished_output(tmp_path):
  # SIGTERM (timeout, kill, a job stopped) and SIGHUP end a tool as Ctrl-C
  # does: the temporary and the folders the write made are removed, and
  # the tool dies by the signal.
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  for sig in (signal.SIGTERM, signal.SIGHUP):
    out = str(tmp_path / sig.name / "warmup" / "requests")
    child = subprocess.Popen([sys.executable, "-c", _STOPPED_TOOL, out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env)
    assert child.stdout.readline() == b"writing\n"
    assert _temporaries(out)
    child.send_signal(sig)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == -sig, (child.returncode, stderr)
    assert f"stopped_tool: terminated by {sig.name}".encode() in stderr
    assert not os.path.exists(tmp_path / sig.name), os.listdir(tmp_path)


def _kill_within(child, rng, max_secs, out, left_before):
  """SIGKILLs `child` within `max_secs` (seeded); returns how many
  temporaries of `out` the kill left, adding them to `left_before`: a
  kill inside a write leaves its temporary, unlocked, one at most."""
  time.sleep(rng.uniform(0, max_secs))
  child.send_signal(signal.SIGKILL)
  child.wait()
  temporaries = set(_temporaries(out)) - left_before
  assert len(temporaries) <= 1, temporaries
  left_before |= temporaries
  return len(temporaries)


def _temporaries(out):
  return [name for name in os.listdir(os.path.dirname(out))
          if name.startswith(os.path.basename(out) + ".tmp-")]
