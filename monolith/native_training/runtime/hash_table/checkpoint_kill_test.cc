// A child process saves checkpoints to one basename in a loop and is
// SIGKILLed at random points (renames are slowed down so that kills often
// land between them); after every kill a restore must read exactly one
// complete save, no older than the last save that returned OK (a save
// killed while renaming reads whole, and the next save finishes it). Only
// before the first save completes may a restore fail, with NotFound naming
// the checkpoint. ReplaceFile (whole small files) is killed the same way.
// MONOLITH_KILL_TEST_ROUNDS runs more rounds of each (default 40).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/checkpoint.h"
#include "monolith/native_training/runtime/hash_table/kill_test_util.h"
#include "monolith/native_training/runtime/hash_table/sharded_files.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace {

const std::vector<std::string> kTables = {"user", "item"};

// Entries per table in save |version|: saves differ in size.
int EntriesOf(int version) { return 200 + (version % 7) * 50; }

std::string Record(int version, int table, int i) {
  char record[40];
  std::snprintf(record, sizeof(record), "v%07d-t%d-%06d", version, table, i);
  return record;
}

// Renames slowly, so that a kill lands between two of them often.
class SlowRenameFileSystem : public PosixFileSystem {
 public:
  Status RenameFile(const std::string& from, const std::string& to) override {
    usleep(1500);
    return PosixFileSystem::RenameFile(from, to);
  }
};

// With |pause_at_file| > 0: the first save stops for good when it creates
// that file (its earlier files written, none under its final name), after
// writing a byte to |notify_fd|: a kill then lands inside the first save,
// whatever the machine's speed.
class PausingFileSystem : public SlowRenameFileSystem {
 public:
  PausingFileSystem(int pause_at_file, int notify_fd)
      : pause_at_file_(pause_at_file), notify_fd_(notify_fd) {}

  Status NewWritableFile(const std::string& path,
                         std::unique_ptr<WritableFile>* file) override {
    if (++files_ == pause_at_file_) PauseForKill(notify_fd_);
    return SlowRenameFileSystem::NewWritableFile(path, file);
  }

 private:
  int pause_at_file_;
  int notify_fd_;
  int files_ = 0;
};

