#include "monolith/native_training/runtime/hash_table/record_file.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  PosixFileSystem fs;
  std::unique_ptr<WritableFile> file;
  ASSERT_OK(fs.NewWritableFile(path, &file));
  ASSERT_OK(file->Append(bytes));
  ASSERT_OK(file->Close());
}

std::string WriteRecords(const std::string& path,
                         const std::vector<std::string>& records,
                         bool snappy) {
  PosixFileSystem fs;
  std::unique_ptr<WritableFile> file;
  EXPECT_OK(fs.NewWritableFile(path, &file));
  RecordFileWriter writer(file.get(), snappy);
  for (const std::string& record : records) {
    EXPECT_OK(writer.Write(record));
  }
  EXPECT_OK(writer.Close());
  EXPECT_OK(file->Close());
  uint64_t size = 0;
  EXPECT_OK(fs.GetFileSize(path, &size));
  EXPECT_EQ(size, writer.file_bytes());
  return path;
}

// Reads every record; the first error (other than the clean end) in |error|.
std::vector<std::string> ReadAll(const std::string& path, bool snappy,
                                 Status* error, FileSystem* fs = nullptr) {
  PosixFileSystem posix;
  if (fs == nullptr) fs = &posix;
  std::unique_ptr<RecordFileReader> reader;
  std::vector<std::string> records;
  *error = RecordFileReader::Open(fs, path, snappy, &reader);
  if (!error->ok()) return records;
  std::string_view record;
  while (true) {
    Status s = reader->Next(&record);
    if (s.code() == StatusCode::kOutOfRange) break;
    if (!s.ok()) {
      *error = s;
      break;
    }
    records.emplace_back(record);
  }
  return records;
}

// A framed uncompressed record whose header claims |length| (with a valid
// header CRC) and which carries |data|.
std::string FramedRecord(uint64_t length, const std::string& data) {
  std::string out(kRecordHeaderBytes, '\0');
  std::memcpy(&out[0], &length, sizeof(length));
  const uint32_t crc = MaskCrc(ExtendCrc32c(0, out.data(), sizeof(length)));
  std::memcpy(&out[sizeof(length)], &crc, sizeof(crc));
  out += data;
  const uint32_t data_crc = MaskCrc(ExtendCrc32c(0, data.data(), data.size()));
  out.append(reinterpret_cast<const char*>(&data_crc), sizeof(data_crc));
  return out;
}

TEST(Crc32cTest, KnownValue) {
  const std::string text = "123456789";
  EXPECT_EQ(ExtendCrc32c(0, text.data(), text.size()), 0xe3069283u);
  // Extending piecewise equals one pass.
  EXPECT_EQ(ExtendCrc32c(ExtendCrc32c(0, text.data(), 4), text.data() + 4, 5),
            0xe3069283u);
}

TEST(RecordFileTest, RoundTripsBothFormats) {
  std::vector<std::string> records = {"", "a", std::string(1000, 'x')};
  // Larger than a block, and enough to span several blocks.
  records.push_back(std::string(RecordFileWriter::kBlockBytes * 2 + 7, 'y'));
  for (int i = 0; i < 5000; ++i) records.push_back(std::to_string(i * 7919));
  for (bool snappy : {false, true}) {
    const std::string path =
        WriteRecords(TempPath(snappy ? "rt_snappy" : "rt_plain"), records, snappy);
    Status error;
    EXPECT_EQ(ReadAll(path, snappy, &error), records);
    EXPECT_OK(error);
    PosixFileSystem fs;
    std::unique_ptr<RecordFileReader> reader;
    ASSERT_OK(RecordFileReader::OpenDetectingFormat(&fs, path, &reader));
    EXPECT_EQ(reader->snappy(), snappy);
    std::string_view record;
    for (const std::string& expected : records) {
      ASSERT_OK(reader->Next(&record));
      ASSERT_EQ(record, expected);
    }
    EXPECT_EQ(reader->Next(&record).code(), StatusCode::kOutOfRange);
  }
}

// Uncompressed files are read 4 MiB at a time into a buffer that keeps the
// unread rest: records across those reads, and longer than one, come
// whole.
TEST(RecordFileTest, RoundTripsRecordsLongerThanAReadAndAcrossReads) {
  std::vector<std::string> records;
  for (int i = 0; i < 3; ++i) {
    records.push_back(std::string((3 << 20) + i, static_cast<char>('a' + i)));
  }
  records.push_back(std::string(9 << 20, 'z'));
  records.push_back("after");
  records.push_back(std::string(4 << 20, 'w'));
  for (int i = 0; i < 1000; ++i) records.push_back(std::to_string(i));
  const std::string path = WriteRecords(TempPath("long_plain"), records,
                                        /*snappy=*/false);
  Status error;
  EXPECT_EQ(ReadAll(path, /*snappy=*/false, &error), records);
  EXPECT_OK(error);
}

// Files whose reads return at most 1,000 bytes at a time, as network file
// systems may before the end.
class ShortReadFileSystem : public PosixFileSystem {
 public:
  Status NewRandomAccessFile(const std::string& path,
                             std::unique_ptr<RandomAccessFile>* file) override {
    std::unique_ptr<RandomAccessFile> whole;
    MONOLITH_RETURN_IF_ERROR(PosixFileSystem::NewRandomAccessFile(path, &whole));
    *file = std::make_unique<ShortReads>(std::move(whole));
    return Status::OK();
  }

 private:
  class ShortReads : public RandomAccessFile {
   public:
    explicit ShortReads(std::unique_ptr<RandomAccessFile> file)
        : file_(std::move(file)) {}
    Status Read(uint64_t offset, size_t n, char* scratch,
                size_t* read) const override {
      return file_->Read(offset, std::min<size_t>(n, 1000), scratch, read);
    }

   private:
    std::unique_ptr<RandomAccessFile> file_;
  };
};

TEST(RecordFileTest, ShortReadsBeforeTheEndReadOn) {
  // A snappy block read short was "truncated": a whole checkpoint refused.
  std::vector<std::string> records = {"a", std::string(5000, 'x')};
  for (int i = 0; i < 3000; ++i) records.push_back(std::to_string(i * 7919));
  for (bool snappy : {false, true}) {
    const std::string path = WriteRecords(
        TempPath(snappy ? "short_snappy" : "short_plain"), records, snappy);
    ShortReadFileSystem fs;
    Status error;
    EXPECT_EQ(ReadAll(path, snappy, &error, &fs), records);
    EXPECT_OK(error);
  }
}

TEST(RecordFileTest, LastRecordCrcIsTheStoredOne) {
  PosixFileSystem fs;
  const std::string path = WriteRecords(TempPath("crc"), {"abc", "de"}, false);
  std::unique_ptr<RecordFileReader> reader;
  ASSERT_OK(RecordFileReader::Open(&fs, path, false, &reader));
  std::string_view record;
  ASSERT_OK(reader->Next(&record));
  EXPECT_EQ(reader->last_record_crc(), MaskCrc(ExtendCrc32c(0, "abc", 3)));
  ASSERT_OK(reader->Next(&record));
  EXPECT_EQ(reader->last_record_crc(), MaskCrc(ExtendCrc32c(0, "de", 2)));
  EXPECT_EQ(reader->records(), 2);
}

TEST(RecordFileTest, EmptyFileHasNoRecords) {
  const std::string path = TempPath("empty");
  WriteBytes(path, "");
  for (bool snappy : {false, true}) {
    Status error;
    EXPECT_TRUE(ReadAll(path, snappy, &error).empty());
    EXPECT_OK(error);
  }
}

