"""MultiHashTable: many embedding hash tables fused in one TF resource.

Training code maps each table name (a feature slot) to int64 ids; one op call
serves all tables: `lookup`, `assign`, `assign_add`, `apply_gradients`
(the tables' optimizers), `reinitialize`, and `save` / `restore` in the
original's sharded checkpoint format. The checkpoint listeners save the
tables beside a tf.compat.v1 Saver checkpoint and restore them before it.

    table = MultiHashTable.from_configs({"slot_1": config_1, ...})
    embeddings = table.lookup({"slot_1": ids_1, ...})
    table = table.apply_gradients({"slot_1": (ids_1, grads_1)}, global_step)
"""

import abc
import collections
import copy
import dataclasses
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

from absl import logging
import tensorflow as tf
from tensorflow.python.framework import ops
from tensorflow.python.ops import resources

from monolith.native_training import basic_restore_hook
from monolith.native_training import distributed_serving_ops
from monolith.native_training import entry
from monolith.native_training import graph_meta
from monolith.native_training import hash_filter_ops
from monolith.native_training import multi_hash_table_ops_pb2
from monolith.native_training import save_utils
from monolith.native_training.hash_table_utils import infer_dim_size
from monolith.native_training.model_export.export_context import is_exporting
from monolith.native_training.multi_type_hash_table import BaseMultiTypeHashTable
from monolith.native_training.proto import ckpt_info_pb2
from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2
from monolith.native_training.runtime.ops import gen_monolith_ops

hash_table_ops = gen_monolith_ops

_TIMEOUT_IN_MS = 60 * 60 * 1000
_MULTI_HASH_TABLE_GRAPH_KEY = "monolith_multi_hash_tables"


class CachedConfig(NamedTuple):
  """Table configs and what is derived from them, built once per graph."""
  # The original configs, by table name.
  configs: Dict[str, entry.HashTableConfigInstance]
  # Table names, sorted: the order of tables inside the resource.
  table_names: Tuple[str]
  # The serialized MultiEmbeddingHashTableConfig.
  mconfig: bytes
  # mconfig as a tensor (tables may be created on another device).
  mconfig_tensor: tf.Tensor
  # Embedding dim of each table, in table_names order.
  dims: Tuple[int]
  # The first table's serialized SlotExpireTimeConfig (used at save).
  slot_expire_time_config: bytes


def infer_dims(configs: Dict[str, entry.HashTableConfigInstance]) -> List[int]:
  """Embedding dims of the tables, in sorted table-name order."""
  return [
      infer_dim_size(configs[name].table_config) for name in sorted(configs)
  ]


def convert_to_cached_config(
    configs: Dict[str, entry.HashTableConfigInstance]) -> CachedConfig:
  """Builds the multi-table config; SERVING entries while exporting."""
  mconfig = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig()
  table_names = tuple(sorted(configs))
  slot_expire_time_config = None
  dims = []
  for name in table_names:
    table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
    table_config.CopyFrom(configs[name].table_config)
    if is_exporting():
      table_config.entry_config.entry_type = (
          embedding_hash_table_pb2.EntryConfig.SERVING)
    mconfig.names.append(name)
    mconfig.configs.append(table_config)
    dims.append(infer_dim_size(table_config))
    if not slot_expire_time_config:
      slot_expire_time_config = (
          table_config.slot_expire_time_config.SerializeToString())
  serialized = mconfig.SerializeToString()
  return CachedConfig(configs=configs,
                      table_names=table_names,
                      mconfig=serialized,
                      mconfig_tensor=tf.convert_to_tensor(serialized),
                      dims=tuple(dims),
                      slot_expire_time_config=slot_expire_time_config)


@dataclasses.dataclass
class MultiHashTableMetadata:
  """Per-graph record of the shared names in use."""
  name_set: set = dataclasses.field(default_factory=set)


def concat_1d_tensors(*args) -> tf.RaggedTensor:
  """Concatenates 1-D tensors into one ragged tensor, a row per tensor."""
  values = tf.concat(args, axis=0)
  row_lengths = [tf.size(t) for t in args]
  return tf.RaggedTensor.from_row_lengths(values, row_lengths, validate=False)


