#include "trainer/train/checkpoint_selection.h"

#include <spdlog/spdlog.h>

#include <stdexcept>
#include <vector>

#include "coordinator/client/errors.h"

namespace xfer::trainer::train {

namespace client = coordinator::client;

std::string select_checkpoint(JobCoordinator& coordinator, const CheckpointRequest& request,
                              const TryCheckpoint& try_one) {
  const bool resume = request.use == CheckpointUse::kResume;
  const std::string& run = request.run;
  const std::string& which = request.which;
  const std::string& phase = request.phase;
  const std::string of_phase = phase.empty() ? "" : " of phase '" + phase + "'";
  const std::string keep_weights =
      "fine-tuning starts from the weights the head phase ended with instead";
  v1::CheckpointInfo first;
  try {
    if (which == "latest") {
      first = coordinator.latest_checkpoint(run, phase);
    } else if (which == "best") {
      first = coordinator.best_checkpoint(run, phase);
    } else {
      first.set_id(which);
    }
  } catch (const client::RpcError& e) {
    // No head checkpoint at all: every one failed to store (full disk), or
    // they were deleted. The run goes on; there is nothing to restore.
    if (resume || e.code() != grpc::StatusCode::NOT_FOUND) throw;
    spdlog::warn("restoring the best {} checkpoint: run {} has none ({}); {}", phase, run,
                 e.server_message(), keep_weights);
    return {};
  }
  const Unusable first_problem = try_one(first);
  if (first_problem.none()) return first.id();
  if (which != "latest" && which != "best") {
    throw std::runtime_error(
        "--resume " + which + ": checkpoint " + which + " is " + first_problem.detail +
        "; a checkpoint named by its id is never replaced by another: continue from the newest "
        "valid one with --resume latest, or name another (coordctl checkpoints list " +
        run + ")");
  }
  const std::string order = which == "latest" ? "newest" : "best";
  spdlog::warn("checkpoint {} is {}; trying the other checkpoints of run {}{}, {} first",
               first.id(), first_problem.detail, run, of_phase, order);
  // The coordinator ranks the others with the rule that picked `first`
  // (docs/checkpoints.md), so `--resume best` here and `coordctl checkpoints
  // best` never disagree. The phase test guards against a coordinator too old
  // to filter by phase.
  const v1::ListCheckpointsResponse listed = coordinator.list_checkpoints(
      run, which == "latest" ? v1::CHECKPOINT_ORDER_LATEST_FIRST : v1::CHECKPOINT_ORDER_BEST_FIRST,
      phase);
  std::vector<v1::CheckpointInfo> candidates;
  for (const auto& info : listed.checkpoints()) {
    if (info.id() != first.id() && (phase.empty() || info.meta().phase() == phase)) {
      candidates.push_back(info);
    }
  }
  std::string tried = first.id() + " (" + first_problem.brief + ")";
  for (const auto& candidate : candidates) {
    Unusable problem;
    try {
      problem = try_one(candidate);
    } catch (const client::RpcError& e) {
      // Listed a moment ago, deleted since (by hand or by retention).
      if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
      problem = {"gone", "gone (" + e.server_message() + ")"};
    }
    if (problem.none()) {
      if (resume) {
        spdlog::warn("checkpoint {} is {}; resuming from {}, the {} valid one", first.id(),
                     first_problem.brief, candidate.id(), order);
      } else {
        spdlog::warn("the best {} checkpoint {} is {}; restoring {} instead, the best valid one",
                     phase, first.id(), first_problem.brief, candidate.id());
      }
      return candidate.id();
    }
    spdlog::warn("checkpoint {} is {} too", candidate.id(), problem.detail);
    tried += ", " + candidate.id() + " (" + problem.brief + ")";
  }
  const std::string none = "no checkpoint of run " + run + of_phase + " is usable; tried " + tried;
  if (resume) {
    throw std::runtime_error("--resume " + which + ": " + none +
                             " (the coordinator's errors: coordctl status); nothing to resume "
                             "from: start the run afresh under another --run-name");
  }
  spdlog::warn("restoring the best {} checkpoint: {}; {}", phase, none, keep_weights);
  return {};
}

}  // namespace xfer::trainer::train
