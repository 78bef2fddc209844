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
// Ids grouped by shard at a time; the grouping arrays (~50 KiB) live on the
// stack.
constexpr int kChunk = 2048;
constexpr int64_t kMaxBlockBytes = 16 << 10;
constexpr uint32_t kFirstBlockEntries = 4;
constexpr uint64_t kMinShardCapacity = 8;
// Grow a shard when it would be fuller than 3/4.
constexpr uint64_t kMaxLoadNumerator = 3;
constexpr uint64_t kMaxLoadDenominator = 4;
constexpr uint32_t kEmpty = std::numeric_limits<uint32_t>::max();

// An entry is [id: int64][last update: uint32 seconds][accessor payload].
using Timestamp = uint32_t;
constexpr int64_t kTimestampOffset = sizeof(int64_t);
constexpr int64_t kPayloadOffset = kTimestampOffset + sizeof(Timestamp);

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

// The top bits pick the shard, the low 32 bits (the slot's fingerprint)
// the bucket, so a shard can rehash from its slots alone.
inline int ShardOf(uint64_t hash) {
  return static_cast<int>(hash >> (64 - kShardBits));
}
inline uint32_t Fingerprint(uint64_t hash) {
  return static_cast<uint32_t>(hash);
}

inline void Prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

inline int64_t KeyOf(const char* entry) {
  int64_t key;
  std::memcpy(&key, entry, sizeof(key));
  return key;
}

inline Timestamp GetTimestamp(const char* entry) {
  Timestamp t;
  std::memcpy(&t, entry + kTimestampOffset, sizeof(t));
  return t;
}

inline void SetTimestamp(char* entry, int64_t seconds) {
  const Timestamp t = static_cast<Timestamp>(
      std::clamp<int64_t>(seconds, 0, std::numeric_limits<Timestamp>::max()));
  std::memcpy(entry + kTimestampOffset, &t, sizeof(t));
}

inline char* Payload(char* entry) { return entry + kPayloadOffset; }
inline const char* Payload(const char* entry) {
  return entry + kPayloadOffset;
}

// 8 bytes: the low 32 bits of the id's hash and the entry's arena index.
// A slot is empty when its index is kEmpty, so every int64 is a valid id;
// the id itself is compared in the entry only when fingerprints match.
struct Slot {
  uint32_t fingerprint;
  uint32_t index;
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

int Log2(uint64_t power_of_two) { return __builtin_ctzll(power_of_two); }

}  // namespace

struct EmbeddingHashTable::Shard {
  mutable std::shared_mutex mu;
  std::unique_ptr<Slot[]> slots;
  uint64_t mask = 0;
  int64_t size = 0;
  // Arena: entry i lives in blocks; blocks double from kFirstBlockEntries
  // entries up to `max_block_entries` (a power of two), then stay at that
  // size, so small tables stay small and big ones are not 1M mallocs.
  int64_t stride = 0;
  int max_block_log2 = 0;   // log2(max_block_entries / kFirstBlockEntries)
  uint32_t doubling_end = 0;  // first index of the first full-size block
  std::vector<std::unique_ptr<char[]>> blocks;
  uint32_t next_index = 0;
  uint32_t capacity_entries = 0;
  std::vector<uint32_t> free_indices;
  int64_t arena_bytes = 0;
  RandomEngine rng;

  void Init(int64_t entry_stride, uint64_t capacity) {
    stride = entry_stride;
    const int64_t max_entries = std::max<int64_t>(
        kFirstBlockEntries, int64_t{1} << (63 - __builtin_clzll(std::max<int64_t>(
                                           1, kMaxBlockBytes / stride))));
    max_block_log2 = Log2(max_entries / kFirstBlockEntries);
    doubling_end = kFirstBlockEntries * ((1u << max_block_log2) - 1);
    Reset(capacity);
  }

  void Reset(uint64_t capacity) {
    slots.reset(new Slot[capacity]);
    std::fill(slots.get(), slots.get() + capacity, Slot{0, kEmpty});
    mask = capacity - 1;
    size = 0;
    blocks.clear();
    next_index = capacity_entries = 0;
    free_indices.clear();
    arena_bytes = 0;
  }

  char* EntryAt(uint32_t index) const {
    if (index < doubling_end) {
      const uint32_t q = index / kFirstBlockEntries + 1;
      const int block = 31 - __builtin_clz(q);
      const uint32_t first = kFirstBlockEntries * ((1u << block) - 1);
      return blocks[block].get() + int64_t{index - first} * stride;
    }
    const uint32_t rest = index - doubling_end;
    const int shift = Log2(kFirstBlockEntries) + max_block_log2;
    return blocks[max_block_log2 + (rest >> shift)].get() +
           int64_t{rest & ((1u << shift) - 1)} * stride;
  }

