// Our EfficientNet-B0 against torchvision's (not a test: it prints figures).
//
//   build/bin/model_bench [--sizes 32,224 --batches 64,16] [--threads 2]
//                         [--rounds 3 --iterations 4] [--channels-last] [--profile N]
//                         [--phase full|finetune|head] [--no-fold] [--no-fuse]
//                         [--profile-shapes] [--ab-fold N] [--ab-fuse N]
//
// Both sides run the same weights on the same input: this program writes its
// model's state dict and the input batches to a temporary folder, and
// bench/models/torchvision_b0_bench.py (Debian's /usr/bin/python3) loads them
// and first checks that its eval-mode logits match ours. Per image size:
//   fwd     eval mode, no gradient (inference)
//   fwdbwd  train mode, cross-entropy, backward (the optimizer step is left
//           out: it is the same few element-wise passes on both sides), as
//           the trainer's phase (transfer_model.h) runs it:
//             full      everything trains, BatchNorm in train mode (default)
//             finetune  BatchNorm modules in eval mode, their weight and bias
//                       requires_grad=false; everything else trains
//             head      the base in eval mode under InferenceMode, then the
//                       classifier forward and backward on its pooled output
// Ours folds every eval-mode BatchNorm into its convolution
// (conv_bn_activation.h): in fwd, and in fwdbwd for finetune and head.
// --no-fold times ours unfolded; torchvision never folds. --ab-fold N then
// times ours folded and unfolded in alternate iterations of one process (N
// pairs per pass), which a shared machine's changing load hits alike.
// Ours also fuses train-mode BatchNorm + SiLU (phase full): --no-fuse runs
// them as two modules, --ab-fuse N times fused against unfused the same way.
// Ours runs depthwise convolutions on small maps by direct summation
// (--direct-depthwise-pixels, 0: never); --ab-depthwise N times that against
// LibTorch's the same way.
// Images per second from the median iteration, after every pass ran once and
// a per-figure warm-up, with the same
// number of intra-op threads on both sides. The two sides alternate in rounds
// (ours, torchvision's, ours, ...) so that a change in the load of a shared
// machine hits both alike.
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>  // nn, optim, serialize and the profiler: most of the API

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/logging.h"
#include "trainer/models/efficientnet.h"
#include "trainer/models/state_dict.h"

namespace {

namespace models = xfer::trainer::models;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::vector<int64_t> sizes = {32, 224};
  // Batch per size, same order. Default: 64 at 32 px, 16 at 224 px.
  std::vector<int64_t> batches = {64, 16};
  int threads = 2;
  int rounds = 3;
  // Timed iterations per figure and round.
  int iterations = 4;
  int warmup = 1;
  int64_t num_classes = 100;
  bool channels_last = false;
  std::string python = "/usr/bin/python3";
  bool skip_torchvision = false;
  // Forward+backward iterations at the first size under LibTorch's legacy
  // profiler on both sides (after the timing); 0: none. The same profiler:
  // Python's default torch.autograd.profiler.profile records through Kineto,
  // whose self times ran ~5-10% below the legacy profiler's for the same
  // work, so a Kineto torchvision column made ours look slower.
  int profile = 0;
  // Profile rows per operator and input shapes (which call of an operator).
  bool profile_shapes = false;
  // How fwdbwd trains: "full", "finetune" or "head" (see the file comment).
  std::string phase = "full";
  // Fold eval-mode BatchNorm into the convolution (ours only).
  bool fold = true;
  // Folded/unfolded pairs of iterations per pass for the A/B comparison; 0: none.
  int ab_fold = 0;
  int ab_fuse = 0;
  bool fuse = true;
  int ab_depthwise = 0;
  int64_t depthwise_pixels = models::kDefaultDirectDepthwiseMaxPixels;
};

// The phase's requires_grad flags, set once after the model is built.
void freeze_for_phase(const BenchOptions& options, models::EfficientNetB0& model) {
  if (options.phase == "head") {
    for (auto& p : model->features()->parameters()) p.set_requires_grad(false);
  } else if (options.phase == "finetune") {
    for (const auto& module : model->modules(/*include_self=*/false)) {
      if (module->as<torch::nn::BatchNorm2d>()) {
        for (auto& p : module->parameters()) p.set_requires_grad(false);
      }
    }
  }
}

// One training step's forward and backward in the phase's module modes (as
// TransferModelImpl::forward and apply_modes run them).
void forward_backward(const BenchOptions& options, models::EfficientNetB0& model,
                      const torch::Tensor& x, const torch::Tensor& labels) {
  model->train();
  model->zero_grad(/*set_to_none=*/true);
  torch::Tensor logits;
  if (options.phase == "head") {
    model->features()->eval();
    torch::Tensor pooled;
    {
      c10::InferenceMode inference;
      pooled = torch::adaptive_avg_pool2d(model->features()->forward(x), {1, 1}).flatten(1);
    }
    logits = model->classifier()->forward(pooled.clone());
  } else {
    if (options.phase == "finetune") {
      for (const auto& module : model->modules(/*include_self=*/false)) {
        if (module->as<torch::nn::BatchNorm2d>()) module->eval();
      }
    }
    logits = model->forward(x);
  }
  torch::nn::functional::cross_entropy(logits, labels).backward();
}

// Self CPU microseconds and calls of one operator, summed over the profiled
// iterations.
struct OpTime {
  double self_us = 0;
  int64_t calls = 0;
};
// Operator name (with --profile-shapes: name@shapes) -> its time.
using OpTimes = std::map<std::string, OpTime>;

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

template <typename Fn>
std::vector<double> time_iterations(const BenchOptions& options, Fn&& fn) {
  for (int i = 0; i < options.warmup; ++i) fn();
  std::vector<double> seconds;
  for (int i = 0; i < options.iterations; ++i) {
    const auto start = Clock::now();
    fn();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  return seconds;
}

// key "fwd 32" -> seconds of every timed iteration so far.
using Timings = std::map<std::string, std::vector<double>>;

void append(Timings& timings, const std::string& key, const std::vector<double>& seconds) {
  auto& all = timings[key];
  all.insert(all.end(), seconds.begin(), seconds.end());
}

void time_ours(const BenchOptions& options, models::EfficientNetB0& model,
               const std::map<int64_t, torch::Tensor>& inputs, Timings& timings) {
  const auto format =
      options.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  for (const auto& [size, batch] : inputs) {
    const torch::Tensor x = batch.contiguous(format);
    const torch::Tensor labels = torch::arange(batch.size(0)) % options.num_classes;
    append(timings, "fwd " + std::to_string(size), time_iterations(options, [&] {
             model->eval();
             torch::NoGradGuard no_grad;
             model->forward(x);
           }));
    append(timings, "fwdbwd " + std::to_string(size),
           time_iterations(options, [&] { forward_backward(options, model, x, labels); }));
  }
}

// Ours with a speed-up on against off (`toggle`), alternating every
// iteration, `pairs` pairs at each size: median seconds of each and the
// median of the per-pair ratios. Leaves it as `options` says.
void compare_on_off(const BenchOptions& options, models::EfficientNetB0& model,
                    const std::map<int64_t, torch::Tensor>& inputs, const char* on_name,
                    const char* off_name, int pairs, const std::function<void(bool)>& toggle,
                    bool leave) {
  const auto format =
      options.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  std::printf(
      "\nours %s vs ours %s, alternating iterations (%d pairs, median), phase %s\n"
      "| size | batch | pass | %s img/s | %s img/s | %s / %s (median of "
      "pairs) |\n|---:|---:|---|---:|---:|---:|\n",
      on_name, off_name, pairs, options.phase.c_str(), on_name, off_name, on_name, off_name);
  for (const auto& [size, batch] : inputs) {
    const torch::Tensor x = batch.contiguous(format);
    const torch::Tensor labels = torch::arange(batch.size(0)) % options.num_classes;
    for (const bool backward : {false, true}) {
      const auto step = [&] {
        if (backward) {
          forward_backward(options, model, x, labels);
        } else {
          model->eval();
          torch::NoGradGuard no_grad;
          model->forward(x);
        }
      };
      std::vector<double> folded;
      std::vector<double> unfolded;
      std::vector<double> ratios;
      for (int i = 0; i < pairs + 1; ++i) {
        double seconds[2];
        for (const bool on : {true, false}) {
          toggle(on);
          const auto start = Clock::now();
          step();
          seconds[on ? 0 : 1] = std::chrono::duration<double>(Clock::now() - start).count();
        }
        if (i == 0) continue;  // warm-up pair
        folded.push_back(seconds[0]);
        unfolded.push_back(seconds[1]);
        ratios.push_back(seconds[1] / seconds[0]);
      }
      const double n = static_cast<double>(batch.size(0));
      std::printf("| %lld | %lld | %s | %.1f | %.1f | %.2f |\n", static_cast<long long>(size),
                  static_cast<long long>(batch.size(0)), backward ? "forward+backward" : "forward",
                  n / median(folded), n / median(unfolded), median(ratios));
    }
  }
  toggle(leave);
}

void restore(models::EfficientNetB0& model, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (const auto& item : models::model_state_dict(*model)) item.value().copy_(saved.at(i++));
}

// "[64,96,16,16],[]": an operator's input shapes without spaces, as
// torchvision_b0_bench.py --profile-shapes writes them.
std::string shapes_key(const std::vector<std::vector<int64_t>>& shapes) {
  std::string key;
  for (size_t i = 0; i < shapes.size(); ++i) {
    key += i ? ",[" : "[";
    for (size_t j = 0; j < shapes[i].size(); ++j) {
      key += (j ? "," : "") + std::to_string(shapes[i][j]);
    }
    key += "]";
  }
  return key;
}

// `options.profile` forward+backward passes of ours at the first size under
// the legacy (CPU) profiler; self time = an operator's span minus the spans
// of the operators it called, as PyTorch's key_averages() counts it.
OpTimes profile_ours(const BenchOptions& options, models::EfficientNetB0& model,
                     const torch::Tensor& batch) {
  namespace prof = torch::autograd::profiler;
  const auto format =
      options.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  const torch::Tensor x = batch.contiguous(format);
  const torch::Tensor labels = torch::arange(batch.size(0)) % options.num_classes;
  prof::enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(
      torch::profiler::impl::ProfilerState::CPU, /*report_input_shapes=*/options.profile_shapes));
  for (int i = 0; i < options.profile; ++i) forward_backward(options, model, x, labels);
  const prof::thread_event_lists lists = prof::disableProfilerLegacy();
  OpTimes self;
  for (const auto& events : lists) {
    struct Open {
      const prof::LegacyEvent* push;
      double children_us;
    };
    std::vector<Open> open;
    for (const auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        open.push_back({&e, 0.0});
      } else if (e.kind() == prof::EventKind::PopRange && !open.empty()) {
        const Open top = open.back();
        open.pop_back();
        const double span = top.push->cpuElapsedUs(e);
        std::string key = top.push->name();
        if (options.profile_shapes) key += "@" + shapes_key(top.push->shapes());
        self[key].self_us += span - top.children_us;
        ++self[key].calls;
        if (!open.empty()) open.back().children_us += span;
      }
    }
  }
  return self;
}

bool time_torchvision(const BenchOptions& options, const std::filesystem::path& dir,
                      Timings& timings, std::map<std::string, double>& checks,
                      OpTimes* profile = nullptr) {
  std::ostringstream command;
  command << options.python << ' ' << XFER_TORCHVISION_BENCH << " --weights " << dir / "b0.pt"
          << " --inputs " << dir / "inputs.pt"
          << " --num-classes " << options.num_classes << " --threads " << options.threads
          << " --iterations " << options.iterations << " --warmup " << options.warmup
          << (options.channels_last ? " --channels-last" : "") << " --phase " << options.phase;
  if (profile != nullptr) command << " --profile " << options.profile;
  if (profile != nullptr && options.profile_shapes) command << " --profile-shapes";
  FILE* pipe = popen(command.str().c_str(), "r");
  if (pipe == nullptr) return false;
  char line[8192];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    std::istringstream in(line);
    std::string kind;
    in >> kind;
    if (kind == "check") {
      std::string size;
      double error = 0;
      in >> size >> error;
      checks[size] = error;
    } else if (kind == "time") {
      std::string mode;
      std::string size;
      int64_t batch = 0;
      in >> mode >> size >> batch;
      std::vector<double> seconds;
      for (double s = 0; in >> s;) seconds.push_back(s);
      append(timings, mode + " " + size, seconds);
    } else if (kind == "op" && profile != nullptr) {
      std::string name;
      double self_us = 0;
      int64_t calls = 0;
      in >> name >> self_us >> calls;
      (*profile)[name].self_us += self_us;
      (*profile)[name].calls += calls;
    }
  }
  const int status = pclose(pipe);
  if (status != 0) spdlog::error("torchvision side failed ({}): {}", status, command.str());
  return status == 0;
}

