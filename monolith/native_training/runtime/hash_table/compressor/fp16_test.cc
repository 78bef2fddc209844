#include "monolith/native_training/runtime/hash_table/compressor/fp16.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace monolith {
namespace hash_table {
namespace {

uint32_t Bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return x;
}

float FromBits(uint32_t x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

// The value of a finite half from the IEEE definition, independently of
// HalfBitsToFloat.
double HalfValue(uint16_t h) {
  const int e = (h >> 10) & 0x1F;
  const int m = h & 0x3FF;
  const double magnitude =
      e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

// Reference float -> half: binary search for the neighbouring halves, then
// round to nearest, ties to even, with 65536 standing for the overflow to
// inf. Not for NaN.
uint16_t ReferenceFloatToHalf(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  auto value = [](uint32_t h) {
    return h == 0x7C00 ? 65536.0 : HalfValue(static_cast<uint16_t>(h));
  };
  if (a >= 65536.0) return sign | 0x7C00;
  uint32_t lo = 0, hi = 0x7C00;  // value(lo) <= a < value(hi)
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    (value(mid) <= a ? lo : hi) = mid;
  }
  if (value(lo) == a) return sign | lo;
  const double below = a - value(lo), above = value(hi) - a;
  if (below < above) return sign | lo;
  if (above < below) return sign | hi;
  return sign | ((lo & 1) ? hi : lo);
}

TEST(Fp16, DecodesEveryHalfExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = HalfBitsToFloat(static_cast<uint16_t>(h));
    const int e = (h >> 10) & 0x1F;
    if (e == 0x1F) {
      if ((h & 0x3FF) == 0) {
        EXPECT_TRUE(std::isinf(f)) << std::hex << h;
      } else {
        EXPECT_TRUE(std::isnan(f)) << std::hex << h;
        // Payload lands in the top mantissa bits.
        EXPECT_EQ(Bits(f) & 0x7FFFFF, (h & 0x3FFu) << 13) << std::hex << h;
      }
      EXPECT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;
    } else {
      EXPECT_EQ(static_cast<double>(f), HalfValue(static_cast<uint16_t>(h)))
          << std::hex << h;
      EXPECT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;
    }
  }
}

TEST(Fp16, RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t back =
        FloatToHalfBits(HalfBitsToFloat(static_cast<uint16_t>(h)));
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0) {
      // NaN: sign and payload kept, quiet bit set.
      EXPECT_EQ(back, h | 0x200) << std::hex << h;
    } else {
      EXPECT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(Fp16, TiesAndNeighboursOfEveryMidpoint) {
  // For each pair of adjacent finite halves (and 65504 / overflow), the exact
  // midpoint rounds to the even one and one float ulp either side rounds to
  // the nearer one.
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    const double lo = HalfValue(static_cast<uint16_t>(h));
    const double hi =
        h + 1 == 0x7C00 ? 65536.0 : HalfValue(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((lo + hi) / 2);
    ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);  // exact in float
    const uint16_t even = static_cast<uint16_t>((h & 1) ? h + 1 : h);
    for (uint16_t sign : {uint16_t{0}, uint16_t{0x8000}}) {
      const float s = sign ? -1.0f : 1.0f;
      EXPECT_EQ(FloatToHalfBits(s * mid), sign | even) << std::hex << h;
      EXPECT_EQ(FloatToHalfBits(s * std::nextafter(mid, 0.0f)), sign | h)
          << std::hex << h;
      EXPECT_EQ(FloatToHalfBits(s * std::nextafter(mid, 1e30f)), sign | (h + 1))
          << std::hex << h;
    }
  }
}

TEST(Fp16, MatchesReferenceOnSampledFloats) {
  // ~1M float bit patterns spread over the whole space (NaNs skipped).
  int checked = 0;
  for (uint64_t x = 0; x < (uint64_t{1} << 32); x += 4099) {
    const float f = FromBits(static_cast<uint32_t>(x));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalfBits(f), ReferenceFloatToHalf(f))
        << std::hex << "float bits " << x;
    ++checked;
  }
  EXPECT_GT(checked, 1000000);
}

