#include "monolith/native_training/runtime/hash_table/wire_reader.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"

namespace monolith {
namespace hash_table {
namespace {

// The varint protobuf writes for |value| (as EntryDump's time field) and
// what ReadVarint makes of it.
TEST(WireReaderTest, ReadsWhatProtobufWrites) {
  for (uint64_t value : {uint64_t{0}, uint64_t{1}, uint64_t{127},
                         uint64_t{128}, uint64_t{300}, uint64_t{1} << 35,
                         ~uint64_t{0}}) {
    EntryDump dump;
    dump.set_last_update_ts_sec(static_cast<int64_t>(value));
    const std::string bytes = dump.SerializeAsString();
    const char* begin = bytes.data() + 1;  // after the tag
    const char* end = bytes.data() + bytes.size();
    uint64_t read = 12345;
    EXPECT_EQ(ReadVarint(begin, end, &read), end) << value;
    EXPECT_EQ(read, value);
  }
}

TEST(WireReaderTest, StopsAtTheEndOfTheBuffer) {
  const std::string cut = "\x80\x80";  // continuation bits, then nothing
  uint64_t value = 7;
  EXPECT_EQ(ReadVarint(cut.data(), cut.data() + cut.size(), &value), nullptr);
  EXPECT_EQ(ReadVarint(cut.data(), cut.data(), &value), nullptr);
  EXPECT_EQ(value, 7u);
}

TEST(WireReaderTest, RejectsVarintsLongerThanTenBytes) {
  const std::string overlong(11, '\x80');
  uint64_t value = 0;
  EXPECT_EQ(ReadVarint(overlong.data(), overlong.data() + overlong.size(),
                       &value),
            nullptr);
  // Ten bytes is the longest: the last may only carry the top bit.
  const std::string ten = std::string(9, '\xff') + "\x01";
  EXPECT_EQ(ReadVarint(ten.data(), ten.data() + ten.size(), &value),
            ten.data() + ten.size());
  EXPECT_EQ(value, ~uint64_t{0});
}

// EntryDump records as protobuf writes them: the id (field 1, tag 0x09)
// first, negative and extreme ids included.
TEST(WireReaderTest, ReadsTheIdOfEntryDumps) {
  for (int64_t id : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{-7},
                     std::numeric_limits<int64_t>::min(),
                     std::numeric_limits<int64_t>::max(),
                     (int64_t{1} << 40) + 3}) {
    EntryDump dump;
    dump.set_id(id);
    dump.add_num(1.5f);
    dump.add_num(-2.0f);
    dump.mutable_opt()->add_dump()->mutable_adagrad()->add_norm(0.25f);
    dump.set_last_update_ts_sec(1234567);
    const std::string bytes = dump.SerializeAsString();
    ASSERT_EQ(bytes[0], '\x09');
    int64_t read = 42;
    EXPECT_TRUE(ReadEntryDumpId(bytes.data(), bytes.size(), &read)) << id;
    EXPECT_EQ(read, id);
  }
}

TEST(WireReaderTest, TheLastIdFieldWinsAndAMissingIdIsZero) {
  EntryDump first, second;
  first.set_id(5);
  first.add_num(1.0f);
  second.set_last_update_ts_sec(9);
  second.set_id(-9);
  // Concatenated messages merge: the later id wins, as in parsing.
  const std::string both = first.SerializeAsString() +
                           second.SerializeAsString();
  EntryDump parsed;
  ASSERT_TRUE(parsed.ParseFromString(both));
  int64_t read = 0;
  EXPECT_TRUE(ReadEntryDumpId(both.data(), both.size(), &read));
  EXPECT_EQ(read, parsed.id());
  EXPECT_EQ(read, -9);

  EntryDump no_id;
  no_id.add_num(3.0f);
  no_id.set_last_update_ts_sec(1);
  const std::string bytes = no_id.SerializeAsString();
  read = 7;
  EXPECT_TRUE(ReadEntryDumpId(bytes.data(), bytes.size(), &read));
  EXPECT_EQ(read, 0);
  EXPECT_TRUE(ReadEntryDumpId(bytes.data(), 0, &read));
  EXPECT_EQ(read, 0);
}

TEST(WireReaderTest, RefusesRecordsItCannotVouchFor) {
  EntryDump dump;
  dump.set_id(12);
  dump.add_num(1.0f);
  dump.set_last_update_ts_sec(300);
  const std::string bytes = dump.SerializeAsString();
  int64_t read = 99;
  // Cut off anywhere inside a field.
  for (size_t size : {size_t{1}, size_t{5}, size_t{8}, size_t{10},
                      bytes.size() - 1}) {
    EXPECT_FALSE(ReadEntryDumpId(bytes.data(), size, &read)) << size;
  }
  // A group (field 100, wire types 3 and 4), field number 0, wire type 7.
  const std::string group = bytes + "\xa3\x06\xa4\x06";
  EXPECT_FALSE(ReadEntryDumpId(group.data(), group.size(), &read));
  const std::string zero_field = bytes + std::string("\x00\x01", 2);
  EXPECT_FALSE(ReadEntryDumpId(zero_field.data(), zero_field.size(), &read));
  const std::string bad_type = bytes + "\x0f";
  EXPECT_FALSE(ReadEntryDumpId(bad_type.data(), bad_type.size(), &read));
  EXPECT_EQ(read, 99);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
