#include "monolith/native_training/runtime/hash_table/periodic_evictor.h"

#include <algorithm>
#include <cstdio>
#include <new>
#include <sstream>
#include <system_error>
#include <utility>

namespace monolith {
namespace hash_table {

std::string DescribeEviction(const std::string& table_name,
                             int64_t entries_before,
                             const EmbeddingHashTable::EvictStats& stats,
                             int64_t now, double seconds) {
  std::ostringstream out;
  out << "evicted " << stats.evicted << " of " << entries_before
      << " entries of table " << table_name;
  if (!stats.evicted_by_slot.empty()) {
    out << " (";
    bool first = true;
    for (const auto& [slot, count] : stats.evicted_by_slot) {
      out << (first ? "" : ", ") << "slot " << slot << ": " << count;
      first = false;
    }
    out << ")";
  }
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.3f", seconds);
  out << " at update time " << now << " in " << secs << " s";
  if (stats.stopped) {
    out << ", stopped part-way (the table was restored or is shutting down)";
  }
  return out.str();
}

std::string EvictExpired(const std::string& table_name,
                         EmbeddingHashTable* table, int64_t* evicted,
                         const std::atomic<bool>* stop) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t before = table->Size();
  int64_t now = 0;
  EmbeddingHashTable::EvictStats stats;
  *evicted = table->EvictAtLatestUpdateTime(&now, &stats, stop);
  const double seconds = std::chrono::duration<double>(
                             std::chrono::steady_clock::now() - start)
                             .count();
  return DescribeEviction(table_name, before, stats, now, seconds);
}

Status CheckEvictPeriodHours(int64_t hours) {
  if (hours > 0 && hours <= kMaxEvictPeriodHours) return Status::OK();
  return InvalidArgumentError(
      "feature_evict_every_n_hours must be > 0 (and at most " +
      std::to_string(kMaxEvictPeriodHours) +
      ") with enable_feature_eviction, got " + std::to_string(hours));
}

PeriodicEvictor::Target EvictTarget(std::string name,
                                    EmbeddingHashTable* table,
                                    std::chrono::milliseconds period) {
  std::string label = name;
  return {std::move(name), period,
          [label = std::move(label), table](const std::atomic<bool>& stopping) {
            int64_t evicted = 0;
            return EvictExpired(label, table, &evicted, &stopping);
          }};
}

PeriodicEvictor::PeriodicEvictor(std::vector<Target> targets,
                                 std::function<void(const std::string&)> log)
    : targets_(std::move(targets)), log_(std::move(log)) {
  thread_ = std::thread([this] { Run(); });
}

Status StartPeriodicEvictor(const std::string& owner,
                            std::vector<PeriodicEvictor::Target> targets,
                            std::function<void(const std::string&)> log,
                            std::unique_ptr<PeriodicEvictor>* evictor) {
  evictor->reset();
  if (targets.empty()) return Status::OK();
  constexpr std::chrono::hours kMaxPeriod(kMaxEvictPeriodHours);
  for (const PeriodicEvictor::Target& target : targets) {
    if (target.period.count() <= 0 || target.period > kMaxPeriod) {
      // Zero spun, evicting without a pause; more overflowed the clock.
      return InvalidArgumentError(
          owner + ": the eviction period of " + target.name + " is " +
          std::to_string(target.period.count()) + " ms; it must be > 0 and "
          "at most " + std::to_string(kMaxEvictPeriodHours) + " hours");
    }
    if (!target.evict) {
      return InvalidArgumentError(owner + ": " + target.name +
                                  " has no eviction callback");
    }
  }
  try {
    *evictor = std::make_unique<PeriodicEvictor>(std::move(targets),
                                                 std::move(log));
  } catch (const std::system_error& e) {
    return ResourceExhaustedError(owner + ": cannot start the eviction "
                                  "thread: " + e.what());
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError(owner + ": cannot start the eviction "
                                  "thread: out of memory");
  }
  return Status::OK();
}

PeriodicEvictor::~PeriodicEvictor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  thread_.join();
}

int64_t PeriodicEvictor::Rounds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rounds_;
}

void PeriodicEvictor::Run() {
  using Clock = std::chrono::steady_clock;
  std::vector<Clock::time_point> due;
  for (const Target& target : targets_) {
    due.push_back(Clock::now() + target.period);
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_.load() && !targets_.empty()) {
    const size_t next = static_cast<size_t>(
        std::min_element(due.begin(), due.end()) - due.begin());
    if (wake_.wait_until(lock, due[next], [this] { return stop_.load(); })) {
      break;
    }
    lock.unlock();
    bool out_of_memory = false;
    std::string report;
    // A callback's own failure, reported and tried again next round (an
    // exception leaving this thread would end the process); copied without
    // allocating, in the handler.
    bool failed = false;
    char failure[256] = "unknown exception";
    try {
      report = targets_[next].evict(stop_);
    } catch (const std::bad_alloc&) {
      // Shrinking a table allocates its smaller slot arrays; without the
      // memory the table stays as it was, and the next round tries again.
      out_of_memory = true;
    } catch (const std::exception& e) {
      failed = true;
      std::snprintf(failure, sizeof(failure), "%s",
                    *e.what() != '\0' ? e.what() : "exception with no message");
    } catch (...) {
      failed = true;
    }
    try {
      if (out_of_memory) {
        report = targets_[next].name + ": eviction stopped, out of memory";
      } else if (failed) {
        report = targets_[next].name + ": eviction failed: " + failure;
      }
      if (log_) log_(report);
    } catch (...) {
      // Without memory for the report, or a logger that throws: no report
      // (an exception here, on this thread, would end the process).
    }
    // The next one a whole period after this one ended: a slow eviction
    // never queues up rounds.
    due[next] = Clock::now() + targets_[next].period;
    lock.lock();
    ++rounds_;
  }
}

}  // namespace hash_table
}  // namespace monolith
