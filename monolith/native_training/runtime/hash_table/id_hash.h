// MixId: the hash both tables (CPU shards and slots, GPU buckets) pick
// places with.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_ID_HASH_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_ID_HASH_H_

#include <cstdint>

#include "monolith/native_training/runtime/hash_table/host_device.h"

namespace monolith {
namespace hash_table {

// MurmurHash3's 64-bit finalizer: ids are often structured (slot << 48 |
// small counter), so they must be mixed before their bits pick places.
MONOLITH_HOST_DEVICE inline uint64_t MixId(int64_t id) {
  uint64_t h = static_cast<uint64_t>(id);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

// MixId of |id| under a table's |seed|: ids chosen to collide (one shard,
// one home slot: every probe then walks their whole cluster) collide only
// for the seed they were chosen for, which the table draws at random.
MONOLITH_HOST_DEVICE inline uint64_t MixId(int64_t id, uint64_t seed) {
  return MixId(static_cast<int64_t>(static_cast<uint64_t>(id) ^ seed));
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_ID_HASH_H_
