#include "monolith/native_training/runtime/hash_filter/admission.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "monolith/native_training/runtime/hash_filter/dummy_hash_filter.h"

namespace monolith {
namespace hash_filter {
namespace {

constexpr int kNumOccurrenceSlots = 1 << 15;

// What the filters are told of the table: the ids they see are not in it
// (tables only ask about those).
class NotInTable final : public TableContains {
 public:
  bool Contains(int64_t) const override { return false; }
};

}  // namespace

Status Admission::Create(
    std::unique_ptr<Filter> filter,
    const ::monolith::hash_table::SlotOccurrenceThresholdConfig& config,
    std::unique_ptr<Admission>* admission) {
  MONOLITH_RETURN_IF_ERROR(
      ValidateSlotOccurrenceThresholdConfig(*filter, config));
  std::vector<int32_t> thresholds(
      kNumOccurrenceSlots,
      static_cast<int32_t>(config.default_occurrence_threshold()));
  // A slot given two different thresholds is refused (the last would win,
  // silently).
  std::vector<bool> given(kNumOccurrenceSlots, false);
  for (const auto& slot : config.slot_occurrence_thresholds()) {
    if (slot.slot() >= static_cast<uint32_t>(kNumOccurrenceSlots)) {
      return hash_table::InvalidArgumentError(
          "slot_occurrence_thresholds: slot " + std::to_string(slot.slot()) +
          " is out of range [0, " + std::to_string(kNumOccurrenceSlots) +
          ")");
    }
    const auto threshold = static_cast<int32_t>(slot.occurrence_threshold());
    if (given[slot.slot()] && thresholds[slot.slot()] != threshold) {
      return hash_table::InvalidArgumentError(
          "slot_occurrence_thresholds: slot " + std::to_string(slot.slot()) +
          " is given twice, with occurrence_threshold " +
          std::to_string(thresholds[slot.slot()]) + " and " +
          std::to_string(threshold));
    }
    given[slot.slot()] = true;
    thresholds[slot.slot()] = threshold;
  }
  admission->reset(new Admission(std::move(filter), std::move(thresholds)));
  return Status::OK();
}

Admission::Admission(std::unique_ptr<Filter> filter,
                     std::vector<int32_t> thresholds)
    : filter_(std::move(filter)), thresholds_(std::move(thresholds)) {
  admits_everything_ =
      dynamic_cast<DummyHashFilter*>(filter_.get()) != nullptr ||
      std::all_of(thresholds_.begin(), thresholds_.end(),
                  [](int32_t t) { return t <= 0; });
}

bool Admission::Admit(int64_t fid, uint32_t count) {
  // A slot of threshold 0 admits everything, counting nothing, in every
  // filter: without the filter's lock, which every table's updates share.
  const int64_t threshold = ThresholdOf(fid);
  if (threshold <= 0) return true;
  const NotInTable not_in_table;
  std::lock_guard<std::mutex> lock(mu_);
  return !filter_->ShouldBeFiltered(fid, count, threshold, &not_in_table);
}

::monolith::hash_table::EmbeddingHashTable::AdmitFn Admission::AdmitFnFor(
    const int64_t* ids, const uint32_t* counts) {
  if (admits_everything_) return {};
  return [this, ids, counts](int64_t i) {
    return Admit(ids[i], counts == nullptr ? 1 : counts[i]);
  };
}

bool Admission::ShouldBeFiltered(int64_t fid) {
  const int64_t threshold = ThresholdOf(fid);
  if (admits_everything_ || threshold <= 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  // No table: as the original's gradient check, the probabilistic filter
  // admits, the counting ones count.
  return filter_->ShouldBeFiltered(fid, 1, threshold, nullptr);
}

}  // namespace hash_filter
}  // namespace monolith
