// A concurrent, collisionless embedding hash table: int64 id -> entry
// (embedding floats + optimizer state, laid out by EntryAccessor).
//
// Design (see docs/hash_table.md#engine-design):
// * 64 shards chosen by the top bits of a 64-bit mix of the id; each shard is
//   an open-addressing table (linear probing, at most 3/4 full,
//   backward-shift deletion, no reserved key values) of 16-byte slots
//   {id, entry index, last update time}, with its own reader-writer lock
//   and its own growth, so a rehash pauses only that shard and never reads
//   an entry.
// * Entries (the accessor's payload: values, then optimizer state) live in
//   per-shard arenas of cache-line-aligned blocks (doubling up to 16 KiB),
//   so inserting 1M ids is not 1M mallocs, growth moves slots, never
//   entries, and a lookup touches one slot and the value lines of one
//   entry.
// * Once a shard holds thousands of entries, its slot arrays and new arena
//   blocks come from the table's HugePagePool (transparent huge pages), so
//   the random accesses of lookups rarely miss the TLB; the environment
//   variable MONOLITH_HASH_TABLE_HUGE_PAGES=0 keeps new tables on the heap.
// * Batch calls group ids by shard (stable, 2048 at a time), take each
//   shard's lock once per chunk, and pipeline probes across the chunk:
//   every bucket is prefetched, then every probe prefetches its entry, then
//   entries are read or written, so independent cache misses overlap.
// * Readers share a shard; writers (optimize, assign, insert) hold it alone,
//   one shard at a time, so training proceeds on all other shards while one
//   shard is saved. A shard grows by building its bigger slot array while
//   readers go on, and holds them off only to swap it in.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_EMBEDDING_HASH_TABLE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_EMBEDDING_HASH_TABLE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/entry_accessor.h"
#include "monolith/native_training/runtime/hash_table/slot_expire_times.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/hash_table/wire_writer.h"

namespace monolith {
namespace hash_table {

class HugePagePool;
namespace internal {
struct TableShard;
}  // namespace internal

// The largest initial_capacity a config may ask for (2^34 entries): slots
// for it are reserved up front.
constexpr uint64_t kMaxInitialCapacity = uint64_t{1} << 34;

class EmbeddingHashTable {
 public:
  // Save splits the table into up to this many dump shards by internal
  // shard; more dump shards split internal shards by id hash, each
  // scanning its internal shard's slots, so a whole save reads the slots
  // about num_shards / 64 times.
  static constexpr int kMaxCheapDumpShards = 64;
  // Save encodes an internal shard's records in chunks of about this many
  // bytes, each under the shard's read lock.
  static constexpr size_t kSaveChunkBytes = size_t{4} << 20;

  // A new entry's initial values follow |seed| and its id alone
  // (EntryAccessor::Init, as on GPU tables); |seed| also picks the hash
  // seed.
  // InvalidArgument for a bad entry config (see EntryAccessor::Create) or an
  // initial_capacity above kMaxInitialCapacity; ResourceExhausted when the
  // slots it reserves cannot be allocated.
  static Status Create(const EmbeddingHashTableConfig& config, uint64_t seed,
                       std::unique_ptr<EmbeddingHashTable>* table);
  // InvalidArgument for an initial_capacity above kMaxInitialCapacity (CPU
  // and GPU tables).
  static Status CheckInitialCapacity(uint64_t initial_capacity);
  // The bytes of the slot arrays Create reserves (and writes) up front for
  // |initial_capacity| entries (at most kMaxInitialCapacity), before any id
  // is inserted.
  static uint64_t InitialSlotBytes(uint64_t initial_capacity);
  ~EmbeddingHashTable();
  EmbeddingHashTable(const EmbeddingHashTable&) = delete;
  EmbeddingHashTable& operator=(const EmbeddingHashTable&) = delete;

  const EntryAccessor& accessor() const { return *accessor_; }
  int DimSize() const { return dim_; }
  int SliceSize() const { return accessor_->SliceSize(); }

