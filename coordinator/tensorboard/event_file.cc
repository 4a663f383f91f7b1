#include "coordinator/tensorboard/event_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "coordinator/tensorboard/record_io.h"

namespace xfer::coordinator::tensorboard {
namespace {

namespace fs = std::filesystem;

std::string errno_text(int error) { return std::strerror(error); }

// Writes all of `bytes` to `fd`; returns 0 or the errno that stopped it.
int write_all(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

std::int64_t now_unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Closes now; returns 0 or the errno of close().
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

}  // namespace

::tensorboard::Event file_version_event(double wall_time) {
  ::tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_file_version(kFileVersion);
  return event;
}

::tensorboard::Event scalars_event(double wall_time, std::int64_t step,
                                   const std::vector<Scalar>& scalars) {
  ::tensorboard::Event event;
  event.set_wall_time(wall_time);
  event.set_step(step);
  auto* summary = event.mutable_summary();
  for (const Scalar& scalar : scalars) {
    auto* value = summary->add_value();
    value->set_tag(scalar.tag);
    value->set_simple_value(static_cast<float>(scalar.value));
  }
  return event;
}

std::string event_file_name(std::int64_t unix_seconds, const std::string& host, int pid) {
  return "events.out.tfevents." + std::to_string(unix_seconds) + "." + host + "." +
         std::to_string(pid);
}

bool is_event_file_name(const std::string& name) {
  return name.find("tfevents") != std::string::npos;
}

EventFileWriter::EventFileWriter(fs::path dir, std::string host, int pid)
    : dir_(std::move(dir)), host_(std::move(host)), pid_(pid) {}

std::string EventFileWriter::create_file(int* fd) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return dir_.string() + ": cannot create the run's event directory: " + ec.message();
  // O_EXCL: never append to a file another process (or an earlier writer of
  // this one, in the same second) started. A name taken gets a suffix.
  const std::string base = event_file_name(now_unix_seconds(), host_, pid_);
  for (int attempt = 0; attempt < 100; ++attempt) {
    const fs::path candidate = dir_ / (attempt == 0 ? base : base + "." + std::to_string(attempt));
    *fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (*fd >= 0) {
      path_ = candidate;
      return "";
    }
    if (errno != EEXIST) return candidate.string() + ": cannot create: " + errno_text(errno);
  }
  return (dir_ / base).string() + ": cannot create: 100 files of that name exist already";
}

std::string EventFileWriter::append(const std::vector<::tensorboard::Event>& events) {
  std::string bytes;
  int raw_fd = -1;
  if (!path_.empty()) {
    raw_fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    // Someone removed the file (or the whole run directory): start a new one
    // rather than fail every epoch from now on.
    if (raw_fd < 0 && errno == ENOENT)
      path_.clear();
    else if (raw_fd < 0)
      return path_.string() + ": cannot open for appending: " + errno_text(errno);
  }
  if (path_.empty()) {
    if (std::string problem = create_file(&raw_fd); !problem.empty()) return problem;
    bytes = frame_record(
        file_version_event(events.empty() ? 0.0 : events.front().wall_time()).SerializeAsString());
  }
  Fd fd(raw_fd);
  for (const auto& event : events) bytes += frame_record(event.SerializeAsString());

  struct stat before {};
  if (::fstat(fd.get(), &before) != 0) {
    return path_.string() + ": cannot stat: " + errno_text(errno);
  }
  int error = write_all(fd.get(), bytes);
  if (error == 0) error = fd.close();
  if (error == 0) return "";

  std::string problem = path_.string() + ": cannot append " + std::to_string(bytes.size()) +
                        " bytes: " + errno_text(error);
  // Take back the torn tail, or TensorBoard would stop reading at it; a
  // brand-new file that failed is removed (it holds no good record).
  if (before.st_size == 0) {
    std::error_code ignored;
    fs::remove(path_, ignored);
    path_.clear();
  } else if (::truncate(path_.c_str(), before.st_size) != 0) {
    problem += "; cannot truncate the torn tail (" + errno_text(errno) +
               "), so the next epoch starts a new file";
    path_.clear();
  }
  return problem;
}

EventFileContents read_event_file(const fs::path& path) {
  EventFileContents contents;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    contents.problem = path.string() + ": cannot be read";
    return contents;
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  const ParsedRecords parsed = parse_records(bytes.str());
  for (std::size_t i = 0; i < parsed.records.size(); ++i) {
    ::tensorboard::Event event;
    if (!event.ParseFromString(parsed.records[i])) {
      contents.problem =
          path.string() + ": record " + std::to_string(i + 1) + " is not a tensorboard.Event";
      return contents;
    }
    contents.events.push_back(std::move(event));
  }
  if (!parsed.problem.empty()) contents.problem = path.string() + ": " + parsed.problem;
  return contents;
}

}  // namespace xfer::coordinator::tensorboard
