// trainer: one rank of a data-parallel transfer-learning job.
//
//   trainer --version          versions of everything it was built with
//   trainer build-info         the same, plus what it finds at run time
//   trainer predict ...        classify an image file with trained weights
//
// The `train` subcommand arrives with the training job.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "common/flags.h"
#include "common/logging.h"
#include "trainer/build_info.h"
#include "trainer/predict/predict.h"
#include "trainer/predict/report.h"
#include "xfer/config.h"

namespace {

struct PredictFlags {
  xfer::trainer::predict::PredictOptions options;
  bool json = false;
  std::string log_level = "info";
};

CLI::App* add_predict(CLI::App& app, PredictFlags& flags) {
  auto& o = flags.options;
  auto* cmd = app.add_subcommand(
      "predict", "Classify an image file (PNG or JPEG) and print the top-k classes");
  cmd->add_option("--weights", o.weights,
                  "State dict (torch.save) or model file from the training job")
      ->required();
  cmd->add_option("--arch", o.arch,
                  "efficientnet_b0 or torchscript (default: the model file's, "
                  "else efficientnet_b0)")
      ->check(CLI::IsMember({"efficientnet_b0", "torchscript"}));
  cmd->add_option("--base", o.base, "TorchScript base from tools/export_weights.py");
  cmd->add_option("--num-classes", o.num_classes,
                  "Classes of the head (default: the file's; must match it)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--labels", o.labels_file,
                  "Class names, one per line (default: the model file's, else class_<i>)");
  cmd->add_option("--image-size", o.image_size,
                  "Side the image is resized to (default: the model file's, else 224)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--image", o.image, "Image to classify (PNG or JPEG)")->required();
  cmd->add_option("--top-k", o.top_k, "How many classes to show")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_flag("--json", flags.json,
                R"(Print {"predictions":[{"index":I,"label":"NAME","probability":P},...]})");
  xfer::common::add_log_level_flag(*cmd, flags.log_level);
  return cmd;
}

int run_predict(const PredictFlags& flags) {
  namespace predict = xfer::trainer::predict;
  xfer::common::init_logging({"predict", std::nullopt, flags.log_level});
  try {
    const predict::PredictResult result = predict::predict(flags.options);
    std::cout << (flags.json ? predict::format_json(result.top)
                             : predict::format_text(flags.options.image, result.top));
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xfer trainer: one rank of a data-parallel transfer-learning job"};
  app.set_version_flag("--version", [] {
    return xfer::trainer::format_build_info(xfer::trainer::collect_build_info());
  });
  xfer::common::add_config_flag(app);  // subcommand flags go in its section: [predict]
  app.require_subcommand(1);
  auto* build_info = app.add_subcommand(
      "build-info", "Print the libraries this binary was built with and what it finds at run time");
  PredictFlags predict_flags;
  auto* predict = add_predict(app, predict_flags);
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;

  if (*build_info) {
    std::cout << xfer::trainer::format_build_info(xfer::trainer::collect_build_info());
    return 0;
  }
  if (*predict) return run_predict(predict_flags);
  return 1;
}
