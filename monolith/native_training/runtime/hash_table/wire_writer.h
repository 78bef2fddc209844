// Protobuf wire-format encoding of the dump messages a save writes per entry
// (EntryDump and the optimizer dumps inside it), straight from entry memory.
//
// Building an EntryDump and serializing it costs ~190 ns per dim-16 adagrad
// entry and ~500 ns at dim 64, most of a save's time; writing the same
// bytes directly is several times cheaper. The output is byte-identical to
// protobuf's serialization of the same fields (proto2, repeated floats
// unpacked as the original's protos declare them) provided callers write a
// message's fields in field-number order, as protobuf does.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_WRITER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_WRITER_H_

// SSSE3 where the CPU has it, on x86 only: other CPUs (aarch64) take the
// scalar path, as does a build with MONOLITH_WIRE_WRITER_NO_SIMD (its test).
#if (defined(__x86_64__) || defined(__i386__)) && \
    !defined(MONOLITH_WIRE_WRITER_NO_SIMD)
#include <immintrin.h>
#define MONOLITH_WIRE_WRITER_SSSE3 1
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace monolith {
namespace hash_table {

class WireWriter {
 public:
  WireWriter() = default;
  WireWriter(const WireWriter&) = delete;
  WireWriter& operator=(const WireWriter&) = delete;

  // Empties the buffer, keeping its memory for the next message.
  void Clear() { size_ = 0; }
  const char* data() const { return buffer_.get(); }
  size_t size() const { return size_; }

  // sfixed64 / fixed64.
  void Fixed64(int field, int64_t value) {
    char* p = Reserve(kMaxVarintBytes + sizeof(value));
    p = PutVarint(p, Tag(field, kFixed64));
    std::memcpy(p, &value, sizeof(value));
    size_ = p + sizeof(value) - buffer_.get();
  }

  void Float(int field, float value) { Floats(field, &value, 1); }

  // A repeated float field, unpacked: a tag before every value.
  void Floats(int field, const float* values, int n) {
    const uint32_t tag = Tag(field, kFixed32);
    if (tag >= 0x80) {
      for (int i = 0; i < n; ++i) {
        char* p = Reserve(kMaxVarintBytes + sizeof(float));
        p = PutVarint(p, tag);
        std::memcpy(p, &values[i], sizeof(float));
        size_ = p + sizeof(float) - buffer_.get();
      }
      return;
    }
    char* p = Reserve(5 * size_t(n) + kFloatsSlack);
#ifdef MONOLITH_WIRE_WRITER_SSSE3
    static const bool has_ssse3 = __builtin_cpu_supports("ssse3");
    const int vectorized = has_ssse3 ? PutTaggedFloatsSsse3(p, tag, values, n)
                                     : 0;
#else
    const int vectorized = 0;
#endif
    PutTaggedFloats(p + 5 * size_t(vectorized), tag, values + vectorized,
                    n - vectorized);
    size_ += 5 * size_t(n);
  }

  // Bytes of a repeated float field of |n| values, and of a nested message
  // whose fields take |length| bytes: for BeginMessage's expected length.
  static size_t FloatsBytes(int field, int n) {
    return (VarintBytes(Tag(field, kFixed32)) + sizeof(float)) * size_t(n);
  }
  static size_t MessageBytes(int field, size_t length) {
    return VarintBytes(Tag(field, kLengthDelimited)) + VarintBytes(length) +
           length;
  }

  // int64 (varint; negative values take 10 bytes, as protobuf writes them).
  void Int64(int field, int64_t value) {
    char* p = Reserve(2 * kMaxVarintBytes);
    p = PutVarint(p, Tag(field, kVarint));
    size_ = PutVarint(p, static_cast<uint64_t>(value)) - buffer_.get();
  }

  // A nested message: BeginMessage writes its tag and returns a mark to
  // pass to EndMessage once the message's fields are written, which then
  // writes the length before them. Room is left for a length of
  // |expected_length|; any other length is right too, at the cost of moving
  // the message's bytes.
  size_t BeginMessage(int field, size_t expected_length = 0) {
    char* p = Reserve(2 * kMaxVarintBytes);
    p = PutVarint(p, Tag(field, kLengthDelimited));
    const size_t reserved = VarintBytes(expected_length);
    size_ = p + reserved - buffer_.get();
    // The mark: where the message's fields start, and the bytes reserved.
    return size_ << 4 | reserved;
  }
  void EndMessage(size_t mark) {
    const size_t begin = mark >> 4;
    const size_t reserved = mark & 15;
    const size_t length = size_ - begin;
    const size_t length_bytes = VarintBytes(length);
    if (length_bytes != reserved) {
      Reserve(length_bytes);
      char* body = buffer_.get() + begin;
      std::memmove(body + length_bytes - reserved, body, length);
      size_ = size_ + length_bytes - reserved;
    }
    PutVarint(buffer_.get() + begin - reserved, length);
  }

 private:
  enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2,
                  kFixed32 = 5 };
  static constexpr size_t kMaxVarintBytes = 10;
  // Floats' encoders store up to this many bytes past what they write.
  static constexpr size_t kFloatsSlack = 3;

  static uint32_t Tag(int field, WireType type) {
    return (static_cast<uint32_t>(field) << 3) | type;
  }
  static size_t VarintBytes(uint64_t value) {
    size_t bytes = 1;
    while (value >= 0x80) {
      value >>= 7;
      ++bytes;
    }
    return bytes;
  }
  static char* PutVarint(char* p, uint64_t value) {
    while (value >= 0x80) {
      *p++ = static_cast<char>(value | 0x80);
      value >>= 7;
    }
    *p++ = static_cast<char>(value);
    return p;
  }

  // [tag][4 bytes] per value, for a one-byte tag: each an 8-byte store whose
  // 3 trailing bytes the next one overwrites.
  static void PutTaggedFloats(char* p, uint32_t tag, const float* values,
                              int n) {
    for (int i = 0; i < n; ++i) {
      uint32_t bits;
      std::memcpy(&bits, &values[i], sizeof(bits));
      const uint64_t word = tag | (uint64_t{bits} << 8);
      std::memcpy(p + 5 * size_t(i), &word, sizeof(word));
    }
  }
#ifdef MONOLITH_WIRE_WRITER_SSSE3
  // The same, 4 values per shuffle: 16 bytes of floats become 20 bytes of
  // [tag][f0][tag][f1][tag][f2][tag][f3]. Returns how many values it wrote
  // (a multiple of 4).
  __attribute__((target("ssse3"))) static int PutTaggedFloatsSsse3(
      char* p, uint32_t tag, const float* values, int n) {
    const __m128i spread = _mm_setr_epi8(-1, 0, 1, 2, 3, -1, 4, 5, 6, 7, -1,
                                         8, 9, 10, 11, -1);
    const char t = static_cast<char>(tag);
    const __m128i tags =
        _mm_setr_epi8(t, 0, 0, 0, 0, t, 0, 0, 0, 0, t, 0, 0, 0, 0, t);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
      const __m128i in =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(values + i));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                       _mm_or_si128(_mm_shuffle_epi8(in, spread), tags));
      std::memcpy(p + 16, values + i + 3, sizeof(float));
      p += 20;
    }
    return i;
  }
#endif  // MONOLITH_WIRE_WRITER_SSSE3

  // Room for |n| more bytes past size(); returns where they start.
  char* Reserve(size_t n) {
    if (size_ + n > capacity_) {
      const size_t capacity = std::max<size_t>(2 * capacity_, size_ + n);
      std::unique_ptr<char[]> grown(new char[capacity]);
      if (size_ > 0) std::memcpy(grown.get(), buffer_.get(), size_);
      buffer_ = std::move(grown);
      capacity_ = capacity;
    }
    return buffer_.get() + size_;
  }

  std::unique_ptr<char[]> buffer_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_WIRE_WRITER_H_
