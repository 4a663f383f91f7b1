// Training steps of our EfficientNet-B0 TransferModel on a GPU (or the CPU),
// timed the way bench/gpu/torch_step_bench.py times torchvision's
// efficientnet_b0 (not a test: it prints figures). bench/gpu.sh runs both,
// interleaved, and prints them side by side.
//
// One step, as the trainer runs it: the batch is copied from pinned host
// memory to the device without blocking, put in the model's memory format,
// gradients are reset (set to none), forward and cross-entropy run under bf16
// autocast when asked (backward and Adam outside it), backward, Adam
// (eps 1e-7 as the trainer). Per config: --warmup untimed steps, then
// --windows windows of --steps back-to-back steps, the device synchronised
// at both ends of each window only; img/s from the median window. Then
// --optimizer-steps Adam steps alone give the optimizer's share.
//
// Output, one line per config (key=value, parsed by gpu.sh):
//   result impl=ours phase=full size=32 batch=256 precision=bf16 ...
//
// --parity-dir DIR instead writes our weights (a state dict Python's
// torch.load reads), inputs, eval-mode logits and the gradients of one
// eval-mode cross-entropy backward, all computed on --device in fp32 with TF32
// off, for torch_step_bench.py --parity to compare with torchvision's.
#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/torch.h>  // nn, optim, serialize and CUDA: most of the API
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/gpu/bench_options.h"
#include "trainer/models/autocast_scope.h"
#include "trainer/models/state_dict.h"
#include "trainer/models/transfer_model.h"

namespace {

namespace models = xfer::trainer::models;
using xfer::bench::StepBenchOptions;
using xfer::bench::StepConfig;
using xfer::trainer::models::AutocastScope;
using Clock = std::chrono::steady_clock;

// The learning rates of DESIGN.md's recipe (they do not change the speed).
double phase_lr(models::Phase phase) { return phase == models::Phase::kFinetune ? 3e-6 : 1e-3; }

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

class Bench {
 public:
  explicit Bench(const StepBenchOptions& options)
      : options_(options),
        cuda_(options.device == "cuda"),
        device_(cuda_ ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU)),
        format_(options.channels_last ? torch::MemoryFormat::ChannelsLast
                                      : torch::MemoryFormat::Contiguous) {}

  void synchronize() const {
    if (cuda_) torch::cuda::synchronize();
  }

  // A fresh model in `phase` on the device, in the memory format, train mode.
  // BatchNorm statistics are measured at `calibration_size` px.
  models::TransferModel make_model(models::Phase phase, int64_t calibration_size = 64) const {
    torch::manual_seed(options_.seed);
    models::TransferModelOptions model_options;
    model_options.num_classes = options_.num_classes;
    model_options.phase = models::Phase::kFull;
    models::TransferModel model(model_options);
    if (options_.channels_last) model->set_memory_format(format_);
    model->to(device_);
    calibrate_batchnorm(model, calibration_size);
    model->set_phase(phase);
    model->train();
    return model;
  }

  // Pinned (CUDA) host tensor holding `values`: what a data loader hands over.
  torch::Tensor host_batch(const torch::Tensor& values) const {
    if (!cuda_) return values.contiguous();
    return torch::empty(values.sizes(), values.options().pinned_memory(true)).copy_(values);
  }

