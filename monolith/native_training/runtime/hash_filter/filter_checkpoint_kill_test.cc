// A child process saves hash filters to one basename in a loop, each save
// with other contents (and runs of saves with another split count), and is
// SIGKILLed at random points (file creation, closes and renames are slowed
// down so that kills land inside a save often). After every kill a restore
// must yield exactly the filter of one save the child made, the last one
// finished or a later one killed after writing all its splits (read
// through its temporaries, or finished by the next save). Only before any
// save finished may it fail, with NotFound naming the checkpoint. Never a
// mix of saves, never a lost save, never a crash.
// MONOLITH_KILL_TEST_ROUNDS runs more rounds (default 20); the seed is fixed.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/filter_checkpoint.h"
#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"
#include "monolith/native_training/runtime/hash_table/kill_test_util.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_filter {
namespace {

using ::monolith::hash_table::PauseForKill;
using ::monolith::hash_table::PosixFileSystem;
using ::monolith::hash_table::SerialFor;
using ::monolith::hash_table::StatusCode;
using ::monolith::hash_table::WaitForPause;
using ::monolith::hash_table::WritableFile;

constexpr uint64_t kCapacity = 3000;

// Runs of three saves with 7 splits, then three with 4.
int SplitsOf(int version) { return (version / 3) % 2 == 0 ? 7 : 4; }

// The filter save |version| writes: its own workload.
std::unique_ptr<SlidingHashFilter> StateOf(int version) {
  std::unique_ptr<SlidingHashFilter> filter;
  const Status s =
      SlidingHashFilter::Create(kCapacity, SplitsOf(version), &filter);
  EXPECT_OK(s);
  std::mt19937_64 rng(static_cast<uint64_t>(version) * 7919 + 1);
  const int ops = 1500 + (version % 5) * 400;
  for (int i = 0; i < ops; ++i) {
    filter->ShouldBeFiltered(static_cast<int64_t>(rng() % 8000), 1 + rng() % 3,
                             1 + rng() % 15, nullptr);
  }
  return filter;
}

// Slow file creation, closes and renames: kills land inside saves.
class SlowWritableFile : public WritableFile {
 public:
  explicit SlowWritableFile(std::unique_ptr<WritableFile> file)
      : file_(std::move(file)) {}
  Status Append(std::string_view data) override { return file_->Append(data); }
  Status Close() override {
    usleep(300);
    return file_->Close();
  }

 private:
  std::unique_ptr<WritableFile> file_;
};

// With |pause_at_file| > 0, the file system tells |notify_fd| and stops
// for good when creating that file (counted from 1): a kill then lands
// inside the first save.
class SlowFileSystem : public PosixFileSystem {
 public:
  SlowFileSystem(int pause_at_file, int notify_fd)
      : pause_at_file_(pause_at_file), notify_fd_(notify_fd) {}
  Status NewWritableFile(const std::string& path,
                         std::unique_ptr<WritableFile>* file) override {
    if (++files_ == pause_at_file_) PauseForKill(notify_fd_);
    usleep(300);
    std::unique_ptr<WritableFile> posix;
    MONOLITH_RETURN_IF_ERROR(PosixFileSystem::NewWritableFile(path, &posix));
    file->reset(new SlowWritableFile(std::move(posix)));
    return Status::OK();
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    usleep(1000);
    return PosixFileSystem::RenameFile(from, to);
  }

 private:
  const int pause_at_file_;
  const int notify_fd_;
  std::atomic<int> files_{0};
};

// Appends "<version>\n" to |log| before every save, then saves it (see
// SlowFileSystem for |pause_at_file| and |notify_fd|).
[[noreturn]] void SaveForever(const std::string& basename,
                              const std::string& log, int first_version,
                              int pause_at_file = 0, int notify_fd = -1) {
  SlowFileSystem fs(pause_at_file, notify_fd);
  const int fd = open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) _exit(2);
  for (int version = first_version;; ++version) {
    std::unique_ptr<SlidingHashFilter> filter = StateOf(version);
    const std::string line = std::to_string(version) + "\n";
    if (write(fd, line.data(), line.size()) !=
        static_cast<ssize_t>(line.size())) {
      _exit(3);
    }
    const Status status =
        SaveFilterCheckpoint(&fs, basename, *filter, SerialFor);
    if (!status.ok()) {
      std::fprintf(stderr, "save failed: %s\n", status.ToString().c_str());
      _exit(1);
    }
  }
}

std::vector<int> StartedVersions(const std::string& log) {
  std::ifstream in(log);
  std::vector<int> versions;
  int version = 0;
  while (in >> version) versions.push_back(version);
  return versions;
}

// Restores |basename| as a filter of |version|'s configuration; on success
// *restored_version is the save it equals (-1: none of |candidates|).
Status RestoreAs(const std::string& basename, int version,
                 const std::vector<int>& candidates, int* restored_version) {
  PosixFileSystem fs;
  std::unique_ptr<SlidingHashFilter> like;
  EXPECT_OK(SlidingHashFilter::Create(kCapacity, SplitsOf(version), &like));
  std::unique_ptr<Filter> restored;
  MONOLITH_RETURN_IF_ERROR(
      RestoreFilterCheckpoint(&fs, basename, *like, SerialFor, &restored));
  *restored_version = -1;
  for (int candidate : candidates) {
    if (SplitsOf(candidate) != SplitsOf(version)) continue;
    if (static_cast<const SlidingHashFilter&>(*restored) ==
        *StateOf(candidate)) {
      *restored_version = candidate;
    }
  }
  return Status::OK();
}

TEST(FilterCheckpointKillTest, EveryRestoreReadsOneWholeSaveOrFailsClearly) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp ? tmp : "/tmp") + "/filter_kill_" +
                          std::to_string(getpid());
  PosixFileSystem fs;
  ASSERT_OK(fs.CreateDirectories(dir));
  const std::string basename = dir + "/hash_filter_0";
  const std::string log = dir + "/versions.log";
  const char* rounds_env = std::getenv("MONOLITH_KILL_TEST_ROUNDS");
  const int rounds = rounds_env ? std::atoi(rounds_env) : 20;
  std::mt19937 rng(20261203);
  std::uniform_int_distribution<int> kill_after_us(0, 30000);
  int whole = 0, refused = 0, recounted = 0;
  bool any_finished = false;
  std::map<int, int> restored_position;  // 0: last begun, 1: an earlier one
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
      SaveForever(basename, log, round * 1000, round == 0 ? 2 : 0, notify[1]);
    }
    if (round == 0) {
      ASSERT_TRUE(WaitForPause(child, notify))
          << "the first save ended before its second file";
    } else {
      // Round 1 once its first save finished (it began the next): one
      // round, at least, has a whole save to read, however slow the disk.
      if (round == 1) {
        const auto began_second = [&log] {
          const std::vector<int> started = StartedVersions(log);
          return std::find(started.begin(), started.end(), 1001) !=
                 started.end();
        };
        for (int waited_ms = 0; !began_second(); ++waited_ms) {
          if (waited_ms == 20000) {
            kill(child, SIGKILL);
            FAIL() << "no save finished";
          }
          usleep(1000);
        }
      }
      usleep(kill_after_us(rng));
    }
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int wait_status = 0;
    ASSERT_EQ(waitpid(child, &wait_status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(wait_status)) << "the saver exited on its own";

    const std::vector<int> started = StartedVersions(log);
    if (started.empty()) continue;  // killed before its first save
    // A save finished if its child began another one (saves run one at a
    // time; a child's versions are consecutive). On disk: the last finished
    // save, or a later, killed one that completed its renames, or a mix.
    size_t first = 0;
    for (size_t i = 0; i + 1 < started.size(); ++i) {
      if (started[i + 1] == started[i] + 1) {
        first = i;
        any_finished = true;
      }
    }
    const std::vector<int> candidates(started.rbegin(), started.rend() - first);
    std::string described;
    for (int candidate : candidates) {
      described += " " + std::to_string(candidate);
    }
    // Restore as a filter of each candidate's split count, newest first,
    // until the count fits.
    int version = -1;
    Status status;
    std::vector<int> tried;
    for (int candidate : candidates) {
      const int splits = SplitsOf(candidate);
      if (std::find(tried.begin(), tried.end(), splits) != tried.end()) {
        continue;
      }
      if (!tried.empty()) ++recounted;
      tried.push_back(splits);
      status = RestoreAs(basename, candidate, candidates, &version);
      if (status.code() != StatusCode::kFailedPrecondition ||
          status.message().find("but the filter has") == std::string::npos) {
        break;
      }
    }
    if (status.ok()) {
      ASSERT_GE(version, 0)
          << "round " << round << ": the restored filter is none of saves"
          << described;
      ++whole;
      ++restored_position[version == candidates[0] ? 0 : 1];
      continue;
    }
    ++refused;
    EXPECT_FALSE(any_finished)
        << "round " << round << ": a save finished, yet: " << status.ToString();
    EXPECT_EQ(status.code(), StatusCode::kNotFound) << status.ToString();
    EXPECT_NE(status.message().find(basename), std::string::npos)
        << status.ToString();
  }
  std::printf(
      "%d rounds: %d restores read one whole save (%d the last "
      "begun, %d an earlier one; %d retried with another split count), "
      "%d refused before any save finished\n",
      rounds, whole, restored_position[0], restored_position[1], recounted,
      refused);
  EXPECT_GT(whole, 0);
  EXPECT_GT(refused, 0);

  // A save after any of those states makes the basename whole again, and
  // leaves no temporaries.
  const int final_version = 999999;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    PosixFileSystem child_fs;
    const Status status = SaveFilterCheckpoint(
        &child_fs, basename, *StateOf(final_version), SerialFor);
    _exit(status.ok() ? 0 : 1);
  }
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
  int version = -1;
  const Status status =
      RestoreAs(basename, final_version, {final_version}, &version);
  ASSERT_OK(status);
  EXPECT_EQ(version, final_version);
  std::vector<std::string> names;
  ASSERT_OK(fs.ListDirectory(dir, &names));
  EXPECT_EQ(names.size(), static_cast<size_t>(SplitsOf(final_version)) + 1);
  for (const std::string& name : names) {
    EXPECT_EQ(name.find("-tmp-"), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
