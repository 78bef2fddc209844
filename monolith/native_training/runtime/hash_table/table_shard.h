// One of an EmbeddingHashTable's 64 shards: an open-addressing table of
// 16-byte slots {id, entry index, update time} over an arena of entries,
// with its own lock and its own growth. Internal to the table
// (embedding_hash_table.cc); callers hold |mu| as the table's comments say.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TABLE_SHARD_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TABLE_SHARD_H_

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <thread>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/huge_page_pool.h"
#include "monolith/native_training/runtime/hash_table/id_hash.h"
#include "monolith/native_training/runtime/hash_table/update_time.h"
#include "monolith/native_training/runtime/hash_table/vector_room.h"

namespace monolith {
namespace hash_table {
namespace internal {

constexpr int64_t kMaxBlockBytes = 16 << 10;
constexpr uint32_t kFirstBlockEntries = 4;
constexpr uint64_t kMinShardCapacity = 8;
// Grow a shard when it would be fuller than 3/4.
constexpr uint64_t kMaxLoadNumerator = 3;
constexpr uint64_t kMaxLoadDenominator = 4;
constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();
// Arena blocks start on a 128-byte boundary, so entries whose size is a
// multiple of 64 bytes keep their values on whole lines, and those of a
// multiple of 128 on whole line pairs, which the CPU's adjacent-line
// prefetcher fetches together: reading a value line then never drags in
// the line of another entry's optimizer state. At dim 64 (adagrad) lookups
// ran ~9% faster than with 64-byte alignment (median of rounds against the
// map 1.77 vs 1.62 over six runs each).
constexpr std::align_val_t kBlockAlignment{HugePagePool::kBlockAlignment};
// A shard with at least this many slots (64 KiB of them: the table holds
// ~100k entries or more), or whose slots' entries would fill
// kPooledMinShardBytes, takes its slot arrays and its new arena blocks from
// the table's huge-page pool; smaller tables stay on the heap, where they
// cost no more than their bytes. By bytes too, so that tables of large
// entries (dim 64 with adagrad: ~530 bytes) move to huge pages at 1,024
// slots: a shard's entries taken before it is pooled stay on the heap, and
// at 4,096 slots that was four fifths of a 125k-entry table (66 MB), whose
// lookups then missed the TLB; now a fifth.
constexpr uint64_t kPooledMinSlots = 4096;
constexpr uint64_t kPooledMinShardBytes = 512 << 10;
// Arena blocks come from the pool only when they are this small (entries
// up to 4 KiB), so the region tails they leave waste at most 3%.
constexpr int64_t kMaxPooledBlockBytes = 64 << 10;

// The most entries one shard holds (of 2^32 - 1 indices): with 64 shards,
// far beyond any host's memory.
constexpr uint32_t kMaxShardEntries = uint32_t{1} << 31;

using Timestamp = uint32_t;

static_assert(kMaxUpdateTimeSeconds == std::numeric_limits<Timestamp>::max());

inline Timestamp ToTimestamp(int64_t seconds) {
  return static_cast<Timestamp>(ClampUpdateTime(seconds));
}

// 16 bytes, four to a cache line: the id, its entry's arena index and its
// last update time (seconds). A slot is empty when its index is kEmpty, so
// every int64 is a valid id. Keeping the id here means a probe compares ids
// without touching entries, and an entry holds only the accessor's payload,
// so a lookup reads one slot and the value lines, nothing else.
struct alignas(16) Slot {
  int64_t id;
  uint32_t index;
  Timestamp timestamp;
};
static_assert(sizeof(Slot) == 16, "four slots per cache line");

inline uint64_t CapacityFor(uint64_t entries) {
  uint64_t capacity = kMinShardCapacity;
  while (entries * kMaxLoadDenominator > capacity * kMaxLoadNumerator) {
    capacity <<= 1;
  }
  return capacity;
}

inline int Log2(uint64_t power_of_two) { return __builtin_ctzll(power_of_two); }

// Gives the whole pages inside [begin, begin + bytes) back to the system;
// they read as zeros when touched again. The memory stays allocated.
inline void DiscardPages(char* begin, int64_t bytes) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + page - 1) &
                          ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(begin) + bytes) &
                        ~(page - 1);
  if (end > first) {
    madvise(reinterpret_cast<void*>(first), end - first, MADV_DONTNEED);
  }
}

