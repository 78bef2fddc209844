// Fused lookup and optimize for synchronous training: the ids of every
// table and every shard arrive in one tensor, laid out shard-major
// (shard 0: table 0 .. table T-1, shard 1: ...), with fused_slot_size[s*T+t]
// ids for shard s and table t. Shards run in parallel on TF's CPU worker
// threads; each shard touches every table once, in one engine batch call.
#include <cstdint>
#include <vector>

#include "monolith/native_training/runtime/ops/multi_hash_table.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {
namespace monolith_tf {
namespace {

using ::monolith::hash_table::EmbeddingHashTable;
using ::monolith::hash_table::SumDuplicateIds;

class MultiHashTableFusedLookupOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableFusedLookupOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_of_shards", &num_shards_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx,
                   HoldMultiHashTable(ctx, 0, /*exclusive=*/false, &mtable));
    const Tensor* ids_input = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 1, "ids", &ids_input));
    const Tensor* slot_sizes = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 2, "fused_slot_size", &slot_sizes));
    // Unused (a lookup stamps no entry), so any value is taken, as the
    // original took it; a scalar, as elsewhere.
    int64_t req_time = 0;
    OP_REQUIRES_OK(ctx, GetScalarInput(ctx, 3, "req_time", &req_time));
    const Tensor& ids = *ids_input;
    FusedLayout layout;
    OP_REQUIRES_OK(ctx, ComputeFusedLayout(mtable->dims(), *slot_sizes,
                                           ids.NumElements(), num_shards_,
                                           &layout));
    Tensor* embeddings;
    OP_REQUIRES_OK(ctx, output_.Allocate(ctx, 0, layout.emb_offsets.back(),
                                         &embeddings));
    OP_REQUIRES_OK(ctx, OutputInt32Vector(ctx, 1, layout.emb_splits));
    OP_REQUIRES_OK(ctx, OutputInt32Vector(ctx, 2, layout.id_offsets));
    OP_REQUIRES_OK(ctx, OutputInt32Vector(ctx, 3, layout.emb_offsets));
    ctx->set_output(4, ids);
    const int64_t* id_data = ids.flat<int64_t>().data();
    float* out = embeddings->flat<float>().data();
    const int num_tables = mtable->size();
    // Every (shard, table) segment, in pieces run in parallel: a shard's
    // tables are not one item (one shard looked up on one thread).
    std::vector<LookupSegment> segments;
    for (int64_t s = 0; s < num_shards_; ++s) {
      for (int t = 0; t < num_tables; ++t) {
        const int64_t k = s * num_tables + t;
        segments.push_back({mtable->table(t).table.get(),
                            id_data + layout.id_offsets[k],
                            layout.id_offsets[k + 1] - layout.id_offsets[k],
                            out + layout.emb_offsets[k]});
      }
    }
    OP_REQUIRES_OK(ctx, LookupSegments(ctx, segments));
  }

 private:
  int num_shards_;
  ReusedFloatOutput output_;
};

class MultiHashTableFusedOptimizeOp : public GuardedOpKernel {
 public:
  explicit MultiHashTableFusedOptimizeOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_of_shards", &num_shards_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("enable_grad_accumulation",
                                     &enable_grad_accumulation_));
  }

  void ComputeUnguarded(OpKernelContext* ctx) override {
    HeldMultiHashTable mtable;
    OP_REQUIRES_OK(ctx,
                   HoldMultiHashTable(ctx, 0, /*exclusive=*/false, &mtable));
    FusedOptimizeInputs in;
    OP_REQUIRES_OK(ctx, ReadFusedOptimizeInputs(ctx, mtable->dims(),
                                                num_shards_, &in));
    OP_REQUIRES_OK(ctx, CheckTrainable(*mtable));
    OP_REQUIRES_OK(ctx, CheckLearningRates(*mtable, *in.learning_rates,
                                           "learning_rate_tensors"));
    const int num_tables = mtable->size();
    const std::vector<int64_t>& lr_offsets = mtable->learning_rate_offsets();
    const FusedLayout& layout = in.layout;
    const int64_t* id_data = in.ids->flat<int64_t>().data();
    const float* grad_data = in.grads->flat<float>().data();
    const float* lr_data = in.learning_rates->flat<float>().data();
    // A thread per table (for batches large enough to share out), its
    // shards' segments in order: an id in several segments (the shards of
    // several workers) is optimized segment by segment, whatever the
    // threads do (the original ran the shards in parallel, in no fixed
    // order).
    OP_REQUIRES_OK(ctx, RunItems(ctx, num_tables, in.ids->NumElements(),
                                 [&](int64_t t) {
      std::vector<int64_t> unique_ids;
      std::vector<float> summed;
      std::vector<uint32_t> occurrences;
      for (int64_t s = 0; s < num_shards_; ++s) {
        const int64_t k = s * num_tables + t;
        EmbeddingHashTable& table = *mtable->table(t).table;
        int64_t n = layout.id_offsets[k + 1] - layout.id_offsets[k];
        if (n == 0) continue;
        const int64_t* segment_ids = id_data + layout.id_offsets[k];
        const float* segment_grads = grad_data + layout.emb_offsets[k];
        const uint32_t* counts = nullptr;
        if (enable_grad_accumulation_) {
          // The filter still counts every occurrence.
          SumDuplicateIds(segment_ids, n, segment_grads, table.DimSize(),
                          &unique_ids, &summed, &occurrences);
          segment_ids = unique_ids.data();
          segment_grads = summed.data();
          counts = occurrences.data();
          n = unique_ids.size();
        }
        TF_RETURN_IF_ERROR(ToTfStatus(table.BatchOptimize(
            segment_ids, n, segment_grads, lr_data + lr_offsets[t],
            in.update_time, in.global_step,
            mtable->AdmitFnFor(segment_ids, counts))));
      }
      return OkStatus();
    }, [&](int64_t t) { return mtable->GrowthOutOfMemory(t); }));
    ctx->set_output(0, ctx->input(0));
  }

 private:
  int num_shards_;
  bool enable_grad_accumulation_;
};

}  // namespace

