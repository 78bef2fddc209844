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
//   MONOLITH_FUZZ_ITERATIONS  iterations (default 1500)
#if !defined(__SANITIZE_ADDRESS__)
#if defined(__has_feature)
#if !__has_feature(address_sanitizer)
#error "restore_fuzz_test must be built with -fsanitize=address"
#endif
#else
#error "restore_fuzz_test must be built with -fsanitize=address"
#endif
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/test_util.h"

// ASan's options unless ASAN_OPTIONS overrides them. A single allocation
// over 1 GiB or a resident set over 2 GiB is a failure, not a slow test.
// Container-overflow checks are off: protobuf's RepeatedField<uint32>
// templates are instantiated (with ASan's container annotations) in this
// instrumented binary and also used by the uninstrumented protobuf runtime
// in libtensorflow_framework.so.2, which grows the same fields without the
// annotations, a known false positive of partially instrumented builds
// (it fires during the runtime's own static initialization).
extern "C" __attribute__((visibility("default"), used, no_sanitize_address))
const char*
__asan_default_options() {
  return "detect_leaks=1:"
         "detect_container_overflow=0:"
         "allocator_may_return_null=0:"
         "max_allocation_size_mb=1024:"
         "hard_rss_limit_mb=2048:"
         "print_summary=1";
}

namespace monolith {
namespace hash_filter {
namespace {

using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using test_util::RestoreSplit;
using test_util::SaveAll;
using test_util::SplitRecords;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::strtoull(value, nullptr, 10) : fallback;
}

struct Config {
  bool sliding = true;
  uint64_t capacity = 0;
  int split_num = 0;
  double fill_rate = 0;
};

std::unique_ptr<Filter> MakeFilter(const Config& config) {
  if (config.sliding) {
    std::unique_ptr<SlidingHashFilter> filter;
    Status s =
        SlidingHashFilter::Create(config.capacity, config.split_num, &filter);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return filter;
  }
  std::unique_ptr<HashFilter> filter;
  Status s = HashFilter::Create(config.capacity, config.fill_rate, &filter);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return filter;
}

bool StateEquals(const Filter& a, const Filter& b, bool sliding) {
  if (sliding) {
    return static_cast<const SlidingHashFilter&>(a) ==
           static_cast<const SlidingHashFilter&>(b);
  }
  return static_cast<const HashFilter&>(a) == static_cast<const HashFilter&>(b);
}

// The error's code and message with numbers blanked, to count kinds.
std::string OutcomeKey(const Status& s) {
  std::string key = s.ToString();
  for (char& c : key) {
    if (c >= '0' && c <= '9') c = '#';
  }
  return key.substr(0, 110);
}

Config RandomConfig(std::mt19937_64* rng) {
  Config config;
  config.sliding = (*rng)() % 4 != 0;
  if (config.sliding) {
    config.split_num = 2 + static_cast<int>((*rng)() % 7);
    config.capacity = 100 + (*rng)() % 3000;
  } else {
    config.capacity = 1 + (*rng)() % 3000;
    config.fill_rate = 1.0 + static_cast<double>((*rng)() % 100) / 50;
  }
  return config;
}

void Workload(Filter* filter, std::mt19937_64* rng, int ops) {
  const uint64_t universe = 1 + (*rng)() % 5000;
  for (int i = 0; i < ops; ++i) {
    filter->ShouldBeFiltered(static_cast<int64_t>((*rng)() % universe),
                             (*rng)() % 4, 1 + (*rng)() % 15, nullptr);
  }
}

uint64_t Extreme(std::mt19937_64* rng) {
  static const uint64_t kValues[] = {0,
                                     1,
                                     2,
                                     7,
                                     15,
                                     16,
                                     64,
                                     9999,
                                     10000,
                                     10001,
                                     0x7FFFFFFF,
                                     0x80000000,
                                     0xFFFFFFFF,
                                     0x100000000ULL,
                                     0x7FFFFFFFFFFFFFFFULL,
                                     0xFFFFFFFFFFFFFFFFULL};
  if ((*rng)() % 2) return kValues[(*rng)() % (sizeof(kValues) / 8)];
  return (*rng)() >> ((*rng)() % 64);
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
      auto* sliding = meta.mutable_sliding_hash_filter_meta();
      const uint64_t v = Extreme(rng);
      switch ((*rng)() % 12) {
        case 0:
          meta.set_total_size(v);
          break;
        case 1:
          meta.set_num_elements(v);
          break;
        case 2:
          meta.set_failure_count(v);
          break;
        case 3: {
          static const double kRates[] = {
              0,
              -1,
              1.2000001,
              1e308,
              std::numeric_limits<double>::infinity(),
              std::nan("")};
          meta.set_fill_rate(kRates[(*rng)() % 6]);
          break;
        }
        case 4:
          sliding->set_split_num(static_cast<uint32_t>(v));
          break;
        case 5:
          sliding->set_head(static_cast<uint32_t>(v));
          break;
        case 6:
          sliding->set_head_increment(static_cast<uint32_t>(v));
          break;
        case 7:
          sliding->set_max_backward_step(static_cast<uint32_t>(v));
          break;
        case 8:
          sliding->set_max_step(static_cast<uint32_t>(v));
          break;
        case 9:
          sliding->set_max_forward_step(static_cast<uint32_t>(v));
          break;
        case 10:
          meta.clear_sliding_hash_filter_meta();
          break;
        default:
          sliding->set_failure_count(v);
          break;
      }
      records[0] = meta.SerializeAsString();
      return "meta field changed";
    }
    default: {  // data record fields
      if (records.size() < 2) return "no data record";
      const size_t d = 1 + (*rng)() % (records.size() - 1);
      HashFilterSplitDataDump data;
      if (!data.ParseFromString(records[d])) return "data unparsable";
      switch ((*rng)() % 5) {
        case 0:
          data.set_offset(static_cast<uint32_t>(Extreme(rng)));
          break;
        case 1:
          if (data.data_size() > 0) {
            data.set_data((*rng)() % data.data_size(),
                          static_cast<uint32_t>(Extreme(rng)));
          }
          break;
        case 2: {
          const int n = 1 + (*rng)() % 20000;
          for (int i = 0; i < n; ++i) data.add_data((*rng)() & 0xFFFF);
          break;
        }
        case 3:
          data.mutable_data()->Truncate((*rng)() % (data.data_size() + 1));
          break;
        default:
          data.clear_offset();
          break;
      }
      records[d] = data.SerializeAsString();
      return "data field changed";
    }
  }
}

