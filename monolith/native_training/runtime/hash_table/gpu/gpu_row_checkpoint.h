// Checkpoints of GPU tables in the CPU tables' format (checkpoint.h), so a
// table trained on GPU restores into CPU tables and the reverse.
//
// A row is the CPU entry plus its update time (gpu_row_spec.h), so its
// record is the one the CPU table writes for that entry
// (EntryAccessor::WriteRecord) and a CPU record reads back into a row. The
// rows come from, and go back to, a RowStore: a GPU table through its host
// staging (GpuRowTable), or host memory in tests. Nothing here includes
// CUDA or TensorFlow.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_CHECKPOINT_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_CHECKPOINT_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "monolith/native_training/runtime/hash_table/checkpoint.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/entry_accessor.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_spec.h"
#include "monolith/native_training/runtime/hash_table/slot_expire_times.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/hash_table/wire_writer.h"

namespace monolith {
namespace hash_table {
namespace gpu {

// Records of one table's rows.
class GpuRowRecords {
 public:
  // The layout of |config| (GpuRowTableSpecFor's checks).
  static Status Create(const EntryConfig& config,
                       std::unique_ptr<GpuRowRecords>* records);

  const GpuRowTableSpec& spec() const { return spec_; }
  // The CPU entry the rows' records describe (its segment dims, ...).
  const EntryAccessor& accessor() const { return *accessor_; }

  // Appends the record of entry |id| (row_floats floats) to |out|.
  void Write(int64_t id, const float* row, WireWriter* out) const;
  // Sets |id| and |row| (row_floats floats) from a record: read in place
  // when it has the layout Write gives, else parsed into |scratch| (a
  // record without optimizer state, or read kValuesOnly, gets the initial
  // state). DataLoss if it is not an EntryDump, InvalidArgument if its
  // entry does not fit the table's.
  Status Read(std::string_view record, RecordScratch* scratch, int64_t* id,
              float* row, RestoredState state = RestoredState::kAll) const;

 private:
  GpuRowRecords(std::unique_ptr<EntryAccessor> accessor,
                GpuRowTableSpec spec);

  std::unique_ptr<EntryAccessor> accessor_;
  GpuRowTableSpec spec_;
};

// Where a table's rows are: host copies in and out.
class RowStore {
 public:
  virtual ~RowStore() = default;
  // The slots Export walks.
  virtual int64_t slots() const = 0;
  // Replaces *ids and *rows (row_floats floats each) with the entries of
  // slots [begin, begin + max_slots) whose ids |shard| holds (a GPU table
  // copies no others to the host); *next: where to go on (slots() once
  // done).
  virtual Status Export(int64_t begin, int64_t max_slots, IdShard shard,
                        std::vector<int64_t>* ids, std::vector<float>* rows,
                        int64_t* next) = 0;
  // Inserts or overwrites n whole rows.
  virtual Status Put(const int64_t* ids, int64_t n, const float* rows) = 0;
};

// Which entries a save skips: with now[t] > 0 and expire[t] given, those of
// table t expired at now[t] (as EmbeddingHashTable::Save skips them);
// tables past the end of either vector skip none.
struct SaveExpiry {
  std::vector<int64_t> now;
  std::vector<const SlotExpireTimes*> expire;
};

// The most bytes of ids and rows one Export of RowStoreSaver asks for and
// one Put of RowStoreRestorer hands over: a GPU table stages them on the
// device (and a restorer holds them per dump shard and table on the host),
// where 65,536 rows of a wide table (dim 65,536 with adagrad) took 32 GiB.
constexpr int64_t kMaxRowChunkBytes = int64_t{64} << 20;

// min(|rows|, the rows of |row_floats| floats and an id that fit
// kMaxRowChunkBytes), at least 1.
int64_t RowsPerChunk(int64_t rows, int row_floats);

// The TableSaver (SaveCheckpoint) of tables[t] with records[t]: each dump
// shard walks the table's slots, chunk_slots at a time (RowsPerChunk: fewer
// for wide rows), exporting the
// entries of that shard only (IdShard{shard, nshards}; a restore reads
// every shard, so any split restores the same), and writes those |expiry|
// keeps.
TableSaver RowStoreSaver(std::vector<RowStore*> tables,
                         std::vector<const GpuRowRecords*> records,
                         int64_t chunk_slots = 1 << 16,
                         SaveExpiry expiry = {});

// Rows a RowStoreRestorer puts at a time by default.
constexpr int64_t kRestoreBatchRows = int64_t{1} << 14;

// Restores checkpoint records into tables[t] (records[t] reads them,
// taking states[t]: kAll where states has no element t), batch_rows rows
// (RowsPerChunk: fewer for wide rows) at a time per shard: Restore is the
// RecordRestorer for RestoreCheckpoint (shards may call it concurrently), Flush
// puts what is left once it returns. Puts into one store are serialized.
class RowStoreRestorer {
 public:
  RowStoreRestorer(std::vector<RowStore*> tables,
                   std::vector<const GpuRowRecords*> records, int nshards,
                   int64_t batch_rows = kRestoreBatchRows,
                   std::vector<RestoredState> states = {});

  // A record of table |table| from data shard |shard|.
  Status Restore(int shard, int table, std::string_view record);
  Status Flush();
  // Whether Restore would take the record, putting nothing: the error
  // Restore would return, or OK (a RecordRestorer for a checking pass,
  // where the tables may be null).
  Status Check(int shard, int table, std::string_view record);

 private:
  struct Pending {
    std::vector<int64_t> ids;
    std::vector<float> rows;
  };
  Status Put(int table, Pending* pending);
  RestoredState StateOf(int table) const;

  std::vector<RowStore*> tables_;
  std::vector<const GpuRowRecords*> records_;
  int64_t batch_rows_;
  std::vector<RestoredState> states_;
  // Per shard: its scratch, pending rows per table, and the row Check
  // decodes into.
  std::vector<RecordScratch> scratch_;
  std::vector<std::vector<Pending>> pending_;
  std::vector<std::vector<float>> checked_rows_;
  std::vector<std::unique_ptr<std::mutex>> table_mu_;
};

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_CHECKPOINT_H_
