// The run's checkpoints at the coordinator, as the training job uses them:
// fetching one on every rank (chosen by checkpoint_selection.h on rank 0,
// downloaded, SHA-256 verified, decoded, then broadcast) and storing one
// from rank 0. The LibTorch side (decoding) stays in the .cc file.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "trainer/dist/communicator.h"
#include "trainer/train/checkpoint_selection.h"
#include "trainer/train/job_coordinator.h"

namespace xfer::trainer::train {

struct DecodedCheckpoint;  // checkpoint_codec.h

// A checkpoint fetched from the coordinator.
struct FetchedCheckpoint {
  std::string id;  // empty: none could be used (restoring the best head only)
  std::vector<char> bytes;
  // Rank 0 decoded it while choosing it; the other ranks decode `bytes`.
  std::shared_ptr<DecodedCheckpoint> decoded;
};

// This rank's decoded checkpoint: rank 0's own, or decoded from the bytes.
DecodedCheckpoint take_decoded(FetchedCheckpoint& fetched);

class RunCheckpoints {
 public:
  // Downloads go to <run_dir>/checkpoints/<id>.pt. `coordinator` is used on
  // rank 0 only; both must outlive this.
  RunCheckpoints(JobCoordinator& coordinator, dist::Communicator& host, std::string run,
                 std::filesystem::path run_dir);

  // Checkpoint `which` ("latest", "best" or an id) of the run, among those
  // of `phase` (empty: all), SHA-256 verified, on every rank, with the
  // fallbacks of select_checkpoint. An empty id: none usable (kRestoreHead
  // only; rank 0 logged why). Collective; rank 0's errors are SharedError
  // on every rank.
  FetchedCheckpoint fetch(const std::string& which, const std::string& phase, CheckpointUse use);

  // Rank 0: downloads `info` and decodes it into `out`, or says why it
  // cannot be used. Failures that say nothing about the checkpoint (the
  // coordinator away, an unknown id, a local file) are thrown.
  Unusable try_checkpoint(const v1::CheckpointInfo& info, CheckpointUse use,
                          FetchedCheckpoint& out);

  // Rank 0: stores a checkpoint at the coordinator and returns its id, or ""
  // after one warning when the coordinator could not store it (full disk, an
  // I/O error, the coordinator away past the client's retries): that costs
  // this checkpoint only. `what` names it, `consequence` ends the warning.
  // A refused request (it would be refused every time) is thrown.
  std::string store(const v1::CheckpointMeta& meta, const std::vector<char>& bytes,
                    const std::string& what, const std::string& consequence);

 private:
  JobCoordinator& coordinator_;
  dist::Communicator& host_;
  const std::string run_;
  const std::filesystem::path run_dir_;
};

}  // namespace xfer::trainer::train
