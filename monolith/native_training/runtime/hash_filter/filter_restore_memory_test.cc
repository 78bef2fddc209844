// How much memory a filter restore holds at its peak. The binary replaces
// the global operator new and delete to count the bytes live on the heap,
// so it has a test file of its own.
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/filter_checkpoint.h"
#include "monolith/native_training/runtime/hash_filter/hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace {

std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};

void* Allocate(size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  const int64_t live =
      live_bytes.fetch_add(static_cast<int64_t>(malloc_usable_size(p))) +
      static_cast<int64_t>(malloc_usable_size(p));
  int64_t peak = peak_bytes.load();
  while (live > peak && !peak_bytes.compare_exchange_weak(peak, live)) {
  }
  return p;
}

void Free(void* p) {
  if (p == nullptr) return;
  live_bytes.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)));
  std::free(p);
}

}  // namespace

void* operator new(size_t size) { return Allocate(size); }
void* operator new[](size_t size) { return Allocate(size); }
void operator delete(void* p) noexcept { Free(p); }
void operator delete[](void* p) noexcept { Free(p); }
void operator delete(void* p, size_t) noexcept { Free(p); }
void operator delete[](void* p, size_t) noexcept { Free(p); }

namespace monolith {
namespace hash_filter {
namespace {

using ::monolith::hash_table::PosixFileSystem;
using ::monolith::hash_table::SerialFor;
using ::monolith::hash_table::Status;

std::string NewDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp ? tmp : "/tmp") + "/frm_" + name +
                          "_" + std::to_string(getpid());
  PosixFileSystem fs;
  EXPECT_OK(fs.CreateDirectories(dir));
  return dir;
}

// A file reader's buffer (record_file.cc: reads of up to 4 MiB), with
// room for the small allocations beside it.
constexpr int64_t kReaderBytes = 5 << 20;

// Saves |filter| (filled with ids first), then restores it beside it, as
// a restore beside training does, one split at a time; returns the most
// bytes the restore held beyond what was live before it, less a file
// reader's buffer, over the filter's own bytes.
double RestorePeakOverFilterBytes(Filter* filter, const std::string& name) {
  for (int64_t id = 0; id < 200000; ++id) {
    filter->ShouldBeFiltered(id * 7919, 1, 3, nullptr);
  }
  PosixFileSystem fs;
  const std::string basename = NewDir(name) + "/hash_filter_0";
  Status s = SaveFilterCheckpoint(&fs, basename, *filter, SerialFor);
  EXPECT_OK(s);
  std::unique_ptr<Filter> restored;
  const int64_t before = live_bytes.load();
  peak_bytes.store(before);
  s = RestoreFilterCheckpoint(&fs, basename, *filter, SerialFor, &restored);
  if (!s.ok() || restored == nullptr) {
    ADD_FAILURE() << "restore: " << s.ToString();
    return 0;
  }
  EXPECT_EQ(restored->estimated_total_element(),
            filter->estimated_total_element());
  EXPECT_EQ(restored->MemoryBytes(), filter->MemoryBytes());
  return static_cast<double>(peak_bytes.load() - before - kReaderBytes) /
         static_cast<double>(filter->MemoryBytes());
}

// A restore reads each split's cells once and keeps them: it holds the
// filter's bytes once, plus its readers' buffers, not a copy of the live
// filter's cells besides (2x; with the splits being read, up to 3x when
// they are all read at once).
TEST(FilterRestoreMemoryTest, HashFilterRestoreHoldsTheFilterOnce) {
  std::unique_ptr<HashFilter> filter;
  ASSERT_OK(HashFilter::Create(8000000, 2.0, &filter));
  const double peak = RestorePeakOverFilterBytes(filter.get(), "hash");
  std::printf("peak / filter bytes: %.3f\n", peak);
  EXPECT_LT(peak, 1.15);
}

TEST(FilterRestoreMemoryTest, SlidingFilterRestoreHoldsTheFilterOnce) {
  std::unique_ptr<SlidingHashFilter> filter;
  ASSERT_OK(SlidingHashFilter::Create(8000000, 3, &filter));
  const double peak = RestorePeakOverFilterBytes(filter.get(), "sliding");
  std::printf("peak / filter bytes: %.3f\n", peak);
  EXPECT_LT(peak, 1.15);
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
