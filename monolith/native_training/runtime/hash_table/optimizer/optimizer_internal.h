// Shared pieces of the optimizer implementations: a base class holding the
// dim and name, dump read/write helpers that validate before they copy, and
// the constructors of the concrete optimizers. Configs reaching these
// constructors are already validated by NewOptimizer (optimizer_factory.cc).
//
// Internal to the :optimizer target; use NewOptimizer instead.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERNAL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERNAL_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

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

// Concrete optimizers over |dim| floats (adagrad_family.cc,
// moment_optimizers.cc). No validation here.
std::unique_ptr<OptimizerInterface> NewSgd(int dim);
std::unique_ptr<OptimizerInterface> NewAdagrad(const AdagradOptimizerConfig& c,
                                               int dim);
std::unique_ptr<OptimizerInterface> NewDynamicWdAdagrad(
    const DynamicWdAdagradOptimizerConfig& c, int dim);
std::unique_ptr<OptimizerInterface> NewGroupAdagrad(
    const GroupAdaGradOptimizerConfig& c, int dim);
std::unique_ptr<OptimizerInterface> NewFtrl(const FtrlOptimizerConfig& c,
                                            int dim);
std::unique_ptr<OptimizerInterface> NewGroupFtrl(
    const GroupFtrlOptimizerConfig& c, int dim);
std::unique_ptr<OptimizerInterface> NewAdadelta(
    const AdadeltaOptimizerConfig& c, int dim);
std::unique_ptr<OptimizerInterface> NewAdam(const AdamOptimizerConfig& c,
                                            int dim);
std::unique_ptr<OptimizerInterface> NewAmsgrad(const AmsgradOptimizerConfig& c,
                                               int dim);
std::unique_ptr<OptimizerInterface> NewMomentum(
    const MomentumOptimizerConfig& c, int dim);
std::unique_ptr<OptimizerInterface> NewMovingAverage(
    const MovingAverageOptimizerConfig& c, int dim);
std::unique_ptr<OptimizerInterface> NewRmsprop(const RmspropOptimizerConfig& c,
                                               int dim);
std::unique_ptr<OptimizerInterface> NewRmspropV2(
    const RmspropV2OptimizerConfig& c, int dim);
std::unique_ptr<OptimizerInterface> NewBatchSoftmax(
    const BatchSoftmaxOptimizerConfig& c, int dim);

}  // namespace optimizer_internal
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERNAL_H_
