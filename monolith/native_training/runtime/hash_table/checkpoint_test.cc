#include "monolith/native_training/runtime/hash_table/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/faulty_file_systems.h"
#include "monolith/native_training/runtime/hash_table/record_file.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace {

using Contents = std::map<int, std::vector<std::string>>;  // table -> records

// A fresh directory per test.
std::string TestDir(const std::string& name) {
  const char* root = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(root ? root : "/tmp") + "/ckpt_" + name;
  std::string ignored = "rm -rf '" + dir + "'";
  EXPECT_EQ(std::system(ignored.c_str()), 0);
  PosixFileSystem fs;
  EXPECT_OK(fs.CreateDirectories(dir));
  return dir;
}

const std::vector<std::string> kTables = {"user", "item", "empty"};

// Records of |version|: table t holds |per_table| records of a fixed size
// ("v<version>-t<table>-<i>", zero-padded), none in the last table.
Contents MakeContents(int version, int per_table) {
  Contents contents;
  for (int t = 0; t < 2; ++t) {
    for (int i = 0; i < per_table; ++i) {
      char record[32];
      std::snprintf(record, sizeof(record), "v%03d-t%d-%06d", version, t, i);
      contents[t].push_back(record);
    }
  }
  contents[2];
  return contents;
}

Status SaveWith(FileSystem* fs, const std::string& basename,
                const Contents& contents, const SaveOptions& options) {
  return SaveCheckpoint(
      fs, basename, kTables,
      [&](int table, int shard, int n,
          const std::function<Status(std::string_view)>& write) {
        const auto it = contents.find(table);
        if (it == contents.end()) return Status::OK();
        for (size_t i = 0; i < it->second.size(); ++i) {
          if (static_cast<int>(i % n) != shard) continue;
          MONOLITH_RETURN_IF_ERROR(write(it->second[i]));
        }
        return Status::OK();
      },
      options);
}

Status SaveTo(FileSystem* fs, const std::string& basename,
              const Contents& contents, int nshards, bool snappy = true,
              std::vector<std::string>* log = nullptr) {
  SaveOptions options;
  options.nshards = nshards;
  options.snappy = snappy;
  if (log) options.log = [log](const std::string& line) { log->push_back(line); };
  return SaveWith(fs, basename, contents, options);
}

Status Save(const std::string& basename, const Contents& contents, int nshards,
            bool snappy = true, std::vector<std::string>* log = nullptr) {
  PosixFileSystem fs;
  return SaveTo(&fs, basename, contents, nshards, snappy, log);
}

// Restores |basename| through |fs| into table -> sorted records.
Status RestoreFrom(FileSystem* fs, const std::string& basename,
                   Contents* contents, CheckpointInfo* info_out = nullptr,
                   std::vector<std::string>* log = nullptr) {
  CheckpointInfo info;
  LogFn log_fn;
  if (log) log_fn = [log](const std::string& line) { log->push_back(line); };
  MONOLITH_RETURN_IF_ERROR(
      ReadCheckpointInfo(fs, basename, /*need_data=*/true, log_fn, &info));
  contents->clear();
  std::map<std::string, std::vector<std::string>> by_name;
  MONOLITH_RETURN_IF_ERROR(RestoreCheckpoint(
      fs, info,
      [&](int, int table, std::string_view record) {
        by_name[info.tables[table].name].emplace_back(record);
        return Status::OK();
      },
      SerialFor, log_fn));
  for (size_t t = 0; t < kTables.size(); ++t) {
    auto& records = (*contents)[static_cast<int>(t)];
    records = by_name[kTables[t]];
    std::sort(records.begin(), records.end());
  }
  if (info_out) *info_out = info;
  return Status::OK();
}

Status Restore(const std::string& basename, Contents* contents,
               CheckpointInfo* info_out = nullptr,
               std::vector<std::string>* log = nullptr) {
  PosixFileSystem fs;
  return RestoreFrom(&fs, basename, contents, info_out, log);
}

void Copy(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  ASSERT_TRUE(in.good()) << from;
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
}

std::vector<std::string> List(const std::string& dir) {
  PosixFileSystem fs;
  std::vector<std::string> names;
  EXPECT_OK(fs.ListDirectory(dir, &names));
  std::sort(names.begin(), names.end());
  return names;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(CheckpointTest, RoundTripsEveryShardCountAndFormat) {
  const std::string dir = TestDir("round_trip");
  const Contents contents = MakeContents(1, 500);
  for (bool snappy : {true, false}) {
    for (int nshards : {1, 3, 8}) {
      const std::string basename = dir + "/t" + std::to_string(nshards) +
                                   (snappy ? "s" : "u");
      ASSERT_OK(Save(basename, contents, nshards, snappy));
      Contents restored;
      CheckpointInfo info;
      ASSERT_OK(Restore(basename, &restored, &info));
      EXPECT_EQ(restored, contents);
      EXPECT_EQ(info.nshards, nshards);
      EXPECT_TRUE(info.has_identity);
      ASSERT_EQ(info.tables.size(), 3u);
      EXPECT_EQ(info.tables[0].name, "user");
      EXPECT_EQ(info.tables[0].entries, 500u);
      EXPECT_EQ(info.tables[2].entries, 0u);
    }
  }
  // Only final names remain: no temporary files.
  for (const std::string& name : List(dir)) {
    EXPECT_FALSE(Contains(name, "-tmp-")) << name;
  }
}

TEST(CheckpointTest, MetaRecordsCarryTheSaveIdentity) {
  const std::string basename = TestDir("identity") + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 10), 2));
  PosixFileSystem fs;
  uint64_t save_id = 0;
  for (int s = 0; s < 2; ++s) {
    std::unique_ptr<RecordFileReader> reader;
    ASSERT_OK(RecordFileReader::Open(&fs, CheckpointMetaName(basename, s, 2),
                                     false, &reader));
    std::string_view record;
    int records = 0;
    while (reader->Next(&record).ok()) {
      MultiHashTableMetadata meta;
      ASSERT_TRUE(meta.ParseFromArray(record.data(), record.size()));
      EXPECT_EQ(meta.table_name(), kTables[records]);
      EXPECT_EQ(meta.shard(), static_cast<uint32_t>(s));
      EXPECT_EQ(meta.num_shards(), 2u);
      EXPECT_TRUE(meta.has_entries_crc32c());
      uint64_t size = 0;
      ASSERT_OK(fs.GetFileSize(CheckpointDataName(basename, s, 2), &size));
      EXPECT_EQ(meta.data_file_bytes(), size);
      if (save_id == 0) save_id = meta.save_id();
      EXPECT_EQ(meta.save_id(), save_id);
      ++records;
    }
    EXPECT_EQ(records, 3);
  }
}

// A save killed between its renames leaves shards of two saves under one
// name: restore must refuse, naming the shard.
TEST(CheckpointTest, ShardsOfTwoSavesAreRefused) {
  const std::string dir = TestDir("two_saves");
  const std::string a = dir + "/a", b = dir + "/b";
  ASSERT_OK(Save(a, MakeContents(1, 100), 4));
  ASSERT_OK(Save(b, MakeContents(2, 100), 4));
  // The renames of save b reached shard 1 of 4.
  for (int s = 0; s < 2; ++s) {
    Copy(CheckpointDataName(b, s, 4), CheckpointDataName(a, s, 4));
    Copy(CheckpointMetaName(b, s, 4), CheckpointMetaName(a, s, 4));
  }
  Contents restored;
  const Status status = Restore(a, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "mixes saves")) << status.message();
  EXPECT_TRUE(Contains(status.message(), CheckpointMetaName(a, 2, 4)))
      << status.message();
  // Only the data file of shard 1 renamed, not yet its meta.
  ASSERT_OK(Save(a, MakeContents(1, 100), 4));
  Copy(CheckpointDataName(b, 1, 4), CheckpointDataName(a, 1, 4));
  const Status data_only = Restore(a, &restored);
  EXPECT_EQ(data_only.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(data_only.message(), CheckpointDataName(a, 1, 4)))
      << data_only.message();
}

TEST(CheckpointTest, DataShardOfTheSameSizeFromAnotherSaveIsRefused) {
  const std::string dir = TestDir("same_size");
  const std::string a = dir + "/a", b = dir + "/b";
  // Fixed-size records, uncompressed: both saves' shards have equal sizes.
  ASSERT_OK(Save(a, MakeContents(1, 100), 2, /*snappy=*/false));
  ASSERT_OK(Save(b, MakeContents(2, 100), 2, /*snappy=*/false));
  Copy(CheckpointDataName(b, 1, 2), CheckpointDataName(a, 1, 2));
  Contents restored;
  const Status status = Restore(a, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "comes from another save"))
      << status.message();
  EXPECT_TRUE(Contains(status.message(), CheckpointDataName(a, 1, 2)));
}

TEST(CheckpointTest, DataShardOfAnotherSizeIsRefusedBeforeRestoring) {
  const std::string dir = TestDir("other_size");
  const std::string a = dir + "/a", b = dir + "/b";
  ASSERT_OK(Save(a, MakeContents(1, 100), 2));
  ASSERT_OK(Save(b, MakeContents(2, 300), 2));
  Copy(CheckpointDataName(b, 0, 2), CheckpointDataName(a, 0, 2));
  PosixFileSystem fs;
  CheckpointInfo info;
  const Status status = ReadCheckpointInfo(&fs, a, true, nullptr, &info);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "is not the data file of that save"))
      << status.message();
}

// The meta file of |basename|'s shard 0 of |nshards|, cut after its first
// |records| records (uncompressed TFRecord: 12-byte header, data, 4-byte
// CRC).
void CutMetaFile(const std::string& basename, int nshards, int records) {
  const std::string path = CheckpointMetaName(basename, 0, nshards);
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  size_t end = 0;
  for (int i = 0; i < records; ++i) {
    uint64_t length = 0;
    ASSERT_LE(end + 8, bytes.size());
    std::memcpy(&length, &bytes[end], sizeof(length));
    end += 12 + length + 4;
  }
  ASSERT_LT(end, bytes.size());
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      << bytes.substr(0, end);
}

// The restore tells an uncompressed data file from a SNAPPY one by its
// first record header: one damaged there reads as a corrupt SNAPPY block,
// and the error says so instead of blaming a compression the file lacks.
TEST(CheckpointTest, ADamagedFirstHeaderOfAnUncompressedFileSaysHowItWasRead) {
  const std::string dir = TestDir("first_header");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 100), 1, /*snappy=*/false));
  const std::string data = CheckpointDataName(basename, 0, 1);
  std::fstream file(data, std::ios::binary | std::ios::in | std::ios::out);
  file.seekp(3);
  file.put('\x55');  // The length's fourth byte: the header's CRC fails.
  file.close();
  Contents restored;
  const Status status = Restore(basename, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), data)) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "so it was read as SNAPPY"))
      << status.ToString();
}

// A meta file cut at a record boundary loses whole table records; where the
// tables cut off were empty, entry counts and data sizes still agree, and
// only the record count the save wrote tells.
TEST(CheckpointTest, MetaFileCutAtARecordBoundaryIsDataLoss) {
  const std::string dir = TestDir("meta_cut");
  for (int nshards : {1, 2}) {
    const std::string basename = dir + "/t" + std::to_string(nshards);
    ASSERT_OK(Save(basename, MakeContents(1, 10), nshards));
    CutMetaFile(basename, nshards, 2);  // drops table "empty", 0 entries
    Contents restored;
    const Status status = Restore(basename, &restored);
    EXPECT_EQ(status.code(), StatusCode::kDataLoss) << nshards;
    EXPECT_TRUE(Contains(status.message(),
                         "holds 2 table records where its save wrote 3"))
        << status.ToString();
  }
  const std::string emptied = dir + "/emptied";
  ASSERT_OK(Save(emptied, MakeContents(1, 0), 1));
  std::ofstream(CheckpointMetaName(emptied, 0, 1), std::ios::trunc);
  Contents restored;
  const Status status = Restore(emptied, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "holds no table record"))
      << status.ToString();
}

TEST(CheckpointTest, MetaShardCopiedFromAnotherCheckpointIsRefused) {
  const std::string dir = TestDir("meta_copy");
  const std::string a = dir + "/a", b = dir + "/b";
  ASSERT_OK(Save(a, MakeContents(1, 10), 3));
  ASSERT_OK(Save(b, MakeContents(1, 10), 3));
  Copy(CheckpointMetaName(b, 2, 3), CheckpointMetaName(a, 2, 3));
  Contents restored;
  const Status status = Restore(a, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "mixes saves")) << status.message();
  // A meta file renamed to another shard's name.
  ASSERT_OK(Save(a, MakeContents(1, 10), 3));
  Copy(CheckpointMetaName(a, 0, 3), CheckpointMetaName(a, 1, 3));
  const Status renamed = Restore(a, &restored);
  EXPECT_EQ(renamed.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(renamed.message(), "was written as shard 0 of 3"))
      << renamed.message();
}

TEST(CheckpointTest, SaveWithAnotherShardCountSupersedesTheOldFiles) {
  const std::string dir = TestDir("recount");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 50), 4));
  std::vector<std::string> log;
  ASSERT_OK(Save(basename, MakeContents(2, 50), 2, true, &log));
  EXPECT_EQ(List(dir),
            (std::vector<std::string>{"t-00000-of-00002", "t-00001-of-00002",
                                      "t.meta-00000-of-00002",
                                      "t.meta-00001-of-00002"}));
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(2, 50));
}

// A save lists its folder twice (before writing, after renaming), and once
// more to read the time of a save of another shard count beside it: the
// folder of a job's every table and filter, on an object store, was listed
// four times a save (five beside another shard count).
TEST(CheckpointTest, ASaveListsItsFolderTwice) {
  const std::string dir = TestDir("listings");
  for (int other = 0; other < 3; ++other) {
    ASSERT_OK(
        Save(dir + "/other" + std::to_string(other), MakeContents(1, 5), 2));
  }
  ListingCountingFileSystem fs;
  for (int nshards : {2, 2, 3}) {  // the last one supersedes 2 shards
    fs.listings = 0;
    ASSERT_OK(SaveTo(&fs, dir + "/t", MakeContents(nshards, 50), nshards));
    EXPECT_EQ(fs.listings.load(), nshards == 3 ? 3 : 2) << nshards;
  }
  EXPECT_EQ(List(dir).size(), 3u * 4 + 6);
  Contents restored;
  ASSERT_OK(Restore(dir + "/t", &restored));
  EXPECT_EQ(restored, MakeContents(3, 50));
}

// Checkpoints of one folder (a resharded restore's ~100 of an asset folder)
// are read from one listing of it, as ReadCheckpointInfo reads each.
TEST(CheckpointTest, CheckpointsOfOneFolderAreReadFromOneListing) {
  const std::string dir = TestDir("infos");
  std::vector<std::string> basenames;
  for (int b = 0; b < 3; ++b) {
    basenames.push_back(dir + "/ps_" + std::to_string(b));
    ASSERT_OK(Save(basenames.back(), MakeContents(b, 20), b + 1));
  }
  ListingCountingFileSystem fs;
  std::vector<CheckpointInfo> infos;
  ASSERT_OK(ReadCheckpointInfos(&fs, basenames, true, {}, &infos));
  EXPECT_EQ(fs.listings.load(), 1);
  ASSERT_EQ(infos.size(), 3u);
  for (int b = 0; b < 3; ++b) {
    CheckpointInfo one;
    ASSERT_OK(ReadCheckpointInfo(&fs, basenames[b], true, {}, &one));
    EXPECT_EQ(infos[b].nshards, b + 1);
    EXPECT_EQ(infos[b].save_id, one.save_id);
    EXPECT_EQ(infos[b].PathsInRenameOrder(), one.PathsInRenameOrder());
  }
  // A second folder is listed once more; a folder that is not there fails
  // naming its basename.
  const std::string other = TestDir("infos_other") + "/ps_0";
  ASSERT_OK(Save(other, MakeContents(7, 20), 2));
  fs.listings = 0;
  ASSERT_OK(ReadCheckpointInfos(&fs, {basenames[0], other, basenames[1]}, true,
                                {}, &infos));
  EXPECT_EQ(fs.listings.load(), 2);
  EXPECT_EQ(infos[1].nshards, 2);
  const Status no_folder = ReadCheckpointInfos(
      &fs, {basenames[0], dir + "/gone/ps_0"}, true, {}, &infos);
  EXPECT_EQ(no_folder.code(), StatusCode::kNotFound) << no_folder.ToString();
  EXPECT_NE(no_folder.message().find("gone/ps_0"), std::string::npos)
      << no_folder.ToString();
  basenames.push_back(dir + "/ps_9");
  const Status missing = ReadCheckpointInfos(&fs, basenames, true, {}, &infos);
  EXPECT_EQ(missing.code(), StatusCode::kNotFound) << missing.ToString();
  EXPECT_NE(missing.message().find("ps_9"), std::string::npos)
      << missing.ToString();
}

// Copies the |nshards|-shard save at |from| to |to|'s names.
void CopySave(const std::string& from, const std::string& to, int nshards) {
  for (int s = 0; s < nshards; ++s) {
    Copy(CheckpointDataName(from, s, nshards),
         CheckpointDataName(to, s, nshards));
    Copy(CheckpointMetaName(from, s, nshards),
         CheckpointMetaName(to, s, nshards));
  }
}

// In |dir|, "t" holding a save of MakeContents(2, 50) in |new_nshards|
// shards beside the files of an older one, MakeContents(1, 50) in
// |old_nshards| (also at "old"), as a save killed before deleting the
// files it superseded leaves them.
void SaveBesideAnOlderSave(const std::string& dir, int old_nshards,
                           int new_nshards) {
  ASSERT_OK(Save(dir + "/old", MakeContents(1, 50), old_nshards));
  usleep(2000);
  ASSERT_OK(Save(dir + "/t", MakeContents(2, 50), new_nshards));
  CopySave(dir + "/old", dir + "/t", old_nshards);
}

// Killed after renaming every shard but before deleting the superseded
// files: both saves are complete; the newer is read.
TEST(CheckpointTest, TwoCompleteShardCountsReadTheNewerSave) {
  const std::string dir = TestDir("two_counts");
  const std::string basename = dir + "/t", old_copy = dir + "/old";
  ASSERT_NO_FATAL_FAILURE(SaveBesideAnOlderSave(dir, 4, 2));
  Contents restored;
  std::vector<std::string> log;
  ASSERT_OK(Restore(basename, &restored, nullptr, &log));
  EXPECT_EQ(restored, MakeContents(2, 50));
  ASSERT_FALSE(log.empty());
  EXPECT_TRUE(Contains(log.front(), "reading the newest, with 2 shards"))
      << log.front();
  // An incomplete set of another count (killed mid-rename) is ignored.
  ASSERT_OK(Save(basename, MakeContents(3, 50), 2));
  Copy(CheckpointDataName(old_copy, 0, 4), CheckpointDataName(basename, 0, 4));
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(3, 50));
}

// A save on a clock behind the last saver's (another host, an NTP step)
// whose deletion of the files it superseded failed: both saves stay whole,
// and readers choose by save time, which is past the older save's.
TEST(CheckpointTest, ASaveOnAClockBehindIsReadBeforeTheOlderSaveItLeft) {
  class UndeletableFileSystem : public PosixFileSystem {
   public:
    Status DeleteFile(const std::string& path) override {
      return InternalError("cannot delete " + path);
    }
  };
  const std::string basename = TestDir("clock_behind") + "/t";
  UndeletableFileSystem fs;
  const int64_t now = NowMicros();
  SaveOptions options;
  options.nshards = 4;
  options.now_micros = [now] { return now + 3600 * 1000000LL; };
  ASSERT_OK(SaveWith(&fs, basename, MakeContents(1, 50), options));
  options.nshards = 2;
  options.now_micros = [now] { return now; };
  ASSERT_OK(SaveWith(&fs, basename, MakeContents(2, 50), options));
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, /*need_data=*/true, {}, &info));
  EXPECT_EQ(info.nshards, 2);
  EXPECT_EQ(info.save_time_micros, now + 3600 * 1000000LL + 1);
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(2, 50));
}

// A newer save that lost a file since is not replaced by an older complete
// save of another shard count beside it (one killed before deleting the
// files it superseded, then damaged): that would restore older entries
// than the checkpoint's other state, with only a log line.
TEST(CheckpointTest, ANewerSaveThatLostAFileIsNotReplacedByAnOlderOne) {
  const std::string dir = TestDir("newer_lost");
  const std::string basename = dir + "/t", old_copy = dir + "/old";
  ASSERT_NO_FATAL_FAILURE(SaveBesideAnOlderSave(dir, 2, 4));
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(2, 50));
  for (const bool meta : {false, true}) {
    const std::string lost = meta ? CheckpointMetaName(basename, 3, 4)
                                  : CheckpointDataName(basename, 3, 4);
    ASSERT_EQ(unlink(lost.c_str()), 0);
    const Status status = Restore(basename, &restored);
    EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
    EXPECT_TRUE(Contains(status.message(), "lost " + lost))
        << status.ToString();
  }
  // The older save's files of the other count, partly deleted (a save
  // killed while deleting what it superseded), are ignored as before.
  ASSERT_OK(Save(basename, MakeContents(3, 50), 2));
  Copy(CheckpointMetaName(old_copy, 0, 2), CheckpointMetaName(basename, 0, 4));
  Copy(CheckpointDataName(old_copy, 0, 2), CheckpointDataName(basename, 0, 4));
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(3, 50));
}

// A file system on which the files that |unreachable| picks cannot be
// read (Unavailable, or |code|); with |vanish| they are deleted as they
// are asked for (a save renaming them meanwhile).
class UnreachableFiles : public PosixFileSystem {
 public:
  explicit UnreachableFiles(
      std::function<bool(const std::string& path)> unreachable,
      StatusCode code = StatusCode::kUnavailable, bool vanish = false)
      : unreachable_(std::move(unreachable)), code_(code), vanish_(vanish) {}

  Status NewRandomAccessFile(const std::string& path,
                             std::unique_ptr<RandomAccessFile>* file) override {
    if (unreachable_(path)) return Unreachable(path);
    return PosixFileSystem::NewRandomAccessFile(path, file);
  }
  Status GetFileSize(const std::string& path, uint64_t* size) override {
    if (unreachable_(path)) return Unreachable(path);
    return PosixFileSystem::GetFileSize(path, size);
  }

 private:
  Status Unreachable(const std::string& path) {
    if (vanish_) (void)PosixFileSystem::DeleteFile(path);
    return Status(code_, "injected: cannot reach " + path);
  }

  const std::function<bool(const std::string& path)> unreachable_;
  const StatusCode code_;
  const bool vanish_;
};

// The files of |nshards|-shard saves.
std::function<bool(const std::string&)> ShardCount(int nshards) {
  return [nshards](const std::string& path) {
    return Contains(path, "-of-0000" + std::to_string(nshards));
  };
}

// Beside files of another shard count, a storage error reading them keeps
// its code: it read as DataLoss (which a session does not retry, and which
// reads past the final names as damaged), or, on the files of a newer
// incomplete save, as "not newer", restoring the older save silently.
TEST(CheckpointTest, AStorageErrorBesideAnotherShardCountKeepsItsCode) {
  const std::string dir = TestDir("two_counts_unreachable");
  ASSERT_NO_FATAL_FAILURE(SaveBesideAnOlderSave(dir, 4, 2));
  UnreachableFiles old_count(ShardCount(4));
  CheckpointInfo info;
  Status status = ReadCheckpointInfo(&old_count, dir + "/t",
                                     /*need_data=*/true, {}, &info);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "cannot read the 4-shard files"))
      << status.ToString();

  const std::string lost_dir = TestDir("newer_lost_unreachable");
  ASSERT_NO_FATAL_FAILURE(SaveBesideAnOlderSave(lost_dir, 2, 4));
  const std::string lost = CheckpointDataName(lost_dir + "/t", 3, 4);
  ASSERT_EQ(unlink(lost.c_str()), 0);
  UnreachableFiles newer_count(ShardCount(4));
  status = ReadCheckpointInfo(&newer_count, lost_dir + "/t",
                              /*need_data=*/true, {}, &info);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
}

// A file the listing named and that is gone when it is opened (a save
// renamed or deleted it meanwhile, a stale listing) is Aborted, naming it;
// one still listed that cannot be opened (a dangling link) is Internal:
// not a missing file, read past as damage (an interrupted save's
// temporaries skipped, the newer incomplete count read as "not newer") for
// an older save.
TEST(CheckpointTest, AListedFileThatWentIsAbortedNotDamage) {
  const std::string dir = TestDir("listed_and_gone");
  ASSERT_NO_FATAL_FAILURE(SaveBesideAnOlderSave(dir, 2, 4));
  const std::string lost = CheckpointDataName(dir + "/t", 3, 4);
  ASSERT_EQ(unlink(lost.c_str()), 0);
  UnreachableFiles gone(ShardCount(4), StatusCode::kNotFound, /*vanish=*/true);
  CheckpointInfo info;
  Status status = ReadCheckpointInfo(&gone, dir + "/t", /*need_data=*/true,
                                     {}, &info);
  EXPECT_EQ(status.code(), StatusCode::kAborted) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "was listed and is gone"))
      << status.ToString();

  // The final names' meta file, gone as the restore opens it.
  const std::string basename = TestDir("listed_and_gone_final") + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 20), 2));
  const std::string meta = CheckpointMetaName(basename, 1, 2);
  const auto is_meta = [&meta](const std::string& path) {
    return path == meta;
  };
  UnreachableFiles dangling(is_meta, StatusCode::kNotFound);
  status = ReadCheckpointInfo(&dangling, basename, /*need_data=*/true, {},
                              &info);
  EXPECT_EQ(status.code(), StatusCode::kInternal) << status.ToString();
  EXPECT_TRUE(Contains(status.message(),
                       meta + " is listed and cannot be read (injected"))
      << status.ToString();
  UnreachableFiles meta_gone(is_meta, StatusCode::kNotFound, /*vanish=*/true);
  status = ReadCheckpointInfo(&meta_gone, basename, /*need_data=*/true, {},
                              &info);
  EXPECT_EQ(status.code(), StatusCode::kAborted) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), meta + " was listed and is gone"))
      << status.ToString();
}

// Records the renames, folder syncs and deletions of a save, in order.
class RecordingFileSystem : public PosixFileSystem {
 public:
  Status RenameFile(const std::string& from, const std::string& to) override {
    if (!Contains(from, ".partial")) events.push_back("rename " + to);
    return PosixFileSystem::RenameFile(from, to);
  }
  Status SyncDirectory(const std::string& dir) override {
    events.push_back("sync " + dir);
    return PosixFileSystem::SyncDirectory(dir);
  }
  Status DeleteFile(const std::string& path) override {
    events.push_back("delete " + path);
    return PosixFileSystem::DeleteFile(path);
  }
  // The paths deleted, in order.
  std::vector<std::string> Deleted() const {
    std::vector<std::string> paths;
    for (const std::string& event : events) {
      if (event.rfind("delete ", 0) == 0) paths.push_back(event.substr(7));
    }
    return paths;
  }

  std::vector<std::string> events;
};

// An interrupted save's temporaries are deleted meta file first: a kill
// between the two left a meta temporary whose data temporary was gone,
// which a reader pairs with the final data file (data files were deleted
// first, in name order).
TEST(CheckpointTest, TemporariesAreDeletedMetaFilesFirst) {
  const std::string dir = TestDir("delete_order");
  const std::string basename = dir + "/t";
  // Killed while writing (5 of its 6 files complete): the next save
  // deletes its temporaries once it is done.
  DyingFileSystem dying(/*renames=*/5, /*new_files=*/-1);
  ASSERT_FALSE(SaveTo(&dying, basename, MakeContents(1, 30), 3).ok());
  ASSERT_TRUE(dying.dead());
  std::vector<std::string> left;
  for (const std::string& name : List(dir)) {
    if (Contains(name, "-tmp-")) left.push_back(dir + "/" + name);
  }
  ASSERT_GE(left.size(), 5u);
  RecordingFileSystem recording;
  ASSERT_OK(SaveTo(&recording, basename, MakeContents(2, 30), 3));
  const std::vector<std::string> deleted = recording.Deleted();
  const auto deleted_at = [&](const std::string& path) {
    return std::find(deleted.begin(), deleted.end(), path) - deleted.begin();
  };
  int pairs = 0;
  for (const std::string& data : left) {
    if (Contains(data, ".meta-")) continue;
    const std::string meta =
        dir + "/t.meta-" + data.substr(dir.size() + std::string("/t-").size());
    EXPECT_LT(deleted_at(data), static_cast<int64_t>(deleted.size()))
        << data << " was not deleted";
    if (std::find(left.begin(), left.end(), meta) == left.end()) continue;
    ++pairs;
    EXPECT_LT(deleted_at(meta), deleted_at(data)) << data
                                                  << " before its meta file";
  }
  EXPECT_GE(pairs, 2);
}

// The end of a save deletes another shard count's final files and the
// temporaries left in one pass: every meta file, of either kind, before
// any data file.
TEST(CheckpointTest, OtherCountsAndTemporariesGoMetaFilesFirst) {
  const std::string dir = TestDir("delete_order_mixed");
  const std::string basename = dir + "/t";
  // A 2-shard save that lost a meta file (no whole save: the next save
  // keeps the temporaries while it writes), then a 3-shard save killed
  // while writing.
  ASSERT_OK(Save(basename, MakeContents(1, 30), 2));
  ASSERT_EQ(std::remove(CheckpointMetaName(basename, 1, 2).c_str()), 0);
  DyingFileSystem dying(/*renames=*/5, /*new_files=*/-1);
  ASSERT_FALSE(SaveTo(&dying, basename, MakeContents(2, 30), 3).ok());
  ASSERT_TRUE(dying.dead());
  RecordingFileSystem recording;
  ASSERT_OK(SaveTo(&recording, basename, MakeContents(3, 30), 4));
  const std::vector<std::string> deleted = recording.Deleted();
  int64_t last_meta = -1, first_data = -1, temporaries = 0, finals = 0;
  for (size_t i = 0; i < deleted.size(); ++i) {
    const std::string& path = deleted[i];
    (Contains(path, "-tmp-") ? temporaries : finals) += 1;
    if (Contains(path, ".meta-")) {
      last_meta = static_cast<int64_t>(i);
    } else if (first_data < 0) {
      first_data = static_cast<int64_t>(i);
    }
  }
  EXPECT_GE(temporaries, 5);
  EXPECT_EQ(finals, 3);  // the 2-shard save's files left
  EXPECT_LT(last_meta, first_data);
  EXPECT_EQ(List(dir).size(), 8u);
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(3, 30));
}

bool AnyContains(const std::vector<std::string>& lines,
                 const std::string& part) {
  for (const std::string& line : lines) {
    if (Contains(line, part)) return true;
  }
  return false;
}

// A save killed after writing its shards, before or while renaming them,
// is read whole through its temporaries: nothing of it is lost, and the
// save it was replacing is not mixed in. The next save finishes its
// renames before anything else, so a kill during that save loses nothing
// either.
TEST(CheckpointTest, SaveKilledWhileRenamingIsReadWholeAndFinished) {
  const std::string dir = TestDir("killed_renaming");
  const std::string basename = dir + "/t";
  for (const int old_nshards : {3, 5}) {
    for (int renames = 0; renames < 6; ++renames) {
      SCOPED_TRACE("old shards " + std::to_string(old_nshards) + ", killed after " +
                   std::to_string(renames) + " renames");
      ASSERT_OK(Save(basename, MakeContents(1, 30), old_nshards));
      // Each file is renamed from ".partial" once written (6 renames) before
      // the renames to final names.
      DyingFileSystem dying(6 + renames, /*new_files=*/-1);
      ASSERT_FALSE(SaveTo(&dying, basename, MakeContents(2, 30), 3).ok());
      ASSERT_TRUE(dying.dead());
      Contents restored;
      std::vector<std::string> log;
      const Status status = Restore(basename, &restored, nullptr, &log);
      ASSERT_OK(status);
      EXPECT_EQ(restored, MakeContents(2, 30));
      EXPECT_TRUE(AnyContains(
          log, renames == 0 ? "interrupted after writing its 3 shards"
                            : "interrupted while giving its 3 shards"));

      // The next save is killed at its first new file: after it finished
      // the renames of the save it found, before it wrote anything.
      DyingFileSystem dies_writing(/*renames=*/-1, /*new_files=*/0);
      log.clear();
      ASSERT_FALSE(
          SaveTo(&dies_writing, basename, MakeContents(3, 30), 2, true, &log)
              .ok());
      EXPECT_TRUE(AnyContains(log, "finishing a save interrupted"));
      std::vector<std::string> expected_files;
      for (int s = 0; s < 3; ++s) {
        expected_files.push_back("t-0000" + std::to_string(s) + "-of-00003");
      }
      for (int s = 0; s < 3; ++s) {
        expected_files.push_back("t.meta-0000" + std::to_string(s) +
                                 "-of-00003");
      }
      // The files of the 5-shard save it superseded are deleted too.
      EXPECT_EQ(List(dir), expected_files);
      log.clear();
      ASSERT_OK(Restore(basename, &restored, nullptr, &log));
      EXPECT_EQ(restored, MakeContents(2, 30));
      ASSERT_OK(Save(basename, MakeContents(4, 30), 3));
    }
  }
}

// A save killed while writing its shards left partial temporaries: the
// previous save is read, and the next save deletes them.
TEST(CheckpointTest, SaveKilledWhileWritingLeavesThePreviousSave) {
  const std::string dir = TestDir("killed_writing");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 30), 3));
  for (int point = 0; point < 6; ++point) {
    // Killed at a new file, or in the middle of writing one (half of the
    // append written: a file that ends at a record boundary).
    for (const bool mid_file : {false, true}) {
      DyingFileSystem dying(/*renames=*/-1, mid_file ? -1 : point,
                            mid_file ? point : -1);
      ASSERT_FALSE(SaveTo(&dying, basename, MakeContents(2, 30), 3).ok());
      Contents restored;
      ASSERT_OK(Restore(basename, &restored));
      EXPECT_EQ(restored, MakeContents(1, 30))
          << "killed at " << (mid_file ? "append " : "new file ") << point;
    }
  }
  ASSERT_OK(Save(basename, MakeContents(3, 30), 3));
  for (const std::string& name : List(dir)) {
    EXPECT_FALSE(Contains(name, "-tmp-")) << name;
  }
}

// A rename to a final name that fails leaves the temporaries that complete
// the save: after others succeeded, the final names mix it with the
// previous one; a failed first one may have deleted its target (TF's HDFS
// rename deletes, then renames).
TEST(CheckpointTest, FailedRenameKeepsWhatCompletesTheSave) {
  const std::string dir = TestDir("failed_rename");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 30), 3));
  FailingFileSystem fails_third;
  fails_third.fail_renames_at = 6 + 3;  // after 6 ".partial" renames
  const Status status = SaveTo(&fails_third, basename, MakeContents(2, 30), 3);
  EXPECT_TRUE(Contains(status.message(), "failed while giving its shards"))
      << status.ToString();
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(2, 30));

  // Finishing save 2's 3 renames left, 6 ".partial" renames, then the
  // first rename to a final name.
  FailingFileSystem fails_first;
  fails_first.fail_renames_at = 3 + 6;
  fails_first.delete_target_on_failed_rename = true;
  EXPECT_EQ(SaveTo(&fails_first, basename, MakeContents(3, 30), 3).code(),
            StatusCode::kInternal);
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(3, 30));
  // The next save finishes save 3's renames and leaves no temporary.
  ASSERT_OK(Save(basename, MakeContents(4, 30), 3));
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(4, 30));
  for (const std::string& name : List(dir)) {
    EXPECT_FALSE(Contains(name, "-tmp-")) << name;
  }
}

