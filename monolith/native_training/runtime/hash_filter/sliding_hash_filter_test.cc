#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/test_util.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_filter {
namespace {

using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using ::monolith::hash_table::StatusCode;
using test_util::CollisionFreeFids;
using test_util::FidWithHomeAndSignature;
using test_util::RestoreAll;
using test_util::RestoreSplit;
using test_util::SaveAll;
using test_util::SaveSplit;
using test_util::SplitRecords;

constexpr uint32_t kMax = Filter::kMaxCount;

std::unique_ptr<SlidingHashFilter> MakeFilter(uint64_t capacity,
                                              int split_num) {
  std::unique_ptr<SlidingHashFilter> filter;
  Status s = SlidingHashFilter::Create(capacity, split_num, &filter);
  EXPECT_OK(s);
  return filter;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The reference: the sliding ring with an exact map fid -> count per split,
// for ids that never collide (then every id's cell in every split is its
// home cell, so the forward look always stops at head). Written from the
// description in sliding_hash_filter.h.
class ReferenceRing {
 public:
  ReferenceRing(int split_num, uint64_t split_capacity)
      : splits_(split_num),
        elements_(split_num, 0),
        split_capacity_(split_capacity) {}

  uint32_t Add(FID fid, uint32_t count) {
    count = std::min(count, kMax);
    auto& head = splits_[head_];
    auto it = head.find(fid);
    if (it != head.end()) {
      const uint32_t old = it->second;
      it->second = std::min(old + count, kMax);
      return old;
    }
    const uint32_t old = FindOld(fid);
    head[fid] = std::min(old + count, kMax);
    elements_[head_] = std::min(elements_[head_] + 1, split_capacity_);
    if (elements_[head_] + 1 >= split_capacity_) {
      head_ = (head_ + 1) % n();
      ++head_increment_;
      const int oldest = (head_ + 1) % n();
      splits_[oldest].clear();
      elements_[oldest] = 0;
    }
    return old;
  }

  uint32_t Get(FID fid) const {
    auto it = splits_[head_].find(fid);
    return it != splits_[head_].end() ? it->second : FindOld(fid);
  }

  bool ShouldBeFiltered(FID fid, int64_t count, int64_t threshold) {
    if (threshold <= 0) return false;
    const uint32_t c = static_cast<uint32_t>(
        std::min<int64_t>(std::max<int64_t>(count, 0), kMax));
    return Add(fid, c) < threshold;
  }

  int head() const { return head_; }
  uint64_t head_increment() const { return head_increment_; }
  uint64_t elements(int split) const { return elements_[split]; }

 private:
  int n() const { return static_cast<int>(splits_.size()); }

  // The newest of the last min(head_increment, n - 2) splits before head
  // that has the id.
  uint32_t FindOld(FID fid) const {
    const uint64_t steps =
        std::min<uint64_t>(head_increment_, static_cast<uint64_t>(n() - 2));
    int split = head_;
    for (uint64_t i = 0; i < steps; ++i) {
      split = (split + n() - 1) % n();
      auto it = splits_[split].find(fid);
      if (it != splits_[split].end()) return it->second;
    }
    return 0;
  }

  std::vector<std::unordered_map<FID, uint32_t>> splits_;
  std::vector<uint64_t> elements_;
  uint64_t split_capacity_;
  int head_ = 0;
  uint64_t head_increment_ = 0;
};

TEST(SlidingHashFilterTest, CountsSaturateAtFifteen) {
  for (uint64_t capacity : {1, 3, 100, 100000}) {
    auto filter = MakeFilter(capacity, 10);
    for (uint32_t i = 0; i <= kMax; ++i) {
      EXPECT_EQ(i, filter->Add(1, 1));
    }
    EXPECT_EQ(kMax, filter->Add(1, 1));
    EXPECT_EQ(kMax, filter->Get(1));
  }
}

TEST(SlidingHashFilterTest, SizesAndClamps) {
  auto filter = MakeFilter(100, 5);  // below 300: 300, as the original
  EXPECT_EQ(300u, filter->capacity());
  EXPECT_EQ(5, filter->split_num());
  EXPECT_EQ(75u, filter->split_capacity());  // 300 / (5 - 1)
  EXPECT_EQ(90u, filter->split(0).total_size());
  EXPECT_EQ(3, filter->max_backward_step());
  filter = MakeFilter(3000000, 7);
  EXPECT_EQ(500000u, filter->split_capacity());
  EXPECT_EQ(600000u, filter->split(6).total_size());
  EXPECT_EQ(0u, filter->estimated_total_element());
}

TEST(SlidingHashFilterTest, CreateRejectsBadConfigs) {
  std::unique_ptr<SlidingHashFilter> filter;
  for (int split_num : {-3, 0, 1, 2, 65537}) {
    Status s = SlidingHashFilter::Create(1000, split_num, &filter);
    EXPECT_EQ(StatusCode::kInvalidArgument, s.code()) << split_num;
    EXPECT_TRUE(Contains(s.message(), "split_num " + std::to_string(split_num)))
        << s.message();
  }
  // 300 ids cannot be spread over 400 splits.
  Status s = SlidingHashFilter::Create(300, 400, &filter);
  EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
  EXPECT_TRUE(Contains(s.message(), "too small")) << s.message();
  // Splits too large for a dump's offsets (and capacities near 2^64).
  for (uint64_t capacity : {uint64_t{1} << 36, ~uint64_t{0}}) {
    s = SlidingHashFilter::Create(capacity, 7, &filter);
    EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
    EXPECT_TRUE(Contains(s.message(), std::to_string(capacity))) << s.message();
  }
  EXPECT_FALSE(filter);
  EXPECT_OK(SlidingHashFilter::Create(1000, 3, &filter));
  EXPECT_OK(SlidingHashFilter::Create(300, 301, &filter));
}

TEST(SlidingHashFilterTest, SkipsZeroThresholdIds) {
  auto filter = MakeFilter(1000000, 10);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_FALSE(filter->ShouldBeFiltered(i, 1, 0, nullptr));
    EXPECT_TRUE(filter->ShouldBeFiltered(i * 2 + 1000, 1, 1, nullptr));
  }
  EXPECT_EQ(5u, filter->estimated_total_element());
}

// Random adds, gets and decisions with many split turnovers, against the
// reference ring, for several split counts.
TEST(SlidingHashFilterTest, MatchesReferenceRingAcrossTurnover) {
  for (int split_num : {3, 4, 5, 7}) {
    SCOPED_TRACE("split_num " + std::to_string(split_num));
    const uint64_t split_capacity = 500;
    auto filter = MakeFilter(split_capacity * (split_num - 1), split_num);
    ASSERT_EQ(split_capacity, filter->split_capacity());
    ReferenceRing reference(split_num, split_capacity);
    const std::vector<FID> fids =
        CollisionFreeFids(filter->split(0).total_size(), 580, split_num);
    std::mt19937_64 rng(100 + split_num);
    for (int op = 0; op < 60000; ++op) {
      const size_t i = (rng() % 3 == 0) ? rng() % 30 : rng() % fids.size();
      const FID fid = fids[i];
      switch (rng() % 4) {
        case 0: {
          const uint32_t count = rng() % 8 == 0 ? rng() % 40 : rng() % 3;
          ASSERT_EQ(reference.Add(fid, count), filter->Add(fid, count))
              << "op " << op;
          break;
        }
        case 1:
          ASSERT_EQ(reference.Get(fid), filter->Get(fid)) << "op " << op;
          break;
        default: {
          const int64_t count = static_cast<int64_t>(rng() % 4);
          const int64_t threshold = rng() % 16;
          ASSERT_EQ(reference.ShouldBeFiltered(fid, count, threshold),
                    filter->ShouldBeFiltered(static_cast<int64_t>(fid), count,
                                             threshold, nullptr))
              << "op " << op;
        }
      }
      ASSERT_EQ(reference.head(), filter->head()) << "op " << op;
      ASSERT_EQ(reference.head_increment(), filter->head_increment());
    }
    for (int s = 0; s < split_num; ++s) {
      EXPECT_EQ(reference.elements(s),
                filter->split(s).estimated_total_element());
    }
    for (FID fid : fids) EXPECT_EQ(reference.Get(fid), filter->Get(fid));
    EXPECT_EQ(0u, filter->failure_count());
    // Enough turnover to wrap the ring several times.
    EXPECT_GT(filter->head_increment(), 3u * split_num);  // ring wrapped
  }
}

// Adds each of |fids| once (new in the head split).
void FillHead(SlidingHashFilter* filter, const std::vector<FID>& fids) {
  for (FID fid : fids) filter->Add(fid, 1);
}

TEST(SlidingHashFilterTest, CarriesCountsForwardAndForgetsOldSplits) {
  const int n = 5;
  auto filter = MakeFilter(2000, n);  // 500 ids per split
  ASSERT_EQ(500u, filter->split_capacity());
  const std::vector<FID> fids =
      CollisionFreeFids(filter->split(0).total_size(), 500, 77);
  const FID a = fids[0];
  const std::vector<FID> others(fids.begin() + 1, fids.begin() + 499);

  EXPECT_EQ(0u, filter->Add(a, 3));
  FillHead(filter.get(), others);  // a + 498 others: 499 = capacity - 1
  EXPECT_EQ(1, filter->head());
  EXPECT_EQ(1u, filter->head_increment());
  EXPECT_EQ(0u, filter->split(2).estimated_total_element());  // cleared
  EXPECT_EQ(499u, filter->split(0).estimated_total_element());

  // a is new in split 1: its count comes forward from split 0.
  EXPECT_EQ(3u, filter->Get(a));
  EXPECT_EQ(3u, filter->Add(a, 1));
  EXPECT_EQ(4u, filter->Get(a));
  EXPECT_EQ(1u, filter->split(1).estimated_total_element());
  EXPECT_EQ(4u, filter->Add(a, 0));  // now counted in split 1

  // Three more turnovers without a: still found going back (<= 3 splits).
  for (int turn = 2; turn <= 4; ++turn) {
    FillHead(filter.get(), others);  // 498 + a's cell in split 1 only
    if (turn == 2) {
      // Split 1 held a already: 499 elements after the 498 others.
      EXPECT_EQ(2, filter->head());
    } else {
      // Others alone are 498 < 499: one more id fills the split.
      filter->Add(fids[499], 1);
      EXPECT_EQ(turn, filter->head());
    }
    EXPECT_EQ(static_cast<uint64_t>(turn), filter->head_increment());
    EXPECT_EQ(0u, filter->split((turn + 1) % n).estimated_total_element());
    EXPECT_EQ(4u, filter->Get(a)) << "turn " << turn;
  }
  // The next turnover clears split 0 (already without a) and the one after
  // clears split 1, a's last cell: a is forgotten.
  FillHead(filter.get(), others);
  filter->Add(fids[499], 1);
  EXPECT_EQ(0, filter->head());
  EXPECT_EQ(0u, filter->split(1).estimated_total_element());
  EXPECT_EQ(0u, filter->Get(a));
  EXPECT_EQ(0u, filter->Add(a, 1));
  EXPECT_EQ(1u, filter->Get(a));
}

TEST(SlidingHashFilterTest, ClearIsANewFilter) {
  auto filter = MakeFilter(2000, 5);  // 500 ids per split
  const std::vector<FID> fids =
      CollisionFreeFids(filter->split(0).total_size(), 500, 78);
  const std::vector<FID> others(fids.begin() + 1, fids.begin() + 499);
  filter->Add(fids[0], 3);
  FillHead(filter.get(), others);  // the ring moved on
  ASSERT_EQ(1, filter->head());
  ASSERT_EQ(3u, filter->Get(fids[0]));
  filter->Clear();
  EXPECT_TRUE(*filter == *MakeFilter(2000, 5));
  EXPECT_EQ(0u, filter->Get(fids[0]));
  EXPECT_EQ(0u, filter->Add(fids[0], 1));
}

TEST(SlidingHashFilterTest, LooksForwardIntoTheNextSplitThenFails) {
  auto filter = MakeFilter(2000, 5);
  const uint64_t total = filter->split(0).total_size();
  std::mt19937_64 rng(3);
  const uint64_t home = 100;
  std::vector<FID> fids;
  for (int i = 0; i < 2 * SlidingHashFilter::kMaxProbeSteps + 1; ++i) {
    fids.push_back(FidWithHomeAndSignature(total, home,
                                           static_cast<uint16_t>(i + 1), &rng));
  }
  // 16 ids fill head's probe window (16 cells, not the 64 of a standalone
  // HashFilter).
  for (int i = 0; i < SlidingHashFilter::kMaxProbeSteps; ++i) {
    EXPECT_EQ(0u, filter->Add(fids[i], 2));
  }
  EXPECT_EQ(16u, filter->split(0).estimated_total_element());
  // The next 16 go to the split after head.
  for (int i = SlidingHashFilter::kMaxProbeSteps;
       i < 2 * SlidingHashFilter::kMaxProbeSteps; ++i) {
    EXPECT_EQ(0u, filter->Add(fids[i], 2));
    EXPECT_EQ(2u, filter->Add(fids[i], 1));
    EXPECT_EQ(3u, filter->Get(fids[i]));
  }
  EXPECT_EQ(16u, filter->split(1).estimated_total_element());
  EXPECT_EQ(0u, filter->failure_count());
  // Both windows full: a failure, and the id is admitted.
  const FID last = fids.back();
  EXPECT_EQ(kMax, filter->Get(last));
  EXPECT_EQ(kMax, filter->Add(last, 1));
  EXPECT_EQ(1u, filter->failure_count());
  EXPECT_FALSE(
      filter->ShouldBeFiltered(static_cast<int64_t>(last), 1, 5, nullptr));
  EXPECT_EQ(2u, filter->failure_count());
}

// A fixed workload's cells, head and counts, hashed: pins the position hash,
// the signature and the ring's decisions (a dump of this version restores
// into any later one).
TEST(SlidingHashFilterTest, GoldenState) {
  auto filter = MakeFilter(3000, 4);
  std::mt19937_64 rng(2024);
  uint64_t returned = 0;
  for (int i = 0; i < 20000; ++i) {
    returned = returned * 31 + filter->Add(rng() % 5000, 1 + rng() % 2);
  }
  uint64_t h = 14695981039346656037ULL;  // FNV-1a
  auto mix = [&h](uint64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= (v >> (8 * b)) & 0xFF;
      h *= 1099511628211ULL;
    }
  };
  for (int s = 0; s < filter->split_num(); ++s) {
    for (uint16_t cell : filter->split(s).cells()) mix(cell);
    mix(filter->split(s).estimated_total_element());
  }
  mix(filter->head());
  mix(filter->head_increment());
  mix(filter->failure_count());
  mix(returned);
  printf("golden: head %d head_increment %llu failures %llu hash 0x%016llx\n",
         filter->head(),
         static_cast<unsigned long long>(filter->head_increment()),
         static_cast<unsigned long long>(filter->failure_count()),
         static_cast<unsigned long long>(h));
  EXPECT_EQ(0x13C86C06F28D9992ULL, h);
}

