"""Checkpoint helpers: paths for listeners, partial recovery of PS tasks.

A checkpoint saved by `tf.compat.v1.train.Saver` under the basename
`<model_dir>/model.ckpt` at global step N has the prefix
`<model_dir>/model.ckpt-N`. Data that is not part of the TF checkpoint (hash
table dumps) goes to the prefix's asset directory `<prefix>.assets/`, and
per-step metadata to `<model_dir>/ckpt.info-N`, so that it is kept and
deleted together with the checkpoint it belongs to.

The Saver deletes only its own files (`.index`, `.data-*`, `.meta`) when
`max_to_keep` drops a checkpoint; `SaveHelper.delete_stale_checkpoint_files`,
called after every save, deletes what is left of the dropped ones (and,
called before every save without the temporaries below, the asset folders
and ckpt.info files of failed saves, whose steps have no checkpoint):

* `<basename>-N.assets/` is stale when this basename has no TF checkpoint at
  step N any more: neither `<basename>-N.index` (V2) nor the V1 data file
  `<basename>-N` (or its `-?????-of-?????` shards) exists. The files decide,
  not the "checkpoint" state file: with `keep_checkpoint_every_n_hours` the
  Saver drops checkpoints from the state file's list but keeps their files,
  and their assets stay with them.
* `ckpt.info-N` is named by step only, so any basename sharing the directory
  may own it. It is stale only when no checkpoint of any kind is left at
  step N in the directory: nothing of this basename's TF checkpoint (as
  above), and no file or directory `<other basename>-N`,
  `<other basename>-N.index`, `.meta`, `.data-*`, `.assets` or `_temp*` (an
  in-progress save) of any other basename. `ckpt.info-N.tmp-<hex>` (or
  `ckpt.info-N.tmp`, as earlier versions named it), left by a write killed
  before its rename, goes with `ckpt.info-N`.
* `<basename>-N_temp` or `<basename>-N_temp_<32 hex>`, what a sharded
  Saver writes before merging it into the checkpoint (and deletes then),
  is stale once the step just saved is N or later: it was left by a save
  killed before its merge, and one chief saves at a time.
* In the asset directory of the step just saved, temporaries
  (`*-tmp-<16 hex>`, `*-tmp-<16 hex>.partial`, `*.tmp-<32 hex>`) are stale:
  every save of that step has finished, and they are what its killed saves
  left (at table or filter basenames this save did not write again).
* Never stale: the step being saved, steps past it (a chief not yet dead
  beside the one that replaced it, ahead of it, may be saving them; after a
  rollback, a failed save's leftovers past the step restored go once the
  job passes them), and every step the state file still lists (except for
  the temporaries above). One writer per model directory is what this
  assumes: a second one behind the other deletes nothing of its newer
  saves, but one ahead deletes the other's in-progress saves of older
  steps.

Other names are never touched: checkpoints without a step, other basenames'
files and asset directories, other temporary files.

Partial recovery, when a PS task restarts in a running job: `PsMonitor`
tells which PS tasks lost their state (a restarted process starts empty),
`PartialRecoverySaver` restores only those tasks' variables from the latest
checkpoint, `MultiHashTableCheckpointRestorerListener(basename, ps_monitor)`
only their tables, and `PsInitializedStateHook` (or
`NoFirstSaveCheckpointSaverHook` with a `PartialRecoverySaver`, as in the
original) then marks every task initialized. The other tasks keep what they
learnt since that checkpoint.

`latest_checkpoint` and `StrictChiefSessionCreator` read the "checkpoint"
state file strictly: TF's `tf.train.latest_checkpoint` (and the
`ChiefSessionCreator` of `MonitoredTrainingSession`) takes a state file
that cannot be read (a transient file-system error) or parsed, or that
names a checkpoint whose files are gone, for "no checkpoint", and the chief
then initializes every variable of every PS task, or restores the
variables while the hash tables start empty. Here those cases raise.

`NoFirstSaveCheckpointSaverHook` is TF's `CheckpointSaverHook` without the
save it makes when a session is created at a step that already has a
checkpoint (a restart): that save would rewrite the checkpoint just
restored in place, and one that fails part-way (on some PS) would leave
it mixed, with no older copy.
"""

import collections
import concurrent.futures
import contextlib
import glob
import hashlib
import inspect
import math
import numbers
import os
import re
import threading
import time
import weakref
from typing import (Iterable, Iterator, List, NamedTuple, Optional, Sequence,
                    Set, Tuple, Union)

from absl import logging
from google.protobuf import text_format
import tensorflow as tf
from tensorflow.python.client import session as session_lib
from tensorflow.python.training import checkpoint_state_pb2
from tensorflow.python.training import saver as saver_lib

from monolith.native_training import basic_restore_hook
from monolith.native_training import utils

# "ckpt.info-<step>": per-step metadata beside the checkpoints.
CKPT_INFO_PREFIX = "ckpt.info-"
_ASSETS_SUFFIX = ".assets"
# "<base>-<step><suffix>": a checkpoint file or directory of some basename.
# Empty suffix: a V1 data file (or any other "<name>-<digits>" entry, which
# only makes ckpt.info deletion more careful); "-?????-of-?????": V1 shards;
# "_temp...": V2 shards being written.
_STEP_ENTRY_RE = re.compile(r"(?P<base>.+?)-(?P<step>\d+)"
                            r"(?P<suffix>\.index|\.meta|\.data-\d+-of-\d+|"
                            r"-\d+-of-\d+|\.assets|_temp.*)?")
_V1_SHARD_RE = re.compile(r"-\d+-of-\d+")
# What a sharded Saver writes before its merge: "<prefix>_temp" (TF1's
# Saver) or "<prefix>_temp_<uuid hex>" (tf.train.Checkpoint).
_SAVER_TEMPORARY_RE = re.compile(r"_temp(_[0-9a-f]{32})?")
# Temporaries of table and filter saves (the C++ savers' "-tmp-<save id>",
# and ".partial" while written) and of utils.write_file_atomically.
_ASSET_TEMPORARY_RE = re.compile(
    r".+(-tmp-[0-9a-f]{16}(\.partial)?|\.tmp-[0-9a-f]{32})")


# The longest deadline of a save or restore run, and None's: a run without
# one of its own would take the session's operation_timeout_in_ms (e.g. a
# minute), and TF counts a deadline in microseconds of an int64.
MAX_CHECKPOINT_TIMEOUT_SECS = 365 * 24 * 3600


def checkpoint_run_options(timeout_secs: Optional[float],
                           name: str = "timeout_secs"
                           ) -> tf.compat.v1.RunOptions:
  """The RunOptions of a save or restore `session.run`: a deadline of
  `timeout_secs` seconds (a positive number), or for None none in practice
  (MAX_CHECKPOINT_TIMEOUT_SECS, a year), whatever the session's own
  operation_timeout_in_ms.

  Raises:
    ValueError: `timeout_secs` is not None nor a number in (0,
      MAX_CHECKPOINT_TIMEOUT_SECS]; the message names `name`.
  """
  if timeout_secs is None:
    timeout_secs = MAX_CHECKPOINT_TIMEOUT_SECS
  if (isinstance(timeout_secs, bool) or
      not isinstance(timeout_secs, numbers.Real) or
      not 0 < timeout_secs <= MAX_CHECKPOINT_TIMEOUT_SECS):
    raise ValueError(f"{name} must be a number of seconds in (0, "
                     f"{MAX_CHECKPOINT_TIMEOUT_SECS}], or None for no "
                     f"deadline (a year); got {timeout_secs!r}")
  return tf.compat.v1.RunOptions(
      timeout_in_ms=max(1, math.ceil(float(timeout_secs) * 1000)))


@contextlib.contextmanager
def explaining_deadline(options: tf.compat.v1.RunOptions, doing: str,
                        listener: str, left: str) -> Iterator[None]:
  """Re-raises a DeadlineExceededError of a run under `options` saying what
  failed (`doing`), the deadline it ran under (the timeout_secs of
  `listener`), and what is `left` running or undone. (The error may also
  be a deadline of its own, e.g. of an RPC to a PS task.) A run that took
  more than half its deadline logs a warning: checkpoints grow with the
  tables, and a run past its deadline fails again at every retry (a
  restart restores as much again), so the job could not start."""
  deadline = options.timeout_in_ms / 1000
  start = time.monotonic()
  try:
    yield
  except tf.errors.DeadlineExceededError as e:
    raise tf.errors.DeadlineExceededError(
        e.node_def, e.op,
        f"{doing} failed with DeadlineExceeded; it ran under a deadline of "
        f"{deadline:g} s (timeout_secs of {listener}: "
        f"raise it, or None for none); {left}: {e.message}") from e
  took = time.monotonic() - start
  if 0 < deadline < took * 2:
    logging.warning(
        "%s took %.1f s, %.0f%% of its deadline of %g s (timeout_secs of "
        "%s): raise it before the checkpoints outgrow it; a run past it "
        "fails, and so does every retry.", doing, took,
        100 * took / deadline, deadline, listener)


def _parse_step_entry(name: str) -> Optional[Tuple[str, int, str]]:
  """(base, step, suffix) of a "<base>-<step><suffix>" name, or None."""
  match = _STEP_ENTRY_RE.fullmatch(name)
  if not match:
    return None
  return match["base"], int(match["step"]), match["suffix"] or ""


def _is_restorable_suffix(suffix: str) -> bool:
  """Whether "<prefix><suffix>" makes the checkpoint <prefix> restorable.

  As tf.compat.v1.train.checkpoint_exists: the V2 index, the V1 data file or
  one of its shards. `.meta` and `.data-*` alone are not.
  """
  return suffix in ("", ".index") or bool(_V1_SHARD_RE.fullmatch(suffix))


