// A thread's open-addressing hash set of the positions of distinct ids in
// a batch (de-duplication on the worker, summing a segment's repeated
// gradients), kept between calls.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_POSITION_SLOTS_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_POSITION_SLOTS_H_

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace monolith {
namespace hash_table {

// Slots of an open-addressing hash set (linear probing) of the positions of
// distinct ids; the ids stay in the caller's array. At most a quarter full.
// Ids are placed by multiply-shift hashing with a random odd multiplier per
// set (a universal family): ids crafted to collide under a fixed multiplier
// would make the probing quadratic. The output does not depend on it.
class PositionSlots {
 public:
  PositionSlots() {
    std::random_device device;
    multiplier_ = (uint64_t{device()} << 32 | device()) | 1;
  }

  // A view of the slots, as locals for a hot loop (stores through
  // |slots| could otherwise alias the set's members).
  struct Probe {
    int32_t* slots;
    uint64_t mask;
    int shift;
    uint64_t multiplier;
    // The slot of |id|: the one holding a position p with is_id(p), or the
    // empty slot (-1) ending its probe.
    template <typename IsId>
    uint64_t Find(int64_t id, const IsId& is_id) const {
      const uint64_t x = static_cast<uint64_t>(id);
      uint64_t slot = ((x ^ (x >> 32)) * multiplier) >> shift;
      int32_t p;
      while ((p = slots[slot]) >= 0 && !is_id(p)) slot = (slot + 1) & mask;
      return slot;
    }
  };

  // Empty slots for n ids.
  Probe Emptied(int64_t n) {
    int bits = 4;
    while ((int64_t{1} << bits) < 4 * n) ++bits;
    const size_t size = size_t{1} << bits;
    if (slots_.capacity() > 4 * size && slots_.capacity() > kKeptSlots) {
      std::vector<int32_t>().swap(slots_);  // a huge table's, not kept
    }
    slots_.assign(size, -1);
    return {slots_.data(), size - 1, 64 - bits, multiplier_};
  }

  // Each thread's (kept between calls: no allocation per table).
  static PositionSlots& ForThisThread() {
    thread_local PositionSlots slots;
    return slots;
  }

 private:
  // Slots kept between calls at most, unless needed (4 MiB).
  static constexpr size_t kKeptSlots = size_t{1} << 20;

  std::vector<int32_t> slots_;
  uint64_t multiplier_;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_POSITION_SLOTS_H_