  uint32_t AllocateIndex() {
    if (!free_indices.empty()) {
      const uint32_t index = free_indices.back();
      free_indices.pop_back();
      return index;
    }
    if (next_index == capacity_entries) {
      const int block = static_cast<int>(blocks.size());
      const int64_t entries =
          int64_t{kFirstBlockEntries} << std::min(block, max_block_log2);
      blocks.emplace_back(new char[entries * stride]);
      arena_bytes += entries * stride;
      capacity_entries += static_cast<uint32_t>(entries);
    }
    return next_index++;
  }

  void PrefetchBucket(uint64_t hash) const {
    Prefetch(&slots[Fingerprint(hash) & mask]);
  }

  // The first slot at or after |pos| in the probe sequence that is empty or
  // carries |fingerprint|.
  uint64_t Probe(uint32_t fingerprint, uint64_t pos) const {
    for (;; pos = (pos + 1) & mask) {
      const Slot& slot = slots[pos];
      if (slot.index == kEmpty || slot.fingerprint == fingerprint) return pos;
    }
  }

  // The slot holding |key|, or the empty slot ending its probe sequence.
  uint64_t FindSlot(int64_t key, uint64_t hash) const {
    const uint32_t fingerprint = Fingerprint(hash);
    for (uint64_t pos = Probe(fingerprint, fingerprint & mask);;
         pos = Probe(fingerprint, (pos + 1) & mask)) {
      const Slot& slot = slots[pos];
      if (slot.index == kEmpty || KeyOf(EntryAt(slot.index)) == key) {
        return pos;
      }
    }
  }

  char* Find(int64_t key, uint64_t hash) const {
    const Slot& slot = slots[FindSlot(key, hash)];
    return slot.index == kEmpty ? nullptr : EntryAt(slot.index);
  }

  // Inserts |key| (absent; its probe sequence ends at empty slot |pos|),
  // growing first if needed. Returns the new entry with its id set.
  char* Insert(int64_t key, uint64_t hash, uint64_t pos) {
    if (uint64_t(size + 1) * kMaxLoadDenominator >
        (mask + 1) * kMaxLoadNumerator) {
      Rehash((mask + 1) * 2);
      pos = FindSlot(key, hash);
    }
    const uint32_t index = AllocateIndex();
    slots[pos] = Slot{Fingerprint(hash), index};
    ++size;
    char* entry = EntryAt(index);
    std::memcpy(entry, &key, sizeof(key));
    return entry;
  }

  void Place(Slot slot) {
    uint64_t pos = slot.fingerprint & mask;
    while (slots[pos].index != kEmpty) pos = (pos + 1) & mask;
    slots[pos] = slot;
  }

  void Rehash(uint64_t capacity) {
    std::unique_ptr<Slot[]> old = std::move(slots);
    const uint64_t old_capacity = mask + 1;
    slots.reset(new Slot[capacity]);
    std::fill(slots.get(), slots.get() + capacity, Slot{0, kEmpty});
    mask = capacity - 1;
    for (uint64_t i = 0; i < old_capacity; ++i) {
      if (old[i].index != kEmpty) Place(old[i]);
    }
  }

  // Removes the slot at |pos| (freeing its entry) and shifts later members
  // of its cluster back, so probe sequences stay unbroken without
  // tombstones.
  void EraseAt(uint64_t pos) {
    free_indices.push_back(slots[pos].index);
    uint64_t hole = pos;
    for (uint64_t i = (pos + 1) & mask; slots[i].index != kEmpty;
         i = (i + 1) & mask) {
      const uint64_t home = slots[i].fingerprint & mask;
      const bool can_fill_hole = ((i - home) & mask) >= ((i - hole) & mask);
      if (can_fill_hole) {
        slots[hole] = slots[i];
        hole = i;
      }
    }
    slots[hole].index = kEmpty;
    --size;
  }
};

// Ids of one chunk, ordered by shard (stably), with their hashes and the
// entries the pipeline found for them.
class EmbeddingHashTable::Scratch {
 public:
  void Group(const int64_t* ids, int n) {
    int counts[kNumShards] = {};
    for (int i = 0; i < n; ++i) {
      unsorted_[i] = Mix(ids[i]);
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
  void set_candidate(int pos, char* entry, bool found) {
    entry_[pos] = entry;
    found_[pos] = found;
  }
  char* entry(int pos) const { return entry_[pos]; }
  bool found(int pos) const { return found_[pos]; }

 private:
  int begin_[kNumShards + 1];
  uint64_t unsorted_[kChunk];
  uint64_t hash_[kChunk];
  uint16_t index_[kChunk];
  char* entry_[kChunk];
  bool found_[kChunk];
};

EmbeddingHashTable::EmbeddingHashTable(
    std::unique_ptr<EntryAccessor> accessor,
    const SlotExpireTimeConfig& expire_config)
    : accessor_(std::move(accessor)),
      dim_(accessor_->DimSize()),
      stride_(kPayloadOffset + accessor_->SizeBytes()),
      lookup_bytes_(accessor_->serving()
                        ? stride_
                        : kPayloadOffset + int64_t{dim_} * sizeof(float)),
      expire_times_(expire_config),
      shards_(new Shard[kNumShards]) {}

EmbeddingHashTable::~EmbeddingHashTable() = default;

Status EmbeddingHashTable::Create(const EmbeddingHashTableConfig& config,
                                  uint64_t seed,
                                  std::unique_ptr<EmbeddingHashTable>* table) {
  std::unique_ptr<EntryAccessor> accessor;
  MONOLITH_RETURN_IF_ERROR(
      EntryAccessor::Create(config.entry_config(), &accessor));
  std::unique_ptr<EmbeddingHashTable> result(new EmbeddingHashTable(
      std::move(accessor), config.slot_expire_time_config()));
  result->skip_zero_embedding_ = config.skip_zero_embedding();
  const uint64_t capacity =
      CapacityFor((config.initial_capacity() + kNumShards - 1) / kNumShards);
  RandomEngine seeder(seed);
  for (int s = 0; s < kNumShards; ++s) {
    result->shards_[s].Init(result->stride_, capacity);
    result->shards_[s].rng = RandomEngine(seeder());
  }
  *table = std::move(result);
  return Status::OK();
}

// Runs the ids of each chunk shard by shard, under the shard's lock, in
// three tight passes over the shard's ids so that their independent cache
// misses overlap: (1) prefetch every id's bucket; (2) probe each up to the
// first slot with its fingerprint or an empty one, and prefetch that entry
// (in exclusive mode an id whose probe ends empty is inserted here);
// (3) confirm the id in the entry (a fingerprint shared with another id,
// about one in 2^32, falls back to a full probe) and call
// |visit(index, entry, found)| in the ids' order.
template <bool kExclusive, typename Visit>
void EmbeddingHashTable::RunPipeline(const int64_t* ids, int64_t n,
                                     Scratch* scratch, Visit visit) const {
  for (int64_t base = 0; base < n; base += kChunk) {
    const int m = static_cast<int>(std::min<int64_t>(kChunk, n - base));
    scratch->Group(ids + base, m);
    for (int s = 0; s < kNumShards; ++s) {
      const int begin = scratch->begin(s), end = scratch->end(s);
      if (begin == end) continue;
      Shard& shard = shards_[s];
      if (kExclusive) {
        shard.mu.lock();
      } else {
        shard.mu.lock_shared();
      }
      for (int p = begin; p < end; ++p) shard.PrefetchBucket(scratch->hash(p));
      for (int p = begin; p < end; ++p) {
        const uint64_t hash = scratch->hash(p);
        const uint32_t fingerprint = Fingerprint(hash);
        const uint64_t pos = shard.Probe(fingerprint, fingerprint & shard.mask);
        char* entry = nullptr;
        bool found = false;
        if (shard.slots[pos].index != kEmpty) {
          entry = shard.EntryAt(shard.slots[pos].index);
          found = true;
          // Readers need the id and values, writers the whole entry.
          const int64_t bytes = kExclusive ? stride_ : lookup_bytes_;
          for (int64_t b = 0; b < bytes; b += 64) Prefetch(entry + b);
        } else if (kExclusive) {
          entry = InsertNew(&shard, ids[base + scratch->index(p)], hash, pos);
        }
        scratch->set_candidate(p, entry, found);
      }
      for (int p = begin; p < end; ++p) {
        const int64_t index = base + scratch->index(p);
        char* entry = scratch->entry(p);
        bool found = scratch->found(p);
        if (found && KeyOf(entry) != ids[index]) {
          // Another id with the same fingerprint: probe in full.
          const uint64_t hash = scratch->hash(p);
          entry = shard.Find(ids[index], hash);
          found = entry != nullptr;
          if (kExclusive && !found) {
            entry = InsertNew(&shard, ids[index], hash,
                              shard.FindSlot(ids[index], hash));
          }
        }
        visit(index, entry, found);
      }
      if (kExclusive) {
        shard.mu.unlock();
      } else {
        shard.mu.unlock_shared();
      }
    }
  }
}

char* EmbeddingHashTable::InsertNew(Shard* shard, int64_t id, uint64_t hash,
                                    uint64_t pos) const {
  char* entry = shard->Insert(id, hash, pos);
  SetTimestamp(entry, 0);
  accessor_->Init(Payload(entry), &shard->rng);
  return entry;
}

template <typename Fn>
void EmbeddingHashTable::ForEachFound(const int64_t* ids, int64_t n,
                                      Fn fn) const {
  Scratch scratch;
  RunPipeline<false>(ids, n, &scratch,
                     [&](int64_t index, const char* entry, bool found) {
                       fn(index, found ? entry : nullptr);
                     });
}

template <typename Fn>
void EmbeddingHashTable::ForEachUpserted(const int64_t* ids, int64_t n,
                                         Fn fn) {
  Scratch scratch;
  RunPipeline<true>(ids, n, &scratch,
                    [&](int64_t index, char* entry, bool found) {
                      fn(index, entry, !found);
                    });
}

template <int kDim>
int64_t EmbeddingHashTable::LookupValues(const int64_t* ids, int64_t n,
                                         float* embeddings) const {
  // kDim > 0: TRAINING entries of that dim, which start with their fp32
  // values; a compile-time size makes the copy a few vector moves.
  // kDim == 0: any entry, decoded by the accessor.
  const int dim = kDim > 0 ? kDim : dim_;
  int64_t hits = 0;
  ForEachFound(ids, n, [&](int64_t i, const char* entry) {
    float* out = embeddings + i * dim;
    if (entry == nullptr) {
      std::memset(out, 0, sizeof(float) * dim);
      return;
    }
    ++hits;
    if (kDim > 0) {
      std::memcpy(out, Payload(entry), sizeof(float) * kDim);
    } else {
      accessor_->Fill(Payload(entry), out);
    }
  });
  return hits;
}

int64_t EmbeddingHashTable::BatchLookup(const int64_t* ids, int64_t n,
                                        float* embeddings) const {
  if (!accessor_->serving()) {
    switch (dim_) {
      case 8:
        return LookupValues<8>(ids, n, embeddings);
      case 16:
        return LookupValues<16>(ids, n, embeddings);
      case 32:
        return LookupValues<32>(ids, n, embeddings);
      case 64:
        return LookupValues<64>(ids, n, embeddings);
    }
  }
  return LookupValues<0>(ids, n, embeddings);
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
  const uint64_t pos = shard.FindSlot(id, hash);
  if (shard.slots[pos].index == kEmpty) return false;
  shard.EraseAt(pos);
  return true;
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
      if (slot.index == kEmpty) continue;
      const char* entry = shard.EntryAt(slot.index);
      if (IsExpired(KeyOf(entry), GetTimestamp(entry), now)) {
        shard.free_indices.push_back(slot.index);
        ++evicted;
      } else {
        kept.push_back(slot);
      }
    }
    if (kept.size() == static_cast<size_t>(shard.size)) continue;
    std::fill(shard.slots.get(), shard.slots.get() + shard.mask + 1,
              Slot{0, kEmpty});
    for (const Slot& slot : kept) shard.Place(slot);
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
    const std::function<Status(const EntryDump&)>& write) const {
  if (num_shards <= 0 || shard < 0 || shard >= num_shards) {
    return InvalidArgumentError("dump shard " + std::to_string(shard) +
                                " of " + std::to_string(num_shards) +
                                " is out of range");
  }
  // Dump shard of an id: its internal shard modulo num_shards when that
  // splits the work evenly enough, else its hash modulo num_shards.
  const bool by_internal_shard = num_shards <= kNumShards;
  std::vector<char> copies;
  EntryDump dump;
  for (int s = 0; s < kNumShards; ++s) {
    if (by_internal_shard && s % num_shards != shard) continue;
    copies.clear();
    {
      const Shard& internal = shards_[s];
      std::shared_lock<std::shared_mutex> lock(internal.mu);
      for (uint64_t i = 0; i <= internal.mask; ++i) {
        const Slot& slot = internal.slots[i];
        if (slot.index == kEmpty) continue;
        const char* entry = internal.EntryAt(slot.index);
        if (!by_internal_shard &&
            static_cast<int>(Mix(KeyOf(entry)) % num_shards) != shard) {
          continue;
        }
        copies.insert(copies.end(), entry, entry + stride_);
      }
    }
    const size_t count = copies.size() / stride_;
    for (size_t k = 0; k < count; ++k) {
      const char* entry = copies.data() + k * stride_;
      const int64_t id = KeyOf(entry);
      const int64_t update_time = GetTimestamp(entry);
      if (now > 0 && IsExpired(id, update_time, now)) continue;
      // One message for every entry: Clear keeps its allocations.
      dump.Clear();
      dump.set_id(id);
      accessor_->Save(Payload(entry), &dump);
      dump.set_last_update_ts_sec(update_time);
      MONOLITH_RETURN_IF_ERROR(write(dump));
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
    std::memcpy(entry + kTimestampOffset, scratch.data() + kTimestampOffset,
                stride_ - kTimestampOffset);
  });
  return Status::OK();
}

}  // namespace hash_table
}  // namespace monolith