  void time_config(const StepConfig& config, const std::string& precision) const {
    const models::Phase phase = models::parse_phase(config.phase);
    models::TransferModel model = make_model(phase);
    std::vector<torch::Tensor> trainable;
    for (const auto& p : model->parameters()) {
      if (p.requires_grad()) trainable.push_back(p);
    }
    torch::optim::Adam adam(trainable, torch::optim::AdamOptions(phase_lr(phase)).eps(1e-7));

    torch::manual_seed(options_.seed + 1);
    const torch::Tensor images =
        host_batch(torch::randn({config.batch, 3, config.size, config.size}));
    const torch::Tensor labels = host_batch(torch::arange(config.batch) % options_.num_classes);
    const bool bf16 = precision == "bf16";
    const auto step = [&] {
      const torch::Tensor x = images.to(device_, /*non_blocking=*/true).contiguous(format_);
      const torch::Tensor y = labels.to(device_, /*non_blocking=*/true);
      model->zero_grad(/*set_to_none=*/true);
      torch::Tensor loss;
      {
        AutocastScope autocast(bf16, cuda_);
        loss = torch::nn::functional::cross_entropy(model->forward(x), y);
      }
      loss.backward();
      adam.step();
    };

    for (int i = 0; i < options_.warmup; ++i) step();
    synchronize();
    std::vector<double> windows;
    for (int w = 0; w < options_.windows; ++w) {
      const auto start = Clock::now();
      for (int i = 0; i < options_.steps; ++i) step();
      synchronize();
      windows.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    double adam_ms = 0;
    if (options_.optimizer_steps > 0) {
      const auto start = Clock::now();
      for (int i = 0; i < options_.optimizer_steps; ++i) adam.step();
      synchronize();
      adam_ms = 1e3 * std::chrono::duration<double>(Clock::now() - start).count() /
                options_.optimizer_steps;
    }
    const double window = median(windows);
    const double best = *std::min_element(windows.begin(), windows.end());
    std::printf(
        "result impl=ours phase=%s size=%lld batch=%lld precision=%s memory=%s device=%s "
        "img_per_s=%.1f step_ms=%.3f best_step_ms=%.3f adam_ms=%.3f trainable=%zu windows=%dx%d\n",
        config.phase.c_str(), static_cast<long long>(config.size),
        static_cast<long long>(config.batch), precision.c_str(),
        options_.channels_last ? "channels_last" : "nchw", options_.device.c_str(),
        static_cast<double>(config.batch * options_.steps) / window, 1e3 * window / options_.steps,
        1e3 * best / options_.steps, adam_ms, trainable.size(), options_.windows, options_.steps);
    std::fflush(stdout);
  }

  // See the file comment. Returns 0, or 1 after printing why.
  int write_parity(const std::filesystem::path& dir) const {
    std::filesystem::create_directories(dir);
    // Plain fp32 on both sides: TF32 convolutions alone differ by ~1e-3.
    // (TF32 matmuls are off by default in LibTorch and PyTorch alike.)
    at::globalContext().setAllowTF32CuDNN(false);
    // Statistics of the size the gradients are checked at: with others,
    // activations grow layer after layer and logits reach ~1e3.
    models::TransferModel model = make_model(models::Phase::kFull, /*calibration_size=*/224);
    model->eval();
    c10::Dict<std::string, torch::Tensor> record;
    torch::manual_seed(options_.seed + 2);
    for (const int64_t size : {int64_t{32}, int64_t{224}}) {
      const torch::Tensor input = torch::randn({4, 3, size, size});
      torch::NoGradGuard no_grad;
      const torch::Tensor logits = model->forward(input.to(device_).contiguous(format_));
      record.insert("input_" + std::to_string(size), input);
      record.insert("logits_" + std::to_string(size), logits.cpu());
    }
    // Eval mode (no dropout, running statistics): deterministic gradients.
    const torch::Tensor labels = torch::arange(4) % options_.num_classes;
    const torch::Tensor input = record.at("input_224");
    model->zero_grad(/*set_to_none=*/true);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(
        model->forward(input.to(device_).contiguous(format_)), labels.to(device_));
    loss.backward();
    record.insert("labels", labels);
    record.insert("loss", loss.detach().cpu());
    for (const auto& item : model->named_parameters(/*recurse=*/true)) {
      if (!item.value().grad().defined()) {
        std::fprintf(stderr, "gpu_step_bench --parity-dir: parameter %s has no gradient\n",
                     item.key().c_str());
        return 1;
      }
      record.insert("grad." + item.key(), item.value().grad().cpu().contiguous());
    }
    models::write_state_dict_file(models::model_state_dict(*model), (dir / "weights.pt").string());
    models::write_file_atomically(torch::pickle_save(record), (dir / "ours.pt").string());
    std::printf("wrote %s/weights.pt and ours.pt; eval-mode loss %.6f on %s\n",
                dir.string().c_str(), loss.item<double>(), options_.device.c_str());
    return 0;
  }

 private:
  // A fresh network's BatchNorm statistics (0 and 1) shrink eval-mode
  // activations layer after layer (tiny logits make a parity check
  // meaningless and tiny floats take other paths): measure them on one
  // batch, as pretraining would have. REQUIRES: phase kFull.
  void calibrate_batchnorm(models::TransferModel& model, int64_t size) const {
    model->train();
    models::measure_batch_norm_statistics(*model, [&] {
      model->forward(torch::randn({16, 3, size, size}).to(device_).contiguous(format_));
    });
  }

  StepBenchOptions options_;
  bool cuda_;
  torch::Device device_;
  torch::MemoryFormat format_;
};

int run(const StepBenchOptions& options) {
  const bool cuda = options.device == "cuda";
  if (cuda && !torch::cuda::is_available()) {
    std::fprintf(stderr,
                 "gpu_step_bench: --device cuda, but LibTorch %s sees no CUDA device "
                 "(torch::cuda::device_count() = %zu): a CPU-only LibTorch, libtorch_cuda.so "
                 "dropped at link time, or no GPU/driver. Expected a CUDA LibTorch and a GPU; "
                 "use --device cpu otherwise\n",
                 TORCH_VERSION, torch::cuda::device_count());
    return 1;
  }
  if (options.threads > 0) torch::set_num_threads(options.threads);
  if (cuda) at::globalContext().setBenchmarkCuDNN(options.cudnn_benchmark);
  std::printf(
      "info impl=ours libtorch=%s device=%s cuda_devices=%zu cudnn=%d threads=%d "
      "tf32_cudnn=%d cudnn_benchmark=%d\n",
      TORCH_VERSION, options.device.c_str(), cuda ? torch::cuda::device_count() : 0,
      cuda ? static_cast<int>(torch::cuda::cudnn_is_available()) : 0, torch::get_num_threads(),
      static_cast<int>(at::globalContext().allowTF32CuDNN()),
      static_cast<int>(options.cudnn_benchmark));
  std::fflush(stdout);
  const Bench bench(options);
  if (!options.parity_dir.empty()) return bench.write_parity(options.parity_dir);
  for (const auto& precision : options.precisions) {
    for (const auto& config : options.configs) bench.time_config(config, precision);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  const auto options = xfer::bench::parse_step_bench_options(argc, argv, &exit_code);
  if (!options) return exit_code;
  try {
    return run(*options);
  } catch (const std::exception& e) {
    // c10::Error carries a C++ backtrace after the first line.
    const std::string what = e.what();
    std::fprintf(stderr, "gpu_step_bench: %s\n", what.substr(0, what.find('\n')).c_str());
    return 1;
  }
}
