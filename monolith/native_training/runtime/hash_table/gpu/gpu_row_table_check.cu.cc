// A self-contained correctness check of GpuRowTable on a GPU, for machines
// with nvcc and a GPU but no Bazel or TensorFlow (ci/gpu_device_check.sh
// builds it with one nvcc command). The reference is the per-column math of
// gpu_row_spec.h run on the host over a std::map in input order: the same
// functions gpu_row_spec_test checks against the CPU engine's optimizers.
//
//   gpu_row_table_check    prints one line per check, exits 1 on a failure
//
// Covers: zeros for absent and reserved ids, assign (last of repeats),
// assign_add (repeats add up), reinitialize, apply_gradients with sgd + adagrad and with
// adam + ftrl (repeats in order), growth from a small map, update times,
// export and restore of rows into another table, lookups and writes of many
// tables in one call, eviction, SERVING rows (fp16 / fp32 values), and the
// rejection of the reserved ids.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "monolith/native_training/runtime/hash_table/gpu/device_vector.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_table.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

int failures = 0;

void Check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// Where |got| first differs from |want| (for a failure's message), each
// float's row and column by |width| floats per row.
std::string FirstDifference(const std::vector<float>& got,
                            const std::vector<float>& want, int width) {
  if (got.size() != want.size()) {
    return " (" + std::to_string(got.size()) + " floats, want " +
           std::to_string(want.size()) + ")";
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      return " (first at row " + std::to_string(i / width) + " column " +
             std::to_string(i % width) + ": " + std::to_string(got[i]) +
             ", want " + std::to_string(want[i]) + ")";
    }
  }
  return "";
}

void CheckOk(const Status& s, const std::string& what) {
  Check(s.ok(), what + (s.ok() ? "" : ": " + s.ToString()));
}

// The host reference: rows by id, written with gpu_row_spec.h's functions.
class Reference {
 public:
  explicit Reference(const GpuRowTableSpec& spec) : spec_(spec) {}

  std::vector<float>& Row(int64_t id, int64_t time) {
    auto it = rows_.find(id);
    const bool fresh = it == rows_.end();
    if (fresh) {
      it = rows_.emplace(id, std::vector<float>(spec_.row_floats(), 0.0f)).first;
      for (const GpuSegment& seg : spec_.segments) {
        for (int c = 0; c < seg.dim; ++c) InitColumn(seg, id, c, it->second.data());
      }
    }
    // As the write kernel: an older write leaves a row's time.
    float* row = it->second.data();
    SetRowTime(row, spec_.entry_floats,
               fresh ? time
                     : LaterUpdateTime(RowTime(row, spec_.entry_floats), time,
                                       HostClockSeconds()));
    return it->second;
  }
  void Assign(const std::vector<int64_t>& ids, const std::vector<float>& v,
              bool add, int64_t time) {
    const int d = spec_.value_floats;
    for (size_t i = 0; i < ids.size(); ++i) {
      std::vector<float>& row = Row(ids[i], time);
      for (int c = 0; c < d; ++c) {
        row[c] = add ? row[c] + v[i * d + c] : v[i * d + c];
      }
    }
  }
  void Apply(const std::vector<int64_t>& ids, const std::vector<float>& g,
             const std::vector<float>& lr, int64_t time) {
    const int d = spec_.value_floats;
    for (size_t i = 0; i < ids.size(); ++i) {
      std::vector<float>& row = Row(ids[i], time);
      for (size_t s = 0; s < spec_.segments.size(); ++s) {
        const GpuSegment& seg = spec_.segments[s];
        const StepScalars step = BeginStep(seg, lr[s], row.data());
        for (int c = 0; c < seg.dim; ++c) {
          ApplyColumn(seg, step, g.data() + i * d, c, row.data());
        }
        EndStep(seg, row.data());
      }
    }
  }
  // Status per id as GpuRowTable::Reinitialize gives it.
  std::vector<int32_t> Reinitialize(const std::vector<int64_t>& ids,
                                    int64_t time) {
    std::vector<int32_t> status;
    for (int64_t id : ids) {
      const bool existed = rows_.count(id) > 0;
      rows_.erase(id);
      Row(id, time);
      status.push_back(existed ? 1 : 0);
    }
    return status;
  }
  const std::map<int64_t, std::vector<float>>& rows() const { return rows_; }

 private:
  GpuRowTableSpec spec_;
  std::map<int64_t, std::vector<float>> rows_;
};

bool Near(const std::vector<float>& got, const std::vector<float>& want,
          size_t count, size_t stride, size_t width) {
  for (size_t i = 0; i < count; ++i) {
    for (size_t c = 0; c < width; ++c) {
      const float a = got[i * stride + c], b = want[i * stride + c];
      if (!(std::fabs(a - b) <= 1e-5f * (1.0f + std::fabs(b)))) {
        std::printf("  row %zu float %zu: %.8g, want %.8g\n", i, c, a, b);
        return false;
      }
    }
  }
  return true;
}

// The entries of |table| that |shard| holds (all by default), exported in
// chunks of 777 slots; *repeats (if given) counts ids exported twice.
std::map<int64_t, std::vector<float>> Export(GpuRowTable* table,
                                             IdShard shard = {},
                                             int* repeats = nullptr) {
  std::map<int64_t, std::vector<float>> rows;
  std::vector<int64_t> ids;
  std::vector<float> flat;
  int64_t next = 0;
  const int width = table->spec().row_floats();
  while (next < table->capacity()) {
    const Status s = table->ExportRowsToHost(next, 777, &ids, &flat, &next,
                                             nullptr, shard);
    if (!s.ok()) {
      CheckOk(s, "export");
      break;
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (repeats != nullptr && rows.count(ids[i]) > 0) ++*repeats;
      rows[ids[i]].assign(flat.begin() + i * width,
                          flat.begin() + (i + 1) * width);
    }
  }
  return rows;
}

