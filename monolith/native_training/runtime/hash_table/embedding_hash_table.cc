#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <sstream>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/compressor/fp16_batch.h"
#include "monolith/native_training/runtime/hash_table/huge_page_pool.h"
#include "monolith/native_training/runtime/hash_table/initializer/initializer_interface.h"
#include "monolith/native_training/runtime/hash_table/inline_buffer.h"
#include "monolith/native_training/runtime/hash_table/position_slots.h"
#include "monolith/native_training/runtime/hash_table/table_shard.h"
#include "monolith/native_training/runtime/hash_table/update_time.h"
#include "monolith/native_training/runtime/hash_table/wire_reader.h"
#include "monolith/native_training/runtime/hash_table/wire_writer.h"

namespace monolith {
namespace hash_table {
namespace {

using internal::CapacityFor;
using internal::kEmpty;
using internal::kMinShardCapacity;
using internal::ScopedCount;
using internal::ShardWriteLock;
using internal::Slot;
using internal::TableShard;
using internal::Timestamp;
using internal::ToTimestamp;

constexpr int kShardBits = 6;
constexpr int kNumShards = 1 << kShardBits;
static_assert(kNumShards == EmbeddingHashTable::kMaxCheapDumpShards);
// Ids grouped by shard at a time: enough that each shard's lock is taken
// for a run of ids (32 on average), few enough that the grouping arrays
// (~80 KiB, one allocation a call) stay in a core's L2.
constexpr int kGroupIds = 2048;
// Batches of at least this many ids stream (see StreamIds), holding every
// shard's lock for a run of ids: 64 lock acquisitions cost less than
// grouping.
constexpr int64_t kStreamedIds = 1024;
// Ids a streamed lookup or update takes under one hold of its shards'
// locks: others wait for at most one such run (tens of microseconds to a
// millisecond).
constexpr int64_t kStreamedRunIds = 2048;
// Huge pages are on unless the environment says
// MONOLITH_HASH_TABLE_HUGE_PAGES=0 when a table is created (for hosts where
// THP faults stall, see docs/hash_table.md#memory).
bool HugePagesEnabled() {
  const char* setting = std::getenv("MONOLITH_HASH_TABLE_HUGE_PAGES");
  return setting == nullptr || std::string(setting) != "0";
}

// The slots of each shard for a table of |initial_capacity| entries (at
// most kMaxInitialCapacity: Create refuses more).
uint64_t ShardCapacityFor(uint64_t initial_capacity) {
  const uint64_t entries = std::min(initial_capacity, kMaxInitialCapacity);
  return CapacityFor((entries + kNumShards - 1) / kNumShards);
}

// The top bits of the hash pick the shard, the low bits the bucket.
inline int ShardOf(uint64_t hash) {
  return static_cast<int>(hash >> (64 - kShardBits));
}

inline void Prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }
inline void PrefetchForWrite(const void* p) { __builtin_prefetch(p, 1, 3); }

// Prefetches the cache lines of [begin, begin + bytes).
template <bool kForWrite>
inline void PrefetchRange(const char* begin, int64_t bytes) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(begin) & ~uintptr_t{63};
  const uintptr_t last = reinterpret_cast<uintptr_t>(begin) + bytes - 1;
  for (uintptr_t line = first; line <= last; line += 64) {
    if (kForWrite) {
      PrefetchForWrite(reinterpret_cast<const void*>(line));
    } else {
      Prefetch(reinterpret_cast<const void*>(line));
    }
  }
}

// An |ahead| (RunPipeline) that prefetches row |index| of |rows|, |dim|
// floats a row: rows a visit reads, or (kForWrite) writes.
template <bool kForWrite = false>
inline auto RowPrefetch(const float* rows, int dim) {
  return [rows, dim](int64_t index) {
    PrefetchRange<kForWrite>(reinterpret_cast<const char*>(rows + index * dim),
                             int64_t{dim} * sizeof(float));
  };
}

// A reader's hold on a shard (the pipeline's counterpart of ShardWriteLock).
class ShardReadLock {
 public:
  ShardReadLock(const TableShard* shard, int64_t, bool = true)
      : lock_(shard->mu) {}

 private:
  std::shared_lock<std::shared_mutex> lock_;
};

}  // namespace

// Ids of one chunk, ordered by shard (stably), with their hashes and the
// slots and entries the pipeline found for them.
class EmbeddingHashTable::Scratch {
 public:
  void Group(const int64_t* ids, int n, uint64_t hash_seed) {
    int counts[kNumShards] = {};
    for (int i = 0; i < n; ++i) {
      unsorted_[i] = MixId(ids[i], hash_seed);
      ++counts[ShardOf(unsorted_[i])];
    }
    int cursor[kNumShards];
    for (int s = 0, begin = 0; s < kNumShards; ++s) {
      begin_[s] = cursor[s] = begin;
      begin += counts[s];
    }
    begin_[kNumShards] = n;
    for (int i = 0; i < n; ++i) {
      const int pos = cursor[ShardOf(unsorted_[i])]++;
      hash_[pos] = unsorted_[i];
      index_[pos] = static_cast<uint16_t>(i);
    }
  }
  int begin(int shard) const { return begin_[shard]; }
  int end(int shard) const { return begin_[shard + 1]; }
  uint64_t hash(int pos) const { return hash_[pos]; }
  int index(int pos) const { return index_[pos]; }
  void set_found(int pos, Slot* slot, char* entry, bool found) {
    slot_[pos] = slot;
    entry_[pos] = entry;
    found_[pos] = found;
  }
  Slot* slot(int pos) const { return slot_[pos]; }
  char* entry(int pos) const { return entry_[pos]; }
  bool found(int pos) const { return found_[pos]; }

  // At most how many new entries positions [begin, end) of the chunk at
  // |chunk_ids| can make: their number, or for a group larger than a
  // shard's share of a chunk of distinct ids, how many distinct ids it
  // holds. (Repeats of one new id, a padding or default id, reserved room
  // for each repeat: 2,048 of them grew a new table's shard to 4,096 slots
  // and readied arena blocks for 2,048 entries, on huge pages for good.)
  int NewEntriesAtMost(const int64_t* chunk_ids, int begin, int end) {
    if (end - begin <= kCountDistinctOver) return end - begin;
    // The positions of the distinct ids so far.
    const int capacity = ClearPositionSet(end - begin);
    int distinct = 0;
    for (int p = begin; p < end; ++p) {
      uint16_t* cell = PositionCell(chunk_ids, p, capacity);
      if (*cell != kNoPosition) continue;
      *cell = static_cast<uint16_t>(p);
      ++distinct;
    }
    return distinct;
  }

  // Asks |admit| about the ids of positions [begin, end) (in |shard|, of
  // the chunk at |base| of the update's ids) that the shard lacks, before
  // its writer locks readers out: lookups of the shard go on while a
  // filter makes admit() wait (a save copying it). Asks as the insertion
  // pass would have: once per occurrence of an absent id, in order, and
  // no more once one occurrence is admitted and the shard has room for it
  // (the id is in the table by the next). admitted(pos) then says whether
  // pos's id may be inserted.
  void AdmitAbsent(const TableShard& shard, const int64_t* chunk_ids,
                   int64_t base, int begin, int end,
                   const EmbeddingHashTable::AdmitFn& admit) {
    // The positions admitted so far, by id.
    const int capacity = ClearPositionSet(end - begin);
    int64_t entries_left = shard.EntriesLeft();
    for (int p = begin; p < end; ++p) {
      admitted_[p] = false;
      const int64_t id = id_at(chunk_ids, p);
      if (shard.slots[shard.FindSlot(id, hash_[p])].index != kEmpty) continue;
      uint16_t* cell = PositionCell(chunk_ids, p, capacity);
      if (*cell != kNoPosition) continue;  // admitted before
      if (admit(base + index_[p])) {
        admitted_[p] = true;
        // Not inserted when the shard is full: the next occurrence asks.
        if (entries_left > 0) {
          --entries_left;
          *cell = static_cast<uint16_t>(p);
        }
      }
    }
  }
  bool admitted(int pos) const { return admitted_[pos]; }

