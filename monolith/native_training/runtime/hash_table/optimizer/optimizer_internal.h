// Shared pieces of the optimizer implementations: a base class holding the
// dim and name, dump read/write helpers that validate before they copy, the
// config rule checker, and OptimizerKind, how NewOptimizer
// (optimizer_factory.cc) validates and builds the optimizer of one
// OptimizerConfig oneof case. Each source file registers the kinds of its
// optimizers beside them.
//
// Internal to the :optimizer target; use NewOptimizer instead.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERNAL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERNAL_H_

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/optimizer/optimizer.pb.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {
namespace optimizer_internal {

// The name of a SingleOptimizerDump oneof case ("adagrad", "unset").
std::string DumpCaseName(SingleOptimizerDump::TypeCase type_case);

class OptimizerBase : public OptimizerInterface {
 public:
  OptimizerBase(const char* name, int dim) : name_(name), dim_(dim) {}

  std::string DebugString() const override {
    return name_ + "(D=" + std::to_string(dim_) + ")";
  }
  int DimSize() const override { return dim_; }

 protected:
  // The entry dump.dump(first + index) after checking it exists and holds
  // |expected|. index < DumpSize().
  Status GetEntry(const OptimizerDump& dump, int first, int index,
                  SingleOptimizerDump::TypeCase expected,
                  const SingleOptimizerDump** entry) const;

  // Copies exactly |n| floats of a repeated field named |field| (e.g.
  // "adagrad.norm") into |dst|; InvalidArgument when its length is not |n|.
  Status ReadFloats(const google::protobuf::RepeatedField<float>& src,
                    const char* field, int n, float* dst) const;

  // InvalidArgument naming |field| unless |present|.
  Status RequireField(bool present, const char* field) const;

  // Writes one OptimizerDump.dump field: a SingleOptimizerDump whose oneof
  // member |type| (its field number) holds what |body(out)| writes, about
  // |body_bytes| bytes (exact saves moving them).
  template <typename Body>
  static void WriteSingleDump(WireWriter* out, int type, size_t body_bytes,
                              Body body) {
    const size_t dump =
        out->BeginMessage(OptimizerDump::kDumpFieldNumber,
                          WireWriter::MessageBytes(type, body_bytes));
    const size_t member = out->BeginMessage(type, body_bytes);
    body(out);
    out->EndMessage(member);
    out->EndMessage(dump);
  }

  const std::string name_;
  const int dim_;
};

// Reads/writes an int64 at a 4-byte aligned address.
inline int64_t LoadInt64(const void* p) {
  int64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void StoreInt64(void* p, int64_t v) { std::memcpy(p, &v, sizeof(v)); }

// Collects the first violated rule of an optimizer config as
// "<optimizer>.<field> must be <rule>, got <value>". Rules name the
// config's float and int64 fields, read by reflection, so that a message
// always names the field it read; naming a field the config lacks fails the
// check (InternalError).
class ConfigChecker {
 public:
  // Checks |config|, the message of OptimizerConfig oneof field |optimizer|
  // ("adam"); |config| must outlive the checker.
  ConfigChecker(const google::protobuf::Message& config, std::string optimizer)
      : config_(config), optimizer_(std::move(optimizer)) {}

  // Each of |fields| >= 0, and finite for a floating-point field.
  ConfigChecker& NonNegative(std::initializer_list<const char*> fields);
  // Finite and > 0.
  ConfigChecker& Positive(const char* field);
  // Finite and a normal float (at least FLT_MIN): TF runs kernels with
  // denormals flushed to 0 (and the GPU code is built -ftz), so a smaller
  // divisor's guard would be 0.
  ConfigChecker& NormalPositive(const char* field);
  // lo <= value <= hi, or lo <= value < hi when !hi_inclusive.
  ConfigChecker& Within(const char* field, double lo, double hi,
                        bool hi_inclusive = true);
  // The optimizer's |dim| (not a config field) == |required|.
  ConfigChecker& Dim(int dim, int required);

  // OK, or InvalidArgument with the first violated rule.
  Status status() const { return status_; }

 private:
  struct Value {
    double number;
    bool integer;
    std::string text;  // as a message shows it
  };
  // The value of the float or int64 field |field|; false after failing the
  // check when the config has none.
  bool Read(const char* field, Value* value);
  ConfigChecker& Rule(bool ok, const std::string& field,
                      const std::string& rule, const std::string& got);

  const google::protobuf::Message& config_;
  const std::string optimizer_;
  Status status_;
};

// How NewOptimizer builds the optimizer of one OptimizerConfig oneof case,
// whose config is a message of type config_type(). NewOptimizer checks
// warmup_steps and adds the decorators itself.
struct OptimizerKind {
  const google::protobuf::Descriptor* (*config_type)();
  // Adds the rules |config| breaks, at |dim|, to |check|.
  void (*validate)(const google::protobuf::Message& config, int dim,
                   ConfigChecker* check);
  // The optimizer of a config that |validate| passed.
  std::unique_ptr<OptimizerInterface> (*construct)(
      const google::protobuf::Message& config, int dim);
};

// The kind of optimizer class Opt, which names its config message
// Opt::Config and provides
//   static void Validate(const Config& config, int dim,
//                        ConfigChecker* check);
//   Opt(const Config& config, int dim);  // config already validated
template <typename Opt>
constexpr OptimizerKind KindOf() {
  using Config = typename Opt::Config;
  return {
      &Config::descriptor,
      [](const google::protobuf::Message& config, int dim,
         ConfigChecker* check) {
        Opt::Validate(static_cast<const Config&>(config), dim, check);
      },
      [](const google::protobuf::Message& config,
         int dim) -> std::unique_ptr<OptimizerInterface> {
        return std::make_unique<Opt>(static_cast<const Config&>(config), dim);
      }};
}

// The kinds registered beside the optimizers, one per OptimizerConfig oneof
// case among them all: sgd and the adagrad and ftrl families
// (adagrad_family.cc); adadelta, adam, amsgrad, momentum, moving_average,
// rmsprop, rmspropv2 and batch_softmax (moment_optimizers.cc). dc has
// none (NewOptimizer refuses it).
std::vector<OptimizerKind> AdagradFamilyKinds();
std::vector<OptimizerKind> MomentOptimizerKinds();

}  // namespace optimizer_internal
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERNAL_H_