// The last version whose save returned OK, kept in |marker| (8 bytes); -1
// before any.
int64_t ReadCompleted(const std::string& marker) {
  int64_t version = -1;
  const int fd = open(marker.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  if (pread(fd, &version, sizeof(version), 0) != sizeof(version)) version = -1;
  close(fd);
  return version;
}

// Waits (up to 20 s) until |marker| reports |version| or later: a round
// killed after that holds a whole save whatever the machine's speed.
bool WaitForCompleted(const std::string& marker, int64_t version) {
  for (int waited_ms = 0; waited_ms < 20000; ++waited_ms) {
    if (ReadCompleted(marker) >= version) return true;
    usleep(1000);
  }
  return false;
}

void WriteCompleted(const std::string& marker, int64_t version) {
  const int fd = open(marker.c_str(), O_WRONLY | O_CREAT, 0644);
  if (fd < 0 || pwrite(fd, &version, sizeof(version), 0) != sizeof(version)) {
    std::fprintf(stderr, "cannot write %s\n", marker.c_str());
    _exit(1);
  }
  close(fd);
}

[[noreturn]] void SaveForever(const std::string& basename,
                              const std::string& marker, int first_version,
                              int pause_at_file = 0, int notify_fd = -1) {
  PausingFileSystem fs(pause_at_file, notify_fd);
  for (int version = first_version;; ++version) {
    SaveOptions options;
    // Runs of saves with one shard count (a kill mid-rename mixes two
    // saves), then another count (a kill leaves two counts).
    options.nshards = 1 + (version / 3) % 4;
    options.snappy = version % 2 == 0;
    const Status status = SaveCheckpoint(
        &fs, basename, kTables,
        [version](int table, int shard, int nshards,
                  const std::function<Status(std::string_view)>& write) {
          for (int i = shard; i < EntriesOf(version); i += nshards) {
            MONOLITH_RETURN_IF_ERROR(write(Record(version, table, i)));
          }
          return Status::OK();
        },
        options);
    if (!status.ok()) {
      std::fprintf(stderr, "save failed: %s\n", status.ToString().c_str());
      _exit(1);
    }
    WriteCompleted(marker, version);
  }
}

// Restores |basename|: OK with the one version every record belongs to, or
// the error.
Status RestoreVersion(const std::string& basename, int* version) {
  PosixFileSystem fs;
  CheckpointInfo info;
  MONOLITH_RETURN_IF_ERROR(
      ReadCheckpointInfo(&fs, basename, /*need_data=*/true, nullptr, &info));
  std::map<int, std::set<std::string>> records;
  MONOLITH_RETURN_IF_ERROR(RestoreCheckpoint(
      &fs, info,
      [&](int, int table, std::string_view record) {
        records[table].emplace(record);
        return Status::OK();
      },
      SerialFor, nullptr));
  *version = -1;
  for (size_t t = 0; t < info.tables.size(); ++t) {
    EXPECT_EQ(info.tables[t].name, kTables[t]);
    for (const std::string& record : records[static_cast<int>(t)]) {
      const int v = std::atoi(record.c_str() + 1);
      if (*version < 0) *version = v;
      EXPECT_EQ(v, *version) << "records of two saves: " << record;
    }
  }
  // Exactly the whole of that save.
  for (size_t t = 0; t < kTables.size(); ++t) {
    std::set<std::string> expected;
    for (int i = 0; i < EntriesOf(*version); ++i) {
      expected.insert(Record(*version, static_cast<int>(t), i));
    }
    EXPECT_EQ(records[static_cast<int>(t)], expected)
        << "save " << *version << " table " << kTables[t] << " is incomplete";
  }
  return Status::OK();
}

TEST(CheckpointKillTest, EveryRestoreReadsOneWholeSaveOrFailsClearly) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp ? tmp : "/tmp") + "/kill_test";
  PosixFileSystem fs;
  ASSERT_OK(fs.CreateDirectories(dir));
  const std::string basename = dir + "/mtable";
  const std::string marker = dir + "/completed";
  unlink(marker.c_str());
  const char* rounds_env = std::getenv("MONOLITH_KILL_TEST_ROUNDS");
  const int rounds = rounds_env ? std::atoi(rounds_env) : 40;
  std::mt19937 rng(20261202);
  std::uniform_int_distribution<int> kill_after_us(0, 40000);
  int whole = 0, refused = 0, newer = 0;
  for (int round = 0; round < rounds; ++round) {
    // Round 0 is killed inside the first save, creating its second file (a
    // restore of what it left must fail); the others at random times.
    int notify[2] = {-1, -1};
    if (round == 0) {
      ASSERT_EQ(pipe(notify), 0);
    }
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      SaveForever(basename, marker, round * 1000, round == 0 ? 2 : 0,
                  notify[1]);
    }
    if (round == 0) {
      ASSERT_TRUE(WaitForPause(child, notify))
          << "the first save ended before its second file";
    } else {
      // Round 1 after its first save completed: one round, at least, has a
      // whole save to read, however slow the disk.
      if (round == 1 && !WaitForCompleted(marker, 1000)) {
        kill(child, SIGKILL);
        FAIL() << "no save completed";
      }
      usleep(kill_after_us(rng));
    }
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int wait_status = 0;
    ASSERT_EQ(waitpid(child, &wait_status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(wait_status)) << "the saver exited on its own";
    const int64_t completed = ReadCompleted(marker);
    int version = -1;
    const Status status = RestoreVersion(basename, &version);
    if (status.ok()) {
      ++whole;
      // The save in flight may be read (killed while renaming), never one
      // older than the last completed.
      EXPECT_GE(version, completed) << "round " << round;
      if (version > completed) ++newer;
      continue;
    }
    ++refused;
    EXPECT_EQ(completed, -1) << "round " << round << ": save " << completed
                             << " completed, yet: " << status.ToString();
    EXPECT_EQ(status.code(), StatusCode::kNotFound) << status.ToString();
    EXPECT_NE(status.message().find(basename), std::string::npos)
        << status.ToString();
  }
  std::printf(
      "%d rounds: %d restores read one whole save (%d the save in flight, "
      "killed while renaming), %d refused before any save completed\n",
      rounds, whole, newer, refused);
  EXPECT_GT(whole, 0);
  EXPECT_GT(refused, 0);
  // A save after any of those states makes the basename whole again.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    SaveOptions options;
    options.nshards = 3;
    PosixFileSystem child_fs;
    const Status status = SaveCheckpoint(
        &child_fs, basename, kTables,
        [](int table, int shard, int nshards,
           const std::function<Status(std::string_view)>& write) {
          for (int i = shard; i < EntriesOf(999999); i += nshards) {
            MONOLITH_RETURN_IF_ERROR(write(Record(999999, table, i)));
          }
          return Status::OK();
        },
        options);
    _exit(status.ok() ? 0 : 1);
  }
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
  int version = -1;
  ASSERT_OK(RestoreVersion(basename, &version));
  EXPECT_EQ(version, 999999);
}

