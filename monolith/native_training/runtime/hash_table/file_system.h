// The few file operations checkpoints need, as an interface: the TF kernels
// implement it over tensorflow::Env (so checkpoints go wherever TF's file
// systems reach: local disk, HDFS, GCS), tests and tools over POSIX.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FILE_SYSTEM_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FILE_SYSTEM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::string_view data) = 0;
  // Flushes, makes what was written durable (fsync, or what the file
  // system offers) and closes: the file is complete, and survives a power
  // loss, once this returns OK.
  virtual Status Close() = 0;
};

class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads up to |n| bytes at |offset| into |scratch|; |*read| is how many:
  // fewer than |n| at the end of the file, and may be before it (network
  // file systems: readers read on from there). Reading at or past the end
  // reads 0 bytes and is not an error.
  virtual Status Read(uint64_t offset, size_t n, char* scratch,
                      size_t* read) const = 0;
};

// Checkpoint saves and restores call one FileSystem from several threads at
// once (their ParallelFor): an implementation must be safe for concurrent
// calls, as PosixFileSystem is. Its errors must not carry the codes of a
// damaged file but NotFound (InvalidArgument, FailedPrecondition,
// OutOfRange, DataLoss: IsFileContentError): a reader would read past a
// failing read as damage.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Creates or truncates |path|.
  virtual Status NewWritableFile(const std::string& path,
                                 std::unique_ptr<WritableFile>* file) = 0;
  // NotFound if |path| does not exist.
  virtual Status NewRandomAccessFile(
      const std::string& path, std::unique_ptr<RandomAccessFile>* file) = 0;
  virtual Status GetFileSize(const std::string& path, uint64_t* size) = 0;
  // The names (not paths) of the entries of |dir|.
  virtual Status ListDirectory(const std::string& dir,
                               std::vector<std::string>* names) = 0;
  // Replaces |to| if it exists.
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual Status DeleteFile(const std::string& path) = 0;
  // Creates |dir| and its missing parents, durably where the file system
  // needs it (each new local folder's name synced in its parent: files
  // renamed into it then survive a crash with it); OK if it exists.
  virtual Status CreateDirectories(const std::string& dir) = 0;
  // Makes the renames and deletions done in |dir| durable (fsync of a local
  // folder; a no-op where the file system's renames are durable when they
  // return). Saves call it after their renames, before deleting the files
  // those superseded.
  virtual Status SyncDirectory(const std::string& dir) = 0;
};

// fsync of local file |path|: its data reaches stable storage.
Status SyncLocalFile(const std::string& path);
// fsync of local folder |dir|: the names created, renamed or deleted in it
// reach stable storage.
Status SyncLocalDirectory(const std::string& dir);
// Creates local folder |dir| and its missing parents, each new folder's
// name synced in its parent; OK if it exists.
Status CreateLocalDirectories(const std::string& dir);

// Local files through POSIX calls. Stateless: one may be shared by threads.
class PosixFileSystem : public FileSystem {
 public:
  Status NewWritableFile(const std::string& path,
                         std::unique_ptr<WritableFile>* file) override;
  Status NewRandomAccessFile(const std::string& path,
                             std::unique_ptr<RandomAccessFile>* file) override;
  Status GetFileSize(const std::string& path, uint64_t* size) override;
  Status ListDirectory(const std::string& dir,
                       std::vector<std::string>* names) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status DeleteFile(const std::string& path) override;
  Status CreateDirectories(const std::string& dir) override;
  Status SyncDirectory(const std::string& dir) override;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_FILE_SYSTEM_H_
