// Checkpoints of a multi hash table, in the original's format:
//   basename-SSSSS-of-NNNNN       SNAPPY TFRecord of EntryDump, grouped by
//                                 table in the order of the meta records
//                                 (or, with the save op's compression_type
//                                 "", an uncompressed TFRecord: restore
//                                 tells them apart by the first record's
//                                 header checksum)
//   basename.meta-SSSSS-of-NNNNN  TFRecord of MultiHashTableMetadata, one per
//                                 table: its name and how many entries follow
// Each shard is written to temporary names and renamed when complete, so a
// crash never leaves a half checkpoint under the final names. Shards are
// saved and restored in parallel on TF's CPU worker threads, and every
// finished shard is logged (entries, bytes, seconds) as progress.
#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/ops/multi_hash_table.h"
#include "monolith/native_training/runtime/ops/record_file.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/lib/io/path.h"
#include "tensorflow/core/platform/env.h"
#include "tensorflow/core/platform/mutex.h"
#include "tensorflow/core/platform/random.h"

namespace tensorflow {
namespace monolith_tf {
namespace {

using ::monolith::hash_table::EmbeddingHashTable;
using ::monolith::hash_table::EntryDump;
using ::monolith::hash_table::MultiHashTableMetadata;
using ::monolith::hash_table::SlotExpireTimeConfig;
using ::monolith::hash_table::SlotExpireTimes;

std::string ShardName(const std::string& basename, int shard, int nshards) {
  char suffix[32];
  snprintf(suffix, sizeof(suffix), "-%05d-of-%05d", shard, nshards);
  return basename + suffix;
}

std::string MetaName(const std::string& basename, int shard, int nshards) {
  char suffix[40];
  snprintf(suffix, sizeof(suffix), ".meta-%05d-of-%05d", shard, nshards);
  return basename + suffix;
}

std::string RegexEscape(const std::string& text) {
  static const std::regex kSpecial(R"([.^$|()\[\]{}*+?\\])");
  return std::regex_replace(text, kSpecial, R"(\$&)");
}

// The shard count of the checkpoint at |basename|, from the names of its
// files (only exact "<basename><kind>-SSSSS-of-NNNNN" names count: neither
// temporary files nor the other kind of file), after checking that every
// data and meta shard exists.
Status FindShards(Env* env, const std::string& basename, bool meta_only,
                  int* nshards) {
  std::vector<std::string> files;
  TF_RETURN_IF_ERROR(env->GetMatchingPaths(basename + "*", &files));
  const std::regex pattern(RegexEscape(basename) +
                           R"((\.meta)?-(\d{5})-of-(\d{5}))");
  int found = -1;
  for (const std::string& file : files) {
    std::smatch m;
    if (!std::regex_match(file, m, pattern)) continue;
    const int n = std::stoi(m[3].str());
    if (found >= 0 && n != found) {
      return errors::DataLoss("checkpoint ", basename,
                              " mixes shard counts ", found, " and ", n,
                              " (", file, ")");
    }
    found = n;
  }
  if (found <= 0) {
    return errors::NotFound("no multi hash table checkpoint at ", basename,
                            " (expected ", ShardName(basename, 0, 1),
                            " and its .meta file)");
  }
  for (int s = 0; s < found; ++s) {
    std::vector<std::string> needed = {MetaName(basename, s, found)};
    if (!meta_only) needed.push_back(ShardName(basename, s, found));
    for (const std::string& file : needed) {
      if (!env->FileExists(file).ok()) {
        return errors::NotFound("checkpoint shard ", file, " is missing");
      }
    }
  }
  *nshards = found;
  return OkStatus();
}

// Logs every finished shard of a save or restore and then the whole, so a
// long one shows its progress: entries, checkpoint bytes, seconds.
class ShardProgress {
 public:
  ShardProgress(Env* env, const char* verb, std::string basename, int nshards)
      : env_(env),
        verb_(verb),
        basename_(std::move(basename)),
        nshards_(nshards),
        start_micros_(env->NowMicros()) {}

  // |files|: the shard's files, whose sizes count as its bytes.
  void ShardDone(int shard, int64_t entries,
                 const std::vector<std::string>& files) {
    uint64_t bytes = 0;
    for (const std::string& file : files) {
      uint64_t size = 0;
      if (env_->GetFileSize(file, &size).ok()) bytes += size;
    }
    mutex_lock lock(mu_);
    ++done_;
    entries_ += entries;
    bytes_ += bytes;
    LOG(INFO) << verb_ << " shard " << shard << " of " << basename_ << ": "
              << entries << " entries, " << bytes << " bytes (" << done_
              << " of " << nshards_ << " shards done, "
              << Seconds() << " s)";
  }