class StaleCheckpointFiles(NamedTuple):
  """What is left of checkpoints that the Saver deleted."""
  # "<basename>-N.assets" paths, without a trailing separator, by step.
  asset_dirs: List[str]
  # "ckpt.info-N" paths, by step.
  info_files: List[str]
  # "<basename>-N_temp*" paths left by the Saver's killed saves, by step.
  saver_temporaries: List[str]
  # Temporaries in the asset directory of the step saved, by name.
  asset_temporaries: List[str]


class SaveHelper:
  """Checkpoint paths for one checkpoint basename.

  Args:
    basename: the checkpoint basename given to the saver, e.g.
      "/path/to/model_dir/model.ckpt".

  Raises:
    ValueError: `basename` is empty, or a directory (an existing one, or a
      path ending with "/": the model directory instead of a path in it,
      so tables would be saved beside it and restores would look for
      checkpoints in its parent).
  """

  def __init__(self, basename: Union[str, os.PathLike]):
    basename = os.fspath(basename)
    if not basename:
      raise ValueError("basename must be a non-empty path")
    if basename.endswith("/") or tf.io.gfile.isdir(basename):
      raise ValueError(
          f"basename {basename} is a directory: give the checkpoint path "
          f"prefix the Saver writes, e.g. {basename.rstrip('/')}/model.ckpt")
    self._basename = basename

  @property
  def basename(self) -> str:
    """The checkpoint basename; its directory is the model directory."""
    return self._basename

  def get_ckpt_prefix(self, global_step_value: int) -> str:
    """The checkpoint prefix of the given step: "<basename>-<step>"."""
    return f"{self._basename}-{global_step_value}"

  @classmethod
  def get_ckpt_asset_dir(cls, ckpt_prefix: str) -> str:
    """The asset directory of a checkpoint, "<prefix>.assets/".

    It ends with a separator, so file names can be appended directly.
    """
    return ckpt_prefix + _ASSETS_SUFFIX + "/"

  def get_ckpt_info_path(self, global_step_value: int) -> str:
    """The step's "ckpt.info-<step>", in the basename's directory."""
    return os.path.join(os.path.dirname(self._basename),
                        f"{CKPT_INFO_PREFIX}{global_step_value}")

  def get_global_step_value(self, ckpt_prefix: str) -> int:
    """The global step of a checkpoint prefix "...-<step>"; 0 without one."""
    _, dash, step = os.path.basename(ckpt_prefix).rpartition("-")
    if dash and step.isdigit():
      return int(step)
    return 0

  def get_existing_checkpoint_steps(self) -> Set[int]:
    """The steps of the checkpoints listed in the basename's directory.

    The list is the directory's "checkpoint" state file; it is empty when
    there is no such file.

    Raises:
      tf.errors.OpError: the state file could not be read (as the file
        system raised it).
      tf.errors.DataLossError: the state file does not parse.
    """
    ckpt_state = _parsed_checkpoint_state(os.path.dirname(self._basename))
    if ckpt_state is None:
      return set()
    return {
        self.get_global_step_value(path)
        for path in ckpt_state.all_model_checkpoint_paths
    }

  def has_checkpoint(self, global_step_value: int) -> bool:
    """Whether the step has a checkpoint to keep whole.

    The state file lists it (`step_is_recorded`), or its files are there
    (one that `keep_checkpoint_every_n_hours` kept, which the state no
    longer lists).
    """
    return (self.step_is_recorded(global_step_value) or
            checkpoint_files_exist(self.get_ckpt_prefix(global_step_value)))

  def step_is_recorded(self, global_step_value: int) -> bool:
    """Whether the state file lists the checkpoint of `global_step_value`;
    True too when a state file cannot be read (logged): what a save would
    delete of an unrecorded step is then kept."""
    try:
      return global_step_value in self.get_existing_checkpoint_steps()
    except tf.errors.OpError as e:
      logging.warning("Taking step %d for a recorded checkpoint: %s",
                      global_step_value, e)
      return True

  def get_stale_checkpoint_files(
      self,
      global_step_value: int,
      temporaries: bool = True) -> StaleCheckpointFiles:
    """Asset directories and ckpt.info files of deleted checkpoints.

    See the module docstring for the rule. Call it after the Saver saved
    (and pruned) the checkpoint of `global_step_value`, whose files are
    never stale. With `temporaries` False no temporaries are listed (nor
    the step's asset folder read for them).
    """
    ckpt_dir = os.path.dirname(self._basename)
    own_base = os.path.basename(self._basename)
    try:
      # Object stores list directories with a trailing "/"; "" (a basename
      # "model.ckpt") is the working directory.
      names = [name.rstrip("/") for name in utils.listdir(ckpt_dir)]
    except tf.errors.NotFoundError:
      return StaleCheckpointFiles([], [], [], [])
    except tf.errors.OpError as e:
      # Clean-up must not stop training after a good save: next time.
      logging.warning("Cannot list %s to delete stale checkpoint files: %s",
                      ckpt_dir, e)
      return StaleCheckpointFiles([], [], [], [])
    own_ckpt_steps = set()  # this basename's restorable TF checkpoints
    other_ckpt_steps = set()  # anything of any other basename
    own_asset_dirs = []  # (step, name)
    saver_temporaries = []  # (step, name)
    info_files = []  # (step, name)
    for name in names:
      if name.startswith(CKPT_INFO_PREFIX):
        # "ckpt.info-N", or "ckpt.info-N.tmp-<hex>" (".tmp" before) left by
        # a killed write.
        step = re.sub(r"\.tmp(-[0-9a-f]+)?$", "", name[len(CKPT_INFO_PREFIX):])
        if step.isdigit():
          info_files.append((int(step), name))
          continue
      parsed = _parse_step_entry(name)
      if parsed is None:
        continue
      base, step, suffix = parsed
      if base != own_base:
        other_ckpt_steps.add(step)
      elif suffix == _ASSETS_SUFFIX:
        own_asset_dirs.append((step, name))
      elif _SAVER_TEMPORARY_RE.fullmatch(suffix):
        if step <= global_step_value:
          saver_temporaries.append((step, name))
      elif _is_restorable_suffix(suffix):
        own_ckpt_steps.add(step)
    try:
      kept_steps = own_ckpt_steps | self.get_existing_checkpoint_steps()
    except tf.errors.OpError as e:
      # The state's steps are never stale: without them, nothing is.
      logging.warning("Deleting no stale checkpoint files of %s: %s",
                      ckpt_dir, e)
      return StaleCheckpointFiles([], [], [], [])

    def stale(step: int) -> bool:
      # Steps past the one being saved are another writer's, if any: a
      # chief not yet dead beside the one that replaced it, saving ahead.
      return step < global_step_value and step not in kept_steps

    return StaleCheckpointFiles(
        asset_dirs=[
            os.path.join(ckpt_dir, name)
            for step, name in sorted(own_asset_dirs)
            if stale(step)
        ],
        info_files=[
            os.path.join(ckpt_dir, name)
            for step, name in sorted(info_files)
            if stale(step) and step not in other_ckpt_steps
        ],
        saver_temporaries=[
            os.path.join(ckpt_dir, name)
            for step, name in sorted(saver_temporaries)
        ] if temporaries else [],
        asset_temporaries=(self._asset_temporaries(global_step_value)
                           if temporaries else []))

  def _asset_temporaries(self, global_step_value: int) -> List[str]:
    asset_dir = self.get_ckpt_asset_dir(self.get_ckpt_prefix(global_step_value))
    try:
      names = utils.listdir(asset_dir)
    except tf.errors.NotFoundError:
      return []
    except tf.errors.OpError as e:
      logging.warning("Cannot list %s to delete temporaries: %s", asset_dir,
                      e)
      return []
    return [asset_dir + name for name in sorted(names)
            if _ASSET_TEMPORARY_RE.fullmatch(name)]

  def delete_stale_checkpoint_files(self,
                                    global_step_value: int,
                                    temporaries: bool = True) -> List[str]:
    """Deletes what get_stale_checkpoint_files lists; returns what it deleted.

    A path that another process deleted first is skipped; any other failure
    is logged and skipped, so that cleaning up never stops training.

    Args:
      global_step_value: the step just saved, or about to be saved.
      temporaries: False keeps the temporaries, for a call before the save
        of `global_step_value`: those in its asset folder may be what
        completes a killed earlier save of that step (the save about to run
        finishes its renames first), and a sharded Saver's are harmless
        until then.
    """
    stale = self.get_stale_checkpoint_files(global_step_value, temporaries)
    deleted = []
    gone = "its checkpoint is gone"
    for path, delete, why in (
        [(p, _delete_tree, gone) for p in stale.asset_dirs] +
        [(p, tf.io.gfile.remove, gone) for p in stale.info_files] +
        [(p, _remove_file_or_tree, "left by a killed save")
         for p in stale.saver_temporaries + stale.asset_temporaries]):
      try:
        delete(path)
      except tf.errors.NotFoundError:
        logging.info("%s was already deleted.", path)
        continue
      except tf.errors.OpError as e:
        logging.warning("Could not delete %s (%s): %s", path, why, e)
        continue
      deleted.append(path)
      logging.info("Deleted %s: %s.", path, why)
    return deleted


def _remove_file_or_tree(path: str) -> None:
  if tf.io.gfile.isdir(path):
    _delete_tree(path)
  else:
    tf.io.gfile.remove(path)


# Files deleted at once where a folder goes one object at a time.
_PARALLEL_DELETES = 32


def _deletes_one_object_at_a_time(path: str) -> bool:
  """Whether TF's recursive delete of `path` deletes object after object:
  on object stores (gs://, s3://, ...: an HTTP call of tens of ms each),
  not on local disks or HDFS (one call)."""
  scheme = path.split("://", 1)[0] if "://" in path else ""
  return scheme not in ("", "file", "hdfs", "viewfs")


def _delete_tree(path: str, parallel: Optional[bool] = None) -> None:
  """tf.io.gfile.rmtree of `path`, whose files go `_PARALLEL_DELETES` at a
  time first where its store deletes one object at a time (`parallel`
  None: `_deletes_one_object_at_a_time`): a step's asset folder holds
  every PS's table and filter files, thousands, which took minutes of the
  chief's step each save on such a store.

  Raises:
    tf.errors.NotFoundError: `path` is not there.
  """
  if parallel is None:
    parallel = _deletes_one_object_at_a_time(path)
  if parallel:
    files = [
        os.path.join(folder, name)
        for folder, _, names in tf.io.gfile.walk(path)
        for name in names
    ]
    with concurrent.futures.ThreadPoolExecutor(_PARALLEL_DELETES) as pool:
      # list(): the first failure raises here (a file gone meanwhile is
      # not one).
      list(pool.map(utils.remove_if_there, files))
  tf.io.gfile.rmtree(path)


def ps_files_in(directory: str,
                pattern: "re.Pattern[str]") -> List[Tuple[int, str]]:
  """(PS index, name) of the names in `directory` that `pattern` fully
  matches (the index: its group 1), e.g. the per-PS files of a checkpoint's
  asset directory, sorted; empty when there is no such directory."""
  try:
    # "": the working directory (a relative basename's).
    names = utils.listdir(directory)
  except tf.errors.NotFoundError:
    return []
  files = []
  for name in names:
    name = name.rstrip("/")
    match = pattern.fullmatch(name)
    if match:
      files.append((int(match.group(1)), name))
  return sorted(files)


def ps_indices_in(directory: str, pattern: "re.Pattern[str]") -> Set[int]:
  """The PS indices of `ps_files_in(directory, pattern)`.

  Raises:
    tf.errors.DataLossError: a name with a PS index no save writes (of
      MAX_PS_TASKS or more): restores would take it for that many PS tasks.
  """
  files = ps_files_in(directory, pattern)
  if files and files[-1][0] >= MAX_PS_TASKS:
    index, name = files[-1]
    raise tf.errors.DataLossError(
        None, None, f"{os.path.join(directory, name)} names PS task {index}, "
        f"but saves write at most {MAX_PS_TASKS} PS tasks' files: it is not "
        "a file of a save; move it out of the checkpoint")
  return {index for index, _ in files}


def delete_ps_files_beyond(directory: str, pattern: "re.Pattern[str]",
                           num_ps: int) -> List[str]:
  """Deletes the files of `ps_files_in(directory, pattern)` of PS `num_ps`
  and above (left in a checkpoint's asset directory by a save of the same
  step with more PS tasks: restores count the per-PS files they find).

  Returns:
    The names deleted, sorted.
  """
  stale = [
      name for index, name in ps_files_in(directory, pattern)
      if index >= num_ps
  ]
  for name in stale:
    tf.io.gfile.remove(os.path.join(directory, name))
  return stale


def ps_count_path(directory: str, group: str) -> str:
  """Where a save records how many PS tasks saved `group`'s per-PS files
  (tables of a PS group, hash filters) in a checkpoint's asset directory."""
  return os.path.join(directory, group + ".num_ps")


# What a PS count record holds while its group's files are being saved
# (`mark_ps_files_saving`, `DistributedMultiTypeHashTable.save`).
SAVING_RECORD = "saving\n"
# Far more than any record: a count, or the mark above.
_MAX_PS_COUNT_RECORD_BYTES = 64
# The most PS tasks a PS count record holds (six digits).
MAX_PS_TASKS = 999_999


def remove_ps_count(directory: str, group: str) -> None:
  """Removes `group`'s PS count record, if any."""
  utils.remove_if_there(ps_count_path(directory, group))


def mark_ps_files_saving(directory: str, group: str) -> None:
  """Replaces `group`'s PS count record with the mark of a save under way,
  before its files are rewritten. A save that stops before
  `write_ps_count` leaves the mark, and restores refuse the files: the PS
  tasks rename their files on their own, so a step saved again (over files
  that a restore could read) may hold some PS's new files and others' old
  ones."""
  utils.write_file_atomically(ps_count_path(directory, group), SAVING_RECORD)


def ps_count_record(num_ps: int) -> str:
  """What a PS count record holds once `num_ps` PS tasks saved (the count
  and a newline: a record cut short is told from a count).

  Raises:
    ValueError: `num_ps` is not in [1, MAX_PS_TASKS].
  """
  if not 1 <= num_ps <= MAX_PS_TASKS:
    raise ValueError(f"num_ps must be in [1, {MAX_PS_TASKS}], got {num_ps}")
  return f"{num_ps}\n"


def write_ps_count(directory: str, group: str, num_ps: int) -> None:
  """Records, once every PS saved `group`'s files, that `num_ps` did."""
  utils.write_file_atomically(ps_count_path(directory, group),
                              ps_count_record(num_ps))


def read_ps_count(directory: str, group: str) -> Optional[int]:
  """The PS count `write_ps_count` (or `DistributedMultiTypeHashTable.save`)
  recorded, or None when there is none (the original's checkpoints, saves
  of earlier versions).

  Raises:
    tf.errors.DataLossError: the record marks a save that did not finish
      (`mark_ps_files_saving`), or is not a positive count and its newline
      (a record cut short, "1" of "12\n", would drop PS tasks' files), or
      is missing beside a temporary of its own (a replacement that failed
      midway: an HDFS rename deletes the old record first; read as no
      record, files of PS tasks beyond the new count would be read as a
      save's own).
  """
  path = ps_count_path(directory, group)
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      data = f.read(_MAX_PS_COUNT_RECORD_BYTES)
  except tf.errors.NotFoundError:
    temporaries = tf.io.gfile.glob(glob.escape(path) + ".tmp-*")
    if temporaries:
      raise tf.errors.DataLossError(
          None, None, f"{path} is missing, but {temporaries[0]}, a write of "
          "it, is there: the record's replacement failed midway, and "
          f"{group}'s files may mix two saves. If that save finished, "
          f"rename {temporaries[0]} to {path}; else restore another "
          "checkpoint") from None
    return None
  text = data.decode("ascii", errors="replace")
  if text == SAVING_RECORD:
    raise tf.errors.DataLossError(
        None, None, f"{path}: a save of {group}'s files into {directory} "
        "began and never recorded its end (the job stopped while saving, or "
        "the save's as_op() was not run), so they may mix the files of two "
        "saves. Restore another checkpoint (e.g. the one before it: move "
        "this step's files away, <prefix>-<step>.*, its .assets folder and "
        "ckpt.info-<step>, and put the earlier one's path as "
        "model_checkpoint_path in the model directory's `checkpoint` file; "
        "see docs/checkpoints.md), or, to take these files as they are, "
        "write the number of PS tasks and a newline into this file")
  if not re.fullmatch(r"[1-9][0-9]{0,5}\n", text):
    raise tf.errors.DataLossError(
        None, None, f"{path} should hold the number of PS tasks that saved "
        f"{group} and a newline, but holds {data[:40]!r}")
  return int(text)


@contextlib.contextmanager
def saving_per_ps_files(directory: str, group: str,
                        pattern: "re.Pattern[str]", num_ps: int,
                        step_has_checkpoint: bool) -> Iterator[None]:
  """Around a save of `group`'s per-PS files (`pattern`, as for
  `ps_files_in`) by `num_ps` PS tasks into a checkpoint's asset directory.

  Before the save: marks the group's PS count record as saving
  (`mark_ps_files_saving`), so that a save that fails leaves files no
  restore reads; and, when the step has no checkpoint
  (`SaveHelper.has_checkpoint`), deletes the files of PS `num_ps` and
  above (left by an unfinished save of this step with more PS tasks). A
  step with a checkpoint keeps them until the save is complete: a save
  killed after deleting them would leave that checkpoint without those
  PS's files. After a save that returned: records
  `num_ps` (`write_ps_count`), then deletes those files in any case.
  """
  if num_ps:
    mark_ps_files_saving(directory, group)
  elif not step_has_checkpoint:
    # Nothing of the group is saved (no filters), and the files of an
    # unfinished save of the step go below: so does their record. (A
    # step with a checkpoint keeps both.)
    remove_ps_count(directory, group)
  if not step_has_checkpoint:
    stale = delete_ps_files_beyond(directory, pattern, num_ps)
    if stale:
      logging.warning(
          "Deleted %s from %s: %s files of PS tasks beyond this job's %d, "
          "left by an unfinished save of this step.", stale, directory,
          group, num_ps)
  yield
  if num_ps:
    write_ps_count(directory, group, num_ps)
    stale = delete_ps_files_beyond(directory, pattern, num_ps)
    if stale:
      logging.info(
          "Deleted %s from %s: %s files of PS beyond the %d that saved "
          "this step now.", stale, directory, group, num_ps)


def _same_dir(a: str, b: str) -> bool:
  """Whether two directories are one however each is spelled (see
  `utils.comparable_path`)."""
  return utils.comparable_path(a) == utils.comparable_path(b)


def checkpoint_files_exist(prefix: str) -> bool:
  """Whether a checkpoint was written at `prefix` (V2: "<prefix>.index";
  V1: a file named the prefix)."""
  return tf.io.gfile.exists(prefix + ".index") or tf.io.gfile.exists(prefix)


def _checkpoint_path_in(checkpoint_dir: str, path: str) -> Optional[str]:
  """A path of the state file as a prefix in the directory: relative ones
  (as TF writes for relative and remote directories) joined to it; an
  absolute one (or URL) of the directory spelled as the directory is (so
  that one checkpoint has one name: the Saver and the saver hook compare
  names); one elsewhere whose name is in the directory taken from there
  (the model directory was moved or copied: a copy must not read, nor its
  Saver's rotation delete, the files of the directory it was copied
  from). None for one elsewhere whose files are not in the directory."""
  if not os.path.isabs(path) and "://" not in path:
    return os.path.join(checkpoint_dir, path)
  here = os.path.join(checkpoint_dir, os.path.basename(path))
  if _same_dir(os.path.dirname(path), checkpoint_dir):
    return here
  if checkpoint_files_exist(here):
    logging.warning("The checkpoint state names %s; using %s, in the "
                    "directory itself (it was moved or copied).", path, here)
    return here
  return None


# Far more than any "checkpoint" state file (a few paths per checkpoint
# kept): a larger file is not one, and is not read into memory.
_MAX_CHECKPOINT_STATE_BYTES = 16 << 20


def _parsed_checkpoint_state(
    checkpoint_dir: str) -> Optional[checkpoint_state_pb2.CheckpointState]:
  """The "checkpoint" state file of `checkpoint_dir` as it is written, or
  None when there is none.

  Raises:
    tf.errors.OpError: the state file could not be read (as the file
      system raised it).
    tf.errors.DataLossError: the state file does not parse, or names a
      path no file system takes.
  """
  state_path = os.path.join(checkpoint_dir, "checkpoint")
  if not tf.io.gfile.exists(state_path):
    return None
  with tf.io.gfile.GFile(state_path, "rb") as f:
    data = f.read(_MAX_CHECKPOINT_STATE_BYTES + 1)
  if len(data) > _MAX_CHECKPOINT_STATE_BYTES:
    raise tf.errors.DataLossError(
        None, None, f"checkpoint state file {state_path} holds more than "
        f"{_MAX_CHECKPOINT_STATE_BYTES} bytes: it is not a checkpoint state")
  state = checkpoint_state_pb2.CheckpointState()
  try:
    text_format.Parse(data.decode("utf-8"), state)
  except UnicodeDecodeError as e:
    raise tf.errors.DataLossError(
        None, None, f"checkpoint state file {state_path} is not UTF-8 "
        f"text: {e}") from e
  except text_format.ParseError as e:
    raise tf.errors.DataLossError(
        None, None, f"checkpoint state file {state_path} does not parse: "
        f"{e}") from e
  for path in [state.model_checkpoint_path
              ] + list(state.all_model_checkpoint_paths):
    if "\0" in path:  # no file system takes one
      raise tf.errors.DataLossError(
          None, None, f"checkpoint state file {state_path} names a path "
          f"with a NUL character: {path!r}")
  return state


# A V2 checkpoint "<prefix>-<step>" of the Saver: its index and data files.
_CHECKPOINT_INDEX_RE = re.compile(r"(.*-([0-9]+))\.index")
_CHECKPOINT_DATA_RE = re.compile(r"(.*)\.data-([0-9]{5})-of-([0-9]{5})")
# A sharded Saver's part before its merge, where it writes parts beside
# the checkpoint ("<prefix>.part-00000-of-00002.index" on S3).
_SAVER_PART_RE = re.compile(r".*\.part-[0-9]{5}-of-[0-9]{5}")


def _whole_checkpoints(checkpoint_dir: str) -> List[Tuple[int, str]]:
  """(step, prefix) of each V2 checkpoint "<prefix>-<step>" in
  `checkpoint_dir` whose index and every data shard are there, by step
  (named there: a sharded Saver writes the index in place, after the data
  files, so a save killed while writing it leaves one cut short)."""
  try:
    names = {name.rstrip("/") for name in utils.listdir(checkpoint_dir)}
  except tf.errors.NotFoundError:
    return []  # no directory yet
  shards = collections.defaultdict(set)
  for name in names:
    data = _CHECKPOINT_DATA_RE.fullmatch(name)
    if data:
      shards[data.group(1)].add((int(data.group(2)), int(data.group(3))))
  whole = []
  for name in names:
    index = _CHECKPOINT_INDEX_RE.fullmatch(name)
    if not index:
      continue
    prefix = index.group(1)
    if (not _SAVER_PART_RE.fullmatch(prefix) and
        utils.is_whole_shard_set(shards[prefix])):
      whole.append((int(index.group(2)),
                    os.path.join(checkpoint_dir, prefix)))
  return sorted(whole)


def _state_of_whole_checkpoints(
    checkpoint_dir: str) -> Optional[checkpoint_state_pb2.CheckpointState]:
  """Where `checkpoint_dir` has no "checkpoint" state file: a state naming
  its latest whole checkpoint, or None where it has none.

  The state file can be lost while its checkpoints are there: a save
  killed between the Saver's checkpoint and its state file, an HDFS rename
  (it deletes the old file first) that failed midway. Taken for no
  checkpoint (as TF does), a chief would start from scratch and save over
  them step by step. Only the latest is listed, so the Saver's
  `max_to_keep` deletes none of the others (files
  `keep_checkpoint_every_n_hours` kept among them)."""
  whole = _whole_checkpoints(checkpoint_dir)
  basenames = sorted({prefix.rsplit("-", 1)[0] for _, prefix in whole})
  if len(basenames) > 1:
    # Another job's, a warm start's: which is this job's is not known.
    raise tf.errors.FailedPreconditionError(
        None, None, f"{checkpoint_dir} has no \"checkpoint\" state file and "
        f"holds checkpoints of several basenames ({', '.join(basenames)}): "
        "write the state file back naming this job's latest, e.g. "
        "tf.compat.v1.train.update_checkpoint_state("
        f"{checkpoint_dir!r}, {whole[-1][1]!r})")
  # The latest whose index is whole: a sharded Saver writes it in place,
  # and one a killed save cut short lacks its table footer. (Read errors
  # are raised: taken for a cut index, a passing storage error would send
  # the chief back to an older checkpoint.)
  for _, latest in reversed(whole):
    if not _index_is_whole(latest + ".index"):
      logging.warning("Checkpoint %s has an index cut short (a save killed "
                      "while writing it): passed over.", latest)
      continue
    logging.warning(
        "%s has no \"checkpoint\" state file but holds %d checkpoints "
        "(lost state file: a save killed before writing it, an HDFS rename "
        "that failed midway); resuming from the latest, %s. The next save "
        "writes the state file again.", checkpoint_dir, len(whole), latest)
    return checkpoint_state_pb2.CheckpointState(
        model_checkpoint_path=latest, all_model_checkpoint_paths=[latest])
  return None


# The last 8 bytes of a whole TF table file (a checkpoint's .index):
# kTableMagicNumber, little-endian.
_TABLE_MAGIC = bytes.fromhex("57fb808b247547db")


def _index_is_whole(path: str) -> bool:
  """Whether the checkpoint index at `path` ends with its table's footer.

  Raises:
    tf.errors.OpError: it could not be read.
  """
  with tf.io.gfile.GFile(path, "rb") as f:
    size = f.size()
    if size < len(_TABLE_MAGIC):
      return False
    f.seek(size - len(_TABLE_MAGIC))
    return f.read() == _TABLE_MAGIC


def checkpoint_state(
    checkpoint_dir: str) -> Optional[checkpoint_state_pb2.CheckpointState]:
  """The "checkpoint" state file of `checkpoint_dir`, its paths resolved,
  or None when there is none (nor a whole checkpoint).

  As `tf.train.get_checkpoint_state`, but a state file that exists and
  cannot be used is an error, not "no checkpoint" (after which a chief
  would initialize what it should restore), and a missing state file
  beside whole checkpoints gives a state naming the latest (see
  `_state_of_whole_checkpoints`). Paths are made usable as
  `_checkpoint_path_in` says; the latest one elsewhere is kept as named,
  the others elsewhere are left out (the Saver's rotation would delete
  that directory's files: a partial copy's older ones).

  Raises:
    tf.errors.OpError: the state file could not be read (as the file
      system raised it).
    tf.errors.DataLossError: the state file does not parse or names no
      checkpoint.
    tf.errors.NotFoundError: the latest checkpoint it names has no files.
  """
  return _checkpoint_state(checkpoint_dir)[0]


def _checkpoint_state(
    checkpoint_dir: str
) -> Tuple[Optional[checkpoint_state_pb2.CheckpointState], bool]:
  """`checkpoint_state`'s answer, and whether it stands for a lost state
  file (`_state_of_whole_checkpoints`)."""
  state = _parsed_checkpoint_state(checkpoint_dir)
  if state is None:
    state = _state_of_whole_checkpoints(checkpoint_dir)
    return state, state is not None
  state_path = os.path.join(checkpoint_dir, "checkpoint")
  if not state.model_checkpoint_path:
    raise tf.errors.DataLossError(
        None, None, f"checkpoint state file {state_path} names no "
        "checkpoint (model_checkpoint_path is empty)")
  prefix = (_checkpoint_path_in(checkpoint_dir, state.model_checkpoint_path)
            or state.model_checkpoint_path)
  if not checkpoint_files_exist(prefix):
    raise tf.errors.NotFoundError(
        None, None, f"checkpoint state file {state_path} names {prefix}, "
        f"which has no files ({prefix}.index); restore them, or move the "
        "directory's checkpoints and state file away to start from scratch")
  state.model_checkpoint_path = prefix
  resolved = []
  for path in state.all_model_checkpoint_paths:
    here = _checkpoint_path_in(checkpoint_dir, path)
    if here is None:
      logging.warning("The checkpoint state of %s lists %s, in another "
                      "directory; left out of its checkpoints.",
                      checkpoint_dir, path)
      continue
    resolved.append(here)
  del state.all_model_checkpoint_paths[:]
  state.all_model_checkpoint_paths.extend(resolved)
  return state, False


def get_latest_checkpoint_state(
    checkpoint_dir: str,
    global_step_value: int) -> Optional[checkpoint_state_pb2.CheckpointState]:
  """The original's name for `checkpoint_state` (strict, read every call).

  Args:
    checkpoint_dir: the model directory.
    global_step_value: the original kept a cache per directory that this
      step told stale; accepted, not needed.
  """
  del global_step_value
  return checkpoint_state(checkpoint_dir)


