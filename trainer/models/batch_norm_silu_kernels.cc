#include "trainer/models/batch_norm_silu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/vector_clones.h"

// Every loop runs along the channels of one row, contiguous in memory, with
// per-channel constants in small arrays: the shape auto-vectorisation wants.

namespace xfer::trainer::models::kernels {
namespace {

// Cephes' single-precision exp: x = n ln2 + r, |r| <= ln2 / 2, with ln2 in
// two parts so r is exact; exp(r) by a degree-6 polynomial; 2^n by building
// the float's exponent bits. Branch-free, so it vectorises.
inline float exp_inline(float x) {
  x = std::min(std::max(x, -87.0F), 88.0F);
  const float nf = std::floor(x * 1.44269504088896341F + 0.5F);  // round(x / ln2)
  const auto n = static_cast<std::int32_t>(nf);
  const float r = (x - nf * 0.693359375F) - nf * -2.12194440e-4F;
  float p = 1.9875691500e-4F;
  p = p * r + 1.3981999507e-3F;
  p = p * r + 8.3334519073e-3F;
  p = p * r + 4.1665795894e-2F;
  p = p * r + 1.6666665459e-1F;
  p = p * r + 5.0000001201e-1F;
  p = p * r * r + r + 1.0F;
  const std::int32_t bits = (n + 127) << 23;  // n in [-126, 127]: a normal float
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

inline float silu(float z) { return z / (1.0F + exp_inline(-z)); }

// silu'(z) = s (1 + z (1 - s)), s = sigmoid(z).
inline float silu_derivative(float z) {
  const float s = 1.0F / (1.0F + exp_inline(-z));
  return s * (1.0F + z * (1.0F - s));
}

// Sums are taken in float over blocks of kBlockRows rows, then added in
// double: the rows' loop stays at the full float vector width, and the
// error of a float sum of 32 terms (about 32 ulp at worst) never grows.
constexpr std::int64_t kBlockRows = 32;

XFER_VECTOR_CLONES void accumulate_shifted(const float* __restrict x, std::int64_t rows,
                                           std::int64_t channels, const float* __restrict shift,
                                           float* __restrict sum, float* __restrict sum_squares) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict row = x + r * channels;
    for (std::int64_t c = 0; c < channels; ++c) {
      const float d = row[c] - shift[c];
      sum[c] += d;
      sum_squares[c] += d * d;
    }
  }
}

XFER_VECTOR_CLONES void affine_silu_rows(const float* __restrict x, std::int64_t rows,
                                         std::int64_t channels, const float* __restrict scale,
                                         const float* __restrict shift, float* __restrict y) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict in = x + r * channels;
    float* __restrict out = y + r * channels;
    for (std::int64_t c = 0; c < channels; ++c) out[c] = silu(in[c] * scale[c] + shift[c]);
  }
}

XFER_VECTOR_CLONES void silu_backward_rows(
    const float* __restrict x, const float* __restrict dy, std::int64_t rows, std::int64_t channels,
    const float* __restrict mean, const float* __restrict invstd, const float* __restrict gamma,
    const float* __restrict beta, float* __restrict dz, float* __restrict sum_dz,
    float* __restrict sum_dz_xhat) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict in = x + r * channels;
    const float* __restrict grad = dy + r * channels;
    float* __restrict out = dz + r * channels;
    for (std::int64_t c = 0; c < channels; ++c) {
      const float xhat = (in[c] - mean[c]) * invstd[c];
      const float g = grad[c] * silu_derivative(xhat * gamma[c] + beta[c]);
      out[c] = g;
      sum_dz[c] += g;
      sum_dz_xhat[c] += g * xhat;
    }
  }
}

XFER_VECTOR_CLONES void input_gradient_rows(const float* __restrict x, const float* __restrict dz,
                                            std::int64_t rows, std::int64_t channels,
                                            const float* __restrict k_dz,
                                            const float* __restrict k_x,
                                            const float* __restrict k_1, float* __restrict dx) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* __restrict in = x + r * channels;
    const float* __restrict g = dz + r * channels;
    float* __restrict out = dx + r * channels;
    for (std::int64_t c = 0; c < channels; ++c) out[c] = g[c] * k_dz[c] + in[c] * k_x[c] + k_1[c];
  }
}

