// Flags of gpu_step_bench, parsed and validated once (no torch here: this
// file compiles in a second, the torch translation units take ~40 s each).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace xfer::bench {

// One timed configuration: a phase at an image size and batch.
struct StepConfig {
  // "head" | "finetune" | "full" (TransferModel's phases).
  std::string phase;
  // Square image side. REQUIRES: >= 32 (B0 downsamples 32x).
  int64_t size = 0;
  // REQUIRES: >= 1.
  int64_t batch = 0;
};

struct StepBenchOptions {
  // "cuda" or "cpu". Default: "cuda".
  std::string device = "cuda";
  // --configs PHASE:SIZE:BATCH[,...]. Default: finetune at 224 px, batch 64.
  std::vector<StepConfig> configs = {{"finetune", 224, 64}};
  // --precisions fp32,bf16: each config runs once per entry, in this order.
  // bf16 is autocast of forward and loss (backward and Adam outside it).
  // Default: fp32.
  std::vector<std::string> precisions = {"fp32"};
  // Model weights and inputs in channels-last (NHWC). Default: true.
  bool channels_last = true;
  // Untimed steps per config (first-use costs, allocator growth). Default: 10.
  int warmup = 10;
  // Timed windows of `steps` back-to-back steps, synchronised at both ends;
  // the figure is the median window. Defaults: 5 windows of 10 steps.
  int windows = 5;
  int steps = 10;
  // Adam steps timed alone after the windows (its share of a step). Default: 10.
  int optimizer_steps = 10;
  // Classifier width. Default: 100 (CIFAR-100).
  int64_t num_classes = 100;
  // Intra-op threads (CPU); 0: LibTorch's default. Default: 0.
  int threads = 0;
  // cuDNN autotuning (torch.backends.cudnn.benchmark). Default: false, as
  // PyTorch's default and our trainer.
  bool cudnn_benchmark = false;
  // Seed of weights and inputs. Default: 0.
  int64_t seed = 0;
  // Parity mode (no timing): write our weights, inputs, eval-mode logits
  // and gradients to this folder for torch_step_bench.py --parity.
  std::string parity_dir;
};

// Parses argv. Returns the options, or nullopt after printing the error (or
// --help) to stderr/stdout; *exit_code is then 2 (bad flag) or 0 (--help).
std::optional<StepBenchOptions> parse_step_bench_options(int argc, char** argv, int* exit_code);

}  // namespace xfer::bench
