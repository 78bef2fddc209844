// Fuzz test of checkpoint restore, built and run under AddressSanitizer.
//
// Starts from valid checkpoints of real EmbeddingHashTables (segments of
// every optimizer, dims 1 to 8; 1 to 3 shards; snappy and
// uncompressed data files) and, every iteration, applies a few random
// mutations to a copy and runs what MultiHashTableRestoreOp runs:
// ReadCheckpointInfo, then RestoreCheckpoint handing every record to
// EmbeddingHashTable::RestoreRecord of fresh tables. Every run must succeed
// or return a non-OK Status. A crash, an ASan report, a hang (the watchdog
// aborts an iteration that runs too long) or a runaway allocation (ASan's
// max_allocation_size_mb and hard_rss_limit_mb, and a peak RSS check) fails
// the test. Mutations:
//  - bytes of data and meta files: flips, inserts, deletes, truncation,
//    interesting words (mostly caught by the CRCs);
//  - record framing redone with valid CRCs: record bytes; lying lengths (near
//    2^64, 2^32, 2^31, one off the real size) with a valid header CRC;
//    dropped, duplicated, swapped and foreign records; cut and trailing bytes;
//  - snappy blocks: re-chunked, empty, merged, dropped; forged block lengths
//    and forged uncompressed lengths; corrupt compressed bytes;
//  - protobuf structure inside records (EntryDump, the optimizer dumps nested
//    in it, MultiHashTableMetadata): varints (overlong, 10 and 11 bytes,
//    huge), field numbers, wire types, nested lengths (beyond the record),
//    packed floats of lengths that are not a multiple of 4, duplicate and
//    unknown fields;
//  - meta fields: num_entries (0, huge, off by one), table names, save_id,
//    shard, num_shards, entries_crc32c, data_file_bytes, save time;
//  - file sets: files dropped, swapped between shards, replaced by another
//    save's, saves of another shard count beside them, temporary and
//    unrelated files, directories in place of files;
// with the meta files' digests and data file sizes fixed up afterwards (most
// of the time), so mutated records get past ReadCheckpointInfo.
// A quarter of the iterations apply only rewrites that keep the checkpoint's
// meaning (snappy blocks re-chunked or empty, snappy <-> uncompressed,
// equivalent protobuf encodings, identity fields stripped, ignored files
// added; digests and sizes fixed up): those must restore exactly the tables
// the unmutated checkpoint restores.
//
// Environment, for longer runs on demand:
//   MONOLITH_FUZZ_SEED          seed (default 1)
//   MONOLITH_FUZZ_ITERATIONS    iterations, 0 for no limit (default 6000:
//                               the same iterations on every machine)
//   MONOLITH_FUZZ_SECONDS       time budget in seconds, 0 for none (default)
//                               (both tests spend it: see FuzzBudget)
//   MONOLITH_FUZZ_ITERATION     run only this iteration (to reproduce one)
//   MONOLITH_FUZZ_HANG_SECONDS  an iteration running longer aborts
//                               (default 30)
//   MONOLITH_FUZZ_VERBOSE=1     print every iteration's mutations and outcome
//   MONOLITH_FUZZ_MESSAGES=1    print how often each kind of error came up
// A failing iteration prints its number, its mutations and the directory of
// its files; rerun it alone with the same MONOLITH_FUZZ_SEED and
// MONOLITH_FUZZ_ITERATION (iterations are independent and deterministic).
// ASan's reports name functions; for file:line too, build with
// --strip=never (fastbuild links with -Wl,-S).
#if !defined(__SANITIZE_ADDRESS__)
#if defined(__has_feature)
#if !__has_feature(address_sanitizer)
#error "checkpoint_fuzz_test must be built with -fsanitize=address"
#endif
#else
#error "checkpoint_fuzz_test must be built with -fsanitize=address"
#endif
#endif

#include <pthread.h>
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/checkpoint.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/record_file.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/table_checkpoint.h"
#include "monolith/native_training/runtime/hash_table/test_env.h"
#include "monolith/native_training/runtime/hash_table/wire_reader.h"
#include "snappy.h"

namespace {
// Set when the ASan runtime reads the options below: proof that the binary
// runs under ASan (checked by AsanIsActive).
bool asan_options_read = false;
}  // namespace

// ASan's options unless ASAN_OPTIONS overrides them: a single allocation
// over 1 GiB or a resident set over 2 GiB is a failure (with a report), not
// a slow test; aborts get a stack trace too. Container-overflow checks are
// off: protobuf's RepeatedField templates this binary instantiates (with
// ASan's container annotations) also serve the uninstrumented protobuf
// runtime in libtensorflow_framework.so.2, which fills the same fields
// without them (e.g. Reflection::AddFloat), a known false positive of
// partially instrumented builds.
extern "C" __attribute__((visibility("default"), used, no_sanitize_address))
const char*
__asan_default_options() {
  asan_options_read = true;
  return "detect_leaks=1:"
         "detect_container_overflow=0:"
         "handle_abort=1:"
         "allocator_may_return_null=0:"
         "max_allocation_size_mb=1024:"
         "hard_rss_limit_mb=2048:"
         "detect_stack_use_after_return=1:"
         "check_initialization_order=1:"
         "print_summary=1";
}

namespace monolith {
namespace hash_table {
namespace {

constexpr char kBasename[] = "ckpt";
constexpr int64_t kMaxPeakRssBytes = int64_t{2} << 30;

// ---------------------------------------------------------------------------
// Environment and failure context.

std::string TmpDir() {
  const char* root = std::getenv("TEST_TMPDIR");
  return root ? root : "/tmp";
}

// What the current iteration is doing, printed by ASan's death callback and
// by the watchdog: a fixed buffer, readable from a signal-time callback.
char failure_context[8192] = "(setting up)";

void SetContext(const std::string& text) {
  std::snprintf(failure_context, sizeof(failure_context), "%s", text.c_str());
}

void PrintContext() {
  std::fprintf(stderr, "\n=== checkpoint_fuzz_test: failing run ===\n%s\n",
               failure_context);
  std::fflush(stderr);
}

// Aborts the process when an iteration runs longer than its limit: a hang
// in the code under test must fail the test, naming the iteration.
class Watchdog {
 public:
  explicit Watchdog(double limit_seconds)
      : limit_(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(limit_seconds))),
        thread_([this] { Run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Start() {
    std::lock_guard<std::mutex> lock(mu_);
    started_ = std::chrono::steady_clock::now();
    armed_ = true;
    runner_ = pthread_self();
  }
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(200));
      if (armed_ && std::chrono::steady_clock::now() - started_ > limit_) {
        std::fprintf(stderr,
                     "\ncheckpoint_fuzz_test: an iteration ran over "
                     "its time limit (a hang); its stack:\n");
        PrintContext();
        // SIGABRT in the hung thread: ASan (handle_abort) prints its stack.
        pthread_kill(runner_, SIGABRT);
        std::this_thread::sleep_for(std::chrono::seconds(10));
        std::abort();
      }
    }
  }

  const std::chrono::steady_clock::duration limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool armed_ = false;
  std::chrono::steady_clock::time_point started_;
  pthread_t runner_{};
  std::thread thread_;
};

int64_t PeakRssBytes() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return int64_t{usage.ru_maxrss} * 1024;
}

// ---------------------------------------------------------------------------
// Randomness: one engine per iteration, seeded from (seed, iteration), so an
// iteration reruns alone.

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t Next() { return engine_(); }
  // Uniform in [0, n); 0 when n is 0.
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : engine_() % n; }
  // Uniform in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
  }
  bool Chance(double p) { return (engine_() >> 11) * 0x1p-53 < p; }
  template <typename T>
  const T& Pick(const std::vector<T>& items) {
    return items[Below(items.size())];
  }
  float Float() {
    return static_cast<float>(static_cast<int64_t>(Below(2001)) - 1000) /
           256.0f;
  }

 private:
  std::mt19937_64 engine_;
};

const std::vector<uint64_t> kInterestingU64 = {
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x3fff,
    0x4000,
    0x7fffffff,
    0x80000000,
    0xffffffff,
    0x100000000,
    0x7fffffffffffffff,
    0x8000000000000000,
    0xfffffffffffffff0,
    0xfffffffffffffffe,
    0xffffffffffffffff,
};

// ---------------------------------------------------------------------------
// Protobuf wire format.

// Appends |value| as a varint of at least |min_bytes| bytes (more than the
// value needs: an overlong encoding; over 10: an invalid one).
void PutVarint(std::string* out, uint64_t value, size_t min_bytes = 1) {
  size_t n = 0;
  while (true) {
    uint8_t byte = value & 0x7f;
    value >>= 7;
    ++n;
    const bool more = value != 0 || n < min_bytes;
    if (more) byte |= 0x80;
    out->push_back(static_cast<char>(byte));
    if (!more) break;
  }
}

size_t VarintBytes(uint64_t value) {
  std::string s;
  PutVarint(&s, value);
  return s.size();
}

bool GetVarint(std::string_view in, size_t* pos, uint64_t* value) {
  uint64_t result = 0;
  for (int shift = 0; *pos < in.size() && shift < 64; shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in[(*pos)++]);
    result |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return true;
    }
  }
  return false;
}

