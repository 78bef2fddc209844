// Tests' ParallelFor with one thread per index, so that shards and splits
// really save and restore at once (production runs them on TF's worker
// threads); returns the first error by index.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_THREAD_FOR_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_THREAD_FOR_H_

#include <cstdint>
#include <functional>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

inline Status ThreadFor(int64_t n, const std::function<Status(int64_t)>& fn) {
  std::vector<Status> statuses(n);
  std::vector<std::thread> threads;
  threads.reserve(n);
  try {
    for (int64_t i = 0; i < n; ++i) {
      threads.emplace_back([&, i] { statuses[i] = fn(i); });
    }
  } catch (const std::exception& e) {
    // std::system_error or std::bad_alloc. The threads started run to
    // their end first (destroying a joinable one would end the process).
    for (std::thread& thread : threads) thread.join();
    return ResourceExhaustedError(std::string("ThreadFor: ") + e.what());
  }
  for (std::thread& thread : threads) thread.join();
  for (const Status& status : statuses) {
    if (!status.ok()) return status;
  }
  return Status::OK();
}

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_THREAD_FOR_H_