  void Finish() {
    mutex_lock lock(mu_);
    const double seconds = Seconds();
    LOG(INFO) << verb_ << " " << entries_ << " entries of " << basename_
              << " (" << nshards_ << " shards, " << bytes_ << " bytes) in "
              << seconds << " s, "
              << (seconds > 0 ? bytes_ / 1e6 / seconds : 0) << " MB/s";
  }

 private:
  double Seconds() const {
    return (env_->NowMicros() - start_micros_) / 1e6;
  }

  Env* const env_;
  const char* const verb_;
  const std::string basename_;
  const int nshards_;
  const uint64_t start_micros_;
  mutex mu_;
  int done_ = 0;
  int64_t entries_ = 0;
  uint64_t bytes_ = 0;
};

class MultiHashTableSaveOp : public OpKernel {
 public:
  explicit MultiHashTableSaveOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("nshards", &nshards_));
    std::string compression;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("compression_type", &compression));
    OP_REQUIRES(ctx, compression == "SNAPPY" || compression.empty(),
                errors::InvalidArgument(
                    "compression_type must be \"SNAPPY\" (the original's "
                    "format) or \"\" (uncompressed), got \"", compression,
                    "\""));
    snappy_ = compression == "SNAPPY";
    std::string expire;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("slot_expire_time_config", &expire));
    if (!expire.empty()) {
      SlotExpireTimeConfig config;
      OP_REQUIRES(ctx, config.ParseFromString(expire),
                  errors::InvalidArgument("slot_expire_time_config is not a "
                                          "serialized SlotExpireTimeConfig"));
      expire_times_ = std::make_unique<SlotExpireTimes>(config);
    }
  }

  void Compute(OpKernelContext* ctx) override {
    core::RefCountPtr<MultiHashTable> mtable;
    OP_REQUIRES_OK(ctx, LookupResource(ctx, HandleFromInput(ctx, 0), &mtable));
    const std::string basename(ctx->input(1).scalar<tstring>()());
    int nshards = nshards_;
    if (nshards < 0) {
      // One shard per 100k entries, up to the worker threads (at least 4,
      // the original's maximum): shards are written in parallel.
      int64_t entries = 0;
      for (int t = 0; t < mtable->size(); ++t) {
        entries += mtable->table(t).table->Size();
      }
      const int64_t threads =
          ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
      nshards = static_cast<int>(std::min<int64_t>(
          std::max<int64_t>(4, threads), std::max<int64_t>(1, entries / 100000)));
    }
    OP_REQUIRES(ctx, nshards > 0,
                errors::InvalidArgument("nshards must be positive, got ",
                                        nshards));
    const std::string dir(io::Dirname(basename));
    if (!dir.empty()) {
      OP_REQUIRES_OK(ctx, ctx->env()->RecursivelyCreateDir(dir));
    }
    ShardProgress progress(ctx->env(), "Saved", basename, nshards);
    OP_REQUIRES_OK(ctx, ParallelFor(ctx, nshards, [&](int64_t shard) {
                     return SaveShard(ctx->env(), *mtable, basename, shard,
                                      nshards, &progress);
                   }));
    progress.Finish();
    ctx->set_output(0, ctx->input(0));
  }

 private:
  bool Expired(const MultiHashTable::Table& table, int64_t id,
               int64_t update_time, int64_t now) const {
    // The attr's expire times, when given, override the table's.
    return expire_times_ ? expire_times_->IsExpired(id, update_time, now)
                         : table.table->IsExpired(id, update_time, now);
  }

  Status SaveShard(Env* env, const MultiHashTable& mtable,
                   const std::string& basename, int shard, int nshards,
                   ShardProgress* progress) const {
    const std::string data_name = ShardName(basename, shard, nshards);
    const std::string meta_name = MetaName(basename, shard, nshards);
    const std::string tmp_suffix = "-tmp-" + std::to_string(random::New64());
    const std::string tmp_data = data_name + tmp_suffix;
    const std::string tmp_meta = meta_name + tmp_suffix;
    int64_t entries = 0;
    Status s = WriteShard(env, mtable, shard, nshards, tmp_data, tmp_meta,
                          &entries);
    if (s.ok()) s = env->RenameFile(tmp_data, data_name);
    if (s.ok()) s = env->RenameFile(tmp_meta, meta_name);
    if (!s.ok()) {
      env->DeleteFile(tmp_data).IgnoreError();
      env->DeleteFile(tmp_meta).IgnoreError();
      return s;
    }
    progress->ShardDone(shard, entries, {data_name, meta_name});
    return OkStatus();
  }

  Status WriteShard(Env* env, const MultiHashTable& mtable, int shard,
                    int nshards, const std::string& data_path,
                    const std::string& meta_path,
                    int64_t* shard_entries) const {
    std::unique_ptr<WritableFile> data_file, meta_file;
    TF_RETURN_IF_ERROR(env->NewWritableFile(data_path, &data_file));
    TF_RETURN_IF_ERROR(env->NewWritableFile(meta_path, &meta_file));
    RecordFileWriter data_writer(data_file.get(), snappy_);
    RecordFileWriter meta_writer(meta_file.get(), /*snappy=*/false);
    for (int t = 0; t < mtable.size(); ++t) {
      const MultiHashTable::Table& table = mtable.table(t);
      const int64_t now = table.max_update_ts.load();
      int64_t entries = 0;
      Status write_status;
      TF_RETURN_IF_ERROR(ToTfStatus(table.table->Save(
          shard, nshards, /*now=*/0,
          [&](const EmbeddingHashTable::SavedEntry& entry)
              -> ::monolith::hash_table::Status {
            if (Expired(table, entry.id, entry.update_time, now)) {
              return ::monolith::hash_table::Status::OK();
            }
            write_status = data_writer.Write(
                std::string_view(entry.dump, entry.dump_size));
            if (!write_status.ok()) {
              return ::monolith::hash_table::DataLossError(
                  std::string(write_status.message()));
            }
            ++entries;
            return ::monolith::hash_table::Status::OK();
          })));
      MultiHashTableMetadata meta;
      meta.set_table_name(table.name);
      meta.set_num_entries(entries);
      *shard_entries += entries;
      TF_RETURN_IF_ERROR(meta_writer.Write(meta.SerializeAsString()));
    }
    TF_RETURN_IF_ERROR(data_writer.Close());
    TF_RETURN_IF_ERROR(meta_writer.Close());
    TF_RETURN_IF_ERROR(data_file->Close());
    return meta_file->Close();
  }

  int nshards_ = -1;
  bool snappy_ = true;
  std::unique_ptr<SlotExpireTimes> expire_times_;
};

class MultiHashTableRestoreOp : public OpKernel {
 public:
  explicit MultiHashTableRestoreOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    core::RefCountPtr<MultiHashTable> mtable;
    OP_REQUIRES_OK(ctx, LookupResource(ctx, HandleFromInput(ctx, 0), &mtable));
    const std::string basename(ctx->input(1).scalar<tstring>()());
    int nshards = 0;
    OP_REQUIRES_OK(ctx, FindShards(ctx->env(), basename, false, &nshards));
    std::vector<std::vector<std::string>> tables_seen(nshards);
    ShardProgress progress(ctx->env(), "Restored", basename, nshards);
    OP_REQUIRES_OK(ctx, ParallelFor(ctx, nshards, [&](int64_t shard) {
                     return RestoreShard(ctx->env(), mtable.get(), basename,
                                         shard, nshards, &tables_seen[shard],
                                         &progress);
                   }));
    progress.Finish();
    for (int t = 0; t < mtable->size(); ++t) {
      const std::string& name = mtable->table(t).name;
      if (std::find(tables_seen[0].begin(), tables_seen[0].end(), name) ==
          tables_seen[0].end()) {
        LOG(WARNING) << "Table " << name << " is not in checkpoint "
                     << basename << "; it keeps its current entries.";
      }
    }
    ctx->set_output(0, ctx->input(0));
  }

 private:
  static Status RestoreShard(Env* env, MultiHashTable* mtable,
                             const std::string& basename, int shard,
                             int nshards, std::vector<std::string>* seen,
                             ShardProgress* progress) {
    std::unique_ptr<RecordFileReader> meta, data;
    TF_RETURN_IF_ERROR(RecordFileReader::Open(
        env, MetaName(basename, shard, nshards), false, &meta));
    const std::string data_name = ShardName(basename, shard, nshards);
    bool uncompressed = false;
    TF_RETURN_IF_ERROR(IsUncompressedRecordFile(env, data_name, &uncompressed));
    TF_RETURN_IF_ERROR(
        RecordFileReader::Open(env, data_name, !uncompressed, &data));
    StringPiece record;
    EntryDump dump;
    int64_t restored_entries = 0;
    while (true) {
      Status s = meta->Next(&record);
      if (errors::IsOutOfRange(s)) break;
      TF_RETURN_IF_ERROR(s);
      MultiHashTableMetadata table_meta;
      if (!table_meta.ParseFromArray(record.data(), record.size())) {
        return errors::DataLoss(meta->path(),
                                ": a record is not MultiHashTableMetadata");
      }
      seen->push_back(table_meta.table_name());
      const int t = mtable->Find(table_meta.table_name());
      if (t < 0 && shard == 0) {
        LOG(INFO) << "Table " << table_meta.table_name() << " of checkpoint "
                  << basename << " is not in the graph; skipped.";
      }
      for (uint64_t i = 0; i < table_meta.num_entries(); ++i) {
        s = data->Next(&record);
        if (errors::IsOutOfRange(s)) {
          return errors::DataLoss(data->path(), " ends after ", i, " of ",
                                  table_meta.num_entries(), " entries of table ",
                                  table_meta.table_name(), " (truncated)");
        }
        TF_RETURN_IF_ERROR(s);
        if (t < 0) continue;
        MultiHashTable::Table& table = mtable->table(t);
        int64_t update_time = 0;
        Status restored = ToTfStatus(table.table->RestoreRecord(
            record.data(), record.size(), &dump, &update_time));
        if (errors::IsDataLoss(restored)) {
          return errors::DataLoss(data->path(), ": entry ", i, " of table ",
                                  table_meta.table_name(),
                                  " is not an EntryDump");
        }
        if (!restored.ok()) {
          return errors::InvalidArgument(data->path(), ": table ",
                                         table.name, ": ",
                                         restored.message());
        }
        table.SeenUpdate(update_time);
        ++restored_entries;
      }
    }
    Status s = data->Next(&record);
    if (!errors::IsOutOfRange(s)) {
      TF_RETURN_IF_ERROR(s);
      return errors::DataLoss(data->path(),
                              " has more entries than its meta file lists");
    }
    progress->ShardDone(shard, restored_entries,
                        {data_name, MetaName(basename, shard, nshards)});
    return OkStatus();
  }
};

class MultiHashTableFeatureStatOp : public OpKernel {
 public:
  explicit MultiHashTableFeatureStatOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const std::string basename(ctx->input(0).scalar<tstring>()());
    int nshards = 0;
    OP_REQUIRES_OK(ctx, FindShards(ctx->env(), basename, true, &nshards));
    std::vector<std::string> names;
    std::map<std::string, uint64_t> counts;
    for (int shard = 0; shard < nshards; ++shard) {
      std::unique_ptr<RecordFileReader> meta;
      OP_REQUIRES_OK(ctx, RecordFileReader::Open(
                              ctx->env(), MetaName(basename, shard, nshards),
                              false, &meta));
      StringPiece record;
      while (true) {
        Status s = meta->Next(&record);
        if (errors::IsOutOfRange(s)) break;
        OP_REQUIRES_OK(ctx, s);
        MultiHashTableMetadata table_meta;
        OP_REQUIRES(ctx, table_meta.ParseFromArray(record.data(), record.size()),
                    errors::DataLoss(meta->path(),
                                     ": a record is not MultiHashTableMetadata"));
        if (!counts.count(table_meta.table_name())) {
          names.push_back(table_meta.table_name());
        }
        counts[table_meta.table_name()] += table_meta.num_entries();
      }
    }
    Tensor* features;
    Tensor* feature_counts;
    const int64_t n = names.size();
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {n}, &features));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, {n}, &feature_counts));
    for (int64_t i = 0; i < n; ++i) {
      features->flat<tstring>()(i) = names[i];
      feature_counts->flat<uint64_t>()(i) = counts[names[i]];
    }
  }
};

}  // namespace

REGISTER_OP("MonolithMultiHashTableSave")
    .Input("mtable: resource")
    .Input("basename: string")
    .Output("output_mtable: resource")
    .Attr("nshards: int = -1")
    .Attr("slot_expire_time_config: string = ''")
    .Attr("compression_type: string = 'SNAPPY'")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->Scalar());
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(Name("MonolithMultiHashTableSave").Device(DEVICE_CPU),
                        MultiHashTableSaveOp);

REGISTER_OP("MonolithMultiHashTableRestore")
    .Input("mtable: resource")
    .Input("basename: string")
    .Output("output_mtable: resource")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->Scalar());
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableRestore").Device(DEVICE_CPU),
    MultiHashTableRestoreOp);

REGISTER_OP("MonolithMultiHashTableFeatureStat")
    .Input("basename: string")
    .Output("features: string")
    .Output("counts: uint64")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(c->UnknownDim()));
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableFeatureStat").Device(DEVICE_CPU),
    MultiHashTableFeatureStatOp);

}  // namespace monolith_tf
}  // namespace tensorflow
