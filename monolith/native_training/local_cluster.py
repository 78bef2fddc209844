"""A runnable parameter-server cluster that trains a small CTR model.

    bazel run //monolith/native_training:local_cluster -- \
        --num_ps=2 --num_workers=2 --steps=2000 --model_dir=/tmp/models/ctr

Without --task_type this is the launcher: it picks free loopback ports,
starts one process per task (itself again, with --task_type, --task_index,
--ps_hosts and --worker_hosts), prints their output prefixed by task, waits
for the workers to finish, then stops the PS tasks. Ctrl-C, SIGTERM or
SIGHUP (a lost terminal; not under nohup) stops the workers first, the
chief last (it saves a last checkpoint), then every task (each runs in its
own process group, killed in a finally block; on Linux a task also dies
with the launcher). With --task_type (and the hosts) it runs that one task,
as on a real multi-machine cluster.

The model: `--num_slots` sparse slots of `--ids_per_slot` ids each,
embedded (dim `--dim`, adagrad) on the PS tasks by
`distributed_ps_factory.create_native_multi_hash_table`, sum-pooled, then a
dense tower (variables placed on the PS job by `replica_device_setter`),
sigmoid cross-entropy. Workers train asynchronously until the global step
reaches `--steps`. Examples are random (numpy, seeded per worker): ids are
skewed towards small values, and the label is drawn from the sigmoid of a
fixed hidden weight per id, so the loss goes down. The chief (worker 0)
writes a checkpoint every `--save_steps` steps, with the tables' shards
beside it (MultiHashTable saver listener), and resumes from the latest
checkpoint of `--model_dir` (tables saved by any number of PS tasks).

A PS task that dies is restarted by the launcher (`--max_ps_restarts`) on
its port. The workers' session calls fail; each worker waits for the task
(`--ps_recovery_secs`) and creates a new session. The chief's restores only
the restarted task's variables and tables from the latest checkpoint
(`save_utils.PsMonitor`, `PartialRecoverySaver`), the other tasks keep
what they learnt since, and the other workers wait until it is done.

The launcher picks free ports and its tasks listen on them seconds later:
a task whose port another process took meanwhile exits with code 75, and
the launcher starts every task again on new ports (up to twice: 3
clusters in all; the chief resumes from the latest checkpoint).
"""

import collections
import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.python.ops import resources
from tensorflow.python.training import monitored_session

from monolith.native_training import basic_restore_hook
from monolith.native_training import distributed_ps_factory
from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training import save_utils
from monolith.native_training import utils
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1

FLAGS = flags.FLAGS

# The cluster.
flags.DEFINE_integer("num_ps", 2, "Launcher: the number of PS tasks (>= 1).")
flags.DEFINE_integer("num_workers", 2,
                     "Launcher: the number of worker tasks (>= 1).")
flags.DEFINE_string("ps_hosts", "",
                    "Comma-separated host:port of the PS tasks; with "
                    "--task_type, the cluster of the task to run.")
flags.DEFINE_string("worker_hosts", "",
                    "Comma-separated host:port of the worker tasks.")
flags.DEFINE_enum("task_type", "", ["", "ps", "worker"],
                  "Run this one task (with --ps_hosts, --worker_hosts); "
                  "empty: launch a whole cluster on this host.")
flags.DEFINE_integer("task_index", 0, "The index of the task to run.")
flags.DEFINE_integer("operation_timeout_ms", 60000,
                     "Workers: deadline of every session call.")
flags.DEFINE_integer("chief_setup_secs", 3600,
                     "Workers other than the chief: how long to wait for "
                     "the chief to set up (and restore) the variables and "
                     "tables before failing; the tables' restore may take "
                     "up to an hour.")
flags.DEFINE_integer("ps_recovery_secs", 120,
                     "Workers: how long to wait for a lost PS task to come "
                     "back (restarted by the launcher) before failing with "
                     "an error naming it; 0 fails at once. Waiting for the "
                     "chief to restore it is --chief_setup_secs.")
flags.DEFINE_integer("stop_grace_secs", 120,
                     "Launcher: on Ctrl-C or SIGTERM, how long the workers "
                     "get to end their step and the chief to save a last "
                     "checkpoint before every task is stopped.")
flags.DEFINE_integer("max_ps_restarts", 3,
                     "Launcher: restart a PS task that dies at most this "
                     "many times (on its port); past that, or with 0, a "
                     "dead PS task stops the cluster.")
# Training.
flags.DEFINE_integer("steps", 2000, "Train until the global step reaches "
                     "this (all workers together).")
flags.DEFINE_string("model_dir", "/tmp/monolith_local_cluster",
                    "Checkpoints (and the tables' shards) go here; the chief "
                    "resumes from its latest checkpoint.")
flags.DEFINE_integer("save_steps", 500, "Checkpoint every this many steps.")
flags.DEFINE_integer("keep_checkpoints", 5, "Keep this many checkpoints.")
flags.DEFINE_integer("batch_size", 256, "Examples per worker step.")
flags.DEFINE_integer("num_slots", 4, "Sparse slots (one table each).")
flags.DEFINE_integer("ids_per_slot", 2, "Ids of each slot in an example.")
flags.DEFINE_integer("dim", 8, "Embedding dim.")
flags.DEFINE_integer("vocab_size", 10000, "Distinct ids per slot.")
flags.DEFINE_integer("hidden", 32, "Units of the dense hidden layer.")
flags.DEFINE_float("learning_rate", 0.05,
                   "Adagrad learning rate of embeddings and dense layers.")
flags.DEFINE_integer("seed", 0, "Worker i draws examples with seed + i.")
flags.DEFINE_float("log_every_secs", 5.0,
                   "Workers print progress this often.")
flags.DEFINE_bool("verbose", False,
                  "Tasks log TF's info and warnings too (else only errors).")

for _name in ("steps", "save_steps", "keep_checkpoints", "batch_size",
              "num_slots", "ids_per_slot", "dim", "vocab_size", "hidden",
              "operation_timeout_ms", "chief_setup_secs"):
  flags.register_validator(_name, lambda value: value >= 1,
                           message=f"--{_name} must be >= 1")
for _name in ("ps_recovery_secs", "max_ps_restarts", "task_index",
              "stop_grace_secs"):
  flags.register_validator(_name, lambda value: value >= 0,
                           message=f"--{_name} must be >= 0")
flags.register_validator("model_dir", bool, message="--model_dir is empty")
# Ids are drawn as floats below it: far from int64's end.
flags.register_validator("vocab_size", lambda value: value <= 1 << 62,
                         message="--vocab_size must be <= 2^62")
flags.register_validator("log_every_secs", lambda value: value > 0,
                         message="--log_every_secs must be > 0")
flags.register_validator("learning_rate", lambda value: value > 0,
                         message="--learning_rate must be > 0")
# Worker i seeds numpy with seed + i, which must fit 32 bits (a task of
# --task_type counts --worker_hosts instead: _cluster_spec).
flags.register_multi_flags_validator(
    ["seed", "num_workers", "task_type"],
    lambda v: 0 <= v["seed"] and (bool(v["task_type"]) or v["seed"] + max(
        v["num_workers"], 1) <= 2**32),
    message="--seed must be >= 0 and --seed + --num_workers - 1 < 2^32 "
    "(worker i draws examples with seed + i)")

_WORKER_JOB = "worker"
# How long the launcher waits for the workers to report a dead task (they
# exit once they have; a loaded machine can take seconds).
_REPORT_GRACE_SECS = 30
# What the launcher sends the workers when a lost PS task will not be
# restarted: they stop waiting for it (--ps_recovery_secs) and report.
_GIVE_UP_SIGNAL = signal.SIGUSR1
# A task's exit code when its server cannot listen on its address (another
# process took the port since the launcher picked it): EX_TEMPFAIL.
_PORT_TAKEN_EXIT = 75
# Clusters the launcher starts, on new ports each, while a port is taken.
_CLUSTER_ATTEMPTS = 3
_CKPT_NAME = "model.ckpt"
# Host names of this machine's loopback interface.
_LOOPBACK_NAMES = ("localhost", "ip6-localhost", "::1", "[::1]", "0.0.0.0")
# Mean losses of this many steps start and end the summary.
_LOSS_WINDOW = 10
# What stops the launcher and the workers gracefully: Ctrl-C, a
# scheduler's stop, a lost terminal or ssh session (whose default would end
# the launcher without the chief's last save), unless the process was
# started ignoring SIGHUP (nohup) to outlive its terminal.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + (
    () if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN else
    (signal.SIGHUP,))


# ----------------------------------------------------------------------------
# Data.


