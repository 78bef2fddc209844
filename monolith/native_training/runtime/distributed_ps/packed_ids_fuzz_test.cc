// Fuzzes ReadPackedHeader and Unpack under AddressSanitizer: valid packings
// of random tables, mutated (bytes flipped, headers rewritten, truncated,
// extended), must either be refused with InvalidArgument or unpack exactly
// the ids their headers promise into a buffer of that size. Fixed seed;
// MONOLITH_FUZZ_SEED, MONOLITH_FUZZ_ITERATIONS and MONOLITH_FUZZ_SECONDS
// (FuzzBudget: each test spends it) change the run.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/distributed_ps/packed_ids.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/test_env.h"

namespace monolith {
namespace distributed_ps {
namespace {

using ::monolith::hash_table::EnvInt;
using ::monolith::hash_table::FuzzBudget;
using ::monolith::hash_table::StatusCode;

// Packs random ids of |tables| tables, which it gives in |ids| and |splits|.
std::vector<uint8_t> RandomPacking(std::mt19937_64* gen, int tables,
                                   std::vector<int64_t>* ids_out,
                                   std::vector<int64_t>* splits_out) {
  std::vector<int64_t>& ids = *ids_out;
  std::vector<int64_t>& splits = *splits_out;
  ids.clear();
  splits = {0};
  for (int t = 0; t < tables; ++t) {
    const int n = static_cast<int>((*gen)() % 40);
    const int shift = static_cast<int>((*gen)() % 64);
    const uint64_t base = (*gen)();
    for (int i = 0; i < n; ++i) {
      // Unsigned: the sum wraps, as ids may.
      ids.push_back(static_cast<int64_t>(base + ((*gen)() >> shift)));
    }
    splits.push_back(ids.size());
  }
  PackPlan plan;
  EXPECT_OK(PlanPack(ids.data(), splits, &plan));
  std::vector<uint8_t> packed(plan.bytes);
  Pack(ids.data(), splits, plan, packed.data());
  return packed;
}

void Mutate(std::mt19937_64* gen, std::vector<uint8_t>* bytes) {
  const int kind = static_cast<int>((*gen)() % 5);
  if (kind == 0 && !bytes->empty()) {  // flip bits
    for (int k = 0; k < 3; ++k) {
      (*bytes)[(*gen)() % bytes->size()] ^= 1 << ((*gen)() % 8);
    }
  } else if (kind == 1 && !bytes->empty()) {  // truncate
    bytes->resize((*gen)() % bytes->size());
  } else if (kind == 2) {  // extend
    bytes->resize(bytes->size() + 1 + (*gen)() % 20,
                  static_cast<uint8_t>((*gen)()));
  } else if (kind == 3 && bytes->size() >= 16) {  // a header field
    const size_t header = ((*gen)() % (bytes->size() / 16)) * 16;
    const size_t field = (*gen)() % 3 == 0 ? 8 : 12;
    (*bytes)[header + field + (*gen)() % 4] = static_cast<uint8_t>((*gen)());
  } else if (!bytes->empty()) {  // a random byte
    (*bytes)[(*gen)() % bytes->size()] = static_cast<uint8_t>((*gen)());
  }
}

// Prints how many inputs were accepted and refused; a fuzz run that
// (nearly) always takes one way tests little of the other.
void ExpectBothOutcomes(const char* inputs, const char* accepted_as,
                        int64_t iterations, int64_t accepted,
                        int64_t refused) {
  std::printf("%lld %s: %lld %s, %lld refused\n",
              static_cast<long long>(iterations), inputs,
              static_cast<long long>(accepted), accepted_as,
              static_cast<long long>(refused));
  EXPECT_GT(accepted, iterations / 10);
  EXPECT_GT(refused, iterations / 10);
}

TEST(PackedIdsFuzzTest, MutatedPackingsUnpackOrFailCleanly) {
  const FuzzBudget budget(50000);
  std::mt19937_64 gen(EnvInt("MONOLITH_FUZZ_SEED", 1));
  int64_t accepted = 0, refused = 0, mutated_accepted = 0;
  int64_t iterations = 0;
  std::vector<int64_t> packed_ids, packed_splits;
  for (; budget.Allows(iterations); ++iterations) {
    const int tables = 1 + static_cast<int>(gen() % 4);
    std::vector<uint8_t> bytes =
        RandomPacking(&gen, tables, &packed_ids, &packed_splits);
    const int mutations = static_cast<int>(gen() % 3);
    for (int m = 0; m < mutations; ++m) Mutate(&gen, &bytes);
    // An exact-size heap copy: ASan sees any read past it.
    std::unique_ptr<uint8_t[]> data(new uint8_t[bytes.size()]);
    std::copy(bytes.begin(), bytes.end(), data.get());
    const int read_tables =
        gen() % 8 == 0 ? 1 + static_cast<int>(gen() % 5) : tables;
    PackedHeader header;
    const Status s =
        ReadPackedHeader(data.get(), bytes.size(), read_tables, &header);
    if (!s.ok()) {
      ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
      ASSERT_FALSE(mutations == 0 && read_tables == tables)
          << "an untouched packing refused: " << s.ToString();
      ++refused;
      continue;
    }
    ASSERT_EQ(header.splits.size(), static_cast<size_t>(read_tables) + 1);
    ASSERT_EQ(header.offsets.back(), static_cast<int64_t>(bytes.size()));
    // Exactly the ids the headers promise: ASan sees any write past them.
    std::unique_ptr<int64_t[]> ids(new int64_t[header.splits.back()]);
    Unpack(data.get(), header, ids.get());
    ++accepted;
    if (mutations > 0) {
      ++mutated_accepted;
    } else if (read_tables == tables) {
      // Untouched: the ids packed, in their tables.
      ASSERT_EQ(header.splits, packed_splits);
      ASSERT_TRUE(std::equal(packed_ids.begin(), packed_ids.end(), ids.get()));
    }
  }
  ExpectBothOutcomes("packings", "unpacked", iterations, accepted, refused);
  // Mutated packings reach Unpack too (a flipped bit in an id's bytes),
  // not only the untouched third.
  std::printf("%lld mutated packings unpacked\n",
              static_cast<long long>(mutated_accepted));
  EXPECT_GT(mutated_accepted, iterations / 100);
}

// A split value: near the ends of int64, at 2^31 or just past, or small
// (never in (4096, 2^31), where a plan would read that many ids).
int64_t RandomSplit(std::mt19937_64* gen) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t small = static_cast<int64_t>((*gen)() % 8);
  switch ((*gen)() % 6) {
    case 0: return kMin + small;
    case 1: return kMax - small;
    case 2: return (int64_t{1} << 31) + small;
    case 3: return -small;
    default: return small * 3;
  }
}

// The worker's side: PlanPack on hostile row splits (an op input) reads
// only the ids the last split counts, or refuses; what it accepts packs
// and unpacks back to the same ids.
TEST(PackedIdsFuzzTest, HostileSplitsPlanOrFailCleanly) {
  const FuzzBudget budget(50000);
  std::mt19937_64 gen(EnvInt("MONOLITH_FUZZ_SEED", 1) + 1);
  int64_t accepted = 0, refused = 0;
  int64_t iterations = 0;
  for (; budget.Allows(iterations); ++iterations) {
    const int tables = 1 + static_cast<int>(gen() % 4);
    std::vector<int64_t> splits = {gen() % 16 == 0 ? RandomSplit(&gen) : 0};
    for (int t = 0; t < tables; ++t) {
      const int64_t last = splits.back();
      const bool small = last >= 0 && last <= 64;
      splits.push_back(gen() % 3 == 0 || !small ? RandomSplit(&gen)
                                                : last + gen() % 5);
    }
    // Exactly the ids the last split counts (a plan must refuse 2^31 and
    // more, or a negative count, without reading any).
    const int64_t last = splits.back();
    ASSERT_TRUE(last <= 4096 || last >= (int64_t{1} << 31)) << last;
    const int64_t count = last >= 0 && last <= 4096 ? last : 0;
    std::unique_ptr<int64_t[]> ids(new int64_t[count]);
    for (int64_t k = 0; k < count; ++k) {
      ids[k] = static_cast<int64_t>(gen()) >> (gen() % 64);
    }
    PackPlan plan;
    const Status s = PlanPack(ids.get(), splits, &plan);
    if (!s.ok()) {
      ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
      ++refused;
      continue;
    }
    ASSERT_EQ(count, splits.back());
    std::unique_ptr<uint8_t[]> packed(new uint8_t[plan.bytes]);
    Pack(ids.get(), splits, plan, packed.get());
    PackedHeader header;
    ASSERT_OK(ReadPackedHeader(packed.get(), plan.bytes, tables, &header));
    ASSERT_EQ(header.splits, splits);
    std::unique_ptr<int64_t[]> unpacked(new int64_t[count]);
    Unpack(packed.get(), header, unpacked.get());
    ASSERT_TRUE(std::equal(ids.get(), ids.get() + count, unpacked.get()));
    ++accepted;
  }
  ExpectBothOutcomes("split vectors", "packed", iterations, accepted,
                     refused);
}

}  // namespace
}  // namespace distributed_ps
}  // namespace monolith

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
