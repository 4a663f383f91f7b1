#include "tools/synthetic/synthetic_cifar.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <numeric>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

namespace xfer::tools::synthetic {
namespace {

namespace fs = std::filesystem;
namespace ds = coordinator::dataset;

constexpr int kSide = ds::kImageSide;
constexpr int kPixels = kSide * kSide;

constexpr int kNumShapes = 5;
constexpr int kNumPalettes = 5;
constexpr int kNumTextures = 4;
static_assert(kNumShapes * kNumPalettes * kNumTextures == ds::kNumFineLabels);
static_assert(kNumPalettes * kNumTextures == ds::kNumCoarseLabels);

constexpr std::array<const char*, kNumShapes> kShapeNames = {"disc", "square", "triangle", "ring",
                                                             "cross"};
constexpr std::array<const char*, kNumPalettes> kPaletteNames = {"red", "green", "blue", "yellow",
                                                                 "purple"};
constexpr std::array<const char*, kNumTextures> kTextureNames = {"solid", "striped", "checkered",
                                                                 "dotted"};
// Base RGB of each palette. Red/purple and blue/purple are close on purpose:
// with colour jitter they overlap, which keeps colour alone from deciding.
constexpr std::array<std::array<int, 3>, kNumPalettes> kPaletteRgb = {{
    {210, 45, 45},   // red
    {50, 175, 70},   // green
    {45, 85, 215},   // blue
    {225, 205, 50},  // yellow
    {155, 60, 190},  // purple
}};

// ---------------------------------------------------------------------------
// Randomness. Our own generator rather than <random>'s distributions, whose
// output differs between standard libraries; and a fresh generator per sample,
// seeded from (seed, split, index), so samples can be rendered in any order or
// in parallel and still come out the same.

std::uint64_t mix64(std::uint64_t z) {  // splitmix64's finaliser
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Distinct salts keep the streams for images and label orders of both splits
// apart even when their indices coincide.
constexpr std::uint64_t kTrainSalt = 0x747261696e000000ULL;  // "train"
constexpr std::uint64_t kTestSalt = 0x7465737400000000ULL;   // "test"
constexpr std::uint64_t kImageSalt = 0x696d616765000000ULL;  // "image"
constexpr std::uint64_t kLabelSalt = 0x6c6162656c000000ULL;  // "label"

std::uint64_t stream_seed(std::uint64_t seed, Split split, std::uint64_t purpose,
                          std::uint64_t index) {
  const std::uint64_t split_salt = split == Split::kTrain ? kTrainSalt : kTestSalt;
  return mix64(mix64(mix64(seed) ^ split_salt ^ purpose) ^ index);
}

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() {  // splitmix64: mix64 adds the increment itself
    const std::uint64_t z = state_;
    state_ += 0x9e3779b97f4a7c15ULL;
    return mix64(z);
  }
  // Uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias is < 2^-32).
  int below(int n) {
    return static_cast<int>(((next() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
  }
  // Uniform in [lo, hi].
  int range(int lo, int hi) { return lo + below(hi - lo + 1); }

 private:
  std::uint64_t state_;
};

// ---------------------------------------------------------------------------
// Rendering, in integers only so the bytes do not depend on the floating-point
// unit or the compiler's contraction settings.
//
// Positions are in eighths of a pixel; pixel x covers [8x, 8x + 8). The object
// shape is tested at 2x2 sub-samples per pixel (8x + 2, 8x + 6) for soft edges.

constexpr int kSub = 8;  // position units per pixel

int clamp_byte(int v) { return std::clamp(v, 0, 255); }

// Floor division and modulo for a possibly negative numerator, d > 0.
int floor_div(int n, int d) { return n >= 0 ? n / d : -((-n + d - 1) / d); }
int floor_mod(int n, int d) { return n - floor_div(n, d) * d; }

// Whether normalised point (u, v) lies in `shape`, where 256 is the object's
// half-extent. The areas are within ~30% of each other so size alone does not
// tell shapes apart.
bool in_shape(int shape, int u, int v) {
  const int au = std::abs(u);
  const int av = std::abs(v);
  const int r2 = u * u + v * v;
  switch (shape) {
    case 0:  // disc
      return r2 <= 256 * 256;
    case 1:  // square
      return au <= 220 && av <= 220;
    case 2:  // triangle, apex up
      return v <= 200 && 480 * au <= 300 * (v + 280);
    case 3:  // ring
      return r2 <= 256 * 256 && r2 >= 150 * 150;
    default:  // cross
      return (au <= 85 && av <= 256) || (av <= 85 && au <= 256);
  }
}

// Texture pattern value (0 or 1) at offset (dx, dy) from the object centre.
struct Texture {
  int kind = 0;  // 0 solid, 1 striped, 2 checkered, 3 dotted
  int period = 32;
  int phase_x = 0;
  int phase_y = 0;
  int dir_x = 1;  // stripe direction
  int dir_y = 0;

  int at(int dx, int dy) const {
    switch (kind) {
      case 1:
        return floor_div(dx * dir_x + dy * dir_y + phase_x, period) & 1;
      case 2:
        return (floor_div(dx + phase_x, period) + floor_div(dy + phase_y, period)) & 1;
      case 3: {
        const int mx = floor_mod(dx + phase_x, period) - period / 2;
        const int my = floor_mod(dy + phase_y, period) - period / 2;
        // Dots of radius 0.3 period.
        return 100 * (mx * mx + my * my) <= 9 * period * period ? 1 : 0;
      }
      default:
        return 0;
    }
  }
};

// Planar RGB being drawn, before noise and clamping.
using Canvas = std::array<std::array<int, kPixels>, 3>;

// A random colour fading along a random direction to a nearby colour, so no
// single background value is typical of a class.
void draw_background(Rng& rng, Canvas& canvas) {
  std::array<int, 3> from{}, to{};
  for (int ch = 0; ch < 3; ++ch) {
    from[ch] = rng.range(0, 255);
    to[ch] = clamp_byte(from[ch] + rng.range(-70, 70));
  }
  const int direction = rng.below(4);
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      // Position along the gradient, 0..62.
      const int t = direction == 0   ? 2 * x
                    : direction == 1 ? 2 * y
                    : direction == 2 ? x + y
                                     : x + (kSide - 1 - y);
      for (int ch = 0; ch < 3; ++ch) {
        canvas[ch][y * kSide + x] = from[ch] + (to[ch] - from[ch]) * t / 62;
      }
    }
  }
}

// A small disc or square of arbitrary colour anywhere: clutter that a model
// must learn to ignore.
void draw_distractor(Rng& rng, Canvas& canvas) {
  const int radius = rng.range(2 * kSub, 5 * kSub);
  const int cx = rng.range(0, kSide * kSub);
  const int cy = rng.range(0, kSide * kSub);
  const bool square = rng.below(2) == 1;
  std::array<int, 3> colour{};
  for (int ch = 0; ch < 3; ++ch) colour[ch] = rng.range(0, 255);
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      const int dx = x * kSub + kSub / 2 - cx;
      const int dy = y * kSub + kSub / 2 - cy;
      const bool inside = square ? std::max(std::abs(dx), std::abs(dy)) <= radius
                                 : dx * dx + dy * dy <= radius * radius;
      if (!inside) continue;
      for (int ch = 0; ch < 3; ++ch) canvas[ch][y * kSide + x] = colour[ch];
    }
  }
}

// The palette's base colour scaled by a brightness factor (0.74..1.15), plus
// per-channel jitter.
std::array<int, 3> object_colour(Rng& rng, int palette) {
  const int brightness = rng.range(190, 295);  // /256
  std::array<int, 3> colour{};
  for (int ch = 0; ch < 3; ++ch) {
    colour[ch] = clamp_byte(kPaletteRgb[palette][ch] * brightness / 256 + rng.range(-45, 45));
  }
  return colour;
}

Texture random_texture(Rng& rng, int kind) {
  constexpr std::array<std::array<int, 2>, 4> kDirections = {{{1, 0}, {0, 1}, {1, 1}, {1, -1}}};
  Texture texture;
  texture.kind = kind;
  texture.period = rng.range(3 * kSub, 5 * kSub);
  texture.phase_x = rng.below(texture.period);
  texture.phase_y = rng.below(texture.period);
  const auto& direction = kDirections[rng.below(4)];
  texture.dir_x = direction[0];
  texture.dir_y = direction[1];
  return texture;
}

// The object of class `fine`, with jittered centre, size, aspect ratio,
// colour and texture.
void draw_object(Rng& rng, int fine, Canvas& canvas) {
  const int shape = fine % kNumShapes;
  const int cx = rng.range(11 * kSub, 21 * kSub);
  const int cy = rng.range(11 * kSub, 21 * kSub);
  const int size = rng.range(6 * kSub, 12 * kSub);
  const int rx = size * rng.range(85, 115) / 100;
  const int ry = size * rng.range(85, 115) / 100;
  const std::array<int, 3> colour = object_colour(rng, (fine / kNumShapes) % kNumPalettes);
  const Texture texture = random_texture(rng, fine / (kNumShapes * kNumPalettes));
  // How dark the pattern's dark part is (/256). Near the top of the range, a
  // texture all but vanishes in the noise: a built-in ambiguity with "solid".
  const int shade = rng.range(100, 215);

  // Only pixels in the bounding box can be covered (the triangle's base is the
  // widest point, at 300/256 of the half-extent).
  const int reach_x = rx * 300 / 256 + kSub;
  const int reach_y = ry * 300 / 256 + kSub;
  const int x0 = std::max(0, (cx - reach_x) / kSub);
  const int x1 = std::min(kSide - 1, (cx + reach_x) / kSub);
  const int y0 = std::max(0, (cy - reach_y) / kSub);
  const int y1 = std::min(kSide - 1, (cy + reach_y) / kSub);
  for (int y = y0; y <= y1; ++y) {
    for (int x = x0; x <= x1; ++x) {
      int coverage = 0;  // of 4 sub-samples
      for (int sy = 0; sy < 2; ++sy) {
        for (int sx = 0; sx < 2; ++sx) {
          const int dx = x * kSub + 2 + 4 * sx - cx;
          const int dy = y * kSub + 2 + 4 * sy - cy;
          coverage += in_shape(shape, dx * 256 / rx, dy * 256 / ry) ? 1 : 0;
        }
      }
      if (coverage == 0) continue;
      const bool dark = texture.at(x * kSub + kSub / 2 - cx, y * kSub + kSub / 2 - cy) == 1;
      for (int ch = 0; ch < 3; ++ch) {
        const int fg = dark ? colour[ch] * shade / 256 : colour[ch];
        int& pixel = canvas[ch][y * kSide + x];
        pixel = (pixel * (4 - coverage) + fg * coverage) / 4;
      }
    }
  }
}

// Adds sensor noise and stores the clamped bytes. The noise is roughly
// Gaussian: the sum of four uniform bytes has standard deviation ~147.8 around
// 510, rescaled to a random sigma.
void add_noise(Rng& rng, const Canvas& canvas, std::uint8_t* out) {
  const int sigma = rng.range(6, 28);
  for (int ch = 0; ch < 3; ++ch) {
    std::uint8_t* plane = out + ch * kPixels;
    for (int i = 0; i < kPixels; i += 2) {
      const std::uint64_t bits = rng.next();
      for (int half = 0; half < 2; ++half) {
        const std::uint64_t b = bits >> (32 * half);
        const int sum = static_cast<int>((b & 0xff) + ((b >> 8) & 0xff) + ((b >> 16) & 0xff) +
                                         ((b >> 24) & 0xff));
        const int noise = (sum - 510) * sigma / 148;
        plane[i + half] = static_cast<std::uint8_t>(clamp_byte(canvas[ch][i + half] + noise));
      }
    }
  }
}

// Renders one sample of class `fine` into `out` (kImageBytes planar RGB).
// The order of the random draws is part of the output format: changing it
// changes every image (see the pinned hash in the unit test).
void render(std::uint64_t sample_seed, int fine, std::uint8_t* out) {
  Rng rng(sample_seed);
  Canvas canvas{};
  draw_background(rng, canvas);
  // 0..4 distractors; the last one may cover part of the object.
  const int distractors = rng.range(0, 4);
  const bool last_on_top = rng.below(2) == 1;
  const int under = distractors - (last_on_top && distractors > 0 ? 1 : 0);
  for (int k = 0; k < under; ++k) draw_distractor(rng, canvas);
  draw_object(rng, fine, canvas);
  if (under < distractors) draw_distractor(rng, canvas);
  add_noise(rng, canvas, out);
}

// A random order of the classes for label block `block` (records
// block*num_classes .. +num_classes-1): balanced labels without a whole-split
// shuffle, so any record's label can be computed on its own.
std::vector<int> block_labels(const SyntheticOptions& options, Split split, std::int64_t block) {
  std::vector<int> labels(static_cast<std::size_t>(options.num_classes));
  std::iota(labels.begin(), labels.end(), 0);
  Rng rng(stream_seed(options.seed, split, kLabelSalt, static_cast<std::uint64_t>(block)));
  for (int i = options.num_classes - 1; i > 0; --i) {  // Fisher-Yates
    std::swap(labels[static_cast<std::size_t>(i)],
              labels[static_cast<std::size_t>(rng.below(i + 1))]);
  }
  return labels;
}

std::uint64_t image_seed(const SyntheticOptions& options, Split split, std::int64_t index) {
  return stream_seed(options.seed, split, kImageSalt, static_cast<std::uint64_t>(index));
}

void check_count(const std::optional<std::int64_t>& count, const char* name, const char* flag) {
  if (count && (*count < 1 || *count > kMaxRecordsPerSplit)) {
    throw std::invalid_argument(std::string("synthetic CIFAR: ") + name + " (" + flag + ") is " +
                                std::to_string(*count) + " (expected 1.." +
                                std::to_string(kMaxRecordsPerSplit) + " records)");
  }
}

}  // namespace

