"""Wraps saved PredictRequest files into a TF Serving warmup file.

Every regular file of --input_folder, in sorted name order, must hold one
serialized `tensorflow.serving.PredictRequest` (for example an example_batch
request captured from traffic); each becomes one PredictionLog with
model_spec.name set to --model_name and model_spec.signature_name kept as
captured (requests of several signatures warm each one, as traffic uses
them), or `serving_default` where a request names none, or
--signature_name for every request when given. The output is a TFRecord
file, written atomically, of at most 1000 records (TF Serving's limit).

    bazel run //monolith/native_training/model_export:warmup_example_batch -- \
        --input_folder=requests/ --output_path=/tmp/tf_serving_warmup_requests
"""

import os
import stat
from typing import Iterator, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
from google.protobuf import message
from google.protobuf import unknown_fields
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from monolith.native_training import utils
from monolith.native_training.model_export import warmup_io

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command line's flags (by the binary only: warmup_data_gen
  defines --model_name and --output_path too, and both modules may be
  imported into one process)."""
  flags.DEFINE_string("input_folder", "",
                      "Folder of serialized PredictRequest files.")
  flags.DEFINE_string("output_path", "",
                      "Output TFRecord file of PredictionLog.")
  flags.DEFINE_string("model_name", "default", "model_spec.name of requests.")
  flags.DEFINE_string(
      "signature_name", None,
      "model_spec.signature_name of every request; by default each keeps "
      "its own (serving_default where it names none).")


def _request_files(input_folder: str, output_path: Optional[str]) -> list:
  if not tf.io.gfile.isdir(input_folder):
    raise warmup_io.WarmupDataError(f"{input_folder} is not a folder")
  # The output (an earlier run's) and its temporaries, should the output be
  # written into the input folder.
  output = utils.comparable_path(output_path) if output_path else None
  paths = []
  for name in sorted(utils.listdir(input_folder)):
    path = os.path.join(input_folder, name.rstrip("/"))
    comparable = utils.comparable_path(path)
    if output and (comparable == output or
                   warmup_io.is_temporary_of(comparable, output)):
      logging.info("skipping %s: the output file", path)
      continue
    if tf.io.gfile.isdir(path):
      logging.warning("skipping sub-folder %s", path)
      continue
    # A FIFO or a device (a link to /dev/zero) would block the read or
    # never end it; a remote store holds files only.
    if "://" not in path and not _is_regular_file(path):
      logging.warning("skipping %s: not a regular file", path)
      continue
    paths.append(path)
  if not paths:
    raise warmup_io.WarmupDataError(f"{input_folder} holds no files")
  warmup_io.check_record_limit(len(paths), f"{input_folder} ({len(paths)} files)")
  return paths


def _is_regular_file(path: str) -> bool:
  """Whether local `path` is (or links to) a regular file."""
  try:
    return stat.S_ISREG(os.stat(path).st_mode)
  except OSError:  # a dangling link or a loop, removed since listed, ...
    return False


def parse_request(path: str) -> predict_pb2.PredictRequest:
  """Reads one serialized PredictRequest; WarmupDataError naming the file."""
  size = tf.io.gfile.stat(path).length
  if size > warmup_io.MAX_RECORD_BYTES:
    raise warmup_io.WarmupDataError(
        f"{path} holds {size} bytes, more than a PredictRequest can "
        f"({warmup_io.MAX_RECORD_BYTES}): not a request")
  # At most one byte past the limit: the file may have grown since.
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read(warmup_io.MAX_RECORD_BYTES + 1)
  if len(data) > warmup_io.MAX_RECORD_BYTES:
    raise warmup_io.WarmupDataError(
        f"{path} grew past {warmup_io.MAX_RECORD_BYTES} bytes while read, "
        "more than a PredictRequest can hold: not a request")
  request = predict_pb2.PredictRequest()
  try:
    request.ParseFromString(data)
  except message.DecodeError as e:
    raise warmup_io.WarmupDataError(
        f"{path} is not a serialized PredictRequest: {e}") from None
  # Bytes of another kind often decode as unknown fields, and a request with
  # no inputs cannot warm anything up.
  if len(unknown_fields.UnknownFieldSet(request)) or not request.inputs:
    raise warmup_io.WarmupDataError(
        f"{path} is not a serialized PredictRequest with inputs "
        f"({len(data)} bytes)")
  return request


def gen_prediction_log(
    input_folder: str,
    model_name: str = "default",
    signature_name: Optional[str] = None,
    output_path: Optional[str] = None,
) -> Iterator[prediction_log_pb2.PredictionLog]:
  """A PredictionLog per request file of `input_folder`, sorted by name.

  The folder is listed now, the files are read as the logs are taken.

  Args:
    input_folder: the folder of serialized PredictRequest files.
    model_name: model_spec.name of the requests.
    signature_name: model_spec.signature_name of every request; None keeps
      each request's own (serving_default where it names none). The
      original set serving_default on every request, which warmed that
      signature instead of the one the request was captured for, or failed
      the model load where its inputs differ.
    output_path: the warmup file being written; when it is in the folder,
      it and its temporaries are skipped.

  Returns:
    An iterator over the logs.

  Raises:
    WarmupDataError: the folder is missing or holds no files, or more than
      TF Serving's limit of records (now); a file that is not a
      PredictRequest (while iterating, naming it).
  """
  return _prediction_logs(_request_files(input_folder, output_path),
                          model_name, signature_name)


def _prediction_logs(
    paths: Sequence[str], model_name: str, signature_name: Optional[str]
) -> Iterator[prediction_log_pb2.PredictionLog]:
  for path in paths:
    request = parse_request(path)
    request.model_spec.name = model_name
    if signature_name is not None:
      request.model_spec.signature_name = signature_name
    elif not request.model_spec.signature_name:
      request.model_spec.signature_name = warmup_io.DEFAULT_SIGNATURE
    yield prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))


def main(argv: Optional[Sequence[str]]) -> None:
  warmup_io.check_no_arguments(argv)
  if not FLAGS.input_folder or not FLAGS.output_path:
    raise app.UsageError("--input_folder and --output_path are required")
  output_path = warmup_io.resolve_user_path(FLAGS.output_path)
  try:
    count = warmup_io.write_prediction_logs(
        output_path,
        gen_prediction_log(
            warmup_io.resolve_user_path(FLAGS.input_folder), FLAGS.model_name,
            FLAGS.signature_name, output_path),
        too_large_remedy="split that input file into smaller ones")
  except (warmup_io.WarmupDataError, OSError, tf.errors.OpError) as e:
    raise warmup_io.ToolError(f"warmup_example_batch: error: {e}") from e
  print(f"wrote {output_path}: {count} warmup records")


if __name__ == "__main__":
  define_flags()
  warmup_io.run_tool("warmup_example_batch", main)
