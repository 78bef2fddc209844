// Benchmark of the embedding hash table against its peers, in one run:
//   bazel run -c opt //monolith/native_training/runtime/hash_table:hash_table_benchmark
//   (-- --dims=16,64 --ids=1000000,4000000,16000000,64000000 --rounds=7)
// For each table size (--ids random ids, default 1,000,000) at dim 16 and 64
// (adagrad entries), batches of 65,536, on 1 and 2 threads: insert (new ids
// into an emptied table, growing from empty; the first fill, on memory new
// to the process, is reported apart: on a VM its first touch of memory can
// cost more than the table's own work), assign, lookup and optimize ids/s,
// bytes per
// entry (RSS growth / entries); beside std::unordered_map filled with the
// same ids and doing the same lookups; the longest a lookup waited while
// the table grew (a reader on a second thread during a refill) beside the
// longest single-shard growth; and a loop of independent random 64-byte
// reads from a buffer as large as the table (the machine's random-access
// ceiling at that working-set size). Where our table and the map would not
// fit in memory at once, the map is built after our table is freed; sizes
// where even one would not fit are skipped with what they need. Prints a table, then one JSON line per
// configuration. med_rnd / median_round_ratio: the median over rounds of
// that round's ours / the map on the row's threads; med_sc /
// median_round_ratio_vs_1thread: the same median of ours on 2 threads /
// ours on 1; umap_sc / peer_median_ratio_vs_1thread: that 2 / 1 thread
// median for the map, what the host allowed.
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "google/protobuf/text_format.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/host_memory.h"

namespace monolith {
namespace hash_table {
namespace {

constexpr int64_t kBatch = 65'536;
constexpr int kLookupBatches = 30;  // ~2M ids per measurement
// The reader that measures growth stalls looks up this many ids at a time.
constexpr int64_t kStallBatch = 512;

double Seconds(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                       start)
      .count();
}

int64_t RssBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

// Runs |per_thread(thread_index)| on |threads| threads; returns seconds.
double Parallel(int threads, const std::function<void(int)>& per_thread) {
  return Seconds([&] {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(per_thread, t);
    for (auto& th : pool) th.join();
  });
}

std::vector<int64_t> RandomIds(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids(n);
  for (auto& id : ids) id = static_cast<int64_t>(rng());
  return ids;
}

// Batches of ids drawn from |keys|, one sequence per thread.
std::vector<std::vector<int64_t>> LookupBatches(const std::vector<int64_t>& keys,
                                                int count, int64_t batch_size,
                                                uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, keys.size() - 1);
  std::vector<std::vector<int64_t>> batches(count);
  for (auto& batch : batches) {
    batch.resize(batch_size);
    for (auto& id : batch) id = keys[pick(rng)];
  }
  return batches;
}

// The peer: std::unordered_map filled with the same ids (no reserve, as a
// table that grows) doing the same lookups (copy or zero-fill).
template <int kDim>
class UnorderedMapPeer {
 public:
  void Insert(const std::vector<int64_t>& keys) {
    for (int64_t k : keys) map_[k].fill(1.0f);
  }

  void BatchLookup(const int64_t* ids, int64_t n, float* out) const {
    for (int64_t i = 0; i < n; ++i) {
      auto it = map_.find(ids[i]);
      if (it != map_.end()) {
        std::memcpy(out + i * kDim, it->second.data(), sizeof(float) * kDim);
      } else {
        std::memset(out + i * kDim, 0, sizeof(float) * kDim);
      }
    }
  }

 private:
  std::unordered_map<int64_t, std::array<float, kDim>> map_;
};

// Independent random reads from a |bytes| buffer on huge pages (as the
// table's big arrays are), per second: the best the machine does at that
// working-set size. A lookup reads two lines (a slot, then values) in two
// places, and where the host maps the guest's huge pages in 4 KiB pieces (a
// VM) each new 4 KiB page costs a TLB miss with a walk of both page
// tables, so pairs of lines are measured too: in one 4 KiB page and in two
// random ones.
struct RandomReads {
  double lines;            // 64-byte reads/s, one at a time
  double same_page_pairs;  // pairs/s, both lines in one 4 KiB page
  double two_page_pairs;   // pairs/s, the lines anywhere
};

RandomReads RandomReadsPerSecond(int64_t bytes) {
  constexpr int64_t kHugePage = int64_t{2} << 20;
  constexpr int64_t kLinesPerPage = 4096 / 64;
  bytes = std::max<int64_t>(kHugePage, (bytes + kHugePage - 1) / kHugePage *
                                           kHugePage);
  const int64_t lines_in_buffer = bytes / 64;
  constexpr int64_t kReads = 20'000'000;
  char* buffer = static_cast<char*>(std::aligned_alloc(kHugePage, bytes));
  if (buffer == nullptr) std::abort();
  madvise(buffer, bytes, MADV_HUGEPAGE);
  std::memset(buffer, 1, bytes);
  std::mt19937_64 rng(5);
  std::vector<uint64_t> lines(kReads), partners(kReads);
  uint64_t sum = 0;
  const auto reads_per_second = [&](bool pairs) {
    const double s = Seconds([&] {
      for (int64_t i = 0; i < kReads; ++i) {
        uint64_t v;
        std::memcpy(&v, buffer + lines[i] * 64, sizeof(v));
        sum += v;
        if (pairs) {
          std::memcpy(&v, buffer + partners[i] * 64, sizeof(v));
          sum += v;
        }
      }
    });
    return kReads / s;
  };
  for (auto& line : lines) line = rng() % lines_in_buffer;
  RandomReads reads;
  reads.lines = reads_per_second(false);
  for (int64_t i = 0; i < kReads; ++i) {
    partners[i] = lines[i] / kLinesPerPage * kLinesPerPage +
                  (lines[i] + 1 + rng() % (kLinesPerPage - 1)) % kLinesPerPage;
  }
  reads.same_page_pairs = reads_per_second(true);
  for (auto& partner : partners) partner = rng() % lines_in_buffer;
  reads.two_page_pairs = reads_per_second(true);
  std::free(buffer);
  if (sum == 42) std::printf(" ");  // keep the loads
  return reads;
}

// Growth while a reader looks up (GrowthStalls), in ms.
struct Stalls {
  double longest_ms;         // the reader's slowest batch during the fill
  double median_ms;          // its median batch during the fill
  double longest_alone_ms;   // its slowest batch after, with no writer
  // The longest pause of the reader's or the writer's CPU that began during
  // the fill (see HostPauses), and the reader's slowest batch during the
  // fill less the time such pauses took of it: a lower bound of the stall
  // the table caused, since a pause of the writer's CPU counts whether or
  // not the writer then held a lock the reader needed.
  double longest_pause_ms, longest_outside_pauses_ms;
};

struct Result {
  int dim;
  int threads;
  int64_t ids;
  // insert: new ids into an emptied table (memory touched before);
  // fresh_insert: the first fill, on memory new to the process.
  double insert, fresh_insert, assign, lookup, optimize, map_insert, map_lookup,
      bytes_per_entry, table_bytes_per_entry, map_bytes_per_entry,
      payload_bytes;
  RandomReads reads;  // at the table's size
  // Median over rounds of this round's lookup rate / the map's on as many
  // threads: measured seconds apart, so less exposed to the host's slow
  // spells than best-of-rounds.
  double median_round_ratio;
  // Our own 2-thread / 1-thread median (1 for 1 thread).
  double median_scaling;
  // The map's own 2-thread / 1-thread median: how far this host lets a
  // memory-bound lookup loop scale at the time of the run.
  double map_median_scaling;
  Stalls stalls;
  // The longest one shard's growth held its lock (ms).
  double longest_growth_ms;
  // New ids into a table at size with an eighth of its ids erased.
  double steady_insert;
  // Whether the map lived beside our table (rounds interleaved) or after it.
  bool together;
};

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t half = values.size() / 2;
  if (values.size() % 2 == 1) return values[half];
  return (values[half - 1] + values[half]) / 2;
}

