"""Embedding tables on parameter-server tasks, over TF's distributed runtime.

`DistributedMultiTypeHashTable` holds one `MultiHashTable` per PS task (on
`utils.ps_device(i)`, job `utils.PS_JOB_NAME`) and gives them the
`MultiHashTable` API. An id lives on PS `id mod num_ps` (a floor modulo,
non-negative for negative ids: the original's layout, so the tables of an
N-PS job hold the same ids as the original's). There is no RPC layer of our
own: the worker and the PS tasks are `tf.distribute.Server`s and TF's
graph-mode sessions move the tensors between them.

The worker (the caller's device scope) de-duplicates and splits ids, sums
the gradients of repeated ids and merges the embeddings back; the table ops
run on the PS tasks. Each PS gets, per call, its ids of every table as one
tensor (packed: per table, differences from the table's smallest id in as
few bytes as needed, 6 for v2 feature ids; MonolithDistributedPsPackIds and
...UnpackIds) and returns or takes one flat float tensor, so a call costs a
few tensors per PS whatever the number of tables.

lookup and apply_gradients do the worker's part with fused kernels of ours
(distributed_ps_ops.cc; the original used TF's stock ops): one op
de-duplicates every table's ids and splits them by PS
(MonolithDistributedPsPartition), one copies the PS results back into
per-table embeddings, converting float16 on the fly
(MonolithDistributedPsGather / ...GatherFloat16), one sums the gradients of
repeated ids into the PS layout, as float32 or float16
(MonolithDistributedPsScatterAdd); with float16 transfer, the PS looks up
straight into float16 (MonolithDistributedPsLookupFloat16). Results are
bit-identical to the stock ops' (tf.unique, floormod, dynamic_partition,
dynamic_stitch, gather, unsorted_segment_sum, cast), except that finite
floats past float16's range saturate at +-65504 instead of becoming inf.
assign and assign_add (not de-duplicated) split their rows with the same
partition op (MonolithDistributedPsScatterAdd copying rows);
reinitialize uses stock ops, without the split for one PS.

    table = DistributedMultiTypeHashTable(
        2, {"user_id": config},
        lambda i, configs: MultiHashTable.from_configs(configs,
                                                       name_suffix=str(i)))
    embeddings = table.lookup({"user_id": ids})
    table = table.apply_gradients({"user_id": (ids, grads)}, global_step)

`distributed_ps_factory.create_native_multi_hash_table` builds one with the
original's table names.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
from typing import (Any, Callable, Dict, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple, Union)

from absl import logging
import tensorflow as tf

from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import multi_type_hash_table
from monolith.native_training import save_utils
from monolith.native_training import utils
from monolith.native_training.model_export import export_context
from monolith.native_training.runtime.ops import gen_monolith_ops

# Per slot: (ids, values) or (ids, gradients).
IdsAndValues = Dict[str, Tuple[tf.Tensor, tf.Tensor]]
# table_factory(ps_index, slot_to_config) -> the MultiHashTable of that PS.
TableFactory = Callable[[int, Dict[str, entry.HashTableConfigInstance]],
                        multi_hash_table_ops.MultiHashTable]


@contextlib.contextmanager
def ps_device(i: int) -> Iterator[None]:
  """Places the ops built inside on PS `i`, whatever the outer scopes.

  The outer device and colocation scopes are cleared first, so the ops land
  on `utils.ps_device(i)` even under a worker or GPU device scope. While
  a standalone export is built (`export_context.is_exporting_standalone()`)
  it places nothing: that SavedModel serves every PS's tables in its one
  process, as the original's did.

  Args:
    i: the PS task index (the original's name).

  Yields:
    Nothing; build the PS's ops inside.
  """
  if export_context.is_exporting_standalone():
    yield
    return
  graph = tf.compat.v1.get_default_graph()
  with graph.colocate_with(None, ignore_existing=True), tf.device(
      utils.ps_device(i)):
    yield


def check_ps_cluster(cluster: Union[tf.train.ClusterSpec, tf.train.ClusterDef,
                                    tf.compat.v1.ConfigProto, Dict[str, Any]],
                     num_ps: int) -> None:
  """Checks that a cluster has the PS tasks 0 .. num_ps - 1.

  Args:
    cluster: a ClusterSpec, a ClusterDef, a dict of job name to addresses
      (as TF_CONFIG's "cluster"), or a ConfigProto (its `cluster_def`).
    num_ps: the number of PS tasks the tables are sharded over; 0 checks
      nothing.

  Raises:
    ValueError: num_ps > 0 and the cluster has no `utils.PS_JOB_NAME` job,
      or lacks some of its tasks 0 .. num_ps - 1.
  """
  if utils.check_count(num_ps, "num_ps") == 0:
    return
  if isinstance(cluster, tf.compat.v1.ConfigProto):
    cluster = cluster.cluster_def
  spec = tf.train.ClusterSpec(cluster)
  if utils.PS_JOB_NAME not in spec.jobs:
    raise ValueError(
        f"num_ps is {num_ps} but the cluster has no {utils.PS_JOB_NAME!r} "
        f"job (its jobs: {sorted(spec.jobs)})")
  missing = sorted(
      set(range(num_ps)) - set(spec.task_indices(utils.PS_JOB_NAME)))
  if missing:
    raise ValueError(
        f"num_ps is {num_ps} but the cluster's {utils.PS_JOB_NAME!r} job "
        f"lacks the tasks {missing}")


def _check_tf_config_cluster(num_ps: int) -> None:
  """`check_ps_cluster` on the TF_CONFIG environment variable's cluster."""
  tf_config = os.environ.get("TF_CONFIG")
  if not tf_config:
    return
  try:
    cluster = json.loads(tf_config).get("cluster")
  except (ValueError, AttributeError):
    logging.warning("TF_CONFIG is not a JSON object; its cluster is not "
                    "checked against num_ps.")
    return
  if cluster:
    check_ps_cluster(cluster, num_ps)


# "<group prefix>_<PS index>", the names of PS tables' saves.
_PS_INDEX_SUFFIX = re.compile(r"_(0|[1-9][0-9]*)$")


def _checked_ps_save(basename: Any, ps_index: int) -> Any:
  """`basename`, the save of PS `ps_index`: a string as it is once its name
  is checked, a tensor checked when it is read."""
  if isinstance(basename, str):
    match = _PS_INDEX_SUFFIX.search(basename)
    if not match or int(match.group(1)) != ps_index:
      raise ValueError(f"ps_group: basenames[{ps_index}] = {basename!r} is "
                       f"not a save of PS {ps_index} (\"..._{ps_index}\")")
    return basename
  basename = tf.convert_to_tensor(basename, dtype=tf.string)
  check = tf.debugging.Assert(
      tf.strings.regex_full_match(basename, f".*_{ps_index}"), [
          f"ps_group: basenames[{ps_index}] is not a save of PS {ps_index} "
          f"(\"..._{ps_index}\"):", basename
      ])
  with tf.control_dependencies([check]):
    return tf.identity(basename)


def _saves_of_one_ps_group(basenames: List[Any]) -> bool:
  """Whether `basenames` are the saves of one whole PS group, PS j's holding
  only ids with id mod len(basenames) == j: "<group prefix>_0", "_1", ...
  in order, and all that `find_ps_checkpoints` finds of that group (the
  first PS of a longer group hold ids of other remainders).

  Raises:
    ValueError: they are named as a group's saves, and are not those its
      checkpoint holds (more: an earlier save's PS left beside a save of
      fewer; fewer: a PS's ids would be lost).
    tf.errors.DataLossError, tf.errors.NotFoundError: the group's
      checkpoint is a save that did not finish, or lacks a PS's tables
      (`find_ps_checkpoints`): every PS reading every save given would mix
      saves of two steps.
  """
  groups = set()
  for j, basename in enumerate(basenames):
    match = (_PS_INDEX_SUFFIX.search(basename)
             if isinstance(basename, str) else None)
    if not match or int(match.group(1)) != j:
      return False
    groups.add(basename[:match.start()])
  if len(groups) != 1:
    return False
  prefix = groups.pop()
  found = multi_hash_table_ops.find_ps_checkpoints(os.path.dirname(prefix),
                                                   os.path.basename(prefix))
  if ([utils.comparable_path(f) for f in found] ==
      [utils.comparable_path(b) for b in basenames]):
    return True
  if found:
    raise ValueError(
        f"basenames {list(basenames)} are named as saves of the PS group "
        f"{prefix}_<j>, whose checkpoint holds {found} (see "
        "find_ps_checkpoints): pass those; files of PS tasks past its count "
        "are an earlier save's, and a PS left out loses its ids")
  return False  # no save of the group there: the restores say so


class _Split(NamedTuple):
  """The ids of one slot, split by PS."""
  # Per PS, its ids, in their order in the input.
  ids: List[tf.Tensor]
  # Per PS, the positions of its ids in the input; None with one PS (its ids
  # are the input).
  positions: Optional[List[tf.Tensor]]


def _split_by_ps(ids: tf.Tensor, num_ps: int) -> _Split:
  """Splits 1-D ids over the PS tasks by id mod num_ps.

  With one PS nothing is split (positions are then None); for a power of
  two, the floor modulo is a bitwise and (two's complement: the same for
  negative ids), without the int64 division.

  Args:
    ids: 1-D int64 ids.
    num_ps: the number of PS tasks.

  Returns:
    The split; the order of the ids of each PS is their input order.
  """
  if num_ps == 1:
    return _Split(ids=[ids], positions=None)
  if num_ps & (num_ps - 1) == 0:
    ps_index = tf.cast(tf.bitwise.bitwise_and(ids, num_ps - 1), tf.int32)
  else:
    ps_index = tf.cast(tf.math.floormod(ids, num_ps), tf.int32)
  positions = tf.range(tf.size(ids, out_type=tf.int32))
  return _Split(
      ids=tf.dynamic_partition(ids, ps_index, num_ps),
      positions=tf.dynamic_partition(positions, ps_index, num_ps))


class _Partition(NamedTuple):
  """The ids of every table of one call, split by PS (fused kernel)."""
  # Per table (table_names order), 1-D int64: how many ids it has.
  id_counts: tf.Tensor
  # Per PS: its ragged ids, a row per table (on the worker).
  ps_ids: List[tf.RaggedTensor]
  # Per PS: its ids packed (MonolithDistributedPsPackIds), or None when
  # they are sent as they are.
  ps_packed: Optional[List[tf.Tensor]]
  # Per input id: the float offset of its row in the PS results concatenated
  # in PS order.
  index: tf.Tensor
  # Where each PS's results start in that concatenation, and their total.
  float_splits: tf.Tensor


@tf.RegisterGradient("MonolithDistributedPsGather")
def _gather_grad(op: tf.Operation, *grads: tf.Tensor) -> List[Any]:
  """The gradient of the PS results: each id's row gradient added back."""
  values, index, id_counts = op.inputs
  grads = [
      tf.zeros_like(out) if g is None else g
      for g, out in zip(grads, op.outputs)
  ]
  values_grad = gen_monolith_ops.monolith_distributed_ps_scatter_add(
      values=grads,
      index=index,
      id_counts=id_counts,
      float_splits=tf.stack(
          [tf.constant(0, tf.int64),
           tf.size(values, out_type=tf.int64)]),
      num_ps=1,
      dims=op.get_attr("dims"))[0]
  return [values_grad, None, None]


@tf.RegisterGradient("MonolithDistributedPsScatterAdd")
def _scatter_add_grad(op: tf.Operation, *grads: tf.Tensor) -> List[Any]:
  """The gradient of the per-id rows: the gradient of the row they went to."""
  if op.get_attr("copy_rows"):
    # Rows sharing a place: only the last one's value went on.
    raise LookupError("MonolithDistributedPsScatterAdd with copy_rows (an "
                      "assign's) has no gradient")
  dims = op.get_attr("dims")
  index, id_counts = op.inputs[len(dims):len(dims) + 2]
  grads = [
      tf.zeros_like(out, dtype=tf.float32) if g is None else tf.cast(
          g, tf.float32) for g, out in zip(grads, op.outputs)
  ]
  rows = gen_monolith_ops.monolith_distributed_ps_gather(
      values=tf.concat(grads, axis=0),
      index=index,
      id_counts=id_counts,
      num_tables=len(dims),
      dims=dims)
  return list(rows) + [None, None, None]


tf.no_gradient("MonolithDistributedPsPartition")
tf.no_gradient("MonolithDistributedPsPackIds")
tf.no_gradient("MonolithDistributedPsUnpackIds")
tf.no_gradient("MonolithDistributedPsGatherFloat16")
tf.no_gradient("MonolithDistributedPsLookupFloat16")


class DistributedMultiTypeHashTable(
    multi_type_hash_table.BaseMultiTypeHashTable):
  """`MultiHashTable`s on `num_ps` PS tasks, behind the MultiHashTable API.

  Build it where the worker's ops go (the default device, or the worker's
  device scope): the learning-rate functions are called there, once, and
  their rates are sent to every PS as one vector per step. Each PS table
  gets copies of the configs whose `learning_rate_tensor` is its slice of
  that vector (the user's configs are not changed).

  Methods and return conventions are `MultiHashTable`'s: updates return a new
  DistributedMultiTypeHashTable whose ops depend on the updates of every PS,
  and `as_op()` gives one op that runs them.

  Args:
    num_ps: the number of PS tasks, >= 1.
    slot_to_config: the table configs by slot (table name).
    table_factory: `table_factory(ps_index, slot_to_config)` returns the
      `MultiHashTable` of PS `ps_index`, built from the configs it is given
      (copies of `slot_to_config`'s). It is called under
      `ps_device(ps_index)`; tables of different PS need different shared
      names (`name_suffix`).
    transfer_float16: whether embeddings (PS to worker) and gradients
      (worker to PS) cross as float16, halving the bytes; they are cast on
      the sending side and back to float32 on the receiving side (11
      significant bits; magnitudes below 2^-14 lose bits, those up to
      2^-25 arrive as 0, those past 65504 as +-65504). Ids, assigned values
      and learning rates cross as they are.
    max_rpc_deadline_millis: the original's argument in this position, for
      its remote-predict serving, which is not built here: accepted and not
      used (RPC deadlines come from the session's operation timeout).
    pack_ids: whether lookup, apply_gradients, assign and assign_add send
      each PS its ids packed (runtime/distributed_ps/packed_ids.h): per
      table, each id's difference from the table's smallest id in as few
      bytes as the table's range needs, with the row splits in the same
      tensor. v2
      feature ids (slot in the top 16 bits) take 6 bytes instead of 8, v1
      ones (slot << 54) 7; ids spread over all 64 bits take 8; plus 16
      bytes of header per table.

  Raises:
    ValueError: num_ps < 1, slot_to_config is empty, the TF_CONFIG
      environment variable's cluster lacks PS tasks 0 .. num_ps - 1, a
      table has not one learning-rate function per segment, or a PS's table
      has other tables or dims than slot_to_config.
    TypeError: table_factory returned something that is not a
      MultiHashTable.
    NotImplementedError: built for a distributed export.
  """

  def __init__(self,
               num_ps: int,
               slot_to_config: Dict[str, entry.HashTableConfigInstance],
               table_factory: TableFactory,
               transfer_float16: bool = False,
               max_rpc_deadline_millis: int = 30,
               pack_ids: bool = True):
    del max_rpc_deadline_millis  # see Args
    utils.check_graph_mode("DistributedMultiTypeHashTable")
    if utils.is_integer(num_ps) and num_ps == 0:
      raise ValueError(
          "num_ps must be >= 1, got 0 (for tables on the worker, use a "
          "MultiHashTable or create_native_multi_hash_table(0, ...))")
    num_ps = utils.check_count(num_ps, "num_ps", minimum=1)
    if not slot_to_config:
      raise ValueError("slot_to_config is empty")
    if export_context.is_exporting_distributed():
      raise NotImplementedError(
          "a distributed export (entry and PS SavedModels calling each "
          "other) of PS tables is not built; export with "
          "ExportMode.STANDALONE, which serves every PS's tables in one "
          "process")
    if not export_context.is_exporting_standalone():
      _check_tf_config_cluster(num_ps)
    self._num_ps = num_ps
    self.transfer_float16 = transfer_float16
    self.pack_ids = pack_ids
    cc = multi_hash_table_ops.convert_to_cached_config(slot_to_config)
    self._table_names = cc.table_names
    self._dims = cc.dims
    # Before any PS's table takes its shared name.
    if transfer_float16 and multi_hash_table_ops.table_type(cc) == "gpucuco":
      raise NotImplementedError(
          "transfer_float16 is not available for gpucuco tables: the "
          "float16 lookup op has a CPU kernel only; build the table with "
          "transfer_float16=False")
    # The rates are computed on the worker, once a step, and each PS gets
    # them as one vector, which it splits per table.
    with tf.name_scope("dmtht_learning_rate"):
      learning_rates = multi_hash_table_ops.learning_rate_tensor(cc)
    num_segments = [
        len(cc.configs[name].table_config.entry_config.segments)
        for name in cc.table_names
    ]
    self._tables = []
    # Ops as_op runs besides the tables' (a save's PS count record).
    self._after_tables = ()
    for i in range(num_ps):
      with ps_device(i), tf.name_scope(f"dmtht_ps_{i}"):
        rates_on_ps = tf.split(
            tf.identity(learning_rates, name="learning_rate"), num_segments)
        configs_on_ps = {}
        for name, rates in zip(cc.table_names, rates_on_ps):
          config = copy.copy(slot_to_config[name])
          config.set_learning_rate_tensor(rates)
          configs_on_ps[name] = config
        table = table_factory(i, configs_on_ps)
      self._check_table(i, table)
      for j, other in enumerate(self._tables):
        if other.shared_name == table.shared_name:
          raise ValueError(
              f"table_factory returned the table of PS {j} "
              f"({table.shared_name}) for PS {i} too: each PS task needs "
              "a MultiHashTable of its own (e.g. from_configs(configs, "
              "name_suffix=str(ps_index)))")
      # For checkpoints: the restorer listener reshards by it.
      table.set_ps_shard(num_ps, i)
      self._tables.append(table)
    logging.info("DistributedMultiTypeHashTable: %d tables on %d PS tasks%s.",
                 len(self._table_names), num_ps,
                 ", float16 transfers" if transfer_float16 else "")

  def _check_table(self, index: int, table: Any) -> None:
    if not isinstance(table, multi_hash_table_ops.MultiHashTable):
      raise TypeError(f"table_factory returned a {type(table).__name__} for "
                      f"PS {index}; expected a MultiHashTable")
    if (tuple(table.table_names) != self._table_names or
        tuple(table.get_table_dim_sizes()) != self._dims):
      raise ValueError(
          f"table_factory's table for PS {index} has the tables "
          f"{list(table.table_names)} of dims "
          f"{list(table.get_table_dim_sizes())}; slot_to_config has "
          f"{list(self._table_names)} of dims {list(self._dims)}")

  @property
  def num_ps(self) -> int:
    """The number of PS tasks."""
    return self._num_ps

  @property
  def table_names(self) -> Tuple[str]:
    """The table names, sorted, as in every PS's MultiHashTable."""
    return self._table_names

  @property
  def tables(self) -> List[multi_hash_table_ops.MultiHashTable]:
    """The MultiHashTable of each PS, depending on this object's updates."""
    return list(self._tables)

  def get_table_dim_sizes(self) -> Tuple[int]:
    """The embedding dim of each table, in `table_names` order."""
    return self._dims

  def _check_slots(self, slots: Any) -> None:
    multi_hash_table_ops.check_table_names(slots, self._table_names)

  def lookup(self, slot_to_id: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Returns the embeddings of the given ids.

    Each PS gets the distinct ids it holds, once; ids never written read as
    zeros and are not inserted.

    Args:
      slot_to_id: per table name, 1-D int64 ids.

    Returns:
      Per table name of `slot_to_id`, float32 embeddings [len(ids), dim].

    Raises:
      ValueError: an unknown table name, or ids that are not 1-D integers
        (other integer dtypes are cast to int64).
    """
    self._check_slots(slot_to_id)
    with tf.name_scope("dmtht_lu"):
      return self._lookup(slot_to_id, unique=True)

  def _lookup(self, slot_to_id: Dict[str, tf.Tensor],
              unique: bool) -> Dict[str, tf.Tensor]:
    """`lookup`; without `unique`, every id is sent, repeats included."""
    ids = {
        slot: multi_hash_table_ops.as_ids(v, slot)
        for slot, v in slot_to_id.items()
    }
    if not ids:
      return {}
    partition = self._partition(ids, unique)
    results = [self._lookup_on_ps(i, partition) for i in range(self._num_ps)]
    values = results[0] if self._num_ps == 1 else tf.concat(results, axis=0)
    if self.transfer_float16:
      # Free: the float16 results are even-length; read as int32 pairs.
      embeddings = gen_monolith_ops.monolith_distributed_ps_gather_float16(
          float16_pairs=tf.bitcast(tf.reshape(values, [-1, 2]), tf.int32),
          index=partition.index,
          id_counts=partition.id_counts,
          float_splits=partition.float_splits,
          num_tables=len(self._dims),
          dims=self._dims)
    else:
      embeddings = gen_monolith_ops.monolith_distributed_ps_gather(
          values=values,
          index=partition.index,
          id_counts=partition.id_counts,
          num_tables=len(self._dims),
          dims=self._dims)
    result = {}
    for t, slot in enumerate(self._table_names):
      if slot in ids:
        embeddings[t].set_shape(ids[slot].shape.concatenate([self._dims[t]]))
        result[slot] = embeddings[t]
    return result

  def _partition(self, ids: Dict[str, tf.Tensor], unique: bool) -> _Partition:
    """Splits the ids of every table by PS (and de-duplicates them)."""
    empty = tf.constant([], dtype=tf.int64)
    ps_ids, ps_id_splits, index, float_splits, id_counts = (
        gen_monolith_ops.monolith_distributed_ps_partition(
            ids=[ids.get(slot, empty) for slot in self._table_names],
            num_ps=self._num_ps,
            dims=self._dims,
            unique=unique))
    ps_packed = None
    if self.pack_ids:
      ps_packed = [
          gen_monolith_ops.monolith_distributed_ps_pack_ids(ids=v, id_split=s)
          for v, s in zip(ps_ids, ps_id_splits)
      ]
    return _Partition(
        id_counts=id_counts,
        ps_ids=[
            tf.RaggedTensor.from_row_splits(v, s, validate=False)
            for v, s in zip(ps_ids, ps_id_splits)
        ],
        ps_packed=ps_packed,
        index=index,
        float_splits=float_splits)

  def _rows_per_ps(self, partition: _Partition, rows: Dict[str, tf.Tensor],
                   **attrs: Any) -> List[tf.Tensor]:
    """Each PS's rows, in `partition`'s layout: `rows` per table name,
    [len(ids), dim] (a table not given has none), summed or, with
    copy_rows, copied (MonolithDistributedPsScatterAdd and its `attrs`)."""
    return gen_monolith_ops.monolith_distributed_ps_scatter_add(
        values=[
            rows[slot] if slot in rows else tf.zeros([0, dim])
            for slot, dim in zip(self._table_names, self._dims)
        ],
        index=partition.index,
        id_counts=partition.id_counts,
        float_splits=partition.float_splits,
        num_ps=self._num_ps,
        dims=self._dims,
        **attrs)

  def _ids_on_ps(self, index: int, partition: _Partition) -> tf.RaggedTensor:
    """PS `index`'s ragged ids; call it under that PS's device scope."""
    if partition.ps_packed is None:
      return partition.ps_ids[index]
    ids, id_split = gen_monolith_ops.monolith_distributed_ps_unpack_ids(
        packed=partition.ps_packed[index], num_tables=len(self._dims))
    return tf.RaggedTensor.from_row_splits(ids, id_split, validate=False)

  def _lookup_on_ps(self, index: int, partition: _Partition) -> tf.Tensor:
    """PS `index`'s flat embeddings of its ids (float16 if transferred so)."""
    table = self._tables[index]
    with ps_device(index), tf.name_scope(f"ps_{index}"):
      ragged_id = self._ids_on_ps(index, partition)
      if not self.transfer_float16:
        return table.raw_lookup(ragged_id)
      # raw_lookup's result, as float16 (padded to an even length).
      return gen_monolith_ops.monolith_distributed_ps_lookup_float16(
          mtable=table.handle,
          id=ragged_id.values,
          id_split=ragged_id.row_splits,
          name="send_LookupFloat16")

  def _update(self, method: str, slot_to_id_and_value: IdsAndValues,
              req_time: Optional[tf.Tensor]) -> DistributedMultiTypeHashTable:
    """Runs `raw_<method>` on each PS with its ids and values, in order.

    Through the fused partition and scatter of apply_gradients (ids not
    de-duplicated, so each keeps its row, in input order; rows copied, bits
    as given): a few ops for all tables and PS tasks, where a split per
    table and PS grew the graph as tables x PS.
    """
    self._check_slots(slot_to_id_and_value)
    multi_hash_table_ops.check_pairs(slot_to_id_and_value)
    req_time = multi_hash_table_ops.req_time_tensor(req_time)
    dims = dict(zip(self._table_names, self._dims))
    ids, values = {}, {}
    for slot, (slot_ids, slot_values) in slot_to_id_and_value.items():
      # Any shape, flattened (the values are checked against their count).
      ids[slot] = multi_hash_table_ops.as_ids(slot_ids, slot, flatten=True)
      values[slot] = multi_hash_table_ops.values_of_ids(
          multi_hash_table_ops.as_values(slot_values, slot), ids[slot],
          dims[slot], slot)
    partition = self._partition(ids, unique=False)
    ps_values = self._rows_per_ps(partition, values, copy_rows=True)
    new_tables = []
    for i, table in enumerate(self._tables):
      with ps_device(i), tf.name_scope(f"ps_{i}"):
        new_tables.append(
            getattr(table, "raw_" + method)(self._ids_on_ps(i, partition),
                                            ps_values[i], req_time))
    return self._copy_with_new_tables(new_tables)

  def assign(self,
             slot_to_id_and_value: IdsAndValues,
             req_time: Optional[tf.Tensor] = None
            ) -> DistributedMultiTypeHashTable:
    """Sets the embeddings of the given ids (see `MultiHashTable.assign`).

    Ids and values are sent as given (float32), each PS getting its ids in
    their input order, so repeated ids behave as on one table: the last
    value wins.

    Args:
      slot_to_id_and_value: per table name, 1-D int64 ids and float32 values
        [len(ids), dim].
      req_time: int64 scalar, the update time (seconds); None is 0.

    Returns:
      The updated table.

    Raises:
      ValueError: an unknown table name.
      tf.errors.InvalidArgumentError: (at run time) values do not have
        len(ids) rows of the table's dim.
    """
    with tf.name_scope("dmtht_a"):
      return self._update("assign", slot_to_id_and_value, req_time)

  def assign_add(self,
                 slot_to_id_and_value: IdsAndValues,
                 req_time: Optional[tf.Tensor] = None
                ) -> DistributedMultiTypeHashTable:
    """Adds values to the embeddings of the given ids, sent as by `assign`.

    Missing ids are inserted (initialized first); repeated ids add up, as
    on one table.

    Args:
      slot_to_id_and_value: per table name, 1-D int64 ids and the float32
        values to add.
      req_time: int64 scalar stamped on the entries; None is 0 (as
        `MultiHashTable.assign`'s).

    Returns:
      A table whose ops depend on every PS's update.

    Raises:
      ValueError, tf.errors.InvalidArgumentError: as `assign`.
    """
    with tf.name_scope("dmtht_aa"):
      return self._update("assign_add", slot_to_id_and_value, req_time)

  def reinitialize(
      self, slot: str,
      ids: tf.Tensor) -> Tuple[DistributedMultiTypeHashTable, tf.Tensor]:
    """Resets ids of one table to their initializers' values, on their PS.

    Args:
      slot: the table name; an unknown one touches nothing (status -1).
      ids: 1-D int64 ids.

    Returns:
      The updated table and an int32 status per id, in the order of `ids`:
      -1 the table does not exist, 0 the id was inserted, 1 it existed.
    """
    with tf.name_scope("dmtht_reinit"):
      split = _split_by_ps(multi_hash_table_ops.as_ids(ids, slot),
                           self._num_ps)
      new_tables, statuses = [], []
      for i, table in enumerate(self._tables):
        with ps_device(i), tf.name_scope(f"ps_{i}"):
          new_table, status = table.reinitialize(slot, split.ids[i])
        new_tables.append(new_table)
        statuses.append(status)
      status = (statuses[0] if split.positions is None else
                tf.dynamic_stitch(split.positions, statuses))
      return self._copy_with_new_tables(new_tables), status

  def apply_gradients(
      self,
      slot_to_id_and_grad: IdsAndValues,
      global_step: tf.Tensor,
      req_time: Optional[tf.Tensor] = None) -> DistributedMultiTypeHashTable:
    """Applies the tables' optimizers to the gradients of the given ids.

    The worker sums the gradients of repeated ids of a table, so each PS
    optimizes an id once per call, with its summed gradient (for SGD on
    segments other than one_bit, the same as applying the gradients one by
    one). The learning rates, the
    global step and req_time are read on the worker.

    Args:
      slot_to_id_and_grad: per table name, (ids, gradients): 1-D int64 and
        float32 [len(ids), dim].
      global_step: the int64 step (scalar), sent to every PS.
      req_time: the int64 update time in seconds stamped on the entries;
        None is 0 (as `MultiHashTable.assign`'s).

    Returns:
      The updated table.

    Raises:
      ValueError: a table name that `slot_to_config` lacks.
      tf.errors.InvalidArgumentError: (at run time) a table's gradients are
        not [len(ids), dim].
      tf.errors.FailedPreconditionError: (at run time) a table has SERVING
        entries.
    """
    self._check_slots(slot_to_id_and_grad)
    multi_hash_table_ops.check_pairs(slot_to_id_and_grad)
    with tf.name_scope("dmtht_ag"):
      return self._apply_gradients(slot_to_id_and_grad, global_step, req_time,
                                   unique=True)

  def _apply_gradients(self, slot_to_id_and_grad: IdsAndValues,
                       global_step: tf.Tensor, req_time: Optional[tf.Tensor],
                       unique: bool) -> DistributedMultiTypeHashTable:
    """`apply_gradients`; without `unique`, every id and gradient is sent."""
    global_step = multi_hash_table_ops.as_int64_scalar(global_step,
                                                       "global_step")
    req_time = multi_hash_table_ops.req_time_tensor(req_time)
    ids, grads = {}, {}
    dims = dict(zip(self._table_names, self._dims))
    for slot, (slot_ids, slot_grads) in slot_to_id_and_grad.items():
      ids[slot] = multi_hash_table_ops.as_ids(slot_ids, slot)
      grads[slot] = multi_hash_table_ops.as_values(slot_grads, slot)
      # The scatter-add checks [len(ids), dim] at run time (naming the
      # table's index): here, what is known when the graph is built.
      multi_hash_table_ops.check_values_shape(grads[slot], ids[slot],
                                              dims[slot], slot)
      grads[slot] = multi_hash_table_ops.as_rows(grads[slot], dims[slot])
    partition = self._partition(ids, unique)
    ps_grads = self._rows_per_ps(
        partition, grads,
        T=tf.float16 if self.transfer_float16 else tf.float32)
    new_tables = []
    for i, table in enumerate(self._tables):
      with ps_device(i), tf.name_scope(f"ps_{i}"):
        flat_grad = ps_grads[i]
        if self.transfer_float16:
          flat_grad = tf.cast(flat_grad, tf.float32, name="recv_CastToFloat32")
        new_tables.append(
            table.raw_apply_gradients(self._ids_on_ps(i, partition),
                                      flat_grad, global_step, req_time))
    return self._copy_with_new_tables(new_tables)

  def save(self,
           directory: Union[str, tf.Tensor],
           compression_type: str = "SNAPPY") -> DistributedMultiTypeHashTable:
    """Saves each PS's table, on its PS, to `<directory>/<shared_name>`.

    As the saver listener does into a checkpoint's asset directory; PS tasks
    save in parallel. `restore` reads such saves into any number of PS.
    Once every PS saved, the worker records their count in
    `<directory>/<group prefix>.num_ps` (`save_utils.write_ps_count`'s
    record), where the tables are named `<group prefix>_<i>` (as the
    factory names them): `find_ps_checkpoints` then reads that many PS's
    saves, so a missing one is an error and the saves of PS tasks beyond
    them (an earlier save with more PS) are not read. Before the tables'
    saves the record is replaced with the mark of a save under way
    (`save_utils.mark_ps_files_saving`), so a save that fails leaves files
    that a restore refuses rather than mixes with an earlier save's. Both
    are written whole or not at all (a temporary, then a rename). Run the
    returned table's `as_op()`: the count is written there, after every
    PS's save.

    Args:
      directory: the directory (string or string scalar tensor).
      compression_type: see `MultiHashTable.save`.

    Returns:
      The table, depending on every PS's save.

    Raises:
      ValueError: `directory` is "" (a tensor's "" fails the save's run
        with InvalidArgumentError): the saves would go to "/<name>".
    """
    directory = utils.fspaths(directory)
    # "dir/" must not become "dir//name": object stores (gs://, s3://)
    # take that for another object than "dir/name". ("/" becomes "".)
    if isinstance(directory, str):
      if not directory:
        raise ValueError("save: directory is empty; the PS tables would be "
                         "saved to the root directory")
      directory = directory.rstrip("/")
    else:
      check = tf.debugging.assert_none_equal(
          directory, "", message="save: directory is empty; the PS tables "
          "would be saved to the root directory")
      with tf.control_dependencies([check]):
        directory = tf.strings.regex_replace(directory, "/+$", "")
    prefixes = {t.ps_shard.group_prefix if t.ps_shard else None
                for t in self._tables}
    record_path = None
    marked = []
    if len(prefixes) == 1 and None not in prefixes:
      (prefix,) = prefixes
      # After an earlier save of this table's count (t.save(d).save(d)):
      # its count must not land over this save's mark.
      with tf.name_scope("dmtht_ps_count"), tf.control_dependencies(
          list(self._after_tables)):
        record_path = tf.strings.join([directory, f"/{prefix}.num_ps"])
        marked = [
            gen_monolith_ops.monolith_write_file_atomically(
                record_path, save_utils.SAVING_RECORD)
        ]
    new_tables = []
    for i, table in enumerate(self._tables):
      with ps_device(i), tf.name_scope(f"dmtht_save_{i}"), \
          tf.control_dependencies(marked):
        basename = tf.strings.join([directory, "/" + table.shared_name])
        new_tables.append(table.save(basename, compression_type))
    saved = self._copy_with_new_tables(new_tables)
    if record_path is not None:
      with tf.name_scope("dmtht_ps_count"), tf.control_dependencies(
          [t.as_op() for t in new_tables]):
        record = gen_monolith_ops.monolith_write_file_atomically(
            record_path, save_utils.ps_count_record(self._num_ps))
      saved._after_tables = self._after_tables + (record,)
    return saved

  def restore(
      self,
      basenames: Any,
      strict: Optional[bool] = None,
      values_only: Sequence[str] = (),
      ps_group: bool = False) -> DistributedMultiTypeHashTable:
    """Restores the checkpoints of the tables of any number of PS tasks.

    `basenames` are the saves of every PS table of the old layout (for
    example `multi_hash_table_ops.find_ps_checkpoints(directory,
    "MonolithMultiHashTable")`); PS i of this table keeps the entries with
    floormod(id, num_ps) == i of all of them (values, optimizer state,
    update times) and loses its others. See
    `MultiHashTable.restore_resharded`.

    gpucuco tables do not reshard: they restore the saves of as many PS
    tables as they have, listed in PS order (as `find_ps_checkpoints`
    returns them, or as tensors), PS i its own.

    Args:
      basenames: list (or 1-D string tensor) of checkpoint path prefixes;
        while exporting a standalone model, paths become the SavedModel's
        assets (see `MultiHashTable.restore`).
      strict: whether table names that differ between a checkpoint and the
        tables are an error; None: while exporting only.
      values_only: slots whose optimizer changed since the save, or that
        SERVING tables saved: they restore their values and start the
        optimizer state afresh (see `MultiHashTable.restore`).
      ps_group: the caller's word that `basenames`, a list of strings or
        string tensors (e.g. an export's asset paths), are every save of one
        PS group, PS j's at index j, as `find_ps_checkpoints` returns them:
        each PS then reads only the saves that can hold its ids, where it
        would read every save given as tensors (a list of strings is
        recognized without it). Each save read must end in "_<j>" (checked
        at run time); a group missing saves loses their ids.

    Returns:
      The table, depending on every PS's restore.

    Raises:
      NotImplementedError: gpucuco tables given saves of another PS count
        (or not a list of them in PS order).
      ValueError: `values_only` names a slot the tables do not hold, or
        `ps_group` with `basenames` not a list, or with a string save not
        named "..._<j>" at index j; or string saves named as a PS group's
        ("<prefix>_0", "_1", ...) that are not those its checkpoint holds
        (`find_ps_checkpoints`).
      tf.errors.DataLossError, tf.errors.NotFoundError: such saves of a
        save that did not finish, or that lacks a PS's tables.
      tf.errors.InvalidArgumentError: (at run time) with `ps_group`, a save
        read that does not end in "_<j>".
    """
    basenames = utils.fspaths(basenames)
    # A list: every PS table reads it.
    values_only = multi_hash_table_ops.checked_table_names(
        values_only, "values_only")
    if ps_group:
      if not isinstance(basenames, (list, tuple)) or not basenames:
        raise ValueError("ps_group needs basenames as a list, one save per "
                         f"PS in PS order; got {basenames!r}")
      basenames = [_checked_ps_save(b, j) for j, b in enumerate(basenames)]
      if all(isinstance(b, str) for b in basenames):
        _saves_of_one_ps_group(basenames)  # their checkpoint's own count
    if any(table.on_gpu for table in self._tables):
      return self._restore_own_saves(basenames, strict, values_only)
    new_tables = []
    # The saves of a whole PS group, in PS order ("..._0", "..._1", ...):
    # each PS reads only those that can hold its ids (with the same PS
    # count, its own: N reads in all, not N * N). Otherwise every PS reads
    # all.
    by_ps_index = ps_group or (isinstance(basenames, (list, tuple)) and
                               _saves_of_one_ps_group(basenames))
    if not by_ps_index and not export_context.is_exporting_standalone():
      # (While exporting, each table's restore makes paths its assets.)
      basenames = tf.convert_to_tensor(basenames, dtype=tf.string)
    for i, table in enumerate(self._tables):
      to_read = basenames
      if by_ps_index:
        to_read = multi_hash_table_ops.ps_checkpoints_to_read(
            list(basenames),
            multi_hash_table_ops.PsShard(self._num_ps, i, ""))
      with ps_device(i), tf.name_scope(f"dmtht_restore_{i}"):
        new_tables.append(
            table.restore_resharded(to_read,
                                    id_modulus=self._num_ps,
                                    id_remainder=i,
                                    strict=strict,
                                    values_only=values_only))
    return self._copy_with_new_tables(new_tables)

  def _restore_own_saves(
      self, basenames: Any, strict: bool,
      values_only: Sequence[str]) -> DistributedMultiTypeHashTable:
    """`restore` of gpucuco tables: PS i restores basenames[i]."""
    in_ps_order = (isinstance(basenames, (list, tuple)) and
                   len(basenames) == self._num_ps and
                   (not all(isinstance(b, str) for b in basenames) or
                    _saves_of_one_ps_group(list(basenames))))
    if not in_ps_order:
      raise NotImplementedError(
          f"the gpucuco tables of {self._num_ps} PS tasks restore only the "
          f"saves of {self._num_ps} PS tables, listed in PS order (as "
          f"find_ps_checkpoints returns them); got {basenames!r}. GPU "
          "tables do not reshard: restore into CPU tables to change the PS "
          "count")
    new_tables = []
    for i, table in enumerate(self._tables):
      with ps_device(i), tf.name_scope(f"dmtht_restore_{i}"):
        new_tables.append(
            table.restore(basenames[i], strict=strict,
                          values_only=values_only))
    return self._copy_with_new_tables(new_tables)

  def as_op(self, name: Optional[str] = None) -> tf.Operation:
    """One op (on the worker) that runs the updates of every PS's table.

    Args:
      name: "dmtht_ao" when None; the op is named "<name>/done", as the
        original's.
    """
    with tf.control_dependencies([table.as_op() for table in self._tables] +
                                 list(self._after_tables)):
      return tf.no_op(name=f"{name or 'dmtht_ao'}/done")

  def _copy_with_new_tables(
      self, new_tables: List[multi_hash_table_ops.MultiHashTable]
  ) -> DistributedMultiTypeHashTable:
    copied = copy.copy(self)
    copied._tables = new_tables
    return copied


