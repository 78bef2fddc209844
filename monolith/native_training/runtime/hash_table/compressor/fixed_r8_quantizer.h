// Monolith's 8-bit fixed-range quantization ("qat8"): a float becomes one of
// 256 steps of size r / 128, code q in [-128, 127] meaning q * (r / 128).
//
//   code = trunc((f + copysign(step / 2, f)) / step) clamped to [-128, 127]
//
// i.e. round half away from zero to the nearest step, all in float arithmetic
// exactly as the original computes it (so codes match bit for bit wherever
// the original's are defined); -0.0 rounds like +0.0, NaN gives code 0. The
// decodable range is [-r, r - step]: values above r - step clamp to code
// 127, values below -r to -128. From |f| >= 2^31 * step on, the original's
// float-to-int conversion overflowed (on x86 to INT_MIN: code -128, so a
// huge positive value served as -r); here the clamp comes first.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FIXED_R8_QUANTIZER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FIXED_R8_QUANTIZER_H_

#include <cmath>
#include <cstdint>

namespace monolith {
namespace hash_table {

class FixedR8Quantizer {
 public:
  // |r| must be finite and > 0 (NewFloatCompressor checks it).
  explicit FixedR8Quantizer(float r)
      : r_(r), step_(r / 128), half_step_(step_ / 2) {}

  float r() const { return r_; }
  float step() const { return step_; }

  int8_t ToCode(float f) const {
    if (std::isnan(f)) return 0;
    const float shifted = f >= 0 ? f + half_step_ : f - half_step_;
    const float steps = shifted / step_;
    // Clamp before converting: float -> int of an out-of-range value is UB.
    if (steps >= 127.0f) return 127;
    if (steps <= -128.0f) return -128;
    return static_cast<int8_t>(static_cast<int>(steps));  // truncates
  }

  float FromCode(int8_t code) const { return code * step_; }

  // The value |f| is served as (fake quantization for training).
  float Quantize(float f) const { return FromCode(ToCode(f)); }

 private:
  float r_;
  float step_;
  float half_step_;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FIXED_R8_QUANTIZER_H_