// A time interval, in steady_clock seconds.
struct Interval {
  double begin, end;
};

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Pins the calling thread to |cpu| (if it may run there).
void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// Records the pauses of some CPUs: on each, a thread pinned to it wakes
// every 200 us and notes every gap of kPauseSeconds or more between
// wake-ups. A thread pinned there that waits for a lock sleeps and leaves
// the CPU to the watch, and one that runs lets it in within a time slice,
// so such a gap is time in which nothing ran on that CPU: on a VM, the
// host held the vCPU. On the VM the benchmark was recorded on, a fill of
// new memory froze each vCPU for ~30 ms every ~100 ms, both at once or a
// few ms apart (`perf record -a` sampled nothing on them, idle included);
// a reader then waits either for its own vCPU or for a writer frozen
// inside a shard's lock (the writer touches new memory before it locks a
// shard, but the host pauses it anywhere).
class HostPauses {
 public:
  static constexpr double kPauseSeconds = 0.010;

  explicit HostPauses(const std::vector<int>& cpus) {
    for (const int cpu : cpus) {
      watches_.push_back(std::make_unique<Watch>());
      Watch* watch = watches_.back().get();
      watch->pauses.reserve(kMaxPauses);
      watch->thread = std::thread([this, cpu, watch] {
        PinTo(cpu);
        double last = Now();
        while (!stop_.load(std::memory_order_relaxed)) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          const double now = Now();
          if (now - last >= kPauseSeconds &&
              watch->pauses.size() < kMaxPauses) {
            watch->pauses.push_back({last, now});
          }
          last = now;
        }
      });
    }
  }

  ~HostPauses() {
    if (!stop_) Stop();
  }

  // Stops recording and merges the CPUs' pauses into pauses(): a time in
  // which any of them paused.
  void Stop() {
    stop_ = true;
    for (auto& watch : watches_) {
      watch->thread.join();
      pauses_.insert(pauses_.end(), watch->pauses.begin(),
                     watch->pauses.end());
    }
    std::sort(pauses_.begin(), pauses_.end(),
              [](const Interval& a, const Interval& b) {
                return a.begin < b.begin;
              });
    std::vector<Interval> merged;
    for (const Interval& pause : pauses_) {
      if (!merged.empty() && pause.begin <= merged.back().end) {
        merged.back().end = std::max(merged.back().end, pause.end);
      } else {
        merged.push_back(pause);
      }
    }
    pauses_ = std::move(merged);
  }

  const std::vector<Interval>& pauses() const { return pauses_; }

  // How much of |interval| the pauses cover.
  double Overlap(const Interval& interval) const {
    double covered = 0;
    for (const Interval& pause : pauses_) {
      covered += std::max(0.0, std::min(interval.end, pause.end) -
                                   std::max(interval.begin, pause.begin));
    }
    return covered;
  }

 private:
  static constexpr size_t kMaxPauses = 1 << 16;
  struct Watch {
    std::vector<Interval> pauses;
    std::thread thread;
  };
  std::atomic<bool> stop_{false};
  std::vector<std::unique_ptr<Watch>> watches_;
  std::vector<Interval> pauses_;
};

