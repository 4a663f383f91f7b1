// A rank's heartbeats to the coordinator (RunService.Heartbeat), sent from a
// thread of its own so that training never waits for them.
//
// Why: a rank killed by SIGKILL (or lost with its node) cannot say so.
// mpirun ends the rest of the job, and nobody would tell the coordinator: the
// run would stay RUNNING forever. So every rank calls Heartbeat every
// --heartbeat-every seconds, and the coordinator marks FAILED a run one of
// whose ranks has been silent for its --rank-timeout (docs/coordinator.md).
//
// The answer. While the run is RUNNING in this rank's attempt: nothing to
// do. When the coordinator marked it FAILED, or another attempt has started
// (someone resumed it), this job must not go on: it would train and store
// checkpoints for a run that is no longer its own. The sender then calls
// `on_stop` once, with the reason, and sends no more; the training job
// passes dist::abort_job (MPI_Abort, exit code 1).
//
// Why abort rather than a flag the step loop checks: the usual cause is a
// dead or hung peer, and the other ranks are then blocked inside a
// collective where no flag is ever read. Each rank hears the verdict by
// itself, so each one ends even when MPI cannot reach the others, and
// MPI_Abort ends those that have not heard it yet. Stopping mid-step loses
// nothing a flag would keep: the run is FAILED already (or belongs to
// another job), and --resume continues from its last stored checkpoint.
//
// A COMPLETED or PREEMPTED answer in this rank's attempt is the job's own
// doing (rank 0 ended the run): the sender stops sending, nothing else. A
// failed call (the coordinator down, restarting or slow) is logged at debug
// level and ignored: the next heartbeat is the retry, and the job's own
// calls have their own retries and errors. Any other error (NOT_FOUND,
// INVALID_ARGUMENT: a coordinator that lost the run, a bug) is logged once
// at warning level; the sender keeps going.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "trainer/dist/world.h"
#include "trainer/train/train_options.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::client {
class CoordinatorClient;
}

namespace xfer::trainer::train {

struct HeartbeatOptions {
  std::string run;
  int rank = 0;
  int world_size = 1;
  // The attempt StartRun returned to this job. REQUIRES: >= 1.
  int attempt = 1;
  // Between the starts of two heartbeats; the first is sent at once.
  // REQUIRES: > 0.
  std::chrono::milliseconds every{5000};
  // Deadline of one call. Default: 5 s. REQUIRES: > 0.
  std::chrono::milliseconds deadline{5000};
};

// Why this rank must stop, given the coordinator's answer; std::nullopt while
// the run is this attempt's and not FAILED.
std::optional<std::string> heartbeat_stop_reason(const v1::HeartbeatResponse& answer,
                                                 const HeartbeatOptions& options);

class HeartbeatSender {
 public:
  // One call; throws (coordinator::client::RpcError or any std::exception)
  // when it fails.
  using Send = std::function<v1::HeartbeatResponse(const v1::HeartbeatRequest&)>;
  // Called on the sender's thread, at most once. May not return.
  using OnStop = std::function<void(const std::string& reason)>;

  // Starts the thread; the first heartbeat goes at once.
  HeartbeatSender(HeartbeatOptions options, Send send, OnStop on_stop);
  // stop().
  ~HeartbeatSender();
  HeartbeatSender(const HeartbeatSender&) = delete;
  HeartbeatSender& operator=(const HeartbeatSender&) = delete;

  // Ends the thread: at once between heartbeats, else after the call in
  // flight returns (within its deadline). A verdict that arrives after
  // stop() was called is ignored: the job is ending by itself. Idempotent.
  void stop();

  // Heartbeats sent so far (answered or not).
  int sent() const;

 private:
  void loop();
  // One heartbeat; false when the sender is to stop sending.
  bool beat();

  // Constant after construction.
  const HeartbeatOptions options_;
  const Send send_;
  const OnStop on_stop_;

  std::mutex join_mutex_;  // one stop() joins at a time
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mutex_)
  int sent_ = 0;           // GUARDED_BY(mutex_)
  bool warned_ = false;    // only the thread touches it
  std::thread thread_;     // last: starts once the members above exist
};

// The training job's heartbeats: rank world.rank() of attempt `attempt` of
// run options.run_name, through `client`, every options.heartbeat_every_s; a
// stop verdict ends the whole job with dist::abort_job (exit code 1), its
// line naming the rank and the reason. Null when options.heartbeat_every_s
// is 0. `client` must outlive the sender.
std::unique_ptr<HeartbeatSender> start_job_heartbeat(coordinator::client::CoordinatorClient& client,
                                                     const TrainOptions& options,
                                                     const dist::World& world, int attempt);

}  // namespace xfer::trainer::train
