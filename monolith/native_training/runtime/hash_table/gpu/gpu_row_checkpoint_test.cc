// GPU-table checkpoints against the CPU table's, on the host: rows held in
// host memory (the RowStore a GPU table provides) are saved and restored
// through the same checkpoint code, and must read and write the CPU
// table's records and files exactly.
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_checkpoint.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/table_checkpoint.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

constexpr char kTableConfig[] = R"pb(
  entry_config {
    segments {
      dim_size: 3
      init_config { constants { constant: 0.25 } }
      opt_config { sgd {} }
    }
    segments {
      dim_size: 5
      init_config { zeros {} }
      opt_config { adagrad { initial_accumulator_value: 0.3 } }
    }
  })pb";

EmbeddingHashTableConfig TableConfig() {
  EmbeddingHashTableConfig config;
  EXPECT_TRUE(
      google::protobuf::TextFormat::ParseFromString(kTableConfig, &config));
  return config;
}

// Rows in host memory, one slot per id in insertion order.
class HostRowStore : public RowStore {
 public:
  explicit HostRowStore(int row_floats) : row_floats_(row_floats) {}

  int64_t slots() const override { return order_.size(); }
  Status Export(int64_t begin, int64_t max_slots, IdShard shard,
                std::vector<int64_t>* ids, std::vector<float>* rows,
                int64_t* next) override {
    ids->clear();
    rows->clear();
    largest_export_ = std::max(largest_export_, max_slots);
    *next = std::min<int64_t>(slots(), begin + max_slots);
    for (int64_t s = begin; s < *next; ++s) {
      if (!ignore_shards_ && !shard.Holds(order_[s])) continue;
      ++exported_;
      ids->push_back(order_[s]);
      const std::vector<float>& row = rows_.at(order_[s]);
      rows->insert(rows->end(), row.begin(), row.end());
    }
    return Status::OK();
  }
  Status Put(const int64_t* ids, int64_t n, const float* rows) override {
    ++puts_;
    largest_put_ = std::max(largest_put_, n);
    for (int64_t i = 0; i < n; ++i) {
      if (rows_.count(ids[i]) == 0) order_.push_back(ids[i]);
      rows_[ids[i]].assign(rows + i * row_floats_,
                           rows + (i + 1) * row_floats_);
    }
    return Status::OK();
  }

  const std::map<int64_t, std::vector<float>>& rows() const { return rows_; }
  int puts() const { return puts_; }
  // Rows Export has handed out.
  int64_t exported() const { return exported_; }
  // From now on Export hands out every row, whatever shard it is asked for.
  void IgnoreShards() { ignore_shards_ = true; }
  // The most slots one Export was asked for, rows one Put handed over.
  int64_t largest_export() const { return largest_export_; }
  int64_t largest_put() const { return largest_put_; }

 private:
  int row_floats_;
  std::vector<int64_t> order_;
  std::map<int64_t, std::vector<float>> rows_;
  int puts_ = 0;
  int64_t exported_ = 0;
  int64_t largest_export_ = 0;
  int64_t largest_put_ = 0;
  bool ignore_shards_ = false;
};

// Restores the checkpoint |info| through |restorer|, flushed.
Status RestoreThrough(FileSystem* fs, const CheckpointInfo& info,
                      RowStoreRestorer* restorer) {
  MONOLITH_RETURN_IF_ERROR(
      RestoreCheckpoint(fs, info,
                        [&](int shard, int table, std::string_view record) {
                          return restorer->Restore(shard, table, record);
                        },
                        SerialFor, {}));
  return restorer->Flush();
}

class GpuRowCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(EmbeddingHashTable::Create(TableConfig(), 7, &cpu_));
    ASSERT_OK(GpuRowRecords::Create(TableConfig().entry_config(), &records_));
    // 3,000 ids trained over 4 steps at times 101..104 (repeats included).
    std::mt19937_64 gen(5);
    std::uniform_int_distribution<int64_t> pick(-1500, 1499);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::vector<float> learning_rates = {0.1f, 0.05f};
    for (int step = 1; step <= 4; ++step) {
      std::vector<int64_t> ids(3000);
      for (int64_t& id : ids) id = pick(gen) * 7919;
      std::vector<float> grads(ids.size() * 8);
      for (float& g : grads) g = normal(gen);
      ASSERT_OK(cpu_->BatchOptimize(ids.data(), ids.size(), grads.data(),
                                    learning_rates.data(), 100 + step, step));
    }
  }

  // Saves the CPU table at a new |name| in |nshards| shards and reads the
  // checkpoint's meta files into |info|.
  void SaveCpuCheckpoint(const std::string& name, int nshards,
                         CheckpointInfo* info) {
    const std::string basename = TempBasename(name);
    SaveOptions options;
    options.nshards = nshards;
    ASSERT_OK(SaveCheckpoint(&fs_, basename, {"t"},
                             EmbeddingTablesSaver({cpu_.get()}), options));
    ASSERT_OK(ReadCheckpointInfo(&fs_, basename, true, {}, info));
  }

  // Every record the CPU table saves (one dump shard).
  std::vector<std::string> CpuRecords() {
    std::vector<std::string> out;
    EXPECT_OK(cpu_->Save(0, 1, 0, [&](const EmbeddingHashTable::SavedEntry& e) {
      out.emplace_back(e.dump, e.dump_size);
      return Status::OK();
    }));
    return out;
  }

  // The CPU table's entries as rows, read from its records.
  std::map<int64_t, std::vector<float>> CpuRows() {
    std::map<int64_t, std::vector<float>> rows;
    RecordScratch scratch;
    for (const std::string& record : CpuRecords()) {
      std::vector<float> row(records_->spec().row_floats());
      int64_t id = 0;
      EXPECT_OK(records_->Read(record, &scratch, &id, row.data()));
      rows[id] = row;
    }
    return rows;
  }

  std::string TempBasename(const std::string& name) {
    const char* dir = std::getenv("TEST_TMPDIR");
    return std::string(dir != nullptr ? dir : "/tmp") + "/" + name + "/mtable";
  }

  PosixFileSystem fs_;
  std::unique_ptr<EmbeddingHashTable> cpu_;
  std::unique_ptr<GpuRowRecords> records_;
};

TEST_F(GpuRowCheckpointTest, RowsWriteTheCpuTablesRecordsByteForByte) {
  const std::vector<std::string> records = CpuRecords();
  ASSERT_EQ(static_cast<int64_t>(records.size()), cpu_->Size());
  RecordScratch scratch;
  WireWriter wire;
  for (const std::string& record : records) {
    std::vector<float> row(records_->spec().row_floats());
    int64_t id = 0;
    ASSERT_OK(records_->Read(record, &scratch, &id, row.data()));
    // The row holds the entry: its embedding and time as the CPU table's.
    std::vector<float> embedding(8);
    cpu_->Lookup(id, embedding.data());
    EXPECT_EQ(std::vector<float>(row.begin(), row.begin() + 8), embedding);
    EXPECT_GE(RowTime(row.data(), records_->spec().entry_floats), 101);
    wire.Clear();
    records_->Write(id, row.data(), &wire);
    EXPECT_EQ(std::string(wire.data(), wire.size()), record) << id;
  }
}

TEST_F(GpuRowCheckpointTest, RecordsInOtherLayoutsAreParsed) {
  EntryDump dump;
  dump.set_id(77);
  for (int i = 0; i < 8; ++i) dump.add_num(0.5f * i);
  dump.set_last_update_ts_sec(1234);
  // No optimizer state: the adagrad accumulators start at their initial
  // value, as in a CPU table.
  std::vector<float> row(records_->spec().row_floats(), -1.0f);
  RecordScratch scratch;
  int64_t id = 0;
  ASSERT_OK(
      records_->Read(dump.SerializeAsString(), &scratch, &id, row.data()));
  EXPECT_EQ(id, 77);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(row[i], 0.5f * i);
  for (int i = 8; i < 13; ++i) EXPECT_FLOAT_EQ(row[i], 0.3f);
  EXPECT_EQ(RowTime(row.data(), records_->spec().entry_floats), 1234);

  dump.add_num(1.0f);  // 9 floats for a dim of 8
  const Status wrong_dim = records_->Read(dump.SerializeAsString(), &scratch,
                                          &id, row.data());
  EXPECT_EQ(wrong_dim.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong_dim.message().find("9 floats"), std::string::npos)
      << wrong_dim.message();
  const Status garbage =
      records_->Read(std::string("\xff\xff\xff", 3), &scratch, &id,
                     row.data());
  EXPECT_EQ(garbage.code(), StatusCode::kDataLoss);
}

TEST_F(GpuRowCheckpointTest, GpuSavesRestoreIntoCpuTables) {
  const std::map<int64_t, std::vector<float>> want = CpuRows();
  const int row_floats = records_->spec().row_floats();
  HostRowStore store(row_floats);
  for (const auto& [id, row] : want) {
    ASSERT_OK(store.Put(&id, 1, row.data()));
  }
  PosixFileSystem fs;
  const std::string basename = TempBasename("gpu_to_cpu");
  SaveOptions options;
  options.nshards = 3;
  SaveResult result;
  // Small chunks: the walk over the slots takes many exports.
  ASSERT_OK(SaveCheckpoint(&fs, basename, {"t"},
                           RowStoreSaver({&store}, {records_.get()}, 100),
                           options, &result));
  EXPECT_EQ(result.entries, static_cast<int64_t>(want.size()));
  // Each dump shard took its own entries off the store, not every entry.
  EXPECT_EQ(store.exported(), static_cast<int64_t>(want.size()));

  std::unique_ptr<EmbeddingHashTable> restored;
  ASSERT_OK(EmbeddingHashTable::Create(TableConfig(), 9, &restored));
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, true, {}, &info));
  ASSERT_OK(RestoreCheckpoint(
      &fs, info, EmbeddingTablesRestorer({restored.get()}, info.nshards),
      SerialFor, {}));
  std::swap(cpu_, restored);
  EXPECT_EQ(CpuRows(), want);
}

// Saves and restores of a wide table's rows take fewer rows at a time than
// chunk_slots and batch_rows, so that a GPU table's staging (and a
// restorer's pending rows) stay within kMaxRowChunkBytes.
TEST_F(GpuRowCheckpointTest, WideRowsMoveInChunksOfBoundedBytes) {
  EmbeddingHashTableConfig wide;
  auto* segment = wide.mutable_entry_config()->add_segments();
  segment->set_dim_size(65536);
  segment->mutable_init_config()->mutable_zeros();
  segment->mutable_opt_config()->mutable_adagrad();
  std::unique_ptr<GpuRowRecords> records;
  ASSERT_OK(GpuRowRecords::Create(wide.entry_config(), &records));
  const int row_floats = records->spec().row_floats();
  HostRowStore store(row_floats);
  // 512 KiB rows: more than fit one chunk.
  const int64_t row_bytes = sizeof(int64_t) + sizeof(float) * row_floats;
  const int64_t num_rows = kMaxRowChunkBytes / row_bytes + 3;
  std::vector<float> row(row_floats, 0.5f);
  SetRowTime(row.data(), records->spec().entry_floats, 100);
  for (int64_t id = 0; id < num_rows; ++id) {
    row[0] = static_cast<float>(id);
    ASSERT_OK(store.Put(&id, 1, row.data()));
  }
  PosixFileSystem fs;
  SaveOptions options;
  options.nshards = 1;
  SaveResult result;
  const std::string basename = TempBasename("wide_rows");
  ASSERT_OK(SaveCheckpoint(&fs, basename, {"t"},
                           RowStoreSaver({&store}, {records.get()}), options,
                           &result));
  EXPECT_EQ(result.entries, num_rows);
  EXPECT_GE(store.largest_export(), 1);
  EXPECT_LE(store.largest_export() * row_bytes, kMaxRowChunkBytes);

  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, true, {}, &info));
  HostRowStore restored(row_floats);
  RowStoreRestorer restorer({&restored}, {records.get()}, info.nshards);
  ASSERT_OK(RestoreThrough(&fs, info, &restorer));
  EXPECT_EQ(restored.rows(), store.rows());
  EXPECT_GE(restored.puts(), 2);
  EXPECT_LE(restored.largest_put() * row_bytes, kMaxRowChunkBytes);
  // Narrow rows keep chunk_slots.
  HostRowStore narrow(records_->spec().row_floats());
  for (int64_t id = 0; id < 100; ++id) {
    ASSERT_OK(narrow.Put(&id, 1, CpuRows().begin()->second.data()));
  }
  ASSERT_OK(SaveCheckpoint(&fs, TempBasename("narrow_rows"), {"t"},
                           RowStoreSaver({&narrow}, {records_.get()}, 100),
                           options));
  EXPECT_EQ(narrow.largest_export(), 100);
}

TEST_F(GpuRowCheckpointTest, AStoreIgnoringDumpShardsFailsTheSave) {
  HostRowStore store(records_->spec().row_floats());
  for (const auto& [id, row] : CpuRows()) {
    ASSERT_OK(store.Put(&id, 1, row.data()));
  }
  store.IgnoreShards();
  PosixFileSystem fs;
  SaveOptions options;
  options.nshards = 3;
  const Status s =
      SaveCheckpoint(&fs, TempBasename("ignoring_shards"), {"t"},
                     RowStoreSaver({&store}, {records_.get()}, 100), options);
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_NE(s.message().find("for dump shard"), std::string::npos)
      << s.ToString();
}

TEST_F(GpuRowCheckpointTest, CpuSavesRestoreIntoGpuRows) {
  CheckpointInfo info;
  ASSERT_NO_FATAL_FAILURE(SaveCpuCheckpoint("cpu_to_gpu", 4, &info));
  HostRowStore store(records_->spec().row_floats());
  RowStoreRestorer restorer({&store}, {records_.get()}, info.nshards,
                            /*batch_rows=*/500);
  ASSERT_OK(RestoreThrough(&fs_, info, &restorer));
  EXPECT_EQ(store.rows(), CpuRows());
  // Batches of at most 500 rows per shard.
  EXPECT_GE(store.puts(), static_cast<int>(cpu_->Size() / 500));
}

// A table restored values only takes the records' values and times and
// starts the optimizer state as new rows do; one whose optimizer changed
// restores only so.
TEST_F(GpuRowCheckpointTest, ValuesOnlyRestoresStartTheOptimizerStateAfresh) {
  CheckpointInfo info;
  ASSERT_NO_FATAL_FAILURE(SaveCpuCheckpoint("values_only", 2, &info));
  const std::map<int64_t, std::vector<float>> trained = CpuRows();
  EmbeddingHashTableConfig changed = TableConfig();
  changed.mutable_entry_config()
      ->mutable_segments(1)
      ->mutable_opt_config()
      ->mutable_ftrl();
  std::unique_ptr<GpuRowRecords> ftrl_records;
  ASSERT_OK(GpuRowRecords::Create(changed.entry_config(), &ftrl_records));
  const auto restore = [&](RowStoreRestorer* restorer, bool check_only) {
    return RestoreCheckpoint(
        &fs_, info,
        [&](int shard, int table, std::string_view record) {
          return check_only ? restorer->Check(shard, table, record)
                            : restorer->Restore(shard, table, record);
        },
        SerialFor, {});
  };
  RowStoreRestorer whole({nullptr}, {ftrl_records.get()}, info.nshards);
  EXPECT_EQ(restore(&whole, /*check_only=*/true).code(),
            StatusCode::kInvalidArgument);

  for (const GpuRowRecords* records : {records_.get(), ftrl_records.get()}) {
    const GpuRowTableSpec& spec = records->spec();
    HostRowStore store(spec.row_floats());
    RowStoreRestorer restorer({&store}, {records}, info.nshards,
                              kRestoreBatchRows, {RestoredState::kValuesOnly});
    ASSERT_OK(restore(&restorer, /*check_only=*/true));
    ASSERT_OK(restore(&restorer, /*check_only=*/false));
    ASSERT_OK(restorer.Flush());
    ASSERT_EQ(store.rows().size(), trained.size());
    // A new row's state: what a record without optimizer state reads into.
    EntryDump values;
    for (int i = 0; i < 8; ++i) values.add_num(1.0f);
    std::vector<float> new_row(spec.row_floats());
    RecordScratch scratch;
    int64_t new_id = 0;
    ASSERT_OK(records->Read(values.SerializeAsString(), &scratch, &new_id,
                            new_row.data()));
    for (const auto& [id, row] : store.rows()) {
      const std::vector<float>& want = trained.at(id);
      EXPECT_EQ(std::vector<float>(row.begin(), row.begin() + 8),
                std::vector<float>(want.begin(), want.begin() + 8));
      EXPECT_EQ(RowTime(row.data(), spec.entry_floats),
                RowTime(want.data(), records_->spec().entry_floats));
      EXPECT_EQ(std::vector<float>(row.begin() + 8,
                                   row.begin() + spec.entry_floats),
                std::vector<float>(new_row.begin() + 8,
                                   new_row.begin() + spec.entry_floats))
          << id;
    }
  }
}

// Check reads every record as Restore would and puts nothing: OK for a
// checkpoint that fits, Restore's error for one of another dim.
TEST_F(GpuRowCheckpointTest, CheckReadsEveryRecordAndPutsNothing) {
  CheckpointInfo info;
  ASSERT_NO_FATAL_FAILURE(SaveCpuCheckpoint("check", 2, &info));
  HostRowStore store(records_->spec().row_floats());
  RowStoreRestorer checker({&store}, {records_.get()}, info.nshards,
                           /*batch_rows=*/1);
  int64_t checked = 0;
  ASSERT_OK(
      RestoreCheckpoint(&fs_, info,
                        [&](int shard, int table, std::string_view record) {
                          ++checked;
                          return checker.Check(shard, table, record);
                        },
                        SerialFor, {}));
  ASSERT_OK(checker.Flush());
  EXPECT_EQ(checked, cpu_->Size());
  EXPECT_EQ(store.puts(), 0);
  EXPECT_TRUE(store.rows().empty());

  EmbeddingHashTableConfig wider = TableConfig();
  auto* segment = wider.mutable_entry_config()->mutable_segments(0);
  segment->set_dim_size(segment->dim_size() + 1);
  std::unique_ptr<GpuRowRecords> wider_records;
  ASSERT_OK(GpuRowRecords::Create(wider.entry_config(), &wider_records));
  RowStoreRestorer wrong_dim({nullptr}, {wider_records.get()}, info.nshards);
  const Status s = RestoreCheckpoint(
      &fs_, info,
      [&](int shard, int table, std::string_view record) {
        return wrong_dim.Check(shard, table, record);
      },
      SerialFor, {});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.message();
}

// Ids GPU tables reserve (valid in CPU tables) fail the checking pass,
// before any table would be emptied, and the restore alike.
TEST_F(GpuRowCheckpointTest, ReservedIdsFailTheCheckAndTheRestore) {
  for (const int64_t reserved : {std::numeric_limits<int64_t>::max(),
                                 std::numeric_limits<int64_t>::min()}) {
    SCOPED_TRACE(reserved);
    const std::vector<float> grads(8, 0.5f);
    const std::vector<float> learning_rates = {0.1f, 0.05f};
    ASSERT_OK(cpu_->BatchOptimize(&reserved, 1, grads.data(),
                                  learning_rates.data(), 105, 5));
    CheckpointInfo info;
    ASSERT_NO_FATAL_FAILURE(SaveCpuCheckpoint(
        "reserved" + std::to_string(reserved < 0), 2, &info));
    HostRowStore store(records_->spec().row_floats());
    RowStoreRestorer restorer({&store}, {records_.get()}, info.nshards);
    for (const bool check : {true, false}) {
      const Status s = RestoreCheckpoint(
          &fs_, info,
          [&](int shard, int table, std::string_view record) {
            return check ? restorer.Check(shard, table, record)
                         : restorer.Restore(shard, table, record);
          },
          SerialFor, {});
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.message();
      EXPECT_NE(s.message().find("id " + std::to_string(reserved) +
                                 " cannot be stored in a GPU table"),
                std::string::npos)
          << s.message();
    }
    ASSERT_TRUE(cpu_->Erase(reserved));
  }
}

// A TRAINING checkpoint restores into SERVING rows (fp16 and fp32
// segments) as into a CPU SERVING table: the same values, decoded.
TEST_F(GpuRowCheckpointTest, TrainingSavesRestoreIntoServingRows) {
  EmbeddingHashTableConfig serving = TableConfig();
  serving.mutable_entry_config()->set_entry_type(EntryConfig::SERVING);
  serving.mutable_entry_config()
      ->mutable_segments(0)
      ->mutable_comp_config()
      ->mutable_fp16();
  serving.mutable_entry_config()
      ->mutable_segments(1)
      ->mutable_comp_config()
      ->mutable_fp32();
  std::unique_ptr<GpuRowRecords> serving_records;
  ASSERT_OK(GpuRowRecords::Create(serving.entry_config(), &serving_records));
  ASSERT_TRUE(serving_records->spec().serving);

  CheckpointInfo info;
  ASSERT_NO_FATAL_FAILURE(SaveCpuCheckpoint("training_to_serving", 2, &info));
  HostRowStore store(serving_records->spec().row_floats());
  RowStoreRestorer restorer({&store}, {serving_records.get()}, info.nshards,
                            /*batch_rows=*/500);
  ASSERT_OK(
      RestoreCheckpoint(&fs_, info,
                        [&](int shard, int table, std::string_view record) {
                          return restorer.Restore(shard, table, record);
                        },
                        SerialFor, {}));
  ASSERT_OK(restorer.Flush());
  std::unique_ptr<EmbeddingHashTable> cpu_serving;
  ASSERT_OK(EmbeddingHashTable::Create(serving, 3, &cpu_serving));
  ASSERT_OK(RestoreCheckpoint(
      &fs_, info, EmbeddingTablesRestorer({cpu_serving.get()}, info.nshards),
      SerialFor, {}));
  ASSERT_EQ(static_cast<int64_t>(store.rows().size()), cpu_serving->Size());

  const GpuRowTableSpec& spec = serving_records->spec();
  std::vector<int64_t> ids;
  std::vector<float> decoded;
  for (const auto& [id, row] : store.rows()) {
    ids.push_back(id);
    std::vector<float> values(spec.value_floats);
    for (const GpuSegment& seg : spec.segments) {
      for (int c = 0; c < seg.dim; ++c) {
        values[seg.value_offset + c] = ReadStored(seg, row.data(), c);
      }
    }
    decoded.insert(decoded.end(), values.begin(), values.end());
  }
  std::vector<float> looked_up(decoded.size());
  cpu_serving->BatchLookup(ids.data(), ids.size(), looked_up.data());
  EXPECT_EQ(std::memcmp(looked_up.data(), decoded.data(),
                        sizeof(float) * decoded.size()),
            0);
  // fp16 rounded the first segment: not the TRAINING values.
  EXPECT_NE(decoded, [&] {
    std::vector<float> training(decoded.size());
    cpu_->BatchLookup(ids.data(), ids.size(), training.data());
    return training;
  }());
}

