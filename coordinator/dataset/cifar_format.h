// The CIFAR-100 binary format: reading, validating and writing.
//
// A dataset directory holds
//   train.bin, test.bin          records of kRecordBytes bytes each:
//                                  1 coarse label byte  (< kNumCoarseLabels)
//                                  1 fine label byte    (< kNumFineLabels)
//                                  1024 R, 1024 G, 1024 B bytes (32x32, row-major)
//   fine_label_names.txt         kNumFineLabels names, one per line
//   coarse_label_names.txt       kNumCoarseLabels names, one per line
//
// The reader loads everything into memory and validates it before returning:
// a dataset that loads is complete and every label is in range. Every error
// is a FormatError whose message names the file, the record index (when there
// is one), the bad value and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace xfer::coordinator::dataset {

inline constexpr int kImageSide = 32;
inline constexpr int kImageChannels = 3;
inline constexpr std::size_t kImageBytes = kImageSide * kImageSide * kImageChannels;  // 3072
inline constexpr std::size_t kLabelBytes = 2;                           // coarse, fine
inline constexpr std::size_t kRecordBytes = kLabelBytes + kImageBytes;  // 3074
inline constexpr int kNumFineLabels = 100;
inline constexpr int kNumCoarseLabels = 20;

inline constexpr const char* kTrainFile = "train.bin";
inline constexpr const char* kTestFile = "test.bin";
inline constexpr const char* kFineNamesFile = "fine_label_names.txt";
inline constexpr const char* kCoarseNamesFile = "coarse_label_names.txt";

// Thrown for any malformed, missing or unreadable dataset file.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One split (train or test) held in memory, in file order.
class CifarSplit {
 public:
  CifarSplit() = default;
  CifarSplit(std::vector<std::uint8_t> coarse_labels, std::vector<std::uint8_t> fine_labels,
             std::vector<std::uint8_t> images);

  std::size_t size() const { return fine_labels_.size(); }
  std::uint8_t coarse_label(std::size_t i) const { return coarse_labels_.at(i); }
  std::uint8_t fine_label(std::size_t i) const { return fine_labels_.at(i); }
  // The kImageBytes planar RGB bytes of record i (CHW order, as in the file).
  const std::uint8_t* image(std::size_t i) const;

  const std::vector<std::uint8_t>& coarse_labels() const { return coarse_labels_; }
  const std::vector<std::uint8_t>& fine_labels() const { return fine_labels_; }
  const std::vector<std::uint8_t>& images() const { return images_; }

 private:
  std::vector<std::uint8_t> coarse_labels_;
  std::vector<std::uint8_t> fine_labels_;
  std::vector<std::uint8_t> images_;  // size() * kImageBytes
};

// A whole dataset directory, loaded and validated.
struct CifarDataset {
  std::filesystem::path dir;
  std::vector<std::string> fine_label_names;    // kNumFineLabels entries
  std::vector<std::string> coarse_label_names;  // kNumCoarseLabels entries
  std::map<std::string, CifarSplit> splits;     // "train", "test"

  // Number of records per split name, as split specs need them.
  std::map<std::string, std::int64_t> split_sizes() const;
  // The split called `name`; throws FormatError listing the known splits.
  const CifarSplit& split(const std::string& name) const;
};

// Reads one .bin file and validates its size and label ranges.
CifarSplit read_cifar_file(const std::filesystem::path& path);

// Reads a label-name file: exactly `expected_count` non-empty lines. Trailing
// blank lines and '\r' line endings are accepted (the published files end with
// blank lines); a blank line before the last name is an error.
std::vector<std::string> read_label_names(const std::filesystem::path& path,
                                          std::size_t expected_count);

// Loads and validates every file of a dataset directory. Beyond each file's own
// checks, every fine label must map to a single coarse label across both
// splits, as it does in CIFAR-100.
CifarDataset load_cifar100(const std::filesystem::path& dir);

// One record to write. `image` holds kImageBytes planar RGB bytes.
struct CifarRecord {
  std::uint8_t coarse_label = 0;
  std::uint8_t fine_label = 0;
  std::vector<std::uint8_t> image;
};

// Serialises one record into `out` (appends kRecordBytes bytes). Labels are
// written as given, so tests can produce out-of-range files on purpose.
void append_record(const CifarRecord& record, std::vector<std::uint8_t>& out);

// Writes `bytes` to `path` atomically (temporary file, then rename), so a
// reader never sees a half-written dataset file. Throws FormatError on I/O
// failure, naming the path and the OS error.
void write_file_atomically(const std::filesystem::path& path,
                           const std::vector<std::uint8_t>& bytes);

// Writes a label-name file, one name per line.
void write_label_names(const std::filesystem::path& path, const std::vector<std::string>& names);

}  // namespace xfer::coordinator::dataset
