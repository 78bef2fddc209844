// The TF resource that fuses many embedding hash tables (one per feature
// table name) behind one handle. Kernels look it up and call the engine.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_MULTI_HASH_TABLE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_MULTI_HASH_TABLE_H_

#include <algorithm>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_filter/admission.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/periodic_evictor.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/ops/op_util.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/types.h"
#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/platform/mutex.h"

namespace tensorflow {
namespace monolith_tf {

// A hash filter resource (MonolithHashFilter, MonolithProbabilisticFilter,
// MonolithDummyHashFilter): the admission of the tables created with it.
class HashFilterResource : public ResourceBase {
 public:
  // |created_by|: the creating op and its attrs, in a form that compares.
  HashFilterResource(
      std::unique_ptr<::monolith::hash_filter::Admission> admission,
      std::string created_by)
      : admission_(std::move(admission)), created_by_(std::move(created_by)) {}
  ::monolith::hash_filter::Admission& admission() const { return *admission_; }
  const std::string& created_by() const { return created_by_; }
  // Held by saves: two saves of the filter to one basename at once would
  // interleave their renames into a checkpoint of neither.
  mutex& save_mu() const { return save_mu_; }
  // Under the admission's lock: a restore replaces (frees) the filter.
  std::string DebugString() const override {
    std::lock_guard<std::mutex> lock(admission_->mu());
    const auto& filter = admission_->filter();
    return "HashFilter(capacity " + std::to_string(filter.capacity()) +
           ", splits " + std::to_string(filter.split_num()) + ")";
  }
  int64_t MemoryUsed() const override {
    std::lock_guard<std::mutex> lock(admission_->mu());
    return static_cast<int64_t>(admission_->filter().MemoryBytes());
  }

 private:
  std::unique_ptr<::monolith::hash_filter::Admission> admission_;
  std::string created_by_;
  mutable mutex save_mu_;
};

class MultiHashTable : public ResourceBase {
 public:
  // One table of the multi table.
  struct Table {
    std::string name;
    std::unique_ptr<::monolith::hash_table::EmbeddingHashTable> table;
  };

  // |created_from|: the serialized MultiEmbeddingHashTableConfig the
  // tables are made from; |filter|: what updates consult before creating
  // an id (held).
  MultiHashTable(std::string shared_name, std::string created_from,
                 core::RefCountPtr<HashFilterResource> filter)
      : shared_name_(std::move(shared_name)),
        created_from_(std::move(created_from)),
        filter_(std::move(filter)) {}
  ~MultiHashTable() override {
    // Stops the eviction thread before the tables go.
    evictor_.reset();
  }

  void AddTable(std::string name,
                std::unique_ptr<::monolith::hash_table::EmbeddingHashTable>
                    table) {
    learning_rate_offsets_.push_back(learning_rate_offsets_.back() +
                                     table->SliceSize());
    auto t = std::make_unique<Table>();
    t->name = std::move(name);
    t->table = std::move(table);
    tables_.push_back(std::move(t));
  }

  int size() const { return static_cast<int>(tables_.size()); }
  Table& table(int i) const { return *tables_[i]; }
  // OutOfMemoryAsStatus's |what| where table |i| could not grow: which
  // table, and how large it is.
  std::string GrowthOutOfMemory(int i) const {
    const Table& t = *tables_[i];
    return monolith_tf::GrowthOutOfMemory(
        "table " + t.name + " of " + shared_name_ + " (" +
        std::to_string(t.table->Size()) + " entries, " +
        std::to_string(t.table->MemoryBytes()) + " bytes)");
  }
  // Each table's embedding floats, in table order.
  std::vector<int64_t> dims() const {
    std::vector<int64_t> out;
    for (const auto& t : tables_) out.push_back(t->table->DimSize());
    return out;
  }
  // Index of the table named |name|, or -1.
  int Find(const std::string& name) const {
    for (int i = 0; i < size(); ++i) {
      if (tables_[i]->name == name) return i;
    }
    return -1;
  }
  const std::string& shared_name() const { return shared_name_; }
  const std::string& created_from() const { return created_from_; }
  const HashFilterResource* filter() const { return filter_.get(); }
  // Held by every kernel's call (see HoldMultiHashTable): exclusively by
  // restores, shared by the others. TF's mutex: a waiting restore holds
  // off new readers, so a busy table cannot starve it.
  mutex& restore_mu() const { return restore_mu_; }
  // Held by saves: two saves of the table to one basename at once would
  // interleave their renames into a checkpoint of neither.
  mutex& save_mu() const { return save_mu_; }

