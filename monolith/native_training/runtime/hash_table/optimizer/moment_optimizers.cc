// adadelta, adam, amsgrad, momentum, moving_average, rmsprop, rmspropv2 and
// batch_softmax.
//
// State layouts (floats unless noted) and dumps follow Monolith's optimizers
// so that their checkpoints restore here:
//   adadelta        accum[D], accum_update[D]   adadelta.{accum, accum_update}
//   adam            m[D], v[D], b1^t, b2^t      adam.{m, v, beta1_power,
//                                                 beta2_power}
//   amsgrad         m[D], v[D], vhat[D], b1^t, b2^t
//                                               amsgrad.{m, v, vhat,
//                                                 beta1_power, beta2_power}
//   momentum        n[D]                        momentum.n
//   moving_average  none                        (no dump entry)
//   rmsprop(v2)     n[D]                        rmsprop(v2).n
//   batch_softmax   int64 last global step      batch_softmax.global_step
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_internal.h"

namespace monolith {
namespace hash_table {
namespace optimizer_internal {
namespace {

// ------------------------------------------------------------- adadelta

//   g = grad + wd * w;  acc' = rho * acc + (1 - rho) * g^2
//   u = sqrt(acc_update + eps) / sqrt(acc' + eps) * g;  w -= lr * u
//   acc_update' = rho * acc_update + (1 - rho) * u^2
class AdadeltaOptimizer final : public OptimizerBase {
 public:
  using Config = AdadeltaOptimizerConfig;
  static void Validate(const Config&, int, ConfigChecker* check) {
    check->NonNegative({"weight_decay_factor"})
        .Within("averaging_ratio", 0, 1)
        .NormalPositive("epsilon");
  }

  AdadeltaOptimizer(const Config& c, int dim)
      : OptimizerBase("Adadelta", dim),
        wd_(c.weight_decay_factor()),
        rho_(c.averaging_ratio()),
        eps_(c.epsilon()) {}

  int64_t StateBytes() const override { return 2 * dim_ * sizeof(float); }

  void Init(void* state) const override {
    std::fill_n(static_cast<float*>(state), 2 * dim_, 0.0f);
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    const float lr = learning_rates[0];
    float* __restrict w = num;
    float* __restrict accum = static_cast<float*>(state);
    float* __restrict accum_update = accum + dim_;
    const float* __restrict gr = grad;
    for (int i = 0; i < dim_; ++i) {
      const float g = gr[i] + wd_ * w[i];
      const float acc = accum[i] * rho_ + g * g * (1 - rho_);
      const float u =
          std::sqrt(accum_update[i] + eps_) / std::sqrt(acc + eps_) * g;
      w[i] -= u * lr;
      accum[i] = acc;
      accum_update[i] = accum_update[i] * rho_ + u * u * (1 - rho_);
    }
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    const float* accum = static_cast<const float*>(state);
    WriteSingleDump(out, SingleOptimizerDump::kAdadeltaFieldNumber,
                    WireWriter::FloatsBytes(1, 2 * dim_), [&](WireWriter* w) {
                      w->Floats(AdadeltaOptimizerDump::kAccumFieldNumber,
                                accum, dim_);
                      w->Floats(AdadeltaOptimizerDump::kAccumUpdateFieldNumber,
                                accum + dim_, dim_);
                    });
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(
        GetEntry(dump, first, 0, SingleOptimizerDump::kAdadelta, &entry));
    float* accum = static_cast<float*>(state);
    MONOLITH_RETURN_IF_ERROR(
        ReadFloats(entry->adadelta().accum(), "adadelta.accum", dim_, accum));
    return ReadFloats(entry->adadelta().accum_update(),
                      "adadelta.accum_update", dim_, accum + dim_);
  }

