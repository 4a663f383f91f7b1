#include "coordinator/server/run_registry.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "coordinator/dataset/cifar_format.h"

namespace xfer::coordinator::server {
namespace {

constexpr int kMaxWorldSize = 65536;
constexpr std::size_t kMaxConfigBytes = 1 << 20;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

RunError invalid(std::string message) {
  return {grpc::StatusCode::INVALID_ARGUMENT, std::move(message)};
}

// Whole seconds, rounded up: a rank silent for 60.2 s of a 60 s timeout
// reads "61 s", never "60 s".
std::int64_t whole_seconds_up(std::chrono::steady_clock::duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return (ms + 999) / 1000;
}

}  // namespace

std::optional<std::string> invalid_run_name(const std::string& name) {
  static const std::regex kForm(R"(^[A-Za-z0-9._-]{1,128}$)");
  if (std::regex_match(name, kForm)) return std::nullopt;
  return "run name '" + name + "' is invalid (expected 1-128 characters from [A-Za-z0-9._-])";
}

RunRegistry::RunRegistry(std::filesystem::path state_dir, SteadyClock clock)
    : file_(state_dir / "runs.json"),
      clock_(clock ? std::move(clock) : SteadyClock(&std::chrono::steady_clock::now)) {
  std::error_code ec;
  if (!std::filesystem::exists(file_, ec)) return;
  std::ifstream in(file_);
  std::stringstream text;
  text << in.rdbuf();
  v1::ListRunsResponse stored;
  const auto status = google::protobuf::util::JsonStringToMessage(text.str(), &stored);
  if (!status.ok()) {
    throw std::runtime_error(file_.string() + ": cannot be parsed as the run registry (" +
                             std::string(status.message()) + ")");
  }
  const TimePoint opened = clock_();
  int running = 0;
  for (const auto& run : stored.runs()) {
    runs_[run.name()] = run;
    if (run.state() == v1::RUN_STATE_RUNNING) {
      // Its ranks count from now: they could not reach a coordinator that was down.
      liveness_[run.name()] = fresh_liveness(run, opened);
      ++running;
    }
  }
  spdlog::info("run registry: {} runs ({} running) from {}", runs_.size(), running, file_.string());
}

RunRegistry::Liveness RunRegistry::fresh_liveness(const v1::Run& run, TimePoint since) {
  Liveness live;
  live.attempt = run.attempt();
  live.last_heard.assign(static_cast<std::size_t>(std::max(run.world_size(), 1)), since);
  return live;
}

void RunRegistry::persist_locked() const {
  v1::ListRunsResponse all;
  for (const auto& [name, run] : runs_) *all.add_runs() = run;
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(all, &json, options);
  dataset::write_file_atomically(file_, std::vector<std::uint8_t>(json.begin(), json.end()));
}

std::variant<v1::Run, RunError> RunRegistry::start(const v1::StartRunRequest& request) {
  if (auto problem = invalid_run_name(request.name())) return invalid("StartRun: " + *problem);
  if (request.world_size() < 1 || request.world_size() > kMaxWorldSize) {
    return invalid("StartRun: world_size " + std::to_string(request.world_size()) +
                   " is out of range (expected 1.." + std::to_string(kMaxWorldSize) + ")");
  }
  if (request.config_json().size() > kMaxConfigBytes) {
    return invalid("StartRun: config_json has " + std::to_string(request.config_json().size()) +
                   " bytes (expected at most " + std::to_string(kMaxConfigBytes) + ")");
  }
  if (!request.config_json().empty() && !nlohmann::json::accept(request.config_json())) {
    return invalid("StartRun: config_json is not valid JSON");
  }
  v1::Run run;
  std::function<void(const v1::Run&)> listener;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = runs_.find(request.name());
    if (it == runs_.end()) {
      run.set_name(request.name());
      run.set_attempt(1);
      run.add_events("started with world size " + std::to_string(request.world_size()));
    } else {
      run = it->second;
      if (run.dataset() != request.dataset()) {
        return RunError{grpc::StatusCode::FAILED_PRECONDITION,
                        "StartRun: run '" + request.name() + "' was started on dataset '" +
                            run.dataset() + "', not '" + request.dataset() +
                            "' (expected the same dataset on resume, or a new run name)"};
      }
      run.set_attempt(run.attempt() + 1);
      run.add_events("resumed (attempt " + std::to_string(run.attempt()) + ") from state " +
                     v1::RunState_Name(run.state()) + " with world size " +
                     std::to_string(request.world_size()));
    }
    run.set_dataset(request.dataset());
    run.set_world_size(request.world_size());
    run.set_config_json(request.config_json());
    run.set_state(v1::RUN_STATE_RUNNING);
    run.set_started_unix_ms(now_unix_ms());
    run.set_ended_unix_ms(0);
    run.clear_message();
    runs_[run.name()] = run;
    liveness_[run.name()] = fresh_liveness(run, clock_());
    persist_locked();
    listener = listener_;
  }
  spdlog::info("run {}: {}", run.name(), run.events(run.events_size() - 1));
  if (listener) listener(run);
  return run;
}

