#!/usr/bin/env bash
# MultiHashTable beside TensorFlow Recommenders-Addons (TFRA) 0.8.1, the
# open-source dynamic embedding table most users would pick instead.
#
#   ./bazelw run -c opt //benchmarks/tfra:tfra_peer_benchmark [-- FLAGS]
#   benchmarks/tfra/run.sh [FLAGS]          (builds the opt binary itself)
#
# FLAGS go to tfra_peer_benchmark.py (--ids 1000000,16000000, --dims 16,64,
# --repeats N, ...; --help lists them). Steps, each idempotent:
#   1. TFRA 0.8.1 needs TF 2.16.2, so it gets its own venv, created from the
#      package registry on first use (python3.11; about 2.2 GB, 1-2 minutes):
#      $TFRA_VENV, default ~/.cache/monolith/tfra-venv.
#   2. Our side is //benchmarks/tfra:ours_side, built with -c opt (a data
#      dependency of this target under `bazel run`; built here otherwise).
#   3. tfra_peer_benchmark.py runs TFRA's side (tfra_side.py, in the TFRA
#      venv), then ours, one process per (side, dim, ids), never two at once,
#      and prints a table, then one JSON line per (dim, ids, op).
# Environment: TFRA_VENV (the venv folder), TFRA_BASE_PYTHON (the interpreter
# that creates it, default python3.11: TFRA 0.8.1 has wheels for CPython
# 3.9-3.11 only).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${TFRA_VENV:-$HOME/.cache/monolith/tfra-venv}
base_python=${TFRA_BASE_PYTHON:-python3.11}
# TFRA 0.8.1 is built against TF 2.16.2; tf-keras is the Keras 2 that TFRA
# imports (TF 2.16 ships Keras 3).
requirements=(tensorflow==2.16.2 tensorflow-recommenders-addons==0.8.1
  tf-keras==2.16.0)

log() { echo "[tfra] $*" >&2; }

for arg in "$@"; do
  case "$arg" in
    -h | --help)
      # The flags only: not after the venv (2.2 GB) and the build.
      exec python3 "$here/tfra_peer_benchmark.py" --help ;;
  esac
done

stamp="$venv/.tfra-requirements"
if [ "$(cat "$stamp" 2>/dev/null)" != "${requirements[*]}" ]; then
  log "setting up the TFRA venv in $venv: ${requirements[*]}"
  if [ ! -x "$venv/bin/python" ]; then
    command -v "$base_python" >/dev/null || {
      log "no $base_python: TFRA 0.8.1 has wheels for CPython 3.9-3.11;" \
        "set TFRA_BASE_PYTHON to one of those"
      exit 1
    }
    "$base_python" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "${requirements[@]}" 2> >(grep -v "is neither a file nor a directory" >&2)
  echo "${requirements[*]}" > "$stamp"
fi

if [ -n "${BUILD_WORKSPACE_DIRECTORY:-}" ]; then
  # Under `bazel run` the working directory is this target's runfiles tree,
  # which holds the scripts and the ours_side binary of the same
  # configuration (-c opt in the documented command): this repository's
  # folder of it, or, run from another workspace (@monolith//...), its
  # sibling named for this repository.
  root=$PWD
  for dir in "$PWD" "$PWD"/../*; do
    if [ -e "$dir/benchmarks/tfra/tfra_side.py" ]; then
      root=$(cd "$dir" && pwd)
      break
    fi
  done
  src="$root/benchmarks/tfra"
  ours="$src/ours_side"
else
  src=$here
  root=$(cd "$here/../.." && pwd)
  log "building //benchmarks/tfra:ours_side with -c opt"
  (cd "$root" && ./bazelw build -c opt //benchmarks/tfra:ours_side >&2)
  ours="$(cd "$root" && ./bazelw info -c opt bazel-bin 2>/dev/null)/benchmarks/tfra/ours_side"
fi
for f in "$src/tfra_peer_benchmark.py" "$src/tfra_side.py" "$ours"; do
  [ -e "$f" ] || { log "missing $f"; exit 1; }
done

# tfra_side.py imports monolith/native_training/benchmark_workload.py.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$venv/bin/python" "$src/tfra_peer_benchmark.py" \
  --tfra_python "$venv/bin/python" --tfra_side "$src/tfra_side.py" \
  --ours "$ours" "$@"
