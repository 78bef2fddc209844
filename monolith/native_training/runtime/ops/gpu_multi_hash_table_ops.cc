// GPU kernels of the multi hash table ops (in libmonolith_ops.so when built
// with --config=cuda, beside the ops' CPU kernels): a multi table whose
// tables are "gpucuco" tables (hash_table/gpu/gpu_row_table.h) lives on
// GPU:0, and these kernels run the ops that read and update it, on the
// device's compute stream.
//
// What runs on the GPU: creation, lookup, lookup_entry, assign, assign_add,
// reinitialize, apply_gradients (optimize), evict, save and restore, in the
// CPU tables' checkpoint format (saves skip expired entries, as the CPU's),
// for TRAINING and SERVING (fp16 / fp32 values) entries.
// Tables with enable_feature_eviction also evict in the background, on the
// ops' stream; the fused lookup and optimize run too. Not yet: hash filters
// (the Python wrapper refuses them for gpucuco tables).
//
// Thin kernels: they validate inputs (ids on the device; splits, learning
// rates, times and names in host memory) and call the table.

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/checkpoint.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_store.h"
#include "monolith/native_training/runtime/hash_table/periodic_evictor.h"
#include "monolith/native_training/runtime/hash_table/table_checkpoint.h"
#include "monolith/native_training/runtime/hash_table/update_time.h"
#include "monolith/native_training/runtime/hash_table/wire_writer.h"
#include "monolith/native_training/runtime/ops/op_util.h"
#include "monolith/native_training/runtime/ops/tf_file_system.h"
#include "tensorflow/core/framework/device_base.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_op_kernel.h"
#include "tensorflow/core/lib/random/random.h"
#include "tensorflow/core/platform/env_time.h"
#include "xla/stream_executor/stream.h"
#include "xla/stream_executor/stream_executor.h"

namespace tensorflow {
namespace monolith_tf {
namespace {

namespace ht = ::monolith::hash_table;
namespace gpu = ::monolith::hash_table::gpu;

// The device's compute stream, which every call on a GPU table uses.
void* CudaStream(OpKernelContext* ctx) {
  return ctx->op_device_context()->stream()->platform_specific_handle().stream;
}

// The CUDA device of the op's GPU (TF's GPU:i need not be CUDA device i).
int CudaDevice(OpKernelContext* ctx) {
  return ctx->op_device_context()->stream()->parent()->device_ordinal();
}

class GpuMultiHashTable : public ResourceBase {
 public:
  struct Table {
    std::string name;
    gpu::GpuRowTableSpec spec;
    std::unique_ptr<gpu::GpuRowTable> table;
    std::unique_ptr<gpu::GpuRowRecords> records;
    // The config's slot_expire_time_config: saves and evictions drop what
    // it says has expired.
    std::unique_ptr<ht::SlotExpireTimes> expire;
    int64_t first_learning_rate = 0;
    // enable_feature_eviction's period; zero: no background eviction.
    std::chrono::milliseconds evict_period{0};
  };

  // |created_from|: the serialized MultiEmbeddingHashTableConfig the
  // tables are made from.
  GpuMultiHashTable(std::string shared_name, std::string created_from)
      : shared_name_(std::move(shared_name)),
        created_from_(std::move(created_from)) {}
  // The background evictions end (the one running, if any, finishes)
  // before the tables go.
  ~GpuMultiHashTable() override { evictor_.reset(); }

  Status AddTable(const std::string& name,
                  const ht::EmbeddingHashTableConfig& config, int device,
                  uint64_t seed) {
    if (config.skip_zero_embedding()) {
      // The CPU table drops entries assigned all zeros; the GPU map removes
      // keys only when eviction rebuilds it.
      return errors::InvalidArgument(
          "skip_zero_embedding: gpucuco tables keep all-zero entries; "
          "table ", name);
    }
    auto t = std::make_unique<Table>();
    t->name = name;
    TF_RETURN_IF_ERROR(ToTfStatus(gpu::GpuRowTableSpecFor(
        config.entry_config(), seed, &t->spec)));
    t->spec.device = device;
    TF_RETURN_IF_ERROR(ToTfStatus(ht::EmbeddingHashTable::CheckInitialCapacity(
        config.initial_capacity())));
    // initial_capacity counts entries; the map needs room past max_load.
    t->spec.initial_capacity = std::max<int64_t>(
        64, static_cast<int64_t>(static_cast<double>(
                                     config.initial_capacity()) /
                                 t->spec.max_load) + 1);
    TF_RETURN_IF_ERROR(
        ToTfStatus(gpu::GpuRowTable::Create(t->spec, &t->table)));
    TF_RETURN_IF_ERROR(ToTfStatus(
        gpu::GpuRowRecords::Create(config.entry_config(), &t->records)));
    TF_RETURN_IF_ERROR(ToTfStatus(
        ht::CheckSlotExpireTimeConfig(config.slot_expire_time_config())));
    t->expire =
        std::make_unique<ht::SlotExpireTimes>(config.slot_expire_time_config());
    const std::string zero_expire_times =
        ht::DescribeZeroExpireTimes(config.slot_expire_time_config());
    if (!zero_expire_times.empty() && !t->spec.serving) {
      LOG(WARNING) << "gpucuco MultiHashTable " << shared_name_ << ", table "
                   << name << ": " << zero_expire_times;
    }
    // As the CPU table: SERVING tables never evict.
    if (config.enable_feature_eviction() && !t->spec.serving) {
      TF_RETURN_IF_ERROR(ToTfStatus(
          ht::CheckEvictPeriodHours(config.feature_evict_every_n_hours())));
      t->evict_period = std::chrono::hours(config.feature_evict_every_n_hours());
    }
    t->first_learning_rate = learning_rates_;
    learning_rates_ += static_cast<int64_t>(t->spec.segments.size());
    tables_.push_back(std::move(t));
    return OkStatus();
  }

