// HashFilter: a counting filter of 16-bit cells, each a 12-bit id signature
// and a 4-bit saturating count, in one open-addressing array probed linearly
// for a bounded number of steps. Ids whose signatures collide share a count
// (the filter is approximate, like a counting Bloom filter); an id whose
// probe window is full of other signatures cannot be stored: Add counts a
// failure and reports kMaxCount (so such ids are admitted).
//
// Same decisions as the original's HashFilter<uint16_t> for the same cell
// positions: the signature is (fid >> 17 | fid << 15) & 0xFFF, the array
// holds capacity * fill_rate cells plus kMaxProbeSteps of padding, a probe
// takes the first cell that is empty or carries the signature, counts
// saturate at 15, and the element count stops at the capacity.
//
// Difference: the original places an id with absl::Hash, which is seeded per
// process, so its dumps put ids in cells another process never probes. Here
// the home cell is HashFilterPosition(fid) % total_size with a fixed
// splitmix64 mixer (below), so a saved filter restores correctly in another
// process (and dumps of the original do not restore into this one usefully:
// the cells load, but ids are looked up elsewhere).
//
// Not thread-safe; see filter.h.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_HASH_FILTER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_HASH_FILTER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "monolith/native_training/runtime/hash_filter/filter.h"

namespace monolith {
namespace hash_filter {

// The position hash of the dump format: splitmix64 of the id (add the golden
// gamma 0x9E3779B97F4A7C15, then xor-shift-multiply by 0xBF58476D1CE4E5B9
// and 0x94D049BB133111EB with shifts 30, 27, 31). Fixed forever: changing
// it makes every saved filter look up ids in the wrong cells.
inline uint64_t HashFilterPosition(FID fid) {
  uint64_t z = fid + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class HashFilter : public Filter {
 public:
  static constexpr double kDefaultFillRate = 1.5;
  // Cells a standalone HashFilter probes per id; also the padding after the
  // capacity * fill_rate cells (part of the dump format).
  static constexpr int kMaxProbeSteps = 64;
  static constexpr uint32_t kSignatureMask =
      (1u << (16 - kCountBits)) - 1;  // 0xFFF
  // Cells per HashFilterSplitDataDump record, as the original writes them.
  static constexpr int kCellsPerDataRecord = 10000;
  // Most cells one filter may hold: data records address cells with uint32
  // offsets (8 GiB of cells).
  static constexpr uint64_t kMaxCells = 0xFFFFFFFFULL;

  // |capacity| >= 1 ids; |fill_rate| >= 1 (finite); capacity * fill_rate
  // (truncated, as the original computes it) plus the padding must not
  // exceed kMaxCells. InvalidArgument naming the values otherwise.
  static Status Create(uint64_t capacity, double fill_rate,
                       std::unique_ptr<HashFilter>* filter);
  // The checks of Create; *total_size = capacity * fill_rate (truncated).
  static Status ComputeTotalSize(uint64_t capacity, double fill_rate,
                                 uint64_t* total_size);
  // Bytes of cells of a filter of |total_size| cells (plus padding).
  static uint64_t MemoryBytesForTotalSize(uint64_t total_size) {
    return (total_size + kMaxProbeSteps) * sizeof(uint16_t);
  }

  static uint16_t Signature(FID fid) {
    return static_cast<uint16_t>((fid >> 17 | fid << 15) & kSignatureMask);
  }

  // Filter:
  uint32_t Add(FID fid, uint32_t count) override;
  uint32_t Get(FID fid) const override;
  // threshold <= 0: false (nothing added). Otherwise Add(fid, count) <
  // threshold, with count clamped to [0, 15] and a threshold above 15
  // (rejected by ValidateThreshold) treated as 15. |table| is ignored.
  bool ShouldBeFiltered(int64_t fid, int64_t count, int64_t threshold,
                        const TableContains* table) override;
  Status ValidateThreshold(int64_t threshold) const override {
    return ValidateCountingThreshold(threshold);
  }
  uint64_t capacity() const override { return capacity_; }
  // One split: a standalone HashFilter saves and restores as split 0 (the
  // original's reports 0 and cannot be saved through the Filter interface).
  int split_num() const override { return 1; }
  uint64_t estimated_total_element() const override { return num_elements_; }
  uint64_t failure_count() const override { return failure_count_; }
  uint64_t MemoryBytes() const override {
    return cells_.size() * sizeof(uint16_t);
  }
  std::unique_ptr<Filter> Clone() const override;
  std::unique_ptr<Filter> CopyForRestore() const override;
  // Split 0 only: a HashFilterSplitMetaDump without sliding_hash_filter_meta,
  // then the cells in records of kCellsPerDataRecord.
  Status Save(int split_idx, const WriteMetaFn& write_meta,
              const WriteDataFn& write_data) const override;
  Status Restore(int split_idx, const ReadMetaFn& read_meta,
                 const ReadDataFn& read_data) override;

  // Whether the element count reached capacity - 1 (SlidingHashFilter then
  // moves on to the next split).
  bool full() const { return num_elements_ + 1 >= capacity_; }
  // Empties every cell; zeroes the element and failure counts.
  void Clear() override;

  double fill_rate() const { return fill_rate_; }
  uint64_t total_size() const { return total_size_; }
  // total_size() + kMaxProbeSteps cells.
  const std::vector<uint16_t>& cells() const { return cells_; }

  // Same configuration and state (cells, counts).
  bool operator==(const HashFilter& other) const;
  bool operator!=(const HashFilter& other) const { return !(*this == other); }

 private:
  friend class SlidingHashFilter;
  static constexpr int64_t kNotFound = -1;

  HashFilter(uint64_t capacity, double fill_rate, uint64_t total_size);
  // |other|'s configuration, no cells (CopyForRestore).
  struct NoCells {};
  HashFilter(const HashFilter& other, NoCells);

  // The first cell of |fid|'s probe window (|max_steps| cells from its home
  // cell) that is empty or carries |sign|; kNotFound if none.
  int64_t Find(FID fid, uint16_t sign, int max_steps) const;
  bool EmptyAt(int64_t index) const { return cells_[index] == 0; }
  uint32_t CountAt(int64_t index) const { return cells_[index] & kMaxCount; }
  // Adds |count| (clamped to 15) at |index|, claiming the cell for |sign| if
  // it is empty; returns the count before (0 for a claimed cell).
  uint32_t AddAt(int64_t index, uint16_t sign, uint32_t count);

  // The meta fields of this split (no sliding meta).
  ::monolith::hash_table::HashFilterSplitMetaDump MetaDump() const;
  // Writes |meta|, then the data records.
  Status SaveRecords(
      const ::monolith::hash_table::HashFilterSplitMetaDump& meta,
      const WriteMetaFn& write_meta, const WriteDataFn& write_data) const;
  // Checks |meta|'s split fields against this filter, then reads every data
  // record into *cells (sized here from the configuration, never from the
  // file). |what| names the split in errors. Changes nothing of the
  // filter.
  Status ReadSplit(const ::monolith::hash_table::HashFilterSplitMetaDump& meta,
                   const ReadDataFn& read_data, const std::string& what,
                   std::vector<uint16_t>* cells) const;
  // Takes the state that ReadSplit checked.
  void CommitSplit(const ::monolith::hash_table::HashFilterSplitMetaDump& meta,
                   std::vector<uint16_t>* cells);

  uint64_t capacity_;
  double fill_rate_;
  uint64_t total_size_;
  uint64_t num_elements_ = 0;
  uint64_t failure_count_ = 0;
  std::vector<uint16_t> cells_;
};

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_HASH_FILTER_H_
