// A GPU table as a RowStore: the checkpoint code (gpu_row_checkpoint.h)
// saves and restores it through host memory, in chunks.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_STORE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_STORE_H_

#include <cstdint>
#include <vector>

#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_checkpoint.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_table.h"

namespace monolith {
namespace hash_table {
namespace gpu {

class GpuRowTableStore : public RowStore {
 public:
  // |stream|: the table's stream (see GpuRowTable).
  GpuRowTableStore(GpuRowTable* table, void* stream)
      : table_(table), stream_(stream) {}

  int64_t slots() const override { return table_->capacity(); }
  Status Export(int64_t begin, int64_t max_slots, IdShard shard,
                std::vector<int64_t>* ids, std::vector<float>* rows,
                int64_t* next) override {
    return table_->ExportRowsToHost(begin, max_slots, ids, rows, next,
                                    stream_, shard);
  }
  Status Put(const int64_t* ids, int64_t n, const float* rows) override {
    return table_->PutRowsFromHost(ids, n, rows, stream_);
  }

 private:
  GpuRowTable* table_;
  void* stream_;
};

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_GPU_ROW_STORE_H_
