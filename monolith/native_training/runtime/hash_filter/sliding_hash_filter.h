// SlidingHashFilter: a ring of split_num HashFilters ("splits") that counts
// recent ids and forgets the oldest ones, what the hash filter op creates.
//
// Behaviour (the original's SlidingHashFilter, step for step):
//  * Each split holds capacity / (split_num - 1) ids at fill rate 1.2 and
//    probes 16 cells per id. One split, "head", takes new ids.
//  * Add looks *forward* from head over 2 splits (head, then the next) for
//    the first probe window with an empty cell or the id's signature. None:
//    a failure is counted and kMaxCount returned (the id is admitted).
//    A cell that already counts the id: its count is increased and the count
//    before returned.
//  * Otherwise (the id gets a new cell) Add looks *backward* from the split
//    before head, over min(head_increment, split_num - 2) splits, for the
//    newest split that still counts the id; its count is carried forward:
//    the new cell gets old count + count (saturating at 15), and the old
//    count is returned (0 when there is none). The old split keeps its cell.
//  * When head's element count reaches its capacity - 1, head moves to the
//    next split, head_increment grows by one and the split after the new
//    head (the oldest) is cleared, so it is empty when head reaches it.
//  * Get looks the same way and changes nothing.
//
// Differences from the original (deliberate):
//  * Construction validates (Create returns Status): split_num must be in
//    [3, 65536] and is used as given. The original silently builds 5 splits
//    for split_num < 5 while reporting and saving split_num (so its save op
//    writes only split_num of the 5 splits).
//  * Like the original, a capacity below 300 becomes 300; each split's size
//    must fit a dump (HashFilter::kMaxCells) and be at least 1.
//  * Positions use HashFilterPosition (hash_filter.h), not absl::Hash.
//  * Save/Restore return Status; Restore checks every field it reads and
//    restores nothing of a split on error (see Restore).
//
// Not thread-safe; see filter.h (Restore of different splits may run
// concurrently with each other).
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_SLIDING_HASH_FILTER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_SLIDING_HASH_FILTER_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "monolith/native_training/runtime/hash_filter/filter.h"
#include "monolith/native_training/runtime/hash_filter/hash_filter.h"

namespace monolith {
namespace hash_filter {

class SlidingHashFilter : public Filter {
 public:
  static constexpr double kSplitFillRate = 1.2;
  // Splits looked at forward from head (head and the next one); the
  // original's max_forward_step.
  static constexpr int kMaxForwardStep = 2;
  // Cells probed per split; the original's max_step.
  static constexpr int kMaxProbeSteps = 16;
  static constexpr uint64_t kMinCapacity = 300;
  // Two splits would clear the split that just filled at each rotation
  // (no count would carry forward).
  static constexpr int kMinSplitNum = 3;
  static constexpr int kMaxSplitNum = 1 << 16;

  // |capacity| ids in total (raised to kMinCapacity if below, as the
  // original), in |split_num| splits. InvalidArgument for split_num outside
  // [kMinSplitNum, kMaxSplitNum] or splits too small or too large.
  static Status Create(uint64_t capacity, int split_num,
                       std::unique_ptr<SlidingHashFilter>* filter);
  // The checks of Create; *split_capacity = max(capacity, 300) /
  // (split_num - kMaxForwardStep + 1), *split_total_size its cells.
  static Status ComputeSplitSize(uint64_t capacity, int split_num,
                                 uint64_t* split_capacity,
                                 uint64_t* split_total_size);
  // Bytes of cells a filter of this configuration holds:
  // split_num * (split_capacity * 1.2 + 64 padding cells) * 2 bytes.
  static Status MemoryBytesFor(uint64_t capacity, int split_num,
                               uint64_t* bytes);
  // MemoryBytesFor / max(capacity, 300): bytes per id the filter is sized to
  // count, about 2 bytes * 1.2 * split_num / (split_num - 1) (2.8 for the
  // op's default split_num 7), the same as the original.
  static Status BytesPerCapacityId(uint64_t capacity, int split_num,
                                   double* bytes_per_id);

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
  int split_num() const override { return static_cast<int>(splits_.size()); }
  // The sum of the splits' element counts.
  uint64_t estimated_total_element() const override;
  // Adds whose forward probe windows were all full.
  uint64_t failure_count() const override { return failure_count_; }
  uint64_t MemoryBytes() const override;
  std::unique_ptr<Filter> Clone() const override;
  std::unique_ptr<Filter> CopyForRestore() const override;
  // Empties every split; the ring starts again at split 0.
  void Clear() override;

