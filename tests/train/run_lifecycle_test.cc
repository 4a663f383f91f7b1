// The run's lifecycle from the training job's side
// (trainer/train/run_lifecycle.h) against a coordinator in memory, one or
// two ranks as threads: starting, resuming (--resume auto), the checks that
// refuse a start before anything changes, and the run's end states.
#include "trainer/train/run_lifecycle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/train/fake_job_coordinator.h"
#include "tests/train/thread_world.h"
#include "trainer/train/collective.h"

namespace xfer::trainer::train {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using testing::FakeJobCoordinator;
using ::testing::HasSubstr;
using testing::ThreadWorld;

class RunLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("xfer_run_lifecycle_" + std::to_string(::getpid()));
    options_.run_name = "job";
    options_.dataset = "cifar";
    options_.num_classes = 3;
    options_.run_dir = (dir_ / "run").string();
    coordinator_.dataset.add_fine_label_names("apple");
    coordinator_.dataset.add_fine_label_names("bee");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void existing_run(v1::RunState state, const std::string& dataset = "cifar") {
    v1::Run run;
    run.set_name("job");
    run.set_dataset(dataset);
    run.set_attempt(2);
    run.set_state(state);
    coordinator_.run = run;
  }

  // The message of what start_run_at_coordinator throws ("" if nothing).
  std::string start_error() {
    try {
      start_run_at_coordinator(coordinator_, options_, 2, "cpu");
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
  TrainOptions options_;
  FakeJobCoordinator coordinator_;
};

TEST_F(RunLifecycleTest, ANewRunStartsWithItsConfigAndTheDatasetsLabels) {
  const RunStart start = start_run_at_coordinator(coordinator_, options_, 2, "cpu");
  EXPECT_FALSE(start.already_completed);
  EXPECT_EQ(start.resume, "");
  EXPECT_EQ(start.attempt, 1);
  EXPECT_THAT(start.labels, ElementsAre("apple", "bee", "class_2"));
  ASSERT_EQ(coordinator_.started.size(), 1u);
  EXPECT_EQ(coordinator_.started[0].world_size(), 2);
  EXPECT_EQ(coordinator_.started[0].config_json(), to_json(options_));
  EXPECT_TRUE(fs::is_directory(options_.run_dir));
}

TEST_F(RunLifecycleTest, AnExistingRunNeedsResume) {
  existing_run(v1::RUN_STATE_FAILED);
  EXPECT_EQ(start_error(),
            "run 'job' exists already (attempt 2, RUN_STATE_FAILED); pass --resume latest to "
            "continue it, or choose another --run-name");
  EXPECT_TRUE(coordinator_.started.empty());
}

TEST_F(RunLifecycleTest, ResumingNeedsTheRunAndItsDataset) {
  options_.resume = "latest";
  EXPECT_EQ(start_error(), "--resume latest: the coordinator has no run 'job' to resume");
  existing_run(v1::RUN_STATE_PREEMPTED, "other");
  EXPECT_EQ(start_error(), "--dataset cifar: run 'job' was started on dataset 'other'");
  EXPECT_TRUE(coordinator_.started.empty());
}

TEST_F(RunLifecycleTest, ABadSplitFailsBeforeTheRunStarts) {
  coordinator_.bad_splits = {"train[:200%]"};
  options_.val_split = "train[:200%]";
  EXPECT_EQ(start_error(), "--val-split 'train[:200%]': split 'train[:200%]' is not a spec");
  EXPECT_TRUE(coordinator_.started.empty());
}

TEST_F(RunLifecycleTest, AutoResumesTheLatestCheckpointOrStartsOver) {
  options_.resume = "auto";
  EXPECT_EQ(start_run_at_coordinator(coordinator_, options_, 1, "cpu").resume, "");  // no run
  coordinator_.run->set_state(v1::RUN_STATE_PREEMPTED);
  EXPECT_EQ(start_run_at_coordinator(coordinator_, options_, 1, "cpu").resume, "");  // none
  coordinator_.add_checkpoint("ckpt-1", "head", 1, 10, 0.5, 1);
  coordinator_.latest_id = "ckpt-1";
  const RunStart start = start_run_at_coordinator(coordinator_, options_, 1, "cpu");
  EXPECT_EQ(start.resume, "latest");
  EXPECT_EQ(start.attempt, 3);
}

TEST_F(RunLifecycleTest, AutoLeavesACompletedRunAlone) {
  options_.resume = "auto";
  existing_run(v1::RUN_STATE_COMPLETED);
  EXPECT_TRUE(start_run_at_coordinator(coordinator_, options_, 1, "cpu").already_completed);
  EXPECT_TRUE(coordinator_.started.empty());
}

TEST_F(RunLifecycleTest, EveryRankLearnsTheDecisionAndTheAttempt) {
  options_.resume = "auto";
  existing_run(v1::RUN_STATE_PREEMPTED);
  coordinator_.add_checkpoint("ckpt-1", "head", 1, 10, 0.5, 1);
  coordinator_.latest_id = "ckpt-1";
  ThreadWorld world(2);
  RunStart starts[2];
  world.run([&](dist::Communicator& comm) {
    starts[comm.rank()] = start_run(coordinator_, comm, options_, 2, "cpu");
  });
  for (const RunStart& start : starts) {
    EXPECT_EQ(start.resume, "latest");
    EXPECT_EQ(start.attempt, 3);
    EXPECT_FALSE(start.already_completed);
  }
  EXPECT_EQ(coordinator_.started.size(), 1u);  // rank 0 only
  EXPECT_EQ(starts[1].labels.size(), 0u);
}

TEST_F(RunLifecycleTest, EveryRankLearnsThatACompletedRunIsDone) {
  options_.resume = "auto";
  existing_run(v1::RUN_STATE_COMPLETED);
  ThreadWorld world(2);
  world.run([&](dist::Communicator& comm) {
    EXPECT_TRUE(start_run(coordinator_, comm, options_, 2, "cpu").already_completed);
  });
}

TEST_F(RunLifecycleTest, ARefusedStartFailsEveryRankAlike) {
  existing_run(v1::RUN_STATE_FAILED);
  ThreadWorld world(2);
  world.run([&](dist::Communicator& comm) {
    try {
      start_run(coordinator_, comm, options_, 2, "cpu");
      ADD_FAILURE() << "rank " << comm.rank() << " started";
    } catch (const SharedError& e) {
      EXPECT_THAT(e.what(), HasSubstr("rank 0: starting the run at the coordinator "
                                      "127.0.0.1:50051: run 'job' exists already"));
    }
  });
}

TEST_F(RunLifecycleTest, AMidEpochCheckpointResumesOnlyWithItsShape) {
  TrainingState state;
  state.phase = "head";
  state.epochs_done = 1;
  state.world_size = 2;
  state.batch_size = 32;
  state.epoch_steps_done = 5;
  EXPECT_NO_THROW(check_resumable(state, 2, 32, 0, "checkpoint ckpt-3", "job"));
  try {
    check_resumable(state, 4, 32, 0, "checkpoint ckpt-3", "job");
    FAIL() << "resumed mid-epoch with another world size";
  } catch (const SharedError& e) {
    EXPECT_EQ(std::string(e.what()),
              "checkpoint ckpt-3 was taken in the middle of head epoch 2 with 2 ranks x batch 32; "
              "resume it with the same world size and --batch-size (here 4 x 32), or resume from "
              "an end-of-epoch checkpoint with --resume ID (see coordctl checkpoints list job)");
  }
  state.epoch_steps_done = 0;  // an epoch boundary: any shape
  EXPECT_NO_THROW(check_resumable(state, 4, 16, 1, "checkpoint ckpt-2", "job"));
}

TEST_F(RunLifecycleTest, PreemptedAndCompletedRunsSayWhereTheyStand) {
  existing_run(v1::RUN_STATE_RUNNING);
  ThreadWorld world(2);
  world.run([&](dist::Communicator& comm) {
    mark_run_preempted(coordinator_, comm, "job", "SIGUSR1", "checkpoint ckpt-4 stored at ...");
  });
  ASSERT_EQ(coordinator_.ended.size(), 1u);  // rank 0 only
  EXPECT_EQ(coordinator_.ended[0].first, v1::RUN_STATE_PREEMPTED);
  EXPECT_EQ(coordinator_.ended[0].second, "preempted (SIGUSR1): checkpoint ckpt-4 stored at ...");
  complete_run(coordinator_, options_, 120, 40, 0.5, 0.75);
  EXPECT_EQ(coordinator_.ended[1].first, v1::RUN_STATE_COMPLETED);
  EXPECT_EQ(coordinator_.ended[1].second, "120 optimizer steps; test top-1 0.5000, top-3 0.7500");
}

}  // namespace
}  // namespace xfer::trainer::train
