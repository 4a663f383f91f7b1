// The real filesystem: POSIX calls, O_CLOEXEC on every descriptor, EINTR and
// short reads/writes retried, errno text in every error.
#pragma once

#include <memory>

#include "common/filesystem.h"

namespace xfer::common {

// Stateless; thread-safe.
class PosixFilesystem final : public Filesystem {
 public:
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
};

// One shared instance (it holds no state).
std::shared_ptr<Filesystem> posix_filesystem();

}  // namespace xfer::common
