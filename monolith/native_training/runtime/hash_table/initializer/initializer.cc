#include "monolith/native_training/runtime/hash_table/initializer/initializer.h"

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>

#include "monolith/native_training/runtime/hash_table/initializer/init_bits.h"

namespace monolith {
namespace hash_table {
namespace {

std::string FloatToString(float v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

class ConstantsInitializer final : public InitializerInterface {
 public:
  ConstantsInitializer(int dim, float value) : dim_(dim), value_(value) {}

  std::string DebugString() const override {
    return "Constants(D=" + std::to_string(dim_) +
           ", C=" + FloatToString(value_) + ")";
  }
  int DimSize() const override { return dim_; }
  void Initialize(float* num, uint64_t /*seed*/, int64_t /*id*/,
                  int /*column*/) const override {
    for (int i = 0; i < dim_; ++i) num[i] = value_;
  }

 private:
  const int dim_;
  const float value_;
};

class RandomUniformInitializer final : public InitializerInterface {
 public:
  RandomUniformInitializer(int dim, float minval, float maxval)
      : dim_(dim), minval_(minval), maxval_(maxval) {}

  std::string DebugString() const override {
    return "RandomUniform(D=" + std::to_string(dim_) +
           ", min=" + FloatToString(minval_) +
           ", max=" + FloatToString(maxval_) + ")";
  }
  int DimSize() const override { return dim_; }
  void Initialize(float* num, uint64_t seed, int64_t id,
                  int column) const override {
    for (int i = 0; i < dim_; ++i) {
      num[i] = UniformFromBits(InitBits(seed, id, column + i), minval_,
                               maxval_);
    }
  }

 private:
  const int dim_;
  const float minval_;
  const float maxval_;
};

class CombinedInitializer final : public InitializerInterface {
 public:
  CombinedInitializer(std::unique_ptr<InitializerInterface> first,
                      std::unique_ptr<InitializerInterface> second)
      : first_(std::move(first)),
        second_(std::move(second)),
        first_dim_(first_->DimSize()),
        dim_(first_dim_ + second_->DimSize()) {}

  std::string DebugString() const override {
    return first_->DebugString() + "|" + second_->DebugString();
  }
  int DimSize() const override { return dim_; }
  void Initialize(float* num, uint64_t seed, int64_t id,
                  int column) const override {
    first_->Initialize(num, seed, id, column);
    second_->Initialize(num + first_dim_, seed, id, column + first_dim_);
  }

 private:
  const std::unique_ptr<InitializerInterface> first_;
  const std::unique_ptr<InitializerInterface> second_;
  const int first_dim_;
  const int dim_;
};

Status CheckDim(int dim) {
  if (dim <= 0) {
    return InvalidArgumentError("initializer dim must be positive, got " +
                                std::to_string(dim));
  }
  return Status::OK();
}

}  // namespace

float UniformFromBits(uint64_t bits, float minval, float maxval) {
  // 53 random bits: u is a multiple of 2^-53 in [0, 1).
  const double u = static_cast<double>(bits >> 11) * 0x1.0p-53;
  const double lo = minval;
  const double hi = maxval;
  const float x = static_cast<float>(lo + (hi - lo) * u);
  // Rounding to float may land on maxval; the range is half-open.
  if (x >= maxval && minval < maxval) return std::nextafter(maxval, minval);
  return x;
}

Status NewConstantsInitializer(int dim, float value,
                               std::unique_ptr<InitializerInterface>* out) {
  MONOLITH_RETURN_IF_ERROR(CheckDim(dim));
  if (!std::isfinite(value)) {
    return InvalidArgumentError(
        "constants initializer value must be finite, got " +
                                FloatToString(value));
  }
  *out = std::make_unique<ConstantsInitializer>(dim, value);
  return Status::OK();
}

Status NewRandomUniformInitializer(int dim, float minval, float maxval,
                                   std::unique_ptr<InitializerInterface>* out) {
  MONOLITH_RETURN_IF_ERROR(CheckDim(dim));
  if (!std::isfinite(minval) || !std::isfinite(maxval)) {
    return InvalidArgumentError(
        "random_uniform initializer minval and maxval must be finite, got [" +
        FloatToString(minval) + ", " + FloatToString(maxval) + ")");
  }
  if (minval > maxval) {
    return InvalidArgumentError(
        "random_uniform initializer needs minval <= maxval, got minval=" +
        FloatToString(minval) + " > maxval=" + FloatToString(maxval));
  }
  *out = std::make_unique<RandomUniformInitializer>(dim, minval, maxval);
  return Status::OK();
}

std::unique_ptr<InitializerInterface> CombineInitializers(
    std::unique_ptr<InitializerInterface> first,
    std::unique_ptr<InitializerInterface> second) {
  return std::make_unique<CombinedInitializer>(std::move(first),
                                               std::move(second));
}

Status NewInitializer(const InitializerConfig& config, int dim,
                      std::unique_ptr<InitializerInterface>* initializer) {
  switch (config.type_case()) {
    case InitializerConfig::kZeros:
      return NewConstantsInitializer(dim, 0.0f, initializer);
    case InitializerConfig::kOnes:
      return NewConstantsInitializer(dim, 1.0f, initializer);
    case InitializerConfig::kConstants:
      return NewConstantsInitializer(dim, config.constants().constant(),
                                     initializer);
    case InitializerConfig::kRandomUniform:
      return NewRandomUniformInitializer(dim, config.random_uniform().minval(),
                                         config.random_uniform().maxval(),
                                         initializer);
    case InitializerConfig::TYPE_NOT_SET:
      break;
  }
  return InvalidArgumentError(
      "InitializerConfig has no initializer set (oneof type is empty; expected "
      "zeros, ones, constants or random_uniform)");
}

}  // namespace hash_table
}  // namespace monolith
