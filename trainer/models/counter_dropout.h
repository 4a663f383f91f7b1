// Dropout whose mask costs one hash per element instead of one Bernoulli
// draw from the Mersenne Twister.
//
// LibTorch's CPU dropout (without MKL, as Debian builds it) draws every
// element's keep/drop from the generator one at a time: about 1 ms for the
// 64 x 1280 features of one EfficientNet-B0 head batch, a third of a head
// step trained from cached features. Here each element is kept when a keyed
// 32-bit hash of its index maps to a uniform number >= p, the keys coming
// from one draw of LibTorch's default CPU generator: torch::manual_seed therefore
// decides every mask, as with torch::dropout, though not the same masks.
// Kept elements are scaled by 1 / (1 - p), as torch::dropout does.
// Tensors on other devices use torch::dropout (fast there).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>
#include <torch/utils.h>

namespace xfer::trainer::models {

// `input` with each element zeroed with probability p and the rest scaled by
// 1 / (1 - p) when `training`; `input` itself otherwise. Differentiable
// (the gradient is the same mask). REQUIRES: 0 <= p < 1, else
// std::invalid_argument.
torch::Tensor counter_dropout(const torch::Tensor& input, double p, bool training);

// The module form, for nn::Sequential (no parameters or buffers, so a state
// dict is the same as with nn::Dropout in its place).
class CounterDropoutImpl : public torch::nn::Module {
 public:
  explicit CounterDropoutImpl(double p);
  torch::Tensor forward(const torch::Tensor& input);
  double p() const { return p_; }

 private:
  double p_;
};
TORCH_MODULE(CounterDropout);

}  // namespace xfer::trainer::models
