// A PosixFileSystem that "dies" after a given number of renames or new
// files: from then on every call that would change a file fails and changes
// nothing, as if the process had been killed there. Tests use it to leave
// exactly the files a kill at that point leaves, deterministically.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_DYING_FILE_SYSTEM_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_DYING_FILE_SYSTEM_H_

#include <atomic>
#include <memory>
#include <string>

#include "monolith/native_training/runtime/hash_table/file_system.h"

namespace monolith {
namespace hash_table {

class DyingFileSystem : public PosixFileSystem {
 public:
  // Dies at the rename after |renames| renames, or at the new file after
  // |new_files| new files (a negative count: never).
  DyingFileSystem(int renames, int new_files)
      : renames_left_(renames), new_files_left_(new_files) {}

  bool dead() const { return dead_; }

  Status NewWritableFile(const std::string& path,
                         std::unique_ptr<WritableFile>* file) override {
    if (Dies(&new_files_left_)) return Died(path);
    return PosixFileSystem::NewWritableFile(path, file);
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
  bool Dies(std::atomic<int>* left) {
    if (!dead_ && left->fetch_sub(1) == 0) dead_ = true;
    return dead_;
  }
  Status Died(const std::string& path) {
    return InternalError("killed (DyingFileSystem) at " + path);
  }

  std::atomic<int> renames_left_;
  std::atomic<int> new_files_left_;
  std::atomic<bool> dead_{false};
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_DYING_FILE_SYSTEM_H_
