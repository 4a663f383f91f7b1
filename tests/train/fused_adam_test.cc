// fused_adam_step against torch::optim::Adam::step: the same parameters and
// state after several steps (to float rounding), the same state layout, the
// fallbacks, and a mix of both (what a resume from a checkpoint does).
#include "trainer/train/fused_adam.h"

#include <gtest/gtest.h>

#include <vector>

namespace xfer::trainer::train {
namespace {

// Parameters shaped like EfficientNet's: a channels-last 3x3 convolution, a
// 1x1 one with fresh channels-last strides, a vector and a matrix.
std::vector<torch::Tensor> make_parameters() {
  torch::manual_seed(1);
  std::vector<torch::Tensor> params;
  params.push_back(torch::randn({16, 8, 3, 3}).contiguous(torch::MemoryFormat::ChannelsLast));
  params.push_back(torch::empty({32, 16, 1, 1}, torch::MemoryFormat::ChannelsLast).normal_());
  params.push_back(torch::randn({32}));
  params.push_back(torch::randn({10, 32}));
  for (auto& p : params) p.set_requires_grad(true);
  return params;
}

std::vector<torch::Tensor> clone_parameters(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) {
    out.push_back(torch::empty_like(p).copy_(p.detach()).set_requires_grad(true));
  }
  return out;
}

// Gives every parameter the gradient drawn for step `step` (the same for
// both sets), in the parameter's layout as autograd gives it.
void set_gradients(std::vector<torch::Tensor>& params, int step) {
  torch::manual_seed(100 + step);
  for (auto& p : params) {
    p.mutable_grad() = torch::empty_like(p).copy_(torch::randn(p.sizes()) * 0.1);
  }
}

// The largest difference relative to the tensor's scale (a moment can sum
// to nearly zero, where element-wise relative differences mean nothing).
double max_relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

void expect_same_state(torch::optim::Adam& fused, torch::optim::Adam& reference,
                       const std::vector<torch::Tensor>& fused_params,
                       const std::vector<torch::Tensor>& reference_params, double tolerance) {
  for (std::size_t i = 0; i < fused_params.size(); ++i) {
    SCOPED_TRACE("parameter " + std::to_string(i));
    EXPECT_LT(max_relative_difference(fused_params[i], reference_params[i]), tolerance);
    const auto& f = static_cast<const torch::optim::AdamParamState&>(
        *fused.state().at(adam_state_key(fused_params[i])));
    const auto& r = static_cast<const torch::optim::AdamParamState&>(
        *reference.state().at(adam_state_key(reference_params[i])));
    EXPECT_EQ(f.step(), r.step());
    EXPECT_LT(max_relative_difference(f.exp_avg(), r.exp_avg()), tolerance);
    EXPECT_LT(max_relative_difference(f.exp_avg_sq(), r.exp_avg_sq()), tolerance);
    // The moments keep the parameter's layout, as Adam makes them.
    EXPECT_EQ(f.exp_avg().strides(), fused_params[i].strides());
    EXPECT_EQ(f.exp_avg_sq().strides(), fused_params[i].strides());
  }
}

TEST(FusedAdam, MatchesAdamStepOverManySteps) {
  for (const double weight_decay : {0.0, 0.01}) {
    SCOPED_TRACE("weight decay " + std::to_string(weight_decay));
    std::vector<torch::Tensor> reference_params = make_parameters();
    std::vector<torch::Tensor> fused_params = clone_parameters(reference_params);
    const auto options = torch::optim::AdamOptions(1e-3).eps(1e-7).weight_decay(weight_decay);
    torch::optim::Adam reference(reference_params, options);
    torch::optim::Adam fused(fused_params, options);
    for (int step = 0; step < 20; ++step) {
      set_gradients(reference_params, step);
      set_gradients(fused_params, step);
      reference.step();
      fused_adam_step(fused);
    }
    expect_same_state(fused, reference, fused_params, reference_params, 1e-6);
    // And the parameters moved: the comparison is not of two untouched sets.
    EXPECT_GT(max_relative_difference(fused_params[3], make_parameters()[3]), 1e-3);
  }
}

TEST(FusedAdam, StateItMakesIsAdamsOwnSoTheTwoCanAlternate) {
  std::vector<torch::Tensor> reference_params = make_parameters();
  std::vector<torch::Tensor> mixed_params = clone_parameters(reference_params);
  torch::optim::Adam reference(reference_params, torch::optim::AdamOptions(1e-2));
  torch::optim::Adam mixed(mixed_params, torch::optim::AdamOptions(1e-2));
  for (int step = 0; step < 6; ++step) {
    set_gradients(reference_params, step);
    set_gradients(mixed_params, step);
    reference.step();
    if (step % 2 == 0) {
      fused_adam_step(mixed);
    } else {
      mixed.step();
    }
  }
  expect_same_state(mixed, reference, mixed_params, reference_params, 1e-6);
}

TEST(FusedAdam, SkipsParametersWithoutAGradient) {
  std::vector<torch::Tensor> params = make_parameters();
  torch::optim::Adam optimizer(params, torch::optim::AdamOptions(1e-3));
  set_gradients(params, 0);
  params[2].mutable_grad() = torch::Tensor();
  const torch::Tensor before = params[2].detach().clone();
  fused_adam_step(optimizer);
  EXPECT_TRUE(torch::equal(params[2], before));
  EXPECT_EQ(optimizer.state().count(adam_state_key(params[2])), 0U);
  EXPECT_EQ(optimizer.state().size(), params.size() - 1);
}

TEST(FusedAdam, BumpsTheVersionOfWhatItWrites) {
  // It writes through raw pointers; the version counter must still move, as
  // with add_, or a fold kept under InferenceMode (conv_bn_activation.h) and
  // autograd's saved-tensor check would not see the update.
  std::vector<torch::Tensor> params = make_parameters();
  torch::optim::Adam optimizer(params, torch::optim::AdamOptions(1e-3));
  set_gradients(params, 0);
  fused_adam_step(optimizer);
  const auto before = params[0]._version();
  const auto& state = static_cast<const torch::optim::AdamParamState&>(
      *optimizer.state().at(adam_state_key(params[0])));
  const auto moments_before = state.exp_avg()._version();
  fused_adam_step(optimizer);
  EXPECT_GT(params[0]._version(), before);
  EXPECT_GT(state.exp_avg()._version(), moments_before);
}

TEST(FusedAdam, AmsGradAndMismatchedLayoutsFallBackToAdamStepExactly) {
  {
    std::vector<torch::Tensor> reference_params = make_parameters();
    std::vector<torch::Tensor> fused_params = clone_parameters(reference_params);
    const auto options = torch::optim::AdamOptions(1e-3).amsgrad(true);
    torch::optim::Adam reference(reference_params, options);
    torch::optim::Adam fused(fused_params, options);
    for (int step = 0; step < 3; ++step) {
      set_gradients(reference_params, step);
      set_gradients(fused_params, step);
      reference.step();
      fused_adam_step(fused);
    }
    for (std::size_t i = 0; i < fused_params.size(); ++i) {
      EXPECT_TRUE(torch::equal(fused_params[i], reference_params[i])) << "parameter " << i;
    }
  }
  {
    // A gradient whose strides differ from its parameter's.
    std::vector<torch::Tensor> reference_params = make_parameters();
    std::vector<torch::Tensor> fused_params = clone_parameters(reference_params);
    torch::optim::Adam reference(reference_params, torch::optim::AdamOptions(1e-3));
    torch::optim::Adam fused(fused_params, torch::optim::AdamOptions(1e-3));
    set_gradients(reference_params, 0);
    set_gradients(fused_params, 0);
    reference_params[0].mutable_grad() = reference_params[0].grad().contiguous();
    fused_params[0].mutable_grad() = fused_params[0].grad().contiguous();
    reference.step();
    fused_adam_step(fused);
    for (std::size_t i = 0; i < fused_params.size(); ++i) {
      EXPECT_TRUE(torch::equal(fused_params[i], reference_params[i])) << "parameter " << i;
    }
  }
}

}  // namespace
}  // namespace xfer::trainer::train