  // Writes the embeddings of |ids| to |embeddings| (n * DimSize() floats);
  // a missing id gets zeros and is not inserted. Returns the hit count.
  // Batches of more than one id allocate their scratch: out of memory,
  // lookups throw std::bad_alloc too (and write nothing).
  int64_t BatchLookup(const int64_t* ids, int64_t n, float* embeddings) const;
  int64_t Lookup(int64_t id, float* embedding) const {
    return BatchLookup(&id, 1, embedding);
  }
  // BatchLookup with every value as float16 bits in |halfs| (n * DimSize()),
  // as FloatsToHalfsSaturating (compressor/fp16_batch.h) converts them:
  // what a PS sends a worker that asked for float16.
  int64_t BatchLookupHalfs(const int64_t* ids, int64_t n,
                           uint16_t* halfs) const;
  // Full entries (id, num, optimizer state, update time) of |ids|; a
  // missing id gets an empty EntryDump (as the original's, which serializes
  // to ""). Out of memory (std::bad_alloc) leaves |entries| unsafe to clear
  // or destroy (protobuf is not exception-safe): the kernels use
  // BatchLookupRecords.
  void BatchLookupEntry(const int64_t* ids, int64_t n,
                        EntryDump* entries) const;
  // The same serialized (the records Save writes, the bytes protobuf
  // writes for those EntryDumps), without building messages, which
  // protobuf leaves unsafe to destroy when it runs out of memory halfway
  // (see RecordScratch): appended to |out|, record i at [spans[i].first,
  // spans[i].second) of it (|spans| is replaced); a missing id's is empty.
  void BatchLookupRecords(
      const int64_t* ids, int64_t n, WireWriter* out,
      std::vector<std::pair<size_t, size_t>>* spans) const;

  // Whether the writers below may insert ids[index], which is not in the
  // table: called while the update holds the id's shard against other
  // writers but not yet readers (lookups go on while it waits), once per
  // occurrence of an absent id (an occurrence it refused leaves the id
  // absent, so the next one asks again). False skips that occurrence:
  // nothing of it is written. Empty: every id may be inserted. It must not
  // call this table's writers, Clear, Evict or Save (the shard's writer
  // lock is held: they would wait for it forever); lookups are fine.
  using AdmitFn = std::function<bool(int64_t index)>;

  // The writers below insert missing ids (initializer first) and stamp
  // |update_time| (seconds; StampedUpdateTime: 0, or one more than a day
  // past the host's clock, is stamped as the table's time, if it has one) on
  // every entry they touch; with |admit|, only the missing ids it admits. Out
  // of memory, every call that allocates throws std::bad_alloc: some of a
  // batch's ids are written, the others are not (large batches take ids
  // present before absent ones, a run of 2,048 at a time, so which is not
  // the batch's order), and the table stays whole (Clear and Save then
  // change nothing).
  // Sets embeddings to |values| (n * DimSize()). With skip_zero_embedding an
  // all-zero vector erases the id instead.
  void Assign(const int64_t* ids, int64_t n, const float* values,
              int64_t update_time, const AdmitFn& admit = {});
  // Adds |values| (n * DimSize()) to the embeddings.
  void AssignAdd(const int64_t* ids, int64_t n, const float* values,
                 int64_t update_time, const AdmitFn& admit = {});
  // Re-initializes entries; status[i] = 1 if ids[i] existed, 0 if inserted.
  void Reinitialize(const int64_t* ids, int64_t n, int* status,
                    int64_t update_time);
  // Applies the optimizers: |grads| holds n * DimSize() floats,
  // |learning_rates| SliceSize() floats. Repeated ids are applied in order.
  // FailedPrecondition on a SERVING table.
  Status BatchOptimize(const int64_t* ids, int64_t n, const float* grads,
                       const float* learning_rates, int64_t update_time,
                       int64_t global_step, const AdmitFn& admit = {});

