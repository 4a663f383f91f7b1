// The runs a coordinator knows, kept durable in STATE_DIR/runs.json (written
// atomically: temporary file, fsync, rename) so a restarted coordinator
// remembers them.
//
// Liveness (not durable): for every RUNNING run, when each rank
// 0..world_size-1 of the current attempt was last heard from (Heartbeat).
// A rank not heard from yet counts from the run's StartRun, or, for a run
// loaded from runs.json, from the registry's construction: a coordinator
// that was down never blames the ranks for its own absence.
// fail_silent_runs() marks FAILED a RUNNING run one of whose ranks has been
// silent for longer than the timeout.
//
// Thread-safe: every method takes the registry's mutex.
#pragma once

#include <chrono>
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
  using SteadyClock = std::function<std::chrono::steady_clock::time_point()>;

  // Loads STATE_DIR/runs.json if present. Throws std::runtime_error naming
  // the file when it exists but cannot be parsed. `clock` times liveness;
  // default std::chrono::steady_clock::now (tests pass a fake one).
  explicit RunRegistry(std::filesystem::path state_dir, SteadyClock clock = {});

  // Starts `request.name`, or resumes it (attempt + 1, state RUNNING) when it
  // exists. The caller has validated the dataset name.
  std::variant<v1::Run, RunError> start(const v1::StartRunRequest& request);
  std::optional<v1::Run> get(const std::string& name) const;
  std::vector<v1::Run> list() const;
  std::variant<v1::Run, RunError> end(const v1::EndRunRequest& request);

  // One rank says it is alive. NOT_FOUND for an unknown run; INVALID_ARGUMENT
  // for an attempt below 1 or ahead of the run's, and (in the run's current
  // attempt) for a world size other than the run's or a rank outside it. A
  // rank of another attempt, or of a run that is no longer RUNNING, is not
  // recorded: the answer (the run's state, attempt and message) tells it to
  // stop.
  std::variant<v1::HeartbeatResponse, RunError> heartbeat(const v1::HeartbeatRequest& request);

  // Marks FAILED (message, event, one warning line) every RUNNING run whose
  // longest-silent rank has not been heard from for more than `timeout`.
  // Returns the runs it failed. REQUIRES: timeout > 0.
  std::vector<v1::Run> fail_silent_runs(std::chrono::milliseconds timeout);

  // Called (outside the lock) after every state change.
  void set_listener(std::function<void(const v1::Run&)> listener);

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  // When each rank of a RUNNING run's current attempt was last heard from.
  struct Liveness {
    int attempt = 0;
    std::vector<TimePoint> last_heard;  // one per rank
  };

  void persist_locked() const;
  // Liveness of a RUNNING run counting from `since` for every rank.
  static Liveness fresh_liveness(const v1::Run& run, TimePoint since);

  const std::filesystem::path file_;
  const SteadyClock clock_;
  mutable std::mutex mutex_;
  std::map<std::string, v1::Run> runs_;           // GUARDED_BY(mutex_)
  std::map<std::string, Liveness> liveness_;      // GUARDED_BY(mutex_); RUNNING runs only
  std::function<void(const v1::Run&)> listener_;  // GUARDED_BY(mutex_)
};

// Checks a run name: 1-128 characters of [A-Za-z0-9._-]. Returns the
// problem, or nothing when valid.
std::optional<std::string> invalid_run_name(const std::string& name);

}  // namespace xfer::coordinator::server
