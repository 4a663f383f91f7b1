#include "trainer/train/feature_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace xfer::trainer::train {
namespace {

constexpr std::int64_t kChunkRows = 1024;

std::string errno_text(int error) { return std::system_category().message(error); }

}  // namespace

FeatureCache::FeatureCache(std::int64_t width, std::int64_t memory_budget_bytes,
                           std::filesystem::path spill_path)
    : width_(width),
      row_bytes_(width * static_cast<std::int64_t>(sizeof(float))),
      memory_rows_max_(width > 0 && memory_budget_bytes >= 0
                           ? memory_budget_bytes /
                                 (width * static_cast<std::int64_t>(sizeof(float)))
                           : 0),
      spill_path_(std::move(spill_path)) {
  if (width < 1) {
    throw std::invalid_argument("feature cache: row width " + std::to_string(width) +
                                " (expected >= 1)");
  }
  if (memory_budget_bytes < 0) {
    throw std::invalid_argument("feature cache: memory budget " +
                                std::to_string(memory_budget_bytes) + " bytes (expected >= 0)");
  }
}

FeatureCache::~FeatureCache() {
  if (spill_fd_ >= 0) {
    ::close(spill_fd_);
    std::error_code ignored;
    std::filesystem::remove(spill_path_, ignored);
  }
}

float* FeatureCache::memory_row(std::int64_t slot) {
  return chunks_[static_cast<std::size_t>(slot / kChunkRows)].get() + (slot % kChunkRows) * width_;
}

bool FeatureCache::find(std::int64_t key, float* out) {
  const bool found = read(key, out);
  ++(found ? hits_ : misses_);
  return found;
}

bool FeatureCache::read(std::int64_t key, float* out) {
  const auto it = index_.find(key);
  if (it == index_.end()) return false;
  const Location& at = it->second;
  if (!at.on_disk) {
    std::memcpy(out, memory_row(at.slot), static_cast<std::size_t>(row_bytes_));
    return true;
  }
  auto* dst = reinterpret_cast<char*>(out);
  std::int64_t done = 0;
  while (done < row_bytes_) {
    const ssize_t n = ::pread(spill_fd_, dst + done, static_cast<std::size_t>(row_bytes_ - done),
                              static_cast<off_t>(at.slot * row_bytes_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw std::runtime_error(
          "feature cache: cannot read row " + std::to_string(at.slot) + " of " +
          spill_path_.string() + ": " +
          (n == 0 ? std::string("unexpected end of file") : errno_text(errno)));
    }
    done += n;
  }
  return true;
}

void FeatureCache::put(std::int64_t key, const float* row) {
  if (index_.count(key) != 0) return;
  Location at;
  if (rows_in_memory_ < memory_rows_max_) {
    if (rows_in_memory_ % kChunkRows == 0) {
      // The last chunk holds only what the budget allows.
      const std::int64_t rows = std::min(kChunkRows, memory_rows_max_ - rows_in_memory_);
      chunks_.push_back(std::make_unique<float[]>(static_cast<std::size_t>(rows * width_)));
      chunk_rows_total_ += rows;
    }
    at.slot = rows_in_memory_++;
    std::memcpy(memory_row(at.slot), row, static_cast<std::size_t>(row_bytes_));
  } else {
    if (spill_fd_ < 0) {
      spill_fd_ = ::open(spill_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (spill_fd_ < 0) {
        throw std::runtime_error("feature cache: cannot create the spill file " +
                                 spill_path_.string() + ": " + errno_text(errno) +
                                 " (set --cache-dir to a writable folder, or raise --cache-mb)");
      }
    }
    at.on_disk = true;
    at.slot = rows_on_disk_;
    const auto* src = reinterpret_cast<const char*>(row);
    std::int64_t done = 0;
    while (done < row_bytes_) {
      const ssize_t n = ::pwrite(spill_fd_, src + done, static_cast<std::size_t>(row_bytes_ - done),
                                 static_cast<off_t>(at.slot * row_bytes_ + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        throw std::runtime_error("feature cache: cannot write to the spill file " +
                                 spill_path_.string() + ": " + errno_text(errno));
      }
      done += n;
    }
    ++rows_on_disk_;
  }
  index_.emplace(key, at);
  keys_.push_back(key);
}

FeatureCacheStats FeatureCache::stats() const {
  FeatureCacheStats s;
  s.rows = static_cast<std::int64_t>(keys_.size());
  s.rows_on_disk = rows_on_disk_;
  s.bytes_in_memory = chunk_rows_total_ * row_bytes_;
  s.hits = hits_;
  s.misses = misses_;
  return s;
}

}  // namespace xfer::trainer::train
