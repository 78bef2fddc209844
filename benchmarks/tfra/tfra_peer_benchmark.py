"""MultiHashTable beside TensorFlow Recommenders-Addons' dynamic embedding.

    ./bazelw run -c opt //benchmarks/tfra:tfra_peer_benchmark [-- FLAGS]

(run.sh builds TFRA's venv and passes --tfra_python, --tfra_side and --ours;
this file is standard library only.) TFRA 0.8.1's `dynamic_embedding`
(CuckooHashTable, TF 2.16.2, its own venv) and our MultiHashTable run the
workload of //monolith/native_training:multi_hash_table_benchmark
(benchmark_workload.py): 8 tables of ids / 8 random int64 ids each, batches of
65,536 ids (8,192 per table), dims 16 and 64, adagrad. For each --ids and dim,
TFRA's side runs in one process (tfra_side.py), then ours in another
(ours_side.py), never both at once, and again (--process_rounds, default 2);
both go through tf.compat.v1 Session.run in graph mode; each rate is the best
of --repeats rounds of --lookup_batches runs in a process, and the best over
the processes (a 2-core machine's neighbours move single runs a lot). Ops
compared (ours vs TFRA):

* insert: MultiHashTable.assign vs Variable.upsert, of new ids;
* lookup: MultiHashTable.lookup vs Variable.lookup (the cuckoo find op);
* train_lookup: the same lookup of ours vs TFRA's lookup in a training step,
  embedding_lookup(return_trainable=True) (find + TrainableWrapper buffer);
* apply_gradients: MultiHashTable.apply_gradients (adagrad) vs the apply
  part of a TFRA training step: DynamicEmbeddingOptimizer(Adagrad)
  .apply_gradients on constant gradients, timed alone right after an
  untimed embedding_lookup of the same batch (see tfra_side.py: it looks up
  the accumulators, applies Adagrad to the buffers and upserts both back);
  TFRA's (step - train_lookup) is printed beside as a cross-check;
* train_step: lookup then apply_gradients in one session.run, both sides.

Bytes per entry: RSS growth while filling fresh tables, ours with adagrad
entries (values + accumulators); TFRA's values table alone, and with the
Adagrad accumulator table after one training pass over every id.

A side is skipped at a size when its projected memory (bytes per entry of a
smaller run of this invocation, or a rough payload-based guess, times 1.5
for a rehash's growth, plus 32 bytes per id of workload arrays and 1 GiB)
exceeds --memory_share of MemAvailable when the size starts; TFRA runs without
its training part (--values_only: inserts and lookups, no accumulator
table) if that fits. Skips are printed and recorded in the JSON lines.

Prints a table, then one JSON line per (dim, ids, op): {"bench":
"tfra_peer", ...}, for `docs/gen_benchmark_tables.py record
tfra_peer_benchmark`.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

PEER = "tfra_cuckoo"

# The bars: ours / TFRA at every size.
TARGETS = {"lookup": 3.0, "apply_gradients": 4.0}

# (op, ours' result key, TFRA's result key, what TFRA runs).
OPS = [
    ("insert", "insert", "insert", "Variable.upsert (new ids)"),
    ("lookup", "lookup", "lookup", "Variable.lookup"),
    ("train_lookup", "lookup", "forward",
     "embedding_lookup(return_trainable=True)"),
    ("apply_gradients", "apply", "apply",
     "DynamicEmbeddingOptimizer(Adagrad).apply_gradients, apply part"),
    ("train_step", "step", "step", "embedding_lookup + apply_gradients"),
]

GB = 1 << 30


def mem_available() -> int:
  with open("/proc/meminfo", encoding="utf-8") as f:
    for line in f:
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError("no MemAvailable in /proc/meminfo")


def guess_bytes_per_entry(side: str, dim: int) -> float:
  """A rough guess when no smaller run of this side and dim was measured."""
  if side == "ours":  # id, values, accumulators, ~1.3x overhead
    return 1.3 * (8 + 8 * dim + 16)
  if side == "tfra_values":  # a cuckoo table of id + dim floats, ~25% load
    return 4 * (8 + 4 * dim)
  # Two such tables: values and Adagrad accumulators.
  return 2 * 4 * (8 + 4 * dim)


def projected_bytes(ids: int, bytes_per_entry: float) -> float:
  """Peak memory of a side: its tables with room for a rehash's growth, the
  workload's arrays and the process itself."""
  return ids * (1.5 * bytes_per_entry + 32) + GB


def run_side(cmd: List[str]) -> Dict:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env=env)
  lines = out.stdout.decode().strip().splitlines()
  return json.loads(lines[-1])


def m(rate: Optional[float]) -> str:
  return "" if rate is None else f"{rate / 1e6:.2f} M"


def compare(ids: int, dim: int, ours: Optional[Dict], tfra: Optional[Dict],
            skipped: Optional[str], args) -> List[Dict]:
  """The JSON lines of one (dim, ids); `skipped` says what did not run."""
  lines = []
  for op, ours_key, tfra_key, peer_op in OPS:
    ours_rate = ours.get(f"{ours_key}_ids_per_s") if ours else None
    peer_rate = tfra.get(f"{tfra_key}_ids_per_s") if tfra else None
    ratio = (ours_rate / peer_rate) if ours_rate and peer_rate else None
    target = TARGETS.get(op)
    line = {
        "bench": "tfra_peer",
        "dim": dim,
        "ids": ids,
        "tables": 8,
        "batch": args.batch,
        "op": op,
        "ids_per_s": None if ours_rate is None else round(ours_rate),
        "peer": PEER,
        "peer_op": peer_op,
        "peer_ids_per_s": None if peer_rate is None else round(peer_rate),
        "ratio": None if ratio is None else round(ratio, 3),
        "target_ratio": target,
        "bar_met": (None if target is None or ratio is None else
                    ratio >= target),
        "bytes_per_entry": _round(ours, "bytes_per_entry"),
        "peer_bytes_per_entry": _round(tfra, "bytes_per_entry"),
        "peer_params_bytes_per_entry": _round(tfra, "params_bytes_per_entry"),
        "peer_apply_from_step_ids_per_s": None,
        "repeats": args.repeats,
        "process_rounds": args.process_rounds,
        "tf_version": ours["tf_version"] if ours else None,
        "peer_tf_version": tfra["tf_version"] if tfra else None,
        "peer_version": tfra["tfra_version"] if tfra else None,
        "skipped": (skipped if ours_rate is None or peer_rate is None else
                    None),
    }
    if op == "apply_gradients" and tfra and tfra.get(
        "apply_from_step_ids_per_s"):
      line["peer_apply_from_step_ids_per_s"] = round(
          tfra["apply_from_step_ids_per_s"])
    lines.append(line)
  return lines


def _round(result: Optional[Dict], key: str) -> Optional[float]:
  value = result.get(key) if result else None
  return None if value is None else round(value, 1)


def report(lines: List[Dict]):
  row = "%-11s %-4s %-16s %11s %11s %9s %-10s %s"
  print()
  print("MultiHashTable vs TFRA 0.8.1 dynamic_embedding (CuckooHashTable), "
        "8 tables, session.run, ids/s (best of rounds)")
  print(row % ("ids", "dim", "op", "ours", "TFRA", "ours/TFRA", "bar",
               "TFRA runs"))
  for l in lines:
    bar = ("" if l["target_ratio"] is None else
           f">= {l['target_ratio']:g}: " +
           ("-" if l["bar_met"] is None else
            "met" if l["bar_met"] else "MISSED"))
    print(row % (f"{l['ids']:,}", l["dim"], l["op"], m(l["ids_per_s"]),
                 m(l["peer_ids_per_s"]),
                 "" if l["ratio"] is None else f"{l['ratio']:.2f}", bar,
                 l["peer_op"]))
    if l["peer_apply_from_step_ids_per_s"]:
      print(row % ("", "", "", "", m(l["peer_apply_from_step_ids_per_s"]),
                   "", "", "TFRA step - train_lookup (cross-check)"))
  skips = sorted({(l["ids"], l["dim"], l["skipped"])
                  for l in lines if l["skipped"]})
  for ids, dim, reason in skips:
    print(f"  {ids:,} ids dim {dim}: skipped: {reason}")
  print()
  print("Bytes per entry (RSS growth while filling / ids):")
  def b(value):
    return "-" if value is None else f"{value:.0f}"

  for l in lines:
    if l["op"] != "lookup":
      continue
    ours, peer = l["bytes_per_entry"], l["peer_bytes_per_entry"]
    ratio = f"; ours/TFRA {ours / peer:.2f}" if ours and peer else ""
    print(f"  {l['ids']:>11,} ids dim {l['dim']:>2}: ours (adagrad entries) "
          f"{b(ours)}; TFRA values {b(l['peer_params_bytes_per_entry'])}, "
          f"with Adagrad accumulators {b(peer)}{ratio}")