// Restored update times are clamped to 0 .. 2^32 - 1, as the CPU table
// keeps them, whether the record is read in place or parsed.
TEST_F(GpuRowCheckpointTest, RestoredTimesAreClampedAsTheCpuTables) {
  EntryDump dump;
  ASSERT_TRUE(dump.ParseFromString(CpuRecords()[0]));
  const int time_offset = records_->spec().entry_floats;
  std::vector<float> row(records_->spec().row_floats());
  RecordScratch scratch;
  for (const auto& [time, want] :
       {std::make_pair(int64_t{-5}, int64_t{0}),
        std::make_pair(int64_t{1} << 40, int64_t{0xffffffff}),
        std::make_pair(int64_t{77}, int64_t{77})}) {
    dump.set_last_update_ts_sec(time);
    int64_t id = 0;
    ASSERT_OK(
        records_->Read(dump.SerializeAsString(), &scratch, &id, row.data()));
    EXPECT_EQ(RowTime(row.data(), time_offset), want) << time;
    // The same through a CPU table.
    std::unique_ptr<EmbeddingHashTable> cpu;
    ASSERT_OK(EmbeddingHashTable::Create(TableConfig(), 3, &cpu));
    int64_t restored_time = 0;
    const std::string record = dump.SerializeAsString();
    ASSERT_OK(cpu->RestoreRecord(record.data(), record.size(), &scratch,
                                 &restored_time));
    std::vector<std::string> saved;
    ASSERT_OK(cpu->Save(0, 1, 0, [&](const EmbeddingHashTable::SavedEntry& e) {
      saved.emplace_back(e.dump, e.dump_size);
      return Status::OK();
    }));
    ASSERT_EQ(saved.size(), 1u);
    EntryDump cpu_dump;
    ASSERT_TRUE(cpu_dump.ParseFromString(saved[0]));
    EXPECT_EQ(cpu_dump.last_update_ts_sec(), want) << time;
  }
}

// Saves skip what has expired, by each id's feature slot, as the CPU
// table's saves do.
TEST_F(GpuRowCheckpointTest, SavesSkipExpiredEntries) {
  constexpr int64_t kT0 = 1700000000;
  const int time_offset = records_->spec().entry_floats;
  const int row_floats = records_->spec().row_floats();
  HostRowStore store(row_floats);
  std::set<int64_t> want;
  const int64_t now = kT0 + 2 * kSecondsPerDay + 1;
  int parity = 0;
  for (auto [id, row] : CpuRows()) {
    // Alternately updated at kT0 and a day later.
    const int64_t time = kT0 + (parity++ % 2) * kSecondsPerDay;
    SetRowTime(row.data(), time_offset, time);
    ASSERT_OK(store.Put(&id, 1, row.data()));
    // Expire after 2 days, after 5 for slot 0x7fff (the negative ids: bits
    // 48-62 all set).
    const int64_t days = id < 0 ? 5 : 2;
    if (now - time < days * kSecondsPerDay) want.insert(id);
  }
  SlotExpireTimeConfig config;
  config.set_default_expire_time(2);
  auto* negative = config.add_slot_expire_times();
  negative->set_slot(0x7fff);
  negative->set_expire_time(5);
  const SlotExpireTimes expire(config);
  std::set<int64_t> saved;
  EntryDump dump;
  const TableSaver save = RowStoreSaver({&store}, {records_.get()}, 64,
                                        SaveExpiry{{now}, {&expire}});
  for (int shard = 0; shard < 2; ++shard) {
    ASSERT_OK(save(0, shard, 2, [&](std::string_view record) {
      EXPECT_TRUE(dump.ParseFromArray(record.data(), record.size()));
      saved.insert(dump.id());
      return Status::OK();
    }));
  }
  EXPECT_EQ(saved, want);
  EXPECT_GT(want.size(), 0u);
  EXPECT_LT(want.size(), store.rows().size());
  // Positive ids updated at kT0 expired; negative ones did not.
  EXPECT_TRUE(std::any_of(want.begin(), want.end(),
                          [](int64_t id) { return id < 0; }));
  // Without a now (0), nothing is skipped.
  size_t records = 0;
  const TableSaver keep_all = RowStoreSaver({&store}, {records_.get()}, 64,
                                            SaveExpiry{{0}, {&expire}});
  ASSERT_OK(keep_all(0, 0, 1, [&](std::string_view) {
    ++records;
    return Status::OK();
  }));
  EXPECT_EQ(records, store.rows().size());
}

}  // namespace
}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith
