#include "monolith/native_training/runtime/hash_table/huge_page_pool.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace monolith {
namespace hash_table {
namespace {

constexpr size_t kRegion = HugePagePool::kRegionBytes;

uintptr_t Address(const char* p) { return reinterpret_cast<uintptr_t>(p); }

TEST(HugePagePoolTest, ArraysOfOneSizeShareARegionUntilTheLastIsFreed) {
  HugePagePool pool;
  constexpr size_t kBytes = 512 << 10;
  std::vector<char*> arrays;
  for (int i = 0; i < 5; ++i) {
    arrays.push_back(pool.AllocateArray(kBytes));
    EXPECT_EQ(Address(arrays.back()) % kBytes, 0u);
    std::memset(arrays.back(), i + 1, kBytes);
  }
  // Four fill the first region, the fifth maps a second.
  EXPECT_EQ(pool.UsedBytes(), 2 * kRegion);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(Address(arrays[i]) & ~(kRegion - 1),
              Address(arrays[0]) & ~(kRegion - 1));
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(arrays[i][0], i + 1);
    EXPECT_EQ(arrays[i][kBytes - 1], i + 1);
  }
  // The second region goes with its only array; a freed array is reused.
  pool.FreeArray(arrays[4], kBytes);
  EXPECT_EQ(pool.UsedBytes(), kRegion);
  pool.FreeArray(arrays[1], kBytes);
  EXPECT_EQ(pool.AllocateArray(kBytes), arrays[1]);
  EXPECT_EQ(pool.UsedBytes(), kRegion);
  for (int i = 0; i < 4; ++i) pool.FreeArray(arrays[i], kBytes);
  EXPECT_EQ(pool.UsedBytes(), 0u);
}

TEST(HugePagePoolTest, SizesHaveTheirOwnSlabsAndLargeArraysTheirOwnMapping) {
  HugePagePool pool;
  char* small = pool.AllocateArray(HugePagePool::kMinArrayBytes);
  char* medium = pool.AllocateArray(64 << 10);
  EXPECT_NE(Address(small) & ~(kRegion - 1), Address(medium) & ~(kRegion - 1));
  EXPECT_EQ(pool.UsedBytes(), 2 * kRegion);
  char* region = pool.AllocateArray(kRegion);
  char* large = pool.AllocateArray(4 * kRegion);
  EXPECT_EQ(Address(region) % kRegion, 0u);
  EXPECT_EQ(Address(large) % kRegion, 0u);
  std::memset(large, 7, 4 * kRegion);
  EXPECT_EQ(pool.UsedBytes(), 7 * kRegion);
  pool.FreeArray(large, 4 * kRegion);
  pool.FreeArray(small, HugePagePool::kMinArrayBytes);
  EXPECT_EQ(pool.UsedBytes(), 2 * kRegion);
  pool.FreeArray(medium, 64 << 10);
  pool.FreeArray(region, kRegion);
  EXPECT_EQ(pool.UsedBytes(), 0u);
}

TEST(HugePagePoolTest, BlocksAreAlignedPackedAndReleasedTogether) {
  HugePagePool pool;
  char* first = pool.AllocateBlock(100);
  char* second = pool.AllocateBlock(16 << 10);
  EXPECT_EQ(Address(first) % HugePagePool::kBlockAlignment, 0u);
  EXPECT_EQ(second, first + 128);  // 100 bytes rounded up to the alignment
  // A block that does not fit the region's tail starts a new region.
  char* big = pool.AllocateBlock(kRegion - 1000);
  EXPECT_EQ(Address(big) % kRegion, 0u);
  EXPECT_EQ(pool.UsedBytes(), 2 * kRegion);
  std::memset(big, 1, kRegion - 1000);
  pool.ReleaseBlocks();
  EXPECT_EQ(pool.UsedBytes(), 0u);
  EXPECT_EQ(Address(pool.AllocateBlock(64)) % kRegion, 0u);
}

// How many of the pages of [p, p + bytes) (page-aligned) are resident.
size_t ResidentPages(const char* p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident(bytes / page);
  EXPECT_EQ(mincore(const_cast<char*>(p), bytes, resident.data()), 0);
  size_t count = 0;
  for (unsigned char r : resident) count += r & 1;
  return count;
}

TEST(HugePagePoolTest, ARegionGoesBackWholeOnceAllItsBlocksAreDiscarded) {
  HugePagePool pool;
  constexpr size_t kQuarter = kRegion / 4;
  char* blocks[4];
  for (char*& block : blocks) {
    block = pool.AllocateBlock(kQuarter);
    std::memset(block, 7, kQuarter);
  }
  char* other = pool.AllocateBlock(4096);  // the next region
  std::memset(other, 5, 4096);
  ASSERT_EQ(pool.UsedBytes(), 2 * kRegion);
  const size_t pages = kRegion / static_cast<size_t>(sysconf(_SC_PAGESIZE));
  ASSERT_EQ(ResidentPages(blocks[0], kRegion), pages);
  for (int i = 0; i < 3; ++i) pool.DiscardBlock(blocks[i], kQuarter);
  // Part of a region stays: giving it back would split its huge page.
  EXPECT_EQ(pool.UsedBytes(), 2 * kRegion);
  EXPECT_EQ(ResidentPages(blocks[0], kRegion), pages);
  EXPECT_EQ(blocks[3][kQuarter - 1], 7);
  pool.DiscardBlock(blocks[3], kQuarter);
  EXPECT_EQ(pool.UsedBytes(), kRegion);
  EXPECT_EQ(ResidentPages(blocks[0], kRegion), 0u);
  EXPECT_EQ(other[4095], 5);
  // Revived, a block counts again and reads as zeros.
  pool.ReviveBlock(blocks[1], kQuarter);
  EXPECT_EQ(pool.UsedBytes(), 2 * kRegion);
  EXPECT_EQ(blocks[1][0], 0);
  std::memset(blocks[1], 3, kQuarter);
  pool.DiscardBlock(blocks[1], kQuarter);
  EXPECT_EQ(pool.UsedBytes(), kRegion);
  pool.ReleaseBlocks();
  EXPECT_EQ(pool.UsedBytes(), 0u);
}

TEST(HugePagePoolTest, ABlockInTheTailOfARegionGivenBackCountsItAgain) {
  HugePagePool pool;
  char* block = pool.AllocateBlock(4096);
  pool.DiscardBlock(block, 4096);
  EXPECT_EQ(pool.UsedBytes(), 0u);
  char* next = pool.AllocateBlock(4096);
  EXPECT_EQ(next, block + 4096);
  EXPECT_EQ(pool.UsedBytes(), kRegion);
  pool.ReleaseBlocks();
  EXPECT_EQ(pool.UsedBytes(), 0u);
}

TEST(HugePagePoolTest, GivenBackRegionsAreReusedAndReadAsZeros) {
  HugePagePool pool;
  char* array = pool.AllocateArray(64 << 10);
  std::memset(array, 9, 64 << 10);
  pool.FreeArray(array, 64 << 10);
  EXPECT_EQ(pool.UsedBytes(), 0u);
  // The region comes back for the next slab, its old memory released.
  char* block = pool.AllocateBlock(4096);
  EXPECT_EQ(Address(block) & ~(kRegion - 1), Address(array) & ~(kRegion - 1));
  EXPECT_EQ(block[0], 0);
  EXPECT_EQ(block[4095], 0);
}

// How many of this process's mappings hold at least one of |addresses|.
int MappingsHolding(const std::vector<char*>& addresses) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int count = 0;
  while (std::getline(maps, line)) {
    uintptr_t begin, end;
    char dash;
    std::istringstream range(line);
    if (!(range >> std::hex >> begin >> dash >> end)) continue;
    for (const char* p : addresses) {
      if (begin <= Address(p) && Address(p) < end) {
        ++count;
        break;
      }
    }
  }
  return count;
}

