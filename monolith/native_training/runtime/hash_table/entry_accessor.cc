#include "monolith/native_training/runtime/hash_table/entry_accessor.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <utility>

#include "monolith/native_training/runtime/hash_table/inline_buffer.h"
#include "monolith/native_training/runtime/hash_table/wire_reader.h"

namespace monolith {
namespace hash_table {
namespace {

inline char* At(void* base, int64_t offset) {
  return static_cast<char*>(base) + offset;
}
inline const char* At(const void* base, int64_t offset) {
  return static_cast<const char*>(base) + offset;
}

// The tags of EntryDump's fields in a record.
constexpr char kIdTag = EntryDump::kIdFieldNumber << 3 | 1;      // fixed64
constexpr char kNumTag = EntryDump::kNumFieldNumber << 3 | 5;    // fixed32
constexpr char kOptTag = EntryDump::kOptFieldNumber << 3 | 2;    // bytes
constexpr char kTimeTag = EntryDump::kLastUpdateTsSecFieldNumber << 3;
constexpr size_t kIdBytes = 1 + sizeof(int64_t);

// The optional last_update_ts_sec field that must end a record at |end|;
// false if [p, end) is anything else.
bool ReadTimeField(const char* p, const char* end, uint64_t* time) {
  *time = 0;
  if (p == end) return true;
  return *p == kTimeTag && ReadVarint(p + 1, end, time) == end;
}

Status SegmentError(int index, const std::string& what) {
  return InvalidArgumentError("EntryConfig segment " + std::to_string(index) +
                              ": " + what);
}

}  // namespace

Status EntryAccessor::Create(const EntryConfig& config,
                             std::unique_ptr<EntryAccessor>* accessor) {
  if (config.segments_size() == 0) {
    return InvalidArgumentError("EntryConfig has no segments");
  }
  if (config.entry_type() == EntryConfig::UNKNOWN) {
    return InvalidArgumentError("EntryConfig entry_type is UNKNOWN");
  }
  std::unique_ptr<EntryAccessor> result(new EntryAccessor());
  result->serving_ = config.entry_type() == EntryConfig::SERVING;
  int64_t data_bytes = 0;
  for (int i = 0; i < config.segments_size(); ++i) {
    const EntryConfig::Segment& conf = config.segments(i);
    Segment seg;
    seg.dim = conf.dim_size();
    if (seg.dim <= 0) {
      return SegmentError(i, "dim_size must be positive, got " +
                                 std::to_string(seg.dim));
    }
    if (seg.dim > kMaxEntryDim - result->dim_) {
      return SegmentError(i, "dim_size " + std::to_string(seg.dim) +
                                 " makes the entry's dims sum past " +
                                 std::to_string(kMaxEntryDim));
    }
    seg.num_offset = result->dim_;
    seg.data_offset = data_bytes;
    if (result->serving_) {
      if (!conf.has_comp_config()) {
        return SegmentError(i, "a SERVING entry needs comp_config");
      }
      Status s = NewFloatCompressor(conf.comp_config(), seg.dim,
                                    &seg.compressor);
      if (!s.ok()) return SegmentError(i, s.message());
      data_bytes += seg.compressor->SizeBytes();
    } else {
      if (!conf.has_init_config() || !conf.has_opt_config()) {
        return SegmentError(i,
                            "a TRAINING entry needs init_config and opt_config");
      }
      if (conf.has_comp_config()) {
        // Used only once the table is exported: checked now, not first when
        // TF Serving loads the model.
        std::unique_ptr<FloatCompressorInterface> serving;
        Status s = NewFloatCompressor(conf.comp_config(), seg.dim, &serving);
        if (!s.ok()) {
          return SegmentError(i, "comp_config (for serving): " +
                                     std::string(s.message()));
        }
        if (conf.comp_config().has_fixed_r8()) {
          seg.fake_quantizer = std::make_unique<FixedR8Quantizer>(
              conf.comp_config().fixed_r8().r());
          result->transforms_lookups_ = true;
        } else if (conf.comp_config().has_one_bit()) {
          seg.hash_net =
              std::make_unique<HashNet>(conf.comp_config().one_bit());
          seg.hash_net_scale = std::make_unique<std::atomic<float>>(
              seg.hash_net->ScaleAt(0));
          result->transforms_lookups_ = true;
          result->has_hash_net_ = true;
          result->max_hash_net_dim_ =
              std::max(result->max_hash_net_dim_, seg.dim);
        }
      }
      Status s = NewInitializer(conf.init_config(), seg.dim, &seg.initializer);
      if (!s.ok()) return SegmentError(i, s.message());
      s = NewOptimizer(conf.opt_config(), seg.dim, &seg.optimizer);
      if (!s.ok()) return SegmentError(i, s.message());
      seg.dump_offset = result->dump_size_;
      seg.lr_offset = result->slice_size_;
      result->dump_size_ += seg.optimizer->DumpSize();
      result->slice_size_ += seg.optimizer->SliceSize();
      data_bytes += seg.optimizer->StateBytes();
    }
    result->dim_ += seg.dim;
    result->max_segment_dim_ = std::max(result->max_segment_dim_, seg.dim);
    result->segments_.push_back(std::move(seg));
  }
  // Serving data starts at byte 0; training state follows the fp32 num.
  const int64_t data_start =
      result->serving_ ? 0 : int64_t{result->dim_} * sizeof(float);
  for (Segment& seg : result->segments_) seg.data_offset += data_start;
  // Keep entries 4-byte aligned so num and state can be read as floats.
  result->size_bytes_ = (data_start + data_bytes + 3) / 4 * 4;
  if (result->serving_) {
    // Init copies it: a new entry's Init must not allocate, since the table
    // has published the entry's slot by then (a std::bad_alloc would leave
    // the id holding whatever the arena held).
    result->zero_entry_.resize(result->size_bytes_);
    const std::vector<float> zeros(result->dim_, 0.0f);
    result->Assign(zeros.data(), result->zero_entry_.data());
  } else {
    // The optimizers' dumps of a new entry: the usual length of an entry's
    // opt message, so WriteDump reserves room for its length up front.
    std::vector<char> entry(result->size_bytes_);
    result->Init(entry.data(), /*seed=*/0, /*id=*/0);
    WireWriter opt;
    for (const Segment& seg : result->segments_) {
      seg.optimizer->WriteDump(At(entry.data(), seg.data_offset), &opt);
    }
    result->opt_dump_bytes_ = opt.size();
    result->BuildDumpTemplate();
  }
  *accessor = std::move(result);
  return Status::OK();
}

std::string EntryAccessor::DebugString() const {
  std::ostringstream out;
  out << (serving_ ? "SERVING" : "TRAINING") << "(D=" << dim_
      << ", bytes=" << size_bytes_ << ": ";
  for (size_t i = 0; i < segments_.size(); ++i) {
    const Segment& seg = segments_[i];
    if (i) out << " | ";
    if (serving_) {
      out << seg.compressor->DebugString();
    } else {
      out << seg.initializer->DebugString() << ", "
          << seg.optimizer->DebugString();
      if (seg.fake_quantizer) {
        out << ", FakeQuant(r=" << seg.fake_quantizer->r() << ")";
      } else if (seg.hash_net) {
        out << ", HashNet";
      }
    }
  }
  out << ")";
  return out.str();
}

void EntryAccessor::Init(void* entry, uint64_t seed, int64_t id) const {
  if (serving_) {
    std::memcpy(entry, zero_entry_.data(), zero_entry_.size());
    return;
  }
  float* num = static_cast<float*>(entry);
  for (size_t i = 0; i < segments_.size(); ++i) {
    const Segment& seg = segments_[i];
    seg.initializer->Initialize(num + seg.num_offset, seed + i, id,
                                seg.num_offset);
    seg.optimizer->Init(At(entry, seg.data_offset));
  }
}

void EntryAccessor::Fill(const void* entry, float* num) const {
  if (!serving_) {
    std::memcpy(num, entry, sizeof(float) * dim_);
    if (transforms_lookups_) TransformLookup(num);
    return;
  }
  for (const Segment& seg : segments_) {
    seg.compressor->Decode(At(entry, seg.data_offset), num + seg.num_offset);
  }
}

void EntryAccessor::TransformLookup(float* num) const {
  for (const Segment& seg : segments_) {
    float* values = num + seg.num_offset;
    if (seg.fake_quantizer) {
      for (int i = 0; i < seg.dim; ++i) {
        values[i] = seg.fake_quantizer->Quantize(values[i]);
      }
    } else if (seg.hash_net) {
      const float scale =
          seg.hash_net_scale->load(std::memory_order_relaxed);
      for (int i = 0; i < seg.dim; ++i) {
        values[i] = seg.hash_net->Forward(values[i], scale);
      }
    }
  }
}

void EntryAccessor::Assign(const float* num, void* entry) const {
  if (!serving_) {
    std::memcpy(entry, num, sizeof(float) * dim_);
    return;
  }
  for (const Segment& seg : segments_) {
    seg.compressor->Encode(num + seg.num_offset, At(entry, seg.data_offset));
  }
}

void EntryAccessor::AssignAdd(const float* num, void* entry) const {
  if (!serving_) {
    float* values = static_cast<float*>(entry);
    for (int i = 0; i < dim_; ++i) values[i] += num[i];
    return;
  }
  // Segment by segment, in a buffer on the stack up to 64 floats: this
  // runs for each id of a batch, and a table's visits should not allocate.
  // One buffer for every segment, taken before any is changed: a
  // bad_alloc then leaves the entry as it was, not half added to.
  InlineBuffer<float, 64> values(max_segment_dim_);
  for (const Segment& seg : segments_) {
    void* data = At(entry, seg.data_offset);
    seg.compressor->Decode(data, values.data());
    const float* added = num + seg.num_offset;
    for (int i = 0; i < seg.dim; ++i) values.data()[i] += added[i];
    seg.compressor->Encode(values.data(), data);
  }
}

void EntryAccessor::Optimize(void* entry, const float* grad,
                             const float* learning_rates,
                             int64_t global_step) const {
  if (has_hash_net_) {
    OptimizeThroughHashNet(entry, grad, learning_rates, global_step);
    return;
  }
  float* num = static_cast<float*>(entry);
  for (const Segment& seg : segments_) {
    seg.optimizer->Optimize(At(entry, seg.data_offset), num + seg.num_offset,
                            grad + seg.num_offset,
                            learning_rates + seg.lr_offset, global_step);
  }
}

void EntryAccessor::NoteHashNetStep(int64_t global_step) const {
  if (global_step <= hash_net_step_.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(hash_net_mu_);
  if (global_step <= hash_net_step_.load(std::memory_order_relaxed)) return;
  for (const Segment& seg : segments_) {
    if (seg.hash_net) {
      seg.hash_net_scale->store(seg.hash_net->ScaleAt(global_step),
                                std::memory_order_relaxed);
    }
  }
  hash_net_step_.store(global_step, std::memory_order_relaxed);
}

void EntryAccessor::ResetLookupState() const {
  if (!has_hash_net_) return;
  std::lock_guard<std::mutex> lock(hash_net_mu_);
  for (const Segment& seg : segments_) {
    if (seg.hash_net) {
      seg.hash_net_scale->store(seg.hash_net->ScaleAt(0),
                                std::memory_order_relaxed);
    }
  }
  hash_net_step_.store(0, std::memory_order_relaxed);
}

void EntryAccessor::OptimizeThroughHashNet(void* entry, const float* grad,
                                           const float* learning_rates,
                                           int64_t global_step) const {
  NoteHashNetStep(global_step);
  float* num = static_cast<float*>(entry);
  // Taken before any segment is changed, as in AssignAdd.
  InlineBuffer<float, 64> scaled(max_hash_net_dim_);
  for (const Segment& seg : segments_) {
    const float* seg_grad = grad + seg.num_offset;
    if (seg.hash_net) {
      // The gradient reaches the stored floats through Forward.
      const float scale =
          seg.hash_net_scale->load(std::memory_order_relaxed);
      for (int i = 0; i < seg.dim; ++i) {
        scaled.data()[i] =
            seg_grad[i] *
            seg.hash_net->Derivative(num[seg.num_offset + i], scale);
      }
      seg_grad = scaled.data();
    }
    seg.optimizer->Optimize(At(entry, seg.data_offset), num + seg.num_offset,
                            seg_grad, learning_rates + seg.lr_offset,
                            global_step);
  }
}

void EntryAccessor::WriteRecord(int64_t id, const void* entry,
                                int64_t update_time, WireWriter* out) const {
  out->Fixed64(EntryDump::kIdFieldNumber, id);
  WriteDump(entry, out);
  out->Int64(EntryDump::kLastUpdateTsSecFieldNumber, update_time);
}

bool EntryAccessor::ReadRecord(const char* record, size_t size, void* entry,
                               int64_t* id, uint64_t* update_time,
                               bool* values_all_zero,
                               RestoredState state) const {
  // SERVING entries read in place take the values alone anyway.
  if (state == RestoredState::kValuesOnly && !serving_) return false;
  if (size < kIdBytes || record[0] != kIdTag) return false;
  std::memcpy(id, record + 1, sizeof(*id));
  const char* p = record + kIdBytes;
  const char* end = record + size;
  if (!serving_) {
    // TRAINING: num and opt exactly as WriteDump lays them out.
    const size_t fields = DumpFieldsBytes();
    if (fields == 0 || size < kIdBytes + fields ||
        !ReadTimeField(p + fields, end, update_time) ||
        !ReadDump(p, fields, entry)) {
      return false;
    }
    *values_all_zero = AllZero(static_cast<const float*>(entry), dim_);
    return true;
  }
  // SERVING keeps only the values: read the dim unpacked num floats, skip
  // the optimizer state.
  InlineBuffer<float, 256> num_buffer(dim_);
  float* num = num_buffer.data();
  constexpr size_t kNumFieldBytes = 1 + sizeof(float);
  if (static_cast<size_t>(end - p) < dim_ * kNumFieldBytes) return false;
  for (int i = 0; i < dim_; ++i, p += kNumFieldBytes) {
    if (*p != kNumTag) return false;
    std::memcpy(&num[i], p + 1, sizeof(float));
  }
  if (p < end && *p == kOptTag) {
    uint64_t length = 0;
    p = ReadVarint(p + 1, end, &length);
    if (p == nullptr || length > static_cast<uint64_t>(end - p)) return false;
    p += length;
  }
  if (!ReadTimeField(p, end, update_time)) return false;
  *values_all_zero = AllZero(num, dim_);
  Assign(num, entry);
  return true;
}

void EntryAccessor::WriteDump(const void* entry, WireWriter* out) const {
  if (serving_) {
    std::vector<float> num(dim_);
    Fill(entry, num.data());
    out->Floats(EntryDump::kNumFieldNumber, num.data(), dim_);
    return;
  }
  out->Floats(EntryDump::kNumFieldNumber, static_cast<const float*>(entry),
              dim_);
  const size_t opt =
      out->BeginMessage(EntryDump::kOptFieldNumber, opt_dump_bytes_);
  for (const Segment& seg : segments_) {
    seg.optimizer->WriteDump(At(entry, seg.data_offset), out);
  }
  out->EndMessage(opt);
}

void EntryAccessor::Save(const void* entry, EntryDump* dump) const {
  WireWriter wire;
  WriteDump(entry, &wire);
  dump->MergeFromString({wire.data(), wire.size()});
}

void EntryAccessor::BuildDumpTemplate() {
  constexpr uint32_t kMarkers[2] = {0x5EED0000u, 0x3C1A0000u};
  constexpr uint32_t kMarkerMask = 0xFFFF0000u;
  const size_t words = size_bytes_ / sizeof(uint32_t);
  // Entries without optimizer dumps restore through Restore's own path
  // (initial optimizer state).
  if (dump_size_ == 0 || words == 0 || words > ~kMarkerMask) return;
  // Entries whose words are distinct markers, and their dumps.
  auto marked = [words](uint32_t marker) {
    std::vector<uint32_t> entry(words);
    for (size_t i = 0; i < words; ++i) entry[i] = marker | i;
    return entry;
  };
  auto dump_of = [this](const std::vector<uint32_t>& entry) {
    WireWriter wire;
    WriteDump(entry.data(), &wire);
    return std::string(wire.data(), wire.size());
  };
  const std::vector<uint32_t> entry = marked(kMarkers[0]);
  std::string layout = dump_of(entry);
  // Every word must appear in the dump exactly once.
  std::vector<int> seen(words, 0);
  for (size_t p = 0; p + sizeof(uint32_t) <= layout.size();) {
    uint32_t word;
    std::memcpy(&word, layout.data() + p, sizeof(word));
    const uint32_t index = word & ~kMarkerMask;
    if ((word & kMarkerMask) == kMarkers[0] && index < words) {
      dump_words_.emplace_back(static_cast<uint32_t>(p), index);
      ++seen[index];
      p += sizeof(word);
    } else {
      ++p;
    }
  }
  std::string mask(layout.size(), '\xff');
  for (const auto& [offset, index] : dump_words_) {
    mask.replace(offset, sizeof(uint32_t), sizeof(uint32_t), '\0');
  }
  const size_t chunks = (layout.size() + 7) / 8;
  template_chunks_.assign(chunks, 0);
  template_mask_.assign(chunks, 0);
  std::memcpy(template_chunks_.data(), layout.data(), layout.size());
  std::memcpy(template_mask_.data(), mask.data(), mask.size());
  dump_template_ = layout;
  // The layout must not depend on the values (the dump of other markers
  // reads back through it), and Restore must read back exactly the words.
  const std::vector<uint32_t> other = marked(kMarkers[1]);
  const std::string other_layout = dump_of(other);
  std::vector<uint32_t> read(words), restored(words);
  EntryDump dump;
  const bool usable =
      std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }) &&
      ReadDump(other_layout.data(), other_layout.size(), read.data()) &&
      read == other && dump.ParseFromString(layout) &&
      Restore(dump, restored.data()).ok() && restored == entry;
  if (!usable) {
    dump_template_.clear();
    dump_words_.clear();
    template_chunks_.clear();
    template_mask_.clear();
  }
}

bool EntryAccessor::ReadDump(const char* fields, size_t size,
                             void* entry) const {
  if (dump_template_.empty() || size != dump_template_.size()) return false;
  // Every byte outside the words must be the template's: compare 8 bytes
  // at a time under the mask (the last chunk only over what is there).
  uint64_t differ = 0;
  const size_t whole = size / 8;
  for (size_t c = 0; c < whole; ++c) {
    uint64_t chunk;
    std::memcpy(&chunk, fields + 8 * c, sizeof(chunk));
    differ |= (chunk ^ template_chunks_[c]) & template_mask_[c];
  }
  if (whole < template_chunks_.size()) {
    uint64_t chunk = 0;
    std::memcpy(&chunk, fields + 8 * whole, size - 8 * whole);
    differ |= (chunk ^ template_chunks_[whole]) & template_mask_[whole];
  }
  if (differ != 0) return false;
  char* out = static_cast<char*>(entry);
  for (const auto& [offset, index] : dump_words_) {
    std::memcpy(out + size_t{index} * sizeof(uint32_t), fields + offset,
                sizeof(uint32_t));
  }
  return true;
}

Status ParseRecord(const char* record, size_t size, RecordScratch* scratch,
                   RestoredState state) {
  if (scratch->dump_ == nullptr ||
      scratch->arena_->SpaceAllocated() >= RecordScratch::kMaxArenaBytes) {
    scratch->dump_ = nullptr;
    scratch->arena_ = std::make_unique<google::protobuf::Arena>();
    scratch->dump_ =
        google::protobuf::Arena::Create<EntryDump>(scratch->arena_.get());
  }
  EntryDump* dump = scratch->dump_;
  bool parsed = false;
  try {
    parsed = dump->ParseFromArray(record, static_cast<int>(size));
  } catch (...) {
    scratch->dump_ = nullptr;  // not to be touched again: see RecordScratch
    throw;
  }
  if (!parsed) {
    return DataLossError("a record of " + std::to_string(size) +
                         " bytes is not an EntryDump");
  }
  if (state == RestoredState::kValuesOnly) dump->clear_opt();
  return Status::OK();
}

std::vector<uint32_t> EntryAccessor::SegmentDims() const {
  std::vector<uint32_t> dims;
  for (const Segment& seg : segments_) {
    dims.push_back(static_cast<uint32_t>(seg.dim));
  }
  return dims;
}

Status EntryAccessor::Restore(const EntryDump& dump, void* entry) const {
  if (dump.num_size() != dim_) {
    return InvalidArgumentError(
        "entry " + std::to_string(dump.id()) + " has " +
        std::to_string(dump.num_size()) + " floats, the table's dim is " +
        std::to_string(dim_));
  }
  if (serving_ || !dump.has_opt() || dump.opt().dump_size() == 0) {
    // The dump's values and the optimizers' initial state (no initial
    // values drawn: Assign would replace them).
    if (serving_) {
      std::memcpy(entry, zero_entry_.data(), zero_entry_.size());
    } else {
      for (const Segment& seg : segments_) {
        seg.optimizer->Init(At(entry, seg.data_offset));
      }
    }
    Assign(dump.num().data(), entry);
    return Status::OK();
  }
  if (dump.opt().dump_size() != dump_size_) {
    return InvalidArgumentError(
        "entry " + std::to_string(dump.id()) + " has " +
        std::to_string(dump.opt().dump_size()) +
        " optimizer dumps, the table's optimizers write " +
        std::to_string(dump_size_));
  }
  Assign(dump.num().data(), entry);
  for (const Segment& seg : segments_) {
    Status s = seg.optimizer->Restore(dump.opt(), seg.dump_offset,
                                      At(entry, seg.data_offset));
    if (!s.ok()) {
      return InvalidArgumentError("entry " + std::to_string(dump.id()) +
                                  ": " + s.message());
    }
  }
  return Status::OK();
}

}  // namespace hash_table
}  // namespace monolith
