"""Every op of libmonolith_ops.so rejects inputs of wrong shape or dtype.

The ops and their inputs come from the library's OpDefs; each op has a valid
call (below), whose every non-resource input is then replaced, one at a time,
by values of wrong shape: a vector [2], an empty [0] and one-element [1] or
[1, 1] tensors where a scalar is needed, a scalar or a rank-2 tensor where a
vector is needed, a scalar, a vector or a rank-3 tensor where a matrix is
(in a list input, e.g. one tensor per table, its first tensor). Each must be
InvalidArgumentError naming the input at run time (through placeholders of
unknown shape, so the kernels' own checks run) and ValueError at graph construction (tensors of known shape, so the shape
functions' checks run); a wrong dtype must be TypeError or ValueError at
graph construction. A kernel that reads a wrong-shaped input with
Tensor::scalar() aborts the whole process on TF's CHECK instead.

The sweep therefore first runs in a child process: an op that aborts it is
reported as a failure naming the op and input (and the child resumes with
the following ops), not as a dead test runner. The ops the child survived
are then swept again in this process.
"""

import collections
import os
import random
import re
import subprocess
import sys
from typing import Dict, List, NamedTuple

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.python.client import pywrap_tf_session

from monolith.native_training import test_utils
from monolith.native_training import utils
from monolith.native_training.runtime.hash_table import embedding_hash_table_pb2
from monolith.native_training.runtime.ops import gen_monolith_ops as ops

tf1 = tf.compat.v1


def _op_defs() -> List[op_def_pb2.OpDef]:
  """The OpDefs of every op the library registers (it is loaded already)."""
  handle = pywrap_tf_session.TF_LoadLibrary(ops._LIBRARY)  # pylint: disable=protected-access
  try:
    op_list = op_def_pb2.OpList.FromString(
        pywrap_tf_session.TF_GetOpList(handle))
  finally:
    pywrap_tf_session.TF_DeleteLibraryHandle(handle)
  return sorted(op_list.op, key=lambda op_def: op_def.name)


_OP_DEFS = {op_def.name: op_def for op_def in _op_defs()}
# The Python wrapper of each op, by op name.
_WRAPPERS = {
    name.replace("_", ""): fn
    for name, fn in vars(ops).items()
    if callable(fn) and not name.startswith("_")
}

_TABLE = "fuzz"


def _config() -> bytes:
  """Tables a (dim 1) and b (dim 2), one SGD segment each."""
  config = embedding_hash_table_pb2.MultiEmbeddingHashTableConfig()
  for name, dim in (("a", 1), ("b", 2)):
    table = embedding_hash_table_pb2.EmbeddingHashTableConfig()
    segment = table.entry_config.segments.add(dim_size=dim)
    segment.init_config.zeros.SetInParent()
    segment.opt_config.sgd.learning_rate = 1.0
    config.names.append(name)
    config.configs.append(table)
  return config.SerializeToString()


def _i64(x):
  return np.array(x, np.int64)


def _i32(x):
  return np.array(x, np.int32)


def _f32(x):
  return np.array(x, np.float32)


def _str(x):
  return np.array(x, object)


def _u8(x):
  return np.array(x, np.uint8)


class _Call(NamedTuple):
  """A valid call: non-resource inputs by name, and attrs."""
  inputs: Dict[str, np.ndarray]
  attrs: Dict[str, object]


def _valid_calls(workdir: str) -> Dict[str, _Call]:
  """A valid call of every op. Resource inputs are fed by _resources().

  Ids 1 and 2 go to table a (dim 1), id 3 to table b (dim 2): 4 floats.
  """
  ids, split = _i64([1, 2, 3]), _i64([0, 2, 3])
  checkpoint = os.path.join(workdir, "ckpt", _TABLE)
  return {
      "CreateMonolithMultiHashTable":
          _Call({"config": _str(_config())}, {"shared_name": _TABLE}),
      "IsHashTableInitialized":
          _Call({}, {}),
      "MonolithDummyHashFilter":
          _Call({}, {"shared_name": "fuzz_dummy_filter"}),
      "MonolithHashFilter":
          _Call({}, {"capacity": 1000, "split_num": 5,
                     "shared_name": "fuzz_sliding_filter"}),
      "MonolithProbabilisticFilter":
          _Call({}, {"shared_name": "fuzz_probabilistic_filter"}),
      "MonolithHashFilterSave":
          _Call({"basename": _str(os.path.join(workdir, "filter", "f"))}, {}),
      "MonolithHashFilterStats":
          _Call({}, {}),
      "MonolithHashFilterClear":
          _Call({}, {}),
      "MonolithHashFilterRestore":
          _Call({"basename": _str(os.path.join(workdir, "filter", "f"))}, {}),
      "MonolithHashFilterInterceptGradient":
          _Call({"ids": _i64([1, 2]), "embeddings": _f32([[1], [2]])}, {}),
      "MonolithHashFilterInterceptGradientGradient":
          _Call({"ids": _i64([1, 2]), "grad": _f32([[1], [2]])}, {}),
      "MonolithDummySyncClient":
          _Call({}, {"shared_name": "fuzz_sync"}),
      "ReadMonolithMultiHashTable":
          _Call({}, {"shared_name": _TABLE}),
      "MonolithMultiHashTableLookup":
          _Call({"id": ids, "id_split": split}, {}),
      "MonolithMultiHashTableLookupEntry":
          _Call({"id": ids, "id_split": split}, {}),
      "MonolithMultiHashTableLookupTables":
          _Call({"id": [_i64([1, 2]), _i64([3])]}, {}),
      "MonolithMultiHashTableAssign":
          _Call({"id": ids, "id_split": split, "value": _f32([1, 2, 3, 4]),
                 "update_time": _i64(5)}, {}),
      "MonolithMultiHashTableAssignAdd":
          _Call({"id": ids, "id_split": split, "value": _f32([1, 2, 3, 4]),
                 "update_time": _i64(5)}, {}),
      "MonolithMultiHashTableOptimize":
          _Call({"id": ids, "id_split": split, "value": _f32([1, 2, 3, 4]),
                 "learning_rate": _f32([0.1, 0.1]), "update_time": _i64(5),
                 "global_step": _i64(3)}, {}),
      "MonolithMultiHashTableOptimizeTables":
          _Call({"id": ids, "id_split": split,
                 "value": [_f32([1, 2]), _f32([3, 4])],
                 "learning_rate": _f32([0.1, 0.1]), "update_time": _i64(5),
                 "global_step": _i64(3)}, {}),
      "MonolithMultiHashTableReinitialize":
          _Call({"table_name": _str(b"a"), "id": _i64([1, 2])}, {}),
      "MonolithMultiHashTableEvict":
          _Call({}, {}),
      "MonolithMultiHashTableStats":
          _Call({}, {}),
      "MonolithMultiHashTableFusedLookup":
          _Call({"ids": ids, "fused_slot_size": _i32([2, 1]),
                 "req_time": _i64(5)}, {"num_of_shards": 1}),
      "MonolithMultiHashTableFusedOptimize":
          _Call({"ids": ids, "indices": ids,
                 "fused_slot_size": _i32([2, 1]),
                 "id_grads": _f32([1, 2, 3, 4]),
                 "id_offsets": _i32([0, 2, 3]),
                 "grad_offsets": _i32([0, 2, 4]),
                 "learning_rate_tensors": _f32([0.1, 0.1]),
                 "req_time": _i64(5), "global_step": _i64(3)},
                {"num_of_shards": 1}),
      "MonolithMultiHashTableSave":
          _Call({"basename": _str(os.path.join(workdir, "saved", _TABLE))},
                {"nshards": 1}),
      "MonolithMultiHashTableRestore":
          _Call({"basename": _str(checkpoint)}, {}),
      "MonolithMultiHashTableRestoreResharded":
          _Call({"basenames": _str([checkpoint])},
                {"id_modulus": 2, "id_remainder": 1}),
      "MonolithMultiHashTableFeatureStat":
          _Call({"basename": _str(checkpoint)}, {}),
      "MonolithWriteFileAtomically":
          _Call({"filename": _str(os.path.join(workdir, "record", "g.num_ps")),
                 "contents": _str("2\n")}, {}),
      # distributed_ps_ops.cc: ids 1, 2 of table a (dim 1) and 3 of table b
      # (dim 2) on 2 PS: PS 0 gets 2 (offset 0), PS 1 gets 1 and 3 (offsets
      # 1 and 2); [1, 2, 3, 4] are the 4 floats of the results (as float16,
      # each PS's padded to an even number: [1, 0, 2, 3, 4, 0]).
      "MonolithDistributedPsPartition":
          _Call({"ids": [_i64([1, 2]), _i64([3])]},
                {"num_ps": 2, "dims": [1, 2]}),
      "MonolithDistributedPsGather":
          _Call({"values": _f32([1, 2, 3, 4]), "index": _i32([1, 0, 2]),
                 "id_counts": _i64([2, 1])},
                {"num_tables": 2, "dims": [1, 2]}),
      "MonolithDistributedPsGatherFloat16":
          _Call({"float16_pairs": _f32([1, 0, 2, 3, 4, 0]).astype(
                     np.float16).view(np.int32),
                 "index": _i32([1, 0, 2]), "id_counts": _i64([2, 1]),
                 "float_splits": _i64([0, 1, 4])},
                {"num_tables": 2, "dims": [1, 2]}),
      "MonolithDistributedPsScatterAdd":
          _Call({"values": [_f32([[1], [2]]), _f32([[3, 4]])],
                 "index": _i32([1, 0, 2]), "id_counts": _i64([2, 1]),
                 "float_splits": _i64([0, 1, 4])},
                {"num_ps": 2, "dims": [1, 2]}),
      "MonolithDistributedPsLookupFloat16":
          _Call({"id": ids, "id_split": split}, {}),
      # The same ids packed: per table a 16-byte header (base, count,
      # width 1), then the differences from the base.
      "MonolithDistributedPsPackIds":
          _Call({"ids": ids, "id_split": split}, {}),
      "MonolithDistributedPsUnpackIds":
          _Call({"packed": _u8([1] + [0] * 7 + [2, 0, 0, 0, 1, 0, 0, 0] +
                               [3] + [0] * 7 + [1, 0, 0, 0, 1, 0, 0, 0] +
                               [0, 1, 0])},
                {"num_tables": 2}),
  }


def _resources() -> Dict[str, tf.Tensor]:
  """Valid values of the resource inputs, by input name."""
  hash_filter = ops.monolith_hash_filter(capacity=1000, split_num=5,
                                         shared_name="fuzz_filter")
  sync_client = ops.monolith_dummy_sync_client(shared_name="fuzz_sync")
  mtable = ops.create_monolith_multi_hash_table(
      config=_config(), filter_handle=hash_filter,
      sync_client_handle=sync_client, shared_name=_TABLE)
  return {
      "mtable": mtable,
      "handle": mtable,
      "filter_handle": hash_filter,
      "sync_client_handle": sync_client,
  }


def _write_checkpoint(workdir: str):
  """The checkpoints that the valid restore and FeatureStat calls read."""
  with tf.Graph().as_default():
    resources = _resources()
    mtable = ops.monolith_multi_hash_table_assign(
        resources["mtable"], _i64([1, 3]), _i64([0, 1, 2]), _f32([1, 2, 3]),
        5)
    save = ops.monolith_multi_hash_table_save(
        mtable, os.path.join(workdir, "ckpt", _TABLE), nshards=1)
    save_filter = ops.monolith_hash_filter_save(
        resources["filter_handle"], os.path.join(workdir, "filter", "f"))
    with tf1.Session() as sess:
      sess.run([save, save_filter])


# Inputs of any rank >= 1 with as many floats per id (intercept_gradient's
# embeddings and gradients): only a scalar is a wrong shape.
_ROW_INPUTS = {
    ("MonolithHashFilterInterceptGradient", "embeddings"),
    ("MonolithHashFilterInterceptGradientGradient", "grad"),
}


def _wrong_shapes(valid: np.ndarray,
                  rows: bool = False) -> Dict[str, np.ndarray]:
  """Values of wrong shape for an input whose valid value is |valid|."""
  if rows:
    return {"scalar": valid.reshape([-1])[0]}
  if valid.ndim == 0:
    return {
        "vector [2]": np.stack([valid, valid]),
        "empty [0]": valid.reshape([1])[:0],
        "one-element [1]": valid.reshape([1]),
        "rank-2 [1, 1]": valid.reshape([1, 1]),
    }
  if valid.ndim == 2:
    return {
        "scalar": valid.reshape([-1])[0],
        "vector": valid.reshape([-1]),
        "rank-3": valid.reshape([1] + list(valid.shape)),
    }
  assert valid.ndim == 1 and valid.size, valid
  return {
      "scalar": valid[0],
      "rank-2 [1, n]": valid.reshape([1, -1]),
      "rank-2 [n, 1]": valid.reshape([-1, 1]),
  }


_WRONG_DTYPES = {
    types_pb2.DT_UINT8: tf.int32,
    types_pb2.DT_INT64: tf.int32,
    types_pb2.DT_INT32: tf.int64,
    types_pb2.DT_FLOAT: tf.float64,
    types_pb2.DT_STRING: tf.int64,
}


def _names_input(message: str, name: str) -> bool:
  """Whether the message names the input (a list input's tensor by index)."""
  return re.search(rf"(^|\W){re.escape(name)}(\[\d+\])? must ",
                   message) is not None


# A list input (e.g. one tensor per table) is a list of values; the sweep
# replaces its first tensor.
def _first(value):
  return value[0] if isinstance(value, list) else value


def _with_first(value, first):
  return [first] + value[1:] if isinstance(value, list) else first


def _placeholders(dtype: tf.DType, value, name: str):
  """Placeholders of unknown shape for an input (a list for a list input)."""
  if isinstance(value, list):
    return [tf1.placeholder(dtype, shape=None, name=f"{name}_{i}")
            for i in range(len(value))]
  return tf1.placeholder(dtype, shape=None, name=name)


class _Sweep:
  """Runs the cases of ops, reporting each before and after it runs."""

  def __init__(self, workdir: str, out=None):
    self._workdir = workdir
    self._calls = _valid_calls(workdir)
    self._out = out
    self._checkpoint_written = False
    self.failures = []  # (op, input, variant, what went wrong)

  def _report(self, line: str):
    if self._out is not None:
      print(line, file=self._out, flush=True)

  def _case(self, op: str, name: str, variant: str, fn):
    self._report(f"START\t{op}\t{name}\t{variant}")
    problem = fn()
    if problem:
      self.failures.append((op, name, variant, problem))
      self._report(f"FAIL\t{op}\t{name}\t{variant}\t"
                   f"{' '.join(problem.split())}")
    else:
      self._report(f"OK\t{op}\t{name}\t{variant}")

  def _build(self, op_def, inputs: Dict[str, object]):
    """The op with |inputs| for non-resource inputs, valid resources."""
    resources = _resources()
    if op_def.name.startswith("MonolithHashFilter"):
      # The filter ops' "handle" is a filter.
      resources["handle"] = resources["filter_handle"]
    args = {}
    for arg in op_def.input_arg:
      args[arg.name] = (resources[arg.name] if arg.type == types_pb2.DT_RESOURCE
                        else inputs[arg.name])
    call = self._calls[op_def.name]
    return _WRAPPERS[op_def.name.lower()](**args, **call.attrs)

  def sweep(self, op: str):
    op_def = _OP_DEFS[op]
    if op not in self._calls:
      self._case(op, "-", "valid call", lambda: "no valid call in the test")
      return
    if op in ("MonolithMultiHashTableRestore",
              "MonolithMultiHashTableRestoreResharded",
              "MonolithMultiHashTableFeatureStat",
              "MonolithHashFilterRestore") and (
                  not self._checkpoint_written):
      _write_checkpoint(self._workdir)
      self._checkpoint_written = True
    valid = self._calls[op].inputs
    names = [
        arg.name for arg in op_def.input_arg
        if arg.type != types_pb2.DT_RESOURCE
    ]
    if sorted(names) != sorted(valid):
      self._case(op, "-", "valid call",
                 lambda: f"the valid call has inputs {sorted(valid)}; the op "
                 f"has {sorted(names)}")
      return
    dtypes = {arg.name: arg.type for arg in op_def.input_arg}

    # Run time: placeholders of unknown shape, one session for every case.
    with tf.Graph().as_default():
      placeholders = {
          name: _placeholders(tf.dtypes.as_dtype(dtypes[name]), valid[name],
                              name) for name in names
      }
      output = self._build(op_def, placeholders)
      with tf1.Session() as sess:

        def run(name=None, value=None):
          feed = {}
          for n, v in valid.items():
            if isinstance(v, list):
              feed.update(zip(placeholders[n], v))
            else:
              feed[placeholders[n]] = v
          if name is not None:
            feed[_first(placeholders[name])] = value
          return sess.run(output, feed_dict=feed)

        def valid_call():
          try:
            run()
          except tf.errors.OpError as e:
            return f"the valid call failed: {e.message}"
          return None

        self._case(op, "-", "valid call", valid_call)
        for name in names:
          for variant, value in _wrong_shapes(
              _first(valid[name]), (op, name) in _ROW_INPUTS).items():

            def wrong_shape(name=name, value=value):
              try:
                run(name, value)
              except tf.errors.InvalidArgumentError as e:
                if not _names_input(e.message, name):
                  return f"the error does not name {name}: {e.message}"
                return None
              except tf.errors.OpError as e:
                return f"{type(e).__name__}, not InvalidArgument: {e.message}"
              return "accepted at run time"

            self._case(op, name, "run time, " + variant, wrong_shape)

    # Graph construction: known wrong shapes and wrong dtypes.
    for name in names:
      for variant, value in _wrong_shapes(
          _first(valid[name]), (op, name) in _ROW_INPUTS).items():

        def known_shape(name=name, value=value):
          with tf.Graph().as_default():
            try:
              self._build(op_def, {
                  **valid, name: _with_first(valid[name], tf.constant(value))
              })
            except ValueError as e:
              # The shape function's own error, not one of the wrapper's.
              if _names_input(str(e), name):
                return None
              return f"refused without naming {name}: {e}"
          return ("built: its shape function must check the input's rank "
                  "(CheckInputRanks in op_util.h)")

        self._case(op, name, "graph construction, " + variant, known_shape)

      def wrong_dtype(name=name):
        wrong = _WRONG_DTYPES[dtypes[name]]
        with tf.Graph().as_default():
          try:
            self._build(op_def, {
                **valid,
                name: _with_first(valid[name],
                                  tf1.placeholder(wrong, shape=None))
            })
          except (TypeError, ValueError):
            return None
        return f"built with a {wrong.name} {name}"

      self._case(op, name, "graph construction, wrong dtype", wrong_dtype)


# Exit code of a child whose sweep finished with failures (1 is Python's
# own, for an uncaught exception).
_CHILD_FAILURES = 3


def _child_main(argv: List[str]) -> int:
  """Sweeps the ops named in argv[1:] into workdir argv[0]."""
  sweep = _Sweep(argv[0], out=sys.stdout)
  for op in argv[1:]:
    sweep.sweep(op)
  return _CHILD_FAILURES if sweep.failures else 0


_CHILD = """
import sys
from monolith.native_training.runtime.ops import op_argument_fuzz_test as t
sys.exit(t._child_main(sys.argv[1:]))
"""


class _ChildResult(NamedTuple):
  # Failures by op: (input, variant, problem).
  failures: Dict[str, List[tuple]]
  # Exit codes of the child runs: a run ends early when an op kills it, and
  # the next resumes after that op.
  returncodes: List[int]


def _sweep_in_children(workdir: str) -> _ChildResult:
  """Sweeps every op in child processes, surviving ops that kill them."""
  failures = {op: [] for op in _OP_DEFS}
  returncodes = []
  todo = list(_OP_DEFS)
  env = utils.python_child_env(TF_CPP_MIN_LOG_LEVEL="1")
  while todo:
    child = subprocess.run([sys.executable, "-c", _CHILD, workdir] + todo,
                           env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    returncodes.append(child.returncode)
    started = None
    for line in child.stdout.splitlines():
      fields = line.split("\t")
      if fields[0] == "START":
        started = fields[1:4]
      elif fields[0] in ("OK", "FAIL"):
        started = None
        if fields[0] == "FAIL":
          failures[fields[1]].append(tuple(fields[2:5]))
    if child.returncode in (0, _CHILD_FAILURES):
      break
    # The child died: blame the case it had started, resume after its op.
    stderr = child.stderr.strip().splitlines() or ["no output"]
    checks = [line for line in stderr if "Check failed" in line]
    why = checks[-1] if checks else stderr[-1]
    if started is None:
      pytest.fail(f"the sweep child exited with {child.returncode} outside "
                  f"any case: {why}")
    op, name, variant = started
    failures[op].append((name, variant,
                         f"aborted the process (exit {child.returncode}): "
                         f"{why}"))
    todo = todo[todo.index(op) + 1:]
  return _ChildResult(failures, returncodes)


@pytest.fixture(scope="module")
def child_result(tmp_path_factory):
  return _sweep_in_children(str(tmp_path_factory.mktemp("child")))


def _describe(op: str, failures) -> str:
  return "\n".join(f"{op} input {name} ({variant}): {problem}"
                   for name, variant, problem in failures)


def test_every_op_has_a_valid_call():
  assert sorted(_valid_calls("")) == sorted(_OP_DEFS)


def test_sweep_in_a_child_process_exits_cleanly(child_result):
  """No op aborts the process; every case of every op passes."""
  report = "\n".join(
      _describe(op, failures)
      for op, failures in child_result.failures.items() if failures)
  assert child_result.returncodes == [0], report


@pytest.mark.parametrize("op", sorted(_OP_DEFS))
def test_op_rejects_wrong_shapes_and_dtypes(op, child_result, tmp_path):
  aborted = [f for f in child_result.failures[op]
             if f[2].startswith("aborted the process")]
  if aborted:
    # Running it here would abort pytest itself.
    pytest.fail(_describe(op, aborted))
  sweep = _Sweep(str(tmp_path))
  sweep.sweep(op)
  assert not sweep.failures, _describe(
      op, [failure[1:] for failure in sweep.failures])


def test_mutated_config_strings_create_or_are_refused():
  """The serialized configs the creation ops parse (the tables' config
  input, a hash filter's `config` attr), mutated: each op creates its
  resource or refuses the bytes (InvalidArgument), never crashes."""
  rng = random.Random(11)
  thresholds = embedding_hash_table_pb2.SlotOccurrenceThresholdConfig(
      default_occurrence_threshold=2)
  for slot in range(1, 9):
    thresholds.slot_occurrence_thresholds.add(slot=slot,
                                              occurrence_threshold=slot + 1)
  outcomes = collections.Counter()
  with tf.Graph().as_default(), tf1.Session() as sess:
    config = tf1.placeholder(tf.string, [])
    for i in range(150):
      table = ops.create_monolith_multi_hash_table(
          config=config,
          filter_handle=ops.monolith_dummy_hash_filter(
              shared_name=f"fuzz_config_filter_{i}"),
          sync_client_handle=ops.monolith_dummy_sync_client(
              shared_name=f"fuzz_config_sync_{i}"),
          shared_name=f"fuzz_config_{i}")
      hash_filter = ops.monolith_hash_filter(
          capacity=100, split_num=3,
          config=test_utils.mutate_bytes(rng, thresholds.SerializeToString()),
          shared_name=f"fuzz_config_sliding_{i}")
      for name, op, feed in (
          ("tables", table, {config: test_utils.mutate_bytes(rng, _config())}),
          ("filter", hash_filter, {})):
        try:
          sess.run(op.op, feed)
          outcomes[name, "created"] += 1
        except tf.errors.InvalidArgumentError:
          outcomes[name, "refused"] += 1
  # Both outcomes of each op, or the sweep proved little.
  assert all(outcomes[name, outcome] > 0 for name in ("tables", "filter")
             for outcome in ("created", "refused")), outcomes
