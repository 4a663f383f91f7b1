// TensorBoard's x axis for a run: one step per epoch, counted across phases,
// so a fine-tuning curve continues where the head curve stopped instead of
// being drawn over it.
//
// The rule, applied to a run's completed epochs in completion order:
//  - the first phase keeps the trainer's epoch numbers (the trainer counts
//    from 1: head epoch 1 is step 1);
//  - a phase seen for the first time starts one past the highest step so far
//    (head epochs 1..10 are steps 1..10; finetune epoch 1 is step 11), and its
//    later epochs keep their distance from that first one.
// For the trainer this equals its global epoch index (the one checkpoint
// metadata carries). The test split, reported under the last phase and epoch,
// lands on that epoch's step. The rule is a pure function of the history, so
// a coordinator that restarts and replays it numbers every epoch as before.
//
// Why not MetricsReport.step (the trainer's global optimizer step)? Per-epoch
// curves are what Keras users expect (its TensorBoard callback logs epochs),
// the x axis then does not depend on batch size or world size, and the
// aggregated EpochMetrics (all the history keeps) does not carry a step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xfer::coordinator::tensorboard {

class GlobalEpochs {
 public:
  // The step of (phase, epoch), learning the phase if it is new.
  std::int64_t step(const std::string& phase, std::int64_t epoch);
  // The phase's position in order of first appearance (0 for the first); -1
  // for a phase not seen yet.
  int ordinal(const std::string& phase) const;

 private:
  struct Phase {
    std::string name;
    std::int64_t offset = 0;  // step = offset + epoch
  };
  std::vector<Phase> phases_;
  std::int64_t max_step_ = 0;
  bool any_ = false;
};

}  // namespace xfer::coordinator::tensorboard
