// Tests' knobs from the environment (MONOLITH_FUZZ_SEED, ..._ITERATIONS):
// the integer an environment variable holds, or |fallback| where it is
// unset or empty.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TEST_ENV_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TEST_ENV_H_

#include <cstdint>
#include <cstdlib>

namespace monolith {
namespace hash_table {

inline int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::strtoll(value, nullptr, 10)
                                            : fallback;
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TEST_ENV_H_
