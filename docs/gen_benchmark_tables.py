"""Renders the benchmark tables of docs/benchmarks.md from saved runs.

A saved run is what a benchmark printed, kept as JSON lines in
`docs/benchmarks/<target>.jsonl`, one file per benchmark target:

* a header line, a JSON object with no "bench" key:
  {"command": "<how it was run>", "machine": "<what it ran on>",
   "date": "YYYY-MM-DD", "commit": "<git revision>"}
  ("command" and "machine" are required, the others optional);
* then the benchmark's own JSON lines, unchanged: one object per line,
  each with a "bench" key ("hash_table", "multi_hash_table", ...).

Blank lines are ignored. A file may hold several runs, each starting with
its header; the tables show the last one. `record` writes a file with one
run.

The tables sit between marker comments in docs/benchmarks.md,

    <!-- benchmark-table: ID -->
    ...
    <!-- /benchmark-table: ID -->

and everything between a pair is replaced; text outside the markers is
kept. A table whose benchmark has no saved run says so, with the command
to run.

    # Save a run once it exited 0 (reads the benchmark's stdout; keeps only
    # its JSON lines; --command gives the flags it ran with), then rewrite
    # the tables:
    ./bazelw run -c opt //monolith/native_training/runtime/hash_table:hash_table_benchmark \
        > /tmp/run.txt && python3 docs/gen_benchmark_tables.py record \
        hash_table_benchmark [--command="..."] < /tmp/run.txt
    # Rewrite the tables from the saved runs:
    python3 docs/gen_benchmark_tables.py      # or ./bazelw run //docs:gen_benchmark_tables
    # Exit 1 if docs/benchmarks.md is not what the saved runs give:
    python3 docs/gen_benchmark_tables.py --check

Standard library only.
"""

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from typing import Callable, Dict, Iterable, List, Optional, Sequence

# The benchmark targets, by the name of their saved-run file.
BENCHMARKS = {
    "hash_table_benchmark":
        "./bazelw run -c opt "
        "//monolith/native_training/runtime/hash_table:hash_table_benchmark",
    "multi_hash_table_benchmark":
        "./bazelw run -c opt "
        "//monolith/native_training:multi_hash_table_benchmark",
    "multi_hash_table_scale":
        "./bazelw run -c opt "
        "//monolith/native_training:multi_hash_table_benchmark "
        "-- --parts=scale --dims=16",
    "warmup_data_gen_benchmark":
        "./bazelw run -c opt "
        "//monolith/native_training/model_export:warmup_data_gen_benchmark",
    "data_gen_benchmark":
        "./bazelw run -c opt "
        "//monolith/native_training/model_export:data_gen_benchmark",
    "distributed_ps_benchmark":
        "./bazelw run -c opt "
        "//monolith/native_training:distributed_ps_benchmark",
    "hash_filter_benchmark":
        "./bazelw run -c opt "
        "//monolith/native_training:hash_filter_benchmark",
    "tfra_peer_benchmark":
        "./bazelw run -c opt //benchmarks/tfra:tfra_peer_benchmark",
    "gpu_table_benchmark":
        "./bazelw run -c opt --config=cuda "
        "//monolith/native_training/runtime/hash_table/gpu:gpu_table_benchmark",
}

_BEGIN = "<!-- benchmark-table: {} -->"
_END = "<!-- /benchmark-table: {} -->"
_MARKER = re.compile(r"<!-- (/?)benchmark-table: ([a-z0-9_]+) -->")


class FormatError(ValueError):
  """A saved run or the document is malformed."""


@dataclasses.dataclass
class Run:
  """One saved run: its header and the benchmark's JSON lines."""
  header: Dict
  lines: List[Dict]

  def of(self, bench: str) -> List[Dict]:
    return [line for line in self.lines if line.get("bench") == bench]


# ---------------------------------------------------------------------------
# Saved runs.


def parse_runs(text: str, name: str) -> List[Run]:
  """The runs of a .jsonl file's text; FormatError naming `name:line`."""
  runs = []
  for number, raw in enumerate(text.splitlines(), 1):
    if not raw.strip():
      continue
    try:
      obj = json.loads(raw)
    except ValueError as e:
      raise FormatError(f"{name}:{number}: not a JSON line: {e}") from None
    if not isinstance(obj, dict):
      raise FormatError(f"{name}:{number}: not a JSON object")
    if "bench" in obj:
      if not runs:
        raise FormatError(f"{name}:{number}: a benchmark line before the "
                          "header line (command, machine)")
      runs[-1].lines.append(obj)
      continue
    for key in ("command", "machine"):
      if not isinstance(obj.get(key), str) or not obj[key]:
        raise FormatError(f"{name}:{number}: the header line needs a "
                          f"non-empty string {key!r}")
    runs.append(Run(obj, []))
  return runs


