#include "monolith/native_training/runtime/hash_filter/probabilistic_filter.h"

#include <cmath>
#include <cstdio>
#include <unordered_set>
#include <vector>

#include "gtest/gtest.h"

namespace monolith {
namespace hash_filter {
namespace {

constexpr int kDraws = 200000;

// |admitted| of kDraws is within 5 standard deviations of probability |p|
// (a false alarm about once in 3.5 million runs; the seeds are fixed anyway).
void ExpectRate(double p, int admitted, const char* what) {
  const double rate = static_cast<double>(admitted) / kDraws;
  const double sigma = std::sqrt(p * (1 - p) / kDraws);
  printf("%s: expected %.5f, measured %.5f\n", what, p, rate);
  EXPECT_NEAR(p, rate, 5 * sigma + 1e-12) << what;
}

TEST(ProbabilisticFilterTest, UnequalProbabilityRates) {
  ProbabilisticFilter filter(false, /*seed=*/1);
  const int64_t threshold = 7;
  for (int64_t count : {1, 2, 3, 6}) {
    int admitted = 0;
    for (int i = 0; i < kDraws; ++i) {
      admitted += filter.AdmitUnequalProbability(count, threshold);
    }
    const double p = static_cast<double>(count) / threshold;
    EXPECT_DOUBLE_EQ(
        p, ProbabilisticFilter::UnequalAdmissionProbability(count, threshold));
    ExpectRate(p, admitted, "unequal");
  }
  // count >= threshold always, count 0 never.
  for (int i = 0; i < 10000; ++i) {
    EXPECT_TRUE(filter.AdmitUnequalProbability(7, threshold));
    EXPECT_TRUE(filter.AdmitUnequalProbability(100, threshold));
    EXPECT_FALSE(filter.AdmitUnequalProbability(0, threshold));
  }
}

TEST(ProbabilisticFilterTest, EqualProbabilityRates) {
  ProbabilisticFilter filter(true, /*seed=*/2);
  const int64_t threshold = 7;
  const double p = 1 - std::pow(0.05, 1.0 / threshold);
  for (int64_t count : {1, 2, 7, 12}) {
    int admitted = 0;
    for (int i = 0; i < kDraws; ++i) {
      admitted += filter.AdmitEqualProbability(count, threshold);
    }
    const double expected = 1 - std::pow(1 - p, count);
    EXPECT_NEAR(
        expected,
        ProbabilisticFilter::EqualAdmissionProbability(count, threshold), 1e-6);
    ExpectRate(expected, admitted, "equal");
  }
  // After `threshold` occurrences an id is in with probability 0.95.
  EXPECT_NEAR(
      0.95,
      ProbabilisticFilter::EqualAdmissionProbability(threshold, threshold),
      1e-6);
}

TEST(ProbabilisticFilterTest, IdsInTheTableAreNeverFiltered) {
  for (bool equal : {false, true}) {
    ProbabilisticFilter filter(equal, /*seed=*/3);
    FunctionTableContains even_ids([](int64_t fid) { return fid % 2 == 0; });
    const int64_t threshold = 7;
    int admitted_odd = 0;
    for (int64_t fid = 0; fid < 2 * kDraws; ++fid) {
      const bool filtered =
          filter.ShouldBeFiltered(fid, 1, threshold, &even_ids);
      if (fid % 2 == 0) {
        ASSERT_FALSE(filtered) << fid;
      } else {
        admitted_odd += !filtered;
      }
    }
    ExpectRate(
        equal ? ProbabilisticFilter::EqualAdmissionProbability(1, 7) : 1.0 / 7,
        admitted_odd, equal ? "equal, not in table" : "unequal, not in table");
    // Without a table nothing is filtered (as the original).
    for (int64_t fid = 0; fid < 1000; ++fid) {
      EXPECT_FALSE(filter.ShouldBeFiltered(fid, 1, threshold, nullptr));
    }
  }
}

// Anything with `bool Contains(int64_t) const` adapts, e.g. the table engine.
struct FakeTable {
  std::unordered_set<int64_t> ids;
  bool Contains(int64_t id) const { return ids.count(id) > 0; }
};

TEST(ProbabilisticFilterTest, TableAdapter) {
  FakeTable table;
  table.ids = {5, 6};
  TableContainsAdapter<FakeTable> adapter(&table);
  ProbabilisticFilter filter(false, 4);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_FALSE(filter.ShouldBeFiltered(5, 1, 15, &adapter));
  }
  int filtered = 0;
  for (int i = 0; i < 1000; ++i) {
    filtered += filter.ShouldBeFiltered(7, 1, 15, &adapter);
  }
  EXPECT_GT(filtered, 800);  // admitted with probability 1/15
}

TEST(ProbabilisticFilterTest, DeterministicForASeed) {
  auto decisions = [](ProbabilisticFilter* filter) {
    FunctionTableContains empty([](int64_t) { return false; });
    std::vector<bool> out;
    for (int64_t fid = 0; fid < 2000; ++fid) {
      out.push_back(filter->ShouldBeFiltered(fid, 1 + fid % 3, 5, &empty));
    }
    return out;
  };
  for (bool equal : {false, true}) {
    ProbabilisticFilter a(equal, 42), b(equal, 42), c(equal, 43);
    const std::vector<bool> first = decisions(&a);
    EXPECT_EQ(first, decisions(&b));
    EXPECT_NE(first, decisions(&c));
    // A clone continues the same sequence.
    std::unique_ptr<Filter> clone = a.Clone();
    EXPECT_EQ(decisions(&a),
              decisions(static_cast<ProbabilisticFilter*>(clone.get())));
  }
  // Seed 0 works too.
  XorShift128Plus zero(0);
  EXPECT_NE(zero.Next64(), zero.Next64());
}

TEST(ProbabilisticFilterTest, CountsNothing) {
  ProbabilisticFilter filter(false, 5);
  EXPECT_EQ(Filter::kMaxCount, filter.Add(1, 1));
  EXPECT_EQ(Filter::kMaxCount, filter.Get(1));
  EXPECT_EQ(0, filter.split_num());
  EXPECT_EQ(0u, filter.capacity());
  EXPECT_EQ(0u, filter.MemoryBytes());
  EXPECT_FALSE(filter
                   .Save(
                       0,
                       [](const hash_table::HashFilterSplitMetaDump&) {
                         return Status::OK();
                       },
                       [](const hash_table::HashFilterSplitDataDump&) {
                         return Status::OK();
                       })
                   .ok());
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
