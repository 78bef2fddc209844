// Initial values of one segment of a new embedding entry.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_INTERFACE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_INTERFACE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "monolith/native_training/runtime/hash_table/initializer/initializer_config.pb.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

// SplitMix64, 8 bytes of state (the fp16 optimizers' stochastic rounding, a
// table's hash seed; initial values come from InitBits instead, init_bits.h).
// Satisfies UniformRandomBitGenerator, so it works with <random>'s
// distributions.
class RandomEngine {
 public:
  using result_type = uint64_t;

  explicit RandomEngine(uint64_t seed = 0) : state_(seed) {}

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~result_type{0}; }

  result_type operator()() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

// The hash seed of a table (CPU or GPU) of |seed| (MixId(id, hash seed)
// picks an id's places): drawn from it, so that it is none of the
// segments' initializer seeds (seed + i).
inline uint64_t TableHashSeed(uint64_t seed) { return RandomEngine(seed)(); }

class InitializerInterface {
 public:
  virtual ~InitializerInterface() = default;
  virtual std::string DebugString() const = 0;
  virtual int DimSize() const = 0;
  // Writes DimSize() initial values of a new entry of |id| to |num|, the
  // entry's floats from |column| on, random ones from InitBits(|seed|, id,
  // column of each).
  virtual void Initialize(float* num, uint64_t seed, int64_t id,
                          int column) const = 0;
};

// Builds the initializer for |config| over |dim| floats (|dim| overrides the
// config's dim_size). InvalidArgument for an unset or bad config.
Status NewInitializer(const InitializerConfig& config, int dim,
                      std::unique_ptr<InitializerInterface>* initializer);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_INTERFACE_H_
