"""Tests of warmup_data_decoder: what it prints of a warmup file."""

import signal
import subprocess
import sys

import numpy as np
import tensorflow as tf

from monolith.native_training import utils
from monolith.native_training.model_export import warmup_data_check
from monolith.native_training.model_export import warmup_data_decoder
from monolith.native_training.model_export import warmup_io


def _write_two_requests(path):
  logs = [
      warmup_io.predict_log("ranker", "serving_default", {
          "examples": warmup_io.string_tensor([b"serialized-example-0",
                                               b"serialized-example-1"]),
      }),
      warmup_io.predict_log("ranker", "cvr", {
          "dense": tf.make_tensor_proto(np.array([[0.5, 2.0]], np.float32)),
      }),
  ]
  warmup_io.write_prediction_logs(str(path), logs)
  return str(path)


def test_each_record_is_printed_with_string_values_elided(tmp_path):
  path = _write_two_requests(tmp_path / "warmup")
  blocks, problems = warmup_data_decoder.decode_warmup_file(path)
  assert not problems
  assert len(blocks) == 2
  assert blocks[0].startswith("record 0 (predict_log):\nmodel_spec {\n"
                              "  name: \"ranker\"\n")
  assert blocks[0].count("string_val: ...") == 2
  assert "serialized-example" not in blocks[0]
  assert blocks[1].startswith("record 1 (predict_log):")
  assert "signature_name: \"cvr\"" in blocks[1]
  # Numeric tensors as they are (here packed bytes, not elided).
  assert "key: \"dense\"" in blocks[1]
  assert "tensor_content: \"\\000\\000\\000?\\000\\000\\000@\"" in blocks[1]
  shown, _ = warmup_data_decoder.decode_warmup_file(path,
                                                    show_string_vals=True)
  assert "string_val: \"serialized-example-1\"" in shown[0]


def test_a_damaged_file_prints_what_it_can_and_names_the_problem(tmp_path):
  path = _write_two_requests(tmp_path / "warmup")
  with open(path, "ab") as f:
    f.write(b"\x01\x02\x03")  # a partial record after the last
  with open(path, "rb") as f:
    data = f.read()
  blocks, problems = warmup_data_decoder.decode_warmup_file(path)
  assert len(blocks) == 2
  assert [str(p) for p in problems] == [
      f"record 2: the file ends in a partial record (3 bytes at byte offset "
      f"{len(data) - 3}): it was cut short; TF Serving's warmup reads a "
      "partial header as the end of the file and stops there without an "
      "error"]


def test_records_are_decoded_as_they_are_read(tmp_path):
  # One record in memory at a time: the first is decoded before the reader
  # reaches the damage after the second.
  path = _write_two_requests(tmp_path / "warmup")
  with open(path, "ab") as f:
    f.write(b"\x01\x02\x03")
  problems = []
  blocks = warmup_data_decoder.decoded_records(path, problems)
  assert next(blocks).startswith("record 0 (predict_log):")
  assert not problems
  assert next(blocks).startswith("record 1 (predict_log):")
  assert list(blocks) == []
  assert [p.record for p in problems] == [2]


def test_records_past_tf_servings_limit_are_printed_too(tmp_path):
  log = warmup_io.predict_log("m", "serving_default", {})
  path = str(tmp_path / "warmup")
  with tf.io.TFRecordWriter(path) as writer:
    for _ in range(warmup_io.MAX_WARMUP_RECORDS + 2):
      writer.write(log.SerializeToString())
  blocks, problems = warmup_data_decoder.decode_warmup_file(path)
  assert len(blocks) == warmup_io.MAX_WARMUP_RECORDS + 2
  assert [str(p) for p in problems] == [
      f"record {warmup_io.MAX_WARMUP_RECORDS}: the file has more than "
      f"{warmup_io.MAX_WARMUP_RECORDS} records; TF Serving fails to load a "
      "model whose warmup file has more"]


