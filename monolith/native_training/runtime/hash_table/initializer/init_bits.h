// The random bits a new entry's initial values come from.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INIT_BITS_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INIT_BITS_H_

#include <cstdint>

#include "monolith/native_training/runtime/hash_table/host_device.h"

namespace monolith {
namespace hash_table {

// 64 random bits for float |column| of a new entry of |id| in a table
// segment seeded |seed|: SplitMix64's finalizer over the three. An id's
// initial values depend on nothing else: not on the order ids arrive in,
// nor on the thread, shard, process or restore that inserts it. CPU and
// GPU tables draw from the same bits.
MONOLITH_HOST_DEVICE inline uint64_t InitBits(uint64_t seed, int64_t id,
                                              int column) {
  uint64_t z = seed ^ (static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ULL) ^
               (static_cast<uint64_t>(column) << 32);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INIT_BITS_H_
