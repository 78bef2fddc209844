#!/usr/bin/env bash
# Checks the CUDA half of the op library on a machine with an NVIDIA GPU, in
# one go: the driver, the --config=cuda build, and the GPU tests, which must
# run (a skipped GPU test fails here). Writes a summary to
# ${1:-gpu_check_summary.txt} and exits non-zero if anything failed.
#
#   ci/gpu_check.sh [summary_file]
#
# The kernels link CUDA 13's runtime statically: the driver must support
# CUDA 13 (R580 or newer). The first ./bazelw sets the machine up as on any
# other (apt packages, the venv, the merlin-sok headers).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
summary=$(realpath -m "${1:-gpu_check_summary.txt}")
targets=//monolith/native_training/runtime/hash_table/gpu/...
failed=0

say() { echo "$*" | tee -a "$summary"; }
: > "$summary"
say "gpu_check $(date -u +%FT%TZ) at $(cd "$root" && git rev-parse --short HEAD 2>/dev/null)"

if ! command -v nvidia-smi >/dev/null; then
  say "driver: FAILED (no nvidia-smi: no NVIDIA driver on this machine)"
  exit 1
fi
say "driver: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
cuda_version=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -1)
if [ -z "$cuda_version" ] || [ "$cuda_version" -lt 13 ]; then
  say "driver: FAILED (supports CUDA ${cuda_version:-?}; the static CUDA 13 runtime needs R580+)"
  failed=1
fi

cd "$root"
start=$(date +%s)
if ./bazelw build --config=cuda "$targets"; then
  say "build: PASSED ($(( $(date +%s) - start )) s, ./bazelw build --config=cuda $targets)"
else
  say "build: FAILED (./bazelw build --config=cuda $targets)"
  exit 1
fi

log=$(mktemp)
./bazelw test --config=cuda --test_output=all "$targets" 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
ran=$(grep -c '^\[       OK \]' "$log")
skipped=$(grep -c '^\[  SKIPPED \]' "$log")
broken=$(grep -c '^\[  FAILED  \]' "$log")
if [ "$test_status" -ne 0 ] || [ "$skipped" -gt 0 ] || [ "$ran" -eq 0 ]; then
  say "tests: FAILED ($ran passed, $broken failed, $skipped skipped; on a GPU machine nothing may skip)"
  failed=1
else
  say "tests: PASSED ($ran test cases)"
fi
grep -E '^\[  (FAILED|SKIPPED) +\]|Skipped|Failure' "$log" | head -40 >> "$summary"
rm -f "$log"
say "result: $([ "$failed" -eq 0 ] && echo PASSED || echo FAILED)"
exit "$failed"
