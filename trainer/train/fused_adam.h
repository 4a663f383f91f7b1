// Adam's update in one pass over each parameter's memory.
//
// torch::optim::Adam::step runs its update as about eight tensor operations
// per parameter (mul_, add_, mul_, addcmul_, sqrt, div, add_, addcdiv_), each
// a pass over memory, some with a temporary: about 17 ms a step for
// EfficientNet-B0's 4.1 M parameters on one core here, 8% of a training step
// at 32 px. fused_adam_step computes the same update reading the parameter,
// its gradient and both moments once and writing the parameter and the
// moments once.
//
// It updates the optimizer's own state (AdamParamState: step, exp_avg,
// exp_avg_sq, created the way Adam::step creates them), so checkpoints,
// resume (checkpoint_codec.h) and a later optimizer.step() see no
// difference. The arithmetic is Adam::step's in LibTorch 1.13, operation by
// operation in float with the same constants; only the rounding of LibTorch's
// vector kernels (fused multiply-adds in some) differs: results agree to a
// few units in the last place per step (fused_adam_test).
//
// Falls back to optimizer.step() when the update is not a plain float CPU
// one it can run in one pass: AMSGrad on, a parameter off the CPU or not
// float32, sparse gradients, or a parameter, gradient and moments whose
// memory layouts differ.
#pragma once

#include <torch/optim/adam.h>
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace xfer::trainer::train {

// The training job's optimizer: Adam over `parameters` at `lr` with epsilon
// `eps` (TrainOptions::adam_eps) and the default betas (0.9, 0.999), no
// weight decay, no AMSGrad: what fused_adam_step runs in one pass.
std::unique_ptr<torch::optim::Adam> make_adam(const std::vector<torch::Tensor>& parameters,
                                              double lr, double eps);

// One optimizer step, as optimizer.step() (see above). Parameters without a
// gradient are skipped, as there.
void fused_adam_step(torch::optim::Adam& optimizer);

// The key of `parameter`'s state in torch::optim::Adam::state(): its
// TensorImpl's address, as LibTorch's optimizers key it.
std::string adam_state_key(const torch::Tensor& parameter);

}  // namespace xfer::trainer::train
