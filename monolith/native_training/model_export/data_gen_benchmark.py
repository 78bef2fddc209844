"""Benchmark: random warmup generation throughput per variant type.

For each variant (instance, example, example_batch) times what
`warmup_data_gen --gen_type=random` does: gen_prediction_log for --requests
requests of --batch_size records each, written with write_prediction_logs.
The records have a ranking model's shape: 24 sparse features (user and item
id, 16 single-fid ones, 4 list-like ones, 2 combined ones) and 3 dense ones
(26 values), at drop rate 0.2. The best of --repeats runs counts. Prints a
table, then one JSON line per variant.

    bazel run -c opt //monolith/native_training/model_export:data_gen_benchmark
"""

import json
import os
import tempfile
import time

from absl import app
from absl import flags
import tensorflow as tf

from monolith.native_training.model_export import data_gen_utils
from monolith.native_training.model_export import warmup_io

flags.DEFINE_integer("batch_size", 256, "Records per request.")
flags.DEFINE_integer("requests", 20, "Requests (warmup records) per run.")
flags.DEFINE_integer("repeats", 3, "Runs per variant; the fastest counts.")

FLAGS = flags.FLAGS

VARIANTS = ("instance", "example", "example_batch")
SPARSE_FEATURES = (["slot_1", "slot_200"] +
                   [f"slot_{slot}" for slot in range(2, 18)] +
                   [f"user_recent_click_{i}" for i in range(3)] +
                   ["doc_tags_cp", "user_id-doc_id", "user_id-doc_cate"])
DENSE_FEATURES = ["ctr_stats", "user_embedding", "counts"]
DENSE_SHAPES = [8, 16, 2]
DENSE_TYPES = [tf.float32, tf.float32, tf.int64]


def parser_args(variant: str) -> data_gen_utils.ParserArgs:
  return data_gen_utils.ParserArgs(
      sparse_features=SPARSE_FEATURES,
      fidv2_features=SPARSE_FEATURES,
      dense_features=DENSE_FEATURES,
      dense_feature_shapes=DENSE_SHAPES,
      dense_feature_types=DENSE_TYPES,
      batch_size=FLAGS.batch_size,
      max_records=FLAGS.requests * FLAGS.batch_size,
      variant_type=variant,
      drop_rate=0.2,
      seed=1)


def time_generation(variant: str, output: str) -> float:
  start = time.perf_counter()
  written = warmup_io.write_prediction_logs(
      output, data_gen_utils.gen_prediction_log(parser_args(variant)))
  elapsed = time.perf_counter() - start
  assert written == FLAGS.requests, written
  return elapsed


def main(argv):
  del argv
  records = FLAGS.requests * FLAGS.batch_size
  rows = []
  with tempfile.TemporaryDirectory(prefix="data_gen_bench_") as work:
    output = os.path.join(work, "warmup")
    for variant in VARIANTS:
      seconds = min(
          time_generation(variant, output) for _ in range(FLAGS.repeats))
      size = os.path.getsize(output)
      rows.append({
          "bench": "random_gen",
          "variant_type": variant,
          "batch_size": FLAGS.batch_size,
          "requests": FLAGS.requests,
          "records": records,
          "sparse_features": len(SPARSE_FEATURES),
          "dense_values": sum(DENSE_SHAPES),
          "file_mb": round(size / 1e6, 2),
          "bytes_per_record": round(size / records),
          "seconds": round(seconds, 3),
          "records_per_s": round(records / seconds),
          "requests_per_s": round(FLAGS.requests / seconds, 1),
          "mb_per_s": round(size / 1e6 / seconds, 1),
      })

  header = (f"{'variant_type':14} {'batch':>6} {'records':>8} {'MB':>7} "
            f"{'B/record':>9} {'records/s':>10} {'requests/s':>11} "
            f"{'MB/s':>6}")
  print(header)
  print("-" * len(header))
  for r in rows:
    print(f"{r['variant_type']:14} {r['batch_size']:>6} {r['records']:>8} "
          f"{r['file_mb']:>7} {r['bytes_per_record']:>9} "
          f"{r['records_per_s']:>10,} {r['requests_per_s']:>11} "
          f"{r['mb_per_s']:>6}")
  for r in rows:
    print(json.dumps(r))


if __name__ == "__main__":
  app.run(main)
