// The runs a coordinator knows, kept durable in STATE_DIR/runs.json (written
// atomically: temporary file, fsync, rename) so a restarted coordinator
// remembers them.
//
// Thread-safe: every method takes the registry's mutex.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::server {

// A request the registry refuses; `code` is the gRPC status to return.
struct RunError {
  int code;  // grpc::StatusCode
  std::string message;
};

class RunRegistry {
 public:
  // Loads STATE_DIR/runs.json if present. Throws std::runtime_error naming
  // the file when it exists but cannot be parsed.
  explicit RunRegistry(std::filesystem::path state_dir);

  // Starts `request.name`, or resumes it (attempt + 1, state RUNNING) when it
  // exists. The caller has validated the dataset name.
  std::variant<v1::Run, RunError> start(const v1::StartRunRequest& request);
  std::optional<v1::Run> get(const std::string& name) const;
  std::vector<v1::Run> list() const;
  std::variant<v1::Run, RunError> end(const v1::EndRunRequest& request);

  // Called (outside the lock) after every state change.
  void set_listener(std::function<void(const v1::Run&)> listener);

 private:
  void persist_locked() const;

  const std::filesystem::path file_;
  mutable std::mutex mutex_;
  std::map<std::string, v1::Run> runs_;           // GUARDED_BY(mutex_)
  std::function<void(const v1::Run&)> listener_;  // GUARDED_BY(mutex_)
};

// Checks a run name: 1-128 characters of [A-Za-z0-9._-]. Returns the
// problem, or nothing when valid.
std::optional<std::string> invalid_run_name(const std::string& name);

}  // namespace xfer::coordinator::server
