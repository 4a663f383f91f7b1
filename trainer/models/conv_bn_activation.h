// Convolution + BatchNorm2d [+ SiLU] (torchvision's Conv2dNormActivation),
// which folds the BatchNorm into the convolution whenever the BatchNorm is in
// eval mode.
//
// In eval mode BatchNorm is a per-output-channel affine map, so
//   bn(conv(x, W)) == conv(x, W * s, beta - running_mean * s),
//   s = gamma / sqrt(running_var + eps).
// The folded weight and bias are computed in every forward from the real
// parameters (W trains in the finetune phase; autograd gives it, and gamma and
// beta when they require grad, their exact gradients through the per-channel
// products). That removes BatchNorm's forward pass over the activations, and
// in training its backward pass, in the finetune phase, in the head phase's
// base forward and in evaluation; the price is one pass over the (much
// smaller) weight. A BatchNorm in train mode (phase kFull, training from
// scratch) runs unfolded, exactly as conv -> bn -> silu.
//
// The state dict is untouched: the children are the plain modules, named as
// torchvision names them, "0" (Conv2d), "1" (BatchNorm2d) and "2" (SiLU), so
// `features.0.0.weight`, `features.0.1.running_mean` ... load and save as
// before, and code that finds BatchNorms by `as<nn::BatchNorm2d>()` or
// convolutions by `as<nn::Conv2d>()` still finds them.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <utility>

namespace xfer::trainer::models {

// The folded convolution parameters of conv(W) -> bn (bn in eval mode).
struct FoldedConv {
  // W * s per output channel, with W's strides (channels-last in,
  // channels-last out: see fold_batch_norm).
  torch::Tensor weight;
  // beta - running_mean * s.
  torch::Tensor bias;
};

// Folds `bn`'s eval-mode affine map into the bias-free convolution weight
// `weight` ([O, I/groups, kh, kw]). Differentiable in weight, gamma and beta.
// The result has exactly `weight`'s strides: a channels-last weight (as
// TransferModel::set_memory_format makes every 4-D weight, 1x1 and depthwise
// ones included) gives a channels-last folded weight, or oneDNN would reorder
// every activation to NCHW and back.
// REQUIRES: bn affine with running statistics, bn.num_features == O.
FoldedConv fold_batch_norm(const torch::Tensor& weight, const torch::nn::BatchNorm2dImpl& bn);

class ConvBnActivationImpl : public torch::nn::Module {
 public:
  // Conv2d(in -> out, kernel, stride, groups, "same" padding for odd kernels,
  // no bias), BatchNorm2d(out, eps 1e-5, momentum 0.1), SiLU when `silu`.
  // `fold`: fold the BatchNorm whenever it is in eval mode.
  ConvBnActivationImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups,
                       bool silu, bool fold);

  torch::Tensor forward(const torch::Tensor& input);

  // Whether forward folds now: folding on and the BatchNorm in eval mode.
  bool folds() const { return fold_ && !bn_->is_training(); }
  bool fold_enabled() const { return fold_; }
  void set_fold(bool on) { fold_ = on; }

  const torch::nn::Conv2d& conv() const { return conv_; }
  const torch::nn::BatchNorm2d& bn() const { return bn_; }

 private:
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  torch::nn::SiLU silu_{nullptr};  // null: no activation
  bool fold_;
};
TORCH_MODULE(ConvBnActivation);

// Turns folding on or off in every ConvBnActivation below `root` (itself
// included); returns how many there are (49 in EfficientNet-B0).
int set_fold_frozen_batch_norm(torch::nn::Module& root, bool on);

}  // namespace xfer::trainer::models