std::string to_string(SizePreset size) { return size == SizePreset::kSmall ? "small" : "large"; }

SizePreset parse_size_preset(const std::string& text) {
  if (text == "small") return SizePreset::kSmall;
  if (text == "large") return SizePreset::kLarge;
  throw std::invalid_argument("synthetic CIFAR: size preset (--size) is '" + text +
                              "' (expected 'small' or 'large')");
}

void validate(const SyntheticOptions& options) {
  if (options.size != SizePreset::kSmall && options.size != SizePreset::kLarge) {
    throw std::invalid_argument("synthetic CIFAR: size (--size) is " +
                                std::to_string(static_cast<int>(options.size)) +
                                " (expected SizePreset::kSmall or SizePreset::kLarge)");
  }
  check_count(options.train_count, "train_count", "--train");
  check_count(options.test_count, "test_count", "--test");
  if (options.num_classes < 1 || options.num_classes > ds::kNumFineLabels) {
    throw std::invalid_argument(
        "synthetic CIFAR: num_classes (--classes) is " + std::to_string(options.num_classes) +
        " (expected 1.." + std::to_string(ds::kNumFineLabels) + ", the fine labels of CIFAR-100)");
  }
  if (options.num_threads < 0) {
    throw std::invalid_argument("synthetic CIFAR: num_threads (--threads) is " +
                                std::to_string(options.num_threads) +
                                " (expected >= 0; 0 means one per hardware thread)");
  }
}

