#include "trainer/train/fused_adam.h"

#include <torch/utils.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/vector_clones.h"

namespace xfer::trainer::train {
namespace {

// The tensors of one parameter's update, all float32 on the CPU, dense, with
// the same sizes and strides: element i of each is at data + i.
bool same_dense_layout(const torch::Tensor& a, const torch::Tensor& b) {
  return a.is_non_overlapping_and_dense() && b.is_non_overlapping_and_dense() &&
         a.sizes().equals(b.sizes()) && a.strides().equals(b.strides());
}

bool can_fuse(const torch::optim::Adam& optimizer) {
  for (const auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    if (options.amsgrad()) return false;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const torch::Tensor& grad = p.grad();
      if (!p.device().is_cpu() || p.scalar_type() != torch::kFloat32 || grad.is_sparse() ||
          grad.scalar_type() != torch::kFloat32 || !same_dense_layout(p, grad)) {
        return false;
      }
    }
  }
  return true;
}

// Scalars as LibTorch turns Adam's doubles into float for a float tensor.
struct Coefficients {
  float beta1;
  float one_minus_beta1;
  float beta2;
  float one_minus_beta2;
  float sqrt_bias_correction2;
  float eps;
  float minus_step_size;
  float weight_decay;
};

// Built three times, chosen once at load time by the CPU (GCC's ifunc): the
// two divisions and the square root per element are what this loop spends,
// and AVX2 and AVX-512 do 8 and 16 of each at a time against SSE2's 4.
XFER_VECTOR_CLONES void update(float* param, const float* grad, float* exp_avg, float* exp_avg_sq,
                               std::int64_t n, const Coefficients& c) {
  for (std::int64_t i = 0; i < n; ++i) {
    // grad = grad.add(p, weight_decay) when weight_decay != 0.
    const float g = c.weight_decay != 0.0F ? grad[i] + c.weight_decay * param[i] : grad[i];
    // exp_avg.mul_(beta1).add_(grad, 1 - beta1)
    const float m = exp_avg[i] * c.beta1 + c.one_minus_beta1 * g;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
    const float v = exp_avg_sq[i] * c.beta2 + c.one_minus_beta2 * g * g;
    // denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps)
    const float denom = std::sqrt(v) / c.sqrt_bias_correction2 + c.eps;
    // p.addcdiv_(exp_avg, denom, -step_size)
    param[i] = param[i] + c.minus_step_size * m / denom;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
  }
}

}  // namespace

std::unique_ptr<torch::optim::Adam> make_adam(const std::vector<torch::Tensor>& parameters,
                                              double lr, double eps) {
  return std::make_unique<torch::optim::Adam>(parameters, torch::optim::AdamOptions(lr).eps(eps));
}

std::string adam_state_key(const torch::Tensor& parameter) {
  return c10::guts::to_string(parameter.unsafeGetTensorImpl());
}

void fused_adam_step(torch::optim::Adam& optimizer) {
  if (!can_fuse(optimizer)) {
    optimizer.step();
    return;
  }
  torch::NoGradGuard no_grad;
  auto& states = optimizer.state();
  for (auto& group : optimizer.param_groups()) {
    const auto& options = static_cast<const torch::optim::AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const std::string key = adam_state_key(p);
      auto found = states.find(key);
      if (found == states.end()) {
        // As Adam::step makes it: zeros in the parameter's layout.
        auto state = std::make_unique<torch::optim::AdamParamState>();
        state->step(0);
        state->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        state->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        found = states.emplace(key, std::move(state)).first;
      }
      auto& state = static_cast<torch::optim::AdamParamState&>(*found->second);
      torch::Tensor exp_avg = state.exp_avg();
      torch::Tensor exp_avg_sq = state.exp_avg_sq();
      if (!same_dense_layout(p, exp_avg) || !same_dense_layout(p, exp_avg_sq) ||
          exp_avg.scalar_type() != torch::kFloat32 || exp_avg_sq.scalar_type() != torch::kFloat32) {
        // A restored state in another layout: give it the parameter's once.
        exp_avg = torch::empty_like(p).copy_(exp_avg);
        exp_avg_sq = torch::empty_like(p).copy_(exp_avg_sq);
        state.exp_avg(exp_avg);
        state.exp_avg_sq(exp_avg_sq);
      }
      state.step(state.step() + 1);
      const double beta1 = std::get<0>(options.betas());
      const double beta2 = std::get<1>(options.betas());
      const double bias_correction1 = 1 - std::pow(beta1, state.step());
      const double bias_correction2 = 1 - std::pow(beta2, state.step());
      Coefficients c{};
      c.beta1 = static_cast<float>(beta1);
      c.one_minus_beta1 = static_cast<float>(1 - beta1);
      c.beta2 = static_cast<float>(beta2);
      c.one_minus_beta2 = static_cast<float>(1 - beta2);
      c.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bias_correction2));
      c.eps = static_cast<float>(options.eps());
      c.minus_step_size = static_cast<float>(-(options.lr() / bias_correction1));
      c.weight_decay = static_cast<float>(options.weight_decay());
      update(p.data_ptr<float>(), p.grad().data_ptr<float>(), exp_avg.data_ptr<float>(),
             exp_avg_sq.data_ptr<float>(), p.numel(), c);
      // Written through raw pointers: bump the versions as add_ would.
      for (const torch::Tensor* t : {&p, &exp_avg, &exp_avg_sq}) {
        t->unsafeGetTensorImpl()->bump_version();
      }
    }
  }
}

}  // namespace xfer::trainer::train
