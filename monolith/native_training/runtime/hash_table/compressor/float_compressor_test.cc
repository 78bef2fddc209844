#include "monolith/native_training/runtime/hash_table/compressor/float_compressor.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr unsigned char kGuard = 0xA5;

std::unique_ptr<FloatCompressorInterface> MustNew(
    const FloatCompressorConfig& config, int dim) {
  std::unique_ptr<FloatCompressorInterface> c;
  Status s = NewFloatCompressor(config, dim, &c);
  EXPECT_OK(s);
  return c;
}

FloatCompressorConfig Fp32() {
  FloatCompressorConfig c;
  c.mutable_fp32();
  return c;
}
FloatCompressorConfig Fp16() {
  FloatCompressorConfig c;
  c.mutable_fp16();
  return c;
}
FloatCompressorConfig FixedR8(float r) {
  FloatCompressorConfig c;
  c.mutable_fixed_r8()->set_r(r);
  return c;
}
FloatCompressorConfig OneBit(float amplitude) {
  FloatCompressorConfig c;
  c.mutable_one_bit()->set_amplitude(amplitude);
  return c;
}

// Encodes |num| at an odd offset (data is only byte-aligned) between guard
// bytes, checks nothing outside SizeBytes() was written, returns the bytes.
std::vector<unsigned char> Encode(const FloatCompressorInterface& c,
                                  const std::vector<float>& num) {
  EXPECT_EQ(static_cast<int>(num.size()), c.DimSize());
  std::vector<unsigned char> buf(c.SizeBytes() + 5, kGuard);
  c.Encode(num.data(), buf.data() + 1);
  EXPECT_EQ(buf[0], kGuard);
  for (size_t i = 1 + c.SizeBytes(); i < buf.size(); ++i) {
    EXPECT_EQ(buf[i], kGuard) << "Encode wrote past SizeBytes() at " << i;
  }
  return std::vector<unsigned char>(buf.begin() + 1,
                                    buf.begin() + 1 + c.SizeBytes());
}

std::vector<float> Decode(const FloatCompressorInterface& c,
                          const std::vector<unsigned char>& bytes) {
  std::vector<unsigned char> buf(bytes.size() + 1);
  std::memcpy(buf.data() + 1, bytes.data(), bytes.size());
  std::vector<float> num(c.DimSize() + 1, -7.0f);
  c.Decode(buf.data() + 1, num.data());
  EXPECT_EQ(num.back(), -7.0f) << "Decode wrote past DimSize()";
  num.pop_back();
  return num;
}

std::vector<float> RoundTrip(const FloatCompressorInterface& c,
                             const std::vector<float>& num) {
  return Decode(c, Encode(c, num));
}

void ExpectInvalid(const FloatCompressorConfig& config, int dim,
                   const std::string& needle) {
  std::unique_ptr<FloatCompressorInterface> c;
  Status s = NewFloatCompressor(config, dim, &c);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos)
      << "'" << s.message() << "' should mention '" << needle << "'";
  EXPECT_EQ(c, nullptr);
}

// ---------------------------------------------------------------- fp32

TEST(Fp32Compressor, LosslessAndBytes) {
  auto c = MustNew(Fp32(), 5);
  EXPECT_EQ(c->DimSize(), 5);
  EXPECT_EQ(c->SizeBytes(), 20);
  EXPECT_EQ(c->DebugString(), "Fp32(D=5)");
  const std::vector<float> num = {1.0f, -0.1f, 1e-40f, -kInf, 3.4e38f};
  EXPECT_EQ(RoundTrip(*c, num), num);
  const std::vector<unsigned char> bytes = Encode(*c, num);
  EXPECT_EQ(std::vector<unsigned char>(bytes.begin(), bytes.begin() + 8),
            (std::vector<unsigned char>{0x00, 0x00, 0x80, 0x3F,    // 1.0
                                        0xCD, 0xCC, 0xCC, 0xBD}));  // -0.1
  auto nan = MustNew(Fp32(), 1);
  EXPECT_TRUE(std::isnan(RoundTrip(*nan, {kNaN})[0]));
}

// ---------------------------------------------------------------- fp16

TEST(Fp16Compressor, BytesAndSize) {
  auto c = MustNew(Fp16(), 6);
  EXPECT_EQ(c->SizeBytes(), 12);
  EXPECT_EQ(c->DebugString(), "Fp16(D=6)");
  EXPECT_EQ(Encode(*c, {1.0f, -2.0f, 0.1f, 65504.0f, kInf, 0x1.0p-24f}),
            (std::vector<unsigned char>{0x00, 0x3C, 0x00, 0xC0, 0x66, 0x2E,
                                        0xFF, 0x7B, 0x00, 0x7C, 0x01, 0x00}));
}

TEST(Fp16Compressor, RoundTrip) {
  auto c = MustNew(Fp16(), 4);
  // Representable values are exact.
  const std::vector<float> exact = {1.0f, -0.5f, 65504.0f, 0x1.0p-24f};
  EXPECT_EQ(RoundTrip(*c, exact), exact);
  // Original's check: 0.1, 0.2, 10000 within 1e-4 relative.
  const std::vector<float> num = {0.1f, 0.2f, 10000.0f, -3.14159f};
  const std::vector<float> back = RoundTrip(*c, num);
  for (int i = 0; i < 4; ++i) {
    EXPECT_LE(std::fabs(back[i] - num[i]), std::ldexp(std::fabs(num[i]), -11));
  }
  // Overflow goes to inf, inf/NaN survive, tiny values flush to signed zero.
  const std::vector<float> special = RoundTrip(*c, {1e6f, -kInf, kNaN, -1e-9f});
  EXPECT_EQ(special[0], kInf);
  EXPECT_EQ(special[1], -kInf);
  EXPECT_TRUE(std::isnan(special[2]));
  EXPECT_EQ(special[3], 0.0f);
  EXPECT_TRUE(std::signbit(special[3]));
  // Subnormal halves.
  EXPECT_EQ(RoundTrip(*c, {3e-6f, 0x1.8p-24f, 0x1.0p-20f, -0x1.0p-15f}),
            (std::vector<float>{0x1.9p-19f, 0x1.0p-23f, 0x1.0p-20f,
                                -0x1.0p-15f}));
}

// ---------------------------------------------------------------- fixed_r8

TEST(FixedR8Compressor, OriginalExamples) {
  auto c = MustNew(FixedR8(5.0f), 3);
  const float kStep = 5.0f / 128;
  EXPECT_EQ(c->SizeBytes(), 3);
  EXPECT_EQ(c->DebugString(), "FixedR8(D=3, r=5)");
  // 100 clamps to 127 * step, 3.5 = 89.6 steps -> 90.
  EXPECT_EQ(Encode(*c, {100.0f, 0.0f, 3.5f}),
            (std::vector<unsigned char>{0x7F, 0x00, 0x5A}));
  EXPECT_EQ(RoundTrip(*c, {100.0f, 0.0f, 3.5f}),
            (std::vector<float>{127 * kStep, 0.0f, 90 * kStep}));

  auto c4 = MustNew(FixedR8(5.0f), 4);
  EXPECT_EQ(Encode(*c4, {kStep * 1.4f, kStep * 1.6f, -kStep * 1.4f,
                         -kStep * 1.6f}),
            (std::vector<unsigned char>{0x01, 0x02, 0xFF, 0xFE}));
  EXPECT_EQ(RoundTrip(*c4, {kStep * 1.4f, kStep * 1.6f, -kStep * 1.4f,
                            -kStep * 1.6f}),
            (std::vector<float>{kStep, 2 * kStep, -kStep, -2 * kStep}));
}

TEST(FixedR8Compressor, RoundingClampingAndSpecials) {
  auto c = MustNew(FixedR8(1.0f), 10);
  const float kStep = 1.0f / 128;
  // Halves round away from zero; beyond the range clamps to 127 / -128;
  // inf clamps too, NaN gives 0.
  EXPECT_EQ(Encode(*c, {2.5f * kStep, -2.5f * kStep, 1.0f, -1.0f, 7.0f, -7.0f,
                        kInf, -kInf, kNaN, -0.0f}),
            (std::vector<unsigned char>{0x03, 0xFD, 0x7F, 0x80, 0x7F, 0x80,
                                        0x7F, 0x80, 0x00, 0x00}));
  EXPECT_EQ(RoundTrip(*c, {1.0f, -1.0f, 7.0f, -7.0f, kInf, -kInf, kNaN, 0.0f,
                           0.5f, -0.25f}),
            (std::vector<float>{127 * kStep, -1.0f, 127 * kStep, -1.0f,
                                127 * kStep, -1.0f, 0.0f, 0.0f, 0.5f,
                                -0.25f}));
}

TEST(FixedR8Compressor, EveryCodeRoundTrips) {
  auto c = MustNew(FixedR8(5.0f), 1);
  const FixedR8Quantizer q(5.0f);
  for (int code = -128; code <= 127; ++code) {
    const std::vector<unsigned char> bytes = {static_cast<unsigned char>(code)};
    const float value = Decode(*c, bytes)[0];
    EXPECT_EQ(value, code * (5.0f / 128)) << code;
    EXPECT_EQ(Encode(*c, {value}), bytes) << code;
    EXPECT_EQ(q.Quantize(value), value) << code;
  }
}

TEST(FixedR8Compressor, ErrorWithinStep) {
  for (float r : {1.0f, 5.0f, 0.37f, 300.0f}) {
    auto c = MustNew(FixedR8(r), 1);
    const float step = r / 128;
    std::mt19937 rng(17);
    std::uniform_real_distribution<float> in_range(-r, r);
    for (int i = 0; i < 20000; ++i) {
      const float x = in_range(rng);
      const float back = RoundTrip(*c, {x})[0];
      ASSERT_LE(std::fabs(back - x), step * 1.0001f) << r << " " << x;
      // Away from the top clamp it is round-to-nearest: half a step.
      if (x <= r - step) {
        ASSERT_LE(std::fabs(back - x), step * 0.5001f) << r << " " << x;
      }
    }
    EXPECT_EQ(RoundTrip(*c, {2 * r})[0], 127 * step);
    EXPECT_EQ(RoundTrip(*c, {-2 * r})[0], -128 * step);
  }
}

// ---------------------------------------------------------------- one_bit

TEST(OneBitCompressor, OriginalExample) {
  FloatCompressorConfig config;
  config.mutable_one_bit()->set_step_size(5);
  config.mutable_one_bit()->set_amplitude(1.0f);
  auto c = MustNew(config, 7);
  EXPECT_EQ(c->SizeBytes(), 1);
  EXPECT_EQ(c->DebugString(), "OneBit(D=7, amplitude=1, init_scale=1)");
  const std::vector<float> num = {100.0f, 0.1f,  0.00001f, 0.0f,
                                  -0.00001f, -0.1f, -100.0f};
  EXPECT_EQ(Encode(*c, num), (std::vector<unsigned char>{0x07}));
  EXPECT_EQ(RoundTrip(*c, num),
            (std::vector<float>{1, 1, 1, -1, -1, -1, -1}));
}

TEST(OneBitCompressor, PacksEightPerByteLsbFirst) {
  auto c = MustNew(OneBit(0.1f), 10);  // proto default amplitude is 0.1 too
  EXPECT_EQ(c->SizeBytes(), 2);
  // + - + + - - - + | - +  ->  0b10001101, 0b10
  const std::vector<float> num = {1, -1, 2, 3, -4, -5, -6, 7, -8, 9};
  EXPECT_EQ(Encode(*c, num), (std::vector<unsigned char>{0x8D, 0x02}));
  const std::vector<float> back = RoundTrip(*c, num);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(back[i], num[i] > 0 ? 0.1f : -0.1f) << i;
  }
  // All positive: unused bits of the last byte stay 0.
  EXPECT_EQ(Encode(*c, std::vector<float>(10, 1.0f)),
            (std::vector<unsigned char>{0xFF, 0x03}));
  // Decode ignores the unused bits.
  EXPECT_EQ(Decode(*c, {0x00, 0xFC}), std::vector<float>(10, -0.1f));
}

