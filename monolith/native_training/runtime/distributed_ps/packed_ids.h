// The ids a worker sends a PS task, packed: per table, each id as its
// difference from the table's smallest id, in as few bytes as the table's
// range of ids needs. Monolith's v2 feature ids (FIDs) hold their slot in
// the top 16 bits and a hash in the low 48, so one slot's ids differ in
// their low 6 bytes: 6 bytes an id instead of 8 (v1 FIDs, slot << 54: 7; a
// table of several slots' ids: 8). Ids keep their order.
//
// Layout (little-endian), for T tables:
//   T headers of 16 bytes: base (uint64, the table's smallest id as
//   two's complement), count (uint32, its ids), width (uint8, 1 to 8
//   bytes an id), 3 zero bytes;
//   then per table, its ids: count * width bytes, each (id - base) mod
//   2^64 in `width` bytes.
// The row splits of the ids by table follow from the counts.
//
// TF-free: the worker's and PS's kernels (distributed_ps_ops.cc) call it.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_DISTRIBUTED_PS_PACKED_IDS_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_DISTRIBUTED_PS_PACKED_IDS_H_

#include <cstdint>
#include <vector>

#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace distributed_ps {

using ::monolith::hash_table::Status;

constexpr int64_t kPackedHeaderBytes = 16;

// How ids split by table (row splits: num_tables + 1, from 0 to the number
// of ids) are packed.
struct PackPlan {
  std::vector<uint64_t> bases;
  std::vector<int> widths;
  int64_t bytes = 0;  // the packed size
};

// InvalidArgument if the splits name no table, do not start at 0, decrease,
// or count 2^31 ids or more (what ReadPackedHeader takes).
Status PlanPack(const int64_t* ids, const std::vector<int64_t>& splits,
                PackPlan* plan);
// Writes plan.bytes bytes to out.
void Pack(const int64_t* ids, const std::vector<int64_t>& splits,
          const PackPlan& plan, uint8_t* out);

// What the headers of packed ids say, checked against their size.
struct PackedHeader {
  std::vector<uint64_t> bases;
  std::vector<int> widths;
  std::vector<int64_t> splits;  // row splits by table
  std::vector<int64_t> offsets;  // where each table's ids start
};

// Reads and checks the headers of |size| bytes of ids of |num_tables|
// tables packed by Pack: InvalidArgument (naming the table and the byte
// offset) if they do not fit the size exactly, a width is not 1 to 8, the
// padding is not zero, or the ids number 2^31 or more.
Status ReadPackedHeader(const uint8_t* data, int64_t size, int num_tables,
                        PackedHeader* header);
// Writes the header.splits.back() ids of checked packed data to ids.
void Unpack(const uint8_t* data, const PackedHeader& header, int64_t* ids);

}  // namespace distributed_ps
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_DISTRIBUTED_PS_PACKED_IDS_H_
