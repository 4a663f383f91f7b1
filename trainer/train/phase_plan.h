// The recipe's plan: the phases full, head, finetune in the order they run,
// each with its schedule and its place in the run's epoch count, and where a
// job starts on it (afresh, or after a resumed checkpoint). No LibTorch:
// models::Phase is declared opaquely here (its values are in
// trainer/models/transfer_model.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "trainer/train/train_options.h"
#include "trainer/train/training_state.h"

namespace xfer::trainer::models {
enum class Phase;
}

namespace xfer::trainer::train {

struct PhasePlan {
  models::Phase phase;
  PhaseSchedule schedule;
  int first_global_epoch = 0;  // global epoch index of the phase's epoch 1
};

// Every phase, 0 epochs included, in running order: full, head, finetune.
std::vector<PhasePlan> plan_phases(const TrainOptions& options);

// The phase's place in plan_phases().
std::size_t phase_index(models::Phase phase);
// The plan of `phase`.
const PhasePlan& plan_of(const std::vector<PhasePlan>& plan, models::Phase phase);
// Whether a phase after `index` has epochs to run.
bool later_phase_runs(const std::vector<PhasePlan>& plan, std::size_t index);

// Keras' inverse-time decay: the rate of the phase's step k (0-based).
double learning_rate(const PhaseSchedule& schedule, std::int64_t k);

// Where the job starts on the plan.
struct StartPoint {
  std::size_t phase = 0;  // index in the plan; phases of 0 epochs are skipped when run
  int epoch = 1;          // within that phase, 1-based
  // The checkpoint was taken within that phase: its Adam state continues.
  bool resume_optimizer = false;
};

// Afresh (`resumed` null): the first phase's epoch 1. After a resumed
// checkpoint: the epoch after the checkpoint's (or the one it stopped in,
// mid-epoch), or the next phase's first epoch when the checkpoint ended its
// phase. Throws std::invalid_argument for an unknown phase name.
StartPoint start_point(const std::vector<PhasePlan>& plan, const TrainingState* resumed);

// The learning rate of the checkpoint's last step: reports re-sent for its
// epoch must repeat it.
double learning_rate_at(const std::vector<PhasePlan>& plan, const TrainingState& state);

}  // namespace xfer::trainer::train