TEST(RestoreFuzzTest, CorruptedDumpsFailCleanly) {
  const uint64_t seed = EnvOr("MONOLITH_FUZZ_SEED", 1);
  const uint64_t iterations = EnvOr("MONOLITH_FUZZ_ITERATIONS", 1500);
  std::map<std::string, int> outcomes;
  for (uint64_t iteration = 0; iteration < iterations; ++iteration) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + iteration);
    const Config config = RandomConfig(&rng);
    std::unique_ptr<Filter> source = MakeFilter(config);
    Workload(source.get(), &rng, static_cast<int>(rng() % 6000));
    std::vector<SplitRecords> all;
    ASSERT_TRUE(SaveAll(*source, &all).ok());

    const Config foreign_config = RandomConfig(&rng);
    std::unique_ptr<Filter> foreign = MakeFilter(foreign_config);
    Workload(foreign.get(), &rng, 200);
    std::vector<SplitRecords> foreign_all;
    ASSERT_TRUE(SaveAll(*foreign, &foreign_all).ok());

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
        ASSERT_TRUE(StateEquals(*before, *target, target_config.sliding))
            << "iteration " << iteration << " (" << description
            << "): a failed Restore changed the filter: " << s.ToString();
      }
    }
    if (all_ok) ++outcomes["OK"];
    if (!mutate) {
      ASSERT_TRUE(all_ok) << "iteration " << iteration;
      ASSERT_TRUE(StateEquals(*source, *target, config.sliding))
          << "iteration " << iteration;
    }
    // Whatever was restored stays usable.
    Workload(target.get(), &rng, 300);
    for (int i = 0; i < 100; ++i) target->Get(rng());
    std::vector<SplitRecords> again;
    ASSERT_TRUE(SaveAll(*target, &again).ok());
  }
  for (const auto& outcome : outcomes) {
    printf("%6d  %s\n", outcome.second, outcome.first.c_str());
  }
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