  // What Evict removed.
  struct EvictStats {
    int64_t evicted = 0;
    // Entries removed per slot (SlotOfId: bits 48-62), ascending by slot.
    std::map<uint32_t, int64_t> evicted_by_slot;
    // The walk ended before the last shard (a Clear, or |stop|).
    bool stopped = false;
  };
  // Drops entries whose last update is at least their slot's expire time
  // before |now|, one internal shard at a time: each shard is locked only
  // while it is evicted, so lookups and updates of the others go on. An
  // evicted shard's slot array shrinks to fit what is left (not below the
  // huge-page threshold once it is on huge pages), its surviving entries
  // move to the front of its arena, and the memory of the arena blocks
  // past them is given back to the system (MADV_DONTNEED); later inserts
  // reuse those blocks. SERVING tables are never evicted, nor anything at
  // |now| <= 0 (a table no write gave a time; Save skips nothing then).
  // Returns how many entries were dropped; |stats| (optional) says of
  // which slots.
  int64_t Evict(int64_t now, EvictStats* stats = nullptr);
  // Evict at the table's own "now" (ExpiryNow(LatestUpdateTime()): its
  // latest update time, not past the host's clock; set in *now). A
  // Clear meanwhile (a restore, which replaces the entries and their time)
  // stops it before the next shard: the restored entries are not measured
  // against the time of the entries they replaced. So does |stop| (may be
  // null) once true: an owner shutting down waits for one shard, not for a
  // pass over the whole table.
  int64_t EvictAtLatestUpdateTime(int64_t* now, EvictStats* stats = nullptr,
                                  const std::atomic<bool>* stop = nullptr);
  // True if an entry last updated at |update_time| has expired at |now|.
  bool IsExpired(int64_t id, int64_t update_time, int64_t now) const {
    return expire_times_.IsExpired(id, update_time, now);
  }

  // The latest update time (seconds) of any write of one id or more, or
  // restored entry, since the table was created or last cleared, leaving
  // out times that do not advance a table's time (AdvancesTableTime: past
  // the range, or more than a day ahead of the host's clock): with ExpiryNow,
  // the "now" that saves and evictions measure expiry against. The time of
  // the data stream: a write counts even where admission or a full shard
  // took none of its ids (the write notes it before taking its locks).
  int64_t LatestUpdateTime() const {
    return latest_update_time_.load(std::memory_order_relaxed);
  }

  bool Contains(int64_t id) const;
  // Removes |id| (its entry is reused by a later insert); false if absent.
  bool Erase(int64_t id);
  int64_t Size() const;
  // Empties the table (and resets LatestUpdateTime() and the accessor's
  // lookup state, see EntryAccessor::ResetLookupState), holding every
  // shard's lock at once (all other calls wait), so its huge-page blocks
  // can be released together.
  void Clear();
  // Bytes the table holds for slots and entries: its heap allocations
  // (arena blocks readied for coming entries included, those an eviction
  // gave back not) and the huge-page regions in use.
  int64_t MemoryBytes() const;
  // The part of it on huge pages (0 when the table is small, or created
  // with MONOLITH_HASH_TABLE_HUGE_PAGES=0 in the environment).
  int64_t HugePageBytes() const;
  // The longest one shard's rehash (building its grown slot array, while
  // lookups of that shard go on: they wait only for the pointer swap; its
  // other writers wait for the rehash) has taken since the table was
  // created or last cleared, in nanoseconds.
  int64_t LongestGrowthNanos() const;
  std::string DebugString() const;
  // Lowers the entries a shard takes (kMaxShardEntries): a full shard takes
  // no new ids, as if the filter refused them (their writes are dropped,
  // lookups read zeros), never reusing a live entry. Call before any write.
  void LimitShardEntriesForTesting(uint32_t limit);
  // The internal shard (of 64) that holds |id|.
  int ShardOfIdForTesting(int64_t id) const;
  // How many writers wait for internal shard |shard|'s writer lock.
  int ShardWriterWaitersForTesting(int shard) const;
  // Lowers Save's chunk size (kSaveChunkBytes; at least 1: a chunk holds
  // one record or more). Call before any save.
  void SetSaveChunkBytesForTesting(size_t bytes) {
    save_chunk_bytes_ = bytes > 0 ? bytes : 1;
  }

