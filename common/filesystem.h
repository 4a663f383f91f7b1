// The filesystem durable writes go through (leveldb's Env, cut down to what
// they need): the checkpoint store, the coordinator's run reports, coordctl's
// HTML report. PosixFilesystem is the real one; FaultInjectingFilesystem
// (fault_injecting_filesystem.h) wraps another one so tests can make writes
// tear, fsync fail, the disk fill up, renames fail and the machine crash.
//
// Errors: every method throws FilesystemError on failure and returns
// normally on success; there are no partial successes to check for.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace xfer::common {

// A failed filesystem call: the operation, the path and the errno text, e.g.
// "write /ckpt/ckpt-00000003.blob.tmp: No space left on device (errno 28)".
class FilesystemError : public std::runtime_error {
 public:
  FilesystemError(std::string op, std::string path, int error_number);

  const std::string& op() const { return op_; }
  const std::string& path() const { return path_; }
  // The errno value (ENOENT, ENOSPC, EIO, ...).
  int error_number() const { return error_number_; }

 private:
  std::string op_;
  std::string path_;
  int error_number_;
};

// A file open for writing. Data is durable only after sync() returned.
// Not thread-safe: one writer per file.
class WritableFile {
 public:
  virtual ~WritableFile() = default;  // closes if still open, ignoring errors

  // Writes all of `data` at the end of the file (retrying short writes).
  virtual void append(std::string_view data) = 0;
  // fsync: the file's data and size reach the disk.
  virtual void sync() = 0;
  // Closes the file; reports the error close() may return. Call once.
  virtual void close() = 0;
};

class Filesystem {
 public:
  enum class OpenMode {
    kTruncate,  // create, or empty an existing file
    kAppend,    // create, or keep the content and write after it
  };

  virtual ~Filesystem() = default;

  virtual std::unique_ptr<WritableFile> open_writable(const std::string& path, OpenMode mode) = 0;
  // The whole file.
  virtual std::string read_file(const std::string& path) = 0;
  // Up to `length` bytes from `offset` (fewer at the end of the file).
  virtual std::string read_range(const std::string& path, std::uint64_t offset,
                                 std::size_t length) = 0;
  virtual std::uint64_t file_size(const std::string& path) = 0;
  // False for a missing path; throws for any other failure (EACCES, ...).
  virtual bool exists(const std::string& path) = 0;
  // Atomically replaces `to`. Durable only after sync_dir() of its folder.
  virtual void rename(const std::string& from, const std::string& to) = 0;
  // Unlinks a file. Durable only after sync_dir() of its folder.
  virtual void remove(const std::string& path) = 0;
  // fsync of a folder: the names created, renamed and removed in it are
  // durable once this returns.
  virtual void sync_dir(const std::string& dir) = 0;
  // The names (not paths) in `dir`, without "." and "..", in no set order.
  virtual std::vector<std::string> list_dir(const std::string& dir) = 0;
  // mkdir -p; an existing folder is fine.
  virtual void create_dirs(const std::string& dir) = 0;
};

// Writes `data` to `path` the durable way: `path + ".tmp"`, fsync, rename
// onto `path`, fsync of the folder. On failure removes the temporary file
// (best effort) and rethrows: `path` then holds its previous content.
void write_file_atomically(Filesystem& fs, const std::string& path, std::string_view data);

// The folder part of `path` ("." for a bare name).
std::string parent_dir(const std::string& path);

}  // namespace xfer::common