// A save's dump shards export disjoint parts that together are the whole
// export, each id in the shard floormod names.
void CheckShardedExport(GpuRowTable* table,
                        const std::map<int64_t, std::vector<float>>& whole,
                        const std::string& name) {
  constexpr int kShards = 3;
  std::map<int64_t, std::vector<float>> joined;
  int repeats = 0;
  bool right_shards = true;
  for (int index = 0; index < kShards; ++index) {
    const IdShard shard{index, kShards};
    for (auto& [id, row] : Export(table, shard, &repeats)) {
      right_shards = right_shards && shard.Holds(id);
      if (!joined.emplace(id, std::move(row)).second) ++repeats;
    }
  }
  Check(joined == whole && repeats == 0 && right_shards,
        name + ": " + std::to_string(kShards) +
            " dump shards export the whole table, each id once, in its "
            "floormod shard");
  std::vector<int64_t> ids;
  std::vector<float> rows;
  int64_t next = 0;
  const Status bad = table->ExportRowsToHost(
      0, 777, &ids, &rows, &next, nullptr, IdShard{kShards, kShards});
  Check(bad.code() == StatusCode::kInvalidArgument &&
            bad.message().find("dump shard 3 of 3") != std::string::npos,
        name + ": an export of a shard past the count is refused (" +
            bad.ToString() + ")");
}

bool SameRows(const std::map<int64_t, std::vector<float>>& got,
              const std::map<int64_t, std::vector<float>>& want, int width,
              int entry_floats) {
  if (got.size() != want.size()) {
    std::printf("  %zu entries, want %zu\n", got.size(), want.size());
    return false;
  }
  for (const auto& [id, row] : want) {
    const auto it = got.find(id);
    if (it == got.end()) {
      std::printf("  id %lld missing\n", static_cast<long long>(id));
      return false;
    }
    if (RowTime(it->second.data(), entry_floats) !=
        RowTime(row.data(), entry_floats)) {
      std::printf("  id %lld: time %lld, want %lld\n",
                  static_cast<long long>(id),
                  static_cast<long long>(RowTime(it->second.data(),
                                                 entry_floats)),
                  static_cast<long long>(RowTime(row.data(), entry_floats)));
      return false;
    }
    if (!Near(it->second, row, 1, width, entry_floats)) return false;
  }
  return true;
}

std::vector<int64_t> Batch(std::mt19937_64* gen, int n, int distinct) {
  std::uniform_int_distribution<int64_t> pick(-distinct / 2, distinct / 2);
  std::vector<int64_t> ids(n);
  for (int64_t& id : ids) id = pick(*gen) * 1000003;
  return ids;
}

std::vector<float> Normal(size_t n, std::mt19937_64* gen) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(*gen);
  return v;
}

GpuRowTableSpec Spec(std::vector<GpuSegment> segments) {
  GpuRowTableSpec spec;
  int offset = 0;
  for (GpuSegment& seg : segments) {
    seg.value_offset = offset;
    offset += seg.dim;
  }
  spec.value_floats = offset;
  for (GpuSegment& seg : segments) {
    seg.state_offset = offset;
    offset += seg.StateFloats();
  }
  spec.entry_floats = offset;
  spec.segments = segments;
  spec.initial_capacity = 64;  // grows many times
  // Each table its own hash seed, as tables get (none is 0, the unseeded
  // hash): batches over several tables probe each under its own.
  static uint64_t tables = 0;
  spec.hash_seed = 0x9E3779B97F4A7C15ULL * ++tables;
  return spec;
}

