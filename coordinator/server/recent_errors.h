// The last few service-side failures (a checkpoint that could not be written,
// a history append that failed), kept so `coordctl status` shows them to a
// person instead of leaving them in the coordinator's log only.
// Thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace xfer::coordinator::server {

class RecentErrors {
 public:
  // Default: the last 20.
  explicit RecentErrors(std::size_t capacity = 20) : capacity_(capacity) {}

  // Logs `message` at error level and keeps it, prefixed with the UTC time.
  void add(const std::string& message);
  std::vector<std::string> list() const;

 private:
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<std::string> errors_;  // GUARDED_BY(mutex_), oldest first
};

}  // namespace xfer::coordinator::server
