#include "monolith/native_training/runtime/ops/tf_file_system.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "monolith/native_training/runtime/ops/op_util.h"
#include "tensorflow/core/framework/cancellation.h"
#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/platform/file_system.h"
#include "tensorflow/core/platform/path.h"

namespace tensorflow {
namespace monolith_tf {
namespace {

namespace ht = ::monolith::hash_table;

// The local path |path| names ("" for a path of another file system):
// those get fsync'ed, which TF's Sync() does not do for them.
std::string LocalPath(const std::string& path) {
  StringPiece scheme, host, local;
  io::ParseURI(path, &scheme, &host, &local);
  if (scheme.empty()) return path;
  return scheme == "file" ? std::string(local) : std::string();
}

// A file system's error: its code, but for those the checkpoint readers
// take for what a file says of itself (IsFileContentError), which TF's
// errno mapping also gives to failures (ENOTCONN, EPIPE and EBUSY are
// FailedPrecondition, EINVAL InvalidArgument, EOVERFLOW OutOfRange): those
// are Internal, naming the code, or a failing read would be read past as a
// damaged file, and an older save restored. NotFound stays: the readers
// tell a listed file that went (sharded_files.h, ListedFileStatus).
ht::Status FromTfFileStatus(const Status& s) {
  ht::Status status = FromTfStatus(s);
  switch (status.code()) {
    case ht::StatusCode::kInvalidArgument:
    case ht::StatusCode::kFailedPrecondition:
    case ht::StatusCode::kOutOfRange:
    case ht::StatusCode::kDataLoss:
      return ht::InternalError(
          "file system error (" +
          absl::StatusCodeToString(
              static_cast<absl::StatusCode>(status.code())) +
          "): " + status.message());
    default:
      return status;
  }
}

class TfWritableFile : public ht::WritableFile {
 public:
  TfWritableFile(std::unique_ptr<::tensorflow::WritableFile> file,
                 std::string local_path)
      : file_(std::move(file)), local_path_(std::move(local_path)) {}
  ht::Status Append(std::string_view data) override {
    return FromTfFileStatus(
        file_->Append(StringPiece(data.data(), data.size())));
  }
  ht::Status Close() override {
    MONOLITH_RETURN_IF_ERROR(FromTfFileStatus(file_->Sync()));
    MONOLITH_RETURN_IF_ERROR(FromTfFileStatus(file_->Close()));
    if (local_path_.empty()) return ht::Status::OK();
    return ht::SyncLocalFile(local_path_);
  }

 private:
  std::unique_ptr<::tensorflow::WritableFile> file_;
  const std::string local_path_;
};

class TfRandomAccessFile : public ht::RandomAccessFile {
 public:
  explicit TfRandomAccessFile(
      std::unique_ptr<::tensorflow::RandomAccessFile> file)
      : file_(std::move(file)) {}
  ht::Status Read(uint64_t offset, size_t n, char* scratch,
                  size_t* read) const override {
    StringPiece result;
    const Status s = file_->Read(offset, n, &result, scratch);
    // Some file systems hand back their own buffer.
    if (result.data() != scratch && !result.empty()) {
      std::memmove(scratch, result.data(), result.size());
    }
    *read = result.size();
    // OutOfRange means a short read at the end of the file, not an error.
    if (errors::IsOutOfRange(s)) return ht::Status::OK();
    return FromTfFileStatus(s);
  }

 private:
  std::unique_ptr<::tensorflow::RandomAccessFile> file_;
};

}  // namespace

ht::Status FromTfStatus(const Status& s) {
  if (s.ok()) return ht::Status::OK();
  const int code = static_cast<int>(s.code());
  // The engine's codes are the canonical ones (see status.h).
  if (code < static_cast<int>(ht::StatusCode::kCancelled) ||
      code > static_cast<int>(ht::StatusCode::kUnauthenticated)) {
    return ht::InternalError(std::string(s.message()));
  }
  return ht::Status(static_cast<ht::StatusCode>(code), std::string(s.message()));
}

ht::Status TfFileSystem::NewWritableFile(
    const std::string& path, std::unique_ptr<ht::WritableFile>* file) {
  std::unique_ptr<::tensorflow::WritableFile> tf_file;
  MONOLITH_RETURN_IF_ERROR(
      FromTfFileStatus(env_->NewWritableFile(path, &tf_file)));
  *file =
      std::make_unique<TfWritableFile>(std::move(tf_file), LocalPath(path));
  return ht::Status::OK();
}

ht::Status TfFileSystem::NewRandomAccessFile(
    const std::string& path, std::unique_ptr<ht::RandomAccessFile>* file) {
  std::unique_ptr<::tensorflow::RandomAccessFile> tf_file;
  MONOLITH_RETURN_IF_ERROR(
      FromTfFileStatus(env_->NewRandomAccessFile(path, &tf_file)));
  *file = std::make_unique<TfRandomAccessFile>(std::move(tf_file));
  return ht::Status::OK();
}

ht::Status TfFileSystem::GetFileSize(const std::string& path, uint64_t* size) {
  return FromTfFileStatus(env_->GetFileSize(path, size));
}

ht::Status TfFileSystem::ListDirectory(const std::string& dir,
                                       std::vector<std::string>* names) {
  names->clear();
  return FromTfFileStatus(env_->GetChildren(dir, names));
}

ht::Status TfFileSystem::RenameFile(const std::string& from,
                                    const std::string& to) {
  return FromTfFileStatus(env_->RenameFile(from, to));
}

ht::Status TfFileSystem::DeleteFile(const std::string& path) {
  return FromTfFileStatus(env_->DeleteFile(path));
}

ht::Status TfFileSystem::CreateDirectories(const std::string& dir) {
  const std::string local = LocalPath(dir);
  if (!local.empty()) return ht::CreateLocalDirectories(local);
  return FromTfFileStatus(env_->RecursivelyCreateDir(dir));
}

ht::Status TfFileSystem::SyncDirectory(const std::string& dir) {
  const std::string local = LocalPath(dir);
  if (local.empty() && !dir.empty()) return ht::Status::OK();
  return ht::SyncLocalDirectory(local);
}

::monolith::hash_table::ParallelFor WorkerThreads(OpKernelContext* ctx) {
  return [ctx](int64_t n,
               const std::function<::monolith::hash_table::Status(int64_t)>&
                   fn) {
    return FromTfStatus(ParallelFor(
        ctx, n, [&fn](int64_t i) { return ToTfStatus(fn(i)); }));
  };
}

::monolith::hash_table::ParallelFor CallingThread() {
  return [](int64_t n,
            const std::function<::monolith::hash_table::Status(int64_t)>& fn) {
    return ::monolith::hash_table::SerialFor(n, [&fn](int64_t i) {
      return OutOfMemoryAsStatus([&] { return fn(i); }, OutOfMemory);
    });
  };
}

::monolith::hash_table::CancelledFn StepCancelled(OpKernelContext* ctx) {
  CancellationManager* manager = ctx->cancellation_manager();
  if (manager == nullptr) return nullptr;  // a step nothing can cancel
  return [manager] { return manager->IsCancelled(); };
}

::monolith::hash_table::ParallelFor UntilCancelled(
    OpKernelContext* ctx, ::monolith::hash_table::ParallelFor parallel_for) {
  ::monolith::hash_table::CancelledFn cancelled = StepCancelled(ctx);
  if (!cancelled) return parallel_for;
  return [cancelled = std::move(cancelled),
          parallel_for = std::move(parallel_for)](
             int64_t n,
             const std::function<::monolith::hash_table::Status(int64_t)>&
                 fn) {
    return parallel_for(n, [&](int64_t i) {
      if (cancelled()) {
        return ::monolith::hash_table::CancelledError(
            "cancelled before it began (its caller gave up: a deadline "
            "passed or the session closed)");
      }
      return fn(i);
    });
  };
}

Status GetSaveAttrs(OpKernelConstruction* ctx, int* nshards, bool* snappy) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("nshards", nshards));
  if (*nshards != -1 &&
      (*nshards < 1 || *nshards > ::monolith::hash_table::kMaxCheckpointShards)) {
    return errors::InvalidArgument(
        "nshards must be -1 (one shard per 100k entries) or in [1, ",
        ::monolith::hash_table::kMaxCheckpointShards, "], got ", *nshards);
  }
  std::string compression;
  TF_RETURN_IF_ERROR(ctx->GetAttr("compression_type", &compression));
  if (compression != "SNAPPY" && !compression.empty()) {
    return errors::InvalidArgument(
        "compression_type must be \"SNAPPY\" (the original's format) or \"\" "
        "(uncompressed), got \"", compression, "\"");
  }
  *snappy = compression == "SNAPPY";
  return OkStatus();
}

