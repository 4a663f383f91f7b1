// Training augmentation on the rank: random horizontal flip and random
// brightness, drawn per sample from (seed, epoch, sample index).
//
// Why per sample: the coordinator's global batches do not depend on the
// world size (shard_plan.h), and a sample's augmentation is a pure function
// of (seed, epoch, its position in the split), so 1 rank x 64 and 4 ranks x
// 16 train on exactly the same pixels, and an epoch re-run after a resume
// sees the same pixels as the crashed attempt. No generator state is kept.
//
// No LibTorch here: this runs on the prefetch thread over raw bytes.
#pragma once

#include <cstdint>
#include <string>

namespace xfer::trainer::data {

struct AugmentSpec {
  // Horizontal flip with probability 1/2.
  bool flip = false;
  // Brightness: a delta drawn uniformly in [-brightness, brightness) on the
  // [0, 1] pixel scale is added to every channel, then pixels are clipped to
  // [0, 1] (Keras' RandomBrightness). 0 turns it off. REQUIRES: [0, 1].
  float brightness = 0.0F;

  bool operator==(const AugmentSpec& other) const {
    return flip == other.flip && brightness == other.brightness;
  }
};

// "flip,brightness=0.4" (any order, each at most once), "none" or "";
// spaces around parts are ignored. Throws std::invalid_argument quoting the
// whole text, the bad part and the expected form.
AugmentSpec parse_augment(const std::string& text);
// Canonical text: parse_augment(to_string(s)) == s; "none" when off.
std::string to_string(const AugmentSpec& spec);

struct SampleAugmentation {
  bool flip = false;
  float brightness_delta = 0.0F;
};

// The draw for one sample: a counter-based RNG, no state.
//   key   = m(m(m(seed) ^ epoch) ^ sample_index)   m = SplitMix64's mix
//   flip  = lowest bit of key
//   u     = top 24 bits of m(key) / 2^24           uniform in [0, 1)
//   delta = (2u - 1) * brightness                  in [-brightness, brightness)
// Changing this changes every trained model's pixels: keep it stable.
// {false, 0} for the parts that are off.
SampleAugmentation draw_augmentation(const AugmentSpec& spec, std::uint64_t seed,
                                     std::int64_t epoch, std::int64_t sample_index);

// images: count x channels x height x width uint8 (planar), one
// sample_index each. out (same layout, float): x / 255, flipped when drawn,
// plus the brightness delta, clipped to [0, 1]. Each image depends only on
// its own bytes and sample index, so any grouping of samples into calls
// gives the same floats. REQUIRES: out holds count * channels * height *
// width floats and does not overlap images.
void augment_to_float(const std::uint8_t* images, std::int64_t count, int channels, int height,
                      int width, const std::int64_t* sample_indices, const AugmentSpec& spec,
                      std::uint64_t seed, std::int64_t epoch, float* out);

}  // namespace xfer::trainer::data
