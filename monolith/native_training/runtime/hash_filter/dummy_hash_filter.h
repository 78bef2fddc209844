// DummyHashFilter: admits every id (ShouldBeFiltered is always false); Add
// and Get return kMaxCount, as the original's. No state, no splits.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_DUMMY_HASH_FILTER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_DUMMY_HASH_FILTER_H_

#include <cstdint>
#include <memory>

#include "monolith/native_training/runtime/hash_filter/filter.h"

namespace monolith {
namespace hash_filter {

class DummyHashFilter : public Filter {
 public:
  uint32_t Add(FID, uint32_t) override { return kMaxCount; }
  uint32_t Get(FID) const override { return kMaxCount; }
  bool ShouldBeFiltered(int64_t, int64_t, int64_t,
                        const TableContains*) override {
    return false;
  }
  uint64_t capacity() const override { return 0; }
  int split_num() const override { return 0; }
  uint64_t estimated_total_element() const override { return 0; }
  uint64_t failure_count() const override { return 0; }
  uint64_t MemoryBytes() const override { return 0; }
  std::unique_ptr<Filter> Clone() const override {
    return std::unique_ptr<Filter>(new DummyHashFilter(*this));
  }
};

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_DUMMY_HASH_FILTER_H_
