// TFRecord files as TF's RecordWriter / RecordReader frame them, written
// and read without their per-record overheads: records are framed straight
// into a block buffer, read in place, and checksummed with the CPU's CRC32C
// instruction. No TensorFlow includes; files come from a FileSystem.
//
// Record: [length: u64 LE][masked CRC32C of the length: u32 LE][data]
//         [masked CRC32C of the data: u32 LE].
// SNAPPY files (TF's RecordWriterOptions SNAPPY, which the original's
// checkpoints use): the record stream cut into blocks of at most 256 KiB,
// each stored as [compressed length: u32 big-endian][raw snappy block], so
// TF's RecordReader with its default snappy buffer sizes reads them.
//
// Every length read from a file is checked against what the file can still
// hold before anything is allocated or read for it, so a corrupt or hostile
// file is a DataLoss error naming the file and the record, never a crash or
// a huge allocation.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_RECORD_FILE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_RECORD_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

// CRC32C of [data, data + size) continuing |crc| (crc32c::Extend's
// convention), on the SSE4.2 instruction when the CPU has it.
uint32_t ExtendCrc32c(uint32_t crc, const char* data, size_t size);

// A record's framing around its data: length and its CRC; the data's CRC.
constexpr size_t kRecordHeaderBytes = sizeof(uint64_t) + sizeof(uint32_t);
constexpr size_t kRecordFooterBytes = sizeof(uint32_t);

// TFRecord's masking of a stored CRC.
inline uint32_t MaskCrc(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// Whether |header| (kRecordHeaderBytes) is a record length followed by its
// masked CRC32C.
bool IsValidRecordHeader(const char* header);

class RecordFileWriter {
 public:
  // Uncompressed blocks and snappy blocks hold at most this many bytes of
  // the record stream (TF's SnappyInputBuffer default output buffer).
  static constexpr size_t kBlockBytes = 256 << 10;
  // The largest record written or read: records are protobufs, which
  // protobuf parses up to 2 GiB (an int size).
  static constexpr uint64_t kMaxRecordBytes = (uint64_t{1} << 31) - 1;

  // Writes to |file| (not owned; the caller closes it after Close()).
  RecordFileWriter(WritableFile* file, bool snappy);

  // Appends one record; InvalidArgument above kMaxRecordBytes.
  Status Write(std::string_view record);

  // The stored (masked) data CRC of the last record written.
  uint32_t last_record_crc() const { return last_record_crc_; }
  // Bytes handed to the file so far (all of them after Close()).
  uint64_t file_bytes() const { return file_bytes_; }

  // Writes what is buffered. Call once, after the last record.
  Status Close() { return FlushBlock(); }

 private:
  // Frames the record whose data sits at |record| + kRecordHeaderBytes.
  void Frame(char* record, size_t size);
  // Writes the block buffer (compressed in snappy mode) and empties it.
  Status FlushBlock();
  // Appends |size| bytes, cutting blocks as they fill.
  Status Append(const char* data, size_t size);

  WritableFile* file_;
  bool snappy_;
  std::string block_;       // the current block, uncompressed
  size_t used_ = 0;         // bytes of block_ in use
  std::string compressed_;  // scratch for a snappy block
  std::string oversized_;   // scratch for a record larger than a block
  uint32_t last_record_crc_ = 0;
  uint64_t file_bytes_ = 0;
};

// Reads the records RecordFileWriter (or TF's RecordWriter) wrote, checking
// every CRC; errors are DataLoss naming the file and the record.
class RecordFileReader {
 public:
  // |snappy|: the file is a SNAPPY stream (see the top of this file).
  static Status Open(FileSystem* fs, const std::string& path, bool snappy,
                     std::unique_ptr<RecordFileReader>* reader);
  // Opens |path| as Open does, telling its format from its first bytes: an
  // uncompressed file starts with a valid record header (a snappy stream
  // starts with a block length and snappy data, which pass by chance once
  // in 2^32). An empty file has no records either way and reads as
  // uncompressed; one shorter than a header reads as SNAPPY (a truncated
  // block, or whole empty blocks). On error |reader| is reset.
  static Status OpenDetectingFormat(FileSystem* fs, const std::string& path,
                                    std::unique_ptr<RecordFileReader>* reader);

  // Whether the file is read as a SNAPPY stream.
  bool snappy() const { return snappy_; }

  // The next record, valid until the next call; OutOfRange at the end of
  // the file.
  Status Next(std::string_view* record);

  // The stored (masked) data CRC of the last record read.
  uint32_t last_record_crc() const { return last_record_crc_; }
  // Records read so far.
  int64_t records() const { return records_; }
  // Where the last record read lies, for errors about its content: "record
  // N (at byte B)", B of the decompressed stream in a SNAPPY file.
  std::string LastRecordPlace() const;
  const std::string& path() const { return path_; }
  // The file's size when it was opened.
  uint64_t file_size() const { return file_size_; }

 private:
  RecordFileReader(std::string path, std::unique_ptr<RandomAccessFile> file,
                   uint64_t file_size, bool snappy);
  // Makes at least |bytes| unread bytes of the record stream available at
  // stream_[begin_]; OutOfRange if the file ends first.
  Status Fill(size_t bytes);
  // Appends the file's next piece of the stream: raw bytes, or one snappy
  // block decompressed.
  Status ReadMore();
  // The most stream bytes the rest of the file can still decode to.
  uint64_t MaxStreamBytesLeft() const;
  Status RecordError(const std::string& what) const;
  // Internal: the file system gave fewer than |wanted| bytes before the end
  // of the file's size.
  Status ShortRead(uint64_t wanted) const;

  std::string path_;
  std::unique_ptr<RandomAccessFile> file_;
  uint64_t file_size_;
  bool snappy_;
  uint64_t file_offset_ = 0;
  std::string stream_;  // decoded stream bytes, unread from begin_
  size_t begin_ = 0;
  uint64_t stream_base_ = 0;  // stream offset of stream_[0]
  std::string chunk_;  // scratch for file reads
  int64_t records_ = 0;
  uint32_t last_record_crc_ = 0;
  uint64_t last_record_offset_ = 0;  // stream offset
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_RECORD_FILE_H_
