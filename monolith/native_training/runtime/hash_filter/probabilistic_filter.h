// ProbabilisticFilter: stateless admission. An id already in the table is
// never filtered; any other id, seen |count| times in the batch, is admitted
// with a probability that grows with the count:
//  * unequal (default): count / threshold (admitted iff
//    r * threshold < (2^32 - 1) * count for a uniform 32-bit r);
//  * equal_probability: 1 - (1 - p)^count with p = 1 - 0.05^(1/threshold),
//    so that after `threshold` single occurrences an id is in the table with
//    probability 0.95 (admitted iff r < (2^32 - 1) * (1 - (1 - p)^count),
//    with the original's float/double arithmetic).
// As the original's: with no table (null) nothing is filtered; Add and Get
// count nothing and return kMaxCount; there are no splits to save.
//
// Difference: the original draws from a thread-local, time-seeded xorshift.
// Here the random engine is a member, seeded by the caller
// (XorShift128Plus, xorshift.h), so a single-threaded sequence of draws
// replays (tests); the op seeds each filter from its random device, and the
// tables updated in parallel that share a filter draw in no fixed order, so
// which ids a run admits is not reproducible (as the original's). Drawing
// advances the engine, so ShouldBeFiltered needs the same exclusive lock as
// the counting filters (filter.h).
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_PROBABILISTIC_FILTER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_PROBABILISTIC_FILTER_H_

#include <cstdint>
#include <memory>

#include "monolith/native_training/runtime/hash_filter/filter.h"
#include "monolith/native_training/runtime/hash_filter/xorshift.h"

namespace monolith {
namespace hash_filter {

class ProbabilisticFilter : public Filter {
 public:
  // The equal-probability mode's chance that an id seen `threshold` times is
  // still out of the table.
  static constexpr float kEqualProbabilityEpsilon = 0.05f;

  ProbabilisticFilter(bool equal_probability, uint64_t seed)
      : equal_probability_(equal_probability), random_(seed) {}

  // One draw: whether an id seen |count| times is admitted.
  bool AdmitUnequalProbability(int64_t count, int64_t threshold);
  bool AdmitEqualProbability(int64_t count, int64_t threshold);
  // The probability those draws admit with (for tests and monitoring):
  // min(max(count / threshold, 0), 1), and 1 - (1 - p)^count.
  static double UnequalAdmissionProbability(int64_t count, int64_t threshold);
  static double EqualAdmissionProbability(int64_t count, int64_t threshold);

  // Filter:
  uint32_t Add(FID, uint32_t) override { return kMaxCount; }
  uint32_t Get(FID) const override { return kMaxCount; }
  // False when |table| is null or contains |fid|; otherwise a draw (equal or
  // unequal per construction) decides.
  bool ShouldBeFiltered(int64_t fid, int64_t count, int64_t threshold,
                        const TableContains* table) override;
  uint64_t capacity() const override { return 0; }
  int split_num() const override { return 0; }
  uint64_t estimated_total_element() const override { return 0; }
  uint64_t failure_count() const override { return 0; }
  uint64_t MemoryBytes() const override { return 0; }
  // The clone continues the same random sequence.
  std::unique_ptr<Filter> Clone() const override {
    return std::unique_ptr<Filter>(new ProbabilisticFilter(*this));
  }

  bool equal_probability() const { return equal_probability_; }

 private:
  bool equal_probability_;
  XorShift128Plus random_;
};

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_PROBABILISTIC_FILTER_H_