def _saved_global_step(path: str, name: str) -> Optional[int]:
  """The value checkpoint `path` holds for variable `name` (the global
  step), or None where it holds none or cannot be read (a warning): it is
  then not the checkpoint a session restored."""
  try:
    reader = tf.train.load_checkpoint(path)
    if not reader.has_tensor(name):
      return None
    return int(reader.get_tensor(name))
  except tf.errors.OpError as e:
    logging.warning("Could not read the global step of checkpoint %s: %s",
                    path, e)
    return None


def restored_checkpoint(session: tf.compat.v1.Session,
                        checkpoint_dir: str,
                        ps_monitor: Optional["PsMonitor"] = None
                       ) -> Optional[str]:
  """The checkpoint of `checkpoint_dir` that the session's variables came
  from, as far as its global step tells: the latest, or another checkpoint
  the state lists that holds the global step restored (a session created
  from an older checkpoint, to roll back), so that what is restored beside
  the variables (tables, filters) comes from the same checkpoint. Told by
  the value each checkpoint holds, not by its name: a checkpoint is named
  by the step its saver hook read, and with several workers it holds a
  later one (the others trained on while it saved). The latest where the
  global step was not restored in this session: 0 (initialized), or on a
  PS task that `ps_monitor` finds set up (it kept its state), or where no
  listed checkpoint holds it (with a warning; a checkpoint that cannot be
  read holds none). None without a checkpoint.
  """
  return _restored_checkpoint(session, checkpoint_dir, ps_monitor)[0]


def _restored_checkpoint(
    session: tf.compat.v1.Session, checkpoint_dir: str,
    ps_monitor: Optional["PsMonitor"]) -> Tuple[Optional[str], bool]:
  """restored_checkpoint's answer, and whether that checkpoint was read to
  hold the session's global step.

  Raises:
    tf.errors.FailedPreconditionError: the state file is lost, and the
      session did not restore the latest whole checkpoint (TF's creator
      takes the directory for one without checkpoints).
  """
  state, recovered = _checkpoint_state(checkpoint_dir)
  latest = state.model_checkpoint_path if state else None
  global_step = tf.compat.v1.train.get_global_step(session.graph)
  if latest is None or global_step is None:
    return latest, False
  name = global_step.op.name
  step = _global_step_value(session, global_step)
  if recovered and not step:
    # A session built from scratch (a step above 0 was restored, or kept
    # by PS tasks still up) beside the checkpoints of a lost state file.
    saved = _saved_global_step(latest, name)
    if saved != 0:  # None: it could not be read, so may be anything
      raise tf.errors.FailedPreconditionError(
          None, None, f"{checkpoint_dir} has no \"checkpoint\" state file "
          f"but holds whole checkpoints, the latest {latest} (step {saved}), "
          f"which the session did not restore (its global step is {step}): "
          "TF's session creator takes such a directory for one without "
          "checkpoints, and going on would pair fresh variables with "
          "restored tables and save over the checkpoints. Create the "
          "session with save_utils.StrictChiefSessionCreator, which resumes "
          "from it, or write the state file back: "
          "tf.compat.v1.train.update_checkpoint_state("
          f"{checkpoint_dir!r}, {latest!r})")
  if ps_monitor is not None and not ps_monitor.is_ps_uninitialized(
      session, global_step.device):
    return latest, False
  # Step 0 is that of variables initialized, not restored (a fresh job's
  # first checkpoint holds nothing to roll back to).
  if not step:
    return latest, False
  older = [p for p in reversed(state.all_model_checkpoint_paths)
           if p != latest]
  for path in [latest] + older:
    if _saved_global_step(path, name) != step:
      continue
    if path != latest:
      logging.warning(
          "The global step restored, %d, is the one %s holds, not the "
          "latest checkpoint %s: restoring from %s.", step, path, latest,
          path)
    return path, True
  logging.warning(
      "The global step, %d, is held by none of the checkpoints %s lists "
      "(other workers trained on since the restore, a PS task holding it "
      "kept running, or the session restored another directory's): taking "
      "the latest, %s, as the checkpoint the session starts from.",
      step, checkpoint_dir, latest)
  return latest, False


def _global_step_value(session: tf.compat.v1.Session,
                       global_step: tf.Variable) -> Optional[int]:
  """The session's global step, or None where it is not initialized (not
  restored, nor initialized, in this session)."""
  try:
    return int(session.run(global_step))
  except tf.errors.FailedPreconditionError:
    return None


def global_step_is_zero(session: tf.compat.v1.Session) -> bool:
  """Whether the session's global step reads 0. Where there was no
  checkpoint to restore, the session then initialized its variables (with
  TF's default init_op, those of every PS task): hash tables that PS tasks
  kept would pair trained embeddings with fresh dense weights. (An init_op
  that initializes only what is uninitialized keeps a step above 0, and
  the tables beside it.)"""
  global_step = tf.compat.v1.train.get_global_step(session.graph)
  return (global_step is not None and
          _global_step_value(session, global_step) == 0)


def latest_checkpoint(checkpoint_dir: str) -> Optional[str]:
  """The prefix of the latest checkpoint of `checkpoint_dir`, or None when
  the directory has no "checkpoint" state file (nor a whole checkpoint).

  As `tf.train.latest_checkpoint`, but strict: see `checkpoint_state`,
  whose errors it raises.
  """
  state = checkpoint_state(checkpoint_dir)
  return state.model_checkpoint_path if state else None


class StrictChiefSessionCreator(tf.compat.v1.train.SessionCreator):
  """`tf.compat.v1.train.ChiefSessionCreator` that finds the checkpoint to
  restore with `latest_checkpoint` each time it creates a session.

  Pass it to `tf.compat.v1.train.MonitoredSession` in place of a
  `ChiefSessionCreator(checkpoint_dir=...)`: when the checkpoint state
  cannot be read, creating the session fails instead of initializing
  every variable (on every PS task, after a PS restart).

  Args:
    scaffold: the `Scaffold` (a default one if None).
    master: the TF master, e.g. a `tf.distribute.Server`'s target.
    config: the session's `ConfigProto`.
    checkpoint_dir: where the checkpoints are; None restores nothing.
  """

  def __init__(self,
               scaffold: Optional[tf.compat.v1.train.Scaffold] = None,
               master: str = "",
               config: Optional[tf.compat.v1.ConfigProto] = None,
               checkpoint_dir: Optional[str] = None):
    self._scaffold = scaffold or tf.compat.v1.train.Scaffold()
    self._master = master
    self._config = config
    self._checkpoint_dir = checkpoint_dir
    self._session_manager = None

  def create_session(self) -> tf.compat.v1.Session:
    self._scaffold.finalize()
    if self._session_manager is None:
      self._session_manager = tf.compat.v1.train.SessionManager(
          local_init_op=self._scaffold.local_init_op,
          local_init_feed_dict=self._scaffold.local_init_feed_dict,
          ready_op=self._scaffold.ready_op,
          ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
          graph=tf.compat.v1.get_default_graph())
    state = (checkpoint_state(self._checkpoint_dir)
             if self._checkpoint_dir else None)
    checkpoint = None
    if state is not None:
      checkpoint = state.model_checkpoint_path
      # As TF's creator: the Saver learns the checkpoints kept before the
      # restart, so that max_to_keep goes on deleting the oldest.
      self._scaffold.saver.recover_last_checkpoints(
          list(state.all_model_checkpoint_paths))
    return self._session_manager.prepare_session(
        self._master,
        saver=self._scaffold.saver,
        checkpoint_filename_with_path=checkpoint,
        config=self._config,
        init_op=self._scaffold.init_op,
        init_feed_dict=self._scaffold.init_feed_dict,
        init_fn=self._scaffold.init_fn)


# PsMonitor's keys: the PS count a task was set up for, the generation of
# its last setup, and the fingerprint of the model directory it was set up
# for (0: none given; absent, read as _NO_FINGERPRINT: set up by a version
# before fingerprints).
_COUNT_KEY = 0
_GENERATION_KEY = 1
_MODEL_DIR_KEY = 2
_NO_FINGERPRINT = -1


def model_dir_fingerprint(model_dir: Optional[Union[str, os.PathLike]]) -> int:
  """An int64 naming `model_dir`, neither 0 (None) nor -1 (none recorded),
  the same for every spelling of one directory that `_same_dir` takes as
  one."""
  if model_dir is None:
    return 0
  if isinstance(model_dir, os.PathLike):
    model_dir = os.fspath(model_dir)
  if not isinstance(model_dir, str) or not model_dir:
    raise ValueError(f"model_dir must be a non-empty string or None, got "
                     f"{model_dir!r}")
  path = utils.comparable_path(model_dir)
  digest = hashlib.sha256(path.encode("utf-8")).digest()
  fingerprint = int.from_bytes(digest[:8], "little", signed=True)
  return 1 if fingerprint in (0, _NO_FINGERPRINT) else fingerprint


def ps_monitor_table(ps_index: int) -> tf.Tensor:
  """The handle of `PsMonitor`'s table on PS `ps_index` (build it under
  that task's device): key 0 maps to the PS count the task was set up for,
  key 1 to the generation of its last setup (none: set up by an earlier
  version, read as 0), key 2 to the fingerprint of the model directory it
  was set up for (0: set up without one; none: by an earlier version)."""
  return tf.raw_ops.MutableHashTableV2(key_dtype=tf.int64,
                                       value_dtype=tf.int64,
                                       shared_name=f"ps_monitor_{ps_index}",
                                       use_node_name_sharing=False,
                                       name=f"ps_monitor_{ps_index}")


