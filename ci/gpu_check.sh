#!/usr/bin/env bash
# Checks the CUDA half of the op library on a machine with an NVIDIA GPU, in
# one go: the driver, TensorFlow's view of the GPU (installing
# tensorflow[and-cuda]==2.21.0, the CUDA 12 libraries TF needs, into its own
# venv if it sees none), the --config=cuda build, and the GPU tests (C++ and
# through TF), which must run (a skipped GPU test fails here), then the GPU
# benchmark against HierarchicalKV. Writes a summary to
# ${1:-gpu_check_summary.txt} (the benchmark's output beside it, in
# gpu_table_benchmark.txt) and exits non-zero if anything failed.
#
#   ci/gpu_check.sh [summary_file]
#
# The kernels link CUDA 13's runtime statically: the driver must support
# CUDA 13 (R580 or newer), and the CUDA 13 toolkit must be installed
# (nvcc, headers, libcudart_static.a; /usr/local/cuda or
# $MONOLITH_CUDA_HOME), which no bootstrap installs. The first ./bazelw sets
# the rest up as on any other machine (apt packages, the venv, the
# merlin-sok headers).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
summary=$(realpath -m "${1:-gpu_check_summary.txt}")
targets="//monolith/native_training/runtime/hash_table/gpu/... //monolith/native_training:multi_hash_table_gpu_test"
# Its own venv (made from the lock, as any): the CUDA libraries installed
# below come unpinned from the network, and stay out of the venv that other
# clones and the CPU tests use. Later plain ./bazelw runs go back to that one.
venv=$(realpath -m "${MONOLITH_GPU_VENV:-$HOME/.cache/monolith/venv-gpu}")
export MONOLITH_VENV=$venv
failed=0

say() { echo "$*" | tee -a "$summary"; }
# Stops at a failure the later steps depend on, still with the result line.
fail_now() {
  say "result: FAILED"
  exit 1
}
: > "$summary"
say "gpu_check $(date -u +%FT%TZ) at $(cd "$root" && git rev-parse --short HEAD 2>/dev/null)"

if ! command -v nvidia-smi >/dev/null; then
  say "driver: FAILED (no nvidia-smi: no NVIDIA driver on this machine)"
  fail_now
fi
say "driver: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
cuda_version=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -1)
if [ -z "$cuda_version" ] || [ "$cuda_version" -lt 13 ]; then
  say "driver: FAILED (supports CUDA ${cuda_version:-?}; the static CUDA 13 runtime needs R580+)"
  failed=1
fi

cuda_home=${MONOLITH_CUDA_HOME:-/usr/local/cuda}
if [ ! -x "$cuda_home/bin/nvcc" ]; then
  say "toolkit: FAILED (no $cuda_home/bin/nvcc: install the CUDA 13" \
      "toolkit, or set MONOLITH_CUDA_HOME)"
  fail_now
fi
# "Cuda compilation tools, release 13.0, V13.0.48"
nvcc_release=$("$cuda_home/bin/nvcc" --version |
  sed -n 's/.*release \([0-9]*\)\..*/\1/p' | head -1)
if [ -z "$nvcc_release" ] || [ "$nvcc_release" -lt 13 ]; then
  say "toolkit: FAILED ($cuda_home/bin/nvcc is CUDA ${nvcc_release:-?};" \
      "the build needs CUDA 13)"
  fail_now
fi
say "toolkit: $("$cuda_home/bin/nvcc" --version | tail -1)"

cd "$root"
if ! ci/bootstrap.sh; then  # sets the machine up (venv, headers)
  say "setup: FAILED (ci/bootstrap.sh)"
  fail_now
fi
# The toolkit's detection is cached: look again (it may be new).
./bazelw sync --configure >/dev/null 2>&1 || true
tf_gpus() {
  "$venv/bin/python" -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>/dev/null | tail -1
}
if [ "$(tf_gpus)" = "0" ] || [ -z "$(tf_gpus)" ]; then
  say "tensorflow: sees no GPU; installing tensorflow[and-cuda]==2.21.0"
  "$venv/bin/python" -m pip install -q "tensorflow[and-cuda]==2.21.0" || true
fi
gpus=$(tf_gpus)
if [ -z "$gpus" ] || [ "$gpus" = "0" ]; then
  say "tensorflow: FAILED (sees no GPU; the TF tests will skip)"
  failed=1
else
  say "tensorflow: sees $gpus GPU(s)"
fi

start=$(date +%s)
if ./bazelw build --config=cuda $targets; then
  say "build: PASSED ($(( $(date +%s) - start )) s, ./bazelw build --config=cuda $targets)"
else
  say "build: FAILED (./bazelw build --config=cuda $targets)"
  fail_now
fi

log=$(mktemp)
./bazelw test --config=cuda --nocache_test_results --test_output=all $targets 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
# googletest's case lines (named once each: its closing summary lists the
# failed and skipped ones again), and pytest's summary ("3 passed, 1
# skipped in").
gtest_cases() {
  grep -oE "^\[ *$1 *\] [A-Za-z_0-9/]+\.[A-Za-z_0-9/]+" "$log" | awk '{print $NF}' | sort -u | wc -l
}
pytest_sum() {
  grep -oE "[0-9]+ $1" "$log" | awk '{s+=$1} END {print s+0}'
}
ran=$(( $(gtest_cases OK) + $(pytest_sum passed) ))
skipped=$(( $(gtest_cases SKIPPED) + $(pytest_sum skipped) ))
broken=$(( $(gtest_cases FAILED) + $(pytest_sum failed) ))
if [ "$test_status" -ne 0 ] || [ "$skipped" -gt 0 ] || [ "$ran" -eq 0 ]; then
  say "tests: FAILED ($ran passed, $broken failed, $skipped skipped; on a GPU machine nothing may skip)"
  failed=1
else
  say "tests: PASSED ($ran test cases)"
fi
grep -E '^\[  (FAILED|SKIPPED) +\]|Skipped|Failure' "$log" | head -40 >> "$summary"
rm -f "$log"

bench_out="$(dirname "$summary")/gpu_table_benchmark.txt"
if ./bazelw run -c opt --config=cuda \
    //monolith/native_training/runtime/hash_table/gpu:gpu_table_benchmark > "$bench_out"; then
  say "benchmark: PASSED (output in $bench_out)"
  grep -v '^{' "$bench_out" >> "$summary"
else
  say "benchmark: FAILED (see $bench_out)"
  failed=1
fi
say "result: $([ "$failed" -eq 0 ] && echo PASSED || echo FAILED)"
exit "$failed"
