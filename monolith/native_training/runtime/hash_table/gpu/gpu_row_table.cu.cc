// GpuRowTable's kernels and host code (see gpu_row_table.h).
//
// Layout: one open-addressing map per table (MapView): an array of ids in
// buckets of 16 (one 128-byte line each) and, beside it, a row of
// row_floats floats per slot, each starting on a 32-byte sector. Kernels
// work in tiles of kTile threads: a tile reads a whole bucket in one step
// (each lane 4 of its ids), then shares the row's columns.
//
// Writing batches: the ids of up to 16 tables' batches are sorted together
// with their positions (cub's radix sort, stable), so each table's repeats
// of an id are adjacent in input order (gpu_write_runs.h); the first of
// each such run (its head) is the one that probes and inserts, and its tile
// then applies the whole run in order. No two tiles ever touch one row, so
// rows need no locks and repeated ids behave as on the CPU.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <cub/device/device_radix_sort.cuh>
#include <string>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/feature_slot.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_table.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_write_runs.h"
#include "monolith/native_training/runtime/hash_table/id_hash.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

namespace cg = cooperative_groups;

constexpr int kTile = 4;
constexpr int kBlock = 128;
static_assert(kBlock % 32 == 0, "lookups copy rows by whole warps");

using Tile = cg::thread_block_tile<kTile>;

// A map's buckets: kBucketSlots ids, read by a tile's lanes kLaneSlots
// each (two 16-byte loads). On an H200, buckets of 8 ids found 24 % fewer
// keys per second at load 0.9 (dim 32) and as many at 0.5.
constexpr int kBucketSlots = 16;
constexpr int kLaneSlots = kBucketSlots / kTile;
static_assert(kLaneSlots % 2 == 0, "a lane loads its ids as longlong2s");

// Floats from one row to the next: rows start on 32-byte sectors, so a
// row's embedding spans no more sectors than it fills and lookups copy it
// as float4s. (Adagrad rows of dim 32, 66 floats, take 72.)
constexpr int kRowAlignFloats = 8;
inline int RowStride(int row_floats) {
  return (row_floats + kRowAlignFloats - 1) / kRowAlignFloats *
         kRowAlignFloats;
}

// One table's map on the device (the storage is OwnedMap's). An id lives in
// the first bucket along its probe sequence (its home bucket, then the
// next ones, wrapping) that had a free slot when it was inserted, in the
// lowest free slot there. Ids are never removed in place (eviction and
// growth rebuild the map), so a bucket with a free slot ends every search:
// a lookup reads one 128-byte line per bucket, and at the loads tables run
// at nearly every search ends in its home bucket. New rows are zeros (the
// whole row array is zeroed when the map is made).
struct MapView {
  int64_t* ids = nullptr;  // capacity, kEmptySlotId where free
  float* rows = nullptr;   // capacity * row_stride
  int64_t num_buckets = 0;
  uint64_t hash_seed = 0;  // GpuRowTableSpec::hash_seed
  int row_floats = 0;
  int row_stride = 0;  // RowStride(row_floats)

  __device__ float* Row(int64_t slot) const { return rows + slot * row_stride; }

  // The slot holding |id|, or -1 (tile-wide).
  __device__ int64_t Find(const Tile& tile, int64_t id) const {
    return Probe</*insert=*/false>(tile, id, nullptr);
  }

  // The slot holding |id|, which it claims if absent (*fresh says which;
  // tile-wide). -1 only if every slot is taken, which growth prevents
  // (tables stay below max_load < 1).
  __device__ int64_t FindOrInsert(const Tile& tile, int64_t id,
                                  bool* fresh) const {
    return Probe</*insert=*/true>(tile, id, fresh);
  }

 private:
  template <bool kInsert>
  __device__ int64_t Probe(const Tile& tile, int64_t id, bool* fresh) const {
    const int lane = tile.thread_rank();
    int64_t bucket = static_cast<int64_t>(
        __umul64hi(MixId(id, hash_seed), static_cast<uint64_t>(num_buckets)));
    for (int64_t probes = 0; probes < num_buckets;) {
      // Inserts read past L1 (other tiles claim slots meanwhile); lookups
      // run while nothing writes.
      const longlong2* line = reinterpret_cast<const longlong2*>(
          ids + bucket * kBucketSlots + lane * kLaneSlots);
      int64_t mine[kLaneSlots];
#pragma unroll
      for (int j = 0; j < kLaneSlots / 2; ++j) {
        const longlong2 pair = kInsert ? __ldcg(line + j) : __ldg(line + j);
        mine[2 * j] = pair.x;
        mine[2 * j + 1] = pair.y;
      }
      int match = -1;
      int free_slot = -1;
#pragma unroll
      for (int j = kLaneSlots - 1; j >= 0; --j) {
        if (mine[j] == id) match = j;
        if (mine[j] == kEmptySlotId) free_slot = j;
      }
      const unsigned matched = tile.ballot(match >= 0);
      if (matched != 0) {
        const int from = __ffs(matched) - 1;
        if (kInsert) *fresh = false;
        return bucket * kBucketSlots + from * kLaneSlots +
               tile.shfl(match, from);
      }
      const unsigned free_lanes = tile.ballot(free_slot >= 0);
      if (free_lanes != 0) {
        if (!kInsert) return -1;
        const int from = __ffs(free_lanes) - 1;
        const int64_t slot = bucket * kBucketSlots + from * kLaneSlots +
                             tile.shfl(free_slot, from);
        unsigned long long seen = 0;
        if (lane == from) {
          seen = atomicCAS(reinterpret_cast<unsigned long long*>(ids + slot),
                           static_cast<unsigned long long>(kEmptySlotId),
                           static_cast<unsigned long long>(id));
        }
        seen = tile.shfl(seen, from);
        if (seen == static_cast<unsigned long long>(kEmptySlotId) ||
            seen == static_cast<unsigned long long>(id)) {
          *fresh = seen == static_cast<unsigned long long>(kEmptySlotId);
          return slot;
        }
        continue;  // another id took the slot first: read the bucket again
      }
      bucket = bucket + 1 == num_buckets ? 0 : bucket + 1;
      ++probes;
    }
    return -1;
  }
};

Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return Status::OK();
  cudaGetLastError();  // reported here, not again by the next launch
  return InternalError(std::string("GPU table: ") + what + ": " +
                       cudaGetErrorString(error));
}

#define MONOLITH_CUDA_RETURN_IF_ERROR(expr, what) \
  MONOLITH_RETURN_IF_ERROR(CudaStatus((expr), (what)))

// The status of an allocation call of |bytes| for |what|: ResourceExhausted
// when the memory is not there. A failed allocation also stays the
// thread's last error, which the next kernel launch's cudaGetLastError
// would report as its own: cleared here.
Status AllocStatus(cudaError_t error, size_t bytes, const std::string& what,
                   const char* call) {
  if (error == cudaSuccess) return Status::OK();
  cudaGetLastError();
  if (error == cudaErrorMemoryAllocation) {
    return ResourceExhaustedError("GPU table: cannot allocate " +
                                  std::to_string(bytes) + " bytes for " +
                                  what + " (" + call + "): out of memory");
  }
  return CudaStatus(error, call);
}

// Makes |device| current on this thread (TF's threads serve several).
Status UseDevice(int device) {
  return CudaStatus(cudaSetDevice(device), "cudaSetDevice");
}

// Batches are at most 2^31 - 1 ids (cub's sort and the grid size).
Status CheckBatch(int64_t n) {
  if (n < 0 || n > int64_t{0x7fffffff}) {
    return InvalidArgumentError("GPU table: a batch of " + std::to_string(n) +
                                " ids; it must hold 0 to 2^31 - 1");
  }
  return Status::OK();
}

unsigned GridFor(int64_t tiles) {
  return static_cast<unsigned>((tiles * kTile + kBlock - 1) / kBlock);
}

// The tile of this thread and the item (id, slot) it works on.
__device__ cg::thread_block_tile<kTile> ThisTile() {
  return cg::tiled_partition<kTile>(cg::this_thread_block());
}

__device__ int64_t TileIndex() {
  return (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) / kTile;
}

// A new row's initial values and optimizer state (the rest of the row is
// zero already), the tile sharing the columns.
__device__ void InitRow(const cg::thread_block_tile<kTile>& tile, int64_t id,
                        const GpuSegment* segments, int num_segments,
                        float* row) {
  for (int s = 0; s < num_segments; ++s) {
    const GpuSegment seg = segments[s];
    for (int c = tile.thread_rank(); c < seg.dim; c += kTile) {
      InitColumn(seg, id, c, row);
    }
  }
}

// The lookups of one launch: up to kLookupsPerLaunch batches, of any
// tables, whose ids the launch's tiles take one after the other. Passed by
// value (about 1.5 KB of kernel parameters): no copy to the device first.
constexpr int kLookupsPerLaunch = 16;

struct LookupLaunch {
  struct Part {
    MapView view;
    const int64_t* ids = nullptr;
    float* out = nullptr;
    bool* found = nullptr;  // per id, whether the table has it (optional)
    int64_t first = 0;  // the launch's position of the part's first id
    int width = 0;  // the floats copied per id: the embedding, or the row
    // SERVING rows' embeddings are decoded segment by segment (device).
    const GpuSegment* segments = nullptr;
    int num_segments = 0;
    bool decode = false;
  };
  Part parts[kLookupsPerLaunch];
  int count = 0;  // parts, each with at least one id
  int64_t n = 0;  // ids in all
};

constexpr int kWarp = 32;
constexpr int kTilesPerWarp = kWarp / kTile;
constexpr unsigned kFullWarp = 0xffffffffu;

// The warp copies the rows of its plain lookups: every lane passes its
// tile's row (null where absent: zeros are written), its output and its
// width (0 for none); all 32 lanes then copy the 8 rows together
// (coalesced), each lane with its loads of them in flight before it
// stores any. Tiles of 4 lanes copying their own rows made each load a
// scattered 16 bytes, one row at a time.
__device__ void CopyRowsByWarp(const float* row, float* dst, int width) {
  const int lane = threadIdx.x % kWarp;
  const float* src[kTilesPerWarp];
  float* to[kTilesPerWarp];
  int widths[kTilesPerWarp];
  int max_width = 0;
#pragma unroll
  for (int t = 0; t < kTilesPerWarp; ++t) {
    const int from = t * kTile;
    widths[t] = __shfl_sync(kFullWarp, width, from);
    to[t] = reinterpret_cast<float*>(__shfl_sync(
        kFullWarp, reinterpret_cast<unsigned long long>(dst), from));
    src[t] = reinterpret_cast<const float*>(__shfl_sync(
        kFullWarp, reinterpret_cast<unsigned long long>(row), from));
    max_width = max(max_width, widths[t]);
  }
  for (int c = lane; c - lane < max_width; c += kWarp) {
    float value[kTilesPerWarp];
#pragma unroll
    for (int t = 0; t < kTilesPerWarp; ++t) {
      value[t] = c < widths[t] && src[t] != nullptr ? src[t][c] : 0.0f;
    }
#pragma unroll
    for (int t = 0; t < kTilesPerWarp; ++t) {
      if (c < widths[t]) to[t][c] = value[t];
    }
  }
}

// CopyRowsByWarp by float4s, where every width is a multiple of 4 and
// every output 16-byte aligned (rows are: RowStride). The warp's rows are
// cut into float4 chunks, lane after lane; a lane loads up to
// kChunksInFlight of them before it stores any, so the 8 rows of dim 128
// move in one round trip (as floats, in four).
template <int kChunksInFlight>
__device__ void CopyRowsByWarpAsVectors(const float* row, float* dst,
                                        int width) {
  const int lane = threadIdx.x % kWarp;
  const int chunks = width / 4;
  const int max_chunks = __reduce_max_sync(kFullWarp, chunks);
  const int total = kTilesPerWarp * max_chunks;
  for (int base = 0; base < total; base += kWarp * kChunksInFlight) {
    float4 value[kChunksInFlight];
    float4* to[kChunksInFlight];
#pragma unroll
    for (int u = 0; u < kChunksInFlight; ++u) {
      const int j = base + u * kWarp + lane;
      const int t = min(j / max_chunks, kTilesPerWarp - 1);
      const int c = j - t * max_chunks;
      const int from = t * kTile;
      const float4* src = reinterpret_cast<const float4*>(__shfl_sync(
          kFullWarp, reinterpret_cast<unsigned long long>(row), from));
      float4* out = reinterpret_cast<float4*>(__shfl_sync(
          kFullWarp, reinterpret_cast<unsigned long long>(dst), from));
      // Every lane shuffles (a lane past the end too: its source lane must
      // take part).
      const int tile_chunks = __shfl_sync(kFullWarp, chunks, from);
      const bool copy = j < total && c < tile_chunks;
      to[u] = copy ? out + c : nullptr;
      value[u] = copy && src != nullptr ? src[c] : make_float4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kChunksInFlight; ++u) {
      if (to[u] != nullptr) *to[u] = value[u];
    }
  }
}

// __grid_constant__: the parts are read where the parameters are, not
// copied per thread. Every lane runs to the end (the warp copies rows
// together); a tile past the last id looks nothing up.
// kChunksInFlight: 0 copies rows by CopyRowsByWarp, else by
// CopyRowsByWarpAsVectors with that many chunks in flight (every part's
// width a multiple of 4 and its output 16-byte aligned: LaunchLookup
// checks). Each kernel holds one copy loop: fewer registers, more warps
// per multiprocessor. The narrow one (rows of at most 32 floats) runs at
// full occupancy: 16 blocks per multiprocessor hold it to 32 registers (a
// few spill). On an H200, against its 48 registers unbounded, dim-32 find
// rose from 8.58 to 8.87 B keys/s at load 0.5 and from 6.16 to 7.14 at
// load 0.9 (12 blocks, 40 registers: 8.82 and 6.62).
constexpr int LookupMinBlocks(int chunks_in_flight) {
  return chunks_in_flight == 2 ? 16 : 1;
}

template <int kChunksInFlight>
__global__ void __launch_bounds__(kBlock, LookupMinBlocks(kChunksInFlight))
    LookupKernel(const __grid_constant__ LookupLaunch launch) {
  const int64_t i = TileIndex();
  auto tile = ThisTile();
  const bool active = i < launch.n;
  // The row this tile's lane copies (plain lookups): from, to, floats.
  float* row = nullptr;
  float* dst = nullptr;
  int width = 0;
  if (active) {
    int p = 0;
    while (p + 1 < launch.count && launch.parts[p + 1].first <= i) ++p;
    const LookupLaunch::Part& part = launch.parts[p];
    const int64_t k = i - part.first;
    const int64_t id = part.ids[k];
    // (The empty slots' id would match an empty slot.)
    const int64_t slot = StorableId(id) ? part.view.Find(tile, id) : -1;
    const bool found = slot >= 0;
    if (found) row = part.view.Row(slot);
    if (part.found != nullptr && tile.thread_rank() == 0) {
      part.found[k] = found;
    }
    if (!part.decode) {
      dst = part.out + k * part.width;
      width = part.width;
    } else {
      float* decoded = part.out + k * part.width;
      for (int s = 0; s < part.num_segments; ++s) {
        const GpuSegment seg = part.segments[s];
        for (int c = tile.thread_rank(); c < seg.dim; c += kTile) {
          decoded[seg.value_offset + c] =
              found ? ReadStored(seg, row, c) : 0.0f;
        }
      }
    }
  }
  if constexpr (kChunksInFlight > 0) {
    CopyRowsByWarpAsVectors<kChunksInFlight>(row, dst, width);
  } else {
    CopyRowsByWarp(row, dst, width);
  }
}

Status LaunchLookup(const LookupLaunch& launch, cudaStream_t s) {
  int max_width = 0;
  bool vectors = true;
  for (int p = 0; p < launch.count; ++p) {
    const LookupLaunch::Part& part = launch.parts[p];
    if (part.decode) continue;  // decoded by the tiles, not copied
    max_width = std::max(max_width, part.width);
    vectors = vectors && part.width % 4 == 0 &&
              reinterpret_cast<uintptr_t>(part.out) % 16 == 0;
  }
  const unsigned grid = GridFor(launch.n);
  if (!vectors) {
    LookupKernel<0><<<grid, kBlock, 0, s>>>(launch);
  } else if (max_width <= 32) {  // a warp's 8 rows: 2 chunks per lane
    LookupKernel<2><<<grid, kBlock, 0, s>>>(launch);
  } else {
    LookupKernel<8><<<grid, kBlock, 0, s>>>(launch);
  }
  return CudaStatus(cudaGetLastError(), "launching a lookup");
}

// One write group's batches (at most kWritesPerLaunch, distinct tables),
// concatenated and sorted together (gpu_write_runs.h): where each batch
// lies, and the sorted ids with their concatenation positions.
struct SortedGroup {
  WriteParts parts;
  const int64_t* sorted = nullptr;
  const int32_t* positions = nullptr;
  int64_t n = 0;

  __device__ bool IsHead(int64_t i) const {
    return IsRunHead(parts, sorted, positions, i);
  }
};

// Concatenates the group's batches into ids, with positions[i] = i.
struct GatherLaunch {
  WriteParts parts;
  const int64_t* ids[kWritesPerLaunch] = {};
  int64_t* all_ids = nullptr;
  int32_t* positions = nullptr;
};

__global__ void GatherKernel(const __grid_constant__ GatherLaunch launch) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i >= launch.parts.first[launch.parts.count]) return;
  const int p = launch.parts.PartOf(i);
  launch.all_ids[i] = launch.ids[p][i - launch.parts.first[p]];
  launch.positions[i] = static_cast<int32_t>(i);
}

// What a write group reads back after sorting: the smallest and largest
// id, and the distinct ids each batch's map lacks.
struct WriteReadback {
  int64_t ends[2];
  unsigned long long missing[kWritesPerLaunch];
};

