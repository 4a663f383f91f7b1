// trainer: one rank of a data-parallel transfer-learning job.
//
//   trainer --version          versions of everything it was built with
//   trainer build-info         the same, plus what it finds at run time
//   trainer predict ...        classify an image file with trained weights
//   trainer train ...          one rank of the training job (under mpirun/srun)
#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <string>

#include "common/flags.h"
#include "common/logging.h"
#include "coordinator/client/coordinator_client.h"
#include "trainer/build_info.h"
#include "trainer/dist/world.h"
#include "trainer/predict/predict.h"
#include "trainer/predict/report.h"
#include "trainer/train/collective.h"
#include "trainer/train/preemption.h"
#include "trainer/train/train_options.h"
#include "trainer/train/training_job.h"
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

// Tells the coordinator the run failed, trying for a few seconds at most:
// the job is ending either way.
void mark_run_failed(const xfer::trainer::train::TrainOptions& options,
                     const std::string& message) {
  namespace client = xfer::coordinator::client;
  try {
    client::ClientOptions o;
    o.address = options.coordinator;
    o.token_file = options.token_file;
    o.tls_ca_file = options.tls_ca;
    o.call_deadline = std::chrono::seconds(5);
    o.reconnect_window = std::chrono::seconds(5);
    client::CoordinatorClient(std::move(o))
        .end_run(options.run_name, xfer::v1::RUN_STATE_FAILED, message);
  } catch (const std::exception& e) {
    spdlog::warn("could not mark run {} FAILED at the coordinator: {}", options.run_name, e.what());
  }
}

int run_train(xfer::trainer::train::TrainOptions& options, int* argc, char*** argv) {
  namespace train = xfer::trainer::train;
  namespace dist = xfer::trainer::dist;
  xfer::common::init_logging({"train", std::nullopt, options.log_level});
  try {
    train::finalize(options);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  std::unique_ptr<dist::World> world;
  try {
    world = dist::World::init(argc, argv);
  } catch (const std::exception& e) {
    spdlog::error("cannot start MPI: {}", e.what());
    return 1;
  }
  xfer::common::set_log_rank(world->rank());
  train::JobProgress progress;
  try {
    const train::JobOutcome outcome = train::run_training_job(options, *world, progress);
    // The job is over: a late preemption signal (Slurm's timer, a forwarded
    // SIGUSR1) must not kill the ranks on their way out.
    std::signal(SIGUSR1, SIG_IGN);
    return outcome == train::JobOutcome::kPreempted ? train::kExitPreempted : 0;
  } catch (const train::SharedError& e) {
    // Every rank got the same error at the same point: they end together.
    if (world->rank() == 0) {
      spdlog::error("the job failed: {}", e.what());
      if (progress.run_started) mark_run_failed(options, e.what());
    }
    return 1;
  } catch (const std::exception& e) {
    // This rank alone failed: the others may be inside a collective, so the
    // whole job is ended (MPI_Abort) after saying why.
    const std::string message = world->where() + ": " + e.what();
    if (progress.run_started) mark_run_failed(options, message);
    dist::abort_job("the job failed on " + message, 1);
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
  xfer::trainer::train::TrainOptions train_options;
  auto* train = app.add_subcommand(
      "train", "One rank of the data-parallel training job (run it under mpirun or srun)");
  xfer::trainer::train::add_train_flags(*train, train_options);
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;

  if (*build_info) {
    std::cout << xfer::trainer::format_build_info(xfer::trainer::collect_build_info());
    return 0;
  }
  if (*predict) return run_predict(predict_flags);
  if (*train) return run_train(train_options, &argc, &argv);
  return 1;
}
