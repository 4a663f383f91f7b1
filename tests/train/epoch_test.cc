// An epoch of the training job against a real coordinator in this process
// (tests/coordinator/service_test_util.h) on one rank (a thread world of
// one): the step loop (trainer/train/epoch_loop.h), the end of the epoch
// with its checkpoint and epochs.csv (epoch_end.h), a preempted epoch's
// mid-epoch checkpoint, and the head phase from cached features
// (cached_head.h). A small EfficientNet-B0 at 32 px in the head phase.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/optim/adam.h>
#include <torch/types.h>

#include <csignal>
#include <fstream>
#include <sstream>
#include <vector>

#include "coordinator/client/coordinator_client.h"
#include "tests/coordinator/service_test_util.h"
#include "tests/train/small_model.h"
#include "tests/train/thread_world.h"
#include "trainer/dist/reducer.h"
#include "trainer/train/cached_head.h"
#include "trainer/train/checkpoint_codec.h"
#include "trainer/train/epoch_end.h"
#include "trainer/train/epoch_loop.h"
#include "trainer/train/fault_injector.h"
#include "trainer/train/fused_adam.h"
#include "trainer/train/job_coordinator.h"
#include "trainer/train/preemption.h"
#include "trainer/train/run_checkpoints.h"

namespace xfer::trainer::train {
namespace {

namespace fs = std::filesystem;

class EpochTest : public coordinator::server::testing::CoordinatorFixture {
 protected:
  void SetUp() override {
    CoordinatorFixture::SetUp();
    start();
    start_run("job", 1);
    options_.run_name = "job";
    options_.num_classes = 10;
    options_.image_size = 32;
    options_.batch_size = 25;
    options_.eval_batch_size = 25;
    options_.train_split = "train[0:100]";
    options_.val_split = "train[100:150]";
    options_.prefetch = 2;
    options_.report_every = 2;
    options_.progress_every_s = 0;
    options_.run_dir = (root_ / "run").string();
    fs::create_directories(options_.run_dir);
    coordinator::client::ClientOptions client_options;
    client_options.address = coordinator_->address();
    client_ = std::make_unique<coordinator::client::CoordinatorClient>(client_options);
    calls_ = std::make_unique<ClientJobCoordinator>(*client_);
    metadata_.num_classes = 10;
    metadata_.labels.resize(10, "x");
    model_ = testing::small_model(models::Phase::kHead, 10);
    model_->set_memory_format(torch::MemoryFormat::ChannelsLast);
    reducer_ = std::make_unique<dist::Reducer>(*model_, world_.comm(0));
    std::vector<torch::Tensor> trainable;
    for (const auto& p : model_->parameters()) {
      if (p.requires_grad()) trainable.push_back(p);
    }
    adam_ = make_adam(trainable, 1e-3, 1e-8);
    checkpoints_ =
        std::make_unique<RunCheckpoints>(*calls_, world_.comm(0), "job", options_.run_dir);
    loop_ = std::make_unique<EpochLoop>(
        EpochLoopParts{options_, world_.comm(0), world_.comm(0), *client_, *calls_, *model_,
                       *reducer_, tensors_, preemption_, faults_, printer_, state_});
    end_ = std::make_unique<EpochEnd>(EpochEndParts{options_, world_.comm(0), *checkpoints_, *loop_,
                                                    *model_, metadata_, printer_, state_});
    loop_->begin_phase(*adam_, data::AugmentSpec{}, nullptr);
    end_->begin_phase();
  }