enum WireType { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

struct WireField {
  uint64_t number = 0;
  int type = 0;
  uint64_t value = 0;  // kVarint
  std::string bytes;   // kFixed64 (8), kFixed32 (4), kBytes (the payload)
  std::string raw;     // when set: the field's whole encoding, as mutated
};

// Fields of a message; false if |in| is not one (groups count as not one).
bool ParseWire(std::string_view in, std::vector<WireField>* fields) {
  fields->clear();
  size_t pos = 0;
  while (pos < in.size()) {
    uint64_t tag = 0;
    if (!GetVarint(in, &pos, &tag)) return false;
    WireField field;
    field.number = tag >> 3;
    field.type = static_cast<int>(tag & 7);
    if (field.number == 0 || field.number > (1u << 29) - 1) return false;
    uint64_t length = 0;
    switch (field.type) {
      case kVarint:
        if (!GetVarint(in, &pos, &field.value)) return false;
        break;
      case kFixed64:
      case kFixed32:
        length = field.type == kFixed64 ? 8 : 4;
        if (in.size() - pos < length) return false;
        field.bytes = std::string(in.substr(pos, length));
        pos += length;
        break;
      case kBytes:
        if (!GetVarint(in, &pos, &length) || length > in.size() - pos) {
          return false;
        }
        field.bytes = std::string(in.substr(pos, length));
        pos += length;
        break;
      default:
        return false;
    }
    fields->push_back(std::move(field));
  }
  return true;
}

std::string EncodeField(const WireField& field, size_t tag_bytes = 1,
                        size_t value_bytes = 1) {
  if (!field.raw.empty()) return field.raw;
  std::string out;
  PutVarint(&out, field.number << 3 | static_cast<uint64_t>(field.type),
            tag_bytes);
  switch (field.type) {
    case kVarint:
      PutVarint(&out, field.value, value_bytes);
      break;
    case kBytes:
      PutVarint(&out, field.bytes.size(), value_bytes);
      out += field.bytes;
      break;
    default:
      out += field.bytes;
  }
  return out;
}

std::string SerializeWire(const std::vector<WireField>& fields) {
  std::string out;
  for (const WireField& field : fields) out += EncodeField(field);
  return out;
}

// ---------------------------------------------------------------------------
// Byte-level mutation.

void MutateBytes(std::string* data, Rng* rng, std::string* desc) {
  const size_t size = data->size();
  switch (rng->Below(size == 0 ? 2 : 9)) {
    case 0: {  // append
      const size_t n = rng->Range(1, 16);
      for (size_t i = 0; i < n; ++i)
        data->push_back(static_cast<char>(rng->Next()));
      *desc += " append" + std::to_string(n);
      break;
    }
    case 1: {  // insert
      const size_t at = rng->Below(size + 1);
      const size_t n = rng->Range(1, 8);
      std::string bytes;
      for (size_t i = 0; i < n; ++i)
        bytes.push_back(static_cast<char>(rng->Next()));
      data->insert(at, bytes);
      *desc += " insert" + std::to_string(n) + "@" + std::to_string(at);
      break;
    }
    case 2: {  // flip bits
      const int n = static_cast<int>(rng->Range(1, 4));
      for (int i = 0; i < n; ++i) {
        (*data)[rng->Below(size)] ^= static_cast<char>(1u << rng->Below(8));
      }
      *desc += " flip" + std::to_string(n);
      break;
    }
    case 3: {  // set a byte
      const size_t at = rng->Below(size);
      static const uint8_t kBytes[] = {0, 0x7f, 0x80, 0xff, 0x01, 0x0a, 0x12};
      (*data)[at] = static_cast<char>(kBytes[rng->Below(sizeof(kBytes))]);
      *desc += " setbyte@" + std::to_string(at);
      break;
    }
    case 4: {  // delete a range
      const size_t at = rng->Below(size);
      const size_t n = std::min<size_t>(size - at, rng->Range(1, 16));
      data->erase(at, n);
      *desc += " delete" + std::to_string(n) + "@" + std::to_string(at);
      break;
    }
    case 5: {  // truncate
      const size_t keep = rng->Below(size);
      data->resize(keep);
      *desc += " truncate" + std::to_string(keep);
      break;
    }
    case 6: {  // an interesting word, little- or big-endian
      const uint64_t value = rng->Pick(kInterestingU64);
      const size_t width = rng->Chance(0.5) ? 8 : 4;
      if (size < width) break;
      const size_t at = rng->Below(size - width + 1);
      for (size_t i = 0; i < width; ++i) {
        const size_t shift = 8 * (rng->Chance(0.5) ? i : width - 1 - i);
        (*data)[at + i] = static_cast<char>(value >> shift);
      }
      *desc += " word" + std::to_string(width) + "@" + std::to_string(at);
      break;
    }
    case 7: {  // duplicate a range
      const size_t at = rng->Below(size);
      const size_t n = std::min<size_t>(size - at, rng->Range(1, 64));
      data->insert(rng->Below(size + 1), data->substr(at, n));
      *desc += " dup" + std::to_string(n);
      break;
    }
    default: {  // random bytes over a range
      const size_t at = rng->Below(size);
      const size_t n = std::min<size_t>(size - at, rng->Range(1, 8));
      for (size_t i = 0; i < n; ++i)
        (*data)[at + i] = static_cast<char>(rng->Next());
      *desc += " random" + std::to_string(n) + "@" + std::to_string(at);
      break;
    }
  }
}

// ---------------------------------------------------------------------------
// Protobuf-structure mutation of a message (hostile).

std::string RandomBytes(Rng* rng, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out.push_back(static_cast<char>(rng->Next()));
  return out;
}

WireField RandomField(Rng* rng, uint64_t number) {
  WireField field;
  field.number = number;
  switch (rng->Below(4)) {
    case 0:
      field.type = kVarint;
      field.value = rng->Pick(kInterestingU64);
      break;
    case 1:
      field.type = kFixed64;
      field.bytes = RandomBytes(rng, 8);
      break;
    case 2:
      field.type = kFixed32;
      field.bytes = RandomBytes(rng, 4);
      break;
    default:
      field.type = kBytes;
      field.bytes = RandomBytes(rng, rng->Below(12));
  }
  return field;
}

std::string MutateMessage(const std::string& message, int depth, Rng* rng,
                          std::string* desc) {
  std::vector<WireField> fields;
  if (!ParseWire(message, &fields) || fields.empty() || rng->Chance(0.05)) {
    std::string out = message;
    *desc += " bytes:";
    MutateBytes(&out, rng, desc);
    return out;
  }
  // A third of the time, go down into a nested message (EntryDump.opt,
  // then the optimizer dumps) to mutate there.
  std::vector<size_t> nested;
  for (size_t f = 0; f < fields.size(); ++f) {
    if (fields[f].type == kBytes) nested.push_back(f);
  }
  if (depth < 3 && !nested.empty() && rng->Chance(0.35)) {
    WireField& field = fields[rng->Pick(nested)];
    *desc += " in#" + std::to_string(field.number) + "{";
    field.bytes = MutateMessage(field.bytes, depth + 1, rng, desc);
    *desc += "}";
    return SerializeWire(fields);
  }
  const size_t i = rng->Below(fields.size());
  WireField& field = fields[i];
  switch (rng->Below(13)) {
    case 0: {  // a varint's value
      if (field.type != kVarint) {
        field.type = kVarint;
        field.bytes.clear();
      }
      field.value = rng->Pick(kInterestingU64);
      *desc += " varint#" + std::to_string(field.number) + "=" +
               std::to_string(field.value);
      break;
    }
    case 1: {  // overlong, 10- and 11-byte encodings of the tag or value
      const size_t tag_bytes = rng->Chance(0.5) ? rng->Range(1, 11) : 1;
      const size_t value_bytes = rng->Range(1, 11);
      field.raw = EncodeField(field, tag_bytes, value_bytes);
      *desc += " overlong#" + std::to_string(field.number) + "(" +
               std::to_string(tag_bytes) + "," + std::to_string(value_bytes) +
               ")";
      break;
    }
    case 2: {  // field number
      static const uint64_t kNumbers[] = {1,        2,
                                          3,        4,
                                          5,        15,
                                          16,       100,
                                          102,      105,
                                          19000,    (1u << 29) - 1,
                                          1u << 29, uint64_t{1} << 40};
      field.number =
          kNumbers[rng->Below(sizeof(kNumbers) / sizeof(kNumbers[0]))];
      *desc +=
          " number" + std::to_string(i) + "=" + std::to_string(field.number);
      break;
    }
    case 3: {  // wire type, payload kept
      const int type = static_cast<int>(rng->Below(8));
      std::string raw;
      PutVarint(&raw, field.number << 3 | static_cast<uint64_t>(type));
      raw += EncodeField(field).substr(
          VarintBytes(field.number << 3 | static_cast<uint64_t>(field.type)));
      field.raw = raw;
      *desc +=
          " type#" + std::to_string(field.number) + "=" + std::to_string(type);
      break;
    }
    case 4: {  // a length prefix that lies
      if (field.type != kBytes) {
        field.type = kBytes;
        field.bytes = RandomBytes(rng, rng->Below(8));
      }
      const uint64_t real = field.bytes.size();
      const std::vector<uint64_t> lengths = {real + 1,
                                             real + 2,
                                             real == 0 ? 0 : real - 1,
                                             real + 1000,
                                             0x7fffffff,
                                             0x80000000,
                                             0xffffffff,
                                             real + (uint64_t{1} << 32),
                                             0x7fffffffffffffff,
                                             0xffffffffffffffff,
                                             0xfffffffffffffff0 + real};
      const uint64_t length = rng->Pick(lengths);
      std::string raw;
      PutVarint(&raw, field.number << 3 | kBytes);
      PutVarint(&raw, length);
      raw += field.bytes;
      field.raw = raw;
      *desc += " length#" + std::to_string(field.number) + "=" +
               std::to_string(length) + "/" + std::to_string(real);
      break;
    }
    case 5: {  // inside a nested message (or bytes)
      if (field.type == kBytes && depth < 4) {
        *desc += " in#" + std::to_string(field.number) + "{";
        field.bytes = MutateMessage(field.bytes, depth + 1, rng, desc);
        *desc += "}";
      } else {
        field.value = rng->Next();
        *desc += " value#" + std::to_string(field.number);
      }
      break;
    }
    case 6: {  // packed floats, of a length that may not be a multiple of 4
      std::string payload;
      const uint64_t number = field.number;
      for (const WireField& f : fields) {
        if (f.number == number && f.type == kFixed32) payload += f.bytes;
      }
      if (payload.empty()) payload = RandomBytes(rng, 8);
      const int delta = static_cast<int>(rng->Range(-3, 3));
      if (delta < 0 && payload.size() >= static_cast<size_t>(-delta)) {
        payload.resize(payload.size() + delta);
      } else if (delta > 0) {
        payload += RandomBytes(rng, delta);
      }
      WireField packed;
      packed.number = number;
      packed.type = kBytes;
      packed.bytes = payload;
      std::vector<WireField> rest;
      bool placed = false;
      for (WireField& f : fields) {
        if (f.number == number && f.type == kFixed32) {
          if (!placed) rest.push_back(packed);
          placed = true;
        } else {
          rest.push_back(std::move(f));
        }
      }
      if (!placed) rest.push_back(packed);
      fields = std::move(rest);
      *desc += " packed#" + std::to_string(number) + "=" +
               std::to_string(payload.size());
      break;
    }
    case 7: {  // duplicate
      const WireField copy = field;
      fields.insert(fields.begin() + rng->Below(fields.size() + 1), copy);
      *desc += " dupfield#" + std::to_string(copy.number);
      break;
    }
    case 8: {  // delete
      *desc += " delfield#" + std::to_string(field.number);
      fields.erase(fields.begin() + i);
      break;
    }
    case 9: {  // swap
      const size_t j = rng->Below(fields.size());
      std::swap(fields[i], fields[j]);
      *desc += " swapfields";
      break;
    }
    case 10: {  // unknown field, or a stray group tag
      WireField unknown;
      if (rng->Chance(0.25)) {
        unknown.number = rng->Range(1, 20);
        std::string raw;
        PutVarint(&raw, unknown.number << 3 | (rng->Chance(0.5) ? 3 : 4));
        unknown.raw = raw;
        *desc += " grouptag";
      } else {
        unknown = RandomField(rng, rng->Range(6, 99));
        *desc += " unknown#" + std::to_string(unknown.number);
      }
      fields.insert(fields.begin() + rng->Below(fields.size() + 1), unknown);
      break;
    }
    case 11: {  // cut the message
      std::string out = SerializeWire(fields);
      const size_t keep = rng->Below(out.size() + 1);
      *desc += " cut" + std::to_string(keep);
      return out.substr(0, keep);
    }
    default: {  // the whole field replaced by a random one of its number
      field = RandomField(rng, field.number);
      *desc += " refield#" + std::to_string(field.number);
      break;
    }
  }
  return SerializeWire(fields);
}

// A parsed message changed through reflection: well-formed protobuf of the
// right type whose contents do not fit the table (floats added or missing,
// optimizer dumps of another kind, counted wrong, nested deeper), so the
// checks after parsing are what must hold.
void MutateParsed(google::protobuf::Message* message, int depth, Rng* rng,
                  std::string* desc) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* type = message->GetDescriptor();
  const google::protobuf::Reflection* reflection = message->GetReflection();
  if (type->field_count() == 0) return;
  const FieldDescriptor* field = type->field(rng->Below(type->field_count()));
  *desc += " " + std::string(field->name());
  if (field->is_repeated()) {
    const int size = reflection->FieldSize(*message, field);
    const uint64_t op = rng->Below(5);
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (op == 0 || size == 0) {
        reflection->AddMessage(message, field);
        *desc += "+";
      } else if (op == 1) {
        reflection->RemoveLast(message, field);
        *desc += "-";
      } else if (op == 2 && size > 1) {
        reflection->SwapElements(message, field, 0, size - 1);
        *desc += "~";
      } else if (depth < 3) {
        *desc += "[" + std::to_string(op % size) + "]{";
        MutateParsed(reflection->MutableRepeatedMessage(
                         message, field, static_cast<int>(op % size)),
                     depth + 1, rng, desc);
        *desc += "}";
      }
      return;
    }
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_FLOAT) {
      reflection->ClearField(message, field);
      *desc += "=clear";
      return;
    }
    switch (op) {
      case 0:
        reflection->AddFloat(message, field, rng->Float());
        *desc += "+";
        break;
      case 1:
        if (size > 0) reflection->RemoveLast(message, field);
        *desc += "-";
        break;
      case 2:
        reflection->ClearField(message, field);
        *desc += "=clear";
        break;
      case 3: {
        const int n = static_cast<int>(rng->Range(1, 300));
        for (int i = 0; i < n; ++i) reflection->AddFloat(message, field, 0.5f);
        *desc += "+" + std::to_string(n);
        break;
      }
      default:
        if (size > 0) {
          reflection->SetRepeatedFloat(message, field, 0,
                                       std::numeric_limits<float>::quiet_NaN());
        }
        *desc += "=nan";
    }
    return;
  }
  const uint64_t value = rng->Pick(kInterestingU64);
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_MESSAGE:
      if (rng->Chance(0.3)) {
        reflection->ClearField(message, field);
        *desc += "=clear";
      } else if (depth < 3) {
        *desc += "{";
        MutateParsed(reflection->MutableMessage(message, field), depth + 1, rng,
                     desc);
        *desc += "}";
      }
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      reflection->SetInt64(message, field, static_cast<int64_t>(value));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      reflection->SetUInt64(message, field, value);
      break;
    case FieldDescriptor::CPPTYPE_INT32:
      reflection->SetInt32(message, field, static_cast<int32_t>(value));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      reflection->SetUInt32(message, field, static_cast<uint32_t>(value));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      reflection->SetFloat(message, field,
                           rng->Chance(0.5)
                               ? std::numeric_limits<float>::infinity()
                               : rng->Float());
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      reflection->SetDouble(message, field, rng->Float());
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      reflection->SetBool(message, field, value & 1);
      break;
    default:
      reflection->ClearField(message, field);
      *desc += "=clear";
  }
}

