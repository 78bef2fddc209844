// sgd, adagrad, dynamic_wd_adagrad, group_adagrad, ftrl and group_ftrl.
//
// State layouts (floats unless noted) and dumps follow Monolith's optimizers
// so that their checkpoints restore here:
//   sgd            none                     SgdOptimizerDump {}
//   adagrad        norm[D]                  adagrad.norm
//   dynamic_wd     norm[D], int64 last_step dynamic_wd_adagrad.{norm,
//                                             last_update_step}
//   group_adagrad  grad_square_sum          group_adagrad.grad_square_sum
//   ftrl           norm[D], zero[D]         ftrl.{zero, norm}
//   group_ftrl     norm[D], zero[D]         group_ftrl.{zero, norm}
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_internal.h"

namespace monolith {
namespace hash_table {
namespace optimizer_internal {
namespace {

// ---------------------------------------------------------------- sgd

class SgdOptimizer final : public OptimizerBase {
 public:
  using Config = SgdOptimizerConfig;
  // Only warmup_steps, which NewOptimizer checks.
  static void Validate(const Config&, int, ConfigChecker*) {}

  explicit SgdOptimizer(int dim) : OptimizerBase("Sgd", dim) {}
  SgdOptimizer(const Config&, int dim) : SgdOptimizer(dim) {}

  int64_t StateBytes() const override { return 0; }
  void Init(void*) const override {}

  void Optimize(void*, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    const float lr = learning_rates[0];
    float* __restrict w = num;
    const float* __restrict g = grad;
    for (int i = 0; i < dim_; ++i) w[i] -= lr * g[i];
  }

  void WriteDump(const void*, WireWriter* out) const override {
    WriteSingleDump(out, SingleOptimizerDump::kSgdFieldNumber, 0,
                    [](WireWriter*) {});
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void*) const override {
    const SingleOptimizerDump* entry;
    return GetEntry(dump, first, 0, SingleOptimizerDump::kSgd, &entry);
  }
};

// ---------------------------------------------------------------- adagrad

// norm += g^2; w -= lr / sqrt(norm) * g, with g = grad + wd * w. A norm of
// 0 (initial_accumulator_value 0 and only zero gradients so far) moves
// nothing: Monolith computed 0 / 0 there, a NaN for good. A NaN gradient
// makes w NaN, as there (a divergence must show, not freeze w).
//
// This is Monolith's scalar (BaselineAdagradOptimize) formula. Its AVX path
// puts the weight-decayed g into norm but moves w by the raw gradient; the
// scalar formula is the intended one and is what we compute on every path.
// Written as one flat loop over restrict pointers so that the compiler
// vectorizes it (see copts in BUILD: -fno-math-errno lets sqrt vectorize).
inline void AdagradKernel(float* __restrict w, float* __restrict norm,
                          const float* __restrict grad, int n, float lr,
                          float wd) {
  for (int i = 0; i < n; ++i) {
    const float g = grad[i] + wd * w[i];
    const float acc = norm[i] + g * g;
    norm[i] = acc;
    w[i] -= acc == 0.0f ? 0.0f : lr / std::sqrt(acc) * g;
  }
}

class AdagradOptimizer final : public OptimizerBase {
 public:
  // hessian_compression_times is unused, as in Monolith.
  using Config = AdagradOptimizerConfig;
  static void Validate(const Config&, int, ConfigChecker* check) {
    check->NonNegative({"initial_accumulator_value", "weight_decay_factor"});
  }

  AdagradOptimizer(const Config& c, int dim)
      : OptimizerBase("Adagrad", dim),
        init_(c.initial_accumulator_value()),
        wd_(c.weight_decay_factor()) {}

  int64_t StateBytes() const override { return dim_ * sizeof(float); }

  void Init(void* state) const override {
    std::fill_n(static_cast<float*>(state), dim_, init_);
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    AdagradKernel(num, static_cast<float*>(state), grad, dim_,
                  learning_rates[0], wd_);
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    WriteSingleDump(out, SingleOptimizerDump::kAdagradFieldNumber,
                    WireWriter::FloatsBytes(1, dim_), [&](WireWriter* w) {
                      w->Floats(AdagradOptimizerDump::kNormFieldNumber,
                                static_cast<const float*>(state), dim_);
                    });
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(
        GetEntry(dump, first, 0, SingleOptimizerDump::kAdagrad, &entry));
    return ReadFloats(entry->adagrad().norm(), "adagrad.norm", dim_,
                      static_cast<float*>(state));
  }

