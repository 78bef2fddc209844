#include "monolith/native_training/runtime/hash_table/periodic_evictor.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace {

using Evict = std::function<std::string(const std::atomic<bool>& stopping)>;

// Built with setters: under ThreadSanitizer, a third table from a config
// parsed by TextFormat (TF's uninstrumented protobuf) read memory TSan had
// seen freed by an earlier table's arena (heap-use-after-free reported in
// CheckSlotExpireTimeConfig; none with setters).
std::unique_ptr<EmbeddingHashTable> MakeTable() {
  EmbeddingHashTableConfig config;
  auto* segment = config.mutable_entry_config()->add_segments();
  segment->set_dim_size(1);
  segment->mutable_init_config()->mutable_zeros();
  segment->mutable_opt_config()->mutable_sgd();
  auto* expire = config.mutable_slot_expire_time_config();
  expire->set_default_expire_time(100);
  auto* slot = expire->add_slot_expire_times();
  slot->set_slot(5);
  slot->set_expire_time(1);
  std::unique_ptr<EmbeddingHashTable> table;
  EXPECT_OK(EmbeddingHashTable::Create(config, 1, &table));
  return table;
}

// Runs an evictor of |targets| until it has done |rounds| rounds (or 30 s
// passed); the lines it logged.
std::vector<std::string> LinesOfRounds(
    std::vector<PeriodicEvictor::Target> targets, int64_t rounds) {
  std::mutex mu;
  std::vector<std::string> lines;
  {
    std::unique_ptr<PeriodicEvictor> evictor;
    const Status s = StartPeriodicEvictor(
        "test", std::move(targets),
        [&](const std::string& line) {
          std::lock_guard<std::mutex> lock(mu);
          lines.push_back(line);
        },
        &evictor);
    EXPECT_OK(s);
    if (evictor == nullptr) return {};
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (evictor->Rounds() < rounds &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_GE(evictor->Rounds(), rounds);
  }
  std::lock_guard<std::mutex> lock(mu);
  return lines;
}

TEST(PeriodicEvictorTest, EvictsEachTableOnItsPeriodAndLogs) {
  auto table = MakeTable();
  const int64_t day = kSecondsPerDay;
  const int64_t old_id = int64_t{5} << 48 | 1;
  const int64_t kept_id = int64_t{6} << 48 | 1;
  const float v = 1;
  table->Assign(&old_id, 1, &v, day);
  table->Assign(&kept_id, 1, &v, day);
  // The newest update time the table has seen decides what expired.
  const int64_t newest = int64_t{7} << 48;
  table->Assign(&newest, 1, &v, 3 * day);
  const std::vector<std::string> lines = LinesOfRounds(
      {EvictTarget("user_id", table.get(), std::chrono::milliseconds(20))},
      2);
  EXPECT_FALSE(table->Contains(old_id));
  EXPECT_TRUE(table->Contains(kept_id));
  EXPECT_TRUE(table->Contains(newest));
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[0].rfind("evicted 1 of 3 entries of table user_id (slot 5: "
                           "1) at update time " +
                               std::to_string(3 * day) + " in ",
                           0),
            0u)
      << lines[0];
  EXPECT_EQ(lines[1].rfind("evicted 0 of 2 entries of table user_id at ", 0),
            0u)
      << lines[1];
}

// Destruction does not wait out the period (240 hours: the test's timeout
// would end it), and runs no round.
TEST(PeriodicEvictorTest, StopsAtOnceWhenDestroyed) {
  auto table = MakeTable();
  int lines = 0;
  {
    PeriodicEvictor evictor(
        {EvictTarget("t", table.get(), std::chrono::hours(240))},
        [&lines](const std::string&) { ++lines; });
    EXPECT_EQ(evictor.Rounds(), 0);
  }
  EXPECT_EQ(lines, 0);
}

