#include "monolith/native_training/runtime/hash_filter/filter_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/dummy_hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/probabilistic_filter.h"
#include "monolith/native_training/runtime/hash_filter/sliding_hash_filter.h"
#include "monolith/native_training/runtime/hash_filter/test_util.h"
#include "monolith/native_training/runtime/hash_table/faulty_file_systems.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_filter {
namespace {

using ::monolith::hash_table::FileSystem;
using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::DyingFileSystem;
using ::monolith::hash_table::FailingFileSystem;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using ::monolith::hash_table::InternalError;
using ::monolith::hash_table::ParallelFor;
using ::monolith::hash_table::PosixFileSystem;
using ::monolith::hash_table::SerialFor;
using ::monolith::hash_table::StatusCode;
using ::monolith::hash_table::WritableFile;
using test_util::Fixed;
using test_util::ThreadFor;

// ------------------------------------------------------------ helpers

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string NewDir(const std::string& name) {
  static int counter = 0;
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp ? tmp : "/tmp") + "/fc_" + name +
                          "_" + std::to_string(getpid()) + "_" +
                          std::to_string(counter++);
  PosixFileSystem fs;
  EXPECT_OK(fs.CreateDirectories(dir));
  return dir;
}

std::vector<std::string> ListDir(const std::string& dir) {
  PosixFileSystem fs;
  std::vector<std::string> names;
  EXPECT_OK(fs.ListDirectory(dir, &names));
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// TFRecord framing done here from first principles (bitwise CRC32C), not
// with record_file.h, so the test checks the bytes the format prescribes.
uint32_t Crc32c(const std::string& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
  }
  return ~crc;
}

uint32_t Masked(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

std::string Frame(const std::string& record) {
  const std::string length = Fixed(record.size(), 8);
  return length + Fixed(Masked(Crc32c(length)), 4) + record +
         Fixed(Masked(Crc32c(record)), 4);
}

std::string FrameAll(const std::vector<std::string>& records) {
  std::string bytes;
  for (const std::string& record : records) bytes += Frame(record);
  return bytes;
}

// Splits |bytes| into records, checking every CRC.
bool Unframe(const std::string& bytes, std::vector<std::string>* records) {
  records->clear();
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) return false;
    const std::string length_bytes = bytes.substr(at, 8);
    uint64_t length = 0;
    for (int i = 7; i >= 0; --i) {
      length = length << 8 | static_cast<unsigned char>(length_bytes[i]);
    }
    if (bytes.substr(at + 8, 4) != Fixed(Masked(Crc32c(length_bytes)), 4)) {
      return false;
    }
    if (bytes.size() - at - 12 < length + 4) return false;
    const std::string record = bytes.substr(at + 12, length);
    if (bytes.substr(at + 12 + length, 4) != Fixed(Masked(Crc32c(record)), 4)) {
      return false;
    }
    records->push_back(record);
    at += 16 + length;
  }
  return true;
}

std::unique_ptr<SlidingHashFilter> MakeSliding(uint64_t capacity,
                                               int split_num) {
  std::unique_ptr<SlidingHashFilter> filter;
  const Status s = SlidingHashFilter::Create(capacity, split_num, &filter);
  EXPECT_OK(s);
  return filter;
}

// Enough adds to move the ring's head several times.
void Workload(Filter* filter, uint64_t seed, int ops) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < ops; ++i) {
    filter->ShouldBeFiltered(static_cast<int64_t>(rng() % 20000), 1 + rng() % 3,
                             1 + rng() % 15, nullptr);
  }
}

const SlidingHashFilter& AsSliding(const Filter& filter) {
  return static_cast<const SlidingHashFilter&>(filter);
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        NewDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    basename_ = dir_ + "/hash_filter_0";
    source_ = MakeSliding(3000, 7);
    Workload(source_.get(), 1, 9000);
    ASSERT_GT(source_->head_increment(), 2u);
  }

  std::string File(int split, int nsplits = 7) const {
    return FilterCheckpointFileName(basename_, split, nsplits);
  }

  Status Save(const Filter& filter) {
    return SaveFilterCheckpoint(&fs_, basename_, filter, ThreadFor);
  }

  // Restores into a filter like |like| (default: a fresh 3000/7 one);
  // checks that an error leaves *restored alone.
  Status Restore(std::unique_ptr<Filter>* restored,
                 const Filter* like = nullptr) {
    std::unique_ptr<SlidingHashFilter> fresh = MakeSliding(3000, 7);
    std::unique_ptr<Filter> sentinel = MakeSliding(3000, 7);
    Filter* const sentinel_ptr = sentinel.get();
    *restored = std::move(sentinel);
    const Status status = RestoreFilterCheckpoint(
        &fs_, basename_, like ? *like : *fresh, ThreadFor, restored);
    if (!status.ok()) {
      // The messages, for reading in the test log.
      std::printf("  %s\n", status.ToString().c_str());
      EXPECT_EQ(restored->get(), sentinel_ptr) << "an error replaced *restored";
      if (like == nullptr) {
        EXPECT_TRUE(*fresh == *MakeSliding(3000, 7));
      }
    }
    return status;
  }

  PosixFileSystem fs_;
  std::string dir_;
  std::string basename_;
  std::unique_ptr<SlidingHashFilter> source_;
};

// ------------------------------------------------------------ round trips

TEST_F(CheckpointTest, RoundTripGivesAnEqualFilterAndTheSameDecisions) {
  ASSERT_OK(Save(*source_));
  std::vector<std::string> expected;
  for (int k = 0; k < 7; ++k) {
    char name[64];
    std::snprintf(name, sizeof(name), "hash_filter_0-%05d-of-00007", k);
    expected.push_back(name);
  }
  EXPECT_EQ(ListDir(dir_), expected);
  EXPECT_EQ(File(0), dir_ + "/hash_filter_0-00000-of-00007");

  for (const ParallelFor& parallel_for :
       {ParallelFor(SerialFor), ParallelFor(ThreadFor)}) {
    std::unique_ptr<SlidingHashFilter> like = MakeSliding(3000, 7);
    std::unique_ptr<Filter> restored;
    const Status s = RestoreFilterCheckpoint(&fs_, basename_, *like,
                                             parallel_for, &restored);
    ASSERT_OK(s);
    EXPECT_TRUE(AsSliding(*restored) == *source_);
    EXPECT_TRUE(*like == *MakeSliding(3000, 7)) << "like was changed";
    // The same future decisions.
    std::unique_ptr<Filter> original = source_->Clone();
    std::mt19937_64 rng(99);
    for (int i = 0; i < 20000; ++i) {
      const int64_t fid = static_cast<int64_t>(rng() % 30000);
      const int64_t count = 1 + rng() % 2;
      const int64_t threshold = 1 + rng() % 15;
      ASSERT_EQ(original->ShouldBeFiltered(fid, count, threshold, nullptr),
                restored->ShouldBeFiltered(fid, count, threshold, nullptr))
          << "decision " << i;
    }
    EXPECT_TRUE(AsSliding(*restored) == AsSliding(*original));
  }
}

TEST_F(CheckpointTest, FilesHoldExactlyWhatSaveEmitsAfterAMetaRecord) {
  ASSERT_OK(Save(*source_));
  std::vector<test_util::SplitRecords> saved;
  ASSERT_OK(test_util::SaveAll(*source_, &saved));
  uint64_t save_id = 0;
  for (int k = 0; k < 7; ++k) {
    std::vector<std::string> records;
    ASSERT_TRUE(Unframe(ReadBytes(File(k)), &records)) << File(k);
    ASSERT_EQ(records.size(), saved[k].size());
    HashFilterSplitMetaDump meta;
    ASSERT_TRUE(meta.ParseFromString(records[0]));
    EXPECT_EQ(meta.total_size(), source_->split(k).total_size());
    EXPECT_EQ(meta.num_elements(), source_->split(k).estimated_total_element());
    EXPECT_EQ(meta.failure_count(), source_->split(k).failure_count());
    EXPECT_DOUBLE_EQ(meta.fill_rate(), SlidingHashFilter::kSplitFillRate);
    ASSERT_TRUE(meta.has_sliding_hash_filter_meta());
    EXPECT_EQ(meta.sliding_hash_filter_meta().split_num(), 7u);
    EXPECT_EQ(meta.sliding_hash_filter_meta().head(),
              static_cast<uint32_t>(source_->head()));
    EXPECT_EQ(meta.sliding_hash_filter_meta().head_increment(),
              source_->head_increment());
    // The identity rides along as unknown fields: split, count, one save id.
    const auto& unknown = meta.unknown_fields();
    ASSERT_EQ(unknown.field_count(), 4);
    EXPECT_EQ(unknown.field(0).number(), kIdentitySaveIdField);
    if (k == 0) save_id = unknown.field(0).fixed64();
    EXPECT_EQ(unknown.field(0).fixed64(), save_id);
    EXPECT_EQ(unknown.field(2).number(), kIdentitySplitField);
    EXPECT_EQ(unknown.field(2).varint(), static_cast<uint64_t>(k));
    EXPECT_EQ(unknown.field(3).number(), kIdentitySplitNumField);
    EXPECT_EQ(unknown.field(3).varint(), 7u);
    // Without them, the record is Save's meta record byte for byte, and the
    // data records are Save's.
    meta.DiscardUnknownFields();
    EXPECT_EQ(meta.SerializeAsString(), saved[k][0]);
    for (size_t r = 1; r < records.size(); ++r) {
      EXPECT_EQ(records[r], saved[k][r]) << "split " << k << " record " << r;
    }
  }
}

TEST_F(CheckpointTest, PlainHashFilterIsOneSplit) {
  std::unique_ptr<HashFilter> plain;
  ASSERT_OK(HashFilter::Create(20000, 1.5, &plain));
  Workload(plain.get(), 5, 5000);
  ASSERT_OK(Save(*plain));
  EXPECT_EQ(ListDir(dir_),
            std::vector<std::string>{"hash_filter_0-00000-of-00001"});
  std::unique_ptr<HashFilter> like;
  ASSERT_OK(HashFilter::Create(20000, 1.5, &like));
  std::unique_ptr<Filter> restored;
  ASSERT_OK(
      RestoreFilterCheckpoint(&fs_, basename_, *like, SerialFor, &restored));
  EXPECT_TRUE(static_cast<const HashFilter&>(*restored) == *plain);
}

TEST_F(CheckpointTest, StatelessFiltersSaveNothing) {
  const std::string basename = dir_ + "/sub/dir/dummy";
  DummyHashFilter dummy;
  ASSERT_OK(SaveFilterCheckpoint(&fs_, basename, dummy, SerialFor));
  EXPECT_TRUE(ListDir(dir_ + "/sub/dir").empty());  // created, empty
  ProbabilisticFilter probabilistic(/*equal_probability=*/true, 7);
  ASSERT_OK(SaveFilterCheckpoint(&fs_, basename, probabilistic, SerialFor));
  EXPECT_TRUE(ListDir(dir_ + "/sub/dir").empty());
  std::unique_ptr<Filter> restored;
  ASSERT_OK(
      RestoreFilterCheckpoint(&fs_, basename, dummy, SerialFor, &restored));
  ASSERT_NE(restored, nullptr);
  EXPECT_EQ(restored->split_num(), 0);
  ASSERT_OK(RestoreFilterCheckpoint(&fs_, basename, probabilistic, SerialFor,
                                    &restored));
  ASSERT_NE(dynamic_cast<ProbabilisticFilter*>(restored.get()), nullptr);
}

TEST_F(CheckpointTest, SaveCreatesTheDirectoryAndReplacesAnEarlierSave) {
  basename_ = dir_ + "/a/b/hash_filter_0";
  ASSERT_OK(Save(*MakeSliding(3000, 7)));
  ASSERT_OK(Save(*source_));
  std::unique_ptr<Filter> restored;
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == *source_);
  EXPECT_EQ(ListDir(dir_ + "/a/b").size(), 7u);
}

