// TransferModel: phases (what trains, what stays bit-identical), parameter
// counts, and the TorchScript base against torchvision.
#include "trainer/models/transfer_model.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "tests/models/test_util.h"

namespace xfer::trainer::models {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

std::map<std::string, torch::Tensor> snapshot(const torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> copy;
  for (const auto& item : model_state_dict(model)) copy[item.key()] = item.value().clone();
  return copy;
}

// Two Adam steps on a fixed random batch, the model in train mode.
void train_steps(TransferModel& model, int64_t image_size) {
  torch::manual_seed(3);
  model->train();
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-2));
  const auto images = torch::randn({4, 3, image_size, image_size});
  const auto labels = torch::randint(model->num_classes(), {4}, torch::kLong);
  for (int step = 0; step < 2; ++step) {
    adam.zero_grad();
    torch::nn::functional::cross_entropy(model->forward(images), labels).backward();
    adam.step();
  }
}

// A fresh network's BatchNorm running stats (0 and 1) do not normalise
// anything in eval mode: activations explode and saturate, and whole blocks get
// exactly zero gradient. Set them from one batch, as pretraining would have.
void calibrate_batchnorm(TransferModel& model, int64_t image_size) {
  const Phase phase = model->phase();
  model->set_phase(Phase::kFull);
  model->train();
  torch::manual_seed(5);
  measure_batch_norm_statistics(*model, [&] {
    model->forward(torch::randn({8, 3, image_size, image_size}));
  });
  model->set_phase(phase);
}

bool is_head(const std::string& name) { return name.rfind("classifier.", 0) == 0; }

TransferModelOptions b0_options(Phase phase) {
  TransferModelOptions options;
  options.num_classes = 100;
  options.phase = phase;
  // Without these, a dropped block could leave a tensor unchanged by chance.
  options.stochastic_depth_prob = 0;
  options.dropout = 0;
  return options;
}

TEST(ModelsTransferModel, ParameterCountsPerPhase) {
  TransferModel model(b0_options(Phase::kHead));
  // B0 features: 5,288,548 - 1,281,000 (ImageNet head).
  constexpr int64_t kBase = 4007548;
  EXPECT_EQ(model->parameter_counts().trainable, 128100);
  EXPECT_EQ(model->parameter_counts().frozen, kBase);
  model->set_phase(Phase::kFinetune);
  const auto finetune = model->parameter_counts();
  EXPECT_EQ(finetune.trainable + finetune.frozen, kBase + 128100);
  EXPECT_EQ(finetune.frozen, 42016);  // BatchNorm weight + bias, as torchvision counts them
  model->set_phase(Phase::kFull);
  EXPECT_EQ(model->parameter_counts().frozen, 0);
  EXPECT_EQ(parse_phase("finetune"), Phase::kFinetune);
  EXPECT_THROW(parse_phase("all"), std::invalid_argument);
}

TEST(ModelsTransferModel, TrainKeepsPhaseModes) {
  TransferModel model(b0_options(Phase::kFinetune));
  model->train();
  for (const auto& m : model->modules(false)) {
    if (m->as<torch::nn::BatchNorm2d>()) {
      EXPECT_FALSE(m->is_training());
    }
    if (m->as<torch::nn::Conv2d>()) {
      EXPECT_TRUE(m->is_training());
    }
  }
  model->set_phase(Phase::kHead);
  model->train();
  for (const auto& m : model->named_modules()) {
    if (m.key().rfind("features", 0) == 0) {
      EXPECT_FALSE(m.value()->is_training()) << m.key();
    }
  }
}

TEST(ModelsTransferModel, ChannelsLastReachesEveryConvolutionWeight) {
  // 1x1 and depthwise weights ([O, I, 1, 1], [C, 1, k, k]) count as
  // contiguous in both formats; their strides must still say channels-last,
  // or convolution falls back to NCHW and reorders every activation.
  TransferModel model(b0_options(Phase::kFull));
  model->set_memory_format(torch::MemoryFormat::ChannelsLast);
  int convolutions = 0;
  for (const auto& p : model->named_parameters()) {
    if (p.value().dim() != 4) continue;
    ++convolutions;
    EXPECT_EQ(p.value().suggest_memory_format(), torch::MemoryFormat::ChannelsLast) << p.key();
  }
  EXPECT_EQ(convolutions, 81);  // B0's convolutions, squeeze-excitation included
  // The same values, and back again.
  const auto before = snapshot(*model);
  model->set_memory_format(torch::MemoryFormat::Contiguous);
  for (const auto& p : model->named_parameters()) {
    if (p.value().dim() != 4) continue;
    EXPECT_EQ(p.value().suggest_memory_format(), torch::MemoryFormat::Contiguous) << p.key();
    EXPECT_TRUE(torch::equal(p.value(), before.at(p.key()))) << p.key();
  }
}

TEST(ModelsTransferModel, HeadPhaseLeavesBaseBitIdentical) {
  TransferModel model(b0_options(Phase::kHead));
  const auto before = snapshot(*model);
  train_steps(model, 32);
  for (const auto& [name, tensor] : snapshot(*model)) {
    if (is_head(name)) {
      if (name.find("weight") != std::string::npos) {
        EXPECT_FALSE(torch::equal(tensor, before.at(name))) << name;
      }
    } else {
      EXPECT_TRUE(torch::equal(tensor, before.at(name))) << name << " changed in phase head";
    }
  }
}

TEST(ModelsTransferModel, FinetuneFreezesBatchNormOnly) {
  TransferModel model(b0_options(Phase::kFinetune));
  calibrate_batchnorm(model, 32);
  const auto before = snapshot(*model);
  train_steps(model, 32);
  const auto after = snapshot(*model);
  int bn_tensors = 0;
  for (const auto& [name, tensor] : after) {
    const bool bn = name.find("running_") != std::string::npos ||
                    name.find("num_batches_tracked") != std::string::npos ||
                    (name.rfind("features.", 0) == 0 && tensor.dim() == 1 &&
                     name.find(".fc") == std::string::npos);
    if (bn) {
      ++bn_tensors;
      EXPECT_TRUE(torch::equal(tensor, before.at(name))) << name << " changed in finetune";
    } else if (name.find("weight") != std::string::npos) {
      EXPECT_FALSE(torch::equal(tensor, before.at(name))) << name << " did not train";
    }
  }
  EXPECT_EQ(bn_tensors, 49 * 5);  // 49 BatchNorm2d in B0
}

TEST(ModelsTransferModel, FullPhaseChangesEverything) {
  TransferModel model(b0_options(Phase::kFull));
  const auto before = snapshot(*model);
  train_steps(model, 32);
  for (const auto& [name, tensor] : snapshot(*model)) {
    EXPECT_FALSE(torch::equal(tensor, before.at(name))) << name << " unchanged in full";
  }
}

TEST(ModelsTransferModel, TorchScriptResnet18MatchesTorchvisionAndFreezes) {
  TempDir dir;
  ASSERT_TRUE(testing::make_reference("resnet18", dir, "--num-classes 10"));
  TransferModelOptions options;
  options.arch = "torchscript";
  options.base_path = dir.file("base.pt");
  options.num_classes = 10;
  options.dry_run_image_size = 32;
  TransferModel model(options);
  EXPECT_EQ(model->feature_channels(), 512);
  EXPECT_EQ(model->parameter_counts().trainable, 512 * 10 + 10);
  const LoadResult result = model->load_weights(dir.file("weights.pt"));
  EXPECT_TRUE(result.head_loaded);

  const StateDict reference = read_state_dict_file(dir.file("reference.pt"));
  model->eval();
  {
    torch::NoGradGuard no_grad;
    const double error =
        testing::relative_error(model->forward(reference["input"]), reference["logits"]);
    std::cout << "torchscript resnet18 + head vs torchvision: relative error " << error << "\n";
    EXPECT_GT(testing::relative_error(reference["logits"][0], reference["logits"][1]), 0.05)
        << "the reference hardly depends on its input";
    EXPECT_LT(error, 1e-5);
  }

  // BatchNorm found by type inside the script: finetune leaves it alone.
  EXPECT_EQ(model->batchnorm_tensors().size(), 20u * 5);
  model->set_phase(Phase::kFinetune);
  const auto before = snapshot(*model);
  train_steps(model, 32);
  for (const auto& [name, tensor] : snapshot(*model)) {
    const bool bn =
        name.find("bn") != std::string::npos || name.find("downsample.1") != std::string::npos;
    if (bn) {
      EXPECT_TRUE(torch::equal(tensor, before.at(name))) << name << " changed in finetune";
    } else if (name.find("conv") != std::string::npos) {
      EXPECT_FALSE(torch::equal(tensor, before.at(name))) << name << " did not train";
    }
  }

  options.base_path = dir.file("missing.pt");
  try {
    TransferModel broken(options);
    ADD_FAILURE() << "missing base accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot load TorchScript base " + options.base_path));
  }
}

TEST(ModelsTransferModel, ExportWeightsToolOutputsLoad) {
  TempDir dir;
  const std::string tool = std::string("/usr/bin/python3 ") + XFER_MODELS_EXPORT_TOOL;
  ASSERT_EQ(
      std::system((tool + " --random --arch efficientnet_b0 --out " + dir.file("b0.pt")).c_str()),
      0);
  ASSERT_EQ(
      std::system(
          (tool + " --random --arch mobilenet_v3_large --out " + dir.file("mnv3.pt")).c_str()),
      0);
  TransferModelOptions options;
  options.num_classes = 5;
  TransferModel b0(options);
  const LoadResult loaded = b0->load_weights(dir.file("b0.pt"));
  EXPECT_FALSE(loaded.head_loaded);  // 1000 classes in the file, 5 wanted
  options.arch = "torchscript";
  options.base_path = dir.file("mnv3.pt");
  options.dry_run_image_size = 32;
  TransferModel mnv3(options);
  EXPECT_EQ(mnv3->feature_channels(), 1280);  // its hidden 960 -> 1280 layer stays
  EXPECT_EQ(mnv3->parameter_counts().trainable, 1280 * 5 + 5);
  mnv3->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(mnv3->forward(torch::zeros({2, 3, 32, 32})).sizes(), (std::vector<int64_t>{2, 5}));
}

}  // namespace
}  // namespace xfer::trainer::models
