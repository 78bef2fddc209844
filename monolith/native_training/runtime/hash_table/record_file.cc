#include "monolith/native_training/runtime/hash_table/record_file.h"

#include <nmmintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <utility>

#include "snappy.h"

namespace monolith {
namespace hash_table {
namespace {

// Snappy turns at most 3 input bytes (a copy with a 2-byte offset) into 64
// output bytes.
constexpr uint64_t kMaxSnappyExpansion = 22;

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

// Byte-at-a-time CRC32C (Castagnoli, reflected) for CPUs without SSE4.2.
uint32_t ExtendCrc32cPortable(uint32_t crc, const char* data, size_t size) {
  static const std::array<uint32_t, 256> kTable = [] {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1)));
      table[i] = c;
    }
    return table;
  }();
  uint32_t state = ~crc;
  for (size_t i = 0; i < size; ++i) {
    state = kTable[(state ^ static_cast<uint8_t>(data[i])) & 0xff] ^ (state >> 8);
  }
  return ~state;
}

bool HasSse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}

void EncodeFixed32(char* dest, uint32_t value) {
  std::memcpy(dest, &value, sizeof(value));  // x86-64: little-endian
}

uint32_t DecodeFixed32(const char* src) {
  uint32_t value;
  std::memcpy(&value, src, sizeof(value));
  return value;
}

// Reads up to |n| bytes at |offset| into |out|, going on after a short
// read (network file systems return them before the end): |*read| < |n|
// only at the end of the file.
Status ReadFully(const RandomAccessFile& file, uint64_t offset, size_t n,
                 char* out, size_t* read) {
  *read = 0;
  while (*read < n) {
    size_t got = 0;
    MONOLITH_RETURN_IF_ERROR(
        file.Read(offset + *read, n - *read, out + *read, &got));
    if (got == 0) break;
    *read += got;
  }
  return Status::OK();
}

}  // namespace

uint32_t ExtendCrc32c(uint32_t crc, const char* data, size_t size) {
  if (HasSse42()) return ExtendCrc32cSse42(crc, data, size);
  return ExtendCrc32cPortable(crc, data, size);
}

bool IsValidRecordHeader(const char* header) {
  return MaskCrc(ExtendCrc32c(0, header, sizeof(uint64_t))) ==
         DecodeFixed32(header + sizeof(uint64_t));
}

RecordFileWriter::RecordFileWriter(WritableFile* file, bool snappy)
    : file_(file), snappy_(snappy), block_(kBlockBytes, '\0') {}

void RecordFileWriter::Frame(char* record, size_t size) {
  const uint64_t length = size;
  std::memcpy(record, &length, sizeof(length));
  EncodeFixed32(record + sizeof(length),
                MaskCrc(ExtendCrc32c(0, record, sizeof(length))));
  char* data = record + kRecordHeaderBytes;
  last_record_crc_ = MaskCrc(ExtendCrc32c(0, data, size));
  EncodeFixed32(data + size, last_record_crc_);
}

Status RecordFileWriter::FlushBlock() {
  if (used_ == 0) return Status::OK();
  const size_t size = used_;
  used_ = 0;
  if (!snappy_) {
    file_bytes_ += size;
    return file_->Append(std::string_view(block_.data(), size));
  }
  compressed_.resize(snappy::MaxCompressedLength(size) + 4);
  size_t length = 0;
  snappy::RawCompress(block_.data(), size, &compressed_[4], &length);
  const char big_endian[4] = {
      static_cast<char>(length >> 24), static_cast<char>(length >> 16),
      static_cast<char>(length >> 8), static_cast<char>(length)};
  std::memcpy(&compressed_[0], big_endian, 4);
  file_bytes_ += length + 4;
  return file_->Append(std::string_view(compressed_.data(), length + 4));
}

Status RecordFileWriter::Write(std::string_view record) {
  const size_t size = record.size();
  if (size > kMaxRecordBytes) {
    return InvalidArgumentError("a record of " + std::to_string(size) +
                                " bytes: records hold at most 2^31 - 1");
  }
  const size_t framed = kRecordHeaderBytes + size + kRecordFooterBytes;
  if (framed > kBlockBytes - used_) {
    if (framed > kBlockBytes) {
      oversized_.resize(framed);
      std::memcpy(&oversized_[kRecordHeaderBytes], record.data(), size);
      Frame(&oversized_[0], size);
      return Append(oversized_.data(), framed);
    }
    MONOLITH_RETURN_IF_ERROR(FlushBlock());
  }
  char* framed_record = &block_[used_];
  std::memcpy(framed_record + kRecordHeaderBytes, record.data(), size);
  Frame(framed_record, size);
  used_ += framed;
  return Status::OK();
}