// Fails every read of a file, as an unreachable file system would.
class UnreadableFileSystem : public PosixFileSystem {
 public:
  Status NewRandomAccessFile(const std::string& path,
                             std::unique_ptr<RandomAccessFile>* file) override {
    return InternalError("injected: cannot read " + path);
  }
};

// A save that cannot read the files an interrupted save left fails rather
// than delete what may be the only whole save.
TEST(CheckpointTest, SaveThatCannotReadAnInterruptedSaveFails) {
  const std::string dir = TestDir("unreadable");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 30), 3));
  DyingFileSystem dying(6 + 2, /*new_files=*/-1);  // after 2 final renames
  ASSERT_FALSE(SaveTo(&dying, basename, MakeContents(2, 30), 3).ok());
  UnreadableFileSystem unreadable;
  const Status status = SaveTo(&unreadable, basename, MakeContents(3, 30), 3);
  EXPECT_EQ(status.code(), StatusCode::kInternal) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "cannot read " + basename))
      << status.ToString();
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(2, 30));
}

TEST(CheckpointTest, NextSaveDeletesTemporaryFilesOfInterruptedSaves) {
  const std::string dir = TestDir("stale_tmp");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 5), 1));
  for (const char* stale :
       {"t-00000-of-00001-tmp-0123", "t.meta-00003-of-00007-tmp-abcd"}) {
    std::ofstream(dir + "/" + stale) << "partial";
  }
  std::ofstream(dir + "/t2-00000-of-00001-tmp-1") << "another basename's";
  std::ofstream(dir + "/unrelated") << "x";
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));  // readers ignore them
  std::vector<std::string> log;
  ASSERT_OK(Save(basename, MakeContents(2, 5), 1, true, &log));
  EXPECT_EQ(List(dir), (std::vector<std::string>{
                           "t-00000-of-00001", "t.meta-00000-of-00001",
                           "t2-00000-of-00001-tmp-1", "unrelated"}));
}

// The first save at a basename killed while writing left temporaries, one
// whole and one partial, and no save to tell them by: the next save keeps
// them while it writes, and deletes them once it is complete.
TEST(CheckpointTest, FirstSaveAtABasenameDeletesAKilledSavesTemporaries) {
  const std::string dir = TestDir("first_save_tmp");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 5), 2));
  const std::string whole = "t-00000-of-00002-tmp-0123456789abcdef";
  const std::string partial =
      "t.meta-00001-of-00002-tmp-00000000000000ff.partial";
  ASSERT_EQ(std::rename((dir + "/t-00000-of-00002").c_str(),
                        (dir + "/" + whole).c_str()), 0);
  std::ofstream(dir + "/" + partial) << "cut";
  for (const char* name : {"t-00001-of-00002", "t.meta-00000-of-00002",
                           "t.meta-00001-of-00002"}) {
    ASSERT_EQ(std::remove((dir + "/" + name).c_str()), 0);
  }
  Contents restored;
  EXPECT_EQ(Restore(basename, &restored).code(), StatusCode::kNotFound);
  ASSERT_OK(Save(basename, MakeContents(2, 5), 1));
  EXPECT_EQ(List(dir), (std::vector<std::string>{"t-00000-of-00001",
                                                 "t.meta-00000-of-00001"}));
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(2, 5));
}

// Opening a file costs a round trip on remote file systems: a restore
// opens each of the save's files once, telling a data file's format from
// the bytes its reader reads.
TEST(CheckpointTest, RestoreOpensEachFileOnce) {
  class CountingFileSystem : public PosixFileSystem {
   public:
    Status NewRandomAccessFile(
        const std::string& path,
        std::unique_ptr<RandomAccessFile>* file) override {
      ++opens[path];
      return PosixFileSystem::NewRandomAccessFile(path, file);
    }
    std::map<std::string, int> opens;
  };
  for (const bool snappy : {false, true}) {
    SCOPED_TRACE(snappy ? "snappy" : "uncompressed");
    const std::string dir = TestDir(snappy ? "opens_snappy" : "opens_plain");
    const std::string basename = dir + "/t";
    ASSERT_OK(Save(basename, MakeContents(1, 30), 3, snappy));
    CountingFileSystem counting;
    Contents restored;
    const Status status = RestoreFrom(&counting, basename, &restored);
    ASSERT_OK(status);
    EXPECT_EQ(restored, MakeContents(1, 30));
    std::map<std::string, int> expected;
    for (const std::string& name : List(dir)) expected[dir + "/" + name] = 1;
    EXPECT_EQ(counting.opens, expected);
  }
}

// A power loss must not keep the deletion of the superseded files and lose
// the renames that superseded them: the folder is synced between the two.
TEST(CheckpointTest, SaveSyncsItsFolderAfterRenamingBeforeDeleting) {
  const std::string dir = TestDir("sync_order");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 30), 2));
  RecordingFileSystem recording;
  ASSERT_OK(SaveTo(&recording, basename, MakeContents(2, 30), 3));
  const std::vector<std::string>& events = recording.events;
  const auto sync = std::find(events.begin(), events.end(), "sync " + dir);
  ASSERT_NE(sync, events.end());
  EXPECT_EQ(std::count(events.begin(), sync, std::string("rename ") +
                                                 basename +
                                                 "-00002-of-00003"),
            1);
  EXPECT_EQ(std::count_if(events.begin(), sync,
                          [](const std::string& e) {
                            return Contains(e, "rename ");
                          }),
            6);
  EXPECT_EQ(std::count_if(events.begin(), sync,
                          [](const std::string& e) {
                            return Contains(e, "delete ");
                          }),
            0);
  EXPECT_EQ(std::count_if(sync, events.end(),
                          [](const std::string& e) {
                            return Contains(e, "delete ");
                          }),
            4);  // 2 data and 2 meta files of the 2-shard save
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(2, 30));
}

// Where the folder cannot be synced the save fails and keeps the files its
// renames superseded.
class UnsyncableFileSystem : public PosixFileSystem {
 public:
  Status SyncDirectory(const std::string& dir) override {
    return InternalError("injected: cannot sync " + dir);
  }
};

TEST(CheckpointTest, SaveThatCannotSyncItsFolderFailsAndDeletesNothing) {
  const std::string dir = TestDir("unsyncable");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 30), 2));
  UnsyncableFileSystem unsyncable;
  const Status status = SaveTo(&unsyncable, basename, MakeContents(2, 30), 3);
  EXPECT_EQ(status.code(), StatusCode::kInternal) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), "cannot make the renames in " + dir))
      << status.ToString();
  EXPECT_EQ(List(dir).size(), 10u);  // both saves' data and meta files
}

TEST(CheckpointTest, SyncLocalFailsNamingAMissingPath) {
  const std::string missing = TestDir("sync_missing") + "/no/such";
  for (const Status& status :
       {SyncLocalFile(missing), SyncLocalDirectory(missing)}) {
    EXPECT_EQ(status.code(), StatusCode::kNotFound) << status.ToString();
    EXPECT_TRUE(Contains(status.message(), missing)) << status.ToString();
  }
}

TEST(CheckpointTest, ShardCountIsBounded) {
  const std::string basename = TestDir("bounds") + "/t";
  for (int nshards : {0, -1, kMaxCheckpointShards + 1}) {
    const Status status = Save(basename, MakeContents(1, 1), nshards);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << nshards;
    EXPECT_TRUE(Contains(status.message(), "nshards must be in [1, 99999]"));
  }
}

TEST(CheckpointTest, LongSavesAndRestoresLogHowFarTheyGot) {
  // Shards written or read in parallel finish together: the lines per
  // shard alone would come at the end. Every |progress_every| (here: at
  // every counted batch of records), a line of where the whole stands.
  const std::string dir = TestDir("progress");
  const std::string basename = dir + "/t";
  const Contents contents = MakeContents(1, 10000);
  std::vector<std::string> log;
  SaveOptions options;
  options.nshards = 2;
  options.log = [&log](const std::string& line) { log.push_back(line); };
  options.progress_every = std::chrono::milliseconds(0);
  // The tables' sizes, as the save op gives them.
  options.expected_entries = 20000;
  PosixFileSystem fs;
  const TableSaver write_contents =
      [&](int table, int shard, int n,
          const std::function<Status(std::string_view)>& write) {
        const auto it = contents.find(table);
        for (size_t i = shard; i < it->second.size(); i += n) {
          MONOLITH_RETURN_IF_ERROR(write(it->second[i]));
        }
        return Status::OK();
      };
  ASSERT_OK(SaveCheckpoint(&fs, basename, kTables, write_contents, options));
  // 20,000 records in batches of 4,096: 4 whole batches and 2 shards' rests.
  std::vector<std::string> saving;
  for (const std::string& line : log) {
    if (Contains(line, " so far (")) saving.push_back(line);
  }
  ASSERT_EQ(saving.size(), 6u) << ::testing::PrintToString(log);
  EXPECT_EQ(saving[0].rfind("Saved 4096 of 20000 entries (20%) of " + basename +
                                " so far (0 of 2 shards done, ",
                            0),
            0u)
      << saving[0];
  EXPECT_TRUE(Contains(saving.back(), "Saved 20000 of 20000 entries (100%)"))
      << saving.back();

  log.clear();
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, /*need_data=*/true, {}, &info));
  ASSERT_OK(RestoreCheckpoint(
      &fs, info, [](int, int, std::string_view) { return Status::OK(); },
      SerialFor, [&log](const std::string& line) { log.push_back(line); },
      "Restored", std::chrono::milliseconds(0)));
  std::vector<std::string> restoring;
  for (const std::string& line : log) {
    if (Contains(line, " so far (")) restoring.push_back(line);
  }
  ASSERT_FALSE(restoring.empty()) << ::testing::PrintToString(log);
  // The total is known from the meta files.
  EXPECT_EQ(restoring[0].rfind("Restored 4096 of 20000 entries (20%) of " +
                                   basename + " so far (0 of 2 shards done, ",
                               0),
            0u)
      << restoring[0];
  EXPECT_TRUE(Contains(restoring.back(), "Restored 20000 of 20000 entries "
                                         "(100%)"))
      << restoring.back();

  // An estimate short of the records written (entries inserted meanwhile)
  // gives way to the count.
  log.clear();
  options.expected_entries = 10000;
  ASSERT_OK(SaveCheckpoint(&fs, basename, kTables, write_contents, options));
  std::string last_so_far;
  for (const std::string& line : log) {
    if (Contains(line, " so far (")) last_so_far = line;
  }
  EXPECT_TRUE(Contains(last_so_far, "Saved 20000 of 20000 entries (100%)"))
      << ::testing::PrintToString(log);

  // At the default period, a quick save logs no such line.
  log.clear();
  ASSERT_OK(Save(basename, contents, 2, true, &log));
  for (const std::string& line : log) {
    EXPECT_FALSE(Contains(line, " so far (")) << line;
  }
}

TEST(CheckpointTest, FailedSaveLeavesThePreviousOneIntact) {
  const std::string dir = TestDir("failed_save");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 20), 3));
  SaveOptions options;
  options.nshards = 3;
  PosixFileSystem fs;
  const Status status = SaveCheckpoint(
      &fs, basename, kTables,
      [](int table, int shard, int, const std::function<Status(std::string_view)>& write) {
        if (shard == 2) return InternalError("disk on fire");
        return write("x");
      },
      options);
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  // Which checkpoint, and in what state it is left.
  EXPECT_EQ(status.message().rfind("save ", 0), 0u) << status.message();
  EXPECT_TRUE(Contains(status.message(),
                       " of " + basename + " failed writing its shards (the "
                       "checkpoint at that basename is as it was; its "
                       "temporaries are deleted, or by the next save): disk "
                       "on fire"))
      << status.message();
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(1, 20));
  for (const std::string& name : List(dir)) {
    EXPECT_FALSE(Contains(name, "-tmp-")) << name;
  }
}

TEST(CheckpointTest, CancelledSaveAndRestoreStopAndSaySo) {
  // A caller that gave up (a deadline, a closed session) stops a save or
  // restore at the next batch of records, not at its end.
  const std::string dir = TestDir("cancelled");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 20), 2));
  const Contents contents = MakeContents(2, 20000);
  int asked = 0;
  int64_t written = 0;
  SaveOptions options;
  options.nshards = 2;
  options.cancelled = [&asked] { return ++asked == 2; };
  PosixFileSystem fs;
  Status status = SaveCheckpoint(
      &fs, basename, kTables,
      [&](int table, int shard, int n,
          const std::function<Status(std::string_view)>& write) {
        const auto it = contents.find(table);
        for (size_t i = shard; i < it->second.size(); i += n) {
          MONOLITH_RETURN_IF_ERROR(write(it->second[i]));
          ++written;
        }
        return Status::OK();
      },
      options);
  EXPECT_EQ(status.code(), StatusCode::kCancelled) << status.ToString();
  EXPECT_TRUE(Contains(status.message(),
                       "failed writing its shards (the checkpoint at that "
                       "basename is as it was; its temporaries are deleted, "
                       "or by the next save): Saved 8192 entries of " +
                           basename + " when it was cancelled (its caller "
                           "gave up: a deadline passed or the session "
                           "closed)"))
      << status.message();
  // Stopped at the second batch, not after the 40,000 records.
  EXPECT_EQ(written, 8191);
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(1, 20));
  for (const std::string& name : List(dir)) {
    EXPECT_FALSE(Contains(name, "-tmp-")) << name;
  }

  ASSERT_OK(Save(basename, contents, 1));
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, /*need_data=*/true, {}, &info));
  int64_t consumed = 0;
  status = RestoreCheckpoint(
      &fs, info,
      [&consumed](int, int, std::string_view) {
        ++consumed;
        return Status::OK();
      },
      SerialFor, {}, "Restored", kProgressEvery, [] { return true; });
  EXPECT_EQ(status.code(), StatusCode::kCancelled) << status.ToString();
  EXPECT_EQ(status.message(), "Restored 4096 entries of " + basename +
                                  " when it was cancelled (its caller gave "
                                  "up: a deadline passed or the session "
                                  "closed)");
  EXPECT_EQ(consumed, 4096);
}

// Writes an original-format checkpoint (no identity) of table "user" with
// one entry "entry<s>" per shard s of |nshards|.
void WriteWithoutIdentity(const std::string& basename, int nshards = 2) {
  PosixFileSystem fs;
  for (int s = 0; s < nshards; ++s) {
    std::unique_ptr<WritableFile> data, meta;
    ASSERT_OK(
        fs.NewWritableFile(CheckpointDataName(basename, s, nshards), &data));
    ASSERT_OK(
        fs.NewWritableFile(CheckpointMetaName(basename, s, nshards), &meta));
    RecordFileWriter data_writer(data.get(), true), meta_writer(meta.get(), false);
    ASSERT_OK(data_writer.Write("entry" + std::to_string(s)));
    MultiHashTableMetadata record;
    record.set_table_name("user");
    record.set_num_entries(1);
    ASSERT_OK(meta_writer.Write(record.SerializeAsString()));
    ASSERT_TRUE(data_writer.Close().ok() && data->Close().ok());
    ASSERT_TRUE(meta_writer.Close().ok() && meta->Close().ok());
  }
}

// Meta files without identity, as the original writes them, still restore.
TEST(CheckpointTest, ReadsCheckpointsWithoutIdentity) {
  const std::string basename = TestDir("legacy") + "/t";
  WriteWithoutIdentity(basename);
  Contents restored;
  CheckpointInfo info;
  ASSERT_OK(Restore(basename, &restored, &info));
  EXPECT_FALSE(info.has_identity);
  EXPECT_EQ(restored[0], (std::vector<std::string>{"entry0", "entry1"}));
}

// A data file with a record past those its meta file lists, and a meta
// record that does not parse: DataLoss naming the file, the record and its
// byte.
TEST(CheckpointTest, ExtraEntriesAndBadMetaRecordsNameTheRecord) {
  const std::string basename = TestDir("extra_entry") + "/t";
  PosixFileSystem fs;
  const auto write = [&](const std::vector<std::string>& entries,
                         const std::string& meta_record) {
    std::unique_ptr<WritableFile> data, meta;
    ASSERT_OK(fs.NewWritableFile(CheckpointDataName(basename, 0, 1), &data));
    ASSERT_OK(fs.NewWritableFile(CheckpointMetaName(basename, 0, 1), &meta));
    RecordFileWriter data_writer(data.get(), false),
        meta_writer(meta.get(), false);
    for (const std::string& entry : entries) {
      ASSERT_OK(data_writer.Write(entry));
    }
    ASSERT_OK(meta_writer.Write(meta_record));
    ASSERT_TRUE(data_writer.Close().ok() && data->Close().ok());
    ASSERT_TRUE(meta_writer.Close().ok() && meta->Close().ok());
  };
  MultiHashTableMetadata one;
  one.set_table_name("user");
  one.set_num_entries(1);
  ASSERT_NO_FATAL_FAILURE(write({"entry0", "entry1"}, one.SerializeAsString()));
  Contents restored;
  Status status = Restore(basename, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
  // Record 0 takes 12 header bytes, 6 of data and a 4-byte CRC.
  EXPECT_TRUE(Contains(status.message(),
                       CheckpointDataName(basename, 0, 1) +
                           " has more entries than its meta file lists (1): "
                           "record 1 (at byte 22) is past them"))
      << status.ToString();
  ASSERT_NO_FATAL_FAILURE(write({"entry0"}, "\xff"));
  status = Restore(basename, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss) << status.ToString();
  EXPECT_TRUE(Contains(status.message(), CheckpointMetaName(basename, 0, 1) +
                                             ": record 0 (at byte 0) is not a "
                                             "MultiHashTableMetadata"))
      << status.ToString();
}

// A save's basename must not name another basename's files: "x.meta" would
// write (and its clean-up delete) the meta files of a checkpoint at "x".
TEST(CheckpointTest, ASaveAtABasenameNamingOthersFilesIsRefused) {
  const std::string dir = TestDir("basename_collisions");
  ASSERT_OK(Save(dir + "/x", MakeContents(1, 20), 2));
  const std::vector<std::string> before = List(dir);
  for (const auto& [basename, problem] :
       std::vector<std::pair<std::string, std::string>>{
           {dir + "/x.meta", "ends with .meta: its files would be named as "
                             "the meta files of a table checkpoint at " +
                                 dir + "/x"},
           {dir + "/x-00000-of-00002", "holds a shard suffix"},
           {dir + "/", "names no file"}}) {
    const Status s = Save(basename, MakeContents(2, 20), 2);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "checkpoint basename \"" + basename +
                                          "\" " + problem))
        << s.ToString();
  }
  EXPECT_EQ(List(dir), before);
  Contents restored;
  ASSERT_OK(Restore(dir + "/x", &restored));
  EXPECT_EQ(restored, MakeContents(1, 20));
}

