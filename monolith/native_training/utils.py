"""Helpers of the training code: device names and graph collections.

`ps_device(i)` names the device of parameter-server task i (`PS_JOB_NAME`
job) in TensorFlow's distributed runtime and `ps_task_of_device` reads the
task back from a device name; `free_ports(n)` picks loopback
ports for the tasks of a cluster on one host; `fsync_local(path)` makes a
local file's data, or a local folder's renames, durable, and
`replace_file(tmp_path, path)` renames a written temporary onto its final
name so that a power loss leaves the old file or the whole new one, and
`write_file_atomically(path, text)` writes a small file that way through a
temporary of its own; `makedirs_durably(path)` creates folders whose names
a power loss keeps (`missing_folders(path)` lists those it would create);
`is_integer` and `check_count` check integer arguments such as a number of
PS tasks; `launcher_env` and `die_with_launcher` end the tasks a launcher
starts when it dies.

Training registers values (sparse feature names, the feature list, ...) in
the default graph's collections; tools such as
`model_export.data_gen_utils.ParserArgs` read them back as defaults.
"""

import contextlib
import ctypes
import errno
import numbers
import os
import signal
import socket
import sys
import uuid
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from absl import logging
import tensorflow as tf

# The job of the parameter-server tasks in a ClusterSpec.
PS_JOB_NAME = "ps"


def is_integer(value: Any) -> bool:
  """Whether `value` is an integer: Python's or numpy's, not a bool."""
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(value: Any, name: str, minimum: int = 0) -> int:
  """`value` as an int, when it is an integer (`is_integer`) of at least
  `minimum`; ValueError naming `name` otherwise."""
  if not is_integer(value) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


# Set by a launcher to its pid in the environment of the tasks it starts.
LAUNCHER_PID_ENV = "MONOLITH_LAUNCHER_PID"


def python_child_env(**variables: str) -> Dict[str, str]:
  """This process's environment with `variables` set, for a Python child
  process that imports what this one does: PYTHONPATH is this process's
  `sys.path` (under Bazel, the runfiles' roots; empty entries, the current
  folder, left out since the child may run elsewhere)."""
  return dict(os.environ,
              PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
              **variables)


def launcher_env(env: dict) -> dict:
  """`env` with LAUNCHER_PID_ENV set to this process: the environment of a
  task that calls `die_with_launcher`. Start such tasks from a thread that
  lives as long as the launcher (the main one): Linux sends the signal when
  the thread that started the task ends."""
  return dict(env, **{LAUNCHER_PID_ENV: str(os.getpid())})


def die_with_launcher() -> None:
  """In a task started with `launcher_env`: asks Linux for SIGKILL when the
  launcher dies, and exits at once where it already has.

  Called by the task itself, first thing, not in the launcher's
  `preexec_fn`: that runs Python between fork and exec in a launcher whose
  other threads (its output pumps) may hold locks then.
  """
  # Not passed on: a process this task starts is not the launcher's.
  launcher = os.environ.pop(LAUNCHER_PID_ENV, None)
  if not launcher:
    return
  pr_set_pdeathsig = 1
  with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
  if str(os.getppid()) != launcher:
    # The launcher died before the signal was asked for.
    print(f"launcher {launcher} is gone (this task's parent is now "
          f"{os.getppid()}): exiting", file=sys.stderr, flush=True)
    os._exit(1)


def ps_device(index: int) -> str:
  """The CPU device of parameter-server task `index`.

  Args:
    index: the task index in the `PS_JOB_NAME` job.

  Returns:
    "/job:ps/task:<index>/device:CPU:0".
  """
  return f"/job:{PS_JOB_NAME}/task:{index}/device:CPU:0"


def ps_task_of_device(device: str) -> Optional[int]:
  """The PS task index of a device name, or None off the PS job.

  Args:
    device: a device name or spec, full ("/job:ps/replica:0/task:1/device:
      CPU:0") or partial ("/job:ps/task:1", as `replica_device_setter`
      places variables); a PS device without a task is task 0.

  Returns:
    The task index when the device's job is `PS_JOB_NAME`, else None.
  """
  spec = tf.DeviceSpec.from_string(device or "")
  if spec.job != PS_JOB_NAME:
    return None
  return spec.task or 0


def free_ports(n: int) -> List[int]:
  """Ports of 127.0.0.1 that are free now, for the tasks of a local cluster.

  All n sockets are held open together while picked, so the ports differ.

  Args:
    n: how many ports.

  Returns:
    n distinct port numbers.
  """
  with contextlib.ExitStack() as stack:
    ports = []
    for _ in range(n):
      s = stack.enter_context(socket.socket(socket.AF_INET,
                                            socket.SOCK_STREAM))
      s.bind(("127.0.0.1", 0))
      ports.append(s.getsockname()[1])
    return ports


def fsync_local(path: str) -> None:
  """fsync of `path`, a file or a folder, where it is local.

  Writers call it on a temporary before renaming it onto its final name, and
  on the folder after the rename, so a power loss leaves the old file or the
  whole new one. Paths of other file systems (gs://, hdfs://) are left to
  them: their writes are durable once the file is closed.

  Args:
    path: a local path (plain or file://) or another file system's URI.

  Raises:
    OSError: the local path cannot be opened or synced (FileNotFoundError
      where it does not exist).
  """
  scheme, sep, rest = path.partition("://")
  if sep and scheme != "file":
    return
  fd = os.open((rest if sep else path) or ".", os.O_RDONLY)
  try:
    os.fsync(fd)
  except OSError as e:
    # File systems without fsync (for folders especially) have nothing
    # more to make durable.
    if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP,
                       errno.EROFS):
      raise
  finally:
    os.close(fd)


def replace_file(tmp_path: str, path: str) -> None:
  """Renames the written `tmp_path` onto `path`, durably where local.

  The temporary is synced before the rename and the folder after it, so a
  power loss leaves the old `path` or the whole new one (see
  `fsync_local`).

  Args:
    tmp_path: the complete temporary, beside `path` (same file system).
    path: the final name; an existing file there is replaced.

  Raises:
    OSError: as `fsync_local`.
    tf.errors.OpError: the rename failed.
  """
  fsync_local(tmp_path)
  tf.io.gfile.rename(tmp_path, path, overwrite=True)
  fsync_local(os.path.dirname(path))


def makedirs_durably(path: str) -> None:
  """Creates folder `path` and its missing parents, durably where local.

  Each new local folder's name is synced in its parent (outermost first),
  so files renamed into it later do not vanish with it in a power loss.

  Args:
    path: a local path (plain or file://) or another file system's URI.

  Raises:
    OSError: as `fsync_local`.
    tf.errors.OpError: a folder cannot be created.
  """
  scheme, sep, rest = path.partition("://")
  if sep and scheme != "file":
    tf.io.gfile.makedirs(path)  # durable once created there
    return
  local = rest if sep else path
  missing = missing_folders(local.rstrip("/"))
  tf.io.gfile.makedirs(local)
  for folder in reversed(missing):
    fsync_local(os.path.dirname(folder))


def listdir(path: str) -> List[str]:
  """`tf.io.gfile.listdir(path)`, "" read as the working directory.

  Raises:
    tf.errors.InvalidArgumentError: the folder holds a name that is not
      UTF-8, which TF cannot list (its UnicodeDecodeError named neither).
    tf.errors.OpError: as `tf.io.gfile.listdir`.
  """
  try:
    return tf.io.gfile.listdir(path or ".")
  except UnicodeDecodeError as e:
    raise tf.errors.InvalidArgumentError(
        None, None, f"{path or '.'} holds a file name that is not UTF-8 "
        f"({e.object[max(0, e.start - 20):e.end + 20]!r}), which TF cannot "
        "list: rename or move it") from e


def remove_if_there(path: str) -> None:
  """Removes the file `path`; one already gone is no error."""
  try:
    tf.io.gfile.remove(path)
  except tf.errors.NotFoundError:
    pass


def is_folder(path: str) -> bool:
  """Whether `path` is a folder: False where nothing is there, errors
  reading it raised (`tf.io.gfile.isdir` reads any error, a storage one
  too, as False)."""
  try:
    return tf.io.gfile.stat(path).is_directory
  except tf.errors.NotFoundError:
    return False


def missing_folders(folder: str) -> List[str]:
  """`folder` and its ancestors that are no folders yet, innermost first."""
  missing = []
  while folder and not tf.io.gfile.isdir(folder):
    missing.append(folder)
    parent = os.path.dirname(folder)
    if parent == folder:
      break
    folder = parent
  return missing


def write_file_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary of its own and a rename.

  The temporary, "<path>.tmp-<random hex>", is unique to the call, so two
  writers of one path never write into each other's temporary; one that
  fails is removed (a killed writer's stays behind, under that name),
  except where a failed rename deleted `path` (TF's HDFS rename deletes
  the target first): it is then the only copy of either version, kept,
  and an error log names it.

  Raises:
    OSError, tf.errors.OpError: as `replace_file`, or the write failed.
  """
  tmp_path = f"{path}.tmp-{uuid.uuid4().hex}"
  replacing = False
  try:
    with tf.io.gfile.GFile(tmp_path, "w") as f:
      f.write(text)
    replacing = tf.io.gfile.exists(path)
    replace_file(tmp_path, path)
  except BaseException:
    if not temporary_is_the_only_copy(tmp_path, path, replacing):
      with contextlib.suppress(tf.errors.OpError):
        tf.io.gfile.remove(tmp_path)
    raise


def temporary_is_the_only_copy(tmp_path: str, path: str,
                               replacing: bool) -> bool:
  """After `replace_file(tmp_path, path)` failed: whether the temporary is
  the only copy of either version of `path`, to be kept.

  So where the rename deleted `path` first (TF's HDFS rename does) and
  `path` existed before (`replacing`); an error log then names the
  temporary. Where the file system cannot tell, it may be: True.
  """
  if not replacing:
    return False
  try:
    lost = not tf.io.gfile.exists(path) and tf.io.gfile.exists(tmp_path)
  except tf.errors.OpError:
    lost = True
  if lost:
    logging.error("Replacing %s failed after the file system deleted it; "
                  "its new contents are kept in %s.", path, tmp_path)
  return lost


def checked_handles(handles: Any, what: str,
                    allow_none: bool = False) -> List[Optional[tf.Tensor]]:
  """`handles` as a list of resource handles (hash filters, sync clients;
  with `allow_none`, None items too), refusing one handle alone or
  anything else, naming `what`: a handle given where a list belongs failed
  deep in TF ("Iterating over a symbolic tf.Tensor ...")."""
  if tf.is_tensor(handles):
    raise TypeError(f"{what} must be a list of handles, one per PS task, "
                    f"got one handle, {handles.name}: pass [handle]")
  if not isinstance(handles, (list, tuple)):
    raise TypeError(f"{what} must be a list of handles, one per PS task, "
                    f"got the {type(handles).__name__} {handles!r}")
  for i, handle in enumerate(handles):
    if handle is None and allow_none:
      continue
    if not isinstance(handle, tf.Tensor) or handle.dtype != tf.resource:
      raise TypeError(f"{what}[{i}] is {handle!r}, not a resource handle")
  return list(handles)


def fspaths(paths: Any) -> Any:
  """`paths` with `os.PathLike` values (a `pathlib.Path`) and bytes as
  strings, alone or in a list or tuple; anything else (a str, a tensor) as
  it is: TF's ops do not take Paths, and code that tells a path from a
  tensor by its type took bytes for a tensor.

  Raises:
    ValueError: a bytes path that is not UTF-8.
  """
  if isinstance(paths, os.PathLike):
    paths = os.fspath(paths)
  if isinstance(paths, bytes):
    # Strictly: fsdecode's surrogate escapes are strings TF refuses.
    try:
      return paths.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(f"the path {paths!r} is not UTF-8, which TF's file "
                       "systems take") from e
  if isinstance(paths, (list, tuple)):
    return type(paths)(fspaths(p) for p in paths)
  return paths


def is_whole_shard_set(shards: Iterable[Tuple[int, int]]) -> bool:
  """Whether (shard, count) pairs, as "-SSSSS-of-NNNNN" names give them,
  are one whole set of files: one count, and each shard below it."""
  shards = set(shards)
  counts = {count for _, count in shards}
  return len(counts) == 1 and {shard for shard, _ in shards} == set(
      range(counts.pop()))


def comparable_path(path: str) -> str:
  """`path` normalized, so that two spellings of one file compare equal:
  a URI's (gs://, hdfs://) path collapsed ("a//b", "a/./b", a trailing
  "/"; its scheme kept, and ".." too: an object store's key may hold one),
  a local path absolute with its links resolved (one may be relative; a
  file:// URI is the local path it names)."""
  path = fspaths(path)
  if path.startswith("file://"):
    path = path[len("file://"):]
  if "://" in path:
    scheme, rest = path.split("://", 1)
    authority, _, key = rest.partition("/")  # "hdfs:///x": no authority
    parts = [part for part in key.split("/") if part not in ("", ".")]
    return f"{scheme}://{authority}" + "".join("/" + p for p in parts)
  return os.path.realpath(path)


def check_graph_mode(what: str) -> None:
  """Refuses to build `what` eagerly or inside a tf.function's trace.

  The tables, their filters and checkpoint listeners are graph-mode
  resources for tf.compat.v1 sessions, as the original's. Inside a
  tf.function they would be left out of the enclosing graph's collections
  (so out of its checkpoints and initializers), created again at every
  retrace, and exported empty by tf.saved_model.save.

  Raises:
    RuntimeError: eager execution, or the default graph is a function's,
      or a tf.compat.v1 control-flow branch is being built.
  """
  graph = tf.compat.v1.get_default_graph()
  if tf.executing_eagerly():
    where = "eagerly"
  elif graph.building_function:
    where = ("inside a function graph (a tf.function, or a tf.cond or "
             "tf.while_loop branch)")
  # Version 1 control flow (tf.compat.v1.disable_control_flow_v2(), or
  # disable_v2_behavior()) builds branches in the graph itself, in a
  # context TF keeps only privately: such tables failed at session
  # creation with another op's error.
  elif graph._get_control_flow_context() is not None:  # pylint: disable=protected-access
    where = ("inside a control-flow context of the graph (a tf.cond or "
             "tf.while_loop branch of control flow v1, an XLA or TPU "
             "computation)")
  else:
    return
  raise RuntimeError(
      f"{what} builds graph-mode ops for tf.compat.v1 sessions, as the "
      f"original's, and was called {where}: build it in a graph (with "
      "tf.Graph().as_default(): ..., or after "
      "tf.compat.v1.disable_eager_execution()), outside any function graph "
      "or control-flow branch")


def add_to_collections(names: Union[str, List[str]], value: Any) -> None:
  """Adds `value` to the collections `names`; empty values are skipped."""
  if isinstance(value, (bool, int, float, str)) or value:
    tf.compat.v1.add_to_collections(names, value)
  else:
    logging.info("value is %r, skip", value)


def get_collection(name: str) -> Optional[List[Any]]:
  """The collection `name` of the default graph, or None when it is empty."""
  return tf.compat.v1.get_collection(name) or None
