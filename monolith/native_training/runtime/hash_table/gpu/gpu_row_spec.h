// What a GPU table row holds and how it changes: the layout (the CPU
// engine's TRAINING entry: every segment's embedding floats, then each
// segment's optimizer state; then the entry's last update time, an int64
// of seconds in two floats' bits, which the CPU table keeps in its slot),
// each segment's initializer and optimizer, and the per-column math,
// written once for the GPU kernels and the host.
//
// The math is plain C++ that nvcc compiles for the device too
// (MONOLITH_HOST_DEVICE), so host tests check it against the CPU engine's
// own initializers and optimizers without a GPU (gpu_row_spec_test).
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_SPEC_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_SPEC_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "monolith/native_training/runtime/hash_table/status.h"

#if defined(__CUDACC__)
#define MONOLITH_HOST_DEVICE __host__ __device__
#else
#define MONOLITH_HOST_DEVICE
#endif

namespace monolith {
namespace hash_table {

class EntryConfig;

namespace gpu {

// The ids a GPU table cannot hold: cuCollections marks empty and reclaimed
// slots with them. Inserting one is InvalidArgument naming it; looking one
// up reads zeros.
constexpr int64_t kEmptySlotId = std::numeric_limits<int64_t>::max();
constexpr int64_t kReclaimedSlotId = std::numeric_limits<int64_t>::min();

MONOLITH_HOST_DEVICE inline bool StorableId(int64_t id) {
  return id != kEmptySlotId && id != kReclaimedSlotId;
}

// One segment: floats [value_offset, value_offset + dim) of the embedding,
// its optimizer's state at state_offset (floats into the row).
struct GpuSegment {
  enum class Optimizer { kSgd, kAdagrad };
  Optimizer optimizer = Optimizer::kSgd;
  int value_offset = 0;
  int dim = 0;
  int state_offset = 0;
  // adagrad: the accumulators' initial value and the weight decay.
  float initial_accumulator = 0.0f;
  float weight_decay = 0.0f;
  // New entries' values: init_min, or uniform in [init_min, init_max) when
  // init_max > init_min, drawn from a hash of (init_seed, id, column) so the
  // same id gets the same values whatever the batch.
  float init_min = 0.0f;
  float init_max = 0.0f;
  uint64_t init_seed = 0;

  // Floats of optimizer state.
  MONOLITH_HOST_DEVICE int StateFloats() const {
    return optimizer == Optimizer::kAdagrad ? dim : 0;
  }
};

// Floats a row's update time takes.
constexpr int kTimeFloats = 2;

struct GpuRowTableSpec {
  // Floats of the embedding (the segments' dims), of the CPU entry (the
  // embedding and the optimizer state) and of a row (the entry and its
  // update time, at float entry_floats).
  int value_floats = 0;
  int entry_floats = 0;
  int row_floats = 0;
  std::vector<GpuSegment> segments;
  // Slots of the first map; it doubles when a batch would fill it past
  // max_load.
  int64_t initial_capacity = 1 << 16;
  float max_load = 0.6f;
  // The CUDA device the table lives on; every call makes it current.
  int device = 0;
};

// The spec of a table of |config| entries (TRAINING; sgd and adagrad
// segments with zeros, ones, constants or random_uniform initializers;
// no warmup_steps), with |seed| for random initializers. InvalidArgument
// naming the segment for anything else. The row layout is checked against
// the CPU engine's EntryAccessor for the same config.
Status GpuRowTableSpecFor(const EntryConfig& config, uint64_t seed,
                          GpuRowTableSpec* spec);

// The update time (seconds) kept at float |offset| of a row.
MONOLITH_HOST_DEVICE inline int64_t RowTime(const float* row, int offset) {
  int64_t seconds;
  memcpy(&seconds, row + offset, sizeof(seconds));
  return seconds;
}

MONOLITH_HOST_DEVICE inline void SetRowTime(float* row, int offset,
                                            int64_t seconds) {
  memcpy(row + offset, &seconds, sizeof(seconds));
}

// A uniform float in [0, 1) from (seed, id, column): SplitMix64's
// finalizer, its top 24 bits.
MONOLITH_HOST_DEVICE inline float UniformFor(uint64_t seed, int64_t id,
                                             int column) {
  uint64_t z = seed ^ (static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ULL) ^
               (static_cast<uint64_t>(column) << 32);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
}

// Column c (< seg.dim) of a new row of |id|: its value and its optimizer
// state. The rest of a new row is zero.
MONOLITH_HOST_DEVICE inline void InitColumn(const GpuSegment& seg, int64_t id,
                                            int c, float* row) {
  const int column = seg.value_offset + c;
  row[column] = seg.init_max > seg.init_min
                    ? seg.init_min + (seg.init_max - seg.init_min) *
                                         UniformFor(seg.init_seed, id, column)
                    : seg.init_min;
  if (seg.optimizer == GpuSegment::Optimizer::kAdagrad) {
    row[seg.state_offset + c] = seg.initial_accumulator;
  }
}

// One gradient step on column c (< seg.dim) of |row|; |grad| is the whole
// embedding's gradient. The CPU engine's formulas (adagrad_family.cc):
//   sgd:     w -= lr * g
//   adagrad: g' = g + wd * w; norm += g'^2; w -= lr / sqrt(norm) * g'
MONOLITH_HOST_DEVICE inline void ApplyColumn(const GpuSegment& seg, float lr,
                                             const float* grad, int c,
                                             float* row) {
  float* w = row + seg.value_offset + c;
  const float g_raw = grad[seg.value_offset + c];
  if (seg.optimizer == GpuSegment::Optimizer::kSgd) {
    *w -= lr * g_raw;
    return;
  }
  float* norm = row + seg.state_offset + c;
  const float g = g_raw + seg.weight_decay * *w;
  const float acc = *norm + g * g;
  *norm = acc;
  *w -= lr / sqrtf(acc) * g;
}

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_SPEC_H_
