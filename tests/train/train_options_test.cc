#include "trainer/train/train_options.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/flags.h"

namespace xfer::trainer::train {
namespace {

// Parses `trainer GLOBAL... train ARGS...` as the binary does.
TrainOptions parse(std::vector<std::string> args, std::vector<std::string> global = {}) {
  CLI::App app;
  common::add_config_flag(app);
  TrainOptions options;
  auto* cmd = app.add_subcommand("train");
  add_train_flags(*cmd, options);
  args.insert(args.begin(), "train");
  args.insert(args.begin(), global.begin(), global.end());
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  app.parse(reversed);
  return options;
}

TEST(TrainOptions, DefaultsAreTheSeedRecipe) {
  TrainOptions o = parse({"--run-name", "r"});
  finalize(o);
  EXPECT_EQ(o.num_classes, 100);
  EXPECT_DOUBLE_EQ(o.dropout, 0.2);
  EXPECT_EQ(o.image_size, 224);
  EXPECT_EQ(o.batch_size, 32);
  EXPECT_EQ(o.eval_batch_size, 32);
  EXPECT_EQ(o.head.epochs, 10);
  EXPECT_DOUBLE_EQ(o.head.lr, 1e-3);
  EXPECT_DOUBLE_EQ(o.head.decay, 0.0);
  EXPECT_EQ(o.finetune.epochs, 15);
  EXPECT_DOUBLE_EQ(o.finetune.lr, 3e-6);
  EXPECT_DOUBLE_EQ(o.finetune.decay, 1e-6);
  EXPECT_EQ(o.full.epochs, 0);
  EXPECT_EQ(o.train_split, "train[20%:]");
  EXPECT_EQ(o.val_split, "train[:20%]");
  EXPECT_EQ(o.test_split, "test");
  EXPECT_EQ(o.augment, "flip,brightness=0.4");
  EXPECT_EQ(o.run_dir, "runs/r");
}

TEST(TrainOptions, FlagsOverride) {
  TrainOptions o = parse({"--run-name", "r", "--head-epochs", "2", "--lr-decay", "0.5",
                          "--full-epochs", "3", "--full-lr", "0.01", "--batch-size", "8",
                          "--eval-batch-size", "64", "--resume", "latest", "--threads", "1"});
  finalize(o);
  EXPECT_EQ(o.head.epochs, 2);
  EXPECT_DOUBLE_EQ(o.finetune.decay, 0.5);
  EXPECT_EQ(o.full.epochs, 3);
  EXPECT_DOUBLE_EQ(o.full.lr, 0.01);
  EXPECT_EQ(o.batch_size, 8);
  EXPECT_EQ(o.eval_batch_size, 64);
  EXPECT_EQ(o.resume, "latest");
  EXPECT_EQ(o.dist.device.cpu_threads, 1);
}

TEST(TrainOptions, ConfigFileSection) {
  const std::string path = ::testing::TempDir() + "/train_options_test.toml";
  {
    std::ofstream out(path);
    out << "[train]\nrun-name = \"from-file\"\nbatch-size = 16\nhead-epochs = 4\n";
  }
  TrainOptions o = parse({"--head-epochs", "5"}, {"--config", path});
  finalize(o);
  EXPECT_EQ(o.run_name, "from-file");
  EXPECT_EQ(o.batch_size, 16);
  EXPECT_EQ(o.head.epochs, 5);  // the command line wins
  std::remove(path.c_str());
}

TEST(TrainOptions, BadValuesAreRejectedWithTheFlagName) {
  EXPECT_THROW(parse({"--run-name", "r", "--batch-size", "0"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--run-name", "r", "--arch", "resnet"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--run-name", "r", "--dropout", "1"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--head-epochs", "1"}), CLI::RequiredError);
}

TEST(TrainOptions, FinalizeNamesWhatIsWrong) {
  auto message = [](std::vector<std::string> args) {
    TrainOptions o = parse(std::move(args));
    try {
      finalize(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({"--run-name", "r", "--head-epochs", "0", "--finetune-epochs", "0"})
                .find("at least one epoch"),
            std::string::npos);
  EXPECT_NE(message({"--run-name", "r", "--arch", "torchscript"}).find("--base"),
            std::string::npos);
  EXPECT_NE(message({"--run-name", "r", "--base", "b.pt"}).find("--arch torchscript"),
            std::string::npos);
  EXPECT_NE(message({"--run-name", "r", "--test-split", ""}).find("--test-split"),
            std::string::npos);
}

TEST(TrainOptions, DisableKernelsSwitchesEachKernelByName) {
  EXPECT_EQ(parse_disabled_kernels("none"), KernelSwitches{});
  const KernelSwitches all = parse_disabled_kernels("all");
  EXPECT_FALSE(all.fused_batch_norm_silu || all.direct_depthwise || all.fold_frozen_batch_norm ||
               all.fused_adam || all.counter_dropout);
  EXPECT_EQ(disabled_kernels_text(all),
            "fused-bn-silu,direct-depthwise,fold-bn,fused-adam,counter-dropout");
  const KernelSwitches two = parse_disabled_kernels("fused-adam,direct-depthwise");
  EXPECT_FALSE(two.fused_adam);
  EXPECT_FALSE(two.direct_depthwise);
  EXPECT_TRUE(two.fused_batch_norm_silu && two.fold_frozen_batch_norm && two.counter_dropout);
  EXPECT_EQ(disabled_kernels_text(two), "direct-depthwise,fused-adam");
  EXPECT_EQ(disabled_kernels_text(KernelSwitches{}), "none");

  TrainOptions o = parse({"--run-name", "r", "--disable-kernels", "counter-dropout"});
  finalize(o);
  EXPECT_FALSE(o.kernels.counter_dropout);
  EXPECT_TRUE(o.kernels.fused_adam);
  EXPECT_NE(to_json(o).find("\"disable-kernels\":\"counter-dropout\""), std::string::npos);

  for (const std::string bad :
       {"fused_adam", "fused-adam,", "", ",fold-bn", "fold-bn,,fused-adam"}) {
    try {
      parse_disabled_kernels(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const std::invalid_argument& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("--disable-kernels '" + bad + "'"), std::string::npos) << message;
      EXPECT_NE(message.find("fused-bn-silu, direct-depthwise"), std::string::npos) << message;
    }
  }
}

TEST(TrainOptions, AdamEpsilonMustBePositive) {
  TrainOptions o = parse({"--run-name", "r"});
  o.adam_eps = 0;
  EXPECT_THROW(finalize(o), std::invalid_argument);
  EXPECT_THROW(parse({"--run-name", "r", "--adam-eps", "-1"}), CLI::ValidationError);
}

TEST(TrainOptions, JsonNamesTheFlags) {
  TrainOptions o = parse({"--run-name", "r", "--seed", "7"});
  finalize(o);
  const std::string json = to_json(o);
  EXPECT_NE(json.find("\"run-name\":\"r\""), std::string::npos);
  EXPECT_NE(json.find("\"seed\":7"), std::string::npos);
  EXPECT_NE(json.find("\"lr-decay\""), std::string::npos);
}

}  // namespace
}  // namespace xfer::trainer::train