def get_list_from_flat_value(key: tf.RaggedTensor, dims: Tuple[int],
                             flat_value: tf.Tensor) -> List[tf.Tensor]:
  """Splits a flat value into one [num_ids, dim] tensor per row of key."""
  values = tf.split(flat_value, key.row_lengths() * dims)
  return [tf.reshape(v, [-1, dim]) for v, dim in zip(values, dims)]


def flatten_n_tensors(*args) -> tf.Tensor:
  """Concatenates the tensors, each flattened, into one 1-D tensor."""
  return tf.concat([tf.reshape(t, [-1]) for t in args], axis=0)


class RawMultiTypeHashTable(abc.ABC):
  """Lookup/update API on one ragged id tensor, to keep transfers minimal."""

  @abc.abstractmethod
  def get_ragged_id(self, slot_to_id: Dict[str, tf.Tensor]) -> tf.RaggedTensor:
    """Converts ids of every table to one ragged id tensor."""

  @abc.abstractmethod
  def get_flat_value(self, slot_to_value: Dict[str, tf.Tensor]) -> tf.Tensor:
    """Converts values of every table to one flat float tensor."""

  @abc.abstractmethod
  def get_embeddings(self, ragged_id: tf.RaggedTensor,
                     value: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Converts a flat lookup result into embeddings by table name."""

  @abc.abstractmethod
  def raw_lookup(self, ragged_id: tf.RaggedTensor) -> tf.Tensor:
    """Flat embeddings of the ragged ids."""

  @abc.abstractmethod
  def raw_apply_gradients(self, ragged_id: tf.RaggedTensor,
                          flat_grad: tf.Tensor, global_step: tf.Tensor, *args,
                          **kwargs) -> "RawMultiTypeHashTable":
    """Applies the tables' optimizers to flat gradients."""

  @abc.abstractmethod
  def raw_assign(self, ragged_id: tf.RaggedTensor, flat_value: tf.Tensor,
                 *args, **kwargs) -> "RawMultiTypeHashTable":
    """Sets the embeddings of the ragged ids to flat values."""


def _as_int64(t) -> tf.Tensor:
  return t if isinstance(t, tf.Tensor) else tf.convert_to_tensor(t, tf.int64)


def _as_float32(t) -> tf.Tensor:
  return t if isinstance(t, tf.Tensor) else tf.convert_to_tensor(
      t, tf.float32)


def _req_time(req_time: Optional[tf.Tensor]) -> tf.Tensor:
  return tf.constant(0, tf.int64) if req_time is None else req_time


class MultiHashTable(BaseMultiTypeHashTable, RawMultiTypeHashTable):
  """Maps int64 ids of many named tables to float32 embeddings.

  Methods that update the tables return a new MultiHashTable whose handle
  depends on the update, so later reads can be ordered after it.
  """
  NAME_PREFIX = "MonolithMultiHashTable"

  def __init__(self,
               cc: CachedConfig = None,
               hash_filter: tf.Tensor = None,
               sync_client: tf.Tensor = None,
               learning_rate_list: List[tf.Tensor] = None,
               name_suffix: str = "",
               saver_parallel: int = -1,
               table_proto: multi_hash_table_ops_pb2.MultiHashTableProto = None,
               import_scope: str = None,
               device: str = "/device:CPU:0"):
    if table_proto is not None:
      self._init_from_proto(table_proto, import_scope)
      return
    self._dims = cc.dims
    self._slot_expire_time_config = cc.slot_expire_time_config
    self._table_names = cc.table_names
    self._learning_rate = tf.cast(tf.stack(learning_rate_list), tf.float32)
    self._saver_parallel = saver_parallel
    self._shared_name = "_".join([MultiHashTable.NAME_PREFIX, name_suffix])
    self._check_and_insert_name(self._shared_name)
    self._device = device
    with tf.device(device):
      # Creation and use are separate ops: uses read the shared resource.
      init_handle = hash_table_ops.create_monolith_multi_hash_table(
          filter_handle=hash_filter,
          sync_client_handle=sync_client,
          config=cc.mconfig_tensor,
          shared_name=self._shared_name)
      self._initializer = init_handle.op
      self._handle = hash_table_ops.read_monolith_multi_hash_table(
          shared_name=self._shared_name)
      self._is_initialized = hash_table_ops.is_hash_table_initialized(
          init_handle)
      resources.register_resource(init_handle, self._initializer,
                                  self._is_initialized)
    tf.compat.v1.get_collection_ref(_MULTI_HASH_TABLE_GRAPH_KEY).append(self)

  def _init_from_proto(self,
                       proto: multi_hash_table_ops_pb2.MultiHashTableProto,
                       import_scope: str = None):
    if not isinstance(proto, multi_hash_table_ops_pb2.MultiHashTableProto):
      raise TypeError(f"expected a MultiHashTableProto, got {type(proto)}")
    g = tf.compat.v1.get_default_graph()
    self._dims = tuple(proto.dims)
    self._slot_expire_time_config = proto.slot_expire_time_config
    self._table_names = tuple(proto.table_names)
    self._learning_rate = g.as_graph_element(
        ops.prepend_name_scope(proto.learning_rate_tensor, import_scope))
    self._saver_parallel = proto.saver_parallel
    self._shared_name = proto.shared_name
    self._initializer = g.as_graph_element(
        ops.prepend_name_scope(proto.initializer_op, import_scope))
    self._handle = g.as_graph_element(
        ops.prepend_name_scope(proto.handle_tensor, import_scope))
    self._device = self._handle.device
    init_handle = self._initializer.outputs[0]
    self._is_initialized = hash_table_ops.is_hash_table_initialized(
        init_handle)
    resources.register_resource(init_handle, self._initializer,
                                self._is_initialized)

  @classmethod
  def from_cached_config(cls,
                         cc: CachedConfig,
                         hash_filter: tf.Tensor = None,
                         sync_client: tf.Tensor = None,
                         name_suffix: str = "",
                         saver_parallel: int = -1) -> "MultiHashTable":
    """Creates the tables; GPU tables ("gpucuco") go on the GPU."""
    table_config = next(iter(cc.configs.values())).table_config
    table_type = (table_config.WhichOneof("type")
                  if table_config.HasField("type") else None)
    logging.info("Hash table type: %s", table_type)
    device = "/device:GPU:0" if table_type == "gpucuco" else "/device:CPU:0"
    with tf.device(device):
      if hash_filter is None:
        hash_filter = hash_filter_ops.create_dummy_hash_filter(
            name_suffix=name_suffix)
      if sync_client is None:
        sync_client = distributed_serving_ops.create_dummy_sync_client()
    learning_rate_list = []
    for name in cc.table_names:
      config = cc.configs[name]
      if len(config.learning_rate_fns) != len(
          config.table_config.entry_config.segments):
        raise ValueError(
            f"table {name}: {len(config.learning_rate_fns)} learning rate "
            f"functions for {len(config.table_config.entry_config.segments)} "
            "segments; they must be equal")
      learning_rate_list.extend(config.call_learning_rate_fns_fewer_ops())
    if tf.compat.v1.get_default_graph() is not cc.mconfig_tensor.graph:
      cc = cc._replace(mconfig_tensor=tf.convert_to_tensor(cc.mconfig))
    return cls(cc=cc,
               hash_filter=hash_filter,
               sync_client=sync_client,
               learning_rate_list=learning_rate_list,
               name_suffix=name_suffix,
               saver_parallel=saver_parallel,
               device=device)

  @classmethod
  def from_configs(cls, configs: Dict[str, entry.HashTableConfigInstance],
                   *args, **kwargs) -> "MultiHashTable":
    return cls.from_cached_config(convert_to_cached_config(configs), *args,
                                  **kwargs)

  @staticmethod
  def from_proto(table_proto, import_scope=None) -> "MultiHashTable":
    return MultiHashTable(table_proto=table_proto, import_scope=import_scope)

  def to_proto(self, export_scope=None):
    if export_scope is not None and not self._handle.name.startswith(
        export_scope):
      return None
    proto = multi_hash_table_ops_pb2.MultiHashTableProto()
    proto.dims.extend(self._dims)
    proto.slot_expire_time_config = self._slot_expire_time_config
    proto.table_names.extend(self._table_names)
    proto.learning_rate_tensor = ops.strip_name_scope(self._learning_rate.name,
                                                      export_scope)
    proto.saver_parallel = self._saver_parallel
    proto.shared_name = self._shared_name
    proto.initializer_op = ops.strip_name_scope(self._initializer.name,
                                                export_scope)
    proto.handle_tensor = ops.strip_name_scope(self._handle.name, export_scope)
    return proto

  @classmethod
  def _check_and_insert_name(cls, name: str):
    meta = graph_meta.get_meta("multi_hash_table_metadata",
                               MultiHashTableMetadata)
    if name in meta.name_set:
      raise ValueError(f"shared_name {name} has already been used in this "
                       "graph; pass a different name_suffix")
    meta.name_set.add(name)

  @property
  def table_names(self) -> Tuple[str]:
    return self._table_names

  @property
  def handle(self) -> tf.Tensor:
    return self._handle

  @property
  def shared_name(self) -> str:
    return self._shared_name

  @property
  def initializer(self) -> tf.Operation:
    return self._initializer

  def get_table_dim_sizes(self) -> Tuple[int]:
    return self._dims

  # BaseMultiTypeHashTable.

  def assign(self,
             slot_to_id_and_value: Dict[str, Tuple[tf.Tensor, tf.Tensor]],
             req_time: tf.Tensor = None,
             enable_inter_table_parallelism: bool = False) -> "MultiHashTable":
    del enable_inter_table_parallelism  # tables run in one op call anyway
    ragged_id = self.get_ragged_id(
        {k: _as_int64(v[0]) for k, v in slot_to_id_and_value.items()})
    flat_value = self.get_flat_value(
        {k: _as_float32(v[1]) for k, v in slot_to_id_and_value.items()})
    return self.raw_assign(ragged_id, flat_value, req_time)

  def assign_add(self,
                 slot_to_id_and_value: Dict[str, Tuple[tf.Tensor, tf.Tensor]],
                 req_time: tf.Tensor = None) -> "MultiHashTable":
    ragged_id = self.get_ragged_id(
        {k: _as_int64(v[0]) for k, v in slot_to_id_and_value.items()})
    flat_value = self.get_flat_value(
        {k: _as_float32(v[1]) for k, v in slot_to_id_and_value.items()})
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_assign_add(
            mtable=self._handle,
            id=ragged_id.values,
            id_split=ragged_id.row_splits,
            value=flat_value,
            update_time=_req_time(req_time)))

  def reinitialize(self, slot: str,
                   ids: tf.Tensor) -> Tuple["MultiHashTable", tf.Tensor]:
    """Re-initializes ids of one table; status -1 unknown table, 0 new, 1 existed."""
    new_handle, status = hash_table_ops.monolith_multi_hash_table_reinitialize(
        mtable=self._handle, table_name=slot, id=_as_int64(ids))
    return self._copy_with_new_table(new_handle), status

  def lookup(self, slot_to_id: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    ragged_id = self.get_ragged_id(
        {k: _as_int64(v) for k, v in slot_to_id.items()})
    embeddings = self.get_embeddings(ragged_id, self.raw_lookup(ragged_id))
    return {k: v for k, v in embeddings.items() if k in slot_to_id}

  def lookup_entry(self, slot_to_id: Dict[str, tf.Tensor],
                   enable_inter_table_parallelism: bool = False):
    """Serialized EntryDump of every id, by table name."""
    del enable_inter_table_parallelism
    ragged_id = self.get_ragged_id(
        {k: _as_int64(v) for k, v in slot_to_id.items()})
    entries = hash_table_ops.monolith_multi_hash_table_lookup_entry(
        mtable=self._handle,
        id=ragged_id.values,
        id_split=ragged_id.row_splits)
    per_table = tf.split(entries, ragged_id.row_lengths())
    return {
        name: value for name, value in zip(self._table_names, per_table)
        if name in slot_to_id
    }

  def apply_gradients(self,
                      slot_to_id_and_grad: Dict[str, Tuple[tf.Tensor,
                                                           tf.Tensor]],
                      global_step: tf.Tensor,
                      req_time: tf.Tensor = None) -> "MultiHashTable":
    ragged_id = self.get_ragged_id(
        {k: _as_int64(v[0]) for k, v in slot_to_id_and_grad.items()})
    flat_grad = self.get_flat_value(
        {k: _as_float32(v[1]) for k, v in slot_to_id_and_grad.items()})
    return self.raw_apply_gradients(ragged_id, flat_grad, global_step,
                                    req_time)

  def save(self,
           basename: tf.Tensor,
           compression_type: str = "SNAPPY") -> "MultiHashTable":
    """Saves the tables to `basename-SSSSS-of-NNNNN` and `.meta-` files.

    compression_type: "SNAPPY", the original's format, or "" for
    uncompressed shards (faster to write and read; the original cannot
    read them). restore() reads either.
    """
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_save(
            mtable=self._handle,
            basename=basename,
            nshards=self._saver_parallel,
            slot_expire_time_config=self._slot_expire_time_config,
            compression_type=compression_type))

  def restore(self, basename: tf.Tensor,
              strict: bool = False) -> "MultiHashTable":
    """Restores the checkpoint at `basename`, replacing the tables' entries.

    Every table the checkpoint holds is emptied first and then holds exactly
    the checkpoint's entries. A table the checkpoint lacks keeps its entries
    and a checkpoint table the graph lacks is skipped: both are logged as
    warnings, or with strict=True fail (FailedPreconditionError) before any
    table is touched. A checkpoint whose files come from different saves
    fails with DataLossError naming the file.
    """
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_restore(mtable=self._handle,
                                                         basename=basename,
                                                         strict=strict))

  def feature_stat(self, basename: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(table names, entry counts) of a saved checkpoint, from its meta files."""
    return hash_table_ops.monolith_multi_hash_table_feature_stat(basename)

  def as_op(self, *args, **kwargs) -> tf.Operation:
    del args, kwargs
    return self._handle.op

  def _copy_with_new_table(self, handle: tf.Tensor) -> "MultiHashTable":
    copied = copy.copy(self)
    copied._handle = handle
    return copied

  # Fused ops for synchronous training: ids of every table and shard in one
  # tensor, without mapping them to table names.

  def fused_lookup(self,
                   ids: tf.Tensor,
                   fused_slot_size: tf.Tensor,
                   num_of_shards: int,
                   req_time: tf.Tensor = None) -> Tuple[tf.Tensor]:
    return hash_table_ops.monolith_multi_hash_table_fused_lookup(
        mtable=self._handle,
        ids=ids,
        fused_slot_size=fused_slot_size,
        num_of_shards=num_of_shards,
        req_time=_req_time(req_time))

  def fused_apply_gradient(
      self,
      ids: tf.Tensor,
      indices: tf.Tensor,
      fused_slot_size: tf.Tensor,
      id_grads: tf.Tensor,
      id_offsets: tf.Tensor,
      grad_offsets: tf.Tensor,
      global_step: tf.Tensor,
      req_time: tf.Tensor,
      num_of_shards: int,
      enable_grad_accumulation: bool = False) -> "MultiHashTable":
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_fused_optimize(
            mtable=self._handle,
            ids=ids,
            indices=indices,
            fused_slot_size=fused_slot_size,
            id_grads=id_grads,
            id_offsets=id_offsets,
            grad_offsets=grad_offsets,
            learning_rate_tensors=self._learning_rate,
            req_time=req_time,
            global_step=global_step,
            num_of_shards=num_of_shards,
            enable_grad_accumulation=enable_grad_accumulation))

  # RawMultiTypeHashTable.

  def raw_lookup(self, ragged_id: tf.RaggedTensor) -> tf.Tensor:
    return hash_table_ops.monolith_multi_hash_table_lookup(
        mtable=self._handle, id=ragged_id.values, id_split=ragged_id.row_splits)

  def raw_apply_gradients(self,
                          ragged_id: tf.RaggedTensor,
                          flat_grad: tf.Tensor,
                          global_step: tf.Tensor,
                          req_time: tf.Tensor = None) -> "MultiHashTable":
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_optimize(
            mtable=self._handle,
            id=ragged_id.values,
            id_split=ragged_id.row_splits,
            value=flat_grad,
            learning_rate=self._learning_rate,
            update_time=_req_time(req_time),
            global_step=global_step))

  def raw_assign(self,
                 ragged_id: tf.RaggedTensor,
                 flat_value: tf.Tensor,
                 req_time: tf.Tensor = None) -> "MultiHashTable":
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_assign(
            mtable=self._handle,
            id=ragged_id.values,
            id_split=ragged_id.row_splits,
            value=flat_value,
            update_time=_req_time(req_time)))

  def get_embeddings(self, ragged_id: tf.RaggedTensor,
                     value: tf.Tensor) -> Dict[str, tf.Tensor]:
    values = get_list_from_flat_value(ragged_id, self._dims, value)
    return dict(zip(self._table_names, values))

  def get_ragged_id(self, slot_to_id: Dict[str, tf.Tensor]) -> tf.RaggedTensor:
    self._check_names(slot_to_id)
    empty_id = tf.constant([], dtype=tf.int64)
    return concat_1d_tensors(
        *[slot_to_id.get(name, empty_id) for name in self._table_names])

  def get_flat_value(self, slot_to_value: Dict[str, tf.Tensor]) -> tf.Tensor:
    self._check_names(slot_to_value)
    empty_value = tf.zeros([0, 1])
    return flatten_n_tensors(
        *[slot_to_value.get(name, empty_value) for name in self._table_names])

  def _check_names(self, by_name: Dict[str, tf.Tensor]):
    unknown = sorted(set(by_name) - set(self._table_names))
    if unknown:
      raise ValueError(f"unknown table names {unknown}; the tables are "
                       f"{list(self._table_names)}")


class MultiHashTableCheckpointSaverListener(
    tf.compat.v1.train.CheckpointSaverListener):
  """Saves every MultiHashTable of the graph before the Saver's checkpoint.

  Tables go to `<asset dir of the checkpoint><shared_name>`; with
  write_ckpt_info, `ckpt.info-<step>` (text CkptInfo, entries per table)
  is written beside the checkpoint. After each save, the asset directories
  and ckpt.info files of the checkpoints that the Saver deleted (max_to_keep)
  are deleted too; see save_utils for the rule.
  """

  def __init__(self,
               basename: str,
               write_ckpt_info: bool = True,
               compression_type: str = "SNAPPY"):
    """basename: the checkpoint path prefix passed to the Saver;
    compression_type: of the table shards, see MultiHashTable.save."""
    super().__init__()
    self._write_ckpt_info = write_ckpt_info
    self._compression_type = compression_type
    self._helper = save_utils.SaveHelper(basename)
    self._table_id_to_placeholder = {}
    self._features_counts_tuples = []
    self._save_op = self._build_save_graph()

  def before_save(self, sess, global_step_value):
    # Before the Saver, so the checkpoint file only names complete tables.
    logging.info("Saving MultiHashTables.")
    base_dir = self._helper.get_ckpt_asset_dir(
        self._helper.get_ckpt_prefix(global_step_value))
    tf.io.gfile.makedirs(base_dir)
    feed_dict = {
        self._table_id_to_placeholder[id(table)]: base_dir + table.shared_name
        for table in tf.compat.v1.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY)
    }
    sess.run(self._save_op,
             feed_dict=feed_dict,
             options=tf.compat.v1.RunOptions(timeout_in_ms=_TIMEOUT_IN_MS))
    logging.info("Saved MultiHashTables.")
    if self._write_ckpt_info:
      self._write_info(sess, feed_dict, global_step_value)

  def after_save(self, session, global_step_value):
    # The Saver has written this step and deleted the checkpoints past
    # max_to_keep: delete their tables and ckpt.info files as well.
    del session
    self._helper.delete_stale_checkpoint_files(global_step_value)

  def _write_info(self, sess, feed_dict, global_step_value):
    counts_by_feature = collections.defaultdict(int)
    for features, counts in sess.run(self._features_counts_tuples,
                                     feed_dict=feed_dict):
      for feature, count in zip(features.tolist(), counts.tolist()):
        name = feature.decode() if isinstance(feature, bytes) else feature
        counts_by_feature[name] += count
    info = ckpt_info_pb2.CkptInfo()
    for feature, count in counts_by_feature.items():
      info.feature_counts[feature] = count
    path = self._helper.get_ckpt_info_path(global_step_value)
    tmp_path = path + ".tmp"
    with tf.io.gfile.GFile(tmp_path, "w") as f:
      f.write(str(info))
    tf.io.gfile.rename(tmp_path, path, overwrite=True)
    logging.info("Wrote %s.", path)

  def _build_save_graph(self) -> tf.Operation:
    save_ops = []
    for table in ops.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY):
      basename = tf.compat.v1.placeholder(tf.string, shape=[])
      self._table_id_to_placeholder[id(table)] = basename
      save_op = table.save(basename=basename,
                           compression_type=self._compression_type).as_op()
      save_ops.append(save_op)
      if self._write_ckpt_info:
        with tf.control_dependencies([save_op]):
          self._features_counts_tuples.append(table.feature_stat(basename))
    with tf.control_dependencies(save_ops):
      return tf.no_op(name="multi_hashtable_save_all")


class MultiHashTableCheckpointRestorerListener(
    basic_restore_hook.CheckpointRestorerListener):
  """Restores every MultiHashTable of the graph from the latest checkpoint."""

  def __init__(self, basename: str, ps_monitor=None):
    """basename: the checkpoint path prefix; ps_monitor: restore only the
    devices it reports uninitialized (is_ps_uninitialized(session, device))."""
    super().__init__()
    self._basename = basename
    self._ps_monitor = ps_monitor
    self._helper = save_utils.SaveHelper(basename)
    self._table_id_to_placeholder = {}
    self._restore_ops_per_device = self._build_restore_graph()

  def before_restore(self, session):
    ckpt_prefix = tf.train.latest_checkpoint(os.path.dirname(self._basename))
    if not ckpt_prefix:
      logging.info("No checkpoint in %s; hash tables are not restored.",
                   os.path.dirname(self._basename))
      return
    logging.info("Restoring hash tables from %s.", ckpt_prefix)
    asset_dir = self._helper.get_ckpt_asset_dir(ckpt_prefix)
    tables = tf.compat.v1.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY)
    feed_dict = {
        self._table_id_to_placeholder[id(t)]: asset_dir + t.shared_name
        for t in tables
    }
    session.run([t.initializer for t in tables])
    restore_ops = []
    for device, device_ops in self._restore_ops_per_device.items():
      if not self._ps_monitor or self._ps_monitor.is_ps_uninitialized(
          session, device):
        restore_ops.extend(device_ops)
    session.run(restore_ops,
                feed_dict=feed_dict,
                options=tf.compat.v1.RunOptions(timeout_in_ms=_TIMEOUT_IN_MS))
    logging.info("Restored hash tables.")

  def _build_restore_graph(self):
    restore_ops_per_device = collections.defaultdict(list)
    for table in ops.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY):
      basename = tf.compat.v1.placeholder(tf.string, shape=[])
      self._table_id_to_placeholder[id(table)] = basename
      restore_op = table.restore(basename=basename).as_op()
      restore_ops_per_device[table.handle.device].append(restore_op)
    return restore_ops_per_device


class MultiHashTableRestorerSaverListener(
    tf.compat.v1.train.CheckpointSaverListener):
  """Restores the tables right after each save: restore drops the entries
  that save skipped as expired."""

  def __init__(self, ckpt_prefix: str):
    self._listener = MultiHashTableCheckpointRestorerListener(ckpt_prefix)

  def after_save(self, session, global_step_value):
    del global_step_value
    self._listener.before_restore(session)


ops.register_proto_function(
    _MULTI_HASH_TABLE_GRAPH_KEY,
    proto_type=multi_hash_table_ops_pb2.MultiHashTableProto,
    to_proto=MultiHashTable.to_proto,
    from_proto=MultiHashTable.from_proto)

ops.NotDifferentiable("IsHashTableInitialized")
