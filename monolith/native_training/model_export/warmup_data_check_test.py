"""Tests for warmup_data_check against SavedModels that really parse requests."""

import copy
import gc
import gzip
import os
import re
import subprocess
import sys

from absl import app
from absl import flags
from google.protobuf import descriptor_pb2
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import regression_pb2

from idl.matrix.proto import example_pb2
from idl.matrix.proto import proto_parser_pb2
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import test_utils
from monolith.native_training import utils
from monolith.native_training.model_export import data_gen_utils
from monolith.native_training.model_export import export_context
from monolith.native_training.model_export import warmup_data_check
from monolith.native_training.model_export import warmup_io

# The command line's flags, for main() run in this process.
warmup_data_check.define_flags()

SIGNATURES = "ctr, score_instances, serving_default"


def _descriptor_source(*modules) -> bytes:
  """decode_proto's descriptor source for the messages of `modules`."""
  files = descriptor_pb2.FileDescriptorSet()
  seen = set()

  def add(file_descriptor):
    if file_descriptor.name in seen:
      return
    seen.add(file_descriptor.name)
    for dependency in file_descriptor.dependencies:
      add(dependency)
    file_descriptor.CopyToProto(files.file.add())

  for module in modules:
    add(module.DESCRIPTOR)
  return b"bytes://" + files.SerializeToString()


class _Ranker(tf.Module):
  """Parses its `examples` / `instances` input with the protos' descriptors."""

  def __init__(self):
    super().__init__()
    self._source = _descriptor_source(example_pb2, proto_parser_pb2)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def score_examples(self, examples):
    sizes, (_, labels, line_ids) = tf.io.decode_proto(
        examples, "monolith.io.proto.Example",
        ["named_feature", "label", "line_id"],
        [tf.string, tf.float32, tf.string], descriptor_source=self._source)
    _, (uids,) = tf.io.decode_proto(
        tf.reshape(line_ids, [-1]), "idl.matrix.proto.LineId", ["uid"],
        [tf.uint64], descriptor_source=self._source)
    return {
        "num_features": sizes[:, 0],
        "label_sum": tf.reduce_sum(labels, 1),
        "uid_slot": tf.bitwise.right_shift(tf.reshape(uids, [-1]),
                                           tf.constant(48, tf.uint64)),
    }

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def score_instances(self, instances):
    sizes, _ = tf.io.decode_proto(
        instances, "parser.proto.Instance", ["fid", "feature"],
        [tf.uint64, tf.string], descriptor_source=self._source)
    return {"num_fids": sizes[:, 0], "num_features": sizes[:, 1]}


@pytest.fixture(scope="module", name="model_dir")
def _model_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("ranker") / "1")
  ranker = _Ranker()
  scorer = ranker.score_examples.get_concrete_function()
  tf.saved_model.save(ranker, path, signatures={
      "serving_default": scorer,
      "ctr": scorer,
      "score_instances": ranker.score_instances.get_concrete_function(),
  })
  return path


def _save_examples_model(path, signatures_of):
  """Saves a TF1-style model on tf.Examples whose feature "x" is one float:
  signatures_of(examples, x) gives its signature defs."""
  with tf.Graph().as_default():
    examples = tf.compat.v1.placeholder(tf.string, [None])
    x = tf.io.parse_example(examples,
                            {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
    with tf.compat.v1.Session() as session:
      builder = tf.compat.v1.saved_model.Builder(path)
      builder.add_meta_graph_and_variables(
          session, ["serve"], signature_def_map=signatures_of(examples, x))
      builder.save()
  return path


@pytest.fixture(scope="module", name="classifier_dir")
def _classifier_dir(tmp_path_factory):
  """A TF1-style model with classify and regress signatures on tf.Examples."""

  return _save_examples_model(
      str(tmp_path_factory.mktemp("classifier") / "1"),
      _classify_and_regress_signatures)


def _classify_and_regress_signatures(examples, x, regress_examples=None):
  """Signature defs 'classify' and 'regress' on the examples' feature x;
  'regress' reads `regress_examples` where given."""
  classes = tf.tile(tf.constant([["no", "yes"]]), [tf.shape(examples)[0], 1])
  return {
      "classify": tf.compat.v1.saved_model.classification_signature_def(
          examples, classes, tf.concat([1 - x, x], 1)),
      "regress": tf.compat.v1.saved_model.regression_signature_def(
          examples if regress_examples is None else regress_examples, x),
  }


class _Summer(tf.Module):
  """Sums float32 vectors and matrices."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
  def vector(self, x):
    return {"sum": tf.reduce_sum(x)}

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
  def matrix(self, x):
    return {"sum": tf.reduce_sum(x)}


@pytest.fixture(scope="module", name="summer_dir")
def _summer_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("summer") / "1")
  summer = _Summer()
  tf.saved_model.save(summer, path, signatures={
      "vector": summer.vector.get_concrete_function(),
      "matrix": summer.matrix.get_concrete_function(),
  })
  return path


def _random_example_logs(**kwargs):
  args = data_gen_utils.ParserArgs(
      **dict(dict(sparse_features=["slot_1", "slot_2"], variant_type="example",
                  batch_size=8, max_records=32, signature_name=["ctr"],
                  seed=1), **kwargs))
  return list(data_gen_utils.gen_prediction_log(args))


def _write(path, logs):
  warmup_io.write_prediction_logs(str(path), logs)
  return str(path)


def _write_raw(path, records, options=None):
  with tf.io.TFRecordWriter(str(path), options) as writer:
    for record in records:
      writer.write(record)
  return str(path)


def _predict(signature, **tensors):
  return warmup_io.predict_log("default", signature, {
      name: tf.make_tensor_proto(value) for name, value in tensors.items()})


def _problems(report):
  return [str(p) for p in report.problems]


def test_replay_in_a_caller_with_a_default_graph_of_its_own(tmp_path,
                                                           model_dir):
  # A TF1 program (a chief checking its exports) calls it under a graph of
  # its own: request tensors parsed eagerly (.numpy()) failed there.
  path = _write(tmp_path / "warmup", _random_example_logs())
  with tf.Graph().as_default() as graph:
    report = warmup_data_check.check_warmup_file(path, model_dir)
  assert _problems(report) == [] and report.replayed
  assert not graph.get_operations()  # nothing added to the caller's graph


def test_random_warmup_checks_replays_and_installs(tmp_path, model_dir):
  path = _write(tmp_path / "warmup", _random_example_logs())
  report = warmup_data_check.check_warmup_file(path, model_dir,
                                               replay_iterations=2)
  assert _problems(report) == [] and report.replayed and report.records == 4
  assert list(report.signatures) == ["ctr", "serving_default"]
  for summary in report.signatures.values():
    assert summary.records == 2
    assert summary.log_types == {"predict_log": 2}
    assert summary.inputs == {"examples": "string"}
    assert summary.batch_sizes == {8: 2}
    assert summary.first_ms > 0
    assert len(summary.later_ms) == 3  # 2 requests x 2 iterations, less one
  text = warmup_data_check.format_report(report)
  assert text.splitlines()[0] == f"{path}: 4 warmup records, ok"
  assert "first ms" in text and "examples:string" in text

  installed = warmup_data_check.install_warmup_file(path, model_dir)
  assert installed == os.path.join(model_dir, "assets.extra",
                                   "tf_serving_warmup_requests")
  with open(installed, "rb") as a, open(path, "rb") as b:
    assert a.read() == b.read()
  # Installing again replaces the file; no temporary file stays behind.
  warmup_data_check.install_warmup_file(path, model_dir)
  assert os.listdir(os.path.dirname(installed)) == [
      "tf_serving_warmup_requests"]
  # The model's base folder: TF Serving never reads its assets.extra.
  base = os.path.dirname(model_dir)
  with pytest.raises(warmup_io.WarmupDataError,
                     match="holds no SavedModel .*give the version folder"):
    warmup_data_check.install_warmup_file(path, base)
  assert not os.path.exists(os.path.join(base, "assets.extra"))


def test_check_and_install_installs_only_the_checked_copy(tmp_path,
                                                         model_dir):
  installed_path = os.path.join(model_dir, "assets.extra",
                                "tf_serving_warmup_requests")
  # The module's model may hold a file installed by another test.
  before = (open(installed_path, "rb").read()
            if os.path.exists(installed_path) else None)
  bad = tmp_path / "bad"
  bad.write_bytes(b"not a TFRecord file at all")
  report, installed = warmup_data_check.check_and_install(str(bad), model_dir)
  assert installed is None and not report.ok
  assert report.warmup_file == str(bad)
  assert (open(installed_path, "rb").read()
          if os.path.exists(installed_path) else None) == before
  # No temporary stays behind.
  assert set(os.listdir(os.path.dirname(installed_path))) <= {
      "tf_serving_warmup_requests"}

  path = _write(tmp_path / "warmup", _random_example_logs())
  # A mistyped model folder: nothing is written into it.
  missing = tmp_path / "models" / "2"
  with pytest.raises(warmup_io.WarmupDataError, match="not a SavedModel"):
    warmup_data_check.check_and_install(path, str(missing))
  assert not missing.exists()
  report, installed = warmup_data_check.check_and_install(path, model_dir)
  assert report.ok and report.replayed and installed == installed_path
  with open(installed, "rb") as a, open(path, "rb") as b:
    assert a.read() == b.read()


def test_instance_requests_replay(tmp_path, model_dir):
  instances = [
      data_gen_utils.gen_instance([1, 2], ["slot_3"]).SerializeToString()
      for _ in range(5)
  ]
  path = _write(tmp_path / "warmup",
                [_predict("score_instances", instances=instances)] * 3)
  report = warmup_data_check.check_warmup_file(path, model_dir)
  assert _problems(report) == []
  summary = report.signatures["score_instances"]
  assert summary.inputs == {"instances": "string"}
  assert summary.batch_sizes == {5: 3} and len(summary.later_ms) == 2


def test_summary_without_a_model(tmp_path):
  logs = _random_example_logs(batch_size=4, max_records=12,
                              signature_name=["a", "b"])
  path = _write(tmp_path / "warmup", logs + [_predict("a", ids=[[1, 2]])])
  report = warmup_data_check.check_warmup_file(path)
  assert report.ok and not report.replayed and report.records == 4
  assert report.signatures["a"].inputs == {"examples": "string",
                                           "ids": "int32"}
  assert report.signatures["a"].batch_sizes == {4: 1, 1: 1}
  assert report.signatures["serving_default"].records == 1
  assert "first ms" not in warmup_data_check.format_report(report)


def test_example_batch_requests_count_the_batch_rows(tmp_path):
  # One serialized ExampleBatch per request: its rows are its batch_size,
  # not the string tensor's one element.
  logs = _random_example_logs(variant_type="example_batch", batch_size=6,
                              max_records=18, signature_name=["a"])
  path = _write(tmp_path / "warmup", logs)
  report = warmup_data_check.check_warmup_file(path)
  assert report.signatures["a"].inputs == {"example_batch": "string"}
  assert report.signatures["a"].batch_sizes == {6: 2}


def test_corrupted_record_names_its_index_and_offset(tmp_path):
  logs = _random_example_logs()
  path = _write(tmp_path / "warmup", logs)
  first = len(logs[0].SerializeToString()) + 16
  with open(path, "r+b") as f:
    f.seek(first + 12 + 40)  # inside record 1's data
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
  report = warmup_data_check.check_warmup_file(path)
  assert _problems(report) == [
      f"record 1: not a valid TFRecord at byte offset {first} (corrupted "
      f"record at {first + 12}); the file is damaged or is not a TFRecord file; TF "
      "Serving fails the model load with DataLoss"
  ]


def test_not_a_tfrecord_file(tmp_path):
  text = tmp_path / "requests.txt"
  text.write_text("model_spec { name: 'default' }\n" * 4)
  (problem,) = _problems(warmup_data_check.check_warmup_file(str(text)))
  assert problem.startswith("record 0: not a valid TFRecord at byte offset 0")
  assert "Is this even a TFRecord file?" in problem
  compressed = _write_raw(tmp_path / "warmup.gz",
                          [l.SerializeToString()
                           for l in _random_example_logs()],
                          tf.io.TFRecordOptions(compression_type="GZIP"))
  (problem,) = _problems(warmup_data_check.check_warmup_file(compressed))
  assert "it looks gzip-compressed, but TF Serving reads uncompressed" in problem
  with open(compressed, "rb") as f:
    assert gzip.decompress(f.read())  # really gzip


def test_truncated_files(tmp_path):
  logs = _random_example_logs()
  path = _write(tmp_path / "warmup", logs)
  with open(path, "rb") as f:
    data = f.read()
  cut = tmp_path / "cut"
  cut.write_bytes(data[:-3])  # the last record's data CRC is short
  last = len(logs[3].SerializeToString())
  report = warmup_data_check.check_warmup_file(str(cut))
  assert _problems(report) == [
      f"record 3: its length at byte offset {len(data) - last - 16} is "
      f"{last} bytes, but the file has {last + 1} bytes after its header: "
      "it was cut short or is not a TFRecord file; TF Serving's record "
      "reader fails on it (DataLoss: a truncated record), and with it the "
      "model load"
  ]
  assert report.records == 3  # the records before it are read
  extra = tmp_path / "extra"
  extra.write_bytes(data + data[:5])  # a partial record header
  (problem,) = _problems(warmup_data_check.check_warmup_file(str(extra)))
  assert problem == (
      f"record 4: the file ends in a partial record (5 bytes at byte offset "
      f"{len(data)}): it was cut short; TF Serving's warmup reads a "
      "partial header as the end of the file and stops there without an "
      "error")


def test_a_length_far_past_the_end_is_reported_not_read(tmp_path):
  # TF's reader crashes the process on a length near 2^40 (with a valid
  # length CRC); the check reports it before TF reads the file.
  logs = _random_example_logs()
  path = _write(tmp_path / "warmup", logs[:1])
  with open(path, "rb") as f:
    header = f.read(12)
  # The check's CRC is TF's: it agrees on the header TF wrote.
  assert warmup_data_check._masked_crc32c(header[:8]) == int.from_bytes(
      header[8:], "little")
  length = (1 << 40).to_bytes(8, "little")
  crafted = tmp_path / "crafted"
  crafted.write_bytes(length + warmup_data_check._masked_crc32c(
      length).to_bytes(4, "little") + b"0123456789")
  assert _problems(warmup_data_check.check_warmup_file(str(crafted))) == [
      f"record 0: its length at byte offset 0 is {1 << 40} bytes, but the "
      "file has 10 bytes after its header: it was cut short or is not a "
      "TFRecord file; TF Serving's record reader fails on it (DataLoss: a "
      "truncated record), and with it the model load"
  ]
  # A corrupt record before such a length is where TF Serving stops.
  two = _write(tmp_path / "two", logs[:2])
  with open(two, "rb") as f:
    data = bytearray(f.read())
  data[20] ^= 0xFF  # inside record 0's data
  crafted.write_bytes(bytes(data) + length + warmup_data_check._masked_crc32c(
      length).to_bytes(4, "little"))
  assert _problems(warmup_data_check.check_warmup_file(str(crafted))) == [
      "record 0: not a valid TFRecord at byte offset 0 (its data CRC does not "
      "match); the file is damaged; TF Serving fails the model load with "
      "DataLoss"
  ]


def test_records_before_a_length_past_the_end_stream(tmp_path, monkeypatch):
  # They were all read into memory before the first was handed out (a
  # decoder of a 10 GB file cut short in its last record held 10 GB).
  logs = _random_example_logs()
  path = _write(tmp_path / "warmup", logs[:3])
  length = (1 << 40).to_bytes(8, "little")
  with open(path, "ab") as f:
    f.write(length + warmup_data_check._masked_crc32c(length).to_bytes(
        4, "little"))
  pulled = []
  real_iterator = tf.compat.v1.io.tf_record_iterator

  def counting_iterator(*args, **kwargs):
    for record in real_iterator(*args, **kwargs):
      pulled.append(len(record))
      yield record

  monkeypatch.setattr(tf.compat.v1.io, "tf_record_iterator",
                      counting_iterator)
  problems = []
  records = warmup_data_check.iter_warmup_file(path, problems)
  assert next(records) == logs[0]
  assert len(pulled) == 1
  assert list(records) == logs[1:3]
  assert [p.record for p in problems] == [3]


def test_more_than_1000_records(tmp_path):
  record = _predict("serving_default", examples=[b""]).SerializeToString()
  path = _write_raw(tmp_path / "warmup", [record] * 1001)
  report = warmup_data_check.check_warmup_file(path)
  assert report.records == 1000
  assert _problems(report) == [
      "record 1000: the file has more than 1000 records; TF Serving fails to "
      "load a model whose warmup file has more"
  ]
  ok = _write_raw(tmp_path / "ok", [record] * 1000)
  assert warmup_data_check.check_warmup_file(ok).ok


def test_empty_file(tmp_path):
  path = tmp_path / "empty"
  path.write_bytes(b"")
  assert _problems(warmup_data_check.check_warmup_file(str(path))) == [
      "no records: TF Serving would load the model without warming it up"
  ]
  with pytest.raises(warmup_io.WarmupDataError, match="no such file"):
    warmup_data_check.check_warmup_file(str(tmp_path / "missing"))


def test_records_tf_serving_does_not_run(tmp_path):
  session_run = prediction_log_pb2.PredictionLog()
  session_run.session_run_log.request.feed.add(name="x")
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "default"
  records = [
      _predict("serving_default", examples=[b""]).SerializeToString(),
      session_run.SerializeToString(),
      prediction_log_pb2.PredictionLog().SerializeToString(),
      b"\xff\xff\xff\xff",
      # Field 15 is unknown to PredictionLog.
      b"\x7a\x02\x08\x01",
      # A PredictRequest written without its PredictionLog.
      request.SerializeToString(),
  ]
  path = _write_raw(tmp_path / "warmup", records)
  problems = _problems(warmup_data_check.check_warmup_file(path))
  assert problems == [
      "record 1: session_run_log: TF Serving fails the model load on these "
      "(Unimplemented); use one of predict_log, classify_log, regress_log, "
      "multi_inference_log",
      "record 2: the PredictionLog sets no log type, so TF Serving skips it "
      "and warms nothing up",
      problems[2],
      "record 4: the PredictionLog sets no log type, so TF Serving skips it "
      "and warms nothing up; it has 1 fields PredictionLog does not define "
      "(was another message written instead?)",
      problems[4],
  ]
  for problem in (problems[2], problems[4]):
    assert problem.endswith("does not parse as tensorflow.serving."
                            "PredictionLog: Error parsing message with type "
                            "'tensorflow.serving.PredictionLog': Wire format "
                            "was corrupt")
  assert problems[2].startswith("record 3: ")
  assert problems[4].startswith("record 5: ")


def test_inputs_with_defaults_may_be_left_out(tmp_path):
  """TF Serving feeds a signature's default (SignatureDef.defaults, a TF2
  function's default argument) for an input the request leaves out: such
  a request was a problem here, and the file was not installed."""
  path = str(tmp_path / "model" / "1")
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
    scale = tf.compat.v1.placeholder(tf.float32, [], name="scale")
    info = tf.compat.v1.saved_model.build_tensor_info
    signature = tf.compat.v1.saved_model.build_signature_def(
        {"x": info(x), "scale": info(scale)}, {"y": info(x * scale)},
        tf.saved_model.PREDICT_METHOD_NAME)
    signature.defaults["scale"].CopyFrom(tf.make_tensor_proto(2.0))
    # Keys that name no input are passed over, as TF Serving does.
    signature.defaults["unused"].CopyFrom(tf.make_tensor_proto(1.0))
    odd = copy.deepcopy(signature)
    odd.defaults["scale"].CopyFrom(tf.make_tensor_proto(2.0, tf.float64))
    with tf.compat.v1.Session() as session:
      builder = tf.compat.v1.saved_model.Builder(path)
      builder.add_meta_graph_and_variables(
          session, ["serve"],
          signature_def_map={"serving_default": signature, "odd": odd})
      builder.save()
  logs = [_predict("serving_default", x=tf.constant([1.0, 2.0])),
          _predict("serving_default", scale=tf.constant(3.0)),
          _predict("odd", x=tf.constant([1.0]))]
  report = warmup_data_check.check_warmup_file(
      _write(tmp_path / "warmup", logs), path)
  assert _problems(report) == [
      "record 1: signature 'serving_default' needs input 'x', which the "
      "request lacks",
      # TF Serving feeds a default as it is: Session::Run refuses the dtype.
      "record 2: the default of input 'scale' is float64, but signature "
      "'odd' takes float32",
  ]
  # A request's tensor wins over the default.
  given = _predict("serving_default", x=tf.constant([1.0]),
                   scale=tf.constant(3.0))
  report, installed = warmup_data_check.check_and_install(
      _write(tmp_path / "warmup_ok", [logs[0], given]), path)
  assert _problems(report) == [] and report.replayed and installed


def test_requests_that_do_not_fit_the_signatures(tmp_path, model_dir):
  logs = [
      _predict("serving_default", instances=[b""]),
      _predict("cvr", examples=[b""]),
      _predict("ctr", examples=tf.constant([1, 2], tf.int64)),
      _predict("ctr", examples=[[b"a", b"b"]]),
  ]
  filtered = _predict("serving_default", examples=[b""])
  filtered.predict_log.request.output_filter.append("score")
  twice = _predict("serving_default", examples=[b""])
  twice.predict_log.request.output_filter.extend(["uid_slot", "uid_slot"])
  path = _write(tmp_path / "warmup", logs + [filtered, twice])
  report = warmup_data_check.check_warmup_file(path, model_dir)
  assert not report.replayed
  assert _problems(report) == [
      "record 0: input 'instances' is not an input of signature "
      "'serving_default' (inputs: examples)",
      "record 0: signature 'serving_default' needs input 'examples', which "
      "the request lacks",
      f"record 1: signature 'cvr' is not in {model_dir} (signatures: "
      f"{SIGNATURES})",
      "record 2: input 'examples' is int64, but signature 'ctr' takes string",
      "record 3: input 'examples' has shape (1, 2), but signature 'ctr' takes "
      "(None,)",
      "record 4: output_filter 'score' is not an output of signature "
      "'serving_default' (outputs: label_sum, num_features, uid_slot)",
      "record 5: output_filter names 'uid_slot' twice: TF Serving refuses "
      "the request (duplicate output tensor alias)",
  ]


def test_replay_failure_names_record_and_signature(tmp_path, model_dir):
  good = _random_example_logs(max_records=8, signature_name=[])
  bad = _predict("ctr", examples=[b"\xff\xff not an Example"])
  path = _write(tmp_path / "warmup", good + [bad])
  report = warmup_data_check.check_warmup_file(path, model_dir)
  (problem,) = _problems(report)
  # The op and its cause, without TF's location noise.
  assert problem.startswith(
      "record 1: replaying it through signature 'ctr' failed: DecodeProtoV2: ")
  assert "Detected at node" not in problem


def _classify_and_regress(example, model_name):
  """A multi_inference log of one example: tasks on the 'classify' and
  'regress' signatures of model `model_name`."""
  multi = prediction_log_pb2.PredictionLog()
  multi.multi_inference_log.request.input.example_list.examples.append(example)
  for signature, method in [("classify", "tensorflow/serving/classify"),
                            ("regress", "tensorflow/serving/regress")]:
    task = multi.multi_inference_log.request.tasks.add(method_name=method)
    task.model_spec.name = model_name
    task.model_spec.signature_name = signature
  return multi


def test_classify_and_regress_requests(tmp_path, classifier_dir, model_dir):
  example = tf.train.Example()
  example.features.feature["x"].float_list.value.append(0.25)
  classify = prediction_log_pb2.PredictionLog()
  classify_request = classify.classify_log.request
  classify_request.model_spec.signature_name = "classify"
  classify_request.input.example_list.examples.extend([example] * 3)
  regress = prediction_log_pb2.PredictionLog()
  regress_request = regress.regress_log.request
  regress_request.model_spec.signature_name = "regress"
  context = regress_request.input.example_list_with_context
  context.context.CopyFrom(example)
  context.examples.add()  # x comes from the context
  multi = _classify_and_regress(example, "ranker")
  path = _write(tmp_path / "warmup", [classify, regress, multi])
  report = warmup_data_check.check_warmup_file(path, classifier_dir)
  assert _problems(report) == []
  assert report.signatures["classify"].log_types == {
      "classify_log": 1, "multi_inference_log": 1}
  assert report.signatures["classify"].batch_sizes == {3: 1, 1: 1}
  assert report.signatures["regress"].inputs == {"<tf.Example>": "string"}
  assert len(report.signatures["regress"].later_ms) == 1
  # A regress request on a classify signature, and on a predict signature.
  wrong = prediction_log_pb2.PredictionLog()
  wrong.regress_log.request.CopyFrom(regression_pb2.RegressionRequest(
      model_spec=classify_request.model_spec, input=classify_request.input))
  path = _write(tmp_path / "wrong", [wrong])
  # TF Serving checks a signature's layout; its method name only under
  # --enable_signature_method_name_check (off by default).
  assert _problems(warmup_data_check.check_warmup_file(path, classifier_dir)) == [
      "record 0: signature 'classify' must have one output, named "
      "'outputs', for regress requests (it has ['classes', 'scores'])"
  ]
  assert _problems(
      warmup_data_check.check_warmup_file(path, classifier_dir,
                                          method_name_check=True)) == [
      "record 0: a regress request needs a signature of method "
      "tensorflow/serving/regress, but signature 'classify' has "
      "tensorflow/serving/classify (--enable_signature_method_name_check)"
  ]
  on_predict = prediction_log_pb2.PredictionLog()
  on_predict.classify_log.request.CopyFrom(classification_pb2.ClassificationRequest(
      input=classify_request.input))
  path = _write(tmp_path / "on_predict", [on_predict])
  problems = _problems(warmup_data_check.check_warmup_file(
      path, model_dir, method_name_check=True))
  assert problems == [
      "record 0: a classify request needs a signature of method "
      "tensorflow/serving/classify, but signature 'serving_default' has "
      "tensorflow/serving/predict (--enable_signature_method_name_check)"
  ]
  # Multi-inference requests TF Serving refuses: no tasks, a signature run
  # twice, a task without a model name, tasks naming two models.
  empty = prediction_log_pb2.PredictionLog()
  empty.multi_inference_log.request.input.CopyFrom(classify_request.input)
  twice = prediction_log_pb2.PredictionLog()
  twice.CopyFrom(multi)
  twice.multi_inference_log.request.tasks[1].model_spec.signature_name = (
      "classify")
  unnamed = prediction_log_pb2.PredictionLog()
  unnamed.CopyFrom(multi)
  unnamed.multi_inference_log.request.tasks[1].model_spec.ClearField("name")
  two_models = prediction_log_pb2.PredictionLog()
  two_models.CopyFrom(multi)
  two_models.multi_inference_log.request.tasks[1].model_spec.name = "other"
  path = _write(tmp_path / "bad_multi", [empty, twice, unnamed, two_models])
  assert _problems(warmup_data_check.check_warmup_file(path)) == [
      "record 0: multi_inference_log with no tasks: TF Serving refuses the "
      "request (InvalidArgument), and with it the model load",
      "record 1: multi_inference_log runs signature classify in two tasks: "
      "TF Serving refuses the request (InvalidArgument: duplicate evaluation "
      "of a signature), and with it the model load",
      "record 2: multi_inference_log task 1 has no model_spec.name: TF "
      "Serving refuses the request (InvalidArgument: a ModelSpec with an "
      "empty model name), and with it the model load",
      "record 3: multi_inference_log tasks name models ['other', 'ranker']: "
      "TF Serving refuses the request (InvalidArgument: all tasks must name "
      "the same model), and with it the model load",
  ]


def test_a_classifier_saved_with_the_predict_method_is_served(tmp_path):
  # tf.saved_model.save writes every signature with the predict method;
  # TF Serving runs classify requests on one of the classify layout unless
  # --enable_signature_method_name_check is on.
  class Classifier(tf.Module):

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, inputs):
      x = tf.io.parse_example(
          inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
      return {"scores": tf.concat([1 - x, x], 1)}

  path = str(tmp_path / "classifier" / "1")
  classifier = Classifier()
  tf.saved_model.save(
      classifier, path,
      signatures={"classify": classifier.classify.get_concrete_function()})
  example = tf.train.Example()
  example.features.feature["x"].float_list.value.append(0.25)
  log = prediction_log_pb2.PredictionLog()
  log.classify_log.request.model_spec.signature_name = "classify"
  log.classify_log.request.input.example_list.examples.append(example)
  warmup = _write(tmp_path / "warmup", [log])
  report = warmup_data_check.check_warmup_file(warmup, path)
  assert _problems(report) == []
  assert report.replayed
  assert _problems(
      warmup_data_check.check_warmup_file(warmup, path,
                                          method_name_check=True)) == [
      "record 0: a classify request needs a signature of method "
      "tensorflow/serving/classify, but signature 'classify' has "
      "tensorflow/serving/predict (--enable_signature_method_name_check)"
  ]


def test_multi_inference_tasks_must_read_one_input_tensor(tmp_path):

  def signatures(examples, x):
    other = tf.compat.v1.placeholder(tf.string, [None], name="other")
    return _classify_and_regress_signatures(examples, x, other)

  model = _save_examples_model(str(tmp_path / "model" / "1"), signatures)
  example = tf.train.Example()
  example.features.feature["x"].float_list.value.append(0.25)
  path = _write(tmp_path / "warmup", [_classify_and_regress(example, "m")])
  assert _problems(warmup_data_check.check_warmup_file(path, model)) == [
      "record 0: multi_inference_log tasks' signatures read different input "
      "tensors ('classify' reads Placeholder:0, 'regress' reads other:0): "
      "TF Serving refuses the request (InvalidArgument: the input tensor "
      "must be the same for all signatures), and with it the model load"
  ]


@pytest.fixture(scope="module", name="odd_examples_dir")
def _odd_examples_dir(tmp_path_factory):
  """Classify and regress signatures TF Serving refuses: other input and
  output names, another dtype."""

  def signatures(examples, x):
    info = tf.compat.v1.saved_model.build_tensor_info
    return {
        "classify": tf.compat.v1.saved_model.build_signature_def(
            {"examples": info(examples)}, {"probabilities": info(x)},
            "tensorflow/serving/classify"),
        "regress": tf.compat.v1.saved_model.build_signature_def(
            {"inputs": info(examples)},
            {"outputs": info(tf.cast(x, tf.float64))},
            "tensorflow/serving/regress"),
    }

  return _save_examples_model(
      str(tmp_path_factory.mktemp("odd_examples") / "1"), signatures)


def _classify_and_regress_logs(examples: int):
  """A classify and a regress log on signatures 'classify' and 'regress',
  each of `examples` tf.Examples of feature x = 0.5."""
  example = tf.train.Example()
  example.features.feature["x"].float_list.value.append(0.5)
  logs = []
  for kind in ("classify", "regress"):
    log = prediction_log_pb2.PredictionLog()
    request = getattr(log, f"{kind}_log").request
    request.model_spec.signature_name = kind
    request.input.example_list.examples.extend([example] * examples)
    logs.append(log)
  return logs


def test_classify_and_regress_signatures_tf_serving_refuses(
    tmp_path, odd_examples_dir):
  # Replay would run them; TF Serving's classify / regress refuse them, the
  # warmup fails and the model does not load: not installed.
  path = _write(tmp_path / "warmup", _classify_and_regress_logs(1))
  report, installed = warmup_data_check.check_and_install(
      path, odd_examples_dir)
  assert installed is None
  assert not os.path.exists(
      os.path.join(odd_examples_dir, warmup_io.WARMUP_FILE_PATH))
  assert _problems(report) == [
      "record 0: signature 'classify' must have one input, named 'inputs', "
      "for classify requests (it has ['examples'])",
      "record 0: signature 'classify' must have one or two outputs, among "
      "them 'classes' or 'scores', for classify requests (it has "
      "['probabilities'])",
      "record 1: signature 'regress''s output 'outputs' must be float32 for "
      "regress requests, not float64",
  ]


def test_classify_and_regress_outputs_tf_serving_refuses(tmp_path):
  """Signatures of the right names and dtypes whose outputs TF Serving's
  post-processing refuses once they ran: scores that are not [batch,
  classes], regression outputs that are not [batch] or [batch, 1]."""

  def signatures(examples, x):
    return {
        "classify": tf.compat.v1.saved_model.classification_signature_def(
            examples, None, tf.reshape(x, [-1])),
        "regress": tf.compat.v1.saved_model.regression_signature_def(
            examples, tf.concat([x, x], 1)),
    }

  model_dir = _save_examples_model(str(tmp_path / "model" / "1"), signatures)
  path = _write(tmp_path / "warmup", _classify_and_regress_logs(3))
  report, installed = warmup_data_check.check_and_install(path, model_dir)
  assert installed is None
  assert _problems(report) == [
      "record 0: replaying it through signature 'classify' failed: its "
      "scores have shape [3], but TF Serving takes [3, classes] for 3 "
      "examples and fails the model load otherwise",
      "record 1: replaying it through signature 'regress' failed: its "
      "regression outputs have shape [3, 2], but TF Serving takes [3] or "
      "[3, 1] for 3 examples and fails the model load otherwise",
  ]


def test_requests_tf_serving_refuses_whatever_the_model(tmp_path):
  """Found without a model: a multi_inference task of a method TF Serving
  does not run in one, and classify / regress requests of no examples."""
  example = tf.train.Example()
  multi = _classify_and_regress(example, "ranker")
  multi.multi_inference_log.request.tasks[1].method_name = (
      "tensorflow/serving/predict")
  empty = prediction_log_pb2.PredictionLog()
  empty.classify_log.request.model_spec.signature_name = "classify"
  path = _write(tmp_path / "warmup", [multi, empty])
  assert _problems(warmup_data_check.check_warmup_file(path)) == [
      "record 0: multi_inference_log task 1 has method "
      "'tensorflow/serving/predict': TF Serving runs "
      "tensorflow/serving/classify and tensorflow/serving/regress tasks only "
      "(Unimplemented: unsupported signature method_name), and fails the "
      "model load",
      "record 1: classify_log has no examples: TF Serving refuses the "
      "request (InvalidArgument: Input is empty), and with it the model load",
  ]


def test_model_dir_that_is_not_a_saved_model(tmp_path, model_dir):
  path = _write(tmp_path / "warmup", _random_example_logs())
  with pytest.raises(warmup_io.WarmupDataError, match="not a SavedModel") as e:
    warmup_data_check.check_warmup_file(path, str(tmp_path))
  assert "pass one" not in str(e.value)
  # The model's base folder: the error names a version to pass.
  base = os.path.dirname(model_dir)
  with pytest.raises(warmup_io.WarmupDataError,
                     match=re.escape(f"it holds the model's versions: pass "
                                     f"one, e.g. {model_dir}")):
    warmup_data_check.check_warmup_file(path, base)


# --- Request tensors, as TF Serving parses them (Tensor::FromProto). --------

_PARSING_ERROR = ("; TF Serving fails the request on it (tensor parsing "
                  "error), and with it the model load")


def _tensor(dtype, dims, unknown_rank=False, **fields):
  tensor = tensor_pb2.TensorProto(dtype=dtype, **fields)
  for size in dims:
    tensor.tensor_shape.dim.add(size=size)
  tensor.tensor_shape.unknown_rank = unknown_rank
  return tensor


def _tensor_log(signature, **tensors):
  return warmup_io.predict_log("default", signature, tensors)


def _varint(value):
  out = bytearray()
  while value >= 0x80:
    out.append(value & 0x7F | 0x80)
    value >>= 7
  return bytes(out + bytes([value]))


def _string_list(*items):
  """A string tensor's tensor_content as TF encodes it (EncodeStringList)."""
  return b"".join(_varint(len(i)) for i in items) + b"".join(items)


def _examples(count):
  """`count` serialized monolith Examples, as the ranker's signatures take."""
  request = _random_example_logs(batch_size=count)[0].predict_log.request
  return list(request.inputs["examples"].string_val)


_F, _S = types_pb2.DT_FLOAT, types_pb2.DT_STRING


@pytest.mark.parametrize("tensor, reason", [
    pytest.param(_tensor(999, [1], int_val=[1]),
                 "its dtype 999 is not a TensorFlow DataType number",
                 id="unknown_dtype"),
    pytest.param(_tensor(types_pb2.DT_FLOAT_REF, [1], float_val=[1]),
                 "its dtype DT_FLOAT_REF is a reference type, which no tensor "
                 "value has", id="ref_dtype"),
    pytest.param(_tensor(types_pb2.DT_INVALID, [1]),
                 "its dtype is not set (DT_INVALID)", id="invalid_dtype"),
    pytest.param(_tensor(_F, [2, -1], float_val=[1]),
                 "dimension 1 of its shape [2, -1] is -1; a tensor's "
                 "dimensions must be >= 0 (-1, unknown, is only for "
                 "signatures)", id="negative_dim"),
    pytest.param(_tensor(_F, [1] * 255, float_val=[1]),
                 "its shape has 255 dimensions, more than the 254 TF allows",
                 id="too_many_dims"),
    pytest.param(_tensor(_F, [1 << 62, 4], float_val=[1]),
                 "its shape [4611686018427387904, 4] has more than 2^63 - 1 "
                 "elements", id="int64_overflow"),
    pytest.param(_tensor(_F, [2], tensor_content=b"\0" * 4),
                 "its tensor_content has 4 bytes, but shape [2] of float32 "
                 "takes 2 x 4 = 8 bytes", id="content_too_short"),
    pytest.param(_tensor(types_pb2.DT_INT64, [1], tensor_content=b"\0" * 16),
                 "its tensor_content has 16 bytes, but shape [1] of int64 "
                 "takes 1 x 8 = 8 bytes", id="content_too_long"),
    pytest.param(_tensor(_F, [200000000], tensor_content=b"\0" * 4),
                 "its tensor_content has 4 bytes, but shape [200000000] of "
                 "float32 takes 200000000 x 4 = 800000000 bytes",
                 id="2e8_short_content"),
    pytest.param(_tensor(types_pb2.DT_BOOL, [3], tensor_content=b"\1\0\5"),
                 "its tensor_content has byte 0x05 at offset 2; a bool is 0 or "
                 "1", id="bool_content"),
    pytest.param(_tensor(_S, [2], tensor_content=b"ab"),
                 "its tensor_content's 2 item lengths add up to 195 bytes, but "
                 "0 bytes follow them; TF reads it as 2 varint32 lengths, then "
                 "exactly that many bytes", id="string_raw_content"),
    pytest.param(_tensor(_S, [2], tensor_content=_string_list(b"a", b"b") +
                         b"c"),
                 "its tensor_content's 2 item lengths add up to 2 bytes, but "
                 "3 bytes follow them; TF reads it as 2 varint32 lengths, then "
                 "exactly that many bytes", id="string_content_extra_byte"),
    pytest.param(_tensor(_S, [200000000], tensor_content=b"\1x"),
                 "its tensor_content ends inside the length of item 2 of "
                 "200000000; TF reads it as 200000000 varint32 lengths, then "
                 "the items' bytes", id="string_2e8_short_content"),
])
def test_request_tensors_tf_serving_does_not_parse(tmp_path, tensor, reason):
  path = _write(tmp_path / "warmup", [
      _predict("serving_default", examples=[b""]),
      _tensor_log("serving_default", ids=tensor),
  ])
  report = warmup_data_check.check_warmup_file(path)
  assert _problems(report) == [f"record 1: input 'ids': {reason}" +
                               _PARSING_ERROR]
  # The summary still lists the input, an unknown dtype by its number.
  assert "ids" in report.signatures["serving_default"].inputs


@pytest.mark.parametrize("tensor, expands", [
    pytest.param(_tensor(_F, [100000000, 100000000], float_val=[1]),
                 "it takes 40000000000000000 bytes once parsed "
                 "(10000000000000000 float32 elements of shape [100000000, "
                 "100000000], from 1 element(s) of float_val)", id="1e16"),
    pytest.param(_tensor(_S, [200000000], string_val=[b"x"]),
                 "it takes 5000000000 bytes once parsed (200000000 string "
                 "elements of shape [200000000], from 1 element(s) of "
                 "string_val)", id="2e8_strings"),
    pytest.param(_tensor(types_pb2.DT_COMPLEX64, [200000000]),
                 "it takes 1600000000 bytes once parsed (200000000 complex64 "
                 "elements of shape [200000000], from 0 element(s) of "
                 "scomplex_val)", id="2e8_zeros"),
])
def test_huge_request_tensors(tmp_path, tensor, expands):
  path = _write(tmp_path / "warmup", [_tensor_log("serving_default",
                                                  ids=tensor)])
  assert _problems(warmup_data_check.check_warmup_file(path)) == [
      f"record 0: input 'ids': {expands}, more than "
      "--max_tensor_bytes=1073741824; TF Serving would allocate that on every "
      "warmup run, the checker does not"
  ]
  # Under a higher limit they pass (TF parses them, given the memory), and
  # checking them still costs nothing.
  assert warmup_data_check.check_warmup_file(
      path, max_tensor_bytes=1 << 60).ok


def test_max_tensor_bytes(tmp_path):
  path = _write(tmp_path / "warmup",
                [_tensor_log("vector", x=_tensor(_F, [3], float_val=[1]))])
  assert warmup_data_check.check_warmup_file(path, max_tensor_bytes=12).ok
  (problem,) = _problems(warmup_data_check.check_warmup_file(
      path, max_tensor_bytes=11))
  assert problem.startswith("record 0: input 'x': it takes 12 bytes once "
                            "parsed (3 float32 elements of shape [3], from 1 "
                            "element(s) of float_val), more than "
                            "--max_tensor_bytes=11")


def test_request_tensors_tf_serving_parses_and_replays(tmp_path, model_dir,
                                                        summer_dir):
  """TF fills missing values with the last one, ignores extra values, reads
  a string tensor_content as a string list and ignores unknown_rank."""
  vectors = [
      _tensor(_F, [3], float_val=[2]),  # fewer values than elements
      _tensor(_F, [2]),  # no values: zeros
      _tensor(_F, [1], float_val=[1, 2, 3]),  # more: TF drops the extra ones
      _tensor(_F, [2], unknown_rank=True, float_val=[1, 2]),
      _tensor(_F, [0], float_val=[1], tensor_content=b"ignored"),  # empty
      _tensor(_F, [2], tensor_content=b"\0" * 8, float_val=[1]),
  ]
  path = _write(tmp_path / "vectors",
                [_tensor_log("vector", x=v) for v in vectors])
  report = warmup_data_check.check_warmup_file(path, summer_dir)
  assert _problems(report) == [] and report.replayed
  assert report.signatures["vector"].batch_sizes == {0: 1, 1: 1, 2: 3, 3: 1}

  examples = _examples(3)
  requests = [
      _tensor(_S, [3], string_val=examples[:1]),  # the one example, 3 times
      _tensor(_S, [2], string_val=examples),
      _tensor(_S, [3], tensor_content=_string_list(*examples)),
  ]
  path = _write(tmp_path / "strings",
                [_tensor_log("ctr", examples=r) for r in requests])
  report = warmup_data_check.check_warmup_file(path, model_dir)
  assert _problems(report) == [] and report.replayed
  assert report.signatures["ctr"].batch_sizes == {2: 1, 3: 2}


def test_unknown_rank_is_read_as_its_dims(tmp_path, model_dir):
  path = _write(tmp_path / "warmup", [
      _tensor_log("ctr", examples=_tensor(_S, [], unknown_rank=True,
                                          string_val=[b""])),
      _tensor_log("ctr", examples=_tensor(_S, [1, 1], unknown_rank=True,
                                          string_val=[b""])),
  ])
  assert _problems(warmup_data_check.check_warmup_file(path, model_dir)) == [
      "record 0: input 'examples' has shape (), but signature 'ctr' takes "
      "(None,)",
      "record 1: input 'examples' has shape (1, 1), but signature 'ctr' takes "
      "(None,)",
  ]


def test_encodings_cover_every_dtype():
  """A dtype TF adds makes this fail instead of being rejected unread."""
  assert set(warmup_data_check._ENCODINGS) == {
      v for v in types_pb2.DataType.values() if 0 < v < 100}
  for dtype, encoding in warmup_data_check._ENCODINGS.items():
    if encoding.content_bytes is not None:
      assert encoding.content_bytes == tf.as_dtype(dtype).size, dtype
    assert encoding.field in tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name


def _small_tensors():
  """Tensors around every rule, small enough for TF to parse."""
  bytes_values = b"\1\1\1\1\1"
  for dtype, encoding in warmup_data_check._ENCODINGS.items():
    for dims in ([], [0], [1], [3], [2, 2], [-1], [0, -1], [2, 0, 3]):
      yield _tensor(dtype, dims)
      if encoding.content_bytes is not None:
        for count in (1, 3, 4, 5):
          size = count * encoding.content_bytes
          yield _tensor(dtype, dims, tensor_content=b"\1" * size)
          yield _tensor(dtype, dims, tensor_content=b"\1" * (size - 1 or 2))
      if dtype in (types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT):
        continue
      for count in (1, 3, 5):
        tensor = _tensor(dtype, dims)
        if encoding.field == "float8_val":
          tensor.float8_val = bytes_values[:count]
        elif dtype == _S:
          tensor.string_val.extend([b"ab"] * count)
        else:
          getattr(tensor, encoding.field).extend([1] * count)
        yield tensor
  for content in (b"\1\2abc", b"abc", b"\1\2abcd", b"\0", b"\0\0", b"\x80",
                  b"\x81\x80\x80\x80\x10x", b"\x81\x80\x80\x80\x80\0x"):
    for dims in ([1], [2], [3]):
      for dtype in (_S, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT):
        yield _tensor(dtype, dims, tensor_content=content)
  for content in (b"\0\1", b"\2\0", b"\1\xff"):
    yield _tensor(types_pb2.DT_BOOL, [2], tensor_content=content)
  for dtype in (0, 34, types_pb2.DT_FLOAT_REF, types_pb2.DT_STRING_REF, 999):
    yield _tensor(dtype, [1])
    yield _tensor(dtype, [0])
  yield _tensor(_F, [], unknown_rank=True, float_val=[1])
  yield _tensor(_F, [1] * 254, float_val=[1])
  yield _tensor(_F, [1] * 255, float_val=[1])
  yield _tensor(_F, [1 << 62, 2, 0], float_val=[1])
  yield _tensor(_F, [0, 1 << 62, 1 << 62], float_val=[1])
  variant = _tensor(types_pb2.DT_VARIANT, [1])
  variant.variant_val.add(type_name="not a registered variant", metadata=b"x")
  yield variant
  resource = _tensor(types_pb2.DT_RESOURCE, [2])
  resource.resource_handle_val.add(name="r")
  yield resource


def test_tensor_problem_agrees_with_tf():
  """tensor_problem accepts exactly the tensors TF's own parse accepts."""
  disagreements = []
  count = 0
  for tensor in _small_tensors():
    count += 1
    try:
      tf.io.parse_tensor(tensor.SerializeToString(), tensor.dtype)
      tf_parses = True
    except (tf.errors.OpError, TypeError):
      tf_parses = False
    reason = warmup_data_check.tensor_problem(tensor)
    if (reason is None) != tf_parses:
      disagreements.append(f"{tensor.dtype} {warmup_data_check._dims(tensor)}"
                           f" {tensor.tensor_content!r}: TF parses: "
                           f"{tf_parses}, checker: {reason}")
  assert count > 3000 and disagreements == []


# --- The command line. -------------------------------------------------------


def _main_in_process(args):
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["warmup_data_check"] + args)
  try:
    warmup_data_check.main(["warmup_data_check"])
  finally:
    flags.FLAGS.unparse_flags()


def test_main_lists_at_most_20_problems(tmp_path, model_dir):
  path = _write(tmp_path / "warmup",
                [_predict("cvr", examples=[b""])] * 25)
  installed = os.path.join(model_dir, warmup_io.WARMUP_FILE_PATH)

  def installed_bytes():
    if not os.path.exists(installed):
      return None
    with open(installed, "rb") as f:
      return f.read()

  before = installed_bytes()
  with pytest.raises(warmup_io.ToolError) as e:
    _main_in_process([f"--warmup_file={path}", f"--saved_model_dir={model_dir}",
                      "--install"])
  assert e.value.status == 1
  lines = str(e.value).splitlines()
  assert len(lines) == 21
  assert lines[0] == (f"{path}: record 0: signature 'cvr' is not in "
                      f"{model_dir} (signatures: {SIGNATURES})")
  assert lines[-1] == f"{path}: ... and 5 more problem(s)"
  assert installed_bytes() == before  # --install waits for a clean check


def test_main_flag_errors(tmp_path):
  with pytest.raises(app.UsageError, match="--warmup_file is required"):
    _main_in_process([])
  for flag in ("--install", "--replay", "--noreplay", "--replay_iterations=5",
               "--enable_signature_method_name_check"):
    # Acting on a model: without one, a flag that would do nothing.
    name = flag.lstrip("-").split("=")[0].replace("noreplay", "replay")
    with pytest.raises(app.UsageError,
                       match=f"--{name} needs --saved_model_dir"):
      _main_in_process([f"--warmup_file={tmp_path}/w", flag])
  with pytest.raises(flags.IllegalFlagValueError, match="replay_iterations"):
    _main_in_process([f"--warmup_file={tmp_path}/w", "--replay_iterations=0"])


def test_cli_checks_replays_and_installs(tmp_path):
  model_dir = str(tmp_path / "model" / "1")
  ranker = _Ranker()
  tf.saved_model.save(ranker, model_dir, signatures={
      "serving_default": ranker.score_examples.get_concrete_function()})
  path = _write(tmp_path / "warmup",
                _random_example_logs(max_records=24, signature_name=[]))
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3",
                               BUILD_WORKING_DIRECTORY=str(tmp_path))
  command = [sys.executable, "-m",
             "monolith.native_training.model_export.warmup_data_check",
             "--warmup_file=warmup", "--saved_model_dir=model/1", "--install"]
  result = subprocess.run(command, capture_output=True, env=env, cwd="/",
                          check=False)
  assert result.returncode == 0, result.stderr.decode()
  out = result.stdout.decode().splitlines()
  assert out[0] == f"{path}: 3 warmup records, ok"
  assert out[1].split() == ["signature", "records", "log", "types", "inputs",
                            "batch", "sizes", "first", "ms", "later", "ms"]
  assert out[2].split()[:5] == ["serving_default", "3", "predict_log=3",
                                "examples:string", "8"]
  installed = os.path.join(model_dir, "assets.extra",
                           "tf_serving_warmup_requests")
  assert out[-1] == f"installed {installed}"
  assert os.path.exists(installed)

  os.remove(installed)
  bad = _write(tmp_path / "bad", [_predict("cvr", examples=[b""])])
  result = subprocess.run(command[:3] + [f"--warmup_file={bad}",
                                         "--saved_model_dir=model/1",
                                         "--install"],
                          capture_output=True, env=env, cwd="/", check=False)
  assert result.returncode == 1
  assert (f"{bad}: record 0: signature 'cvr' is not in {model_dir} "
          "(signatures: serving_default)") in result.stderr.decode()
  assert not os.path.exists(installed)

  # A check that could not run is 2 (CI tells it from a file with
  # problems), as a usage error is.
  for args, message in (([f"--warmup_file={tmp_path}/missing"],
                         "warmup_data_check: error: "),
                        ([], "warmup_data_check: usage error: --warmup_file "
                         "is required (see --help)")):
    result = subprocess.run(command[:3] + args, capture_output=True,
                            env=env, cwd="/", check=False)
    assert result.returncode == 2, result.stderr.decode()
    assert result.stderr.decode().strip().splitlines()[-1].startswith(
        message), result.stderr.decode()


# Runs warmup_data_check's command line in a child process and prints, last on
# stdout, how much its peak RSS (KiB) grew past the imports: a process's own
# peak cannot go down, so each check gets its own.
_CLI_CHILD = """
import resource
from monolith.native_training.model_export import warmup_data_check, warmup_io
warmup_data_check.define_flags()
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
  warmup_io.run_tool("warmup_data_check", warmup_data_check.main)
finally:
  print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start, flush=True)
"""


@pytest.mark.parametrize("signature, tensor, reason", [
    pytest.param("ctr", _tensor(999, [1], int_val=[1]),
                 "its dtype 999 is not a TensorFlow DataType number" +
                 _PARSING_ERROR, id="unknown_dtype"),
    # TF Serving rejects it; the replay would have read it as [1].
    pytest.param("ctr", _tensor(_S, [-1], string_val=[b""]),
                 "dimension 0 of its shape [-1] is -1; a tensor's dimensions "
                 "must be >= 0 (-1, unknown, is only for signatures)" +
                 _PARSING_ERROR, id="negative_dim"),
    pytest.param("matrix", _tensor(_F, [100000000, 100000000], float_val=[1]),
                 "it takes 40000000000000000 bytes once parsed "
                 "(10000000000000000 float32 elements of shape [100000000, "
                 "100000000], from 1 element(s) of float_val), more than "
                 "--max_tensor_bytes=1073741824; TF Serving would allocate "
                 "that on every warmup run, the checker does not", id="1e16"),
    pytest.param("ctr", _tensor(_S, [200000000], string_val=[b""]),
                 "it takes 4800000000 bytes once parsed (200000000 string "
                 "elements of shape [200000000], from 1 element(s) of "
                 "string_val), more than --max_tensor_bytes=1073741824; TF "
                 "Serving would allocate that on every warmup run, the "
                 "checker does not", id="2e8_strings"),
])
def test_cli_rejects_unparsable_tensors_in_bounded_memory(
    tmp_path, model_dir, summer_dir, signature, tensor, reason):
  """Each fails with its line, no traceback, no install, and little memory."""
  saved_model_dir = summer_dir if signature == "matrix" else model_dir
  name = "x" if signature == "matrix" else "examples"
  path = _write(tmp_path / "warmup", [_tensor_log(signature, **{name: tensor})])
  installed = os.path.join(saved_model_dir, warmup_io.WARMUP_FILE_PATH)
  if os.path.exists(installed):
    os.remove(installed)
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run(
      [sys.executable, "-c", _CLI_CHILD, f"--warmup_file={path}",
       f"--saved_model_dir={saved_model_dir}", "--install"],
      capture_output=True, text=True, env=env, check=False, timeout=240)
  assert result.returncode == 1, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  assert f"{path}: record 0: input '{name}': {reason}" in (
      result.stderr.splitlines())
  assert not os.path.exists(installed)
  grown_kib = int(result.stdout.splitlines()[-1])
  assert grown_kib < 256 << 10  # 256 MiB