class PsMonitor:
  """Tells which parameter-server tasks restarted since they were set up.

  Each PS task i holds a small hash table (shared name "ps_monitor_<i>")
  into which `setup_ps_initialized_state` writes the job's PS count once
  the task's variables and tables are initialized or restored, and a setup
  generation. A PS process that restarts starts with an empty table, so a
  missing count means the task's state is gone. A count other than this
  job's means the task kept running through a change of PS count: it
  holds tables sharded for that count (id mod the old num_ps), so it
  counts as not set up and is restored (resharded) too, also after several
  changes (2, 3, then 2 PS). Every setup that restores a task writes one
  new generation (one past the highest any task holds) to all the job's
  tasks, so a task that was out of the job meanwhile (2, 1, then 2 PS, PS
  1 up but unused) holds an older generation than the tasks that took
  part, and is restored too. Only where every task that took part
  restarted since is there none left to tell: restart a task that was out
  of the job before it rejoins.
  With a `model_dir`, setups also write its fingerprint, and a task set up
  for another directory (a new job started on PS tasks still running the
  tables of another, or of a job without one) counts as not set up: it is
  restored from this job's checkpoint, and where there is none, the
  restorer listeners empty its tables and hash filters. A task set up
  before fingerprints were written counts as set up for any directory, and
  takes this job's at its setup. Every task of a job (the chief, and the
  workers whose ready op waits on `report_uninitialized_ps`) needs the
  same `model_dir`. A monitor without one writes 0 (no directory) at its
  setups, so a job with a `model_dir` restores the tasks such a job used.
  Sessions must share the PS tasks' resources (the default; not
  `isolate_session_state`).

  Args:
    ps_num: the number of PS tasks, >= 0 (the original's argument name).
    model_dir: the job's model (checkpoint) directory, or None (the
      original's: the tasks' tables are taken for this job's whatever job
      set them up).
  """

  def __init__(self,
               ps_num: int,
               model_dir: Optional[Union[str, os.PathLike]] = None):
    self._num_ps = utils.check_count(ps_num, "ps_num")
    fingerprint = model_dir_fingerprint(model_dir)
    counts, generations, self._fingerprints = [], [], []
    marks, generation_marks, identity_marks = [], [], []
    graph = tf.compat.v1.get_default_graph()
    with tf.name_scope("ps_monitor"):
      # The generation a setup writes (fed).
      self._new_generation = tf.compat.v1.placeholder(tf.int64, [],
                                                      "new_generation")
      for i in range(ps_num):
        with graph.colocate_with(None, ignore_existing=True), tf.device(
            utils.ps_device(i)):
          table = ps_monitor_table(i)
          keys = tf.constant([_COUNT_KEY, _GENERATION_KEY, _MODEL_DIR_KEY],
                             tf.int64)
          marks.append(
              tf.raw_ops.LookupTableInsertV2(
                  table_handle=table,
                  keys=keys,
                  values=tf.stack([
                      tf.constant(ps_num, tf.int64), self._new_generation,
                      tf.constant(fingerprint, tf.int64)
                  ])))
          # A task kept as it is takes the generation (and this job's
          # directory) only: restarted meanwhile, it still lacks the count.
          generation_marks.append(
              tf.raw_ops.LookupTableInsertV2(
                  table_handle=table,
                  keys=keys[1:],
                  values=tf.stack([
                      self._new_generation,
                      tf.constant(fingerprint, tf.int64)
                  ])))
          identity_marks.append(
              tf.raw_ops.LookupTableInsertV2(
                  table_handle=table,
                  keys=keys[2:],
                  values=tf.constant([fingerprint], tf.int64)))
          found = tf.raw_ops.LookupTableFindV2(
              table_handle=table,
              keys=keys[:2],
              default_value=tf.constant(0, tf.int64))
          counts.append(found[0])
          generations.append(found[1])
          self._fingerprints.append(
              tf.raw_ops.LookupTableFindV2(
                  table_handle=table,
                  keys=keys[2:],
                  default_value=tf.constant(_NO_FINGERPRINT, tf.int64))[0])
      self._fingerprint = fingerprint
      self._mark_ops = marks
      self._generation_mark_ops = generation_marks
      self._identity_mark_ops = identity_marks
      self._counts = (tf.stack(counts) if counts else tf.zeros([0],
                                                                  tf.int64))
      if counts:
        self._generations = tf.stack(generations)
        self._set_up = tf.logical_and(
            tf.equal(tf.stack(counts), ps_num),
            tf.equal(self._generations, tf.reduce_max(self._generations)))
        if fingerprint:
          found = tf.stack(self._fingerprints)
          self._set_up = tf.logical_and(
              self._set_up,
              tf.logical_or(tf.equal(found, fingerprint),
                            tf.equal(found, _NO_FINGERPRINT)))
      else:
        self._generations = tf.zeros([0], tf.int64)
        self._set_up = tf.zeros([0], tf.bool)
      self._task_names = [
          f"/job:{utils.PS_JOB_NAME}/task:{i}" for i in range(ps_num)
      ]
      tasks = tf.constant(self._task_names, dtype=tf.string)
      self._report = tf.boolean_mask(tasks, tf.logical_not(self._set_up))
    # The tasks every look in the session being set up found not set up
    # (None: no look yet), and that session (weakly: a creation that failed
    # after a look leaves its session behind, and the next one's looks
    # start over). Each restorer looks once and restores what it found, so
    # only these were restored by all of them.
    self._seen_by_every_look: Optional[Set[int]] = None
    self._looking_session: Optional[weakref.ref] = None
    # Whether the last call in that session was a setup.
    self._set_up_since_look = False

  @property
  def num_ps(self) -> int:
    return self._num_ps

  def uninitialized_ps_tasks(self, sess: tf.compat.v1.Session) -> Set[int]:
    """The indices of the PS tasks not (or no longer) set up."""
    tasks = self._not_set_up(sess)
    if not self._looked_in(sess) or self._set_up_since_look:
      self._seen_by_every_look = None
      self._looking_session = weakref.ref(sess)
      self._set_up_since_look = False
    self._seen_by_every_look = (tasks if self._seen_by_every_look is None
                                else self._seen_by_every_look & tasks)
    return tasks

  def _looked_in(self, sess: tf.compat.v1.Session) -> bool:
    """Whether the looks noted are those of `sess`."""
    return (self._looking_session is not None and
            self._looking_session() is sess)

  def _not_set_up(self, sess: tf.compat.v1.Session) -> Set[int]:
    """The PS tasks not set up for this PS count now (not counted as a
    look)."""
    return self._look(sess)[0]

  def _look(self, sess: tf.compat.v1.Session
           ) -> Tuple[Set[int], int, Set[int]]:
    """`_not_set_up`, the highest generation a task holds, and the tasks
    holding another directory's fingerprint than this monitor's."""
    if not self._num_ps:
      return set(), 0, set()
    set_up, generations, fingerprints = sess.run(
        (self._set_up, self._generations, self._fingerprints))
    return ({i for i, up in enumerate(set_up) if not up},
            int(max(generations)),
            {i for i, f in enumerate(fingerprints) if f != self._fingerprint})

  def is_ps_uninitialized(self, sess: tf.compat.v1.Session,
                          device: str) -> bool:
    """Whether what lives on `device` must be restored.

    True for a PS task that is not set up, and for any device that is not
    one of the monitored PS tasks: a worker's own tables are restored with
    every new session, as the original does, also where they survived in
    the worker's server (they roll back to the checkpoint).
    """
    return self.needs_restore(device, self.uninitialized_ps_tasks(sess))

  def needs_restore(self, device: str, uninitialized: Set[int]) -> bool:
    """Whether `device` must be restored, given `uninitialized_ps_tasks`."""
    task = utils.ps_task_of_device(device)
    return task is None or task >= self._num_ps or task in uninitialized

  def setup_ps_initialized_state(self, sess: tf.compat.v1.Session) -> None:
    """Marks the PS tasks set up. Call it once all of them are restored.

    Only tasks that every look since the last setup found not set up are
    marked (each restorer restored those); a setup again with no look
    since (the saver hook's, after another hook's and a save) marks none.
    A task that restarted after some restorer looked (its state is gone,
    and not all of it was restored) is left unmarked and the session setup
    fails with `AbortedError`, which `MonitoredSession` (and
    `local_cluster`) answer by setting the session up again, restoring that
    task.

    Raises:
      tf.errors.AbortedError: a PS task restarted during the setup.
    """
    seen = self._seen_by_every_look if self._looked_in(sess) else None
    # A setup again in this session with no look since (another hook's,
    # after a save) follows no restore: a task lost meanwhile was not
    # restored. A look starts a new round.
    self._seen_by_every_look = set()
    self._looking_session = weakref.ref(sess)
    self._set_up_since_look = True
    uninitialized, generation, other_directory = self._look(sess)
    if not uninitialized:
      # Every task holds this job's count and the highest generation: a new
      # one would only risk a write that reaches some tasks and not others
      # (which would then look out of date). Tasks set up before
      # fingerprints (or, for a monitor without a directory, for one) take
      # this job's.
      if other_directory:
        sess.run([self._identity_mark_ops[i] for i in sorted(other_directory)])
      return
    restored = uninitialized if seen is None else uninitialized & seen
    # Every task of the job gets the new generation; only those restored
    # get the count too.
    marks = [
        self._mark_ops[i] if i in restored else self._generation_mark_ops[i]
        for i in range(self._num_ps)
        if i in restored or i not in uninitialized
    ]
    if marks:
      sess.run(marks, {self._new_generation: generation + 1})
    restarted = sorted(uninitialized - restored)
    if restarted:
      names = ", ".join(self._task_names[i] for i in restarted)
      raise tf.errors.AbortedError(
          None, None,
          f"{names} restarted while the session was being set up, after a "
          "restorer had looked for PS tasks to restore: not marked set up; "
          "the session must be set up again to restore it")

  def set_up_counts(self, sess: tf.compat.v1.Session) -> List[int]:
    """The PS count each task was last set up for (0: none since it
    started), by task: a count other than `num_ps` on tasks the chief set
    up says the chief's cluster lists another number of PS tasks."""
    return [int(c) for c in sess.run(self._counts)]

  def report_uninitialized_ps(self) -> tf.Tensor:
    """A string vector of the PS tasks not set up, for a `ready_op`.

    E.g. ["/job:ps/task:1"]; empty when every task is set up, so workers
    can wait on it for the chief's restore.
    """
    return self._report


