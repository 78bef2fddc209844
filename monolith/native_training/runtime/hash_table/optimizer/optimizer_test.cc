// Every optimizer against a scalar reference written from its formula (in
// double), plus sizes, init values, save/restore and config validation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer.pb.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_decorators.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_test_util.h"

namespace monolith {
namespace hash_table {
namespace {

using testing_util::Entry;
using testing_util::ExpectClose;
using testing_util::ExpectInvalid;
using testing_util::Grad;
using testing_util::InitialNum;
using testing_util::MustNew;
using testing_util::ToDouble;
using testing_util::ToVector;

constexpr int kDim = 7;  // not a multiple of any vector width
constexpr int kSteps = 4;
const float kLr[kSteps] = {0.1f, 0.05f, 0.08f, 0.03f};

// Runs kSteps steps of |opt| from InitialNum, calling |check| with the
// entry after each step; global steps are |steps| (0, 1, 2, ... if empty).
template <typename Check>
void RunSteps(const OptimizerInterface& opt, int dim, Check check,
              std::vector<int64_t> steps = {}) {
  if (steps.empty()) {
    for (int s = 0; s < kSteps; ++s) steps.push_back(s);
  }
  Entry e(opt);
  e.Init();
  e.SetNum(InitialNum(dim));
  for (int s = 0; s < kSteps; ++s) {
    e.Optimize(Grad(dim, s), kLr[s], steps[s]);
    check(s, e);
  }
  e.ExpectGuards();
}

// ------------------------------------------------------- reference tests

TEST(Sgd, MatchesReference) {
  OptimizerConfig c;
  c.mutable_sgd()->set_learning_rate(0.5f);  // unused: the lr handed in is
  auto opt = MustNew(c, kDim);
  std::vector<double> w = ToDouble(InitialNum(kDim));
  RunSteps(*opt, kDim, [&](int s, Entry& e) {
    std::vector<float> g = Grad(kDim, s);
    for (int i = 0; i < kDim; ++i) w[i] -= kLr[s] * g[i];
    ExpectClose(e.Num(), w, "sgd step " + std::to_string(s));
  });
}

void CheckAdagrad(int dim) {
  OptimizerConfig c;
  c.mutable_adagrad()->set_initial_accumulator_value(0.2f);
  c.mutable_adagrad()->set_weight_decay_factor(0.03f);
  auto opt = MustNew(c, dim);
  std::vector<double> w = ToDouble(InitialNum(dim));
  std::vector<double> n(dim, 0.2);
  RunSteps(*opt, dim, [&](int s, Entry& e) {
    std::vector<float> grad = Grad(dim, s);
    for (int i = 0; i < dim; ++i) {
      double g = grad[i] + 0.03 * w[i];
      n[i] += g * g;
      w[i] -= kLr[s] * g / std::sqrt(n[i]);
    }
    ExpectClose(e.Num(), w, "adagrad num step " + std::to_string(s));
    ExpectClose(ToVector(e.Save().dump(0).adagrad().norm()), n,
                "adagrad norm");
  });
}

TEST(Adagrad, MatchesReferenceWithWeightDecay) {
  CheckAdagrad(kDim);
  CheckAdagrad(37);  // vectorized body plus tail
  CheckAdagrad(1);
}

struct DynWdParams {
  bool decouple, dynamic, flip;
  double temperature;
};

void CheckDynamicWd(const DynWdParams& p) {
  const double wd = 0.2, init = 0.1;
  OptimizerConfig c;
  auto* d = c.mutable_dynamic_wd_adagrad();
  d->set_initial_accumulator_value(init);
  d->set_weight_decay_factor(wd);
  d->set_decouple_weight_decay(p.decouple);
  d->set_enable_dynamic_wd(p.dynamic);
  d->set_flip_direction(p.flip);
  d->set_dynamic_wd_temperature(p.temperature);
  auto opt = MustNew(c, kDim);
  const std::vector<int64_t> steps = {5, 6, 16, 16};
  std::vector<double> w = ToDouble(InitialNum(kDim));
  std::vector<double> n(kDim, init);
  int64_t last = -1;
  const std::string what = std::string("dynamic_wd decouple=") +
                           (p.decouple ? "1" : "0") +
                           " dynamic=" + (p.dynamic ? "1" : "0") +
                           " flip=" + (p.flip ? "1" : "0");
  RunSteps(
      *opt, kDim,
      [&](int s, Entry& e) {
        // Steps since the last update; 1 for the first and a repeated step.
        double gap = (last < 0 || steps[s] <= last) ? 1 : steps[s] - last;
        double wd_s = wd;
        if (p.dynamic) {
          wd_s = wd * std::pow(gap, (p.flip ? -1 : 1) / p.temperature);
        }
        std::vector<float> grad = Grad(kDim, s);
        for (int i = 0; i < kDim; ++i) {
          double g = p.decouple ? grad[i] : grad[i] + wd_s * w[i];
          n[i] += g * g;
          double decay = p.decouple ? kLr[s] * wd_s : 0;
          if (p.dynamic) decay = std::min(decay, 1.0);
          w[i] = w[i] - kLr[s] * g / std::sqrt(n[i]) - decay * w[i];
        }
        last = steps[s];
        ExpectClose(e.Num(), w, what + " step " + std::to_string(s));
        OptimizerDump dump = e.Save();
        ExpectClose(ToVector(dump.dump(0).dynamic_wd_adagrad().norm()), n,
                    what + " norm");
        EXPECT_EQ(dump.dump(0).dynamic_wd_adagrad().last_update_step(), last);
      },
      steps);
}

TEST(DynamicWdAdagrad, CoupledAndDecoupledWeightDecay) {
  CheckDynamicWd({false, false, false, 1.0});
  CheckDynamicWd({true, false, false, 1.0});
}

TEST(DynamicWdAdagrad, DynamicWeightDecayScalesWithStepGap) {
  CheckDynamicWd({false, true, false, 2.0});
  CheckDynamicWd({true, true, false, 2.0});
  CheckDynamicWd({true, true, true, 0.5});
  CheckDynamicWd({false, true, true, 1.0});
}

TEST(DynamicWdAdagrad, DecoupledDecayNeverOvershootsZero) {
  OptimizerConfig c;
  auto* d = c.mutable_dynamic_wd_adagrad();
  d->set_weight_decay_factor(0.5f);
  d->set_decouple_weight_decay(true);
  d->set_enable_dynamic_wd(true);
  auto opt = MustNew(c, 1);
  Entry e(*opt);
  e.Init();
  e.SetNum({1.0f});
  e.Optimize({0.0f}, 0.5f, 10);
  EXPECT_FLOAT_EQ(e.Num()[0], 0.75f);  // gap 1: decay 0.25
  e.Optimize({0.0f}, 0.5f, 1000);      // gap 990: decay capped at 1
  EXPECT_EQ(e.Num()[0], 0.0f);
}

struct FtrlParams {
  double init, beta, l1, l2;
};

// FTRL-Proximal per coordinate; group: the L1 shrinkage acts on the whole
// entry's z norm instead.
std::vector<double> FtrlReference(const FtrlParams& p, bool group,
                                  std::vector<double>* n,
                                  std::vector<double>* z,
                                  std::vector<double> w, int s,
                                  int* zeroed) {
  const double lr = kLr[s];
  std::vector<float> g = Grad(static_cast<int>(w.size()), s);
  double z_sq = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    double n_new = (*n)[i] + g[i] * g[i];
    double sigma = (std::sqrt(n_new) - std::sqrt((*n)[i])) / lr;
    (*z)[i] += g[i] - sigma * w[i];
    (*n)[i] = n_new;
    z_sq += (*z)[i] * (*z)[i];
  }
  const double z_norm = std::sqrt(z_sq);
  for (size_t i = 0; i < w.size(); ++i) {
    const double zi = (*z)[i];
    const double denom = (p.beta + std::sqrt((*n)[i])) / lr + p.l2;
    if (group) {
      w[i] = z_norm <= p.l1 ? 0 : -zi * (1 - p.l1 / z_norm) / denom;
    } else {
      const double sign = zi > 0 ? 1 : -1;
      w[i] = std::fabs(zi) <= p.l1 ? 0 : -(zi - sign * p.l1) / denom;
    }
    if (w[i] == 0) ++*zeroed;
  }
  return w;
}

TEST(Ftrl, MatchesReferenceWithL1L2) {
  const FtrlParams p = {0.1, 0.5, 0.35, 0.2};
  OptimizerConfig c;
  auto* f = c.mutable_ftrl();
  f->set_initial_accumulator_value(p.init);
  f->set_beta(p.beta);
  f->set_l1_regularization_strength(p.l1);
  f->set_l2_regularization_strength(p.l2);
  auto opt = MustNew(c, kDim);
  std::vector<double> w = ToDouble(InitialNum(kDim));
  std::vector<double> n(kDim, p.init), z(kDim, 0);
  int zeroed = 0;
  RunSteps(*opt, kDim, [&](int s, Entry& e) {
    w = FtrlReference(p, false, &n, &z, w, s, &zeroed);
    ExpectClose(e.Num(), w, "ftrl step " + std::to_string(s));
    OptimizerDump dump = e.Save();
    ExpectClose(ToVector(dump.dump(0).ftrl().norm()), n, "ftrl norm");
    ExpectClose(ToVector(dump.dump(0).ftrl().zero()), z, "ftrl zero", 1e-4,
                1e-5);
  });
  // The data exercises both sides of the L1 threshold.
  EXPECT_GT(zeroed, 0);
  EXPECT_LT(zeroed, kSteps * kDim);
}

TEST(GroupFtrl, MatchesReferenceWithL1L2) {
  for (double l1 : {0.3, 1.0, 100.0}) {
    const FtrlParams p = {0.05, 1.0, l1, 0.2};
    OptimizerConfig c;
    auto* f = c.mutable_group_ftrl();
    f->set_initial_accumulator_value(p.init);
    f->set_beta(p.beta);
    f->set_l1_regularization_strength(p.l1);
    f->set_l2_regularization_strength(p.l2);
    auto opt = MustNew(c, kDim);
    std::vector<double> w = ToDouble(InitialNum(kDim));
    std::vector<double> n(kDim, p.init), z(kDim, 0);
    int zeroed = 0;
    RunSteps(*opt, kDim, [&](int s, Entry& e) {
      w = FtrlReference(p, true, &n, &z, w, s, &zeroed);
      ExpectClose(e.Num(), w,
                  "group_ftrl l1=" + std::to_string(l1) + " step " +
                      std::to_string(s));
      OptimizerDump dump = e.Save();
      ExpectClose(ToVector(dump.dump(0).group_ftrl().norm()), n, "norm");
      ExpectClose(ToVector(dump.dump(0).group_ftrl().zero()), z, "zero", 1e-4,
                  1e-5);
    });
    if (l1 == 100.0) {
      EXPECT_EQ(zeroed, kSteps * kDim);  // the whole group is off
    }
    if (l1 == 0.3) {
      EXPECT_EQ(zeroed, 0);
    }
  }
}

TEST(GroupAdagrad, MatchesReference) {
  for (double l2 : {0.05, 50.0}) {
    const double init = 0.1, beta = 0.3, wd = 0.02;
    OptimizerConfig c;
    auto* a = c.mutable_group_adagrad();
    a->set_initial_accumulator_value(init);
    a->set_beta(beta);
    a->set_l2_regularization_strength(l2);
    a->set_weight_decay_factor(wd);
    auto opt = MustNew(c, kDim);
    std::vector<double> w = ToDouble(InitialNum(kDim));
    double acc = init;
    RunSteps(*opt, kDim, [&](int s, Entry& e) {
      std::vector<float> grad = Grad(kDim, s);
      std::vector<double> g(kDim), z(kDim);
      double max_sq = 0, z_sq = 0;
      for (int i = 0; i < kDim; ++i) {
        g[i] = grad[i] + wd * w[i];
        max_sq = std::max(max_sq, g[i] * g[i]);
      }
      acc += max_sq;
      const double a_lr = kLr[s] / (beta + std::sqrt(acc));
      for (int i = 0; i < kDim; ++i) {
        z[i] = g[i] - w[i] / a_lr;
        z_sq += z[i] * z[i];
      }
      const double z_norm = std::sqrt(z_sq);
      for (int i = 0; i < kDim; ++i) {
        w[i] = z_norm <= l2 ? 0 : -a_lr * (1 - l2 / z_norm) * z[i];
      }
      ExpectClose(e.Num(), w, "group_adagrad l2=" + std::to_string(l2) +
                                  " step " + std::to_string(s));
      EXPECT_NEAR(e.Save().dump(0).group_adagrad().grad_square_sum(), acc,
                  1e-5 * acc);
      if (l2 == 50.0) {
        EXPECT_EQ(e.Num(), std::vector<float>(kDim, 0.0f));
      }
    });
  }
}

TEST(Adadelta, MatchesReferenceWithWeightDecay) {
  const double wd = 0.05, rho = 0.8, eps = 0.02;
  OptimizerConfig c;
  auto* a = c.mutable_adadelta();
  a->set_weight_decay_factor(wd);
  a->set_averaging_ratio(rho);
  a->set_epsilon(eps);
  auto opt = MustNew(c, kDim);
  std::vector<double> w = ToDouble(InitialNum(kDim));
  std::vector<double> acc(kDim, 0), acc_up(kDim, 0);
  RunSteps(*opt, kDim, [&](int s, Entry& e) {
    std::vector<float> grad = Grad(kDim, s);
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
  auto opt = MustNew(c, kDim);
  std::vector<double> w = ToDouble(InitialNum(kDim));
  std::vector<double> m(kDim, 0), v(kDim, 0), vhat(kDim, 0);
  const std::string what = std::string(amsgrad ? "amsgrad" : "adam") +
                           (nesterov ? " nesterov" : "");
  int vhat_kept = 0;
  RunSteps(*opt, kDim, [&](int s, Entry& e) {
    const int t = s + 1;
    const double lr_t = kLr[s] * std::sqrt(1 - std::pow(b2, t)) /
                        (1 - std::pow(b1, t));
    std::vector<float> grad = Grad(kDim, s);
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
    auto opt = MustNew(c, kDim);
    std::vector<double> w = ToDouble(InitialNum(kDim));
    std::vector<double> n(kDim, 0);
    RunSteps(*opt, kDim, [&](int s, Entry& e) {
      std::vector<float> grad = Grad(kDim, s);
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
  auto opt = MustNew(c, kDim);
  std::vector<double> w = ToDouble(InitialNum(kDim));
  RunSteps(*opt, kDim, [&](int s, Entry& e) {
    std::vector<float> x = Grad(kDim, s);
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
    auto opt = MustNew(c, kDim);
    std::vector<double> w = ToDouble(InitialNum(kDim));
    std::vector<double> n(kDim, 0);
    RunSteps(*opt, kDim, [&](int s, Entry& e) {
      std::vector<float> grad = Grad(kDim, s);
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

// --------------------------------------------------- every optimizer at once

struct Case {
  std::string name;
  OptimizerConfig config;
  int dim;
  int64_t state_bytes;  // for that dim
  int dump_size;
};

std::vector<Case> AllCases() {
  const int d = 5;
  std::vector<Case> cases;
  auto add = [&](const std::string& name, int64_t state_floats, int dump_size,
                 auto set) {
    Case c{name, OptimizerConfig(), d, state_floats * 4, dump_size};
    set(&c.config);
    cases.push_back(c);
  };
  add("sgd", 0, 1, [](OptimizerConfig* c) { c->mutable_sgd(); });
  add("adagrad", d, 1, [](OptimizerConfig* c) {
    c->mutable_adagrad()->set_weight_decay_factor(0.01f);
    c->mutable_adagrad()->set_initial_accumulator_value(0.3f);
  });
  add("dynamic_wd_adagrad", d + 2, 1, [](OptimizerConfig* c) {
    auto* a = c->mutable_dynamic_wd_adagrad();
    a->set_weight_decay_factor(0.1f);
    a->set_decouple_weight_decay(true);
    a->set_enable_dynamic_wd(true);
  });
  add("ftrl", 2 * d, 1, [](OptimizerConfig* c) {
    c->mutable_ftrl()->set_l1_regularization_strength(0.01f);
    c->mutable_ftrl()->set_l2_regularization_strength(0.1f);
  });
  add("group_ftrl", 2 * d, 1, [](OptimizerConfig* c) {
    c->mutable_group_ftrl()->set_l1_regularization_strength(0.01f);
    c->mutable_group_ftrl()->set_initial_accumulator_value(0.1f);
  });
  add("group_adagrad", 1, 1, [](OptimizerConfig* c) {
    c->mutable_group_adagrad()->set_l2_regularization_strength(0.01f);
    c->mutable_group_adagrad()->set_weight_decay_factor(0.01f);
  });
  add("adadelta", 2 * d, 1, [](OptimizerConfig* c) {
    c->mutable_adadelta()->set_weight_decay_factor(0.01f);
  });
  add("adam", 2 * d + 2, 1, [](OptimizerConfig* c) {
    c->mutable_adam()->set_use_nesterov(true);
    c->mutable_adam()->set_weight_decay_factor(0.01f);
  });
  add("amsgrad", 3 * d + 2, 1, [](OptimizerConfig* c) {
    c->mutable_amsgrad()->set_weight_decay_factor(0.01f);
  });
  add("momentum", d, 1, [](OptimizerConfig* c) {
    c->mutable_momentum()->set_use_nesterov(true);
  });
  add("moving_average", 0, 0,
      [](OptimizerConfig* c) { c->mutable_moving_average(); });
  add("rmsprop", d, 1, [](OptimizerConfig* c) {
    c->mutable_rmsprop()->set_weight_decay_factor(0.01f);
  });
  add("rmspropv2", d, 1, [](OptimizerConfig* c) {
    c->mutable_rmspropv2()->set_weight_decay_factor(0.01f);
  });
  add("batch_softmax", 2, 1,
      [](OptimizerConfig* c) { c->mutable_batch_softmax(); });
  cases.back().dim = 1;
  add("dc", 0, 1,
      [](OptimizerConfig* c) { c->mutable_dc()->set_lambda_(0.5f); });
  // Decorated: the decorators keep the base's sizes and dumps.
  add("adagrad+warmup+fp16", d, 1, [](OptimizerConfig* c) {
    c->mutable_adagrad()->set_warmup_steps(3);
    c->set_stochastic_rounding_float16(true);
  });
  return cases;
}

TEST(AllOptimizers, CoverEveryConfigType) {
  std::vector<bool> seen(OptimizerConfig::descriptor()->field_count(), false);
  for (const Case& c : AllCases()) {
    const auto* field = OptimizerConfig::descriptor()->FindFieldByNumber(
        c.config.type_case());
    ASSERT_NE(field, nullptr);
    seen[field->index()] = true;
  }
  const auto* oneof = OptimizerConfig::descriptor()->FindOneofByName("type");
  ASSERT_NE(oneof, nullptr);
  for (int i = 0; i < oneof->field_count(); ++i) {
    EXPECT_TRUE(seen[oneof->field(i)->index()]) << oneof->field(i)->name();
  }
  EXPECT_EQ(oneof->field_count(), 15);
}

TEST(AllOptimizers, Sizes) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.name);
    auto opt = MustNew(c.config, c.dim);
    EXPECT_EQ(opt->DimSize(), c.dim);
    EXPECT_EQ(opt->SliceSize(), 1);
    EXPECT_EQ(opt->StateBytes(), c.state_bytes);
    EXPECT_EQ(opt->StateBytes() % sizeof(float), 0u);
    EXPECT_EQ(opt->DumpSize(), c.dump_size);
    Entry e(*opt);
    e.Init();
    EXPECT_EQ(e.Save().dump_size(), c.dump_size);
    e.ExpectGuards();
  }
  // The config's dim_size is overridden by the dim argument.
  OptimizerConfig c;
  c.mutable_adagrad()->set_dim_size(3);
  EXPECT_EQ(MustNew(c, 9)->DimSize(), 9);
  EXPECT_EQ(MustNew(c, 9)->DebugString(), "Adagrad(D=9)");
}

TEST(AllOptimizers, InitValues) {
  auto saved = [](const OptimizerConfig& c, int dim) {
    auto opt = MustNew(c, dim);
    Entry e(*opt, /*fill=*/0.0f);
    e.Init();
    e.ExpectGuards();
    OptimizerDump d = e.Save();
    EXPECT_EQ(d.dump_size(), opt->DumpSize());
    return d;
  };
  const std::vector<float> zeros(3, 0.0f);
  OptimizerConfig c;

  c.mutable_adagrad()->set_initial_accumulator_value(0.25f);
  EXPECT_EQ(ToVector(saved(c, 3).dump(0).adagrad().norm()),
            std::vector<float>(3, 0.25f));
  c.mutable_adagrad()->clear_initial_accumulator_value();  // default 0.1
  EXPECT_EQ(ToVector(saved(c, 3).dump(0).adagrad().norm()),
            std::vector<float>(3, 0.1f));

  c.mutable_dynamic_wd_adagrad()->set_initial_accumulator_value(0.5f);
  OptimizerDump d = saved(c, 3);
  EXPECT_EQ(ToVector(d.dump(0).dynamic_wd_adagrad().norm()),
            std::vector<float>(3, 0.5f));
  EXPECT_EQ(d.dump(0).dynamic_wd_adagrad().last_update_step(), -1);

  c.mutable_ftrl()->set_initial_accumulator_value(0.2f);
  d = saved(c, 3);
  EXPECT_EQ(ToVector(d.dump(0).ftrl().norm()), std::vector<float>(3, 0.2f));
  EXPECT_EQ(ToVector(d.dump(0).ftrl().zero()), zeros);

  c.mutable_group_ftrl();  // defaults: initial accumulator 0
  d = saved(c, 3);
  EXPECT_EQ(ToVector(d.dump(0).group_ftrl().norm()), zeros);
  EXPECT_EQ(ToVector(d.dump(0).group_ftrl().zero()), zeros);

  c.mutable_group_adagrad()->set_initial_accumulator_value(0.7f);
  EXPECT_EQ(saved(c, 3).dump(0).group_adagrad().grad_square_sum(), 0.7f);

  c.mutable_adadelta();
  d = saved(c, 3);
  EXPECT_EQ(ToVector(d.dump(0).adadelta().accum()), zeros);
  EXPECT_EQ(ToVector(d.dump(0).adadelta().accum_update()), zeros);

  c.mutable_adam()->set_beta1(0.5f);
  d = saved(c, 3);
  EXPECT_EQ(ToVector(d.dump(0).adam().m()), zeros);
  EXPECT_EQ(ToVector(d.dump(0).adam().v()), zeros);
  EXPECT_EQ(d.dump(0).adam().beta1_power(), 0.5f);
  EXPECT_EQ(d.dump(0).adam().beta2_power(), 0.99f);

  c.mutable_amsgrad()->set_beta2(0.9f);
  d = saved(c, 3);
  EXPECT_EQ(ToVector(d.dump(0).amsgrad().vhat()), zeros);
  EXPECT_EQ(d.dump(0).amsgrad().beta1_power(), 0.9f);
  EXPECT_EQ(d.dump(0).amsgrad().beta2_power(), 0.9f);

  c.mutable_momentum();
  EXPECT_EQ(ToVector(saved(c, 3).dump(0).momentum().n()), zeros);
  c.mutable_rmsprop();
  EXPECT_EQ(ToVector(saved(c, 3).dump(0).rmsprop().n()), zeros);
  c.mutable_rmspropv2();
  EXPECT_EQ(ToVector(saved(c, 3).dump(0).rmspropv2().n()), zeros);
  c.mutable_batch_softmax();
  EXPECT_EQ(saved(c, 1).dump(0).batch_softmax().global_step(), 0);
  c.mutable_sgd();
  EXPECT_TRUE(saved(c, 3).dump(0).has_sgd());
}

// Save after 3 steps, restore into a fresh entry, then both continue: the
// restored one must produce the same bits.
TEST(AllOptimizers, SaveRestoreContinuesBitForBit) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.name);
    auto opt = MustNew(c.config, c.dim);
    Entry a(*opt);
    a.Init();
    a.SetNum(InitialNum(c.dim));
    int64_t step = 10;
    for (int s = 0; s < 3; ++s, step += 3) {
      a.Optimize(Grad(c.dim, s), kLr[s], step);
    }
    const OptimizerDump dump = a.Save();
    ASSERT_EQ(dump.dump_size(), opt->DumpSize());

    Entry b(*opt, /*fill=*/-1.0f);
    std::memset(b.state(), 0xAB, opt->StateBytes());  // garbage
    Status s = opt->Restore(dump, 0, b.state());
    ASSERT_TRUE(s.ok()) << s.ToString();
    b.SetNum(a.Num());
    EXPECT_EQ(b.StateBytes(), a.StateBytes());
    EXPECT_EQ(b.Save().SerializeAsString(), dump.SerializeAsString());

    // Also from the middle of a longer dump (an entry of several segments).
    OptimizerDump longer;
    longer.add_dump()->mutable_sgd();
    for (const auto& entry : dump.dump()) *longer.add_dump() = entry;
    longer.add_dump()->mutable_rmsprop();
    Entry b2(*opt);
    ASSERT_TRUE(opt->Restore(longer, 1, b2.state()).ok());
    EXPECT_EQ(b2.StateBytes(), a.StateBytes());

    for (int s = 0; s < 3; ++s, step += 2) {
      // Same rounding draws for both (stochastic_rounding_float16 case).
      SeedStochasticRounding(step);
      a.Optimize(Grad(c.dim, s + 5), kLr[s], step);
      SeedStochasticRounding(step);
      b.Optimize(Grad(c.dim, s + 5), kLr[s], step);
    }
    const std::vector<float> na = a.Num(), nb = b.Num();
    EXPECT_EQ(0, std::memcmp(na.data(), nb.data(), na.size() * sizeof(float)));
    EXPECT_EQ(b.StateBytes(), a.StateBytes());
    EXPECT_EQ(b.Save().SerializeAsString(), a.Save().SerializeAsString());
    a.ExpectGuards();
    b.ExpectGuards();
  }
}

TEST(AllOptimizers, RestoreRejectsMismatchedDumps) {
  for (const Case& c : AllCases()) {
    if (c.dump_size == 0) continue;
    SCOPED_TRACE(c.name);
    auto opt = MustNew(c.config, c.dim);
    Entry e(*opt);
    e.Init();
    const OptimizerDump good = e.Save();
    // Messages name the optimizer that restores (the base of decorators).
    const std::string name = "(D=" + std::to_string(c.dim) + ")";

    // Too few entries / first out of range.
    ExpectInvalid(opt->Restore(OptimizerDump(), 0, e.state()),
                  {name, "dump has 0 entries"});
    ExpectInvalid(opt->Restore(good, 1, e.state()),
                  {"needs dump entries [1, 2)", "has 1 entries"});
    ExpectInvalid(opt->Restore(good, -1, e.state()), {"[-1, 0)"});

    // Another optimizer's entry.
    OptimizerDump other;
    if (good.dump(0).has_momentum()) {
      other.add_dump()->mutable_adagrad()->add_norm(1);
      ExpectInvalid(opt->Restore(other, 0, e.state()),
                    {"is 'adagrad', expected 'momentum'"});
    } else {
      other.add_dump()->mutable_momentum()->add_n(1);
      ExpectInvalid(opt->Restore(other, 0, e.state()), {"is 'momentum'"});
    }
    OptimizerDump unset;
    unset.add_dump();
    ExpectInvalid(opt->Restore(unset, 0, e.state()), {"is 'unset'"});

    // The same optimizer at another dim: every repeated field is checked.
    if (c.dim > 1) {
      auto wider = MustNew(c.config, c.dim + 2);
      Entry w(*wider);
      w.Init();
      const OptimizerDump wide = w.Save();
      const bool has_floats = c.name != "sgd" && c.name != "group_adagrad" &&
                              c.name != "dc" && c.name != "batch_softmax";
      Status s = opt->Restore(wide, 0, e.state());
      if (has_floats) {
        ExpectInvalid(s, {name, std::to_string(c.dim + 2) + " floats",
                          "expected " + std::to_string(c.dim)});
      } else {
        EXPECT_TRUE(s.ok()) << s.ToString();  // nothing dim-dependent
      }
    }
    e.ExpectGuards();
  }
}

TEST(AllOptimizers, RestoreNamesTheBadField) {
  auto check = [](const OptimizerConfig& c, int dim, auto corrupt,
                  const std::string& needle) {
    auto opt = MustNew(c, dim);
    Entry e(*opt);
    e.Init();
    OptimizerDump dump = e.Save();
    corrupt(dump.mutable_dump(0));
    ExpectInvalid(opt->Restore(dump, 0, e.state()), {needle});
    e.ExpectGuards();
  };
  OptimizerConfig c;
  c.mutable_ftrl();
  check(c, 4, [](SingleOptimizerDump* d) { d->mutable_ftrl()->add_norm(1); },
        "ftrl.norm has 5 floats, expected 4");
  check(c, 4, [](SingleOptimizerDump* d) { d->mutable_ftrl()->clear_zero(); },
        "ftrl.zero has 0 floats, expected 4");
  c.mutable_adadelta();
  check(c, 4,
        [](SingleOptimizerDump* d) {
          d->mutable_adadelta()->mutable_accum_update()->RemoveLast();
        },
        "adadelta.accum_update has 3 floats");
  c.mutable_adam();
  check(c, 4,
        [](SingleOptimizerDump* d) { d->mutable_adam()->clear_beta2_power(); },
        "adam.beta2_power is missing");
  c.mutable_amsgrad();
  check(c, 4,
        [](SingleOptimizerDump* d) { d->mutable_amsgrad()->add_vhat(0); },
        "amsgrad.vhat has 5 floats");
  check(c, 4,
        [](SingleOptimizerDump* d) {
          d->mutable_amsgrad()->clear_beta1_power();
        },
        "amsgrad.beta1_power is missing");
  c.mutable_group_adagrad();
  check(c, 4,
        [](SingleOptimizerDump* d) {
          d->mutable_group_adagrad()->clear_grad_square_sum();
        },
        "group_adagrad.grad_square_sum is missing");
  c.mutable_batch_softmax();
  check(c, 1,
        [](SingleOptimizerDump* d) {
          d->mutable_batch_softmax()->clear_global_step();
        },
        "batch_softmax.global_step is missing");
  c.mutable_dynamic_wd_adagrad();
  check(c, 4,
        [](SingleOptimizerDump* d) {
          d->mutable_dynamic_wd_adagrad()->mutable_norm()->RemoveLast();
        },
        "dynamic_wd_adagrad.norm has 3 floats");
  c.mutable_momentum();
  check(c, 4, [](SingleOptimizerDump* d) { d->mutable_momentum()->clear_n(); },
        "momentum.n has 0 floats, expected 4");
}

// A dump as Monolith writes it (field by field) restores here.
TEST(AllOptimizers, RestoresMonolithStyleDumps) {
  OptimizerConfig c;
  c.mutable_adam();
  auto opt = MustNew(c, 2);
  OptimizerDump dump;
  AdamOptimizerDump* d = dump.add_dump()->mutable_adam();
  for (int i = 0; i < 2; ++i) {
    d->add_m(0.1f * (i + 1));
    d->add_v(0.2f * (i + 1));
  }
  d->set_beta1_power(0.81f);
  d->set_beta2_power(0.9801f);
  Entry e(*opt);
  ASSERT_TRUE(opt->Restore(dump, 0, e.state()).ok());
  EXPECT_EQ(e.Save().SerializeAsString(), dump.SerializeAsString());

  // Dynamic wd: a dump without last_update_step means "never updated".
  c.mutable_dynamic_wd_adagrad();
  opt = MustNew(c, 2);
  dump.Clear();
  dump.add_dump()->mutable_dynamic_wd_adagrad()->add_norm(1);
  dump.mutable_dump(0)->mutable_dynamic_wd_adagrad()->add_norm(2);
  Entry e2(*opt);
  ASSERT_TRUE(opt->Restore(dump, 0, e2.state()).ok());
  EXPECT_EQ(e2.Save().dump(0).dynamic_wd_adagrad().last_update_step(), -1);
}

// ------------------------------------------------------------ the factory

TEST(NewOptimizer, RejectsBadConfigs) {
  std::unique_ptr<OptimizerInterface> opt;
  auto expect_bad = [&](const OptimizerConfig& c, int dim,
                        const std::vector<std::string>& needles) {
    SCOPED_TRACE(c.ShortDebugString());
    ExpectInvalid(NewOptimizer(c, dim, &opt), needles);
    EXPECT_EQ(opt, nullptr);
  };
  OptimizerConfig c;
  expect_bad(c, 4, {"no optimizer set"});
  c.set_stochastic_rounding_float16(true);
  expect_bad(c, 4, {"no optimizer set"});

  c.mutable_sgd();
  expect_bad(c, 0, {"dim must be > 0, got 0"});
  expect_bad(c, -3, {"got -3"});
  c.mutable_sgd()->set_warmup_steps(-1);
  expect_bad(c, 4, {"sgd.warmup_steps must be >= 0, got -1"});

  c.mutable_adagrad()->set_initial_accumulator_value(-0.1f);
  expect_bad(c, 4, {"adagrad.initial_accumulator_value", "-0.1"});
  c.mutable_adagrad()->set_initial_accumulator_value(NAN);
  expect_bad(c, 4, {"adagrad.initial_accumulator_value", "finite"});
  c.mutable_adagrad()->set_initial_accumulator_value(0.1f);
  c.mutable_adagrad()->set_weight_decay_factor(-1);
  expect_bad(c, 4, {"adagrad.weight_decay_factor"});

  c.mutable_dynamic_wd_adagrad()->set_enable_dynamic_wd(true);
  c.mutable_dynamic_wd_adagrad()->set_dynamic_wd_temperature(0);
  expect_bad(c, 4, {"dynamic_wd_adagrad.dynamic_wd_temperature", "> 0"});

  c.mutable_ftrl()->set_l1_regularization_strength(-1);
  expect_bad(c, 4, {"ftrl.l1_regularization_strength"});
  c.mutable_group_ftrl()->set_beta(-1);
  expect_bad(c, 4, {"group_ftrl.beta"});
  c.mutable_group_adagrad()->set_l2_regularization_strength(
      std::numeric_limits<float>::infinity());
  expect_bad(c, 4, {"group_adagrad.l2_regularization_strength"});
  c.mutable_adadelta()->set_epsilon(0);
  expect_bad(c, 4, {"adadelta.epsilon must be finite and > 0, got 0"});
  c.mutable_adadelta()->set_epsilon(0.1f);
  c.mutable_adadelta()->set_averaging_ratio(1.5f);
  expect_bad(c, 4, {"adadelta.averaging_ratio must be in [0, 1], got 1.5"});
  c.mutable_adam()->set_beta1(1.0f);
  expect_bad(c, 4, {"adam.beta1 must be in [0, 1), got 1"});
  c.mutable_amsgrad()->set_beta2(-0.5f);
  expect_bad(c, 4, {"amsgrad.beta2"});
  c.mutable_momentum()->set_momentum(1.5f);
  expect_bad(c, 4, {"momentum.momentum"});
  c.mutable_moving_average()->set_momentum(-0.1f);
  expect_bad(c, 4, {"moving_average.momentum"});
  c.mutable_rmsprop()->set_weight_decay_factor(-0.1f);
  expect_bad(c, 4, {"rmsprop.weight_decay_factor"});
  c.mutable_rmspropv2()->set_momentum(2);
  expect_bad(c, 4, {"rmspropv2.momentum"});
  c.mutable_batch_softmax();
  expect_bad(c, 2, {"batch_softmax.dim must be 1, got 2"});
  c.mutable_dc()->set_lambda_(-1);
  expect_bad(c, 4, {"dc.lambda_"});

  // Defaults are valid for every optimizer.
  for (const Case& k : AllCases()) {
    OptimizerConfig fresh;
    fresh.GetReflection()->MutableMessage(
        &fresh, OptimizerConfig::descriptor()->FindFieldByNumber(
                    k.config.type_case()));
    EXPECT_TRUE(NewOptimizer(fresh, k.dim, &opt).ok()) << k.name;
  }
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
