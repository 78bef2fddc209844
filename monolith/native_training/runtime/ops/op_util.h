// What every kernel of the op libraries shares: engine Status to TF
// Status, and input validation that names the op's input (never TF's CHECK
// in Tensor::scalar(), which aborts the process, or an out-of-bounds read).
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_OP_UTIL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_OP_UTIL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "google/protobuf/arena.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/hash_table/update_time.h"
#include "tensorflow/core/framework/node_def_util.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/platform/hash.h"
#include "tensorflow/core/platform/mutex.h"
#include "tensorflow/core/platform/random.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tensorflow {
namespace monolith_tf {

// Maps an engine Status to a TF Status, keeping code and message.
inline Status ToTfStatus(const ::monolith::hash_table::Status& s) {
  if (s.ok()) return OkStatus();
  // The engine's codes are absl's, by number (see status.h).
  return Status(static_cast<absl::StatusCode>(s.code()), s.message());
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

// A path an op reads or writes, |name| being the op's name of it. A NUL
// byte is refused: the file system would end the path there and use
// another file ("model\0.ckpt" saved over "model").
inline Status CheckPath(const std::string& name, const std::string& path) {
  const size_t nul = path.find('\0');
  if (nul == std::string::npos) return OkStatus();
  return errors::InvalidArgument(name, " holds a NUL byte at offset ", nul,
                                 " (after \"", path.substr(0, nul),
                                 "\"): not a path");
}

// Reads input |index|, a scalar string naming a path (CheckPath).
inline Status GetPathInput(OpKernelContext* ctx, int index, const char* name,
                           std::string* path) {
  TF_RETURN_IF_ERROR(GetScalarInput(ctx, index, name, path));
  return CheckPath(name, *path);
}

// An update time (seconds since the epoch) of an op that writes entries:
// a scalar int64 in [0, 2^32), the range entries keep. A time out of range
// (e.g. milliseconds) would become the table's "now" for expiry, and every
// entry would then look expired to saves and eviction. A time more than a
// day ahead of the host's clock is taken (its entries are stamped with
// their table's time, if it has one: StampedUpdateTime), but does not move
// the tables' time (AdvancesTableTime), and is logged.
inline Status GetUpdateTimeInput(OpKernelContext* ctx, int index,
                                 const char* name, int64_t* seconds) {
  TF_RETURN_IF_ERROR(GetScalarInput(ctx, index, name, seconds));
  if (*seconds < 0 || *seconds > ::monolith::hash_table::kMaxUpdateTimeSeconds) {
    return errors::InvalidArgument(
        name, " = ", *seconds,
        " is not a time in seconds in [0, 2^32) (milliseconds?)");
  }
  if (::monolith::hash_table::AheadOfClock(*seconds)) {
    LOG_EVERY_N_SEC(WARNING, 60)
        << ctx->op_kernel().name() << ": " << name << " = " << *seconds
        << " lies more than "
        << ::monolith::hash_table::kMaxUpdateTimeAheadSeconds
        << " s past this host's clock; its entries take their table's "
           "time instead (if it has one), and it does not move the tables' "
           "time, which saves and eviction measure expiry against";
  }
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

// |status| with |prefix| before its message, its code kept (OK stays OK).
inline Status WithPrefix(const std::string& prefix, const Status& status) {
  if (status.ok()) return status;
  return errors::CreateWithUpdatedMessage(
      status, prefix + std::string(status.message()));
}

// Looks up the resource of the resource input |index| of |ctx|, which must be
// a scalar handle (HandleFromInput reads element 0 of any shape); errors
// name the input (|name|): TF's say which resource, not which argument
// (e.g. a filter's handle given as a table's).
template <typename T>
Status LookupResourceInput(OpKernelContext* ctx, int index, const char* name,
                           core::RefCountPtr<T>* resource) {
  const Tensor& input = ctx->input(index);
  if (!TensorShapeUtils::IsScalar(input.shape())) {
    return errors::InvalidArgument(name, " must be a scalar resource handle, "
                                   "got shape ", input.shape().DebugString());
  }
  return WithPrefix(std::string(name) + ": ",
                    LookupResource(ctx, HandleFromInput(ctx, index), resource));
}

// For shape functions: input |name| (a list input: each of its tensors)
// has rank |rank| (0: a scalar, 1: a vector), or at least |rank| with
// |at_least|; InvalidArgument naming it. Adds its tensors to *|count|.
inline Status CheckInputRank(shape_inference::InferenceContext* c,
                             const char* name, int rank, bool at_least = false,
                             int* count = nullptr) {
  std::vector<shape_inference::ShapeHandle> inputs;
  TF_RETURN_IF_ERROR(c->input(name, &inputs));
  if (count != nullptr) *count += static_cast<int>(inputs.size());
  for (shape_inference::ShapeHandle input : inputs) {
    shape_inference::ShapeHandle unused;
    const Status ranked = at_least ? c->WithRankAtLeast(input, rank, &unused)
                                   : c->WithRank(input, rank, &unused);
    if (!ranked.ok()) {
      return errors::InvalidArgument(
          name,
          at_least    ? " must have rank " + std::to_string(rank) + " or more"
          : rank == 0 ? " must be a scalar"
          : rank == 1 ? " must be a vector"
                      : " must have rank " + std::to_string(rank),
          ", got shape ", c->DebugString(input));
    }
  }
  return OkStatus();
}

// For shape functions: every input of the op, by name, with its rank (0: a
// scalar, 1: a vector), so shapes known when the graph is built fail then
// (InvalidArgument, raised as ValueError by Python), as TF's own ops do.
// Internal error unless |ranks| lists every input once (a list input by
// its name, for all its tensors).
inline Status CheckInputRanks(
    shape_inference::InferenceContext* c,
    std::initializer_list<std::pair<const char*, int>> ranks) {
  int checked = 0;
  for (const auto& [name, rank] : ranks) {
    TF_RETURN_IF_ERROR(
        CheckInputRank(c, name, rank, /*at_least=*/false, &checked));
  }
  if (checked != c->num_inputs()) {
    return errors::Internal("the shape function checks ", checked,
                            " inputs of ", c->num_inputs());
  }
  return OkStatus();
}

// OutOfMemoryAsStatus's |what| for work other than a table's growth
// (saves, restores).
inline std::string OutOfMemory() {
  return "out of memory (or of memory mappings: see vm.max_map_count)";
}

// OutOfMemoryAsStatus's |what| for a table (|table|) that could not grow.
inline std::string GrowthOutOfMemory(const std::string& table) {
  return table + " could not grow: " + OutOfMemory();
}

inline std::string TableGrowthOutOfMemory() {
  return GrowthOutOfMemory("a hash table");
}

// Runs |fn| (returning TF's Status or the engine's); a std::bad_alloc it
// throws (a table that cannot grow: out of memory, or of mappings under
// vm.max_map_count) becomes ResourceExhausted of that type, so that no
// exception leaves an op. |what| says what ran out: a string, or a
// function returning it (called only then, so that a call per record
// builds no message). A table allocates before it changes a shard, so
// each shard stays whole; the ids of a batch already applied stay applied,
// as after a failed step.
template <typename Fn, typename What = std::string (*)()>
auto OutOfMemoryAsStatus(const Fn& fn,
                         const What& what = TableGrowthOutOfMemory)
    -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    std::string message;
    if constexpr (std::is_invocable_v<What>) {
      message = what();
    } else {
      message = what;
    }
    if constexpr (std::is_same_v<decltype(fn()),
                                 ::monolith::hash_table::Status>) {
      return ::monolith::hash_table::ResourceExhaustedError(message);
    } else {
      return errors::ResourceExhausted(message);
    }
  }
}

// OutOfMemoryAsStatus's |what| for a lookup_entry (CPU or GPU) of |n| ids.
inline std::string LookupEntryOutOfMemory(int64_t n) {
  return "lookup_entry of " + std::to_string(n) +
         " ids: out of memory for their serialized entries";
}

// Runs fn(i) for i in [0, n) on TF's CPU worker threads (each item is
// assumed to be heavy) and returns the first error; once an item failed,
// items not begun yet are skipped (the call fails anyway: a save's other
// shards need not be written). An item out of memory fails as
// OutOfMemoryAsStatus says, any other exception as Internal: an exception
// on a worker thread would end the process.
inline Status ParallelFor(OpKernelContext* ctx, int64_t n,
                          const std::function<Status(int64_t)>& fn) {
  std::vector<Status> statuses(n);
  std::atomic<bool> failed{false};
  const auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
  Shard(workers->num_threads, workers->workers, n, /*cost_per_unit=*/1 << 24,
        [&](int64_t begin, int64_t end) {
          for (int64_t i = begin;
               i < end && !failed.load(std::memory_order_relaxed); ++i) {
            try {
              statuses[i] = OutOfMemoryAsStatus([&] { return fn(i); });
            } catch (const std::exception& e) {
              statuses[i] = errors::Internal(e.what());
            }
            if (!statuses[i].ok()) {
              failed.store(true, std::memory_order_relaxed);
            }
          }
        });
  for (const Status& s : statuses) TF_RETURN_IF_ERROR(s);
  return OkStatus();
}

// The create op's seed attrs, as TF's random ops take them (seed, seed2:
// both 0 unless a graph-level seed is set).
struct TableSeeds {
  int64_t seed = 0;
  int64_t seed2 = 0;
};

inline Status GetTableSeeds(OpKernelConstruction* ctx, TableSeeds* seeds) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("seed", &seeds->seed));
  return ctx->GetAttr("seed2", &seeds->seed2);
}

// The seed of table |name|'s initializers: drawn at random when both seeds
// are 0 (TF's rule: no graph-level seed), else fixed by the seeds and the
// table's name, so that tables of one graph draw apart and the same graph
// built again draws the same initial values.
inline uint64_t TableSeed(const TableSeeds& seeds, const std::string& name) {
  if (seeds.seed == 0 && seeds.seed2 == 0) return random::New64();
  uint64_t h = Hash64(name);
  h = Hash64Combine(h, static_cast<uint64_t>(seeds.seed));
  return Hash64Combine(h, static_cast<uint64_t>(seeds.seed2));
}

// The base of our kernels that compute (the ones that create resources
// build them in BuildResource, whose engine calls catch out of memory):
// the body (ComputeUnguarded, which reports errors through |ctx|) runs
// under a guard that turns out of memory anywhere in it (its own vectors
// included, sized by its inputs) into ResourceExhausted, and any other
// exception (a bug: the code returns errors) into Internal: no exception
// leaves an op, where it would end the process.
class GuardedOpKernel : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) final {
    try {
      ComputeUnguarded(ctx);
    } catch (const std::bad_alloc&) {
      ctx->CtxFailure(errors::ResourceExhausted(
          type_string(), " ", name(),
          ": out of memory; give the task more memory or send smaller "
          "batches"));
    } catch (const std::exception& e) {
      ctx->CtxFailure(errors::Internal(type_string(), " ", name(), ": ",
                                       e.what()));
    }
  }

 protected:
  virtual void ComputeUnguarded(OpKernelContext* ctx) = 0;
};

