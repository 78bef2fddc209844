// Evicts expired entries of tables in the background, each table on its
// own period (EmbeddingHashTableConfig's enable_feature_eviction and
// feature_evict_every_n_hours, as the original), with one thread for all
// of them. "Now" is the newest update time a table has seen
// (EmbeddingHashTable::LatestUpdateTime), so eviction follows the
// timestamps of the training data, not the wall clock (though never past
// it: ExpiryNow in update_time.h). A target is any
// eviction callback: CPU tables use EvictTarget, GPU tables their own.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_PERIODIC_EVICTOR_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_PERIODIC_EVICTOR_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

// One line of what a table's eviction removed, e.g.
// "evicted 1200 of 5000 entries of table user_id (slot 1: 1000, slot 7:
// 200) at update time 1700000000 in 0.012 s".
std::string DescribeEviction(const std::string& table_name,
                             int64_t entries_before,
                             const EmbeddingHashTable::EvictStats& stats,
                             int64_t now, double seconds);

// Evicts |table|'s entries expired at its newest update time (not past the
// host's clock: EvictAtLatestUpdateTime) and returns
// the DescribeEviction line of it (name: |table_name|); |evicted| gets the
// count.
// |stop| (may be null): as EvictAtLatestUpdateTime's.
std::string EvictExpired(const std::string& table_name,
                         EmbeddingHashTable* table, int64_t* evicted,
                         const std::atomic<bool>* stop = nullptr);

class PeriodicEvictor {
 public:
  struct Target {
    std::string name;
    std::chrono::milliseconds period;
    // Evicts the table's expired entries (on the evictor's thread) and
    // returns the line to log, e.g. DescribeEviction's. |stopping| turns
    // true when the evictor is being destroyed: a long eviction should
    // end soon after (the destructor waits for it).
    std::function<std::string(const std::atomic<bool>& stopping)> evict;
  };

  // Starts the thread; the first eviction of each target is one period
  // after construction. |log| (may be empty) gets each eviction's line, on
  // the evictor's thread; an exception an |evict| callback throws is
  // logged, not thrown. Use StartPeriodicEvictor, which checks the
  // targets: each needs a period in (0, kMaxEvictPeriodHours hours] and a
  // callback.
  PeriodicEvictor(std::vector<Target> targets,
                  std::function<void(const std::string&)> log);
  // Stops the thread: waits for an eviction in progress to see |stopping|
  // (a CPU table's, EvictTarget, at its next shard), never for a period.
  ~PeriodicEvictor();
  PeriodicEvictor(const PeriodicEvictor&) = delete;
  PeriodicEvictor& operator=(const PeriodicEvictor&) = delete;

  // How many evictions (of any target) have run.
  int64_t Rounds() const;

 private:
  void Run();

  const std::vector<Target> targets_;
  const std::function<void(const std::string&)> log_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  // Set under mu_ (so a waiting Run wakes to it); the callbacks read it
  // without.
  std::atomic<bool> stop_{false};
  int64_t rounds_ = 0;
  std::thread thread_;
};

// A PeriodicEvictor of |targets| in *evictor (none for no targets);
// InvalidArgument naming |owner| and the target for a period outside
// (0, kMaxEvictPeriodHours hours] or an empty callback; ResourceExhausted
// where its thread cannot be started (a process at its thread or memory
// limit), rather than an exception.
Status StartPeriodicEvictor(const std::string& owner,
                            std::vector<PeriodicEvictor::Target> targets,
                            std::function<void(const std::string&)> log,
                            std::unique_ptr<PeriodicEvictor>* evictor);

// InvalidArgument unless |hours| (a config's feature_evict_every_n_hours
// with enable_feature_eviction) is in 1 .. kMaxEvictPeriodHours: longer
// periods would overflow the evictor's clock.
constexpr int64_t kMaxEvictPeriodHours = 1000000;
Status CheckEvictPeriodHours(int64_t hours);

// The PeriodicEvictor target of a CPU table: EvictExpired every |period|.
// |table| is not owned and must outlive the evictor.
PeriodicEvictor::Target EvictTarget(std::string name,
                                    EmbeddingHashTable* table,
                                    std::chrono::milliseconds period);

// |target|, each of whose evictions holds |*mu| shared: a table's restore
// lock, which restores hold exclusively while they empty the tables and
// fill them again, so that no eviction runs at a partly restored table's
// "now" or between its shards (as the evict op, which holds it too).
// SharedMutex: anything with lock_shared() and unlock_shared() (TF's
// mutex, std::shared_mutex); |mu| must outlive the evictor.
template <typename SharedMutex>
PeriodicEvictor::Target SharingWhileEvicting(PeriodicEvictor::Target target,
                                             SharedMutex* mu) {
  target.evict = [mu, evict = std::move(target.evict)](
                     const std::atomic<bool>& stopping) {
    std::shared_lock<SharedMutex> hold(*mu);
    return evict(stopping);
  };
  return target;
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_PERIODIC_EVICTOR_H_
