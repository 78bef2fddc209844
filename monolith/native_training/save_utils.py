"""Checkpoint path helpers for saver and restorer listeners.

A checkpoint saved by `tf.compat.v1.train.Saver` under the basename
`<model_dir>/model.ckpt` at global step N has the prefix
`<model_dir>/model.ckpt-N`. Data that is not part of the TF checkpoint (hash
table dumps) goes to the prefix's asset directory `<prefix>.assets/`, so that
it is kept and deleted together with the checkpoint it belongs to.
"""

import os
from typing import Set

import tensorflow as tf


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
    return ckpt_prefix + ".assets/"

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
