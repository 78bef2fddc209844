// Ops of DistributedMultiTypeHashTable (distributed_ps.py), ours, not in the
// original (whose worker de-duplicated, split and merged ids with TF's stock
// ops: Unique, FloorMod, DynamicPartition, DynamicStitch, GatherV2,
// UnsortedSegmentSum, Cast). Each replaces a chain of those with one pass:
//
// * MonolithDistributedPsPartition (worker): the ids of every table, one
//   vector per table, de-duplicated per table (optionally) and split by PS
//   (floor modulo), as one ragged id tensor per PS (values, row splits),
//   and the index of each input id's row in the PS results, concatenated in
//   PS order (the float offset of the row).
// * MonolithDistributedPsPackIds (worker) and ...UnpackIds (PS): a PS's
//   ragged ids as one uint8 tensor, per table the differences from its
//   smallest id in as few bytes as its range needs
//   (runtime/distributed_ps/packed_ids.h), and back.
// * MonolithDistributedPsGather (worker): the embeddings of every input id,
//   one [n_t, dim_t] tensor per table, copied from the concatenated PS
//   results by the index (a table whose rows are a run of the results,
//   e.g. one PS and no repeats, is a slice of them: no copy).
//   MonolithDistributedPsGatherFloat16 reads float16 results, converting
//   them to float32 on the fly.
// * MonolithDistributedPsScatterAdd (worker): per-id rows (gradients), one
//   [n_t, dim_t] tensor per table, added into the partition's layout, one
//   flat tensor per PS, float32 or float16:
//   repeated ids sum their rows (from zero, in input order, as
//   UnsortedSegmentSum does), so the results are bit-identical to the stock
//   ops'.
// * MonolithDistributedPsLookupFloat16 (PS): a table lookup whose result is
//   float16 (EmbeddingHashTable::BatchLookupHalfs: no float32 result),
//   padded with a zero to an even length (read by the worker as int32
//   pairs).
//
// Float16 conversions round to nearest even and use the CPU's F16C
// instructions when it has them, as TF's Cast does (bit-identical to it,
// except that finite floats past +-65504 saturate there instead of becoming
// infinities); compressor/fp16.h's otherwise (the same bits).
//
// Why float16 reaches the gather op as int32 pairs (a free tf.bitcast of the
// received [k / 2, 2] float16 tensor): the op library's inputs are int32,
// int64, uint8, float and string only (what its op-argument fuzz test
// covers).
//
// The kernels validate their inputs (InvalidArgument naming the input) and
// call the TF-free helpers below; tables are processed in parallel on TF's
// CPU worker threads when a call has many ids.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "Eigen/Core"
#include "monolith/native_training/runtime/distributed_ps/packed_ids.h"
#include "monolith/native_training/runtime/hash_table/compressor/fp16.h"
#include "monolith/native_training/runtime/hash_table/compressor/fp16_batch.h"
#include "monolith/native_training/runtime/hash_table/position_slots.h"
#include "monolith/native_training/runtime/ops/multi_hash_table.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/types.h"

namespace monolith {
namespace distributed_ps {
namespace {

// ---------------------------------------------------------------------------
// TF-free helpers.

using ::monolith::hash_table::PositionSlots;

// Runs fn(i) for i in [0, n), possibly in parallel (each item heavy).
using Runner =
    std::function<void(int64_t n, const std::function<void(int64_t)>& fn)>;

// x mod d rounded toward negative infinity (non-negative for negative x),
// for a fixed d >= 1: a mask for powers of two (two's complement makes it
// the floor modulo), else a division (pipelined, a few ns on current CPUs;
// a branch-free Barrett reduction measured no faster).
class FloorMod {
 public:
  explicit FloorMod(int64_t d)
      : d_(d), power_of_two_((d & (d - 1)) == 0) {}

  int64_t operator()(int64_t x) const {
    if (power_of_two_) return x & (d_ - 1);
    const int64_t r = x % d_;  // C++: rounded toward zero
    return r < 0 ? r + d_ : r;
  }

 private:
  int64_t d_;
  bool power_of_two_;
};

// Splits the ids of tables (table t's counts[t] ids at table_ids[t]) by PS,
// floormod(id, num_ps); with |unique|, each table's repeated ids are sent
// once, in order of first occurrence. Positions (the index) count the ids
// table after table. Tables are split in parallel: Split() then, once the
// caller has the PS outputs sized by ps_id_splits(), Finish().
class IdPartition {
 public:
  // The caller checks counts: >= 0, summing to < 2^31.
  IdPartition(std::vector<const int64_t*> table_ids,
              std::vector<int64_t> counts, std::vector<int64_t> dims,
              int64_t num_ps, bool unique)
      : table_ids_(std::move(table_ids)),
        counts_(std::move(counts)),
        dims_(std::move(dims)),
        num_tables_(static_cast<int64_t>(counts_.size())),
        num_ps_(num_ps),
        unique_(unique),
        ps_of_(num_ps),
        begins_(num_tables_ + 1, 0),
        rows_(num_tables_ * num_ps, 0),
        sent_(unique ? num_tables_ : 0) {
    for (int64_t t = 0; t < num_tables_; ++t) {
      begins_[t + 1] = begins_[t] + counts_[t];
    }
  }

  // Splits the ids, writing into index[i] (i < the number of ids) the
  // float offset of id i's row (dims[t] floats) in the PS results
  // concatenated in PS order (see float_splits()) once Finish() has run.
  // Returns an error message, or "".
  std::string Split(int32_t* index, const Runner& run) {
    run(num_tables_, [&](int64_t t) {
      if (unique_) {
        SplitTable<true>(t, index);
      } else {
        SplitTable<false>(t, index);
      }
    });
    ps_id_splits_.assign(num_ps_ * (num_tables_ + 1), 0);
    float_splits_.assign(num_ps_ + 1, 0);
    bases_.assign(num_tables_ * num_ps_, 0);
    for (int64_t p = 0; p < num_ps_; ++p) {
      int64_t* splits = &ps_id_splits_[p * (num_tables_ + 1)];
      int64_t floats = float_splits_[p];
      for (int64_t t = 0; t < num_tables_; ++t) {
        const int64_t rows = rows_[t * num_ps_ + p];
        splits[t + 1] = splits[t] + rows;
        bases_[t * num_ps_ + p] = floats;
        floats += rows * dims_[t];
      }
      float_splits_[p + 1] = floats;
    }
    // Each PS's float16 result is padded to an even length: the padded
    // total must still fit the gather's int32 offsets.
    if (float_splits_[num_ps_] >
        std::numeric_limits<int32_t>::max() - num_ps_) {
      return "the rows of the ids sent hold " +
             std::to_string(float_splits_[num_ps_]) +
             " floats, more than 2^31 - 1 - num_ps; split the batch";
    }
    return "";
  }

