// Hash filter ops, with the original's names, inputs and attrs: the filter
// resources that CreateMonolithMultiHashTable takes (its updates consult
// them before creating an id; see hash_filter/admission.h), their save and
// restore, and intercept_gradient. Thin: the filters, their thresholds and
// their files are the hash_filter library's.
#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>

#include "monolith/native_training/runtime/hash_filter/admission.h"
#include "monolith/native_training/runtime/hash_filter/dummy_hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/filter_checkpoint.h"
#include "monolith/native_training/runtime/hash_filter/probabilistic_filter.h"
#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"
#include "monolith/native_training/runtime/hash_table/host_memory.h"
#include "monolith/native_training/runtime/ops/multi_hash_table.h"
#include "monolith/native_training/runtime/ops/tf_file_system.h"
#include "tensorflow/core/framework/attr_value_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/random.h"

namespace tensorflow {
namespace monolith_tf {
namespace {

namespace hf = ::monolith::hash_filter;
using ::monolith::hash_table::SlotOccurrenceThresholdConfig;
using shape_inference::InferenceContext;

// Creates a HashFilterResource around the filter MakeFilter returns, with
// the thresholds of the "config" attr (a serialized
// SlotOccurrenceThresholdConfig; empty: every threshold 0).
class FilterOpBase : public PrebuiltResourceOpKernel<HashFilterResource> {
 public:
  explicit FilterOpBase(OpKernelConstruction* ctx)
      : PrebuiltResourceOpKernel<HashFilterResource>(ctx) {
    // The op and its attrs but the resource's name, sorted: what a filter
    // found by shared name must have been created by.
    std::map<std::string, const AttrValue*> attrs;
    for (const auto& [name, value] : ctx->def().attr()) {
      // Internal attrs ("_class", ...) are the graph's, not the filter's.
      if (name != "container" && name != "shared_name" && name[0] != '_') {
        attrs[name] = &value;
      }
    }
    created_by_ = ctx->def().op();
    std::string listed;
    for (const auto& [name, value] : attrs) {
      created_by_ += "\n" + name + "\n" + value->SerializeAsString();
      listed += (listed.empty() ? "" : ", ") + name + "=" +
                SummarizeAttrValue(*value);
    }
    description_ = ctx->def().op() + "(" + listed + ")";
    std::string serialized;
    if (ctx->GetAttr("config", &serialized).ok() && !serialized.empty()) {
      OP_REQUIRES(ctx, config_.ParseFromString(serialized),
                  errors::InvalidArgument(
                      "config is not a serialized "
                      "SlotOccurrenceThresholdConfig"));
    }
  }

 protected:
  virtual Status MakeFilter(std::unique_ptr<hf::Filter>* filter) = 0;

 private:
  // A PS keeps its filters while chiefs and workers restart; a graph that
  // asks for another filter under the same name must not get this one.
  Status VerifyResource(HashFilterResource* resource) override {
    if (resource->created_by() == created_by_) return OkStatus();
    return errors::FailedPrecondition(
        "hash filter ", cinfo_.name(),
        " exists already (made by another graph or session, e.g. on a PS "
        "task that kept running) with other attrs; this graph asks for ",
        description_, ". Restart the tasks that hold it (another "
        "name_suffix for this graph's filters would keep the old filter, and "
        "its memory, on those tasks until they restart)");
  }

  Status BuildResource(HashFilterResource** resource) override
      TF_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    *resource = nullptr;
    std::unique_ptr<hf::Filter> filter;
    TF_RETURN_IF_ERROR(MakeFilter(&filter));
    std::unique_ptr<hf::Admission> admission;
    Status s = ToTfStatus(hf::Admission::Create(std::move(filter), config_,
                                                &admission));
    if (!s.ok()) {
      return errors::InvalidArgument(cinfo_.name(), ": ", s.message());
    }
    *resource = new HashFilterResource(std::move(admission), created_by_);
    return OkStatus();
  }

  SlotOccurrenceThresholdConfig config_;
  std::string created_by_;
  std::string description_;
};

class HashFilterOp : public FilterOpBase {
 public:
  explicit HashFilterOp(OpKernelConstruction* ctx) : FilterOpBase(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("capacity", &capacity_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("split_num", &split_num_));
    OP_REQUIRES(ctx, capacity_ > 0,
                errors::InvalidArgument("capacity must be > 0, got ",
                                        capacity_));
  }

 private:
  Status MakeFilter(std::unique_ptr<hf::Filter>* filter) override {
    // The cells are allocated (zeroed) at once: a capacity past this
    // machine's memory is refused, rather than the process killed.
    uint64_t bytes = 0;
    TF_RETURN_IF_ERROR(ToTfStatus(hf::SlidingHashFilter::MemoryBytesFor(
        static_cast<uint64_t>(capacity_), split_num_, &bytes)));
    const uint64_t memory = ::monolith::hash_table::UsableMemoryBytes();
    if (bytes > memory) {
      return errors::ResourceExhausted(
          "hash filter of capacity ", capacity_, " in ", split_num_,
          " splits needs ", bytes, " bytes, more than the ", memory,
          " bytes of memory this process may use");
    }
    std::unique_ptr<hf::SlidingHashFilter> sliding;
    try {
      TF_RETURN_IF_ERROR(ToTfStatus(hf::SlidingHashFilter::Create(
          static_cast<uint64_t>(capacity_), split_num_, &sliding)));
    } catch (const std::bad_alloc&) {
      return errors::ResourceExhausted("hash filter of capacity ", capacity_,
                                       " in ", split_num_,
                                       " splits: could not allocate ", bytes,
                                       " bytes");
    }
    *filter = std::move(sliding);
    return OkStatus();
  }

  int64_t capacity_ = 0;
  int split_num_ = 0;
};

class ProbabilisticFilterOp : public FilterOpBase {
 public:
  explicit ProbabilisticFilterOp(OpKernelConstruction* ctx)
      : FilterOpBase(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("equal_probability", &equal_probability_));
  }

 private:
  Status MakeFilter(std::unique_ptr<hf::Filter>* filter) override {
    *filter = std::make_unique<hf::ProbabilisticFilter>(equal_probability_,
                                                        random::New64());
    return OkStatus();
  }

  bool equal_probability_ = false;
};

class DummyHashFilterOp : public FilterOpBase {
 public:
  explicit DummyHashFilterOp(OpKernelConstruction* ctx) : FilterOpBase(ctx) {}

 private:
  Status MakeFilter(std::unique_ptr<hf::Filter>* filter) override {
    *filter = std::make_unique<hf::DummyHashFilter>();
    return OkStatus();
  }
};

// InvalidArgument naming |name| unless |rows| holds as many floats for
// each id, in the ids' order (as the original reads them: [num ids, floats
// / num ids], so [B, L, dim] embeddings of B * L ids too).
Status CheckRows(const Tensor& rows, const char* name, const Tensor& ids) {
  const int64_t n = ids.NumElements();
  if (rows.dims() < 1 ||
      (n == 0 ? rows.NumElements() != 0 : rows.NumElements() % n != 0)) {
    return errors::InvalidArgument(
        name, " must hold as many floats for each of the ", n,
        " ids, got shape ", rows.shape().DebugString());
  }
  return OkStatus();
}

// Saves the filter to "<basename>-SSSSS-of-NNNNN", one file per split
// (nothing for filters without splits), renamed into place once all are
// written; saves of one filter run one at a time. The filter is copied
// under its lock (updates that admit ids wait that long, not for the
// files) and the copy written, its splits in parallel: no lock is held
// then, so pool threads cannot wait behind table writers blocked in Admit.
// The copy doubles the filter's memory while the save runs (a restore
// needs as much); where it cannot be allocated, the filter is written
// under its lock, in this thread, as one.
class HashFilterSaveOp : public GuardedOpKernel {
 public:
  explicit HashFilterSaveOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    core::RefCountPtr<HashFilterResource> filter;
    OP_REQUIRES_OK(ctx, LookupResourceInput(ctx, 0, "handle", &filter));
    std::string basename;
    OP_REQUIRES_OK(ctx, GetPathInput(ctx, 1, "basename", &basename));
    hf::Admission& admission = filter->admission();
    mutex_lock saving(filter->save_mu());
    TfFileSystem fs(ctx->env());
    std::unique_lock<std::mutex> lock(admission.mu());
    std::unique_ptr<hf::Filter> snapshot;
    // A copy the memory left would not hold is not tried: its allocation
    // succeeds, and the OOM killer ends the process while it is filled.
    const uint64_t bytes = admission.filter().MemoryBytes();
    const uint64_t available = ::monolith::hash_table::AvailableMemoryBytes();
    if (bytes <= available) {
      try {
        snapshot = admission.filter().Clone();
        lock.unlock();
      } catch (const std::bad_alloc&) {
      }
    }
    if (snapshot == nullptr) {
      LOG(WARNING) << "Hash filter " << basename << ": no memory for a copy "
                   << "to save (" << bytes << " bytes; " << available
                   << " available); saving under its lock (updates that "
                   << "admit ids wait for the files)";
    }
    // The copy, its splits in parallel; without one, the live filter under
    // its lock, in this thread (and memory is short: an allocation that
    // fails is ResourceExhausted, not an exception out of the op).
    OP_REQUIRES_OK(ctx, ToTfStatus(OutOfMemoryAsStatus(
                            [&] {
                              return hf::SaveFilterCheckpoint(
                                  &fs, basename,
                                  snapshot ? *snapshot : admission.filter(),
                                  UntilCancelled(
                                      ctx, snapshot ? WorkerThreads(ctx)
                                                    : CallingThread()),
                                  LogInfo);
                            },
                            OutOfMemory)));
    ctx->set_output(0, ctx->input(0));
  }
};

// Restores the filter from what HashFilterSave (or the original) wrote; the
// filter is replaced only once every split has been read and checked. A
// checkpoint of another capacity or split count is not restored (a
// warning): the filter keeps what it holds, empty after a restart, so users
// can resize filters.
class HashFilterRestoreOp : public GuardedOpKernel {
 public:
  explicit HashFilterRestoreOp(OpKernelConstruction* ctx) : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    core::RefCountPtr<HashFilterResource> filter;
    OP_REQUIRES_OK(ctx, LookupResourceInput(ctx, 0, "handle", &filter));
    std::string basename;
    OP_REQUIRES_OK(ctx, GetPathInput(ctx, 1, "basename", &basename));
    hf::Admission& admission = filter->admission();
    // A save to the same basename meanwhile would rename files under the
    // restore's reads.
    mutex_lock saving(filter->save_mu());
    TfFileSystem fs(ctx->env());
    std::unique_ptr<hf::Filter> restored;
    {
      // Reads into a filter of the same configuration beside training,
      // which takes each split's cells as it restores them: the filter's
      // memory twice over at the end.
      std::unique_ptr<hf::Filter> into;
      {
        std::lock_guard<std::mutex> lock(admission.mu());
        if (admission.filter().split_num() <= 0) {
          // Stateless (dummy, probabilistic): nothing was saved. Replacing
          // it with a copy would replay a probabilistic filter's random
          // draws.
          ctx->set_output(0, ctx->input(0));
          return;
        }
        const uint64_t bytes = admission.filter().MemoryBytes();
        const uint64_t available =
            ::monolith::hash_table::AvailableMemoryBytes();
        OP_REQUIRES(
            ctx, bytes <= available,
            errors::ResourceExhausted(
                "hash filter ", basename,
                ": a restore reads into a filter of the same size, ", bytes,
                " bytes, and ", available,
                " bytes of memory are available (MemAvailable, or a memory "
                "cgroup's limit less its working set): the process would be "
                "killed filling it; free memory or give the task more"));
        try {
          into = admission.filter().CopyForRestore();
        } catch (const std::bad_alloc&) {
          OP_REQUIRES_OK(ctx, errors::ResourceExhausted(
                                  "hash filter ", basename,
                                  ": no memory for the filter a restore "
                                  "reads into"));
        }
      }
      std::string other_config;
      // Memory short outside the splits' own work (the listing, the meta
      // files): ResourceExhausted, not an exception out of the op.
      OP_REQUIRES_OK(ctx, ToTfStatus(OutOfMemoryAsStatus(
                              [&] {
                                return hf::RestoreFilterCheckpointInto(
                                    &fs, basename, std::move(into),
                                    UntilCancelled(ctx, WorkerThreads(ctx)),
                                    &restored, LogInfo,
                                    &other_config);
                              },
                              OutOfMemory)));
      if (!other_config.empty()) {
        // The filter keeps what it holds (nothing, after a restart), under
        // its own configuration, and every update made meanwhile.
        LOG(WARNING) << "Hash filter " << basename
                     << " was saved by a filter configured differently; "
                        "its counts are not restored: "
                     << other_config;
        ctx->set_output(0, ctx->input(0));
        return;
      }
    }
    admission.ReplaceFilter(std::move(restored));
    ctx->set_output(0, ctx->input(0));
  }
};

// Ours: forgets every count, as a restart would (restores call it where
// there is nothing of this job's to restore).
class HashFilterClearOp : public GuardedOpKernel {
 public:
  explicit HashFilterClearOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    core::RefCountPtr<HashFilterResource> filter;
    OP_REQUIRES_OK(ctx, LookupResourceInput(ctx, 0, "handle", &filter));
    // Not beside a save, which would write some splits before and some
    // after.
    mutex_lock saving(filter->save_mu());
    filter->admission().Clear();
    ctx->set_output(0, ctx->input(0));
  }
};

// Forward: the embeddings unchanged.
class HashFilterInterceptGradientOp : public GuardedOpKernel {
 public:
  explicit HashFilterInterceptGradientOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    core::RefCountPtr<HashFilterResource> filter;
    OP_REQUIRES_OK(ctx, LookupResourceInput(ctx, 0, "filter_handle", &filter));
    const Tensor* ids = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 1, "ids", &ids));
    OP_REQUIRES_OK(ctx, CheckRows(ctx->input(2), "embeddings", *ids));
    ctx->set_output(0, ctx->input(2));
  }
};

// Backward: the gradient rows of ids the filter keeps out are zeros. Each
// id is counted once more, as the original's.
class HashFilterInterceptGradientGradientOp : public GuardedOpKernel {
 public:
  explicit HashFilterInterceptGradientGradientOp(OpKernelConstruction* ctx)
      : GuardedOpKernel(ctx) {}

  void ComputeUnguarded(OpKernelContext* ctx) override {
    core::RefCountPtr<HashFilterResource> filter;
    OP_REQUIRES_OK(ctx, LookupResourceInput(ctx, 0, "filter_handle", &filter));
    const Tensor* ids = nullptr;
    OP_REQUIRES_OK(ctx, GetVectorInput(ctx, 1, "ids", &ids));
    const Tensor& grad = ctx->input(2);
    const int64_t n = ids->NumElements();
    OP_REQUIRES_OK(ctx, CheckRows(grad, "grad", *ids));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, grad.shape(), &out));
    const int64_t row = n == 0 ? 0 : grad.NumElements() / n;
    const float* in_data = grad.flat<float>().data();
    float* out_data = out->flat<float>().data();
    auto id_vec = ids->flat<int64_t>();
    hf::Admission& admission = filter->admission();
    for (int64_t i = 0; i < n; ++i) {
      const bool filtered = admission.ShouldBeFiltered(id_vec(i));
      for (int64_t j = 0; j < row; ++j) {
        out_data[i * row + j] = filtered ? 0.0f : in_data[i * row + j];
      }
    }
  }
};

// Save and restore: a scalar handle and a scalar basename.
Status HandleAndBasenameShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"handle", 0}, {"basename", 0}}));
  return shape_inference::ScalarShape(c);
}

// A scalar filter handle, a vector of ids and rows (input |rows|), each
// named when its shape is wrong; the output is shaped as the rows.
Status InterceptShape(InferenceContext* c, const char* rows) {
  TF_RETURN_IF_ERROR(CheckInputRank(c, "filter_handle", 0));
  TF_RETURN_IF_ERROR(CheckInputRank(c, "ids", 1));
  TF_RETURN_IF_ERROR(CheckInputRank(c, rows, 1, /*at_least=*/true));
  c->set_output(0, c->input(2));
  return OkStatus();
}

// The filter's figures now: the ids it is sized for, those it holds (an
// estimate), the ids it could not place (each admitted as if counted past
// every threshold: a filter too small for its traffic filters less), and
// the bytes of its counting cells.
class HashFilterStatsOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    core::RefCountPtr<HashFilterResource> filter;
    OP_REQUIRES_OK(ctx, LookupResourceInput(ctx, 0, "handle", &filter));
    uint64_t figures[4];
    {
      std::lock_guard<std::mutex> lock(filter->admission().mu());
      const hf::Filter& f = filter->admission().filter();
      figures[0] = f.capacity();
      figures[1] = f.estimated_total_element();
      figures[2] = f.failure_count();
      figures[3] = f.MemoryBytes();
    }
    for (int i = 0; i < 4; ++i) {
      Tensor* out;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(i, {}, &out));
      out->scalar<int64_t>()() = static_cast<int64_t>(std::min<uint64_t>(
          figures[i], std::numeric_limits<int64_t>::max()));
    }
  }
};

}  // namespace

REGISTER_OP("MonolithHashFilter")
    .Output("handle: resource")
    .Attr("capacity: int = 300000000")
    .Attr("split_num: int = 7")
    // A serialized SlotOccurrenceThresholdConfig.
    .Attr("config: string = ''")
    .Attr("container: string = ''")
    .Attr("shared_name: string = ''")
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);
REGISTER_KERNEL_BUILDER(Name("MonolithHashFilter").Device(DEVICE_CPU),
                        HashFilterOp);

REGISTER_OP("MonolithProbabilisticFilter")
    .Output("handle: resource")
    .Attr("equal_probability: bool = false")
    .Attr("config: string = ''")
    .Attr("container: string = ''")
    .Attr("shared_name: string = ''")
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);
REGISTER_KERNEL_BUILDER(Name("MonolithProbabilisticFilter").Device(DEVICE_CPU),
                        ProbabilisticFilterOp);

REGISTER_OP("MonolithDummyHashFilter")
    .Output("handle: resource")
    .Attr("container: string = ''")
    .Attr("shared_name: string = ''")
    .SetIsStateful()
    .SetShapeFn(shape_inference::ScalarShape);
REGISTER_KERNEL_BUILDER(Name("MonolithDummyHashFilter").Device(DEVICE_CPU),
                        DummyHashFilterOp);

REGISTER_OP("MonolithHashFilterStats")
    .Input("handle: resource")
    .Output("capacity: int64")
    .Output("estimated_elements: int64")
    .Output("failures: int64")
    .Output("memory_bytes: int64")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"handle", 0}}));
      for (int i = 0; i < 4; ++i) c->set_output(i, c->Scalar());
      return OkStatus();
    });
REGISTER_KERNEL_BUILDER(Name("MonolithHashFilterStats").Device(DEVICE_CPU),
                        HashFilterStatsOp);

REGISTER_OP("MonolithHashFilterSave")
    .Input("handle: resource")
    .Input("basename: string")
    .Output("output_handle: resource")
    .SetIsStateful()
    .SetShapeFn(HandleAndBasenameShape);
REGISTER_KERNEL_BUILDER(Name("MonolithHashFilterSave").Device(DEVICE_CPU),
                        HashFilterSaveOp);

REGISTER_OP("MonolithHashFilterRestore")
    .Input("handle: resource")
    .Input("basename: string")
    .Output("output_handle: resource")
    .SetIsStateful()
    .SetShapeFn(HandleAndBasenameShape);
REGISTER_KERNEL_BUILDER(Name("MonolithHashFilterRestore").Device(DEVICE_CPU),
                        HashFilterRestoreOp);

REGISTER_OP("MonolithHashFilterClear")
    .Input("handle: resource")
    .Output("output_handle: resource")
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CheckInputRanks(c, {{"handle", 0}}));
      return shape_inference::ScalarShape(c);
    });
REGISTER_KERNEL_BUILDER(Name("MonolithHashFilterClear").Device(DEVICE_CPU),
                        HashFilterClearOp);

REGISTER_OP("MonolithHashFilterInterceptGradient")
    .Input("filter_handle: resource")
    .Input("ids: int64")
    .Input("embeddings: float")
    .Output("same_embeddings: float")
    .SetShapeFn([](InferenceContext* c) {
      return InterceptShape(c, "embeddings");
    });
REGISTER_KERNEL_BUILDER(
    Name("MonolithHashFilterInterceptGradient").Device(DEVICE_CPU),
    HashFilterInterceptGradientOp);

REGISTER_OP("MonolithHashFilterInterceptGradientGradient")
    .Input("filter_handle: resource")
    .Input("ids: int64")
    .Input("grad: float")
    // The original's name (sic): graphs and functions name outputs.
    .Output("filted_grad: float")
    .SetShapeFn([](InferenceContext* c) { return InterceptShape(c, "grad"); });
REGISTER_KERNEL_BUILDER(
    Name("MonolithHashFilterInterceptGradientGradient").Device(DEVICE_CPU),
    HashFilterInterceptGradientGradientOp);

}  // namespace monolith_tf
}  // namespace tensorflow
