#include "monolith/native_training/runtime/hash_table/huge_page_pool.h"

#include <sys/mman.h>

#include <new>
#include <utility>

#include "monolith/native_training/runtime/hash_table/vector_room.h"

namespace monolith {
namespace hash_table {
namespace {

// Maps |bytes| (a multiple of the region size) at a region-aligned address,
// the only place a transparent huge page can start, and asks for huge pages.
// MAP_NORESERVE: address space only; memory is taken as pages are touched.
// Not copied on fork: a child sharing the tables copy-on-write (Python's
// multiprocessing forks by default) would make each huge page the parent
// writes next a copy in 4 KiB pages, and a forked child cannot use TF.
char* MapAligned(size_t bytes) {
  const size_t padded = bytes + HugePagePool::kRegionBytes;
  void* raw = mmap(nullptr, padded, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (begin + HugePagePool::kRegionBytes - 1) &
                            ~(uintptr_t{HugePagePool::kRegionBytes} - 1);
  if (aligned > begin) munmap(raw, aligned - begin);
  const uintptr_t end = begin + padded;
  if (end > aligned + bytes) {
    munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  }
  char* mapped = reinterpret_cast<char*>(aligned);
  // Advice only: without THP the range simply keeps 4 KiB pages.
  madvise(mapped, bytes, MADV_HUGEPAGE);
  madvise(mapped, bytes, MADV_DONTFORK);
  return mapped;
}

int Log2(size_t power_of_two) { return __builtin_ctzll(power_of_two); }

// The bytes AllocateBlock takes for a block of |bytes|.
size_t BlockBytes(size_t bytes) {
  return (bytes + HugePagePool::kBlockAlignment - 1) &
         ~(HugePagePool::kBlockAlignment - 1);
}

}  // namespace

HugePagePool::~HugePagePool() {
  for (const auto& [chunk, bytes] : chunks_) munmap(chunk, bytes);
  for (const auto& [array, bytes] : large_arrays_) {
    munmap(reinterpret_cast<void*>(array), bytes);
  }
}

char* HugePagePool::TakeRegion() {
  if (!free_regions_.empty()) {
    char* region = free_regions_.back();
    free_regions_.pop_back();
    used_bytes_ += kRegionBytes;
    return region;
  }
  // Room to give every region back (ReturnRegion must not fail), and for
  // the chunk below, before anything is mapped.
  ReserveRoomFor(&free_regions_, regions_ + 1 - free_regions_.size());
  if (chunk_cursor_ == chunk_end_) {
    ReserveRoomFor(&chunks_, 1);
    // Each chunk twice the last: few mappings, and at most half of the
    // address space unused. Where that much cannot be mapped (an address
    // space limit, strict overcommit), half as much, down to one region:
    // the pool would otherwise run out with up to half the limit free.
    size_t bytes =
        chunks_.empty() ? kFirstChunkBytes : 2 * chunks_.back().second;
    char* chunk = nullptr;
    while (chunk == nullptr) {
      try {
        chunk = MapAligned(bytes);
      } catch (const std::bad_alloc&) {
        if (bytes == kRegionBytes) throw;
        bytes /= 2;
      }
    }
    chunks_.emplace_back(chunk, bytes);
    chunk_cursor_ = chunk;
    chunk_end_ = chunk + bytes;
  }
  ++regions_;
  char* region = chunk_cursor_;
  chunk_cursor_ += kRegionBytes;
  // Counted once taken: a failed mapping (std::bad_alloc) counts nothing.
  used_bytes_ += kRegionBytes;
  return region;
}

void HugePagePool::ReturnRegion(char* region) {
  // The memory goes back to the system; the range stays ours, and reads as
  // zeros when it is next used.
  madvise(region, kRegionBytes, MADV_DONTNEED);
  free_regions_.push_back(region);  // room kept by TakeRegion
  used_bytes_ -= kRegionBytes;
}

char* HugePagePool::AllocateBlock(size_t bytes) {
  bytes = BlockBytes(bytes);
  if (bytes == 0 || bytes > kRegionBytes) throw std::bad_alloc();
  std::lock_guard<std::mutex> lock(mu_);
  if (block_cursor_ + bytes > kRegionBytes) {
    ReserveRoomFor(&block_regions_, 1);
    char* region = TakeRegion();
    try {
      block_region_live_bytes_.emplace(reinterpret_cast<uintptr_t>(region), 0);
    } catch (const std::bad_alloc&) {
      ReturnRegion(region);
      throw;
    }
    block_regions_.push_back(region);
    block_cursor_ = 0;
  }
  char* block = block_regions_.back() + block_cursor_;
  size_t& live = LiveBytesOf(block);
  // The tail of a region whose blocks were all discarded, given back (a
  // new region, at cursor 0, TakeRegion counted).
  if (live == 0 && block_cursor_ > 0) used_bytes_ += kRegionBytes;
  block_cursor_ += bytes;
  live += bytes;
  return block;
}

void HugePagePool::ReleaseBlocks() {
  std::lock_guard<std::mutex> lock(mu_);
  for (char* region : block_regions_) {
    // Counted once as given back.
    if (LiveBytesOf(region) == 0) used_bytes_ += kRegionBytes;
    ReturnRegion(region);
  }
  block_regions_.clear();
  block_region_live_bytes_.clear();
  block_cursor_ = kRegionBytes;
}

size_t& HugePagePool::LiveBytesOf(const char* block) {
  // Regions start on region boundaries (MapAligned).
  return block_region_live_bytes_
      .find(reinterpret_cast<uintptr_t>(block) & ~(uintptr_t{kRegionBytes} - 1))
      ->second;
}

void HugePagePool::DiscardBlock(char* block, size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t& live = LiveBytesOf(block);
  live -= BlockBytes(bytes);
  if (live == 0) {
    char* region = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(block) &
                                           ~(uintptr_t{kRegionBytes} - 1));
    madvise(region, kRegionBytes, MADV_DONTNEED);
    used_bytes_ -= kRegionBytes;
  }
}

void HugePagePool::ReviveBlock(char* block, size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t& live = LiveBytesOf(block);
  if (live == 0) used_bytes_ += kRegionBytes;
  live += BlockBytes(bytes);
}

char* HugePagePool::AllocateArray(size_t bytes) {
  if (bytes < kMinArrayBytes || (bytes & (bytes - 1)) != 0) {
    throw std::bad_alloc();
  }
  const int size_log2 = Log2(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  if (size_log2 > kMaxSlabLog2) {
    char* array = MapAligned(bytes);
    try {
      large_arrays_[reinterpret_cast<uintptr_t>(array)] = bytes;
    } catch (const std::bad_alloc&) {
      munmap(array, bytes);
      throw;
    }
    used_bytes_ += bytes;
    return array;
  }
  std::set<uintptr_t>& with_room = slabs_with_room_[size_log2];
  if (with_room.empty()) {
    // Built before its region is taken: out of memory then takes nothing.
    Slab slab{size_log2, {}};
    slab.free.reserve(kRegionBytes >> size_log2);
    for (uint32_t i = kRegionBytes >> size_log2; i > 0; --i) {
      slab.free.push_back(i - 1);
    }
    const uintptr_t region = reinterpret_cast<uintptr_t>(TakeRegion());
    try {
      slabs_.emplace(region, std::move(slab));
      with_room.insert(region);
    } catch (const std::bad_alloc&) {
      slabs_.erase(region);
      ReturnRegion(reinterpret_cast<char*>(region));
      throw;
    }
  }
  // The lowest region with room, so arrays pack into few regions and the
  // others can empty and be given back.
  const uintptr_t region = *with_room.begin();
  Slab& slab = slabs_[region];
  const uint32_t index = slab.free.back();
  slab.free.pop_back();
  if (slab.free.empty()) with_room.erase(region);
  return reinterpret_cast<char*>(region + (uintptr_t{index} << size_log2));
}

void HugePagePool::FreeArray(char* array, size_t bytes) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(array);
  std::lock_guard<std::mutex> lock(mu_);
  if (Log2(bytes) > kMaxSlabLog2) {
    large_arrays_.erase(address);
    munmap(array, bytes);
    used_bytes_ -= bytes;
    return;
  }
  const uintptr_t region = address & ~(uintptr_t{kRegionBytes} - 1);
  Slab& slab = slabs_.at(region);
  // Within the capacity the slab was built with: no allocation.
  slab.free.push_back(static_cast<uint32_t>((address - region) >>
                                            slab.size_log2));
  if (slab.free.size() == (kRegionBytes >> slab.size_log2)) {
    slabs_with_room_[slab.size_log2].erase(region);
    slabs_.erase(region);
    ReturnRegion(reinterpret_cast<char*>(region));
    return;
  }
  try {
    slabs_with_room_[slab.size_log2].insert(region);
  } catch (const std::bad_alloc&) {
    // Freeing must not fail (it runs on error and destruction paths). The
    // slab's free arrays are then not handed out again until all of its
    // arrays are freed and its region is given back.
  }
}

size_t HugePagePool::UsedBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_bytes_;
}

}  // namespace hash_table
}  // namespace monolith
