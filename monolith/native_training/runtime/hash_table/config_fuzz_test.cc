// Fuzz test of table configs (the EmbeddingHashTableConfig a creation op
// parses from its input), built and run under AddressSanitizer.
//
// Starts from valid configs (1 to 3 segments of every optimizer, initializer
// and compressor; TRAINING and SERVING entries) and, every iteration, applies
// a few random mutations: fields set through protobuf reflection to values
// that break assumptions (0, -1, the int limits, 2^20 and one past it, NaN,
// infinities, the float limits, denormals), oneof members switched, messages
// cleared, segments added and dropped, or bytes of the serialized config
// flipped before it is parsed again. EmbeddingHashTable::Create must take
// the config or refuse it with a Status naming the problem; a table it
// creates must then run every operation (assign, lookups, reinitialize,
// optimize, assign_add, evict, erase, save) on ids of several slots with
// values and learning rates that include NaN and infinities, and its save
// must restore into a fresh table of the same config, which saves the same
// records. A crash, an ASan report or a runaway allocation fails the test.
// initial_capacity is kept under 2^16 (embedding_hash_table_oom_test covers
// large ones).
//
// Environment: MONOLITH_FUZZ_SEED (default 1), MONOLITH_FUZZ_ITERATIONS
// (default 20000), MONOLITH_FUZZ_SECONDS (see test_env.h);
// MONOLITH_FUZZ_VERBOSE=1 prints every iteration's config and outcome.
#if !defined(__SANITIZE_ADDRESS__)
#if defined(__has_feature)
#if !__has_feature(address_sanitizer)
#error "config_fuzz_test must be built with -fsanitize=address"
#endif
#else
#error "config_fuzz_test must be built with -fsanitize=address"
#endif
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/entry_accessor.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"
#include "monolith/native_training/runtime/hash_table/test_env.h"

namespace monolith {
namespace hash_table {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::EnumDescriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;

constexpr uint64_t kMaxFuzzedCapacity = 1 << 16;

// A valid config: |segments| segments, each of a random dim (1 to 8) with
// the |opt|-th optimizer of OptimizerConfig's oneof (shifted per segment),
// a random initializer and compressor.
EmbeddingHashTableConfig ValidConfig(std::mt19937_64* rng, int segments,
                                     int opt, bool serving) {
  EmbeddingHashTableConfig config;
  config.mutable_cuckoo();
  config.set_initial_capacity((*rng)() % 64);
  if (serving) {
    config.mutable_entry_config()->set_entry_type(EntryConfig::SERVING);
  }
  const Descriptor* opt_type = OptimizerConfig::descriptor();
  const Descriptor* init_type = InitializerConfig::descriptor();
  const Descriptor* comp_type = FloatCompressorConfig::descriptor();
  for (int s = 0; s < segments; ++s) {
    EntryConfig::Segment* segment =
        config.mutable_entry_config()->add_segments();
    segment->set_dim_size(1 + static_cast<int>((*rng)() % 8));
    const FieldDescriptor* o =
        opt_type->oneof_decl(0)->field((opt + s) % opt_type->oneof_decl(0)
                                                       ->field_count());
    segment->mutable_opt_config()->GetReflection()->MutableMessage(
        segment->mutable_opt_config(), o);
    const auto pick = [&](const Descriptor* type) {
      return type->oneof_decl(0)->field(
          static_cast<int>((*rng)() % type->oneof_decl(0)->field_count()));
    };
    segment->mutable_init_config()->GetReflection()->MutableMessage(
        segment->mutable_init_config(), pick(init_type));
    segment->mutable_comp_config()->GetReflection()->MutableMessage(
        segment->mutable_comp_config(), pick(comp_type));
  }
  if ((*rng)() % 4 == 0) {
    SlotExpireTimeConfig* expire = config.mutable_slot_expire_time_config();
    expire->set_default_expire_time(1 + (*rng)() % 3);
    SlotExpireTimeConfig::SlotExpireTime* slot =
        expire->add_slot_expire_times();
    slot->set_slot(1);
    slot->set_expire_time(0);
    config.set_enable_feature_eviction(true);
  }
  config.set_skip_zero_embedding((*rng)() % 4 == 0);
  return config;
}

// A field of a message inside the config.
struct FieldRef {
  Message* message;
  const FieldDescriptor* field;
};

void CollectFields(Message* message, int depth, std::vector<FieldRef>* out) {
  const Descriptor* type = message->GetDescriptor();
  const Reflection* reflection = message->GetReflection();
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    out->push_back({message, field});
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || depth > 8) {
      continue;
    }
    if (field->is_repeated()) {
      for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
        CollectFields(reflection->MutableRepeatedMessage(message, field, j),
                      depth + 1, out);
      }
    } else if (reflection->HasField(*message, field)) {
      CollectFields(reflection->MutableMessage(message, field), depth + 1,
                    out);
    }
  }
}

