#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/compressor/fp16_batch.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_decorators.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/update_time.h"

namespace monolith {
namespace hash_table {
namespace {

EmbeddingHashTableConfig ParseConfig(const std::string& text) {
  EmbeddingHashTableConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  return config;
}

using SavedEntry = EmbeddingHashTable::SavedEntry;

// The EntryDump a saved entry holds, checked against its id and time.
EntryDump ParseSaved(const SavedEntry& entry) {
  EntryDump dump;
  EXPECT_TRUE(dump.ParseFromArray(entry.dump, static_cast<int>(entry.dump_size)));
  EXPECT_EQ(dump.id(), entry.id);
  EXPECT_EQ(dump.last_update_ts_sec(), entry.update_time);
  return dump;
}

std::unique_ptr<EmbeddingHashTable> MakeTable(const std::string& text,
                                              uint64_t seed = 7) {
  std::unique_ptr<EmbeddingHashTable> table;
  Status s = EmbeddingHashTable::Create(ParseConfig(text), seed, &table);
  EXPECT_OK(s);
  return table;
}

std::string SgdTable(int dim, const std::string& extra = "") {
  return "entry_config { segments { dim_size: " + std::to_string(dim) +
         " init_config { zeros {} } opt_config { sgd {} } } } " + extra;
}

// An SGD table of |dim| floats whose entries expire after a day.
std::unique_ptr<EmbeddingHashTable> OneDayExpiryTable(int dim) {
  return MakeTable(
      SgdTable(dim, "slot_expire_time_config { default_expire_time: 1 }"));
}

std::vector<float> LookupOne(const EmbeddingHashTable& table, int64_t id) {
  std::vector<float> out(table.DimSize());
  table.Lookup(id, out.data());
  return out;
}

// Runs |fn| on a thread with a stack of |bytes|.
void RunOnSmallStack(size_t bytes, std::function<void()> fn) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, bytes), 0);
  pthread_t thread;
  ASSERT_EQ(pthread_create(
                &thread, &attr,
                [](void* arg) -> void* {
                  (*static_cast<std::function<void()>*>(arg))();
                  return nullptr;
                },
                &fn),
            0);
  ASSERT_EQ(pthread_join(thread, nullptr), 0);
  pthread_attr_destroy(&attr);
}

TEST(EmbeddingHashTableTest, BatchCallsRunOnSmallStacks) {
  // Each batch call put ~80 KiB of scratch on the stack: a thread of 64 KiB
  // (a fiber, a small pool's thread) crashed, one id or many.
  auto table = MakeTable(SgdTable(3));
  RunOnSmallStack(64 << 10, [&] {
    std::vector<int64_t> ids(100);
    std::iota(ids.begin(), ids.end(), 0);
    const std::vector<float> values(ids.size() * 3, 1.0f);
    table->Assign(ids.data(), ids.size(), values.data(), 1);
    table->AssignAdd(ids.data(), ids.size(), values.data(), 1);
    std::vector<float> out(values.size());
    EXPECT_EQ(table->BatchLookup(ids.data(), ids.size(), out.data()), 100);
    EXPECT_EQ(out, std::vector<float>(values.size(), 2.0f));
  });
}

TEST(EmbeddingHashTableTest, TablesPlaceIdsByASeedOfTheirOwn) {
  // Ids chosen to share one shard (and there a cluster of slots) under one
  // table's hash spread out under another's: crafted ids cannot make every
  // probe of a shard walk them all.
  auto a = MakeTable(SgdTable(1));
  std::unique_ptr<EmbeddingHashTable> b;
  ASSERT_OK(EmbeddingHashTable::Create(ParseConfig(SgdTable(1)), 2, &b));
  std::vector<int64_t> crafted;
  for (int64_t id = 1; crafted.size() < 2000; ++id) {
    if (a->ShardOfIdForTesting(id) == 0) crafted.push_back(id);
  }
  std::set<int> shards_in_b;
  for (int64_t id : crafted) shards_in_b.insert(b->ShardOfIdForTesting(id));
  EXPECT_GT(shards_in_b.size(), 60u);
  // One seed, one placement: a table built again places ids alike.
  std::unique_ptr<EmbeddingHashTable> b_again;
  ASSERT_OK(EmbeddingHashTable::Create(ParseConfig(SgdTable(1)), 2, &b_again));
  for (int64_t id : crafted) {
    ASSERT_EQ(b_again->ShardOfIdForTesting(id), b->ShardOfIdForTesting(id));
  }
}

TEST(EmbeddingHashTableTest, MissingIdsLookUpAsZerosAndAreNotInserted) {
  auto table = MakeTable(SgdTable(3));
  const int64_t ids[2] = {5, 6};
  std::vector<float> out(6, 9.0f);
  EXPECT_EQ(table->BatchLookup(ids, 2, out.data()), 0);
  EXPECT_EQ(out, std::vector<float>(6, 0.0f));
  EXPECT_EQ(table->Size(), 0);
  EXPECT_FALSE(table->Contains(5));
}

// Float16 lookups are the float32 lookups converted (FloatsToHalfsSaturating)
// bit for bit: every dim's path (fixed dims streamed past 1,024 ids, in
// chunks whose ends fall anywhere; other dims and transformed lookups
// through the accessor), missing ids as zeros, values past float16's range
// saturated, infinities and NaN kept; on a small stack too.
TEST(EmbeddingHashTableTest, Float16LookupsAreFloat32LookupsConverted) {
  const std::string fixed_r8 =
      "entry_config { segments { dim_size: 16 init_config { zeros {} } "
      "opt_config { sgd {} } comp_config { fixed_r8 { r: 1 } } } }";
  for (const std::string& config :
       {SgdTable(8), SgdTable(16), SgdTable(32), SgdTable(64), SgdTable(5),
        fixed_r8}) {
    auto table = MakeTable(config);
    const int dim = table->DimSize();
    std::mt19937_64 rng(dim);
    std::vector<int64_t> stored(3000);
    for (int64_t& id : stored) id = static_cast<int64_t>(rng());
    std::vector<float> values(stored.size() * dim);
    std::normal_distribution<float> normal(0.0f, 3e4f);
    for (float& v : values) v = normal(rng);
    values[0] = std::numeric_limits<float>::infinity();
    values[1] = -std::numeric_limits<float>::infinity();
    values[2] = std::numeric_limits<float>::quiet_NaN();
    values[3] = 1e9f;
    table->Assign(stored.data(), stored.size(), values.data(), 1);
    for (const int64_t n : {int64_t{1}, int64_t{700}, int64_t{1024},
                            int64_t{2049}, int64_t{4000}}) {
      // Stored ids and missing ones, mixed.
      std::vector<int64_t> ids(n);
      for (int64_t& id : ids) {
        id = rng() % 4 ? stored[rng() % stored.size()]
                       : static_cast<int64_t>(rng());
      }
      std::vector<float> floats(n * dim);
      const int64_t hits = table->BatchLookup(ids.data(), n, floats.data());
      std::vector<uint16_t> expected(n * dim);
      FloatsToHalfsSaturating(floats.data(), floats.size(), expected.data());
      std::vector<uint16_t> halfs(n * dim, 0xFFFF);
      RunOnSmallStack(64 << 10, [&] {
        EXPECT_EQ(table->BatchLookupHalfs(ids.data(), n, halfs.data()), hits);
      });
      EXPECT_EQ(halfs, expected) << config << ", " << n << " ids";
    }
  }
  // Saturated, not infinite; infinities and NaN kept.
  std::vector<uint16_t> bits(4);
  const float specials[4] = {1e9f, -1e9f,
                             std::numeric_limits<float>::infinity(),
                             std::numeric_limits<float>::quiet_NaN()};
  FloatsToHalfsSaturating(specials, 4, bits.data());
  EXPECT_EQ(bits[0], 0x7BFF);
  EXPECT_EQ(bits[1], 0xFBFF);
  EXPECT_EQ(bits[2], 0x7C00);
  EXPECT_EQ(bits[3] & 0x7E00, 0x7E00);
}

// A dim-16 fixed_r8 table does not take the raw-copy lookup path of dim-16
// tables: lookups return the quantized values.
TEST(EmbeddingHashTableTest, FixedR8TrainingTableLooksUpQuantizedValues) {
  auto table = MakeTable(
      "entry_config { segments { dim_size: 16 init_config { zeros {} } "
      "opt_config { sgd {} } comp_config { fixed_r8 { r: 2 } } } }");
  auto raw = MakeTable(SgdTable(16));
  const int64_t id = 3;
  std::vector<float> values(16);
  for (int i = 0; i < 16; ++i) values[i] = 0.0101f * i - 0.07f;
  table->Assign(&id, 1, values.data(), 1);
  raw->Assign(&id, 1, values.data(), 1);
  EXPECT_EQ(LookupOne(*raw, id), values);
  const FixedR8Quantizer quantizer(2.0f);
  std::vector<float> quantized(16);
  for (int i = 0; i < 16; ++i) quantized[i] = quantizer.Quantize(values[i]);
  EXPECT_NE(quantized, values);
  EXPECT_EQ(LookupOne(*table, id), quantized);
}

TEST(EmbeddingHashTableTest, WritersInsertAndStampUpdateTime) {
  auto table = MakeTable(R"pb(entry_config {
                                segments {
                                  dim_size: 2
                                  init_config { ones {} }
                                  opt_config { sgd {} }
                                }
                              })pb");
  const int64_t a = 1, b = 2, c = 3;
  const float values[2] = {0.5f, 0.25f};
  table->AssignAdd(&a, 1, values, 100);  // ones + values
  table->Assign(&b, 1, values, 200);
  const float lr = 1.0f;
  ASSERT_OK(table->BatchOptimize(&c, 1, values, &lr, 300, 0));
  EXPECT_EQ(table->Size(), 3);
  EXPECT_EQ(LookupOne(*table, a), (std::vector<float>{1.5f, 1.25f}));
  EXPECT_EQ(LookupOne(*table, b), (std::vector<float>{0.5f, 0.25f}));
  EXPECT_EQ(LookupOne(*table, c), (std::vector<float>{0.5f, 0.75f}));

  const int64_t ids[4] = {a, b, c, 4};
  EntryDump dumps[4];
  table->BatchLookupEntry(ids, 4, dumps);
  EXPECT_EQ(dumps[0].last_update_ts_sec(), 100);
  EXPECT_EQ(dumps[1].last_update_ts_sec(), 200);
  EXPECT_EQ(dumps[2].last_update_ts_sec(), 300);
  EXPECT_EQ(dumps[2].id(), c);
  // As the original's: a missing id's dump serializes to "".
  EXPECT_EQ(dumps[3].SerializeAsString(), "");
}

TEST(EmbeddingHashTableTest, EveryUpdatePathRaisesTheLatestUpdateTime) {
  auto table = MakeTable(SgdTable(1));
  EXPECT_EQ(table->LatestUpdateTime(), 0);
  const int64_t id = 1;
  const float value = 1.0f;
  int status = 0;
  table->Assign(&id, 1, &value, 10);
  EXPECT_EQ(table->LatestUpdateTime(), 10);
  table->AssignAdd(&id, 1, &value, 20);
  EXPECT_EQ(table->LatestUpdateTime(), 20);
  table->Reinitialize(&id, 1, &status, 30);
  EXPECT_EQ(table->LatestUpdateTime(), 30);
  ASSERT_OK(table->BatchOptimize(&id, 1, &value, &value, 40, 1));
  EXPECT_EQ(table->LatestUpdateTime(), 40);
  // Older updates and empty batches do not lower it.
  table->Assign(&id, 1, &value, 5);
  table->Assign(&id, 0, &value, 99);
  EXPECT_EQ(table->LatestUpdateTime(), 40);
  EntryDump dump;
  dump.set_id(2);
  dump.add_num(1.0f);
  dump.set_last_update_ts_sec(50);
  ASSERT_OK(table->Restore(dump));
  EXPECT_EQ(table->LatestUpdateTime(), 50);
  dump.set_last_update_ts_sec(60);
  const std::string record = dump.SerializeAsString();
  RecordScratch scratch;
  int64_t record_time = 0;
  ASSERT_OK(table->RestoreRecord(record.data(), record.size(), &scratch,
                                 &record_time));
  EXPECT_EQ(record_time, 60);
  EXPECT_EQ(table->LatestUpdateTime(), 60);
  // A time past the entries' range (the original took milliseconds) is
  // kept as the largest one and does not move the table's time: otherwise
  // every other entry would look expired.
  dump.set_id(3);
  dump.set_last_update_ts_sec(int64_t{1} << 40);
  ASSERT_OK(table->Restore(dump));
  EXPECT_EQ(table->LatestUpdateTime(), 60);
  const int64_t restored = 3;
  EntryDump entry;
  table->BatchLookupEntry(&restored, 1, &entry);
  EXPECT_EQ(entry.last_update_ts_sec(), int64_t{0xFFFFFFFF});
  table->Clear();
  EXPECT_EQ(table->LatestUpdateTime(), 0);
}

TEST(EmbeddingHashTableTest, TimesAheadOfTheClockDoNotMoveTheTableTime) {
  // One write stamped years ahead (a corrupt req_time) must not become the
  // "now" of expiry: the next eviction would drop every entry.
  auto table = MakeTable(
      SgdTable(1, "slot_expire_time_config { default_expire_time: 7 }"));
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const int64_t day = kSecondsPerDay;
  std::vector<int64_t> ids(1000);
  std::iota(ids.begin(), ids.end(), 1);
  const std::vector<float> values(ids.size(), 1.0f);
  table->Assign(ids.data(), ids.size(), values.data(), now);
  EXPECT_EQ(table->LatestUpdateTime(), now);
  const int64_t corrupt = 5000;
  const float value = 2.0f;
  const int64_t far_ahead = now + 10 * 365 * day;
  table->Assign(&corrupt, 1, &value, far_ahead);
  ASSERT_OK(table->BatchOptimize(&corrupt, 1, &value, &value, far_ahead, 1));
  int status = 0;
  table->Reinitialize(&corrupt, 1, &status, far_ahead);
  EntryDump dump;
  dump.set_id(corrupt);
  dump.add_num(1.0f);
  dump.set_last_update_ts_sec(far_ahead);
  ASSERT_OK(table->Restore(dump));
  EXPECT_EQ(table->LatestUpdateTime(), now);
  int64_t eviction_now = 0;
  EXPECT_EQ(table->EvictAtLatestUpdateTime(&eviction_now), 0);
  EXPECT_EQ(eviction_now, now);
  EXPECT_EQ(table->Size(), static_cast<int64_t>(ids.size()) + 1);
  // The entry keeps its time.
  table->BatchLookupEntry(&corrupt, 1, &dump);
  EXPECT_EQ(dump.last_update_ts_sec(), far_ahead);
  // Within a day of the clock (skew, time zones), a time still counts.
  const int64_t skewed = now + kMaxUpdateTimeAheadSeconds - 3600;
  table->Assign(&corrupt, 1, &value, skewed);
  EXPECT_EQ(table->LatestUpdateTime(), skewed);
}

TEST(EmbeddingHashTableTest, AWriteWithAnOlderTimeDoesNotAgeAnEntry) {
  // A lagging worker's write stamped its time on entries a later write had
  // touched: the next eviction dropped them. One id, a group and a
  // streamed batch (each writes on its own path).
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const int64_t day = kSecondsPerDay;
  for (const int64_t n : {1, 100, 5000}) {
    SCOPED_TRACE(n);
    auto table = OneDayExpiryTable(1);
    std::vector<int64_t> ids(n);
    std::iota(ids.begin(), ids.end(), 1);
    const std::vector<float> values(n, 1.0f);
    table->Assign(ids.data(), n, values.data(), now);
    table->Assign(ids.data(), n, values.data(), now - 2 * day);
    table->AssignAdd(ids.data(), n, values.data(), now - 4 * day);
    ASSERT_OK(table->BatchOptimize(ids.data(), n, values.data(), values.data(),
                                   now - 3 * day, 1));
    const int64_t fresh = n + 1;  // a new id takes the write's time
    table->Assign(&fresh, 1, values.data(), now - 2 * day);
    int64_t eviction_now = 0;
    EXPECT_EQ(table->EvictAtLatestUpdateTime(&eviction_now), 1);
    EXPECT_EQ(eviction_now, now);
    EXPECT_EQ(table->Size(), n);
    EntryDump dump;
    table->BatchLookupEntry(&ids[n - 1], 1, &dump);
    EXPECT_EQ(dump.last_update_ts_sec(), now);
    // A later time still moves it.
    table->Assign(ids.data(), n, values.data(), now + 60);
    table->BatchLookupEntry(&ids[0], 1, &dump);
    EXPECT_EQ(dump.last_update_ts_sec(), now + 60);
  }
}

TEST(EmbeddingHashTableTest, AWriteWithoutATimeStampsTheTableTime) {
  // New ids written without a time (0) into a table that has one (from a
  // restore, or writes that pass req_time) were dated 1970: the next
  // eviction or save dropped every one of them. One id, a group and a
  // streamed batch (each writes on its own path), by each writer.
  const int64_t then = static_cast<int64_t>(std::time(nullptr)) - 3600;
  const float value = 1.0f;
  for (const int64_t n : {1, 100, 5000}) {
    SCOPED_TRACE(n);
    auto table = OneDayExpiryTable(1);
    const int64_t timed = -1;
    table->Assign(&timed, 1, &value, then);
    std::vector<int64_t> ids(3 * n);
    std::iota(ids.begin(), ids.end(), 1);
    const std::vector<float> values(ids.size(), 1.0f);
    ASSERT_OK(table->BatchOptimize(ids.data(), n, values.data(), values.data(),
                                   0, 1));
    table->Assign(ids.data() + n, n, values.data(), 0);
    table->AssignAdd(ids.data() + 2 * n, n, values.data(), 0);
    EXPECT_EQ(table->LatestUpdateTime(), then);
    int64_t eviction_now = 0;
    EXPECT_EQ(table->EvictAtLatestUpdateTime(&eviction_now), 0);
    EXPECT_EQ(eviction_now, then);
    EXPECT_EQ(table->Size(), 3 * n + 1);
    for (const int64_t id : {ids[0], ids[n], ids[3 * n - 1]}) {
      EntryDump dump;
      table->BatchLookupEntry(&id, 1, &dump);
      EXPECT_EQ(dump.last_update_ts_sec(), then) << id;
    }
  }
  // A table without a time keeps 0: it has nothing better.
  auto untimed = OneDayExpiryTable(1);
  const int64_t id = 7;
  untimed->Assign(&id, 1, &value, 0);
  EntryDump dump;
  untimed->BatchLookupEntry(&id, 1, &dump);
  EXPECT_EQ(dump.last_update_ts_sec(), 0);
  EXPECT_EQ(untimed->LatestUpdateTime(), 0);
}

TEST(EmbeddingHashTableTest, AClockSteppedBackDoesNotDateWritesByIt) {
  // A host clock stepped back 10 days (NTP, a VM's resume) makes the
  // data's times look ahead of it: the entries a trainer updated then were
  // stamped with the clock's time, and when it was set right, the next
  // save dropped them as 10 days old.
  const int64_t data = 1700000000;
  const int64_t clock = data - 10 * kSecondsPerDay;
  const int64_t stamp = StampedUpdateTime(data + 60, clock, data);
  EXPECT_EQ(stamp, data);
  EXPECT_EQ(LaterUpdateTime(data, stamp, clock), data);
  // A corrupt time, the clock right: the table's time.
  EXPECT_EQ(StampedUpdateTime(data + 400 * kSecondsPerDay, data, data - 60),
            data - 60);
  // Without a table time, the time written.
  EXPECT_EQ(StampedUpdateTime(data + 400 * kSecondsPerDay, data, 0),
            data + 400 * kSecondsPerDay);
  EXPECT_EQ(StampedUpdateTime(0, data, 0), 0);
  EXPECT_EQ(StampedUpdateTime(data - 60, data, data), data - 60);
}

TEST(EmbeddingHashTableTest, ExpiryIsMeasuredNoLaterThanTheClock) {
  // A time less than a day ahead (skew, a time zone) moves the table's
  // time; measured against it, entries updated 20 hours ago would be more
  // than the expire time of a day old.
  auto table = OneDayExpiryTable(1);
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  const int64_t hour = 3600;
  std::vector<int64_t> ids(100);
  std::iota(ids.begin(), ids.end(), 1);
  const std::vector<float> values(ids.size(), 1.0f);
  table->Assign(ids.data(), ids.size(), values.data(), now - 20 * hour);
  const int64_t ahead = 1000;
  table->Assign(&ahead, 1, values.data(), now + 12 * hour);
  EXPECT_EQ(table->LatestUpdateTime(), now + 12 * hour);
  int64_t eviction_now = 0;
  EXPECT_EQ(table->EvictAtLatestUpdateTime(&eviction_now), 0);
  EXPECT_GE(eviction_now, now);
  EXPECT_LE(eviction_now, static_cast<int64_t>(std::time(nullptr)));
  EXPECT_EQ(table->Size(), 101);
  EXPECT_EQ(ExpiryNow(now - hour), now - hour);
}

TEST(EmbeddingHashTableTest, SumDuplicateIdsKeepsFirstSeenOrder) {
  const int64_t ids[5] = {7, 3, 7, 9, 3};
  const float grads[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  std::vector<int64_t> unique_ids;
  std::vector<float> summed;
  SumDuplicateIds(ids, 5, grads, 2, &unique_ids, &summed);
  EXPECT_EQ(unique_ids, (std::vector<int64_t>{7, 3, 9}));
  EXPECT_EQ(summed, (std::vector<float>{1 + 5, 2 + 6, 3 + 9, 4 + 10, 7, 8}));
  SumDuplicateIds(ids, 0, grads, 2, &unique_ids, &summed);
  EXPECT_TRUE(unique_ids.empty());
  EXPECT_TRUE(summed.empty());
}

TEST(EmbeddingHashTableTest, SumDuplicateIdsOfALargeBatch) {
  // Calls of several sizes on one thread (its slots are reused), every id
  // against a plain reference.
  std::mt19937_64 rng(11);
  for (const int64_t n : {int64_t{20000}, int64_t{3}, int64_t{70000}}) {
    std::vector<int64_t> ids(n);
    for (int64_t& id : ids) {
      id = static_cast<int64_t>(rng() % (n / 2 + 1)) * -7919;
    }
    std::vector<float> grads(n * 2);
    for (float& g : grads) g = static_cast<float>(rng() % 100) / 8;
    std::vector<int64_t> unique_ids;
    std::vector<float> summed;
    std::vector<uint32_t> counts;
    SumDuplicateIds(ids.data(), n, grads.data(), 2, &unique_ids, &summed,
                    &counts);
    std::vector<int64_t> expected_ids;
    std::map<int64_t, size_t> at;
    std::vector<float> expected_sums;
    std::vector<uint32_t> expected_counts;
    for (int64_t i = 0; i < n; ++i) {
      const auto [it, inserted] = at.emplace(ids[i], expected_ids.size());
      if (inserted) {
        expected_ids.push_back(ids[i]);
        expected_sums.insert(expected_sums.end(), {0.0f, 0.0f});
        expected_counts.push_back(0);
      }
      expected_sums[2 * it->second] += grads[2 * i];
      expected_sums[2 * it->second + 1] += grads[2 * i + 1];
      ++expected_counts[it->second];
    }
    ASSERT_EQ(unique_ids, expected_ids) << n;
    ASSERT_EQ(summed, expected_sums) << n;
    ASSERT_EQ(counts, expected_counts) << n;
  }
}

TEST(EmbeddingHashTableTest, ReinitializeReportsExistedOrInserted) {
  auto table = MakeTable(R"pb(entry_config {
                                segments {
                                  dim_size: 1
                                  init_config { constants { constant: 3 } }
                                  opt_config { sgd {} }
                                }
                              })pb");
  const int64_t id = 10;
  const float value = 8;
  table->Assign(&id, 1, &value, 1);
  const int64_t ids[2] = {10, 11};
  int status[2] = {-7, -7};
  table->Reinitialize(ids, 2, status, 5);
  EXPECT_EQ(status[0], 1);
  EXPECT_EQ(status[1], 0);
  EXPECT_EQ(LookupOne(*table, 10), std::vector<float>{3});
  EXPECT_EQ(LookupOne(*table, 11), std::vector<float>{3});
}

TEST(EmbeddingHashTableTest, AnIdStartsFromValuesOfTheSeedAndTheIdAlone) {
  // Not of the order ids arrive in, the thread inserting them, or what the
  // table held before: a fresh process that restores a checkpoint and then
  // meets new ids gave them the very values the first ids of the run got
  // (each shard's stream started over).
  const std::string config =
      "entry_config { segments { dim_size: 3 init_config { random_uniform { "
      "minval: -1 maxval: 1 } } opt_config { sgd {} } } segments { "
      "dim_size: 2 init_config { random_uniform {} } opt_config { adagrad {} "
      "} } }";
  constexpr int kIds = 4000;
  constexpr int kDim = 5;
  std::vector<int64_t> ids(kIds);
  for (int i = 0; i < kIds; ++i) ids[i] = int64_t{i} * 7919 - 2000;
  // Inserts through a zero gradient, which leaves the initial values.
  const auto insert = [](EmbeddingHashTable* table, const int64_t* at,
                         int64_t n) {
    const std::vector<float> grads(n * kDim, 0.0f);
    const std::vector<float> lrs(table->SliceSize(), 0.1f);
    ASSERT_OK(table->BatchOptimize(at, n, grads.data(), lrs.data(), 1, 1));
  };
  const auto values = [&](const EmbeddingHashTable& table) {
    std::vector<float> out(kIds * kDim);
    EXPECT_EQ(table.BatchLookup(ids.data(), kIds, out.data()), kIds);
    return out;
  };
  auto forward = MakeTable(config, 7);
  insert(forward.get(), ids.data(), kIds);
  const std::vector<float> initial = values(*forward);

  // Other ids first, then these backwards, in small batches from two
  // threads.
  auto backward = MakeTable(config, 7);
  std::vector<int64_t> others(1000);
  std::iota(others.begin(), others.end(), int64_t{1} << 40);
  insert(backward.get(), others.data(), others.size());
  std::vector<int64_t> reversed(ids.rbegin(), ids.rend());
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t * 7; i < kIds; i += 14) {
        insert(backward.get(), reversed.data() + i, std::min(7, kIds - i));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(values(*backward), initial);

  // A table restored with the first half, then meeting the second half.
  auto resumed = MakeTable(config, 7);
  std::vector<EntryDump> dumps(kIds / 2);
  forward->BatchLookupEntry(ids.data(), kIds / 2, dumps.data());
  for (const EntryDump& dump : dumps) ASSERT_OK(resumed->Restore(dump));
  insert(resumed.get(), ids.data() + kIds / 2, kIds / 2);
  EXPECT_EQ(values(*resumed), initial);

  // Reinitialized after training: back to where the ids started.
  const std::vector<float> grads(kIds * kDim, 0.5f);
  const std::vector<float> lrs(forward->SliceSize(), 0.1f);
  ASSERT_OK(
      forward->BatchOptimize(ids.data(), kIds, grads.data(), lrs.data(), 2, 2));
  ASSERT_NE(values(*forward), initial);
  std::vector<int> status(kIds);
  forward->Reinitialize(ids.data(), kIds, status.data(), 3);
  EXPECT_EQ(values(*forward), initial);

  // Another seed, other values; and ids of one table apart.
  auto other_seed = MakeTable(config, 8);
  insert(other_seed.get(), ids.data(), kIds);
  const std::vector<float> drawn = values(*other_seed);
  int same = 0;
  for (int i = 0; i < kIds * kDim; ++i) same += drawn[i] == initial[i];
  EXPECT_LT(same, 10);
  std::set<float> firsts;
  for (int i = 0; i < kIds; ++i) firsts.insert(initial[i * kDim]);
  EXPECT_GT(firsts.size(), kIds - 10u);
}

TEST(EmbeddingHashTableTest, EveryInt64IsAValidId) {
  auto table = MakeTable(SgdTable(1));
  const std::vector<int64_t> ids = {0,
                                    -1,
                                    1,
                                    std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max(),
                                    int64_t{1} << 48};
  std::vector<float> values;
  for (size_t i = 0; i < ids.size(); ++i) values.push_back(i + 1.0f);
  table->Assign(ids.data(), ids.size(), values.data(), 1);
  EXPECT_EQ(table->Size(), static_cast<int64_t>(ids.size()));
  std::vector<float> out(ids.size());
  EXPECT_EQ(table->BatchLookup(ids.data(), ids.size(), out.data()),
            static_cast<int64_t>(ids.size()));
  EXPECT_EQ(out, values);
}

TEST(EmbeddingHashTableTest, RepeatedIdsInABatchApplyInOrder) {
  auto table = MakeTable(SgdTable(1));
  const int64_t ids[3] = {4, 4, 4};
  const float grads[3] = {1, 2, 4};
  const float lr = 0.5f;
  ASSERT_OK(table->BatchOptimize(ids, 3, grads, &lr, 1, 0));
  EXPECT_EQ(LookupOne(*table, 4), std::vector<float>{-3.5f});
}

TEST(EmbeddingHashTableTest, EvictUsesPerSlotExpireDays) {
  auto table = MakeTable(SgdTable(1, R"pb(
    slot_expire_time_config {
      default_expire_time: 10
      slot_expire_times { slot: 2 expire_time: 1 }
    })pb"));
  const int64_t day = kSecondsPerDay;
  const int64_t slot1_old = (int64_t{1} << 48) | 1;
  const int64_t slot2_old = (int64_t{2} << 48) | 1;
  const int64_t slot2_new = (int64_t{2} << 48) | 2;
  // The slot is bits 48-62, as the original's slot_id_v2: the sign bit is
  // not part of it.
  const int64_t slot2_negative =
      static_cast<int64_t>(uint64_t{1} << 63 | uint64_t{2} << 48 | 3);
  const float v = 1;
  table->Assign(&slot1_old, 1, &v, 100 * day);
  table->Assign(&slot2_old, 1, &v, 100 * day);
  table->Assign(&slot2_negative, 1, &v, 100 * day);
  table->Assign(&slot2_new, 1, &v, 102 * day);
  // At day 102.5: slot 2 expires after 1 day, slot 1 after 10.
  EXPECT_EQ(table->Evict(102 * day + day / 2), 2);
  EXPECT_TRUE(table->Contains(slot1_old));
  EXPECT_FALSE(table->Contains(slot2_old));
  EXPECT_FALSE(table->Contains(slot2_negative));
  EXPECT_TRUE(table->Contains(slot2_new));
  // At day 110 both remaining entries are past their expire times.
  EXPECT_EQ(table->Evict(110 * day), 2);
  EXPECT_EQ(table->Size(), 0);
}

// Resident bytes of this process (/proc/self/statm).
int64_t ResidentBytes() {
  long pages = 0, resident = 0;  // NOLINT(runtime/int): fscanf's %ld
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  const int read = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return read == 2 ? int64_t{resident} * 4096 : -1;
}

TEST(EmbeddingHashTableTest, EvictKeepsSurvivorsIntactAndCountsBySlot) {
  // Adagrad: entries carry optimizer state, which must move with them.
  auto table = MakeTable(R"pb(
    entry_config {
      segments {
        dim_size: 3
        init_config { zeros {} }
        opt_config { adagrad { initial_accumulator_value: 0.1 } }
      }
    }
    slot_expire_time_config {
      default_expire_time: 100
      slot_expire_times { slot: 1 expire_time: 1 }
      slot_expire_times { slot: 2 expire_time: 1 }
    })pb");
  const int64_t day = kSecondsPerDay;
  constexpr int kIds = 20000;
  std::vector<int64_t> ids;
  std::vector<float> grads;
  for (int i = 0; i < kIds; ++i) {
    // Slots 1 and 2 expire (old updates); slot 3 stays.
    const int64_t slot = 1 + i % 3;
    ids.push_back(slot << 48 | i);
    for (int d = 0; d < 3; ++d) grads.push_back(0.001f * (i % 97) + d);
  }
  const float lr[1] = {0.5f};
  ASSERT_OK(
      table->BatchOptimize(ids.data(), kIds, grads.data(), lr, 10 * day, 0));
  // Slot 3 entries are updated again later; the others are not.
  std::vector<int64_t> fresh;
  std::vector<float> fresh_grads;
  for (int i = 0; i < kIds; ++i) {
    if (i % 3 != 2) continue;
    fresh.push_back(ids[i]);
    for (int d = 0; d < 3; ++d) fresh_grads.push_back(grads[i * 3 + d]);
  }
  ASSERT_OK(table->BatchOptimize(fresh.data(), fresh.size(), fresh_grads.data(),
                                 lr, 20 * day, 0));
  std::vector<EntryDump> before(fresh.size());
  table->BatchLookupEntry(fresh.data(), fresh.size(), before.data());

  EmbeddingHashTable::EvictStats stats;
  const int64_t evicted = table->Evict(table->LatestUpdateTime(), &stats);
  const int64_t expected = kIds - static_cast<int64_t>(fresh.size());
  EXPECT_EQ(evicted, expected);
  EXPECT_EQ(stats.evicted, expected);
  EXPECT_EQ(stats.evicted_by_slot, (std::map<uint32_t, int64_t>{
                                       {1, (kIds + 2) / 3},
                                       {2, (kIds + 1) / 3}}));
  EXPECT_EQ(table->Size(), static_cast<int64_t>(fresh.size()));
  std::vector<EntryDump> after(fresh.size());
  table->BatchLookupEntry(fresh.data(), fresh.size(), after.data());
  for (size_t i = 0; i < fresh.size(); ++i) {
    ASSERT_EQ(after[i].SerializeAsString(), before[i].SerializeAsString())
        << "id " << fresh[i];
  }
  for (int i = 0; i < kIds; ++i) {
    if (i % 3 != 2) {
      ASSERT_FALSE(table->Contains(ids[i])) << ids[i];
    }
  }
  // The freed room is used again: new ids and updates work as before.
  const int64_t extra = 5;
  const float one[3] = {1, 1, 1};
  table->Assign(&extra, 1, one, 21 * day);
  EXPECT_EQ(LookupOne(*table, extra), std::vector<float>(3, 1.0f));
  EXPECT_EQ(table->Size(), static_cast<int64_t>(fresh.size()) + 1);
  // Nothing else has expired.
  EXPECT_EQ(table->Evict(table->LatestUpdateTime()), 0);
}

TEST(EmbeddingHashTableTest, EvictGivesMemoryBack) {
  // 2M entries of dim 16 (~170 MB with slots); evicting half of them must
  // give a good part of that back to the system.
  auto table = OneDayExpiryTable(16);
  const int64_t day = kSecondsPerDay;
  constexpr int64_t kIds = 2000000;
  constexpr int64_t kBatch = 100000;
  std::vector<int64_t> ids(kBatch);
  std::vector<float> values(kBatch * 16, 0.5f);
  for (int64_t begin = 0; begin < kIds; begin += kBatch) {
    for (int64_t i = 0; i < kBatch; ++i) ids[i] = begin + i;
    // Even batches are old, odd ones new.
    table->Assign(ids.data(), kBatch, values.data(),
                  (begin / kBatch) % 2 == 0 ? day : 10 * day);
  }
  const int64_t full = ResidentBytes();
  ASSERT_GT(full, 0);
  EXPECT_EQ(table->Evict(table->LatestUpdateTime()), kIds / 2);
  const int64_t evicted = ResidentBytes();
  // Half the entries' values (2M/2 * 64 bytes = 64 MB) and slots: at least
  // 40 MB must be back.
  EXPECT_LT(evicted, full - (40 << 20)) << full << " -> " << evicted;
  // Inserting as many new ids again reuses the room: RSS grows back to
  // about where it was, not beyond.
  for (int64_t begin = kIds; begin < kIds + kIds / 2; begin += kBatch) {
    for (int64_t i = 0; i < kBatch; ++i) ids[i] = begin + i;
    table->Assign(ids.data(), kBatch, values.data(), 10 * day);
  }
  EXPECT_EQ(table->Size(), kIds);
  EXPECT_LT(ResidentBytes(), full + (16 << 20));
}

TEST(EmbeddingHashTableTest, MemoryBytesFollowsEvictionsOfHeapArenas) {
  // On the heap (as a small table, or with huge pages turned off), an
  // eviction's discarded arena blocks leave the count, and come back into
  // it as new ids take them again; the huge-page count did so already.
  ASSERT_EQ(setenv("MONOLITH_HASH_TABLE_HUGE_PAGES", "0", 1), 0);
  auto table = OneDayExpiryTable(16);
  unsetenv("MONOLITH_HASH_TABLE_HUGE_PAGES");
  const int64_t day = kSecondsPerDay;
  constexpr int64_t kIds = 400000;
  std::vector<int64_t> ids(kIds);
  const std::vector<float> values(kIds * 16, 0.5f);
  const auto assign = [&](int64_t first, int64_t count, int64_t time) {
    for (int64_t i = 0; i < count; ++i) ids[i] = first + i;
    table->Assign(ids.data(), count, values.data(), time);
  };
  assign(0, kIds / 2, day);
  assign(kIds / 2, kIds / 2, 10 * day);
  ASSERT_EQ(table->HugePageBytes(), 0);
  const int64_t full = table->MemoryBytes();
  // Entries of 64 bytes: at least those of the table's ids.
  EXPECT_GE(full, kIds * 64);
  EXPECT_EQ(table->Evict(table->LatestUpdateTime()), kIds / 2);
  const int64_t evicted = table->MemoryBytes();
  // Half the entries (12.8 MB); shards keep their last partial blocks.
  EXPECT_LT(evicted, full - kIds / 2 * 64 * 3 / 4) << full << " -> " << evicted;
  assign(kIds, kIds / 2, 10 * day);
  EXPECT_GT(table->MemoryBytes(), evicted + kIds / 2 * 64 * 3 / 4);
  // The discarded blocks taken again, not new ones beside them.
  EXPECT_LT(table->MemoryBytes(), full + full / 20);
}

TEST(EmbeddingHashTableTest, EvictionsAndRefillsKeepEveryValue) {
  // Pooled arenas: evicted blocks go back with their regions only, and are
  // revived (written again) as new ids refill them. Every survivor and
  // every new id keeps its values through rounds of both; the pool gives
  // regions back and takes them again.
  auto table = OneDayExpiryTable(16);
  const int64_t day = kSecondsPerDay;
  constexpr int64_t kIds = 400000;
  std::vector<int64_t> ids(kIds);
  std::vector<float> values(kIds * 16);
  // Round r's ids r * kIds + i, with values from the id.
  const auto fill = [&](int round, int64_t time) {
    for (int64_t i = 0; i < kIds; ++i) {
      ids[i] = round * kIds + i;
      for (int d = 0; d < 16; ++d) values[i * 16 + d] = ids[i] * 0.5f + d;
    }
    table->Assign(ids.data(), kIds, values.data(), time);
  };
  const auto expect_values = [&](int round) {
    for (int64_t i = 0; i < kIds; ++i) ids[i] = round * kIds + i;
    std::vector<float> out(kIds * 16);
    ASSERT_EQ(table->BatchLookup(ids.data(), kIds, out.data()), kIds)
        << "round " << round;
    for (int64_t i = 0; i < kIds; ++i) {
      for (int d = 0; d < 16; ++d) {
        ASSERT_EQ(out[i * 16 + d], ids[i] * 0.5f + d)
            << "round " << round << " id " << ids[i];
      }
    }
  };
  fill(0, day);
  for (int round = 1; round <= 3; ++round) {
    fill(round, (round + 1) * 10 * day);
    const int64_t pooled = table->HugePageBytes();
    // The round before is expired.
    EXPECT_EQ(table->Evict(table->LatestUpdateTime()), kIds) << round;
    expect_values(round);
    if (pooled > 0) {
      EXPECT_LT(table->HugePageBytes(), pooled) << round;
    }
  }
  EXPECT_EQ(table->Size(), kIds);
}

TEST(EmbeddingHashTableTest, EvictRunsBesideTraining) {
  auto table = OneDayExpiryTable(4);
  const int64_t day = kSecondsPerDay;
  // Old ids 0..49999, never touched again; the trainer updates ids 1M to
  // 1.2M, already there, at ever newer times, in batches that stream
  // while the evictor does not hold or wait for a shard.
  std::vector<int64_t> old_ids(50000);
  for (int64_t i = 0; i < 50000; ++i) old_ids[i] = i;
  std::vector<float> values(old_ids.size() * 4, 1.0f);
  table->Assign(old_ids.data(), old_ids.size(), values.data(), day);
  std::vector<int64_t> trained_ids(200000);
  std::iota(trained_ids.begin(), trained_ids.end(), 1000000);
  const std::vector<float> zeros(trained_ids.size() * 4, 0.0f);
  table->Assign(trained_ids.data(), trained_ids.size(), zeros.data(),
                10 * day);
  std::atomic<bool> done{false};
  std::atomic<int64_t> steps{0};
  std::thread trainer([&] {
    std::vector<int64_t> ids(2000);
    std::vector<float> grads(ids.size() * 4, 1.0f);
    const float lr[1] = {1.0f};
    for (int64_t step = 0; !done.load() || step < 50; ++step) {
      for (size_t i = 0; i < ids.size(); ++i) {
        ids[i] = 1000000 + (step * 7919 + i * 104729) % 200000;
      }
      ASSERT_OK(table->BatchOptimize(ids.data(), ids.size(), grads.data(), lr,
                                     10 * day + step, step));
      steps.store(step + 1);
    }
  });
  while (steps.load() < 10) std::this_thread::yield();
  int64_t evicted = 0;
  for (int round = 0; round < 5; ++round) {
    evicted += table->Evict(table->LatestUpdateTime());
  }
  done.store(true);
  trainer.join();
  EXPECT_EQ(evicted, 50000);
  for (int64_t id : {int64_t{0}, int64_t{49999}}) {
    EXPECT_FALSE(table->Contains(id));
  }
  // Every id the trainer touched is there, with one SGD step of -1 per
  // update from zero: no update was lost to an entry's move (a batch's ids
  // are distinct: 104729 is prime to 200000).
  std::map<int64_t, int> updates;
  for (int64_t step = 0; step < steps.load(); ++step) {
    for (int64_t i = 0; i < 2000; ++i) {
      ++updates[1000000 + (step * 7919 + i * 104729) % 200000];
    }
  }
  EXPECT_EQ(table->Size(), 200000);
  std::vector<float> out(4);
  for (int64_t id = 1000000; id < 1200000; ++id) {
    table->Lookup(id, out.data());
    const auto it = updates.find(id);
    const float expected = it == updates.end() ? 0.0f : -it->second;
    ASSERT_EQ(out, std::vector<float>(4, expected)) << "id " << id;
  }
}

// A restore (Clear, then older entries) beside the evictor: the evictor must
// not measure the restored entries against the time of the entries they
// replaced.
TEST(EmbeddingHashTableTest, EvictionBesideARestoreKeepsTheRestoredEntries) {
  auto table = OneDayExpiryTable(1);
  const int64_t day = kSecondsPerDay;
  std::vector<int64_t> ids(4000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  std::vector<float> values(ids.size(), 1.0f);
  std::atomic<bool> done{false};
  std::thread evictor([&] {
    while (!done.load()) {
      int64_t now = 0;
      table->EvictAtLatestUpdateTime(&now);
    }
  });
  for (int round = 0; round < 200; ++round) {
    // Trained up to day 100, then a checkpoint of day 10 restored.
    table->Assign(ids.data(), ids.size(), values.data(), 100 * day);
    table->Clear();
    table->Assign(ids.data(), ids.size(), values.data(), 10 * day);
    ASSERT_EQ(table->Size(), static_cast<int64_t>(ids.size()))
        << "round " << round;
  }
  done.store(true);
  evictor.join();
}

// A table without a time (no write carried one: "now" 0) expires nothing,
// in evictions as in saves: with an expire time of 0 days, saves kept every
// entry while an eviction dropped them all from the live table.
TEST(EmbeddingHashTableTest, NothingExpiresAtTimeZero) {
  auto table = MakeTable(SgdTable(1, R"pb(
    slot_expire_time_config { default_expire_time: 0 })pb"));
  const int64_t ids[2] = {3, 4};
  const float values[2] = {1, 2};
  table->Assign(ids, 2, values, 0);
  int64_t saved = 0;
  for (int shard = 0; shard < 4; ++shard) {
    ASSERT_OK(table->Save(shard, 4, 0, [&](const SavedEntry&) {
      ++saved;
      return Status::OK();
    }));
  }
  EXPECT_EQ(saved, 2);
  int64_t now = -1;
  EXPECT_EQ(table->EvictAtLatestUpdateTime(&now), 0);
  EXPECT_EQ(now, 0);
  EXPECT_EQ(table->Evict(0), 0);
  EXPECT_EQ(table->Size(), 2);
  // Once the table has a time, the 0-day expire time drops them.
  const int64_t other = 5;
  table->Assign(&other, 1, values, 100);
  EXPECT_EQ(table->EvictAtLatestUpdateTime(&now), 3);
}

// A write time more than a day past the clock (a corrupt req_time) stamps
// its entries with the table's time: they age with it (the time itself,
// 400 days ahead, kept them from ever expiring), and neither they nor,
// restored, the time they carry move a table's time, even a day later. A
// table without a time keeps the time written.
TEST(EmbeddingHashTableTest, WritesFarAheadOfTheClockTakeTheTablesTime) {
  const std::string one_day = SgdTable(1, R"pb(
    slot_expire_time_config { default_expire_time: 1 })pb");
  auto table = MakeTable(one_day);
  const int64_t day = kSecondsPerDay;
  const int64_t clock = HostClockSeconds();
  const int64_t data_time = clock - 30 * day;  // a backfill
  const int64_t old = 3, far = 4;
  const float v = 1;
  table->Assign(&old, 1, &v, data_time);
  table->Assign(&far, 1, &v, clock + 400 * day);
  EXPECT_EQ(table->LatestUpdateTime(), data_time);
  std::vector<std::string> records;
  std::map<int64_t, int64_t> stamps;
  ASSERT_OK(table->Save(0, 1, 0, [&](const SavedEntry& entry) {
    stamps[entry.id] = entry.update_time;
    records.emplace_back(entry.dump, entry.dump_size);
    return Status::OK();
  }));
  EXPECT_EQ(stamps, (std::map<int64_t, int64_t>{{old, data_time},
                                                {far, data_time}}));
  auto restored = MakeTable(one_day);
  RecordScratch scratch;
  int64_t time = 0;
  for (const std::string& record : records) {
    ASSERT_OK(
        restored->RestoreRecord(record.data(), record.size(), &scratch, &time));
  }
  EXPECT_EQ(restored->LatestUpdateTime(), data_time);
  // A day and more on, both have expired.
  EXPECT_EQ(table->Evict(data_time + 2 * day), 2);
  // Without a time, the table keeps the time written.
  auto fresh = MakeTable(one_day);
  fresh->Assign(&far, 1, &v, clock + 400 * day);
  EXPECT_EQ(fresh->LatestUpdateTime(), 0);
  EntryDump dump;
  fresh->BatchLookupEntry(&far, 1, &dump);
  EXPECT_EQ(dump.last_update_ts_sec(), clock + 400 * day);
}

TEST(EmbeddingHashTableTest, ServingTablesNeverEvict) {
  auto table = MakeTable(R"pb(
    entry_config {
      entry_type: SERVING
      segments { dim_size: 1 comp_config { fp32 {} } }
    }
    slot_expire_time_config { default_expire_time: 1 })pb");
  const int64_t id = 3;
  const float v = 1;
  table->Assign(&id, 1, &v, 1);
  EXPECT_EQ(table->Evict(1000 * kSecondsPerDay), 0);
  EXPECT_TRUE(table->Contains(id));
}

// A new SERVING entry takes the values added to it, whatever its
// compressor's encoding of zero: one_bit has none (0 decodes as
// -amplitude), and 0.03 added to it served -0.05.
TEST(EmbeddingHashTableTest, AssignAddToANewServingEntryStartsFromZero) {
  auto table = MakeTable(R"pb(
    entry_config {
      entry_type: SERVING
      segments { dim_size: 2 comp_config { one_bit { amplitude: 0.05 } } }
    })pb");
  const int64_t id = 7;
  const float added[2] = {0.03f, -0.03f};
  table->AssignAdd(&id, 1, added, 1);
  float served[2] = {};
  ASSERT_EQ(table->BatchLookup(&id, 1, served), 1);
  EXPECT_FLOAT_EQ(served[0], 0.05f);
  EXPECT_FLOAT_EQ(served[1], -0.05f);
  // On an existing entry, an add to its served values.
  const float more[2] = {-0.06f, 0.06f};
  table->AssignAdd(&id, 1, more, 2);
  ASSERT_EQ(table->BatchLookup(&id, 1, served), 1);
  EXPECT_FLOAT_EQ(served[0], -0.05f);
  EXPECT_FLOAT_EQ(served[1], 0.05f);
}

// Each segment adds its own floats, in its own encoding.
TEST(EmbeddingHashTableTest, AssignAddToAServingEntryOfSeveralSegments) {
  auto table = MakeTable(R"pb(
    entry_config {
      entry_type: SERVING
      segments { dim_size: 2 comp_config { fp32 {} } }
      segments { dim_size: 3 comp_config { fp16 {} } }
    })pb");
  const int64_t id = 7;
  const float values[5] = {1, 2, 3, 4, 5};
  table->Assign(&id, 1, values, 1);
  const float added[5] = {0.5f, -1, 0.25f, 2, -0.5f};
  table->AssignAdd(&id, 1, added, 2);
  std::vector<float> served(5);
  ASSERT_EQ(table->BatchLookup(&id, 1, served.data()), 1);
  EXPECT_EQ(served, (std::vector<float>{1.5f, 1, 3.25f, 6, 4.5f}));
}

// As the original: only SERVING tables skip zero embeddings (a training
// entry with zero values can hold optimizer state), and "zero" is the
// original's test, a sum of squares below the smallest normal float.
TEST(EmbeddingHashTableTest, SkipZeroEmbeddingIsServingOnlyWithTheOriginalsZero) {
  std::unique_ptr<EmbeddingHashTable> training;
  const Status refused = EmbeddingHashTable::Create(
      ParseConfig(SgdTable(2, "skip_zero_embedding: true")), 1, &training);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("skip_zero_embedding is for SERVING"),
            std::string::npos)
      << refused.message();

  auto serving = MakeTable(R"pb(
    entry_config {
      entry_type: SERVING
      segments { dim_size: 2 comp_config { fp32 {} } }
    }
    skip_zero_embedding: true)pb");
  const int64_t ids[3] = {1, 2, 3};
  // 1e-20 squared underflows: zero as in the original; 1e-12 is not; NaN
  // is not.
  const float values[6] = {1e-20f, -1e-20f, 1e-12f, 0,
                           std::numeric_limits<float>::quiet_NaN(), 0};
  serving->Assign(ids, 3, values, 1);
  EXPECT_FALSE(serving->Contains(1));
  EXPECT_TRUE(serving->Contains(2));
  EXPECT_TRUE(serving->Contains(3));
}

TEST(EmbeddingHashTableTest, RefusesGpucucoConfig) {
  std::unique_ptr<EmbeddingHashTable> table;
  const Status refused = EmbeddingHashTable::Create(
      ParseConfig(SgdTable(2, "gpucuco {}")), 1, &table);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("gpucuco config is for GpuRowTable"),
            std::string::npos)
      << refused.message();
  EXPECT_EQ(table, nullptr);
}

TEST(EmbeddingHashTableTest, SkipZeroEmbeddingErasesOnAssignAndSkipsRestore) {
  auto table = MakeTable(R"pb(
    entry_config {
      entry_type: SERVING
      segments { dim_size: 2 comp_config { fp32 {} } }
    }
    skip_zero_embedding: true)pb");
  const int64_t ids[2] = {1, 2};
  const float values[4] = {1, 2, 3, 4};
  table->Assign(ids, 2, values, 1);
  const float zeros[2] = {0, 0};
  table->Assign(&ids[0], 1, zeros, 2);
  EXPECT_FALSE(table->Contains(1));
  EXPECT_TRUE(table->Contains(2));
  EntryDump dump;
  dump.set_id(9);
  dump.add_num(0);
  dump.add_num(0);
  ASSERT_OK(table->Restore(dump));
  EXPECT_FALSE(table->Contains(9));
  const float lr = 1;
  EXPECT_EQ(table->BatchOptimize(ids, 1, values, &lr, 1, 0).code(),
            StatusCode::kFailedPrecondition);
}

// A shard at its entry limit takes no new id (as if the filter refused it)
// and never hands out an index twice: no two ids share an entry.
TEST(EmbeddingHashTableTest, AFullShardTakesNoNewIdsAndMixesNone) {
  auto table = MakeTable(SgdTable(1));
  table->LimitShardEntriesForTesting(4);
  constexpr int kIds = 2000;
  std::vector<int64_t> ids(kIds);
  std::iota(ids.begin(), ids.end(), 1);
  std::vector<float> values(ids.begin(), ids.end());
  table->Assign(ids.data(), 400, values.data(), 1);  // a batch
  for (int i = 400; i < kIds; ++i) {                 // and one id at a time
    table->Assign(&ids[i], 1, &values[i], 1);
  }
  EXPECT_EQ(table->Size(), 64 * 4);  // every shard full
  std::vector<float> out(kIds, -1.0f);
  EXPECT_EQ(table->BatchLookup(ids.data(), kIds, out.data()), 64 * 4);
  int kept = 0;
  for (int i = 0; i < kIds; ++i) {
    if (out[i] == values[i]) {
      ++kept;
    } else {
      EXPECT_EQ(out[i], 0.0f) << "id " << ids[i] << " reads another's entry";
    }
  }
  EXPECT_EQ(kept, 64 * 4);
  // A restore respects the limit too: a new id in a full shard is
  // ResourceExhausted, an existing one is overwritten.
  EntryDump dump;
  dump.set_id(ids[kIds - 1] + 1000);
  dump.add_num(7.0f);
  EXPECT_EQ(table->Restore(dump).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(table->Size(), 64 * 4);
  int64_t stored_id = 0;
  for (int i = 0; i < kIds; ++i) {
    if (out[i] == values[i]) stored_id = ids[i];
  }
  dump.set_id(stored_id);
  ASSERT_OK(table->Restore(dump));
  float restored = 0;
  table->BatchLookup(&stored_id, 1, &restored);
  EXPECT_EQ(restored, 7.0f);
}

// A RestoreBatch restores what RestoreRecord restores, record by record:
// entries, update times, the table's time, a later record of an id over an
// earlier one (in one batch and across batches), values only, skipped
// zeros; a bad record is refused alone; a full shard's new ids are
// ResourceExhausted once flushed, the rest written.
TEST(EmbeddingHashTableTest, RestoreBatchRestoresWhatRestoreRecordDoes) {
  const std::string config =
      "entry_config { segments { dim_size: 3 init_config { random_uniform "
      "{ minval: -1 maxval: 1 } } opt_config { adagrad {} } } }";
  auto saved = MakeTable(config);
  // More than one batch (2,048 records).
  constexpr int kIds = 5000;
  std::vector<int64_t> ids(kIds);
  for (int i = 0; i < kIds; ++i) ids[i] = i * 104729 - 7;
  const int64_t clock = HostClockSeconds();
  for (int i = 0; i < kIds; i += 500) {
    ASSERT_OK(saved->BatchOptimize(
        ids.data() + i, 500, std::vector<float>(1500, 0.1f).data(),
        std::vector<float>(3, 0.5f).data(), clock - 1000 + i, 1));
  }
  std::vector<std::string> records;
  ASSERT_OK(saved->Save(0, 1, 0, [&](const SavedEntry& entry) {
    records.emplace_back(entry.dump, entry.dump_size);
    return Status::OK();
  }));
  // Later records of ids already given: another value, in the same batch
  // as the first and past it.
  for (const int64_t id : {ids[0], ids[kIds - 1], ids[0]}) {
    EntryDump dump;
    dump.set_id(id);
    for (float v : {7.0f, 8.0f, 9.0f}) dump.add_num(v + records.size());
    dump.set_last_update_ts_sec(clock - 5);
    records.push_back(dump.SerializeAsString());
  }

  for (const RestoredState state :
       {RestoredState::kAll, RestoredState::kValuesOnly}) {
    auto by_record = MakeTable(config);
    auto by_batch = MakeTable(config);
    RecordScratch scratch;
    EmbeddingHashTable::RestoreBatch batch(by_batch.get(), state);
    for (const std::string& record : records) {
      int64_t record_time = -1, batch_time = -2;
      ASSERT_OK(by_record->RestoreRecord(record.data(), record.size(), &scratch,
                                         &record_time, state));
      ASSERT_OK(batch.Add(record.data(), record.size(), &scratch, &batch_time));
      EXPECT_EQ(batch_time, record_time);
    }
    // Not an EntryDump: refused, the queued records unharmed.
    int64_t time = 0;
    EXPECT_EQ(batch.Add("\xff", 1, &scratch, &time).code(),
              StatusCode::kDataLoss);
    EXPECT_LT(by_batch->Size(), kIds);  // the last batch waits for Flush
    ASSERT_OK(batch.Flush());
    ASSERT_OK(batch.Flush());  // nothing queued
    ASSERT_EQ(by_batch->Size(), kIds);
    EXPECT_EQ(by_batch->LatestUpdateTime(), by_record->LatestUpdateTime());
    std::vector<EntryDump> a(kIds), b(kIds);
    by_record->BatchLookupEntry(ids.data(), kIds, a.data());
    by_batch->BatchLookupEntry(ids.data(), kIds, b.data());
    for (int i = 0; i < kIds; ++i) {
      ASSERT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString())
          << a[i].ShortDebugString() << "\n" << b[i].ShortDebugString();
    }
    EXPECT_EQ(b[0].num(0), 7.0f + records.size() - 1);  // the last record
  }

  // Four entries a shard: new ids past them are not restored. (The first
  // batch fills every shard its records fall in, and fails.)
  auto full = MakeTable(config);
  full->LimitShardEntriesForTesting(4);
  RecordScratch scratch;
  EmbeddingHashTable::RestoreBatch batch(full.get(), RestoredState::kAll);
  Status status;
  int added = 0;
  for (const std::string& record : records) {
    int64_t time = 0;
    status = batch.Add(record.data(), record.size(), &scratch, &time);
    ++added;
    if (!status.ok()) break;  // the full batch, flushed by its last record
  }
  EXPECT_EQ(added, 2048);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(full->Size() % 4, 0);
  EXPECT_NE(status.message().find("holds its most entries (4): " +
                                  std::to_string(2048 - full->Size()) +
                                  " of the last 2048 records (ids such as "),
            std::string::npos)
      << status.message();

  // A batch of large entries holds 1 MiB of them (4 KiB entries: 256).
  auto wide = MakeTable(SgdTable(1024));
  EmbeddingHashTable::RestoreBatch wide_batch(wide.get(),
                                              RestoredState::kAll);
  for (int i = 0; i < 256; ++i) {
    EntryDump dump;
    dump.set_id(i);
    dump.mutable_num()->Resize(1024, 0.5f);
    const std::string record = dump.SerializeAsString();
    int64_t time = 0;
    EXPECT_EQ(wide->Size(), 0);  // queued
    ASSERT_OK(wide_batch.Add(record.data(), record.size(), &scratch, &time));
  }
  EXPECT_EQ(wide->Size(), 256);  // written by the 256th

  // A SERVING table skipping zero entries skips them from a batch too.
  auto serving = MakeTable(
      "entry_config { entry_type: SERVING segments { dim_size: 3 "
      "comp_config { fp32 {} } } } skip_zero_embedding: true");
  EntryDump zeros;
  zeros.set_id(-1);
  for (int d = 0; d < 3; ++d) zeros.add_num(0);
  EmbeddingHashTable::RestoreBatch values(serving.get(), RestoredState::kAll);
  for (const std::string& record :
       {records[0], zeros.SerializeAsString(), records[1]}) {
    int64_t time = 0;
    ASSERT_OK(values.Add(record.data(), record.size(), &scratch, &time));
  }
  ASSERT_OK(values.Flush());
  EXPECT_EQ(serving->Size(), 2);
  EXPECT_FALSE(serving->Contains(-1));
}

TEST(EmbeddingHashTableTest, InitialCapacityIsBounded) {
  std::unique_ptr<EmbeddingHashTable> table;
  for (const char* capacity : {"initial_capacity: 17179869185",
                               "initial_capacity: 18446744073709551615"}) {
    const Status s = EmbeddingHashTable::Create(
        ParseConfig(SgdTable(2, capacity)), 7, &table);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << capacity;
    EXPECT_NE(s.message().find("is above 17179869184 entries"),
              std::string::npos)
        << s.message();
  }
}

// A feature slot is 15 bits of the id: an expire time for slot 32768 or
// above would match no id, and that slot's ids would keep the default.
TEST(EmbeddingHashTableTest, SlotExpireTimesNameSlotsInRange) {
  std::unique_ptr<EmbeddingHashTable> table;
  const Status refused = EmbeddingHashTable::Create(
      ParseConfig(SgdTable(2, R"pb(slot_expire_time_config {
        slot_expire_times { slot: 7 expire_time: 1 }
        slot_expire_times { slot: 40000 expire_time: 1 }
      })pb")),
      7, &table);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("slot 40000 is out of range [0, 32768)"),
            std::string::npos)
      << refused.message();
  EXPECT_OK(EmbeddingHashTable::Create(
      ParseConfig(
          SgdTable(2, R"pb(slot_expire_time_config {
                             slot_expire_times { slot: 32767 expire_time: 1 }
                           })pb")),
      7, &table));
  // The last of two times won, silently; the same one twice is harmless.
  const Status twice = EmbeddingHashTable::Create(
      ParseConfig(SgdTable(2, R"pb(slot_expire_time_config {
        slot_expire_times { slot: 7 expire_time: 1 }
        slot_expire_times { slot: 7 expire_time: 30 }
      })pb")),
      7, &table);
  EXPECT_EQ(twice.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(twice.message().find(
                "slot 7 is given twice, with expire_time 1 and 30"),
            std::string::npos)
      << twice.message();
  EXPECT_OK(EmbeddingHashTable::Create(
      ParseConfig(
          SgdTable(2, R"pb(slot_expire_time_config {
                             slot_expire_times { slot: 7 expire_time: 30 }
                             slot_expire_times { slot: 7 expire_time: 30 }
                           })pb")),
      7, &table));
}

// An expire time of 0 days expires every entry it covers at the next save
// or eviction (as the original), and an expire_time left out reads 0: the
// tables' creators warn of it.
TEST(EmbeddingHashTableTest, ZeroExpireTimesAreDescribed) {
  const auto describe = [](const std::string& text) {
    SlotExpireTimeConfig config;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config));
    return DescribeZeroExpireTimes(config);
  };
  EXPECT_EQ(describe(""), "");
  EXPECT_EQ(describe("slot_expire_times { slot: 3 expire_time: 2 }"), "");
  EXPECT_EQ(describe("slot_expire_times { slot: 3 } "
                     "slot_expire_times { slot: 5 expire_time: 1 } "
                     "slot_expire_times { slot: 9 expire_time: 0 }"),
            "slot_expire_time_config: the expire_time of slots 3, 9 is 0 days "
            "(or left out, which reads 0): every entry they cover expires at "
            "the next save or eviction (give the days to keep an entry "
            "without updates; leave a slot out for default_expire_time, "
            "36500 days unless set)");
  const std::string all = describe(
      "default_expire_time: 0 slot_expire_times { slot: 4 expire_time: 0 }");
  EXPECT_EQ(all.rfind("slot_expire_time_config: default_expire_time is 0 "
                      "days, and so is the expire_time of slot 4: every "
                      "entry they cover expires",
                      0),
            0u)
      << all;
}

TEST(EmbeddingHashTableTest, GrowsFromCapacityOneToMillions) {
  auto table = MakeTable(SgdTable(2, "initial_capacity: 1"));
  constexpr int64_t kIds = 2'000'000;
  std::vector<int64_t> ids(kIds);
  std::vector<float> values(kIds * 2);
  for (int64_t i = 0; i < kIds; ++i) {
    // Structured ids: slot in the top bits, a counter below.
    ids[i] = (int64_t{i % 7} << 48) | (i * 2654435761LL % (int64_t{1} << 40));
    values[2 * i] = static_cast<float>(i);
    values[2 * i + 1] = -static_cast<float>(i);
  }
  table->Assign(ids.data(), kIds, values.data(), 1);
  ASSERT_EQ(table->Size(), kIds);
  std::vector<float> out(kIds * 2);
  EXPECT_EQ(table->BatchLookup(ids.data(), kIds, out.data()), kIds);
  EXPECT_EQ(out, values);
  // Memory stays close to the payload: 16-byte slots (id, entry index,
  // update time) at least 3/8 full, plus the entry's 8 bytes of values.
  EXPECT_LT(table->MemoryBytes(), kIds * (16 * 8 / 3 + 8 + 1));
}

TEST(EmbeddingHashTableTest, ClearEmptiesTheTableAndItRefills) {
  // Dim 20,000: entries larger than an arena block's usual 16 KiB.
  for (int dim : {4, 20000}) {
    auto table = MakeTable(SgdTable(dim));
    const int64_t n = dim == 4 ? 100'000 : 40;
    std::vector<int64_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = i * 7919;
    for (int round = 0; round < 2; ++round) {
      std::vector<float> values(n * dim, 1.0f + round);
      table->Assign(ids.data(), n, values.data(), 1);
      ASSERT_EQ(table->Size(), n);
      std::vector<float> out(n * dim);
      EXPECT_EQ(table->BatchLookup(ids.data(), n, out.data()), n);
      EXPECT_EQ(out, values) << "dim " << dim << " round " << round;
      table->Clear();
      EXPECT_EQ(table->Size(), 0);
      EXPECT_EQ(table->BatchLookup(ids.data(), n, out.data()), 0);
      EXPECT_EQ(out, std::vector<float>(n * dim, 0.0f));
    }
  }
}

TEST(EmbeddingHashTableTest, LargeTablesUseHugePagesUnlessTurnedOff) {
  constexpr int64_t kIds = 300'000;
  std::vector<int64_t> ids(kIds);
  for (int64_t i = 0; i < kIds; ++i) ids[i] = i * 104729;
  std::vector<float> values(kIds * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * i;
  for (const char* setting : {"1", "0"}) {
    ASSERT_EQ(setenv("MONOLITH_HASH_TABLE_HUGE_PAGES", setting, 1), 0);
    auto table = MakeTable(SgdTable(4));
    unsetenv("MONOLITH_HASH_TABLE_HUGE_PAGES");
    table->Assign(ids.data(), 1000, values.data(), 1);
    EXPECT_EQ(table->HugePageBytes(), 0) << "small tables stay on the heap";
    table->Assign(ids.data(), kIds, values.data(), 1);
    if (std::string(setting) == "1") {
      EXPECT_GT(table->HugePageBytes(), 0);
    } else {
      EXPECT_EQ(table->HugePageBytes(), 0);
    }
    EXPECT_GE(table->MemoryBytes(), table->HugePageBytes());
    std::vector<float> out(kIds * 4);
    EXPECT_EQ(table->BatchLookup(ids.data(), kIds, out.data()), kIds);
    EXPECT_EQ(out, values) << "MONOLITH_HASH_TABLE_HUGE_PAGES=" << setting;
  }
}

TEST(EmbeddingHashTableTest, RepeatsOfANewIdMakeRoomForOneEntry) {
  // A padding id repeated through a batch, into a new table: room for one
  // entry, as one occurrence makes (room for each repeat grew its shard to
  // 4,096 slots, on huge pages, and readied arena blocks for 2,048).
  constexpr int64_t kRepeats = 4096;
  const std::vector<int64_t> repeated(kRepeats, 42);
  std::vector<float> values(kRepeats * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.5f * i;
  ASSERT_EQ(setenv("MONOLITH_HASH_TABLE_HUGE_PAGES", "1", 1), 0);
  auto table = MakeTable(SgdTable(4));
  auto once = MakeTable(SgdTable(4));
  unsetenv("MONOLITH_HASH_TABLE_HUGE_PAGES");
  table->Assign(repeated.data(), kRepeats, values.data(), 1);
  once->Assign(repeated.data(), 1, values.data(), 1);
  EXPECT_EQ(table->Size(), 1);
  EXPECT_EQ(table->HugePageBytes(), 0);
  EXPECT_EQ(table->MemoryBytes(), once->MemoryBytes());
  std::vector<float> out(4);
  EXPECT_EQ(table->BatchLookup(repeated.data(), 1, out.data()), 1);
  EXPECT_EQ(out, std::vector<float>(values.end() - 4, values.end()))
      << "the last occurrence's values";
}

TEST(EmbeddingHashTableTest, TablesOfLargeEntriesUseHugePagesSooner) {
  // 50k ids: entries of dim 128 (~520 bytes, 26 MB in all) are pooled,
  // entries of dim 4 (0.5 MB in all) stay on the heap.
  constexpr int64_t kIds = 50'000;
  std::vector<int64_t> ids(kIds);
  for (int64_t i = 0; i < kIds; ++i) ids[i] = i * 7919;
  for (int dim : {128, 4}) {
    ASSERT_EQ(setenv("MONOLITH_HASH_TABLE_HUGE_PAGES", "1", 1), 0);
    auto table = MakeTable(SgdTable(dim));
    unsetenv("MONOLITH_HASH_TABLE_HUGE_PAGES");
    std::vector<float> values(kIds * dim);
    for (size_t i = 0; i < values.size(); ++i) values[i] = 0.5f * i;
    table->Assign(ids.data(), kIds, values.data(), 1);
    if (dim == 128) {
      EXPECT_GT(table->HugePageBytes(), 0);
    } else {
      EXPECT_EQ(table->HugePageBytes(), 0);
    }
    std::vector<float> out(kIds * dim);
    EXPECT_EQ(table->BatchLookup(ids.data(), kIds, out.data()), kIds);
    EXPECT_EQ(out, values) << "dim " << dim;
  }
}

TEST(EmbeddingHashTableTest, EraseKeepsProbeChainsIntact) {
  // Erasing through skip_zero_embedding must leave every other id findable,
  // whatever cluster it sat in.
  auto table = MakeTable(R"pb(
    entry_config {
      entry_type: SERVING
      segments { dim_size: 1 comp_config { fp32 {} } }
    }
    skip_zero_embedding: true)pb");
  constexpr int kIds = 20000;
  std::vector<int64_t> ids(kIds);
  std::vector<float> values(kIds);
  for (int i = 0; i < kIds; ++i) {
    ids[i] = i;
    values[i] = i + 1.0f;
  }
  table->Assign(ids.data(), kIds, values.data(), 1);
  const float zero = 0;
  for (int i = 0; i < kIds; i += 3) table->Assign(&ids[i], 1, &zero, 2);
  for (int i = 0; i < kIds; ++i) {
    ASSERT_EQ(table->Contains(i), i % 3 != 0) << i;
    if (i % 3 != 0) {
      ASSERT_EQ(LookupOne(*table, i)[0], i + 1.0f);
    }
  }
  EXPECT_EQ(table->Size(), kIds - (kIds + 2) / 3);
}

TEST(EmbeddingHashTableTest, EraseFreesEntriesThatNewIdsReuse) {
  auto table = MakeTable(SgdTable(4));
  constexpr int kIds = 50000;
  std::vector<int64_t> ids(kIds);
  for (int i = 0; i < kIds; ++i) ids[i] = i * 31;
  std::vector<float> values(kIds * 4, 2.0f);
  table->Assign(ids.data(), kIds, values.data(), 1);
  const int64_t memory = table->MemoryBytes();
  EXPECT_TRUE(table->Erase(ids[7]));
  EXPECT_FALSE(table->Erase(ids[7]));
  EXPECT_FALSE(table->Contains(ids[7]));
  for (int i = 0; i < kIds; i += 2) table->Erase(ids[i]);
  EXPECT_EQ(table->Size(), kIds / 2 - 1);
  // As many new ids as were erased go mostly into the freed entries (a shard
  // that gets more new ids than it freed takes a few new blocks).
  std::vector<int64_t> fresh(kIds / 2 + 1);
  for (size_t i = 0; i < fresh.size(); ++i) fresh[i] = -1 - int64_t(i);
  table->Assign(fresh.data(), fresh.size(), values.data(), 2);
  EXPECT_EQ(table->Size(), kIds);
  EXPECT_LT(table->MemoryBytes(), memory * 11 / 10);
  EXPECT_EQ(LookupOne(*table, fresh.back()), std::vector<float>(4, 2.0f));
  EXPECT_EQ(LookupOne(*table, ids[1]), std::vector<float>(4, 2.0f));
}

// All optimizers the engine knows, for the save/restore round trip.
const char* const kOptimizers[] = {
    "sgd { learning_rate: 0.1 }",
    "adagrad { initial_accumulator_value: 0.1 weight_decay_factor: 0.01 }",
    "ftrl { beta: 0.5 l1_regularization_strength: 0.01 "
    "l2_regularization_strength: 0.1 }",
    "dynamic_wd_adagrad { weight_decay_factor: 0.01 enable_dynamic_wd: true }",
    "adadelta { weight_decay_factor: 0.01 }",
    "adam { use_beta1_warmup: true weight_decay_factor: 0.01 }",
    "amsgrad { weight_decay_factor: 0.01 }",
    "momentum { use_nesterov: true weight_decay_factor: 0.01 }",
    "moving_average { momentum: 0.8 }",
    "rmsprop { weight_decay_factor: 0.01 }",
    "rmspropv2 { weight_decay_factor: 0.01 }",
    "group_ftrl { l1_regularization_strength: 0.01 "
    "l2_regularization_strength: 0.1 }",
    "group_adagrad { l2_regularization_strength: 0.1 "
    "weight_decay_factor: 0.01 }",
    "batch_softmax { learning_rate: 0.1 }",
    "adagrad {} stochastic_rounding_float16: true",
};

class OptimizerRoundTripTest : public ::testing::TestWithParam<const char*> {};

TEST_P(OptimizerRoundTripTest, RestoredTableContinuesTrainingExactly) {
  // batch_softmax keeps one value per entry.
  const int dim = std::string(GetParam()).rfind("batch_softmax", 0) == 0 ? 1 : 4;
  const std::string config =
      "entry_config { segments { dim_size: " + std::to_string(dim) +
      " init_config { random_uniform { minval: -1 maxval: 1 } } "
      "opt_config { " + GetParam() + " } } }";
  auto saved = MakeTable(config);
  constexpr int kIds = 300;
  std::vector<int64_t> ids(kIds);
  for (int i = 0; i < kIds; ++i) ids[i] = i * 7919 - 1000;
  auto train = [&](EmbeddingHashTable* table, int step) {
    std::vector<float> grads(kIds * dim);
    for (size_t j = 0; j < grads.size(); ++j) {
      grads[j] = 0.01f * static_cast<float>((j * 31 + step * 17) % 13) - 0.06f;
    }
    const std::vector<float> lrs(table->SliceSize(), 0.05f);
    // Same rounding draws for both tables at the same step.
    SeedStochasticRounding(step);
    ASSERT_OK(table->BatchOptimize(ids.data(), kIds, grads.data(), lrs.data(),
                                   1000 + step, step));
  };
  for (int step = 0; step < 3; ++step) train(saved.get(), step);

  // One table restored from the parsed dumps, one from the records (read
  // without parsing where the entry layout allows it).
  // Stochastic rounding draws in the order ids are applied, which the
  // table's seed sets (its hash places ids): the same seed, the same draws.
  const bool same_order =
      std::string(GetParam()).find("stochastic_rounding") != std::string::npos;
  auto restored = MakeTable(config, /*seed=*/same_order ? 7 : 99);
  auto from_records = MakeTable(config, /*seed=*/same_order ? 7 : 98);
  for (int shard = 0; shard < 3; ++shard) {
    ASSERT_OK(saved->Save(shard, 3, 0, [&](const SavedEntry& entry) {
      const EntryDump dump = ParseSaved(entry);
      // The record is protobuf's own encoding.
      EXPECT_EQ(std::string(entry.dump, entry.dump_size),
                dump.SerializeAsString());
      RecordScratch scratch;
      int64_t update_time = -1;
      MONOLITH_RETURN_IF_ERROR(from_records->RestoreRecord(
          entry.dump, entry.dump_size, &scratch, &update_time));
      EXPECT_EQ(update_time, entry.update_time);
      return restored->Restore(dump);
    }));
  }
  ASSERT_EQ(restored->Size(), kIds);
  ASSERT_EQ(from_records->Size(), kIds);
  for (int step = 3; step < 6; ++step) {
    train(saved.get(), step);
    train(restored.get(), step);
    train(from_records.get(), step);
  }
  std::vector<EntryDump> a(kIds), b(kIds), c(kIds);
  saved->BatchLookupEntry(ids.data(), kIds, a.data());
  restored->BatchLookupEntry(ids.data(), kIds, b.data());
  from_records->BatchLookupEntry(ids.data(), kIds, c.data());
  for (int i = 0; i < kIds; ++i) {
    ASSERT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString())
        << GetParam() << "\n" << a[i].ShortDebugString() << "\n"
        << b[i].ShortDebugString();
    ASSERT_EQ(a[i].SerializeAsString(), c[i].SerializeAsString())
        << GetParam() << "\n" << a[i].ShortDebugString() << "\n"
        << c[i].ShortDebugString();
  }
  std::printf("%s: records read %s\n", GetParam(),
              saved->accessor().DumpFieldsBytes() > 0 ? "without parsing"
                                                      : "by parsing");
}

INSTANTIATE_TEST_SUITE_P(AllOptimizers, OptimizerRoundTripTest,
                         ::testing::ValuesIn(kOptimizers));

// Saved records are written field by field (wire_writer.h); they must be
// the bytes protobuf writes for the same EntryDump: with nested lengths of
// 1, 2 and 3 bytes, several segments, and serving entries.
TEST(EmbeddingHashTableTest, SavedRecordsAreProtobufsOwnEncoding) {
  const std::string configs[] = {
      "entry_config { segments { dim_size: 40 init_config { random_uniform "
      "{} } opt_config { adagrad {} } } }",
      "entry_config { segments { dim_size: 5000 init_config { random_uniform "
      "{} } opt_config { ftrl {} } } }",
      "entry_config { segments { dim_size: 3 init_config { ones {} } "
      "opt_config { adam {} } } segments { dim_size: 30 init_config { "
      "random_uniform {} } opt_config { dynamic_wd_adagrad {} } } }",
      "entry_config { entry_type: SERVING segments { dim_size: 9 "
      "comp_config { fp16 {} } } segments { dim_size: 2 comp_config { "
      "fp32 {} } } }",
  };
  for (const std::string& config : configs) {
    auto table = MakeTable(config);
    const int64_t ids[3] = {-5, 0, int64_t{1} << 62};
    std::vector<float> values(3 * table->DimSize());
    for (size_t i = 0; i < values.size(); ++i) values[i] = 0.25f * i - 3;
    table->Assign(ids, 3, values.data(), int64_t{1} << 40);
    int saved = 0;
    ASSERT_OK(table->Save(0, 1, 0, [&](const SavedEntry& entry) {
      ++saved;
      EXPECT_EQ(std::string(entry.dump, entry.dump_size),
                ParseSaved(entry).SerializeAsString())
          << config;
      return Status::OK();
    }));
    EXPECT_EQ(saved, 3) << config;

    // lookup_entry's records: BatchLookupEntry's dumps serialized, a
    // missing id's empty, in the order of the ids (grouped by shard to
    // write them); an entry of time 0 keeps its time field.
    const int64_t zero_time = 77;
    table->Assign(&zero_time, 1, values.data(), 0);
    const int64_t asked[6] = {int64_t{1} << 62, 12345, -5, zero_time, 0, -5};
    std::vector<EntryDump> dumps(6);
    table->BatchLookupEntry(asked, 6, dumps.data());
    WireWriter records;
    records.Fixed64(1, 9);  // appended after what it holds
    std::vector<std::pair<size_t, size_t>> spans(2);
    table->BatchLookupRecords(asked, 6, &records, &spans);
    ASSERT_EQ(spans.size(), 6u);
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(std::string(records.data() + spans[i].first,
                            spans[i].second - spans[i].first),
                dumps[i].SerializeAsString())
          << config << ", id " << asked[i];
    }
    EXPECT_EQ(spans[1].first, spans[1].second);  // missing
    EXPECT_TRUE(dumps[3].has_last_update_ts_sec());
  }
}

TEST(EmbeddingHashTableTest, SaveWritesEveryEntryOnceForAnyShardCount) {
  auto table = MakeTable(SgdTable(1));
  constexpr int kIds = 5000;
  std::vector<int64_t> ids(kIds);
  std::vector<float> values(kIds);
  for (int i = 0; i < kIds; ++i) {
    ids[i] = i * 104729LL;
    values[i] = static_cast<float>(i);
  }
  table->Assign(ids.data(), kIds, values.data(), 1);
  for (int num_shards : {1, 3, 64, 65, 100, 129, 200}) {
    std::map<int64_t, int> seen;
    for (int shard = 0; shard < num_shards; ++shard) {
      ASSERT_OK(table->Save(shard, num_shards, 0, [&](const SavedEntry& entry) {
        const int64_t id = ParseSaved(entry).id();
        ++seen[id];
        // One internal shard's ids only: a dump shard
        // reads no other's slots.
        EXPECT_EQ(table->ShardOfIdForTesting(id) % std::min(num_shards, 64),
                  shard % std::min(num_shards, 64))
            << num_shards;
        return Status::OK();
      }));
    }
    ASSERT_EQ(seen.size(), static_cast<size_t>(kIds)) << num_shards;
    for (const auto& [id, count] : seen) ASSERT_EQ(count, 1) << id;
  }
  EXPECT_EQ(table->Save(3, 3, 0, nullptr).code(),
            StatusCode::kInvalidArgument);
}

TEST(EmbeddingHashTableTest, SaveSkipsExpiredEntriesAndStopsOnWriteError) {
  auto table = OneDayExpiryTable(1);
  const int64_t ids[2] = {1, 2};
  const float values[2] = {1, 2};
  table->Assign(&ids[0], 1, &values[0], 10);
  table->Assign(&ids[1], 1, &values[1], 10 + 2 * kSecondsPerDay);
  std::vector<int64_t> written;
  ASSERT_OK(
      table->Save(0, 1, 10 + 2 * kSecondsPerDay, [&](const SavedEntry& entry) {
        written.push_back(ParseSaved(entry).id());
        return Status::OK();
      }));
  EXPECT_EQ(written, std::vector<int64_t>{2});
  Status s = table->Save(0, 1, 0, [](const SavedEntry&) {
    return DataLossError("disk full");
  });
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
}

TEST(EmbeddingHashTableTest, ValuesOnlyRestoresStartTheOptimizerStateAfresh) {
  const std::string adagrad =
      "entry_config { segments { dim_size: 2 init_config { zeros {} } "
      "opt_config { adagrad { initial_accumulator_value: 0.5 } } } }";
  auto saved = MakeTable(adagrad);
  const int64_t id = 42;
  const float values[] = {1.5f, -2.5f};
  saved->Assign(&id, 1, values, 1000);
  const float grads[] = {3, 4};
  const float rate = 0.1f;
  ASSERT_OK(saved->BatchOptimize(&id, 1, grads, &rate, 1000, 1));
  std::string record;
  ASSERT_OK(saved->Save(0, 1, 0, [&](const SavedEntry& entry) {
    record.assign(entry.dump, entry.dump_size);
    return Status::OK();
  }));
  EntryDump saved_entry;
  saved->BatchLookupEntry(&id, 1, &saved_entry);
  RecordScratch scratch;
  int64_t time = 0;

  // Into SGD: the adagrad state does not fit, unless left out.
  auto sgd = MakeTable(SgdTable(2));
  Status status = sgd->CheckRecord(record.data(), record.size(), &scratch);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("'adagrad', expected 'sgd'"),
            std::string::npos)
      << status.message();
  EXPECT_EQ(sgd->RestoreRecord(record.data(), record.size(), &scratch, &time)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(sgd->Size(), 0);
  ASSERT_OK(sgd->CheckRecord(record.data(), record.size(), &scratch,
                             RestoredState::kValuesOnly));
  ASSERT_OK(sgd->RestoreRecord(record.data(), record.size(), &scratch, &time,
                               RestoredState::kValuesOnly));
  EXPECT_EQ(time, 1000);
  EntryDump restored;
  sgd->BatchLookupEntry(&id, 1, &restored);
  EXPECT_EQ(std::vector<float>(restored.num().begin(), restored.num().end()),
            std::vector<float>(saved_entry.num().begin(),
                               saved_entry.num().end()));
  EXPECT_EQ(restored.last_update_ts_sec(), 1000);

  // Into the same config: the values, and a new entry's accumulators where
  // a whole restore (the in-place path) keeps the trained ones.
  auto fresh = MakeTable(adagrad);
  const int64_t other = 7;
  EntryDump new_entry;
  fresh->Assign(&other, 1, values, 1);
  fresh->BatchLookupEntry(&other, 1, &new_entry);
  ASSERT_OK(fresh->RestoreRecord(record.data(), record.size(), &scratch, &time,
                                 RestoredState::kValuesOnly));
  fresh->BatchLookupEntry(&id, 1, &restored);
  EXPECT_EQ(restored.num(0), saved_entry.num(0));
  EXPECT_EQ(restored.num(1), saved_entry.num(1));
  EXPECT_EQ(restored.opt().SerializeAsString(),
            new_entry.opt().SerializeAsString());
  EXPECT_NE(restored.opt().SerializeAsString(),
            saved_entry.opt().SerializeAsString());
  ASSERT_OK(
      fresh->RestoreRecord(record.data(), record.size(), &scratch, &time));
  fresh->BatchLookupEntry(&id, 1, &restored);
  EXPECT_EQ(restored.opt().SerializeAsString(),
            saved_entry.opt().SerializeAsString());
}

// Records of other shapes than Save's are parsed, with the same result as
// Restore of the parsed dump; records that are not EntryDumps are DataLoss.
// SERVING tables read the values of training records and skip their state.
TEST(EmbeddingHashTableTest, RestoreRecordReadsEveryShapeOfEntryDump) {
  const std::string configs[] = {
      "entry_config { segments { dim_size: 2 init_config { ones {} } "
      "opt_config { adagrad { initial_accumulator_value: 0.5 } } } }",
      "entry_config { entry_type: SERVING segments { dim_size: 2 "
      "comp_config { fp16 {} } } } skip_zero_embedding: true",
  };
  for (const std::string& config : configs) {
    SCOPED_TRACE(config);
    auto table = MakeTable(config);
    const bool serving = table->accessor().serving();
    if (!serving) {
      ASSERT_GT(table->accessor().DumpFieldsBytes(), 0u);
    }
    EntryDump full;
    full.set_id(-5);
    full.add_num(1.5f);
    full.add_num(-2.5f);
    full.mutable_opt()->add_dump()->mutable_adagrad()->add_norm(3);
    full.mutable_opt()->mutable_dump(0)->mutable_adagrad()->add_norm(4);
    full.set_last_update_ts_sec(77);
    EntryDump no_time = full;
    no_time.clear_last_update_ts_sec();
    no_time.set_id(6);
    EntryDump no_opt = full;
    no_opt.clear_opt();
    no_opt.set_id(7);
    EntryDump negative_time = full;
    negative_time.set_id(8);
    negative_time.set_last_update_ts_sec(-3);
    EntryDump zeros = full;
    zeros.set_id(9);
    zeros.set_num(0, 0);
    zeros.set_num(1, 0);
    // Below fp16's smallest value: zero once compressed, but not skipped.
    EntryDump tiny = full;
    tiny.set_id(11);
    tiny.set_num(0, 1e-12f);
    tiny.set_num(1, 0);
    RecordScratch scratch;
    int64_t update_time = 0;
    // Every record is checked first: CheckRecord agrees with RestoreRecord
    // and changes nothing.
    auto restore = [&](const std::string& record) {
      const int64_t size_before = table->Size();
      const Status checked =
          table->CheckRecord(record.data(), record.size(), &scratch);
      EXPECT_EQ(table->Size(), size_before);
      const Status restored = table->RestoreRecord(
          record.data(), record.size(), &scratch, &update_time);
      EXPECT_EQ(checked.code(), restored.code()) << restored.message();
      return restored;
    };
    ASSERT_OK(restore(full.SerializeAsString()));
    EXPECT_EQ(update_time, 77);
    ASSERT_OK(restore(no_time.SerializeAsString()));
    EXPECT_EQ(update_time, 0);
    ASSERT_OK(restore(no_opt.SerializeAsString()));
    ASSERT_OK(restore(negative_time.SerializeAsString()));
    EXPECT_EQ(update_time, -3);
    ASSERT_OK(restore(zeros.SerializeAsString()));
    EXPECT_EQ(table->Contains(9), !serving);  // skipped by SERVING tables
    ASSERT_OK(restore(tiny.SerializeAsString()));
    EXPECT_TRUE(table->Contains(11));
    // An unknown field after the known ones.
    EntryDump unknown = full;
    unknown.set_id(10);
    ASSERT_OK(restore(unknown.SerializeAsString() +
                      std::string("\x28\x01", 2))  // field 5, varint 1
    );

    // The same dumps through Restore give the same entries.
    auto parsed = MakeTable(config);
    for (EntryDump* dump :
         {&full, &no_time, &no_opt, &negative_time, &zeros, &tiny, &unknown}) {
      ASSERT_OK(parsed->Restore(*dump));
    }
    const int64_t ids[] = {-5, 6, 7, 8, 10, 11};
    constexpr int kIds = 6;
    std::vector<EntryDump> a(kIds), b(kIds);
    table->BatchLookupEntry(ids, kIds, a.data());
    parsed->BatchLookupEntry(ids, kIds, b.data());
    for (int i = 0; i < kIds; ++i) {
      EXPECT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString())
          << a[i].ShortDebugString() << " vs " << b[i].ShortDebugString();
    }
    EXPECT_EQ(a[0].last_update_ts_sec(), 77);
    EXPECT_EQ(a[0].num(1), -2.5f);
    if (!serving) {
      EXPECT_EQ(a[2].opt().dump(0).adagrad().norm(0), 0.5f);  // initialized
    }

    // Not an EntryDump: DataLoss, nothing inserted; a wrong dim: rejected.
    const int64_t size = table->Size();
    std::string truncated = full.SerializeAsString();
    truncated.resize(truncated.size() - 6);
    EXPECT_EQ(restore(truncated).code(), StatusCode::kDataLoss);
    EXPECT_EQ(restore(std::string("\xff\xff\xff", 3)).code(),
              StatusCode::kDataLoss);
    full.set_id(12);
    full.add_num(1);
    EXPECT_EQ(restore(full.SerializeAsString()).code(),
              StatusCode::kInvalidArgument);
    EXPECT_EQ(table->Size(), size);
  }
}

TEST(EmbeddingHashTableTest, RestoreRejectsAnEntryOfAnotherDim) {
  auto table = MakeTable(SgdTable(2));
  EntryDump dump;
  dump.set_id(3);
  dump.add_num(1);
  Status s = table->Restore(dump);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(table->Contains(3));
}

// Writers add the same gradient to every dim of shared ids while readers
// check that no entry is ever seen half-updated and that no update is lost.
TEST(EmbeddingHashTableTest, ConcurrentOptimizeAndLookup) {
  constexpr int kDim = 16;
  auto table = MakeTable(SgdTable(kDim));
  constexpr int kIds = 2000, kWriters = 3, kReaders = 2, kRounds = 50;
  std::vector<int64_t> ids(kIds);
  for (int i = 0; i < kIds; ++i) ids[i] = i;
  std::atomic<bool> done{false};
  std::atomic<int64_t> torn{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&] {
      const std::vector<float> grads(kIds * kDim, -1.0f);
      const float lr = 1.0f;
      for (int r = 0; r < kRounds; ++r) {
        ASSERT_OK(
            table->BatchOptimize(ids.data(), kIds, grads.data(), &lr, 1, r));
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&] {
      std::vector<float> out(kIds * kDim);
      while (!done.load()) {
        table->BatchLookup(ids.data(), kIds, out.data());
        for (int i = 0; i < kIds; ++i) {
          for (int d = 1; d < kDim; ++d) {
            if (out[i * kDim + d] != out[i * kDim]) ++torn;
          }
        }
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  done = true;
  for (size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(torn.load(), 0);
  std::vector<float> out(kIds * kDim);
  table->BatchLookup(ids.data(), kIds, out.data());
  EXPECT_EQ(out, std::vector<float>(kIds * kDim, kWriters * kRounds));
}

// Growth builds a shard's new slot array while lookups go on: readers must
// find every id inserted before their lookup began, with its value, however
// the shards grow meanwhile (also from several writers at once).
// Dim 2 takes the grouped lookup path, dim 8 (batches of 4,000 ids) the
// streamed one, which holds every shard while writers grow them.
TEST(EmbeddingHashTableTest, LookupsDuringGrowthFindEveryInsertedId) {
  for (const int dim : {2, 8}) {
    SCOPED_TRACE(dim);
    auto table = MakeTable(SgdTable(dim, "initial_capacity: 1"));
    EXPECT_EQ(table->LongestGrowthNanos(), 0);
    constexpr int64_t kIds = 400'000, kBatch = 4'000, kWriters = 2;
    std::atomic<int64_t> published{0};  // ids [0, published) are in the table
    std::atomic<int64_t> wrong{0};
    std::atomic<bool> done{false};
    std::thread reader([&] {
      std::vector<int64_t> probe(kBatch);
      std::vector<float> out(kBatch * dim);
      uint64_t state = 1;
      while (!done.load()) {
        const int64_t known = published.load();
        if (known == 0) continue;
        for (auto& id : probe) {
          state = state * 6364136223846793005ULL + 1442695040888963407ULL;
          id = static_cast<int64_t>((state >> 17) % known);
        }
        table->BatchLookup(probe.data(), kBatch, out.data());
        for (int64_t i = 0; i < kBatch; ++i) {
          if (out[dim * i] != probe[i] + 1 || out[dim * i + 1] != -probe[i]) {
            ++wrong;
          }
        }
      }
    });
    // Writer w inserts the batches b with b % kWriters == w, in order; ids
    // are published once every batch below them is in.
    std::vector<std::atomic<bool>> inserted(kIds / kBatch);
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        std::vector<int64_t> ids(kBatch);
        std::vector<float> values(kBatch * dim, 0.0f);
        for (int64_t b = w; b < kIds / kBatch; b += kWriters) {
          for (int64_t i = 0; i < kBatch; ++i) {
            ids[i] = b * kBatch + i;
            values[dim * i] = static_cast<float>(ids[i] + 1);
            values[dim * i + 1] = -static_cast<float>(ids[i]);
          }
          table->Assign(ids.data(), kBatch, values.data(), 1);
          inserted[b] = true;
          int64_t next = published.load() / kBatch;
          while (next < kIds / kBatch && inserted[next]) ++next;
          int64_t seen = published.load();
          while (seen < next * kBatch &&
                 !published.compare_exchange_weak(seen, next * kBatch)) {
          }
        }
      });
    }
    for (auto& writer : writers) writer.join();
    done = true;
    reader.join();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_EQ(table->Size(), kIds);
    EXPECT_GT(table->LongestGrowthNanos(), 0);
    // A cleared table starts its figure over (a refill measures its own).
    table->Clear();
    EXPECT_EQ(table->LongestGrowthNanos(), 0);
  }
}

// The ids and values the streamed-path tests first write: kHeldIds ids,
// id i's values i + 0.01 * d.
constexpr int64_t kHeldIds = 3000;
struct HeldEntries {
  explicit HeldEntries(int dim) : ids(kHeldIds), values(kHeldIds * dim) {
    for (int64_t i = 0; i < kHeldIds; ++i) {
      ids[i] = i * 7919 - 5000;
      for (int d = 0; d < dim; ++d) values[i * dim + d] = i + 0.01f * d;
    }
  }
  std::vector<int64_t> ids;
  std::vector<float> values;
};

// |n| ids drawn (seeded by n) from |held| and from as many absent ones
// again as a third of the held: about a third absent, with repeats.
std::vector<int64_t> DrawIds(int64_t n, const std::vector<int64_t>& held) {
  std::vector<int64_t> ids(n);
  const int64_t choices = static_cast<int64_t>(held.size()) * 3 / 2;
  uint64_t state = static_cast<uint64_t>(n);
  for (auto& id : ids) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const int64_t k = static_cast<int64_t>((state >> 20) % choices);
    id = k < static_cast<int64_t>(held.size()) ? held[k] : k * 31 + 1;
  }
  return ids;
}

// Streamed lookups (1,024 ids or more, in runs of 2,048) give what one-id
// lookups give: values of present ids, zeros for absent ones, the count of
// hits; at the threshold, across runs, and with a tail shorter than the
// pipeline.
TEST(EmbeddingHashTableTest, StreamedLookupsMatchOneIdLookups) {
  constexpr int kDim = 16;
  auto table = MakeTable(SgdTable(kDim));
  const HeldEntries held(kDim);
  table->Assign(held.ids.data(), kHeldIds, held.values.data(), 1);
  for (const int64_t n : {1023, 1024, 2048, 2049, 4100}) {
    SCOPED_TRACE(n);
    const std::vector<int64_t> probe = DrawIds(n, held.ids);
    std::vector<float> batch(n * kDim, -1.0f), single(n * kDim, -1.0f);
    const int64_t hits = table->BatchLookup(probe.data(), n, batch.data());
    int64_t single_hits = 0;
    for (int64_t i = 0; i < n; ++i) {
      single_hits += table->BatchLookup(&probe[i], 1, &single[i * kDim]);
    }
    EXPECT_EQ(hits, single_hits);
    EXPECT_GT(hits, n / 2);
    EXPECT_LT(hits, n);
    EXPECT_EQ(batch, single);
  }
}

// Updates of 1,024 ids or more stream while they are the table's only
// writer; each run's absent ids are inserted after it, and a run of mostly
// new ids sends the rest of the batch down the grouped path. Whatever the
// path, a batch leaves what its ids one at a time leave: every entry's
// values, optimizer state and time, the ids admitted (admission asked for
// the same occurrences), each id's repeats applied in order. Sizes around
// the threshold and the run (2,048), with repeats and about a third absent
// ids, on a table holding the rest, on one whose shards are full, and on
// an empty one.
TEST(EmbeddingHashTableTest, StreamedUpdatesMatchOneIdUpdates) {
  constexpr int kDim = 16;
  const std::string config =
      "entry_config { segments { dim_size: 16 init_config { zeros {} } "
      "opt_config { adagrad { initial_accumulator_value: 0.1 } } } }";
  const HeldEntries held(kDim);
  const float lr = 0.5f;
  // Admits about two in three absent occurrences, by position.
  const auto admits = [](int64_t index) { return index % 3 != 1; };
  enum Op { kAssign, kAssignAdd, kOptimize, kReinitialize };
  enum Start { kFilled, kFull, kEmpty };
  for (const Start start : {kFilled, kFull, kEmpty}) {
    for (const int64_t n : {1023, 1024, 2048, 2049, 5000}) {
      for (const Op op : {kAssign, kAssignAdd, kOptimize, kReinitialize}) {
        SCOPED_TRACE(::testing::Message() << "start " << start << " n " << n
                                          << " op " << op);
        auto batch = MakeTable(config);
        auto single = MakeTable(config);
        for (auto* table : {batch.get(), single.get()}) {
          if (start == kEmpty) continue;
          // ~47 ids a shard: some shards take a few more, some no more.
          if (start == kFull) table->LimitShardEntriesForTesting(50);
          table->Assign(held.ids.data(), kHeldIds, held.values.data(), 1);
        }
        const std::vector<int64_t> ids = DrawIds(n, held.ids);
        std::vector<float> inputs(n * kDim);
        for (int64_t i = 0; i < n * kDim; ++i) inputs[i] = 0.001f * (i % 997);
        std::vector<int> batch_status(n, -1), single_status(n, -1);
        // The positions admission was asked for, per table.
        std::vector<int64_t> batch_asked, single_asked;
        const auto apply = [&](EmbeddingHashTable* table, int64_t begin,
                               int64_t count, int* status) {
          const int64_t* at = ids.data() + begin;
          const float* in = inputs.data() + begin * kDim;
          std::vector<int64_t>* asked =
              table == batch.get() ? &batch_asked : &single_asked;
          const EmbeddingHashTable::AdmitFn admit = [&](int64_t index) {
            asked->push_back(begin + index);
            return admits(begin + index);
          };
          switch (op) {
            case kAssign:
              table->Assign(at, count, in, 2, admit);
              break;
            case kAssignAdd:
              table->AssignAdd(at, count, in, 2, admit);
              break;
            case kOptimize:
              ASSERT_OK(table->BatchOptimize(at, count, in, &lr, 2, 1, admit));
              break;
            case kReinitialize:
              table->Reinitialize(at, count, status, 2);
              break;
          }
        };
        apply(batch.get(), 0, n, batch_status.data());
        for (int64_t i = 0; i < n; ++i) {
          apply(single.get(), i, 1, &single_status[i]);
        }
        EXPECT_EQ(batch->Size(), single->Size());
        EXPECT_GT(batch->Size(), start == kFilled ? kHeldIds : 0);
        EXPECT_EQ(batch_status, single_status);
        std::sort(batch_asked.begin(), batch_asked.end());
        EXPECT_EQ(batch_asked, single_asked);
        std::vector<int64_t> all = held.ids;
        all.insert(all.end(), ids.begin(), ids.end());
        std::vector<EntryDump> batch_dumps(all.size());
        std::vector<EntryDump> single_dumps(all.size());
        batch->BatchLookupEntry(all.data(), all.size(), batch_dumps.data());
        single->BatchLookupEntry(all.data(), all.size(), single_dumps.data());
        for (size_t i = 0; i < all.size(); ++i) {
          ASSERT_EQ(batch_dumps[i].SerializeAsString(),
                    single_dumps[i].SerializeAsString())
              << "id " << all[i] << ": " << batch_dumps[i].DebugString()
              << " vs " << single_dumps[i].DebugString();
        }
      }
    }
  }
}

// Large updates from several writers at once (the first streams, the
// others and then the rest of its batch take the grouped path) beside
// lookups: no lookup sees a half-written entry and every occurrence of
// every id is applied once.
TEST(EmbeddingHashTableTest, ConcurrentLargeUpdatesApplyEveryOccurrence) {
  constexpr int kDim = 4, kIds = 5000, kWriters = 3, kRounds = 20;
  auto table = MakeTable(SgdTable(kDim));
  std::vector<int64_t> batch;  // each id twice, kIds apart
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t id = 0; id < kIds; ++id) batch.push_back(id * 104729);
  }
  const std::vector<float> ones(batch.size() * kDim, 1.0f);
  std::atomic<bool> done{false};
  std::atomic<int64_t> torn{0};
  std::thread reader([&] {
    std::vector<float> out(kIds * kDim);
    while (!done.load()) {
      table->BatchLookup(batch.data(), kIds, out.data());
      for (int i = 0; i < kIds; ++i) {
        for (int d = 1; d < kDim; ++d) {
          if (out[i * kDim + d] != out[i * kDim]) ++torn;
        }
      }
    }
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&] {
      for (int r = 0; r < kRounds; ++r) {
        table->AssignAdd(batch.data(), static_cast<int64_t>(batch.size()),
                         ones.data(), 1);
      }
    });
  }
  for (auto& writer : writers) writer.join();
  done = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0);
  ASSERT_EQ(table->Size(), kIds);
  std::vector<float> out(kIds * kDim);
  EXPECT_EQ(table->BatchLookup(batch.data(), kIds, out.data()), kIds);
  EXPECT_EQ(out, std::vector<float>(kIds * kDim, 2.0f * kWriters * kRounds));
}

// A streamed update whose table gains a second writer mid-batch (one that
// holds a shard, waiting in its admission) sends the rest of its batch down
// the grouped path: it finishes without waiting for that writer's shard
// (its other ids lie elsewhere), and applies every occurrence once.
TEST(EmbeddingHashTableTest, StreamedUpdateGoesGroupedBesideAnotherWriter) {
  constexpr int kDim = 2;
  auto table = MakeTable(SgdTable(kDim));
  // Ids by shard; shard 0 holds the other writer's id.
  std::vector<int64_t> present;
  int64_t other_writers_id = -1, absent_id = -1;
  for (int64_t id = 1;
       present.size() < 6000 || absent_id < 0 || other_writers_id < 0; ++id) {
    const int64_t spread = id * 7919;
    const bool shard0 = table->ShardOfIdForTesting(spread) == 0;
    if (shard0 && other_writers_id < 0) {
      other_writers_id = spread;
    } else if (!shard0 && absent_id < 0) {
      absent_id = spread;
    } else if (!shard0 && present.size() < 6000) {
      present.push_back(spread);
    }
  }
  const std::vector<float> zeros(present.size() * kDim, 0.0f);
  table->Assign(present.data(), static_cast<int64_t>(present.size()),
                zeros.data(), 1);
  // One streamed run (2,048 ids) with one absent id, then 4,000 more,
  // repeats included: none in shard 0.
  std::vector<int64_t> batch(present.begin(), present.begin() + 2047);
  batch.insert(batch.begin() + 100, absent_id);
  for (int i = 0; i < 4000; ++i) batch.push_back(present[(i * 3) % 6000]);
  const std::vector<float> ones(batch.size() * kDim, 1.0f);

  std::promise<void> other_holds_shard, release_other;
  std::shared_future<void> released = release_other.get_future().share();
  std::thread other;
  const EmbeddingHashTable::AdmitFn other_admit = [&](int64_t) {
    other_holds_shard.set_value();
    released.wait();
    return true;
  };
  const EmbeddingHashTable::AdmitFn admit = [&](int64_t index) {
    if (batch[index] == absent_id && !other.joinable()) {
      other = std::thread([&] {
        table->AssignAdd(&other_writers_id, 1, ones.data(), 1, other_admit);
      });
      // Bounded, so that an update holding shard 0 here fails the test.
      other_holds_shard.get_future().wait_for(std::chrono::seconds(60));
    }
    return true;
  };
  auto update = std::async(std::launch::async, [&] {
    table->AssignAdd(batch.data(), static_cast<int64_t>(batch.size()),
                     ones.data(), 1, admit);
  });
  // Fails (rather than hangs) if the update waits for shard 0.
  const bool finished = update.wait_for(std::chrono::seconds(60)) ==
                        std::future_status::ready;
  release_other.set_value();
  update.wait();
  ASSERT_TRUE(other.joinable()) << "admission was not asked for the new id";
  other.join();
  ASSERT_TRUE(finished) << "the update waited for the other writer's shard";
  std::map<int64_t, float> expected;
  for (const int64_t id : batch) expected[id] += 1.0f;
  expected[other_writers_id] = 1.0f;
  for (const auto& [id, value] : expected) {
    std::vector<float> out(kDim);
    ASSERT_EQ(table->BatchLookup(&id, 1, out.data()), 1) << id;
    EXPECT_EQ(out, std::vector<float>(kDim, value)) << id;
  }
}

// An update waiting for its filter to admit an id (as while a filter save
// copies the filter) holds the id's shard against other writers only:
// lookups of every shard go on meanwhile. One absent id, and a batch.
TEST(EmbeddingHashTableTest, LookupsGoOnWhileAnUpdateWaitsToAdmitAnId) {
  for (const int absent_ids : {1, 3}) {
    SCOPED_TRACE(absent_ids);
    auto table = MakeTable(SgdTable(1));
    constexpr int64_t kHeld = 4096;  // some in every shard
    std::vector<int64_t> held(kHeld);
    std::iota(held.begin(), held.end(), 0);
    const std::vector<float> ones(kHeld, 1.0f);
    table->Assign(held.data(), kHeld, ones.data(), 1);
    std::vector<int64_t> absent;
    for (int k = 0; k < absent_ids; ++k) absent.push_back(1'000'000 + k);
    const std::vector<float> twos(absent_ids, 2.0f);
    std::promise<void> asked, answer;
    const std::shared_future<void> answered = answer.get_future().share();
    std::atomic<int> calls{0};
    std::thread writer([&] {
      table->Assign(absent.data(), absent_ids, twos.data(), 2, [&](int64_t) {
        if (calls.fetch_add(1) == 0) {
          asked.set_value();
          answered.wait();
        }
        return true;
      });
    });
    asked.get_future().wait();
    auto lookup = std::async(std::launch::async, [&] {
      std::vector<float> out(kHeld);
      return table->BatchLookup(held.data(), kHeld, out.data());
    });
    const bool looked_up = lookup.wait_for(std::chrono::seconds(60)) ==
                           std::future_status::ready;
    answer.set_value();
    writer.join();
    EXPECT_TRUE(looked_up) << "a lookup waited for an update's admission";
    EXPECT_EQ(lookup.get(), kHeld);
    EXPECT_EQ(calls.load(), absent_ids);
    for (int64_t id : absent) {
      EXPECT_EQ(LookupOne(*table, id), std::vector<float>{2.0f});
    }
  }
}

// An admit callback may read the table (the contract allows const
// readers) while Clear waits for the shard its update holds: Clear holds
// no shard against readers meanwhile. It took each shard whole in turn, so
// a read of a shard before the update's deadlocked with it.
TEST(EmbeddingHashTableTest, ClearWaitsForAnUpdateWhoseAdmissionReadsTheTable) {
  auto table = MakeTable(SgdTable(1));
  int64_t present = 0;
  while (table->ShardOfIdForTesting(present) != 2) ++present;
  int64_t absent = 0;
  while (table->ShardOfIdForTesting(absent) != 40) ++absent;
  const float one = 1.0f;
  table->Assign(&present, 1, &one, 1);
  std::promise<void> admitting;
  std::atomic<bool> read_present{false}, clear_waited{false};
  std::thread writer([&] {
    table->Assign(&absent, 1, &one, 2, [&](int64_t) {
      admitting.set_value();
      // Clear runs meanwhile, up to the update's shard, where it waits.
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (table->ShardWriterWaitersForTesting(40) == 0 &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      clear_waited = table->ShardWriterWaitersForTesting(40) > 0;
      float out = 0.0f;
      read_present = table->BatchLookup(&present, 1, &out) == 1;
      return true;
    });
  });
  admitting.get_future().wait();
  auto clear = std::async(std::launch::async, [&] { table->Clear(); });
  if (clear.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    std::fprintf(stderr, "Clear and an admission reading the table "
                         "deadlocked\n");
    std::abort();
  }
  writer.join();
  EXPECT_TRUE(clear_waited.load());
  EXPECT_TRUE(read_present.load());
  EXPECT_EQ(table->Size(), 0);
}

// Admission asks once per occurrence of an absent id, in order, and no
// more once an occurrence was admitted (later ones write the entry), across
// the chunks a long batch is worked in.
TEST(EmbeddingHashTableTest, AdmissionAsksPerOccurrenceUntilAdmitted) {
  auto table = MakeTable(SgdTable(1));
  // Ids 0..999 three times over, then 1000..1999 once: 4000 occurrences.
  std::vector<int64_t> ids;
  for (int round = 0; round < 3; ++round) {
    for (int64_t id = 0; id < 1000; ++id) ids.push_back(id);
  }
  for (int64_t id = 1000; id < 2000; ++id) ids.push_back(id);
  std::vector<float> values(ids.size());
  std::iota(values.begin(), values.end(), 1.0f);
  std::map<int64_t, int> asks;
  // Admits an id at its second ask.
  table->Assign(ids.data(), static_cast<int64_t>(ids.size()), values.data(), 1,
                [&](int64_t index) { return ++asks[ids[index]] == 2; });
  for (int64_t id = 0; id < 1000; ++id) {
    EXPECT_EQ(asks[id], 2) << id;
    // Written by its second occurrence, then its third.
    EXPECT_EQ(LookupOne(*table, id), std::vector<float>{values[2000 + id]});
  }
  for (int64_t id = 1000; id < 2000; ++id) {
    EXPECT_EQ(asks[id], 1) << id;
    EXPECT_FALSE(table->Contains(id)) << id;
  }
  EXPECT_EQ(table->Size(), 1000);
}

// An admitted id that a full shard cannot take stays absent, so each of its
// occurrences asks again (as before admission moved ahead of the insert).
TEST(EmbeddingHashTableTest, AdmissionAsksAgainWhereTheShardIsFull) {
  auto table = MakeTable(SgdTable(1));
  table->LimitShardEntriesForTesting(1);
  std::vector<int64_t> fill(1000);
  std::iota(fill.begin(), fill.end(), 0);
  const std::vector<float> ones(fill.size(), 1.0f);
  table->Assign(fill.data(), static_cast<int64_t>(fill.size()), ones.data(), 1);
  ASSERT_EQ(table->Size(), 64);  // one entry in every shard
  for (const int repeats : {1, 3}) {
    const std::vector<int64_t> ids(repeats, 5000);
    const std::vector<float> values(repeats, 2.0f);
    int asks = 0;
    table->Assign(ids.data(), repeats, values.data(), 2, [&](int64_t) {
      ++asks;
      return true;
    });
    EXPECT_EQ(asks, repeats);
    EXPECT_FALSE(table->Contains(5000));
  }
}

// Saving while training: every saved entry is a consistent state (all dims
// equal) and nothing is lost or duplicated.
TEST(EmbeddingHashTableTest, SaveWhileTraining) {
  constexpr int kDim = 8;
  auto table = MakeTable(SgdTable(kDim));
  constexpr int kIds = 20000;
  std::vector<int64_t> ids(kIds);
  for (int i = 0; i < kIds; ++i) ids[i] = i * 31 + 5;
  const std::vector<float> grads(kIds * kDim, -1.0f);
  const float lr = 1.0f;
  ASSERT_OK(table->BatchOptimize(ids.data(), kIds, grads.data(), &lr, 1, 0));
  std::atomic<bool> done{false};
  std::atomic<int64_t> batches{0};
  std::thread trainer([&] {
    while (!done.load()) {
      ASSERT_OK(
          table->BatchOptimize(ids.data(), kIds, grads.data(), &lr, 1, 0));
      ++batches;
    }
  });
  // Saves until one ran beside a whole batch of the trainer (a save that
  // never overlapped a batch would check nothing). A failed check ends the
  // saves (the trainer is joined before the test returns).
  bool overlapped = false;
  const auto save_all = [&] {
    const int64_t batches_before = batches.load();
    std::map<int64_t, float> saved;
    for (int shard = 0; shard < 4; ++shard) {
      const Status s = table->Save(shard, 4, 0, [&](const SavedEntry& entry) {
        const EntryDump dump = ParseSaved(entry);
        for (int d = 1; d < kDim; ++d) EXPECT_EQ(dump.num(d), dump.num(0));
        saved[dump.id()] = dump.num(0);
        return Status::OK();
      });
      ASSERT_OK(s);
    }
    overlapped = batches.load() >= batches_before + 2;
    ASSERT_EQ(saved.size(), static_cast<size_t>(kIds));
    // Each value a whole number of steps (not garbage).
    for (const auto& [id, value] : saved) {
      ASSERT_GE(value, 1.0f) << id;
      ASSERT_EQ(value, std::floor(value)) << id;
    }
  };
  for (int attempt = 0; attempt < 100 && !overlapped; ++attempt) {
    save_all();
    if (::testing::Test::HasFailure()) break;
  }
  done = true;
  trainer.join();
  EXPECT_TRUE(overlapped) << "no save ran beside a whole training batch";
}

// Save encodes a shard chunk by chunk, letting go of its lock between
// chunks: what a writer does meanwhile (new values, eviction moving
// entries, erases whose indices new ids take) shows in later chunks, and
// every record still pairs an id with its own values, each id at most once.
TEST(EmbeddingHashTableTest, SaveInChunksFollowsEntriesThatMoveOrGo) {
  auto table = OneDayExpiryTable(1);
  table->SetSaveChunkBytesForTesting(64);  // a few records per chunk
  const int64_t day = kSecondsPerDay;
  // Value of an id: its number + 1 (never the zeros of a discarded page),
  // plus 1000 once reassigned during the save.
  constexpr int kIds = 20000;
  std::vector<int64_t> old_ids, kept_ids;
  for (int i = 0; i < kIds; ++i) {
    (i % 2 ? kept_ids : old_ids).push_back(i * 7919 + 3);
  }
  const auto value_of = [](int64_t id) {
    return static_cast<float>(id / 7919 + 1);
  };
  const auto assign = [&](const std::vector<int64_t>& ids, float plus,
                          int64_t time) {
    std::vector<float> values;
    for (int64_t id : ids) values.push_back(value_of(id) + plus);
    table->Assign(ids.data(), ids.size(), values.data(), time);
  };
  assign(old_ids, 0, 10);
  assign(kept_ids, 0, 10 + 2 * day);

  std::map<int64_t, float> saved;
  std::set<int64_t> inserted;
  // Per erased id, the call that erased it.
  std::map<int64_t, int> erased;
  int64_t next_new_id = -1;
  int calls = 0;
  size_t saved_before_reassign = 0;
  ASSERT_OK(table->Save(0, 1, 0, [&](const SavedEntry& entry) {
    const EntryDump dump = ParseSaved(entry);
    EXPECT_TRUE(saved.emplace(dump.id(), dump.num(0)).second)
        << "saved twice: " << dump.id();
    // Only the rest of the chunk being written (encoded
    // before the erase; 64 bytes: at most 4 records) may
    // hold an erased id.
    if (erased.count(dump.id())) {
      EXPECT_LT(calls - erased[dump.id()], 4)
          << "saved after its erase: " << dump.id();
    }
    if (++calls == 1) {
      saved_before_reassign = saved.size();
      // Every kept id not saved yet gets a new value; the old
      // ids are evicted (the shards shrink: entries move).
      assign(kept_ids, 1000, 10 + 2 * day);
      table->Evict(10 + 2 * day);
    }
    if (calls % 100 == 0) {
      // Erase unsaved kept ids; new ids take their indices.
      std::vector<int64_t> fresh;
      for (int64_t id : kept_ids) {
        if (saved.count(id) || erased.count(id)) continue;
        if (fresh.size() == 50) break;
        EXPECT_TRUE(table->Erase(id));
        erased.emplace(id, calls);
        fresh.push_back(next_new_id);
        inserted.insert(next_new_id--);
      }
      assign(fresh, 0, 10 + 2 * day);
    }
    return Status::OK();
  }));
  ASSERT_GT(erased.size(), 500u);
  int old_saved = 0, reassigned = 0;
  for (const auto& [id, value] : saved) {
    if (inserted.count(id)) {
      // Inserted into a shard listed later.
      EXPECT_EQ(value, value_of(id)) << id;
    } else if ((id - 3) / 7919 % 2 == 0) {
      ++old_saved;  // saved before its eviction
      EXPECT_EQ(value, value_of(id)) << id;
    } else {
      EXPECT_TRUE(value == value_of(id) || value == value_of(id) + 1000)
          << id << " saved with " << value;
      reassigned += value == value_of(id) + 1000;
    }
  }
  EXPECT_LE(old_saved, static_cast<int>(saved_before_reassign) + 16);
  for (int64_t id : kept_ids) {
    if (!erased.count(id)) {
      EXPECT_EQ(saved.count(id), 1u) << "lost: " << id;
    }
  }
  // Only the first chunk was encoded before the new values.
  EXPECT_GE(reassigned,
            static_cast<int>(kept_ids.size() - erased.size()) - 16);
}

// An entry updated after its shard was listed for a save, before its chunk:
// the listing's copy of its time is older, and expired by it, the entry was
// left out of the checkpoint though it lives on (the after-save eviction
// reads the live time). It is saved, with its new time.
TEST(EmbeddingHashTableTest, SaveTakesTheLiveTimeOfAnEntryUpdatedMeanwhile) {
  auto table = OneDayExpiryTable(1);
  table->SetSaveChunkBytesForTesting(64);
  const int64_t day = kSecondsPerDay, now = 10 + 2 * day;
  // Ids of one internal shard: 8 fresh ones first in its arena, then 40
  // expired by `now`.
  std::vector<int64_t> fresh, old;
  for (int64_t id = 1; old.size() < 40; ++id) {
    if (table->ShardOfIdForTesting(id) != 5) continue;
    (fresh.size() < 8 ? fresh : old).push_back(id);
  }
  const std::vector<float> ones(old.size(), 1.0f);
  table->Assign(fresh.data(), fresh.size(), ones.data(), now);
  table->Assign(old.data(), old.size(), ones.data(), 10);
  std::map<int64_t, int64_t> saved;  // id -> saved time
  bool refreshed = false;
  ASSERT_OK(table->Save(0, 1, now, [&](const SavedEntry& entry) {
    const EntryDump dump = ParseSaved(entry);
    saved[dump.id()] = dump.last_update_ts_sec();
    if (!refreshed) {
      refreshed = true;
      table->Assign(old.data(), old.size(), ones.data(), now);
    }
    return Status::OK();
  }));
  ASSERT_TRUE(refreshed);
  for (const int64_t id : old) {
    ASSERT_TRUE(saved.count(id)) << "id " << id << " was left out";
    EXPECT_EQ(saved[id], now) << "id " << id;
  }
  EXPECT_EQ(saved.size(), fresh.size() + old.size());
}

// The same for an entry whose listed time has not expired: updated after
// the listing, it was saved with its new values and the listing's older
// time, so a restore would let it expire early.
TEST(EmbeddingHashTableTest, SaveWritesTheLiveTimeBesideTheLiveValues) {
  auto table = MakeTable(SgdTable(1));
  table->SetSaveChunkBytesForTesting(64);
  // Ids of one internal shard: the first 8 in its arena, then 40 more.
  std::vector<int64_t> first, later;
  for (int64_t id = 1; later.size() < 40; ++id) {
    if (table->ShardOfIdForTesting(id) != 5) continue;
    (first.size() < 8 ? first : later).push_back(id);
  }
  const std::vector<float> ones(later.size(), 1.0f), twos(later.size(), 2.0f);
  table->Assign(first.data(), first.size(), ones.data(), 10);
  table->Assign(later.data(), later.size(), ones.data(), 10);
  std::map<int64_t, std::pair<float, int64_t>> saved;  // value, time
  bool updated = false;
  ASSERT_OK(table->Save(0, 1, 0, [&](const SavedEntry& entry) {
    const EntryDump dump = ParseSaved(entry);
    saved[dump.id()] = {dump.num(0), dump.last_update_ts_sec()};
    if (!updated) {
      updated = true;
      table->Assign(later.data(), later.size(), twos.data(), 500);
    }
    return Status::OK();
  }));
  ASSERT_TRUE(updated);
  for (const int64_t id : later) {
    ASSERT_TRUE(saved.count(id)) << id;
    EXPECT_EQ(saved[id], std::make_pair(2.0f, int64_t{500})) << "id " << id;
  }
}

// A clear between two chunks of a shard: the rest of the shard's listing is
// gone, nothing of it is saved (its arena was reset), and ids inserted
// after the clear are saved from the shards listed after it.
TEST(EmbeddingHashTableTest, SaveInChunksStopsAShardAtAClear) {
  auto table = MakeTable(SgdTable(1));
  table->SetSaveChunkBytesForTesting(64);
  std::vector<int64_t> ids(20000);
  std::vector<float> values(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = static_cast<int64_t>(i) * 7919 + 3;
    values[i] = static_cast<float>(i + 1);
  }
  table->Assign(ids.data(), ids.size(), values.data(), 1);
  std::map<int64_t, float> saved;
  std::vector<int64_t> fresh(1000);
  std::vector<float> fresh_values(fresh.size(), -7.0f);
  for (size_t i = 0; i < fresh.size(); ++i) fresh[i] = -1 - static_cast<int64_t>(i);
  int calls = 0, before_clear = 0;
  ASSERT_OK(table->Save(0, 1, 0, [&](const SavedEntry& entry) {
    const EntryDump dump = ParseSaved(entry);
    EXPECT_TRUE(saved.emplace(dump.id(), dump.num(0)).second);
    if (++calls == 1) {
      table->Clear();
      table->Assign(fresh.data(), fresh.size(), fresh_values.data(), 2);
    }
    // The first chunk was encoded before the clear.
    if (dump.id() >= 0) ++before_clear;
    return Status::OK();
  }));
  EXPECT_GT(before_clear, 0);
  EXPECT_LE(before_clear, 16);  // one chunk
  int fresh_saved = 0;
  for (const auto& [id, value] : saved) {
    if (id < 0) {
      EXPECT_EQ(value, -7.0f) << id;
      ++fresh_saved;
    } else {
      EXPECT_EQ(value, static_cast<float>((id - 3) / 7919 + 1)) << id;
    }
  }
  // Those of every shard but the first (listed before the clear).
  EXPECT_GT(fresh_saved, 900);
  EXPECT_LT(fresh_saved, 1000);
}

// RecordId: in place for what the wire walk reads, parsed otherwise (a
// record with an unknown group), DataLoss for what is not an EntryDump.
TEST(EmbeddingHashTableTest, RecordIdReadsInPlaceOrParses) {
  EntryDump dump;
  dump.set_id(-123);
  dump.add_num(2.0f);
  dump.set_last_update_ts_sec(77);
  RecordScratch scratch;
  int64_t id = 0;
  const std::string plain = dump.SerializeAsString();
  ASSERT_OK(RecordId(plain.data(), plain.size(), &scratch, &id));
  EXPECT_EQ(id, -123);
  EXPECT_FALSE(scratch.has_dump());  // not parsed

  // An unknown group (field 100): parsing skips it, the walk does not.
  const std::string with_group = plain + "\xa3\x06\xa4\x06";
  ASSERT_OK(RecordId(with_group.data(), with_group.size(), &scratch, &id));
  EXPECT_EQ(id, -123);
  ASSERT_TRUE(scratch.has_dump());  // parsed
  EXPECT_EQ(scratch.dump().id(), -123);

  const std::string garbage = plain.substr(0, plain.size() - 1);
  const Status s = RecordId(garbage.data(), garbage.size(), &scratch, &id);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("is not an EntryDump"), std::string::npos);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
