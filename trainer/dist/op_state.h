// Completion state shared by a communicator's worker and the Work handles
// that wait on it. Internal to trainer/dist.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

#include "trainer/dist/communicator.h"

namespace xfer::trainer::dist {

class OpState {
 public:
  // Marks the operation done; a non-empty `error` makes it failed. Wakes
  // every waiter. Called once.
  void finish(const std::string& error) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = error;
      finished_ = true;
    }
    done_.notify_all();
  }

  bool finished() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return finished_;
  }

  // True when finished in time, false on timeout; throws CollectiveError
  // with the worker's message when the operation failed.
  bool wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!done_.wait_for(lock, timeout, [&] { return finished_; })) return false;
    if (!error_.empty()) throw CollectiveError(error_);
    return true;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable done_;
  bool finished_ = false;  // GUARDED_BY(mutex_)
  std::string error_;      // GUARDED_BY(mutex_)
};

// "12.3" for log lines and errors.
inline std::string format_seconds(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f", seconds);
  return text;
}

}  // namespace xfer::trainer::dist
