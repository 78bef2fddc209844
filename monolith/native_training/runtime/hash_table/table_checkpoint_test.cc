#include "monolith/native_training/runtime/hash_table/table_checkpoint.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/thread_for.h"

namespace monolith {
namespace hash_table {
namespace {

constexpr int64_t kDay = 24 * 3600;

std::unique_ptr<EmbeddingHashTable> Table(int dim, uint64_t seed) {
  EmbeddingHashTableConfig config;
  auto* segment = config.mutable_entry_config()->add_segments();
  segment->set_dim_size(dim);
  segment->mutable_init_config()->mutable_zeros();
  segment->mutable_opt_config()->mutable_sgd();
  std::unique_ptr<EmbeddingHashTable> table;
  EXPECT_OK(EmbeddingHashTable::Create(config, seed, &table));
  return table;
}

// Assigns ids [first, first + n) the values id + column / 10 at |time|.
void Fill(EmbeddingHashTable* table, int64_t first, int n, int dim,
          int64_t time) {
  std::vector<int64_t> ids;
  std::vector<float> values;
  for (int64_t id = first; id < first + n; ++id) {
    ids.push_back(id);
    for (int c = 0; c < dim; ++c) values.push_back(id + c / 10.0f);
  }
  table->Assign(ids.data(), n, values.data(), time);
}

std::vector<float> Row(const EmbeddingHashTable& table, int64_t id, int dim) {
  std::vector<float> row(dim, -1.0f);
  table.Lookup(id, row.data());
  return row;
}

std::string TempBasename(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return std::string(tmp != nullptr ? tmp : "/tmp") + "/table_checkpoint_" +
         name + "_" + std::to_string(getpid()) + "/ckpt";
}

// Tables a (dim 2) and b (dim 3) saved in 3 shards and restored: a into a
// fresh table, b skipped (a null table), each record parsed with its
// shard's scratch.
TEST(TableCheckpointTest, SavesAndRestoresWholeTables) {
  auto a = Table(2, 1), b = Table(3, 2);
  Fill(a.get(), 1, 500, 2, 10);
  Fill(b.get(), 1000, 300, 3, 10);
  PosixFileSystem fs;
  const std::string basename = TempBasename("whole");
  SaveOptions options;
  options.nshards = 3;
  SaveResult result;
  ASSERT_OK(SaveCheckpoint(&fs, basename, {"a", "b"},
                           EmbeddingTablesSaver({a.get(), b.get()}), options,
                           &result));
  EXPECT_EQ(result.entries, 800);

  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, true, {}, &info));
  ASSERT_EQ(info.tables[0].name, "a");
  auto restored = Table(2, 3);
  ASSERT_OK(RestoreCheckpoint(
      &fs, info,
      EmbeddingTablesRestorer({restored.get(), nullptr}, info.nshards),
      SerialFor, {}));
  EXPECT_EQ(restored->Size(), 500);
  for (int64_t id = 1; id <= 500; ++id) {
    ASSERT_EQ(Row(*restored, id, 2),
              (std::vector<float>{static_cast<float>(id), id + 0.1f}))
        << id;
  }
  EXPECT_EQ(Row(*restored, 1000, 2), std::vector<float>(2, 0.0f));
}

// What the restore kernels check per table: its segment dims, and that a
// training table restores a SERVING table's save as values only.
TEST(TableCheckpointTest, ChecksATableIsRestorableInto) {
  auto a = Table(2, 1);
  Fill(a.get(), 1, 10, 2, 10);
  PosixFileSystem fs;
  const std::string basename = TempBasename("restorable");
  SaveOptions options;
  options.segment_dims = {{2}};
  options.values_only = {true};  // as a SERVING table saves
  ASSERT_OK(SaveCheckpoint(&fs, basename, {"a"},
                           EmbeddingTablesSaver({a.get()}), options));
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, true, {}, &info));
  EXPECT_EQ(
      CheckRestorableInto(info, 0, a->accessor(), RestoredState::kAll).code(),
      StatusCode::kFailedPrecondition);
  EXPECT_OK(
      CheckRestorableInto(info, 0, a->accessor(), RestoredState::kValuesOnly));
  EXPECT_EQ(CheckRestorableInto(info, 0, Table(3, 1)->accessor(),
                                RestoredState::kValuesOnly)
                .code(),
            StatusCode::kInvalidArgument);
}

// As the ops run them: each shard of a save on a thread of its own while
// the table trains, and each shard of the restore on one, into one table.
// Every entry saved is a whole row of one write (Assign writes the
// version in every column), none torn between two.
TEST(TableCheckpointTest, SavesAndRestoresShardsConcurrently) {
  constexpr int kDim = 4;
  constexpr int kIds = 20000;
  auto table = Table(kDim, 1);
  std::vector<int64_t> ids(kIds);
  for (int i = 0; i < kIds; ++i) ids[i] = i;
  const auto write_version = [&](int version) {
    const std::vector<float> values(kIds * kDim, static_cast<float>(version));
    table->Assign(ids.data(), kIds, values.data(), 10 + version);
  };
  write_version(0);
  std::atomic<bool> saved{false};
  std::thread trainer([&] {
    for (int version = 1; !saved.load(); ++version) write_version(version);
  });
  PosixFileSystem fs;
  const std::string basename = TempBasename("concurrent");
  SaveOptions options;
  options.nshards = 4;
  options.parallel_for = ThreadFor;
  const Status save = SaveCheckpoint(&fs, basename, {"a"},
                                     EmbeddingTablesSaver({table.get()}),
                                     options);
  saved.store(true);
  trainer.join();
  ASSERT_OK(save);

  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, true, {}, &info));
  auto restored = Table(kDim, 2);
  const Status restore = RestoreCheckpoint(
      &fs, info, EmbeddingTablesRestorer({restored.get()}, info.nshards),
      ThreadFor, {});
  ASSERT_OK(restore);
  ASSERT_EQ(restored->Size(), kIds);
  for (int64_t id = 0; id < kIds; ++id) {
    const std::vector<float> row = Row(*restored, id, kDim);
    ASSERT_EQ(row, std::vector<float>(kDim, row[0])) << "id " << id;
  }
}

// With now, expired entries stay out: by the given expire times, else by
// the table's own (the default keeps them for 100 years).
TEST(TableCheckpointTest, SkipsEntriesExpiredAtNow) {
  auto a = Table(2, 1), b = Table(2, 2);
  Fill(a.get(), 1, 100, 2, 10);
  Fill(a.get(), 101, 50, 2, 10 + 5 * kDay);
  Fill(b.get(), 1, 100, 2, 10);
  SlotExpireTimeConfig config;
  config.set_default_expire_time(3);  // days
  const SlotExpireTimes three_days(config);
  PosixFileSystem fs;
  SaveOptions options;
  SaveResult result;
  const int64_t now = 10 + 6 * kDay;
  ASSERT_OK(SaveCheckpoint(
      &fs, TempBasename("expire"), {"a", "b"},
      EmbeddingTablesSaver({a.get(), b.get()}, {now, now}, &three_days),
      options, &result));
  EXPECT_EQ(result.entries, 50);  // a's recent ids only
  // Each table by its own now: b's 0 (no expiry) keeps all of b's.
  ASSERT_OK(SaveCheckpoint(
      &fs, TempBasename("per_table"), {"a", "b"},
      EmbeddingTablesSaver({a.get(), b.get()}, {now, 0}, &three_days), options,
      &result));
  EXPECT_EQ(result.entries, 50 + 100);
  ASSERT_OK(SaveCheckpoint(&fs, TempBasename("own"), {"a", "b"},
                           EmbeddingTablesSaver({a.get(), b.get()}, {now, 0}),
                           options, &result));
  EXPECT_EQ(result.entries, 250);
}

TEST(TableCheckpointTest, RefusesATableIndexItDoesNotHave) {
  auto a = Table(2, 1);
  const TableSaver save = EmbeddingTablesSaver({a.get()});
  const Status s = save(1, 0, 1, [](std::string_view) { return Status::OK(); });
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  const RecordRestorer restore = EmbeddingTablesRestorer({a.get()}, 2);
  EXPECT_EQ(restore(2, 0, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_OK(restore(0, 5, "x"));  // a table it skips
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