// The error of optimizing a table created SERVING (CPU and GPU kernels).
inline Status ServingTableError(const std::string& table_name) {
  return errors::FailedPrecondition(
      "table ", table_name,
      " has SERVING entries, which keep no optimizer state: it cannot be "
      "optimized (tables are created SERVING while exporting)");
}

// Splits of ids per table (and per request): id_split must be
// non-decreasing, start at 0 and end at the number of ids.
inline Status CheckIdSplit(const Tensor& ids, const Tensor& id_split,
                    int64_t expected_size) {
  auto split = id_split.flat<int64_t>();
  if (expected_size >= 0 && split.size() != expected_size) {
    return errors::InvalidArgument("id_split has ", split.size(),
                                   " elements, expected ", expected_size,
                                   " (number of tables + 1)");
  }
  if (split.size() == 0 || split(0) != 0 ||
      split(split.size() - 1) != ids.NumElements()) {
    return errors::InvalidArgument(
        "id_split must start at 0 and end at the number of ids (",
        ids.NumElements(), "), got [",
        split.size() ? split(0) : -1, " .. ",
        split.size() ? split(split.size() - 1) : -1, "]");
  }
  for (int64_t i = 1; i < split.size(); ++i) {
    if (split(i) < split(i - 1)) {
      return errors::InvalidArgument("id_split must be non-decreasing: ",
                                     "id_split[", i, "] = ", split(i),
                                     " < id_split[", i - 1, "] = ",
                                     split(i - 1));
    }
  }
  return OkStatus();
}

// The batch of a per-table update, validated: ids (input 1) split per
// table (id_split, input 2, tables + 1 elements, in host memory) and one
// row of values or gradients (input 3) of each table's dim per id. On a
// device, ids and values point into device memory.
struct UpdateBatch {
  const int64_t* ids = nullptr;
  int64_t num_ids = 0;
  std::vector<int64_t> id_split;       // size: tables + 1
  const float* values = nullptr;
  std::vector<int64_t> value_offsets;  // each table's first value; total

  int64_t ids_of(int t) const { return id_split[t + 1] - id_split[t]; }
};

// Reads inputs 1 (id) and 2 (id_split) of a batch over |tables| tables
// into |in| (not its values).
inline Status ReadUpdateIds(OpKernelContext* ctx, int tables,
                            UpdateBatch* in) {
  const Tensor* ids = nullptr;
  const Tensor* id_split = nullptr;
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 1, "id", &ids));
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 2, "id_split", &id_split));
  TF_RETURN_IF_ERROR(CheckIdSplit(*ids, *id_split, tables + 1));
  auto split = id_split->flat<int64_t>();
  in->id_split.assign(split.data(), split.data() + split.size());
  in->ids = ids->flat<int64_t>().data();
  in->num_ids = ids->NumElements();
  return OkStatus();
}

// Reads inputs 1 to 3 into |in| for tables of |dims| floats;
// |values_name| names input 3 in errors.
inline Status ReadUpdateBatch(OpKernelContext* ctx,
                              const std::vector<int64_t>& dims,
                              const char* values_name, UpdateBatch* in) {
  const Tensor* values = nullptr;
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 3, values_name, &values));
  const int tables = static_cast<int>(dims.size());
  TF_RETURN_IF_ERROR(ReadUpdateIds(ctx, tables, in));
  in->value_offsets.assign(tables + 1, 0);
  for (int t = 0; t < tables; ++t) {
    in->value_offsets[t + 1] = in->value_offsets[t] + in->ids_of(t) * dims[t];
  }
  if (values->NumElements() != in->value_offsets.back()) {
    return errors::InvalidArgument(values_name, " has ", values->NumElements(),
                                   " floats; the ids and table dims need ",
                                   in->value_offsets.back());
  }
  in->values = values->flat<float>().data();
  return OkStatus();
}

// The ids of a lookup of R requests, validated: id (input 1) and id_split
// (input 2, in host memory) with tables * R + 1 elements, request r of
// table t holding ids [id_split[r*T+t], id_split[r*T+t+1]); the output is
// request-major, segment k starting at float offsets[k] (offsets.back():
// the total).
struct LookupBatch {
  const int64_t* ids = nullptr;
  int64_t num_ids = 0;
  std::vector<int64_t> id_split;
  std::vector<int64_t> offsets;  // size: id_split.size()
};

// Reads inputs 1 and 2 into |in| for tables of |dims| floats.
inline Status ReadLookupBatch(OpKernelContext* ctx,
                              const std::vector<int64_t>& dims,
                              LookupBatch* in) {
  const Tensor* ids = nullptr;
  const Tensor* id_split = nullptr;
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 1, "id", &ids));
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 2, "id_split", &id_split));
  const int64_t tables = static_cast<int64_t>(dims.size());
  const int64_t splits = id_split->NumElements();
  if (tables == 0 || splits <= 1 || (splits - 1) % tables != 0) {
    return errors::InvalidArgument("id_split has ", splits,
                                   " elements; it must have ", tables,
                                   " * requests + 1 (", tables, " tables)");
  }
  TF_RETURN_IF_ERROR(CheckIdSplit(*ids, *id_split, -1));
  auto split = id_split->flat<int64_t>();
  in->id_split.assign(split.data(), split.data() + splits);
  in->offsets.assign(splits, 0);
  for (int64_t k = 0; k + 1 < splits; ++k) {
    in->offsets[k + 1] =
        in->offsets[k] + (in->id_split[k + 1] - in->id_split[k]) *
                             dims[k % tables];
  }
  in->ids = ids->flat<int64_t>().data();
  in->num_ids = ids->NumElements();
  return OkStatus();
}

// The global step, input |index|: an int64 scalar >= 0. A negative one
// would reach the optimizers as a step (warmup would scale the learning
// rate to 0 while the accumulators grow; batch_softmax would skip the id).
inline Status GetGlobalStepInput(OpKernelContext* ctx, int index,
                                 int64_t* global_step) {
  TF_RETURN_IF_ERROR(GetScalarInput(ctx, index, "global_step", global_step));
  if (*global_step < 0) {
    return errors::InvalidArgument("global_step must be >= 0 (the training "
                                   "step), got ", *global_step);
  }
  return OkStatus();
}

// The rest of MonolithMultiHashTableOptimize's inputs: learning_rate (4,
// a vector), update_time (5) and global_step (6) scalars.
struct OptimizeScalars {
  const Tensor* learning_rates = nullptr;
  int64_t update_time = 0;
  int64_t global_step = 0;
};

// Reads learning_rate, update_time and global_step, inputs |first| (4 in
// the ops of one value tensor) to |first| + 2.
inline Status ReadOptimizeScalars(OpKernelContext* ctx, OptimizeScalars* in,
                                  int first = 4) {
  TF_RETURN_IF_ERROR(
      GetVectorInput(ctx, first, "learning_rate", &in->learning_rates));
  TF_RETURN_IF_ERROR(
      GetUpdateTimeInput(ctx, first + 1, "update_time", &in->update_time));
  return GetGlobalStepInput(ctx, first + 2, &in->global_step);
}

// Parses the create ops' config, a MultiEmbeddingHashTableConfig (Config):
// at least one table (a save of none could not be restored: its meta files
// would hold no table record), one table config per name, and each name
// once (names identify tables in lookups, saves and restores).
template <typename Config>
Status ParseMultiTableConfig(const std::string& serialized, Config* config) {
  if (!config->ParseFromString(serialized)) {
    return errors::InvalidArgument(
        "config is not a serialized MultiEmbeddingHashTableConfig");
  }
  if (config->names_size() != config->configs_size()) {
    return errors::InvalidArgument("config has ", config->names_size(),
                                   " names but ", config->configs_size(),
                                   " table configs");
  }
  if (config->names_size() == 0) {
    return errors::InvalidArgument(
        "config has no table; a multi hash table holds at least one");
  }
  std::unordered_map<std::string, int> first;
  for (int i = 0; i < config->names_size(); ++i) {
    const auto [it, inserted] = first.emplace(config->names(i), i);
    if (!inserted) {
      return errors::InvalidArgument(
          "config names table \"", config->names(i), "\" twice (tables ",
          it->second, " and ", i,
          "); names identify tables in lookups and checkpoints");
    }
  }
  return OkStatus();
}

// A create op's config (ParseMultiTableConfig) on an arena of its own: a
// parse cut short by std::bad_alloc leaves protobuf messages that crash
// when cleared or destroyed, and an arena is dropped whole.
template <typename Config>
class ParsedTableConfig {
 public:
  // Parses |serialized|; after an error (or a throw), holds no config.
  Status Parse(const std::string& serialized) {
    config_ = nullptr;
    arena_ = std::make_unique<google::protobuf::Arena>();
    Config* config = google::protobuf::Arena::Create<Config>(arena_.get());
    TF_RETURN_IF_ERROR(ParseMultiTableConfig(serialized, config));
    config_ = config;
    return OkStatus();
  }

  // The config Parse read; only after it returned OK.
  const Config& operator*() const { return *config_; }
  const Config* operator->() const { return config_; }

 private:
  std::unique_ptr<google::protobuf::Arena> arena_;
  const Config* config_ = nullptr;
};

// Clears from |config| (a MultiEmbeddingHashTableConfig) what a live table
// does not read again: each table's initial_capacity (read when it is
// made) and every optimizer's learning_rate field (the rates come with
// each update, from the graph's learning_rate_fns).
template <typename Config>
void ClearFieldsReadOnlyAtCreation(Config* config) {
  for (auto& table : *config->mutable_configs()) {
    table.clear_initial_capacity();
    for (auto& segment : *table.mutable_entry_config()->mutable_segments()) {
      google::protobuf::Message* opt = segment.mutable_opt_config();
      std::vector<const google::protobuf::FieldDescriptor*> set;
      opt->GetReflection()->ListFields(*opt, &set);
      for (const google::protobuf::FieldDescriptor* field : set) {
        if (field->cpp_type() !=
                google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE ||
            field->is_repeated()) {
          continue;
        }
        google::protobuf::Message* optimizer =
            opt->GetReflection()->MutableMessage(opt, field);
        const google::protobuf::FieldDescriptor* rate =
            optimizer->GetDescriptor()->FindFieldByName("learning_rate");
        if (rate != nullptr) {
          optimizer->GetReflection()->ClearField(optimizer, rate);
        }
      }
    }
  }
}