 private:
  static_assert(kGroupIds <= 65535, "positions are uint16, 65535 is none");
  static constexpr uint16_t kNoPosition = 65535;
  // Twice a shard's share of a chunk (kGroupIds / kNumShards = 32 ids):
  // larger groups, rare unless ids repeat, have their distinct ids counted.
  static constexpr int kCountDistinctOver = 2 * kGroupIds / kNumShards;

  // Empties |position_set_|, a linear-probing set of chunk positions keyed
  // by their ids, for |positions| of them; its capacity (a power of two at
  // least twice that, 2 * kGroupIds at most).
  int ClearPositionSet(int positions) {
    int capacity = 2;
    while (capacity < 2 * positions) capacity *= 2;
    std::fill(position_set_, position_set_ + capacity, kNoPosition);
    return capacity;
  }

  // The cell of the set that holds a position of |p|'s id, or the empty
  // cell where one would go.
  uint16_t* PositionCell(const int64_t* chunk_ids, int p, int capacity) {
    const int64_t id = id_at(chunk_ids, p);
    int h = static_cast<int>((hash_[p] >> 32) & (capacity - 1));
    while (position_set_[h] != kNoPosition &&
           id_at(chunk_ids, position_set_[h]) != id) {
      h = (h + 1) & (capacity - 1);
    }
    return &position_set_[h];
  }

  int64_t id_at(const int64_t* chunk_ids, int pos) const {
    return chunk_ids[index_[pos]];
  }

  int begin_[kNumShards + 1];
  uint64_t unsorted_[kGroupIds];
  uint64_t hash_[kGroupIds];
  uint16_t index_[kGroupIds];
  Slot* slot_[kGroupIds];
  char* entry_[kGroupIds];
  bool found_[kGroupIds];
  bool admitted_[kGroupIds];
  uint16_t position_set_[2 * kGroupIds];
};

EmbeddingHashTable::EmbeddingHashTable(
    std::unique_ptr<EntryAccessor> accessor,
    const SlotExpireTimeConfig& expire_config)
    : accessor_(std::move(accessor)),
      dim_(accessor_->DimSize()),
      stride_(accessor_->SizeBytes()),
      lookup_bytes_(accessor_->serving() ? stride_
                                         : int64_t{dim_} * sizeof(float)),
      expire_times_(expire_config),
      pool_(HugePagesEnabled() ? new HugePagePool : nullptr),
      shards_(new TableShard[kNumShards]) {}

EmbeddingHashTable::~EmbeddingHashTable() = default;

Status EmbeddingHashTable::Create(const EmbeddingHashTableConfig& config,
                                  uint64_t seed,
                                  std::unique_ptr<EmbeddingHashTable>* table) {
  if (config.has_gpucuco()) {
    // A host table in its stead would train and save as if it were one.
    return InvalidArgumentError(
        "a gpucuco config is for GpuRowTable (hash_table/gpu/gpu_row_table.h, "
        "tables in GPU memory), not EmbeddingHashTable; use cuckoo {} for a "
        "table in host memory");
  }
  MONOLITH_RETURN_IF_ERROR(CheckInitialCapacity(config.initial_capacity()));
  MONOLITH_RETURN_IF_ERROR(
      CheckSlotExpireTimeConfig(config.slot_expire_time_config()));
  std::unique_ptr<EntryAccessor> accessor;
  MONOLITH_RETURN_IF_ERROR(
      EntryAccessor::Create(config.entry_config(), &accessor));
  std::unique_ptr<EmbeddingHashTable> result(new EmbeddingHashTable(
      std::move(accessor), config.slot_expire_time_config()));
  if (config.skip_zero_embedding() && !result->accessor_->serving()) {
    // As the original. A training entry whose values are zero (FTRL with
    // l1) can still hold optimizer state, which a restore would drop.
    return InvalidArgumentError(
        "skip_zero_embedding is for SERVING entries only (the original "
        "refuses it for TRAINING ones too): a training entry whose values "
        "are zero can hold optimizer state that a restore would drop");
  }
  result->skip_zero_embedding_ = config.skip_zero_embedding();
  const uint64_t capacity = ShardCapacityFor(config.initial_capacity());
  result->init_seed_ = seed;
  // The hash seed follows the seed too (a graph-level seed fixes where ids
  // go).
  result->hash_seed_ = TableHashSeed(seed);
  try {
    for (int s = 0; s < kNumShards; ++s) {
      result->shards_[s].Init(result->pool_.get(), result->stride_, capacity);
      result->shards_[s].hash_seed = result->hash_seed_;
    }
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(
        "initial_capacity " + std::to_string(config.initial_capacity()) +
        ": its " + std::to_string(InitialSlotBytes(config.initial_capacity())) +
        " bytes of slots cannot be allocated");
  }
  *table = std::move(result);
  return Status::OK();
}

Status EmbeddingHashTable::CheckInitialCapacity(uint64_t initial_capacity) {
  if (initial_capacity > kMaxInitialCapacity) {
    return InvalidArgumentError(
        "initial_capacity " + std::to_string(initial_capacity) +
        " is above " + std::to_string(kMaxInitialCapacity) +
        " entries (it reserves slots up front; tables grow as ids come)");
  }
  return Status::OK();
}

uint64_t EmbeddingHashTable::InitialSlotBytes(uint64_t initial_capacity) {
  return kNumShards * ShardCapacityFor(initial_capacity) * sizeof(Slot);
}

// Runs the ids of each chunk shard by shard, under the shard's lock, in
// three tight passes over the shard's ids so that their independent cache
// misses overlap: (1) prefetch every id's bucket; (2) probe each to its
// slot (or the empty slot ending its probe) and prefetch the entry (in
// exclusive mode an absent id is inserted here, into room reserved before
// the passes, so slot pointers stay valid, and its new entry prefetched);
// (3) initialize the new entries (unless !kInitNew), then stamp
// |update_time| (both in exclusive mode) and call |visit(index, slot,
// entry, found)| in the ids' order; in lookup mode slot and entry are null
// for an absent id.
template <bool kExclusive, typename Table, typename Visit, typename Ahead,
          bool kInitNew>
