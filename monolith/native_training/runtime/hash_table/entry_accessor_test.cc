#include "monolith/native_training/runtime/hash_table/entry_accessor.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "monolith/native_training/runtime/hash_table/status_matchers.h"

namespace monolith {
namespace hash_table {
namespace {

EntryConfig ParseConfig(const std::string& text) {
  EntryConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config))
      << text;
  return config;
}

std::unique_ptr<EntryAccessor> MakeAccessor(const std::string& text) {
  std::unique_ptr<EntryAccessor> accessor;
  Status s = EntryAccessor::Create(ParseConfig(text), &accessor);
  EXPECT_OK(s);
  return accessor;
}

// Two segments: 2 floats of SGD from ones, 3 floats of Adagrad from zeros.
constexpr char kTwoSegments[] = R"pb(
  segments {
    dim_size: 2
    init_config { ones {} }
    opt_config { sgd { learning_rate: 0.1 } }
  }
  segments {
    dim_size: 3
    init_config { zeros {} }
    opt_config { adagrad { initial_accumulator_value: 1.0 } }
  }
)pb";

TEST(EntryAccessorTest, SegmentsConcatenateDimsAndLearningRates) {
  auto accessor = MakeAccessor(kTwoSegments);
  EXPECT_EQ(accessor->DimSize(), 5);
  EXPECT_EQ(accessor->SliceSize(), 2);
  // 5 floats of num + 3 floats of Adagrad norm; SGD keeps no state.
  EXPECT_EQ(accessor->SizeBytes(), 8 * 4);

  std::vector<char> entry(accessor->SizeBytes());
  accessor->Init(entry.data(), /*seed=*/1, /*id=*/7);
  std::vector<float> num(5);
  accessor->Fill(entry.data(), num.data());
  EXPECT_EQ(num, (std::vector<float>{1, 1, 0, 0, 0}));

  // Each segment gets its own learning rate.
  const float grad[5] = {1, 2, 1, 1, 1};
  const float lrs[2] = {0.5f, 2.0f};
  accessor->Optimize(entry.data(), grad, lrs, 0);
  accessor->Fill(entry.data(), num.data());
  EXPECT_FLOAT_EQ(num[0], 1 - 0.5f * 1);
  EXPECT_FLOAT_EQ(num[1], 1 - 0.5f * 2);
  // Adagrad: norm = 1 + 1 = 2; num -= lr * g / sqrt(norm).
  EXPECT_FLOAT_EQ(num[2], -2.0f / std::sqrt(2.0f));
}

TEST(EntryAccessorTest, AssignAndAssignAdd) {
  auto accessor = MakeAccessor(kTwoSegments);
  std::vector<char> entry(accessor->SizeBytes());
  accessor->Init(entry.data(), /*seed=*/1, /*id=*/7);
  const float values[5] = {1, 2, 3, 4, 5};
  accessor->Assign(values, entry.data());
  accessor->AssignAdd(values, entry.data());
  std::vector<float> num(5);
  accessor->Fill(entry.data(), num.data());
  EXPECT_EQ(num, (std::vector<float>{2, 4, 6, 8, 10}));
}

// Lookups of TRAINING entries return what the segment's compressor would
// serve where the original trained on it: fixed_r8 values quantized
// (straight-through gradient), one_bit values through HashNet (gradient
// through its derivative); fp16 and uncompressed segments the raw floats.
TEST(EntryAccessorTest, TrainingLookupsOfFixedR8AndOneBitSegments) {
  auto accessor = MakeAccessor(R"pb(
    segments {
      dim_size: 2
      init_config { zeros {} }
      opt_config { sgd {} }
      comp_config { fp16 {} }
    }
    segments {
      dim_size: 2
      init_config { zeros {} }
      opt_config { sgd {} }
      comp_config { fixed_r8 { r: 1.0 } }
    }
    segments {
      dim_size: 2
      init_config { zeros {} }
      opt_config { sgd {} }
      comp_config { one_bit { step_size: 10 init_scale: 2 amplitude: 0.5 } }
    }
  )pb");
  EXPECT_TRUE(accessor->transforms_lookups());
  EXPECT_FALSE(MakeAccessor(kTwoSegments)->transforms_lookups());
  std::vector<char> entry(accessor->SizeBytes());
  accessor->Init(entry.data(), /*seed=*/1, /*id=*/7);
  const float values[6] = {0.1234f, -0.3f, 0.1234f, -0.3f, 0.1234f, -0.3f};
  accessor->Assign(values, entry.data());

  const FixedR8Quantizer quantizer(1.0f);
  FloatCompressorConfig::OneBit one_bit;
  one_bit.set_step_size(10);
  one_bit.set_init_scale(2);
  one_bit.set_amplitude(0.5);
  const HashNet hash_net(one_bit);
  std::vector<float> num(6);
  accessor->Fill(entry.data(), num.data());
  // Before any optimize HashNet uses init_scale.
  EXPECT_EQ(num, (std::vector<float>{0.1234f, -0.3f, quantizer.Quantize(0.1234f),
                                     quantizer.Quantize(-0.3f),
                                     hash_net.Forward(0.1234f, 2.0f),
                                     hash_net.Forward(-0.3f, 2.0f)}));
  EXPECT_NE(num[2], 0.1234f);

  // Distinct gradients and learning rates per segment: each segment reads
  // its own.
  const float grad[6] = {1, 2, 3, 4, 5, 6};
  const float lrs[3] = {0.1f, 0.2f, 0.3f};
  accessor->Optimize(entry.data(), grad, lrs, /*global_step=*/25);
  const float scale = hash_net.ScaleAt(25);
  EXPECT_GT(scale, 2.0f);
  const std::vector<float> raw = {
      0.1234f - 0.1f * 1, -0.3f - 0.1f * 2, 0.1234f - 0.2f * 3,
      -0.3f - 0.2f * 4,
      0.1234f - 0.3f * (5 * hash_net.Derivative(0.1234f, scale)),
      -0.3f - 0.3f * (6 * hash_net.Derivative(-0.3f, scale))};
  auto saved = [&]() {
    EntryDump dump;
    accessor->Save(entry.data(), &dump);
    EXPECT_EQ(dump.num_size(), 6);
    return std::vector<float>(dump.num().begin(), dump.num().end());
  };
  std::vector<float> now = saved();
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(now[i], raw[i]) << i;
  // Lookups follow the scale of the latest global step optimize saw.
  accessor->Fill(entry.data(), num.data());
  EXPECT_FLOAT_EQ(num[0], raw[0]);
  EXPECT_FLOAT_EQ(num[3], quantizer.Quantize(raw[3]));
  EXPECT_FLOAT_EQ(num[4], hash_net.Forward(raw[4], scale));
  EXPECT_FLOAT_EQ(num[5], hash_net.Forward(raw[5], scale));
  // An older step (a slower worker) keeps the scale of step 25, in the
  // gradient and in lookups.
  accessor->Optimize(entry.data(), grad, lrs, /*global_step=*/3);
  const std::vector<float> after = saved();
  EXPECT_FLOAT_EQ(after[4],
                  raw[4] - 0.3f * (5 * hash_net.Derivative(raw[4], scale)));
  accessor->Fill(entry.data(), num.data());
  EXPECT_FLOAT_EQ(num[4], hash_net.Forward(after[4], scale));
  // A table emptied for a restore starts again from init_scale.
  accessor->ResetLookupState();
  accessor->Fill(entry.data(), num.data());
  EXPECT_FLOAT_EQ(num[4], hash_net.Forward(after[4], 2.0f));
}

// A kTwoSegments entry after one update (gradients 1..5).
std::vector<char> TrainedEntry(const EntryAccessor& accessor) {
  std::vector<char> entry(accessor.SizeBytes());
  accessor.Init(entry.data(), /*seed=*/1, /*id=*/7);
  const float grad[5] = {1, 2, 3, 4, 5};
  const float lrs[2] = {0.1f, 0.2f};
  accessor.Optimize(entry.data(), grad, lrs, 0);
  return entry;
}

// Each parse into a scratch's arena makes a new optimizer dump (a oneof's
// message is not reused on an arena): the arena is started afresh once it
// holds kMaxArenaBytes, so a restore parsing every record stays bounded.
TEST(RecordScratchTest, ArenaStaysBoundedAcrossParses) {
  RecordScratch scratch;
  uint64_t most = 0;
  bool renewed = false;
  for (int i = 0; i < 20000; ++i) {
    EntryDump dump;
    dump.set_id(i);
    for (int d = 0; d < 16; ++d) dump.add_num(0.5f * d);
    SingleOptimizerDump* opt = dump.mutable_opt()->add_dump();
    for (int d = 0; d < 16; ++d) opt->mutable_adagrad()->add_norm(d);
    const std::string record = dump.SerializeAsString();
    const uint64_t before = scratch.ArenaBytes();
    ASSERT_OK(ParseRecord(record.data(), record.size(), &scratch));
    ASSERT_EQ(scratch.dump().id(), i);
    ASSERT_EQ(scratch.dump().opt().dump(0).adagrad().norm(15), 15.0f);
    renewed |= scratch.ArenaBytes() < before;
    most = std::max(most, scratch.ArenaBytes());
  }
  EXPECT_TRUE(renewed);
  EXPECT_LT(most, RecordScratch::kMaxArenaBytes + (64 << 10));
}

TEST(EntryAccessorTest, SaveRestoreKeepsOptimizerState) {
  auto accessor = MakeAccessor(kTwoSegments);
  const std::vector<char> entry = TrainedEntry(*accessor);

  EntryDump dump;
  accessor->Save(entry.data(), &dump);
  ASSERT_EQ(dump.num_size(), 5);
  ASSERT_EQ(dump.opt().dump_size(), 2);
  EXPECT_TRUE(dump.opt().dump(0).has_sgd());
  ASSERT_EQ(dump.opt().dump(1).adagrad().norm_size(), 3);
  EXPECT_FLOAT_EQ(dump.opt().dump(1).adagrad().norm(0), 1 + 3 * 3);

  std::vector<char> restored(accessor->SizeBytes());
  ASSERT_OK(accessor->Restore(dump, restored.data()));
  EXPECT_EQ(restored, entry);
}

TEST(EntryAccessorTest, ReadDumpCopiesWordsOfWriteDumpsLayoutOnly) {
  auto accessor = MakeAccessor(kTwoSegments);
  const std::vector<char> entry = TrainedEntry(*accessor);
  WireWriter wire;
  accessor->WriteDump(entry.data(), &wire);
  ASSERT_EQ(accessor->DumpFieldsBytes(), wire.size());
  std::string fields(wire.data(), wire.size());
  std::vector<char> read(accessor->SizeBytes());
  ASSERT_TRUE(accessor->ReadDump(fields.data(), fields.size(), read.data()));
  EXPECT_EQ(read, entry);
  // Any other shape is left to the parser.
  EXPECT_FALSE(accessor->ReadDump(fields.data(), fields.size() - 1,
                                  read.data()));
  std::string other_tag = fields;
  other_tag[0] = static_cast<char>(((EntryDump::kNumFieldNumber << 3) | 5) ^ 8);
  EXPECT_FALSE(accessor->ReadDump(other_tag.data(), other_tag.size(),
                                  read.data()));
  std::string other_inner_tag = fields;
  other_inner_tag[other_inner_tag.size() - 5] ^= 8;  // the last norm's tag
  EXPECT_FALSE(accessor->ReadDump(other_inner_tag.data(),
                                  other_inner_tag.size(), read.data()));
  // Entries whose state is not plain words, entries whose optimizers dump
  // nothing (Restore initializes them, drawing random numbers), and
  // SERVING entries have no such layout.
  EXPECT_EQ(MakeAccessor("segments { dim_size: 2 init_config { zeros {} } "
                         "opt_config { moving_average {} } }")
                ->DumpFieldsBytes(),
            0u);
  EXPECT_EQ(MakeAccessor("segments { dim_size: 2 init_config { zeros {} } "
                         "opt_config { dynamic_wd_adagrad {} } }")
                ->DumpFieldsBytes(),
            0u);
  EXPECT_EQ(MakeAccessor("entry_type: SERVING segments { dim_size: 2 "
                         "comp_config { fp16 {} } }")
                ->DumpFieldsBytes(),
            0u);
}

TEST(EntryAccessorTest, RestoreRejectsMismatchedDumps) {
  auto accessor = MakeAccessor(kTwoSegments);
  std::vector<char> entry(accessor->SizeBytes());
  EntryDump dump;
  dump.set_id(42);
  dump.add_num(1);
  Status s = accessor->Restore(dump, entry.data());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("entry 42 has 1 floats, the table's dim is 5"),
            std::string::npos)
      << s.message();

  for (int i = 1; i < 5; ++i) dump.add_num(i);
  dump.mutable_opt()->add_dump()->mutable_sgd();
  s = accessor->Restore(dump, entry.data());
  EXPECT_NE(s.message().find("1 optimizer dumps"), std::string::npos)
      << s.message();
}

