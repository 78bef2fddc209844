#include "monolith/native_training/runtime/ops/record_file.h"

#include <nmmintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "tensorflow/core/platform/errors.h"
#include "tsl/platform/snappy.h"
#include "xla/tsl/lib/hash/crc32c.h"

namespace tensorflow {
namespace monolith_tf {
namespace {

__attribute__((target("sse4.2"))) uint32_t ExtendCrc32cSse42(
    uint32_t crc, const char* data, size_t size) {
  uint64_t state = ~crc;
  for (; size >= 8; data += 8, size -= 8) {
    uint64_t word;
    std::memcpy(&word, data, sizeof(word));
    state = _mm_crc32_u64(state, word);
  }
  uint32_t state32 = static_cast<uint32_t>(state);
  for (; size > 0; ++data, --size) {
    state32 = _mm_crc32_u8(state32, static_cast<uint8_t>(*data));
  }
  return ~state32;
}

bool HasSse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}

void EncodeFixed32(char* dest, uint32_t value) {
  std::memcpy(dest, &value, sizeof(value));  // x86-64: little-endian
}

}  // namespace

uint32_t ExtendCrc32c(uint32_t crc, const char* data, size_t size) {
  if (HasSse42()) return ExtendCrc32cSse42(crc, data, size);
  return tsl::crc32c::Extend(crc, data, size);
}

bool IsValidRecordHeader(const char* header) {
  uint32_t stored;
  std::memcpy(&stored, header + sizeof(uint64_t), sizeof(stored));
  return MaskCrc(ExtendCrc32c(0, header, sizeof(uint64_t))) == stored;
}

Status IsUncompressedRecordFile(Env* env, const std::string& path,
                                bool* uncompressed) {
  std::unique_ptr<RandomAccessFile> file;
  TF_RETURN_IF_ERROR(env->NewRandomAccessFile(path, &file));
  char header[kHeaderBytes];
  StringPiece read;
  Status s = file->Read(0, sizeof(header), &read, header);
  if (errors::IsOutOfRange(s)) {
    // Shorter than a header: empty (no records), or truncated, which the
    // reader reports.
    *uncompressed = read.empty();
    return OkStatus();
  }
  TF_RETURN_IF_ERROR(s);
  *uncompressed = IsValidRecordHeader(read.data());
  return OkStatus();
}

RecordFileWriter::RecordFileWriter(WritableFile* file, bool snappy)
    : file_(file), snappy_(snappy), block_(kBlockBytes, '\0') {}

void RecordFileWriter::Frame(char* record, size_t size) {
  const uint64_t length = size;
  std::memcpy(record, &length, sizeof(length));
  EncodeFixed32(record + sizeof(length),
                MaskCrc(ExtendCrc32c(0, record, sizeof(length))));
  char* data = record + kHeaderBytes;
  EncodeFixed32(data + size, MaskCrc(ExtendCrc32c(0, data, size)));
}

Status RecordFileWriter::FlushBlock() {
  if (used_ == 0) return OkStatus();
  const size_t size = used_;
  used_ = 0;
  if (!snappy_) return file_->Append(StringPiece(block_.data(), size));
  if (!tsl::port::Snappy_Compress(block_.data(), size, &compressed_)) {
    return errors::Unimplemented(
        "this TensorFlow build has no snappy compression");
  }
  const uint32_t length = static_cast<uint32_t>(compressed_.size());
  const char big_endian[4] = {
      static_cast<char>(length >> 24), static_cast<char>(length >> 16),
      static_cast<char>(length >> 8), static_cast<char>(length)};
  TF_RETURN_IF_ERROR(file_->Append(StringPiece(big_endian, 4)));
  return file_->Append(compressed_);
}

Status RecordFileWriter::Write(std::string_view record) {
  const size_t size = record.size();
  const size_t framed = kHeaderBytes + size + kFooterBytes;
  if (framed > kBlockBytes - used_) {
    if (framed > kBlockBytes) {
      oversized_.resize(framed);
      std::memcpy(&oversized_[kHeaderBytes], record.data(), size);
      Frame(&oversized_[0], size);
      return Append(oversized_.data(), framed);
    }
    TF_RETURN_IF_ERROR(FlushBlock());
  }
  char* framed_record = &block_[used_];
  std::memcpy(framed_record + kHeaderBytes, record.data(), size);
  Frame(framed_record, size);
  used_ += framed;
  return OkStatus();
}

Status RecordFileWriter::Append(const char* data, size_t size) {
  while (size > 0) {
    if (used_ == kBlockBytes) TF_RETURN_IF_ERROR(FlushBlock());
    const size_t n = std::min(size, kBlockBytes - used_);
    std::memcpy(&block_[used_], data, n);
    used_ += n;
    data += n;
    size -= n;
  }
  return OkStatus();
}

RecordFileReader::RecordFileReader(std::string path,
                                   std::unique_ptr<RandomAccessFile> file,
                                   uint64_t file_size, bool snappy)
    : path_(std::move(path)),
      file_(std::move(file)),
      file_size_(file_size),
      snappy_(snappy) {}

Status RecordFileReader::Open(Env* env, const std::string& path, bool snappy,
                              std::unique_ptr<RecordFileReader>* reader) {
  std::unique_ptr<RandomAccessFile> file;
  TF_RETURN_IF_ERROR(env->NewRandomAccessFile(path, &file));
  uint64_t file_size = 0;
  TF_RETURN_IF_ERROR(env->GetFileSize(path, &file_size));
  reader->reset(new RecordFileReader(path, std::move(file), file_size, snappy));
  return OkStatus();
}

Status RecordFileReader::ReadMore() {
  // Drop what was read, so the stream buffer stays small.
  stream_.erase(0, begin_);
  begin_ = 0;
  if (!snappy_) {
    constexpr size_t kReadBytes = 4 << 20;
    const size_t old_size = stream_.size();
    stream_.resize(old_size + kReadBytes);
    StringPiece read;
    Status s = file_->Read(file_offset_, kReadBytes, &read, &stream_[old_size]);
    if (read.data() != &stream_[old_size]) {
      std::memmove(&stream_[old_size], read.data(), read.size());
    }
    stream_.resize(old_size + read.size());
    file_offset_ += read.size();
    if (!s.ok() && !(errors::IsOutOfRange(s) && !read.empty())) return s;
    return OkStatus();
  }
  char length_bytes[4];
  StringPiece read;
  Status s = file_->Read(file_offset_, 4, &read, length_bytes);
  if (errors::IsOutOfRange(s) && read.empty()) return s;
  if (read.size() < 4) {
    return errors::DataLoss(path_, ": snappy block header at byte ",
                            file_offset_, " is truncated");
  }
  const uint8_t* b = reinterpret_cast<const uint8_t*>(read.data());
  const uint32_t length = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
                          (uint32_t{b[2]} << 8) | uint32_t{b[3]};
  // Lengths are checked against the file before anything is allocated for
  // them, so a corrupt one is an error, not a 4 GiB buffer.
  if (length > file_size_ - std::min(file_size_, file_offset_ + 4)) {
    return errors::DataLoss(path_, ": snappy block at byte ", file_offset_,
                            " is truncated (", length, " bytes claimed, ",
                            file_size_ - std::min(file_size_, file_offset_ + 4),
                            " left in the file)");
  }
  chunk_.resize(length);
  s = file_->Read(file_offset_ + 4, length, &read, &chunk_[0]);
  if (read.size() < length) {
    return errors::DataLoss(path_, ": snappy block at byte ", file_offset_,
                            " is truncated (", read.size(), " of ", length,
                            " bytes)");
  }
  // Snappy turns at most 3 bytes (a 2-byte-offset copy) into 64.
  constexpr size_t kMaxSnappyExpansion = 22;
  size_t uncompressed = 0;
  if (!tsl::port::Snappy_GetUncompressedLength(read.data(), length,
                                               &uncompressed) ||
      uncompressed > size_t{length} * kMaxSnappyExpansion) {
    return errors::DataLoss(path_, ": snappy block at byte ", file_offset_,
                            " is corrupt");
  }
  const size_t old_size = stream_.size();
  stream_.resize(old_size + uncompressed);
  if (!tsl::port::Snappy_Uncompress(read.data(), length, &stream_[old_size])) {
    return errors::DataLoss(path_, ": snappy block at byte ", file_offset_,
                            " is corrupt");
  }
  file_offset_ += 4 + length;
  return OkStatus();
}

Status RecordFileReader::Fill(size_t bytes) {
  while (stream_.size() - begin_ < bytes) {
    const size_t before = stream_.size() - begin_;
    TF_RETURN_IF_ERROR(ReadMore());
    if (stream_.size() - begin_ == before) {
      return errors::OutOfRange(path_, ": end of file");
    }
  }
  return OkStatus();
}

Status RecordFileReader::Next(StringPiece* record) {
  Status s = Fill(kHeaderBytes);
  if (errors::IsOutOfRange(s)) {
    if (stream_.size() == begin_) return s;  // a clean end
    return errors::DataLoss(path_, ": record ", records_,
                            " is truncated in its header");
  }
  TF_RETURN_IF_ERROR(s);
  const char* header = stream_.data() + begin_;
  if (!IsValidRecordHeader(header)) {
    return errors::DataLoss(path_, ": record ", records_,
                            " has a corrupt length");
  }
  uint64_t length;
  std::memcpy(&length, header, sizeof(length));
  s = Fill(kHeaderBytes + length + kFooterBytes);
  if (errors::IsOutOfRange(s)) {
    return errors::DataLoss(path_, ": record ", records_, " is truncated");
  }
  TF_RETURN_IF_ERROR(s);
  const char* data = stream_.data() + begin_ + kHeaderBytes;
  uint32_t stored;
  std::memcpy(&stored, data + length, sizeof(stored));
  if (MaskCrc(ExtendCrc32c(0, data, length)) != stored) {
    return errors::DataLoss(path_, ": record ", records_,
                            " is corrupt (checksum mismatch)");
  }
  *record = StringPiece(data, length);
  begin_ += kHeaderBytes + length + kFooterBytes;
  ++records_;
  return OkStatus();
}

}  // namespace monolith_tf
}  // namespace tensorflow
