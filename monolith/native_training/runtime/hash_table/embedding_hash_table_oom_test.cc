// Out of memory in the middle of every table call: each test runs one call
// with the calling thread's allocations failing (std::bad_alloc) after 0,
// 1, 2, ... successes, until the call completes, and after each failure
// checks that the table is whole: every entry holds what it held before the
// call or what the call writes (a batch is not atomic: ids before the
// failure point are written), sizes agree with the entries, a save lists
// each entry once, no lock is left held (the next call would hang), and,
// under AddressSanitizer's leak check at exit, nothing is leaked. What the
// op kernels turn a std::bad_alloc into (ResourceExhausted) is tested with
// them; here, what the table is left as.
#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/huge_page_pool.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace {

// Allocations the calling thread may still make; negative: no limit.
thread_local int64_t allocations_left = -1;

void* Allocate(size_t bytes, size_t alignment) {
  if (allocations_left == 0) return nullptr;
  if (allocations_left > 0) --allocations_left;
  if (bytes == 0) bytes = 1;
  if (alignment <= alignof(std::max_align_t)) return std::malloc(bytes);
  void* p = nullptr;
  return posix_memalign(&p, alignment, bytes) == 0 ? p : nullptr;
}

void* AllocateOrThrow(size_t bytes, size_t alignment) {
  void* p = Allocate(bytes, alignment);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

// Every operator new of the process goes through the countdown.
void* operator new(size_t n) { return AllocateOrThrow(n, 0); }
void* operator new[](size_t n) { return AllocateOrThrow(n, 0); }
void* operator new(size_t n, std::align_val_t a) {
  return AllocateOrThrow(n, static_cast<size_t>(a));
}
void* operator new[](size_t n, std::align_val_t a) {
  return AllocateOrThrow(n, static_cast<size_t>(a));
}
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return Allocate(n, 0);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return Allocate(n, 0);
}
void* operator new(size_t n, std::align_val_t a,
                   const std::nothrow_t&) noexcept {
  return Allocate(n, static_cast<size_t>(a));
}
void* operator new[](size_t n, std::align_val_t a,
                     const std::nothrow_t&) noexcept {
  return Allocate(n, static_cast<size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t,
                     const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t,
                       const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace monolith {
namespace hash_table {
namespace {

constexpr int kDim = 4;
constexpr int64_t kTime = 1000 * 86400;  // day 1000, in seconds
// Entries of the base table: ~47 per shard, so that the calls' new ids
// grow most shards' slot arrays and arenas.
constexpr int64_t kOldIds = 3000;
constexpr int kMaxSweep = 20000;

// adagrad, zeros initializer; entries expire after a day. |serving|: fp16
// SERVING entries instead.
std::unique_ptr<EmbeddingHashTable> NewTable(bool serving = false) {
  EmbeddingHashTableConfig config;
  const bool parsed = google::protobuf::TextFormat::ParseFromString(
      serving ? "entry_config { entry_type: SERVING segments { dim_size: 4 "
                "comp_config { fp16 {} } } }"
              : "entry_config { segments { dim_size: 4 init_config { zeros {} "
                "} opt_config { adagrad { initial_accumulator_value: 0.1 } } "
                "} } slot_expire_time_config { default_expire_time: 1 }",
      &config);
  EXPECT_TRUE(parsed);
  std::unique_ptr<EmbeddingHashTable> table;
  const Status s = EmbeddingHashTable::Create(config, 7, &table);
  EXPECT_OK(s);
  return table;
}

int64_t OldId(int64_t i) { return 1000003 * i + 11; }
int64_t NewId(int64_t i) { return -(7919 * i + 5); }

std::vector<float> ValuesFor(const std::vector<int64_t>& ids, float scale) {
  std::vector<float> values;
  for (const int64_t id : ids) {
    for (int d = 0; d < kDim; ++d) {
      values.push_back(scale * static_cast<float>((id + d) % 97 + 1));
    }
  }
  return values;
}

// The base table: kOldIds ids, the first half stamped a week before the
// second (so that Evict at kTime drops them).
std::unique_ptr<EmbeddingHashTable> BaseTable(bool serving = false) {
  auto table = NewTable(serving);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < kOldIds; ++i) ids.push_back(OldId(i));
  const std::vector<float> values = ValuesFor(ids, 0.5f);
  const int64_t half = kOldIds / 2;
  table->Assign(ids.data(), half, values.data(), kTime - 7 * 86400);
  table->Assign(ids.data() + half, kOldIds - half, values.data() + half * kDim,
                kTime);
  return table;
}

// A batch of |old_ids| (at most kOldIds) ids of the base table, spread
// over it, and |new_ids| others, distinct (so that each id's entry is
// either as before the call or as after it), shuffled.
std::vector<int64_t> Batch(int64_t old_ids, int64_t new_ids) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < old_ids; ++i) {
    ids.push_back(OldId(i * kOldIds / old_ids));
  }
  for (int64_t i = 0; i < new_ids; ++i) ids.push_back(NewId(i));
  std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
  return ids;
}

// Every id's entry (values, optimizer state, update time) as a string;
// absent ids are missing.
std::map<int64_t, std::string> Entries(const EmbeddingHashTable& table,
                                       const std::vector<int64_t>& ids) {
  std::vector<EntryDump> dumps(ids.size());
  table.BatchLookupEntry(ids.data(), static_cast<int64_t>(ids.size()),
                         dumps.data());
  std::map<int64_t, std::string> entries;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!table.Contains(ids[i])) continue;
    entries[ids[i]] = dumps[i].SerializeAsString();
  }
  return entries;
}

// Runs |call| with |limit| allocations allowed; whether one failed (it
// threw std::bad_alloc).
bool FailsWithin(int limit, const std::function<void()>& call) {
  bool failed = false;
  allocations_left = limit;
  try {
    call();
  } catch (const std::bad_alloc&) {
    failed = true;
  }
  allocations_left = -1;
  return failed;
}

// Runs |call| on a base table once without a limit (what a whole call
// leaves), then once per allocation it makes, failing that allocation,
// and checks what each failure leaves (see the top of the file).
// |repeatable|: running the call again after a failure leaves what a whole
// call leaves (assign; not adds). |atomic|: a failed call changes nothing.
// |serving|: on a table of SERVING entries.
void Sweep(const std::vector<int64_t>& ids,
           const std::function<void(EmbeddingHashTable*)>& call,
           bool repeatable, bool atomic = false, bool serving = false) {
  std::vector<int64_t> all = ids;
  for (int64_t i = 0; i < kOldIds; ++i) all.push_back(OldId(i));
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  auto table = BaseTable(serving);
  const std::map<int64_t, std::string> before = Entries(*table, all);
  call(table.get());
  const std::map<int64_t, std::string> after = Entries(*table, all);

  int failures = 0;
  for (int limit = 0; limit < kMaxSweep; ++limit) {
    table = BaseTable(serving);
    if (!FailsWithin(limit, [&] { call(table.get()); })) break;
    ++failures;
    SCOPED_TRACE("allocation " + std::to_string(limit) + " failed");
    const std::map<int64_t, std::string> left = Entries(*table, all);
    if (atomic) {
      ASSERT_EQ(left, before) << "a failed call changed the table";
    }
    int64_t present = 0;
    for (const int64_t id : all) {
      const auto it = left.find(id);
      const auto was = before.find(id);
      const auto will = after.find(id);
      if (it == left.end()) {
        // Absent: it was, or the call drops it.
        ASSERT_TRUE(was == before.end() || will == after.end())
            << "id " << id << " was lost";
        continue;
      }
      ++present;
      const bool as_before = was != before.end() && it->second == was->second;
      const bool as_after = will != after.end() && it->second == will->second;
      ASSERT_TRUE(as_before || as_after)
          << "id " << id << " holds an entry neither before nor after the call";
    }
    ASSERT_EQ(table->Size(), present);
    // A save lists each entry once, as lookups see it.
    std::set<int64_t> saved;
    const Status s = table->Save(0, 1, 0, [&](const EmbeddingHashTable::SavedEntry& e) {
      EXPECT_TRUE(saved.insert(e.id).second) << "id " << e.id << " saved twice";
      EXPECT_EQ(std::string(e.dump, e.dump_size), left.at(e.id));
      return Status::OK();
    });
    ASSERT_OK(s);
    ASSERT_EQ(static_cast<int64_t>(saved.size()), present);
    // No lock left held, and the table takes the whole call.
    call(table.get());
    if (repeatable) {
      ASSERT_EQ(Entries(*table, all), after);
    }
  }
  EXPECT_GT(failures, 0) << "the call allocated nothing";
  EXPECT_LT(failures, kMaxSweep) << "the call never completed";
}

// Batches of fewer than 1,024 ids go grouped, larger ones streamed.
TEST(EmbeddingHashTableOomTest, GroupedAndStreamedAssign) {
  for (const auto& [old_ids, new_ids] :
       {std::pair<int64_t, int64_t>{300, 300}, {2500, 1500}}) {
    const std::vector<int64_t> ids = Batch(old_ids, new_ids);
    const std::vector<float> values = ValuesFor(ids, 2.0f);
    Sweep(ids, [&](EmbeddingHashTable* table) {
      table->Assign(ids.data(), static_cast<int64_t>(ids.size()),
                    values.data(), kTime + 1);
    }, /*repeatable=*/true);
  }
}

// A new SERVING entry is set to zeros after its slot is published, so that
// must not allocate: a failure there left the id holding the arena's bytes
// (an erased entry's values, or uninitialized memory).
TEST(EmbeddingHashTableOomTest, ServingAssignAfterErase) {
  const std::vector<int64_t> ids = Batch(300, 300);
  const std::vector<float> values = ValuesFor(ids, 2.0f);
  // Odd ones: none of the batch's (every tenth), so the call drops them.
  std::vector<int64_t> erased;
  for (int64_t i = 1; i < kOldIds; i += 2) erased.push_back(OldId(i));
  Sweep(ids, [&](EmbeddingHashTable* table) {
    for (const int64_t id : erased) table->Erase(id);
    table->Assign(ids.data(), static_cast<int64_t>(ids.size()),
                  values.data(), kTime + 1);
  }, /*repeatable=*/true, /*atomic=*/false, /*serving=*/true);
}

// A visit that allocates (an add to a SERVING segment wider than the 64
// floats its scratch holds on the stack) can fail between two ids of a
// shard: the shard's new entries are initialized and stamped before any
// visit, so none is left holding the arena's bytes (here an erased
// entry's 5s) or a time of 0 (which saves and eviction take for expired),
// and an entry's narrow segment is not added to before its wide one fails.
TEST(EmbeddingHashTableOomTest, FailedVisitLeavesNewEntriesInitialized) {
  constexpr int kWide = 96;
  EmbeddingHashTableConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      "entry_config { entry_type: SERVING segments { dim_size: 16 "
      "comp_config { fp32 {} } } segments { dim_size: 80 "
      "comp_config { fp32 {} } } }",
      &config));
  std::vector<int64_t> old_ids, erased, batch;
  for (int64_t i = 0; i < 600; ++i) {
    old_ids.push_back(OldId(i));
    (i % 2 == 0 ? batch : erased).push_back(OldId(i));
  }
  for (int64_t i = 0; i < 300; ++i) batch.push_back(NewId(i));
  std::shuffle(batch.begin(), batch.end(), std::mt19937(5));
  const std::vector<float> fives(old_ids.size() * kWide, 5.0f);
  const std::vector<float> ones(batch.size() * kWide, 1.0f);
  const auto all_equal = [](const std::vector<float>& row, float v) {
    return std::all_of(row.begin(), row.end(),
                       [v](float x) { return x == v; });
  };
  int failures = 0;
  for (int limit = 0; limit < kMaxSweep; ++limit) {
    std::unique_ptr<EmbeddingHashTable> table;
    ASSERT_OK(EmbeddingHashTable::Create(config, 7, &table));
    table->Assign(old_ids.data(), static_cast<int64_t>(old_ids.size()),
                  fives.data(), kTime);
    for (const int64_t id : erased) table->Erase(id);
    if (!FailsWithin(limit, [&] {
          table->AssignAdd(batch.data(), static_cast<int64_t>(batch.size()),
                           ones.data(), kTime + 1);
        })) {
      break;
    }
    ++failures;
    SCOPED_TRACE("allocation " + std::to_string(limit) + " failed");
    std::vector<float> row(kWide);
    for (const int64_t id : batch) {
      if (table->BatchLookup(&id, 1, row.data()) == 0) continue;
      // New ids: initialized (0) or added to (1); old ones: 5 or 6.
      const bool is_new = id < 0;
      ASSERT_TRUE(is_new ? all_equal(row, 0) || all_equal(row, 1)
                         : all_equal(row, 5) || all_equal(row, 6))
          << "id " << id << " holds " << row[0] << ", ..., " << row.back();
    }
    ASSERT_OK(
        table->Save(0, 1, 0, [&](const EmbeddingHashTable::SavedEntry& e) {
          EXPECT_EQ(e.update_time, e.id < 0 ? kTime + 1 : e.update_time)
              << "new id " << e.id;
          EXPECT_TRUE(e.update_time == kTime || e.update_time == kTime + 1)
              << "id " << e.id << " stamped " << e.update_time;
          return Status::OK();
        }));
  }
  EXPECT_GT(failures, 0) << "the call allocated nothing";
  EXPECT_LT(failures, kMaxSweep) << "the call never completed";
}

TEST(EmbeddingHashTableOomTest, GroupedAndStreamedOptimize) {
  for (const auto& [old_ids, new_ids] :
       {std::pair<int64_t, int64_t>{300, 300}, {2500, 1200}}) {
    const std::vector<int64_t> ids = Batch(old_ids, new_ids);
    const std::vector<float> grads = ValuesFor(ids, 0.01f);
    const float learning_rate = 0.1f;
    Sweep(ids, [&](EmbeddingHashTable* table) {
      const Status s = table->BatchOptimize(
          ids.data(), static_cast<int64_t>(ids.size()), grads.data(),
          &learning_rate, kTime + 1, 5);
      ASSERT_OK(s);
    }, /*repeatable=*/false);
  }
}

TEST(EmbeddingHashTableOomTest, Reinitialize) {
  const std::vector<int64_t> ids = Batch(300, 300);
  std::vector<int> status(ids.size());
  Sweep(ids, [&](EmbeddingHashTable* table) {
    table->Reinitialize(ids.data(), static_cast<int64_t>(ids.size()),
                        status.data(), kTime + 1);
  }, /*repeatable=*/true);
}

TEST(EmbeddingHashTableOomTest, Restore) {
  // The entries of another table, restored one by one.
  auto source = NewTable();
  const std::vector<int64_t> ids = Batch(400, 400);
  const std::vector<float> values = ValuesFor(ids, 3.0f);
  source->Assign(ids.data(), static_cast<int64_t>(ids.size()), values.data(),
                 kTime + 2);
  std::vector<EntryDump> dumps(ids.size());
  source->BatchLookupEntry(ids.data(), static_cast<int64_t>(ids.size()),
                           dumps.data());
  Sweep(ids, [&](EmbeddingHashTable* table) {
    for (const EntryDump& dump : dumps) {
      const Status s = table->Restore(dump);
      ASSERT_OK(s);
    }
  }, /*repeatable=*/true);
}

TEST(EmbeddingHashTableOomTest, RestoreBatch) {
  // The records of another table, restored in batches (2,048 a batch: the
  // first flushed by Add, the rest by Flush).
  auto source = NewTable();
  const std::vector<int64_t> ids = Batch(1500, 1500);
  const std::vector<float> values = ValuesFor(ids, 3.0f);
  source->Assign(ids.data(), static_cast<int64_t>(ids.size()), values.data(),
                 kTime + 2);
  std::vector<std::string> records;
  ASSERT_OK(source->Save(0, 1, 0, [&](const EmbeddingHashTable::SavedEntry& e) {
    records.emplace_back(e.dump, e.dump_size);
    return Status::OK();
  }));
  Sweep(ids, [&](EmbeddingHashTable* table) {
    EmbeddingHashTable::RestoreBatch batch(table, RestoredState::kAll);
    RecordScratch scratch;
    int64_t time = 0;
    for (const std::string& record : records) {
      const Status s = batch.Add(record.data(), record.size(), &scratch, &time);
      ASSERT_OK(s);
    }
    const Status s = batch.Flush();
    ASSERT_OK(s);
  }, /*repeatable=*/true);
}