TEST(HugePagePoolTest, ManyRegionsTakeFewMappings) {
  HugePagePool pool;
  // 512 MiB of blocks, one region each: chunks of 32, 64, 128, 256 and
  // 512 MiB (a region per mapping would be 256 mappings).
  std::vector<char*> blocks;
  for (int i = 0; i < 256; ++i) blocks.push_back(pool.AllocateBlock(kRegion));
  EXPECT_LE(MappingsHolding(blocks), 5);
  EXPECT_EQ(pool.UsedBytes(), 256 * kRegion);
}

// Regions taken until the pool runs out, in a child process whose address
// space may grow by |headroom| bytes: returns the bytes taken (its exit
// code counts them in regions).
size_t BytesTakenWithin(size_t headroom) {
  const pid_t child = fork();
  if (child == 0) {
    std::ifstream statm("/proc/self/statm");
    size_t pages = 0;
    statm >> pages;
    const size_t mapped = pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const rlimit limit{mapped + headroom, mapped + headroom};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(255);
    HugePagePool pool;
    int regions = 0;
    try {
      while (regions < 254) {
        pool.AllocateBlock(kRegion);
        ++regions;
      }
    } catch (const std::bad_alloc&) {
    }
    _exit(regions);
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 255) return 0;
  return WEXITSTATUS(status) * kRegion;
}

TEST(HugePagePoolTest, UsesMostOfAnAddressSpaceLimit) {
  // Chunks of 32, 64, 128 and 256 MiB fit in 480 MiB; the next doubling
  // (512 MiB) does not, and smaller chunks must take the rest.
  constexpr size_t kHeadroom = size_t{500} << 20;
  const size_t taken = BytesTakenWithin(kHeadroom);
  ASSERT_GT(taken, 0u) << "the child could not run";
  EXPECT_GT(taken, size_t{480} << 20);
}

TEST(HugePagePoolTest, RejectsSizesItCannotServe) {
  HugePagePool pool;
  EXPECT_THROW(pool.AllocateArray(3 << 12), std::bad_alloc);
  EXPECT_THROW(pool.AllocateArray(1024), std::bad_alloc);
  EXPECT_THROW(pool.AllocateBlock(kRegion + 1), std::bad_alloc);
  EXPECT_EQ(pool.UsedBytes(), 0u);
}

// Whether the mapping holding |p| carries |flag| in /proc/self/smaps'
// VmFlags ("hg": advised huge pages, "dc": not copied on fork).
bool HasVmFlag(const char* p, const std::string& flag) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t begin, end;
    char dash;
    std::istringstream range(line);
    if (line.find("VmFlags:") == 0) {
      if (inside) {
        return (line + " ").find(" " + flag + " ") != std::string::npos;
      }
    } else if (range >> std::hex >> begin >> dash >> end && dash == '-') {
      inside = begin <= Address(p) && Address(p) < end;
    }
  }
  return false;
}

TEST(HugePagePoolTest, RegionsAreAdvisedHugePages) {
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled")) {
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  }
  HugePagePool pool;
  EXPECT_TRUE(HasVmFlag(pool.AllocateArray(64 << 10), "hg"));
  EXPECT_TRUE(HasVmFlag(pool.AllocateBlock(4096), "hg"));
  EXPECT_FALSE(HasVmFlag(reinterpret_cast<const char*>(&pool), "hg"));
}

TEST(HugePagePoolTest, MappingsAreNotCopiedOnFork) {
  // A fork (Python's multiprocessing forks by default) would share every
  // table page copy-on-write, and each huge page the parent then wrote
  // would be copied in 4 KiB pages.
  HugePagePool pool;
  EXPECT_TRUE(HasVmFlag(pool.AllocateArray(64 << 10), "dc"));
  EXPECT_TRUE(HasVmFlag(pool.AllocateArray(8 * kRegion), "dc"));
  EXPECT_TRUE(HasVmFlag(pool.AllocateBlock(4096), "dc"));
  EXPECT_FALSE(HasVmFlag(reinterpret_cast<const char*>(&pool), "dc"));
}

TEST(HugePagePoolTest, ThreadsAllocateAndFreeConcurrently) {
  HugePagePool pool;
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&pool, &failures, t] {
      for (int round = 0; round < 200; ++round) {
        const size_t bytes = size_t{4096} << (round % 5);
        char* array = pool.AllocateArray(bytes);
        char* block = pool.AllocateBlock(1000);
        std::memset(array, t, bytes);
        std::memset(block, t, 1000);
        std::this_thread::yield();
        if (array[0] != t || array[bytes - 1] != t || block[999] != t) {
          ++failures[t];
        }
        pool.FreeArray(array, bytes);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, std::vector<int>(kThreads, 0));
  pool.ReleaseBlocks();
  EXPECT_EQ(pool.UsedBytes(), 0u);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
