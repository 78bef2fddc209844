// NewOptimizer: validates an OptimizerConfig and builds its optimizer with
// the decorators the config asks for. Also the dump helpers of
// optimizer_internal.h.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_decorators.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_internal.h"

namespace monolith {
namespace hash_table {

namespace optimizer_internal {

std::string DumpCaseName(SingleOptimizerDump::TypeCase type_case) {
  if (type_case == SingleOptimizerDump::TYPE_NOT_SET) return "unset";
  const google::protobuf::FieldDescriptor* field =
      SingleOptimizerDump::descriptor()->FindFieldByNumber(type_case);
  return field ? std::string(field->name())
               : "field " + std::to_string(type_case);
}

Status OptimizerBase::GetEntry(const OptimizerDump& dump, int first, int index,
                               SingleOptimizerDump::TypeCase expected,
                               const SingleOptimizerDump** entry) const {
  const int at = first + index;
  if (first < 0 || at >= dump.dump_size()) {
    return InvalidArgumentError(
        DebugString() + " restore: needs dump entries [" +
        std::to_string(first) + ", " + std::to_string(first + DumpSize()) +
        ") but the dump has " + std::to_string(dump.dump_size()) +
        " entries");
  }
  const SingleOptimizerDump& e = dump.dump(at);
  if (e.type_case() != expected) {
    return InvalidArgumentError(DebugString() + " restore: dump entry " +
                                std::to_string(at) + " is '" +
                                DumpCaseName(e.type_case()) + "', expected '" +
                                DumpCaseName(expected) + "'");
  }
  *entry = &e;
  return Status::OK();
}

Status OptimizerBase::ReadFloats(
    const google::protobuf::RepeatedField<float>& src, const char* field,
    int n, float* dst) const {
  if (src.size() != n) {
    return InvalidArgumentError(DebugString() + " restore: " + field +
                                " has " + std::to_string(src.size()) +
                                " floats, expected " + std::to_string(n));
  }
  if (n > 0) std::memcpy(dst, src.data(), n * sizeof(float));
  return Status::OK();
}

Status OptimizerBase::RequireField(bool present, const char* field) const {
  if (present) return Status::OK();
  return InvalidArgumentError(DebugString() + " restore: " + field +
                              " is missing");
}

}  // namespace optimizer_internal

namespace {

namespace oi = optimizer_internal;

std::string Str(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Collects the first violated rule of a config as "<opt>.<field> must be
// <rule>, got <value>".
class Checker {
 public:
  explicit Checker(const char* opt) : opt_(opt) {}

  Checker& AtLeast(const char* field, double v, double lo) {
    return Rule(std::isfinite(v) && v >= lo, field,
                "finite and >= " + Str(lo), Str(v));
  }
  Checker& Above(const char* field, double v, double lo) {
    return Rule(std::isfinite(v) && v > lo, field, "finite and > " + Str(lo),
                Str(v));
  }
  // lo <= v <= hi, or lo <= v < hi when !hi_inclusive.
  Checker& Within(const char* field, double v, double lo, double hi,
                  bool hi_inclusive = true) {
    const bool ok = v >= lo && (hi_inclusive ? v <= hi : v < hi);
    return Rule(ok, field,
                "in [" + Str(lo) + ", " + Str(hi) + (hi_inclusive ? "]" : ")"),
                Str(v));
  }
  Checker& Steps(int64_t warmup_steps) {
    return Rule(warmup_steps >= 0, "warmup_steps", ">= 0",
                std::to_string(warmup_steps));
  }
  Checker& Dim(int dim, int required) {
    return Rule(dim == required, "dim", std::to_string(required),
                std::to_string(dim));
  }

  Status status() const { return status_; }

 private:
  Checker& Rule(bool ok, const char* field, const std::string& rule,
                const std::string& got) {
    if (!ok && status_.ok()) {
      status_ = InvalidArgumentError(std::string(opt_) + "." + field +
                                     " must be " + rule + ", got " + got);
    }
    return *this;
  }

  const char* opt_;
  Status status_;
};

// The optimizer of |config| without decorators, and its warmup_steps.
Status NewBase(const OptimizerConfig& config, int dim,
               std::unique_ptr<OptimizerInterface>* out,
               int64_t* warmup_steps) {
  *warmup_steps = 0;
  switch (config.type_case()) {
    case OptimizerConfig::kSgd: {
      const SgdOptimizerConfig& c = config.sgd();
      MONOLITH_RETURN_IF_ERROR(Checker("sgd").Steps(c.warmup_steps()).status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewSgd(dim);
      return Status::OK();
    }
    case OptimizerConfig::kAdagrad: {
      // hessian_compression_times is unused, as in Monolith.
      const AdagradOptimizerConfig& c = config.adagrad();
      MONOLITH_RETURN_IF_ERROR(
          Checker("adagrad")
              .AtLeast("initial_accumulator_value",
                       c.initial_accumulator_value(), 0)
              .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
              .Steps(c.warmup_steps())
              .status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewAdagrad(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kDynamicWdAdagrad: {
      const DynamicWdAdagradOptimizerConfig& c = config.dynamic_wd_adagrad();
      Checker check("dynamic_wd_adagrad");
      check
          .AtLeast("initial_accumulator_value", c.initial_accumulator_value(),
                   0)
          .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
          .Steps(c.warmup_steps());
      if (c.enable_dynamic_wd()) {
        check.Above("dynamic_wd_temperature", c.dynamic_wd_temperature(), 0);
      }
      MONOLITH_RETURN_IF_ERROR(check.status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewDynamicWdAdagrad(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kGroupAdagrad: {
      const GroupAdaGradOptimizerConfig& c = config.group_adagrad();
      MONOLITH_RETURN_IF_ERROR(
          Checker("group_adagrad")
              .AtLeast("initial_accumulator_value",
                       c.initial_accumulator_value(), 0)
              .AtLeast("beta", c.beta(), 0)
              .AtLeast("l2_regularization_strength",
                       c.l2_regularization_strength(), 0)
              .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
              .Steps(c.warmup_steps())
              .status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewGroupAdagrad(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kFtrl: {
      const FtrlOptimizerConfig& c = config.ftrl();
      MONOLITH_RETURN_IF_ERROR(
          Checker("ftrl")
              .AtLeast("initial_accumulator_value",
                       c.initial_accumulator_value(), 0)
              .AtLeast("beta", c.beta(), 0)
              .AtLeast("l1_regularization_strength",
                       c.l1_regularization_strength(), 0)
              .AtLeast("l2_regularization_strength",
                       c.l2_regularization_strength(), 0)
              .Steps(c.warmup_steps())
              .status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewFtrl(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kGroupFtrl: {
      const GroupFtrlOptimizerConfig& c = config.group_ftrl();
      MONOLITH_RETURN_IF_ERROR(
          Checker("group_ftrl")
              .AtLeast("initial_accumulator_value",
                       c.initial_accumulator_value(), 0)
              .AtLeast("beta", c.beta(), 0)
              .AtLeast("l1_regularization_strength",
                       c.l1_regularization_strength(), 0)
              .AtLeast("l2_regularization_strength",
                       c.l2_regularization_strength(), 0)
              .Steps(c.warmup_steps())
              .status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewGroupFtrl(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kAdadelta: {
      const AdadeltaOptimizerConfig& c = config.adadelta();
      MONOLITH_RETURN_IF_ERROR(
          Checker("adadelta")
              .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
              .Within("averaging_ratio", c.averaging_ratio(), 0, 1)
              .Above("epsilon", c.epsilon(), 0)
              .Steps(c.warmup_steps())
              .status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewAdadelta(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kAdam: {
      const AdamOptimizerConfig& c = config.adam();
      MONOLITH_RETURN_IF_ERROR(
          Checker("adam")
              .Within("beta1", c.beta1(), 0, 1, /*hi_inclusive=*/false)
              .Within("beta2", c.beta2(), 0, 1, /*hi_inclusive=*/false)
              .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
              .Above("epsilon", c.epsilon(), 0)
              .Steps(c.warmup_steps())
              .status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewAdam(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kAmsgrad: {
      const AmsgradOptimizerConfig& c = config.amsgrad();
      MONOLITH_RETURN_IF_ERROR(
          Checker("amsgrad")
              .Within("beta1", c.beta1(), 0, 1, /*hi_inclusive=*/false)
              .Within("beta2", c.beta2(), 0, 1, /*hi_inclusive=*/false)
              .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
              .Above("epsilon", c.epsilon(), 0)
              .Steps(c.warmup_steps())
              .status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewAmsgrad(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kMomentum: {
      const MomentumOptimizerConfig& c = config.momentum();
      MONOLITH_RETURN_IF_ERROR(
          Checker("momentum")
              .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
              .Within("momentum", c.momentum(), 0, 1)
              .Steps(c.warmup_steps())
              .status());
      *warmup_steps = c.warmup_steps();
      *out = oi::NewMomentum(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kMovingAverage: {
      const MovingAverageOptimizerConfig& c = config.moving_average();
      MONOLITH_RETURN_IF_ERROR(Checker("moving_average")
                                   .Within("momentum", c.momentum(), 0, 1)
                                   .status());
      *out = oi::NewMovingAverage(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kRmsprop: {
      const RmspropOptimizerConfig& c = config.rmsprop();
      MONOLITH_RETURN_IF_ERROR(
          Checker("rmsprop")
              .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
              .Within("momentum", c.momentum(), 0, 1)
              .status());
      *out = oi::NewRmsprop(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kRmspropv2: {
      const RmspropV2OptimizerConfig& c = config.rmspropv2();
      MONOLITH_RETURN_IF_ERROR(
          Checker("rmspropv2")
              .AtLeast("weight_decay_factor", c.weight_decay_factor(), 0)
              .Within("momentum", c.momentum(), 0, 1)
              .status());
      *out = oi::NewRmspropV2(c, dim);
      return Status::OK();
    }
    case OptimizerConfig::kBatchSoftmax: {
      // It updates num[0] only (Monolith DCHECKs dim_size == 1).
      MONOLITH_RETURN_IF_ERROR(
          Checker("batch_softmax").Dim(dim, 1).status());
      *out = oi::NewBatchSoftmax(config.batch_softmax(), dim);
      return Status::OK();
    }
    case OptimizerConfig::kDc:
      // Monolith's factory cannot build dc (it is a decorator over another
      // optimizer there, and the oneof leaves no room for that one): here a
      // dc config is delay-compensated SGD.
      return NewDcOptimizer(config.dc(), oi::NewSgd(dim), out);
    case OptimizerConfig::TYPE_NOT_SET:
      break;
  }
  return InvalidArgumentError(
      "OptimizerConfig holds no optimizer this build knows (oneof case " +
      std::to_string(config.type_case()) + ")");
}

}  // namespace

Status NewOptimizer(const OptimizerConfig& config, int dim,
                    std::unique_ptr<OptimizerInterface>* optimizer) {
  optimizer->reset();
  if (config.type_case() == OptimizerConfig::TYPE_NOT_SET) {
    return InvalidArgumentError(
        "OptimizerConfig has no optimizer set (its oneof 'type' is empty)");
  }
  if (dim <= 0) {
    return InvalidArgumentError("optimizer dim must be > 0, got " +
                                std::to_string(dim));
  }
  std::unique_ptr<OptimizerInterface> opt;
  int64_t warmup_steps = 0;
  MONOLITH_RETURN_IF_ERROR(NewBase(config, dim, &opt, &warmup_steps));
  if (warmup_steps > 0) opt = NewWarmupOptimizer(std::move(opt), warmup_steps);
  if (config.stochastic_rounding_float16()) {
    opt = NewStochasticRoundingFloat16Optimizer(std::move(opt));
  }
  *optimizer = std::move(opt);
  return Status::OK();
}

}  // namespace hash_table
}  // namespace monolith
