// Fuzz test of hash filter Restore, built and run under AddressSanitizer.
//
// Every iteration builds a small SlidingHashFilter or HashFilter, runs a
// random workload, saves every split as serialized records (what the save
// op writes to a file) and applies a few random mutations: bytes flipped,
// records cut, extended, dropped, duplicated, swapped or taken from another
// split or another filter; meta fields (sizes, element counts, fill rate,
// split_num, head, steps) and data records (offsets, cells, lengths) set to
// random or extreme values. The records are then restored, split by split,
// into a fresh filter (usually of the same configuration). Every Restore
// must return OK or an error Status, an error must leave the filter
// unchanged, and a restored filter must stay usable (adds, gets, saves).
// An unmutated dump must restore to an equal filter.
//
// Environment, for longer runs on demand:
//   MONOLITH_FUZZ_SEED        seed (default 1)
//   MONOLITH_FUZZ_ITERATIONS, MONOLITH_FUZZ_SECONDS  how long (FuzzBudget;
//                             default 1500 iterations)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/fuzz_util.h"
#include "monolith/native_training/runtime/hash_filter/test_util.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/test_env.h"

namespace monolith {
namespace hash_filter {
namespace {

using ::monolith::hash_table::EnvInt;
using ::monolith::hash_table::FuzzBudget;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using fuzz_util::Config;
using fuzz_util::MakeFilter;
using fuzz_util::MutateDataRecord;
using fuzz_util::MutateMetaFields;
using fuzz_util::RandomConfig;
using fuzz_util::StateEquals;
using fuzz_util::Workload;
using test_util::RestoreSplit;
using test_util::SaveAll;
using test_util::SplitRecords;

// Plain HashFilters of capacity 1 to this.
constexpr uint64_t kMaxHashFilterCapacity = 3000;

// The error's code and message with numbers blanked, to count kinds.
std::string OutcomeKey(const Status& s) {
  std::string key = s.ToString();
  for (char& c : key) {
    if (c >= '0' && c <= '9') c = '#';
  }
  return key.substr(0, 110);
}

// One random mutation of |all| (one record list per split); |foreign| is
// another filter's dump. Returns a short description.
std::string Mutate(std::vector<SplitRecords>* all,
                   const std::vector<SplitRecords>& foreign,
                   std::mt19937_64* rng) {
  auto pick_split = [&]() -> SplitRecords& {
    return (*all)[(*rng)() % all->size()];
  };
  SplitRecords& records = pick_split();
  if (records.empty()) {
    records.push_back("");
    return "empty record added";
  }
  const size_t r = (*rng)() % records.size();
  std::string& bytes = records[r];
  switch ((*rng)() % 12) {
    case 0: {  // flip bytes
      const int flips = 1 + (*rng)() % 4;
      for (int i = 0; i < flips && !bytes.empty(); ++i) {
        bytes[(*rng)() % bytes.size()] ^= static_cast<char>(1 + (*rng)() % 255);
      }
      return "bytes flipped";
    }
    case 1:  // cut
      bytes.resize(bytes.empty() ? 0 : (*rng)() % bytes.size());
      return "record cut";
    case 2: {  // extend
      const int n = 1 + (*rng)() % 16;
      for (int i = 0; i < n; ++i) bytes.push_back(static_cast<char>((*rng)()));
      return "record extended";
    }
    case 3:
      records.erase(records.begin() + r);
      return "record dropped";
    case 4: {
      const std::string copy = records[r];
      records.insert(records.begin() + (*rng)() % (records.size() + 1), copy);
      return "record duplicated";
    }
    case 5: {
      const size_t other = (*rng)() % records.size();
      std::swap(records[r], records[other]);
      return "records swapped";
    }
    case 6: {  // from another split of this dump
      const SplitRecords& from = pick_split();
      if (!from.empty()) records[r] = from[(*rng)() % from.size()];
      return "record from another split";
    }
    case 7: {  // from another filter
      const SplitRecords& from = foreign[(*rng)() % foreign.size()];
      if (!from.empty()) records[r] = from[(*rng)() % from.size()];
      return "record from another filter";
    }
    case 8:
    case 9: {  // meta fields
      HashFilterSplitMetaDump meta;
      if (!meta.ParseFromString(records[0])) return "meta unparsable";
      const std::string what = MutateMetaFields(&meta, rng);
      records[0] = meta.SerializeAsString();
      return what;
    }
    default: {  // data record fields
      std::string what;
      MutateDataRecord(&records, rng, &what);
      return what;
    }
  }
}

TEST(RestoreFuzzTest, CorruptedDumpsFailCleanly) {
  const uint64_t seed = static_cast<uint64_t>(EnvInt("MONOLITH_FUZZ_SEED", 1));
  const FuzzBudget budget(1500);
  std::map<std::string, int> outcomes;
  // Both outcomes of mutated dumps are met (a mutation that keeps the dump
  // valid, e.g. a count changed within range; one that breaks it): a
  // RestoreSplit taking any bytes, or refusing every change, fails here.
  int mutated_accepted = 0, mutated_refused = 0;
  for (uint64_t iteration = 0;
       budget.Allows(static_cast<int64_t>(iteration)); ++iteration) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + iteration);
    const Config config = RandomConfig(&rng, kMaxHashFilterCapacity);
    std::unique_ptr<Filter> source = MakeFilter(config);
    Workload(source.get(), &rng, static_cast<int>(rng() % 6000));
    std::vector<SplitRecords> all;
    ASSERT_OK(SaveAll(*source, &all));

    const Config foreign_config = RandomConfig(&rng, kMaxHashFilterCapacity);
    std::unique_ptr<Filter> foreign = MakeFilter(foreign_config);
    Workload(foreign.get(), &rng, 200);
    std::vector<SplitRecords> foreign_all;
    ASSERT_OK(SaveAll(*foreign, &foreign_all));

    const bool mutate = rng() % 8 != 0;
    std::string description = "unmutated";
    if (mutate) {
      description.clear();
      const int mutations = 1 + rng() % 3;
      for (int m = 0; m < mutations; ++m) {
        description += Mutate(&all, foreign_all, &rng) + "; ";
      }
    }
    // Usually the same configuration; sometimes the foreign one.
    const bool same_config = !mutate || rng() % 8 != 0;
    const Config& target_config = same_config ? config : foreign_config;
    std::unique_ptr<Filter> target = MakeFilter(target_config);
    Workload(target.get(), &rng, 50);

    bool all_ok = true;
    const int splits =
        std::max<int>(target->split_num(), static_cast<int>(all.size()));
    for (int split = 0; split < splits; ++split) {
      const SplitRecords empty;
      const SplitRecords& records =
          split < static_cast<int>(all.size()) ? all[split] : empty;
      std::unique_ptr<Filter> before = target->Clone();
      Status s = RestoreSplit(target.get(), split, records);
      if (!s.ok()) {
        all_ok = false;
        ++outcomes[OutcomeKey(s)];
        ASSERT_TRUE(StateEquals(*before, *target))
            << "iteration " << iteration << " (" << description
            << "): a failed Restore changed the filter: " << s.ToString();
      }
    }
    if (all_ok) ++outcomes["OK"];
    if (mutate) ++(all_ok ? mutated_accepted : mutated_refused);
    if (!mutate) {
      ASSERT_TRUE(all_ok) << "iteration " << iteration;
      ASSERT_TRUE(StateEquals(*source, *target))
          << "iteration " << iteration;
    }
    // Whatever was restored stays usable.
    Workload(target.get(), &rng, 300);
    for (int i = 0; i < 100; ++i) target->Get(rng());
    std::vector<SplitRecords> again;
    ASSERT_OK(SaveAll(*target, &again));
  }
  for (const auto& outcome : outcomes) {
    printf("%6d  %s\n", outcome.second, outcome.first.c_str());
  }
  EXPECT_GT(mutated_refused, 0);
  EXPECT_GT(mutated_accepted, 0);
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