  // Writes split |split_idx|: one HashFilterSplitMetaDump (the split's
  // failure_count, total_size, num_elements, fill_rate, and the ring's
  // SlidingHashFilterMetaDump: split_num, max_forward_step 2,
  // max_backward_step split_num - 2, max_step 16, head, head_increment,
  // failure_count), then HashFilterSplitDataDump records of 10000 cells
  // (offset = index of the first cell), the original's layout.
  Status Save(int split_idx, const WriteMetaFn& write_meta,
              const WriteDataFn& write_data) const override;
  // Reads what Save wrote for |split_idx|; takes the ring's head,
  // head_increment and failure_count from its meta (every split carries
  // them). Errors: split_num, max_forward_step, max_backward_step or
  // max_step differ from this filter's (FailedPrecondition naming both),
  // the split's total_size or fill_rate differ (FailedPrecondition), head out
  // of range, more elements than the split's capacity, data records out of
  // order, overlapping, beyond the split, empty, cells above 16 bits, or
  // missing (DataLoss), or the callbacks' own errors. On error nothing is
  // changed.
  Status Restore(int split_idx, const ReadMetaFn& read_meta,
                 const ReadDataFn& read_data) override;

  int head() const { return head_; }
  uint64_t head_increment() const { return head_increment_; }
  int max_backward_step() const { return max_backward_step_; }
  const HashFilter& split(int index) const { return *splits_[index]; }
  // capacity() / (split_num - 1): ids per split.
  uint64_t split_capacity() const { return splits_[0]->capacity(); }

  // Same configuration and state (head, head_increment, failure count,
  // every split).
  bool operator==(const SlidingHashFilter& other) const;
  bool operator!=(const SlidingHashFilter& other) const {
    return !(*this == other);
  }

 private:
  struct Position {
    int split = -1;
    int64_t index = -1;
    bool found() const { return split >= 0; }
  };

  SlidingHashFilter(uint64_t capacity, int split_num, uint64_t split_capacity,
                    uint64_t split_total_size);
  SlidingHashFilter(const SlidingHashFilter& other);  // for Clone
  // |other|'s configuration, splits without cells (CopyForRestore).
  SlidingHashFilter(const SlidingHashFilter& other, HashFilter::NoCells);
  SlidingHashFilter& operator=(const SlidingHashFilter&) = delete;

  int Prev(int index) const { return index == 0 ? split_num() - 1 : index - 1; }
  int Next(int index) const { return index == split_num() - 1 ? 0 : index + 1; }
  // The first cell, from head forward over kMaxForwardStep splits, that is
  // empty or carries |sign|.
  Position FindForward(FID fid, uint16_t sign) const;
  // The first cell, from head - 1 backward over min(head_increment,
  // max_backward_step) splits, that carries |sign| (never an empty one).
  Position FindBackward(FID fid, uint16_t sign) const;

  uint64_t capacity_;
  int max_backward_step_;
  std::vector<std::unique_ptr<HashFilter>> splits_;
  int head_ = 0;
  uint64_t head_increment_ = 0;
  uint64_t failure_count_ = 0;
  // Guards head_, head_increment_ and failure_count_ while Restores of
  // different splits run at once.
  std::mutex restore_mu_;
};

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_SLIDING_HASH_FILTER_H_
