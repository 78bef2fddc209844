// Initializers of embedding entry segments: zeros, ones, constants and
// random_uniform. NewInitializer (initializer_interface.h) builds one from an
// InitializerConfig; the functions below build them directly.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_H_

#include <cstdint>
#include <memory>

#include "monolith/native_training/runtime/hash_table/initializer/initializer_interface.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

// Fills |dim| floats with |value| (zeros: 0, ones: 1). InvalidArgument for
// dim <= 0 or a NaN/inf value.
Status NewConstantsInitializer(int dim, float value,
                               std::unique_ptr<InitializerInterface>* out);

// Draws |dim| floats uniformly from [minval, maxval), each from its own
// InitBits (the table's seed, the id, the float's column). minval ==
// maxval gives that constant. InvalidArgument for dim <= 0,
// a NaN/inf bound or minval > maxval.
Status NewRandomUniformInitializer(int dim, float minval, float maxval,
                                   std::unique_ptr<InitializerInterface>* out);

// One initializer over first's dims followed by second's (an entry with
// several segments). Both must be non-null.
std::unique_ptr<InitializerInterface> CombineInitializers(
    std::unique_ptr<InitializerInterface> first,
    std::unique_ptr<InitializerInterface> second);

// The float that random_uniform maps 64 random bits |bits| to:
// minval + (maxval - minval) * u with u = (bits >> 11) * 2^-53 in [0, 1),
// computed in double and rounded to float, then kept below maxval. Exposed so
// tests can check draws exactly.
float UniformFromBits(uint64_t bits, float minval, float maxval);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_INITIALIZER_INITIALIZER_H_
