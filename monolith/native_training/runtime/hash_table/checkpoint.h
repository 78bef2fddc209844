// Checkpoints of a multi hash table, in the original's format:
//   basename-SSSSS-of-NNNNN       SNAPPY TFRecord of EntryDump, grouped by
//                                 table in the order of the meta records
//                                 (or an uncompressed TFRecord: readers
//                                 tell them apart by the first record's
//                                 header checksum)
//   basename.meta-SSSSS-of-NNNNN  TFRecord of MultiHashTableMetadata, one per
//                                 table: its name and how many entries follow
//
// Beyond the original, a save is atomic as a set and self-identifying:
// - every meta record carries the save's id, its shard index and count, the
//   data file's size, a digest of the table's records, the meta file's
//   table count, the table's segment dims and whether its records hold
//   values only (MultiHashTableMetadata fields 100-108, which the original
//   ignores);
//   readers check them all, so a restore reads one whole save or fails
//   naming the file that does not belong (a shard copied in from another
//   checkpoint);
// - every shard is written under a temporary name first (as
//   "<temporary>.partial" until closed, so temporaries are whole); the
//   final names are given only once all shards are complete, and then the
//   files of an earlier save at the basename with another shard count are
//   deleted.
//   A save killed while renaming is read whole through its remaining
//   temporaries, and the next save finishes its renames before it deletes
//   the temporaries of interrupted saves: no kill loses the last save.
// Checkpoints of the original (no identity fields) are read as before.
//
// No TensorFlow includes: files come from a FileSystem, parallelism from a
// ParallelFor, logging from a LogFn, so kernels, tools and tests share it.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_CHECKPOINT_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_CHECKPOINT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/sharded_files.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

// Shard numbers are written with five digits.
constexpr int kMaxCheckpointShards = 99999;

std::string CheckpointDataName(const std::string& basename, int shard,
                               int nshards);
std::string CheckpointMetaName(const std::string& basename, int shard,
                               int nshards);

// Runs fn(i) for every i in [0, n), in any order and possibly in parallel,
// and returns the first error (after which it may skip items not begun).
using ParallelFor =
    std::function<Status(int64_t n, const std::function<Status(int64_t)>& fn)>;
// A ParallelFor that runs in the calling thread.
Status SerialFor(int64_t n, const std::function<Status(int64_t)>& fn);

// LogFn (progress lines and warnings): see sharded_files.h.

// Whether the caller gave up on a save or restore (its step was cancelled:
// a deadline passed, its session closed). Asked every few thousand records
// per shard; an empty CancelledFn never cancels.
using CancelledFn = std::function<bool()>;

// Hands every record (serialized EntryDump) of table |table| that belongs
// to dump shard |shard| of |nshards| to |write|, stopping at its first
// error.
using TableSaver = std::function<Status(
    int table, int shard, int nshards,
    const std::function<Status(std::string_view record)>& write)>;

// How often a save or restore logs how far it got, beside a line per
// finished shard (shards written or read in parallel finish together).
constexpr std::chrono::milliseconds kProgressEvery{30000};

struct SaveOptions {
  int nshards = 1;  // 1 to kMaxCheckpointShards
  bool snappy = true;
  ParallelFor parallel_for = SerialFor;
  LogFn log;
  std::chrono::milliseconds progress_every = kProgressEvery;
  // Cancelled: the save stops, fails Cancelled, and deletes its temporaries
  // (the checkpoint at the basename stays as it was).
  CancelledFn cancelled;
  // Per table (in table_names order), the dims of its entry segments,
  // which its meta records carry for restores to check (CheckSegmentDims).
  // Empty: none recorded, as the original.
  std::vector<std::vector<uint32_t>> segment_dims;
  // Per table (in table_names order; empty: none), whether it is a SERVING
  // table, whose records hold values only (CheckOptimizerStateSaved).
  std::vector<bool> values_only;
  // About how many records the save writes, for its progress lines (the
  // tables' sizes: the expired entries it skips, or entries inserted
  // meanwhile, make it inexact); -1: unknown.
  int64_t expected_entries = -1;
  // The wall clock (microseconds since the epoch) the save's time is read
  // from; tests set another.
  std::function<int64_t()> now_micros = NowMicros;
};

struct SaveResult {
  uint64_t save_id = 0;
  int64_t entries = 0;
  uint64_t bytes = 0;
};

// Saves |table_names| (|save_table| produces their records) at |basename|,
// creating its directory.
Status SaveCheckpoint(FileSystem* fs, const std::string& basename,
                      const std::vector<std::string>& table_names,
                      const TableSaver& save_table, const SaveOptions& options,
                      SaveResult* result = nullptr);