// Trains |spec| on the GPU and on the reference with the same batches.
void CheckTraining(const std::string& name, const GpuRowTableSpec& spec,
                   const std::vector<float>& lr) {
  std::unique_ptr<GpuRowTable> table;
  CheckOk(GpuRowTable::Create(spec, &table), name + ": create");
  if (table == nullptr) return;
  Reference ref(spec);
  std::mt19937_64 gen(11);
  const int d = spec.value_floats;
  std::vector<int64_t> ids;
  for (int step = 1; step <= 6; ++step) {
    ids = Batch(&gen, 20000, 12000);
    const std::vector<float> v = Normal(ids.size() * d, &gen);
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_v(v);
    const std::string what = name + ": write " + std::to_string(step);
    if (step == 1) {
      CheckOk(table->Assign(d_ids.get(), ids.size(), d_v.get(), step, nullptr),
              what);
      ref.Assign(ids, v, false, step);
    } else if (step == 2) {
      CheckOk(
          table->AssignAdd(d_ids.get(), ids.size(), d_v.get(), step, nullptr),
          what);
      ref.Assign(ids, v, true, step);
    } else {
      CheckOk(table->ApplyGradients(d_ids.get(), ids.size(), d_v.get(), lr,
                                    step, nullptr),
              what);
      ref.Apply(ids, v, lr, step);
    }
  }
  Check(table->size() == static_cast<int64_t>(ref.rows().size()),
        name + ": " + std::to_string(table->size()) + " entries, want " +
            std::to_string(ref.rows().size()));
  Check(table->capacity() > 64, name + ": the map grew to " +
                                    std::to_string(table->capacity()));
  // Lookups: the last batch, plus absent and reserved ids.
  ids.push_back(777);
  ids.push_back(kEmptySlotId);
  ids.push_back(kReclaimedSlotId);
  DeviceVector<int64_t> d_ids(ids);
  DeviceVector<float> out(ids.size() * d);
  CheckOk(table->Lookup(d_ids.get(), ids.size(), out.get(), nullptr),
          name + ": lookup");
  const cudaError_t synced = cudaDeviceSynchronize();
  Check(synced == cudaSuccess,
        name + ": kernels ran (" + cudaGetErrorString(synced) + ")");
  std::vector<float> want(ids.size() * d, 0.0f);
  for (size_t i = 0; i + 3 < ids.size(); ++i) {
    const auto& row = ref.rows().at(ids[i]);
    std::copy(row.begin(), row.begin() + d, want.begin() + i * d);
  }
  Check(Near(out.ToHost(), want, ids.size(), d, d),
        name + ": lookups match the reference (absent and reserved ids read "
               "zeros)");
  // Reinitialize: existing, absent and repeated ids.
  {
    std::vector<int64_t> some(ids.begin(), ids.begin() + 500);
    some.push_back(123456789);
    some.push_back(123456789);
    DeviceVector<int64_t> d_some(some);
    DeviceVector<int32_t> d_status(some.size());
    CheckOk(table->Reinitialize(d_some.get(), some.size(), d_status.get(), 7,
                                nullptr),
            name + ": reinitialize");
    Check(d_status.ToHost() == ref.Reinitialize(some, 7),
          name + ": reinitialize statuses (0 for the inserting occurrence)");
  }
  const auto exported = Export(table.get());
  Check(SameRows(exported, ref.rows(), spec.row_floats(), spec.entry_floats),
        name + ": whole rows (state and update time) match the reference");
  CheckShardedExport(table.get(), exported, name);
  {
    // Whole rows by id (lookup_entry's): present ones as exported, an
    // absent one zeros and not found.
    std::vector<int64_t> some;
    for (const auto& [id, row] : exported) {
      if (some.size() == 100) break;
      some.push_back(id);
    }
    some.push_back(777);
    std::vector<float> rows;
    std::vector<char> found;
    CheckOk(table->LookupRowsFromHost(some.data(), some.size(), &rows, &found,
                                      nullptr),
            name + ": rows by id");
    const int width = spec.row_floats();
    bool same = rows.size() == some.size() * width;
    for (size_t i = 0; same && i + 1 < some.size(); ++i) {
      same = found[i] && std::equal(exported.at(some[i]).begin(),
                                    exported.at(some[i]).end(),
                                    rows.begin() + i * width);
    }
    same = same && !found.back() &&
           std::all_of(rows.end() - width, rows.end(),
                       [](float x) { return x == 0.0f; });
    Check(same, name + ": rows by id are the exported rows; an absent id "
                       "reads zeros, not found");
  }

  // Restore the exported rows into a fresh table.
  std::unique_ptr<GpuRowTable> restored;
  CheckOk(GpuRowTable::Create(spec, &restored), name + ": create another");
  if (restored == nullptr) return;
  // First a stale copy of every row (time 0, values doubled), then the
  // exported rows twice in one batch: the last of repeats wins, existing
  // rows are overwritten whole.
  std::vector<int64_t> all_ids;
  std::vector<float> all_rows, stale_rows;
  for (const auto& [id, row] : exported) {
    all_ids.push_back(id);
    all_rows.insert(all_rows.end(), row.begin(), row.end());
    std::vector<float> stale = row;
    for (int c = 0; c < spec.entry_floats; ++c) stale[c] *= 2;
    SetRowTime(stale.data(), spec.entry_floats, 0);
    stale_rows.insert(stale_rows.end(), stale.begin(), stale.end());
  }
  CheckOk(restored->PutRowsFromHost(all_ids.data(), all_ids.size(),
                                    stale_rows.data(), nullptr),
          name + ": restore stale rows");
  std::vector<int64_t> twice_ids = all_ids;
  twice_ids.insert(twice_ids.end(), all_ids.begin(), all_ids.end());
  std::vector<float> twice_rows = stale_rows;
  twice_rows.insert(twice_rows.end(), all_rows.begin(), all_rows.end());
  CheckOk(restored->PutRowsFromHost(twice_ids.data(), twice_ids.size(),
                                    twice_rows.data(), nullptr),
          name + ": restore rows over them");
  Check(SameRows(Export(restored.get()), exported, spec.row_floats(),
                 spec.entry_floats),
        name + ": restored rows equal the exported ones");
}

