// The feature slot of an id, as the original's slot_id_v2: bits 48-62 (the
// sign bit is not part of it). It keys the tables' expire times (CPU and
// GPU) and the hash filters' occurrence thresholds.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FEATURE_SLOT_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FEATURE_SLOT_H_

#include <cstdint>

#include "monolith/native_training/runtime/hash_table/host_device.h"

namespace monolith {
namespace hash_table {

MONOLITH_HOST_DEVICE inline uint32_t SlotOfId(int64_t id) {
  return static_cast<uint32_t>((static_cast<uint64_t>(id) >> 48) & 0x7fff);
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FEATURE_SLOT_H_