TEST(EntryAccessorTest, RestoreWithoutOptimizerStateInitializesIt) {
  auto accessor = MakeAccessor(kTwoSegments);
  std::vector<char> entry(accessor->SizeBytes());
  EntryDump dump;
  for (int i = 0; i < 5; ++i) dump.add_num(i + 1.0f);
  ASSERT_OK(accessor->Restore(dump, entry.data()));
  EntryDump saved;
  accessor->Save(entry.data(), &saved);
  EXPECT_EQ(saved.num(4), 5.0f);
  EXPECT_FLOAT_EQ(saved.opt().dump(1).adagrad().norm(0), 1.0f);
  // Over any earlier bytes, what a new entry given those values holds.
  std::vector<char> reused(accessor->SizeBytes(), '\xab');
  std::vector<char> fresh(accessor->SizeBytes(), '\xab');
  ASSERT_OK(accessor->Restore(dump, reused.data()));
  accessor->Init(fresh.data(), /*seed=*/3, /*id=*/0);
  accessor->Assign(dump.num().data(), fresh.data());
  EXPECT_EQ(reused, fresh);
}

TEST(EntryAccessorTest, ServingEntryStoresCompressedValues) {
  auto accessor = MakeAccessor(R"pb(
    entry_type: SERVING
    segments { dim_size: 4 comp_config { fp16 {} } }
    segments { dim_size: 2 comp_config { fp32 {} } }
  )pb");
  EXPECT_TRUE(accessor->serving());
  EXPECT_EQ(accessor->SizeBytes(), 4 * 2 + 2 * 4);
  std::vector<char> entry(accessor->SizeBytes());
  accessor->Init(entry.data(), /*seed=*/1, /*id=*/7);
  const float values[6] = {0.5f, -2.0f, 1.0f / 3, 1000.0f, 1.0f / 3, 7.0f};
  accessor->Assign(values, entry.data());
  std::vector<float> num(6);
  accessor->Fill(entry.data(), num.data());
  EXPECT_EQ(num[0], 0.5f);
  EXPECT_EQ(num[1], -2.0f);
  EXPECT_NEAR(num[2], 1.0f / 3, 1e-3);
  EXPECT_EQ(num[3], 1000.0f);
  EXPECT_EQ(num[4], 1.0f / 3);  // fp32 segment is exact
  EntryDump dump;
  accessor->Save(entry.data(), &dump);
  EXPECT_FALSE(dump.has_opt());
  EXPECT_EQ(dump.num(5), 7.0f);
}

TEST(EntryAccessorTest, BadConfigsAreRejectedWithTheSegment) {
  std::unique_ptr<EntryAccessor> accessor;
  EXPECT_EQ(EntryAccessor::Create(EntryConfig(), &accessor).code(),
            StatusCode::kInvalidArgument);
  Status s = EntryAccessor::Create(
      ParseConfig("segments { dim_size: 2 init_config { zeros {} } }"),
      &accessor);
  EXPECT_NE(s.message().find("segment 0: a TRAINING entry needs"),
            std::string::npos)
      << s.message();
  s = EntryAccessor::Create(
      ParseConfig(R"pb(segments {
                         dim_size: 0
                         init_config { zeros {} }
                         opt_config { sgd {} }
                       })pb"),
      &accessor);
  EXPECT_NE(s.message().find("dim_size must be positive"), std::string::npos);
  // Dims summing past 2^20 (two of 2^30 overflowed an int, and the process
  // aborted on the negative entry size).
  s = EntryAccessor::Create(
      ParseConfig(R"pb(segments {
                         dim_size: 1073741824
                         init_config { zeros {} }
                         opt_config { sgd {} }
                       }
                       segments {
                         dim_size: 1073741824
                         init_config { zeros {} }
                         opt_config { sgd {} }
                       })pb"),
      &accessor);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("segment 0: dim_size 1073741824 makes the "
                             "entry's dims sum past 1048576"),
            std::string::npos)
      << s.message();
  s = EntryAccessor::Create(
      ParseConfig("entry_type: SERVING segments { dim_size: 2 }"), &accessor);
  EXPECT_NE(s.message().find("needs comp_config"), std::string::npos);
  // A TRAINING entry's comp_config serves only once exported: a bad one is
  // refused when the table is made, not when TF Serving loads the model.
  for (const char* comp : {"fixed_r8 { r: 0 }", ""}) {
    s = EntryAccessor::Create(
        ParseConfig(std::string("segments { dim_size: 2 init_config { zeros {} "
                                "} opt_config { sgd {} } comp_config { ") +
                    comp + " } }"),
        &accessor);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << comp;
    EXPECT_NE(s.message().find("segment 0: comp_config (for serving): "),
              std::string::npos)
        << s.message();
  }
}

}  // namespace
}  // namespace hash_table
}  // namespace monolith