// ---------------------------------------------------------------------------
// Protobuf rewrites that keep a message's meaning (as protobuf parses it).

struct RewriteSchema {
  // Top level: fields that are singular scalars (duplicates: last wins) and
  // the field holding a nested message (0: none).
  std::set<uint64_t> singular;
  uint64_t nested = 0;
};

const RewriteSchema kEntryDumpSchema = {{1, 4}, 3};
const RewriteSchema kMetaSchema = {{1, 2, 100, 101, 102, 103, 104, 105}, 0};

// |depth| 0 is the record's message; below EntryDump.opt, depth 1 is
// OptimizerDump (fields: messages), 2 SingleOptimizerDump (members:
// messages), 3 the optimizer's dump (floats, varints).
std::string RewriteEquivalently(const std::string& message, int depth,
                                const RewriteSchema& schema, Rng* rng,
                                std::string* desc) {
  std::vector<WireField> fields;
  if (!ParseWire(message, &fields)) return message;
  // Nested messages first.
  for (WireField& field : fields) {
    const bool nested =
        depth == 0 ? field.number == schema.nested && schema.nested != 0
                   : depth < 3;
    if (field.type == kBytes && nested && rng->Chance(0.7)) {
      field.bytes =
          RewriteEquivalently(field.bytes, depth + 1, schema, rng, desc);
    }
  }
  // Pack repeated floats (two or more of one number: a repeated field).
  if (rng->Chance(0.4)) {
    std::map<uint64_t, int> fixed32_count;
    std::set<uint64_t> other_types;
    for (const WireField& f : fields) {
      if (f.type == kFixed32) {
        ++fixed32_count[f.number];
      } else {
        other_types.insert(f.number);
      }
    }
    for (const auto& [number, count] : fixed32_count) {
      if (count < 2 || other_types.count(number)) continue;
      WireField packed;
      packed.number = number;
      packed.type = kBytes;
      std::vector<WireField> rest;
      size_t at = 0;
      for (WireField& f : fields) {
        if (f.number == number) {
          if (packed.bytes.empty()) at = rest.size();
          packed.bytes += f.bytes;
        } else {
          rest.push_back(std::move(f));
        }
      }
      rest.insert(rest.begin() + at, packed);
      fields = std::move(rest);
      *desc +=
          " =packed#" + std::to_string(number) + "@" + std::to_string(depth);
      break;
    }
  }
  // Overlong varints and length prefixes (protobuf reads up to 10 bytes, and
  // lengths as 32-bit varints of up to 5).
  for (WireField& field : fields) {
    if (field.type == kVarint && rng->Chance(0.2)) {
      const size_t bytes = rng->Range(VarintBytes(field.value), 10);
      field.raw = EncodeField(field, 1, bytes);
      *desc += " =overlong#" + std::to_string(field.number);
    } else if (field.type == kBytes && rng->Chance(0.15)) {
      const size_t bytes = rng->Range(VarintBytes(field.bytes.size()), 5);
      field.raw = EncodeField(field, 1, bytes);
      *desc += " =longlen#" + std::to_string(field.number);
    }
  }
  // Fields moved, the order within each number kept.
  if (rng->Chance(0.3)) {
    std::map<uint64_t, uint64_t> key;
    for (const WireField& f : fields) key.emplace(f.number, rng->Next());
    std::stable_sort(fields.begin(), fields.end(),
                     [&key](const WireField& a, const WireField& b) {
                       return key[a.number] < key[b.number];
                     });
    *desc += " =reorder@" + std::to_string(depth);
  }
  // A singular field written twice with its value (the last one wins).
  if (depth == 0 && rng->Chance(0.3)) {
    std::vector<size_t> candidates;
    for (size_t i = 0; i < fields.size(); ++i) {
      if (schema.singular.count(fields[i].number)) candidates.push_back(i);
    }
    if (!candidates.empty()) {
      const size_t i = rng->Pick(candidates);
      WireField copy = fields[i];
      copy.raw.clear();
      fields.insert(fields.begin() + rng->Below(i + 1), copy);
      *desc += " =twice#" + std::to_string(copy.number);
    }
  }
  // Unknown fields (numbers no message here uses).
  if (rng->Chance(0.3)) {
    WireField unknown = RandomField(rng, rng->Range(5000, 9000));
    fields.insert(fields.begin() + rng->Below(fields.size() + 1), unknown);
    *desc += " =unknown@" + std::to_string(depth);
  }
  return SerializeWire(fields);
}

// ---------------------------------------------------------------------------
// TFRecord framing and snappy blocks.

std::string EncodeU32(uint32_t value) {
  std::string out(4, '\0');
  std::memcpy(&out[0], &value, 4);
  return out;
}

std::string EncodeU64(uint64_t value) {
  std::string out(8, '\0');
  std::memcpy(&out[0], &value, 8);
  return out;
}

uint32_t DataCrc(std::string_view data) {
  return MaskCrc(ExtendCrc32c(0, data.data(), data.size()));
}

// A record framed as RecordFileWriter frames it; |claimed| lies about its
// length (with a valid header CRC all the same).
std::string FrameRecord(std::string_view data, uint64_t claimed) {
  const std::string length = EncodeU64(claimed);
  return length + EncodeU32(DataCrc(length)) + std::string(data) +
         EncodeU32(DataCrc(data));
}

std::string FrameRecord(std::string_view data) {
  return FrameRecord(data, data.size());
}

struct RecordStream {
  std::vector<std::string> records;
  std::string tail;  // what follows the last well-framed record
};

// The records of a stream, read leniently: framing must be consistent, data
// CRCs are not checked (re-framing fixes them).
RecordStream SplitRecords(std::string_view stream) {
  RecordStream out;
  size_t pos = 0;
  while (stream.size() - pos >= kRecordHeaderBytes + kRecordFooterBytes) {
    if (!IsValidRecordHeader(stream.data() + pos)) break;
    uint64_t length;
    std::memcpy(&length, stream.data() + pos, 8);
    if (length >
        stream.size() - pos - kRecordHeaderBytes - kRecordFooterBytes) {
      break;
    }
    out.records.emplace_back(stream.substr(pos + kRecordHeaderBytes, length));
    pos += kRecordHeaderBytes + length + kRecordFooterBytes;
  }
  out.tail = std::string(stream.substr(pos));
  return out;
}

std::string JoinRecords(const RecordStream& stream) {
  std::string out;
  for (const std::string& record : stream.records) out += FrameRecord(record);
  return out + stream.tail;
}

// The blocks of a snappy file ([u32 big-endian length][snappy]); false if the
// file is not a sequence of them.
bool SplitSnappyBlocks(std::string_view file,
                       std::vector<std::string>* blocks) {
  blocks->clear();
  size_t pos = 0;
  while (pos < file.size()) {
    if (file.size() - pos < 4) return false;
    const auto* b = reinterpret_cast<const uint8_t*>(file.data() + pos);
    const uint32_t length = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) |
                            (uint32_t{b[2]} << 8) | uint32_t{b[3]};
    if (length > file.size() - pos - 4) return false;
    blocks->emplace_back(file.substr(pos + 4, length));
    pos += 4 + uint64_t{length};
  }
  return true;
}

std::string BlockHeader(uint32_t length) {
  return {static_cast<char>(length >> 24), static_cast<char>(length >> 16),
          static_cast<char>(length >> 8), static_cast<char>(length)};
}

std::string JoinSnappyBlocks(const std::vector<std::string>& blocks) {
  std::string out;
  for (const std::string& block : blocks) {
    out += BlockHeader(static_cast<uint32_t>(block.size())) + block;
  }
  return out;
}

bool SnappyToStream(std::string_view file, std::string* stream) {
  std::vector<std::string> blocks;
  if (!SplitSnappyBlocks(file, &blocks)) return false;
  stream->clear();
  for (const std::string& block : blocks) {
    // Forged uncompressed lengths are the reader's to reject; here (as in
    // the reader) they must not become huge buffers.
    size_t length = 0;
    std::string raw;
    if (!snappy::GetUncompressedLength(block.data(), block.size(), &length) ||
        length > 22 * block.size() ||
        !snappy::Uncompress(block.data(), block.size(), &raw)) {
      return false;
    }
    *stream += raw;
  }
  return true;
}

// |stream| in snappy blocks of |block_bytes| (RecordFileWriter's), or of
// random sizes (some empty) when |random_blocks|.
std::string StreamToSnappy(std::string_view stream, bool random_blocks,
                           Rng* rng, std::string* desc) {
  std::vector<std::string> blocks;
  size_t pos = 0;
  while (pos < stream.size()) {
    size_t n = RecordFileWriter::kBlockBytes;
    if (random_blocks) {
      n = rng->Chance(0.1) ? 0 : rng->Range(1, rng->Chance(0.5) ? 64 : 100000);
    }
    n = std::min(n, stream.size() - pos);
    std::string block;
    snappy::Compress(stream.data() + pos, n, &block);
    blocks.push_back(block);
    pos += n;
  }
  if (random_blocks && rng->Chance(0.3)) {
    std::string empty;
    snappy::Compress("", 0, &empty);
    blocks.insert(blocks.begin() + rng->Below(blocks.size() + 1), empty);
  }
  if (random_blocks) {
    *desc += " [blocks:";
    for (const std::string& block : blocks) {
      size_t uncompressed = 0;
      snappy::GetUncompressedLength(block.data(), block.size(), &uncompressed);
      *desc += " " + std::to_string(uncompressed);
      if (desc->size() > 1000) {
        *desc += " ...";
        break;
      }
    }
    *desc += "]";
  }
  return JoinSnappyBlocks(blocks);
}

// ---------------------------------------------------------------------------
// Checkpoints in memory.

struct TableSpec {
  std::string name;
  std::string config;  // EmbeddingHashTableConfig, text format
  int entries = 0;
};

EmbeddingHashTableConfig ParseConfig(const std::string& text) {
  EmbeddingHashTableConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  return config;
}

std::string Segment(int dim, const std::string& init, const std::string& opt) {
  return "segments { dim_size: " + std::to_string(dim) + " init_config { " +
         init + " } opt_config { " + opt + " } } ";
}

std::string TrainingConfig(const std::string& segments) {
  return "entry_config { " + segments + " }";
}