  // What an update of |ids| asks before it creates one of them: the
  // filter's admission (see hash_filter/admission.h); |counts|, when
  // given, holds each id's number of occurrences.
  ::monolith::hash_table::EmbeddingHashTable::AdmitFn AdmitFnFor(
      const int64_t* ids, const uint32_t* counts = nullptr) const {
    return filter_->admission().AdmitFnFor(ids, counts);
  }
  // Where each table's learning rates start in the flat learning-rate
  // input of the optimize ops (one per segment of every table, in table
  // order); the last element is their total.
  const std::vector<int64_t>& learning_rate_offsets() const {
    return learning_rate_offsets_;
  }

  // Evicts, in the background, every table that |targets| names, each on
  // its period (holding restore_mu() shared, as the evict op), logging
  // what each eviction removed. Call once, after the tables are added.
  Status StartPeriodicEviction(
      std::vector<::monolith::hash_table::PeriodicEvictor::Target> targets) {
    for (auto& target : targets) {
      target = ::monolith::hash_table::SharingWhileEvicting(std::move(target),
                                                            &restore_mu_);
    }
    const std::string owner = "MultiHashTable " + shared_name_;
    return ToTfStatus(::monolith::hash_table::StartPeriodicEvictor(
        owner, std::move(targets),
        [owner](const std::string& line) {
          LOG(INFO) << owner << ": " << line;
        },
        &evictor_));
  }

  std::string DebugString() const override {
    std::string out = "MultiHashTable(" + shared_name_ + ":";
    for (const auto& t : tables_) {
      out += " " + t->name + "=" + t->table->DebugString() + ";";
    }
    return out + ")";
  }

  int64_t MemoryUsed() const override {
    int64_t bytes = 0;
    for (const auto& t : tables_) bytes += t->table->MemoryBytes();
    return bytes;
  }

 private:
  std::string shared_name_;
  std::string created_from_;
  core::RefCountPtr<HashFilterResource> filter_;
  std::vector<std::unique_ptr<Table>> tables_;
  std::vector<int64_t> learning_rate_offsets_ = {0};
  mutable mutex restore_mu_;
  mutable mutex save_mu_;
  // Declared after the tables, which it evicts: destroyed first.
  std::unique_ptr<::monolith::hash_table::PeriodicEvictor> evictor_;
};

// A multi table held for one kernel's call. Restores empty tables and
// fill them again, so they hold the table exclusively and every other
// kernel holds it shared: no lookup, update, evict op or save sees (or
// writes to a checkpoint) a table halfway through a restore, and two
// restores do not mix.
class HeldMultiHashTable {
 public:
  MultiHashTable* get() const { return table_.get(); }
  MultiHashTable* operator->() const { return table_.get(); }
  MultiHashTable& operator*() const { return *table_; }

 private:
  friend Status HoldMultiHashTable(OpKernelContext* ctx, int index,
                                   bool exclusive, HeldMultiHashTable* held);
  friend Status HoldMultiHashTableToSave(OpKernelContext* ctx, int index,
                                         HeldMultiHashTable* held);
  // Declared before the locks, which are released first.
  core::RefCountPtr<MultiHashTable> table_;
  std::optional<mutex_lock> saving_;
  std::optional<tf_shared_lock> shared_;
  std::optional<mutex_lock> exclusive_;
};

// Looks up the multi table of input |index| ("mtable" in every op that
// takes one) and holds it, |exclusive|ly for restores.
inline Status HoldMultiHashTable(OpKernelContext* ctx, int index,
                                 bool exclusive, HeldMultiHashTable* held) {
  TF_RETURN_IF_ERROR(LookupResourceInput(ctx, index, "mtable", &held->table_));
  if (exclusive) {
    held->exclusive_.emplace(held->table_->restore_mu());
  } else {
    held->shared_.emplace(held->table_->restore_mu());
  }
  return OkStatus();
}

// As HoldMultiHashTable (shared) for a save, which first waits for the
// table's other saves (save_mu): a save waiting for another must not hold
// the table, or a restore queued behind it would wait for both saves, and
// with it every op of the table. Restores never take save_mu.
inline Status HoldMultiHashTableToSave(OpKernelContext* ctx, int index,
                                       HeldMultiHashTable* held) {
  TF_RETURN_IF_ERROR(LookupResourceInput(ctx, index, "mtable", &held->table_));
  held->saving_.emplace(held->table_->save_mu());
  held->shared_.emplace(held->table_->restore_mu());
  return OkStatus();
}

// Checks the flat learning-rate input |learning_rates| (named |name|)
// holds exactly the tables' learning rates (see learning_rate_offsets()).
inline Status CheckLearningRates(const MultiHashTable& mtable,
                                 const Tensor& learning_rates,
                                 const char* name) {
  const int64_t needed = mtable.learning_rate_offsets().back();
  if (learning_rates.NumElements() != needed) {
    return errors::InvalidArgument(name, " has ", learning_rates.NumElements(),
                                   " floats; the tables' optimizers need ",
                                   needed);
  }
  return OkStatus();
}

// FailedPrecondition if a table has SERVING entries (no optimizer state).
inline Status CheckTrainable(const MultiHashTable& mtable) {
  for (int t = 0; t < mtable.size(); ++t) {
    if (mtable.table(t).table->accessor().serving()) {
      return ServingTableError(mtable.table(t).name);
    }
  }
  return OkStatus();
}

// Stand-in for the original's parameter-sync client resource: tables are
// created without parameter sync.
class DummySyncClient : public ResourceBase {
 public:
  std::string DebugString() const override { return "DummySyncClient"; }
};

// Batches below this many ids run on the calling thread: handing work to
// other threads costs more than it saves.
constexpr int64_t kParallelIds = 16384;
// Lookups split tables into pieces of at most this many ids.
constexpr int64_t kLookupPieceIds = 16384;

// Runs fn(i) for i in [0, n), in parallel when |ids| is large; out of
// memory in an item is ResourceExhausted either way, saying |what_of(i)|
// (default: a hash table could not grow).
inline Status RunItems(
    OpKernelContext* ctx, int64_t n, int64_t ids,
    const std::function<Status(int64_t)>& fn,
    const std::function<std::string(int64_t)>& what_of = [](int64_t) {
      return TableGrowthOutOfMemory();
    }) {
  const auto item = [&](int64_t i) {
    return OutOfMemoryAsStatus([&] { return fn(i); },
                               [&] { return what_of(i); });
  };
  if (ids >= kParallelIds && n > 1) return ParallelFor(ctx, n, item);
  for (int64_t i = 0; i < n; ++i) TF_RETURN_IF_ERROR(item(i));
  return OkStatus();
}

// One run of ids of one table to look up, and where their embeddings go:
// float32 (Out float) or float16 bits (Out uint16_t, BatchLookupHalfs).
template <typename Out>
struct LookupSegmentOf {
  const ::monolith::hash_table::EmbeddingHashTable* table;
  const int64_t* ids;
  int64_t num_ids;
  Out* embeddings;
};
using LookupSegment = LookupSegmentOf<float>;

// Looks up every segment, in pieces of at most kLookupPieceIds ids: lookups
// are independent, so the pieces run in parallel.
template <typename Out>
Status LookupSegments(OpKernelContext* ctx,
                      const std::vector<LookupSegmentOf<Out>>& segments) {
  struct Piece {
    const LookupSegmentOf<Out>* segment;
    int64_t begin, end;
  };
  std::vector<Piece> pieces;
  int64_t num_ids = 0;
  for (const LookupSegmentOf<Out>& s : segments) {
    for (int64_t b = 0; b < s.num_ids; b += kLookupPieceIds) {
      pieces.push_back({&s, b, std::min(s.num_ids, b + kLookupPieceIds)});
    }
    num_ids += s.num_ids;
  }
  return RunItems(ctx, pieces.size(), num_ids, [&](int64_t i) {
    const Piece& p = pieces[i];
    const LookupSegmentOf<Out>& s = *p.segment;
    Out* rows = s.embeddings + p.begin * s.table->DimSize();
    if constexpr (std::is_same_v<Out, float>) {
      s.table->BatchLookup(s.ids + p.begin, p.end - p.begin, rows);
    } else {
      s.table->BatchLookupHalfs(s.ids + p.begin, p.end - p.begin, rows);
    }
    return OkStatus();
  });
}

}  // namespace monolith_tf
}  // namespace tensorflow

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_OPS_MULTI_HASH_TABLE_H_
