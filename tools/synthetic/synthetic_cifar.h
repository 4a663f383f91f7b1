// A learnable synthetic stand-in for CIFAR-100, written in its exact binary
// layout (see coordinator/dataset/cifar_format.h).
//
// Fine class c draws one shape, one colour palette and one texture:
//   shape   = c % 5         disc, square, triangle, ring, cross
//   palette = (c / 5) % 5   red, green, blue, yellow, purple
//   texture = c / 25        solid, striped, checkered, dotted
// and coarse class c / 5 is the (palette, texture) pair, so every fine label
// maps to one coarse label, as load_cifar100 requires. Each image jitters the
// object's position, size, aspect and colour, and the texture's period and
// phase, over a random gradient background with a few distractor blobs and
// per-pixel noise: a small CNN learns it well above chance but not perfectly.
//
// Output is a pure function of the options (the thread count aside): every
// sample's randomness derives from (seed, split, index) alone, and rendering
// uses integer arithmetic only, so files are byte-identical across runs,
// thread counts, compilers and standard libraries.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/dataset/cifar_format.h"

namespace xfer::tools::synthetic {

// Named dataset sizes.
enum class SizePreset {
  kSmall,  // 5,000 train / 1,000 test: unit tests and quick demos
  kLarge,  // 50,000 train / 10,000 test: the size of the real CIFAR-100
};

// "small" / "large".
std::string to_string(SizePreset size);
// Inverse of to_string; throws std::invalid_argument naming the bad value and
// the accepted ones.
SizePreset parse_size_preset(const std::string& text);

enum class Split { kTrain, kTest };

// Largest accepted record count per split: 1,000,000 records are 3 GB, far more
// than a stand-in needs, so a larger value is almost certainly a typo.
inline constexpr std::int64_t kMaxRecordsPerSplit = 1'000'000;

struct SyntheticOptions {
  // Sets train_count and test_count unless those are given explicitly.
  // Default: kSmall (5,000 train / 1,000 test).
  SizePreset size = SizePreset::kSmall;

  // Records in train.bin. Overrides the size preset when set.
  // REQUIRES: 1..kMaxRecordsPerSplit.
  // Default: unset (from `size`).
  std::optional<std::int64_t> train_count;

  // Records in test.bin. Overrides the size preset when set.
  // REQUIRES: 1..kMaxRecordsPerSplit.
  // Default: unset (from `size`).
  std::optional<std::int64_t> test_count;

  // Fine labels used are 0..num_classes-1. Labels are balanced: every block of
  // num_classes consecutive records holds each class once, so every class is
  // present when a split has at least num_classes records. The label-name
  // files always list all 100 fine and 20 coarse names.
  // REQUIRES: 1..100.
  // Default: 100.
  int num_classes = 100;

  // Different seeds give different datasets; the same seed gives identical
  // bytes.
  // Default: 0.
  std::uint64_t seed = 0;

  // Worker threads for rendering; 0 means std::thread::hardware_concurrency().
  // Speed only: the output does not depend on it.
  // REQUIRES: >= 0.
  // Default: 0.
  int num_threads = 0;
};

// Throws std::invalid_argument naming the option (and its command-line flag),
// the bad value and the accepted range.
void validate(const SyntheticOptions& options);

// Records in `split` after applying the preset and the explicit counts.
// REQUIRES: validate(options) passes.
std::int64_t record_count(const SyntheticOptions& options, Split split);

// The 100 fine names ("red_disc_striped"), 20 coarse names ("red_striped"),
// all distinct, in label order.
std::vector<std::string> fine_label_names();
std::vector<std::string> coarse_label_names();
// Coarse label of fine label `fine` (fine / 5). REQUIRES: 0 <= fine < 100.
int coarse_label_of(int fine);

// Fine label of record `index` of `split`.
int label_of(const SyntheticOptions& options, Split split, std::int64_t index);

// Record `index` of `split`, rendered on its own: equal to the same record of
// make_split. REQUIRES: validate(options) passes, 0 <= index.
coordinator::dataset::CifarRecord make_record(const SyntheticOptions& options, Split split,
                                              std::int64_t index);

// A whole split in memory, in file order. Validates the options first.
coordinator::dataset::CifarSplit make_split(const SyntheticOptions& options, Split split);

// What write_synthetic_cifar wrote.
struct WriteSummary {
  std::filesystem::path dir;
  std::int64_t train_count = 0;
  std::int64_t test_count = 0;
  std::uint64_t bytes_written = 0;  // all four files together
};

// Validates the options, creates `dir` (and its parents) if needed and writes
// train.bin, test.bin, fine_label_names.txt and coarse_label_names.txt there,
// each atomically. Other files in `dir` are left alone. Throws
// std::invalid_argument for bad options, std::runtime_error when `dir` cannot
// be created and coordinator::dataset::FormatError when a file cannot be
// written.
WriteSummary write_synthetic_cifar(const SyntheticOptions& options,
                                   const std::filesystem::path& dir);

}  // namespace xfer::tools::synthetic
