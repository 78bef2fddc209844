#include "monolith/native_training/runtime/hash_table/host_memory.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <limits>

namespace monolith {
namespace hash_table {
namespace {

// The number after |key| in a file of "key value" lines (/proc/meminfo, a
// cgroup's memory.stat); false where there is none.
bool ReadKeyedValue(const std::string& path, const std::string& key,
                    uint64_t* value) {
  std::ifstream in(path);
  std::string name;
  while (in >> name) {
    if (name == key) return static_cast<bool>(in >> *value);
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return false;
}

// A cgroup's limit less its working set; the most a uint64_t holds where
// it has no limit.
uint64_t CgroupRoomBytes(const MemoryCgroupFiles& files) {
  std::ifstream limit_in(files.limit), usage_in(files.usage);
  uint64_t limit = 0, usage = 0;
  if (!(limit_in >> limit && usage_in >> usage) || limit == 0) {
    return std::numeric_limits<uint64_t>::max();
  }
  uint64_t inactive = 0;
  if (ReadKeyedValue(files.stat, files.inactive_key, &inactive)) {
    usage -= std::min(usage, inactive);
  }
  return limit > usage ? limit - usage : 0;
}

}  // namespace

void ForEachMemoryCgroup(
    const HostMemoryFiles& files,
    const std::function<void(const MemoryCgroupFiles&)>& fn) {
  std::ifstream self(files.self_cgroup);
  std::string line;
  while (std::getline(self, line)) {
    // "0::<path>" (v2), "<n>:memory:<path>" (v1; or "memory,..." joined).
    const size_t first = line.find(':');
    const size_t second =
        first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const bool v2 = line.rfind("0::", 0) == 0;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    if (!v2 &&
        ("," + controllers + ",").find(",memory,") == std::string::npos) {
      continue;
    }
    std::string dir = line.substr(second + 1);
    if (dir == "/") dir.clear();
    while (true) {
      const std::string base =
          files.cgroup_root + (v2 ? "" : "/memory") + dir + "/";
      fn(v2 ? MemoryCgroupFiles{base + "memory.max", base + "memory.current",
                                base + "memory.stat", "inactive_file"}
            : MemoryCgroupFiles{base + "memory.limit_in_bytes",
                                base + "memory.usage_in_bytes",
                                base + "memory.stat", "total_inactive_file"});
      if (dir.empty()) break;
      const size_t slash = dir.rfind('/');
      dir.resize(slash == std::string::npos ? 0 : slash);
    }
  }
}

uint64_t UsableMemoryBytes(const HostMemoryFiles& files,
                           uint64_t physical_bytes) {
  uint64_t memory = physical_bytes;
  ForEachMemoryCgroup(files, [&memory](const MemoryCgroupFiles& cgroup) {
    std::ifstream in(cgroup.limit);
    uint64_t limit = 0;
    if (in >> limit && limit > 0) memory = std::min(memory, limit);
  });
  return memory;
}

uint64_t UsableMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);     // NOLINT(runtime/int)
  const long page_bytes = sysconf(_SC_PAGESIZE);  // NOLINT(runtime/int)
  return UsableMemoryBytes(
      HostMemoryFiles{},
      pages > 0 && page_bytes > 0
          ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_bytes)
          : std::numeric_limits<uint64_t>::max());
}

uint64_t AvailableMemoryBytes(const HostMemoryFiles& files) {
  uint64_t available = std::numeric_limits<uint64_t>::max();
  uint64_t kib = 0;
  if (ReadKeyedValue(files.meminfo, "MemAvailable:", &kib)) {
    available = kib <= available / 1024 ? kib * 1024 : available;
  }
  ForEachMemoryCgroup(files, [&available](const MemoryCgroupFiles& cgroup) {
    available = std::min(available, CgroupRoomBytes(cgroup));
  });
  return available;
}

}  // namespace hash_table
}  // namespace monolith
