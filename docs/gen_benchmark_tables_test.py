"""Tests of gen_benchmark_tables: sample benchmark JSON lines in, tables out."""

import io
import json
import os
import re

import pytest

import gen_benchmark_tables as gen

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

HEADER = {
    "command": "bazel run -c opt //x:bench",
    "machine": "Test CPU, 2 CPUs",
    "date": "2025-01-02",
    "commit": "abc1234",
}

# As hash_table_benchmark.cc prints them (printf, one line per size, dim and
# thread count).
def _hash_table_line(threads, lookup, insert_ratio, stall, scaling=None):
  """`scaling`: median_round_ratio_vs_1thread, which runs before
  2026-12-07 lacked (their 2-thread median_round_ratio was ours 2 / 1
  threads)."""
  new_key = ("" if scaling is None else
             '"median_round_ratio_vs_1thread": %.3f, ' % scaling)
  return (
      '{"bench": "hash_table", "dim": 16, "threads": %d, "ids": 16000000, '
      '"batch": 65536, "optimizer": "adagrad", "insert_ids_per_s": 4600000, '
      '"insert_fresh_memory_ids_per_s": 1900000, '
      '"insert_steady_ids_per_s": 5000000, "assign_ids_per_s": 15500000, '
      '"lookup_ids_per_s": %d, "optimize_ids_per_s": 11700000, '
      '"insert_ratio_vs_lookup": %.3f, "steady_insert_ratio_vs_lookup": 0.614, '
      '"peer": "std::unordered_map", '
      '"peer_insert_ids_per_s": 839000, "peer_lookup_ids_per_s": 5240000, '
      '"lookup_ratio_vs_peer": 1.553, "lookup_ratio_vs_peer_1thread": 1.553, '
      '"insert_ratio_vs_peer": 5.483, "lookup_ratio_vs_1thread": 1.000, '
      '"median_round_ratio": 1.570, %s'
      '"peer_median_ratio_vs_1thread": 2.290, '
      '"fresh_insert_ratio_vs_peer": 2.265, '
      '"optimize_ratio_vs_lookup": 0.640, "random_64b_reads_per_s": 78000000, '
      '"lookup_ratio_vs_random_reads": 0.104, '
      '"random_same_page_pairs_per_s": 31000000, '
      '"random_two_page_pairs_per_s": 16000000, '
      '"lookup_ratio_vs_two_page_pairs": 0.509, "bytes_per_entry": 161.8, '
      '"table_bytes_per_entry": 158.0, "peer_bytes_per_entry": 108.3, '
      '"payload_bytes_per_entry": 136, "memory_ratio_vs_payload": 1.190, '
      '"longest_lookup_stall_ms": %.3f, "median_stall_batch_ms": 0.100, '
      '"stall_batch": 512, "longest_lookup_without_writer_ms": 12.500, '
      '"longest_host_pause_ms": 30.200, '
      '"longest_lookup_stall_outside_host_pauses_ms": 4.100, '
      '"longest_shard_growth_ms": 36.110, '
      '"peer_measured_alongside": true}' % (threads, lookup, insert_ratio,
                                             new_key, stall))


HASH_TABLE = [
    _hash_table_line(1, 8140000, 0.565, 27.9),
    _hash_table_line(2, 22800000, 0.202, 27.9),
]


def _scale_line(peer, lookup, ratio, skipped=None):
  line = {
      "bench": "multi_hash_table_scale", "dim": 16, "tables": 8,
      "ids": 16000000, "batch": 65536, "optimizer": "adagrad", "repeats": 11,
      "insert_ids_per_s": 2500000, "lookup_ids_per_s": 12000000,
      "update_ids_per_s": 9000000, "apply_gradients_ids_per_s": 7000000,
      "insert_ratio_vs_lookup": 0.208, "bytes_per_entry": 165.0,
      "bytes_per_entry_vs_smallest": 0.909, "payload_bytes_per_entry": 136,
      "sgd_bytes_per_entry": 101.0, "sgd_payload_bytes_per_entry": 72,
      "peer": peer, "peer_layout": "per_slot",
  }
  if skipped:
    line["peer_skipped"] = skipped
  else:
    line.update({
        "peer_insert_ids_per_s": 1500000, "peer_lookup_ids_per_s": lookup,
        "peer_update_ids_per_s": 5000000, "peer_bytes_per_entry": 210.0,
        "lookup_ratio": ratio, "insert_ratio": 1.667,
    })
  return json.dumps(line)


