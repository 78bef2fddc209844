// A device array for the GPU tests, the check and the benchmark: allocated
// from a size or a host vector, copied back by ToHost, freed with it. A
// failed CUDA call ends the program with its error (these programs have no
// use for a buffer that is not there).
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_DEVICE_VECTOR_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_DEVICE_VECTOR_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace monolith {
namespace hash_table {
namespace gpu {

template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(size_t n) : n_(n) {
    Check(cudaMalloc(&data_, std::max<size_t>(n, 1) * sizeof(T)),
          "cudaMalloc");
  }
  explicit DeviceVector(const std::vector<T>& host)
      : DeviceVector(host.size()) {
    Check(cudaMemcpy(data_, host.data(), n_ * sizeof(T),
                     cudaMemcpyHostToDevice),
          "cudaMemcpy to the device");
  }
  ~DeviceVector() { cudaFree(data_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;

  T* get() const { return data_; }
  std::vector<T> ToHost() const {
    std::vector<T> host(n_);
    Check(cudaMemcpy(host.data(), data_, n_ * sizeof(T),
                     cudaMemcpyDeviceToHost),
          "cudaMemcpy to the host");
    return host;
  }

 private:
  static void Check(cudaError_t error, const char* what) {
    if (error == cudaSuccess) return;
    std::fprintf(stderr, "DeviceVector: %s: %s\n", what,
                 cudaGetErrorString(error));
    std::abort();
  }

  T* data_ = nullptr;
  size_t n_;
};

}  // namespace gpu
}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_GPU_DEVICE_VECTOR_H_
