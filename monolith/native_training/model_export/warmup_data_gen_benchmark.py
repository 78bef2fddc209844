"""Benchmark: warmup_data_gen throughput beside a plain sequential read.

Writes a dump of --records Example records (default 1,048,576), then, per
layout, times in the same run:
  * plain_read: reading the same file sequentially in 1 MiB chunks (Python),
    the I/O ceiling of any reader;
  * warmup_data_gen: gen_prediction_log_from_file + write_prediction_logs,
    the whole tool, with a batch size that puts the whole dump into
    TF Serving's 1000 warmup records, with and without record validation.
Prints a table, then one JSON line per configuration.

    bazel run -c opt //monolith/native_training/model_export:warmup_data_gen_benchmark
"""

import dataclasses
import json
import math
import os
import tempfile
import time

from absl import app
from absl import flags

from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import sample_records
from monolith.native_training.model_export import warmup_data_gen
from monolith.native_training.model_export import warmup_io

flags.DEFINE_integer("records", 1 << 20, "Records in the benchmark dump.")
flags.DEFINE_integer("distinct", 4096,
                     "Distinct Example payloads cycled through the dump.")
flags.DEFINE_string("dir", None, "Work folder (default: a temp folder).")

FLAGS = flags.FLAGS

LAYOUTS = {
    "sort_id": dump_format.DumpLayout(has_sort_id=True),
    "kafka_prefix+sort_id+kafka_dump": dump_format.DumpLayout(
        kafka_dump_prefix=True, has_sort_id=True, kafka_dump=True),
    "lagrangex": dump_format.DumpLayout(lagrangex_header=True),
}


def write_benchmark_dump(path: str, layout: dump_format.DumpLayout,
                         records: int, distinct: int) -> int:
  encoded = [
      dump_format.encode_record(p, layout, sort_id=b"sort-id-%d" % i)
      for i, p in enumerate(
          sample_records.serialized_records("example", distinct, seed=7))
  ]
  with open(path, "wb", buffering=1 << 20) as f:
    for i in range(records):
      f.write(encoded[i % distinct])
  return os.path.getsize(path)


def time_plain_read(path: str) -> float:
  start = time.perf_counter()
  buf = bytearray(1 << 20)
  with open(path, "rb", buffering=0) as f:
    while f.readinto(buf):
      pass
  return time.perf_counter() - start


def time_warmup_data_gen(path: str, layout: dump_format.DumpLayout,
                         records: int, output: str, validate: bool) -> float:
  batch_size = math.ceil(records / warmup_io.MAX_WARMUP_RECORDS)
  start = time.perf_counter()
  written = warmup_io.write_prediction_logs(
      output,
      warmup_data_gen.gen_prediction_log_from_file(
          path,
          batch_size,
          variant_type="example",
          validate=validate,
          **dataclasses.asdict(layout)))
  elapsed = time.perf_counter() - start
  assert written == math.ceil(records / batch_size), written
  return elapsed


def main(argv):
  del argv
  work = FLAGS.dir or tempfile.mkdtemp(prefix="warmup_bench_")
  rows = []
  for name, layout in LAYOUTS.items():
    dump = os.path.join(work, "dump.bin")
    size = write_benchmark_dump(dump, layout, FLAGS.records, FLAGS.distinct)
    mb = size / 1e6
    for validate in (True, False):
      plain_s = time_plain_read(dump)
      tool_s = time_warmup_data_gen(dump, layout, FLAGS.records,
                                    os.path.join(work, "warmup"), validate)
      rows.append({
          "bench": "warmup_data_gen",
          "layout": name,
          "validate_records": validate,
          "records": FLAGS.records,
          "file_mb": round(mb, 1),
          "records_per_s": round(FLAGS.records / tool_s),
          "mb_per_s": round(mb / tool_s, 1),
          "peer": "plain_sequential_read",
          "peer_mb_per_s": round(mb / plain_s, 1),
          "ratio": round(plain_s / tool_s, 4),
      })
      os.remove(os.path.join(work, "warmup"))
    os.remove(dump)
  if not FLAGS.dir:
    os.rmdir(work)

  header = (f"{'layout':34} {'validate':>8} {'records':>9} {'MB':>7} "
            f"{'records/s':>11} "
            f"{'MB/s':>8} {'plain MB/s':>11} {'ratio':>7}")
  print(header)
  print("-" * len(header))
  for r in rows:
    print(f"{r['layout']:34} {str(r['validate_records']):>8} "
          f"{r['records']:>9} {r['file_mb']:>7} "
          f"{r['records_per_s']:>11,} {r['mb_per_s']:>8} "
          f"{r['peer_mb_per_s']:>11} {r['ratio']:>7}")
  for r in rows:
    print(json.dumps(r))


if __name__ == "__main__":
  app.run(main)
