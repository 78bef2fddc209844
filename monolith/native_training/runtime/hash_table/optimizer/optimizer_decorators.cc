#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_decorators.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/initializer/initializer_interface.h"
#include "monolith/native_training/runtime/hash_table/inline_buffer.h"

namespace monolith {
namespace hash_table {
namespace {

// Forwards everything to |base_|; decorators override what they change.
class ForwardingOptimizer : public OptimizerInterface {
 public:
  explicit ForwardingOptimizer(std::unique_ptr<OptimizerInterface> base)
      : base_(std::move(base)) {}

  std::string DebugString() const override { return base_->DebugString(); }
  int DimSize() const override { return base_->DimSize(); }
  int SliceSize() const override { return base_->SliceSize(); }
  int64_t StateBytes() const override { return base_->StateBytes(); }
  int DumpSize() const override { return base_->DumpSize(); }
  void Init(void* state) const override { base_->Init(state); }
  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates,
                int64_t global_step) const override {
    base_->Optimize(state, num, grad, learning_rates, global_step);
  }
  void WriteDump(const void* state, WireWriter* out) const override {
    base_->WriteDump(state, out);
  }
  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    return base_->Restore(dump, first, state);
  }

 protected:
  const std::unique_ptr<OptimizerInterface> base_;
};

// ----------------------------------------------------------------- warmup

class WarmupOptimizer final : public ForwardingOptimizer {
 public:
  WarmupOptimizer(std::unique_ptr<OptimizerInterface> base, int64_t steps)
      : ForwardingOptimizer(std::move(base)),
        steps_(steps),
        slices_(base_->SliceSize()) {}

  std::string DebugString() const override {
    return base_->DebugString() + "+Warmup(" + std::to_string(steps_) + ")";
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates,
                int64_t global_step) const override {
    InlineBuffer<float, 8> lrs(slices_);
    Scale(learning_rates, global_step, lrs.data());
    base_->Optimize(state, num, grad, lrs.data(), global_step);
  }

 private:
  void Scale(const float* in, int64_t global_step, float* out) const {
    const float scale = WarmupLearningRateScale(steps_, global_step);
    for (int i = 0; i < slices_; ++i) out[i] = in[i] * scale;
  }

  const int64_t steps_;
  const int slices_;
};

// ---------------------------------------------------- stochastic rounding

// The initializers' SplitMix64 engine, one per thread.
struct ThreadRng {
  RandomEngine engine;
  bool seeded = false;
};
// Seeded lazily.
thread_local ThreadRng tls_rng;

float UniformFromBits(uint64_t bits) {
  return static_cast<float>(bits >> 40) * 0x1p-24f;  // 24 bits: exact
}

ThreadRng& Rng() {
  ThreadRng& rng = tls_rng;
  if (!rng.seeded) {
    uint64_t s = std::hash<std::thread::id>()(std::this_thread::get_id());
    s ^= reinterpret_cast<uintptr_t>(&rng);
    rng.engine = RandomEngine(RandomEngine(s)());
    rng.seeded = true;
  }
  return rng;
}

class StochasticRoundingOptimizer final : public ForwardingOptimizer {
 public:
  explicit StochasticRoundingOptimizer(std::unique_ptr<OptimizerInterface> base)
      : ForwardingOptimizer(std::move(base)), dim_(base_->DimSize()) {}

  std::string DebugString() const override {
    return base_->DebugString() + "+Fp16StochasticRounding";
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates,
                int64_t global_step) const override {
    base_->Optimize(state, num, grad, learning_rates, global_step);
    Round(num);
  }

 private:
  void Round(float* num) const {
    ThreadRng& rng = Rng();
    RandomEngine engine = rng.engine;  // a local, kept in a register
    for (int i = 0; i < dim_; ++i) {
      num[i] = StochasticRoundFloat16(num[i], UniformFromBits(engine()));
    }
    rng.engine = engine;
  }

  const int dim_;
};

}  // namespace

float WarmupLearningRateScale(int64_t warmup_steps, int64_t global_step) {
  if (warmup_steps <= 0 || global_step >= warmup_steps) return 1.0f;
  if (global_step <= 0) return 0.0f;
  return static_cast<float>(static_cast<double>(global_step) /
                            static_cast<double>(warmup_steps));
}

std::unique_ptr<OptimizerInterface> NewWarmupOptimizer(
    std::unique_ptr<OptimizerInterface> base, int64_t warmup_steps) {
  return std::make_unique<WarmupOptimizer>(std::move(base), warmup_steps);
}

float StochasticRoundFloat16(float v, float u) {
  constexpr float kMaxHalf = 65504.0f;
  if (!(std::fabs(v) <= kMaxHalf)) {  // NaN, inf or out of range
    return std::isfinite(v) ? std::copysign(kMaxHalf, v) : v;
  }
  // The spacing of float16 values around v: 2^(e - 10) for a normal float16
  // exponent e >= -14, and the subnormal spacing 2^-24 below 2^-14.
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  const int e = static_cast<int>((bits >> 23) & 0xff) - 127;
  const int ulp_exp = e < -14 ? -24 : e - 10;
  const uint32_t ulp_bits = static_cast<uint32_t>(ulp_exp + 127) << 23;
  float ulp;
  std::memcpy(&ulp, &ulp_bits, sizeof(ulp));
  // All exact: scaling by a power of two, and v has at most 24 significant
  // bits, so q's integer and fractional parts are floats as well.
  const float q = v / ulp;
  const float q_down = std::floor(q);
  const float frac = q - q_down;
  const float down = q_down * ulp;
  return u < frac ? down + ulp : down;
}

void SeedStochasticRounding(uint64_t seed) {
  tls_rng.engine = RandomEngine(seed);
  tls_rng.seeded = true;
}

float NextStochasticRoundingUniform() {
  return UniformFromBits(Rng().engine());
}

std::unique_ptr<OptimizerInterface> NewStochasticRoundingFloat16Optimizer(
    std::unique_ptr<OptimizerInterface> base) {
  return std::make_unique<StochasticRoundingOptimizer>(std::move(base));
}

}  // namespace hash_table
}  // namespace monolith
