#include "monolith/native_training/runtime/hash_table/status.h"

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace {

TEST(StatusTest, ToStringNamesTheCode) {
  EXPECT_EQ(Status::OK().ToString(), "OK");
  EXPECT_EQ(DataLossError("cut").ToString(), "DATA_LOSS: cut");
  EXPECT_EQ(Status(StatusCode::kUnauthenticated, "who").ToString(),
            "UNAUTHENTICATED: who");
}

TEST(StatusTest, ToStringOfAnUnknownCodeSaysItsNumber) {
  // A code cast from another library's: it read past the names (and
  // crashed far past them).
  for (int code : {17, -1, 100000}) {
    EXPECT_EQ(Status(static_cast<StatusCode>(code), "m").ToString(),
              "UNKNOWN_CODE(" + std::to_string(code) + "): m");
  }
}

TEST(StatusTest, IsOkSaysTheStatusOfAFailure) {
  EXPECT_TRUE(IsOk(Status::OK()));
  const ::testing::AssertionResult failed = IsOk(DataLossError("cut"));
  EXPECT_FALSE(failed);
  EXPECT_STREQ(failed.message(), "DATA_LOSS: cut");
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
