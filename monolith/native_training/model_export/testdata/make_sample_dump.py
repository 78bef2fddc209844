"""Writes the committed sample dump testdata/examples.dump.

64 Example records in the default layout of warmup_data_gen (each record is
`[sort id size][sort id][size][Example]`, sort ids "sort-<i>"):

    bazel run //monolith/native_training/model_export/testdata:make_sample_dump \
        -- $PWD/monolith/native_training/model_export/testdata/examples.dump
"""

import os
import sys

from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import sample_records

NUM_RECORDS = 64
LAYOUT = dump_format.DumpLayout(has_sort_id=True)


def write_sample_dump(path: str) -> int:
  """Writes the sample dump to `path` atomically; returns the record count."""
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    for i, payload in enumerate(
        sample_records.serialized_records("example", NUM_RECORDS, seed=2026)):
      f.write(dump_format.encode_record(payload, LAYOUT,
                                        sort_id=f"sort-{i}".encode()))
  os.replace(tmp, path)
  return NUM_RECORDS


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  print(f"wrote {write_sample_dump(sys.argv[1])} records to {sys.argv[1]}")
