// Multi hash table ops: create/read the resource, lookups and updates. Each
// kernel validates its inputs (shapes first, then sizes: InvalidArgument
// naming the input, with the numbers) and calls the engine; nothing here
// knows entry layouts or optimizers.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/host_memory.h"
#include "monolith/native_training/runtime/ops/multi_hash_table.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/env_time.h"
#include "tensorflow/core/platform/mutex.h"
#include "tensorflow/core/platform/random.h"

namespace tensorflow {
namespace monolith_tf {
namespace {

using ::monolith::hash_table::EmbeddingHashTable;
using ::monolith::hash_table::MultiEmbeddingHashTableConfig;

// The table of input 0, held shared for the call.
Status GetTable(OpKernelContext* ctx, HeldMultiHashTable* t) {
  return HoldMultiHashTable(ctx, 0, /*exclusive=*/false, t);
}

// The ids and id_split vectors, inputs 1 and 2 of lookups and updates.
Status GetIdsAndSplit(OpKernelContext* ctx, const Tensor** ids,
                      const Tensor** id_split) {
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 1, "id", ids));
  return GetVectorInput(ctx, 2, "id_split", id_split);
}

class CreateMultiHashTableOp
    : public InputDependentResourceOpKernel<MultiHashTable> {
 public:
  explicit CreateMultiHashTableOp(OpKernelConstruction* ctx)
      : InputDependentResourceOpKernel<MultiHashTable>(ctx) {
    OP_REQUIRES_OK(ctx, GetTableSeeds(ctx, &seeds_));
  }

 private:
  Status ReadInputs(OpKernelContext* ctx) override {
    std::string serialized;
    TF_RETURN_IF_ERROR(GetScalarInput(ctx, 0, "config", &serialized));
    core::RefCountPtr<HashFilterResource> filter;
    TF_RETURN_IF_ERROR(
        LookupResourceInput(ctx, 1, "filter_handle", &filter));
    core::RefCountPtr<DummySyncClient> sync_client;
    TF_RETURN_IF_ERROR(
        LookupResourceInput(ctx, 2, "sync_client_handle", &sync_client));
    mutex_lock l(mu_);
    TF_RETURN_IF_ERROR(config_.Parse(serialized));
    filter_ = std::move(filter);
    return OkStatus();
  }

  Status VerifyInputs(MultiHashTable* resource) override
      TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    TF_RETURN_IF_ERROR(CheckCreatedFromSameConfig(
        cinfo_.name(), resource->created_from(), *config_));
    // Two dummy filters admit alike (every id; no state): a graph naming
    // its dummies otherwise (hash_filters=None, create_hash_filters(n,
    // False)) may use the table.
    const std::string& made_by = filter_->created_by();  // op, then attrs
    const bool both_dummies =
        resource->filter()->created_by() == made_by &&
        made_by.substr(0, made_by.find('\n')) == "MonolithDummyHashFilter";
    if (resource->filter() != filter_.get() && !both_dummies) {
      // Its updates would consult the filter it was made with, not this
      // graph's (e.g. a dummy filter after admission was turned on).
      return errors::FailedPrecondition(
          "MultiHashTable ", cinfo_.name(),
          " exists already (made by another graph or session, e.g. on a PS "
          "task that kept running) with another hash filter than this "
          "graph's filter_handle (", filter_->DebugString(),
          "). Restart the tasks that hold it (another name_suffix for this "
          "graph's tables would keep the old tables, and their memory, on "
          "those tasks until they restart)");
    }
    return OkStatus();
  }