struct CountLaunch {
  struct Part {
    MapView view;
  };
  SortedGroup group;
  Part parts[kWritesPerLaunch];
  WriteReadback* readback = nullptr;  // device, missing zeroed
};

// Counts, per batch, the distinct ids its map lacks, and notes the sorted
// ends (the reserved ids sort there).
__global__ void CountMissingKernel(const __grid_constant__ CountLaunch launch) {
  const SortedGroup& g = launch.group;
  const int64_t i = TileIndex();
  if (i >= g.n) return;
  auto tile = ThisTile();
  if (tile.thread_rank() == 0) {
    if (i == 0) launch.readback->ends[0] = g.sorted[0];
    if (i == g.n - 1) launch.readback->ends[1] = g.sorted[i];
  }
  const int64_t id = g.sorted[i];
  if (!StorableId(id) || !g.IsHead(i)) return;
  const int p = g.parts.PartOf(g.positions[i]);
  const bool present = launch.parts[p].view.Find(tile, id) >= 0;
  if (!present && tile.thread_rank() == 0) {
    atomicAdd(&launch.readback->missing[p], 1ULL);
  }
}

// The write of one group: each (table, id) run's head finds or inserts its
// row (new rows get their initial values and optimizer state), stamps it,
// then applies the run's occurrences in input order.
struct WriteLaunch {
  struct Part {
    MapView view;
    const GpuSegment* segments = nullptr;  // device
    // By position in the batch: values (value_floats each), gradients
    // (value_floats each) or whole rows (row_floats each).
    const float* values = nullptr;
    int32_t* status = nullptr;              // kReinitialize's, device
    const float* learning_rates = nullptr;  // device, one per segment
    int num_segments = 0;
    int value_floats = 0;
    int entry_floats = 0;
    // SERVING rows: values stored as the segments' compressors store them,
    // new entries zeros.
    bool serving = false;
  };
  SortedGroup group;
  Part parts[kWritesPerLaunch];
  GpuRowTable::Write write = GpuRowTable::Write::kAssign;
  int64_t update_time = 0;  // clamped
  int64_t clock_seconds = 0;  // the host's, for LaterUpdateTime
  // Where no count came first (GpuRowTable::WriteUncounted): the launch
  // counts each batch's new ids here, notes the sorted ends, and writes
  // nothing if a reserved id is in the group. Device, zeroed.
  WriteReadback* counted = nullptr;
};

// Adds the warp's new ids to their batches' counts: one atomic per batch
// among the lanes here (each tile's lane 0 passes is_new).
__device__ void CountNewIds(int p, bool is_new, unsigned long long* counts) {
  const unsigned here = __activemask();
  const unsigned same_batch = __match_any_sync(here, p);
  const unsigned new_ids = __ballot_sync(here, is_new) & same_batch;
  if (new_ids != 0 &&
      static_cast<int>(threadIdx.x % kWarp) == __ffs(same_batch) - 1) {
    atomicAdd(&counts[p], static_cast<unsigned long long>(__popc(new_ids)));
  }
}

// Copies `width` floats from row `from` of `source` into `row` (which
// starts on a sector: RowStride). As float4s where the source allows, each
// lane with up to kVectorsInFlight loads out before it stores: a scalar
// copy of a dim-128 row took each lane 32 round trips.
constexpr int kVectorsInFlight = 4;

__device__ void CopyRow(const Tile& tile, const float* source, int64_t from,
                        int width, float* row) {
  const float* src = source + from * width;
  if (width % 4 != 0 || reinterpret_cast<uintptr_t>(src) % 16 != 0) {
    for (int c = tile.thread_rank(); c < width; c += kTile) row[c] = src[c];
    return;
  }
  const float4* from4 = reinterpret_cast<const float4*>(src);
  float4* to4 = reinterpret_cast<float4*>(row);
  const int vectors = width / 4;
  for (int base = tile.thread_rank(); base < vectors;
       base += kTile * kVectorsInFlight) {
    float4 value[kVectorsInFlight];
#pragma unroll
    for (int u = 0; u < kVectorsInFlight; ++u) {
      const int c = base + u * kTile;
      if (c < vectors) value[u] = __ldg(from4 + c);
    }
#pragma unroll
    for (int u = 0; u < kVectorsInFlight; ++u) {
      const int c = base + u * kTile;
      if (c < vectors) to4[c] = value[u];
    }
  }
}

__global__ void WriteKernel(const __grid_constant__ WriteLaunch launch) {
  const SortedGroup& g = launch.group;
  const int64_t i = TileIndex();
  if (i >= g.n) return;
  auto tile = ThisTile();
  if (launch.counted != nullptr) {
    if (i == 0 && tile.thread_rank() == 0) {
      launch.counted->ends[0] = g.sorted[0];
      launch.counted->ends[1] = g.sorted[g.n - 1];
    }
    // Reserved ids sort to the ends.
    if (!StorableId(g.sorted[0]) || !StorableId(g.sorted[g.n - 1])) return;
  }
  if (!g.IsHead(i)) return;
  const int p = g.parts.PartOf(g.positions[i]);
  const WriteLaunch::Part& part = launch.parts[p];
  const int64_t first = g.parts.first[p];  // the batch's first position
  const int64_t end = RunEnd(g.parts, g.sorted, g.positions, g.n, i, p);
  const int64_t id = g.sorted[i];
  bool fresh = false;
  const int64_t slot = part.view.FindOrInsert(tile, id, &fresh);
  if (slot < 0) return;  // no free slot: growth keeps one (see FindOrInsert)
  if (launch.counted != nullptr) {
    CountNewIds(p, fresh && tile.thread_rank() == 0, launch.counted->missing);
  }
  float* row = part.view.Row(slot);
  const GpuRowTable::Write write = launch.write;
  if (write == GpuRowTable::Write::kReinitialize && !fresh) {
    for (int c = tile.thread_rank(); c < part.entry_floats; c += kTile) {
      row[c] = 0;
    }
    tile.sync();
  }
  if (!part.serving && (fresh || write == GpuRowTable::Write::kReinitialize)) {
    InitRow(tile, id, part.segments, part.num_segments, row);
  }
  // Lane 0 set adam's and amsgrad's beta powers, which every lane reads
  // below.
  tile.sync();
  // Restored rows carry their own update times.
  if (write != GpuRowTable::Write::kPutRows && tile.thread_rank() == 0) {
    SetRowTime(row, part.entry_floats,
               fresh
                   ? launch.update_time
                   : LaterUpdateTime(RowTime(row, part.entry_floats),
                                     launch.update_time, launch.clock_seconds));
  }
  const int d = part.value_floats;
  if (part.serving &&
      (write == GpuRowTable::Write::kAssign ||
       write == GpuRowTable::Write::kAssignAdd)) {
    // Encoded column by column: assign the last value of repeats, or add
    // every occurrence's in turn (each sum stored as the CPU stores it; a
    // new id's first value is stored as it is, as the CPU assigns it: 0 +
    // -0.0 would store +0.0, and -ftz a denormal as 0).
    const int64_t from = write == GpuRowTable::Write::kAssign ? end - 1 : i;
    for (int64_t k = from; k < end; ++k) {
      const float* src = part.values + (g.positions[k] - first) * d;
      const bool adds =
          write == GpuRowTable::Write::kAssignAdd && !(fresh && k == i);
      for (int s = 0; s < part.num_segments; ++s) {
        const GpuSegment seg = part.segments[s];
        for (int c = tile.thread_rank(); c < seg.dim; c += kTile) {
          float value = src[seg.value_offset + c];
          if (adds) value += ReadStored(seg, row, c);
          WriteStored(seg, row, c, value);
        }
      }
    }
    return;
  }
  switch (write) {
    case GpuRowTable::Write::kAssign:  // the last value of repeats
      CopyRow(tile, part.values, g.positions[end - 1] - first, d, row);
      return;
    case GpuRowTable::Write::kPutRows:  // the last row of repeats
      CopyRow(tile, part.values, g.positions[end - 1] - first,
              part.entry_floats + kTimeFloats, row);
      return;
    case GpuRowTable::Write::kAssignAdd:
      for (int64_t k = i; k < end; ++k) {
        const float* src = part.values + (g.positions[k] - first) * d;
        for (int c = tile.thread_rank(); c < d; c += kTile) row[c] += src[c];
      }
      return;
    case GpuRowTable::Write::kReinitialize:
      // 0 for the occurrence that inserted the id, 1 for the others (it
      // existed by then).
      for (int64_t k = i + tile.thread_rank(); k < end; k += kTile) {
        part.status[g.positions[k] - first] = (k == i && fresh) ? 0 : 1;
      }
      return;
    case GpuRowTable::Write::kApplyGradients:
      // Each segment's optimizer over every occurrence, in input order. A
      // lane owns the same columns for the whole run, so every column's
      // updates happen in order.
      for (int64_t k = i; k < end; ++k) {
        const float* grad = part.values + (g.positions[k] - first) * d;
        for (int s = 0; s < part.num_segments; ++s) {
          const GpuSegment seg = part.segments[s];
          const StepScalars step =
              BeginStep(seg, part.learning_rates[s], row);
          for (int c = tile.thread_rank(); c < seg.dim; c += kTile) {
            ApplyColumn(seg, step, grad, c, row);
          }
          // The entry's own state (adam's and amsgrad's beta powers)
          // changes once every lane has read it, and before the next step
          // reads it.
          tile.sync();
          if (tile.thread_rank() == 0) EndStep(seg, row);
          tile.sync();
        }
      }
      return;
    case GpuRowTable::Write::kApplySummedGradients:
      // One step per segment with the run's gradients summed in input
      // order, column by column (as SumDuplicateIds sums them).
      for (int s = 0; s < part.num_segments; ++s) {
        const GpuSegment seg = part.segments[s];
        const StepScalars step = BeginStep(seg, part.learning_rates[s], row);
        for (int c = tile.thread_rank(); c < seg.dim; c += kTile) {
          float sum = 0.0f;
          for (int64_t k = i; k < end; ++k) {
            const float column =
                part.values[(g.positions[k] - first) * d + seg.value_offset +
                            c];
            sum = k == i ? column : sum + column;
          }
          ApplyColumnGradient(seg, step, sum, c, row);
        }
        tile.sync();
        if (tile.thread_rank() == 0) EndStep(seg, row);
        tile.sync();
      }
      return;
  }
}

