#include "common/posix_filesystem.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace xfer::common {
namespace {

// Retries a system call interrupted by a signal.
template <typename Call>
auto retry_eintr(Call call) {
  decltype(call()) result;
  do {
    result = call();
  } while (result < 0 && errno == EINTR);
  return result;
}

// Owns a descriptor for the span of one read-side call.
class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  ~Descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int open_or_throw(const std::string& path, int flags, const char* op) {
  const int fd = retry_eintr([&] { return ::open(path.c_str(), flags | O_CLOEXEC, 0644); });
  if (fd < 0) throw FilesystemError(op, path, errno);
  return fd;
}

// pread until `length` bytes or the end of the file.
std::string pread_all(int fd, const std::string& path, std::uint64_t offset, std::size_t length) {
  std::string data(length, '\0');
  std::size_t done = 0;
  while (done < length) {
    const ssize_t n = retry_eintr([&] {
      return ::pread(fd, data.data() + done, length - done, static_cast<off_t>(offset + done));
    });
    if (n < 0) throw FilesystemError("read", path, errno);
    if (n == 0) break;  // end of file
    done += static_cast<std::size_t>(n);
  }
  data.resize(done);
  return data;
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void append(std::string_view data) override {
    require_open("write");
    while (!data.empty()) {
      const ssize_t n = retry_eintr([&] { return ::write(fd_, data.data(), data.size()); });
      if (n < 0) throw FilesystemError("write", path_, errno);
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void sync() override {
    require_open("fsync");
    if (retry_eintr([&] { return ::fsync(fd_); }) < 0) throw FilesystemError("fsync", path_, errno);
  }

  void close() override {
    require_open("close");
    const int fd = fd_;
    fd_ = -1;
    // Not retried on EINTR: on Linux the descriptor is released either way,
    // and retrying could close a descriptor another thread just opened.
    if (::close(fd) < 0) throw FilesystemError("close", path_, errno);
  }

 private:
  void require_open(const char* op) const {
    if (fd_ < 0) throw FilesystemError(op, path_ + " (already closed)", EBADF);
  }

  const std::string path_;
  int fd_;
};

}  // namespace

std::unique_ptr<WritableFile> PosixFilesystem::open_writable(const std::string& path,
                                                             OpenMode mode) {
  const int flags = O_WRONLY | O_CREAT | (mode == OpenMode::kTruncate ? O_TRUNC : O_APPEND);
  return std::make_unique<PosixWritableFile>(path, open_or_throw(path, flags, "open"));
}

std::string PosixFilesystem::read_file(const std::string& path) {
  Descriptor fd(open_or_throw(path, O_RDONLY, "open"));
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) throw FilesystemError("fstat", path, errno);
  std::string data = pread_all(fd.get(), path, 0, static_cast<std::size_t>(st.st_size));
  // A file that grew while we read it: take the rest too.
  for (;;) {
    std::string more = pread_all(fd.get(), path, data.size(), 1 << 16);
    if (more.empty()) break;
    data += more;
  }
  return data;
}

std::string PosixFilesystem::read_range(const std::string& path, std::uint64_t offset,
                                        std::size_t length) {
  Descriptor fd(open_or_throw(path, O_RDONLY, "open"));
  return pread_all(fd.get(), path, offset, length);
}

std::uint64_t PosixFilesystem::file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) throw FilesystemError("stat", path, errno);
  return static_cast<std::uint64_t>(st.st_size);
}

bool PosixFilesystem::exists(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  throw FilesystemError("stat", path, errno);
}

void PosixFilesystem::rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) < 0) {
    throw FilesystemError("rename", from + " -> " + to, errno);
  }
}

void PosixFilesystem::remove(const std::string& path) {
  if (::unlink(path.c_str()) < 0) throw FilesystemError("unlink", path, errno);
}

void PosixFilesystem::sync_dir(const std::string& dir) {
  Descriptor fd(open_or_throw(dir, O_RDONLY | O_DIRECTORY, "open directory"));
  if (retry_eintr([&] { return ::fsync(fd.get()); }) < 0) {
    throw FilesystemError("fsync directory", dir, errno);
  }
}

std::vector<std::string> PosixFilesystem::list_dir(const std::string& dir) {
  DIR* handle = ::opendir(dir.c_str());
  if (handle == nullptr) throw FilesystemError("opendir", dir, errno);
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(handle);
    if (entry == nullptr) {
      const int error_number = errno;
      ::closedir(handle);
      if (error_number != 0) throw FilesystemError("readdir", dir, error_number);
      return names;
    }
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
}

void PosixFilesystem::create_dirs(const std::string& dir) {
  if (dir.empty()) throw FilesystemError("mkdir", "(empty path)", EINVAL);
  // Each prefix ending before a '/', then the whole path.
  for (std::size_t end = dir.find('/', 1);; end = dir.find('/', end + 1)) {
    const std::string prefix = dir.substr(0, end);
    if (::mkdir(prefix.c_str(), 0755) < 0 && errno != EEXIST) {
      throw FilesystemError("mkdir", prefix, errno);
    }
    if (end == std::string::npos) break;
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) < 0) throw FilesystemError("stat", dir, errno);
  if (!S_ISDIR(st.st_mode)) throw FilesystemError("mkdir", dir, ENOTDIR);
}

std::shared_ptr<Filesystem> posix_filesystem() {
  static const std::shared_ptr<Filesystem> instance = std::make_shared<PosixFilesystem>();
  return instance;
}

}  // namespace xfer::common
