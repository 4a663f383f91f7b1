// The small CNN of the equivalence tests: conv + BatchNorm (frozen, in
// inference mode) + ReLU twice, global average pool, dropout 0, linear.
// Batches are a pure function of (seed, step), so every rank can cut its
// slice of the global batch and a reference run can take all of it.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cstdint>
#include <utility>

namespace xfer::trainer::dist::mpitest {

struct SmallCnnImpl : torch::nn::Module {
  SmallCnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3)))),
        bn1(register_module("bn1", torch::nn::BatchNorm2d(8))),
        conv2(register_module("conv2",
                              torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 16, 3).stride(2)))),
        bn2(register_module("bn2", torch::nn::BatchNorm2d(16))),
        dropout(register_module("dropout", torch::nn::Dropout(0.0))),
        head(register_module("head", torch::nn::Linear(16, 10))) {}

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn1(conv1(x)));
    x = torch::relu(bn2(conv2(x)));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return head(dropout(x));
  }

  // BatchNorm frozen as in both training phases: no gradients, running
  // statistics used (not updated). Non-trivial statistics make it matter.
  void freeze_batchnorm() {
    for (auto* bn : {bn1.get(), bn2.get()}) {
      bn->eval();
      bn->weight.set_requires_grad(false);
      bn->bias.set_requires_grad(false);
      torch::NoGradGuard no_grad;
      bn->running_mean.uniform_(-0.1, 0.1);
      bn->running_var.uniform_(0.5, 1.5);
    }
  }

  // Head phase: everything but the head frozen.
  void freeze_base(bool frozen) {
    for (auto* conv : {conv1.get(), conv2.get()}) {
      conv->weight.set_requires_grad(!frozen);
      conv->bias.set_requires_grad(!frozen);
    }
  }

  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  torch::nn::BatchNorm2d bn2;
  torch::nn::Dropout dropout;
  torch::nn::Linear head;
};
TORCH_MODULE(SmallCnn);

// A model whose weights depend only on `seed`.
inline SmallCnn make_small_cnn(std::uint64_t seed) {
  torch::manual_seed(seed);
  SmallCnn model;
  model->freeze_batchnorm();
  return model;
}

// Samples [begin, begin + count) of the global batch of `step`.
inline std::pair<torch::Tensor, torch::Tensor> batch_slice(std::int64_t step,
                                                           std::int64_t global_batch,
                                                           std::int64_t begin, std::int64_t count) {
  torch::manual_seed(static_cast<std::uint64_t>(1000 + step));
  torch::Tensor images = torch::randn({global_batch, 3, 9, 9});
  torch::Tensor labels = torch::randint(0, 10, {global_batch}, torch::kInt64);
  return {images.narrow(0, begin, count), labels.narrow(0, begin, count)};
}

}  // namespace xfer::trainer::dist::mpitest
