// Protobuf wire decoding for reading records in place, without parsing
// them into messages: the counterpart of wire_writer.h. Every read is
// bounded by the end of the buffer.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_READER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_READER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

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

// Reads the id (field 1, sfixed64, tag byte 0x09) of a serialized EntryDump
// in place. Our saves and the original's write it first (9 bytes: the tag,
// then the id little-endian); the rest of the record is walked field by
// field to its end, so that an id field repeated later wins, as in parsing.
// A record with no id field has id 0, as parsing gives. Returns false for
// a record this walk cannot vouch for (a field cut off by |size|, a group,
// an invalid tag or wire type): parse those (RecordId in
// embedding_hash_table.h does).
inline bool ReadEntryDumpId(const char* record, size_t size, int64_t* id) {
  const char* p = record;
  const char* const end = record + size;
  int64_t value = 0;
  while (p < end) {
    uint64_t tag = 0;
    p = ReadVarint(p, end, &tag);
    if (p == nullptr || (tag >> 3) == 0 || (tag >> 3) > 0x1FFFFFFF) {
      return false;
    }
    switch (tag & 7) {
      case 0: {  // varint
        uint64_t unused;
        p = ReadVarint(p, end, &unused);
        if (p == nullptr) return false;
        break;
      }
      case 1:  // fixed64
        if (end - p < 8) return false;
        if ((tag >> 3) == 1) std::memcpy(&value, p, sizeof(value));
        p += 8;
        break;
      case 2: {  // length-delimited
        uint64_t length = 0;
        p = ReadVarint(p, end, &length);
        if (p == nullptr || length > static_cast<uint64_t>(end - p)) {
          return false;
        }
        p += length;
        break;
      }
      case 5:  // fixed32
        if (end - p < 4) return false;
        p += 4;
        break;
      default:  // groups (3, 4) and invalid wire types
        return false;
    }
  }
  *id = value;
  return true;
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_READER_H_
