// Warmup and float16 stochastic rounding.
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_decorators.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer.pb.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_test_util.h"

namespace monolith {
namespace hash_table {
namespace optimizer_test {
namespace {

// ---------------------------------------------------------------- warmup

TEST(Warmup, Scale) {
  // The original's PolynomialDecay(0 -> lr over 4 steps) at these steps.
  EXPECT_EQ(WarmupLearningRateScale(4, 0), 0.0f);
  EXPECT_EQ(WarmupLearningRateScale(4, 1), 0.25f);
  EXPECT_EQ(WarmupLearningRateScale(4, 2), 0.5f);
  EXPECT_EQ(WarmupLearningRateScale(4, 3), 0.75f);
  EXPECT_EQ(WarmupLearningRateScale(4, 4), 1.0f);
  EXPECT_EQ(WarmupLearningRateScale(4, 1000), 1.0f);
  EXPECT_EQ(WarmupLearningRateScale(1, 0), 0.0f);
  EXPECT_EQ(WarmupLearningRateScale(1, 1), 1.0f);
  EXPECT_EQ(WarmupLearningRateScale(0, 0), 1.0f);  // disabled
  EXPECT_EQ(WarmupLearningRateScale(-5, 0), 1.0f);
  EXPECT_EQ(WarmupLearningRateScale(4, -1), 0.0f);
  EXPECT_EQ(WarmupLearningRateScale(4, -100), 0.0f);
  EXPECT_EQ(WarmupLearningRateScale(std::numeric_limits<int64_t>::max(),
                                    std::numeric_limits<int64_t>::max()),
            1.0f);
  EXPECT_FLOAT_EQ(WarmupLearningRateScale(3, 1), 1.0f / 3);
}

// An optimizer whose config has warmup_steps = N runs, at global step s, as
// the same optimizer without warmup handed lr * min(1, s / N).
TEST(Warmup, ScalesTheLearningRateOfEveryOptimizerThatHasIt) {
  const int dim = 6;
  const int64_t warmup = 5;
  int covered = 0;
  const auto* oneof = OptimizerConfig::descriptor()->FindOneofByName("type");
  for (int f = 0; f < oneof->field_count(); ++f) {
    const auto* field = oneof->field(f);
    OptimizerConfig plain;
    auto* sub = plain.GetReflection()->MutableMessage(&plain, field);
    const auto* steps_field = sub->GetDescriptor()->FindFieldByName(
        "warmup_steps");
    if (steps_field == nullptr) continue;  // no warmup in this config
    SCOPED_TRACE(field->name());
    ++covered;
    OptimizerConfig warm = plain;
    auto* warm_sub = warm.GetReflection()->MutableMessage(&warm, field);
    warm_sub->GetReflection()->SetInt64(warm_sub, steps_field, warmup);

    auto p = MustNew(plain, dim);
    auto w = MustNew(warm, dim);
    EXPECT_EQ(w->StateBytes(), p->StateBytes());
    EXPECT_EQ(w->DumpSize(), p->DumpSize());
    EXPECT_NE(w->DebugString().find("Warmup(5)"), std::string::npos);
    Entry ep(*p), ew(*w);
    ep.Init();
    ew.Init();
    ep.SetNum(InitialNum(dim));
    ew.SetNum(InitialNum(dim));
    const float lr = 0.2f;
    for (int64_t step : {0, 1, 3, 4, 9}) {
      const float scale = std::min(1.0, step / 5.0);
      ep.Optimize(Grad(dim, step), lr * scale, step);
      ew.Optimize(Grad(dim, step), lr, step);
      EXPECT_EQ(ew.Num(), ep.Num()) << "step " << step;
      EXPECT_EQ(ew.StateBytes(), ep.StateBytes());
    }
  }
  EXPECT_EQ(covered, 10);
}

TEST(Warmup, AdagradMatchesReference) {
  OptimizerConfig c;
  c.mutable_adagrad()->set_warmup_steps(4);
  c.mutable_adagrad()->set_weight_decay_factor(0.1f);
  auto opt = MustNew(c, 3);
  Entry e(*opt);
  e.Init();
  e.SetNum(InitialNum(3));
  std::vector<double> w = ToDouble(InitialNum(3));
  std::vector<double> n(3, 0.1);
  const std::vector<int64_t> steps = {0, 1, 2, 3, 7};
  const double scales[] = {0.0, 0.25, 0.5, 0.75, 1.0};
  for (size_t s = 0; s < steps.size(); ++s) {
    std::vector<float> grad = Grad(3, s);
    e.Optimize(grad, 0.1f, steps[s]);
    for (int i = 0; i < 3; ++i) {
      double g = grad[i] + 0.1 * w[i];
      n[i] += g * g;
      w[i] -= 0.1 * scales[s] * g / std::sqrt(n[i]);
    }
    ExpectClose(e.Num(), w, "warmup adagrad step " + std::to_string(s));
  }
}

TEST(Warmup, ZeroStepsIsThePlainOptimizer) {
  OptimizerConfig c;
  c.mutable_adagrad()->set_warmup_steps(0);
  EXPECT_EQ(MustNew(c, 4)->DebugString(), "Adagrad(D=4)");
}

// ---------------------------------------------------- stochastic rounding

float HalfToFloat(_Float16 h) { return static_cast<float>(h); }
bool IsHalf(float v) {
  return HalfToFloat(static_cast<_Float16>(v)) == v;
}
// The next float16 above float16 value |h|.
float NextHalfUp(float h) {
  if (h == 0) return 0x1p-24f;
  _Float16 x = static_cast<_Float16>(h);
  uint16_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  bits = h > 0 ? bits + 1 : bits - 1;
  std::memcpy(&x, &bits, sizeof(bits));
  return HalfToFloat(x);
}

TEST(StochasticRounding, Float16ValuesAreKept) {
  for (uint32_t bits = 0; bits < 0x7c00; bits += 3) {
    uint16_t b = static_cast<uint16_t>(bits);
    _Float16 h;
    std::memcpy(&h, &b, sizeof(b));
    const float v = HalfToFloat(h);
    for (float u : {0.0f, 0.5f, 0.99999994f}) {
      EXPECT_EQ(StochasticRoundFloat16(v, u), v);
      EXPECT_EQ(StochasticRoundFloat16(-v, u), -v);
    }
  }
  EXPECT_TRUE(std::signbit(StochasticRoundFloat16(-0.0f, 0.0f)));
}

TEST(StochasticRounding, RoundsToOneOfTheTwoNeighbours) {
  std::mt19937 gen(123);
  std::uniform_real_distribution<float> mantissa(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-30, 15);
  for (int k = 0; k < 20000; ++k) {
    const float v = std::ldexp(mantissa(gen), exponent(gen));
    if (std::fabs(v) > 65504) continue;
    const float up = StochasticRoundFloat16(v, 0.0f);
    const float down = StochasticRoundFloat16(v, 0.99999994f);
    ASSERT_TRUE(IsHalf(up) && IsHalf(down)) << v;
    if (IsHalf(v)) {
      EXPECT_EQ(up, v);
      EXPECT_EQ(down, v);
      continue;
    }
    EXPECT_LT(down, v);
    EXPECT_GT(up, v);
    EXPECT_EQ(NextHalfUp(down), up) << v;
    // Round-to-nearest lands on one of them, too.
    const float nearest = HalfToFloat(static_cast<_Float16>(v));
    EXPECT_TRUE(nearest == up || nearest == down) << v;
  }
}

TEST(StochasticRounding, SpecialValues) {
  EXPECT_TRUE(std::isnan(StochasticRoundFloat16(NAN, 0.5f)));
  EXPECT_EQ(StochasticRoundFloat16(INFINITY, 0.5f), INFINITY);
  EXPECT_EQ(StochasticRoundFloat16(-INFINITY, 0.5f), -INFINITY);
  EXPECT_EQ(StochasticRoundFloat16(1e6f, 0.0f), 65504.0f);
  EXPECT_EQ(StochasticRoundFloat16(-70000.0f, 0.0f), -65504.0f);
  // Below float16's smallest subnormal 2^-24: 0 or 2^-24.
  const float tiny = 0x1p-26f;
  EXPECT_EQ(StochasticRoundFloat16(tiny, 0.9f), 0.0f);
  EXPECT_EQ(StochasticRoundFloat16(tiny, 0.1f), 0x1p-24f);
  EXPECT_EQ(StochasticRoundFloat16(-tiny, 0.9f), -0x1p-24f);
  // Rounds up exactly when u < the fraction of the gap: 1 + 0.25 ulp.
  const float v = 1.0f + 0.25f * 0x1p-10f;
  EXPECT_EQ(StochasticRoundFloat16(v, 0.2499f), 1.0f + 0x1p-10f);
  EXPECT_EQ(StochasticRoundFloat16(v, 0.25f), 1.0f);
}

TEST(StochasticRounding, SeededGeneratorIsDeterministic) {
  auto draw = [](uint64_t seed) {
    SeedStochasticRounding(seed);
    std::vector<float> u;
    for (int i = 0; i < 100; ++i) u.push_back(NextStochasticRoundingUniform());
    return u;
  };
  const std::vector<float> a = draw(42);
  EXPECT_EQ(draw(42), a);
  EXPECT_NE(draw(43), a);
  for (float u : a) {
    EXPECT_GE(u, 0.0f);
    EXPECT_LT(u, 1.0f);
  }
}

// Each thread has its own generator: threads seeded alike draw alike, however
// their draws interleave.
TEST(StochasticRounding, GeneratorIsPerThread) {
  auto draw = [](std::vector<float>* out) {
    SeedStochasticRounding(7);
    for (int i = 0; i < 20000; ++i) {
      out->push_back(NextStochasticRoundingUniform());
    }
  };
  std::vector<float> expected;
  draw(&expected);
  std::vector<std::vector<float>> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got) threads.emplace_back(draw, &g);
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

// E[round(v)] = v: with a fixed seed, the mean of many roundings is within a
// few standard errors of v, and "up" is chosen with frequency (v-down)/ulp.
TEST(StochasticRounding, IsUnbiased) {
  SeedStochasticRounding(2024);
  const int n = 200000;
  for (float v : {1.0f + 0.3f * 0x1p-10f, 1.0f + 0.01f * 0x1p-10f,
                  -3.14159265f, 0.1f, 1234.567f, -65000.3f, 3e-6f, -7e-8f,
                  1e-5f}) {
    SCOPED_TRACE(v);
    const float up = StochasticRoundFloat16(v, 0.0f);
    const float down = StochasticRoundFloat16(v, 0.99999994f);
    const double gap = static_cast<double>(up) - down;
    const double p = (static_cast<double>(v) - down) / gap;
    ASSERT_GT(p, 0.0);
    ASSERT_LT(p, 1.0);
    double sum = 0;
    int ups = 0;
    for (int k = 0; k < n; ++k) {
      const float r =
          StochasticRoundFloat16(v, NextStochasticRoundingUniform());
      ASSERT_TRUE(r == up || r == down);
      ups += r == up;
      sum += r;
    }
    const double sigma = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(static_cast<double>(ups) / n, p, 5 * sigma + 1e-7);
    EXPECT_NEAR(sum / n, v, gap * (5 * sigma + 1e-7));
  }
}

TEST(StochasticRounding, DecoratorRoundsResultsUnbiasedly) {
  const int dim = 32;
  OptimizerConfig c;
  c.mutable_sgd();
  c.set_stochastic_rounding_float16(true);
  auto opt = MustNew(c, dim);
  EXPECT_EQ(opt->StateBytes(), 0);
  EXPECT_EQ(opt->DumpSize(), 1);
  EXPECT_NE(opt->DebugString().find("Fp16StochasticRounding"),
            std::string::npos);
  // Values that float16 cannot hold, one update each from the same start.
  std::vector<float> start(dim), grad(dim);
  for (int i = 0; i < dim; ++i) {
    start[i] =
        static_cast<float>(0.37 * std::sin(i + 1.0) * std::pow(3, i % 5));
    grad[i] = static_cast<float>(0.011 * std::cos(2.0 * i));
  }
  std::vector<double> exact(dim), sum(dim, 0);
  for (int i = 0; i < dim; ++i) exact[i] = start[i] - 0.5f * grad[i];
  SeedStochasticRounding(99);
  const int trials = 20000;
  Entry e(*opt);
  e.Init();
  for (int t = 0; t < trials; ++t) {
    e.SetNum(start);
    e.Optimize(grad, 0.5f, t);
    const std::vector<float> r = e.Num();
    for (int i = 0; i < dim; ++i) {
      ASSERT_TRUE(IsHalf(r[i])) << r[i];
      sum[i] += r[i];
    }
  }
  for (int i = 0; i < dim; ++i) {
    const float v = start[i] - 0.5f * grad[i];  // SGD's float result
    const double gap = static_cast<double>(StochasticRoundFloat16(v, 0.0f)) -
                       StochasticRoundFloat16(v, 0.99999994f);
    EXPECT_NEAR(sum[i] / trials, v, gap * 0.5 * 6 / std::sqrt(trials) + 1e-9)
        << i;
  }
  e.ExpectGuards();
}

}  // namespace
}  // namespace optimizer_test
}  // namespace hash_table
}  // namespace monolith
