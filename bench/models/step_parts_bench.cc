// Two parts of a training step, LibTorch's way against ours, on one thread
// and the heap settings the trainer uses (dist::apply_device):
//   - dropout of one head batch (64 x 1280 pooled B0 features):
//     torch::dropout against CounterDropout (counter_dropout.h);
//   - one Adam step over EfficientNet-B0's parameters (a TransferModel in the
//     full phase, 100 classes, channels-last weights):
//     torch::optim::Adam::step against fused_adam_step (fused_adam.h).
// The two sides alternate in rounds; each figure is the median over rounds of
// the mean of `--iterations` calls.
//
//   build/bin/step_parts_bench [--rounds 5] [--iterations 50]
#include <torch/optim/adam.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "common/flags.h"
#include "trainer/dist/device.h"
#include "trainer/models/counter_dropout.h"
#include "trainer/models/transfer_model.h"
#include "trainer/train/fused_adam.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace models = xfer::trainer::models;

double mean_ms(int iterations, const std::function<void()>& call) {
  const auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) call();
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count() / iterations;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// A B0 TransferModel in the full phase whose every parameter has a gradient.
models::TransferModel make_model() {
  models::TransferModelOptions options;
  options.num_classes = 100;
  options.phase = models::Phase::kFull;
  models::TransferModel model(options);
  model->set_memory_format(torch::MemoryFormat::ChannelsLast);
  for (auto& p : model->parameters()) p.mutable_grad() = torch::randn_like(p) * 1e-3;
  return model;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  int iterations = 50;
  CLI::App app{"Dropout and Adam: LibTorch's against ours, one thread"};
  app.add_option("--rounds", rounds, "Rounds, alternating the two sides")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--iterations", iterations, "Timed calls per figure and round")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;

  xfer::trainer::dist::DeviceChoice cpu;
  cpu.cpu_threads = 1;
  xfer::trainer::dist::apply_device(cpu);
  torch::manual_seed(1);

  const torch::Tensor features = torch::randn({64, 1280});
  models::TransferModel ours = make_model();
  models::TransferModel theirs = make_model();
  std::int64_t count = 0;
  for (const auto& p : ours->parameters()) count += p.numel();
  torch::optim::Adam fused(ours->parameters(), torch::optim::AdamOptions(1e-3).eps(1e-7));
  torch::optim::Adam plain(theirs->parameters(), torch::optim::AdamOptions(1e-3).eps(1e-7));
  // Warm-up: every side once (Adam's state is created on its first step).
  torch::dropout(features, 0.2, true);
  models::counter_dropout(features, 0.2, true);
  plain.step();
  xfer::trainer::train::fused_adam_step(fused);

  std::vector<double> dropout_torch, dropout_ours, adam_torch, adam_ours;
  for (int r = 0; r < rounds; ++r) {
    dropout_torch.push_back(mean_ms(iterations, [&] { torch::dropout(features, 0.2, true); }));
    dropout_ours.push_back(
        mean_ms(iterations, [&] { models::counter_dropout(features, 0.2, true); }));
    adam_torch.push_back(mean_ms(iterations, [&] { plain.step(); }));
    adam_ours.push_back(mean_ms(iterations, [&] { xfer::trainer::train::fused_adam_step(fused); }));
  }
  std::printf("| part | LibTorch ms | ours ms | LibTorch / ours |\n|---|---:|---:|---:|\n");
  std::printf("| dropout p=0.2, 64 x 1280 | %.3f | %.3f | %.2f |\n", median(dropout_torch),
              median(dropout_ours), median(dropout_torch) / median(dropout_ours));
  std::printf("| Adam step, B0 (%lld parameters) | %.3f | %.3f | %.2f |\n",
              static_cast<long long>(count), median(adam_torch), median(adam_ours),
              median(adam_torch) / median(adam_ours));
  return 0;
}
