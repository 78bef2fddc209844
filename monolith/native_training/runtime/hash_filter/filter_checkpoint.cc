#include "monolith/native_training/runtime/hash_filter/filter_checkpoint.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "google/protobuf/unknown_field_set.h"
#include "monolith/native_training/runtime/hash_filter/hash_filter.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/record_file.h"
#include "monolith/native_training/runtime/hash_table/sharded_files.h"

namespace monolith {
namespace hash_filter {
namespace {

using ::google::protobuf::UnknownField;
using ::google::protobuf::UnknownFieldSet;
using ::monolith::hash_table::AbortedError;
using ::monolith::hash_table::CheckSaveBasename;
using ::monolith::hash_table::DataLossError;
using ::monolith::hash_table::DeleteSupersededFiles;
using ::monolith::hash_table::DeleteTemporaries;
using ::monolith::hash_table::DescribeInterruption;
using ::monolith::hash_table::DescribeSaveId;
using ::monolith::hash_table::FailedPreconditionError;
using ::monolith::hash_table::FileSystem;
using ::monolith::hash_table::FindInterruptedSaves;
using ::monolith::hash_table::FinishInterruptedSave;
using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using ::monolith::hash_table::InternalError;
using ::monolith::hash_table::InterruptedSave;
using ::monolith::hash_table::InterruptedSaveIsNewer;
using ::monolith::hash_table::InterruptedSavePath;
using ::monolith::hash_table::InvalidArgumentError;
using ::monolith::hash_table::IsFileContentError;
using ::monolith::hash_table::kRecordFooterBytes;
using ::monolith::hash_table::kRecordHeaderBytes;
using ::monolith::hash_table::ListShardFiles;
using ::monolith::hash_table::Log;
using ::monolith::hash_table::LogFn;
using ::monolith::hash_table::NewSaveId;
using ::monolith::hash_table::NotFoundError;
using ::monolith::hash_table::NowMicros;
using ::monolith::hash_table::OpenListedRecordFile;
using ::monolith::hash_table::ParallelFor;
using ::monolith::hash_table::ParseShardFileName;
using ::monolith::hash_table::PartialName;
using ::monolith::hash_table::Prefixed;
using ::monolith::hash_table::RecordFileReader;
using ::monolith::hash_table::RecordFileWriter;
using ::monolith::hash_table::RenamesBegan;
using ::monolith::hash_table::SaveIdText;
using ::monolith::hash_table::SaveTimeAfterOthers;
using ::monolith::hash_table::SecondsSince;
using ::monolith::hash_table::ShardFileName;
using ::monolith::hash_table::ShardName;
using ::monolith::hash_table::SplitBasename;
using ::monolith::hash_table::StatusCode;
using ::monolith::hash_table::TempSuffix;
using ::monolith::hash_table::WritableFile;
using ::monolith::hash_table::WriteWholeFile;

constexpr uint64_t kFramingBytes = kRecordHeaderBytes + kRecordFooterBytes;

// A file of a filter checkpoint, from its name: "<basename>-SSSSS-of-NNNNN"
// (shard = split; a filter checkpoint has one kind of file), or a temporary
// of one.
using SplitFile = ShardName;

// The save identity a meta record carries (unknown fields 100-103).
struct Identity {
  bool present = false;
  uint64_t save_id = 0;
  int64_t save_time_micros = 0;
  uint64_t split = 0;
  uint64_t nsplits = 0;
};

void SetIdentity(const Identity& identity, HashFilterSplitMetaDump* meta) {
  UnknownFieldSet* unknown = meta->mutable_unknown_fields();
  for (int number : {kIdentitySaveIdField, kIdentitySaveTimeField,
                     kIdentitySplitField, kIdentitySplitNumField}) {
    unknown->DeleteByNumber(number);
  }
  unknown->AddFixed64(kIdentitySaveIdField, identity.save_id);
  unknown->AddVarint(kIdentitySaveTimeField,
                     static_cast<uint64_t>(identity.save_time_micros));
  unknown->AddVarint(kIdentitySplitField, identity.split);
  unknown->AddVarint(kIdentitySplitNumField, identity.nsplits);
}

Status GetIdentity(const HashFilterSplitMetaDump& meta, const std::string& path,
                   Identity* identity) {
  *identity = Identity();
  bool has_time = false, has_split = false, has_nsplits = false;
  const UnknownFieldSet& unknown = meta.unknown_fields();
  for (int i = 0; i < unknown.field_count(); ++i) {
    const UnknownField& field = unknown.field(i);
    const int number = field.number();
    if (number < kIdentitySaveIdField || number > kIdentitySplitNumField) {
      continue;
    }
    const UnknownField::Type expected = number == kIdentitySaveIdField
                                            ? UnknownField::TYPE_FIXED64
                                            : UnknownField::TYPE_VARINT;
    if (field.type() != expected) {
      return DataLossError(path + ": the meta record's save identity field " +
                           std::to_string(number) + " has the wrong wire type");
    }
    switch (number) {
      case kIdentitySaveIdField:
        identity->present = true;
        identity->save_id = field.fixed64();
        break;
      case kIdentitySaveTimeField:
        has_time = true;
        identity->save_time_micros = static_cast<int64_t>(field.varint());
        break;
      case kIdentitySplitField:
        has_split = true;
        identity->split = field.varint();
        break;
      default:
        has_nsplits = true;
        identity->nsplits = field.varint();
        break;
    }
  }
  if ((identity->present || has_time || has_split || has_nsplits) &&
      !(identity->present && has_time && has_split && has_nsplits)) {
    return DataLossError(path +
                         ": the meta record's save identity is "
                         "incomplete (fields 100-103 go together)");
  }
  return Status::OK();
}

std::string DescribeSave(const std::string& path, const Identity& identity) {
  if (!identity.present) {
    return path + " carries no save id (written by the original Monolith)";
  }
  return path + " is " +
         DescribeSaveId(identity.save_id, identity.save_time_micros);
}

// ---------------------------------------------------------------- saving

struct SplitWrite {
  std::string tmp_path;
  std::string path;
  uint64_t bytes = 0;
};

// WriteSplit's records, into |file|.
Status WriteSplitRecords(const Filter& filter, int split, int nsplits,
                         const Identity& save, WritableFile* file,
                         SplitWrite* out) {
  RecordFileWriter writer(file, /*snappy=*/false);
  std::string buffer;
  bool meta_written = false;
  const Status status = filter.Save(
      split,
      [&](const HashFilterSplitMetaDump& meta) -> Status {
        if (meta_written) {
          return InternalError("Filter::Save wrote a second meta record");
        }
        HashFilterSplitMetaDump with_identity = meta;
        Identity identity = save;
        identity.split = static_cast<uint64_t>(split);
        identity.nsplits = static_cast<uint64_t>(nsplits);
        SetIdentity(identity, &with_identity);
        buffer.clear();
        if (!with_identity.SerializeToString(&buffer)) {
          return InternalError("cannot serialize the meta record");
        }
        meta_written = true;
        return writer.Write(buffer);
      },
      [&](const HashFilterSplitDataDump& data) -> Status {
        if (!meta_written) {
          return InternalError(
              "Filter::Save wrote data before its meta record");
        }
        buffer.clear();
        if (!data.SerializeToString(&buffer)) {
          return InternalError("cannot serialize a data record");
        }
        return writer.Write(buffer);
      });
  MONOLITH_RETURN_IF_ERROR(status);
  if (!meta_written) return InternalError("Filter::Save wrote no meta record");
  MONOLITH_RETURN_IF_ERROR(writer.Close());
  out->bytes = writer.file_bytes();
  return Status::OK();
}

Status WriteSplit(FileSystem* fs, const Filter& filter, int split, int nsplits,
                  const Identity& save, SplitWrite* out) {
  return WriteWholeFile(fs, out->tmp_path, [&](WritableFile* file) {
    return WriteSplitRecords(filter, split, nsplits, save, file, out);
  });
}


// ---------------------------------------------------------------- restoring

// A split file's meta record, read before anything is restored.
struct SplitMeta {
  std::string path;
  std::string record;  // as stored
  HashFilterSplitMetaDump meta;
  Identity identity;
};

// Reads and parses the first record of |path| (split |split| of |nsplits|)
// and checks its identity names that split.
Status ReadSplitMeta(FileSystem* fs, const std::string& path, int split,
                     int nsplits, SplitMeta* out) {
  out->path = path;
  std::unique_ptr<RecordFileReader> reader;
  MONOLITH_RETURN_IF_ERROR(
      OpenListedRecordFile(fs, path, /*snappy=*/false, &reader));
  std::string_view record;
  const Status status = reader->Next(&record);
  if (status.code() == StatusCode::kOutOfRange) {
    return DataLossError(path + " is empty: no meta record (truncated)");
  }
  if (!status.ok()) {
    return Status(status.code(), status.message() + " (at byte offset 0)");
  }
  out->record.assign(record.data(), record.size());
  if (!out->meta.ParseFromArray(record.data(),
                                static_cast<int>(record.size()))) {
    return DataLossError(path +
                         ": record 0 (at byte offset 0) is not a "
                         "HashFilterSplitMetaDump");
  }
  MONOLITH_RETURN_IF_ERROR(GetIdentity(out->meta, path, &out->identity));
  if (out->identity.present &&
      (out->identity.split != static_cast<uint64_t>(split) ||
       out->identity.nsplits != static_cast<uint64_t>(nsplits))) {
    return DataLossError(path + " was written as split " +
                         std::to_string(out->identity.split) + " of " +
                         std::to_string(out->identity.nsplits) +
                         " (renamed, or copied from another checkpoint)");
  }
  return Status::OK();
}

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b
             ? std::numeric_limits<uint64_t>::max()
             : a + b;
}

// Restores split |split| of |filter| from |meta.path|, whose meta record
// ReadSplitMeta read as |meta|. *other_config is set when Filter::Restore
// refused the dump as another configuration's (FailedPrecondition).
Status RestoreSplit(FileSystem* fs, const SplitMeta& meta, int split,
                    Filter* filter, uint64_t* bytes, bool* other_config) {
  const std::string& path = meta.path;
  std::unique_ptr<RecordFileReader> reader;
  MONOLITH_RETURN_IF_ERROR(
      OpenListedRecordFile(fs, path, /*snappy=*/false, &reader));
  std::string_view record;
  Status status = reader->Next(&record);
  if (status.code() == StatusCode::kOutOfRange) {
    return DataLossError(path + " is empty: no meta record (truncated)");
  }
  if (!status.ok()) {
    return Status(status.code(), status.message() + " (at byte offset 0)");
  }
  if (record != meta.record) {
    // As a listed file that went (ListedFileStatus): retried, not damage.
    return AbortedError(path +
                        " changed while it was being restored (a save to "
                        "the same basename running meanwhile?)");
  }
  // The dump's cells: total_size plus the probe padding (hash_filter.h).
  // Records past them are trailing records.
  const uint64_t cells_expected =
      SaturatingAdd(meta.meta.total_size(),
                    static_cast<uint64_t>(HashFilter::kMaxProbeSteps));
  uint64_t cells_seen = 0;
  uint64_t offset = kFramingBytes + record.size();  // of the next record
  uint64_t last_offset = 0;                         // of the last one read
  int64_t index = 1;                                // of the next record
  bool meta_read = false, at_end = false, callback_failed = false;

  auto record_at = [&](int64_t i, uint64_t at) {
    return path + ": record " + std::to_string(i) + " (at byte offset " +
           std::to_string(at) + ")";
  };
  auto read_meta = [&](HashFilterSplitMetaDump* dump, bool* has_record) {
    *has_record = false;
    if (meta_read) return Status::OK();
    *dump = meta.meta;
    *has_record = meta_read = true;
    return Status::OK();
  };
  auto read_data = [&](HashFilterSplitDataDump* dump, bool* has_record) {
    *has_record = false;
    if (at_end) return Status::OK();
    std::string_view data;
    const Status s = reader->Next(&data);
    if (s.code() == StatusCode::kOutOfRange) {
      at_end = true;
      return Status::OK();
    }
    if (!s.ok()) {
      callback_failed = true;
      return Status(s.code(), s.message() + " (at byte offset " +
                                  std::to_string(offset) + ")");
    }
    if (cells_seen >= cells_expected) {
      callback_failed = true;
      return DataLossError(record_at(index, offset) +
                           " is a trailing record: the split's data records "
                           "already hold its " +
                           std::to_string(cells_expected) + " cells");
    }
    if (!dump->ParseFromArray(data.data(), static_cast<int>(data.size()))) {
      callback_failed = true;
      return DataLossError(record_at(index, offset) +
                           " is not a HashFilterSplitDataDump");
    }
    cells_seen += static_cast<uint64_t>(dump->data_size());
    last_offset = offset;
    offset += kFramingBytes + data.size();
    ++index;
    *has_record = true;
    return Status::OK();
  };
  status = filter->Restore(split, read_meta, read_data);
  if (!status.ok()) {
    if (callback_failed) return status;
    *other_config = status.code() == StatusCode::kFailedPrecondition;
    const std::string where = at_end ? path + " (at its end, after " +
                                           std::to_string(index) + " records)"
                                     : record_at(index - 1, last_offset);
    return Prefixed(where + ": ", status);
  }
  if (!at_end) {
    // The filter stopped reading before the end of the file.
    status = reader->Next(&record);
    if (status.ok()) {
      return DataLossError(record_at(index, offset) +
                           " is a trailing record after the split's data");
    }
    if (status.code() != StatusCode::kOutOfRange) return status;
  }
  *bytes = offset;
  return Status::OK();
}

std::string CountList(const std::map<int, std::set<int>>& present) {
  std::string list;
  for (const auto& [nsplits, splits] : present) {
    if (!list.empty()) list += ", ";
    list += std::to_string(nsplits) + " (" + std::to_string(splits.size()) +
            " of its files present)";
  }
  return list;
}

// Picks the split count to read among the non-temporary files |present|
// (split count -> splits present).
Status ChooseSplitCount(FileSystem* fs, const std::string& basename,
                        const std::map<int, std::set<int>>& present,
                        int filter_nsplits, const LogFn& log, int* chosen) {
  std::vector<int> complete;
  std::string missing;
  for (const auto& [nsplits, splits] : present) {
    if (static_cast<int>(splits.size()) == nsplits) {
      complete.push_back(nsplits);
      continue;
    }
    if (!missing.empty()) continue;
    for (int s = 0; s < nsplits; ++s) {
      if (!splits.count(s)) {
        missing = FilterCheckpointFileName(basename, s, nsplits);
        break;
      }
    }
  }
  const std::string filter_has =
      "the filter has " + std::to_string(filter_nsplits) + " splits";
  if (complete.empty()) {
    return FailedPreconditionError(
        "hash filter checkpoint " + basename + " is incomplete: " + missing +
        " is missing (split counts present: " + CountList(present) + "; " +
        filter_has + ")");
  }
  if (complete.size() == 1) {
    *chosen = complete[0];
    if (present.size() > 1) {
      Log(log, "Hash filter checkpoint " + basename +
                   ": ignoring the incomplete files of another split count "
                   "(an interrupted save); reading the complete " +
                   std::to_string(*chosen) + "-split save");
    }
    return Status::OK();
  }
  // Complete saves of several split counts: a save interrupted before it
  // deleted the files it superseded. Read the newest.
  std::string counts;
  for (int nsplits : complete) {
    if (!counts.empty()) counts += " and ";
    counts += std::to_string(nsplits);
  }
  // Saves without identity are the original's, older than any of ours.
  int newest = -1;
  int64_t newest_time = 0;
  bool tie = false;
  std::string without_identity;
  for (int nsplits : complete) {
    SplitMeta meta;
    const std::string path = FilterCheckpointFileName(basename, 0, nsplits);
    const Status status = ReadSplitMeta(fs, path, 0, nsplits, &meta);
    // A storage error keeps its code (a restore may be retried), and is not
    // taken for damaged files, which a restore then reads past
    // (IsFileContentError).
    if (!status.ok() && !IsFileContentError(status)) {
      return Prefixed("hash filter checkpoint " + basename +
                          ": cannot read the " + std::to_string(nsplits) +
                          "-split files: ",
                      status);
    }
    if (!status.ok()) {
      return FailedPreconditionError(
          "hash filter checkpoint " + basename + " holds complete saves with " +
          counts + " splits (" + filter_has + ") and the " +
          std::to_string(nsplits) + "-split files are unreadable: " +
          status.message() + "; delete the files of the save not to restore");
    }
    if (!meta.identity.present) {
      without_identity = path;
      continue;
    }
    if (newest < 0 || meta.identity.save_time_micros > newest_time) {
      newest = nsplits;
      newest_time = meta.identity.save_time_micros;
      tie = false;
    } else if (meta.identity.save_time_micros == newest_time) {
      tie = true;
    }
  }
  if (newest < 0) {
    return FailedPreconditionError(
        "hash filter checkpoint " + basename + " holds complete saves with " +
        counts + " splits (" + filter_has + ") and " + without_identity +
        " carries no save time to choose by; delete the files of the save "
        "not to restore");
  }
  if (tie) {
    return FailedPreconditionError(
        "hash filter checkpoint " + basename + " holds complete saves with " +
        counts + " splits begun at the same time (" + filter_has +
        "); delete the files of the save not to restore");
  }
  Log(log, "Hash filter checkpoint " + basename +
               " holds complete saves with " + counts +
               " splits (a save interrupted before it deleted the files it "
               "superseded); reading the newest, with " +
               std::to_string(newest) + " splits");
  *chosen = newest;
  return Status::OK();
}

// The save a restore reads at a basename: each split's meta record, read
// from its final name or (temp_suffix not empty) from where a save killed
// while renaming left it.
struct FilterSave {
  int nsplits = 0;
  std::string temp_suffix;
  std::vector<SplitMeta> metas;
};

// Reads the meta record of every split of |paths| and checks that all are
// one save's.
Status ReadSaveMetas(FileSystem* fs, const std::string& basename,
                     const std::vector<std::string>& paths,
                     const ParallelFor& parallel_for,
                     std::vector<SplitMeta>* metas) {
  const int nsplits = static_cast<int>(paths.size());
  metas->assign(nsplits, SplitMeta());
  MONOLITH_RETURN_IF_ERROR(parallel_for(nsplits, [&](int64_t s) {
    const int k = static_cast<int>(s);
    return ReadSplitMeta(fs, paths[k], k, nsplits, &(*metas)[k]);
  }));
  const Identity& first = (*metas)[0].identity;
  for (int s = 1; s < nsplits; ++s) {
    const Identity& identity = (*metas)[s].identity;
    if (identity.present != first.present ||
        identity.save_id != first.save_id) {
      return DataLossError(
          "hash filter checkpoint " + basename +
          " mixes saves: " + DescribeSave((*metas)[s].path, identity) + ", " +
          DescribeSave((*metas)[0].path, first) +
          " (a file copied from another checkpoint, or a save killed while "
          "renaming whose temporaries were deleted); restore another "
          "checkpoint");
    }
  }
  return Status::OK();
}

// Every split's meta record carries the sliding ring's fields (head,
// head_increment, failure_count), and each split's Restore sets them. One
// of our saves writes them from one snapshot: splits that disagree are
// damage (DataLoss naming both files). The original wrote its splits while
// training went on, so its splits may disagree: the split furthest along
// (the most head increments, then the most failures, then the lowest split)
// gives every split its fields, so the restored ring does not depend on
// which Restore ran last.
Status AgreeOnRing(const std::string& basename, const LogFn& log,
                   std::vector<SplitMeta>* metas) {
  auto ring = [](const SplitMeta& m) {
    const auto& sliding = m.meta.sliding_hash_filter_meta();
    return std::make_tuple(sliding.head_increment(), sliding.head(),
                           sliding.failure_count());
  };
  auto describe = [&](const SplitMeta& m) {
    const auto [increments, head, failures] = ring(m);
    return m.path + " (head " + std::to_string(head) + ", head_increment " +
           std::to_string(increments) + ", failure_count " +
           std::to_string(failures) + ")";
  };
  // Both counts only grow: the most increments, then the most failures.
  auto progress = [&](size_t i) {
    const auto fields = ring((*metas)[i]);
    return std::make_pair(std::get<0>(fields), std::get<2>(fields));
  };
  size_t ahead = 0;
  bool differ = false;
  for (size_t k = 0; k < metas->size(); ++k) {
    if (!(*metas)[k].meta.has_sliding_hash_filter_meta()) return Status::OK();
    differ = differ || ring((*metas)[k]) != ring((*metas)[0]);
    if (progress(k) > progress(ahead)) ahead = k;
  }
  if (!differ) return Status::OK();
  const SplitMeta& source = (*metas)[ahead];
  for (const SplitMeta& m : *metas) {
    if (ring(m) == ring(source)) continue;
    if (m.identity.present) {
      return DataLossError("hash filter checkpoint " + basename +
                           ": the splits of one save disagree on the ring: " +
                           describe(m) + ", " + describe(source));
    }
  }
  Log(log, "Hash filter checkpoint " + basename +
               " (written by the original Monolith while training) has "
               "splits that disagree on the ring; restoring " +
               describe(source));
  const auto& fields = source.meta.sliding_hash_filter_meta();
  const uint32_t head = fields.head();
  const uint32_t increments = fields.head_increment();
  const uint64_t failures = fields.failure_count();
  for (SplitMeta& m : *metas) {
    auto* sliding = m.meta.mutable_sliding_hash_filter_meta();
    sliding->set_head(head);
    sliding->set_head_increment(increments);
    sliding->set_failure_count(failures);
  }
  return Status::OK();
}

// Finds the save to read at |basename| (see RestoreFilterCheckpoint) and
// reads its meta records. |filter_nsplits| is for messages.
Status ReadFilterSave(FileSystem* fs, const std::string& basename,
                      int filter_nsplits, const ParallelFor& parallel_for,
                      const LogFn& log, FilterSave* save) {
  const SplitBasename split(basename);
  std::vector<std::pair<std::string, SplitFile>> files;
  Status status = ListShardFiles(fs, split, ParseShardFileName, &files);
  if (status.code() == StatusCode::kNotFound) {
    return NotFoundError("no hash filter checkpoint at " + basename + ": " +
                         status.message());
  }
  MONOLITH_RETURN_IF_ERROR(status);
  std::set<std::string> listed;
  const std::set<InterruptedSave> interrupted =
      FindInterruptedSaves(files, &listed);
  std::map<int, std::set<int>> present;
  for (const auto& [path, file] : files) {
    if (!file.temp) present[file.nshards].insert(file.shard);
  }
  if (present.empty()) {
    status = NotFoundError(
        "no hash filter checkpoint at " + basename + " (expected " +
        FilterCheckpointFileName(basename, 0, filter_nsplits) +
        " and the other splits' files)");
  } else {
    status = ChooseSplitCount(fs, basename, present, filter_nsplits, log,
                              &save->nsplits);
  }
  if (status.ok()) {
    std::vector<std::string> paths;
    for (int s = 0; s < save->nsplits; ++s) {
      paths.push_back(FilterCheckpointFileName(basename, s, save->nsplits));
    }
    status = ReadSaveMetas(fs, basename, paths, parallel_for, &save->metas);
  }
  // A reader that cannot read the final names (a storage error, not their
  // contents) cannot tell whether they hold a newer save than any
  // interrupted one.
  if (!status.ok() && !IsFileContentError(status)) return status;
  // A save killed after writing all its splits reads whole through them,
  // instead of final names that are no whole save or an older one (see
  // InterruptedSaveIsNewer); one killed while writing them has a partial
  // or missing file.
  for (const InterruptedSave& interrupted_save : interrupted) {
    std::vector<std::string> paths;
    for (int s = 0; s < interrupted_save.nshards; ++s) {
      paths.push_back(
          InterruptedSavePath(listed, basename, s, interrupted_save));
      if (paths.back().empty()) break;
    }
    FilterSave candidate;
    candidate.nsplits = interrupted_save.nshards;
    candidate.temp_suffix = interrupted_save.temp_suffix;
    if (paths.back().empty()) continue;
    const Status read =
        ReadSaveMetas(fs, basename, paths, parallel_for, &candidate.metas);
    if (!read.ok() && !IsFileContentError(read)) return read;
    if (!read.ok()) continue;
    const Identity& identity = candidate.metas[0].identity;
    if (!identity.present ||
        TempSuffix(identity.save_id) != candidate.temp_suffix) {
      continue;
    }
    const bool began = RenamesBegan(paths, interrupted_save);
    if (status.ok() &&
        !InterruptedSaveIsNewer(began, save->metas[0].identity.present,
                                save->metas[0].identity.save_time_micros,
                                identity.save_time_micros)) {
      continue;
    }
    Log(log, "Hash filter checkpoint " + basename + ": reading " +
                 DescribeSaveId(identity.save_id, identity.save_time_micros) +
                 ", " + DescribeInterruption(began, candidate.nsplits, "splits") +
                 ", through its temporaries (the next save finishes its "
                 "renames)");
    *save = std::move(candidate);
    status = Status::OK();
  }
  return status;
}

Status CheckBasename(const std::string& basename) {
  if (basename.empty() || basename.back() == '/') {
    return InvalidArgumentError("hash filter checkpoint basename \"" +
                                basename + "\" names no file");
  }
  return Status::OK();
}

}  // namespace

std::string FilterCheckpointFileName(const std::string& basename, int split,
                                     int nsplits) {
  return ShardFileName(basename, split, nsplits);
}

Status SaveFilterCheckpoint(FileSystem* fs, const std::string& basename,
                            const Filter& filter,
                            const ParallelFor& parallel_for, const LogFn& log,
                            const std::function<int64_t()>& now_micros) {
  MONOLITH_RETURN_IF_ERROR(
      CheckSaveBasename("hash filter checkpoint", basename));
  const int nsplits = filter.split_num();
  if (nsplits < 0 || nsplits > kMaxFilterCheckpointSplits) {
    return InvalidArgumentError("cannot save hash filter " + basename +
                                ": it has " + std::to_string(nsplits) +
                                " splits; files number them with five "
                                "digits (at most " +
                                std::to_string(kMaxFilterCheckpointSplits) +
                                ")");
  }
  const SplitBasename split(basename);
  MONOLITH_RETURN_IF_ERROR(fs->CreateDirectories(split.dir));
  if (nsplits == 0) return Status::OK();  // a stateless filter
  const auto start = std::chrono::steady_clock::now();
  // One writer per basename: temporaries there are an interrupted save's.
  // Where they complete a save that had begun renaming, its renames are
  // finished first.
  bool temporaries_stale = false;
  std::optional<std::vector<std::pair<std::string, SplitFile>>> listed;
  MONOLITH_RETURN_IF_ERROR(FinishInterruptedSave<SplitFile>(
      fs, basename, ParseShardFileName,
      [&](InterruptedSave* interrupted, std::vector<std::string>* paths) {
        FilterSave found;
        MONOLITH_RETURN_IF_ERROR(
            ReadFilterSave(fs, basename, nsplits, parallel_for, log, &found));
        *interrupted = {found.nsplits, found.temp_suffix};
        for (const SplitMeta& meta : found.metas) paths->push_back(meta.path);
        return Status::OK();
      },
      log, &temporaries_stale, &listed));
  if (temporaries_stale) {
    DeleteTemporaries<SplitFile>(fs, split, ParseShardFileName, log);
  }

  Identity save;
  save.present = true;
  save.save_id = NewSaveId(NowMicros());
  // A clock behind the last saver's must not make readers take an older
  // save left beside this one.
  save.save_time_micros = SaveTimeAfterOthers<SplitFile>(
      fs, split, ParseShardFileName, listed, nsplits, now_micros(),
      [&](int64_t* newest) {
        FilterSave previous;
        if (!ReadFilterSave(fs, basename, nsplits, parallel_for, log, &previous)
                 .ok() ||
            !previous.metas[0].identity.present) {
          return false;
        }
        *newest = previous.metas[0].identity.save_time_micros;
        return true;
      });
  const std::string temp_suffix = TempSuffix(save.save_id);
  std::vector<SplitWrite> writes(nsplits);
  for (int s = 0; s < nsplits; ++s) {
    writes[s].path = FilterCheckpointFileName(basename, s, nsplits);
    writes[s].tmp_path = writes[s].path + temp_suffix;
  }
  Status status = parallel_for(nsplits, [&](int64_t s) {
    const int k = static_cast<int>(s);
    const Status st = WriteSplit(fs, filter, k, nsplits, save, &writes[k]);
    if (st.ok()) return st;
    return Prefixed("cannot save hash filter split " + std::to_string(k) +
                        " of " + std::to_string(nsplits) + " to " +
                        writes[k].tmp_path + ": ",
                    st);
  });
  // Final names only once every split is complete.
  const bool written = status.ok();
  for (int s = 0; status.ok() && s < nsplits; ++s) {
    status = fs->RenameFile(writes[s].tmp_path, writes[s].path);
  }
  if (!status.ok() && written) {
    // Even a failed first rename may have changed the final names (TF's
    // HDFS rename deletes the target first); the temporaries left are what
    // completes this save.
    return Prefixed(
        "save " + SaveIdText(save.save_id) + " of hash filter " + basename +
            " failed while giving its splits their final names; the splits "
            "not renamed keep their temporary names, through which a "
            "restore reads the save whole, and the next save finishes its "
            "renames: ",
        status);
  }
  if (!status.ok()) {
    for (const SplitWrite& write : writes) {
      fs->DeleteFile(write.tmp_path).ok();
      fs->DeleteFile(PartialName(write.tmp_path)).ok();
    }
    return status;
  }
  MONOLITH_RETURN_IF_ERROR(DeleteSupersededFiles<SplitFile>(
      fs, split, ParseShardFileName, nsplits,
      "superseded by a save with another split count", log));
  if (log) {
    uint64_t bytes = 0;
    for (const SplitWrite& write : writes) bytes += write.bytes;
    Log(log, "Saved hash filter " + basename + " (" + std::to_string(nsplits) +
                 " splits, " + std::to_string(bytes) + " bytes, save " +
                 SaveIdText(save.save_id) + ") in " +
                 std::to_string(SecondsSince(start)) + " s");
  }
  return Status::OK();
}

Status RestoreFilterCheckpointInto(FileSystem* fs, const std::string& basename,
                                   std::unique_ptr<Filter> into,
                                   const ParallelFor& parallel_for,
                                   std::unique_ptr<Filter>* restored,
                                   const LogFn& log,
                                   std::string* other_config) {
  if (restored == nullptr || into == nullptr) {
    return InvalidArgumentError(
        "RestoreFilterCheckpoint: restored or the filter is null");
  }
  MONOLITH_RETURN_IF_ERROR(CheckBasename(basename));
  if (other_config != nullptr) other_config->clear();
  // Another configuration: an error, or with |other_config| counts that
  // start over.
  auto configured_differently = [&](const Status& status) {
    if (other_config == nullptr) return status;
    *other_config = status.message();
    restored->reset();
    Log(log, "Hash filter checkpoint " + basename +
                 " is of a filter configured differently; its counts are "
                 "not restored: " + *other_config);
    return Status::OK();
  };
  const int nsplits = into->split_num();
  if (nsplits <= 0) {  // a stateless filter: nothing was saved
    *restored = std::move(into);
    return Status::OK();
  }
  const auto start = std::chrono::steady_clock::now();
  FilterSave save;
  MONOLITH_RETURN_IF_ERROR(
      ReadFilterSave(fs, basename, nsplits, parallel_for, log, &save));
  if (save.nsplits != nsplits) {
    return configured_differently(FailedPreconditionError(
        "hash filter checkpoint " + basename + " has " +
        std::to_string(save.nsplits) + " splits (" + save.metas[0].path +
        ", ...) but the filter has " + std::to_string(nsplits) +
        " splits; was the filter configured differently?"));
  }
  MONOLITH_RETURN_IF_ERROR(AgreeOnRing(basename, log, &save.metas));
  const std::vector<SplitMeta>& metas = save.metas;

  // Then the splits, into |into|; the caller's filter is untouched until
  // all restored. (Only SlidingHashFilter has several splits, and it allows
  // Restores of different splits at once.)
  std::unique_ptr<Filter> filter = std::move(into);
  std::vector<uint64_t> bytes(nsplits, 0);
  std::unique_ptr<bool[]> split_of_other_config(new bool[nsplits]());
  std::vector<Status> split_status(nsplits);
  // Every split is attempted, also past a failed one (a ParallelFor may
  // stop at the first error): whether some restored tells damage from
  // another configuration.
  MONOLITH_RETURN_IF_ERROR(parallel_for(nsplits, [&](int64_t s) {
    const int k = static_cast<int>(s);
    split_status[k] = RestoreSplit(fs, metas[k], k, filter.get(), &bytes[k],
                                   &split_of_other_config[k]);
    return Status::OK();
  }));
  Status status;
  for (const Status& split : split_status) {
    if (!split.ok()) {
      status = split;
      break;
    }
  }
  // A split that failed otherwise (damage, I/O) is the error to report:
  // the save is not just another configuration's.
  for (int k = 0; k < nsplits; ++k) {
    if (!split_status[k].ok() && !split_of_other_config[k]) {
      return split_status[k];
    }
  }
  // Another configuration shows in every split; splits of one save that
  // disagree (some restored) are damage.
  const bool some_restored =
      std::any_of(split_status.begin(), split_status.end(),
                  [](const Status& split) { return split.ok(); });
  if (!status.ok() && some_restored) {
    return DataLossError("hash filter checkpoint " + basename +
                         ": its splits disagree on the configuration (some "
                         "restored into this filter, others not): " +
                         status.message());
  }
  if (!status.ok() &&
      std::any_of(split_of_other_config.get(),
                  split_of_other_config.get() + nsplits,
                  [](bool other) { return other; })) {
    return configured_differently(status);
  }
  MONOLITH_RETURN_IF_ERROR(status);
  *restored = std::move(filter);
  if (log) {
    uint64_t total = 0;
    for (uint64_t b : bytes) total += b;
    Log(log, "Restored hash filter " + basename + " (" +
                 std::to_string(nsplits) + " splits, " + std::to_string(total) +
                 " bytes" +
                 (metas[0].identity.present
                      ? ", save " + SaveIdText(metas[0].identity.save_id)
                      : ", written by the original Monolith") +
                 ") in " + std::to_string(SecondsSince(start)) + " s");
  }
  return Status::OK();
}

Status RestoreFilterCheckpoint(FileSystem* fs, const std::string& basename,
                               const Filter& like,
                               const ParallelFor& parallel_for,
                               std::unique_ptr<Filter>* restored,
                               const LogFn& log, std::string* other_config) {
  MONOLITH_RETURN_IF_ERROR(RestoreFilterCheckpointInto(
      fs, basename, like.CopyForRestore(), parallel_for, restored, log,
      other_config));
  if (*restored == nullptr) *restored = like.Clone();  // another config
  return Status::OK();
}

}  // namespace hash_filter
}  // namespace monolith