// Which entries a rehash drops: none, or those expired at `now` by the
// expire times of their feature slots (SlotExpireTimes on the device:
// `slots` sorted, each with its `seconds`; others `default_seconds`).
struct ExpireFilter {
  bool active = false;
  int64_t now = 0;
  const uint32_t* slots = nullptr;
  const int64_t* seconds = nullptr;
  int num_slots = 0;
  int64_t default_seconds = 0;
  int time_offset = 0;  // the row's update time (gpu_row_spec.h)

  __device__ bool Drops(int64_t id, const float* row) const {
    if (!active) return false;
    const uint32_t slot = SlotOfId(id);
    int lo = 0, hi = num_slots;  // binary search for slot
    while (lo < hi) {
      const int mid = (lo + hi) / 2;
      if (slots[mid] < slot) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    const int64_t expire =
        lo < num_slots && slots[lo] == slot ? seconds[lo] : default_seconds;
    return now - RowTime(row, time_offset) >= expire;
  }
};

// Re-inserts every entry of `from` into `to` but those `filter` drops
// (growth keeps all; eviction drops the expired), counting them in *kept
// (if given); with count_only, only counts them.
__global__ void RehashKernel(MapView from, int64_t from_capacity, MapView to,
                             ExpireFilter filter, unsigned long long* kept,
                             bool count_only) {
  const int64_t slot = TileIndex();
  if (slot >= from_capacity) return;
  auto tile = ThisTile();
  const int64_t id = from.ids[slot];
  if (!StorableId(id)) return;
  const float* old_row = from.Row(slot);
  if (filter.Drops(id, old_row)) return;
  if (kept != nullptr && tile.thread_rank() == 0) atomicAdd(kept, 1ULL);
  if (count_only) return;
  bool fresh = false;
  const int64_t to_slot = to.FindOrInsert(tile, id, &fresh);
  if (to_slot < 0) return;  // sized for what it takes: unreachable
  float* row = to.Row(to_slot);
  for (int c = tile.thread_rank(); c < from.row_floats; c += kTile) {
    row[c] = old_row[c];
  }
}

// Packs the entries of slots [begin, end) into ids / rows.
__global__ void ExportKernel(MapView view, int64_t begin, int64_t end,
                             IdShard shard, int64_t* ids, float* rows,
                             unsigned long long* count) {
  const int64_t slot = begin + TileIndex();
  if (slot >= end) return;
  auto tile = ThisTile();
  const int row_floats = view.row_floats;
  const int64_t id = view.ids[slot];
  if (!StorableId(id) || !shard.Holds(id)) return;
  unsigned long long at = 0;
  if (tile.thread_rank() == 0) {
    at = atomicAdd(count, 1ULL);
    ids[at] = id;
  }
  at = tile.shfl(at, 0);
  const float* row = view.Row(slot);
  float* dst = rows + at * row_floats;
  for (int c = tile.thread_rank(); c < row_floats; c += kTile) dst[c] = row[c];
}

// A device buffer kept between calls, reallocated when it is too small or
// far too large.
class DeviceBuffer {
 public:
  // Kept up to this size whatever is needed; past it, given back (and
  // allocated at the size needed) after kOversizedCallsToShrink calls in a
  // row that need under a quarter of it: one huge batch must not hold its
  // scratch (~36 bytes an id over the buffers) for the table's life, which
  // growth then lacks, while batches that alternate in size do not
  // reallocate (each a device-wide stall in cudaFree) on every call.
  static constexpr size_t kKeptBytes = size_t{64} << 20;
  static constexpr int kOversizedCallsToShrink = 8;

  ~DeviceBuffer() { cudaFree(data_); }
  // Room for |bytes|; the contents are lost when it is reallocated.
  // |stream| is the stream whose queued kernels may use the buffer:
  // reallocating waits for them before the old buffer is freed (cudaFree's
  // own wait for the device is not a documented promise).
  Status Reserve(size_t bytes, cudaStream_t stream) {
    bytes = std::max<size_t>(bytes, 1);
    oversized_calls_ =
        bytes_ > kKeptBytes && bytes_ / 4 > bytes ? oversized_calls_ + 1 : 0;
    if (bytes <= bytes_ && oversized_calls_ < kOversizedCallsToShrink) {
      return Status::OK();
    }
    oversized_calls_ = 0;
    if (data_ != nullptr) {
      MONOLITH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream),
                                    "waiting to reallocate a scratch buffer");
    }
    cudaFree(data_);
    data_ = nullptr;
    bytes_ = 0;
    MONOLITH_RETURN_IF_ERROR(AllocStatus(cudaMalloc(&data_, bytes), bytes,
                                         "a scratch buffer", "cudaMalloc"));
    bytes_ = bytes;
    return Status::OK();
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int oversized_calls_ = 0;
};

// Host memory the device copies into (or out of) asynchronously.
template <typename T>
class PinnedArray {
 public:
  ~PinnedArray() { cudaFreeHost(data_); }
  // Room for n elements; the contents are lost when it grows, so only
  // while no copy from or to it is queued.
  Status Reserve(size_t n) {
    n = std::max<size_t>(n, 1);
    if (n <= size_) return Status::OK();
    cudaFreeHost(data_);
    data_ = nullptr;
    size_ = 0;
    MONOLITH_RETURN_IF_ERROR(AllocStatus(
        cudaMallocHost(reinterpret_cast<void**>(&data_), sizeof(T) * n),
        sizeof(T) * n, "a pinned host buffer", "cudaMallocHost"));
    size_ = n;
    return Status::OK();
  }
  T* get() const { return data_; }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

// Where a stream's queued work has got to: the host waits for the work
// before the last Record (a host buffer's async copy) before reusing what
// it reads, and no longer.
class StreamMark {
 public:
  StreamMark() = default;
  StreamMark(const StreamMark&) = delete;
  StreamMark& operator=(const StreamMark&) = delete;
  ~StreamMark() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  Status Record(cudaStream_t stream) {
    if (event_ == nullptr) {
      MONOLITH_CUDA_RETURN_IF_ERROR(
          cudaEventCreateWithFlags(&event_, cudaEventDisableTiming),
          "cudaEventCreateWithFlags");
    }
    return CudaStatus(cudaEventRecord(event_, stream), "cudaEventRecord");
  }
  // Returns once the work queued before the last Record ran (at once if
  // nothing was recorded).
  Status Wait() const {
    if (event_ == nullptr) return Status::OK();
    return CudaStatus(cudaEventSynchronize(event_), "cudaEventSynchronize");
  }

 private:
  cudaEvent_t event_ = nullptr;
};

// A map's storage (MapView). The table counts its entries itself.
struct OwnedMap {
  int64_t capacity = 0;  // slots, a multiple of kBucketSlots
  int row_floats = 0;
  uint64_t hash_seed = 0;
  int64_t* ids = nullptr;
  float* rows = nullptr;

  ~OwnedMap() {
    cudaFree(ids);
    cudaFree(rows);
  }
  MapView view() const {
    MapView v;
    v.ids = ids;
    v.rows = rows;
    v.num_buckets = capacity / kBucketSlots;
    v.hash_seed = hash_seed;
    v.row_floats = row_floats;
    v.row_stride = RowStride(row_floats);
    return v;
  }
};

__global__ void FillIdsKernel(int64_t* ids, int64_t n, int64_t id) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < n) ids[i] = id;
}

