"""Benchmark of embedding tables on parameter-server tasks, over loopback gRPC.

    bazel run -c opt //monolith/native_training:distributed_ps_benchmark

The PS tasks are separate processes (this file re-run with --ps_task), each a
`tf.distribute.Server` on a free 127.0.0.1 port; the worker is a
`tf.distribute.Server` in this process, and every measurement is a graph-mode
`tf.compat.v1.Session(worker.target).run` (feeds and fetches stay in this
process; tensors between worker and PS cross TF's gRPC transport). The PS
processes are killed in a finally block (and die with this one).

Data: 8 slots (tables) of 125,000 feature ids each (Monolith's layout: the
slot in the top 16 bits, a random 48-bit hash below), 1,000,000 in all,
SGD entries (values only) of dim 16 and 64, pre-filled, so every lookup hits.
Each session.run carries 65,536 ids, 8,192 per slot (one fed int64 array per
slot), of which 30 % are duplicates of other ids of the same slot in the
batch (70 % distinct). A measurement is one untimed run, then --batches such
runs (different batches) timed; each figure is the best of --rounds rounds,
and every configuration of a dim is measured in every round, one after the
other. Rates are batch ids (duplicates included) per second, the same count
for every structure.

Measured, for lookup and apply_gradients (SGD), at 1 and 2 PS tasks. Each
lookup's embeddings are consumed on the worker (the run fetches a scalar
made of one element of each slot's embeddings: a tf.group of them would let
grappler turn the ops into no-ops and skip the transfers); the gradients are
worker variables, read at every run (a constant would be folded into the
ops that read it, even on the PS).

* ours: `DistributedMultiTypeHashTable` (the worker splits ids by id mod
  num_ps with its fused kernels, the tables run on the PS tasks), with and
  without de-duplication, with and without float16 transfer. The class
  always de-duplicates on the worker (gradients of repeated ids summed) and
  has no public switch for it, so "without" is its own `_lookup` /
  `_apply_gradients` with unique=False: the same fused kernels and per-PS
  code sending every id, repeats included (the PS's SGD then applies
  repeated ids one after the other). Ids cross packed (6 bytes per feature
  id; --pack_ids=0: as int64). float16 on and off share one set of PS
  tables (a second `DistributedMultiTypeHashTable` whose factory returns the
  first's tables).
* peer "tf_variable": TF's own way. Per PS task one `tf.Variable` holding the
  same rows (row r is the r-th id of the 1M; ids and rows are laid out so row
  r and its id land on the same PS: r mod num_ps == id mod num_ps), read
  with `tf.compat.v1.nn.embedding_lookup(partition_strategy="mod")` (a
  `tf.gather` on the PS for 1 PS) and updated with a sparse `scatter_sub` of
  lr * gradients on the PS (indices split by mod on the worker), over the
  same gRPC. Same batches, fed as one array of 65,536 row indices; no
  de-duplication, float32.
* peer "in_process": `MultiHashTable.lookup` / `apply_gradients` of the same
  batches on the worker itself (no PS, no gRPC).
* diagnostics for where the time goes: "transport_only" (1 PS) sends the
  65,536 ids to the PS and, once they are there, brings back a [65,536, dim]
  tensor read from a PS variable (float32 and float16): the two transfers of
  a lookup with no table work and no worker-side ops; "empty run": a run
  with the same feeds whose only work is a no-op on the PS (the fixed cost of
  a step that involves a PS), and one with a no-op on the worker only; the
  MB/s of a numpy copy and of a loopback TCP socket for the bytes of a
  float32 reply; and a FULL_TRACE timeline of single runs (dim 16, 1 PS),
  cut into phases by the ops' start/end times (one host clock for all
  processes): worker ops before the ids can leave, ids in flight, PS work,
  result in flight (lookup) or the PS's reply (apply), worker ops after, and
  the rest of the session.run (client, master and RunGraph RPC).
* --hold runs one configuration in a loop instead, to profile it from
  outside (perf record -a -g).

Bytes per id, two ways: "wire" is the growth of the loopback interface's
transmit byte counter (/proc/net/dev, "lo" tx bytes: every byte crossing
loopback once, TCP/IP headers included) over the --batches runs of a
configuration, divided by their ids, counted in --byte_rounds untimed rounds
before the timed ones (which also warm up); the minimum is kept, since other
processes' loopback traffic can only add to it. "tcp" is, where `ss`
exists, the growth of the TCP payload counters (bytes_acked +
bytes_received) of the cluster's server-side sockets, i.e. this cluster's
traffic only. "payload" is what the tensors
sent hold (ids, row splits, embeddings or gradients, scalars), from their
sizes.

Bars (ratios in the same run): lookup through 1 PS without de-duplication at
float32 >= 1.0x the tf_variable gather; with de-duplication and float16
transfer >= 1.5x it; float16 transfer sends <= 0.55x the wire bytes of
float32 (same op, dim, PS count and de-duplication).

CPU: the user + system time of every process of the cluster (this one and
the PS tasks, /proc/PID/stat) over all timed runs of a configuration, per
batch id ("cpu_ns_per_id"; the peer's beside it): what a step costs the
machine, whatever the scheduling. Clock ticks of 10 ms, summed over
--rounds rounds, so about 2 % apart at the defaults.

Prints a table, the bars, the time breakdown, then one JSON line per
configuration (op, dim, num_ps, dedup, float16), each with its peers' figures.
"""

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from monolith.native_training import distributed_ps
from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import utils
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1

SLOTS = 8
WORKER_JOB = "worker"
WORKER_DEVICE = f"/job:{WORKER_JOB}/task:0/device:CPU:0"
LEARNING_RATE = 0.01

# Bars (the issue's).
TARGET_LOOKUP_VS_VARIABLE = 1.0
TARGET_DEDUP_FP16_LOOKUP_VS_VARIABLE = 1.5
TARGET_FP16_BYTES_VS_FP32 = 0.55

# The configurations of ours: (dedup, float16).
VARIANTS = [(False, False), (False, True), (True, False), (True, True)]
OPS = ("lookup", "apply_gradients")
PEER_NAMES = {
    "lookup": "tf_variable_gather",
    "apply_gradients": "tf_variable_scatter_sub"
}


# ---------------------------------------------------------------------------
# The PS tasks: this file, re-run.


def run_ps_task(cluster_json: str, index: int) -> None:
  """Serves PS task `index` of the cluster until killed."""
  cluster = tf.train.ClusterSpec(json.loads(cluster_json))
  server = tf.distribute.Server(cluster, job_name=utils.PS_JOB_NAME,
                                task_index=index)
  print(f"ps {index}: serving {server.target}", flush=True)
  server.join()


class Cluster:
  """A worker server in this process and `num_ps` PS processes."""

  def __init__(self, num_ps: int):
    ports = utils.free_ports(num_ps + 1)
    self.ports = ports
    self.spec = {
        WORKER_JOB: [f"127.0.0.1:{ports[0]}"],
        utils.PS_JOB_NAME: [f"127.0.0.1:{p}" for p in ports[1:]],
    }
    # The PS die with the benchmark.
    env = utils.launcher_env(utils.python_child_env(PYTHONUNBUFFERED="1"))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    self.processes = []
    for i in range(num_ps):
      self.processes.append(
          subprocess.Popen([
              sys.executable,
              os.path.abspath(__file__), f"--ps_task={i}",
              f"--cluster={json.dumps(self.spec)}"
          ],
                           stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE,
                           env=env,
                           start_new_session=True))
    for i, p in enumerate(self.processes):
      line = p.stdout.readline().decode()
      if "serving" not in line:
        raise RuntimeError(f"PS task {i} did not start (exit code "
                           f"{p.poll()}): {line!r}")
    self.worker = tf.distribute.Server(tf.train.ClusterSpec(self.spec),
                                       job_name=WORKER_JOB,
                                       task_index=0)

  def session(self) -> tf1.Session:
    # Each session gets its own tables on the PS tasks; closing it frees them.
    return tf1.Session(self.worker.target,
                       config=tf1.ConfigProto(isolate_session_state=True))

  def stop(self) -> None:
    for p in self.processes:
      if p.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
          os.killpg(p.pid, signal.SIGKILL)
    for p in self.processes:
      p.wait()
      p.stdout.close()


# ---------------------------------------------------------------------------
# Bytes on the wire.


def lo_tx_bytes() -> int:
  """Bytes sent on the loopback interface so far (/proc/net/dev)."""
  with open("/proc/net/dev") as f:
    for line in f:
      name, _, rest = line.partition(":")
      if name.strip() == "lo":
        return int(rest.split()[8])
  raise RuntimeError("no lo interface in /proc/net/dev")


class TcpCounter:
  """TCP payload bytes (both directions) of the cluster's connections."""

  def __init__(self, ports: List[int]):
    self.ss = shutil.which("ss")
    self.filter = "( " + " or ".join(f"sport = :{p}" for p in ports) + " )"

  def __call__(self) -> Optional[int]:
    if not self.ss:
      return None
    try:
      out = subprocess.run(
          [self.ss, "-tinH", "state", "established", self.filter],
          check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
      return None
    total = 0
    for key in ("bytes_acked", "bytes_received"):
      total += sum(int(v) for v in re.findall(rf"\b{key}:(\d+)", out))
    return total


# ---------------------------------------------------------------------------
# Data.


def table_names() -> List[str]:
  return [f"slot_{t}" for t in range(SLOTS)]


def table_config(dim: int) -> entry.HashTableConfigInstance:
  config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(config)
  config.entry_config.segments.append(
      entry.CombineAsSegment(dim, entry.ZerosInitializer(),
                             entry.SgdOptimizer(), entry.Fp32Compressor()))
  return entry.HashTableConfigInstance(config, [LEARNING_RATE])


class Data:
  """Ids of every slot, the row of each id, and the batches."""

  def __init__(self, ids_per_slot: int, batch: int, dup_fraction: float,
               batches: int, seed: int = 1):
    if ids_per_slot % 2:
      raise ValueError("--ids_per_slot must be even")
    self.ids_per_slot = ids_per_slot
    self.ids = ids_per_slot * SLOTS
    self.per_slot = batch // SLOTS
    self.batch = self.per_slot * SLOTS
    self.distinct_per_slot = round(self.per_slot * (1 - dup_fraction))
    rng = np.random.default_rng(seed)
    # Feature ids as Monolith makes them: slot t + 1 in the top 16 bits, a
    # random 48-bit hash below. Row r holds an id of r's parity, so with 2
    # PS a row of the variable and its id are on the same PS (id mod 2 ==
    # r mod 2).
    pool = np.empty(self.ids, np.int64)
    for t in range(SLOTS):
      hashes = np.unique(rng.integers(0, 2**47, size=ids_per_slot + 1000,
                                      dtype=np.int64))
      rng.shuffle(hashes)
      rows = np.arange(t * ids_per_slot, (t + 1) * ids_per_slot)
      pool[rows] = (np.int64(t + 1) << 48) | (hashes[:ids_per_slot] * 2 +
                                              rows % 2)
    self.pool = pool  # pool[r]: the id of row r
    # Slot t holds rows [t * ids_per_slot, (t + 1) * ids_per_slot).
    self.batches = []  # per batch, per slot: row numbers
    for _ in range(batches):
      rows = []
      for t in range(SLOTS):
        distinct = rng.choice(ids_per_slot, self.distinct_per_slot,
                              replace=False)
        repeats = rng.choice(distinct, self.per_slot - distinct.size)
        local = np.concatenate([distinct, repeats])
        rng.shuffle(local)
        rows.append(local + t * ids_per_slot)
      self.batches.append(rows)

  def fill_chunks(self):
    """(rows per slot) covering every row once, per_slot rows each."""
    for start in range(0, self.ids_per_slot, self.per_slot):
      end = min(start + self.per_slot, self.ids_per_slot)
      yield [np.arange(start, end) + t * self.ids_per_slot
             for t in range(SLOTS)]


# ---------------------------------------------------------------------------
# Graphs.


def lookup_without_dedup(table: distributed_ps.DistributedMultiTypeHashTable,
                         slot_to_id: Dict[str, tf.Tensor]
                        ) -> Dict[str, tf.Tensor]:
  """DistributedMultiTypeHashTable.lookup sending every id, repeats included."""
  # pylint: disable=protected-access
  with tf.name_scope("nodedup_lu"):
    return table._lookup(slot_to_id, unique=False)


def apply_without_dedup(table: distributed_ps.DistributedMultiTypeHashTable,
                        slot_to_id_and_grad, global_step) -> tf.Operation:
  """DistributedMultiTypeHashTable.apply_gradients without de-duplication.

  Every id is sent with its own gradient (no sum); the PS's SGD applies
  repeated ids one after the other.
  """
  # pylint: disable=protected-access
  with tf.name_scope("nodedup_ag"):
    return table._apply_gradients(slot_to_id_and_grad, global_step, None,
                                  unique=False).as_op()


def consume(tensors: List[tf.Tensor]) -> tf.Tensor:
  """A scalar on the worker that needs every tensor there; fetch it.

  One element of each: the tensors must reach the worker, at the cost of a
  strided slice each. (A tf.group of them is not enough: grappler turns ops
  whose outputs only feed control edges into no-ops, and the transfers with
  them.)
  """
  with tf.device(WORKER_DEVICE):
    return tf.add_n([tf.cast(tf.reshape(t, [-1])[0], tf.float32)
                     for t in tensors])


class PsGraph:
  """Ours, the tf.Variable peer and their ops for one PS count."""

  def __init__(self, dim: int, num_ps: int, data: Data, id_phs, row_ph,
               value_phs, slot_grads, flat_grads, pack_ids: bool):
    self.num_ps = num_ps
    names = table_names()
    configs = {name: table_config(dim) for name in names}
    suffix = f"d{dim}_p{num_ps}"
    fp32 = distributed_ps.DistributedMultiTypeHashTable(
        num_ps, configs,
        lambda i, c: multi_hash_table_ops.MultiHashTable.from_configs(
            c, name_suffix=f"{suffix}_{i}"),
        pack_ids=pack_ids)
    fp16 = distributed_ps.DistributedMultiTypeHashTable(
        num_ps, configs, lambda i, c: fp32.tables[i], transfer_float16=True,
        pack_ids=pack_ids)
    self.init = [t.initializer for t in fp32.tables]
    slot_ids = dict(zip(names, id_phs))
    self.fill = fp32.assign(
        {n: (ph, v) for n, ph, v in zip(names, id_phs, value_phs)}).as_op()
    step = tf.constant(1, tf.int64)
    self.lookup = {}
    self.apply = {}
    self.embeddings = {}
    for dedup, float16 in VARIANTS:
      table = fp16 if float16 else fp32
      if dedup:
        emb = table.lookup(slot_ids)
        apply = table.apply_gradients(
            {n: (ids, g) for n, ids, g in zip(names, id_phs, slot_grads)},
            step).as_op()
      else:
        emb = lookup_without_dedup(table, slot_ids)
        apply = apply_without_dedup(
            table,
            {n: (ids, g) for n, ids, g in zip(names, id_phs, slot_grads)},
            step)
      self.embeddings[(dedup, float16)] = tf.concat(
          [emb[n] for n in names], axis=0)
      self.lookup[(dedup, float16)] = consume(list(emb.values()))
      self.apply[(dedup, float16)] = apply

    # The peer: a variable per PS, partition_strategy="mod".
    self.variables = []
    for i in range(num_ps):
      rows = len(range(i, data.ids, num_ps))
      with distributed_ps.ps_device(i):
        self.variables.append(
            tf.Variable(tf.zeros([rows, dim]), name=f"peer_{suffix}_{i}"))
    self.init += [v.initializer for v in self.variables]
    gathered = tf1.nn.embedding_lookup(self.variables, row_ph,
                                       partition_strategy="mod")
    self.peer_embeddings = tf.identity(gathered)  # on the worker
    self.peer_lookup = consume([self.peer_embeddings])
    # Values to fill the variable: the slots' value placeholders, in row
    # order (the fill feeds rows slot after slot).
    self.peer_fill = self._scatter(row_ph, tf.concat(value_phs, axis=0),
                                   "scatter_update", 1.0)
    self.peer_apply = self._scatter(row_ph, flat_grads, "scatter_sub",
                                    LEARNING_RATE)

    # Diagnostics (PS 0): ids there, then a [batch, dim] tensor back.
    self.transport = {}
    ids_all = tf.concat(id_phs, axis=0)
    for float16 in (False, True):
      dtype = tf.float16 if float16 else tf.float32
      with distributed_ps.ps_device(0):
        v = tf.Variable(tf.zeros([data.batch, dim], dtype),
                        name=f"transport_{suffix}_{int(float16)}")
        with tf.control_dependencies([tf.reduce_max(ids_all)]):
          out = tf.identity(v.read_value())
      self.init.append(v.initializer)
      self.transport[float16] = consume([out])
    with distributed_ps.ps_device(0):
      ps_noop = tf.no_op()
    self.empty_ps_run = tf.group(ps_noop)

  def _scatter(self, rows, values, method, scale) -> tf.Operation:
    if self.num_ps == 1:
      parts_rows, parts_values = [rows], [values]
    else:
      which = tf.cast(tf.math.floormod(rows, self.num_ps), tf.int32)
      parts_rows = tf.dynamic_partition(rows // self.num_ps, which,
                                        self.num_ps)
      parts_values = tf.dynamic_partition(values, which, self.num_ps)
    updates = []
    for i, (v, r, x) in enumerate(zip(self.variables, parts_rows,
                                      parts_values)):
      with distributed_ps.ps_device(i):
        if scale != 1.0:
          x = x * scale
        updates.append(getattr(v, method)(tf.IndexedSlices(x, r)).op)
    return tf.group(*updates)


class DimGraph:
  """Every structure of one dim, in one graph."""

  def __init__(self, dim: int, data: Data, num_ps_list: List[int],
               pack_ids: bool):
    self.dim = dim
    self.graph = tf.Graph()
    rng = np.random.default_rng(dim)
    with self.graph.as_default(), tf.device(WORKER_DEVICE):
      names = table_names()
      self.id_phs = [
          tf1.placeholder(tf.int64, [None], name=f"ids_{t}")
          for t in range(SLOTS)
      ]
      self.row_ph = tf1.placeholder(tf.int64, [None], name="rows")
      self.value_phs = [
          tf1.placeholder(tf.float32, [None, dim], name=f"values_{t}")
          for t in range(SLOTS)
      ]
      # Gradients: worker variables (read at every run, as computed ones
      # would be; a constant would be folded into the ops that read it).
      grads = rng.normal(0, 1, [data.batch, dim]).astype(np.float32)
      grad_vars = [
          tf.Variable(g, name=f"grads_{t}")
          for t, g in enumerate(np.split(grads, SLOTS))
      ] + [tf.Variable(grads, name="grads")]
      slot_grads = [v.read_value() for v in grad_vars[:SLOTS]]
      flat_grads = grad_vars[SLOTS].read_value()
      # The in-process peer: a MultiHashTable on the worker.
      self.local = multi_hash_table_ops.MultiHashTable.from_configs(
          {name: table_config(dim) for name in names},
          name_suffix=f"d{dim}_local")
      slot_ids = dict(zip(names, self.id_phs))
      self.local_fill = self.local.assign(
          {n: (ph, v) for n, ph, v in zip(names, self.id_phs, self.value_phs)
          }).as_op()
      local_emb = self.local.lookup(slot_ids)
      self.local_embeddings = tf.concat([local_emb[n] for n in names], 0)
      self.local_lookup = consume(list(local_emb.values()))
      self.local_apply = self.local.apply_gradients(
          {n: (ids, g) for n, ids, g in zip(names, self.id_phs, slot_grads)},
          tf.constant(1, tf.int64)).as_op()
      self.empty_worker_run = tf.group(tf.no_op())
      self.ps = {
          n: PsGraph(dim, n, data, self.id_phs, self.row_ph, self.value_phs,
                     slot_grads, flat_grads, pack_ids) for n in num_ps_list
      }
      self.init = [self.local.initializer] + [
          v.initializer for v in grad_vars
      ] + [op for g in self.ps.values() for op in g.init]

  def feed(self, data: Data, rows_per_slot) -> Dict:
    fd = {
        ph: data.pool[rows] for ph, rows in zip(self.id_phs, rows_per_slot)
    }
    fd[self.row_ph] = np.concatenate(rows_per_slot)
    return fd

  def fill_feed(self, data: Data, rows_per_slot, rng) -> Dict:
    fd = self.feed(data, rows_per_slot)
    for ph, rows in zip(self.value_phs, rows_per_slot):
      fd[ph] = rng.normal(0, 0.1, [rows.size, self.dim]).astype(np.float32)
    return fd


# ---------------------------------------------------------------------------
# Measurement.


def cpu_seconds(pids: List[int]) -> Optional[float]:
  """User + system CPU seconds the processes have used (/proc/PID/stat).

  In clock ticks (10 ms), so a figure is only meaningful summed over many
  runs; None where /proc is not there.
  """
  ticks = 0
  try:
    for pid in pids:
      with open(f"/proc/{pid}/stat") as f:
        # Fields after the command's closing parenthesis; utime and stime
        # are fields 14 and 15 of the whole line.
        fields = f.read().rpartition(")")[2].split()
      ticks += int(fields[11]) + int(fields[12])
  except (OSError, IndexError, ValueError):
    return None
  return ticks / os.sysconf("SC_CLK_TCK")


class Meter:
  """Best time and least bytes of each measurement, over rounds; CPU time
  of every process of the cluster summed over all timed rounds."""

  def __init__(self, sess, feeds, ids_per_measurement, tcp: TcpCounter,
               pids: List[int]):
    self.sess = sess
    self.feeds = feeds
    self.ids = ids_per_measurement
    self.tcp = tcp
    self.pids = pids
    self.seconds = collections.defaultdict(lambda: float("inf"))
    self.wire = collections.defaultdict(lambda: float("inf"))
    self.tcp_bytes = collections.defaultdict(lambda: float("inf"))
    self.cpu = collections.defaultdict(float)
    self.cpu_ids = collections.defaultdict(int)
    # Every round's time, in round order.
    self.round_seconds = collections.defaultdict(list)

  def time(self, key, op):
    """Times the runs of all feeds, after one untimed run of the op."""
    self.sess.run(op, feed_dict=self.feeds[-1])
    cpu_before = cpu_seconds(self.pids)
    start = time.perf_counter()
    for fd in self.feeds:
      self.sess.run(op, feed_dict=fd)
    seconds = time.perf_counter() - start
    self.seconds[key] = min(self.seconds[key], seconds)
    self.round_seconds[key].append(seconds)
    cpu_after = cpu_seconds(self.pids)
    if cpu_before is not None and cpu_after is not None:
      self.cpu[key] += cpu_after - cpu_before
      self.cpu_ids[key] += self.ids

  def median_round_ratio(self, key, peer_key) -> float:
    """The median over rounds of the peer's time over ours in that round.

    A slow spell of a shared host moves best-of-rounds rates apart; within a
    round, both ran within seconds of each other.
    """
    ratios = [peer / ours for ours, peer in zip(self.round_seconds[key],
                                                 self.round_seconds[peer_key])]
    return float(np.median(ratios))

  def cpu_ns_per_id(self, key) -> Optional[float]:
    """CPU nanoseconds (all processes) per batch id, over all timed runs."""
    if not self.cpu_ids[key]:
      return None
    return self.cpu[key] / self.cpu_ids[key] * 1e9

  def count_bytes(self, key, op):
    """Bytes sent while running all feeds (untimed: `ss` runs around it)."""
    tcp_before = self.tcp()
    lo_before = lo_tx_bytes()
    for fd in self.feeds:
      self.sess.run(op, feed_dict=fd)
    lo_after = lo_tx_bytes()
    tcp_after = self.tcp()
    self.wire[key] = min(self.wire[key], lo_after - lo_before)
    if tcp_before is not None and tcp_after is not None:
      self.tcp_bytes[key] = min(self.tcp_bytes[key], tcp_after - tcp_before)

  def rate(self, key) -> float:
    return self.ids / self.seconds[key]

  def wire_per_id(self, key) -> float:
    return self.wire[key] / self.ids

  def tcp_per_id(self, key) -> Optional[float]:
    value = self.tcp_bytes.get(key)
    return None if value is None or value == float("inf") else (value /
                                                                 self.ids)


def ceilings(nbytes: int, rounds: int) -> Dict[str, float]:
  """MB/s of one user-space copy and of loopback TCP, for nbytes messages.

  The copy: numpy's copyto between two buffers. TCP: a socket pair on
  127.0.0.1 in this process, a thread receiving each message (recv_into a
  buffer) and answering with one byte, as the worker receives a tensor;
  best of `rounds` rounds of 10 messages.
  """
  src = np.ones(nbytes, np.uint8)
  dst = np.empty_like(src)
  best_copy = float("inf")
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(10):
      np.copyto(dst, src)
    best_copy = min(best_copy, (time.perf_counter() - start) / 10)
  listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  listener.bind(("127.0.0.1", 0))
  listener.listen(1)
  sender = socket.create_connection(listener.getsockname())
  receiver, _ = listener.accept()
  listener.close()
  messages = rounds * 10

  def receive():
    view = memoryview(bytearray(nbytes))
    # Ends when the sender closes (it stopped early, maybe with a reply
    # unread: a reset).
    with contextlib.suppress(OSError):
      for _ in range(messages):
        got = 0
        while got < nbytes:
          n = receiver.recv_into(view[got:])
          if n == 0:
            return
          got += n
        receiver.sendall(b"k")

  thread = threading.Thread(target=receive, daemon=True)
  thread.start()
  payload = memoryview(src)
  best_tcp = float("inf")
  try:
    for _ in range(rounds):
      start = time.perf_counter()
      for _ in range(10):
        sender.sendall(payload)
        sender.recv(1)
      best_tcp = min(best_tcp, (time.perf_counter() - start) / 10)
  finally:
    # Closed first: a receiver waiting for messages that will not come (an
    # error or Ctrl-C in the loop) then ends, and the join returns.
    sender.close()
    thread.join()
    receiver.close()
  return {
      "mb": nbytes / 2**20,
      "memcpy_mb_per_s": nbytes / best_copy / 1e6,
      "loopback_tcp_mb_per_s": nbytes / best_tcp / 1e6,
  }


def id_bytes_per_batch(num_ps: int, dedup: bool, pack_ids: bool,
                       data: Data) -> float:
  """Bytes of the ids (and their row splits) sent to the PS tasks a batch."""
  if not pack_ids:
    sent = data.distinct_per_slot * SLOTS if dedup else data.batch
    return sent * 8 + num_ps * (SLOTS + 1) * 8
  total = 0
  for rows in data.batches:
    total += num_ps * SLOTS * 16  # the headers
    for slot_rows in rows:
      ids = data.pool[slot_rows]
      if dedup:
        ids = np.unique(ids)
      for p in range(num_ps):
        mine = ids[ids % num_ps == p]
        if mine.size:
          span = int(mine.max()) - int(mine.min())
          total += mine.size * max(1, (span.bit_length() + 7) // 8)
  return total / len(data.batches)


def payload_per_id(op: str, dim: int, num_ps: int, dedup: bool,
                   float16: bool, pack_ids: bool, data: Data) -> float:
  """Bytes of the tensors sent per batch id (both directions)."""
  sent = data.distinct_per_slot * SLOTS if dedup else data.batch
  value_bytes = 2 if float16 else 4
  total = sent * dim * value_bytes + id_bytes_per_batch(
      num_ps, dedup, pack_ids, data)
  if op == "apply_gradients":
    # learning rates, global step, req_time
    total += num_ps * (SLOTS * 4 + 8 + 8)
  return total / data.batch


def peer_payload_per_id(dim: int) -> float:
  return 8 + dim * 4


def run_dim(dim: int, args, cluster: Cluster, data: Data,
            num_ps_list: List[int], tcp: TcpCounter) -> Dict:
  g = DimGraph(dim, data, num_ps_list, args.pack_ids)
  feeds = [g.feed(data, b) for b in data.batches]
  rng = np.random.default_rng(100 + dim)
  result = {"dim": dim}
  with g.graph.as_default(), cluster.session() as sess:
    sess.run(g.init)
    start = time.perf_counter()
    fill_ops = [g.local_fill] + [p.fill for p in g.ps.values()
                                ] + [p.peer_fill for p in g.ps.values()]
    for chunk in data.fill_chunks():
      sess.run(fill_ops, feed_dict=g.fill_feed(data, chunk, rng))
    result["fill_s"] = time.perf_counter() - start
    # Every structure returns the same rows for the same batch.
    check = sess.run(
        [g.local_embeddings] +
        [p.peer_embeddings for p in g.ps.values()] +
        [p.embeddings[v] for p in g.ps.values() for v in VARIANTS],
        feed_dict=feeds[0])
    for got in check[1:]:
      np.testing.assert_allclose(got, check[0], rtol=2e-3, atol=1e-3)
    meter = Meter(sess, feeds, data.batch * len(feeds), tcp,
                  [os.getpid()] + [q.pid for q in cluster.processes])
    measurements = [(("lookup", "in_process"), g.local_lookup),
                    (("apply_gradients", "in_process"), g.local_apply)]
    for n, p in g.ps.items():
      measurements.append((("lookup", "tf_variable", n), p.peer_lookup))
      for v in VARIANTS:
        measurements.append((("lookup", n) + v, p.lookup[v]))
      measurements.append((("apply_gradients", "tf_variable", n),
                           p.peer_apply))
      for v in VARIANTS:
        measurements.append((("apply_gradients", n) + v, p.apply[v]))
    first = g.ps[min(g.ps)]
    for float16 in (False, True):
      measurements.append((("transport_only", float16),
                           first.transport[float16]))
    measurements.append((("empty_ps_run",), first.empty_ps_run))
    measurements.append((("empty_worker_run",), g.empty_worker_run))
    for _ in range(args.byte_rounds):  # also the warm-up
      for key, op in measurements:
        meter.count_bytes(key, op)
    for r in range(args.rounds):
      for key, op in measurements:
        meter.time(key, op)
      print(f"# dim {dim}: round {r + 1}/{args.rounds}", file=sys.stderr,
            flush=True)
    result["meter"] = meter
    # The bytes of a float32 lookup reply at this dim.
    result["ceilings"] = ceilings(data.batch * dim * 4, args.rounds)
    if args.profile_dim == dim and args.profile_runs > 0:
      p = g.ps[min(g.ps)]
      result["profile"] = {
          "lookup dedup+fp16": profile(sess, p.lookup[(True, True)], feeds,
                                       args.profile_runs),
          "lookup no dedup, fp32": profile(sess, p.lookup[(False, False)],
                                           feeds, args.profile_runs),
          "tf_variable gather": profile(sess, p.peer_lookup, feeds,
                                        args.profile_runs),
          "transport_only fp32": profile(sess, p.transport[False], feeds,
                                         args.profile_runs),
          "apply dedup+fp16": profile(sess, p.apply[(True, True)], feeds,
                                      args.profile_runs),
          "tf_variable scatter_sub": profile(sess, p.peer_apply, feeds,
                                             args.profile_runs),
          "in_process lookup": profile(sess, g.local_lookup, feeds,
                                       args.profile_runs),
      }
  return result


# ---------------------------------------------------------------------------
# Where the time goes: FULL_TRACE step stats, on one host clock.

_OP_TYPE = re.compile(r"= ([A-Za-z0-9_]+)\(")
_TRANSFER_SIZE = re.compile(r"^\[([0-9.]+)(B|KB|MB|GB)\]")
_UNITS = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}


class Event(NamedTuple):
  where: str  # "worker" or "ps"
  kind: str  # the op type, or "RecvTensor" for a transfer
  start: int  # us, host clock
  end: int
  bytes: int  # transfers only


def _events(metadata) -> List[Event]:
  """The ops and transfers of a traced run."""
  events = []
  for dev in metadata.step_stats.dev_stats:
    where = ("ps" if f"/job:{utils.PS_JOB_NAME}/" in dev.device else
             "worker")
    for node in dev.node_stats:
      label = node.timeline_label
      size = 0
      if node.node_name == "RecvTensor":  # the receiving end of a transfer
        kind = "RecvTensor"
        m = _TRANSFER_SIZE.search(label)
        if m:
          size = int(float(m.group(1)) * _UNITS[m.group(2)])
      else:
        m = _OP_TYPE.search(label)
        kind = m.group(1) if m else node.node_name
      start = node.all_start_micros
      events.append(
          Event(where, kind, start, start + max(node.all_end_rel_micros, 0),
                size))
  return events


def _is_op(e: Event) -> bool:
  return e.kind != "RecvTensor" and not e.kind.startswith("_")


def _phases(events: List[Event], wall_us: float) -> Dict[str, float]:
  """Cuts one run into consecutive phases by its events' times.

  Ids (and gradients) are on the PS when the last transfer to the PS ends;
  the worker ops before that are what they wait for. The PS's work ends with
  its last op; its reply (embeddings, or the completion of an update) is on
  the worker when the last transfer to the worker ends; then the worker's
  remaining ops. Ops of a phase may overlap (2 inter-op threads). The
  master's RunGraph round trips and the client's share are in "session.run
  outside the traced ops". A run whose trace lacks a transfer event shows 0
  for that phase.
  """
  t0 = min(e.start for e in events)
  end = max(e.end for e in events)
  phases = collections.OrderedDict()
  to_ps = [e for e in events if e.where == "ps" and e.kind == "RecvTensor"]
  ps_ops = [e for e in events if e.where == "ps" and _is_op(e)]
  worker_ops = [e for e in events if e.where == "worker" and _is_op(e)]
  notes = []
  if not to_ps and not ps_ops:
    phases["worker ops"] = end - t0
  else:
    ids_on_ps = max([e.end for e in to_ps] + [t0])
    before = [e.end for e in worker_ops if e.end <= ids_on_ps]
    prep_end = max(before + [t0])
    ps_done = max([e.end for e in ps_ops] + [ids_on_ps])
    to_worker = [
        e for e in events if e.where == "worker" and e.kind == "RecvTensor"
    ]
    back = max([e.end for e in to_worker if e.end >= ps_done] + [ps_done])
    phases["worker ops before the ids leave"] = prep_end - t0
    phases["ids in flight (to the PS)"] = ids_on_ps - prep_end
    phases["PS ops"] = ps_done - ids_on_ps
    phases["reply in flight (to the worker)"] = back - ps_done
    phases["worker ops after"] = end - back
    for e in sorted(to_ps + to_worker, key=lambda e: -e.bytes)[:2]:
      if e.bytes >= 2**16:
        notes.append(
            f"transfer to the {e.where}: {e.bytes / 2**20:.1f} MiB in "
            f"{e.end - e.start} us ({e.bytes / max(e.end - e.start, 1):.0f}"
            " MB/s)")
  phases["session.run outside the traced ops"] = wall_us - (end - t0)
  totals = collections.defaultdict(float)
  for e in events:
    if _is_op(e):
      totals[(e.where, e.kind)] += e.end - e.start
  top = sorted(totals.items(), key=lambda kv: -kv[1])[:6]
  notes.append("busiest op types (us, summed): " +
               ", ".join(f"{w}:{k} {v:.0f}" for (w, k), v in top))
  for note in notes:
    phases["(" + note + ")"] = float("nan")
  return phases


def profile(sess, op, feeds, runs: int) -> Dict:
  """Phases (us) of the traced run with the median wall time."""
  options = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE)
  traced = []
  for i in range(runs):
    metadata = tf1.RunMetadata()
    start = time.perf_counter()
    sess.run(op, feed_dict=feeds[i % len(feeds)], options=options,
             run_metadata=metadata)
    wall_us = (time.perf_counter() - start) * 1e6
    traced.append((wall_us, _events(metadata)))
  traced.sort(key=lambda t: t[0])
  wall_us, events = traced[len(traced) // 2]
  return {"wall_us": wall_us, "phases": _phases(events, wall_us)}


# ---------------------------------------------------------------------------
# Report.


def m(rate: float) -> str:
  return f"{rate / 1e6:.2f} M"


def verdict(ok: bool) -> str:
  return "holds" if ok else "MISSED"


def _or_blank(value: Optional[float]) -> str:
  return "" if value is None else f"{value:.0f}"


def _rounded(value: Optional[float], digits: int) -> Optional[float]:
  return None if value is None else round(value, digits)


def lines_of(results: List[Dict], data: Data, args) -> List[Dict]:
  """One dict per configuration (op, dim, num_ps, dedup, float16)."""
  out = []
  for r in results:
    meter = r["meter"]
    dim = r["dim"]
    for op in OPS:
      in_process = meter.rate((op, "in_process"))
      for num_ps in args.num_ps:
        peer_key = (op, "tf_variable", num_ps)
        peer = meter.rate(peer_key)
        for dedup, float16 in VARIANTS:
          key = (op, num_ps, dedup, float16)
          rate = meter.rate(key)
          fp32_key = (op, num_ps, dedup, False)
          line = {
              "bench": "distributed_ps",
              "op": op,
              "dim": dim,
              "num_ps": num_ps,
              "dedup": dedup,
              "float16": float16,
              "pack_ids": bool(args.pack_ids),
              "slots": SLOTS,
              "ids": data.ids,
              "batch": data.batch,
              "duplicate_fraction": round(
                  1 - data.distinct_per_slot / data.per_slot, 3),
              "rounds": args.rounds,
              "runs_per_round": len(data.batches),
              "ids_per_s": round(rate),
              "wire_bytes_per_id": round(meter.wire_per_id(key), 2),
              "tcp_bytes_per_id": (None if meter.tcp_per_id(key) is None
                                   else round(meter.tcp_per_id(key), 2)),
              "payload_bytes_per_id": round(
                  payload_per_id(op, dim, num_ps, dedup, float16,
                                 args.pack_ids, data), 2),
              "wire_bytes_ratio_vs_float32": round(
                  meter.wire[key] / meter.wire[fp32_key], 3),
              "peer": PEER_NAMES[op],
              "peer_ids_per_s": round(peer),
              "peer_wire_bytes_per_id": round(meter.wire_per_id(peer_key),
                                              2),
              "peer_tcp_bytes_per_id": _rounded(meter.tcp_per_id(peer_key),
                                                2),
              "peer_payload_bytes_per_id": peer_payload_per_id(dim),
              "ratio": round(rate / peer, 3),
              "median_round_ratio": round(
                  meter.median_round_ratio(key, peer_key), 3),
              "cpu_ns_per_id": _rounded(meter.cpu_ns_per_id(key), 1),
              "peer_cpu_ns_per_id": _rounded(meter.cpu_ns_per_id(peer_key),
                                             1),
              "in_process_ids_per_s": round(in_process),
              "ratio_vs_in_process": round(rate / in_process, 3),
          }
          if op == "lookup" and num_ps == min(args.num_ps):
            line["transport_only_ids_per_s"] = round(
                meter.rate(("transport_only", float16)))
            line["empty_ps_run_us"] = round(
                meter.seconds[("empty_ps_run",)] / len(data.batches) * 1e6)
            line["empty_worker_run_us"] = round(
                meter.seconds[("empty_worker_run",)] / len(data.batches) *
                1e6)
            line["reply_mib"] = round(r["ceilings"]["mb"], 2)
            line["memcpy_mb_per_s"] = round(r["ceilings"]["memcpy_mb_per_s"])
            line["loopback_tcp_mb_per_s"] = round(
                r["ceilings"]["loopback_tcp_mb_per_s"])
            line["fill_s"] = round(r["fill_s"], 1)
          out.append(line)
  return out


ROW = "%-15s %4s %3s %5s %5s %9s %9s %9s %8s %8s %8s %7s %7s %7s %9s %9s"


def report(lines: List[Dict], results: List[Dict], data: Data, args):
  print()
  print(f"Embedding tables on PS tasks over loopback gRPC: {SLOTS} slots, "
        f"{data.ids:,} ids, {data.batch:,} ids per session.run "
        f"({data.distinct_per_slot * SLOTS:,} distinct), best of "
        f"{args.rounds} rounds of {len(data.batches)} runs; ids/s; "
        "bytes per batch id")
  print(ROW % ("op", "dim", "ps", "dedup", "fp16", "ours/s", "peer/s",
               "in-proc/s", "vs peer", "vs local", "wire B", "tcp B",
               "payload", "16/32", "cpu ns/id", "peer cpu"))
  for l in lines:
    tcp = l["tcp_bytes_per_id"]
    print(ROW % (l["op"], l["dim"], l["num_ps"], "yes" if l["dedup"] else
                 "no", "yes" if l["float16"] else "no", m(l["ids_per_s"]),
                 m(l["peer_ids_per_s"]), m(l["in_process_ids_per_s"]),
                 f"{l['ratio']:.2f}", f"{l['ratio_vs_in_process']:.2f}",
                 f"{l['wire_bytes_per_id']:.1f}",
                 "" if tcp is None else f"{tcp:.1f}",
                 f"{l['payload_bytes_per_id']:.1f}",
                 f"{l['wire_bytes_ratio_vs_float32']:.3f}",
                 _or_blank(l["cpu_ns_per_id"]),
                 _or_blank(l["peer_cpu_ns_per_id"])))
  for l in lines:
    if l["wire_bytes_per_id"] < 0.9 * l["payload_bytes_per_id"]:
      print(f"WARNING: {l['op']} dim {l['dim']} {l['num_ps']} PS: "
            f"{l['wire_bytes_per_id']:.1f} wire bytes per id, below the "
            f"{l['payload_bytes_per_id']:.1f} its tensors hold: were "
            "transfers pruned?")
  print("peer: tf.Variable on the same PS, embedding_lookup (tf.gather) / "
        "scatter_sub; its wire bytes per id: " + ", ".join(
            sorted({
                f"{l['op']} dim {l['dim']} {l['num_ps']} PS "
                f"{l['peer_wire_bytes_per_id']:.1f}"
                for l in lines
            })))
  for r in results:
    meter = r["meter"]
    empty_us = {
        k: meter.seconds[(k,)] / len(data.batches) * 1e6
        for k in ("empty_ps_run", "empty_worker_run")
    }
    print(f"dim {r['dim']}: transport only (ids to PS 0, [batch, dim] back):"
          f" float32 {m(meter.rate(('transport_only', False)))}/s, float16 "
          f"{m(meter.rate(('transport_only', True)))}/s; empty run: "
          f"{empty_us['empty_ps_run']:.0f} us with a PS no-op, "
          f"{empty_us['empty_worker_run']:.0f} us without; fill of the "
          f"{data.ids:,} ids into every structure {r['fill_s']:.1f} s")
    c = r["ceilings"]
    print(f"dim {r['dim']}: the {c['mb']:.0f} MiB of a float32 reply copied "
          f"by numpy at {c['memcpy_mb_per_s']:,.0f} MB/s; sent over a "
          "loopback TCP socket (1-byte answer) at "
          f"{c['loopback_tcp_mb_per_s']:,.0f} MB/s")

  print()
  print("Bars:")
  by_key = {(l["op"], l["dim"], l["num_ps"], l["dedup"], l["float16"]): l
            for l in lines}
  ps1 = min(args.num_ps)
  for dim in args.dims:
    plain = by_key[("lookup", dim, ps1, False, False)]
    best = by_key[("lookup", dim, ps1, True, True)]
    print(f"  dim {dim}, {ps1} PS: lookup (no dedup, fp32) / tf.Variable "
          f"gather: {plain['ratio']:.2f}x, median of rounds "
          f"{plain['median_round_ratio']:.2f}x (>= "
          f"{TARGET_LOOKUP_VS_VARIABLE}: "
          f"{verdict(plain['ratio'] >= TARGET_LOOKUP_VS_VARIABLE)})")
    print(f"  dim {dim}, {ps1} PS: lookup (dedup, fp16) / tf.Variable "
          f"gather: {best['ratio']:.2f}x, median of rounds "
          f"{best['median_round_ratio']:.2f}x (>= "
          f"{TARGET_DEDUP_FP16_LOOKUP_VS_VARIABLE}: "
          f"{verdict(best['ratio'] >= TARGET_DEDUP_FP16_LOOKUP_VS_VARIABLE)})")
  for l in lines:
    if l["float16"]:
      ratio = l["wire_bytes_ratio_vs_float32"]
      payload32 = by_key[(l["op"], l["dim"], l["num_ps"], l["dedup"],
                          False)]["payload_bytes_per_id"]
      print(f"  {l['op']} dim {l['dim']} {l['num_ps']} PS dedup "
            f"{'on' if l['dedup'] else 'off'}: fp16 / fp32 wire bytes "
            f"{ratio:.3f} (payload {l['payload_bytes_per_id'] / payload32:.3f})"
            f" (<= {TARGET_FP16_BYTES_VS_FP32}: "
            f"{verdict(ratio <= TARGET_FP16_BYTES_VS_FP32)})")

  for r in results:
    if "profile" not in r:
      continue
    print()
    print(f"Where the time goes (dim {r['dim']}, {ps1} PS, one batch; the "
          f"FULL_TRACE run of median wall time of {args.profile_runs}; us; "
          "tracing adds its own cost):")
    for name, p in r["profile"].items():
      print(f"  {name}: session.run {p['wall_us']:.0f} us")
      for phase, us in p["phases"].items():
        if us != us:  # NaN: a note
          print(f"      {phase}")
        else:
          print(f"      {phase:34s} {us:7.0f}")
  print()
  for l in lines:
    print(json.dumps(l))


def hold(args, cluster: Cluster, data: Data) -> None:
  """Runs the --hold configuration in a loop (see --hold)."""
  dim, num_ps = args.dims[0], args.num_ps[0]
  g = DimGraph(dim, data, [num_ps], args.pack_ids)
  p = g.ps[num_ps]
  words = args.hold.split(",")
  variant = ("dedup" in words, "fp16" in words)
  ops = {
      "tf_variable_gather": p.peer_lookup,
      "tf_variable_scatter_sub": p.peer_apply,
      "in_process_lookup": g.local_lookup,
      "transport_only": p.transport["fp16" in words],
      "lookup": p.lookup[variant],
      "apply_gradients": p.apply[variant],
  }
  if words[0] not in ops:
    raise SystemExit(f"--hold: unknown configuration {args.hold!r}")
  op = ops[words[0]]
  feeds = [g.feed(data, b) for b in data.batches]
  rng = np.random.default_rng(0)
  with g.graph.as_default(), cluster.session() as sess:
    sess.run(g.init)
    for chunk in data.fill_chunks():
      sess.run([g.local_fill, p.fill, p.peer_fill],
               feed_dict=g.fill_feed(data, chunk, rng))
    for fd in feeds:
      sess.run(op, feed_dict=fd)
    print(f"holding {args.hold} (dim {dim}, {num_ps} PS) for "
          f"{args.hold_seconds:.0f} s: worker pid {os.getpid()}, PS pids "
          f"{[q.pid for q in cluster.processes]}", flush=True)
    start = time.perf_counter()
    runs = 0
    while time.perf_counter() - start < args.hold_seconds:
      sess.run(op, feed_dict=feeds[runs % len(feeds)])
      runs += 1
    seconds = time.perf_counter() - start
  print(f"{runs} runs, {m(runs * data.batch / seconds)} ids/s", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dims", default="16,64")
  parser.add_argument("--num_ps", default="1,2",
                      help="PS counts to measure, 1 and/or 2 (the cluster "
                      "has the most)")
  parser.add_argument("--ids_per_slot", type=int, default=125_000)
  parser.add_argument("--batch", type=int, default=65_536)
  parser.add_argument("--duplicate_fraction", type=float, default=0.3)
  parser.add_argument("--batches", type=int, default=8,
                      help="session.runs per measurement")
  parser.add_argument("--rounds", type=int, default=9)
  parser.add_argument("--byte_rounds", type=int, default=2,
                      help="untimed rounds that count the bytes sent")
  parser.add_argument("--profile_dim", type=int, default=16,
                      help="the dim whose runs are traced (0: none)")
  parser.add_argument("--profile_runs", type=int, default=7)
  parser.add_argument(
      "--hold",
      help="instead of measuring: run one configuration (the first of "
      "--dims and --num_ps) in a loop for --hold_seconds and print the "
      "processes' ids, to profile it from outside (perf record -a -g): "
      "tf_variable_gather, tf_variable_scatter_sub, in_process_lookup, "
      "transport_only, or OP[,dedup][,fp16] with OP lookup or "
      "apply_gradients")
  parser.add_argument("--hold_seconds", type=float, default=10)
  parser.add_argument("--pack_ids", type=int, default=1,
                      help="1: ours sends each PS its ids packed (the "
                      "default of DistributedMultiTypeHashTable); 0: as "
                      "int64")
  parser.add_argument("--ps_task", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--cluster", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.ps_task is not None:
    utils.die_with_launcher()
    run_ps_task(args.cluster, args.ps_task)
    return
  args.dims = [int(d) for d in args.dims.split(",")]
  args.num_ps = sorted(int(n) for n in args.num_ps.split(","))
  if not set(args.num_ps) <= {1, 2}:
    # Rows are laid out by id parity: with 1 or 2 PS a row of the peer's
    # variable and its id live on the same PS, as the comparison needs.
    parser.error("--num_ps: PS counts must be 1 or 2")
  tf1.disable_eager_execution()
  start = time.perf_counter()
  data = Data(args.ids_per_slot, args.batch, args.duplicate_fraction,
              args.batches)
  if args.hold:
    cluster = Cluster(args.num_ps[0])
    try:
      hold(args, cluster, data)
    finally:
      cluster.stop()
    return
  cluster = Cluster(max(args.num_ps))
  try:
    tcp = TcpCounter(cluster.ports)
    results = []
    for dim in args.dims:
      results.append(run_dim(dim, args, cluster, data, args.num_ps, tcp))
      print(f"# dim {dim} done at {time.perf_counter() - start:.0f} s",
            file=sys.stderr, flush=True)
  finally:
    cluster.stop()
  report(lines_of(results, data, args), results, data, args)
  print(f"# total {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
  main()
