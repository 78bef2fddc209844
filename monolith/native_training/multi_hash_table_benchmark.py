"""Benchmark of MultiHashTable through session.run, beside TF's hash tables.

    bazel run -c opt //monolith/native_training:multi_hash_table_benchmark

8 tables holding 1,000,000 random int64 ids in total (125,000 each), adagrad
entries, at dim 16 and 64; every session.run carries 65,536 ids spread
evenly over the 8 tables (8,192 each, fed as one int64 array per table).
Measured through `session.run` in one process, each peer right after ours,
best of --repeats rounds (inserts, which fill the structures, once each);
the lookup ratio against each peer is also given as the median over rounds
of the ratio within a round (ours and the peer back to back), which a busy
neighbour on a shared VM moves less than the best-of rates:

* insert: filling the 1M ids (MultiHashTable.assign; the peers' insert);
* lookup: MultiHashTable.lookup, and the peers' lookup of the same ids;
* apply_gradients (adagrad), ours only;
* update: assign to existing ids (ours) and insert of existing keys (peers);
* ours as two calls of 4 tables each (two kernels, which TF runs at once on
  its 2 inter-op threads; one call runs its tables one after the other on
  one thread): what a kernel running its tables in parallel could reach;
* a profile of ours: the same lookup fed as one pre-built ragged tensor
  (raw_lookup, the joined op, as serving graphs and PS tasks use it), an
  empty session.run with the same feeds, and per-op times from a
  FULL_TRACE.

The peers are tf.lookup.experimental.DenseHashTable (empty_key -1,
deleted_key -2) and tf.lookup.experimental.MutableHashTable, key int64,
value float32 [dim], each in two layouts: "per_slot" (8 tables, like ours;
TF may run the 8 ops on its 2 inter-op threads at once) and "single" (one
table with all 1M ids; each batch is concatenated, looked up with one op
and split back per slot, the work MultiHashTable.lookup did before it
handed each table's ids to the kernel apart).

Bytes per entry: RSS growth (/proc/self/statm) while inserting the 1M ids
into a fresh structure, each in its own subprocess, after gc and malloc_trim;
the subprocess first runs the same structure on a few ids in a throwaway
session, so lazily built TF state is not counted. TF's default CPU allocator
(oneDNN's pool, on by default in x86 builds) keeps the buffers a
DenseHashTable frees when it rehashes, and they count; the Dense tables'
bucket bytes (8-byte key + dim floats per bucket) are printed beside. Ours is
also measured with SGD entries (no optimizer state), whose payload is the
peers' (id + dim floats) plus our 4-byte update time.

Save / restore: MultiHashTable.save of the filled table and restore into a
fresh one (and once into SERVING tables, which keep only the values, as an
exported model restores it), checkpoint bytes on disk / seconds, beside
shutil.copyfile of the checkpoint's files (the same bytes) in the same run,
for SNAPPY shards (the original's format, the default) and uncompressed
ones (compression_type=""). The save fsyncs its shards and folder (as
every save does); the copy does not.

Prints a table, then one JSON line per (dim, peer, layout) and one per
(dim, compression) for save/restore.
"""

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from monolith.native_training import benchmark_workload as workload
from monolith.native_training import entry
from monolith.native_training import multi_hash_table_ops
from monolith.native_training.runtime.hash_table import \
    embedding_hash_table_pb2

tf1 = tf.compat.v1

TABLES = workload.TABLES
EMPTY_KEY = -1
DELETED_KEY = -2
MB = 1e6

# Structure names: ours, then the peers as (class, layout).
OURS = "MultiHashTable"
PEERS = [("DenseHashTable", "per_slot"), ("DenseHashTable", "single"),
         ("MutableHashTable", "per_slot"), ("MutableHashTable", "single")]

# Acceptance bar (the targets).
TARGET_LOOKUP_VS_DENSE = 1.5
TARGET_BYTES_VS_DENSE = 1 / 3
TARGET_APPLY_VS_LOOKUP = 0.4
TARGET_SAVE_VS_COPY = 0.5


def table_names() -> List[str]:
  return [f"slot_{t}" for t in range(TABLES)]


def table_config(dim: int,
                 optimizer: str,
                 serving: bool = False) -> entry.HashTableConfigInstance:
  """Entries of one fp32 segment; SERVING ones keep only the values."""
  config = embedding_hash_table_pb2.EmbeddingHashTableConfig()
  entry.CuckooHashTableConfig().mutate_table(config)
  opt = (entry.AdagradOptimizer()
         if optimizer == "adagrad" else entry.SgdOptimizer())
  config.entry_config.segments.append(
      entry.CombineAsSegment(dim, entry.ZerosInitializer(), opt,
                             entry.Fp32Compressor()))
  if serving:
    config.entry_config.entry_type = (
        embedding_hash_table_pb2.EntryConfig.SERVING)
  return entry.HashTableConfigInstance(config, [0.01])


class Graph:
  """Ops of one structure (ours or a peer) over per-slot id placeholders."""

  def __init__(self,
               name: str,
               fill: tf.Operation,
               lookup: tf.Operation,
               update: tf.Operation,
               apply: tf.Operation = None,
               init: List[tf.Operation] = (),
               table: multi_hash_table_ops.MultiHashTable = None,
               num_buckets: tf.Tensor = None):
    self.name = name
    self.fill = fill  # inserts a fill batch
    self.lookup = lookup
    self.update = update  # assigns / inserts ids that exist
    self.apply = apply  # apply_gradients (ours only)
    self.init = list(init)
    self.table = table  # ours only
    self.num_buckets = num_buckets  # DenseHashTable only


def sized_rows(names, placeholders, rows: tf.Tensor):
  """{name: (ids, the first len(ids) of `rows`)}: values or gradients made
  at run time, as the peers' are. Whole constants would let TF fold the
  join of the tables' rows into one constant when the graph is set up, a
  copy the table's callers pay each step (15-25 % of an apply here)."""
  return {
      name: (ph, rows[:tf.size(ph)]) for name, ph in zip(names, placeholders)
  }