 private:
  const float wd_;
  const float rho_;
  const float eps_;
};

// ---------------------------------------------------------- adam/amsgrad

// Adam (Kingma & Ba, "epsilon hat" form) with beta powers kept per entry:
//   lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t), the powers starting at b1, b2
//   g = grad + wd * w;  m += (g - m)(1 - b1);  v += (g^2 - v)(1 - b2)
//   w -= lr_t * m / (sqrt(v) + eps)
//   nesterov: w -= lr_t * (g (1 - b1) + b1 m) / (sqrt(v) + eps)
// amsgrad uses vhat = max(vhat, v) in place of v in the step.
// Monolith's AdamOptimizerConfig.use_beta1_warmup is unused there and here.
template <bool kAmsgrad>
class AdamOptimizer final : public OptimizerBase {
 public:
  // The two configs have the same fields and rules.
  using Config = std::conditional_t<kAmsgrad, AmsgradOptimizerConfig,
                                    AdamOptimizerConfig>;
  static void Validate(const Config&, int, ConfigChecker* check) {
    check->Within("beta1", 0, 1, /*hi_inclusive=*/false)
        .Within("beta2", 0, 1, /*hi_inclusive=*/false)
        .NonNegative({"weight_decay_factor"})
        .NormalPositive("epsilon");
  }

  AdamOptimizer(const Config& c, int dim)
      : OptimizerBase(kAmsgrad ? "Amsgrad" : "Adam", dim),
        beta1_(c.beta1()),
        beta2_(c.beta2()),
        wd_(c.weight_decay_factor()),
        nesterov_(c.use_nesterov()),
        eps_(c.epsilon()) {}

  int64_t StateBytes() const override {
    return (kVectors * dim_ + 2) * sizeof(float);
  }

  void Init(void* state) const override {
    float* s = static_cast<float*>(state);
    std::fill_n(s, kVectors * dim_, 0.0f);
    s[kVectors * dim_] = beta1_;
    s[kVectors * dim_ + 1] = beta2_;
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    float* s = static_cast<float*>(state);
    float& beta1_power = s[kVectors * dim_];
    float& beta2_power = s[kVectors * dim_ + 1];
    const float lr =
        learning_rates[0] * std::sqrt(1 - beta2_power) / (1 - beta1_power);
    float* __restrict w = num;
    float* __restrict m = s;
    float* __restrict v = s + dim_;
    float* __restrict vhat = s + 2 * dim_;  // amsgrad only
    const float* __restrict gr = grad;
    for (int i = 0; i < dim_; ++i) {
      const float g = gr[i] + wd_ * w[i];
      const float m_new = m[i] + (g - m[i]) * (1 - beta1_);
      const float v_new = v[i] + (g * g - v[i]) * (1 - beta2_);
      float v_step = v_new;
      if (kAmsgrad) {
        v_step = std::max(vhat[i], v_new);
        vhat[i] = v_step;
      }
      const float numer =
          nesterov_ ? g * (1 - beta1_) + beta1_ * m_new : m_new;
      w[i] -= (numer * lr) / (std::sqrt(v_step) + eps_);
      m[i] = m_new;
      v[i] = v_new;
    }
    beta1_power *= beta1_;
    beta2_power *= beta2_;
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    // Adam's and Amsgrad's dumps differ only by vhat.
    using D = std::conditional_t<kAmsgrad, AmsgradOptimizerDump,
                                 AdamOptimizerDump>;
    const float* s = static_cast<const float*>(state);
    WriteSingleDump(out,
                    kAmsgrad ? SingleOptimizerDump::kAmsgradFieldNumber
                             : SingleOptimizerDump::kAdamFieldNumber,
                    WireWriter::FloatsBytes(1, kVectors * dim_ + 2),
                    [&](WireWriter* w) {
                      w->Floats(D::kMFieldNumber, s, dim_);
                      w->Floats(D::kVFieldNumber, s + dim_, dim_);
                      if constexpr (kAmsgrad) {
                        w->Floats(D::kVhatFieldNumber, s + 2 * dim_, dim_);
                      }
                      w->Float(D::kBeta1PowerFieldNumber, s[kVectors * dim_]);
                      w->Float(D::kBeta2PowerFieldNumber,
                               s[kVectors * dim_ + 1]);
                    });
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    float* s = static_cast<float*>(state);
    if (kAmsgrad) {
      MONOLITH_RETURN_IF_ERROR(
          GetEntry(dump, first, 0, SingleOptimizerDump::kAmsgrad, &entry));
      return RestoreFrom(entry->amsgrad(), "amsgrad", s);
    }
    MONOLITH_RETURN_IF_ERROR(
        GetEntry(dump, first, 0, SingleOptimizerDump::kAdam, &entry));
    return RestoreFrom(entry->adam(), "adam", s);
  }

 private:
  static constexpr int kVectors = kAmsgrad ? 3 : 2;

  Status RestoreFrom(const AdamOptimizerDump& d, const std::string& p,
                     float* s) const {
    MONOLITH_RETURN_IF_ERROR(ReadFloats(d.m(), (p + ".m").c_str(), dim_, s));
    MONOLITH_RETURN_IF_ERROR(
        ReadFloats(d.v(), (p + ".v").c_str(), dim_, s + dim_));
    return RestorePowers(d, p, s);
  }

  Status RestoreFrom(const AmsgradOptimizerDump& d, const std::string& p,
                     float* s) const {
    MONOLITH_RETURN_IF_ERROR(ReadFloats(d.m(), (p + ".m").c_str(), dim_, s));
    MONOLITH_RETURN_IF_ERROR(
        ReadFloats(d.v(), (p + ".v").c_str(), dim_, s + dim_));
    MONOLITH_RETURN_IF_ERROR(
        ReadFloats(d.vhat(), (p + ".vhat").c_str(), dim_, s + 2 * dim_));
    return RestorePowers(d, p, s);
  }

  template <typename DumpT>
  Status RestorePowers(const DumpT& d, const std::string& p, float* s) const {
    MONOLITH_RETURN_IF_ERROR(
        RequireField(d.has_beta1_power(), (p + ".beta1_power").c_str()));
    MONOLITH_RETURN_IF_ERROR(
        RequireField(d.has_beta2_power(), (p + ".beta2_power").c_str()));
    s[kVectors * dim_] = d.beta1_power();
    s[kVectors * dim_ + 1] = d.beta2_power();
    return Status::OK();
  }

  const float beta1_;
  const float beta2_;
  const float wd_;
  const bool nesterov_;
  const float eps_;
};

// ------------------------------------------------------------- momentum

//   dx = lr * (grad + wd * w);  n' = mu * n - dx
//   w += n'                       (plain)
//   w += -mu * n + (1 + mu) * n'  (nesterov)
class MomentumOptimizer final : public OptimizerBase {
 public:
  using Config = MomentumOptimizerConfig;
  static void Validate(const Config&, int, ConfigChecker* check) {
    check->NonNegative({"weight_decay_factor"}).Within("momentum", 0, 1);
  }

  MomentumOptimizer(const Config& c, int dim)
      : OptimizerBase("Momentum", dim),
        wd_(c.weight_decay_factor()),
        mu_(c.momentum()),
        nesterov_(c.use_nesterov()) {}

  int64_t StateBytes() const override { return dim_ * sizeof(float); }

  void Init(void* state) const override {
    std::fill_n(static_cast<float*>(state), dim_, 0.0f);
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    const float lr = learning_rates[0];
    float* __restrict w = num;
    float* __restrict n = static_cast<float*>(state);
    const float* __restrict gr = grad;
    for (int i = 0; i < dim_; ++i) {
      const float dx = lr * (gr[i] + wd_ * w[i]);
      const float n_old = n[i];
      const float n_new = mu_ * n_old - dx;
      w[i] += nesterov_ ? -mu_ * n_old + (1 + mu_) * n_new : n_new;
      n[i] = n_new;
    }
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    WriteSingleDump(out, SingleOptimizerDump::kMomentumFieldNumber,
                    WireWriter::FloatsBytes(1, dim_), [&](WireWriter* w) {
                      w->Floats(MomentumOptimizerDump::kNFieldNumber,
                                static_cast<const float*>(state), dim_);
                    });
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(
        GetEntry(dump, first, 0, SingleOptimizerDump::kMomentum, &entry));
    return ReadFloats(entry->momentum().n(), "momentum.n", dim_,
                      static_cast<float*>(state));
  }

 private:
  const float wd_;
  const float mu_;
  const bool nesterov_;
};

// ------------------------------------------------------- moving_average

// w = mu * w + (1 - mu) * grad: "grad" is the value to average in. No
// state, no learning rate, and (as in Monolith) no dump entry: DumpSize 0.
class MovingAverageOptimizer final : public OptimizerBase {
 public:
  using Config = MovingAverageOptimizerConfig;
  static void Validate(const Config&, int, ConfigChecker* check) {
    check->Within("momentum", 0, 1);
  }

  MovingAverageOptimizer(const Config& c, int dim)
      : OptimizerBase("MovingAverage", dim), mu_(c.momentum()) {}

  int64_t StateBytes() const override { return 0; }
  int DumpSize() const override { return 0; }
  void Init(void*) const override {}

  void Optimize(void*, float* num, const float* grad, const float*,
                int64_t) const override {
    float* __restrict w = num;
    const float* __restrict gr = grad;
    for (int i = 0; i < dim_; ++i) w[i] = mu_ * w[i] + (1 - mu_) * gr[i];
  }

  void WriteDump(const void*, WireWriter*) const override {}

  Status Restore(const OptimizerDump& dump, int first, void*) const override {
    if (first < 0 || first > dump.dump_size()) {
      return InvalidArgumentError(
          DebugString() + " restore: first entry " + std::to_string(first) +
          " is outside the dump's " + std::to_string(dump.dump_size()) +
          " entries");
    }
    return Status::OK();
  }

 private:
  const float mu_;
};

// -------------------------------------------------------------- rmsprop

// Monolith's two RMSProp variants, in double as there (the accumulator is
// stored as float), with "momentum" the decay rate mu and 1 as epsilon:
//   dx = grad + wd * w
//   n' = mu * n + (1 - mu) * dx^2     (rmsprop)
//   n' = mu * n + dx^2                (rmspropv2)
//   w -= lr / (sqrt(n') + 1) * dx
// Monolith's rmsprop takes lr from its config's learning_rate and ignores the
// learning rate it is handed; rmspropv2 (and every other optimizer) uses the
// one handed in. We use the one handed in for both, so that learning-rate
// schedules apply to rmsprop too; they agree when the two are equal.
template <bool kV2>
class RmspropOptimizer final : public OptimizerBase {
 public:
  // The two configs have the same fields and rules.
  using Config = std::conditional_t<kV2, RmspropV2OptimizerConfig,
                                    RmspropOptimizerConfig>;
  static void Validate(const Config&, int, ConfigChecker* check) {
    check->NonNegative({"weight_decay_factor"}).Within("momentum", 0, 1);
  }

  RmspropOptimizer(const Config& c, int dim)
      : OptimizerBase(kV2 ? "RmspropV2" : "Rmsprop", dim),
        wd_(c.weight_decay_factor()),
        mu_(c.momentum()) {}

  int64_t StateBytes() const override { return dim_ * sizeof(float); }

  void Init(void* state) const override {
    std::fill_n(static_cast<float*>(state), dim_, 0.0f);
  }

  void Optimize(void* state, float* num, const float* grad,
                const float* learning_rates, int64_t) const override {
    const double lr = learning_rates[0];
    const double wd = wd_;
    const double mu = mu_;
    const double new_sq_weight = kV2 ? 1.0 : 1.0 - mu;
    float* __restrict w = num;
    float* __restrict n = static_cast<float*>(state);
    const float* __restrict gr = grad;
    for (int i = 0; i < dim_; ++i) {
      const double dx = gr[i] + wd * w[i];
      const float n_new =
          static_cast<float>(mu * n[i] + new_sq_weight * dx * dx);
      const double eta = lr / (std::sqrt(n_new) + 1);
      w[i] = static_cast<float>(w[i] - eta * dx);
      n[i] = n_new;
    }
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    // RmspropOptimizerDump and RmspropV2OptimizerDump number n alike.
    static_assert(int{RmspropOptimizerDump::kNFieldNumber} ==
                  int{RmspropV2OptimizerDump::kNFieldNumber});
    WriteSingleDump(out,
                    kV2 ? SingleOptimizerDump::kRmspropv2FieldNumber
                        : SingleOptimizerDump::kRmspropFieldNumber,
                    WireWriter::FloatsBytes(1, dim_), [&](WireWriter* w) {
                      w->Floats(RmspropOptimizerDump::kNFieldNumber,
                                static_cast<const float*>(state), dim_);
                    });
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(GetEntry(
        dump, first, 0,
        kV2 ? SingleOptimizerDump::kRmspropv2 : SingleOptimizerDump::kRmsprop,
        &entry));
    return kV2 ? ReadFloats(entry->rmspropv2().n(), "rmspropv2.n", dim_,
                            static_cast<float*>(state))
               : ReadFloats(entry->rmsprop().n(), "rmsprop.n", dim_,
                            static_cast<float*>(state));
  }

 private:
  const float wd_;
  const float mu_;
};

// -------------------------------------------------------- batch_softmax

// Estimates the sampling interval of an id for batch softmax (Yi et al.
// 2019, "Sampling-bias-corrected neural modeling"): with A the global step of
// the previous update (the state) and B = num[0],
//   B = (1 - lr) * B + lr * (global_step - A);  A = global_step
// Monolith aborts the process on a negative global_step; we leave B and A
// unchanged instead (Optimize cannot report errors).
class BatchSoftmaxOptimizer final : public OptimizerBase {
 public:
  using Config = BatchSoftmaxOptimizerConfig;
  // It updates num[0] only (Monolith DCHECKs dim_size == 1).
  static void Validate(const Config&, int dim, ConfigChecker* check) {
    check->Dim(dim, 1);
  }

  BatchSoftmaxOptimizer(const Config&, int dim)
      : OptimizerBase("BatchSoftmax", dim) {}

  int64_t StateBytes() const override { return sizeof(int64_t); }

  void Init(void* state) const override { StoreInt64(state, 0); }

  void Optimize(void* state, float* num, const float* /*grad*/,
                const float* learning_rates,
                int64_t global_step) const override {
    if (global_step < 0) return;
    const float alpha = learning_rates[0];
    const int64_t last = LoadInt64(state);
    // In double: |last| comes from a checkpoint and may be any int64.
    num[0] = (1 - alpha) * num[0] +
             alpha * static_cast<float>(static_cast<double>(global_step) -
                                        static_cast<double>(last));
    StoreInt64(state, global_step);
  }

  void WriteDump(const void* state, WireWriter* out) const override {
    WriteSingleDump(out, SingleOptimizerDump::kBatchSoftmaxFieldNumber, 2,
                    [&](WireWriter* w) {
                      w->Int64(BatchSoftmaxOptimizerDump::kGlobalStepFieldNumber,
                               LoadInt64(state));
                    });
  }

  Status Restore(const OptimizerDump& dump, int first,
                 void* state) const override {
    const SingleOptimizerDump* entry;
    MONOLITH_RETURN_IF_ERROR(
        GetEntry(dump, first, 0, SingleOptimizerDump::kBatchSoftmax, &entry));
    MONOLITH_RETURN_IF_ERROR(
        RequireField(entry->batch_softmax().has_global_step(),
                     "batch_softmax.global_step"));
    StoreInt64(state, entry->batch_softmax().global_step());
    return Status::OK();
  }
};

}  // namespace

std::vector<OptimizerKind> MomentOptimizerKinds() {
  return {
      KindOf<AdadeltaOptimizer>(),
      KindOf<AdamOptimizer<false>>(),
      KindOf<AdamOptimizer<true>>(),
      KindOf<MomentumOptimizer>(),
      KindOf<MovingAverageOptimizer>(),
      KindOf<RmspropOptimizer<false>>(),
      KindOf<RmspropOptimizer<true>>(),
      KindOf<BatchSoftmaxOptimizer>(),
  };
}

}  // namespace optimizer_internal
}  // namespace hash_table
}  // namespace monolith