// Writes a byte of each page of [begin, begin + bytes), so that the pages
// are faulted in (zeroed; on a VM, backed by the host) here and not later.
inline void TouchPages(char* begin, int64_t bytes) {
  static const int64_t page = sysconf(_SC_PAGESIZE);
  for (int64_t offset = 0; offset < bytes; offset += page) begin[offset] = 0;
}

// Counts a thread in |*counter| while it lives (a writer in a table, a
// thread waiting for a lock; RAII, so a wait that throws is uncounted too).
class ScopedCount {
 public:
  explicit ScopedCount(std::atomic<int>* counter)
      : counter_(counter), count_(counter->fetch_add(1) + 1) {}
  ~ScopedCount() { counter_->fetch_sub(1); }
  ScopedCount(const ScopedCount&) = delete;
  ScopedCount& operator=(const ScopedCount&) = delete;

  // The count when this one came, itself included.
  int count() const { return count_; }

 private:
  std::atomic<int>* counter_;
  int count_;
};

struct TableShard {
  // Readers share |mu|. Writers first take |write_mu| (one writer at a
  // time), then |mu| exclusively only while they change slots or entries:
  // growth reads the slots and builds the bigger array without |mu| (only
  // writers change slots, and it is the one writer), so lookups go on
  // meanwhile, and holds |mu| alone only to swap it in (ShardWriteLock).
  mutable std::shared_mutex mu;
  // Writers waiting to hold |mu| exclusively (LockExclusive). A streamed
  // lookup holds every shard's |mu| shared for a run of ids, and starts no
  // run while any shard has a waiting writer: |mu| lets readers in while a
  // writer waits, so overlapping runs of two readers could otherwise hold
  // a writer off for good.
  std::atomic<int> exclusive_waiters{0};
  // Mutable: a save (const) lists a shard's slots under it.
  mutable std::mutex write_mu;
  // Writers waiting for |write_mu| (LockWriter). A streamed update holds
  // every shard's |write_mu| for a run of ids and takes them back at once
  // (a mutex does not queue its waiters), so it gives way to these between
  // runs.
  mutable std::atomic<int> write_waiters{0};
  HugePagePool* pool = nullptr;
  Slot* slots = nullptr;
  uint64_t mask = 0;
  int64_t size = 0;
  // Arena: entry i lives in blocks; blocks double from kFirstBlockEntries
  // entries up to `max_block_entries` (a power of two), then stay at that
  // size, so small tables stay small and big ones are not 1M mallocs.
  // Blocks [0, heap_blocks) are on the heap, the rest in the pool (a shard
  // only grows between resets, so once pooled it stays pooled).
  int64_t stride = 0;
  int max_block_log2 = 0;   // log2(max_block_entries / kFirstBlockEntries)
  uint32_t doubling_end = 0;  // first index of the first full-size block
  // The table's hash seed (MixId(id, hash_seed) picks shard and slot).
  uint64_t hash_seed = 0;
  std::vector<char*> blocks;
  size_t heap_blocks = 0;
  // Blocks [live_blocks, blocks.size()) were discarded by a shrink; the
  // first of them is revived when index |revive_at| (its first) is handed
  // out again (kNoRevive: none discarded).
  static constexpr uint32_t kNoRevive = std::numeric_limits<uint32_t>::max();
  size_t live_blocks = 0;
  uint32_t revive_at = kNoRevive;
  bool poolable_blocks = false;  // full-size blocks are small enough
  // The smallest slot capacity that is pooled (see kPooledMinSlots).
  uint64_t pooled_min_slots = kPooledMinSlots;
  // Bytes of the heap's arena blocks that hold pages: those in use, those
  // readied for coming entries (touched), not those discarded. Atomic:
  // PrepareBlocks changes it under |write_mu| alone, while MemoryBytes
  // reads it under |mu|.
  std::atomic<int64_t> heap_arena_bytes{0};
  uint32_t next_index = 0;
  uint32_t capacity_entries = 0;
  // Entry indices are 32-bit: a shard takes at most this many entries
  // (kMaxShardEntries; tests lower it), so indices never wrap into live
  // entries or kEmpty.
  uint32_t entry_limit = kMaxShardEntries;
  // Blocks PrepareBlocks made ready for AllocateIndex to append, in order,
  // with whether each came from the pool.
  std::vector<std::pair<char*, bool>> ready_blocks;
  std::vector<uint32_t> free_indices;
  // Raised (under |mu| held exclusively) whenever an index stops holding
  // its entry: an erase frees it, a shrink moves entries, a reset empties
  // the shard. A reader that let go of |mu| compares it to know whether
  // the indices it noted still hold the same entries.
  uint64_t layout_version = 0;
  // The longest any growth (Reserve's rehash) of this shard took, in ns;
  // written under |write_mu|, read without a lock (it is atomic).
  std::atomic<int64_t> longest_rehash_ns{0};

