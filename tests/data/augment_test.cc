#include "trainer/data/augment.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

namespace xfer::trainer::data {
namespace {

TEST(ParseAugment, AcceptsTheRecipeAndNone) {
  const AugmentSpec spec = parse_augment("flip,brightness=0.4");
  EXPECT_TRUE(spec.flip);
  EXPECT_FLOAT_EQ(spec.brightness, 0.4F);
  EXPECT_EQ(parse_augment("brightness=0.25,flip"), (AugmentSpec{true, 0.25F}));
  EXPECT_EQ(parse_augment("none"), AugmentSpec{});
  EXPECT_EQ(parse_augment(""), AugmentSpec{});
  EXPECT_EQ(parse_augment("flip"), (AugmentSpec{true, 0.0F}));
}

TEST(ParseAugment, RoundTripsThroughToString) {
  for (const char* text : {"none", "flip", "brightness=0.4", "flip,brightness=0.1"}) {
    EXPECT_EQ(to_string(parse_augment(text)), text);
  }
}

TEST(ParseAugment, ErrorsQuoteTheBadPart) {
  auto message = [](const std::string& text) {
    try {
      parse_augment(text);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("spin").find("unknown part 'spin'"), std::string::npos);
  EXPECT_NE(message("flip,flip").find("'flip' given twice"), std::string::npos);
  EXPECT_NE(message("brightness=x").find("'x' is not a number"), std::string::npos);
  EXPECT_NE(message("brightness=0.4z").find("is not a number"), std::string::npos);
  EXPECT_NE(message("brightness=1.5").find("outside [0, 1]"), std::string::npos);
  EXPECT_NE(message("flip,").find("empty part"), std::string::npos);
  EXPECT_NE(message("spin").find("e.g. 'flip,brightness=0.4'"), std::string::npos);
}

TEST(DrawAugmentation, PureFunctionOfSeedEpochAndSample) {
  const AugmentSpec spec{true, 0.4F};
  for (std::int64_t i = 0; i < 100; ++i) {
    const auto a = draw_augmentation(spec, 7, 3, i);
    const auto b = draw_augmentation(spec, 7, 3, i);
    EXPECT_EQ(a.flip, b.flip);
    EXPECT_EQ(a.brightness_delta, b.brightness_delta);
    EXPECT_GE(a.brightness_delta, -0.4F);
    EXPECT_LT(a.brightness_delta, 0.4F);
  }
}

TEST(DrawAugmentation, RoughlyHalfFlippedAndDeltasSpread) {
  const AugmentSpec spec{true, 0.4F};
  int flipped = 0;
  double mean_delta = 0;
  int same_as_other_epoch = 0;
  int same_as_other_seed = 0;
  constexpr int kSamples = 10000;
  for (int i = 0; i < kSamples; ++i) {
    const auto draw = draw_augmentation(spec, 1, 0, i);
    flipped += draw.flip ? 1 : 0;
    mean_delta += draw.brightness_delta / kSamples;
    same_as_other_epoch +=
        draw_augmentation(spec, 1, 1, i).brightness_delta == draw.brightness_delta;
    same_as_other_seed +=
        draw_augmentation(spec, 2, 0, i).brightness_delta == draw.brightness_delta;
  }
  EXPECT_NEAR(flipped, kSamples / 2, 300);  // ~6 standard deviations
  EXPECT_NEAR(mean_delta, 0.0, 0.02);
  EXPECT_LT(same_as_other_epoch, 10);
  EXPECT_LT(same_as_other_seed, 10);
}

TEST(DrawAugmentation, OffMeansNothing) {
  for (int i = 0; i < 50; ++i) {
    const auto draw = draw_augmentation(AugmentSpec{}, 1, 0, i);
    EXPECT_FALSE(draw.flip);
    EXPECT_EQ(draw.brightness_delta, 0.0F);
  }
}

std::vector<std::uint8_t> ramp_images(int count) {
  std::vector<std::uint8_t> images(static_cast<std::size_t>(count) * 3 * 4 * 4);
  std::iota(images.begin(), images.end(), 0);
  return images;
}

TEST(AugmentToFloat, ScalesWithoutAugmentation) {
  const auto images = ramp_images(2);
  const std::vector<std::int64_t> indices{0, 1};
  std::vector<float> out(images.size());
  augment_to_float(images.data(), 2, 3, 4, 4, indices.data(), AugmentSpec{}, 0, 0, out.data());
  for (std::size_t i = 0; i < images.size(); ++i) EXPECT_FLOAT_EQ(out[i], images[i] / 255.0F);
}

TEST(AugmentToFloat, FlipMirrorsEveryRowOfEveryChannel) {
  const auto images = ramp_images(1);
  // Find a sample index whose draw flips.
  std::int64_t index = 0;
  while (!draw_augmentation({true, 0.0F}, 5, 2, index).flip) ++index;
  std::vector<float> out(images.size());
  augment_to_float(images.data(), 1, 3, 4, 4, &index, {true, 0.0F}, 5, 2, out.data());
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 4; ++y) {
      for (int x = 0; x < 4; ++x) {
        EXPECT_FLOAT_EQ(out[(c * 4 + y) * 4 + x], images[(c * 4 + y) * 4 + (3 - x)] / 255.0F);
      }
    }
  }
}

TEST(AugmentToFloat, BrightnessShiftsAndClips) {
  std::vector<std::uint8_t> images(3 * 2 * 2);
  images[0] = 0;
  images[1] = 255;
  images[2] = 128;
  std::int64_t index = 0;
  const AugmentSpec spec{false, 0.5F};
  while (draw_augmentation(spec, 9, 0, index).brightness_delta < 0.2F) ++index;
  const float delta = draw_augmentation(spec, 9, 0, index).brightness_delta;
  std::vector<float> out(images.size());
  augment_to_float(images.data(), 1, 3, 2, 2, &index, spec, 9, 0, out.data());
  EXPECT_FLOAT_EQ(out[0], delta);
  EXPECT_FLOAT_EQ(out[1], 1.0F);  // clipped
  EXPECT_FLOAT_EQ(out[2], std::min(1.0F, 128 / 255.0F + delta));
}

TEST(AugmentToFloat, SameResultWhateverTheBatching) {
  // 8 samples at once (1 rank x 8) or in two halves (2 ranks x 4): same floats.
  const auto images = ramp_images(8);
  std::vector<std::int64_t> indices{10, 11, 12, 13, 14, 15, 16, 17};
  const AugmentSpec spec{true, 0.4F};
  std::vector<float> whole(images.size());
  augment_to_float(images.data(), 8, 3, 4, 4, indices.data(), spec, 3, 1, whole.data());
  std::vector<float> halves(images.size());
  const std::size_t half = images.size() / 2;
  augment_to_float(images.data(), 4, 3, 4, 4, indices.data(), spec, 3, 1, halves.data());
  augment_to_float(images.data() + half, 4, 3, 4, 4, indices.data() + 4, spec, 3, 1,
                   halves.data() + half);
  EXPECT_EQ(whole, halves);
}

}  // namespace
}  // namespace xfer::trainer::data
