// Fuzz test of RestoreFilterCheckpoint, built and run under AddressSanitizer.
//
// Every iteration saves a small SlidingHashFilter or HashFilter (after a
// random workload) with SaveFilterCheckpoint into an in-memory file system,
// applies a few random mutations to the files and restores them into a
// filter of the same configuration (sometimes another one). Mutations:
//  - bytes: flips, inserts, deletes, truncation, appended garbage (mostly
//    caught by the CRCs);
//  - record lengths: lying length fields (0, one off, near 2^31, 2^32,
//    2^64) with a valid header CRC;
//  - records re-framed with valid CRCs: bytes of a record changed, records
//    cut, extended, dropped, duplicated, swapped, empty, taken from another
//    split or another filter's checkpoint, appended after the data;
//  - fields, re-serialized: meta fields (sizes, counts, fill rate, the ring's
//    split_num, head and steps), data fields (offsets, cells, lengths), the
//    save identity (save id, split, split count, time; stripped, partial,
//    duplicated, of the wrong wire type);
//  - file sets: files deleted, copied over other splits, renamed to another
//    split count, temporaries and unrelated files added, another filter's
//    checkpoint with another split count beside it.
// Every restore must return OK or an error naming the checkpoint, leave the
// caller's filter and *restored alone on error, and a restored filter must
// stay usable (adds, gets, another save and restore round trip). An
// unmutated checkpoint, or one changed only in ways that keep its meaning
// (temporaries and unrelated files added, the identity stripped from every
// split), must restore to an equal filter.
//
// Environment, for longer runs on demand:
//   MONOLITH_FUZZ_SEED        seed (default 1)
//   MONOLITH_FUZZ_ITERATIONS  iterations, 0 for no limit (default 1000:
//                             the same iterations on every machine)
//   MONOLITH_FUZZ_SECONDS     time budget in seconds, 0 for none (default)
//   MONOLITH_FUZZ_ITERATION   run only this iteration (to reproduce one)
//   MONOLITH_FUZZ_VERBOSE=1   print every iteration's mutations and outcome
// Iterations are independent and deterministic: a failure prints its
// number and mutations; rerun it with the same seed and
// MONOLITH_FUZZ_ITERATION.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_filter/filter_checkpoint.h"
#include "monolith/native_training/runtime/hash_filter/fuzz_util.h"
#include "monolith/native_training/runtime/hash_filter/test_util.h"
#include "monolith/native_training/runtime/hash_table/record_file.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/test_env.h"

namespace monolith {
namespace hash_filter {
namespace {

using ::google::protobuf::UnknownField;
using ::monolith::hash_table::EnvInt;
using ::monolith::hash_table::ExtendCrc32c;
using ::monolith::hash_table::FileSystem;
using ::monolith::hash_table::FuzzBudget;
using ::monolith::hash_table::HashFilterSplitDataDump;
using ::monolith::hash_table::HashFilterSplitMetaDump;
using ::monolith::hash_table::MaskCrc;
using ::monolith::hash_table::NotFoundError;
using ::monolith::hash_table::ParallelFor;
using ::monolith::hash_table::RandomAccessFile;
using ::monolith::hash_table::SerialFor;
using ::monolith::hash_table::TempSuffix;
using ::monolith::hash_table::WritableFile;
using fuzz_util::Config;
using fuzz_util::Extreme;
using fuzz_util::MakeFilter;
using fuzz_util::MutateDataRecord;
using fuzz_util::MutateMetaFields;
using fuzz_util::RandomConfig;
using fuzz_util::StateEquals;
using fuzz_util::Workload;
using test_util::Fixed;
using test_util::ThreadFor;

constexpr char kDir[] = "/ckpt";
constexpr char kBasename[] = "/ckpt/hash_filter_0";

// ------------------------------------------------------------------ files

// Files in memory; thread-safe (restores may run splits in threads).
class MemFileSystem : public FileSystem {
 public:
  using Files = std::map<std::string, std::string>;

  Status NewWritableFile(const std::string& path,
                         std::unique_ptr<WritableFile>* file) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dirs_.count(Parent(path))) return NotFoundError("no dir for " + path);
    files_[path].clear();
    file->reset(new Writer(this, path));
    return Status::OK();
  }
  Status NewRandomAccessFile(const std::string& path,
                             std::unique_ptr<RandomAccessFile>* file) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return NotFoundError("no file " + path);
    file->reset(new Reader(it->second));
    return Status::OK();
  }
  Status GetFileSize(const std::string& path, uint64_t* size) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return NotFoundError("no file " + path);
    *size = it->second.size();
    return Status::OK();
  }
  Status ListDirectory(const std::string& dir,
                       std::vector<std::string>* names) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dirs_.count(dir)) return NotFoundError("cannot list " + dir);
    names->clear();
    for (const auto& [path, bytes] : files_) {
      if (Parent(path) == dir) names->push_back(path.substr(dir.size() + 1));
    }
    return Status::OK();
  }
  Status RenameFile(const std::string& from, const std::string& to) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(from);
    if (it == files_.end()) return NotFoundError("cannot rename " + from);
    std::string bytes = std::move(it->second);
    files_.erase(it);
    files_[to] = std::move(bytes);
    return Status::OK();
  }
  Status DeleteFile(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!files_.erase(path)) return NotFoundError("cannot delete " + path);
    return Status::OK();
  }
  Status CreateDirectories(const std::string& dir) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::string d = dir; !d.empty() && d != "/"; d = Parent(d)) {
      dirs_.insert(d);
    }
    return Status::OK();
  }
  // Memory does not lose renames.
  Status SyncDirectory(const std::string& dir) override {
    return Status::OK();
  }

  // Direct access for mutations (not while a restore runs).
  Files& files() { return files_; }

 private:
  static std::string Parent(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos || slash == 0 ? "/"
                                                    : path.substr(0, slash);
  }

  class Writer : public WritableFile {
   public:
    Writer(MemFileSystem* fs, std::string path)
        : fs_(fs), path_(std::move(path)) {}
    Status Append(std::string_view data) override {
      std::lock_guard<std::mutex> lock(fs_->mu_);
      fs_->files_[path_].append(data.data(), data.size());
      return Status::OK();
    }
    Status Close() override { return Status::OK(); }

   private:
    MemFileSystem* fs_;
    std::string path_;
  };

  class Reader : public RandomAccessFile {
   public:
    explicit Reader(std::string bytes) : bytes_(std::move(bytes)) {}
    Status Read(uint64_t offset, size_t n, char* scratch,
                size_t* read) const override {
      *read = 0;
      if (offset >= bytes_.size()) return Status::OK();
      *read = std::min<uint64_t>(n, bytes_.size() - offset);
      std::memcpy(scratch, bytes_.data() + offset, *read);
      return Status::OK();
    }

   private:
    const std::string bytes_;
  };

  std::mutex mu_;
  Files files_;
  std::set<std::string> dirs_ = {"/"};
};

// ------------------------------------------------------------------ records

uint32_t Crc(std::string_view data) {
  return MaskCrc(ExtendCrc32c(0, data.data(), data.size()));
}

std::string Header(uint64_t length) {
  const std::string bytes = Fixed(length, 8);
  return bytes + Fixed(Crc(bytes), 4);
}

std::string Frame(const std::string& record) {
  return Header(record.size()) + record + Fixed(Crc(record), 4);
}

std::string FrameAll(const std::vector<std::string>& records) {
  std::string bytes;
  for (const std::string& record : records) bytes += Frame(record);
  return bytes;
}

// The records of |bytes| (not checking CRCs: the files are ours); false if
// the framing is broken (then record-level mutations are skipped).
bool Unframe(const std::string& bytes, std::vector<std::string>* records,
             std::vector<size_t>* offsets = nullptr) {
  records->clear();
  if (offsets) offsets->clear();
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 16) return false;
    uint64_t length = 0;
    std::memcpy(&length, bytes.data() + at, 8);
    if (length > bytes.size() - at - 16) return false;
    if (offsets) offsets->push_back(at);
    records->push_back(bytes.substr(at + 12, length));
    at += 16 + length;
  }
  return true;
}

// ------------------------------------------------------------------ filters

// Plain HashFilters of capacity 1 to this.
constexpr uint64_t kMaxHashFilterCapacity = 8000;

// ------------------------------------------------------------------ mutations

class Mutator {
 public:
  Mutator(MemFileSystem* fs, std::mt19937_64* rng,
          const MemFileSystem::Files& foreign)
      : fs_(fs), rng_(*rng), foreign_(foreign) {}

  // One random mutation; returns what it did.
  std::string MutateOnce() {
    std::vector<std::string> paths = CheckpointPaths();
    if (paths.empty()) return "no files left";
    const std::string path = paths[rng_() % paths.size()];
    std::string& bytes = fs_->files()[path];
    const std::string name = path.substr(std::strlen(kDir) + 1);
    switch (rng_() % 10) {
      case 0:
        return MutateBytes(&bytes) + " in " + name;
      case 1:
        return LieAboutLength(&bytes) + " in " + name;
      case 2:
      case 3:
        return MutateRecords(&bytes) + " in " + name;
      case 4:
      case 5:
        return MutateMeta(&bytes) + " in " + name;
      case 6:
        return MutateIdentity(&bytes) + " in " + name;
      case 7:
        return MutateData(&bytes) + " in " + name;
      default:
        return MutateFileSet(path, paths);
    }
  }

  // Changes that keep the checkpoint's meaning.
  std::string MutateBenign() {
    switch (rng_() % 3) {
      case 0: {
        const std::vector<std::string> paths = CheckpointPaths();
        if (paths.empty()) return "nothing";
        fs_->files()[paths[rng_() % paths.size()] + "-tmp-" +
                     std::to_string(rng_() % 1000)] = RandomBytes(rng_() % 64);
        return "temporary file added";
      }
      case 1:
        fs_->files()[std::string(kDir) + "/hash_filter_01-00000-of-00001"] =
            "unrelated";
        fs_->files()[std::string(kBasename) + "-00000-of-00002.index"] =
            "unrelated";
        fs_->files()[std::string(kBasename) + "-0000x-of-00002"] = "unrelated";
        return "unrelated files added";
      default:
        for (const std::string& path : CheckpointPaths()) {
          std::vector<std::string> records;
          if (!Unframe(fs_->files()[path], &records) || records.empty()) {
            continue;
          }
          HashFilterSplitMetaDump meta;
          if (!meta.ParseFromString(records[0])) continue;
          meta.DiscardUnknownFields();
          records[0] = meta.SerializeAsString();
          fs_->files()[path] = FrameAll(records);
        }
        return "identity stripped from every split (the original's files)";
    }
  }

  // The save of |nsplits| splits killed while renaming its files: the
  // splits from a random one on keep their temporary names. A restore reads
  // it whole through them. Needs the save's identity.
  std::string InterruptedRenames(int nsplits) {
    if (nsplits <= 0) return "no interrupted renames (no splits)";
    const auto first =
        fs_->files().find(FilterCheckpointFileName(kBasename, 0, nsplits));
    std::vector<std::string> records;
    HashFilterSplitMetaDump meta;
    if (first == fs_->files().end() || !Unframe(first->second, &records) ||
        records.empty() || !meta.ParseFromString(records[0])) {
      return "no interrupted renames (no split 0)";
    }
    const auto& unknown = meta.unknown_fields();
    for (int i = 0; i < unknown.field_count(); ++i) {
      if (unknown.field(i).number() != kIdentitySaveIdField ||
          unknown.field(i).type() != UnknownField::TYPE_FIXED64) {
        continue;
      }
      const std::string suffix = TempSuffix(unknown.field(i).fixed64());
      const int renamed = static_cast<int>(rng_() % nsplits);
      for (int s = renamed; s < nsplits; ++s) {
        const std::string path = FilterCheckpointFileName(kBasename, s, nsplits);
        const auto file = fs_->files().find(path);
        if (file == fs_->files().end()) continue;
        fs_->files()[path + suffix] = std::move(file->second);
        fs_->files().erase(path);
      }
      return "save interrupted after renaming " + std::to_string(renamed) +
             " splits";
    }
    return "no interrupted renames (no identity)";
  }

