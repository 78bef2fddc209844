"""Shared pieces of the warmup tools: requests, TF Serving's limit, output.

TF Serving reads `<saved_model>/assets.extra/tf_serving_warmup_requests`, a
TFRecord file of `tensorflow.serving.PredictionLog`, and fails the model load
when it holds more than MAX_WARMUP_RECORDS records. The tools here never write
such a file, and never leave a partial one under the final name.
"""

import contextlib
import fcntl
import glob
import os
import re
import signal
import sys
import time
import uuid
from typing import (Callable, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Union)

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from monolith.native_training import utils

# TF Serving's saved_model_warmup_util refuses warmup files with more records.
MAX_WARMUP_RECORDS = 1000
# Protobuf parses messages of at most 2 GiB - 1 bytes (an int size).
MAX_RECORD_BYTES = 2**31 - 1
# Where TF Serving looks for the warmup file, relative to the SavedModel.
WARMUP_FILE_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
DEFAULT_SIGNATURE = "serving_default"
# The first bytes of gzip data (a compressed file handed to a reader of
# uncompressed ones).
GZIP_MAGIC = b"\x1f\x8b"
# The request input that carries a batch of serialized records, per variant.
INPUT_NAMES = {
    "instance": "instances",
    "example": "examples",
    "example_batch": "example_batch",
}


class WarmupDataError(Exception):
  """Bad warmup input or output: the message names the file and the place."""


def resolve_user_path(path: Optional[str]) -> Optional[str]:
  """Makes a relative local path relative to where the user ran `bazel run`.

  `bazel run` starts binaries inside the runfiles tree; BUILD_WORKING_DIRECTORY
  is the user's directory. URIs (gs://, hdfs://) and absolute paths pass as is;
  `~` and `~user` are expanded (the shell leaves `--flag=~/x` as it is).
  """
  if not path or "://" in path:
    return path
  path = os.path.expanduser(path)
  if os.path.isabs(path):
    return path
  return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", ""), path)


def check_record_limit(count: int, what: str) -> None:
  """Raises WarmupDataError if `count` warmup records exceed TF Serving's limit."""
  if count > MAX_WARMUP_RECORDS:
    raise WarmupDataError(
        f"{what} would make {count} warmup records, but TF Serving fails to "
        f"load a model whose warmup file has more than {MAX_WARMUP_RECORDS}")


def signature_list(signature_names: Union[str, Sequence[str]]) -> List[str]:
  """Signatures to cycle requests over: a list or comma list, in order,
  without blanks or repeats, with DEFAULT_SIGNATURE appended when missing."""
  if isinstance(signature_names, str):
    signature_names = signature_names.split(",")
  names = []
  for name in (n.strip() for n in signature_names):
    if name and name not in names:
      names.append(name)
  if DEFAULT_SIGNATURE not in names:
    names.append(DEFAULT_SIGNATURE)
  return names


def string_tensor(values: Sequence[bytes]) -> tensor_pb2.TensorProto:
  """A 1-D DT_STRING TensorProto of `values`."""
  return tensor_pb2.TensorProto(
      dtype=types_pb2.DT_STRING,
      tensor_shape=tensor_shape_pb2.TensorShapeProto(
          dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]),
      string_val=values)


def predict_log(
    model_name: str, signature_name: str,
    inputs: Mapping[str, tensor_pb2.TensorProto]
) -> prediction_log_pb2.PredictionLog:
  """A PredictionLog holding one PredictRequest."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  for name, tensor in inputs.items():
    request.inputs[name].CopyFrom(tensor)
  return prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=request))


# How long a temporary of an output on a remote file system (object
# stores, where no lock tells a live writer's) must be untouched before a
# new write of that output deletes it as a killed writer's.
STALE_TEMP_SECONDS = 600
# A local temporary no writer holds locked is deleted once untouched this
# long: the time between a writer creating it and locking it.
UNLOCKED_TEMP_SECONDS = 2
# What a write of an output appends to its name for its temporary.
_TEMPORARY_SUFFIX_RE = re.compile(r"\.tmp-[0-9a-f]{12}")


def is_temporary_of(path: str, output_path: str) -> bool:
  """Whether `path` is a temporary that a write of `output_path` makes
  ("<output>.tmp-<12 hex digits>"); a user's "<output>.tmp-backup" is not.
  Local paths are compared normalized (a glob of "out.tmp-*" gives
  "./out.tmp-...")."""
  if _is_local(path) and _is_local(output_path):
    path, output_path = os.path.normpath(path), os.path.normpath(output_path)
  return (path.startswith(output_path) and
          _TEMPORARY_SUFFIX_RE.fullmatch(path[len(output_path):]) is not None)


def _is_local(path: str) -> bool:
  return "://" not in path


def is_input_file(output_path: str, input_path: Optional[str]) -> bool:
  """Whether writing `output_path` would replace the input: `input_path`
  in any spelling (a relative path, a file:// URI) or by another name of
  the same local file (a link), or, with no `input_path`, the file that
  stdin reads (`... < dump`)."""
  output = utils.comparable_path(output_path)
  if input_path and utils.comparable_path(input_path) == output:
    return True
  if not _is_local(output):
    return False
  try:
    written = os.stat(output)
    if input_path:
      read = utils.comparable_path(input_path)
      if not _is_local(read):
        return False
      read_stat = os.stat(read)
    else:
      read_stat = os.fstat(sys.stdin.fileno())
  except (OSError, ValueError):  # no such file yet; stdin closed
    return False
  return (written.st_dev, written.st_ino) == (read_stat.st_dev,
                                              read_stat.st_ino)


@contextlib.contextmanager
def _locked_temporary(tmp_path: str) -> Iterator[None]:
  """Creates the local file `tmp_path` and holds an flock on it throughout:
  the kernel drops it when the writer dies, however it dies."""
  fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)


def _writer_holds(tmp_path: str) -> bool:
  """Whether a live writer holds the local temporary `tmp_path` locked."""
  try:
    fd = os.open(tmp_path, os.O_RDONLY)
  except OSError:
    return True  # gone meanwhile, or not ours to judge
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return False
  except OSError:  # held (EWOULDBLOCK), or locks not supported
    return True
  finally:
    os.close(fd)


def _delete_stale_temporaries(output_path: str) -> None:
  """Deletes the temporaries of `output_path` that killed writers left.

  A local temporary is deleted once no writer holds its lock (a writer
  holds it until its rename, however long a slow input or a replay takes);
  a remote one once untouched for STALE_TEMP_SECONDS.
  """
  local = _is_local(output_path)
  try:
    candidates = tf.io.gfile.glob(glob.escape(output_path) + ".tmp-*")
  except tf.errors.OpError as e:  # the output is written: only log it
    logging.warning("Could not list the temporaries of %s: %s", output_path,
                    e)
    return
  for stale in candidates:
    if not is_temporary_of(stale, output_path):
      continue
    try:
      age = time.time() - tf.io.gfile.stat(stale).mtime_nsec / 1e9
      if local:
        stale_now = age >= UNLOCKED_TEMP_SECONDS and not _writer_holds(stale)
      else:
        stale_now = age >= STALE_TEMP_SECONDS
      if stale_now:
        tf.io.gfile.remove(stale)
        logging.info("Deleted %s, left by an interrupted write.", stale)
    except tf.errors.OpError as e:  # another writer's clean-up, permissions
      logging.warning("Could not delete %s: %s", stale, e)


def _remove_temporary(tmp_path: str) -> None:
  """Removes `tmp_path` if it exists, logging a failure: the error that
  ended the write is the one to raise."""
  try:
    if tf.io.gfile.exists(tmp_path):
      tf.io.gfile.remove(tmp_path)
  except tf.errors.OpError as e:
    logging.warning("Could not remove the temporary %s: %s", tmp_path, e)


def _remove_created_folders(folders: Sequence[str]) -> None:
  """Removes `folders` (innermost first) where they are empty: a file
  another writer just put there keeps its folder. Remote ones stay, with
  one warning naming those that exist: tf.io.gfile removes folders only
  recursively, and a file another writer put there between a listing and
  that removal would go with it."""
  remote = [f for f in folders if not _is_local(f)]
  for folder in (f for f in folders if _is_local(f)):
    try:
      os.rmdir(folder)  # refuses a folder that is not empty, atomically
    except FileNotFoundError:
      pass  # never created (creating the folders failed before it)
    except OSError as e:
      logging.warning("Could not remove the folder %s: %s", folder, e)
  try:
    left = [f for f in remote if tf.io.gfile.exists(f)]
  except tf.errors.OpError:
    left = remote  # cannot tell: all of them
  if left:
    logging.warning(
        "Left the folders this write created: %s; remove those that are "
        "empty (an empty model version folder is a version TF Serving "
        "cannot load)", ", ".join(left))


@contextlib.contextmanager
def atomic_output(output_path: str) -> Iterator[str]:
  """Yields a temporary path to write; renames it onto `output_path` at the end.

  The temporary file lies beside the output (same file system, so the rename
  is atomic) and is removed if the block raises, leaving an existing output
  untouched; or if the rename fails, unless it deleted the existing output
  first (TF's HDFS rename does): the temporary, then the only copy, is kept
  (see `utils.temporary_is_the_only_copy`) until a later write of the
  output succeeds. Missing folders are created, and removed again if the
  block raises (an empty model version folder would be a version TF
  Serving cannot load; remote ones stay, see _remove_created_folders).
  Temporaries of this output that killed writers left are deleted (see
  _delete_stale_temporaries) once a whole output is there, before the
  write where there is one, so they do not pile up in a model's
  assets.extra.

  Raises:
    WarmupDataError: `output_path` is empty or a folder (also one that does
      not exist yet, named with a trailing "/"), a SavedModel's own file,
      or lies in an `assets.extra` folder that does not exist beside no
      SavedModel, or in a number folder that does not exist beside
      versions of a model.
  """
  output_path = utils.fspaths(output_path)  # a pathlib.Path's, bytes'
  if (not output_path or output_path.endswith("/") or
      tf.io.gfile.isdir(output_path)):
    raise WarmupDataError(f"output path {output_path!r} is "
                          f"{'a folder' if output_path else 'empty'}; give a "
                          "file path (e.g. .../assets.extra/"
                          "tf_serving_warmup_requests)")
  _check_not_a_model_file(output_path)
  created = utils.missing_folders(os.path.dirname(output_path))
  _check_new_version_folders(created)
  _warn_if_not_read_by_tf_serving(output_path)
  tmp_path = f"{output_path}.tmp-{uuid.uuid4().hex[:12]}"
  kept = False
  try:
    if created:
      utils.makedirs_durably(created[0])  # and the missing ones above it
    # A temporary kept as the only copy (below) goes only once a whole
    # output is there: first if there is one (freeing the room killed
    # writes took), else once this write put its own in place.
    cleaned = tf.io.gfile.exists(output_path)
    if cleaned:
      _delete_stale_temporaries(output_path)
    with (_locked_temporary(tmp_path)
          if _is_local(tmp_path) else contextlib.nullcontext()):
      replacing = False
      try:
        yield tmp_path
        replacing = tf.io.gfile.exists(output_path)
        utils.replace_file(tmp_path, output_path)
      except BaseException:
        # While it is locked: unlocked, another writer of this output may
        # delete it first (see _delete_stale_temporaries).
        kept = utils.temporary_is_the_only_copy(tmp_path, output_path,
                                                replacing)
        if not kept:
          _remove_temporary(tmp_path)
        raise
  except BaseException:
    if not kept:
      _remove_temporary(tmp_path)
    _remove_created_folders(created)  # innermost first
    raise
  if not cleaned:
    _delete_stale_temporaries(output_path)


def holds_saved_model(folder: str) -> bool:
  """Whether `folder` holds a SavedModel (its saved_model.pb or .pbtxt)."""
  return any(
      tf.io.gfile.exists(os.path.join(folder, name))
      for name in ("saved_model.pb", "saved_model.pbtxt"))


# The files of a SavedModel that a warmup file must never replace.
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt", "fingerprint.pb")


def _check_not_a_model_file(output_path: str) -> None:
  """Refuses an output that would replace a model's own file: its graph
  (by name, wherever it lies) or a file of a SavedModel's variables or
  assets (`assets/` is easily taken for `assets.extra/`)."""
  folder = os.path.dirname(output_path.rstrip("/"))
  if os.path.basename(output_path) in _SAVED_MODEL_FILES or (
      os.path.basename(folder) in ("variables", "assets") and
      holds_saved_model(os.path.dirname(folder))):
    raise WarmupDataError(
        f"output path {output_path} is a SavedModel's own file: the warmup "
        f"file would replace it; give .../{WARMUP_FILE_PATH}")


def _warn_if_not_read_by_tf_serving(output_path: str) -> None:
  """Warns where `output_path` lies in a model version (or its
  assets.extra) but is not the file TF Serving reads there: it would load
  the model without warming it up, saying only "No warmup data file
  found"."""
  # By name parts: a path spelled with "//" is the same file.
  folder = os.path.dirname(output_path).rstrip("/")
  if os.path.basename(folder) == "assets.extra":
    if os.path.basename(output_path) == os.path.basename(WARMUP_FILE_PATH):
      return
    version = os.path.dirname(folder)
  elif folder and holds_saved_model(folder):
    version = folder
  else:
    return
  logging.warning(
      "%s is not where TF Serving reads a model's warmup file: it reads "
      "%s only", output_path, os.path.join(version, WARMUP_FILE_PATH))


def _check_new_version_folders(created: List[str]) -> None:
  """Refuses to create a folder that TF Serving, watching the model's
  folder, would take for a version it cannot load: `<version>/assets.extra`
  where `<version>` (a number) holds no SavedModel, and a number folder in
  a model's base folder (one holding versions), as an output path that
  left out `<version>/assets.extra` would make."""
  for folder in created:
    parent = os.path.dirname(folder)
    if (os.path.basename(folder) == "assets.extra" and
        os.path.basename(parent).isdigit() and
        not holds_saved_model(parent)):
      raise WarmupDataError(
          f"not creating {folder}: {parent} holds no SavedModel "
          "(saved_model.pb), and TF Serving would take it for a model "
          "version it cannot load; write the warmup file into the export "
          "before it gets its version folder, or elsewhere and copy it in")
    if (os.path.basename(folder).isdigit() and parent not in created and
        _holds_versions(parent)):
      raise WarmupDataError(
          f"not creating {folder}: {parent} holds model versions, and TF "
          "Serving would take it for one it cannot load; the warmup file "
          f"of a version goes to <version>/{WARMUP_FILE_PATH}")


def _holds_versions(folder: str) -> bool:
  """Whether `folder` is a model's base folder: a number folder in it holds
  a SavedModel."""
  try:
    names = utils.listdir(folder)
  except tf.errors.OpError:
    return False
  return any(
      name.rstrip("/").isdigit() and
      holds_saved_model(os.path.join(folder, name.rstrip("/")))
      for name in names)


def _too_large(output_path: str, count: int, detail: str,
               remedy: str) -> WarmupDataError:
  return WarmupDataError(
      f"writing {output_path}: warmup record {count} takes more than protobuf "
      f"parses ({MAX_RECORD_BYTES} bytes): TF Serving could not load it; "
      f"{remedy} ({detail})")


def write_prediction_logs(
    output_path: str,
    logs: Iterable[prediction_log_pb2.PredictionLog],
    too_large_remedy: str = "make the requests smaller") -> int:
  """Writes `logs` as a TFRecord file at `output_path`, atomically.

  The records go to a temporary file (atomic_output), which becomes
  `output_path` only once every record is written. `too_large_remedy`
  ends the error for a record past MAX_RECORD_BYTES (e.g. the flag to
  lower).

  Returns:
    The number of records written.

  Raises:
    WarmupDataError: more than MAX_WARMUP_RECORDS logs, a log of more than
      MAX_RECORD_BYTES, or no logs at all.
  """
  count = 0
  with atomic_output(output_path) as tmp_path:
    with tf.io.TFRecordWriter(tmp_path) as writer:
      for log in logs:
        count += 1
        check_record_limit(count, f"writing {output_path}")
        try:
          record = log.SerializeToString()
        except ValueError as e:  # protobuf refuses to encode past 2 GiB
          raise _too_large(output_path, count, str(e), too_large_remedy) from e
        if len(record) > MAX_RECORD_BYTES:
          raise _too_large(output_path, count, f"{len(record)} bytes",
                           too_large_remedy)
        writer.write(record)
    if count == 0:
      raise WarmupDataError(f"no warmup records to write to {output_path}")
  return count


# The exit status of a usage error (bad flags), as shells' own tools use.
USAGE_ERROR_STATUS = 2


class ToolError(Exception):
  """A tool's main could not do its work (bad input or output).

  run_tool writes the message to stderr and exits with `status`; a program
  that calls a tool's main() gets an exception, as the original's mains
  raised one, not a SystemExit that `except Exception` lets through.
  """

  def __init__(self, message: str, status: int = 1):
    super().__init__(message)
    self.status = status


def _die_by(sig: int) -> None:
  """Ends the process by |sig|'s default action, as a shell expects of a
  command interrupted or writing into a closed pipe (a script's loop stops
  on it), stdout pointed at /dev/null first so that nothing more fails."""
  with contextlib.suppress(OSError, ValueError):
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
  signal.signal(sig, signal.SIG_DFL)
  os.kill(os.getpid(), sig)


class _Terminated(BaseException):
  """Raised in the main thread by SIGTERM or SIGHUP, so that an output not
  complete yet is removed on the way out, as on Ctrl-C."""

  def __init__(self, sig: int):
    super().__init__(signal.Signals(sig).name)
    self.signal = sig


def _raise_terminated(sig: int, frame) -> None:
  del frame
  # A second one (the tool blocked in a TF call, or in its clean-up) ends
  # it at once.
  for other in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(other, signal.SIG_DFL)
  raise _Terminated(sig)


def check_no_arguments(argv: Optional[Sequence[str]]) -> None:
  """Refuses arguments past the program name in a tool's `main(argv)`;
  None (the original's tools took `main(_)`, and wrappers passed None) is
  none.

  Raises:
    app.UsageError: unexpected arguments.
  """
  if argv is not None and len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


def run_tool(name: str, main: Callable[[Sequence[str]], None]) -> None:
  """app.run(main) as a shell user expects of a tool.

  A usage error (a bad flag, or one main refuses) is one line on stderr
  and exit status 2, not the module's whole help text and 1; a ToolError
  from main is its message on stderr and its status. Ctrl-C prints
  one line and ends the tool by SIGINT, SIGTERM and SIGHUP (`timeout`,
  `kill`, a job stopped, unless ignored, as under nohup) likewise by
  theirs, and a closed stdout (`| head`) ends it by SIGPIPE, without a
  traceback; in every case an output not complete yet is removed, as on
  any error (a closed stderr is only logging's loss: the tool goes on).

  Args:
    name: the tool's name, which its lines start with.
    main: the tool's main(argv).
  """

  def usage_error(e: Exception) -> None:
    sys.stderr.write(f"{name}: usage error: {e} (see --help)\n")
    sys.exit(USAGE_ERROR_STATUS)

  def parse_flags(argv: Sequence[str]) -> List[str]:
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      usage_error(e)

  def checked_main(argv: Sequence[str]) -> None:
    try:
      main(argv)
    except app.UsageError as e:
      usage_error(e)
    except ToolError as e:
      sys.stdout.flush()  # what main printed before the error, first
      sys.stderr.write(f"{e}\n")
      sys.exit(e.status)
    # Here, not at exit: a closed stdout fails the flush (BrokenPipeError).
    sys.stdout.flush()

  for sig in (signal.SIGTERM, signal.SIGHUP):
    if signal.getsignal(sig) == signal.SIG_DFL:
      signal.signal(sig, _raise_terminated)
  try:
    app.run(checked_main, flags_parser=parse_flags)
  except KeyboardInterrupt:
    sys.stderr.write(f"{name}: interrupted\n")
    _die_by(signal.SIGINT)
  except _Terminated as e:
    sys.stderr.write(f"{name}: terminated by {e}\n")
    _die_by(e.signal)
  except BrokenPipeError:
    _die_by(signal.SIGPIPE)