std::vector<SplitRecords> SaveOrDie(const Filter& filter) {
  std::vector<SplitRecords> all;
  Status s = SaveAll(filter, &all);
  EXPECT_OK(s);
  return all;
}

TEST(SlidingHashFilterTest, SaveRestoreRoundTrip) {
  const int n = 7;
  auto filter = MakeFilter(60000, n);  // 12064 cells per split: 2 records
  std::mt19937_64 rng(31);
  for (int i = 0; i < 200000; ++i) {
    // Hot ids (counted up) and a long tail (turning the ring over).
    const FID fid = rng() % 4 == 0 ? rng() % 3000 : rng() % 1000000;
    filter->ShouldBeFiltered(static_cast<int64_t>(fid), 1, 3, nullptr);
  }
  ASSERT_GT(filter->head_increment(), static_cast<uint64_t>(n));

  const std::vector<SplitRecords> all = SaveOrDie(*filter);
  ASSERT_EQ(static_cast<size_t>(n), all.size());
  for (int s = 0; s < n; ++s) {
    ASSERT_EQ(3u, all[s].size());
    HashFilterSplitMetaDump meta;
    ASSERT_TRUE(meta.ParseFromString(all[s][0]));
    EXPECT_EQ(12000u, meta.total_size());
    EXPECT_EQ(1.2, meta.fill_rate());
    EXPECT_EQ(filter->split(s).estimated_total_element(), meta.num_elements());
    const auto& sliding = meta.sliding_hash_filter_meta();
    EXPECT_EQ(7u, sliding.split_num());
    EXPECT_EQ(2u, sliding.max_forward_step());
    EXPECT_EQ(5u, sliding.max_backward_step());
    EXPECT_EQ(16u, sliding.max_step());
    EXPECT_EQ(static_cast<uint32_t>(filter->head()), sliding.head());
    EXPECT_EQ(filter->head_increment(), sliding.head_increment());
    EXPECT_EQ(filter->failure_count(), sliding.failure_count());
    HashFilterSplitDataDump data;
    ASSERT_TRUE(data.ParseFromString(all[s][2]));
    EXPECT_EQ(10000u, data.offset());
    EXPECT_EQ(2064, data.data_size());
  }

  auto restored = MakeFilter(60000, n);
  Status s = RestoreAll(restored.get(), all);
  ASSERT_OK(s);
  EXPECT_TRUE(*filter == *restored);

  // The splits restored concurrently (as the restore op does) give the same.
  auto parallel = MakeFilter(60000, n);
  std::vector<Status> statuses(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back(
        [&, i] { statuses[i] = RestoreSplit(parallel.get(), i, all[i]); });
  }
  for (auto& t : threads) t.join();
  for (const Status& st : statuses) EXPECT_OK(st);
  EXPECT_TRUE(*filter == *parallel);

  // The same future decisions.
  for (int i = 0; i < 50000; ++i) {
    const FID fid = rng() % 50000;
    const int64_t threshold = rng() % 16;
    const bool expected = filter->ShouldBeFiltered(fid, 1, threshold, nullptr);
    ASSERT_EQ(expected, restored->ShouldBeFiltered(fid, 1, threshold, nullptr));
    ASSERT_EQ(expected, parallel->ShouldBeFiltered(fid, 1, threshold, nullptr));
  }
  EXPECT_TRUE(*filter == *restored);
  EXPECT_TRUE(*filter == *parallel);
  std::unique_ptr<Filter> clone = filter->Clone();
  EXPECT_TRUE(*filter == static_cast<const SlidingHashFilter&>(*clone));
}

