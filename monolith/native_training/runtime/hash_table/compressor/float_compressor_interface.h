// Compressed storage of one segment of a SERVING entry's values.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FLOAT_COMPRESSOR_INTERFACE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FLOAT_COMPRESSOR_INTERFACE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "monolith/native_training/runtime/hash_table/compressor/float_compressor.pb.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

class FloatCompressorInterface {
 public:
  virtual ~FloatCompressorInterface() = default;
  virtual std::string DebugString() const = 0;
  virtual int DimSize() const = 0;
  // Bytes of the encoded form of DimSize() floats. Encoded data is only
  // byte-aligned: read wider fields with memcpy.
  virtual int64_t SizeBytes() const = 0;
  // Encodes DimSize() floats of |num| into SizeBytes() bytes at |compressed|.
  virtual void Encode(const float* num, void* compressed) const = 0;
  // Decodes SizeBytes() bytes at |compressed| into DimSize() floats.
  virtual void Decode(const void* compressed, float* num) const = 0;
};

// Builds the compressor for |config| over |dim| floats (|dim| overrides the
// config's dim_size). InvalidArgument for an unset or bad config.
Status NewFloatCompressor(const FloatCompressorConfig& config, int dim,
                          std::unique_ptr<FloatCompressorInterface>* compressor);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_COMPRESSOR_FLOAT_COMPRESSOR_INTERFACE_H_