def _table_model(tmp_path, num_ids: int, dim: int) -> str:
  """A SavedModel serving one MultiHashTable of `num_ids` ids, restored from
  a checkpoint by its main op; signature serving_default: ids -> rows."""
  tf1 = tf.compat.v1
  configs = {"slot": test_utils.generate_test_hash_table_config(dim)}
  basename = str(tmp_path / "ckpt" / "tables")
  ids = np.arange(num_ids, dtype=np.int64)
  with tf.Graph().as_default(), tf1.Session() as sess:
    table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
    sess.run(table.initializer)
    values = np.ones([num_ids, dim], np.float32)
    sess.run(table.assign({"slot": (ids, values)}).as_op())
    sess.run(table.save(tf.constant(basename)).as_op())
  export_dir = str(tmp_path / "model" / "1")
  with tf.Graph().as_default() as graph:
    with export_context.enter_export_mode(
        export_context.ExportMode.STANDALONE):
      table = multi_hash_table_ops.MultiHashTable.from_configs(configs)
    with tf.control_dependencies([table.initializer]):
      main_op = table.restore(tf.constant(basename)).as_op()
    ids_in = tf1.placeholder(tf.int64, [None], name="ids")
    rows = table.lookup({"slot": ids_in})["slot"]
    builder = tf1.saved_model.Builder(export_dir)
    with tf1.Session(graph=graph) as sess:
      builder.add_meta_graph_and_variables(
          sess, [tf1.saved_model.tag_constants.SERVING],
          signature_def_map={
              "serving_default":
                  tf1.saved_model.signature_def_utils.predict_signature_def(
                      inputs={"ids": ids_in}, outputs={"rows": rows})
          },
          main_op=main_op)
    builder.save()
  return export_dir


