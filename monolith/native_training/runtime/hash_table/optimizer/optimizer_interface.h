// The optimizer of one segment of an embedding entry.
//
// An entry stores, per segment, `DimSize()` fp32 values ("num") and
// `StateBytes()` bytes of optimizer state; the entry accessor owns the layout
// and hands each optimizer its own num and state. Optimizers hold only their
// immutable config, so one instance serves every entry and every thread.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERFACE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERFACE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "monolith/native_training/runtime/hash_table/optimizer/optimizer.pb.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/hash_table/wire_writer.h"

namespace monolith {
namespace hash_table {

class OptimizerInterface {
 public:
  virtual ~OptimizerInterface() = default;

  // E.g. "Adagrad(D=16)".
  virtual std::string DebugString() const = 0;

  // Floats of num (and of grad) this optimizer updates.
  virtual int DimSize() const = 0;

  // Learning rates it consumes per update (one per optimizer).
  virtual int SliceSize() const { return 1; }

  // Bytes of per-entry state; a multiple of sizeof(float). State is 4-byte
  // aligned only: read wider fields (int64) with memcpy.
  virtual int64_t StateBytes() const = 0;

  // How many SingleOptimizerDump entries Save appends.
  virtual int DumpSize() const { return 1; }

  // Sets the state of a new entry.
  virtual void Init(void* state) const = 0;

  // Updates |num| (DimSize() floats) from |grad| (DimSize() floats) with
  // |learning_rates| (SliceSize() floats). |global_step| is the training
  // step, used by step-dependent optimizers and by warmup_steps.
  virtual void Optimize(void* state, float* num, const float* grad,
                        const float* learning_rates,
                        int64_t global_step) const = 0;

  // Writes DumpSize() OptimizerDump.dump fields (SingleOptimizerDump
  // messages) describing |state|: the wire bytes a save puts in an entry's
  // OptimizerDump, byte for byte what protobuf would serialize.
  virtual void WriteDump(const void* state, WireWriter* out) const = 0;

  // Sets |state| from dump.dump(first) .. dump.dump(first + DumpSize() - 1).
  // Fails, leaving |state| unspecified, when the dump is of another optimizer
  // or of another dim.
  virtual Status Restore(const OptimizerDump& dump, int first,
                         void* state) const = 0;
};

// Builds the optimizer for |config| over |dim| floats (|dim| overrides the
// config's dim_size). InvalidArgument for an unset or bad config.
Status NewOptimizer(const OptimizerConfig& config, int dim,
                    std::unique_ptr<OptimizerInterface>* optimizer);

// The warmup_steps of |config|'s optimizer, over which NewOptimizer ramps
// the learning rate up; 0 for an optimizer without the field, or none.
int64_t OptimizerWarmupSteps(const OptimizerConfig& config);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_INTERFACE_H_
