// What every optimizer shares (sizes, init values, save/restore and the dump
// checks of optimizer_internal.h), and NewOptimizer's config validation.
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
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace optimizer_test {
namespace {

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
  // Every case but dc, which NewOptimizer refuses (see Errors).
  for (int i = 0; i < oneof->field_count(); ++i) {
    EXPECT_EQ(seen[oneof->field(i)->index()], oneof->field(i)->name() != "dc")
        << oneof->field(i)->name();
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
    ASSERT_OK(s);
    b.SetNum(a.Num());
    EXPECT_EQ(b.StateBytes(), a.StateBytes());
    EXPECT_EQ(b.Save().SerializeAsString(), dump.SerializeAsString());

    // Also from the middle of a longer dump (an entry of several segments).
    OptimizerDump longer;
    longer.add_dump()->mutable_sgd();
    for (const auto& entry : dump.dump()) *longer.add_dump() = entry;
    longer.add_dump()->mutable_rmsprop();
    Entry b2(*opt);
    ASSERT_OK(opt->Restore(longer, 1, b2.state()));
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
                              c.name != "batch_softmax";
      Status s = opt->Restore(wide, 0, e.state());
      if (has_floats) {
        ExpectInvalid(s, {name, std::to_string(c.dim + 2) + " floats",
                          "expected " + std::to_string(c.dim)});
      } else {
        EXPECT_OK(s);  // nothing dim-dependent
      }
    }
    e.ExpectGuards();
  }
}

TEST(AllOptimizers, RestoreNamesTheBadField) {
  enum Corruption { kAppendOne, kRemoveLast, kClear };
  struct BadField {
    const char* optimizer;  // its OptimizerConfig and SingleOptimizerDump field
    int dim;
    const char* field;  // of its dump message, broken by |corruption|
    Corruption corruption;
    const char* needle;
  };
  const BadField cases[] = {
      {"ftrl", 4, "norm", kAppendOne, "ftrl.norm has 5 floats, expected 4"},
      {"ftrl", 4, "zero", kClear, "ftrl.zero has 0 floats, expected 4"},
      {"adadelta", 4, "accum_update", kRemoveLast,
       "adadelta.accum_update has 3 floats"},
      {"adam", 4, "beta2_power", kClear, "adam.beta2_power is missing"},
      {"amsgrad", 4, "vhat", kAppendOne, "amsgrad.vhat has 5 floats"},
      {"amsgrad", 4, "beta1_power", kClear, "amsgrad.beta1_power is missing"},
      {"group_adagrad", 4, "grad_square_sum", kClear,
       "group_adagrad.grad_square_sum is missing"},
      {"batch_softmax", 1, "global_step", kClear,
       "batch_softmax.global_step is missing"},
      {"dynamic_wd_adagrad", 4, "norm", kRemoveLast,
       "dynamic_wd_adagrad.norm has 3 floats"},
      {"momentum", 4, "n", kClear, "momentum.n has 0 floats, expected 4"},
  };
  for (const BadField& k : cases) {
    SCOPED_TRACE(k.needle);
    OptimizerConfig c;
    c.GetReflection()->MutableMessage(
        &c, OptimizerConfig::descriptor()->FindFieldByName(k.optimizer));
    auto opt = MustNew(c, k.dim);
    Entry e(*opt);
    e.Init();
    OptimizerDump dump = e.Save();
    SingleOptimizerDump* entry = dump.mutable_dump(0);
    google::protobuf::Message* member = entry->GetReflection()->MutableMessage(
        entry, SingleOptimizerDump::descriptor()->FindFieldByName(k.optimizer));
    const google::protobuf::FieldDescriptor* field =
        member->GetDescriptor()->FindFieldByName(k.field);
    ASSERT_NE(field, nullptr) << k.field;
    const google::protobuf::Reflection* r = member->GetReflection();
    switch (k.corruption) {
      case kAppendOne:
        r->AddFloat(member, field, 1);
        break;
      case kRemoveLast:
        r->RemoveLast(member, field);
        break;
      case kClear:
        r->ClearField(member, field);
        break;
    }
    ExpectInvalid(opt->Restore(dump, 0, e.state()), {k.needle});
    e.ExpectGuards();
  }
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
  ASSERT_OK(opt->Restore(dump, 0, e.state()));
  EXPECT_EQ(e.Save().SerializeAsString(), dump.SerializeAsString());

  // Dynamic wd: a dump without last_update_step means "never updated".
  c.mutable_dynamic_wd_adagrad();
  opt = MustNew(c, 2);
  dump.Clear();
  dump.add_dump()->mutable_dynamic_wd_adagrad()->add_norm(1);
  dump.mutable_dump(0)->mutable_dynamic_wd_adagrad()->add_norm(2);
  Entry e2(*opt);
  ASSERT_OK(opt->Restore(dump, 0, e2.state()));
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
  expect_bad(c, 4, {"adadelta.epsilon must be finite and at least", "got 0"});
  // A denormal epsilon is 0 under TF's flush-to-zero: 0 / 0 at a zero
  // second moment, a NaN entry for good.
  c.mutable_adadelta()->set_epsilon(1e-40f);
  expect_bad(c, 4, {"adadelta.epsilon", "flushed to 0"});
  c.mutable_adam()->set_epsilon(1e-40f);
  expect_bad(c, 4, {"adam.epsilon", "flushed to 0"});
  c.mutable_amsgrad()->set_epsilon(1e-40f);
  expect_bad(c, 4, {"amsgrad.epsilon", "flushed to 0"});
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
  c.mutable_dc()->set_lambda_(0.5f);
  expect_bad(c, 4, {"dc (delay compensation) is not supported"});

  // Defaults are valid for every optimizer.
  for (const Case& k : AllCases()) {
    OptimizerConfig fresh;
    fresh.GetReflection()->MutableMessage(
        &fresh, OptimizerConfig::descriptor()->FindFieldByNumber(
                    k.config.type_case()));
    EXPECT_OK(NewOptimizer(fresh, k.dim, &opt)) << k.name;
  }
}

}  // namespace
}  // namespace optimizer_test
}  // namespace hash_table
}  // namespace monolith