// cudaMalloc of |bytes| into |*ptr|; ResourceExhausted naming |what| when
// the GPU has no room.
template <typename T>
Status DeviceAlloc(T** ptr, size_t bytes, const std::string& what) {
  return AllocStatus(cudaMalloc(reinterpret_cast<void**>(ptr), bytes), bytes,
                     what, "cudaMalloc");
}

// A map of at least |capacity| slots (whole buckets, at least one) of
// |spec|'s rows, under its hash seed, every slot free and every row zero.
Status NewMap(int64_t capacity, const GpuRowTableSpec& spec,
              cudaStream_t stream, std::unique_ptr<OwnedMap>* out) {
  const int row_floats = spec.row_floats();
  // Rows' bytes, and every slot's offset into them, stay within int64.
  const int row_stride = RowStride(row_floats);
  const int64_t max_slots =
      std::numeric_limits<int64_t>::max() / 4 / std::max(row_stride, 1);
  if (capacity > max_slots - kBucketSlots) {
    return ResourceExhaustedError("GPU table: " + std::to_string(capacity) +
                                  " slots of " + std::to_string(row_floats) +
                                  " floats asked for");
  }
  capacity = std::max<int64_t>(
      (capacity + kBucketSlots - 1) / kBucketSlots * kBucketSlots,
      kBucketSlots);
  auto owned = std::make_unique<OwnedMap>();
  owned->capacity = capacity;
  owned->row_floats = row_floats;
  owned->hash_seed = spec.hash_seed;
  const std::string what = "a map of " + std::to_string(capacity) +
                           " slots of " + std::to_string(row_floats) +
                           " floats";
  const size_t id_bytes = sizeof(int64_t) * static_cast<size_t>(capacity);
  const size_t row_bytes =
      sizeof(float) * static_cast<size_t>(capacity) * row_stride;
  MONOLITH_RETURN_IF_ERROR(DeviceAlloc(&owned->ids, id_bytes, what));
  MONOLITH_RETURN_IF_ERROR(DeviceAlloc(&owned->rows, row_bytes, what));
  constexpr int kFillBlock = 1024;
  FillIdsKernel<<<static_cast<unsigned>((capacity + kFillBlock - 1) /
                                        kFillBlock),
                  kFillBlock, 0, stream>>>(owned->ids, capacity, kEmptySlotId);
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "initializing a map");
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(owned->rows, 0, row_bytes,
                                                stream),
                                "zeroing a map's rows");
  *out = std::move(owned);
  return Status::OK();
}

}  // namespace

struct GpuRowTable::Impl {
  std::unique_ptr<OwnedMap> map;
  DeviceBuffer segments;  // GpuSegment[num_segments]
  // The scratch of the write groups this table leads (it holds their first
  // batch): the concatenated ids and their positions, sorted, and the
  // group's learning rates.
  DeviceBuffer batch_ids, positions_in, sorted_ids, positions, sort_temp;
  DeviceBuffer learning_rates;
  // WriteReadback on the device; an export's or an eviction's count.
  DeviceBuffer write_counts, counter;
  // Host transfers: ids, rows and lookup_entry's found flags.
  DeviceBuffer staged_ids, staged_rows, staged_found;
  // An eviction's expire times (ExpireFilter's slots and seconds).
  DeviceBuffer expire_slots, expire_seconds;
  // Pinned, so a WriteMany queues every group's reads before one wait.
  PinnedArray<WriteReadback> readback;
  PinnedArray<unsigned long long> count;
  // A group's learning rates on their way to learning_rates, rewritten only
  // once their last copy ran (rates_copied): a write that does not wait
  // after its copy (the counted path) can be followed by one that stages
  // before any wait (WriteUncounted).
  PinnedArray<float> host_learning_rates;
  StreamMark rates_copied;
  int num_segments = 0;

  // Queues the copy of a write group's counts (write_counts) to readback.
  Status QueueReadback(cudaStream_t s) {
    return CudaStatus(
        cudaMemcpyAsync(readback.get(), write_counts.as<void>(),
                        sizeof(WriteReadback), cudaMemcpyDeviceToHost, s),
        "reading the counts");
  }
};

GpuRowTable::GpuRowTable(const GpuRowTableSpec& spec,
                         std::unique_ptr<Impl> impl)
    : spec_(spec), impl_(std::move(impl)) {}

GpuRowTable::~GpuRowTable() {
  // The map and buffers are freed on the table's device, whichever this
  // thread's current one is, once the kernels a last step queued (a write
  // whose results nothing fetched) are done with them: cudaFree's own wait
  // for the device is not a documented promise.
  if (UseDevice(spec_.device).ok()) (void)cudaDeviceSynchronize();
}

int64_t GpuRowTable::capacity() const {
  return static_cast<int64_t>(impl_->map->capacity);
}

int64_t GpuRowTable::device_bytes() const {
  const Impl& m = *impl_;
  size_t bytes = 0;
  if (m.map != nullptr) {
    bytes += static_cast<size_t>(m.map->capacity) *
             (sizeof(int64_t) + sizeof(float) * RowStride(m.map->row_floats));
  }
  for (const DeviceBuffer* buffer :
       {&m.segments, &m.batch_ids, &m.positions_in, &m.sorted_ids,
        &m.positions, &m.sort_temp, &m.learning_rates, &m.write_counts,
        &m.counter, &m.staged_ids, &m.staged_rows, &m.staged_found,
        &m.expire_slots, &m.expire_seconds}) {
    bytes += buffer->bytes();
  }
  return static_cast<int64_t>(bytes);
}

Status GpuRowTable::Create(const GpuRowTableSpec& spec,
                           std::unique_ptr<GpuRowTable>* table) {
  MONOLITH_RETURN_IF_ERROR(CheckGpuRowTableSpec(spec));
  int devices = 0;
  const cudaError_t error = cudaGetDeviceCount(&devices);
  if (error != cudaSuccess) cudaGetLastError();  // not this thread's next error
  if (error != cudaSuccess || devices == 0) {
    return FailedPreconditionError(
        std::string("GPU table: no usable CUDA device (") +
        (error == cudaSuccess ? "none found" : cudaGetErrorString(error)) +
        ")");
  }
  if (spec.device < 0 || spec.device >= devices) {
    return InvalidArgumentError("GPU table: device " +
                                std::to_string(spec.device) + " of " +
                                std::to_string(devices));
  }
  MONOLITH_RETURN_IF_ERROR(UseDevice(spec.device));
  auto impl = std::make_unique<Impl>();
  impl->num_segments = static_cast<int>(spec.segments.size());
  const size_t segment_bytes = sizeof(GpuSegment) * spec.segments.size();
  // New buffers: no stream's work uses them yet.
  MONOLITH_RETURN_IF_ERROR(impl->segments.Reserve(
      std::max<size_t>(segment_bytes, 1), nullptr));
  MONOLITH_RETURN_IF_ERROR(
      impl->counter.Reserve(sizeof(unsigned long long), nullptr));
  MONOLITH_RETURN_IF_ERROR(
      impl->write_counts.Reserve(sizeof(WriteReadback), nullptr));
  MONOLITH_RETURN_IF_ERROR(impl->readback.Reserve(1));
  MONOLITH_RETURN_IF_ERROR(impl->count.Reserve(1));
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(impl->segments.as<void>(), spec.segments.data(),
                 segment_bytes, cudaMemcpyHostToDevice),
      "copying the segments");
  MONOLITH_RETURN_IF_ERROR(
      NewMap(spec.initial_capacity, spec, nullptr, &impl->map));
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize(), "creating the map");
  table->reset(new GpuRowTable(spec, std::move(impl)));
  return Status::OK();
}

namespace {

// InvalidArgument unless every request (a LookupRequest or WriteRequest)
// names a table, all on one device, with a batch CheckBatch takes; |what|
// names the call in errors.
template <typename Request>
Status CheckRequests(const std::vector<Request>& requests, const char* what) {
  for (const Request& r : requests) {
    if (r.table == nullptr) {
      return InvalidArgumentError(std::string("GPU table: a ") + what +
                                  " names no table");
    }
    if (r.table->spec().device != requests[0].table->spec().device) {
      return InvalidArgumentError(
          std::string("GPU table: one ") + what + " of tables on devices " +
          std::to_string(requests[0].table->spec().device) + " and " +
          std::to_string(r.table->spec().device));
    }
    MONOLITH_RETURN_IF_ERROR(CheckBatch(r.n));
  }
  return Status::OK();
}

}  // namespace

Status GpuRowTable::Lookup(const int64_t* ids, int64_t n, float* out,
                           void* stream) {
  return LookupMany({{this, ids, n, out}}, stream);
}

Status GpuRowTable::LookupMany(const std::vector<LookupRequest>& requests,
                               void* stream) {
  if (requests.empty()) return Status::OK();
  MONOLITH_RETURN_IF_ERROR(CheckRequests(requests, "lookup"));
  MONOLITH_RETURN_IF_ERROR(UseDevice(requests[0].table->spec_.device));
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  LookupLaunch launch;
  auto flush = [&]() -> Status {
    if (launch.count == 0) return Status::OK();
    MONOLITH_RETURN_IF_ERROR(LaunchLookup(launch, s));
    launch = LookupLaunch();
    return Status::OK();
  };
  for (const LookupRequest& r : requests) {
    if (r.n == 0) continue;
    if (launch.count == kLookupsPerLaunch ||
        launch.n + r.n > int64_t{0x7fffffff}) {
      MONOLITH_RETURN_IF_ERROR(flush());
    }
    LookupLaunch::Part& part = launch.parts[launch.count++];
    part.view = r.table->impl_->map->view();
    part.ids = r.ids;
    part.out = r.out;
    part.first = launch.n;
    part.width = r.table->spec_.value_floats;
    part.segments = r.table->impl_->segments.as<GpuSegment>();
    part.num_segments = r.table->impl_->num_segments;
    part.decode = r.table->spec_.serving;
    launch.n += r.n;
  }
  return flush();
}

Status GpuRowTable::LookupRowsFromHost(const int64_t* ids, int64_t n,
                                       std::vector<float>* rows,
                                       std::vector<char>* found,
                                       void* stream) {
  MONOLITH_RETURN_IF_ERROR(UseDevice(spec_.device));
  MONOLITH_RETURN_IF_ERROR(CheckBatch(n));
  const int width = spec_.row_floats();
  rows->assign(n * width, 0.0f);
  found->assign(n, 0);
  if (n == 0) return Status::OK();
  Impl& m = *impl_;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  MONOLITH_RETURN_IF_ERROR(m.staged_ids.Reserve(sizeof(int64_t) * n, s));
  MONOLITH_RETURN_IF_ERROR(
      m.staged_rows.Reserve(sizeof(float) * width * n, s));
  MONOLITH_RETURN_IF_ERROR(m.staged_found.Reserve(sizeof(bool) * n, s));
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(m.staged_ids.as<void>(), ids, sizeof(int64_t) * n,
                      cudaMemcpyHostToDevice, s),
      "copying ids to look up");
  LookupLaunch launch;
  LookupLaunch::Part& part = launch.parts[0];
  part.view = m.map->view();
  part.ids = m.staged_ids.as<int64_t>();
  part.out = m.staged_rows.as<float>();
  part.found = m.staged_found.as<bool>();
  part.width = width;
  launch.count = 1;
  launch.n = n;
  MONOLITH_RETURN_IF_ERROR(LaunchLookup(launch, s));
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(rows->data(), m.staged_rows.as<void>(),
                      sizeof(float) * width * n, cudaMemcpyDeviceToHost, s),
      "copying rows");
  static_assert(sizeof(bool) == sizeof(char), "found flags are bytes");
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(found->data(), m.staged_found.as<void>(), n,
                      cudaMemcpyDeviceToHost, s),
      "copying found flags");
  return CudaStatus(cudaStreamSynchronize(s), "looking up rows");
}

Status GpuRowTable::Reserve(int64_t extra, void* stream) {
  const int64_t old_capacity = capacity();
  int64_t new_capacity = old_capacity;
  while (static_cast<double>(size_ + extra) >
         spec_.max_load * static_cast<double>(new_capacity)) {
    new_capacity *= 2;
  }
  if (new_capacity == old_capacity) return Status::OK();
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  std::unique_ptr<OwnedMap> grown;
  MONOLITH_RETURN_IF_ERROR(NewMap(new_capacity, spec_, s, &grown));
  RehashKernel<<<GridFor(old_capacity), kBlock, 0, s>>>(
      impl_->map->view(), old_capacity, grown->view(), ExpireFilter(),
      nullptr, /*count_only=*/false);
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "launching the rehash");
  // The old map is freed (cudaFree waits for the device) once rehashed.
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s), "rehashing");
  impl_->map = std::move(grown);
  return Status::OK();
}

Status GpuRowTable::Evict(int64_t now, const ExpireSeconds& expire,
                          int64_t* evicted, void* stream) {
  MONOLITH_RETURN_IF_ERROR(UseDevice(spec_.device));
  *evicted = 0;
  // At time 0 nothing has aged, as on the CPU (saves skip nothing then).
  if (size_ == 0 || now <= 0) return Status::OK();
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  std::vector<std::pair<uint32_t, int64_t>> by_slot = expire.by_slot;
  std::sort(by_slot.begin(), by_slot.end());
  std::vector<uint32_t> slots;
  std::vector<int64_t> seconds;
  for (const auto& [slot, secs] : by_slot) {
    slots.push_back(slot);
    seconds.push_back(secs);
  }
  Impl& m = *impl_;
  MONOLITH_RETURN_IF_ERROR(m.expire_slots.Reserve(
      std::max<size_t>(sizeof(uint32_t) * slots.size(), 1), s));
  MONOLITH_RETURN_IF_ERROR(m.expire_seconds.Reserve(
      std::max<size_t>(sizeof(int64_t) * seconds.size(), 1), s));
  if (!slots.empty()) {
    MONOLITH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(m.expire_slots.as<void>(), slots.data(),
                        sizeof(uint32_t) * slots.size(),
                        cudaMemcpyHostToDevice, s),
        "copying expire times");
    MONOLITH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(m.expire_seconds.as<void>(), seconds.data(),
                        sizeof(int64_t) * seconds.size(),
                        cudaMemcpyHostToDevice, s),
        "copying expire times");
  }
  ExpireFilter filter;
  filter.active = true;
  filter.now = now;
  filter.slots = m.expire_slots.as<uint32_t>();
  filter.seconds = m.expire_seconds.as<int64_t>();
  filter.num_slots = static_cast<int>(slots.size());
  filter.default_seconds = expire.default_seconds;
  filter.time_offset = spec_.entry_floats;
  // Two passes: count what stays, then move it into a new map sized for it
  // (halved while it holds them below max_load, as growth doubles). Keys
  // are never removed in place (a free slot ends every search: MapView).
  const int64_t capacity = this->capacity();
  unsigned long long* counted = m.count.get();
  auto run = [&](MapView to, bool count_only) -> Status {
    MONOLITH_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(m.counter.as<void>(), 0, sizeof(unsigned long long),
                        s),
        "cudaMemsetAsync");
    RehashKernel<<<GridFor(capacity), kBlock, 0, s>>>(
        m.map->view(), capacity, to, filter,
        m.counter.as<unsigned long long>(), count_only);
    MONOLITH_CUDA_RETURN_IF_ERROR(cudaGetLastError(),
                                  "launching the eviction");
    MONOLITH_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(counted, m.counter.as<void>(), sizeof(*counted),
                        cudaMemcpyDeviceToHost, s),
        "reading the count");
    // Also what the host vectors' copies need before they go.
    return CudaStatus(cudaStreamSynchronize(s), "evicting");
  };
  MONOLITH_RETURN_IF_ERROR(run(m.map->view(),
                               /*count_only=*/true));
  const int64_t kept = static_cast<int64_t>(*counted);
  if (kept == size_) return Status::OK();
  // Halved only while the kept entries fill the half to at most half of
  // max_load, so the next new ids do not grow it straight back.
  int64_t new_capacity = capacity;
  while (new_capacity / 2 >= spec_.initial_capacity &&
         static_cast<double>(kept) <=
             spec_.max_load / 2 * static_cast<double>(new_capacity / 2)) {
    new_capacity /= 2;
  }
  std::unique_ptr<OwnedMap> rebuilt;
  MONOLITH_RETURN_IF_ERROR(
      NewMap(new_capacity, spec_, s, &rebuilt));
  MONOLITH_RETURN_IF_ERROR(
      run(rebuilt->view(), /*count_only=*/false));
  if (static_cast<int64_t>(*counted) != kept) {
    return InternalError("GPU table: eviction counted " +
                         std::to_string(kept) + " entries to keep, then " +
                         std::to_string(*counted) +
                         "; the table is unchanged");
  }
  m.map = std::move(rebuilt);
  *evicted = size_ - kept;
  size_ = kept;
  return Status::OK();
}

namespace {

// Whether |write| runs the optimizers (and takes learning rates).
bool IsApply(GpuRowTable::Write write) {
  return write == GpuRowTable::Write::kApplyGradients ||
         write == GpuRowTable::Write::kApplySummedGradients;
}

// Where the batches of a write group lie in their concatenation.
WriteParts PartsOf(const std::vector<const GpuRowTable::WriteRequest*>& group) {
  WriteParts parts;
  for (const GpuRowTable::WriteRequest* r : group) {
    parts.first[parts.count + 1] = parts.first[parts.count] + r->n;
    ++parts.count;
  }
  return parts;
}

}  // namespace

Status GpuRowTable::Prepare(const std::vector<const WriteRequest*>& group,
                            bool count_missing, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  Impl& m = *group[0]->table->impl_;
  GatherLaunch gather;
  gather.parts = PartsOf(group);
  const int64_t n = gather.parts.first[gather.parts.count];
  MONOLITH_RETURN_IF_ERROR(m.batch_ids.Reserve(sizeof(int64_t) * n, s));
  MONOLITH_RETURN_IF_ERROR(m.sorted_ids.Reserve(sizeof(int64_t) * n, s));
  MONOLITH_RETURN_IF_ERROR(m.positions_in.Reserve(sizeof(int32_t) * n, s));
  MONOLITH_RETURN_IF_ERROR(m.positions.Reserve(sizeof(int32_t) * n, s));
  CountLaunch count;
  for (size_t p = 0; p < group.size(); ++p) {
    gather.ids[p] = group[p]->ids;
    count.parts[p].view = group[p]->table->impl_->map->view();
  }
  gather.all_ids = m.batch_ids.as<int64_t>();
  gather.positions = m.positions_in.as<int32_t>();
  GatherKernel<<<static_cast<unsigned>((n + kBlock - 1) / kBlock), kBlock, 0,
                 s>>>(gather);
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "gathering the ids");
  size_t temp_bytes = 0;
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cub::DeviceRadixSort::SortPairs(
          nullptr, temp_bytes, m.batch_ids.as<int64_t>(),
          m.sorted_ids.as<int64_t>(), m.positions_in.as<int32_t>(),
          m.positions.as<int32_t>(), static_cast<int>(n), 0, 64, s),
      "sizing the sort");
  MONOLITH_RETURN_IF_ERROR(
      m.sort_temp.Reserve(std::max<size_t>(temp_bytes, 1), s));
  temp_bytes = m.sort_temp.bytes();
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cub::DeviceRadixSort::SortPairs(
          m.sort_temp.as<void>(), temp_bytes, m.batch_ids.as<int64_t>(),
          m.sorted_ids.as<int64_t>(), m.positions_in.as<int32_t>(),
          m.positions.as<int32_t>(), static_cast<int>(n), 0, 64, s),
      "sorting the ids");
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(m.write_counts.as<void>(), 0, sizeof(WriteReadback), s),
      "cudaMemsetAsync");
  if (!count_missing) return Status::OK();
  count.group.parts = gather.parts;
  count.group.sorted = m.sorted_ids.as<int64_t>();
  count.group.positions = m.positions.as<int32_t>();
  count.group.n = n;
  count.readback = m.write_counts.as<WriteReadback>();
  CountMissingKernel<<<GridFor(n), kBlock, 0, s>>>(count);
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "launching the count");
  return m.QueueReadback(s);
}

Status GpuRowTable::CheckPrepared(
    const std::vector<const WriteRequest*>& group) {
  for (int64_t id : group[0]->table->impl_->readback.get()->ends) {
    if (!StorableId(id)) {
      return InvalidArgumentError(
          "GPU table: id " + std::to_string(id) +
          " cannot be stored (GPU tables reserve it); nothing of the write "
          "was written");
    }
  }
  return Status::OK();
}

Status GpuRowTable::Commit(Write write,
                           const std::vector<const WriteRequest*>& group,
                           int64_t update_time, bool count_new,
                           void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  Impl& m = *group[0]->table->impl_;
  WriteLaunch launch;
  launch.group.parts = PartsOf(group);
  launch.group.sorted = m.sorted_ids.as<int64_t>();
  launch.group.positions = m.positions.as<int32_t>();
  launch.group.n = launch.group.parts.first[launch.group.parts.count];
  launch.write = write;
  launch.update_time = ClampUpdateTime(update_time);
  launch.clock_seconds = HostClockSeconds();
  if (count_new) launch.counted = m.write_counts.as<WriteReadback>();
  int rate_offset = 0;
  for (size_t p = 0; p < group.size(); ++p) {
    const WriteRequest& r = *group[p];
    GpuRowTable& table = *r.table;
    WriteLaunch::Part& part = launch.parts[p];
    part.view = table.impl_->map->view();
    part.segments = table.impl_->segments.as<GpuSegment>();
    part.values = r.values;
    part.status = r.status;
    part.learning_rates = m.learning_rates.as<float>() + rate_offset;
    part.num_segments = table.impl_->num_segments;
    part.value_floats = table.spec_.value_floats;
    part.entry_floats = table.spec_.entry_floats;
    part.serving = table.spec_.serving;
    if (IsApply(write)) {
      rate_offset += static_cast<int>(r.learning_rates.size());
    }
  }
  WriteKernel<<<GridFor(launch.group.n), kBlock, 0, s>>>(launch);
  return CudaStatus(cudaGetLastError(), "launching the write");
}

void GpuRowTable::Account(Write write,
                          const std::vector<const WriteRequest*>& group,
                          int64_t table_time) {
  const WriteReadback& back = *group[0]->table->impl_->readback.get();
  const int64_t time = ClampUpdateTime(table_time);
  for (size_t p = 0; p < group.size(); ++p) {
    GpuRowTable& table = *group[p]->table;
    table.size_ += static_cast<int64_t>(back.missing[p]);
    if (write != Write::kPutRows && AdvancesTableTime(time)) {
      table.latest_update_time_ = std::max(table.latest_update_time_, time);
    }
  }
}

bool GpuRowTable::HasRoom(const std::vector<const WriteRequest*>& group) {
  for (const WriteRequest* r : group) {
    const GpuRowTable& table = *r->table;
    if (static_cast<double>(table.size_ + r->n) >
        table.spec_.max_load * static_cast<double>(table.capacity())) {
      return false;
    }
  }
  return true;
}

Status GpuRowTable::WriteUncounted(
    Write write, const std::vector<const WriteRequest*>& group,
    int64_t update_time, int64_t table_time, void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  Impl& m = *group[0]->table->impl_;
  MONOLITH_RETURN_IF_ERROR(Prepare(group, /*count_missing=*/false, stream));
  if (IsApply(write)) {
    MONOLITH_RETURN_IF_ERROR(StageLearningRates(group, stream));
  }
  MONOLITH_RETURN_IF_ERROR(
      Commit(write, group, update_time, /*count_new=*/true, stream));
  MONOLITH_RETURN_IF_ERROR(m.QueueReadback(s));
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s), "writing");
  // A reserved id: the launch wrote nothing.
  MONOLITH_RETURN_IF_ERROR(CheckPrepared(group));
  Account(write, group, table_time);
  return Status::OK();
}

Status GpuRowTable::StageLearningRates(
    const std::vector<const WriteRequest*>& group, void* stream) {
  Impl& m = *group[0]->table->impl_;
  std::vector<float> rates;
  for (const WriteRequest* r : group) {
    rates.insert(rates.end(), r->learning_rates.begin(),
                 r->learning_rates.end());
  }
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  // The last copy out of the host buffer may still be queued.
  MONOLITH_RETURN_IF_ERROR(m.rates_copied.Wait());
  MONOLITH_RETURN_IF_ERROR(m.host_learning_rates.Reserve(rates.size()));
  MONOLITH_RETURN_IF_ERROR(m.learning_rates.Reserve(
      sizeof(float) * std::max<size_t>(rates.size(), 1), s));
  std::copy(rates.begin(), rates.end(), m.host_learning_rates.get());
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(m.learning_rates.as<void>(), m.host_learning_rates.get(),
                      sizeof(float) * rates.size(), cudaMemcpyHostToDevice, s),
      "copying the learning rates");
  return m.rates_copied.Record(s);
}

