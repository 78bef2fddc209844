// When entries expire: per-slot expire times from a SlotExpireTimeConfig
// (in days; slot = bits 48-62 of the id), with the config's default for
// other slots.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_SLOT_EXPIRE_TIMES_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_SLOT_EXPIRE_TIMES_H_

#include <cstdint>
#include <string>
#include <unordered_map>

#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/feature_slot.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

constexpr int64_t kSecondsPerDay = 24 * 3600;

// Slots are 15 bits of the id (SlotOfId): a config naming a slot past them
// would never match an id, and its ids would keep the default time
// silently. A slot given two different times is refused too (the last
// would win, silently).
inline Status CheckSlotExpireTimeConfig(const SlotExpireTimeConfig& config) {
  constexpr uint32_t kNumSlots = 1u << 15;
  std::unordered_map<uint32_t, uint32_t> days_of_slot;
  for (const auto& slot : config.slot_expire_times()) {
    if (slot.slot() >= kNumSlots) {
      return InvalidArgumentError(
          "slot_expire_time_config: slot " + std::to_string(slot.slot()) +
          " is out of range [0, " + std::to_string(kNumSlots) +
          "): a feature slot is bits 48-62 of the id");
    }
    const auto [it, first] =
        days_of_slot.emplace(slot.slot(), slot.expire_time());
    if (!first && it->second != slot.expire_time()) {
      return InvalidArgumentError(
          "slot_expire_time_config: slot " + std::to_string(slot.slot()) +
          " is given twice, with expire_time " + std::to_string(it->second) +
          " and " + std::to_string(slot.expire_time()));
    }
  }
  return Status::OK();
}

// What a table made from |config| should warn of, or "": slots whose expire
// time is 0 days (an expire_time left out reads 0), whose entries all
// expire at the next save or eviction (as the original: not "never").
inline std::string DescribeZeroExpireTimes(const SlotExpireTimeConfig& config) {
  std::string slots;
  int num_slots = 0;
  for (const auto& slot : config.slot_expire_times()) {
    if (slot.expire_time() != 0) continue;
    slots += (slots.empty() ? "" : ", ") + std::to_string(slot.slot());
    ++num_slots;
  }
  slots = (num_slots == 1 ? "slot " : "slots ") + slots;
  std::string zero;
  if (config.default_expire_time() == 0) {
    zero = "default_expire_time is 0 days";
    if (num_slots > 0) zero += ", and so is the expire_time of " + slots;
  } else if (num_slots > 0) {
    zero = "the expire_time of " + slots +
           " is 0 days (or left out, which reads 0)";
  } else {
    return "";
  }
  return "slot_expire_time_config: " + zero +
         ": every entry they cover expires at the next save or eviction "
         "(give the days to keep an entry without updates; leave a slot out "
         "for default_expire_time, 36500 days unless set)";
}

// Build from a config CheckSlotExpireTimeConfig accepts.
class SlotExpireTimes {
 public:
  explicit SlotExpireTimes(const SlotExpireTimeConfig& config)
      : default_seconds_(int64_t{config.default_expire_time()} *
                         kSecondsPerDay) {
    for (const auto& slot : config.slot_expire_times()) {
      slot_seconds_[slot.slot()] = int64_t{slot.expire_time()} * kSecondsPerDay;
    }
  }

  // True if an entry of |id| last updated at |update_time| has expired at
  // |now| (all in seconds).
  bool IsExpired(int64_t id, int64_t update_time, int64_t now) const {
    auto it = slot_seconds_.find(SlotOfId(id));
    const int64_t expire =
        it == slot_seconds_.end() ? default_seconds_ : it->second;
    return now - update_time >= expire;
  }

  // The expire time (seconds) of slots without their own, and those of the
  // others by slot.
  int64_t default_seconds() const { return default_seconds_; }
  const std::unordered_map<uint32_t, int64_t>& slot_seconds() const {
    return slot_seconds_;
  }

 private:
  int64_t default_seconds_;
  std::unordered_map<uint32_t, int64_t> slot_seconds_;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_SLOT_EXPIRE_TIMES_H_
