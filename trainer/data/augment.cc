#include "trainer/data/augment.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace xfer::trainer::data {
namespace {

// SplitMix64's output function (Steele, Lea, Flood 2014): a bijection on 64
// bits whose every output bit depends on every input bit.
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw std::invalid_argument("--augment '" + text + "': " + why +
                              " (expected 'none' or a comma-separated list of 'flip' and "
                              "'brightness=DELTA' with DELTA in [0, 1], each at most once, e.g. "
                              "'flip,brightness=0.4')");
}

std::string trim(const std::string& s) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  auto begin = std::find_if_not(s.begin(), s.end(), is_space);
  auto end = std::find_if_not(s.rbegin(), std::string::const_reverse_iterator(begin), is_space);
  return std::string(begin, end.base());
}

// Every comma-separated part, empty ones included ("a,,b," has four).
std::vector<std::string> split_parts(const std::string& text) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    parts.push_back(trim(text.substr(start, comma - start)));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

// strtof, not stod: the value read is the float nearest the text, so the
// shortest text fmt prints for a float reads back to exactly that float.
float parse_brightness(const std::string& text, const std::string& value) {
  if (value.empty() || std::isspace(static_cast<unsigned char>(value[0])) != 0) {
    bad(text, "brightness '" + value + "' is not a number");
  }
  char* end = nullptr;
  errno = 0;
  const float delta = std::strtof(value.c_str(), &end);
  if (end != value.c_str() + value.size() || std::isnan(delta)) {
    bad(text, "brightness '" + value + "' is not a number");
  }
  // Overflow reads as +-inf and lands here too; underflow reads as ~0 (off).
  if (!(delta >= 0.0F && delta <= 1.0F)) bad(text, "brightness " + value + " is outside [0, 1]");
  return delta;
}

}  // namespace

AugmentSpec parse_augment(const std::string& text) {
  AugmentSpec spec;
  const std::string whole = trim(text);
  if (whole.empty() || whole == "none") return spec;
  bool seen_flip = false;
  bool seen_brightness = false;
  constexpr char kBrightness[] = "brightness=";
  constexpr std::size_t kBrightnessLength = sizeof(kBrightness) - 1;
  for (const std::string& part : split_parts(whole)) {
    if (part.empty()) {
      bad(text, "empty part between commas");
    } else if (part == "flip") {
      if (seen_flip) bad(text, "'flip' given twice");
      seen_flip = true;
      spec.flip = true;
    } else if (part.compare(0, kBrightnessLength, kBrightness) == 0) {
      if (seen_brightness) bad(text, "'brightness' given twice");
      seen_brightness = true;
      spec.brightness = parse_brightness(text, part.substr(kBrightnessLength));
    } else if (part == "brightness") {
      bad(text, "'brightness' needs a value: brightness=DELTA");
    } else {
      bad(text, "unknown part '" + part + "'");
    }
  }
  return spec;
}

std::string to_string(const AugmentSpec& spec) {
  std::vector<std::string> parts;
  if (spec.flip) parts.emplace_back("flip");
  // fmt prints the shortest text that reads back (strtof) to the same float.
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
    // u in [0, 1) with 24 bits, from a second mix so it is independent of
    // the flip bit. (2u - 1) * b < b in float too: b's ulp is >= b * 2^-24.
    const double u = static_cast<double>(splitmix64(key) >> 40) / static_cast<double>(1ULL << 24);
    draw.brightness_delta = static_cast<float>((2.0 * u - 1.0) * spec.brightness);
  }
  return draw;
}

void augment_to_float(const std::uint8_t* images, std::int64_t count, int channels, int height,
                      int width, const std::int64_t* sample_indices, const AugmentSpec& spec,
                      std::uint64_t seed, std::int64_t epoch, float* out) {
  const std::int64_t rows = static_cast<std::int64_t>(channels) * height;
  const std::int64_t per_image = rows * width;
  std::array<float, 256> lut{};
  for (std::int64_t n = 0; n < count; ++n) {
    const SampleAugmentation draw = draw_augmentation(spec, seed, epoch, sample_indices[n]);
    // Every pixel of the image maps through the same function of its byte:
    // tabulate it once (256 values) instead of per pixel (3072).
    for (int v = 0; v < 256; ++v) {
      const float x = static_cast<float>(v) / 255.0F;
      lut[static_cast<std::size_t>(v)] =
          draw.brightness_delta == 0.0F ? x : std::clamp(x + draw.brightness_delta, 0.0F, 1.0F);
    }
    const std::uint8_t* src = images + n * per_image;
    float* dst = out + n * per_image;
    for (std::int64_t row = 0; row < rows; ++row) {
      const std::uint8_t* in = src + row * width;
      float* o = dst + row * width;
      if (draw.flip) {
        for (int x = 0; x < width; ++x) o[x] = lut[in[width - 1 - x]];
      } else {
        for (int x = 0; x < width; ++x) o[x] = lut[in[x]];
      }
    }
  }
}

}  // namespace xfer::trainer::data