  ~TableShard() {
    FreeSlots(slots, mask + 1);
    FreeHeapBlocks();
  }

  // The entries of block number |block_number|.
  int64_t BlockEntries(int block_number) const {
    return int64_t{kFirstBlockEntries} << std::min(block_number, max_block_log2);
  }

  void Init(HugePagePool* huge_page_pool, int64_t entry_stride,
            uint64_t capacity) {
    pool = huge_page_pool;
    stride = entry_stride;
    const int64_t max_entries = std::max<int64_t>(
        kFirstBlockEntries, int64_t{1} << (63 - __builtin_clzll(std::max<int64_t>(
                                           1, kMaxBlockBytes / stride))));
    max_block_log2 = Log2(max_entries / kFirstBlockEntries);
    doubling_end = kFirstBlockEntries * ((1u << max_block_log2) - 1);
    poolable_blocks = (int64_t{kFirstBlockEntries} << max_block_log2) * stride <=
                      kMaxPooledBlockBytes;
    // The pool's smallest array, in slots.
    pooled_min_slots = HugePagePool::kMinArrayBytes / sizeof(Slot);
    while (pooled_min_slots < kPooledMinSlots &&
           pooled_min_slots * static_cast<uint64_t>(stride) <
               kPooledMinShardBytes) {
      pooled_min_slots <<= 1;
    }
    Reset(capacity);
  }

  // Empties the shard down to |capacity| slots. Its pooled arena blocks
  // stay mapped until the pool releases them.
  void Reset(uint64_t capacity) { Reset(capacity, NewSlots(capacity)); }

  // The same with |fresh|, an array of |capacity| empty slots it takes;
  // throws nothing.
  void Reset(uint64_t capacity, Slot* fresh) {
    FreeSlots(slots, mask + 1);
    slots = fresh;
    mask = capacity - 1;
    size = 0;
    FreeHeapBlocks();
    blocks.clear();
    heap_blocks = 0;
    live_blocks = 0;
    revive_at = kNoRevive;
    next_index = capacity_entries = 0;
    free_indices.clear();
    heap_arena_bytes.store(0, std::memory_order_relaxed);
    ++layout_version;
  }

  bool Pooled(uint64_t capacity) const {
    return pool != nullptr && capacity >= pooled_min_slots;
  }

  // An array of |capacity| empty slots.
  Slot* NewSlots(uint64_t capacity) const {
    Slot* array = Pooled(capacity)
                      ? reinterpret_cast<Slot*>(
                            pool->AllocateArray(capacity * sizeof(Slot)))
                      : new Slot[capacity];
    std::fill(array, array + capacity, Slot{0, kEmpty, 0});
    return array;
  }