// Checks that an existing multi table, created from |existing| (its config,
// serialized), serves a create op whose config is |wanted|. A PS keeps its
// tables while chiefs and workers come and go, so a graph built from
// another config finds them by shared name; tables are addressed by
// position, and the other config's tables would silently take other
// slots' ids and gradients. Fields a live table does not read again
// (ClearFieldsReadOnlyAtCreation) may differ: a rolling update of the
// workers' binary with another learning_rate field or initial_capacity
// would otherwise stop every worker whose graph is new until the PS tasks
// restart.
template <typename Config>
Status CheckCreatedFromSameConfig(const std::string& shared_name,
                                  const std::string& existing,
                                  const Config& wanted) {
  if (existing == wanted.SerializeAsString()) return OkStatus();
  // Messages on an arena: one cut short by std::bad_alloc (which the
  // kernel turns into ResourceExhausted) is dropped whole (see
  // ParsedTableConfig).
  google::protobuf::Arena arena;
  Config& made = *google::protobuf::Arena::Create<Config>(&arena);
  std::string detail = "its config cannot be read";
  if (made.ParseFromString(existing)) {
    // Compared, and a difference named, without what may differ.
    ClearFieldsReadOnlyAtCreation(&made);
    Config& compared = *google::protobuf::Arena::Create<Config>(&arena);
    compared.CopyFrom(wanted);
    ClearFieldsReadOnlyAtCreation(&compared);
    if (made.SerializeAsString() == compared.SerializeAsString()) {
      return OkStatus();
    }
    const auto names = [](const Config& c) {
      std::string out;
      for (const auto& name : c.names()) {
        out += (out.empty() ? "\"" : ", \"") + name + "\"";
      }
      return "[" + out + "]";
    };
    detail = "it has tables " + names(made) + ", this graph's config " +
             names(compared);
    // Element by element: names may hold the separator ("a, b" + "c").
    if (std::equal(made.names().begin(), made.names().end(),
                   compared.names().begin(), compared.names().end())) {
      const int configs =
          std::min(made.configs_size(), compared.configs_size());
      for (int i = 0; i < configs; ++i) {
        if (made.configs(i).SerializeAsString() !=
            compared.configs(i).SerializeAsString()) {
          const auto brief = [](const auto& m) {
            const std::string s = m.ShortDebugString();
            return s.size() <= 300 ? s : s.substr(0, 300) + "...";
          };
          detail = "table " + compared.names(i) + " was made from {" +
                   brief(made.configs(i)) + "}, this graph's config is {" +
                   brief(compared.configs(i)) + "}";
          break;
        }
      }
    }
  }
  return errors::FailedPrecondition(
      "MultiHashTable ", shared_name,
      " exists already (made by another graph or session, e.g. on a PS task "
      "that kept running) from another config: ", detail,
      ". Restart the tasks that hold it (another name_suffix for this "
      "graph's tables would keep the old tables, and their memory, on those "
      "tasks until they restart)");
}

// A ResourceOpKernel that builds its resource (BuildResource) before it asks
// the device's ResourceMgr for it. The manager runs a creator under its own
// lock, which every resource lookup of the device takes (each variable
// read, each table op), and building a table or a filter can take seconds
// (its memory is allocated and written at once): built outside, the
// creator only hands it over, or it is dropped when another kernel created
// the resource meanwhile (two kernels creating one resource at once may
// each build it: twice its memory until one is dropped). A resource private
// to the kernel (no shared_name: a name is drawn each time) is built in the
// creator.
template <typename T>
class PrebuiltResourceOpKernel : public ResourceOpKernel<T> {
 public:
  using ResourceOpKernel<T>::ResourceOpKernel;

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, BuildUnlessFound(ctx));
    ResourceOpKernel<T>::Compute(ctx);
    mutex_lock l(this->mu_);
    built_.reset();
  }

 protected:
  // Builds the resource: a new reference in *resource (unreferenced by the
  // caller on error, when not null).
  virtual Status BuildResource(T** resource)
      TF_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) = 0;

 private:
  Status BuildUnlessFound(OpKernelContext* ctx) {
    if (this->get_resource() != nullptr) return OkStatus();
    mutex_lock l(this->mu_);
    // Built by an overlapping call of this kernel, not handed over yet.
    if (built_ != nullptr) return OkStatus();
    ResourceMgr* manager = ctx->resource_manager();
    TF_RETURN_IF_ERROR(this->cinfo_.Init(manager, this->def()));
    if (this->cinfo_.resource_is_private_to_kernel()) return OkStatus();
    T* found = nullptr;
    if (manager->Lookup<T>(this->cinfo_.container(), this->cinfo_.name(),
                           &found)
            .ok()) {
      found->Unref();
      return OkStatus();
    }
    T* built = nullptr;
    const Status s = BuildGuarded(&built);
    if (!s.ok()) {
      if (built != nullptr) built->Unref();
      return s;
    }
    built_.reset(built);
    return OkStatus();
  }

  Status CreateResource(T** resource) final
      TF_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    if (built_ == nullptr) return BuildGuarded(resource);
    *resource = built_.release();
    return OkStatus();
  }

  // BuildResource, with std::bad_alloc as ResourceExhausted: a resource of
  // many tables allocates a little per table before any table's slots, and
  // an exception must not cross TF's frames (the ResourceMgr's creator
  // runs under its lock).
  Status BuildGuarded(T** resource) TF_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    *resource = nullptr;
    return OutOfMemoryAsStatus(
        [&] { return BuildResource(resource); },
        [&] { return "creating " + NameForErrors() + ": " + OutOfMemory(); });
  }

 protected:
  // The resource's name, also before cinfo_ is set up (the shared_name
  // attr, or the node's name for a resource private to the kernel).
  std::string NameForErrors() const {
    std::string shared_name;
    if (GetNodeAttr(this->def(), "shared_name", &shared_name).ok() &&
        !shared_name.empty()) {
      return shared_name;
    }
    return this->name();
  }

 private:
  core::RefCountPtr<T> built_ TF_GUARDED_BY(this->mu_);
};

// A ResourceOpKernel whose resource depends on input tensors, not only on
// attrs. ResourceOpKernel finds (and verifies) its resource on a kernel's
// first call only, and later calls may feed other inputs, so this one runs
// calls one at a time, reads each call's inputs (ReadInputs, which stores
// them under mu_ for BuildResource) and verifies the resource on every
// call (VerifyInputs). Each call's inputs are released when it ends
// (ReleaseInputs): a kernel lives as long as its graph (in eager mode, as
// long as the process), and a resource it kept would outlive its deletion.
template <typename T>
class InputDependentResourceOpKernel : public PrebuiltResourceOpKernel<T> {
 public:
  using PrebuiltResourceOpKernel<T>::PrebuiltResourceOpKernel;

  void Compute(OpKernelContext* ctx) override {
    mutex_lock call(call_mu_);
    const Status read = OutOfMemoryAsStatus(
        [&] { return ReadInputs(ctx); }, [&] {
          return "reading the inputs of " + this->NameForErrors() + ": " +
                 OutOfMemory();
        });
    if (read.ok()) {
      ComputeWithInputs(ctx);
    } else {
      ctx->CtxFailureWithWarning(__FILE__, __LINE__, read);
    }
    mutex_lock l(this->mu_);
    ReleaseInputs();
  }

 protected:
  // Reads this call's inputs into the kernel (taking mu_ to store them).
  virtual Status ReadInputs(OpKernelContext* ctx) = 0;
  // Whether |resource|, which exists already, serves this call's inputs.
  virtual Status VerifyInputs(T* resource) = 0;
  // Drops what ReadInputs stored that holds other resources.
  virtual void ReleaseInputs() TF_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) = 0;

 private:
  void ComputeWithInputs(OpKernelContext* ctx) {
    PrebuiltResourceOpKernel<T>::Compute(ctx);
    if (!ctx->status().ok()) return;
    core::RefCountPtr<T> resource = this->get_resource();
    if (resource == nullptr) return;
    mutex_lock l(this->mu_);
    OP_REQUIRES_OK(ctx, VerifyGuarded(resource.get()));
  }

  // TF's ResourceOpKernel calls it (under mu_) on the kernel's first call.
  Status VerifyResource(T* resource) final { return VerifyGuarded(resource); }

  // VerifyInputs, with std::bad_alloc as ResourceExhausted.
  Status VerifyGuarded(T* resource) TF_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    return OutOfMemoryAsStatus([&] { return VerifyInputs(resource); }, [&] {
      return "comparing " + this->NameForErrors() +
             " with this call's inputs: " + OutOfMemory();
    });
  }

  mutex call_mu_;
};

// A handle to the resource named by the op's shared_name attr, of type T
// (ReadMonolithMultiHashTable): creation and use are separate ops.
template <typename T>
class ReadResourceHandleOp : public OpKernel {
 public:
  explicit ReadResourceHandleOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    // Without one, TF draws a name of the kernel's own: a handle to
    // nothing, which every op given it would fail on, far from here.
    std::string shared_name;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("shared_name", &shared_name));
    OP_REQUIRES(ctx, !shared_name.empty(),
                errors::InvalidArgument(
                    "shared_name must name the table to read (the "
                    "shared_name its create op was given)"));
  }

  void Compute(OpKernelContext* ctx) override {
    mutex_lock l(mu_);
    if (cinfo_.name().empty()) {
      OP_REQUIRES_OK(ctx, cinfo_.Init(ctx->resource_manager(), def()));
    }
    OP_REQUIRES_OK(ctx, MakeResourceHandleToOutput(ctx, 0, cinfo_.container(),
                                                   cinfo_.name(),
                                                   TypeIndex::Make<T>()));
  }

 private:
  mutex mu_;
  ContainerInfo cinfo_ TF_GUARDED_BY(mu_);
};

// Whether input 0's resource (of type T) exists (IsHashTableInitialized).
// Only a resource not found is "not initialized": a handle of another type
// or device is the caller's error, not a table still to create.
template <typename T>
class IsResourceInitializedOp : public OpKernel {
 public:
  explicit IsResourceInitializedOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& handle = ctx->input(0);
    OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(handle.shape()),
                errors::InvalidArgument(
                    "handle must be a scalar resource handle, got shape ",
                    handle.shape().DebugString()));
    core::RefCountPtr<T> resource;
    const Status lookup =
        LookupResource(ctx, HandleFromInput(ctx, 0), &resource);
    OP_REQUIRES(ctx, lookup.ok() || errors::IsNotFound(lookup), lookup);
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {}, &out));
    out->scalar<bool>()() = lookup.ok();
  }
};

// Creates a T with its default constructor (the dummy filter and sync
// client).
template <typename T>
class DummyResourceOp : public ResourceOpKernel<T> {
 public:
  explicit DummyResourceOp(OpKernelConstruction* ctx)
      : ResourceOpKernel<T>(ctx) {}

