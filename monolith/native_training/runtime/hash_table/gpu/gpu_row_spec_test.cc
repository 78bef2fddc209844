// The GPU table's row layout and per-column math against the CPU engine's
// EntryAccessor (initializers and optimizers), on the host: the functions
// the kernels run, compiled here by the host compiler.
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_spec.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/entry_accessor.h"
#include "monolith/native_training/runtime/hash_table/initializer/initializer_interface.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

EntryConfig Parse(const std::string& text) {
  EntryConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  return config;
}

// sgd over 3 floats, then adagrad (weight decay) over 2.
constexpr char kTwoSegments[] = R"pb(
  segments {
    dim_size: 3
    init_config { constants { constant: 0.25 } }
    opt_config { sgd {} }
  }
  segments {
    dim_size: 2
    init_config { ones {} }
    opt_config {
      adagrad { initial_accumulator_value: 0.3 weight_decay_factor: 0.01 }
    }
  })pb";

std::unique_ptr<EntryAccessor> Accessor(const EntryConfig& config) {
  std::unique_ptr<EntryAccessor> accessor;
  Status s = EntryAccessor::Create(config, &accessor);
  EXPECT_OK(s);
  return accessor;
}

// A new row as the kernels write it: zeros, then every column's init.
std::vector<float> NewRow(const GpuRowTableSpec& spec, int64_t id) {
  std::vector<float> row(spec.row_floats(), 0.0f);
  for (const GpuSegment& seg : spec.segments) {
    for (int c = 0; c < seg.dim; ++c) InitColumn(seg, id, c, row.data());
  }
  return row;
}

// One entry of a config on both sides: the CPU engine's entry and the GPU
// row of id 42, each freshly initialized.
struct BothSides {
  GpuRowTableSpec spec;
  std::unique_ptr<EntryAccessor> accessor;
  std::vector<char> entry;
  std::vector<float> row;
};

void StartBothSides(const EntryConfig& config, BothSides* both) {
  ASSERT_OK(GpuRowTableSpecFor(config, 7, &both->spec));
  both->accessor = Accessor(config);
  both->entry.resize(both->accessor->SizeBytes());
  both->accessor->Init(both->entry.data(), 7, 42);
  both->row = NewRow(both->spec, 42);
}

std::vector<float> Floats(const std::vector<char>& entry) {
  std::vector<float> floats(entry.size() / sizeof(float));
  std::memcpy(floats.data(), entry.data(), entry.size());
  return floats;
}

// One gradient step on every segment of |row|, as the kernel runs it.
void ApplyStep(const GpuRowTableSpec& spec,
               const std::vector<float>& learning_rates,
               const std::vector<float>& grad, std::vector<float>* row) {
  for (size_t s = 0; s < spec.segments.size(); ++s) {
    const GpuSegment& seg = spec.segments[s];
    const StepScalars step = BeginStep(seg, learning_rates[s], row->data());
    for (int c = 0; c < seg.dim; ++c) {
      ApplyColumn(seg, step, grad.data(), c, row->data());
    }
    EndStep(seg, row->data());
  }
}

// Steps |config|'s entry with random gradients on the CPU engine and with
// the GPU math; both entries (embedding and state) must agree bit for bit.
// With |zero_start|, the first steps run at learning rate 0 and gradients
// are 0 in every other column until half way (a schedule starting at 0, ids
// seen by some columns only).
void ExpectSameTraining(const std::string& config_text, int steps,
                        bool zero_start = false) {
  const EntryConfig config = Parse(config_text);
  GpuRowTableSpec spec;
  const Status s = GpuRowTableSpecFor(config, 7, &spec);
  ASSERT_OK(s);
  auto accessor = Accessor(config);
  std::vector<char> entry(accessor->SizeBytes());
  accessor->Init(entry.data(), 7, 42);
  std::vector<float> row = NewRow(spec, 42);
  std::vector<float> start = row;
  start.resize(spec.entry_floats);
  ASSERT_EQ(start, Floats(entry));
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> learning_rates;
  for (size_t i = 0; i < spec.segments.size(); ++i) {
    learning_rates.push_back(0.1f / (i + 1));
  }
  for (int step = 1; step <= steps; ++step) {
    std::vector<float> grad(spec.value_floats);
    for (float& g : grad) g = normal(gen);
    std::vector<float> rates = learning_rates;
    if (zero_start && step <= 2) std::fill(rates.begin(), rates.end(), 0.0f);
    for (size_t c = 0; zero_start && 2 * step <= steps && c < grad.size();
         c += 2) {
      grad[c] = 0.0f;
    }
    accessor->Optimize(entry.data(), grad.data(), rates.data(), step);
    ApplyStep(spec, rates, grad, &row);
  }
  const std::vector<float> cpu = Floats(entry);
  row.resize(spec.entry_floats);
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_TRUE(std::isfinite(cpu[i])) << "float " << i << " of " << config_text;
    // Both compiled for the host without fused multiply-adds: the same
    // operations in the same order and precision give the same bits.
    EXPECT_EQ(row[i], cpu[i]) << "float " << i << " of " << config_text;
  }
}

