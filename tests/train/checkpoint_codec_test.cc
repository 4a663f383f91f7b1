#include "trainer/train/checkpoint_codec.h"

#include <gtest/gtest.h>
#include <torch/types.h>

#include <cmath>
#include <string>
#include <vector>

#include "tests/train/small_model.h"
#include "trainer/models/model_file.h"
#include "trainer/models/state_dict.h"
#include "trainer/models/transfer_model.h"

namespace xfer::trainer::train {
namespace {

using testing::adam_over;
using testing::metadata;
using testing::small_model;
using testing::train_step;

TEST(CheckpointCodec, RoundTripResumesTheOptimizerExactly) {
  // Finetune: base and head train, so the optimizer holds state for most
  // tensors. Dropout off (eval) so the two continuations see the same graph.
  models::TransferModel model = small_model(models::Phase::kFinetune);
  auto adam = adam_over(model);
  model->eval();
  train_step(model, *adam, 10);
  train_step(model, *adam, 11);

  TrainingState state;
  state.phase = "finetune";
  state.epochs_done = 2;
  state.global_step = 17;
  state.phase_step = 2;
  state.global_epoch = 5;
  state.val_loss = 1.25;
  state.world_size = 2;
  state.batch_size = 4;
  state.seed = 9;
  const std::vector<char> bytes = encode_checkpoint(metadata(), *model, *adam, state);

  const DecodedCheckpoint decoded = decode_checkpoint(bytes, "test checkpoint");
  ASSERT_TRUE(decoded.has_training_state);
  EXPECT_EQ(decoded.state.phase, "finetune");
  EXPECT_EQ(decoded.state.global_step, 17);
  EXPECT_EQ(decoded.state.phase_step, 2);
  EXPECT_EQ(decoded.state.seed, 9U);
  ASSERT_TRUE(decoded.weights.metadata.has_value());
  EXPECT_EQ(decoded.weights.metadata->labels[4], "e");

  // A fresh model and optimizer restored from the bytes continue exactly as
  // the original does.
  models::TransferModel restored = small_model(models::Phase::kFinetune);
  models::load_state_dict(*restored, decoded.weights.state_dict, "test checkpoint");
  auto restored_adam = adam_over(restored);
  restore_optimizer(*restored_adam, *restored, decoded.optimizer_state, "test checkpoint");
  restored->eval();
  train_step(model, *adam, 12);
  train_step(restored, *restored_adam, 12);
  const auto a = model->named_parameters();
  const auto b = restored->named_parameters();
  for (const auto& item : a) {
    EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  }
}

TEST(CheckpointCodec, ACheckpointIsAModelFile) {
  models::TransferModel model = small_model(models::Phase::kHead);
  auto adam = adam_over(model);
  train_step(model, *adam, 3);
  TrainingState state;
  state.phase = "head";
  const std::vector<char> bytes = encode_checkpoint(metadata(), *model, *adam, state);
  const models::WeightsFile file = models::parse_weights(bytes, "checkpoint");
  ASSERT_TRUE(file.metadata.has_value());
  EXPECT_EQ(file.metadata->num_classes, 5);
  EXPECT_EQ(file.state_dict.size(), models::model_state_dict(*model).size());
}

TEST(CheckpointCodec, MissingOptimizerStateNamesTheTensor) {
  models::TransferModel head = small_model(models::Phase::kHead);
  auto adam = adam_over(head);
  train_step(head, *adam, 3);
  TrainingState state;
  state.phase = "head";
  const DecodedCheckpoint decoded =
      decode_checkpoint(encode_checkpoint(metadata(), *head, *adam, state), "ckpt-7");
  // The head-phase state has no entry for base parameters, which fine-tuning trains.
  models::TransferModel finetune = small_model(models::Phase::kFinetune);
  auto finetune_adam = adam_over(finetune);
  try {
    restore_optimizer(*finetune_adam, *finetune, decoded.optimizer_state, "ckpt-7");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt-7: no optimizer state for trainable parameter "
                                         "'features."),
              std::string::npos)
        << e.what();
  }
}

TEST(CheckpointCodec, PlainModelFileHasNoTrainingState) {
  models::TransferModel model = small_model(models::Phase::kHead);
  const std::vector<char> bytes =
      models::serialize_model_file(metadata(), models::model_state_dict(*model));
  EXPECT_FALSE(decode_checkpoint(bytes, "model.pt").has_training_state);
}

TEST(CheckpointCodec, MalformedTrainingStateIsNamed) {
  EXPECT_THROW(training_state_from_json("{}", "x"), std::runtime_error);
  try {
    training_state_from_json(R"({"phase":"warmup","epochs_done":1,"global_step":1,
      "phase_step":1,"global_epoch":1,"val_loss":1,"val_top1":0,"world_size":1,
      "batch_size":1,"seed":0})",
                             "ckpt-3");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt-3"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("warmup"), std::string::npos);
  }
}

TEST(CheckpointCodec, MidEpochStateRoundTrips) {
  TrainingState s;
  s.phase = "head";
  s.epochs_done = 1;
  s.global_step = 40;
  s.phase_step = 40;
  s.global_epoch = 1;
  s.val_loss = std::nan("");
  s.world_size = 2;
  s.batch_size = 16;
  s.seed = 11;
  s.epoch_steps_done = 10;
  s.epoch_seconds = 2.5;
  s.epoch_partial = {{12.25, 30, 70, 160}, {11.5, 31, 72, 160}};
  const TrainingState back = training_state_from_json(to_json(s), "x");
  EXPECT_TRUE(back.mid_epoch());
  EXPECT_EQ(back.epoch_steps_done, 10);
  EXPECT_DOUBLE_EQ(back.epoch_seconds, 2.5);
  ASSERT_EQ(back.epoch_partial.size(), 2U);
  EXPECT_DOUBLE_EQ(back.epoch_partial[1].loss_sum, 11.5);
  EXPECT_EQ(back.epoch_partial[1].top1, 31);
  EXPECT_EQ(back.epoch_partial[1].top3, 72);
  EXPECT_EQ(back.epoch_partial[0].samples, 160);
  EXPECT_TRUE(std::isnan(back.val_loss));

  // An epoch-boundary state writes none of it and reads back as such.
  TrainingState boundary = s;
  boundary.epoch_steps_done = 0;
  boundary.epoch_partial.clear();
  EXPECT_EQ(to_json(boundary).find("epoch_partial"), std::string::npos);
  EXPECT_FALSE(training_state_from_json(to_json(boundary), "x").mid_epoch());
}

TEST(CheckpointCodec, MidEpochStateNeedsEveryRanksCounts) {
  TrainingState s;
  s.phase = "finetune";
  s.world_size = 3;
  s.epoch_steps_done = 4;
  s.epoch_partial = {{1.0, 1, 1, 16}, {1.0, 1, 1, 16}};  // 2 of 3 ranks
  try {
    training_state_from_json(to_json(s), "ckpt-9");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt-9"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("2 ranks' counts for world size 3"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace xfer::trainer::train
