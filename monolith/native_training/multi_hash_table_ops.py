"""MultiHashTable: many embedding hash tables fused in one TF resource.

Training code maps each table name (a feature slot) to int64 ids; one op call
serves all tables: `lookup`, `assign`, `assign_add`, `apply_gradients`
(the tables' optimizers), `reinitialize`, and `save` / `restore` in the
original's sharded checkpoint format. The checkpoint listeners save the
tables beside a tf.compat.v1 Saver checkpoint and restore them before it.

    table = MultiHashTable.from_configs({"slot_1": config_1, ...})
    embeddings = table.lookup({"slot_1": ids_1, ...})
    table = table.apply_gradients({"slot_1": (ids_1, grads_1)}, global_step)

Errors: arguments that are wrong when the graph is built (an unknown table
name, an input whose rank or dtype the ops reject) raise ValueError at
once; what is known only when the op runs (sizes, a
non-scalar global step fed later, a SERVING table asked to train) raises the
`tf.errors` exception the kernel reports, naming the input.
"""

import abc
import collections
import collections.abc
import contextlib
import copy
import dataclasses
import glob
import math
import numbers
import os
import re
import time
from typing import (Any, Dict, List, NamedTuple, Optional, Sequence, Set,
                    Tuple)

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import kernels
from tensorflow.python.framework import ops
from tensorflow.python.ops import resources

from monolith.native_training import basic_restore_hook
from monolith.native_training import distributed_serving_ops
from monolith.native_training import entry
from monolith.native_training import graph_meta
from monolith.native_training import hash_filter_ops
from monolith.native_training import multi_hash_table_ops_pb2
from monolith.native_training import save_utils
from monolith.native_training import utils
from monolith.native_training.hash_table_utils import infer_dim_size
from monolith.native_training.model_export.export_context import is_exporting
from monolith.native_training.model_export.export_context import \
    is_exporting_standalone
from monolith.native_training.multi_type_hash_table import BaseMultiTypeHashTable
from monolith.native_training.proto import ckpt_info_pb2
from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2
from monolith.native_training.runtime.ops import gen_monolith_ops

hash_table_ops = gen_monolith_ops

# The deadline of a save or restore run, as the original's (its listeners
# took no other); the listeners' timeout_secs.
_TIMEOUT_SECS = 60 * 60
_MULTI_HASH_TABLE_GRAPH_KEY = "monolith_multi_hash_tables"

# A table's checkpoint files add up to ~50 bytes to its shared name
# (".meta-00000-of-00001-tmp-<16 hex>.partial"), of a file name's 255.
_MAX_SHARED_NAME_BYTES = 200
# What follows a table's name in its shard files (sharded_files.h).
_SHARD_SUFFIX_RE = re.compile(r"-[0-9]{5}-of-[0-9]{5}")
# Shard numbers have five digits (checkpoint.h's kMaxCheckpointShards).
_MAX_CHECKPOINT_SHARDS = 99999


def _check_shared_name(shared_name: str, source: str) -> None:
  """Refuses a shared name that cannot name a table's checkpoint files
  ("<asset dir><shared name>[.meta]-SSSSS-of-NNNNN"): a path separator
  would write them outside the asset directory, and a name ending in
  ".meta" or holding a shard suffix would name another table's files (a
  save then deletes or overwrites them). `source` says where the name came
  from, for the error."""
  problem = None
  if any(c in "/\\" or ord(c) < 32 or c == "\x7f" for c in shared_name):
    problem = "holds a path separator or a control character"
  elif shared_name.endswith(".meta"):
    problem = (f"ends with .meta: its files would be named as the meta "
               f"files of table {shared_name[:-len('.meta')]!r}")
  elif _SHARD_SUFFIX_RE.search(shared_name):
    problem = ("holds a shard suffix (-SSSSS-of-NNNNN): its files would be "
               "named as another table's")
  elif re.fullmatch(r"hash_filter(_[0-9]+)?", shared_name):
    # hash_filter_ops saves filter i as "<asset dir>hash_filter_<i>" and
    # the PS count as "hash_filter.num_ps", as a PS group "hash_filter"
    # records its own.
    problem = ("is named as the hash filters' checkpoint files "
               "(hash_filter_<ps>, hash_filter.num_ps): their saves would "
               "delete or overwrite each other's")
  elif len(shared_name.encode()) > _MAX_SHARED_NAME_BYTES:
    problem = (f"is longer than {_MAX_SHARED_NAME_BYTES} bytes: its files' "
               "names would pass the file system's 255")
  if problem:
    raise ValueError(f"{source}: the shared name {shared_name!r} names the "
                     f"table's checkpoint files, so it must not be as it is: "
                     f"it {problem}")


# Per table name: (ids, values) or (ids, gradients).
IdsAndValues = Dict[str, Tuple[tf.Tensor, tf.Tensor]]


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
  # The first table's serialized SlotExpireTimeConfig that sets a field, as
  # the original's (kept in the meta-graph proto; saves apply each table's
  # own).
  slot_expire_time_config: bytes


def infer_dims(configs: Dict[str, entry.HashTableConfigInstance]) -> List[int]:
  """The dim of each table of `configs` (the sum of its segments' dims), in
  sorted table-name order, as the tables and `get_table_dim_sizes` order
  them."""
  return [infer_dim_size(configs[name].table_config) for name in sorted(configs)]


def convert_to_cached_config(
    configs: Dict[str, entry.HashTableConfigInstance]) -> CachedConfig:
  """Builds the multi-table config of `configs`.

  While exporting (`export_context.enter_export_mode`), every table gets
  SERVING entries (values only, encoded by the segments' compressors).

  Args:
    configs: the table configs by table name.

  Returns:
    The `CachedConfig`, tables in sorted name order.

  Raises:
    ValueError: `configs` is empty.
    TypeError: `configs` is not a dict of HashTableConfigInstances by str.
  """
  if not isinstance(configs, collections.abc.Mapping):
    raise TypeError("configs must be a dict of table name -> "
                    "entry.HashTableConfigInstance, got "
                    f"{type(configs).__name__}")
  if not configs:
    raise ValueError("configs is empty: a MultiHashTable needs at least one "
                     "table")
  for name, config in configs.items():
    if not isinstance(name, str):
      raise TypeError(f"table names must be str, got the "
                      f"{type(name).__name__} {name!r}")
    if not isinstance(config, entry.HashTableConfigInstance):
      raise TypeError(
          f"configs[{name!r}] must be an entry.HashTableConfigInstance, got "
          f"{type(config).__name__} (wrap a table config: "
          "HashTableConfigInstance(table_config, [a learning rate per "
          "segment]))")
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
      for i, segment in enumerate(table_config.entry_config.segments):
        # Else the export succeeds and TF Serving fails the model load.
        if not segment.HasField("comp_config"):
          raise ValueError(
              f"table {name}: segment {i} has no comp_config, which its "
              "SERVING entries (an exported model's) need: give it one, "
              "e.g. entry.Fp16Compressor() in entry.CombineAsSegment")
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


_GPUCUCO = "gpucuco"


def table_type(cc: CachedConfig) -> Optional[str]:
  """The tables' type: "gpucuco", or for CPU tables "cuckoo" or None (a
  config without one); GPU and CPU tables cannot share a MultiHashTable."""
  types = {
      name: (config.table_config.WhichOneof("type")
             if config.table_config.HasField("type") else None)
      for name, config in cc.configs.items()
  }
  if len({t == _GPUCUCO for t in types.values()}) > 1:
    raise ValueError(f"gpucuco tables and CPU tables cannot share a "
                     f"MultiHashTable (one resource on one device); got "
                     f"{types}")
  named = [t for t in types.values() if t is not None]
  return named[0] if named else None


def check_gpu_tables_supported(in_this_process: bool = True) -> None:
  """Raises RuntimeError unless gpucuco tables can run here.

  They need the op library built with `--config=cuda` (which adds their GPU
  kernels) and, placed in this process (`in_this_process`), a visible GPU:
  without either TF would place their ops elsewhere or fail at run time, so
  this says so when the graph is built. Tables placed on another task (a
  PS's device) need a GPU there, which TF's placement checks.
  """
  devices = {
      k.device_type for k in kernels.get_registered_kernels_for_op(
          "MonolithMultiHashTableLookup").kernel
  }
  if "GPU" not in devices:
    raise RuntimeError(
        "gpucuco tables need the op library built with CUDA: this "
        "libmonolith_ops.so has CPU kernels only (build with ./bazelw "
        "build --config=cuda ...; see docs/gpu.md)")
  if in_this_process and not tf.config.list_physical_devices("GPU"):
    raise RuntimeError("gpucuco tables need a GPU, and TensorFlow sees none "
                       "(see docs/gpu.md)")


def all_serving(mconfig: bytes) -> bool:
  """Whether every table of a serialized MultiEmbeddingHashTableConfig has
  SERVING entries (tables created in export mode)."""
  config = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig.FromString(
      mconfig)
  return all(c.entry_config.entry_type ==
             embedding_hash_table_pb2.EntryConfig.SERVING
             for c in config.configs)


def _creation_config(create_op: tf.Operation) -> Optional[bytes]:
  """The serialized MultiEmbeddingHashTableConfig a table creation op
  takes: its config input, a constant in our graphs and the original's;
  None where it is not a constant."""
  config = create_op.inputs[0].op
  if config.type != "Const":
    return None
  return tf.make_ndarray(config.get_attr("value")).item()


def _creates_serving_tables(create_op: tf.Operation) -> bool:
  """Whether a table creation op makes SERVING tables only; False where
  its config is not a constant."""
  mconfig = _creation_config(create_op)
  return mconfig is not None and all_serving(mconfig)


def _check_proto_tables(proto: multi_hash_table_ops_pb2.MultiHashTableProto,
                        create_op: tf.Operation) -> None:
  """Raises ValueError where a proto's table names and dims disagree with
  each other or with its creation op's config: lookups would split the
  tables' rows wrongly, silently (a damaged or hand-edited meta graph)."""
  what = f"MultiHashTableProto of {proto.shared_name!r}"
  if len(proto.dims) != len(proto.table_names):
    raise ValueError(f"{what}: {len(proto.table_names)} table names but "
                     f"{len(proto.dims)} dims")
  if any(dim <= 0 for dim in proto.dims):
    raise ValueError(f"{what}: dims {list(proto.dims)} are not all positive")
  mconfig = _creation_config(create_op)
  if mconfig is None:
    return
  config = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig.FromString(
      mconfig)
  # In order: the kernel takes row t of the ids as its table t.
  tables = list(zip(proto.table_names, proto.dims))
  created = [(name, infer_dim_size(table_config))
             for name, table_config in zip(config.names, config.configs)]
  if tables != created:
    raise ValueError(
        f"{what}: tables (name, dim) {tables} are not the {created} its "
        f"creation op {create_op.name} makes, in that order")


def learning_rate_tensor(cc: CachedConfig) -> tf.Tensor:
  """The learning rates the tables' optimizers apply, as one float32 vector.

  Per table in `cc.table_names` order, per segment in segment order: the
  config's `learning_rate_tensor` when one is set (a vector with a rate per
  segment; `DistributedMultiTypeHashTable` sets it to the rates it computed
  on the worker), else its learning-rate functions, called now; zeros for
  SERVING tables. The ops are built under the caller's device scope.

  Args:
    cc: the tables' configs.

  Returns:
    A float32 vector with one rate per segment of every table.

  Raises:
    ValueError: a table does not have one learning-rate function per
      segment, or its `learning_rate_tensor` is known to have another
      number of rates.
  """
  if all_serving(cc.mconfig):
    # SERVING tables are never optimized: zeros, not the functions' ops (a
    # schedule on the global step would put into the serving graph a
    # variable that a tables-only export does not restore).
    return tf.zeros([
        sum(
            len(cc.configs[name].table_config.entry_config.segments)
            for name in cc.table_names)
    ], tf.float32)
  pieces = []
  pending = []  # Rates of consecutive tables without a learning_rate_tensor.
  called = {}  # A schedule shared by many tables is called once.
  for name in cc.table_names:
    config = cc.configs[name]
    num_segments = len(config.table_config.entry_config.segments)
    if len(config.learning_rate_fns) != num_segments:
      raise ValueError(
          f"table {name}: {len(config.learning_rate_fns)} learning rate "
          f"functions for {num_segments} segments; they must be equal")
    rates = config.learning_rate_tensor
    if rates is None:
      rates_of_table = config.call_learning_rate_fns_fewer_ops(called)
      for i, rate in enumerate(rates_of_table):
        shape = (rate.shape if tf.is_tensor(rate) else
                 tf.TensorShape(np.shape(rate)))
        if shape.rank not in (None, 0):
          raise ValueError(
              f"table {name}: learning_rate_fns[{i}] gives a rate of shape "
              f"{shape}, not a scalar (one rate per segment)")
      pending.extend(rates_of_table)
      continue
    if not tf.is_tensor(rates):
      # set_learning_rate_tensor takes anything: a list or an array too.
      try:
        rates = tf.convert_to_tensor(rates)
      except (TypeError, ValueError) as e:
        raise ValueError(f"table {name}: learning_rate_tensor is not a "
                         f"tensor of rates: {e}") from None
    if not (rates.dtype.is_floating or rates.dtype.is_integer):
      raise ValueError(f"table {name}: learning_rate_tensor is of dtype "
                       f"{rates.dtype.name}, not a number")
    shape = rates.shape
    if shape.num_elements() not in (None, num_segments):
      raise ValueError(f"table {name}: learning_rate_tensor has "
                       f"{shape.num_elements()} rates for "
                       f"{num_segments} segments; they must be equal")
    if pending:
      pieces.append(tf.cast(tf.stack(pending), tf.float32))
      pending = []
    if shape.rank != 1:
      rates = tf.reshape(rates, [-1])
    # tf.cast returns a float32 tensor as it is, through TF's dispatch:
    # a tenth of a millisecond per table and PS.
    pieces.append(rates if rates.dtype == tf.float32 else
                  tf.cast(rates, tf.float32))
  if pending:
    pieces.append(tf.cast(tf.stack(pending), tf.float32))
  return _joined_rates(pieces)


def _joined_rates(pieces: List[tf.Tensor]) -> tf.Tensor:
  """The concatenation of `pieces`, float32 vectors.

  Where they are every output of one split, in order (the slices of each
  PS's rate vector that `DistributedMultiTypeHashTable` hands its tables'
  configs), that split's input: joining them back was a Reshape per table
  on every PS when the graph was built (most of its build time with
  hundreds of tables on tens of PS tasks) and a split and concat per PS
  at every step.
  """
  split = pieces[0].op
  if (split.type == "SplitV" and len(pieces) == len(split.outputs) and
      all(p.op is split and p.value_index == i for i, p in enumerate(pieces))
      and split.inputs[0].dtype == tf.float32 and
      split.inputs[0].shape.rank == 1):
    return split.inputs[0]
  return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=0)


@dataclasses.dataclass
class MultiHashTableMetadata:
  """Per-graph record of the shared names in use: each one's creation op
  (its name; "" while it is being built)."""
  creators: Dict[str, str] = dataclasses.field(default_factory=dict)


class PsShard(NamedTuple):
  """The place of a PS's MultiHashTable in a DistributedMultiTypeHashTable."""
  # The number of PS tasks the tables are sharded over.
  num_ps: int
  # This table's PS: it holds the ids with floormod(id, num_ps) == ps_index.
  ps_index: int
  # The shared names of the group's tables are "<group_prefix>_<index>".
  group_prefix: str


def checked_table_names(names: Sequence[str], arg: str) -> List[str]:
  """`names` (argument `arg`) as a list: each a string, none twice.

  Raises:
    ValueError: `names` is a string itself, or holds a name twice or
      something other than a string.
  """
  if isinstance(names, (str, bytes)):
    raise ValueError(f"{arg} must be a list of table names, got the string "
                     f"{names!r}")
  names = list(names)
  for name in names:
    if not isinstance(name, str):
      raise ValueError(f"{arg} holds {name!r}, not a table name")
  twice = sorted(n for n, count in collections.Counter(names).items()
                 if count > 1)
  if twice:
    raise ValueError(f"{arg} names {twice} more than once")
  return names


def find_ps_checkpoints(directory: str, group_prefix: str) -> List[str]:
  """The checkpoints of a group of PS tables in a directory, by PS index.

  Looks for the meta files "<group_prefix>_<j>.meta-SSSSS-of-NNNNN" that
  saves of the group's tables (PS j's shared name, see `PsShard`) wrote, and
  their temporaries ("...-tmp-<save id>"): a save killed while renaming is
  restored through them, and a PS whose save was killed before it renamed
  anything must still count (restoring it then fails clearly instead of
  its ids being dropped).

  N, the number of PS tasks that saved, is what the saver listener recorded
  (or `DistributedMultiTypeHashTable.save`) in "<group_prefix>.num_ps"
  (`save_utils.write_ps_count`'s format) once every PS
  had saved: the tables of PS N and above are ignored (left by an earlier
  save of the step with more PS). Without that record (the original's
  checkpoints, saves of earlier versions) N is the highest PS
  index found plus one, so a checkpoint missing its last PS's tables reads
  as one of fewer PS: its ids are gone, and a restore may drop some of the
  others too (`ps_checkpoints_to_read` trusts N: where gcd(N, the new
  count) does not divide the real count, see docs/checkpoints.md).

  Args:
    directory: the directory, e.g. a checkpoint's asset directory.
    group_prefix: the group's shared-name prefix, e.g.
      "MonolithMultiHashTable".

  Returns:
    The basenames "<directory>/<group_prefix>_<j>" for j = 0 .. N-1, or []
    when there is none.

  Raises:
    tf.errors.NotFoundError: the tables of some PS below N are missing (an
      incomplete checkpoint).
    tf.errors.DataLossError: the PS count record is damaged, or marks a
      save of the group that did not finish (`save_utils.read_ps_count`),
      or a file names a PS index no save writes
      (`save_utils.ps_indices_in`).
  """
  indices = save_utils.ps_indices_in(
      directory, _ps_table_files(group_prefix, data_files=False))
  recorded = save_utils.read_ps_count(directory, group_prefix)
  if not indices and recorded is None:
    return []
  if recorded is None:
    num_ps = max(indices) + 1
    # The original's checkpoints, and earlier versions' saves,
    # carry no count: if the last PS's files were lost, its ids would be
    # dropped with no other sign.
    logging.warning(
        "%s records no PS count for %s_<j>: taking %d PS tasks from the "
        "files found (PS %s). If the job that saved it had more, their ids "
        "are lost, and a restore may drop others too (docs/checkpoints.md).",
        directory, group_prefix, num_ps, sorted(indices))
  else:
    num_ps = recorded
  missing = sorted(set(range(num_ps)) - indices)
  if missing:
    said = ("" if recorded is None else
            f" ({save_utils.ps_count_path(directory, group_prefix)} says "
            f"{recorded} PS tasks saved them)")
    raise tf.errors.NotFoundError(
        None, None,
        f"{directory} holds the tables {group_prefix}_<j> of PS "
        f"{sorted(indices)} but not of PS {missing}{said}: the checkpoint "
        "is incomplete")
  beyond = sorted(j for j in indices if j >= num_ps)
  if beyond:
    logging.warning(
        "Ignoring the tables %s_<j> of PS %s in %s: %s says %d PS tasks "
        "saved this checkpoint.", group_prefix, beyond, directory,
        save_utils.ps_count_path(directory, group_prefix), num_ps)
  return [
      os.path.join(directory, f"{group_prefix}_{j}") for j in range(num_ps)
  ]


def _ps_table_files(group_prefix: str, data_files: bool) -> "re.Pattern[str]":
  """The meta files (and with `data_files` the data files) of a group's PS
  tables, temporaries included; group 1 is the PS index."""
  meta = r"(\.meta)?" if data_files else r"\.meta"
  return re.compile(
      re.escape(group_prefix) +
      rf"_(0|[1-9][0-9]*){meta}-[0-9]{{5}}-of-[0-9]{{5}}(-tmp-.+)?")


def _local_table_files(shared_name: str) -> "re.Pattern[str]":
  """The data and meta files of a table saved as `shared_name`,
  temporaries included; groups: ".meta", the shard, the shard count, the
  temporary's suffix."""
  return re.compile(
      re.escape(shared_name) +
      r"(\.meta)?-([0-9]{5})-of-([0-9]{5})(-tmp-.+)?")


def _as_export_assets(basenames: Any) -> Any:
  """`basenames` (a path, or a list; tensors pass through), while exporting
  a standalone model (`export_context.enter_export_mode(STANDALONE)`), as
  tensors of the SavedModel's own copies of the saves' files. (A
  distributed export's tables restore on PS tasks, which read the paths
  as given.)

  Each path's save files (data and meta shards; one whole save, else
  ValueError) are added to the graph's
  `tf.compat.v1.GraphKeys.ASSET_FILEPATHS`: a SavedModel built with that
  collection (`Builder.add_meta_graph_and_variables(assets_collection=...)`)
  copies them into its assets/ folder, and its loader feeds their new
  paths. A SavedModel that read them where training wrote them would lose
  its tables once checkpoint rotation deleted them, and on any other host.

  Raises:
    RuntimeError: called inside a function graph (a tf.function, a tf.cond
      or tf.while_loop branch): the asset paths would go to the function's
      collection, not the graph's.
    ValueError: a path with no save files, or not one whole save, or
      beside temporaries (a save of it was cut short: killed while renaming
      its files, the final names mix two saves, which the restore op tells
      apart through the temporaries; restore it and save it again to
      export it), or two saves whose files share a name (the SavedModel
      would rename one).
  """
  if not is_exporting_standalone():
    return basenames
  if isinstance(basenames, (list, tuple)):
    return [_as_export_assets(b) for b in basenames]
  if not isinstance(basenames, str):
    return basenames  # a tensor: the caller's own (e.g. asset paths)
  if tf.compat.v1.get_default_graph().building_function:
    # The asset paths would go to the function's collection, not the
    # graph's: the SavedModel would read training's files.
    raise RuntimeError(
        f"exporting a standalone model: restore {basenames} outside any "
        "function graph (a tf.function, a tf.cond or tf.while_loop branch), "
        "so that its files become the SavedModel's assets")
  exported = graph_meta.get_meta("hash_table_export_assets", dict)
  if basenames in exported:
    return exported[basenames]
  directory, base = os.path.split(basenames)
  try:
    names = [n.rstrip("/") for n in utils.listdir(directory)]
  except tf.errors.NotFoundError:
    names = []
  pattern = _local_table_files(base)
  matches = [(n, pattern.fullmatch(n)) for n in sorted(names)]
  temporaries = [n for n, match in matches if match and match.group(4)]
  if temporaries:
    raise ValueError(
        f"exporting: the table checkpoint at {basenames} has temporaries "
        f"({', '.join(sorted(temporaries)[:3])}...): a save of it was cut "
        "short, and its files may mix two saves. Restore it into the tables "
        "and save them again, then export that save")
  files, shards = [], {"data": set(), "meta": set()}
  for name, match in matches:
    if match:
      files.append(os.path.join(directory, name))
      shards["meta" if match.group(1) else "data"].add(
          (int(match.group(2)), int(match.group(3))))
  if not files:
    raise ValueError(f"exporting: no table checkpoint at {basenames} (no "
                     f"file {base}(.meta)-SSSSS-of-NNNNN in "
                     f"{directory or '.'})")
  for kind, found in shards.items():
    if not utils.is_whole_shard_set(found):
      raise ValueError(
          f"exporting: the table checkpoint at {basenames} is not one whole "
          f"save (its {kind} shards: {sorted(found)}): a save killed while "
          "renaming its files? Restore it into the tables and save them "
          "again, then export that save")
  asset_names = graph_meta.get_meta("hash_table_export_asset_names", dict)
  for path in files:
    other = asset_names.setdefault(os.path.basename(path), path)
    if other != path:
      raise ValueError(
          f"exporting: {path} and {other} have one file name, which a "
          "SavedModel's assets/ folder holds once (it would rename one, and "
          "its restore would not find it)")
  # Outside the caller's control dependencies: the loader feeds the asset
  # tensors, which cuts them off from their ops' control inputs, so those
  # must fall on the restore op itself (e.g. on the table's initializer).
  with tf.control_dependencies(None):
    assets = [tf.constant(path, name="hash_table_asset") for path in files]
    for asset in assets:
      tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.ASSET_FILEPATHS,
                                     asset)
    # Any file names the basename: what follows it is the pattern's.
    exported[basenames] = tf.strings.regex_replace(
        assets[0], r"(\.meta)?-[0-9]{5}-of-[0-9]{5}$", "")
  logging.info("Exporting: the %d files of the table checkpoint %s are the "
               "SavedModel's assets.", len(files), basenames)
  return exported[basenames]


def _strict_by_default(strict: Optional[bool]) -> bool:
  """`strict`, or where None, whether exporting: a SavedModel whose table
  the checkpoint lacks (renamed since training) fails to load instead of
  serving zeros."""
  return is_exporting() if strict is None else strict


def _check_names_apart_from_ps_groups(tables: List["MultiHashTable"]) -> None:
  """Raises ValueError for a table that is not a PS table but is named as
  one of a group's (restores would read its files as that PS's)."""
  prefixes = {t.ps_shard.group_prefix for t in tables if t.ps_shard}
  for t in tables:
    if t.ps_shard is None:
      for prefix in prefixes:
        if re.fullmatch(re.escape(prefix) + r"_[0-9]+", t.shared_name):
          raise ValueError(
              f"table {t.shared_name} is not a PS table but is named as the "
              f"PS tables {prefix}_<i>: its checkpoint would be read as a "
              "PS's; give it another name_suffix")


def _has_checkpoint(basename: str) -> bool:
  """Whether a table save wrote `basename` (its meta files, or the
  temporaries of a save killed while renaming them); not another table's
  whose name starts so (a table "T.meta-v2" beside "T")."""
  files = _local_table_files(os.path.basename(basename))
  for path in tf.io.gfile.glob(glob.escape(basename) + ".meta-*"):
    match = files.fullmatch(os.path.basename(path.rstrip("/")))
    if match and match.group(1):  # a meta file
      return True
  return False


def _local_names_of_group(group_prefix: str) -> List[str]:
  """The shared names a local table of a PS group's configuration has:
  `distributed_ps_factory` names PS tables "<prefix>_<i>" and the local
  one "MonolithMultiHashTable_<suffix>", whose group prefix is
  "MonolithMultiHashTable" without a suffix, else the same name."""
  return [group_prefix + "_", group_prefix]


def _group_prefixes_of_local_name(shared_name: str) -> List[str]:
  """The prefixes of the PS groups a local table named `shared_name`
  corresponds to, in the order restores look for them (the inverse of
  `_local_names_of_group`)."""
  return ([shared_name[:-1]] if shared_name.endswith("_") else []) + [
      shared_name
  ]


def _ps_checkpoints_of_local_name(directory: str, shared_name: str,
                                  live_names: Set[str]) -> List[str]:
  """The checkpoints in `directory` of the PS group a local table named
  `shared_name` corresponds to (see `_local_names_of_group`). Not a group
  one of whose names is that of a table in `live_names` (the graph's
  tables): "<prefix>_1" is then that table's save, not PS 1's (a new
  table "user" beside a live "user_1" would take it for an incomplete
  group, one beside "user_20240101" for a damaged one)."""
  for prefix in _group_prefixes_of_local_name(shared_name):
    if any(f"{prefix}_{index}" in live_names for index, _ in
           save_utils.ps_files_in(directory,
                                  _ps_table_files(prefix, data_files=False))):
      continue
    old = find_ps_checkpoints(directory, prefix)
    if old:
      return old
  return []


def _check_unmarked_ps_count(directory: str, table: "MultiHashTable",
                             saved: bool) -> None:
  """Refuses to restore a PS table outside PS groups (see `set_ps_shard`)
  from a save by another number of PS tasks: it would keep the ids of old
  PS i on PS i, where lookups route by the new count and miss most of them.
  A save without a record (written before records were kept) is taken as
  one of this PS count, with a warning, where the table was `saved`.

  Raises:
    tf.errors.FailedPreconditionError: the save records another PS count.
  """
  num_ps, ps_index = table.ps_placement
  recorded = save_utils.read_ps_count(directory, table.shared_name)
  if recorded is None and saved:
    logging.warning(
        "%s, the table of PS %d of %d, has no PS count record (%s: a save "
        "from before such records were kept) and is not named "
        "<prefix>_%d, so it is restored as a save by %d PS tasks. If "
        "another number of PS tasks saved it, lookups will miss the ids "
        "that moved to another PS: restore into that number.",
        table.shared_name, ps_index, num_ps,
        save_utils.ps_count_path(directory, table.shared_name), ps_index,
        num_ps)
  if recorded is not None and recorded != num_ps:
    raise tf.errors.FailedPreconditionError(
        None, None,
        f"{table.shared_name}, the table of PS {ps_index} of {num_ps}, was "
        f"saved by {recorded} PS tasks ("
        f"{save_utils.ps_count_path(directory, table.shared_name)}) and is "
        f"not named <prefix>_{ps_index}, so it cannot be resharded: restore "
        f"into {recorded} PS tasks, or name the tables of PS i "
        "\"<prefix>_<i>\" (as distributed_ps_factory does) in the job that "
        "saves")


def ps_checkpoints_to_read(basenames: List[str], shard: PsShard) -> List[str]:
  """Which checkpoints of an old PS layout hold ids of `shard`'s table.

  Old PS j of N held the ids with id mod N == j; new PS i of M holds those
  with id mod M == i; both hold some id exactly when j and i are equal
  modulo gcd(N, M). So with the same count PS i reads only PS i's
  checkpoint, from 2 PS into 4 each PS reads one, from 2 into 3 all.

  Args:
    basenames: the checkpoints of the old PS tables, by index
      (`find_ps_checkpoints`).
    shard: the new table's place.

  Returns:
    The subset of `basenames` to restore from.
  """
  g = math.gcd(len(basenames), shard.num_ps)
  return [b for j, b in enumerate(basenames) if j % g == shard.ps_index % g]


def concat_1d_tensors(*args: tf.Tensor) -> tf.RaggedTensor:
  """Concatenates 1-D tensors into one ragged tensor, a row per tensor.

  Args:
    *args: the 1-D tensors, all of one dtype.

  Returns:
    A ragged tensor whose row i holds `args[i]` (rows are not validated).
  """
  values = tf.concat(args, axis=0)
  row_lengths = [tf.size(t) for t in args]
  return tf.RaggedTensor.from_row_lengths(values, row_lengths, validate=False)


def get_list_from_flat_value(key: tf.RaggedTensor, dims: Tuple[int],
                             flat_value: tf.Tensor) -> List[tf.Tensor]:
  """Splits a flat value into one [num_ids, dim] tensor per row of key.

  Args:
    key: ragged ids, a row per table.
    dims: the dim of each row's table.
    flat_value: the rows' values, flattened and concatenated in row order.

  Returns:
    Per row i, a float tensor of shape [len(key[i]), dims[i]].
  """
  values = tf.split(flat_value, key.row_lengths() * dims)
  return [tf.reshape(v, [-1, dim]) for v, dim in zip(values, dims)]


def flatten_n_tensors(*args: tf.Tensor) -> tf.Tensor:
  """Concatenates the tensors, each flattened, into one 1-D tensor."""
  return tf.concat([tf.reshape(t, [-1]) for t in args], axis=0)


class RawMultiTypeHashTable(abc.ABC):
  """Lookup/update API on one ragged id tensor, to keep transfers minimal.

  Row t of a ragged id tensor holds the ids of table t (tables in the
  table's order); flat values hold each row's [len(row), dim] values,
  flattened and concatenated in row order.
  """

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


def as_ids(ids: Any, table: str, flatten: bool = False) -> tf.Tensor:
  """The ids of table `table` as an int64 vector.

  Integer tensors of other widths are cast (uint64 ids past 2^63 keep their
  bits, as int64 feature ids); numbers and arrays are converted.

  Args:
    ids: the ids.
    table: the table's name, for errors.
    flatten: take ids of any shape, flattened, instead of a vector only.

  Raises:
    ValueError: the ids are not integers, or not 1-D, naming the table.
    TypeError: ragged or sparse ids.
  """
  if isinstance(ids, (tf.RaggedTensor, tf.SparseTensor)):
    raise TypeError(f"the ids of table {table} are a {type(ids).__name__}: "
                    "pass a 1-D tensor of every id (e.g. its .values)")
  tensor = _as_ids_dtype(ids, f"the ids of table {table}")
  if flatten:
    return tf.reshape(tensor, [-1])
  if tensor.shape.rank is not None and tensor.shape.rank != 1:
    raise ValueError(f"the ids of table {table} must be 1-D, got shape "
                     f"{tensor.shape} (e.g. tf.reshape(ids, [-1]))")
  return tensor


def check_table_names(by_name: Any, table_names: Sequence[str]) -> None:
  """Checks that `by_name` is a dict keyed by some of `table_names`.

  Raises:
    TypeError: not a dict (e.g. a list of the ids).
    ValueError: an unknown table name.
  """
  if not isinstance(by_name, collections.abc.Mapping):
    raise TypeError("expected a dict keyed by table name (one of "
                    f"{list(table_names)}), got {type(by_name).__name__}")
  unknown = sorted(set(by_name) - set(table_names))
  if unknown:
    raise ValueError(f"unknown table names {unknown}; the tables are "
                     f"{list(table_names)}")


def check_pairs(slot_to_id_and_value: Dict[str, Any]) -> None:
  """Checks that every table's item is a pair (ids, values or gradients).

  Raises:
    TypeError: an item is not a tuple or list of two, naming the table.
  """
  for name, pair in slot_to_id_and_value.items():
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
      raise TypeError(f"table {name}: expected a pair (ids, values), got "
                      f"{type(pair).__name__}" +
                      (f" of {len(pair)}" if isinstance(pair, (tuple, list))
                       else ""))


def as_values(values: Any, table: str) -> tf.Tensor:
  """The values (or gradients) of table `table` as a float32 tensor.

  Floating tensors of other widths are cast; numbers and arrays converted.

  Raises:
    ValueError: the values are not floating point, naming the table.
  """
  return _as_dtype(values, tf.float32, f"the values of table {table}")


def check_values_shape(values: tf.Tensor, ids: tf.Tensor, dim: int,
                       table: str) -> bool:
  """Checks table `table`'s values against its ids where shapes are known.

  The tables' values cross to the kernels flattened and concatenated, so a
  table given too many floats would lend them to the next table. Values
  are [len(ids), dim] (the documented shape), or those floats in another
  shape of last dimension `dim`, or flat, as the original accepts.

  Args:
    values: float32 values (or gradients) of the ids.
    ids: the ids, any shape.
    dim: the table's dimension.
    table: the table's name, for errors.

  Returns:
    Whether both sizes are known (and agree): if not, check them at run
    time.

  Raises:
    ValueError: the shapes disagree where they are known.
  """
  shape = values.shape
  num_ids = ids.shape.num_elements()
  num_values = shape.num_elements()
  if num_ids == 0 and num_values == 0:
    return True  # No ids, no values, whatever their shape (e.g. [0, 1]).
  check_values_dim(values, dim, table)
  if num_ids is None or num_values is None:
    return False
  if num_values != num_ids * dim:
    raise ValueError(f"the values of table {table} must be [len(ids), {dim}] "
                     f"= [{num_ids}, {dim}], got shape {shape}")
  return True


def check_values_dim(values: tf.Tensor, dim: int, table: str) -> None:
  """Checks, where its shape is known, that `values` can be rows of `dim`
  floats: a last dimension of `dim` (rank 2 and up), a multiple of `dim`
  floats; no values at all, whatever their shape, pass.

  Raises:
    ValueError: they cannot, naming table `table`.
  """
  shape = values.shape
  num_values = shape.num_elements()
  if num_values == 0:
    return
  if ((shape.rank is not None and shape.rank >= 2 and
       shape[-1] is not None and shape[-1] != dim) or
      (num_values is not None and num_values % dim)):
    raise ValueError(f"the values of table {table} must be [len(ids), {dim}], "
                     f"got shape {shape}")


def as_rows(values: tf.Tensor, dim: int) -> tf.Tensor:
  """`values` (checked by `check_values_shape`) as [len(ids), dim]."""
  if values.shape.rank == 2 and values.shape[-1] == dim:
    return values
  # Also [0, k] values of no ids, which check_values_shape takes whatever k.
  return tf.reshape(values, [-1, dim])


def after_check(check: tf.Operation, value: tf.Tensor) -> tf.Tensor:
  """`value`, available once `check` passed."""
  # On an op whose input comes from outside the block: an op made in it
  # from ops made in it gets no control input of its own.
  with tf.control_dependencies([check]):
    return tf.identity(value)


def values_of_ids(values: tf.Tensor, ids: tf.Tensor, dim: int,
                  table: str) -> tf.Tensor:
  """Table `table`'s values of `ids` as [len(ids), dim], checked.

  Args:
    As `check_values_shape`.

  Returns:
    The values, [len(ids), dim]; where their sizes are not known when the
    graph is built, they fail at run time (InvalidArgumentError naming the
    table) unless they agree.

  Raises:
    ValueError: as `check_values_shape`.
  """
  if not check_values_shape(values, ids, dim, table):
    with tf.name_scope("check_values"):
      values = after_check(
          tf.debugging.assert_equal(
              tf.size(values, out_type=tf.int64),
              tf.size(ids, out_type=tf.int64) * dim,
              message=(f"the values of table {table} must be [len(ids), "
                       f"{dim}]: values, ids * dim floats")), values)
  return as_rows(values, dim)


def as_int64_scalar(value: Any, name: str) -> tf.Tensor:
  """`value` (global_step, req_time) as an int64 tensor, integers cast.

  Raises:
    ValueError: `value` is not an integer, naming `name`.
  """
  return _as_dtype(value, tf.int64, name)


def req_time_tensor(req_time: Any) -> tf.Tensor:
  """req_time as an int64 tensor; None is 0."""
  if req_time is None:
    return tf.constant(0, tf.int64)
  return as_int64_scalar(req_time, "req_time")


def _uint64_bits(ids: Any) -> Any:
  """Python lists (nested too) of integer ids with those in [2^63, 2^64)
  as the int64 of their bits; anything else as it is. Python's uint64 ids
  past 2^63 (v1 fids of slots 512 and up) keep their bits as a uint64
  array's do: TF refused them, and numpy made a list mixing them with
  smaller ids float64."""
  if not isinstance(ids, (list, tuple)):
    return ids
  if not all(isinstance(i, (list, tuple)) or utils.is_integer(i)
             for i in ids):
    return ids  # floats, tensors ...: _as_dtype says what is wrong
  return [
      _uint64_bits(i) if isinstance(i, (list, tuple)) else
      int(i) - (1 << 64) if (1 << 63) <= int(i) < (1 << 64) else int(i)
      for i in ids
  ]


def _as_ids_dtype(ids: Any, what: str) -> tf.Tensor:
  """`ids` as an int64 tensor (`_uint64_bits`, then `_as_dtype`)."""
  return _as_dtype(_uint64_bits(ids), tf.int64, what)


def _as_dtype(value: Any, dtype: tf.DType, what: str) -> tf.Tensor:
  """`value` as a `dtype` tensor, cast from the same kind (integer or
  floating) of another width; ValueError naming `what` otherwise."""
  if not tf.is_tensor(value):
    # convert_to_tensor would truncate floats (and bools) to integers.
    try:
      array = np.asarray(value)
    except (TypeError, ValueError, NotImplementedError):
      array = None  # e.g. a list of tensors: TF packs it, checking dtypes
    allowed = "iu" if dtype.is_integer else "iuf"
    if (array is not None and array.dtype.kind not in allowed + "O" and
        array.size > 0):
      raise ValueError(
          f"{what} must be {dtype.name}, got {array.dtype.name} values")
    try:
      return tf.convert_to_tensor(value, dtype)
    except (TypeError, ValueError, OverflowError) as e:
      raise ValueError(f"{what} must be {dtype.name}: {e}") from e
  # A variable is read here, once: handed on, it would be read where each
  # use runs (every PS task, each at its own moment of the step).
  value = tf.convert_to_tensor(value)
  if value.dtype == dtype:
    return value
  same_kind = (value.dtype.is_integer if dtype.is_integer else
               value.dtype.is_floating)
  if not same_kind:
    raise ValueError(f"{what} must be {dtype.name}, got a "
                     f"{value.dtype.name} tensor")
  return tf.cast(value, dtype)


class MultiHashTable(BaseMultiTypeHashTable, RawMultiTypeHashTable):
  """Maps int64 ids of many named tables to float32 embeddings.

  Tables are kept in sorted name order (`table_names`); the dim of a table is
  the sum of its segments' dims. Ids never written read as zeros; writers
  (assign, assign_add, apply_gradients, reinitialize) insert missing ids,
  initialized by each segment's initializer, and stamp them with the request
  time (seconds) given, which save-time expiry compares with the latest one.

  Methods that update the tables return a new MultiHashTable whose handle
  depends on the update, so later reads can be ordered after it; `as_op()`
  gives an op to run.

  Build tables with `from_configs` or `from_cached_config`; the constructor's
  arguments are theirs (or `table_proto` and `import_scope`, for
  `from_proto`).

  Args:
    cc: the tables' configs.
    hash_filter: the hash filter resource handle.
    sync_client: the sync client resource handle.
    learning_rate_list: per table in `cc.table_names` order, per segment in
      segment order, a learning rate (number or scalar tensor); or all of
      them as one float32 vector (`learning_rate_tensor`).
    name_suffix: appended to the resource's shared name.
    saver_parallel: the number of checkpoint shards of `save` (1 to
      99,999); -1 lets the op choose (one per 100k entries, up to max(4,
      CPU worker threads)).
    table_proto: when given, the table is rebuilt from this proto (of
      `to_proto`) in the current graph and the other arguments are ignored.
    import_scope: the name scope `table_proto`'s names are under.
    device: the device of the resource and its ops.

  Raises:
    ValueError: the shared name is already used in this graph.
    TypeError: `table_proto` is not a `MultiHashTableProto`.
  """
  NAME_PREFIX = "MonolithMultiHashTable"

  def __init__(
      self,
      cc: Optional[CachedConfig] = None,
      hash_filter: Optional[tf.Tensor] = None,
      sync_client: Optional[tf.Tensor] = None,
      learning_rate_list: Optional[List[Any]] = None,
      name_suffix: str = "",
      saver_parallel: int = -1,
      table_proto: Optional[
          multi_hash_table_ops_pb2.MultiHashTableProto] = None,
      import_scope: Optional[str] = None,
      device: str = "/device:CPU:0"):
    if table_proto is not None:
      self._init_from_proto(table_proto, import_scope)
      return
    if not isinstance(saver_parallel, numbers.Integral) or not (
        saver_parallel == -1 or 1 <= saver_parallel <= _MAX_CHECKPOINT_SHARDS):
      # Else refused only when the first save runs, maybe hours later.
      raise ValueError(f"saver_parallel must be -1 (save chooses) or a "
                       f"shard count in [1, {_MAX_CHECKPOINT_SHARDS}], got "
                       f"{saver_parallel!r}")
    self._dims = cc.dims
    self._slot_expire_time_config = cc.slot_expire_time_config
    self._table_names = cc.table_names
    if isinstance(learning_rate_list, tf.Tensor):
      self._learning_rate = tf.cast(learning_rate_list, tf.float32)
    else:
      self._learning_rate = tf.cast(tf.stack(learning_rate_list), tf.float32)
    self._saver_parallel = saver_parallel
    self._serving = all_serving(cc.mconfig)
    self._ps_shard = None
    self._ps_placement = None
    self._shared_name = "_".join([MultiHashTable.NAME_PREFIX, name_suffix])
    _check_shared_name(self._shared_name, f"name_suffix {name_suffix!r}")
    self._check_and_insert_name(self._shared_name)
    with tf.device(device):
      # Creation and use are separate ops: uses read the shared resource.
      # As TF's random ops: with a graph-level seed, the initializers draw
      # the same values each time the graph is built. SERVING tables draw
      # none: no seeds, so that a SavedModel saved with strip_default_attrs
      # carries no seed attrs (op libraries older than them load it).
      seed, seed2 = ((None, None) if self._serving else
                     tf.compat.v1.get_seed(None))
      init_handle = hash_table_ops.create_monolith_multi_hash_table(
          filter_handle=hash_filter,
          sync_client_handle=sync_client,
          config=cc.mconfig_tensor,
          shared_name=self._shared_name,
          seed=seed or 0,
          seed2=seed2 or 0)
      self._initializer = init_handle.op
      graph_meta.get_meta("multi_hash_table_metadata",
                          MultiHashTableMetadata).creators[
                              self._shared_name] = self._initializer.name
      self._handle = hash_table_ops.read_monolith_multi_hash_table(
          shared_name=self._shared_name)
      is_initialized = hash_table_ops.is_hash_table_initialized(init_handle)
      resources.register_resource(init_handle, self._initializer,
                                  is_initialized)
    tf.compat.v1.get_collection_ref(_MULTI_HASH_TABLE_GRAPH_KEY).append(self)

  def _init_from_proto(self,
                       proto: multi_hash_table_ops_pb2.MultiHashTableProto,
                       import_scope: Optional[str] = None) -> None:
    if not isinstance(proto, multi_hash_table_ops_pb2.MultiHashTableProto):
      raise TypeError(f"expected a MultiHashTableProto, got {type(proto)}")
    if proto.HasField("num_ps") and not 0 <= proto.ps_index < proto.num_ps:
      # As set_ps_shard refuses it: a damaged or hand-edited meta graph
      # would otherwise reach the restore's id arithmetic.
      raise ValueError(
          f"MultiHashTableProto of {proto.shared_name!r}: ps_index "
          f"{proto.ps_index} is not in [0, num_ps={proto.num_ps})")
    g = tf.compat.v1.get_default_graph()
    self._dims = tuple(proto.dims)
    self._slot_expire_time_config = proto.slot_expire_time_config
    self._table_names = tuple(proto.table_names)
    self._learning_rate = g.as_graph_element(
        ops.prepend_name_scope(proto.learning_rate_tensor, import_scope))
    self._saver_parallel = proto.saver_parallel
    self._shared_name = proto.shared_name
    _check_shared_name(self._shared_name, "MultiHashTableProto")
    self._initializer = g.as_graph_element(
        ops.prepend_name_scope(proto.initializer_op, import_scope))
    _check_proto_tables(proto, self._initializer)
    # Taken in this graph now (the graph that exported it may be this one):
    # a new table of the same name would share the resource. So does one
    # imported again under another scope (two models loaded into one
    # graph): ops find resources by shared name, not by scope.
    creators = graph_meta.get_meta("multi_hash_table_metadata",
                                   MultiHashTableMetadata).creators
    creator = creators.setdefault(self._shared_name, self._initializer.name)
    if creator != self._initializer.name:
      raise ValueError(
          f"MultiHashTableProto of {self._shared_name!r}: its creation op "
          f"{self._initializer.name} would share the tables of "
          f"{creator}, which holds that shared name in this graph (ops find "
          "a table by shared name, whatever the import scope): load each "
          "model into a graph of its own, as TF Serving does")
    self._ps_placement = ((proto.num_ps, proto.ps_index)
                          if proto.HasField("num_ps") else None)
    self._ps_shard = (PsShard(proto.num_ps, proto.ps_index,
                              proto.ps_group_prefix)
                      if proto.HasField("ps_group_prefix") else None)
    self._handle = g.as_graph_element(
        ops.prepend_name_scope(proto.handle_tensor, import_scope))
    # Protos of the original and of graphs older than the field: from the
    # creation op's config.
    self._serving = (proto.serving if proto.HasField("serving") else
                     _creates_serving_tables(self._initializer))
    init_handle = self._initializer.outputs[0]
    is_initialized = hash_table_ops.is_hash_table_initialized(init_handle)
    resources.register_resource(init_handle, self._initializer,
                                is_initialized)

  @classmethod
  def from_cached_config(cls,
                         cc: CachedConfig,
                         hash_filter: Optional[tf.Tensor] = None,
                         sync_client: Optional[tf.Tensor] = None,
                         name_suffix: str = "",
                         saver_parallel: int = -1) -> "MultiHashTable":
    """Creates the tables of `cc` in the default graph.

    The resource goes on the GPU when the tables' type is "gpucuco" (see
    `check_gpu_tables_supported`), else on the CPU. The learning rates are
    built here, once, by
    `learning_rate_tensor` (a callable's tensor is then read at every run),
    under the caller's device scope.

    Args:
      cc: the configs, from `convert_to_cached_config`.
      hash_filter: a hash filter resource; None creates a dummy one.
      sync_client: a sync client resource; None creates a dummy one.
      name_suffix: makes the resource's shared name unique in the graph.
      saver_parallel: the number of checkpoint shards; -1 lets `save` choose.

    Returns:
      The new table. Its `initializer` creates the tables; it is registered
      as a shared resource, so a MonitoredSession's default Scaffold runs
      it.

    Raises:
      TypeError: `cc` is not a CachedConfig, or a handle is not a resource
        handle.
      ValueError: a table has not one learning-rate function per segment,
        the tables have different types, gpucuco tables are given a hash
        filter or skip_zero_embedding, the shared name is already used
        in this graph, or (exporting) `cc` was converted outside export
        mode.
      RuntimeError: called eagerly or inside a tf.function (the tables are
        graph-mode resources, `utils.check_graph_mode`), or gpucuco tables
        cannot run here (no CUDA kernels or no GPU).
    """
    utils.check_graph_mode("MultiHashTable")
    if not isinstance(cc, CachedConfig):
      raise TypeError(
          f"from_cached_config takes a CachedConfig "
          f"(convert_to_cached_config(configs)), got the "
          f"{type(cc).__name__}" +
          ("; for a dict of configs use from_configs"
           if isinstance(cc, dict) else ""))
    for name, handle, maker in (
        ("hash_filter", hash_filter, "create_hash_filters"),
        ("sync_client", sync_client, "create_parameter_sync_clients")):
      if handle is not None and not (tf.is_tensor(handle) and
                                     handle.dtype == tf.resource and
                                     handle.shape.rank in (None, 0)):
        raise TypeError(
            f"{name} must be one resource handle (e.g. one of {maker}' "
            f"list), got {type(handle).__name__}" +
            (f" {handle!r}" if not tf.is_tensor(handle) else
             f" of dtype {handle.dtype.name} and shape {handle.shape}"))
    if is_exporting() and not all_serving(cc.mconfig):
      # Its TRAINING tables would hold optimizer state, skip the
      # compressors and take learning rates in the serving graph.
      raise ValueError(
          "cc was converted outside export mode (its tables have TRAINING "
          "entries): call convert_to_cached_config inside "
          "export_context.enter_export_mode")
    tables_type = table_type(cc)
    logging.info("Hash table type: %s", tables_type)
    device = "/device:CPU:0"
    if tables_type == _GPUCUCO:
      if hash_filter is not None:
        # The original's pipeline passes create_hash_filters' dummy filters
        # when filtering is off; those admit every id, as these tables do.
        if hash_filter.op.type != "MonolithDummyHashFilter":
          raise ValueError("gpucuco tables admit every id: they take no "
                           "hash filter")
        # One on the table's device replaces it (TF places the create op
        # on its resources' device).
        hash_filter = None
      skip_zero = [
          name for name in cc.table_names
          if cc.configs[name].table_config.skip_zero_embedding
      ]
      if skip_zero:
        raise ValueError(
            f"gpucuco tables {skip_zero} set skip_zero_embedding: GPU "
            "tables keep entries assigned all zeros")
      device = "/device:GPU:0"
    # The dummy filter and sync client live where the table does: TF places
    # an op that takes a resource on that resource's device.
    with tf.device(device):
      if hash_filter is None:
        hash_filter = hash_filter_ops.create_dummy_hash_filter(
            name_suffix=name_suffix)
      if sync_client is None:
        sync_client = distributed_serving_ops.create_dummy_sync_client()
    if tables_type == _GPUCUCO:
      # Checked before the table takes its name. Under a task's device
      # scope (a PS, as the filter's device shows) that task needs the GPU.
      check_gpu_tables_supported(
          in_this_process="/job:" not in hash_filter.device)
      # The tables allocate GPU memory themselves, beside TF's allocator,
      # which would otherwise reserve nearly all of it at the first session.
      os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    learning_rates = learning_rate_tensor(cc)
    # An eager tensor (a CachedConfig built outside a graph) has no graph.
    if (getattr(cc.mconfig_tensor, "graph", None) is not
        tf.compat.v1.get_default_graph()):
      cc = cc._replace(mconfig_tensor=tf.convert_to_tensor(cc.mconfig))
    return cls(cc=cc,
               hash_filter=hash_filter,
               sync_client=sync_client,
               learning_rate_list=learning_rates,
               name_suffix=name_suffix,
               saver_parallel=saver_parallel,
               device=device)

  @classmethod
  def from_configs(cls, configs: Dict[str, entry.HashTableConfigInstance],
                   *args, **kwargs) -> "MultiHashTable":
    """Creates the tables of `configs`, keyed by table name.

    Args:
      configs: the table configs by table name.
      *args: passed to `from_cached_config`.
      **kwargs: passed to `from_cached_config`.

    Returns:
      The new table.

    Raises:
      ValueError: `configs` is empty, or as `from_cached_config`.
    """
    return cls.from_cached_config(convert_to_cached_config(configs), *args,
                                  **kwargs)

  @staticmethod
  def from_proto(table_proto: multi_hash_table_ops_pb2.MultiHashTableProto,
                 import_scope: Optional[str] = None) -> "MultiHashTable":
    """Rebuilds a table from `to_proto`'s proto in the default graph.

    The graph must hold the proto's ops (as after `import_meta_graph`); no op
    is created but the table's is-initialized check.

    Args:
      table_proto: the proto.
      import_scope: the name scope the proto's names are under.

    Returns:
      The table.

    Raises:
      TypeError: `table_proto` is not a `MultiHashTableProto`.
      KeyError: a name of the proto is not in the graph.
    """
    return MultiHashTable(table_proto=table_proto, import_scope=import_scope)

  def to_proto(
      self,
      export_scope: Optional[str] = None
  ) -> Optional[multi_hash_table_ops_pb2.MultiHashTableProto]:
    """Describes the table for a meta graph (see `from_proto`).

    Args:
      export_scope: the name scope to strip from the names; tables outside
        it are not exported.

    Returns:
      The proto, or None when the table is outside `export_scope`.
    """
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
    proto.serving = self._serving
    proto.shared_name = self._shared_name
    proto.initializer_op = ops.strip_name_scope(self._initializer.name,
                                                export_scope)
    proto.handle_tensor = ops.strip_name_scope(self._handle.name, export_scope)
    if self._ps_placement is not None:
      proto.num_ps, proto.ps_index = self._ps_placement
    if self._ps_shard is not None:
      proto.ps_group_prefix = self._ps_shard.group_prefix
    return proto

  @classmethod
  def _check_and_insert_name(cls, name: str) -> None:
    meta = graph_meta.get_meta("multi_hash_table_metadata",
                               MultiHashTableMetadata)
    if name in meta.creators:
      raise ValueError(f"shared_name {name} has already been used in this "
                       "graph; pass a different name_suffix")
    meta.creators[name] = ""

  @property
  def table_names(self) -> Tuple[str]:
    """The table names, sorted: the order of tables in every op."""
    return self._table_names

  @property
  def handle(self) -> tf.Tensor:
    """The resource handle, depending on this object's updates."""
    return self._handle

  @property
  def shared_name(self) -> str:
    """The resource's shared name, also the name of its checkpoint files."""
    return self._shared_name

  @property
  def initializer(self) -> tf.Operation:
    """The op that creates the tables (a no-op once they exist)."""
    return self._initializer

  @property
  def ps_shard(self) -> Optional["PsShard"]:
    """Where the table sits in a DistributedMultiTypeHashTable, or None."""
    return self._ps_shard

  @property
  def ps_placement(self) -> Optional[Tuple[int, int]]:
    """(num_ps, ps_index) given to `set_ps_shard`, whether or not the
    table's name marked it; None for a table off any PS job."""
    return self._ps_placement

  def set_ps_shard(self, num_ps: int, ps_index: int) -> bool:
    """Records that this is the table of PS `ps_index` of `num_ps`.

    `DistributedMultiTypeHashTable` calls it for each PS's table. The
    restorer listener then restores the table from the checkpoints of every
    PS table of the same group, whatever their number was, keeping the ids
    with floormod(id, num_ps) == ps_index. Groups are told by the shared
    name: "<group prefix>_<ps_index>" (the factory's names); a table named
    otherwise is not marked and restores only from its own checkpoint, into
    the same number of PS tasks: the saver listener records its PS count
    ("<shared name>.num_ps"), and a restore into another count fails
    instead of keeping each old PS's ids on the PS of the same index.

    Args:
      num_ps: the number of PS tasks, >= 1.
      ps_index: this table's PS, in [0, num_ps).

    Returns:
      Whether the table was marked (its shared name ends in "_<ps_index>").

    Raises:
      ValueError: num_ps is not an integer >= 1, or ps_index is not an
        integer in [0, num_ps).
    """
    num_ps = utils.check_count(num_ps, "num_ps", minimum=1)
    ps_index = utils.check_count(ps_index, "ps_index")
    if ps_index >= num_ps:
      raise ValueError(f"ps_index must be in [0, {num_ps}), got {ps_index}")
    self._ps_placement = (num_ps, ps_index)
    suffix = f"_{ps_index}"
    if not self._shared_name.endswith(suffix):
      logging.warning(
          "Table %s of PS %d is not named <prefix>%s: it restores only from "
          "its own checkpoint, so only into the same number of PS tasks.",
          self._shared_name, ps_index, suffix)
      return False
    self._ps_shard = PsShard(num_ps, ps_index,
                             self._shared_name[:-len(suffix)])
    return True

  def get_table_dim_sizes(self) -> Tuple[int]:
    """The embedding dim of each table, in `table_names` order."""
    return self._dims

  # BaseMultiTypeHashTable.

  def assign(self,
             slot_to_id_and_value: IdsAndValues,
             req_time: Optional[tf.Tensor] = None,
             enable_inter_table_parallelism: bool = False) -> "MultiHashTable":
    """Sets the embeddings of the given ids.

    Missing ids are inserted. Repeated ids of a table are set in order (the
    last value wins).

    Args:
      slot_to_id_and_value: per table name, 1-D int64 ids and float32 values
        of shape [len(ids), dim].
      req_time: int64 scalar, the update time (seconds) stamped on the
        entries; None is 0, no time: the entries take their table's latest
        update time, if it has one (gpucuco tables: the earliest of the
        tables written that have one, see docs/gpu.md).
      enable_inter_table_parallelism: ignored (all tables run in one op).

    Returns:
      The updated table.

    Raises:
      ValueError: an unknown table name, or values whose shape, where
        known, is not [len(ids), dim] (naming the table).
      tf.errors.InvalidArgumentError: (at run time) a table's values do not
        hold len(ids) * dim floats (naming the table).
    """
    del enable_inter_table_parallelism  # tables run in one op call anyway
    ragged_id, flat_value = self._ragged_id_and_flat_value(
        slot_to_id_and_value)
    return self.raw_assign(ragged_id, flat_value, req_time)

  def assign_add(self,
                 slot_to_id_and_value: IdsAndValues,
                 req_time: Optional[tf.Tensor] = None) -> "MultiHashTable":
    """Adds values to the embeddings of the given ids.

    Missing ids are inserted (initialized first). Repeated ids add up.

    Args:
      slot_to_id_and_value: as for `assign`, the values to add.
      req_time: as for `assign`.

    Returns:
      The updated table.

    Raises:
      As `assign`.
    """
    return self.raw_assign_add(
        *self._ragged_id_and_flat_value(slot_to_id_and_value), req_time)

  def reinitialize(self, slot: str,
                   ids: tf.Tensor) -> Tuple["MultiHashTable", tf.Tensor]:
    """Resets ids of one table to their initializers' values.

    Optimizer state is reset too, and the entries are stamped with the
    table's latest update time (the original stamped the wall clock, which
    made every entry of a table trained on sample times expire). An unknown
    table name is not an error: the op logs it and touches nothing.

    Args:
      slot: the table name.
      ids: 1-D int64 ids.

    Returns:
      The updated table and an int32 status per id: -1 the table does not
      exist, 0 the id was inserted, 1 it existed.
    """
    new_handle, status = hash_table_ops.monolith_multi_hash_table_reinitialize(
        mtable=self._handle, table_name=slot, id=as_ids(ids, slot))
    return self._copy_with_new_table(new_handle), status

  def evict(self) -> Tuple["MultiHashTable", tf.Tensor]:
    """Evicts every table's expired entries now.

    An entry expires when its last update is at least its slot's expire
    time (the config's `slot_expire_time_config`) before the newest update
    time its table has seen (not past the host's clock, and not counting
    times more than a day ahead of it). This is what tables with
    `enable_feature_eviction` do in the background every
    `feature_evict_every_n_hours`; a hook can call it every N steps instead.
    Each table is evicted shard by shard, beside lookups and updates, and
    gives the freed memory back. SERVING tables are never evicted. A gpucuco
    table counts the entries it keeps and, unless none expired, moves them
    into a new map sized for them (both maps allocated while it runs),
    between its other calls.

    Returns:
      The updated table and an int64 vector: the entries evicted from each
      table, in `table_names` order.
    """
    new_handle, evicted = hash_table_ops.monolith_multi_hash_table_evict(
        mtable=self._handle)
    evicted.set_shape([len(self._table_names)])
    return self._copy_with_new_table(new_handle), evicted

  def stats(self) -> Dict[str, tf.Tensor]:
    """The tables' sizes now, for watching a long run.

    ckpt.info counts entries only at each save. Read beside training, on
    the tables' task (a PS task's, for the tables there), through a handle
    of its own: fetching it does not run the updates this object follows.

    Returns:
      int64 vectors in `table_names` order: "entries", "memory_bytes" (the
      slots, entries and huge-page regions a CPU table holds; the device
      memory of a gpucuco table's map and scratch buffers) and
      "latest_update_time" (seconds: the newest update time written, the
      "now" of saves and evictions while not past the host's clock).
    """
    # The creation op's device: an updated copy's handle lies where its
    # update was built (e.g. a worker's scope), not where the table is.
    with tf.device(self._initializer.device):
      handle = hash_table_ops.read_monolith_multi_hash_table(
          shared_name=self._shared_name)
      entries, memory_bytes, latest_update_time = (
          hash_table_ops.monolith_multi_hash_table_stats(mtable=handle))
    result = {"entries": entries, "memory_bytes": memory_bytes,
              "latest_update_time": latest_update_time}
    for tensor in result.values():
      tensor.set_shape([len(self._table_names)])
    return result

  def lookup(self, slot_to_id: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Returns the embeddings of the given ids.

    Ids never written read as zeros and are not inserted. Segments with a
    fixed_r8 or one_bit compressor return their values as served (quantized,
    or through HashNet), not the floats `assign` stored (see
    docs/hash_table.md, Compressors). CPU tables outside export mode look
    up with `MonolithMultiHashTableLookupTables` (each table's ids and
    embeddings a tensor of their own); serving graphs and GPU tables with
    the original's `MonolithMultiHashTableLookup`.

    Args:
      slot_to_id: per table name, 1-D int64 ids.

    Returns:
      Per table name of `slot_to_id`, float32 embeddings of shape
      [len(ids), dim].

    Raises:
      ValueError: an unknown table name.
    """
    self._check_names(slot_to_id)
    ids = {k: as_ids(v, k) for k, v in slot_to_id.items()}
    # Serving graphs (tables created in export mode, or lookups built in
    # it) keep the original's lookup op, so that the original's op library
    # serves them too; GPU tables have only that one.
    if self.on_gpu or self._serving or is_exporting():
      ragged_id = self.get_ragged_id(ids)
      embeddings = self.get_embeddings(ragged_id, self.raw_lookup(ragged_id))
    else:
      # Each table's ids and embeddings a tensor of their own: no join of
      # the ids, no split of the result.
      self._check_names(ids)
      empty_id = tf.constant([], dtype=tf.int64)
      embeddings = dict(
          zip(self._table_names,
              hash_table_ops.monolith_multi_hash_table_lookup_tables(
                  mtable=self._handle,
                  id=[ids.get(name, empty_id) for name in self._table_names])))
    # The batch size where the ids know it, as PS tables' lookups give it.
    for name, dim in zip(self._table_names, self._dims):
      if name in ids and ids[name].shape.rank == 1:
        embeddings[name].set_shape([ids[name].shape[0], dim])
      else:
        embeddings[name].set_shape([None, dim])
    return {k: v for k, v in embeddings.items() if k in slot_to_id}

  def lookup_entry(
      self,
      slot_to_id: Dict[str, tf.Tensor],
      enable_inter_table_parallelism: bool = False) -> Dict[str, tf.Tensor]:
    """Returns the whole entries of the given ids, as serialized EntryDumps.

    An entry's dump holds its id, values (`num`), optimizer state (`opt`, one
    `SingleOptimizerDump` per segment that has state) and last update time;
    an id never written gets b"" (an empty dump, as the original's op).

    Args:
      slot_to_id: per table name, 1-D int64 ids.
      enable_inter_table_parallelism: ignored.

    Returns:
      Per table name of `slot_to_id`, a 1-D string tensor of len(ids).

    Raises:
      ValueError: an unknown table name.
    """
    del enable_inter_table_parallelism
    self._check_names(slot_to_id)
    ids = {k: as_ids(v, k) for k, v in slot_to_id.items()}
    ragged_id = self.get_ragged_id(ids)
    entries = hash_table_ops.monolith_multi_hash_table_lookup_entry(
        mtable=self._handle,
        id=ragged_id.values,
        id_split=ragged_id.row_splits)
    per_table = tf.split(entries, ragged_id.row_lengths())
    for name, value in zip(self._table_names, per_table):
      if name in ids:
        value.set_shape(ids[name].shape)
    return {
        name: value for name, value in zip(self._table_names, per_table)
        if name in slot_to_id
    }

  def apply_gradients(self,
                      slot_to_id_and_grad: IdsAndValues,
                      global_step: tf.Tensor,
                      req_time: Optional[tf.Tensor] = None) -> "MultiHashTable":
    """Applies the tables' optimizers to the gradients of the given ids.

    Each segment's optimizer gets its slice of the gradient and its own
    learning rate (its table's learning-rate function for that segment).
    Missing ids are inserted first; repeated ids are applied in order.

    Args:
      slot_to_id_and_grad: per table name, 1-D int64 ids and float32
        gradients of shape [len(ids), dim].
      global_step: int64 scalar, read by warmup, batch_softmax,
        dynamic_wd_adagrad and one_bit segments (HashNet's scale).
      req_time: int64 scalar, the update time (seconds); None is 0 (as
        `assign`'s).

    Returns:
      The updated table.

    Raises:
      ValueError: an unknown table name, gradients whose shape, where
        known, is not [len(ids), dim], or a global step that is known not to
        be a scalar.
      tf.errors.InvalidArgumentError: (at run time) a table's gradients do
        not hold len(ids) * dim floats, or global_step is not a scalar.
      tf.errors.FailedPreconditionError: (at run time) a table has SERVING
        entries (created while exporting), which cannot be trained.
    """
    if self.on_gpu:
      return self.raw_apply_gradients(
          *self._ragged_id_and_flat_value(slot_to_id_and_grad), global_step,
          req_time)
    # Each table's gradients as they are (the kernel checks their sizes,
    # naming the table): joining them first would copy them all each step.
    ids, grads, _ = self._checked_ids_and_values(slot_to_id_and_grad)
    ragged_id = self.get_ragged_id(ids)
    empty = tf.zeros([0])
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_optimize_tables(
            mtable=self._handle,
            id=ragged_id.values,
            id_split=ragged_id.row_splits,
            value=[
                tf.reshape(grads[name], [-1]) if name in grads else empty
                for name in self._table_names
            ],
            learning_rate=self._learning_rate,
            update_time=req_time_tensor(req_time),
            global_step=as_int64_scalar(global_step, "global_step")))

  def save(self,
           basename: tf.Tensor,
           compression_type: str = "SNAPPY") -> "MultiHashTable":
    """Saves the tables to `basename-SSSSS-of-NNNNN` and `.meta-` files.

    Each entry is read consistently while training goes on. Entries expired
    at the table's latest update time (not past the host's clock) by its
    own `slot_expire_time_config` are skipped. The files are renamed into
    place only when all are complete.

    Args:
      basename: string scalar, the path prefix of the files.
      compression_type: "SNAPPY", the original's format, or "" for
        uncompressed shards (faster to write and read; the original cannot
        read them). restore() reads either.

    Returns:
      The table, depending on the save.

    Raises:
      ValueError: a bad compression_type.
      tf.errors.OpError: (at run time) the file system's errors.
    """
    _checked_compression_type(compression_type)
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_save(
            mtable=self._handle,
            basename=utils.fspaths(basename),
            nshards=self._saver_parallel,
            # Empty: each table's own. The original passed the first table's
            # config that set a field, which then applied to every table.
            slot_expire_time_config=b"",
            compression_type=compression_type))

  def restore(self,
              basename: tf.Tensor,
              strict: Optional[bool] = None,
              values_only: Sequence[str] = ()) -> "MultiHashTable":
    """Restores the checkpoint at `basename`, replacing the tables' entries.

    Every table the checkpoint holds is emptied first and then holds exactly
    the checkpoint's entries (values, optimizer state, update times). A
    table the checkpoint lacks keeps its entries and a checkpoint table the
    graph lacks is skipped: both are logged as warnings, or with strict=True
    fail before any table is touched. TRAINING checkpoints restore into
    SERVING tables (only the values are kept).

    While exporting a standalone model, a `basename` given as a path (not a
    tensor) has its files made the SavedModel's assets (build it with
    `assets_collection=tf.compat.v1.get_collection(
    tf.compat.v1.GraphKeys.ASSET_FILEPATHS)`), and the restore reads the
    SavedModel's copies: the SavedModel stands alone, however the
    checkpoint rotates.

    Args:
      basename: string scalar, the path prefix `save` wrote.
      strict: whether a mismatch of table names is an error; None: while
        exporting only.
      values_only: tables (of `table_names`) whose optimizer changed since
        the save, or saved by SERVING tables (no optimizer state): their
        entries take the checkpoint's values and update times, and start
        the optimizer state as new entries do (another optimizer's state
        does not fit; the other tables keep theirs).

    Returns:
      The table, depending on the restore.

    Raises:
      ValueError: `values_only` names a table this one does not hold.
      tf.errors.FailedPreconditionError: (at run time) with strict=True, the
        table names of the checkpoint and the graph differ; or a training
        table outside `values_only` would restore a SERVING table's save.
      tf.errors.DataLossError: (at run time) the files come from different
        saves or are corrupt (the error names the file).
      tf.errors.InvalidArgumentError: (at run time) a table's dim, segment
        dims or (outside `values_only`) optimizer differ from the
        checkpoint's.
      tf.errors.NotFoundError: (at run time) no checkpoint at `basename`.
    """
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_restore(
            mtable=self._handle,
            basename=_as_export_assets(utils.fspaths(basename)),
            strict=_strict_by_default(strict),
            values_only=self._checked_values_only(values_only)))

  def _checked_values_only(self, values_only: Sequence[str]) -> List[str]:
    names = checked_table_names(values_only, "values_only")
    unknown = sorted(set(names) - set(self._table_names))
    if unknown:
      raise ValueError(f"values_only names {unknown}, which MultiHashTable "
                       f"{self._shared_name} does not hold (its tables: "
                       f"{list(self._table_names)})")
    return names

  def restore_resharded(self,
                        basenames: Any,
                        id_modulus: int,
                        id_remainder: int,
                        strict: Optional[bool] = None,
                        values_only: Sequence[str] = ()) -> "MultiHashTable":
    """Restores the entries of this id shard from several checkpoints.

    For tables of PS tasks: `basenames` are the checkpoints of every table
    of an older PS layout (any number), and this table keeps the ids with
    floormod(id, id_modulus) == id_remainder (values, optimizer state,
    update times). All checkpoints are read and checked first; every table
    that any of them holds is emptied once, then each is restored. Table
    names are matched as by `restore` (a mismatch is a warning, or an error
    with strict=True, before any table is touched).

    Args:
      basenames: 1-D string tensor (or list), the checkpoints' path
        prefixes, each given once (paths while exporting: as `restore`'s).
      id_modulus: the number of id shards (the new PS count), >= 1.
      id_remainder: this table's shard, in [0, id_modulus).
      strict: as `restore`'s.
      values_only: as `restore`'s.

    Returns:
      The table, depending on the restore.

    Raises:
      ValueError: id_modulus < 1, id_remainder not in [0, id_modulus),
        basenames known not to be a vector, or `values_only` naming a table
        this one does not hold.
      tf.errors.InvalidArgumentError: (at run time) basenames is empty or
        holds a basename twice.
      tf.errors.FailedPreconditionError, tf.errors.DataLossError,
        tf.errors.NotFoundError: (at run time) as `restore`, for any of the
        checkpoints; no table is touched then.
    """
    self._check_on_cpu("restore_resharded")
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_restore_resharded(
            mtable=self._handle,
            basenames=_as_export_assets(utils.fspaths(basenames)),
            id_modulus=id_modulus,
            id_remainder=id_remainder,
            strict=_strict_by_default(strict),
            values_only=self._checked_values_only(values_only)))

  def feature_stat(self, basename: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Reads the table names and entry counts of a checkpoint's meta files.

    Args:
      basename: string scalar, the checkpoint's path prefix.

    Returns:
      A 1-D string tensor of the checkpoint's table names and a 1-D uint64
      tensor of their entry counts.

    Raises:
      tf.errors.NotFoundError, tf.errors.DataLossError: (at run time) as
        `restore`.
    """
    return hash_table_ops.monolith_multi_hash_table_feature_stat(
        utils.fspaths(basename))

  def as_op(self, *args, **kwargs) -> tf.Operation:
    """The op that runs the updates this table object depends on."""
    del args, kwargs
    return self._handle.op

  @property
  def on_gpu(self) -> bool:
    """Whether these are gpucuco tables, placed on a GPU."""
    # The device type, not a substring: a job named e.g. "gpu_ps" holds CPU
    # tables.
    return tf.DeviceSpec.from_string(
        self._initializer.device).device_type == "GPU"

  def _check_on_cpu(self, method: str) -> None:
    """NotImplementedError for what gpucuco tables do not do yet."""
    if self.on_gpu:
      raise NotImplementedError(
          f"MultiHashTable.{method} is not available for gpucuco tables yet "
          f"(their GPU kernels: lookup, lookup_entry, assign, assign_add, "
          f"reinitialize, apply_gradients, fused_lookup, "
          f"fused_apply_gradient, evict, save, restore; see docs/gpu.md)")

  def _copy_with_new_table(self, handle: tf.Tensor) -> "MultiHashTable":
    copied = copy.copy(self)
    copied._handle = handle
    return copied

  # Fused ops for synchronous training: ids of every table and shard in one
  # tensor, without mapping them to table names.

  def fused_lookup(
      self,
      ids: tf.Tensor,
      fused_slot_size: tf.Tensor,
      num_of_shards: int,
      req_time: Optional[tf.Tensor] = None
  ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Looks up the ids of every table and shard in one call.

    With T tables (in `table_names` order) and S = num_of_shards, `ids` is
    laid out shard-major: shard 0's ids of table 0 .. T-1, then shard 1's,
    and so on, segment (s, t) holding fused_slot_size[s * T + t] ids. The
    segments are looked up in pieces of up to 16k ids, in parallel from 16k
    ids in all. Ids never written read as zeros and are not inserted.

    Args:
      ids: 1-D int64 ids.
      fused_slot_size: 1-D int32 of T * S id counts, non-negative, summing
        to len(ids).
      num_of_shards: S, >= 1.
      req_time: int64 scalar; checked, otherwise unused. None is 0.

    Returns:
      A tuple (embeddings, embedding_splits, id_offsets, embedding_offsets,
      indices):
        embeddings: 1-D float32, the embeddings of segment (s, t) as
          fused_slot_size[s * T + t] rows of table t's dim, flattened, in the
          order of `ids`.
        embedding_splits: 1-D int32 [S], the floats of each shard.
        id_offsets: 1-D int32 [T * S + 1], the start of each segment in
          `ids`, then len(ids).
        embedding_offsets: 1-D int32 [T * S + 1], the start of each segment
          in `embeddings`, then its length.
        indices: `ids`, passed through.

    Raises:
      ValueError: an input's rank is known and wrong.
      tf.errors.InvalidArgumentError: (at run time) fused_slot_size does not
        have T * S elements, has a negative one, does not sum to len(ids),
        or the embeddings would exceed 2^31 floats.
    """
    return hash_table_ops.monolith_multi_hash_table_fused_lookup(
        mtable=self._handle,
        ids=_as_ids_dtype(ids, "ids"),
        fused_slot_size=_as_dtype(fused_slot_size, tf.int32,
                                  "fused_slot_size"),
        num_of_shards=num_of_shards,
        req_time=req_time_tensor(req_time))

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
    """Applies the tables' optimizers to gradients in `fused_lookup`'s layout.

    Tables run in parallel, each over its shards' segments in order:
    repeated ids, within a segment or across shards, are applied in order.
    Each segment of an entry gets its own learning rate, as in
    `apply_gradients`. Missing ids are inserted first.

    Args:
      ids: 1-D int64 ids, laid out as for `fused_lookup`.
      indices: 1-D int64, `fused_lookup`'s indices; checked, otherwise unused.
      fused_slot_size: 1-D int32, as for `fused_lookup`.
      id_grads: 1-D float32 gradients, laid out as `fused_lookup`'s
        embeddings.
      id_offsets: `fused_lookup`'s id_offsets for the same fused_slot_size.
      grad_offsets: `fused_lookup`'s embedding_offsets.
      global_step: int64 scalar (integers of other widths are cast).
      req_time: int64 scalar, the update time (seconds); None is 0 (as
        `assign`'s).
      num_of_shards: S, >= 1.
      enable_grad_accumulation: whether repeated ids of one segment are
        optimized once, with their summed gradient (first-seen order).

    Returns:
      The updated table.

    Raises:
      ValueError: an input's rank is known and wrong, the offsets'
        lengths are known not to be len(fused_slot_size) + 1, or indices'
        and ids' lengths are known to differ.
      tf.errors.InvalidArgumentError: (at run time) fused_slot_size is bad
        (as for `fused_lookup`), the offsets are not the ones it implies,
        indices and ids differ in length, id_grads has the wrong number of
        floats, or global_step or req_time is not a scalar.
      tf.errors.FailedPreconditionError: (at run time) a table has SERVING
        entries.
    """
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_fused_optimize(
            mtable=self._handle,
            ids=_as_ids_dtype(ids, "ids"),
            indices=_as_dtype(indices, tf.int64, "indices"),
            fused_slot_size=_as_dtype(fused_slot_size, tf.int32,
                                      "fused_slot_size"),
            id_grads=_as_dtype(id_grads, tf.float32, "id_grads"),
            id_offsets=_as_dtype(id_offsets, tf.int32, "id_offsets"),
            grad_offsets=_as_dtype(grad_offsets, tf.int32, "grad_offsets"),
            learning_rate_tensors=self._learning_rate,
            req_time=req_time_tensor(req_time),
            global_step=as_int64_scalar(global_step, "global_step"),
            num_of_shards=num_of_shards,
            enable_grad_accumulation=enable_grad_accumulation))

  # RawMultiTypeHashTable.

  def raw_lookup(self, ragged_id: tf.RaggedTensor) -> tf.Tensor:
    """Flat embeddings of ragged ids (row t: ids of table t).

    Args:
      ragged_id: int64 ragged ids with one row per table, from
        `get_ragged_id`.

    Returns:
      1-D float32: row t's embeddings ([len(row), dim_t]) flattened, rows
      concatenated in order; zeros for ids never written.

    Raises:
      tf.errors.InvalidArgumentError: (at run time) the number of rows is not
        a multiple of the number of tables.
    """
    return hash_table_ops.monolith_multi_hash_table_lookup(
        mtable=self._handle, id=ragged_id.values, id_split=ragged_id.row_splits)

  def raw_apply_gradients(
      self,
      ragged_id: tf.RaggedTensor,
      flat_grad: tf.Tensor,
      global_step: tf.Tensor,
      req_time: Optional[tf.Tensor] = None) -> "MultiHashTable":
    """`apply_gradients` on ragged ids and flat gradients.

    Args:
      ragged_id: int64 ragged ids, one row per table.
      flat_grad: 1-D float32 gradients, laid out as `raw_lookup`'s result.
      global_step: int64 scalar.
      req_time: int64 scalar, the update time (seconds); None is 0 (as
        `assign`'s).

    Returns:
      The updated table.

    Raises:
      As `apply_gradients`, and tf.errors.InvalidArgumentError (at run time)
      when ragged_id does not have one row per table.
    """
    return self._copy_with_new_table(
        hash_table_ops.monolith_multi_hash_table_optimize(
            mtable=self._handle,
            id=ragged_id.values,
            id_split=ragged_id.row_splits,
            value=flat_grad,
            learning_rate=self._learning_rate,
            update_time=req_time_tensor(req_time),
            global_step=as_int64_scalar(global_step, "global_step")))

  def raw_assign(self,
                 ragged_id: tf.RaggedTensor,
                 flat_value: tf.Tensor,
                 req_time: Optional[tf.Tensor] = None) -> "MultiHashTable":
    """Sets the embeddings of ragged ids (see `assign`).

    Args:
      ragged_id: from `get_ragged_id`.
      flat_value: from `get_flat_value`: row t's [len(row), dim_t] values.
      req_time: update time in seconds (int64 scalar), or None for 0.

    Returns:
      The updated table.

    Raises:
      tf.errors.InvalidArgumentError: (at run time) ragged_id does not have
        one row per table, or flat_value has the wrong number of floats.
    """
    return self._assign(hash_table_ops.monolith_multi_hash_table_assign,
                        ragged_id, flat_value, req_time)

  def raw_assign_add(self,
                     ragged_id: tf.RaggedTensor,
                     flat_value: tf.Tensor,
                     req_time: Optional[tf.Tensor] = None) -> "MultiHashTable":
    """Adds to the embeddings of ragged ids (see `assign_add`).

    Args:
      ragged_id: from `get_ragged_id`.
      flat_value: from `get_flat_value`: the values to add.
      req_time: update time in seconds (int64 scalar), or None for 0.

    Returns:
      The updated table.

    Raises:
      As `raw_assign`.
    """
    return self._assign(hash_table_ops.monolith_multi_hash_table_assign_add,
                        ragged_id, flat_value, req_time)

  def _assign(self, op: Any, ragged_id: tf.RaggedTensor, flat_value: tf.Tensor,
              req_time: Optional[tf.Tensor]) -> "MultiHashTable":
    """Runs the assign or assign_add op."""
    return self._copy_with_new_table(
        op(mtable=self._handle,
           id=ragged_id.values,
           id_split=ragged_id.row_splits,
           value=flat_value,
           update_time=req_time_tensor(req_time)))

  def _checked_ids_and_values(
      self, slot_to_id_and_value: IdsAndValues
  ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor], List[str]]:
    """Each table's ids (int64) and values (float32), the shapes known
    checked (`check_values_shape`), and the tables whose sizes are not."""
    self._check_names(slot_to_id_and_value)
    check_pairs(slot_to_id_and_value)
    ids = {k: as_ids(v[0], k) for k, v in slot_to_id_and_value.items()}
    values = {k: as_values(v[1], k) for k, v in slot_to_id_and_value.items()}
    dims = dict(zip(self._table_names, self._dims))
    unknown_sizes = [
        k for k in values
        if not check_values_shape(values[k], ids[k], dims[k], k)
    ]
    return ids, values, unknown_sizes

  def _ragged_id_and_flat_value(
      self, slot_to_id_and_value: IdsAndValues
  ) -> Tuple[tf.RaggedTensor, tf.Tensor]:
    """The ragged ids and flat values (or gradients) of every table.

    Each table's values are checked against its ids (`check_values_shape`);
    sizes known only at run time are checked there, all tables at once.
    """
    ids, values, unknown_sizes = self._checked_ids_and_values(
        slot_to_id_and_value)
    ragged_id = self.get_ragged_id(ids)
    flat_value = self.get_flat_value(values)
    if unknown_sizes:
      with tf.name_scope("check_values"):
        given = tf.stack([
            tf.size(values[name], out_type=tf.int64)
            if name in values else tf.constant(0, tf.int64)
            for name in self._table_names
        ])
        needed = tf.cast(ragged_id.row_lengths(), tf.int64) * tf.constant(
            self._dims, tf.int64)
        flat_value = after_check(
            tf.debugging.assert_equal(
                given, needed,
                message=("the values of the tables " +
                         ", ".join(self._table_names) +
                         " (in this order) must hold len(ids) * dim floats "
                         "each ([len(ids), dim]); floats given, floats "
                         "needed")),
            flat_value)
    return ragged_id, flat_value

  def get_embeddings(self, ragged_id: tf.RaggedTensor,
                     value: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Splits `raw_lookup`'s flat result into embeddings by table name.

    Args:
      ragged_id: the ragged ids that were looked up.
      value: `raw_lookup`'s result.

    Returns:
      Per table name (every table), float32 [len(row), dim].
    """
    values = get_list_from_flat_value(ragged_id, self._dims, value)
    return dict(zip(self._table_names, values))

  def get_ragged_id(self, slot_to_id: Dict[str, tf.Tensor]) -> tf.RaggedTensor:
    """Gathers per-table ids into ragged ids, one row per table.

    Args:
      slot_to_id: per table name, 1-D int64 ids; missing tables get no ids.

    Returns:
      int64 ragged ids; row t holds the ids of `table_names[t]`.

    Raises:
      ValueError: an unknown table name, or ids (of a table, named) that
        are not integers or not 1-D.
      TypeError: ragged or sparse ids.
    """
    self._check_names(slot_to_id)
    empty_id = tf.constant([], dtype=tf.int64)
    return concat_1d_tensors(*[
        as_ids(slot_to_id[name], name) if name in slot_to_id else empty_id
        for name in self._table_names
    ])

  def get_flat_value(self, slot_to_value: Dict[str, tf.Tensor]) -> tf.Tensor:
    """Flattens per-table values into one 1-D tensor, tables in order.

    Args:
      slot_to_value: per table name, float32 values [len(ids), dim];
        missing tables get none.

    Returns:
      1-D float32, laid out as `raw_lookup`'s result.

    Raises:
      ValueError: an unknown table name, or values (of a table, named) that
        are not floating point or, where their shape is known, cannot be
        rows of the table's dim (`check_values_dim`; the kernels see only
        the total: the floats would go to the next table).
    """
    self._check_names(slot_to_value)
    empty_value = tf.zeros([0, 1])
    flat = []
    for name, dim in zip(self._table_names, self._dims):
      if name not in slot_to_value:
        flat.append(empty_value)
        continue
      values = as_values(slot_to_value[name], name)
      check_values_dim(values, dim, name)
      flat.append(values)
    return flatten_n_tensors(*flat)

  def _check_names(self, by_name: Dict[str, Any]) -> None:
    check_table_names(by_name, self._table_names)


def _tensor_of_table(tensors: Dict[int, Any], table: Any,
                     listener: str) -> Any:
  """What a listener built for `table` (keyed by id(table)), e.g. its
  basename placeholder."""
  try:
    return tensors[id(table)]
  except KeyError:
    raise ValueError(
        f"MultiHashTable {table.shared_name} was created after the {listener} "
        "listener, or in another graph than the one the listener was built "
        "in; create the listeners once every table of the graph exists, "
        "under that graph's as_default()") from None


def _tables_run_by(session: Any) -> List["MultiHashTable"]:
  """The MultiHashTables of the graph `session` runs. Not the default
  graph's: a step run outside the graph's `as_default()` block, or in
  another thread (the default graph is per thread), has another."""
  return session.graph.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY)


def _checked_compression_type(compression_type: str) -> str:
  """`compression_type`, checked when the graph is built (the kernel would
  refuse it only when the first save runs)."""
  if compression_type not in ("SNAPPY", ""):
    raise ValueError(f'compression_type must be "SNAPPY" or "" '
                     f"(uncompressed), got {compression_type!r}")
  return compression_type


class MultiHashTableCheckpointSaverListener(
    tf.compat.v1.train.CheckpointSaverListener):
  """Saves every MultiHashTable of the graph before the Saver's checkpoint.

  Tables go to `<asset dir of the checkpoint><shared_name>`; with
  write_ckpt_info, `ckpt.info-<step>` (text CkptInfo, entries per table)
  is written beside the checkpoint. After each save, the asset directories
  and ckpt.info files of the checkpoints that the Saver deleted (max_to_keep)
  are deleted too, and before each save those of failed saves (no
  checkpoint of their step: the Saver never ran); see save_utils for the
  rule.

  The save ops are built at construction, for the tables the graph holds
  then: create the listener after the tables. Each table's save (and its
  ckpt.info count) runs on the table's device, so the tables of PS tasks
  are saved by their PS, all in parallel; ckpt.info sums the counts of
  every table, i.e. of the whole cluster.

  Args:
    basename: the checkpoint path prefix passed to the Saver.
    write_ckpt_info: whether to write `ckpt.info-<step>`.
    compression_type: of the table shards, see `MultiHashTable.save`.
    timeout_secs: the deadline of a save's run (default an hour, as the
      original; at most a year); None for none (a year, whatever the
      session's operation_timeout_in_ms). A save past it fails the step with
      DeadlineExceededError: raise it where tables take longer to write
      (hundreds of GB, a remote file system).
  """

  # Never a guard listener (NoFirstSaveCheckpointSaverHook refuses it).
  saves_checkpoint_files = True

  def __init__(self,
               basename: str,
               write_ckpt_info: bool = True,
               compression_type: str = "SNAPPY",
               timeout_secs: Optional[float] = _TIMEOUT_SECS):
    super().__init__()
    utils.check_graph_mode("MultiHashTableCheckpointSaverListener")
    self._write_ckpt_info = write_ckpt_info
    self._compression_type = _checked_compression_type(compression_type)
    self._run_options = save_utils.checkpoint_run_options(timeout_secs)
    self._helper = save_utils.SaveHelper(basename)
    self._table_id_to_placeholder = {}
    self._features_counts_tuples = []
    self._save_op = self._build_save_graph()
    self._restorers_before = frozenset()

  def begin(self) -> None:
    # Its hook's begin() calls it: restorer hooks pending before are not
    # this session's to wait for (save_utils.check_restorer_hooks_ran).
    self._restorers_before = basic_restore_hook.restorer_registrations()

  def before_save(self, sess: tf.compat.v1.Session,
                  global_step_value: int) -> None:
    """Saves the tables (and ckpt.info) of the checkpoint at this step.

    Args:
      sess: the session to run the save in.
      global_step_value: the step of the checkpoint being saved.

    Raises:
      RuntimeError: a CheckpointRestorerHook of the session being created
        has not restored yet (this saver's hook is listed before it).
      tf.errors.OpError: a table save failed (or ran past timeout_secs).
    """
    # A save before the restore (a saver hook listed before the restorer
    # hook) would overwrite this step's tables with the fresh, empty ones.
    save_utils.check_restorer_hooks_ran(
        sess, "MultiHashTableCheckpointSaverListener", self._restorers_before)
    # Files of failed saves (their Saver never ran, nor after_save): with
    # ignore_save_errors, each failing interval would leave a dump.
    self._helper.delete_stale_checkpoint_files(global_step_value,
                                               temporaries=False)
    # Before the Saver, so the checkpoint file only names complete tables.
    base_dir = self._helper.get_ckpt_asset_dir(
        self._helper.get_ckpt_prefix(global_step_value))
    logging.info("Saving MultiHashTables of step %d to %s.", global_step_value,
                 base_dir)
    start = time.monotonic()
    utils.makedirs_durably(base_dir)
    feed_dict = {
        _tensor_of_table(self._table_id_to_placeholder, table, "saver"):
            base_dir + table.shared_name
        for table in _tables_run_by(sess)
    }
    # Each group's PS count is recorded once all its PS saved; restores
    # read the tables of that many PS, so none missing goes unnoticed and
    # none left by another PS count is read. A step with a checkpoint saved
    # again (TF's CheckpointSaverHook does at session creation) keeps its
    # other PS's files until this save is complete.
    step_has_checkpoint = bool(self._ps_groups) and (
        self._helper.has_checkpoint(global_step_value))
    with contextlib.ExitStack() as groups:
      for prefix, num_ps in self._ps_groups.items():
        groups.enter_context(
            save_utils.saving_per_ps_files(
                base_dir, prefix, _ps_table_files(prefix, data_files=True),
                num_ps, step_has_checkpoint))
      for name in self._unmarked_ps_tables:
        save_utils.mark_ps_files_saving(base_dir, name)
      # One run: the feature_stat ops depend on the saves, so running them
      # apart would save every table again.
      with save_utils.explaining_deadline(
          self._run_options, f"saving the MultiHashTables of step "
          f"{global_step_value} to {base_dir}",
          "MultiHashTableCheckpointSaverListener", "the save ops still "
          "running were cancelled (each stops within a few thousand entries "
          "and deletes its temporaries; tables saved before the deadline "
          "keep their files); the step's checkpoint is not written"):
        _, counts = sess.run(
            (self._save_op, self._features_counts_tuples),
            feed_dict=feed_dict,
            options=self._run_options)
      for name, num_ps in self._unmarked_ps_tables.items():
        save_utils.write_ps_count(base_dir, name, num_ps)
    self._delete_other_layouts(_tables_run_by(sess), base_dir,
                               global_step_value)
    # The entries are counted where ckpt.info is written.
    entries = (f" ({sum(int(np.sum(c)) for _, c in counts)} entries)"
               if self._write_ckpt_info else "")
    logging.info("Saved MultiHashTables of step %d%s in %.1f s.",
                 global_step_value, entries, time.monotonic() - start)
    if self._write_ckpt_info:
      self._write_info(counts, global_step_value)

  def after_save(self, session: tf.compat.v1.Session,
                 global_step_value: int) -> None:
    """Deletes the table files of the checkpoints the Saver deleted.

    Args:
      session: unused.
      global_step_value: the step just saved (never deleted).
    """
    # The Saver has written this step and deleted the checkpoints past
    # max_to_keep: delete their tables and ckpt.info files as well.
    del session
    self._helper.delete_stale_checkpoint_files(global_step_value)

  def _delete_other_layouts(self, tables: List["MultiHashTable"],
                            base_dir: str, global_step_value: int) -> None:
    """After a save of the tables into `base_dir`, deletes the files
    there of this graph's tables saved under the other layout (a PS group's
    files beside its local table's, and the other way round) if the step
    has no checkpoint (none recorded nor on disk). A save of the step by a
    job of the other layout that died before its Saver ran left them, and
    restores prefer them (a local table its own files, a PS group its PS
    files) over the save just made. (A checkpoint's step keeps them: saved
    again at session creation, its tables are what was restored from them,
    and a checkpoint kept by keep_checkpoint_every_n_hours, out of the
    state file, may still be restored by a job of the other layout.)"""
    live_names = {t.shared_name for t in tables}
    patterns = []
    for prefix in self._ps_groups:
      patterns += [
          _local_table_files(name)
          for name in _local_names_of_group(prefix)
          if name not in live_names
      ]
    for t in tables:
      # Local tables (PS tables outside groups keep their own PS count
      # record, under their name).
      if t.ps_shard is None and t.ps_placement is None:
        for prefix in _group_prefixes_of_local_name(t.shared_name):
          if prefix not in self._ps_groups:
            patterns += [
                _ps_table_files(prefix, data_files=True),
                # Its PS count record.
                re.compile(re.escape(save_utils.ps_count_path("", prefix)))
            ]
    if not patterns:
      return
    # The tables of the graph, and the PS count records of those that keep
    # one under their name (PS tables outside groups; a local table's name
    # may be a dead PS group's prefix, whose record goes).
    live = [_local_table_files(name) for name in live_names] + [
        re.compile(re.escape(save_utils.ps_count_path("", name)))
        for name in self._unmarked_ps_tables
    ]
    stale = sorted(
        n for n in (name.rstrip("/") for name in utils.listdir(base_dir))
        if any(p.fullmatch(n) for p in patterns) and
        not any(p.fullmatch(n) for p in live))
    if not stale or self._helper.has_checkpoint(global_step_value):
      return
    for name in stale:
      utils.remove_if_there(os.path.join(base_dir, name))
    logging.warning(
        "Deleted %s from %s: tables of this step saved by a job of another "
        "layout (PS tables or a local table) whose save did not finish.",
        stale, base_dir)

  def _write_info(self, features_counts: List[Tuple[Any, Any]],
                  global_step_value: int) -> None:
    counts_by_feature = collections.defaultdict(int)
    for features, counts in features_counts:
      for feature, count in zip(features.tolist(), counts.tolist()):
        name = feature.decode() if isinstance(feature, bytes) else feature
        counts_by_feature[name] += count
    info = ckpt_info_pb2.CkptInfo()
    for feature, count in counts_by_feature.items():
      info.feature_counts[feature] = count
    path = self._helper.get_ckpt_info_path(global_step_value)
    utils.write_file_atomically(path, str(info))
    logging.info("Wrote %s.", path)

  def _build_save_graph(self) -> tf.Operation:
    tables = ops.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY)
    _check_names_apart_from_ps_groups(tables)
    self._ps_groups = {
        t.ps_shard.group_prefix: t.ps_shard.num_ps for t in tables if t.ps_shard
    }
    # PS tables outside groups: their PS count is recorded under their own
    # name, so that a restore into another count is refused.
    self._unmarked_ps_tables = {
        t.shared_name: t.ps_placement[0]
        for t in tables
        if t.ps_shard is None and t.ps_placement is not None
    }
    save_ops = []
    for table in tables:
      basename = tf.compat.v1.placeholder(tf.string, shape=[])
      self._table_id_to_placeholder[id(table)] = basename
      with _on_device_of(table):
        save_op = table.save(basename=basename,
                             compression_type=self._compression_type).as_op()
        save_ops.append(save_op)
        if self._write_ckpt_info:
          # feature_stat reads the saved files: a CPU op, also beside GPU
          # tables (on their task's CPU).
          spec = tf.DeviceSpec.from_string(table.handle.device or "")
          with tf.control_dependencies([save_op]), tf.device(
              spec.replace(device_type="CPU", device_index=0)):
            self._features_counts_tuples.append(table.feature_stat(basename))
    with tf.control_dependencies(save_ops):
      return tf.no_op(name="multi_hashtable_save_all")


@contextlib.contextmanager
def _on_device_of(table: MultiHashTable):
  """Builds ops on `table`'s device, whatever the outer scopes."""
  graph = tf.compat.v1.get_default_graph()
  with graph.colocate_with(None, ignore_existing=True), tf.device(
      table.handle.device):
    yield


class MultiHashTableCheckpointRestorerListener(
    basic_restore_hook.CheckpointRestorerListener):
  """Restores every MultiHashTable of the graph from the latest checkpoint
  (or the one the session's global step was restored from: a rollback, see
  `save_utils.restored_checkpoint`).

  The restore ops are built at construction, for the tables the graph holds
  then, each on its table's device. A restore replaces the tables' entries,
  so in a cluster only the chief runs it (its hook in the chief's hooks):
  a worker that restored the PS tables whenever it (re)started would roll
  them back under the others' training. A restarted PS is restored alone
  through `ps_monitor`.

  A table of a PS (`MultiHashTable.ps_shard` is set, as for the tables of
  a `DistributedMultiTypeHashTable`) is restored from the checkpoints of
  its group's tables, whatever their number: `before_restore` lists the
  checkpoint's asset directory for "<group prefix>_<j>" (old PS j of N,
  `find_ps_checkpoints`), and PS i of M restores the entries with
  floormod(id, M) == i from those of them that can hold such ids
  (`ps_checkpoints_to_read`: with N == M, only PS i's). So a checkpoint of
  N PS tasks restores into M, optimizer state included. Other tables are
  restored from "<asset dir><shared_name>".

  A job can also move between one local table (`num_ps == 0` in
  `distributed_ps_factory`, shared name "MonolithMultiHashTable_<suffix>")
  and PS tables (group "MonolithMultiHashTable[_<suffix>]"): a PS table
  whose group has no checkpoint restores its ids from the local table's,
  and a CPU table without a checkpoint of its own restores every id from
  the checkpoints of the PS group of its name.

  Args:
    basename: the checkpoint path prefix; the latest checkpoint of its
      directory is restored (or the one rolled back to).
    ps_monitor: when given, only the devices it reports uninitialized
      (`needs_restore(device, uninitialized_ps_tasks(session))`) are
      restored.
    timeout_secs: the deadline of the restore's run (default an hour, as
      the original; at most a year); None for none (a year).
    new_tables: tables (shared names, or a PS group's prefix) a checkpoint
      may lack, added to the model since: where it has none of theirs
      (neither layout), they start empty, with a warning. Any other table a
      checkpoint lacks fails the restore with NotFound naming it (as TF's
      Saver does for variables), so that a lost table is never taken for a
      new one.
    values_only: table names (slots, of any MultiHashTable's `table_names`)
      whose optimizer changed since the checkpoint, or that SERVING tables
      saved: they restore the values and update times and start the
      optimizer state afresh (see `MultiHashTable.restore`). Give it for
      the first restore after the change only: later checkpoints hold the
      new optimizer's state.

  Raises:
    ValueError: `new_tables` or `values_only` names no table of the graph.
  """

  def __init__(self, basename: str, ps_monitor: Optional[Any] = None,
               timeout_secs: Optional[float] = _TIMEOUT_SECS,
               new_tables: Sequence[str] = (),
               values_only: Sequence[str] = ()):
    super().__init__()
    utils.check_graph_mode("MultiHashTableCheckpointRestorerListener")
    self._ps_monitor = ps_monitor
    self._run_options = save_utils.checkpoint_run_options(timeout_secs)
    self._helper = save_utils.SaveHelper(basename)
    self._basename = self._helper.basename
    if isinstance(new_tables, str):
      raise ValueError(f"new_tables must be a list of names, got the string "
                       f"{new_tables!r}")
    self._new_tables = set(new_tables)
    tables = ops.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY)
    known = ({t.shared_name for t in tables} |
             {t.ps_shard.group_prefix for t in tables if t.ps_shard})
    unknown = sorted(self._new_tables - known)
    if unknown:
      raise ValueError(
          f"new_tables names {unknown}, which are neither a MultiHashTable's "
          f"shared name nor a PS group's prefix in this graph (they are: "
          f"{sorted(known)})")
    self._values_only = set(checked_table_names(values_only, "values_only"))
    slots = {name for t in tables for name in t.table_names}
    unknown = sorted(self._values_only - slots)
    if unknown:
      raise ValueError(
          f"values_only names {unknown}, which no MultiHashTable of this "
          f"graph holds (their tables: {sorted(slots)})")
    self._table_id_to_placeholder = {}
    self._restore_ops_per_device = self._build_restore_graph()
    self._reset_ops = _build_reset_graph()

  def before_restore(self, session: tf.compat.v1.Session) -> None:
    """Creates the tables and restores them from the latest checkpoint
    (or the one whose step the session restored, see
    `save_utils.restored_checkpoint`).

    Without a checkpoint in the basename's directory, with a `ps_monitor`,
    the tables it would restore start empty instead (emptied): those of the
    PS tasks it finds not set up, e.g. set up for another job (its
    `model_dir`) or PS count (a new job on PS tasks still running another's
    tables), and of devices off the PS job (a worker's own tables, which
    would roll back to a checkpoint); and where the global step reads 0
    (the session initialized every variable, those of PS tasks still set
    up for this job too), every table: kept, they would pair trained
    embeddings with fresh dense weights.
    `HashFilterCheckpointRestorerListener` does the same for the hash
    filters. Without a monitor it logs that there is no checkpoint and
    changes nothing.

    Args:
      session: the session to run the restore in.

    Raises:
      tf.errors.OpError: as `MultiHashTable.restore`.
    """
    ckpt_prefix = save_utils.restored_checkpoint(
        session, os.path.dirname(self._basename), self._ps_monitor)
    # One look at the PS tasks (a run reaching every one), not one a device.
    uninitialized = (self._ps_monitor.uninitialized_ps_tasks(session)
                     if self._ps_monitor else None)
    if not ckpt_prefix:
      self._reset(session, uninitialized)
      return
    restore_ops = []
    for device, device_ops in self._restore_ops_per_device.items():
      if uninitialized is None or self._ps_monitor.needs_restore(
          device, uninitialized):
        restore_ops.extend(device_ops)  # (table, op)
    if not restore_ops:
      session.run([t.initializer for t in _tables_run_by(session)])
      logging.info("Every PS task kept its hash tables; none restored.")
      return
    logging.info("Restoring hash tables from %s.", ckpt_prefix)
    asset_dir = self._helper.get_ckpt_asset_dir(ckpt_prefix)
    tables = _tables_run_by(session)
    # Saves of another layout are read only where no table of this graph
    # owns them: a new table must not take a live table's entries.
    live_names = {t.shared_name for t in tables}
    feed_dict = {}
    groups = {}  # group prefix -> the old PS tables' checkpoints
    restoring = {id(t) for t, _ in restore_ops}
    started_empty = set()  # id() of new tables the checkpoint lacks
    for t in tables:
      placeholder = _tensor_of_table(self._table_id_to_placeholder, t,
                                     "restorer")
      shard = t.ps_shard
      new = (t.shared_name in self._new_tables or
             (shard is not None and shard.group_prefix in self._new_tables))
      # (Tables of PS tasks that kept theirs are not restored.)
      new = new and id(t) in restoring
      if shard is None:
        own = asset_dir + t.shared_name
        saved = _has_checkpoint(own)
        if t.ps_placement is not None:
          _check_unmarked_ps_count(asset_dir, t, saved)
        if saved or (t.on_gpu and not new):
          feed_dict[placeholder] = own if t.on_gpu else [own]
          continue
        # The job had PS tables: all their ids, from every PS's checkpoint.
        old = [] if t.on_gpu else _ps_checkpoints_of_local_name(
            asset_dir, t.shared_name, live_names)
        if not old and new:
          started_empty.add(id(t))
          continue
        if old:
          logging.info("Restoring %s from the checkpoints of %d PS tables "
                       "(%s, ...).", t.shared_name, len(old), old[0])
        feed_dict[placeholder] = old or [own]
        continue
      if shard.group_prefix not in groups:
        old = find_ps_checkpoints(asset_dir, shard.group_prefix)
        source = f"{len(old)} PS tasks"
        if not old and not t.on_gpu:
          # The job had one local table (CPU tables reshard it).
          old = [
              asset_dir + name
              for name in _local_names_of_group(shard.group_prefix)
              if name not in live_names and _has_checkpoint(asset_dir + name)
          ][:1]
          source = f"the local table {old[0]}" if old else "0 PS tasks"
        groups[shard.group_prefix] = old
        if old or not new:
          logging.info("Restoring the tables %s_<i> of %d PS tasks from the "
                       "checkpoints of %s.", shard.group_prefix, shard.num_ps,
                       source)
      old = groups[shard.group_prefix]
      if not old and new:
        started_empty.add(id(t))
        continue
      if t.on_gpu:
        if old and len(old) != shard.num_ps:
          raise NotImplementedError(
              f"the gpucuco tables {shard.group_prefix}_<i> of {shard.num_ps} "
              f"PS tasks cannot restore the checkpoint of {len(old)} PS tasks "
              f"in {asset_dir}: GPU tables restore only into the same PS "
              "count (restore into CPU tables to reshard)")
        feed_dict[placeholder] = asset_dir + t.shared_name
        continue
      # None found: the table's own name, so that the op fails naming it.
      feed_dict[placeholder] = (ps_checkpoints_to_read(old, shard)
                                if old else [asset_dir + t.shared_name])
    if started_empty:
      logging.warning(
          "MultiHashTables %s have no checkpoint in %s: they start empty "
          "(new_tables names them).",
          ", ".join(t.shared_name for t in tables if id(t) in started_empty),
          asset_dir)
    restore_ops = [op for t, op in restore_ops if id(t) not in started_empty]
    # A new table of a PS task that kept running (set up for another PS
    # count or job) may hold entries already. (Without a monitor, tables
    # are not deleted: see _reset.)
    _reset_tables(
        session, [t for t in tables if id(t) in started_empty]
        if uninitialized is not None else [], self._reset_ops)
    start = time.monotonic()
    with save_utils.explaining_deadline(
        self._run_options, f"restoring the hash tables from {ckpt_prefix}",
        "MultiHashTableCheckpointRestorerListener", "the restore ops still "
        "running were cancelled (each stops within a few thousand entries: "
        "a table it had begun refilling is left empty, one it had not is as "
        "it was; ops done before the deadline restored theirs)"):
      session.run(restore_ops, feed_dict=feed_dict, options=self._run_options)
    logging.info("Restored the hash tables from %s in %.1f s (%d restore "
                 "ops).", ckpt_prefix, time.monotonic() - start,
                 len(restore_ops))

  def _reset(self, session: tf.compat.v1.Session,
             uninitialized: Optional[Set[int]]) -> None:
    """Where there is no checkpoint, empties the tables the monitor says
    need a restore (`uninitialized`), or every table where the global step
    reads 0 (see `before_restore`). Without a monitor, none: every table
    may be in use by workers that kept training, whose ops would not find
    a table deleted under them."""
    if uninitialized is None:
      tables = []
    elif save_utils.global_step_is_zero(session):
      tables = _tables_run_by(session)
    else:
      tables = [
          t for t in _tables_run_by(session)
          if self._ps_monitor.needs_restore(t.handle.device, uninitialized)
      ]
    logging.info(
        "No checkpoint in %s; hash tables are not restored%s.",
        os.path.dirname(self._basename),
        ": " + ", ".join(t.shared_name for t in tables) + " start empty"
        if tables else "")
    _reset_tables(session, tables, self._reset_ops)

  def _build_restore_graph(
      self) -> Dict[str, List[Tuple["MultiHashTable", tf.Operation]]]:
    tables = ops.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY)
    _check_names_apart_from_ps_groups(tables)
    restore_ops_per_device = collections.defaultdict(list)
    for table in tables:
      shard = table.ps_shard
      # gpucuco tables have no resharding restore: they restore their own
      # PS's checkpoint, from the same PS count only. CPU tables outside PS
      # groups restore resharded too (one shard): from their own
      # checkpoint, or from a PS group's (see the class docstring).
      resharded = not table.on_gpu
      if resharded:
        basename = tf.compat.v1.placeholder(tf.string, shape=[None])
      else:
        basename = tf.compat.v1.placeholder(tf.string, shape=[])
      self._table_id_to_placeholder[id(table)] = basename
      values_only = self._values_only.intersection(table.table_names)
      with _on_device_of(table):
        if not resharded:
          restore_op = table.restore(basename=basename,
                                     values_only=values_only).as_op()
        else:
          restore_op = table.restore_resharded(
              basenames=basename,
              id_modulus=shard.num_ps if shard else 1,
              id_remainder=shard.ps_index if shard else 0,
              values_only=values_only).as_op()
      restore_ops_per_device[table.handle.device].append((table, restore_op))
    return restore_ops_per_device


class _ResetOps(NamedTuple):
  """An op deleting a table's resource, and whether it exists."""
  delete: tf.Operation
  exists: tf.Tensor


def _build_reset_graph() -> Dict[int, _ResetOps]:
  """Per table of the graph (by `id`), its `_ResetOps`."""
  resets = {}
  for table in ops.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY):
    with _on_device_of(table):
      resets[id(table)] = _ResetOps(
          tf.raw_ops.DestroyResourceOp(resource=table.handle,
                                       ignore_lookup_error=True),
          hash_table_ops.is_hash_table_initialized(table.handle))
  return resets


def _reset_tables(session: tf.compat.v1.Session, tables: List[MultiHashTable],
                  resets: Dict[int, _ResetOps]) -> None:
  """Empties `tables`: deletes their resources, then runs every table's
  initializer, which creates them again, empty (with the hash filters they
  had: `HashFilterCheckpointRestorerListener` empties those).

  Raises:
    tf.errors.FailedPreconditionError: a table is still in use elsewhere
      (an op of another session holds it), so it was not created again.
  """
  reset_ops = [_tensor_of_table(resets, t, "restorer") for t in tables]
  if reset_ops:
    session.run([r.delete for r in reset_ops])
  session.run([t.initializer for t in _tables_run_by(session)])
  if not tables:
    return
  created = session.run([r.exists for r in reset_ops])
  stale = [t.shared_name for t, ok in zip(tables, created) if not ok]
  if stale:
    # A creation op whose resource another holder kept alive does not create
    # it again.
    raise tf.errors.FailedPreconditionError(
        None, None,
        f"MultiHashTables {stale} could not be emptied: another session's "
        "ops still held them when they were deleted (a task of another job "
        "using the same PS tasks?). Stop that job, or restart the PS tasks "
        "holding them")


class MultiHashTableRestorerSaverListener(
    tf.compat.v1.train.CheckpointSaverListener):
  """Drops from the tables, right after each save, what the save skipped.

  A save leaves out the entries expired by their slot's expire time; this
  listener then evicts them from the tables in place (`MultiHashTable.evict`,
  the same check). The original restored the checkpoint just saved instead;
  restoring replaces the tables (empties, then refills them), which would
  lose the updates that other workers make meanwhile and show them empty
  tables while it reads.

  Args:
    ckpt_prefix: the checkpoint basename (for the log).
    timeout_secs: the deadline of the evictions' run (default an hour, as
      the savers'; None: none in practice): without one it took the
      session's operation_timeout_in_ms, and failed unexplained.
  """

  def __init__(self, ckpt_prefix: str,
               timeout_secs: Optional[float] = _TIMEOUT_SECS):
    utils.check_graph_mode("MultiHashTableRestorerSaverListener")
    self._ckpt_prefix = ckpt_prefix
    self._run_options = save_utils.checkpoint_run_options(timeout_secs)
    self._evicted = {}  # id(table) -> the evicted counts of its evict op
    for table in tf.compat.v1.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY):
      with _on_device_of(table):
        self._evicted[id(table)] = table.evict()[1]

  def after_save(self, session: tf.compat.v1.Session,
                 global_step_value: int) -> None:
    """Evicts the tables' expired entries.

    Args:
      session: the session to run the evictions in.
      global_step_value: the step saved (for the log).

    Raises:
      ValueError: a table was created after this listener.
      tf.errors.OpError: as `MultiHashTable.evict`.
    """
    with save_utils.explaining_deadline(
        self._run_options, f"evicting the tables' expired entries after the "
        f"save of step {global_step_value}",
        "MultiHashTableRestorerSaverListener", "the evictions still running "
        "go on to their end (each shard's is whole; the next save's takes "
        "what they leave)"):
      evicted = session.run([
          _tensor_of_table(self._evicted, table, "restorer-saver")
          for table in _tables_run_by(session)
      ], options=self._run_options)
    logging.info("After the save of step %s to %s: evicted %d expired entries.",
                 global_step_value, self._ckpt_prefix,
                 sum(int(n) for counts in evicted for n in counts))


class MultiHashTableStatsHook(tf.compat.v1.train.SessionRunHook):
  """Logs the tables' sizes, and the filters' admission figures, while
  training runs: a PS's memory grows with every new id, and a filter too
  small for its traffic admits what it cannot place, which nothing else
  shows.

  Every `every_n_secs` (after the first step, then after the first step
  that ends past each interval) and at the end, one line per table: its
  entries, memory, bytes per entry and the entries added since the
  previous line (for a multi table of more than `MAX_TABLE_LINES` tables,
  one line of their totals, naming its three largest); one line per
  filter: its occupied cells of its capacity and its failures, at WARNING
  when they grew since the previous report.
  The figures are read in a run of their own (`MultiHashTable.stats()`,
  `hash_filter_ops.filter_stats`), on the tables' and filters' tasks, not
  with the training step. With `summary_dir`, also TensorBoard scalars
  ("hash_table/<shared name>/<table>/entries" and ".../memory_bytes", or
  "hash_table/<shared name>/entries" and ".../memory_bytes" for a multi
  table reported in one line; "hash_filter/<name>/estimated_elements" and
  ".../failures") at the
  global step.

  Args:
    tables: the `MultiHashTable`s (e.g. `dist.tables` of a
      `DistributedMultiTypeHashTable`); None: every MultiHashTable of the
      graph when the session begins.
    hash_filters: filter handles (e.g. of `create_hash_filters`).
    every_n_secs: the interval between reports, > 0.
    summary_dir: where to write the summaries, or None for none.
  """

  # A multi table of more tables than this is reported in one line (and
  # its totals as summaries): 100 PS tasks of 2,000 tables each logged
  # 200,000 lines a report.
  MAX_TABLE_LINES = 64

  def __init__(self,
               tables: Optional[Sequence["MultiHashTable"]] = None,
               hash_filters: Sequence[tf.Tensor] = (),
               every_n_secs: float = 600.0,
               summary_dir: Optional[str] = None):
    if (not isinstance(every_n_secs, numbers.Real) or
        isinstance(every_n_secs, bool) or not every_n_secs > 0 or
        math.isinf(every_n_secs)):
      raise ValueError(
          f"every_n_secs must be a finite number > 0, got {every_n_secs!r}")
    self._tables = None if tables is None else list(tables)
    self._hash_filters = utils.checked_handles(hash_filters, "hash_filters")
    self._every_n_secs = float(every_n_secs)
    self._summary_dir = summary_dir
    # Set by begin(): what a report fetches, and whose figures they are,
    # built once per graph (a session made again on a finalized graph, as
    # after a lost task, calls begin() again).
    self._fetches = {}
    self._fetches_graph = None
    self._table_names = []  # (shared name, table names) of each table
    self._filter_names = []
    self._writes_summaries = False
    self._last_report = None  # time.monotonic() of the latest report
    self._last_entries = {}  # (shared name, table) -> entries then
    self._last_failures = {}  # filter name -> failures then

  def begin(self) -> None:
    graph = tf.compat.v1.get_default_graph()
    if self._fetches_graph is not graph:
      self._build_fetches()
      self._fetches_graph = graph
    # Made here, in the graph (as SummarySaverHook): v1's FileWriter
    # refuses to be made where eager execution is on, as it may be around
    # a run; reports then take it from the cache.
    self._writes_summaries = False
    if self._summary_dir:
      try:
        tf.compat.v1.summary.FileWriterCache.get(self._summary_dir)
        self._writes_summaries = True
      except (OSError, tf.errors.OpError) as e:
        logging.warning("MultiHashTableStatsHook: cannot write summaries to "
                        "%s (only logging the figures): %s",
                        self._summary_dir, e)
    self._last_report = None

  def _build_fetches(self) -> None:
    """The ops a report runs, in the default graph."""
    tables = (tf.compat.v1.get_collection(_MULTI_HASH_TABLE_GRAPH_KEY)
              if self._tables is None else self._tables)
    self._table_names = [(t.shared_name, t.table_names) for t in tables]
    self._filter_names = [
        hash_filter_ops.filter_name(f) for f in self._hash_filters
    ]
    with tf.name_scope("table_stats"):
      self._fetches = {
          "tables": [t.stats() for t in tables],
          "filters": [
              hash_filter_ops.filter_stats(f) for f in self._hash_filters
          ],
      }
    global_step = tf.compat.v1.train.get_global_step()
    if global_step is not None:
      self._fetches["global_step"] = global_step

  def after_run(self, run_context: tf.compat.v1.train.SessionRunContext,
                run_values: tf.compat.v1.train.SessionRunValues) -> None:
    now = time.monotonic()
    if (self._last_report is None or
        now - self._last_report >= self._every_n_secs):
      self._last_report = now
      self._report(run_context.session)

  def end(self, session: tf.compat.v1.Session) -> None:
    self._report(session)

  def _log_tables(self, label: str, key: Tuple[str, Optional[str]],
                  entries: int, memory: int, more: str = "") -> None:
    """Logs the line of a table (or of a multi table's tables together)."""
    previous = self._last_entries.get(key)
    self._last_entries[key] = entries
    logging.info(
        "%s: %d entries, %.1f MiB (%s bytes per entry)%s%s.", label, entries,
        memory / 2**20, f"{memory / entries:.0f}" if entries else "-",
        "" if previous is None else
        f", {entries - previous:+d} entries since the last report", more)

  def _report(self, session: tf.compat.v1.Session) -> None:
    """Reads the figures and logs (and writes) them."""
    try:
      figures = session.run(self._fetches)
    except tf.errors.OpError as e:
      # Watching must not end training; the step reports a lost task.
      logging.warning("MultiHashTableStatsHook: could not read the figures: "
                      "%s", e)
      return
    scalars = []
    for (shared_name, names), read in zip(self._table_names,
                                          figures["tables"]):
      entries = [int(e) for e in read["entries"]]
      memory = [int(m) for m in read["memory_bytes"]]
      if len(names) <= self.MAX_TABLE_LINES:
        for name, table_entries, table_memory in zip(names, entries, memory):
          self._log_tables(f"MultiHashTable {shared_name} table {name}",
                           (shared_name, name), table_entries, table_memory)
          scalars += [
              (f"hash_table/{shared_name}/{name}/entries", table_entries),
              (f"hash_table/{shared_name}/{name}/memory_bytes", table_memory)
          ]
        continue
      largest = sorted(zip(entries, names), key=lambda pair: -pair[0])[:3]
      self._log_tables(
          f"MultiHashTable {shared_name} ({len(names)} tables)",
          (shared_name, None), sum(entries), sum(memory),
          "; the largest: " + ", ".join(f"{name} ({count})"
                                         for count, name in largest))
      scalars += [(f"hash_table/{shared_name}/entries", sum(entries)),
                  (f"hash_table/{shared_name}/memory_bytes", sum(memory))]
    for name, read in zip(self._filter_names, figures["filters"]):
      failures = int(read["failures"])
      previous = self._last_failures.get(name)
      self._last_failures[name] = failures
      line = (f"Hash filter {name}: {int(read['estimated_elements'])} of "
              f"{int(read['capacity'])} cells occupied, {failures} failures")
      if previous is not None:
        line += f" ({failures - previous:+d} since the last report)"
      if previous is not None and failures > previous:
        logging.warning(
            "%s: ids it could not place were admitted as if past their "
            "threshold; a filter this small for its traffic filters less "
            "(give it a larger capacity).", line)
      else:
        logging.info("%s.", line)
      scalars += [
          (f"hash_filter/{name}/estimated_elements",
           int(read["estimated_elements"])),
          (f"hash_filter/{name}/failures", failures)]
    if self._writes_summaries and scalars:
      summary = tf.compat.v1.Summary(value=[
          tf.compat.v1.Summary.Value(tag=tag, simple_value=value)
          for tag, value in scalars
      ])
      try:
        # The cache's writer (one events file per folder), open again if
        # closed meanwhile.
        writer = tf.compat.v1.summary.FileWriterCache.get(self._summary_dir)
        writer.reopen()
        writer.add_summary(summary, figures.get("global_step"))
        writer.flush()
      except (OSError, RuntimeError, tf.errors.OpError) as e:
        # RuntimeError: the cache was cleared and eager execution is on.
        logging.warning("MultiHashTableStatsHook: could not write the "
                        "summaries to %s: %s", self._summary_dir, e)


ops.register_proto_function(
    _MULTI_HASH_TABLE_GRAPH_KEY,
    proto_type=multi_hash_table_ops_pb2.MultiHashTableProto,
    to_proto=MultiHashTable.to_proto,
    from_proto=MultiHashTable.from_proto)

ops.NotDifferentiable("IsHashTableInitialized")