std::optional<v1::Run> RunRegistry::get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = runs_.find(name);
  if (it == runs_.end()) return std::nullopt;
  return it->second;
}

std::vector<v1::Run> RunRegistry::list() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<v1::Run> result;
  for (const auto& [name, run] : runs_) result.push_back(run);
  return result;
}

std::variant<v1::Run, RunError> RunRegistry::end(const v1::EndRunRequest& request) {
  if (request.state() != v1::RUN_STATE_COMPLETED && request.state() != v1::RUN_STATE_FAILED &&
      request.state() != v1::RUN_STATE_PREEMPTED) {
    return invalid("EndRun: state " + v1::RunState_Name(request.state()) +
                   " does not end an attempt (expected RUN_STATE_COMPLETED, RUN_STATE_FAILED or "
                   "RUN_STATE_PREEMPTED)");
  }
  v1::Run run;
  std::function<void(const v1::Run&)> listener;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = runs_.find(request.name());
    if (it == runs_.end()) {
      return RunError{grpc::StatusCode::NOT_FOUND, "EndRun: no run '" + request.name() + "'"};
    }
    if (it->second.state() != v1::RUN_STATE_RUNNING) {
      if (it->second.state() == request.state()) return it->second;  // a retried EndRun
      return RunError{grpc::StatusCode::FAILED_PRECONDITION,
                      "EndRun: run '" + request.name() + "' already ended as " +
                          v1::RunState_Name(it->second.state())};
    }
    run = it->second;
    run.set_state(request.state());
    run.set_ended_unix_ms(now_unix_ms());
    run.set_message(request.message());
    const char* what = request.state() == v1::RUN_STATE_COMPLETED ? "completed"
                       : request.state() == v1::RUN_STATE_FAILED  ? "failed"
                                                                  : "preempted";
    run.add_events(what + (request.message().empty() ? std::string() : ": " + request.message()));
    it->second = run;
    liveness_.erase(run.name());
    persist_locked();
    listener = listener_;
  }
  spdlog::info("run {}: {}", run.name(), run.events(run.events_size() - 1));
  if (listener) listener(run);
  return run;
}

std::variant<v1::HeartbeatResponse, RunError> RunRegistry::heartbeat(
    const v1::HeartbeatRequest& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = runs_.find(request.run());
  if (it == runs_.end()) {
    return RunError{grpc::StatusCode::NOT_FOUND, "Heartbeat: no run '" + request.run() + "'"};
  }
  const v1::Run& run = it->second;
  if (request.world_size() < 1 || request.rank() < 0 || request.rank() >= request.world_size()) {
    return invalid("Heartbeat: rank " + std::to_string(request.rank()) + " is outside world size " +
                   std::to_string(request.world_size()) + " (expected 0 <= rank < world_size)");
  }
  if (request.attempt() < 1 || request.attempt() > run.attempt()) {
    return invalid("Heartbeat: attempt " + std::to_string(request.attempt()) + " of run '" +
                   run.name() + "' is invalid (expected the attempt StartRun returned, 1.." +
                   std::to_string(run.attempt()) + ")");
  }
  v1::HeartbeatResponse response;
  response.set_state(run.state());
  response.set_attempt(run.attempt());
  response.set_message(run.message());
  // A rank of an earlier attempt, or of a run that ended: the answer tells
  // it so, and it is not counted.
  if (request.attempt() != run.attempt() || run.state() != v1::RUN_STATE_RUNNING) return response;
  if (request.world_size() != run.world_size()) {
    return invalid("Heartbeat: world_size " + std::to_string(request.world_size()) +
                   " differs from run '" + run.name() + "' world size " +
                   std::to_string(run.world_size()) + " (attempt " + std::to_string(run.attempt()) +
                   ")");
  }
  Liveness& live = liveness_[run.name()];
  if (live.attempt != run.attempt() ||
      live.last_heard.size() != static_cast<std::size_t>(run.world_size())) {
    live = fresh_liveness(run, clock_());
  }
  live.last_heard[static_cast<std::size_t>(request.rank())] = clock_();
  return response;
}

std::vector<v1::Run> RunRegistry::fail_silent_runs(std::chrono::milliseconds timeout) {
  std::vector<v1::Run> failed;
  std::function<void(const v1::Run&)> listener;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const TimePoint now = clock_();
    for (auto& [name, run] : runs_) {
      if (run.state() != v1::RUN_STATE_RUNNING) continue;
      auto live = liveness_.find(name);
      if (live == liveness_.end() || live->second.attempt != run.attempt() ||
          live->second.last_heard.size() != static_cast<std::size_t>(run.world_size())) {
        liveness_[name] = fresh_liveness(run, now);  // not expected: start counting now
        continue;
      }
      // Ranks past the timeout, the longest silent first.
      std::vector<std::pair<TimePoint, int>> silent;
      const auto& heard = live->second.last_heard;
      for (std::size_t r = 0; r < heard.size(); ++r) {
        if (now - heard[r] > timeout) silent.emplace_back(heard[r], static_cast<int>(r));
      }
      if (silent.empty()) continue;
      std::sort(silent.begin(), silent.end());
      std::string message = "rank " + std::to_string(silent[0].second) + " of " +
                            std::to_string(run.world_size()) + " not heard from for " +
                            std::to_string(whole_seconds_up(now - silent[0].first)) +
                            " s (attempt " + std::to_string(run.attempt()) + ", rank timeout " +
                            std::to_string(whole_seconds_up(timeout)) + " s)";
      constexpr std::size_t kNamedAtMost = 8;
      for (std::size_t i = 1; i < silent.size() && i < kNamedAtMost; ++i) {
        message += (i == 1 ? "; also silent: rank " : ", rank ") +
                   std::to_string(silent[i].second) + " (" +
                   std::to_string(whole_seconds_up(now - silent[i].first)) + " s)";
      }
      if (silent.size() > kNamedAtMost) {
        message += " and " + std::to_string(silent.size() - kNamedAtMost) + " more";
      }
      run.set_state(v1::RUN_STATE_FAILED);
      run.set_ended_unix_ms(now_unix_ms());
      run.set_message(message);
      run.add_events("failed: " + message);
      liveness_.erase(live);
      failed.push_back(run);
    }
    if (!failed.empty()) persist_locked();
    listener = listener_;
  }
  for (const auto& run : failed) {
    spdlog::warn("run {}: marked FAILED: {}", run.name(), run.message());
    if (listener) listener(run);
  }
  return failed;
}

void RunRegistry::set_listener(std::function<void(const v1::Run&)> listener) {
  std::lock_guard<std::mutex> lock(mutex_);
  listener_ = std::move(listener);
}

}  // namespace xfer::coordinator::server
