// The optimizers of moment_optimizers.cc (adadelta, adam, amsgrad, momentum,
// moving_average, rmsprop, rmspropv2, batch_softmax) against scalar
// references written from their formulas (in double).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer.pb.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_test_util.h"

namespace monolith {
namespace hash_table {
namespace optimizer_test {
namespace {

TEST(Adadelta, MatchesReferenceWithWeightDecay) {
  const double wd = 0.05, rho = 0.8, eps = 0.02;
  OptimizerConfig c;
  auto* a = c.mutable_adadelta();
  a->set_weight_decay_factor(wd);
  a->set_averaging_ratio(rho);
  a->set_epsilon(eps);
  std::vector<double> w = ToDouble(InitialNum(kDim));
  std::vector<double> acc(kDim, 0), acc_up(kDim, 0);
  RunSteps(c, kDim, [&](int s, const std::vector<float>& grad, Entry& e) {
    for (int i = 0; i < kDim; ++i) {
      double g = grad[i] + wd * w[i];
      acc[i] = rho * acc[i] + (1 - rho) * g * g;
      double update = std::sqrt((acc_up[i] + eps) / (acc[i] + eps)) * g;
      w[i] -= kLr[s] * update;
      acc_up[i] = rho * acc_up[i] + (1 - rho) * update * update;
    }
    ExpectClose(e.Num(), w, "adadelta step " + std::to_string(s));
    OptimizerDump dump = e.Save();
    ExpectClose(ToVector(dump.dump(0).adadelta().accum()), acc, "accum");
    ExpectClose(ToVector(dump.dump(0).adadelta().accum_update()), acc_up,
                "accum_update");
  });
}

void CheckAdam(bool amsgrad, bool nesterov) {
  const double b1 = 0.8, b2 = 0.95, wd = 0.04, eps = 0.001;
  OptimizerConfig c;
  if (amsgrad) {
    auto* a = c.mutable_amsgrad();
    a->set_beta1(b1), a->set_beta2(b2), a->set_weight_decay_factor(wd);
    a->set_epsilon(eps), a->set_use_nesterov(nesterov);
  } else {
    auto* a = c.mutable_adam();
    a->set_beta1(b1), a->set_beta2(b2), a->set_weight_decay_factor(wd);
    a->set_epsilon(eps), a->set_use_nesterov(nesterov);
  }
  std::vector<double> w = ToDouble(InitialNum(kDim));
  std::vector<double> m(kDim, 0), v(kDim, 0), vhat(kDim, 0);
  const std::string what = std::string(amsgrad ? "amsgrad" : "adam") +
                           (nesterov ? " nesterov" : "");
  int vhat_kept = 0;
  RunSteps(c, kDim, [&](int s, const std::vector<float>& grad, Entry& e) {
    const int t = s + 1;
    const double lr_t = kLr[s] * std::sqrt(1 - std::pow(b2, t)) /
                        (1 - std::pow(b1, t));
    for (int i = 0; i < kDim; ++i) {
      double g = grad[i] + wd * w[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      if (v[i] < vhat[i]) ++vhat_kept;
      vhat[i] = std::max(vhat[i], v[i]);
      double step_m = nesterov ? b1 * m[i] + (1 - b1) * g : m[i];
      w[i] -= lr_t * step_m / (std::sqrt(amsgrad ? vhat[i] : v[i]) + eps);
    }
    ExpectClose(e.Num(), w, what + " step " + std::to_string(s), 1e-4, 1e-5);
    OptimizerDump dump = e.Save();
    if (amsgrad) {
      const AmsgradOptimizerDump& d = dump.dump(0).amsgrad();
      ExpectClose(ToVector(d.m()), m, what + " m");
      ExpectClose(ToVector(d.v()), v, what + " v");
      ExpectClose(ToVector(d.vhat()), vhat, what + " vhat");
      EXPECT_NEAR(d.beta1_power(), std::pow(b1, t + 1), 1e-6);
      EXPECT_NEAR(d.beta2_power(), std::pow(b2, t + 1), 1e-6);
    } else {
      const AdamOptimizerDump& d = dump.dump(0).adam();
      ExpectClose(ToVector(d.m()), m, what + " m");
      ExpectClose(ToVector(d.v()), v, what + " v");
      EXPECT_NEAR(d.beta1_power(), std::pow(b1, t + 1), 1e-6);
      EXPECT_NEAR(d.beta2_power(), std::pow(b2, t + 1), 1e-6);
    }
  });
  if (amsgrad) {
    EXPECT_GT(vhat_kept, 0);  // vhat differs from v somewhere
  }
}

TEST(Adam, MatchesReference) {
  CheckAdam(false, false);
  CheckAdam(false, true);
}

TEST(Amsgrad, MatchesReference) {
  CheckAdam(true, false);
  CheckAdam(true, true);
}

TEST(Momentum, MatchesReference) {
  for (bool nesterov : {false, true}) {
    const double mu = 0.7, wd = 0.05;
    OptimizerConfig c;
    c.mutable_momentum()->set_momentum(mu);
    c.mutable_momentum()->set_weight_decay_factor(wd);
    c.mutable_momentum()->set_use_nesterov(nesterov);
    std::vector<double> w = ToDouble(InitialNum(kDim));
    std::vector<double> n(kDim, 0);
    RunSteps(c, kDim, [&](int s, const std::vector<float>& grad, Entry& e) {
      for (int i = 0; i < kDim; ++i) {
        double dx = kLr[s] * (grad[i] + wd * w[i]);
        n[i] = mu * n[i] - dx;
        w[i] += nesterov ? mu * n[i] - dx : n[i];
      }
      ExpectClose(e.Num(), w, std::string("momentum nesterov=") +
                                  (nesterov ? "1" : "0") + " step " +
                                  std::to_string(s));
      ExpectClose(ToVector(e.Save().dump(0).momentum().n()), n, "n");
    });
  }
}

TEST(MovingAverage, MatchesReference) {
  const double mu = 0.6;
  OptimizerConfig c;
  c.mutable_moving_average()->set_momentum(mu);
  std::vector<double> w = ToDouble(InitialNum(kDim));
  RunSteps(c, kDim, [&](int s, const std::vector<float>& x, Entry& e) {
    for (int i = 0; i < kDim; ++i) w[i] = mu * w[i] + (1 - mu) * x[i];
    ExpectClose(e.Num(), w, "moving_average step " + std::to_string(s));
    EXPECT_EQ(e.Save().dump_size(), 0);
  });
}

TEST(Rmsprop, MatchesReferenceBothVariants) {
  for (bool v2 : {false, true}) {
    const double mu = 0.85, wd = 0.07;
    OptimizerConfig c;
    if (v2) {
      c.mutable_rmspropv2()->set_momentum(mu);
      c.mutable_rmspropv2()->set_weight_decay_factor(wd);
      c.mutable_rmspropv2()->set_learning_rate(0.001f);  // unused
    } else {
      c.mutable_rmsprop()->set_momentum(mu);
      c.mutable_rmsprop()->set_weight_decay_factor(wd);
      c.mutable_rmsprop()->set_learning_rate(0.001f);  // unused
    }
    std::vector<double> w = ToDouble(InitialNum(kDim));
    std::vector<double> n(kDim, 0);
    RunSteps(c, kDim, [&](int s, const std::vector<float>& grad, Entry& e) {
      for (int i = 0; i < kDim; ++i) {
        double dx = grad[i] + wd * w[i];
        n[i] = mu * n[i] + (v2 ? 1 : 1 - mu) * dx * dx;
        w[i] -= kLr[s] / (std::sqrt(n[i]) + 1) * dx;
      }
      const std::string what =
          std::string(v2 ? "rmspropv2" : "rmsprop") + " step " +
          std::to_string(s);
      ExpectClose(e.Num(), w, what);
      OptimizerDump dump = e.Save();
      ExpectClose(ToVector(v2 ? dump.dump(0).rmspropv2().n()
                              : dump.dump(0).rmsprop().n()),
                  n, what + " n");
    });
  }
}

TEST(BatchSoftmax, EstimatesStepIntervals) {
  OptimizerConfig c;
  c.mutable_batch_softmax();
  auto opt = MustNew(c, 1);
  const std::vector<int64_t> steps = {3, 7, 8, 20};
  double b = 0;
  int64_t a = 0;
  Entry e(*opt);
  e.Init();
  for (int s = 0; s < kSteps; ++s) {
    e.Optimize({123.0f}, kLr[s], steps[s]);  // the gradient is unused
    b = (1 - kLr[s]) * b + kLr[s] * static_cast<double>(steps[s] - a);
    a = steps[s];
    EXPECT_NEAR(e.Num()[0], b, 1e-6) << "step " << s;
    EXPECT_EQ(e.Save().dump(0).batch_softmax().global_step(), a);
  }
  // A negative global step leaves the entry as it is.
  const std::string before = e.StateBytes();
  e.Optimize({1.0f}, 0.5f, -1);
  EXPECT_NEAR(e.Num()[0], b, 1e-6);
  EXPECT_EQ(e.StateBytes(), before);
  e.ExpectGuards();
}

TEST(BatchSoftmax, AnyRestoredStepGivesAFiniteInterval) {
  // The last step is restored from a checkpoint: any int64, even one whose
  // distance to the global step overflows int64.
  OptimizerConfig c;
  c.mutable_batch_softmax();
  auto opt = MustNew(c, 1);
  Entry e(*opt);
  const int64_t last = std::numeric_limits<int64_t>::min();
  std::memcpy(e.state(), &last, sizeof(last));
  e.Optimize({0.0f}, 0.5f, 5);
  EXPECT_FLOAT_EQ(e.Num()[0], 0.5f * (5.0f + 9223372036854775808.0f));
  EXPECT_EQ(e.Save().dump(0).batch_softmax().global_step(), 5);
  e.ExpectGuards();
}

}  // namespace
}  // namespace optimizer_test
}  // namespace hash_table
}  // namespace monolith
