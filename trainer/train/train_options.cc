#include "trainer/train/train_options.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>

#include "common/flags.h"

namespace xfer::trainer::train {
namespace {

void add_phase_flags(CLI::App& cmd, const std::string& phase, PhaseSchedule& schedule,
                     const std::string& decay_flag, const std::string& what) {
  cmd.add_option("--" + phase + "-epochs", schedule.epochs, what + ": epochs (0 skips the phase)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--" + phase + "-lr", schedule.lr, what + ": Adam learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option(decay_flag, schedule.decay,
                 what + ": inverse-time decay, lr / (1 + decay * step of the phase)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

[[noreturn]] void bad(const std::string& flag, const std::string& value,
                      const std::string& expected) {
  throw std::invalid_argument("--" + flag + " " + value + ": expected " + expected);
}

struct KernelName {
  const char* name;
  bool KernelSwitches::*on;
};
constexpr KernelName kKernelNames[] = {
    {"fused-bn-silu", &KernelSwitches::fused_batch_norm_silu},
    {"direct-depthwise", &KernelSwitches::direct_depthwise},
    {"fold-bn", &KernelSwitches::fold_frozen_batch_norm},
    {"fused-adam", &KernelSwitches::fused_adam},
    {"counter-dropout", &KernelSwitches::counter_dropout},
};

std::string kernel_names() {
  std::string out;
  for (const auto& k : kKernelNames) out += std::string(out.empty() ? "" : ", ") + k.name;
  return out;
}

}  // namespace

KernelSwitches parse_disabled_kernels(const std::string& text) {
  KernelSwitches kernels;
  if (text == "none") return kernels;
  if (text == "all") {
    for (const auto& k : kKernelNames) kernels.*k.on = false;
    return kernels;
  }
  std::stringstream parts(text);
  std::string part;
  bool any = false;
  while (std::getline(parts, part, ',')) {
    const KernelName* found = nullptr;
    for (const auto& k : kKernelNames) {
      if (part == k.name) found = &k;
    }
    if (found == nullptr) {
      throw std::invalid_argument("--disable-kernels '" + text + "': unknown kernel '" + part +
                                  "' (expected none, all, or a comma-separated list of " +
                                  kernel_names() + ")");
    }
    kernels.*found->on = false;
    any = true;
  }
  if (!any || text.back() == ',') {
    throw std::invalid_argument("--disable-kernels '" + text + "': empty kernel name (expected " +
                                "none, all, or a comma-separated list of " + kernel_names() + ")");
  }
  return kernels;
}

std::string disabled_kernels_text(const KernelSwitches& kernels) {
  std::string out;
  for (const auto& k : kKernelNames) {
    if (!(kernels.*k.on)) out += std::string(out.empty() ? "" : ",") + k.name;
  }
  return out.empty() ? "none" : out;
}

void add_train_flags(CLI::App& cmd, TrainOptions& o) {
  cmd.add_option("--coordinator", o.coordinator, "host:port of the coordinator")
      ->capture_default_str();
  cmd.add_option("--token-file", o.token_file, "file holding the coordinator's bearer token");
  cmd.add_option("--tls-ca", o.tls_ca, "PEM root certificate of a TLS coordinator");
  cmd.add_option("--coordinator-retry", o.coordinator_retry_s,
                 "seconds an unreachable coordinator is retried before the job fails")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--heartbeat-every", o.heartbeat_every_s,
                 "seconds between each rank's heartbeats to the coordinator (0: none); keep it "
                 "well below the coordinator's --rank-timeout")
      ->capture_default_str();
  cmd.add_option("--run-name", o.run_name, "name of the run at the coordinator")->required();
  cmd.add_option("--dataset", o.dataset, "dataset name the coordinator serves")
      ->capture_default_str();

  cmd.add_option("--arch", o.arch, "efficientnet_b0 or torchscript")
      ->check(CLI::IsMember({"efficientnet_b0", "torchscript"}))
      ->capture_default_str();
  cmd.add_option("--weights", o.weights,
                 "pretrained weights (state dict or model file); the base is loaded, the head "
                 "starts fresh");
  cmd.add_option("--base", o.base, "TorchScript base from tools/export_weights.py");
  cmd.add_option("--num-classes", o.num_classes, "classes of the new head")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  cmd.add_option("--dropout", o.dropout, "dropout before the head's linear layer")
      ->check(CLI::Range(0.0, 0.999999))
      ->capture_default_str();

  cmd.add_option("--image-size", o.image_size, "side images are resized to")
      ->check(CLI::Range(8, 1024))
      ->capture_default_str();
  cmd.add_option("--batch-size", o.batch_size, "batch per rank (global batch = ranks x this)")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd.add_option("--eval-batch-size", o.eval_batch_size,
                 "batch per rank for validation and test (0: --batch-size)")
      ->check(CLI::Range(0, 65536))
      ->capture_default_str();

  add_phase_flags(cmd, "full", o.full, "--full-lr-decay", "training from scratch");
  add_phase_flags(cmd, "head", o.head, "--head-lr-decay", "head training");
  add_phase_flags(cmd, "finetune", o.finetune, "--lr-decay", "fine-tuning");
  cmd.add_option("--adam-eps", o.adam_eps, "Adam's epsilon (every phase)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  cmd.add_option("--train-split", o.train_split, "split spec trained on")->capture_default_str();
  cmd.add_option("--val-split", o.val_split, "split spec validated on every epoch")
      ->capture_default_str();
  cmd.add_option("--test-split", o.test_split, "split spec evaluated at the end")
      ->capture_default_str();
  cmd.add_option("--augment", o.augment, "training augmentation: flip,brightness=DELTA or none")
      ->capture_default_str();
  cmd.add_option("--prefetch", o.prefetch, "batches each rank decodes ahead")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();

  cmd.add_option("--memory-format", o.memory_format,
                 "tensor layout of images and convolutions: channels-last (faster) or nchw")
      ->check(CLI::IsMember({"channels-last", "nchw"}))
      ->capture_default_str();
  cmd.add_option("--precision", o.precision,
                 "fp32, or bf16 autocast of the forward passes (for GPUs with bf16 tensor cores)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd.add_option("--cache-features", o.cache_features,
                 "head phase: train the head from cached base features: auto (when the "
                 "augmentation has no brightness), on (drops brightness in the head phase), off")
      ->check(CLI::IsMember({"auto", "on", "off"}))
      ->capture_default_str();
  cmd.add_option("--cache-mb", o.cache_mb, "memory for cached features per rank, MiB (then disk)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--cache-dir", o.cache_dir,
                 "folder for cached features past --cache-mb (default: the temp folder)");
  cmd.add_option(
         "--disable-kernels", o.disable_kernels,
         "switch our CPU kernels off to rule one out: none, all, or a list of " + kernel_names())
      ->capture_default_str();
  cmd.add_option("--seed", o.seed, "seed of shuffling, augmentation, dropout, initialisation")
      ->capture_default_str();
  cmd.add_option("--resume", o.resume,
                 "continue the run from a stored checkpoint: latest, best or a checkpoint id; "
                 "auto: latest if the run has one, else start it (for requeued jobs)");
  cmd.add_option("--run-dir", o.run_dir,
                 "where rank 0 writes model.pt, epochs.csv and the report (default runs/RUN)");
  cmd.add_option("--report-every", o.report_every, "report metrics every N steps")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  cmd.add_option("--progress-every", o.progress_every_s,
                 "seconds between rank 0's progress lines (0: every step)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd.add_option("--progress", o.progress,
                 "rank 0's progress line: tty (redrawn in place), plain (a log line each time) "
                 "or auto (tty when stderr is a terminal)")
      ->check(CLI::IsMember({"auto", "tty", "plain"}))
      ->capture_default_str();
  // Test hooks (fault_injector.h), hidden from --help as the coordinator's
  // are (docs/training.md, "Test hooks").
  cmd.add_option("--fail-after-epochs", o.fail_after_epochs,
                 "tests: crash the job (MPI_Abort) after N epochs of this attempt")
      ->check(CLI::NonNegativeNumber)
      ->group("");
  cmd.add_option("--preempt-after-steps", o.preempt_after_steps,
                 "tests: the last rank acts as if it got SIGUSR1 after N steps of this attempt")
      ->check(CLI::NonNegativeNumber)
      ->group("");
  cmd.add_option("--test-step-delay-ms", o.step_delay_ms,
                 "tests: sleep this long after every optimizer step (to signal a job mid-epoch)")
      ->check(CLI::Range(0, 10000))
      ->group("");
  dist::add_dist_flags(cmd, o.dist);
  common::add_log_level_flag(cmd, o.log_level);
}

void finalize(TrainOptions& o) {
  if (o.run_name.empty()) bad("run-name", "''", "a non-empty name");
  if (o.dataset.empty()) bad("dataset", "''", "the name of a dataset the coordinator serves");
  if (!std::isfinite(o.heartbeat_every_s) ||
      (o.heartbeat_every_s != 0.0 && (o.heartbeat_every_s < 0.1 || o.heartbeat_every_s > 30.0))) {
    std::ostringstream value;
    value << o.heartbeat_every_s;
    bad("heartbeat-every", value.str(),
        "0 (no heartbeats) or 0.1..30 seconds, well below the coordinator's --rank-timeout "
        "(default 60)");
  }
  if (o.arch == "torchscript" && o.base.empty()) {
    bad("arch", o.arch, "--base FILE too (the TorchScript base from tools/export_weights.py)");
  }
  if (o.arch != "torchscript" && !o.base.empty()) {
    bad("base", o.base, "--arch torchscript (a base file is only used with it)");
  }
  if (o.full.epochs + o.head.epochs + o.finetune.epochs == 0) {
    bad("head-epochs", "0", "at least one epoch in some phase (--full/--head/--finetune-epochs)");
  }
  for (const auto* schedule : {&o.full, &o.head, &o.finetune}) {
    if (!std::isfinite(schedule->lr) || schedule->lr <= 0) {
      bad("head-lr", std::to_string(schedule->lr), "a positive learning rate");
    }
    if (!std::isfinite(schedule->decay) || schedule->decay < 0) {
      bad("lr-decay", std::to_string(schedule->decay), "a decay >= 0");
    }
  }
  o.kernels = parse_disabled_kernels(o.disable_kernels);
  if (!std::isfinite(o.adam_eps) || o.adam_eps <= 0) {
    std::ostringstream value;
    value << o.adam_eps;
    bad("adam-eps", value.str(), "a positive number such as 1e-8");
  }
  if (o.eval_batch_size == 0) o.eval_batch_size = o.batch_size;
  if (o.run_dir.empty()) o.run_dir = "runs/" + o.run_name;
  if (o.train_split.empty()) bad("train-split", "''", "a split spec such as train[20%:]");
  if (o.val_split.empty()) bad("val-split", "''", "a split spec such as train[:20%]");
  if (o.test_split.empty()) bad("test-split", "''", "a split spec such as test");
}

std::string to_json(const TrainOptions& o) {
  nlohmann::json j;
  j["coordinator"] = o.coordinator;
  j["run-name"] = o.run_name;
  j["heartbeat-every"] = o.heartbeat_every_s;
  j["dataset"] = o.dataset;
  j["arch"] = o.arch;
  j["weights"] = o.weights;
  j["base"] = o.base;
  j["num-classes"] = o.num_classes;
  j["dropout"] = o.dropout;
  j["image-size"] = o.image_size;
  j["batch-size"] = o.batch_size;
  j["eval-batch-size"] = o.eval_batch_size;
  j["full-epochs"] = o.full.epochs;
  j["full-lr"] = o.full.lr;
  j["full-lr-decay"] = o.full.decay;
  j["head-epochs"] = o.head.epochs;
  j["head-lr"] = o.head.lr;
  j["head-lr-decay"] = o.head.decay;
  j["finetune-epochs"] = o.finetune.epochs;
  j["finetune-lr"] = o.finetune.lr;
  j["lr-decay"] = o.finetune.decay;
  j["adam-eps"] = o.adam_eps;
  j["disable-kernels"] = disabled_kernels_text(o.kernels);
  j["train-split"] = o.train_split;
  j["val-split"] = o.val_split;
  j["test-split"] = o.test_split;
  j["augment"] = o.augment;
  j["seed"] = o.seed;
  j["memory-format"] = o.memory_format;
  j["precision"] = o.precision;
  j["cache-features"] = o.cache_features;
  j["cache-mb"] = o.cache_mb;
  j["resume"] = o.resume;
  j["threads"] = o.dist.device.cpu_threads;
  j["device"] = o.dist.device.device;
  return j.dump();
}

}  // namespace xfer::trainer::train
