// What the multi hash table checkpoints (checkpoint.h) and the hash filter
// checkpoints (hash_filter/filter_checkpoint.h) share about their files: a
// set of files "<base>-SSSSS-of-NNNNN", one per shard, beside a basename;
// temporaries "<final name>-tmp-<save id>" a save writes before renaming
// them; listing and deleting a basename's files; the text of save ids and
// times; and small Status and logging helpers. Which bases a checkpoint has
// (a table checkpoint's data and ".meta" files, a filter's one kind) stays
// with each format.
//
// No TensorFlow includes: files come from a FileSystem.
#ifndef MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_SHARDED_FILES_H_
#define MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_SHARDED_FILES_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "monolith/native_training/runtime/hash_table/file_system.h"
#include "monolith/native_training/runtime/hash_table/record_file.h"
#include "monolith/native_training/runtime/hash_table/status.h"

namespace monolith {
namespace hash_table {

// Receives progress lines and warnings (e.g. LOG(INFO) in a kernel). May be
// empty.
using LogFn = std::function<void(const std::string&)>;

// Hands |line| to |log| unless it is empty.
void Log(const LogFn& log, const std::string& line);

// |status| with |prefix| put before its message.
Status Prefixed(const std::string& prefix, const Status& status);

// |basename| as the directory to list and the prefix of its files' names.
struct SplitBasename {
  explicit SplitBasename(const std::string& basename);
  std::string Path(const std::string& name) const { return dir_prefix + name; }

  std::string dir;
  std::string prefix;
  std::string dir_prefix;  // what precedes a name in a path
};

// "<base>-SSSSS-of-NNNNN" (five digits each, zero-padded).
std::string ShardFileName(const std::string& base, int shard, int nshards);

// A file of a sharded set, from its name.
struct ShardName {
  int shard = 0;
  int nshards = 0;
  bool temp = false;        // "<final name>-tmp-<anything>"
  std::string temp_suffix;  // "-tmp-<anything>" of a temporary
};

// Whether |name| is "<prefix>-SSSSS-of-NNNNN" or
// "<prefix>-SSSSS-of-NNNNN-tmp-*" with SSSSS < NNNNN.
bool ParseShardFileName(std::string_view name, std::string_view prefix,
                        ShardName* file);

// The files of |sorted_names| (a listing of |split|'s directory, sorted)
// whose names |parse| (as for ListShardFiles) accepts, as (path, file).
template <typename File, typename Parse>
void ShardFilesNamed(const std::vector<std::string>& sorted_names,
                     const SplitBasename& split, const Parse& parse,
                     std::vector<std::pair<std::string, File>>* files) {
  files->clear();
  for (const std::string& name : sorted_names) {
    File file;
    if (parse(name, split.prefix, &file)) {
      files->emplace_back(split.Path(name), file);
    }
  }
}

// The files in |split|'s directory whose names |parse| accepts, as
// (path, file) in the order of their names. |parse| is
//   bool parse(std::string_view name, const std::string& prefix, File* file)
// (e.g. ParseShardFileName) and gets split.prefix.
template <typename File, typename Parse>
Status ListShardFiles(FileSystem* fs, const SplitBasename& split,
                      const Parse& parse,
                      std::vector<std::pair<std::string, File>>* files) {
  std::vector<std::string> names;
  MONOLITH_RETURN_IF_ERROR(fs->ListDirectory(split.dir, &names));
  std::sort(names.begin(), names.end());
  ShardFilesNamed(names, split, parse, files);
  return Status::OK();
}

// Deletes the files of ListShardFiles (File given explicitly) for which
// |why| (const char* why(const File&)) gives a reason (nullptr: kept),
// logging each with it (|what| says which they are where the listing
// fails). Failures are logged, not returned: leftovers are harmless to
// readers. In reverse name order, so a checkpoint's meta files
// ("t.meta-...") go before its data files ("t-..."): a kill meanwhile must
// not leave a meta temporary whose data temporary is gone (a reader pairs
// it with the final data file).
template <typename File, typename Parse, typename Why>
void DeleteShardFiles(FileSystem* fs, const SplitBasename& split,
                      const Parse& parse, const Why& why, const char* what,
                      const LogFn& log) {
  std::vector<std::pair<std::string, File>> files;
  const Status listed = ListShardFiles(fs, split, parse, &files);
  if (!listed.ok()) {
    Log(log, "Could not list the files of " + split.Path(split.prefix) +
                 " to delete those " + what + ": " + listed.message());
    return;
  }
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    const auto& [path, file] = *it;
    const char* reason = why(file);
    if (reason == nullptr) continue;
    const Status s = fs->DeleteFile(path);
    Log(log, s.ok() ? "Deleted " + path + " (" + reason + ")"
                    : "Could not delete " + path + " (" + reason +
                          "): " + s.message());
  }
}

constexpr char kInterruptedSaveReason[] = "left by an interrupted save";

// Deletes the temporaries at |split|: with one writer per basename, those
// of an interrupted save (File: a ShardName).
template <typename File, typename Parse>
void DeleteTemporaries(FileSystem* fs, const SplitBasename& split,
                       const Parse& parse, const LogFn& log) {
  DeleteShardFiles<File>(
      fs, split, parse,
      [](const File& file) {
        return file.temp ? kInterruptedSaveReason : nullptr;
      },
      kInterruptedSaveReason, log);
}

// Once a save of |nshards| at |split| has given its files their final
// names (a save's own, or the renames FinishInterruptedSave finished):
// deletes, from one listing taken once the folder is synced (a power loss
// must not keep the deletions and lose the renames that superseded them),
// the final files of other shard counts (|why|: superseded) and the
// temporaries left (interrupted saves', which that save supersedes; a
// save's start keeps them where no whole save is there to tell them by, as
// when the basename's first save was killed while writing). Fails,
// deleting nothing, where the folder cannot be synced. File: a ShardName.
template <typename File, typename Parse>
Status DeleteSupersededFiles(FileSystem* fs, const SplitBasename& split,
                             const Parse& parse, int nshards, const char* why,
                             const LogFn& log) {
  const Status synced = fs->SyncDirectory(split.dir);
  if (!synced.ok()) {
    return Prefixed("cannot make the renames in " + split.dir +
                        " durable (the files they supersede are kept): ",
                    synced);
  }
  DeleteShardFiles<File>(
      fs, split, parse,
      [nshards, why](const File& file) -> const char* {
        if (file.temp) return kInterruptedSaveReason;
        return file.nshards != nshards ? why : nullptr;
      },
      "superseded", log);
  return Status::OK();
}

// The time of a save at |split| of |nshards| shards that begins at |now|
// (microseconds): where final files of another shard count are there (a
// save's renames replace those of its own count), past the time of the save
// a reader takes there, which |newest_saved| (bool(int64_t*)) gives (false:
// none read). Readers choose between whole saves of two counts (the older
// one's files left where deleting them failed) by this time: the one saved
// last is read, whatever the clocks of the hosts that saved. |listed|: the
// files there (FinishInterruptedSave's listing, where it changed nothing),
// or none to list them here.
template <typename File, typename Parse, typename NewestSaved>
int64_t SaveTimeAfterOthers(
    FileSystem* fs, const SplitBasename& split, const Parse& parse,
    const std::optional<std::vector<std::pair<std::string, File>>>& listed,
    int nshards, int64_t now, const NewestSaved& newest_saved) {
  std::vector<std::pair<std::string, File>> listing;
  if (!listed.has_value() && !ListShardFiles(fs, split, parse, &listing).ok()) {
    return now;
  }
  bool other_counts = false;
  for (const auto& [path, file] : listed.has_value() ? *listed : listing) {
    other_counts = other_counts || (!file.temp && file.nshards != nshards);
  }
  int64_t newest = 0;
  if (!other_counts || !newest_saved(&newest) || newest < now) return now;
  return newest == std::numeric_limits<int64_t>::max() ? newest : newest + 1;
}

// A save that wrote temporaries at a basename and did not finish: killed
// while writing them (some are partial), or after (all are complete: it
// may have given some of them their final names already). Readers tell the
// two apart by reading the files; a complete one is rolled forward, since
// the final names it gave mix it with the save it replaces.
struct InterruptedSave {
  int nshards = 0;
  std::string temp_suffix;  // of its temporaries: TempSuffix(its save id)
  bool operator<(const InterruptedSave& other) const {
    return std::tie(nshards, temp_suffix) <
           std::tie(other.nshards, other.temp_suffix);
  }
};

// The interrupted saves whose temporaries are among |files| (as
// ListShardFiles gives them; File: a ShardName), and into |listed| every
// path of |files|.
template <typename File>
std::set<InterruptedSave> FindInterruptedSaves(
    const std::vector<std::pair<std::string, File>>& files,
    std::set<std::string>* listed) {
  std::set<InterruptedSave> saves;
  for (const auto& [path, file] : files) {
    listed->insert(path);
    if (file.temp) saves.insert({file.nshards, file.temp_suffix});
  }
  return saves;
}

// Where shard |shard| of |nshards| of the files "<base>-SSSSS-of-NNNNN" of
// the interrupted save |save| is: its temporary if |listed|, else the final
// name if |listed| (renamed already, or another save's: readers check),
// else "".
std::string InterruptedSavePath(const std::set<std::string>& listed,
                                const std::string& base, int shard,
                                const InterruptedSave& save);

// InvalidArgument ("<what> basename ...") unless |basename| can name a
// save's own files: not empty nor a folder, and, since its files are
// "<basename>[.meta]-SSSSS-of-NNNNN", neither ending in ".meta" nor
// holding "-SSSSS-of-NNNNN" (its files would be named as another
// basename's, which its save would overwrite or delete).
Status CheckSaveBasename(const std::string& what, const std::string& basename);

// Whether |status| is what a checkpoint's files say of themselves (missing,
// corrupt, of another save or configuration) rather than a failure to read
// them (I/O, permissions): a reader that cannot read a file cannot tell
// whether it holds the last whole save. A file system's own errors must not
// carry these codes but NotFound (TfFileSystem makes them Internal), nor
// NotFound for a file a listing named (ListedFileStatus).
bool IsFileContentError(const Status& status);

// |status| of opening or measuring |path|, which a listing of its folder
// named. A NotFound is not a missing file (IsFileContentError), read past
// for an older save: where a new listing lacks |path| (a save renamed or
// deleted it meanwhile, or the first listing was stale) it is Aborted,
// retried as a checkpoint that changed while it was read; where it still
// names it (a dangling link, a device gone), Internal.
Status ListedFileStatus(FileSystem* fs, const std::string& path,
                        Status status);

// RecordFileReader::Open of |path|, which a listing named (ListedFileStatus).
Status OpenListedRecordFile(FileSystem* fs, const std::string& path,
                            bool snappy,
                            std::unique_ptr<RecordFileReader>* reader);

// Whether the interrupted save |save| had begun renaming: some of |paths|
// (its files, as InterruptedSavePath placed them) have final names. Such a
// save wins over the final names whatever the save times: they mix it with
// the save it was replacing.
bool RenamesBegan(const std::vector<std::string>& paths,
                  const InterruptedSave& save);

// Whether a complete interrupted save is newer than the whole save its
// reader found at the final names: |began| (RenamesBegan: the final names
// mix it with the save it was replacing), or by save time, where the final
// save has an identity (the original's saves have none and are older than
// any of ours).
bool InterruptedSaveIsNewer(bool began, bool final_has_identity,
                            int64_t final_save_time,
                            int64_t interrupted_save_time);

// "interrupted while giving its N <what> their final names" or
// "interrupted after writing its N <what>, before renaming them".
std::string DescribeInterruption(bool renames_began, int nshards,
                                 const char* what);

// Gives the final names an interrupted save (whose files a reader checked
// to be one complete save) had not given yet: renames every path of
// |paths| that is a temporary of |save| to its final name, in order. The
// order is the save's own, so a kill meanwhile leaves a state of the same
// kind.
Status FinishRenames(FileSystem* fs, const std::vector<std::string>& paths,
                     const InterruptedSave& save, const LogFn& log);

// Before a save at |basename| deletes the temporaries there: finishes the
// renames of a save killed while renaming (or just before) whose
// temporaries hold it whole, since they may hold the only whole save there
// is. |read| reads the checkpoint at |basename| as a restore would: the
// save it reads (temp_suffix empty: the final names) and that save's
// files in its rename order. *temporaries_stale: whether temporaries left
// may be deleted (false where the checkpoint does not read, and where it
// deleted them itself with the files the renames it finished superseded,
// DeleteSupersededFiles). Fails
// where the files cannot be read (I/O, not content): they might hold the
// last whole save. *unchanged: the files at |basename| where it found no
// interrupted save (it changed nothing: SaveTimeAfterOthers takes them),
// else none. File, Parse: as for ListShardFiles.
template <typename File, typename Parse>
Status FinishInterruptedSave(
    FileSystem* fs, const std::string& basename, const Parse& parse,
    const std::function<Status(InterruptedSave* save,
                               std::vector<std::string>* paths)>& read,
    const LogFn& log, bool* temporaries_stale,
    std::optional<std::vector<std::pair<std::string, File>>>* unchanged) {
  *temporaries_stale = false;
  unchanged->reset();
  const SplitBasename split(basename);
  std::vector<std::pair<std::string, File>> files;
  const Status listed_status = ListShardFiles(fs, split, parse, &files);
  if (!listed_status.ok()) {
    // No directory yet: nothing to finish. Otherwise the save fails here,
    // before it could delete what it cannot see.
    return listed_status.code() == StatusCode::kNotFound ? Status::OK()
                                                         : listed_status;
  }
  std::set<std::string> listed;
  if (FindInterruptedSaves(files, &listed).empty()) {
    *unchanged = std::move(files);
    return Status::OK();
  }
  InterruptedSave save;
  std::vector<std::string> paths;
  const Status status = read(&save, &paths);
  if (!status.ok()) {
    if (!IsFileContentError(status)) {
      return Prefixed("cannot read " + basename +
                          " to tell whether an interrupted save there holds "
                          "the last whole save: ",
                      status);
    }
    Log(log, "Keeping the temporary files at " + basename +
                 " (the checkpoint there does not read: " + status.message() +
                 ")");
    return Status::OK();
  }
  *temporaries_stale = true;
  if (save.temp_suffix.empty()) return Status::OK();
  MONOLITH_RETURN_IF_ERROR(FinishRenames(fs, paths, save, log));
  MONOLITH_RETURN_IF_ERROR(DeleteSupersededFiles<File>(
      fs, split, parse, save.nshards,
      "superseded by the interrupted save whose renames were finished", log));
  // The temporaries went with them (any left, on a failed listing, go at
  // the end of the save).
  *temporaries_stale = false;
  return Status::OK();
}

// Microseconds since the Unix epoch.
int64_t NowMicros();

// Seconds of the steady clock since |start|.
double SecondsSince(std::chrono::steady_clock::time_point start);

// A random save id, mixed with |now_micros|.
uint64_t NewSaveId(int64_t now_micros);

// |save_id| as 16 hex digits, as file names and messages show it.
std::string SaveIdText(uint64_t save_id);

// "-tmp-<save id>": what the temporaries of save |save_id| add to their
// final names.
std::string TempSuffix(uint64_t save_id);

// A temporary is written as "<temporary>.partial" and renamed to its
// temporary name once closed, so every "...-tmp-<save id>" file is whole:
// readers take an interrupted save's temporaries for a save only then.
// ".partial" files are temporaries too, deleted with them.
std::string PartialName(const std::string& temp_path);

// Creates |temp_path| (see PartialName): |write| fills the file, which is
// then closed and renamed to |temp_path|.
Status WriteWholeFile(FileSystem* fs, const std::string& temp_path,
                      const std::function<Status(WritableFile*)>& write);

// Replaces |path| with |contents| whole or not at all (small records, e.g.
// a PS count): written to |temp_path| beside it (closed: the file system
// syncs local files), renamed over it, its folder (created where missing)
// synced. On an error |temp_path| is deleted and |path| is as it was,
// except after a failed sync of the folder: the rename was made, and
// |path| holds |contents|, maybe not durably; and after a failed rename
// that deleted |path| (TF's HDFS rename deletes the target first):
// |temp_path| is kept, holding |contents|, and the error names it.
// Callers give each write a temporary of its own, so that two writers of
// one path never write into one file (ReplaceFileTemporary).
Status ReplaceFile(FileSystem* fs, const std::string& path,
                   const std::string& temp_path, std::string_view contents);

// "<path>.tmp-<32 hex digits>" of the random |high| and |low| words: a
// ReplaceFile temporary of |path| named as Python's
// utils.write_file_atomically names its own, which the checkpoint
// clean-up deletes when a kill left it (save_utils._ASSET_TEMPORARY_RE).
std::string ReplaceFileTemporary(const std::string& path, uint64_t high,
                                 uint64_t low);

// "from save <id> (begun at Unix time <seconds>)".
std::string DescribeSaveId(uint64_t save_id, int64_t save_time_micros);

}  // namespace hash_table
}  // namespace monolith

#endif  // MONOLITH_NATIVE_TRAINING_RUNTIME_HASH_TABLE_SHARDED_FILES_H_