// The SERVING table of the same dims (fp16 values), as a serving graph
// restores a training checkpoint.
std::string ServingConfig(const EmbeddingHashTableConfig& training) {
  std::string segments;
  for (const auto& segment : training.entry_config().segments()) {
    segments += "segments { dim_size: " + std::to_string(segment.dim_size()) +
                " comp_config { fp16 {} } } ";
  }
  return "entry_config { entry_type: SERVING " + segments + " }";
}

// The same table one float wider in its first segment: every entry fails.
std::string WiderConfig(const EmbeddingHashTableConfig& training) {
  EmbeddingHashTableConfig config = training;
  auto* segment = config.mutable_entry_config()->mutable_segments(0);
  segment->set_dim_size(segment->dim_size() + 1);
  std::string text;
  google::protobuf::TextFormat::PrintToString(config, &text);
  return text;
}

using Contents = std::map<int64_t, std::string>;  // id -> saved EntryDump

Contents TableContents(const EmbeddingHashTable& table) {
  Contents contents;
  const Status s =
      table.Save(0, 1, 0, [&](const EmbeddingHashTable::SavedEntry& e) {
        contents[e.id] = std::string(e.dump, e.dump_size);
        return Status::OK();
      });
  EXPECT_OK(s);
  return contents;
}

// |meta| serialized; a table name that is not ASCII (the fuzzer's invalid
// UTF-8) goes in after serializing, which protobuf would log about.
std::string SerializeMeta(MultiHashTableMetadata meta) {
  const std::string name = meta.table_name();
  if (std::all_of(name.begin(), name.end(),
                  [](char c) { return static_cast<uint8_t>(c) < 0x80; })) {
    return meta.SerializeAsString();
  }
  meta.set_table_name(std::string(name.size(), '?'));
  std::string out = meta.SerializeAsString();
  // Field 1 comes first: its tag, its length, then the name.
  out.replace(1 + VarintBytes(name.size()), name.size(), name);
  return out;
}

struct CheckpointFiles {
  std::map<std::string, std::string> files;  // name -> bytes
  std::set<std::string> dirs;                // names that are directories
  std::map<std::string, bool> snappy;        // data file -> snappy stream
};

bool IsMetaName(const std::string& name) {
  return name.find(".meta") != std::string::npos;
}

enum class Mode { kTraining, kServing, kWider };

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kTraining:
      return "training";
    case Mode::kServing:
      return "serving";
    default:
      return "wider";
  }
}

struct Base {
  std::string label;
  std::vector<TableSpec> tables;
  int nshards = 1;
  bool snappy = true;
  CheckpointFiles files;
  // What restoring the unmutated checkpoint gives, per table name.
  std::map<std::string, Contents> training;
  std::map<std::string, Contents> serving;
};

std::string FileError(const std::string& path) {
  return "cannot write " + path;
}

void WriteFiles(const std::string& dir, const CheckpointFiles& files) {
  for (const auto& [name, bytes] : files.files) {
    std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << FileError(dir + "/" + name);
  }
  for (const std::string& name : files.dirs) {
    if (files.files.count(name)) continue;  // a file was put back there
    ASSERT_EQ(mkdir((dir + "/" + name).c_str(), 0755), 0)
        << FileError(dir + "/" + name);
  }
}

// Empties |dir| of what WriteFiles put there (plain files and empty
// directories: nothing else is ever created in it).
void EmptyDir(const std::string& dir) {
  PosixFileSystem fs;
  std::vector<std::string> names;
  if (!fs.ListDirectory(dir, &names).ok()) return;
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      rmdir(path.c_str());
    } else {
      unlink(path.c_str());
    }
  }
}

void ReadFiles(const std::string& dir, CheckpointFiles* files) {
  PosixFileSystem fs;
  std::vector<std::string> names;
  ASSERT_OK(fs.ListDirectory(dir, &names));
  for (const std::string& name : names) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    files->files[name] = std::string(std::istreambuf_iterator<char>(in), {});
  }
}

// ---------------------------------------------------------------------------
// Restore, as MultiHashTableRestoreOp does it.

// Runs fn over [0, n) on up to three threads.
Status ThreadedFor(int64_t n, const std::function<Status(int64_t)>& fn) {
  std::atomic<int64_t> next{0};
  std::mutex mu;
  Status first;
  auto worker = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      Status s = fn(i);
      std::lock_guard<std::mutex> lock(mu);
      if (!s.ok() && first.ok()) first = s;
    }
  };
  std::vector<std::thread> threads;
  for (int64_t t = 0; t < std::min<int64_t>(n, 3); ++t)
    threads.emplace_back(worker);
  for (std::thread& thread : threads) thread.join();
  return first;
}

struct RestoreResult {
  std::string stage;  // "info", "segments" or "restore"; empty when OK
  Status status;
  std::map<std::string, Contents> contents;  // when OK
};

std::string ConfigFor(const TableSpec& spec, Mode mode) {
  switch (mode) {
    case Mode::kTraining:
      return spec.config;
    case Mode::kServing:
      return ServingConfig(ParseConfig(spec.config));
    default:
      return WiderConfig(ParseConfig(spec.config));
  }
}

RestoreResult Restore(const std::string& basename,
                      const std::vector<TableSpec>& specs, Mode mode,
                      bool threaded, bool keep_contents) {
  RestoreResult result;
  PosixFileSystem fs;
  int log_lines = 0;
  const LogFn log = [&log_lines](const std::string&) { ++log_lines; };
  CheckpointInfo info;
  // What FeatureStat reads first: the meta files alone.
  ReadCheckpointInfo(&fs, basename, /*need_data=*/false, log, &info).ok();
  info = CheckpointInfo();
  result.status =
      ReadCheckpointInfo(&fs, basename, /*need_data=*/true, log, &info);
  if (!result.status.ok()) {
    result.stage = "info";
    return result;
  }
  // What ReadCheckpointInfo promises about a checkpoint it accepts.
  EXPECT_GE(info.nshards, 1);
  EXPECT_EQ(info.shards.size(), static_cast<size_t>(info.nshards));
  for (const CheckpointInfo::Shard& shard : info.shards) {
    for (const CheckpointInfo::ShardTable& table : shard.tables) {
      EXPECT_GE(table.table, 0);
      EXPECT_LT(table.table, static_cast<int>(info.tables.size()));
    }
  }
  std::vector<std::unique_ptr<EmbeddingHashTable>> tables;
  for (const TableSpec& spec : specs) {
    std::unique_ptr<EmbeddingHashTable> table;
    const Status s = EmbeddingHashTable::Create(
        ParseConfig(ConfigFor(spec, mode)), 11, &table);
    EXPECT_OK(s);
    tables.push_back(std::move(table));
  }
  std::vector<int> to_graph;
  for (const CheckpointInfo::Table& table : info.tables) {
    int graph = -1;
    for (size_t t = 0; t < specs.size(); ++t) {
      if (specs[t].name == table.name) graph = static_cast<int>(t);
    }
    to_graph.push_back(graph);
    // As the restore op: segments other than the save's fail up front.
    if (graph < 0) continue;
    result.status = CheckSegmentDims(
        info, static_cast<int>(to_graph.size()) - 1,
        tables[graph]->accessor().SegmentDims());
    if (!result.status.ok()) {
      result.stage = "segments";
      return result;
    }
  }
  std::vector<RecordScratch> scratch(info.nshards);
  result.status = RestoreCheckpoint(
      &fs, info,
      [&](int shard, int t, std::string_view record) {
        if (t < 0 || t >= static_cast<int>(to_graph.size())) {
          ADD_FAILURE() << "RestoreCheckpoint handed out table " << t << " of "
                        << to_graph.size();
          return InternalError("bad table index");
        }
        if (to_graph[t] < 0) return Status::OK();
        int64_t update_time = 0;
        return tables[to_graph[t]]->RestoreRecord(
            record.data(), record.size(), &scratch[shard], &update_time);
      },
      threaded ? ParallelFor(ThreadedFor) : ParallelFor(SerialFor), log);
  if (!result.status.ok()) {
    result.stage = "restore";
    return result;
  }
  if (keep_contents) {
    for (size_t t = 0; t < specs.size(); ++t) {
      result.contents[specs[t].name] = TableContents(*tables[t]);
    }
  }
  return result;
}

// ---------------------------------------------------------------------------
// The base checkpoints.

// A table of |spec| with |spec.entries| trained entries (ids at the edges of
// int64 among them, update times up to 2^32 - 1).
std::unique_ptr<EmbeddingHashTable> MakeTable(const TableSpec& spec,
                                              uint64_t seed) {
  std::unique_ptr<EmbeddingHashTable> table;
  const Status s =
      EmbeddingHashTable::Create(ParseConfig(spec.config), seed, &table);
  EXPECT_OK(s);
  if (!s.ok()) return nullptr;
  Rng rng(seed);
  std::vector<int64_t> ids = {0, -1, std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int64_t>::max()};
  std::set<int64_t> seen(ids.begin(), ids.end());
  while (static_cast<int>(ids.size()) < spec.entries) {
    const int64_t id = static_cast<int64_t>(rng.Next() >> rng.Below(64));
    if (seen.insert(id).second) ids.push_back(id);
  }
  ids.resize(spec.entries);
  const int dim = table->DimSize();
  std::vector<float> grads(ids.size() * dim);
  std::vector<float> rates(table->SliceSize(), 0.05f);
  for (int round = 0; round < 2; ++round) {
    for (float& g : grads) g = rng.Float();
    EXPECT_OK(table->BatchOptimize(ids.data(), static_cast<int64_t>(ids.size()),
                                   grads.data(), rates.data(), 100, round + 1));
  }
  // Distinct update times, some at the edges.
  for (size_t i = 0; i < ids.size(); ++i) {
    std::vector<float> zero(dim, 0.0f);
    const int64_t time = i % 7 == 0 ? 0xffffffffll
                         : i % 5 == 0
                             ? 0
                             : static_cast<int64_t>(rng.Below(1u << 31));
    table->AssignAdd(&ids[i], 1, zero.data(), time);
  }
  return table;
}

// Meta records rewritten with a fixed save id and time, so iterations
// reproduce byte for byte (SaveCheckpoint draws them at random).
void PinIdentity(CheckpointFiles* files, uint64_t save_id, int64_t time) {
  for (auto& [name, bytes] : files->files) {
    if (!IsMetaName(name)) continue;
    RecordStream stream = SplitRecords(bytes);
    for (std::string& record : stream.records) {
      MultiHashTableMetadata meta;
      ASSERT_TRUE(meta.ParseFromString(record));
      meta.set_save_id(save_id);
      meta.set_save_time_micros(time);
      record = SerializeMeta(meta);
    }
    bytes = JoinRecords(stream);
  }
}

