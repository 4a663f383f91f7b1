// The end of an epoch in its named steps (trainer/train/epoch_end.h): the
// summed train numbers and their packed layout, the boundary and mid-epoch
// training states, the checkpoint's metadata, the best checkpoint of a
// phase, epochs.csv and the preempted run's messages. Two ranks as threads.
#include "trainer/train/epoch_end.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/train/thread_world.h"
#include "trainer/models/transfer_model.h"

namespace xfer::trainer::train {
namespace {

namespace fs = std::filesystem;
using testing::ThreadWorld;

MetricTotals totals(double loss_sum, std::int64_t top1, std::int64_t top3, std::int64_t n) {
  MetricTotals m;
  m.loss_sum = loss_sum;
  m.top1 = top1;
  m.top3 = top3;
  m.samples = n;
  return m;
}

PhasePlan head_plan() { return {models::Phase::kHead, {3, 1e-3, 0.0}, 2}; }

TEST(EpochEndTest, TrainSumsPackInTheirOrderAndRoundTrip) {
  const EpochTrainSums sums{totals(12.5, 7, 9, 20), 1.5, 6.0};
  EXPECT_EQ(sums.pack(), (std::vector<double>{12.5, 7, 9, 20, 1.5, 6.0}));
  const EpochTrainSums back = EpochTrainSums::unpack(sums.pack());
  EXPECT_EQ(back.totals.samples, 20);
  EXPECT_EQ(back.totals.top3, 9);
  EXPECT_DOUBLE_EQ(back.data_wait_share(), 0.25);
  EXPECT_LT(EpochTrainSums{}.data_wait_share(), 0.0);  // no time: not known
}

TEST(EpochEndTest, TrainNumbersAreSummedOverTheRanks) {
  ThreadWorld world(2);
  world.run([](dist::Communicator& comm) {
    const int r = comm.rank();
    const EpochTrainSums sums =
        sum_epoch_train(comm, totals(1.0 + r, 2 + r, 3 + r, 10), 0.5 * r, 4.0, "train totals");
    EXPECT_DOUBLE_EQ(sums.totals.loss_sum, 3.0);
    EXPECT_EQ(sums.totals.top1, 5);
    EXPECT_EQ(sums.totals.top3, 7);
    EXPECT_EQ(sums.totals.samples, 20);
    EXPECT_DOUBLE_EQ(sums.data_wait_s, 0.5);
    EXPECT_DOUBLE_EQ(sums.seconds, 8.0);
  });
}

TEST(EpochEndTest, TheEpochBoundaryStateClearsTheMidEpochFields) {
  TrainingState s;
  s.global_step = 40;
  s.epoch_steps_done = 5;
  s.epoch_partial = {{1.0, 1, 1, 1}};
  record_epoch_end(s, head_plan(), 2, totals(5.0, 6, 8, 10), 2, 32, 7);
  EXPECT_EQ(s.phase, "head");
  EXPECT_EQ(s.epochs_done, 2);
  EXPECT_EQ(s.global_epoch, 4);
  EXPECT_FALSE(s.mid_epoch());
  EXPECT_TRUE(s.epoch_partial.empty());
  EXPECT_DOUBLE_EQ(s.val_loss, 0.5);
  EXPECT_DOUBLE_EQ(s.val_top1, 0.6);
  EXPECT_EQ(s.global_step, 40);  // the loop counts steps
  EXPECT_EQ(s.world_size, 2);
  EXPECT_EQ(s.batch_size, 32);
  EXPECT_EQ(s.seed, 7u);
}

TEST(EpochEndTest, APreemptedEpochKeepsEveryRanksCountsInRankOrder) {
  ThreadWorld world(2);
  std::vector<PartialEpoch> partials(2);
  world.run([&](dist::Communicator& comm) {
    const int r = comm.rank();
    partials[static_cast<std::size_t>(r)] =
        gather_partial_epoch(comm, totals(1.5 + r, 1 + r, 2 + r, 8), 3.0 + r);
  });
  for (const PartialEpoch& p : partials) {
    ASSERT_EQ(p.ranks.size(), 2u);
    EXPECT_DOUBLE_EQ(p.ranks[0].loss_sum, 1.5);
    EXPECT_EQ(p.ranks[1].top1, 2);
    EXPECT_EQ(p.ranks[1].top3, 3);
    EXPECT_EQ(p.ranks[1].samples, 8);
    EXPECT_DOUBLE_EQ(p.rank0_seconds, 3.0);
  }
  TrainingState before;
  before.global_step = 45;
  before.phase_step = 15;
  const TrainingState s = mid_epoch_state(before, head_plan(), 2, 5, partials[0], 2, 32, 7);
  EXPECT_EQ(s.phase, "head");
  EXPECT_EQ(s.epochs_done, 1);
  EXPECT_EQ(s.global_epoch, 3);
  EXPECT_TRUE(s.mid_epoch());
  EXPECT_EQ(s.epoch_steps_done, 5);
  EXPECT_DOUBLE_EQ(s.epoch_seconds, 3.0);
  EXPECT_TRUE(std::isnan(s.val_loss));
  EXPECT_EQ(s.epoch_partial.size(), 2u);
  EXPECT_EQ(s.global_step, 45);
  EXPECT_EQ(s.phase_step, 15);
}

TEST(EpochEndTest, TheCheckpointIsRankedByValidationLoss) {
  TrainingState s;
  s.global_epoch = 4;
  s.global_step = 40;
  s.val_loss = 0.25;
  const v1::CheckpointMeta meta = checkpoint_meta("job", "head", s);
  EXPECT_EQ(meta.run(), "job");
  EXPECT_EQ(meta.phase(), "head");
  EXPECT_EQ(meta.epoch(), 4);
  EXPECT_EQ(meta.step(), 40);
  EXPECT_EQ(meta.metric_name(), "val_loss");
  EXPECT_DOUBLE_EQ(meta.metric_value(), 0.25);
  EXPECT_EQ(meta.direction(), v1::METRIC_DIRECTION_MINIMIZE);
}

TEST(EpochEndTest, TheBestIsTheLowestStoredLossOfThePhase) {
  BestCheckpoint best;
  EXPECT_TRUE(best.offer("ckpt-1", 0.9));
  EXPECT_FALSE(best.offer("ckpt-2", 0.95));
  EXPECT_FALSE(best.offer("", 0.1));  // not stored: never best
  EXPECT_TRUE(best.offer("ckpt-3", 0.5));
  EXPECT_FALSE(best.offer("ckpt-4", 0.5));  // a tie keeps the earlier one
  best.reset();
  EXPECT_TRUE(best.offer("ckpt-5", 0.99));
}

TEST(EpochEndTest, EpochsCsvGetsItsHeaderOnceAndOneRowPerEpoch) {
  const fs::path csv =
      fs::temp_directory_path() / ("xfer_epochs_" + std::to_string(::getpid()) + ".csv");
  fs::remove(csv);
  append_epochs_csv(csv, {"head", 1, 10, totals(20.0, 5, 8, 10), totals(9.0, 3, 4, 6), 1e-3,
                          12.3456, "ckpt-00000001"});
  append_epochs_csv(csv,
                    {"head", 2, 20, totals(10.0, 6, 9, 10), totals(6.0, 4, 5, 6), 5e-4, 1.0, ""});
  std::ifstream in(csv);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(),
            "phase,epoch,step,loss,acc,top3,val_loss,val_acc,val_top3,lr,seconds,checkpoint\n"
            "head,1,10,2.000000,0.500000,0.800000,1.500000,0.500000,0.666667,0.001,12.346,"
            "ckpt-00000001\n"
            "head,2,20,1.000000,0.600000,0.900000,1.000000,0.666667,0.833333,0.0005,1.000,\n");
  fs::remove(csv);
  EXPECT_THROW(append_epochs_csv("/nonexistent-dir/epochs.csv", {}), std::runtime_error);
}

TEST(EpochEndTest, APreemptedRunSaysWhereItResumes) {
  EXPECT_EQ(preempted_mid_epoch_where("ckpt-7", "head", 2, 5, 45),
            "checkpoint ckpt-7 stored at head epoch 2 step 5 of it (global step 45)");
  EXPECT_EQ(preempted_mid_epoch_where("", "head", 2, 5, 45),
            "no checkpoint could be stored at head epoch 2 step 5 of it (global step 45); the "
            "resume starts from the run's latest stored checkpoint");
  EXPECT_EQ(preempted_at_boundary_where("ckpt-8", "finetune", 1, 60),
            "checkpoint ckpt-8 stored at the end of finetune epoch 1 (global step 60)");
  EXPECT_EQ(preempted_at_boundary_where("", "finetune", 1, 60),
            "no checkpoint could be stored at the end of finetune epoch 1 (global step 60); the "
            "resume starts from the run's latest stored checkpoint");
}

}  // namespace
}  // namespace xfer::trainer::train
