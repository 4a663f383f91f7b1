#include "trainer/models/efficientnet.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace xfer::trainer::models {
namespace {

namespace nn = torch::nn;

struct StageSpec {
  double expand_ratio;
  int64_t kernel;
  int64_t stride;
  int64_t input_channels;
  int64_t out_channels;
  int64_t num_layers;
};

// torchvision's `_efficientnet_conf("efficientnet_b0")` (width and depth
// multipliers 1.0, so rounding leaves every number as written).
constexpr StageSpec kB0Stages[] = {
    {1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},   {6, 5, 2, 24, 40, 2},   {6, 3, 2, 40, 80, 3},
    {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4}, {6, 3, 1, 192, 320, 1},
};

}  // namespace

int64_t make_divisible(double value, int64_t divisor) {
  const auto rounded = static_cast<int64_t>(value + static_cast<double>(divisor) / 2) / divisor;
  int64_t result = std::max<int64_t>(divisor, rounded * divisor);
  // Rounding down must not lose more than 10% of the channels.
  if (static_cast<double>(result) < 0.9 * value) result += divisor;
  return result;
}

StochasticDepthImpl::StochasticDepthImpl(double p) : p_(p) {
  if (p < 0 || p > 1) {
    throw std::invalid_argument("stochastic depth probability must be in [0, 1], got " +
                                std::to_string(p));
  }
}

torch::Tensor StochasticDepthImpl::forward(const torch::Tensor& input) {
  if (!is_training() || p_ == 0.0) return input;
  const double survival = 1.0 - p_;
  std::vector<int64_t> shape(static_cast<size_t>(input.dim()), 1);
  shape[0] = input.size(0);
  auto noise = torch::empty(shape, input.options()).bernoulli_(survival);
  if (survival > 0.0) noise.div_(survival);
  return input * noise;
}

SqueezeExcitationImpl::SqueezeExcitationImpl(int64_t channels, int64_t squeeze_channels)
    : fc1_(register_module("fc1", nn::Conv2d(nn::Conv2dOptions(channels, squeeze_channels, 1)))),
      fc2_(register_module("fc2", nn::Conv2d(nn::Conv2dOptions(squeeze_channels, channels, 1)))) {}

torch::Tensor SqueezeExcitationImpl::forward(const torch::Tensor& input) {
  auto scale = torch::adaptive_avg_pool2d(input, {1, 1});
  scale = torch::silu(fc1_->forward(scale));
  scale = torch::sigmoid(fc2_->forward(scale));
  return scale * input;
}

MBConvImpl::MBConvImpl(const MBConvConfig& config, double stochastic_depth_prob)
    : use_residual_(config.stride == 1 && config.input_channels == config.out_channels) {
  if (config.stride < 1 || config.stride > 2) {
    throw std::invalid_argument("MBConv stride must be 1 or 2, got " +
                                std::to_string(config.stride));
  }
  const int64_t expanded =
      make_divisible(static_cast<double>(config.input_channels) * config.expand_ratio, 8);
  const bool fold = config.fold_frozen_batch_norm;
  SequentialBlock block;
  if (expanded != config.input_channels) {
    block->push_back(ConvBnActivation(config.input_channels, expanded, /*kernel=*/1, /*stride=*/1,
                                      /*groups=*/1, /*silu=*/true, fold));
  }
  block->push_back(ConvBnActivation(expanded, expanded, config.kernel, config.stride,
                                    /*groups=*/expanded, /*silu=*/true, fold));
  block->push_back(SqueezeExcitation(expanded, std::max<int64_t>(1, config.input_channels / 4)));
  block->push_back(ConvBnActivation(expanded, config.out_channels, /*kernel=*/1, /*stride=*/1,
                                    /*groups=*/1, /*silu=*/false, fold));
  block_ = register_module("block", block);
  stochastic_depth_ = register_module("stochastic_depth", StochasticDepth(stochastic_depth_prob));
}

