#include "common/filesystem.h"

#include <system_error>

namespace xfer::common {
namespace {

std::string describe(const std::string& op, const std::string& path, int error_number) {
  return op + " " + path + ": " + std::error_code(error_number, std::generic_category()).message() +
         " (errno " + std::to_string(error_number) + ")";
}

}  // namespace

FilesystemError::FilesystemError(std::string op, std::string path, int error_number)
    : std::runtime_error(describe(op, path, error_number)),
      op_(std::move(op)),
      path_(std::move(path)),
      error_number_(error_number) {}

std::string parent_dir(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void write_file_atomically(Filesystem& fs, const std::string& path, std::string_view data) {
  const std::string temp = path + ".tmp";
  try {
    auto file = fs.open_writable(temp, Filesystem::OpenMode::kTruncate);
    file->append(data);
    file->sync();
    file->close();
    fs.rename(temp, path);
  } catch (const FilesystemError&) {
    try {
      if (fs.exists(temp)) fs.remove(temp);
    } catch (const FilesystemError&) {
      // The first error is the one worth reporting; a leftover .tmp file is
      // removed by the next recovery.
    }
    throw;
  }
  // After the rename `path` already holds the new content for every reader;
  // a failure here only means it may not survive a crash, so there is
  // nothing to clean up.
  fs.sync_dir(parent_dir(path));
}

}  // namespace xfer::common