def load_runs(runs_dir: str) -> Dict[str, Run]:
  """The latest run of each `<target>.jsonl` in runs_dir, by target."""
  latest = {}
  if not os.path.isdir(runs_dir):
    return latest
  for file_name in sorted(os.listdir(runs_dir)):
    if not file_name.endswith(".jsonl"):
      continue
    target = file_name[:-len(".jsonl")]
    if target not in BENCHMARKS:
      raise FormatError(f"{os.path.join(runs_dir, file_name)}: not a known "
                        f"benchmark (known: {', '.join(BENCHMARKS)})")
    path = os.path.join(runs_dir, file_name)
    with open(path, encoding="utf-8") as f:
      runs = parse_runs(f.read(), path)
    if runs:
      latest[target] = runs[-1]
  return latest


def benchmark_lines(output: Iterable[str]) -> List[Dict]:
  """The JSON lines (objects with a "bench" key) of a benchmark's stdout.

  Raises:
    FormatError: a line that begins as one of them (`{"bench"`) does not
      parse: the run was cut short, and recording it would replace a whole
      run with part of one.
  """
  lines = []
  for number, raw in enumerate(output, 1):
    raw = raw.strip()
    if not raw.startswith("{"):
      continue
    try:
      obj = json.loads(raw)
    except ValueError:
      if re.match(r'\{\s*"bench"', raw):
        raise FormatError(
            f"line {number} of the benchmark's output is a cut JSON line "
            f"({raw[:60]!r}...): was the run stopped? Nothing recorded")
      continue
    if isinstance(obj, dict) and "bench" in obj:
      lines.append(obj)
  return lines


def last_level_cache(
    caches: str = "/sys/devices/system/cpu/cpu0/cache") -> Optional[str]:
  """The size of CPU 0's last-level cache, e.g. "16 MiB L3", or None.

  Tables of memory-bound benchmarks depend on it (a table that fits in one
  host's cache does not in another's), and a VM's CPU model does not say it.
  """
  best = None
  try:
    for index in sorted(os.listdir(caches)):
      try:
        with open(os.path.join(caches, index, "level"), encoding="utf-8") as f:
          level = int(f.read())
        with open(os.path.join(caches, index, "size"), encoding="utf-8") as f:
          size = f.read().strip()
      except (OSError, ValueError):
        continue
      if size.endswith("K") and size[:-1].isdigit() and (
          best is None or level > best[0]):
        best = (level, int(size[:-1]))
  except OSError:
    return None
  if best is None:
    return None
  level, kib = best
  amount = f"{kib >> 10} MiB" if kib % 1024 == 0 else f"{kib} KiB"
  return f"{amount} L{level}"


def describe_machine() -> str:
  """CPU model, logical CPUs, last-level cache, memory and kernel."""
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  parts = [model, f"{os.cpu_count()} CPUs"]
  cache = last_level_cache()
  if cache:
    parts.append(cache)
  try:
    with open("/proc/meminfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("MemTotal:"):
          kib = int(line.split()[1])
          parts.append(f"{kib / (1 << 20):.0f} GiB")
          break
  except (OSError, ValueError, IndexError):
    pass
  parts.append(f"{platform.system()} {platform.release()}")
  return ", ".join(parts)


def git_commit(root: str) -> Optional[str]:
  """The checkout's short revision, with -dirty for local changes."""
  try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                            cwd=root, check=True, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain",
                            "--untracked-files=no"],
                           cwd=root, check=True, capture_output=True,
                           text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None
  return commit + ("-dirty" if dirty else "")


def format_run(header: Dict, lines: Sequence[Dict]) -> str:
  """A .jsonl file's text: the header line, then the benchmark lines."""
  return "".join(json.dumps(obj) + "\n" for obj in [header, *lines])


# ---------------------------------------------------------------------------
# Tables.


def _millions(value) -> str:
  return "" if value is None else f"{value / 1e6:.1f} M"


def _count(value) -> str:
  return "" if value is None else f"{round(value):,}"


def _fixed(digits: int) -> Callable[[Optional[float]], str]:
  return lambda value: "" if value is None else f"{value:.{digits}f}"


def _markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
  out = ["| " + " | ".join(header) + " |",
         "|" + "---|" * len(header)]
  for row in rows:
    out.append("| " + " | ".join(row) + " |")
  return "\n".join(out)


def _hash_table(lines: List[Dict]) -> str:
  rows = []
  for r in lines:
    if "skipped" in r:  # a size that would not fit in memory
      rows.append([str(r["dim"]), _count(r["ids"]),
                   f"(skipped: {r['skipped']})"] + [""] * 14)
      continue
    one = r["threads"] == 1
    rows.append([
        str(r["dim"]),
        _count(r["ids"]),
        str(r["threads"]),
        _millions(r["insert_ids_per_s"]) if one else "",
        _millions(r["insert_fresh_memory_ids_per_s"]) if one else "",
        _millions(r["insert_steady_ids_per_s"]) if one else "",
        _fixed(2)(r["insert_ratio_vs_lookup"]) if one else "",
        _fixed(2)(r["steady_insert_ratio_vs_lookup"]) if one else "",
        _millions(r["assign_ids_per_s"]),
        _millions(r["lookup_ids_per_s"]),
        _millions(r["optimize_ids_per_s"]),
        _millions(r["peer_lookup_ids_per_s"]),
        _fixed(2)(r["lookup_ratio_vs_peer"]),
        # Runs before median_round_ratio_vs_1thread put ours 2 / 1 threads
        # in a 2-thread row's median_round_ratio: no ratio to the map.
        _fixed(2)(r["median_round_ratio"])
        if one or "median_round_ratio_vs_1thread" in r else "",
        _fixed(2)(r["lookup_ratio_vs_1thread"]),
        "" if one else _fixed(2)(
            r.get("median_round_ratio_vs_1thread",
                  r["median_round_ratio"])),
        "" if one else _fixed(2)(r["peer_median_ratio_vs_1thread"]),
    ])
  table = _markdown([
      "dim", "ids", "threads", "insert/s", "insert/s (fresh memory)",
      "insert/s (steady)", "insert / lookup", "steady / lookup", "assign/s", "lookup/s", "adagrad/s", "map lookup/s",
      "lookup vs map", "median of rounds vs map", "vs 1 thread",
      "median of rounds vs 1 thread", "map's 2/1 threads"
  ], rows)
  sizes = _markdown([
      "dim", "ids", "bytes/entry (payload)", "table's own count",
      "map bytes/entry", "map insert/s (fresh memory)",
      "fresh-memory insert vs map", "random 64 B reads/s",
      "lookup / random reads", "random line pairs/s (one 4 KiB page)",
      "random line pairs/s (two pages)", "lookup / two-page pairs",
      "longest lookup stall (ms)", "longest host pause (ms)", "longest stall outside host pauses (ms)",
      "longest lookup, no writer (ms)", "longest shard growth (ms)"
  ], ([
      str(r["dim"]),
      _count(r["ids"]),
      f"{r['bytes_per_entry']:.0f} ({r['payload_bytes_per_entry']:.0f})",
      f"{r['table_bytes_per_entry']:.0f}",
      f"{r['peer_bytes_per_entry']:.0f}",
      _millions(r["peer_insert_ids_per_s"]),
      _fixed(2)(r["fresh_insert_ratio_vs_peer"]),
      _millions(r["random_64b_reads_per_s"]),
      _fixed(2)(r["lookup_ratio_vs_random_reads"]),
      _millions(r["random_same_page_pairs_per_s"]),
      _millions(r["random_two_page_pairs_per_s"]),
      _fixed(2)(r["lookup_ratio_vs_two_page_pairs"]),
      _fixed(1)(r["longest_lookup_stall_ms"]),
      _fixed(1)(r["longest_host_pause_ms"]),
      _fixed(1)(r["longest_lookup_stall_outside_host_pauses_ms"]),
      _fixed(1)(r["longest_lookup_without_writer_ms"]),
      _fixed(1)(r["longest_shard_growth_ms"]),
  ] for r in lines if r.get("threads") == 1))
  return (table + "\n\nPer size (one thread; the random reads come from a "
          "buffer as large as the table):\n\n" + sizes)


def _multi_hash_table_scale(lines: List[Dict]) -> str:
  rows = []
  for r in lines:
    if "skipped" in r:  # ours not measured at this size
      rows.append([str(r["dim"]), _count(r["ids"]),
                   f"(ours skipped: {r['skipped']})"] + [""] * 11)
      continue
    rows.append([
        str(r["dim"]),
        _count(r["ids"]),
        f"{r['peer']}/{r['peer_layout']}",
        _millions(r["insert_ids_per_s"]),
        _fixed(2)(r["insert_ratio_vs_lookup"]),
        _millions(r["lookup_ids_per_s"]),
        _millions(r["update_ids_per_s"]),
        _millions(r["apply_gradients_ids_per_s"]),
        _millions(r.get("peer_insert_ids_per_s")),
        _millions(r.get("peer_lookup_ids_per_s")),
        _fixed(2)(r.get("lookup_ratio")) or r.get("peer_skipped", ""),
        f"{r['bytes_per_entry']:.0f} ({r['payload_bytes_per_entry']})",
        (f"{r['sgd_bytes_per_entry']:.0f} "
         f"({r['sgd_payload_bytes_per_entry']})"
         if r["sgd_bytes_per_entry"] is not None else ""),
        _fixed(0)(r.get("peer_bytes_per_entry")),
    ])
  table = _markdown([
      "dim", "ids", "peer", "insert/s", "insert / lookup", "lookup/s",
      "assign/s", "adagrad/s", "peer insert/s", "peer lookup/s",
      "lookup vs peer", "bytes/entry adagrad (payload)",
      "bytes/entry sgd (payload)", "peer bytes/entry"
  ], rows)
  largest = max((r for r in lines if "skipped" not in r),
                key=lambda r: (r["dim"] == 16, r["ids"]))
  gib = 100e6 * largest["bytes_per_entry"] / (1 << 30)
  sgd = largest["sgd_bytes_per_entry"]
  sizing = (f"\n\nSizing a PS from the largest point measured "
            f"({_count(largest['ids'])} ids at dim {largest['dim']}): "
            f"100 M ids at dim {largest['dim']} need about {gib:.0f} GiB "
            "with adagrad entries")
  if sgd is not None:
    sizing += f" and {100e6 * sgd / (1 << 30):.0f} GiB with sgd entries"
  return table + sizing + "."


def _multi_hash_table(lines: List[Dict]) -> str:
  rows = []
  done_dims = set()
  for r in lines:
    if r["dim"] not in done_dims:
      done_dims.add(r["dim"])
      rows.append([
          str(r["dim"]), "MultiHashTable",
          _millions(r["insert_ids_per_s"]),
          _millions(r["lookup_ids_per_s"]),
          _millions(r["apply_gradients_ids_per_s"]),
          # None: a run without memory figures (--parts=throughput).
          "" if r["bytes_per_entry"] is None else
          f"{r['bytes_per_entry']:.0f} (SGD entries: "
          f"{_fixed(0)(r['sgd_bytes_per_entry'])})", "", "", ""
      ])
    buckets = r.get("peer_bucket_bytes_per_entry")
    rows.append([
        str(r["dim"]), f"{r['peer']} {r['peer_layout']}",
        _millions(r["peer_insert_ids_per_s"]),
        _millions(r["peer_lookup_ids_per_s"]), "",
        _fixed(0)(r["peer_bytes_per_entry"]) +
        ("" if buckets is None else f" (buckets {buckets:.0f})"),
        _fixed(2)(r["lookup_ratio"]),
        _fixed(2)(r.get("median_round_lookup_ratio")),
        _fixed(2)(r["bytes_per_entry_ratio"])
    ])
  return _markdown([
      "dim", "structure", "insert/s", "lookup/s", "adagrad/s", "bytes/entry",
      "ours/peer lookup", "median of rounds", "ours/peer bytes"
  ], rows)


def _multi_hash_table_save_restore(lines: List[Dict]) -> str:
  rows = []
  for r in lines:
    rows.append([
        str(r["dim"]),
        r["compression_type"] or "uncompressed",
        f"{r['ckpt_bytes'] / 1e6:.0f} MB, {r['shards']} shards",
        _fixed(0)(r["save_mb_per_s"]),
        _fixed(0)(r["restore_mb_per_s"]),
        _fixed(0)(r.get("serving_restore_mb_per_s")),
        _fixed(0)(r["copy_mb_per_s"]),
        _fixed(2)(r["save_ratio_vs_copy"]),
        _fixed(2)(r["restore_ratio_vs_copy"]),
    ])
  return _markdown([
      "dim", "compression", "checkpoint (shards)", "save MB/s", "restore MB/s",
      "into SERVING MB/s", "copy MB/s", "save / copy", "restore / copy"
  ], rows)


def _warmup_data_gen(lines: List[Dict]) -> str:
  return _markdown(
      ["layout", "validation", "records/s", "MB/s", "plain read MB/s",
       "ratio"],
      ([
          r["layout"], r["validation"],
          _count(r["records_per_s"]),
          _fixed(1)(r["mb_per_s"]),
          _fixed(0)(r["peer_mb_per_s"]),
          _fixed(4)(r["ratio"])
      ] for r in lines))


def _random_gen(lines: List[Dict]) -> str:
  return _markdown(
      ["variant", "batch", "records/s", "requests/s", "bytes/record", "MB/s"],
      ([
          r["variant_type"],
          str(r["batch_size"]),
          _count(r["records_per_s"]),
          _fixed(1)(r["requests_per_s"]),
          _count(r["bytes_per_record"]),
          _fixed(1)(r["mb_per_s"])
      ] for r in lines))


def _cpu(ours: Optional[float], peer: Optional[float]) -> str:
  """CPU ns per id, the peer's in parentheses; blank where not measured."""
  if ours is None:
    return ""
  return f"{ours:.0f}" + ("" if peer is None else f" ({peer:.0f})")


def _distributed_ps(lines: List[Dict]) -> str:
  rows = []
  for r in lines:
    rows.append([
        r["op"],
        str(r["dim"]),
        str(r["num_ps"]),
        "yes" if r["dedup"] else "no",
        "yes" if r["float16"] else "no",
        _millions(r["ids_per_s"]),
        _millions(r["peer_ids_per_s"]),
        _fixed(2)(r["ratio"]) + (
            "" if r.get("median_round_ratio") is None else
            f" ({r['median_round_ratio']:.2f})"),
        _millions(r["in_process_ids_per_s"]),
        _fixed(2)(r["ratio_vs_in_process"]),
        f"{r['wire_bytes_per_id']:.1f} ({r['payload_bytes_per_id']:.1f})",
        _fixed(3)(r["wire_bytes_ratio_vs_float32"]) if r["float16"] else "",
        # Runs before the CPU was measured lack it.
        _cpu(r.get("cpu_ns_per_id"), r.get("peer_cpu_ns_per_id")),
    ])
  table = _markdown([
      "op", "dim", "PS", "dedup", "fp16", "ids/s", "tf.Variable ids/s",
      "vs tf.Variable (median of rounds)", "in-process ids/s",
      "vs in-process",
      "wire B/id (payload)", "fp16/fp32 bytes",
      "CPU ns/id (tf.Variable)"
  ], rows)
  notes = []
  transport = [
      f"dim {r['dim']} {'float16' if r['float16'] else 'float32'} "
      f"{_millions(r['transport_only_ids_per_s'])}"
      for r in lines
      if r.get("transport_only_ids_per_s") is not None and not r["dedup"]
  ]
  if transport:
    notes.append("transport only (the ids to 1 PS, then [batch, dim] back; "
                 "no table work, no worker ops), ids/s: " +
                 ", ".join(transport))
  empty = [r for r in lines if r.get("empty_ps_run_us") is not None]
  if empty:
    notes.append("an empty session.run costs " + ", ".join(
        f"{r['empty_ps_run_us']:,} us with a no-op on a PS and "
        f"{r['empty_worker_run_us']:,} us without (dim {r['dim']} graph)"
        for r in empty if not r["dedup"] and not r["float16"]))
  if notes:
    table += "\n\nIn the same run: " + "; ".join(notes) + "."
  return table


def _hash_filter(lines: List[Dict]) -> str:
  return _markdown(
      ["op", "dim", "batch", "ids (Zipf s)", "threshold", "sliding filter "
       "ids/s", "dummy filter ids/s", "ratio (median of rounds)", "bar"],
      ([
          r["op"], str(r["dim"]), _count(r["batch"]),
          f"{_count(r['distinct_ids'])} ({r['zipf_s']})",
          str(r["threshold"]), _millions(r["ids_per_s"]),
          _millions(r["peer_ids_per_s"]), _fixed(2)(r["ratio"]),
          f">= {r['target_ratio']}: " +
          ("met" if r["ratio"] >= r["target_ratio"] else "**missed**")
      ] for r in lines))


def _eviction(lines: List[Dict]) -> str:
  return _markdown(
      ["entries", "dim", "evicted", "seconds", "entries/s", "table RSS MB",
       "RSS given back MB", "share given back"],
      ([
          _count(r["entries"]), str(r["dim"]), _count(r["evicted"]),
          _fixed(3)(r["seconds"]), _millions(r["entries_per_s"]),
          _fixed(0)(r["rss_table_mb"]), _fixed(0)(r["rss_recovered_mb"]),
          f"{r['recovered_share']:.0%}"
      ] for r in lines))


# The GPU table's targets (issue 16, on an H200): find at least 6 B keys/s
# at dim 32, and at least 1.2x HierarchicalKV's find in the same run.
_GPU_FIND_KEYS_PER_S = 6e9
_GPU_FIND_RATIO = 1.2


def _gpu_table(lines: List[Dict]) -> str:
  for r in lines:
    if "keys_kept" in r and r["keys_kept"] != r["keys"]:
      # The benchmark failed (it prints its lines first): finds of keys
      # our table lost miss, and run faster.
      raise FormatError(f"a run whose table kept {r['keys_kept']} of "
                        f"{r['keys']} keys (dim {r['dim']}, load "
                        f"{r['load_factor']}) failed: not recorded")

  def billions(value) -> str:
    return f"{value / 1e9:.2f} B"

  def bar(r: Dict) -> str:
    # From the rates: the printed ratio is rounded.
    ok = r["find_keys_per_s"] >= _GPU_FIND_RATIO * r["peer_find_keys_per_s"]
    if r["dim"] == 32:
      ok = ok and r["find_keys_per_s"] >= _GPU_FIND_KEYS_PER_S
    return "met" if ok else "**missed**"

  return _markdown(
      ["device", "dim", "load", "keys", "batch", "find/s", "HKV find/s",
       "find vs HKV", "upsert/s", "HKV upsert/s", "upsert vs HKV",
       "adagrad/s", "HKV keys kept", "find bar"],
      ([
          r["device"], str(r["dim"]), _fixed(1)(r["load_factor"]),
          _count(r["keys"]), _count(r["batch"]),
          billions(r["find_keys_per_s"]), billions(r["peer_find_keys_per_s"]),
          _fixed(2)(r["find_ratio_vs_peer"]),
          billions(r["upsert_keys_per_s"]),
          billions(r["peer_upsert_keys_per_s"]),
          _fixed(2)(r["upsert_ratio_vs_peer"]),
          billions(r["adagrad_keys_per_s"]),
          _count(r["peer_keys_kept"]) if "peer_keys_kept" in r else "",
          bar(r)
      ] for r in lines))


def _tfra_peer(lines: List[Dict]) -> str:
  def rate(value, skipped):
    return "skipped" if value is None and skipped else _millions(value)

  def bar(r):
    if r["target_ratio"] is None:
      return ""
    verdict = ("-" if r["bar_met"] is None else
               "met" if r["bar_met"] else "**missed**")
    return f">= {r['target_ratio']:g}: {verdict}"

  table = _markdown(
      ["ids", "dim", "op", "ours ids/s", "TFRA ids/s", "ours / TFRA", "bar"],
      ([
          _count(r["ids"]), str(r["dim"]), r["op"],
          rate(r["ids_per_s"], r["skipped"]),
          rate(r["peer_ids_per_s"], r["skipped"]),
          _fixed(2)(r["ratio"]), bar(r)
      ] for r in lines))

  def bytes_(value):
    return "" if value is None else f"{value:.0f}"

  memory = _markdown(
      ["ids", "dim", "ours bytes/entry (adagrad entries)",
       "TFRA values only", "TFRA values + Adagrad accumulators",
       "ours / TFRA"],
      ([
          _count(r["ids"]), str(r["dim"]), bytes_(r["bytes_per_entry"]),
          bytes_(r["peer_params_bytes_per_entry"]),
          bytes_(r["peer_bytes_per_entry"]),
          (_fixed(2)(r["bytes_per_entry"] / r["peer_bytes_per_entry"])
           if r["bytes_per_entry"] and r["peer_bytes_per_entry"] else "")
      ] for r in lines if r["op"] == "lookup"))
  table += "\n\nBytes per entry (RSS growth while filling, over the ids):\n\n"
  table += memory
  notes = []
  checks = [
      f"{_count(r['ids'])} ids dim {r['dim']} "
      f"{_millions(r['peer_apply_from_step_ids_per_s'])}"
      for r in lines if r["op"] == "apply_gradients" and
      r["peer_apply_from_step_ids_per_s"] is not None
  ]
  if checks:
    notes.append("TFRA's apply part from (train_step - train_lookup) "
                 "times, as a cross-check, ids/s: " + ", ".join(checks))
  skips = []
  for r in lines:
    skip = f"{_count(r['ids'])} ids dim {r['dim']}: {r['skipped']}"
    if r["skipped"] and skip not in skips:
      skips.append(skip)
  if skips:
    notes.append("skipped: " + "; ".join(skips))
  if notes:
    table += "\n\nIn the same run: " + "; ".join(notes) + "."
  return table


@dataclasses.dataclass(frozen=True)
class Table:
  """A table of docs/benchmarks.md: its marker id, source and renderer."""
  id: str
  target: str  # the saved-run file, a key of BENCHMARKS
  bench: str  # the "bench" value of the lines it shows
  render: Callable[[List[Dict]], str]
  keys: Sequence[str]  # the keys it reads (checked against the benchmarks)


TABLES = [
    Table("hash_table", "hash_table_benchmark", "hash_table", _hash_table,
          ("dim", "ids", "threads", "insert_ids_per_s",
           "insert_fresh_memory_ids_per_s", "insert_steady_ids_per_s",
           "insert_ratio_vs_lookup", "steady_insert_ratio_vs_lookup",
           "assign_ids_per_s", "lookup_ids_per_s", "optimize_ids_per_s",
           "peer_lookup_ids_per_s", "lookup_ratio_vs_peer",
           "lookup_ratio_vs_1thread", "median_round_ratio",
           "peer_median_ratio_vs_1thread", "fresh_insert_ratio_vs_peer",
           "skipped", "bytes_per_entry",
           "table_bytes_per_entry", "peer_bytes_per_entry",
           "peer_insert_ids_per_s", "payload_bytes_per_entry",
           "random_64b_reads_per_s", "lookup_ratio_vs_random_reads",
           "random_same_page_pairs_per_s", "random_two_page_pairs_per_s",
           "lookup_ratio_vs_two_page_pairs",
           "longest_lookup_stall_ms", "longest_host_pause_ms",
           "longest_lookup_stall_outside_host_pauses_ms",
           "longest_lookup_without_writer_ms", "longest_shard_growth_ms")),
    Table("multi_hash_table_scale", "multi_hash_table_scale",
          "multi_hash_table_scale", _multi_hash_table_scale,
          ("dim", "ids", "peer", "peer_layout", "insert_ids_per_s",
           "insert_ratio_vs_lookup", "lookup_ids_per_s", "update_ids_per_s",
           "apply_gradients_ids_per_s", "peer_insert_ids_per_s",
           "peer_lookup_ids_per_s", "lookup_ratio", "peer_skipped", "skipped",
           "bytes_per_entry", "payload_bytes_per_entry",
           "sgd_bytes_per_entry", "sgd_payload_bytes_per_entry",
           "peer_bytes_per_entry")),
    Table("multi_hash_table", "multi_hash_table_benchmark",
          "multi_hash_table", _multi_hash_table,
          ("dim", "insert_ids_per_s", "lookup_ids_per_s",
           "apply_gradients_ids_per_s", "bytes_per_entry",
           "sgd_bytes_per_entry", "peer", "peer_layout",
           "peer_insert_ids_per_s", "peer_lookup_ids_per_s",
           "peer_bytes_per_entry", "peer_bucket_bytes_per_entry",
           "lookup_ratio", "bytes_per_entry_ratio")),
    Table("multi_hash_table_save_restore", "multi_hash_table_benchmark",
          "multi_hash_table_save_restore", _multi_hash_table_save_restore,
          ("dim", "compression_type", "ckpt_bytes", "shards", "save_mb_per_s",
           "restore_mb_per_s", "serving_restore_mb_per_s", "copy_mb_per_s",
           "save_ratio_vs_copy", "restore_ratio_vs_copy")),
    Table("warmup_data_gen", "warmup_data_gen_benchmark", "warmup_data_gen",
          _warmup_data_gen,
          ("layout", "validation", "records_per_s", "mb_per_s",
           "peer_mb_per_s", "ratio")),
    Table("random_gen", "data_gen_benchmark", "random_gen", _random_gen,
          ("variant_type", "batch_size", "records_per_s", "requests_per_s",
           "bytes_per_record", "mb_per_s")),
]

TABLES += [
    Table("distributed_ps", "distributed_ps_benchmark", "distributed_ps",
          _distributed_ps,
          ("op", "dim", "num_ps", "dedup", "float16", "ids_per_s",
           "peer_ids_per_s", "ratio", "in_process_ids_per_s",
           "ratio_vs_in_process", "wire_bytes_per_id",
           "payload_bytes_per_id", "wire_bytes_ratio_vs_float32",
           "transport_only_ids_per_s", "empty_ps_run_us",
           "empty_worker_run_us")),
    Table("hash_filter", "hash_filter_benchmark", "hash_filter",
          _hash_filter,
          ("op", "dim", "batch", "distinct_ids", "zipf_s", "threshold",
           "ids_per_s", "peer_ids_per_s", "ratio", "target_ratio")),
    Table("eviction", "hash_filter_benchmark", "eviction", _eviction,
          ("entries", "dim", "evicted", "seconds", "entries_per_s",
           "rss_table_mb", "rss_recovered_mb", "recovered_share")),
]

TABLES += [
    Table("tfra_peer", "tfra_peer_benchmark", "tfra_peer", _tfra_peer,
          ("ids", "dim", "op", "ids_per_s", "peer_ids_per_s", "ratio",
           "target_ratio", "bar_met", "bytes_per_entry",
           "peer_bytes_per_entry", "peer_params_bytes_per_entry",
           "peer_apply_from_step_ids_per_s", "skipped")),
]


TABLES += [
    Table("gpu_table", "gpu_table_benchmark", "gpu_table", _gpu_table,
          ("device", "dim", "load_factor", "keys", "batch", "find_keys_per_s",
           "upsert_keys_per_s", "adagrad_keys_per_s",
           "peer_find_keys_per_s", "peer_upsert_keys_per_s",
           "find_ratio_vs_peer", "upsert_ratio_vs_peer")),
]