// Out of memory parsing a record (values only: every record is parsed)
// leaves the batch as it was (the records added before and after it are
// written with their own values) and its scratch safe to parse into and
// to destroy: protobuf left a message half-parsed that crashed when cleared
// or destroyed (RecordScratch).
TEST(EmbeddingHashTableOomTest, RestoreBatchAfterAFailedParse) {
  auto source = NewTable();
  const std::vector<int64_t> ids = {OldId(1), OldId(2), OldId(3)};
  const std::vector<float> values = ValuesFor(ids, 3.0f);
  source->Assign(ids.data(), 3, values.data(), kTime + 2);
  std::map<int64_t, std::string> records;
  ASSERT_OK(source->Save(0, 1, 0, [&](const EmbeddingHashTable::SavedEntry& e) {
    records[e.id] = std::string(e.dump, e.dump_size);
    return Status::OK();
  }));
  int failures = 0;
  for (int limit = 0; limit < kMaxSweep; ++limit) {
    auto table = NewTable();
    EmbeddingHashTable::RestoreBatch batch(table.get(),
                                           RestoredState::kValuesOnly);
    // The failing parse is its scratch's first: later parses into its
    // arena allocate only when its blocks fill.
    RecordScratch first, scratch;
    int64_t time = 0;
    const auto add = [&](int64_t id, RecordScratch* into) {
      const Status s = batch.Add(records[id].data(), records[id].size(),
                                 into, &time);
      ASSERT_OK(s);
    };
    add(ids[0], &first);
    if (!FailsWithin(limit, [&] { add(ids[1], &scratch); })) break;
    ++failures;
    EXPECT_FALSE(scratch.has_dump());  // dropped, not to be touched
    add(ids[2], &scratch);
    ASSERT_OK(batch.Flush());
    EXPECT_FALSE(table->Contains(ids[1]));
    for (const int64_t id : {ids[0], ids[2]}) {
      std::vector<float> row(kDim);
      ASSERT_EQ(table->BatchLookup(&id, 1, row.data()), 1);
      const size_t i = std::find(ids.begin(), ids.end(), id) - ids.begin();
      EXPECT_EQ(row, std::vector<float>(values.begin() + i * kDim,
                                        values.begin() + (i + 1) * kDim))
          << "id " << id << ", allocation " << limit << " failed";
    }
  }
  EXPECT_GT(failures, 0) << "parsing allocated nothing";
}

TEST(EmbeddingHashTableOomTest, Evict) {
  Sweep({}, [](EmbeddingHashTable* table) {
    EmbeddingHashTable::EvictStats stats;
    table->Evict(kTime, &stats);
  }, /*repeatable=*/true);
}

TEST(EmbeddingHashTableOomTest, EvictStatsCountWhatAFailedEvictionRemoved) {
  // A caller that catches the bad_alloc reads counts of the shards evicted
  // before it, per slot as in all (the per-slot counts once counted a
  // shard the failure then left whole).
  int failures = 0;
  for (int limit = 0; limit < kMaxSweep; ++limit) {
    SCOPED_TRACE("allocation " + std::to_string(limit) + " failed");
    auto table = BaseTable();
    const int64_t size = table->Size();
    EmbeddingHashTable::EvictStats stats;
    const bool failed =
        FailsWithin(limit, [&] { table->Evict(kTime, &stats); });
    int64_t by_slot = 0;
    for (const auto& [slot, count] : stats.evicted_by_slot) by_slot += count;
    EXPECT_EQ(stats.evicted, size - table->Size());
    EXPECT_EQ(by_slot, stats.evicted);
    if (!failed) {
      EXPECT_EQ(stats.evicted, kOldIds / 2);
      break;
    }
    ++failures;
  }
  EXPECT_GT(failures, 0) << "eviction allocated nothing";
}

TEST(EmbeddingHashTableOomTest, EraseAndClear) {
  const std::vector<int64_t> ids = Batch(128, 0);
  Sweep(ids, [&](EmbeddingHashTable* table) {
    for (const int64_t id : ids) table->Erase(id);
  }, /*repeatable=*/true);
  Sweep({}, [](EmbeddingHashTable* table) { table->Clear(); },
        /*repeatable=*/true, /*atomic=*/true);
}

TEST(EmbeddingHashTableOomTest, FailedSaveLeavesTableAsItWas) {
  auto table = BaseTable();
  std::vector<int64_t> all;
  for (int64_t i = 0; i < kOldIds; ++i) all.push_back(OldId(i));
  const std::map<int64_t, std::string> before = Entries(*table, all);
  table->SetSaveChunkBytesForTesting(4096);
  int failures = 0;
  for (int limit = 0; limit < kMaxSweep; ++limit) {
    int64_t written = 0;
    Status status;
    if (!FailsWithin(limit, [&] {
          status = table->Save(
              0, 1, 0, [&](const EmbeddingHashTable::SavedEntry&) {
                ++written;
                return Status::OK();
              });
        })) {
      ASSERT_OK(status);
      EXPECT_EQ(written, kOldIds);
      break;
    }
    ++failures;
    ASSERT_EQ(Entries(*table, all), before) << "allocation " << limit;
  }
  EXPECT_GT(failures, 0);
}

// The huge-page pool, which tables of ~100k entries and more take their
// slot arrays and arena blocks from: an allocation that fails takes nothing
// (UsedBytes() does not move), and freeing never fails, even when its own
// bookkeeping cannot allocate.
TEST(HugePagePoolOomTest, FailedAllocationsTakeNothingAndFreesNeverFail) {
  constexpr size_t kRegion = HugePagePool::kRegionBytes;
  struct Array {
    char* array;
    size_t bytes;
  };
  // Slab arrays of two sizes, more than a region (2 MiB) of each, so that
  // full slabs leave slabs_with_room_ (and frees put them back: a set
  // insert), large arrays, and blocks over several regions.
  std::vector<size_t> sizes;
  for (int i = 0; i < 900; ++i) sizes.push_back(i % 3 == 0 ? 8 << 10 : 4 << 10);
  for (int i = 0; i < 3; ++i) sizes.push_back(2 * kRegion);
  const auto allocate_all = [&](HugePagePool* pool, std::vector<Array>* arrays,
                                int* blocks) {
    for (const size_t bytes : sizes) {
      arrays->push_back(Array{pool->AllocateArray(bytes), bytes});
    }
    for (; *blocks < 400; ++*blocks) pool->AllocateBlock(16 << 10);
  };
  int failures = 0;
  for (int limit = 0; limit < kMaxSweep; ++limit) {
    HugePagePool pool;
    std::vector<Array> arrays;
    arrays.reserve(sizes.size());
    int blocks = 0;
    if (!FailsWithin(limit, [&] { allocate_all(&pool, &arrays, &blocks); })) {
      break;
    }
    ++failures;
    // What was handed out is accounted for, nothing more: a region for
    // each 2 MiB of blocks begun, the slabs' regions, the large arrays.
    const size_t used = pool.UsedBytes();
    for (const Array& a : arrays) pool.FreeArray(a.array, a.bytes);
    pool.ReleaseBlocks();
    ASSERT_EQ(pool.UsedBytes(), 0u)
        << "allocation " << limit << " failed; " << used << " bytes were used";
  }
  EXPECT_GT(failures, 0);

  // Frees with the pool's bookkeeping out of memory, then everything again.
  for (int limit = 0; limit < 64; ++limit) {
    HugePagePool pool;
    std::vector<Array> arrays;
    arrays.reserve(sizes.size());
    int blocks = 0;
    allocate_all(&pool, &arrays, &blocks);
    // Every other array first, so slabs gain room (a set insert) while
    // allocations fail.
    allocations_left = limit;
    for (size_t i = 0; i < arrays.size(); i += 2) {
      pool.FreeArray(arrays[i].array, arrays[i].bytes);
    }
    allocations_left = -1;
    std::vector<Array> again;
    again.reserve(sizes.size());
    for (size_t i = 0; i < arrays.size(); i += 2) {
      again.push_back(Array{pool.AllocateArray(arrays[i].bytes),
                            arrays[i].bytes});
    }
    allocations_left = limit;
    for (size_t i = 1; i < arrays.size(); i += 2) {
      pool.FreeArray(arrays[i].array, arrays[i].bytes);
    }
    for (const Array& a : again) pool.FreeArray(a.array, a.bytes);
    pool.ReleaseBlocks();
    allocations_left = -1;
    ASSERT_EQ(pool.UsedBytes(), 0u) << "allocation " << limit;
  }
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
