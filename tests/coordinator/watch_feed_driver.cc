// Plays a small multi-rank job's metrics against a real coordinator, slowly
// enough for `coordctl watch` to follow it, for watch_live_e2e_test.sh:
// StartRun; writes --started-file; with --go-file, waits until that file
// exists (the test makes it once the watcher has drawn its first frame: an
// event, not a delay; --go-timeout-s bounds the wait); then for each epoch
// every rank's train steps (each carrying steps_in_epoch, the last one ending
// the epoch; rank --slow-rank at a quarter of the others' images/s) and one
// validation report per rank; then EndRun with --end.
//
//   watch_feed_driver --coordinator HOST:PORT --token-file F --run NAME
//       [--world-size 2] [--epochs 2] [--steps 4] [--step-ms 200]
//       [--slow-rank 1] [--end completed|failed|none] --started-file F
//       [--go-file F [--go-timeout-s 120]]
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

#include "coordinator/client/coordinator_client.h"
#include "tests/coordinator/driver_util.h"

namespace {

namespace client = xfer::coordinator::client;
namespace v1 = xfer::v1;

constexpr int kBatch = 8;
constexpr int kValidationBatches = 2;

v1::MetricsReport make(const std::string& run, int rank, int epoch, std::int64_t step,
                       std::int64_t steps, v1::SplitKind split, double images_per_second,
                       bool end) {
  v1::MetricsReport r;
  r.set_run(run);
  r.set_rank(rank);
  r.set_phase("head");
  r.set_epoch(epoch);
  r.set_step(step);
  r.set_steps_in_epoch(steps);
  r.set_split(split);
  const int samples = split == v1::SPLIT_KIND_TRAIN ? kBatch : kBatch * kValidationBatches;
  r.set_samples(samples);
  r.set_correct_top1(samples / 4);
  r.set_correct_top3(samples / 2);
  r.set_loss_sum(samples * 2.0 / epoch);
  r.set_images_per_second(images_per_second);
  r.set_data_wait_ms(1.0 + rank);
  r.set_learning_rate(1e-3);
  r.set_end_of_epoch(end);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  client::ClientOptions options;
  std::string run;
  std::string started_file;
  std::string end = "completed";
  int world_size = 2;
  int epochs = 2;
  int steps = 4;
  int step_ms = 200;
  std::string go_file;
  int go_timeout_s = 120;
  int slow_rank = 1;
  CLI::App app{"reports a small job's metrics slowly (coordctl watch e2e test)"};
  app.add_option("--coordinator", options.address)->required();
  app.add_option("--token-file", options.token_file)->required();
  app.add_option("--run", run)->required();
  app.add_option("--started-file", started_file)->required();
  app.add_option("--world-size", world_size)->check(CLI::Range(1, 64));
  app.add_option("--epochs", epochs)->check(CLI::Range(1, 100));
  app.add_option("--steps", steps)->check(CLI::Range(1, 1000));
  app.add_option("--step-ms", step_ms)->check(CLI::Range(0, 10000));
  app.add_option("--go-file", go_file, "report only once this file exists");
  app.add_option("--go-timeout-s", go_timeout_s)->check(CLI::Range(1, 3600));
  app.add_option("--slow-rank", slow_rank, "this rank reports a quarter of the img/s (-1: none)");
  app.add_option("--end", end)->check(CLI::IsMember({"completed", "failed", "none"}));
  CLI11_PARSE(app, argc, argv);
  return xfer::coordinator::testing::run_driver("watch_feed_driver", [&] {
    auto started = xfer::coordinator::testing::start_driver_run(options, run, world_size);
    client::CoordinatorClient& coordinator = *started;
    std::ofstream(started_file) << run << "\n";
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(go_timeout_s);
    while (!go_file.empty() && !std::filesystem::exists(go_file)) {
      if (std::chrono::steady_clock::now() > give_up) {
        throw std::runtime_error("no --go-file " + go_file + " after " +
                                 std::to_string(go_timeout_s) + " s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      for (int s = 1; s <= steps; ++s) {
        for (int rank = 0; rank < world_size; ++rank) {
          const double ips = rank == slow_rank ? 50.0 : 200.0 + rank;
          coordinator.report(
              make(run, rank, epoch, s, steps, v1::SPLIT_KIND_TRAIN, ips, s == steps));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
      }
      for (int rank = 0; rank < world_size; ++rank) {
        const double ips = rank == slow_rank ? 100.0 : 400.0 + rank;
        coordinator.report(make(run, rank, epoch, kValidationBatches, kValidationBatches,
                                v1::SPLIT_KIND_VALIDATION, ips, true));
      }
    }
    if (end == "completed") coordinator.end_run(run, v1::RUN_STATE_COMPLETED, "driver done");
    if (end == "failed") coordinator.end_run(run, v1::RUN_STATE_FAILED, "driver: injected failure");
    std::cout << "reported " << epochs << " epochs of " << steps << " steps\n";
  });
}
