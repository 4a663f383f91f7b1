#include "trainer/evaluation/report_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "trainer/evaluation/report_format.h"

namespace xfer::trainer::evaluation {
namespace {

namespace fs = std::filesystem;

// RFC 4180: a field with a comma, a double quote or a line break is enclosed
// in double quotes, and each inner double quote is doubled.
std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char ch : text) {
    if (ch == '"') out += '"';
    out += ch;
  }
  out += '"';
  return out;
}

// Shortest text that reads back as the same double ("0.5", not "0.500000").
std::string number(double value) {
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, result.ptr);
}

[[noreturn]] void io_error(const std::string& what, const fs::path& path, int error) {
  throw std::runtime_error(what + " " + path.string() + ": " + std::strerror(error));
}

// Writes `text` to `path` via a temporary file in the same directory (so the
// rename stays on one filesystem and is atomic). The temporary name is
// unique per process and call, so concurrent writers never share one.
void write_file_atomically(const fs::path& path, const std::string& text) {
  static std::atomic<unsigned> sequence{0};
  const fs::path temp =
      path.parent_path() / ("." + path.filename().string() + ".tmp." + std::to_string(::getpid()) +
                            "." + std::to_string(sequence.fetch_add(1)));
  const std::string what = "cannot write " + path.string() + ":";
  const auto fail = [&](const std::string& step, int fd) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    io_error(what + " " + step, temp, error);
  };
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("open", -1);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write", fd);
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("fsync", fd);
  if (::close(fd) != 0) fail("close", -1);
  if (::rename(temp.c_str(), path.c_str()) != 0) fail("rename", -1);
}

// Makes the renames durable. Some filesystems cannot fsync a directory
// (EINVAL); the files themselves are already synced, so that is not an error.
void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) io_error("cannot open report directory", dir, errno);
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int error = errno;
    ::close(fd);
    io_error("cannot fsync report directory", dir, error);
  }
  ::close(fd);
}

}  // namespace

std::string classes_csv(const EvaluationReport& report) {
  validate_report(report);
  std::string out = "index,label,precision,recall,f1,support\n";
  for (std::size_t c = 0; c < report.classes.size(); ++c) {
    const ClassScores& s = report.classes[c];
    out += std::to_string(c) + "," + csv_field(report.labels[c]) + "," + number(s.precision) + "," +
           number(s.recall) + "," + number(s.f1) + "," + std::to_string(s.support) + "\n";
  }
  return out;
}

std::string confusion_csv(const EvaluationReport& report) {
  validate_report(report);
  const auto n = static_cast<std::size_t>(report.num_classes);
  std::string out = "true\\predicted";
  for (const std::string& label : report.labels) out += "," + csv_field(label);
  out += "\n";
  for (std::size_t t = 0; t < n; ++t) {
    out += csv_field(report.labels[t]);
    for (std::size_t p = 0; p < n; ++p) out += "," + std::to_string(report.confusion[t * n + p]);
    out += "\n";
  }
  return out;
}

void write_report_files(const EvaluationReport& report, const fs::path& dir) {
  if (dir.empty()) {
    throw std::invalid_argument("write_report_files: dir is empty, expected a directory path");
  }
  // Render everything first: an invalid report fails before touching disk.
  const std::string json = to_json(report);
  const std::string classes = classes_csv(report);
  const std::string confusion = confusion_csv(report);

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw std::runtime_error("cannot create report directory " + dir.string() + ": " +
                             ec.message());
  }
  if (!fs::is_directory(dir, ec)) {
    throw std::runtime_error("cannot write report files into " + dir.string() +
                             ": not a directory");
  }
  write_file_atomically(dir / "report.json", json);
  write_file_atomically(dir / "classes.csv", classes);
  write_file_atomically(dir / "confusion.csv", confusion);
  sync_directory(dir);
}

}  // namespace xfer::trainer::evaluation
