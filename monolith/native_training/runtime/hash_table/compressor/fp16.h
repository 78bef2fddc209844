// IEEE 754 binary16 ("half") <-> binary32 conversion, without any library.
//
// FloatToHalfBits rounds to nearest, ties to even, like an IEEE conversion:
// magnitudes >= 65520 overflow to +-inf, magnitudes <= 2^-25 flush to +-0,
// results below 2^-14 are subnormal halves, NaN stays NaN (quiet, sign and
// the top 10 payload bits kept). HalfBitsToFloat is exact for every half.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FP16_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FP16_H_

#include <cstdint>
#include <cstring>

#include "monolith/native_training/runtime/hash_table/host_device.h"

namespace monolith {
namespace hash_table {
namespace fp16_internal {

// v >> shift (1 <= shift <= 31), rounded to nearest, ties to even.
MONOLITH_HOST_DEVICE inline uint32_t ShiftRightRoundEven(uint32_t v, int shift) {
  const uint32_t q = v >> shift;
  const uint32_t rem = v & ((uint32_t{1} << shift) - 1);
  const uint32_t half = uint32_t{1} << (shift - 1);
  return q + ((rem > half || (rem == half && (q & 1))) ? 1 : 0);
}

}  // namespace fp16_internal

MONOLITH_HOST_DEVICE inline uint16_t FloatToHalfBits(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) {  // inf or NaN
    if (ax == 0x7F800000u) return sign | 0x7C00u;
    return static_cast<uint16_t>(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
  }
  if (ax >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520: rounds to inf
  if (ax >= 0x38800000u) {                       // >= 2^-14: normal half
    // Rebias the exponent (127 -> 15) and drop 13 mantissa bits; a carry out
    // of the mantissa correctly bumps the exponent.
    return static_cast<uint16_t>(
        sign | fp16_internal::ShiftRightRoundEven(ax - 0x38000000u, 13));
  }
  if (ax <= 0x33000000u) return sign;  // <= 2^-25: rounds to zero
  // Subnormal half: value / 2^-24 = mantissa * 2^(exp - 127 - 23 + 24).
  const uint32_t mantissa = (ax & 0x7FFFFFu) | 0x800000u;
  const int shift = 126 - static_cast<int>(ax >> 23);  // 14..24
  return static_cast<uint16_t>(
      sign | fp16_internal::ShiftRightRoundEven(mantissa, shift));
}

MONOLITH_HOST_DEVICE inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  uint32_t x;
  if (exponent == 0x1F) {  // inf or NaN, payload kept
    x = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal: rebias 15 -> 127
    x = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else {  // zero or subnormal: mantissa * 2^-24, exact in float
    const float magnitude = static_cast<float>(mantissa) * 0x1.0p-24f;
    memcpy(&x, &magnitude, sizeof(x));
    x |= sign;
  }
  float f;
  memcpy(&f, &x, sizeof(f));
  return f;
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FP16_H_