def _resident_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_replays_give_the_models_tables_back(tmp_path):
  # Each replay loads the model, its tables restored by its main op: loaded
  # eagerly (tf.saved_model.load), every check kept a whole copy of them
  # for the life of the process (a model a check, in a chief that checks
  # its exports).
  export_dir = _table_model(tmp_path, num_ids=400_000, dim=32)
  warmup = _write(tmp_path / "warmup", [
      _predict("serving_default", ids=np.array([1, 2, 3], np.int64))
  ])

  def check():
    report = warmup_data_check.check_warmup_file(warmup, export_dir)
    assert not _problems(report)
    gc.collect()

  check()  # first loads, op registrations, allocator arenas
  before = _resident_mb()
  for _ in range(3):
    check()
  # One copy of the tables is about 60 MB (400k entries of 32 floats).
  assert _resident_mb() - before < 40


def test_replay_computes_only_what_tf_serving_fetches(tmp_path):
  # TF Serving computes a predict request's output_filter only: replaying
  # every output reported a failure the served request never meets. (A
  # TF1 graph: a tf.function's outputs are one call, computed together.)
  tf1 = tf.compat.v1
  path = str(tmp_path / "half_broken" / "1")
  with tf.Graph().as_default():
    x = tf1.placeholder(tf.float32, [None])
    bad = tf.debugging.check_numerics(tf.math.log(x - 10), "bad")
    with tf1.Session() as session:
      builder = tf1.saved_model.Builder(path)
      builder.add_meta_graph_and_variables(
          session, [tf1.saved_model.tag_constants.SERVING],
          signature_def_map={
              "serving_default":
                  tf1.saved_model.signature_def_utils.predict_signature_def(
                      inputs={"x": x}, outputs={"good": x + 1, "bad": bad})
          })
      builder.save()
  filtered = _predict("serving_default", x=np.array([1.0], np.float32))
  filtered.predict_log.request.output_filter.append("good")
  unfiltered = _predict("serving_default", x=np.array([1.0], np.float32))
  warmup = _write(tmp_path / "warmup", [filtered, unfiltered])
  problems = _problems(warmup_data_check.check_warmup_file(warmup, path))
  assert len(problems) == 1 and problems[0].startswith("record 1: "), problems