class RandomCtrData:
  """Random examples whose label depends on their ids.

  Every id of every slot has a hidden weight, about N(0, 1), from a hash of
  the slot and the id (the same in every process, and no table of
  vocab_size weights: any vocab_size runs); an example's label is 1 with
  probability sigmoid(sum of its ids' weights). Ids are skewed:
  id = floor(vocab_size * u^2), u uniform.

  Args:
    num_slots, ids_per_slot, vocab_size: the ids of an example.
    seed: the seed of the examples (not of the hidden weights).
  """

  def __init__(self, num_slots: int, ids_per_slot: int, vocab_size: int,
               seed: int):
    self._shape = (num_slots, ids_per_slot)
    self._vocab_size = vocab_size
    self._rng = np.random.RandomState(seed)

  @staticmethod
  def hidden_weights(slot: int, ids: np.ndarray) -> np.ndarray:
    """The hidden weights of `ids` of `slot`: four 16-bit parts of a
    SplitMix64 hash of (slot, id), summed as uniforms and scaled to mean 0,
    variance 1."""
    with np.errstate(over="ignore"):
      x = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) +
           np.uint64(slot + 1) * np.uint64(0xD1B54A32D192ED03))
      x ^= x >> np.uint64(30)
      x *= np.uint64(0xBF58476D1CE4E5B9)
      x ^= x >> np.uint64(27)
      x *= np.uint64(0x94D049BB133111EB)
      x ^= x >> np.uint64(31)
    uniforms = sum(((x >> np.uint64(16 * k)) & np.uint64(0xFFFF)).astype(
        np.float64) for k in range(4)) / 65536.0
    return (uniforms - 2.0) * np.sqrt(3.0)

  def batch(self, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Ids [num_slots, batch_size, ids_per_slot] int64, labels float32."""
    num_slots, ids_per_slot = self._shape
    u = self._rng.uniform(size=[num_slots, batch_size, ids_per_slot])
    ids = np.minimum(
        (self._vocab_size * u * u).astype(np.int64), self._vocab_size - 1)
    logits = np.zeros([batch_size])
    for s in range(num_slots):
      logits += self.hidden_weights(s, ids[s]).sum(axis=1)
    labels = self._rng.uniform(size=batch_size) < 1 / (1 + np.exp(-logits))
    return ids, labels.astype(np.float32)


# ----------------------------------------------------------------------------
# The model.


class Model:
  """The graph of one worker: placeholders, loss, train op, global step."""

  def __init__(self, num_ps: int, worker_device: str,
               cluster: tf.train.ClusterSpec):
    num_slots, ids_per_slot, dim = (FLAGS.num_slots, FLAGS.ids_per_slot,
                                    FLAGS.dim)
    self.slots = [f"slot_{i}" for i in range(num_slots)]
    on_ps = tf1.train.replica_device_setter(worker_device=worker_device,
                                            cluster=cluster)
    with tf1.device(on_ps):
      self.global_step = tf1.train.get_or_create_global_step()
    with tf.device(worker_device):
      self.ids = tf1.placeholder(tf.int64, [num_slots, None, ids_per_slot],
                                 name="ids")
      self.labels = tf1.placeholder(tf.float32, [None], name="labels")
      self.table = distributed_ps_factory.create_native_multi_hash_table(
          num_ps, {slot: _table_config() for slot in self.slots})
      flat_ids = {
          slot: tf.reshape(self.ids[i], [-1])
          for i, slot in enumerate(self.slots)
      }
      embeddings = self.table.lookup(flat_ids)
      pooled = [
          tf.reduce_sum(tf.reshape(embeddings[slot], [-1, ids_per_slot, dim]),
                        axis=1) for slot in self.slots
      ]
    with tf1.device(on_ps):
      # Variables go to the PS tasks (round robin), the math to the worker.
      x = tf.concat(pooled, axis=1)
      w1 = tf1.get_variable("w1", [num_slots * dim, FLAGS.hidden],
                            initializer=tf1.glorot_uniform_initializer())
      b1 = tf1.get_variable("b1", [FLAGS.hidden],
                            initializer=tf1.zeros_initializer())
      w2 = tf1.get_variable("w2", [FLAGS.hidden, 1],
                            initializer=tf1.glorot_uniform_initializer())
      b2 = tf1.get_variable("b2", [1], initializer=tf1.zeros_initializer())
      hidden = tf.nn.relu(tf.matmul(x, w1) + b1)
      logits = tf.squeeze(tf.matmul(hidden, w2) + b2, axis=1)
      self.loss = tf.reduce_mean(
          tf.nn.sigmoid_cross_entropy_with_logits(labels=self.labels,
                                                  logits=logits))
      dense_vars = [w1, b1, w2, b2]
      grads = tf.gradients(self.loss,
                           [embeddings[s] for s in self.slots] + dense_vars)
      sparse_grads, dense_grads = grads[:num_slots], grads[num_slots:]
      dense_train = tf1.train.AdagradOptimizer(
          FLAGS.learning_rate).apply_gradients(zip(dense_grads, dense_vars),
                                               global_step=self.global_step)
    with tf.device(worker_device):
      sparse_train = self.table.apply_gradients(
          {
              slot: (flat_ids[slot], grad)
              for slot, grad in zip(self.slots, sparse_grads)
          },
          global_step=self.global_step).as_op()
      self.train_op = tf.group(dense_train, sparse_train, name="train")
      with tf.control_dependencies([self.train_op]):
        # The global step after this step's update.
        self.global_step_after = tf.identity(self.global_step.read_value())
    with tf.device(worker_device):
      # Set up by the chief once it created (and restored) a PS task's
      # variables and tables; empty again when the task restarts. PS tasks
      # still running another --model_dir's tables are restored (or
      # emptied) too.
      self.ps_monitor = save_utils.PsMonitor(num_ps, FLAGS.model_dir)
      self.saver = save_utils.PartialRecoverySaver(
          sharded=True,
          max_to_keep=FLAGS.keep_checkpoints,
          ps_monitor=self.ps_monitor)
      # The chief's: its hooks restore the tables once the session exists.
      self.chief_ready_op = tf.concat([
          tf1.report_uninitialized_variables(),
          resources.report_uninitialized_resources()
      ], 0, name="chief_ready")
      # The other workers wait until the chief has set up every PS task.
      self.ready_op = tf.concat(
          [self.chief_ready_op,
           self.ps_monitor.report_uninitialized_ps()], 0, name="ready")
      # The chief's: restores the tables of the PS tasks the monitor
      # reports, from the latest checkpoint (of any number of PS tasks).
      self.table_restorer = (
          multi_hash_table_ops.MultiHashTableCheckpointRestorerListener(
              os.path.join(FLAGS.model_dir, _CKPT_NAME),
              ps_monitor=self.ps_monitor))


def _table_config() -> entry.HashTableConfigInstance:
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  table_config.entry_config.segments.append(
      entry.CombineAsSegment(FLAGS.dim,
                             entry.RandomUniformInitializer(-0.05, 0.05),
                             # A small initial accumulator: per-id
                             # gradients of a mean loss are small.
                             entry.AdagradOptimizer(
                                 initial_accumulator_value=1e-4),
                             entry.Fp32Compressor()))
  entry.CuckooHashTableConfig().mutate_table(table_config)
  return entry.HashTableConfigInstance(table_config, [FLAGS.learning_rate])


# ----------------------------------------------------------------------------
# Tasks.


def _cluster_spec() -> tf.train.ClusterSpec:
  ps_hosts = [h for h in FLAGS.ps_hosts.split(",") if h]
  worker_hosts = [h for h in FLAGS.worker_hosts.split(",") if h]
  if not ps_hosts or not worker_hosts:
    raise app.UsageError("--task_type needs --ps_hosts and --worker_hosts")
  for flag, hosts in (("ps_hosts", ps_hosts), ("worker_hosts", worker_hosts)):
    for address in hosts:
      host, _, port = address.rpartition(":")
      if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise app.UsageError(f"--{flag}: {address!r} is not host:port")
  # The second task on an address could not listen (and would exit as for
  # a port taken meanwhile, which a scheduler retries). A server listens on
  # every interface: loopback names are one host.
  seen = {}
  for address in ps_hosts + worker_hosts:
    host, _, port = address.rpartition(":")
    host = host.lower()
    if host in _LOOPBACK_NAMES or host.startswith("127."):
      host = "localhost"
    if (host, port) in seen:
      same = ("" if seen[(host, port)] == address else
              f" (as {seen[(host, port)]}: one host)")
      raise app.UsageError(
          f"{address} is listed twice in --ps_hosts and --worker_hosts"
          f"{same}: each task needs an address of its own")
    seen[(host, port)] = address
  if FLAGS.seed + len(worker_hosts) > 2**32:
    raise app.UsageError(
        f"--seed + {len(worker_hosts)} (the tasks of --worker_hosts) - 1 "
        "must be < 2^32 (worker i draws examples with seed + i)")
  tasks = ps_hosts if FLAGS.task_type == "ps" else worker_hosts
  if not 0 <= FLAGS.task_index < len(tasks):
    raise app.UsageError(
        f"--task_index={FLAGS.task_index} is not a task of --"
        f"{FLAGS.task_type}_hosts (it lists {len(tasks)}: 0 to "
        f"{len(tasks) - 1})")
  return tf.train.ClusterSpec({
      utils.PS_JOB_NAME: ps_hosts,
      _WORKER_JOB: worker_hosts
  })


class _PortTaken(Exception):
  """A task's server could not listen on its address."""


def _start_server(cluster: tf.train.ClusterSpec,
                  job_name: str,
                  index: int,
                  config: Optional[tf1.ConfigProto] = None
                 ) -> tf.distribute.Server:
  try:
    return tf.distribute.Server(cluster, job_name=job_name, task_index=index,
                                config=config)
  except tf.errors.UnknownError as e:
    # What TF says when gRPC cannot bind the port (it logs the cause).
    if "Could not start gRPC server" not in e.message:
      raise
    raise _PortTaken(
        f"{job_name} {index}: cannot listen on "
        f"{cluster.task_address(job_name, index)} (is its port taken?): "
        f"{e.message}") from e


def run_ps(cluster: tf.train.ClusterSpec, index: int) -> None:
  """Serves PS task `index` until the process is killed."""
  # gpucuco tables allocate GPU memory beside TF's allocator, which would
  # otherwise reserve nearly all of it (see docs/gpu.md).
  os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
  server = _start_server(cluster, utils.PS_JOB_NAME, index)
  print(f"ps {index}: serving {server.target} (pid {os.getpid()})",
        flush=True)
  # join() blocks in C++, where Python's SIGINT handler never runs: Ctrl-C
  # ends the task as SIGTERM does (a PS has nothing to save).
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  server.join()


class _WorkerSessionCreator(tf1.train.SessionCreator):
  """Waits for the chief's initialization, polling every second.

  (`tf.compat.v1.train.WorkerSessionCreator` polls every 30 s.)
  """

  def __init__(self,
               scaffold: tf1.train.Scaffold,
               master: str,
               config: tf1.ConfigProto,
               max_wait_secs: float,
               ps_monitor: Optional[save_utils.PsMonitor] = None):
    self._scaffold = scaffold
    self._master = master
    self._config = config
    self._max_wait_secs = max_wait_secs
    self._ps_monitor = ps_monitor

  def create_session(self) -> tf1.Session:
    self._scaffold.finalize()
    manager = tf1.train.SessionManager(
        local_init_op=self._scaffold.local_init_op,
        local_init_feed_dict=self._scaffold.local_init_feed_dict,
        ready_op=self._scaffold.ready_op,
        ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
        graph=tf1.get_default_graph(),
        recovery_wait_secs=1)
    try:
      return manager.wait_for_session(self._master, config=self._config,
                                      max_wait_secs=self._max_wait_secs)
    except tf.errors.DeadlineExceededError as e:
      # SessionManager's own time-out says so; others are RPCs' deadlines
      # (a lost task).
      if not e.message.startswith("Session was not ready after waiting"):
        raise
      # Not a lost task (which the worker would wait for, then wait again).
      raise tf.errors.FailedPreconditionError(
          None, None,
          f"the chief did not set the session up within --chief_setup_secs="
          f"{self._max_wait_secs:g} s ({self._why_not_set_up()}): "
          f"{e.message}") from e

  def _why_not_set_up(self) -> str:
    """What a worker can tell of why its PS tasks never looked set up."""
    mismatch = ""
    if self._ps_monitor is not None:
      try:
        with tf1.Session(self._master, config=self._config) as sess:
          counts = self._ps_monitor.set_up_counts(sess)
      except tf.errors.OpError as e:
        logging.warning("Could not read the PS tasks' setup: %s", e)
        counts = []
      others = sorted({c for c in counts if c not in (0, len(counts))})
      if others:
        mismatch = (
            f"PS tasks were set up for {' or '.join(map(str, others))} PS "
            f"tasks, and this worker's --ps_hosts lists {len(counts)}: "
            "give every task the chief's --ps_hosts; or ")
    return (f"{mismatch}a worker waits for PS tasks set up for its own "
            f"--model_dir, {FLAGS['model_dir'].value}: give every task the "
            "chief's")


# pylint: disable=protected-access
class _FailFastSession(monitored_session._MonitoredSession):
  """A MonitoredSession that does not re-create its session on errors.

  tf.compat.v1.train.MonitoredSession silently re-creates the session when
  a task is unavailable, and waits for it for hours; here a lost task
  fails the worker with TF's error, which names the task.
  """

  def __init__(self, session_creator: tf1.train.SessionCreator,
               hooks: Sequence[tf1.train.SessionRunHook]):
    super().__init__(session_creator, hooks, should_recover=False)


# pylint: enable=protected-access


class _Progress:
  """Counts steps, examples and ids; prints progress lines and the summary.

  Rates run from the end of the worker's first step (session creation, the
  chief's restore and the wait for it are not training) to the latest step.
  ids/s counts every id of the examples; "per PS" counts what each PS task
  serves: a step's distinct ids of each table that live on it (the worker
  sends each table's repeated ids once, to PS id mod num_ps).
  """

  def __init__(self, index: int, num_ps: int):
    self._index = index
    self._num_ps = num_ps
    self.steps = 0
    self.examples = 0
    # The first and the latest _LOSS_WINDOW losses (the summary's), and the
    # sum since the last line: a long run keeps no loss per step.
    self._first_losses: List[float] = []
    self._recent_losses: Deque[float] = collections.deque(maxlen=_LOSS_WINDOW)
    self._loss_sum = 0.0
    self.global_step = 0
    self._ids = 0
    self._ps_ids = np.zeros(num_ps, np.int64)
    self._start: Optional[float] = None  # end of the first step
    self._end: Optional[float] = None  # end of the latest step
    self._waited = 0.0  # in recoveries since the first step
    self._start_counts = (0, 0, np.zeros(num_ps, np.int64))
    self._last = (0.0, 0, 0, 0, np.zeros(num_ps, np.int64))

  def add(self, ids: np.ndarray, loss: float, global_step: int,
          log_every_secs: float) -> None:
    """Records a step on `ids` ([num_slots, batch, ids_per_slot])."""
    self.steps += 1
    self.examples += ids.shape[1]
    self._ids += ids.size
    for slot_ids in ids:
      distinct = np.unique(slot_ids)
      self._ps_ids += np.bincount(distinct % self._num_ps,
                                  minlength=self._num_ps)
    if len(self._first_losses) < _LOSS_WINDOW:
      self._first_losses.append(loss)
    self._recent_losses.append(loss)
    self._loss_sum += loss
    self.global_step = global_step
    now = time.monotonic()
    self._end = now
    if self._start is None:
      self._start = now
      self._start_counts = (self.examples, self._ids, self._ps_ids.copy())
      self._last = (now, self.steps, self.examples, self._ids,
                    self._ps_ids.copy())
      self._loss_sum = 0.0  # the next line's steps start after this one
      print(f"worker {self._index}: step 1 global_step {global_step} loss "
            f"{loss:.4f} (rates from here on)", flush=True)
    elif now - self._last[0] >= log_every_secs:
      self._print(now)

  def _rates(self, secs: float, examples: int, ids: int,
             ps_ids: np.ndarray) -> str:
    secs = max(secs, 1e-9)
    per_ps = " ".join(f"{n / secs:.0f}" for n in ps_ids)
    return (f"examples/s {examples / secs:.0f} ids/s {ids / secs:.0f} "
            f"ids/s per PS [{per_ps}]")

  def _print(self, now: float) -> None:
    last_time, last_steps, last_examples, last_ids, last_ps_ids = self._last
    steps = self.steps - last_steps
    loss = self._loss_sum / max(steps, 1)
    self._loss_sum = 0.0
    print(f"worker {self._index}: step {self.steps} global_step "
          f"{self.global_step} loss {loss:.4f} " +
          self._rates(now - last_time, self.examples - last_examples,
                      self._ids - last_ids, self._ps_ids - last_ps_ids),
          flush=True)
    self._last = (now, self.steps, self.examples, self._ids,
                  self._ps_ids.copy())

  def restart_clock(self) -> None:
    """Leaves a wait (a lost PS task's recovery) out of the rates."""
    if self._start is not None:
      now = time.monotonic()
      waited = now - self._end
      self._waited += waited
      self._end = now
      self._last = (self._last[0] + waited,) + self._last[1:]

  def summary(self) -> None:
    """Prints the totals and the rates from the first step to the last."""
    first = float(np.mean(self._first_losses)) if self._first_losses else 0
    last = float(np.mean(self._recent_losses)) if self._recent_losses else 0
    if self._start is None:
      rates = "no step"
      secs = 0.0
    else:
      secs = self._end - self._start - self._waited
      examples, ids, ps_ids = self._start_counts
      rates = self._rates(secs, self.examples - examples, self._ids - ids,
                          self._ps_ids - ps_ids)
    print(f"worker {self._index}: summary: steps {self.steps} global_step "
          f"{self.global_step} examples {self.examples} ids {self._ids} "
          f"secs {secs:.1f} {rates} loss_first {first:.4f} "
          f"loss_last {last:.4f}",
          flush=True)


class _ReportSetupHook(tf1.train.SessionRunHook):
  """Prints which PS tasks the chief's new session restores or initializes.

  Listed before the hooks that restore, so it sees the tasks still to do.
  """

  def __init__(self, index: int, ps_monitor: save_utils.PsMonitor):
    self._index = index
    self._ps_monitor = ps_monitor

  def after_create_session(self, session, coord) -> None:
    del coord  # Unused.
    tasks = sorted(self._ps_monitor.uninitialized_ps_tasks(session))
    if not tasks:
      return
    try:
      latest = save_utils.latest_checkpoint(FLAGS.model_dir)
    except tf.errors.OpError as e:  # the session restored it a moment ago
      latest = f"a checkpoint ({e.message})"
    print(f"worker {self._index}: PS task(s) {', '.join(map(str, tasks))} "
          f"{'restored from ' + latest if latest else 'initialized'}",
          flush=True)


class _RecoveryWait:
  """A worker's waits for lost tasks (times: time.monotonic()'s).

  A wait begins at a loss and ends when every PS task answers again after
  one was seen gone, or at a training step; losses during it are part of
  it, and it may last `limit_secs`. The chief's restore of a task that came
  back is not part of it (--chief_setup_secs bounds it): a loss while the
  chief restores begins a wait of its own. A loss while every task answers
  (a task that hangs, a deadline too short for a call, a task restarted
  before it was seen gone) is not known to be back: its wait goes on until
  a step trains, so that losses repeated without a step fail after
  `limit_secs`, not retry for ever; the time new sessions took to be
  made (the chief's restore) does not count, that of creations that
  failed does.
  """

  def __init__(self, limit_secs: float):
    self._limit_secs = limit_secs
    self._stopped_at = None  # training stopped (the first loss)
    self._waiting_since = None
    self._gone_seen = False  # a PS task refused connections in this wait
    self.given_up = False

  def give_up(self) -> None:
    """No lost task will come back (the launcher stopped restarting them,
    which it says with _GIVE_UP_SIGNAL): every wait ends at once."""
    self.given_up = True

  def lose(self, now: float) -> bool:
    """Notes a loss; True when it begins a wait."""
    if self._stopped_at is None:
      self._stopped_at = now
    if self._waiting_since is not None:
      return False
    self._waiting_since = now
    return True

  def waiting(self) -> bool:
    return self._waiting_since is not None

  def expired(self, now: float) -> bool:
    """Whether the present wait lasted its limit."""
    return self._waiting_since is not None and (
        self.given_up or now - self._waiting_since >= self._limit_secs)

  def gone_seen(self) -> None:
    """A PS task refuses connections during the wait."""
    self._gone_seen = True

  def tasks_back(self) -> None:
    """Every PS task answers: the wait is over if one was gone."""
    if self._gone_seen:
      self._waiting_since = None
      self._gone_seen = False

  def pause(self, secs: float) -> None:
    """`secs` (a new session's creation) do not count in the wait."""
    if self._waiting_since is not None:
      self._waiting_since += secs

  def trained(self) -> None:
    """A training step ran: whatever was lost is back."""
    self._waiting_since = None
    self._gone_seen = False

  def training_again(self, now: float) -> Optional[float]:
    """Seconds since training stopped (None: it did not), now it runs."""
    stopped_at, self._stopped_at = self._stopped_at, None
    return None if stopped_at is None else now - stopped_at


# Errors of a session call when a task it involves died or restarted.
_LOST_TASK_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                     tf.errors.DeadlineExceededError)


def _not_ready_as_lost_task(
    e: RuntimeError) -> Optional[tf.errors.AbortedError]:
  """TF's "Init operations did not make model ready" (its session manager
  found variables uninitialized right after the chief's restore or
  initialization: a PS task restarted meanwhile) as a lost task's error,
  which a worker waits out; None for any other RuntimeError."""
  if not str(e).startswith("Init operations did not make model ready"):
    return None
  return tf.errors.AbortedError(
      None, None, "the session was not ready once set up (a PS task "
      f"restarted meanwhile?): {e}")


def _tasks_named(e: tf.errors.OpError,
                 index: int,
                 cluster: Optional[tf.train.ClusterSpec] = None) -> str:
  """The tasks other than worker `index` that an error message names; for
  a message that names none (e.g. a session not ready in time), the PS
  tasks of `cluster` that refuse connections, if any."""
  own = {f"/job:{_WORKER_JOB}/replica:0/task:{index}",
         f"/job:{_WORKER_JOB}/task:{index}"}
  tasks = sorted(
      set(re.findall(r"/job:\w+(?:/replica:\d+)?/task:\d+", e.message)) - own)
  if not tasks and cluster is not None:
    tasks = [f"{t}, unreachable" for t in _unreachable_ps_tasks(cluster)]
  return ", ".join(tasks) or "this worker"


