// A consumer's C++ target links monolith's generated protos, and its own
// proto that holds one of them.
#include "consumer/ranked_example.pb.h"
#include "gtest/gtest.h"
#include "idl/matrix/proto/example.pb.h"

TEST(ProtoFromConsumer, RoundTrip) {
  monolith::io::proto::Example example;
  example.add_named_feature()->set_name("fc_slot_1");
  example.mutable_line_id()->set_uid(7);
  monolith::io::proto::Example parsed;
  ASSERT_TRUE(parsed.ParseFromString(example.SerializeAsString()));
  EXPECT_EQ(parsed.named_feature(0).name(), "fc_slot_1");
  EXPECT_EQ(parsed.line_id().uid(), 7u);
}

TEST(ProtoFromConsumer, OwnProtoHoldsMonolithsExample) {
  consumer::RankedExample ranked;
  ranked.mutable_example()->mutable_line_id()->set_uid(9);
  ranked.set_score(0.5f);
  consumer::RankedExample parsed;
  ASSERT_TRUE(parsed.ParseFromString(ranked.SerializeAsString()));
  EXPECT_EQ(parsed.example().line_id().uid(), 9u);
  EXPECT_EQ(parsed.score(), 0.5f);
}
