#include "monolith/native_training/runtime/hash_filter/admission.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/dummy_hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/probabilistic_filter.h"
#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_filter {
namespace {

using ::monolith::hash_table::EmbeddingHashTable;
using ::monolith::hash_table::SlotOccurrenceThresholdConfig;
using ::monolith::hash_table::StatusCode;

SlotOccurrenceThresholdConfig Thresholds(const std::string& text) {
  SlotOccurrenceThresholdConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config));
  return config;
}

std::unique_ptr<Admission> SlidingAdmission(const std::string& thresholds) {
  std::unique_ptr<SlidingHashFilter> filter;
  EXPECT_OK(SlidingHashFilter::Create(100000, 5, &filter));
  std::unique_ptr<Admission> admission;
  const Status s =
      Admission::Create(std::move(filter), Thresholds(thresholds), &admission);
  EXPECT_OK(s);
  return admission;
}

std::unique_ptr<EmbeddingHashTable> Table() {
  hash_table::EmbeddingHashTableConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(entry_config {
             segments {
               dim_size: 1
               init_config { zeros {} }
               opt_config { sgd {} }
             }
           })pb",
      &config));
  std::unique_ptr<EmbeddingHashTable> table;
  EXPECT_OK(EmbeddingHashTable::Create(config, 1, &table));
  return table;
}

// Assigns value i + 1 to ids[i] through |admission|; returns the ids the
// table holds afterwards among |ids| (each once, in order), and sets
// |values| to their values.
std::vector<int64_t> Update(Admission* admission, EmbeddingHashTable* table,
                            const std::vector<int64_t>& ids,
                            std::vector<float>* values = nullptr) {
  std::vector<float> rows;
  for (size_t i = 0; i < ids.size(); ++i) rows.push_back(i + 1);
  table->Assign(ids.data(), ids.size(), rows.data(), 1,
                admission->AdmitFnFor(ids.data()));
  std::vector<int64_t> held;
  if (values != nullptr) values->clear();
  for (int64_t id : ids) {
    if (!table->Contains(id) ||
        std::find(held.begin(), held.end(), id) != held.end()) {
      continue;
    }
    held.push_back(id);
    float value = 0;
    table->Lookup(id, &value);
    if (values != nullptr) values->push_back(value);
  }
  return held;
}

TEST(AdmissionTest, IdsAreCreatedOnceTheirCountReachedTheThreshold) {
  auto admission = SlidingAdmission("default_occurrence_threshold: 2");
  auto table = Table();
  // The count before an occurrence decides, as the original's: with
  // threshold 2 an id seen once per update is written on its third update.
  EXPECT_EQ(Update(admission.get(), table.get(), {7}),
            std::vector<int64_t>{});
  EXPECT_EQ(Update(admission.get(), table.get(), {7}),
            std::vector<int64_t>{});
  EXPECT_EQ(Update(admission.get(), table.get(), {7}),
            std::vector<int64_t>{7});
  // Each occurrence counts: in one update, the third occurrence of 8 is
  // written (value 3), and the fourth too (value 4).
  std::vector<float> values;
  EXPECT_EQ(Update(admission.get(), table.get(), {8, 8, 8}, &values),
            std::vector<int64_t>{8});
  EXPECT_EQ(values, std::vector<float>{3});
  EXPECT_EQ(Update(admission.get(), table.get(), {9, 8}, &values),
            std::vector<int64_t>{8});
  EXPECT_EQ(values, std::vector<float>{2});
  // Ids in the table are written whatever the filter says; 9, out, is
  // counted at each sighting and written at its third.
  EXPECT_EQ(Update(admission.get(), table.get(), {7, 9, 7}, &values),
            std::vector<int64_t>{7});
  EXPECT_EQ(values, std::vector<float>{3});
  EXPECT_EQ(Update(admission.get(), table.get(), {9}),
            std::vector<int64_t>{9});
}

// As a PS runs it: the tables of a MultiHashTable share the filter, and
// several steps update them at once. Every id, seen 16 times, ends in both
// tables; under ThreadSanitizer, no race.
TEST(AdmissionTest, TablesSharingTheFilterUpdateConcurrently) {
  auto admission = SlidingAdmission("default_occurrence_threshold: 3");
  std::unique_ptr<EmbeddingHashTable> tables[2] = {Table(), Table()};
  std::vector<int64_t> ids(5000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>(i);
  std::vector<std::thread> steps;
  for (int t = 0; t < 4; ++t) {
    steps.emplace_back([&, t] {
      for (int round = 0; round < 4; ++round) {
        Update(admission.get(), tables[t % 2].get(), ids);
      }
    });
  }
  for (std::thread& step : steps) step.join();
  for (const auto& table : tables) {
    EXPECT_EQ(table->Size(), static_cast<int64_t>(ids.size()));
  }
}

TEST(AdmissionTest, ThresholdsPerSlot) {
  auto admission = SlidingAdmission(R"pb(
    default_occurrence_threshold: 1
    slot_occurrence_thresholds { slot: 3 occurrence_threshold: 0 }
    slot_occurrence_thresholds { slot: 4 occurrence_threshold: 3 })pb");
  auto table = Table();
  const int64_t slot3 = int64_t{3} << 48 | 1;
  const int64_t slot4 = int64_t{4} << 48 | 1;
  const int64_t slot5 = int64_t{5} << 48 | 1;
  EXPECT_EQ(admission->ThresholdOf(slot3), 0);
  EXPECT_EQ(admission->ThresholdOf(slot4), 3);
  EXPECT_EQ(admission->ThresholdOf(slot5), 1);
  // Slot 3 is not filtered; slot 5 needs one earlier sighting, slot 4
  // three.
  EXPECT_EQ(Update(admission.get(), table.get(), {slot3, slot4, slot5}),
            std::vector<int64_t>{slot3});
  EXPECT_EQ(Update(admission.get(), table.get(), {slot4, slot5}),
            std::vector<int64_t>{slot5});
  EXPECT_EQ(Update(admission.get(), table.get(), {slot4}),
            std::vector<int64_t>{});
  EXPECT_EQ(Update(admission.get(), table.get(), {slot4}),
            std::vector<int64_t>{slot4});
  // The slot is bits 48..62: the sign bit does not change it.
  EXPECT_EQ(admission->ThresholdOf(slot4 | (int64_t{1} << 63)), 3);
}

// A slot of threshold 0 admits without the filter's lock (which every
// table's updates share, and a filter save holds): an update of such ids
// goes on while the lock is held.
TEST(AdmissionTest, ZeroThresholdSlotsAdmitWithoutTheFiltersLock) {
  auto admission = SlidingAdmission(R"pb(
    default_occurrence_threshold: 2
    slot_occurrence_thresholds { slot: 3 occurrence_threshold: 0 })pb");
  const int64_t slot3 = int64_t{3} << 48 | 1;
  std::unique_lock<std::mutex> held(admission->mu());
  auto admitted = std::async(std::launch::async, [&] {
    return admission->Admit(slot3, 1) && !admission->ShouldBeFiltered(slot3);
  });
  const bool returned = admitted.wait_for(std::chrono::seconds(30)) ==
                        std::future_status::ready;
  held.unlock();
  EXPECT_TRUE(returned) << "admission of a threshold-0 slot waited for the "
                           "filter's lock";
  EXPECT_TRUE(admitted.get());
  EXPECT_EQ(admission->filter().Get(slot3), 0u);
}

TEST(AdmissionTest, ThresholdsAboveWhatACountCanReachAreRejected) {
  std::unique_ptr<SlidingHashFilter> filter;
  ASSERT_OK(SlidingHashFilter::Create(1000, 5, &filter));
  std::unique_ptr<Admission> admission;
  const Status s = Admission::Create(
      std::move(filter),
      Thresholds("slot_occurrence_thresholds { slot: 9 "
                 "occurrence_threshold: 16 }"),
      &admission);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("16"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("9"), std::string::npos) << s.message();
  ASSERT_OK(SlidingHashFilter::Create(1000, 5, &filter));
  EXPECT_FALSE(Admission::Create(std::move(filter),
                                 Thresholds("slot_occurrence_thresholds { "
                                            "slot: 40000 "
                                            "occurrence_threshold: 1 }"),
                                 &admission)
                   .ok());
}

// The last of two thresholds won, silently; the same one twice is harmless.
TEST(AdmissionTest, ASlotGivenTwoThresholdsIsRefused) {
  std::unique_ptr<SlidingHashFilter> filter;
  ASSERT_OK(SlidingHashFilter::Create(1000, 5, &filter));
  std::unique_ptr<Admission> admission;
  const Status s = Admission::Create(
      std::move(filter),
      Thresholds("slot_occurrence_thresholds { slot: 7 "
                 "occurrence_threshold: 0 }"
                 "slot_occurrence_thresholds { slot: 7 "
                 "occurrence_threshold: 5 }"),
      &admission);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("slot 7 is given twice, with "
                             "occurrence_threshold 0 and 5"),
            std::string::npos)
      << s.message();
  ASSERT_OK(SlidingHashFilter::Create(1000, 5, &filter));
  EXPECT_OK(Admission::Create(std::move(filter),
                              Thresholds("slot_occurrence_thresholds { slot: 7 "
                                         "occurrence_threshold: 5 }"
                                         "slot_occurrence_thresholds { slot: 7 "
                                         "occurrence_threshold: 5 }"),
                              &admission));
}

TEST(AdmissionTest, DummyAndZeroThresholdsAdmitEverything) {
  std::unique_ptr<Admission> admission;
  ASSERT_OK(Admission::Create(std::make_unique<DummyHashFilter>(),
                              Thresholds("default_occurrence_threshold: 5"),
                              &admission));
  EXPECT_TRUE(admission->AdmitsEverything());
  EXPECT_FALSE(admission->ShouldBeFiltered(1));
  auto zero = SlidingAdmission("");
  EXPECT_TRUE(zero->AdmitsEverything());
  auto table = Table();
  EXPECT_EQ(Update(zero.get(), table.get(), {1, 2}),
            (std::vector<int64_t>{1, 2}));
}

TEST(AdmissionTest, ProbabilisticFilterAdmitsAboutCountOverThreshold) {
  std::unique_ptr<Admission> admission;
  ASSERT_OK(Admission::Create(std::make_unique<ProbabilisticFilter>(
                                  /*equal_probability=*/false, 42),
                              Thresholds("default_occurrence_threshold: 4"),
                              &admission));
  auto table = Table();
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 20000; ++i) ids.push_back(i);
  // Each id seen once: admitted with probability 1/4.
  const double admitted = Update(admission.get(), table.get(), ids).size();
  EXPECT_NEAR(admitted / ids.size(), 0.25, 0.02);
  // Admitted ids are in the table and pass from now on.
  std::vector<int64_t> in_table;
  for (int64_t id : ids) {
    if (table->Contains(id)) in_table.push_back(id);
  }
  EXPECT_EQ(Update(admission.get(), table.get(), in_table), in_table);
}

TEST(AdmissionTest, InterceptCheckCountsEachCall) {
  auto admission = SlidingAdmission("default_occurrence_threshold: 1");
  EXPECT_TRUE(admission->ShouldBeFiltered(11));
  EXPECT_FALSE(admission->ShouldBeFiltered(11));
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
