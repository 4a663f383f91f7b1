// The loops of training-mode BatchNorm followed by SiLU, fused, on
// channels-last float32 data: `rows` rows (N * H * W) of `channels` floats.
//
// Unfused, a training step makes five passes over the activation forward
// (BatchNorm's statistics and normalisation, SiLU) and about eight backward
// (SiLU's backward, BatchNorm's two); these make two and two. No LibTorch
// here: ConvBnActivation (conv_bn_activation.h) wraps them in an autograd
// function. Each loop is built for SSE2, AVX2 and AVX-512 and chosen at load
// time by the CPU; exp is a polynomial the compiler can vectorise.
#pragma once

#include <cstdint>

namespace xfer::trainer::models::kernels {

// Per channel: the mean and the biased variance (sum of squared deviations
// / rows) of x. Summed around the first row (a shift that keeps the
// variance exact when the mean is large against the spread), in float over
// blocks of 32 rows and in double across blocks.
// REQUIRES: rows >= 1.
void channel_mean_variance(const float* x, std::int64_t rows, std::int64_t channels, float* mean,
                           float* variance);

// y = silu(x * scale[c] + shift[c]); silu(z) = z / (1 + exp(-z)).
void affine_silu(const float* x, std::int64_t rows, std::int64_t channels, const float* scale,
                 const float* shift, float* y);

// The first backward pass. With xhat = (x - mean[c]) * invstd[c] and
// z = xhat * gamma[c] + beta[c] (what the forward fed SiLU):
//   dz = dy * silu'(z), written to `dz` (not overlapping the inputs);
//   sum_dz[c] = sum of dz, sum_dz_xhat[c] = sum of dz * xhat (summed as
//   channel_mean_variance sums).
void silu_backward_with_sums(const float* x, const float* dy, std::int64_t rows,
                             std::int64_t channels, const float* mean, const float* invstd,
                             const float* gamma, const float* beta, float* dz, double* sum_dz,
                             double* sum_dz_xhat);

// The second: BatchNorm's input gradient from dz and the sums,
//   dx = gamma * invstd * (dz - sum_dz / rows - xhat * sum_dz_xhat / rows),
// written to `dx` (not overlapping the inputs).
void batch_norm_input_gradient(const float* x, const float* dz, std::int64_t rows,
                               std::int64_t channels, const float* mean, const float* invstd,
                               const float* gamma, const double* sum_dz, const double* sum_dz_xhat,
                               float* dx);

// exp(x) in float to about 2 ulp, for x in [-87, 88] (clamped outside):
// what the loops above use, exposed for its test.
float exp_approx(float x);

}  // namespace xfer::trainer::models::kernels
