// Kernels that save, restore and summarize multi hash table checkpoints:
// they validate their inputs and call the TF-free checkpoint library
// (runtime/hash_table/checkpoint.h, which documents the format) with the
// tables' entries, TF's file systems and TF's CPU worker threads.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/checkpoint.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/table_checkpoint.h"
#include "monolith/native_training/runtime/hash_table/update_time.h"
#include "monolith/native_training/runtime/ops/multi_hash_table.h"
#include "monolith/native_training/runtime/ops/tf_file_system.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/platform/random.h"
#include "tensorflow/core/platform/strcat.h"

namespace tensorflow {
namespace monolith_tf {
namespace {

namespace ht = ::monolith::hash_table;
using ::monolith::hash_table::EmbeddingHashTable;
using ::monolith::hash_table::RecordScratch;
using ::monolith::hash_table::SlotExpireTimeConfig;
using ::monolith::hash_table::SlotExpireTimes;

// Restored entries whose update times entries cannot keep: past
// kMaxUpdateTimeSeconds (kept as it) and negative (kept as 0); and those
// whose times lie ahead of the host's clock (ht::AheadOfClock: kept, but
// their tables' time does not move to them).
struct TimesOutOfRange {
  std::atomic<int64_t> too_large{0};
  std::atomic<int64_t> negative{0};
  std::atomic<int64_t> ahead_of_clock{0};
  // The host's clock, read once for the restore's records.
  const int64_t clock = ht::HostClockSeconds();
};

// A table's error on a checkpoint record, as a restore reports it.
ht::Status RecordError(const ht::Status& s) {
  if (s.code() == ht::StatusCode::kDataLoss) {
    return ht::DataLossError("not an EntryDump");
  }
  if (s.code() == ht::StatusCode::kResourceExhausted) return s;
  if (!s.ok()) return ht::InvalidArgumentError(s.message());
  return s;
}

// Queues checkpoint record |record| in |*batch| (restoring into |table|
// its |state|; made when null; |scratch| parses what cannot be read in
// place), counting its update time if out of range. DataLoss if it is not
// an EntryDump, InvalidArgument if it does not fit the table's entries,
// ResourceExhausted if the table cannot take the batch it filled.
ht::Status RestoreInto(
    const MultiHashTable::Table& table, ht::RestoredState state,
    std::unique_ptr<ht::EmbeddingHashTable::RestoreBatch>* batch,
    std::string_view record, RecordScratch* scratch,
    TimesOutOfRange* times_out_of_range) {
  int64_t update_time = 0;
  MONOLITH_RETURN_IF_ERROR(RecordError(OutOfMemoryAsStatus(
      [&] {
        if (*batch == nullptr) {
          *batch = std::make_unique<ht::EmbeddingHashTable::RestoreBatch>(
              table.table.get(), state);
        }
        return (*batch)->Add(record.data(), record.size(), scratch,
                             &update_time);
      },
      [&] { return GrowthOutOfMemory("table " + table.name); })));
  if (update_time > ht::kMaxUpdateTimeSeconds) {
    times_out_of_range->too_large.fetch_add(1, std::memory_order_relaxed);
  } else if (update_time < 0) {
    times_out_of_range->negative.fetch_add(1, std::memory_order_relaxed);
  } else if (ht::AheadOfClock(update_time, times_out_of_range->clock)) {
    times_out_of_range->ahead_of_clock.fetch_add(1, std::memory_order_relaxed);
  }
  return ht::Status::OK();
}

// The id shard attrs of MonolithMultiHashTableRestoreResharded (the op's
// constraints already require id_modulus >= 1 and id_remainder >= 0).
Status CheckIdShard(int64_t modulus, int64_t remainder) {
  if (modulus < 1 || remainder < 0 || remainder >= modulus) {
    return errors::InvalidArgument(
        "id_remainder must be in [0, id_modulus): got id_modulus ", modulus,
        " and id_remainder ", remainder);
  }
  return OkStatus();
}

class MultiHashTableSaveOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableSaveOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, GetSaveAttrs(ctx, &nshards_, &snappy_));
    OP_REQUIRES_OK(ctx, GetSaveExpireTimes(ctx, &expire_times_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    std::string basename;
    OP_REQUIRES_OK(ctx, GetPathInput(ctx, 1, "basename", &basename));
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx, HoldMultiHashTableToSave(ctx, 0, &mtable));
    int64_t entries = 0;
    for (int t = 0; t < mtable->size(); ++t) {
      entries += mtable->table(t).table->Size();
    }
    int nshards = nshards_;
    if (nshards < 0) {
      // One shard per 100k entries, up to the worker threads (at least 4,
      // the original's maximum): shards are written in parallel. At most
      // kMaxCheapDumpShards: more split internal shards, whose slots each
      // of them then reads.
      const int64_t threads =
          ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
      nshards = static_cast<int>(std::min<int64_t>(
          {std::max<int64_t>(4, threads), std::max<int64_t>(1, entries / 100000),
           int64_t{ht::EmbeddingHashTable::kMaxCheapDumpShards}}));
    }
    std::vector<std::string> names;
    std::vector<const EmbeddingHashTable*> tables;
    std::vector<int64_t> now;
    ht::SaveOptions options;
    for (int t = 0; t < mtable->size(); ++t) {
      names.push_back(mtable->table(t).name);
      tables.push_back(mtable->table(t).table.get());
      now.push_back(ht::ExpiryNow(mtable->table(t).table->LatestUpdateTime()));
      options.segment_dims.push_back(
          mtable->table(t).table->accessor().SegmentDims());
      options.values_only.push_back(
          mtable->table(t).table->accessor().serving());
    }
    options.nshards = nshards;
    options.expected_entries = entries;
    options.snappy = snappy_;
    // Shards not begun are not begun once cancelled (a shard of fewer
    // records than a progress batch never asks).
    options.parallel_for = UntilCancelled(ctx, WorkerThreads(ctx));
    options.log = LogInfo;
    options.cancelled = StepCancelled(ctx);
    TfFileSystem fs(ctx->env());
    // Out of memory outside the shards' items (which WorkerThreads
    // converts) is ResourceExhausted too, not an exception out of the op.
    OP_REQUIRES_OK(ctx, ToTfStatus(OutOfMemoryAsStatus(
                            [&] {
                              return ht::SaveCheckpoint(
                                  &fs, basename, names,
                                  // The attr's expire times, when given,
                                  // override the tables'.
                                  ht::EmbeddingTablesSaver(
                                      std::move(tables), std::move(now),
                                      expire_times_.get()),
                                  options);
                            },
                            OutOfMemory)));
    ctx->set_output(0, ctx->input(0));
  }