// LookupMany over tables of different widths, more requests than one
// launch takes, empty requests and tables asked twice, against the values
// assigned.
void CheckLookupMany(const std::vector<GpuRowTableSpec>& specs) {
  std::vector<std::unique_ptr<GpuRowTable>> tables(specs.size());
  std::vector<std::map<int64_t, std::vector<float>>> values(specs.size());
  std::mt19937_64 gen(17);
  for (size_t t = 0; t < specs.size(); ++t) {
    CheckOk(GpuRowTable::Create(specs[t], &tables[t]),
            "lookup_many: create table " + std::to_string(t));
    if (tables[t] == nullptr) return;
    const int d = specs[t].value_floats;
    const std::vector<int64_t> ids = Batch(&gen, 3000, 2000);
    const std::vector<float> v = Normal(ids.size() * d, &gen);
    for (size_t i = 0; i < ids.size(); ++i) {
      values[t][ids[i]].assign(v.begin() + i * d, v.begin() + (i + 1) * d);
    }
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_v(v);
    CheckOk(tables[t]->Assign(d_ids.get(), ids.size(), d_v.get(), 1, nullptr),
            "lookup_many: assign table " + std::to_string(t));
  }
  // 40 requests over the tables in turn: every fifth empty, sizes varied,
  // present, absent and reserved ids.
  struct Request {
    size_t table;
    std::vector<int64_t> ids;
    std::unique_ptr<DeviceVector<int64_t>> d_ids;
    std::unique_ptr<DeviceVector<float>> out;
  };
  std::vector<Request> requests(40);
  std::vector<GpuRowTable::LookupRequest> args;
  for (size_t r = 0; r < requests.size(); ++r) {
    Request& req = requests[r];
    req.table = r % specs.size();
    if (r % 5 != 4) {
      req.ids = Batch(&gen, 100 + 37 * static_cast<int>(r), 3000);
      req.ids.push_back(kEmptySlotId);
    }
    req.d_ids = std::make_unique<DeviceVector<int64_t>>(req.ids);
    req.out = std::make_unique<DeviceVector<float>>(
        req.ids.size() * specs[req.table].value_floats);
    args.push_back({tables[req.table].get(), req.d_ids->get(),
                    static_cast<int64_t>(req.ids.size()), req.out->get()});
  }
  CheckOk(GpuRowTable::LookupMany(args, nullptr), "lookup_many: launch");
  bool all = true;
  for (const Request& req : requests) {
    const int d = specs[req.table].value_floats;
    std::vector<float> want(req.ids.size() * d, 0.0f);
    for (size_t i = 0; i < req.ids.size(); ++i) {
      const auto it = values[req.table].find(req.ids[i]);
      if (it != values[req.table].end()) {
        std::copy(it->second.begin(), it->second.end(), want.begin() + i * d);
      }
    }
    all = all && Near(req.out->ToHost(), want, req.ids.size(), d, d);
  }
  Check(all, "lookup_many: 40 requests over " + std::to_string(specs.size()) +
                 " tables (2 launches) read what each table's ids hold");
  std::unique_ptr<GpuRowTable> other;
  GpuRowTableSpec elsewhere = specs[0];
  elsewhere.device = 1;
  int devices = 0;
  cudaGetDeviceCount(&devices);
  if (devices > 1 && GpuRowTable::Create(elsewhere, &other).ok()) {
    const Status s = GpuRowTable::LookupMany(
        {args[0], {other.get(), args[0].ids, 0, args[0].out}}, nullptr);
    Check(s.code() == StatusCode::kInvalidArgument,
          "lookup_many: tables on two devices are refused (" + s.ToString() +
              ")");
    cudaSetDevice(0);
  } else {
    std::printf("SKIP lookup_many: tables on two devices (one GPU)\n");
  }
}

// WriteMany over tables of different layouts whose batches share ids:
// assign, assign_add, two steps of apply_gradients and one with summed
// gradients, each one call for every table, against the reference; then a write whose last table holds a
// reserved id changes no table.
void CheckWriteMany(const std::vector<GpuRowTableSpec>& specs,
                    const std::vector<std::vector<float>>& lrs) {
  const std::string name =
      "write_many (" + std::to_string(specs.size()) + " tables)";
  std::vector<std::unique_ptr<GpuRowTable>> tables(specs.size());
  std::vector<Reference> refs;
  for (size_t t = 0; t < specs.size(); ++t) {
    CheckOk(GpuRowTable::Create(specs[t], &tables[t]),
            name + ": create table " + std::to_string(t));
    if (tables[t] == nullptr) return;
    refs.emplace_back(specs[t]);
  }
  std::mt19937_64 gen(23);
  for (int step = 1; step <= 5; ++step) {
    std::vector<std::unique_ptr<DeviceVector<int64_t>>> d_ids;
    std::vector<std::unique_ptr<DeviceVector<float>>> d_v;
    std::vector<GpuRowTable::WriteRequest> requests(specs.size());
    for (size_t t = 0; t < specs.size(); ++t) {
      // Table 1 gets nothing at step 2.
      const int n = step == 2 && t == 1 ? 0 : 5000 + 1000 * static_cast<int>(t);
      const std::vector<int64_t> ids = Batch(&gen, n, 6000);
      const std::vector<float> v = Normal(ids.size() * specs[t].value_floats,
                                          &gen);
      d_ids.push_back(std::make_unique<DeviceVector<int64_t>>(ids));
      d_v.push_back(std::make_unique<DeviceVector<float>>(v));
      requests[t].table = tables[t].get();
      requests[t].ids = d_ids.back()->get();
      requests[t].n = n;
      requests[t].values = d_v.back()->get();
      // Rates that change with the step: a stale copy of them shows.
      std::vector<float> lr = lrs[t];
      for (float& rate : lr) rate *= static_cast<float>(step);
      requests[t].learning_rates = lr;
      if (step <= 2) {
        refs[t].Assign(ids, v, /*add=*/step == 2, step);
      } else if (step <= 4) {
        refs[t].Apply(ids, v, lr, step);
      } else {
        // Summed: each id once, with its gradients added in input order.
        const int d = specs[t].value_floats;
        std::vector<int64_t> unique;
        std::vector<float> summed;
        std::map<int64_t, size_t> at;
        for (size_t i = 0; i < ids.size(); ++i) {
          const auto [it, fresh] = at.emplace(ids[i], unique.size());
          if (fresh) {
            unique.push_back(ids[i]);
            summed.insert(summed.end(), v.begin() + i * d,
                          v.begin() + (i + 1) * d);
          } else {
            for (int c = 0; c < d; ++c) {
              summed[it->second * d + c] += v[i * d + c];
            }
          }
        }
        refs[t].Apply(unique, summed, lr, step);
      }
    }
    const GpuRowTable::Write write =
        step == 1   ? GpuRowTable::Write::kAssign
        : step == 2 ? GpuRowTable::Write::kAssignAdd
        : step <= 4 ? GpuRowTable::Write::kApplyGradients
                    : GpuRowTable::Write::kApplySummedGradients;
    CheckOk(GpuRowTable::WriteMany(write, requests, step, nullptr),
            name + ": step " + std::to_string(step));
  }
  bool same = true;
  for (size_t t = 0; t < specs.size(); ++t) {
    same = same && SameRows(Export(tables[t].get()), refs[t].rows(),
                            specs[t].row_floats(), specs[t].entry_floats);
  }
  Check(same, name + ": every table's rows match the reference");

  std::vector<int64_t> sizes;
  for (const auto& table : tables) sizes.push_back(table->size());
  const std::vector<int64_t> fresh = {424242, 434343};
  const std::vector<int64_t> reserved = {424242, kReclaimedSlotId};
  DeviceVector<int64_t> d_fresh(fresh), d_reserved(reserved);
  DeviceVector<float> d_v(std::vector<float>(2 * 64, 1.0f));
  std::vector<GpuRowTable::WriteRequest> requests(specs.size());
  for (size_t t = 0; t < specs.size(); ++t) {
    requests[t].table = tables[t].get();
    requests[t].ids = t + 1 == specs.size() ? d_reserved.get() : d_fresh.get();
    requests[t].n = 2;
    requests[t].values = d_v.get();
  }
  const Status s = GpuRowTable::WriteMany(GpuRowTable::Write::kAssign,
                                          requests, 9, nullptr);
  bool unchanged = true;
  for (size_t t = 0; t < specs.size(); ++t) {
    unchanged = unchanged && tables[t]->size() == sizes[t];
  }
  Check(s.code() == StatusCode::kInvalidArgument && unchanged,
        name + ": a reserved id in one table's batch writes no table (" +
            s.ToString() + ")");
  requests.back().ids = d_fresh.get();
  requests[1] = requests[0];
  const Status twice = GpuRowTable::WriteMany(GpuRowTable::Write::kAssign,
                                              requests, 9, nullptr);
  Check(twice.code() == StatusCode::kInvalidArgument,
        name + ": a table named twice is refused (" + twice.ToString() +
            ")");
}

// SERVING rows (fp16 and fp32 segments packed byte after byte, so the fp32
// one sits at an offset of 2 mod 4): assign and assign_add with repeats,
// lookups (alone and in one LookupMany beside a TRAINING table),
// reinitialize, and apply_gradients refused, against the host encoding of
// gpu_row_spec.h (which gpu_row_spec_test checks against the CPU serving
// entry).
void CheckServing(const GpuRowTableSpec& training) {
  GpuRowTableSpec spec;
  spec.serving = true;
  const int dims[] = {3, 2, 5};
  const bool halves[] = {true, false, true};
  int bytes = 0;
  for (int s = 0; s < 3; ++s) {
    GpuSegment seg;
    seg.dim = dims[s];
    seg.half = halves[s];
    seg.value_offset = spec.value_floats;
    seg.data_byte = bytes;
    spec.value_floats += seg.dim;
    bytes += seg.dim * (seg.half ? 2 : 4);
    spec.segments.push_back(seg);
  }
  spec.entry_floats = (bytes + 3) / 4;
  spec.initial_capacity = 64;
  std::unique_ptr<GpuRowTable> table, other;
  CheckOk(GpuRowTable::Create(spec, &table), "serving: create");
  CheckOk(GpuRowTable::Create(training, &other), "serving: create training");
  if (table == nullptr || other == nullptr) return;
  const int d = spec.value_floats;
  std::map<int64_t, std::vector<float>> ref;  // id -> entry floats
  std::mt19937_64 gen(41);
  for (int step = 1; step <= 3; ++step) {
    const std::vector<int64_t> ids = Batch(&gen, 6000, 4000);
    std::vector<float> v = Normal(ids.size() * d, &gen);
    for (float& x : v) x *= 100.0f;  // values fp16 rounds visibly
    const bool add = step > 1;
    // -0.0 in a column of the fp32 segment: a new id's first added value is
    // stored as it is, as the CPU assigns it (0 + -0.0 is +0.0).
    if (add) {
      for (size_t i = 0; i < ids.size(); ++i) {
        v[i * d + spec.segments[1].value_offset] = -0.0f;
      }
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      const bool existed = ref.count(ids[i]) > 0;
      std::vector<float>& row = ref[ids[i]];
      row.resize(spec.entry_floats, 0.0f);
      for (const GpuSegment& seg : spec.segments) {
        for (int c = 0; c < seg.dim; ++c) {
          float value = v[i * d + seg.value_offset + c];
          if (add && existed) value += ReadStored(seg, row.data(), c);
          WriteStored(seg, row.data(), c, value);
        }
      }
    }
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_v(v);
    CheckOk(add ? table->AssignAdd(d_ids.get(), ids.size(), d_v.get(), step,
                                   nullptr)
                : table->Assign(d_ids.get(), ids.size(), d_v.get(), step,
                                nullptr),
            "serving: write " + std::to_string(step));
  }
  Check(table->size() == static_cast<int64_t>(ref.size()),
        "serving: " + std::to_string(table->size()) + " entries, want " +
            std::to_string(ref.size()));
  // Every entry's bytes are the host encoding's.
  const auto exported = Export(table.get());
  bool same = exported.size() == ref.size();
  for (const auto& [id, row] : ref) {
    const auto it = exported.find(id);
    same = same && it != exported.end() &&
           std::equal(row.begin(), row.end(), it->second.begin(),
                      [](float a, float b) {
                        return std::memcmp(&a, &b, sizeof(a)) == 0;
                      });
  }
  Check(same, "serving: entries hold the host's fp16 / fp32 encoding, byte "
              "for byte");
  // Lookups decode them; one LookupMany beside a TRAINING table.
  std::vector<int64_t> ids;
  for (const auto& [id, row] : ref) {
    if (ids.size() == 500) break;
    ids.push_back(id);
  }
  ids.push_back(777);  // absent
  std::vector<float> want(ids.size() * d, 0.0f);
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    for (const GpuSegment& seg : spec.segments) {
      for (int c = 0; c < seg.dim; ++c) {
        want[i * d + seg.value_offset + c] =
            ReadStored(seg, ref.at(ids[i]).data(), c);
      }
    }
  }
  DeviceVector<int64_t> d_ids(ids);
  // The TRAINING table holds every other id: its plain rows, copied by
  // whole warps, share warps with the SERVING part's decoded ones at the
  // parts' boundary, and found rows sit beside absent ones.
  const int w = training.value_floats;
  std::vector<int64_t> held;
  std::vector<float> held_values, other_want(ids.size() * w, 0.0f);
  for (size_t i = 0; i < ids.size(); i += 2) {
    held.push_back(ids[i]);
    for (int c = 0; c < w; ++c) {
      const float value = static_cast<float>(i) + 0.25f * static_cast<float>(c);
      held_values.push_back(value);
      other_want[i * w + c] = value;
    }
  }
  DeviceVector<int64_t> d_held(held);
  DeviceVector<float> d_held_values(held_values);
  CheckOk(other->Assign(d_held.get(), held.size(), d_held_values.get(), 1,
                        nullptr),
          "serving: assign the TRAINING table");
  DeviceVector<float> out(ids.size() * d);
  DeviceVector<float> other_out(ids.size() * w);
  CheckOk(GpuRowTable::LookupMany(
              {{table.get(), d_ids.get(), static_cast<int64_t>(ids.size()),
                out.get()},
               {other.get(), d_ids.get(), static_cast<int64_t>(ids.size()),
                other_out.get()}},
              nullptr),
          "serving: lookup_many");
  const std::vector<float> got = out.ToHost();
  const std::string got_diff = FirstDifference(got, want, d);
  Check(got_diff.empty(),
        "serving: lookups decode the entries (an absent id reads zeros)" +
            got_diff);
  const std::string other_diff =
      FirstDifference(other_out.ToHost(), other_want, w);
  Check(other_diff.empty(),
        "serving: the TRAINING table beside it reads its rows (zeros for "
        "the ids it lacks)" + other_diff);
  // Reinitialize: serving entries restart as zeros.
  const std::vector<int64_t> some = {ids[0], ids[1], 4242, 4242};
  DeviceVector<int64_t> d_some(some);
  DeviceVector<int32_t> d_status(some.size());
  CheckOk(table->Reinitialize(d_some.get(), some.size(), d_status.get(), 9,
                              nullptr),
          "serving: reinitialize");
  DeviceVector<float> zeros_out(some.size() * d);
  CheckOk(table->Lookup(d_some.get(), some.size(), zeros_out.get(), nullptr),
          "serving: lookup after reinitialize");
  const std::vector<float> zeros = zeros_out.ToHost();
  Check(d_status.ToHost() == std::vector<int32_t>({1, 1, 0, 1}) &&
            std::all_of(zeros.begin(), zeros.end(),
                        [](float x) { return x == 0.0f; }),
        "serving: reinitialized entries are zeros (status 0 for the "
        "inserting occurrence)");
  // No gradients: refused, nothing written.
  const int64_t size = table->size();
  const Status s = table->ApplyGradients(d_ids.get(), ids.size(), out.get(),
                                         {0.1f, 0.1f, 0.1f}, 10, nullptr);
  Check(s.code() == StatusCode::kFailedPrecondition && table->size() == size,
        "serving: apply_gradients is refused (" + s.ToString() + ")");
}

// Evict: entries of slot 3 keep 5 days, the others 1; the kept ones stay
// whole, the table still grows and takes new ids after.
void CheckEvict(const GpuRowTableSpec& spec) {
  std::unique_ptr<GpuRowTable> table;
  CheckOk(GpuRowTable::Create(spec, &table), "evict: create");
  if (table == nullptr) return;
  constexpr int64_t kDay = 24 * 3600;
  std::mt19937_64 gen(31);
  std::vector<int64_t> old_ids, new_ids;
  for (int i = 0; i < 3000; ++i) {
    // Half of the old ids in slot 3.
    old_ids.push_back((int64_t{i % 2 == 0 ? 3 : 4} << 48) | (i + 1));
    new_ids.push_back((int64_t{5} << 48) | (i + 1));
  }
  const int d = spec.value_floats;
  for (const auto& [ids, time] :
       {std::make_pair(old_ids, 1000 * kDay), std::make_pair(new_ids,
                                                             1002 * kDay)}) {
    const std::vector<float> v = Normal(ids.size() * d, &gen);
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_v(v);
    CheckOk(table->Assign(d_ids.get(), ids.size(), d_v.get(), time, nullptr),
            "evict: assign");
  }
  Check(table->latest_update_time() == 1002 * kDay,
        "evict: the latest update time is the newest write's");
  const auto before = Export(table.get());
  const int64_t capacity_before = table->capacity();
  // Only a default time, which nothing has reached: nothing goes.
  GpuRowTable::ExpireSeconds forever;
  forever.default_seconds = 36500 * kDay;
  int64_t none = -1;
  CheckOk(table->Evict(table->latest_update_time(), forever, &none, nullptr),
          "evict: nothing expired");
  Check(none == 0 && table->size() == 6000,
        "evict: nothing expired, nothing evicted");
  // Rows written at time 0, with expire times of 0 days: at time 0 (a
  // table no write gave a time) nothing has aged, as saves skip nothing
  // then; a second later all have expired.
  {
    std::unique_ptr<GpuRowTable> timeless;
    CheckOk(GpuRowTable::Create(spec, &timeless), "evict: create timeless");
    const std::vector<int64_t> ids = {1, 2, 3};
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_v(std::vector<float>(ids.size() * d, 1.0f));
    CheckOk(timeless->Assign(d_ids.get(), ids.size(), d_v.get(), 0, nullptr),
            "evict: assign at time 0");
    GpuRowTable::ExpireSeconds zero_days;
    CheckOk(timeless->Evict(0, zero_days, &none, nullptr), "evict: at 0");
    Check(none == 0 && timeless->size() == 3, "evict: nothing at time 0");
    CheckOk(timeless->Evict(1, zero_days, &none, nullptr), "evict: at 1");
    Check(none == 3 && timeless->size() == 0, "evict: all at time 1");
    // A write far past the host's clock (a corrupt req_time) takes the
    // table's time, and expires with the rows written then.
    CheckOk(timeless->Assign(d_ids.get(), 1, d_v.get(), 1000 * kDay,
                             nullptr),
            "evict: assign at day 1000");
    CheckOk(timeless->Assign(d_ids.get() + 1, 1, d_v.get(),
                             HostClockSeconds() + 400 * kDay, nullptr),
            "evict: assign 400 days past the clock");
    Check(timeless->latest_update_time() == 1000 * kDay,
          "evict: a time past the clock does not move the table's");
    GpuRowTable::ExpireSeconds one_day;
    one_day.default_seconds = kDay;
    CheckOk(timeless->Evict(1002 * kDay, one_day, &none, nullptr),
            "evict: at day 1002");
    Check(none == 2, "evict: the row written past the clock expired too (" +
                         std::to_string(none) + " evicted, want 2)");
    // A write without a time (0) takes the table's (as on the CPU, for a
    // table that has one): the rows it created were dated 1970 and expired
    // at once. Written beside a table without a time, it gives that table
    // none (its rows are dated with the other's time).
    std::unique_ptr<GpuRowTable> untimed;
    CheckOk(GpuRowTable::Create(spec, &untimed), "evict: create untimed");
    std::vector<GpuRowTable::WriteRequest> both(2);
    both[0].table = timeless.get();
    both[1].table = untimed.get();
    for (auto& r : both) {
      r.ids = d_ids.get() + 2;
      r.n = 1;
      r.values = d_v.get();
    }
    CheckOk(
        GpuRowTable::WriteMany(GpuRowTable::Write::kAssign, both, 0, nullptr),
        "evict: assign without a time");
    Check(untimed->latest_update_time() == 0,
          "evict: a table without a time takes no other's");
    CheckOk(timeless->Evict(1000 * kDay, one_day, &none, nullptr),
            "evict: at day 1000 again");
    Check(none == 0 && timeless->size() == 1,
          "evict: a row written without a time has the table's");
  }
  GpuRowTable::ExpireSeconds expire;
  expire.default_seconds = kDay;
  expire.by_slot = {{3, 5 * kDay}};
  int64_t evicted = 0;
  CheckOk(table->Evict(table->latest_update_time(), expire, &evicted,
                       nullptr),
          "evict");
  std::map<int64_t, std::vector<float>> want;
  for (const auto& [id, row] : before) {
    if ((id >> 48) != 4) want[id] = row;  // slot 4's old ids expired
  }
  Check(evicted == 1500 && table->size() == 4500,
        "evict: " + std::to_string(evicted) + " evicted, " +
            std::to_string(table->size()) + " left (want 1500, 4500)");
  Check(SameRows(Export(table.get()), want, spec.row_floats(),
                 spec.entry_floats),
        "evict: the kept entries are whole");
  Check(table->capacity() == capacity_before,
        "evict: a map still over a quarter full keeps its capacity");
  // New and evicted ids insert again.
  const std::vector<int64_t> again = {old_ids[1], (int64_t{6} << 48) | 1};
  DeviceVector<int64_t> d_again(again);
  DeviceVector<float> d_v(std::vector<float>(again.size() * d, 2.0f));
  CheckOk(table->Assign(d_again.get(), again.size(), d_v.get(), 1003 * kDay,
                        nullptr),
          "evict: assign after");
  Check(table->size() == 4502, "evict: evicted ids insert again (" +
                                   std::to_string(table->size()) + ")");
  // Two days later everything has expired: the map shrinks to its initial
  // capacity and still takes ids.
  CheckOk(table->Evict(1005 * kDay, expire, &evicted, nullptr),
          "evict: everything");
  Check(evicted == 4502 && table->size() == 0 &&
            table->capacity() == spec.initial_capacity,
        "evict: everything evicted, the map back to " +
            std::to_string(table->capacity()) + " slots");
  CheckOk(table->Assign(d_again.get(), again.size(), d_v.get(), 1006 * kDay,
                        nullptr),
          "evict: assign after everything");
  Check(table->size() == 2, "evict: an emptied map takes ids");
}

int Main() {
  // Line by line, so a crash or a timeout keeps what was printed.
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int devices = 0;
  const cudaError_t error = cudaGetDeviceCount(&devices);
  if (error != cudaSuccess || devices == 0) {
    // A driver older than the runtime says so here.
    std::printf("FAIL no usable CUDA device (%s)\n",
                error == cudaSuccess ? "none found" : cudaGetErrorString(error));
    return 1;
  }
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s\n", prop.name);

  GpuSegment sgd;
  sgd.dim = 3;
  sgd.init_min = sgd.init_max = 0.25f;
  GpuSegment adagrad;
  adagrad.optimizer = GpuSegment::Optimizer::kAdagrad;
  adagrad.dim = 5;
  adagrad.initial_accumulator = 0.3f;
  adagrad.weight_decay = 0.01f;
  adagrad.init_min = -0.5f;
  adagrad.init_max = -0.5f;
  CheckTraining("sgd+adagrad", Spec({sgd, adagrad}), {0.1f, 0.05f});

  GpuSegment adam;
  adam.optimizer = GpuSegment::Optimizer::kAdam;
  adam.dim = 6;
  adam.beta1 = 0.9f;
  adam.beta2 = 0.99f;
  adam.epsilon = 0.01f;
  adam.weight_decay = 0.01f;
  adam.init_min = -0.05f;
  adam.init_max = 0.05f;
  adam.init_seed = 5;
  GpuSegment ftrl;
  ftrl.optimizer = GpuSegment::Optimizer::kFtrl;
  ftrl.dim = 33;  // more than a tile's lanes, not a multiple of them
  ftrl.initial_accumulator = 0.1f;
  ftrl.beta = 0.5f;
  ftrl.l1 = 0.01f;
  ftrl.l2 = 0.1f;
  CheckTraining("adam+ftrl", Spec({adam, ftrl}), {0.05f, 0.1f});
  GpuSegment momentum;
  momentum.optimizer = GpuSegment::Optimizer::kMomentum;
  momentum.dim = 4;
  momentum.momentum = 0.9f;
  momentum.nesterov = true;
  momentum.weight_decay = 0.01f;
  momentum.init_min = momentum.init_max = 0.1f;
  GpuSegment rmsprop;
  rmsprop.optimizer = GpuSegment::Optimizer::kRmsprop;
  rmsprop.dim = 5;
  rmsprop.momentum = 0.8f;
  GpuSegment rmspropv2 = rmsprop;
  rmspropv2.optimizer = GpuSegment::Optimizer::kRmspropV2;
  rmspropv2.dim = 2;
  rmspropv2.weight_decay = 0.02f;
  CheckTraining("momentum+rmsprop+rmspropv2",
                Spec({momentum, rmsprop, rmspropv2}), {0.05f, 0.01f, 0.02f});
  GpuSegment amsgrad = adam;
  amsgrad.optimizer = GpuSegment::Optimizer::kAmsgrad;
  amsgrad.nesterov = true;
  GpuSegment adadelta;
  adadelta.optimizer = GpuSegment::Optimizer::kAdadelta;
  adadelta.dim = 7;
  adadelta.momentum = 0.9f;  // averaging_ratio
  adadelta.epsilon = 0.01f;
  adadelta.weight_decay = 0.01f;
  CheckTraining("amsgrad+adadelta", Spec({amsgrad, adadelta}), {0.05f, 0.1f});
  CheckLookupMany({Spec({sgd}), Spec({adagrad}), Spec({adam, ftrl})});
  // Widths of whole float4s (8 and 44): rows copied as vectors, a warp's
  // 8 rows short of 32 chunks at width 8.
  CheckLookupMany({Spec({sgd, adagrad}), Spec({adagrad, adam, ftrl})});
  CheckWriteMany({Spec({sgd}), Spec({adagrad}), Spec({adam, ftrl})},
                 {{0.1f}, {0.05f}, {0.05f, 0.1f}});
  {
    // More tables than one write group takes (16): two groups, the same
    // ids in every table.
    std::vector<GpuRowTableSpec> specs;
    std::vector<std::vector<float>> lrs;
    for (int t = 0; t < 18; ++t) {
      switch (t % 3) {
        case 0:
          specs.push_back(Spec({sgd}));
          lrs.push_back({0.1f});
          break;
        case 1:
          specs.push_back(Spec({adagrad}));
          lrs.push_back({0.05f});
          break;
        default:
          specs.push_back(Spec({adam, ftrl}));
          lrs.push_back({0.05f, 0.1f});
      }
    }
    CheckWriteMany(specs, lrs);
  }
  CheckEvict(Spec({sgd, adagrad}));
  CheckServing(Spec({sgd, adagrad}));

  // Reserved ids: refused, nothing written.
  std::unique_ptr<GpuRowTable> table;
  CheckOk(GpuRowTable::Create(Spec({sgd}), &table), "reserved: create");
  if (table != nullptr) {
    const std::vector<int64_t> ids = {5, kEmptySlotId, 6};
    DeviceVector<int64_t> d_ids(ids);
    DeviceVector<float> d_v(std::vector<float>(9, 1.0f));
    const Status s = table->Assign(d_ids.get(), 3, d_v.get(), 1, nullptr);
    Check(s.code() == StatusCode::kInvalidArgument && table->size() == 0,
          "reserved ids are refused and nothing is written (" +
              s.ToString() + ")");
  }
  table.reset();
  // Ends the context: compute-sanitizer's leak check reports what is
  // still allocated then.
  cudaDeviceReset();
  std::printf("%s: %d failed\n", failures == 0 ? "PASSED" : "FAILED",
              failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

int main() { return monolith::hash_table::gpu::Main(); }