REGISTER_OP("MonolithMultiHashTableFusedLookup")
    .Input("mtable: resource")
    .Input("ids: int64")
    .Input("fused_slot_size: int32")
    .Input("req_time: int64")
    .Output("embeddings: float32")
    .Output("embedding_splits: int32")
    .Output("id_offsets: int32")
    .Output("embedding_offsets: int32")
    .Output("indices: int64")
    .Attr("num_of_shards: int >= 1")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"mtable", 0},
                                             {"ids", 1},
                                             {"fused_slot_size", 1},
                                             {"req_time", 0}}));
      int num_shards;
      TF_RETURN_IF_ERROR(c->GetAttr("num_of_shards", &num_shards));
      TF_RETURN_IF_ERROR(CheckFusedSlotSizeShape(c, 2, num_shards));
      c->set_output(0, c->Vector(c->UnknownDim()));
      c->set_output(1, c->Vector(num_shards));
      shape_inference::DimensionHandle offsets;
      TF_RETURN_IF_ERROR(c->Add(c->Dim(c->input(2), 0), 1, &offsets));
      c->set_output(2, c->Vector(offsets));
      c->set_output(3, c->Vector(offsets));
      c->set_output(4, c->Vector(c->Dim(c->input(1), 0)));
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableFusedLookup").Device(DEVICE_CPU),
    MultiHashTableFusedLookupOp);

REGISTER_OP("MonolithMultiHashTableFusedOptimize")
    .Input("mtable: resource")
    .Input("ids: int64")
    .Input("indices: int64")
    .Input("fused_slot_size: int32")
    .Input("id_grads: float")
    .Input("id_offsets: int32")
    .Input("grad_offsets: int32")
    .Input("learning_rate_tensors: float")
    .Input("req_time: int64")
    .Input("global_step: int64")
    .Output("mtable_out: resource")
    .Attr("num_of_shards: int >= 1")
    .Attr("enable_grad_accumulation: bool = false")
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"mtable", 0},
                                             {"ids", 1},
                                             {"indices", 1},
                                             {"fused_slot_size", 1},
                                             {"id_grads", 1},
                                             {"id_offsets", 1},
                                             {"grad_offsets", 1},
                                             {"learning_rate_tensors", 1},
                                             {"req_time", 0},
                                             {"global_step", 0}}));
      int num_shards;
      TF_RETURN_IF_ERROR(c->GetAttr("num_of_shards", &num_shards));
      TF_RETURN_IF_ERROR(CheckFusedSlotSizeShape(c, 3, num_shards));
      shape_inference::DimensionHandle ids;
      if (!c->Merge(c->Dim(c->input(1), 0), c->Dim(c->input(2), 0), &ids)
               .ok()) {
        return errors::InvalidArgument(
            "indices has ", c->DebugString(c->Dim(c->input(2), 0)),
            " elements, ids ", c->DebugString(c->Dim(c->input(1), 0)),
            "; pass the indices the fused lookup returned");
      }
      // One offset per (shard, table) segment, plus the end.
      shape_inference::DimensionHandle segments;
      TF_RETURN_IF_ERROR(c->Add(c->Dim(c->input(3), 0), 1, &segments));
      for (int offsets : {5, 6}) {
        shape_inference::DimensionHandle unused;
        if (!c->Merge(c->Dim(c->input(offsets), 0), segments, &unused).ok()) {
          return errors::InvalidArgument(
              offsets == 5 ? "id_offsets" : "grad_offsets", " has ",
              c->DebugString(c->Dim(c->input(offsets), 0)),
              " elements; fused_slot_size needs ", c->DebugString(segments),
              " (pass the offsets the fused lookup returned)");
        }
      }
      return shape_inference::ScalarShape(c);
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithMultiHashTableFusedOptimize").Device(DEVICE_CPU),
    MultiHashTableFusedOptimizeOp);

}  // namespace monolith_tf
}  // namespace tensorflow