def build_ours(dim: int, placeholders, values, grads, optimizer="adagrad",
               suffix="") -> Graph:
  names = table_names()
  table = multi_hash_table_ops.MultiHashTable.from_configs(
      {name: table_config(dim, optimizer) for name in names},
      name_suffix=f"bench_{dim}_{optimizer}{suffix}")
  assign = table.assign(sized_rows(names, placeholders, values)).as_op()
  lookup = tf.group(*table.lookup(dict(zip(names, placeholders))).values())
  apply = table.apply_gradients(
      sized_rows(names, placeholders, grads),
      global_step=tf.constant(1, tf.int64)).as_op()
  return Graph(OURS,
               fill=assign,
               lookup=lookup,
               update=assign,
               apply=apply,
               init=[table.initializer],
               table=table)


def build_peer(kind: str,
               layout: str,
               dim: int,
               placeholders,
               values,
               initial_num_buckets: int = None) -> Graph:
  tables = []

  def new_table(name):
    default = tf.zeros([dim], tf.float32)
    if kind == "DenseHashTable":
      table = tf.lookup.experimental.DenseHashTable(
          key_dtype=tf.int64, value_dtype=tf.float32, default_value=default,
          empty_key=EMPTY_KEY, deleted_key=DELETED_KEY, name=name,
          initial_num_buckets=initial_num_buckets)
      tables.append(table)
      return table
    return tf.lookup.experimental.MutableHashTable(
        key_dtype=tf.int64, value_dtype=tf.float32, default_value=default,
        name=name)

  prefix = f"{kind}_{layout}_{dim}"
  if layout == "per_slot":
    slot_tables = [new_table(f"{prefix}_{t}") for t in range(TABLES)]
    insert = tf.group(*[
        table.insert(ph, values[:tf.size(ph)])
        for table, ph in zip(slot_tables, placeholders)
    ])
    lookup = tf.group(
        *[table.lookup(ph) for table, ph in zip(slot_tables, placeholders)])
  else:
    table = new_table(prefix)
    all_ids = tf.concat(placeholders, axis=0)
    all_values = tf.concat([values[:tf.size(ph)] for ph in placeholders],
                           axis=0)
    insert = table.insert(all_ids, all_values)
    found = table.lookup(all_ids)
    lookup = tf.group(
        *tf.split(found, [tf.size(ph) for ph in placeholders], axis=0))
  # DenseHashTable's bucket count (its export has one row per bucket).
  num_buckets = (tf.add_n([tf.size(t.export()[0]) for t in tables])
                 if tables else None)
  return Graph(f"{kind}/{layout}",
               fill=insert,
               lookup=lookup,
               update=insert,
               num_buckets=num_buckets)


def fill_rate(sess, op, placeholders, data: workload.Data) -> float:
  seconds = workload.timed_runs(
      sess, op, [workload.feed(placeholders, b) for b in data.fill_batches])
  return data.ids / seconds


def new_session() -> tf1.Session:
  return tf1.Session(config=tf1.ConfigProto())


# ---------------------------------------------------------------------------
# Bytes per entry, one fresh subprocess per structure.


def build_structure(structure: str, dim: int, data: workload.Data,
                    initial_num_buckets=None):
  """Placeholders and the Graph of `structure` ("MultiHashTable:adagrad",
  "DenseHashTable/per_slot", ...) in the default graph."""
  placeholders = [
      tf1.placeholder(tf.int64, [None], name=f"ids_{t}") for t in range(TABLES)
  ]
  values = tf.constant(np.full([data.per_table_batch, dim], 0.5, np.float32))
  if structure.startswith(OURS):
    optimizer = structure.split(":")[1]
    grads = tf.constant(
        np.full([data.per_table_batch, dim], 0.01, np.float32))
    return placeholders, build_ours(dim, placeholders, values, grads,
                                    optimizer)
  kind, layout = structure.split("/")
  return placeholders, build_peer(kind, layout, dim, placeholders, values,
                                  initial_num_buckets)


def warm_up_and_build(structure: str, dim: int, data: workload.Data):
  """Builds `structure` in the default graph after a warm-up.

  The warm-up runs the same structure with a few ids (and 8-bucket Dense
  tables) in a throwaway graph and session, so kernels and TF's lazily built
  globals exist before a memory baseline, and no large freed buffer of the
  warm-up is left for the measured tables to reuse (TF's CPU allocator keeps
  freed buffers in its pool).
  """
  with tf.Graph().as_default():
    placeholders, graph = build_structure(structure, dim, data, 8)
    with new_session() as sess:
      sess.run(graph.init)
      sess.run(graph.fill,
               feed_dict=workload.feed(placeholders,
                              [ids[:4] for ids in data.fill_batches[0]]))
  workload.release_memory()
  built = build_structure(structure, dim, data)
  workload.release_memory()
  return built


def memory_child(structure: str, dim: int, ids_per_table: int, batch: int):
  """Prints the bytes per entry of |structure| at |dim| as JSON."""
  tf1.disable_eager_execution()
  data = workload.Data(dim, ids_per_table, batch, lookup_batches=0)
  placeholders, graph = warm_up_and_build(structure, dim, data)
  before = workload.rss_bytes()
  with new_session() as sess:
    sess.run(graph.init)
    for b in data.fill_batches:
      sess.run(graph.fill, feed_dict=workload.feed(placeholders, b))
    workload.release_memory()
    after = workload.rss_bytes()
    result = {"bytes_per_entry": (after - before) / data.ids}
    if graph.num_buckets is not None:
      # What the buckets themselves hold: key + dim floats per bucket.
      buckets = int(sess.run(graph.num_buckets))
      result["buckets"] = buckets
      result["bucket_bytes_per_entry"] = buckets * (8 + 4 * dim) / data.ids
  print(json.dumps(result))