 private:
  Status CreateResource(T** resource) override {
    *resource = new T();  // never fails
    return OkStatus();
  }
};

// Id and embedding offsets of every (shard, table) segment, and the
// embedding floats of each shard.
struct FusedLayout {
  std::vector<int32_t> id_offsets;   // T * S + 1
  std::vector<int32_t> emb_offsets;  // T * S + 1
  std::vector<int32_t> emb_splits;   // S
};

// The fused ops' num_of_shards attr, in [1, 2^16]: far above any PS count,
// it bounds what the layout allocates per shard.
inline Status CheckFusedShards(int64_t num_shards) {
  constexpr int kMaxFusedShards = 1 << 16;
  if (num_shards <= 0 || num_shards > kMaxFusedShards) {
    return errors::InvalidArgument("num_of_shards must be in [1, ",
                                   kMaxFusedShards, "], got ", num_shards);
  }
  return OkStatus();
}

// The fused ops' shape check of fused_slot_size (input |index|), one size
// per (shard, table): where its length is known, a multiple of the shards.
inline Status CheckFusedSlotSizeShape(shape_inference::InferenceContext* c,
                                      int index, int num_shards) {
  TF_RETURN_IF_ERROR(CheckFusedShards(num_shards));
  const shape_inference::DimensionHandle sizes = c->Dim(c->input(index), 0);
  if (c->ValueKnown(sizes) && c->Value(sizes) % num_shards != 0) {
    return errors::InvalidArgument(
        "fused_slot_size has ", c->Value(sizes), " elements, not a multiple "
        "of num_of_shards (", num_shards, "): it holds one size per (shard, "
        "table)");
  }
  return OkStatus();
}

// The layout of the fused ops' ids (shard-major: shard 0's tables 0 ..
// T-1, then shard 1's, ...; segment s * T + t holds slot_sizes[s * T + t]
// ids) for tables of embedding floats |dims|; InvalidArgument naming what
// does not fit.
inline Status ComputeFusedLayout(const std::vector<int64_t>& dims,
                                 const Tensor& slot_sizes, int64_t num_ids,
                                 int num_shards, FusedLayout* layout) {
  const int num_tables = static_cast<int>(dims.size());
  TF_RETURN_IF_ERROR(CheckFusedShards(num_shards));
  if (slot_sizes.NumElements() != int64_t{num_tables} * num_shards) {
    return errors::InvalidArgument(
        "fused_slot_size has ", slot_sizes.NumElements(),
        " elements; expected tables (", num_tables, ") * shards (",
        num_shards, ") = ", int64_t{num_tables} * num_shards);
  }
  auto sizes = slot_sizes.flat<int32_t>();
  layout->id_offsets.assign(sizes.size() + 1, 0);
  layout->emb_offsets.assign(sizes.size() + 1, 0);
  layout->emb_splits.assign(num_shards, 0);
  int64_t ids = 0, floats = 0;
  for (int s = 0; s < num_shards; ++s) {
    const int64_t shard_start = floats;
    for (int t = 0; t < num_tables; ++t) {
      const int64_t k = int64_t{s} * num_tables + t;
      if (sizes(k) < 0) {
        return errors::InvalidArgument("fused_slot_size[", k, "] is negative: ",
                                       sizes(k));
      }
      ids += sizes(k);
      floats += int64_t{sizes(k)} * dims[t];
      if (floats > std::numeric_limits<int32_t>::max()) {
        return errors::InvalidArgument(
            "fused_slot_size[", k, "] = ", sizes(k), " (table ", t, ", dim ",
            dims[t], ") brings the fused embeddings to ", floats,
            " floats, over 2^31 - 1; split the batch");
      }
      layout->id_offsets[k + 1] = static_cast<int32_t>(ids);
      layout->emb_offsets[k + 1] = static_cast<int32_t>(floats);
    }
    layout->emb_splits[s] = static_cast<int32_t>(floats - shard_start);
  }
  if (ids != num_ids) {
    return errors::InvalidArgument("fused_slot_size sums to ", ids,
                                   " ids but ids has ", num_ids);
  }
  return OkStatus();
}

// The fused optimize's id_offsets and grad_offsets must be the ones the
// fused lookup returned for the same fused_slot_size.
inline Status CheckFusedOffsets(const Tensor& id_offsets,
                                const Tensor& grad_offsets,
                                const FusedLayout& layout) {
  for (const auto& [input, expected, name] :
       {std::make_tuple(&id_offsets, &layout.id_offsets, "id_offsets"),
        std::make_tuple(&grad_offsets, &layout.emb_offsets, "grad_offsets")}) {
    auto given = input->flat<int32_t>();
    if (given.size() != static_cast<int64_t>(expected->size()) ||
        !std::equal(expected->begin(), expected->end(), given.data())) {
      return errors::InvalidArgument(
          name, " does not match fused_slot_size and the table dims; pass "
          "the offsets the fused lookup returned");
    }
  }
  return OkStatus();
}

// The inputs of the fused optimize (CPU and GPU kernels), validated: ids
// (1), indices (2, unused: the fused lookup's passthrough of ids, but
// checked), fused_slot_size (3), id_grads (4), id_offsets (5) and
// grad_offsets (6) as the fused lookup returned them, learning_rate_tensors
// (7), req_time (8) and global_step (9).
struct FusedOptimizeInputs {
  const Tensor* ids = nullptr;
  const Tensor* grads = nullptr;
  const Tensor* learning_rates = nullptr;
  int64_t update_time = 0;
  int64_t global_step = 0;
  FusedLayout layout;
};

