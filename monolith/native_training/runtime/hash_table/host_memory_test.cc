#include "monolith/native_training/runtime/hash_table/host_memory.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace monolith {
namespace hash_table {
namespace {

constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kGiB = uint64_t{1} << 30;

// A fake /proc and /sys/fs/cgroup under the test's temporary directory.
class HostMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/host_memory_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    files_.meminfo = root_ + "/meminfo";
    files_.self_cgroup = root_ + "/self_cgroup";
    files_.cgroup_root = root_ + "/cgroup";
  }

  void Write(const std::string& path, const std::string& text) {
    // Each folder of the path under root_, then the file.
    for (size_t slash = root_.size(); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      mkdir(path.substr(0, slash).c_str(), 0755);
    }
    std::ofstream(path) << text;
  }

  std::string root_;
  HostMemoryFiles files_;
};

TEST_F(HostMemoryTest, WithoutCgroupsTheMachineSays) {
  Write(files_.meminfo, "MemTotal: 100 kB\nMemAvailable: 2048 kB\n");
  EXPECT_EQ(AvailableMemoryBytes(files_), 2048u * 1024);
  EXPECT_EQ(UsableMemoryBytes(files_, 5 * kGiB), 5 * kGiB);
  // Nothing to read: no limit known.
  files_.meminfo = root_ + "/missing";
  EXPECT_EQ(AvailableMemoryBytes(files_), kNoLimit);
  // A number past 2^64 bytes saturates.
  Write(files_.meminfo, "MemAvailable: 18446744073709551615 kB\n");
  EXPECT_EQ(AvailableMemoryBytes(files_), kNoLimit);
}

TEST_F(HostMemoryTest, CgroupV2LimitsOfTheGroupAndItsParentsCount) {
  Write(files_.meminfo, "MemAvailable: 8388608 kB\n");  // 8 GiB
  Write(files_.self_cgroup, "0::/pod/container\n");
  const std::string pod = files_.cgroup_root + "/pod/";
  const std::string container = pod + "container/";
  Write(container + "memory.max", "max\n");  // none of its own
  Write(container + "memory.current", "100\n");
  Write(pod + "memory.max", std::to_string(3 * kGiB) + "\n");
  // Its working set: usage less the inactive file pages reclaimed first.
  Write(pod + "memory.current", std::to_string(2 * kGiB) + "\n");
  Write(pod + "memory.stat",
        "anon 1\ninactive_file " + std::to_string(kGiB / 2) + "\n");
  EXPECT_EQ(AvailableMemoryBytes(files_), kGiB + kGiB / 2);
  EXPECT_EQ(UsableMemoryBytes(files_, 16 * kGiB), 3 * kGiB);
  // Over its limit (usage counts pages the kernel may still reclaim): none.
  Write(pod + "memory.current", std::to_string(4 * kGiB) + "\n");
  Write(pod + "memory.stat", "inactive_file 0\n");
  EXPECT_EQ(AvailableMemoryBytes(files_), 0u);
}

TEST_F(HostMemoryTest, CgroupV1MemoryControllerIsFoundAmongOthers) {
  Write(files_.meminfo, "MemAvailable: 8388608 kB\n");
  Write(files_.self_cgroup,
        "4:cpu,cpuacct:/job\n3:blkio:/job\n2:memory,hugetlb:/job/task\n");
  const std::string task = files_.cgroup_root + "/memory/job/task/";
  Write(task + "memory.limit_in_bytes", std::to_string(2 * kGiB) + "\n");
  Write(task + "memory.usage_in_bytes", std::to_string(kGiB) + "\n");
  Write(task + "memory.stat", "total_inactive_file " +
                                  std::to_string(kGiB / 4) + "\n");
  // The root's limit is the machine's: larger, not the least.
  Write(files_.cgroup_root + "/memory/memory.limit_in_bytes",
        std::to_string(64 * kGiB) + "\n");
  Write(files_.cgroup_root + "/memory/memory.usage_in_bytes", "0\n");
  EXPECT_EQ(AvailableMemoryBytes(files_), kGiB + kGiB / 4);
  EXPECT_EQ(UsableMemoryBytes(files_, 16 * kGiB), 2 * kGiB);
  // The cgroups visited: the task's, then each one above it.
  std::vector<std::string> limits;
  ForEachMemoryCgroup(files_, [&](const MemoryCgroupFiles& cgroup) {
    limits.push_back(cgroup.limit.substr(files_.cgroup_root.size()));
  });
  EXPECT_EQ(limits, (std::vector<std::string>{
                        "/memory/job/task/memory.limit_in_bytes",
                        "/memory/job/memory.limit_in_bytes",
                        "/memory/memory.limit_in_bytes"}));
}

TEST_F(HostMemoryTest, MalformedCgroupLinesAreSkipped) {
  Write(files_.meminfo, "MemAvailable: 1024 kB\n");
  Write(files_.self_cgroup, "garbage\n7\n5:memory\n");
  EXPECT_EQ(AvailableMemoryBytes(files_), 1024u * 1024);
  EXPECT_EQ(UsableMemoryBytes(files_, kGiB), kGiB);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
