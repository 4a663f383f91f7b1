// Plays the metrics side of a small multi-rank training job against a real
// coordinator, through the client library, for the TensorBoard e2e test
// (tensorboard_e2e_test.sh): StartRun, then for each phase and epoch every
// rank's train steps (the last one ending the epoch) and one validation
// report per rank, optionally a test report after the last epoch, then
// EndRun. Each report's figures are a fixed function of (rank, phase, epoch,
// step), so a run repeated after a restart sends the same reports.
//
//   tensorboard_report_driver --coordinator HOST:PORT --run NAME --world-size 2
//       --phases head:2,finetune:2 [--first-global-step N] [--test] [--end]
#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "coordinator/client/coordinator_client.h"
#include "tests/coordinator/driver_util.h"

namespace {

namespace client = xfer::coordinator::client;
namespace v1 = xfer::v1;

struct Phase {
  std::string name;
  int epochs = 0;
};

std::vector<Phase> parse_phases(const std::string& text) {
  std::vector<Phase> phases;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto colon = item.find(':');
    if (colon == std::string::npos) {
      throw std::invalid_argument("--phases: '" + item + "' (expected NAME:EPOCHS)");
    }
    phases.push_back({item.substr(0, colon), std::stoi(item.substr(colon + 1))});
  }
  return phases;
}

constexpr int kTrainSteps = 3;
constexpr int kBatch = 16;

v1::MetricsReport make(const std::string& run, int rank, const std::string& phase, int epoch,
                       std::int64_t step, v1::SplitKind split, int salt, bool end) {
  v1::MetricsReport r;
  r.set_run(run);
  r.set_rank(rank);
  r.set_phase(phase);
  r.set_epoch(epoch);
  r.set_step(step);
  r.set_split(split);
  const int top1 = (rank * 7 + epoch * 3 + salt) % 9;
  r.set_correct_top1(top1);
  r.set_correct_top3(top1 + 4);
  r.set_samples(kBatch);
  r.set_loss_sum(kBatch * (2.0 / epoch + 0.1 * rank + 0.01 * salt + (phase == "head" ? 0.5 : 0)));
  r.set_images_per_second(100.0 + 10.0 * rank + epoch + salt +
                          (split == v1::SPLIT_KIND_TRAIN ? 0 : 1000));
  r.set_learning_rate(phase == "head" ? 1e-3 : 3e-6);
  r.set_end_of_epoch(end);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  client::ClientOptions options;
  std::string run;
  std::string phases_flag;
  int world_size = 2;
  std::int64_t global_step = 0;
  bool test = false;
  bool end = false;
  CLI::App app{"reports a small multi-rank job's metrics (TensorBoard e2e test)"};
  app.add_option("--coordinator", options.address)->required();
  app.add_option("--run", run)->required();
  app.add_option("--world-size", world_size);
  app.add_option("--phases", phases_flag)->required();
  app.add_option("--first-global-step", global_step);
  app.add_flag("--test", test, "Report a test evaluation after the last epoch");
  app.add_flag("--end", end, "End the run (COMPLETED) afterwards");
  CLI11_PARSE(app, argc, argv);
  return xfer::coordinator::testing::run_driver("tensorboard_report_driver", [&] {
    auto started = xfer::coordinator::testing::start_driver_run(options, run, world_size);
    client::CoordinatorClient& coordinator = *started;
    std::string last_phase;
    int last_epoch = 0;
    for (const Phase& phase : parse_phases(phases_flag)) {
      for (int epoch = 1; epoch <= phase.epochs; ++epoch) {
        for (int s = 1; s <= kTrainSteps; ++s) {
          ++global_step;
          for (int rank = 0; rank < world_size; ++rank) {
            coordinator.report(make(run, rank, phase.name, epoch, global_step, v1::SPLIT_KIND_TRAIN,
                                    s, s == kTrainSteps));
          }
        }
        for (int rank = 0; rank < world_size; ++rank) {
          coordinator.report(
              make(run, rank, phase.name, epoch, global_step, v1::SPLIT_KIND_VALIDATION, 5, true));
        }
        last_phase = phase.name;
        last_epoch = epoch;
      }
    }
    if (test) {
      for (int rank = 0; rank < world_size; ++rank) {
        coordinator.report(
            make(run, rank, last_phase, last_epoch, global_step, v1::SPLIT_KIND_TEST, 6, true));
      }
    }
    if (end) coordinator.end_run(run, v1::RUN_STATE_COMPLETED, "driver done");
    std::cout << "reported up to global step " << global_step << "\n";
  });
}