TEST(SlidingHashFilterTest, RestoreErrors) {
  auto filter = MakeFilter(30000, 7);
  std::mt19937_64 rng(32);
  for (int i = 0; i < 40000; ++i) filter->Add(rng() % 20000, 1);
  const std::vector<SplitRecords> all = SaveOrDie(*filter);

  auto target = MakeFilter(30000, 7);
  for (int i = 0; i < 100; ++i) target->Add(i, 2);
  const std::unique_ptr<Filter> before = target->Clone();
  auto expect_error = [&](int split, const SplitRecords& records,
                          StatusCode code, const std::string& part) {
    Status s = RestoreSplit(target.get(), split, records);
    EXPECT_EQ(code, s.code()) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), part)) << s.message();
    EXPECT_TRUE(*target == static_cast<const SlidingHashFilter&>(*before));
  };

  // Another split count: names both.
  {
    auto five = MakeFilter(30000, 5);
    Status s = RestoreSplit(five.get(), 0, all[0]);
    EXPECT_EQ(StatusCode::kFailedPrecondition, s.code());
    EXPECT_TRUE(Contains(s.message(),
                         "split_num mismatch: this filter has 5, "
                         "the dump has 7"))
        << s.message();
  }
  // Another capacity: the split's total_size differs.
  {
    auto bigger = MakeFilter(60000, 7);
    Status s = RestoreSplit(bigger.get(), 3, all[3]);
    EXPECT_EQ(StatusCode::kFailedPrecondition, s.code());
    EXPECT_TRUE(Contains(s.message(), "6000")) << s.message();
    EXPECT_TRUE(Contains(s.message(), "12000")) << s.message();
  }
  // Truncated data.
  SplitRecords records(all[2].begin(), all[2].end() - 1);
  expect_error(2, records, StatusCode::kDataLoss, "truncated");
  records = all[2];
  HashFilterSplitDataDump half;
  ASSERT_TRUE(half.ParseFromString(records[1]));
  half.mutable_data()->Truncate(3000);
  records[1] = half.SerializeAsString();
  expect_error(2, records, StatusCode::kDataLoss,
               "hold 3000 cells, expected 6064");
  // Meta fields.
  auto with_meta =
      [&](int split,
          const std::function<void(HashFilterSplitMetaDump*)>& change) {
        SplitRecords r = all[split];
        HashFilterSplitMetaDump meta;
        EXPECT_TRUE(meta.ParseFromString(r[0]));
        change(&meta);
        r[0] = meta.SerializeAsString();
        return r;
      };
  expect_error(
      1,
      with_meta(1,
                [](HashFilterSplitMetaDump* m) {
                  m->mutable_sliding_hash_filter_meta()->set_max_backward_step(
                      3);
                }),
      StatusCode::kFailedPrecondition,
      "max_backward_step mismatch: this filter has 5, the dump has 3");
  expect_error(
      1,
      with_meta(1,
                [](HashFilterSplitMetaDump* m) {
                  m->mutable_sliding_hash_filter_meta()->set_max_step(64);
                }),
      StatusCode::kFailedPrecondition, "max_step mismatch");
  expect_error(
      1,
      with_meta(1,
                [](HashFilterSplitMetaDump* m) {
                  m->mutable_sliding_hash_filter_meta()->set_max_forward_step(
                      1);
                }),
      StatusCode::kFailedPrecondition, "max_forward_step mismatch");
  expect_error(1,
               with_meta(1,
                         [](HashFilterSplitMetaDump* m) {
                           m->mutable_sliding_hash_filter_meta()->set_head(7);
                         }),
               StatusCode::kDataLoss, "head 7");
  expect_error(1,
               with_meta(1,
                         [](HashFilterSplitMetaDump* m) {
                           m->clear_sliding_hash_filter_meta();
                         }),
               StatusCode::kDataLoss, "no sliding_hash_filter_meta");
  expect_error(
      1,
      with_meta(1,
                [](HashFilterSplitMetaDump* m) { m->set_num_elements(5001); }),
      StatusCode::kDataLoss, "5001");
  expect_error(1, {}, StatusCode::kDataLoss, "no meta record");
  // Split indexes out of range.
  expect_error(7, all[0], StatusCode::kInvalidArgument, "split 7");
  expect_error(-1, all[0], StatusCode::kInvalidArgument, "split -1");
  SplitRecords unused;
  EXPECT_EQ(StatusCode::kInvalidArgument,
            SaveSplit(*filter, 7, &unused).code());
  // A read error is returned as it is.
  Status s = target->Restore(
      0,
      [](HashFilterSplitMetaDump*, bool*) {
        return hash_table::InternalError("disk gone");
      },
      [](HashFilterSplitDataDump*, bool*) { return Status::OK(); });
  EXPECT_EQ(StatusCode::kInternal, s.code());
  EXPECT_EQ("disk gone", s.message());
}

TEST(SlidingHashFilterTest, MemoryPerCapacityId) {
  // The op's defaults: 300M ids in 7 splits.
  uint64_t bytes = 0;
  ASSERT_OK(SlidingHashFilter::MemoryBytesFor(300000000, 7, &bytes));
  EXPECT_EQ(7u * (60000000u + 64u) * 2u, bytes);
  for (int n : {3, 5, 7, 10, 20}) {
    double per_id = 0;
    ASSERT_OK(SlidingHashFilter::BytesPerCapacityId(300000000, n, &per_id));
    const double expected = 2.0 * 1.2 * n / (n - 1);
    printf(
        "sliding hash filter, split_num %d: %.4f bytes per capacity id "
        "(2 B/cell * 1.2 * %d/%d = %.4f)\n",
        n, per_id, n, n - 1, expected);
    EXPECT_NEAR(expected, per_id, expected * 1e-3);
  }
  auto filter = MakeFilter(60000, 7);
  ASSERT_OK(SlidingHashFilter::MemoryBytesFor(60000, 7, &bytes));
  EXPECT_EQ(bytes, filter->MemoryBytes());
  double per_id = 0;
  EXPECT_FALSE(SlidingHashFilter::BytesPerCapacityId(1000, 1, &per_id).ok());
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
