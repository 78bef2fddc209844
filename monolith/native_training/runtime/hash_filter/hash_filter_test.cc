#include "monolith/native_training/runtime/hash_filter/hash_filter.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/dummy_hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/probabilistic_filter.h"
#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/test_util.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_filter {
namespace {

using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using ::monolith::hash_table::SlotOccurrenceThresholdConfig;
using ::monolith::hash_table::StatusCode;
using test_util::CollisionFreeFids;
using test_util::FidWithHomeAndSignature;
using test_util::RestoreSplit;
using test_util::SaveSplit;
using test_util::SplitRecords;

constexpr uint32_t kMax = Filter::kMaxCount;

std::unique_ptr<HashFilter> MakeFilter(uint64_t capacity,
                                       double fill_rate = 1.5) {
  std::unique_ptr<HashFilter> filter;
  Status s = HashFilter::Create(capacity, fill_rate, &filter);
  EXPECT_OK(s);
  return filter;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The reference: an exact, saturating count per id (what a HashFilter
// computes for ids that never collide), and the element count that stops
// at the capacity.
class ReferenceCounter {
 public:
  explicit ReferenceCounter(uint64_t capacity) : capacity_(capacity) {}

  uint32_t Add(FID fid, uint32_t count) {
    count = std::min(count, kMax);
    auto it = counts_.find(fid);
    if (it == counts_.end()) {
      counts_[fid] = count;
      elements_ = std::min(elements_ + 1, capacity_);
      return 0;
    }
    const uint32_t old = it->second;
    it->second = std::min(old + count, kMax);
    return old;
  }
  uint32_t Get(FID fid) const {
    auto it = counts_.find(fid);
    return it == counts_.end() ? 0 : it->second;
  }
  // An id is admitted once it was seen `threshold` times before.
  bool ShouldBeFiltered(FID fid, int64_t count, int64_t threshold) {
    if (threshold <= 0) return false;
    const uint32_t c = static_cast<uint32_t>(
        std::min<int64_t>(std::max<int64_t>(count, 0), kMax));
    return Add(fid, c) < threshold;
  }
  uint64_t elements() const { return elements_; }

 private:
  uint64_t capacity_;
  uint64_t elements_ = 0;
  std::unordered_map<FID, uint32_t> counts_;
};

// The code of creating a filter of |capacity| (fill rate 1: 2 bytes a
// cell), or of a sliding one in 5 splits, in a child whose address space
// may grow by 256 MiB; -1 where the child did not exit.
int CreateCodeUnderMemoryLimit(bool sliding, uint64_t capacity) {
  const pid_t child = fork();
  if (child == 0) {
    std::ifstream statm("/proc/self/statm");
    size_t pages = 0;
    statm >> pages;
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t limit_bytes = pages * page + (size_t{256} << 20);
    const rlimit limit{limit_bytes, limit_bytes};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(255);
    Status s;
    if (sliding) {
      std::unique_ptr<SlidingHashFilter> filter;
      s = SlidingHashFilter::Create(capacity, 5, &filter);
    } else {
      std::unique_ptr<HashFilter> filter;
      s = HashFilter::Create(capacity, 1.0, &filter);
    }
    _exit(static_cast<int>(s.code()));
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(HashFilterTest, CreateWithoutMemoryIsResourceExhausted) {
  // 2^30 cells of 2 bytes: it threw std::bad_alloc, through a Status API.
  for (bool sliding : {false, true}) {
    EXPECT_EQ(CreateCodeUnderMemoryLimit(sliding, uint64_t{1} << 30),
              static_cast<int>(StatusCode::kResourceExhausted))
        << sliding;
  }
}

TEST(HashFilterTest, CountsSaturateAtFifteen) {
  for (uint64_t capacity : {1, 3, 100}) {
    auto filter = MakeFilter(capacity);
    for (uint32_t i = 0; i <= kMax; ++i) {
      EXPECT_EQ(i, filter->Add(1, 1));
      EXPECT_EQ(std::min(i + 1, kMax), filter->Get(1));
    }
    EXPECT_EQ(kMax, filter->Add(1, 1));
    EXPECT_EQ(kMax, filter->Get(1));
    EXPECT_EQ(1u, filter->estimated_total_element());
  }
  auto filter = MakeFilter(1000);
  EXPECT_EQ(0u, filter->Add(7, 20));  // a new id: count clamped to 15
  EXPECT_EQ(kMax, filter->Get(7));
  EXPECT_EQ(0u, filter->Get(8));
}

TEST(HashFilterTest, SignatureAndPositionHashArePinned) {
  // The signature is the original's: (fid >> 17 | fid << 15) & 0xFFF.
  EXPECT_EQ(0, HashFilter::Signature(0));
  EXPECT_EQ(1, HashFilter::Signature(1ULL << 17));
  EXPECT_EQ(0xFFF, HashFilter::Signature(0xFFFULL << 17));
  EXPECT_EQ(0, HashFilter::Signature(0x1FFFF));
  EXPECT_EQ(0xABC, HashFilter::Signature((0xABCULL << 17) | 0x12345ULL |
                                         (0x7ULL << 29) | (1ULL << 63)));
  // The position hash is splitmix64 (its published outputs for states 0 and
  // 1), so saved cells mean the same thing in every process.
  EXPECT_EQ(0xE220A8397B1DCDAFULL, HashFilterPosition(0));
  EXPECT_EQ(0x910A2DEC89025CC1ULL, HashFilterPosition(1));
  EXPECT_EQ(0x6E789E6AA1B965F4ULL, HashFilterPosition(0x9E3779B97F4A7C15ULL));
}

TEST(HashFilterTest, TotalSizeIsTheOriginals) {
  uint64_t total = 0;
  ASSERT_OK(HashFilter::ComputeTotalSize(1000, 1.5, &total));
  EXPECT_EQ(1500u, total);
  ASSERT_OK(HashFilter::ComputeTotalSize(7, 1.2, &total));
  EXPECT_EQ(8u, total);  // truncated
  ASSERT_OK(HashFilter::ComputeTotalSize(50000000, 1.2, &total));
  EXPECT_EQ(static_cast<uint64_t>(50000000 * 1.2), total);
  auto filter = MakeFilter(1000);
  EXPECT_EQ(1500u + HashFilter::kMaxProbeSteps, filter->cells().size());
  EXPECT_EQ(2 * (1500u + HashFilter::kMaxProbeSteps), filter->MemoryBytes());
}

TEST(HashFilterTest, CreateRejectsBadSizes) {
  std::unique_ptr<HashFilter> filter;
  Status s = HashFilter::Create(0, 1.5, &filter);
  EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
  EXPECT_TRUE(Contains(s.message(), "capacity")) << s.message();
  for (double rate : {0.5, 0.0, -1.0, std::nan(""),
                      std::numeric_limits<double>::infinity()}) {
    s = HashFilter::Create(100, rate, &filter);
    EXPECT_EQ(StatusCode::kInvalidArgument, s.code()) << rate;
    EXPECT_TRUE(Contains(s.message(), "fill_rate")) << s.message();
  }
  // Products that do not fit a dump's uint32 offsets, or even a uint64.
  for (uint64_t capacity : {uint64_t{1} << 32, uint64_t{3} << 31,
                            std::numeric_limits<uint64_t>::max()}) {
    s = HashFilter::Create(capacity, 1.5, &filter);
    EXPECT_EQ(StatusCode::kInvalidArgument, s.code()) << capacity;
    EXPECT_TRUE(Contains(s.message(), std::to_string(capacity))) << s.message();
  }
  s = HashFilter::Create(2, 1e300, &filter);
  EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
  EXPECT_FALSE(filter);
}

// Random adds, gets and admission decisions over ids that never collide,
// compared with the exact reference; the capacity is below the number of
// ids, so the element count saturates too.
TEST(HashFilterTest, MatchesExactReferenceWithoutCollisions) {
  for (uint64_t seed : {1, 2, 3}) {
    const uint64_t capacity = 1000;
    auto filter = MakeFilter(capacity);
    ReferenceCounter reference(capacity);
    const std::vector<FID> fids =
        CollisionFreeFids(filter->total_size(), 1400, seed);
    std::mt19937_64 rng(seed);
    for (int op = 0; op < 60000; ++op) {
      // Skewed: a few hot ids, many cold ones.
      const size_t i = (rng() % 4 == 0) ? rng() % 20 : rng() % fids.size();
      const FID fid = fids[i];
      const int kind = rng() % 4;
      if (kind == 0) {
        const uint32_t count = rng() % 8 == 0 ? rng() % 40 : rng() % 3;
        ASSERT_EQ(reference.Add(fid, count), filter->Add(fid, count))
            << "op " << op;
      } else if (kind == 1) {
        ASSERT_EQ(reference.Get(fid), filter->Get(fid)) << "op " << op;
      } else {
        const int64_t count = static_cast<int64_t>(rng() % 5) - 1;
        const int64_t threshold = rng() % 16;
        ASSERT_EQ(reference.ShouldBeFiltered(fid, count, threshold),
                  filter->ShouldBeFiltered(static_cast<int64_t>(fid), count,
                                           threshold, nullptr))
            << "op " << op;
      }
      ASSERT_EQ(reference.elements(), filter->estimated_total_element());
    }
    EXPECT_EQ(0u, filter->failure_count());
    for (FID fid : fids) EXPECT_EQ(reference.Get(fid), filter->Get(fid));
  }
}

TEST(HashFilterTest, AdmissionAfterThresholdOccurrences) {
  for (int64_t threshold = 1; threshold <= kMax; ++threshold) {
    auto filter = MakeFilter(100);
    for (int64_t i = 0; i < threshold; ++i) {
      EXPECT_TRUE(filter->ShouldBeFiltered(42, 1, threshold, nullptr));
    }
    EXPECT_FALSE(filter->ShouldBeFiltered(42, 1, threshold, nullptr));
    EXPECT_FALSE(filter->ShouldBeFiltered(42, 1, threshold, nullptr));
  }
}

TEST(HashFilterTest, SkipsZeroThresholdIds) {
  auto filter = MakeFilter(1000000, 10);
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_FALSE(filter->ShouldBeFiltered(i, 1, 0, nullptr));
    EXPECT_FALSE(filter->ShouldBeFiltered(i + 100, 1, -3, nullptr));
    EXPECT_TRUE(filter->ShouldBeFiltered(i * 2 + 1000, 1, 1, nullptr));
  }
  // Only the ids with a positive threshold were added.
  EXPECT_EQ(5u, filter->estimated_total_element());
}

TEST(HashFilterTest, CollidingIdsShareACount) {
  auto filter = MakeFilter(1000);
  std::mt19937_64 rng(5);
  const FID a = FidWithHomeAndSignature(filter->total_size(), 17, 99, &rng);
  FID b = a;
  while (b == a) {
    b = FidWithHomeAndSignature(filter->total_size(), 17, 99, &rng);
  }
  EXPECT_EQ(0u, filter->Add(a, 3));
  EXPECT_EQ(3u, filter->Add(b, 2));  // b is counted in a's cell
  EXPECT_EQ(5u, filter->Get(a));
  EXPECT_EQ(1u, filter->estimated_total_element());
}

TEST(HashFilterTest, FullProbeWindowCountsAFailureAndAdmits) {
  auto filter = MakeFilter(1000);
  std::mt19937_64 rng(6);
  const uint64_t home = 300;
  // kMaxProbeSteps ids of one home cell and different signatures fill the
  // window: cells 300..363.
  for (int i = 0; i < HashFilter::kMaxProbeSteps; ++i) {
    const FID fid = FidWithHomeAndSignature(filter->total_size(), home,
                                            static_cast<uint16_t>(i + 1), &rng);
    EXPECT_EQ(0u, filter->Add(fid, 1));
  }
  for (int i = 0; i < HashFilter::kMaxProbeSteps; ++i) {
    EXPECT_EQ(static_cast<uint16_t>(((i + 1) << 4) | 1),
              filter->cells()[home + i]);
  }
  EXPECT_EQ(0u, filter->failure_count());
  const FID extra =
      FidWithHomeAndSignature(filter->total_size(), home, 1000, &rng);
  EXPECT_EQ(kMax, filter->Get(extra));
  EXPECT_EQ(kMax, filter->Add(extra, 1));
  EXPECT_EQ(1u, filter->failure_count());
  // A failed id is admitted at any valid threshold.
  EXPECT_FALSE(
      filter->ShouldBeFiltered(static_cast<int64_t>(extra), 1, kMax, nullptr));
  EXPECT_EQ(2u, filter->failure_count());
  // An id of the next home cell, past the window, is unaffected.
  const FID other =
      FidWithHomeAndSignature(filter->total_size(), home + 64, 5, &rng);
  EXPECT_EQ(0u, filter->Add(other, 1));
}

TEST(HashFilterTest, FullAndClear) {
  auto filter = MakeFilter(4);
  const std::vector<FID> fids = CollisionFreeFids(filter->total_size(), 5, 9);
  EXPECT_FALSE(filter->full());
  filter->Add(fids[0], 1);
  filter->Add(fids[1], 1);
  EXPECT_FALSE(filter->full());
  filter->Add(fids[2], 1);
  EXPECT_TRUE(filter->full());  // capacity - 1 elements
  filter->Add(fids[3], 1);
  filter->Add(fids[4], 1);
  EXPECT_EQ(4u, filter->estimated_total_element());  // stops at capacity
  filter->Clear();
  EXPECT_EQ(0u, filter->estimated_total_element());
  EXPECT_FALSE(filter->full());
  EXPECT_EQ(0u, filter->Get(fids[0]));
}

TEST(ThresholdTest, CountingThresholdsStopAtFifteen) {
  for (int64_t t = 0; t <= 15; ++t) {
    EXPECT_OK(ValidateCountingThreshold(t)) << t;
  }
  Status s = ValidateCountingThreshold(16);
  EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
  EXPECT_TRUE(Contains(s.message(), "16")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "maximum 15")) << s.message();
  EXPECT_FALSE(ValidateCountingThreshold(1000).ok());
  s = ValidateCountingThreshold(-1);
  EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
  EXPECT_TRUE(Contains(s.message(), "-1")) << s.message();

  auto hash_filter = MakeFilter(100);
  std::unique_ptr<SlidingHashFilter> sliding;
  ASSERT_OK(SlidingHashFilter::Create(1000, 5, &sliding));
  EXPECT_FALSE(hash_filter->ValidateThreshold(16).ok());
  EXPECT_FALSE(sliding->ValidateThreshold(16).ok());
  EXPECT_OK(sliding->ValidateThreshold(15));
  // The stateless filters accept any threshold in [0, 2^31 - 1] (thresholds
  // are kept as int32: larger ones would wrap to negative, admitting all).
  DummyHashFilter dummy;
  ProbabilisticFilter probabilistic(false, 1);
  EXPECT_OK(dummy.ValidateThreshold(100));
  EXPECT_OK(probabilistic.ValidateThreshold(100));
  EXPECT_OK(probabilistic.ValidateThreshold(INT32_MAX));
  EXPECT_FALSE(probabilistic.ValidateThreshold(-2).ok());
  s = probabilistic.ValidateThreshold(int64_t{3000000000});
  EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
  EXPECT_TRUE(Contains(s.message(), "past 2^31 - 1")) << s.message();
}

TEST(ThresholdTest, SlotConfigNamesTheSlot) {
  std::unique_ptr<SlidingHashFilter> sliding;
  ASSERT_OK(SlidingHashFilter::Create(1000, 5, &sliding));
  SlotOccurrenceThresholdConfig config;
  config.set_default_occurrence_threshold(3);
  auto* slot = config.add_slot_occurrence_thresholds();
  slot->set_slot(12);
  slot->set_occurrence_threshold(15);
  EXPECT_OK(ValidateSlotOccurrenceThresholdConfig(*sliding, config));
  slot = config.add_slot_occurrence_thresholds();
  slot->set_slot(301);
  slot->set_occurrence_threshold(20);
  Status s = ValidateSlotOccurrenceThresholdConfig(*sliding, config);
  EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
  EXPECT_TRUE(Contains(s.message(), "slot 301")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "20")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "15")) << s.message();
  // The probabilistic filter takes the same config.
  ProbabilisticFilter probabilistic(true, 1);
  EXPECT_OK(ValidateSlotOccurrenceThresholdConfig(probabilistic, config));

  config.Clear();
  config.set_default_occurrence_threshold(16);
  s = ValidateSlotOccurrenceThresholdConfig(*sliding, config);
  EXPECT_TRUE(Contains(s.message(), "default_occurrence_threshold"))
      << s.message();
}

// The original's trap: a threshold above 15 never admits anything there.
// Validation rejects it; an unvalidated one behaves as 15 here.
TEST(ThresholdTest, UnvalidatedHighThresholdBehavesAsFifteen) {
  auto filter = MakeFilter(100);
  for (int i = 0; i < 15; ++i) {
    EXPECT_TRUE(filter->ShouldBeFiltered(9, 1, 16, nullptr));
  }
  EXPECT_FALSE(filter->ShouldBeFiltered(9, 1, 16, nullptr));
}

TEST(HashFilterTest, SaveRestoreRoundTrip) {
  const uint64_t capacity = 20000;  // 30064 cells: 4 data records
  auto filter = MakeFilter(capacity);
  std::mt19937_64 rng(11);
  for (int i = 0; i < 40000; ++i) filter->Add(rng() % 30000, rng() % 4);
  ASSERT_GT(filter->estimated_total_element(), 10000u);

  SplitRecords records;
  ASSERT_OK(SaveSplit(*filter, 0, &records));
  ASSERT_EQ(5u, records.size());
  HashFilterSplitMetaDump meta;
  ASSERT_TRUE(meta.ParseFromString(records[0]));
  EXPECT_EQ(30000u, meta.total_size());
  EXPECT_EQ(1.5, meta.fill_rate());
  EXPECT_EQ(filter->estimated_total_element(), meta.num_elements());
  EXPECT_EQ(filter->failure_count(), meta.failure_count());
  EXPECT_FALSE(meta.has_sliding_hash_filter_meta());
  for (size_t r = 1; r < records.size(); ++r) {
    HashFilterSplitDataDump data;
    ASSERT_TRUE(data.ParseFromString(records[r]));
    EXPECT_EQ((r - 1) * 10000, data.offset());
    EXPECT_EQ(r < 4 ? 10000 : 64, data.data_size());
  }

  auto restored = MakeFilter(capacity);
  Status s = RestoreSplit(restored.get(), 0, records);
  ASSERT_OK(s);
  EXPECT_TRUE(*filter == *restored);
  // The same future.
  for (int i = 0; i < 20000; ++i) {
    const FID fid = rng() % 40000;
    const int64_t threshold = rng() % 16;
    ASSERT_EQ(filter->ShouldBeFiltered(fid, 1, threshold, nullptr),
              restored->ShouldBeFiltered(fid, 1, threshold, nullptr));
  }
  EXPECT_TRUE(*filter == *restored);
}

TEST(HashFilterTest, RestoreErrors) {
  auto filter = MakeFilter(20000);
  std::mt19937_64 rng(12);
  for (int i = 0; i < 5000; ++i) filter->Add(rng(), 1);
  SplitRecords good;
  ASSERT_OK(SaveSplit(*filter, 0, &good));

  auto target = MakeFilter(20000);
  target->Add(123, 4);
  const std::unique_ptr<Filter> before = target->Clone();
  auto expect_error = [&](const SplitRecords& records, StatusCode code,
                          const std::string& part) {
    Status s = RestoreSplit(target.get(), 0, records);
    EXPECT_EQ(code, s.code()) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), part)) << s.message();
    // Nothing changed.
    EXPECT_TRUE(*target == static_cast<const HashFilter&>(*before));
  };

  // Truncated: the last data record is missing.
  SplitRecords records(good.begin(), good.end() - 1);
  expect_error(records, StatusCode::kDataLoss, "truncated");
  // No records at all.
  expect_error({}, StatusCode::kDataLoss, "no meta record");
  // A duplicated record.
  records = good;
  records.push_back(good.back());
  expect_error(records, StatusCode::kDataLoss, "expected offset");
  // A record dropped from the middle.
  records = good;
  records.erase(records.begin() + 2);
  expect_error(records, StatusCode::kDataLoss, "expected offset 10000");
  // A record too long for the rest of the cells.
  records = good;
  HashFilterSplitDataDump data;
  ASSERT_TRUE(data.ParseFromString(records.back()));
  data.add_data(0);
  records.back() = data.SerializeAsString();
  expect_error(records, StatusCode::kDataLoss, "holds 65 cells");
  // An empty record.
  records = good;
  data.Clear();
  data.set_offset(30064);
  records.push_back(data.SerializeAsString());
  expect_error(records, StatusCode::kDataLoss, "empty data record");
  // A cell above 16 bits.
  records = good;
  ASSERT_TRUE(data.ParseFromString(records[1]));
  data.set_data(5, 0x10000);
  records[1] = data.SerializeAsString();
  expect_error(records, StatusCode::kDataLoss, "not a 16-bit value");
  // An unparsable record (the callback's error comes back as it is).
  records = good;
  records[2] = "\xff\xff\xff";
  expect_error(records, StatusCode::kDataLoss, "unparsable data record");
  // Meta: another size, more elements than the capacity, a sliding split.
  HashFilterSplitMetaDump meta;
  ASSERT_TRUE(meta.ParseFromString(good[0]));
  records = good;
  meta.set_total_size(29999);
  records[0] = meta.SerializeAsString();
  expect_error(records, StatusCode::kFailedPrecondition, "29999");
  ASSERT_TRUE(meta.ParseFromString(good[0]));
  meta.set_fill_rate(1.25);
  records[0] = meta.SerializeAsString();
  expect_error(records, StatusCode::kFailedPrecondition, "fill_rate");
  // A fill_rate no filter has (Create refuses it) is a corrupt record, not
  // a filter configured otherwise, whatever its total_size.
  for (const double fill_rate :
       {std::nan(""), std::numeric_limits<double>::infinity(), 0.5}) {
    ASSERT_TRUE(meta.ParseFromString(good[0]));
    meta.set_fill_rate(fill_rate);
    meta.set_total_size(29999);
    records[0] = meta.SerializeAsString();
    expect_error(records, StatusCode::kDataLoss, "no filter has");
  }
  ASSERT_TRUE(meta.ParseFromString(good[0]));
  meta.set_num_elements(20001);
  records[0] = meta.SerializeAsString();
  expect_error(records, StatusCode::kDataLoss, "20001");
  ASSERT_TRUE(meta.ParseFromString(good[0]));
  meta.mutable_sliding_hash_filter_meta()->set_split_num(7);
  records[0] = meta.SerializeAsString();
  expect_error(records, StatusCode::kFailedPrecondition, "SlidingHashFilter");
  // A filter of another capacity.
  auto other = MakeFilter(10000);
  Status s = RestoreSplit(other.get(), 0, good);
  EXPECT_EQ(StatusCode::kFailedPrecondition, s.code());
  EXPECT_TRUE(Contains(s.message(), "30000")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "15000")) << s.message();
  // Split 1 does not exist.
  s = RestoreSplit(target.get(), 1, good);
  EXPECT_EQ(StatusCode::kInvalidArgument, s.code());
  SplitRecords unused;
  EXPECT_FALSE(SaveSplit(*filter, 1, &unused).ok());
  // A write error stops the save at once.
  int writes = 0;
  s = filter->Save(
      0,
      [&](const HashFilterSplitMetaDump&) {
        ++writes;
        return Status::OK();
      },
      [&](const HashFilterSplitDataDump&) {
        ++writes;
        return hash_table::InternalError("disk full");
      });
  EXPECT_EQ(StatusCode::kInternal, s.code());
  EXPECT_EQ(2, writes);
}