Status RecordFileWriter::Append(const char* data, size_t size) {
  while (size > 0) {
    if (used_ == kBlockBytes) MONOLITH_RETURN_IF_ERROR(FlushBlock());
    const size_t n = std::min(size, kBlockBytes - used_);
    std::memcpy(&block_[used_], data, n);
    used_ += n;
    data += n;
    size -= n;
  }
  return Status::OK();
}

RecordFileReader::RecordFileReader(std::string path,
                                   std::unique_ptr<RandomAccessFile> file,
                                   uint64_t file_size, bool snappy)
    : path_(std::move(path)),
      file_(std::move(file)),
      file_size_(file_size),
      snappy_(snappy) {}

Status RecordFileReader::Open(FileSystem* fs, const std::string& path,
                              bool snappy,
                              std::unique_ptr<RecordFileReader>* reader) {
  std::unique_ptr<RandomAccessFile> file;
  MONOLITH_RETURN_IF_ERROR(fs->NewRandomAccessFile(path, &file));
  uint64_t file_size = 0;
  MONOLITH_RETURN_IF_ERROR(fs->GetFileSize(path, &file_size));
  reader->reset(new RecordFileReader(path, std::move(file), file_size, snappy));
  return Status::OK();
}

Status RecordFileReader::OpenDetectingFormat(
    FileSystem* fs, const std::string& path,
    std::unique_ptr<RecordFileReader>* reader) {
  MONOLITH_RETURN_IF_ERROR(Open(fs, path, /*snappy=*/false, reader));
  char header[kRecordHeaderBytes];
  size_t read = 0;
  const Status status =
      ReadFully(*(*reader)->file_, 0, sizeof(header), header, &read);
  if (!status.ok()) {
    reader->reset();
    return status;
  }
  (*reader)->snappy_ = read == sizeof(header) ? !IsValidRecordHeader(header)
                                              : read > 0;
  return Status::OK();
}

Status RecordFileReader::RecordError(const std::string& what) const {
  return DataLossError(path_ + ": record " + std::to_string(records_) + " " +
                       what + " (it begins at byte " +
                       std::to_string(stream_base_ + begin_) +
                       (snappy_ ? " of the decompressed stream)" : ")"));
}

std::string RecordFileReader::LastRecordPlace() const {
  return "record " + std::to_string(records_ - 1) + " (at byte " +
         std::to_string(last_record_offset_) +
         (snappy_ ? " of the decompressed stream)" : ")");
}

Status RecordFileReader::ShortRead(uint64_t wanted) const {
  // The file holds what its size says (a checkpoint's files are written
  // whole before their rename): a file system that hands back less is
  // failing, and the file is not damaged.
  return InternalError(path_ + ": the file system read fewer bytes than " +
                       std::to_string(wanted) + " at byte " +
                       std::to_string(file_offset_) + " of a file it gave " +
                       std::to_string(file_size_) +
                       " bytes (it shrank, or the read was cut short)");
}

uint64_t RecordFileReader::MaxStreamBytesLeft() const {
  const uint64_t file_left = file_size_ - std::min(file_size_, file_offset_);
  const uint64_t buffered = stream_.size() - begin_;
  const uint64_t expansion = snappy_ ? kMaxSnappyExpansion : 1;
  const uint64_t limit = std::numeric_limits<uint64_t>::max() / 2;
  if (file_left > limit / expansion) return limit;
  return buffered + file_left * expansion;
}

Status RecordFileReader::ReadMore() {
  // Drop what was read, so the stream buffer stays small.
  stream_.erase(0, begin_);
  stream_base_ += begin_;
  begin_ = 0;
  const uint64_t file_left = file_size_ - std::min(file_size_, file_offset_);
  if (!snappy_) {
    // Up to 4 MiB buffered: the unread bytes kept above plus the read fill
    // it (only a record longer than that makes it grow), so the buffer is
    // not reallocated to twice its size, the old one beside it, at every
    // read.
    constexpr uint64_t kBufferBytes = uint64_t{4} << 20;
    const uint64_t room = stream_.size() < kBufferBytes
                              ? kBufferBytes - stream_.size()
                              : kBufferBytes;
    const size_t want = static_cast<size_t>(std::min(room, file_left));
    const size_t old_size = stream_.size();
    stream_.resize(old_size + want);
    size_t read = 0;
    Status s = file_->Read(file_offset_, want, &stream_[old_size], &read);
    stream_.resize(old_size + read);
    file_offset_ += read;
    if (s.ok() && read == 0 && want > 0) return ShortRead(want);
    return s;
  }
  if (file_left == 0) return Status::OK();
  const std::string at = path_ + ": snappy block at byte " +
                         std::to_string(file_offset_);
  char length_bytes[4];
  size_t read = 0;
  MONOLITH_RETURN_IF_ERROR(
      ReadFully(*file_, file_offset_, 4, length_bytes, &read));
  // file_left < 4 with 4 bytes read: the file grew after its size was
  // taken; its size still bounds what is read.
  if (file_left < 4) return DataLossError(at + " is truncated in its length");
  if (read < 4) return ShortRead(4);
  const uint8_t* b = reinterpret_cast<const uint8_t*>(length_bytes);
  const uint32_t length = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
                          (uint32_t{b[2]} << 8) | uint32_t{b[3]};
  // Lengths are checked against the file before anything is allocated for
  // them, so a corrupt one is an error, not a 4 GiB buffer.
  if (length > file_left - 4) {
    return DataLossError(at + " is truncated (" + std::to_string(length) +
                         " bytes claimed, " + std::to_string(file_left - 4) +
                         " left in the file)");
  }
  chunk_.resize(length);
  MONOLITH_RETURN_IF_ERROR(
      ReadFully(*file_, file_offset_ + 4, length, &chunk_[0], &read));
  if (read < length) return ShortRead(length);
  size_t uncompressed = 0;
  // Our writer's blocks decode to at most kBlockBytes, and TF's too but
  // for a record larger than its buffer, which it compresses alone. A
  // larger claim is believed only once the block's data validates (a
  // second pass over such blocks), so a corrupt length in a large file is
  // an error, not a buffer of up to 22 times the block.
  if (!snappy::GetUncompressedLength(chunk_.data(), length, &uncompressed) ||
      uncompressed > uint64_t{length} * kMaxSnappyExpansion ||
      (uncompressed > RecordFileWriter::kBlockBytes &&
       !snappy::IsValidCompressedBuffer(chunk_.data(), length))) {
    return DataLossError(at + " is corrupt");
  }
  const size_t old_size = stream_.size();
  stream_.resize(old_size + uncompressed);
  if (!snappy::RawUncompress(chunk_.data(), length, &stream_[old_size])) {
    return DataLossError(at + " is corrupt");
  }
  file_offset_ += 4 + uint64_t{length};
  return Status::OK();
}

Status RecordFileReader::Fill(size_t bytes) {
  while (stream_.size() - begin_ < bytes) {
    const size_t before = stream_.size() - begin_;
    const uint64_t offset_before = file_offset_;
    MONOLITH_RETURN_IF_ERROR(ReadMore());
    // The end of the file is where nothing more is read from it. A snappy
    // block that decodes to no bytes is not the end: TF's reader reads on
    // past it, and so does this one (each pass moves through the file, so
    // the loop ends).
    if (stream_.size() - begin_ == before && file_offset_ == offset_before) {
      return OutOfRangeError(path_ + ": end of file");
    }
  }
  return Status::OK();
}

Status RecordFileReader::Next(std::string_view* record) {
  Status s = Fill(kRecordHeaderBytes);
  if (s.code() == StatusCode::kOutOfRange) {
    if (stream_.size() == begin_) return s;  // a clean end
    return RecordError("is truncated in its header");
  }
  MONOLITH_RETURN_IF_ERROR(s);
  const char* header = stream_.data() + begin_;
  if (!IsValidRecordHeader(header)) return RecordError("has a corrupt length");
  uint64_t length;
  std::memcpy(&length, header, sizeof(length));
  // A valid header CRC does not make a length sane: check it against what
  // the rest of the file can hold before any arithmetic or allocation.
  const uint64_t left = MaxStreamBytesLeft();
  if (left < kRecordHeaderBytes + kRecordFooterBytes ||
      length > left - kRecordHeaderBytes - kRecordFooterBytes) {
    return RecordError("claims " + std::to_string(length) +
                       " bytes, more than the rest of the file holds "
                       "(truncated or corrupt)");
  }
  if (length > RecordFileWriter::kMaxRecordBytes) {
    return RecordError("claims " + std::to_string(length) +
                       " bytes; records hold at most 2^31 - 1");
  }
  s = Fill(kRecordHeaderBytes + length + kRecordFooterBytes);
  if (s.code() == StatusCode::kOutOfRange) return RecordError("is truncated");
  MONOLITH_RETURN_IF_ERROR(s);
  const char* data = stream_.data() + begin_ + kRecordHeaderBytes;
  const uint32_t stored = DecodeFixed32(data + length);
  if (MaskCrc(ExtendCrc32c(0, data, length)) != stored) {
    return RecordError("is corrupt (checksum mismatch)");
  }
  *record = std::string_view(data, length);
  last_record_crc_ = stored;
  last_record_offset_ = stream_base_ + begin_;
  begin_ += kRecordHeaderBytes + length + kRecordFooterBytes;
  ++records_;
  return Status::OK();
}

}  // namespace hash_table
}  // namespace monolith
