#include "monolith/native_training/runtime/hash_table/table_checkpoint.h"

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace monolith {
namespace hash_table {

TableSaver EmbeddingTablesSaver(std::vector<const EmbeddingHashTable*> tables,
                                std::vector<int64_t> now,
                                const SlotExpireTimes* expire_times) {
  // A time per table; missing ones skip nothing.
  now.resize(tables.size(), 0);
  return [tables = std::move(tables), now = std::move(now), expire_times](
             int t, int shard, int nshards,
             const std::function<Status(std::string_view)>& write) {
    if (t < 0 || t >= static_cast<int>(tables.size())) {
      return InvalidArgumentError("saving table " + std::to_string(t) +
                                  " of " + std::to_string(tables.size()));
    }
    return tables[t]->Save(
        shard, nshards, now[t],
        [&write](const EmbeddingHashTable::SavedEntry& entry) {
          return write(std::string_view(entry.dump, entry.dump_size));
        },
        expire_times);
  };
}

RecordRestorer EmbeddingTablesRestorer(std::vector<EmbeddingHashTable*> tables,
                                       int nshards) {
  // Shared: std::function copies the restorer. A negative count holds no
  // shard: every record is then refused below (InvalidArgument).
  auto scratch =
      std::make_shared<std::vector<RecordScratch>>(std::max(nshards, 0));
  return [tables = std::move(tables), scratch](int shard, int t,
                                               std::string_view record) {
    if (t < 0 || t >= static_cast<int>(tables.size()) ||
        tables[t] == nullptr) {
      return Status::OK();
    }
    if (shard < 0 || shard >= static_cast<int>(scratch->size())) {
      return InvalidArgumentError("a record of data shard " +
                                  std::to_string(shard) + " of " +
                                  std::to_string(scratch->size()));
    }
    int64_t update_time = 0;
    return tables[t]->RestoreRecord(record.data(), record.size(),
                                    &(*scratch)[shard], &update_time);
  };
}

Status CheckRestorableInto(const CheckpointInfo& info, int table,
                           const EntryAccessor& accessor, RestoredState state) {
  MONOLITH_RETURN_IF_ERROR(
      CheckSegmentDims(info, table, accessor.SegmentDims()));
  return CheckOptimizerStateSaved(
      info, table, !accessor.serving() && state == RestoredState::kAll);
}

}  // namespace hash_table
}  // namespace monolith