TEST(OneBitCompressor, SizeBytes) {
  for (int dim : {1, 7, 8, 9, 16, 17, 64, 65}) {
    EXPECT_EQ(MustNew(OneBit(0.1f), dim)->SizeBytes(), (dim + 7) / 8) << dim;
  }
}

TEST(HashNet, ScaleGrowsEveryStepSizeStepsUpToMaxScale) {
  FloatCompressorConfig::OneBit config;
  config.set_step_size(10);
  config.set_init_scale(2.0f);
  config.set_max_scale(3.0f);
  const HashNet hash_net(config);
  EXPECT_EQ(hash_net.ScaleAt(-5), 2.0f);
  EXPECT_EQ(hash_net.ScaleAt(0), 2.0f);
  EXPECT_EQ(hash_net.ScaleAt(9), 2.0f);
  // init_scale * (1 + 0.005 * 10)^0.5 from step 10 to 19.
  EXPECT_FLOAT_EQ(hash_net.ScaleAt(10), 2.0f * std::sqrt(1.05f));
  EXPECT_EQ(hash_net.ScaleAt(19), hash_net.ScaleAt(10));
  EXPECT_FLOAT_EQ(hash_net.ScaleAt(100), 2.0f * std::sqrt(1.5f));
  // 2 * sqrt(1 + 0.005 * 1000) = 4.9 is capped.
  EXPECT_EQ(hash_net.ScaleAt(1000), 3.0f);
  EXPECT_EQ(hash_net.ScaleAt(int64_t{1} << 62), 3.0f);
}

TEST(HashNet, DerivativeOfForward) {
  FloatCompressorConfig::OneBit config;
  config.set_amplitude(0.3f);
  const HashNet hash_net(config);
  for (float scale : {1.0f, 4.0f}) {
    for (float f : {-1.0f, -0.1f, 0.0f, 0.2f, 0.7f}) {
      const float h = 1e-3f;
      const float numeric =
          (hash_net.Forward(f + h, scale) - hash_net.Forward(f - h, scale)) /
          (2 * h);
      EXPECT_NEAR(hash_net.Derivative(f, scale), numeric, 1e-3f)
          << f << " " << scale;
    }
  }
  EXPECT_FLOAT_EQ(hash_net.Derivative(0.0f, 4.0f), 0.3f * 4.0f);
}

TEST(OneBitCompressor, ForwardSemantics) {
  // The stored bit is HashNet's amplitude * tanh(init_scale * x) > 0.
  FloatCompressorConfig config;
  config.mutable_one_bit()->set_amplitude(0.5f);
  auto c = MustNew(config, 6);
  const HashNet hash_net(config.one_bit());
  EXPECT_FLOAT_EQ(hash_net.Forward(1.0f, hash_net.init_scale()),
                  0.5f * std::tanh(1.0f));
  EXPECT_EQ(hash_net.Forward(0.0f, hash_net.init_scale()), 0.0f);
  const float tiny = std::numeric_limits<float>::denorm_min();
  // 0, -0 and NaN are not > 0; the smallest subnormal times 0.5 rounds to 0.
  EXPECT_EQ(Encode(*c, {0.0f, -0.0f, kNaN, tiny, 2 * tiny, kInf}),
            (std::vector<unsigned char>{0x30}));
  EXPECT_EQ(RoundTrip(*c, {0.0f, -0.0f, kNaN, tiny, 2 * tiny, -kInf}),
            (std::vector<float>{-0.5f, -0.5f, -0.5f, -0.5f, 0.5f, -0.5f}));
}

TEST(OneBitCompressor, RandomRoundTripKeepsSign) {
  auto c = MustNew(OneBit(0.25f), 33);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-10.0f, 10.0f);
  std::vector<float> num(33);
  for (int round = 0; round < 200; ++round) {
    for (float& x : num) x = dist(rng);
    const std::vector<float> back = RoundTrip(*c, num);
    for (int i = 0; i < 33; ++i) {
      ASSERT_EQ(back[i], num[i] > 0 ? 0.25f : -0.25f);
    }
  }
}

// ---------------------------------------------------------------- combined

TEST(CombineFloatCompressors, SegmentsBackToBack) {
  auto combined = CombineFloatCompressors(
      CombineFloatCompressors(MustNew(Fp16(), 1), MustNew(FixedR8(1.0f), 2)),
      MustNew(OneBit(1.0f), 3));
  EXPECT_EQ(combined->DimSize(), 6);
  EXPECT_EQ(combined->SizeBytes(), 2 + 2 + 1);
  EXPECT_EQ(combined->DebugString(),
            "Fp16(D=1)|FixedR8(D=2, r=1)|OneBit(D=3, amplitude=1, "
            "init_scale=1)");
  const std::vector<float> num = {1.0f, 0.5f, -2.0f, 3.0f, -1.0f, 2.0f};
  EXPECT_EQ(Encode(*combined, num),
            (std::vector<unsigned char>{0x00, 0x3C, 0x40, 0x80, 0x05}));
  EXPECT_EQ(RoundTrip(*combined, num),
            (std::vector<float>{1.0f, 0.5f, -1.0f, 1.0f, -1.0f, 1.0f}));
}

// ---------------------------------------------------------------- factory

TEST(NewFloatCompressor, DimOverridesConfig) {
  FloatCompressorConfig config;
  config.mutable_fp16()->set_dim_size(3);
  auto c = MustNew(config, 8);
  EXPECT_EQ(c->DimSize(), 8);
  EXPECT_EQ(c->SizeBytes(), 16);
}

TEST(NewFloatCompressor, Errors) {
  ExpectInvalid(FloatCompressorConfig(), 4, "no compressor set");
  for (const FloatCompressorConfig& config :
       {Fp32(), Fp16(), FixedR8(1.0f), OneBit(0.1f)}) {
    ExpectInvalid(config, 0, "dim must be positive, got 0");
    ExpectInvalid(config, -2, "dim must be positive, got -2");
  }
  ExpectInvalid(FixedR8(0.0f), 4,
                "fixed_r8 compressor r must be finite and > 0");
  ExpectInvalid(FixedR8(-1.0f), 4, "fixed_r8 compressor r");
  ExpectInvalid(FixedR8(kNaN), 4, "fixed_r8 compressor r");
  ExpectInvalid(FixedR8(kInf), 4, "fixed_r8 compressor r");
  ExpectInvalid(FixedR8(1e-40f), 4, "too small");

  ExpectInvalid(OneBit(0.0f), 4, "one_bit compressor amplitude");
  ExpectInvalid(OneBit(-0.1f), 4, "one_bit compressor amplitude");
  ExpectInvalid(OneBit(kNaN), 4, "one_bit compressor amplitude");
  FloatCompressorConfig scale;
  scale.mutable_one_bit()->set_init_scale(0.0f);
  ExpectInvalid(scale, 4, "one_bit compressor init_scale");
  // Found by config_fuzz_test: a decoded +amplitude must encode as +.
  for (const auto& [amplitude, init_scale] :
       {std::pair<float, float>{1e-23f, 1.0f}, {0.1f, 1e-45f}}) {
    FloatCompressorConfig tiny = OneBit(amplitude);
    tiny.mutable_one_bit()->set_init_scale(init_scale);
    ExpectInvalid(tiny, 4, "are too small");
  }
  FloatCompressorConfig max_scale;
  max_scale.mutable_one_bit()->set_max_scale(kInf);
  ExpectInvalid(max_scale, 4, "one_bit compressor max_scale");
  FloatCompressorConfig step;
  step.mutable_one_bit()->set_step_size(0);
  ExpectInvalid(step, 4, "one_bit compressor step_size must be > 0, got 0");
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
