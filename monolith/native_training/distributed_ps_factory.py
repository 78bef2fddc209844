"""Builds the embedding tables of a job: on the worker or on PS tasks."""

from typing import Dict, List, Optional, Union

import tensorflow as tf

from monolith.native_training import distributed_ps
from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import utils
from monolith.native_training.model_export import export_context


def _per_ps(name: str, handles: Optional[List[tf.Tensor]],
            count: int) -> List[Optional[tf.Tensor]]:
  """`handles`, or `count` Nones (for None or [], as the original);
  checks there is one per PS."""
  if handles is None:
    return [None] * count
  handles = utils.checked_handles(handles, name, allow_none=True)
  if not handles:
    return [None] * count
  if len(handles) != count:
    raise ValueError(f"{name} has {len(handles)} handles; expected one per "
                     f"PS task ({count})")
  return list(handles)


def _check_on_their_ps(name: str,
                       handles: List[Optional[tf.Tensor]]) -> None:
  """Raises ValueError unless handle i is on PS task i. TF would move PS
  i's table creation to the handle's device (the table then found by its
  read ops on PS i is none, or another session's), saying nothing."""
  for ps_index, handle in enumerate(handles):
    if handle is None:
      continue
    if utils.ps_task_of_device(handle.device) != ps_index:
      raise ValueError(
          f"{name}[{ps_index}] ({handle.name}) is on "
          f"{handle.device or 'no device'}, not PS task {ps_index} "
          f"({utils.ps_device(ps_index)}): each PS's tables take the "
          "handle made on their task (create_hash_filters(num_ps) makes "
          "them so), in PS order")


def ps_name_suffix(name_suffix: str, ps_index: int) -> str:
  """The `name_suffix` of PS `ps_index`'s MultiHashTable.

  With no `name_suffix` this is the original's, str(ps_index), so the
  tables' shared names (and checkpoint files) are
  "MonolithMultiHashTable_<ps_index>".

  Args:
    name_suffix: the suffix given to `create_native_multi_hash_table`.
    ps_index: the PS task index.

  Returns:
    The PS table's name suffix.
  """
  return f"{name_suffix}_{ps_index}" if name_suffix else str(ps_index)


def create_native_multi_hash_table(
    num_ps: int,
    slot_to_config: Dict[str, entry.HashTableConfigInstance],
    hash_filters: Optional[List[tf.Tensor]] = None,
    sync_clients: Optional[List[tf.Tensor]] = None,
    max_rpc_deadline_millis: int = 30,
    transfer_float16: bool = False,
    name_suffix: str = "",
    pack_ids: bool = True
) -> Union[multi_hash_table_ops.MultiHashTable,
           distributed_ps.DistributedMultiTypeHashTable]:
  """Creates the tables of `slot_to_config`, on the worker or on PS tasks.

  With num_ps == 0, one MultiHashTable on the worker (the caller's device
  scope); otherwise a DistributedMultiTypeHashTable whose PS i holds a
  MultiHashTable (`from_cached_config`, every PS's sharing one serialized
  config made on the worker) with the name suffix
  `ps_name_suffix(name_suffix, i)`.

  Args:
    num_ps: the number of PS tasks, >= 0.
    slot_to_config: the table configs by slot (table name).
    hash_filters: one hash filter handle per PS (one for num_ps == 0), each
      on its PS; None gives every table its own dummy filter (every id is
      admitted).
    sync_clients: one sync client handle per PS, as `hash_filters`.
    max_rpc_deadline_millis: the original's argument in this position, for
      its remote-predict serving, which is not built here: accepted and not
      used (RPC deadlines come from the session's operation timeout).
    transfer_float16: with num_ps > 0, whether embeddings and gradients
      cross between worker and PS as float16 (see
      `DistributedMultiTypeHashTable`).
    name_suffix: tells tables of several calls in one graph apart.
    pack_ids: with num_ps > 0, whether ids cross to the PS packed (see
      `DistributedMultiTypeHashTable`).

  Returns:
    The MultiHashTable (num_ps == 0) or DistributedMultiTypeHashTable.

  Raises:
    ValueError: num_ps < 0, hash_filters or sync_clients do not have one
      handle per PS (handle i on PS task i), or as
      `DistributedMultiTypeHashTable` and `MultiHashTable.from_configs`.
  """
  del max_rpc_deadline_millis  # see Args
  num_ps = utils.check_count(num_ps, "num_ps")
  count = max(num_ps, 1)
  hash_filters = _per_ps("hash_filters", hash_filters, count)
  sync_clients = _per_ps("sync_clients", sync_clients, count)
  if num_ps > 0 and not export_context.is_exporting_standalone():
    # (A standalone export places nothing on the PS job.)
    _check_on_their_ps("hash_filters", hash_filters)
    _check_on_their_ps("sync_clients", sync_clients)
  if num_ps == 0:
    return multi_hash_table_ops.MultiHashTable.from_configs(
        slot_to_config,
        hash_filter=hash_filters[0],
        sync_client=sync_clients[0],
        name_suffix=name_suffix)

  # Every PS's tables share one serialized config: made once, on no PS
  # (the worker; read by each PS's creation op when it runs), where a copy
  # per PS grew the graph by the configs times the PS count.
  shared = []

  def table_factory(
      ps_index: int, configs: Dict[str, entry.HashTableConfigInstance]
  ) -> multi_hash_table_ops.MultiHashTable:
    if not shared:
      with tf.device(None):
        shared.append(multi_hash_table_ops.convert_to_cached_config(configs))
    # The configs differ from PS to PS by their learning-rate tensors only,
    # which the serialized config does not hold.
    cc = shared[0]._replace(configs=configs)
    return multi_hash_table_ops.MultiHashTable.from_cached_config(
        cc,
        hash_filter=hash_filters[ps_index],
        sync_client=sync_clients[ps_index],
        name_suffix=ps_name_suffix(name_suffix, ps_index))

  return distributed_ps.DistributedMultiTypeHashTable(
      num_ps,
      slot_to_config,
      table_factory,
      transfer_float16=transfer_float16,
      pack_ids=pack_ids)
