// Memory for a large table's slot arrays and arena blocks, carved out of
// 2 MiB-aligned regions that the kernel is asked to back with transparent
// huge pages (madvise MADV_HUGEPAGE; honoured when THP is "always" or
// "madvise", harmless when it is "never").
//
// Why: a lookup reads one slot and one entry at random. On 4 KiB pages the
// TLB covers a few MiB, so in a table of hundreds of MiB nearly every access
// also walks the page tables, and under a hypervisor that walk is two
// levels deep. One 2 MiB page covers what 512 small ones do. Measured on
// the 2-core KVM development VM: a random 64-byte read loop ran 36 M/s on
// 4 KiB pages and 59 M/s on huge pages.
//
// Two kinds of memory, both thread-safe:
// * Blocks (AllocateBlock): bump-allocated, 128-byte aligned, any size up
//   to a region; freed all at once by ReleaseBlocks. Arena blocks are never
//   freed one by one, so this wastes only a region's tail that a block did
//   not fit in.
// * Arrays (AllocateArray/FreeArray): power-of-two sizes, freed one by one
//   (a shard's slot array, replaced at every rehash). Arrays smaller than a
//   region share regions with arrays of their size only (a slab per size);
//   a region is unmapped as soon as its last array is freed, so the old
//   arrays of a growing table do not linger. Larger arrays get their own
//   mapping.
// Memory is returned to the system on free and on destruction.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HUGE_PAGE_POOL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HUGE_PAGE_POOL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace monolith {
namespace hash_table {

class HugePagePool {
 public:
  static constexpr size_t kRegionBytes = size_t{2} << 20;
  static constexpr size_t kBlockAlignment = 128;
  static constexpr size_t kMinArrayBytes = size_t{4} << 10;

  HugePagePool() = default;
  ~HugePagePool();
  HugePagePool(const HugePagePool&) = delete;
  HugePagePool& operator=(const HugePagePool&) = delete;

  // |bytes| in (0, kRegionBytes]. Throws std::bad_alloc when the system has
  // no memory, as operator new does.
  char* AllocateBlock(size_t bytes);
  // Frees every block.
  void ReleaseBlocks();

  // |bytes|: a power of two, at least kMinArrayBytes.
  char* AllocateArray(size_t bytes);
  // |array| from AllocateArray(|bytes|).
  void FreeArray(char* array, size_t bytes);

  // Bytes mapped from the system (blocks, arrays, and the free parts of
  // their regions).
  size_t MappedBytes() const;

 private:
  // A region carved into arrays of one size.
  struct Slab {
    int size_log2;
    std::vector<uint32_t> free;  // indices of its free arrays
  };

  // log2 of the largest array a slab holds; larger ones are mapped alone.
  static constexpr int kMaxSlabLog2 = 20;

  mutable std::mutex mu_;
  // Blocks: full regions, and the one being filled from `block_cursor_`.
  std::vector<char*> block_regions_;
  size_t block_cursor_ = kRegionBytes;
  // Arrays: slabs by region address, the slabs of each size that have a
  // free array, and arrays of a region or more (address -> bytes).
  std::map<uintptr_t, Slab> slabs_;
  std::set<uintptr_t> slabs_with_room_[kMaxSlabLog2 + 1];
  std::map<uintptr_t, size_t> large_arrays_;
  size_t mapped_bytes_ = 0;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HUGE_PAGE_POOL_H_