def _caption(header: Dict) -> str:
  when = []
  if header.get("date"):
    when.append(str(header["date"]))
  if header.get("commit"):
    when.append(f"commit {header['commit']}")
  return (f"Latest run: `{header['command']}` on {header['machine']}" +
          (f" ({', '.join(when)})" if when else "") + ".")


def render_table(table: Table, runs: Dict[str, Run]) -> str:
  """The text between the table's markers (without the markers)."""
  run = runs.get(table.target)
  lines = run.of(table.bench) if run else []
  if not lines:
    return (f"_Not yet generated: run `{BENCHMARKS[table.target]} > "
            f"/tmp/run.txt && python3 docs/gen_benchmark_tables.py record "
            f"{table.target} < /tmp/run.txt` "
            "(see [Refreshing the tables](#refreshing-the-tables))._")
  try:
    body = table.render(lines)
  except FormatError as e:
    raise FormatError(f"{table.target}.jsonl: {e}") from None
  except (KeyError, TypeError, ValueError) as e:
    raise FormatError(f"{table.target}.jsonl: a {table.bench!r} line lacks "
                      f"or mistypes {e}") from None
  return _caption(run.header) + "\n\n" + body


def render_document(text: str, runs: Dict[str, Run]) -> str:
  """`text` with every marked table rewritten from `runs`."""
  tables = {t.id: t for t in TABLES}
  out = []
  pos = 0
  open_id = None
  for m in _MARKER.finditer(text):
    closing, table_id = m.group(1) == "/", m.group(2)
    if table_id not in tables:
      raise FormatError(f"unknown benchmark table {table_id!r} (known: "
                        f"{', '.join(tables)})")
    if not closing:
      if open_id is not None:
        raise FormatError(f"table {open_id!r} is not closed before "
                          f"{table_id!r} opens")
      out.append(text[pos:m.end()])
      open_id = table_id
    else:
      if open_id != table_id:
        raise FormatError(f"closing marker of {table_id!r} without its "
                          "opening marker")
      out.append("\n" + render_table(tables[table_id], runs) + "\n")
      out.append(m.group(0))
      open_id = None
    pos = m.end()
  if open_id is not None:
    raise FormatError(f"table {open_id!r} has no closing marker")
  out.append(text[pos:])
  return "".join(out)


# ---------------------------------------------------------------------------
# Command line.


def _root() -> str:
  return (os.environ.get("BUILD_WORKSPACE_DIRECTORY") or
          os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_atomically(path: str, text: str) -> None:
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--doc", help="the document (default docs/benchmarks.md)")
  parser.add_argument("--runs_dir",
                      help="the saved runs (default docs/benchmarks/)")
  parser.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if the document is stale")
  sub = parser.add_subparsers(dest="action")
  record = sub.add_parser(
      "record", help="save a benchmark's stdout (read from stdin) as its run")
  record.add_argument("target", choices=sorted(BENCHMARKS))
  record.add_argument("--command",
                      help="how it was run (default: the target's command)")
  record.add_argument("--machine",
                      help="what it ran on (default: CPU model, CPUs, "
                      "last-level cache, memory and kernel of this machine)")
  args = parser.parse_args(argv)
  root = _root()
  doc = args.doc or os.path.join(root, "docs", "benchmarks.md")
  runs_dir = args.runs_dir or os.path.join(root, "docs", "benchmarks")
  try:
    if args.action == "record":
      lines = benchmark_lines(sys.stdin)
      if not lines:
        print("gen_benchmark_tables: no benchmark JSON lines (objects with "
              "a \"bench\" key) on stdin", file=sys.stderr)
        return 1
      header = {
          "command": args.command or BENCHMARKS[args.target],
          "machine": args.machine or describe_machine(),
          "date": datetime.datetime.now(datetime.timezone.utc).strftime(
              "%Y-%m-%d"),
      }
      commit = git_commit(root)
      if commit:
        header["commit"] = commit
      os.makedirs(runs_dir, exist_ok=True)
      path = os.path.join(runs_dir, args.target + ".jsonl")
      _write_atomically(path, format_run(header, lines))
      print(f"wrote {path}: {len(lines)} benchmark lines")
    with open(doc, encoding="utf-8") as f:
      text = f.read()
    updated = render_document(text, load_runs(runs_dir))
  except (FormatError, OSError) as e:
    print(f"gen_benchmark_tables: error: {e}", file=sys.stderr)
    return 1
  if args.check:
    if updated != text:
      print(f"{doc} is stale: run python3 docs/gen_benchmark_tables.py",
            file=sys.stderr)
      return 1
    print(f"{doc} is up to date")
    return 0
  if updated != text:
    _write_atomically(doc, updated)
    print(f"rewrote the tables of {doc}")
  else:
    print(f"{doc} already up to date")
  return 0


if __name__ == "__main__":
  sys.exit(main())
