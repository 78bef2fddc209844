// Optimizers that wrap another one. NewOptimizer (optimizer_interface.h)
// adds them from the config: the learning-rate warmup when a config's
// warmup_steps > 0, then float16 stochastic rounding when
// OptimizerConfig.stochastic_rounding_float16 is set. Both keep the wrapped optimizer's state
// layout and dump, so adding or removing one leaves checkpoints compatible.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_DECORATORS_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_DECORATORS_H_

#include <cstdint>
#include <memory>

#include "monolith/native_training/runtime/hash_table/optimizer/optimizer.pb.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

// ----------------------------------------------------------------- warmup

// min(1, global_step / warmup_steps), and 0 for global_step < 0; 1 when
// warmup_steps <= 0. Monolith's tables ignore warmup_steps; its model layer
// (feature.py) turned it into the learning rate
// PolynomialDecay(0 -> learning_rate over warmup_steps), the same ramp, for
// a segment given no learning-rate function.
float WarmupLearningRateScale(int64_t warmup_steps, int64_t global_step);

// |base| with every learning rate multiplied by WarmupLearningRateScale.
// |base| non-null; warmup_steps > 0.
std::unique_ptr<OptimizerInterface> NewWarmupOptimizer(
    std::unique_ptr<OptimizerInterface> base, int64_t warmup_steps);

// ---------------------------------------------------- stochastic rounding

// Rounds |v| to one of the two float16 values next to it, up with
// probability (v - down) / (up - down) when |u| is uniform in [0, 1), so that
// the expected result is v: returns up when u < (v - down) / (up - down).
// float16-representable values (and NaN, inf) come back unchanged; finite
// values beyond float16's range saturate to +-65504 (as Monolith's does in
// effect: its upper neighbour there is inf and is never chosen).
float StochasticRoundFloat16(float v, float u);

// Seeds the calling thread's stochastic-rounding generator (SplitMix64).
// Each thread has its own generator (thread_local), seeded on first use
// from its thread id and the generator's address unless seeded here (so
// not reproducible run to run); nothing is shared across threads.
void SeedStochasticRounding(uint64_t seed);

// The calling thread's next uniform in [0, 1) (24 random bits), the |u| that
// the decorator passes to StochasticRoundFloat16.
float NextStochasticRoundingUniform();

// |base| whose results num are stochastically rounded to float16 values
// after each update (state stays float32). |base| non-null.
std::unique_ptr<OptimizerInterface> NewStochasticRoundingFloat16Optimizer(
    std::unique_ptr<OptimizerInterface> base);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_DECORATORS_H_
