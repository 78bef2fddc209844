// EmbeddingHashTables through the checkpoint code (checkpoint.h): the
// TableSaver and RecordRestorer that SaveCheckpoint and RestoreCheckpoint
// take, for callers that save or restore whole tables as they are.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TABLE_CHECKPOINT_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TABLE_CHECKPOINT_H_

#include <cstdint>
#include <vector>

#include "monolith/native_training/runtime/hash_table/checkpoint.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/slot_expire_times.h"

namespace monolith {
namespace hash_table {

// Saves table t of the checkpoint from tables[t] (EmbeddingHashTable::Save's
// records). With now[t] > 0 (a table past the end of |now|: 0) entries
// expired at now[t] are skipped, by |expire_times| when given, else by each table's
// own. The tables (and expire_times) must outlive the saver.
TableSaver EmbeddingTablesSaver(std::vector<const EmbeddingHashTable*> tables,
                                std::vector<int64_t> now = {},
                                const SlotExpireTimes* expire_times = nullptr);

// Restores the records of checkpoint table t into tables[t] (skipped where
// tables[t] is null, or t is past the end) with RestoreRecord, parsing
// with one scratch EntryDump per data shard of |nshards|. The tables must
// outlive the restorer. Records are written into the tables as they come:
// nothing is emptied first, and a record that fails leaves those before it
// written. For all or nothing, check every record first, Clear the tables,
// then restore (as the TF restore kernel does).
RecordRestorer EmbeddingTablesRestorer(std::vector<EmbeddingHashTable*> tables,
                                       int nshards);

// OK unless table |table| of |info| cannot be restored into a table of
// |accessor|'s entries restoring |state|: other segment dims
// (CheckSegmentDims), or a SERVING table's save restored whole into a
// training table (CheckOptimizerStateSaved). The restore kernels (CPU and
// GPU tables) check each table with it before any table changes.
Status CheckRestorableInto(const CheckpointInfo& info, int table,
                           const EntryAccessor& accessor, RestoredState state);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TABLE_CHECKPOINT_H_
