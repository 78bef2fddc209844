// A small seedable pseudo-random engine (xorshift128+, Vigna 2014) for the
// probabilistic filter: deterministic for a given seed, so tests can check
// exact decisions. Not for cryptography. Not thread-safe.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_XORSHIFT_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_XORSHIFT_H_

#include <cstdint>

namespace monolith {
namespace hash_filter {

class XorShift128Plus {
 public:
  // Any seed works (0 included): the state is filled by splitmix64 from it,
  // which never yields an all-zero state for two consecutive outputs.
  explicit XorShift128Plus(uint64_t seed) {
    uint64_t x = seed;
    s0_ = SplitMix64(&x);
    s1_ = SplitMix64(&x);
    if (s0_ == 0 && s1_ == 0) s1_ = 1;
  }

  uint64_t Next64() {
    uint64_t s1 = s0_;
    const uint64_t s0 = s1_;
    const uint64_t result = s0 + s1;
    s0_ = s0;
    s1 ^= s1 << 23;
    s1_ = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return result;
  }

  // The high half of Next64 (xorshift128+'s low bits are its weakest).
  uint32_t Next32() { return static_cast<uint32_t>(Next64() >> 32); }

 private:
  static uint64_t SplitMix64(uint64_t* x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  uint64_t s0_;
  uint64_t s1_;
};

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_XORSHIFT_H_