  // One entry as Save hands it out: its id, last update time (seconds) and
  // its EntryDump (id, num, opt, last_update_ts_sec) serialized, the
  // record a checkpoint stores. |dump| points into a reused buffer: copy
  // what you keep.
  struct SavedEntry {
    int64_t id;
    int64_t update_time;
    const char* dump;
    size_t dump_size;
  };
  // Calls |write| with every entry of dump shard |shard| of |num_shards|
  // (entries are split by id hash; saving all shards, in any order or in
  // parallel, writes every entry exactly once). Each of the table's
  // internal shards is listed under its writer lock (16 bytes an entry;
  // readers go on), then its entries are encoded in chunks of about
  // kSaveChunkBytes, each under the read lock and handed to |write| after
  // the lock is released: each entry is consistent, writers wait at most
  // for one shard's listing (a scan of its slots) or one chunk's encoding,
  // readers for one chunk's, never for |write|, and a call holds one chunk
  // of records, whatever the table's size. An entry is saved if it was in
  // the table when its shard was listed and still is when its chunk is
  // encoded, with its values and update time of that moment. With |now| > 0
  // entries expired at |now| are skipped, by |expire_times| when given,
  // else by the table's own. Stops at the first error of |write|.
  Status Save(int shard, int num_shards, int64_t now,
              const std::function<Status(const SavedEntry&)>& write,
              const SlotExpireTimes* expire_times = nullptr) const;

  // Inserts or overwrites the entry |dump| describes (id, num, optimizer
  // state, update time). With skip_zero_embedding an all-zero entry is
  // skipped. InvalidArgument if the dump does not fit the table's entries.
  Status Restore(const EntryDump& dump);
  // Restore of one serialized EntryDump (a checkpoint record). Records in
  // the layout Save writes (protobuf's own: id, num, opt, time) are read
  // without parsing: by TRAINING tables when the entry's layout allows
  // (EntryAccessor::ReadDump), by SERVING tables always (they take the
  // values and skip the optimizer state). Others are parsed into |scratch|.
  // Sets |update_time| to the record's. DataLoss if the record is not an
  // EntryDump. kValuesOnly: the record's optimizer state is not read
  // (the entry's starts as a new entry's).
  Status RestoreRecord(const char* record, size_t size, RecordScratch* scratch,
                       int64_t* update_time,
                       RestoredState state = RestoredState::kAll);
  // Whether RestoreRecord would take |record|, changing nothing: OK, or
  // the error RestoreRecord would return (DataLoss: not an EntryDump;
  // InvalidArgument: it does not fit the table's entries).
  Status CheckRecord(const char* record, size_t size, RecordScratch* scratch,
                     RestoredState state = RestoredState::kAll) const;

  // RestoreRecord for many records: Add decodes a record into the batch
  // (its errors are RestoreRecord's, and a record that fails is not
  // queued); Flush writes the queued ones as a batch call writes ids,
  // grouped by shard through the prefetching pipeline, one hold of a
  // shard's locks per batch where RestoreRecord takes them per record. A
  // batch holds 2,048 records, or fewer of large entries (1 MiB). A record
  // is in the table once flushed (Add flushes a full batch); records of
  // one id are written in the order added. One batch per thread; the
  // table must outlive it.
  class RestoreBatch {
   public:
    RestoreBatch(EmbeddingHashTable* table, RestoredState state);
    // Sets |update_time| to the record's, as RestoreRecord. Once the batch
    // is full, Flush's status.
    Status Add(const char* record, size_t size, RecordScratch* scratch,
               int64_t* update_time);
    // ResourceExhausted, after writing the others, if a shard holds its
    // most entries (LimitShardEntriesForTesting) and some of the queued
    // ids are new to it.
    Status Flush();

   private:
    static constexpr int64_t kRestoreBatchBytes = 1 << 20;

    EmbeddingHashTable* table_;
    RestoredState state_;
    size_t capacity_;  // records
    std::vector<int64_t> ids_;
    std::vector<int64_t> times_;
    std::vector<char> entries_;  // stride_ bytes each
  };

 private:
  class Scratch;
  // An |ahead| of RunPipeline that prefetches nothing.
  struct NoPrefetch {
    void operator()(int64_t) const {}
  };

