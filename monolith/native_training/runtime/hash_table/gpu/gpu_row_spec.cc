#include "monolith/native_training/runtime/hash_table/gpu/gpu_row_spec.h"

#include <memory>
#include <string>

#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/entry_accessor.h"
#include "monolith/native_training/runtime/hash_table/initializer/initializer_interface.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"

namespace monolith {
namespace hash_table {
namespace gpu {
namespace {

Status Unsupported(int index, const std::string& what) {
  return InvalidArgumentError("EntryConfig segment " + std::to_string(index) +
                              ": the GPU table " + what);
}

// Sets seg's initial values from |init| (validated by the accessor).
Status SetInitializer(int index, const InitializerConfig& init,
                      GpuSegment* seg) {
  switch (init.type_case()) {
    case InitializerConfig::kZeros:
      seg->init_min = seg->init_max = 0.0f;
      return Status::OK();
    case InitializerConfig::kOnes:
      seg->init_min = seg->init_max = 1.0f;
      return Status::OK();
    case InitializerConfig::kConstants:
      seg->init_min = seg->init_max = init.constants().constant();
      return Status::OK();
    case InitializerConfig::kRandomUniform:
      seg->init_min = init.random_uniform().minval();
      seg->init_max = init.random_uniform().maxval();
      return Status::OK();
    default:
      return Unsupported(index, "supports zeros, ones, constants and "
                                "random_uniform initializers");
  }
}

// adam's and amsgrad's fields (their configs have the same ones).
template <typename Config>
void SetAdamFamily(const Config& config, GpuSegment::Optimizer optimizer,
                   GpuSegment* seg) {
  seg->optimizer = optimizer;
  seg->beta1 = config.beta1();
  seg->beta2 = config.beta2();
  seg->epsilon = config.epsilon();
  seg->nesterov = config.use_nesterov();
  seg->weight_decay = config.weight_decay_factor();
}

Status SetOptimizer(int index, const OptimizerConfig& opt, GpuSegment* seg) {
  if (opt.stochastic_rounding_float16()) {
    return Unsupported(index, "does not do stochastic_rounding_float16");
  }
  switch (opt.type_case()) {
    case OptimizerConfig::kSgd:
      seg->optimizer = GpuSegment::Optimizer::kSgd;
      break;
    case OptimizerConfig::kAdagrad:
      seg->optimizer = GpuSegment::Optimizer::kAdagrad;
      seg->initial_accumulator = opt.adagrad().initial_accumulator_value();
      seg->weight_decay = opt.adagrad().weight_decay_factor();
      break;
    case OptimizerConfig::kAdam:
      SetAdamFamily(opt.adam(), GpuSegment::Optimizer::kAdam, seg);
      break;
    case OptimizerConfig::kAmsgrad:
      SetAdamFamily(opt.amsgrad(), GpuSegment::Optimizer::kAmsgrad, seg);
      break;
    case OptimizerConfig::kAdadelta: {
      const AdadeltaOptimizerConfig& adadelta = opt.adadelta();
      seg->optimizer = GpuSegment::Optimizer::kAdadelta;
      seg->momentum = adadelta.averaging_ratio();
      seg->epsilon = adadelta.epsilon();
      seg->weight_decay = adadelta.weight_decay_factor();
      break;
    }
    case OptimizerConfig::kFtrl: {
      const FtrlOptimizerConfig& ftrl = opt.ftrl();
      seg->optimizer = GpuSegment::Optimizer::kFtrl;
      seg->initial_accumulator = ftrl.initial_accumulator_value();
      seg->beta = ftrl.beta();
      seg->l1 = ftrl.l1_regularization_strength();
      seg->l2 = ftrl.l2_regularization_strength();
      break;
    }
    case OptimizerConfig::kMomentum: {
      const MomentumOptimizerConfig& momentum = opt.momentum();
      seg->optimizer = GpuSegment::Optimizer::kMomentum;
      seg->momentum = momentum.momentum();
      seg->nesterov = momentum.use_nesterov();
      seg->weight_decay = momentum.weight_decay_factor();
      break;
    }
    case OptimizerConfig::kRmsprop:
      seg->optimizer = GpuSegment::Optimizer::kRmsprop;
      seg->momentum = opt.rmsprop().momentum();
      seg->weight_decay = opt.rmsprop().weight_decay_factor();
      break;
    case OptimizerConfig::kRmspropv2:
      seg->optimizer = GpuSegment::Optimizer::kRmspropV2;
      seg->momentum = opt.rmspropv2().momentum();
      seg->weight_decay = opt.rmspropv2().weight_decay_factor();
      break;
    default:
      return Unsupported(index,
                         "supports the sgd, adagrad, adam, amsgrad, ftrl, "
                         "adadelta, momentum, rmsprop and rmspropv2 "
                         "optimizers");
  }
  // Of an optimizer it supports (else the message above), as NewOptimizer
  // finds the field.
  if (OptimizerWarmupSteps(opt) > 0) {
    return Unsupported(index, "does not do warmup_steps");
  }
  return Status::OK();
}

// A SERVING spec: each segment's values as its compressor stores them.
Status ServingSpecFor(const EntryConfig& config, const EntryAccessor& accessor,
                      GpuRowTableSpec* spec) {
  GpuRowTableSpec result;
  result.serving = true;
  result.value_floats = accessor.DimSize();
  int bytes = 0;
  for (int i = 0; i < config.segments_size(); ++i) {
    const EntryConfig::Segment& conf = config.segments(i);
    GpuSegment seg;
    seg.dim = conf.dim_size();
    seg.value_offset = i == 0 ? 0
                              : result.segments.back().value_offset +
                                    result.segments.back().dim;
    switch (conf.comp_config().type_case()) {
      case FloatCompressorConfig::kFp16:
        seg.half = true;
        break;
      case FloatCompressorConfig::kFp32:
        seg.half = false;
        break;
      default:
        return Unsupported(i, "stores SERVING segments with the fp16 or fp32 "
                              "compressor");
    }
    seg.data_byte = bytes;
    bytes += seg.dim * (seg.half ? 2 : 4);
    result.segments.push_back(seg);
  }
  // The CPU entry pads its bytes to whole floats.
  result.entry_floats = (bytes + 3) / 4;
  if (int64_t{result.entry_floats} * 4 != accessor.SizeBytes()) {
    return InternalError("GPU serving entry of " +
                         std::to_string(result.entry_floats) +
                         " floats, CPU entry of " +
                         std::to_string(accessor.SizeBytes()) + " bytes");
  }
  *spec = std::move(result);
  return Status::OK();
}

}  // namespace

Status GpuRowTableSpecFor(const EntryConfig& config, uint64_t seed,
                          GpuRowTableSpec* spec) {
  std::unique_ptr<EntryAccessor> accessor;
  MONOLITH_RETURN_IF_ERROR(EntryAccessor::Create(config, &accessor));
  if (accessor->serving()) {
    MONOLITH_RETURN_IF_ERROR(ServingSpecFor(config, *accessor, spec));
    spec->hash_seed = TableHashSeed(seed);
    return Status::OK();
  }
  GpuRowTableSpec result;
  result.hash_seed = TableHashSeed(seed);
  result.value_floats = accessor->DimSize();
  int state = result.value_floats;
  for (int i = 0; i < config.segments_size(); ++i) {
    const EntryConfig::Segment& conf = config.segments(i);
    GpuSegment seg;
    seg.dim = conf.dim_size();
    seg.value_offset = i == 0 ? 0
                              : result.segments.back().value_offset +
                                    result.segments.back().dim;
    if (conf.comp_config().has_fixed_r8() || conf.comp_config().has_one_bit()) {
      return Unsupported(i, "does not train fixed_r8 or one_bit segments on "
                            "their quantized values as CPU tables do");
    }
    MONOLITH_RETURN_IF_ERROR(SetInitializer(i, conf.init_config(), &seg));
    MONOLITH_RETURN_IF_ERROR(SetOptimizer(i, conf.opt_config(), &seg));
    seg.init_seed = seed + static_cast<uint64_t>(i);
    seg.state_offset = state;
    state += seg.StateFloats();
    result.segments.push_back(seg);
  }
  result.entry_floats = state;
  if (int64_t{result.entry_floats} * 4 != accessor->SizeBytes()) {
    return InternalError("GPU entry of " + std::to_string(result.entry_floats) +
                         " floats, CPU entry of " +
                         std::to_string(accessor->SizeBytes()) + " bytes");
  }
  *spec = std::move(result);
  return Status::OK();
}

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith
