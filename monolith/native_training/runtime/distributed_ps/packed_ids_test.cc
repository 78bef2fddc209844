#include "monolith/native_training/runtime/distributed_ps/packed_ids.h"

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace distributed_ps {
namespace {

using ::monolith::hash_table::StatusCode;

std::vector<uint8_t> PackAll(const std::vector<int64_t>& ids,
                             const std::vector<int64_t>& splits,
                             PackPlan* plan) {
  EXPECT_OK(PlanPack(ids.data(), splits, plan));
  std::vector<uint8_t> packed(plan->bytes);
  Pack(ids.data(), splits, *plan, packed.data());
  return packed;
}

std::vector<int64_t> UnpackAll(const std::vector<uint8_t>& packed,
                               int num_tables, std::vector<int64_t>* splits) {
  PackedHeader header;
  const Status s =
      ReadPackedHeader(packed.data(), packed.size(), num_tables, &header);
  EXPECT_OK(s);
  std::vector<int64_t> ids(header.splits.back());
  Unpack(packed.data(), header, ids.data());
  *splits = header.splits;
  return ids;
}

TEST(PackedIdsTest, FidsOfATableTakeSixBytes) {
  std::mt19937_64 gen(1);
  std::vector<int64_t> ids;
  std::vector<int64_t> splits = {0};
  for (int64_t slot : {3, 1000, 32767}) {
    for (int i = 0; i < 1000; ++i) {
      ids.push_back((slot << 48) | static_cast<int64_t>(gen() >> 16));
    }
    splits.push_back(ids.size());
  }
  PackPlan plan;
  const std::vector<uint8_t> packed = PackAll(ids, splits, &plan);
  EXPECT_EQ(plan.widths, std::vector<int>({6, 6, 6}));
  EXPECT_EQ(plan.bytes, 3 * 16 + 3000 * 6);
  std::vector<int64_t> got_splits;
  EXPECT_EQ(UnpackAll(packed, 3, &got_splits), ids);
  EXPECT_EQ(got_splits, splits);
}

TEST(PackedIdsTest, RoundTripsExtremeAndEmptyTables) {
  const int64_t lo = std::numeric_limits<int64_t>::min();
  const int64_t hi = std::numeric_limits<int64_t>::max();
  const std::vector<int64_t> ids = {lo, hi, -1, 0, 7,   // width 8
                                    -5, -5, -5,         // width 1
                                    100, 355, 65636};   // width 3
  const std::vector<int64_t> splits = {0, 5, 5, 8, 11};
  PackPlan plan;
  const std::vector<uint8_t> packed = PackAll(ids, splits, &plan);
  EXPECT_EQ(plan.widths, std::vector<int>({8, 1, 1, 3}));
  std::vector<int64_t> got_splits;
  EXPECT_EQ(UnpackAll(packed, 4, &got_splits), ids);
  EXPECT_EQ(got_splits, splits);
}

TEST(PackedIdsTest, LayoutIsTheDocumentedOne) {
  const std::vector<int64_t> ids = {258, 256, 257};
  PackPlan plan;
  const std::vector<uint8_t> packed = PackAll(ids, {0, 3}, &plan);
  const std::vector<uint8_t> want = {0, 1, 0, 0, 0, 0, 0, 0,  // base 256
                                     3, 0, 0, 0,              // count
                                     1, 0, 0, 0,              // width, pad
                                     2, 0, 1};                // deltas
  EXPECT_EQ(packed, want);
}

TEST(PackedIdsTest, PlanRefusesBadSplits) {
  const std::vector<int64_t> ids = {1, 2};
  PackPlan plan;
  EXPECT_EQ(PlanPack(ids.data(), {1, 2}, &plan).code(),
            StatusCode::kInvalidArgument);
  const Status past = PlanPack(ids.data(), {0, 2, 1}, &plan);
  EXPECT_EQ(past.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(past.message().find("row splits[1] = 2 is past the last (1)"),
            std::string::npos)
      << past.message();
  const Status below = PlanPack(ids.data(), {0, 2, 1, 2}, &plan);
  EXPECT_NE(below.message().find("row splits[2] = 1 is below row splits[1]"),
            std::string::npos)
      << below.message();
  EXPECT_EQ(PlanPack(ids.data(), {}, &plan).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanPack(ids.data(), {0}, &plan).code(),
            StatusCode::kInvalidArgument);  // no table
  EXPECT_EQ(PlanPack(ids.data(), {0, 2, 1, 2}, &plan).code(),
            StatusCode::kInvalidArgument);
  // More ids than an unpack takes (the ids are not read).
  EXPECT_EQ(PlanPack(ids.data(), {0, int64_t{1} << 31}, &plan).code(),
            StatusCode::kInvalidArgument);
  // Splits whose differences overflow int64: refused before any id is read
  // (a subtraction wrapped to a huge positive count and read past the ids).
  const int64_t min = std::numeric_limits<int64_t>::min();
  const int64_t one_id[1] = {5};
  for (const std::vector<int64_t>& splits :
       {std::vector<int64_t>{0, 1, min, -1, 1},
        std::vector<int64_t>{0, 1, min, 1},
        std::vector<int64_t>{0, min, 1}}) {
    const Status s = PlanPack(one_id, splits, &plan);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("is below row splits["), std::string::npos)
        << s.message();
  }
}

TEST(PackedIdsTest, HeaderChecksNameWhatIsWrong) {
  PackPlan plan;
  const std::vector<uint8_t> good = PackAll({5, 6, 9}, {0, 2, 3}, &plan);
  PackedHeader header;
  auto error = [&](std::vector<uint8_t> bytes, int tables) {
    const Status s = ReadPackedHeader(bytes.data(), bytes.size(), tables,
                                      &header);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    return s.message();
  };
  EXPECT_NE(error({good.begin(), good.begin() + 20}, 2).find("fewer than the 32"),
            std::string::npos);
  std::vector<uint8_t> wide = good;
  wide[16 + 12] = 9;
  EXPECT_NE(error(wide, 2).find("table 1 (byte 16) gives width 9"),
            std::string::npos);
  std::vector<uint8_t> padded = good;
  padded[13] = 1;
  EXPECT_NE(error(padded, 2).find("nonzero padding"), std::string::npos);
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_NE(error(longer, 2).find("account for 35 bytes; 36 are given"),
            std::string::npos);
  std::vector<uint8_t> many = good;
  many[8] = 0xff;
  many[9] = 0xff;
  EXPECT_NE(error(many, 2).find("past the 35 bytes"), std::string::npos);
  EXPECT_NE(error(good, 1).find("account for"), std::string::npos);
  EXPECT_NE(error(good, 0).find("num_tables"), std::string::npos);
}

}  // namespace
}  // namespace distributed_ps
}  // namespace monolith
