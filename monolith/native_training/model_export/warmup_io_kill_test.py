"""Kill tests of the warmup writers' atomic output.

A child process writes warmup files of several records to one path, each
version marked, over and over; the test SIGKILLs it at seeded random points
and then requires the path to hold no file yet or one whole version (every
record there, all of one version), as TF Serving would load it. A tool
stopped by SIGTERM or SIGHUP leaves nothing of its unfinished output.
"""

import os
import random
import signal
import subprocess
import sys
import time

from monolith.native_training import utils
from monolith.native_training.model_export import warmup_data_check
from monolith.native_training.model_export import warmup_io

SEED = 20261203
ROUNDS = 8
RECORDS = 6

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
    time.sleep(rng.uniform(0, 0.5))
    child.send_signal(signal.SIGKILL)
    child.wait()
    # A kill inside a write leaves its temporary, unlocked.
    temporaries = set(_temporaries(out)) - left_before
    assert len(temporaries) <= 1, temporaries
    kills_inside_a_write += len(temporaries)
    left_before |= temporaries
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


def _temporaries(out):
  return [name for name in os.listdir(os.path.dirname(out))
          if name.startswith(os.path.basename(out) + ".tmp-")]