 private:
  const float init_;
  const float wd_;
};

// ---------------------------------------------------------- dynamic_wd

// Adagrad with optionally decoupled and optionally step-dependent weight
// decay. Monolith declares this optimizer but its factory throws "not
// implemented"; the update below is its BaselineDynamicWdAdagradOptimize
// (dynamic_wd_avx_utils.h):
//   coupled:   g = grad + wd * w; norm += g^2; w -= lr / sqrt(norm) * g
//   decoupled: g = grad;          norm += g^2; w -= lr / sqrt(norm) * g
//                                                   + lr * wd * w
// The dynamic part (enable_dynamic_wd, dynamic_wd_temperature,
// flip_direction) has no implementation in Monolith; ours scales wd by
//   s = gap ^ (+-1 / temperature),  gap = max(1, step - last_update_step),
// with + (an entry not updated for gap steps catches up on their decay)
// unless flip_direction (rarely updated entries decay less). In decoupled
// mode the decay fraction lr * wd * s is capped at 1 so that a long gap
// shrinks w to 0 at most, never past it; in coupled mode the scaled decay
// enters g, and so norm, as adagrad's does. The original's AVX path for the
// coupled case moves w by the raw gradient; we use the scalar formula.
// last_update_step is -1 until the first update (gap 1 then).
class DynamicWdAdagradOptimizer final : public OptimizerBase {
 public:
  using Config = DynamicWdAdagradOptimizerConfig;
  static void Validate(const Config& c, int, ConfigChecker* check) {
    check->NonNegative({"initial_accumulator_value", "weight_decay_factor"});
    if (c.enable_dynamic_wd()) check->Positive("dynamic_wd_temperature");
  }

  DynamicWdAdagradOptimizer(const Config& c, int dim)
      : OptimizerBase("DynamicWdAdagrad", dim),
        init_(c.initial_accumulator_value()),
        wd_(c.weight_decay_factor()),
        decouple_(c.decouple_weight_decay()),
        dynamic_(c.enable_dynamic_wd()),
        exponent_((c.flip_direction() ? -1.0 : 1.0) /
                  static_cast<double>(c.dynamic_wd_temperature())) {}

  int64_t StateBytes() const override {
    return dim_ * sizeof(float) + sizeof(int64_t);
  }

  void Init(void* state) const override {
    std::fill_n(static_cast<float*>(state), dim_, init_);
    StoreInt64(LastStep(state), -1);
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates,
                int64_t global_step) const override {
    const float lr = learning_rates[0];
    float wd = wd_;
    const int64_t last = LoadInt64(LastStep(state));
    if (dynamic_ && wd != 0.0f) {
      const int64_t gap =
          (last < 0 || global_step <= last) ? 1 : global_step - last;
      // Capped at the largest float (a low temperature and a long gap
      // overflow it).
      wd = static_cast<float>(std::min(
          wd * std::pow(static_cast<double>(gap), exponent_),
          static_cast<double>(std::numeric_limits<float>::max())));
    }
    float* __restrict w = num;
    float* __restrict norm = static_cast<float*>(state);
    const float* __restrict gr = grad;
    if (decouple_) {
      float decay = lr * wd;
      if (dynamic_) decay = std::min(decay, 1.0f);
      for (int i = 0; i < dim_; ++i) {
        const float g = gr[i];
        const float acc = norm[i] + g * g;
        norm[i] = acc;
        w[i] -= (acc == 0.0f ? 0.0f : lr / std::sqrt(acc) * g) + decay * w[i];
      }
    } else {
      // As decoupled decay's: at most 1 / lr, or wd * w overflows, and the
      // gradient it joins makes the entry NaN for good. Without a rate that
      // bounds it (0, negative, subnormal) the factor is not scaled.
      if (dynamic_) {
        const float cap = 1.0f / lr;
        wd = lr > 0.0f && std::isfinite(cap) ? std::min(wd, cap) : wd_;
      }
      AdagradKernel(w, norm, gr, dim_, lr, wd);
    }
    // The latest step: a slower worker's older step does not move it back
    // (the next gap would count steps already counted).
    StoreInt64(LastStep(state), std::max(last, global_step));
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    WriteSingleDump(
        out, SingleOptimizerDump::kDynamicWdAdagradFieldNumber,
        WireWriter::FloatsBytes(1, dim_) + 2, [&](WireWriter* w) {
          w->Floats(DynamicWdAdagradOptimizerDump::kNormFieldNumber,
                    static_cast<const float*>(state), dim_);
          w->Int64(DynamicWdAdagradOptimizerDump::kLastUpdateStepFieldNumber,
                   LoadInt64(LastStep(state)));
        });
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(GetEntry(
        dump, first, 0, SingleOptimizerDump::kDynamicWdAdagrad, &entry));
    const DynamicWdAdagradOptimizerDump& d = entry->dynamic_wd_adagrad();
    MONOLITH_RETURN_IF_ERROR(ReadFloats(d.norm(), "dynamic_wd_adagrad.norm",
                                        dim_, static_cast<float*>(state)));
    // Absent: never updated.
    StoreInt64(LastStep(state),
               d.has_last_update_step() ? d.last_update_step() : -1);
    return Status::OK();
  }