  std::string epochs_csv() const {
    std::ifstream in(fs::path(options_.run_dir) / "epochs.csv");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  const PhasePlan plan_{models::Phase::kHead, {3, 1e-3, 0.0}, 0};
  testing::ThreadWorld world_{1};
  TrainOptions options_;
  std::unique_ptr<coordinator::client::CoordinatorClient> client_;
  std::unique_ptr<JobCoordinator> calls_;
  models::TransferModel model_{nullptr};
  std::unique_ptr<dist::Reducer> reducer_;
  std::unique_ptr<torch::optim::Adam> adam_;
  const BatchTensors tensors_{torch::kCPU, torch::MemoryFormat::ChannelsLast, 32};
  PreemptionWatch preemption_;
  NoFaults faults_;
  std::vector<std::string> lines_;
  ProgressPrinter printer_{ProgressMode::kPlain,
                           [this](const std::string& line) { lines_.push_back(line); },
                           [](const std::string&) {}};
  TrainingState state_;
  models::ModelMetadata metadata_ = testing::metadata();
  std::unique_ptr<RunCheckpoints> checkpoints_;
  std::unique_ptr<EpochLoop> loop_;
  std::unique_ptr<EpochEnd> end_;
};

TEST_F(EpochTest, AnEpochTrainsEveryBatchThenStoresItsCheckpointAndRow) {
  const EpochResult result = loop_->train(plan_, 1, 0);
  EXPECT_FALSE(result.preempted);
  EXPECT_EQ(result.steps_done, 4);
  EXPECT_EQ(result.totals.samples, 100);
  EXPECT_EQ(state_.global_step, 4);
  EXPECT_EQ(state_.phase_step, 4);
  EXPECT_EQ(loop_->steps_this_attempt(), 4);
  EXPECT_DOUBLE_EQ(loop_->last_lr(), 1e-3);
  EXPECT_EQ(lines_.size(), 4u);  // a progress line every step (--progress-every 0)
  EXPECT_THAT(lines_.back(), ::testing::StartsWith("head 1/3 4/4"));

  const std::string id = end_->finish(plan_, 1, result, *adam_);
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(state_.epochs_done, 1);
  EXPECT_EQ(state_.global_epoch, 1);
  EXPECT_FALSE(state_.mid_epoch());
  const std::string csv = epochs_csv();
  EXPECT_THAT(csv, ::testing::StartsWith("phase,epoch,step,"));
  EXPECT_THAT(csv, ::testing::HasSubstr("\nhead,1,4,"));
  EXPECT_THAT(csv, ::testing::EndsWith("," + id + "\n"));
  const v1::CheckpointInfo best = client_->best_checkpoint("job", "head");
  EXPECT_EQ(best.id(), id);
  EXPECT_DOUBLE_EQ(best.meta().metric_value(), state_.val_loss);
}

TEST_F(EpochTest, APreemptedEpochStopsAtTheAgreedStepAndStoresWhereItStands) {
  PreemptionWatch::request_locally(SIGUSR1);
  const EpochResult result = loop_->train(plan_, 1, 0);
  EXPECT_TRUE(result.preempted);
  EXPECT_EQ(result.steps_done, 1);  // agreed after the first step
  EXPECT_EQ(result.totals.samples, 25);
  const std::string id = end_->store_mid_epoch(plan_, 1, result, *adam_);
  ASSERT_FALSE(id.empty());
  FetchedCheckpoint fetched = checkpoints_->fetch(id, "", CheckpointUse::kResume);
  const DecodedCheckpoint decoded = take_decoded(fetched);
  EXPECT_TRUE(decoded.state.mid_epoch());
  EXPECT_EQ(decoded.state.epoch_steps_done, 1);
  EXPECT_EQ(decoded.state.epochs_done, 0);
  ASSERT_EQ(decoded.state.epoch_partial.size(), 1u);
  EXPECT_EQ(decoded.state.epoch_partial[0].samples, 25);
  EXPECT_TRUE(epochs_csv().empty());  // no epoch ended
}

TEST_F(EpochTest, TheCachedHeadComputesTheBaseOnceThenStreamsLabelsOnly) {
  int base_runs = 0;
  data::AugmentSpec flip;
  flip.flip = true;
  CachedHead head(
      std::make_unique<FeatureCache>(model_->feature_channels(), 1 << 24, root_ / "spill.bin"),
      flip, 0, tensors_, [&](const torch::Tensor& input) {
        ++base_runs;
        return model_->pooled_features(input);
      });
  loop_->begin_phase(*adam_, flip, &head);
  loop_->train(plan_, 1, 0);
  EXPECT_EQ(base_runs, 4);
  EXPECT_TRUE(head.holds_train());
  const EpochResult second = loop_->train(plan_, 2, 0);
  EXPECT_EQ(base_runs, 4);  // every (sample, flip) was cached
  EXPECT_EQ(second.totals.samples, 100);
  loop_->evaluate(options_.val_split, "val", "head", 2);
  loop_->evaluate(options_.val_split, "val", "head", 2);
  EXPECT_EQ(base_runs, 6);  // the val split once
  EXPECT_TRUE(head.holds_val());
}

}  // namespace
}  // namespace xfer::trainer::train