void EmbeddingHashTable::RunPipeline(Table* table, const int64_t* ids,
                                     int64_t n, int64_t update_time,
                                     Visit visit, const AdmitFn& admit,
                                     Ahead ahead) {
  static_assert(!kExclusive || !std::is_const_v<Table>,
                "the exclusive path changes the table");
  using Lock = std::conditional_t<kExclusive, ShardWriteLock, ShardReadLock>;
  const Timestamp stamp = ToTimestamp(update_time);
  // For LaterUpdateTime: one reading serves the call.
  const int64_t clock = kExclusive ? HostClockSeconds() : 0;
  if (n == 1) {
    // One id (Restore, single-id calls): nothing to group or overlap.
    const uint64_t hash = MixId(ids[0], table->hash_seed_);
    TableShard& shard = table->shards_[ShardOf(hash)];
    Lock lock(&shard, 1, /*exclude_readers=*/!admit);
    if constexpr (kExclusive) {
      // Admission before readers are locked out (Scratch::AdmitAbsent).
      bool admitted = true;
      if (admit) {
        if (shard.slots[shard.FindSlot(ids[0], hash)].index == kEmpty) {
          admitted = admit(0);
        }
        lock.ExcludeReaders();
      }
      const uint64_t pos = shard.FindSlot(ids[0], hash);
      Slot* slot = &shard.slots[pos];
      const bool found = slot->index != kEmpty;
      if (!found && (!admitted || shard.Full())) return;
      char* entry = found      ? shard.EntryAt(slot->index)
                    : kInitNew ? table->InsertNew(&shard, ids[0], pos, stamp)
                               : shard.Insert(ids[0], pos, stamp);
      slot->timestamp = LaterUpdateTime(slot->timestamp, stamp, clock);
      visit(0, slot, entry, found);
    } else {
      Slot* slot = &shard.slots[shard.FindSlot(ids[0], hash)];
      if (slot->index == kEmpty) {
        visit(0, nullptr, nullptr, false);
      } else {
        visit(0, slot, shard.EntryAt(slot->index), true);
      }
    }
    return;
  }
  // On the heap (~80 KiB, default-initialized: not zeroed): on the stack,
  // every call of a thread with a small stack (fibers, musl's 128 KiB)
  // overflowed it, one id or many.
  const std::unique_ptr<Scratch> scratch_arrays(new Scratch);
  Scratch* scratch = scratch_arrays.get();
  // Threads start their walk over the shards at different shards, so
  // concurrent batches rarely contend for the same shard's lock.
  const int first_shard = static_cast<int>(
      std::hash<std::thread::id>()(std::this_thread::get_id()) % kNumShards);
  // Readers need the values, writers the whole entry.
  const int64_t entry_bytes = kExclusive ? table->stride_ : table->lookup_bytes_;
  for (int64_t base = 0; base < n; base += kGroupIds) {
    const int m = static_cast<int>(std::min<int64_t>(kGroupIds, n - base));
    const int64_t* chunk_ids = ids + base;
    scratch->Group(chunk_ids, m, table->hash_seed_);
    // The ids of shard |s|, under |lock| (held on it).
    const auto run_shard = [&](int s, [[maybe_unused]] auto& lock) {
      const int begin = scratch->begin(s), end = scratch->end(s);
      TableShard& shard = table->shards_[s];
      for (int p = begin; p < end; ++p) {
        const Slot* bucket = &shard.slots[scratch->hash(p) & shard.mask];
        if (kExclusive) {
          PrefetchForWrite(bucket);
        } else {
          Prefetch(bucket);
        }
      }
      if constexpr (kExclusive) {
        if (admit) {
          scratch->AdmitAbsent(shard, chunk_ids, base, begin, end, admit);
          lock.ExcludeReaders();
        }
      }
      for (int p = begin; p < end; ++p) {
        const int64_t id = chunk_ids[scratch->index(p)];
        const uint64_t pos = shard.FindSlot(id, scratch->hash(p));
        Slot* slot = &shard.slots[pos];
        if (slot->index != kEmpty) {
          char* entry = shard.EntryAt(slot->index);
          PrefetchRange<kExclusive>(entry, entry_bytes);
          scratch->set_found(p, slot, entry, true);
        } else if constexpr (kExclusive) {
          if ((admit && !scratch->admitted(p)) || shard.Full()) {
            scratch->set_found(p, nullptr, nullptr, false);
          } else {
            // Initialized in the last pass, once the prefetch is in: a
            // reused entry sits anywhere in the arena.
            char* entry = shard.Insert(id, pos, stamp);
            PrefetchRange<true>(entry, table->stride_);
            scratch->set_found(p, slot, entry, false);
          }
        } else {
          scratch->set_found(p, nullptr, nullptr, false);
        }
        ahead(base + scratch->index(p));
      }
      if constexpr (kExclusive && kInitNew) {
        // Every new entry before any visit: a visit that throws (bad_alloc)
        // leaves none of them holding what the arena held.
        for (int p = begin; p < end; ++p) {
          if (scratch->slot(p) == nullptr || scratch->found(p)) continue;
          table->accessor_->Init(scratch->entry(p), table->init_seed_,
                                 chunk_ids[scratch->index(p)]);
        }
      }
      for (int p = begin; p < end; ++p) {
        Slot* slot = scratch->slot(p);
        if constexpr (kExclusive) {
          if (slot == nullptr) continue;  // not admitted
          slot->timestamp = LaterUpdateTime(slot->timestamp, stamp, clock);
        }
        visit(base + scratch->index(p), slot, scratch->entry(p),
              scratch->found(p));
      }
    };
    if constexpr (kExclusive) {
      for (int step = 0; step < kNumShards; ++step) {
        const int s = (first_shard + step) % kNumShards;
        if (scratch->begin(s) == scratch->end(s)) continue;
        ShardWriteLock lock(&table->shards_[s],
                            scratch->NewEntriesAtMost(
                                chunk_ids, scratch->begin(s), scratch->end(s)),
                            /*exclude_readers=*/!admit);
        run_shard(s, lock);
      }
    } else {
      // Free shards first, then those a writer held: a reader waits for
      // one writer's shard at a time, instead of trailing a writer that
      // walks the shards in the same order from shard to shard.
      int busy[kNumShards];
      int num_busy = 0;
      for (int step = 0; step < kNumShards; ++step) {
        const int s = (first_shard + step) % kNumShards;
        if (scratch->begin(s) == scratch->end(s)) continue;
        std::shared_lock<std::shared_mutex> lock(table->shards_[s].mu,
                                                 std::try_to_lock);
        if (lock.owns_lock()) {
          run_shard(s, lock);
        } else {
          busy[num_busy++] = s;
        }
      }
      for (int i = 0; i < num_busy; ++i) {
        std::shared_lock<std::shared_mutex> lock(table->shards_[busy[i]].mu);
        run_shard(busy[i], lock);
      }
    }
  }
}

char* EmbeddingHashTable::InsertNew(TableShard* shard, int64_t id, uint64_t pos,
                                    Timestamp timestamp) {
  char* entry = shard->Insert(id, pos, timestamp);
  accessor_->Init(entry, init_seed_, id);
  return entry;
}

template <typename Fn, typename Ahead>
void EmbeddingHashTable::ForEachFound(const int64_t* ids, int64_t n, Fn fn,
                                      Ahead ahead) const {
  RunPipeline<false>(
      this, ids, n, 0,
      [&](int64_t index, const Slot* slot, const char* entry, bool) {
        fn(index, slot, entry);
      },
      {}, ahead);
}

void EmbeddingHashTable::NoteUpdate(int64_t update_time) {
  // Kept as entries keep times (a restored record may say anything).
  update_time = ToTimestamp(update_time);
  int64_t seen = latest_update_time_.load(std::memory_order_relaxed);
  // The clock is read only by a time that would move the table's.
  if (update_time <= seen || !AdvancesTableTime(update_time)) return;
  while (update_time > seen &&
         !latest_update_time_.compare_exchange_weak(
             seen, update_time, std::memory_order_relaxed)) {
  }
}

template <typename Fn, typename Ahead>
void EmbeddingHashTable::ForEachUpserted(const int64_t* ids, int64_t n,
                                         int64_t update_time, Fn fn,
                                         const AdmitFn& admit, Ahead ahead) {
  update_time = StampedUpdateTime(update_time, HostClockSeconds(),
                                  LatestUpdateTime());
  if (n > 0) NoteUpdate(update_time);
  {
    const ScopedCount writer(&writers_);
    if (n >= kStreamedIds && writer.count() == 1) {
      UpsertStreamed(ids, n, update_time, fn, admit, ahead);
    } else {
      RunPipeline<true>(this, ids, n, update_time,
                        [&](int64_t index, Slot*, char* entry, bool found) {
                          fn(index, entry, !found);
                        },
                        admit, ahead);
    }
  }
  // Again: a Clear between the note above and the writes reset the time
  // while the entries written carry it.
  if (n > 0) NoteUpdate(update_time);
}

template <bool kExclusive, typename Table, typename IdAt, typename HashAt,
          typename Visit>
void EmbeddingHashTable::StreamIds(Table* table, int64_t n, IdAt id_at,
                                   HashAt hash_at, int64_t entry_bytes,
                                   Visit visit) {
  // Id p's bucket is prefetched at step p - 3 * kAhead; it is probed, and
  // the pointer to its entry's arena block prefetched, at step p - 2 *
  // kAhead; its entry is prefetched at step p - kAhead and visited at step
  // p: a steady stream of independent misses, without grouping by shard.
  // (A large table's block pointers outgrow the caches: read at the probe,
  // they held up the entry's prefetch.)
  constexpr int64_t kAhead = 16;
  constexpr int64_t kRing = 3 * kAhead;
  using SlotPtr = std::conditional_t<kExclusive, Slot*, const Slot*>;
  using EntryPtr = std::conditional_t<kExclusive, char*, const char*>;
  uint64_t hashes[kRing];
  SlotPtr slots[kRing];
  char* const* block_refs[kRing];
  int64_t offsets[kRing];
  EntryPtr entries[kRing];
  for (int64_t p = -3 * kAhead; p < n; ++p) {
    if (p >= 0) visit(p, slots[p % kRing], entries[p % kRing]);
    const int64_t place = p + kAhead;
    if (place >= 0 && place < n) {
      const int64_t at = place % kRing;
      EntryPtr entry = nullptr;
      if (slots[at] != nullptr) {
        entry = *block_refs[at] + offsets[at];
        PrefetchRange<kExclusive>(entry, entry_bytes);
      }
      entries[at] = entry;
    }
    const int64_t probe = p + 2 * kAhead;
    if (probe >= 0 && probe < n) {
      const int64_t at = probe % kRing;
      const uint64_t hash = hashes[at];
      auto& shard = table->shards_[ShardOf(hash)];
      SlotPtr slot = &shard.slots[shard.FindSlot(id_at(probe), hash)];
      if (slot->index == kEmpty) {
        slot = nullptr;
      } else {
        const internal::TableShard::EntryPlace entry_place =
            shard.PlaceOf(slot->index);
        block_refs[at] = &shard.blocks[entry_place.block];
        offsets[at] = entry_place.offset;
        Prefetch(block_refs[at]);
      }
      slots[at] = slot;
    }
    const int64_t fetch = p + 3 * kAhead;
    if (fetch < n) {
      const uint64_t hash = hash_at(fetch);
      hashes[fetch % kRing] = hash;
      const auto& shard = table->shards_[ShardOf(hash)];
      if constexpr (kExclusive) {
        PrefetchForWrite(&shard.slots[hash & shard.mask]);
      } else {
        Prefetch(&shard.slots[hash & shard.mask]);
      }
    }
  }
}

int EmbeddingHashTable::ShardWriterWaitersForTesting(int shard) const {
  return shards_[shard].write_waiters.load(std::memory_order_relaxed);
}

bool EmbeddingHashTable::AnyShardWriterWaits() const {
  for (int s = 0; s < kNumShards; ++s) {
    if (shards_[s].write_waiters.load(std::memory_order_relaxed) > 0) {
      return true;
    }
  }
  return false;
}

template <typename Fn, typename Ahead>
void EmbeddingHashTable::UpsertStreamed(const int64_t* ids, int64_t n,
                                        int64_t update_time, Fn fn,
                                        const AdmitFn& admit, Ahead ahead) {
  const Timestamp stamp = ToTimestamp(update_time);
  const int64_t clock = HostClockSeconds();  // for LaterUpdateTime
  // The |count| ids |group_ids| on the grouped path, group_ids[j] being
  // the batch's id index_of(j).
  const auto upsert_grouped = [&](const int64_t* group_ids, int64_t count,
                                  auto index_of) {
    RunPipeline<true>(
        this, group_ids, count, update_time,
        [&](int64_t j, Slot*, char* entry, bool found) {
          fn(index_of(j), entry, !found);
        },
        admit ? AdmitFn([&](int64_t j) { return admit(index_of(j)); })
              : AdmitFn(),
        [&](int64_t j) { ahead(index_of(j)); });
  };
  // The ids of [begin, n) on the grouped path.
  const auto grouped = [&](int64_t begin) {
    upsert_grouped(ids + begin, n - begin,
                   [begin](int64_t j) { return begin + j; });
  };
  // Reserved up front: no allocation while every shard is held.
  std::vector<int64_t> absent, absent_ids;
  absent.reserve(std::min(n, kStreamedRunIds));
  for (int64_t base = 0; base < n; base += kStreamedRunIds) {
    // Another writer came (or waits for a shard: an eviction, an erase, a
    // save, which a free mutex would not let in before this update's next
    // run, nor before its first): writers on the grouped path work on
    // different shards at once, where streamed runs would take turns or
    // hold them off.
    if (writers_.load(std::memory_order_relaxed) > 1 ||
        AnyShardWriterWaits()) {
      grouped(base);
      return;
    }
    const int64_t run = std::min(kStreamedRunIds, n - base);
    bool held = true;
    {
      // Every shard's writer lock, each taken only if free (ascending): a
      // writer holding one (an eviction walking the shards) would have
      // this update follow it shard by shard, holding the shards behind
      // it against every other writer. Then every shard's lock, ascending
      // (as Clear and streamed lookups take them): no shard is held
      // against readers before every writer lock is.
      std::unique_lock<std::mutex> writer_locks[kNumShards];
      for (int s = 0; s < kNumShards && held; ++s) {
        writer_locks[s] = std::unique_lock<std::mutex>(shards_[s].write_mu,
                                                       std::try_to_lock);
        held = writer_locks[s].owns_lock();
      }
      std::unique_lock<std::shared_mutex> locks[kNumShards];
      for (int s = 0; s < kNumShards && held; ++s) {
        locks[s] = shards_[s].LockExclusive();
      }
      if (held) {
        StreamIds<true>(
            this, run, [&](int64_t p) { return ids[base + p]; },
            [&](int64_t p) { return MixId(ids[base + p], hash_seed_); },
            stride_,
            [&](int64_t p, Slot* slot, char* entry) {
              if (slot == nullptr) {
                absent.push_back(base + p);
                return;
              }
              slot->timestamp = LaterUpdateTime(slot->timestamp, stamp, clock);
              fn(base + p, entry, false);
            });
      }
    }
    if (!held) {
      grouped(base);
      return;
    }
    if (absent.empty()) continue;
    // The run's absent ids are inserted (if admitted) before the next run
    // starts: all occurrences of an id in one run were absent (the table
    // was held throughout), so each id's occurrences still apply in order.
    absent_ids.clear();
    for (const int64_t i : absent) absent_ids.push_back(ids[i]);
    upsert_grouped(absent_ids.data(), static_cast<int64_t>(absent_ids.size()),
                   [&](int64_t j) { return absent[j]; });
    const bool mostly_new = 2 * static_cast<int64_t>(absent.size()) > run;
    absent.clear();
    // Mostly new ids (a fill): the grouped path inserts in one pass.
    if (mostly_new && base + run < n) {
      grouped(base + run);
      return;
    }
  }
}

