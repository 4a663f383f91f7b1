// An append-only file of text lines that survives crashes: the metrics
// history of one run.
//
// Every append writes one line and fsyncs before returning, so a line the
// caller was told about is on disk. A crash can leave only the last line torn
// (a prefix without its '\n'); open() cuts such a tail off and logs it. The
// report it held was never acknowledged, so its sender retries it.
//
// Not thread-safe: the owner (MetricsStore) serialises access.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace xfer::coordinator::metrics {

class HistoryFile {
 public:
  // Opens `path` for appending, creating it (and fsyncing its directory so
  // the new name is durable) if missing. Stores in `lines` every complete
  // line already there, in order, without the '\n'. An unterminated last
  // line is logged as a warning and truncated away before this returns.
  // Throws MetricsError(kIo) naming the path and the OS error.
  static std::unique_ptr<HistoryFile> open(const std::filesystem::path& path,
                                           std::vector<std::string>* lines);

  HistoryFile(const HistoryFile&) = delete;
  HistoryFile& operator=(const HistoryFile&) = delete;
  ~HistoryFile();

  // Appends `line` and '\n', then fsyncs. REQUIRES: `line` holds no '\n'.
  // On failure the file is cut back to its previous length (and synced) so
  // no torn line stays behind, and MetricsError(kIo) is thrown; the append
  // may be retried. If that repair fails too, the file is marked broken and
  // every later append throws until the process restarts and reloads it.
  void append(std::string_view line);

  const std::filesystem::path& path() const { return path_; }
  // Bytes in the file: every line appended or loaded so far.
  std::int64_t size() const { return size_; }

 private:
  HistoryFile(std::filesystem::path path, int fd, std::int64_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}

  std::filesystem::path path_;
  int fd_ = -1;
  std::int64_t size_ = 0;
  bool broken_ = false;
};

}  // namespace xfer::coordinator::metrics
