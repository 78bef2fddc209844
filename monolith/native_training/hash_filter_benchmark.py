"""Benchmark of admission and eviction: what hash filters and expiry cost.

    bazel run -c opt //monolith/native_training:hash_filter_benchmark

Admission: `MultiHashTable.apply_gradients` (one table, dim 16, SGD) of
batches of 65,536 ids drawn from 1M distinct ids with a Zipf-like frequency
(rank r drawn with probability proportional to r^-1.1), through
`session.run`, with the sliding hash filter (`create_hash_filter`, capacity
`--filter_capacity`, 7 splits, every slot's threshold `--threshold`) beside
the same table with the dummy filter, which admits everything: its peer.
Both tables first see `--warmup_batches` batches, so the frequent ids are in
them (the steady state of training: most ids of a batch exist, the rare
ones are counted); then each of `--rounds` rounds times `--timed_batches`
new batches (never replayed: a replayed rare id would have been counted
already) on both tables, which take turns going first. Rates are each
table's best round; the ratio is the median over rounds of sliding / dummy
ids/s within the round, so both sides of a ratio saw the same batches at
the same time.

Eviction: a table of `--evict_entries` entries (dim 16, SGD), half of them
last updated 10 days before the others, evicted with `MultiHashTable.evict`
(one slot expire time of 5 days): entries removed per second, and the RSS
of the process before filling, after filling and after evicting (after gc
and malloc_trim): how much of the evicted entries' memory went back.

Prints a table, then one JSON line per configuration.
"""

import argparse
import ctypes
import gc
import json
import os
import time
from typing import List

import numpy as np
import tensorflow as tf

from monolith.native_training import entry
from monolith.native_training import hash_filter_ops
from monolith.native_training import multi_hash_table_ops
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1

DIM = 16
DAY = 24 * 3600
MB = 1e6
# The bar: the sliding filter keeps at least this share of the
# dummy filter's apply_gradients rate.
TARGET_FILTER_VS_DUMMY = 0.8


def rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_memory() -> None:
  gc.collect()
  ctypes.CDLL("libc.so.6").malloc_trim(0)


def table_config(expire_days: int = 0) -> entry.HashTableConfigInstance:
  config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(config)
  config.entry_config.segments.append(
      entry.CombineAsSegment(DIM, entry.ZerosInitializer(),
                             entry.SgdOptimizer(), entry.Fp32Compressor()))
  if expire_days:
    config.slot_expire_time_config.default_expire_time = expire_days
  return entry.HashTableConfigInstance(config, [0.01])


def zipf_batches(distinct: int, batch: int, count: int, s: float,
                 seed: int) -> List[np.ndarray]:
  """`count` batches of ids whose rank r has probability ~ r^-s."""
  rng = np.random.default_rng(seed)
  weights = np.arange(1, distinct + 1, dtype=np.float64)**-s
  cdf = np.cumsum(weights)
  cdf /= cdf[-1]
  # Rank -> id: distinct positive ids in random order.
  ids = rng.permutation(distinct).astype(np.int64) * 7919 + 1
  return [
      ids[np.searchsorted(cdf, rng.random(batch))] for _ in range(count)
  ]


def bench_admission(args) -> dict:
  batches = zipf_batches(args.distinct_ids, args.batch,
                         args.warmup_batches + args.rounds * args.timed_batches,
                         1.1, args.seed)
  warmup = batches[:args.warmup_batches]
  rounds = [
      batches[args.warmup_batches + r * args.timed_batches:][:args.timed_batches]
      for r in range(args.rounds)
  ]
  thresholds = embedding_hash_table_pb2.SlotOccurrenceThresholdConfig(
      default_occurrence_threshold=args.threshold).SerializeToString()
  with tf.Graph().as_default():
    filters = {
        "sliding":
            hash_filter_ops.create_hash_filter(args.filter_capacity, 7,
                                               thresholds),
        "dummy":
            hash_filter_ops.create_dummy_hash_filter("bench"),
    }
    ids = tf1.placeholder(tf.int64, [None])
    grads = tf.ones([tf.size(ids), DIM]) * 0.01
    step = tf.constant(0, tf.int64)
    tables, trains = {}, {}
    for name, hash_filter in filters.items():
      tables[name] = multi_hash_table_ops.MultiHashTable.from_configs(
          {"t": table_config()}, hash_filter=hash_filter, name_suffix=name)
      trains[name] = tables[name].apply_gradients({
          "t": (ids, grads)
      }, global_step=step).as_op()
    with tf1.Session() as sess:
      sess.run([t.initializer for t in tables.values()])
      for batch in warmup:
        for name in tables:
          sess.run(trains[name], {ids: batch})
      best = {name: 0.0 for name in tables}
      round_ratios = []
      for timed in rounds:
        elapsed = {name: 0.0 for name in tables}
        for i, batch in enumerate(timed):
          order = list(tables) if i % 2 == 0 else list(reversed(tables))
          for name in order:
            start = time.perf_counter()
            sess.run(trains[name], {ids: batch})
            elapsed[name] += time.perf_counter() - start
        rate = {
            name: len(timed) * args.batch / elapsed[name] for name in tables
        }
        round_ratios.append(rate["sliding"] / rate["dummy"])
        for name in tables:
          best[name] = max(best[name], rate[name])
  return {
      "bench": "hash_filter",
      "op": "apply_gradients",
      "filter": "sliding",
      "threshold": args.threshold,
      "dim": DIM,
      "batch": args.batch,
      "distinct_ids": args.distinct_ids,
      "zipf_s": 1.1,
      "ids_per_s": best["sliding"],
      "peer": "dummy_filter",
      "peer_ids_per_s": best["dummy"],
      "rounds": args.rounds,
      "ratio": float(np.median(round_ratios)),
      "target_ratio": TARGET_FILTER_VS_DUMMY,
  }


