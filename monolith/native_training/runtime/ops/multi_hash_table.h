// The TF resource that fuses many embedding hash tables (one per feature
// table name) behind one handle. Kernels look it up and call the engine.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_MULTI_HASH_TABLE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_MULTI_HASH_TABLE_H_

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_filter/admission.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/periodic_evictor.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tensorflow {
namespace monolith_tf {

// Maps an engine Status to a TF Status, keeping code and message.
inline Status ToTfStatus(const ::monolith::hash_table::Status& s) {
  using ::monolith::hash_table::StatusCode;
  switch (s.code()) {
    case StatusCode::kOk:
      return OkStatus();
    case StatusCode::kInvalidArgument:
      return errors::InvalidArgument(s.message());
    case StatusCode::kNotFound:
      return errors::NotFound(s.message());
    case StatusCode::kResourceExhausted:
      return errors::ResourceExhausted(s.message());
    case StatusCode::kFailedPrecondition:
      return errors::FailedPrecondition(s.message());
    case StatusCode::kOutOfRange:
      return errors::OutOfRange(s.message());
    case StatusCode::kDataLoss:
      return errors::DataLoss(s.message());
    default:
      return errors::Internal(s.message());
  }
}

// Input validation shared by every kernel: an input of the wrong shape is
// InvalidArgument naming the op's input, never TF's CHECK in
// Tensor::scalar() (which aborts the process) or an out-of-bounds read.

// Reads input |index| of |ctx|, which must be a scalar of type T, into
// *value; |name| is the op's name of the input, used in the error, e.g.
// "global_step must be a scalar, got shape [2]". T = std::string reads a
// string (tstring) scalar.
template <typename T>
Status GetScalarInput(OpKernelContext* ctx, int index, const char* name,
                      T* value) {
  using Stored =
      std::conditional_t<std::is_same_v<T, std::string>, tstring, T>;
  const Tensor& input = ctx->input(index);
  if (input.dtype() != DataTypeToEnum<Stored>::value) {
    return errors::InvalidArgument(
        name, " must be ", DataTypeString(DataTypeToEnum<Stored>::value),
        ", got ", DataTypeString(input.dtype()));
  }
  if (!TensorShapeUtils::IsScalar(input.shape())) {
    return errors::InvalidArgument(name, " must be a scalar, got shape ",
                                   input.shape().DebugString());
  }
  *value = T(input.scalar<Stored>()());
  return OkStatus();
}

// Points *value at input |index| of |ctx|, which must be a vector (rank 1);
// InvalidArgument naming the input (|name|) otherwise.
inline Status GetVectorInput(OpKernelContext* ctx, int index,
                             const char* name, const Tensor** value) {
  const Tensor& input = ctx->input(index);
  if (!TensorShapeUtils::IsVector(input.shape())) {
    return errors::InvalidArgument(name, " must be a vector, got shape ",
                                   input.shape().DebugString());
  }
  *value = &input;
  return OkStatus();
}

// Looks up the resource of the resource input |index| of |ctx|, which must be
// a scalar handle (HandleFromInput reads element 0 of any shape).
template <typename T>
Status LookupResourceInput(OpKernelContext* ctx, int index, const char* name,
                           core::RefCountPtr<T>* resource) {
  const Tensor& input = ctx->input(index);
  if (!TensorShapeUtils::IsScalar(input.shape())) {
    return errors::InvalidArgument(name, " must be a scalar resource handle, "
                                   "got shape ", input.shape().DebugString());
  }
  return LookupResource(ctx, HandleFromInput(ctx, index), resource);
}

// For shape functions: every input of the op, by name, with its rank (0: a
// scalar, 1: a vector), so shapes known when the graph is built fail then
// (InvalidArgument, raised as ValueError by Python), as TF's own ops do.
// Internal error unless |ranks| lists every input once.
inline Status CheckInputRanks(
    shape_inference::InferenceContext* c,
    std::initializer_list<std::pair<const char*, int>> ranks) {
  if (static_cast<int>(ranks.size()) != c->num_inputs()) {
    return errors::Internal("the shape function checks ", ranks.size(),
                            " inputs of ", c->num_inputs());
  }
  for (const auto& [name, rank] : ranks) {
    std::vector<shape_inference::ShapeHandle> inputs;
    TF_RETURN_IF_ERROR(c->input(name, &inputs));
    for (shape_inference::ShapeHandle input : inputs) {
      shape_inference::ShapeHandle unused;
      if (!c->WithRank(input, rank, &unused).ok()) {
        return errors::InvalidArgument(
            name,
            rank == 0   ? " must be a scalar"
            : rank == 1 ? " must be a vector"
                        : " must have rank " + std::to_string(rank),
            ", got shape ", c->DebugString(input));
      }
    }
  }
  return OkStatus();
}

// A hash filter resource (MonolithHashFilter, MonolithProbabilisticFilter,
// MonolithDummyHashFilter): the admission of the tables created with it.
class HashFilterResource : public ResourceBase {
 public:
  explicit HashFilterResource(
      std::unique_ptr<::monolith::hash_filter::Admission> admission)
      : admission_(std::move(admission)) {}
  ::monolith::hash_filter::Admission& admission() const { return *admission_; }
  std::string DebugString() const override {
    const auto& filter = admission_->filter();
    return "HashFilter(capacity " + std::to_string(filter.capacity()) +
           ", splits " + std::to_string(filter.split_num()) + ")";
  }
  int64_t MemoryUsed() const override {
    return static_cast<int64_t>(admission_->filter().MemoryBytes());
  }

 private:
  std::unique_ptr<::monolith::hash_filter::Admission> admission_;
};

class MultiHashTable : public ResourceBase {
 public:
  // One table of the multi table.
  struct Table {
    std::string name;
    std::unique_ptr<::monolith::hash_table::EmbeddingHashTable> table;
  };

  // |filter|: what updates consult before creating an id (held).
  MultiHashTable(std::string shared_name,
                 core::RefCountPtr<HashFilterResource> filter)
      : shared_name_(std::move(shared_name)), filter_(std::move(filter)) {}
  ~MultiHashTable() override {
    // Stops the eviction thread before the tables go.
    evictor_.reset();
  }

  void AddTable(std::string name,
                std::unique_ptr<::monolith::hash_table::EmbeddingHashTable>
                    table) {
    learning_rate_offsets_.push_back(learning_rate_offsets_.back() +
                                     table->SliceSize());
    auto t = std::make_unique<Table>();
    t->name = std::move(name);
    t->table = std::move(table);
    tables_.push_back(std::move(t));
  }

  int size() const { return static_cast<int>(tables_.size()); }
  Table& table(int i) const { return *tables_[i]; }
  // Index of the table named |name|, or -1.
  int Find(const std::string& name) const {
    for (int i = 0; i < size(); ++i) {
      if (tables_[i]->name == name) return i;
    }
    return -1;
  }
  const std::string& shared_name() const { return shared_name_; }

  // What an update of |ids| asks before it creates one of them: the
  // filter's admission (see hash_filter/admission.h); |counts|, when
  // given, holds each id's number of occurrences.
  ::monolith::hash_table::EmbeddingHashTable::AdmitFn AdmitFnFor(
      const int64_t* ids, const uint32_t* counts = nullptr) const {
    return filter_->admission().AdmitFnFor(ids, counts);
  }
  // Where each table's learning rates start in the flat learning-rate
  // input of the optimize ops (one per segment of every table, in table
  // order); the last element is their total.
  const std::vector<int64_t>& learning_rate_offsets() const {
    return learning_rate_offsets_;
  }

  // Evicts, in the background, every table that |targets| names, each on
  // its period, logging what each eviction removed. Call once, after the
  // tables are added.
  void StartPeriodicEviction(
      std::vector<::monolith::hash_table::PeriodicEvictor::Target> targets) {
    if (targets.empty()) return;
    const std::string prefix = "MultiHashTable " + shared_name_ + ": ";
    evictor_ = std::make_unique<::monolith::hash_table::PeriodicEvictor>(
        std::move(targets),
        [prefix](const std::string& line) { LOG(INFO) << prefix << line; });
  }

  std::string DebugString() const override {
    std::string out = "MultiHashTable(" + shared_name_ + ":";
    for (const auto& t : tables_) {
      out += " " + t->name + "=" + t->table->DebugString() + ";";
    }
    return out + ")";
  }

  int64_t MemoryUsed() const override {
    int64_t bytes = 0;
    for (const auto& t : tables_) bytes += t->table->MemoryBytes();
    return bytes;
  }

 private:
  std::string shared_name_;
  core::RefCountPtr<HashFilterResource> filter_;
  std::vector<std::unique_ptr<Table>> tables_;
  std::vector<int64_t> learning_rate_offsets_ = {0};
  // Declared after the tables, which it evicts: destroyed first.
  std::unique_ptr<::monolith::hash_table::PeriodicEvictor> evictor_;
};

// Runs fn(i) for i in [0, n) on TF's CPU worker threads (each item is
// assumed to be heavy) and returns the first error.
inline Status ParallelFor(OpKernelContext* ctx, int64_t n,
                          const std::function<Status(int64_t)>& fn) {
  std::vector<Status> statuses(n);
  const auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  Shard(workers->num_threads, workers->workers, n, /*cost_per_unit=*/1 << 24,
        [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) statuses[i] = fn(i);
        });
  for (const Status& s : statuses) TF_RETURN_IF_ERROR(s);
  return OkStatus();
}

// Checks the flat learning-rate input |learning_rates| (named |name|)
// holds exactly the tables' learning rates (see learning_rate_offsets()).
inline Status CheckLearningRates(const MultiHashTable& mtable,
                                 const Tensor& learning_rates,
                                 const char* name) {
  const int64_t needed = mtable.learning_rate_offsets().back();
  if (learning_rates.NumElements() != needed) {
    return errors::InvalidArgument(name, " has ", learning_rates.NumElements(),
                                   " floats; the tables' optimizers need ",
                                   needed);
  }
  return OkStatus();
}

// FailedPrecondition if a table has SERVING entries (no optimizer state).
inline Status CheckTrainable(const MultiHashTable& mtable) {
  for (int t = 0; t < mtable.size(); ++t) {
    if (mtable.table(t).table->accessor().serving()) {
      return errors::FailedPrecondition(
          "table ", mtable.table(t).name,
          " has SERVING entries, which keep no optimizer state: it cannot be "
          "optimized (tables are created SERVING while exporting)");
    }
  }
  return OkStatus();
}

// Stand-in for the original's parameter-sync client resource: tables are
// created without parameter sync.
class DummySyncClient : public ResourceBase {
 public:
  std::string DebugString() const override { return "DummySyncClient"; }
};

}  // namespace monolith_tf
}  // namespace tensorflow

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_MULTI_HASH_TABLE_H_
