// The prefetcher's one-pass model input (trainer/data/model_input.h) against
// the multi-pass LibTorch reference it replaces: augment_to_float, then
// models::preprocess_imagenet (bilinear interpolate, (x - mean) / std), then
// the memory format. Same floats to rounding, at the dataset's 32 px and at
// other sizes, in both layouts, with flips and brightness.
#include "trainer/data/model_input.h"

#include <gtest/gtest.h>
#include <torch/types.h>

#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "trainer/data/augment.h"
#include "trainer/models/preprocess.h"

namespace xfer::trainer::data {
namespace {

constexpr int kCount = 6;
constexpr int kSide = 32;
constexpr std::int64_t kBytes = 3 * kSide * kSide;

struct Fixture {
  std::vector<std::uint8_t> bytes;
  std::vector<std::int64_t> indices;
};

Fixture random_batch(unsigned seed) {
  Fixture f;
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  f.bytes.resize(static_cast<std::size_t>(kCount * kBytes));
  for (auto& b : f.bytes) b = static_cast<std::uint8_t>(byte(gen));
  f.indices.resize(kCount);
  std::iota(f.indices.begin(), f.indices.end(), 100);
  return f;
}

InputLayout imagenet(int size, bool channels_last) {
  InputLayout layout;
  layout.size = size;
  layout.channels_last = channels_last;
  layout.normalize = true;
  layout.mean = models::kImageNetMean;
  layout.std = models::kImageNetStd;
  return layout;
}

// The old path, as a [N, 3, size, size] NCHW-ordered tensor.
torch::Tensor reference(const Fixture& f, const AugmentSpec& spec, int size) {
  std::vector<float> floats(static_cast<std::size_t>(kCount * kBytes));
  augment_to_float(f.bytes.data(), kCount, 3, kSide, kSide, f.indices.data(), spec, 7, 3,
                   floats.data());
  const torch::Tensor x = torch::from_blob(floats.data(), {kCount, 3, kSide, kSide}).clone();
  return models::preprocess_imagenet(x, size).contiguous();
}

// The new path, viewed as [N, 3, size, size] whatever its layout.
torch::Tensor fused(const Fixture& f, const AugmentSpec& spec, const InputLayout& layout) {
  std::vector<float> out(model_input_floats(kCount, 3, layout), -99.0F);
  make_model_input(f.bytes.data(), kCount, 3, kSide, kSide, f.indices.data(), spec, 7, 3, layout,
                   out.data());
  const std::int64_t s = layout.size;
  torch::Tensor t = torch::from_blob(out.data(), {kCount, 3, s, s}).clone();
  if (layout.channels_last) {
    t = torch::from_blob(out.data(), {kCount, s, s, 3}).permute({0, 3, 1, 2}).contiguous();
  }
  return t;
}

TEST(ModelInput, MatchesAugmentPreprocessAndLayoutAtEverySize) {
  const Fixture f = random_batch(1);
  AugmentSpec spec;
  spec.flip = true;
  spec.brightness = 0.3F;
  for (const int size : {32, 24, 64, 224, 7}) {
    const torch::Tensor expected = reference(f, spec, size);
    for (const bool channels_last : {true, false}) {
      const torch::Tensor got = fused(f, spec, imagenet(size, channels_last));
      ASSERT_EQ(got.sizes(), expected.sizes());
      const double diff = (got - expected).abs().max().item<double>();
      EXPECT_LT(diff, 2e-5) << "size " << size << (channels_last ? " NHWC" : " NCHW");
    }
  }
}

TEST(ModelInput, NativeSizeIsExactlyTheReference) {
  // No resize: the same float expression per pixel, so the same bits.
  const Fixture f = random_batch(2);
  AugmentSpec spec;
  spec.flip = true;
  const torch::Tensor expected = reference(f, spec, kSide);
  const torch::Tensor got = fused(f, spec, imagenet(kSide, true));
  EXPECT_TRUE(torch::equal(got, expected));
}

TEST(ModelInput, WithoutNormalisingIsAugmentToFloat) {
  const Fixture f = random_batch(3);
  AugmentSpec spec;
  spec.flip = true;
  spec.brightness = 0.5F;
  std::vector<float> expected(static_cast<std::size_t>(kCount * kBytes));
  augment_to_float(f.bytes.data(), kCount, 3, kSide, kSide, f.indices.data(), spec, 7, 3,
                   expected.data());
  InputLayout layout;
  layout.size = kSide;
  layout.channels_last = false;
  layout.normalize = false;
  std::vector<float> got(model_input_floats(kCount, 3, layout));
  make_model_input(f.bytes.data(), kCount, 3, kSide, kSide, f.indices.data(), spec, 7, 3, layout,
                   got.data());
  EXPECT_EQ(got, expected);
}

TEST(ModelInput, GivenDrawsOverrideTheSpec) {
  // The mirror image of each sample: the same pixels flipped along x.
  const Fixture f = random_batch(4);
  const InputLayout layout = imagenet(kSide, false);
  std::vector<SampleAugmentation> plain(kCount), mirrored(kCount);
  for (auto& d : mirrored) d.flip = true;
  std::vector<float> a(model_input_floats(kCount, 3, layout));
  std::vector<float> b(a.size());
  make_model_input(f.bytes.data(), kCount, 3, kSide, kSide, plain.data(), layout, a.data());
  make_model_input(f.bytes.data(), kCount, 3, kSide, kSide, mirrored.data(), layout, b.data());
  const torch::Tensor ta = torch::from_blob(a.data(), {kCount, 3, kSide, kSide});
  const torch::Tensor tb = torch::from_blob(b.data(), {kCount, 3, kSide, kSide});
  EXPECT_TRUE(torch::equal(ta.flip({3}), tb));
}

TEST(ModelInput, RejectsUnusableLayouts) {
  InputLayout bad = imagenet(0, true);
  EXPECT_THROW(check_input_layout(bad), std::invalid_argument);
  bad = imagenet(32, true);
  bad.std[1] = 0.0F;
  try {
    check_input_layout(bad);
    FAIL() << "a zero std was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("std of channel 1"), std::string::npos) << e.what();
  }
  const Fixture f = random_batch(5);
  std::vector<float> out(16);
  EXPECT_THROW(make_model_input(f.bytes.data(), 1, 1, 4, 4, f.indices.data(), {}, 0, 0,
                                imagenet(4, false), out.data()),
               std::invalid_argument);
}

}  // namespace
}  // namespace xfer::trainer::data
