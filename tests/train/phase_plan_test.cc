// The recipe's plan (trainer/train/phase_plan.h): phases in order with their
// place in the run's epoch count, the learning-rate decay, and where a job
// starts afresh or after a resumed checkpoint.
#include "trainer/train/phase_plan.h"

#include <gtest/gtest.h>

#include <stdexcept>

#include "trainer/models/transfer_model.h"

namespace xfer::trainer::train {
namespace {

TrainOptions recipe() {
  TrainOptions o;
  o.full = {0, 1e-3, 0.0};
  o.head = {3, 1e-3, 0.0};
  o.finetune = {2, 1e-4, 0.5};
  return o;
}

TrainingState after(const std::string& phase, int epochs_done, std::int64_t steps_done = 0) {
  TrainingState s;
  s.phase = phase;
  s.epochs_done = epochs_done;
  s.epoch_steps_done = steps_done;
  return s;
}

TEST(PhasePlanTest, PhasesRunInOrderAndCountEpochsOverThemAll) {
  const auto plan = plan_phases(recipe());
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].phase, models::Phase::kFull);
  EXPECT_EQ(plan[1].phase, models::Phase::kHead);
  EXPECT_EQ(plan[2].phase, models::Phase::kFinetune);
  EXPECT_EQ(plan[1].first_global_epoch, 0);
  EXPECT_EQ(plan[2].first_global_epoch, 3);
  EXPECT_EQ(&plan_of(plan, models::Phase::kHead), &plan[1]);
  EXPECT_EQ(phase_index(models::Phase::kFinetune), 2u);
  EXPECT_TRUE(later_phase_runs(plan, 1));
  EXPECT_FALSE(later_phase_runs(plan, 2));
}

TEST(PhasePlanTest, InverseTimeDecay) {
  const PhaseSchedule s{1, 1e-3, 0.5};
  EXPECT_DOUBLE_EQ(learning_rate(s, 0), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate(s, 2), 1e-3 / 2.0);
}

TEST(PhasePlanTest, AFreshJobStartsAtTheFirstEpoch) {
  const StartPoint start = start_point(plan_phases(recipe()), nullptr);
  EXPECT_EQ(start.phase, 0u);
  EXPECT_EQ(start.epoch, 1);
  EXPECT_FALSE(start.resume_optimizer);
}

TEST(PhasePlanTest, AResumedJobContinuesAfterItsCheckpoint) {
  const auto plan = plan_phases(recipe());
  const TrainingState within = after("head", 2);
  StartPoint start = start_point(plan, &within);
  EXPECT_EQ(start.phase, 1u);
  EXPECT_EQ(start.epoch, 3);
  EXPECT_TRUE(start.resume_optimizer);
  // The phase's last epoch: the next phase, afresh.
  const TrainingState end_of_head = after("head", 3);
  start = start_point(plan, &end_of_head);
  EXPECT_EQ(start.phase, 2u);
  EXPECT_EQ(start.epoch, 1);
  EXPECT_FALSE(start.resume_optimizer);
  // Mid-epoch in the phase's last epoch: that epoch again, from its step.
  const TrainingState mid = after("head", 2, 7);
  start = start_point(plan, &mid);
  EXPECT_EQ(start.phase, 1u);
  EXPECT_EQ(start.epoch, 3);
  EXPECT_TRUE(start.resume_optimizer);
  // A finished run: past the plan.
  const TrainingState done = after("finetune", 2);
  EXPECT_EQ(start_point(plan, &done).phase, 3u);
  const TrainingState unknown = after("warmup", 1);
  EXPECT_THROW(start_point(plan, &unknown), std::invalid_argument);
}

TEST(PhasePlanTest, TheResumedLearningRateIsTheCheckpointsLastStep) {
  TrainingState s = after("finetune", 1);
  s.phase_step = 3;  // steps 0, 1, 2 done
  EXPECT_DOUBLE_EQ(learning_rate_at(plan_phases(recipe()), s), 1e-4 / (1.0 + 0.5 * 2));
  s.phase_step = 0;
  EXPECT_DOUBLE_EQ(learning_rate_at(plan_phases(recipe()), s), 1e-4);
}

}  // namespace
}  // namespace xfer::trainer::train
