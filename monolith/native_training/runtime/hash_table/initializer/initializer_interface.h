// Initial values of one segment of a new embedding entry.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_INTERFACE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_INTERFACE_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "monolith/native_training/runtime/hash_table/initializer/initializer_config.pb.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

// Random source of initializers. Callers own it (one per thread), so
// initializers stay stateless and tests can seed it.
using RandomEngine = std::mt19937_64;

class InitializerInterface {
 public:
  virtual ~InitializerInterface() = default;
  virtual std::string DebugString() const = 0;
  virtual int DimSize() const = 0;
  // Writes DimSize() initial values to |num|.
  virtual void Initialize(float* num, RandomEngine* rng) const = 0;
};

// Builds the initializer for |config| over |dim| floats (|dim| overrides the
// config's dim_size). InvalidArgument for an unset or bad config.
Status NewInitializer(const InitializerConfig& config, int dim,
                      std::unique_ptr<InitializerInterface>* initializer);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_INTERFACE_H_
