#include "trainer/train/heartbeat.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "coordinator/client/coordinator_client.h"
#include "coordinator/client/errors.h"

namespace xfer::trainer::train {
namespace {

namespace client = coordinator::client;

// The coordinator is down, restarting or slow: the next heartbeat retries.
bool is_passing(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::CANCELLED;
}

}  // namespace

std::optional<std::string> heartbeat_stop_reason(const v1::HeartbeatResponse& answer,
                                                 const HeartbeatOptions& options) {
  if (answer.attempt() != options.attempt) {
    return "run '" + options.run + "' is at attempt " + std::to_string(answer.attempt()) + " (" +
           v1::RunState_Name(answer.state()) + ") at the coordinator, not this job's attempt " +
           std::to_string(options.attempt) + ": another job resumed it, so this one stops";
  }
  if (answer.state() == v1::RUN_STATE_FAILED) {
    return "the coordinator marked run '" + options.run + "' (attempt " +
           std::to_string(options.attempt) + ") FAILED" +
           (answer.message().empty() ? std::string() : ": " + answer.message()) +
           "; this job stops (continue the run with --resume latest)";
  }
  return std::nullopt;
}

HeartbeatSender::HeartbeatSender(HeartbeatOptions options, Send send, OnStop on_stop)
    : options_(std::move(options)),
      send_(std::move(send)),
      on_stop_(std::move(on_stop)),
      thread_([this] { loop(); }) {}

HeartbeatSender::~HeartbeatSender() { stop(); }

void HeartbeatSender::stop() {
  std::lock_guard<std::mutex> join_lock(join_mutex_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int HeartbeatSender::sent() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return sent_;
}

void HeartbeatSender::loop() {
  auto next = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    const bool go_on = beat();
    lock.lock();
    if (!go_on) return;
    next += options_.every;
    // Behind (a slow call): start again from now rather than in a burst.
    next = std::max(next, std::chrono::steady_clock::now());
    wake_.wait_until(lock, next, [this] { return stopping_; });
  }
}

bool HeartbeatSender::beat() {
  v1::HeartbeatRequest request;
  request.set_run(options_.run);
  request.set_rank(options_.rank);
  request.set_world_size(options_.world_size);
  request.set_attempt(options_.attempt);
  v1::HeartbeatResponse answer;
  try {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++sent_;
    }
    answer = send_(request);
  } catch (const client::RpcError& e) {
    if (is_passing(e.code())) {
      spdlog::debug("heartbeat of run {} rank {}: {} (ignored; the next one retries)", options_.run,
                    options_.rank, e.what());
    } else if (!warned_) {
      warned_ = true;
      spdlog::warn("heartbeat of run {} rank {} refused: {} (heartbeats go on)", options_.run,
                   options_.rank, e.what());
    }
    return true;
  } catch (const std::exception& e) {
    spdlog::debug("heartbeat of run {} rank {}: {} (ignored)", options_.run, options_.rank,
                  e.what());
    return true;
  }
  if (auto reason = heartbeat_stop_reason(answer, options_)) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return false;  // the job is ending by itself
    }
    on_stop_(*reason);
    return false;
  }
  if (answer.state() != v1::RUN_STATE_RUNNING) {
    // This attempt ended the run itself (rank 0: COMPLETED or PREEMPTED).
    spdlog::debug("heartbeat of run {} rank {}: the run is {}; heartbeats stop", options_.run,
                  options_.rank, v1::RunState_Name(answer.state()));
    return false;
  }
  return true;
}

std::unique_ptr<HeartbeatSender> start_job_heartbeat(client::CoordinatorClient& client,
                                                     const TrainOptions& options,
                                                     const dist::World& world, int attempt) {
  if (options.heartbeat_every_s <= 0.0) return nullptr;
  HeartbeatOptions o;
  o.run = options.run_name;
  o.rank = world.rank();
  o.world_size = world.size();
  o.attempt = attempt;
  o.every = std::chrono::milliseconds(std::llround(options.heartbeat_every_s * 1000.0));
  // Long enough for a busy coordinator, short enough that a stop() at the
  // end of the job never waits long.
  o.deadline =
      std::clamp(o.every, std::chrono::milliseconds(1000), std::chrono::milliseconds(5000));
  const std::chrono::milliseconds deadline = o.deadline;
  const std::string where = world.where();
  return std::make_unique<HeartbeatSender>(
      std::move(o),
      [&client, deadline](const v1::HeartbeatRequest& request) {
        return client.heartbeat(request, deadline);
      },
      [where](const std::string& reason) { dist::abort_job(where + ": " + reason, 1); });
}

}  // namespace xfer::trainer::train