  void FreeSlots(Slot* array, uint64_t capacity) const {
    if (array == nullptr) return;
    if (Pooled(capacity)) {
      pool->FreeArray(reinterpret_cast<char*>(array),
                      capacity * sizeof(Slot));
    } else {
      delete[] array;
    }
  }

  void FreeHeapBlocks() {
    for (size_t b = 0; b < heap_blocks; ++b) {
      ::operator delete[](blocks[b], kBlockAlignment);
    }
    for (const auto& [block, pooled] : ready_blocks) {
      if (!pooled) ::operator delete[](block, kBlockAlignment);
    }
    ready_blocks.clear();
  }

  // Allocates the arena blocks that |extra| more entries need and touches
  // their pages, so that the page faults (zeroing, on a VM the host's
  // backing) happen here, where the caller holds |write_mu| only and
  // lookups go on, and not under |mu|. AllocateIndex appends them.
  void PrepareBlocks(int64_t extra) {
    ReviveBlocksFor(extra);
    int64_t room = int64_t{capacity_entries} - next_index +
                   static_cast<int64_t>(free_indices.size());
    int block_number = static_cast<int>(blocks.size());
    for (size_t b = 0; b < ready_blocks.size(); ++b) {
      room += BlockEntries(block_number++);
    }
    // Room for the blocks first: once a block is allocated, the emplace
    // below must not throw (the block would leak). (|blocks| is only
    // changed under |mu|: readers index it.)
    int new_blocks = 0;
    for (int64_t r = room; r < extra; ++new_blocks) {
      r += BlockEntries(block_number + new_blocks);
    }
    ReserveRoomFor(&ready_blocks, new_blocks);
    while (room < extra) {
      const int64_t bytes = BlockEntries(block_number) * stride;
      const bool pooled = poolable_blocks && Pooled(mask + 1);
      char* block = pooled ? pool->AllocateBlock(bytes)
                           : static_cast<char*>(
                                 ::operator new[](bytes, kBlockAlignment));
      TouchPages(block, bytes);
      ready_blocks.emplace_back(block, pooled);
      if (!pooled) {
        heap_arena_bytes.fetch_add(bytes, std::memory_order_relaxed);
      }
      room += BlockEntries(block_number++);
    }
  }

  // Where entry |index| lives: the element of |blocks| that holds its
  // block, and its byte offset in that block.
  struct EntryPlace {
    size_t block;
    int64_t offset;
  };
  EntryPlace PlaceOf(uint32_t index) const {
    if (index < doubling_end) {
      const uint32_t q = index / kFirstBlockEntries + 1;
      const int block = 31 - __builtin_clz(q);
      const uint32_t first = kFirstBlockEntries * ((1u << block) - 1);
      return {static_cast<size_t>(block), int64_t{index - first} * stride};
    }
    const uint32_t rest = index - doubling_end;
    const int shift = Log2(kFirstBlockEntries) + max_block_log2;
    return {static_cast<size_t>(max_block_log2) + (rest >> shift),
            int64_t{rest & ((1u << shift) - 1)} * stride};
  }

  char* EntryAt(uint32_t index) const {
    const EntryPlace place = PlaceOf(index);
    return blocks[place.block] + place.offset;
  }

  uint32_t AllocateIndex() {
    if (!free_indices.empty()) {
      const uint32_t index = free_indices.back();
      free_indices.pop_back();
      return index;
    }
    if (next_index == capacity_entries) {
      if (ready_blocks.empty()) PrepareBlocks(1);
      // Before the block leaves |ready_blocks|: the push_back below then
      // cannot throw and lose it.
      ReserveRoomFor(&blocks, 1);
      const auto [block, pooled] = ready_blocks.front();
      ready_blocks.erase(ready_blocks.begin());
      const int64_t entries = BlockEntries(static_cast<int>(blocks.size()));
      blocks.push_back(block);
      // Every block before it is in use again (next_index reached them).
      live_blocks = blocks.size();
      if (!pooled) heap_blocks = blocks.size();
      capacity_entries += static_cast<uint32_t>(entries);
    }
    if (next_index == revive_at) ReviveNextBlock();
    return next_index++;
  }

  // Revives (and touches the pages of) the discarded blocks that |extra|
  // more entries reach, as PrepareBlocks touches new blocks: a revived
  // block whose region went back faults a whole huge page (~160 us), here
  // and not under |mu|, where lookups would wait for it.
  void ReviveBlocksFor(int64_t extra) {
    const int64_t reach =
        int64_t{next_index} +
        std::max<int64_t>(0, extra - static_cast<int64_t>(free_indices.size()));
    while (revive_at != kNoRevive && int64_t{revive_at} < reach) {
      char* const block = blocks[live_blocks];
      const int64_t bytes = BlockEntries(static_cast<int>(live_blocks)) * stride;
      ReviveNextBlock();
      TouchPages(block, bytes);
    }
  }

  // The first discarded block is about to take entries again.
  void ReviveNextBlock() {
    const int64_t entries = BlockEntries(static_cast<int>(live_blocks));
    if (live_blocks >= heap_blocks) {
      pool->ReviveBlock(blocks[live_blocks], entries * stride);
    } else {
      heap_arena_bytes.fetch_add(entries * stride, std::memory_order_relaxed);
    }
    ++live_blocks;
    revive_at = live_blocks < blocks.size()
                    ? revive_at + static_cast<uint32_t>(entries)
                    : kNoRevive;
  }

  // |mu| held exclusively, counted in exclusive_waiters while it waits
  // (also if the wait throws).
  std::unique_lock<std::shared_mutex> LockExclusive() {
    const ScopedCount waiting(&exclusive_waiters);
    return std::unique_lock<std::shared_mutex>(mu);
  }

  // Returns once no writer waits to hold |mu| exclusively. It yields a few
  // times (a writer usually gets its turn within microseconds, once the
  // readers inside leave), then sleeps 50 us at a time: a writer can wait
  // long (behind a save's encoding of a chunk, a grouped reader), and
  // readers spinning meanwhile each burnt a core of TF's thread pool.
  void WaitWhileWriterWaits() const {
    constexpr int kYields = 64;
    for (int tries = 0; exclusive_waiters.load() > 0; ++tries) {
      if (tries < kYields) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }

  // |write_mu|, counted in write_waiters while it waits.
  std::unique_lock<std::mutex> LockWriter() const {
    const ScopedCount waiting(&write_waiters);
    return std::unique_lock<std::mutex>(write_mu);
  }

  // The slot holding |id|, or the empty slot ending its probe sequence.
  uint64_t FindSlot(int64_t id, uint64_t hash) const {
    uint64_t pos = hash & mask;
    while (slots[pos].index != kEmpty && slots[pos].id != id) {
      pos = (pos + 1) & mask;
    }
    return pos;
  }

  char* Find(int64_t id, uint64_t hash) const {
    const Slot& slot = slots[FindSlot(id, hash)];
    return slot.index == kEmpty ? nullptr : EntryAt(slot.index);
  }

  // Grows, if needed, so that |extra| more entries fit without a rehash
  // (slot positions stay valid while they are inserted). The caller holds
  // |write_mu| and not |mu|: the new array is built while readers go on.
  void Reserve(int64_t extra) {
    const uint64_t needed = uint64_t(size + extra);
    if (needed * kMaxLoadDenominator <= (mask + 1) * kMaxLoadNumerator) return;
    const auto start = std::chrono::steady_clock::now();
    const uint64_t capacity = CapacityFor(needed);
    Slot* grown = NewSlots(capacity);
    Slot* old = slots;
    const uint64_t old_capacity = mask + 1;
    for (uint64_t i = 0; i < old_capacity; ++i) {
      if (old[i].index != kEmpty) PlaceIn(grown, capacity - 1, old[i]);
    }
    // The rehash alone: the swap below waits for the readers inside.
    const int64_t took = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now() - start)
                             .count();
    if (took > longest_rehash_ns.load(std::memory_order_relaxed)) {
      longest_rehash_ns.store(took, std::memory_order_relaxed);
    }
    {
      std::unique_lock<std::shared_mutex> swap = LockExclusive();
      slots = grown;
      mask = capacity - 1;
    }
    FreeSlots(old, old_capacity);
  }

  // Whether the shard takes no new entry (entry_limit reached, no freed
  // index to reuse).
  bool Full() const { return EntriesLeft() == 0; }

  // How many more entries the shard takes (freed indices, then new ones up
  // to entry_limit).
  int64_t EntriesLeft() const {
    return static_cast<int64_t>(free_indices.size()) +
           std::max<int64_t>(0, int64_t{entry_limit} - next_index);
  }

  // Fills empty slot |pos| (where |id|'s probe ended) with a new entry
  // stamped |timestamp| (the update's own: a visit that throws before the
  // entry's leaves it as saves and eviction then see it); the caller has
  // reserved room and checked Full(). Returns the entry.
  char* Insert(int64_t id, uint64_t pos, Timestamp timestamp) {
    const uint32_t index = AllocateIndex();
    slots[pos] = Slot{id, index, timestamp};
    ++size;
    return EntryAt(index);
  }

  void PlaceIn(Slot* array, uint64_t array_mask, const Slot& slot) const {
    uint64_t pos = MixId(slot.id, hash_seed) & array_mask;
    while (array[pos].index != kEmpty) pos = (pos + 1) & array_mask;
    array[pos] = slot;
  }

  // Eviction's shrink to the slots |kept| (the shard's surviving ones, in
  // any order; their indices are rewritten), in three steps so that
  // readers wait only for the entries' moves and the swap, not for the
  // new array's allocation, its fill or the old memory's release:
  // PlanShrink (writer lock only) builds the new slot array at the
  // capacity they need, with their entries at arena indices [0,
  // kept->size()), and notes which entries move there from past it; it
  // allocates, and a std::bad_alloc leaves the shard as it was.
  // ApplyShrink (|mu| held exclusively too; allocates nothing) moves the
  // entries and swaps the array in. FinishShrink (writer lock only)
  // discards the arena blocks wholly past the kept entries
  // (DiscardBlocksFrom: the blocks stay, and later inserts fill them
  // again) and frees the old array, which no reader holds any more.
  // A pooled slot array stays pooled, so that blocks added later come from
  // the pool as the earlier ones did.
  struct ShrinkPlan {
    Slot* slots = nullptr;  // the new array; after ApplyShrink, the old one
    uint64_t capacity = 0;  // its slots
    uint32_t live = 0;
    std::vector<std::pair<uint32_t, uint32_t>> moves;  // entry (from, to)
  };

  void PlanShrink(std::vector<Slot>* kept, ShrinkPlan* plan) const {
    const uint32_t live = static_cast<uint32_t>(kept->size());
    std::vector<bool> taken(live, false);
    for (const Slot& slot : *kept) {
      if (slot.index < live) taken[slot.index] = true;
    }
    plan->moves.clear();
    plan->moves.reserve(live - std::count(taken.begin(), taken.end(), true));
    uint64_t capacity = CapacityFor(live);
    if (Pooled(mask + 1)) capacity = std::max(capacity, pooled_min_slots);
    // The last allocation: nothing after it can throw.
    Slot* const fresh = NewSlots(capacity);
    uint32_t hole = 0;
    for (Slot& slot : *kept) {
      if (slot.index >= live) {
        while (taken[hole]) ++hole;
        taken[hole] = true;
        plan->moves.emplace_back(slot.index, hole);
        slot.index = hole;
      }
      PlaceIn(fresh, capacity - 1, slot);
    }
    plan->slots = fresh;
    plan->capacity = capacity;
    plan->live = live;
  }

