// Mutated checkpoint records fed to the GPU tables' restore (GpuRowRecords
// and RowStoreRestorer, host code) under AddressSanitizer, fixed seed,
// bounded iterations: every record reads, checks and restores into a row
// of exactly the table's floats, or returns an error; none reads or writes
// past its bytes. Unmutated records read back the ids and rows they were
// written from (the training layout's exactly). MONOLITH_FUZZ_SEED,
// MONOLITH_FUZZ_ITERATIONS and MONOLITH_FUZZ_SECONDS (--test_env;
// FuzzBudget, spent by each config) run it longer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_checkpoint.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/test_env.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

// A training table of every optimizer state the GPU rows hold, and a
// serving one.
constexpr const char* kConfigs[] = {
    R"pb(segments {
           dim_size: 3
           init_config { zeros {} }
           opt_config { sgd {} }
         }
         segments {
           dim_size: 2
           init_config { zeros {} }
           opt_config { adagrad { initial_accumulator_value: 0.3 } }
         }
         segments {
           dim_size: 2
           init_config { zeros {} }
           opt_config { adam {} }
         }
         segments {
           dim_size: 1
           init_config { zeros {} }
           opt_config { ftrl {} }
         })pb",
    R"pb(segments {
           dim_size: 2
           init_config { zeros {} }
           opt_config { momentum { use_nesterov: true } }
         }
         segments {
           dim_size: 3
           init_config { zeros {} }
           opt_config { rmsprop {} }
         }
         segments {
           dim_size: 1
           init_config { zeros {} }
           opt_config { rmspropv2 {} }
         }
         segments {
           dim_size: 2
           init_config { zeros {} }
           opt_config { amsgrad {} }
         }
         segments {
           dim_size: 2
           init_config { zeros {} }
           opt_config { adadelta {} }
         })pb",
    R"pb(entry_type: SERVING
         segments { dim_size: 4 comp_config { fp16 {} } })pb",
};

// Takes the restored rows (ASan checks their bytes are the restorer's).
class DroppingRowStore : public RowStore {
 public:
  int64_t slots() const override { return 0; }
  Status Export(int64_t, int64_t, IdShard, std::vector<int64_t>* ids,
                std::vector<float>* rows, int64_t* next) override {
    ids->clear();
    rows->clear();
    *next = 0;
    return Status::OK();
  }
  Status Put(const int64_t*, int64_t, const float*) override {
    return Status::OK();
  }
};

std::string Mutate(std::string record, std::mt19937_64* rng) {
  const int mutations = 1 + static_cast<int>((*rng)() % 4);
  for (int m = 0; m < mutations; ++m) {
    const size_t at = record.empty() ? 0 : (*rng)() % record.size();
    switch ((*rng)() % 6) {
      case 0:  // flip a bit
        if (!record.empty()) record[at] ^= 1 << ((*rng)() % 8);
        break;
      case 1:  // an extreme byte (varint continuations, huge lengths)
        if (!record.empty()) record[at] = ((*rng)() & 1) ? '\xff' : '\x80';
        break;
      case 2:  // cut short
        record.resize(at);
        break;
      case 3:  // bytes inserted
        record.insert(at, std::string(1 + (*rng)() % 9,
                                      static_cast<char>((*rng)())));
        break;
      case 4:  // a slice repeated (fields given twice)
        record.insert(at, record.substr(at, (*rng)() % 16));
        break;
      default:  // a random byte
        if (!record.empty()) record[at] = static_cast<char>((*rng)());
        break;
    }
  }
  return record;
}

TEST(GpuRowCheckpointFuzzTest, MutatedRecordsReadOrFailCleanly) {
  const uint64_t seed = static_cast<uint64_t>(EnvInt("MONOLITH_FUZZ_SEED", 1));
  int64_t iterations = 0, read_ok = 0, read_failed = 0;
  for (const char* text : kConfigs) {
    EntryConfig config;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config));
    std::unique_ptr<GpuRowRecords> records;
    const Status created = GpuRowRecords::Create(config, &records);
    ASSERT_OK(created);
    const int row_floats = records->spec().row_floats();
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    // Valid records of random rows.
    std::vector<std::string> valid;
    for (int i = 0; i < 64; ++i) {
      const int64_t id = static_cast<int64_t>(rng() >> 1) - (int64_t{1} << 62);
      std::vector<float> row(row_floats);
      for (float& v : row) v = normal(rng);
      // The update time (the last two floats' bits) in range.
      if (row_floats >= 2) {
        const uint64_t time = rng() % (uint64_t{1} << 31);
        std::memcpy(&row[row_floats - 2], &time, sizeof(time));
      }
      WireWriter out;
      records->Write(id, row.data(), &out);
      valid.emplace_back(out.data(), out.size());
      RecordScratch scratch;
      std::vector<float> read(row_floats);
      int64_t read_id = 0;
      ASSERT_OK(records->Read(valid.back(), &scratch, &read_id, read.data()));
      EXPECT_EQ(read_id, id);
      // Bit for bit: the update time's floats may be NaN patterns.
      if (!records->spec().serving) {
        EXPECT_EQ(std::memcmp(read.data(), row.data(),
                              row.size() * sizeof(float)),
                  0);
      }
    }
    DroppingRowStore store;
    RowStoreRestorer restorer({&store}, {records.get()}, 2, 64);
    RecordScratch scratch;
    const FuzzBudget budget(20000);
    for (int64_t i = 0; budget.Allows(i); ++i, ++iterations) {
      const std::string record = Mutate(valid[rng() % valid.size()], &rng);
      // Exactly the table's floats: ASan sees a write past them.
      std::vector<float> row(row_floats);
      int64_t id = 0;
      const Status read =
          records->Read(record, &scratch, &id, row.data());
      read.ok() ? ++read_ok : ++read_failed;
      const Status checked = restorer.Check(i % 2, 0, record);
      const Status restored = restorer.Restore(i % 2, 0, record);
      // Check says what Restore does.
      EXPECT_EQ(checked.ok(), restored.ok())
          << "iteration " << i << ": " << checked.ToString() << " / "
          << restored.ToString();
    }
    ASSERT_OK(restorer.Flush());
  }
  std::printf("%lld iterations in all (seed %llu): %lld records read, "
              "%lld refused\n",
              static_cast<long long>(iterations),
              static_cast<unsigned long long>(seed),
              static_cast<long long>(read_ok),
              static_cast<long long>(read_failed));
  EXPECT_GT(read_ok, 0);
  EXPECT_GT(read_failed, 0);
}

}  // namespace
}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith
