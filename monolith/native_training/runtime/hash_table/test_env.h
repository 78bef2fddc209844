// Tests' knobs from the environment (MONOLITH_FUZZ_SEED, ..._ITERATIONS,
// ..._SECONDS): EnvInt reads one, FuzzBudget says how long a fuzz loop runs.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TEST_ENV_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TEST_ENV_H_

#include <chrono>
#include <cstdint>
#include <cstdlib>

namespace monolith {
namespace hash_table {

// The integer environment variable |name| holds, or |fallback| where it is
// unset or empty.
inline int64_t EnvInt(const char* name, int64_t fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::strtoll(value, nullptr, 10)
                                            : fallback;
}

// How long a fuzz loop runs, read the same way by every fuzz test: at most
// MONOLITH_FUZZ_ITERATIONS times |scale| iterations (unset:
// |default_iterations| times |scale|; 0: no limit) and at most
// MONOLITH_FUZZ_SECONDS seconds from construction (unset or 0: no limit).
// With no limit of either kind it runs the default. A long run names its
// seconds, e.g. MONOLITH_FUZZ_ITERATIONS=0 MONOLITH_FUZZ_SECONDS=600; every
// loop with a budget of its own spends them (each test of a binary, each
// config of the GPU records' test), so give --test_timeout room for all.
class FuzzBudget {
 public:
  explicit FuzzBudget(int64_t default_iterations, int64_t scale = 1)
      : iterations_(
            EnvInt("MONOLITH_FUZZ_ITERATIONS", default_iterations) * scale),
        seconds_(static_cast<double>(EnvInt("MONOLITH_FUZZ_SECONDS", 0))),
        start_(std::chrono::steady_clock::now()) {
    if (iterations_ <= 0 && seconds_ <= 0) {
      iterations_ = default_iterations * scale;
    }
  }

  // Whether iteration |i| (counted from 0) runs.
  bool Allows(int64_t i) const {
    if (iterations_ > 0 && i >= iterations_) return false;
    return seconds_ <= 0 || Seconds() < seconds_;
  }

  // Seconds since construction.
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         start_)
        .count();
  }

 private:
  int64_t iterations_;
  double seconds_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_TEST_ENV_H_
