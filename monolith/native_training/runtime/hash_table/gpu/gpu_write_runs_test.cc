#include "monolith/native_training/runtime/hash_table/gpu/gpu_write_runs.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

TEST(WritePartsTest, PartOfSkipsEmptyBatches) {
  WriteParts parts;
  parts.count = 4;
  // Batches of 3, 0, 2 and 1 ids.
  const int64_t first[] = {0, 3, 3, 5, 6};
  std::copy(std::begin(first), std::end(first), parts.first);
  const int want[] = {0, 0, 0, 2, 2, 3};
  for (int64_t position = 0; position < 6; ++position) {
    EXPECT_EQ(parts.PartOf(position), want[position]) << position;
  }
}

// Random writes of up to kWritesPerLaunch batches sharing ids: sorted as
// the GPU sorts them (stably by id, with concatenation positions), the
// heads and runs are exactly each (batch, id)'s occurrences, in order.
TEST(WriteRunsTest, RunsAreEachBatchsOccurrencesOfAnId) {
  std::mt19937_64 gen(7);
  for (int trial = 0; trial < 300; ++trial) {
    WriteParts parts;
    parts.count = 1 + static_cast<int>(gen() % kWritesPerLaunch);
    std::vector<int64_t> ids;
    std::vector<int> batch_of;  // by position, as generated
    // Few distinct ids (negative ones too), so ids repeat within and
    // across batches.
    const int distinct = 1 + static_cast<int>(gen() % 40);
    for (int p = 0; p < parts.count; ++p) {
      parts.first[p] = static_cast<int64_t>(ids.size());
      const int n = static_cast<int>(gen() % 50);
      for (int k = 0; k < n; ++k) {
        ids.push_back(static_cast<int64_t>(gen() % distinct) - distinct / 2);
        batch_of.push_back(p);
      }
    }
    parts.first[parts.count] = static_cast<int64_t>(ids.size());
    const int64_t n = static_cast<int64_t>(ids.size());

    std::vector<int32_t> positions(n);
    std::iota(positions.begin(), positions.end(), 0);
    std::stable_sort(positions.begin(), positions.end(),
                     [&](int32_t a, int32_t b) { return ids[a] < ids[b]; });
    std::vector<int64_t> sorted(n);
    for (int64_t i = 0; i < n; ++i) sorted[i] = ids[positions[i]];

    // What each (batch, id) should get: its positions in input order.
    std::map<std::pair<int, int64_t>, std::vector<int32_t>> want;
    for (int32_t position = 0; position < n; ++position) {
      want[{batch_of[position], ids[position]}].push_back(position);
    }
    std::map<std::pair<int, int64_t>, std::vector<int32_t>> got;
    int64_t covered = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (!IsRunHead(parts, sorted.data(), positions.data(), i)) continue;
      const int part = parts.PartOf(positions[i]);
      const int64_t end =
          RunEnd(parts, sorted.data(), positions.data(), n, i, part);
      ASSERT_EQ(got.count({part, sorted[i]}), 0u)
          << "trial " << trial << ": a second head for batch " << part
          << " id " << sorted[i];
      std::vector<int32_t>& run = got[{part, sorted[i]}];
      for (int64_t k = i; k < end; ++k) run.push_back(positions[k]);
      covered += end - i;
    }
    EXPECT_EQ(covered, n) << "trial " << trial;
    EXPECT_EQ(got, want) << "trial " << trial;
  }
}

}  // namespace
}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith
