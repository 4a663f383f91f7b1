// The model's input batch straight from the dataset's bytes, in one pass
// over each output pixel: augmentation (augment.h), the uint8 -> [0, 1]
// scale, the bilinear resize to the model's image size, the per-channel
// normalisation and the memory layout the convolutions want. The prefetch
// thread does this while the previous step computes; the training loop wraps
// the result in a tensor without touching it again.
//
// Same floats (to rounding) as augment_to_float followed by LibTorch's
// interpolate(bilinear, align_corners=false) and (x - mean) / std: the
// brightness shift and clipping are applied to the source pixels before
// interpolation, as there; normalising is affine per channel and bilinear
// weights sum to 1, so normalising the four source pixels first gives the
// normalised interpolation. Each image depends only on its own bytes and
// sample index.
//
// No LibTorch here (the prefetch thread's library); the caller passes the
// model's mean and std.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "trainer/data/augment.h"

namespace xfer::trainer::data {

struct InputLayout {
  // Side of the square output. REQUIRES: >= 1. The source side otherwise
  // leaves pixels where they are.
  int size = 32;
  // NHWC (channels-last) or NCHW, as the model's memory format.
  bool channels_last = true;
  // (x - mean[c]) / std[c] on the [0, 1] scale; off: [0, 1] floats (the
  // CUDA path normalises on the GPU, after a 4-byte-per-pixel copy of the
  // small 32 px batch). REQUIRES: std[c] > 0.
  bool normalize = true;
  std::array<float, 3> mean{0.0F, 0.0F, 0.0F};
  std::array<float, 3> std{1.0F, 1.0F, 1.0F};

  bool operator==(const InputLayout& other) const {
    return size == other.size && channels_last == other.channels_last &&
           normalize == other.normalize && mean == other.mean && std == other.std;
  }
};

// Throws std::invalid_argument naming what is wrong with the layout.
void check_input_layout(const InputLayout& layout);

// Floats one batch of `count` images takes.
std::size_t model_input_floats(std::int64_t count, int channels, const InputLayout& layout);

// images: count x 3 x height x width uint8, planar; one sample index each.
// out: model_input_floats(count, 3, layout) floats, [count, 3, size, size]
// in the layout's order. Throws std::invalid_argument when channels is not 3
// or the layout is unusable. REQUIRES: out does not overlap images.
void make_model_input(const std::uint8_t* images, std::int64_t count, int channels, int height,
                      int width, const std::int64_t* sample_indices, const AugmentSpec& spec,
                      std::uint64_t seed, std::int64_t epoch, const InputLayout& layout,
                      float* out);

// The same with each image's augmentation given (draws[n] for image n), not
// drawn: e.g. the mirror image of a batch for the feature cache.
void make_model_input(const std::uint8_t* images, std::int64_t count, int channels, int height,
                      int width, const SampleAugmentation* draws, const InputLayout& layout,
                      float* out);

}  // namespace xfer::trainer::data