 private:
  std::vector<std::string> CheckpointPaths() {
    std::vector<std::string> paths;
    const std::string prefix = std::string(kBasename) + "-";
    for (const auto& [path, bytes] : fs_->files()) {
      if (path.compare(0, prefix.size(), prefix) == 0) paths.push_back(path);
    }
    return paths;
  }

  std::string RandomBytes(size_t n) {
    std::string bytes;
    for (size_t i = 0; i < n; ++i) bytes.push_back(static_cast<char>(rng_()));
    return bytes;
  }

  std::string MutateBytes(std::string* bytes) {
    switch (rng_() % 5) {
      case 0: {
        const int flips = 1 + rng_() % 4;
        for (int i = 0; i < flips && !bytes->empty(); ++i) {
          (*bytes)[rng_() % bytes->size()] ^=
              static_cast<char>(1 + rng_() % 255);
        }
        return "bytes flipped";
      }
      case 1:
        bytes->insert(rng_() % (bytes->size() + 1),
                      RandomBytes(1 + rng_() % 8));
        return "bytes inserted";
      case 2:
        if (!bytes->empty()) {
          const size_t at = rng_() % bytes->size();
          bytes->erase(at,
                       1 + rng_() % std::min<size_t>(8, bytes->size() - at));
        }
        return "bytes deleted";
      case 3:
        bytes->resize(bytes->empty() ? 0 : rng_() % bytes->size());
        return "truncated";
      default:
        bytes->append(RandomBytes(1 + rng_() % 40));
        return "garbage appended";
    }
  }

  std::string LieAboutLength(std::string* bytes) {
    std::vector<std::string> records;
    std::vector<size_t> offsets;
    if (!Unframe(*bytes, &records, &offsets) || records.empty()) {
      return "(framing broken: no length lie)";
    }
    const size_t r = rng_() % records.size();
    const uint64_t real = records[r].size();
    const uint64_t lies[] = {0,
                             real + 1,
                             real - 1,
                             real + 4,
                             0x7FFFFFFFULL,
                             0x80000000ULL,
                             0xFFFFFFFFULL,
                             0x100000000ULL,
                             0xFFFFFFFFFFFFFFFFULL,
                             0xFFFFFFFFFFFFFFF0ULL,
                             bytes->size(),
                             Extreme(&rng_)};
    const uint64_t lie = lies[rng_() % (sizeof(lies) / sizeof(lies[0]))];
    bytes->replace(offsets[r], 12, Header(lie));
    return "record " + std::to_string(r) + " claims " + std::to_string(lie) +
           " bytes (valid header CRC)";
  }

