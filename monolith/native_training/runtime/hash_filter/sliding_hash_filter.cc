#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"

#include <algorithm>
#include <limits>
#include <new>
#include <string>
#include <utility>

namespace monolith {
namespace hash_filter {

using ::monolith::hash_table::DataLossError;
using ::monolith::hash_table::FailedPreconditionError;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using ::monolith::hash_table::InvalidArgumentError;
using ::monolith::hash_table::ResourceExhaustedError;
using ::monolith::hash_table::SlidingHashFilterMetaDump;

Status SlidingHashFilter::ComputeSplitSize(uint64_t capacity, int split_num,
                                           uint64_t* split_capacity,
                                           uint64_t* split_total_size) {
  if (split_num < kMinSplitNum || split_num > kMaxSplitNum) {
    return InvalidArgumentError("sliding hash filter split_num " +
                                std::to_string(split_num) + " must be in [" +
                                std::to_string(kMinSplitNum) + ", " +
                                std::to_string(kMaxSplitNum) + "]");
  }
  const uint64_t effective = std::max(capacity, kMinCapacity);
  *split_capacity = effective / (split_num - kMaxForwardStep + 1);
  if (*split_capacity == 0) {
    return InvalidArgumentError(
        "sliding hash filter capacity " + std::to_string(effective) +
        " is too small for " + std::to_string(split_num) +
        " splits (each split holds capacity / (split_num - 1) ids)");
  }
  Status s = HashFilter::ComputeTotalSize(*split_capacity, kSplitFillRate,
                                          split_total_size);
  if (!s.ok()) {
    return Status(s.code(), "sliding hash filter capacity " +
                                std::to_string(effective) + " in " +
                                std::to_string(split_num) +
                                " splits: " + s.message());
  }
  return Status::OK();
}

Status SlidingHashFilter::Create(uint64_t capacity, int split_num,
                                 std::unique_ptr<SlidingHashFilter>* filter) {
  uint64_t split_capacity = 0, split_total_size = 0;
  MONOLITH_RETURN_IF_ERROR(ComputeSplitSize(
      capacity, split_num, &split_capacity, &split_total_size));
  try {
    filter->reset(new SlidingHashFilter(std::max(capacity, kMinCapacity),
                                        split_num, split_capacity,
                                        split_total_size));
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(
        "sliding hash filter of capacity " + std::to_string(capacity) +
        " in " + std::to_string(split_num) + " splits: no memory for them");
  }
  return Status::OK();
}

Status SlidingHashFilter::MemoryBytesFor(uint64_t capacity, int split_num,
                                         uint64_t* bytes) {
  uint64_t split_capacity = 0, split_total_size = 0;
  MONOLITH_RETURN_IF_ERROR(ComputeSplitSize(
      capacity, split_num, &split_capacity, &split_total_size));
  // <= 2^16 splits of < 2^32 cells of 2 bytes: no overflow.
  *bytes = static_cast<uint64_t>(split_num) *
           HashFilter::MemoryBytesForTotalSize(split_total_size);
  return Status::OK();
}

Status SlidingHashFilter::BytesPerCapacityId(uint64_t capacity, int split_num,
                                             double* bytes_per_id) {
  uint64_t bytes = 0;
  MONOLITH_RETURN_IF_ERROR(MemoryBytesFor(capacity, split_num, &bytes));
  *bytes_per_id = static_cast<double>(bytes) /
                  static_cast<double>(std::max(capacity, kMinCapacity));
  return Status::OK();
}

SlidingHashFilter::SlidingHashFilter(uint64_t capacity, int split_num,
                                     uint64_t split_capacity,
                                     uint64_t split_total_size)
    : capacity_(capacity), max_backward_step_(split_num - kMaxForwardStep) {
  splits_.reserve(split_num);
  for (int i = 0; i < split_num; ++i) {
    splits_.emplace_back(
        new HashFilter(split_capacity, kSplitFillRate, split_total_size));
  }
}

SlidingHashFilter::SlidingHashFilter(const SlidingHashFilter& other)
    : capacity_(other.capacity_),
      max_backward_step_(other.max_backward_step_),
      head_(other.head_),
      head_increment_(other.head_increment_),
      failure_count_(other.failure_count_) {
  splits_.reserve(other.splits_.size());
  for (const auto& split : other.splits_) {
    splits_.emplace_back(new HashFilter(*split));
  }
}

SlidingHashFilter::SlidingHashFilter(const SlidingHashFilter& other,
                                     HashFilter::NoCells no_cells)
    : capacity_(other.capacity_),
      max_backward_step_(other.max_backward_step_) {
  splits_.reserve(other.splits_.size());
  for (const auto& split : other.splits_) {
    splits_.emplace_back(new HashFilter(*split, no_cells));
  }
}

std::unique_ptr<Filter> SlidingHashFilter::Clone() const {
  return std::unique_ptr<Filter>(new SlidingHashFilter(*this));
}

std::unique_ptr<Filter> SlidingHashFilter::CopyForRestore() const {
  return std::unique_ptr<Filter>(
      new SlidingHashFilter(*this, HashFilter::NoCells()));
}

void SlidingHashFilter::Clear() {
  for (const auto& split : splits_) split->Clear();
  head_ = 0;
  head_increment_ = 0;
  failure_count_ = 0;
}

SlidingHashFilter::Position SlidingHashFilter::FindForward(
    FID fid, uint16_t sign) const {
  int split = head_;
  for (int i = 0; i < kMaxForwardStep; ++i) {
    const int64_t index = splits_[split]->Find(fid, sign, kMaxProbeSteps);
    if (index != HashFilter::kNotFound) return {split, index};
    split = Next(split);
  }
  return {};
}

SlidingHashFilter::Position SlidingHashFilter::FindBackward(
    FID fid, uint16_t sign) const {
  const uint64_t steps =
      std::min<uint64_t>(head_increment_, max_backward_step_);
  int split = Prev(head_);
  for (uint64_t i = 0; i < steps; ++i) {
    const HashFilter& filter = *splits_[split];
    const int64_t index = filter.Find(fid, sign, kMaxProbeSteps);
    if (index != HashFilter::kNotFound && !filter.EmptyAt(index)) {
      return {split, index};
    }
    split = Prev(split);
  }
  return {};
}

uint32_t SlidingHashFilter::Add(FID fid, uint32_t count) {
  const uint16_t sign = HashFilter::Signature(fid);
  const Position current = FindForward(fid, sign);
  if (!current.found()) {
    ++failure_count_;
    return kMaxCount;
  }
  HashFilter& current_split = *splits_[current.split];
  if (!current_split.EmptyAt(current.index)) {
    return current_split.AddAt(current.index, sign, count);
  }
  // A new cell: carry the count of the newest older split that has the id.
  uint32_t old_count = 0;
  const Position old = FindBackward(fid, sign);
  if (old.found()) old_count = splits_[old.split]->CountAt(old.index);
  // old_count <= 15; clamping count first keeps the sum from wrapping.
  current_split.AddAt(current.index, sign,
                      old_count + std::min<uint32_t>(count, kMaxCount));
  if (splits_[head_]->full()) {
    head_ = Next(head_);
    ++head_increment_;
    splits_[(head_ + kMaxForwardStep - 1) % split_num()]->Clear();
  }
  return old_count;
}

uint32_t SlidingHashFilter::Get(FID fid) const {
  const uint16_t sign = HashFilter::Signature(fid);
  const Position current = FindForward(fid, sign);
  if (!current.found()) return kMaxCount;
  const HashFilter& current_split = *splits_[current.split];
  if (!current_split.EmptyAt(current.index)) {
    return current_split.CountAt(current.index);
  }
  const Position old = FindBackward(fid, sign);
  return old.found() ? splits_[old.split]->CountAt(old.index) : 0;
}

bool SlidingHashFilter::ShouldBeFiltered(int64_t fid, int64_t count,
                                         int64_t threshold,
                                         const TableContains*) {
  if (threshold <= 0) return false;
  const uint32_t clamped_count = static_cast<uint32_t>(
      std::min<int64_t>(std::max<int64_t>(count, 0), kMaxCount));
  const int64_t clamped_threshold =
      std::min<int64_t>(threshold, static_cast<int64_t>(kMaxCount));
  return Add(static_cast<FID>(fid), clamped_count) < clamped_threshold;
}

uint64_t SlidingHashFilter::estimated_total_element() const {
  uint64_t total = 0;
  for (const auto& split : splits_) total += split->estimated_total_element();
  return total;
}

uint64_t SlidingHashFilter::MemoryBytes() const {
  uint64_t total = 0;
  for (const auto& split : splits_) total += split->MemoryBytes();
  return total;
}

bool SlidingHashFilter::operator==(const SlidingHashFilter& other) const {
  if (capacity_ != other.capacity_ || splits_.size() != other.splits_.size() ||
      head_ != other.head_ || head_increment_ != other.head_increment_ ||
      failure_count_ != other.failure_count_) {
    return false;
  }
  for (size_t i = 0; i < splits_.size(); ++i) {
    if (*splits_[i] != *other.splits_[i]) return false;
  }
  return true;
}

Status SlidingHashFilter::Save(int split_idx, const WriteMetaFn& write_meta,
                               const WriteDataFn& write_data) const {
  if (split_idx < 0 || split_idx >= split_num()) {
    return InvalidArgumentError("cannot save split " +
                                std::to_string(split_idx) +
                                ": the sliding hash filter has " +
                                std::to_string(split_num()) + " splits");
  }
  HashFilterSplitMetaDump meta = splits_[split_idx]->MetaDump();
  SlidingHashFilterMetaDump* sliding = meta.mutable_sliding_hash_filter_meta();
  sliding->set_split_num(split_num());
  sliding->set_max_forward_step(kMaxForwardStep);
  sliding->set_max_backward_step(max_backward_step_);
  sliding->set_max_step(kMaxProbeSteps);
  sliding->set_head(head_);
  // A uint32 in the dump; only min(head_increment, split_num - 2) matters,
  // so saturating cannot change a decision.
  sliding->set_head_increment(static_cast<uint32_t>(std::min<uint64_t>(
      head_increment_, std::numeric_limits<uint32_t>::max())));
  sliding->set_failure_count(failure_count_);
  return splits_[split_idx]->SaveRecords(meta, write_meta, write_data);
}

namespace {

Status CheckField(const std::string& what, const char* field, uint64_t expected,
                  uint64_t in_dump) {
  if (expected == in_dump) return Status::OK();
  return FailedPreconditionError(
      what + ": " + field + " mismatch: this filter has " +
      std::to_string(expected) + ", the dump has " + std::to_string(in_dump));
}

}  // namespace

Status SlidingHashFilter::Restore(int split_idx, const ReadMetaFn& read_meta,
                                  const ReadDataFn& read_data) {
  if (split_idx < 0 || split_idx >= split_num()) {
    return InvalidArgumentError("cannot restore split " +
                                std::to_string(split_idx) +
                                ": the sliding hash filter has " +
                                std::to_string(split_num()) + " splits");
  }
  const std::string what = "sliding hash filter split " +
                           std::to_string(split_idx) + " of " +
                           std::to_string(split_num());
  HashFilterSplitMetaDump meta;
  bool has_record = false;
  MONOLITH_RETURN_IF_ERROR(read_meta(&meta, &has_record));
  if (!has_record) return DataLossError(what + ": no meta record");
  if (!meta.has_sliding_hash_filter_meta()) {
    // Every split of a sliding filter carries it: not one of its splits.
    return DataLossError(what +
                         ": the dump has no sliding_hash_filter_meta (a plain "
                         "HashFilter's dump?)");
  }
  const SlidingHashFilterMetaDump& sliding = meta.sliding_hash_filter_meta();
  MONOLITH_RETURN_IF_ERROR(
      CheckField(what, "split_num", split_num(), sliding.split_num()));
  MONOLITH_RETURN_IF_ERROR(CheckField(what, "max_forward_step", kMaxForwardStep,
                                      sliding.max_forward_step()));
  MONOLITH_RETURN_IF_ERROR(CheckField(what, "max_backward_step",
                                      max_backward_step_,
                                      sliding.max_backward_step()));
  MONOLITH_RETURN_IF_ERROR(
      CheckField(what, "max_step", kMaxProbeSteps, sliding.max_step()));
  if (sliding.head() >= static_cast<uint32_t>(split_num())) {
    return DataLossError(what + ": head " + std::to_string(sliding.head()) +
                         " is not a split index (split_num " +
                         std::to_string(split_num()) + ")");
  }
  std::vector<uint16_t> cells;
  MONOLITH_RETURN_IF_ERROR(
      splits_[split_idx]->ReadSplit(meta, read_data, what, &cells));
  // Every split's meta carries the ring's fields; Restores of different
  // splits may run at once, each writing the same values.
  std::lock_guard<std::mutex> lock(restore_mu_);
  head_ = static_cast<int>(sliding.head());
  head_increment_ = sliding.head_increment();
  failure_count_ = sliding.failure_count();
  splits_[split_idx]->CommitSplit(meta, &cells);
  return Status::OK();
}

}  // namespace hash_filter
}  // namespace monolith