def main():
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--ids", default="1000000",
                      help="comma-separated total ids (8 tables of ids/8; "
                      "rounded down to a multiple of 8)")
  parser.add_argument("--dims", default="16,64")
  parser.add_argument("--batch", type=int, default=65_536)
  parser.add_argument("--lookup_batches", type=int, default=8,
                      help="session.runs per measurement")
  parser.add_argument("--repeats", type=int, default=30,
                      help="rounds of --lookup_batches runs per process")
  parser.add_argument("--process_rounds", type=int, default=2,
                      help="processes per side and size (TFRA, ours, TFRA, "
                      "ours, ...); each rate is the best of them")
  parser.add_argument("--memory_share", type=float, default=0.6,
                      help="skip a side whose projected memory exceeds this "
                      "share of MemAvailable (others share the machine)")
  parser.add_argument("--tfra_python", required=True,
                      help="python of TFRA's venv")
  parser.add_argument("--tfra_side", required=True, help="tfra_side.py")
  parser.add_argument("--ours", required=True,
                      help="the ours_side binary (or a python command)")
  args = parser.parse_args()
  # Each side runs 8 tables of ids // 8: the lines name the ids that ran.
  sizes = sorted({int(i) // 8 * 8 for i in args.ids.split(",")})
  if not sizes or sizes[0] < 8:
    parser.error(f"--ids {args.ids}: each size needs at least 8 ids")
  dims = [int(d) for d in args.dims.split(",")]
  common = ["--batch", str(args.batch), "--lookup_batches",
            str(args.lookup_batches), "--repeats", str(args.repeats)]
  commands = {
      "tfra": [args.tfra_python, args.tfra_side],
      "ours": args.ours.split(),
  }
  start = time.perf_counter()
  # Bytes per entry of the smallest run so far, by (side, dim); side
  # "tfra_values": TFRA's values table alone.
  measured = {}
  lines = []
  for ids in sizes:
    for dim in dims:
      # Which sides fit in memory: TFRA runs without its training part
      # (--values_only) where only that fits.
      plan, skips = [], []
      for side, flags in (("tfra", []), ("tfra_values", ["--values_only"]),
                          ("ours", [])):
        if side == "tfra_values" and plan and plan[0][0] == "tfra":
          continue
        bpe = measured.get((side, dim)) or guess_bytes_per_entry(side, dim)
        need = projected_bytes(ids, bpe)
        available = mem_available()
        if need > args.memory_share * available:
          what = {"tfra": "TFRA (values + accumulators)",
                  "tfra_values": "TFRA values only", "ours": "ours"}[side]
          reason = (f"{what} would need ~{need / GB:.1f} GiB ({bpe:.0f} "
                    f"B/entry), over {args.memory_share:g} of the "
                    f"{available / GB:.1f} GiB available")
          print(f"[tfra_peer] dim {dim}, {ids:,} ids: skipped: {reason}",
                file=sys.stderr, flush=True)
          skips.append(reason)
          continue
        plan.append((side, flags))
      # TFRA, then ours, one process at a time, --process_rounds times; each
      # rate is the best over the processes, bytes per entry the first's.
      results = {}
      for round_ in range(args.process_rounds):
        for side, flags in plan:
          name = "ours" if side == "ours" else "tfra"
          print(f"[tfra_peer] dim {dim}, {ids:,} ids: {side} side, process "
                f"round {round_ + 1}/{args.process_rounds}", file=sys.stderr,
                flush=True)
          result = run_side(commands[name] +
                            ["--dim", str(dim), "--ids", str(ids)] + common +
                            flags)
          if name in results:
            for key, value in result.items():
              if key.endswith("_ids_per_s") and value is not None:
                results[name][key] = max(results[name][key] or 0, value)
            continue
          results[name] = result
          if side == "ours":
            measured.setdefault(("ours", dim), result["bytes_per_entry"])
          else:
            measured.setdefault(("tfra_values", dim),
                                result["params_bytes_per_entry"])
            if result["bytes_per_entry"] is not None:
              measured.setdefault(("tfra", dim), result["bytes_per_entry"])
      if len(results) == 2 and (results["tfra"]["fingerprint"] !=
                                results["ours"]["fingerprint"]):
        raise SystemExit(f"dim {dim}, {ids:,} ids: the two sides ran "
                         f"different ids ({results['tfra']['fingerprint']} "
                         f"vs {results['ours']['fingerprint']})")
      lines += compare(ids, dim, results.get("ours"), results.get("tfra"),
                       "; ".join(skips) or None, args)
  report(lines)
  print()
  for line in lines:
    print(json.dumps(line))
  print(f"# total {time.perf_counter() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
  main()
