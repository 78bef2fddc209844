// NewOptimizer: finds the kind registered for an OptimizerConfig's oneof
// case, validates the config with it and builds its optimizer with the
// decorators the config asks for. Also the dump helpers and ConfigChecker of
// optimizer_internal.h.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

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

namespace {

std::string Str(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

ConfigChecker& ConfigChecker::NonNegative(
    std::initializer_list<const char*> fields) {
  for (const char* field : fields) {
    Value v;
    if (!Read(field, &v)) continue;
    Rule(v.integer ? v.number >= 0 : std::isfinite(v.number) && v.number >= 0,
         field, v.integer ? ">= 0" : "finite and >= 0", v.text);
  }
  return *this;
}

ConfigChecker& ConfigChecker::Positive(const char* field) {
  Value v;
  if (!Read(field, &v)) return *this;
  return Rule(std::isfinite(v.number) && v.number > 0, field, "finite and > 0",
              v.text);
}

ConfigChecker& ConfigChecker::NormalPositive(const char* field) {
  Value v;
  if (!Read(field, &v)) return *this;
  return Rule(
      std::isfinite(v.number) && v.number >= std::numeric_limits<float>::min(),
      field,
      "finite and at least " + Str(std::numeric_limits<float>::min()) +
          " (smaller floats are flushed to 0 in TF's kernels)",
      v.text);
}

ConfigChecker& ConfigChecker::Within(const char* field, double lo, double hi,
                                     bool hi_inclusive) {
  Value v;
  if (!Read(field, &v)) return *this;
  const bool ok =
      v.number >= lo && (hi_inclusive ? v.number <= hi : v.number < hi);
  return Rule(ok, field,
              "in [" + Str(lo) + ", " + Str(hi) + (hi_inclusive ? "]" : ")"),
              v.text);
}

ConfigChecker& ConfigChecker::Dim(int dim, int required) {
  return Rule(dim == required, "dim", std::to_string(required),
              std::to_string(dim));
}

bool ConfigChecker::Read(const char* field, Value* value) {
  using google::protobuf::FieldDescriptor;
  const FieldDescriptor* f = config_.GetDescriptor()->FindFieldByName(field);
  const google::protobuf::Reflection* r = config_.GetReflection();
  if (f != nullptr && !f->is_repeated()) {
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) {
      const float v = r->GetFloat(config_, f);
      *value = {v, /*integer=*/false, Str(v)};
      return true;
    }
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT64) {
      const int64_t v = r->GetInt64(config_, f);
      *value = {static_cast<double>(v), /*integer=*/true, std::to_string(v)};
      return true;
    }
  }
  if (status_.ok()) {
    status_ = InternalError(optimizer_ + " has no float or int64 field '" +
                            field + "' to check");
  }
  return false;
}

ConfigChecker& ConfigChecker::Rule(bool ok, const std::string& field,
                                   const std::string& rule,
                                   const std::string& got) {
  if (!ok && status_.ok()) {
    status_ = InvalidArgumentError(optimizer_ + "." + field + " must be " +
                                   rule + ", got " + got);
  }
  return *this;
}

}  // namespace optimizer_internal

namespace {

namespace oi = optimizer_internal;

// The kind registered for config message type |type| (that of one
// OptimizerConfig oneof case), or null. The kinds of all source files are
// gathered once.
const oi::OptimizerKind* FindKind(const google::protobuf::Descriptor* type) {
  static const std::vector<oi::OptimizerKind>* const kKinds = [] {
    auto* kinds = new std::vector<oi::OptimizerKind>();
    for (const auto& registered :
         {oi::AdagradFamilyKinds(), oi::MomentOptimizerKinds()}) {
      kinds->insert(kinds->end(), registered.begin(), registered.end());
    }
    return kinds;
  }();
  for (const oi::OptimizerKind& kind : *kKinds) {
    if (kind.config_type() == type) return &kind;
  }
  return nullptr;
}

}  // namespace

int64_t OptimizerWarmupSteps(const OptimizerConfig& config) {
  const google::protobuf::FieldDescriptor* field =
      OptimizerConfig::descriptor()->FindFieldByNumber(config.type_case());
  if (field == nullptr) return 0;
  const google::protobuf::Message& sub =
      config.GetReflection()->GetMessage(config, field);
  const google::protobuf::FieldDescriptor* steps =
      sub.GetDescriptor()->FindFieldByName("warmup_steps");
  return steps ? sub.GetReflection()->GetInt64(sub, steps) : 0;
}

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
  if (config.type_case() == OptimizerConfig::kDc) {
    // The original's factory could not build dc either.
    return InvalidArgumentError(
        "OptimizerConfig dc (delay compensation) is not supported: it "
        "corrects each gradient by the value it was computed at, which "
        "apply_gradients does not carry; use sgd or another optimizer");
  }
  const google::protobuf::FieldDescriptor* field =
      OptimizerConfig::descriptor()->FindFieldByNumber(config.type_case());
  const oi::OptimizerKind* kind =
      field ? FindKind(field->message_type()) : nullptr;
  if (kind == nullptr) {
    return InvalidArgumentError(
        "OptimizerConfig holds no optimizer this build knows (oneof case " +
        std::to_string(config.type_case()) + ")");
  }
  const google::protobuf::Message& sub =
      config.GetReflection()->GetMessage(config, field);
  oi::ConfigChecker check(sub, std::string(field->name()));
  kind->validate(sub, dim, &check);
  // Every config with a warmup_steps field gets the warmup decorator.
  const google::protobuf::FieldDescriptor* steps_field =
      sub.GetDescriptor()->FindFieldByName("warmup_steps");
  if (steps_field != nullptr) check.NonNegative({"warmup_steps"});
  MONOLITH_RETURN_IF_ERROR(check.status());
  const int64_t warmup_steps = OptimizerWarmupSteps(config);

  std::unique_ptr<OptimizerInterface> opt = kind->construct(sub, dim);
  if (warmup_steps > 0) opt = NewWarmupOptimizer(std::move(opt), warmup_steps);
  if (config.stochastic_rounding_float16()) {
    opt = NewStochasticRoundingFloat16Optimizer(std::move(opt));
  }
  *optimizer = std::move(opt);
  return Status::OK();
}

}  // namespace hash_table
}  // namespace monolith
