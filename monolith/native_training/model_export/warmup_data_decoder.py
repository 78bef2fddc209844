"""Prints the requests of a TF Serving warmup file, record by record.

The original's `warmup_data_decoder`: `--file_name=F` (a TFRecord of
PredictionLogs, e.g. `<saved_model>/assets.extra/tf_serving_warmup_requests`)
prints each record's request in protobuf text format on stdout, headed by
its index and log type, with the values of string tensors (serialized
Examples, often kilobytes each) shown as "string_val: ..." unless
`--show_string_vals`. What cannot be shown (a damaged TFRecord, a record that
is not a PredictionLog, a log type TF Serving does not run) is one line on
stderr naming the file, the record and, for framing, the byte offset; the
tool then exits 1 (2 when it could not read the file at all).
`warmup_data_check` checks such a file in depth.

    bazel run //monolith/native_training/model_export:warmup_data_decoder -- \\
        --file_name=/models/ranker/1/assets.extra/tf_serving_warmup_requests
"""

import re
from typing import Iterator, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
from google.protobuf import text_format
import tensorflow as tf

from monolith.native_training.model_export import warmup_data_check
from monolith.native_training.model_export import warmup_io

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command line's flags (by the binary only: warmup_data_gen
  defines --file_name too, and both modules may be imported into one
  process)."""
  flags.DEFINE_string("file_name", None, "The warmup file (TFRecord of "
                      "PredictionLogs) to print.")
  flags.DEFINE_bool("show_string_vals", False,
                    "Print string tensors' values too (else \"...\").")

# A string value's line of the text format, as the original elides it.
_STRING_VAL_LINE_RE = re.compile(r"string_val:.*")


def decode_warmup_file(
    path: str, show_string_vals: bool = False
) -> Tuple[List[str], List[warmup_data_check.Problem]]:
  """Each readable record of `path` as text, and the file's problems.

  Returns:
    "record <i> (<log type>):" and its request's text format, per record
    that parses as a PredictionLog of a type TF Serving runs (all of them,
    also past the 1000 TF Serving runs); and the problems
    `warmup_data_check.read_warmup_file` finds.

  Raises:
    WarmupDataError: `path` does not exist.
  """
  problems = []
  blocks = list(decoded_records(path, problems, show_string_vals))
  return blocks, problems


def decoded_records(path: str,
                    problems: List[warmup_data_check.Problem],
                    show_string_vals: bool = False) -> Iterator[str]:
  """`decode_warmup_file`'s blocks one at a time, as the records are read
  (one record in memory), the problems appended to `problems`.

  Raises:
    WarmupDataError: `path` does not exist (when iteration begins).
  """
  logs = warmup_data_check.iter_warmup_file(path, problems,
                                            stop_past_limit=False)
  for index, log in enumerate(logs):
    if log is None:
      continue
    log_type = log.WhichOneof("log_type")
    text = text_format.MessageToString(getattr(log, log_type).request)
    if not show_string_vals:
      text = _STRING_VAL_LINE_RE.sub("string_val: ...", text)
    yield f"record {index} ({log_type}):\n{text}"


def main(argv: Optional[Sequence[str]]) -> None:
  warmup_io.check_no_arguments(argv)
  if not FLAGS.file_name:
    raise app.UsageError("--file_name is required")
  path = warmup_io.resolve_user_path(FLAGS.file_name)
  problems = []
  try:
    # Printed as read: a large file is never held whole.
    for block in decoded_records(path, problems, FLAGS.show_string_vals):
      print(block, flush=True)
  except BrokenPipeError:
    raise  # a closed stdout (| head): run_tool ends by SIGPIPE
  except (warmup_io.WarmupDataError, OSError, tf.errors.OpError) as e:
    raise warmup_io.ToolError(f"warmup_data_decoder: error: {e}",
                              status=2) from e
  if problems:
    raise warmup_io.ToolError("\n".join(
        f"{path}: {problem}" for problem in problems))


if __name__ == "__main__":
  define_flags()
  logging.set_verbosity(logging.WARNING)
  warmup_io.run_tool("warmup_data_decoder", main)
