#include "monolith/native_training/runtime/hash_table/file_system.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace {

std::mutex synced_mu;
std::vector<std::string>& Synced() {
  static std::vector<std::string>* paths = new std::vector<std::string>;
  return *paths;
}

}  // namespace

// Every fsync of this binary (the library's calls bind to this definition):
// records what the descriptor names, then syncs it.
extern "C" int fsync(int fd) {
  char link[64];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  char target[PATH_MAX];
  const ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n > 0) {
    std::lock_guard<std::mutex> lock(synced_mu);
    Synced().emplace_back(target, n);
  }
  return static_cast<int>(syscall(SYS_fsync, fd));
}

namespace monolith {
namespace hash_table {
namespace {

std::vector<std::string> TakeSynced() {
  std::lock_guard<std::mutex> lock(synced_mu);
  std::vector<std::string> paths;
  paths.swap(Synced());
  std::sort(paths.begin(), paths.end());
  return paths;
}

// A new folder under the test's temporary folder, by its real path.
std::string NewTempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string pattern = std::string(base ? base : "/tmp") + "/fsXXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  char real[PATH_MAX];
  EXPECT_NE(realpath(pattern.c_str(), real), nullptr);
  return real;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

TEST(FileSystemTest, NewFoldersAreSyncedInTheirParents) {
  const std::string root = NewTempDir();
  PosixFileSystem fs;
  ASSERT_OK(fs.CreateDirectories(root + "/a"));
  TakeSynced();
  const std::string dir = root + "/a/b/c";
  const Status s = fs.CreateDirectories(dir);
  ASSERT_OK(s);
  EXPECT_TRUE(IsDirectory(dir));
  // b and c are new: their parents are synced; root (a existed) is not.
  EXPECT_EQ(TakeSynced(),
            (std::vector<std::string>{root + "/a", root + "/a/b"}));
  // Existing folders: nothing to create or sync.
  ASSERT_OK(fs.CreateDirectories(dir));
  ASSERT_OK(CreateLocalDirectories(dir + "/"));
  EXPECT_EQ(TakeSynced(), std::vector<std::string>{});
}

TEST(FileSystemTest, AFileInTheWayIsAnErrorNamingThePath) {
  const std::string root = NewTempDir();
  std::ofstream(root + "/file") << "x";
  const Status s = CreateLocalDirectories(root + "/file/sub");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("cannot create directory " + root + "/file"),
            std::string::npos)
      << s.ToString();
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
