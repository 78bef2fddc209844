// Bytes written by Python's protobuf parse in C++ into the same message that
// C++ reads from the shared text-format source, and C++ re-serializes them to
// the very same bytes. Also proves the toolchain: generated code from protoc
// 31.1 compiled against TF's protobuf headers, linked through
// libtensorflow_framework.so.2.
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "google/protobuf/text_format.h"
#include "idl/matrix/proto/example.pb.h"
#include "idl/matrix/proto/proto_parser.pb.h"
#include "protos/testing/proto_messages.h"

namespace monolith {
namespace protos {
namespace {

// This file's folder in the test's runfiles (the working directory): as
// compiled, in this repository or, where another workspace runs the test,
// in external/<repository>/, whose runfiles are ../<repository>/.
std::string TestDataDir() {
  std::string dir = __FILE__;
  dir.erase(dir.rfind('/') + 1);
  const std::string external = "external/";
  if (dir.compare(0, external.size(), external) == 0) {
    dir.replace(0, external.size(), "../");
  }
  return dir;
}

std::string ReadTestFile(const std::string& name) {
  const std::string path = TestDataDir() + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

class ParityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ParityTest, PythonBytesParseAndReserializeIdentically) {
  const std::string type = GetParam();
  const std::string stem = type == "Example"        ? "example"
                           : type == "ExampleBatch" ? "example_batch"
                                                    : "instance";
  const std::string py_bytes = ReadTestFile(stem + ".py.bin");
  ASSERT_FALSE(py_bytes.empty());

  auto from_text = NewSampleMessage(type);
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      ReadTestFile(stem + ".pbtxt"), from_text.get()));
  auto from_python = NewSampleMessage(type);
  ASSERT_TRUE(from_python->ParseFromString(py_bytes));

  EXPECT_EQ(SerializeDeterministic(*from_python), py_bytes);
  EXPECT_EQ(SerializeDeterministic(*from_text), py_bytes);
  EXPECT_EQ(from_python->DebugString(), from_text->DebugString());
}

INSTANTIATE_TEST_SUITE_P(AllSampleFormats, ParityTest,
                         ::testing::Values("Example", "ExampleBatch",
                                           "Instance"));

TEST(ParityTest, ExampleFieldsSurviveTheCrossing) {
  monolith::io::proto::Example example;
  ASSERT_TRUE(example.ParseFromString(ReadTestFile("example.py.bin")));
  ASSERT_EQ(example.named_feature_size(), 5);
  const auto& fids = example.named_feature(0).feature().fid_v2_list();
  ASSERT_EQ(fids.value_size(), 2);
  EXPECT_EQ(fids.value(0), (uint64_t{1} << 48) + 1);
  EXPECT_EQ(fids.value(1), ~uint64_t{0});
  EXPECT_EQ(example.named_feature(3).feature().bytes_value(),
            std::string("\0\377raw", 5));
  EXPECT_EQ(example.named_feature(4).feature().int64_value(), INT64_MIN);
  EXPECT_EQ(example.line_id().uid(), 12345678901234567890ULL);
  EXPECT_FLOAT_EQ(example.line_id().sample_rate(), 0.25f);
  EXPECT_EQ(example.data_source_key(), 4294967295u);
  ASSERT_EQ(example.label_size(), 2);
  EXPECT_EQ(example.label(0), 1.0f);
}

TEST(ParityTest, InstanceFieldsSurviveTheCrossing) {
  parser::proto::Instance instance;
  ASSERT_TRUE(instance.ParseFromString(ReadTestFile("instance.py.bin")));
  ASSERT_EQ(instance.fid_size(), 3);
  EXPECT_EQ(instance.fid(1), (uint64_t{1} << 54) + 1);
  EXPECT_EQ(instance.line_id().chnid(), -3);
  // Unset proto2 default survives: sample_rate defaults to 1.0.
  EXPECT_FLOAT_EQ(instance.line_id().sample_rate(), 1.0f);
  ASSERT_EQ(instance.feature_size(), 2);
  EXPECT_EQ(instance.feature(1).int64_value(0), -1);
}

}  // namespace
}  // namespace protos
}  // namespace monolith
