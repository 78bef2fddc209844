#include "monolith/native_training/runtime/hash_table/wire_reader.h"

#include <cstdint>
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

}  // namespace
}  // namespace hash_table
}  // namespace monolith