Base MakeBase(const std::string& label, std::vector<TableSpec> specs,
              int nshards, bool snappy, int index, uint64_t seed) {
  Base base;
  base.label = label;
  base.tables = std::move(specs);
  base.nshards = nshards;
  base.snappy = snappy;
  std::vector<std::unique_ptr<EmbeddingHashTable>> tables;
  std::vector<const EmbeddingHashTable*> saved;
  std::vector<std::string> names;
  for (size_t t = 0; t < base.tables.size(); ++t) {
    tables.push_back(MakeTable(base.tables[t], SplitMix64(seed + t)));
    saved.push_back(tables.back().get());
    names.push_back(base.tables[t].name);
  }
  SaveOptions options;
  // Half the bases record segment dims: restores into wider tables fail
  // up front for those, record by record for the others (as for the
  // original's checkpoints).
  if (index % 2 == 0) {
    for (const EmbeddingHashTable* table : saved) {
      options.segment_dims.push_back(table->accessor().SegmentDims());
    }
  }
  const std::string dir = TmpDir() + "/fuzz_base_" + std::to_string(index);
  PosixFileSystem fs;
  EXPECT_OK(fs.CreateDirectories(dir));
  EmptyDir(dir);
  options.nshards = nshards;
  options.snappy = snappy;
  const Status s = SaveCheckpoint(
      &fs, dir + "/" + kBasename, names,
      EmbeddingTablesSaver(saved), options);
  EXPECT_OK(s);
  ReadFiles(dir, &base.files);
  PinIdentity(&base.files, SplitMix64(seed ^ 0x5a5a), 1700000000000000 + index);
  for (const auto& [name, bytes] : base.files.files) {
    if (!IsMetaName(name)) base.files.snappy[name] = snappy;
  }
  // What the unmutated checkpoint restores to.
  EmptyDir(dir);
  WriteFiles(dir, base.files);
  for (Mode mode : {Mode::kTraining, Mode::kServing}) {
    RestoreResult result = Restore(dir + "/" + kBasename, base.tables, mode,
                                   /*threaded=*/false, /*keep_contents=*/true);
    EXPECT_TRUE(result.status.ok())
        << label << " " << ModeName(mode) << ": " << result.status.ToString();
    (mode == Mode::kTraining ? base.training : base.serving) = result.contents;
  }
  for (size_t t = 0; t < base.tables.size(); ++t) {
    EXPECT_EQ(base.training[names[t]], TableContents(*tables[t]))
        << label << ": the unmutated checkpoint does not restore table "
        << names[t];
    EXPECT_EQ(base.training[names[t]].size(),
              static_cast<size_t>(base.tables[t].entries));
  }
  EmptyDir(dir);
  rmdir(dir.c_str());
  return base;
}

std::vector<Base> MakeBases(uint64_t seed) {
  const std::string zeros = "zeros {}";
  const std::string uniform = "random_uniform { minval: -1 maxval: 1 }";
  const std::string ones = "ones {}";
  const std::string sgd = "sgd {}";
  const std::string adagrad = "adagrad { initial_accumulator_value: 0.5 }";
  const std::string ftrl = "ftrl {}";
  const std::string adam = "adam {}";
  std::vector<Base> bases;
  auto add = [&](const std::string& label, std::vector<TableSpec> specs,
                 int nshards, bool snappy) {
    const int index = static_cast<int>(bases.size());
    bases.push_back(MakeBase(label, std::move(specs), nshards, snappy, index,
                             SplitMix64(seed * 1000 + index)));
  };
  add("sgd1+ada4 snappy x1",
      {{"sgd1", TrainingConfig(Segment(1, zeros, sgd)), 40},
       {"ada4", TrainingConfig(Segment(4, uniform, adagrad)), 40}},
      1, true);
  add("ada8+sgd3+empty uncompressed x3",
      {{"ada8", TrainingConfig(Segment(8, uniform, adagrad)), 45},
       {"sgd3", TrainingConfig(Segment(3, ones, sgd)), 30},
       {"empty", TrainingConfig(Segment(2, zeros, sgd)), 0}},
      3, false);
  add("sgd2|ada3+ftrl5 snappy x2",
      {{"seg23",
        TrainingConfig(Segment(2, uniform, sgd) + Segment(3, uniform, adagrad)),
        30},
       {"ftrl5", TrainingConfig(Segment(5, zeros, ftrl)), 30}},
      2, true);
  add("adam6+ada1 uncompressed x2",
      {{"adam6", TrainingConfig(Segment(6, uniform, adam)), 30},
       {"ada1", TrainingConfig(Segment(1, ones, adagrad)), 30}},
      2, false);
  add("sgd1+ada4 uncompressed x2",
      {{"sgd1", TrainingConfig(Segment(1, zeros, sgd)), 25},
       {"ada4", TrainingConfig(Segment(4, uniform, adagrad)), 25}},
      2, false);
  add("ada7 snappy x3",
      {{"ada7", TrainingConfig(Segment(7, uniform, adagrad)), 60}}, 3, true);
  // Every other optimizer's state (and the warmup and float16 rounding
  // decorators), each restored from mutated records too.
  add("momentum|rmsprop|rmspropv2+amsgrad|adadelta snappy x2",
      {{"moments",
        TrainingConfig(Segment(2, uniform, "momentum { use_nesterov: true }") +
                       Segment(3, uniform, "rmsprop {}") +
                       Segment(2, zeros, "rmspropv2 {}")),
        25},
       {"amsgrad_adadelta",
        TrainingConfig(Segment(3, uniform, "amsgrad {}") +
                       Segment(2, ones, "adadelta {}")),
        25}},
      2, true);
  add("dynamic_wd_adagrad|group_adagrad|group_ftrl+moving_average|"
      "batch_softmax uncompressed x2",
      {{"adagrads",
        TrainingConfig(
            Segment(3, uniform,
                    "dynamic_wd_adagrad { weight_decay_factor: 0.1 }") +
            Segment(4, uniform, "group_adagrad { warmup_steps: 5 }") +
            Segment(2, zeros,
                    "group_ftrl {} stochastic_rounding_float16: true")),
        25},
       {"averages",
        TrainingConfig(Segment(2, uniform, "moving_average {}") +
                       Segment(1, ones, "batch_softmax {}")),
        25}},
      2, false);
  // Last: a data file of several snappy blocks (records across blocks).
  add("ada8 large snappy x1",
      {{"ada8", TrainingConfig(Segment(8, uniform, adagrad)), 5000}}, 1, true);
  return bases;
}

// ---------------------------------------------------------------------------
// Mutations of a checkpoint.

class Mutator {
 public:
  Mutator(const Base& base, const std::vector<Base>& all, Rng* rng,
          CheckpointFiles* files, std::string* desc)
      : base_(base), all_(all), rng_(*rng), files_(*files), desc_(*desc) {}

  // One hostile mutation.
  void Hostile() {
    switch (rng_.Below(20)) {
      case 0:
      case 1:
      case 2:
        RawBytes();
        break;
      case 3:
      case 4:
      case 5:
      case 6:
      case 7:
        RecordLevel(/*meta=*/false);
        break;
      case 8:
      case 9:
      case 10:
        RecordLevel(/*meta=*/true);
        break;
      case 11:
      case 12:
        MetaFields();
        break;
      case 13:
      case 14:
        SnappyLevel();
        break;
      case 15:
        EntryRewrites();
        break;
      default:
        FileSet();
        break;
    }
  }

  // One rewrite that keeps the checkpoint's meaning.
  void Equivalent() {
    switch (rng_.Below(6)) {
      case 0:
      case 1:
        EntryRewrites();
        break;
      case 2:
        MetaRewrites();
        break;
      case 3:
        Rechunk();
        break;
      case 4:
        ConvertCompression();
        break;
      default:
        IgnoredFiles();
        break;
    }
  }

  // The meta files' digests and data file sizes recomputed from the data
  // files (where both still decode).
  void FixMeta(bool digests, bool sizes) {
    for (auto& [name, bytes] : files_.files) {
      if (!IsMetaName(name)) continue;
      std::string data_name = name;
      data_name.erase(data_name.find(".meta"), 5);
      const auto data = files_.files.find(data_name);
      if (data == files_.files.end()) continue;
      std::string stream;
      if (!DataStream(data_name, &stream)) continue;
      const RecordStream records = SplitRecords(stream);
      RecordStream meta = SplitRecords(bytes);
      size_t next = 0;
      for (std::string& record : meta.records) {
        MultiHashTableMetadata m;
        if (!m.ParseFromString(record)) {
          next = records.records.size();
          continue;
        }
        uint32_t digest = 0;
        for (uint64_t i = 0;
             i < m.num_entries() && next < records.records.size();
             ++i, ++next) {
          const uint32_t crc = DataCrc(records.records[next]);
          digest = ExtendCrc32c(digest, reinterpret_cast<const char*>(&crc), 4);
        }
        if (digests && m.has_entries_crc32c()) m.set_entries_crc32c(digest);
        if (sizes && m.has_data_file_bytes()) {
          m.set_data_file_bytes(data->second.size());
        }
        record = SerializeMeta(m);
      }
      bytes = JoinRecords(meta);
    }
  }

  // The save killed while renaming its files (the first save at the
  // basename): the files from a random point of its rename order (each
  // shard's data, then its meta) on keep their temporary names. A restore
  // reads it whole through them. Needs the save's identity.
  void InterruptedRenames() {
    const auto meta0 = files_.files.find(
        CheckpointMetaName(kBasename, 0, base_.nshards));
    if (meta0 == files_.files.end()) return;
    const RecordStream records = SplitRecords(meta0->second);
    MultiHashTableMetadata first;
    if (records.records.empty() || !first.ParseFromString(records.records[0]) ||
        !first.has_save_id()) {
      return;
    }
    const int renamed = static_cast<int>(rng_.Below(2 * base_.nshards));
    for (int r = renamed; r < 2 * base_.nshards; ++r) {
      const std::string name =
          r % 2 == 0 ? CheckpointDataName(kBasename, r / 2, base_.nshards)
                     : CheckpointMetaName(kBasename, r / 2, base_.nshards);
      const auto file = files_.files.find(name);
      if (file == files_.files.end()) continue;
      const std::string temp = name + TempSuffix(first.save_id());
      files_.files[temp] = std::move(file->second);
      files_.files.erase(name);
      const auto snappy = files_.snappy.find(name);
      if (snappy != files_.snappy.end()) {
        files_.snappy[temp] = snappy->second;
        files_.snappy.erase(name);
      }
    }
    desc_ += " =interrupted-renames(" + std::to_string(renamed) + ")";
  }

  // Every meta record without its identity fields: a checkpoint as the
  // original writes it.
  void StripIdentity() {
    for (auto& [name, bytes] : files_.files) {
      if (!IsMetaName(name)) continue;
      RecordStream meta = SplitRecords(bytes);
      for (std::string& record : meta.records) {
        MultiHashTableMetadata m;
        if (!m.ParseFromString(record)) continue;
        m.clear_save_id();
        m.clear_save_time_micros();
        m.clear_shard();
        m.clear_num_shards();
        m.clear_entries_crc32c();
        m.clear_data_file_bytes();
        m.clear_segment_dims();
        record = SerializeMeta(m);
      }
      bytes = JoinRecords(meta);
    }
    desc_ += " =strip-identity";
  }

 private:
  std::vector<std::string> Names(int kind) const {  // 0 data, 1 meta, 2 any
    std::vector<std::string> names;
    for (const auto& [name, bytes] : files_.files) {
      if (kind == 2 || (kind == 1) == IsMetaName(name)) names.push_back(name);
    }
    return names;
  }

  bool IsSnappy(const std::string& name) const {
    const auto it = files_.snappy.find(name);
    return it != files_.snappy.end() && it->second;
  }

  bool DataStream(const std::string& name, std::string* stream) const {
    const std::string& bytes = files_.files.at(name);
    if (!IsSnappy(name)) {
      *stream = bytes;
      return true;
    }
    return SnappyToStream(bytes, stream);
  }

  // Stores |stream| as file |name|, in snappy blocks if it is a snappy file.
  void SetStream(const std::string& name, const std::string& stream,
                 bool random_blocks = false) {
    files_.files[name] =
        IsSnappy(name) ? StreamToSnappy(stream, random_blocks, &rng_, &desc_)
                       : stream;
  }

  void RawBytes() {
    const std::vector<std::string> names = Names(2);
    if (names.empty()) return;
    const std::string& name = rng_.Pick(names);
    desc_ += " raw(" + name + "):";
    MutateBytes(&files_.files[name], &rng_, &desc_);
  }

  // A mutation of the records of a data or meta file, framed with valid
  // CRCs unless the mutation is of the framing.
  void RecordLevel(bool meta) {
    const std::vector<std::string> names = Names(meta ? 1 : 0);
    if (names.empty()) return;
    const std::string name = rng_.Pick(names);
    std::string stream;
    if (!DataStream(name, &stream)) return RawBytes();
    RecordStream records = SplitRecords(stream);
    desc_ += " records(" + name + "):";
    std::vector<std::string>& list = records.records;
    const size_t n = list.size();
    const size_t k = rng_.Below(n);
    std::string framed_k;  // when set: record k's framing, as mutated
    switch (rng_.Below(n == 0 ? 1 : 12)) {
      case 0: {  // a record from elsewhere, or random bytes
        std::string record = RandomBytes(&rng_, rng_.Below(40));
        if (rng_.Chance(0.5)) {
          const Base& other = rng_.Pick(all_);
          std::string other_stream;
          const auto& [other_name, other_bytes] = *std::next(
              other.files.files.begin(), rng_.Below(other.files.files.size()));
          other_stream = other_bytes;
          const auto it = other.files.snappy.find(other_name);
          if (it != other.files.snappy.end() && it->second) {
            SnappyToStream(other_bytes, &other_stream);
          }
          RecordStream other_records = SplitRecords(other_stream);
          if (!other_records.records.empty()) {
            record = rng_.Pick(other_records.records);
          }
        }
        list.insert(list.begin() + rng_.Below(n + 1), record);
        desc_ += " insert-record";
        break;
      }
      case 1:
      case 2:
        desc_ += " record" + std::to_string(k) + " bytes:";
        MutateBytes(&list[k], &rng_, &desc_);
        break;
      case 3:
      case 4:
        desc_ += " record" + std::to_string(k) + " proto:";
        list[k] = MutateMessage(list[k], 0, &rng_, &desc_);
        break;
      case 5: {  // parsed, changed, serialized: well-formed but wrong
        std::unique_ptr<google::protobuf::Message> parsed(
            meta ? static_cast<google::protobuf::Message*>(
                       new MultiHashTableMetadata)
                 : new EntryDump);
        if (!parsed->ParseFromString(list[k])) break;
        desc_ += " record" + std::to_string(k) + " parsed:";
        const int n = static_cast<int>(rng_.Range(1, 3));
        for (int i = 0; i < n; ++i)
          MutateParsed(parsed.get(), 0, &rng_, &desc_);
        list[k] = meta ? SerializeMeta(*static_cast<MultiHashTableMetadata*>(
                             parsed.get()))
                       : parsed->SerializeAsString();
        break;
      }
      case 6: {  // a lying length with a valid header CRC
        const uint64_t real = list[k].size();
        const std::vector<uint64_t> lengths = {
            0,
            real - 1,
            real + 1,
            real + 4,
            real + 16,
            0x7fffffff,
            0x80000000,
            0xffffffff,
            0x100000000,
            real + 0x100000000,
            0x8000000000000000,
            0xffffffffffffffff,
            0xffffffffffffffff - real,
            0xfffffffffffffff0,
            0xffffffffffffffff - kRecordHeaderBytes - kRecordFooterBytes + 1,
            static_cast<uint64_t>(stream.size())};
        const uint64_t claimed = rng_.Pick(lengths);
        framed_k = FrameRecord(list[k], claimed);
        desc_ += " record" + std::to_string(k) + " claims " +
                 std::to_string(claimed) + "/" + std::to_string(real);
        break;
      }
      case 7: {  // a bad header or data CRC
        framed_k = FrameRecord(list[k]);
        const size_t at = rng_.Chance(0.5)
                              ? 8 + rng_.Below(4)
                              : framed_k.size() - 1 - rng_.Below(4);
        framed_k[at] ^= static_cast<char>(1u << rng_.Below(8));
        desc_ +=
            " record" + std::to_string(k) + " bad crc@" + std::to_string(at);
        break;
      }
      case 8:
        list.erase(list.begin() + k);
        desc_ += " drop-record" + std::to_string(k);
        break;
      case 9:
        list.insert(list.begin() + k, list[k]);
        desc_ += " dup-record" + std::to_string(k);
        break;
      case 10: {
        const size_t j = rng_.Below(n);
        std::swap(list[k], list[j]);
        desc_ += " swap-records" + std::to_string(k) + "," + std::to_string(j);
        break;
      }
      default:
        if (rng_.Chance(0.5)) {
          records.tail += RandomBytes(&rng_, rng_.Range(1, 20));
          desc_ += " tail";
        } else {
          records.tail += FrameRecord(list[k]).substr(
              0, rng_.Range(1, kRecordHeaderBytes + list[k].size() + 3));
          desc_ += " cut-record";
        }
        break;
    }
    std::string out;
    for (size_t i = 0; i < list.size(); ++i) {
      out += i == k && !framed_k.empty() ? framed_k : FrameRecord(list[i]);
    }
    out += records.tail;
    SetStream(name, out, rng_.Chance(0.2));
  }

  // A MultiHashTableMetadata field set to an interesting value, in one or
  // every meta record.
  void MetaFields() {
    const std::vector<std::string> names = Names(1);
    if (names.empty()) return;
    const bool everywhere = rng_.Chance(0.2);
    const int field = static_cast<int>(rng_.Below(10));
    const uint64_t interesting = rng_.Pick(kInterestingU64);
    const int delta = static_cast<int>(rng_.Range(-2, 2));
    const bool clear = rng_.Chance(0.15);
    std::vector<std::string> table_names;
    for (const Base& base : all_) {
      for (const TableSpec& spec : base.tables)
        table_names.push_back(spec.name);
    }
    table_names.push_back("");
    table_names.push_back(std::string(1, '\0'));
    table_names.push_back("\xff\xfe invalid utf-8");
    table_names.push_back(std::string(70000, 'x'));
    const std::string table_name = rng_.Pick(table_names);
    const std::string target = rng_.Pick(names);
    desc_ += " meta(" + (everywhere ? std::string("*") : target) + "): field" +
             std::to_string(field) + (clear ? " cleared" : "");
    for (const std::string& name : names) {
      if (!everywhere && name != target) continue;
      RecordStream meta = SplitRecords(files_.files[name]);
      if (meta.records.empty()) continue;
      const size_t only = rng_.Below(meta.records.size());
      for (size_t r = 0; r < meta.records.size(); ++r) {
        if (!everywhere && r != only) continue;
        MultiHashTableMetadata m;
        if (!m.ParseFromString(meta.records[r])) continue;
        switch (field) {
          case 0:
            clear
                ? m.clear_num_entries()
                : m.set_num_entries(rng_.Chance(0.5) ? interesting
                                                     : m.num_entries() + delta);
            break;
          case 1:
            clear ? m.clear_table_name() : m.set_table_name(table_name);
            break;
          case 2:
            clear ? m.clear_save_id()
                  : m.set_save_id(m.save_id() ^ interesting);
            break;
          case 3:
            clear ? m.clear_shard()
                  : m.set_shard(static_cast<uint32_t>(
                        rng_.Chance(0.5) ? interesting : m.shard() + delta));
            break;
          case 4:
            clear
                ? m.clear_num_shards()
                : m.set_num_shards(static_cast<uint32_t>(
                      rng_.Chance(0.5) ? interesting : m.num_shards() + delta));
            break;
          case 5:
            clear
                ? m.clear_entries_crc32c()
                : m.set_entries_crc32c(m.entries_crc32c() ^
                                       static_cast<uint32_t>(interesting | 1));
            break;
          case 6:
            clear ? m.clear_data_file_bytes()
                  : m.set_data_file_bytes(rng_.Chance(0.5)
                                              ? interesting
                                              : m.data_file_bytes() + delta);
            break;
          case 7:
            clear ? m.clear_save_time_micros()
                  : m.set_save_time_micros(static_cast<int64_t>(interesting));
            break;
          case 8:  // a segment's dim changed, or one segment more
            if (clear) {
              m.clear_segment_dims();
            } else if (m.segment_dims_size() > 0 && rng_.Chance(0.5)) {
              const int i = static_cast<int>(rng_.Below(m.segment_dims_size()));
              m.set_segment_dims(
                  i, static_cast<uint32_t>(rng_.Chance(0.5)
                                               ? interesting
                                               : m.segment_dims(i) + delta));
            } else {
              m.add_segment_dims(static_cast<uint32_t>(interesting));
            }
            break;
          default:  // a record duplicated or dropped
            if (rng_.Chance(0.5)) {
              meta.records.push_back(meta.records[r]);
            } else {
              meta.records.erase(meta.records.begin() + r);
            }
            files_.files[name] = JoinRecords(meta);
            return;
        }
        meta.records[r] = SerializeMeta(m);
      }
      files_.files[name] = JoinRecords(meta);
    }
  }

  // Forged snappy blocks: lengths, uncompressed lengths, bytes.
  void SnappyLevel() {
    std::vector<std::string> names;
    for (const std::string& name : Names(0)) {
      if (IsSnappy(name)) names.push_back(name);
    }
    if (names.empty()) return RecordLevel(false);
    const std::string name = rng_.Pick(names);
    std::vector<std::string> blocks;
    if (!SplitSnappyBlocks(files_.files[name], &blocks) || blocks.empty()) {
      return RawBytes();
    }
    desc_ += " snappy(" + name + "):";
    const size_t k = rng_.Below(blocks.size());
    std::string& block = blocks[k];
    switch (rng_.Below(7)) {
      case 0: {  // the block's length field
        const uint64_t real = block.size();
        const std::vector<uint64_t> lengths = {
            0,          real - 1,   real + 1,   real + 100,
            0x7fffffff, 0x80000000, 0xffffffff, 0xfffffffe};
        const uint32_t length = static_cast<uint32_t>(rng_.Pick(lengths));
        std::string out;
        for (size_t i = 0; i < blocks.size(); ++i) {
          out += BlockHeader(i == k ? length
                                    : static_cast<uint32_t>(blocks[i].size())) +
                 blocks[i];
        }
        files_.files[name] = out;
        desc_ += " block" + std::to_string(k) + " length " +
                 std::to_string(length) + "/" + std::to_string(real);
        return;
      }
      case 1: {  // the uncompressed length snappy's preamble claims
        size_t pos = 0;
        uint64_t real = 0;
        if (!GetVarint(block, &pos, &real)) break;
        const std::vector<uint64_t> lengths = {
            0,          real - 1,          real + 1,
            real * 2,   22 * block.size(), 22 * block.size() + 1,
            0xffffffff, 0x100000000,       0xffffffffffffffff};
        const uint64_t claimed = rng_.Pick(lengths);
        std::string forged;
        PutVarint(&forged, claimed, rng_.Chance(0.2) ? 5 : 1);
        block = forged + block.substr(pos);
        desc_ += " block" + std::to_string(k) + " claims " +
                 std::to_string(claimed) + "/" + std::to_string(real);
        break;
      }
      case 2:
        desc_ += " block" + std::to_string(k) + " bytes:";
        MutateBytes(&block, &rng_, &desc_);
        break;
      case 3: {  // two blocks as one
        if (k + 1 < blocks.size()) {
          block += blocks[k + 1];
          blocks.erase(blocks.begin() + k + 1);
        } else {
          block += block;
        }
        desc_ += " merged-blocks";
        break;
      }
      case 4:
        blocks.erase(blocks.begin() + k);
        desc_ += " drop-block" + std::to_string(k);
        break;
      case 5: {  // a stored (uncompressed) block: not snappy at all
        std::string raw;
        if (SnappyToStream(
                BlockHeader(static_cast<uint32_t>(block.size())) + block,
                &raw)) {
          block = raw;
        }
        desc_ += " raw-block";
        break;
      }
      default: {  // an empty block
        std::string empty;
        snappy::Compress("", 0, &empty);
        blocks.insert(blocks.begin() + k, empty);
        desc_ += " empty-block";
        break;
      }
    }
    files_.files[name] = JoinSnappyBlocks(blocks);
  }

  // EntryDump records of one data file rewritten equivalently.
  void EntryRewrites() {
    const std::vector<std::string> names = Names(0);
    if (names.empty()) return;
    const std::string name = rng_.Pick(names);
    std::string stream;
    if (!DataStream(name, &stream)) return;
    RecordStream records = SplitRecords(stream);
    desc_ += " entries(" + name + "):";
    const double p = rng_.Chance(0.5) ? 1.0 : 0.2;
    int rewritten = 0;
    std::string detail;
    for (std::string& record : records.records) {
      if (!rng_.Chance(p)) continue;
      std::string d;
      record = RewriteEquivalently(record, 0, kEntryDumpSchema, &rng_, &d);
      if (detail.empty()) detail = d;
      ++rewritten;
    }
    desc_ += " " + std::to_string(rewritten) + " rewritten, e.g." + detail;
    SetStream(name, JoinRecords(records));
  }

  void MetaRewrites() {
    const std::vector<std::string> names = Names(1);
    if (names.empty()) return;
    const std::string name = rng_.Pick(names);
    RecordStream meta = SplitRecords(files_.files[name]);
    desc_ += " metas(" + name + "):";
    for (std::string& record : meta.records) {
      record = RewriteEquivalently(record, 0, kMetaSchema, &rng_, &desc_);
    }
    files_.files[name] = JoinRecords(meta);
  }

  void Rechunk() {
    std::vector<std::string> names;
    for (const std::string& name : Names(0)) {
      if (IsSnappy(name)) names.push_back(name);
    }
    if (names.empty()) return ConvertCompression();
    const std::string name = rng_.Pick(names);
    std::string stream;
    if (!DataStream(name, &stream)) return;
    SetStream(name, stream, /*random_blocks=*/true);
    desc_ += " =rechunk(" + name + ")";
  }

  void ConvertCompression() {
    const std::vector<std::string> names = Names(0);
    if (names.empty()) return;
    const std::string name = rng_.Pick(names);
    std::string stream;
    if (!DataStream(name, &stream)) return;
    files_.snappy[name] = !IsSnappy(name);
    SetStream(name, stream, rng_.Chance(0.3));
    desc_ += std::string(" =") + (IsSnappy(name) ? "to-snappy(" : "to-raw(") +
             name + ")";
  }

  // Files a restore must ignore: temporary files of a save, an incomplete
  // set of another shard count, names that are not shard files.
  void IgnoredFiles() {
    const std::string prefix = kBasename;
    switch (rng_.Below(4)) {
      case 0:
        files_.files[CheckpointDataName(prefix, 0, base_.nshards) +
                     "-tmp-0123456789abcdef"] = RandomBytes(&rng_, 30);
        files_.files[CheckpointMetaName(prefix, 0, base_.nshards) +
                     "-tmp-0123456789abcdef"] = "";
        desc_ += " =temp-files";
        break;
      case 1: {
        const Base& other = rng_.Pick(all_);
        const std::string data = CheckpointDataName(prefix, 0, other.nshards);
        if (other.nshards == base_.nshards || other.nshards == 1) {
          files_.files[CheckpointDataName(prefix, 0, 7)] = "junk";
        } else {
          files_.files[data] = other.files.files.at(data);
        }
        desc_ += " =lone-data-file";
        break;
      }
      case 2:
        files_.files[prefix + "x-00000-of-00001"] = "junk";
        files_.files[prefix + ".meta"] = "junk";
        files_.files[prefix + "-00000-of-00001-tmp"] = "junk";
        files_.files[prefix + "-00001-of-00001"] = "junk";
        files_.files[prefix + "-00000-of-00000"] = "junk";
        files_.files[prefix + ".meta-0000a-of-00001"] = "junk";
        desc_ += " =unrelated-names";
        break;
      default:
        files_.dirs.insert("subdir");
        desc_ += " =subdir";
        break;
    }
  }

  // Whole files: dropped, emptied, swapped, replaced by another save's;
  // saves of another shard count beside them; directories in their place.
  void FileSet() {
    const std::vector<std::string> names = Names(2);
    if (names.empty()) return;
    const std::string name = rng_.Pick(names);
    switch (rng_.Below(8)) {
      case 0:
        files_.files.erase(name);
        desc_ += " drop(" + name + ")";
        break;
      case 1:
        files_.files[name].clear();
        desc_ += " empty(" + name + ")";
        break;
      case 2: {
        const std::vector<std::string> same = Names(IsMetaName(name) ? 1 : 0);
        const std::string other = rng_.Pick(same);
        std::swap(files_.files[name], files_.files[other]);
        std::swap(files_.snappy[name], files_.snappy[other]);
        desc_ += " swap(" + name + "," + other + ")";
        break;
      }
      case 3: {  // another save's file of the same kind
        const Base& other = rng_.Pick(all_);
        std::vector<std::string> candidates;
        for (const auto& [n, b] : other.files.files) {
          if (IsMetaName(n) == IsMetaName(name)) candidates.push_back(n);
        }
        const std::string from = rng_.Pick(candidates);
        files_.files[name] = other.files.files.at(from);
        if (!IsMetaName(name))
          files_.snappy[name] = other.files.snappy.at(from);
        desc_ += " replace(" + name + " by " + other.label + ":" + from + ")";
        break;
      }
      case 4:
      case 5: {  // another save's files beside these: complete or not
        const Base& other = rng_.Pick(all_);
        const bool complete = rng_.Chance(0.6);
        for (const auto& [n, b] : other.files.files) {
          if (!complete && rng_.Chance(0.4)) continue;
          if (files_.files.count(n)) continue;
          files_.files[n] = b;
          if (!IsMetaName(n)) files_.snappy[n] = other.files.snappy.at(n);
        }
        desc_ += std::string(" beside(") + other.label +
                 (complete ? ")" : ", partly)");
        break;
      }
      case 6:  // a directory under a shard file's name
        files_.files.erase(name);
        files_.dirs.insert(name);
        desc_ += " dir(" + name + ")";
        break;
      default:  // a shard file under another shard count's name
      {
        const int nshards = static_cast<int>(rng_.Range(1, 4));
        const std::string to = IsMetaName(name)
                                   ? CheckpointMetaName(kBasename, 0, nshards)
                                   : CheckpointDataName(kBasename, 0, nshards);
        if (to == name) break;
        files_.files[to] = files_.files[name];
        files_.snappy[to] = files_.snappy[name];
        files_.files.erase(name);
        desc_ += " rename(" + name + " to " + to + ")";
        break;
      }
    }
  }

  const Base& base_;
  const std::vector<Base>& all_;
  Rng& rng_;
  CheckpointFiles& files_;
  std::string& desc_;
};

// ---------------------------------------------------------------------------
// The fuzz loop.

struct Summary {
  int64_t iterations = 0;
  int64_t equivalent = 0;
  std::map<std::string, int64_t> outcomes;  // "restore DATA_LOSS" -> count
  std::map<std::string, int64_t> messages;  // error kinds, for coverage
};

// An error message without its paths and numbers: which check fired.
std::string MessageKind(const std::string& message, const std::string& dir) {
  std::string text = message;
  for (size_t at; (at = text.find(dir)) != std::string::npos;) {
    text.erase(at, dir.size());
  }
  std::string kind;
  for (char c : text) {
    const bool digit = c >= '0' && c <= '9';
    if (!digit) {
      kind.push_back(c);
    } else if (kind.empty() || kind.back() != '#') {
      kind.push_back('#');
    }
    if (kind.size() >= 110) break;
  }
  return kind;
}

std::string CodeName(const Status& status) {
  const std::string text = status.ToString();
  return text.substr(0, text.find(':'));
}

// Runs iteration |iteration| in |dir|; records its outcome in |summary|.
void RunIteration(uint64_t seed, int64_t iteration,
                  const std::vector<Base>& bases, const std::string& dir,
                  bool verbose, Summary* summary) {
  SetContext("seed " + std::to_string(seed) + " iteration " +
             std::to_string(iteration) + ": mutating");
  Rng rng(SplitMix64(seed * 0x9e3779b97f4a7c15ULL + uint64_t(iteration)));
  // The large base a twentieth of the time: it costs the most per run.
  const size_t base_index =
      rng.Chance(0.05) ? bases.size() - 1 : rng.Below(bases.size() - 1);
  const Base& base = bases[base_index];
  CheckpointFiles files = base.files;
  std::string desc;
  Mutator mutator(base, bases, &rng, &files, &desc);
  const bool equivalent = rng.Chance(0.25);
  Mode mode = Mode::kTraining;
  if (equivalent) {
    const int n = static_cast<int>(rng.Range(1, 3));
    for (int i = 0; i < n; ++i) mutator.Equivalent();
    mutator.FixMeta(/*digests=*/true, /*sizes=*/true);
    if (rng.Chance(0.1)) {
      mutator.StripIdentity();
    } else if (rng.Chance(0.15)) {
      mutator.InterruptedRenames();
    }
    if (rng.Chance(0.25)) mode = Mode::kServing;
  } else {
    const int n = rng.Chance(0.6) ? 1 : static_cast<int>(rng.Range(2, 4));
    if (rng.Chance(0.1)) mutator.InterruptedRenames();
    for (int i = 0; i < n; ++i) mutator.Hostile();
    const bool digests = rng.Chance(0.6);
    const bool sizes = rng.Chance(0.85);
    mutator.FixMeta(digests, sizes);
    desc += std::string(" fix:") + (digests ? "digests," : "") +
            (sizes ? "sizes" : "");
    if (rng.Chance(0.05)) mutator.StripIdentity();
    const uint64_t m = rng.Below(100);
    mode = m < 65 ? Mode::kTraining : m < 90 ? Mode::kServing : Mode::kWider;
  }
  const bool threaded = rng.Chance(0.3);
  const std::string header =
      "seed " + std::to_string(seed) + " iteration " +
      std::to_string(iteration) +
      " (rerun: MONOLITH_FUZZ_SEED=" + std::to_string(seed) +
      " MONOLITH_FUZZ_ITERATION=" + std::to_string(iteration) +
      ")\nbase: " + base.label + "; " +
      (equivalent ? "equivalent rewrites" : "mutations") + ":" + desc +
      "\nrestore into " + ModeName(mode) + " tables" +
      (threaded ? ", threaded" : "") + "; files in " + dir;
  SetContext(header);

  EmptyDir(dir);
  WriteFiles(dir, files);
  const RestoreResult result =
      Restore(dir + "/" + kBasename, base.tables, mode, threaded, equivalent);
  const std::string outcome =
      result.status.ok() ? "OK" : result.stage + " " + CodeName(result.status);
  ++summary->iterations;
  ++summary->outcomes[outcome];
  if (!result.status.ok()) {
    ++summary->messages[result.stage + " " +
                        MessageKind(result.status.ToString(), dir)];
  }
  if (equivalent) ++summary->equivalent;
  if (verbose) {
    std::fprintf(stderr, "%s\n  -> %s\n", header.c_str(),
                 result.status.ToString().substr(0, 400).c_str());
  }
  // OutOfRange (end of file) must never escape a restore; Internal is a
  // file system error: reading a directory where a shard file should be.
  if (result.status.code() == StatusCode::kOutOfRange ||
      (result.status.code() == StatusCode::kInternal && files.dirs.empty())) {
    ADD_FAILURE() << "unexpected status " << result.status.ToString() << "\n"
                  << header;
  }
  if (equivalent) {
    ASSERT_TRUE(result.status.ok())
        << "a rewrite that keeps the checkpoint's meaning fails to restore: "
        << result.status.ToString() << "\n"
        << header;
    const auto& expected =
        mode == Mode::kServing ? base.serving : base.training;
    for (const auto& [name, contents] : expected) {
      const auto it = result.contents.find(name);
      ASSERT_TRUE(it != result.contents.end()) << name << "\n" << header;
      ASSERT_EQ(it->second.size(), contents.size())
          << "table " << name << " restored differently\n"
          << header;
      ASSERT_TRUE(it->second == contents)
          << "table " << name << " restored differently\n"
          << header;
    }
  }
}

void DeathCallback() { PrintContext(); }

TEST(CheckpointFuzzTest, AsanIsActive) {
  // The runtime read this binary's options: it runs under ASan.
  EXPECT_TRUE(asan_options_read);
  // And instruments the heap: memory just past an allocation is poisoned.
  std::unique_ptr<char[]> heap(new char[16]);
  EXPECT_FALSE(__asan_address_is_poisoned(heap.get() + 15));
  EXPECT_TRUE(__asan_address_is_poisoned(heap.get() + 16));
}

// Out-of-bounds accesses that the code under test makes itself, each a few
// bytes past the end of a heap block: without instrumentation they would go
// unnoticed (they land in the allocation's slack or ASan's redzone).

// record_file.cc: the CRC reads one byte past a 16-byte block.
void CrcPastTheEnd() {
  std::unique_ptr<char[]> block(new char[16]());
  volatile uint32_t crc = ExtendCrc32c(0, block.get(), 17);
  (void)crc;
}

// embedding_hash_table.cc: RestoreRecord, told that |record| is longer than
// the block holding it, reads the time field's varint past its end.
void RestoreRecordPastTheEnd(EmbeddingHashTable* table,
                             const std::string& record) {
  const size_t cut = 9 + table->accessor().DumpFieldsBytes() + 1;
  std::unique_ptr<char[]> block(new char[cut]);
  std::memcpy(block.get(), record.data(), cut);
  RecordScratch scratch;
  int64_t time = 0;
  table->RestoreRecord(block.get(), record.size(), &scratch, &time).ok();
}

// entry_accessor.cc: ReadDump writes a word past an entry a word short.
void ReadDumpPastTheEnd(const EntryAccessor& accessor,
                        const std::string& record) {
  std::unique_ptr<char[]> entry(new char[accessor.SizeBytes() - 4]);
  accessor.ReadDump(record.data() + 9, accessor.DumpFieldsBytes(), entry.get());
}

// optimizer_asan: adagrad updates a state a float short.
void OptimizePastTheEnd() {
  OptimizerConfig config;
  config.mutable_adagrad();
  std::unique_ptr<OptimizerInterface> adagrad;
  if (!NewOptimizer(config, 4, &adagrad).ok()) return;
  std::unique_ptr<float[]> state(new float[3]());
  float num[4] = {};
  const float grad[4] = {1, 1, 1, 1};
  const float rate = 0.1f;
  adagrad->Optimize(state.get(), num, grad, &rate, 1);
}

// checkpoint.cc: RestoreShard reads a shard past the end of |info.shards|.
void RestoreShardPastTheEnd(FileSystem* fs, CheckpointInfo info) {
  info.shards.resize(info.nshards - 1);
  info.shards.shrink_to_fit();
  RestoreCheckpoint(
      fs, info, [](int, int, std::string_view) { return Status::OK(); },
      SerialFor, nullptr)
      .ok();
}

// The code under test is instrumented too, not only this file: ASan reports
// an out-of-bounds access in each instrumented library.
TEST(CheckpointFuzzDeathTest, CodeUnderTestIsInstrumented) {
  EXPECT_DEATH(CrcPastTheEnd(), "heap-buffer-overflow");

  std::unique_ptr<EmbeddingHashTable> table;
  ASSERT_OK(EmbeddingHashTable::Create(
      ParseConfig(TrainingConfig(Segment(4, "ones {}", "adagrad {}"))), 1,
      &table));
  const int64_t id = 5;
  const float values[4] = {1, 2, 3, 4};
  table->Assign(&id, 1, values, 1234);
  std::string record;
  ASSERT_OK(table->Save(0, 1, 0, [&](const EmbeddingHashTable::SavedEntry& e) {
    record.assign(e.dump, e.dump_size);
    return Status::OK();
  }));
  ASSERT_GT(table->accessor().DumpFieldsBytes(), 0u);
  EXPECT_DEATH(RestoreRecordPastTheEnd(table.get(), record),
               "heap-buffer-overflow");
  EXPECT_DEATH(ReadDumpPastTheEnd(table->accessor(), record),
               "heap-buffer-overflow");
  EXPECT_DEATH(OptimizePastTheEnd(), "heap-buffer-overflow");

  const std::string dir = TmpDir() + "/fuzz_instrumented";
  PosixFileSystem fs;
  ASSERT_OK(fs.CreateDirectories(dir));
  EmptyDir(dir);
  SaveOptions options;
  options.nshards = 2;
  ASSERT_OK(SaveCheckpoint(
      &fs, dir + "/ckpt", {"t"},
      [](int, int, int, const std::function<Status(std::string_view)>&) {
        return Status::OK();
      },
      options));
  CheckpointInfo info;
  ASSERT_OK(ReadCheckpointInfo(&fs, dir + "/ckpt", true, nullptr, &info));
  EXPECT_DEATH(RestoreShardPastTheEnd(&fs, info), "heap-buffer-overflow");
  EmptyDir(dir);
}

TEST(CheckpointFuzzTest, RestoreOfMutatedCheckpointsFailsCleanly) {
  const uint64_t seed = static_cast<uint64_t>(EnvInt("MONOLITH_FUZZ_SEED", 1));
  const FuzzBudget budget(6000);
  const int64_t only = EnvInt("MONOLITH_FUZZ_ITERATION", -1);
  const bool verbose = EnvInt("MONOLITH_FUZZ_VERBOSE", 0) != 0;
  const bool messages = EnvInt("MONOLITH_FUZZ_MESSAGES", 0) != 0;
  const double hang_seconds =
      static_cast<double>(EnvInt("MONOLITH_FUZZ_HANG_SECONDS", 30));
  // Arena blocks from the heap, where ASan sees every entry's bounds.
  setenv("MONOLITH_HASH_TABLE_HUGE_PAGES", "0", 1);
  __sanitizer_set_death_callback(DeathCallback);

  const auto seconds = [&budget] { return budget.Seconds(); };
  const std::vector<Base> bases = MakeBases(seed);
  ASSERT_FALSE(::testing::Test::HasFailure()) << "the base checkpoints are bad";
  const double setup_seconds = seconds();
  const std::string dir = TmpDir() + "/fuzz_run";
  PosixFileSystem fs;
  ASSERT_OK(fs.CreateDirectories(dir));

  Summary summary;
  Watchdog watchdog(hang_seconds);
  for (int64_t i = only >= 0 ? only : 0;; ++i) {
    if (only >= 0 && i > only) break;
    if (only < 0 && !budget.Allows(i)) break;
    watchdog.Start();
    RunIteration(seed, i, bases, dir, verbose || only >= 0, &summary);
    watchdog.Stop();
    if (::testing::Test::HasFatalFailure()) break;
    if (i % 100 == 0) {
      ASSERT_LT(PeakRssBytes(), kMaxPeakRssBytes)
          << "peak RSS over 2 GiB by iteration " << i;
    }
    if (::testing::Test::HasFailure() && !verbose) break;
  }
  SetContext("(done)");
  if (!::testing::Test::HasFailure()) EmptyDir(dir);
  const int64_t peak_rss = PeakRssBytes();
  EXPECT_LT(peak_rss, kMaxPeakRssBytes);

  std::string outcomes;
  for (const auto& [outcome, count] : summary.outcomes) {
    outcomes += "\n  " + outcome + ": " + std::to_string(count);
  }
  std::printf(
      "checkpoint_fuzz_test: seed %llu, %lld iterations (%lld meaning-keeping) "
      "in %.1f s (+%.1f s setup), peak RSS %lld MiB; outcomes:%s\n",
      static_cast<unsigned long long>(seed),
      static_cast<long long>(summary.iterations),
      static_cast<long long>(summary.equivalent), seconds() - setup_seconds,
      setup_seconds, static_cast<long long>(peak_rss >> 20), outcomes.c_str());
  if (messages) {
    std::vector<std::pair<int64_t, std::string>> kinds;
    for (const auto& [kind, count] : summary.messages) {
      kinds.emplace_back(count, kind);
    }
    std::sort(kinds.rbegin(), kinds.rend());
    std::printf("error kinds (%zu):\n", kinds.size());
    for (const auto& [count, kind] : kinds) {
      std::printf("  %7lld  %s\n", static_cast<long long>(count), kind.c_str());
    }
  }
  std::fflush(stdout);
  if (only < 0) {
    EXPECT_GT(summary.iterations, 0);
    // Mutated records get past the meta files' checks to the restore of
    // the records themselves (a regression in FixMeta would stop every
    // case at "info", leaving the records' parsing unfuzzed).
    int64_t at_records = 0;
    for (const auto& [outcome, count] : summary.outcomes) {
      if (outcome.rfind("restore ", 0) == 0) at_records += count;
    }
    EXPECT_GE(at_records * 20, summary.iterations)
        << "under 5 % of the iterations failed in the records' restore";
  }
}

// RecordId (the resharded restore's filter) on mutated records, each in a
// heap block of its exact size: it reads nothing past the record, and for
// every record that parses it gives the parsed id. (The in-place walk does
// not look inside length-delimited fields: a record whose nested message is
// damaged gets its id, and fails where it is restored, which parses it.)
TEST(CheckpointFuzzTest, RecordIdOfMutatedRecordsAgreesWithParsing) {
  const uint64_t seed = static_cast<uint64_t>(EnvInt("MONOLITH_FUZZ_SEED", 1));
  // Fast records: 20 an iteration of the test above.
  const FuzzBudget budget(6000, /*scale=*/20);
  std::mt19937_64 rng(seed);
  std::vector<std::string> bases;
  for (int n = 0; n < 8; ++n) {
    EntryDump dump;
    dump.set_id(static_cast<int64_t>(rng()));
    for (int i = 0; i < n * 3; ++i) dump.add_num(0.5f * i);
    if (n % 2) dump.mutable_opt()->add_dump()->mutable_adagrad()->add_norm(1.0f);
    dump.set_last_update_ts_sec(n * 1000);
    bases.push_back(dump.SerializeAsString());
  }
  int64_t in_place = 0, parsed = 0, refused = 0;
  RecordScratch scratch;
  EntryDump reference;
  for (int64_t i = 0; budget.Allows(i); ++i) {
    std::string record = bases[rng() % bases.size()];
    for (int edits = 1 + rng() % 3; edits > 0; --edits) {
      switch (rng() % 4) {
        case 0:  // cut
          record.resize(rng() % (record.size() + 1));
          break;
        case 1:  // flip a bit
          if (!record.empty()) {
            record[rng() % record.size()] ^= static_cast<char>(1 << (rng() % 8));
          }
          break;
        case 2:  // insert random bytes
          record.insert(rng() % (record.size() + 1),
                        std::string(1 + rng() % 9, static_cast<char>(rng())));
          break;
        default:  // append another record (a repeated id field wins)
          record += bases[rng() % bases.size()];
      }
    }
    std::unique_ptr<char[]> block(new char[record.size()]);
    std::memcpy(block.get(), record.data(), record.size());
    int64_t id = 0;
    const bool walked = ReadEntryDumpId(block.get(), record.size(), &id);
    const bool parses =
        reference.ParseFromArray(record.data(), static_cast<int>(record.size()));
    if (walked) {
      ++in_place;
      if (parses) {
        ASSERT_EQ(id, reference.id()) << "iteration " << i;
      }
    }
    const Status s = RecordId(block.get(), record.size(), &scratch, &id);
    ASSERT_EQ(s.ok(), walked || parses)
        << "iteration " << i << ": " << s.ToString();
    if (!s.ok()) {
      ++refused;
    } else if (!walked) {
      ++parsed;
      ASSERT_EQ(id, reference.id()) << "iteration " << i;
    }
  }
  std::printf("RecordId: %lld read in place, %lld parsed, %lld refused\n",
              static_cast<long long>(in_place), static_cast<long long>(parsed),
              static_cast<long long>(refused));
  EXPECT_GT(in_place, 0);
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
