// An EfficientNet-B0 with torchvision's layer shapes (213 parameter tensors,
// 4,135,648 values with a 100-class head), for the all-reduce benchmark only.
// trainer/models holds the real one; this stand-in keeps the benchmark
// independent of it and has the same parameter shapes, hence the same
// gradient bytes and about the same backward cost (no stochastic depth,
// dropout 0).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>

namespace xfer::bench {

inline torch::nn::Sequential conv_bn(std::int64_t in, std::int64_t out, std::int64_t kernel,
                                     std::int64_t stride, std::int64_t groups, bool activation) {
  torch::nn::Sequential seq(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                                  .stride(stride)
                                                  .padding((kernel - 1) / 2)
                                                  .groups(groups)
                                                  .bias(false)),
                            torch::nn::BatchNorm2d(out));
  if (activation) seq->push_back(torch::nn::SiLU());
  return seq;
}

struct SqueezeExcitationImpl : torch::nn::Module {
  SqueezeExcitationImpl(std::int64_t channels, std::int64_t squeezed)
      : fc1(register_module("fc1",
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, squeezed, 1)))),
        fc2(register_module("fc2",
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(squeezed, channels, 1)))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor s = torch::adaptive_avg_pool2d(x, {1, 1});
    return x * torch::sigmoid(fc2(torch::silu(fc1(s))));
  }
  torch::nn::Conv2d fc1;
  torch::nn::Conv2d fc2;
};
TORCH_MODULE(SqueezeExcitation);

struct MBConvImpl : torch::nn::Module {
  MBConvImpl(std::int64_t in, std::int64_t out, std::int64_t expand, std::int64_t kernel,
             std::int64_t stride)
      : residual(stride == 1 && in == out) {
    const std::int64_t hidden = in * expand;
    if (expand != 1) expand_conv = register_module("expand", conv_bn(in, hidden, 1, 1, 1, true));
    depthwise = register_module("depthwise", conv_bn(hidden, hidden, kernel, stride, hidden, true));
    se = register_module("se", SqueezeExcitation(hidden, std::max<std::int64_t>(1, in / 4)));
    project = register_module("project", conv_bn(hidden, out, 1, 1, 1, false));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = expand_conv ? expand_conv->forward(x) : x;
    y = project->forward(se->forward(depthwise->forward(y)));
    return residual ? y + x : y;
  }
  bool residual;
  torch::nn::Sequential expand_conv{nullptr};
  torch::nn::Sequential depthwise{nullptr};
  SqueezeExcitation se{nullptr};
  torch::nn::Sequential project{nullptr};
};
TORCH_MODULE(MBConv);

struct B0ShapedImpl : torch::nn::Module {
  explicit B0ShapedImpl(std::int64_t classes) {
    stem = register_module("stem", conv_bn(3, 32, 3, 2, 1, true));
    // expand, kernel, stride, in, out, repeats (torchvision's B0 table)
    const std::int64_t table[7][6] = {
        {1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},   {6, 5, 2, 24, 40, 2},  {6, 3, 2, 40, 80, 3},
        {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4}, {6, 3, 1, 192, 320, 1}};
    blocks = register_module("blocks", torch::nn::Sequential());
    for (const auto& row : table) {
      for (std::int64_t i = 0; i < row[5]; ++i) {
        blocks->push_back(
            MBConv(i == 0 ? row[3] : row[4], row[4], row[0], row[1], i == 0 ? row[2] : 1));
      }
    }
    top = register_module("top", conv_bn(320, 1280, 1, 1, 1, true));
    head = register_module("head", torch::nn::Linear(1280, classes));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = top->forward(blocks->forward(stem->forward(x)));
    return head(torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }
  // Fine-tuning as the trainer does it: every layer trains except
  // BatchNorm, which stays frozen and in inference mode.
  void freeze_batchnorm() {
    for (auto& module : modules(/*include_self=*/false)) {
      if (auto* bn = module->as<torch::nn::BatchNorm2d>()) {
        bn->eval();
        bn->weight.set_requires_grad(false);
        bn->bias.set_requires_grad(false);
      }
    }
  }
  torch::nn::Sequential stem{nullptr};
  torch::nn::Sequential blocks{nullptr};
  torch::nn::Sequential top{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(B0Shaped);

}  // namespace xfer::bench
