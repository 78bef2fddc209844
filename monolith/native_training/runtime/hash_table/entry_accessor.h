// The byte layout of one embedding entry and every operation on it.
//
// An entry is a list of segments (EntryConfig.segments); each has its own
// dim, initializer, optimizer and (for serving) compressor. Layouts:
//   TRAINING: [num: DimSize() floats][optimizer state of segment 0][...1]...
//   SERVING:  [compressed segment 0][compressed segment 1]...
// TRAINING lookups return the values as the segment's compressor would serve
// them where the original trained on that (fixed_r8: quantized; one_bit:
// HashNet, whose gradient Optimize applies); other segments return the raw
// floats.
// The table stores opaque blocks of SizeBytes() bytes (4-byte aligned) and
// never knows what an optimizer is; this class is the only code that does.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_ENTRY_ACCESSOR_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_ENTRY_ACCESSOR_H_

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/arena.h"
#include "monolith/native_training/runtime/hash_table/compressor/fixed_r8_quantizer.h"
#include "monolith/native_training/runtime/hash_table/compressor/float_compressor.h"
#include "monolith/native_training/runtime/hash_table/compressor/float_compressor_interface.h"
#include "monolith/native_training/runtime/hash_table/embedding_hash_table.pb.h"
#include "monolith/native_training/runtime/hash_table/initializer/initializer_interface.h"
#include "monolith/native_training/runtime/hash_table/optimizer/optimizer_interface.h"
#include "monolith/native_training/runtime/hash_table/status.h"
#include "monolith/native_training/runtime/hash_table/wire_writer.h"

namespace monolith {
namespace hash_table {

// Whether |values[0 .. dim)| are a zero embedding for skip_zero_embedding:
// the sum of their squares (in float, in order) is below the smallest
// normal float, the original's test (IsAlmostEqual(L2NormSquare, 0)), so
// values like 1e-20 count as zero as there; NaN or inf do not.
inline bool AllZero(const float* values, int dim) {
  float sum = 0.0f;
  for (int i = 0; i < dim; ++i) sum += values[i] * values[i];
  return sum < std::numeric_limits<float>::min();
}

// The largest sum of an entry's segment dims (2^20 floats, 4 MiB of
// embedding): keeps every size derived from it far from int overflow.
constexpr int kMaxEntryDim = 1 << 20;

// What a restore takes from a checkpoint record of a TRAINING entry.
enum class RestoredState {
  kAll,  // values and optimizer state
  // The values; the optimizer state starts as a new entry's (for a table
  // whose optimizers changed since the save: another kind's state does
  // not fit, and resetting every table's would discard what still fits).
  kValuesOnly,
};

// The EntryDump that ParseRecord parses records into, reused from record
// to record, on a protobuf arena. Protobuf is not exception-safe: a parse
// that runs out of memory (std::bad_alloc) leaves a message whose repeated
// fields crash when it is cleared or destroyed, while messages on an arena
// are never destroyed one by one. So a scratch whose parse threw is
// dropped with its arena (when the scratch is destroyed, or by the next
// parse, which starts a fresh one). An arena frees nothing until it goes
// (each parse makes a new optimizer dump: a oneof's message is not reused
// on an arena), so a parse also starts a fresh one once the arena holds
// kMaxArenaBytes.
class RecordScratch {
 public:
  static constexpr uint64_t kMaxArenaBytes = 1 << 20;

  RecordScratch() = default;
  RecordScratch(RecordScratch&& other) noexcept
      : arena_(std::move(other.arena_)), dump_(other.dump_) {
    other.dump_ = nullptr;
  }
  RecordScratch& operator=(RecordScratch&&) = delete;

  // Whether a record has been parsed into it (and no parse threw since).
  bool has_dump() const { return dump_ != nullptr; }
  // The record ParseRecord parsed last (valid after it returned OK).
  const EntryDump& dump() const { return *dump_; }
  // The bytes its arena holds.
  uint64_t ArenaBytes() const {
    return arena_ == nullptr ? 0 : arena_->SpaceAllocated();
  }

 private:
  friend Status ParseRecord(const char*, size_t, RecordScratch*,
                            RestoredState);

  std::unique_ptr<google::protobuf::Arena> arena_;
  EntryDump* dump_ = nullptr;  // on arena_; null once a parse threw
};

// Parses a checkpoint record (one EntryAccessor::ReadRecord did not read)
// into |scratch|: DataLoss if it is not an EntryDump. kValuesOnly drops
// its optimizer state (opt), which Restore then starts as a new entry's.
Status ParseRecord(const char* record, size_t size, RecordScratch* scratch,
                   RestoredState state = RestoredState::kAll);

class EntryAccessor {
 public:
  // Validates |config| (at least one segment, positive dims, initializer and
  // optimizer for TRAINING, compressor for SERVING).
  static Status Create(const EntryConfig& config,
                       std::unique_ptr<EntryAccessor>* accessor);

  bool serving() const { return serving_; }
  // Embedding floats over all segments.
  int DimSize() const { return dim_; }
  // The dims of the segments, in order (their sum is DimSize()).
  std::vector<uint32_t> SegmentDims() const;
  // Learning rates per update over all segments (one per optimizer).
  int SliceSize() const { return slice_size_; }
  // Bytes of one entry; a multiple of 4.
  int64_t SizeBytes() const { return size_bytes_; }
  std::string DebugString() const;

  // Sets a new entry of |id|: initial values (segment i's random ones drawn
  // from InitBits(|seed| + i, id, column), as GPU tables draw theirs) and
  // optimizer state (TRAINING), zeros (SERVING).
  void Init(void* entry, uint64_t seed, int64_t id) const;
  // Whether Fill of a TRAINING entry transforms its floats (a fixed_r8 or
  // one_bit segment) rather than copying them.
  bool transforms_lookups() const { return transforms_lookups_; }
  // Writes the DimSize() embedding floats of |entry|, as lookups return
  // them, to |num|.
  void Fill(const void* entry, float* num) const;
  void Assign(const float* num, void* entry) const;
  void AssignAdd(const float* num, void* entry) const;
  // TRAINING only (the table rejects optimize on SERVING tables). |grad| is
  // the gradient of what Fill returned.
  void Optimize(void* entry, const float* grad, const float* learning_rates,
                int64_t global_step) const;
  // Forgets the global steps Optimize saw (HashNet's scale returns to
  // init_scale): for a table emptied to be restored.
  void ResetLookupState() const;

  // Writes EntryDump fields num and (TRAINING) opt of |entry| in wire
  // format; the caller writes id before and last_update_ts_sec after.
  void WriteDump(const void* entry, WireWriter* out) const;
  // Appends num and (TRAINING) optimizer state to |dump| (parsed from
  // WriteDump); the caller sets id and time.
  void Save(const void* entry, EntryDump* dump) const;
  // Sets |entry| from |dump|: num must have DimSize() floats; optimizer
  // state is restored when the dump has it (TRAINING) and initialized
  // otherwise, so a serving checkpoint can seed training (the ops ask for
  // values_only then: CheckRestorableInto).
  Status Restore(const EntryDump& dump, void* entry) const;
  // Sets |entry| from the num and opt fields of an EntryDump record (its
  // bytes between id and last_update_ts_sec) by copying words, without
  // parsing, when they have exactly the shape WriteDump gives every entry
  // of this config: the same bytes but for the entry's words. Returns false
  // for any other shape (SERVING entries, state that is not plain words,
  // a dump without optimizer state): parse it and call Restore instead.
  bool ReadDump(const char* fields, size_t size, void* entry) const;
  // The size ReadDump reads (0: it reads nothing).
  size_t DumpFieldsBytes() const { return dump_template_.size(); }

