// TransferModel: a pretrained base followed by a new classification head,
// with the three training phases of the seed's recipe.
//
//   base  efficientnet_b0: torchvision's B0 `features` (registered as
//         `features`, so the state dict keeps torchvision's names);
//         torchscript: any module exported by tools/export_weights.py
//         (registered as `base.<its names>`).
//   head  global average pool -> Dropout(p) -> Linear(C -> num_classes)
//         (initialised as a fresh torch.nn.Linear),
//         the dropout a CounterDropout (counter_dropout.h: torch::dropout's
//         semantics, a cheaper mask),
//         registered as `classifier.0`/`classifier.1` like torchvision's.
//
// Phases (set_phase is the only switch; train()/eval() keep honouring it):
//   kHead      base parameters requires_grad=false, base always in eval mode.
//   kFinetune  all but BatchNorm trains: BN weight/bias requires_grad=false,
//              BN modules always in eval mode so running stats never change.
//   kFull      everything trains, BN in train mode (training from scratch).
//
// BatchNorm folding (efficientnet_b0 only): whenever a BN is in eval mode
// (kHead, kFinetune, and eval() in any phase) it is folded into the
// convolution before it, W * s and beta - mean * s computed from the live
// parameters in every forward (conv_bn_activation.h); kFull in train mode
// runs conv -> BN unfolded. Names, state dicts and gradients are unchanged up
// to float rounding. The torchscript base is never folded: it runs the
// script's own graph.
//
// For the data-parallel Reducer: parameters() lists every parameter in a
// fixed registration order (base first, then head) whatever the phase; the
// trainable ones are those with requires_grad() set. Change phases only
// between steps, on every rank alike.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/pimpl.h>
#include <torch/script.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/models/efficientnet.h"
#include "trainer/models/model_file.h"
#include "trainer/models/state_dict.h"

namespace xfer::trainer::models {

enum class Phase { kHead, kFinetune, kFull };

// "head" | "finetune" | "full". Throws std::invalid_argument otherwise.
Phase parse_phase(const std::string& name);
const char* phase_name(Phase phase);

struct TransferModelOptions {
  // "efficientnet_b0" or "torchscript". Default: "efficientnet_b0".
  std::string arch = "efficientnet_b0";
  // TorchScript base file from tools/export_weights.py.
  // REQUIRES: non-empty iff arch == "torchscript".
  std::string base_path;
  // REQUIRES: >= 1. Default: 1000.
  int64_t num_classes = 1000;
  // Dropout before the linear layer. REQUIRES: in [0, 1). Default: 0.2.
  double dropout = 0.2;
  // EfficientNet's stochastic depth (last block). Default: 0.2.
  double stochastic_depth_prob = 0.2;
  // Side of the zero image the TorchScript base runs once to learn its
  // output width. Default: 224.
  int64_t dry_run_image_size = 224;
  // Phase after construction. Default: kHead.
  Phase phase = Phase::kHead;
  // Fold BatchNorm into the convolution while the BN is in eval mode
  // (efficientnet_b0; ignored for torchscript). Default: true.
  bool fold_frozen_batch_norm = true;
  // The head's dropout as a CounterDropout (counter_dropout.h); false: a
  // torch::nn::Dropout. Same state dict either way. Default: true.
  bool counter_dropout = true;
};

struct ParameterCounts {
  int64_t trainable = 0;  // elements of parameters with requires_grad
  int64_t frozen = 0;     // elements of the others
};

class TransferModelImpl : public torch::nn::Module {
 public:
  // Throws std::invalid_argument for bad options, std::runtime_error when a
  // TorchScript base cannot be loaded or does not produce [N, C(, H, W)].
  explicit TransferModelImpl(const TransferModelOptions& options);

  // [N, 3, H, W] normalised images -> logits [N, num_classes]. In the head
  // phase the frozen base runs without recording autograd history.
  torch::Tensor forward(const torch::Tensor& images);
  // The head's input: the base's output, average-pooled, [N, C]. Computed
  // without autograd history; in the head phase (base frozen, eval mode)
  // a pure function of the image, so it can be cached.
  torch::Tensor pooled_features(const torch::Tensor& images);
  // The head alone: [N, C] features -> logits. forward(x) ==
  // head_forward(pooled_features(x)) in the head phase.
  torch::Tensor head_forward(const torch::Tensor& features);
  // Stores every 4-D parameter and buffer (the convolutions) in `format`;
  // channels-last runs LibTorch's CPU convolutions about 1.6-2x faster.
  // Feed inputs in the same format. Values and names do not change.
  void set_memory_format(torch::MemoryFormat format);

  // Applies the phase's requires_grad flags and module modes.
  void set_phase(Phase phase);
  Phase phase() const { return phase_; }

  // Module::train, then re-imposes the phase's eval-mode parts.
  void train(bool on = true) override;

  ParameterCounts parameter_counts() const;
  // Width C of the base's output (1280 for B0).
  int64_t feature_channels() const { return feature_channels_; }
  int64_t num_classes() const { return options_.num_classes; }
  const TransferModelOptions& options() const { return options_; }

  std::vector<torch::Tensor> base_parameters() const;
  std::vector<torch::Tensor> head_parameters() const;
  // BatchNorm weights, biases, running stats of the base.
  std::vector<torch::Tensor> batchnorm_tensors() const;

  // Loads a plain state dict (torchvision's, export_weights.py's) or a model
  // file (model_file.h) with the rules of load_state_dict; the head is kept
  // when the file's class count differs. A model file written for another
  // arch is an error.
  LoadResult load_weights(const std::string& path);
  // The same for a file already read.
  LoadResult load_weights(const WeightsFile& file, const std::string& source);

 private:
  torch::Tensor base_forward(const torch::Tensor& images);
  void apply_modes();

  TransferModelOptions options_;
  Phase phase_ = Phase::kHead;
  int64_t feature_channels_ = 0;
  SequentialBlock features_{nullptr};  // efficientnet_b0
  torch::jit::Module script_;          // torchscript
  bool is_script_ = false;
  std::vector<torch::jit::Module> script_batchnorms_;
  std::shared_ptr<torch::nn::Module> base_;                     // features_ or the script mirror
  std::vector<torch::Tensor> bn_params_;                        // BN weight and bias
  std::vector<torch::Tensor> bn_buffers_;                       // BN running stats and counters
  std::vector<std::shared_ptr<torch::nn::Module>> bn_modules_;  // efficientnet_b0 BNs
  torch::nn::Sequential classifier_{nullptr};
};
TORCH_MODULE(TransferModel);

}  // namespace xfer::trainer::models
