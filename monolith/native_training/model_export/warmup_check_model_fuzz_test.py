"""Fuzz test of warmup_data_check against mutated SavedModels.

The check reads a model's saved_model.pb (or .pbtxt), compares each warmup
request with the signatures, and replays the requests in a session. With
a fixed seed and bounded rounds, the model's files are mutated (bytes of
the whole file, bytes of one signature inside a valid file, structured
edits of a signature, bytes of a text file) and the check must give its
report or raise WarmupDataError naming the model, nothing else.
"""

import os
import random
import shutil

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from monolith.native_training import test_utils
from monolith.native_training.model_export import warmup_data_check
from monolith.native_training.model_export import warmup_io

SEED = 20261207
ROUNDS = 240
REPLAY_ROUNDS = 24


def _save_model(path: str) -> None:
  """A TF1-style model on tf.Examples with a variable (so a saver_def and
  a variables collection), signatures predict, classify and regress."""
  with tf.Graph().as_default():
    examples = tf.compat.v1.placeholder(tf.string, [None], name="examples")
    x = tf.io.parse_example(examples,
                            {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
    scale = tf.compat.v1.get_variable("scale", initializer=[2.0])
    score = x * scale
    classes = tf.tile(tf.constant([["no", "yes"]]), [tf.shape(examples)[0], 1])
    signatures = {
        "predict": tf.compat.v1.saved_model.predict_signature_def(
            {"examples": examples}, {"score": score, "x": x}),
        "classify": tf.compat.v1.saved_model.classification_signature_def(
            examples, classes, tf.concat([1 - x, x], 1)),
        "regress": tf.compat.v1.saved_model.regression_signature_def(
            examples, score),
    }
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      builder = tf.compat.v1.saved_model.Builder(path)
      builder.add_meta_graph_and_variables(session, ["serve"],
                                           signature_def_map=signatures)
      builder.save()


def _warmup_logs():
  example = tf.train.Example(features=tf.train.Features(
      feature={"x": tf.train.Feature(float_list=tf.train.FloatList(
          value=[0.5]))})).SerializeToString()
  logs = []
  log = prediction_log_pb2.PredictionLog()
  request = log.predict_log.request
  request.model_spec.signature_name = "predict"
  request.inputs["examples"].CopyFrom(
      tf.make_tensor_proto([example, example], tf.string))
  request.output_filter.append("score")
  logs.append(log)
  for kind in ("classify", "regress"):
    log = prediction_log_pb2.PredictionLog()
    request = getattr(log, f"{kind}_log").request
    request.model_spec.signature_name = kind
    request.input.example_list.examples.add().ParseFromString(example)
    logs.append(log)
  return logs


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte = n & 0x7F
    n >>= 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field(number: int, data: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(data)) + data


def _with_signature_bytes(saved_model, name: str, data: bytes) -> bytes:
  """The SavedModel's bytes, signature `name` of its meta graph replaced by
  `data` (any bytes), the framing around it valid."""
  model = saved_model_pb2.SavedModel()
  model.CopyFrom(saved_model)
  meta_graph = model.meta_graphs[0]
  del meta_graph.signature_def[name]
  entry = _field(1, name.encode()) + _field(2, data)
  meta_graph_bytes = meta_graph.SerializeToString() + _field(5, entry)
  del model.meta_graphs[:]
  return model.SerializeToString() + _field(2, meta_graph_bytes)


_DTYPES = (0, types_pb2.DT_FLOAT, types_pb2.DT_STRING, 101, 2**31 - 1)
_DIMS = (-5, -2, -1, 0, 1, 2**31, 2**63 - 1)


def _edited(saved_model, rng: random.Random) -> bytes:
  """Structured edits of one signature: dtypes, dims, names, methods."""
  model = saved_model_pb2.SavedModel()
  model.CopyFrom(saved_model)
  signatures = model.meta_graphs[0].signature_def
  signature = signatures[rng.choice(sorted(signatures))]
  for _ in range(rng.randint(1, 3)):
    infos = signature.inputs if rng.random() < 0.5 else signature.outputs
    if not infos:
      continue
    key = rng.choice(sorted(infos))
    info = infos[key]
    edit = rng.randrange(7)
    if edit == 0:
      info.dtype = rng.choice(_DTYPES)
    elif edit == 1:
      info.tensor_shape.dim.add().size = rng.choice(_DIMS)
    elif edit == 2:
      info.tensor_shape.unknown_rank = True
    elif edit == 3:
      infos[key + "_renamed"].CopyFrom(info)
      del infos[key]
    elif edit == 4:
      del infos[key]
    elif edit == 5:
      info.name = rng.choice(["", "nothing:0", "examples:7", "scale:0",
                              "save/Const:0"])
    else:
      signature.method_name = rng.choice(
          ["", "tensorflow/serving/predict", "tensorflow/serving/classify",
           "x" * 300])
  return model.SerializeToString()


def _check(warmup: str, model_dir: str, round_: int, replay: bool):
  """Runs the check; returns "refused", "reported" or "ok"."""
  try:
    report = warmup_data_check.check_warmup_file(
        warmup, model_dir, replay_requests=replay,
        max_tensor_bytes=1 << 16, method_name_check=bool(round_ % 2))
  except warmup_io.WarmupDataError as e:
    assert str(e).startswith(f"{model_dir}:"), (round_, e)
    return "refused"
  assert isinstance(report, warmup_data_check.CheckReport), round_
  for problem in report.problems:
    assert problem.reason, round_
    assert problem.record is None or 0 <= problem.record < report.records
  warmup_data_check.format_report(report)
  return "reported" if report.problems else "ok"


def test_the_check_gives_its_report_or_error_on_mutated_models(tmp_path):
  base = str(tmp_path / "model")
  _save_model(base)
  warmup = str(tmp_path / "warmup")
  warmup_io.write_prediction_logs(warmup, _warmup_logs())
  report = warmup_data_check.check_warmup_file(warmup, base)
  assert report.ok and report.replayed, warmup_data_check.format_report(report)
  with open(os.path.join(base, "saved_model.pb"), "rb") as f:
    valid = f.read()
  saved_model = saved_model_pb2.SavedModel.FromString(valid)
  names = sorted(saved_model.meta_graphs[0].signature_def)
  rng = random.Random(SEED)
  outcomes = {"refused": 0, "reported": 0, "ok": 0}
  for round_ in range(ROUNDS):
    mode = round_ % 4
    model_dir = str(tmp_path / f"round_{round_ % 8}")
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    if mode == 0:
      data = test_utils.mutate_bytes(rng, valid)
    elif mode == 1:
      name = rng.choice(names)
      signature = saved_model.meta_graphs[0].signature_def[name]
      data = _with_signature_bytes(
          saved_model, name,
          test_utils.mutate_bytes(rng, signature.SerializeToString()))
    elif mode == 2:
      data = _edited(saved_model, rng)
    else:
      text = text_format.MessageToString(saved_model).encode()
      with open(os.path.join(model_dir, "saved_model.pbtxt"), "wb") as f:
        f.write(test_utils.mutate_bytes(rng, text))
      data = None
    if data is not None:
      with open(os.path.join(model_dir, "saved_model.pb"), "wb") as f:
        f.write(data)
    outcomes[_check(warmup, model_dir, round_, replay=False)] += 1
  # Whether a mutation parses depends on the protobuf runtime: only that
  # both outcomes came.
  assert outcomes["refused"] and outcomes["reported"], outcomes


def test_replay_gives_its_report_or_error_on_mutated_models(tmp_path):
  # Replay loads the model: a saver_def or collection that does not fit
  # the graph raised TypeError or DecodeError out of the check.
  base = str(tmp_path / "model")
  _save_model(base)
  warmup = str(tmp_path / "warmup")
  warmup_io.write_prediction_logs(warmup, _warmup_logs())
  with open(os.path.join(base, "saved_model.pb"), "rb") as f:
    saved_model = saved_model_pb2.SavedModel.FromString(f.read())
  rng = random.Random(SEED + 1)
  outcomes = {"refused": 0, "reported": 0, "ok": 0}
  for round_ in range(REPLAY_ROUNDS):
    model = saved_model_pb2.SavedModel()
    model.CopyFrom(saved_model)
    meta_graph = model.meta_graphs[0]
    mode = round_ % 3
    if mode == 0:
      saver_def = meta_graph.saver_def
      field = rng.choice(["filename_tensor_name", "save_tensor_name",
                          "restore_op_name"])
      setattr(saver_def, field,
              rng.choice(["", "nothing:0", "scale:0", "examples:0", "x"]))
      data = model.SerializeToString()
    elif mode == 1:
      collection = meta_graph.collection_def["variables"].bytes_list
      collection.value[0] = test_utils.mutate_bytes(rng, collection.value[0])
      data = model.SerializeToString()
    else:
      data = _edited(saved_model, rng)
    model_dir = str(tmp_path / f"replay_{round_}")
    shutil.copytree(base, model_dir)
    with open(os.path.join(model_dir, "saved_model.pb"), "wb") as f:
      f.write(data)
    outcomes[_check(warmup, model_dir, round_, replay=True)] += 1
    shutil.rmtree(model_dir)
  assert outcomes["refused"] and outcomes["reported"], outcomes
