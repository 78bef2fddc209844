#include "monolith/native_training/runtime/hash_table/sharded_files.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>

namespace monolith {
namespace hash_table {
namespace {

constexpr char kTempMarker[] = "-tmp-";

bool ParseFiveDigits(std::string_view text, int* value) {
  if (text.size() < 5) return false;
  *value = 0;
  for (int i = 0; i < 5; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    *value = *value * 10 + (text[i] - '0');
  }
  return true;
}

// Whether |text| begins with a shard suffix "-SSSSS-of-NNNNN" (15
// characters), whose numbers it gives.
bool ParseShardSuffix(std::string_view text, int* shard, int* nshards) {
  return text.size() >= 15 && text[0] == '-' &&
         ParseFiveDigits(text.substr(1), shard) &&
         text.substr(6, 4) == "-of-" &&
         ParseFiveDigits(text.substr(10), nshards);
}

}  // namespace

void Log(const LogFn& log, const std::string& line) {
  if (log) log(line);
}

Status Prefixed(const std::string& prefix, const Status& status) {
  return Status(status.code(), prefix + status.message());
}

SplitBasename::SplitBasename(const std::string& basename) {
  const size_t slash = basename.rfind('/');
  if (slash == std::string::npos) {
    dir = ".";
    prefix = basename;
    dir_prefix = "";
  } else {
    dir = slash == 0 ? "/" : basename.substr(0, slash);
    prefix = basename.substr(slash + 1);
    dir_prefix = basename.substr(0, slash + 1);
  }
}

std::string ShardFileName(const std::string& base, int shard, int nshards) {
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), "-%05d-of-%05d", shard, nshards);
  return base + suffix;
}

bool ParseShardFileName(std::string_view name, std::string_view prefix,
                        ShardName* file) {
  if (name.size() < prefix.size() || name.substr(0, prefix.size()) != prefix) {
    return false;
  }
  name.remove_prefix(prefix.size());
  if (!ParseShardSuffix(name, &file->shard, &file->nshards)) return false;
  name.remove_prefix(15);
  file->temp = !name.empty();
  if (file->temp && name.substr(0, std::strlen(kTempMarker)) != kTempMarker) {
    return false;
  }
  file->temp_suffix = std::string(name);
  return file->nshards > 0 && file->shard < file->nshards;
}

Status CheckSaveBasename(const std::string& what,
                         const std::string& basename) {
  const auto refused = [&](const std::string& problem) {
    return InvalidArgumentError(what + " basename \"" + basename + "\" " +
                                problem);
  };
  if (basename.empty() || basename.back() == '/') {
    return refused("names no file");
  }
  const SplitBasename split(basename);
  const std::string_view name = split.prefix;
  constexpr std::string_view kMeta = ".meta";
  if (name.size() >= kMeta.size() &&
      name.substr(name.size() - kMeta.size()) == kMeta) {
    return refused("ends with .meta: its files would be named as the meta "
                   "files of a table checkpoint at " +
                   basename.substr(0, basename.size() - kMeta.size()));
  }
  int shard = 0, nshards = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    if (ParseShardSuffix(name.substr(i), &shard, &nshards)) {
      return refused("holds a shard suffix (-SSSSS-of-NNNNN): its files "
                     "would be named as another basename's");
    }
  }
  return Status::OK();
}

std::string InterruptedSavePath(const std::set<std::string>& listed,
                                const std::string& base, int shard,
                                const InterruptedSave& save) {
  const std::string final_path = ShardFileName(base, shard, save.nshards);
  const std::string temp_path = final_path + save.temp_suffix;
  if (listed.count(temp_path)) return temp_path;
  if (listed.count(final_path)) return final_path;
  return "";
}

namespace {

bool HasSuffix(const std::string& path, const std::string& suffix) {
  return path.size() > suffix.size() &&
         path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool IsFileContentError(const Status& status) {
  switch (status.code()) {
    case StatusCode::kNotFound:
    case StatusCode::kDataLoss:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return true;
    default:
      return false;
  }
}

Status ListedFileStatus(FileSystem* fs, const std::string& path,
                        Status status) {
  if (status.code() != StatusCode::kNotFound) return status;
  const SplitBasename split(path);
  std::vector<std::string> names;
  const Status listed = fs->ListDirectory(split.dir, &names);
  if (listed.ok() &&
      std::find(names.begin(), names.end(), split.prefix) == names.end()) {
    return AbortedError(path +
                        " was listed and is gone: the checkpoint changed "
                        "while it was read (" +
                        status.message() + ")");
  }
  return InternalError(path + " is listed and cannot be read (" +
                       status.message() + ")" +
                       (listed.ok() ? "" : "; listing its folder again: " +
                                               listed.message()));
}

Status OpenListedRecordFile(FileSystem* fs, const std::string& path,
                            bool snappy,
                            std::unique_ptr<RecordFileReader>* reader) {
  return ListedFileStatus(fs, path,
                          RecordFileReader::Open(fs, path, snappy, reader));
}

bool RenamesBegan(const std::vector<std::string>& paths,
                  const InterruptedSave& save) {
  for (const std::string& path : paths) {
    if (!HasSuffix(path, save.temp_suffix)) return true;
  }
  return false;
}

bool InterruptedSaveIsNewer(bool began, bool final_has_identity,
                            int64_t final_save_time,
                            int64_t interrupted_save_time) {
  return began || !final_has_identity ||
         interrupted_save_time > final_save_time;
}

std::string DescribeInterruption(bool renames_began, int nshards,
                                 const char* what) {
  const std::string count = std::to_string(nshards) + " " + what;
  return renames_began
             ? "interrupted while giving its " + count + " their final names"
             : "interrupted after writing its " + count +
                   ", before renaming them";
}

Status FinishRenames(FileSystem* fs, const std::vector<std::string>& paths,
                     const InterruptedSave& save, const LogFn& log) {
  const std::string& suffix = save.temp_suffix;
  for (const std::string& path : paths) {
    if (!HasSuffix(path, suffix)) continue;
    const std::string final_path = path.substr(0, path.size() - suffix.size());
    const Status status = fs->RenameFile(path, final_path);
    if (!status.ok()) {
      return Prefixed("cannot finish the renames of an interrupted save: ",
                      status);
    }
    Log(log, "Renamed " + path + " to " + final_path +
                 " (finishing a save interrupted while renaming)");
  }
  return Status::OK();
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

uint64_t NewSaveId(int64_t now_micros) {
  std::random_device device;
  return (uint64_t{device()} << 32 | device()) ^
         static_cast<uint64_t>(now_micros);
}

std::string SaveIdText(uint64_t save_id) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016" PRIx64, save_id);
  return text;
}

std::string TempSuffix(uint64_t save_id) {
  return kTempMarker + SaveIdText(save_id);
}

std::string PartialName(const std::string& temp_path) {
  return temp_path + ".partial";
}

Status WriteWholeFile(FileSystem* fs, const std::string& temp_path,
                      const std::function<Status(WritableFile*)>& write) {
  const std::string partial = PartialName(temp_path);
  std::unique_ptr<WritableFile> file;
  MONOLITH_RETURN_IF_ERROR(fs->NewWritableFile(partial, &file));
  MONOLITH_RETURN_IF_ERROR(write(file.get()));
  MONOLITH_RETURN_IF_ERROR(file->Close());
  return fs->RenameFile(partial, temp_path);
}

Status ReplaceFile(FileSystem* fs, const std::string& path,
                   const std::string& temp_path, std::string_view contents) {
  const SplitBasename split(path);
  // Whether |path| was there when the rename began.
  bool replacing = false;
  uint64_t size = 0;
  const auto write = [&]() -> Status {
    MONOLITH_RETURN_IF_ERROR(fs->CreateDirectories(split.dir));
    std::unique_ptr<WritableFile> file;
    MONOLITH_RETURN_IF_ERROR(fs->NewWritableFile(temp_path, &file));
    MONOLITH_RETURN_IF_ERROR(file->Append(contents));
    MONOLITH_RETURN_IF_ERROR(file->Close());
    replacing = fs->GetFileSize(path, &size).ok();
    MONOLITH_RETURN_IF_ERROR(fs->RenameFile(temp_path, path));
    return fs->SyncDirectory(split.dir);
  };
  const Status status = write();
  if (status.ok()) return status;
  if (replacing &&
      fs->GetFileSize(path, &size).code() == StatusCode::kNotFound &&
      fs->GetFileSize(temp_path, &size).ok()) {
    // TF's HDFS rename deletes the target before it renames: the temporary
    // is then the only copy of either version.
    return Prefixed("renaming " + temp_path + " to " + path +
                        " failed after the file system deleted " + path +
                        "; its new contents are kept in " + temp_path + ": ",
                    status);
  }
  // The first error is the one to report.
  (void)fs->DeleteFile(temp_path);
  return status;
}

std::string ReplaceFileTemporary(const std::string& path, uint64_t high,
                                 uint64_t low) {
  return path + ".tmp-" + SaveIdText(high) + SaveIdText(low);
}

std::string DescribeSaveId(uint64_t save_id, int64_t save_time_micros) {
  return "from save " + SaveIdText(save_id) + " (begun at Unix time " +
         std::to_string(save_time_micros / 1000000) + ")";
}

}  // namespace hash_table
}  // namespace monolith
