// Protobuf wire decoding for reading records in place, without parsing
// them into messages: the counterpart of wire_writer.h. Every read is
// bounded by the end of the buffer.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_READER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_READER_H_

#include <cstdint>

namespace monolith {
namespace hash_table {

// Reads the varint at |p| (before |end|) into |value|; returns the byte
// after it, or null if it is cut off by |end| or longer than 10 bytes.
inline const char* ReadVarint(const char* p, const char* end,
                              uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; p < end && shift < 64; shift += 7, ++p) {
    const uint8_t byte = static_cast<uint8_t>(*p);
    result |= uint64_t{byte & 0x7Fu} << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return p + 1;
    }
  }
  return nullptr;
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_READER_H_
