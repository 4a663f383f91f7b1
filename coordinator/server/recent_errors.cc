#include "coordinator/server/recent_errors.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

namespace xfer::coordinator::server {

void RecentErrors::add(const std::string& message) {
  spdlog::error("{}", message);
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &utc);
  std::lock_guard<std::mutex> lock(mutex_);
  errors_.push_back(std::string(stamp) + " " + message);
  while (errors_.size() > capacity_) errors_.pop_front();
}

std::vector<std::string> RecentErrors::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {errors_.begin(), errors_.end()};
}

}  // namespace xfer::coordinator::server