# PartialRecoverySaver's timeout_secs.
_SAVER_TIMEOUT_SECS = 60 * 60


class _SessionWithRunOptions(session_lib.SessionInterface):
  """A session whose runs without options of their own take `options`
  (a Saver's take none)."""

  def __init__(self, sess: session_lib.SessionInterface,
               options: tf.compat.v1.RunOptions):
    self._sess = sess
    self._options = options

  @property
  def graph(self) -> tf.Graph:
    return self._sess.graph

  @property
  def sess_str(self) -> str:
    return self._sess.sess_str

  def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
    return self._sess.run(fetches, feed_dict,
                          options if options is not None else self._options,
                          run_metadata)

  def partial_run_setup(self, fetches, feeds=None):
    return self._sess.partial_run_setup(fetches, feeds)

  def partial_run(self, handle, fetches, feed_dict=None):
    return self._sess.partial_run(handle, fetches, feed_dict)


class _PerDeviceRestoreBuilder(saver_lib.BulkSaverBuilder):
  """A saver builder that keeps each device's restore op apart."""

  def __init__(self):
    super().__init__()
    self.restore_ops_per_device = {}

  def _AddShardedRestoreOps(self, filename_tensor, per_device,
                            restore_sequentially, reshape):
    # As BulkSaverBuilder's, recording the op of each device.
    for shard, (device, saveables) in enumerate(per_device):
      with tf.device(device):
        self.restore_ops_per_device[device] = self._AddRestoreOps(
            filename_tensor, saveables, restore_sequentially, reshape,
            preferred_shard=shard, name="restore_shard")
    return tf.group(*self.restore_ops_per_device.values(), name="restore_all")


class PartialRecoverySaver(tf.compat.v1.train.Saver):
  """A sharded Saver whose restore skips the PS tasks that kept their state.

  With a `ps_monitor`, `restore` restores the variables of the PS tasks
  the monitor reports uninitialized, and of every device off the PS job;
  variables of PS tasks that kept running are left as they are. Without
  one it restores everything, as `tf.compat.v1.train.Saver`. Saving is the
  Saver's own, and so is the checkpoint format.

  Args:
    *args, **kwargs: as `tf.compat.v1.train.Saver`; `sharded` must stay
      True (one restore op per device) and `builder` is not accepted.
    ps_monitor: the job's `PsMonitor`, or None.
    timeout_secs: the deadline of each `session.run` of a save or restore
      (default an hour, as the tables' listeners; None: none in practice,
      `checkpoint_run_options`), in place of the session's
      operation_timeout_in_ms, which a large model's save on a remote file
      system may well exceed.

  Raises:
    ValueError: `sharded` False, a `builder`, or a bad `timeout_secs`.
  """

  def __init__(self,
               *args,
               ps_monitor: Optional[PsMonitor] = None,
               timeout_secs: Optional[float] = _SAVER_TIMEOUT_SECS,
               **kwargs):
    # By name, whether given by position or keyword (sharded is the
    # Saver's third parameter, builder its ninth).
    arguments = inspect.signature(tf.compat.v1.train.Saver.__init__).bind(
        self, *args, **kwargs).arguments
    del arguments["self"]
    if "builder" in arguments:
      raise ValueError("PartialRecoverySaver builds its own saver builder")
    if not arguments.setdefault("sharded", True):
      raise ValueError("PartialRecoverySaver needs sharded=True: it restores "
                       "each device's variables on their own")
    self._ps_monitor = ps_monitor
    self._run_options = checkpoint_run_options(timeout_secs)
    self._restore_builder = _PerDeviceRestoreBuilder()
    arguments["builder"] = self._restore_builder
    super().__init__(**arguments)

  def save(self, sess: tf.compat.v1.Session, *args, **kwargs) -> str:
    """`tf.compat.v1.train.Saver.save`, its runs under `timeout_secs`."""
    return super().save(_SessionWithRunOptions(sess, self._run_options),
                        *args, **kwargs)

  def restore(self, sess: tf.compat.v1.Session, save_path: str) -> None:
    """Restores the variables of the devices that lost them.

    Args:
      sess: the session to restore in.
      save_path: the checkpoint prefix.

    Raises:
      ValueError: save_path is None or not a checkpoint.
      tf.errors.OpError: as `tf.compat.v1.train.Saver.restore`; with a
        monitor, a NotFoundError or InvalidArgumentError names the likely
        causes as the Saver's does (but an object-based checkpoint is not
        read by name here: the Saver's fallback restores every device).
    """
    timed = _SessionWithRunOptions(sess, self._run_options)
    per_device = self._restore_builder.restore_ops_per_device
    if self._ps_monitor is None or not per_device:
      super().restore(timed, save_path)
      return
    if save_path is None:
      raise ValueError("Can't load save_path when it is None.")
    if not tf.compat.v1.train.checkpoint_exists(save_path):
      raise ValueError(
          f"The passed save_path is not a valid checkpoint: {save_path}")
    # The caller's session, not the timed one: the monitor tells a setup's
    # looks by the session they ran in.
    uninitialized = self._ps_monitor.uninitialized_ps_tasks(sess)
    restore_ops = []
    kept = []
    for device, restore_op in sorted(per_device.items()):
      if self._ps_monitor.needs_restore(device, uninitialized):
        restore_ops.append(restore_op)
      else:
        kept.append(device)
    logging.info("Restoring the variables of %d device(s) from %s; %s kept "
                 "their state.", len(restore_ops), save_path,
                 ", ".join(kept) or "no PS task")
    # With the causes named, as the Saver's own restore names them.
    try:
      timed.run(restore_ops, {self.saver_def.filename_tensor_name: save_path})
    except tf.errors.NotFoundError as e:
      raise tf.errors.NotFoundError(
          e.node_def, e.op,
          f"Restoring from checkpoint {save_path} failed: a variable or "
          "other graph key is most likely missing from it, or it was "
          "written object-based (tf.train.Checkpoint), which a partial "
          f"restore does not read. Original error: {e.message}") from e
    except tf.errors.InvalidArgumentError as e:
      raise tf.errors.InvalidArgumentError(
          e.node_def, e.op,
          f"Restoring from checkpoint {save_path} failed: the graph does not "
          "match the one it was saved from (a variable's shape or dtype). "
          f"Original error: {e.message}") from e

  def setup_ps_initialized_state(self, sess: tf.compat.v1.Session) -> None:
    """Marks every PS task set up (see `PsMonitor`), where there is a monitor.

    `NoFirstSaveCheckpointSaverHook` calls it once its session is created,
    as the original's did.
    """
    if self._ps_monitor is not None:
      self._ps_monitor.setup_ps_initialized_state(sess)


def check_restorer_hooks_ran(session: tf.compat.v1.Session,
                             hook_name: str,
                             registered_before: Iterable[object] = ()) -> None:
  """Raises unless the restorer hooks of the session being created ran.

  Args:
    session: the session being created.
    hook_name: the hook that must run after them, for the error.
    registered_before: `basic_restore_hook.restorer_registrations()` as
      the calling hook's begin() found them: restorer hooks of an earlier
      session creation of the graph that failed are not waited for.

  Raises:
    RuntimeError: a CheckpointRestorerHook of the MonitoredSession being
      created has not run its listeners yet: it is listed after
      `hook_name`.
  """
  if basic_restore_hook.pending_restorer_hooks(session.graph,
                                              registered_before):
    raise RuntimeError(
        f"{hook_name} runs before a CheckpointRestorerHook: list it after "
        "the hooks that restore tables (MonitoredTrainingSession runs "
        "chief_only_hooks first: pass both in the same list, the restorer "
        "first). Otherwise it would save or mark PS tasks set up before "
        "their tables are restored.")


class PsInitializedStateHook(tf.compat.v1.train.SessionRunHook):
  """Marks every PS task set up once the session is created and restored.

  List it after the hooks that restore (e.g. a `CheckpointRestorerHook`
  with `MultiHashTableCheckpointRestorerListener(basename, ps_monitor)`):
  hooks' `after_create_session` run in order, and it raises a RuntimeError
  if a restorer hook of its MonitoredSession (one whose begin() ran after
  its own) has not run yet.

  Args:
    ps_monitor: the job's `PsMonitor`.
  """

  def __init__(self, ps_monitor: PsMonitor):
    self._ps_monitor = ps_monitor
    self._restorers_before = frozenset()

  def begin(self) -> None:
    self._restorers_before = basic_restore_hook.restorer_registrations()

  def after_create_session(self, session: tf.compat.v1.Session,
                           coord: Optional[tf.train.Coordinator]) -> None:
    del coord  # Unused.
    check_restorer_hooks_ran(session, "PsInitializedStateHook",
                             self._restorers_before)
    # Not a look: after the saver hook's setup (listed before this hook), a
    # look would start a new round and mark a task lost meanwhile.
    uninitialized = self._ps_monitor._not_set_up(session)  # pylint: disable=protected-access
    if uninitialized:
      logging.info("PS tasks %s are set up.", sorted(uninitialized))
    self._ps_monitor.setup_ps_initialized_state(session)


def _same_checkpoint(a: Optional[str], b: str) -> bool:
  """Whether two checkpoint prefixes name the same checkpoint: one name in
  one directory (`_same_dir`: the checkpoint state may hold absolute paths
  for a relative model dir)."""
  return (a is not None and os.path.basename(a) == os.path.basename(b) and
          _same_dir(os.path.dirname(a), os.path.dirname(b)))