// Fills |table| with |keys| (batches of kBatch) while a second thread looks
// up kStallBatch of them at a time, then lets the reader go on alone for as
// long again: what the host's own noise does to it.
Stalls GrowthStalls(EmbeddingHashTable* table,
                    const std::vector<int64_t>& keys) {
  // The reader's batches of at least this long are kept with their times,
  // to take out the machine's pauses.
  constexpr double kSlowSeconds = 0.001;
  constexpr size_t kMaxSlow = 1 << 16;
  const std::vector<std::vector<int64_t>> probes =
      LookupBatches(keys, 64, kStallBatch, 7);
  std::vector<float> values(kBatch * table->DimSize(), 0.5f);
  std::atomic<bool> filling{true}, done{false};
  std::vector<double> during_ms, after_ms;
  std::vector<Interval> slow;
  double unrecorded_slow_ms = 0;  // slow batches past kMaxSlow count whole
  // Room for every batch up front, touched: a reallocation, or a page
  // fault beside the writer's mmap and munmap calls, would stall the reader.
  for (auto* times : {&during_ms, &after_ms}) {
    times->resize(1 << 24);
    times->clear();
  }
  slow.resize(kMaxSlow);
  slow.clear();
  // The reader on the first CPU this process may use, the writer (this
  // thread) on the second, each CPU watched for pauses.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
      if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
    }
  }
  if (cpus.empty()) cpus.push_back(0);
  HostPauses host(cpus);
  if (cpus.size() > 1) PinTo(cpus[1]);
  std::thread reader([&] {
    PinTo(cpus[0]);
    std::vector<float> out(kStallBatch * table->DimSize());
    for (size_t i = 0; !done.load(std::memory_order_relaxed); ++i) {
      const auto& probe = probes[i % probes.size()];
      const bool during = filling.load(std::memory_order_relaxed);
      const double begin = Now();
      table->BatchLookup(probe.data(), kStallBatch, out.data());
      const double end = Now();
      (during ? during_ms : after_ms).push_back(1e3 * (end - begin));
      if (during && end - begin >= kSlowSeconds) {
        if (slow.size() < kMaxSlow) {
          slow.push_back({begin, end});
        } else {
          unrecorded_slow_ms = std::max(unrecorded_slow_ms, 1e3 * (end - begin));
        }
      }
    }
  });
  const int64_t n = keys.size();
  const double fill_s = Seconds([&] {
    for (int64_t b = 0; b < n; b += kBatch) {
      table->Assign(&keys[b], std::min(kBatch, n - b), values.data(), 1);
    }
  });
  const double fill_end = Now();
  filling = false;
  std::this_thread::sleep_for(std::chrono::duration<double>(fill_s));
  done = true;
  reader.join();
  host.Stop();
  sched_setaffinity(0, sizeof(allowed), &allowed);
  Stalls stalls;
  stalls.longest_ms = *std::max_element(during_ms.begin(), during_ms.end());
  stalls.median_ms = Median(during_ms);
  stalls.longest_alone_ms =
      after_ms.empty() ? 0.0
                       : *std::max_element(after_ms.begin(), after_ms.end());
  stalls.longest_pause_ms = 0;
  for (const Interval& pause : host.pauses()) {
    if (pause.begin >= fill_end) break;  // sorted by begin
    stalls.longest_pause_ms =
        std::max(stalls.longest_pause_ms, 1e3 * (pause.end - pause.begin));
  }
  // Batches under kSlowSeconds count whole; slower ones less their pauses.
  stalls.longest_outside_pauses_ms = unrecorded_slow_ms;
  for (const double ms : during_ms) {
    if (ms < 1e3 * kSlowSeconds) {
      stalls.longest_outside_pauses_ms =
          std::max(stalls.longest_outside_pauses_ms, ms);
    }
  }
  for (const Interval& batch : slow) {
    stalls.longest_outside_pauses_ms =
        std::max(stalls.longest_outside_pauses_ms,
                 1e3 * (batch.end - batch.begin - host.Overlap(batch)));
  }
  return stalls;
}