  // The filter is deleted with its resource, not when this kernel goes.
  void ReleaseInputs() override TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    filter_.reset();
  }

  Status BuildResource(MultiHashTable** resource) override
      TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Unreferenced on error when not null (PrebuiltResourceOpKernel).
    *resource = nullptr;
    // Resources are reference counted: release with Unref, never delete.
    // The table holds a reference of its own (VerifyInputs compares).
    core::RefCountPtr<MultiHashTable> mtable(
        new MultiHashTable(cinfo_.name(), config_->SerializeAsString(),
                           filter_.GetNewRef()));
    // Each table's slots are allocated (and written) at once: initial
    // capacities past this machine's memory are refused, rather than the
    // process killed.
    uint64_t slot_bytes = 0;
    for (int i = 0; i < config_->configs_size(); ++i) {
      const uint64_t capacity = config_->configs(i).initial_capacity();
      const Status s =
          ToTfStatus(EmbeddingHashTable::CheckInitialCapacity(capacity));
      if (!s.ok()) {
        return errors::InvalidArgument("table ", config_->names(i), ": ",
                                       s.message());
      }
      // Saturating: 2^25 tables of 2^39 bytes each would wrap to 0.
      slot_bytes += std::min(EmbeddingHashTable::InitialSlotBytes(capacity),
                             std::numeric_limits<uint64_t>::max() -
                                 slot_bytes);
    }
    const uint64_t memory = ::monolith::hash_table::UsableMemoryBytes();
    if (slot_bytes > memory) {
      const std::string reserved =
          slot_bytes == std::numeric_limits<uint64_t>::max()
              ? std::string("over 2^64")
              : std::to_string(slot_bytes);
      return errors::ResourceExhausted(
          "MultiHashTable ", cinfo_.name(), ": the tables' initial_capacity "
          "reserves ", reserved, " bytes of slots, more than the ", memory,
          " bytes of memory this process may use; tables grow as ids come, "
          "so a smaller initial_capacity only costs some growth");
    }
    std::vector<::monolith::hash_table::PeriodicEvictor::Target> evicted;
    for (int i = 0; i < config_->names_size(); ++i) {
      const auto& config = config_->configs(i);
      if (config.has_gpucuco()) {
        // Placed on a CPU after all (no CUDA kernels, or soft placement):
        // never a CPU table in its stead.
        return errors::InvalidArgument(
            "table ", config_->names(i), " is a gpucuco table, but its "
            "creation runs on a CPU: it needs the op library built with "
            "--config=cuda and a GPU (see docs/gpu.md)");
      }
      std::unique_ptr<EmbeddingHashTable> table;
      Status s = ToTfStatus(
          EmbeddingHashTable::Create(
              config, TableSeed(seeds_, config_->names(i)), &table));
      TF_RETURN_IF_ERROR(WithPrefix("table " + config_->names(i) + ": ", s));
      const std::string zero_expire_times =
          ::monolith::hash_table::DescribeZeroExpireTimes(
              config.slot_expire_time_config());
      if (!zero_expire_times.empty() && !table->accessor().serving()) {
        LOG(WARNING) << "MultiHashTable " << cinfo_.name() << ", table "
                     << config_->names(i) << ": " << zero_expire_times;
      }
      // As the original: SERVING tables never evict.
      if (config.enable_feature_eviction() &&
          !table->accessor().serving()) {
        const Status period = ToTfStatus(::monolith::hash_table::
            CheckEvictPeriodHours(config.feature_evict_every_n_hours()));
        if (!period.ok()) {
          return errors::InvalidArgument("table ", config_->names(i), ": ",
                                         period.message());
        }
        evicted.push_back(::monolith::hash_table::EvictTarget(
            config_->names(i), table.get(),
            std::chrono::hours(config.feature_evict_every_n_hours())));
      }
      mtable->AddTable(config_->names(i), std::move(table));
    }
    TF_RETURN_IF_ERROR(mtable->StartPeriodicEviction(std::move(evicted)));
    *resource = mtable.release();
    return OkStatus();
  }

  TableSeeds seeds_;
  ParsedTableConfig<MultiEmbeddingHashTableConfig> config_ TF_GUARDED_BY(mu_);
  // The filter of this call's graph, during the call: the table made from
  // it holds it too.
  core::RefCountPtr<HashFilterResource> filter_ TF_GUARDED_BY(mu_);
};

// The list input |name| of the ops that take one tensor per table.
Status GetTablesInputList(OpKernelContext* ctx, const char* name, int tables,
                          OpInputList* list) {
  TF_RETURN_IF_ERROR(ctx->input_list(name, list));
  if (list->size() != tables) {
    return errors::InvalidArgument(name, " has ", list->size(),
                                   " tensors; the table has ", tables,
                                   " tables");
  }
  return OkStatus();
}