  std::string MutateRecords(std::string* bytes) {
    std::vector<std::string> records;
    if (!Unframe(*bytes, &records)) return "(framing broken)";
    if (records.empty()) {
      records.push_back(RandomBytes(rng_() % 16));
      *bytes = FrameAll(records);
      return "random record added";
    }
    const size_t r = rng_() % records.size();
    std::string what;
    switch (rng_() % 10) {
      case 0: {
        const int flips = 1 + rng_() % 3;
        for (int i = 0; i < flips && !records[r].empty(); ++i) {
          records[r][rng_() % records[r].size()] ^=
              static_cast<char>(1 + rng_() % 255);
        }
        what = "record bytes flipped";
        break;
      }
      case 1:
        records[r].resize(records[r].empty() ? 0 : rng_() % records[r].size());
        what = "record cut";
        break;
      case 2:
        records[r] += RandomBytes(1 + rng_() % 16);
        what = "record extended";
        break;
      case 3:
        records.erase(records.begin() + r);
        what = "record dropped";
        break;
      case 4:
        records.insert(records.begin() + rng_() % (records.size() + 1),
                       records[r]);
        what = "record duplicated";
        break;
      case 5:
        std::swap(records[r], records[rng_() % records.size()]);
        what = "records swapped";
        break;
      case 6:
        records[r].clear();
        what = "record emptied";
        break;
      case 7: {
        const std::string record = ForeignRecord();
        if (record.empty() && rng_() % 2) return "(no foreign record)";
        records[r] = record;
        what = "record from another filter's checkpoint";
        break;
      }
      case 8: {
        std::string record = ForeignRecord();
        if (rng_() % 2) record = records[rng_() % records.size()];
        records.push_back(record);
        what = "record appended after the data";
        break;
      }
      default: {
        // An overlong varint or a bogus tag at the start of a record.
        static const std::string kPrefixes[] = {
            std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12),
            std::string("\x12\xff\xff\xff\xff\x0f", 6), std::string("\x00", 1),
            std::string("\x0f", 1), std::string("\x2a\x05\x08", 3)};
        records[r] = kPrefixes[rng_() % 5] + records[r];
        what = "protobuf structure broken";
        break;
      }
    }
    *bytes = FrameAll(records);
    return what + " (record " + std::to_string(r) + ", valid CRCs)";
  }

  std::string ForeignRecord() {
    if (foreign_.empty()) return "";
    auto it = foreign_.begin();
    std::advance(it, rng_() % foreign_.size());
    std::vector<std::string> records;
    if (!Unframe(it->second, &records) || records.empty()) return "";
    return records[rng_() % records.size()];
  }

  // Rewrites record 0 (the meta record) through |change|.
  template <typename Change>
  std::string RewriteMeta(std::string* bytes, Change change) {
    std::vector<std::string> records;
    if (!Unframe(*bytes, &records) || records.empty()) return "(no meta)";
    HashFilterSplitMetaDump meta;
    if (!meta.ParseFromString(records[0])) return "(meta unparsable)";
    const std::string what = change(&meta);
    records[0] = meta.SerializeAsString();
    *bytes = FrameAll(records);
    return what;
  }

  std::string MutateMeta(std::string* bytes) {
    return RewriteMeta(bytes, [this](HashFilterSplitMetaDump* meta) {
      return MutateMetaFields(meta, &rng_);
    });
  }

  std::string MutateIdentity(std::string* bytes) {
    return RewriteMeta(bytes, [this](HashFilterSplitMetaDump* meta) {
      auto* unknown = meta->mutable_unknown_fields();
      const int number = kIdentitySaveIdField + static_cast<int>(rng_() % 4);
      switch (rng_() % 7) {
        case 0:
          unknown->DeleteByNumber(kIdentitySaveIdField);
          unknown->AddFixed64(kIdentitySaveIdField, rng_());
          return "save id changed";
        case 1:
          unknown->DeleteByNumber(number);
          unknown->AddVarint(number, Extreme(&rng_));
          return "identity field set";
        case 2:
          unknown->DeleteByNumber(number);
          return "identity field removed";
        case 3:
          for (int n = kIdentitySaveIdField; n <= kIdentitySplitNumField; ++n) {
            unknown->DeleteByNumber(n);
          }
          return "identity stripped";
        case 4:
          unknown->DeleteByNumber(number);
          unknown->AddLengthDelimited(number, "x");
          return "identity field of the wrong wire type";
        case 5:
          unknown->AddFixed64(kIdentitySaveIdField, rng_());
          unknown->AddVarint(kIdentitySplitField, rng_() % 4);
          return "identity fields duplicated";
        default:
          unknown->DeleteByNumber(kIdentitySaveIdField);
          unknown->AddVarint(kIdentitySaveIdField, rng_());
          return "save id as a varint";
      }
    });
  }

  std::string MutateData(std::string* bytes) {
    std::vector<std::string> records;
    if (!Unframe(*bytes, &records)) return "(framing broken)";
    std::string what;
    if (MutateDataRecord(&records, &rng_, &what)) *bytes = FrameAll(records);
    return what;
  }

  std::string MutateFileSet(const std::string& path,
                            const std::vector<std::string>& paths) {
    MemFileSystem::Files& files = fs_->files();
    switch (rng_() % 6) {
      case 0:
        files.erase(path);
        return "file deleted";
      case 1: {
        const std::string& other = paths[rng_() % paths.size()];
        files[path] = files[other];
        return "file copied over another split";
      }
      case 2: {
        // Renamed to another split count.
        const std::string bytes = files[path];
        files.erase(path);
        files[FilterCheckpointFileName(kBasename, 0, 1 + rng_() % 9)] = bytes;
        return "file renamed to another split count";
      }
      case 3: {
        // Another filter's checkpoint beside this one.
        for (const auto& [foreign_path, bytes] : foreign_) {
          files[foreign_path] = bytes;
        }
        return "another filter's checkpoint added";
      }
      case 4: {
        const std::string a = paths[rng_() % paths.size()];
        std::swap(files[path], files[a]);
        return "two files swapped";
      }
      default:
        files[path + "-tmp-1"] = RandomBytes(rng_() % 100);
        files.erase(path);
        return "file left as a temporary only";
    }
  }

  MemFileSystem* fs_;
  std::mt19937_64& rng_;
  const MemFileSystem::Files& foreign_;
};