 private:
  void* LastStep(void* state) const {
    return static_cast<char*>(state) + dim_ * sizeof(float);
  }
  const void* LastStep(const void* state) const {
    return static_cast<const char*>(state) + dim_ * sizeof(float);
  }

  const float init_;
  const float wd_;
  const bool decouple_;
  const bool dynamic_;
  const double exponent_;
};

// ------------------------------------------------------- group_adagrad

// Adagrad with group lasso (one accumulator per entry):
//   g = grad + wd * w;  acc += max_i g_i^2;  a = lr / (beta + sqrt(acc))
//   z = g - w / a;  w = 0 if |z| <= l2 else -a * (|z| - l2) / |z| * z
// Monolith zeroes only when |z| < l2 and so divides 0 by 0 when z = 0 and
// l2 = 0; at |z| == l2 both forms give 0.
class GroupAdagradOptimizer final : public OptimizerBase {
 public:
  using Config = GroupAdaGradOptimizerConfig;
  static void Validate(const Config&, int, ConfigChecker* check) {
    check->NonNegative({"initial_accumulator_value", "beta",
                        "l2_regularization_strength", "weight_decay_factor"});
  }

  GroupAdagradOptimizer(const Config& c, int dim)
      : OptimizerBase("GroupAdaGrad", dim),
        init_(c.initial_accumulator_value()),
        beta_(c.beta()),
        l2_(c.l2_regularization_strength()),
        wd_(c.weight_decay_factor()) {}

  int64_t StateBytes() const override { return sizeof(float); }

  void Init(void* state) const override {
    *static_cast<float*>(state) = init_;
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    // A learning rate of 0 (e.g. a schedule's start) leaves the entry and
    // its state as they are; Monolith divided w by a = 0.
    if (learning_rates[0] == 0.0f) return;
    float* __restrict w = num;
    const float* __restrict gr = grad;
    float max_sq = 0.0f;
    for (int i = 0; i < dim_; ++i) {
      const float g = gr[i] + wd_ * w[i];
      max_sq = std::max(max_sq, g * g);
    }
    float& acc = *static_cast<float*>(state);
    acc += max_sq;
    // No gradient yet with beta 0: the step a is infinite and z = -w / a
    // is 0, so the proximal update zeroes w where l2 > 0, as Monolith's; at
    // l2 = 0 it is 0 / 0 (Monolith's NaN for good), and w stays.
    const float den = beta_ + std::sqrt(acc);
    if (den == 0.0f) {
      if (l2_ > 0.0f) std::fill_n(w, dim_, 0.0f);
      return;
    }
    const float a = learning_rates[0] / den;
    // z overwrites w in place: z_i depends on w_i only.
    float z_sq = 0.0f;
    for (int i = 0; i < dim_; ++i) {
      const float z = (gr[i] + wd_ * w[i]) - w[i] / a;
      w[i] = z;
      z_sq += z * z;
    }
    const float z_norm = std::sqrt(z_sq);
    const float k = z_norm > l2_ ? -a * (z_norm - l2_) / z_norm : 0.0f;
    for (int i = 0; i < dim_; ++i) w[i] *= k;
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    WriteSingleDump(out, SingleOptimizerDump::kGroupAdagradFieldNumber,
                    WireWriter::FloatsBytes(1, 1), [&](WireWriter* w) {
                      w->Float(GroupAdaGradOptimizerDump::
                                   kGradSquareSumFieldNumber,
                               *static_cast<const float*>(state));
                    });
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(
        GetEntry(dump, first, 0, SingleOptimizerDump::kGroupAdagrad, &entry));
    MONOLITH_RETURN_IF_ERROR(
        RequireField(entry->group_adagrad().has_grad_square_sum(),
                     "group_adagrad.grad_square_sum"));
    *static_cast<float*>(state) = entry->group_adagrad().grad_square_sum();
    return Status::OK();
  }

 private:
  const float init_;
  const float beta_;
  const float l2_;
  const float wd_;
};

// ---------------------------------------------------------- ftrl family

// Both keep norm[D] then zero[D] (Monolith's FTRL layout) and dump the two
// repeated fields zero and norm of their own dump message. Their configs
// (ConfigT) have the same fields and rules.
template <typename ConfigT, typename DumpT>
class FtrlBase : public OptimizerBase {
 public:
  using Config = ConfigT;
  static void Validate(const Config&, int, ConfigChecker* check) {
    check->NonNegative({"initial_accumulator_value", "beta",
                        "l1_regularization_strength",
                        "l2_regularization_strength"});
  }

  FtrlBase(const char* name, const Config& c, int dim)
      : OptimizerBase(name, dim),
        init_(c.initial_accumulator_value()),
        beta_(c.beta()),
        l1_(c.l1_regularization_strength()),
        l2_(c.l2_regularization_strength()) {}

  int64_t StateBytes() const override { return 2 * dim_ * sizeof(float); }

  void Init(void* state) const override {
    float* norm = static_cast<float*>(state);
    std::fill_n(norm, dim_, init_);
    std::fill_n(norm + dim_, dim_, 0.0f);
  }

 protected:
  // Writes the SingleOptimizerDump member |type| (a DumpT).
  void WriteDumpAs(int type, const void* state, WireWriter* out) const {
    const float* norm = static_cast<const float*>(state);
    WriteSingleDump(out, type, 2 * WireWriter::FloatsBytes(1, dim_),
                    [&](WireWriter* w) {
      w->Floats(DumpT::kZeroFieldNumber, norm + dim_, dim_);
      w->Floats(DumpT::kNormFieldNumber, norm, dim_);
    });
  }

  Status RestoreFrom(const DumpT& d, const std::string& prefix,
                     void* state) const {
    float* norm = static_cast<float*>(state);
    MONOLITH_RETURN_IF_ERROR(
        ReadFloats(d.zero(), (prefix + ".zero").c_str(), dim_, norm + dim_));
    return ReadFloats(d.norm(), (prefix + ".norm").c_str(), dim_, norm);
  }