// Embeddings of several requests: id_split has num_tables * R + 1 entries,
// request r of table t holding ids [id_split[r*T+t], id_split[r*T+t+1]).
// The output is request-major: request 0's tables in order, then request 1's.
class MultiHashTableLookupOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableLookupOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx, GetTable(ctx, &mtable));
    const int num_tables = mtable->size();
    LookupBatch in;
    OP_REQUIRES_OK(ctx, ReadLookupBatch(ctx, mtable->dims(), &in));
    Tensor* out;
    OP_REQUIRES_OK(ctx, output_.Allocate(ctx, 0, in.offsets.back(), &out));
    float* embeddings = out->flat<float>().data();
    const std::vector<int64_t>& split = in.id_split;
    // A segment per (request, table).
    std::vector<LookupSegment> segments;
    for (size_t k = 0; k + 1 < split.size(); ++k) {
      segments.push_back({mtable->table(k % num_tables).table.get(),
                          in.ids + split[k], split[k + 1] - split[k],
                          embeddings + in.offsets[k]});
    }
    OP_REQUIRES_OK(ctx, LookupSegments(ctx, segments));
  }

 private:
  ReusedFloatOutput output_;
};

// MonolithMultiHashTableLookup with each table's ids as a tensor of its own
// and each table's embeddings as an output of its own, as a model's come
// and go: no join of every table's ids, no row splits, no split of the
// result (about 20 ops a step: 2.4 -> 1.8 ms a 65,536-id lookup at dim 16
// through session.run, measured before this op with the joined op fed
// joined ids).
class MultiHashTableLookupTablesOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableLookupTablesOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {
    int n = 0;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("N", &n));
    outputs_ = std::make_unique<ReusedFloatOutput[]>(n);
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx, GetTable(ctx, &mtable));
    const int tables = mtable->size();
    OpInputList ids;
    OP_REQUIRES_OK(ctx, GetTablesInputList(ctx, "id", tables, &ids));
    const std::vector<int64_t> dims = mtable->dims();
    std::vector<LookupSegment> segments;
    for (int t = 0; t < tables; ++t) {
      OP_REQUIRES(ctx, TensorShapeUtils::IsVector(ids[t].shape()),
                  errors::InvalidArgument("id[", t,
                                          "] must be a vector, got shape ",
                                          ids[t].shape().DebugString(),
                                          " (table ", mtable->table(t).name,
                                          ")"));
      const int64_t n = ids[t].NumElements();
      Tensor* out;
      OP_REQUIRES_OK(ctx, outputs_[t].Allocate(ctx, t, TensorShape({n, dims[t]}),
                                               &out));
      segments.push_back({mtable->table(t).table.get(),
                          ids[t].flat<int64_t>().data(), n,
                          out->flat<float>().data()});
    }
    OP_REQUIRES_OK(ctx, LookupSegments(ctx, segments));
  }

 private:
  // One per output; N is the table count.
  std::unique_ptr<ReusedFloatOutput[]> outputs_;
};

class MultiHashTableLookupEntryOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableLookupEntryOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx, GetTable(ctx, &mtable));
    const Tensor* ids_input = nullptr;
    const Tensor* id_split = nullptr;
    OP_REQUIRES_OK(ctx, GetIdsAndSplit(ctx, &ids_input, &id_split));
    const Tensor& ids = *ids_input;
    OP_REQUIRES_OK(ctx, CheckIdSplit(ids, *id_split, mtable->size() + 1));
    auto split = id_split->flat<int64_t>();
    Tensor* out;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(0, {ids.NumElements()}, &out));
    auto entries = out->flat<tstring>();
    const int64_t* id_data = ids.flat<int64_t>().data();
    // Pieces, so the records beside the output stay small.
    OP_REQUIRES_OK(ctx, OutOfMemoryAsStatus([&] {
      ::monolith::hash_table::WireWriter records;
      std::vector<std::pair<size_t, size_t>> spans;
      for (int t = 0; t < mtable->size(); ++t) {
        for (int64_t b = split(t); b < split(t + 1); b += kLookupPieceIds) {
          const int64_t n = std::min(split(t + 1) - b, kLookupPieceIds);
          records.Clear();
          mtable->table(t).table->BatchLookupRecords(id_data + b, n, &records,
                                                     &spans);
          for (int64_t j = 0; j < n; ++j) {
            entries(b + j).assign(records.data() + spans[j].first,
                                  spans[j].second - spans[j].first);
          }
        }
      }
      return OkStatus();
    }, LookupEntryOutOfMemory(ids.NumElements())));
  }
};

// The inputs every per-table update (assign, assign_add, optimize) starts
// from, validated: the table, and its batch (see UpdateBatch).
struct UpdateInputs : UpdateBatch {
  HeldMultiHashTable mtable;
};

// Reads inputs mtable (0), id (1), id_split (2) and the float vector
// |values_name| (3) into |in|.
Status ReadUpdateInputs(OpKernelContext* ctx, const char* values_name,
                        UpdateInputs* in) {
  TF_RETURN_IF_ERROR(GetTable(ctx, &in->mtable));
  return ReadUpdateBatch(ctx, in->mtable->dims(), values_name, in);
}

// Assign (kAdd = false) or AssignAdd (kAdd = true).
template <bool kAdd>
class MultiHashTableAssignOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableAssignOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    UpdateInputs in;
    OP_REQUIRES_OK(ctx, ReadUpdateInputs(ctx, "value", &in));
    int64_t update_time = 0;
    OP_REQUIRES_OK(ctx, GetUpdateTimeInput(ctx, 4, "update_time", &update_time));
    // Tables are independent; one thread per table keeps repeated ids of a
    // table in order.
    OP_REQUIRES_OK(ctx, RunItems(ctx, in.mtable->size(), in.num_ids,
                                 [&](int64_t t) {
      EmbeddingHashTable& table = *in.mtable->table(t).table;
      const int64_t* ids = in.ids + in.id_split[t];
      const float* values = in.values + in.value_offsets[t];
      const auto admit = in.mtable->AdmitFnFor(ids);
      if (kAdd) {
        table.AssignAdd(ids, in.ids_of(t), values, update_time, admit);
      } else {
        table.Assign(ids, in.ids_of(t), values, update_time, admit);
      }
      return OkStatus();
    }, [&](int64_t t) { return in.mtable->GrowthOutOfMemory(t); }));
    ctx->set_output(0, ctx->input(0));
  }
};

// Applies each table's optimizer to its ids of |batch| and its gradients,
// |grads_of(t)| (len(ids) * dim floats), once the scalars are checked.
template <typename GradsOf>
Status RunOptimize(OpKernelContext* ctx, const MultiHashTable& mtable,
                   const UpdateBatch& batch, const OptimizeScalars& scalars,
                   const GradsOf& grads_of) {
  TF_RETURN_IF_ERROR(CheckTrainable(mtable));
  TF_RETURN_IF_ERROR(CheckLearningRates(mtable, *scalars.learning_rates,
                                        "learning_rate"));
  const float* lr_data = scalars.learning_rates->flat<float>().data();
  return RunItems(
      ctx, mtable.size(), batch.num_ids,
      [&](int64_t t) {
        const int64_t* ids = batch.ids + batch.id_split[t];
        return ToTfStatus(mtable.table(t).table->BatchOptimize(
            ids, batch.ids_of(t), grads_of(t),
            lr_data + mtable.learning_rate_offsets()[t], scalars.update_time,
            scalars.global_step, mtable.AdmitFnFor(ids)));
      },
      [&](int64_t t) { return mtable.GrowthOutOfMemory(t); });
}

class MultiHashTableOptimizeOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableOptimizeOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    UpdateInputs in;
    OP_REQUIRES_OK(ctx, ReadUpdateInputs(ctx, "value", &in));
    OptimizeScalars scalars;
    OP_REQUIRES_OK(ctx, ReadOptimizeScalars(ctx, &scalars));
    OP_REQUIRES_OK(ctx, RunOptimize(ctx, *in.mtable, in, scalars,
                                    [&](int64_t t) {
                                      return in.values + in.value_offsets[t];
                                    }));
    ctx->set_output(0, ctx->input(0));
  }
};