// Lengths near 2^64 with a valid header CRC: header + length + footer wraps
// around, which once read past the buffer.
TEST(RecordFileTest, HugeClaimedLengthIsDataLoss) {
  for (uint64_t length :
       {~uint64_t{0}, ~uint64_t{0} - kRecordHeaderBytes, ~uint64_t{0} - 15,
        uint64_t{1} << 63, uint64_t{1} << 40, uint64_t{1000}}) {
    const std::string path = TempPath("huge");
    WriteBytes(path, FramedRecord(length, "tiny"));
    Status error;
    ReadAll(path, false, &error);
    EXPECT_EQ(error.code(), StatusCode::kDataLoss) << length;
    EXPECT_NE(error.message().find(path + ": record 0"), std::string::npos)
        << error.message();
  }
}

TEST(RecordFileTest, HugeClaimedLengthInSnappyIsDataLoss) {
  PosixFileSystem fs;
  for (uint64_t length : {~uint64_t{0}, ~uint64_t{0} - 15, uint64_t{1} << 50}) {
    // One valid snappy block (a single literal: the uncompressed length as a
    // varint, then a literal tag) holding the hostile record stream.
    const std::string stream = FramedRecord(length, "tiny");
    ASSERT_LT(stream.size(), 60u);
    std::string block;
    block.push_back(static_cast<char>(stream.size()));
    block.push_back(static_cast<char>((stream.size() - 1) << 2));
    block += stream;
    const uint32_t n = static_cast<uint32_t>(block.size());
    const char big_endian[4] = {static_cast<char>(n >> 24),
                                static_cast<char>(n >> 16),
                                static_cast<char>(n >> 8), static_cast<char>(n)};
    const std::string path = TempPath("huge_snappy");
    WriteBytes(path, std::string(big_endian, 4) + block);
    Status error;
    ReadAll(path, true, &error);
    EXPECT_EQ(error.code(), StatusCode::kDataLoss) << length;
    EXPECT_NE(error.message().find("record 0 claims"), std::string::npos)
        << error.message();
    EXPECT_NE(error.message().find(
                  "(it begins at byte 0 of the decompressed stream)"),
              std::string::npos)
        << error.message();
  }
}

// Reports a size smaller than the file's, as a file that grew after it was
// measured (or a stale size cache) would.
class StaleSizeFileSystem : public PosixFileSystem {
 public:
  Status GetFileSize(const std::string& path, uint64_t* size) override {
    *size = 2;
    return Status::OK();
  }
};

// Reports a size larger than the file's, as a file that shrank after it was
// measured, or a file system that cuts reads short for good, would.
class OverstatedSizeFileSystem : public PosixFileSystem {
 public:
  Status GetFileSize(const std::string& path, uint64_t* size) override {
    MONOLITH_RETURN_IF_ERROR(PosixFileSystem::GetFileSize(path, size));
    *size += 100;
    return Status::OK();
  }
};

// A file that ends before its measured size is a failing file system
// (Internal, naming the byte), not a clean end after the last record (the
// rest of the records lost silently) nor a damaged file (DataLoss, read
// past by a restore for an older save).
TEST(RecordFileTest, AFileShorterThanItsMeasuredSizeIsAStorageError) {
  const std::vector<std::string> records = {"a", std::string(5000, 'x')};
  for (bool snappy : {false, true}) {
    const std::string path = WriteRecords(
        TempPath(snappy ? "shrunk_snappy" : "shrunk_plain"), records, snappy);
    OverstatedSizeFileSystem fs;
    Status error;
    EXPECT_EQ(ReadAll(path, snappy, &error, &fs), records);
    EXPECT_EQ(error.code(), StatusCode::kInternal) << error.ToString();
    EXPECT_NE(error.message().find(path + ": the file system read fewer "
                                          "bytes than"),
              std::string::npos)
        << error.ToString();
  }
}

// A block length read past the size the reader was given does not wrap its
// bounds check: DataLoss, not a 4 GiB buffer.
TEST(RecordFileTest, SnappyLengthPastTheMeasuredSizeIsDataLoss) {
  const std::string path = TempPath("stale_size");
  WriteBytes(path, std::string("\xff\xff\xff\xff", 4) + "more bytes");
  StaleSizeFileSystem fs;
  std::unique_ptr<RecordFileReader> reader;
  ASSERT_OK(RecordFileReader::Open(&fs, path, true, &reader));
  std::string_view record;
  const Status error = reader->Next(&record);
  EXPECT_EQ(error.code(), StatusCode::kDataLoss) << error.message();
  EXPECT_NE(error.message().find("truncated in its length"), std::string::npos)
      << error.message();
}

TEST(RecordFileTest, CorruptionIsDataLossNamingTheRecord) {
  const std::string path = WriteRecords(TempPath("corrupt_src"),
                                        {"first", "second", "third"}, false);
  std::string bytes;
  {
    PosixFileSystem fs;
    std::unique_ptr<RandomAccessFile> file;
    ASSERT_OK(fs.NewRandomAccessFile(path, &file));
    bytes.resize(200);
    size_t read = 0;
    ASSERT_OK(file->Read(0, bytes.size(), &bytes[0], &read));
    bytes.resize(read);
  }
  const size_t second = kRecordHeaderBytes + 5 + kRecordFooterBytes;
  const size_t third = second + kRecordHeaderBytes + 6 + kRecordFooterBytes;
  struct Case {
    std::string bytes;
    std::string message;
    size_t offset;  // where the record begins
  };
  std::string bad_length = bytes;
  bad_length[second] ^= 1;
  std::string bad_data = bytes;
  bad_data[second + kRecordHeaderBytes] ^= 1;
  const std::vector<Case> cases = {
      {bad_length, "record 1 has a corrupt length", second},
      {bad_data, "record 1 is corrupt (checksum mismatch)", second},
      {bytes.substr(0, second + 3), "record 1 is truncated in its header",
       second},
      {bytes.substr(0, second + kRecordHeaderBytes + 2),
       "record 1 claims 6 bytes, more than the rest of the file holds",
       second},
      {bytes.substr(0, bytes.size() - 1), "record 2 claims 5 bytes", third},
  };
  for (const Case& c : cases) {
    const std::string broken = TempPath("corrupt");
    WriteBytes(broken, c.bytes);
    Status error;
    const std::vector<std::string> records = ReadAll(broken, false, &error);
    EXPECT_EQ(error.code(), StatusCode::kDataLoss) << c.message;
    EXPECT_NE(error.message().find(c.message), std::string::npos)
        << error.message();
    EXPECT_NE(error.message().find("(it begins at byte " +
                                   std::to_string(c.offset) + ")"),
              std::string::npos)
        << error.message();
    EXPECT_EQ(records.front(), "first");
  }
}

TEST(RecordFileTest, CorruptSnappyBlocksAreDataLoss) {
  const std::string path = TempPath("bad_snappy");
  // Block length beyond the file.
  WriteBytes(path, std::string("\x7f\xff\xff\xff", 4) + "abc");
  Status error;
  ReadAll(path, true, &error);
  EXPECT_EQ(error.code(), StatusCode::kDataLoss);
  EXPECT_NE(error.message().find("snappy block at byte 0 is truncated"),
            std::string::npos)
      << error.message();
  // An uncompressed length no 3-byte block can decode to (a decompression
  // bomb header).
  WriteBytes(path, std::string("\x00\x00\x00\x03\xff\xff\x7f", 7));
  ReadAll(path, true, &error);
  EXPECT_EQ(error.code(), StatusCode::kDataLoss);
  EXPECT_NE(error.message().find("is corrupt"), std::string::npos);
  // A block length cut short.
  WriteBytes(path, std::string("\x00\x00", 2));
  ReadAll(path, true, &error);
  EXPECT_EQ(error.code(), StatusCode::kDataLoss);
  EXPECT_NE(error.message().find("truncated in its length"), std::string::npos);
}

