// EfficientNet-B0 in the LibTorch C++ frontend, built so that its module and
// parameter names are exactly those of torchvision's `efficientnet_b0` state
// dict (`features.0.0.weight` ... `classifier.1.bias`). A torchvision state
// dict therefore loads with no renaming (see state_dict.h).
//
// Architecture (torchvision 0.14, models/efficientnet.py):
//   features.0        Conv3x3/2 (3->32, no bias) + BN + SiLU
//   features.1..7     stages of MBConv blocks (expand 1x1, depthwise kxk,
//                     squeeze-excitation, project 1x1), stochastic depth on the
//                     residual branch in train mode only, p grows linearly
//                     with the block index: 0.2 * i / 16
//   features.8        Conv1x1 (320->1280) + BN + SiLU
//   avgpool, classifier = Dropout(0.2), Linear(1280 -> num_classes)
// BatchNorm: eps 1e-5, momentum 0.1 (PyTorch defaults, which B0 uses).
//
// Every conv + BN [+ SiLU] (features.0, the expand, depthwise and project
// convs of each block, features.8) is a ConvBnActivation, which folds the
// BatchNorm into the convolution whenever the BatchNorm is in eval mode
// (conv_bn_activation.h): evaluation, and TransferModel's head and finetune
// phases. The squeeze-excitation convs (with bias, no BN) are plain Conv2d.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <utility>

#include "trainer/models/conv_bn_activation.h"

namespace xfer::trainer::models {

// Rounds `value` to a multiple of `divisor` the way torchvision's
// `_make_divisible` does (never more than 10% below `value`).
int64_t make_divisible(double value, int64_t divisor);

// nn::Sequential with a concrete forward, so Sequentials can nest (AnyModule
// cannot hold nn::Sequential's templated forward). Children are named 0, 1, ...
class SequentialBlockImpl : public torch::nn::SequentialImpl {
 public:
  using torch::nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor input) {
    return torch::nn::SequentialImpl::forward(std::move(input));
  }
};
TORCH_MODULE(SequentialBlock);

// Row-mode stochastic depth: in train mode each sample's residual branch is
// dropped with probability p and the survivors are scaled by 1/(1-p); in eval
// mode it is the identity.
class StochasticDepthImpl : public torch::nn::Module {
 public:
  explicit StochasticDepthImpl(double p);
  torch::Tensor forward(const torch::Tensor& input);
  double p() const { return p_; }

 private:
  double p_;
};
TORCH_MODULE(StochasticDepth);

// Squeeze-excitation: x * sigmoid(fc2(silu(fc1(avgpool(x))))). fc1/fc2 are
// 1x1 convolutions with bias, named as in torchvision.
class SqueezeExcitationImpl : public torch::nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels);
  torch::Tensor forward(const torch::Tensor& input);

 private:
  torch::nn::Conv2d fc1_{nullptr};
  torch::nn::Conv2d fc2_{nullptr};
};
TORCH_MODULE(SqueezeExcitation);

// One MBConv block. Submodules: `block` (Sequential) and `stochastic_depth`.
struct MBConvConfig {
  double expand_ratio = 1;
  int64_t kernel = 3;
  int64_t stride = 1;
  int64_t input_channels = 0;
  int64_t out_channels = 0;
  // Fold each BatchNorm into its convolution while the BN is in eval mode.
  bool fold_frozen_batch_norm = true;
};

class MBConvImpl : public torch::nn::Module {
 public:
  MBConvImpl(const MBConvConfig& config, double stochastic_depth_prob);
  torch::Tensor forward(const torch::Tensor& input);

 private:
  bool use_residual_;
  SequentialBlock block_{nullptr};
  StochasticDepth stochastic_depth_{nullptr};
};
TORCH_MODULE(MBConv);

struct EfficientNetOptions {
  // Width of the classifier. Default: 1000 (ImageNet).
  int64_t num_classes = 1000;
  // Dropout before the classifier. Default: 0.2 (torchvision's B0).
  double dropout = 0.2;
  // Largest stochastic depth probability (for the last block). Default: 0.2.
  double stochastic_depth_prob = 0.2;
  // Fold each BatchNorm into its convolution while the BN is in eval mode
  // (conv_bn_activation.h); off: conv -> bn always. Same numbers up to float
  // rounding, same state dict. Default: true.
  bool fold_frozen_batch_norm = true;
};

// EfficientNet-B0. Submodules: `features`, `classifier` (names as torchvision).
// Weights are initialised as torchvision does (Kaiming-normal fan_out convs,
// BN 1/0, uniform linear), so a fresh model trains like a fresh torchvision one.
class EfficientNetB0Impl : public torch::nn::Module {
 public:
  // Number of channels `features` produces.
  static constexpr int64_t kFeatureChannels = 1280;

  explicit EfficientNetB0Impl(const EfficientNetOptions& options = {});
  // input: [N, 3, H, W] float -> logits [N, num_classes].
  torch::Tensor forward(const torch::Tensor& input);

  SequentialBlock features() const { return features_; }
  torch::nn::Sequential classifier() const { return classifier_; }

 private:
  SequentialBlock features_{nullptr};
  torch::nn::Sequential classifier_{nullptr};
};
TORCH_MODULE(EfficientNetB0);

// Builds B0's `features` Sequential on its own (for TransferModel).
SequentialBlock make_efficientnet_b0_features(double stochastic_depth_prob = 0.2,
                                              bool fold_frozen_batch_norm = true);

// Initialises every Conv2d, BatchNorm2d and Linear below `module` the way
// torchvision's EfficientNet constructor does.
void init_efficientnet_weights(torch::nn::Module& module);

// Sets the running statistics of every BatchNorm2d below `module` to those of
// the one batch `forward` runs (momentum 1 for that pass, each BatchNorm's own
// momentum afterwards), as pretraining would have left them: a fresh
// network's 0 and 1 normalise nothing in eval mode. For tests and benchmarks
// of untrained networks. The caller puts the BatchNorms in train mode; the
// pass records no gradients.
void measure_batch_norm_statistics(torch::nn::Module& module, const std::function<void()>& forward);

}  // namespace xfer::trainer::models
