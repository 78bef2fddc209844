#include "monolith/native_training/runtime/hash_filter/probabilistic_filter.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace monolith {
namespace hash_filter {

namespace {

constexpr uint32_t kRandMax = std::numeric_limits<uint32_t>::max();

// p = 1 - epsilon^(1/threshold), in float as the original.
float EqualProbabilityP(int64_t threshold) {
  return 1.f - std::pow(ProbabilisticFilter::kEqualProbabilityEpsilon,
                        1.f / static_cast<float>(threshold));
}

// (2^32 - 1) * (1 - (1 - p)^count): the original's pow(float, int64) is
// computed in double.
double EqualProbabilityBound(int64_t count, int64_t threshold) {
  const float p = EqualProbabilityP(threshold);
  const double miss =
      std::pow(static_cast<double>(1.f - p), static_cast<double>(count));
  return static_cast<double>(kRandMax) * (1.0 - miss);
}

}  // namespace

bool ProbabilisticFilter::AdmitUnequalProbability(int64_t count,
                                                  int64_t threshold) {
  // In 128 bits: the original's int64 products overflow for huge values.
  const __int128 r = random_.Next32();
  return r * threshold < static_cast<__int128>(kRandMax) * count;
}

bool ProbabilisticFilter::AdmitEqualProbability(int64_t count,
                                                int64_t threshold) {
  const uint32_t r = random_.Next32();
  return static_cast<double>(r) < EqualProbabilityBound(count, threshold);
}

double ProbabilisticFilter::UnequalAdmissionProbability(int64_t count,
                                                        int64_t threshold) {
  if (threshold <= 0) return count > 0 ? 1.0 : 0.0;
  const double p = static_cast<double>(count) / static_cast<double>(threshold);
  return std::min(std::max(p, 0.0), 1.0);
}

double ProbabilisticFilter::EqualAdmissionProbability(int64_t count,
                                                      int64_t threshold) {
  const double bound = EqualProbabilityBound(count, threshold);
  return std::min(std::max(bound / static_cast<double>(kRandMax), 0.0), 1.0);
}

bool ProbabilisticFilter::ShouldBeFiltered(int64_t fid, int64_t count,
                                           int64_t threshold,
                                           const TableContains* table) {
  // Threshold 0 admits: its equal-probability bound is 2^32 - 1, which a
  // draw of 2^32 - 1 missed.
  if (threshold <= 0 || table == nullptr || table->Contains(fid)) {
    return false;
  }
  return equal_probability_ ? !AdmitEqualProbability(count, threshold)
                            : !AdmitUnequalProbability(count, threshold);
}

}  // namespace hash_filter
}  // namespace monolith
