// Where a training job stands: what a checkpoint records so that a later
// attempt continues from the same optimizer step (checkpoint_codec.h stores
// it as JSON, to_json / training_state_from_json there). No LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xfer::trainer::train {

// One rank's train counts of an unfinished epoch.
struct PartialTotals {
  double loss_sum = 0.0;
  std::int64_t top1 = 0;
  std::int64_t top3 = 0;
  std::int64_t samples = 0;
};

// Where the job stood when the checkpoint was taken: at the end of an epoch,
// after its validation, or (preemption) after step `epoch_steps_done` of the
// epoch after `epochs_done`.
struct TrainingState {
  std::string phase;             // phase of the epoch just finished (or in progress)
  int epochs_done = 0;           // epochs of `phase` completed (1-based epoch number)
  std::int64_t global_step = 0;  // optimizer steps of the whole run so far
  std::int64_t phase_step = 0;   // optimizer steps of `phase` (the lr decay's k)
  int global_epoch = 0;          // epochs completed over all phases
  double val_loss = 0.0;         // what the checkpoint is ranked by
  double val_top1 = 0.0;
  int world_size = 0;  // of the attempt that wrote it
  int batch_size = 0;  // per rank, of that attempt
  std::uint64_t seed = 0;
  // Mid-epoch checkpoints only (0 / empty at an epoch boundary): batches
  // each rank has trained of epoch epochs_done + 1, the seconds spent on
  // them, and every rank's train counts so far (index = rank; world_size
  // entries). val_loss is NaN: nothing was validated.
  std::int64_t epoch_steps_done = 0;
  double epoch_seconds = 0.0;
  std::vector<PartialTotals> epoch_partial;

  bool mid_epoch() const { return epoch_steps_done > 0; }
};

}  // namespace xfer::trainer::train
