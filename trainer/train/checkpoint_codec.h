// The training job's checkpoint: a model file (trainer/models/model_file.h,
// so `trainer predict` reads any checkpoint) extended with what resuming
// needs. Extra top-level keys of the pickled dict:
//
//   "xfer_training"    str  JSON of TrainingState (below)
//   "optimizer_state"  {str: Tensor}  Adam's state per trainable parameter,
//                      by parameter name: "<name>.exp_avg", "<name>.exp_avg_sq"
//                      and "<name>.step" (int64 scalar)
//
// RNG state is not stored because there is none to store: shuffling and
// augmentation are pure functions of (seed, epoch, sample), and dropout is
// reseeded from (seed, epoch, rank, step) before every step, so a step re-run
// after a resume draws exactly what the first attempt drew.
#pragma once

#include <torch/optim/adam.h>

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/models/model_file.h"
#include "trainer/models/transfer_model.h"
#include "trainer/train/training_state.h"

namespace xfer::trainer::train {

struct DecodedCheckpoint {
  models::WeightsFile weights;
  TrainingState state;
  // Empty for a model file that is not a checkpoint (no training state).
  models::StateDict optimizer_state;
  bool has_training_state = false;
};

// The checkpoint's bytes. Optimizer state is taken for every parameter of
// `model` the optimizer holds state for.
std::vector<char> encode_checkpoint(const models::ModelMetadata& metadata,
                                    models::TransferModelImpl& model, torch::optim::Adam& optimizer,
                                    const TrainingState& state);

// Throws std::runtime_error naming `source` and the key when the bytes are
// not a model file or the training state is malformed.
DecodedCheckpoint decode_checkpoint(const std::vector<char>& bytes, const std::string& source);

// Puts the saved Adam state back into `optimizer` (built over `model`'s
// trainable parameters). A trainable parameter without saved state, or a
// shape mismatch, throws std::runtime_error naming the tensor.
void restore_optimizer(torch::optim::Adam& optimizer, models::TransferModelImpl& model,
                       const models::StateDict& saved, const std::string& source);

std::string to_json(const TrainingState& state);
TrainingState training_state_from_json(const std::string& text, const std::string& source);

}  // namespace xfer::trainer::train
