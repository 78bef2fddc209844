// Hash filter checkpoints, in the original Monolith's on-disk format: per
// split k of n = filter.split_num(), one file
//   <basename>-KKKKK-of-NNNNN
// an uncompressed TFRecord file (TF's RecordWriter framing, no compression)
// holding the HashFilterSplitMetaDump record and then the
// HashFilterSplitDataDump records exactly as Filter::Save emits them. The
// original's save and restore ops read and write these files, so
// checkpoints move both ways.
//
// Beyond the original (invisible to it):
// - A save is atomic as a set: every split is written under a temporary name
//   "<final name>-tmp-<save id>" (as "<temporary>.partial" until closed, so
//   temporaries are whole) and the final names are given only once all
//   splits are complete. Then files of an earlier save at the basename with
//   another split count are deleted. A save killed while renaming (all its
//   splits written) is read whole through its remaining temporaries, and
//   the next save finishes its renames before it deletes the temporaries
//   of interrupted saves: no kill loses the last save.
// - Every meta record carries the save's identity as protobuf fields the
//   proto does not declare (unknown fields, which the original's parser and
//   Filter::Restore skip): kIdentitySaveIdField (fixed64, random per save),
//   kIdentitySaveTimeField (int64 varint, Unix micros), kIdentitySplitField
//   and kIdentitySplitNumField (uint32 varints). Restore checks them, so it
//   reads one whole save or fails naming the file that does not belong (a
//   save killed between two renames, a file copied from elsewhere). Files
//   without them (the original's) restore as before. Should
//   HashFilterSplitMetaDump ever declare fields 100-103, they must have
//   these types and meanings.
//
// No TensorFlow includes: files come from a hash_table::FileSystem,
// parallelism from a hash_table::ParallelFor.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FILTER_CHECKPOINT_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FILTER_CHECKPOINT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "monolith/native_training/runtime/hash_filter/filter.h"
#include "monolith/native_training/runtime/hash_table/checkpoint.h"
#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_filter {

// Field numbers of the save identity inside each meta record (see above).
constexpr int kIdentitySaveIdField = 100;
constexpr int kIdentitySaveTimeField = 101;
constexpr int kIdentitySplitField = 102;
constexpr int kIdentitySplitNumField = 103;

// Split numbers are written with five digits.
constexpr int kMaxFilterCheckpointSplits = 99999;

// "<basename>-%05d-of-%05d" (split, nsplits), the original's file name.
std::string FilterCheckpointFileName(const std::string& basename, int split,
                                     int nsplits);

// Saves every split of |filter| to "<basename>-SSSSS-of-NNNNN" (NNNNN =
// split_num), creating the basename's directory. Splits are written in
// parallel through |parallel_for| (Filter::Save is const; the caller keeps
// the filter from being mutated meanwhile), each under a temporary name;
// all are renamed only once every split is written. First, a save killed
// while renaming whose temporaries hold it whole has its renames finished;
// then stale "<basename>-SSSSS-of-NNNNN-tmp-*" files are deleted (one
// writer per basename; kept, where the files there do not read, and the
// save fails where they cannot be read). Files of an earlier save with
// another split count are deleted after the renames. Filters with
// split_num() == 0 save nothing (OK). On an error before the first rename
// the temporaries of this save are deleted; after it, they are kept (they
// complete the save). |log| (may be empty) gets deletions and a summary
// line. The save's time is read from |now_micros| (tests set another
// clock), and is past that of the save a reader takes at the basename
// where files of another split count are there (readers choose between
// such saves by it, whatever the clocks of the hosts that saved).
hash_table::Status SaveFilterCheckpoint(
    hash_table::FileSystem* fs, const std::string& basename,
    const Filter& filter, const hash_table::ParallelFor& parallel_for,
    const hash_table::LogFn& log = nullptr,
    const std::function<int64_t()>& now_micros = hash_table::NowMicros);

// Restores a filter of |like|'s configuration from the files
// SaveFilterCheckpoint (or the original's save op) wrote at |basename|:
// restores into like.CopyForRestore() and, only once every split restored,
// hands the result to *restored (untouched on error; |like| is never
// changed). Splits restore in parallel through |parallel_for|. Filters
// with split_num() == 0 have nothing to restore: *restored =
// like.Clone(), no file is read.
// A save killed after writing all its splits, before or while renaming
// them, is newer than the files it was replacing and is read, through the
// temporaries it had not renamed yet (logged); partial temporaries of a
// save killed while writing are ignored.
//
// Errors:
//  - NotFound naming the basename: no "<basename>-SSSSS-of-NNNNN" file
//    (nor a whole interrupted save) or no directory.
//  - FailedPrecondition naming both counts: the checkpoint's split count
//    differs from like.split_num() (see |other_config|); or no split count
//    has all its files
//    (names the missing file); or complete sets of two split counts are
//    present and cannot be told apart by save time. (Where one count is
//    complete and another is not, e.g. a save killed while renaming or
//    while deleting a superseded save's files, the complete one is read;
//    where two are complete, the newer save.)
//  - DataLoss naming the file (and record index and byte offset): truncated
//    or corrupt records (CRC), unparsable records, records after the
//    split's data, a file of another save (save ids differ) or written as
//    another split.
//  - What Filter::Restore rejects (DataLoss for inconsistent dumps,
//    FailedPrecondition for another configuration), with the file and the
//    record prefixed.
//
// A checkpoint of a filter configured differently (another split count,
// capacity or fill rate) that is otherwise whole: with |other_config| null,
// the FailedPrecondition above; else it is not an error: *restored =
// like.Clone() (like's counts, under its configuration: the checkpoint's
// are not restored) and *other_config says what differs (it is cleared
// otherwise). The original kept the checkpoint's sizes, ignoring the new
// configuration.
hash_table::Status RestoreFilterCheckpoint(
    hash_table::FileSystem* fs, const std::string& basename, const Filter& like,
    const hash_table::ParallelFor& parallel_for,
    std::unique_ptr<Filter>* restored, const hash_table::LogFn& log = nullptr,
    std::string* other_config = nullptr);

// RestoreFilterCheckpoint into |into| (a filter of the configuration to
// restore, e.g. the live one's CopyForRestore(): its splits are
// overwritten), which spares a copy of the filter's memory. With
// |other_config| and a checkpoint of another configuration, *restored is
// null (|into| may be partly overwritten, and is dropped): the caller
// keeps its filter.
hash_table::Status RestoreFilterCheckpointInto(
    hash_table::FileSystem* fs, const std::string& basename,
    std::unique_ptr<Filter> into, const hash_table::ParallelFor& parallel_for,
    std::unique_ptr<Filter>* restored, const hash_table::LogFn& log = nullptr,
    std::string* other_config = nullptr);

}  // namespace hash_filter
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_FILTER_FILTER_CHECKPOINT_H_
