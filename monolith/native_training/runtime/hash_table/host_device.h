// MONOLITH_HOST_DEVICE marks inline functions that both the host code and
// the GPU table's kernels call (nvcc compiles them for both; other compilers
// see plain inline functions), so the GPU kernels run the very arithmetic
// the CPU code and its tests do.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HOST_DEVICE_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HOST_DEVICE_H_

#if defined(__CUDACC__)
#define MONOLITH_HOST_DEVICE __host__ __device__
#else
#define MONOLITH_HOST_DEVICE
#endif

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HOST_DEVICE_H_
