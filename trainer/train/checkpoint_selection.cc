#include "trainer/train/checkpoint_selection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "coordinator/client/errors.h"

namespace xfer::trainer::train {
namespace {

namespace client = coordinator::client;

// True when `a` was committed before `b`. Ids are "ckpt-" and a zero-padded
// sequence that only grows, so they break a tie of commit times.
bool committed_before(const v1::CheckpointInfo& a, const v1::CheckpointInfo& b) {
  if (a.created_unix_ms() != b.created_unix_ms()) return a.created_unix_ms() < b.created_unix_ms();
  return a.id() < b.id();
}

// The order in which the run's other checkpoints are tried when `which`
// ("latest" or "best") is unusable: the store's own orders
// (docs/checkpoints.md). latest: the highest (epoch, step) first, a tie to
// the newer commit; `epoch` counts over all phases and a mid-epoch checkpoint
// carries its finished epochs and a later step, so this is training order.
// best: by the metric in its direction, NaN last, a tie to the earlier commit.
void order_for_fallback(std::vector<v1::CheckpointInfo>& list, const std::string& which) {
  if (which == "latest") {
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
      if (a.meta().epoch() != b.meta().epoch()) return a.meta().epoch() > b.meta().epoch();
      if (a.meta().step() != b.meta().step()) return a.meta().step() > b.meta().step();
      return committed_before(b, a);
    });
    return;
  }
  std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
    const double x = a.meta().metric_value();
    const double y = b.meta().metric_value();
    if (std::isnan(x) != std::isnan(y)) return std::isnan(y);
    if (!std::isnan(x) && x != y) {
      return a.meta().direction() == v1::METRIC_DIRECTION_MAXIMIZE ? x > y : x < y;
    }
    return committed_before(a, b);
  });
}

}  // namespace

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
  const v1::ListCheckpointsResponse listed = coordinator.list_checkpoints(run);
  std::vector<v1::CheckpointInfo> candidates;
  for (const auto& info : listed.checkpoints()) {
    if (info.id() != first.id() && (phase.empty() || info.meta().phase() == phase)) {
      candidates.push_back(info);
    }
  }
  order_for_fallback(candidates, which);
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
