"""Shared I/O for the warmup tools: paths, TF Serving's limit, atomic output.

TF Serving reads `<saved_model>/assets.extra/tf_serving_warmup_requests`, a
TFRecord file of `tensorflow.serving.PredictionLog`, and fails the model load
when it holds more than MAX_WARMUP_RECORDS records. The tools here never write
such a file, and never leave a partial one under the final name.
"""

import os
import uuid
from typing import Iterable, Optional

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

# TF Serving's saved_model_warmup_util refuses warmup files with more records.
MAX_WARMUP_RECORDS = 1000


class WarmupDataError(Exception):
  """Bad warmup input or output: the message names the file and the place."""


def resolve_user_path(path: Optional[str]) -> Optional[str]:
  """Makes a relative local path relative to where the user ran `bazel run`.

  `bazel run` starts binaries inside the runfiles tree; BUILD_WORKING_DIRECTORY
  is the user's directory. URIs (gs://, hdfs://) and absolute paths pass as is.
  """
  if not path or os.path.isabs(path) or "://" in path:
    return path
  return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", ""), path)


def check_record_limit(count: int, what: str) -> None:
  """Raises WarmupDataError if `count` warmup records exceed TF Serving's limit."""
  if count > MAX_WARMUP_RECORDS:
    raise WarmupDataError(
        f"{what} would make {count} warmup records, but TF Serving fails to "
        f"load a model whose warmup file has more than {MAX_WARMUP_RECORDS}")


def write_prediction_logs(
    output_path: str, logs: Iterable[prediction_log_pb2.PredictionLog]) -> int:
  """Writes `logs` as a TFRecord file at `output_path`, atomically.

  The records go to a temporary file beside the output, which is renamed onto
  `output_path` only once every record is written; on any error it is removed
  and an existing output is left untouched. Missing folders are created.

  Returns:
    The number of records written.

  Raises:
    WarmupDataError: more than MAX_WARMUP_RECORDS logs, or no logs at all.
  """
  folder = os.path.dirname(output_path)
  if folder:
    tf.io.gfile.makedirs(folder)
  tmp_path = f"{output_path}.tmp-{uuid.uuid4().hex[:12]}"
  count = 0
  try:
    with tf.io.TFRecordWriter(tmp_path) as writer:
      for log in logs:
        count += 1
        check_record_limit(count, f"writing {output_path}")
        writer.write(log.SerializeToString())
    if count == 0:
      raise WarmupDataError(f"no warmup records to write to {output_path}")
    tf.io.gfile.rename(tmp_path, output_path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp_path):
      tf.io.gfile.remove(tmp_path)
    raise
  return count
