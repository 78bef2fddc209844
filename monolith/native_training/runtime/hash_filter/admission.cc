#include "monolith/native_training/runtime/hash_filter/admission.h"

#include <algorithm>
#include <memory>
#include <unordered_map>
#include <utility>

#include "monolith/native_training/runtime/hash_filter/dummy_hash_filter.h"

namespace monolith {
namespace hash_filter {
namespace {

constexpr int kNumOccurrenceSlots = 1 << 15;

// What the filters are told of the table: the ids they see are not in it
// (Select only asks about those).
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
  for (const auto& slot : config.slot_occurrence_thresholds()) {
    if (slot.slot() >= static_cast<uint32_t>(kNumOccurrenceSlots)) {
      return hash_table::InvalidArgumentError(
          "slot_occurrence_thresholds: slot " + std::to_string(slot.slot()) +
          " is out of range [0, " + std::to_string(kNumOccurrenceSlots) +
          ")");
    }
    thresholds[slot.slot()] = static_cast<int32_t>(slot.occurrence_threshold());
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

bool Admission::Select(const ::monolith::hash_table::EmbeddingHashTable& table,
                       const int64_t* ids, int64_t n, const float* values,
                       int dim, std::vector<int64_t>* ids_out,
                       std::vector<float>* values_out) {
  if (admits_everything_ || n == 0) return false;
  std::unique_ptr<bool[]> found(new bool[n]);
  if (table.BatchContains(ids, n, found.get()) == n) return false;
  // Occurrences of each absent id, counted once per update.
  std::unordered_map<int64_t, uint32_t> absent;
  absent.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    if (!found[i]) ++absent[ids[i]];
  }
  // absent[id]: its count, then 1 if admitted, 0 if filtered.
  const NotInTable not_in_table;
  bool any_filtered = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, count] : absent) {
      const bool filtered = filter_->ShouldBeFiltered(id, count,
                                                      ThresholdOf(id),
                                                      &not_in_table);
      count = filtered ? 0 : 1;
      any_filtered |= filtered;
    }
  }
  if (!any_filtered) return false;
  ids_out->clear();
  values_out->clear();
  for (int64_t i = 0; i < n; ++i) {
    if (!found[i] && absent[ids[i]] == 0) continue;
    ids_out->push_back(ids[i]);
    values_out->insert(values_out->end(), values + i * dim,
                       values + (i + 1) * dim);
  }
  return true;
}

bool Admission::ShouldBeFiltered(int64_t fid) {
  if (admits_everything_) return false;
  std::lock_guard<std::mutex> lock(mu_);
  // No table: as the original's gradient check, the probabilistic filter
  // admits, the counting ones count.
  return filter_->ShouldBeFiltered(fid, 1, ThresholdOf(fid), nullptr);
}

}  // namespace hash_filter
}  // namespace monolith
