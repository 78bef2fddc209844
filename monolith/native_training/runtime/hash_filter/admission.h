// What a table consults before an update creates an id: the filter of its
// MultiHashTable (one per PS, shared by its tables) with the per-slot
// occurrence thresholds of SlotOccurrenceThresholdConfig, as the original's
// hash filter bridge. Ids the table already holds are always written and
// never counted; the others are counted by the filter, each distinct id
// once per update with its number of occurrences (as the original's
// de-duplicating optimize), and are written once the filter admits them.
// Lookups never consult it.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_ADMISSION_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_ADMISSION_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "monolith/native_training/runtime/hash_filter/filter.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"

namespace monolith {
namespace hash_filter {

// The slot of a feature id for occurrence thresholds: the original's
// slot_id_v2, bits 48..62.
inline int OccurrenceSlotOf(int64_t fid) {
  return static_cast<int>((static_cast<uint64_t>(fid) >> 48) & 0x7fff);
}

class Admission {
 public:
  // Checks every threshold of |config| against |filter| (e.g. a counting
  // filter's threshold above 15 could never admit anything) and builds the
  // per-slot table.
  static Status Create(
      std::unique_ptr<Filter> filter,
      const ::monolith::hash_table::SlotOccurrenceThresholdConfig& config,
      std::unique_ptr<Admission>* admission);

  // True when no update is ever filtered: the dummy filter, or every
  // threshold 0 (which every filter reads as "admit").
  bool AdmitsEverything() const { return admits_everything_; }

  // The ids (n of them, with a row of |dim| floats each in |values|) that
  // an update of |table| may write. Returns false when all of them may
  // (then |ids_out| and |values_out| are untouched); else fills them with
  // the admitted ids and rows, in input order.
  bool Select(const ::monolith::hash_table::EmbeddingHashTable& table,
              const int64_t* ids, int64_t n, const float* values, int dim,
              std::vector<int64_t>* ids_out, std::vector<float>* values_out);

  // Whether |fid|, seen once more, stays out of tables; counts it (the
  // original's check in the gradient of intercept_gradient).
  bool ShouldBeFiltered(int64_t fid);

  int64_t ThresholdOf(int64_t fid) const {
    return thresholds_[OccurrenceSlotOf(fid)];
  }

  // The filter, for save and restore: hold mu() for Restore (it mutates);
  // Save only reads, but must not run beside an update: hold mu() too.
  Filter& filter() { return *filter_; }
  std::mutex& mu() { return mu_; }

 private:
  Admission(std::unique_ptr<Filter> filter, std::vector<int32_t> thresholds);

  std::unique_ptr<Filter> filter_;
  std::vector<int32_t> thresholds_;  // by OccurrenceSlotOf
  bool admits_everything_ = false;
  std::mutex mu_;
};

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_ADMISSION_H_
