// Serving float compressors: NewFloatCompressor (declared in
// float_compressor_interface.h) builds one of
//
//   fp32      4 bytes per value: the float's bits, native (little-endian)
//             byte order. Lossless.
//   fp16      2 bytes per value: IEEE binary16 (fp16.h), little-endian;
//             round to nearest even, overflow to inf.
//   fixed_r8  1 byte per value: int8 code of FixedR8Quantizer(r)
//             (fixed_r8_quantizer.h); decodes to code * r / 128.
//   one_bit   1 bit per value, 8 values per byte, value i in bit i % 8
//             (least significant first) of byte i / 8; unused high bits of
//             the last byte are 0. The bit is HashNet's
//             amplitude * tanh(init_scale * f) > 0 (so 0, -0 and NaN give 0),
//             and decodes to +amplitude (1) or -amplitude (0).
//
// Encoded data has no alignment requirement.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FLOAT_COMPRESSOR_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FLOAT_COMPRESSOR_H_

#include <cmath>
#include <cstdint>
#include <memory>

#include "monolith/native_training/runtime/hash_table/compressor/fixed_r8_quantizer.h"
#include "monolith/native_training/runtime/hash_table/compressor/float_compressor_interface.h"
#include "monolith/native_training/runtime/hash_table/compressor/fp16.h"

namespace monolith {
namespace hash_table {

// HashNet, the training transform of a one_bit segment (as the original's
// HashNetQuantizer): lookups return Forward(f) = amplitude * tanh(scale * f),
// gradients are multiplied by its derivative, and scale grows with the
// global step s:
//
//   scale(s) = min(init_scale * (1 + 0.005 * s')^0.5, max_scale)
//
// where s' is s rounded down to a multiple of step_size (the original
// updated its scale at those steps). The serving encoding stores whether
// Forward at init_scale is > 0.
class HashNet {
 public:
  // |config| must be valid (NewFloatCompressor checks it).
  explicit HashNet(const FloatCompressorConfig::OneBit& config);

  float init_scale() const { return init_scale_; }
  // scale(global_step); steps below 0 count as 0.
  float ScaleAt(int64_t global_step) const;
  float Forward(float f, float scale) const {
    return amplitude_ * std::tanh(scale * f);
  }
  // d Forward(f, scale) / d f.
  float Derivative(float f, float scale) const {
    const float y = std::tanh(scale * f);
    return amplitude_ * scale * (1.0f - y * y);
  }

 private:
  int64_t step_size_;
  float init_scale_;
  float max_scale_;
  float amplitude_;
};

// One compressor over first's dims followed by second's; its encoding is
// first's bytes followed by second's. Both must be non-null.
std::unique_ptr<FloatCompressorInterface> CombineFloatCompressors(
    std::unique_ptr<FloatCompressorInterface> first,
    std::unique_ptr<FloatCompressorInterface> second);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FLOAT_COMPRESSOR_H_
