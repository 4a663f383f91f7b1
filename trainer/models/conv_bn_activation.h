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
// scratch) runs unfolded.
//
// With one intra-op thread (the trainer's setting per rank; with more,
// LibTorch's parallel kernels win) and a channels-last float32 CPU batch, two
// kernels of our own replace LibTorch's, equal to them to float rounding:
// - a BatchNorm in train mode followed by SiLU runs as one fused step
//   (batch_norm_silu_kernels.h: two passes forward and two backward instead
//   of about five and eight), running statistics updated as BatchNorm2d does
//   (set_fuse_train_batch_norm_silu turns it off);
// - where backward will run, a depthwise convolution on a map of at most
//   direct_depthwise_max_pixels() pixels sums its taps directly
//   (depthwise_conv_kernels.h; set_direct_depthwise_max_pixels(root, 0) turns
//   it off).
// Both off, training runs exactly as conv -> bn -> silu.
//
// Under InferenceMode (the head phase's frozen base) the folded weight and
// bias are kept from one forward to the next, as long as the five tensors
// they come from are the same tensors at the same version; any forward
// outside InferenceMode drops them, so they never outlive a training step.
// And where autograd records nothing, SiLU runs in place.
//
// The state dict is untouched: the children are the plain modules, named as
// torchvision names them, "0" (Conv2d), "1" (BatchNorm2d) and "2" (SiLU), so
// `features.0.0.weight`, `features.0.1.running_mean` ... load and save as
// before, and code that finds BatchNorms by `as<nn::BatchNorm2d>()` or
// convolutions by `as<nn::Conv2d>()` still finds them.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <array>
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

// See ConvBnActivationImpl::direct_depthwise_max_pixels.
// 16 x 16: at 32 px every depthwise map of EfficientNet-B0 but the first;
// at 224 px the 14 x 14 and 7 x 7 stages (model_bench --ab-depthwise: larger
// maps gain nothing).
constexpr std::int64_t kDefaultDirectDepthwiseMaxPixels = 256;

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
  bool fuse_train_enabled() const { return fuse_train_; }
  void set_fuse_train(bool on) { fuse_train_ = on; }
  // Whether the latest forward ran the fused BatchNorm + SiLU.
  bool fused_last_forward() const { return fused_last_forward_; }

  // Depthwise convolutions whose input has at most this many pixels (H * W)
  // run as direct summation (depthwise_conv_kernels.h) where autograd
  // records them (backward will run: oneDNN's depthwise backward is the slow
  // part) on a channels-last float32 CPU batch with one intra-op thread; 0
  // turns it off.
  std::int64_t direct_depthwise_max_pixels() const { return direct_depthwise_max_pixels_; }
  void set_direct_depthwise_max_pixels(std::int64_t pixels) {
    direct_depthwise_max_pixels_ = pixels;
  }
  // Whether the latest forward's convolution ran that way.
  bool direct_depthwise_last_forward() const { return direct_depthwise_last_forward_; }

  const torch::nn::Conv2d& conv() const { return conv_; }
  const torch::nn::BatchNorm2d& bn() const { return bn_; }

  // Whether a folded weight is kept for the next InferenceMode forward.
  bool holds_inference_fold() const { return inference_fold_.weight.defined(); }

 private:
  // Identity of one source tensor of the fold: storage and version.
  struct SourceStamp {
    const void* data = nullptr;
    std::int64_t version = -1;
    bool operator==(const SourceStamp& other) const {
      return data == other.data && version == other.version;
    }
  };
  using FoldSources = std::array<SourceStamp, 5>;
  // The stamps of W, gamma, beta, running mean and variance; false when one
  // of them is an inference tensor (no version to compare).
  bool stamp_fold_sources(FoldSources& stamps) const;
  // The folded weight for a forward under InferenceMode, from the kept one
  // when its sources are unchanged.
  const FoldedConv& inference_fold();
  bool takes_direct_depthwise(const torch::Tensor& input, const torch::Tensor& weight) const;
  // The block's convolution of `input` with `weight` (and `bias`, may be
  // undefined): LibTorch's, or the direct depthwise one.
  torch::Tensor convolve(const torch::Tensor& input, const torch::Tensor& weight,
                         const torch::Tensor& bias);

  torch::nn::Conv2d conv_{nullptr};
  torch::nn::BatchNorm2d bn_{nullptr};
  torch::nn::SiLU silu_{nullptr};  // null: no activation
  bool fold_;
  bool fuse_train_ = true;
  bool fused_last_forward_ = false;
  std::int64_t direct_depthwise_max_pixels_ = kDefaultDirectDepthwiseMaxPixels;
  bool direct_depthwise_last_forward_ = false;
  FoldedConv inference_fold_;  // undefined tensors: none kept
  FoldSources inference_fold_sources_{};
};
TORCH_MODULE(ConvBnActivation);

// Turns folding on or off in every ConvBnActivation below `root` (itself
// included); returns how many there are (49 in EfficientNet-B0).
int set_fold_frozen_batch_norm(torch::nn::Module& root, bool on);

// The same for the fused train-mode BatchNorm + SiLU (on by default).
int set_fuse_train_batch_norm_silu(torch::nn::Module& root, bool on);

// The same for direct depthwise convolution (0: off).
int set_direct_depthwise_max_pixels(torch::nn::Module& root, std::int64_t pixels);

// Whether batch_norm_silu_train takes `input` with `bn`: a 4-D float32 CPU
// tensor, channels-last contiguous (what a channels-last convolution
// returns; [N, C, 1, 1] counts), more than one value per channel; `bn`
// affine, tracking running statistics with a fixed momentum.
bool fusable_batch_norm_silu(const torch::Tensor& input, const torch::nn::BatchNorm2dImpl& bn);

// silu(bn(input)) with `bn` in train mode: normalised by the batch's
// statistics, bn's running mean and (unbiased) variance and
// num_batches_tracked updated as BatchNorm2d::forward does. Differentiable
// in input, gamma and beta (not twice). REQUIRES: fusable_batch_norm_silu.
torch::Tensor batch_norm_silu_train(const torch::Tensor& input, torch::nn::BatchNorm2dImpl& bn);

}  // namespace xfer::trainer::models