  int size() const { return static_cast<int>(tables_.size()); }
  const std::string& shared_name() const { return shared_name_; }
  Table& table(int t) { return *tables_[t]; }
  const std::string& created_from() const { return created_from_; }
  // Each table's embedding floats, in table order.
  std::vector<int64_t> dims() const {
    std::vector<int64_t> out;
    for (const auto& t : tables_) out.push_back(t->spec.value_floats);
    return out;
  }
  // FailedPrecondition if a table lost its map (a restore that could not
  // rebuild it).
  Status CheckUsable() const {
    for (const auto& t : tables_) {
      if (t->table == nullptr) {
        return errors::FailedPrecondition(
            "gpucuco table ", t->name,
            " has no map: a restore emptied it and could not rebuild it; "
            "restore again");
      }
    }
    return OkStatus();
  }
  int Find(const std::string& name) const {
    for (int t = 0; t < size(); ++t) {
      if (tables_[t]->name == name) return t;
    }
    return -1;
  }
  int64_t learning_rates() const { return learning_rates_; }
  // GPU tables take one call at a time.
  mutex& mu() { return mu_; }
  // Every op, under mu(): the stream it queues its kernels on (TF's compute
  // stream), which background evictions then queue theirs on, after them.
  void NoteStream(void* stream) TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stream_ = stream;
  }

  // Evicts table t's entries expired at |now| (ExpiryNow of its newest
  // update time: ExpiryNowOf(t); the caller holds mu()); *count gets how
  // many.
  Status EvictTable(int t, int64_t now, void* stream, int64_t* count)
      TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Table& table = *tables_[t];
    *count = 0;
    // SERVING tables are never evicted, as on the CPU.
    if (table.spec.serving) return OkStatus();
    gpu::GpuRowTable::ExpireSeconds expire;
    expire.default_seconds = table.expire->default_seconds();
    expire.by_slot.assign(table.expire->slot_seconds().begin(),
                          table.expire->slot_seconds().end());
    return ToTfStatus(table.table->Evict(now, expire, count, stream));
  }

  // The "now" table t's saves and evictions measure expiry against (the
  // caller holds mu()).
  int64_t ExpiryNowOf(int t) const TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ht::ExpiryNow(tables_[t]->table->latest_update_time());
  }

  // Evicts, in the background, every table with enable_feature_eviction on
  // its period, logging what each eviction removed. Call once, after the
  // tables are added.
  Status StartPeriodicEviction() {
    std::vector<ht::PeriodicEvictor::Target> targets;
    for (int t = 0; t < size(); ++t) {
      if (tables_[t]->evict_period.count() == 0) continue;
      targets.push_back({tables_[t]->name, tables_[t]->evict_period,
                         [this, t](const std::atomic<bool>&) {
                           // One call into the GPU map: nothing to stop.
                           return EvictInBackground(t);
                         }});
    }
    const std::string owner = "gpucuco MultiHashTable " + shared_name_;
    return ToTfStatus(ht::StartPeriodicEvictor(
        owner, std::move(targets),
        [owner](const std::string& line) {
          LOG(INFO) << owner << ": " << line;
        },
        &evictor_));
  }

  // Under the table's lock: a restore replaces (frees) the maps.
  std::string DebugString() const override {
    mutex_lock lock(mu_);
    std::string out = "GpuMultiHashTable(" + shared_name_ + ":";
    for (const auto& t : tables_) {
      out += " " + t->name + "=" +
             (t->table == nullptr ? std::string("no map")
                                  : std::to_string(t->table->size()) +
                                        " entries") +
             ";";
    }
    return out + ")";
  }

 private:
  // One background eviction of table t, on the stream the ops use, so it
  // runs after every kernel they queued; returns the line to log.
  std::string EvictInBackground(int t) {
    mutex_lock lock(mu_);
    Table& table = *tables_[t];
    if (table.table == nullptr) {
      return "table " + table.name + " has no map (a failed restore): not "
             "evicted";
    }
    const auto start = std::chrono::steady_clock::now();
    const int64_t before = table.table->size();
    const int64_t now = ExpiryNowOf(t);
    ht::EmbeddingHashTable::EvictStats stats;
    const Status s = EvictTable(t, now, stream_, &stats.evicted);
    if (!s.ok()) {
      // Not only the evictor's INFO line: e.g. no GPU memory for the
      // second map.
      LOG(WARNING) << "gpucuco MultiHashTable " << shared_name_
                   << ": evicting table " << table.name
                   << " failed: " << s.message();
      return "evicting table " + table.name + " failed: " +
             std::string(s.message());
    }
    return ht::DescribeEviction(
        table.name, before, stats, now,
        std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                      start)
            .count());
  }

  std::string shared_name_;
  std::string created_from_;
  std::vector<std::unique_ptr<Table>> tables_;
  int64_t learning_rates_ = 0;
  mutable mutex mu_;
  void* stream_ TF_GUARDED_BY(mu_) = nullptr;
  std::unique_ptr<ht::PeriodicEvictor> evictor_;
};

// The filter and sync client a gpucuco table is created with: placeholders
// on the GPU (TF places a resource's consumer on the resource's device, so
// they must live where the table does); nothing reads them.
class GpuUnusedResource : public ResourceBase {
 public:
  std::string DebugString() const override { return "unused on the GPU"; }
};

