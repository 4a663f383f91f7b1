#include "trainer/data/augment.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace xfer::trainer::data {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw std::invalid_argument("--augment '" + text + "': " + why +
                              " (expected 'none' or a comma-separated list of 'flip' and "
                              "'brightness=DELTA' with DELTA in [0, 1], e.g. "
                              "'flip,brightness=0.4')");
}

}  // namespace

AugmentSpec parse_augment(const std::string& text) {
  AugmentSpec spec;
  if (text.empty() || text == "none") return spec;
  bool seen_flip = false;
  bool seen_brightness = false;
  std::stringstream parts(text);
  std::string part;
  while (std::getline(parts, part, ',')) {
    if (part == "flip") {
      if (seen_flip) bad(text, "'flip' given twice");
      seen_flip = true;
      spec.flip = true;
    } else if (part.rfind("brightness=", 0) == 0) {
      if (seen_brightness) bad(text, "'brightness' given twice");
      seen_brightness = true;
      const std::string value = part.substr(11);
      std::size_t used = 0;
      double delta = 0;
      try {
        delta = std::stod(value, &used);
      } catch (const std::exception&) {
        bad(text, "brightness '" + value + "' is not a number");
      }
      if (used != value.size() || !std::isfinite(delta)) {
        bad(text, "brightness '" + value + "' is not a number");
      }
      if (delta < 0 || delta > 1) bad(text, "brightness " + value + " is outside [0, 1]");
      spec.brightness = static_cast<float>(delta);
    } else {
      bad(text, "unknown part '" + part + "'");
    }
  }
  if (!text.empty() && text.back() == ',') bad(text, "empty part after the last comma");
  return spec;
}

std::string to_string(const AugmentSpec& spec) {
  std::vector<std::string> parts;
  if (spec.flip) parts.emplace_back("flip");
  // Shortest text that reads back to the same float.
  if (spec.brightness > 0) parts.push_back(fmt::format("brightness={}", spec.brightness));
  if (parts.empty()) return "none";
  std::string out = parts[0];
  for (std::size_t i = 1; i < parts.size(); ++i) out += "," + parts[i];
  return out;
}

SampleAugmentation draw_augmentation(const AugmentSpec& spec, std::uint64_t seed,
                                     std::int64_t epoch, std::int64_t sample_index) {
  SampleAugmentation draw;
  const std::uint64_t key =
      splitmix64(splitmix64(splitmix64(seed) ^ static_cast<std::uint64_t>(epoch)) ^
                 static_cast<std::uint64_t>(sample_index));
  if (spec.flip) draw.flip = (key & 1U) != 0;
  if (spec.brightness > 0) {
    const double u = static_cast<double>(splitmix64(key) >> 40) / static_cast<double>(1ULL << 24);
    draw.brightness_delta = static_cast<float>((2.0 * u - 1.0) * spec.brightness);
  }
  return draw;
}

void augment_to_float(const std::uint8_t* images, std::int64_t count, int channels, int height,
                      int width, const std::int64_t* sample_indices, const AugmentSpec& spec,
                      std::uint64_t seed, std::int64_t epoch, float* out) {
  const std::int64_t plane = static_cast<std::int64_t>(height) * width;
  const std::int64_t per_image = channels * plane;
  for (std::int64_t n = 0; n < count; ++n) {
    const SampleAugmentation draw = draw_augmentation(spec, seed, epoch, sample_indices[n]);
    const std::uint8_t* src = images + n * per_image;
    float* dst = out + n * per_image;
    for (std::int64_t row = 0; row < channels * static_cast<std::int64_t>(height); ++row) {
      const std::uint8_t* in = src + row * width;
      float* o = dst + row * width;
      for (int x = 0; x < width; ++x) {
        const float v = static_cast<float>(in[draw.flip ? width - 1 - x : x]) / 255.0F;
        o[x] =
            draw.brightness_delta == 0.0F ? v : std::clamp(v + draw.brightness_delta, 0.0F, 1.0F);
      }
    }
  }
}

}  // namespace xfer::trainer::data