int64_t InterestingInt(std::mt19937_64* rng) {
  static const int64_t kValues[] = {0,
                                    1,
                                    -1,
                                    2,
                                    3,
                                    7,
                                    64,
                                    1 << 20,
                                    (1 << 20) + 1,
                                    std::numeric_limits<int32_t>::max(),
                                    std::numeric_limits<int32_t>::min(),
                                    std::numeric_limits<uint32_t>::max(),
                                    std::numeric_limits<int64_t>::max(),
                                    std::numeric_limits<int64_t>::min()};
  if ((*rng)() % 3 == 0) return static_cast<int64_t>((*rng)() % 17) - 4;
  return kValues[(*rng)() % (sizeof(kValues) / sizeof(kValues[0]))];
}

double InterestingFloat(std::mt19937_64* rng) {
  static const double kValues[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   0.5,
                                   std::nan(""),
                                   std::numeric_limits<double>::infinity(),
                                   -std::numeric_limits<double>::infinity(),
                                   std::numeric_limits<float>::max(),
                                   -std::numeric_limits<float>::max(),
                                   std::numeric_limits<float>::denorm_min(),
                                   1e-30,
                                   1e30};
  if ((*rng)() % 3 == 0) {
    return std::uniform_real_distribution<double>(-10, 10)(*rng);
  }
  return kValues[(*rng)() % (sizeof(kValues) / sizeof(kValues[0]))];
}

// Sets a scalar |field| (an element |index| of a repeated one, or a new
// element where |index| is -1) to an interesting value.
void SetScalar(Message* message, const FieldDescriptor* field, int index,
               std::mt19937_64* rng) {
  const Reflection* r = message->GetReflection();
  const bool add = field->is_repeated() && index < 0;
  const int64_t i = InterestingInt(rng);
  const double d = InterestingFloat(rng);
  switch (field->cpp_type()) {
#define MONOLITH_SET(CPPTYPE, Name, value)                       \
  case FieldDescriptor::CPPTYPE:                                 \
    if (add) {                                                   \
      r->Add##Name(message, field, value);                       \
    } else if (field->is_repeated()) {                           \
      r->SetRepeated##Name(message, field, index, value);        \
    } else {                                                     \
      r->Set##Name(message, field, value);                       \
    }                                                            \
    break;
    MONOLITH_SET(CPPTYPE_INT32, Int32, static_cast<int32_t>(i))
    MONOLITH_SET(CPPTYPE_INT64, Int64, i)
    MONOLITH_SET(CPPTYPE_UINT32, UInt32, static_cast<uint32_t>(i))
    MONOLITH_SET(CPPTYPE_UINT64, UInt64, static_cast<uint64_t>(i))
    MONOLITH_SET(CPPTYPE_FLOAT, Float, static_cast<float>(d))
    MONOLITH_SET(CPPTYPE_DOUBLE, Double, d)
    MONOLITH_SET(CPPTYPE_BOOL, Bool, ((*rng)() & 1) != 0)
    MONOLITH_SET(CPPTYPE_STRING, String, std::string((*rng)() % 4, 'x'))
#undef MONOLITH_SET
    case FieldDescriptor::CPPTYPE_ENUM: {
      const EnumDescriptor* type = field->enum_type();
      const auto* value = type->value(
          static_cast<int>((*rng)() % type->value_count()));
      if (add) {
        r->AddEnum(message, field, value);
      } else if (field->is_repeated()) {
        r->SetRepeatedEnum(message, field, index, value);
      } else {
        r->SetEnum(message, field, value);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
}

// One structural mutation of a field of |config|; returns what it did.
std::string MutateField(EmbeddingHashTableConfig* config,
                        std::mt19937_64* rng) {
  std::vector<FieldRef> fields;
  CollectFields(config, 0, &fields);
  const FieldRef ref = fields[(*rng)() % fields.size()];
  Message* m = ref.message;
  const FieldDescriptor* f = ref.field;
  const Reflection* r = m->GetReflection();
  const std::string name(f->full_name());
  if ((*rng)() % 8 == 0) {
    r->ClearField(m, f);
    return "clear " + name;
  }
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (!f->is_repeated()) {
      r->MutableMessage(m, f);  // sets it, switching a oneof to it
      return "set " + name;
    }
    const int size = r->FieldSize(*m, f);
    if (size > 0 && (*rng)() % 2 == 0) {
      r->RemoveLast(m, f);
      return "drop last " + name;
    }
    if (size > 0 && (*rng)() % 2 == 0) {
      r->AddMessage(m, f)->CopyFrom(r->GetRepeatedMessage(
          *m, f, static_cast<int>((*rng)() % size)));
      return "repeat one of " + name;
    }
    r->AddMessage(m, f);
    return "add empty " + name;
  }
  if (f->is_repeated()) {
    const int size = r->FieldSize(*m, f);
    if (size > 0 && (*rng)() % 3 == 0) {
      r->RemoveLast(m, f);
      return "drop last " + name;
    }
    SetScalar(m, f, size > 0 && (*rng)() % 2 ? static_cast<int>(
                                                    (*rng)() % size)
                                              : -1,
              rng);
    return "set element of " + name;
  }
  SetScalar(m, f, 0, rng);
  return "set " + name;
}

// Flips, overwrites or cuts bytes of the serialized config; false where
// the result does not parse (protobuf's own check).
bool MutateBytes(EmbeddingHashTableConfig* config, std::mt19937_64* rng) {
  std::string bytes = config->SerializeAsString();
  if (bytes.empty()) return false;
  const int edits = 1 + static_cast<int>((*rng)() % 3);
  for (int e = 0; e < edits && !bytes.empty(); ++e) {
    const size_t at = (*rng)() % bytes.size();
    switch ((*rng)() % 3) {
      case 0:
        bytes[at] = static_cast<char>(bytes[at] ^ (1 << ((*rng)() % 8)));
        break;
      case 1:
        bytes[at] = static_cast<char>((*rng)() & 0xff);
        break;
      default:
        bytes.resize(at);
    }
  }
  EmbeddingHashTableConfig parsed;
  if (!parsed.ParseFromString(bytes)) return false;
  *config = parsed;
  return true;
}

std::vector<float> Floats(std::mt19937_64* rng, size_t n) {
  std::vector<float> values(n);
  for (float& v : values) {
    v = (*rng)() % 16 == 0 ? static_cast<float>(InterestingFloat(rng))
                           : std::uniform_real_distribution<float>(-1, 1)(*rng);
  }
  return values;
}

// The records a save of |table| writes, by id.
std::map<int64_t, std::string> SaveAll(const EmbeddingHashTable& table) {
  std::map<int64_t, std::string> records;
  const Status status = table.Save(
      0, 1, /*now=*/0, [&](const EmbeddingHashTable::SavedEntry& entry) {
        records[entry.id] = std::string(entry.dump, entry.dump_size);
        return Status::OK();
      });
  EXPECT_OK(status);
  return records;
}

// Runs every operation on a table |config| made; |what| names the config
// in failures.
void Exercise(const EmbeddingHashTableConfig& config, uint64_t seed,
              std::mt19937_64* rng, const std::string& what) {
  std::unique_ptr<EmbeddingHashTable> table;
  ASSERT_OK(EmbeddingHashTable::Create(config, seed, &table));
  const int dim = table->DimSize();
  const int slices = table->SliceSize();
  ASSERT_GE(dim, 1) << what;
  const int64_t n = dim > 1024 ? 2 : 16;
  std::vector<int64_t> ids(n);
  for (int64_t& id : ids) {
    // Slots 0 to 2 (bits 48 and up) and a few ids per slot, repeated.
    id = (static_cast<int64_t>((*rng)() % 3) << 48) |
         static_cast<int64_t>((*rng)() % 8);
    if ((*rng)() % 16 == 0) id = -id - 1;
  }
  const int64_t times[] = {0, -1, 1, 1700000000, 1700000000 + 86400 * 400,
                           std::numeric_limits<int64_t>::max()};
  const auto time = [&] { return times[(*rng)() % 6]; };
  std::vector<float> values = Floats(rng, n * dim);
  if ((*rng)() % 4 == 0) std::fill(values.begin(), values.begin() + dim, 0.f);
  table->Assign(ids.data(), n, values.data(), time());
  std::vector<float> out(n * dim);
  table->BatchLookup(ids.data(), n, out.data());
  std::vector<uint16_t> halfs(n * dim);
  table->BatchLookupHalfs(ids.data(), n, halfs.data());
  std::vector<int> existed(n);
  table->Reinitialize(ids.data(), n / 2, existed.data(), time());
  const std::vector<float> grads = Floats(rng, n * dim);
  const std::vector<float> rates = Floats(rng, slices);
  for (int step = 0; step < 3; ++step) {
    const Status status =
        table->BatchOptimize(ids.data(), n, grads.data(), rates.data(), time(),
                             InterestingInt(rng));
    if (config.entry_config().entry_type() == EntryConfig::SERVING) {
      EXPECT_FALSE(status.ok()) << what;
    } else {
      EXPECT_TRUE(status.ok()) << what << ": " << status.ToString();
    }
  }
  table->AssignAdd(ids.data(), n, values.data(), time());
  table->BatchLookup(ids.data(), n, out.data());
  // What a save writes restores into a fresh table of the config.
  const std::map<int64_t, std::string> saved = SaveAll(*table);
  std::unique_ptr<EmbeddingHashTable> restored;
  ASSERT_OK(EmbeddingHashTable::Create(config, seed, &restored));
  RecordScratch scratch;
  for (const auto& [id, record] : saved) {
    int64_t update_time = 0;
    const Status status = restored->RestoreRecord(
        record.data(), record.size(), &scratch, &update_time);
    ASSERT_TRUE(status.ok()) << what << ": id " << id << ": "
                             << status.ToString();
  }
  // Each restored entry saves as the same record (values, optimizer state,
  // update time); lookups may differ where a one_bit compressor's HashNet
  // scale follows the global step, which a restore does not set. With
  // skip_zero_embedding a restore skips entries whose values are zeros
  // (AllZero: a squared norm under FLT_MIN, as Assign erases them; a
  // missing id looks up as zeros).
  const std::map<int64_t, std::string> resaved = SaveAll(*restored);
  EXPECT_LE(resaved.size(), saved.size()) << what;
  for (const auto& [id, record] : saved) {
    const auto it = resaved.find(id);
    if (it == resaved.end() && config.skip_zero_embedding()) {
      std::vector<float> embedding(dim);
      table->Lookup(id, embedding.data());
      EXPECT_TRUE(AllZero(embedding.data(), dim))
          << what << ": id " << id << " was not restored";
      continue;
    }
    EXPECT_TRUE(it != resaved.end() && it->second == record)
        << what << ": id " << id;
  }
  table->Evict(time());
  table->Erase(ids[0]);
  EXPECT_TRUE(table->Save(0, 3, time(), [](const auto&) {
                      return Status::OK();
                    }).ok())
      << what;
  table->Clear();
  EXPECT_EQ(table->Size(), 0) << what;
}

TEST(ConfigFuzzTest, MutatedConfigsCreateWorkingTablesOrFailCleanly) {
  const uint64_t seed = static_cast<uint64_t>(EnvInt("MONOLITH_FUZZ_SEED", 1));
  const bool verbose = EnvInt("MONOLITH_FUZZ_VERBOSE", 0) != 0;
  const FuzzBudget budget(20000);
  int64_t created = 0;
  int64_t refused = 0;
  int64_t unparsed = 0;
  for (int64_t i = 0; budget.Allows(i); ++i) {
    std::mt19937_64 rng(seed * 1000003 + static_cast<uint64_t>(i));
    EmbeddingHashTableConfig config =
        ValidConfig(&rng, 1 + static_cast<int>(rng() % 3),
                    static_cast<int>(rng() % 15), rng() % 4 == 0);
    std::string what = "iteration " + std::to_string(i) + ":";
    const int mutations = static_cast<int>(rng() % 4);
    bool parsed = true;
    for (int m = 0; m < mutations && parsed; ++m) {
      if (rng() % 4 == 0) {
        parsed = MutateBytes(&config, &rng);
        what += " bytes;";
      } else {
        what += " " + MutateField(&config, &rng) + ";";
      }
    }
    if (!parsed) {
      ++unparsed;
      continue;
    }
    if (config.initial_capacity() > kMaxFuzzedCapacity) {
      config.set_initial_capacity(config.initial_capacity() %
                                  kMaxFuzzedCapacity);
    }
    std::unique_ptr<EmbeddingHashTable> table;
    const Status status = EmbeddingHashTable::Create(config, seed, &table);
    if (verbose) {
      std::fprintf(stderr, "%s %s\n  config: %s\n", what.c_str(),
                   status.ToString().c_str(),
                   config.ShortDebugString().c_str());
    }
    if (!status.ok()) {
      ++refused;
      EXPECT_FALSE(status.message().empty()) << what;
      continue;
    }
    ++created;
    table.reset();
    Exercise(config, seed, &rng, what + " " + config.ShortDebugString());
    if (::testing::Test::HasFailure()) {
      FAIL() << "rerun with MONOLITH_FUZZ_VERBOSE=1; " << what;
    }
  }
  std::fprintf(stderr,
               "config fuzz: %lld tables created, %lld configs refused, %lld "
               "did not parse\n",
               static_cast<long long>(created),
               static_cast<long long>(refused),
               static_cast<long long>(unparsed));
  // Both outcomes are reached (over runs of the default's size): a run
  // whose mutations are all refused, or none, tests less than it claims.
  if (created + refused + unparsed >= 2000) {
    EXPECT_GT(created, (created + refused) / 10);
    EXPECT_GT(refused, (created + refused) / 10);
  }
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