// ------------------------------------------------------------------ the test

std::string OutcomeKey(const Status& s) {
  std::string key = s.ToString();
  // Drop the path, blank the numbers: kinds of errors.
  size_t at;
  while ((at = key.find(kBasename)) != std::string::npos) {
    key.replace(at, std::strlen(kBasename), "<ckpt>");
  }
  if ((at = key.find("from save ")) != std::string::npos) {
    key.replace(at + 10, 16, "<id>");
  }
  for (char& c : key) {
    if (c >= '0' && c <= '9') c = '#';
  }
  return key.substr(0, 120);
}

TEST(FilterCheckpointFuzzTest, MutatedCheckpointsRestoreOrFailCleanly) {
  const uint64_t seed = static_cast<uint64_t>(EnvInt("MONOLITH_FUZZ_SEED", 1));
  const FuzzBudget budget(1000);
  const int64_t only = EnvInt("MONOLITH_FUZZ_ITERATION", -1);
  const bool verbose = EnvInt("MONOLITH_FUZZ_VERBOSE", 0) != 0;
  std::map<std::string, int> outcomes;
  int64_t done = 0;
  for (int64_t iteration = only >= 0 ? only : 0;; ++iteration) {
    if (only >= 0 ? iteration > only : !budget.Allows(iteration)) break;
    ++done;
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL +
                        static_cast<uint64_t>(iteration));
    const Config config = RandomConfig(&rng, kMaxHashFilterCapacity);
    std::unique_ptr<Filter> source = MakeFilter(config);
    Workload(source.get(), &rng, static_cast<int>(rng() % 6000));
    MemFileSystem fs;
    // Sometimes an earlier save at the basename first.
    if (rng() % 4 == 0) {
      std::unique_ptr<Filter> earlier =
          MakeFilter(RandomConfig(&rng, kMaxHashFilterCapacity));
      ASSERT_OK(SaveFilterCheckpoint(&fs, kBasename, *earlier, SerialFor));
    }
    ASSERT_OK(SaveFilterCheckpoint(&fs, kBasename, *source, SerialFor));

    // Another filter's checkpoint at the same basename, for foreign
    // records and files.
    const Config foreign_config = RandomConfig(&rng, kMaxHashFilterCapacity);
    std::unique_ptr<Filter> foreign = MakeFilter(foreign_config);
    Workload(foreign.get(), &rng, 300);
    MemFileSystem foreign_fs;
    ASSERT_OK(
        SaveFilterCheckpoint(&foreign_fs, kBasename, *foreign, SerialFor));

    Mutator mutator(&fs, &rng, foreign_fs.files());
    const int kind = static_cast<int>(rng() % 8);  // 0 unmutated, 1 benign
    std::string description = kind == 0 ? "unmutated" : "";
    if (kind == 1) {
      const int n = 1 + rng() % 3;
      for (int m = 0; m < n; ++m) description += mutator.MutateBenign() + "; ";
      // Last: the other benign changes could strip the identity it needs.
      if (rng() % 3 == 0 &&
          description.find("identity stripped") == std::string::npos) {
        description += mutator.InterruptedRenames(source->split_num()) + "; ";
      }
    } else if (kind > 1) {
      if (rng() % 4 == 0) {
        description += mutator.InterruptedRenames(source->split_num()) + "; ";
      }
      const int n = 1 + rng() % 3;
      for (int m = 0; m < n; ++m) description += mutator.MutateOnce() + "; ";
    }
    const bool must_restore = kind <= 1;
    const Config& like_config =
        must_restore || rng() % 8 != 0 ? config : foreign_config;
    std::unique_ptr<Filter> like = MakeFilter(like_config);
    Workload(like.get(), &rng, 50);
    const std::unique_ptr<Filter> like_before = like->Clone();
    std::unique_ptr<Filter> restored = MakeFilter(like_config);
    Filter* const sentinel = restored.get();
    const ParallelFor parallel_for =
        rng() % 8 == 0 ? ParallelFor(ThreadFor) : ParallelFor(SerialFor);
    const std::string context =
        "iteration " + std::to_string(iteration) + " (" + description + ")";

    const Status s =
        RestoreFilterCheckpoint(&fs, kBasename, *like, parallel_for, &restored);
    if (verbose) {
      std::printf("%s: %s\n", context.c_str(), s.ToString().c_str());
    }
    ++outcomes[s.ok() ? "OK" : OutcomeKey(s)];
    ASSERT_TRUE(StateEquals(*like, *like_before))
        << context << ": restore changed the caller's filter";
    if (!s.ok()) {
      ASSERT_FALSE(must_restore) << context << ": " << s.ToString();
      ASSERT_EQ(restored.get(), sentinel)
          << context << ": an error replaced *restored";
      ASSERT_NE(s.message().find(kBasename), std::string::npos)
          << context
          << ": the error does not name the checkpoint: " << s.ToString();
      continue;
    }
    ASSERT_NE(restored.get(), sentinel) << context;
    if (must_restore) {
      ASSERT_TRUE(StateEquals(*restored, *source)) << context;
    }
    // Whatever was restored stays usable and round-trips.
    Workload(restored.get(), &rng, 300);
    for (int i = 0; i < 100; ++i) restored->Get(rng());
    MemFileSystem again_fs;
    ASSERT_TRUE(
        SaveFilterCheckpoint(&again_fs, kBasename, *restored, SerialFor).ok())
        << context;
    std::unique_ptr<Filter> again;
    const Status again_status = RestoreFilterCheckpoint(
        &again_fs, kBasename, *restored, SerialFor, &again);
    ASSERT_TRUE(again_status.ok())
        << context << ": " << again_status.ToString();
    ASSERT_TRUE(StateEquals(*again, *restored)) << context;
  }
  std::printf(
      "%lld iterations (seed %llu) in %.1f s\n", static_cast<long long>(done),
      static_cast<unsigned long long>(seed), budget.Seconds());
  for (const auto& [outcome, count] : outcomes) {
    std::printf("%6d  %s\n", count, outcome.c_str());
  }
  EXPECT_GT(done, 0);
  if (only < 0) {
    // Both outcomes are met: a restore taking any bytes, or refusing every
    // checkpoint, fails here.
    EXPECT_GT(outcomes["OK"], 0);
    EXPECT_GT(done - outcomes["OK"], 0);
  }
}

}  // namespace
}  // namespace hash_filter
}  // namespace monolith
