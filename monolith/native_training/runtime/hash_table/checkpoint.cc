#include "monolith/native_training/runtime/hash_table/checkpoint.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/record_file.h"
#include "monolith/native_training/runtime/hash_table/sharded_files.h"

namespace monolith {
namespace hash_table {
namespace {

// "[8, 8]": segment dims for messages; a long list (a hostile meta file's)
// is cut after 16.
template <typename Dims>
std::string DimList(const Dims& dims) {
  constexpr int kShown = 16;
  std::string out = "[";
  int n = 0;
  for (uint32_t dim : dims) {
    if (n > 0) out += ", ";
    if (n++ == kShown) {
      out += "... " + std::to_string(dims.size()) + " in all";
      break;
    }
    out += std::to_string(dim);
  }
  return out + "]";
}

// A file of a checkpoint, from its name.
struct ShardFile : ShardName {
  bool meta = false;
};

// Whether |name| is "<prefix>[.meta]-SSSSS-of-NNNNN[-tmp-...]".
bool ParseShardFile(std::string_view name, const std::string& prefix,
                    ShardFile* file) {
  file->meta = ParseShardFileName(name, prefix + ".meta", file);
  return file->meta || ParseShardFileName(name, prefix, file);
}

// Logs how far a save or restore got every |every| (entries so far, of how
// many where known), every finished shard, and then the whole: entries,
// checkpoint bytes, seconds. Shards run in parallel and finish together,
// so the periodic lines are what shows a long one's progress. Its Counters
// also ask |cancelled| whether to stop.
class ShardProgress {
 public:
  // Records are counted in batches of this many (Counter): a clock read
  // per record would cost a tenth of a restore's time.
  static constexpr int64_t kCountBatch = 4096;

  ShardProgress(const LogFn& log, const char* verb, std::string basename,
                int nshards, std::chrono::milliseconds every,
                const CancelledFn& cancelled, int64_t total_entries = -1)
      : log_(log),
        cancelled_(cancelled),
        verb_(verb),
        basename_(std::move(basename)),
        nshards_(nshards),
        every_(every),
        total_entries_(total_entries),
        start_(std::chrono::steady_clock::now()),
        next_line_(start_ + every) {}

  // Counts |entries| more records written or read, and logs where the
  // whole stands once |every| has passed since the last such line.
  void Count(int64_t entries) {
    const int64_t so_far =
        counted_.fetch_add(entries, std::memory_order_relaxed) + entries;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    if (now < next_line_) return;
    next_line_ = now + every_;
    const double seconds = Seconds();
    std::string line = std::string(verb_) + " " + std::to_string(so_far);
    if (total_entries_ >= 0) {
      // A save's estimate may fall short (entries inserted meanwhile).
      const int64_t total = std::max(total_entries_, so_far);
      line += " of " + std::to_string(total) + " entries (" +
              std::to_string(total > 0 ? 100 * so_far / total : 100) + "%)";
    } else {
      line += " entries";
    }
    Log(log_, line + " of " + basename_ + " so far (" + std::to_string(done_) +
                  " of " + std::to_string(nshards_) + " shards done, " +
                  std::to_string(seconds) + " s, " +
                  std::to_string(static_cast<int64_t>(
                      seconds > 0 ? so_far / seconds : 0)) +
                  " entries/s)");
  }

  // Counts one shard's records for Count, kCountBatch at a time.
  class Counter {
   public:
    explicit Counter(ShardProgress* progress) : progress_(progress) {}
    Counter(const Counter&) = delete;
    Counter& operator=(const Counter&) = delete;
    // Counts a record; Cancelled once the caller gave up (asked once a
    // batch).
    Status Add() {
      if (++pending_ < kCountBatch) return Status::OK();
      Flush();
      return progress_->CheckCancelled();
    }
    // Counts what Add left (a shard's last records, before its ShardDone).
    void Flush() {
      if (pending_ > 0) progress_->Count(pending_);
      pending_ = 0;
    }

   private:
    ShardProgress* progress_;
    int64_t pending_ = 0;
  };

  void ShardDone(int shard, int64_t entries, uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    ++done_;
    entries_ += entries;
    bytes_ += bytes;
    Log(log_, std::string(verb_) + " shard " + std::to_string(shard) + " of " +
                  basename_ + ": " + std::to_string(entries) + " entries, " +
                  std::to_string(bytes) + " bytes (" + std::to_string(done_) +
                  " of " + std::to_string(nshards_) + " shards done, " +
                  std::to_string(Seconds()) + " s)");
  }

  void Finish() {
    std::lock_guard<std::mutex> lock(mu_);
    const double seconds = Seconds();
    Log(log_, std::string(verb_) + " " + std::to_string(entries_) +
                  " entries of " + basename_ + " (" + std::to_string(nshards_) +
                  " shards, " + std::to_string(bytes_) + " bytes) in " +
                  std::to_string(seconds) + " s, " +
                  std::to_string(seconds > 0 ? bytes_ / 1e6 / seconds : 0) +
                  " MB/s");
  }

  int64_t entries() const { return entries_; }
  uint64_t bytes() const { return bytes_; }

 private:
  Status CheckCancelled() const {
    if (!cancelled_ || !cancelled_()) return Status::OK();
    return CancelledError(
        std::string(verb_) + " " +
        std::to_string(counted_.load(std::memory_order_relaxed)) +
        " entries of " + basename_ +
        " when it was cancelled (its caller gave up: a deadline passed or "
        "the session closed)");
  }

  double Seconds() const { return SecondsSince(start_); }

  const LogFn& log_;
  const CancelledFn& cancelled_;
  const char* const verb_;
  const std::string basename_;
  const int nshards_;
  const std::chrono::milliseconds every_;
  // -1: not known; a save's is an estimate (SaveOptions::expected_entries).
  const int64_t total_entries_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<int64_t> counted_{0};
  std::mutex mu_;
  std::chrono::steady_clock::time_point next_line_;
  int done_ = 0;
  int64_t entries_ = 0;
  uint64_t bytes_ = 0;
};

uint32_t ExtendDigest(uint32_t digest, uint32_t record_crc) {
  char bytes[sizeof(record_crc)];
  std::memcpy(bytes, &record_crc, sizeof(bytes));  // x86-64: little-endian
  return ExtendCrc32c(digest, bytes, sizeof(bytes));
}

struct ShardWrite {
  std::string tmp_data;
  std::string tmp_meta;
  int64_t entries = 0;
  uint64_t bytes = 0;
};

Status WriteShard(FileSystem* fs, const std::vector<std::string>& table_names,
                  const TableSaver& save_table, const SaveOptions& options,
                  uint64_t save_id, int64_t save_time_micros, int shard,
                  ShardProgress::Counter* counter, ShardWrite* out) {
  const int nshards = options.nshards;
  std::vector<MultiHashTableMetadata> metas(table_names.size());
  uint64_t data_bytes = 0;
  MONOLITH_RETURN_IF_ERROR(WriteWholeFile(
      fs, out->tmp_data, [&](WritableFile* file) -> Status {
        RecordFileWriter data_writer(file, options.snappy);
        for (size_t t = 0; t < table_names.size(); ++t) {
          uint64_t entries = 0;
          uint32_t digest = 0;
          MONOLITH_RETURN_IF_ERROR(save_table(
              static_cast<int>(t), shard, nshards,
              [&](std::string_view record) -> Status {
                MONOLITH_RETURN_IF_ERROR(data_writer.Write(record));
                digest = ExtendDigest(digest, data_writer.last_record_crc());
                ++entries;
                return counter->Add();
              }));
          MultiHashTableMetadata& meta = metas[t];
          meta.set_table_name(table_names[t]);
          meta.set_num_entries(entries);
          meta.set_save_id(save_id);
          meta.set_save_time_micros(save_time_micros);
          meta.set_shard(shard);
          meta.set_num_shards(nshards);
          meta.set_num_tables(static_cast<uint32_t>(table_names.size()));
          meta.set_entries_crc32c(digest);
          if (!options.segment_dims.empty()) {
            for (uint32_t dim : options.segment_dims[t]) {
              meta.add_segment_dims(dim);
            }
          }
          if (!options.values_only.empty() && options.values_only[t]) {
            meta.set_values_only(true);
          }
          out->entries += static_cast<int64_t>(entries);
        }
        MONOLITH_RETURN_IF_ERROR(data_writer.Close());
        data_bytes = data_writer.file_bytes();
        return Status::OK();
      }));
  uint64_t meta_bytes = 0;
  MONOLITH_RETURN_IF_ERROR(WriteWholeFile(
      fs, out->tmp_meta, [&](WritableFile* file) -> Status {
        RecordFileWriter meta_writer(file, /*snappy=*/false);
        for (MultiHashTableMetadata& meta : metas) {
          meta.set_data_file_bytes(data_bytes);
          MONOLITH_RETURN_IF_ERROR(meta_writer.Write(meta.SerializeAsString()));
        }
        MONOLITH_RETURN_IF_ERROR(meta_writer.Close());
        meta_bytes = meta_writer.file_bytes();
        return Status::OK();
      }));
  out->bytes = data_bytes + meta_bytes;
  return Status::OK();
}

std::string DescribeSave(const std::string& meta_path,
                         const MultiHashTableMetadata& meta) {
  if (!meta.has_save_id()) return meta_path + " has no save id";
  return meta_path + " is " +
         DescribeSaveId(meta.save_id(), meta.save_time_micros());
}

// Where |info|'s shards are: the final names of its |nshards| shards, or
// (|save| not null) the files of that interrupted save among |listed|.
Status PlaceShards(const std::string& basename, int nshards,
                   const InterruptedSave* save,
                   const std::set<std::string>& listed, CheckpointInfo* info) {
  info->shards.resize(nshards);
  for (int s = 0; s < nshards; ++s) {
    CheckpointInfo::Shard& shard = info->shards[s];
    if (save == nullptr) {
      shard.meta_path = CheckpointMetaName(basename, s, nshards);
      shard.data_path = CheckpointDataName(basename, s, nshards);
      continue;
    }
    shard.meta_path = InterruptedSavePath(listed, basename + ".meta", s, *save);
    shard.data_path = InterruptedSavePath(listed, basename, s, *save);
    if (shard.meta_path.empty() || shard.data_path.empty()) {
      return NotFoundError(
          (shard.meta_path.empty() ? CheckpointMetaName(basename, s, nshards)
                                   : CheckpointDataName(basename, s, nshards)) +
          " is missing, with or without " + save->temp_suffix);
    }
  }
  return Status::OK();
}

// Reads and cross-checks the meta files of the |nshards|-shard checkpoint
// at |basename|: its final names, or (|save| not null) the files the
// interrupted save |save| left, all of which must be that save's.
Status ReadMetaFiles(FileSystem* fs, const std::string& basename, int nshards,
                     const InterruptedSave* save,
                     const std::set<std::string>& listed, bool need_data,
                     CheckpointInfo* info) {
  *info = CheckpointInfo();
  info->basename = basename;
  info->nshards = nshards;
  if (save != nullptr) info->temp_suffix = save->temp_suffix;
  MONOLITH_RETURN_IF_ERROR(PlaceShards(basename, nshards, save, listed, info));
  MultiHashTableMetadata first;
  const std::string first_path = info->shards[0].meta_path;
  // Table name -> index into info->tables (a meta file may be hostile:
  // no scan per record).
  std::unordered_map<std::string, int> table_index;
  for (int s = 0; s < nshards; ++s) {
    CheckpointInfo::Shard& shard = info->shards[s];
    const std::string& path = shard.meta_path;
    std::unique_ptr<RecordFileReader> reader;
    MONOLITH_RETURN_IF_ERROR(
        OpenListedRecordFile(fs, path, /*snappy=*/false, &reader));
    shard.meta_file_bytes = reader->file_size();
    std::string_view record;
    for (int i = 0;; ++i) {
      const Status status = reader->Next(&record);
      if (status.code() == StatusCode::kOutOfRange) break;
      MONOLITH_RETURN_IF_ERROR(status);
      MultiHashTableMetadata meta;
      if (!meta.ParseFromArray(record.data(), static_cast<int>(record.size()))) {
        return DataLossError(path + ": " + reader->LastRecordPlace() +
                             " is not a MultiHashTableMetadata");
      }
      if (save != nullptr && (!meta.has_save_id() ||
                              TempSuffix(meta.save_id()) != save->temp_suffix)) {
        return DataLossError(path + " is not a file of the interrupted save " +
                             save->temp_suffix);
      }
      if (s == 0 && i == 0) {
        first = meta;
        info->has_identity = meta.has_save_id();
        info->save_id = meta.save_id();
        info->save_time_micros = meta.save_time_micros();
      } else if (meta.has_save_id() != info->has_identity ||
                 meta.save_id() != info->save_id) {
        return DataLossError(
            "checkpoint " + basename + " mixes saves: " +
            DescribeSave(path, meta) + ", " + DescribeSave(first_path, first) +
            " (a file copied from another checkpoint, or a save killed while "
            "renaming whose temporaries were deleted); restore another "
            "checkpoint");
      }
      if (info->has_identity) {
        if (meta.shard() != static_cast<uint32_t>(s) ||
            meta.num_shards() != static_cast<uint32_t>(nshards)) {
          return DataLossError(path + " was written as shard " +
                               std::to_string(meta.shard()) + " of " +
                               std::to_string(meta.num_shards()) +
                               " (renamed or copied from elsewhere)");
        }
        shard.has_data_file_bytes = true;
        if (i > 0 && meta.data_file_bytes() != shard.data_file_bytes) {
          return DataLossError(path + ": records disagree on the data file's "
                               "size");
        }
        shard.data_file_bytes = meta.data_file_bytes();
      }
      if (meta.has_num_tables() && meta.num_tables() != first.num_tables()) {
        return DataLossError(path + ": records disagree on the number of "
                             "tables");
      }
      const auto found = table_index.find(meta.table_name());
      int table = found == table_index.end() ? -1 : found->second;
      if (s == 0) {
        if (table >= 0) {
          return DataLossError(path + " lists table " + meta.table_name() +
                               " twice");
        }
        table = static_cast<int>(info->tables.size());
        table_index.emplace(meta.table_name(), table);
        info->tables.push_back(
            {meta.table_name(),
             0,
             {meta.segment_dims().begin(), meta.segment_dims().end()},
             meta.values_only()});
      } else if (i >= static_cast<int>(info->tables.size()) || table != i) {
        return DataLossError(
            path + " lists table \"" + meta.table_name() + "\" as its table " +
            std::to_string(i) + ", where " + first_path + " lists " +
            (i < static_cast<int>(info->tables.size())
                 ? "\"" + info->tables[i].name + "\""
                 : "only " + std::to_string(info->tables.size()) + " tables"));
      } else if (!std::equal(meta.segment_dims().begin(),
                             meta.segment_dims().end(),
                             info->tables[table].segment_dims.begin(),
                             info->tables[table].segment_dims.end())) {
        return DataLossError(path + ": table " + meta.table_name() +
                             " has segment dims " +
                             DimList(meta.segment_dims()) + ", where " +
                             first_path + " says " +
                             DimList(info->tables[table].segment_dims));
      } else if (meta.values_only() != info->tables[table].values_only) {
        return DataLossError(
            path + ": table " + meta.table_name() +
            (meta.values_only() ? " holds" : " does not hold") +
            " values only, where " + first_path + " says " +
            (meta.values_only() ? "it does not" : "it does"));
      }
      uint64_t& total = info->tables[table].entries;
      if (meta.num_entries() > UINT64_MAX - total) {
        return DataLossError(path + ": table " + meta.table_name() +
                             " claims more than 2^64 entries");
      }
      total += meta.num_entries();
      shard.tables.push_back({table, meta.num_entries(),
                              meta.has_entries_crc32c(),
                              meta.entries_crc32c()});
    }
    // Every MultiHashTable has a table, and every meta file a record per
    // table: none is a file cut short (or not a meta file).
    if (shard.tables.empty()) {
      return DataLossError(path + " holds no table record (truncated?)");
    }
    if (first.has_num_tables() && shard.tables.size() != first.num_tables()) {
      return DataLossError(path + " holds " +
                           std::to_string(shard.tables.size()) +
                           " table records where its save wrote " +
                           std::to_string(first.num_tables()) +
                           " (truncated at a record boundary)");
    }
    if (s > 0 && shard.tables.size() != info->tables.size()) {
      return DataLossError(path + " lists " +
                           std::to_string(shard.tables.size()) +
                           " tables, " + first_path + " lists " +
                           std::to_string(info->tables.size()));
    }
    if (need_data) {
      const std::string& data = shard.data_path;
      uint64_t size = 0;
      MONOLITH_RETURN_IF_ERROR(
          ListedFileStatus(fs, data, fs->GetFileSize(data, &size)));
      if (shard.has_data_file_bytes && size != shard.data_file_bytes) {
        return DataLossError(
            data + " has " + std::to_string(size) + " bytes where its meta "
            "file " + path + " says " + std::to_string(shard.data_file_bytes) +
            ": it is not the data file of that save (copied from another "
            "checkpoint, or truncated)");
      }
    }
  }
  return Status::OK();
}

Status RestoreShard(FileSystem* fs, const CheckpointInfo& info, int s,
                    const RecordRestorer& restore,
                    const TableRestored& table_restored,
                    ShardProgress* progress) {
  const std::string& data_path = info.shards[s].data_path;
  const std::string& meta_path = info.shards[s].meta_path;
  std::unique_ptr<RecordFileReader> reader;
  MONOLITH_RETURN_IF_ERROR(ListedFileStatus(
      fs, data_path,
      RecordFileReader::OpenDetectingFormat(fs, data_path, &reader)));
  const bool uncompressed = !reader->snappy();
  std::string_view record;
  int64_t entries = 0;
  ShardProgress::Counter counter(progress);
  for (const CheckpointInfo::ShardTable& table : info.shards[s].tables) {
    const std::string& name = info.tables[table.table].name;
    uint32_t digest = 0;
    for (uint64_t i = 0; i < table.entries; ++i) {
      Status status = reader->Next(&record);
      if (status.code() == StatusCode::kOutOfRange) {
        return DataLossError(data_path + " ends after " + std::to_string(i) +
                             " of " + std::to_string(table.entries) +
                             " entries of table " + name + " (truncated)");
      }
      if (status.code() == StatusCode::kDataLoss && entries == 0 && i == 0 &&
          !uncompressed) {
        // The format is told by the first record's header: one damaged
        // there makes an uncompressed file read as SNAPPY blocks.
        return DataLossError(std::string(status.message()) +
                             " (its first bytes are not a valid record "
                             "header, so it was read as SNAPPY; an "
                             "uncompressed file whose first record header "
                             "is damaged reads so too)");
      }
      MONOLITH_RETURN_IF_ERROR(status);
      digest = ExtendDigest(digest, reader->last_record_crc());
      status = restore(s, table.table, record);
      if (!status.ok()) {
        return Prefixed(data_path + ": " + reader->LastRecordPlace() +
                            ", entry " + std::to_string(i) + " of table " +
                            name + ": ",
                        status);
      }
      MONOLITH_RETURN_IF_ERROR(counter.Add());
    }
    if (table.has_crc && digest != table.entries_crc32c) {
      return DataLossError(data_path + ": the entries of table " + name +
                           " are not the ones its meta file " + meta_path +
                           " was saved with (the data file comes from "
                           "another save)");
    }
    if (table_restored) {
      const Status status = table_restored(s, table.table);
      if (!status.ok()) {
        return Prefixed(data_path + ": table " + name + ": ", status);
      }
    }
    entries += static_cast<int64_t>(table.entries);
  }
  Status status = reader->Next(&record);
  if (status.code() != StatusCode::kOutOfRange) {
    MONOLITH_RETURN_IF_ERROR(status);
    const std::string listed = std::to_string(entries);
    return DataLossError(
        data_path + " has more entries than its meta file lists (" + listed +
        "): " + reader->LastRecordPlace() + " is past them");
  }
  counter.Flush();
  // The sizes the readers measured when they opened the files.
  progress->ShardDone(s, entries,
                      reader->file_size() + info.shards[s].meta_file_bytes);
  return Status::OK();
}

// Sets *newer to whether meta file |path| (of an incomplete shard count)
// records a save of ours newer than |chosen|'s; a file whose content does
// not read tells nothing (false), and a storage error is returned (read as
// "not newer", the older save would be restored silently).
Status IsNewerSave(FileSystem* fs, const std::string& path,
                   const CheckpointInfo& chosen, bool* newer) {
  *newer = false;
  std::unique_ptr<RecordFileReader> reader;
  std::string_view record;
  Status read = OpenListedRecordFile(fs, path, /*snappy=*/false, &reader);
  if (read.ok()) read = reader->Next(&record);
  if (!read.ok()) return IsFileContentError(read) ? Status::OK() : read;
  MultiHashTableMetadata meta;
  if (!meta.ParseFromArray(record.data(), static_cast<int>(record.size())) ||
      !meta.has_save_id()) {
    return Status::OK();
  }
  // The original's saves carry no identity and are older than any of ours.
  *newer = !chosen.has_identity ||
           meta.save_time_micros() > chosen.save_time_micros;
  return Status::OK();
}

// ReadCheckpointInfo's reading of the final names among |files| (a
// basename's, listed).
Status ReadFinalNames(FileSystem* fs, const std::string& basename,
                      const std::vector<std::pair<std::string, ShardFile>>& files,
                      const std::set<std::string>& listed, bool need_data,
                      const LogFn& log, CheckpointInfo* info) {
  const std::string expected = " (expected " +
                               CheckpointDataName(basename, 0, 1) +
                               " and its .meta file)";
  // Shards present per shard count, as {data, meta}.
  std::map<int, std::pair<std::set<int>, std::set<int>>> counts;
  for (const auto& [path, file] : files) {
    if (file.temp) continue;
    auto& present = counts[file.nshards];
    (file.meta ? present.second : present.first).insert(file.shard);
  }
  if (counts.empty()) {
    return NotFoundError("no multi hash table checkpoint at " + basename +
                         expected);
  }
  std::vector<int> complete;
  // Per incomplete shard count, the first file it lacks.
  std::map<int, std::string> missing;
  for (const auto& [nshards, present] : counts) {
    const bool has_meta = static_cast<int>(present.second.size()) == nshards;
    const bool has_data = static_cast<int>(present.first.size()) == nshards;
    if (has_meta && (has_data || !need_data)) {
      complete.push_back(nshards);
      continue;
    }
    std::string& lacked = missing[nshards];
    for (int s = 0; s < nshards && lacked.empty(); ++s) {
      if (!present.second.count(s)) {
        lacked = CheckpointMetaName(basename, s, nshards);
      } else if (need_data && !present.first.count(s)) {
        lacked = CheckpointDataName(basename, s, nshards);
      }
    }
  }
  if (complete.empty()) {
    return NotFoundError("checkpoint " + basename + " is incomplete: " +
                         missing.begin()->second + " is missing");
  }
  if (complete.size() == 1) {
    MONOLITH_RETURN_IF_ERROR(ReadMetaFiles(fs, basename, complete[0], nullptr,
                                           listed, need_data, info));
    // An incomplete count is a save that was deleting the files it
    // superseded, older than the complete one; newer, it is a save that
    // lost files since, and the complete one is older than what the
    // checkpoint stands for.
    for (const auto& [nshards, lost] : missing) {
      for (const int s : counts.at(nshards).second) {
        const std::string path = CheckpointMetaName(basename, s, nshards);
        bool newer = false;
        MONOLITH_RETURN_IF_ERROR(IsNewerSave(fs, path, *info, &newer));
        if (!newer) continue;
        return DataLossError(
            "checkpoint " + basename + ": its newest save, " +
            std::to_string(nshards) + " shards (" + path + "), lost " + lost +
            "; the older complete " + std::to_string(complete[0]) +
            "-shard save beside it is not what the checkpoint holds. Restore "
            "another checkpoint, or delete the " + std::to_string(nshards) +
            "-shard files to read the older save");
      }
    }
    if (counts.size() > 1) {
      Log(log, "Checkpoint " + basename + ": ignoring files of another "
               "shard count (an incomplete, interrupted save); reading the "
               "complete " + std::to_string(complete[0]) + "-shard save");
    }
    return Status::OK();
  }
  // Several complete saves with different shard counts: a save that was
  // interrupted before deleting the files it superseded. Read the newest.
  // Saves without identity are the original's, so older than any of ours
  // (the first save after a migration from it).
  CheckpointInfo newest;
  int without_identity = 0;
  for (int nshards : complete) {
    CheckpointInfo candidate;
    const Status status = ReadMetaFiles(fs, basename, nshards, nullptr,
                                        listed, need_data, &candidate);
    // A storage error keeps its code (a restore may be retried), and is not
    // taken for damaged files, which a save or restore then reads past
    // (IsFileContentError).
    if (!status.ok() && !IsFileContentError(status)) {
      return Prefixed("checkpoint " + basename + ": cannot read the " +
                          std::to_string(nshards) + "-shard files: ",
                      status);
    }
    if (!status.ok()) {
      return DataLossError("checkpoint " + basename + " mixes shard counts " +
                           std::to_string(complete[0]) + " and " +
                           std::to_string(complete[1]) + "; the " +
                           std::to_string(nshards) +
                           "-shard files are unreadable: " + status.message());
    }
    if (!candidate.has_identity) {
      ++without_identity;
      continue;
    }
    if (newest.nshards == 0 ||
        candidate.save_time_micros > newest.save_time_micros) {
      newest = std::move(candidate);
    }
  }
  if (newest.nshards == 0) {
    return DataLossError("checkpoint " + basename + " mixes shard counts " +
                         std::to_string(complete[0]) + " and " +
                         std::to_string(complete[1]) +
                         " and its saves carry no save time to choose by");
  }
  Log(log, "Checkpoint " + basename + " holds complete saves with " +
               std::to_string(complete.size()) +
               " shard counts (a save interrupted before it deleted the files "
               "it superseded); reading the newest, with " +
               std::to_string(newest.nshards) + " shards" +
               (without_identity > 0
                    ? " (the files without a save identity are the "
                      "original's, older)"
                    : ""));
  *info = std::move(newest);
  return Status::OK();
}

}  // namespace

std::string CheckpointDataName(const std::string& basename, int shard,
                               int nshards) {
  return ShardFileName(basename, shard, nshards);
}

std::string CheckpointMetaName(const std::string& basename, int shard,
                               int nshards) {
  return ShardFileName(basename + ".meta", shard, nshards);
}

Status SerialFor(int64_t n, const std::function<Status(int64_t)>& fn) {
  for (int64_t i = 0; i < n; ++i) MONOLITH_RETURN_IF_ERROR(fn(i));
  return Status::OK();
}

Status CheckSegmentDims(const CheckpointInfo& info, int table,
                        const std::vector<uint32_t>& segment_dims) {
  const CheckpointInfo::Table& saved = info.tables[table];
  if (saved.segment_dims.empty() || saved.segment_dims == segment_dims) {
    return Status::OK();
  }
  const auto sum = [](const std::vector<uint32_t>& dims) {
    return std::accumulate(dims.begin(), dims.end(), uint64_t{0});
  };
  const std::string why =
      sum(saved.segment_dims) == sum(segment_dims)
          ? "its values would land in other segments"
          : "its entries do not fit the table's";
  return InvalidArgumentError(
      "checkpoint " + info.basename + " holds table " + saved.name +
      " with segment dims " + DimList(saved.segment_dims) +
      ", the table to restore has " + DimList(segment_dims) + ": " + why +
      ". Restore it with the config it was saved with");
}

Status CheckOptimizerStateSaved(const CheckpointInfo& info, int table,
                                bool restores_optimizer_state) {
  const CheckpointInfo::Table& saved = info.tables[table];
  if (!saved.values_only || !restores_optimizer_state) return Status::OK();
  return FailedPreconditionError(
      "checkpoint " + info.basename + " holds table " + saved.name +
      " as a SERVING table saved it: values only (as its compressors store "
      "them), no optimizer state. Restored whole into this training table, "
      "its entries would train on from the compressed values with their "
      "optimizer state started over: name the table in the restore's "
      "values_only to take its values (e.g. to seed training from a served "
      "model), or restore a training checkpoint");
}

std::vector<std::string> CheckpointInfo::PathsInRenameOrder() const {
  std::vector<std::string> paths;
  for (const Shard& shard : shards) {
    paths.push_back(shard.data_path);
    paths.push_back(shard.meta_path);
  }
  return paths;
}

Status SaveCheckpoint(FileSystem* fs, const std::string& basename,
                      const std::vector<std::string>& table_names,
                      const TableSaver& save_table, const SaveOptions& options,
                      SaveResult* result) {
  // Per-table options: none, or one per table.
  for (const auto& [what, given] :
       {std::pair<const char*, size_t>{"segment dims are",
                                       options.segment_dims.size()},
        {"values_only is", options.values_only.size()}}) {
    if (given != 0 && given != table_names.size()) {
      return InvalidArgumentError(
          std::string(what) + " given for " + std::to_string(given) +
          " tables, " + std::to_string(table_names.size()) + " are saved");
    }
  }
  const int nshards = options.nshards;
  if (nshards < 1 || nshards > kMaxCheckpointShards) {
    return InvalidArgumentError(
        "nshards must be in [1, " + std::to_string(kMaxCheckpointShards) +
        "] (shard numbers have five digits), got " + std::to_string(nshards));
  }
  MONOLITH_RETURN_IF_ERROR(CheckSaveBasename("checkpoint", basename));
  const SplitBasename split(basename);
  MONOLITH_RETURN_IF_ERROR(fs->CreateDirectories(split.dir));
  // One writer per basename: temporary files there are an interrupted
  // save's. Where they complete a save that had begun renaming, its renames
  // are finished first: they may hold the only whole save there is.
  bool temporaries_stale = false;
  std::optional<std::vector<std::pair<std::string, ShardFile>>> listed;
  MONOLITH_RETURN_IF_ERROR(FinishInterruptedSave<ShardFile>(
      fs, basename, ParseShardFile,
      [&](InterruptedSave* save, std::vector<std::string>* paths) {
        CheckpointInfo info;
        MONOLITH_RETURN_IF_ERROR(ReadCheckpointInfo(
            fs, basename, /*need_data=*/true, options.log, &info));
        *save = {info.nshards, info.temp_suffix};
        *paths = info.PathsInRenameOrder();
        return Status::OK();
      },
      options.log, &temporaries_stale, &listed));
  if (temporaries_stale) {
    DeleteTemporaries<ShardFile>(fs, split, ParseShardFile, options.log);
  }

  const uint64_t save_id = NewSaveId(NowMicros());
  // A clock behind the last saver's (another host, an NTP step) must not
  // make readers take an older save left beside this one.
  const int64_t save_time_micros = SaveTimeAfterOthers<ShardFile>(
      fs, split, ParseShardFile, listed, nshards, options.now_micros(),
      [&](int64_t* newest) {
        CheckpointInfo previous;
        if (!ReadCheckpointInfo(fs, basename, /*need_data=*/false, options.log,
                                &previous)
                 .ok()) {
          return false;
        }
        *newest = previous.save_time_micros;
        return true;
      });
  const std::string temp_suffix = TempSuffix(save_id);
  std::vector<ShardWrite> shards(nshards);
  for (int s = 0; s < nshards; ++s) {
    shards[s].tmp_data = CheckpointDataName(basename, s, nshards) + temp_suffix;
    shards[s].tmp_meta = CheckpointMetaName(basename, s, nshards) + temp_suffix;
  }
  ShardProgress progress(options.log, "Saved", basename, nshards,
                         options.progress_every, options.cancelled,
                         options.expected_entries);
  Status status = options.parallel_for(nshards, [&](int64_t s) {
    ShardProgress::Counter counter(&progress);
    MONOLITH_RETURN_IF_ERROR(WriteShard(fs, table_names, save_table, options,
                                        save_id, save_time_micros,
                                        static_cast<int>(s), &counter,
                                        &shards[s]));
    counter.Flush();
    progress.ShardDone(static_cast<int>(s), shards[s].entries, shards[s].bytes);
    return Status::OK();
  });
  // Final names only once every shard is complete.
  const bool written = status.ok();
  for (int s = 0; status.ok() && s < nshards; ++s) {
    status = fs->RenameFile(shards[s].tmp_data,
                            CheckpointDataName(basename, s, nshards));
    if (status.ok()) {
      status = fs->RenameFile(shards[s].tmp_meta,
                              CheckpointMetaName(basename, s, nshards));
    }
  }
  if (!status.ok() && written) {
    // Even a failed first rename may have changed the final names: TF's
    // HDFS rename deletes the target first, object stores copy and then
    // delete. The temporaries left are what completes this save.
    return Prefixed(
        "save " + SaveIdText(save_id) + " of " + basename +
            " failed while giving its shards their final names; the shards "
            "not renamed keep their temporary names, through which a "
            "restore reads the save whole, and the next save finishes its "
            "renames: ",
        status);
  }
  if (!status.ok()) {
    // Meta files first: a kill meanwhile must not leave a meta temporary
    // whose data temporary is gone (a reader would pair it with the final
    // data file).
    for (const bool meta : {true, false}) {
      for (const ShardWrite& shard : shards) {
        const std::string& path = meta ? shard.tmp_meta : shard.tmp_data;
        fs->DeleteFile(path).ok();
        fs->DeleteFile(PartialName(path)).ok();
      }
    }
    return Prefixed("save " + SaveIdText(save_id) + " of " + basename +
                        " failed writing its shards (the checkpoint at that "
                        "basename is as it was; its temporaries are deleted, "
                        "or by the next save): ",
                    status);
  }
  MONOLITH_RETURN_IF_ERROR(DeleteSupersededFiles<ShardFile>(
      fs, split, ParseShardFile, nshards,
      "superseded by a save with another shard count", options.log));
  progress.Finish();
  if (result != nullptr) {
    result->save_id = save_id;
    result->entries = progress.entries();
    result->bytes = progress.bytes();
  }
  return Status::OK();
}

namespace {

// ReadCheckpointInfo, with |sorted_names| the listing of the basename's
// folder (sorted), or |listed_status| the listing's failure.
Status ReadListedCheckpointInfo(FileSystem* fs, const std::string& basename,
                                const std::vector<std::string>& sorted_names,
                                const Status& listed_status, bool need_data,
                                const LogFn& log, CheckpointInfo* info) {
  if (listed_status.code() == StatusCode::kNotFound) {
    return NotFoundError("no multi hash table checkpoint at " + basename +
                         ": " + listed_status.message());
  }
  MONOLITH_RETURN_IF_ERROR(listed_status);
  const SplitBasename split(basename);
  std::vector<std::pair<std::string, ShardFile>> files;
  ShardFilesNamed(sorted_names, split, ParseShardFile, &files);
  std::set<std::string> listed;
  const std::set<InterruptedSave> interrupted =
      FindInterruptedSaves(files, &listed);
  Status status =
      ReadFinalNames(fs, basename, files, listed, need_data, log, info);
  // A reader that cannot read the final names (a storage error, not their
  // contents) cannot tell whether they hold a newer save than any
  // interrupted one.
  if (!status.ok() && !IsFileContentError(status)) return status;
  // A save killed after writing all its files reads whole through them,
  // instead of final names that are no whole save or an older one (see
  // InterruptedSaveIsNewer); one killed while writing them fails
  // ReadMetaFiles (a partial or missing file).
  for (const InterruptedSave& save : interrupted) {
    CheckpointInfo candidate;
    const Status read = ReadMetaFiles(fs, basename, save.nshards, &save,
                                      listed, need_data, &candidate);
    if (!read.ok() && !IsFileContentError(read)) return read;
    if (!read.ok() || !candidate.has_identity) {  // or no meta records
      continue;
    }
    const bool began = RenamesBegan(candidate.PathsInRenameOrder(), save);
    if (status.ok() &&
        !InterruptedSaveIsNewer(began, info->has_identity,
                                info->save_time_micros,
                                candidate.save_time_micros)) {
      continue;
    }
    Log(log, "Checkpoint " + basename + ": reading " +
                 DescribeSaveId(candidate.save_id,
                                candidate.save_time_micros) +
                 ", " + DescribeInterruption(began, candidate.nshards, "shards") +
                 ", through its temporaries (the next save finishes its "
                 "renames)");
    *info = std::move(candidate);
    status = Status::OK();
  }
  return status;
}

}  // namespace

Status ReadCheckpointInfo(FileSystem* fs, const std::string& basename,
                          bool need_data, const LogFn& log,
                          CheckpointInfo* info) {
  std::vector<CheckpointInfo> infos;
  MONOLITH_RETURN_IF_ERROR(
      ReadCheckpointInfos(fs, {basename}, need_data, log, &infos));
  *info = std::move(infos[0]);
  return Status::OK();
}

Status ReadCheckpointInfos(FileSystem* fs,
                           const std::vector<std::string>& basenames,
                           bool need_data, const LogFn& log,
                           std::vector<CheckpointInfo>* infos) {
  infos->assign(basenames.size(), CheckpointInfo());
  // Folder -> its listing's status and sorted names.
  std::map<std::string, std::pair<Status, std::vector<std::string>>> folders;
  for (size_t b = 0; b < basenames.size(); ++b) {
    const std::string dir = SplitBasename(basenames[b]).dir;
    auto [folder, added] = folders.try_emplace(dir);
    auto& [listed, names] = folder->second;
    if (added) {
      listed = fs->ListDirectory(dir, &names);
      std::sort(names.begin(), names.end());
    }
    MONOLITH_RETURN_IF_ERROR(ReadListedCheckpointInfo(
        fs, basenames[b], names, listed, need_data, log, &(*infos)[b]));
  }
  return Status::OK();
}

Status RestoreCheckpoint(FileSystem* fs, const CheckpointInfo& info,
                         const RecordRestorer& restore,
                         const ParallelFor& parallel_for, const LogFn& log,
                         const char* progress_verb,
                         std::chrono::milliseconds progress_every,
                         const CancelledFn& cancelled,
                         const TableRestored& table_restored) {
  // Meta counts are checked against the records only as they are read.
  constexpr uint64_t kMaxTotal = std::numeric_limits<int64_t>::max();
  uint64_t total = 0;
  for (const CheckpointInfo::Table& table : info.tables) {
    total = std::min(kMaxTotal + 1, total + std::min(table.entries, kMaxTotal));
  }
  const int64_t total_entries =
      total > kMaxTotal ? -1 : static_cast<int64_t>(total);
  ShardProgress progress(log, progress_verb, info.basename, info.nshards,
                         progress_every, cancelled, total_entries);
  MONOLITH_RETURN_IF_ERROR(parallel_for(info.nshards, [&](int64_t s) {
    return RestoreShard(fs, info, static_cast<int>(s), restore,
                        table_restored, &progress);
  }));
  progress.Finish();
  return Status::OK();
}

}  // namespace hash_table
}  // namespace monolith
