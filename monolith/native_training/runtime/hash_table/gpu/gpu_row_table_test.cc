// GpuRowTable on a GPU against the CPU engine (EmbeddingHashTable) fed the
// same batches. Every test skips, saying why, where no GPU is usable.
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_table.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/gpu/device_vector.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_store.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/table_checkpoint.h"
#include "monolith/native_training/runtime/hash_table/update_time.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

constexpr char kEntryConfig[] = R"pb(
  segments {
    dim_size: 3
    init_config { constants { constant: 0.25 } }
    opt_config { sgd {} }
  }
  segments {
    dim_size: 5
    init_config { constants { constant: -0.5 } }
    opt_config {
      adagrad { initial_accumulator_value: 0.3 weight_decay_factor: 0.01 }
    }
  })pb";

class GpuRowTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      GTEST_SKIP() << "no usable CUDA device: the GPU table is compiled, "
                      "not run, on this machine";
    }
    EmbeddingHashTableConfig config;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
        kEntryConfig, config.mutable_entry_config()));
    ASSERT_OK(EmbeddingHashTable::Create(config, 7, &cpu_));
    ASSERT_OK(GpuRowTableSpecFor(config.entry_config(), 7, &spec_));
    spec_.initial_capacity = 64;  // so the tests grow the map
    const Status s = GpuRowTable::Create(spec_, &gpu_);
    ASSERT_OK(s);
  }

  std::vector<float> GpuLookup(const std::vector<int64_t>& ids) {
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> out(ids.size() * spec_.value_floats);
    const Status s = gpu_->Lookup(d_ids.get(), ids.size(), out.get(), nullptr);
    EXPECT_OK(s);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return out.ToHost();
  }

  std::vector<float> CpuLookup(const std::vector<int64_t>& ids) {
    std::vector<float> out(ids.size() * spec_.value_floats);
    cpu_->BatchLookup(ids.data(), ids.size(), out.data());
    return out;
  }

  // Every stored entry of the GPU table, exported in chunks of 1000 slots.
  std::vector<std::pair<int64_t, std::vector<float>>> Export() {
    std::vector<std::pair<int64_t, std::vector<float>>> entries;
    DeviceVector<int64_t> ids(1000);
    DeviceVector<float> rows(1000 * spec_.row_floats());
    int64_t next = 0;
    while (next < gpu_->capacity()) {
      int64_t count = 0;
      const Status s = gpu_->ExportRows(next, 1000, ids.get(), rows.get(),
                                        &count, &next, nullptr);
      if (!s.ok()) {
        ADD_FAILURE() << s.ToString();
        break;
      }
      const std::vector<int64_t> host_ids = ids.ToHost();
      const std::vector<float> host_rows = rows.ToHost();
      for (int64_t i = 0; i < count; ++i) {
        entries.emplace_back(
            host_ids[i],
            std::vector<float>(host_rows.begin() + i * spec_.row_floats(),
                               host_rows.begin() + (i + 1) * spec_.row_floats()));
      }
    }
    return entries;
  }

  GpuRowTableSpec spec_;
  std::unique_ptr<EmbeddingHashTable> cpu_;
  std::unique_ptr<GpuRowTable> gpu_;
};

// 4,000 ids drawn from 2,500, so about a third repeat within the batch.
std::vector<int64_t> Batch(std::mt19937_64* gen) {
  std::uniform_int_distribution<int64_t> pick(-1250, 1249);
  std::vector<int64_t> ids(4000);
  for (int64_t& id : ids) id = pick(*gen) * 1000003;
  return ids;
}

std::vector<float> Normal(size_t n, std::mt19937_64* gen) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(*gen);
  return v;
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5f * (1.0f + std::abs(want[i])))
        << "float " << i;
  }
}

TEST_F(GpuRowTableTest, AbsentIdsReadZerosAndAreNotInserted) {
  const std::vector<float> out = GpuLookup({1, 2, kEmptySlotId});
  EXPECT_EQ(out, std::vector<float>(out.size(), 0.0f));
  EXPECT_EQ(gpu_->size(), 0);
}

TEST_F(GpuRowTableTest, AssignKeepsTheLastOfRepeatsAndGrows) {
  std::mt19937_64 gen(1);
  for (int round = 0; round < 3; ++round) {
    const std::vector<int64_t> ids = Batch(&gen);
    const std::vector<float> values = Normal(ids.size() * spec_.value_floats, &gen);
    cpu_->Assign(ids.data(), ids.size(), values.data(), 1);
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_values(values);
    ASSERT_OK(
        gpu_->Assign(d_ids.get(), ids.size(), d_values.get(), 1, nullptr));
    ExpectNear(GpuLookup(ids), CpuLookup(ids));
  }
  EXPECT_EQ(gpu_->size(), cpu_->Size());
  EXPECT_GT(gpu_->capacity(), 64);
}

TEST_F(GpuRowTableTest, AssignAddSumsRepeatsOntoInitialValues) {
  std::mt19937_64 gen(7);
  for (int round = 0; round < 2; ++round) {
    const std::vector<int64_t> ids = Batch(&gen);
    const std::vector<float> values = Normal(ids.size() * spec_.value_floats, &gen);
    cpu_->AssignAdd(ids.data(), ids.size(), values.data(), 1);
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_values(values);
    ASSERT_OK(
        gpu_->AssignAdd(d_ids.get(), ids.size(), d_values.get(), 1, nullptr));
    ExpectNear(GpuLookup(ids), CpuLookup(ids));
  }
}

TEST_F(GpuRowTableTest, ReinitializeMatchesTheCpuEngine) {
  std::mt19937_64 gen(8);
  std::vector<int64_t> ids = Batch(&gen);
  const std::vector<float> grads = Normal(ids.size() * spec_.value_floats, &gen);
  ASSERT_OK(cpu_->BatchOptimize(ids.data(), ids.size(), grads.data(),
                                std::vector<float>{0.1f, 0.05f}.data(), 1, 1));
  DeviceVector<int64_t> d_ids(ids);
  DeviceVector<float> d_grads(grads);
  ASSERT_OK(gpu_->ApplyGradients(d_ids.get(), ids.size(), d_grads.get(),
                                 {0.1f, 0.05f}, 1, nullptr));
  // Half of them again, and new ids, repeated.
  ids.resize(ids.size() / 2);
  for (int64_t id : {5, 6, 5}) ids.push_back(id);
  std::vector<int> want_status(ids.size());
  cpu_->Reinitialize(ids.data(), ids.size(), want_status.data(), 2);
  DeviceVector<int64_t> d_again(ids);
  DeviceVector<int32_t> status(ids.size());
  ASSERT_OK(
      gpu_->Reinitialize(d_again.get(), ids.size(), status.get(), 2, nullptr));
  const std::vector<int32_t> got_status = status.ToHost();
  EXPECT_EQ(std::vector<int>(got_status.begin(), got_status.end()),
            want_status);
  ExpectNear(GpuLookup(ids), CpuLookup(ids));
}

TEST_F(GpuRowTableTest, GradientsMatchTheCpuEngineEntryByEntry) {
  std::mt19937_64 gen(2);
  const std::vector<float> learning_rates = {0.1f, 0.05f};
  for (int step = 1; step <= 5; ++step) {
    const std::vector<int64_t> ids = Batch(&gen);
    const std::vector<float> grads = Normal(ids.size() * spec_.value_floats, &gen);
    ASSERT_OK(cpu_->BatchOptimize(ids.data(), ids.size(), grads.data(),
                                  learning_rates.data(), 1000 + step, step));
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_grads(grads);
    const Status s = gpu_->ApplyGradients(d_ids.get(), ids.size(),
                                          d_grads.get(), learning_rates,
                                          /*update_time=*/1000 + step, nullptr);
    ASSERT_OK(s);
  }
  ASSERT_EQ(gpu_->size(), cpu_->Size());
  // Whole rows: the embedding, the adagrad accumulators, the update time.
  for (const auto& [id, row] : Export()) {
    EntryDump dump;
    cpu_->BatchLookupEntry(&id, 1, &dump);
    ASSERT_EQ(dump.num_size(), spec_.value_floats) << id;
    std::vector<float> want(dump.num().begin(), dump.num().end());
    const auto& norm = dump.opt().dump(1).adagrad().norm();
    want.insert(want.end(), norm.begin(), norm.end());
    EXPECT_EQ(RowTime(row.data(), spec_.entry_floats),
              dump.last_update_ts_sec());
    ExpectNear(std::vector<float>(row.begin(),
                                  row.begin() + spec_.entry_floats),
               want);
  }
}

TEST_F(GpuRowTableTest, AWriteWithAnOlderTimeDoesNotAgeARow) {
  // As on the CPU engine: a lagging worker's write stamped its time back
  // on rows a later write had touched, for the next eviction to drop.
  const int64_t now = HostClockSeconds();
  const int64_t day = 24 * 3600;
  const std::vector<int64_t> ids = {1, 2, 3};
  const std::vector<float> values(ids.size() * spec_.value_floats, 1.0f);
  DeviceVector<int64_t> d_ids(ids);
  DeviceVector<float> d_values(values);
  ASSERT_OK(
      gpu_->Assign(d_ids.get(), ids.size(), d_values.get(), now, nullptr));
  ASSERT_OK(
      gpu_->Assign(d_ids.get(), 2, d_values.get(), now - 2 * day, nullptr));
  ASSERT_OK(gpu_->ApplyGradients(d_ids.get(), 2, d_values.get(), {0.1f, 0.05f},
                                 now - 3 * day, nullptr));
  DeviceVector<int64_t> d_fresh(std::vector<int64_t>{4});
  ASSERT_OK(
      gpu_->Assign(d_fresh.get(), 1, d_values.get(), now - 2 * day, nullptr));
  std::map<int64_t, int64_t> times;
  for (const auto& [id, row] : Export()) {
    times[id] = RowTime(row.data(), spec_.entry_floats);
  }
  EXPECT_EQ(times, (std::map<int64_t, int64_t>{
                       {1, now}, {2, now}, {3, now}, {4, now - 2 * day}}));
}

TEST_F(GpuRowTableTest, ExportedRowsRestoreIntoAnotherTable) {
  std::mt19937_64 gen(3);
  const std::vector<int64_t> ids = Batch(&gen);
  const std::vector<float> grads = Normal(ids.size() * spec_.value_floats, &gen);
  DeviceVector<int64_t> d_ids(ids);
  DeviceVector<float> d_grads(grads);
  ASSERT_OK(gpu_->ApplyGradients(d_ids.get(), ids.size(), d_grads.get(),
                                 {0.1f, 0.05f}, 7, nullptr));
  std::unique_ptr<GpuRowTable> restored;
  ASSERT_OK(GpuRowTable::Create(spec_, &restored));
  std::vector<int64_t> saved_ids;
  std::vector<float> saved_rows;
  for (const auto& [id, row] : Export()) {
    saved_ids.push_back(id);
    saved_rows.insert(saved_rows.end(), row.begin(), row.end());
  }
  DeviceVector<int64_t> d_saved_ids(saved_ids);
  DeviceVector<float> d_saved_rows(saved_rows);
  ASSERT_OK(restored->PutRows(d_saved_ids.get(), saved_ids.size(),
                              d_saved_rows.get(), nullptr));
  EXPECT_EQ(restored->size(), gpu_->size());
  const auto before = Export();
  std::swap(gpu_, restored);
  const std::vector<float> after = GpuLookup(ids);
  auto restored_rows = Export();
  std::swap(gpu_, restored);
  EXPECT_EQ(after, GpuLookup(ids));
  // The same entries, update times included (export order is the map's).
  auto sorted = [](std::vector<std::pair<int64_t, std::vector<float>>> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(restored_rows), sorted(before));
}

// The same training on both; the GPU table's checkpoint restores into a
// CPU table equal to the CPU-trained one, and the CPU table's into a GPU
// table that looks up the same.
TEST_F(GpuRowTableTest, CheckpointsMoveBetweenGpuAndCpuTables) {
  std::mt19937_64 gen(4);
  const std::vector<int64_t> ids = Batch(&gen);
  const std::vector<float> grads = Normal(ids.size() * spec_.value_floats, &gen);
  ASSERT_OK(cpu_->BatchOptimize(ids.data(), ids.size(), grads.data(),
                                std::vector<float>{0.1f, 0.05f}.data(), 9, 1));
  DeviceVector<int64_t> d_ids(ids);
  DeviceVector<float> d_grads(grads);
  ASSERT_OK(gpu_->ApplyGradients(d_ids.get(), ids.size(), d_grads.get(),
                                 {0.1f, 0.05f}, 9, nullptr));
  EmbeddingHashTableConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      kEntryConfig, config.mutable_entry_config()));
  std::unique_ptr<GpuRowRecords> records;
  ASSERT_OK(GpuRowRecords::Create(config.entry_config(), &records));
  PosixFileSystem fs;
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp");
  SaveOptions options;
  options.nshards = 2;
  GpuRowTableStore gpu_store(gpu_.get(), nullptr);
  ASSERT_OK(SaveCheckpoint(&fs, dir + "/from_gpu/t", {"t"},
                           RowStoreSaver({&gpu_store}, {records.get()}, 500),
                           options));
  std::unique_ptr<EmbeddingHashTable> cpu_restored;
  ASSERT_OK(EmbeddingHashTable::Create(config, 1, &cpu_restored));
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, dir + "/from_gpu/t", true, {}, &info));
  ASSERT_OK(RestoreCheckpoint(
      &fs, info, EmbeddingTablesRestorer({cpu_restored.get()}, info.nshards),
      SerialFor, {}));
  EXPECT_EQ(cpu_restored->Size(), cpu_->Size());
  std::vector<float> restored_values(ids.size() * spec_.value_floats);
  cpu_restored->BatchLookup(ids.data(), ids.size(), restored_values.data());
  ExpectNear(restored_values, CpuLookup(ids));

  // CPU checkpoint -> a fresh GPU table.
  ASSERT_OK(SaveCheckpoint(&fs, dir + "/from_cpu/t", {"t"},
                           EmbeddingTablesSaver({cpu_.get()}), options));
  std::unique_ptr<GpuRowTable> gpu_restored;
  ASSERT_OK(GpuRowTable::Create(spec_, &gpu_restored));
  GpuRowTableStore restored_store(gpu_restored.get(), nullptr);
  ASSERT_OK(ReadCheckpointInfo(&fs, dir + "/from_cpu/t", true, {}, &info));
  RowStoreRestorer restorer({&restored_store}, {records.get()}, info.nshards,
                            /*batch_rows=*/700);
  ASSERT_OK(
      RestoreCheckpoint(&fs, info,
                        [&](int shard, int table, std::string_view record) {
                          return restorer.Restore(shard, table, record);
                        },
                        SerialFor, {}));
  ASSERT_OK(restorer.Flush());
  EXPECT_EQ(gpu_restored->size(), cpu_->Size());
  std::swap(gpu_, gpu_restored);
  ExpectNear(GpuLookup(ids), CpuLookup(ids));
  std::swap(gpu_, gpu_restored);
}

// Adam (with its per-entry beta powers) and FTRL on both engines.
TEST_F(GpuRowTableTest, AdamAndFtrlMatchTheCpuEngine) {
  EmbeddingHashTableConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(entry_config {
             segments {
               dim_size: 6
               init_config { constants { constant: 0.1 } }
               opt_config { adam { weight_decay_factor: 0.01 } }
             }
             segments {
               dim_size: 3
               init_config { zeros {} }
               opt_config {
                 ftrl { l1_regularization_strength: 0.01 beta: 0.5 }
               }
             }
           })pb",
      &config));
  std::unique_ptr<EmbeddingHashTable> cpu;
  ASSERT_OK(EmbeddingHashTable::Create(config, 7, &cpu));
  GpuRowTableSpec spec;
  ASSERT_OK(GpuRowTableSpecFor(config.entry_config(), 7, &spec));
  std::unique_ptr<GpuRowTable> gpu;
  ASSERT_OK(GpuRowTable::Create(spec, &gpu));
  std::mt19937_64 gen(6);
  const std::vector<float> learning_rates = {0.05f, 0.1f};
  std::vector<int64_t> ids;
  for (int step = 1; step <= 5; ++step) {
    ids = Batch(&gen);
    const std::vector<float> grads = Normal(ids.size() * 9, &gen);
    ASSERT_OK(cpu->BatchOptimize(ids.data(), ids.size(), grads.data(),
                                 learning_rates.data(), step, step));
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_grads(grads);
    ASSERT_OK(gpu->ApplyGradients(d_ids.get(), ids.size(), d_grads.get(),
                                  learning_rates, step, nullptr));
  }
  std::vector<float> want(ids.size() * 9);
  cpu->BatchLookup(ids.data(), ids.size(), want.data());
  DeviceVector<int64_t> d_ids(ids);
  DeviceVector<float> out(ids.size() * 9);
  ASSERT_OK(gpu->Lookup(d_ids.get(), ids.size(), out.get(), nullptr));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  ExpectNear(out.ToHost(), want);
}

TEST_F(GpuRowTableTest, ReservedIdsAreRejectedAndNothingIsWritten) {
  const std::vector<int64_t> ids = {5, kEmptySlotId, 6};
  const std::vector<float> values(ids.size() * spec_.value_floats, 1.0f);
  DeviceVector<int64_t> d_ids(ids);
  DeviceVector<float> d_values(values);
  const Status s =
      gpu_->Assign(d_ids.get(), ids.size(), d_values.get(), 1, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(std::to_string(kEmptySlotId)), std::string::npos)
      << s.message();
  EXPECT_EQ(gpu_->size(), 0);
}

}  // namespace
}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith
