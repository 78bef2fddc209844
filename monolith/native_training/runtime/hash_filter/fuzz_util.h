// What the hash filter fuzz tests (restore_fuzz_test: Restore fed mutated
// records; filter_checkpoint_fuzz_test: checkpoint files mutated) share:
// random filters and workloads, extreme values, and the mutations of a meta
// or data record's fields. Built under AddressSanitizer only
// (:fuzz_util, linked with :hash_filter_asan); fuzz_util.cc also sets
// ASan's default options of the test binaries.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FUZZ_UTIL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FUZZ_UTIL_H_

#if !defined(__SANITIZE_ADDRESS__)
#if defined(__has_feature)
#if !__has_feature(address_sanitizer)
#error "the hash filter fuzz tests must be built with -fsanitize=address"
#endif
#else
#error "the hash filter fuzz tests must be built with -fsanitize=address"
#endif
#endif

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "monolith/native_training/runtime/hash_filter/filter.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"

namespace monolith {
namespace hash_filter {
namespace fuzz_util {

// A filter's configuration: a SlidingHashFilter or a plain HashFilter.
struct Config {
  bool sliding = true;
  uint64_t capacity = 0;
  int split_num = 0;
  double fill_rate = 0;
};

// The filter |config| describes (EXPECTs that it can be created).
std::unique_ptr<Filter> MakeFilter(const Config& config);

// Whether |a| and |b| are filters of one kind in the same state.
bool StateEquals(const Filter& a, const Filter& b);

// A random small configuration: three in four SlidingHashFilters (2 to 8
// splits, capacity 100 to 3099), else a HashFilter of capacity 1 to
// |max_hash_filter_capacity|.
Config RandomConfig(std::mt19937_64* rng, uint64_t max_hash_filter_capacity);

// |ops| random ShouldBeFiltered calls over a random id universe.
void Workload(Filter* filter, std::mt19937_64* rng, int ops);

// Usually a boundary value (0, 1, 2^31, 2^32, 2^64 - 1, ...), else random.
uint64_t Extreme(std::mt19937_64* rng);

// Sets a random field of |meta| (sizes, counts, fill rate, the ring's
// split_num, head and steps) to a random or extreme value, or clears the
// ring's meta; returns what it did.
std::string MutateMetaFields(hash_table::HashFilterSplitMetaDump* meta,
                             std::mt19937_64* rng);

// Sets a field of a random data record (records[1..]; records[0] is the
// meta record) of a split's serialized records (offset, a cell, cells
// added or cut) and serializes it again. Returns whether it changed
// |records| (not without a parsable data record); |what| says what it did.
bool MutateDataRecord(std::vector<std::string>* records, std::mt19937_64* rng,
                      std::string* what);

}  // namespace fuzz_util
}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FUZZ_UTIL_H_
