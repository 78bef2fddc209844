// Helpers shared by the optimizer tests.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_TEST_UTIL_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer.pb.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/wire_writer.h"

namespace monolith {
namespace hash_table {
namespace optimizer_test {

inline std::unique_ptr<OptimizerInterface> MustNew(const OptimizerConfig& c,
                                                   int dim) {
  std::unique_ptr<OptimizerInterface> opt;
  Status s = NewOptimizer(c, dim, &opt);
  EXPECT_TRUE(s.ok()) << s.ToString() << " for " << c.ShortDebugString();
  return opt;
}

// One entry's segment: num plus state, the state at an address that is 4 but
// not 8-byte aligned (as the interface allows), with guard floats after both
// to catch writes past DimSize() / StateBytes().
class Entry {
 public:
  static constexpr float kGuard = -12345.5f;

  explicit Entry(const OptimizerInterface& opt, float fill = 0.0f)
      : opt_(opt),
        num_(opt.DimSize() + 1, fill),
        state_(opt.StateBytes() / sizeof(float) + 4, kGuard) {
    num_.back() = kGuard;
    if (reinterpret_cast<uintptr_t>(state_.data()) % 8 == 0) offset_ = 1;
  }

  float* num() { return num_.data(); }
  const float* num() const { return num_.data(); }
  void* state() { return state_.data() + offset_; }
  const void* state() const { return state_.data() + offset_; }

  void Init() { opt_.Init(state()); }
  void Optimize(const std::vector<float>& grad, float lr, int64_t step) {
    std::vector<float> lrs(opt_.SliceSize(), lr);
    opt_.Optimize(state(), num(), grad.data(), lrs.data(), step);
  }
  // The DumpSize() dump entries WriteDump writes, parsed.
  OptimizerDump Save() const {
    WireWriter wire;
    opt_.WriteDump(state(), &wire);
    OptimizerDump d;
    EXPECT_TRUE(d.MergeFromString({wire.data(), wire.size()}));
    return d;
  }

  std::vector<float> Num() const {
    return std::vector<float>(num_.begin(), num_.end() - 1);
  }
  void SetNum(const std::vector<float>& v) {
    std::copy(v.begin(), v.end(), num_.begin());
  }
  std::string StateBytes() const {
    return std::string(static_cast<const char*>(state()), opt_.StateBytes());
  }

  // Nothing written past the segment.
  void ExpectGuards() const {
    EXPECT_EQ(num_.back(), kGuard) << "wrote past DimSize()";
    const char* end = static_cast<const char*>(state()) + opt_.StateBytes();
    const char* last = reinterpret_cast<const char*>(state_.data() +
                                                     state_.size());
    for (const char* p = end; p + sizeof(float) <= last; p += sizeof(float)) {
      float f;
      std::memcpy(&f, p, sizeof(f));
      EXPECT_EQ(f, kGuard) << "wrote past StateBytes()";
    }
  }

 private:
  const OptimizerInterface& opt_;
  std::vector<float> num_;
  std::vector<float> state_;
  int offset_ = 0;
};

// Deterministic, non-trivial test data.
inline std::vector<float> Grad(int dim, int step) {
  std::vector<float> g(dim);
  for (int i = 0; i < dim; ++i) {
    g[i] = static_cast<float>(0.8 * std::sin(1.7 * i + 0.9 * step + 0.3) +
                              0.15 * (i % 3) - 0.05 * step);
  }
  return g;
}
inline std::vector<float> InitialNum(int dim) {
  std::vector<float> w(dim);
  for (int i = 0; i < dim; ++i) {
    w[i] = static_cast<float>(0.4 * std::cos(0.7 * i + 0.2) - 0.1);
  }
  return w;
}

// The reference tests run kSteps steps over kDim floats at rates kLr.
constexpr int kDim = 7;  // not a multiple of any vector width
constexpr int kSteps = 4;
constexpr float kLr[kSteps] = {0.1f, 0.05f, 0.08f, 0.03f};

// Builds |config|'s optimizer over |dim| floats and runs kSteps steps of it
// from InitialNum(dim): step s applies Grad(dim, s) at rate kLr[s] and global
// step steps[s] (s when |steps| is empty), then calls |check(s, grad,
// entry)|.
template <typename Check>
void RunSteps(const OptimizerConfig& config, int dim, Check check,
              std::vector<int64_t> steps = {}) {
  const std::unique_ptr<OptimizerInterface> opt = MustNew(config, dim);
  ASSERT_NE(opt, nullptr);
  if (steps.empty()) {
    for (int s = 0; s < kSteps; ++s) steps.push_back(s);
  }
  Entry e(*opt);
  e.Init();
  e.SetNum(InitialNum(dim));
  for (int s = 0; s < kSteps; ++s) {
    const std::vector<float> grad = Grad(dim, s);
    e.Optimize(grad, kLr[s], steps[s]);
    check(s, grad, e);
  }
  e.ExpectGuards();
}

inline std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// |actual| (float) is within a relative+absolute tolerance of |expected|.
inline void ExpectClose(const std::vector<float>& actual,
                        const std::vector<double>& expected,
                        const std::string& what, double rel = 2e-5,
                        double abs = 2e-6) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], abs + rel * std::fabs(expected[i]))
        << what << " [" << i << "]";
  }
}
template <typename Repeated>
inline std::vector<float> ToVector(const Repeated& r) {
  return std::vector<float>(r.begin(), r.end());
}

inline void ExpectInvalid(const Status& s,
                          const std::vector<std::string>& needles) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  for (const std::string& n : needles) {
    EXPECT_NE(s.message().find(n), std::string::npos)
        << "'" << s.message() << "' should mention '" << n << "'";
  }
}

}  // namespace optimizer_test
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_OPTIMIZER_OPTIMIZER_TEST_UTIL_H_
