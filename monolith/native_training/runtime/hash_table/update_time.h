// Update times, as every table keeps them: seconds since the Unix epoch in
// [0, 2^32) (the CPU table's slots hold them in 32 bits; the GPU table's
// rows keep the same range so both expire and save alike).
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_UPDATE_TIME_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_UPDATE_TIME_H_

#include <cstdint>
#include <ctime>

#include "monolith/native_training/runtime/hash_table/host_device.h"

namespace monolith {
namespace hash_table {

constexpr int64_t kMaxUpdateTimeSeconds = 0xFFFFFFFFLL;

// |seconds| clamped into [0, kMaxUpdateTimeSeconds].
MONOLITH_HOST_DEVICE inline int64_t ClampUpdateTime(int64_t seconds) {
  // A copy of the constant: device code may use its value, not the object.
  const int64_t max = int64_t{kMaxUpdateTimeSeconds};
  return seconds < 0 ? 0 : seconds > max ? max : seconds;
}

// How far past the host's clock an update time may lie and still move its
// table's time: clock skew and time zones between the machines that log
// requests and the trainer stay within it, a corrupt time (one bad record's
// req_time) does not.
constexpr int64_t kMaxUpdateTimeAheadSeconds = 24 * 3600;

// The host's clock, seconds since the epoch (host code only). The
// overloads below that take |clock_seconds| let one reading serve many
// times.
inline int64_t HostClockSeconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

// Whether |seconds| lies more than kMaxUpdateTimeAheadSeconds past the
// clock reading |clock_seconds|.
MONOLITH_HOST_DEVICE inline bool AheadOfClock(int64_t seconds,
                                              int64_t clock_seconds) {
  return seconds > clock_seconds + kMaxUpdateTimeAheadSeconds;
}

// The same against the host's clock now (host code only).
inline bool AheadOfClock(int64_t seconds) {
  return AheadOfClock(seconds, HostClockSeconds());
}

// Whether an entry stamped |clamped| (a ClampUpdateTime result) moves its
// table's latest update time, the "now" of expiry, the host's clock
// reading |clock_seconds|. Not the largest time, where restored times past
// the range (the original accepted, e.g., milliseconds) are clamped, nor
// one ahead of the host's clock: such entries never expire, or not before
// the clock reaches them, and must not make every other entry look expired
// to the next save or eviction (the original's tables dropped everything
// then).
MONOLITH_HOST_DEVICE inline bool AdvancesTableTime(int64_t clamped,
                                                   int64_t clock_seconds) {
  return clamped < int64_t{kMaxUpdateTimeSeconds} &&
         !AheadOfClock(clamped, clock_seconds);
}

// The same against the host's clock now (host code only).
inline bool AdvancesTableTime(int64_t clamped) {
  return AdvancesTableTime(clamped, HostClockSeconds());
}

// The "now" a table's saves and evictions measure expiry against: its
// latest update time, but not past the host's clock reading
// |clock_seconds|. A time ahead of the clock by less than
// kMaxUpdateTimeAheadSeconds (skew, a time zone, or a bad req_time within
// that) moves the table's time, and would otherwise age every entry by up
// to a day, the shortest expire time.
MONOLITH_HOST_DEVICE inline int64_t ExpiryNow(int64_t latest_update_time,
                                              int64_t clock_seconds) {
  return latest_update_time < clock_seconds ? latest_update_time
                                            : clock_seconds;
}

// The same against the host's clock now (host code only).
inline int64_t ExpiryNow(int64_t latest_update_time) {
  return ExpiryNow(latest_update_time, HostClockSeconds());
}

// The time an entry written at |seconds| keeps, the host's clock reading
// |clock_seconds| and its table's latest update time being
// |latest_update_time|: |seconds| clamped into range, or, in a table that
// has a time, that time for a write without one (0) or ahead of the clock
// (AheadOfClock: a corrupt req_time). The entry then ages with the table's
// time: a new id written without a time was dated 1970, and the next save
// or eviction dropped it; one written in the year 2100, say, never
// expired. Not the clock's time either: a host clock that stepped back
// (and makes the data's times look ahead of it) would date the entries a
// trainer updates by as much, and a clock's time restored into another
// table could move that table's time. A table without a time (0) keeps the
// time written: it has nothing better, and a 0 would expire the entry at
// once when its clock, say, was set right.
inline int64_t StampedUpdateTime(int64_t seconds, int64_t clock_seconds,
                                 int64_t latest_update_time) {
  const int64_t clamped = ClampUpdateTime(seconds);
  return (clamped == 0 || AheadOfClock(clamped, clock_seconds)) &&
                 latest_update_time > 0
             ? latest_update_time
             : clamped;
}

// The update time an entry stamped |old| keeps after a write at |stamp|
// (both ClampUpdateTime results), the host's clock reading |clock_seconds|:
// the later of the two, so that a write with an older time (a lagging
// worker's request) does not age an entry a later write touched, for the next
// eviction or save to drop before its time. An |old| that would not move its
// table's time (AdvancesTableTime: a bad restored time, clamped or ahead of the
// clock) gives way.
MONOLITH_HOST_DEVICE inline int64_t LaterUpdateTime(int64_t old, int64_t stamp,
                                                    int64_t clock_seconds) {
  return old > stamp && AdvancesTableTime(old, clock_seconds) ? old : stamp;
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_UPDATE_TIME_H_