// What a checkpoint's meta files say, checked to be one save.
struct CheckpointInfo {
  struct Table {
    std::string name;
    uint64_t entries = 0;  // over all shards
    // As saved; empty where the save recorded none (the original's).
    std::vector<uint32_t> segment_dims;
    // Saved by a SERVING table: records without optimizer state.
    bool values_only = false;
  };
  // One meta record: a table's entries in one data shard.
  struct ShardTable {
    int table = 0;  // index into tables
    uint64_t entries = 0;
    bool has_crc = false;
    uint32_t entries_crc32c = 0;
  };
  struct Shard {
    // Where the shard is read from: its final names, or temporaries of an
    // interrupted save (see temp_suffix).
    std::string data_path;
    std::string meta_path;
    std::vector<ShardTable> tables;  // in data-file order
    bool has_data_file_bytes = false;
    uint64_t data_file_bytes = 0;
    uint64_t meta_file_bytes = 0;  // its size when its meta was read
  };

  std::string basename;
  int nshards = 0;
  // False for checkpoints written without identity (the original's).
  bool has_identity = false;
  uint64_t save_id = 0;
  int64_t save_time_micros = 0;
  std::vector<Table> tables;  // in the order of the meta records
  std::vector<Shard> shards;
  // Not empty: the save was killed while renaming its files (or just
  // before), and is read through its temporaries "<final name><temp_suffix>"
  // where it had not renamed them yet.
  std::string temp_suffix;

  // The shards' files in the order a save renames them (each shard's data
  // file, then its meta file).
  std::vector<std::string> PathsInRenameOrder() const;
};

// Finds the checkpoint at |basename| and reads every meta file, checking
// that all come from one save and (with |need_data|) that every data file
// exists with the size its meta file states. Where files of two shard
// counts are present (a save interrupted before it deleted the older
// save's files), the complete, newer save is read and the other reported
// through |log|. A save killed while giving its shards their final names
// (after writing them all) is read whole, through the temporaries of the
// shards it had not renamed yet, and reported through |log|; the next
// save at |basename| finishes its renames.
Status ReadCheckpointInfo(FileSystem* fs, const std::string& basename,
                          bool need_data, const LogFn& log,
                          CheckpointInfo* info);

// ReadCheckpointInfo of each of |basenames| into (*infos)[i], listing each
// folder once (a resharded restore reads ~100 checkpoints of one asset
// folder, which holds every table's files); the first failure, naming its
// basename.
Status ReadCheckpointInfos(FileSystem* fs,
                           const std::vector<std::string>& basenames,
                           bool need_data, const LogFn& log,
                           std::vector<CheckpointInfo>* infos);

// OK unless table |table| of |info| was saved with segment dims other
// than |segment_dims| (those of the table it would be restored into);
// InvalidArgument naming both otherwise. A table saved without them (by
// the original, or by our saves before field 107) passes: its records'
// total dim is still checked one by one.
Status CheckSegmentDims(const CheckpointInfo& info, int table,
                        const std::vector<uint32_t>& segment_dims);

// OK unless table |table| of |info| was saved by a SERVING table (values
// only) and the table it would be restored into |restores_optimizer_state|
// (a TRAINING table restoring its records whole): FailedPrecondition
// naming the table then, since every entry's optimizer state would start
// over while its values carried on. Restoring values only (the table named
// in a restore's values_only) takes such a save, e.g. to seed training
// from a served model.
Status CheckOptimizerStateSaved(const CheckpointInfo& info, int table,
                                bool restores_optimizer_state);

// Consumes one record of table |table| (an index into info.tables) from
// data shard |shard|. Calls for different shards may run concurrently.
using RecordRestorer =
    std::function<Status(int shard, int table, std::string_view record)>;
// Called once data shard |shard| has handed every record of table |table|
// to the RecordRestorer and they matched its meta record (count and
// digest): a restorer that queues records writes them here.
using TableRestored = std::function<Status(int shard, int table)>;

// Reads every data shard of |info| (in parallel through |parallel_for|),
// handing each record to |restore|, and checks each table's records against
// its meta record (count and digest) and that nothing follows them. Errors
// name the file; |restore|'s errors are returned with the file prefixed.
// Progress lines say |progress_verb| ("Checked" for a pass that only
// checks the records), every |progress_every| and per shard. Once
// |cancelled|, the shards stop handing out records and the restore fails
// Cancelled (what |restore| consumed so far stays consumed). With
// |table_restored|, its errors are returned with the file and table
// prefixed.
Status RestoreCheckpoint(
    FileSystem* fs, const CheckpointInfo& info, const RecordRestorer& restore,
    const ParallelFor& parallel_for, const LogFn& log,
    const char* progress_verb = "Restored",
    std::chrono::milliseconds progress_every = kProgressEvery,
    const CancelledFn& cancelled = nullptr,
    const TableRestored& table_restored = nullptr);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_CHECKPOINT_H_
