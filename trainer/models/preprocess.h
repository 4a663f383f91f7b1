// Input preprocessing for torchvision's ImageNet weights (and every model
// fine-tuned from them): pixels scaled to [0, 1], resized bilinearly to the
// model's image size, normalised with ImageNet's per-channel mean and std.
#pragma once

#include <torch/types.h>

#include <array>
#include <cstdint>

namespace xfer::trainer::models {

inline constexpr std::array<float, 3> kImageNetMean = {0.485F, 0.456F, 0.406F};
inline constexpr std::array<float, 3> kImageNetStd = {0.229F, 0.224F, 0.225F};

// images: [N, 3, H, W], uint8 (0..255) or floating point already in [0, 1].
// Returns float32 [N, 3, image_size, image_size]: x / 255 (uint8 only), then
// bilinear resize (align_corners=false, no antialiasing, as
// torch.nn.functional.interpolate's defaults; skipped when H and W already
// equal image_size), then (x - mean) / std per channel. The same operations
// in the same order in Python give bit-identical results on the same CPU.
// Throws std::invalid_argument naming the shape or dtype when wrong.
torch::Tensor preprocess_imagenet(const torch::Tensor& images, int64_t image_size);

}  // namespace xfer::trainer::models