// The operators with the most self time on either side, ms and calls per
// iteration.
void print_profile(const BenchOptions& options, const OpTimes& ours, const OpTimes& theirs) {
  std::map<std::string, std::pair<OpTime, OpTime>> both;
  double ours_total = 0;
  double theirs_total = 0;
  for (const auto& [name, time] : ours) {
    both[name].first = time;
    ours_total += time.self_us;
  }
  for (const auto& [name, time] : theirs) {
    both[name].second = time;
    theirs_total += time.self_us;
  }
  std::vector<std::pair<std::string, std::pair<OpTime, OpTime>>> rows(both.begin(), both.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::max(a.second.first.self_us, a.second.second.self_us) >
           std::max(b.second.first.self_us, b.second.second.self_us);
  });
  const double n = options.profile;
  std::printf(
      "\nself CPU time per forward+backward (phase %s) at %lld px, batch %lld (LibTorch profiler, "
      "%d iterations)\n",
      options.phase.c_str(), static_cast<long long>(options.sizes.front()),
      static_cast<long long>(options.batches.front()), options.profile);
  std::printf(
      "| operator | ours ms | torchvision ms | ours calls | torchvision calls |\n"
      "|---|---:|---:|---:|---:|\n");
  const size_t shown = options.profile_shapes ? rows.size() : 15;
  for (size_t i = 0; i < rows.size() && i < shown; ++i) {
    const auto& [ours_time, theirs_time] = rows[i].second;
    std::printf("| %s | %.1f | %.1f | %.0f | %.0f |\n", rows[i].first.c_str(),
                ours_time.self_us / 1000.0 / n, theirs_time.self_us / 1000.0 / n,
                static_cast<double>(ours_time.calls) / n,
                static_cast<double>(theirs_time.calls) / n);
  }
  std::printf("| all operators | %.1f | %.1f | | |\n", ours_total / 1000.0 / n,
              theirs_total / 1000.0 / n);
}