  // Writes the checkpoint record of an entry: its EntryDump (id, num, opt,
  // last_update_ts_sec) serialized, fields in number order as protobuf
  // writes them.
  void WriteRecord(int64_t id, const void* entry, int64_t update_time,
                   WireWriter* out) const;
  // Sets |entry|, |id| and |update_time| from a record in WriteRecord's
  // layout without parsing it (TRAINING: when ReadDump can; SERVING: the
  // values, the optimizer state skipped), and |values_all_zero| when the
  // embedding is all zeros. False for any other record, and for every
  // record of a TRAINING entry restored kValuesOnly: ParseRecord it (with
  // the same state) and call Restore.
  bool ReadRecord(const char* record, size_t size, void* entry, int64_t* id,
                  uint64_t* update_time, bool* values_all_zero,
                  RestoredState state = RestoredState::kAll) const;

 private:
  struct Segment {
    int dim = 0;
    int num_offset = 0;         // float index of the segment's num
    int64_t data_offset = 0;    // byte offset of its state / compressed data
    int dump_offset = 0;        // its first SingleOptimizerDump
    int lr_offset = 0;          // its first learning rate
    std::unique_ptr<InitializerInterface> initializer;
    std::unique_ptr<OptimizerInterface> optimizer;
    std::unique_ptr<FloatCompressorInterface> compressor;
    // TRAINING lookups of a fixed_r8 / one_bit segment (else both null).
    std::unique_ptr<FixedR8Quantizer> fake_quantizer;
    std::unique_ptr<HashNet> hash_net;
    // HashNet's scale at hash_net_step_ (one_bit segments only).
    std::unique_ptr<std::atomic<float>> hash_net_scale;
  };

  EntryAccessor() = default;
  // Fills dump_template_ and dump_words_ when WriteDump copies every word
  // of an entry verbatim into a fixed layout and Restore inverts it.
  void BuildDumpTemplate();
  // Fill's transforms of the raw floats |num| of a TRAINING entry.
  void TransformLookup(float* num) const;
  // Raises hash_net_step_ to |global_step| if it is larger, and the scales
  // with it.
  void NoteHashNetStep(int64_t global_step) const;
  // Optimize of an entry with one_bit segments: their gradients pass
  // through HashNet's derivative first.
  void OptimizeThroughHashNet(void* entry, const float* grad,
                              const float* learning_rates,
                              int64_t global_step) const;

  bool serving_ = false;
  bool transforms_lookups_ = false;
  bool has_hash_net_ = false;
  // The largest global step Optimize has seen, which sets HashNet's scale
  // (raised under hash_net_mu_, read without it). Not in checkpoints (nor
  // was the original's scale): after a restore lookups use init_scale until
  // the first optimize.
  mutable std::atomic<int64_t> hash_net_step_{0};
  mutable std::mutex hash_net_mu_;
  int dim_ = 0;
  // The widest segment's dim, and the widest one_bit segment's: what the
  // scratch of a serving AssignAdd and of OptimizeThroughHashNet holds.
  int max_segment_dim_ = 0;
  int max_hash_net_dim_ = 0;
  int slice_size_ = 0;
  int dump_size_ = 0;
  int64_t size_bytes_ = 0;
  size_t opt_dump_bytes_ = 0;  // a new entry's opt message length
  // WriteDump of an entry, and where each 4-byte word of the entry lands in
  // it: (byte offset in the dump, word index in the entry), by offset.
  // Empty when ReadDump cannot be used.
  std::string dump_template_;
  std::vector<std::pair<uint32_t, uint32_t>> dump_words_;
  // The template's bytes that are not entry words: 0xff where a record
  // must match it, 0 under the words; both padded to 8-byte chunks.
  std::vector<uint64_t> template_chunks_;
  std::vector<uint64_t> template_mask_;
  std::vector<Segment> segments_;
  // SERVING: the bytes of an entry of zeros, which Init copies.
  std::vector<char> zero_entry_;
};

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_ENTRY_ACCESSOR_H_
