"""Benchmark: warmup_data_gen throughput beside a plain sequential read.

Writes a dump of --records Example records (default 1,048,576), then, per
layout, times in the same run:
  * plain_read: reading the same file sequentially in 1 MiB chunks (Python),
    the I/O ceiling of any reader;
  * warmup_data_gen: gen_prediction_log_from_file + write_prediction_logs,
    the whole tool, with a batch size that puts the whole dump into
    TF Serving's 1000 warmup records, at each --validation level: `framing`
    (the default, --validate_records: every record parses, unknown fields
    allowed), `strict` (--reject_unknown_fields: no message of any record has
    unknown fields) and `off` (--novalidate_records: sizes and boundaries
    only).
Prints a table, then one JSON line per configuration.

    bazel run -c opt //monolith/native_training/model_export:warmup_data_gen_benchmark
    # The smallest run:
    bazel run -c opt //monolith/native_training/model_export:warmup_data_gen_benchmark \
        -- --records=1000 --distinct=10 --validation=framing
"""

import dataclasses
import json
import math
import os
import shutil
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
flags.DEFINE_list(
    "validation", ["framing", "strict", "off"],
    "Validation levels to time: framing (--validate_records, the default), "
    "strict (--reject_unknown_fields), off (--novalidate_records).")

FLAGS = flags.FLAGS

LAYOUTS = {
    "sort_id": dump_format.DumpLayout(has_sort_id=True),
    "kafka_prefix+sort_id+kafka_dump": dump_format.DumpLayout(
        kafka_dump_prefix=True, has_sort_id=True, kafka_dump=True),
    "lagrangex": dump_format.DumpLayout(lagrangex_header=True),
}
# gen_prediction_log_from_file's (validate, reject_unknown_fields) per level.
VALIDATION = {
    "framing": (True, False),
    "strict": (True, True),
    "off": (False, False),
}


def write_benchmark_dump(path: str, layout: dump_format.DumpLayout,
                         records: int, distinct: int) -> int:
  """Writes `records` Example records, cycling over `distinct` payloads.

  Args:
    path: the dump to write.
    layout: its layout.
    records: how many records.
    distinct: how many different payloads.

  Returns:
    The dump's size in bytes.
  """
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
  """Seconds to read `path` sequentially in 1 MiB chunks."""
  start = time.perf_counter()
  buf = bytearray(1 << 20)
  with open(path, "rb", buffering=0) as f:
    while f.readinto(buf):
      pass
  return time.perf_counter() - start


def time_warmup_data_gen(path: str, layout: dump_format.DumpLayout,
                         records: int, output: str, validation: str) -> float:
  """Seconds warmup_data_gen takes to turn the dump into a warmup file.

  Args:
    path: the dump.
    layout: its layout.
    records: the records in it.
    output: the warmup file to write.
    validation: a key of VALIDATION.

  Returns:
    The seconds.
  """
  batch_size = math.ceil(records / warmup_io.MAX_WARMUP_RECORDS)
  validate, reject_unknown_fields = VALIDATION[validation]
  start = time.perf_counter()
  written = warmup_io.write_prediction_logs(
      output,
      warmup_data_gen.gen_prediction_log_from_file(
          path,
          batch_size,
          variant_type="example",
          validate=validate,
          reject_unknown_fields=reject_unknown_fields,
          **dataclasses.asdict(layout)))
  elapsed = time.perf_counter() - start
  assert written == math.ceil(records / batch_size), written
  return elapsed


def main(argv: list) -> None:
  """Times every layout at every --validation level; prints the results.

  Args:
    argv: the command line left after flag parsing (ignored).

  Raises:
    app.UsageError: an unknown --validation level.
  """
  del argv
  unknown = sorted(set(FLAGS.validation) - set(VALIDATION))
  if unknown:
    raise app.UsageError(f"--validation: unknown levels {unknown}; known: "
                         f"{', '.join(VALIDATION)}")
  work = FLAGS.dir or tempfile.mkdtemp(prefix="warmup_bench_")
  rows = []
  try:
    for name, layout in LAYOUTS.items():
      dump = os.path.join(work, "dump.bin")
      size = write_benchmark_dump(dump, layout, FLAGS.records, FLAGS.distinct)
      mb = size / 1e6
      for validation in FLAGS.validation:
        plain_s = time_plain_read(dump)
        tool_s = time_warmup_data_gen(dump, layout, FLAGS.records,
                                      os.path.join(work, "warmup"),
                                      validation)
        rows.append({
            "bench": "warmup_data_gen",
            "layout": name,
            "validation": validation,
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
  finally:
    # Its own temp folder goes, whatever ended the run (a --dir is the
    # caller's).
    if not FLAGS.dir:
      shutil.rmtree(work, ignore_errors=True)

  header = (f"{'layout':34} {'validation':>10} {'records':>9} {'MB':>7} "
            f"{'records/s':>11} "
            f"{'MB/s':>8} {'plain MB/s':>11} {'ratio':>7}")
  print(header)
  print("-" * len(header))
  for r in rows:
    print(f"{r['layout']:34} {r['validation']:>10} "
          f"{r['records']:>9} {r['file_mb']:>7} "
          f"{r['records_per_s']:>11,} {r['mb_per_s']:>8} "
          f"{r['peer_mb_per_s']:>11} {r['ratio']:>7}")
  for r in rows:
    print(json.dumps(r))


if __name__ == "__main__":
  app.run(main)
