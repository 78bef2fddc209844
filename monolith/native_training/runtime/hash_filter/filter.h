// Embedding-id admission filters ("hash filters"): a filter decides whether
// an id seen in a batch should be kept out of the embedding table for now
// (ShouldBeFiltered), so that rare ids do not take table memory.
//
// Implementations (each in its own header, all in the :hash_filter target):
//  * HashFilter (hash_filter.h): one counting table of 16-bit cells.
//  * SlidingHashFilter (sliding_hash_filter.h): a ring of HashFilters that
//    forgets the oldest ids; what the hash filter op creates.
//  * ProbabilisticFilter (probabilistic_filter.h): stateless, random
//    admission with a probability that grows with the count.
//  * DummyHashFilter (dummy_hash_filter.h): admits everything.
//
// No TensorFlow, absl or exceptions: errors are hash_table::Status.
//
// Thread-safety (all filters): a filter is NOT internally synchronized.
// Add, ShouldBeFiltered (which adds; ProbabilisticFilter's advances its
// random engine) and Restore mutate it: the caller must hold an exclusive
// lock around a filter for those. Const methods (Get, Save, the accessors)
// only read and may run concurrently with each other (e.g. Save of every
// split at once, as the original's save op does), but not beside a
// mutation. SlidingHashFilter also allows Restore of *different* splits to
// run concurrently with each other (as the original's restore op does),
// never beside any other call.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FILTER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FILTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_filter {

using FID = uint64_t;
using ::monolith::hash_table::Status;

// What a filter needs from the embedding table: whether an id is already in
// it (ProbabilisticFilter never filters such ids; the counting filters
// ignore the table, as the original's do). The caller adapts its table;
// TableContainsAdapter below wraps anything with `bool Contains(int64_t)
// const` (e.g. hash_table::EmbeddingHashTable) and FunctionTableContains a
// std::function.
class TableContains {
 public:
  virtual ~TableContains() = default;
  virtual bool Contains(int64_t fid) const = 0;
};

template <typename Table>
class TableContainsAdapter final : public TableContains {
 public:
  explicit TableContainsAdapter(const Table* table) : table_(table) {}
  bool Contains(int64_t fid) const override { return table_->Contains(fid); }

 private:
  const Table* table_;
};

class FunctionTableContains final : public TableContains {
 public:
  explicit FunctionTableContains(std::function<bool(int64_t)> contains)
      : contains_(std::move(contains)) {}
  bool Contains(int64_t fid) const override { return contains_(fid); }

 private:
  std::function<bool(int64_t)> contains_;
};

// Save callbacks: called once with the split's meta record, then once per
// data record, in order. A non-OK return stops the save and is returned by
// Save unchanged (so a failed write is not followed by more writes).
using WriteMetaFn = std::function<Status(
    const ::monolith::hash_table::HashFilterSplitMetaDump& meta)>;
using WriteDataFn = std::function<Status(
    const ::monolith::hash_table::HashFilterSplitDataDump& data)>;

// Restore callbacks: each call reads the next record into *dump and sets
// *has_record; at the end of the split's records it returns OK with
// *has_record = false. A non-OK return (I/O error, unparsable record) stops
// the restore and is returned by Restore unchanged. Restore calls read_meta
// once, then read_data until it reports no record.
using ReadMetaFn = std::function<Status(
    ::monolith::hash_table::HashFilterSplitMetaDump* dump, bool* has_record)>;
using ReadDataFn = std::function<Status(
    ::monolith::hash_table::HashFilterSplitDataDump* dump, bool* has_record)>;

class Filter {
 public:
  // A counting filter's cell holds a 4-bit saturating count.
  static constexpr int kCountBits = 4;
  static constexpr uint32_t kMaxCount = (1u << kCountBits) - 1;  // 15

  virtual ~Filter() = default;

  // Adds |count| occurrences of |fid|; returns the count before this add
  // (kMaxCount when the id cannot be stored, or for filters that do not
  // count).
  virtual uint32_t Add(FID fid, uint32_t count) = 0;
  // The current count of |fid| (kMaxCount when it cannot be stored, or for
  // filters that do not count).
  virtual uint32_t Get(FID fid) const = 0;

  // Whether |fid|, seen |count| more times, stays out of the table. For the
  // counting filters this adds the count, and a |threshold| <= 0 means "no
  // filtering" (nothing is added). |table| may be null.
  virtual bool ShouldBeFiltered(int64_t fid, int64_t count, int64_t threshold,
                                const TableContains* table) = 0;

  // OK when |threshold| can ever admit an id with this filter; the op layer
  // calls it (or ValidateSlotOccurrenceThresholdConfig) for every configured
  // threshold when it creates the filter. Default: any threshold in
  // [0, 2^31 - 1] (thresholds are kept as int32).
  virtual Status ValidateThreshold(int64_t threshold) const;

  // The number of ids the filter is sized for (0 for stateless filters).
  virtual uint64_t capacity() const = 0;
  // How many splits Save/Restore handle (0: nothing to save).
  virtual int split_num() const = 0;
  virtual uint64_t estimated_total_element() const = 0;
  virtual uint64_t failure_count() const = 0;
  // Bytes of counting cells held.
  virtual uint64_t MemoryBytes() const = 0;
  virtual std::unique_ptr<Filter> Clone() const = 0;
  // A filter of this one's configuration that holds no cells yet, to
  // restore into (RestoreFilterCheckpointInto): usable only once each of
  // its splits is restored. Unlike Clone() it copies no cells, which a
  // restore would overwrite anyway, so a restore beside a live filter
  // holds the filter's memory twice, not three times. The default (for
  // filters without splits) is Clone().
  virtual std::unique_ptr<Filter> CopyForRestore() const { return Clone(); }
  // Forgets every count: the filter is then as a new one of its
  // configuration. Stateless filters have nothing to forget.
  virtual void Clear() {}

  // Writes split |split_idx| (0 <= split_idx < split_num()). The default
  // (stateless filters) returns InvalidArgument: they have no splits.
  virtual Status Save(int split_idx, const WriteMetaFn& write_meta,
                      const WriteDataFn& write_data) const;
  // Restores split |split_idx| from records that Save wrote. On error the
  // filter is unchanged (nothing of the split is half-restored).
  virtual Status Restore(int split_idx, const ReadMetaFn& read_meta,
                         const ReadDataFn& read_data);
};

// The check the counting filters' ValidateThreshold makes: a threshold is
// compared with a saturating 4-bit count, so one above kMaxCount (15) could
// never be reached and nothing would ever be admitted (the original accepts
// it silently). Returns InvalidArgument naming the threshold and the maximum
// for threshold > 15 or < 0; 0 (no filtering) to 15 are OK.
Status ValidateCountingThreshold(int64_t threshold);

// Checks the default and every per-slot threshold of |config| with
// filter.ValidateThreshold; the error names the slot.
Status ValidateSlotOccurrenceThresholdConfig(
    const Filter& filter,
    const ::monolith::hash_table::SlotOccurrenceThresholdConfig& config);

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FILTER_H_