def bytes_per_entry(structure: str, dim: int, args) -> Dict:
  cmd = [
      sys.executable,
      os.path.abspath(__file__), "--memory_child", structure, "--dims",
      str(dim), "--ids_per_table",
      str(args.ids_per_table), "--batch",
      str(args.batch)
  ]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env=env)
  last = out.stdout.decode().strip().splitlines()[-1]
  return json.loads(last)


# ---------------------------------------------------------------------------
# Scale curve: one fresh subprocess per (structure, table size).

SCALE_STRUCTURES = [
    OURS + ":adagrad", OURS + ":sgd", "DenseHashTable/per_slot",
    "MutableHashTable/per_slot"
]
GIB = 1 << 30
TARGET_SCALE_LOOKUP_VS_DENSE = 2.0
TARGET_SCALE_BYTES_DRIFT = 0.10


def projected_bytes(structure: str, dim: int, ids: int) -> float:
  """A guess, a little above what was measured, at a scale child's peak
  memory, to skip what would not fit.

  Per entry: ours, the entry plus ~32 bytes of slots; DenseHashTable, key and
  values in a power-of-two bucket array at most 80 % full (x2.8 measured),
  plus one table's rehash at a time; MutableHashTable, a map node and the
  values on the heap. Plus 16 bytes per id of workload arrays and 1 GiB for
  TensorFlow.
  """
  values = 4 * dim
  per_entry = {
      OURS + ":adagrad": 2 * values + 48,
      OURS + ":sgd": values + 48,
      "DenseHashTable/per_slot": 3 * (8 + values),
      "MutableHashTable/per_slot": values + 96,
  }[structure]
  return ids * (per_entry + 16) + GIB


def mem_available() -> int:
  with open("/proc/meminfo") as f:
    for line in f:
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) * 1024
  return 0


def scale_child(structure: str, dim: int, args):
  """Fills `structure` with args.ids_per_table ids per table, then times its
  lookups, updates (and ours' apply_gradients); prints one JSON object."""
  tf1.disable_eager_execution()
  data = workload.Data(dim, args.ids_per_table, args.batch, args.lookup_batches)
  placeholders, graph = warm_up_and_build(structure, dim, data)
  before = workload.rss_bytes()
  result = {}
  with new_session() as sess:
    sess.run(graph.init)
    result["insert_ids_per_s"] = fill_rate(sess, graph.fill, placeholders,
                                           data)
    workload.release_memory()
    result["bytes_per_entry"] = (workload.rss_bytes() - before) / data.ids
    feeds = [workload.feed(placeholders, b) for b in data.lookup_batches]
    ops = {"lookup": graph.lookup, "update": graph.update}
    if graph.apply is not None:
      ops["apply_gradients"] = graph.apply
    for op in ops.values():
      sess.run(op, feed_dict=feeds[0])
    best = collections.defaultdict(lambda: float("inf"))
    for _ in range(args.repeats):
      for name, op in ops.items():
        best[name] = min(best[name], workload.timed_runs(sess, op, feeds))
    for name, seconds in best.items():
      result[f"{name}_ids_per_s"] = data.batch * len(feeds) / seconds
  print(json.dumps(result))