// Measures one table size. With |together|, the map lives beside our table
// and the rounds interleave them; otherwise (when both would not fit in
// memory at once) our table is measured and freed before the map is built.
template <int kDim>
std::vector<Result> RunSize(int64_t num_ids, int rounds, bool together) {
  const std::string config_text =
      "entry_config { segments { dim_size: " + std::to_string(kDim) +
      " init_config { zeros {} } opt_config { adagrad {} } } }";
  EmbeddingHashTableConfig config;
  google::protobuf::TextFormat::ParseFromString(config_text, &config);
  const std::vector<int64_t> keys = RandomIds(num_ids, kDim);
  std::vector<float> values(kBatch * kDim, 0.5f);

  // Return memory freed by earlier runs, so RSS growth is this table's.
  malloc_trim(0);
  int64_t rss_before = RssBytes();
  std::unique_ptr<EmbeddingHashTable> table;
  if (!EmbeddingHashTable::Create(config, 1, &table).ok()) std::abort();
  auto fill = [&] {
    for (int64_t b = 0; b < num_ids; b += kBatch) {
      table->Assign(&keys[b], std::min(kBatch, num_ids - b), values.data(), 1);
    }
  };
  const double fresh_insert_s = Seconds(fill);
  const double bytes_per_entry =
      static_cast<double>(RssBytes() - rss_before) / num_ids;
  const int64_t table_bytes = table->MemoryBytes();
  // Again into the emptied table: the same growth from empty, on memory the
  // process has touched before.
  table->Clear();
  const double insert_s = Seconds(fill);

  std::unique_ptr<UnorderedMapPeer<kDim>> peer;
  double map_insert_s = 0, map_bytes_per_entry = 0;
  auto build_map = [&] {
    malloc_trim(0);
    rss_before = RssBytes();
    peer = std::make_unique<UnorderedMapPeer<kDim>>();
    map_insert_s = Seconds([&] { peer->Insert(keys); });
    map_bytes_per_entry =
        static_cast<double>(RssBytes() - rss_before) / num_ids;
  };
  if (together) build_map();

  std::vector<std::vector<std::vector<int64_t>>> batches;
  for (int t = 0; t < 2; ++t) {
    batches.push_back(LookupBatches(keys, kLookupBatches, kBatch, 100 + t));
  }
  const float lr = 0.01f;
  std::vector<Result> results(2);
  for (int threads : {1, 2}) {
    results[threads - 1] = Result{kDim, threads, num_ids};
  }
  // Each thread's output rows, allocated (and touched) outside the timing.
  std::vector<std::vector<float>> outs(2, std::vector<float>(kBatch * kDim));
  auto lookups = [&](int t) {
    for (const auto& batch : batches[t]) {
      table->BatchLookup(batch.data(), kBatch, outs[t].data());
    }
  };
  auto optimizes = [&](int t) {
    for (const auto& batch : batches[t]) {
      if (!table->BatchOptimize(batch.data(), kBatch, values.data(), &lr, 2, 1)
               .ok()) {
        std::abort();
      }
    }
  };
  auto assigns = [&](int t) {
    for (const auto& batch : batches[t]) {
      table->Assign(batch.data(), kBatch, values.data(), 3);
    }
  };
  auto map_lookups = [&](int t) {
    for (const auto& batch : batches[t]) {
      peer->BatchLookup(batch.data(), kBatch, outs[t].data());
    }
  };
  // Rounds interleave every measurement of what is in memory, ours and the
  // peer's, so each sees the same machine states; each figure is its best
  // round. The lookups of one round (ours and the map's, 1 and 2 threads)
  // run back to back, so a round's own ratios compare like with like.
  // ours_rounds[t] / map_rounds[t]: each round's lookup rate on t+1 threads.
  std::vector<double> ours_rounds[2], map_rounds[2];
  auto run_rounds = [&] {
    for (int round = 0; round < rounds; ++round) {
      for (Result& r : results) {
        const double ids = double(r.threads) * kLookupBatches * kBatch;
        if (table) {
          ours_rounds[r.threads - 1].push_back(ids /
                                               Parallel(r.threads, lookups));
          r.lookup = std::max(r.lookup, ours_rounds[r.threads - 1].back());
        }
        if (peer) {
          map_rounds[r.threads - 1].push_back(
              ids / Parallel(r.threads, map_lookups));
          r.map_lookup = std::max(r.map_lookup, map_rounds[r.threads - 1].back());
        }
      }
      if (!table) continue;
      for (Result& r : results) {
        const double ids = double(r.threads) * kLookupBatches * kBatch;
        r.optimize = std::max(r.optimize, ids / Parallel(r.threads, optimizes));
        r.assign = std::max(r.assign, ids / Parallel(r.threads, assigns));
      }
    }
  };
  run_rounds();

  // Steady state (a table at size that evicts as it admits): an eighth of
  // the ids erased, then as many new ids inserted, into freed entries and
  // slots with no growth.
  const std::vector<int64_t> new_keys = RandomIds(num_ids / 8, kDim + 1000);
  for (int64_t i = 0; i < num_ids / 8; ++i) table->Erase(keys[i * 8]);
  const double steady_insert_s = Seconds([&] {
    for (int64_t b = 0; b < num_ids / 8; b += kBatch) {
      table->Assign(&new_keys[b], std::min(kBatch, num_ids / 8 - b),
                    values.data(), 4);
    }
  });

  // Growth under a concurrent reader: empty the table and fill it again
  // (Clear starts LongestGrowthNanos over: the figure is this refill's).
  table->Clear();
  const Stalls stalls = GrowthStalls(table.get(), keys);
  const double longest_growth_ms = table->LongestGrowthNanos() / 1e6;
  table.reset();
  if (!together) {
    build_map();
    run_rounds();
  }
  peer.reset();
  batches.clear();
  malloc_trim(0);
  const RandomReads random_reads = RandomReadsPerSecond(table_bytes);

  // The median of the rounds' own ratios (a and b measured in each round).
  auto median_of_round_ratios = [](const std::vector<double>& a,
                                   const std::vector<double>& b) {
    std::vector<double> ratios;
    for (size_t i = 0; i < a.size(); ++i) ratios.push_back(a[i] / b[i]);
    return Median(ratios);
  };
  // Ours against the map: per-round ratios where the rounds interleaved;
  // else the medians' ratio.
  auto median_ratio = [&](const std::vector<double>& a,
                          const std::vector<double>& b) {
    return together ? median_of_round_ratios(a, b) : Median(a) / Median(b);
  };
  for (Result& r : results) {
    r.payload_bytes = 8 + 2.0 * kDim * sizeof(float);
    r.bytes_per_entry = bytes_per_entry;
    r.table_bytes_per_entry = static_cast<double>(table_bytes) / num_ids;
    r.map_bytes_per_entry = map_bytes_per_entry;
    r.insert = num_ids / insert_s;
    r.fresh_insert = num_ids / fresh_insert_s;
    r.map_insert = num_ids / map_insert_s;
    r.steady_insert = (num_ids / 8) / steady_insert_s;
    r.stalls = stalls;
    r.longest_growth_ms = longest_growth_ms;
    r.reads = random_reads;
    r.together = together;
  }
  // Ours / the map on each row's threads, and each one's 2 / 1 threads
  // (all measured in the same rounds).
  for (int t = 0; t < 2; ++t) {
    results[t].median_round_ratio = median_ratio(ours_rounds[t], map_rounds[t]);
  }
  results[0].median_scaling = 1.0;
  results[1].median_scaling =
      median_of_round_ratios(ours_rounds[1], ours_rounds[0]);
  results[0].map_median_scaling = 1.0;
  results[1].map_median_scaling =
      median_of_round_ratios(map_rounds[1], map_rounds[0]);
  return results;
}

// What our table and the map of |num_ids| at |dim| need, from the sizes of
// their entries (ours: entry and slots; the map: node and bucket).
int64_t OursBytes(int dim, int64_t num_ids) {
  return num_ids * (8 * int64_t{dim} + 40);
}
int64_t MapBytes(int dim, int64_t num_ids) {
  return num_ids * (4 * int64_t{dim} + 48);
}

std::vector<int64_t> ParseList(const std::string& text, const char* flag) {
  std::vector<int64_t> values;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, end - begin);
    char* rest = nullptr;
    const long long value = std::strtoll(item.c_str(), &rest, 10);
    if (item.empty() || *rest != '\0' || value <= 0) {
      std::fprintf(stderr, "%s takes a comma-separated list of positive "
                   "integers, not '%s'\n", flag, text.c_str());
      std::exit(2);
    }
    values.push_back(value);
    begin = end + 1;
  }
  return values;
}

// |ratio| of a figure of |r| to a ceiling measured on one thread (the
// random reads): JSON null on the lines of more threads.
std::string OneThreadRatio(const Result& r, double ratio) {
  if (r.threads != 1) return "null";
  char text[32];
  std::snprintf(text, sizeof(text), "%.3f", ratio);
  return text;
}

void PrintResults(const std::vector<Result>& results) {
  std::printf(
      "%-4s %-9s %-3s %9s %9s %9s %9s %9s %9s %9s %9s %9s %7s %7s %7s %7s "
      "%7s %7s %7s %7s %9s %9s %9s\n",
      "dim", "ids", "thr", "insert/s", "fresh_in/s", "steady/s", "assign/s", "lookup/s", "optim/s",
      "umap_in/s", "umap/s", "rand_rd/s", "vs_umap", "vs_1thr", "med_rnd",
      "med_sc", "umap_sc", "ins/lkp", "B/entry", "umap_B", "stall_ms", "unpaused",
      "growth_ms");
  for (const Result& r : results) {
    const Result& base = r.threads == 1 ? r : *(&r - 1);
    std::printf(
        "%-4d %-9lld %-3d %9.2e %9.2e %9.2e %9.2e %9.2e %9.2e %9.2e %9.2e "
        "%9.2e %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.1f %7.1f %9.2f %9.2f "
        "%9.2f\n",
        r.dim, static_cast<long long>(r.ids), r.threads, r.insert,
        r.fresh_insert, r.steady_insert, r.assign,
        r.lookup, r.optimize, r.map_insert, r.map_lookup, r.reads.lines,
        r.lookup / r.map_lookup, r.lookup / base.lookup, r.median_round_ratio,
        r.median_scaling, r.map_median_scaling, r.insert / base.lookup,
        r.bytes_per_entry,
        r.map_bytes_per_entry, r.stalls.longest_ms,
        r.stalls.longest_outside_pauses_ms, r.longest_growth_ms);
  }
  for (const Result& r : results) {
    const Result& base = r.threads == 1 ? r : *(&r - 1);
    std::printf(
        "{\"bench\": \"hash_table\", \"dim\": %d, \"threads\": %d, "
        "\"ids\": %lld, \"batch\": %lld, \"optimizer\": \"adagrad\", "
        "\"insert_ids_per_s\": %.0f, "
        "\"insert_fresh_memory_ids_per_s\": %.0f, "
        "\"insert_steady_ids_per_s\": %.0f, "
        "\"assign_ids_per_s\": %.0f, "
        "\"lookup_ids_per_s\": %.0f, \"optimize_ids_per_s\": %.0f, "
        "\"insert_ratio_vs_lookup\": %.3f, "
        "\"steady_insert_ratio_vs_lookup\": %.3f, "
        "\"peer\": \"std::unordered_map\", \"peer_insert_ids_per_s\": %.0f, "
        "\"peer_lookup_ids_per_s\": %.0f, "
        "\"lookup_ratio_vs_peer\": %.3f, "
        "\"lookup_ratio_vs_peer_1thread\": %.3f, "
        "\"fresh_insert_ratio_vs_peer\": %.3f, "
        "\"lookup_ratio_vs_1thread\": %.3f, "
        "\"median_round_ratio\": %.3f, "
        "\"median_round_ratio_vs_1thread\": %.3f, "
        "\"peer_median_ratio_vs_1thread\": %.3f, "
        "\"optimize_ratio_vs_lookup\": %.3f, "
        "\"random_64b_reads_per_s\": %.0f, "
        "\"lookup_ratio_vs_random_reads\": %s, "
        "\"random_same_page_pairs_per_s\": %.0f, "
        "\"random_two_page_pairs_per_s\": %.0f, "
        "\"lookup_ratio_vs_two_page_pairs\": %s, "
        "\"bytes_per_entry\": %.1f, \"table_bytes_per_entry\": %.1f, "
        "\"peer_bytes_per_entry\": %.1f, "
        "\"payload_bytes_per_entry\": %.0f, "
        "\"memory_ratio_vs_payload\": %.3f, "
        "\"longest_lookup_stall_ms\": %.3f, "
        "\"median_stall_batch_ms\": %.3f, \"stall_batch\": %lld, "
        "\"longest_lookup_without_writer_ms\": %.3f, "
        "\"longest_host_pause_ms\": %.3f, "
        "\"longest_lookup_stall_outside_host_pauses_ms\": %.3f, "
        "\"longest_shard_growth_ms\": %.3f, "
        "\"peer_measured_alongside\": %s}\n",
        r.dim, r.threads, static_cast<long long>(r.ids),
        static_cast<long long>(kBatch), r.insert, r.fresh_insert,
        r.steady_insert, r.assign,
        r.lookup,
        r.optimize, r.insert / base.lookup, r.steady_insert / base.lookup,
        r.map_insert, r.map_lookup,
        r.lookup / r.map_lookup, base.lookup / base.map_lookup,
        r.fresh_insert / r.map_insert, r.lookup / base.lookup,
        r.median_round_ratio, r.median_scaling,
        r.map_median_scaling, r.optimize / r.lookup, r.reads.lines,
        OneThreadRatio(r, r.lookup / r.reads.lines).c_str(),
        r.reads.same_page_pairs, r.reads.two_page_pairs,
        OneThreadRatio(r, r.lookup / r.reads.two_page_pairs).c_str(),
        r.bytes_per_entry, r.table_bytes_per_entry,
        r.map_bytes_per_entry, r.payload_bytes,
        r.bytes_per_entry / r.payload_bytes, r.stalls.longest_ms,
        r.stalls.median_ms, static_cast<long long>(kStallBatch),
        r.stalls.longest_alone_ms, r.stalls.longest_pause_ms,
        r.stalls.longest_outside_pauses_ms,
        r.longest_growth_ms, r.together ? "true" : "false");
  }
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith

int main(int argc, char** argv) {
  using monolith::hash_table::Result;
  const char* usage =
      "usage: %s [--dims=16,64] [--ids=1000000[,4000000,...]] [--rounds=7]\n";
  std::vector<int64_t> dims = {16, 64};
  std::vector<int64_t> sizes = {1'000'000};
  int rounds = 7;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string flag = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (flag == "--dims") {
      dims = monolith::hash_table::ParseList(value, "--dims");
      for (int64_t dim : dims) {
        if (dim != 16 && dim != 64) {
          std::fprintf(stderr, "--dims takes 16 and/or 64, not %s\n",
                       value.c_str());
          return 2;
        }
      }
    } else if (flag == "--ids") {
      sizes = monolith::hash_table::ParseList(value, "--ids");
    } else if (flag == "--rounds") {
      const std::vector<int64_t> parsed =
          monolith::hash_table::ParseList(value, "--rounds");
      if (parsed.size() != 1 || parsed[0] > 1000) {
        std::fprintf(stderr, "--rounds takes one count up to 1000, not %s\n",
                     value.c_str());
        return 2;
      }
      rounds = static_cast<int>(parsed[0]);
    } else {
      std::fprintf(stderr, "unknown argument %s; ", argv[i]);
      std::fprintf(stderr, usage, argv[0]);
      return 2;
    }
  }
  std::vector<Result> results;
  // Sizes not run, with why: JSON lines too, so that the tables say so.
  std::vector<std::string> skipped;
  for (int64_t dim : dims) {
    for (int64_t num_ids : sizes) {
      using monolith::hash_table::MapBytes;
      using monolith::hash_table::OursBytes;
      // Plus the ids and the random-read buffer's slack.
      const int64_t ids_bytes = num_ids * 8 + (int64_t{1} << 30);
      const int64_t available = static_cast<int64_t>(std::min<uint64_t>(
          monolith::hash_table::AvailableMemoryBytes() / 10 * 9,
          uint64_t{1} << 62));
      const int64_t alone =
          std::max(OursBytes(dim, num_ids), MapBytes(dim, num_ids)) + ids_bytes;
      if (alone > available) {
        char why[96];
        std::snprintf(why, sizeof(why),
                      "it needs ~%.1f GiB, %.1f GiB are available",
                      alone / double(1 << 30), available / double(1 << 30));
        std::fprintf(stderr, "skipping %lld ids at dim %lld: %s\n",
                     static_cast<long long>(num_ids),
                     static_cast<long long>(dim), why);
        char line[256];
        std::snprintf(line, sizeof(line),
                      "{\"bench\": \"hash_table\", \"dim\": %lld, "
                      "\"ids\": %lld, \"skipped\": \"%s\"}\n",
                      static_cast<long long>(dim),
                      static_cast<long long>(num_ids), why);
        skipped.push_back(line);
        continue;
      }
      const bool together = OursBytes(dim, num_ids) + MapBytes(dim, num_ids) +
                                ids_bytes <=
                            available;
      std::fprintf(stderr, "running %lld ids at dim %lld%s\n",
                   static_cast<long long>(num_ids),
                   static_cast<long long>(dim),
                   together ? "" : " (the map after our table: both at once "
                                   "would not fit)");
      const std::vector<Result> size_results =
          dim == 16
              ? monolith::hash_table::RunSize<16>(num_ids, rounds, together)
              : monolith::hash_table::RunSize<64>(num_ids, rounds, together);
      results.insert(results.end(), size_results.begin(), size_results.end());
    }
  }
  monolith::hash_table::PrintResults(results);
  for (const std::string& line : skipped) std::fputs(line.c_str(), stdout);
  return 0;
}