def test_a_length_past_the_end_after_tf_servings_limit_is_reported(tmp_path):
  # TF's reader crashes the process on a length near 2^40 (with a valid
  # length CRC); the decoder reads past record 1000, so the headers there
  # are checked before TF reads them too.
  log = warmup_io.predict_log("m", "serving_default", {})
  path = tmp_path / "warmup"
  count = warmup_io.MAX_WARMUP_RECORDS + 3
  with tf.io.TFRecordWriter(str(path)) as writer:
    for _ in range(count):
      writer.write(log.SerializeToString())
  size = path.stat().st_size
  length = (1 << 40).to_bytes(8, "little")
  with open(path, "ab") as f:
    f.write(length + warmup_data_check._masked_crc32c(length).to_bytes(
        4, "little") + b"0123456789")
  blocks, problems = warmup_data_decoder.decode_warmup_file(str(path))
  assert len(blocks) == count
  assert [str(p) for p in problems] == [
      f"record {warmup_io.MAX_WARMUP_RECORDS}: the file has more than "
      f"{warmup_io.MAX_WARMUP_RECORDS} records; TF Serving fails to load a "
      "model whose warmup file has more",
      f"record {count}: its length at byte offset {size} is {1 << 40} "
      "bytes, but the file has 10 bytes after its header: it was cut short "
      "or is not a TFRecord file; TF Serving's record reader fails on it "
      "(DataLoss: a truncated record), and with it the model load"]


def _child_env(**extra):
  """This process's environment for a Python child that imports as it does."""
  return utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3", **extra)


_DECODER = [sys.executable, "-m",
            "monolith.native_training.model_export.warmup_data_decoder"]


def _run_cli(args, cwd):
  return subprocess.run(
      _DECODER + args, capture_output=True,
      env=_child_env(BUILD_WORKING_DIRECTORY=str(cwd)), cwd="/", check=False)


def test_cli_prints_records_and_exits_by_what_it_found(tmp_path):
  path = _write_two_requests(tmp_path / "warmup")
  # A path relative to where `bazel run` was called.
  ok = _run_cli(["--file_name=warmup"], tmp_path)
  assert ok.returncode == 0, ok.stderr.decode()
  out = ok.stdout.decode()
  assert out.startswith("record 0 (predict_log):\n")
  assert "record 1 (predict_log):\n" in out
  with open(path, "ab") as f:
    f.write(b"\x01")
  damaged = _run_cli(["--file_name=warmup"], tmp_path)
  assert damaged.returncode == 1
  assert "record 1 (predict_log):\n" in damaged.stdout.decode()
  assert f"{path}: record 2: the file ends in a partial record" in (
      damaged.stderr.decode())
  for args, message in ((["--file_name=missing"], b"no such file"),
                        ([], b"--file_name is required")):
    result = _run_cli(args, tmp_path)
    assert result.returncode == 2, result.stderr.decode()
    assert message in result.stderr.splitlines()[-1], result.stderr.decode()


def test_a_closed_stdout_ends_the_decoder_by_sigpipe(tmp_path):
  # `| head` gone before the records are printed: SIGPIPE, as any tool of
  # a pipe, not an error message and status 2.
  path = _write_two_requests(tmp_path / "warmup")
  child = subprocess.Popen(
      _DECODER + [f"--file_name={path}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env())
  child.stdout.close()
  _, stderr = child.communicate(timeout=240)
  assert child.returncode == -signal.SIGPIPE, stderr.decode()
  assert b"warmup_data_decoder: error" not in stderr, stderr.decode()
  assert b"Traceback" not in stderr, stderr.decode()


def test_the_tools_import_into_programs_with_flags_of_their_names():
  # Each tool defines its flags when run as the tool only: a program with
  # an --install or --replay of its own imports them all, beside
  # warmup_data_gen's command line (which has a --file_name too).
  code = """
from absl import flags
flags.DEFINE_bool("install", False, "")
flags.DEFINE_integer("replay", 0, "")
flags.DEFINE_bool("show_string_vals", False, "")
from monolith.native_training.model_export import warmup_data_check
from monolith.native_training.model_export import warmup_data_decoder
from monolith.native_training.model_export import warmup_data_gen
from monolith.native_training.model_export import warmup_example_batch
warmup_data_gen.define_flags()
print("imported")
"""
  done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        env=_child_env(), check=False)
  assert done.returncode == 0, done.stderr.decode()[-2000:]
  assert done.stdout.decode().strip() == "imported"
