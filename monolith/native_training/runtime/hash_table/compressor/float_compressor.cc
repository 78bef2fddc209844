#include "monolith/native_training/runtime/hash_table/compressor/float_compressor.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <utility>

namespace monolith {
namespace hash_table {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "fp32/fp16 encodings are defined as little-endian");

std::string FloatToString(float v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

class Fp32Compressor final : public FloatCompressorInterface {
 public:
  explicit Fp32Compressor(int dim) : dim_(dim) {}
  std::string DebugString() const override {
    return "Fp32(D=" + std::to_string(dim_) + ")";
  }
  int DimSize() const override { return dim_; }
  int64_t SizeBytes() const override { return int64_t{4} * dim_; }
  void Encode(const float* num, void* compressed) const override {
    std::memcpy(compressed, num, sizeof(float) * dim_);
  }
  void Decode(const void* compressed, float* num) const override {
    std::memcpy(num, compressed, sizeof(float) * dim_);
  }

 private:
  const int dim_;
};

class Fp16Compressor final : public FloatCompressorInterface {
 public:
  explicit Fp16Compressor(int dim) : dim_(dim) {}
  std::string DebugString() const override {
    return "Fp16(D=" + std::to_string(dim_) + ")";
  }
  int DimSize() const override { return dim_; }
  int64_t SizeBytes() const override { return int64_t{2} * dim_; }
  void Encode(const float* num, void* compressed) const override {
    auto* out = static_cast<unsigned char*>(compressed);
    for (int i = 0; i < dim_; ++i) {
      const uint16_t h = FloatToHalfBits(num[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
  void Decode(const void* compressed, float* num) const override {
    const auto* in = static_cast<const unsigned char*>(compressed);
    for (int i = 0; i < dim_; ++i) {
      uint16_t h;
      std::memcpy(&h, in + 2 * i, 2);
      num[i] = HalfBitsToFloat(h);
    }
  }

 private:
  const int dim_;
};

class FixedR8Compressor final : public FloatCompressorInterface {
 public:
  FixedR8Compressor(int dim, float r) : dim_(dim), quantizer_(r) {}
  std::string DebugString() const override {
    return "FixedR8(D=" + std::to_string(dim_) +
           ", r=" + FloatToString(quantizer_.r()) + ")";
  }
  int DimSize() const override { return dim_; }
  int64_t SizeBytes() const override { return dim_; }
  void Encode(const float* num, void* compressed) const override {
    auto* out = static_cast<int8_t*>(compressed);
    for (int i = 0; i < dim_; ++i) out[i] = quantizer_.ToCode(num[i]);
  }
  void Decode(const void* compressed, float* num) const override {
    const auto* in = static_cast<const int8_t*>(compressed);
    for (int i = 0; i < dim_; ++i) num[i] = quantizer_.FromCode(in[i]);
  }

 private:
  const int dim_;
  const FixedR8Quantizer quantizer_;
};

class OneBitCompressor final : public FloatCompressorInterface {
 public:
  OneBitCompressor(int dim, const FloatCompressorConfig::OneBit& config)
      : dim_(dim),
        hash_net_(config),
        amplitude_(config.amplitude()),
        neg_amplitude_(-config.amplitude()) {}
  std::string DebugString() const override {
    return "OneBit(D=" + std::to_string(dim_) +
           ", amplitude=" + FloatToString(amplitude_) +
           ", init_scale=" + FloatToString(hash_net_.init_scale()) + ")";
  }
  int DimSize() const override { return dim_; }
  int64_t SizeBytes() const override { return (int64_t{dim_} + 7) / 8; }
  void Encode(const float* num, void* compressed) const override {
    auto* out = static_cast<unsigned char*>(compressed);
    const float scale = hash_net_.init_scale();
    for (int byte = 0; byte * 8 < dim_; ++byte) {
      const int end = dim_ - byte * 8 < 8 ? dim_ - byte * 8 : 8;
      unsigned bits = 0;
      for (int j = 0; j < end; ++j) {
        if (hash_net_.Forward(num[byte * 8 + j], scale) > 0) bits |= 1u << j;
      }
      out[byte] = static_cast<unsigned char>(bits);
    }
  }
  void Decode(const void* compressed, float* num) const override {
    const auto* in = static_cast<const unsigned char*>(compressed);
    for (int i = 0; i < dim_; ++i) {
      num[i] = ((in[i >> 3] >> (i & 7)) & 1) ? amplitude_ : neg_amplitude_;
    }
  }

 private:
  const int dim_;
  const HashNet hash_net_;
  const float amplitude_;
  const float neg_amplitude_;
};

class CombinedCompressor final : public FloatCompressorInterface {
 public:
  CombinedCompressor(std::unique_ptr<FloatCompressorInterface> first,
                     std::unique_ptr<FloatCompressorInterface> second)
      : first_(std::move(first)),
        second_(std::move(second)),
        first_dim_(first_->DimSize()),
        first_bytes_(first_->SizeBytes()),
        dim_(first_dim_ + second_->DimSize()),
        bytes_(first_bytes_ + second_->SizeBytes()) {}
  std::string DebugString() const override {
    return first_->DebugString() + "|" + second_->DebugString();
  }
  int DimSize() const override { return dim_; }
  int64_t SizeBytes() const override { return bytes_; }
  void Encode(const float* num, void* compressed) const override {
    first_->Encode(num, compressed);
    second_->Encode(num + first_dim_,
                    static_cast<char*>(compressed) + first_bytes_);
  }
  void Decode(const void* compressed, float* num) const override {
    first_->Decode(compressed, num);
    second_->Decode(static_cast<const char*>(compressed) + first_bytes_,
                    num + first_dim_);
  }

 private:
  const std::unique_ptr<FloatCompressorInterface> first_;
  const std::unique_ptr<FloatCompressorInterface> second_;
  const int first_dim_;
  const int64_t first_bytes_;
  const int dim_;
  const int64_t bytes_;
};

Status CheckPositiveFinite(const char* what, float v) {
  if (!(std::isfinite(v) && v > 0)) {
    return InvalidArgumentError(std::string(what) +
                                " must be finite and > 0, got " +
                                FloatToString(v));
  }
  return Status::OK();
}

Status CheckOneBit(const FloatCompressorConfig::OneBit& c) {
  MONOLITH_RETURN_IF_ERROR(
      CheckPositiveFinite("one_bit compressor amplitude", c.amplitude()));
  MONOLITH_RETURN_IF_ERROR(
      CheckPositiveFinite("one_bit compressor init_scale", c.init_scale()));
  MONOLITH_RETURN_IF_ERROR(
      CheckPositiveFinite("one_bit compressor max_scale", c.max_scale()));
  if (c.step_size() <= 0) {
    return InvalidArgumentError(
        "one_bit compressor step_size must be > 0, got " +
        std::to_string(c.step_size()));
  }
  // The stored bit is Forward at init_scale > 0 (as the original): where
  // that underflows for +amplitude, a save's decoded +amplitude restores as
  // -amplitude.
  if (!(HashNet(c).Forward(c.amplitude(), c.init_scale()) > 0)) {
    return InvalidArgumentError(
        "one_bit compressor amplitude " + FloatToString(c.amplitude()) +
        " and init_scale " + FloatToString(c.init_scale()) +
        " are too small: amplitude * tanh(init_scale * amplitude) rounds to "
        "0, so a restored +amplitude would be stored as -amplitude");
  }
  return Status::OK();
}

}  // namespace

HashNet::HashNet(const FloatCompressorConfig::OneBit& config)
    : step_size_(config.step_size()),
      init_scale_(config.init_scale()),
      max_scale_(config.max_scale()),
      amplitude_(config.amplitude()) {}

float HashNet::ScaleAt(int64_t global_step) const {
  constexpr float kGamma = 0.005f;
  constexpr float kPower = 0.5f;
  const int64_t step =
      global_step <= 0 ? 0 : global_step - global_step % step_size_;
  const float scale =
      init_scale_ * std::pow(1.0f + kGamma * static_cast<float>(step), kPower);
  return std::min(scale, max_scale_);
}

std::unique_ptr<FloatCompressorInterface> CombineFloatCompressors(
    std::unique_ptr<FloatCompressorInterface> first,
    std::unique_ptr<FloatCompressorInterface> second) {
  return std::make_unique<CombinedCompressor>(std::move(first),
                                              std::move(second));
}

Status NewFloatCompressor(
    const FloatCompressorConfig& config, int dim,
    std::unique_ptr<FloatCompressorInterface>* compressor) {
  if (config.type_case() == FloatCompressorConfig::TYPE_NOT_SET) {
    return InvalidArgumentError(
        "FloatCompressorConfig has no compressor set (oneof type is empty; "
        "expected fp32, fp16, fixed_r8 or one_bit)");
  }
  if (dim <= 0) {
    return InvalidArgumentError("float compressor dim must be positive, got " +
                                std::to_string(dim));
  }
  switch (config.type_case()) {
    case FloatCompressorConfig::kFp32:
      *compressor = std::make_unique<Fp32Compressor>(dim);
      return Status::OK();
    case FloatCompressorConfig::kFp16:
      *compressor = std::make_unique<Fp16Compressor>(dim);
      return Status::OK();
    case FloatCompressorConfig::kFixedR8:
      MONOLITH_RETURN_IF_ERROR(
          CheckPositiveFinite("fixed_r8 compressor r", config.fixed_r8().r()));
      if (!std::isnormal(config.fixed_r8().r() / 128 / 2)) {
        return InvalidArgumentError(
            "fixed_r8 compressor r is too small (its half step r / 256 is not "
            "a normal float), got " + FloatToString(config.fixed_r8().r()));
      }
      *compressor =
          std::make_unique<FixedR8Compressor>(dim, config.fixed_r8().r());
      return Status::OK();
    case FloatCompressorConfig::kOneBit:
      MONOLITH_RETURN_IF_ERROR(CheckOneBit(config.one_bit()));
      *compressor = std::make_unique<OneBitCompressor>(dim, config.one_bit());
      return Status::OK();
    case FloatCompressorConfig::TYPE_NOT_SET:
      break;
  }
  return InvalidArgumentError("unknown FloatCompressorConfig type");
}

}  // namespace hash_table
}  // namespace monolith
