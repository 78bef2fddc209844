#!/usr/bin/env bash
# GpuRowTable's check and benchmark on a GPU machine that has nvcc but no
# Bazel, TensorFlow or network (such as the H200 machines of the device
# tool): builds both with plain nvcc from the repository root and runs them.
# ci/gpu_check.sh is the full check for machines that can set up the
# workspace.
#
#   ci/gpu_device_check.sh --prepare    (here) copy the HierarchicalKV
#                                       headers that ./bazelw fetched (the
#                                       benchmark's peer) into .gpu_deps/
#                                       (git-ignored; carry it along)
#   ci/gpu_device_check.sh [OUT_DIR]    (there) build, run the check, then
#                                       the benchmark; logs in OUT_DIR
#                                       (default: .); exits 1 on a failure
# BENCHMARK_FLAGS (e.g. "--keys=4194304") passes flags to the benchmark.
# VARIANTS (e.g. "-DKNOB=8;-DKNOB=16", for a macro the code reads while an
# experiment runs), an experiment:
# the check and the benchmark are also built with each ';'-separated set of
# extra nvcc flags and run after the others (the benchmarks' output in
# gpu_table_benchmark_v1.txt, ..., the checks' in variant_checks.txt).
# OUT_DIR gets few files (build logs only of failed builds): the device
# tool brings back 8.
# BENCHMARK=0 leaves the benchmark out (the check alone).
# SANITIZERS (default "memcheck synccheck") names the compute-sanitizer
# tools the check runs under.
# PROFILE=1 also times each kernel of a smaller benchmark run (ours and
# HKV's) under Nsight Compute, into ncu.csv (raw CSV, one row per launch),
# for at most PROFILE_SECONDS (240).
# With the device tool: carry .gpu_deps and run
#   bash ci/gpu_device_check.sh $OUT
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps="$root/.gpu_deps"
gpu=monolith/native_training/runtime/hash_table/gpu

if [ "${1:-}" = "--prepare" ]; then
  # The folder ./bazelw unpacked (ci/bootstrap.sh), whole.
  # (A relative MONOLITH_THIRD_PARTY is the checkout root's, as there.)
  sok="$(cd "$root" && realpath -m "${MONOLITH_THIRD_PARTY:-$HOME/.cache/monolith/third_party}")/merlin-sok-2.1.0"
  if [ ! -f "$sok/.complete" ]; then
    echo "no merlin-sok headers: run ./bazelw once first" >&2
    exit 1
  fi
  # Copied beside, then renamed: a copy cut short or failed never passes
  # for the headers (the run checks the stamp).
  tmp="$deps.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp" &&
    cp -r "$sok/HierarchicalKV/include" "$tmp/hkv" &&
    touch "$tmp/.complete" &&
    rm -rf "$deps" &&
    mv "$tmp" "$deps" || { rm -rf "$tmp"; echo "copying the headers into $deps failed" >&2; exit 1; }
  echo "copied $sok's headers into $deps ($(du -sh "$deps" | cut -f1))"
  exit 0
fi

out=$(realpath -m "${1:-.}")
mkdir -p "$out"
cd "$root"
if [ ! -f "$deps/.complete" ]; then
  echo "no $deps: run ci/gpu_device_check.sh --prepare where ./bazelw ran" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu_device_check.txt"
flags=(-x cu -std=c++17 -O3 -fmad=false -ftz=true -gencode arch=compute_90,code=sm_90
  -I. -isystem "$deps/hkv")
bin=$(mktemp -d)
build() {  # build NAME SOURCES...
  local name=$1
  shift
  local start=$(date +%s)
  if nvcc "${flags[@]}" "$@" -o "$bin/$name" > "$out/$name.build.txt" 2>&1; then
    # Kept only when it failed: the device tool brings 8 files back.
    rm -f "$out/$name.build.txt"
    echo "built $name in $(( $(date +%s) - start )) s" | tee -a "$out/gpu_device_check.txt"
  else
    echo "FAILED to build $name (see $name.build.txt)" | tee -a "$out/gpu_device_check.txt"
    return 1
  fi
}
status=0
build gpu_row_table_check "$gpu/gpu_row_table.cu.cc" "$gpu/gpu_row_table_check.cu.cc" &
check_build=$!
bench_build=
if [ "${BENCHMARK:-1}" = 1 ]; then
  build gpu_table_benchmark "$gpu/gpu_row_table.cu.cc" "$gpu/gpu_table_benchmark.cu.cc" &
  bench_build=$!
fi
variant_builds=()
IFS=';' read -r -a variants <<< "${VARIANTS:-}"
for v in "${!variants[@]}"; do
  read -r -a extra <<< "${variants[$v]}"
  build "gpu_row_table_check_v$((v + 1))" "${extra[@]}" "$gpu/gpu_row_table.cu.cc" "$gpu/gpu_row_table_check.cu.cc" &
  variant_builds+=($!)
  build "gpu_table_benchmark_v$((v + 1))" "${extra[@]}" "$gpu/gpu_row_table.cu.cc" "$gpu/gpu_table_benchmark.cu.cc" &
  variant_builds+=($!)