std::int64_t record_count(const SyntheticOptions& options, Split split) {
  const bool small = options.size == SizePreset::kSmall;
  if (split == Split::kTrain) return options.train_count.value_or(small ? 5'000 : 50'000);
  return options.test_count.value_or(small ? 1'000 : 10'000);
}

std::vector<std::string> fine_label_names() {
  std::vector<std::string> names;
  for (int fine = 0; fine < ds::kNumFineLabels; ++fine) {
    names.push_back(std::string(kPaletteNames[(fine / kNumShapes) % kNumPalettes]) + "_" +
                    kShapeNames[fine % kNumShapes] + "_" +
                    kTextureNames[fine / (kNumShapes * kNumPalettes)]);
  }
  return names;
}

std::vector<std::string> coarse_label_names() {
  std::vector<std::string> names;
  for (int coarse = 0; coarse < ds::kNumCoarseLabels; ++coarse) {
    names.push_back(std::string(kPaletteNames[coarse % kNumPalettes]) + "_" +
                    kTextureNames[coarse / kNumPalettes]);
  }
  return names;
}

int coarse_label_of(int fine) {
  if (fine < 0 || fine >= ds::kNumFineLabels) {
    throw std::invalid_argument("coarse_label_of: fine label " + std::to_string(fine) +
                                " out of range (expected 0.." +
                                std::to_string(ds::kNumFineLabels - 1) + ")");
  }
  return fine / kNumShapes;
}