// Two per-channel sums over `rows` rows into `first_sum` and `second_sum`
// (overwritten): rows_fn(first row, row count, float sums) adds a block of at
// most kBlockRows rows into zeroed float arrays, which are then added in
// double.
template <typename RowsFn>
void sum_in_blocks(std::int64_t rows, std::int64_t channels, double* first_sum, double* second_sum,
                   RowsFn rows_fn) {
  const auto size = static_cast<std::size_t>(channels);
  std::fill(first_sum, first_sum + size, 0.0);
  std::fill(second_sum, second_sum + size, 0.0);
  std::vector<float> block_first(size);
  std::vector<float> block_second(size);
  for (std::int64_t first = 0; first < rows; first += kBlockRows) {
    std::fill(block_first.begin(), block_first.end(), 0.0F);
    std::fill(block_second.begin(), block_second.end(), 0.0F);
    rows_fn(first, std::min(kBlockRows, rows - first), block_first.data(), block_second.data());
    for (std::size_t c = 0; c < size; ++c) {
      first_sum[c] += block_first[c];
      second_sum[c] += block_second[c];
    }
  }
}

}  // namespace

float exp_approx(float x) { return exp_inline(x); }

void channel_mean_variance(const float* x, std::int64_t rows, std::int64_t channels, float* mean,
                           float* variance) {
  const auto size = static_cast<std::size_t>(channels);
  std::vector<double> sum(size);
  std::vector<double> sum_squares(size);
  sum_in_blocks(
      rows, channels, sum.data(), sum_squares.data(),
      [&](std::int64_t first, std::int64_t count, float* block_sum, float* block_squares) {
        accumulate_shifted(x + first * channels, count, channels, x, block_sum, block_squares);
      });
  const double n = static_cast<double>(rows);
  for (std::int64_t c = 0; c < channels; ++c) {
    const double shifted_mean = sum[c] / n;
    mean[c] = static_cast<float>(static_cast<double>(x[c]) + shifted_mean);
    variance[c] =
        static_cast<float>(std::max(sum_squares[c] / n - shifted_mean * shifted_mean, 0.0));
  }
}

void affine_silu(const float* x, std::int64_t rows, std::int64_t channels, const float* scale,
                 const float* shift, float* y) {
  affine_silu_rows(x, rows, channels, scale, shift, y);
}

void silu_backward_with_sums(const float* x, const float* dy, std::int64_t rows,
                             std::int64_t channels, const float* mean, const float* invstd,
                             const float* gamma, const float* beta, float* dz, double* sum_dz,
                             double* sum_dz_xhat) {
  sum_in_blocks(rows, channels, sum_dz, sum_dz_xhat,
                [&](std::int64_t first, std::int64_t count, float* block_dz, float* block_dz_xhat) {
                  const std::int64_t offset = first * channels;
                  silu_backward_rows(x + offset, dy + offset, count, channels, mean, invstd, gamma,
                                     beta, dz + offset, block_dz, block_dz_xhat);
                });
}

void batch_norm_input_gradient(const float* x, const float* dz, std::int64_t rows,
                               std::int64_t channels, const float* mean, const float* invstd,
                               const float* gamma, const double* sum_dz, const double* sum_dz_xhat,
                               float* dx) {
  // dx = gamma invstd (dz - mean_dz - (x - mean) invstd mean_dz_xhat)
  //    = k_dz dz + k_x x + k_1, per channel.
  const auto size = static_cast<std::size_t>(channels);
  std::vector<float> k_dz(size);
  std::vector<float> k_x(size);
  std::vector<float> k_1(size);
  const double n = static_cast<double>(rows);
  for (std::int64_t c = 0; c < channels; ++c) {
    const double a = static_cast<double>(gamma[c]) * invstd[c];
    const double mean_dz = sum_dz[c] / n;
    const double mean_dz_xhat = sum_dz_xhat[c] / n;
    k_dz[c] = static_cast<float>(a);
    k_x[c] = static_cast<float>(-a * invstd[c] * mean_dz_xhat);
    k_1[c] = static_cast<float>(a * (invstd[c] * mean_dz_xhat * mean[c] - mean_dz));
  }
  input_gradient_rows(x, dz, rows, channels, k_dz.data(), k_x.data(), k_1.data(), dx);
}

}  // namespace xfer::trainer::models::kernels
