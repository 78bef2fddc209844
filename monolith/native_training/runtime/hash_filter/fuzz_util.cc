#include "monolith/native_training/runtime/hash_filter/fuzz_util.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_filter {
namespace fuzz_util {

using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::HashFilterSplitMetaDump;

std::unique_ptr<Filter> MakeFilter(const Config& config) {
  if (config.sliding) {
    std::unique_ptr<SlidingHashFilter> filter;
    const Status s =
        SlidingHashFilter::Create(config.capacity, config.split_num, &filter);
    EXPECT_OK(s);
    return filter;
  }
  std::unique_ptr<HashFilter> filter;
  const Status s =
      HashFilter::Create(config.capacity, config.fill_rate, &filter);
  EXPECT_OK(s);
  return filter;
}

bool StateEquals(const Filter& a, const Filter& b) {
  const auto* sa = dynamic_cast<const SlidingHashFilter*>(&a);
  const auto* sb = dynamic_cast<const SlidingHashFilter*>(&b);
  if (sa || sb) return sa && sb && *sa == *sb;
  const auto* ha = dynamic_cast<const HashFilter*>(&a);
  const auto* hb = dynamic_cast<const HashFilter*>(&b);
  return ha && hb && *ha == *hb;
}

Config RandomConfig(std::mt19937_64* rng, uint64_t max_hash_filter_capacity) {
  Config config;
  config.sliding = (*rng)() % 4 != 0;
  if (config.sliding) {
    config.split_num = 3 + static_cast<int>((*rng)() % 6);
    config.capacity = 100 + (*rng)() % 3000;
  } else {
    config.capacity = 1 + (*rng)() % max_hash_filter_capacity;
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

std::string MutateMetaFields(HashFilterSplitMetaDump* meta,
                             std::mt19937_64* rng) {
  auto* sliding = meta->mutable_sliding_hash_filter_meta();
  const uint64_t v = Extreme(rng);
  switch ((*rng)() % 12) {
    case 0:
      meta->set_total_size(v);
      return "meta total_size set";
    case 1:
      meta->set_num_elements(v);
      return "meta num_elements set";
    case 2:
      meta->set_failure_count(v);
      return "meta failure_count set";
    case 3: {
      static const double kRates[] = {
          0,
          -1,
          1.2000001,
          1e308,
          std::numeric_limits<double>::infinity(),
          std::nan("")};
      meta->set_fill_rate(kRates[(*rng)() % 6]);
      return "meta fill_rate set";
    }
    case 4:
      sliding->set_split_num(static_cast<uint32_t>(v));
      return "ring split_num set";
    case 5:
      sliding->set_head(static_cast<uint32_t>(v));
      return "ring head set";
    case 6:
      sliding->set_head_increment(static_cast<uint32_t>(v));
      return "ring head_increment set";
    case 7:
      sliding->set_max_backward_step(static_cast<uint32_t>(v));
      return "ring max_backward_step set";
    case 8:
      sliding->set_max_step(static_cast<uint32_t>(v));
      return "ring max_step set";
    case 9:
      sliding->set_max_forward_step(static_cast<uint32_t>(v));
      return "ring max_forward_step set";
    case 10:
      meta->clear_sliding_hash_filter_meta();
      return "ring meta cleared";
    default:
      sliding->set_failure_count(v);
      return "ring failure_count set";
  }
}

bool MutateDataRecord(std::vector<std::string>* records, std::mt19937_64* rng,
                      std::string* what) {
  if (records->size() < 2) {
    *what = "(no data record)";
    return false;
  }
  const size_t d = 1 + (*rng)() % (records->size() - 1);
  HashFilterSplitDataDump data;
  if (!data.ParseFromString((*records)[d])) {
    *what = "(data unparsable)";
    return false;
  }
  switch ((*rng)() % 5) {
    case 0:
      data.set_offset(static_cast<uint32_t>(Extreme(rng)));
      *what = "data offset set";
      break;
    case 1:
      if (data.data_size() > 0) {
        // The value drawn first, then the cell (the order GCC gave the
        // unsequenced arguments these replace).
        const uint32_t value = static_cast<uint32_t>(Extreme(rng));
        const int cell = static_cast<int>((*rng)() % data.data_size());
        data.set_data(cell, value);
      }
      *what = "data cell set";
      break;
    case 2: {
      const int n = 1 + (*rng)() % 20000;
      for (int i = 0; i < n; ++i) data.add_data((*rng)() & 0xFFFF);
      *what = "data cells added";
      break;
    }
    case 3:
      data.mutable_data()->Truncate((*rng)() % (data.data_size() + 1));
      *what = "data cells cut";
      break;
    default:
      data.clear_offset();
      *what = "data offset cleared";
      break;
  }
  (*records)[d] = data.SerializeAsString();
  *what += " (record " + std::to_string(d) + ")";
  return true;
}

}  // namespace fuzz_util
}  // namespace hash_filter
}  // namespace monolith
