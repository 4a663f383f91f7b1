#include "coordinator/metrics/history_file.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "coordinator/metrics/metrics_types.h"

namespace xfer::coordinator::metrics {
namespace {

[[noreturn]] void io_error(const std::filesystem::path& path, const std::string& what, int err) {
  throw MetricsError(MetricsError::Code::kIo,
                     path.string() + ": " + what + ": " + std::strerror(err));
}

// Makes a newly created directory entry durable.
void sync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) io_error(dir, "cannot open directory to sync it", errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) io_error(dir, "fsync of directory failed", err);
}

std::string read_all(int fd, const std::filesystem::path& path) {
  std::string data;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(data.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      io_error(path, "read failed", errno);
    }
    if (n == 0) return data;
    data.append(buffer, static_cast<std::size_t>(n));
  }
}

}  // namespace

std::unique_ptr<HistoryFile> HistoryFile::open(const std::filesystem::path& path,
                                               std::vector<std::string>* lines) {
  const bool existed = std::filesystem::exists(path);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) io_error(path, "cannot open history file", errno);
  std::unique_ptr<HistoryFile> file(new HistoryFile(path, fd, 0));
  if (!existed) sync_directory(path.has_parent_path() ? path.parent_path() : ".");

  const std::string data = read_all(fd, path);
  std::size_t begin = 0;
  for (std::size_t nl = data.find('\n'); nl != std::string::npos; nl = data.find('\n', begin)) {
    lines->emplace_back(data, begin, nl - begin);
    begin = nl + 1;
  }
  if (begin < data.size()) {
    spdlog::warn(
        "{}: the last line ({} bytes from offset {}) has no newline: a write torn by a crash; "
        "dropping it (its report was never acknowledged, so its rank retries it)",
        path.string(), data.size() - begin, begin);
    if (::ftruncate(fd, static_cast<off_t>(begin)) != 0) {
      io_error(path, "cannot truncate the torn last line", errno);
    }
    if (::fsync(fd) != 0) io_error(path, "fsync after truncating the torn last line", errno);
  }
  file->size_ = static_cast<std::int64_t>(begin);
  return file;
}

HistoryFile::~HistoryFile() {
  if (fd_ >= 0) ::close(fd_);
}

void HistoryFile::append(std::string_view line) {
  if (broken_) {
    throw MetricsError(MetricsError::Code::kIo,
                       path_.string() +
                           ": an earlier failed append could not be undone; refusing to append "
                           "until the coordinator restarts and reloads the file");
  }
  std::string record(line);
  record.push_back('\n');

  std::size_t written = 0;
  int err = 0;
  std::string failure;
  while (written < record.size()) {
    const ssize_t n = ::write(fd_, record.data() + written, record.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      failure = "append failed";
      break;
    }
    written += static_cast<std::size_t>(n);
  }
  if (failure.empty() && ::fsync(fd_) != 0) {
    err = errno;
    failure = "fsync after append failed";
  }
  if (failure.empty()) {
    size_ += static_cast<std::int64_t>(record.size());
    return;
  }
  // Undo the partial line so the next append does not glue onto it.
  if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0 || ::fsync(fd_) != 0) {
    broken_ = true;
    spdlog::error("{}: could not undo a failed append ({}); no further appends until restart",
                  path_.string(), std::strerror(errno));
  }
  io_error(path_, failure, err);
}

}  // namespace xfer::coordinator::metrics
