"""The workload of the table benchmarks, and their timing helpers: numpy only.

8 tables of random distinct positive int64 ids (ids / 8 each, distinct
across tables, so a single table can hold them all; positive, so they never
meet DenseHashTable's sentinel keys), drawn with numpy's
default_rng(1000 + dim); fill batches are consecutive slices of each table's
ids, batch / 8 per table; lookup batches are uniform draws (with
replacement) from each table's ids, so every lookup hits.

Imported by multi_hash_table_benchmark.py, and by both sides of the TFRA
peer benchmark (//benchmarks/tfra): tfra_side.py in TFRA's venv (TF 2.16.2,
numpy 1.26) and ours_side.py in the workspace's; each side prints
`fingerprint()` of what it ran, and tfra_peer_benchmark.py refuses to
compare runs whose fingerprints differ.
"""

import ctypes
import gc
import hashlib
import os
import time

import numpy as np

TABLES = 8


class Data:
  """The ids of every table and the batches fed to session.run."""

  def __init__(self, dim: int, ids_per_table: int, batch: int,
               lookup_batches: int):
    self.ids_per_table = ids_per_table
    self.ids = ids_per_table * TABLES
    self.per_table_batch = batch // TABLES
    self.batch = self.per_table_batch * TABLES
    rng = np.random.default_rng(1000 + dim)
    pool = np.unique(rng.integers(1, 2**63 - 1, size=self.ids + 1000,
                                  dtype=np.int64))
    rng.shuffle(pool)
    pool = pool[:self.ids]
    assert pool.size == self.ids
    self.table_ids = [
        pool[t * ids_per_table:(t + 1) * ids_per_table] for t in range(TABLES)
    ]
    self.fill_batches = []
    for start in range(0, ids_per_table, self.per_table_batch):
      self.fill_batches.append([
          ids[start:start + self.per_table_batch] for ids in self.table_ids
      ])
    self.lookup_batches = [[
        ids[rng.integers(0, ids_per_table, size=self.per_table_batch)]
        for ids in self.table_ids
    ] for _ in range(lookup_batches)]

  def fingerprint(self) -> str:
    """A digest of every id of every fill and lookup batch, in order."""
    h = hashlib.sha256()
    for batches in (self.fill_batches, self.lookup_batches):
      for b in batches:
        for ids in b:
          h.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    return h.hexdigest()[:16]


def rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_LIBC = ctypes.CDLL("libc.so.6")


def release_memory():
  gc.collect()
  _LIBC.malloc_trim(0)


def feed(placeholders, batch):
  return dict(zip(placeholders, batch))


def timed_runs(sess, op, feeds) -> float:
  """Seconds for one session.run of op per feed dict, back to back."""
  start = time.perf_counter()
  for fd in feeds:
    sess.run(op, feed_dict=fd)
  return time.perf_counter() - start


def timed_after(sess, setup, op, feeds) -> float:
  """Seconds in session.run(op) alone, each run right after an untimed
  session.run(setup) with the same feeds."""
  total = 0.0
  for fd in feeds:
    sess.run(setup, feed_dict=fd)
    start = time.perf_counter()
    sess.run(op, feed_dict=fd)
    total += time.perf_counter() - start
  return total