// The contents ReplaceFile writes in version |version|: its number
// repeated, of a size that changes from version to version (up to 60 KB).
std::string ReplacedContents(int version) {
  char unit[16];
  std::snprintf(unit, sizeof(unit), "v%08d;", version);
  std::string contents;
  for (int i = 0; i < 1 + (version % 13) * 600; ++i) contents += unit;
  return contents;
}

[[noreturn]] void ReplaceForever(const std::string& path,
                                 const std::string& marker,
                                 int first_version) {
  SlowRenameFileSystem fs;
  for (int version = first_version;; ++version) {
    const Status status =
        ReplaceFile(&fs, path, ReplaceFileTemporary(path, 0, version),
                    ReplacedContents(version));
    if (!status.ok()) {
      std::fprintf(stderr, "replace failed: %s\n", status.ToString().c_str());
      _exit(1);
    }
    WriteCompleted(marker, version);
  }
}

// ReplaceFile (the PS count that DistributedMultiTypeHashTable.save
// writes through MonolithWriteFileAtomically) killed at random points:
// the file holds one whole version, no older than the last one reported
// written, or, before any, is absent.
TEST(ReplaceFileKillTest, TheFileHoldsOneWholeVersion) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir =
      std::string(tmp ? tmp : "/tmp") + "/replace_kill_test";
  PosixFileSystem fs;
  ASSERT_OK(fs.CreateDirectories(dir));
  const std::string path = dir + "/mtable.num_ps";
  const std::string marker = dir + "/completed";
  unlink(path.c_str());
  unlink(marker.c_str());
  const char* rounds_env = std::getenv("MONOLITH_KILL_TEST_ROUNDS");
  const int rounds = rounds_env ? std::atoi(rounds_env) : 40;
  std::mt19937 rng(20261207);
  std::uniform_int_distribution<int> kill_after_us(0, 20000);
  int whole = 0, absent = 0;
  for (int round = 0; round < rounds; ++round) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) ReplaceForever(path, marker, round * 1000);
    // Round 0 is killed at once: before its first rename, most often;
    // round 1 after its first write completed (one whole version at
    // least, however slow the disk).
    if (round == 1 && !WaitForCompleted(marker, 1000)) {
      kill(child, SIGKILL);
      FAIL() << "no write completed";
    }
    if (round > 0) usleep(kill_after_us(rng));
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int wait_status = 0;
    ASSERT_EQ(waitpid(child, &wait_status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(wait_status)) << "the writer exited on its own";
    const int64_t completed = ReadCompleted(marker);
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      ++absent;
      EXPECT_EQ(completed, -1) << "round " << round << ": version "
                               << completed << " was written, yet " << path
                               << " is gone";
      continue;
    }
    const std::string contents((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
    int version = -1;
    ASSERT_EQ(std::sscanf(contents.c_str(), "v%d;", &version), 1)
        << "round " << round << ": " << path << " holds '"
        << contents.substr(0, 40) << "'";
    ++whole;
    EXPECT_EQ(contents, ReplacedContents(version)) << "round " << round;
    // The write in flight may be read (killed after its rename), never one
    // older than the last completed.
    EXPECT_GE(version, completed) << "round " << round;
  }
  std::printf("%d rounds: %d read one whole version, %d before any\n",
              rounds, whole, absent);
  EXPECT_GT(whole, 0);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