def bench_eviction(args) -> dict:
  n = args.evict_entries
  chunk = 65536
  release_memory()
  with tf.Graph().as_default():
    table = multi_hash_table_ops.MultiHashTable.from_configs(
        {"t": table_config(expire_days=5)}, name_suffix="evict")
    ids = tf1.placeholder(tf.int64, [None])
    req_time = tf1.placeholder(tf.int64, [])
    fill = table.assign({
        "t": (ids, tf.ones([tf.size(ids), DIM]))
    }, req_time=req_time).as_op()
    _, evicted = table.evict()
    with tf1.Session() as sess:
      sess.run(table.initializer)
      release_memory()
      rss_empty = rss_bytes()
      for start in range(0, n, chunk):
        batch = np.arange(start, min(start + chunk, n), dtype=np.int64)
        # Alternate chunks are old (day 1) and new (day 11).
        day = 1 if (start // chunk) % 2 == 0 else 11
        sess.run(fill, {ids: batch, req_time: day * DAY})
      release_memory()
      rss_full = rss_bytes()
      start = time.perf_counter()
      removed = int(sess.run(evicted)[0])
      seconds = time.perf_counter() - start
      release_memory()
      rss_evicted = rss_bytes()
  table_bytes = rss_full - rss_empty
  return {
      "bench": "eviction",
      "entries": n,
      "dim": DIM,
      "evicted": removed,
      "seconds": seconds,
      "entries_per_s": removed / seconds,
      "rss_table_mb": table_bytes / MB,
      "rss_recovered_mb": (rss_full - rss_evicted) / MB,
      "recovered_share": (rss_full - rss_evicted) / max(table_bytes, 1),
      "evicted_share": removed / n,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--distinct_ids", type=int, default=1000000)
  parser.add_argument("--batch", type=int, default=65536)
  parser.add_argument("--threshold", type=int, default=3)
  parser.add_argument("--filter_capacity", type=int, default=4000000)
  parser.add_argument("--warmup_batches", type=int, default=30)
  parser.add_argument("--timed_batches", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--evict_entries", type=int, default=4000000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  for name in ("distinct_ids", "batch", "threshold", "filter_capacity",
               "timed_batches", "rounds", "evict_entries"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
  if args.warmup_batches < 0:
    parser.error(f"--warmup_batches must be at least 0, got "
                 f"{args.warmup_batches}")
  tf1.disable_eager_execution()

  admission = bench_admission(args)
  eviction = bench_eviction(args)
  print(f"apply_gradients, dim {DIM}, batch {args.batch}, "
        f"{args.distinct_ids} ids Zipf 1.1, threshold {args.threshold}:")
  print(f"  {'filter':<10} {'M ids/s':>8}")
  print(f"  {'sliding':<10} {admission['ids_per_s'] / 1e6:>8.2f}")
  print(f"  {'dummy':<10} {admission['peer_ids_per_s'] / 1e6:>8.2f}")
  print(f"  ratio {admission['ratio']:.2f}, median of {args.rounds} rounds "
        f"(bar >= "
        f"{TARGET_FILTER_VS_DUMMY})")
  print(f"eviction of {eviction['evicted']} of {eviction['entries']} entries "
        f"(dim {DIM}): {eviction['seconds']:.2f} s, "
        f"{eviction['entries_per_s'] / 1e6:.2f} M entries/s; RSS of the "
        f"table {eviction['rss_table_mb']:.0f} MB, "
        f"{eviction['rss_recovered_mb']:.0f} MB given back "
        f"({eviction['recovered_share']:.0%})")
  for line in (admission, eviction):
    print(json.dumps(line))


if __name__ == "__main__":
  main()
