"""Tests for warmup_example_batch."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from monolith.native_training import utils
from monolith.native_training.model_export import sample_records
from monolith.native_training.model_export import warmup_example_batch
from monolith.native_training.model_export import warmup_io


def _request(payload: bytes, signature: str = "captured"):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "prod_model"
  request.model_spec.signature_name = signature
  request.inputs["example_batch"].CopyFrom(tf.make_tensor_proto([payload]))
  return request


def _write_requests(folder, names, signatures=None):
  folder.mkdir(exist_ok=True)
  payloads = list(
      sample_records.serialized_records("example_batch", len(names)))
  signatures = signatures or ["captured"] * len(names)
  for name, payload, signature in zip(names, payloads, signatures):
    (folder / name).write_bytes(
        _request(payload, signature).SerializeToString())
  return dict(zip(names, payloads))


def test_files_become_logs_in_sorted_order(tmp_path):
  by_name = _write_requests(tmp_path / "in", ["b", "a", "c10", "c2"])
  logs = list(warmup_example_batch.gen_prediction_log(str(tmp_path / "in")))
  got = [log.predict_log.request for log in logs]
  assert [r.inputs["example_batch"].string_val[0] for r in got] == [
      by_name[n] for n in ["a", "b", "c10", "c2"]]
  assert {(r.model_spec.name, r.model_spec.signature_name) for r in got} == {
      ("default", "captured")}


def test_each_request_keeps_the_signature_it_was_captured_for(tmp_path):
  # Requests of two signatures warm both; one naming none gets
  # serving_default, as TF Serving would serve it. (The original set
  # serving_default on all of them.)
  _write_requests(tmp_path / "in", ["a", "b", "c"], ["ctr", "cvr", ""])
  logs = warmup_example_batch.gen_prediction_log(str(tmp_path / "in"))
  assert [log.predict_log.request.model_spec.signature_name
          for log in logs] == ["ctr", "cvr", "serving_default"]


def test_folders_and_outputs_take_paths(tmp_path):
  # A pathlib.Path output failed with AttributeError (comparable_path).
  _write_requests(tmp_path / "in", ["a"])
  (log,) = warmup_example_batch.gen_prediction_log(
      tmp_path / "in", output_path=tmp_path / "in" / "out")
  assert log.predict_log.request.model_spec.signature_name == "captured"
  # A name that is not UTF-8, which TF cannot list, is named with its folder.
  with open(os.path.join(os.fsencode(tmp_path / "in"), b"b-\xe9"), "wb"):
    pass
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"in holds a file name that is not UTF-8"):
    list(warmup_example_batch.gen_prediction_log(tmp_path / "in"))


def test_model_and_signature_can_be_set(tmp_path):
  _write_requests(tmp_path / "in", ["x"])
  (log,) = warmup_example_batch.gen_prediction_log(str(tmp_path / "in"),
                                                   "ranker", "predict")
  spec = log.predict_log.request.model_spec
  assert (spec.name, spec.signature_name) == ("ranker", "predict")


@pytest.mark.parametrize("content", [
    b"this is a text file, not a request\n",
    b"\xff\xff\xff\xff",
    b"",  # parses as an empty request, which has no inputs
    b"\x08\x01",  # a valid varint field PredictRequest does not have
])
def test_file_that_is_not_a_request_is_named(tmp_path, content):
  _write_requests(tmp_path / "in", ["a"])
  (tmp_path / "in" / "b.bad").write_bytes(content)
  with pytest.raises(warmup_io.WarmupDataError,
                     match=r"in/b\.bad is not a serialized PredictRequest"):
    list(warmup_example_batch.gen_prediction_log(str(tmp_path / "in")))


def test_a_file_larger_than_a_request_can_be_is_refused_unread(
    tmp_path, monkeypatch):
  _write_requests(tmp_path / "in", ["a"])
  size = (tmp_path / "in" / "a").stat().st_size
  # The limit is protobuf's 2 GiB; a file just past it is refused by size.
  monkeypatch.setattr(warmup_io, "MAX_RECORD_BYTES", size - 1)
  with pytest.raises(warmup_io.WarmupDataError,
                     match=rf"in/a holds {size} bytes, more than a "
                     rf"PredictRequest can \({size - 1}\): not a request"):
    list(warmup_example_batch.gen_prediction_log(str(tmp_path / "in")))


def test_a_file_that_grew_past_the_limit_is_refused_unread(
    tmp_path, monkeypatch):
  # Its size read before it grew (or a file system that reports none).
  _write_requests(tmp_path / "in", ["a"])
  monkeypatch.setattr(warmup_io, "MAX_RECORD_BYTES", 8)
  stat = tf.io.gfile.stat
  monkeypatch.setattr(
      tf.io.gfile, "stat",
      lambda path: type("Stat", (), {"length": 0})() if path.endswith("/a")
      else stat(path))
  with pytest.raises(warmup_io.WarmupDataError,
                     match="in/a grew past 8 bytes while read"):
    list(warmup_example_batch.gen_prediction_log(str(tmp_path / "in")))


def test_fifos_devices_and_dangling_links_are_skipped(tmp_path, caplog):
  # A FIFO blocked the tool in its read (a device such as /dev/zero never
  # ended it); they and a dangling link are passed over with a warning.
  payloads = _write_requests(tmp_path / "in", ["a"])
  os.mkfifo(tmp_path / "in" / "fifo")
  os.symlink("/dev/zero", tmp_path / "in" / "zero")
  os.symlink(tmp_path / "gone", tmp_path / "in" / "dangling")
  os.symlink("loop", tmp_path / "in" / "loop")
  logs = list(warmup_example_batch.gen_prediction_log(str(tmp_path / "in")))
  assert [log.predict_log.request.inputs["example_batch"].string_val[0]
          for log in logs] == [payloads["a"]]
  for name in ("fifo", "zero", "dangling", "loop"):
    assert f"in/{name}: not a regular file" in caplog.text


def test_more_than_1000_files_are_refused(tmp_path):
  folder = tmp_path / "in"
  folder.mkdir()
  data = _request(b"x").SerializeToString()
  for i in range(1001):
    (folder / f"{i:04d}").write_bytes(data)
  with pytest.raises(warmup_io.WarmupDataError, match="more than 1000"):
    list(warmup_example_batch.gen_prediction_log(str(folder)))


def test_empty_or_missing_folder(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(warmup_io.WarmupDataError, match="holds no files"):
    list(warmup_example_batch.gen_prediction_log(str(tmp_path / "empty")))
  with pytest.raises(warmup_io.WarmupDataError, match="is not a folder"):
    list(warmup_example_batch.gen_prediction_log(str(tmp_path / "missing")))


def test_imports_beside_warmup_data_gen_and_skips_its_output(tmp_path,
                                                             monkeypatch):
  # Both modules in one process (their flags once collided), and an
  # absolute output path beside a relative input folder.
  from monolith.native_training.model_export import warmup_data_gen  # pylint: disable=g-import-not-at-top,unused-import
  by_name = _write_requests(tmp_path / "in", ["r0"])
  (tmp_path / "in" / "warmup").write_bytes(b"an earlier output")
  monkeypatch.chdir(tmp_path)
  logs = list(warmup_example_batch.gen_prediction_log(
      "in", output_path=str(tmp_path / "in" / "warmup")))
  assert [l.predict_log.request.inputs["example_batch"].string_val[0]
          for l in logs] == [by_name["r0"]]


def _run_cli(args):
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run(
      [sys.executable, "-m",
       "monolith.native_training.model_export.warmup_example_batch"] + args,
      capture_output=True, env=env, check=False)


def _run_and_read_back(input_folder, out):
  """Runs the CLI; the request payloads of the warmup file it wrote."""
  result = _run_cli([f"--input_folder={input_folder}", f"--output_path={out}"])
  assert result.returncode == 0, result.stderr.decode()
  logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(str(out))]
  return [l.predict_log.request.inputs["example_batch"].string_val[0]
          for l in logs]


def test_cli_writes_atomically_and_reads_back(tmp_path):
  by_name = _write_requests(tmp_path / "in", ["r1", "r0"])
  out = tmp_path / "out" / "tf_serving_warmup_requests"
  assert _run_and_read_back(tmp_path / "in", out) == [by_name["r0"],
                                                      by_name["r1"]]
  assert os.listdir(out.parent) == [out.name]


def test_cli_bad_file_fails_without_output(tmp_path):
  _write_requests(tmp_path / "in", ["a"])
  (tmp_path / "in" / "z").write_bytes(b"garbage!")
  out = tmp_path / "warmup"
  result = _run_cli([f"--input_folder={tmp_path / 'in'}",
                     f"--output_path={out}"])
  assert result.returncode != 0
  assert b"is not a serialized PredictRequest" in result.stderr
  assert not out.exists()
  assert sorted(os.listdir(tmp_path)) == ["in"]


def test_cli_output_inside_the_input_folder_is_skipped(tmp_path):
  # Written into its input folder, run twice: neither the first run's output
  # nor the writer's own temporary file is read as a request.
  by_name = _write_requests(tmp_path / "in", ["r0", "r1"])
  out = tmp_path / "in" / "tf_serving_warmup_requests"
  for _ in range(2):
    assert _run_and_read_back(tmp_path / "in", out) == [by_name["r0"],
                                                        by_name["r1"]]
  assert sorted(os.listdir(tmp_path / "in")) == ["r0", "r1", out.name]


def test_cli_failure_leaves_no_new_folders(tmp_path):
  # Folders created for the output go when it fails (in a model's folder,
  # one left empty could be taken for a version).
  _write_requests(tmp_path / "in", ["a"])
  (tmp_path / "in" / "z").write_bytes(b"garbage!")
  (tmp_path / "models").mkdir()
  out = (tmp_path / "models" / "staging" / "assets.extra" /
         "tf_serving_warmup_requests")
  result = _run_cli([f"--input_folder={tmp_path / 'in'}",
                     f"--output_path={out}"])
  assert result.returncode != 0
  assert os.listdir(tmp_path / "models") == []


def test_cli_output_path_that_is_a_folder_is_refused(tmp_path):
  _write_requests(tmp_path / "in", ["a"])
  result = _run_cli([f"--input_folder={tmp_path / 'in'}",
                     f"--output_path={tmp_path / 'in'}"])
  assert result.returncode != 0
  assert b"is a folder; give a file path" in result.stderr
