"""Helpers shared by hash table tests."""

import os
import random
import struct
import threading
import time
from typing import Any, Callable, List, Tuple

from absl import logging
import tensorflow as tf

from monolith.native_training import entry
from monolith.native_training import utils
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

# The job of the worker task of `create_test_ps_cluster`.
WORKER_JOB_NAME = "worker"
# Sizes at the edges of what parsers check, which `mutate_bytes` forges.
FUZZ_EDGE_SIZES = (0, 1, 7, 8, 2**31 - 1, 2**31, 2**32, 2**40, 2**63,
                   2**64 - 1)


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
  """One random mutation of `data` (or a few stacked), for fuzz tests:
  truncation, bit flips, a forged little-endian u64 (FUZZ_EDGE_SIZES),
  inserted garbage or a duplicated slice."""
  out = bytearray(data)
  for _ in range(rng.choice((1, 1, 2, 3))):
    kind = rng.randrange(5)
    if kind == 0 and out:  # truncate
      del out[rng.randrange(len(out)):]
    elif kind == 1 and out:  # flip bytes
      for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == 2 and len(out) >= 8:  # forge a little-endian u64
      at = rng.randrange(len(out) - 7)
      out[at:at + 8] = struct.pack("<Q", rng.choice(FUZZ_EDGE_SIZES))
    elif kind == 3:  # insert garbage
      at = rng.randrange(len(out) + 1)
      out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif out:  # duplicate a slice
      a = rng.randrange(len(out))
      b = rng.randrange(a, min(len(out), a + 64) + 1)
      at = rng.randrange(len(out) + 1)
      out[at:at] = out[a:b]
  return bytes(out)


def generate_test_hash_table_config(
    dim: int = 2,
    use_float16: bool = False,
    learning_rate: float = 1.0) -> entry.HashTableConfigInstance:
  """A valid one-segment cuckoo table config for tests.

  Args:
    dim: the segment's dim.
    use_float16: whether the SGD optimizer rounds stochastically to float16.
    learning_rate: the segment's constant learning rate.

  Returns:
    A config whose segment has `dim` floats, zeros initializer, SGD optimizer
    and an fp32 serving compressor, with learning rate `learning_rate`.
  """
  table_config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  table_config.cuckoo.SetInParent()
  segment = table_config.entry_config.segments.add()
  segment.dim_size = dim
  segment.opt_config.sgd.SetInParent()
  segment.opt_config.stochastic_rounding_float16 = use_float16
  segment.init_config.zeros.SetInParent()
  segment.comp_config.fp32.SetInParent()
  return entry.HashTableConfigInstance(table_config, [learning_rate])


def create_test_ps_cluster(
    num_ps: int,
    attempts: int = 3
) -> Tuple[List[tf.distribute.Server], tf.compat.v1.ConfigProto]:
  """Starts an in-process cluster: one worker task and `num_ps` PS tasks.

  `servers[0]` is task 0 of the "worker" job and `servers[1 + i]` is task i
  of the `utils.PS_JOB_NAME` job, each a `tf.distribute.Server` on a free
  port of this host. Every server boots with the whole ClusterSpec, as the
  tasks of a real job do, so in a session on `servers[0].target` ops with no
  device run on the worker and ops under `utils.ps_device(i)` on PS i.
  (The original instead passes the cluster in `config.cluster_def` to servers
  started alone; TF then places ops with no device on the first device by
  name, a PS, and rejects a cluster_def that names a server's own task.)

  `config` sets `isolate_session_state`: each session starts with its own,
  empty, tables on the PS tasks, so tests can share one cluster. A real job
  leaves it off, so that all workers' sessions share the PS's tables.
  Servers cannot be stopped: they live as long as the process.

  Args:
    num_ps: the number of PS tasks, >= 0.
    attempts: how many times to pick ports and start the servers; a port
      taken by another process between the pick and the start fails one
      attempt.

  Returns:
    The servers (worker first) and the session config to use with them:
    `tf.compat.v1.Session(servers[0].target, config=config)`.

  Raises:
    ValueError: num_ps < 0 or attempts < 1.
    tf.errors.OpError: every attempt failed to start a server.
  """
  if num_ps < 0:
    raise ValueError(f"num_ps must be >= 0, got {num_ps}")
  if attempts < 1:
    raise ValueError(f"attempts must be >= 1, got {attempts}")
  config = tf.compat.v1.ConfigProto(isolate_session_state=True)
  for _ in range(attempts - 1):
    try:
      return _start_cluster(num_ps), config
    except tf.errors.OpError as e:
      logging.warning("Starting the test cluster failed (%s); retrying.", e)
  return _start_cluster(num_ps), config


def _start_cluster(num_ps: int) -> List[tf.distribute.Server]:
  """Starts the servers of `create_test_ps_cluster` on free ports."""
  ports = utils.free_ports(num_ps + 1)
  cluster_dict = {WORKER_JOB_NAME: [f"localhost:{ports[0]}"]}
  if num_ps:
    cluster_dict[utils.PS_JOB_NAME] = [f"localhost:{p}" for p in ports[1:]]
  cluster = tf.train.ClusterSpec(cluster_dict)
  tasks = [(WORKER_JOB_NAME, 0)] + [(utils.PS_JOB_NAME, i)
                                    for i in range(num_ps)]
  servers = [
      tf.distribute.Server(cluster, job_name=job, task_index=task)
      for job, task in tasks
  ]
  logging.info("Started the test cluster %s.", cluster_dict)
  return servers


def failing_replace_file(deletes_target: bool) -> Callable[[str, str], None]:
  """A `utils.replace_file` that fails (Unavailable) as TF's HDFS rename
  can: with `deletes_target`, after deleting an existing target."""

  def replace(tmp_path: str, path: str) -> None:
    del tmp_path
    if deletes_target and os.path.exists(path):
      os.remove(path)
    raise tf.errors.UnavailableError(None, None, "injected")

  return replace


def deadline_into(sess: tf.compat.v1.Session,
                  fetch: Any) -> tf.compat.v1.RunOptions:
  """RunOptions whose deadline falls a tenth of the way into a run of
  `fetch` in `sess`, timed here (the fastest of three runs: the first also
  registers its graph on its tasks, and any may be slowed by a loaded
  host): a run under it is cancelled mid-way whatever the host."""
  fastest = float("inf")
  for _ in range(3):
    start = time.monotonic()
    sess.run(fetch)
    fastest = min(fastest, time.monotonic() - start)
  return tf.compat.v1.RunOptions(timeout_in_ms=max(1, int(100 * fastest)))


def run_in_threads(sess: tf.compat.v1.Session,
                   fetch: Any,
                   runs: int,
                   threads: int = 2) -> List[tf.errors.OpError]:
  """Runs `fetch` `runs` times in each of `threads` threads at once.

  Args:
    sess: the session (sessions run concurrently from threads).
    fetch: what each run fetches (an op, a tensor).
    runs: runs per thread; a thread stops at its first error.
    threads: how many threads.

  Returns:
    The errors the runs raised, one per failed thread.
  """
  errors = []

  def run():
    try:
      for _ in range(runs):
        sess.run(fetch)
    except tf.errors.OpError as e:
      errors.append(e)

  workers = [threading.Thread(target=run) for _ in range(threads)]
  for worker in workers:
    worker.start()
  for worker in workers:
    worker.join()
  return errors
