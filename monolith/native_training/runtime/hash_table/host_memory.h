// How much memory this process may use, and may still take, on its host:
// the machine's (/proc/meminfo, sysconf) and its memory cgroups' limits (a
// container's, a pod's, a systemd service's; cgroup v2 and v1). Kernels
// refuse work that would not fit (an allocation succeeds and its pages are
// backed only when touched, so memory past these is an OOM kill, not a
// bad_alloc); benchmarks size themselves by it. No TensorFlow includes.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HOST_MEMORY_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HOST_MEMORY_H_

#include <cstdint>
#include <functional>
#include <string>

namespace monolith {
namespace hash_table {

// Where the files the functions below read are: the system's by default;
// tests point them at files of their own.
struct HostMemoryFiles {
  std::string meminfo = "/proc/meminfo";
  std::string self_cgroup = "/proc/self/cgroup";
  std::string cgroup_root = "/sys/fs/cgroup";
};

// A memory cgroup's files, as cgroup v2 or v1 names them.
struct MemoryCgroupFiles {
  std::string limit;  // "max" (v2: none) does not parse as a number
  std::string usage;
  std::string stat;
  std::string inactive_key;  // memory.stat's inactive file pages
};

// Calls |fn| for the process's memory cgroups (v2's and v1's, as
// |files.self_cgroup| names them) and each one above them: a limit may be
// set on a parent (a pod's, a slice's).
void ForEachMemoryCgroup(
    const HostMemoryFiles& files,
    const std::function<void(const MemoryCgroupFiles&)>& fn);

// The memory this process may use: the machine's (|physical_bytes|), or
// the least limit of its memory cgroups when lower.
uint64_t UsableMemoryBytes(const HostMemoryFiles& files,
                           uint64_t physical_bytes);
// The same for this host (sysconf's physical memory).
uint64_t UsableMemoryBytes();

// The memory this process may still take before the kernel reclaims it by
// killing: the machine's available memory (MemAvailable), and in cgroups
// the least room of its memory cgroups and those above them (a limit less
// the working set: usage less inactive file pages, which the kernel
// reclaims first, as kubelet counts). The most a uint64_t holds where
// nothing says.
uint64_t AvailableMemoryBytes(const HostMemoryFiles& files = {});

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_HOST_MEMORY_H_