// Reads them into |in| for tables of |dims| floats over |num_shards|.
inline Status ReadFusedOptimizeInputs(OpKernelContext* ctx,
                                      const std::vector<int64_t>& dims,
                                      int num_shards,
                                      FusedOptimizeInputs* in) {
  const Tensor* indices = nullptr;
  const Tensor* slot_sizes = nullptr;
  const Tensor* id_offsets = nullptr;
  const Tensor* grad_offsets = nullptr;
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 1, "ids", &in->ids));
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 2, "indices", &indices));
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 3, "fused_slot_size", &slot_sizes));
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 4, "id_grads", &in->grads));
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 5, "id_offsets", &id_offsets));
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 6, "grad_offsets", &grad_offsets));
  if (indices->NumElements() != in->ids->NumElements()) {
    return errors::InvalidArgument(
        "indices has ", indices->NumElements(), " elements, ids ",
        in->ids->NumElements(), "; pass the indices the fused lookup "
        "returned");
  }
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 7, "learning_rate_tensors",
                                    &in->learning_rates));
  TF_RETURN_IF_ERROR(GetUpdateTimeInput(ctx, 8, "req_time", &in->update_time));
  TF_RETURN_IF_ERROR(GetGlobalStepInput(ctx, 9, &in->global_step));
  TF_RETURN_IF_ERROR(ComputeFusedLayout(dims, *slot_sizes,
                                        in->ids->NumElements(), num_shards,
                                        &in->layout));
  TF_RETURN_IF_ERROR(CheckFusedOffsets(*id_offsets, *grad_offsets, in->layout));
  if (in->grads->NumElements() != in->layout.emb_offsets.back()) {
    return errors::InvalidArgument(
        "id_grads has ", in->grads->NumElements(),
        " floats; the ids and table dims need ", in->layout.emb_offsets.back());
  }
  return OkStatus();
}

// A kernel's large float vector output, written into the buffer of the
// kernel's previous run when nothing holds that buffer any more. A fresh
// buffer of megabytes comes from pages the allocator (glibc) gave back to
// the system: the kernel's first write to each 4 KiB page faults, about
// 1,000-1,900 faults (0.5-2 ms of system time on this VM) for a lookup of
// 65,536 ids at dim 64. Holding the buffer costs its memory (up to 4x the
// current output) and a copy where Python fetches the output (session.run
// cannot take over a buffer the kernel holds). Runs of smaller outputs let
// the buffer go: one huge batch must not hold its memory for the kernel's
// life, and an occasional small batch between large ones keeps it.
class ReusedFloatOutput {
 public:
  // Outputs below this size come from the allocator's recycled memory.
  static constexpr int64_t kMinFloats = 64 * 1024;
  // Small outputs in a row after which the kept buffer goes.
  static constexpr int kSmallRunsToRelease = 8;

  // Sets output |index| of |ctx| to a [n] float vector and points *out at it.
  Status Allocate(OpKernelContext* ctx, int index, int64_t n, Tensor** out) {
    return Allocate(ctx, index, TensorShape({n}), out);
  }

  // The same for a float tensor of |shape|.
  Status Allocate(OpKernelContext* ctx, int index, const TensorShape& shape,
                  Tensor** out) {
    const int64_t n = shape.num_elements();
    if (n < kMinFloats) {
      Tensor released;  // Freed after the lock is let go.
      {
        mutex_lock lock(mu_);
        if (kept_.IsInitialized() && ++small_runs_ >= kSmallRunsToRelease) {
          std::swap(released, kept_);
        }
      }
      return ctx->allocate_output(index, shape, out);
    }
    Tensor reused;
    {
      mutex_lock lock(mu_);
      small_runs_ = 0;
      // Only this kernel holds the buffer (the run that had it and what it
      // fed are done), it fits, and it is not much larger than needed.
      if (!kept_.IsInitialized() || !kept_.RefCountIsOne() ||
          kept_.NumElements() < n || kept_.NumElements() / 4 > n) {
        TF_RETURN_IF_ERROR(ctx->allocate_temp(DT_FLOAT, {n}, &kept_));
      }
      // The same buffer, of |shape| (CopyFrom shares it).
      if (!reused.CopyFrom(kept_.Slice(0, n), shape)) {
        return errors::Internal("cannot view ", n, " floats as ",
                                shape.DebugString());
      }
    }
    ctx->set_output(index, reused);
    *out = ctx->mutable_output(index);
    return OkStatus();
  }

 private:
  mutex mu_;
  Tensor kept_ TF_GUARDED_BY(mu_);
  int small_runs_ TF_GUARDED_BY(mu_) = 0;
};

// Sets output |index| to the int32 vector |values| (the fused lookup's
// offset outputs, host memory on every device); an allocation that fails
// is an error, not a write through null.
inline Status OutputInt32Vector(OpKernelContext* ctx, int index,
                                const std::vector<int32_t>& values) {
  Tensor* out = nullptr;
  TF_RETURN_IF_ERROR(ctx->allocate_output(
      index, TensorShape({static_cast<int64_t>(values.size())}), &out));
  std::copy(values.begin(), values.end(), out->flat<int32_t>().data());
  return OkStatus();
}

}  // namespace monolith_tf
}  // namespace tensorflow

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_OP_UTIL_H_