// Two complete saves of the original with two shard counts (its save with
// another count leaves the old files): nothing tells which is newer.
TEST(CheckpointTest, TwoOfTheOriginalsSavesOfTwoShardCountsAreRefused) {
  const std::string basename = TestDir("legacy_two_counts") + "/t";
  WriteWithoutIdentity(basename, 2);
  WriteWithoutIdentity(basename, 3);
  Contents restored;
  CheckpointInfo info;
  const Status s = Restore(basename, &restored, &info);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "mixes shard counts 2 and 3 and its "
                                    "saves carry no save time to choose by"))
      << s.ToString();
}

// The first save over the original's checkpoint with another shard count,
// killed before deleting the original's files: ours is the newer one.
TEST(CheckpointTest, OursIsReadBesideACompleteSaveOfTheOriginal) {
  const std::string dir = TestDir("legacy_beside");
  const std::string basename = dir + "/t";
  WriteWithoutIdentity(basename);
  UnsyncableFileSystem unsyncable;  // fails after renaming, deletes nothing
  ASSERT_FALSE(SaveTo(&unsyncable, basename, MakeContents(2, 30), 3).ok());
  ASSERT_EQ(List(dir).size(), 4u + 6u);
  Contents restored;
  CheckpointInfo info;
  std::vector<std::string> log;
  ASSERT_OK(Restore(basename, &restored, &info, &log));
  EXPECT_TRUE(info.has_identity);
  EXPECT_EQ(info.nshards, 3);
  EXPECT_EQ(restored, MakeContents(2, 30));
  EXPECT_TRUE(std::any_of(log.begin(), log.end(), [](const std::string& l) {
    return Contains(l, "without a save identity are the original's");
  }));
}

// Our save over the original's checkpoint (same shard count), killed after
// writing its files and before its first rename to a final name: ours is
// the newer one, read through its temporaries.
TEST(CheckpointTest, OursKilledBeforeRenamingBeatsTheOriginalsFiles) {
  const std::string basename = TestDir("legacy_killed") + "/t";
  WriteWithoutIdentity(basename);
  DyingFileSystem dying(/*renames=*/4, /*new_files=*/-1);
  ASSERT_FALSE(SaveTo(&dying, basename, MakeContents(2, 30), 2).ok());
  ASSERT_TRUE(dying.dead());
  Contents restored;
  const Status status = Restore(basename, &restored);
  ASSERT_OK(status);
  EXPECT_EQ(restored, MakeContents(2, 30));
}

// A file system that cannot reach the final names (a storage outage) while
// an older interrupted save's temporaries are there: the restore fails with
// the storage error instead of reading the older save.
TEST(CheckpointTest, AStorageErrorOnTheFinalNamesIsNotHiddenByTemporaries) {
  const std::string dir = TestDir("unreachable_final");
  const std::string basename = dir + "/t";
  DyingFileSystem dying(/*renames=*/6, /*new_files=*/-1);
  ASSERT_FALSE(SaveTo(&dying, basename, MakeContents(1, 30), 3).ok());
  ASSERT_TRUE(dying.dead());
  // The newer save's files beside the temporaries, by hand (a save would
  // finish the interrupted one's renames first).
  const std::string newer = TestDir("unreachable_final_newer") + "/t";
  ASSERT_OK(Save(newer, MakeContents(2, 30), 3));
  for (int s = 0; s < 3; ++s) {
    Copy(CheckpointDataName(newer, s, 3), CheckpointDataName(basename, s, 3));
    Copy(CheckpointMetaName(newer, s, 3), CheckpointMetaName(basename, s, 3));
  }
  UnreachableFiles unreachable(
      [](const std::string& path) { return !Contains(path, "-tmp-"); });
  CheckpointInfo info;
  const Status status =
      ReadCheckpointInfo(&unreachable, basename, /*need_data=*/true, {}, &info);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable) << status.ToString();
  Contents restored;
  ASSERT_OK(Restore(basename, &restored));
  EXPECT_EQ(restored, MakeContents(2, 30));
}

// Rewrites the meta file at |meta_path| with |change| applied to its
// records.
void RewriteMeta(
    const std::string& meta_path,
    const std::function<void(std::vector<MultiHashTableMetadata>*)>& change) {
  PosixFileSystem fs;
  std::vector<MultiHashTableMetadata> metas;
  {
    std::unique_ptr<RecordFileReader> reader;
    ASSERT_OK(RecordFileReader::Open(&fs, meta_path, false, &reader));
    std::string_view record;
    while (reader->Next(&record).ok()) {
      metas.emplace_back();
      ASSERT_TRUE(metas.back().ParseFromArray(record.data(), record.size()));
    }
  }
  change(&metas);
  std::unique_ptr<WritableFile> file;
  ASSERT_OK(fs.NewWritableFile(meta_path, &file));
  RecordFileWriter writer(file.get(), false);
  for (const auto& meta : metas)
    ASSERT_OK(writer.Write(meta.SerializeAsString()));
  ASSERT_TRUE(writer.Close().ok() && file->Close().ok());
}

TEST(CheckpointTest, InconsistentTableListsAreDataLoss) {
  const std::string dir = TestDir("tables");
  const std::string basename = dir + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 10), 2));
  // Shard 1's meta rewritten with a renamed table (same save id).
  RewriteMeta(CheckpointMetaName(basename, 1, 2),
              [](std::vector<MultiHashTableMetadata>* metas) {
                (*metas)[1].set_table_name("renamed");
              });
  Contents restored;
  const Status status = Restore(basename, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "lists table \"renamed\" as its table 1"))
      << status.message();
}

TEST(CheckpointTest, SegmentDimsAreRecordedAndChecked) {
  const std::string basename = TestDir("segment_dims") + "/t";
  PosixFileSystem fs;
  SaveOptions options;
  options.nshards = 2;
  options.segment_dims = {{8, 8}, {16}, {4}};
  ASSERT_OK(SaveWith(&fs, basename, MakeContents(1, 10), options));
  CheckpointInfo info;
  ASSERT_OK(
      ReadCheckpointInfo(&fs, basename, /*need_data=*/true, nullptr, &info));
  ASSERT_EQ(info.tables.size(), 3u);
  EXPECT_EQ(info.tables[0].segment_dims, (std::vector<uint32_t>{8, 8}));
  EXPECT_EQ(info.tables[1].segment_dims, (std::vector<uint32_t>{16}));
  EXPECT_OK(CheckSegmentDims(info, 0, {8, 8}));
  // The same total dim in other segments would mix them.
  Status status = CheckSegmentDims(info, 0, {4, 12});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "table user with segment dims "
                                         "[8, 8], the table to restore has "
                                         "[4, 12]: its values would land in "
                                         "other segments"))
      << status.message();
  status = CheckSegmentDims(info, 1, {8, 9});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "[8, 9]: its entries do not fit"))
      << status.message();

  // A save that records none (as the original's) is not checked.
  options.segment_dims.clear();
  ASSERT_OK(SaveWith(&fs, basename, MakeContents(2, 10), options));
  ASSERT_OK(
      ReadCheckpointInfo(&fs, basename, /*need_data=*/true, nullptr, &info));
  EXPECT_TRUE(info.tables[0].segment_dims.empty());
  EXPECT_OK(CheckSegmentDims(info, 0, {4, 12}));

  options.segment_dims = {{8, 8}, {16}};
  status = SaveWith(&fs, basename, MakeContents(3, 10), options);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "given for 2 tables, 3 are saved"))
      << status.message();
}

TEST(CheckpointTest, ValuesOnlyTablesAreRecordedAndChecked) {
  // A SERVING table's save (no optimizer state) restored whole into a
  // TRAINING table reset every entry's optimizer state, silently.
  const std::string basename = TestDir("values_only") + "/t";
  PosixFileSystem fs;
  SaveOptions options;
  options.nshards = 2;
  options.values_only = {true, false, false};
  ASSERT_OK(SaveWith(&fs, basename, MakeContents(1, 10), options));
  CheckpointInfo info;
  ASSERT_OK(
      ReadCheckpointInfo(&fs, basename, /*need_data=*/true, nullptr, &info));
  ASSERT_EQ(info.tables.size(), 3u);
  EXPECT_TRUE(info.tables[0].values_only);
  EXPECT_FALSE(info.tables[1].values_only);
  Status status = CheckOptimizerStateSaved(info, 0, true);
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(status.message(),
                       "holds table user as a SERVING table saved it"))
      << status.message();
  EXPECT_TRUE(Contains(status.message(), "values_only")) << status.message();
  // Values only restored, or into a SERVING table: nothing is reset.
  EXPECT_OK(CheckOptimizerStateSaved(info, 0, false));
  EXPECT_OK(CheckOptimizerStateSaved(info, 1, true));
  // Shards that disagree are not one save.
  RewriteMeta(CheckpointMetaName(basename, 1, 2),
              [](std::vector<MultiHashTableMetadata>* metas) {
                (*metas)[0].clear_values_only();
              });
  Contents restored;
  status = Restore(basename, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(),
                       "table user does not hold values "
                       "only, where "))
      << status.message();
  // The original's saves record nothing: restored whole as before.
  options.values_only.clear();
  ASSERT_OK(SaveWith(&fs, basename, MakeContents(2, 10), options));
  ASSERT_OK(
      ReadCheckpointInfo(&fs, basename, /*need_data=*/true, nullptr, &info));
  EXPECT_FALSE(info.tables[0].values_only);
  options.values_only = {true};
  status = SaveWith(&fs, basename, MakeContents(3, 10), options);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(status.message(), "given for 1 tables, 3 are saved"))
      << status.message();
}

TEST(CheckpointTest, MetaFilesDisagreeingOnSegmentDimsAreDataLoss) {
  const std::string basename = TestDir("segment_dims_differ") + "/t";
  PosixFileSystem fs;
  SaveOptions options;
  options.nshards = 2;
  options.segment_dims = {{8, 8}, {16}, {4}};
  ASSERT_OK(SaveWith(&fs, basename, MakeContents(1, 10), options));
  RewriteMeta(CheckpointMetaName(basename, 1, 2),
              [](std::vector<MultiHashTableMetadata>* metas) {
                (*metas)[0].clear_segment_dims();
                for (int i = 0; i < 100; ++i) (*metas)[0].add_segment_dims(1);
              });
  Contents restored;
  const Status status = Restore(basename, &restored);
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(status.message(), "table user has segment dims [1, 1"))
      << status.message();
  // A hostile list is cut short in the message.
  EXPECT_TRUE(Contains(status.message(), "1, ... 100 in all], where "))
      << status.message();
  EXPECT_TRUE(Contains(status.message(), "says [8, 8]")) << status.message();
}

TEST(CheckpointTest, MissingFilesAreNotFound) {
  const std::string dir = TestDir("missing");
  const std::string basename = dir + "/t";
  Contents restored;
  Status status = Restore(basename, &restored);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(status.message(), "no multi hash table checkpoint"));
  ASSERT_OK(Save(basename, MakeContents(1, 10), 3));
  ASSERT_EQ(std::remove(CheckpointDataName(basename, 1, 3).c_str()), 0);
  status = Restore(basename, &restored);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(status.message(), CheckpointDataName(basename, 1, 3) +
                                             " is missing"))
      << status.message();
  // Meta files alone are enough for statistics.
  PosixFileSystem fs;
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, false, nullptr, &info));
  EXPECT_EQ(info.tables[1].entries, 10u);
}

TEST(CheckpointTest, RestorerErrorsNameTheFileAndEntry) {
  const std::string basename = TestDir("restorer_error") + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 10), 1));
  PosixFileSystem fs;
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, true, nullptr, &info));
  const Status status = RestoreCheckpoint(
      &fs, info,
      [](int, int table, std::string_view) {
        return table == 1 ? InvalidArgumentError("wrong dim") : Status::OK();
      },
      SerialFor, nullptr);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  // The file's record (after table 0's), where it lies, and which entry
  // of its table it is.
  const std::string place =
      CheckpointDataName(basename, 0, 1) + ": record " +
      std::to_string(info.shards[0].tables[0].entries) + " (at byte ";
  EXPECT_EQ(status.message().substr(0, place.size()), place)
      << status.message();
  EXPECT_TRUE(Contains(status.message(),
                       " of the decompressed stream), entry 0 of table item: "
                       "wrong dim"))
      << status.message();
}

// TableRestored runs once per data shard and table, after the table's
// records of that shard; its errors name the file and the table.
TEST(CheckpointTest, TableRestoredFollowsEachTablesRecordsOfAShard) {
  const std::string basename = TestDir("table_restored") + "/t";
  ASSERT_OK(Save(basename, MakeContents(1, 10), 2));
  PosixFileSystem fs;
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, basename, true, nullptr, &info));
  std::vector<std::string> calls;
  const auto record = [&](int shard, int table, std::string_view) {
    const std::string call = "records " + std::to_string(shard) + " " +
                             std::to_string(table);
    if (calls.empty() || calls.back() != call) calls.push_back(call);
    return Status::OK();
  };
  const auto restored = [&](int shard, int table) {
    calls.push_back("done " + std::to_string(shard) + " " +
                    std::to_string(table));
    return table == 2 && shard == 1 ? ResourceExhaustedError("full")
                                    : Status::OK();
  };
  const Status status =
      RestoreCheckpoint(&fs, info, record, SerialFor, nullptr, "Restored",
                        kProgressEvery, nullptr, restored);
  EXPECT_EQ(calls, (std::vector<std::string>{
                       "records 0 0", "done 0 0", "records 0 1", "done 0 1",
                       "done 0 2", "records 1 0", "done 1 0", "records 1 1",
                       "done 1 1", "done 1 2"}));
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(status.message(),
            CheckpointDataName(basename, 1, 2) + ": table empty: full");
}

std::string FileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CheckpointTest, ReplaceFileTemporariesAreNamedAsPythonNamesItsOwn) {
  // utils.write_file_atomically's "<path>.tmp-<uuid4 hex>", the name the
  // checkpoint clean-up deletes.
  EXPECT_EQ(ReplaceFileTemporary("d/g.num_ps", 1, ~uint64_t{0}),
            "d/g.num_ps.tmp-0000000000000001ffffffffffffffff");
  EXPECT_EQ(ReplaceFileTemporary("p", 0xabcdef0123456789, 0),
            "p.tmp-abcdef01234567890000000000000000");
}

// Small records (a PS count) replaced whole: the folder made where
// missing; a failed open or rename leaves the old file and no temporary.
TEST(CheckpointTest, ReplaceFileWritesWholeOrNotAtAll) {
  const std::string dir = TestDir("replace_file") + "/new_folder";
  const std::string path = dir + "/g.num_ps";
  PosixFileSystem fs;
  ASSERT_OK(ReplaceFile(&fs, path, path + ".tmp-1", "saving\n"));
  ASSERT_OK(ReplaceFile(&fs, path, path + ".tmp-2", "3\n"));
  EXPECT_EQ(FileText(path), "3\n");
  EXPECT_EQ(List(dir), std::vector<std::string>{"g.num_ps"});
  for (const bool fail_rename : {false, true}) {
    FailingFileSystem failing;
    (fail_rename ? failing.fail_renames_at : failing.fail_opens_at) = 0;
    const Status s = ReplaceFile(&failing, path, path + ".tmp-3", "4\n");
    EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
    EXPECT_EQ(FileText(path), "3\n");
    EXPECT_EQ(List(dir), std::vector<std::string>{"g.num_ps"});
  }
  // A rename that deleted its target before failing: the temporary, the
  // only copy left, stays, and the error names it.
  FailingFileSystem deleting;
  deleting.fail_renames_at = 0;
  deleting.delete_target_on_failed_rename = true;
  const Status s = ReplaceFile(&deleting, path, path + ".tmp-4", "5\n");
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_NE(s.message().find("its new contents are kept in " + path +
                             ".tmp-4: injected: cannot rename"),
            std::string::npos)
      << s.ToString();
  EXPECT_EQ(List(dir), std::vector<std::string>{"g.num_ps.tmp-4"});
  EXPECT_EQ(FileText(path + ".tmp-4"), "5\n");
  // A file written for the first time: nothing was lost, the temporary goes.
  ASSERT_EQ(unlink((path + ".tmp-4").c_str()), 0);
  FailingFileSystem failing_first;
  failing_first.fail_renames_at = 0;
  failing_first.delete_target_on_failed_rename = true;
  const Status first =
      ReplaceFile(&failing_first, path, path + ".tmp-5", "6\n");
  EXPECT_EQ(first.code(), StatusCode::kInternal) << first.ToString();
  EXPECT_EQ(first.message().find("kept in"), std::string::npos)
      << first.ToString();
  EXPECT_TRUE(List(dir).empty());
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
