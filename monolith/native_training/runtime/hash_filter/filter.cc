#include "monolith/native_training/runtime/hash_filter/filter.h"

#include <cstdint>
#include <limits>

#include <string>

namespace monolith {
namespace hash_filter {

using ::monolith::hash_table::InvalidArgumentError;
using ::monolith::hash_table::SlotOccurrenceThresholdConfig;

Status Filter::ValidateThreshold(int64_t threshold) const {
  if (threshold < 0) {
    return InvalidArgumentError("occurrence threshold " +
                                std::to_string(threshold) +
                                " is negative; use 0 for no filtering");
  }
  if (threshold > std::numeric_limits<int32_t>::max()) {
    return InvalidArgumentError("occurrence threshold " +
                                std::to_string(threshold) +
                                " is past 2^31 - 1");
  }
  return Status::OK();
}

Status Filter::Save(int split_idx, const WriteMetaFn&,
                    const WriteDataFn&) const {
  return InvalidArgumentError("cannot save split " + std::to_string(split_idx) +
                              ": this filter has " +
                              std::to_string(split_num()) + " splits");
}

Status Filter::Restore(int split_idx, const ReadMetaFn&, const ReadDataFn&) {
  return InvalidArgumentError("cannot restore split " +
                              std::to_string(split_idx) + ": this filter has " +
                              std::to_string(split_num()) + " splits");
}

Status ValidateCountingThreshold(int64_t threshold) {
  if (threshold < 0) {
    return InvalidArgumentError("occurrence threshold " +
                                std::to_string(threshold) +
                                " is negative; use 0 for no filtering");
  }
  if (threshold > static_cast<int64_t>(Filter::kMaxCount)) {
    return InvalidArgumentError(
        "occurrence threshold " + std::to_string(threshold) +
        " exceeds the maximum " + std::to_string(Filter::kMaxCount) +
        " of the counting hash filter (its counts saturate at " +
        std::to_string(Filter::kMaxCount) +
        ", so no id would ever be admitted)");
  }
  return Status::OK();
}

Status ValidateSlotOccurrenceThresholdConfig(
    const Filter& filter, const SlotOccurrenceThresholdConfig& config) {
  Status s = filter.ValidateThreshold(config.default_occurrence_threshold());
  if (!s.ok()) {
    return Status(s.code(), "default_occurrence_threshold: " + s.message());
  }
  for (const auto& slot_threshold : config.slot_occurrence_thresholds()) {
    s = filter.ValidateThreshold(slot_threshold.occurrence_threshold());
    if (!s.ok()) {
      return Status(s.code(), "slot " + std::to_string(slot_threshold.slot()) +
                                  ": " + s.message());
    }
  }
  return Status::OK();
}

}  // namespace hash_filter
}  // namespace monolith
