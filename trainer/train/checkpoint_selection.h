// Choosing a checkpoint of the run and falling back: `--resume latest|best|ID`
// and the best head checkpoint restored before fine-tuning. "latest" and
// "best" fall back to the run's other checkpoints while the one chosen is
// corrupt or unusable, in the order the coordinator ranks them
// (ListCheckpoints BEST_FIRST / LATEST_FIRST, docs/checkpoints.md); a
// checkpoint named by its id never does. No LibTorch: what "usable" means
// (downloaded, verified, decoded) is the caller's TryCheckpoint
// (run_checkpoints.h), so the rules here are tested with fakes.
#pragma once

#include <functional>
#include <string>

#include "trainer/train/job_coordinator.h"

namespace xfer::trainer::train {

// What a checkpoint is fetched for. Resuming needs its training state, and
// without a usable checkpoint there is nothing to resume; restoring the best
// head checkpoint can go on with the weights in hand.
enum class CheckpointUse { kResume, kRestoreHead };

// Why a stored checkpoint cannot be used. Both read after "checkpoint ID is":
// `brief` in the line that says what was chosen instead ("corrupt
// (DATA_LOSS at the coordinator)"), `detail` with the coordinator's or the
// decoder's own words.
struct Unusable {
  std::string brief;
  std::string detail;
  bool none() const { return brief.empty(); }
};

// Tries one checkpoint: an empty Unusable when it can be used (the caller
// keeps it), else why not. Failures that say nothing about the checkpoint
// (the coordinator away, a local file) are thrown.
using TryCheckpoint = std::function<Unusable(const v1::CheckpointInfo&)>;

struct CheckpointRequest {
  std::string run;
  // "latest", "best" or a checkpoint id.
  std::string which;
  // Among the checkpoints of this phase only ("head"); empty: all.
  std::string phase;
  CheckpointUse use = CheckpointUse::kResume;
};

// Rank 0: the id of the first checkpoint `try_one` accepts, trying `which`
// first, then (latest, best) the others, newest (best) first; every
// fallback is logged. "" when none is usable and the use allows it
// (kRestoreHead, logged); kResume throws std::runtime_error naming every
// checkpoint tried and why it failed, as does an id that is unusable.
std::string select_checkpoint(JobCoordinator& coordinator, const CheckpointRequest& request,
                              const TryCheckpoint& try_one);

}  // namespace xfer::trainer::train
