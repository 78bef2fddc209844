// A collisionless embedding table in GPU memory: int64 ids -> rows of
// floats laid out as the CPU engine's entries (gpu_row_spec.h), so that a
// row moves between GPU and CPU tables as it is and checkpoints are the
// CPU table's. An open-addressing map of ids in 16-id buckets with a row
// beside each slot; the table grows by rehashing into a map twice as
// large.
//
// Every batch operation takes device pointers and runs on the given CUDA
// stream (nullptr: the default stream). Operations that insert sort the
// batch's ids on the device first (a stable radix sort), so each distinct
// id is inserted once and its repeats are applied in input order, as the
// CPU table does: Assign keeps the last value of a repeated id,
// ApplyGradients applies each of its gradients in turn. A write waits for
// the device once (and once more per map it grows): after writing, where
// every map has room for all its batch's ids without passing max_load (the
// write then counts the new ids itself), else before, to size the maps
// from the number of new ids. WriteMany writes many tables with one such
// wait, sorting and writing up to 16 tables' batches in one go.
//
// This header has no CUDA types: host code built without nvcc calls it.
// Thread safety: none. Callers serialize calls on one table and make them
// all on one stream: a call may return with its kernels still queued, and
// the next reuses the table's scratch buffers.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_TABLE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_TABLE_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_spec.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {
namespace gpu {

class GpuRowTable {
 public:
  // InvalidArgument for an inconsistent spec, FailedPrecondition without a
  // usable GPU, ResourceExhausted when its memory does not hold the map.
  static Status Create(const GpuRowTableSpec& spec,
                       std::unique_ptr<GpuRowTable>* table);
  ~GpuRowTable();
  GpuRowTable(const GpuRowTable&) = delete;
  GpuRowTable& operator=(const GpuRowTable&) = delete;

  // out[i * value_floats ..]: the embedding of ids[i], zeros when absent.
  Status Lookup(const int64_t* ids, int64_t n, float* out, void* stream);

  // Whole rows (row_floats each: the entry and its update time, zeros when
  // absent) of n ids in host memory, and whether each is present, in host
  // vectors (for lookup_entry); returns once they are there.
  Status LookupRowsFromHost(const int64_t* ids, int64_t n,
                            std::vector<float>* rows, std::vector<char>* found,
                            void* stream);

  // A Lookup's arguments, for LookupMany.
  struct LookupRequest {
    GpuRowTable* table;
    const int64_t* ids;  // device
    int64_t n;
    float* out;  // device, n * table->spec().value_floats floats
  };
  // Every request's Lookup, in one kernel launch per 16 requests (e.g. all
  // tables of a multi table at once). The tables must be on one device;
  // InvalidArgument otherwise, before anything runs.
  static Status LookupMany(const std::vector<LookupRequest>& requests,
                           void* stream);
  // Sets the embeddings of ids (value_floats floats each), inserting absent
  // ids (their optimizer state initialized); a repeated id keeps its last.
  // Stamps update_time (seconds) on every id.
  Status Assign(const int64_t* ids, int64_t n, const float* values,
                int64_t update_time, void* stream);
  // Adds values to the embeddings of ids, inserting absent ids first;
  // repeated ids add up. Stamps update_time.
  Status AssignAdd(const int64_t* ids, int64_t n, const float* values,
                   int64_t update_time, void* stream);
  // Resets ids' entries to their initial values and optimizer state,
  // inserting absent ids; status (device, n) gets 0 for the occurrence that
  // inserted an id and 1 for the others, as the CPU table's. Stamps
  // update_time.
  Status Reinitialize(const int64_t* ids, int64_t n, int32_t* status,
                      int64_t update_time, void* stream);
  // Runs each segment's optimizer on ids' entries with grads (value_floats
  // each) and learning_rates (host, one per segment), inserting absent ids
  // first; a repeated id's gradients are applied in input order. Stamps
  // update_time.
  Status ApplyGradients(const int64_t* ids, int64_t n, const float* grads,
                        const std::vector<float>& learning_rates,
                        int64_t update_time, void* stream);
  // Whole rows (row_floats each, their update times included), for
  // restore: inserts or overwrites.
  Status PutRows(const int64_t* ids, int64_t n, const float* rows,
                 void* stream);

  // The writes above, for WriteMany; kApplySummedGradients is
  // ApplyGradients with each id's repeated gradients summed first (in
  // input order) and applied as one step, as the fused optimize's
  // enable_grad_accumulation does per segment.
  enum class Write { kAssign, kAssignAdd, kReinitialize, kApplyGradients,
                     kApplySummedGradients, kPutRows };
  // One table's batch of a WriteMany: the arguments of its single-table
  // call (values are the values, gradients or rows; status is for
  // kReinitialize, learning_rates for kApplyGradients and
  // kApplySummedGradients).
  struct WriteRequest {
    GpuRowTable* table = nullptr;
    const int64_t* ids = nullptr;
    int64_t n = 0;
    const float* values = nullptr;
    int32_t* status = nullptr;
    std::vector<float> learning_rates;
  };
  // The write of every request (distinct tables on one device), as the
  // single-table calls do it, waiting for the device once for all of them:
  // per 16 tables, one sort of all their ids and three kernel launches.
  // Every request is checked, its reserved ids included, and every map
  // grown as its new ids need before any table is written: on an error
  // nothing is written (a map may have grown).
  static Status WriteMany(Write write, const std::vector<WriteRequest>& requests,
                          int64_t update_time, void* stream);
  // Copies the entries of slots [begin, begin + max_slots) whose ids
  // |shard| holds to the device buffers ids (max_slots) and rows
  // (max_slots * row_floats), packed in no particular order;
  // *count gets how many, *next the slot to continue from (capacity() when
  // done). A save walks the map this way in chunks, each dump shard taking
  // only its own entries off the device.
  Status ExportRows(int64_t begin, int64_t max_slots, int64_t* ids,
                    float* rows, int64_t* count, int64_t* next, void* stream,
                    IdShard shard = {});

  // ExportRows and PutRows with host buffers, through device buffers the
  // table keeps (for saves and restores); they return once done.
  Status ExportRowsToHost(int64_t begin, int64_t max_slots,
                          std::vector<int64_t>* ids, std::vector<float>* rows,
                          int64_t* next, void* stream, IdShard shard = {});
  Status PutRowsFromHost(const int64_t* ids, int64_t n, const float* rows,
                         void* stream);

  // Expire times, as SlotExpireTimes holds them: seconds by feature slot
  // (SlotOfId: bits 48-62); slots not listed use default_seconds.
  struct ExpireSeconds {
    int64_t default_seconds = 0;
    std::vector<std::pair<uint32_t, int64_t>> by_slot;
  };
  // Drops the entries expired at |now| (seconds: now - update time >= the
  // id's slot's expire time; none at |now| <= 0), as
  // EmbeddingHashTable::Evict does; *evicted gets how many. A first pass
  // counts the kept entries; unless none expired, they then move to a new
  // map, halved from the current capacity while they fill it to at most
  // max_load / 2 (never below initial_capacity), which the table then
  // uses: both maps are allocated while it runs.
  Status Evict(int64_t now, const ExpireSeconds& expire, int64_t* evicted,
               void* stream);
  // The newest update time of any entry written, or restored through
  // PutRowsFromHost, so far (times ahead of the host's clock excepted,
  // AdvancesTableTime): with ExpiryNow, the "now" of saves and evictions,
  // as the CPU table's LatestUpdateTime. (Times are stamped clamped to
  // 0 .. 2^32 - 1, as the CPU table stores them.)
  int64_t latest_update_time() const { return latest_update_time_; }

  int64_t size() const { return size_; }
  int64_t capacity() const;
  // The device memory the table holds: its map and its scratch buffers.
  int64_t device_bytes() const;
  const GpuRowTableSpec& spec() const { return spec_; }

 private:
  struct Impl;
  GpuRowTable(const GpuRowTableSpec& spec, std::unique_ptr<Impl> impl);
  // Makes room for |extra| more ids without passing max_load.
  Status Reserve(int64_t extra, void* stream);
  // A write group's first half: at most 16 batches of distinct tables and
  // 2^31 - 1 ids, the first batch's table holding the group's scratch.
  // Concatenates and sorts their ids (stable, with their positions; see
  // gpu_write_runs.h) and zeroes the group's readback; with count_missing,
  // also counts the distinct ids each map lacks and queues the copies of
  // those counts and of the smallest and largest id to the host.
  static Status Prepare(const std::vector<const WriteRequest*>& group,
                        bool count_missing, void* stream);
  // Once those copies are done: InvalidArgument if the group holds a
  // reserved id.
  static Status CheckPrepared(const std::vector<const WriteRequest*>& group);
  // Whether every map of |group| has room for all ids of its batch.
  static bool HasRoom(const std::vector<const WriteRequest*>& group);
  // A whole write of one group that HasRoom: sorts, writes (the write
  // counts the new ids and writes nothing if a reserved id is in the
  // group), then waits for the counts; Account with |table_time|.
  static Status WriteUncounted(Write write,
                               const std::vector<const WriteRequest*>& group,
                               int64_t update_time, int64_t table_time,
                               void* stream);
  // Adds the group's new ids (readback) to its tables' sizes and moves
  // their latest update time to |table_time| (0: none; see WriteMany).
  static void Account(Write write,
                      const std::vector<const WriteRequest*>& group,
                      int64_t table_time);
  // Before any group's Commit of apply_gradients: queues the copy of the
  // group's learning rates to the device (allocating room for them).
  static Status StageLearningRates(
      const std::vector<const WriteRequest*>& group, void* stream);
  // The second half, once Reserve made room in every map: one launch finds
  // or inserts the row of each distinct (table, id), stamps it with
  // update_time and applies the write. With count_new, the launch counts
  // the new ids into the readback and refuses reserved ids itself.
  static Status Commit(Write write,
                       const std::vector<const WriteRequest*>& group,
                       int64_t update_time, bool count_new, void* stream);

  GpuRowTableSpec spec_;
  std::unique_ptr<Impl> impl_;
  int64_t size_ = 0;
  int64_t latest_update_time_ = 0;
};

// Sets |bytes| bytes at |data| (device memory of |device|) to |byte|, queued
// on |stream| with |device| made current (the calling thread may have
// another GPU's): for outputs written without a table.
Status FillDeviceBytes(int device, void* data, size_t bytes,
                       unsigned char byte, void* stream);

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_TABLE_H_
