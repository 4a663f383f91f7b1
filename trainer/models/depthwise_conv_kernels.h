// A direct depthwise convolution (one k x k filter per channel) on
// channels-last float32 data, forward and backward.
//
// oneDNN's depthwise backward is slow on the small maps at the end of
// EfficientNet at 32 px: the 5x5 depthwise convolutions on 1x1 and 2x2 maps
// (1152 and 672 channels) took 40 of the 92 ms of convolution backward in a
// training step (model_bench --profile-shapes), though at 1x1 only the
// centre tap ever meets the image. Here each output pixel sums its taps that
// fall inside the image, channel vectors at a time, so the work is the
// multiply-adds that exist. No LibTorch here: ConvBnActivation
// (conv_bn_activation.h) wraps it in an autograd function.
#pragma once

#include <cstdint>

namespace xfer::trainer::models::kernels {

struct DepthwiseShape {
  std::int64_t batch = 0;
  std::int64_t height = 0;  // input
  std::int64_t width = 0;
  std::int64_t channels = 0;
  std::int64_t kernel = 0;  // square, k x k
  std::int64_t stride = 1;
  std::int64_t padding = 0;
  std::int64_t out_height() const { return (height + 2 * padding - kernel) / stride + 1; }
  std::int64_t out_width() const { return (width + 2 * padding - kernel) / stride + 1; }
};

// y[n, oh, ow, c] = bias[c] + sum over taps inside the image of
//   x[n, oh * stride - padding + kh, ow * stride - padding + kw, c] * w[kh, kw, c].
// x: [N, H, W, C]; w: [k, k, C] (channel last); bias: [C] or null;
// y: [N, OH, OW, C], overwritten.
void depthwise_forward(const DepthwiseShape& shape, const float* x, const float* w,
                       const float* bias, float* y);

// From dy ([N, OH, OW, C]): dx ([N, H, W, C]) and dw ([k, k, C]), each
// overwritten, each skipped when null.
void depthwise_backward(const DepthwiseShape& shape, const float* x, const float* w,
                        const float* dy, float* dx, float* dw);

}  // namespace xfer::trainer::models::kernels