template <int kDim, typename Out>
int64_t EmbeddingHashTable::LookupValuesStreamed(const int64_t* ids, int64_t n,
                                                 Out* out) const {
  static_assert(kDim > 0, "streamed lookups copy fp32 values");
  int64_t hits = 0;
  for (int64_t base = 0; base < n; base += kStreamedRunIds) {
    hits += LookupRunStreamed<kDim>(
        ids + base, std::min(kStreamedRunIds, n - base), out + base * kDim);
  }
  return hits;
}

template <int kDim, typename Out>
int64_t EmbeddingHashTable::LookupRunStreamed(const int64_t* ids, int64_t n,
                                              Out* out) const {
  // No run starts while a writer waits for a shard's lock (see
  // TableShard::exclusive_waiters): it waits for the runs under way only.
  for (int s = 0; s < kNumShards; ++s) shards_[s].WaitWhileWriterWaits();
  // Shards are locked in ascending order, as Clear and streamed updates
  // lock them; other writers hold one shard at a time, so no wait goes
  // round in a circle.
  std::shared_lock<std::shared_mutex> locks[kNumShards];
  for (int s = 0; s < kNumShards; ++s) {
    locks[s] = std::shared_lock<std::shared_mutex>(shards_[s].mu);
  }
  int64_t hits = 0;
  const auto copy = [&hits](const char* entry, float* row) {
    if (entry == nullptr) {
      std::memset(row, 0, sizeof(float) * kDim);
    } else {
      ++hits;
      std::memcpy(row, entry, sizeof(float) * kDim);
    }
  };
  const auto id_at = [&](int64_t i) { return ids[i]; };
  const auto hash_at = [&](int64_t i) { return MixId(ids[i], hash_seed_); };
  if constexpr (std::is_same_v<Out, float>) {
    StreamIds<false>(this, n, id_at, hash_at, lookup_bytes_,
                     [&](int64_t i, const Slot*, const char* entry) {
                       copy(entry, out + i * kDim);
                     });
  } else {
    static_assert(std::is_same_v<Out, uint16_t>, "float or float16 rows");
    // Rows gathered as floats in a chunk the L1 cache holds and converted
    // a chunk at a time: one call per chunk, and the floats never leave
    // the core's cache.
    constexpr int64_t kChunkRows = std::max(1, 2048 / kDim);
    float chunk[kChunkRows * kDim];
    StreamIds<false>(
        this, n, id_at, hash_at, lookup_bytes_,
        [&](int64_t i, const Slot*, const char* entry) {
          const int64_t at = i % kChunkRows;
          copy(entry, chunk + at * kDim);
          if (at == kChunkRows - 1 || i == n - 1) {
            FloatsToHalfsSaturating(chunk, (at + 1) * kDim,
                                    out + (i - at) * kDim);
          }
        });
  }
  return hits;
}

template <int kDim, typename Out>
int64_t EmbeddingHashTable::LookupValues(const int64_t* ids, int64_t n,
                                         Out* out) const {
  if constexpr (kDim > 0) {
    if (n >= kStreamedIds) return LookupValuesStreamed<kDim>(ids, n, out);
  }
  // kDim > 0: TRAINING entries of that dim, which start with the fp32
  // values lookups return; a compile-time size makes the copy a few vector
  // moves.
  // kDim == 0: any entry, decoded by the accessor.
  const int dim = kDim > 0 ? kDim : dim_;
  constexpr bool kHalfs = std::is_same_v<Out, uint16_t>;
  // Float16 rows: each row's floats, converted once written.
  std::vector<float> scratch(kHalfs ? dim : 0);
  int64_t hits = 0;
  ForEachFound(
      ids, n,
      [&](int64_t i, const Slot*, const char* entry) {
        float* row = nullptr;
        if constexpr (kHalfs) {
          row = scratch.data();
        } else {
          row = out + i * dim;
        }
        if (entry == nullptr) {
          std::memset(row, 0, sizeof(float) * dim);
        } else {
          ++hits;
          if (kDim > 0) {
            std::memcpy(row, entry, sizeof(float) * kDim);
          } else {
            accessor_->Fill(entry, row);
          }
        }
        if constexpr (kHalfs) {
          FloatsToHalfsSaturating(row, dim, out + i * dim);
        }
      },
      [out, dim](int64_t index) {
        PrefetchRange<true>(reinterpret_cast<const char*>(out + index * dim),
                            int64_t{dim} * sizeof(Out));
      });
  return hits;
}

template <typename Out>
int64_t EmbeddingHashTable::LookupRows(const int64_t* ids, int64_t n,
                                       Out* out) const {
  if (!accessor_->serving() && !accessor_->transforms_lookups()) {
    switch (dim_) {
      case 8:
        return LookupValues<8>(ids, n, out);
      case 16:
        return LookupValues<16>(ids, n, out);
      case 32:
        return LookupValues<32>(ids, n, out);
      case 64:
        return LookupValues<64>(ids, n, out);
    }
  }
  return LookupValues<0>(ids, n, out);
}

int64_t EmbeddingHashTable::BatchLookup(const int64_t* ids, int64_t n,
                                        float* embeddings) const {
  return LookupRows(ids, n, embeddings);
}

int64_t EmbeddingHashTable::BatchLookupHalfs(const int64_t* ids, int64_t n,
                                             uint16_t* halfs) const {
  return LookupRows(ids, n, halfs);
}

void EmbeddingHashTable::BatchLookupEntry(const int64_t* ids, int64_t n,
                                          EntryDump* entries) const {
  ForEachFound(ids, n, [&](int64_t i, const Slot* slot, const char* entry) {
    EntryDump& dump = entries[i];
    dump.Clear();
    if (entry != nullptr) {
      dump.set_id(ids[i]);
      accessor_->Save(entry, &dump);
      dump.set_last_update_ts_sec(slot->timestamp);
    }
  });
}

void EmbeddingHashTable::BatchLookupRecords(
    const int64_t* ids, int64_t n, WireWriter* out,
    std::vector<std::pair<size_t, size_t>>* spans) const {
  spans->assign(n, {0, 0});
  // Ids are visited grouped by shard: each record is written where its
  // turn comes.
  ForEachFound(ids, n, [&](int64_t i, const Slot* slot, const char* entry) {
    const size_t begin = out->size();
    if (entry != nullptr) {
      accessor_->WriteRecord(ids[i], entry, slot->timestamp, out);
    }
    (*spans)[i] = {begin, out->size()};
  });
}

void EmbeddingHashTable::Assign(const int64_t* ids, int64_t n,
                                const float* values, int64_t update_time,
                                const AdmitFn& admit) {
  if (!skip_zero_embedding_) {
    ForEachUpserted(
        ids, n, update_time,
        [&](int64_t i, char* entry, bool) {
          accessor_->Assign(values + i * dim_, entry);
        },
        admit, RowPrefetch(values, dim_));
    return;
  }
  // Serving tables drop all-zero embeddings: handled id by id, in order.
  for (int64_t i = 0; i < n; ++i) {
    const float* value = values + i * dim_;
    if (AllZero(value, dim_)) {
      Erase(ids[i]);
    } else {
      ForEachUpserted(
          ids + i, 1, update_time,
          [&](int64_t, char* entry, bool) { accessor_->Assign(value, entry); },
          admit ? AdmitFn([&](int64_t) { return admit(i); }) : AdmitFn());
    }
  }
}

void EmbeddingHashTable::AssignAdd(const int64_t* ids, int64_t n,
                                   const float* values, int64_t update_time,
                                   const AdmitFn& admit) {
  const bool serving = accessor_->serving();
  ForEachUpserted(
      ids, n, update_time,
      [&](int64_t i, char* entry, bool inserted) {
        // A new serving entry holds zeros in its compressor's encoding,
        // which for one_bit decodes as -amplitude: it takes the values.
        if (serving && inserted) {
          accessor_->Assign(values + i * dim_, entry);
        } else {
          accessor_->AssignAdd(values + i * dim_, entry);
        }
      },
      admit, RowPrefetch(values, dim_));
}

void EmbeddingHashTable::Reinitialize(const int64_t* ids, int64_t n,
                                      int* status, int64_t update_time) {
  // An existing id gets the values it was first inserted with (they follow
  // the seed and the id alone).
  ForEachUpserted(ids, n, update_time,
                  [&](int64_t i, char* entry, bool inserted) {
                    if (!inserted) accessor_->Init(entry, init_seed_, ids[i]);
                    status[i] = inserted ? 0 : 1;
                  });
}

Status EmbeddingHashTable::BatchOptimize(const int64_t* ids, int64_t n,
                                         const float* grads,
                                         const float* learning_rates,
                                         int64_t update_time,
                                         int64_t global_step,
                                         const AdmitFn& admit) {
  if (accessor_->serving()) {
    return FailedPreconditionError(
        "optimize on a SERVING table: its entries have no optimizer state");
  }
  ForEachUpserted(
      ids, n, update_time,
      [&](int64_t i, char* entry, bool) {
        accessor_->Optimize(entry, grads + i * dim_, learning_rates,
                            global_step);
      },
      admit, RowPrefetch(grads, dim_));
  return Status::OK();
}

bool EmbeddingHashTable::Erase(int64_t id) {
  const uint64_t hash = MixId(id, hash_seed_);
  TableShard& shard = shards_[ShardOf(hash)];
  ShardWriteLock lock(&shard, 0);
  const uint64_t pos = shard.FindSlot(id, hash);
  if (shard.slots[pos].index == kEmpty) return false;
  shard.EraseAt(pos);
  return true;
}

int64_t EmbeddingHashTable::Evict(int64_t now, EvictStats* stats) {
  return EvictShards(now, stats, nullptr, nullptr);
}

int64_t EmbeddingHashTable::EvictAtLatestUpdateTime(
    int64_t* now, EvictStats* stats, const std::atomic<bool>* stop) {
  const uint64_t clears = clears_.load(std::memory_order_acquire);
  *now = ExpiryNow(LatestUpdateTime());
  return EvictShards(*now, stats, &clears, stop);
}

int64_t EmbeddingHashTable::EvictShards(int64_t now, EvictStats* stats,
                                        const uint64_t* clears,
                                        const std::atomic<bool>* stop) {
  // At time 0 (a table no write gave a time) nothing has aged: Save skips
  // nothing then either.
  if (accessor_->serving() || now <= 0) return 0;
  int64_t evicted = 0;
  std::vector<Slot> kept;
  // The per-slot counts with this shard's, swapped into |stats| once the
  // shard has shrunk: a bad_alloc before leaves |stats| counting only the
  // shards evicted.
  std::map<uint32_t, int64_t> by_slot;
  for (int s = 0; s < kNumShards; ++s) {
    if (stop != nullptr && stop->load(std::memory_order_acquire)) {
      if (stats != nullptr) stats->stopped = true;
      break;
    }
    TableShard& shard = shards_[s];
    // The scan holds the shard's writer lock only: no one else changes its
    // slots meanwhile, and lookups go on (excluded only to shrink). A
    // reader-excluding scan stalled the shard's lookups for the whole scan
    // every eviction, and with them streamed lookups of every shard.
    ShardWriteLock lock(&shard, 0, /*exclude_readers=*/false);
    if (clears != nullptr &&
        clears_.load(std::memory_order_acquire) != *clears) {
      if (stats != nullptr) stats->stopped = true;
      break;
    }
    kept.clear();
    kept.reserve(shard.size);
    if (stats != nullptr) by_slot = stats->evicted_by_slot;
    int64_t removed = 0;
    for (uint64_t i = 0; i <= shard.mask; ++i) {
      const Slot& slot = shard.slots[i];
      if (slot.index == kEmpty) continue;
      if (IsExpired(slot.id, slot.timestamp, now)) {
        ++removed;
        if (stats != nullptr) ++by_slot[SlotOfId(slot.id)];
      } else {
        kept.push_back(slot);
      }
    }
    if (removed == 0) continue;
    internal::TableShard::ShrinkPlan plan;
    shard.PlanShrink(&kept, &plan);
    try {
      // Room for blocks an update readied and did not take (it threw):
      // may allocate.
      lock.ExcludeReaders();
    } catch (...) {
      shard.FreeSlots(plan.slots, plan.capacity);
      throw;
    }
    evicted += removed;
    shard.ApplyShrink(&plan);
    lock.AdmitReaders();
    shard.FinishShrink(&plan);
    if (stats != nullptr) {
      stats->evicted_by_slot.swap(by_slot);
      stats->evicted += removed;
    }
  }
  return evicted;
}

bool EmbeddingHashTable::Contains(int64_t id) const {
  const uint64_t hash = MixId(id, hash_seed_);
  const TableShard& shard = shards_[ShardOf(hash)];
  std::shared_lock<std::shared_mutex> lock(shard.mu);
  return shard.Find(id, hash) != nullptr;
}

int64_t EmbeddingHashTable::Size() const {
  int64_t size = 0;
  for (int s = 0; s < kNumShards; ++s) {
    std::shared_lock<std::shared_mutex> lock(shards_[s].mu);
    size += shards_[s].size;
  }
  return size;
}

int64_t EmbeddingHashTable::MemoryBytes() const {
  int64_t bytes = 0;
  for (int s = 0; s < kNumShards; ++s) {
    const TableShard& shard = shards_[s];
    std::shared_lock<std::shared_mutex> lock(shard.mu);
    if (!shard.Pooled(shard.mask + 1)) bytes += (shard.mask + 1) * sizeof(Slot);
    bytes += shard.heap_arena_bytes.load(std::memory_order_relaxed);
  }
  return bytes + HugePageBytes();
}

int64_t EmbeddingHashTable::HugePageBytes() const {
  return pool_ ? static_cast<int64_t>(pool_->UsedBytes()) : 0;
}

void EmbeddingHashTable::LimitShardEntriesForTesting(uint32_t limit) {
  for (int s = 0; s < kNumShards; ++s) shards_[s].entry_limit = limit;
}

int EmbeddingHashTable::ShardOfIdForTesting(int64_t id) const {
  return ShardOf(MixId(id, hash_seed_));
}

int64_t EmbeddingHashTable::LongestGrowthNanos() const {
  int64_t longest = 0;
  for (int s = 0; s < kNumShards; ++s) {
    longest = std::max(
        longest, shards_[s].longest_rehash_ns.load(std::memory_order_relaxed));
  }
  return longest;
}

void EmbeddingHashTable::Clear() {
  // All shards at once: their pooled arena blocks are released together.
  // Every shard's writer lock first, then every |mu| (ascending, as
  // streamed updates take them): a writer still inside a shard (an admit
  // callback reading the table, a growth) is waited for while no shard is
  // held against readers.
  std::vector<ShardWriteLock> locks;
  locks.reserve(kNumShards);
  for (int s = 0; s < kNumShards; ++s) {
    locks.emplace_back(&shards_[s], 0, /*exclude_readers=*/false);
  }
  for (ShardWriteLock& lock : locks) lock.ExcludeReaders();
  // Every shard's new slot array before any shard is emptied: out of
  // memory (std::bad_alloc) leaves the table whole, not half cleared.
  Slot* fresh[kNumShards] = {};
  try {
    for (int s = 0; s < kNumShards; ++s) {
      fresh[s] = shards_[s].NewSlots(kMinShardCapacity);
    }
  } catch (const std::bad_alloc&) {
    for (int s = 0; s < kNumShards; ++s) {
      shards_[s].FreeSlots(fresh[s], kMinShardCapacity);
    }
    throw;
  }
  for (int s = 0; s < kNumShards; ++s) {
    shards_[s].Reset(kMinShardCapacity, fresh[s]);
    shards_[s].longest_rehash_ns.store(0, std::memory_order_relaxed);
  }
  if (pool_) pool_->ReleaseBlocks();
  latest_update_time_.store(0, std::memory_order_relaxed);
  clears_.fetch_add(1, std::memory_order_release);
  accessor_->ResetLookupState();
}

std::string EmbeddingHashTable::DebugString() const {
  std::ostringstream out;
  const int64_t size = Size();
  out << "EmbeddingHashTable(" << accessor_->DebugString()
      << ", size=" << size << ", memory_bytes=" << MemoryBytes() << ")";
  return out.str();
}

Status EmbeddingHashTable::Save(
    int shard, int num_shards, int64_t now,
    const std::function<Status(const SavedEntry&)>& write,
    const SlotExpireTimes* expire_times) const {
  if (expire_times == nullptr) expire_times = &expire_times_;
  if (num_shards <= 0 || shard < 0 || shard >= num_shards) {
    return InvalidArgumentError("dump shard " + std::to_string(shard) +
                                " of " + std::to_string(num_shards) +
                                " is out of range");
  }
  // Dump shard of an id: its internal shard modulo num_shards; with more
  // dump shards than internal ones, dump shard j takes internal shard
  // j % kNumShards's ids whose hash modulo the number of dump shards
  // sharing it is j / kNumShards. (Each dump shard past the internal ones
  // scanned every internal shard, so a save of 128 shards read the table's
  // slots 128 times; now twice.)
  const bool whole_internal_shards = num_shards <= kNumShards;
  const int only_internal_shard =
      whole_internal_shards ? -1 : shard % kNumShards;
  const uint64_t sharers =
      whole_internal_shards
          ? 1
          : static_cast<uint64_t>((num_shards - 1 - only_internal_shard) /
                                      kNumShards +
                                  1);
  const uint64_t rank = static_cast<uint64_t>(shard / kNumShards);
  // The entries of one internal shard still to write, in arena order.
  std::vector<Slot> pending;
  // One chunk's records, encoded back to back, and where each ends.
  WireWriter wire;
  struct Record {
    int64_t id;
    int64_t update_time;
    size_t end;
  };
  std::vector<Record> records;
  for (int s = 0; s < kNumShards; ++s) {
    if (whole_internal_shards ? s % num_shards != shard
                              : s != only_internal_shard) {
      continue;
    }
    const TableShard& internal = shards_[s];
    uint64_t layout_version;
    {
      // The shard's writer lock, not |mu|: only writers change slots, so
      // the listing (a scan of every slot, long in a large shard) holds off
      // this shard's writers and no reader. Under |mu| a streamed update,
      // which holds every shard before this one, waited here with them
      // held against lookups; now it finds this one taken and goes on
      // shard by shard.
      const std::unique_lock<std::mutex> lock = internal.LockWriter();
      layout_version = internal.layout_version;
      // Entries are encoded in arena order, a sequential read, rather than
      // in slot order, which would read them at random: index them first.
      pending.assign(internal.next_index, Slot{0, kEmpty, 0});
      for (uint64_t i = 0; i <= internal.mask; ++i) {
        const Slot& slot = internal.slots[i];
        if (slot.index == kEmpty) continue;
        if (sharers > 1 && MixId(slot.id, hash_seed_) % sharers != rank) {
          continue;
        }
        pending[slot.index] = slot;
      }
    }
    pending.erase(std::remove_if(pending.begin(), pending.end(),
                                 [](const Slot& slot) {
                                   return slot.index == kEmpty;
                                 }),
                  pending.end());
    // Chunk by chunk, each under the read lock and written after it is
    // released: a save holds one chunk of records, not a shard's.
    size_t next = 0;
    while (next < pending.size()) {
      wire.Clear();
      records.clear();
      {
        std::shared_lock<std::shared_mutex> lock(internal.mu);
        // Entries moved or were removed since the listing (erase, eviction,
        // a clear): the listed indices may hold other entries, or none.
        // Each id's live slot says where its entry is now (gone: skipped),
        // one probe per entry written; re-finding every listed entry at
        // once held this shard against writers (and, through them, the
        // table's streamed lookups) for a scan as long as the shard.
        const bool moved = internal.layout_version != layout_version;
        // Blocks are at most 16 KiB apart in memory, so the hardware's
        // sequential prefetch stops at each: prefetch a few entries ahead.
        constexpr size_t kPrefetchAhead = 4;
        for (; next < pending.size() && wire.size() < save_chunk_bytes_;
             ++next) {
          if (next + kPrefetchAhead < pending.size()) {
            const Slot& ahead = pending[next + kPrefetchAhead];
            if (!moved) {
              PrefetchRange<false>(internal.EntryAt(ahead.index), stride_);
            }
            Prefetch(
                &internal.slots[MixId(ahead.id, hash_seed_) & internal.mask]);
          }
          const int64_t id = pending[next].id;
          // The live slot, not the listing's copy: updates since the
          // listing stamp slots in place (without a new layout), and the
          // record holds the live values.
          const Slot& live =
              internal.slots[internal.FindSlot(id, MixId(id, hash_seed_))];
          if (live.index == kEmpty) continue;  // gone since the listing
          if (now > 0 && expire_times->IsExpired(id, live.timestamp, now)) {
            continue;
          }
          accessor_->WriteRecord(id, internal.EntryAt(live.index),
                                 live.timestamp, &wire);
          records.push_back(Record{id, live.timestamp, wire.size()});
        }
      }
      size_t begin = 0;
      for (const Record& record : records) {
        MONOLITH_RETURN_IF_ERROR(write(SavedEntry{record.id,
                                                  record.update_time,
                                                  wire.data() + begin,
                                                  record.end - begin}));
        begin = record.end;
      }
    }
  }
  return Status::OK();
}

namespace {

// Room for one entry: on the stack unless it is large.
using EntryBuffer = InlineBuffer<char, 1024>;

}  // namespace

Status EmbeddingHashTable::PutLocked(TableShard* shard, int64_t id,
                                     uint64_t hash, const char* entry,
                                     int64_t update_time) {
  const uint64_t pos = shard->FindSlot(id, hash);
  const bool found = shard->slots[pos].index != kEmpty;
  if (!found && shard->Full()) {
    // Past the limit an index would wrap onto the empty marker.
    return ResourceExhaustedError(
        "a shard of the table holds its most entries (" +
        std::to_string(shard->entry_limit) + "): id " + std::to_string(id) +
        " is not restored");
  }
  const Timestamp stamp = ToTimestamp(update_time);
  char* stored = found ? shard->EntryAt(shard->slots[pos].index)
                       : shard->Insert(id, pos, stamp);
  std::memcpy(stored, entry, stride_);
  shard->slots[pos].timestamp = stamp;
  NoteUpdate(update_time);
  return Status::OK();
}

bool EmbeddingHashTable::SkipsDump(const EntryDump& dump) const {
  return skip_zero_embedding_ && dump.num_size() == dim_ &&
         AllZero(dump.num().data(), dim_);
}

Status EmbeddingHashTable::Restore(const EntryDump& dump) {
  if (SkipsDump(dump)) return Status::OK();
  // Decode into a scratch entry first so a bad dump changes nothing.
  EntryBuffer scratch(stride_);
  const int64_t id = dump.id();
  const uint64_t hash = MixId(id, hash_seed_);
  TableShard& shard = shards_[ShardOf(hash)];
  ShardWriteLock lock(&shard, 1);
  MONOLITH_RETURN_IF_ERROR(accessor_->Restore(dump, scratch.data()));
  return PutLocked(&shard, id, hash, scratch.data(),
                   dump.last_update_ts_sec());
}

Status EmbeddingHashTable::DecodeRecord(const char* record, size_t size,
                                        char* entry, RecordScratch* scratch,
                                        RestoredState state,
                                        DecodedRecord* decoded) const {
  uint64_t time = 0;
  bool all_zero = false;
  if (accessor_->ReadRecord(record, size, entry, &decoded->id, &time,
                            &all_zero, state)) {
    decoded->update_time = static_cast<int64_t>(time);
    decoded->skipped = skip_zero_embedding_ && all_zero;
    return Status::OK();
  }
  MONOLITH_RETURN_IF_ERROR(ParseRecord(record, size, scratch, state));
  const EntryDump& dump = scratch->dump();
  decoded->id = dump.id();
  decoded->update_time = dump.last_update_ts_sec();
  decoded->skipped = SkipsDump(dump);
  if (decoded->skipped) return Status::OK();
  return accessor_->Restore(dump, entry);
}

Status EmbeddingHashTable::RestoreRecord(const char* record, size_t size,
                                         RecordScratch* record_scratch,
                                         int64_t* update_time,
                                         RestoredState state) {
  EntryBuffer scratch(stride_);
  DecodedRecord decoded;
  const Status status = DecodeRecord(record, size, scratch.data(),
                                     record_scratch, state, &decoded);
  *update_time = decoded.update_time;
  if (!status.ok() || decoded.skipped) return status;
  const uint64_t hash = MixId(decoded.id, hash_seed_);
  TableShard& shard = shards_[ShardOf(hash)];
  ShardWriteLock lock(&shard, 1);
  return PutLocked(&shard, decoded.id, hash, scratch.data(), *update_time);
}

Status EmbeddingHashTable::CheckRecord(const char* record, size_t size,
                                       RecordScratch* record_scratch,
                                       RestoredState state) const {
  EntryBuffer scratch(stride_);
  DecodedRecord decoded;
  return DecodeRecord(record, size, scratch.data(), record_scratch, state,
                      &decoded);
}

EmbeddingHashTable::RestoreBatch::RestoreBatch(EmbeddingHashTable* table,
                                               RestoredState state)
    : table_(table),
      state_(state),
      capacity_(static_cast<size_t>(std::clamp<int64_t>(
          kRestoreBatchBytes / table->stride_, 1, kGroupIds))) {
  // Every later append fits: none allocates.
  ids_.reserve(capacity_);
  times_.reserve(capacity_);
  entries_.reserve(capacity_ * table->stride_);
}

Status EmbeddingHashTable::RestoreBatch::Add(const char* record, size_t size,
                                             RecordScratch* scratch,
                                             int64_t* update_time) {
  const size_t offset = entries_.size();
  entries_.resize(offset + table_->stride_);
  DecodedRecord decoded;
  Status status;
  try {
    status = table_->DecodeRecord(record, size, entries_.data() + offset,
                                  scratch, state_, &decoded);
  } catch (...) {  // std::bad_alloc parsing: the record is not queued
    entries_.resize(offset);
    throw;
  }
  *update_time = decoded.update_time;
  if (!status.ok() || decoded.skipped) {
    entries_.resize(offset);
    return status;
  }
  ids_.push_back(decoded.id);
  times_.push_back(decoded.update_time);
  // Written once full, so that a failure is reported at its last record.
  return ids_.size() == capacity_ ? Flush() : Status::OK();
}

Status EmbeddingHashTable::RestoreBatch::Flush() {
  const int64_t n = static_cast<int64_t>(ids_.size());
  if (n == 0) return Status::OK();
  // Emptied however the write ends (out of memory throws std::bad_alloc).
  struct Emptied {
    RestoreBatch* batch;
    ~Emptied() {
      batch->ids_.clear();
      batch->times_.clear();
      batch->entries_.clear();
    }
  } emptied{this};
  const int64_t stride = table_->stride_;
  const char* entries = entries_.data();
  std::vector<bool> written(n, false);
  // Each queued entry overwrites its slot's whole entry: new ones are not
  // initialized first.
  const auto write = [&](int64_t i, Slot* slot, char* entry, bool) {
    std::memcpy(entry, entries + i * stride, stride);
    slot->timestamp = ToTimestamp(times_[i]);
    table_->NoteUpdate(times_[i]);
    written[i] = true;
  };
  const auto ahead = [&](int64_t i) {
    PrefetchRange<false>(entries + i * stride, stride);
  };
  RunPipeline<true, EmbeddingHashTable, decltype(write), decltype(ahead),
              /*kInitNew=*/false>(table_, ids_.data(), n, 0, write, {}, ahead);
  const auto unwritten = std::find(written.begin(), written.end(), false);
  if (unwritten == written.end()) return Status::OK();
  const int64_t id = ids_[unwritten - written.begin()];
  const TableShard& shard =
      table_->shards_[ShardOf(MixId(id, table_->hash_seed_))];
  return ResourceExhaustedError(
      "a shard of the table holds its most entries (" +
      std::to_string(shard.entry_limit) + "): " +
      std::to_string(std::count(written.begin(), written.end(), false)) +
      " of the last " + std::to_string(n) + " records (ids such as " +
      std::to_string(id) + ") are not restored");
}

Status RecordId(const char* record, size_t size, RecordScratch* scratch,
                int64_t* id) {
  if (ReadEntryDumpId(record, size, id)) return Status::OK();
  MONOLITH_RETURN_IF_ERROR(ParseRecord(record, size, scratch));
  *id = scratch->dump().id();
  return Status::OK();
}

void SumDuplicateIds(const int64_t* ids, int64_t n, const float* grads,
                     int dim, std::vector<int64_t>* unique_ids,
                     std::vector<float>* summed,
                     std::vector<uint32_t>* counts) {
  // The thread's slots hold each distinct id's index in unique_ids (not a
  // node-based map, which allocated per id and call).
  const PositionSlots::Probe seen = PositionSlots::ForThisThread().Emptied(n);
  unique_ids->clear();
  summed->clear();
  summed->reserve(static_cast<size_t>(n) * dim);
  if (counts != nullptr) counts->clear();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids[i];
    const uint64_t slot =
        seen.Find(id, [&](int32_t k) { return (*unique_ids)[k] == id; });
    int32_t k = seen.slots[slot];
    const float* g = grads + i * dim;
    if (k < 0) {
      k = static_cast<int32_t>(unique_ids->size());
      seen.slots[slot] = k;
      unique_ids->push_back(id);
      summed->insert(summed->end(), g, g + dim);
      if (counts != nullptr) counts->push_back(0);
    } else {
      float* dst = summed->data() + static_cast<int64_t>(k) * dim;
      for (int d = 0; d < dim; ++d) dst[d] += g[d];
    }
    if (counts != nullptr) ++(*counts)[k];
  }
}

}  // namespace hash_table
}  // namespace monolith