  // Per PS: the row splits of its ids by table (num_tables + 1 each),
  // concatenated.
  const std::vector<int64_t>& ps_id_splits() const { return ps_id_splits_; }
  // Where each PS's result starts in the concatenated results, in floats,
  // and their total (num_ps + 1).
  const std::vector<int64_t>& float_splits() const { return float_splits_; }

  // Writes each PS's ids into ps_ids[p] (ps_id_splits' last element of PS p
  // of them; nothing if null) and completes index.
  void Finish(int32_t* index, int64_t* const* ps_ids, const Runner& run) {
    run(num_tables_, [&](int64_t t) {
      const int64_t n = counts_[t];
      const int64_t* table_ids = table_ids_[t];
      int32_t* table_index = index + begins_[t];
      const int64_t* base = &bases_[t * num_ps_];
      // The ids sent, in order: the first occurrences, or every id.
      const int64_t* sent = unique_ ? sent_[t].data() : table_ids;
      const int64_t num_sent = unique_ ? sent_[t].size() : n;
      if (num_ps_ == 1) {
        const int32_t offset = static_cast<int32_t>(base[0]);
        for (int64_t i = 0; i < n; ++i) table_index[i] += offset;
        if (ps_ids[0] != nullptr) {
          std::copy_n(sent, num_sent, ps_ids[0] + ps_id_splits_[t]);
        }
        return;
      }
      for (int64_t i = 0; i < n; ++i) {
        table_index[i] += static_cast<int32_t>(base[ps_of_(table_ids[i])]);
      }
      std::vector<int64_t*> out(num_ps_);
      for (int64_t p = 0; p < num_ps_; ++p) {
        out[p] = ps_ids[p] + ps_id_splits_[p * (num_tables_ + 1) + t];
      }
      for (int64_t i = 0; i < num_sent; ++i) *out[ps_of_(sent[i])]++ = sent[i];
    });
  }

 private:
  // Counts table t's ids sent to each PS (rows_) and writes into index the
  // offsets of their rows in the table's part of each PS's results; with
  // kUnique, keeps the ids sent (sent_).
  template <bool kUnique>
  void SplitTable(int64_t t, int32_t* index) {
    const int64_t n = counts_[t];
    const int64_t dim = dims_[t];
    const int64_t* table_ids = table_ids_[t];
    int32_t* table_index = index + begins_[t];
    const FloorMod ps_of = ps_of_;
    // Counted here, not in rows_, whose cache lines other tables' threads
    // write.
    std::vector<int64_t> row_counts(num_ps_, 0);
    int64_t* const rows = row_counts.data();
    // Narrowed offsets; Split() checks the total.
    if (!kUnique) {
      for (int64_t i = 0; i < n; ++i) {
        table_index[i] =
            static_cast<int32_t>(rows[ps_of(table_ids[i])]++ * dim);
      }
      std::copy_n(rows, num_ps_, &rows_[t * num_ps_]);
      return;
    }
    const PositionSlots::Probe seen = PositionSlots::ForThisThread().Emptied(n);
    std::vector<int64_t>& sent = sent_[t];
    sent.resize(n);
    int64_t* const sent_ids = sent.data();
    int64_t num_sent = 0;
    for (int32_t i = 0; i < n; ++i) {
      const int64_t id = table_ids[i];
      // The first of ids[0 .. i] equal to id: i if id is new.
      const uint64_t slot =
          seen.Find(id, [&](int32_t j) { return table_ids[j] == id; });
      const int32_t j = seen.slots[slot];
      const int32_t first = j < 0 ? i : j;
      seen.slots[slot] = first;
      const int64_t fresh = first == i;
      const int64_t p = ps_of(id);
      const int64_t row = rows[p];
      rows[p] = row + fresh;
      // Branch-free (repeats come at random): a new id (first == i) gets a
      // new row, a repeat the row of its first occurrence (first < i).
      table_index[i] = static_cast<int32_t>(row * dim);
      table_index[i] = table_index[first];
      sent_ids[num_sent] = id;
      num_sent += fresh;
    }
    sent.resize(num_sent);
    std::copy_n(rows, num_ps_, &rows_[t * num_ps_]);
  }