// A snappy block whose header claims more than blocks decode to (1 GiB,
// which 48 MiB of snappy data could hold) and whose data does not decode:
// DataLoss before anything is allocated for the claim. The read runs in a
// child whose address space may grow by 512 MiB, so allocating the claim
// fails it.
TEST(RecordFileTest, ALargeSnappyBlocksClaimIsCheckedBeforeItIsAllocated) {
  constexpr uint32_t kBlock = 48 << 20;
  std::string block(kBlock, '\xff');  // copies from before the output
  const char claim[] = {'\x80', '\x80', '\x80', '\x80', '\x04'};  // 1 GiB
  std::memcpy(&block[0], claim, sizeof(claim));
  const char big_endian[4] = {
      static_cast<char>(kBlock >> 24), static_cast<char>(kBlock >> 16),
      static_cast<char>(kBlock >> 8), static_cast<char>(kBlock)};
  const std::string path = TempPath("large_claim");
  WriteBytes(path, std::string(big_endian, 4) + block);
  block.clear();
  block.shrink_to_fit();
  const pid_t child = fork();
  if (child == 0) {
    std::ifstream statm("/proc/self/statm");
    size_t pages = 0;
    statm >> pages;
    const size_t limit_bytes =
        pages * static_cast<size_t>(sysconf(_SC_PAGESIZE)) + (size_t{512} << 20);
    const rlimit limit{limit_bytes, limit_bytes};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(2);
    Status error;
    try {
      ReadAll(path, true, &error);
    } catch (const std::bad_alloc&) {
      _exit(3);
    }
    _exit(error.code() == StatusCode::kDataLoss &&
                  error.message().find("is corrupt") != std::string::npos
              ? 0
              : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the read died (signal "
                                 << WTERMSIG(status) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "1: not the DataLoss expected; 2: no limit set; 3: the claim was "
         "allocated";
  std::remove(path.c_str());
}

// A snappy block of |raw| (under 60 bytes) as one literal, with its
// big-endian length in front; no bytes at all for an empty |raw|: an empty
// block.
std::string LiteralSnappyBlock(const std::string& raw) {
  std::string block(1, static_cast<char>(raw.size()));  // uncompressed length
  if (!raw.empty()) {
    block.push_back(static_cast<char>((raw.size() - 1) << 2));  // literal tag
    block += raw;
  }
  const uint32_t n = static_cast<uint32_t>(block.size());
  const char big_endian[4] = {static_cast<char>(n >> 24),
                              static_cast<char>(n >> 16),
                              static_cast<char>(n >> 8), static_cast<char>(n)};
  return std::string(big_endian, 4) + block;
}

// Found by checkpoint_fuzz_test: a snappy block that decodes to no bytes
// ended the reader's stream, so the records after it were lost (a restore
// failed as truncated, or passed over what followed). TF's SnappyInputBuffer
// reads on past such blocks; so must this reader.
TEST(RecordFileTest, EmptySnappyBlocksAreSkipped) {
  const std::string first = FramedRecord(5, "first");
  const std::string second = FramedRecord(6, "second");
  const std::string empty = LiteralSnappyBlock("");
  const std::string path = TempPath("empty_snappy_blocks");
  // Empty blocks first, between records, inside a record and last.
  WriteBytes(path, empty + empty + LiteralSnappyBlock(first) + empty +
                       LiteralSnappyBlock(second.substr(0, 7)) + empty +
                       LiteralSnappyBlock(second.substr(7)) + empty);
  Status error;
  EXPECT_EQ(ReadAll(path, true, &error),
            (std::vector<std::string>{"first", "second"}));
  EXPECT_OK(error);
  // Only empty blocks: no records, a clean end.
  WriteBytes(path, empty + empty);
  EXPECT_TRUE(ReadAll(path, true, &error).empty());
  EXPECT_OK(error);
  // A record cut short before an empty last block is still truncated.
  WriteBytes(path, LiteralSnappyBlock(first) +
                       LiteralSnappyBlock(second.substr(0, 7)) + empty);
  EXPECT_EQ(ReadAll(path, true, &error), std::vector<std::string>{"first"});
  EXPECT_EQ(error.code(), StatusCode::kDataLoss);
  EXPECT_NE(error.message().find("record 1 is truncated"), std::string::npos)
      << error.message();
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