class NoFirstSaveCheckpointSaverHook(tf.compat.v1.train.CheckpointSaverHook):
  """A `CheckpointSaverHook` that does not save again a step it restored.

  TF's hook saves when a session is created, at its global step. After a
  restart that step is the restored checkpoint's, so the save rewrites that
  checkpoint in place: the TF variables and, through the listeners, every
  PS's table files under the same names (in the new PS layout after a
  restore into another number of PS). A save that fails on some PS then
  leaves the latest checkpoint mixing two layouts, and the older copy is
  gone. This hook (the original Monolith's name and arguments) skips that
  save when this step's checkpoint under its basename is the one the
  session started from (the latest, or an older one the state lists,
  rolled back to: see `restored_checkpoint`), or when that one holds this
  step (with several workers a checkpoint holds a later step than the
  one it is named by). Unlike the original's, which skipped the first
  save always, a fresh job still saves its step 0: a PS task lost before
  the first periodic save is then restored from it instead of every
  task's variables being initialized again.

  Args:
    checkpoint_dir ... save_graph_def: as `CheckpointSaverHook`'s.
    tide_start_hour, tide_start_minute, tide_end_hour, tide_end_minute,
      tide_save_secs, is_dense_only: the original's save schedules, not
      supported here: a ValueError where the original would have used one
      (start hour, end hour and tide_save_secs all set, or is_dense_only).
    ignore_save_errors: whether a save that fails (a TF `OpError`) is logged
      and training goes on without that checkpoint, rather than raising.
      (The original tried such a save twice; here it is tried once.)
    use_native_multi_hash_table: accepted for the original's callers; it
      only chose the table type its checkpoint state file recorded.
    no_first_save: False saves at session creation as TF's hook does, also
      over the checkpoint the session started from.
    guard_saver_listeners: `CheckpointSaverListener`s called around every
      save (`before_save` first, `after_save` last, in reverse order) even
      when it fails; their own errors are logged, not raised. Those with
      `begin` and `end` have them called as TF's hook calls its
      listeners' (`end` even when the last save fails; an error in
      `begin` is raised). The tables' and filters' saver listeners are
      refused here (TypeError): they go in `listeners`.

  With a `PartialRecoverySaver`, it also marks every PS task set up once the
  session is created (`setup_ps_initialized_state`), as the original's
  hook did. List it after the hooks that restore, whose
  `after_create_session` must run first (its save at session creation must
  not save tables not restored yet): it raises a RuntimeError if a
  `CheckpointRestorerHook` of its MonitoredSession (one whose begin() ran
  after its own) has not run yet.

  Threads sharing one `MonitoredSession` may call `after_run` at once (as
  the original allowed): one at a time checks the schedule and saves, so a
  step is saved once.
  """

  def __init__(self,
               checkpoint_dir: str,
               save_secs: Optional[float] = None,
               save_steps: Optional[int] = None,
               saver: Optional[tf.compat.v1.train.Saver] = None,
               checkpoint_basename: str = "model.ckpt",
               scaffold: Optional[tf.compat.v1.train.Scaffold] = None,
               listeners: Optional[Sequence[
                   tf.compat.v1.train.CheckpointSaverListener]] = None,
               save_graph_def: bool = True,
               tide_start_hour: Optional[int] = None,
               tide_start_minute: Optional[int] = None,
               tide_end_hour: Optional[int] = None,
               tide_end_minute: Optional[int] = None,
               tide_save_secs: Optional[float] = None,
               ignore_save_errors: bool = False,
               is_dense_only: bool = False,
               use_native_multi_hash_table: bool = False,
               no_first_save: bool = True,
               guard_saver_listeners: Optional[Sequence[
                   tf.compat.v1.train.CheckpointSaverListener]] = None):
    # The original's tide schedule took effect with these three set.
    tide = (tide_start_hour, tide_end_hour, tide_save_secs)
    if all(value is not None for value in tide) or is_dense_only:
      raise ValueError(
          "NoFirstSaveCheckpointSaverHook: the original's tide-hour "
          f"(tide_start_hour, tide_end_hour, tide_save_secs = {tide}) and "
          f"dense-only (is_dense_only={is_dense_only}) save schedules are "
          "not supported here; use save_secs or save_steps")
    del tide_start_minute, tide_end_minute  # Parts of a schedule not used.
    del use_native_multi_hash_table  # No checkpoint state file here.
    super().__init__(checkpoint_dir,
                     save_secs=save_secs,
                     save_steps=save_steps,
                     saver=saver,
                     checkpoint_basename=checkpoint_basename,
                     scaffold=scaffold,
                     listeners=listeners,
                     save_graph_def=save_graph_def)
    self._ignore_save_errors = ignore_save_errors
    self._no_first_save = no_first_save
    self._guard_saver_listeners = list(guard_saver_listeners or [])
    basic_restore_hook.check_listeners(
        list(listeners or []), "NoFirstSaveCheckpointSaverHook listeners",
        ("begin", "before_save", "after_save", "end"),
        "a CheckpointRestorerHook's listeners")
    # Guards need only what the original called.
    basic_restore_hook.check_listeners(
        self._guard_saver_listeners,
        "NoFirstSaveCheckpointSaverHook guard_saver_listeners",
        ("before_save", "after_save"), "a CheckpointRestorerHook's listeners")
    for i, guard in enumerate(self._guard_saver_listeners):
      if getattr(guard, "saves_checkpoint_files", False):
        raise TypeError(
            f"NoFirstSaveCheckpointSaverHook guard_saver_listeners[{i}] is a "
            f"{type(guard).__name__}, which saves files of the checkpoint: "
            "pass it in listeners (a guard's after_save runs after a failed "
            "save too, and its clean-up would delete what completes a save "
            "interrupted while renaming)")
    self._creating_session = False
    self._marked_at_creation = False
    self._restorers_before = frozenset()
    # TF's after_run checks the schedule, then notes the step as saved:
    # two threads between the two both saved the step, into one temporary.
    self._after_run_lock = threading.Lock()

  def begin(self) -> None:
    self._restorers_before = basic_restore_hook.restorer_registrations()
    super().begin()
    # As TF's hook does for its listeners (one may build ops there); an
    # error here is raised: the graph is being built.
    for listener in self._guard_saver_listeners:
      if hasattr(listener, "begin"):
        listener.begin()

  def after_run(self, run_context: tf.compat.v1.train.SessionRunContext,
                run_values: tf.compat.v1.train.SessionRunValues) -> None:
    with self._after_run_lock:
      super().after_run(run_context, run_values)

  def end(self, session: tf.compat.v1.Session) -> None:
    try:
      super().end(session)  # the last save, then the listeners' end
    finally:
      self._end_guard_listeners(session)

  def _end_guard_listeners(self, session: tf.compat.v1.Session) -> None:
    guards = [l for l in self._guard_saver_listeners if hasattr(l, "end")]
    if not guards:
      return
    try:
      last_step = session.run(self._global_step_tensor)
    except tf.errors.OpError as e:
      logging.error("Not ending the guard listeners: the global step cannot "
                    "be read: %s", e)
      return
    for listener in guards:
      try:
        listener.end(session, last_step)
      except Exception:  # pylint: disable=broad-except
        # As around saves: these listeners must not stop the hook.
        logging.exception("%s.end at step %d failed",
                          type(listener).__name__, last_step)

  def after_create_session(self, session: tf.compat.v1.Session,
                           coord: tf.train.Coordinator) -> None:
    check_restorer_hooks_ran(session, "NoFirstSaveCheckpointSaverHook",
                             self._restorers_before)
    self._creating_session = True
    self._marked_at_creation = False
    try:
      super().after_create_session(session, coord)
    finally:
      self._creating_session = False
    if not self._marked_at_creation:  # TF's hook saved nothing through _save
      self._mark_ps_set_up(session)

  def _mark_ps_set_up(self, session: tf.compat.v1.Session) -> None:
    saver = self._get_saver()
    if isinstance(saver, PartialRecoverySaver):
      saver.setup_ps_initialized_state(session)
    self._marked_at_creation = True

  def _save(self, session: tf.compat.v1.Session, step: int) -> bool:
    # TF's hook saves through _save (after_create_session, after_run, end).
    prefix = f"{self._save_path}-{step}"
    if self._creating_session:
      # The latest or, rolled back, an older one: not saved again, nor
      # over another (with several workers the restored checkpoint holds
      # a later step than its name, the step of this save).
      if self._no_first_save:
        restored, holds_step = _restored_checkpoint(session,
                                                    self._checkpoint_dir, None)
        # The checkpoint restored holds the session's global step, this
        # save's.
        if holds_step or _same_checkpoint(restored, prefix):
          logging.info("Not saving %s: the session starts from %s.", prefix,
                       restored)
          self._mark_ps_set_up(session)
          return False
      # The PS tasks are marked set up once the step is read and the save
      # decided (workers wait for the mark: a step trained before would
      # change both), and before the save (after a PS task restored
      # mid-training, a step no checkpoint holds), which workers need not
      # wait for: after a large model's save the mark came minutes later.
      self._mark_ps_set_up(session)
    self._call_guard_listeners("before_save", session, step)
    try:
      return super()._save(session, step)
    except tf.errors.OpError as e:
      if not self._ignore_save_errors:
        raise
      logging.error("Saving %s failed; training goes on without it "
                    "(ignore_save_errors): %s", prefix, e)
      return False
    finally:
      self._call_guard_listeners("after_save", session, step)

  def _call_guard_listeners(self, method: str, session: tf.compat.v1.Session,
                            step: int) -> None:
    listeners = self._guard_saver_listeners
    for listener in (listeners if method == "before_save" else
                     reversed(listeners)):
      try:
        getattr(listener, method)(session, step)
      except Exception:  # pylint: disable=broad-except
        # As the original: these listeners must not stop a save.
        logging.exception("%s.%s at step %d failed", type(listener).__name__,
                          method, step)
