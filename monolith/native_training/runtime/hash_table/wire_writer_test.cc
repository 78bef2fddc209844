#include "monolith/native_training/runtime/hash_table/wire_writer.h"

#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"

namespace monolith {
namespace hash_table {
namespace {

std::string Bytes(const WireWriter& w) { return std::string(w.data(), w.size()); }

std::vector<float> Values(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.5f * i - 7.25f;
  return v;
}

// An EntryDump written field by field, with |expected_opt| as the opt
// message's expected length, against protobuf's serialization.
void ExpectSameAsProtobuf(int dim, size_t expected_opt, int64_t time) {
  const std::vector<float> num = Values(dim);
  EntryDump dump;
  dump.set_id(-3);
  for (float f : num) dump.add_num(f);
  AdagradOptimizerDump* adagrad =
      dump.mutable_opt()->add_dump()->mutable_adagrad();
  for (float f : num) adagrad->add_norm(f + 1);
  dump.set_last_update_ts_sec(time);

  std::vector<float> norm = num;
  for (float& f : norm) f += 1;
  WireWriter w;
  w.Fixed64(EntryDump::kIdFieldNumber, -3);
  w.Floats(EntryDump::kNumFieldNumber, num.data(), dim);
  const size_t opt = w.BeginMessage(EntryDump::kOptFieldNumber, expected_opt);
  const size_t single = w.BeginMessage(OptimizerDump::kDumpFieldNumber);
  const size_t member = w.BeginMessage(SingleOptimizerDump::kAdagradFieldNumber,
                                       WireWriter::FloatsBytes(1, dim));
  w.Floats(AdagradOptimizerDump::kNormFieldNumber, norm.data(), dim);
  w.EndMessage(member);
  w.EndMessage(single);
  w.EndMessage(opt);
  w.Int64(EntryDump::kLastUpdateTsSecFieldNumber, time);
  EXPECT_EQ(Bytes(w), dump.SerializeAsString())
      << "dim " << dim << " expected_opt " << expected_opt;
}

TEST(WireWriterTest, WritesWhatProtobufWrites) {
  // Float counts around the 4-wide shuffle; nested lengths of 1, 2 and 3
  // bytes; expected lengths right, too short and too long; negative and
  // large times.
  for (int dim : {0, 1, 3, 4, 5, 7, 8, 25, 26, 64, 3277, 5000}) {
    for (size_t expected : {size_t{0}, size_t{200}, size_t{100000}}) {
      ExpectSameAsProtobuf(dim, expected, int64_t{1} << 40);
    }
  }
  ExpectSameAsProtobuf(16, 0, -1);
  ExpectSameAsProtobuf(16, 0, 0);
}

TEST(WireWriterTest, ReusesItsBufferAfterClear) {
  WireWriter w;
  const std::vector<float> v = Values(1000);
  w.Floats(2, v.data(), 1000);
  w.Clear();
  EXPECT_EQ(w.size(), 0u);
  w.Fixed64(1, 5);
  EntryDump dump;
  ASSERT_TRUE(dump.ParseFromArray(w.data(), static_cast<int>(w.size())));
  EXPECT_EQ(dump.id(), 5);
  EXPECT_EQ(dump.num_size(), 0);
}

TEST(WireWriterTest, FieldsFromSixteenTakeTwoByteTags) {
  WireWriter w;
  const float value = 1.5f;
  w.Floats(16, &value, 1);
  std::string expected = "\x85\x01";
  expected.append(reinterpret_cast<const char*>(&value), sizeof(value));
  EXPECT_EQ(Bytes(w), expected);
  EXPECT_EQ(WireWriter::FloatsBytes(16, 3), 18u);
  EXPECT_EQ(WireWriter::MessageBytes(3, 200), 203u);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
