// A Filesystem for tests that wraps another one and breaks it on demand, in
// the spirit of leveldb's FaultInjectionTestEnv: failed calls, torn writes, a
// full disk, and a simulated power loss that throws away whatever was not
// made durable (unsynced file data, and names created, renamed or removed in
// a folder that was not fsynced since).
//
// How the power loss is modelled. The wrapped filesystem holds what the page
// cache would hold. For every file written through this wrapper we track how
// many bytes were fsynced; for every create/rename/remove we keep an undo
// record (with the overwritten or removed file's bytes) until the folder is
// fsynced. crash() then rolls the wrapped filesystem back to the durable
// state: undo records are applied newest first, then files are cut to their
// synced length. Each of the two losses can be switched off, so a test can
// check every mix of "the kernel flushed it anyway" and "it was lost".
// Folders made by create_dirs() count as durable at once. A rename is
// undone as a unit when the folder of its target was not fsynced (our
// writers only rename within one folder).
//
// Thread-safety: every method takes one internal mutex (the calls into the
// wrapped filesystem happen under it). Files it hands out must not outlive
// it.
#pragma once

#include <cerrno>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/filesystem.h"

namespace xfer::common {

// Thrown by every call from the crash point on. Deliberately not a
// FilesystemError: code under test treats it as the process dying, not as an
// error to clean up after.
class SimulatedCrash : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class FaultInjectingFilesystem final : public Filesystem {
 public:
  // The calls that change the disk; only these are counted for crash_at().
  enum class Op { kOpen, kAppend, kSync, kClose, kRename, kRemove, kSyncDir, kCreateDirs };
  using PathMatch = std::function<bool(const std::string& path)>;

  explicit FaultInjectingFilesystem(std::shared_ptr<Filesystem> base);

  // ---- Faults. Each stays until clear_faults().
  // `op` on a path `match` accepts fails with `error_number` and changes
  // nothing. For kRename the path matched is the source.
  void fail(Op op, PathMatch match, int error_number = EIO);
  // An append to a matching path writes only its first `keep_bytes` bytes,
  // then fails with EIO (a torn write the caller is told about).
  void tear_writes(PathMatch match, std::size_t keep_bytes);
  // The disk has room for `bytes` more appended bytes; an append that does
  // not fit writes the part that does, then fails with ENOSPC.
  void set_free_space(std::uint64_t bytes);
  void clear_faults();

  // ---- Crashes.
  // Mutating calls made so far (since construction or the last crash()).
  std::uint64_t mutating_calls() const;
  // The n-th mutating call from now (1 = the next one) is where the machine
  // dies: it throws SimulatedCrash, and an append writes the first half of
  // its data before that (a torn write). Every later call throws too and
  // does nothing, until crash(). REQUIRES: n >= 1.
  void crash_at(std::uint64_t n);
  bool crashed() const;
  // The call the crash interrupted, e.g. "rename /d/a.tmp -> /d/a".
  std::string crash_point() const;

  struct CrashOptions {
    // Cut every file written through us back to its last fsynced length.
    bool drop_unsynced_data = true;
    // Undo creates, renames and removes whose folder was not fsynced since.
    bool lose_unsynced_dir_ops = true;
  };
  // Turns the wrapped filesystem into what a reboot would find, forgets all
  // tracking and lets calls through again. Usable with or without a crash
  // point having been reached (without one it is a power cut "now").
  void crash(const CrashOptions& options);

  // ---- Filesystem.
  std::unique_ptr<WritableFile> open_writable(const std::string& path, OpenMode mode) override;
  std::string read_file(const std::string& path) override;
  std::string read_range(const std::string& path, std::uint64_t offset,
                         std::size_t length) override;
  std::uint64_t file_size(const std::string& path) override;
  bool exists(const std::string& path) override;
  void rename(const std::string& from, const std::string& to) override;
  void remove(const std::string& path) override;
  void sync_dir(const std::string& dir) override;
  std::vector<std::string> list_dir(const std::string& dir) override;
  void create_dirs(const std::string& dir) override;

 private:
  class File;
  friend class File;

  struct FileState {
    std::uint64_t size = 0;    // bytes written
    std::uint64_t synced = 0;  // bytes known durable
  };
  // A name change not yet made durable by sync_dir(dir).
  struct DirOp {
    enum class Kind { kCreate, kRename, kRemove } kind;
    std::string dir;
    std::string path;  // created, removed, or the rename target
    std::string from;  // rename source
    // The file a rename replaced or a remove deleted, to bring it back.
    std::optional<std::string> saved_bytes;
    FileState saved_state;
  };
  struct FailRule {
    Op op;
    PathMatch match;
    int error_number;
  };

  // Counts one mutating call; returns true when it is the crash point.
  // Throws SimulatedCrash when the crash point has passed. REQUIRES: mu_ held.
  bool count_call(const std::string& what);
  // Throws the FilesystemError of the first matching rule. REQUIRES: mu_ held.
  void check_fail(Op op, const char* op_name, const std::string& path);
  [[noreturn]] void die(const std::string& what);
  // The tracked state of `path`, or "all of it durable" for a file we did not
  // write. REQUIRES: mu_ held.
  FileState state_of(const std::string& path);
  void overwrite(const std::string& path, const std::string& bytes);

  void file_append(const std::string& path, WritableFile& base, std::string_view data);
  void file_sync(const std::string& path, WritableFile& base);
  void file_close(const std::string& path, WritableFile& base);

  const std::shared_ptr<Filesystem> base_;
  mutable std::mutex mu_;
  std::map<std::string, FileState> files_;                     // GUARDED_BY(mu_)
  std::vector<DirOp> pending_;                                 // GUARDED_BY(mu_), oldest first
  std::vector<FailRule> fail_rules_;                           // GUARDED_BY(mu_)
  std::vector<std::pair<PathMatch, std::size_t>> tear_rules_;  // GUARDED_BY(mu_)
  std::optional<std::uint64_t> free_space_;                    // GUARDED_BY(mu_)
  std::uint64_t calls_ = 0;                                    // GUARDED_BY(mu_)
  std::uint64_t crash_countdown_ = 0;                          // GUARDED_BY(mu_), 0 = not armed
  bool crashed_ = false;                                       // GUARDED_BY(mu_)
  std::string crash_point_;                                    // GUARDED_BY(mu_)
};

}  // namespace xfer::common
