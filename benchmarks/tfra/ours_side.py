"""Our side of the TFRA peer benchmark: one (dim, ids) per process.

    bazel run -c opt //benchmarks/tfra:ours_side -- --dim 16 --ids 1000000

Started by tfra_peer_benchmark.py right after TFRA's side (tfra_side.py) of
the same (dim, ids). The MultiHashTable of
//monolith/native_training:multi_hash_table_benchmark (8 tables, cuckoo
hash, adagrad entries of one fp32 segment, zeros initializer; its
`build_ours` graph), on benchmark_workload's ids, through tf.compat.v1 Session.run:

* insert: MultiHashTable.assign of the fill batches (new ids);
* lookup: MultiHashTable.lookup;
* apply: MultiHashTable.apply_gradients (adagrad) with constant gradients
  ([ids, dim] of 0.01 per table), which finds each id and updates its entry
  in place: no lookup needs to run first;
* step: lookup, then apply_gradients (under a control dependency on the
  lookup's embeddings), in one session.run: a whole training step.

Bytes per entry: RSS growth (after gc and malloc_trim) while the fill
batches are assigned into the fresh table (adagrad entries: values and
accumulators), after the same graph ran on a few ids in a throwaway session.

Prints progress to stderr and one JSON object (the results) as the last line
of stdout.
"""

import argparse
import json
import sys
import time

import numpy as np
import tensorflow as tf

from monolith.native_training import benchmark_workload as workload
from monolith.native_training import multi_hash_table_benchmark as mhtb

tf1 = tf.compat.v1


class Graph:
  """The ops of our model: one MultiHashTable of 8 tables."""

  def __init__(self, dim: int, per_table_batch: int, suffix: str):
    self.placeholders = [
        tf1.placeholder(tf.int64, [None], name=f"ids_{t}")
        for t in range(workload.TABLES)
    ]
    values = tf.constant(np.full([per_table_batch, dim], 0.5, np.float32))
    grads = tf.constant(np.full([per_table_batch, dim], 0.01, np.float32))
    ours = mhtb.build_ours(dim, self.placeholders, values, grads,
                           suffix=suffix)
    self.insert = ours.fill
    self.lookup = ours.lookup
    self.apply = ours.apply
    self.init = ours.init
    names = mhtb.table_names()
    embeddings = ours.table.lookup(dict(zip(names, self.placeholders)))
    with tf.control_dependencies(list(embeddings.values())):
      self.step = ours.table.apply_gradients(
          mhtb.sized_rows(names, self.placeholders, grads),
          global_step=tf.constant(1, tf.int64)).as_op()


def log(message: str):
  print(f"[ours_side] {message}", file=sys.stderr, flush=True)


def run(args) -> dict:
  data = workload.Data(args.dim, args.ids // workload.TABLES, args.batch,
                       args.lookup_batches)
  log(f"dim {args.dim}, {data.ids:,} ids, fingerprint {data.fingerprint()}")
  with tf.Graph().as_default():
    g = Graph(args.dim, 4, "_warmup")  # 4 ids per table
    with mhtb.new_session() as sess:
      sess.run(g.init)
      small = [ids[:4] for ids in data.fill_batches[0]]
      for op in (g.insert, g.lookup, g.apply, g.step):
        sess.run(op, feed_dict=workload.feed(g.placeholders, small))
  workload.release_memory()

  g = Graph(args.dim, data.per_table_batch, "")
  fill_feeds = [workload.feed(g.placeholders, b) for b in data.fill_batches]
  feeds = [workload.feed(g.placeholders, b) for b in data.lookup_batches]
  batch_ids = data.batch * len(feeds)
  result = {"side": "ours", "dim": args.dim, "ids": data.ids,
            "tables": workload.TABLES, "batch": data.batch,
            "fingerprint": data.fingerprint(), "tf_version": tf.__version__}
  workload.release_memory()
  before = workload.rss_bytes()
  with mhtb.new_session() as sess:
    sess.run(g.init)
    seconds = workload.timed_runs(sess, g.insert, fill_feeds)
    result["insert_ids_per_s"] = data.ids / seconds
    workload.release_memory()
    result["bytes_per_entry"] = (workload.rss_bytes() - before) / data.ids
    log(f"insert {data.ids / seconds / 1e6:.2f} M ids/s, "
        f"{result['bytes_per_entry']:.1f} B/entry")
    for op in (g.lookup, g.apply, g.step):
      sess.run(op, feed_dict=feeds[0])
    best = {}
    measures = {
        "lookup": lambda: workload.timed_runs(sess, g.lookup, feeds),
        "apply": lambda: workload.timed_runs(sess, g.apply, feeds),
        "step": lambda: workload.timed_runs(sess, g.step, feeds),
    }
    for _ in range(args.repeats):
      for name, measure in measures.items():
        best[name] = min(best.get(name, float("inf")), measure())
    for name, seconds in best.items():
      result[f"{name}_ids_per_s"] = batch_ids / seconds
  log(", ".join(f"{k} {result[k + '_ids_per_s'] / 1e6:.2f} M"
                for k in best) + " ids/s")
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dim", type=int, required=True)
  parser.add_argument("--ids", type=int, required=True)
  parser.add_argument("--batch", type=int, default=65_536)
  parser.add_argument("--lookup_batches", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=11)
  args = parser.parse_args()
  tf1.disable_eager_execution()
  start = time.perf_counter()
  result = run(args)
  result["seconds"] = time.perf_counter() - start
  print(json.dumps(result))


if __name__ == "__main__":
  main()