TEST(HashFilterTest, CloneIsEqualAndIndependent) {
  auto filter = MakeFilter(1000);
  filter->Add(10000002961562801052ULL, 1);
  filter->Add(10000002961562801052ULL, 20);
  filter->Add(10000002961562801052ULL, 1);
  EXPECT_EQ(1u, filter->estimated_total_element());
  std::unique_ptr<Filter> clone = filter->Clone();
  EXPECT_TRUE(*filter == static_cast<const HashFilter&>(*clone));
  clone->Add(5, 1);
  EXPECT_FALSE(*filter == static_cast<const HashFilter&>(*clone));
}

TEST(DummyHashFilterTest, NeverFilters) {
  DummyHashFilter filter;
  FunctionTableContains empty_table([](int64_t) { return false; });
  for (int64_t fid = 0; fid < 100; ++fid) {
    EXPECT_FALSE(filter.ShouldBeFiltered(fid, 1, 15, nullptr));
    EXPECT_FALSE(filter.ShouldBeFiltered(fid, 1, 1000, &empty_table));
  }
  EXPECT_EQ(kMax, filter.Add(1, 1));
  EXPECT_EQ(kMax, filter.Get(1));
  EXPECT_EQ(0, filter.split_num());
  EXPECT_EQ(0u, filter.MemoryBytes());
  SplitRecords records;
  EXPECT_EQ(StatusCode::kInvalidArgument,
            SaveSplit(filter, 0, &records).code());
  EXPECT_EQ(StatusCode::kInvalidArgument,
            RestoreSplit(&filter, 0, records).code());
  EXPECT_NE(nullptr, filter.Clone());
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
