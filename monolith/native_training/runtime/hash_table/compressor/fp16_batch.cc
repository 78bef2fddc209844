#include "monolith/native_training/runtime/hash_table/compressor/fp16_batch.h"

#include <immintrin.h>

#include <cmath>

#include "monolith/native_training/runtime/hash_table/compressor/fp16.h"

namespace monolith {
namespace hash_table {
namespace {

// The largest finite float16.
constexpr float kMaxHalf = 65504.0f;

// Finite |f| clamped to [-kMaxHalf, kMaxHalf]; infinities and NaN stay.
inline float SaturateToHalfRange(float f) {
  if (std::isinf(f)) return f;
  return f > kMaxHalf ? kMaxHalf : f < -kMaxHalf ? -kMaxHalf : f;
}

__attribute__((target("avx,f16c"))) void FloatsToHalfsF16c(const float* src,
                                                            int64_t n,
                                                            uint16_t* dst) {
  const __m256 high = _mm256_set1_ps(kMaxHalf);
  const __m256 low = _mm256_set1_ps(-kMaxHalf);
  const __m256 infinity = _mm256_set1_ps(HUGE_VALF);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(src + i);
    // min/max return their second operand when either is NaN: NaN stays.
    const __m256 clamped = _mm256_max_ps(low, _mm256_min_ps(high, x));
    const __m256 is_inf =
        _mm256_cmp_ps(_mm256_andnot_ps(sign, x), infinity, _CMP_EQ_OQ);
    // x where infinite, else clamped, by masks: GCC lowered
    // _mm256_blendv_ps here to a branch per lane, 10x slower.
    const __m256 kept = _mm256_or_ps(_mm256_and_ps(is_inf, x),
                                     _mm256_andnot_ps(is_inf, clamped));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(kept, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) {
    dst[i] = _cvtss_sh(SaturateToHalfRange(src[i]), _MM_FROUND_TO_NEAREST_INT);
  }
}

}  // namespace

bool HasF16c() {
  static const bool has = __builtin_cpu_supports("avx") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

void FloatsToHalfsSaturating(const float* src, int64_t n, uint16_t* dst) {
  if (HasF16c()) return FloatsToHalfsF16c(src, n, dst);
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = FloatToHalfBits(SaturateToHalfRange(src[i]));
  }
}

}  // namespace hash_table
}  // namespace monolith