  void ApplyShrink(ShrinkPlan* plan) {
    for (const auto& [from, to] : plan->moves) {
      std::memcpy(EntryAt(to), EntryAt(from), stride);
    }
    next_index = plan->live;
    free_indices.clear();
    std::swap(slots, plan->slots);
    const uint64_t old_capacity = mask + 1;
    mask = plan->capacity - 1;
    plan->capacity = old_capacity;
    size = plan->live;
    ++layout_version;
  }

  void FinishShrink(ShrinkPlan* plan) {
    DiscardBlocksFrom(plan->live);
    FreeSlots(plan->slots, plan->capacity);
    plan->slots = nullptr;
  }

  // Discards the blocks holding only indices >= |first| (those not
  // discarded yet): a heap block's pages go back to the system, a pooled
  // block goes back with its region once the region's other blocks are
  // discarded too (HugePagePool::DiscardBlock: giving back part of a huge
  // page would leave the whole region on 4 KiB pages, and lookups in it
  // ~15% slower, for good).
  void DiscardBlocksFrom(uint32_t first) {
    uint32_t begin = 0;  // the block's first index
    size_t b = 0;
    for (; b < blocks.size() && begin < first; ++b) {
      begin += static_cast<uint32_t>(BlockEntries(static_cast<int>(b)));
    }
    if (b >= live_blocks) return;
    revive_at = begin;
    for (size_t d = b; d < live_blocks; ++d) {
      const int64_t bytes = BlockEntries(static_cast<int>(d)) * stride;
      if (d < heap_blocks) {
        DiscardPages(blocks[d], bytes);
        heap_arena_bytes.fetch_sub(bytes, std::memory_order_relaxed);
      } else {
        pool->DiscardBlock(blocks[d], bytes);
      }
    }
    live_blocks = b;
  }

  // Removes the slot at |pos| (freeing its entry) and shifts later members
  // of its cluster back, so probe sequences stay unbroken without
  // tombstones.
  void EraseAt(uint64_t pos) {
    free_indices.push_back(slots[pos].index);
    uint64_t hole = pos;
    for (uint64_t i = (pos + 1) & mask; slots[i].index != kEmpty;
         i = (i + 1) & mask) {
      const uint64_t home = MixId(slots[i].id, hash_seed) & mask;
      const bool can_fill_hole = ((i - home) & mask) >= ((i - hole) & mask);
      if (can_fill_hole) {
        slots[hole] = slots[i];
        hole = i;
      }
    }
    slots[hole].index = kEmpty;
    --size;
    ++layout_version;
  }
};

// A writer's hold on a shard with room for |extra| more entries: its
// |write_mu|, then (after any growth) its |mu| exclusively; with
// |exclude_readers| false, |mu| only once ExcludeReaders() is called
// (meanwhile the slots change for no one else: only writers change them).
class ShardWriteLock {
 public:
  ShardWriteLock(TableShard* shard, int64_t extra, bool exclude_readers = true)
      : shard_(shard), writer_(shard->LockWriter()) {
    if (extra > 0) {
      shard->Reserve(extra);
      shard->PrepareBlocks(extra);
    }
    if (exclude_readers) ExcludeReaders();
  }

  // Also makes room in |blocks| for every block PrepareBlocks readied, so
  // that inserting (AllocateIndex) allocates nothing once entries start
  // changing: a failure there left the batch's earlier new ids inserted
  // but never written. (Under |mu|: readers index |blocks|.)
  void ExcludeReaders() {
    lock_ = shard_->LockExclusive();
    ReserveRoomFor(&shard_->blocks, shard_->ready_blocks.size());
  }
  // Lets readers in again; the writer lock stays.
  void AdmitReaders() { lock_.unlock(); }

 private:
  TableShard* shard_;
  std::unique_lock<std::mutex> writer_;
  std::unique_lock<std::shared_mutex> lock_;
};

}  // namespace internal
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TABLE_SHARD_H_
