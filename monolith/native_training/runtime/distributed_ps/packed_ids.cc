#include "monolith/native_training/runtime/distributed_ps/packed_ids.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

namespace monolith {
namespace distributed_ps {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the packed layout is read and written as host integers");

using ::monolith::hash_table::InvalidArgumentError;

// Bytes (1 to 8) that hold every value up to |range|.
int WidthOf(uint64_t range) {
  int width = 1;
  while (width < 8 && (range >> (8 * width)) != 0) ++width;
  return width;
}

// How many of n ids of kWidth bytes from |at| can be moved with whole
// 8-byte loads or stores that end by |end|: an 8-byte access per id is
// several times faster than one of kWidth bytes (which the CPU splits, and
// whose load after a partial store cannot be forwarded).
template <int kWidth>
int64_t WholeWords(const uint8_t* at, const uint8_t* end, int64_t n) {
  const int64_t room = end - at;
  return room < 8 ? 0 : std::min(n, (room - 8) / kWidth + 1);
}

// Each id's kWidth bytes; an 8-byte store also writes the next id's first
// bytes, which its own store (later, in order) overwrites.
template <int kWidth>
void PackTable(const int64_t* ids, int64_t n, uint64_t base, uint8_t* out,
               const uint8_t* end) {
  const int64_t whole = WholeWords<kWidth>(out, end, n);
  for (int64_t i = 0; i < whole; ++i) {
    const uint64_t delta = static_cast<uint64_t>(ids[i]) - base;
    std::memcpy(out + i * kWidth, &delta, 8);
  }
  for (int64_t i = whole; i < n; ++i) {
    const uint64_t delta = static_cast<uint64_t>(ids[i]) - base;
    std::memcpy(out + i * kWidth, &delta, kWidth);
  }
}

template <int kWidth>
void UnpackTable(const uint8_t* in, int64_t n, uint64_t base,
                 const uint8_t* end, int64_t* ids) {
  constexpr uint64_t kMask =
      kWidth == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * kWidth)) - 1;
  const int64_t whole = WholeWords<kWidth>(in, end, n);
  for (int64_t i = 0; i < whole; ++i) {
    uint64_t word;
    std::memcpy(&word, in + i * kWidth, 8);
    ids[i] = static_cast<int64_t>(base + (word & kMask));
  }
  for (int64_t i = whole; i < n; ++i) {
    uint64_t delta = 0;
    std::memcpy(&delta, in + i * kWidth, kWidth);
    ids[i] = static_cast<int64_t>(base + delta);
  }
}

// Calls fn.template operator()<W>() for width W in [1, 8].
template <typename Fn>
void ForWidth(int width, Fn fn) {
  switch (width) {
    case 1: return fn(std::integral_constant<int, 1>());
    case 2: return fn(std::integral_constant<int, 2>());
    case 3: return fn(std::integral_constant<int, 3>());
    case 4: return fn(std::integral_constant<int, 4>());
    case 5: return fn(std::integral_constant<int, 5>());
    case 6: return fn(std::integral_constant<int, 6>());
    case 7: return fn(std::integral_constant<int, 7>());
    default: return fn(std::integral_constant<int, 8>());
  }
}

uint64_t ReadLittle(const uint8_t* p, int bytes) {
  uint64_t value = 0;
  std::memcpy(&value, p, bytes);
  return value;
}

}  // namespace

Status PlanPack(const int64_t* ids, const std::vector<int64_t>& splits,
                PackPlan* plan) {
  if (splits.size() < 2) {
    return InvalidArgumentError(
        "packing ids: row splits need at least 2 values (one table), got " +
        std::to_string(splits.size()));
  }
  if (splits[0] != 0) {
    return InvalidArgumentError("packing ids: row splits must start at 0, got " +
                                std::to_string(splits[0]));
  }
  if (splits.back() > std::numeric_limits<int32_t>::max()) {
    return InvalidArgumentError("packing ids: " +
                                std::to_string(splits.back()) +
                                " ids; 2^31 - 1 fit");
  }
  const size_t tables = splits.size() - 1;
  plan->bases.assign(tables, 0);
  plan->widths.assign(tables, 1);
  plan->bytes = kPackedHeaderBytes * static_cast<int64_t>(tables);
  for (size_t t = 0; t < tables; ++t) {
    // Compared, not subtracted: splits far apart would overflow. From 0,
    // never decreasing and never past the last, each is in [0, 2^31).
    const bool below = splits[t + 1] < splits[t];
    if (below || splits[t + 1] > splits.back()) {
      return InvalidArgumentError(
          "packing ids: row splits[" + std::to_string(t + 1) + "] = " +
          std::to_string(splits[t + 1]) +
          (below ? " is below row splits[" + std::to_string(t) +
                       "] = " + std::to_string(splits[t])
                 : " is past the last (" + std::to_string(splits.back()) +
                       ")"));
    }
    const int64_t n = splits[t + 1] - splits[t];
    if (n == 0) continue;
    // Plain loops: they vectorize, std::minmax_element does not.
    int64_t lo = ids[splits[t]], hi = lo;
    for (int64_t i = splits[t]; i < splits[t + 1]; ++i) {
      lo = std::min(lo, ids[i]);
      hi = std::max(hi, ids[i]);
    }
    plan->bases[t] = static_cast<uint64_t>(lo);
    plan->widths[t] =
        WidthOf(static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo));
    plan->bytes += n * plan->widths[t];
  }
  return Status::OK();
}

void Pack(const int64_t* ids, const std::vector<int64_t>& splits,
          const PackPlan& plan, uint8_t* out) {
  const size_t tables = plan.bases.size();
  uint8_t* body = out + kPackedHeaderBytes * tables;
  const uint8_t* end = out + plan.bytes;
  for (size_t t = 0; t < tables; ++t) {
    const int64_t n = splits[t + 1] - splits[t];
    uint8_t* header = out + kPackedHeaderBytes * t;
    const uint32_t count = static_cast<uint32_t>(n);
    std::memset(header, 0, kPackedHeaderBytes);
    std::memcpy(header, &plan.bases[t], 8);
    std::memcpy(header + 8, &count, 4);
    header[12] = static_cast<uint8_t>(plan.widths[t]);
    ForWidth(plan.widths[t], [&](auto width) {
      PackTable<decltype(width)::value>(ids + splits[t], n, plan.bases[t],
                                        body, end);
    });
    body += n * plan.widths[t];
  }
}

Status ReadPackedHeader(const uint8_t* data, int64_t size, int num_tables,
                        PackedHeader* header) {
  if (num_tables < 1) {
    return InvalidArgumentError("packed ids: num_tables must be positive");
  }
  const int64_t header_bytes = kPackedHeaderBytes * num_tables;
  if (size < header_bytes) {
    return InvalidArgumentError(
        "packed ids: " + std::to_string(size) + " bytes, fewer than the " +
        std::to_string(header_bytes) + " of the headers of " +
        std::to_string(num_tables) + " tables");
  }
  header->bases.assign(num_tables, 0);
  header->widths.assign(num_tables, 0);
  header->splits.assign(static_cast<size_t>(num_tables) + 1, 0);
  header->offsets.assign(static_cast<size_t>(num_tables) + 1, header_bytes);
  for (int t = 0; t < num_tables; ++t) {
    const uint8_t* h = data + kPackedHeaderBytes * t;
    const std::string where = "packed ids: the header of table " +
                              std::to_string(t) + " (byte " +
                              std::to_string(kPackedHeaderBytes * t) + ")";
    header->bases[t] = ReadLittle(h, 8);
    const int64_t count = static_cast<int64_t>(ReadLittle(h + 8, 4));
    const int width = h[12];
    if (width < 1 || width > 8) {
      return InvalidArgumentError(where + " gives width " +
                                  std::to_string(width) + "; 1 to 8 fit");
    }
    if (h[13] != 0 || h[14] != 0 || h[15] != 0) {
      return InvalidArgumentError(where + " has nonzero padding");
    }
    header->widths[t] = width;
    // Counts < 2^32 and widths <= 8: no overflow while the totals are
    // checked against the size (< 2^63) table by table.
    header->splits[t + 1] = header->splits[t] + count;
    header->offsets[t + 1] = header->offsets[t] + count * width;
    if (header->splits[t + 1] > std::numeric_limits<int32_t>::max()) {
      return InvalidArgumentError(where + ": the ids number " +
                                  std::to_string(header->splits[t + 1]) +
                                  " or more; 2^31 - 1 fit");
    }
    if (header->offsets[t + 1] > size) {
      return InvalidArgumentError(
          where + " says its ids end at byte " +
          std::to_string(header->offsets[t + 1]) + ", past the " +
          std::to_string(size) + " bytes given");
    }
  }
  if (header->offsets[num_tables] != size) {
    return InvalidArgumentError(
        "packed ids: the headers account for " +
        std::to_string(header->offsets[num_tables]) + " bytes; " +
        std::to_string(size) + " are given");
  }
  return Status::OK();
}

void Unpack(const uint8_t* data, const PackedHeader& header, int64_t* ids) {
  const uint8_t* end = data + header.offsets.back();
  for (size_t t = 0; t < header.bases.size(); ++t) {
    const int64_t n = header.splits[t + 1] - header.splits[t];
    ForWidth(header.widths[t], [&](auto width) {
      UnpackTable<decltype(width)::value>(data + header.offsets[t], n,
                                          header.bases[t], end,
                                          ids + header.splits[t]);
    });
  }
}

}  // namespace distributed_ps
}  // namespace monolith