  std::vector<const int64_t*> table_ids_;
  std::vector<int64_t> counts_;
  std::vector<int64_t> dims_;
  int64_t num_tables_;
  int64_t num_ps_;
  bool unique_;
  FloorMod ps_of_;
  std::vector<int64_t> begins_;  // where each table's ids start
  // Per (table, PS), table-major: the number of ids sent and where their
  // rows start in the concatenated results.
  std::vector<int64_t> rows_;
  std::vector<int64_t> bases_;
  // Per table, with unique: the ids sent, in order.
  std::vector<std::vector<int64_t>> sent_;
  std::vector<int64_t> ps_id_splits_;
  std::vector<int64_t> float_splits_;
};

using ::monolith::hash_table::FloatsToHalfsSaturating;
using ::monolith::hash_table::HalfBitsToFloat;
using ::monolith::hash_table::HasF16c;

// Row copiers: kDim > 0 fixes the row length at compile time (the common
// dims), 0 reads it from |dim|.
template <int64_t kDim>
struct CopyFloats {
  static void Run(const float* src, int64_t dim, float* dst) {
    std::memcpy(dst, src, (kDim ? kDim : dim) * sizeof(float));
  }
};

template <int64_t kDim>
struct AddFloats {
  static void Run(const float* src, int64_t dim, float* dst) {
    const int64_t d = kDim ? kDim : dim;
    for (int64_t j = 0; j < d; ++j) dst[j] += src[j];
  }
};

template <int64_t kDim>
struct HalfsToFloatsSoftware {
  static void Run(const uint16_t* src, int64_t dim, float* dst) {
    const int64_t d = kDim ? kDim : dim;
    for (int64_t j = 0; j < d; ++j) dst[j] = HalfBitsToFloat(src[j]);
  }
};

template <int64_t kDim>
struct HalfsToFloatsF16c {
  __attribute__((target("avx,f16c"))) static void Run(const uint16_t* src,
                                                        int64_t dim,
                                                        float* dst) {
    const int64_t d = kDim ? kDim : dim;
    const int64_t whole = d - d % 8;
    for (int64_t j = 0; j < whole; j += 8) {
      _mm256_storeu_ps(dst + j,
                       _mm256_cvtph_ps(_mm_loadu_si128(
                           reinterpret_cast<const __m128i*>(src + j))));
    }
    for (int64_t j = whole; j < d; ++j) dst[j] = _cvtsh_ss(src[j]);
  }
};

// out[i * dim ..] = Row(values + index[i]) for i in [0, n), rows of |dim|
// elements inside values[0 .. num_values). Returns the first i whose index
// is out of range (nothing is written from it on), or -1.
template <template <int64_t> class Row, int64_t kDim, typename In,
          typename Out>
int64_t GatherLoop(const In* values, int64_t num_values, const int32_t* index,
                   int64_t n, int64_t dim, Out* out) {
  const int64_t last = num_values - dim;  // the largest valid offset
  for (int64_t i = 0; i < n; ++i) {
    const int64_t offset = index[i];
    if (offset < 0 || offset > last) return i;
    Row<kDim>::Run(values + offset, dim, out + i * dim);
  }
  return -1;
}

// Dispatches a GatherLoop on the common dims.
template <template <int64_t> class Row, typename In, typename Out>
int64_t Gather(const In* values, int64_t num_values, const int32_t* index,
               int64_t n, int64_t dim, Out* out) {
  switch (dim) {
#define MONOLITH_GATHER_DIM(D) \
  case D:                      \
    return GatherLoop<Row, D>(values, num_values, index, n, dim, out);
    MONOLITH_GATHER_DIM(1)
    MONOLITH_GATHER_DIM(2)
    MONOLITH_GATHER_DIM(4)
    MONOLITH_GATHER_DIM(8)
    MONOLITH_GATHER_DIM(16)
    MONOLITH_GATHER_DIM(32)
    MONOLITH_GATHER_DIM(64)
    MONOLITH_GATHER_DIM(128)
#undef MONOLITH_GATHER_DIM
    default:
      return GatherLoop<Row, 0>(values, num_values, index, n, dim, out);
  }
}

// Rows of float32 values at index (see GatherLoop).
int64_t GatherRows(const float* values, int64_t num_values,
                   const int32_t* index, int64_t n, int64_t dim, float* out) {
  return Gather<CopyFloats>(values, num_values, index, n, dim, out);
}

// Rows of float16 values (bits) at index, as float32 (see GatherLoop).
int64_t GatherRowsFromHalf(const uint16_t* values, int64_t num_values,
                           const int32_t* index, int64_t n, int64_t dim,
                           float* out) {
  if (HasF16c()) {
    return Gather<HalfsToFloatsF16c>(values, num_values, index, n, dim, out);
  }
  return Gather<HalfsToFloatsSoftware>(values, num_values, index, n, dim, out);
}

// Row(src + i * dim, dst + index[i]) for i in [0, n) in order: with
// AddFloats dst[index[i] ..] += the row, with CopyFloats the row replaces
// it (bits kept: -0.0 and denormals, which adding to 0 would lose).
// Returns the first i whose index is out of dst[0 .. num_dst) (rows from
// it on are not written), or -1.
template <template <int64_t> class Row>
int64_t ScatterRows(const float* src, const int32_t* index, int64_t n,
                    int64_t dim, float* dst, int64_t num_dst) {
  const int64_t last = num_dst - dim;
  auto loop = [&](auto write) -> int64_t {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t offset = index[i];
      if (offset < 0 || offset > last) return i;
      write(src + i * dim, dst + offset);
    }
    return -1;
  };
  switch (dim) {
#define MONOLITH_SCATTER_DIM(D)                                    \
  case D:                                                          \
    return loop(                                                   \
        [dim](const float* s, float* d) { Row<D>::Run(s, dim, d); });
    MONOLITH_SCATTER_DIM(1)
    MONOLITH_SCATTER_DIM(2)
    MONOLITH_SCATTER_DIM(4)
    MONOLITH_SCATTER_DIM(8)
    MONOLITH_SCATTER_DIM(16)
    MONOLITH_SCATTER_DIM(32)
    MONOLITH_SCATTER_DIM(64)
    MONOLITH_SCATTER_DIM(128)
#undef MONOLITH_SCATTER_DIM
    default:
      return loop(
          [dim](const float* s, float* d) { Row<0>::Run(s, dim, d); });
  }
}

}  // namespace
}  // namespace distributed_ps
}  // namespace monolith

namespace tensorflow {
namespace monolith_tf {
namespace {

namespace dps = ::monolith::distributed_ps;
using shape_inference::DimensionHandle;
using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

// The largest table dim the kernels take (keeps their int64 sizes far from
// overflow).
constexpr int64_t kMaxDim = int64_t{1} << 24;

// Every table dim in [1, kMaxDim] (shape functions and kernels alike).
Status CheckDimsRange(const std::vector<int64_t>& dims) {
  for (size_t t = 0; t < dims.size(); ++t) {
    if (dims[t] < 1 || dims[t] > kMaxDim) {
      return errors::InvalidArgument("dims[", t, "] must be in [1, 2^24], got ",
                                     dims[t]);
    }
  }
  return OkStatus();
}

// The table dims attr: one in [1, kMaxDim] per table (attr num_tables).
Status GetDims(OpKernelConstruction* ctx, std::vector<int64_t>* dims) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("dims", dims));
  int num_tables;
  TF_RETURN_IF_ERROR(ctx->GetAttr("num_tables", &num_tables));
  if (static_cast<int64_t>(dims->size()) != num_tables) {
    return errors::InvalidArgument("dims has ", dims->size(),
                                   " elements; num_tables is ", num_tables);
  }
  return CheckDimsRange(*dims);
}

// The ids of each table, input |index| ("id_counts"): one count >= 0 per
// table, summing to |num_ids| (< 2^31: positions are int32).
Status GetIdCounts(OpKernelContext* ctx, int index, int64_t num_tables,
                   int64_t num_ids, std::vector<int64_t>* counts) {
  const Tensor* input = nullptr;
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, index, "id_counts", &input));
  if (input->NumElements() != num_tables) {
    return errors::InvalidArgument("id_counts has ", input->NumElements(),
                                   " elements; expected one per table (",
                                   num_tables, ")");
  }
  auto flat = input->flat<int64_t>();
  counts->assign(flat.data(), flat.data() + num_tables);
  int64_t total = 0;
  for (int64_t t = 0; t < num_tables; ++t) {
    if ((*counts)[t] < 0) {
      return errors::InvalidArgument("id_counts[", t, "] is negative: ",
                                     (*counts)[t]);
    }
    total += (*counts)[t];
    if (total > std::numeric_limits<int32_t>::max()) {
      return errors::InvalidArgument(
          "id_counts sums to more than 2^31 - 1 ids; split the batch");
    }
  }
  if (total != num_ids) {
    return errors::InvalidArgument("id_counts sums to ", total, " ids but ",
                                   num_ids, " are given");
  }
  return OkStatus();
}

Status OutOfRange(int64_t table, int64_t row, int64_t offset, int64_t dim,
                  int64_t size, const char* what) {
  return errors::InvalidArgument(
      "index of row ", row, " of table ", table, " is ", offset,
      ": a row of ", dim, " outside ", what, " (", size,
      "); pass the index MonolithDistributedPsPartition returned");
}

// Shape functions: id_counts (input |input|) must have one element per
// table if its length is known.
Status CheckIdCountsLength(InferenceContext* c, int input,
                           int64_t num_tables) {
  DimensionHandle unused;
  if (!c->WithValue(c->Dim(c->input(input), 0), num_tables, &unused).ok()) {
    return errors::InvalidArgument(
        "id_counts has ", c->DebugString(c->Dim(c->input(input), 0)),
        " elements; expected one per table (", num_tables, ")");
  }
  return OkStatus();
}