Status GpuRowTable::WriteMany(Write write,
                              const std::vector<WriteRequest>& requests,
                              int64_t update_time, void* stream) {
  MONOLITH_RETURN_IF_ERROR(CheckRequests(requests, "write"));
  // Restored rows keep their checkpoint's time, as on the CPU. One time
  // stamps the whole write: the time written, or (StampedUpdateTime: none,
  // or one ahead of the clock) the earliest time of the tables it writes
  // ids to that have one, which moves none of them: |table_time| is then
  // 0, so that a table without a time keeps none, as on the CPU (taking
  // another's would expire its entries of time 0 at once).
  int64_t table_time = update_time;
  if (write != Write::kPutRows) {
    int64_t earliest = 0;
    for (const WriteRequest& r : requests) {
      const int64_t time = r.table->latest_update_time_;
      if (r.n > 0 && time > 0 && (earliest == 0 || time < earliest)) {
        earliest = time;
      }
    }
    const int64_t stamp =
        StampedUpdateTime(update_time, HostClockSeconds(), earliest);
    if (stamp != ClampUpdateTime(update_time)) table_time = 0;
    update_time = stamp;
  }
  // The batches with ids, in groups of at most kWritesPerLaunch batches and
  // 2^31 - 1 ids, each sorted and written as one.
  std::vector<std::vector<const WriteRequest*>> groups;
  int64_t group_ids = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const WriteRequest& r = requests[i];
    if (IsApply(write) && r.table->spec_.serving) {
      return FailedPreconditionError(
          "GPU table: apply_gradients on a SERVING table: its entries have "
          "no optimizer state");
    }
    if (IsApply(write) &&
        r.learning_rates.size() != r.table->spec_.segments.size()) {
      return InvalidArgumentError(
          "GPU table: " + std::to_string(r.learning_rates.size()) +
          " learning rates for " +
          std::to_string(r.table->spec_.segments.size()) + " segments");
    }
    for (size_t j = 0; j < i; ++j) {
      if (requests[j].table == r.table) {
        // A table's rows are written by one tile per id.
        return InvalidArgumentError("GPU table: one write names a table "
                                    "twice");
      }
    }
    if (r.n == 0) continue;
    if (groups.empty() || groups.back().size() == kWritesPerLaunch ||
        group_ids + r.n > int64_t{0x7fffffff}) {
      groups.emplace_back();
      group_ids = 0;
    }
    groups.back().push_back(&r);
    group_ids += r.n;
  }
  if (groups.empty()) return Status::OK();
  MONOLITH_RETURN_IF_ERROR(UseDevice(groups[0][0]->table->spec_.device));
  // Most writes: tables stay below max_load, so nothing needs counting
  // before the write (a count pass and a wait saved).
  if (groups.size() == 1 && HasRoom(groups[0])) {
    return WriteUncounted(write, groups[0], update_time, table_time, stream);
  }
  for (const auto& group : groups) {
    MONOLITH_RETURN_IF_ERROR(Prepare(group, /*count_missing=*/true, stream));
  }
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaStreamSynchronize(static_cast<cudaStream_t>(stream)),
      "sorting the ids and counting the new ones");
  for (const auto& group : groups) {
    MONOLITH_RETURN_IF_ERROR(CheckPrepared(group));
  }
  // Every allocation a write makes comes before any group is written.
  if (IsApply(write)) {
    for (const auto& group : groups) {
      MONOLITH_RETURN_IF_ERROR(StageLearningRates(group, stream));
    }
  }
  // Growth first: it can fail (no memory), and moves no entry's content.
  for (const auto& group : groups) {
    const WriteReadback& back = *group[0]->table->impl_->readback.get();
    for (size_t p = 0; p < group.size(); ++p) {
      MONOLITH_RETURN_IF_ERROR(group[p]->table->Reserve(
          static_cast<int64_t>(back.missing[p]), stream));
    }
  }
  for (const auto& group : groups) {
    MONOLITH_RETURN_IF_ERROR(
        Commit(write, group, update_time, /*count_new=*/false, stream));
    Account(write, group, table_time);
  }
  return Status::OK();
}

Status GpuRowTable::Assign(const int64_t* ids, int64_t n, const float* values,
                           int64_t update_time, void* stream) {
  return WriteMany(Write::kAssign, {{this, ids, n, values}}, update_time,
                   stream);
}

Status GpuRowTable::AssignAdd(const int64_t* ids, int64_t n,
                              const float* values, int64_t update_time,
                              void* stream) {
  return WriteMany(Write::kAssignAdd, {{this, ids, n, values}}, update_time,
                   stream);
}

Status GpuRowTable::Reinitialize(const int64_t* ids, int64_t n,
                                 int32_t* status, int64_t update_time,
                                 void* stream) {
  return WriteMany(Write::kReinitialize, {{this, ids, n, nullptr, status}},
                   update_time, stream);
}

Status GpuRowTable::PutRows(const int64_t* ids, int64_t n, const float* rows,
                            void* stream) {
  // The rows carry their update times: the stamp is overwritten.
  return WriteMany(Write::kPutRows, {{this, ids, n, rows}}, 0, stream);
}

Status GpuRowTable::ApplyGradients(const int64_t* ids, int64_t n,
                                   const float* grads,
                                   const std::vector<float>& learning_rates,
                                   int64_t update_time, void* stream) {
  return WriteMany(Write::kApplyGradients,
                   {{this, ids, n, grads, nullptr, learning_rates}},
                   update_time, stream);
}

Status GpuRowTable::ExportRows(int64_t begin, int64_t max_slots, int64_t* ids,
                               float* rows, int64_t* count, int64_t* next,
                               void* stream, IdShard shard) {
  MONOLITH_RETURN_IF_ERROR(UseDevice(spec_.device));
  const int64_t cap = capacity();
  if (begin < 0 || begin > cap || max_slots < 0) {
    return InvalidArgumentError("GPU table: export from slot " +
                                std::to_string(begin) + " of " +
                                std::to_string(cap));
  }
  if (shard.count < 1 || shard.index < 0 || shard.index >= shard.count) {
    return InvalidArgumentError("GPU table: export of dump shard " +
                                std::to_string(shard.index) + " of " +
                                std::to_string(shard.count));
  }
  const int64_t end = max_slots >= cap - begin ? cap : begin + max_slots;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(impl_->counter.as<void>(), 0, sizeof(unsigned long long),
                      s),
      "cudaMemsetAsync");
  if (end > begin) {
    ExportKernel<<<GridFor(end - begin), kBlock, 0, s>>>(
        impl_->map->view(), begin, end, shard, ids, rows,
        impl_->counter.as<unsigned long long>());
    MONOLITH_CUDA_RETURN_IF_ERROR(cudaGetLastError(), "launching the export");
  }
  unsigned long long exported = 0;
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(&exported, impl_->counter.as<void>(), sizeof(exported),
                      cudaMemcpyDeviceToHost, s),
      "reading the count");
  MONOLITH_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(s), "exporting");
  *count = static_cast<int64_t>(exported);
  *next = end;
  return Status::OK();
}

Status GpuRowTable::ExportRowsToHost(int64_t begin, int64_t max_slots,
                                     std::vector<int64_t>* ids,
                                     std::vector<float>* rows, int64_t* next,
                                     void* stream, IdShard shard) {
  MONOLITH_RETURN_IF_ERROR(UseDevice(spec_.device));
  MONOLITH_RETURN_IF_ERROR(CheckBatch(max_slots));
  const int64_t slots = std::max<int64_t>(max_slots, 1);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  MONOLITH_RETURN_IF_ERROR(
      impl_->staged_ids.Reserve(sizeof(int64_t) * slots, s));
  MONOLITH_RETURN_IF_ERROR(impl_->staged_rows.Reserve(
      sizeof(float) * spec_.row_floats() * slots, s));
  int64_t count = 0;
  MONOLITH_RETURN_IF_ERROR(ExportRows(begin, max_slots,
                                      impl_->staged_ids.as<int64_t>(),
                                      impl_->staged_rows.as<float>(), &count,
                                      next, stream, shard));
  ids->resize(count);
  rows->resize(count * spec_.row_floats());
  // An empty vector's data() may be null, which cudaMemcpy need not take.
  if (count == 0) return Status::OK();
  // On the op's stream: TF's are non-blocking, unordered with the default
  // stream's work.
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(ids->data(), impl_->staged_ids.as<void>(),
                      sizeof(int64_t) * count, cudaMemcpyDeviceToHost, s),
      "copying exported ids");
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(rows->data(), impl_->staged_rows.as<void>(),
                      sizeof(float) * spec_.row_floats() * count,
                      cudaMemcpyDeviceToHost, s),
      "copying exported rows");
  return CudaStatus(cudaStreamSynchronize(s), "exporting rows");
}

Status GpuRowTable::PutRowsFromHost(const int64_t* ids, int64_t n,
                                    const float* rows, void* stream) {
  MONOLITH_RETURN_IF_ERROR(UseDevice(spec_.device));
  MONOLITH_RETURN_IF_ERROR(CheckBatch(n));
  if (n == 0) return Status::OK();
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  MONOLITH_RETURN_IF_ERROR(impl_->staged_ids.Reserve(sizeof(int64_t) * n, s));
  MONOLITH_RETURN_IF_ERROR(
      impl_->staged_rows.Reserve(sizeof(float) * spec_.row_floats() * n, s));
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(impl_->staged_ids.as<void>(), ids, sizeof(int64_t) * n,
                      cudaMemcpyHostToDevice, s),
      "copying ids to restore");
  MONOLITH_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(impl_->staged_rows.as<void>(), rows,
                      sizeof(float) * spec_.row_floats() * n,
                      cudaMemcpyHostToDevice, s),
      "copying rows to restore");
  MONOLITH_RETURN_IF_ERROR(PutRows(impl_->staged_ids.as<int64_t>(), n,
                                   impl_->staged_rows.as<float>(), stream));
  // The rows carry their update times (the clock read once for them).
  const int64_t clock = HostClockSeconds();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t time =
        RowTime(rows + i * spec_.row_floats(), spec_.entry_floats);
    if (AdvancesTableTime(time, clock)) {
      latest_update_time_ = std::max(latest_update_time_, time);
    }
  }
  // The host buffers and the staging buffers are free once this returns.
  return CudaStatus(cudaStreamSynchronize(s), "restoring rows");
}

Status FillDeviceBytes(int device, void* data, size_t bytes,
                       unsigned char byte, void* stream) {
  MONOLITH_RETURN_IF_ERROR(UseDevice(device));
  return CudaStatus(
      cudaMemsetAsync(data, byte, bytes, static_cast<cudaStream_t>(stream)),
      "cudaMemsetAsync");
}

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith
