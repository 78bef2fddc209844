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
#include <string>
#include <vector>

#include "monolith/native_training/runtime/hash_table/compressor/fp16.h"
#include "monolith/native_training/runtime/hash_table/host_device.h"
#include "monolith/native_training/runtime/hash_table/initializer/init_bits.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/hash_table/update_time.h"

namespace monolith {
namespace hash_table {

class EntryConfig;

namespace gpu {

// The ids a GPU table cannot hold: its map marks free slots with the first,
// and keeps the second for marking removed ones (earlier versions did, and
// removal in place would), so the ids a table takes stay the same.
// Inserting one is InvalidArgument naming it; looking one up reads zeros.
constexpr int64_t kEmptySlotId = std::numeric_limits<int64_t>::max();
constexpr int64_t kReclaimedSlotId = std::numeric_limits<int64_t>::min();

MONOLITH_HOST_DEVICE inline bool StorableId(int64_t id) {
  return id != kEmptySlotId && id != kReclaimedSlotId;
}

// The ids of one checkpoint dump shard: floormod(id, count) == index (the
// CPU tables split their saves by their own shards instead; restores read
// every shard and take the ids they hold). The default holds every id.
struct IdShard {
  int index = 0;
  int count = 1;

  MONOLITH_HOST_DEVICE bool Holds(int64_t id) const {
    if (count <= 1) return true;
    int64_t m = id % count;
    if (m < 0) m += count;
    return m == index;
  }
};

// One segment: floats [value_offset, value_offset + dim) of the embedding,
// its optimizer's state at state_offset (floats into the row), laid out as
// the CPU engine's optimizers lay it out:
//   sgd      none
//   adagrad  norm[dim]
//   adam     m[dim], v[dim], beta1^t, beta2^t
//   amsgrad  m[dim], v[dim], vhat[dim], beta1^t, beta2^t
//   ftrl     norm[dim], z[dim]
//   adadelta accum[dim], accum_update[dim]
//   momentum, rmsprop, rmspropv2   n[dim]
struct GpuSegment {
  enum class Optimizer {
    kSgd, kAdagrad, kAdam, kAmsgrad, kFtrl, kAdadelta, kMomentum, kRmsprop,
    kRmspropV2
  };
  Optimizer optimizer = Optimizer::kSgd;
  int value_offset = 0;
  int dim = 0;
  int state_offset = 0;
  // adagrad and ftrl: the accumulators' initial value.
  float initial_accumulator = 0.0f;
  // Every optimizer but sgd and ftrl: the weight decay.
  float weight_decay = 0.0f;
  // momentum, rmsprop and rmspropv2; adadelta's averaging_ratio.
  float momentum = 0.0f;
  // adam and amsgrad (epsilon: adadelta's too).
  float beta1 = 0.0f;
  float beta2 = 0.0f;
  float epsilon = 0.0f;
  bool nesterov = false;  // adam, amsgrad and momentum
  // ftrl.
  float beta = 0.0f;
  float l1 = 0.0f;
  float l2 = 0.0f;
  // New entries' values: init_min, or uniform in [init_min, init_max) when
  // init_max > init_min, drawn from a hash of (init_seed, id, column) so the
  // same id gets the same values whatever the batch.
  float init_min = 0.0f;
  float init_max = 0.0f;
  uint64_t init_seed = 0;
  // SERVING rows: where the segment's values start in the row, in bytes
  // (the CPU serving entry's layout: segments packed byte after byte), and
  // whether they are binary16 (fp16 compressor) or float32 (fp32).
  int data_byte = 0;
  bool half = false;

  // Floats of optimizer state.
  MONOLITH_HOST_DEVICE int StateFloats() const {
    switch (optimizer) {
      case Optimizer::kAdagrad:
        return dim;
      case Optimizer::kAdam:
        return 2 * dim + 2;
      case Optimizer::kAmsgrad:
        return 3 * dim + 2;
      case Optimizer::kFtrl:
      case Optimizer::kAdadelta:
        return 2 * dim;
      case Optimizer::kMomentum:
      case Optimizer::kRmsprop:
      case Optimizer::kRmspropV2:
        return dim;
      default:
        return 0;
    }
  }

  // adam and amsgrad: where beta1^t and beta2^t are, in floats from
  // state_offset.
  MONOLITH_HOST_DEVICE int BetaPowersAt() const {
    return (optimizer == Optimizer::kAmsgrad ? 3 : 2) * dim;
  }
  MONOLITH_HOST_DEVICE bool HasBetaPowers() const {
    return optimizer == Optimizer::kAdam || optimizer == Optimizer::kAmsgrad;
  }
};

// Floats a row's update time takes.
constexpr int kTimeFloats = 2;

struct GpuRowTableSpec {
  // Floats of the embedding (the segments' dims) and of the CPU entry (the
  // embedding and the optimizer state; SERVING: the compressed values, in
  // floats).
  int value_floats = 0;
  int entry_floats = 0;
  // SERVING entries: each segment's values stored as its compressor stores
  // them (GpuSegment::data_byte, half), no optimizer state; new entries
  // are zeros, and the table takes no gradients.
  bool serving = false;
  // Floats of a row: the entry and its update time, at float entry_floats.
  int row_floats() const { return entry_floats + kTimeFloats; }
  std::vector<GpuSegment> segments;
  // Slots of the first map; it doubles when a batch would fill it past
  // max_load.
  int64_t initial_capacity = 1 << 16;
  float max_load = 0.6f;
  // MixId(id, hash_seed) picks an id's home bucket: TableHashSeed of the
  // table's seed, as the CPU table's shards and slots.
  uint64_t hash_seed = 0;
  // The CUDA device the table lives on; every call makes it current.
  int device = 0;
};

// InvalidArgument unless |spec| describes a row GpuRowTable can hold: the
// segments tile the embedding, each one's state (TRAINING) or stored
// values (SERVING) lie inside the entry, a load limit in (0, 1), a
// positive initial capacity. (Inline: the nvcc-only builds of the table
// have no gpu_row_spec.cc.)
inline Status CheckGpuRowTableSpec(const GpuRowTableSpec& spec) {
  // TRAINING entries hold the embedding itself; SERVING ones may hold it
  // in fewer floats (fp16).
  if (spec.value_floats <= 0 || spec.entry_floats <= 0 ||
      (!spec.serving && spec.entry_floats < spec.value_floats)) {
    return InvalidArgumentError(
        "GPU table: need 0 < value_floats and 0 < entry_floats (and "
        "value_floats <= entry_floats for TRAINING entries), got " +
        std::to_string(spec.value_floats) + " and " +
        std::to_string(spec.entry_floats));
  }
  if (!(spec.max_load > 0.0f && spec.max_load < 1.0f) ||
      spec.initial_capacity < 1) {
    return InvalidArgumentError(
        "GPU table: max_load must be in (0, 1) and initial_capacity "
        "positive");
  }
  int covered = 0;
  for (size_t s = 0; s < spec.segments.size(); ++s) {
    const GpuSegment& seg = spec.segments[s];
    const int state = spec.serving ? 0 : seg.StateFloats();
    if (seg.dim <= 0 || seg.value_offset != covered ||
        (state > 0 && (seg.state_offset < spec.value_floats ||
                       seg.state_offset + state > spec.entry_floats))) {
      return InvalidArgumentError(
          "GPU table: segment " + std::to_string(s) +
          " does not fit the row (value_offset " +
          std::to_string(seg.value_offset) + ", dim " +
          std::to_string(seg.dim) + ", state_offset " +
          std::to_string(seg.state_offset) + ", entry_floats " +
          std::to_string(spec.entry_floats) + ")");
    }
    if (spec.serving &&
        (seg.data_byte < 0 ||
         int64_t{seg.data_byte} + int64_t{seg.dim} * (seg.half ? 2 : 4) >
             int64_t{4} * spec.entry_floats)) {
      return InvalidArgumentError(
          "GPU table: serving segment " + std::to_string(s) + " (byte " +
          std::to_string(seg.data_byte) + ", dim " + std::to_string(seg.dim) +
          ") does not fit an entry of " + std::to_string(spec.entry_floats) +
          " floats");
    }
    covered += seg.dim;
  }
  if (covered != spec.value_floats) {
    return InvalidArgumentError(
        "GPU table: the segments' dims sum to " + std::to_string(covered) +
        ", value_floats is " + std::to_string(spec.value_floats));
  }
  return Status::OK();
}

// The spec of a table of |config| entries (TRAINING: sgd, adagrad, adam,
// amsgrad, ftrl, adadelta, momentum, rmsprop and rmspropv2 segments with
// zeros, ones, constants or random_uniform initializers, no warmup_steps;
// SERVING: fp16 and fp32 compressors), with |seed| for random initializers
// and the hash seed. InvalidArgument naming the segment for anything else.
// The row layout is checked against the CPU engine's EntryAccessor for the
// same config.
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

// A uniform float in [0, 1) from (seed, id, column): the top 24 of
// InitBits, the bits CPU tables draw from too.
MONOLITH_HOST_DEVICE inline float UniformFor(uint64_t seed, int64_t id,
                                             int column) {
  return static_cast<float>(InitBits(seed, id, column) >> 40) *
         (1.0f / 16777216.0f);
}

// Column c (< seg.dim) of a new row of |id|: its value and its optimizer
// state (column 0 also sets the entry's own state, adam's and amsgrad's
// beta powers). The rest of a new row is zero.
MONOLITH_HOST_DEVICE inline void InitColumn(const GpuSegment& seg, int64_t id,
                                            int c, float* row) {
  const int column = seg.value_offset + c;
  if (seg.init_max > seg.init_min) {
    // A weighted sum of the bounds: their difference can overflow a float
    // (minval -3e38, maxval 3e38: inf, and NaN at u = 0). Rounding may
    // land an ulp outside [minval, maxval), the CPU's half-open range.
    const float u = UniformFor(seg.init_seed, id, column);
    const float x =
        fmaxf(seg.init_min * (1.0f - u) + seg.init_max * u, seg.init_min);
    row[column] = x < seg.init_max ? x : nextafterf(seg.init_max, seg.init_min);
  } else {
    row[column] = seg.init_min;
  }
  float* state = row + seg.state_offset;
  switch (seg.optimizer) {
    case GpuSegment::Optimizer::kAdagrad:
    case GpuSegment::Optimizer::kFtrl:
      state[c] = seg.initial_accumulator;
      break;
    case GpuSegment::Optimizer::kAdam:
    case GpuSegment::Optimizer::kAmsgrad:
      if (c == 0) {
        state[seg.BetaPowersAt()] = seg.beta1;
        state[seg.BetaPowersAt() + 1] = seg.beta2;
      }
      break;
    default:
      break;
  }
}

// Column c (< seg.dim) of a SERVING row's segment, decoded, and encoded
// back, byte for byte as the CPU serving entry (fp16: IEEE binary16,
// little-endian, rounded to nearest even; fp32: as is). Segments are packed
// byte after byte, so a value may sit at any even offset: it is copied,
// not loaded as a float.
MONOLITH_HOST_DEVICE inline float ReadStored(const GpuSegment& seg,
                                             const float* row, int c) {
  const char* data = reinterpret_cast<const char*>(row) + seg.data_byte;
  if (seg.half) {
    uint16_t bits;
    memcpy(&bits, data + 2 * c, sizeof(bits));
    return HalfBitsToFloat(bits);
  }
  float value;
  memcpy(&value, data + 4 * c, sizeof(value));
  return value;
}

MONOLITH_HOST_DEVICE inline void WriteStored(const GpuSegment& seg, float* row,
                                             int c, float value) {
  char* data = reinterpret_cast<char*>(row) + seg.data_byte;
  if (seg.half) {
    const uint16_t bits = FloatToHalfBits(value);
    memcpy(data + 2 * c, &bits, sizeof(bits));
  } else {
    memcpy(data + 4 * c, &value, sizeof(value));
  }
}

// One gradient step on an entry's segment is BeginStep (every column reads
// the entry's own state), ApplyColumn for each column, then EndStep once,
// after all columns (it changes that state). The CPU engine's formulas
// (adagrad_family.cc, moment_optimizers.cc):
//   sgd:     w -= lr * g
//   adagrad: g' = g + wd * w; norm += g'^2; w -= lr / sqrt(norm) * g'
//   adam:    lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t); g' = g + wd * w;
//            m += (g' - m)(1 - b1); v += (g'^2 - v)(1 - b2);
//            w -= lr_t * m / (sqrt(v) + eps)   (nesterov: g'(1 - b1) + b1 m
//            in place of m); then b1^t *= b1, b2^t *= b2
//   amsgrad: adam with vhat = max(vhat, v) in place of v in the step
//   adadelta: g' = g + wd w; a' = rho a + (1 - rho) g'^2;
//            u = sqrt(au + eps) / sqrt(a' + eps) g'; w -= lr u;
//            au = rho au + (1 - rho) u^2
//   ftrl:    n' = n + g^2; sigma = (sqrt(n') - sqrt(n)) / lr;
//            z += g - sigma * w;
//            w = |z| <= l1 ? 0
//                          : lr (sign(z) l1 - z) / (sqrt(n') + beta + l2 lr)
//   momentum: dx = lr (g + wd w); n' = mu n - dx;
//            w += nesterov ? -mu n + (1 + mu) n' : n'
//   rmsprop: dx = g + wd w; n' = mu n + (1 - mu) dx^2 (rmspropv2: + dx^2);
//            w -= lr / (sqrt(n') + 1) dx, in double as the CPU's
struct StepScalars {
  float lr = 0.0f;  // the learning rate of this step's columns
};

MONOLITH_HOST_DEVICE inline StepScalars BeginStep(const GpuSegment& seg,
                                                  float lr, const float* row) {
  StepScalars step;
  step.lr = lr;
  if (seg.HasBetaPowers()) {
    const float* powers = row + seg.state_offset + seg.BetaPowersAt();
    step.lr = lr * sqrtf(1 - powers[1]) / (1 - powers[0]);
  }
  return step;
}

// One gradient step on column c (< seg.dim) of |row| with that column's
// gradient |g_raw|.
MONOLITH_HOST_DEVICE inline void ApplyColumnGradient(const GpuSegment& seg,
                                                     const StepScalars& step,
                                                     float g_raw, int c,
                                                     float* row) {
  float* w = row + seg.value_offset + c;
  float* state = row + seg.state_offset;
  const float lr = step.lr;
  switch (seg.optimizer) {
    case GpuSegment::Optimizer::kSgd:
      *w -= lr * g_raw;
      return;
    case GpuSegment::Optimizer::kAdagrad: {
      const float g = g_raw + seg.weight_decay * *w;
      const float acc = state[c] + g * g;
      state[c] = acc;
      // As the CPU's: a zero norm (zero gradients so far) moves nothing.
      *w -= acc == 0.0f ? 0.0f : lr / sqrtf(acc) * g;
      return;
    }
    case GpuSegment::Optimizer::kAdam:
    case GpuSegment::Optimizer::kAmsgrad: {
      float* m = state + c;
      float* v = state + seg.dim + c;
      const float g = g_raw + seg.weight_decay * *w;
      const float m_new = *m + (g - *m) * (1 - seg.beta1);
      const float v_new = *v + (g * g - *v) * (1 - seg.beta2);
      float v_step = v_new;
      if (seg.optimizer == GpuSegment::Optimizer::kAmsgrad) {
        float* vhat = state + 2 * seg.dim + c;
        v_step = *vhat < v_new ? v_new : *vhat;  // the CPU's std::max
        *vhat = v_step;
      }
      const float numer =
          seg.nesterov ? g * (1 - seg.beta1) + seg.beta1 * m_new : m_new;
      *w -= (numer * lr) / (sqrtf(v_step) + seg.epsilon);
      *m = m_new;
      *v = v_new;
      return;
    }
    case GpuSegment::Optimizer::kAdadelta: {
      float* accum = state + c;
      float* accum_update = state + seg.dim + c;
      const float rho = seg.momentum;
      const float g = g_raw + seg.weight_decay * *w;
      const float acc = *accum * rho + g * g * (1 - rho);
      const float u =
          sqrtf(*accum_update + seg.epsilon) / sqrtf(acc + seg.epsilon) * g;
      *w -= u * lr;
      *accum = acc;
      *accum_update = *accum_update * rho + u * u * (1 - rho);
      return;
    }
    case GpuSegment::Optimizer::kFtrl: {
      // As the CPU's: a learning rate of 0 changes nothing.
      if (lr == 0.0f) return;
      float* norm = state + c;
      float* zero = state + seg.dim + c;
      const float n_new = *norm + g_raw * g_raw;
      const float sqrt_new = sqrtf(n_new);
      const float sigma = (sqrt_new - sqrtf(*norm)) / lr;
      const float z = *zero + (g_raw - sigma * *w);
      *zero = z;
      *norm = n_new;
      // As the CPU's: a zero denominator (beta and l2 0, g * g underflowed
      // to 0 with a zero accumulator) gives w = 0, not +-inf.
      const float den = sqrt_new + seg.beta + seg.l2 * lr;
      *w = !(fabsf(z) <= seg.l1) && den != 0.0f
               ? lr * (copysignf(seg.l1, z) - z) / den
               : 0.0f;
      return;
    }
    case GpuSegment::Optimizer::kMomentum: {
      float* n = state + c;
      const float dx = lr * (g_raw + seg.weight_decay * *w);
      const float n_old = *n;
      const float n_new = seg.momentum * n_old - dx;
      *w += seg.nesterov ? -seg.momentum * n_old + (1 + seg.momentum) * n_new
                         : n_new;
      *n = n_new;
      return;
    }
    case GpuSegment::Optimizer::kRmsprop:
    case GpuSegment::Optimizer::kRmspropV2: {
      float* n = state + c;
      const double mu = seg.momentum;
      const double new_sq_weight =
          seg.optimizer == GpuSegment::Optimizer::kRmspropV2 ? 1.0 : 1.0 - mu;
      const double wd = seg.weight_decay;
      const double dx = g_raw + wd * static_cast<double>(*w);
      const float n_new = static_cast<float>(mu * *n + new_sq_weight * dx * dx);
      // The CPU's sqrt of a float is a float's.
      const double eta = static_cast<double>(lr) / (sqrtf(n_new) + 1.0f);
      *w = static_cast<float>(*w - eta * dx);
      *n = n_new;
      return;
    }
  }
}

// ApplyColumnGradient with column c of |grad|, the whole embedding's
// gradient.
MONOLITH_HOST_DEVICE inline void ApplyColumn(const GpuSegment& seg,
                                             const StepScalars& step,
                                             const float* grad, int c,
                                             float* row) {
  ApplyColumnGradient(seg, step, grad[seg.value_offset + c], c, row);
}

MONOLITH_HOST_DEVICE inline void EndStep(const GpuSegment& seg, float* row) {
  if (seg.HasBetaPowers()) {
    float* powers = row + seg.state_offset + seg.BetaPowersAt();
    powers[0] *= seg.beta1;
    powers[1] *= seg.beta2;
  }
}

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_SPEC_H_
