#include "trainer/models/depthwise_conv_kernels.h"

#include <algorithm>

#include "common/vector_clones.h"

namespace xfer::trainer::models::kernels {
namespace {

// acc[c] += p[c] * q[c]: the one loop all three passes are made of, built for
// SSE2, AVX2 and AVX-512 and chosen at load time by the CPU.
XFER_VECTOR_CLONES void multiply_accumulate(float* __restrict acc, const float* __restrict p,
                                            const float* __restrict q, std::int64_t channels) {
  for (std::int64_t c = 0; c < channels; ++c) acc[c] += p[c] * q[c];
}

// Calls visit(input pixel offset, tap index, output pixel offset) for every
// tap of every output pixel that falls inside the image, in row-major order
// of the output: the pixel offsets are in pixels (multiply by channels).
template <typename Visit>
void for_each_tap(const DepthwiseShape& s, Visit visit) {
  const std::int64_t out_h = s.out_height();
  const std::int64_t out_w = s.out_width();
  for (std::int64_t n = 0; n < s.batch; ++n) {
    for (std::int64_t oh = 0; oh < out_h; ++oh) {
      const std::int64_t top = oh * s.stride - s.padding;
      const std::int64_t kh_begin = std::max<std::int64_t>(0, -top);
      const std::int64_t kh_end = std::min(s.kernel, s.height - top);
      for (std::int64_t ow = 0; ow < out_w; ++ow) {
        const std::int64_t left = ow * s.stride - s.padding;
        const std::int64_t kw_begin = std::max<std::int64_t>(0, -left);
        const std::int64_t kw_end = std::min(s.kernel, s.width - left);
        const std::int64_t out_pixel = (n * out_h + oh) * out_w + ow;
        for (std::int64_t kh = kh_begin; kh < kh_end; ++kh) {
          for (std::int64_t kw = kw_begin; kw < kw_end; ++kw) {
            const std::int64_t in_pixel = (n * s.height + top + kh) * s.width + left + kw;
            visit(in_pixel, kh * s.kernel + kw, out_pixel);
          }
        }
      }
    }
  }
}

}  // namespace

void depthwise_forward(const DepthwiseShape& shape, const float* x, const float* w,
                       const float* bias, float* y) {
  const std::int64_t c = shape.channels;
  const std::int64_t out_pixels = shape.batch * shape.out_height() * shape.out_width();
  for (std::int64_t p = 0; p < out_pixels; ++p) {
    if (bias != nullptr) {
      std::copy(bias, bias + c, y + p * c);
    } else {
      std::fill(y + p * c, y + (p + 1) * c, 0.0F);
    }
  }
  for_each_tap(shape, [&](std::int64_t in_pixel, std::int64_t tap, std::int64_t out_pixel) {
    multiply_accumulate(y + out_pixel * c, x + in_pixel * c, w + tap * c, c);
  });
}

void depthwise_backward(const DepthwiseShape& shape, const float* x, const float* w,
                        const float* dy, float* dx, float* dw) {
  const std::int64_t c = shape.channels;
  if (dx != nullptr) std::fill(dx, dx + shape.batch * shape.height * shape.width * c, 0.0F);
  if (dw != nullptr) std::fill(dw, dw + shape.kernel * shape.kernel * c, 0.0F);
  for_each_tap(shape, [&](std::int64_t in_pixel, std::int64_t tap, std::int64_t out_pixel) {
    const float* grad = dy + out_pixel * c;
    if (dx != nullptr) multiply_accumulate(dx + in_pixel * c, grad, w + tap * c, c);
    if (dw != nullptr) multiply_accumulate(dw + tap * c, grad, x + in_pixel * c, c);
  });
}

}  // namespace xfer::trainer::models::kernels
