#include "monolith/native_training/runtime/hash_filter/hash_filter.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <new>
#include <string>
#include <utility>

namespace monolith {
namespace hash_filter {

using ::monolith::hash_table::DataLossError;
using ::monolith::hash_table::FailedPreconditionError;
using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using ::monolith::hash_table::InvalidArgumentError;
using ::monolith::hash_table::ResourceExhaustedError;

namespace {

std::string DoubleToString(double v) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace

Status HashFilter::ComputeTotalSize(uint64_t capacity, double fill_rate,
                                    uint64_t* total_size) {
  if (capacity == 0) {
    return InvalidArgumentError("hash filter capacity must be at least 1");
  }
  if (!std::isfinite(fill_rate) || fill_rate < 1.0) {
    return InvalidArgumentError("hash filter fill_rate " +
                                DoubleToString(fill_rate) +
                                " must be a finite number >= 1");
  }
  // The original computes capacity * fill_rate in double and truncates;
  // check the product before converting (a double >= 2^64 does not fit).
  const double product = static_cast<double>(capacity) * fill_rate;
  const uint64_t max_total = kMaxCells - kMaxProbeSteps;
  if (!(product < static_cast<double>(max_total))) {
    return InvalidArgumentError(
        "hash filter capacity " + std::to_string(capacity) + " * fill_rate " +
        DoubleToString(fill_rate) + " needs more than " +
        std::to_string(max_total) + " cells (the most one filter can hold)");
  }
  *total_size = static_cast<uint64_t>(product);
  if (*total_size == 0) {
    return InvalidArgumentError("hash filter capacity " +
                                std::to_string(capacity) + " * fill_rate " +
                                DoubleToString(fill_rate) + " gives no cells");
  }
  return Status::OK();
}

Status HashFilter::Create(uint64_t capacity, double fill_rate,
                          std::unique_ptr<HashFilter>* filter) {
  uint64_t total_size = 0;
  MONOLITH_RETURN_IF_ERROR(ComputeTotalSize(capacity, fill_rate, &total_size));
  try {
    filter->reset(new HashFilter(capacity, fill_rate, total_size));
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(
        "hash filter of capacity " + std::to_string(capacity) + ": no memory "
        "for its " + std::to_string(total_size + kMaxProbeSteps) + " cells");
  }
  return Status::OK();
}

HashFilter::HashFilter(uint64_t capacity, double fill_rate, uint64_t total_size)
    : capacity_(capacity),
      fill_rate_(fill_rate),
      total_size_(total_size),
      cells_(total_size + kMaxProbeSteps, 0) {}

HashFilter::HashFilter(const HashFilter& other, NoCells)
    : capacity_(other.capacity_),
      fill_rate_(other.fill_rate_),
      total_size_(other.total_size_) {}

int64_t HashFilter::Find(FID fid, uint16_t sign, int max_steps) const {
  const int64_t size = static_cast<int64_t>(cells_.size());
  int64_t index = static_cast<int64_t>(HashFilterPosition(fid) % total_size_);
  for (int step = 0; step < max_steps; ++step) {
    const uint16_t cell = cells_[index];
    if (cell == 0 || (cell >> kCountBits) == sign) return index;
    // Never wraps in practice: the home cell is below total_size and the
    // padding holds kMaxProbeSteps cells.
    if (++index == size) index = 0;
  }
  return kNotFound;
}

uint32_t HashFilter::AddAt(int64_t index, uint16_t sign, uint32_t count) {
  if (count > kMaxCount) count = kMaxCount;
  uint16_t& cell = cells_[index];
  if (cell == 0) {
    // As the original: the element count stops at the capacity, and a
    // claim with count 0 of signature 0 leaves the cell empty but counted.
    if (num_elements_ < capacity_) ++num_elements_;
    cell = static_cast<uint16_t>((sign << kCountBits) + count);
    return 0;
  }
  const uint32_t old = cell & kMaxCount;
  if (old + count >= kMaxCount) {
    cell |= kMaxCount;
  } else {
    cell = static_cast<uint16_t>(cell + count);
  }
  return old;
}

uint32_t HashFilter::Add(FID fid, uint32_t count) {
  const uint16_t sign = Signature(fid);
  const int64_t index = Find(fid, sign, kMaxProbeSteps);
  if (index == kNotFound) {
    ++failure_count_;
    return kMaxCount;
  }
  return AddAt(index, sign, count);
}

uint32_t HashFilter::Get(FID fid) const {
  const int64_t index = Find(fid, Signature(fid), kMaxProbeSteps);
  return index == kNotFound ? kMaxCount : CountAt(index);
}

bool HashFilter::ShouldBeFiltered(int64_t fid, int64_t count, int64_t threshold,
                                  const TableContains*) {
  if (threshold <= 0) return false;
  const uint32_t clamped_count = static_cast<uint32_t>(
      std::min<int64_t>(std::max<int64_t>(count, 0), kMaxCount));
  const int64_t clamped_threshold =
      std::min<int64_t>(threshold, static_cast<int64_t>(kMaxCount));
  return Add(static_cast<FID>(fid), clamped_count) < clamped_threshold;
}

void HashFilter::Clear() {
  std::fill(cells_.begin(), cells_.end(), 0);
  num_elements_ = 0;
  failure_count_ = 0;
}

std::unique_ptr<Filter> HashFilter::Clone() const {
  return std::unique_ptr<Filter>(new HashFilter(*this));
}

std::unique_ptr<Filter> HashFilter::CopyForRestore() const {
  return std::unique_ptr<Filter>(new HashFilter(*this, NoCells()));
}

bool HashFilter::operator==(const HashFilter& other) const {
  return capacity_ == other.capacity_ && fill_rate_ == other.fill_rate_ &&
         total_size_ == other.total_size_ &&
         num_elements_ == other.num_elements_ &&
         failure_count_ == other.failure_count_ && cells_ == other.cells_;
}

HashFilterSplitMetaDump HashFilter::MetaDump() const {
  HashFilterSplitMetaDump meta;
  meta.set_failure_count(failure_count_);
  meta.set_total_size(total_size_);
  meta.set_num_elements(num_elements_);
  meta.set_fill_rate(fill_rate_);
  return meta;
}

Status HashFilter::SaveRecords(const HashFilterSplitMetaDump& meta,
                               const WriteMetaFn& write_meta,
                               const WriteDataFn& write_data) const {
  MONOLITH_RETURN_IF_ERROR(write_meta(meta));
  const uint64_t size = cells_.size();  // <= kMaxCells: offsets fit uint32
  HashFilterSplitDataDump data;
  for (uint64_t start = 0; start < size; start += kCellsPerDataRecord) {
    const uint64_t end = std::min<uint64_t>(start + kCellsPerDataRecord, size);
    data.Clear();
    data.set_offset(static_cast<uint32_t>(start));
    auto* values = data.mutable_data();
    values->Reserve(static_cast<int>(end - start));
    for (uint64_t i = start; i < end; ++i) values->Add(cells_[i]);
    MONOLITH_RETURN_IF_ERROR(write_data(data));
  }
  return Status::OK();
}

Status HashFilter::Save(int split_idx, const WriteMetaFn& write_meta,
                        const WriteDataFn& write_data) const {
  if (split_idx != 0) {
    return InvalidArgumentError("cannot save split " +
                                std::to_string(split_idx) +
                                ": a HashFilter has 1 split");
  }
  return SaveRecords(MetaDump(), write_meta, write_data);
}

Status HashFilter::ReadSplit(const HashFilterSplitMetaDump& meta,
                             const ReadDataFn& read_data,
                             const std::string& what,
                             std::vector<uint16_t>* cells) const {
  if (!std::isfinite(meta.fill_rate()) || meta.fill_rate() < 1.0) {
    // No save writes it (Create refuses it): the record is corrupt, not
    // of a filter configured otherwise.
    return DataLossError(what + ": the dump has fill_rate " +
                         DoubleToString(meta.fill_rate()) +
                         ", which no filter has");
  }
  if (meta.total_size() != total_size_) {
    return FailedPreconditionError(what + ": the dump has total_size " +
                                   std::to_string(meta.total_size()) +
                                   " cells but this filter has " +
                                   std::to_string(total_size_) + " (capacity " +
                                   std::to_string(capacity_) + " * fill_rate " +
                                   DoubleToString(fill_rate_) +
                                   "); was the filter configured differently?");
  }
  if (!(std::fabs(meta.fill_rate() - fill_rate_) <= 1e-9)) {
    return FailedPreconditionError(
        what + ": the dump has fill_rate " + DoubleToString(meta.fill_rate()) +
        " but this filter has " + DoubleToString(fill_rate_));
  }
  if (meta.num_elements() > capacity_) {
    return DataLossError(
        what + ": the dump counts " + std::to_string(meta.num_elements()) +
        " elements, more than the capacity " + std::to_string(capacity_));
  }
  // Not cells_.size(): a CopyForRestore has none yet.
  const uint64_t size = total_size_ + kMaxProbeSteps;
  cells->assign(size, 0);
  uint64_t next = 0;
  HashFilterSplitDataDump data;
  while (true) {
    data.Clear();
    bool has_record = false;
    MONOLITH_RETURN_IF_ERROR(read_data(&data, &has_record));
    if (!has_record) break;
    const uint64_t offset = data.offset();
    const uint64_t n = static_cast<uint64_t>(data.data_size());
    if (offset != next) {
      return DataLossError(what + ": data record at offset " +
                           std::to_string(offset) + ", expected offset " +
                           std::to_string(next) +
                           " (records missing, duplicated or out of order)");
    }
    if (n == 0) {
      return DataLossError(what + ": empty data record at offset " +
                           std::to_string(offset));
    }
    if (n > size - next) {
      return DataLossError(what + ": data record at offset " +
                           std::to_string(offset) + " holds " +
                           std::to_string(n) + " cells but only " +
                           std::to_string(size - next) + " of the " +
                           std::to_string(size) + " cells remain");
    }
    for (uint64_t i = 0; i < n; ++i) {
      const uint32_t value = data.data(static_cast<int>(i));
      if (value > 0xFFFF) {
        return DataLossError(what + ": cell " + std::to_string(next + i) +
                             " holds " + std::to_string(value) +
                             ", not a 16-bit value");
      }
      (*cells)[next + i] = static_cast<uint16_t>(value);
    }
    next += n;
  }
  if (next != size) {
    return DataLossError(what + ": data records hold " + std::to_string(next) +
                         " cells, expected " + std::to_string(size) +
                         " (truncated dump?)");
  }
  return Status::OK();
}

void HashFilter::CommitSplit(const HashFilterSplitMetaDump& meta,
                             std::vector<uint16_t>* cells) {
  failure_count_ = meta.failure_count();
  num_elements_ = meta.num_elements();
  cells_.swap(*cells);
}

Status HashFilter::Restore(int split_idx, const ReadMetaFn& read_meta,
                           const ReadDataFn& read_data) {
  if (split_idx != 0) {
    return InvalidArgumentError("cannot restore split " +
                                std::to_string(split_idx) +
                                ": a HashFilter has 1 split");
  }
  const std::string what = "hash filter";
  HashFilterSplitMetaDump meta;
  bool has_record = false;
  MONOLITH_RETURN_IF_ERROR(read_meta(&meta, &has_record));
  if (!has_record) return DataLossError(what + ": no meta record");
  if (meta.has_sliding_hash_filter_meta()) {
    return FailedPreconditionError(
        what + ": the dump is a split of a SlidingHashFilter of " +
        std::to_string(meta.sliding_hash_filter_meta().split_num()) +
        " splits, not a HashFilter");
  }
  std::vector<uint16_t> cells;
  MONOLITH_RETURN_IF_ERROR(ReadSplit(meta, read_data, what, &cells));
  CommitSplit(meta, &cells);
  return Status::OK();
}

}  // namespace hash_filter
}  // namespace monolith