TEST(Fp16, RelativeErrorInNormalRange) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> log2_magnitude(-14.0f, 15.99f);
  for (int i = 0; i < 100000; ++i) {
    float f = std::exp2(log2_magnitude(rng));
    if (f > 65504.0f) f = 65504.0f;
    if (i & 1) f = -f;
    const float back = HalfBitsToFloat(FloatToHalfBits(f));
    ASSERT_LE(std::fabs(back - f), std::ldexp(std::fabs(f), -11)) << f;
  }
  // Subnormal halves: absolute error at most half their spacing, 2^-25.
  std::uniform_real_distribution<float> tiny(-0x1.0p-14f, 0x1.0p-14f);
  for (int i = 0; i < 10000; ++i) {
    const float f = tiny(rng);
    const float back = HalfBitsToFloat(FloatToHalfBits(f));
    ASSERT_LE(std::fabs(back - f), 0x1.0p-25f) << f;
  }
}

TEST(Fp16, KnownEncodings) {
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    float f;
    uint16_t h;
  } cases[] = {
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {1.0f, 0x3C00},
      {-2.0f, 0xC000},
      {0.5f, 0x3800},
      {0.1f, 0x2E66},
      {-0.1f, 0xAE66},
      {1.0f + 0x1.0p-11f, 0x3C00},      // tie -> even
      {1.0f + 3 * 0x1.0p-11f, 0x3C02},  // tie -> even
      {1.0f + 0x1.8p-11f, 0x3C01},      // above the tie
      {65504.0f, 0x7BFF},               // largest half
      {65519.996f, 0x7BFF},
      {65520.0f, 0x7C00},  // tie with 65536 -> even -> inf
      {1e10f, 0x7C00},
      {-1e10f, 0xFC00},
      {inf, 0x7C00},
      {-inf, 0xFC00},
      {0x1.0p-14f, 0x0400},                // smallest normal
      {0x1.ffcp-15f, 0x0400},              // tie -> even -> smallest normal
      {0x1.ff8p-15f, 0x03FF},              // largest subnormal
      {0x1.ff0p-15f, 0x03FE},
      {0x1.0p-24f, 0x0001},                // smallest subnormal
      {0x1.0p-25f, 0x0000},                // tie with 0 -> even -> 0
      {0x1.000002p-25f, 0x0001},           // just above the tie
      {-0x1.0p-25f, 0x8000},
      {0x1.8p-24f, 0x0002},                // 1.5 * 2^-24: tie -> even
      {1e-8f, 0x0000},
      {std::numeric_limits<float>::denorm_min(), 0x0000},
      {std::numeric_limits<float>::max(), 0x7C00},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FloatToHalfBits(c.f), c.h) << std::hexfloat << c.f;
  }
  EXPECT_EQ(FloatToHalfBits(std::numeric_limits<float>::quiet_NaN()), 0x7E00);
  EXPECT_EQ(FloatToHalfBits(-std::numeric_limits<float>::quiet_NaN()), 0xFE00);
  // A signalling NaN whose payload sits in the low 13 bits stays a NaN.
  EXPECT_EQ(FloatToHalfBits(FromBits(0x7F800001u)), 0x7E00);
  EXPECT_EQ(FloatToHalfBits(FromBits(0x7FA00000u)), 0x7F00);
  EXPECT_TRUE(std::isnan(HalfBitsToFloat(0x7E00)));
  EXPECT_EQ(HalfBitsToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(HalfBitsToFloat(0x0001), 0x1.0p-24f);
  EXPECT_EQ(HalfBitsToFloat(0x8000), 0.0f);
  EXPECT_TRUE(std::signbit(HalfBitsToFloat(0x8000)));
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