TEST(GpuRowSpecTest, AdamAndFtrlMatchTheCpuOptimizers) {
  ExpectSameTraining(R"pb(
    segments {
      dim_size: 4
      init_config { constants { constant: 0.1 } }
      opt_config {
        adam { beta1: 0.8 beta2: 0.95 epsilon: 0.001 weight_decay_factor: 0.01 }
      }
    }
    segments {
      dim_size: 3
      init_config { zeros {} }
      opt_config { adam { use_nesterov: true } }
    })pb",
                     30);
  ExpectSameTraining(R"pb(
    segments {
      dim_size: 5
      init_config { constants { constant: -0.2 } }
      opt_config {
        ftrl {
          initial_accumulator_value: 0.2
          beta: 0.5
          l1_regularization_strength: 0.05
          l2_regularization_strength: 0.1
        }
      }
    })pb",
                     30);
}

TEST(GpuRowSpecTest, AmsgradAndAdadeltaMatchTheCpuOptimizers) {
  ExpectSameTraining(R"pb(
    segments {
      dim_size: 4
      init_config { constants { constant: 0.1 } }
      opt_config {
        amsgrad {
          beta1: 0.8
          beta2: 0.95
          epsilon: 0.001
          weight_decay_factor: 0.01
        }
      }
    }
    segments {
      dim_size: 3
      init_config { zeros {} }
      opt_config { amsgrad { use_nesterov: true } }
    }
    segments {
      dim_size: 5
      init_config { constants { constant: -0.2 } }
      opt_config {
        adadelta {
          averaging_ratio: 0.8
          epsilon: 0.001
          weight_decay_factor: 0.02
        }
      }
    })pb",
                     30);
}

TEST(GpuRowSpecTest, MomentumAndRmspropMatchTheCpuOptimizers) {
  ExpectSameTraining(R"pb(
    segments {
      dim_size: 4
      init_config { constants { constant: 0.1 } }
      opt_config { momentum { momentum: 0.8 weight_decay_factor: 0.01 } }
    }
    segments {
      dim_size: 3
      init_config { zeros {} }
      opt_config { momentum { use_nesterov: true } }
    })pb",
                     30);
  ExpectSameTraining(R"pb(
    segments {
      dim_size: 5
      init_config { constants { constant: -0.2 } }
      opt_config { rmsprop { momentum: 0.7 weight_decay_factor: 0.02 } }
    }
    segments {
      dim_size: 2
      init_config { constants { constant: 0.3 } }
      opt_config { rmspropv2 {} }
    })pb",
                     30);
}

// Learning rate 0 and zero accumulators with zero gradients: no NaN on
// either side, and the same entries.
TEST(GpuRowSpecTest, ZeroRatesAndZeroAccumulatorsMatchTheCpu) {
  ExpectSameTraining(R"pb(
    segments {
      dim_size: 4
      init_config { constants { constant: 0.1 } }
      opt_config { adagrad { initial_accumulator_value: 0 } }
    }
    segments {
      dim_size: 3
      init_config { constants { constant: -0.2 } }
      opt_config { ftrl { initial_accumulator_value: 0 } }
    })pb",
                     8, /*zero_start=*/true);
  // Zero states: adadelta's averages, amsgrad's moments, rmsprop's n.
  ExpectSameTraining(R"pb(
    segments {
      dim_size: 3
      init_config { constants { constant: 0.1 } }
      opt_config { adadelta {} }
    }
    segments {
      dim_size: 2
      init_config { constants { constant: -0.2 } }
      opt_config { amsgrad {} }
    }
    segments {
      dim_size: 3
      init_config { zeros {} }
      opt_config { rmsprop { momentum: 0 } }
    })pb",
                     8, /*zero_start=*/true);
}

// FTRL with nothing in its denominator (zero accumulator, beta and l2 0)
// and a gradient whose square underflows: w = 0 on both sides, not -inf.
TEST(GpuRowSpecTest, FtrlWithAZeroDenominatorMatchesTheCpu) {
  BothSides both;
  ASSERT_NO_FATAL_FAILURE(StartBothSides(Parse(R"pb(
    segments {
      dim_size: 2
      init_config { zeros {} }
      opt_config { ftrl { initial_accumulator_value: 0 beta: 0 } }
    })pb"), &both));
  const std::vector<float> grad = {1e-23f, -1e-23f};
  const std::vector<float> rates = {0.1f};
  both.accessor->Optimize(both.entry.data(), grad.data(), rates.data(), 1);
  ApplyStep(both.spec, rates, grad, &both.row);
  const std::vector<float> cpu = Floats(both.entry);
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_EQ(both.row[i], cpu[i]) << "float " << i;
    EXPECT_TRUE(std::isfinite(both.row[i])) << "float " << i;
  }
}

// A NaN gradient shows in FTRL's weight on both sides (it pinned w at 0
// over NaN state), and a finite one beside it trains alike.
TEST(GpuRowSpecTest, FtrlWithANanGradientMatchesTheCpu) {
  BothSides both;
  ASSERT_NO_FATAL_FAILURE(
      StartBothSides(Parse(R"pb(
                       segments {
                         dim_size: 2
                         init_config { constants { constant: 0.5 } }
                         opt_config { ftrl {} }
                       })pb"),
                     &both));
  const std::vector<float> grad = {std::nanf(""), 0.25f};
  const std::vector<float> rates = {0.1f};
  both.accessor->Optimize(both.entry.data(), grad.data(), rates.data(), 1);
  ApplyStep(both.spec, rates, grad, &both.row);
  const std::vector<float> cpu = Floats(both.entry);
  EXPECT_TRUE(std::isnan(cpu[0]));
  EXPECT_TRUE(std::isnan(both.row[0]));
  EXPECT_EQ(both.row[1], cpu[1]);
  EXPECT_TRUE(std::isfinite(cpu[1]));
}

TEST(GpuRowSpecTest, RowsAreTheCpuEntriesAndStartTheSame) {
  const EntryConfig config = Parse(kTwoSegments);
  GpuRowTableSpec spec;
  ASSERT_OK(GpuRowTableSpecFor(config, 7, &spec));
  auto accessor = Accessor(config);
  EXPECT_EQ(spec.value_floats, 5);
  EXPECT_EQ(spec.entry_floats * 4, accessor->SizeBytes());
  EXPECT_EQ(spec.row_floats(), spec.entry_floats + kTimeFloats);
  ASSERT_EQ(spec.segments.size(), 2u);
  EXPECT_EQ(spec.segments[1].value_offset, 3);
  EXPECT_EQ(spec.segments[1].state_offset, 5);
  EXPECT_OK(CheckGpuRowTableSpec(spec));
  GpuRowTableSpec broken = spec;
  broken.entry_floats = 6;  // adagrad's state would run past the entry
  EXPECT_EQ(CheckGpuRowTableSpec(broken).code(),
            StatusCode::kInvalidArgument);

  std::vector<char> entry(accessor->SizeBytes());
  accessor->Init(entry.data(), 7, 42);
  std::vector<float> row = NewRow(spec, 42);
  EXPECT_EQ(RowTime(row.data(), spec.entry_floats), 0);
  row.resize(spec.entry_floats);
  EXPECT_EQ(row, Floats(entry));
}

TEST(GpuRowSpecTest, UpdateTimesKeepAllSixtyFourBits) {
  std::vector<float> row(4, 0.0f);
  for (int64_t t : {int64_t{0}, int64_t{1700000000}, int64_t{-1},
                    std::numeric_limits<int64_t>::max()}) {
    SetRowTime(row.data(), 2, t);
    EXPECT_EQ(RowTime(row.data(), 2), t);
    EXPECT_EQ(row[0], 0.0f);
  }
}

TEST(GpuRowSpecTest, GradientStepsMatchTheCpuOptimizers) {
  BothSides both;
  ASSERT_NO_FATAL_FAILURE(StartBothSides(Parse(kTwoSegments), &both));
  const GpuRowTableSpec& spec = both.spec;
  EntryAccessor* accessor = both.accessor.get();
  std::vector<char>& entry = both.entry;
  std::vector<float>& row = both.row;

  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::vector<float> learning_rates = {0.1f, 0.05f};
  for (int step = 1; step <= 20; ++step) {
    std::vector<float> grad(spec.value_floats);
    for (float& g : grad) g = normal(gen);
    accessor->Optimize(entry.data(), grad.data(), learning_rates.data(), step);
    ApplyStep(spec, learning_rates, grad, &row);
  }
  const std::vector<float> cpu = Floats(entry);
  row.resize(spec.entry_floats);
  ASSERT_EQ(row.size(), cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_NEAR(row[i], cpu[i], 1e-6f * (1.0f + std::abs(cpu[i])))
        << "float " << i;
  }
}

TEST(GpuRowSpecTest, RandomUniformValuesAreInRangeAndFollowTheId) {
  GpuRowTableSpec spec;
  ASSERT_OK(GpuRowTableSpecFor(
      Parse(R"pb(
        segments {
          dim_size: 64
          init_config { random_uniform { minval: -0.5 maxval: 0.25 } }
          opt_config { adagrad {} }
        })pb"),
      11, &spec));
  const std::vector<float> a = NewRow(spec, 1001);
  EXPECT_EQ(a, NewRow(spec, 1001));
  EXPECT_NE(a, NewRow(spec, 1002));
  double sum = 0;
  for (int c = 0; c < 64; ++c) {
    EXPECT_GE(a[c], -0.5f);
    EXPECT_LT(a[c], 0.25f);
    sum += a[c];
    EXPECT_FLOAT_EQ(a[64 + c], 0.1f);  // adagrad's default accumulator
  }
  EXPECT_NEAR(sum / 64, -0.125, 0.1);
}

// The map's buckets come from MixId(id, hash_seed): a seed of the table's
// own, so ids chosen to share a home bucket under one seed (the unseeded
// hash can be inverted) do not under another.
TEST(GpuRowSpecTest, TheHashSeedFollowsTheTableSeed) {
  for (const char* config : {R"pb(segments {
                                    dim_size: 4
                                    init_config { zeros {} }
                                    opt_config { adagrad {} }
                                  })pb",
                             R"pb(segments {
                                    dim_size: 4
                                    comp_config { fp16 {} }
                                  }
                                  entry_type: SERVING)pb"}) {
    GpuRowTableSpec a, again, other;
    for (auto [seed, spec] : {std::pair(7, &a), {7, &again}, {8, &other}}) {
      const Status s = GpuRowTableSpecFor(Parse(config), seed, spec);
      ASSERT_OK(s);
    }
    EXPECT_EQ(a.hash_seed, TableHashSeed(7)) << config;
    EXPECT_EQ(again.hash_seed, a.hash_seed) << config;
    EXPECT_NE(other.hash_seed, a.hash_seed) << config;
    EXPECT_NE(a.hash_seed, 0u) << config;
  }
}

