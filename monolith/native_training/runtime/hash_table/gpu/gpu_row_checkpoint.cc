#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_checkpoint.h"

#include <algorithm>
#include <string>
#include <utility>

namespace monolith {
namespace hash_table {
namespace gpu {

Status GpuRowRecords::Create(const EntryConfig& config,
                             std::unique_ptr<GpuRowRecords>* records) {
  GpuRowTableSpec spec;
  MONOLITH_RETURN_IF_ERROR(GpuRowTableSpecFor(config, 0, &spec));
  std::unique_ptr<EntryAccessor> accessor;
  MONOLITH_RETURN_IF_ERROR(EntryAccessor::Create(config, &accessor));
  records->reset(new GpuRowRecords(std::move(accessor), std::move(spec)));
  return Status::OK();
}

GpuRowRecords::GpuRowRecords(std::unique_ptr<EntryAccessor> accessor,
                             GpuRowTableSpec spec)
    : accessor_(std::move(accessor)), spec_(std::move(spec)) {}

void GpuRowRecords::Write(int64_t id, const float* row,
                          WireWriter* out) const {
  accessor_->WriteRecord(id, row, RowTime(row, spec_.entry_floats), out);
}

Status GpuRowRecords::Read(std::string_view record, RecordScratch* scratch,
                           int64_t* id, float* row,
                           RestoredState state) const {
  uint64_t time = 0;
  bool all_zero = false;
  if (accessor_->ReadRecord(record.data(), record.size(), row, id, &time,
                            &all_zero, state)) {
    // The record's int64 field, clamped as the CPU table stores it.
    SetRowTime(row, spec_.entry_floats,
               ClampUpdateTime(static_cast<int64_t>(time)));
    return Status::OK();
  }
  MONOLITH_RETURN_IF_ERROR(
      ParseRecord(record.data(), record.size(), scratch, state));
  const EntryDump& dump = scratch->dump();
  MONOLITH_RETURN_IF_ERROR(accessor_->Restore(dump, row));
  *id = dump.id();
  SetRowTime(row, spec_.entry_floats,
             ClampUpdateTime(dump.last_update_ts_sec()));
  return Status::OK();
}

int64_t RowsPerChunk(int64_t rows, int row_floats) {
  const int64_t row_bytes =
      sizeof(int64_t) + sizeof(float) * int64_t{row_floats};
  return std::max<int64_t>(1, std::min(rows, kMaxRowChunkBytes / row_bytes));
}

TableSaver RowStoreSaver(std::vector<RowStore*> tables,
                         std::vector<const GpuRowRecords*> records,
                         int64_t chunk_slots, SaveExpiry expiry) {
  expiry.now.resize(tables.size(), 0);
  expiry.expire.resize(tables.size(), nullptr);
  return [tables = std::move(tables), records = std::move(records),
          chunk_slots, expiry = std::move(expiry)](
             int t, int shard, int nshards,
             const std::function<Status(std::string_view)>& write) {
    RowStore* store = tables[t];
    const GpuRowRecords& table_records = *records[t];
    const int row_floats = table_records.spec().row_floats();
    const int time_offset = table_records.spec().entry_floats;
    const int64_t table_chunk_slots = RowsPerChunk(chunk_slots, row_floats);
    const int64_t now = expiry.now[t];
    const SlotExpireTimes* expire = now > 0 ? expiry.expire[t] : nullptr;
    std::vector<int64_t> ids;
    std::vector<float> rows;
    WireWriter wire;
    int64_t next = 0;
    while (next < store->slots()) {
      const IdShard id_shard{shard, nshards};
      MONOLITH_RETURN_IF_ERROR(
          store->Export(next, table_chunk_slots, id_shard, &ids, &rows, &next));
      for (size_t i = 0; i < ids.size(); ++i) {
        // A store that ignored the shard would save entries many times.
        if (!id_shard.Holds(ids[i])) {
          return InternalError("a row store exported id " +
                               std::to_string(ids[i]) + " for dump shard " +
                               std::to_string(shard) + " of " +
                               std::to_string(nshards));
        }
        const float* row = rows.data() + i * row_floats;
        if (expire != nullptr &&
            expire->IsExpired(ids[i], RowTime(row, time_offset), now)) {
          continue;
        }
        wire.Clear();
        table_records.Write(ids[i], row, &wire);
        MONOLITH_RETURN_IF_ERROR(
            write(std::string_view(wire.data(), wire.size())));
      }
    }
    return Status::OK();
  };
}

RowStoreRestorer::RowStoreRestorer(std::vector<RowStore*> tables,
                                   std::vector<const GpuRowRecords*> records,
                                   int nshards, int64_t batch_rows,
                                   std::vector<RestoredState> states)
    : tables_(std::move(tables)),
      records_(std::move(records)),
      batch_rows_(batch_rows),
      states_(std::move(states)),
      scratch_(nshards),
      pending_(nshards, std::vector<Pending>(tables_.size())),
      checked_rows_(nshards) {
  for (size_t t = 0; t < tables_.size(); ++t) {
    table_mu_.push_back(std::make_unique<std::mutex>());
  }
}

namespace {

// A record's id that GPU tables reserve is refused when the record is read,
// so that a checking pass catches it before any table is emptied.
Status CheckStorable(int64_t id) {
  if (StorableId(id)) return Status::OK();
  return InvalidArgumentError("id " + std::to_string(id) +
                              " cannot be stored in a GPU table (GPU tables "
                              "reserve it); restore it into a CPU table");
}

}  // namespace

Status RowStoreRestorer::Restore(int shard, int table,
                                 std::string_view record) {
  Pending& pending = pending_[shard][table];
  const int row_floats = records_[table]->spec().row_floats();
  const size_t at = pending.ids.size();
  pending.ids.push_back(0);
  pending.rows.resize((at + 1) * row_floats);
  Status s = records_[table]->Read(record, &scratch_[shard], &pending.ids[at],
                                  pending.rows.data() + at * row_floats,
                                  StateOf(table));
  if (s.ok()) s = CheckStorable(pending.ids[at]);
  if (!s.ok()) {
    pending.ids.pop_back();
    pending.rows.resize(at * row_floats);
    return s;
  }
  if (static_cast<int64_t>(pending.ids.size()) >=
      RowsPerChunk(batch_rows_, row_floats)) {
    return Put(table, &pending);
  }
  return Status::OK();
}

Status RowStoreRestorer::Check(int shard, int table,
                               std::string_view record) {
  std::vector<float>& row = checked_rows_[shard];
  row.resize(records_[table]->spec().row_floats());
  int64_t id = 0;
  MONOLITH_RETURN_IF_ERROR(records_[table]->Read(
      record, &scratch_[shard], &id, row.data(), StateOf(table)));
  return CheckStorable(id);
}

RestoredState RowStoreRestorer::StateOf(int table) const {
  return table < static_cast<int>(states_.size()) ? states_[table]
                                                  : RestoredState::kAll;
}

Status RowStoreRestorer::Put(int table, Pending* pending) {
  if (pending->ids.empty()) return Status::OK();
  {
    std::lock_guard<std::mutex> lock(*table_mu_[table]);
    MONOLITH_RETURN_IF_ERROR(tables_[table]->Put(
        pending->ids.data(), static_cast<int64_t>(pending->ids.size()),
        pending->rows.data()));
  }
  pending->ids.clear();
  pending->rows.clear();
  return Status::OK();
}

Status RowStoreRestorer::Flush() {
  for (auto& shard : pending_) {
    for (size_t t = 0; t < shard.size(); ++t) {
      MONOLITH_RETURN_IF_ERROR(Put(static_cast<int>(t), &shard[t]));
    }
  }
  return Status::OK();
}

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith
