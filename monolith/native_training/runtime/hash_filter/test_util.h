// Test helpers: Save/Restore through in-memory records (optionally as
// serialized bytes, the way the ops write them to files), id sets that
// never collide in a filter of a given size, a ParallelFor with a thread per
// index, and little-endian integers for hand-built file bytes.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_TEST_UTIL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_TEST_UTIL_H_

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "monolith/native_training/runtime/hash_filter/filter.h"
#include "monolith/native_training/runtime/hash_filter/hash_filter.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/hash_table/thread_for.h"

namespace monolith {
namespace hash_filter {
namespace test_util {

using ::monolith::hash_table::DataLossError;
using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::HashFilterSplitMetaDump;

// One split's records as Save wrote them, serialized (a record file's
// contents): records[0] is the meta record, the rest data records.
using SplitRecords = std::vector<std::string>;

inline Status SaveSplit(const Filter& filter, int split_idx,
                        SplitRecords* records) {
  records->clear();
  return filter.Save(
      split_idx,
      [records](const HashFilterSplitMetaDump& meta) {
        records->push_back(meta.SerializeAsString());
        return Status::OK();
      },
      [records](const HashFilterSplitDataDump& data) {
        records->push_back(data.SerializeAsString());
        return Status::OK();
      });
}

// Feeds |records| to Restore: records[0] to read_meta, the rest to
// read_data; an unparsable record is a DataLoss error of the callback.
inline Status RestoreSplit(Filter* filter, int split_idx,
                           const SplitRecords& records) {
  size_t next = 0;
  auto read_meta = [&](HashFilterSplitMetaDump* meta, bool* has_record) {
    *has_record = false;
    if (next >= records.size()) return Status::OK();
    if (!meta->ParseFromString(records[next++])) {
      return DataLossError("unparsable meta record");
    }
    *has_record = true;
    return Status::OK();
  };
  auto read_data = [&](HashFilterSplitDataDump* data, bool* has_record) {
    *has_record = false;
    if (next >= records.size()) return Status::OK();
    if (!data->ParseFromString(records[next++])) {
      return DataLossError("unparsable data record");
    }
    *has_record = true;
    return Status::OK();
  };
  return filter->Restore(split_idx, read_meta, read_data);
}

inline Status SaveAll(const Filter& filter, std::vector<SplitRecords>* all) {
  all->assign(filter.split_num(), {});
  for (int i = 0; i < filter.split_num(); ++i) {
    MONOLITH_RETURN_IF_ERROR(SaveSplit(filter, i, &(*all)[i]));
  }
  return Status::OK();
}

inline Status RestoreAll(Filter* filter, const std::vector<SplitRecords>& all) {
  for (size_t i = 0; i < all.size(); ++i) {
    MONOLITH_RETURN_IF_ERROR(RestoreSplit(filter, static_cast<int>(i), all[i]));
  }
  return Status::OK();
}

// |n| random ids whose home cells (mod |total_size|) are all different and
// whose signatures are all different and nonzero. In any HashFilter (or
// SlidingHashFilter split) of |total_size| cells such ids never share or
// probe past their home cell, so the filter counts them exactly: an exact
// map fid -> count is then a reference model. n <= total_size, n <= 4095.
inline std::vector<FID> CollisionFreeFids(uint64_t total_size, size_t n,
                                          uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::unordered_set<uint64_t> homes;
  std::unordered_set<uint16_t> signatures;
  std::vector<FID> fids;
  while (fids.size() < n) {
    const FID fid = rng();
    const uint64_t home = HashFilterPosition(fid) % total_size;
    const uint16_t sign = HashFilter::Signature(fid);
    if (sign == 0 || homes.count(home) || signatures.count(sign)) continue;
    homes.insert(home);
    signatures.insert(sign);
    fids.push_back(fid);
  }
  return fids;
}

// An id whose home cell in a filter of |total_size| cells is |home| and
// whose signature is |sign| (1..4095): the signature is bits 17..28 of the
// id, so those are set and the rest searched.
inline FID FidWithHomeAndSignature(uint64_t total_size, uint64_t home,
                                   uint16_t sign, std::mt19937_64* rng) {
  const FID sign_bits = static_cast<FID>(sign) << 17;
  const FID mask = ~(static_cast<FID>(HashFilter::kSignatureMask) << 17);
  while (true) {
    const FID fid = ((*rng)() & mask) | sign_bits;
    if (HashFilterPosition(fid) % total_size == home) return fid;
  }
}

using ::monolith::hash_table::ThreadFor;

// The low |bytes| bytes of |value|, little-endian (TFRecord's lengths and
// CRCs).
inline std::string Fixed(uint64_t value, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) {
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  }
  return out;
}

}  // namespace test_util
}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_TEST_UTIL_H_
