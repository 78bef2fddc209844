// float32 -> float16 conversion of arrays, in hardware (F16C) where the CPU
// has it: lookups sent as float16 (a PS's replies, gradients summed on a
// worker). Host only.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FP16_BATCH_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FP16_BATCH_H_

#include <cstdint>

namespace monolith {
namespace hash_table {

// Whether the CPU converts float16 in hardware (F16C, with AVX's 256-bit
// registers).
bool HasF16c();

// dst[i] = float16(src[i]) (bits), rounded to nearest even; finite values
// past float16's range saturate at +-65504: a large summed gradient arrives
// as the largest float16, not as inf, which an optimizer would turn into
// NaN for good. An infinity (or NaN) was there before the cast and stays,
// so a diverged gradient or embedding is not hidden. Without F16C it is
// FloatToHalfBits (fp16.h) of the saturated value: the same bits.
void FloatsToHalfsSaturating(const float* src, int64_t n, uint16_t* dst);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FP16_BATCH_H_