// The multi table of input 0, locked for the call (GPU tables take one call
// at a time) and checked, under the lock, to have every table's map.
struct LockedGpuTable {
  core::RefCountPtr<GpuMultiHashTable> table;
  std::optional<mutex_lock> lock;
};

Status LockGpuTable(OpKernelContext* ctx, LockedGpuTable* locked) {
  TF_RETURN_IF_ERROR(LookupResourceInput(ctx, 0, "mtable", &locked->table));
  locked->lock.emplace(locked->table->mu());
  locked->table->NoteStream(CudaStream(ctx));
  return locked->table->CheckUsable();
}

// CreateMonolithMultiHashTable on the GPU. The filter and sync client
// inputs are not read: gpucuco tables admit every id.
class CreateGpuMultiHashTableOp
    : public InputDependentResourceOpKernel<GpuMultiHashTable> {
 public:
  explicit CreateGpuMultiHashTableOp(OpKernelConstruction* ctx)
      : InputDependentResourceOpKernel<GpuMultiHashTable>(ctx) {
    OP_REQUIRES_OK(ctx, GetTableSeeds(ctx, &seeds_));
  }

 private:
  Status ReadInputs(OpKernelContext* ctx) override {
    std::string serialized;
    TF_RETURN_IF_ERROR(GetScalarInput(ctx, 0, "config", &serialized));
    mutex_lock l(mu_);
    device_ = CudaDevice(ctx);
    TF_RETURN_IF_ERROR(config_.Parse(serialized));
    for (int i = 0; i < config_->configs_size(); ++i) {
      // Placed on a GPU (eager placement prefers one): never a GPU table in
      // a CPU table's stead.
      if (!config_->configs(i).has_gpucuco()) {
        return errors::InvalidArgument(
            "table ", config_->names(i), " is not a gpucuco table, but its "
            "creation runs on a GPU: place it on a CPU "
            "(tf.device(\"/CPU:0\"))");
      }
    }
    return OkStatus();
  }

  Status VerifyInputs(GpuMultiHashTable* resource) override
      TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return CheckCreatedFromSameConfig(cinfo_.name(), resource->created_from(),
                                      *config_);
  }

  // Only the config and the device are kept: no other resource.
  void ReleaseInputs() override TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}

  Status BuildResource(GpuMultiHashTable** resource) override
      TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    *resource = nullptr;
    core::RefCountPtr<GpuMultiHashTable> mtable(
        new GpuMultiHashTable(cinfo_.name(), config_->SerializeAsString()));
    for (int i = 0; i < config_->names_size(); ++i) {
      const Status s =
          mtable->AddTable(config_->names(i), config_->configs(i), device_,
                           TableSeed(seeds_, config_->names(i)));
      TF_RETURN_IF_ERROR(WithPrefix("table " + config_->names(i) + ": ", s));
    }
    TF_RETURN_IF_ERROR(mtable->StartPeriodicEviction());
    *resource = mtable.release();
    return OkStatus();
  }

  TableSeeds seeds_;
  ParsedTableConfig<ht::MultiEmbeddingHashTableConfig> config_
      TF_GUARDED_BY(mu_);
  int device_ TF_GUARDED_BY(mu_) = 0;
};

// Lookup of R requests: id_split has tables * R + 1 entries (request-major),
// as the CPU kernel's. Every table's ids in one kernel launch (per 16).
class GpuMultiHashTableLookupOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableLookupOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    const int num_tables = mtable->size();
    LookupBatch in;
    OP_REQUIRES_OK(ctx, ReadLookupBatch(ctx, mtable->dims(), &in));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {in.offsets.back()}, &out));
    float* embeddings = out->flat<float>().data();
    std::vector<gpu::GpuRowTable::LookupRequest> requests;
    for (size_t k = 0; k + 1 < in.id_split.size(); ++k) {
      requests.push_back({mtable->table(k % num_tables).table.get(),
                          in.ids + in.id_split[k],
                          in.id_split[k + 1] - in.id_split[k],
                          embeddings + in.offsets[k]});
    }
    OP_REQUIRES_OK(ctx, ToTfStatus(gpu::GpuRowTable::LookupMany(
                            requests, CudaStream(ctx))));
  }
};

// Each id's entry as the CPU kernel gives it: its checkpoint record (a
// serialized EntryDump), or "" (an empty dump) when the table lacks it.
// Ids and splits in host memory; rows come back through it.
class GpuMultiHashTableLookupEntryOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableLookupEntryOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    const Tensor* ids = nullptr;
    const Tensor* id_split = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 1, "id", &ids));
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 2, "id_split", &id_split));
    OP_REQUIRES_OK(ctx, CheckIdSplit(*ids, *id_split, mtable->size() + 1));
    auto split = id_split->flat<int64_t>();
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {ids->NumElements()}, &out));
    auto entries = out->flat<tstring>();
    const int64_t* id_data = ids->flat<int64_t>().data();
    // Pieces, so the rows copied to the host beside the output stay small
    // (fewer ids for wide rows: RowsPerChunk).
    constexpr int64_t kPieceIds = 16384;
    OP_REQUIRES_OK(ctx, OutOfMemoryAsStatus([&] {
      std::vector<float> rows;
      std::vector<char> found;
      ht::WireWriter wire;
      for (int t = 0; t < mtable->size(); ++t) {
        const GpuMultiHashTable::Table& table = mtable->table(t);
        const int width = table.spec.row_floats();
        const int64_t piece = gpu::RowsPerChunk(kPieceIds, width);
        for (int64_t b = split(t); b < split(t + 1); b += piece) {
          const int64_t* piece_ids = id_data + b;
          const int64_t n = std::min(split(t + 1) - b, piece);
          TF_RETURN_IF_ERROR(ToTfStatus(table.table->LookupRowsFromHost(
              piece_ids, n, &rows, &found, CudaStream(ctx))));
          for (int64_t j = 0; j < n; ++j) {
            if (found[j]) {
              wire.Clear();
              table.records->Write(piece_ids[j], rows.data() + j * width,
                                   &wire);
              entries(b + j).assign(wire.data(), wire.size());
            } else {
              entries(b + j).clear();  // "", as the CPU kernel's
            }
          }
        }
      }
      return OkStatus();
    }, LookupEntryOutOfMemory(ids->NumElements())));
  }
};

