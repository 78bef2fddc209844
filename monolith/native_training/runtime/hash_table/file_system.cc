#include "monolith/native_training/runtime/hash_table/file_system.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <utility>

namespace monolith {
namespace hash_table {
namespace {

Status ErrnoError(const std::string& what, const std::string& path,
                  int error) {
  std::string message = what + " " + path + ": " + std::strerror(error);
  if (error == ENOENT) return NotFoundError(std::move(message));
  return InternalError(std::move(message));
}

// Whether fsync failed with |error| because the file system has no fsync
// for the file (some network and virtual file systems, for folders
// especially): there is nothing more to make durable.
bool FsyncUnsupported(int error) {
  return error == EINVAL || error == ENOTSUP || error == EOPNOTSUPP ||
         error == EROFS;
}

class PosixWritableFile : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd)
      : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Append(std::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("cannot write", path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::OK();
  }

  Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    if (::fsync(fd) != 0 && !FsyncUnsupported(errno)) {
      const int error = errno;
      ::close(fd);
      return ErrnoError("cannot sync", path_, error);
    }
    if (::close(fd) != 0) return ErrnoError("cannot close", path_, errno);
    return Status::OK();
  }

 private:
  const std::string path_;
  int fd_;
};

class PosixRandomAccessFile : public RandomAccessFile {
 public:
  PosixRandomAccessFile(std::string path, int fd)
      : path_(std::move(path)), fd_(fd) {}
  ~PosixRandomAccessFile() override { ::close(fd_); }

  Status Read(uint64_t offset, size_t n, char* scratch,
              size_t* read) const override {
    size_t done = 0;
    while (done < n) {
      const ssize_t r = ::pread(fd_, scratch + done, n - done,
                                static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("cannot read", path_, errno);
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    *read = done;
    return Status::OK();
  }

 private:
  const std::string path_;
  const int fd_;
};

// fsync of |path| opened with |flags| (a file or a folder).
Status SyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open to sync", path, errno);
  const int synced = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (synced != 0 && !FsyncUnsupported(error)) {
    return ErrnoError("cannot sync", path, error);
  }
  return Status::OK();
}

}  // namespace

Status SyncLocalFile(const std::string& path) {
  return SyncPath(path, O_RDONLY);
}

Status SyncLocalDirectory(const std::string& dir) {
  return SyncPath(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY);
}

Status PosixFileSystem::NewWritableFile(const std::string& path,
                                        std::unique_ptr<WritableFile>* file) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                        0644);
  if (fd < 0) return ErrnoError("cannot create", path, errno);
  *file = std::make_unique<PosixWritableFile>(path, fd);
  return Status::OK();
}

Status PosixFileSystem::NewRandomAccessFile(
    const std::string& path, std::unique_ptr<RandomAccessFile>* file) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path, errno);
  *file = std::make_unique<PosixRandomAccessFile>(path, fd);
  return Status::OK();
}

Status PosixFileSystem::GetFileSize(const std::string& path, uint64_t* size) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoError("cannot stat", path, errno);
  *size = static_cast<uint64_t>(st.st_size);
  return Status::OK();
}

Status PosixFileSystem::ListDirectory(const std::string& dir,
                                      std::vector<std::string>* names) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoError("cannot list", dir, errno);
  names->clear();
  // readdir returns null at the end and on an error, which only errno
  // tells apart: a listing cut short must not read as the whole folder.
  int error = 0;
  while (true) {
    errno = 0;
    const struct dirent* e = ::readdir(d);
    if (e == nullptr) {
      error = errno;
      break;
    }
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) {
      continue;
    }
    names->emplace_back(e->d_name);
  }
  ::closedir(d);
  if (error != 0) return ErrnoError("cannot list", dir, error);
  return Status::OK();
}

Status PosixFileSystem::RenameFile(const std::string& from,
                                   const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoError("cannot rename to " + to + ":", from, errno);
  }
  return Status::OK();
}

Status PosixFileSystem::DeleteFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return ErrnoError("cannot delete", path, errno);
  return Status::OK();
}

Status CreateLocalDirectories(const std::string& dir) {
  if (dir.empty()) return Status::OK();
  for (size_t slash = dir.find('/', 1);; slash = dir.find('/', slash + 1)) {
    const std::string prefix = dir.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) == 0) {
      const size_t last = prefix.find_last_of('/');
      const std::string parent = last == std::string::npos ? "."
                                 : last == 0 ? "/"
                                             : prefix.substr(0, last);
      MONOLITH_RETURN_IF_ERROR(SyncLocalDirectory(parent));
    } else if (errno != EEXIST) {
      return ErrnoError("cannot create directory", prefix, errno);
    }
    if (slash == std::string::npos) break;
  }
  return Status::OK();
}

Status PosixFileSystem::CreateDirectories(const std::string& dir) {
  return CreateLocalDirectories(dir);
}

Status PosixFileSystem::SyncDirectory(const std::string& dir) {
  return SyncLocalDirectory(dir);
}

}  // namespace hash_table
}  // namespace monolith