int run(const BenchOptions& options) {
  if (options.sizes.size() != options.batches.size()) {
    spdlog::error("--sizes has {} entries and --batches {}; expected one batch per size",
                  options.sizes.size(), options.batches.size());
    return 2;
  }
  torch::set_num_threads(options.threads);
  torch::manual_seed(0);
  models::EfficientNetOptions model_options;
  model_options.num_classes = options.num_classes;
  model_options.fold_frozen_batch_norm = options.fold;
  models::EfficientNetB0 model(model_options);
  models::set_fuse_train_batch_norm_silu(*model, options.fuse);
  models::set_direct_depthwise_max_pixels(*model, options.depthwise_pixels);
  if (options.channels_last) {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) {
      // As TransferModel::set_memory_format: fresh channels-last strides
      // (contiguous() would leave 1x1 and depthwise weights as they are).
      if (p.dim() == 4) {
        p.set_data(torch::empty_like(p, p.options(), torch::MemoryFormat::ChannelsLast).copy_(p));
      }
    }
  }

  // A fresh network's BatchNorm statistics (0 and 1) shrink eval-mode
  // activations towards zero layer after layer, an unrealistic workload (tiny
  // and denormal floats take other paths). Measure them on one batch first,
  // as pretraining would have.
  model->train();
  models::measure_batch_norm_statistics(*model, [&] {
    model->forward(torch::randn({16, 3, options.sizes.front(), options.sizes.front()}));
  });
  freeze_for_phase(options, model);

  std::map<int64_t, torch::Tensor> inputs;
  c10::Dict<std::string, torch::Tensor> saved_inputs;
  c10::Dict<std::string, torch::Tensor> saved_logits;
  model->eval();
  for (size_t i = 0; i < options.sizes.size(); ++i) {
    const int64_t size = options.sizes[i];
    inputs[size] = torch::randn({options.batches[i], 3, size, size});
    saved_inputs.insert(std::to_string(size), inputs[size]);
    torch::NoGradGuard no_grad;
    saved_logits.insert(std::to_string(size), model->forward(inputs[size].slice(0, 0, 2)));
  }

  char pattern[] = "/tmp/xfer_model_bench_XXXXXX";
  if (mkdtemp(pattern) == nullptr) {
    spdlog::error("mkdtemp failed");
    return 1;
  }
  const std::filesystem::path dir = pattern;
  models::write_state_dict_file(models::model_state_dict(*model), (dir / "b0.pt").string());
  models::write_file_atomically(torch::pickle_save(saved_inputs), (dir / "inputs.pt").string());
  models::write_file_atomically(torch::pickle_save(saved_logits),
                                (dir / "inputs_logits.pt").string());

  std::vector<torch::Tensor> initial;
  for (const auto& item : models::model_state_dict(*model)) initial.push_back(item.value().clone());
  // Every pass once before anything is timed: the first passes at a new size
  // pay for page faults and allocator growth (2x at 224 px here) that a
  // long-running job never sees again. The Python side does the same.
  {
    BenchOptions once = options;
    once.warmup = 0;
    once.iterations = 1;
    Timings discarded;
    time_ours(once, model, inputs, discarded);
  }
  Timings ours;
  Timings theirs;
  OpTimes our_ops;
  OpTimes their_ops;
  std::map<std::string, double> checks;
  bool tv_ok = true;
  for (int round = 1; round <= options.rounds; ++round) {
    spdlog::info("round {}/{}: ours, EfficientNet-B0, {} classes, {} threads, {}", round,
                 options.rounds, options.num_classes, options.threads,
                 options.channels_last ? "channels-last" : "NCHW");
    // Train-mode passes move BatchNorm's running statistics, and eval speed
    // depends on them (activation magnitudes, denormals): every round starts
    // from the saved weights, as the torchvision process does.
    restore(model, initial);
    time_ours(options, model, inputs, ours);
    if (!options.skip_torchvision && tv_ok) {
      spdlog::info("round {}/{}: torchvision, {}", round, options.rounds, XFER_TORCHVISION_BENCH);
      const bool profile_now = options.profile > 0 && round == options.rounds;
      tv_ok = time_torchvision(options, dir, theirs, checks, profile_now ? &their_ops : nullptr);
    }
  }
  if (options.profile > 0) {
    restore(model, initial);
    our_ops = profile_ours(options, model, inputs.at(options.sizes.front()));
  }
  std::filesystem::remove_all(dir);

  std::printf(
      "EfficientNet-B0 (%lld classes), %d threads, %s, fwdbwd as phase %s, ours %s, median of %d "
      "iterations (%d rounds)\n",
      static_cast<long long>(options.num_classes), options.threads,
      options.channels_last ? "channels-last" : "NCHW", options.phase.c_str(),
      options.fold
          ? (options.fuse ? "folding eval-mode BatchNorm, fusing train-mode BatchNorm + SiLU"
                          : "folding eval-mode BatchNorm, unfused (--no-fuse)")
          : (options.fuse ? "unfolded (--no-fold), fusing train-mode BatchNorm + SiLU"
                          : "unfolded (--no-fold), unfused (--no-fuse)"),
      options.rounds * options.iterations, options.rounds);
  for (const auto& [size, error] : checks) {
    std::printf("  same weights, same input: eval logits at %s px differ by %.3g (relative)\n",
                size.c_str(), error);
  }
  std::printf("| size | batch | pass | ours img/s | torchvision img/s | ours / torchvision |\n");
  std::printf("|---:|---:|---|---:|---:|---:|\n");
  for (size_t i = 0; i < options.sizes.size(); ++i) {
    for (const char* mode : {"fwd", "fwdbwd"}) {
      const std::string key = std::string(mode) + " " + std::to_string(options.sizes[i]);
      const double batch = static_cast<double>(options.batches[i]);
      const double ours_rate = batch / median(ours.at(key));
      const auto it = theirs.find(key);
      if (it == theirs.end()) {
        std::printf("| %lld | %lld | %s | %.1f | - | - |\n",
                    static_cast<long long>(options.sizes[i]),
                    static_cast<long long>(options.batches[i]),
                    mode == std::string("fwd") ? "forward" : "forward+backward", ours_rate);
      } else {
        const double theirs_rate = batch / median(it->second);
        std::printf("| %lld | %lld | %s | %.1f | %.1f | %.2f |\n",
                    static_cast<long long>(options.sizes[i]),
                    static_cast<long long>(options.batches[i]),
                    mode == std::string("fwd") ? "forward" : "forward+backward", ours_rate,
                    theirs_rate, ours_rate / theirs_rate);
      }
    }
  }
  if (options.profile > 0) print_profile(options, our_ops, their_ops);
  if (options.ab_fold > 0) {
    restore(model, initial);
    compare_on_off(
        options, model, inputs, "folded", "unfolded", options.ab_fold,
        [&](bool on) { models::set_fold_frozen_batch_norm(*model, on); }, options.fold);
  }
  if (options.ab_depthwise > 0) {
    restore(model, initial);
    compare_on_off(
        options, model, inputs, "direct-depthwise", "oneDNN-depthwise", options.ab_depthwise,
        [&](bool on) {
          models::set_direct_depthwise_max_pixels(*model, on ? options.depthwise_pixels : 0);
        },
        true);
  }
  if (options.ab_fuse > 0) {
    restore(model, initial);
    compare_on_off(
        options, model, inputs, "fused", "unfused", options.ab_fuse,
        [&](bool on) { models::set_fuse_train_batch_norm_silu(*model, on); }, options.fuse);
  }
  return tv_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions options;
  CLI::App app{"Our EfficientNet-B0 vs torchvision's: forward and forward+backward img/s"};
  xfer::common::add_config_flag(app);
  app.add_option("--sizes", options.sizes, "Image sides")->delimiter(',')->capture_default_str();
  app.add_option("--batches", options.batches, "Batch per size")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--threads", options.threads, "Intra-op threads, both sides")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--rounds", options.rounds, "Rounds, alternating ours and torchvision's")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--iterations", options.iterations, "Timed iterations per figure and round")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--warmup", options.warmup, "Untimed iterations first")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--num-classes", options.num_classes, "Classifier width")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--channels-last", options.channels_last, "NHWC memory format on both sides");
  app.add_option("--python", options.python, "Python with torchvision")->capture_default_str();
  app.add_flag("--skip-torchvision", options.skip_torchvision, "Time ours only");
  app.add_option("--profile", options.profile,
                 "Also profile N forward+backward passes at the first size on both sides and "
                 "print each operator's self time")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  app.add_flag("--profile-shapes", options.profile_shapes,
               "With --profile: a row per operator and input shapes");
  app.add_option("--ab-fold", options.ab_fold,
                 "Then time ours folded and unfolded in N alternating pairs of iterations")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--phase", options.phase,
                 "How forward+backward trains, on both sides: full (BatchNorm in train mode), "
                 "finetune (BatchNorm eval and frozen), head (base under InferenceMode)")
      ->check(CLI::IsMember({"full", "finetune", "head"}))
      ->capture_default_str();
  app.add_flag("--no-fold{false}", options.fold,
               "Ours without folding eval-mode BatchNorm into the convolution");
  app.add_flag("--no-fuse{false}", options.fuse,
               "Ours with train-mode BatchNorm and SiLU as two modules (not fused)");
  app.add_option("--direct-depthwise-pixels", options.depthwise_pixels,
                 "Ours: depthwise convolutions on maps of at most this many pixels by direct "
                 "summation (0: all by LibTorch)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--ab-depthwise", options.ab_depthwise,
                 "Then time ours with and without direct depthwise convolution in N alternating "
                 "pairs of iterations")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--ab-fuse", options.ab_fuse,
                 "Then time ours fused and unfused in N alternating pairs of iterations")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;
  xfer::common::init_logging({"model_bench", std::nullopt, "info"});
  return run(options);
}
