"""TFRA's side of the TFRA peer benchmark: one (dim, ids) per process.

Runs in TFRA's own venv (TF 2.16.2, tensorflow-recommenders-addons 0.8.1,
made by run.sh); started by tfra_peer_benchmark.py, which compares it with
ours_side.py. Graph mode, everything through tf.compat.v1 Session.run, like
ours:

* 8 `dynamic_embedding.Variable`s (one per table, as TFRA models hold one per
  feature), key int64, value float32 [dim], one shard on /CPU:0, whose
  tables are TFRA's default `CuckooHashTable` (no init_size: default
  growth); initializer 0.0 (a static default value, like our zeros
  initializer; TFRA's default `zeros_initializer` would also build a
  [batch, dim] default tensor on every lookup);
* insert: `Variable.upsert` of the fill batches (new ids);
* lookup: `Variable.lookup` (the cuckoo table's find op, nothing else);
* forward: `embedding_lookup(..., return_trainable=True)`, the lookup of a
  training step (find, then assign into the TrainableWrapper's buffer);
* apply: `DynamicEmbeddingOptimizer(tf.compat.v1.train.AdagradOptimizer)
  .apply_gradients` on constant gradients ([ids, dim] of 0.01 per table).
  Its gradients do not depend on the lookup, and TFRA's apply reads the
  wrapper's buffer without looking the ids up again (bp_v2=False, the
  default), so this session.run does the apply part only: the Adagrad
  accumulators' lookup, ResourceApplyAdagrad on the buffers, and the upserts
  of values and accumulators. Each timed apply runs right after an untimed
  forward of the same batch, as in a training step;
* step: a whole training step in one session.run: forward, then
  apply_gradients (gradients under a control dependency on the forward's
  embeddings), so (step - forward) cross-checks the apply time.

Bytes per entry: RSS growth (after gc and malloc_trim) while the fill batches
are upserted into the fresh tables (values only), then after one training
pass over every id, which adds TFRA's Adagrad accumulator table entries
(what a TFRA model trained with Adagrad holds per id, beside our adagrad
entries). --values_only stops after the inserts and measures lookups only
(for sizes whose accumulator table would not fit in memory). Before the baseline, the same graph runs on a few ids in a
throwaway session, so lazily built TF and TFRA state is not counted.

Prints progress to stderr and one JSON object (the results) as the last line
of stdout.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRA imports tf_keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position
from tensorflow_recommenders_addons import \
    dynamic_embedding as de  # pylint: disable=wrong-import-position

# numpy only; run.sh puts the workspace (or its runfiles) on PYTHONPATH.
from monolith.native_training import \
    benchmark_workload as workload  # pylint: disable=wrong-import-position

tf1 = tf.compat.v1
LEARNING_RATE = 0.01


class Graph:
  """The ops of one TFRA model: 8 dynamic embedding Variables."""

  def __init__(self, dim: int, per_table_batch: int, prefix: str):
    tables = workload.TABLES
    self.placeholders = [
        tf1.placeholder(tf.int64, [None], name=f"{prefix}_ids_{t}")
        for t in range(tables)
    ]
    self.variables = [
        de.get_variable(f"{prefix}_slot_{t}", key_dtype=tf.int64,
                        value_dtype=tf.float32, dim=dim, initializer=0.0,
                        devices=["/CPU:0"]) for t in range(tables)
    ]
    values = tf.constant(np.full([per_table_batch, dim], 0.5, np.float32))
    pairs = list(zip(self.variables, self.placeholders))
    self.insert = tf.group(
        *[var.upsert(ph, values[:tf.size(ph)]) for var, ph in pairs])
    self.lookup = tf.group(*[var.lookup(ph) for var, ph in pairs])
    embeddings, wrappers = [], []
    for t, (var, ph) in enumerate(pairs):
      emb, wrapper = de.embedding_lookup(var, ph, name=f"{prefix}_emb_{t}",
                                         return_trainable=True)
      embeddings.append(emb)
      wrappers.append(wrapper)
    self.forward = tf.group(*embeddings)
    optimizer = de.DynamicEmbeddingOptimizer(
        tf1.train.AdagradOptimizer(LEARNING_RATE))

    def grads():
      return [tf.fill([tf.size(ph), dim], 0.01) for ph in self.placeholders]

    # Apply only: constant gradients, no dependency on the lookup.
    self.apply = optimizer.apply_gradients(list(zip(grads(), wrappers)))
    # A whole step: the forward lookup, then apply_gradients.
    with tf.control_dependencies(embeddings):
      step_grads = grads()
    self.step = optimizer.apply_gradients(list(zip(step_grads, wrappers)))
    self.init = [
        tf1.global_variables_initializer(),
        tf1.local_variables_initializer(),
        tf1.tables_initializer()
    ]
    self.sizes = tf.add_n([var.size() for var in self.variables])


def new_session() -> tf1.Session:
  return tf1.Session(config=tf1.ConfigProto())


def log(message: str):
  print(f"[tfra_side] {message}", file=sys.stderr, flush=True)


def run(args) -> dict:
  data = workload.Data(args.dim, args.ids // workload.TABLES, args.batch,
                       args.lookup_batches)
  log(f"dim {args.dim}, {data.ids:,} ids, fingerprint {data.fingerprint()}")
  # Warm-up: the same graph on a few ids in a throwaway graph and session.
  with tf.Graph().as_default():
    g = Graph(args.dim, 4, "warmup")  # 4 ids per table
    with new_session() as sess:
      sess.run(g.init)
      small = [ids[:4] for ids in data.fill_batches[0]]
      for op in (g.insert, g.lookup, g.forward, g.apply, g.step):
        sess.run(op, feed_dict=workload.feed(g.placeholders, small))
  workload.release_memory()

  g = Graph(args.dim, data.per_table_batch, "bench")
  fill_feeds = [workload.feed(g.placeholders, b) for b in data.fill_batches]
  feeds = [workload.feed(g.placeholders, b) for b in data.lookup_batches]
  batch_ids = data.batch * len(feeds)
  result = {"side": "tfra", "dim": args.dim, "ids": data.ids,
            "tables": workload.TABLES, "batch": data.batch,
            "fingerprint": data.fingerprint(), "tf_version": tf.__version__}
  try:
    import importlib.metadata as metadata  # pylint: disable=import-outside-toplevel
    result["tfra_version"] = metadata.version(
        "tensorflow-recommenders-addons")
  except Exception:  # pylint: disable=broad-except
    result["tfra_version"] = None
  workload.release_memory()
  before = workload.rss_bytes()
  with new_session() as sess:
    sess.run(g.init)
    seconds = workload.timed_runs(sess, g.insert, fill_feeds)
    result["insert_ids_per_s"] = data.ids / seconds
    workload.release_memory()
    filled = workload.rss_bytes()
    assert sess.run(g.sizes) == data.ids, sess.run(g.sizes)
    log(f"insert {data.ids / seconds / 1e6:.2f} M ids/s, "
        f"{(filled - before) / data.ids:.1f} B/entry (values only)")
    result["params_bytes_per_entry"] = (filled - before) / data.ids
    result["bytes_per_entry"] = None
    measures = {
        "lookup": lambda: workload.timed_runs(sess, g.lookup, feeds),
    }
    if not args.values_only:
      # One training pass over every id: the Adagrad accumulators' entries.
      seconds = workload.timed_runs(sess, g.step, fill_feeds)
      result["first_step_ids_per_s"] = data.ids / seconds
      workload.release_memory()
      trained = workload.rss_bytes()
      result["bytes_per_entry"] = (trained - before) / data.ids
      log(f"training pass {data.ids / seconds / 1e6:.2f} M ids/s, "
          f"{result['bytes_per_entry']:.1f} B/entry with accumulators")
      measures.update({
          "forward": lambda: workload.timed_runs(sess, g.forward, feeds),
          "apply": lambda: workload.timed_after(sess, g.forward, g.apply,
                                                feeds),
          "step": lambda: workload.timed_runs(sess, g.step, feeds),
      })
    for name in measures:  # warm-up: each op is the attribute of its name
      sess.run(getattr(g, name), feed_dict=feeds[0])
    best = {}
    for _ in range(args.repeats):
      for name, measure in measures.items():
        best[name] = min(best.get(name, float("inf")), measure())
    for name, seconds in best.items():
      result[f"{name}_ids_per_s"] = batch_ids / seconds
    result["apply_from_step_ids_per_s"] = None
    if "step" in best and best["step"] > best["forward"]:
      result["apply_from_step_ids_per_s"] = batch_ids / (best["step"] -
                                                         best["forward"])
    assert sess.run(g.sizes) == data.ids
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
  parser.add_argument("--values_only", action="store_true",
                      help="insert and lookup only: no training pass (no "
                      "accumulator table), no forward / apply / step")
  args = parser.parse_args()
  tf1.disable_eager_execution()
  start = time.perf_counter()
  result = run(args)
  result["seconds"] = time.perf_counter() - start
  print(json.dumps(result))


if __name__ == "__main__":
  main()