  EmbeddingHashTable(std::unique_ptr<EntryAccessor> accessor,
                     const SlotExpireTimeConfig& expire_config);

  // Visits every ids[index] of |table| grouped by shard under the shard's
  // lock (see the .cc). Lookup mode (a const Table): shared lock, absent
  // ids are visited with null entries. Exclusive mode (kExclusive, a
  // mutable Table): absent ids are inserted and initialized before any id
  // of their shard is visited, if |admit| (may be empty) admits them, else
  // not visited, and every visited id is stamped with |update_time|. For a
  // batch of more than one id, |ahead(index)| runs for each id a pass
  // before its visit would, to prefetch the memory the visit touches
  // besides the entry (the id's row of values or of the output). Without
  // kInitNew new entries are not initialized: |visit| writes them whole
  // (and must not throw).
  template <bool kExclusive, typename Table, typename Visit,
            typename Ahead = NoPrefetch, bool kInitNew = true>
  static void RunPipeline(Table* table, const int64_t* ids, int64_t n,
                          int64_t update_time, Visit visit,
                          const AdmitFn& admit = {}, Ahead ahead = {});
  // Whether Restore skips |dump| (an all-zero entry, skip_zero_embedding).
  bool SkipsDump(const EntryDump& dump) const;
  // A checkpoint record decoded (DecodeRecord).
  struct DecodedRecord {
    int64_t id = 0;
    int64_t update_time = 0;
    bool skipped = false;  // an all-zero entry, skip_zero_embedding
  };
  // Decodes |record| into |entry| (stride_ bytes; unset when skipped): read
  // in place where its layout allows (EntryAccessor::ReadRecord), else
  // parsed into |scratch| (DataLoss if it is not an EntryDump; kValuesOnly:
  // without its optimizer state). RestoreRecord's errors.
  Status DecodeRecord(const char* record, size_t size, char* entry,
                      RecordScratch* scratch, RestoredState state,
                      DecodedRecord* decoded) const;
  // Inserts |id| (absent, its probe ending at empty slot |pos|, room
  // reserved), stamped |timestamp| (an internal::Timestamp), and
  // initializes its entry. Caller holds the shard exclusively.
  char* InsertNew(internal::TableShard* shard, int64_t id, uint64_t pos,
                  uint32_t timestamp);
  // fn(index, slot, entry) for every id; slot and entry are null when
  // the id is absent. |ahead| as RunPipeline's.
  template <typename Fn, typename Ahead = NoPrefetch>
  void ForEachFound(const int64_t* ids, int64_t n, Fn fn,
                    Ahead ahead = {}) const;
  // BatchLookup (Out float) or BatchLookupHalfs (Out uint16_t).
  template <typename Out>
  int64_t LookupRows(const int64_t* ids, int64_t n, Out* out) const;
  template <int kDim, typename Out>
  int64_t LookupValues(const int64_t* ids, int64_t n, Out* out) const;
  // Takes ids 0..n-1 (id_at(p), whose MixId is hash_at(p)) through a
  // rolling pipeline (see the .cc): visit(p, slot, entry) in order of p,
  // slot and entry null for an absent id. The caller holds the lock of
  // every shard the ids fall in (shared for a const Table, exclusive
  // otherwise, where the entry's whole stride is prefetched for writing).
  template <bool kExclusive, typename Table, typename IdAt, typename HashAt,
            typename Visit>
  static void StreamIds(Table* table, int64_t n, IdAt id_at, HashAt hash_at,
                        int64_t entry_bytes, Visit visit);
  // LookupValues<kDim> (kDim > 0) of a large batch: every shard read-locked
  // for a run of ids, ids taken in order through StreamIds.
  template <int kDim, typename Out>
  int64_t LookupValuesStreamed(const int64_t* ids, int64_t n, Out* out) const;
  // One run of LookupValuesStreamed, under one hold of every shard's lock.
  template <int kDim, typename Out>
  int64_t LookupRunStreamed(const int64_t* ids, int64_t n, Out* out) const;
  // Evict's walk; with |clears|, it stops at the first shard it locks after
  // clears_ moved past *clears, and with |stop| before the first shard
  // after *stop turned true.
  int64_t EvictShards(int64_t now, EvictStats* stats, const uint64_t* clears,
                      const std::atomic<bool>* stop);
  // fn(index, entry, inserted) for every id, inserting absent ones that
  // |admit| admits (all when it is empty), each stamped with |update_time|.
  // Large batches stream (UpsertStreamed) while no other writer runs.
  // Ids visited out of order (grouped by shard) have ahead(index) run a
  // pass before fn: it prefetches what fn reads (the id's row of values).
  template <typename Fn, typename Ahead = NoPrefetch>
  void ForEachUpserted(const int64_t* ids, int64_t n, int64_t update_time,
                       Fn fn, const AdmitFn& admit = {}, Ahead ahead = {});
  // Whether a writer waits for some shard's write_mu.
  bool AnyShardWriterWaits() const;
  // ForEachUpserted of a large batch by its only writer: ids streamed
  // (StreamIds) in runs under an exclusive hold of every shard, each run's
  // absent ids then inserted on the grouped path (RunPipeline); the rest
  // of the batch goes that way too once another writer comes, holds a
  // shard or waits for one, or where a run was mostly new ids.
  template <typename Fn, typename Ahead>
  void UpsertStreamed(const int64_t* ids, int64_t n, int64_t update_time,
                      Fn fn, const AdmitFn& admit, Ahead ahead);
  // Inserts or overwrites |id| with |entry| (stride_ bytes) stamped
  // |update_time|. Caller holds a ShardWriteLock on |shard| with room for
  // one more entry. ResourceExhausted, changing nothing, for a new id in a
  // full shard (Full()).
  Status PutLocked(internal::TableShard* shard, int64_t id, uint64_t hash,
                   const char* entry, int64_t update_time);

