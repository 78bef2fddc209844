"""Checkpoint path helpers for saver and restorer listeners.

A checkpoint saved by `tf.compat.v1.train.Saver` under the basename
`<model_dir>/model.ckpt` at global step N has the prefix
`<model_dir>/model.ckpt-N`. Data that is not part of the TF checkpoint (hash
table dumps) goes to the prefix's asset directory `<prefix>.assets/`, and
per-step metadata to `<model_dir>/ckpt.info-N`, so that it is kept and
deleted together with the checkpoint it belongs to.

The Saver deletes only its own files (`.index`, `.data-*`, `.meta`) when
`max_to_keep` drops a checkpoint; `SaveHelper.delete_stale_checkpoint_files`,
called after every save, deletes what is left of the dropped ones:

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
  in-progress save) of any other basename.
* Never stale: the step being saved, and every step the state file still
  lists.

Other names are never touched: checkpoints without a step, other basenames'
files and asset directories, temporary files.
"""

import os
import re
from typing import List, NamedTuple, Optional, Set, Tuple

from absl import logging
import tensorflow as tf

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


class SaveHelper:
  """Checkpoint paths for one checkpoint basename.

  Args:
    basename: the checkpoint basename given to the saver, e.g.
      "/path/to/model_dir/model.ckpt".
  """

  def __init__(self, basename: str):
    if not basename:
      raise ValueError("basename must be a non-empty path")
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
    """
    ckpt_state = tf.train.get_checkpoint_state(os.path.dirname(self._basename))
    if ckpt_state is None:
      return set()
    return {
        self.get_global_step_value(path)
        for path in ckpt_state.all_model_checkpoint_paths
    }

  def get_stale_checkpoint_files(
      self, global_step_value: int) -> StaleCheckpointFiles:
    """Asset directories and ckpt.info files of deleted checkpoints.

    See the module docstring for the rule. Call it after the Saver saved
    (and pruned) the checkpoint of `global_step_value`, whose files are
    never stale.
    """
    ckpt_dir = os.path.dirname(self._basename)
    own_base = os.path.basename(self._basename)
    try:
      # Object stores list directories with a trailing "/".
      names = [name.rstrip("/") for name in tf.io.gfile.listdir(ckpt_dir)]
    except tf.errors.NotFoundError:
      return StaleCheckpointFiles([], [])
    own_ckpt_steps = set()  # this basename's restorable TF checkpoints
    other_ckpt_steps = set()  # anything of any other basename
    own_asset_dirs = []  # (step, name)
    info_files = []  # (step, name)
    for name in names:
      if name.startswith(CKPT_INFO_PREFIX):
        step = name[len(CKPT_INFO_PREFIX):]
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
      elif _is_restorable_suffix(suffix):
        own_ckpt_steps.add(step)
    kept_steps = own_ckpt_steps | self.get_existing_checkpoint_steps()
    kept_steps.add(global_step_value)
    return StaleCheckpointFiles(
        asset_dirs=[
            os.path.join(ckpt_dir, name)
            for step, name in sorted(own_asset_dirs)
            if step not in kept_steps
        ],
        info_files=[
            os.path.join(ckpt_dir, name)
            for step, name in sorted(info_files)
            if step not in kept_steps and step not in other_ckpt_steps
        ])

  def delete_stale_checkpoint_files(self, global_step_value: int) -> List[str]:
    """Deletes what get_stale_checkpoint_files lists; returns what it deleted.

    A path that another process deleted first is skipped; any other failure
    is logged and skipped, so that cleaning up never stops training.
    """
    stale = self.get_stale_checkpoint_files(global_step_value)
    deleted = []
    for path, delete in ([(p, tf.io.gfile.rmtree) for p in stale.asset_dirs] +
                         [(p, tf.io.gfile.remove) for p in stale.info_files]):
      try:
        delete(path)
      except tf.errors.NotFoundError:
        logging.info("%s was already deleted.", path)
        continue
      except tf.errors.OpError as e:
        logging.warning("Could not delete %s of a deleted checkpoint: %s",
                        path, e)
        continue
      deleted.append(path)
      logging.info("Deleted %s: its checkpoint is gone.", path)
    return deleted