 private:
  int nshards_ = -1;
  bool snappy_ = true;
  std::unique_ptr<SlotExpireTimes> expire_times_;
};

// Which ids a restore keeps: those with floormod(id, modulus) == remainder
// (modulus 1 keeps every id).
struct IdShard {
  int64_t modulus = 1;
  int64_t remainder = 0;
};

// Restores the checkpoints |basenames| into |mtable|. Every checkpoint's
// meta files are read and checked first, and tables that do not match are
// reported (warnings; with |strict| an error) before any table is touched.
// Where a table to restore holds entries, every record of every checkpoint
// is then read and checked (framing, checksums, counts, and that it fits
// its table), so that a checkpoint which would fail part-way (a damaged
// file, a table whose dim or optimizer changed) fails before those entries
// are dropped; empty tables have nothing to lose and skip that pass.
// Then every table of the graph that any checkpoint holds is emptied, once,
// and the checkpoints are restored one after the other (each one's shards
// in parallel). With |resharded| (MonolithMultiHashTableRestoreResharded)
// every record's id is read and only those |keep| selects are restored,
// and the reports are worded for several checkpoints. The tables named in
// |values_only| restore their records' values only (RestoredState). Out
// of memory where the shards' items do not catch it throws std::bad_alloc
// (see RestoreCheckpoints).
Status RestoreCheckpointsOrThrow(OpKernelContext* ctx, MultiHashTable* mtable,
                                 const std::vector<std::string>& basenames,
                                 bool strict, IdShard keep, bool resharded,
                                 const std::vector<std::string>& values_only) {
  std::vector<std::string> table_names;
  for (int t = 0; t < mtable->size(); ++t) {
    table_names.push_back(mtable->table(t).name);
  }
  std::vector<ht::RestoredState> states;
  TF_RETURN_IF_ERROR(RestoredStates(values_only, table_names,
                                    mtable->shared_name(), &states));
  TfFileSystem fs(ctx->env());
  std::vector<ht::CheckpointInfo> infos;
  TF_RETURN_IF_ERROR(ToTfStatus(ht::ReadCheckpointInfos(
      &fs, basenames, /*need_data=*/true, LogWarning, &infos)));
  // Per checkpoint: its table -> the graph's table (-1: not in the graph).
  std::vector<std::vector<int>> to_graph(basenames.size());
  std::vector<bool> restored(mtable->size(), false);
  std::vector<std::string> mismatches;
  // By name, once: a resharded restore of 2,000 tables reads ~100
  // checkpoints, and a search per table of each was 4M comparisons each.
  std::unordered_map<std::string, int> graph_table;
  for (int t = 0; t < mtable->size(); ++t) {
    graph_table.emplace(mtable->table(t).name, t);
  }
  for (size_t b = 0; b < basenames.size(); ++b) {
    std::unordered_set<std::string> saved_tables;
    for (size_t i = 0; i < infos[b].tables.size(); ++i) {
      const ht::CheckpointInfo::Table& table = infos[b].tables[i];
      saved_tables.insert(table.name);
      const auto found = graph_table.find(table.name);
      const int t = found == graph_table.end() ? -1 : found->second;
      to_graph[b].push_back(t);
      if (t >= 0) {
        TF_RETURN_IF_ERROR(ToTfStatus(ht::CheckRestorableInto(
            infos[b], static_cast<int>(i), mtable->table(t).table->accessor(),
            states[t])));
        restored[t] = true;
        continue;
      }
      mismatches.push_back(
          (resharded ? basenames[b] + ": its table "
                     : std::string("the checkpoint's table ")) +
          table.name + " (" + std::to_string(table.entries) +
          " entries) is not in the graph: its entries are not restored");
    }
    if (!resharded) continue;
    for (int t = 0; t < mtable->size(); ++t) {
      if (saved_tables.count(mtable->table(t).name) == 0) {
        mismatches.push_back(basenames[b] + " lacks table " +
                             mtable->table(t).name);
      }
    }
  }
  for (int t = 0; t < mtable->size(); ++t) {
    if (restored[t]) continue;
    mismatches.push_back("table " + mtable->table(t).name +
                         (resharded ? " is in none of the checkpoints"
                                    : " is not in the checkpoint") +
                         ": it keeps its current entries");
  }
  for (const std::string& mismatch : mismatches) {
    if (strict) {
      return errors::FailedPrecondition(
          resharded ? "strict resharded restore: "
                    : "strict restore of " + basenames[0] + ": ",
          mismatch);
    }
    LOG(WARNING) << (resharded ? "Resharded restore of " + mtable->shared_name()
                               : "Restore of " + basenames[0])
                 << ": " << mismatch;
  }
  LogValuesOnly("Restore into " + mtable->shared_name(), values_only);
  TimesOutOfRange times_out_of_range;
  // Reads every record of every checkpoint: restores it, or with
  // |check_only| checks that it would restore.
  auto read_records = [&](bool check_only) -> Status {
    for (size_t b = 0; b < basenames.size(); ++b) {
      const std::vector<int>& graph_of = to_graph[b];
      std::vector<RecordScratch> scratch(infos[b].nshards);
      // Per data shard: the records of the table it reads, written in
      // batches once the table's records are read (or the batch fills).
      std::vector<std::unique_ptr<ht::EmbeddingHashTable::RestoreBatch>>
          batches(infos[b].nshards);
      TF_RETURN_IF_ERROR(ToTfStatus(ht::RestoreCheckpoint(
          &fs, infos[b],
          [&](int shard, int t, std::string_view record) {
            if (resharded) {
              // Every record's id is read (and so checked), kept or not.
              int64_t id = 0;
              MONOLITH_RETURN_IF_ERROR(ht::RecordId(
                  record.data(), record.size(), &scratch[shard], &id));
              int64_t r = id % keep.modulus;
              if (r < 0) r += keep.modulus;
              if (r != keep.remainder) return ht::Status::OK();
            }
            if (graph_of[t] < 0) return ht::Status::OK();
            MultiHashTable::Table& table = mtable->table(graph_of[t]);
            if (check_only) {
              return RecordError(OutOfMemoryAsStatus(
                  [&] {
                    return table.table->CheckRecord(
                        record.data(), record.size(), &scratch[shard],
                        states[graph_of[t]]);
                  },
                  [&] { return GrowthOutOfMemory("table " + table.name); }));
            }
            return RestoreInto(table, states[graph_of[t]], &batches[shard],
                               record, &scratch[shard], &times_out_of_range);
          },
          UntilCancelled(ctx, WorkerThreads(ctx)), LogInfo,
          RestorePassVerb(check_only, resharded), ht::kProgressEvery,
          StepCancelled(ctx), [&](int shard, int t) {
            if (batches[shard] == nullptr) return ht::Status::OK();
            const std::string& name = mtable->table(graph_of[t]).name;
            const ht::Status status = RecordError(OutOfMemoryAsStatus(
                [&] { return batches[shard]->Flush(); },
                [&] { return GrowthOutOfMemory("table " + name); }));
            batches[shard].reset();
            return status;
          })));
    }
    return OkStatus();
  };
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> holding;  // the tables to restore that hold entries
  for (int t = 0; t < mtable->size(); ++t) {
    if (restored[t] && mtable->table(t).table->Size() > 0) {
      holding.push_back(mtable->table(t).name);
    }
  }
  TF_RETURN_IF_ERROR(CheckBeforeReplacing(
      "Restore into " + mtable->shared_name(), holding,
      [&] { return read_records(/*check_only=*/true); }));
  std::vector<std::string> emptied;
  const auto empty = [&] {
    for (int t = 0; t < mtable->size(); ++t) {
      if (restored[t]) mtable->table(t).table->Clear();
    }
    return OkStatus();
  };
  for (int t = 0; t < mtable->size(); ++t) {
    if (restored[t]) emptied.push_back(mtable->table(t).name);
  }
  TF_RETURN_IF_ERROR(empty());
  TF_RETURN_IF_ERROR(FillOrLeaveEmpty(
      "Restore into " + mtable->shared_name(), emptied,
      [&] { return read_records(/*check_only=*/false); }, empty));
  if (times_out_of_range.too_large.load() > 0) {
    LOG(WARNING) << "Restore into " << mtable->shared_name() << ": "
                 << times_out_of_range.too_large.load()
                 << " entries carry update times past 2^32 - 1 seconds "
                    "(milliseconds?); they keep the time 2^32 - 1, never "
                    "expire, and do not move their table's time forward";
  }
  if (times_out_of_range.negative.load() > 0) {
    LOG(WARNING) << "Restore into " << mtable->shared_name() << ": "
                 << times_out_of_range.negative.load()
                 << " entries carry negative update times; they keep the "
                    "time 0 (expired at the first save or eviction of a "
                    "table with expire times)";
  }
  if (times_out_of_range.ahead_of_clock.load() > 0) {
    LOG(WARNING) << "Restore into " << mtable->shared_name() << ": "
                 << times_out_of_range.ahead_of_clock.load()
                 << " entries carry update times more than "
                 << ht::kMaxUpdateTimeAheadSeconds
                 << " s past this host's clock; they keep them, but their "
                    "tables' time does not move to them";
  }
  if (resharded) {
    // From the meta files (the restore checked every count) and the
    // tables, emptied before: no counting per record.
    uint64_t records = 0;
    for (const ht::CheckpointInfo& info : infos) {
      for (const ht::CheckpointInfo::Table& table : info.tables) {
        records += table.entries;
      }
    }
    int64_t kept = 0;
    for (int t = 0; t < mtable->size(); ++t) {
      if (restored[t]) kept += mtable->table(t).table->Size();
    }
    LOG(INFO) << "Resharded restore into " << mtable->shared_name()
              << ": read " << records << " records, kept " << kept
              << " entries (ids with id mod " << keep.modulus
              << " == " << keep.remainder << ") from "
              << basenames.size() << " checkpoints in "
              << std::chrono::duration<double>(
                     std::chrono::steady_clock::now() - start)
                     .count()
              << " s";
  }
  return OkStatus();
}

// RestoreCheckpointsOrThrow, out of memory anywhere in it ResourceExhausted.
Status RestoreCheckpoints(OpKernelContext* ctx, MultiHashTable* mtable,
                          const std::vector<std::string>& basenames,
                          bool strict, IdShard keep, bool resharded,
                          const std::vector<std::string>& values_only) {
  return OutOfMemoryAsStatus(
      [&] {
        return RestoreCheckpointsOrThrow(ctx, mtable, basenames, strict, keep,
                                         resharded, values_only);
      },
      OutOfMemory);
}

// Restore replaces: every table of the graph that the checkpoint holds is
// emptied and then holds exactly the checkpoint's entries. Tables the
// checkpoint lacks keep their entries; the checkpoint's tables the graph
// lacks are skipped. Both are warnings, or with the strict attr an error
// raised before any table is touched.
class MultiHashTableRestoreOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableRestoreOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("strict", &strict_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("values_only", &values_only_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    std::string basename;
    OP_REQUIRES_OK(ctx, GetPathInput(ctx, 1, "basename", &basename));
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx,
                   HoldMultiHashTable(ctx, 0, /*exclusive=*/true, &mtable));
    OP_REQUIRES_OK(ctx, RestoreCheckpoints(ctx, mtable.get(), {basename},
                                           strict_, IdShard(),
                                           /*resharded=*/false, values_only_));
    ctx->set_output(0, ctx->input(0));
  }

 private:
  bool strict_ = false;
  std::vector<std::string> values_only_;
};

// Restores the checkpoints of the tables of an old PS layout (one per old
// PS task) into this PS's table, keeping only the entries whose id has
// floormod(id, id_modulus) == id_remainder: the ids a table at index
// id_remainder of id_modulus PS tasks holds (see RestoreCheckpoints).
class MultiHashTableRestoreReshardedOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableRestoreReshardedOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("strict", &strict_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("id_modulus", &keep_.modulus));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("id_remainder", &keep_.remainder));
    OP_REQUIRES_OK(ctx, CheckIdShard(keep_.modulus, keep_.remainder));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("values_only", &values_only_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    const Tensor* basenames_tensor = nullptr;
    OP_REQUIRES_OK(ctx,
                   GetVectorInput(ctx, 1, "basenames", &basenames_tensor));
    OP_REQUIRES(ctx, basenames_tensor->dtype() == DT_STRING,
                errors::InvalidArgument("basenames must be string, got ",
                                        DataTypeString(
                                            basenames_tensor->dtype())));
    const auto flat = basenames_tensor->flat<tstring>();
    OP_REQUIRES(ctx, flat.size() > 0,
                errors::InvalidArgument("basenames is empty: give the "
                                        "checkpoint of every old PS table"));
    std::vector<std::string> basenames;
    std::unordered_set<std::string> seen;
    for (int64_t i = 0; i < flat.size(); ++i) {
      basenames.emplace_back(flat(i));
      OP_REQUIRES_OK(ctx, CheckPath("basenames[" + std::to_string(i) + "]",
                                    basenames.back()));
      OP_REQUIRES(ctx, seen.insert(basenames.back()).second,
                  errors::InvalidArgument("basenames holds ",
                                          basenames.back(), " twice"));
    }
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx,
                   HoldMultiHashTable(ctx, 0, /*exclusive=*/true, &mtable));
    OP_REQUIRES_OK(ctx, RestoreCheckpoints(ctx, mtable.get(), basenames,
                                           strict_, keep_,
                                           /*resharded=*/true, values_only_));
    ctx->set_output(0, ctx->input(0));
  }

 private:
  bool strict_ = false;
  IdShard keep_;
  std::vector<std::string> values_only_;
};

class MultiHashTableFeatureStatOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableFeatureStatOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    std::string basename;
    OP_REQUIRES_OK(ctx, GetPathInput(ctx, 0, "basename", &basename));
    TfFileSystem fs(ctx->env());
    ht::CheckpointInfo info;
    OP_REQUIRES_OK(ctx, ToTfStatus(ht::ReadCheckpointInfo(
                            &fs, basename, /*need_data=*/false, LogWarning,
                            &info)));
    Tensor* features;
    Tensor* counts;
    const int64_t n = static_cast<int64_t>(info.tables.size());
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {n}, &features));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {n}, &counts));
    for (int64_t i = 0; i < n; ++i) {
      features->flat<tstring>()(i) = info.tables[i].name;
      counts->flat<uint64_t>()(i) = info.tables[i].entries;
    }
  }
};

}  // namespace

// Shape function of the save and restore ops: a scalar handle and basename
// in, the handle out.
Status TableAndBasenameShape(shape_inference::InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"mtable", 0}, {"basename", 0}}));
  return shape_inference::ScalarShape(c);
}

// A small file written whole or not at all, from a graph
// (ht::ReplaceFile: a temporary of its own, synced, renamed over it).
// DistributedMultiTypeHashTable.save writes its PS count record so
// (tf.io.write_file truncates the file first: a kill part way left a
// record cut short).
class WriteFileAtomicallyOp : public GuardedOpKernel {
 public:
  using GuardedOpKernel::GuardedOpKernel;

  void ComputeUnguarded(OpKernelContext* ctx) override {
    std::string filename, contents;
    OP_REQUIRES_OK(ctx, GetPathInput(ctx, 0, "filename", &filename));
    OP_REQUIRES_OK(ctx, GetScalarInput(ctx, 1, "contents", &contents));
    OP_REQUIRES(ctx, !filename.empty(),
                errors::InvalidArgument("filename is empty"));
    TfFileSystem fs(ctx->env());
    const ht::Status s = ht::ReplaceFile(
        &fs, filename,
        ht::ReplaceFileTemporary(filename, random::New64(), random::New64()),
        contents);
    OP_REQUIRES_OK(ctx,
                   WithPrefix("writing " + filename + ": ", ToTfStatus(s)));
  }
};

REGISTER_OP("MonolithWriteFileAtomically")
    .Input("filename: string")
    .Input("contents: string")
    .SetIsStateful()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      return CheckInputRanks(c, {{"filename", 0}, {"contents", 0}});
    });
REGISTER_KERNEL_BUILDER(Name("MonolithWriteFileAtomically").Device(DEVICE_CPU),
                        WriteFileAtomicallyOp);

REGISTER_OP("MonolithMultiHashTableSave")
    .Input("mtable: resource")
    .Input("basename: string")
    .Output("output_mtable: resource")
    .Attr("nshards: int = -1")
    .Attr("slot_expire_time_config: string = ''")
    .Attr("compression_type: string = 'SNAPPY'")
    .SetIsStateful()
    .SetShapeFn(TableAndBasenameShape);
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableSave").Device(DEVICE_CPU),
                        MultiHashTableSaveOp);

REGISTER_OP("MonolithMultiHashTableRestore")
    .Input("mtable: resource")
    .Input("basename: string")
    .Output("output_mtable: resource")
    .Attr("strict: bool = false")
    .Attr("values_only: list(string) = []")
    .SetIsStateful()
    .SetShapeFn(TableAndBasenameShape);
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableRestore").Device(DEVICE_CPU),
    MultiHashTableRestoreOp);

REGISTER_OP("MonolithMultiHashTableRestoreResharded")
    .Input("mtable: resource")
    .Input("basenames: string")
    .Output("output_mtable: resource")
    .Attr("id_modulus: int >= 1")
    .Attr("id_remainder: int >= 0")
    .Attr("strict: bool = false")
    .Attr("values_only: list(string) = []")
    .SetIsStateful()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      TF_RETURN_IF_ERROR(
          CheckInputRanks(c, {{"mtable", 0}, {"basenames", 1}}));
      int64_t modulus = 0;
      int64_t remainder = 0;
      TF_RETURN_IF_ERROR(c->GetAttr("id_modulus", &modulus));
      TF_RETURN_IF_ERROR(c->GetAttr("id_remainder", &remainder));
      TF_RETURN_IF_ERROR(CheckIdShard(modulus, remainder));
      return shape_inference::ScalarShape(c);
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableRestoreResharded").Device(DEVICE_CPU),
    MultiHashTableRestoreReshardedOp);

REGISTER_OP("MonolithMultiHashTableFeatureStat")
    .Input("basename: string")
    .Output("features: string")
    .Output("counts: uint64")
    .SetIsStateful()
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"basename", 0}}));
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(c->UnknownDim()));
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableFeatureStat").Device(DEVICE_CPU),
    MultiHashTableFeatureStatOp);

}  // namespace monolith_tf
}  // namespace tensorflow