// MonolithMultiHashTableOptimize with each table's gradients as a tensor of
// its own, as a model's gradients come: no join of every table's into one
// (a copy of them all each step: 2.2 ms of a 9.4 ms apply of 65,536 ids at
// dim 64 in the benchmark).
class MultiHashTableOptimizeTablesOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableOptimizeTablesOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx, GetTable(ctx, &mtable));
    const int tables = mtable->size();
    OpInputList grads;
    OP_REQUIRES_OK(ctx, GetTablesInputList(ctx, "value", tables, &grads));
    UpdateBatch batch;
    OP_REQUIRES_OK(ctx, ReadUpdateIds(ctx, tables, &batch));
    const std::vector<int64_t> dims = mtable->dims();
    for (int t = 0; t < tables; ++t) {
      OP_REQUIRES(ctx, TensorShapeUtils::IsVector(grads[t].shape()),
                  errors::InvalidArgument("value[", t,
                                          "] must be a vector, got shape ",
                                          grads[t].shape().DebugString()));
      const int64_t needed = batch.ids_of(t) * dims[t];
      OP_REQUIRES(ctx, grads[t].NumElements() == needed,
                  errors::InvalidArgument(
                      "value[", t, "] (table ", mtable->table(t).name,
                      ") has ", grads[t].NumElements(), " floats; its ",
                      batch.ids_of(t), " ids of dim ", dims[t], " need ",
                      needed));
    }
    OptimizeScalars scalars;
    OP_REQUIRES_OK(ctx, ReadOptimizeScalars(ctx, &scalars, 3 + tables));
    OP_REQUIRES_OK(ctx, RunOptimize(ctx, *mtable, batch, scalars,
                                    [&](int64_t t) {
                                      return grads[t].flat<float>().data();
                                    }));
    ctx->set_output(0, ctx->input(0));
  }
};

// status: -1 the table does not exist (ids untouched), 0 inserted, 1 existed.
class MultiHashTableReinitializeOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableReinitializeOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx, GetTable(ctx, &mtable));
    std::string name;
    OP_REQUIRES_OK(ctx, GetScalarInput(ctx, 1, "table_name", &name));
    const Tensor* ids_input = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 2, "id", &ids_input));
    const Tensor& ids = *ids_input;
    Tensor* status;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {ids.NumElements()}, &status));
    auto status_vec = status->flat<int32_t>();
    status_vec.setConstant(-1);
    const int t = mtable->Find(name);
    if (t < 0) {
      // As the original: statuses of -1, no error; logged at most once a
      // minute (a step that reinitializes it would flood the log).
      LOG_EVERY_N_SEC(ERROR, 60)
          << "Reinitialize: table " << name << " does not exist in "
          << mtable->shared_name() << " (statuses -1)";
    } else {
      // Stamped with the table's own "now" (its latest update time), not
      // the clock: a table trained on sample times would otherwise see
      // every entry expire at its next save or eviction.
      EmbeddingHashTable& table = *mtable->table(t).table;
      OP_REQUIRES_OK(ctx, OutOfMemoryAsStatus([&] {
        table.Reinitialize(ids.flat<int64_t>().data(), ids.NumElements(),
                           status_vec.data(), table.LatestUpdateTime());
        return OkStatus();
      }));
    }
    ctx->set_output(0, ctx->input(0));
  }
};

class MultiHashTableEvictOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableEvictOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx, GetTable(ctx, &mtable));
    Tensor* evicted;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {mtable->size()}, &evicted));
    auto evicted_vec = evicted->flat<int64_t>();
    for (int t = 0; t < mtable->size(); ++t) {
      int64_t evicted_count = 0;
      const std::string& name = mtable->table(t).name;
      std::string line;
      const auto evict = [&] {
        line = ::monolith::hash_table::EvictExpired(
            name, mtable->table(t).table.get(), &evicted_count);
        return OkStatus();
      };
      // Eviction shrinks each shard into a new, smaller slot array,
      // allocated before the shard changes.
      OP_REQUIRES_OK(
          ctx, OutOfMemoryAsStatus(
                   evict, "evicting from table " + name +
                              ": out of memory (or of memory mappings: see "
                              "vm.max_map_count) for a shrunk shard; the "
                              "shards before it are evicted, the rest keep "
                              "their expired entries"));
      evicted_vec(t) = evicted_count;
      if (evicted_count > 0) {
        LOG(INFO) << "MultiHashTable " << mtable->shared_name() << ": "
                  << line;
      }
    }
    ctx->set_output(0, ctx->input(0));
  }
};

