// What the TF-free checkpoint libraries (hash tables, hash filters) need
// from TF in a kernel: the engine's FileSystem over tensorflow::Env, so
// checkpoints reach every file system TF does (local, HDFS, GCS, ...), the
// status conversion from TF to the engine, their ParallelFor on TF's CPU
// worker threads, and LogFns writing to TF's log.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_TF_FILE_SYSTEM_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_TF_FILE_SYSTEM_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "monolith/native_training/runtime/hash_table/checkpoint.h"
#include "monolith/native_training/runtime/hash_table/entry_accessor.h"
#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/slot_expire_times.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/platform/env.h"
#include "tensorflow/core/platform/status.h"

namespace tensorflow {
namespace monolith_tf {

// Maps a TF Status to an engine Status, keeping code and message.
::monolith::hash_table::Status FromTfStatus(const Status& s);

// The libraries' ParallelFor on the CPU worker threads of |ctx|.
::monolith::hash_table::ParallelFor WorkerThreads(OpKernelContext* ctx);
// The libraries' ParallelFor in the calling thread (SerialFor), an item's
// std::bad_alloc ResourceExhausted, as WorkerThreads' items' are.
::monolith::hash_table::ParallelFor CallingThread();

// The libraries' CancelledFn for the step of |ctx|: a save or restore stops
// once its caller gave up (a RunOptions deadline, a closed session, a
// worker's call cancelled on the PS), instead of running on for as long as
// it takes while holding the tables and their next save or restore.
::monolith::hash_table::CancelledFn StepCancelled(OpKernelContext* ctx);
// |parallel_for| whose items, once the step of |ctx| is cancelled, fail
// Cancelled instead of running: a hash filter's splits (whole files), a
// table's shards not begun (one of few records never asks CancelledFn).
::monolith::hash_table::ParallelFor UntilCancelled(
    OpKernelContext* ctx, ::monolith::hash_table::ParallelFor parallel_for);

// The save ops' nshards (-1, or 1 to kMaxCheckpointShards) and
// compression_type ("SNAPPY", the original's format, or "": uncompressed)
// attrs; InvalidArgument naming the attr.
Status GetSaveAttrs(OpKernelConstruction* ctx, int* nshards, bool* snappy);
// The save ops' slot_expire_time_config attr (a serialized
// SlotExpireTimeConfig, or "" for none: *expire_times stays null), which
// overrides the tables' own expire times; InvalidArgument if it does not
// parse.
Status GetSaveExpireTimes(
    OpKernelConstruction* ctx,
    std::unique_ptr<::monolith::hash_table::SlotExpireTimes>* expire_times);

void LogInfo(const std::string& line);
void LogWarning(const std::string& line);

// A restore into tables of which those named in |holding| hold entries
// checks every record (|check|) before the caller empties the tables and
// restores, so that a checkpoint it cannot take leaves them as they were
// (docs/checkpoints.md): runs |check|, saying why in the log as |restore|
// ("Restore of <basename>", ...), where |holding| is not empty.
Status CheckBeforeReplacing(const std::string& restore,
                            const std::vector<std::string>& holding,
                            const std::function<Status()>& check);
// After the tables |emptied| were emptied for a restore, runs |fill| (the
// restoring pass). If it fails part-way (out of memory included), runs
// |empty| (which empties them again: no table is left holding part of a
// checkpoint) and returns fill's error, with its code, saying so as
// |restore| (or that they could not be emptied).
Status FillOrLeaveEmpty(const std::string& restore,
                        const std::vector<std::string>& emptied,
                        const std::function<Status()>& fill,
                        const std::function<Status()>& empty);
// What each of the tables |table_names| of multi table |mtable| restores,
// from a restore op's values_only attr |values_only| (names of tables
// whose optimizer state starts afresh, RestoredState::kValuesOnly):
// InvalidArgument for a name that is not one of them or comes twice.
Status RestoredStates(
    const std::vector<std::string>& values_only,
    const std::vector<std::string>& table_names, const std::string& mtable,
    std::vector<::monolith::hash_table::RestoredState>* states);
// Logs (a warning) which tables |restore| ("Restore into <table>") takes
// values only of, if any.
void LogValuesOnly(const std::string& restore,
                   const std::vector<std::string>& values_only);
// RestoreCheckpoint's progress verb for a pass that checks (|check_only|)
// or restores; a |resharded| restore reads every record and keeps some.
inline const char* RestorePassVerb(bool check_only, bool resharded = false) {
  return check_only ? "Checked" : resharded ? "Read" : "Restored";
}

class TfFileSystem : public ::monolith::hash_table::FileSystem {
 public:
  explicit TfFileSystem(Env* env) : env_(env) {}

  ::monolith::hash_table::Status NewWritableFile(
      const std::string& path,
      std::unique_ptr<::monolith::hash_table::WritableFile>* file) override;
  ::monolith::hash_table::Status NewRandomAccessFile(
      const std::string& path,
      std::unique_ptr<::monolith::hash_table::RandomAccessFile>* file)
      override;
  ::monolith::hash_table::Status GetFileSize(const std::string& path,
                                             uint64_t* size) override;
  ::monolith::hash_table::Status ListDirectory(
      const std::string& dir, std::vector<std::string>* names) override;
  ::monolith::hash_table::Status RenameFile(const std::string& from,
                                            const std::string& to) override;
  ::monolith::hash_table::Status DeleteFile(const std::string& path) override;
  ::monolith::hash_table::Status CreateDirectories(
      const std::string& dir) override;
  ::monolith::hash_table::Status SyncDirectory(
      const std::string& dir) override;

 private:
  Env* const env_;
};

}  // namespace monolith_tf
}  // namespace tensorflow

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_TF_FILE_SYSTEM_H_
