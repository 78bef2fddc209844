// How one write of many GPU tables finds each table's runs of equal ids in a
// single sorted batch, written once for the kernels and the host.
//
// A write concatenates its tables' batches (table after table, each in its
// input order) and sorts the whole by id with a stable sort, carrying each
// id's position in the concatenation. Equal ids of different tables then sit
// side by side, but in concatenation order, so a run of equal ids splits
// into one sub-run per table, each in that table's input order: a (table,
// id) run starts where the id or the table changes. The first of such a run
// (its head) is the one id that probes and inserts into its table's map.
// gpu_write_runs_test checks this against a host model.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_WRITE_RUNS_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_WRITE_RUNS_H_

#include <cstdint>

#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_spec.h"

namespace monolith {
namespace hash_table {
namespace gpu {

// Batches (one per table) of one write launch: kernel parameters, so no
// copy to the device first.
constexpr int kWritesPerLaunch = 16;

// Where each batch lies in the concatenation: batch p holds positions
// [first[p], first[p + 1]); first[count] is the total.
struct WriteParts {
  int64_t first[kWritesPerLaunch + 1] = {};
  int count = 0;

  // The batch that holds |position| (0 <= position < first[count]).
  MONOLITH_HOST_DEVICE int PartOf(int64_t position) const {
    int p = 0;
    while (p + 1 < count && first[p + 1] <= position) ++p;
    return p;
  }
};

// Whether sorted[i] (at concatenation position positions[i]) starts a
// (table, id) run.
MONOLITH_HOST_DEVICE inline bool IsRunHead(const WriteParts& parts,
                                           const int64_t* sorted,
                                           const int32_t* positions,
                                           int64_t i) {
  return i == 0 || sorted[i - 1] != sorted[i] ||
         parts.PartOf(positions[i - 1]) != parts.PartOf(positions[i]);
}

// The index past the (table, id) run that starts at head i of the n sorted
// ids; part is the batch of positions[i].
MONOLITH_HOST_DEVICE inline int64_t RunEnd(const WriteParts& parts,
                                           const int64_t* sorted,
                                           const int32_t* positions,
                                           int64_t n, int64_t i, int part) {
  // Within equal ids positions ascend (a stable sort of the concatenation),
  // so the run ends at the first position past the batch's end.
  const int64_t past = parts.first[part + 1];
  int64_t j = i + 1;
  while (j < n && sorted[j] == sorted[i] && positions[j] < past) ++j;
  return j;
}

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_WRITE_RUNS_H_