Status GetSaveExpireTimes(
    OpKernelConstruction* ctx,
    std::unique_ptr<::monolith::hash_table::SlotExpireTimes>* expire_times) {
  std::string expire;
  TF_RETURN_IF_ERROR(ctx->GetAttr("slot_expire_time_config", &expire));
  if (expire.empty()) return OkStatus();
  ::monolith::hash_table::SlotExpireTimeConfig config;
  if (!config.ParseFromString(expire)) {
    return errors::InvalidArgument(
        "slot_expire_time_config is not a serialized SlotExpireTimeConfig");
  }
  TF_RETURN_IF_ERROR(
      ToTfStatus(::monolith::hash_table::CheckSlotExpireTimeConfig(config)));
  *expire_times =
      std::make_unique<::monolith::hash_table::SlotExpireTimes>(config);
  return OkStatus();
}

void LogInfo(const std::string& line) { LOG(INFO) << line; }

void LogWarning(const std::string& line) { LOG(WARNING) << line; }

Status CheckBeforeReplacing(const std::string& restore,
                            const std::vector<std::string>& holding,
                            const std::function<Status()>& check) {
  if (holding.empty()) return OkStatus();
  LOG(INFO) << restore << ": " << absl::StrJoin(holding, ", ")
            << (holding.size() == 1 ? " holds" : " hold")
            << " entries; every record is checked before they are replaced";
  return check();
}

Status RestoredStates(
    const std::vector<std::string>& values_only,
    const std::vector<std::string>& table_names, const std::string& mtable,
    std::vector<::monolith::hash_table::RestoredState>* states) {
  using ::monolith::hash_table::RestoredState;
  states->assign(table_names.size(), RestoredState::kAll);
  for (const std::string& name : values_only) {
    const auto found =
        std::find(table_names.begin(), table_names.end(), name);
    if (found == table_names.end()) {
      return errors::InvalidArgument(
          "values_only names table ", name, ", which ", mtable,
          " does not hold (its tables: ", absl::StrJoin(table_names, ", "),
          ")");
    }
    RestoredState& state = (*states)[found - table_names.begin()];
    if (state == RestoredState::kValuesOnly) {
      return errors::InvalidArgument("values_only names table ", name,
                                     " twice");
    }
    state = RestoredState::kValuesOnly;
  }
  return OkStatus();
}

void LogValuesOnly(const std::string& restore,
                   const std::vector<std::string>& values_only) {
  if (values_only.empty()) return;
  LOG(WARNING) << restore << ": tables " << absl::StrJoin(values_only, ", ")
               << " restore their values only; their optimizer state starts "
                  "as a new entry's (values_only)";
}

Status FillOrLeaveEmpty(const std::string& restore,
                        const std::vector<std::string>& emptied,
                        const std::function<Status()>& fill,
                        const std::function<Status()>& empty) {
  const Status filled = OutOfMemoryAsStatus(fill, OutOfMemory);
  if (filled.ok() || emptied.empty()) return filled;
  const Status emptied_again = OutOfMemoryAsStatus(empty, OutOfMemory);
  const std::string names = absl::StrJoin(emptied, ", ");
  const char* const subject = emptied.size() == 1 ? "table " : "tables ";
  if (!emptied_again.ok()) {
    return Status(filled.code(),
                  absl::StrCat(restore, " failed part-way and ", subject,
                               names, " could not be emptied again (",
                               emptied_again.message(),
                               "): they may hold part of the checkpoint; "
                               "restore again once the cause is fixed: ",
                               filled.message()));
  }
  return Status(filled.code(),
                absl::StrCat(restore, " failed part-way; ", subject, names,
                             emptied.size() == 1 ? " is" : " are",
                             " left empty (restore again once the cause is "
                             "fixed): ",
                             filled.message()));
}

}  // namespace monolith_tf
}  // namespace tensorflow