TEST(GpuRowSpecTest, RandomUniformValuesAreTheCpuTablesToAFloatsPrecision) {
  // Both draw from InitBits(seed + segment, id, column): the GPU maps its
  // top 24 bits in float arithmetic, the CPU 53 in double, so the values
  // differ by at most (maxval - minval) * 2^-24 plus rounding.
  const EntryConfig config = Parse(R"pb(
    segments {
      dim_size: 5
      init_config { random_uniform { minval: -1 maxval: 3 } }
      opt_config { sgd {} }
    }
    segments {
      dim_size: 7
      init_config { random_uniform {} }
      opt_config { adagrad {} }
    })pb");
  GpuRowTableSpec spec;
  ASSERT_OK(GpuRowTableSpecFor(config, 11, &spec));
  auto accessor = Accessor(config);
  std::vector<char> entry(accessor->SizeBytes());
  for (const int64_t id : {int64_t{0}, int64_t{-3}, int64_t{1} << 50}) {
    accessor->Init(entry.data(), 11, id);
    const std::vector<float> cpu = Floats(entry);
    const std::vector<float> gpu = NewRow(spec, id);
    for (int c = 0; c < 12; ++c) {
      const float tolerance = c < 5 ? 4.0f * 0x1.0p-23f : 0.1f * 0x1.0p-23f;
      EXPECT_NEAR(cpu[c], gpu[c], tolerance) << "id " << id << " column " << c;
    }
  }
}

