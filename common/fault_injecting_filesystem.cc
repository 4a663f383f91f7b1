#include "common/fault_injecting_filesystem.h"

#include <algorithm>

namespace xfer::common {

// Forwards to the wrapped file through the owner, which applies the faults
// and keeps the synced length.
class FaultInjectingFilesystem::File final : public WritableFile {
 public:
  File(FaultInjectingFilesystem& owner, std::string path, std::unique_ptr<WritableFile> base)
      : owner_(owner), path_(std::move(path)), base_(std::move(base)) {}

  void append(std::string_view data) override { owner_.file_append(path_, *base_, data); }
  void sync() override { owner_.file_sync(path_, *base_); }
  void close() override { owner_.file_close(path_, *base_); }

 private:
  FaultInjectingFilesystem& owner_;
  const std::string path_;
  const std::unique_ptr<WritableFile> base_;
};

FaultInjectingFilesystem::FaultInjectingFilesystem(std::shared_ptr<Filesystem> base)
    : base_(std::move(base)) {
  if (!base_)
    throw std::invalid_argument("FaultInjectingFilesystem: the wrapped filesystem is null");
}

void FaultInjectingFilesystem::fail(Op op, PathMatch match, int error_number) {
  std::lock_guard<std::mutex> lock(mu_);
  fail_rules_.push_back({op, std::move(match), error_number});
}

void FaultInjectingFilesystem::tear_writes(PathMatch match, std::size_t keep_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  tear_rules_.emplace_back(std::move(match), keep_bytes);
}

void FaultInjectingFilesystem::set_free_space(std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  free_space_ = bytes;
}

void FaultInjectingFilesystem::clear_faults() {
  std::lock_guard<std::mutex> lock(mu_);
  fail_rules_.clear();
  tear_rules_.clear();
  free_space_.reset();
}

std::uint64_t FaultInjectingFilesystem::mutating_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

void FaultInjectingFilesystem::crash_at(std::uint64_t n) {
  if (n == 0) throw std::invalid_argument("crash_at(0): the first call is 1");
  std::lock_guard<std::mutex> lock(mu_);
  crash_countdown_ = n;
}

bool FaultInjectingFilesystem::crashed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crashed_;
}

std::string FaultInjectingFilesystem::crash_point() const {
  std::lock_guard<std::mutex> lock(mu_);
  return crash_point_;
}

bool FaultInjectingFilesystem::count_call(const std::string& what) {
  if (crashed_) die(what);
  ++calls_;
  if (crash_countdown_ > 0 && --crash_countdown_ == 0) {
    crashed_ = true;
    crash_point_ = what;
    return true;
  }
  return false;
}

void FaultInjectingFilesystem::die(const std::string& what) {
  throw SimulatedCrash("simulated crash (at call " + std::to_string(calls_) + ", " + crash_point_ +
                       "); not done: " + what);
}

void FaultInjectingFilesystem::check_fail(Op op, const char* op_name, const std::string& path) {
  for (const auto& rule : fail_rules_) {
    if (rule.op == op && rule.match(path)) {
      throw FilesystemError(std::string(op_name) + " (injected)", path, rule.error_number);
    }
  }
}

FaultInjectingFilesystem::FileState FaultInjectingFilesystem::state_of(const std::string& path) {
  const auto it = files_.find(path);
  if (it != files_.end()) return it->second;
  const std::uint64_t size = base_->file_size(path);
  return {size, size};
}

void FaultInjectingFilesystem::overwrite(const std::string& path, const std::string& bytes) {
  auto file = base_->open_writable(path, OpenMode::kTruncate);
  file->append(bytes);
  file->sync();
  file->close();
}

std::unique_ptr<WritableFile> FaultInjectingFilesystem::open_writable(const std::string& path,
                                                                      OpenMode mode) {
  std::lock_guard<std::mutex> lock(mu_);
  if (count_call("open " + path)) die("open " + path);
  check_fail(Op::kOpen, "open", path);
  const bool existed = base_->exists(path);
  auto base = base_->open_writable(path, mode);
  if (!existed) {
    pending_.push_back({DirOp::Kind::kCreate, parent_dir(path), path, {}, std::nullopt, {}});
    files_[path] = {0, 0};
  } else if (mode == OpenMode::kTruncate) {
    files_[path] = {0, 0};
  } else {
    files_[path] = state_of(path);
  }
  return std::make_unique<File>(*this, path, std::move(base));
}

void FaultInjectingFilesystem::file_append(const std::string& path, WritableFile& base,
                                           std::string_view data) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& state = files_[path];
  const std::string what = "append " + std::to_string(data.size()) + " bytes to " + path;
  if (count_call(what)) {
    const std::string_view torn = data.substr(0, data.size() / 2);
    base.append(torn);
    state.size += torn.size();
    die(what);
  }
  check_fail(Op::kAppend, "write", path);
  for (const auto& [match, keep] : tear_rules_) {
    if (match(path) && keep < data.size()) {
      base.append(data.substr(0, keep));
      state.size += keep;
      throw FilesystemError("write (injected torn write)", path, EIO);
    }
  }
  if (free_space_ && data.size() > *free_space_) {
    const std::string_view fits = data.substr(0, static_cast<std::size_t>(*free_space_));
    base.append(fits);
    state.size += fits.size();
    *free_space_ = 0;
    throw FilesystemError("write (injected full disk)", path, ENOSPC);
  }
  base.append(data);
  state.size += data.size();
  if (free_space_) *free_space_ -= data.size();
}

