// A PosixFileSystem that "dies" after a given number of renames, new files
// or appends (the dying append writes half its bytes): from then on every
// call that would change a file fails and changes nothing, as if the
// process had been killed there. Tests use it to leave
// exactly the files a kill at that point leaves, deterministically.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FAULTY_FILE_SYSTEMS_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FAULTY_FILE_SYSTEMS_H_

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/file_system.h"

namespace monolith {
namespace hash_table {

class DyingFileSystem : public PosixFileSystem {
 public:
  // Dies at the rename after |renames| renames, at the new file after
  // |new_files| new files, or at the append after |appends| appends (a
  // negative count: never).
  DyingFileSystem(int renames, int new_files, int appends = -1)
      : renames_left_(renames),
        new_files_left_(new_files),
        appends_left_(appends) {}

  bool dead() const { return dead_; }

  Status NewWritableFile(const std::string& path,
                         std::unique_ptr<WritableFile>* file) override {
    if (Dies(&new_files_left_)) return Died(path);
    std::unique_ptr<WritableFile> posix;
    MONOLITH_RETURN_IF_ERROR(PosixFileSystem::NewWritableFile(path, &posix));
    *file = std::make_unique<DyingFile>(this, path, std::move(posix));
    return Status::OK();
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    if (Dies(&renames_left_)) return Died(from);
    return PosixFileSystem::RenameFile(from, to);
  }
  Status DeleteFile(const std::string& path) override {
    if (dead_) return Died(path);
    return PosixFileSystem::DeleteFile(path);
  }

 private:
  class DyingFile : public WritableFile {
   public:
    DyingFile(DyingFileSystem* fs, std::string path,
              std::unique_ptr<WritableFile> file)
        : fs_(fs), path_(std::move(path)), file_(std::move(file)) {}
    Status Append(std::string_view data) override {
      if (fs_->dead_) return fs_->Died(path_);
      if (fs_->Dies(&fs_->appends_left_)) {
        file_->Append(data.substr(0, data.size() / 2)).ok();
        file_->Close().ok();
        return fs_->Died(path_);
      }
      return file_->Append(data);
    }
    Status Close() override {
      if (fs_->dead_) return fs_->Died(path_);
      return file_->Close();
    }

   private:
    DyingFileSystem* const fs_;
    const std::string path_;
    std::unique_ptr<WritableFile> file_;
  };

  bool Dies(std::atomic<int>* left) {
    if (!dead_ && left->fetch_sub(1) == 0) dead_ = true;
    return dead_;
  }
  Status Died(const std::string& path) {
    return InternalError("killed (DyingFileSystem) at " + path);
  }

  std::atomic<int> renames_left_;
  std::atomic<int> new_files_left_;
  std::atomic<int> appends_left_;
  std::atomic<bool> dead_{false};
};

// Fails the new file at index fail_opens_at, or the rename at index
// fail_renames_at (counted from 0; -1: none), once. With
// delete_target_on_failed_rename, the failing rename first deletes its
// target, as TF's HDFS rename (delete, then rename) can.
class FailingFileSystem : public PosixFileSystem {
 public:
  Status NewWritableFile(const std::string& path,
                         std::unique_ptr<WritableFile>* file) override {
    if (fail_opens_at >= 0 && opens_++ == fail_opens_at) {
      return InternalError("injected: cannot create " + path);
    }
    return PosixFileSystem::NewWritableFile(path, file);
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    if (fail_renames_at >= 0 && renames_++ == fail_renames_at) {
      if (delete_target_on_failed_rename) PosixFileSystem::DeleteFile(to).ok();
      return InternalError("injected: cannot rename " + from);
    }
    return PosixFileSystem::RenameFile(from, to);
  }

  int fail_opens_at = -1;
  int fail_renames_at = -1;
  bool delete_target_on_failed_rename = false;

 private:
  std::atomic<int> opens_{0};
  std::atomic<int> renames_{0};
};

// Counts the listings of its folders (a remote store's costly calls).
class ListingCountingFileSystem : public PosixFileSystem {
 public:
  Status ListDirectory(const std::string& dir,
                       std::vector<std::string>* names) override {
    ++listings;
    return PosixFileSystem::ListDirectory(dir, names);
  }

  std::atomic<int> listings{0};
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FAULTY_FILE_SYSTEMS_H_