  const float init_;
  const float beta_;
  const float l1_;
  const float l2_;
};

// FTRL-Proximal (McMahan et al. 2013), per coordinate:
//   n' = n + g^2;  sigma = (sqrt(n') - sqrt(n)) / lr;  z += g - sigma * w
//   w = |z| <= l1 ? 0 : lr * (sign(z) * l1 - z) / (sqrt(n') + beta + l2 * lr)
// Monolith writes sign(z) as std::signbit(z), which is 1 for negative z and
// 0 otherwise, so with l1 > 0 it never shrinks positive z and pushes negative
// z the wrong way. We use the intended sign(z) (as Monolith's group FTRL
// does); with the default l1 = 0 the two agree.
class FtrlOptimizer final
    : public FtrlBase<FtrlOptimizerConfig, FtrlOptimizerDump> {
 public:
  FtrlOptimizer(const Config& c, int dim) : FtrlBase("Ftrl", c, dim) {}

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    const float lr = learning_rates[0];
    // sigma divides by lr: a learning rate of 0 (e.g. a schedule's start)
    // leaves the entry and its state as they are (Monolith made them NaN).
    if (lr == 0.0f) return;
    float* __restrict w = num;
    float* __restrict norm = static_cast<float*>(state);
    float* __restrict zero = norm + dim_;
    const float* __restrict g = grad;
    for (int i = 0; i < dim_; ++i) {
      const float n_new = norm[i] + g[i] * g[i];
      const float sqrt_new = std::sqrt(n_new);
      const float sigma = (sqrt_new - std::sqrt(norm[i])) / lr;
      const float z = zero[i] + (g[i] - sigma * w[i]);
      zero[i] = z;
      norm[i] = n_new;
      // den is 0 only when beta and l2 are 0 and g * g underflowed to 0
      // with a zero accumulator: w = 0 there, as group FTRL's (not +-inf).
      const float den = sqrt_new + beta_ + l2_ * lr;
      // Not "> l1": a NaN z (a NaN gradient or rate) shows in w, where it
      // pinned w at 0 with NaN state for good.
      w[i] = !(std::fabs(z) <= l1_) && den != 0.0f
                 ? lr * (std::copysign(l1_, z) - z) / den
                 : 0.0f;
    }
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    WriteDumpAs(SingleOptimizerDump::kFtrlFieldNumber, state, out);
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(
        GetEntry(dump, first, 0, SingleOptimizerDump::kFtrl, &entry));
    return RestoreFrom(entry->ftrl(), "ftrl", state);
  }
};

// FTRL with group sparsity over the entry (Monolith's
// BaselineGroupFTRLOptimize; its factory throws "not implemented"):
//   per coordinate as FTRL for n and z, then with |z| the entry's L2 norm:
//   w = 0 if |z| <= l1 else lr * z * (l1 - |z|) / |z|
//                                / (beta + sqrt(n') + l2 * lr)
// Monolith zeroes only when |z| < l1 (0 / 0 when z = 0 and l1 = 0; both give
// 0 at |z| == l1), and its AVX path subtracts l2 * lr in the denominator
// where the scalar path adds it; we follow the scalar path.
class GroupFtrlOptimizer final
    : public FtrlBase<GroupFtrlOptimizerConfig, GroupFtrlOptimizerDump> {
 public:
  GroupFtrlOptimizer(const Config& c, int dim)
      : FtrlBase("GroupFtrl", c, dim) {}

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    const float lr = learning_rates[0];
    if (lr == 0.0f) return;  // as FTRL
    float* __restrict w = num;
    float* __restrict norm = static_cast<float*>(state);
    float* __restrict zero = norm + dim_;
    const float* __restrict g = grad;
    float z_sq = 0.0f;
    for (int i = 0; i < dim_; ++i) {
      const float n_new = norm[i] + g[i] * g[i];
      const float sigma = (std::sqrt(n_new) - std::sqrt(norm[i])) / lr;
      const float z = zero[i] + (g[i] - sigma * w[i]);
      zero[i] = z;
      norm[i] = n_new;
      z_sq += z * z;
    }
    const float z_norm = std::sqrt(z_sq);
    // Not !(z_norm > l1_): a NaN norm (a NaN gradient) goes on to make the
    // row NaN, as the original's formula does, rather than zeroing it.
    if (z_norm <= l1_) {
      std::fill_n(w, dim_, 0.0f);
      return;
    }
    const float k = (l1_ - z_norm) / z_norm;
    for (int i = 0; i < dim_; ++i) {
      // 0 where beta, l2 and the coordinate's norm are all 0 (no gradient
      // yet, so its z is 0 too).
      const float den = beta_ + std::sqrt(norm[i]) + l2_ * lr;
      w[i] = den != 0.0f ? lr * zero[i] * k / den : 0.0f;
    }
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    WriteDumpAs(SingleOptimizerDump::kGroupFtrlFieldNumber, state, out);
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(
        GetEntry(dump, first, 0, SingleOptimizerDump::kGroupFtrl, &entry));
    return RestoreFrom(entry->group_ftrl(), "group_ftrl", state);
  }
};

}  // namespace

std::vector<OptimizerKind> AdagradFamilyKinds() {
  return {
      KindOf<SgdOptimizer>(),
      KindOf<AdagradOptimizer>(),
      KindOf<DynamicWdAdagradOptimizer>(),
      KindOf<GroupAdagradOptimizer>(),
      KindOf<FtrlOptimizer>(),
      KindOf<GroupFtrlOptimizer>(),
  };
}

}  // namespace optimizer_internal
}  // namespace hash_table
}  // namespace monolith