void FaultInjectingFilesystem::file_sync(const std::string& path, WritableFile& base) {
  std::lock_guard<std::mutex> lock(mu_);
  if (count_call("fsync " + path)) die("fsync " + path);
  check_fail(Op::kSync, "fsync", path);
  base.sync();
  FileState& state = files_[path];
  state.synced = state.size;
}

void FaultInjectingFilesystem::file_close(const std::string& path, WritableFile& base) {
  std::lock_guard<std::mutex> lock(mu_);
  if (count_call("close " + path)) die("close " + path);
  check_fail(Op::kClose, "close", path);
  base.close();
}

std::string FaultInjectingFilesystem::read_file(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) die("read " + path);
  return base_->read_file(path);
}

std::string FaultInjectingFilesystem::read_range(const std::string& path, std::uint64_t offset,
                                                 std::size_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) die("read " + path);
  return base_->read_range(path, offset, length);
}

std::uint64_t FaultInjectingFilesystem::file_size(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) die("stat " + path);
  return base_->file_size(path);
}

bool FaultInjectingFilesystem::exists(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) die("stat " + path);
  return base_->exists(path);
}

void FaultInjectingFilesystem::rename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string what = "rename " + from + " -> " + to;
  if (count_call(what)) die(what);
  check_fail(Op::kRename, "rename", from);
  DirOp op{DirOp::Kind::kRename, parent_dir(to), to, from, std::nullopt, {}};
  if (base_->exists(to)) {
    op.saved_bytes = base_->read_file(to);
    op.saved_state = state_of(to);
  }
  const FileState moved = state_of(from);
  base_->rename(from, to);
  files_.erase(from);
  files_[to] = moved;
  pending_.push_back(std::move(op));
}

void FaultInjectingFilesystem::remove(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (count_call("remove " + path)) die("remove " + path);
  check_fail(Op::kRemove, "unlink", path);
  DirOp op{DirOp::Kind::kRemove, parent_dir(path), path, {}, std::nullopt, {}};
  if (base_->exists(path)) {
    op.saved_bytes = base_->read_file(path);
    op.saved_state = state_of(path);
  }
  base_->remove(path);
  files_.erase(path);
  pending_.push_back(std::move(op));
}

void FaultInjectingFilesystem::sync_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  if (count_call("fsync directory " + dir)) die("fsync directory " + dir);
  check_fail(Op::kSyncDir, "fsync directory", dir);
  base_->sync_dir(dir);
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                [&](const DirOp& op) { return op.dir == dir; }),
                 pending_.end());
}

std::vector<std::string> FaultInjectingFilesystem::list_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  if (crashed_) die("list " + dir);
  return base_->list_dir(dir);
}

void FaultInjectingFilesystem::create_dirs(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  if (count_call("mkdir " + dir)) die("mkdir " + dir);
  check_fail(Op::kCreateDirs, "mkdir", dir);
  base_->create_dirs(dir);
}

void FaultInjectingFilesystem::crash(const CrashOptions& options) {
  std::lock_guard<std::mutex> lock(mu_);
  if (options.lose_unsynced_dir_ops) {
    for (auto op = pending_.rbegin(); op != pending_.rend(); ++op) {
      switch (op->kind) {
        case DirOp::Kind::kCreate:
          if (base_->exists(op->path)) base_->remove(op->path);
          files_.erase(op->path);
          break;
        case DirOp::Kind::kRename: {
          const auto it = files_.find(op->path);
          if (it != files_.end()) {
            files_[op->from] = it->second;
            files_.erase(op->path);
          }
          base_->rename(op->path, op->from);
          if (op->saved_bytes) {
            overwrite(op->path, *op->saved_bytes);
            files_[op->path] = op->saved_state;
          }
          break;
        }
        case DirOp::Kind::kRemove:
          if (op->saved_bytes) {
            overwrite(op->path, *op->saved_bytes);
            files_[op->path] = op->saved_state;
          }
          break;
      }
    }
  }
  if (options.drop_unsynced_data) {
    for (const auto& [path, state] : files_) {
      if (!base_->exists(path)) continue;
      const std::string bytes = base_->read_file(path);
      if (bytes.size() > state.synced) {
        overwrite(path, bytes.substr(0, static_cast<std::size_t>(state.synced)));
      }
    }
  }
  files_.clear();
  pending_.clear();
  crashed_ = false;
  crash_countdown_ = 0;
  crash_point_.clear();
  calls_ = 0;
}

}  // namespace xfer::common
