// EXPECT_OK / ASSERT_OK for tests: on failure they print the Status (code
// and message), where EXPECT_TRUE(status.ok()) says only "false".
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_STATUS_MATCHERS_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_STATUS_MATCHERS_H_

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

inline ::testing::AssertionResult IsOk(const Status& status) {
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << status.ToString();
}

}  // namespace hash_table
}  // namespace monolith

#define EXPECT_OK(expr) EXPECT_TRUE(::monolith::hash_table::IsOk(expr))
#define ASSERT_OK(expr) ASSERT_TRUE(::monolith::hash_table::IsOk(expr))

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_STATUS_MATCHERS_H_
