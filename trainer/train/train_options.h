// Everything `trainer train` is configured with, declared once: flags (or a
// --config file's [train] section) are parsed into TrainOptions and checked
// by validate(); the rest of the training job takes the struct.
//
// No LibTorch here: this file is included by the flag parsing and tests.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "trainer/dist/dist_flags.h"

namespace xfer::trainer::train {

// One phase of the recipe. Keras' inverse-time decay: the learning rate of
// the phase's optimizer step k (0-based, counted from the phase's start, as
// a freshly compiled Keras optimizer counts) is lr / (1 + decay * k).
struct PhaseSchedule {
  // REQUIRES: >= 0. 0 skips the phase.
  int epochs = 0;
  // REQUIRES: > 0.
  double lr = 1e-3;
  // REQUIRES: >= 0.
  double decay = 0.0;
};

// Our own kernels that replace LibTorch's on the CPU (docs/performance.md),
// each on by default. --disable-kernels switches them off one by one, so a
// suspected kernel can be ruled out on real data (bench/accuracy/run.sh).
struct KernelSwitches {
  // Train-mode BatchNorm + SiLU in one pass (batch_norm_silu_kernels.h).
  bool fused_batch_norm_silu = true;
  // Direct depthwise convolution on small maps (depthwise_conv_kernels.h).
  bool direct_depthwise = true;
  // Eval-mode BatchNorm folded into its convolution (conv_bn_activation.h).
  bool fold_frozen_batch_norm = true;
  // Adam's update in one pass (fused_adam.h).
  bool fused_adam = true;
  // Hash-mask dropout before the head (counter_dropout.h).
  bool counter_dropout = true;

  bool operator==(const KernelSwitches& other) const {
    return fused_batch_norm_silu == other.fused_batch_norm_silu &&
           direct_depthwise == other.direct_depthwise &&
           fold_frozen_batch_norm == other.fold_frozen_batch_norm &&
           fused_adam == other.fused_adam && counter_dropout == other.counter_dropout;
  }
};

// "none" (every kernel on), "all" (every kernel off), or a comma-separated
// list of the kernels to switch off: fused-bn-silu, direct-depthwise,
// fold-bn, fused-adam, counter-dropout. Throws std::invalid_argument quoting
// the text, the bad part and the names expected.
KernelSwitches parse_disabled_kernels(const std::string& text);
// The names of the kernels switched off, comma-separated; "none" when none.
std::string disabled_kernels_text(const KernelSwitches& kernels);

struct TrainOptions {
  // ---- connection
  // host:port of the coordinator. Default: 127.0.0.1:50051.
  std::string coordinator = "127.0.0.1:50051";
  // Bearer token (first line of the file). Default: none.
  std::string token_file;
  // PEM root certificate for a TLS coordinator. Default: none (plaintext).
  std::string tls_ca;
  // How long an unreachable coordinator is retried, at start and whenever it
  // goes away, before the job ends with an error. Default: 120 s.
  // REQUIRES: > 0.
  double coordinator_retry_s = 120.0;
  // Each rank tells the coordinator it is alive this often, from a thread of
  // its own (heartbeat.h); the coordinator fails a run one of whose ranks is
  // silent for its --rank-timeout (default 60 s), so keep this well below
  // that. 0: no heartbeats (then run the coordinator with --rank-timeout 0,
  // or it fails the run). Default: 5. REQUIRES: 0, or 0.1..30.
  double heartbeat_every_s = 5.0;
  // The run's name at the coordinator. REQUIRES: non-empty.
  std::string run_name;
  // Dataset name served by the coordinator (--dataset NAME=DIR there).
  // Default: cifar100.
  std::string dataset = "cifar100";

  // ---- model
  // efficientnet_b0 or torchscript. Default: efficientnet_b0.
  std::string arch = "efficientnet_b0";
  // Pretrained weights: a state dict (tools/export_weights.py) or a model
  // file of an earlier run. Only the base is taken: the head starts fresh.
  // Default: none (random initialisation).
  std::string weights;
  // TorchScript base (arch torchscript). Default: none.
  std::string base;
  // Classes of the new head. REQUIRES: 1..10000. Default: 100.
  int num_classes = 100;
  // Dropout before the head's linear layer. REQUIRES: [0, 1). Default: 0.2.
  double dropout = 0.2;

  // ---- input
  // Side images are resized to. REQUIRES: 8..1024. Default: 224.
  int image_size = 224;
  // Per-rank batch; the global batch is world size x this. REQUIRES: >= 1.
  // Default: 32.
  int batch_size = 32;
  // Per-rank batch for validation and test. 0: batch_size. Default: 0.
  int eval_batch_size = 0;

  // ---- schedule (run in the order full, head, finetune)
  PhaseSchedule full{0, 1e-3, 0.0};
  PhaseSchedule head{10, 1e-3, 0.0};
  PhaseSchedule finetune{15, 3e-6, 1e-6};
  // Kernels switched off (--disable-kernels, parsed by finalize into
  // `kernels`). Default: "none".
  std::string disable_kernels = "none";
  KernelSwitches kernels;
  // Adam's epsilon, every phase. Default: 1e-8, torch.optim.Adam's, so a
  // step is the step a PyTorch script takes from the same gradients
  // (tests/models/training_parity_test.cc); Keras' is 1e-7. REQUIRES: > 0.
  double adam_eps = 1e-8;

  // ---- data
  std::string train_split = "train[20%:]";
  std::string val_split = "train[:20%]";
  std::string test_split = "test";
  // See trainer/data/augment.h. Default: flip,brightness=0.4.
  std::string augment = "flip,brightness=0.4";
  // Batches each rank decodes ahead. REQUIRES: >= 1. Default: 4.
  int prefetch = 4;

  // ---- speed (docs/performance.md)
  // "channels-last" (NHWC: LibTorch's CPU convolutions run 1.6-2x faster)
  // or "nchw". Default: channels-last.
  std::string memory_format = "channels-last";
  // "fp32" or "bf16": bf16 autocast of forward passes (CUDA: tensor cores;
  // CPUs without bf16 instructions run it slower). Default: fp32.
  std::string precision = "fp32";
  // Head phase: train the head from cached pooled features of the frozen
  // base. "auto": when the augmentation allows it (no brightness); "on":
  // always, dropping brightness in the head phase (said in the log); "off".
  // Default: auto.
  std::string cache_features = "auto";
  // Memory for cached features per rank, MiB; rows past it spill to a file
  // in cache_dir. REQUIRES: >= 0. Default: 2048.
  std::int64_t cache_mb = 2048;
  // Folder of the spill files. Default: the system's temp folder.
  std::string cache_dir;

  // ---- run control
  // Seeds shuffling, augmentation, dropout and the head's initialisation.
  // Default: 0.
  std::uint64_t seed = 0;
  // "" (a new run), "latest", "best" or a checkpoint id. Default: "".
  std::string resume;
  // Where rank 0 writes model.pt, epochs.csv and the test report.
  // Default: runs/<run_name>.
  std::string run_dir;
  // Each rank reports its metrics every this many steps (and at the end of
  // every epoch). REQUIRES: >= 1. Default: 20.
  int report_every = 20;
  // Rank 0's progress line at most this often, seconds. 0: every step.
  // REQUIRES: >= 0. Default: 10.
  double progress_every_s = 10.0;
  // How rank 0 shows its progress line: "tty" redraws one line in place
  // (carriage return, no newline) on a terminal, "plain" logs a line each
  // time (Slurm logs, pipes), "auto" is tty when stderr (where the log goes)
  // is a terminal. REQUIRES: auto, tty or plain. Default: auto.
  std::string progress = "auto";
  // ---- test hooks (fault_injector.h; hidden from --help). Any of them set
  // puts TestFaults in the job's loop; none set, NoFaults.
  // Fault injection for tests: end the job as a crash would (MPI_Abort)
  // right after this many epochs (counted over all phases, this attempt)
  // have stored their checkpoints. 0: never. Default: 0.
  int fail_after_epochs = 0;
  // Fault injection for tests: the last rank acts as if it received SIGUSR1
  // after this many optimizer steps of this attempt (the job then stores a
  // mid-epoch checkpoint and exits kExitPreempted). 0: never. Default: 0.
  std::int64_t preempt_after_steps = 0;
  // For tests that must signal a job mid-epoch from outside (Slurm's
  // scancel): every optimizer step sleeps this long, so an epoch lasts
  // however fast the machine trains. 0: no delay. Default: 0.
  int step_delay_ms = 0;

  dist::DistOptions dist;
  std::string log_level = "info";
};

// Adds every flag of `trainer train` to `cmd`, bound to `options`.
void add_train_flags(CLI::App& cmd, TrainOptions& options);

// Fills defaults that depend on other fields (run_dir, eval_batch_size) and
// checks every REQUIRES above, plus: at least one epoch in some phase, arch
// torchscript iff --base, --resume not empty-or-valid. Throws
// std::invalid_argument naming the flag, its value and what was expected.
void finalize(TrainOptions& options);

// The options as a JSON object (flag names as keys), stored with the run.
std::string to_json(const TrainOptions& options);

}  // namespace xfer::trainer::train