SCALE = [
    _scale_line("DenseHashTable", 5000000, 2.4),
    _scale_line("MutableHashTable", None, None,
                skipped="needs ~30.0 GiB, 17.0 GiB available"),
]


def _multi_line(peer, layout, lookup, buckets):
  return json.dumps({
      "bench": "multi_hash_table", "dim": 16, "tables": 8, "ids": 1000000,
      "batch": 65536, "optimizer": "adagrad", "repeats": 11,
      "insert_ids_per_s": 5500000, "lookup_ids_per_s": 23200000,
      "apply_gradients_ids_per_s": 19000000, "update_ids_per_s": 20000000,
      "lookup_2calls_ids_per_s": 25000000,
      "apply_gradients_2calls_ids_per_s": 21000000,
      "raw_lookup_ids_per_s": 26000000, "lookup_kernel_us_per_run": 1800,
      "empty_session_run_us": 400, "bytes_per_entry": 181.2,
      "sgd_bytes_per_entry": 112.4, "peer": peer, "peer_layout": layout,
      "peer_insert_ids_per_s": 3100000, "peer_lookup_ids_per_s": lookup,
      "peer_update_ids_per_s": 3000000, "peer_bytes_per_entry": 291.0,
      "peer_bucket_bytes_per_entry": buckets,
      "lookup_ratio": round(23200000 / lookup, 3),
      "median_round_lookup_ratio": round(22000000 / lookup, 3),
      "bytes_per_entry_ratio": 0.623,
      "apply_gradients_ratio_vs_lookup": 0.819,
  })


MULTI = [
    _multi_line("DenseHashTable", "single", 11200000, 151.0),
    _multi_line("MutableHashTable", "single", 3000000, None),
    json.dumps({
        "bench": "multi_hash_table_save_restore", "tables": 8, "dim": 16,
        "compression_type": "SNAPPY", "ids": 1000000, "shards": 4,
        "ckpt_bytes": 109045413, "ckpt_bytes_per_entry": 109.045,
        "save_mb_per_s": 547.2, "restore_mb_per_s": 460.4,
        "serving_restore_mb_per_s": 527.0, "copy_mb_per_s": 2601.3,
        "save_s": 0.199, "restore_s": 0.237, "serving_restore_s": 0.207,
        "copy_s": 0.042, "save_ratio_vs_copy": 0.21,
        "restore_ratio_vs_copy": 0.177, "copy": "shutil.copyfile"
    }),
    json.dumps({
        "bench": "multi_hash_table_save_restore", "tables": 8, "dim": 16,
        "compression_type": "", "ids": 1000000, "shards": 4,
        "ckpt_bytes": 193000000, "ckpt_bytes_per_entry": 193.0,
        "save_mb_per_s": 1916.0, "restore_mb_per_s": 756.0,
        "serving_restore_mb_per_s": 876.0, "copy_mb_per_s": 2650.0,
        "save_s": 0.1, "restore_s": 0.25, "serving_restore_s": 0.22,
        "copy_s": 0.07, "save_ratio_vs_copy": 0.723,
        "restore_ratio_vs_copy": 0.285, "copy": "shutil.copyfile"
    }),
]

WARMUP = [
    json.dumps({
        "bench": "warmup_data_gen", "layout": "sort_id",
        "validation": "framing", "records": 1048576, "file_mb": 270.1,
        "records_per_s": 156938, "mb_per_s": 40.6,
        "peer": "plain_sequential_read", "peer_mb_per_s": 6178.0,
        "ratio": 0.0066
    }),
    json.dumps({
        "bench": "warmup_data_gen", "layout": "lagrangex",
        "validation": "off", "records": 1048576, "file_mb": 260.3,
        "records_per_s": 517535, "mb_per_s": 127.9,
        "peer": "plain_sequential_read", "peer_mb_per_s": 6320.0,
        "ratio": 0.0202
    }),
]

RANDOM = [
    json.dumps({
        "bench": "random_gen", "variant_type": "instance", "batch_size": 256,
        "requests": 20, "records": 5120, "sparse_features": 24,
        "dense_values": 26, "file_mb": 3.63, "bytes_per_record": 710,
        "seconds": 0.342, "records_per_s": 14949, "requests_per_s": 58.4,
        "mb_per_s": 10.6
    }),
]