def run_scale_point(structure: str, dim: int, ids: int, args) -> Dict:
  """One scale child's result, or {"skipped": why} (with "failed": True
  where the child failed, which fails the benchmark)."""
  need = projected_bytes(structure, dim, ids)
  have = mem_available()
  if need > 0.9 * have:
    return {
        "skipped": f"needs ~{need / GIB:.1f} GiB, "
                   f"{have / GIB:.1f} GiB available"
    }
  cmd = [
      sys.executable,
      os.path.abspath(__file__), "--scale_child", structure, "--dims",
      str(dim), "--ids_per_table",
      str(ids // TABLES), "--batch",
      str(args.batch), "--lookup_batches",
      str(args.lookup_batches), "--repeats",
      str(args.repeats)
  ]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  out = subprocess.run(cmd, stdout=subprocess.PIPE, env=env)
  if out.returncode != 0:
    return {"skipped": f"the child exited with {out.returncode}",
            "failed": True}
  return json.loads(out.stdout.decode().strip().splitlines()[-1])


def run_scale(dims: List[int], args) -> List[Dict]:
  """The scale curve: every structure at every size, one after another."""
  points = []
  for dim in dims:
    # Smallest first: bytes_per_entry_vs_smallest divides by the first.
    for ids in sorted(args.scale_ids):
      point = {"dim": dim, "ids": ids // TABLES * TABLES, "results": {}}
      for structure in SCALE_STRUCTURES:
        start = time.perf_counter()
        r = run_scale_point(structure, dim, ids, args)
        point["results"][structure] = r
        print(f"scale dim {dim} ids {ids:,} {structure}: {json.dumps(r)} "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr,
              flush=True)
      points.append(point)
  return points


def scale_lines(points: List[Dict], args) -> List[Dict]:
  """One JSON line per (dim, size, peer): ours (adagrad) beside the peer."""
  lines = []
  first_bytes = {}
  for p in points:
    ours = p["results"][OURS + ":adagrad"]
    sgd = p["results"][OURS + ":sgd"]
    point = {
        "bench": "multi_hash_table_scale",
        "dim": p["dim"],
        "tables": TABLES,
        "ids": p["ids"],
        "batch": args.batch,
        "optimizer": "adagrad",
        "repeats": args.repeats,
    }
    if "skipped" in ours:
      # Said in the table, not left out (the sizing line would quietly
      # move to a smaller point).
      lines.append(dict(point, skipped=ours["skipped"]))
      continue
    first_bytes.setdefault(p["dim"], ours["bytes_per_entry"])
    for structure in SCALE_STRUCTURES[2:]:
      peer = p["results"][structure]
      kind, layout = structure.split("/")
      line = {
          **point,
          "insert_ids_per_s": round(ours["insert_ids_per_s"]),
          "lookup_ids_per_s": round(ours["lookup_ids_per_s"]),
          "update_ids_per_s": round(ours["update_ids_per_s"]),
          "apply_gradients_ids_per_s": round(
              ours["apply_gradients_ids_per_s"]),
          "insert_ratio_vs_lookup": round(
              ours["insert_ids_per_s"] / ours["lookup_ids_per_s"], 3),
          "bytes_per_entry": round(ours["bytes_per_entry"], 1),
          "bytes_per_entry_vs_smallest": round(
              ours["bytes_per_entry"] / first_bytes[p["dim"]], 3),
          "payload_bytes_per_entry": 8 + 2 * 4 * p["dim"],
          "sgd_bytes_per_entry": (round(sgd["bytes_per_entry"], 1)
                                  if "skipped" not in sgd else None),
          "sgd_payload_bytes_per_entry": 8 + 4 * p["dim"],
          "peer": kind,
          "peer_layout": layout,
      }
      if "skipped" in peer:
        line["peer_skipped"] = peer["skipped"]
      else:
        line.update({
            "peer_insert_ids_per_s": round(peer["insert_ids_per_s"]),
            "peer_lookup_ids_per_s": round(peer["lookup_ids_per_s"]),
            "peer_update_ids_per_s": round(peer["update_ids_per_s"]),
            "peer_bytes_per_entry": round(peer["bytes_per_entry"], 1),
            "lookup_ratio": round(
                ours["lookup_ids_per_s"] / peer["lookup_ids_per_s"], 3),
            "insert_ratio": round(
                ours["insert_ids_per_s"] / peer["insert_ids_per_s"], 3),
        })
      lines.append(line)
  return lines


def report_scale(points: List[Dict], lines: List[Dict]):
  print()
  print(f"Scale curve through session.run ({TABLES} tables, ids/s; "
        "B/entry: RSS growth / entries; each structure in its own process):")
  row = "%-4s %-11s %-26s %9s %9s %9s %9s %9s"
  print(row % ("dim", "ids", "structure", "insert/s", "lookup/s",
               "update/s", "apply/s", "B/entry"))
  for p in points:
    for structure, r in p["results"].items():
      if "skipped" in r:
        print(f"{p['dim']:<4} {p['ids']:<11,} {structure:<26} skipped: "
              f"{r['skipped']}")
        continue
      print(row % (p["dim"], f"{p['ids']:,}", structure,
                   m(r["insert_ids_per_s"]), m(r["lookup_ids_per_s"]),
                   m(r["update_ids_per_s"]),
                   m(r["apply_gradients_ids_per_s"])
                   if "apply_gradients_ids_per_s" in r else "",
                   f"{r['bytes_per_entry']:.1f}"))
  print()
  print("Targets at 16 M ids and more:")
  for l in lines:
    if "skipped" in l:
      print(f"  dim {l['dim']} {l['ids']:,}: not measured ({l['skipped']})")
      continue
    if l["ids"] < 16_000_000 or l["peer"] != "DenseHashTable":
      continue
    if "lookup_ratio" in l:
      print(f"  dim {l['dim']} {l['ids']:,}: lookup vs DenseHashTable "
            f"{l['lookup_ratio']:.2f}x (>= {TARGET_SCALE_LOOKUP_VS_DENSE}x: "
            f"{verdict(l['lookup_ratio'] >= TARGET_SCALE_LOOKUP_VS_DENSE)})")
    growth = l["bytes_per_entry_vs_smallest"] - 1
    print(f"  dim {l['dim']} {l['ids']:,}: bytes/entry "
          f"{l['bytes_per_entry_vs_smallest']:.3f}x the smallest size's "
          f"(at most {TARGET_SCALE_BYTES_DRIFT:.0%} more: "
          f"{verdict(growth <= TARGET_SCALE_BYTES_DRIFT)})")


# ---------------------------------------------------------------------------
# Throughput.


def op_times(sess, op, fd, runs: int) -> Dict[str, float]:
  """Mean microseconds per run of each op type, from FULL_TRACE step stats."""
  totals = collections.defaultdict(float)
  options = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE)
  for _ in range(runs):
    metadata = tf1.RunMetadata()
    sess.run(op, feed_dict=fd, options=options, run_metadata=metadata)
    for dev in metadata.step_stats.dev_stats:
      for node in dev.node_stats:
        kind = node.timeline_label.split("(")[0].split(" = ")[-1].strip()
        kind = kind or node.node_name
        totals[kind] += node.all_end_rel_micros
  return {k: v / runs for k, v in totals.items()}


def run_dim(dim: int, args) -> Dict:
  tf1.reset_default_graph()
  data = workload.Data(dim, args.ids_per_table, args.batch, args.lookup_batches)
  placeholders = [
      tf1.placeholder(tf.int64, [None], name=f"ids_{t}") for t in range(TABLES)
  ]
  values = tf.constant(np.full([data.per_table_batch, dim], 0.5, np.float32))
  grads = tf.constant(np.full([data.per_table_batch, dim], 0.01, np.float32))
  ours = build_ours(dim, placeholders, values, grads)
  peers = [
      build_peer(kind, layout, dim, placeholders, values)
      for kind, layout in PEERS
  ]
  # Profile ops: the lookup kernel fed one pre-built ragged id tensor, and
  # an empty session.run with the same per-slot feeds.
  flat_ph = tf1.placeholder(tf.int64, [None], name="flat_ids")
  splits_ph = tf1.placeholder(tf.int64, [TABLES + 1], name="row_splits")
  raw_lookup = ours.table.raw_lookup(
      tf.RaggedTensor.from_row_splits(flat_ph, splits_ph, validate=False))
  raw_lookup_op = tf.group(raw_lookup)
  empty_op = tf.group(*[tf.size(ph) for ph in placeholders])
  # The same work as two API calls of 4 tables each: two kernels that TF
  # runs at once on its 2 inter-op threads (one call runs its tables on one
  # thread, one after the other).
  names = table_names()
  halves = [slice(0, TABLES // 2), slice(TABLES // 2, TABLES)]
  split_lookup_op = tf.group(*[
      v for h in halves for v in ours.table.lookup(
          dict(zip(names[h], placeholders[h]))).values()
  ])
  split_apply_op = tf.group(*[
      ours.table.apply_gradients(
          sized_rows(names[h], placeholders[h], grads),
          global_step=tf.constant(1, tf.int64)).as_op() for h in halves
  ])

  lookup_feeds = [workload.feed(placeholders, b) for b in data.lookup_batches]
  raw_feeds = []
  for b in data.lookup_batches:
    splits = np.concatenate([[0], np.cumsum([ids.size for ids in b])])
    raw_feeds.append({flat_ph: np.concatenate(b), splits_ph: splits})
  batch_ids = data.batch * len(lookup_feeds)

  result = {"dim": dim, "ids": data.ids, "batch": data.batch}
  with new_session() as sess:
    sess.run(ours.init)
    result["insert"] = {OURS: fill_rate(sess, ours.fill, placeholders, data)}
    for peer in peers:
      result["insert"][peer.name] = fill_rate(sess, peer.fill, placeholders,
                                              data)
    # Warm-up of every measured op.
    for op in [
        ours.lookup, ours.apply, ours.update, empty_op, split_lookup_op,
        split_apply_op
    ] + [
        p.lookup for p in peers
    ] + [p.update for p in peers]:
      sess.run(op, feed_dict=lookup_feeds[0])
    sess.run(raw_lookup_op, feed_dict=raw_feeds[0])

    best = collections.defaultdict(lambda: float("inf"))
    # Per peer, ours / its lookup rate within each round: on a shared VM a
    # round's neighbours move both, best-of rates each on its own.
    round_ratios = collections.defaultdict(list)

    def measure(key, op, feeds):
      seconds = workload.timed_runs(sess, op, feeds)
      best[key] = min(best[key], seconds)
      return seconds

    for _ in range(args.repeats):
      # Ours, then each peer right after, in every round.
      ours_seconds = measure(("lookup", OURS), ours.lookup, lookup_feeds)
      for peer in peers:
        peer_seconds = measure(("lookup", peer.name), peer.lookup,
                               lookup_feeds)
        round_ratios[peer.name].append(peer_seconds / ours_seconds)
      measure(("apply", OURS), ours.apply, lookup_feeds)
      measure(("update", OURS), ours.update, lookup_feeds)
      for peer in peers:
        measure(("update", peer.name), peer.update, lookup_feeds)
      measure(("raw_lookup", OURS), raw_lookup_op, raw_feeds)
      measure(("lookup_2calls", OURS), split_lookup_op, lookup_feeds)
      measure(("apply_2calls", OURS), split_apply_op, lookup_feeds)
      measure(("empty_run", OURS), empty_op, lookup_feeds)
    result["rates"] = {k: batch_ids / s for k, s in best.items()}
    result["median_round_lookup_ratio"] = {
        name: statistics.median(ratios)
        for name, ratios in round_ratios.items()
    }
    result["empty_run_us"] = best[("empty_run", OURS)] / len(
        lookup_feeds) * 1e6
    result["profile"] = {
        "lookup": op_times(sess, ours.lookup, lookup_feeds[0], 5),
        "apply": op_times(sess, ours.apply, lookup_feeds[0], 5),
        "dense_single_lookup": op_times(sess, peers[1].lookup,
                                        lookup_feeds[0], 5),
        "dense_per_slot_lookup": op_times(sess, peers[0].lookup,
                                          lookup_feeds[0], 5),
    }
  workload.release_memory()
  return result


# ---------------------------------------------------------------------------
# Save / restore.


def checkpoint_files(basename: str) -> List[str]:
  directory = os.path.dirname(basename)
  prefix = os.path.basename(basename)
  return sorted(
      os.path.join(directory, f)
      for f in os.listdir(directory)
      if f.startswith(prefix))


def remove_files(paths):
  for p in paths:
    if os.path.exists(p):
      os.remove(p)


def run_save_restore(dim: int, args, workdir: str,
                     compression_type: str) -> Dict:
  tf1.reset_default_graph()
  label = compression_type or "none"
  data = workload.Data(dim, args.ids_per_table, args.batch, lookup_batches=1)
  placeholders = [
      tf1.placeholder(tf.int64, [None], name=f"ids_{t}") for t in range(TABLES)
  ]
  # Random values and gradients: checkpoints are snappy compressed, and
  # constant embeddings would compress far better than trained ones.
  rng = np.random.default_rng(dim)
  values = tf1.placeholder(tf.float32, [data.per_table_batch, dim])
  grads = tf.constant(
      rng.normal(0, 0.01, [data.per_table_batch, dim]).astype(np.float32))
  source = build_ours(dim, placeholders, values, grads, suffix=f"_{label}")
  # One fresh table per restore measurement.
  targets = [
      build_ours(dim, placeholders, values, grads,
                 suffix=f"_{label}_restore{r}")
      for r in range(args.restore_repeats)
  ]
  basename_ph = tf1.placeholder(tf.string, [], name="basename")
  save_op = source.table.save(basename_ph,
                              compression_type=compression_type).as_op()
  restore_ops = [t.table.restore(basename_ph).as_op() for t in targets]
  # What an exported model does: restore the training checkpoint into
  # SERVING tables (values only).
  serving = multi_hash_table_ops.MultiHashTable.from_configs(
      {name: table_config(dim, "adagrad", serving=True)
       for name in table_names()},
      name_suffix=f"bench_{dim}_{label}_serving")
  serving_restore = serving.restore(basename_ph).as_op()
  check_ids = dict(zip(table_names(), placeholders))
  source_lookup = source.table.lookup(check_ids)
  target_lookups = [t.table.lookup(check_ids) for t in targets
                   ] + [serving.lookup(check_ids)]

  ckpt_dir = os.path.join(workdir, f"dim{dim}_{label}")
  os.makedirs(ckpt_dir)
  basename = os.path.join(ckpt_dir, "mtable")
  copy_dir = os.path.join(workdir, f"dim{dim}_{label}_copy")
  os.makedirs(copy_dir)
  result = {"dim": dim, "compression_type": compression_type, "ids": data.ids}
  best = collections.defaultdict(lambda: float("inf"))
  with new_session() as sess:
    sess.run(source.init + sum([t.init for t in targets], []) +
             [serving.initializer])
    for b in data.fill_batches:
      fd = workload.feed(placeholders, b)
      fd[values] = rng.normal(0, 0.05, [data.per_table_batch,
                                        dim]).astype(np.float32)
      sess.run(source.fill, feed_dict=fd)
    # One adagrad step, so the accumulators are not their initial values.
    sess.run(source.apply, feed_dict=workload.feed(placeholders,
                                          data.lookup_batches[0]))
    files = []
    for _ in range(args.save_repeats):
      remove_files(files)
      start = time.perf_counter()
      sess.run(save_op, feed_dict={basename_ph: basename})
      best["save"] = min(best["save"], time.perf_counter() - start)
      files = checkpoint_files(basename)
      # The plain copy of the same bytes, right after.
      copies = [os.path.join(copy_dir, os.path.basename(f)) for f in files]
      remove_files(copies)
      start = time.perf_counter()
      for src, dst in zip(files, copies):
        shutil.copyfile(src, dst)
      best["copy"] = min(best["copy"], time.perf_counter() - start)
      remove_files(copies)
    ckpt_bytes = sum(os.path.getsize(f) for f in files)
    for restore_op in restore_ops:
      start = time.perf_counter()
      sess.run(restore_op, feed_dict={basename_ph: basename})
      best["restore"] = min(best["restore"], time.perf_counter() - start)
    start = time.perf_counter()
    sess.run(serving_restore, feed_dict={basename_ph: basename})
    best["serving_restore"] = time.perf_counter() - start
    # The restored tables hold what was saved.
    fd = workload.feed(placeholders, data.lookup_batches[0])
    expected = sess.run(source_lookup, feed_dict=fd)
    for lookup in target_lookups:
      got = sess.run(lookup, feed_dict=fd)
      for name in expected:
        np.testing.assert_array_equal(expected[name], got[name])
  shutil.rmtree(ckpt_dir)
  shutil.rmtree(copy_dir)
  result.update({
      "shards": len([f for f in files if ".meta-" not in f]),
      "ckpt_bytes": ckpt_bytes,
      "ckpt_bytes_per_entry": ckpt_bytes / data.ids,
      "save_mb_per_s": ckpt_bytes / MB / best["save"],
      "restore_mb_per_s": ckpt_bytes / MB / best["restore"],
      "serving_restore_mb_per_s": ckpt_bytes / MB / best["serving_restore"],
      "copy_mb_per_s": ckpt_bytes / MB / best["copy"],
      "save_s": best["save"],
      "restore_s": best["restore"],
      "serving_restore_s": best["serving_restore"],
      "copy_s": best["copy"],
  })
  result["save_ratio_vs_copy"] = result["save_mb_per_s"] / result[
      "copy_mb_per_s"]
  result["restore_ratio_vs_copy"] = result["restore_mb_per_s"] / result[
      "copy_mb_per_s"]
  workload.release_memory()
  return result


# ---------------------------------------------------------------------------
# Report.


def m(rate: float) -> str:
  return f"{rate / 1e6:.2f} M"


def verdict(ok: bool) -> str:
  return "holds" if ok else "MISSED"


ROW = "%-4s %-30s %9s %9s %9s %9s %8s %13s %10s"


def report_throughput(results: List[Dict], args):
  print()
  print(f"MultiHashTable through session.run: {TABLES} tables, "
        f"{results[0]['ids']:,} ids, {results[0]['batch']:,} ids per run, "
        f"best of {args.repeats} rounds of {args.lookup_batches} runs; "
        "ids/s; B/entry: RSS growth / entries")
  print(ROW % ("dim", "structure", "insert/s", "lookup/s", "adagrad/s",
               "update/s", "B/entry", "ours/peer", "ours/peer"))
  print(ROW % ("", "", "", "", "", "", "", "lookup (med)", "B/entry"))
  for r in results:
    dim = r["dim"]
    rates = r["rates"]
    ours_lookup = rates[("lookup", OURS)]
    ours_bytes = r["bytes"][OURS + ":adagrad"]
    print(ROW % (dim, OURS + " (adagrad)", m(r["insert"][OURS]),
                 m(ours_lookup), m(rates[("apply", OURS)]),
                 m(rates[("update", OURS)]), _cell(ours_bytes, 1), "", ""))
    for kind, layout in PEERS:
      name = f"{kind}/{layout}"
      lookup = rates[("lookup", name)]
      print(ROW % (dim, name, m(r["insert"][name]), m(lookup), "",
                   m(rates[("update", name)]), _cell(r["bytes"][name], 1),
                   f"{ours_lookup / lookup:.2f} "
                   f"({r['median_round_lookup_ratio'][name]:.2f})",
                   _cell(_ratio(ours_bytes, r["bytes"][name]), 2)))
    print(ROW % (dim, OURS + " (sgd entries)", "", "", "", "",
                 _cell(r["bytes"][OURS + ":sgd"], 1), "", ""))
    print(ROW % (dim, OURS + " 2 calls x 4 tables", "",
                 m(rates[("lookup_2calls", OURS)]),
                 m(rates[("apply_2calls", OURS)]), "", "", "", ""))
    print(ROW % (dim, OURS + " raw_lookup", "", m(rates[("raw_lookup", OURS)]),
                 "", "", "", "", ""))
    for layout in ("single", "per_slot"):
      name = f"DenseHashTable/{layout}"
      if name in r["bucket_bytes"]:
        print(f"{'':4} {name} buckets (8-byte key + {dim} floats each): "
              f"{r['bucket_bytes'][name]:.1f} B/entry")
    print(f"{'':4} empty session.run with the same feeds: "
          f"{r['empty_run_us']:.0f} us")


def report_saves(saves: List[Dict]):
  print()
  print("Save / restore of MultiHashTable beside shutil.copyfile of the "
        "checkpoint's files (MB = 1e6 bytes; the save fsyncs, the copy "
        "does not):")
  print("(serving restore: the same checkpoint into SERVING tables, as an "
        "exported model restores it)")
  row = "%-4s %-8s %7s %9s %10s %10s %12s %14s %10s %10s %12s"
  print(row % ("dim", "compress", "shards", "ckpt MB", "B/entry",
               "save MB/s", "restore MB/s", "serving MB/s", "copy MB/s",
               "save/copy", "restore/copy"))
  for s in saves:
    print(row % (s["dim"], s["compression_type"] or "none", s["shards"],
                 f"{s['ckpt_bytes'] / MB:.1f}",
                 f"{s['ckpt_bytes_per_entry']:.1f}",
                 f"{s['save_mb_per_s']:.1f}", f"{s['restore_mb_per_s']:.1f}",
                 f"{s['serving_restore_mb_per_s']:.1f}",
                 f"{s['copy_mb_per_s']:.1f}", f"{s['save_ratio_vs_copy']:.3f}",
                 f"{s['restore_ratio_vs_copy']:.3f}"))


def report_targets(results: List[Dict], saves: List[Dict]):
  print()
  print("Targets (ours = one MultiHashTable.lookup / apply_gradients call):")
  for r in results:
    ours_lookup = r["rates"][("lookup", OURS)]
    ours_bytes = r["bytes"][OURS + ":adagrad"]
    for layout in ("single", "per_slot"):
      name = f"DenseHashTable/{layout}"
      ratio = ours_lookup / r["rates"][("lookup", name)]
      mem = _ratio(ours_bytes, r["bytes"][name])
      memory = ("bytes/entry not measured (--parts without memory)"
                if mem is None else
                f"bytes/entry {mem:.2f}x its (< {TARGET_BYTES_VS_DENSE:.3f}x: "
                f"{verdict(mem < TARGET_BYTES_VS_DENSE)})")
      print(f"  dim {r['dim']}: lookup vs {name}: {ratio:.2f}x "
            f"(>= {TARGET_LOOKUP_VS_DENSE}x: "
            f"{verdict(ratio >= TARGET_LOOKUP_VS_DENSE)}); {memory}")
    apply_ratio = r["rates"][("apply", OURS)] / ours_lookup
    print(f"  dim {r['dim']}: apply_gradients / lookup: {apply_ratio:.2f} "
          f"(>= {TARGET_APPLY_VS_LOOKUP}: "
          f"{verdict(apply_ratio >= TARGET_APPLY_VS_LOOKUP)})")
  for s in saves:
    print(f"  dim {s['dim']} {s['compression_type'] or 'uncompressed'}: "
          f"save / plain copy: "
          f"{s['save_ratio_vs_copy']:.3f} (>= {TARGET_SAVE_VS_COPY}: "
          f"{verdict(s['save_ratio_vs_copy'] >= TARGET_SAVE_VS_COPY)})")


def report_profile(results: List[Dict]):
  print()
  print("Profile (FULL_TRACE; mean us per session.run by op type, "
        "slowest first; ops may overlap on the 2 inter-op threads):")
  for r in results:
    for what, times in r["profile"].items():
      top = sorted(times.items(), key=lambda kv: -kv[1])[:6]
      print(f"  dim {r['dim']} {what}: " +
            ", ".join(f"{k} {v:.0f}" for k, v in top))


def _cell(x: Optional[float], digits: int) -> str:
  """x with `digits` decimals for the table; "-" where not measured."""
  return "-" if x is None else f"{x:.{digits}f}"


def _round(x: Optional[float], digits: int) -> Optional[float]:
  """round(x, digits); None (not measured) stays None."""
  return None if x is None else round(x, digits)


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
  """a / b, or None where either was not measured."""
  return None if a is None or b is None else a / b


def json_lines(results: List[Dict], saves: List[Dict], args):
  for r in results:
    rates = r["rates"]
    ours_lookup = rates[("lookup", OURS)]
    ours_bytes = r["bytes"][OURS + ":adagrad"]
    kernel_us = r["profile"]["lookup"].get(
        "MonolithMultiHashTableLookupTables", 0)
    for kind, layout in PEERS:
      name = f"{kind}/{layout}"
      line = {
          "bench": "multi_hash_table",
          "dim": r["dim"],
          "tables": TABLES,
          "ids": r["ids"],
          "batch": r["batch"],
          "optimizer": "adagrad",
          "repeats": args.repeats,
          "insert_ids_per_s": round(r["insert"][OURS]),
          "lookup_ids_per_s": round(ours_lookup),
          "apply_gradients_ids_per_s": round(rates[("apply", OURS)]),
          "update_ids_per_s": round(rates[("update", OURS)]),
          "lookup_2calls_ids_per_s": round(rates[("lookup_2calls", OURS)]),
          "apply_gradients_2calls_ids_per_s": round(
              rates[("apply_2calls", OURS)]),
          "raw_lookup_ids_per_s": round(rates[("raw_lookup", OURS)]),
          "lookup_kernel_us_per_run": round(kernel_us),
          "empty_session_run_us": round(r["empty_run_us"]),
          "bytes_per_entry": _round(ours_bytes, 1),
          "sgd_bytes_per_entry": _round(r["bytes"][OURS + ":sgd"], 1),
          "peer": kind,
          "peer_layout": layout,
          "peer_insert_ids_per_s": round(r["insert"][name]),
          "peer_lookup_ids_per_s": round(rates[("lookup", name)]),
          "peer_update_ids_per_s": round(rates[("update", name)]),
          "peer_bytes_per_entry": _round(r["bytes"][name], 1),
          "peer_bucket_bytes_per_entry": (round(r["bucket_bytes"][name], 1)
                                          if name in r["bucket_bytes"] else
                                          None),
          "lookup_ratio": round(ours_lookup / rates[("lookup", name)], 3),
          "median_round_lookup_ratio": round(
              r["median_round_lookup_ratio"][name], 3),
          "bytes_per_entry_ratio": _round(_ratio(ours_bytes,
                                                 r["bytes"][name]), 3),
          "apply_gradients_ratio_vs_lookup": round(
              rates[("apply", OURS)] / ours_lookup, 3),
      }
      print(json.dumps(line, allow_nan=False))
  for s in saves:
    line = {"bench": "multi_hash_table_save_restore", "tables": TABLES}
    line.update({
        k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()
    })
    line["copy"] = "shutil.copyfile"
    print(json.dumps(line, allow_nan=False))


def report(results: List[Dict], saves: List[Dict], args,
           points: List[Dict]):
  if results:
    report_throughput(results, args)
  if saves:
    report_saves(saves)
  if results or saves:
    report_targets(results, saves)
  if results:
    report_profile(results)
  lines = scale_lines(points, args)
  if points:
    report_scale(points, lines)
  print()
  json_lines(results, saves, args)
  for line in lines:
    print(json.dumps(line, allow_nan=False))


# What --parts may name.
_PARTS = {"memory", "throughput", "save", "scale"}


def _int_list(text: str) -> List[int]:
  """A comma list of integers, for argparse (which reports a bad one)."""
  try:
    return [int(x) for x in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a comma list of integers") from None


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--dims", type=_int_list, default="16,64",
                      help="embedding dims measured")
  parser.add_argument("--ids_per_table", type=int, default=125_000,
                      help="ids in each of the 8 tables")
  parser.add_argument("--batch", type=int, default=65_536,
                      help="ids per session.run, over the 8 tables")
  parser.add_argument("--lookup_batches", type=int, default=8,
                      help="session.runs per measurement")
  parser.add_argument("--repeats", type=int, default=11,
                      help="rounds of each measurement")
  parser.add_argument("--save_repeats", type=int, default=3,
                      help="saves measured per compression")
  parser.add_argument("--restore_repeats", type=int, default=2,
                      help="fresh tables restored into (one each)")
  parser.add_argument("--parts", default="memory,throughput,save",
                      help="what to measure (memory needs throughput); "
                      "scale: the curve over --scale_ids")
  parser.add_argument("--scale_ids", type=_int_list,
                      default="1000000,4000000,16000000,64000000",
                      help="total ids (over the 8 tables) of each point of "
                      "the scale curve")
  parser.add_argument("--memory_child", help=argparse.SUPPRESS)
  parser.add_argument("--scale_child", help=argparse.SUPPRESS)
  args = parser.parse_args()
  dims = args.dims
  parts = args.parts.split(",")
  unknown = sorted(set(parts) - _PARTS)
  if unknown:
    parser.error(f"--parts: unknown {', '.join(unknown)} (parts: "
                 f"{', '.join(sorted(_PARTS))})")
  if "memory" in parts and "throughput" not in parts:
    parser.error("--parts: memory is measured with throughput")
  if args.memory_child:
    memory_child(args.memory_child, dims[0], args.ids_per_table, args.batch)
    return
  if args.scale_child:
    scale_child(args.scale_child, dims[0], args)
    return
  tf1.disable_eager_execution()
  start = time.perf_counter()
  results = []
  for dim in (dims if "throughput" in parts else []):
    memory = {}
    for structure in [OURS + ":adagrad", OURS + ":sgd"
                     ] + [f"{k}/{l}" for k, l in PEERS]:
      memory[structure] = (bytes_per_entry(structure, dim, args)
                           if "memory" in parts else {
                               "bytes_per_entry": None  # not measured
                           })
      print(f"dim {dim} {structure}: {json.dumps(memory[structure])}",
            file=sys.stderr, flush=True)
    r = run_dim(dim, args)
    r["bytes"] = {k: v["bytes_per_entry"] for k, v in memory.items()}
    r["bucket_bytes"] = {
        k: v["bucket_bytes_per_entry"]
        for k, v in memory.items()
        if "bucket_bytes_per_entry" in v
    }
    results.append(r)
    print(f"dim {dim}: lookup {m(r['rates'][('lookup', OURS)])}/s",
          file=sys.stderr, flush=True)
  saves = []
  workdir = tempfile.mkdtemp(prefix="multi_hash_table_benchmark_")
  try:
    for dim in (dims if "save" in parts else []):
      for compression_type in ("SNAPPY", ""):
        saves.append(run_save_restore(dim, args, workdir, compression_type))
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  points = run_scale(dims, args) if "scale" in parts else []
  report(results, saves, args, points)
  print(f"# total {time.perf_counter() - start:.0f} s", file=sys.stderr)
  failed = [(p["dim"], p["ids"], structure)
            for p in points for structure, r in p["results"].items()
            if r.get("failed")]
  if failed:
    sys.exit(f"scale children failed (dim, ids, structure): {failed}")


if __name__ == "__main__":
  main()