  // Raises LatestUpdateTime() to |update_time| where it advances a table's
  // time (AdvancesTableTime).
  void NoteUpdate(int64_t update_time);

  std::unique_ptr<EntryAccessor> accessor_;
  std::atomic<int64_t> latest_update_time_{0};
  // Clear() calls so far (raised while every shard is locked).
  std::atomic<uint64_t> clears_{0};
  // Writers in ForEachUpserted: a large update streams only while it is
  // the only one (UpsertStreamed).
  std::atomic<int> writers_{0};
  int dim_ = 0;
  int64_t stride_ = 0;  // bytes per entry: the accessor's payload
  int64_t lookup_bytes_ = 0;  // leading bytes of an entry a lookup reads
  bool skip_zero_embedding_ = false;
  // MixId(id, hash_seed_) picks an id's shard and slot; drawn from Create's
  // seed, so crafted ids cannot pile up in one shard's probe sequence.
  uint64_t hash_seed_ = 0;
  // Create's seed: a new entry's initial values are drawn from it and its
  // id alone (EntryAccessor::Init).
  uint64_t init_seed_ = 0;
  size_t save_chunk_bytes_ = kSaveChunkBytes;
  SlotExpireTimes expire_times_;
  // Declared before the shards, which return their memory to it.
  std::unique_ptr<HugePagePool> pool_;
  std::unique_ptr<internal::TableShard[]> shards_;
};

// The id of a checkpoint record (a serialized EntryDump), without
// restoring it: read in place (ReadEntryDumpId, wire_reader.h) when the
// wire walk vouches for the record, else parsed into |scratch|. DataLoss if
// the record is not an EntryDump.
Status RecordId(const char* record, size_t size, RecordScratch* scratch,
                int64_t* id);

// Sums the gradients (|dim| floats each) of repeated ids, so each id can be
// optimized once with its total gradient: |unique_ids| gets every id once,
// in first-seen order, and |summed| its summed gradient.
// |counts| (optional): how many times each unique id occurred. |n| must be
// below 2^31 (a fused segment's size is an int32).
void SumDuplicateIds(const int64_t* ids, int64_t n, const float* grads,
                     int dim, std::vector<int64_t>* unique_ids,
                     std::vector<float>* summed,
                     std::vector<uint32_t>* counts = nullptr);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_EMBEDDING_HASH_TABLE_H_