// Per table, in the tables' order: entries, bytes held (slots, entries and
// the huge-page regions in use) and latest update time, read while the
// tables serve other calls (each figure is of its moment).
class MultiHashTableStatsOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableStatsOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx, GetTable(ctx, &mtable));
    const int64_t n = mtable->size();
    Tensor* entries;
    Tensor* memory_bytes;
    Tensor* latest_update_time;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {n}, &entries));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {n}, &memory_bytes));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, {n}, &latest_update_time));
    for (int t = 0; t < n; ++t) {
      const EmbeddingHashTable& table = *mtable->table(t).table;
      entries->vec<int64_t>()(t) = table.Size();
      memory_bytes->vec<int64_t>()(t) = table.MemoryBytes();
      latest_update_time->vec<int64_t>()(t) = table.LatestUpdateTime();
    }
  }
};

using shape_inference::InferenceContext;

// Ops with no input and a scalar (resource) output.
Status ScalarOutput(InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckInputRanks(c, {}));
  return shape_inference::ScalarShape(c);
}

// Lookups: a table and id/id_split vectors.
Status CheckLookupInputs(InferenceContext* c) {
  return CheckInputRanks(c, {{"mtable", 0}, {"id", 1}, {"id_split", 1}});
}

// Assign and AssignAdd.
Status AssignShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"mtable", 0},
                                         {"id", 1},
                                         {"id_split", 1},
                                         {"value", 1},
                                         {"update_time", 0}}));
  return shape_inference::ScalarShape(c);
}

}  // namespace

REGISTER_OP("CreateMonolithMultiHashTable")
    .Input("config: string")
    .Input("filter_handle: resource")
    .Input("sync_client_handle: resource")
    .Output("multi_hash_table_handle: resource")
    .Attr("container: string = ''")
    .Attr("shared_name: string = ''")
    // The initializers' seeds (see TableSeed): as TF's random ops', from
    // the graph-level seed.
    .Attr("seed: int = 0")
    .Attr("seed2: int = 0")
    .SetIsStateful()
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"config", 0},
                                             {"filter_handle", 0},
                                             {"sync_client_handle", 0}}));
      return shape_inference::ScalarShape(c);
    });
REGISTER_KERNEL_BUILDER(Name("CreateMonolithMultiHashTable").Device(DEVICE_CPU),
                        CreateMultiHashTableOp);

REGISTER_OP("ReadMonolithMultiHashTable")
    .Output("multi_hash_table_handle: resource")
    .Attr("container: string = ''")
    .Attr("shared_name: string = ''")
    .SetIsStateful()
    .SetShapeFn(ScalarOutput);
REGISTER_KERNEL_BUILDER(Name("ReadMonolithMultiHashTable").Device(DEVICE_CPU),
                        ReadResourceHandleOp<MultiHashTable>);

REGISTER_OP("IsHashTableInitialized")
    .Input("handle: resource")
    .Output("is_initialized: bool")
    .SetIsStateful()
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"handle", 0}}));
      return shape_inference::ScalarShape(c);
    });
REGISTER_KERNEL_BUILDER(Name("IsHashTableInitialized").Device(DEVICE_CPU),
                        IsResourceInitializedOp<MultiHashTable>);

REGISTER_OP("MonolithDummySyncClient")
    .Output("handle: resource")
    .Attr("config: string = ''")
    .Attr("container: string = ''")
    .Attr("shared_name: string = ''")
    .SetIsStateful()
    .SetShapeFn(ScalarOutput);
REGISTER_KERNEL_BUILDER(Name("MonolithDummySyncClient").Device(DEVICE_CPU),
                        DummyResourceOp<DummySyncClient>);

REGISTER_OP("MonolithMultiHashTableLookup")
    .Input("mtable: resource")
    .Input("id: int64")
    .Input("id_split: int64")
    .Output("embedding: float")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckLookupInputs(c));
      c->set_output(0, c->Vector(c->UnknownDim()));
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableLookup").Device(DEVICE_CPU),
                        MultiHashTableLookupOp);

REGISTER_OP("MonolithMultiHashTableLookupTables")
    .Input("mtable: resource")
    .Input("id: N * int64")
    .Output("embedding: N * float")
    .Attr("N: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"mtable", 0}, {"id", 1}}));
      // [len(id[t]), the table's dim, known to the caller].
      for (int t = 0; t + 1 < c->num_inputs(); ++t) {
        c->set_output(t, c->Matrix(c->Dim(c->input(t + 1), 0),
                                   c->UnknownDim()));
      }
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableLookupTables").Device(DEVICE_CPU),
    MultiHashTableLookupTablesOp);

REGISTER_OP("MonolithMultiHashTableLookupEntry")
    .Input("mtable: resource")
    .Input("id: int64")
    .Input("id_split: int64")
    .Output("serialized_entries: string")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckLookupInputs(c));
      c->set_output(0, c->Vector(c->Dim(c->input(1), 0)));
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableLookupEntry").Device(DEVICE_CPU),
    MultiHashTableLookupEntryOp);

namespace {

// Both optimize ops: every input a vector or scalar (value's tensors
// vectors), the table handle out.
Status OptimizeShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"mtable", 0},
                                         {"id", 1},
                                         {"id_split", 1},
                                         {"value", 1},
                                         {"learning_rate", 1},
                                         {"update_time", 0},
                                         {"global_step", 0}}));
  return shape_inference::ScalarShape(c);
}

}  // namespace

REGISTER_OP("MonolithMultiHashTableOptimize")
    .Input("mtable: resource")
    .Input("id: int64")
    .Input("id_split: int64")
    .Input("value: float")
    .Input("learning_rate: float")
    .Input("update_time: int64")
    .Input("global_step: int64")
    .Output("updated_table: resource")
    .SetShapeFn(OptimizeShape);
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableOptimize").Device(DEVICE_CPU),
    MultiHashTableOptimizeOp);

REGISTER_OP("MonolithMultiHashTableOptimizeTables")
    .Input("mtable: resource")
    .Input("id: int64")
    .Input("id_split: int64")
    .Input("value: N * float")
    .Input("learning_rate: float")
    .Input("update_time: int64")
    .Input("global_step: int64")
    .Attr("N: int >= 1")
    .Output("updated_table: resource")
    .SetShapeFn(OptimizeShape);
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableOptimizeTables").Device(DEVICE_CPU),
    MultiHashTableOptimizeTablesOp);

REGISTER_OP("MonolithMultiHashTableAssign")
    .Input("mtable: resource")
    .Input("id: int64")
    .Input("id_split: int64")
    .Input("value: float")
    .Input("update_time: int64")
    .Output("updated_table: resource")
    .SetShapeFn(AssignShape);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableAssign").Device(DEVICE_CPU),
                        MultiHashTableAssignOp<false>);

REGISTER_OP("MonolithMultiHashTableAssignAdd")
    .Input("mtable: resource")
    .Input("id: int64")
    .Input("id_split: int64")
    .Input("value: float")
    .Input("update_time: int64")
    .Output("updated_table: resource")
    .SetShapeFn(AssignShape);
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableAssignAdd").Device(DEVICE_CPU),
    MultiHashTableAssignOp<true>);

REGISTER_OP("MonolithMultiHashTableReinitialize")
    .Input("mtable: resource")
    .Input("table_name: string")
    .Input("id: int64")
    .Output("updated_table: resource")
    .Output("id_status: int32")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(
          c, {{"mtable", 0}, {"table_name", 0}, {"id", 1}}));
      c->set_output(0, c->Scalar());
      c->set_output(1, c->Vector(c->Dim(c->input(2), 0)));
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableReinitialize").Device(DEVICE_CPU),
    MultiHashTableReinitializeOp);

// Not in the original: evicts every table's expired entries now (what the
// background eviction of enable_feature_eviction does on its period).
REGISTER_OP("MonolithMultiHashTableEvict")
    .Input("mtable: resource")
    .Output("updated_table: resource")
    .Output("evicted: int64")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"mtable", 0}}));
      c->set_output(0, c->Scalar());
      c->set_output(1, c->Vector(c->UnknownDim()));
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableEvict").Device(DEVICE_CPU),
                        MultiHashTableEvictOp);

REGISTER_OP("MonolithMultiHashTableStats")
    .Input("mtable: resource")
    .Output("entries: int64")
    .Output("memory_bytes: int64")
    .Output("latest_update_time: int64")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"mtable", 0}}));
      for (int i = 0; i < 3; ++i) c->set_output(i, c->Vector(c->UnknownDim()));
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableStats").Device(DEVICE_CPU),
                        MultiHashTableStatsOp);

}  // namespace monolith_tf
}  // namespace tensorflow
