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
//   to a region; freed all at once by ReleaseBlocks. A block may be
//   discarded (its contents dropped) and revived; a region whose blocks are
//   all discarded goes back to the system whole. Arena blocks are never
//   freed one by one, so this wastes only a region's tail that a block did
//   not fit in.
// * Arrays (AllocateArray/FreeArray): power-of-two sizes, freed one by one
//   (a shard's slot array, replaced at every rehash). Arrays smaller than a
//   region share regions with arrays of their size only (a slab per size);
//   a region's memory goes back to the system as soon as its last array is
//   freed, so the old arrays of a growing table do not linger. Larger
//   arrays get their own mapping.
// Regions are carved from chunks of address space that double as the pool
// grows, so a pool of any size needs few mappings (a process may have only
// vm.max_map_count, ~65k, of them); a region given back keeps its address
// range (its memory released with MADV_DONTNEED) and is reused first.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HUGE_PAGE_POOL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HUGE_PAGE_POOL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <utility>
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
  // no memory, as operator new does, and then holds what it held before.
  char* AllocateBlock(size_t bytes);
  // Frees every block. Throws nothing.
  void ReleaseBlocks();
  // |block| (AllocateBlock(|bytes|)) holds nothing now: once every block
  // of its region does, the region's memory goes back to the system, the
  // whole region at once (giving back part of it would split its huge
  // page, and every block left in it would then take 4 KiB pages for good).
  // The block stays the caller's. Throws nothing.
  void DiscardBlock(char* block, size_t bytes);
  // |block|, discarded, is about to hold data again (call before writing
  // it: it reads as zeros where its region went back). Throws nothing.
  void ReviveBlock(char* block, size_t bytes);

  // |bytes|: a power of two, at least kMinArrayBytes. Throws as
  // AllocateBlock does.
  char* AllocateArray(size_t bytes);
  // |array| from AllocateArray(|bytes|). Throws nothing.
  void FreeArray(char* array, size_t bytes);

  // Bytes of the regions and large arrays that hold blocks or arrays (with
  // the free parts of those regions): what the pool keeps from the system.
  size_t UsedBytes() const;

 private:
  // A region carved into arrays of one size.
  struct Slab {
    int size_log2;
    std::vector<uint32_t> free;  // indices of its free arrays
  };
  // log2 of the largest array a slab holds; larger ones are mapped alone.
  static constexpr int kMaxSlabLog2 = 20;
  static constexpr size_t kFirstChunkBytes = size_t{32} << 20;

  // A region for blocks or a slab; callers hold mu_.
  char* TakeRegion();
  void ReturnRegion(char* region);

  mutable std::mutex mu_;
  // Address space: chunks (for the destructor), the rest of the newest
  // chunk, and regions given back.
  std::vector<std::pair<char*, size_t>> chunks_;
  char* chunk_cursor_ = nullptr;
  char* chunk_end_ = nullptr;
  std::vector<char*> free_regions_;
  size_t regions_ = 0;  // regions carved from chunks
  // Blocks: full regions, and the one being filled from `block_cursor_`.
  std::vector<char*> block_regions_;
  size_t block_cursor_ = kRegionBytes;
  // Per region of blocks, the bytes of its blocks not discarded: none, once
  // it holds a block, means its memory went back.
  std::map<uintptr_t, size_t> block_region_live_bytes_;
  // The live bytes of |block|'s region; callers hold mu_.
  size_t& LiveBytesOf(const char* block);
  // Arrays: slabs by region address, the slabs of each size that have a
  // free array, and arrays of a region or more (address -> bytes).
  std::map<uintptr_t, Slab> slabs_;
  std::set<uintptr_t> slabs_with_room_[kMaxSlabLog2 + 1];
  std::map<uintptr_t, size_t> large_arrays_;
  size_t used_bytes_ = 0;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HUGE_PAGE_POOL_H_