TEST(GpuRowSpecTest, RandomUniformValuesStayInRangeAtExtremeBounds) {
  // Bounds whose difference overflows a float, and a range of one float.
  for (const auto& [minval, maxval] :
       {std::pair<float, float>{-3e38f, 3e38f},
        std::pair<float, float>{1.0f, std::nextafter(1.0f, 2.0f)}}) {
    GpuRowTableSpec spec;
    EntryConfig config = Parse(R"pb(
      segments {
        dim_size: 64
        init_config { random_uniform {} }
        opt_config { sgd {} }
      })pb");
    auto* uniform = config.mutable_segments(0)
                        ->mutable_init_config()
                        ->mutable_random_uniform();
    uniform->set_minval(minval);
    uniform->set_maxval(maxval);
    ASSERT_OK(GpuRowTableSpecFor(config, 11, &spec));
    for (int64_t id = 0; id < 2000; ++id) {
      const std::vector<float> row = NewRow(spec, id);
      for (int c = 0; c < 64; ++c) {
        ASSERT_TRUE(std::isfinite(row[c])) << minval << " id " << id;
        ASSERT_GE(row[c], minval) << "id " << id;
        ASSERT_LT(row[c], maxval) << "id " << id;
      }
    }
  }
}

TEST(GpuRowSpecTest, ConfigsTheGpuTableCannotRunAreRejectedByName) {
  struct Case {
    const char* config;
    const char* message;
  } cases[] = {
      {R"pb(segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { group_adagrad {} }
            })pb",
       "segment 0: the GPU table supports the sgd, adagrad, adam, amsgrad, "
       "ftrl, adadelta, momentum, rmsprop and rmspropv2 optimizers"},
      {R"pb(segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { momentum { warmup_steps: 5 } }
            })pb",
       "segment 0: the GPU table does not do warmup_steps"},
      {R"pb(segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { amsgrad { warmup_steps: 5 } }
            })pb",
       "segment 0: the GPU table does not do warmup_steps"},
      {R"pb(segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { adadelta { warmup_steps: 5 } }
            })pb",
       "segment 0: the GPU table does not do warmup_steps"},
      {R"pb(segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { sgd {} }
            }
            segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { adagrad { warmup_steps: 10 } }
            })pb",
       "segment 1: the GPU table does not do warmup_steps"},
      {R"pb(segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { sgd {} }
              comp_config { one_bit {} }
            })pb",
       "segment 0: the GPU table does not train fixed_r8 or one_bit"},
      {R"pb(segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { sgd {} }
              comp_config { fp16 {} }
            }
            segments {
              dim_size: 4
              init_config { zeros {} }
              opt_config { sgd {} }
              comp_config { fixed_r8 {} }
            })pb",
       "segment 1: the GPU table does not train fixed_r8 or one_bit"},
      {R"pb(segments {
              dim_size: 4
              comp_config { fp32 {} }
            }
            segments {
              dim_size: 4
              comp_config { fixed_r8 {} }
            }
            entry_type: SERVING)pb",
       "segment 1: the GPU table stores SERVING segments with the fp16 or "
       "fp32 compressor"},
      {R"pb(segments {
              dim_size: 0
              init_config { zeros {} }
              opt_config { sgd {} }
            })pb",
       "dim_size must be positive"},
  };
  for (const Case& c : cases) {
    GpuRowTableSpec spec;
    const Status s = GpuRowTableSpecFor(Parse(c.config), 1, &spec);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.config;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << s.message();
  }
}

// SERVING rows hold the CPU serving entry byte for byte: fp16 and fp32
// segments packed one after another (an odd fp16 dim leaves the next
// segment at an offset of 2 mod 4), written and read column by column as
// the kernels do.
TEST(GpuRowSpecTest, ServingRowsAreTheCpuServingEntry) {
  const EntryConfig config = Parse(R"pb(
    segments { dim_size: 3 comp_config { fp16 {} } }
    segments { dim_size: 2 comp_config { fp32 {} } }
    segments { dim_size: 5 comp_config { fp16 {} } }
    entry_type: SERVING)pb");
  GpuRowTableSpec spec;
  const Status s = GpuRowTableSpecFor(config, 1, &spec);
  ASSERT_OK(s);
  EXPECT_TRUE(spec.serving);
  EXPECT_EQ(spec.value_floats, 10);
  EXPECT_EQ(spec.entry_floats, 6);  // 6 + 8 + 10 bytes
  ASSERT_EQ(spec.segments.size(), 3u);
  EXPECT_EQ(spec.segments[1].data_byte, 6);
  EXPECT_EQ(spec.segments[2].data_byte, 14);
  const auto accessor = Accessor(config);
  ASSERT_EQ(accessor->SizeBytes(), 4 * spec.entry_floats);
  // What GpuRowTable::Create checks first: fewer entry floats than
  // embedding floats is right for fp16 values.
  const Status valid = CheckGpuRowTableSpec(spec);
  EXPECT_OK(valid);
  GpuRowTableSpec broken = spec;
  broken.segments[2].data_byte = 16;  // its 10 bytes pass the entry's 24
  EXPECT_EQ(CheckGpuRowTableSpec(broken).code(),
            StatusCode::kInvalidArgument);
  broken = spec;
  broken.serving = false;  // TRAINING entries hold the embedding itself
  EXPECT_EQ(CheckGpuRowTableSpec(broken).code(),
            StatusCode::kInvalidArgument);

  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 30.0f);
  const float specials[] = {0.0f, -0.0f, 1e-7f, -6.1e-5f, 65519.0f, 7e4f,
                            1.00048828125f /* a tie */,
                            std::numeric_limits<float>::infinity()};
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> num(spec.value_floats);
    for (size_t i = 0; i < num.size(); ++i) {
      num[i] = trial < 8 && i % 2 == 0 ? specials[trial] : normal(gen);
    }
    std::vector<char> entry(accessor->SizeBytes(), 0);
    accessor->Assign(num.data(), entry.data());
    std::vector<float> row(spec.row_floats(), 0.0f);
    for (const GpuSegment& seg : spec.segments) {
      for (int c = 0; c < seg.dim; ++c) {
        WriteStored(seg, row.data(), c, num[seg.value_offset + c]);
      }
    }
    ASSERT_EQ(std::memcmp(row.data(), entry.data(), entry.size()), 0)
        << "trial " << trial;
    std::vector<float> cpu(spec.value_floats), gpu(spec.value_floats);
    accessor->Fill(entry.data(), cpu.data());
    for (const GpuSegment& seg : spec.segments) {
      for (int c = 0; c < seg.dim; ++c) {
        gpu[seg.value_offset + c] = ReadStored(seg, row.data(), c);
      }
    }
    ASSERT_EQ(std::memcmp(cpu.data(), gpu.data(), sizeof(float) * cpu.size()),
              0)
        << "trial " << trial;
  }
}

TEST(GpuRowSpecTest, TheTwoReservedIdsAreNotStorable) {
  EXPECT_FALSE(StorableId(kEmptySlotId));
  EXPECT_FALSE(StorableId(kReclaimedSlotId));
  EXPECT_TRUE(StorableId(0));
  EXPECT_TRUE(StorableId(-1));
  EXPECT_TRUE(StorableId(kEmptySlotId - 1));
}

TEST(GpuRowSpecTest, IdShardsSplitIdsByFloorMod) {
  const std::vector<int64_t> ids = {-7, -3, -1, 0, 1, 2, 5, 9,
                                    std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max()};
  for (int64_t id : ids) {
    EXPECT_TRUE(IdShard{}.Holds(id)) << id;
    int holders = 0;
    for (int index = 0; index < 3; ++index) {
      if (IdShard{index, 3}.Holds(id)) {
        ++holders;
        // floormod: -7 -> 2, -1 -> 2, -3 -> 0
        EXPECT_EQ(index, ((id % 3) + 3) % 3) << id;
      }
    }
    EXPECT_EQ(holders, 1) << id;
  }
}

}  // namespace
}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith
