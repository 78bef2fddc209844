"""Hash filters: which new ids the embedding tables admit.

A hash filter is a TF resource passed to a table when it is created
(`MultiHashTable.from_configs(..., hash_filter=...)`, one per PS with
`create_hash_filters(ps_num, ...)`). Updates of the table (assign,
assign_add, apply_gradients, fused or not) consult it before creating an id:
an id the table holds is always written; a new one is counted and written
once the filter admits it; lookups never consult it. The per-slot
occurrence thresholds come from a serialized `SlotOccurrenceThresholdConfig`
(`config`; slot = bits 48..62 of the id; 0: no filtering).

* `create_hash_filter(capacity, split_num)`: the sliding counting filter
  (`FilterType.SLIDING_HASH_FILTER`): 4-bit counts, so thresholds above 15
  are rejected when the filter is created (the original never admitted
  anything there). About 2.8 bytes per id of capacity at split_num 7.
* `create_probabilistic_filter(equal_probability)`: no state; a new id seen
  n times is admitted with probability n / threshold (or 1 - (1 - p)^n,
  p = 1 - 0.05^(1 / threshold), with equal_probability).
* `create_dummy_hash_filter()`: admits everything.

Saves (`save_hash_filter`, `HashFilterCheckpointSaverListener`) write the
original's files, `<asset dir>hash_filter_<ps>-SSSSS-of-NNNNN`, one per
split, all renamed into place once complete; restores check them (a missing
or damaged file is an error naming it, never an empty filter). Dummy and
probabilistic filters save nothing.
"""

import contextlib
import os
import re
from typing import Any, Dict, List, Optional, Union

from absl import logging
from google.protobuf import message
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops

from monolith.native_training import basic_restore_hook
from monolith.native_training import graph_meta
from monolith.native_training import save_utils
from monolith.native_training import utils
from monolith.native_training.model_export import export_context
from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2
from monolith.native_training.runtime.ops import gen_monolith_ops

HASH_FILTER_CAPACITY = 300000000
HASH_FILTER_SPLIT_NUM = 7

# The original's names for the op module.
filter_ops = gen_monolith_ops
filter_save_op = gen_monolith_ops
filter_restore_op = gen_monolith_ops

# The deadline of a save or restore run, as the original's; the listeners'
# timeout_secs.
_TIMEOUT_SECS = 30 * 60


class FilterType(object):
  """The kinds of filter `create_hash_filters` builds."""
  SLIDING_HASH_FILTER = "sliding_hash_filter"
  PROBABILISTIC_FILTER = "probabilistic_filter"
  NO_FILTER = "no_filter"


def _serialized(config: Any) -> bytes:
  """A filter's config attr: a SlotOccurrenceThresholdConfig, serialized
  (bytes) as the original took it, or the message itself."""
  if isinstance(config, message.Message):
    expected = embedding_hash_table_pb2.SlotOccurrenceThresholdConfig
    if config.DESCRIPTOR.full_name != expected.DESCRIPTOR.full_name:
      raise TypeError(f"config must be a {expected.DESCRIPTOR.full_name}, "
                      f"got {config.DESCRIPTOR.full_name}")
    return config.SerializeToString()
  return config


def create_hash_filter(capacity: int,
                       split_num: int,
                       config: bytes = b"",
                       name_suffix: str = "") -> tf.Tensor:
  """A sliding counting filter for about `capacity` ids in `split_num` splits.

  Args:
    capacity: ids the filter is sized for, > 0.
    split_num: splits of the sliding filter, >= 3 (the oldest is dropped
      when the newest fills).
    config: a SlotOccurrenceThresholdConfig, serialized or not; thresholds
      must be 0 to 15 (checked at creation).
    name_suffix: appended to the shared name "MonolithHashFilter".

  Returns:
    The filter's resource handle.
  """
  return gen_monolith_ops.monolith_hash_filter(
      capacity=capacity,
      split_num=split_num,
      config=_serialized(config),
      shared_name="MonolithHashFilter" + name_suffix)


def create_probabilistic_filter(equal_probability: bool,
                                config: bytes = b"",
                                name_suffix: str = "") -> tf.Tensor:
  """A stateless filter that admits new ids at random (see module doc);
  `config` as `create_hash_filter`'s."""
  return gen_monolith_ops.monolith_probabilistic_filter(
      equal_probability=equal_probability,
      config=_serialized(config),
      shared_name="MonolithProbabilisticFilter" + name_suffix)


def create_dummy_hash_filter(name_suffix: str = "0") -> tf.Tensor:
  """A filter that admits every id."""
  return gen_monolith_ops.monolith_dummy_hash_filter(
      shared_name="DummyHashFilter" + name_suffix)


def _flag(name: str, value: Any) -> bool:
  """|value| of the switch argument |name|, which must be a bool.

  The original tests `is True`, so a truthy non-bool (e.g. the string
  "False" from a config) silently meant "off" there and "on" in a truth
  test: both are refused.
  """
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  raise TypeError(f"{name} must be a bool, got {type(value).__name__} "
                  f"{value!r}")


def _saves_and_restores(enable_hash_filter: Any,
                        enable_save_restore: Any) -> bool:
  """Whether the filter listeners act; both switches checked (`_flag`)."""
  enabled = _flag("enable_hash_filter", enable_hash_filter)
  return _flag("enable_save_restore", enable_save_restore) and enabled


def _create_hash_filter(
    enable_hash_filter: bool,
    config: bytes = b"",
    name_suffix: str = "",
    filter_capacity: int = HASH_FILTER_CAPACITY,
    filter_split_num: int = HASH_FILTER_SPLIT_NUM,
    filter_equal_probability: bool = False,
    filter_type: str = FilterType.SLIDING_HASH_FILTER) -> tf.Tensor:
  # A serving graph admits every id it is given: a counting filter there
  # would only allocate its cells (about 840 MB at the default capacity)
  # at every load of the model, as the original's exports did not.
  if (not _flag("enable_hash_filter", enable_hash_filter) or
      export_context.is_exporting()):
    return create_dummy_hash_filter(name_suffix)
  if filter_type == FilterType.SLIDING_HASH_FILTER:
    return create_hash_filter(filter_capacity, filter_split_num, config,
                              name_suffix)
  if filter_type == FilterType.PROBABILISTIC_FILTER:
    return create_probabilistic_filter(filter_equal_probability, config,
                                       name_suffix)
  if filter_type == FilterType.NO_FILTER:
    return create_dummy_hash_filter(name_suffix)
  raise ValueError(f"Unknown filter_type {filter_type!r}; use one of "
                   f"FilterType.SLIDING_HASH_FILTER, PROBABILISTIC_FILTER, "
                   f"NO_FILTER")


def create_hash_filters(
    ps_num: int,
    enable_hash_filter: bool,
    config: bytes = b"",
    filter_capacity: int = HASH_FILTER_CAPACITY,
    filter_split_num: int = HASH_FILTER_SPLIT_NUM,
    filter_equal_probability: bool = False,
    filter_type: str = FilterType.SLIDING_HASH_FILTER) -> List[tf.Tensor]:
  """One filter per PS task (on its device), or one local filter.

  Args:
    ps_num: PS tasks; 0 builds one filter where the caller places it.
    enable_hash_filter: False builds dummy filters, and so does export
      mode (`export_context.enter_export_mode`: serving admits every id).
    config, filter_capacity, filter_split_num, filter_equal_probability,
      filter_type: as `create_hash_filter` / `create_probabilistic_filter`.

  Returns:
    max(ps_num, 1) filter handles; PS i's is named with suffix "_<i>".
  """
  ps_num = utils.check_count(ps_num, "ps_num")
  logging.info("Creating hash filters, enable_hash_filter: %s.",
               enable_hash_filter)
  kwargs = dict(filter_capacity=filter_capacity,
                filter_split_num=filter_split_num,
                filter_equal_probability=filter_equal_probability,
                filter_type=filter_type)
  if ps_num == 0:
    return [_create_hash_filter(enable_hash_filter, config, "", **kwargs)]
  filters = []
  for i in range(ps_num):
    # A standalone export keeps everything on one device.
    with (contextlib.nullcontext() if export_context.is_exporting_standalone()
          else tf.device(utils.ps_device(i))):
      filters.append(
          _create_hash_filter(enable_hash_filter, config, f"_{i}", **kwargs))
  return filters


def filter_stats(hash_filter: tf.Tensor) -> Dict[str, tf.Tensor]:
  """The filter's figures now, for watching admission in a long run.

  Args:
    hash_filter: a filter's handle (read on its task).

  Returns:
    int64 scalars: "capacity" (the ids it is sized for; 0 for stateless
    filters), "estimated_elements" (its occupied cells over the splits: an
    id seen again after the newest split moved on holds one in each, so it
    can pass the distinct ids, and capacity),
    "failures" (ids it could not place, each admitted as if past its
    threshold: a count that keeps growing says the filter is too small for
    its traffic and filters less) and "memory_bytes" (its counting cells).
  """
  capacity, elements, failures, memory_bytes = (
      gen_monolith_ops.monolith_hash_filter_stats(hash_filter))
  return {"capacity": capacity, "estimated_elements": elements,
          "failures": failures, "memory_bytes": memory_bytes}


def save_hash_filter(
    hash_filter: tf.Tensor,
    hash_filter_basename: tf.Tensor,
    enable_hash_filter: bool = False) -> Union[tf.Tensor, tf.Operation]:
  """Saves a filter to "<basename>-SSSSS-of-NNNNN".

  Returns, as the original, the filter's handle once saved (a no-op when
  disabled).
  """
  if not _flag("enable_hash_filter", enable_hash_filter):
    return tf.no_op()
  return gen_monolith_ops.monolith_hash_filter_save(hash_filter,
                                                     hash_filter_basename)


def clear_hash_filter(hash_filter: tf.Tensor) -> tf.Tensor:
  """Forgets every count of the filter, as a restart would (ours).

  Returns the filter's handle once cleared. Stateless filters (dummy,
  probabilistic) have nothing to forget.
  """
  return gen_monolith_ops.monolith_hash_filter_clear(hash_filter)


def restore_hash_filter(
    hash_filter: tf.Tensor,
    hash_filter_base_name: tf.Tensor,
    enable_hash_filter: bool = False) -> Union[tf.Tensor, tf.Operation]:
  """Restores a filter saved by `save_hash_filter`.

  Returns, as the original, the filter's handle once restored (a no-op
  when disabled). The basename argument keeps the original's name
  (`save_hash_filter`'s is `hash_filter_basename`, as there). A save of
  another capacity or split count restores nothing: the filter keeps what
  it holds (empty after a restart), with a warning.
  """
  if not _flag("enable_hash_filter", enable_hash_filter):
    return tf.no_op()
  return gen_monolith_ops.monolith_hash_filter_restore(
      hash_filter, hash_filter_base_name)


def intercept_gradient(filter_tensor: tf.Tensor, ids: tf.Tensor,
                       embeddings: tf.Tensor) -> tf.Tensor:
  """The embeddings unchanged; their gradient is zero for filtered ids.

  Args:
    filter_tensor: the filter handle.
    ids: 1-D int64.
    embeddings: float, as many floats for each id, in the ids' order
      ([len(ids), dim], or e.g. [B, L, dim] of B * L ids, as the original
      reads them; only the number of floats is checked).

  Returns:
    `embeddings`, whose gradient rows of ids the filter keeps out (each id
    counted once more in the backward pass, as the original's) are zeros.
  """
  return gen_monolith_ops.monolith_hash_filter_intercept_gradient(
      filter_handle=filter_tensor, ids=ids, embeddings=embeddings)


@ops.RegisterGradient("MonolithHashFilterInterceptGradient")
def _intercept_gradient_gradient(op: tf.Operation, grad: tf.Tensor):
  filtered = gen_monolith_ops.monolith_hash_filter_intercept_gradient_gradient(
      filter_handle=op.inputs[0], ids=op.inputs[1], grad=grad)
  return None, None, filtered


ops.NotDifferentiable("MonolithHashFilterInterceptGradientGradient")


def _filter_basename(prefix: str, ps_index: int) -> str:
  return f"{prefix}hash_filter_{ps_index}"


def _per_filter_ops(hash_filters: List[tf.Tensor],
                    placeholders: List[tf.Tensor], make_op,
                    enabled: bool) -> List[tf.Operation]:
  """make_op(filter, basename, True) for every filter, on its device.

  Appends each filter's basename placeholder to `placeholders`; none when
  not `enabled`.
  """
  if not enabled:
    return []
  filter_ops = []
  for hash_filter in hash_filters:
    placeholder = tf.compat.v1.placeholder(tf.string, shape=[])
    placeholders.append(placeholder)
    with tf.device(hash_filter.device):
      # The op, not its handle output: nothing to fetch to the client.
      filter_ops.append(make_op(hash_filter, placeholder, True).op)
  return filter_ops


_SAVED_FILTER_RE = re.compile(
    r"hash_filter_(0|[1-9][0-9]*)-[0-9]{5}-of-[0-9]{5}(-tmp-.+)?")


# The ops of filters that count nothing, whose saves write no file.
_STATELESS_FILTER_OPS = ("MonolithProbabilisticFilter",
                         "MonolithDummyHashFilter")


def _counting(hash_filters: List[tf.Tensor]) -> bool:
  """Whether any of the filters counts ids (saves files)."""
  return any(f.op.type not in _STATELESS_FILTER_OPS for f in hash_filters)


# The name of the filters' PS count record (`save_utils.write_ps_count`).
_PS_COUNT_GROUP = "hash_filter"


def _saved_filter_count(prefix: str) -> int:
  """How many PS saved filters as "<prefix>hash_filter_<i>" (0: none
  found). `prefix` is a checkpoint's asset directory (ending in "/"),
  whose saver listener's record decides, or (the original's legacy
  layout) the checkpoint prefix; without a record, the highest PS index
  of the files plus one."""
  directory, name_prefix = os.path.split(prefix)
  if not name_prefix:
    recorded = save_utils.read_ps_count(directory, _PS_COUNT_GROUP)
    if recorded is not None:
      return recorded
  pattern = re.compile(re.escape(name_prefix) + _SAVED_FILTER_RE.pattern)
  indices = save_utils.ps_indices_in(directory, pattern)
  return max(indices) + 1 if indices else 0


def _run_per_filter(session: tf.compat.v1.Session,
                    filter_ops: List[tf.Operation],
                    placeholders: List[tf.Tensor], prefix: str,
                    options: tf.compat.v1.RunOptions,
                    chosen: Optional[List[int]] = None) -> None:
  """Runs `_per_filter_ops`' ops (those `chosen`, default all) with filter
  i's files in `prefix`, under `options`."""
  if chosen is None:
    chosen = list(range(len(filter_ops)))
  session.run([filter_ops[i] for i in chosen],
              feed_dict={
                  placeholders[i]: _filter_basename(prefix, i)
                  for i in chosen
              },
              options=options)


def filter_name(hash_filter: tf.Tensor) -> str:
  """The filter's shared name, or (a handle not made by a filter op) its
  tensor's name."""
  try:
    return hash_filter.op.get_attr("shared_name").decode() or hash_filter.name
  except ValueError:
    return hash_filter.name


def _claim_checkpoint_files(basename: str,
                            hash_filters: List[tf.Tensor]) -> None:
  """Refuses a second saver listener of other filters at `basename` in the
  default graph: files are named by position ("hash_filter_<i>", as the
  original's), so each would overwrite the other's, and a restore would
  hand one group's counts to the other."""
  # In the filters' graph (the default one when there are none).
  with (hash_filters[0].graph.as_default()
        if hash_filters else contextlib.nullcontext()):
    claimed = graph_meta.get_meta("hash_filter_checkpoint_files", dict)
  names = tuple(filter_name(f) for f in hash_filters)
  # One key for every spelling of the path ("m//model.ckpt", relative).
  key = utils.comparable_path(basename)
  if claimed.setdefault(key, names) != names:
    raise ValueError(
        f"another HashFilterCheckpointSaverListener saves other hash filters "
        f"({', '.join(claimed[key])}) at {basename}: filter files are "
        f"named by position (hash_filter_<i>), so the two would overwrite "
        f"each other; pass every filter to one listener")


class HashFilterCheckpointSaverListener(
    tf.compat.v1.train.CheckpointSaverListener):
  """Saves the hash filters beside every checkpoint.

  Filter i goes to "<checkpoint>.assets/hash_filter_<i>-SSSSS-of-NNNNN",
  before the Saver writes the checkpoint (so the checkpoint state names a
  step only once its filters are saved), then records the PS count in
  "hash_filter.num_ps", which restores read (not for stateless filters,
  which save nothing). Files there of filters of PS
  tasks beyond this job's (a save of the same step with more PS) are
  deleted: first when the Saver has not recorded the step, else once this
  save is complete. As the tables' listener, it deletes the asset folders
  of checkpoints the Saver deleted after each save, and those of failed
  saves (no checkpoint of their step) before the next. Files are named by
  position, as the original's: a second listener of other filters at the
  same basename in one graph is refused (ValueError; pass every filter to
  one listener).

  Args:
    basename: the checkpoint basename given to the Saver.
    hash_filters: the filters, one per PS (as `create_hash_filters`).
    enable_hash_filter: False saves nothing, and deletes the filter files
      of the step being saved that a killed run with filters on left (see
      `_delete_unfinished_save`).
    enable_save_restore: False saves and deletes nothing.
    timeout_secs: the deadline of a save's run (default 30 minutes, as the
      original; at most a year); None for none (a year).
  """

  # Never a guard listener (NoFirstSaveCheckpointSaverHook refuses it).
  saves_checkpoint_files = True

  def __init__(self,
               basename: str,
               hash_filters: List[tf.Tensor],
               enable_hash_filter: bool = False,
               enable_save_restore: bool = True,
               timeout_secs: Optional[float] = _TIMEOUT_SECS):
    super().__init__()
    utils.check_graph_mode("HashFilterCheckpointSaverListener")
    self._run_options = save_utils.checkpoint_run_options(timeout_secs)
    self._helper = save_utils.SaveHelper(basename)
    self._hash_filters = utils.checked_handles(hash_filters, "hash_filters")
    self._enabled = _saves_and_restores(enable_hash_filter,
                                        enable_save_restore)
    # Filters off, files of this job's checkpoints still kept here.
    self._deletes_unfinished = not self._enabled and _flag(
        "enable_save_restore", enable_save_restore)
    if self._enabled:
      _claim_checkpoint_files(self._helper.basename, self._hash_filters)
    self._placeholders = []
    self._save_ops = _per_filter_ops(self._hash_filters, self._placeholders,
                                     save_hash_filter, self._enabled)
    self._restorers_before = frozenset()

  def begin(self) -> None:
    # As the tables' listener: restorer hooks pending before its hook's
    # begin() are not this session's to wait for.
    self._restorers_before = basic_restore_hook.restorer_registrations()

  def before_save(self, sess: tf.compat.v1.Session,
                  global_step_value: int) -> None:
    if not self._enabled:
      if self._deletes_unfinished:
        self._delete_unfinished_save(global_step_value)
      return
    # As the tables' saver listener: never before the restore.
    save_utils.check_restorer_hooks_ran(sess,
                                        "HashFilterCheckpointSaverListener",
                                        self._restorers_before)
    # As the tables' listener: the files of failed saves go first.
    self._helper.delete_stale_checkpoint_files(global_step_value,
                                               temporaries=False)
    asset_dir = self._helper.get_ckpt_asset_dir(
        self._helper.get_ckpt_prefix(global_step_value))
    utils.makedirs_durably(asset_dir)
    num_ps = len(self._hash_filters)
    # The PS count is recorded once every filter saved: a restore then tries
    # every PS's filter, so a missing one is an error naming its files.
    # Stateless filters save nothing and record no count, so that a restore
    # into counting filters tells their saves from lost files.
    with save_utils.saving_per_ps_files(
        asset_dir, _PS_COUNT_GROUP, _SAVED_FILTER_RE,
        num_ps if _counting(self._hash_filters) else 0,
        self._helper.has_checkpoint(global_step_value)):
      with save_utils.explaining_deadline(
          self._run_options, f"saving the hash filters of step "
          f"{global_step_value} to {asset_dir}",
          "HashFilterCheckpointSaverListener", "the save ops still running "
          "were cancelled (each stops before its next split and deletes its "
          "temporaries)"):
        _run_per_filter(sess, self._save_ops, self._placeholders, asset_dir,
                        self._run_options)
    logging.info("Saved %d hash filters to %s.", num_ps, asset_dir)

  def _delete_unfinished_save(self, global_step_value: int) -> None:
    """Saving no filter, deletes the filter files and PS count record of
    this step that a run with filters on left when killed before the
    step's checkpoint was complete, as a save of stateless filters does:
    the checkpoint this save completes would otherwise hold them, and every
    restore of it with filters on would fail (a save that never recorded
    its end) or restore counts that are not this run's. A step with a
    checkpoint keeps its files."""
    if self._helper.has_checkpoint(global_step_value):
      return
    asset_dir = self._helper.get_ckpt_asset_dir(
        self._helper.get_ckpt_prefix(global_step_value))
    if not tf.io.gfile.isdir(asset_dir):
      return
    with save_utils.saving_per_ps_files(asset_dir, _PS_COUNT_GROUP,
                                        _SAVED_FILTER_RE, 0, False):
      pass

  def after_save(self, session: tf.compat.v1.Session,
                 global_step_value: int) -> None:
    """Deletes the asset folders of the checkpoints the Saver deleted.

    Args:
      session: unused.
      global_step_value: the step just saved (never deleted).
    """
    del session
    if self._enabled:
      self._helper.delete_stale_checkpoint_files(global_step_value)


class HashFilterCheckpointRestorerListener(
    basic_restore_hook.CheckpointRestorerListener):
  """Restores the hash filters from the latest checkpoint (or the one the
  session's global step was restored from: a rollback, see
  `save_utils.restored_checkpoint`).

  The filters it would restore (with a `ps_monitor`, those of the PS
  tasks it reports not set up; otherwise all) start empty where there is
  nothing to restore them from: a checkpoint with no filter file and no PS
  count record (saved with admission off, or with stateless filters, which
  record none; a warning says admission counts start over), or filters
  saved by another number of PS (a filter counts the ids of its PS, id mod
  the PS count; tables re-route their entries, filters cannot: a warning
  names both counts); with a `ps_monitor`, also where there is no
  checkpoint, and before a restore (which skips a filter configured
  otherwise than saved). So a task that kept running another job's
  filters, or those of another PS count, does not admit by their counts.
  Filters of tasks that kept running for this job keep their counts. A
  checkpoint whose record counts PS tasks whose files are missing fails the
  restore with NotFoundError naming them. A filter whose capacity or split
  count changed since the save is not restored (a warning from the restore
  op): it keeps what it holds, empty after a restart, so a filter can be
  resized.

  Args:
    basename: the checkpoint basename.
    hash_filters: the filters, as for the saver listener.
    enable_hash_filter, enable_save_restore: False restores nothing.
    ps_monitor: when given (a `save_utils.PsMonitor`), only the filters of
      the PS tasks it reports uninitialized are restored, as the tables'
      restorer listener does. Give both restorers the same monitor (the
      original passed none here): without it every filter goes back to
      the checkpoint at each chief restart, while PS tasks that kept
      running keep their tables.
    timeout_secs: the deadline of the restore's run (default 30 minutes,
      as the original; at most a year); None for none (a year).
  """

  def __init__(self,
               basename: str,
               hash_filters: List[tf.Tensor],
               enable_hash_filter: bool = False,
               enable_save_restore: bool = True,
               ps_monitor: Optional[Any] = None,
               timeout_secs: Optional[float] = _TIMEOUT_SECS):
    super().__init__()
    utils.check_graph_mode("HashFilterCheckpointRestorerListener")
    self._run_options = save_utils.checkpoint_run_options(timeout_secs)
    self._helper = save_utils.SaveHelper(basename)
    self._basename = self._helper.basename
    self._hash_filters = utils.checked_handles(hash_filters, "hash_filters")
    self._enabled = _saves_and_restores(enable_hash_filter,
                                        enable_save_restore)
    self._ps_monitor = ps_monitor
    self._placeholders = []
    self._restore_ops = _per_filter_ops(self._hash_filters,
                                        self._placeholders,
                                        restore_hash_filter, self._enabled)
    self._clear_ops = []
    if self._enabled:
      for hash_filter in self._hash_filters:
        with tf.device(hash_filter.device):
          self._clear_ops.append(clear_hash_filter(hash_filter).op)

  def _clear(self,
             session: tf.compat.v1.Session,
             chosen: List[int],
             log: bool = True) -> None:
    """Empties the filters `chosen` (indices), saying so if `log`."""
    if not chosen:
      return
    session.run([self._clear_ops[i] for i in chosen])
    if log:
      logging.info("Hash filters %s start empty.",
                   ", ".join(filter_name(self._hash_filters[i])
                             for i in chosen))

  def before_restore(self, session: tf.compat.v1.Session) -> None:
    if not self._enabled:
      return
    ckpt_prefix = save_utils.restored_checkpoint(
        session, os.path.dirname(self._basename), self._ps_monitor)
    chosen = list(range(len(self._hash_filters)))
    if self._ps_monitor is not None:
      uninitialized = self._ps_monitor.uninitialized_ps_tasks(session)
      chosen = [
          i for i in chosen if self._ps_monitor.needs_restore(
              self._hash_filters[i].device, uninitialized)
      ]
    if not ckpt_prefix:
      logging.info("No checkpoint in %s; hash filters are not restored.",
                   os.path.dirname(self._basename))
      if self._ps_monitor is not None:
        # As the tables' listener: every filter where the global step reads
        # 0 (the session initialized every variable); without a monitor,
        # none.
        self._clear(session,
                    list(range(len(self._hash_filters)))
                    if save_utils.global_step_is_zero(session) else chosen)
      return
    prefix = self._helper.get_ckpt_asset_dir(ckpt_prefix)
    # Strict: a storage error read as no folder took the legacy layout,
    # found no filter files there and emptied the filters.
    if not utils.is_folder(prefix):
      # The original's legacy layout: "<checkpoint prefix>hash_filter_<i>"
      # beside the checkpoint, where it had no asset directory.
      prefix = ckpt_prefix
    if not _counting(self._hash_filters):
      logging.info("The hash filters are dummy or probabilistic ones, which "
                   "keep no state: nothing of %s is restored.", prefix)
      return
    saved = _saved_filter_count(prefix)
    if not saved:
      # No file and no PS count record: saved with admission off or with
      # stateless filters (whose saves record no count): turning admission
      # on at a restart is no damage.
      logging.warning(
          "No hash filter files in %s (saved with admission off or with "
          "stateless filters): the hash filters are not restored, and their "
          "admission counts start over.", prefix)
      self._clear(session, chosen)
      return
    if saved != len(self._hash_filters):
      logging.warning(
          "The hash filters in %s were saved by %d PS tasks; this job has "
          "%d. They are not restored (each counts the ids of its PS, id mod "
          "the PS count): admission counts start over on the PS tasks "
          "restored; tasks that kept running for this job keep theirs.",
          prefix, saved, len(self._hash_filters))
      self._clear(session, chosen)
      return
    # (An asset folder: its PS count record gave the count.)
    if (not os.path.basename(prefix) and
        not save_utils.ps_files_in(prefix, _SAVED_FILTER_RE)):
      # Builds of 2026-12-03 to 2026-12-06 recorded a count for stateless
      # filters too, whose saves write no file.
      raise tf.errors.NotFoundError(
          None, None,
          f"{save_utils.ps_count_path(prefix, _PS_COUNT_GROUP)} says "
          f"{saved} PS tasks saved hash filters (hash_filter_0 .. "
          f"hash_filter_{saved - 1}), but {prefix} holds none of their "
          "files: they were lost (restore another checkpoint), or the "
          "checkpoint was saved with dummy or probabilistic filters by a "
          "build of 2026-12-03 to 2026-12-06, which recorded a count for "
          "filters that save no file; then delete that record, and the "
          "filters' admission counts start over")
    if self._ps_monitor is not None:
      # A task set up for another job keeps nothing of its counts, also
      # where the restore op skips a filter configured otherwise.
      self._clear(session, chosen, log=False)
    with save_utils.explaining_deadline(
        self._run_options, f"restoring the hash filters from {prefix}",
        "HashFilterCheckpointRestorerListener", "the restore ops still "
        "running were cancelled (each stops before its next split; its "
        "filter keeps its counts)"):
      _run_per_filter(session, self._restore_ops, self._placeholders, prefix,
                      self._run_options, chosen)
    # The restore op warns of (and skips) each filter configured otherwise
    # than the one saved.
    logging.info(
        "Restored %d hash filters from %s (any configured otherwise than "
        "saved are not restored: see the warnings).", len(chosen), prefix)
