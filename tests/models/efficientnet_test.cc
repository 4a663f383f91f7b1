// EfficientNet-B0 vs torchvision, and the state-dict load rules.
#include "trainer/models/efficientnet.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/utils.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "tests/models/test_util.h"
#include "trainer/models/state_dict.h"
#include "trainer/models/transfer_model.h"

namespace xfer::trainer::models {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

std::string load_error(torch::nn::Module& model, const StateDict& dict) {
  try {
    load_state_dict(model, dict, "weights.pt");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

TEST(ModelsEfficientNet, MakeDivisibleMatchesTorchvision) {
  EXPECT_EQ(make_divisible(32, 8), 32);
  EXPECT_EQ(make_divisible(32 * 1.1, 8), 32);  // 35.2 -> 32 (within 10%)
  EXPECT_EQ(make_divisible(16 * 6, 8), 96);
  EXPECT_EQ(make_divisible(20, 8), 24);  // ties round up
  EXPECT_EQ(make_divisible(3, 8), 8);    // never below the divisor
}

TEST(ModelsEfficientNet, StateDictNamesAndShapesMatchTorchvision) {
  EfficientNetB0 model;
  const StateDict dict = model_state_dict(*model);
  // 5,288,548 parameters in torchvision's efficientnet_b0 with 1000 classes.
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();
  EXPECT_EQ(parameters, 5288548);
  ASSERT_NE(dict.find("features.1.0.block.1.fc1.weight"), nullptr);
  EXPECT_EQ(shape_string(dict["features.1.0.block.1.fc1.weight"]), "[8, 32, 1, 1]");
  EXPECT_EQ(shape_string(dict["features.2.0.block.1.0.weight"]), "[96, 1, 3, 3]");
  EXPECT_EQ(shape_string(dict["features.8.1.running_var"]), "[1280]");
  EXPECT_EQ(shape_string(dict["classifier.1.weight"]), "[1000, 1280]");
  EXPECT_NE(dict.find("features.0.1.num_batches_tracked"), nullptr);
}

TEST(ModelsEfficientNet, MatchesTorchvisionLogits) {
  TempDir dir;
  ASSERT_TRUE(testing::make_reference("efficientnet_b0", dir));
  const StateDict reference = read_state_dict_file(dir.file("reference.pt"));
  const torch::Tensor input = reference["input"];
  const torch::Tensor expected = reference["logits"];
  const torch::Tensor truth = reference["logits_float64"];

  // Unfolded, ours runs torchvision's float32 operations in torchvision's
  // order: the logits agree to the last bits.
  EfficientNetOptions unfolded_options;
  unfolded_options.fold_frozen_batch_norm = false;
  EfficientNetB0 model(unfolded_options);
  const LoadResult result =
      load_state_dict(*model, read_state_dict_file(dir.file("weights.pt")), "weights.pt");
  EXPECT_TRUE(result.head_loaded);
  EXPECT_EQ(result.tensors_loaded, static_cast<int64_t>(model_state_dict(*model).size()));
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor logits = model->forward(input);
  ASSERT_EQ(logits.sizes(), expected.sizes());
  // The reference must depend on its input, or a wrong layer could match it.
  EXPECT_GT(testing::relative_error(expected[0], expected[1]), 0.05);
  const double error = testing::relative_error(logits, expected);
  std::cout << "efficientnet_b0 (unfolded) vs torchvision: relative error " << error << "\n";
  EXPECT_LT(error, 1e-5);

  // Folded (the default, in eval mode) the float32 rounding differs, and this
  // network, with its randomly moved BatchNorm statistics (scales up to
  // ~350), amplifies any rounding change to ~1e-3 in the logits (torchvision
  // channels-last against torchvision NCHW: 5e-4). So the folded logits are
  // held to the float64 answer: no further from it than torchvision's float32
  // (1.2e-3 here), within a factor 2.
  const double float32_error = testing::relative_error(expected, truth);
  EfficientNetB0 folded;
  load_state_dict(*folded, read_state_dict_file(dir.file("weights.pt")), "weights.pt");
  folded->eval();
  const double folded_error = testing::relative_error(folded->forward(input), truth);
  std::cout << "vs float64: torchvision " << float32_error << ", ours folded " << folded_error
            << "\n";
  EXPECT_LT(folded_error, 2 * float32_error);

  // The same weights through TransferModel (same names, same head), unfolded
  // and folded, in both memory formats.
  TransferModelOptions options;
  options.num_classes = 1000;
  options.fold_frozen_batch_norm = false;
  TransferModel unfolded_transfer(options);
  EXPECT_TRUE(unfolded_transfer->load_weights(dir.file("weights.pt")).head_loaded);
  unfolded_transfer->eval();
  EXPECT_LT(testing::relative_error(unfolded_transfer->forward(input), expected), 1e-5);
  options.fold_frozen_batch_norm = true;
  TransferModel transfer(options);
  EXPECT_TRUE(transfer->load_weights(dir.file("weights.pt")).head_loaded);
  transfer->eval();
  EXPECT_LT(testing::relative_error(transfer->forward(input), truth), 2 * float32_error);
  transfer->set_memory_format(torch::MemoryFormat::ChannelsLast);
  const double channels_last_error = testing::relative_error(
      transfer->forward(input.contiguous(torch::MemoryFormat::ChannelsLast)), truth);
  std::cout << "ours folded, channels-last, vs float64: " << channels_last_error << "\n";
  EXPECT_LT(channels_last_error, 2 * float32_error);
  transfer->set_memory_format(torch::MemoryFormat::Contiguous);

  // Another class count: the base loads, the head stays new.
  options.num_classes = 10;
  TransferModel other(options);
  const LoadResult partial = other->load_weights(dir.file("weights.pt"));
  EXPECT_FALSE(partial.head_loaded);
  EXPECT_THAT(partial.head_note, HasSubstr("classifier.1.weight"));
  EXPECT_THAT(partial.head_note, HasSubstr("[1000, 1280]"));
  EXPECT_THAT(partial.head_note, HasSubstr("[10, 1280]"));
  EXPECT_TRUE(torch::equal(other->named_parameters()["features.8.0.weight"],
                           transfer->named_parameters()["features.8.0.weight"]));
}

class ModelsLoadErrors : public ::testing::Test {
 protected:
  ModelsLoadErrors() : model_(EfficientNetOptions{/*num_classes=*/10}) {
    for (const auto& item : model_state_dict(*model_))
      dict_.insert(item.key(), item.value().clone());
  }
  EfficientNetB0 model_;
  StateDict dict_;
};

TEST_F(ModelsLoadErrors, MissingTensorIsNamed) {
  dict_.erase("features.8.1.running_var");
  EXPECT_THAT(load_error(*model_, dict_),
              HasSubstr("missing tensor features.8.1.running_var (expected shape [1280])"));
}

TEST_F(ModelsLoadErrors, WrongShapeGivesExpectedAndFound) {
  const torch::Tensor before = model_->named_parameters()["features.1.0.block.0.0.weight"].clone();
  dict_["features.1.0.block.0.0.weight"] = torch::zeros({32, 1, 5, 5});
  dict_["features.0.0.weight"] = torch::ones({32, 3, 3, 3});
  EXPECT_THAT(load_error(*model_, dict_),
              HasSubstr("tensor features.1.0.block.0.0.weight has shape [32, 1, 5, 5], "
                        "expected [32, 1, 3, 3]"));
  // A failed load changes nothing.
  EXPECT_FALSE(
      torch::equal(model_->named_parameters()["features.0.0.weight"], torch::ones({32, 3, 3, 3})));
  EXPECT_TRUE(torch::equal(model_->named_parameters()["features.1.0.block.0.0.weight"], before));
}

TEST_F(ModelsLoadErrors, UnknownTensorIsAnError) {
  dict_.insert("features.9.0.weight", torch::zeros({4}));
  EXPECT_THAT(load_error(*model_, dict_),
              HasSubstr("has tensor features.9.0.weight (shape [4]) that the model does not have"));
}

TEST_F(ModelsLoadErrors, ClassifierWithOtherClassCountIsReplacedNotAnError) {
  dict_["classifier.1.weight"] = torch::zeros({1000, 1280});
  dict_["classifier.1.bias"] = torch::zeros({1000});
  const LoadResult result = load_state_dict(*model_, dict_, "weights.pt");
  EXPECT_FALSE(result.head_loaded);
  EXPECT_THAT(result.head_note, HasSubstr("[1000, 1280]"));
  EXPECT_FALSE(
      torch::equal(model_->named_parameters()["classifier.1.weight"], torch::zeros({10, 1280})));
}

TEST_F(ModelsLoadErrors, FileRoundTripsAndBadFilesGiveClearErrors) {
  TempDir dir;
  const std::string good = dir.file("good.pt");
  write_state_dict_file(dict_, good);
  EXPECT_TRUE(load_state_dict(*model_, read_state_dict_file(good), good).head_loaded);

  const auto size = std::filesystem::file_size(good);
  const std::string truncated = dir.file("truncated.pt");
  std::filesystem::copy_file(good, truncated);
  std::filesystem::resize_file(truncated, size / 2);
  EXPECT_THROW(
      {
        try {
          read_state_dict_file(truncated);
        } catch (const std::runtime_error& e) {
          EXPECT_THAT(e.what(), HasSubstr("cannot read " + truncated));
          EXPECT_THAT(e.what(), HasSubstr("as a torch.save file (truncated, corrupted"));
          throw;
        }
      },
      std::runtime_error);

  const std::string noise = dir.file("noise.pt");
  {
    std::mt19937 rng(7);
    std::ofstream out(noise, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(rng() & 0xff));
  }
  try {
    read_state_dict_file(noise);
    ADD_FAILURE() << "random bytes were read as a state dict";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot read " + noise));
  }

  const std::string tensor_file = dir.file("tensor.pt");
  {
    const auto bytes = torch::pickle_save(torch::IValue(torch::zeros({3})));
    std::ofstream out(tensor_file, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  try {
    read_state_dict_file(tensor_file);
    ADD_FAILURE() << "a tensor file was read as a state dict";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("holds a Tensor, expected a state dict"));
  }

  try {
    read_state_dict_file(dir.file("absent.pt"));
    ADD_FAILURE() << "absent file read";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot open " + dir.file("absent.pt")));
  }
}

}  // namespace
}  // namespace xfer::trainer::models
