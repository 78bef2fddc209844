#include "monolith/native_training/runtime/hash_table/initializer/initializer.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/initializer/init_bits.h"
#include "monolith/native_training/runtime/hash_table/initializer/initializer_config.pb.h"
#include "monolith/native_training/runtime/hash_table/initializer/initializer_interface.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace {

std::unique_ptr<InitializerInterface> MustNew(const InitializerConfig& config,
                                              int dim) {
  std::unique_ptr<InitializerInterface> init;
  Status s = NewInitializer(config, dim, &init);
  EXPECT_OK(s);
  return init;
}

// The values |init| gives a new entry of |id| at |column| of a table
// segment seeded |seed|.
std::vector<float> Draw(const InitializerInterface& init, uint64_t seed = 1,
                        int64_t id = 7, int column = 0) {
  std::vector<float> v(init.DimSize() + 1, -7.0f);  // one guard float
  init.Initialize(v.data(), seed, id, column);
  EXPECT_EQ(v.back(), -7.0f) << "wrote past DimSize()";
  v.pop_back();
  return v;
}

void ExpectInvalid(const InitializerConfig& config, int dim,
                   const std::string& needle) {
  std::unique_ptr<InitializerInterface> init;
  Status s = NewInitializer(config, dim, &init);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos)
      << "'" << s.message() << "' should mention '" << needle << "'";
  EXPECT_EQ(init, nullptr);
}

TEST(ConstantInitializers, ZerosOnesConstants) {
  InitializerConfig zeros;
  zeros.mutable_zeros();
  auto z = MustNew(zeros, 4);
  EXPECT_EQ(z->DimSize(), 4);
  EXPECT_EQ(Draw(*z), std::vector<float>(4, 0.0f));
  EXPECT_FALSE(std::signbit(Draw(*z)[0]));

  InitializerConfig ones;
  ones.mutable_ones();
  auto o = MustNew(ones, 3);
  EXPECT_EQ(Draw(*o, 2, 9, 4), std::vector<float>(3, 1.0f));

  InitializerConfig constants;
  constants.mutable_constants()->set_constant(-2.5f);
  auto c = MustNew(constants, 5);
  EXPECT_EQ(Draw(*c), std::vector<float>(5, -2.5f));
  EXPECT_EQ(c->DebugString(), "Constants(D=5, C=-2.5)");
}

TEST(ConstantInitializers, DimOverridesConfigDimSize) {
  InitializerConfig config;
  config.mutable_constants()->set_dim_size(3);
  config.mutable_constants()->set_constant(4.0f);
  auto c = MustNew(config, 6);
  EXPECT_EQ(c->DimSize(), 6);
  EXPECT_EQ(Draw(*c), std::vector<float>(6, 4.0f));
}

TEST(RandomUniformInitializer, ProtoDefaults) {
  InitializerConfig config;
  config.mutable_random_uniform();  // minval/maxval default to -0.05/0.05
  auto init = MustNew(config, 8);
  EXPECT_EQ(init->DebugString(), "RandomUniform(D=8, min=-0.05, max=0.05)");
  for (int64_t id = 0; id < 100; ++id) {
    for (float x : Draw(*init, 7, id)) {
      EXPECT_GE(x, -0.05f);
      EXPECT_LT(x, 0.05f);
    }
  }
}

TEST(RandomUniformInitializer, ValuesFollowTheSeedTheIdAndTheColumn) {
  InitializerConfig config;
  config.mutable_random_uniform()->set_minval(-1.0f);
  config.mutable_random_uniform()->set_maxval(3.0f);
  auto init = MustNew(config, 16);

  // Nothing else: the same draw whenever and wherever the id is inserted.
  const std::vector<float> values = Draw(*init, 123, 42);
  EXPECT_EQ(values, Draw(*init, 123, 42));
  EXPECT_NE(values, Draw(*init, 123, 43));
  EXPECT_NE(values, Draw(*init, 124, 42));
  // Each value is UniformFromBits of its column's InitBits.
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(values[i], UniformFromBits(InitBits(123, 42, i), -1.0f, 3.0f))
        << i;
  }
  // From column 3 on: what a segment after 3 floats of others draws.
  const std::vector<float> later = Draw(*init, 123, 42, 3);
  EXPECT_EQ(std::vector<float>(values.begin() + 3, values.end()),
            std::vector<float>(later.begin(), later.begin() + 13));
}

TEST(InitBits, Pinned) {
  // Pins the bits (GPU tables draw from them too): SplitMix64's finalizer
  // of seed ^ id * 0x9E3779B97F4A7C15 ^ column << 32.
  EXPECT_EQ(InitBits(0, 0, 0), 0u);
  EXPECT_EQ(InitBits(1, 2, 3), 0x13ddcff59518a7e4ull);
  EXPECT_EQ(InitBits(123, -5, 0), 0xf251b9fa0dfb8d97ull);
}

TEST(RandomUniformInitializer, PinnedValues) {
  // Pins the engine output -> float mapping.
  EXPECT_EQ(UniformFromBits(0xE220A8397B1DCDAFull, 0.0f, 1.0f),
            static_cast<float>(static_cast<double>(0xE220A8397B1DCDAFull >> 11) *
                               0x1.0p-53));
  EXPECT_EQ(UniformFromBits(uint64_t{1} << 11, 0.0f, 1.0f), 0x1.0p-53f);
  EXPECT_EQ(UniformFromBits(uint64_t{1} << 10, 0.0f, 1.0f), 0.0f);
  EXPECT_EQ(UniformFromBits(0, -2.0f, 6.0f), -2.0f);
  EXPECT_EQ(UniformFromBits(uint64_t{1} << 63, -2.0f, 6.0f), 2.0f);
  EXPECT_EQ(UniformFromBits(uint64_t{3} << 62, -2.0f, 6.0f), 4.0f);
  // The largest output rounds to maxval in float; it is kept below it.
  EXPECT_EQ(UniformFromBits(~uint64_t{0}, -2.0f, 6.0f),
            std::nextafter(6.0f, 0.0f));
  EXPECT_EQ(UniformFromBits(~uint64_t{0}, 0.25f, 0.25f), 0.25f);
}

TEST(RandomUniformInitializer, MeanAndSpread) {
  constexpr int kDim = 1000;
  constexpr int kRounds = 200;  // 200k draws
  constexpr float kMin = -1.0f, kMax = 3.0f;
  InitializerConfig config;
  config.mutable_random_uniform()->set_minval(kMin);
  config.mutable_random_uniform()->set_maxval(kMax);
  auto init = MustNew(config, kDim);

  std::vector<float> v(kDim);
  double sum = 0, sum_sq = 0;
  float lo = kMax, hi = kMin;
  int buckets[8] = {0};
  for (int r = 0; r < kRounds; ++r) {
    init->Initialize(v.data(), 20240601, r, 0);
    for (float x : v) {
      ASSERT_GE(x, kMin);
      ASSERT_LT(x, kMax);
      sum += x;
      sum_sq += static_cast<double>(x) * x;
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      ++buckets[static_cast<int>((x - kMin) / (kMax - kMin) * 8)];
    }
  }
  const double n = static_cast<double>(kDim) * kRounds;
  const double mean = sum / n;
  const double var = sum_sq / n - mean * mean;
  // Uniform[-1, 3): mean 1, variance 16/12, standard error of the mean
  // sqrt(4/3/2e5) ~ 0.0026. Bounds are ~4 standard errors.
  EXPECT_NEAR(mean, 1.0, 0.01);
  EXPECT_NEAR(var, 16.0 / 12.0, 0.01);
  EXPECT_LT(lo, kMin + 0.001f);
  EXPECT_GT(hi, kMax - 0.001f);
  // Each eighth gets 25000 +- 4 * sqrt(25000 * 7 / 8) ~ 25000 +- 600.
  for (int b = 0; b < 8; ++b) {
    EXPECT_NEAR(buckets[b], n / 8, 600) << "bucket " << b;
  }
}

TEST(RandomUniformInitializer, EqualBoundsGiveConstant) {
  InitializerConfig config;
  config.mutable_random_uniform()->set_minval(0.5f);
  config.mutable_random_uniform()->set_maxval(0.5f);
  auto init = MustNew(config, 4);
  EXPECT_EQ(Draw(*init), std::vector<float>(4, 0.5f));
}

TEST(CombineInitializers, SegmentsInOrder) {
  std::unique_ptr<InitializerInterface> a, b;
  ASSERT_OK(NewConstantsInitializer(1, 3.0f, &a));
  ASSERT_OK(NewRandomUniformInitializer(2, 10.0f, 11.0f, &b));
  auto combined = CombineInitializers(std::move(a), std::move(b));
  EXPECT_EQ(combined->DimSize(), 3);
  EXPECT_EQ(combined->DebugString(),
            "Constants(D=1, C=3)|RandomUniform(D=2, min=10, max=11)");
  const std::vector<float> v = Draw(*combined, 5, 8, 2);
  EXPECT_EQ(v[0], 3.0f);
  // The second's columns follow the first's.
  EXPECT_EQ(v[1], UniformFromBits(InitBits(5, 8, 3), 10.0f, 11.0f));
  EXPECT_EQ(v[2], UniformFromBits(InitBits(5, 8, 4), 10.0f, 11.0f));
}

TEST(NewInitializer, Errors) {
  ExpectInvalid(InitializerConfig(), 4, "no initializer set");

  InitializerConfig zeros;
  zeros.mutable_zeros()->set_dim_size(4);
  ExpectInvalid(zeros, 0, "dim must be positive");
  ExpectInvalid(zeros, -3, "dim must be positive, got -3");

  InitializerConfig bad_range;
  bad_range.mutable_random_uniform()->set_minval(1.0f);
  bad_range.mutable_random_uniform()->set_maxval(-1.0f);
  ExpectInvalid(bad_range, 4, "minval <= maxval");

  InitializerConfig nan_bound;
  nan_bound.mutable_random_uniform()->set_maxval(
      std::numeric_limits<float>::quiet_NaN());
  ExpectInvalid(nan_bound, 4, "must be finite");

  InitializerConfig inf_bound;
  inf_bound.mutable_random_uniform()->set_minval(
      -std::numeric_limits<float>::infinity());
  ExpectInvalid(inf_bound, 4, "must be finite");

  InitializerConfig nan_constant;
  nan_constant.mutable_constants()->set_constant(
      std::numeric_limits<float>::quiet_NaN());
  ExpectInvalid(nan_constant, 4, "value must be finite");

  std::unique_ptr<InitializerInterface> init;
  EXPECT_EQ(NewConstantsInitializer(0, 1.0f, &init).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(NewRandomUniformInitializer(2, 1.0f, 0.0f, &init).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(init, nullptr);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
