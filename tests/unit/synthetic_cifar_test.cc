#include "tools/synthetic/synthetic_cifar.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "coordinator/dataset/cifar_format.h"

namespace xfer::tools::synthetic {
namespace {

namespace fs = std::filesystem;
namespace ds = coordinator::dataset;

// A fresh directory per test under the system temp dir, removed afterwards.
class SyntheticCifarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::temp_directory_path() /
            ("xfer_synthetic_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  fs::path root_;
};

std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

SyntheticOptions tiny_options() {
  SyntheticOptions options;
  options.train_count = 1'000;
  options.test_count = 300;
  options.seed = 42;
  return options;
}

// The message of the std::invalid_argument that validate throws, or "" if none.
std::string validation_error(const SyntheticOptions& options) {
  try {
    validate(options);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST_F(SyntheticCifarTest, WritesADatasetThatLoadsWithEveryClassPresent) {
  const SyntheticOptions options = tiny_options();
  const WriteSummary summary = write_synthetic_cifar(options, root_ / "data");
  EXPECT_EQ(summary.train_count, 1'000);
  EXPECT_EQ(summary.test_count, 300);

  const ds::CifarDataset dataset = ds::load_cifar100(root_ / "data");
  ASSERT_EQ(dataset.split("train").size(), 1'000u);
  ASSERT_EQ(dataset.split("test").size(), 300u);
  EXPECT_EQ(fs::file_size(root_ / "data" / ds::kTrainFile), 1'000 * ds::kRecordBytes);
  EXPECT_EQ(fs::file_size(root_ / "data" / ds::kTestFile), 300 * ds::kRecordBytes);
  EXPECT_EQ(summary.bytes_written, fs::file_size(root_ / "data" / ds::kTrainFile) +
                                       fs::file_size(root_ / "data" / ds::kTestFile) +
                                       fs::file_size(root_ / "data" / ds::kFineNamesFile) +
                                       fs::file_size(root_ / "data" / ds::kCoarseNamesFile));

  for (const char* name : {"train", "test"}) {
    const ds::CifarSplit& split = dataset.split(name);
    std::set<int> seen;
    for (std::size_t i = 0; i < split.size(); ++i) {
      ASSERT_LT(split.fine_label(i), options.num_classes) << name << " record " << i;
      EXPECT_EQ(split.coarse_label(i), split.fine_label(i) / 5) << name << " record " << i;
      seen.insert(split.fine_label(i));
    }
    EXPECT_EQ(seen.size(), 100u) << name;
  }

  EXPECT_EQ(dataset.fine_label_names, fine_label_names());
  EXPECT_EQ(dataset.coarse_label_names, coarse_label_names());
  EXPECT_EQ(std::set<std::string>(dataset.fine_label_names.begin(), dataset.fine_label_names.end())
                .size(),
            100u);
  EXPECT_EQ(
      std::set<std::string>(dataset.coarse_label_names.begin(), dataset.coarse_label_names.end())
          .size(),
      20u);
  EXPECT_EQ(dataset.fine_label_names[0], "red_disc_solid");
  EXPECT_EQ(dataset.fine_label_names[31], "green_square_striped");
  EXPECT_EQ(dataset.coarse_label_names[6], "green_striped");
  // A fine name starts with its coarse name's colour and ends with its texture.
  for (int fine = 0; fine < 100; ++fine) {
    const std::string& fine_name = dataset.fine_label_names[fine];
    const std::string& coarse_name = dataset.coarse_label_names[coarse_label_of(fine)];
    const std::string colour = coarse_name.substr(0, coarse_name.find('_'));
    const std::string texture = coarse_name.substr(coarse_name.find('_'));
    EXPECT_EQ(fine_name.rfind(colour, 0), 0u) << fine_name << " vs " << coarse_name;
    EXPECT_EQ(fine_name.substr(fine_name.size() - texture.size()), texture)
        << fine_name << " vs " << coarse_name;
  }
}

TEST_F(SyntheticCifarTest, FewerClassesUsesOnlyThoseAndBalancesThem) {
  SyntheticOptions options = tiny_options();
  options.num_classes = 7;
  options.train_count = 52;  // 7 full blocks of 7, then 3 more
  const ds::CifarSplit split = make_split(options, Split::kTrain);
  std::array<int, 7> counts{};
  for (std::size_t i = 0; i < split.size(); ++i) {
    ASSERT_LT(split.fine_label(i), 7) << "record " << i;
    ++counts[split.fine_label(i)];
    EXPECT_EQ(split.fine_label(i), label_of(options, Split::kTrain, static_cast<std::int64_t>(i)));
  }
  for (int c = 0; c < 7; ++c) {
    EXPECT_GE(counts[c], 7) << "class " << c;
    EXPECT_LE(counts[c], 8) << "class " << c;
  }
  // Labels are shuffled, not 0, 1, 2, ... in order.
  bool in_order = true;
  for (std::size_t i = 0; i < split.size(); ++i) in_order &= split.fine_label(i) == i % 7;
  EXPECT_FALSE(in_order);

  // The name files still list every CIFAR-100 label.
  write_synthetic_cifar(options, root_);
  EXPECT_EQ(ds::load_cifar100(root_).fine_label_names.size(), 100u);
}

TEST_F(SyntheticCifarTest, SameSeedWritesIdenticalBytesOtherSeedDiffers) {
  SyntheticOptions options = tiny_options();
  write_synthetic_cifar(options, root_ / "a");
  options.num_threads = 3;  // the thread count must not matter
  write_synthetic_cifar(options, root_ / "b");
  options.seed = 43;
  write_synthetic_cifar(options, root_ / "c");

  for (const char* file :
       {ds::kTrainFile, ds::kTestFile, ds::kFineNamesFile, ds::kCoarseNamesFile}) {
    EXPECT_EQ(read_bytes(root_ / "a" / file), read_bytes(root_ / "b" / file)) << file;
  }
  for (const char* file : {ds::kTrainFile, ds::kTestFile}) {
    EXPECT_NE(read_bytes(root_ / "a" / file), read_bytes(root_ / "c" / file)) << file;
  }
}

TEST_F(SyntheticCifarTest, MakeRecordMatchesTheSplitAndSplitsDiffer) {
  SyntheticOptions options = tiny_options();
  options.num_threads = 1;
  const ds::CifarSplit train = make_split(options, Split::kTrain);
  const ds::CifarSplit test = make_split(options, Split::kTest);
  for (const std::int64_t i : {0, 1, 99, 100, 299}) {
    const ds::CifarRecord record = make_record(options, Split::kTest, i);
    const auto at = static_cast<std::size_t>(i);
    EXPECT_EQ(record.fine_label, test.fine_label(at)) << "test record " << i;
    EXPECT_EQ(record.coarse_label, test.coarse_label(at)) << "test record " << i;
    EXPECT_EQ(record.image,
              std::vector<std::uint8_t>(test.image(at), test.image(at) + ds::kImageBytes))
        << "test record " << i;
  }
  // Train and test are drawn from different streams: no image repeats.
  std::set<std::vector<std::uint8_t>> train_images;
  for (std::size_t i = 0; i < train.size(); ++i) {
    train_images.emplace(train.image(i), train.image(i) + ds::kImageBytes);
  }
  EXPECT_EQ(train_images.size(), train.size());
  for (std::size_t i = 0; i < test.size(); ++i) {
    EXPECT_EQ(train_images.count(
                  std::vector<std::uint8_t>(test.image(i), test.image(i) + ds::kImageBytes)),
              0u)
        << "test record " << i << " repeats a train image";
  }
}

// Rendering uses integers only, so the bytes for a seed are the same on every
// platform and compiler. This pins them: if you change the generator on
// purpose, update the value (and say so in the change), since datasets that
// users generated earlier will no longer match.
TEST_F(SyntheticCifarTest, OutputForAFixedSeedIsPinned) {
  SyntheticOptions options;
  options.train_count = 200;
  options.seed = 7;
  const ds::CifarSplit split = make_split(options, Split::kTrain);
  std::uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a over labels, then images
  auto add = [&hash](std::uint8_t byte) { hash = (hash ^ byte) * 0x100000001b3ULL; };
  for (const std::uint8_t b : split.fine_labels()) add(b);
  for (const std::uint8_t b : split.images()) add(b);
  EXPECT_EQ(hash, 10879608569212921396ULL);
}

TEST(SyntheticCifarOptions, PresetsAndExplicitCounts) {
  SyntheticOptions options;
  EXPECT_EQ(record_count(options, Split::kTrain), 5'000);
  EXPECT_EQ(record_count(options, Split::kTest), 1'000);
  options.size = SizePreset::kLarge;
  EXPECT_EQ(record_count(options, Split::kTrain), 50'000);
  EXPECT_EQ(record_count(options, Split::kTest), 10'000);
  options.train_count = 123;
  EXPECT_EQ(record_count(options, Split::kTrain), 123);
  EXPECT_EQ(record_count(options, Split::kTest), 10'000);

  EXPECT_EQ(parse_size_preset("small"), SizePreset::kSmall);
  EXPECT_EQ(parse_size_preset(to_string(SizePreset::kLarge)), SizePreset::kLarge);
  try {
    parse_size_preset("medium");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'medium'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'small' or 'large'"), std::string::npos) << e.what();
  }
}

TEST(SyntheticCifarOptions, ValidationNamesTheOptionTheValueAndTheRange) {
  EXPECT_EQ(validation_error(SyntheticOptions{}), "");

  struct Case {
    void (*set)(SyntheticOptions&);
    std::vector<std::string> expected_parts;
  };
  const std::vector<Case> cases = {
      {[](SyntheticOptions& o) { o.num_classes = 0; },
       {"num_classes", "--classes", " 0 ", "1..100"}},
      {[](SyntheticOptions& o) { o.num_classes = 101; },
       {"num_classes", "--classes", "101", "1..100"}},
      {[](SyntheticOptions& o) { o.train_count = 0; },
       {"train_count", "--train", " 0 ", "1..1000000"}},
      {[](SyntheticOptions& o) { o.test_count = -5; },
       {"test_count", "--test", "-5", "1..1000000"}},
      {[](SyntheticOptions& o) { o.train_count = 1'000'001; }, {"train_count", "1000001"}},
      {[](SyntheticOptions& o) { o.num_threads = -1; }, {"num_threads", "--threads", "-1", ">= 0"}},
  };
  for (const Case& c : cases) {
    SyntheticOptions options;
    c.set(options);
    const std::string message = validation_error(options);
    ASSERT_FALSE(message.empty()) << "expected a validation error for " << c.expected_parts[0];
    for (const std::string& part : c.expected_parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
    // The generators validate too, before writing anything.
    EXPECT_THROW(make_split(options, Split::kTrain), std::invalid_argument);
  }
}

TEST_F(SyntheticCifarTest, BadOptionsOrOutputPathWriteNothing) {
  SyntheticOptions options = tiny_options();
  options.num_classes = 0;
  EXPECT_THROW(write_synthetic_cifar(options, root_ / "data"), std::invalid_argument);
  EXPECT_FALSE(fs::exists(root_ / "data"));

  std::ofstream(root_ / "file") << "not a directory";
  try {
    write_synthetic_cifar(tiny_options(), root_ / "file");
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((root_ / "file").string()), std::string::npos) << e.what();
  }
}

// Test accuracy of a nearest-class-mean classifier on 8x8 (4x4 average-pooled)
// RGB pixels, fit on the train split and scored on the test split.
double nearest_class_mean_accuracy(const SyntheticOptions& options) {
  constexpr int kPooled = 8;
  constexpr int kFeatures = 3 * kPooled * kPooled;
  using Features = std::array<double, kFeatures>;
  auto features = [](const std::uint8_t* image) {
    Features f{};
    for (int ch = 0; ch < 3; ++ch) {
      for (int y = 0; y < 32; ++y) {
        for (int x = 0; x < 32; ++x) {
          f[(ch * kPooled + y / 4) * kPooled + x / 4] += image[(ch * 32 + y) * 32 + x] / 16.0;
        }
      }
    }
    return f;
  };

  const int classes = options.num_classes;
  const ds::CifarSplit train = make_split(options, Split::kTrain);
  std::vector<Features> means(static_cast<std::size_t>(classes), Features{});
  std::vector<int> counts(static_cast<std::size_t>(classes));
  for (std::size_t i = 0; i < train.size(); ++i) {
    const Features f = features(train.image(i));
    for (int k = 0; k < kFeatures; ++k) means[train.fine_label(i)][k] += f[k];
    ++counts[train.fine_label(i)];
  }
  for (int c = 0; c < classes; ++c) {
    EXPECT_GT(counts[c], 0) << "class " << c << " missing from train";
    for (double& m : means[c]) m /= std::max(1, counts[c]);
  }

  const ds::CifarSplit test = make_split(options, Split::kTest);
  int correct = 0;
  for (std::size_t i = 0; i < test.size(); ++i) {
    const Features f = features(test.image(i));
    int best = -1;
    double best_distance = 0;
    for (int c = 0; c < classes; ++c) {
      double distance = 0;
      for (int k = 0; k < kFeatures; ++k) distance += (f[k] - means[c][k]) * (f[k] - means[c][k]);
      if (best < 0 || distance < best_distance) {
        best = c;
        best_distance = distance;
      }
    }
    correct += best == test.fine_label(i) ? 1 : 0;
  }
  return static_cast<double>(correct) / static_cast<double>(test.size());
}

// Learnable but not trivial. The class is in the pixels, so even a template
// match on raw pixels beats chance; but the jitter, backgrounds, distractors
// and noise keep it far from perfect. (A small 3-conv CNN reaches ~45-50% on
// the small preset with 100 classes after 30 epochs and ~70% on the large one
// after 6, so the data is learnable well beyond what this check shows.)
//
// Measured, small preset, seeds 0..4: 100 classes 3.6%-5.2% (chance 1%; seed 0,
// used here, gives 3.6%); 10 classes 22.6%-23.9% (chance 10%). For scale, the
// generator with a plain grey background and no distractors scores 10.4% and
// 40.7%, and images that ignore the label score 0.4% and 10.7%: both fail.
// The output for seed 0 is fixed, so these bounds only move when the
// generator is retuned; keep them between those two regimes.
TEST(SyntheticCifarLearnability, NearestClassMeanBeatsChanceButIsFarFromPerfect100Classes) {
  SyntheticOptions options;  // small preset: 5,000 train / 1,000 test
  options.seed = 0;
  const double accuracy = nearest_class_mean_accuracy(options);
  RecordProperty("nearest_class_mean_accuracy", std::to_string(accuracy));
  EXPECT_GT(accuracy, 0.02) << "100 classes: chance is 0.01";
  EXPECT_LT(accuracy, 0.08) << "100 classes: nearly as easy as a plain background";
}

TEST(SyntheticCifarLearnability, NearestClassMeanBeatsChanceButIsFarFromPerfect10Classes) {
  SyntheticOptions options;
  options.seed = 0;
  options.num_classes = 10;
  const double accuracy = nearest_class_mean_accuracy(options);
  RecordProperty("nearest_class_mean_accuracy", std::to_string(accuracy));
  EXPECT_GT(accuracy, 0.15) << "10 classes: chance is 0.10";
  EXPECT_LT(accuracy, 0.35) << "10 classes: nearly as easy as a plain background";
}

}  // namespace
}  // namespace xfer::tools::synthetic