torch::Tensor MBConvImpl::forward(const torch::Tensor& input) {
  auto result = block_->forward(input);
  if (use_residual_) {
    result = stochastic_depth_->forward(result);
    result += input;
  }
  return result;
}

SequentialBlock make_efficientnet_b0_features(double stochastic_depth_prob,
                                              bool fold_frozen_batch_norm) {
  SequentialBlock features;
  features->push_back(ConvBnActivation(3, kB0Stages[0].input_channels, /*kernel=*/3, /*stride=*/2,
                                       /*groups=*/1, /*silu=*/true, fold_frozen_batch_norm));
  int64_t total_blocks = 0;
  for (const auto& stage : kB0Stages) total_blocks += stage.num_layers;
  int64_t block_id = 0;
  for (const auto& stage : kB0Stages) {
    SequentialBlock blocks;
    for (int64_t i = 0; i < stage.num_layers; ++i) {
      MBConvConfig config{stage.expand_ratio,   stage.kernel,       stage.stride,
                          stage.input_channels, stage.out_channels, fold_frozen_batch_norm};
      // Later blocks of a stage keep the resolution and take the stage's width.
      if (i > 0) {
        config.input_channels = stage.out_channels;
        config.stride = 1;
      }
      const double p =
          stochastic_depth_prob * static_cast<double>(block_id) / static_cast<double>(total_blocks);
      blocks->push_back(MBConv(config, p));
      ++block_id;
    }
    features->push_back(blocks);
  }
  const int64_t last_in = kB0Stages[std::size(kB0Stages) - 1].out_channels;
  features->push_back(ConvBnActivation(last_in, 4 * last_in, /*kernel=*/1, /*stride=*/1,
                                       /*groups=*/1, /*silu=*/true, fold_frozen_batch_norm));
  return features;
}

void init_efficientnet_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& child : module.modules(/*include_self=*/false)) {
    if (auto* conv = child->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanOut);
      if (conv->bias.defined()) nn::init::zeros_(conv->bias);
    } else if (auto* bn = child->as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    } else if (auto* linear = child->as<nn::Linear>()) {
      const double range = 1.0 / std::sqrt(static_cast<double>(linear->options.out_features()));
      nn::init::uniform_(linear->weight, -range, range);
      nn::init::zeros_(linear->bias);
    }
  }
}

EfficientNetB0Impl::EfficientNetB0Impl(const EfficientNetOptions& options) {
  if (options.num_classes < 1) {
    throw std::invalid_argument("EfficientNet-B0 num_classes must be >= 1, got " +
                                std::to_string(options.num_classes));
  }
  features_ = register_module(
      "features",
      make_efficientnet_b0_features(options.stochastic_depth_prob, options.fold_frozen_batch_norm));
  classifier_ = register_module("classifier",
                                nn::Sequential(nn::Dropout(nn::DropoutOptions(options.dropout)),
                                               nn::Linear(kFeatureChannels, options.num_classes)));
  init_efficientnet_weights(*this);
}

torch::Tensor EfficientNetB0Impl::forward(const torch::Tensor& input) {
  auto x = features_->forward(input);
  x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  return classifier_->forward(x);
}

void measure_batch_norm_statistics(torch::nn::Module& module,
                                   const std::function<void()>& forward) {
  std::vector<std::pair<nn::BatchNorm2dImpl*, c10::optional<double>>> batchnorms;  // + momentum
  for (const auto& child : module.modules(/*include_self=*/false)) {
    if (auto* bn = child->as<nn::BatchNorm2d>()) {
      batchnorms.emplace_back(bn, bn->options.momentum());
      bn->options.momentum(1.0);
    }
  }
  {
    torch::NoGradGuard no_grad;
    forward();
  }
  for (auto& [bn, momentum] : batchnorms) bn->options.momentum(momentum);
}

}  // namespace xfer::trainer::models