// Destruction tells an eviction in progress to stop, and waits for it:
// tables of a billion entries take minutes a pass, and the owner of one
// being destroyed (a session closing, a process exiting) waited all of it.
TEST(PeriodicEvictorTest, DestructionStopsAnEvictionInProgress) {
  std::atomic<bool> started{false}, saw_stop{false};
  auto evictor = std::make_unique<PeriodicEvictor>(
      std::vector<PeriodicEvictor::Target>{
          {"t", std::chrono::milliseconds(1),
           [&](const std::atomic<bool>& stopping) {
             started = true;
             const auto deadline =
                 std::chrono::steady_clock::now() + std::chrono::seconds(30);
             while (!stopping.load() &&
                    std::chrono::steady_clock::now() < deadline) {
               std::this_thread::sleep_for(std::chrono::milliseconds(1));
             }
             saw_stop = stopping.load();
             return std::string("stopped");
           }}},
      nullptr);
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  evictor.reset();
  EXPECT_TRUE(saw_stop);
}

// A CPU table's eviction sees the flag before each of its shards, and its
// line says it stopped part-way.
TEST(PeriodicEvictorTest, EvictExpiredStopsBeforeTheNextShard) {
  auto table = MakeTable();
  const int64_t day = kSecondsPerDay;
  const float v = 1;
  std::vector<int64_t> old_ids;
  for (int64_t i = 0; i < 1000; ++i) old_ids.push_back(int64_t{5} << 48 | i);
  const std::vector<float> values(old_ids.size(), v);
  table->Assign(old_ids.data(), old_ids.size(), values.data(), day);
  const int64_t newest = int64_t{7} << 48;
  table->Assign(&newest, 1, &v, 3 * day);
  std::atomic<bool> stop{true};
  int64_t evicted = -1;
  std::string line = EvictExpired("t", table.get(), &evicted, &stop);
  EXPECT_EQ(evicted, 0);
  EXPECT_EQ(table->Size(), 1001);
  EXPECT_NE(line.find("evicted 0 of 1001 entries of table t at update time"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find(", stopped part-way (the table was restored or is "
                      "shutting down)"),
            std::string::npos)
      << line;
  stop = false;
  line = EvictExpired("t", table.get(), &evicted, &stop);
  EXPECT_EQ(evicted, 1000);
  EXPECT_EQ(table->Size(), 1);
  EXPECT_EQ(line.find("stopped"), std::string::npos) << line;
}

// Any callback is a target (GPU tables bring their own), each on its own
// period.
TEST(PeriodicEvictorTest, RunsEachCallbackOnItsPeriod) {
  std::atomic<int> fast{0}, slow{0};
  const std::vector<std::string> lines = LinesOfRounds(
      {{"slow", std::chrono::hours(240),
        [&](const std::atomic<bool>&) {
          return "slow " + std::to_string(++slow);
        }},
       {"fast", std::chrono::milliseconds(10),
        [&](const std::atomic<bool>&) {
          return "fast " + std::to_string(++fast);
        }}},
      3);
  EXPECT_GE(fast.load(), 3);
  EXPECT_EQ(slow.load(), 0);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines[0], "fast 1");
  EXPECT_EQ(lines[2], "fast 3");
}

// A target SharingWhileEvicting a mutex evicts only while no one holds the
// mutex exclusively (a restore), and holds it shared meanwhile.
TEST(PeriodicEvictorTest, SharingWhileEvictingWaitsForAnExclusiveHolder) {
  std::shared_mutex restore_mu;
  std::atomic<int> calls{0};
  std::atomic<bool> shared_held{true};
  std::unique_lock<std::shared_mutex> restoring(restore_mu);
  std::unique_ptr<PeriodicEvictor> evictor;
  ASSERT_OK(StartPeriodicEvictor(
      "test",
      {SharingWhileEvicting(
          PeriodicEvictor::Target{"t", std::chrono::milliseconds(1),
                                  [&](const std::atomic<bool>&) {
                                    // Another thread's exclusive try fails
                                    // while this eviction shares it.
                                    std::thread([&] {
                                      if (restore_mu.try_lock()) {
                                        shared_held = false;
                                        restore_mu.unlock();
                                      }
                                    }).join();
                                    ++calls;
                                    return std::string("evicted");
                                  }},
          &restore_mu)},
      {}, &evictor));
  // Many periods pass while the "restore" holds the mutex.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(calls.load(), 0);
  restoring.unlock();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (calls.load() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_GE(calls.load(), 3);
  EXPECT_TRUE(shared_held.load());
  // And once it is taken again, evictions stop until it is let go.
  restoring.lock();
  const int before = calls.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(calls.load(), before);
  restoring.unlock();
  evictor.reset();
}

// An eviction that runs out of memory (a table shrinking its slot arrays)
// is logged and tried again next period; the thread goes on.
TEST(PeriodicEvictorTest, AnEvictionOutOfMemoryIsLoggedAndRetried) {
  std::atomic<int> calls{0};
  const std::vector<std::string> lines = LinesOfRounds(
      {{"t", std::chrono::milliseconds(5),
        [&](const std::atomic<bool>&) -> std::string {
          if (++calls == 1) throw std::bad_alloc();
          return "evicted";
        }}},
      2);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[0], "t: eviction stopped, out of memory");
  EXPECT_EQ(lines[1], "evicted");
}

// A callback's other exceptions are logged and tried again too: thrown on
// the evictor's thread, they ended the process.
TEST(PeriodicEvictorTest, AnEvictionThatThrowsIsLoggedAndRetried) {
  std::atomic<int> calls{0};
  const std::vector<std::string> lines = LinesOfRounds(
      {{"t", std::chrono::milliseconds(5),
        [&](const std::atomic<bool>&) -> std::string {
          if (++calls == 1) throw std::runtime_error("disk gone");
          if (calls == 2) throw 7;
          return "evicted";
        }}},
      3);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines[0], "t: eviction failed: disk gone");
  EXPECT_EQ(lines[1], "t: eviction failed: unknown exception");
  EXPECT_EQ(lines[2], "evicted");
}

TEST(PeriodicEvictorTest, RunsWithoutALogger) {
  std::atomic<int> calls{0};
  std::unique_ptr<PeriodicEvictor> evictor;
  ASSERT_OK(StartPeriodicEvictor(
      "t",
      {{"t", std::chrono::milliseconds(5),
        [&](const std::atomic<bool>&) { return std::to_string(++calls); }}},
      nullptr, &evictor));
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (evictor->Rounds() < 2 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GE(calls.load(), 2);
}

TEST(PeriodicEvictorTest, StartRefusesBadTargets) {
  const auto evict = [](const std::atomic<bool>&) { return std::string(); };
  for (const auto& [period, callback, expected] :
       std::vector<std::tuple<std::chrono::milliseconds, Evict,
                              std::string>>{
           {std::chrono::milliseconds(0), evict,
            "the eviction period of t is 0 ms; it must be > 0"},
           {std::chrono::milliseconds(-5), evict,
            "the eviction period of t is -5 ms"},
           {std::chrono::hours(kMaxEvictPeriodHours + 1), evict,
            "at most 1000000 hours"},
           {std::chrono::milliseconds(5), nullptr,
            "t has no eviction callback"}}) {
    std::unique_ptr<PeriodicEvictor> evictor;
    const Status s = StartPeriodicEvictor(
        "owner", {{"t", period, callback}}, nullptr, &evictor);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_EQ(s.message().rfind("owner: ", 0), 0u) << s.message();
    EXPECT_NE(s.message().find(expected), std::string::npos) << s.message();
    EXPECT_EQ(evictor, nullptr);
  }
}

TEST(PeriodicEvictorTest, EvictPeriodsAreCheckedInHours) {
  EXPECT_OK(CheckEvictPeriodHours(1));
  EXPECT_OK(CheckEvictPeriodHours(kMaxEvictPeriodHours));
  for (int64_t hours : {int64_t{0}, int64_t{-1}, kMaxEvictPeriodHours + 1,
                        int64_t{2147483647}}) {
    const Status s = CheckEvictPeriodHours(hours);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << hours;
    EXPECT_NE(s.message().find("feature_evict_every_n_hours must be > 0"),
              std::string::npos)
        << s.message();
  }
}

TEST(PeriodicEvictorTest, NoTargetsIsFine) {
  PeriodicEvictor evictor({}, [](const std::string&) {});
  EXPECT_EQ(evictor.Rounds(), 0);
  // No thread for no targets.
  std::unique_ptr<PeriodicEvictor> started;
  ASSERT_OK(StartPeriodicEvictor("t", {}, nullptr, &started));
  EXPECT_EQ(started, nullptr);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