// A runner of a kernel's per-table work: on TF's CPU worker threads when
// |ids| is large. An item out of memory throws std::bad_alloc on the
// kernel's thread, for GuardedOpKernel (on a worker thread ParallelFor
// catches it: an exception there would end the process).
dps::Runner RunnerFor(OpKernelContext* ctx, int64_t ids) {
  if (ids < kParallelIds) {
    return [](int64_t n, const std::function<void(int64_t)>& fn) {
      for (int64_t i = 0; i < n; ++i) fn(i);
    };
  }
  return [ctx](int64_t n, const std::function<void(int64_t)>& fn) {
    const Status s = ParallelFor(ctx, n, [&fn](int64_t i) {
      fn(i);
      return OkStatus();
    });
    // The items return OK: ParallelFor fails when one ran out of memory
    // (ResourceExhausted) or threw another exception (Internal: a bug),
    // which GuardedOpKernel reports as such.
    if (errors::IsResourceExhausted(s)) throw std::bad_alloc();
    if (!s.ok()) throw std::runtime_error(std::string(s.message()));
  };
}

// The ids of each table, list input "ids": vectors of at most 2^31 - 1
// ids in all (positions are int32).
Status GetTableIds(OpKernelContext* ctx, int64_t num_tables,
                   std::vector<const int64_t*>* table_ids,
                   std::vector<int64_t>* counts) {
  OpInputList ids;
  TF_RETURN_IF_ERROR(ctx->input_list("ids", &ids));
  if (ids.size() != num_tables) {
    return errors::InvalidArgument("ids has ", ids.size(),
                                   " tensors; expected one per table (",
                                   num_tables, ")");
  }
  int64_t total = 0;
  for (int64_t t = 0; t < num_tables; ++t) {
    if (!TensorShapeUtils::IsVector(ids[t].shape())) {
      return errors::InvalidArgument("ids[", t, "] must be a vector, got shape ",
                                     ids[t].shape().DebugString());
    }
    table_ids->push_back(ids[t].flat<int64_t>().data());
    counts->push_back(ids[t].NumElements());
    total += counts->back();
    if (total > std::numeric_limits<int32_t>::max()) {
      return errors::InvalidArgument(
          "ids hold more than 2^31 - 1 ids; split the batch");
    }
  }
  return OkStatus();
}

class PartitionOp : public GuardedOpKernel {
 public:
  explicit PartitionOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_ps", &num_ps_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("unique", &unique_));
    OP_REQUIRES_OK(ctx, GetDims(ctx, &dims_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    const int64_t num_tables = dims_.size();
    std::vector<const int64_t*> table_ids;
    std::vector<int64_t> counts;
    OP_REQUIRES_OK(ctx, GetTableIds(ctx, num_tables, &table_ids, &counts));
    Tensor* id_counts = nullptr;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output("id_counts", {num_tables}, &id_counts));
    std::copy(counts.begin(), counts.end(), id_counts->flat<int64_t>().data());
    const int64_t num_ids =
        std::accumulate(counts.begin(), counts.end(), int64_t{0});
    Tensor* index_output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output("index", {num_ids}, &index_output));
    int32_t* index = index_output->flat<int32_t>().data();
    const dps::Runner run = RunnerFor(ctx, num_ids);
    dps::IdPartition partition(std::move(table_ids), std::move(counts), dims_,
                               num_ps_, unique_);
    const std::string error = partition.Split(index, run);
    OP_REQUIRES(ctx, error.empty(), errors::InvalidArgument(error));
    OpOutputList ps_ids, ps_id_splits;
    OP_REQUIRES_OK(ctx, ctx->output_list("ps_ids", &ps_ids));
    OP_REQUIRES_OK(ctx, ctx->output_list("ps_id_splits", &ps_id_splits));
    const int64_t splits = num_tables + 1;
    std::vector<int64_t*> ps_id_data(num_ps_);
    for (int64_t p = 0; p < num_ps_; ++p) {
      const int64_t* src = &partition.ps_id_splits()[p * splits];
      Tensor* out = nullptr;
      if (num_ps_ == 1 && num_tables == 1 && src[1] == num_ids) {
        // Every id of the one table goes, in order, to the one PS: the
        // input, not a copy.
        ps_ids.set(0, ctx->input(0));
        ps_id_data[0] = nullptr;
      } else {
        OP_REQUIRES_OK(ctx, ps_ids.allocate(p, {src[splits - 1]}, &out));
        ps_id_data[p] = out->flat<int64_t>().data();
      }
      OP_REQUIRES_OK(ctx, ps_id_splits.allocate(p, {splits}, &out));
      std::copy_n(src, splits, out->flat<int64_t>().data());
    }
    partition.Finish(index, ps_id_data.data(), run);
    Tensor* float_splits = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output("float_splits", {num_ps_ + 1},
                                             &float_splits));
    std::copy(partition.float_splits().begin(),
              partition.float_splits().end(),
              float_splits->flat<int64_t>().data());
  }

  int64_t num_ps_;
  bool unique_;
  std::vector<int64_t> dims_;
};