def _unreachable_ps_tasks(cluster: tf.train.ClusterSpec) -> List[str]:
  """The PS tasks whose address refuses a TCP connection (process gone).

  A new session waits for every task of the cluster without a deadline, so
  a worker checks the PS tasks before it creates one after a loss.
  """
  gone = []
  for i, address in enumerate(cluster.job_tasks(utils.PS_JOB_NAME)):
    host, port = address.rsplit(":", 1)
    try:
      socket.create_connection((host.strip("[]"), int(port)),
                               timeout=5).close()
    except OSError:
      gone.append(f"/job:{utils.PS_JOB_NAME}/task:{i} ({address})")
  return gone


def _wait_for_ps_tasks(index: int,
                       cluster: tf.train.ClusterSpec,
                       recovery: _RecoveryWait,
                       quiet_secs: float = 10.0,
                       every_secs: float = 60.0) -> List[str]:
  """Waits until every PS task's port answers, naming those that do not
  after `quiet_secs` and every `every_secs` after: a first session would
  wait for them inside TF, saying only that it waits (tasks of a
  multi-machine job start in any order, so there is no deadline). Returns
  the tasks still gone when the launcher gave up on them
  (`recovery.given_up`), else []."""
  start = time.monotonic()
  next_note = start + quiet_secs
  while True:
    gone = _unreachable_ps_tasks(cluster)
    if not gone or recovery.given_up:
      return gone
    now = time.monotonic()
    if now >= next_note:
      print(f"worker {index}: waiting {now - start:.0f} s for "
            f"{', '.join(gone)} to start", flush=True)
      next_note = now + every_secs
    time.sleep(1)


def _session_creator(model: Model, index: int, server: tf.distribute.Server,
                     config: tf1.ConfigProto) -> tf1.train.SessionCreator:
  """Creates the worker's sessions; the chief's restore what PS tasks lost.

  The chief restores the variables (`PartialRecoverySaver`) of the PS tasks
  that `model.ps_monitor` reports uninitialized (all of them on a fresh
  cluster) from the latest checkpoint of --model_dir, if any, and creates
  the tables; its hooks (`_chief_hooks`) restore those tasks' tables and
  set the tasks up. The other workers wait for that.
  """
  if index == 0:
    local_init_op = tf.group(tf1.train.Scaffold.default_local_init_op(),
                             *[t.initializer for t in model.table.tables])
    scaffold = tf1.train.Scaffold(saver=model.saver,
                                  ready_op=model.chief_ready_op,
                                  local_init_op=local_init_op)
    return save_utils.StrictChiefSessionCreator(scaffold=scaffold,
                                                master=server.target,
                                                config=config,
                                                checkpoint_dir=FLAGS.model_dir)
  return _WorkerSessionCreator(
      tf1.train.Scaffold(saver=model.saver, ready_op=model.ready_op),
      server.target, config, FLAGS.chief_setup_secs, model.ps_monitor)


def _hooks(model: Model, index: int) -> List[tf1.train.SessionRunHook]:
  """The worker's hooks; every session it creates uses them again."""
  hooks = [tf1.train.StopAtStepHook(last_step=FLAGS.steps)]
  if index != 0:
    return hooks
  return hooks + [
      _ReportSetupHook(index, model.ps_monitor),
      basic_restore_hook.CheckpointRestorerHook(
          listeners=[model.table_restorer]),
      save_utils.PsInitializedStateHook(model.ps_monitor),
      # Last: it saves when the session is created (not a step restored).
      save_utils.NoFirstSaveCheckpointSaverHook(
          FLAGS.model_dir,
          save_steps=FLAGS.save_steps,
          saver=model.saver,
          listeners=[
              multi_hash_table_ops.MultiHashTableCheckpointSaverListener(
                  os.path.join(FLAGS.model_dir, _CKPT_NAME))
          ]),
  ]


def _shape_mismatch(checkpoint: str) -> str:
  """The first variable of the default graph that `checkpoint` lacks or
  holds in another shape, described; "" if none."""
  saved = dict(tf.train.list_variables(checkpoint))
  for variable in tf1.global_variables():
    name = variable.op.name
    shape = variable.shape.as_list()
    if name not in saved:
      return f"{name} is not in it"
    if list(saved[name]) != shape:
      return f"{name} is {list(saved[name])} there, {shape} here"
  return ""


def run_worker(cluster: tf.train.ClusterSpec, index: int) -> int:
  """Trains as worker `index` until the global step reaches --steps."""
  # First: the launcher's give-up signal, ignored until now (see _Task),
  # may come at any time from here on.
  recovery = _RecoveryWait(FLAGS.ps_recovery_secs)
  signal.signal(_GIVE_UP_SIGNAL, lambda signum, frame: recovery.give_up())
  num_ps = cluster.num_tasks(utils.PS_JOB_NAME)
  is_chief = index == 0
  worker_device = f"/job:{_WORKER_JOB}/task:{index}"
  config = tf1.ConfigProto(
      device_filters=[f"/job:{utils.PS_JOB_NAME}", worker_device],
      operation_timeout_in_ms=FLAGS.operation_timeout_ms)
  server = _start_server(cluster, _WORKER_JOB, index, config)
  tf1.disable_eager_execution()
  with tf.Graph().as_default():
    model = Model(num_ps, worker_device, cluster)
    if is_chief:
      try:
        tf.io.gfile.makedirs(FLAGS.model_dir)
        latest = save_utils.latest_checkpoint(FLAGS.model_dir)
        mismatch = latest and _shape_mismatch(latest)
      except tf.errors.OpError as e:
        print(f"worker {index}: cannot resume: {e.message}", flush=True)
        return 1
      if mismatch:
        # Else the restore fails naming the PS tasks holding the variables.
        print(f"worker {index}: cannot resume from {latest}: it was written "
              f"by another model, or of other flags (--num_slots, --dim, "
              f"--hidden): {mismatch}. Train it with the flags it was "
              f"written with, or use another --model_dir", flush=True)
        return 1
      if latest:
        print(f"worker {index}: resuming from {latest}", flush=True)
    creator = _session_creator(model, index, server, config)
    hooks = _hooks(model, index)
    data = RandomCtrData(FLAGS.num_slots, FLAGS.ids_per_slot,
                         FLAGS.vocab_size, FLAGS.seed + index)
    progress = _Progress(index, num_ps)
    print(f"worker {index}: training to global step {FLAGS.steps} with "
          f"{num_ps} PS task(s){' (chief)' if is_chief else ''}",
          flush=True)
    sess = None
    # SIGTERM (the launcher's stop) or SIGINT ends training after the
    # current step; closing the session then runs the chief's last save.
    # Without a session (creating one, which blocks in TF until every task
    # answers, or waiting for a lost task) they end the process at once,
    # with nothing to save.
    stop_after_step = _StopAfterStep()
    stop_requested = stop_after_step.requested
    stop_signal = stop_after_step.signals

    def on_stop_signals(handler) -> None:
      # Without a session (None) both end the process at once: a Python
      # KeyboardInterrupt would not come while TF's session creation
      # blocks.
      for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    on_stop_signals(None)
    gone = _wait_for_ps_tasks(index, cluster, recovery)
    if gone:
      print(f"worker {index}: failed before training: {', '.join(gone)} "
            "will not come back (the launcher stopped restarting it)",
            flush=True)
      return 1

    while not stop_requested.is_set():
      try:
        if sess is None:
          gone = _unreachable_ps_tasks(cluster) if recovery.waiting() else []
          if gone:
            recovery.gone_seen()
            if recovery.expired(time.monotonic()):
              print(f"worker {index}: failed after {progress.steps} steps: "
                    f"{', '.join(gone)} " +
                    ("will not come back (the launcher stopped restarting "
                     "it)" if recovery.given_up else
                     f"did not come back within {FLAGS.ps_recovery_secs} s"),
                    flush=True)
              os._exit(1)
            time.sleep(1)
            continue
          recovery.tasks_back()
          creating_since = time.monotonic()
          try:
            sess = _FailFastSession(creator, hooks)
          except RuntimeError as e:
            lost = _not_ready_as_lost_task(e)
            if lost is None:
              raise
            raise lost from e
          # A creation that failed counts: retries of one that fails each
          # time (a hung task) must end at the limit, not after that many
          # creations (each a restore, for the chief).
          recovery.pause(time.monotonic() - creating_since)
          on_stop_signals(stop_after_step)
          # A run that reads the step lets StopAtStepHook see a model_dir
          # already trained to --steps (it asks to stop after a run only).
          progress.global_step = int(sess.run(model.global_step))
          stopped_secs = recovery.training_again(time.monotonic())
          if stopped_secs is not None:
            print(f"worker {index}: training again after "
                  f"{stopped_secs:.1f} s", flush=True)
            progress.restart_clock()
        if sess.should_stop():
          break
        ids, labels = data.batch(FLAGS.batch_size)
        _, loss, step = sess.run(
            [model.train_op, model.loss, model.global_step_after], {
                model.ids: ids,
                model.labels: labels
            })
        progress.add(ids, float(loss), int(step), FLAGS.log_every_secs)
        recovery.trained()
      except _LOST_TASK_ERRORS as e:
        now = time.monotonic()
        if not FLAGS.ps_recovery_secs:
          _fail(index, progress, e, cluster)
        if recovery.lose(now):
          print(f"worker {index}: lost {_tasks_named(e, index, cluster)} "
                f"({type(e).__name__}); waiting up to "
                f"{FLAGS.ps_recovery_secs} s for it to come back",
                flush=True)
        if recovery.expired(now):
          _fail(index, progress, e, cluster)
        if sess is not None:
          _abandon(sess)
          sess = None
          on_stop_signals(None)
        time.sleep(1)
      except tf.errors.OpError as e:
        _fail(index, progress, e, cluster)
    if stop_requested.is_set():
      # A chief whose session was dropped (a lost task) has none to save.
      saving = is_chief and sess is not None
      print(f"worker {index}: got {signal.Signals(stop_signal[0]).name}; "
            f"stopping after {progress.steps} steps"
            f"{' (saving a checkpoint first)' if saving else ''}; signal "
            "again to stop at once", flush=True)
    try:
      # Runs the hooks' end(): the chief's last save.
      if sess is not None:
        sess.close()
    except tf.errors.OpError as e:
      _fail(index, progress, e, cluster)
    progress.summary()
  if stop_requested.is_set() and progress.global_step < FLAGS.steps:
    # Stopped short of --steps (e.g. evicted): not a finished task, so a
    # scheduler restarts it.
    return 128 + stop_signal[0]
  return 0


class _StopAfterStep:
  """A worker's handler of the stop signals while it has a session: notes
  the signal, for training to end after the current step and the session
  to close (the chief's last save). A second signal then ends the process
  at once: the handler puts the default action back, since a save that
  hangs (a PS stopped before it) would otherwise hold the task until
  SIGKILL."""

  def __init__(self):
    self.requested = threading.Event()
    self.signals: List[int] = []

  def __call__(self, signum: int, frame) -> None:
    del frame
    for stop_signal in _STOP_SIGNALS:
      signal.signal(stop_signal, signal.SIG_DFL)
    self.signals.append(signum)
    self.requested.set()


# The name of _abandon's threads.
_ABANDONED_CLOSE = "abandoned-session-close"


def _abandon(sess: _FailFastSession) -> None:
  """Closes the TF session of a worker session a lost task ended, on a
  daemon thread: the close waits for the lost task for ever where it does
  not come back (and so would the session's destructor, were it dropped
  here), while it frees the graphs (and their kernels' buffers) the session
  put on the tasks that answer. Kept instead, the sessions of a long run's
  losses (a step past --operation_timeout_ms, a PS restarted) piled up on
  every PS task. The session's hooks do not run: the chief's end-of-session
  save belongs to the session that replaces it.
  """
  tf_sess = sess._tf_sess()  # pylint: disable=protected-access

  def close() -> None:
    try:
      tf_sess.close()
    except Exception as e:  # pylint: disable=broad-except
      logging.info("Closing a session a lost task ended: %s", e)

  threading.Thread(target=close, name=_ABANDONED_CLOSE, daemon=True).start()


def _fail(index: int, progress: _Progress, e: tf.errors.OpError,
          cluster: tf.train.ClusterSpec) -> None:
  """Reports a failed session call, naming the tasks, and exits."""
  print(e.message, file=sys.stderr)
  print(f"worker {index}: failed after {progress.steps} steps: "
        f"{type(e).__name__} involving {_tasks_named(e, index, cluster)}",
        flush=True)
  # Closing the session would wait for the lost task for ever.
  sys.stderr.flush()
  os._exit(1)


# ----------------------------------------------------------------------------
# The launcher.


class _Interrupted(Exception):

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum


def _raise_interrupted(signum, frame):
  del frame
  raise _Interrupted(signum)


# Lines every TF process logs at startup, not shown by the launcher.
_STARTUP_NOISE = (b"cpu_feature_guard.cc",
                  b"To enable the following instructions",
                  b"before absl::InitializeLog()", b"oneDNN custom operations",
                  b"cudart_stub.cc", b"cuda_platform.cc", b"cuda_executor.cc",
                  b"cuda_diagnostics.cc")


class _Task:
  """A task's process; a thread prints its output, prefixed."""

  def __init__(self, name: str, argv: List[str], env: Dict[str, str],
               lock: threading.Lock):
    self.name = name
    self.argv = argv
    # The task starts with the give-up signal ignored (kept across exec,
    # until a worker installs its handler): its default action would kill
    # a worker told before it had a handler. The launcher sends it again
    # until the workers exit (_give_up_on_lost_tasks).
    previous = signal.signal(_GIVE_UP_SIGNAL, signal.SIG_IGN)
    try:
      self.process = subprocess.Popen(argv,
                                      stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT,
                                      env=env,
                                      start_new_session=True)
    finally:
      signal.signal(_GIVE_UP_SIGNAL, previous)
    self._lock = lock
    # A worker's summary line's rates: (examples/s, ids/s, ids/s per PS).
    self.summary_rates: Optional[Tuple[float, float, List[float]]] = None
    self._thread = threading.Thread(target=self._pump, daemon=True)
    self._thread.start()

  def _pump(self) -> None:
    # Reads to the end whatever happens to our stdout: a child whose pipe
    # fills (nobody reading it) would block in its next print, forever.
    writable = True
    for line in iter(self.process.stdout.readline, b""):
      rates = _SUMMARY_RATES.search(line)
      if rates:
        self.summary_rates = (float(rates[1]), float(rates[2]),
                              [float(n) for n in rates[3].split()])
      if not writable or any(noise in line for noise in _STARTUP_NOISE):
        continue
      with self._lock:
        try:
          sys.stdout.write(f"[{self.name}] "
                           f"{line.decode(errors='replace').rstrip()}\n")
          sys.stdout.flush()
        except (BrokenPipeError, OSError, ValueError):
          writable = False  # e.g. `| head` exited: drop the output

  def kill(self, sig: int) -> None:
    if self.process.poll() is None:
      with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(self.process.pid, sig)

  def join_output(self, timeout: float) -> None:
    self._thread.join(timeout)


# The rates of a worker's summary line (_Progress.summary).
_SUMMARY_RATES = re.compile(rb": summary: .* examples/s (\d+) ids/s (\d+) "
                            rb"ids/s per PS \[([\d ]*)\]")


def _say_cluster_rates(workers: List[_Task]) -> None:
  """Prints the sum of the workers' summary rates (each over its own time
  from its first step: an estimate of the cluster's)."""
  rates = [t.summary_rates for t in workers if t.summary_rates]
  if not rates:
    return
  per_ps = np.sum([r[2] for r in rates], axis=0)
  _say(f"local_cluster: {len(rates)} of {len(workers)} workers' summaries: "
       f"examples/s {sum(r[0] for r in rates):.0f} ids/s "
       f"{sum(r[1] for r in rates):.0f} ids/s per PS "
       f"[{' '.join(f'{n:.0f}' for n in per_ps)}]")


def _say(line: str) -> None:
  """Prints a launcher line. A closed stdout (`| head` exited, or `| tee`
  killed by the same Ctrl-C) must not stop the launcher in the middle of a
  shutdown (before the chief's last save): from then on its lines go to
  /dev/null."""
  try:
    print(line, flush=True)
  except (BrokenPipeError, OSError, ValueError):
    with contextlib.suppress(OSError, ValueError):
      devnull = os.open(os.devnull, os.O_WRONLY)
      os.dup2(devnull, sys.stdout.fileno())
      os.close(devnull)


def launch(argv: Sequence[str]) -> int:
  """Runs a cluster of --num_ps and --num_workers tasks on this host."""
  if FLAGS.num_ps < 1 or FLAGS.num_workers < 1:
    raise app.UsageError("--num_ps and --num_workers must be >= 1")
  del argv
  # The chief would fail on it after every task started.
  try:
    tf.io.gfile.makedirs(FLAGS.model_dir)
  except tf.errors.OpError as e:
    raise app.UsageError(
        f"--model_dir {FLAGS.model_dir}: cannot create it: {e.message}")
  probe = os.path.join(FLAGS.model_dir, f".local_cluster_probe-{os.getpid()}")
  try:
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("")
  except tf.errors.OpError as e:
    raise app.UsageError(
        f"--model_dir {FLAGS.model_dir}: cannot write in it: {e.message}")
  finally:
    with contextlib.suppress(tf.errors.OpError):
      tf.io.gfile.remove(probe)
  # The lock file stays open, locked, until the launcher exits.
  _lock_model_dir(FLAGS.model_dir)
  # The tasks die with the launcher.
  env = utils.launcher_env(utils.python_child_env(PYTHONUNBUFFERED="1"))
  if not FLAGS.verbose:
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  # The model runs on CPUs: tasks must not each take every GPU's memory.
  env["CUDA_VISIBLE_DEVICES"] = ""
  # This module's flags as given (--flagfile expanded), then the task's.
  module = FLAGS.find_module_defining_flag("steps")
  passed = [
      f.serialize() for f in FLAGS.flags_by_module_dict()[module] if f.present
  ]
  for attempt in range(1, _CLUSTER_ATTEMPTS + 1):
    exit_code = _run_cluster(env, passed)
    if exit_code != _PORT_TAKEN_EXIT:
      return exit_code
    if attempt < _CLUSTER_ATTEMPTS:
      _say(f"local_cluster: starting every task again on new ports "
           f"(attempt {attempt + 1} of {_CLUSTER_ATTEMPTS})")
  _say(f"local_cluster: a port was taken in each of {_CLUSTER_ATTEMPTS} "
       "attempts; giving up")
  return 1


_MODEL_DIR_LOCK = ".local_cluster.lock"


def _lock_model_dir(model_dir: str) -> Optional[int]:
  """Locks a local `model_dir` for this launcher; returns the open lock
  file (locked while it is open), or None for another file system's.

  Two launchers saving into one folder (the default --model_dir, twice)
  would delete each other's checkpoints when rotating and overwrite the
  checkpoint state file; a later resume took whichever saved last.

  Raises:
    app.UsageError: another launcher holds the lock, or it cannot be
      opened.
  """
  path = utils.comparable_path(model_dir)
  if "://" in path:
    return None
  lock_path = os.path.join(path, _MODEL_DIR_LOCK)
  try:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:  # e.g. another user's
    raise app.UsageError(f"--model_dir {model_dir}: cannot open its lock "
                         f"file {lock_path}: {e.strerror}") from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    os.close(fd)
    raise app.UsageError(
        f"--model_dir {model_dir} is in use by another local_cluster "
        f"(process {holder or 'unknown'} holds {lock_path}): give another "
        "--model_dir, or stop that one") from None
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
  return fd


def _run_cluster(env: Dict[str, str], passed: List[str]) -> int:
  """Runs every task on new ports until the workers finish; returns the
  launcher's exit code, or _PORT_TAKEN_EXIT when a task could not listen on
  its port."""
  ports = utils.free_ports(FLAGS.num_ps + FLAGS.num_workers)
  hosts = [f"127.0.0.1:{p}" for p in ports]
  ps_hosts = ",".join(hosts[:FLAGS.num_ps])
  worker_hosts = ",".join(hosts[FLAGS.num_ps:])
  # The file, not `-m`: -m would put the working directory first on sys.path.
  base = [sys.executable, os.path.abspath(__file__)] + passed + [
      f"--ps_hosts={ps_hosts}", f"--worker_hosts={worker_hosts}"
  ]
  lock = threading.Lock()
  tasks: List[_Task] = []
  _say(f"local_cluster: ps {ps_hosts}; workers {worker_hosts}; "
       f"model_dir {FLAGS.model_dir}")
  old_handlers = {
      s: signal.signal(s, _raise_interrupted) for s in _STOP_SIGNALS
  }
  exit_code = 1
  try:
    for task_type, count in (("ps", FLAGS.num_ps),
                             ("worker", FLAGS.num_workers)):
      for i in range(count):
        tasks.append(
            _Task(f"{task_type}{i}",
                  base + [f"--task_type={task_type}", f"--task_index={i}"],
                  env, lock))
    ps_tasks = tasks[:FLAGS.num_ps]
    workers = tasks[FLAGS.num_ps:]
    restarts = [0] * len(ps_tasks)
    while True:
      for i, t in enumerate(ps_tasks):
        # Only the chief (worker 0) restores a restarted PS: once it has
        # exited, the other workers would wait for that in vain. A PS whose
        # port was taken is not restarted on it (below).
        if (t.process.poll() is None or
            t.process.returncode == _PORT_TAKEN_EXIT or
            restarts[i] >= FLAGS.max_ps_restarts or
            workers[0].process.poll() is not None):
          continue
        restarts[i] += 1
        _say(f"local_cluster: {t.name} exited with code "
             f"{t.process.returncode}; restarting it (restart {restarts[i]} "
             f"of {FLAGS.max_ps_restarts})")
        t.join_output(1.0)
        ps_tasks[i] = _Task(t.name, t.argv, env, lock)
        tasks[tasks.index(t)] = ps_tasks[i]
      # The PS tasks' return codes as the restarts above polled them: a PS
      # that exits meanwhile is restarted in the next pass, not taken for
      # one past its restarts.
      failed = [
          t for t in workers
          if t.process.poll() is not None and t.process.returncode != 0
      ] + [t for t in ps_tasks if t.process.returncode is not None]
      # Return codes as polled above: one that exits meanwhile is seen in
      # the next pass.
      taken = [t for t in failed if t.process.returncode == _PORT_TAKEN_EXIT]
      if taken:
        _say(f"local_cluster: {taken[0].name} could not listen on its port "
             "(another process took it after the launcher picked it); "
             "stopping the cluster")
        exit_code = _PORT_TAKEN_EXIT
        break
      if failed:
        _say(f"local_cluster: {failed[0].name} exited with code "
             f"{failed[0].process.returncode}; stopping the cluster")
        if all(t.process.poll() is None for t in ps_tasks):
          # A worker failed while every PS is up: the others stop after
          # their step, the chief saving a checkpoint.
          try:
            _stop_workers_first(tasks)
          except _Interrupted as e:
            _say(f"local_cluster: got {e}; stopping at once")
        else:
          # The workers' own errors say more: they stop waiting for the
          # lost task, and get a moment to report.
          _give_up_on_lost_tasks(workers, _REPORT_GRACE_SECS)
        break
      # returncode as the poll above set it: a worker that failed since is
      # not taken for finished.
      if all(t.process.returncode is not None for t in workers):
        for t in workers:
          t.join_output(2.0)  # their summary lines
        _say_cluster_rates(workers)
        _say(f"local_cluster: all {len(workers)} workers finished; "
             f"stopping {len(ps_tasks)} PS tasks")
        exit_code = 0
        break
      time.sleep(0.2)
  except _Interrupted as e:
    _say(f"local_cluster: got {e}; stopping {len(tasks)} tasks")
    exit_code = 128 + e.signum
    try:
      _stop_workers_first(tasks)
    except _Interrupted as again:
      _say(f"local_cluster: got {again} again; stopping at once")
  finally:
    # A signal while the tasks stop does not interrupt that, and ends the
    # launcher instead of a start on new ports. One that comes before the
    # recording handlers are in raises here: noted, and they are put in
    # again, so the tasks are stopped all the same.
    signals_while_stopping = []
    while True:
      try:
        for sig in _STOP_SIGNALS:
          signal.signal(
              sig, lambda signum, _: signals_while_stopping.append(signum))
        break
      except _Interrupted as e:
        signals_while_stopping.append(e.signum)
    _stop(tasks)
    for sig, handler in old_handlers.items():
      signal.signal(sig, handler)
  if signals_while_stopping and exit_code == _PORT_TAKEN_EXIT:
    exit_code = 128 + signals_while_stopping[0]
  _say("local_cluster: stopped" + ("" if exit_code == _PORT_TAKEN_EXIT else
                                   f"; exit code {exit_code}"))
  return exit_code


def _stop_workers_first(tasks: List[_Task]) -> None:
  """SIGTERM to the workers, the chief last, waiting up to
  --stop_grace_secs in all for them to end their step and exit, the chief
  after its last save (the PS tasks are still up for it), which then holds
  every other worker's last step."""
  workers = [t for t in tasks if t.name.startswith("worker")]
  running = [t for t in workers if t.process.poll() is None]
  if not running:
    return
  chief = [t for t in running if t is workers[0]]
  others = [t for t in running if t is not workers[0]]
  _say(f"local_cluster: stopping the workers first"
       f"{': the chief saves a checkpoint' if chief else ''} (up to "
       f"{FLAGS.stop_grace_secs} s; signal again to stop at once)")
  deadline = time.monotonic() + FLAGS.stop_grace_secs
  for t in others:
    t.kill(signal.SIGTERM)
  # At most half the grace: the chief's save needs its share.
  _wait_for_exits(others, FLAGS.stop_grace_secs / 2)
  for t in chief:
    t.kill(signal.SIGTERM)
  _wait_for_exits(running, max(deadline - time.monotonic(), 0.0))
  late = [t for t in running if t.process.poll() is None]
  if late:
    _say(f"local_cluster: {', '.join(t.name for t in late)} still running "
         f"after --stop_grace_secs={FLAGS.stop_grace_secs}: stopped at once" +
         (" (the chief's last save may not have finished: a rerun restores "
          "the latest complete checkpoint in --model_dir)"
          if chief and chief[0] in late else ""))


def _give_up_on_lost_tasks(workers: List[_Task], secs: float) -> None:
  """Tells the running workers that no lost task will come back (they
  report it and exit), waiting up to `secs` in all for them to exit. Told
  again after 0.5, 1.5, 3.5 ... s: a worker ignores the signal until it
  has its handler (see _Task); not more often, as each signal interrupts
  a blocking call of whichever thread takes it."""
  deadline = time.monotonic() + secs
  interval = 0.5
  while True:
    running = [t for t in workers if t.process.poll() is None]
    if not running or time.monotonic() >= deadline:
      return
    for t in running:
      t.process.send_signal(_GIVE_UP_SIGNAL)
    _wait_for_exits(running,
                    min(interval, max(deadline - time.monotonic(), 0.0)))
    interval *= 2


def _wait_for_exits(tasks: List[_Task], secs: float) -> None:
  """Waits up to `secs` in all for the tasks' processes to exit."""
  deadline = time.monotonic() + secs
  for t in tasks:
    with contextlib.suppress(subprocess.TimeoutExpired):
      t.process.wait(max(deadline - time.monotonic(), 0.01))


def _stop(tasks: List[_Task], grace_secs: float = 5.0) -> None:
  """SIGTERM to every task's process group, SIGKILL after grace_secs."""
  for t in tasks:
    t.kill(signal.SIGTERM)
  _wait_for_exits(tasks, grace_secs)
  for t in tasks:
    t.kill(signal.SIGKILL)
    t.process.wait()
    # Processes the task started stay in its group: kill them too. Only a
    # group with members: an empty one's number may be another process's
    # group now (the task may have exited long before).
    if _group_has_members(t.process.pid):
      with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(t.process.pid, signal.SIGKILL)
    t.join_output(2.0)


def _group_has_members(pgid: int) -> bool:
  """Whether a process of process group `pgid` lives (Linux's /proc; while
  one does, no new process or group takes that number)."""
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/stat", "rb") as f:
        stat = f.read()
    except OSError:  # gone meanwhile
      continue
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and ")".
    fields = stat[stat.rfind(b")") + 2:].split()
    if len(fields) > 2 and int(fields[2]) == pgid:
      return True
  return False


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # `bazel run` runs in the runfiles: resolve a local path against the
  # caller's directory (a URL, e.g. gs://..., is taken as it is).
  if "://" not in FLAGS.model_dir:
    FLAGS.model_dir = os.path.join(
        os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()),
        os.path.expanduser(FLAGS.model_dir))
  if not FLAGS.task_type:
    given = [
        name for name in ("ps_hosts", "worker_hosts", "task_index")
        if FLAGS[name].present
    ]
    if given:
      raise app.UsageError(
          f"--{', --'.join(given)} run one task of a cluster and need "
          "--task_type (without it the launcher runs a whole cluster on this "
          "host: --num_ps, --num_workers)")
    return launch(argv)
  utils.die_with_launcher()
  cluster = _cluster_spec()
  if not FLAGS.verbose:
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")
  try:
    if FLAGS.task_type == "ps":
      run_ps(cluster, FLAGS.task_index)
      return 0
    rc = run_worker(cluster, FLAGS.task_index)
    if any(thread.name == _ABANDONED_CLOSE and thread.is_alive()
           for thread in threading.enumerate()):
      # A close still waiting for a lost task would take the GIL back while
      # the interpreter finalizes, which aborts the process: ended here.
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(rc)
    return rc
  except _PortTaken as e:
    print(e, flush=True)
    return _PORT_TAKEN_EXIT


if __name__ == "__main__":
  app.run(main)
