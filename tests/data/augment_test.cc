#include "trainer/data/augment.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
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

TEST(ParseAugment, AnySpecRoundTripsThroughItsText) {
  // parse_augment(to_string(s)) == s bit for bit, for awkward floats too.
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> unit(0.0F, 1.0F);
  std::vector<float> values{0.0F,
                            1.0F,
                            0.1F,
                            0.4F,
                            1.0F / 3.0F,
                            1e-7F,
                            0.99999994F,
                            std::nextafter(0.4F, 1.0F),
                            std::nextafter(1.0F, 0.0F)};
  for (int i = 0; i < 2000; ++i) values.push_back(unit(rng));
  for (const float b : values) {
    for (const bool flip : {false, true}) {
      const AugmentSpec spec{flip, b};
      const std::string text = to_string(spec);
      const AugmentSpec back = parse_augment(text);
      EXPECT_EQ(back.flip, flip) << text;
      EXPECT_EQ(std::memcmp(&back.brightness, &spec.brightness, sizeof(float)), 0)
          << text << " read back as " << back.brightness << " for " << b;
    }
  }
  EXPECT_EQ(to_string(AugmentSpec{}), "none");
}

TEST(ParseAugment, IgnoresSpacesAroundParts) {
  EXPECT_EQ(parse_augment(" flip , brightness=0.2 "), (AugmentSpec{true, 0.2F}));
  EXPECT_EQ(parse_augment(" none "), AugmentSpec{});
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
  EXPECT_NE(message("brightness=-0.1").find("outside [0, 1]"), std::string::npos);
  EXPECT_NE(message("brightness=1e50").find("outside [0, 1]"), std::string::npos);
  EXPECT_NE(message("brightness=nan").find("'nan' is not a number"), std::string::npos);
  EXPECT_NE(message("brightness=").find("'' is not a number"), std::string::npos);
  EXPECT_NE(message("brightness= 0.4").find("is not a number"), std::string::npos);
  EXPECT_NE(message("brightness=0.1,brightness=0.2").find("'brightness' given twice"),
            std::string::npos);
  EXPECT_NE(message("flip,").find("empty part"), std::string::npos);
  EXPECT_NE(message("flip,,brightness=0.1").find("empty part"), std::string::npos);
  EXPECT_NE(message(",flip").find("empty part"), std::string::npos);
  EXPECT_NE(message("none,flip").find("unknown part 'none'"), std::string::npos);
  EXPECT_NE(message("flip,brightness").find("'brightness' needs a value: brightness=DELTA"),
            std::string::npos);
  EXPECT_NE(message("spin").find("--augment 'spin'"), std::string::npos);
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

TEST(DrawAugmentation, DeltasCoverTheRangeAndFlipIsIndependentOfThem) {
  const AugmentSpec spec{true, 0.25F};
  float lo = 1.0F;
  float hi = -1.0F;
  int positive = 0;
  int positive_and_flipped = 0;
  for (std::int64_t i = 0; i < 10000; ++i) {
    const auto draw = draw_augmentation(spec, 42, 7, i);
    ASSERT_GE(draw.brightness_delta, -0.25F);
    ASSERT_LT(draw.brightness_delta, 0.25F);
    lo = std::min(lo, draw.brightness_delta);
    hi = std::max(hi, draw.brightness_delta);
    if (draw.brightness_delta > 0) {
      ++positive;
      positive_and_flipped += draw.flip ? 1 : 0;
    }
  }
  EXPECT_LT(lo, -0.245F);
  EXPECT_GT(hi, 0.245F);
  EXPECT_NEAR(positive, 5000, 300);
  EXPECT_NEAR(positive_and_flipped, positive / 2, 250);
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

TEST(DrawAugmentation, FlipsDifferBetweenEpochsAndSeeds) {
  // Another epoch or seed is a fresh coin per sample: ~half agree, not all.
  const AugmentSpec spec{true, 0.0F};
  int same_epoch_flip = 0;
  int same_seed_flip = 0;
  constexpr int kSamples = 10000;
  for (int i = 0; i < kSamples; ++i) {
    const bool flip = draw_augmentation(spec, 1, 0, i).flip;
    same_epoch_flip += draw_augmentation(spec, 1, 1, i).flip == flip;
    same_seed_flip += draw_augmentation(spec, 2, 0, i).flip == flip;
  }
  EXPECT_NEAR(same_epoch_flip, kSamples / 2, 300);
  EXPECT_NEAR(same_seed_flip, kSamples / 2, 300);
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

  // A negative delta clips dark pixels at 0.
  while (draw_augmentation(spec, 9, 0, index).brightness_delta > -0.2F) ++index;
  const float down = draw_augmentation(spec, 9, 0, index).brightness_delta;
  augment_to_float(images.data(), 1, 3, 2, 2, &index, spec, 9, 0, out.data());
  EXPECT_FLOAT_EQ(out[0], 0.0F);  // clipped
  EXPECT_FLOAT_EQ(out[1], 1.0F + down);
  EXPECT_FLOAT_EQ(out[2], 128 / 255.0F + down);
}

// One image's floats as augment_to_float produces them alone.
std::vector<float> one_image(const std::vector<std::uint8_t>& images, int i, std::int64_t index,
                             const AugmentSpec& spec) {
  constexpr int kPerImage = 3 * 4 * 4;
  std::vector<float> out(kPerImage);
  augment_to_float(images.data() + i * kPerImage, 1, 3, 4, 4, &index, spec, 3, 1, out.data());
  return out;
}

TEST(AugmentToFloat, SameResultWhateverTheBatchingOrRankSplit) {
  // 12 samples at scattered positions of the split. However they are cut into
  // calls (1 rank x 12, W ranks taking interleaved or contiguous slices, odd
  // batch sizes), each sample's floats are the same.
  constexpr int kCount = 12;
  constexpr int kPerImage = 3 * 4 * 4;
  std::vector<std::uint8_t> images(kCount * kPerImage);
  std::mt19937 rng(5);
  for (auto& byte : images) byte = static_cast<std::uint8_t>(rng());
  std::vector<std::int64_t> indices(kCount);
  for (int i = 0; i < kCount; ++i) indices[i] = 1000 + 37 * i;
  const AugmentSpec spec{true, 0.4F};

  std::vector<float> whole(images.size());
  augment_to_float(images.data(), kCount, 3, 4, 4, indices.data(), spec, 3, 1, whole.data());
  for (int i = 0; i < kCount; ++i) {
    const std::vector<float> alone = one_image(images, i, indices[i], spec);
    EXPECT_TRUE(std::equal(alone.begin(), alone.end(), whole.begin() + i * kPerImage)) << i;
  }

  for (int world = 1; world <= 5; ++world) {
    for (int rank = 0; rank < world; ++rank) {
      // Interleaved: rank r takes samples r, r + W, ... into one call.
      std::vector<std::uint8_t> mine;
      std::vector<std::int64_t> mine_indices;
      std::vector<int> which;
      for (int i = rank; i < kCount; i += world) {
        mine.insert(mine.end(), images.begin() + i * kPerImage,
                    images.begin() + (i + 1) * kPerImage);
        mine_indices.push_back(indices[i]);
        which.push_back(i);
      }
      std::vector<float> out(mine.size());
      augment_to_float(mine.data(), static_cast<std::int64_t>(which.size()), 3, 4, 4,
                       mine_indices.data(), spec, 3, 1, out.data());
      for (std::size_t k = 0; k < which.size(); ++k) {
        EXPECT_TRUE(std::equal(out.begin() + static_cast<std::ptrdiff_t>(k) * kPerImage,
                               out.begin() + static_cast<std::ptrdiff_t>(k + 1) * kPerImage,
                               whole.begin() + which[k] * kPerImage))
            << "world " << world << " rank " << rank << " sample " << which[k];
      }
    }
  }

  for (int batch = 1; batch <= kCount; ++batch) {
    // Contiguous batches of `batch` samples, the last one partial.
    std::vector<float> pieces(images.size());
    for (int start = 0; start < kCount; start += batch) {
      const int n = std::min(batch, kCount - start);
      augment_to_float(images.data() + start * kPerImage, n, 3, 4, 4, indices.data() + start, spec,
                       3, 1, pieces.data() + start * kPerImage);
    }
    EXPECT_EQ(pieces, whole) << "batch " << batch;
  }
}

TEST(AugmentToFloat, OutputStaysInTheUnitRange) {
  std::vector<std::uint8_t> images(256 * 3);
  for (std::size_t i = 0; i < images.size(); ++i) images[i] = static_cast<std::uint8_t>(i);
  const AugmentSpec spec{true, 1.0F};
  std::vector<std::int64_t> indices(16);
  std::iota(indices.begin(), indices.end(), 0);
  std::vector<float> out(images.size());
  augment_to_float(images.data(), 16, 3, 4, 4, indices.data(), spec, 8, 0, out.data());
  for (const float v : out) {
    EXPECT_GE(v, 0.0F);
    EXPECT_LE(v, 1.0F);
  }
}

}  // namespace
}  // namespace xfer::trainer::data
