// The run's checkpoints as the training job fetches and stores them
// (trainer/train/run_checkpoints.h), against a coordinator in memory that
// serves real checkpoint bytes of a small model: what makes one unusable,
// the fallback on every rank alike (two ranks as threads), and which store
// failures cost only the checkpoint.
#include "trainer/train/run_checkpoints.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/optim/adam.h>
#include <torch/types.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/train/fake_job_coordinator.h"
#include "tests/train/small_model.h"
#include "tests/train/thread_world.h"
#include "trainer/models/model_file.h"
#include "trainer/models/state_dict.h"
#include "trainer/models/transfer_model.h"
#include "trainer/train/checkpoint_codec.h"
#include "trainer/train/collective.h"

namespace xfer::trainer::train {
namespace {

namespace fs = std::filesystem;
using testing::FakeJobCoordinator;
using ::testing::HasSubstr;
using testing::metadata;
using testing::ThreadWorld;

class RunCheckpointsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("xfer_run_checkpoints_" + std::to_string(::getpid()));
    model_ = testing::small_model(models::Phase::kHead);
    adam_ = testing::adam_over(model_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A checkpoint of the run after head epoch `epochs_done`.
  void add(const std::string& id, int epochs_done) {
    TrainingState state;
    state.phase = "head";
    state.epochs_done = epochs_done;
    state.global_step = 10 * epochs_done;
    const std::vector<char> bytes = encode_checkpoint(metadata(), *model_, *adam_, state);
    coordinator_.add_checkpoint(id, "head", epochs_done, 10 * epochs_done, 1.0 / epochs_done,
                                epochs_done);
    coordinator_.blobs[id] = std::string(bytes.begin(), bytes.end());
    coordinator_.latest_id = id;
  }

  RunCheckpoints checkpoints(dist::Communicator& comm) {
    return RunCheckpoints(coordinator_, comm, "job", dir_);
  }

  Unusable try_one(const std::string& id, CheckpointUse use = CheckpointUse::kResume) {
    ThreadWorld solo(1);
    RunCheckpoints c = checkpoints(solo.comm(0));
    v1::CheckpointInfo info;
    info.set_id(id);
    FetchedCheckpoint out;
    return c.try_checkpoint(info, use, out);
  }

  fs::path dir_;
  FakeJobCoordinator coordinator_;
  models::TransferModel model_{nullptr};
  std::unique_ptr<torch::optim::Adam> adam_;
};

TEST_F(RunCheckpointsTest, EveryRankGetsTheCheckpointRankZeroChose) {
  add("ckpt-1", 1);
  add("ckpt-2", 2);
  ThreadWorld world(2);
  world.run([&](dist::Communicator& comm) {
    RunCheckpoints c = checkpoints(comm);
    FetchedCheckpoint fetched = c.fetch("latest", "", CheckpointUse::kResume);
    EXPECT_EQ(fetched.id, "ckpt-2");
    const DecodedCheckpoint decoded = take_decoded(fetched);
    EXPECT_TRUE(decoded.has_training_state);
    EXPECT_EQ(decoded.state.epochs_done, 2);
  });
  EXPECT_EQ(coordinator_.downloads, std::vector<std::string>{"ckpt-2"});  // rank 0 only
  EXPECT_TRUE(fs::exists(dir_ / "checkpoints" / "ckpt-2.pt"));
}

TEST_F(RunCheckpointsTest, ACorruptLatestFallsBackOnEveryRank) {
  add("ckpt-1", 1);
  add("ckpt-2", 2);
  coordinator_.download_errors["ckpt-2"] = grpc::StatusCode::DATA_LOSS;
  ThreadWorld world(2);
  world.run([&](dist::Communicator& comm) {
    RunCheckpoints c = checkpoints(comm);
    FetchedCheckpoint fetched = c.fetch("latest", "", CheckpointUse::kResume);
    EXPECT_EQ(fetched.id, "ckpt-1");
    EXPECT_EQ(take_decoded(fetched).state.epochs_done, 1);
  });
}

TEST_F(RunCheckpointsTest, NoUsableHeadCheckpointIsAnEmptyIdOnEveryRank) {
  add("ckpt-1", 1);
  coordinator_.best_id = "ckpt-1";
  coordinator_.download_errors["ckpt-1"] = FakeJobCoordinator::kChecksum;
  ThreadWorld world(2);
  world.run([&](dist::Communicator& comm) {
    RunCheckpoints c = checkpoints(comm);
    EXPECT_EQ(c.fetch("best", "head", CheckpointUse::kRestoreHead).id, "");
  });
}

TEST_F(RunCheckpointsTest, NothingToResumeFailsEveryRankAlike) {
  add("ckpt-1", 1);
  coordinator_.download_errors["ckpt-1"] = grpc::StatusCode::DATA_LOSS;
  ThreadWorld world(2);
  world.run([&](dist::Communicator& comm) {
    RunCheckpoints c = checkpoints(comm);
    try {
      c.fetch("latest", "", CheckpointUse::kResume);
      ADD_FAILURE() << "resumed";
    } catch (const SharedError& e) {
      EXPECT_THAT(e.what(), HasSubstr("rank 0: fetching checkpoint 'latest': --resume latest: no "
                                      "checkpoint of run job is usable; tried ckpt-1 (corrupt "
                                      "(DATA_LOSS at the coordinator))"));
    }
  });
}

TEST_F(RunCheckpointsTest, WhatMakesACheckpointUnusable) {
  add("ckpt-1", 1);
  EXPECT_TRUE(try_one("ckpt-1").none());
  coordinator_.download_errors["ckpt-1"] = grpc::StatusCode::DATA_LOSS;
  EXPECT_EQ(try_one("ckpt-1").detail, "corrupt (DATA_LOSS: checkpoint ckpt-1 is damaged)");
  coordinator_.download_errors["ckpt-1"] = FakeJobCoordinator::kChecksum;
  EXPECT_EQ(try_one("ckpt-1").brief, "corrupt (SHA-256 mismatch)");
  // Anything else says nothing about the checkpoint: thrown.
  coordinator_.download_errors["ckpt-1"] = grpc::StatusCode::UNAVAILABLE;
  EXPECT_THROW(try_one("ckpt-1"), coordinator::client::RpcError);

  coordinator_.add_checkpoint("ckpt-9", "head", 9, 90, 0.1, 9);
  coordinator_.blobs["ckpt-9"] = "not a pickle";
  const Unusable garbage = try_one("ckpt-9");
  EXPECT_EQ(garbage.brief, "not a checkpoint file");
  EXPECT_FALSE(fs::exists(dir_ / "checkpoints" / "ckpt-9.pt"));  // never mistaken for a good one

  const std::vector<char> model_file =
      models::serialize_model_file(metadata(), models::model_state_dict(*model_));
  coordinator_.blobs["ckpt-9"] = std::string(model_file.begin(), model_file.end());
  EXPECT_EQ(try_one("ckpt-9").brief, "not resumable (no training state)");
  EXPECT_TRUE(try_one("ckpt-9", CheckpointUse::kRestoreHead).none());
}

TEST_F(RunCheckpointsTest, ACheckpointOfAnotherRunIsRefused) {
  add("ckpt-1", 1);
  coordinator_.checkpoints[0].mutable_meta()->set_run("other");
  try {
    try_one("ckpt-1");
    FAIL() << "took another run's checkpoint";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "checkpoint ckpt-1 belongs to run 'other', not 'job'");
  }
}

TEST_F(RunCheckpointsTest, AFullOrAbsentStoreCostsOnlyThatCheckpoint) {
  ThreadWorld solo(1);
  RunCheckpoints c = checkpoints(solo.comm(0));
  v1::CheckpointMeta meta;
  meta.set_run("job");
  EXPECT_EQ(c.store(meta, {'x'}, "head epoch 1", "training continues without it"), "ckpt-1");
  for (const auto code : {grpc::StatusCode::RESOURCE_EXHAUSTED, grpc::StatusCode::UNAVAILABLE,
                          grpc::StatusCode::DEADLINE_EXCEEDED}) {
    coordinator_.put_error = code;
    EXPECT_EQ(c.store(meta, {'x'}, "head epoch 2", "training continues without it"), "");
  }
  coordinator_.put_error = grpc::StatusCode::INVALID_ARGUMENT;  // refused every time
  EXPECT_THROW(c.store(meta, {'x'}, "head epoch 3", "-"), coordinator::client::RpcError);
}

}  // namespace
}  // namespace xfer::trainer::train
