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

#include <memory>

#include "monolith/native_training/runtime/hash_table/compressor/fixed_r8_quantizer.h"
#include "monolith/native_training/runtime/hash_table/compressor/float_compressor_interface.h"
#include "monolith/native_training/runtime/hash_table/compressor/fp16.h"

namespace monolith {
namespace hash_table {

// HashNet's forward value amplitude * tanh(init_scale * f): one_bit stores
// whether it is > 0.
float OneBitForward(const FloatCompressorConfig::OneBit& config, float f);

// One compressor over first's dims followed by second's; its encoding is
// first's bytes followed by second's. Both must be non-null.
std::unique_ptr<FloatCompressorInterface> CombineFloatCompressors(
    std::unique_ptr<FloatCompressorInterface> first,
    std::unique_ptr<FloatCompressorInterface> second);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FLOAT_COMPRESSOR_H_
