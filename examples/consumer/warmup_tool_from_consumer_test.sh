#!/usr/bin/env bash
# Runs monolith's warmup_data_gen binary on its sample dump: $1 the binary,
# $2 the dump.
set -euo pipefail
out="$TEST_TMPDIR/warmup/tf_serving_warmup_requests"
"$1" --file_name="$2" --variant_type=example --batch_size=16 \
  --signature_names=serving_default,predict --output_path="$out" \
  2>&1 | tee "$TEST_TMPDIR/log.txt"
grep -q "wrote $out: 4 warmup records, 64 samples" "$TEST_TMPDIR/log.txt"
test -s "$out"
