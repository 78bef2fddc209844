// The optimizers of adagrad_family.cc (sgd, adagrad, dynamic_wd_adagrad,
// ftrl, group_ftrl, group_adagrad) against scalar references written from
// their formulas (in double).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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

TEST(Sgd, MatchesReference) {
  OptimizerConfig c;
  c.mutable_sgd()->set_learning_rate(0.5f);  // unused: the lr handed in is
  std::vector<double> w = ToDouble(InitialNum(kDim));
  RunSteps(c, kDim, [&](int s, const std::vector<float>& g, Entry& e) {
    for (int i = 0; i < kDim; ++i) w[i] -= kLr[s] * g[i];
    ExpectClose(e.Num(), w, "sgd step " + std::to_string(s));
  });
}

void CheckAdagrad(int dim) {
  OptimizerConfig c;
  c.mutable_adagrad()->set_initial_accumulator_value(0.2f);
  c.mutable_adagrad()->set_weight_decay_factor(0.03f);
  std::vector<double> w = ToDouble(InitialNum(dim));
  std::vector<double> n(dim, 0.2);
  RunSteps(c, dim, [&](int s, const std::vector<float>& grad, Entry& e) {
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
  const std::vector<int64_t> steps = {5, 6, 16, 16};
  std::vector<double> w = ToDouble(InitialNum(kDim));
  std::vector<double> n(kDim, init);
  int64_t last = -1;
  const std::string what = std::string("dynamic_wd decouple=") +
                           (p.decouple ? "1" : "0") +
                           " dynamic=" + (p.dynamic ? "1" : "0") +
                           " flip=" + (p.flip ? "1" : "0");
  RunSteps(
      c, kDim,
      [&](int s, const std::vector<float>& grad, Entry& e) {
        // Steps since the last update; 1 for the first and a repeated step.
        double gap = (last < 0 || steps[s] <= last) ? 1 : steps[s] - last;
        double wd_s = wd;
        if (p.dynamic) {
          wd_s = wd * std::pow(gap, (p.flip ? -1 : 1) / p.temperature);
        }
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

// FTRL-Proximal per coordinate, one step of gradient |g| at rate |lr|;
// group: the L1 shrinkage acts on the whole entry's z norm instead.
std::vector<double> FtrlReference(const FtrlParams& p, bool group,
                                  const std::vector<float>& g, double lr,
                                  std::vector<double>* n,
                                  std::vector<double>* z,
                                  std::vector<double> w, int* zeroed) {
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

// Runs ftrl (group_ftrl when |group|) with |p| against FtrlReference,
// checking num and the dumped norm and zero after each step; returns how
// many weights the reference set to 0.
int CheckFtrl(const FtrlParams& p, bool group) {
  OptimizerConfig c;
  auto configure = [&p](auto* f) {
    f->set_initial_accumulator_value(p.init);
    f->set_beta(p.beta);
    f->set_l1_regularization_strength(p.l1);
    f->set_l2_regularization_strength(p.l2);
  };
  if (group) {
    configure(c.mutable_group_ftrl());
  } else {
    configure(c.mutable_ftrl());
  }
  const std::string what = std::string(group ? "group_ftrl" : "ftrl") +
                           " l1=" + std::to_string(p.l1);
  std::vector<double> w = ToDouble(InitialNum(kDim));
  std::vector<double> n(kDim, p.init), z(kDim, 0);
  int zeroed = 0;
  RunSteps(c, kDim, [&](int s, const std::vector<float>& grad, Entry& e) {
    w = FtrlReference(p, group, grad, kLr[s], &n, &z, w, &zeroed);
    ExpectClose(e.Num(), w, what + " step " + std::to_string(s));
    const SingleOptimizerDump d = e.Save().dump(0);
    ExpectClose(ToVector(group ? d.group_ftrl().norm() : d.ftrl().norm()), n,
                what + " norm");
    ExpectClose(ToVector(group ? d.group_ftrl().zero() : d.ftrl().zero()), z,
                what + " zero", 1e-4, 1e-5);
  });
  return zeroed;
}

TEST(Ftrl, MatchesReferenceWithL1L2) {
  const int zeroed = CheckFtrl({0.1, 0.5, 0.35, 0.2}, /*group=*/false);
  // The data exercises both sides of the L1 threshold.
  EXPECT_GT(zeroed, 0);
  EXPECT_LT(zeroed, kSteps * kDim);
}

TEST(GroupFtrl, MatchesReferenceWithL1L2) {
  for (double l1 : {0.3, 1.0, 100.0}) {
    const int zeroed = CheckFtrl({0.05, 1.0, l1, 0.2}, /*group=*/true);
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
    std::vector<double> w = ToDouble(InitialNum(kDim));
    double acc = init;
    RunSteps(c, kDim, [&](int s, const std::vector<float>& grad, Entry& e) {
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

// A learning rate of 0 (a schedule's start or end), a zero accumulator with
// zero gradients, and zero denominators: Monolith's formulas divide by zero
// there and leave the entry NaN for good. Here nothing becomes NaN, and a
// zero learning rate leaves the values as they are.
TEST(AdagradFamily, ZeroRatesAndZeroAccumulatorsNeverMakeNaN) {
  std::vector<OptimizerConfig> configs(6);
  configs[0].mutable_adagrad()->set_initial_accumulator_value(0);
  configs[1].mutable_dynamic_wd_adagrad()->set_initial_accumulator_value(0);
  configs[2].mutable_ftrl()->set_initial_accumulator_value(0);
  configs[3].mutable_group_ftrl()->set_initial_accumulator_value(0);
  configs[3].mutable_group_ftrl()->set_beta(0);
  configs[4].mutable_group_adagrad()->set_initial_accumulator_value(0);
  configs[4].mutable_group_adagrad()->set_beta(0);
  configs[5].mutable_dynamic_wd_adagrad()->set_initial_accumulator_value(0);
  configs[5].mutable_dynamic_wd_adagrad()->set_decouple_weight_decay(true);
  for (const OptimizerConfig& c : configs) {
    auto opt = MustNew(c, 3);
    Entry e(*opt);
    e.Init();
    e.SetNum({0.5f, 0.0f, -0.25f});
    // Coordinate 1 never gets a gradient; a step at rate 0 changes nothing.
    e.Optimize({0.0f, 0.0f, 0.0f}, 0.1f, 1);
    e.Optimize({1.0f, 0.0f, -2.0f}, 0.0f, 2);
    const std::vector<float> before = e.Num();
    e.Optimize({1.0f, 0.0f, -2.0f}, 0.0f, 3);
    EXPECT_EQ(e.Num(), before) << c.ShortDebugString();
    e.Optimize({1.0f, 0.0f, -2.0f}, 0.1f, 4);
    e.Optimize({0.0f, 0.0f, 0.0f}, 0.1f, 5);
    for (float v : e.Num()) EXPECT_TRUE(std::isfinite(v)) << c.ShortDebugString();
    const std::string state = e.StateBytes();
    for (size_t k = 0; k + sizeof(float) <= state.size(); k += sizeof(float)) {
      float f;
      std::memcpy(&f, state.data() + k, sizeof(f));
      EXPECT_FALSE(std::isnan(f)) << c.ShortDebugString() << " state " << k;
    }
    e.ExpectGuards();
  }
}

// Group adagrad with beta 0 and no gradient yet (its step
// lr / (beta + sqrt(acc)) is infinite) keeps its values at l2 = 0 and
// zeroes them at l2 > 0, as Monolith's limit; FTRL with beta 0 and a
// gradient whose square underflows gives 0, not +-inf.
TEST(AdagradFamily, ZeroDenominatorsKeepValuesFinite) {
  for (float l2 : {0.0f, 0.1f}) {
    OptimizerConfig group;
    group.mutable_group_adagrad()->set_initial_accumulator_value(0);
    group.mutable_group_adagrad()->set_beta(0);
    group.mutable_group_adagrad()->set_l2_regularization_strength(l2);
    auto group_opt = MustNew(group, 3);
    Entry g(*group_opt);
    g.Init();
    g.SetNum({0.5f, 0.0f, -0.25f});
    g.Optimize({0.0f, 0.0f, 0.0f}, 0.1f, 1);
    const std::vector<float> want =
        l2 > 0 ? std::vector<float>(3, 0.0f)
               : std::vector<float>{0.5f, 0.0f, -0.25f};
    EXPECT_EQ(g.Num(), want) << "l2 " << l2;
  }

  OptimizerConfig ftrl;
  ftrl.mutable_ftrl()->set_initial_accumulator_value(0);
  ftrl.mutable_ftrl()->set_beta(0);
  auto ftrl_opt = MustNew(ftrl, 2);
  Entry f(*ftrl_opt);
  f.Init();
  f.SetNum({0.5f, -0.25f});
  f.Optimize({1e-23f, -1e-23f}, 0.1f, 1);
  for (float v : f.Num()) EXPECT_EQ(v, 0.0f);
  f.ExpectGuards();
}

// A NaN gradient makes the values NaN, as Monolith's: a divergence shows in
// the loss instead of freezing the coordinate (a NaN accumulator never
// compared above 0 again). A negative learning rate is applied, as there.
TEST(AdagradFamily, NanGradientsShowAndNegativeRatesApply) {
  std::vector<OptimizerConfig> configs(6);
  configs[0].mutable_adagrad();
  configs[1].mutable_dynamic_wd_adagrad();
  configs[2].mutable_dynamic_wd_adagrad()->set_decouple_weight_decay(true);
  configs[3].mutable_group_adagrad();
  configs[4].mutable_group_ftrl();
  // It pinned w at 0 with NaN state, silently.
  configs[5].mutable_ftrl();
  for (const OptimizerConfig& c : configs) {
    auto opt = MustNew(c, 2);
    Entry e(*opt);
    e.Init();
    e.SetNum({0.5f, -0.25f});
    e.Optimize({std::nanf(""), 1.0f}, 0.1f, 1);
    e.Optimize({1.0f, 1.0f}, 0.1f, 2);
    EXPECT_TRUE(std::isnan(e.Num()[0])) << c.ShortDebugString();
    e.ExpectGuards();
  }
  // FTRL at a negative rate whose l2 * lr outweighs sqrt(n'): a negative
  // denominator, computed as the original computes it.
  {
    OptimizerConfig c;
    c.mutable_ftrl()->set_l2_regularization_strength(1.0f);
    c.mutable_ftrl()->set_beta(0.0f);
    auto opt = MustNew(c, 1);
    Entry e(*opt);
    e.Init();
    e.SetNum({0.0f});
    const double lr = -0.5, g = 0.1;
    const double n = c.ftrl().initial_accumulator_value() + g * g;
    // z = g (w was 0); w = lr * (-z) / (sqrt(n) + beta + l2 * lr).
    const double want = lr * -g / (std::sqrt(n) + lr);
    e.Optimize({static_cast<float>(g)}, static_cast<float>(lr), 1);
    EXPECT_LT(std::sqrt(n) + lr, 0.0);
    EXPECT_NEAR(e.Num()[0], want, 1e-6);
  }
  OptimizerConfig ftrl;
  ftrl.mutable_ftrl();
  OptimizerConfig group_ftrl;
  group_ftrl.mutable_group_ftrl();
  OptimizerConfig group_adagrad;
  group_adagrad.mutable_group_adagrad();
  for (const OptimizerConfig& c : {ftrl, group_ftrl, group_adagrad}) {
    auto opt = MustNew(c, 2);
    Entry e(*opt);
    e.Init();
    e.SetNum({0.0f, 0.0f});
    const std::string state = e.StateBytes();
    e.Optimize({1.0f, -1.0f}, -0.01f, 1);
    EXPECT_NE(e.StateBytes(), state) << c.ShortDebugString();
    e.ExpectGuards();
  }
}

// Dynamic weight decay: an older step (a slower worker) neither counts as a
// gap nor moves the last step back; a huge scaled decay stays finite.
TEST(DynamicWdAdagrad, OlderStepsAndHugeScaledDecay) {
  OptimizerConfig c;
  auto* d = c.mutable_dynamic_wd_adagrad();
  d->set_initial_accumulator_value(0.1f);
  d->set_weight_decay_factor(1e-4f);
  d->set_enable_dynamic_wd(true);
  d->set_dynamic_wd_temperature(0.05f);  // gap^20
  auto opt = MustNew(c, 1);
  Entry e(*opt);
  e.Init();
  e.SetNum({0.5f});
  e.Optimize({0.1f}, 0.1f, 100);
  e.Optimize({0.1f}, 0.1f, 95);
  EXPECT_EQ(e.Save().dump(0).dynamic_wd_adagrad().last_update_step(), 100);
  e.Optimize({0.1f}, 0.1f, 10000);  // 1e-4 * 9900^20 overflows a float
  // Capped at 1 / lr: the entry and its accumulator stay finite, and it
  // moves on (a value above 1 made wd * w infinite, the entry NaN).
  EXPECT_TRUE(std::isfinite(e.Num()[0]));
  EXPECT_TRUE(std::isfinite(e.Save().dump(0).dynamic_wd_adagrad().norm(0)));
  EXPECT_EQ(e.Save().dump(0).dynamic_wd_adagrad().last_update_step(), 10000);
  Entry big(*opt);
  big.Init();
  big.SetNum({2.0f});
  big.Optimize({0.1f}, 0.1f, 100);
  big.Optimize({0.1f}, 0.1f, 10000);
  EXPECT_TRUE(std::isfinite(big.Num()[0]));
  EXPECT_LT(big.Num()[0], 2.0f);  // decayed
  const float before = big.Num()[0];
  big.Optimize({0.1f}, 0.1f, 10001);
  EXPECT_NE(big.Num()[0], before);
  // A rate of 0 (a schedule's end) bounds nothing: the factor unscaled.
  Entry stopped(*opt);
  stopped.Init();
  stopped.SetNum({2.0f});
  stopped.Optimize({0.1f}, 0.1f, 100);
  stopped.Optimize({0.1f}, 0.0f, 10000);
  EXPECT_TRUE(
      std::isfinite(stopped.Save().dump(0).dynamic_wd_adagrad().norm(0)));
  EXPECT_TRUE(std::isfinite(stopped.Num()[0]));
}

}  // namespace
}  // namespace optimizer_test
}  // namespace hash_table
}  // namespace monolith