def _tfra_line(op, ours, peer, target=None, ids=1000000, skipped=None,
               from_step=None):
  ratio = None if ours is None or peer is None else round(ours / peer, 3)
  return json.dumps({
      "bench": "tfra_peer", "dim": 16, "ids": ids, "tables": 8,
      "batch": 65536, "op": op, "ids_per_s": ours, "peer": "tfra_cuckoo",
      "peer_op": "Variable.lookup", "peer_ids_per_s": peer, "ratio": ratio,
      "target_ratio": target,
      "bar_met": None if target is None or ratio is None else ratio >= target,
      "bytes_per_entry": None if ours is None else 181.0,
      "peer_bytes_per_entry": None if peer is None else 400.0,
      "peer_params_bytes_per_entry": None if peer is None else 200.0,
      "peer_apply_from_step_ids_per_s": from_step, "repeats": 11,
      "tf_version": "2.21.0", "peer_tf_version": "2.16.2",
      "peer_version": "0.8.1", "skipped": skipped,
  })


TFRA = [
    _tfra_line("lookup", 26000000, 8000000, 3.0),
    _tfra_line("apply_gradients", 12000000, 4000000, 4.0,
               from_step=3500000),
    _tfra_line("lookup", 20000000, None, 3.0, ids=16000000,
               skipped="tfra needs ~12.0 GiB, 7.0 GiB available"),
]

ALL_TABLES = "".join(
    f"{gen._BEGIN.format(t.id)}\nold text\n{gen._END.format(t.id)}\n\n"
    for t in gen.TABLES)


def _gpu_line(dim, find, ratio):
  return json.dumps({
      "bench": "gpu_table", "device": "NVIDIA H200", "dim": dim,
      "load_factor": 0.5, "keys": 16777216, "batch": 1048576,
      "find_keys_per_s": find, "upsert_keys_per_s": 2.1e9,
      "adagrad_keys_per_s": 1.4e9, "peer": "HierarchicalKV",
      "peer_find_keys_per_s": find / ratio, "peer_upsert_keys_per_s": 2e9,
      "find_ratio_vs_peer": ratio, "upsert_ratio_vs_peer": 1.05
  })


def _runs(**lines_by_target):
  return {
      target: gen.parse_runs(gen.format_run(HEADER, [json.loads(l) for l in lines]),
                             target) [-1]
      for target, lines in lines_by_target.items()
  }


def _block(text, table_id):
  start = text.index(gen._BEGIN.format(table_id))
  end = text.index(gen._END.format(table_id))
  return text[start:end]


def test_hash_table_rows():
  out = gen.render_document(ALL_TABLES,
                            _runs(hash_table_benchmark=HASH_TABLE))
  block = _block(out, "hash_table")
  assert ("Latest run: `bazel run -c opt //x:bench` on Test CPU, 2 CPUs "
          "(2025-01-02, commit abc1234).") in block
  assert ("| dim | ids | threads | insert/s | insert/s (fresh memory) | "
          "insert/s (steady) | insert / lookup | steady / lookup | assign/s | "
          "lookup/s | adagrad/s | map lookup/s | lookup vs map | "
          "median of rounds vs map | vs 1 thread | "
          "median of rounds vs 1 thread | map's 2/1 threads |") in block
  assert ("| 16 | 16,000,000 | 1 | 4.6 M | 1.9 M | 5.0 M | 0.56 | 0.61 | "
          "15.5 M | 8.1 M | 11.7 M | 5.2 M | 1.55 | 1.57 | 1.00 |  |  |"
         ) in block
  # An older run's 2-thread median was ours 2 / 1 threads: not shown as
  # a ratio to the map.
  assert ("| 16 | 16,000,000 | 2 |  |  |  |  |  | 15.5 M | 22.8 M | 11.7 M | "
          "5.2 M | 1.55 |  | 1.00 | 1.57 | 2.29 |") in block
  assert ("| dim | ids | bytes/entry (payload) | table's own count | "
          "map bytes/entry | map insert/s (fresh memory) | "
          "fresh-memory insert vs map |") in block
  assert ("| 16 | 16,000,000 | 162 (136) | 158 | 108 | 0.8 M | 2.27 | "
          "78.0 M | 0.10 | 31.0 M | 16.0 M | 0.51 | 27.9 | 30.2 | 4.1 | "
          "12.5 | 36.1 |") in block
  assert "old text" not in block
  out = gen.render_document(ALL_TABLES, _runs(hash_table_benchmark=[
      HASH_TABLE[0], _hash_table_line(2, 22800000, 0.202, 27.9, 1.9)]))
  assert ("| 16 | 16,000,000 | 2 |  |  |  |  |  | 15.5 M | 22.8 M | 11.7 M | "
          "5.2 M | 1.55 | 1.57 | 1.00 | 1.90 | 2.29 |") in _block(
              out, "hash_table")
  # A size that would not fit in memory is said, not left out.
  out = gen.render_document(ALL_TABLES, _runs(hash_table_benchmark=HASH_TABLE + [
      '{"bench": "hash_table", "dim": 64, "ids": 64000000, "skipped": '
      '"it needs ~34.1 GiB, 21.6 GiB are available"}']))
  assert ("| 64 | 64,000,000 | (skipped: it needs ~34.1 GiB, 21.6 GiB are "
          "available) |" + "  |" * 14) in _block(out, "hash_table")


def test_multi_hash_table_scale_rows_and_sizing():
  out = gen.render_document(ALL_TABLES, _runs(multi_hash_table_scale=SCALE))
  block = _block(out, "multi_hash_table_scale")
  rows = [l for l in block.splitlines() if l.startswith("| 16")]
  assert rows == [
      "| 16 | 16,000,000 | DenseHashTable/per_slot | 2.5 M | 0.21 | 12.0 M | "
      "9.0 M | 7.0 M | 1.5 M | 5.0 M | 2.40 | 165 (136) | 101 (72) | 210 |",
      "| 16 | 16,000,000 | MutableHashTable/per_slot | 2.5 M | 0.21 | 12.0 M "
      "| 9.0 M | 7.0 M |  |  | needs ~30.0 GiB, 17.0 GiB available | "
      "165 (136) | 101 (72) |  |",
  ]
  assert ("100 M ids at dim 16 need about 15 GiB with adagrad entries and "
          "9 GiB with sgd entries.") in block
  # A larger size where ours was not measured (a child killed): said, and
  # the sizing stays with the largest point measured.
  out = gen.render_document(ALL_TABLES, _runs(multi_hash_table_scale=SCALE + [
      json.dumps({"bench": "multi_hash_table_scale", "dim": 16, "tables": 8,
                  "ids": 64000000, "batch": 65536, "optimizer": "adagrad",
                  "repeats": 11, "skipped": "the child exited with -9"})]))
  block = _block(out, "multi_hash_table_scale")
  assert ("| 16 | 64,000,000 | (ours skipped: the child exited with -9) |"
          + "  |" * 11) in block
  assert ("Sizing a PS from the largest point measured (16,000,000 ids at "
          "dim 16)") in block


def test_multi_hash_table_rows():
  out = gen.render_document(ALL_TABLES,
                            _runs(multi_hash_table_benchmark=MULTI))
  block = _block(out, "multi_hash_table")
  rows = [l for l in block.splitlines() if l.startswith("| 16")]
  assert rows == [
      "| 16 | MultiHashTable | 5.5 M | 23.2 M | 19.0 M | 181 (SGD entries: "
      "112) |  |  |  |",
      "| 16 | DenseHashTable single | 3.1 M | 11.2 M |  | 291 (buckets 151) "
      "| 2.07 | 1.96 | 0.62 |",
      "| 16 | MutableHashTable single | 3.1 M | 3.0 M |  | 291 | 7.73 | "
      "7.33 | 0.62 |",
  ]
  saves = _block(out, "multi_hash_table_save_restore")
  assert ("| 16 | SNAPPY | 109 MB, 4 shards | 547 | 460 | 527 | 2601 | 0.21 "
          "| 0.18 |") in saves
  assert ("| 16 | uncompressed | 193 MB, 4 shards | 1916 | 756 | 876 | 2650 "
          "| 0.72 | 0.28 |") in saves


def test_multi_hash_table_rows_of_a_run_without_memory_figures():
  # --parts=throughput measures no memory: its byte figures are null.
  line = json.loads(_multi_line("DenseHashTable", "single", 11200000, None))
  for key in ("bytes_per_entry", "sgd_bytes_per_entry", "peer_bytes_per_entry",
              "bytes_per_entry_ratio"):
    line[key] = None
  out = gen.render_document(
      ALL_TABLES, _runs(multi_hash_table_benchmark=[json.dumps(line)]))
  rows = [l for l in _block(out, "multi_hash_table").splitlines()
          if l.startswith("| 16")]
  assert rows == [
      "| 16 | MultiHashTable | 5.5 M | 23.2 M | 19.0 M |  |  |  |  |",
      "| 16 | DenseHashTable single | 3.1 M | 11.2 M |  |  | 2.07 | 1.96 |  |",
  ]


def test_warmup_and_random_rows():
  out = gen.render_document(
      ALL_TABLES,
      _runs(warmup_data_gen_benchmark=WARMUP, data_gen_benchmark=RANDOM))
  warmup = _block(out, "warmup_data_gen")
  assert "| sort_id | framing | 156,938 | 40.6 | 6178 | 0.0066 |" in warmup
  assert "| lagrangex | off | 517,535 | 127.9 | 6320 | 0.0202 |" in warmup
  random_gen = _block(out, "random_gen")
  assert ("| variant | batch | records/s | requests/s | bytes/record | MB/s |"
          in random_gen)
  assert "| instance | 256 | 14,949 | 58.4 | 710 | 10.6 |" in random_gen


def test_tfra_peer_rows():
  out = gen.render_document(ALL_TABLES, _runs(tfra_peer_benchmark=TFRA))
  block = _block(out, "tfra_peer")
  assert ("| ids | dim | op | ours ids/s | TFRA ids/s | ours / TFRA | bar |"
          in block)
  assert "| 1,000,000 | 16 | lookup | 26.0 M | 8.0 M | 3.25 | >= 3: met |" in block
  assert ("| 1,000,000 | 16 | apply_gradients | 12.0 M | 4.0 M | 3.00 | "
          ">= 4: **missed** |") in block
  assert ("| 16,000,000 | 16 | lookup | 20.0 M | skipped |  | >= 3: - |"
          in block)
  assert "| 1,000,000 | 16 | 181 | 200 | 400 | 0.45 |" in block
  assert "| 16,000,000 | 16 | 181 |  |  |  |" in block
  assert "1,000,000 ids dim 16 3.5 M" in block
  assert ("skipped: 16,000,000 ids dim 16: tfra needs ~12.0 GiB, 7.0 GiB "
          "available.") in block


def test_gpu_table_rows_and_find_bar():
  # The bar: find >= 6 B keys/s at dim 32, and >= 1.2x HKV at every dim.
  runs = _runs(gpu_table_benchmark=[
      _gpu_line(32, 7.1e9, 1.42),
      _gpu_line(32, 5.9e9, 1.5),
      _gpu_line(128, 2.0e9, 1.3),
      _gpu_line(128, 2.0e9, 1.1),
  ])
  rows = [
      r for r in _block(gen.render_document(ALL_TABLES, runs),
                        "gpu_table").splitlines() if r.startswith("| NVIDIA")
  ]
  assert len(rows) == 4
  assert "| 7.10 B | 5.00 B | 1.42 |" in rows[0]
  assert [r.rsplit("|", 2)[1].strip() for r in rows] == [
      "met", "**missed**", "met", "**missed**"
  ]
  # Judged from the rates, not from the ratio rounded to 1.20.
  rows = _block(gen.render_document(ALL_TABLES, _runs(
      gpu_table_benchmark=[_gpu_line(128, 2.0e9, 1.1996)])), "gpu_table")
  assert "| 1.20 |" in rows and "**missed**" in rows
  # A run whose table lost keys failed (its finds of them missed).
  line = json.loads(_gpu_line(32, 7.1e9, 1.42))
  line.update(keys_kept=line["keys"] - 1, peer_keys_kept=line["keys"])
  with pytest.raises(gen.FormatError, match="gpu_table_benchmark.jsonl: a "
                     "run whose table kept 16777215 of 16777216 keys"):
    gen.render_document(ALL_TABLES,
                        _runs(gpu_table_benchmark=[json.dumps(line)]))


def test_missing_run_names_the_command():
  out = gen.render_document(ALL_TABLES, {})
  for table in gen.TABLES:
    block = _block(out, table.id)
    assert f"_Not yet generated: run `{gen.BENCHMARKS[table.target]}" in block
    assert gen.BENCHMARKS[table.target].startswith("./bazelw run -c opt ")
    assert f"record {table.target} < /tmp/run.txt`" in block


def test_text_outside_markers_is_kept_and_rendering_is_stable():
  doc = "# Title\n\nintro\n\n" + ALL_TABLES + "closing words\n"
  runs = _runs(hash_table_benchmark=HASH_TABLE, data_gen_benchmark=RANDOM)
  once = gen.render_document(doc, runs)
  assert once.startswith("# Title\n\nintro\n\n<!-- benchmark-table: ")
  assert once.endswith("closing words\n")
  assert gen.render_document(once, runs) == once


def test_latest_run_wins():
  older = dict(HEADER, date="2024-12-31")
  text = (gen.format_run(older, [json.loads(RANDOM[0])]) +
          gen.format_run(HEADER, [dict(json.loads(RANDOM[0]),
                                       records_per_s=20000)]))
  runs = gen.parse_runs(text, "data_gen_benchmark.jsonl")
  assert len(runs) == 2
  out = gen.render_document(ALL_TABLES, {"data_gen_benchmark": runs[-1]})
  assert "| instance | 256 | 20,000 |" in _block(out, "random_gen")


@pytest.mark.parametrize("text,message", [
    (RANDOM[0] + "\n", "x.jsonl:1: a benchmark line before the header"),
    ('{"command": "c"}\n', "x.jsonl:1: the header line needs a non-empty "
     "string 'machine'"),
    ('{"command": "c", "machine": "m"}\nnot json\n', "x.jsonl:2: not a JSON"),
    ('[1]\n', "x.jsonl:1: not a JSON object"),
])
def test_malformed_runs(text, message):
  with pytest.raises(gen.FormatError, match=re.escape(message)):
    gen.parse_runs(text, "x.jsonl")


def test_a_line_missing_a_key_names_the_table():
  line = json.loads(RANDOM[0])
  del line["mb_per_s"]
  runs = _runs(data_gen_benchmark=[json.dumps(line)])
  with pytest.raises(gen.FormatError, match="'mb_per_s'"):
    gen.render_document(ALL_TABLES, runs)


@pytest.mark.parametrize("doc,message", [
    ("<!-- benchmark-table: nope -->\n<!-- /benchmark-table: nope -->",
     "unknown benchmark table 'nope'"),
    ("<!-- benchmark-table: random_gen -->\n", "has no closing marker"),
    ("<!-- /benchmark-table: random_gen -->\n", "without its opening"),
])
def test_malformed_markers(doc, message):
  with pytest.raises(gen.FormatError, match=message):
    gen.render_document(doc, {})


def test_benchmark_lines_keep_only_json_with_bench():
  stdout = [
      "variant_type    batch  records\n",
      "-------------------------------\n",
      "instance          256     5120\n",
      'dim 16 MultiHashTable:adagrad: {"bytes_per_entry": 181.0}\n',
      '{"bytes_per_entry": 181.0}\n',
      "{not json\n",
      RANDOM[0] + "\n",
  ]
  assert gen.benchmark_lines(stdout) == [json.loads(RANDOM[0])]
  # A run cut short mid-line is refused, not recorded as a whole run.
  with pytest.raises(gen.FormatError, match="line 2 .* cut JSON line"):
    gen.benchmark_lines([RANDOM[0] + "\n", RANDOM[0][:40]])


def test_record_then_check(tmp_path, monkeypatch, capsys):
  doc = tmp_path / "benchmarks.md"
  doc.write_text("intro\n" + ALL_TABLES)
  runs_dir = tmp_path / "runs"
  flags = ["--doc", str(doc), "--runs_dir", str(runs_dir)]
  assert gen.main(flags + ["--check"]) == 1  # "old text" is stale
  assert gen.main(flags) == 0
  assert gen.main(flags + ["--check"]) == 0

  monkeypatch.setattr("sys.stdin",
                      io.StringIO("a table line\n" + "\n".join(RANDOM) + "\n"))
  assert gen.main(flags + ["record", "data_gen_benchmark",
                           "--machine=Test CPU"]) == 0
  saved = (runs_dir / "data_gen_benchmark.jsonl").read_text().splitlines()
  header = json.loads(saved[0])
  assert header["command"] == gen.BENCHMARKS["data_gen_benchmark"]
  assert header["machine"] == "Test CPU"
  assert re.fullmatch(r"\d{4}-\d\d-\d\d", header["date"])
  assert [json.loads(l) for l in saved[1:]] == [json.loads(l) for l in RANDOM]
  text = doc.read_text()
  assert "| instance | 256 | 14,949 | 58.4 | 710 | 10.6 |" in text
  assert "on Test CPU (" in text
  assert gen.main(flags + ["--check"]) == 0

  monkeypatch.setattr("sys.stdin", io.StringIO("no json here\n"))
  assert gen.main(flags + ["record", "data_gen_benchmark"]) == 1
  assert "no benchmark JSON lines" in capsys.readouterr().err


def test_last_level_cache_is_the_highest_level(tmp_path):
  for index, (level, size) in enumerate([(1, "32K"), (1, "32K"), (2, "1024K"),
                                         (3, "16384K")]):
    os.makedirs(tmp_path / f"index{index}")
    (tmp_path / f"index{index}" / "level").write_text(f"{level}\n")
    (tmp_path / f"index{index}" / "size").write_text(f"{size}\n")
  assert gen.last_level_cache(str(tmp_path)) == "16 MiB L3"
  (tmp_path / "index3" / "size").write_text("1536K\n")
  assert gen.last_level_cache(str(tmp_path)) == "1536 KiB L3"
  (tmp_path / "index3" / "size").write_text("garbage\n")
  assert gen.last_level_cache(str(tmp_path)) == "1 MiB L2"
  assert gen.last_level_cache(str(tmp_path / "missing")) is None


def test_unknown_run_file_is_an_error(tmp_path):
  (tmp_path / "mystery.jsonl").write_text("")
  with pytest.raises(gen.FormatError, match="not a known benchmark"):
    gen.load_runs(str(tmp_path))


_SOURCES = {
    "hash_table_benchmark":
        "monolith/native_training/runtime/hash_table/hash_table_benchmark.cc",
    "multi_hash_table_benchmark":
        "monolith/native_training/multi_hash_table_benchmark.py",
    "multi_hash_table_scale":
        "monolith/native_training/multi_hash_table_benchmark.py",
    "warmup_data_gen_benchmark":
        "monolith/native_training/model_export/warmup_data_gen_benchmark.py",
    "data_gen_benchmark":
        "monolith/native_training/model_export/data_gen_benchmark.py",
    "distributed_ps_benchmark":
        "monolith/native_training/distributed_ps_benchmark.py",
    "hash_filter_benchmark":
        "monolith/native_training/hash_filter_benchmark.py",
    "tfra_peer_benchmark": "benchmarks/tfra/tfra_peer_benchmark.py",
    "gpu_table_benchmark":
        "monolith/native_training/runtime/hash_table/gpu/"
        "gpu_table_benchmark.cu.cc",
}


@pytest.mark.parametrize("table", gen.TABLES, ids=lambda t: t.id)
def test_benchmarks_still_print_what_the_tables_read(table):
  with open(os.path.join(ROOT, _SOURCES[table.target]), encoding="utf-8") as f:
    source = f.read()
  assert re.search(r'\\?"%s\\?"' % re.escape(table.bench), source), table.bench
  for key in table.keys:
    assert re.search(r'\\?"%s\\?"' % re.escape(key), source), (
        f"{_SOURCES[table.target]} no longer prints {key!r}")
  target = _SOURCES[table.target].rsplit("/", 1)
  command = gen.BENCHMARKS[table.target].split(" -- ")[0]
  assert command.endswith(":" + re.sub(r"(\.cu)?\.(cc|py)$", "", target[1]))


def test_committed_tables_are_up_to_date():
  with open(os.path.join(HERE, "benchmarks.md"), encoding="utf-8") as f:
    text = f.read()
  runs = gen.load_runs(os.path.join(HERE, "benchmarks"))
  assert gen.render_document(text, runs) == text, (
      "docs/benchmarks.md is stale: run python3 docs/gen_benchmark_tables.py")
  for table in gen.TABLES:
    assert gen._BEGIN.format(table.id) in text, table.id