int label_of(const SyntheticOptions& options, Split split, std::int64_t index) {
  validate(options);
  if (index < 0) {
    throw std::invalid_argument("label_of: record index " + std::to_string(index) + " is negative");
  }
  const std::int64_t block = index / options.num_classes;
  return block_labels(options, split, block)[static_cast<std::size_t>(index % options.num_classes)];
}

ds::CifarRecord make_record(const SyntheticOptions& options, Split split, std::int64_t index) {
  const int fine = label_of(options, split, index);  // validates
  ds::CifarRecord record;
  record.fine_label = static_cast<std::uint8_t>(fine);
  record.coarse_label = static_cast<std::uint8_t>(coarse_label_of(fine));
  record.image.resize(ds::kImageBytes);
  render(image_seed(options, split, index), fine, record.image.data());
  return record;
}

ds::CifarSplit make_split(const SyntheticOptions& options, Split split) {
  validate(options);
  const std::int64_t count = record_count(options, split);
  const auto n = static_cast<std::size_t>(count);
  std::vector<std::uint8_t> fine(n), coarse(n), images(n * ds::kImageBytes);

  std::vector<int> labels;
  for (std::int64_t i = 0; i < count; ++i) {
    if (i % options.num_classes == 0)
      labels = block_labels(options, split, i / options.num_classes);
    const int label = labels[static_cast<std::size_t>(i % options.num_classes)];
    fine[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(label);
    coarse[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(coarse_label_of(label));
  }

  // Each record depends only on its own seed, so contiguous chunks can be
  // rendered concurrently without changing a byte.
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  const std::int64_t threads = std::min<std::int64_t>(
      count, options.num_threads > 0 ? options.num_threads : static_cast<int>(hardware));
  auto render_range = [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const auto at = static_cast<std::size_t>(i);
      render(image_seed(options, split, i), fine[at], images.data() + at * ds::kImageBytes);
    }
  };
  std::vector<std::thread> workers;
  for (std::int64_t t = 1; t < threads; ++t) {
    workers.emplace_back(render_range, count * t / threads, count * (t + 1) / threads);
  }
  render_range(0, count / threads);
  for (auto& worker : workers) worker.join();

  return ds::CifarSplit(std::move(coarse), std::move(fine), std::move(images));
}

WriteSummary write_synthetic_cifar(const SyntheticOptions& options, const fs::path& dir) {
  validate(options);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw std::runtime_error("synthetic CIFAR: cannot create output directory " + dir.string() +
                             ": " + (ec ? ec.message() : "exists and is not a directory"));
  }

  WriteSummary summary;
  summary.dir = dir;
  for (const Split split : {Split::kTrain, Split::kTest}) {
    const ds::CifarSplit records = make_split(options, split);
    std::vector<std::uint8_t> bytes;
    bytes.reserve(records.size() * ds::kRecordBytes);
    ds::CifarRecord record;
    for (std::size_t i = 0; i < records.size(); ++i) {
      record.coarse_label = records.coarse_label(i);
      record.fine_label = records.fine_label(i);
      record.image.assign(records.image(i), records.image(i) + ds::kImageBytes);
      ds::append_record(record, bytes);
    }
    ds::write_file_atomically(dir / (split == Split::kTrain ? ds::kTrainFile : ds::kTestFile),
                              bytes);
    summary.bytes_written += bytes.size();
    (split == Split::kTrain ? summary.train_count : summary.test_count) =
        static_cast<std::int64_t>(records.size());
  }

  const std::vector<std::string> fine_names = fine_label_names();
  const std::vector<std::string> coarse_names = coarse_label_names();
  ds::write_label_names(dir / ds::kFineNamesFile, fine_names);
  ds::write_label_names(dir / ds::kCoarseNamesFile, coarse_names);
  for (const auto* names : {&fine_names, &coarse_names}) {
    for (const auto& name : *names) summary.bytes_written += name.size() + 1;
  }
  return summary;
}

}  // namespace xfer::tools::synthetic