// One WriteMany request per table of |mtable| for its part of |in|.
std::vector<gpu::GpuRowTable::WriteRequest> WriteRequestsOf(
    GpuMultiHashTable* mtable, const UpdateBatch& in) {
  std::vector<gpu::GpuRowTable::WriteRequest> requests(mtable->size());
  for (int t = 0; t < mtable->size(); ++t) {
    requests[t].table = mtable->table(t).table.get();
    requests[t].ids = in.ids + in.id_split[t];
    requests[t].n = in.ids_of(t);
    requests[t].values = in.values + in.value_offsets[t];
  }
  return requests;
}

// The prefix of a WriteMany error: it writes every table of |mtable| at once
// and does not tell which one failed (a table that could not grow, a
// reserved id).
std::string WriteError(const GpuMultiHashTable& mtable) {
  return "writing the gpucuco tables of " + mtable.shared_name() + ": ";
}

// Assign (kAdd = false) or AssignAdd (kAdd = true).
template <bool kAdd>
class GpuMultiHashTableAssignOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableAssignOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    UpdateBatch in;
    OP_REQUIRES_OK(ctx, ReadUpdateBatch(ctx, mtable->dims(), "value", &in));
    int64_t update_time = 0;
    OP_REQUIRES_OK(ctx, GetUpdateTimeInput(ctx, 4, "update_time", &update_time));
    const gpu::GpuRowTable::Write write =
        kAdd ? gpu::GpuRowTable::Write::kAssignAdd
             : gpu::GpuRowTable::Write::kAssign;
    OP_REQUIRES_OK(ctx, WithPrefix(WriteError(*mtable),
                                   ToTfStatus(gpu::GpuRowTable::WriteMany(
                                       write, WriteRequestsOf(mtable, in),
                                       update_time, CudaStream(ctx)))));
    ctx->set_output(0, ctx->input(0));
  }
};

// As the CPU kernels: FailedPrecondition naming a SERVING table (its
// entries have no optimizer state), checked before the learning rates.
Status CheckTrainable(GpuMultiHashTable* mtable) {
  for (int t = 0; t < mtable->size(); ++t) {
    if (mtable->table(t).spec.serving) {
      return ServingTableError(mtable->table(t).name);
    }
  }
  return OkStatus();
}

// Sets requests[t]'s learning rates (table t's segments') from |rates|,
// every table's in table order; InvalidArgument naming |name| unless it
// holds exactly those.
Status SetLearningRates(GpuMultiHashTable* mtable, const Tensor& rates,
                        const char* name,
                        std::vector<gpu::GpuRowTable::WriteRequest>* requests) {
  if (rates.NumElements() != mtable->learning_rates()) {
    return errors::InvalidArgument(name, " has ", rates.NumElements(),
                                   " floats; the tables' optimizers need ",
                                   mtable->learning_rates());
  }
  const float* lr = rates.flat<float>().data();
  for (int t = 0; t < mtable->size(); ++t) {
    const GpuMultiHashTable::Table& table = mtable->table(t);
    (*requests)[t].learning_rates.assign(
        lr + table.first_learning_rate,
        lr + table.first_learning_rate + table.spec.segments.size());
  }
  return OkStatus();
}

class GpuMultiHashTableOptimizeOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableOptimizeOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    UpdateBatch in;
    OP_REQUIRES_OK(ctx, ReadUpdateBatch(ctx, mtable->dims(), "value", &in));
    // global_step is not read: creation refuses warmup_steps, the one
    // step-dependent setting of the GPU optimizers.
    OP_REQUIRES_OK(ctx, CheckTrainable(mtable));
    OptimizeScalars scalars;
    OP_REQUIRES_OK(ctx, ReadOptimizeScalars(ctx, &scalars));
    std::vector<gpu::GpuRowTable::WriteRequest> requests =
        WriteRequestsOf(mtable, in);
    OP_REQUIRES_OK(ctx, SetLearningRates(mtable, *scalars.learning_rates,
                                         "learning_rate", &requests));
    OP_REQUIRES_OK(ctx, WithPrefix(WriteError(*mtable),
                                   ToTfStatus(gpu::GpuRowTable::WriteMany(
                                       gpu::GpuRowTable::Write::kApplyGradients,
                                       requests, scalars.update_time,
                                       CudaStream(ctx)))));
    ctx->set_output(0, ctx->input(0));
  }
};

// The fused lookup (multi_hash_table_fused_ops.cc's layout): every
// (shard, table) segment in one LookupMany, 16 segments per launch.
class GpuMultiHashTableFusedLookupOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableFusedLookupOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_of_shards", &num_shards_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    const Tensor* ids = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 1, "ids", &ids));
    const Tensor* slot_sizes = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 2, "fused_slot_size", &slot_sizes));
    // Unused (a lookup stamps no entry), so any value is taken, as the
    // original took it; a scalar, as elsewhere.
    int64_t req_time = 0;
    OP_REQUIRES_OK(ctx, GetScalarInput(ctx, 3, "req_time", &req_time));
    FusedLayout layout;
    OP_REQUIRES_OK(ctx, ComputeFusedLayout(mtable->dims(), *slot_sizes,
                                           ids->NumElements(), num_shards_,
                                           &layout));
    Tensor* embeddings = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {layout.emb_offsets.back()},
                                             &embeddings));
    OP_REQUIRES_OK(ctx, OutputInt32Vector(ctx, 1, layout.emb_splits));
    OP_REQUIRES_OK(ctx, OutputInt32Vector(ctx, 2, layout.id_offsets));
    OP_REQUIRES_OK(ctx, OutputInt32Vector(ctx, 3, layout.emb_offsets));
    ctx->set_output(4, *ids);
    const int64_t* id_data = ids->flat<int64_t>().data();
    float* out = embeddings->flat<float>().data();
    const int num_tables = mtable->size();
    std::vector<gpu::GpuRowTable::LookupRequest> requests;
    for (int s = 0; s < num_shards_; ++s) {
      for (int t = 0; t < num_tables; ++t) {
        const int64_t k = int64_t{s} * num_tables + t;
        const int64_t n = layout.id_offsets[k + 1] - layout.id_offsets[k];
        if (n == 0) continue;
        requests.push_back({mtable->table(t).table.get(),
                            id_data + layout.id_offsets[k], n,
                            out + layout.emb_offsets[k]});
      }
    }
    OP_REQUIRES_OK(ctx, ToTfStatus(gpu::GpuRowTable::LookupMany(
                            requests, CudaStream(ctx))));
  }

 private:
  int num_shards_;
};

// The fused optimize: shard by shard, every table's segment of a shard in
// one WriteMany, so an id in several shards' segments is optimized in shard
// order, as the CPU (a thread per table, its segments in shard order) does;
// with enable_grad_accumulation each segment's repeated ids are optimized
// once with their summed gradient, as on the CPU. A shard that fails (a
// reserved id, no GPU memory to grow) leaves the shards before it applied
// in every table (the CPU leaves the tables whose threads finished applied
// whole, and the failing table's shards before the failure).
class GpuMultiHashTableFusedOptimizeOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableFusedOptimizeOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_of_shards", &num_shards_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("enable_grad_accumulation",
                                     &enable_grad_accumulation_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    // global_step is not read beyond its check: creation refuses
    // warmup_steps, the one step-dependent setting of the GPU optimizers.
    FusedOptimizeInputs in;
    OP_REQUIRES_OK(ctx, ReadFusedOptimizeInputs(ctx, mtable->dims(),
                                                num_shards_, &in));
    OP_REQUIRES_OK(ctx, CheckTrainable(mtable));
    const int num_tables = mtable->size();
    std::vector<gpu::GpuRowTable::WriteRequest> requests(num_tables);
    OP_REQUIRES_OK(ctx, SetLearningRates(mtable, *in.learning_rates,
                                         "learning_rate_tensors", &requests));
    const FusedLayout& layout = in.layout;
    const int64_t* id_data = in.ids->flat<int64_t>().data();
    const float* grad_data = in.grads->flat<float>().data();
    for (int s = 0; s < num_shards_; ++s) {
      for (int t = 0; t < num_tables; ++t) {
        const int64_t k = int64_t{s} * num_tables + t;
        requests[t].table = mtable->table(t).table.get();
        requests[t].ids = id_data + layout.id_offsets[k];
        requests[t].n = layout.id_offsets[k + 1] - layout.id_offsets[k];
        requests[t].values = grad_data + layout.emb_offsets[k];
      }
      OP_REQUIRES_OK(ctx,
                     WithPrefix(WriteError(*mtable),
                                ToTfStatus(gpu::GpuRowTable::WriteMany(
                                    enable_grad_accumulation_
                                        ? gpu::GpuRowTable::Write::
                                              kApplySummedGradients
                                        : gpu::GpuRowTable::Write::
                                              kApplyGradients,
                                    requests, in.update_time,
                                    CudaStream(ctx)))));
    }
    ctx->set_output(0, ctx->input(0));
  }

 private:
  int num_shards_;
  bool enable_grad_accumulation_;
};

// status: -1 the table does not exist (ids untouched), 0 inserted, 1
// existed, as the CPU kernel's.
class GpuMultiHashTableReinitializeOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableReinitializeOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    std::string name;
    OP_REQUIRES_OK(ctx, GetScalarInput(ctx, 1, "table_name", &name));
    const Tensor* ids = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 2, "id", &ids));
    Tensor* status = nullptr;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(1, {ids->NumElements()}, &status));
    void* stream = CudaStream(ctx);
    const int t = mtable->Find(name);
    if (t < 0) {
      LOG_EVERY_N_SEC(ERROR, 60)
          << "Reinitialize: table " << name << " does not exist (statuses -1)";
      if (status->NumElements() > 0) {
        // Every byte 0xff: int32 -1.
        OP_REQUIRES_OK(ctx, ToTfStatus(gpu::FillDeviceBytes(
                                CudaDevice(ctx), status->data(),
                                status->TotalBytes(), 0xff, stream)));
      }
    } else {
      // The table's own "now", as the CPU kernel.
      gpu::GpuRowTable& table = *mtable->table(t).table;
      OP_REQUIRES_OK(ctx, WithPrefix("gpucuco table " + name + ": ",
                                     ToTfStatus(table.Reinitialize(
                                         ids->flat<int64_t>().data(),
                                         ids->NumElements(),
                                         status->flat<int32_t>().data(),
                                         table.latest_update_time(),
                                         stream))));
    }
    ctx->set_output(0, ctx->input(0));
  }
};

// The GPU tables as row stores, for the checkpoint code.
struct Stores {
  std::vector<std::unique_ptr<gpu::GpuRowTableStore>> owned;
  std::vector<gpu::RowStore*> stores;
  std::vector<const gpu::GpuRowRecords*> records;
};

Stores StoresOf(GpuMultiHashTable* mtable, void* stream) {
  Stores out;
  for (int t = 0; t < mtable->size(); ++t) {
    out.owned.push_back(std::make_unique<gpu::GpuRowTableStore>(
        mtable->table(t).table.get(), stream));
    out.stores.push_back(out.owned.back().get());
    out.records.push_back(mtable->table(t).records.get());
  }
  return out;
}

class GpuMultiHashTableSaveOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableSaveOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, GetSaveAttrs(ctx, &nshards_, &snappy_));
    OP_REQUIRES_OK(ctx, GetSaveExpireTimes(ctx, &expire_times_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    std::string basename;
    OP_REQUIRES_OK(ctx, GetPathInput(ctx, 1, "basename", &basename));
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    std::vector<std::string> names;
    int64_t entries = 0;
    ht::SaveOptions options;
    for (int t = 0; t < mtable->size(); ++t) {
      names.push_back(mtable->table(t).name);
      entries += mtable->table(t).table->size();
      options.segment_dims.push_back(
          mtable->table(t).records->accessor().SegmentDims());
      options.values_only.push_back(
          mtable->table(t).records->accessor().serving());
    }
    options.nshards = nshards_ > 0 ? nshards_
                                   : static_cast<int>(std::min<int64_t>(
                                         4, std::max<int64_t>(
                                                1, entries / 100000)));
    options.expected_entries = entries;
    options.snappy = snappy_;
    // Shards are written one after another: a GPU table takes one call at
    // a time.
    options.parallel_for = UntilCancelled(ctx, CallingThread());
    options.log = LogInfo;
    options.cancelled = StepCancelled(ctx);
    Stores stores = StoresOf(mtable, CudaStream(ctx));
    // Entries expired at each table's ExpiryNowOf are skipped, by the
    // attr's expire times when given, else by the table's own.
    gpu::SaveExpiry expiry;
    for (int t = 0; t < mtable->size(); ++t) {
      expiry.now.push_back(mtable->ExpiryNowOf(t));
      expiry.expire.push_back(expire_times_ != nullptr
                                  ? expire_times_.get()
                                  : mtable->table(t).expire.get());
    }
    TfFileSystem fs(ctx->env());
    OP_REQUIRES_OK(ctx, ToTfStatus(OutOfMemoryAsStatus(
                            [&] {
                              return ht::SaveCheckpoint(
                                  &fs, basename, names,
                                  gpu::RowStoreSaver(stores.stores,
                                                     stores.records, 1 << 16,
                                                     std::move(expiry)),
                                  options);
                            },
                            OutOfMemory)));
    ctx->set_output(0, ctx->input(0));
  }

 private:
  int nshards_ = -1;
  bool snappy_ = true;
  std::unique_ptr<ht::SlotExpireTimes> expire_times_;
};

// Drops each table's entries expired at its ExpiryNowOf (its newest update,
// not past the host's clock) by its config's expire times, as the CPU
// kernel (EvictExpired) does; evicted: per table, how many.
class GpuMultiHashTableEvictOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableEvictOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    LockedGpuTable locked;
    OP_REQUIRES_OK(ctx, LockGpuTable(ctx, &locked));
    GpuMultiHashTable* mtable = locked.table.get();
    Tensor* evicted = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {mtable->size()}, &evicted));
    for (int t = 0; t < mtable->size(); ++t) {
      const GpuMultiHashTable::Table& table = mtable->table(t);
      int64_t count = 0;
      OP_REQUIRES_OK(ctx, WithPrefix("evicting gpucuco table " + table.name +
                                         ": ",
                                     mtable->EvictTable(t,
                                                        mtable->ExpiryNowOf(t),
                                                        CudaStream(ctx),
                                                        &count)));
      evicted->flat<int64_t>()(t) = count;
      if (count > 0) {
        LOG(INFO) << "gpucuco table " << table.name << ": evicted " << count
                  << " expired entries, " << table.table->size() << " left";
      }
    }
    ctx->set_output(0, ctx->input(0));
  }
};

// The CPU kernel's figures: per table, its entries, the device memory it
// holds (GpuRowTable::device_bytes) and its newest update time. A table a
// failed restore left without a map counts 0 entries and bytes.
class GpuMultiHashTableStatsOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableStatsOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    core::RefCountPtr<GpuMultiHashTable> mtable;
    OP_REQUIRES_OK(ctx, LookupResourceInput(ctx, 0, "mtable", &mtable));
    mutex_lock lock(mtable->mu());
    const int64_t n = mtable->size();
    Tensor* entries = nullptr;
    Tensor* device_bytes = nullptr;
    Tensor* latest_update_time = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {n}, &entries));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {n}, &device_bytes));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, {n}, &latest_update_time));
    for (int t = 0; t < n; ++t) {
      const gpu::GpuRowTable* table = mtable->table(t).table.get();
      entries->vec<int64_t>()(t) = table ? table->size() : 0;
      device_bytes->vec<int64_t>()(t) = table ? table->device_bytes() : 0;
      latest_update_time->vec<int64_t>()(t) =
          table ? table->latest_update_time() : 0;
    }
  }
};

// Restore replaces, as on the CPU: every table the checkpoint holds is
// emptied (rebuilt) and then holds exactly its entries; mismatches are
// warnings, or errors with |strict|, before anything changes. Where a
// table to restore holds entries, every record is read and checked first,
// so a checkpoint that would fail part-way fails before they are dropped.
class GpuMultiHashTableRestoreOp : public GuardedOpKernel {
 public:
  explicit GpuMultiHashTableRestoreOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("strict", &strict_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("values_only", &values_only_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    std::string basename;
    OP_REQUIRES_OK(ctx, GetPathInput(ctx, 1, "basename", &basename));
    core::RefCountPtr<GpuMultiHashTable> mtable;
    // Not GetGpuTable: a restore is how a table that lost its map recovers.
    OP_REQUIRES_OK(ctx, LookupResourceInput(ctx, 0, "mtable", &mtable));
    // Locked before the meta files are read: a save finishing in between
    // would leave them describing files it replaced.
    mutex_lock l(mtable->mu());
    TfFileSystem fs(ctx->env());
    ht::CheckpointInfo info;
    OP_REQUIRES_OK(ctx, ToTfStatus(ht::ReadCheckpointInfo(
                            &fs, basename, /*need_data=*/true, LogWarning,
                            &info)));
    mtable->NoteStream(CudaStream(ctx));
    std::vector<std::string> table_names;
    for (int t = 0; t < mtable->size(); ++t) {
      table_names.push_back(mtable->table(t).name);
    }
    std::vector<ht::RestoredState> graph_states;
    OP_REQUIRES_OK(ctx, RestoredStates(values_only_, table_names,
                                       mtable->shared_name(), &graph_states));
    std::vector<int> to_graph;
    std::vector<bool> restored(mtable->size(), false);
    std::vector<std::string> mismatches;
    for (size_t i = 0; i < info.tables.size(); ++i) {
      const ht::CheckpointInfo::Table& table = info.tables[i];
      const int t = mtable->Find(table.name);
      to_graph.push_back(t);
      if (t >= 0) {
        OP_REQUIRES_OK(
            ctx, ToTfStatus(ht::CheckRestorableInto(
                     info, static_cast<int>(i),
                     mtable->table(t).records->accessor(), graph_states[t])));
        restored[t] = true;
      } else {
        mismatches.push_back("the checkpoint's table " + table.name +
                             " is not in the graph");
      }
    }
    for (int t = 0; t < mtable->size(); ++t) {
      if (!restored[t]) {
        mismatches.push_back("table " + mtable->table(t).name +
                             " is not in the checkpoint");
      }
    }
    for (const std::string& mismatch : mismatches) {
      OP_REQUIRES(ctx, !strict_,
                  errors::FailedPrecondition("strict restore of ", basename,
                                             ": ", mismatch));
      LOG(WARNING) << "Restore of " << basename << ": " << mismatch;
    }
    LogValuesOnly("Restore of " + basename, values_only_);
    // Records of the checkpoint's table i go to graph table to_graph[i].
    std::vector<const gpu::GpuRowRecords*> records;
    std::vector<ht::RestoredState> states;
    std::vector<std::string> holding;  // tables to restore holding entries
    for (int t : to_graph) {
      records.push_back(t >= 0 ? mtable->table(t).records.get() : nullptr);
      states.push_back(t >= 0 ? graph_states[t] : ht::RestoredState::kAll);
      if (t >= 0 && mtable->table(t).table != nullptr &&
          mtable->table(t).table->size() > 0) {
        holding.push_back(mtable->table(t).name);
      }
    }
    auto read_records = [&](gpu::RowStoreRestorer* restorer, bool check_only) {
      return ToTfStatus(ht::RestoreCheckpoint(
          &fs, info,
          [&](int shard, int table, std::string_view record) {
            if (to_graph[table] < 0) return ht::Status::OK();
            return check_only ? restorer->Check(shard, table, record)
                              : restorer->Restore(shard, table, record);
          },
          UntilCancelled(ctx, CallingThread()), LogInfo,
          RestorePassVerb(check_only), ht::kProgressEvery,
          StepCancelled(ctx)));
    };
    OP_REQUIRES_OK(
        ctx, CheckBeforeReplacing("Restore of " + basename, holding, [&] {
          gpu::RowStoreRestorer checker(
              std::vector<gpu::RowStore*>(records.size(), nullptr), records,
              info.nshards, gpu::kRestoreBatchRows, states);
          return read_records(&checker, /*check_only=*/true);
        }));
    std::vector<std::string> emptied;
    // Every table to restore created again, empty, and one an earlier
    // failed restore left without a map (which this checkpoint may lack:
    // it had lost its entries already); the first error (a table that
    // fails stays unusable: CheckUsable says so to every call).
    const auto empty = [&]() -> Status {
      // Kernels that earlier ops queued on this stream may still read the
      // maps freed below (cudaFree's wait for the device is not promised).
      // If the wait fails (the stream is broken), the tables are still
      // freed and left unusable, not holding a partial restore.
      Status first = ctx->op_device_context()->stream()->BlockHostUntilDone();
      const bool recreate = first.ok();
      for (int t = 0; t < mtable->size(); ++t) {
        GpuMultiHashTable::Table& table = mtable->table(t);
        if (!restored[t] && table.table != nullptr) continue;
        if (!restored[t]) {
          LOG(WARNING) << "Restore of " << basename << ": gpucuco table "
                       << table.name << ", left without its entries by an "
                       << "earlier failed restore and not in this "
                       << "checkpoint, starts empty";
        }
        // Its memory first; until Create succeeds the table is unusable
        // (CheckUsable), not dangling.
        table.table.reset();
        if (!recreate) continue;
        first.Update(OutOfMemoryAsStatus(
            [&] {
              return ToTfStatus(
                  gpu::GpuRowTable::Create(table.spec, &table.table));
            },
            OutOfMemory));
      }
      return first;
    };
    for (int t = 0; t < mtable->size(); ++t) {
      if (restored[t] || mtable->table(t).table == nullptr) {
        emptied.push_back(mtable->table(t).name);
      }
    }
    OP_REQUIRES_OK(ctx, empty());
    OP_REQUIRES_OK(ctx, mtable->CheckUsable());
    Stores stores = StoresOf(mtable.get(), CudaStream(ctx));
    std::vector<gpu::RowStore*> by_checkpoint;
    for (int t : to_graph) {
      by_checkpoint.push_back(t >= 0 ? stores.stores[t] : nullptr);
    }
    const auto fill = [&] {
      gpu::RowStoreRestorer restorer(by_checkpoint, records, info.nshards,
                                     gpu::kRestoreBatchRows, states);
      TF_RETURN_IF_ERROR(read_records(&restorer, /*check_only=*/false));
      return ToTfStatus(restorer.Flush());
    };
    OP_REQUIRES_OK(ctx, FillOrLeaveEmpty("Restore of " + basename, emptied,
                                         fill, empty));
    ctx->set_output(0, ctx->input(0));
  }

 private:
  bool strict_ = false;
  std::vector<std::string> values_only_;
};

REGISTER_KERNEL_BUILDER(
    Name("MonolithDummyHashFilter").Device(DEVICE_GPU).HostMemory("handle"),
    DummyResourceOp<GpuUnusedResource>);
REGISTER_KERNEL_BUILDER(
    Name("MonolithDummySyncClient").Device(DEVICE_GPU).HostMemory("handle"),
    DummyResourceOp<GpuUnusedResource>);
REGISTER_KERNEL_BUILDER(Name("CreateMonolithMultiHashTable")
                            .Device(DEVICE_GPU)
                            .HostMemory("config")
                            .HostMemory("filter_handle")
                            .HostMemory("sync_client_handle")
                            .HostMemory("multi_hash_table_handle"),
                        CreateGpuMultiHashTableOp);
REGISTER_KERNEL_BUILDER(Name("ReadMonolithMultiHashTable")
                            .Device(DEVICE_GPU)
                            .HostMemory("multi_hash_table_handle"),
                        ReadResourceHandleOp<GpuMultiHashTable>);
REGISTER_KERNEL_BUILDER(Name("IsHashTableInitialized")
                            .Device(DEVICE_GPU)
                            .HostMemory("handle")
                            .HostMemory("is_initialized"),
                        IsResourceInitializedOp<GpuMultiHashTable>);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableLookup")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("id_split"),
                        GpuMultiHashTableLookupOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableLookupEntry")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("id")
                            .HostMemory("id_split")
                            .HostMemory("serialized_entries"),
                        GpuMultiHashTableLookupEntryOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableAssign")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("id_split")
                            .HostMemory("update_time")
                            .HostMemory("updated_table"),
                        GpuMultiHashTableAssignOp<false>);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableAssignAdd")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("id_split")
                            .HostMemory("update_time")
                            .HostMemory("updated_table"),
                        GpuMultiHashTableAssignOp<true>);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableReinitialize")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("table_name")
                            .HostMemory("updated_table"),
                        GpuMultiHashTableReinitializeOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableOptimize")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("id_split")
                            .HostMemory("learning_rate")
                            .HostMemory("update_time")
                            .HostMemory("global_step")
                            .HostMemory("updated_table"),
                        GpuMultiHashTableOptimizeOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableEvict")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("updated_table")
                            .HostMemory("evicted"),
                        GpuMultiHashTableEvictOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableStats")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("entries")
                            .HostMemory("memory_bytes")
                            .HostMemory("latest_update_time"),
                        GpuMultiHashTableStatsOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableFusedLookup")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("fused_slot_size")
                            .HostMemory("req_time")
                            .HostMemory("embedding_splits")
                            .HostMemory("id_offsets")
                            .HostMemory("embedding_offsets"),
                        GpuMultiHashTableFusedLookupOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableFusedOptimize")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("fused_slot_size")
                            .HostMemory("id_offsets")
                            .HostMemory("grad_offsets")
                            .HostMemory("learning_rate_tensors")
                            .HostMemory("req_time")
                            .HostMemory("global_step")
                            .HostMemory("mtable_out"),
                        GpuMultiHashTableFusedOptimizeOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableSave")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("basename")
                            .HostMemory("output_mtable"),
                        GpuMultiHashTableSaveOp);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableRestore")
                            .Device(DEVICE_GPU)
                            .HostMemory("mtable")
                            .HostMemory("basename")
                            .HostMemory("output_mtable"),
                        GpuMultiHashTableRestoreOp);

}  // namespace
}  // namespace monolith_tf
}  // namespace tensorflow
