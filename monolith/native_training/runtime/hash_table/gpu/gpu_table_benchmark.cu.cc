// GPU table benchmark: GpuRowTable beside HierarchicalKV's
// HashTable doing the same batches in the same run.
//
//   bazel run -c opt --config=cuda \
//       //monolith/native_training/runtime/hash_table/gpu:gpu_table_benchmark
//
// For dim 32 and 128 and load factors 0.5 and 0.9: both tables are sized so
// that --keys distinct keys fill them to that load (ours: a map of
// keys / load slots that does not grow; HKV: init and max capacity the
// same), filled in batches of --batch, then timed over --rounds rounds:
//   find:    --batch existing keys at random (ours: Lookup; HKV: find)
//   upsert:  --batch existing keys with new values (ours: Assign, which
//            sorts the batch to apply repeats in order; HKV:
//            insert_or_assign)
//   adagrad: ours' ApplyGradients (adagrad) of --batch keys
// Rates are keys per second, best of the rounds (CUDA events around the
// calls on one stream). Ours stores adagrad entries (the embedding, its
// accumulators and the update time: 2 * dim + 2 floats a row); HKV the
// embedding alone. Prints a table, then one JSON line per configuration.
// Without a GPU it says so and exits 1.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "merlin_hashtable.cuh"
#include "monolith/native_training/runtime/hash_table/gpu/device_vector.h"
#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_table.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

#define CHECK_CUDA(expr)                                               \
  do {                                                                 \
    const cudaError_t e = (expr);                                      \
    if (e != cudaSuccess) {                                            \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(e));  \
      std::exit(1);                                                    \
    }                                                                  \
  } while (false)

void CheckOk(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

struct Flags {
  int64_t keys = 1 << 24;
  int64_t batch = 1 << 20;
  int rounds = 5;
};

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* name) -> const char* {
      const std::string prefix = std::string("--") + name + "=";
      return arg.rfind(prefix, 0) == 0 ? argv[i] + prefix.size() : nullptr;
    };
    if (const char* v = value("keys")) {
      flags.keys = std::atoll(v);
    } else if (const char* v = value("batch")) {
      flags.batch = std::atoll(v);
    } else if (const char* v = value("rounds")) {
      flags.rounds = std::atoi(v);
    } else {
      std::fprintf(stderr, "unknown flag %s (--keys, --batch, --rounds)\n",
                   argv[i]);
      std::exit(2);
    }
  }
  if (flags.keys <= 0 || flags.batch <= 0 || flags.rounds <= 0 ||
      flags.batch > flags.keys) {
    std::fprintf(stderr, "--keys, --batch, --rounds must be positive and "
                         "--batch at most --keys\n");
    std::exit(2);
  }
  return flags;
}

// Seconds of fn() on |stream|, best of |rounds|.
template <typename Fn>
double BestSeconds(cudaStream_t stream, int rounds, Fn fn) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  double best = 1e30;
  for (int r = 0; r < rounds; ++r) {
    CHECK_CUDA(cudaEventRecord(start, stream));
    fn();
    CHECK_CUDA(cudaEventRecord(stop, stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    best = std::min(best, ms / 1e3);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  return best;
}

struct Result {
  int dim = 0;
  double load = 0;
  int64_t keys = 0;
  double find = 0, upsert = 0, adagrad = 0;
  double peer_find = 0, peer_upsert = 0;
  // Keys each table holds after the fill: a fixed-capacity HKV table may
  // evict some (full buckets), and its finds then include misses.
  int64_t kept = 0, peer_kept = 0;
};

Result Run(int dim, double load, const Flags& flags, cudaStream_t stream) {
  Result result{dim, load, flags.keys};
  std::mt19937_64 gen(dim * 1000 + static_cast<int>(load * 100));
  std::vector<int64_t> keys(flags.keys);
  for (int64_t& k : keys) {
    do {
      k = static_cast<int64_t>(gen() >> 1);
    } while (!StorableId(k));
  }
  std::vector<int64_t> queries(flags.batch);
  std::uniform_int_distribution<int64_t> pick(0, flags.keys - 1);
  for (int64_t& q : queries) q = keys[pick(gen)];
  std::vector<float> values(flags.batch * dim, 0.5f);
  const DeviceVector<int64_t> keys_buffer(keys), queries_buffer(queries);
  const DeviceVector<float> values_buffer(values),
      out_buffer(flags.batch * dim);
  const DeviceVector<bool> found_buffer(flags.batch);
  int64_t* d_keys = keys_buffer.get();
  int64_t* d_queries = queries_buffer.get();
  float* d_values = values_buffer.get();
  float* d_out = out_buffer.get();
  bool* d_found = found_buffer.get();
  const int64_t capacity = static_cast<int64_t>(flags.keys / load) + 1;

  {
    GpuRowTableSpec spec;
    GpuSegment seg;
    seg.optimizer = GpuSegment::Optimizer::kAdagrad;
    seg.dim = dim;
    seg.state_offset = dim;
    seg.initial_accumulator = 0.1f;
    spec.value_floats = dim;
    spec.entry_floats = 2 * dim;
    spec.segments = {seg};
    spec.initial_capacity = capacity;
    spec.max_load = 0.95f;
    spec.hash_seed = 0x9E3779B97F4A7C15ULL;  // as a table's (any nonzero)
    std::unique_ptr<GpuRowTable> ours;
    CheckOk(GpuRowTable::Create(spec, &ours), "creating our table");
    for (int64_t b = 0; b < flags.keys; b += flags.batch) {
      CheckOk(ours->Assign(d_keys + b, std::min(flags.batch, flags.keys - b),
                           d_values, 1, stream),
              "filling our table");
    }
    CHECK_CUDA(cudaStreamSynchronize(stream));
    result.kept = ours->size();
    const double n = static_cast<double>(flags.batch);
    result.find = n / BestSeconds(stream, flags.rounds, [&] {
      CheckOk(ours->Lookup(d_queries, flags.batch, d_out, stream), "lookup");
    });
    result.upsert = n / BestSeconds(stream, flags.rounds, [&] {
      CheckOk(ours->Assign(d_queries, flags.batch, d_values, 2, stream),
              "assign");
    });
    const std::vector<float> lr = {0.01f};
    result.adagrad = n / BestSeconds(stream, flags.rounds, [&] {
      CheckOk(ours->ApplyGradients(d_queries, flags.batch, d_values, lr, 3,
                                   stream),
              "apply_gradients");
    });
  }
  {
    nv::merlin::HashTableOptions options;
    const int64_t buckets = (capacity + 127) / 128;
    options.init_capacity = options.max_capacity = buckets * 128;
    options.max_hbm_for_vectors =
        static_cast<size_t>(buckets) * 128 * dim * sizeof(float);
    options.dim = dim;
    options.max_load_factor = 0.95f;
    nv::merlin::HashTable<int64_t, float, uint64_t> peer;
    peer.init(options);
    for (int64_t b = 0; b < flags.keys; b += flags.batch) {
      peer.insert_or_assign(std::min(flags.batch, flags.keys - b), d_keys + b,
                            d_values, nullptr, stream);
    }
    CHECK_CUDA(cudaStreamSynchronize(stream));
    result.peer_kept = static_cast<int64_t>(peer.size(stream));
    const double n = static_cast<double>(flags.batch);
    result.peer_find = n / BestSeconds(stream, flags.rounds, [&] {
      peer.find(flags.batch, d_queries, d_out, d_found, nullptr, stream);
    });
    result.peer_upsert = n / BestSeconds(stream, flags.rounds, [&] {
      peer.insert_or_assign(flags.batch, d_queries, d_values, nullptr, stream);
    });
  }
  return result;
}

int Main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr, "gpu_table_benchmark: no usable CUDA device\n");
    return 1;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  std::vector<Result> results;
  for (int dim : {32, 128}) {
    for (double load : {0.5, 0.9}) {
      std::fprintf(stderr, "dim %d, load %.1f\n", dim, load);
      results.push_back(Run(dim, load, flags, stream));
    }
  }
  std::printf("GpuRowTable vs HierarchicalKV on %s: %lld keys, "
              "batches of %lld, best of %d rounds; keys/s\n",
              prop.name, static_cast<long long>(flags.keys),
              static_cast<long long>(flags.batch), flags.rounds);
  std::printf("%4s %5s %11s %11s %9s %11s %11s %9s %11s\n", "dim", "load",
              "find", "HKV find", "ratio", "upsert", "HKV upsert", "ratio",
              "adagrad");
  for (const Result& r : results) {
    std::printf("%4d %5.1f %11.3g %11.3g %9.2f %11.3g %11.3g %9.2f %11.3g\n",
                r.dim, r.load, r.find, r.peer_find, r.find / r.peer_find,
                r.upsert, r.peer_upsert, r.upsert / r.peer_upsert, r.adagrad);
  }
  for (const Result& r : results) {
    std::printf(
        "{\"bench\": \"gpu_table\", \"device\": \"%s\", \"dim\": %d, "
        "\"load_factor\": %.2f, \"keys\": %lld, \"batch\": %lld, "
        "\"find_keys_per_s\": %.0f, \"upsert_keys_per_s\": %.0f, "
        "\"adagrad_keys_per_s\": %.0f, \"peer\": \"HierarchicalKV\", "
        "\"peer_find_keys_per_s\": %.0f, \"peer_upsert_keys_per_s\": %.0f, "
        "\"find_ratio_vs_peer\": %.3f, \"upsert_ratio_vs_peer\": %.3f, "
        "\"keys_kept\": %lld, \"peer_keys_kept\": %lld}\n",
        prop.name, r.dim, r.load, static_cast<long long>(r.keys),
        static_cast<long long>(flags.batch), r.find, r.upsert, r.adagrad,
        r.peer_find, r.peer_upsert, r.find / r.peer_find,
        r.upsert / r.peer_upsert, static_cast<long long>(r.kept),
        static_cast<long long>(r.peer_kept));
  }
  CHECK_CUDA(cudaStreamDestroy(stream));
  bool lost = false;
  for (const Result& r : results) {
    if (r.peer_kept < r.keys) {
      std::fprintf(stderr,
                   "note: HierarchicalKV kept %lld of %lld keys at dim %d, "
                   "load %.1f: its finds include misses\n",
                   static_cast<long long>(r.peer_kept),
                   static_cast<long long>(r.keys), r.dim, r.load);
    }
    if (r.kept != r.keys) {
      std::fprintf(stderr, "FAIL our table holds %lld of %lld keys\n",
                   static_cast<long long>(r.kept),
                   static_cast<long long>(r.keys));
      lost = true;
    }
  }
  return lost ? 1 : 0;
}

}  // namespace
}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

int main(int argc, char** argv) {
  return monolith::hash_table::gpu::Main(argc, argv);
}
