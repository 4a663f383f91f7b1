#include "coordinator/dataset/cifar_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace xfer::coordinator::dataset {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A fresh directory per test, removed afterwards.
class CifarFormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() / ("xfer_cifar_format_test_" + std::to_string(::getpid()) +
                                        "_" + std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::vector<std::string> names(const std::string& prefix, int count) {
    std::vector<std::string> result;
    for (int i = 0; i < count; ++i) result.push_back(prefix + std::to_string(i));
    return result;
  }

  // Record i: fine label i % 100, coarse label fine / 5, pixels derived from i.
  static CifarRecord record(int i) {
    CifarRecord r;
    r.fine_label = static_cast<std::uint8_t>(i % kNumFineLabels);
    r.coarse_label = static_cast<std::uint8_t>(r.fine_label / 5);
    r.image.resize(kImageBytes);
    for (std::size_t p = 0; p < kImageBytes; ++p) r.image[p] = static_cast<std::uint8_t>(i * 7 + p);
    return r;
  }

  static std::vector<std::uint8_t> bytes_of(int count, int first = 0) {
    std::vector<std::uint8_t> bytes;
    for (int i = first; i < first + count; ++i) append_record(record(i), bytes);
    return bytes;
  }

  void write_valid_dataset(int train = 30, int test = 10) {
    write_file_atomically(dir_ / kTrainFile, bytes_of(train));
    write_file_atomically(dir_ / kTestFile, bytes_of(test, 1000));
    write_label_names(dir_ / kFineNamesFile, names("fine", kNumFineLabels));
    write_label_names(dir_ / kCoarseNamesFile, names("coarse", kNumCoarseLabels));
  }

  static void write_raw(const fs::path& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }

  // Runs `fn`, expects a FormatError, returns its message.
  template <typename Fn>
  static std::string error_of(Fn fn) {
    try {
      fn();
    } catch (const FormatError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected a FormatError";
    return "";
  }

  fs::path dir_;
};

TEST_F(CifarFormatTest, RoundTripsRecordsAndNames) {
  write_valid_dataset(30, 10);
  const CifarDataset dataset = load_cifar100(dir_);
  ASSERT_EQ(dataset.split("train").size(), 30u);
  ASSERT_EQ(dataset.split("test").size(), 10u);
  EXPECT_EQ(dataset.fine_label_names.size(), 100u);
  EXPECT_EQ(dataset.fine_label_names[42], "fine42");
  EXPECT_EQ(dataset.coarse_label_names.size(), 20u);
  EXPECT_EQ((dataset.split_sizes()),
            (std::map<std::string, std::int64_t>{{"test", 10}, {"train", 30}}));
  for (int i = 0; i < 30; ++i) {
    const CifarRecord expected = record(i);
    const CifarSplit& train = dataset.split("train");
    EXPECT_EQ(train.fine_label(i), expected.fine_label);
    EXPECT_EQ(train.coarse_label(i), expected.coarse_label);
    EXPECT_TRUE(std::equal(expected.image.begin(), expected.image.end(), train.image(i))) << i;
  }
  EXPECT_EQ(dataset.split("test").fine_label(0), record(1000).fine_label);
}

TEST_F(CifarFormatTest, TruncatedRecordNamesFileRecordAndSizes) {
  auto bytes = bytes_of(3);
  bytes.resize(bytes.size() - 100);  // record 2 loses its last 100 bytes
  write_file_atomically(dir_ / kTrainFile, bytes);
  const std::string message = error_of([&] { read_cifar_file(dir_ / kTrainFile); });
  EXPECT_THAT(message, HasSubstr((dir_ / kTrainFile).string()));
  EXPECT_THAT(message, HasSubstr("truncated: size 9122 bytes is not a multiple of 3074"));
  EXPECT_THAT(message, HasSubstr("record 2 has 2974 bytes (expected 3074)"));
}

TEST_F(CifarFormatTest, FileShorterThanOneRecordIsTruncated) {
  write_raw(dir_ / kTestFile, "\x01\x02");
  EXPECT_THAT(error_of([&] { read_cifar_file(dir_ / kTestFile); }),
              HasSubstr("record 0 has 2 bytes (expected 3074)"));
}

TEST_F(CifarFormatTest, EmptyFileIsRejected) {
  write_raw(dir_ / kTrainFile, "");
  const std::string message = error_of([&] { read_cifar_file(dir_ / kTrainFile); });
  EXPECT_THAT(message, HasSubstr((dir_ / kTrainFile).string() + ": empty file"));
  EXPECT_THAT(message, HasSubstr("expected a positive multiple of 3074 bytes"));
}

TEST_F(CifarFormatTest, FineLabelOf100IsOutOfRange) {
  std::vector<std::uint8_t> bytes = bytes_of(5);
  bytes[3 * kRecordBytes + 1] = 100;  // record 3's fine label
  write_file_atomically(dir_ / kTrainFile, bytes);
  const std::string message = error_of([&] { read_cifar_file(dir_ / kTrainFile); });
  EXPECT_THAT(message, HasSubstr((dir_ / kTrainFile).string() +
                                 ": record 3: fine label 100 out of range (expected 0..99)"));
}

TEST_F(CifarFormatTest, FineLabel255IsOutOfRange) {
  std::vector<std::uint8_t> bytes = bytes_of(2);
  bytes[kRecordBytes + 1] = 255;
  write_file_atomically(dir_ / kTrainFile, bytes);
  EXPECT_THAT(error_of([&] { read_cifar_file(dir_ / kTrainFile); }),
              HasSubstr("record 1: fine label 255 out of range (expected 0..99)"));
}

TEST_F(CifarFormatTest, CoarseLabelOf20IsOutOfRange) {
  std::vector<std::uint8_t> bytes = bytes_of(4);
  bytes[2 * kRecordBytes] = 20;
  write_file_atomically(dir_ / kTestFile, bytes);
  EXPECT_THAT(error_of([&] { read_cifar_file(dir_ / kTestFile); }),
              HasSubstr("record 2: coarse label 20 out of range (expected 0..19)"));
}

TEST_F(CifarFormatTest, MissingFileIsNamed) {
  EXPECT_THAT(error_of([&] { read_cifar_file(dir_ / "nope.bin"); }),
              HasSubstr((dir_ / "nope.bin").string() + ": file not found"));
}

TEST_F(CifarFormatTest, DirectoryInPlaceOfFileIsRejected) {
  fs::create_directories(dir_ / kTrainFile);
  EXPECT_THAT(error_of([&] { read_cifar_file(dir_ / kTrainFile); }),
              HasSubstr("not a regular file"));
}

TEST_F(CifarFormatTest, NameFileWithWrongLineCount) {
  write_label_names(dir_ / kFineNamesFile, names("fine", 99));
  EXPECT_THAT(error_of([&] { read_label_names(dir_ / kFineNamesFile, 100); }),
              HasSubstr((dir_ / kFineNamesFile).string() +
                        ": has 99 label names (expected 100, one per line)"));
  write_label_names(dir_ / kCoarseNamesFile, names("coarse", 21));
  EXPECT_THAT(error_of([&] { read_label_names(dir_ / kCoarseNamesFile, 20); }),
              HasSubstr("has 21 label names (expected 20, one per line)"));
}

TEST_F(CifarFormatTest, NameFileAcceptsTrailingBlankLinesAndCrlf) {
  std::string text;
  for (int i = 0; i < 20; ++i) text += "coarse" + std::to_string(i) + "\r\n";
  write_raw(dir_ / kCoarseNamesFile, text + "\n\n");
  const auto loaded = read_label_names(dir_ / kCoarseNamesFile, 20);
  ASSERT_EQ(loaded.size(), 20u);
  EXPECT_EQ(loaded[19], "coarse19");
}

TEST_F(CifarFormatTest, NameFileWithBlankLineInsideIsRejected) {
  std::string text;
  for (int i = 0; i < 20; ++i)
    text += (i == 7 ? "\n" : "") + std::string("c") + std::to_string(i) + "\n";
  write_raw(dir_ / kCoarseNamesFile, text);
  EXPECT_THAT(error_of([&] { read_label_names(dir_ / kCoarseNamesFile, 20); }),
              HasSubstr("line 8 is blank"));
}

TEST_F(CifarFormatTest, EmptyNameFileIsRejected) {
  write_raw(dir_ / kFineNamesFile, "");
  EXPECT_THAT(error_of([&] { read_label_names(dir_ / kFineNamesFile, 100); }),
              HasSubstr("has 0 label names (expected 100"));
}

TEST_F(CifarFormatTest, LoadReportsMissingNameFile) {
  write_valid_dataset();
  fs::remove(dir_ / kCoarseNamesFile);
  EXPECT_THAT(error_of([&] { load_cifar100(dir_); }),
              HasSubstr((dir_ / kCoarseNamesFile).string() + ": file not found"));
}

TEST_F(CifarFormatTest, LoadReportsMissingTestFile) {
  write_valid_dataset();
  fs::remove(dir_ / kTestFile);
  EXPECT_THAT(error_of([&] { load_cifar100(dir_); }),
              HasSubstr((dir_ / kTestFile).string() + ": file not found"));
}

TEST_F(CifarFormatTest, LoadRejectsMissingDirectory) {
  EXPECT_THAT(error_of([&] { load_cifar100(dir_ / "absent"); }), HasSubstr("not a directory"));
}

TEST_F(CifarFormatTest, LoadRejectsFineLabelWithTwoCoarseLabels) {
  write_valid_dataset(30, 10);
  std::vector<std::uint8_t> bytes = bytes_of(10, 1000);
  bytes[4 * kRecordBytes] = static_cast<std::uint8_t>((bytes[4 * kRecordBytes] + 1) % 20);
  write_file_atomically(dir_ / kTestFile, bytes);
  const std::string message = error_of([&] { load_cifar100(dir_); });
  EXPECT_THAT(message, HasSubstr((dir_ / kTestFile).string() + ": record 4: fine label"));
  EXPECT_THAT(message, HasSubstr("has coarse label"));
}

TEST_F(CifarFormatTest, AtomicWriteLeavesNoTemporaryFile) {
  write_file_atomically(dir_ / "a.bin", bytes_of(2));
  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(dir_)) entries.push_back(entry.path().filename());
  EXPECT_EQ(entries, std::vector<std::string>{"a.bin"});
}

TEST_F(CifarFormatTest, WriteIntoMissingDirectoryFailsWithPath) {
  EXPECT_THAT(error_of([&] { write_file_atomically(dir_ / "no" / "a.bin", bytes_of(1)); }),
              HasSubstr("cannot create"));
}

TEST(CifarRecordTest, AppendRejectsWrongImageSize) {
  CifarRecord r;
  r.image.resize(10);
  std::vector<std::uint8_t> out;
  EXPECT_THROW(append_record(r, out), std::invalid_argument);
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace xfer::coordinator::dataset
