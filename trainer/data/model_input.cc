#include "trainer/data/model_input.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

namespace xfer::trainer::data {
namespace {

constexpr int kChannels = 3;

// One output coordinate's two source neighbours and the weight of the
// second, as LibTorch's upsample_bilinear2d computes them for
// align_corners=false with an output size (scale = in / out; source
// coordinate (dst + 0.5) * scale - 0.5, clamped at 0).
struct Tap {
  int first = 0;
  int second = 0;
  float weight = 0.0F;  // of `second`; `first` gets 1 - weight
};

std::vector<Tap> taps(int in, int out) {
  std::vector<Tap> result(static_cast<std::size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int d = 0; d < out; ++d) {
    Tap& t = result[static_cast<std::size_t>(d)];
    if (in == out) {
      t = {d, d, 0.0F};
      continue;
    }
    const float source = std::max(scale * (static_cast<float>(d) + 0.5F) - 0.5F, 0.0F);
    t.first = static_cast<int>(source);
    t.second = t.first + (t.first < in - 1 ? 1 : 0);
    t.weight = source - static_cast<float>(t.first);
  }
  return result;
}

void check(int channels, int height, int width, const InputLayout& layout) {
  if (channels != kChannels) {
    throw std::invalid_argument("model input: images have " + std::to_string(channels) +
                                " channels, expected 3");
  }
  if (height < 1 || width < 1) {
    throw std::invalid_argument("model input: images are " + std::to_string(height) + "x" +
                                std::to_string(width) + ", expected at least 1x1");
  }
  if (layout.size < 1) {
    throw std::invalid_argument("model input: image size " + std::to_string(layout.size) +
                                ", expected >= 1");
  }
  for (int c = 0; c < kChannels; ++c) {
    if (layout.normalize && !(layout.std[static_cast<std::size_t>(c)] > 0.0F)) {
      throw std::invalid_argument("model input: std of channel " + std::to_string(c) + " is " +
                                  std::to_string(layout.std[static_cast<std::size_t>(c)]) +
                                  ", expected > 0");
    }
  }
}

}  // namespace

void check_input_layout(const InputLayout& layout) { check(kChannels, 1, 1, layout); }

std::size_t model_input_floats(std::int64_t count, int channels, const InputLayout& layout) {
  return static_cast<std::size_t>(count) * static_cast<std::size_t>(channels) *
         static_cast<std::size_t>(layout.size) * static_cast<std::size_t>(layout.size);
}

void make_model_input(const std::uint8_t* images, std::int64_t count, int channels, int height,
                      int width, const std::int64_t* sample_indices, const AugmentSpec& spec,
                      std::uint64_t seed, std::int64_t epoch, const InputLayout& layout,
                      float* out) {
  std::vector<SampleAugmentation> draws(static_cast<std::size_t>(std::max<std::int64_t>(0, count)));
  for (std::int64_t n = 0; n < count; ++n) {
    draws[static_cast<std::size_t>(n)] = draw_augmentation(spec, seed, epoch, sample_indices[n]);
  }
  make_model_input(images, count, channels, height, width, draws.data(), layout, out);
}

void make_model_input(const std::uint8_t* images, std::int64_t count, int channels, int height,
                      int width, const SampleAugmentation* draws, const InputLayout& layout,
                      float* out) {
  check(channels, height, width, layout);
  const int side = layout.size;
  const std::vector<Tap> rows = taps(height, side);
  const std::vector<Tap> cols = taps(width, side);
  const std::int64_t plane = static_cast<std::int64_t>(height) * width;
  const std::int64_t out_plane = static_cast<std::int64_t>(side) * side;
  // Per sample, each channel's bytes map through one function (scale,
  // brightness and clip, normalise): 3 x 256 table entries instead of work
  // per pixel.
  std::array<std::array<float, 256>, kChannels> lut{};
  std::vector<int> col_first(static_cast<std::size_t>(side));
  std::vector<int> col_second(static_cast<std::size_t>(side));
  for (std::int64_t n = 0; n < count; ++n) {
    const SampleAugmentation& draw = draws[n];
    for (int c = 0; c < kChannels; ++c) {
      const auto cs = static_cast<std::size_t>(c);
      for (int v = 0; v < 256; ++v) {
        // The same float expression as augment_to_float.
        const float x = static_cast<float>(v) / 255.0F;
        float value =
            draw.brightness_delta == 0.0F ? x : std::clamp(x + draw.brightness_delta, 0.0F, 1.0F);
        if (layout.normalize) value = (value - layout.mean[cs]) / layout.std[cs];
        lut[cs][static_cast<std::size_t>(v)] = value;
      }
    }
    // A flip mirrors the source columns.
    for (int x = 0; x < side; ++x) {
      const Tap& t = cols[static_cast<std::size_t>(x)];
      col_first[static_cast<std::size_t>(x)] = draw.flip ? width - 1 - t.first : t.first;
      col_second[static_cast<std::size_t>(x)] = draw.flip ? width - 1 - t.second : t.second;
    }
    const std::uint8_t* src = images + n * kChannels * plane;
    float* dst = out + n * kChannels * out_plane;
    for (int y = 0; y < side; ++y) {
      const Tap& ty = rows[static_cast<std::size_t>(y)];
      const float wy = ty.weight;
      for (int c = 0; c < kChannels; ++c) {
        const auto& table = lut[static_cast<std::size_t>(c)];
        const std::uint8_t* top = src + c * plane + static_cast<std::int64_t>(ty.first) * width;
        const std::uint8_t* bottom = src + c * plane + static_cast<std::int64_t>(ty.second) * width;
        // NCHW: consecutive x; NHWC: every third float.
        float* o = layout.channels_last ? dst + static_cast<std::int64_t>(y) * side * kChannels + c
                                        : dst + c * out_plane + static_cast<std::int64_t>(y) * side;
        const std::int64_t stride = layout.channels_last ? kChannels : 1;
        for (int x = 0; x < side; ++x) {
          const auto xs = static_cast<std::size_t>(x);
          const float wx = cols[xs].weight;
          const int x0 = col_first[xs];
          const int x1 = col_second[xs];
          // torch's order: h0lambda * (w0lambda * a + w1lambda * b) + h1lambda * (...).
          const float upper = (1.0F - wx) * table[top[x0]] + wx * table[top[x1]];
          const float lower = (1.0F - wx) * table[bottom[x0]] + wx * table[bottom[x1]];
          o[x * stride] = (1.0F - wy) * upper + wy * lower;
        }
      }
    }
  }
}

}  // namespace xfer::trainer::data