// A save lists its folder twice (before writing, after renaming): the
// folder of a job's every table and filter, listed four times a save
// before.
TEST_F(CheckpointTest, ASaveListsItsFolderTwice) {
  ::monolith::hash_table::ListingCountingFileSystem fs;
  for (int round = 0; round < 2; ++round) {
    fs.listings = 0;
    ASSERT_OK(SaveFilterCheckpoint(&fs, basename_, *source_, ThreadFor));
    EXPECT_EQ(fs.listings.load(), 2) << round;
  }
  std::unique_ptr<Filter> restored;
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == *source_);
}

// ------------------------------------------------------------ the format

// A file built by hand the way the original's save op writes it (TF's
// RecordWriter framing, no compression, no identity fields).
TEST_F(CheckpointTest, RestoresAHandBuiltOriginalFile) {
  constexpr uint64_t kCapacity = 10000;
  std::unique_ptr<HashFilter> like;
  ASSERT_OK(HashFilter::Create(kCapacity, 1.5, &like));
  const uint64_t total_size = like->total_size();  // 15000
  const uint64_t cells = total_size + HashFilter::kMaxProbeSteps;
  const std::vector<FID> fids = test_util::CollisionFreeFids(total_size, 50, 3);
  std::vector<uint32_t> values(cells, 0);
  for (size_t i = 0; i < fids.size(); ++i) {
    const uint64_t home = HashFilterPosition(fids[i]) % total_size;
    values[home] = static_cast<uint32_t>(HashFilter::Signature(fids[i]) << 4 |
                                         (1 + i % 15));
  }
  HashFilterSplitMetaDump meta;
  meta.set_failure_count(3);
  meta.set_total_size(total_size);
  meta.set_num_elements(fids.size());
  meta.set_fill_rate(1.5);
  std::vector<std::string> records = {meta.SerializeAsString()};
  for (uint64_t start = 0; start < cells; start += 10000) {
    HashFilterSplitDataDump data;
    data.set_offset(static_cast<uint32_t>(start));
    for (uint64_t i = start; i < std::min<uint64_t>(start + 10000, cells);
         ++i) {
      data.add_data(values[i]);
    }
    records.push_back(data.SerializeAsString());
  }
  ASSERT_EQ(records.size(), 3u);  // meta, 10000 cells, 5064 cells
  WriteBytes(FilterCheckpointFileName(basename_, 0, 1), FrameAll(records));

  std::unique_ptr<Filter> restored;
  const Status s =
      RestoreFilterCheckpoint(&fs_, basename_, *like, SerialFor, &restored);
  ASSERT_OK(s);
  for (size_t i = 0; i < fids.size(); ++i) {
    EXPECT_EQ(restored->Get(fids[i]), 1 + i % 15) << i;
  }
  EXPECT_EQ(restored->estimated_total_element(), fids.size());
  EXPECT_EQ(restored->failure_count(), 3u);
  // And our writer produces the same bytes, apart from the identity.
  ASSERT_OK(Save(*restored));
  std::vector<std::string> ours;
  ASSERT_TRUE(
      Unframe(ReadBytes(FilterCheckpointFileName(basename_, 0, 1)), &ours));
  ASSERT_EQ(ours.size(), records.size());
  HashFilterSplitMetaDump our_meta;
  ASSERT_TRUE(our_meta.ParseFromString(ours[0]));
  our_meta.DiscardUnknownFields();
  EXPECT_EQ(our_meta.SerializeAsString(), records[0]);
  for (size_t r = 1; r < records.size(); ++r) EXPECT_EQ(ours[r], records[r]);
}

// Every split of a sliding filter by hand, from Save's records (what the
// original's op hands its RecordWriter), framed here.
TEST_F(CheckpointTest, RestoresHandFramedSlidingSplits) {
  std::vector<test_util::SplitRecords> saved;
  ASSERT_OK(test_util::SaveAll(*source_, &saved));
  for (int k = 0; k < 7; ++k) WriteBytes(File(k), FrameAll(saved[k]));
  std::unique_ptr<Filter> restored;
  const Status s = Restore(&restored);
  ASSERT_OK(s);
  EXPECT_TRUE(AsSliding(*restored) == *source_);
}

// The original saved its splits while training went on, so their metas
// may disagree on the ring (head, head_increment, failure_count): the split
// furthest along gives them, whichever split's restore runs last. In one of
// our saves such a disagreement is damage.
TEST_F(CheckpointTest, SplitsDisagreeingOnTheRing) {
  std::vector<test_util::SplitRecords> saved;
  ASSERT_OK(test_util::SaveAll(*source_, &saved));
  const uint32_t increments =
      static_cast<uint32_t>(source_->head_increment());
  auto with_ring = [](const std::string& record, uint32_t head,
                      uint32_t head_increment, uint64_t failure_count) {
    HashFilterSplitMetaDump meta;
    EXPECT_TRUE(meta.ParseFromString(record));
    auto* sliding = meta.mutable_sliding_hash_filter_meta();
    sliding->set_head(head);
    sliding->set_head_increment(head_increment);
    sliding->set_failure_count(failure_count);
    return meta.SerializeAsString();
  };
  const uint32_t later_head = (source_->head() + 1) % 7;
  // Split 5 saved one rotation later, split 2 one earlier; split 3 as
  // many rotations as split 5 but fewer failures (saved before it).
  saved[5][0] = with_ring(saved[5][0], later_head, increments + 1, 99);
  saved[3][0] = with_ring(saved[3][0], (source_->head() + 2) % 7,
                          increments + 1, 5);
  saved[2][0] = with_ring(saved[2][0], (source_->head() + 6) % 7,
                          increments - 1, 1);
  for (int k = 0; k < 7; ++k) WriteBytes(File(k), FrameAll(saved[k]));
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::unique_ptr<Filter> restored;
    const Status s = Restore(&restored);
    ASSERT_OK(s);
    const SlidingHashFilter& sliding = AsSliding(*restored);
    EXPECT_EQ(sliding.head(), static_cast<int>(later_head));
    EXPECT_EQ(sliding.head_increment(), increments + 1u);
    EXPECT_EQ(sliding.failure_count(), 99u);
  }

  // Ours: the same change to one split's meta (identity kept) is DataLoss
  // naming both files.
  ASSERT_OK(Save(*source_));
  std::vector<std::string> records;
  ASSERT_TRUE(Unframe(ReadBytes(File(4)), &records));
  records[0] = with_ring(records[0], later_head, increments + 1, 0);
  WriteBytes(File(4), FrameAll(records));
  std::unique_ptr<Filter> restored;
  const Status s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "disagree on the ring")) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(4))) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(0))) << s.ToString();
}

// ------------------------------------------------------------ errors

TEST_F(CheckpointTest, MissingFilesAreNotFound) {
  std::unique_ptr<Filter> restored;
  Status s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), basename_)) << s.ToString();

  basename_ = dir_ + "/no/such/dir/hash_filter_0";
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), basename_)) << s.ToString();

  // Temporaries alone are no checkpoint.
  basename_ = dir_ + "/hash_filter_0";
  WriteBytes(File(0) + "-tmp-123", "garbage");
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
}

TEST_F(CheckpointTest, SplitCountMismatchNamesBothCounts) {
  ASSERT_OK(Save(*source_));
  std::unique_ptr<SlidingHashFilter> five = MakeSliding(3000, 5);
  std::unique_ptr<Filter> restored;
  const Status s = Restore(&restored, five.get());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "has 7 splits")) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "has 5 splits")) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), basename_)) << s.ToString();
}

TEST_F(CheckpointTest, OtherConfigurationIsRejectedNamingTheFile) {
  ASSERT_OK(Save(*source_));
  std::unique_ptr<SlidingHashFilter> bigger = MakeSliding(6000, 7);
  std::unique_ptr<Filter> restored;
  const Status s = Restore(&restored, bigger.get());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), basename_ + "-0000")) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "total_size")) << s.ToString();
}

// One split of our save whose meta says another configuration (rewritten,
// with a valid CRC) is damage, not a save of another configuration.
TEST_F(CheckpointTest, OneSplitOfAnotherConfigurationIsDataLoss) {
  // The first split or a later one; restored in parallel or one by one (a
  // ParallelFor that stops at the first error).
  for (const int split : {0, 3}) {
    for (const bool serial : {false, true}) {
      SCOPED_TRACE("split " + std::to_string(split) +
                   (serial ? ", serial" : ", parallel"));
      ASSERT_OK(Save(*source_));
      std::vector<std::string> records;
      ASSERT_TRUE(Unframe(ReadBytes(File(split)), &records));
      HashFilterSplitMetaDump meta;
      ASSERT_TRUE(meta.ParseFromString(records[0]));
      meta.set_total_size(meta.total_size() + 1);
      records[0] = meta.SerializeAsString();
      WriteBytes(File(split), FrameAll(records));
      std::unique_ptr<Filter> restored;
      const Status s = RestoreFilterCheckpoint(
          &fs_, basename_, *MakeSliding(3000, 7),
          serial ? ParallelFor(SerialFor) : ParallelFor(ThreadFor),
          &restored);
      EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
      EXPECT_TRUE(Contains(s.message(), "splits disagree on the configuration"))
          << s.ToString();
      EXPECT_TRUE(Contains(s.message(), File(split))) << s.ToString();
    }
  }
}

// With other_config, a checkpoint of another capacity or split count
// restores an empty filter of the new configuration and says why; a
// damaged checkpoint is still an error.
TEST_F(CheckpointTest, OtherConfigurationCanStartTheCountsOver) {
  ASSERT_OK(Save(*source_));
  for (const auto& like : {MakeSliding(6000, 7), MakeSliding(3000, 5)}) {
    std::unique_ptr<Filter> restored;
    std::string other_config = "stale";
    const Status s = RestoreFilterCheckpoint(&fs_, basename_, *like, ThreadFor,
                                             &restored, nullptr, &other_config);
    ASSERT_OK(s);
    EXPECT_TRUE(AsSliding(*restored) == *like);
    EXPECT_EQ(restored->capacity(), like->capacity());
    EXPECT_TRUE(Contains(other_config, like->split_num() == 7 ? "total_size"
                                                              : "has 7 splits"))
        << other_config;
    // Restoring into a filter: none is handed back; the caller keeps its.
    other_config.clear();
    ASSERT_OK(RestoreFilterCheckpointInto(&fs_, basename_, like->Clone(),
                                          ThreadFor, &restored, nullptr,
                                          &other_config));
    EXPECT_EQ(restored, nullptr);
    EXPECT_FALSE(other_config.empty());
  }
  // The same configuration restores the counts and clears other_config.
  std::unique_ptr<Filter> restored;
  std::string other_config = "stale";
  Status s = RestoreFilterCheckpoint(&fs_, basename_, *MakeSliding(3000, 7),
                                     ThreadFor, &restored, nullptr,
                                     &other_config);
  ASSERT_OK(s);
  EXPECT_TRUE(AsSliding(*restored) == *source_);
  EXPECT_EQ(other_config, "");
  // A split that is no sliding filter's beside splits of another
  // configuration: damage, not another configuration.
  {
    std::vector<test_util::SplitRecords> saved;
    ASSERT_OK(test_util::SaveAll(*source_, &saved));
    HashFilterSplitMetaDump meta;
    ASSERT_TRUE(meta.ParseFromString(saved[3][0]));
    meta.clear_sliding_hash_filter_meta();
    saved[3][0] = meta.SerializeAsString();
    for (int k = 0; k < 7; ++k) WriteBytes(File(k), FrameAll(saved[k]));
    other_config = "stale";
    s = RestoreFilterCheckpoint(&fs_, basename_, *MakeSliding(6000, 7),
                                ThreadFor, &restored, nullptr, &other_config);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "no sliding_hash_filter_meta"))
        << s.ToString();
    ASSERT_OK(Save(*source_));
  }
  // Damage is not another configuration.
  ASSERT_OK(fs_.DeleteFile(File(3)));
  s = RestoreFilterCheckpoint(&fs_, basename_, *MakeSliding(6000, 7), ThreadFor,
                              &restored, nullptr, &other_config);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "is missing")) << s.ToString();
}

TEST_F(CheckpointTest, OneSplitFileMissing) {
  ASSERT_OK(Save(*source_));
  ASSERT_OK(fs_.DeleteFile(File(3)));
  std::unique_ptr<Filter> restored;
  const Status s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(3) + " is missing")) << s.ToString();
}

TEST_F(CheckpointTest, TruncatedFiles) {
  ASSERT_OK(Save(*source_));
  const std::string bytes = ReadBytes(File(2));
  std::vector<std::string> records;
  ASSERT_TRUE(Unframe(bytes, &records));
  std::unique_ptr<Filter> restored;
  // Cut inside a record.
  for (size_t cut :
       {bytes.size() - 1, bytes.size() - 100, size_t{30}, size_t{5}}) {
    WriteBytes(File(2), bytes.substr(0, cut));
    const Status s = Restore(&restored);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << cut << ": " << s.ToString();
    EXPECT_TRUE(Contains(s.message(), File(2))) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "truncated")) << s.ToString();
  }
  // Cut at a record boundary: the last data record is gone.
  WriteBytes(File(2),
             bytes.substr(0, bytes.size() - 16 - records.back().size()));
  Status s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(2))) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "truncated dump")) << s.ToString();
  // Empty.
  WriteBytes(File(2), "");
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(2) + " is empty")) << s.ToString();
}

TEST_F(CheckpointTest, FlippedByteFailsTheCrc) {
  ASSERT_OK(Save(*source_));
  const std::string bytes = ReadBytes(File(4));
  std::unique_ptr<Filter> restored;
  for (size_t at :
       {size_t{3}, size_t{20}, bytes.size() / 2, bytes.size() - 2}) {
    std::string flipped = bytes;
    flipped[at] ^= 0x10;
    WriteBytes(File(4), flipped);
    const Status s = Restore(&restored);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << at << ": " << s.ToString();
    EXPECT_TRUE(Contains(s.message(), File(4) + ": record")) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "byte offset")) << s.ToString();
  }
}

TEST_F(CheckpointTest, TrailingRecordIsRejected) {
  ASSERT_OK(Save(*source_));
  const std::string bytes = ReadBytes(File(5));
  std::vector<std::string> records;
  ASSERT_TRUE(Unframe(bytes, &records));
  std::unique_ptr<Filter> restored;
  for (const std::string& extra :
       {records.back(), records[1], std::string(), records[0],
        std::string("not a proto \xff\xff")}) {
    WriteBytes(File(5), bytes + Frame(extra));
    const Status s = Restore(&restored);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_TRUE(Contains(
        s.message(), File(5) + ": record " + std::to_string(records.size())))
        << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "trailing record")) << s.ToString();
  }
  // Trailing garbage that is no record.
  WriteBytes(File(5), bytes + "xyz");
  const Status s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(5))) << s.ToString();
}

TEST_F(CheckpointTest, CorruptRecordContentsNameTheFileAndRecord) {
  std::vector<test_util::SplitRecords> saved;
  ASSERT_OK(test_util::SaveAll(*source_, &saved));
  for (int k = 0; k < 7; ++k) WriteBytes(File(k), FrameAll(saved[k]));
  std::unique_ptr<Filter> restored;
  // An unparsable data record, validly framed.
  test_util::SplitRecords records = saved[1];
  ASSERT_EQ(records.size(), 2u);  // 664 cells: one data record
  records[1] = "\xff\xff\xff";
  WriteBytes(File(1), FrameAll(records));
  Status s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(1) + ": record 1 (at byte offset"))
      << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "not a HashFilterSplitDataDump"))
      << s.ToString();
  // A data record the filter rejects (out of order).
  records = saved[1];
  HashFilterSplitDataDump data;
  ASSERT_TRUE(data.ParseFromString(records[1]));
  data.set_offset(5);
  records[1] = data.SerializeAsString();
  WriteBytes(File(1), FrameAll(records));
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(1) + ": record 1 (at byte offset"))
      << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "out of order")) << s.ToString();
  // An unparsable meta record.
  records = saved[1];
  records[0] = "\xff";
  WriteBytes(File(1), FrameAll(records));
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(1) + ": record 0")) << s.ToString();
}

TEST_F(CheckpointTest, MixedSavesAndMovedFilesAreRejected) {
  ASSERT_OK(Save(*source_));
  const std::string old_split2 = ReadBytes(File(2));
  const std::string old_split1 = ReadBytes(File(1));
  Workload(source_.get(), 2, 500);
  ASSERT_OK(Save(*source_));
  std::unique_ptr<Filter> restored;
  ASSERT_OK(Restore(&restored));
  // A split of the earlier save among the later one's.
  WriteBytes(File(2), old_split2);
  Status s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "mixes saves")) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(2))) << s.ToString();
  // A split's file under another split's name.
  WriteBytes(File(2), old_split1);
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(2) + " was written as split 1 of 7"))
      << s.ToString();
  // A file of the original (no identity) among ours.
  std::vector<test_util::SplitRecords> saved;
  ASSERT_OK(test_util::SaveAll(*source_, &saved));
  WriteBytes(File(2), FrameAll(saved[2]));
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "mixes saves")) << s.ToString();
  // A fresh save repairs it.
  ASSERT_OK(Save(*source_));
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == *source_);
}

// ------------------------------------------------------------ file sets

// A save killed after writing its splits, before or while renaming them,
// is read whole through its temporaries; the next save finishes its renames
// first, so a kill during that save loses nothing either.
TEST_F(CheckpointTest, SaveKilledWhileRenamingIsReadWholeAndFinished) {
  for (int renames = 0; renames < 7; renames += 2) {
    SCOPED_TRACE("killed after " + std::to_string(renames) + " renames");
    ASSERT_OK(Save(*source_));
    Workload(source_.get(), 10 + renames, 500);  // the save killed below
    // Each split's file is renamed from ".partial" once written (7 renames)
    // before the renames to final names.
    DyingFileSystem dying(7 + renames, /*new_files=*/-1);
    ASSERT_FALSE(
        SaveFilterCheckpoint(&dying, basename_, *source_, SerialFor).ok());
    ASSERT_TRUE(dying.dead());
    std::unique_ptr<Filter> restored;
    ASSERT_OK(Restore(&restored));
    EXPECT_TRUE(AsSliding(*restored) == *source_);

    // The next save dies at its first new file, after finishing the
    // renames of the save it found.
    DyingFileSystem dies_writing(/*renames=*/-1, /*new_files=*/0);
    std::vector<std::string> log;
    ASSERT_FALSE(SaveFilterCheckpoint(
                     &dies_writing, basename_, *MakeSliding(3000, 7),
                     SerialFor, [&log](const std::string& line) {
                       log.push_back(line);
                     })
                     .ok());
    const std::vector<std::string> names = ListDir(dir_);
    EXPECT_EQ(names.size(), 7u);
    for (const std::string& name : names) {
      EXPECT_FALSE(Contains(name, "-tmp-")) << name;
    }
    bool finished = false;
    for (const std::string& line : log) {
      finished = finished || Contains(line, "finishing a save interrupted");
    }
    EXPECT_TRUE(finished);
    ASSERT_OK(Restore(&restored));
    EXPECT_TRUE(AsSliding(*restored) == *source_);
  }
}

// A save killed while writing its splits is ignored: the previous one is
// read.
TEST_F(CheckpointTest, SaveKilledWhileWritingLeavesThePreviousSave) {
  ASSERT_OK(Save(*source_));
  std::unique_ptr<Filter> previous;
  ASSERT_OK(Restore(&previous));
  Workload(source_.get(), 3, 500);
  for (int point = 0; point < 7; point += 3) {
    // Killed at a new file, or in the middle of writing one (half of the
    // append written: its meta record is whole). At point 6 every other
    // split is written.
    for (const bool mid_file : {false, true}) {
      DyingFileSystem dying(/*renames=*/-1, mid_file ? -1 : point,
                            mid_file ? point : -1);
      ASSERT_FALSE(
          SaveFilterCheckpoint(&dying, basename_, *source_, SerialFor).ok());
      std::unique_ptr<Filter> restored;
      ASSERT_OK(Restore(&restored));
      EXPECT_TRUE(AsSliding(*restored) == AsSliding(*previous))
          << "killed at " << (mid_file ? "append " : "new file ") << point;
    }
  }
}

TEST_F(CheckpointTest, StaleTemporariesAreIgnoredAndDeleted) {
  ASSERT_OK(Save(*source_));
  WriteBytes(File(0) + "-tmp-12345", "partial");
  WriteBytes(File(6, 9) + "-tmp-abc", "partial");
  WriteBytes(dir_ + "/hash_filter_01-00000-of-00001", "another basename");
  WriteBytes(dir_ + "/hash_filter_0-00000-of-00007.bak", "not ours");
  std::unique_ptr<Filter> restored;
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == *source_);
  ASSERT_OK(Save(*source_));
  const std::vector<std::string> names = ListDir(dir_);
  EXPECT_EQ(names.size(), 9u);
  for (const std::string& name : names) {
    EXPECT_FALSE(Contains(name, "-tmp-")) << name;
  }
}

// The basename's first save killed while writing left temporaries and no
// save to tell them by: the next save deletes them once it is complete.
TEST_F(CheckpointTest, FirstSaveDeletesAKilledSavesTemporaries) {
  WriteBytes(File(0) + "-tmp-12345", "whole, of a save never finished");
  WriteBytes(File(3, 9) + "-tmp-abc.partial", "cut");
  std::unique_ptr<Filter> restored;
  EXPECT_EQ(Restore(&restored).code(), StatusCode::kNotFound);
  ASSERT_OK(Save(*source_));
  const std::vector<std::string> names = ListDir(dir_);
  EXPECT_EQ(names.size(), 7u);
  for (const std::string& name : names) {
    EXPECT_FALSE(Contains(name, "-tmp-")) << name;
  }
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == *source_);
}

TEST_F(CheckpointTest, AnotherSplitCountReplacesTheEarlierFiles) {
  ASSERT_OK(Save(*source_));
  std::unique_ptr<SlidingHashFilter> five = MakeSliding(3000, 5);
  Workload(five.get(), 7, 3000);
  ASSERT_OK(Save(*five));
  EXPECT_EQ(ListDir(dir_).size(), 5u);
  std::unique_ptr<Filter> restored;
  ASSERT_OK(Restore(&restored, MakeSliding(3000, 5).get()));
  EXPECT_TRUE(AsSliding(*restored) == *five);
}

// A save on a clock behind the last saver's, whose deletion of the files
// of another split count failed: its time is still past theirs, so
// restores read it.
TEST_F(CheckpointTest, ASaveOnAClockBehindIsReadBeforeTheOlderSaveItLeft) {
  class UndeletableFileSystem : public PosixFileSystem {
   public:
    Status DeleteFile(const std::string& path) override {
      return InternalError("cannot delete " + path);
    }
  };
  UndeletableFileSystem fs;
  const int64_t now = hash_table::NowMicros();
  ASSERT_OK(SaveFilterCheckpoint(&fs, basename_, *source_, ThreadFor, nullptr,
                                 [now] { return now + 3600 * 1000000LL; }));
  std::unique_ptr<SlidingHashFilter> five = MakeSliding(3000, 5);
  Workload(five.get(), 7, 3000);
  ASSERT_OK(SaveFilterCheckpoint(&fs, basename_, *five, ThreadFor, nullptr,
                                 [now] { return now; }));
  EXPECT_EQ(ListDir(dir_).size(), 12u);
  std::unique_ptr<Filter> restored;
  ASSERT_OK(Restore(&restored, MakeSliding(3000, 5).get()));
  EXPECT_TRUE(AsSliding(*restored) == *five);
}

TEST_F(CheckpointTest, TwoSplitCountsPresent) {
  // A 7-split save, then a 5-split one killed before it deleted the 7
  // files: both complete; the newer is read.
  ASSERT_OK(Save(*source_));
  std::vector<std::string> seven(7);
  for (int k = 0; k < 7; ++k) seven[k] = ReadBytes(File(k));
  std::unique_ptr<SlidingHashFilter> five = MakeSliding(3000, 5);
  Workload(five.get(), 7, 3000);
  ASSERT_OK(Save(*five));
  for (int k = 0; k < 7; ++k) WriteBytes(File(k), seven[k]);
  std::unique_ptr<Filter> restored;
  Status s = Restore(&restored, MakeSliding(3000, 5).get());
  ASSERT_OK(s);
  EXPECT_TRUE(AsSliding(*restored) == *five);
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "has 5 splits")) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "has 7 splits")) << s.ToString();

  // An incomplete set of another count (a save killed while renaming) is
  // ignored.
  ASSERT_OK(fs_.DeleteFile(FilterCheckpointFileName(basename_, 3, 5)));
  s = Restore(&restored);
  ASSERT_OK(s);
  EXPECT_TRUE(AsSliding(*restored) == *source_);

  // Neither complete.
  ASSERT_OK(fs_.DeleteFile(File(6)));
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "is incomplete")) << s.ToString();

  // Two complete sets without save times (the original's) cannot be
  // ordered.
  std::vector<test_util::SplitRecords> saved;
  ASSERT_OK(test_util::SaveAll(*source_, &saved));
  for (int k = 0; k < 7; ++k) WriteBytes(File(k), FrameAll(saved[k]));
  ASSERT_OK(test_util::SaveAll(*five, &saved));
  for (int k = 0; k < 5; ++k) {
    WriteBytes(FilterCheckpointFileName(basename_, k, 5), FrameAll(saved[k]));
  }
  s = Restore(&restored);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "5 and 7 splits")) << s.ToString();

  // Ours beside a complete set of the original's (the first save after a
  // migration, killed before it deleted the original's files): ours is the
  // newer.
  ASSERT_OK(Save(*five));
  ASSERT_OK(test_util::SaveAll(*source_, &saved));
  for (int k = 0; k < 7; ++k) WriteBytes(File(k), FrameAll(saved[k]));
  s = Restore(&restored, MakeSliding(3000, 5).get());
  ASSERT_OK(s);
  EXPECT_TRUE(AsSliding(*restored) == *five);

  // One count's files unreachable (a storage error): that error, with its
  // code (it read as FailedPrecondition, "unreadable" files).
  class UnreachableSevenSplits : public PosixFileSystem {
   public:
    Status NewRandomAccessFile(
        const std::string& path,
        std::unique_ptr<hash_table::RandomAccessFile>* file) override {
      if (path.find("-of-00007") != std::string::npos) {
        return Status(StatusCode::kUnavailable, "injected: cannot reach " +
                                                    path);
      }
      return PosixFileSystem::NewRandomAccessFile(path, file);
    }
  } unreachable;
  s = RestoreFilterCheckpoint(&unreachable, basename_, *MakeSliding(3000, 5),
                              SerialFor, &restored);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "cannot read the 7-split files"))
      << s.ToString();
}

// Our save over the original's files, killed after writing every split and
// before its first rename to a final name: ours is the newer, read through
// its temporaries.
TEST_F(CheckpointTest, AKilledSaveOfOursBeatsTheOriginalsFiles) {
  std::vector<test_util::SplitRecords> saved;
  ASSERT_OK(test_util::SaveAll(*source_, &saved));
  for (int k = 0; k < 7; ++k) WriteBytes(File(k), FrameAll(saved[k]));
  std::unique_ptr<Filter> newer = source_->Clone();
  Workload(newer.get(), 11, 500);
  DyingFileSystem dying(/*renames=*/7, /*new_files=*/-1);
  ASSERT_FALSE(SaveFilterCheckpoint(&dying, basename_, *newer, SerialFor).ok());
  ASSERT_TRUE(dying.dead());
  std::unique_ptr<Filter> restored;
  const Status s = Restore(&restored);
  ASSERT_OK(s);
  EXPECT_TRUE(AsSliding(*restored) == AsSliding(*newer));
  EXPECT_FALSE(AsSliding(*restored) == *source_);
}

// A file system that cannot read the final names (a storage outage) while
// the temporaries of an older, interrupted save are there: the restore
// fails with the storage error instead of reading the older save.
TEST_F(CheckpointTest, AStorageErrorOnTheFinalFilesIsNotHiddenByTemporaries) {
  std::unique_ptr<Filter> older = source_->Clone();
  DyingFileSystem dying(/*renames=*/7, /*new_files=*/-1);
  ASSERT_FALSE(SaveFilterCheckpoint(&dying, basename_, *older, SerialFor).ok());
  ASSERT_TRUE(dying.dead());
  // The newer save's files go beside the temporaries by hand (a save would
  // finish the interrupted one's renames first).
  Workload(source_.get(), 12, 500);
  const std::string other = dir_ + "/newer";
  ASSERT_OK(SaveFilterCheckpoint(&fs_, other + "/hash_filter_0", *source_,
                                 SerialFor));
  for (int k = 0; k < 7; ++k) {
    WriteBytes(File(k), ReadBytes(FilterCheckpointFileName(
                            other + "/hash_filter_0", k, 7)));
  }
  class UnreadableFinalNames : public PosixFileSystem {
   public:
    Status NewRandomAccessFile(
        const std::string& path,
        std::unique_ptr<hash_table::RandomAccessFile>* file) override {
      if (path.find("-tmp-") == std::string::npos) {
        return Status(code, "injected: cannot reach " + path);
      }
      return PosixFileSystem::NewRandomAccessFile(path, file);
    }
    StatusCode code = StatusCode::kUnavailable;
  } unreadable;
  std::unique_ptr<Filter> restored;
  Status s = RestoreFilterCheckpoint(&unreadable, basename_,
                                     *MakeSliding(3000, 7), SerialFor,
                                     &restored);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "injected: cannot reach")) << s.ToString();
  // Listed and not found when opened (a dangling link): Internal, not a
  // missing file read past for the temporaries.
  unreadable.code = StatusCode::kNotFound;
  s = RestoreFilterCheckpoint(&unreadable, basename_, *MakeSliding(3000, 7),
                              SerialFor, &restored);
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "is listed and cannot be read"))
      << s.ToString();
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == *source_);
}

// A split rewritten between the restore's two reads of it (a save to the
// same basename meanwhile): Aborted, retried as a checkpoint that changed
// while it was read, not damage.
TEST_F(CheckpointTest, ASplitRewrittenWhileRestoredIsAborted) {
  ASSERT_OK(Save(*source_));
  std::unique_ptr<Filter> newer = source_->Clone();
  Workload(newer.get(), 5, 500);
  const std::string other = dir_ + "/other/hash_filter_0";
  ASSERT_OK(SaveFilterCheckpoint(&fs_, other, *newer, SerialFor));
  // Serves split 0 as it was at its first opening, then as the other
  // save's split 0.
  class RewritingFileSystem : public PosixFileSystem {
   public:
    RewritingFileSystem(std::string path, std::string replacement)
        : path_(std::move(path)), replacement_(std::move(replacement)) {}
    Status NewRandomAccessFile(
        const std::string& path,
        std::unique_ptr<hash_table::RandomAccessFile>* file) override {
      if (path == path_ && ++opens_ == 2) WriteBytes(path_, replacement_);
      return PosixFileSystem::NewRandomAccessFile(path, file);
    }

   private:
    const std::string path_;
    const std::string replacement_;
    int opens_ = 0;
  } rewriting(File(0), ReadBytes(FilterCheckpointFileName(other, 0, 7)));
  std::unique_ptr<Filter> restored;
  const Status s = RestoreFilterCheckpoint(
      &rewriting, basename_, *MakeSliding(3000, 7), SerialFor, &restored);
  EXPECT_EQ(s.code(), StatusCode::kAborted) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), File(0) + " changed while it was being "
                                              "restored"))
      << s.ToString();
}

// A basename naming another checkpoint's files (a table's meta files at
// "x.meta", shard files at "x-00000-of-00007") is refused, nothing written.
TEST_F(CheckpointTest, ASaveAtABasenameNamingOthersFilesIsRefused) {
  ASSERT_OK(Save(*source_));
  const std::vector<std::string> before = ListDir(dir_);
  for (const std::string& basename :
       {basename_ + ".meta", basename_ + "-00000-of-00007"}) {
    const Status s = SaveFilterCheckpoint(&fs_, basename, *source_, SerialFor);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "hash filter checkpoint basename \"" +
                                          basename + "\""))
        << s.ToString();
  }
  EXPECT_EQ(ListDir(dir_), before);
}

TEST_F(CheckpointTest, FailedSaveKeepsThePreviousOneAndLeavesNoTemporaries) {
  ASSERT_OK(Save(*source_));
  std::unique_ptr<Filter> changed = source_->Clone();
  Workload(changed.get(), 3, 1000);
  FailingFileSystem failing;
  failing.fail_opens_at = 4;
  Status s = SaveFilterCheckpoint(&failing, basename_, *changed, SerialFor);
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "split 4 of 7")) << s.ToString();
  EXPECT_EQ(ListDir(dir_).size(), 7u);
  std::unique_ptr<Filter> restored;
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == *source_);

  // A rename to a final name failing midway (after the 7 renames from
  // ".partial" and 3 final ones) keeps the 4 temporaries that complete the
  // save: it is restored whole, not refused as a mix.
  FailingFileSystem failing_rename;
  failing_rename.fail_renames_at = 7 + 3;
  s = SaveFilterCheckpoint(&failing_rename, basename_, *changed, SerialFor);
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "failed while giving its splits"))
      << s.ToString();
  EXPECT_EQ(ListDir(dir_).size(), 7u + 4u);
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == AsSliding(*changed));

  // The first rename to a final name fails after deleting its target (as
  // TF's HDFS rename can), after the 4 renames that finish the save above
  // and 7 from ".partial": the temporaries complete the save, which is
  // restored, not NotFound for the deleted split.
  std::unique_ptr<Filter> changed_again = changed->Clone();
  Workload(changed_again.get(), 5, 1000);
  FailingFileSystem deleting_rename;
  deleting_rename.fail_renames_at = 4 + 7;
  deleting_rename.delete_target_on_failed_rename = true;
  s = SaveFilterCheckpoint(&deleting_rename, basename_, *changed_again,
                           SerialFor);
  EXPECT_EQ(s.code(), StatusCode::kInternal) << s.ToString();
  EXPECT_EQ(ListDir(dir_).size(), 6u + 7u);
  ASSERT_OK(Restore(&restored));
  EXPECT_TRUE(AsSliding(*restored) == AsSliding(*changed_again));
}

TEST(FilterCheckpointTest, BadArguments) {
  PosixFileSystem fs;
  std::unique_ptr<SlidingHashFilter> filter = MakeSliding(300, 3);
  EXPECT_EQ(SaveFilterCheckpoint(&fs, "", *filter, SerialFor).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(SaveFilterCheckpoint(&fs, "/tmp/dir/", *filter, SerialFor).code(),
            StatusCode::kInvalidArgument);
  std::unique_ptr<Filter> restored;
  EXPECT_EQ(
      RestoreFilterCheckpoint(&fs, "", *filter, SerialFor, &restored).code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(RestoreFilterCheckpoint(&fs, "/tmp/x", *filter, SerialFor, nullptr)
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(FilterCheckpointFileName("a/b", 3, 12), "a/b-00003-of-00012");
}

TEST(FilterCheckpointTest, SoftwareCrcMatchesTheKnownVector) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