// The float16 results of the PS (MonolithDistributedPsLookupFloat16's) are
// padded to even lengths: where the rows of |index| (offsets in the unpadded
// concatenation, see float_splits, input 3) are in |num_values| padded
// float16s. *padded_index stays empty when no PS before the last has an odd
// number of floats (the index is then right as it is). *readable_end is
// where the last PS's floats end in the padded float16s: rows end there at
// the latest (the padding after them is no row).
Status PaddedIndex(OpKernelContext* ctx, const int32_t* index, int64_t n,
                   int64_t num_values, std::vector<int32_t>* padded_index,
                   int64_t* readable_end) {
  const Tensor* input = nullptr;
  TF_RETURN_IF_ERROR(GetVectorInput(ctx, 3, "float_splits", &input));
  auto splits = input->flat<int64_t>();
  if (splits.size() < 2 || splits(0) != 0) {
    return errors::InvalidArgument(
        "float_splits must hold 0 and the end of each PS's floats, got ",
        splits.size(), " elements");
  }
  const int64_t num_ps = splits.size() - 1;
  // Per PS: the padding before its floats.
  std::vector<int64_t> shift(num_ps, 0);
  int64_t padded = 0;
  for (int64_t p = 0; p < num_ps; ++p) {
    if (splits(p + 1) < splits(p)) {
      return errors::InvalidArgument(
          "float_splits must be non-decreasing: float_splits[", p + 1,
          "] = ", splits(p + 1), " < ", splits(p));
    }
    // Padding only adds: a split past the values can never fit them (and
    // is checked before the sums below could overflow).
    if (splits(p + 1) > num_values) {
      return errors::InvalidArgument(
          "float_splits[", p + 1, "] = ", splits(p + 1),
          " is past the ", num_values, " float16s of float16_pairs");
    }
    const int64_t size = splits(p + 1) - splits(p);
    shift[p] = padded - splits(p);
    padded += size + size % 2;
  }
  if (num_values > std::numeric_limits<int32_t>::max()) {
    return errors::InvalidArgument(
        "float16_pairs holds more than 2^31 - 1 float16s; split the batch");
  }
  if (padded != num_values) {
    return errors::InvalidArgument(
        "float16_pairs holds ", num_values, " float16s; float_splits needs ",
        padded, " (each PS's padded to an even number)");
  }
  *readable_end = splits(num_ps) + shift[num_ps - 1];
  if (std::all_of(shift.begin(), shift.end(),
                  [](int64_t s) { return s == 0; })) {
    return OkStatus();
  }
  padded_index->resize(n);
  const int64_t* begin = splits.data();
  for (int64_t i = 0; i < n; ++i) {
    // The PS whose floats hold the row; out-of-range offsets stay so.
    const int64_t p =
        std::upper_bound(begin + 1, begin + num_ps, int64_t{index[i]}) -
        (begin + 1);
    const int64_t offset = index[i] < 0 ? index[i] : index[i] + shift[p];
    // Past num_values (<= 2^31 - 1) if clamped: still out of range.
    (*padded_index)[i] = static_cast<int32_t>(
        std::min<int64_t>(offset, std::numeric_limits<int32_t>::max()));
  }
  return OkStatus();
}

// InvalidArgument for the first row (|counts[t]| rows of table t, |dims[t]|
// floats each, at |index|, tables in order) that starts in one PS's floats
// of |splits| (num_ps + 1 ascending offsets from 0) and ends in the next
// PS's: a row spanning two PS would mix their embeddings or gradients.
// Called once the gather's or scatter's own check found every row inside
// [0, splits[num_ps]).
Status CheckRowsWithinOnePs(const int64_t* splits, int64_t num_ps,
                            const int32_t* index,
                            const std::vector<int64_t>& counts,
                            const std::vector<int64_t>& dims) {
  if (num_ps < 2) return OkStatus();
  for (size_t t = 0; t < counts.size(); ++t) {
    for (int64_t i = 0; i < counts[t]; ++i) {
      const int64_t begin = index[i];
      const int64_t p =
          std::upper_bound(splits + 1, splits + num_ps, begin) - (splits + 1);
      if (p + 1 < num_ps && begin + dims[t] > splits[p + 1]) {
        return errors::InvalidArgument(
            "index of row ", i, " of table ", t, " is ", begin, ": a row of ",
            dims[t], " floats that crosses float_splits[", p + 1,
            "] = ", splits[p + 1], " (each row lies in one PS's floats)");
      }
    }
    index += counts[t];
  }
  return OkStatus();
}

// Whether the n rows of |dim| floats that |index| points at are
// consecutive in |values| (a [n * dim] vector), starting at an offset that
// keeps TF's alignment; if so, *slice is them, [n, dim], sharing values'
// buffer.
bool SliceOfValues(const Tensor& values, const int32_t* index, int64_t n,
                   int64_t dim, Tensor* slice) {
  if (n == 0) return false;
  const int64_t begin = index[0];
  if (begin < 0 || begin + n * dim > values.NumElements()) return false;
  for (int64_t i = 1; i < n; ++i) {
    if (index[i] != begin + i * dim) return false;
  }
  const Tensor rows = values.Slice(begin, begin + n * dim);
  if (reinterpret_cast<uintptr_t>(rows.tensor_data().data()) %
          EIGEN_MAX_ALIGN_BYTES != 0) {
    return false;
  }
  return slice->CopyFrom(rows, TensorShape({n, dim}));
}

// MonolithDistributedPsGather (kHalf false) and ...GatherFloat16 (true).
template <bool kHalf>
class GatherOp : public GuardedOpKernel {
 public:
  explicit GatherOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, GetDims(ctx, &dims_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    const char* values_name = kHalf ? "float16_pairs" : "values";
    const Tensor* values = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 0, values_name, &values));
    const Tensor* index_input = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 1, "index", &index_input));
    std::vector<int64_t> counts;
    OP_REQUIRES_OK(ctx, GetIdCounts(ctx, 2, dims_.size(),
                                    index_input->NumElements(), &counts));
    const int32_t* index = index_input->flat<int32_t>().data();
    const int64_t num_values =
        kHalf ? 2 * values->NumElements() : values->NumElements();
    std::vector<int32_t> padded_index;
    // Rows end here at the latest (float16: before the last PS's padding).
    int64_t readable_end = num_values;
    if constexpr (kHalf) {
      OP_REQUIRES_OK(ctx, PaddedIndex(ctx, index, index_input->NumElements(),
                                      num_values, &padded_index,
                                      &readable_end));
    }
    const int32_t* read_index =
        padded_index.empty() ? index : padded_index.data();
    // Where the rows end in index's own (unpadded) positions, for errors.
    int64_t float_end = num_values;
    if constexpr (kHalf) {
      const auto splits = ctx->input(3).flat<int64_t>();
      float_end = splits(splits.size() - 1);
    }
    OpOutputList outputs;
    OP_REQUIRES_OK(ctx, ctx->output_list("embeddings", &outputs));
    const int64_t num_tables = dims_.size();
    std::vector<float*> rows(num_tables, nullptr);
    std::vector<int64_t> begins(num_tables + 1, 0);
    for (int64_t t = 0; t < num_tables; ++t) {
      begins[t + 1] = begins[t] + counts[t];
      if constexpr (!kHalf) {
        // Rows that are a run of values (no repeats, one PS) are a slice of
        // it: no copy.
        Tensor slice;
        if (SliceOfValues(*values, read_index + begins[t], counts[t],
                          dims_[t], &slice)) {
          outputs.set(t, slice);
          continue;
        }
      }
      Tensor* out = nullptr;
      OP_REQUIRES_OK(ctx, outputs.allocate(t, {counts[t], dims_[t]}, &out));
      rows[t] = out->flat<float>().data();
    }
    // Per table: the first row whose index is out of range, or -1.
    std::vector<int64_t> bad(num_tables, -1);
    RunnerFor(ctx, begins[num_tables])(num_tables, [&](int64_t t) {
      if (rows[t] == nullptr) return;  // a slice, or no rows
      const int32_t* table_index = read_index + begins[t];
      if constexpr (kHalf) {
        bad[t] = dps::GatherRowsFromHalf(
            reinterpret_cast<const uint16_t*>(values->tensor_data().data()),
            readable_end, table_index, counts[t], dims_[t], rows[t]);
      } else {
        bad[t] = dps::GatherRows(values->flat<float>().data(), num_values,
                                 table_index, counts[t], dims_[t], rows[t]);
      }
    });
    for (int64_t t = 0; t < num_tables; ++t) {
      OP_REQUIRES(ctx, bad[t] < 0,
                  OutOfRange(t, bad[t], index[begins[t] + bad[t]], dims_[t],
                             float_end,
                             kHalf ? "float16_pairs' floats (float_splits' "
                                     "last)"
                                   : "values' floats"));
    }
    if constexpr (kHalf) {
      const auto splits = ctx->input(3).flat<int64_t>();
      OP_REQUIRES_OK(ctx, CheckRowsWithinOnePs(splits.data(), splits.size() - 1,
                                               index, counts, dims_));
    }
  }

  std::vector<int64_t> dims_;
};

// MonolithDistributedPsScatterAdd, with float32 or float16 (T) outputs.
template <typename T>
class ScatterAddOp : public GuardedOpKernel {
 public:
  explicit ScatterAddOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_ps", &num_ps_));
    OP_REQUIRES_OK(ctx, GetDims(ctx, &dims_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("copy_rows", &copy_rows_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    const int64_t num_tables = dims_.size();
    OpInputList values;
    OP_REQUIRES_OK(ctx, ctx->input_list("values", &values));
    const int first = num_tables;  // the inputs after the values
    const Tensor* index_input = nullptr;
    const Tensor* float_splits_input = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, first, "index", &index_input));
    std::vector<int64_t> counts;
    OP_REQUIRES_OK(ctx, GetIdCounts(ctx, first + 1, num_tables,
                                    index_input->NumElements(), &counts));
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, first + 2, "float_splits",
                                       &float_splits_input));
    // Each table's rows are [its ids, its dim].
    for (int64_t t = 0; t < num_tables; ++t) {
      const TensorShape& shape = values[t].shape();
      OP_REQUIRES(ctx,
                  shape.dims() == 2 && shape.dim_size(0) == counts[t] &&
                      shape.dim_size(1) == dims_[t],
                  errors::InvalidArgument(
                      "values[", t, "] must be [", counts[t], ", ", dims_[t],
                      "] (table ", t, "'s ", counts[t], " ids of dim ",
                      dims_[t], "), got shape ", shape.DebugString()));
    }
    auto splits = float_splits_input->flat<int64_t>();
    OP_REQUIRES(ctx, splits.size() == num_ps_ + 1,
                errors::InvalidArgument("float_splits has ", splits.size(),
                                        " elements; expected num_ps + 1 (",
                                        num_ps_ + 1, ")"));
    OP_REQUIRES(ctx, splits(0) == 0,
                errors::InvalidArgument("float_splits must start at 0, got ",
                                        splits(0)));
    for (int64_t p = 0; p < num_ps_; ++p) {
      OP_REQUIRES(ctx, splits(p + 1) >= splits(p),
                  errors::InvalidArgument(
                      "float_splits must be non-decreasing: float_splits[",
                      p + 1, "] = ", splits(p + 1), " < ", splits(p)));
    }
    const int64_t total = splits(num_ps_);
    OP_REQUIRES(ctx, total <= std::numeric_limits<int32_t>::max(),
                errors::InvalidArgument("float_splits ends at ", total,
                                        ", over 2^31 - 1"));
    // Each float of the sums is in the row of at least one id: more floats
    // than the ids' rows hold is a bad split, not memory to allocate.
    int64_t row_floats = 0;
    for (int64_t t = 0; t < num_tables; ++t) {
      row_floats += counts[t] * dims_[t];
    }
    OP_REQUIRES(ctx, total <= row_floats,
                errors::InvalidArgument(
                    "float_splits ends at ", total, " floats, more than the ",
                    row_floats, " of the ids' rows (index's ids times their "
                    "tables' dims)"));

    // The sums, in float32: the only output, or a scratch buffer.
    OpOutputList outputs;
    OP_REQUIRES_OK(ctx, ctx->output_list("ps_values", &outputs));
    const bool direct = std::is_same_v<T, float> && num_ps_ == 1;
    Tensor sums;
    if (direct) {
      Tensor* out = nullptr;
      OP_REQUIRES_OK(ctx, outputs.allocate(0, {total}, &out));
      sums = *out;
    } else {
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(DT_FLOAT, {total}, &sums));
    }
    float* dst = sums.flat<float>().data();
    std::fill_n(dst, total, 0.0f);
    const int32_t* index = index_input->flat<int32_t>().data();
    const auto scatter = copy_rows_ ? dps::ScatterRows<dps::CopyFloats>
                                    : dps::ScatterRows<dps::AddFloats>;
    for (int64_t t = 0; t < num_tables; ++t) {
      const int64_t bad = scatter(values[t].flat<float>().data(), index,
                                  counts[t], dims_[t], dst, total);
      OP_REQUIRES(ctx, bad < 0,
                  OutOfRange(t, bad, bad < 0 ? 0 : index[bad], dims_[t],
                             total, "float_splits' floats"));
      index += counts[t];
    }
    OP_REQUIRES_OK(
        ctx, CheckRowsWithinOnePs(splits.data(), num_ps_,
                                  index_input->flat<int32_t>().data(), counts,
                                  dims_));
    if (direct) return;
    for (int64_t p = 0; p < num_ps_; ++p) {
      const int64_t size = splits(p + 1) - splits(p);
      Tensor* out = nullptr;
      OP_REQUIRES_OK(ctx, outputs.allocate(p, {size}, &out));
      if constexpr (std::is_same_v<T, float>) {
        std::copy_n(dst + splits(p), size, out->flat<float>().data());
      } else {
        dps::FloatsToHalfsSaturating(
            dst + splits(p), size,
            reinterpret_cast<uint16_t*>(
                const_cast<char*>(out->tensor_data().data())));
      }
    }
  }

  int64_t num_ps_;
  std::vector<int64_t> dims_;
  bool copy_rows_ = false;
};

class LookupFloat16Op : public GuardedOpKernel {
 public:
  explicit LookupFloat16Op(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx,
                   HoldMultiHashTable(ctx, 0, /*exclusive=*/false, &mtable));
    const Tensor* ids_input = nullptr;
    const Tensor* id_split_input = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 1, "id", &ids_input));
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 2, "id_split", &id_split_input));
    const int64_t num_tables = mtable->size();
    // Checked whole before anything is sized from it: every element then
    // lies in [0, number of ids].
    OP_REQUIRES_OK(ctx, CheckIdSplit(*ids_input, *id_split_input,
                                     num_tables + 1));
    auto split = id_split_input->flat<int64_t>();
    int64_t floats = 0;
    for (int64_t t = 0; t < num_tables; ++t) {
      floats += (split(t + 1) - split(t)) * mtable->table(t).table->DimSize();
    }
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {floats + floats % 2}, &out));
    uint16_t* halfs = reinterpret_cast<uint16_t*>(
        const_cast<char*>(out->tensor_data().data()));
    if (floats % 2) halfs[floats] = 0;
    const int64_t* ids = ids_input->flat<int64_t>().data();
    // A segment per table, its rows after the tables' before.
    std::vector<LookupSegmentOf<uint16_t>> segments;
    for (int64_t t = 0; t < num_tables; ++t) {
      const auto* table = mtable->table(t).table.get();
      segments.push_back(
          {table, ids + split(t), split(t + 1) - split(t), halfs});
      halfs += (split(t + 1) - split(t)) * table->DimSize();
    }
    OP_REQUIRES_OK(ctx, LookupSegments(ctx, segments));
  }
};

// MonolithDistributedPsPackIds: a PS's ids, packed (packed_ids.h).
class PackIdsOp : public GuardedOpKernel {
 public:
  explicit PackIdsOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    const Tensor* ids = nullptr;
    const Tensor* id_split = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 0, "ids", &ids));
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 1, "id_split", &id_split));
    auto split = id_split->flat<int64_t>();
    const std::vector<int64_t> splits(split.data(),
                                      split.data() + split.size());
    OP_REQUIRES(ctx, !splits.empty() && splits.back() == ids->NumElements(),
                errors::InvalidArgument(
                    "id_split must end at the number of ids (",
                    ids->NumElements(), ")"));
    dps::PackPlan plan;
    const Status planned =
        ToTfStatus(dps::PlanPack(ids->flat<int64_t>().data(), splits, &plan));
    OP_REQUIRES(ctx, planned.ok(),
                errors::InvalidArgument("id_split: ", planned.message()));
    Tensor* packed = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, {plan.bytes}, &packed));
    dps::Pack(ids->flat<int64_t>().data(), splits, plan,
              packed->flat<uint8_t>().data());
  }
};

// MonolithDistributedPsUnpackIds: the ids and row splits PackIds packed.
class UnpackIdsOp : public GuardedOpKernel {
 public:
  explicit UnpackIdsOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_tables", &num_tables_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    const Tensor* packed = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 0, "packed", &packed));
    const uint8_t* data = packed->flat<uint8_t>().data();
    dps::PackedHeader header;
    OP_REQUIRES_OK(ctx, ToTfStatus(dps::ReadPackedHeader(
                            data, packed->NumElements(), num_tables_,
                            &header)));
    Tensor* ids = nullptr;
    Tensor* id_split = nullptr;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(0, {header.splits.back()}, &ids));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            1, {int64_t{num_tables_} + 1}, &id_split));
    std::copy(header.splits.begin(), header.splits.end(),
              id_split->flat<int64_t>().data());
    dps::Unpack(data, header, ids->flat<int64_t>().data());
  }

  int num_tables_;
};

}  // namespace

REGISTER_OP("MonolithDistributedPsPackIds")
    .Input("ids: int64")
    .Input("id_split: int64")
    .Output("packed: uint8")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"ids", 1}, {"id_split", 1}}));
      c->set_output(0, c->Vector(c->UnknownDim()));
      return OkStatus();
    })
    .Doc(R"doc(
Ids split by table (row splits id_split), packed for the wire (ours): per
table, each id's difference from the table's smallest id in as few bytes as
the table's range needs, after a 16-byte header per table (see
runtime/distributed_ps/packed_ids.h). v2 feature ids of one slot take 6
bytes.
)doc");
REGISTER_KERNEL_BUILDER(
    Name("MonolithDistributedPsPackIds").Device(DEVICE_CPU), PackIdsOp);

REGISTER_OP("MonolithDistributedPsUnpackIds")
    .Input("packed: uint8")
    .Output("ids: int64")
    .Output("id_split: int64")
    .Attr("num_tables: int >= 1")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"packed", 1}}));
      // An int, as the kernel reads it: TF refuses values past int32.
      int num_tables;
      TF_RETURN_IF_ERROR(c->GetAttr("num_tables", &num_tables));
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(int64_t{num_tables} + 1));
      return OkStatus();
    })
    .Doc(R"doc(
The ids and row splits MonolithDistributedPsPackIds packed (ours);
InvalidArgument naming the table and byte when the headers do not fit.
)doc");
REGISTER_KERNEL_BUILDER(
    Name("MonolithDistributedPsUnpackIds").Device(DEVICE_CPU), UnpackIdsOp);

REGISTER_OP("MonolithDistributedPsPartition")
    .Input("ids: num_tables * int64")
    .Output("ps_ids: num_ps * int64")
    .Output("ps_id_splits: num_ps * int64")
    .Output("index: int32")
    .Output("float_splits: int64")
    .Output("id_counts: int64")
    .Attr("num_tables: int >= 1")
    .Attr("num_ps: int >= 1")
    .Attr("dims: list(int)")
    .Attr("unique: bool = true")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"ids", 1}}));
      int64_t num_ps;
      std::vector<int64_t> dims;
      TF_RETURN_IF_ERROR(c->GetAttr("num_ps", &num_ps));
      TF_RETURN_IF_ERROR(c->GetAttr("dims", &dims));
      TF_RETURN_IF_ERROR(CheckDimsRange(dims));
      const int64_t num_tables = dims.size();
      if (num_tables != c->num_inputs()) {
        return errors::InvalidArgument("dims has ", num_tables,
                                       " elements; num_tables is ",
                                       c->num_inputs());
      }
      DimensionHandle num_ids = c->MakeDim(0);
      for (int64_t t = 0; t < num_tables; ++t) {
        TF_RETURN_IF_ERROR(c->Add(num_ids, c->Dim(c->input(t), 0), &num_ids));
      }
      for (int64_t p = 0; p < num_ps; ++p) {
        c->set_output(p, c->Vector(c->UnknownDim()));
        c->set_output(num_ps + p, c->Vector(num_tables + 1));
      }
      c->set_output(2 * num_ps, c->Vector(num_ids));
      c->set_output(2 * num_ps + 1, c->Vector(num_ps + 1));
      c->set_output(2 * num_ps + 2, c->Vector(num_tables));
      return OkStatus();
    })
    .Doc(R"doc(
Ids of every table split by PS, for DistributedMultiTypeHashTable (ours).

ids: per table, its ids.
ps_ids: per PS, its ids (those with floormod(id, num_ps) == PS), table
  after table, each table's in input order (of first occurrence if unique).
ps_id_splits: per PS, the row splits of its ids by table.
index: per id, the float offset of its row (dims[table] floats) in the PS
  results (as a table lookup of ps_ids returns them) concatenated in PS
  order.
float_splits: where each PS's result starts in that concatenation, and
  its size.
id_counts: the number of ids of each table.
unique: whether each table's repeated ids are sent once.
)doc");
REGISTER_KERNEL_BUILDER(
    Name("MonolithDistributedPsPartition").Device(DEVICE_CPU), PartitionOp);

namespace {

Status GatherShape(InferenceContext* c, bool half) {
  if (half) {
    TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"float16_pairs", 1},
                                           {"index", 1},
                                           {"id_counts", 1},
                                           {"float_splits", 1}}));
  } else {
    TF_RETURN_IF_ERROR(CheckInputRanks(
        c, {{"values", 1}, {"index", 1}, {"id_counts", 1}}));
  }
  int num_tables;
  std::vector<int64_t> dims;
  TF_RETURN_IF_ERROR(c->GetAttr("num_tables", &num_tables));
  TF_RETURN_IF_ERROR(c->GetAttr("dims", &dims));
  TF_RETURN_IF_ERROR(CheckDimsRange(dims));
  if (static_cast<int64_t>(dims.size()) != num_tables) {
    return errors::InvalidArgument("dims has ", dims.size(),
                                   " elements; num_tables is ", num_tables);
  }
  TF_RETURN_IF_ERROR(CheckIdCountsLength(c, 2, num_tables));
  for (int t = 0; t < num_tables; ++t) {
    c->set_output(t, c->Matrix(c->UnknownDim(), dims[t]));
  }
  return OkStatus();
}

}  // namespace

REGISTER_OP("MonolithDistributedPsGather")
    .Input("values: float")
    .Input("index: int32")
    .Input("id_counts: int64")
    .Output("embeddings: num_tables * float")
    .Attr("num_tables: int >= 1")
    .Attr("dims: list(int)")
    .SetShapeFn([](InferenceContext* c) { return GatherShape(c, false); })
    .Doc(R"doc(
The rows of every id, per table, from the concatenated PS results (ours).

values: the PS results concatenated in PS order.
index: MonolithDistributedPsPartition's index of the ids.
id_counts: the number of ids of each table.
embeddings: per table, [id_counts[t], dims[t]].
)doc");
REGISTER_KERNEL_BUILDER(Name("MonolithDistributedPsGather").Device(DEVICE_CPU),
                        GatherOp<false>);

REGISTER_OP("MonolithDistributedPsGatherFloat16")
    .Input("float16_pairs: int32")
    .Input("index: int32")
    .Input("id_counts: int64")
    .Input("float_splits: int64")
    .Output("embeddings: num_tables * float")
    .Attr("num_tables: int >= 1")
    .Attr("dims: list(int)")
    .SetShapeFn([](InferenceContext* c) {
      return GatherShape(c, true);
    })
    .Doc(R"doc(
MonolithDistributedPsGather of float16 PS results, as float32 (ours).

float16_pairs: the PS results as MonolithDistributedPsLookupFloat16 returns
  them (float16, each padded to an even length), concatenated in PS order,
  two per int32 (in memory order): tf.bitcast(tf.reshape(h, [-1, 2]),
  tf.int32).
float_splits: MonolithDistributedPsPartition's (where each PS's results
  start, unpadded).
)doc");
REGISTER_KERNEL_BUILDER(
    Name("MonolithDistributedPsGatherFloat16").Device(DEVICE_CPU),
    GatherOp<true>);

REGISTER_OP("MonolithDistributedPsScatterAdd")
    .Input("values: num_tables * float")
    .Input("index: int32")
    .Input("id_counts: int64")
    .Input("float_splits: int64")
    .Output("ps_values: num_ps * T")
    .Attr("num_tables: int >= 1")
    .Attr("num_ps: int >= 1")
    .Attr("dims: list(int)")
    .Attr("T: {float, half} = DT_FLOAT")
    .Attr("copy_rows: bool = false")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"values", 2},
                                             {"index", 1},
                                             {"id_counts", 1},
                                             {"float_splits", 1}}));
      int64_t num_ps;
      std::vector<int64_t> dims;
      TF_RETURN_IF_ERROR(c->GetAttr("num_ps", &num_ps));
      TF_RETURN_IF_ERROR(c->GetAttr("dims", &dims));
      TF_RETURN_IF_ERROR(CheckDimsRange(dims));
      const int num_tables = static_cast<int>(dims.size());
      if (num_tables + 3 != c->num_inputs()) {
        return errors::InvalidArgument("dims has ", num_tables,
                                       " elements; num_tables is ",
                                       c->num_inputs() - 3);
      }
      for (int t = 0; t < num_tables; ++t) {
        DimensionHandle unused;
        if (!c->WithValue(c->Dim(c->input(t), 1), dims[t], &unused).ok()) {
          return errors::InvalidArgument(
              "values[", t, "] must have dims[", t, "] = ", dims[t],
              " columns, got shape ", c->DebugString(c->input(t)));
        }
      }
      TF_RETURN_IF_ERROR(CheckIdCountsLength(c, num_tables + 1, num_tables));
      for (int64_t p = 0; p < num_ps; ++p) {
        c->set_output(p, c->Vector(c->UnknownDim()));
      }
      return OkStatus();
    })
    .Doc(R"doc(
Per-id rows added into MonolithDistributedPsPartition's layout (ours).

values: per table t, the rows of its ids, [id_counts[t], dims[t]].
index, id_counts, float_splits: MonolithDistributedPsPartition's.
ps_values: per PS, its rows: the sum of the rows of the ids sent as it,
  from zero in input order (UnsortedSegmentSum's order), as T.
copy_rows: instead of summed, each row is copied in (the last row of ids
  sent as one wins; bits as they are with T float, rounded to half with T
  half): the partition's rows of an assign, not de-duplicated. No gradient.
)doc");
REGISTER_KERNEL_BUILDER(Name("MonolithDistributedPsScatterAdd")
                            .Device(DEVICE_CPU)
                            .TypeConstraint<float>("T"),
                        ScatterAddOp<float>);
REGISTER_KERNEL_BUILDER(Name("MonolithDistributedPsScatterAdd")
                            .Device(DEVICE_CPU)
                            .TypeConstraint<Eigen::half>("T"),
                        ScatterAddOp<Eigen::half>);

REGISTER_OP("MonolithDistributedPsLookupFloat16")
    .Input("mtable: resource")
    .Input("id: int64")
    .Input("id_split: int64")
    .Output("embedding: half")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(
          CheckInputRanks(c, {{"mtable", 0}, {"id", 1}, {"id_split", 1}}));
      c->set_output(0, c->Vector(c->UnknownDim()));
      return OkStatus();
    })
    .Doc(R"doc(
MonolithMultiHashTableLookup's result as float16 (rounded to nearest even,
as tf.cast; finite floats past +-65504 saturate), and a zero when its number
of floats is odd (ours): a PS's reply of DistributedMultiTypeHashTable's
float16 lookup, converted piece by piece (no float32 result).

id_split: row splits of id, one row per table.
)doc");
REGISTER_KERNEL_BUILDER(
    Name("MonolithDistributedPsLookupFloat16").Device(DEVICE_CPU),
    LookupFloat16Op);

}  // namespace monolith_tf
}  // namespace tensorflow
