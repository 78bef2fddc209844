// What a table consults before an update creates an id: the filter of its
// MultiHashTable (one per PS, shared by its tables) with the per-slot
// occurrence thresholds of SlotOccurrenceThresholdConfig, as the original's
// hash filter bridge. Ids the table already holds are always written and
// never counted; for the others the table calls Admit (through
// EmbeddingHashTable::AdmitFn, holding the id's shard against other
// writers but not readers, once per occurrence, as the original's updates
// without de-duplication), and writes them once the filter admits them.
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
#include "monolith/native_training/runtime/hash_table/feature_slot.h"

namespace monolith {
namespace hash_filter {

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

  // Whether an update may create |fid| (not in the table), seen |count|
  // more times; counts it.
  bool Admit(int64_t fid, uint32_t count);

  // The AdmitFn of an update of |ids| (one occurrence each, or |counts[i]|
  // occurrences of ids[i] when given): empty when everything is admitted.
  // The arrays must outlive the update.
  ::monolith::hash_table::EmbeddingHashTable::AdmitFn AdmitFnFor(
      const int64_t* ids, const uint32_t* counts = nullptr);

  // Whether |fid|, seen once more, stays out of tables; counts it (the
  // original's check in the gradient of intercept_gradient).
  bool ShouldBeFiltered(int64_t fid);

  int64_t ThresholdOf(int64_t fid) const {
    return thresholds_[hash_table::SlotOfId(fid)];
  }

  // The filter, for save: hold mu() (a save reads it, and must not run
  // beside an update).
  Filter& filter() { return *filter_; }
  std::mutex& mu() { return mu_; }
  // Forgets every count (Filter::Clear), under mu().
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    filter_->Clear();
  }
  // Replaces the filter with |filter| (restored, of the same kind and
  // configuration), under mu().
  void ReplaceFilter(std::unique_ptr<Filter> filter) {
    std::lock_guard<std::mutex> lock(mu_);
    filter_ = std::move(filter);
  }

 private:
  Admission(std::unique_ptr<Filter> filter, std::vector<int32_t> thresholds);

  std::unique_ptr<Filter> filter_;
  std::vector<int32_t> thresholds_;  // by hash_table::SlotOfId
  bool admits_everything_ = false;
  std::mutex mu_;
};

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_ADMISSION_H_