done
wait "$check_build" || status=1
[ -z "$bench_build" ] || wait "$bench_build" || status=1
for pid in "${variant_builds[@]}"; do wait "$pid" || status=1; done
if [ -x "$bin/gpu_row_table_check" ]; then
  timeout 300 "$bin/gpu_row_table_check" 2>&1 | tee -a "$out/gpu_device_check.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # The same check under compute-sanitizer: memcheck (out-of-bounds and
  # misaligned device accesses, leaks of device memory), then synccheck
  # (warp shuffles and barriers some lanes of a warp or block miss). A run
  # cut by the timeout is reported, not failed (the sanitizer slows kernels
  # down), unless it had reported an error before the cut (the error
  # summary comes only at the end).
  if command -v compute-sanitizer > /dev/null; then
    for tool in ${SANITIZERS:-memcheck synccheck}; do
      extra=()
      [ "$tool" = memcheck ] && extra=(--leak-check full)
      timeout 120 compute-sanitizer --tool "$tool" "${extra[@]}" \
        --error-exitcode 3 "$bin/gpu_row_table_check" > "$out/$tool.txt" 2>&1
      code=$?
      case $code in
        0) verdict="clean" ;;
        124)
          verdict="cut by its 120 s timeout (see $tool.txt)"
          if grep -qE '^========= +(Invalid|Misaligned|Barrier|Race|Error: Race|Leaked|Program hit|Malloc|Cuda API error|Uninitialized|Warp|Out-of-range|Hardware)' "$out/$tool.txt"; then
            verdict="FAILED (errors before its 120 s timeout; see $tool.txt)"
            status=1
          fi ;;
        *) verdict="FAILED ($code; see $tool.txt)"; status=1 ;;
      esac
      echo "$tool: $verdict" | tee -a "$out/gpu_device_check.txt"
    done
  fi
else
  status=1
fi
if [ -x "$bin/gpu_table_benchmark" ]; then
  # stdout alone holds the JSON lines (stderr could split one).
  timeout 300 "$bin/gpu_table_benchmark" ${BENCHMARK_FLAGS:-} > "$out/gpu_table_benchmark.txt" 2> "$out/gpu_table_benchmark.err.txt" || status=1
  tee -a "$out/gpu_device_check.txt" < "$out/gpu_table_benchmark.err.txt"
  rm -f "$out/gpu_table_benchmark.err.txt"  # now in gpu_device_check.txt
  grep -v '^{' "$out/gpu_table_benchmark.txt" | tee -a "$out/gpu_device_check.txt"
  # A failed run's figures are not for the docs.
  if [ "$status" -eq 0 ]; then
    gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    echo "to record the figures (where the repository is):" \
      "python3 docs/gen_benchmark_tables.py record gpu_table_benchmark" \
      "--machine=\"$gpu_name\" --command=\"ci/gpu_device_check.sh\"" \
      "< OUT/gpu_table_benchmark.txt" | tee -a "$out/gpu_device_check.txt"
  fi
fi
for v in "${!variants[@]}"; do
  name="v$((v + 1))"
  echo "variant $name: ${variants[$v]}" | tee -a "$out/gpu_device_check.txt"
  if [ -x "$bin/gpu_row_table_check_$name" ]; then
    echo "== $name" >> "$out/variant_checks.txt"
    timeout 120 "$bin/gpu_row_table_check_$name" > "$out/check.tmp" 2>&1 || status=1
    cat "$out/check.tmp" >> "$out/variant_checks.txt"
    tail -n 1 "$out/check.tmp" | tee -a "$out/gpu_device_check.txt"
    rm -f "$out/check.tmp"
  fi
  if [ -x "$bin/gpu_table_benchmark_$name" ]; then
    timeout 300 "$bin/gpu_table_benchmark_$name" ${BENCHMARK_FLAGS:-} > "$out/gpu_table_benchmark_$name.txt" 2>&1 || status=1
    grep -v '^{' "$out/gpu_table_benchmark_$name.txt" | tee -a "$out/gpu_device_check.txt"
  fi
done
# Kernel durations, for the next optimization; not part of the result. One
# metric (one replay pass) and a name filter keep it inside its time limit
# (the 16M-key fills profiled whole ran past 200 s).
if [ "${PROFILE:-0}" = 1 ] && [ -x "$bin/gpu_table_benchmark" ]; then
  if command -v ncu > /dev/null; then
    timeout "${PROFILE_SECONDS:-240}" ncu --csv --clock-control none \
      --metrics gpu__time_duration.sum --launch-count 400 \
      --kernel-name 'regex:Lookup|Write|CountMissing|Gather|Radix|lookup|upsert|find' \
      --log-file "$out/ncu.csv" "$bin/gpu_table_benchmark" --keys=4194304 --rounds=1 \
      > /dev/null 2>&1
    echo "profile: ncu exited $? (ncu.csv)" | tee -a "$out/gpu_device_check.txt"
  else
    echo "profile: no ncu on PATH" | tee -a "$out/gpu_device_check.txt"
  fi
fi
echo "result: $([ "$status" -eq 0 ] && echo PASSED || echo FAILED)" | tee -a "$out/gpu_device_check.txt"
exit "$status"
