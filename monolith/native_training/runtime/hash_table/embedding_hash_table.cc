#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <utility>
#include <vector>

namespace monolith {
namespace hash_table {
namespace {

constexpr int kShardBits = 6;
constexpr int kNumShards = 1 << kShardBits;
// Ids grouped by shard at a time; the grouping arrays live on the stack.
constexpr int kChunk = 4096;
// Buckets are prefetched this many ids ahead, entries half as many.
constexpr int kPrefetchDistance = 8;
constexpr int64_t kMaxBlockBytes = 16 << 10;
constexpr uint64_t kMinShardCapacity = 8;
// Grow a shard when it would be fuller than 3/4.
constexpr uint64_t kMaxLoadNumerator = 3;
constexpr uint64_t kMaxLoadDenominator = 4;
// Each entry starts with its last update time.
using Timestamp = uint32_t;

// MurmurHash3's 64-bit finalizer: ids are often structured (slot << 48 |
// small counter), so they must be mixed before their bits pick buckets.
inline uint64_t Mix(int64_t id) {
  uint64_t h = static_cast<uint64_t>(id);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

inline int ShardOf(uint64_t hash) {
  return static_cast<int>(hash >> (64 - kShardBits));
}

inline void Prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

inline Timestamp GetTimestamp(const char* entry) {
  Timestamp t;
  std::memcpy(&t, entry, sizeof(t));
  return t;
}

inline void SetTimestamp(char* entry, int64_t seconds) {
  const Timestamp t = static_cast<Timestamp>(
      std::clamp<int64_t>(seconds, 0, std::numeric_limits<Timestamp>::max()));
  std::memcpy(entry, &t, sizeof(t));
}

inline char* Payload(char* entry) { return entry + sizeof(Timestamp); }
inline const char* Payload(const char* entry) {
  return entry + sizeof(Timestamp);
}

// A slot is empty when its entry is null, so every int64 is a valid id.
struct Slot {
  int64_t key;
  char* entry;
};

uint64_t CapacityFor(uint64_t entries) {
  uint64_t capacity = kMinShardCapacity;
  while (entries * kMaxLoadDenominator > capacity * kMaxLoadNumerator) {
    capacity <<= 1;
  }
  return capacity;
}

bool AllZero(const float* values, int dim) {
  for (int i = 0; i < dim; ++i) {
    if (values[i] != 0.0f) return false;
  }
  return true;
}

}  // namespace

struct EmbeddingHashTable::Shard {
  mutable std::shared_mutex mu;
  std::unique_ptr<Slot[]> slots;
  uint64_t mask = 0;
  int64_t size = 0;
  // Arena: entries are carved from blocks; freed entries form a list
  // threaded through their first bytes.
  std::vector<std::unique_ptr<char[]>> blocks;
  char* cursor = nullptr;
  char* block_end = nullptr;
  int64_t next_block_entries = 8;
  int64_t arena_bytes = 0;
  char* free_list = nullptr;
  RandomEngine rng;

  void Reset(uint64_t capacity) {
    slots.reset(new Slot[capacity]());
    mask = capacity - 1;
    size = 0;
    blocks.clear();
    cursor = block_end = nullptr;
    next_block_entries = 8;
    arena_bytes = 0;
    free_list = nullptr;
  }

  void PrefetchBucket(uint64_t hash) const { Prefetch(&slots[hash & mask]); }

  Slot* Find(int64_t key, uint64_t hash) const {
    for (uint64_t i = hash & mask;; i = (i + 1) & mask) {
      Slot* slot = &slots[i];
      if (slot->entry == nullptr) return nullptr;
      if (slot->key == key) return slot;
    }
  }

  // Places |key| (absent) in the first free slot of its probe sequence.
  void Place(int64_t key, uint64_t hash, char* entry) {
    uint64_t i = hash & mask;
    while (slots[i].entry != nullptr) i = (i + 1) & mask;
    slots[i].key = key;
    slots[i].entry = entry;
  }

  void Rehash(uint64_t capacity) {
    std::unique_ptr<Slot[]> old = std::move(slots);
    const uint64_t old_capacity = mask + 1;
    slots.reset(new Slot[capacity]());
    mask = capacity - 1;
    for (uint64_t i = 0; i < old_capacity; ++i) {
      if (old[i].entry != nullptr) {
        Place(old[i].key, Mix(old[i].key), old[i].entry);
      }
    }
  }

  char* AllocateEntry(int64_t stride) {
    if (free_list != nullptr) {
      char* entry = free_list;
      std::memcpy(&free_list, entry, sizeof(char*));
      return entry;
    }
    if (cursor == nullptr || block_end - cursor < stride) {
      const int64_t per_block = std::max<int64_t>(
          1, std::min(next_block_entries, kMaxBlockBytes / stride));
      next_block_entries = per_block * 2;
      const int64_t bytes = per_block * stride;
      blocks.emplace_back(new char[bytes]);
      arena_bytes += bytes;
      cursor = blocks.back().get();
      block_end = cursor + bytes;
    }
    char* entry = cursor;
    cursor += stride;
    return entry;
  }

  void FreeEntry(char* entry) {
    std::memcpy(entry, &free_list, sizeof(char*));
    free_list = entry;
  }

  // Removes the slot at |pos| and shifts later members of its cluster back,
  // so probe sequences stay unbroken without tombstones.
  void EraseAt(uint64_t pos) {
    uint64_t hole = pos;
    for (uint64_t i = (pos + 1) & mask; slots[i].entry != nullptr;
         i = (i + 1) & mask) {
      const uint64_t home = Mix(slots[i].key) & mask;
      // Move i into the hole if its home is not in (hole, i] cyclically.
      const bool can_fill_hole = ((i - home) & mask) >= ((i - hole) & mask);
      if (can_fill_hole) {
        slots[hole] = slots[i];
        hole = i;
      }
    }
    slots[hole].entry = nullptr;
    --size;
  }
};

// Ids of one chunk, ordered by shard (stably), with their hashes.
class EmbeddingHashTable::Scratch {
 public:
  void Group(const int64_t* ids, int n) {
    int counts[kNumShards] = {};
    for (int i = 0; i < n; ++i) ++counts[ShardOf(Mix(ids[i]))];
    begin_[0] = 0;
    for (int s = 0; s < kNumShards; ++s) begin_[s + 1] = begin_[s] + counts[s];
    int cursor[kNumShards];
    std::copy(begin_, begin_ + kNumShards, cursor);
    for (int i = 0; i < n; ++i) {
      const uint64_t hash = Mix(ids[i]);
      const int pos = cursor[ShardOf(hash)]++;
      hash_[pos] = hash;
      index_[pos] = static_cast<uint16_t>(i);
    }
  }
  int begin(int shard) const { return begin_[shard]; }
  int end(int shard) const { return begin_[shard + 1]; }
  uint64_t hash(int pos) const { return hash_[pos]; }
  int index(int pos) const { return index_[pos]; }
  // Per-position marks, e.g. "inserted".
  void set_flag(int pos, bool value) { flag_[pos] = value; }
  bool flag(int pos) const { return flag_[pos]; }

 private:
  int begin_[kNumShards + 1];
  uint64_t hash_[kChunk];
  uint16_t index_[kChunk];
  bool flag_[kChunk];
};

namespace {

// Visits positions [begin, end) of |scratch| (one shard) in order, calling
// resolve(pos) -> entry (may insert) a few positions before visit(pos,
// entry), with bucket and entry prefetches in between.
template <typename PrefetchBucket, typename Resolve, typename Visit>
void Pipeline(int begin, int end, PrefetchBucket prefetch_bucket,
              Resolve resolve, Visit visit) {
  constexpr int kAhead = kPrefetchDistance;
  constexpr int kHalf = kPrefetchDistance / 2;
  char* ring[kAhead];
  for (int j = begin; j < end + kAhead; ++j) {
    if (j < end) prefetch_bucket(j);
    const int r = j - kHalf;
    if (r >= begin && r < end) {
      char* entry = resolve(r);
      if (entry != nullptr) {
        Prefetch(entry);
        Prefetch(entry + 64);
      }
      ring[r % kAhead] = entry;
    }
    const int v = j - kAhead;
    if (v >= begin) visit(v, ring[v % kAhead]);
  }
}

}  // namespace

EmbeddingHashTable::EmbeddingHashTable(std::unique_ptr<EntryAccessor> accessor)
    : accessor_(std::move(accessor)),
      dim_(accessor_->DimSize()),
      entry_bytes_(accessor_->SizeBytes()),
      stride_(std::max<int64_t>(sizeof(Timestamp) + accessor_->SizeBytes(),
                                sizeof(char*))),
      shards_(new Shard[kNumShards]) {}

EmbeddingHashTable::~EmbeddingHashTable() = default;

Status EmbeddingHashTable::Create(const EmbeddingHashTableConfig& config,
                                  uint64_t seed,
                                  std::unique_ptr<EmbeddingHashTable>* table) {
  std::unique_ptr<EntryAccessor> accessor;
  MONOLITH_RETURN_IF_ERROR(
      EntryAccessor::Create(config.entry_config(), &accessor));
  std::unique_ptr<EmbeddingHashTable> result(
      new EmbeddingHashTable(std::move(accessor)));
  result->skip_zero_embedding_ = config.skip_zero_embedding();
  const SlotExpireTimeConfig& expire = config.slot_expire_time_config();
  result->default_expire_seconds_ =
      int64_t{expire.default_expire_time()} * kSecondsPerDay;
  for (const auto& slot_expire : expire.slot_expire_times()) {
    result->slot_expire_seconds_[slot_expire.slot()] =
        int64_t{slot_expire.expire_time()} * kSecondsPerDay;
  }
  const uint64_t capacity =
      CapacityFor((config.initial_capacity() + kNumShards - 1) / kNumShards);
  RandomEngine seeder(seed);
  for (int s = 0; s < kNumShards; ++s) {
    result->shards_[s].Reset(capacity);
    result->shards_[s].rng = RandomEngine(seeder());
  }
  *table = std::move(result);
  return Status::OK();
}

template <typename Fn>
void EmbeddingHashTable::ForEachFound(const int64_t* ids, int64_t n,
                                      Fn fn) const {
  Scratch scratch;
  for (int64_t base = 0; base < n; base += kChunk) {
    const int m = static_cast<int>(std::min<int64_t>(kChunk, n - base));
    scratch.Group(ids + base, m);
    for (int s = 0; s < kNumShards; ++s) {
      if (scratch.begin(s) == scratch.end(s)) continue;
      const Shard& shard = shards_[s];
      std::shared_lock<std::shared_mutex> lock(shard.mu);
      Pipeline(
          scratch.begin(s), scratch.end(s),
          [&](int pos) { shard.PrefetchBucket(scratch.hash(pos)); },
          [&](int pos) -> char* {
            const Slot* slot = shard.Find(ids[base + scratch.index(pos)],
                                          scratch.hash(pos));
            return slot == nullptr ? nullptr : slot->entry;
          },
          [&](int pos, const char* entry) {
            fn(base + scratch.index(pos), entry);
          });
    }
  }
}

template <typename Fn>
void EmbeddingHashTable::ForEachUpserted(const int64_t* ids, int64_t n,
                                         Fn fn) {
  Scratch scratch;
  for (int64_t base = 0; base < n; base += kChunk) {
    const int m = static_cast<int>(std::min<int64_t>(kChunk, n - base));
    scratch.Group(ids + base, m);
    for (int s = 0; s < kNumShards; ++s) {
      if (scratch.begin(s) == scratch.end(s)) continue;
      Shard& shard = shards_[s];
      std::unique_lock<std::shared_mutex> lock(shard.mu);
      Pipeline(
          scratch.begin(s), scratch.end(s),
          [&](int pos) { shard.PrefetchBucket(scratch.hash(pos)); },
          [&](int pos) -> char* {
            const int64_t id = ids[base + scratch.index(pos)];
            const uint64_t hash = scratch.hash(pos);
            if (Slot* slot = shard.Find(id, hash)) {
              scratch.set_flag(pos, false);
              return slot->entry;
            }
            if (uint64_t(shard.size + 1) * kMaxLoadDenominator >
                (shard.mask + 1) * kMaxLoadNumerator) {
              shard.Rehash((shard.mask + 1) * 2);
            }
            char* entry = shard.AllocateEntry(stride_);
            SetTimestamp(entry, 0);
            accessor_->Init(Payload(entry), &shard.rng);
            shard.Place(id, hash, entry);
            ++shard.size;
            scratch.set_flag(pos, true);
            return entry;
          },
          [&](int pos, char* entry) {
            fn(base + scratch.index(pos), entry, scratch.flag(pos));
          });
    }
  }
}

int64_t EmbeddingHashTable::BatchLookup(const int64_t* ids, int64_t n,
                                        float* embeddings) const {
  int64_t hits = 0;
  ForEachFound(ids, n, [&](int64_t i, const char* entry) {
    float* out = embeddings + i * dim_;
    if (entry != nullptr) {
      accessor_->Fill(Payload(entry), out);
      ++hits;
    } else {
      std::memset(out, 0, sizeof(float) * dim_);
    }
  });
  return hits;
}

void EmbeddingHashTable::BatchLookupEntry(const int64_t* ids, int64_t n,
                                          EntryDump* entries) const {
  ForEachFound(ids, n, [&](int64_t i, const char* entry) {
    EntryDump& dump = entries[i];
    dump.Clear();
    dump.set_id(ids[i]);
    if (entry != nullptr) {
      accessor_->Save(Payload(entry), &dump);
      dump.set_last_update_ts_sec(GetTimestamp(entry));
    }
  });
}

void EmbeddingHashTable::Assign(const int64_t* ids, int64_t n,
                                const float* values, int64_t update_time) {
  auto assign = [&](int64_t i, char* entry, bool) {
    SetTimestamp(entry, update_time);
    accessor_->Assign(values + i * dim_, Payload(entry));
  };
  if (!skip_zero_embedding_) {
    ForEachUpserted(ids, n, assign);
    return;
  }
  // Serving tables drop all-zero embeddings: handled id by id, in order.
  for (int64_t i = 0; i < n; ++i) {
    if (AllZero(values + i * dim_, dim_)) {
      Erase(ids[i]);
    } else {
      ForEachUpserted(ids + i, 1, [&](int64_t, char* entry, bool inserted) {
        assign(i, entry, inserted);
      });
    }
  }
}

void EmbeddingHashTable::AssignAdd(const int64_t* ids, int64_t n,
                                   const float* values, int64_t update_time) {
  ForEachUpserted(ids, n, [&](int64_t i, char* entry, bool) {
    SetTimestamp(entry, update_time);
    accessor_->AssignAdd(values + i * dim_, Payload(entry));
  });
}

void EmbeddingHashTable::Reinitialize(const int64_t* ids, int64_t n,
                                      int* status, int64_t update_time) {
  ForEachUpserted(ids, n, [&](int64_t i, char* entry, bool inserted) {
    SetTimestamp(entry, update_time);
    if (!inserted) {
      accessor_->Init(Payload(entry), &shards_[ShardOf(Mix(ids[i]))].rng);
    }
    status[i] = inserted ? 0 : 1;
  });
}

Status EmbeddingHashTable::BatchOptimize(const int64_t* ids, int64_t n,
                                         const float* grads,
                                         const float* learning_rates,
                                         int64_t update_time,
                                         int64_t global_step) {
  if (accessor_->serving()) {
    return FailedPreconditionError(
        "optimize on a SERVING table: its entries have no optimizer state");
  }
  ForEachUpserted(ids, n, [&](int64_t i, char* entry, bool) {
    SetTimestamp(entry, update_time);
    accessor_->Optimize(Payload(entry), grads + i * dim_, learning_rates,
                        global_step);
  });
  return Status::OK();
}

bool EmbeddingHashTable::Erase(int64_t id) {
  const uint64_t hash = Mix(id);
  Shard& shard = shards_[ShardOf(hash)];
  std::unique_lock<std::shared_mutex> lock(shard.mu);
  Slot* slot = shard.Find(id, hash);
  if (slot == nullptr) return false;
  shard.FreeEntry(slot->entry);
  shard.EraseAt(static_cast<uint64_t>(slot - shard.slots.get()));
  return true;
}

bool EmbeddingHashTable::IsExpired(int64_t id, int64_t update_time,
                                   int64_t now) const {
  auto it = slot_expire_seconds_.find(SlotOfId(id));
  const int64_t expire = it == slot_expire_seconds_.end()
                             ? default_expire_seconds_
                             : it->second;
  return now - update_time >= expire;
}

int64_t EmbeddingHashTable::Evict(int64_t now) {
  int64_t evicted = 0;
  for (int s = 0; s < kNumShards; ++s) {
    Shard& shard = shards_[s];
    std::unique_lock<std::shared_mutex> lock(shard.mu);
    std::vector<Slot> kept;
    kept.reserve(shard.size);
    for (uint64_t i = 0; i <= shard.mask; ++i) {
      const Slot& slot = shard.slots[i];
      if (slot.entry == nullptr) continue;
      if (IsExpired(slot.key, GetTimestamp(slot.entry), now)) {
        shard.FreeEntry(slot.entry);
        ++evicted;
      } else {
        kept.push_back(slot);
      }
    }
    if (kept.size() == static_cast<size_t>(shard.size)) continue;
    std::fill(shard.slots.get(), shard.slots.get() + shard.mask + 1, Slot{});
    for (const Slot& slot : kept) {
      shard.Place(slot.key, Mix(slot.key), slot.entry);
    }
    shard.size = static_cast<int64_t>(kept.size());
  }
  return evicted;
}

bool EmbeddingHashTable::Contains(int64_t id) const {
  const uint64_t hash = Mix(id);
  const Shard& shard = shards_[ShardOf(hash)];
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
    std::shared_lock<std::shared_mutex> lock(shards_[s].mu);
    bytes += (shards_[s].mask + 1) * sizeof(Slot) + shards_[s].arena_bytes;
  }
  return bytes;
}

void EmbeddingHashTable::Clear() {
  for (int s = 0; s < kNumShards; ++s) {
    std::unique_lock<std::shared_mutex> lock(shards_[s].mu);
    shards_[s].Reset(kMinShardCapacity);
  }
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
    const std::function<Status(EntryDump&&)>& write) const {
  if (num_shards <= 0 || shard < 0 || shard >= num_shards) {
    return InvalidArgumentError("dump shard " + std::to_string(shard) +
                                " of " + std::to_string(num_shards) +
                                " is out of range");
  }
  // Dump shard of an id: its internal shard modulo num_shards when that
  // splits the work evenly enough, else its hash modulo num_shards.
  const bool by_internal_shard = num_shards <= kNumShards;
  std::vector<int64_t> keys;
  std::vector<char> copies;
  for (int s = 0; s < kNumShards; ++s) {
    if (by_internal_shard && s % num_shards != shard) continue;
    keys.clear();
    copies.clear();
    {
      const Shard& internal = shards_[s];
      std::shared_lock<std::shared_mutex> lock(internal.mu);
      for (uint64_t i = 0; i <= internal.mask; ++i) {
        const Slot& slot = internal.slots[i];
        if (slot.entry == nullptr) continue;
        if (!by_internal_shard &&
            static_cast<int>(Mix(slot.key) % num_shards) != shard) {
          continue;
        }
        keys.push_back(slot.key);
        copies.insert(copies.end(), slot.entry, slot.entry + stride_);
      }
    }
    for (size_t k = 0; k < keys.size(); ++k) {
      const char* entry = copies.data() + k * stride_;
      const int64_t update_time = GetTimestamp(entry);
      if (now > 0 && IsExpired(keys[k], update_time, now)) continue;
      EntryDump dump;
      dump.set_id(keys[k]);
      accessor_->Save(Payload(entry), &dump);
      dump.set_last_update_ts_sec(update_time);
      MONOLITH_RETURN_IF_ERROR(write(std::move(dump)));
    }
  }
  return Status::OK();
}

Status EmbeddingHashTable::Restore(const EntryDump& dump) {
  if (skip_zero_embedding_ && dump.num_size() == dim_ &&
      AllZero(dump.num().data(), dim_)) {
    return Status::OK();
  }
  // Decode into a scratch entry first so a bad dump changes nothing.
  std::vector<char> scratch(stride_);
  const uint64_t hash = Mix(dump.id());
  Shard& shard = shards_[ShardOf(hash)];
  {
    std::unique_lock<std::shared_mutex> lock(shard.mu);
    MONOLITH_RETURN_IF_ERROR(
        accessor_->Restore(dump, Payload(scratch.data()), &shard.rng));
  }
  SetTimestamp(scratch.data(), dump.last_update_ts_sec());
  const int64_t id = dump.id();
  ForEachUpserted(&id, 1, [&](int64_t, char* entry, bool) {
    std::memcpy(entry, scratch.data(), sizeof(Timestamp) + entry_bytes_);
  });
  return Status::OK();
}

}  // namespace hash_table
}  // namespace monolith
