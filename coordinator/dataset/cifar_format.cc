#include "coordinator/dataset/cifar_format.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

namespace xfer::coordinator::dataset {
namespace {

namespace fs = std::filesystem;

std::string os_error(int err) { return std::generic_category().message(err); }

std::vector<std::uint8_t> read_whole_file(const fs::path& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) {
    throw FormatError(path.string() + ": file not found");
  }
  if (!fs::is_regular_file(status)) {
    throw FormatError(path.string() + ": not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw FormatError(path.string() + ": cannot open: " + os_error(errno));
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw FormatError(path.string() + ": read failed after " + std::to_string(in.gcount()) +
                      " of " + std::to_string(size) + " bytes");
  }
  return bytes;
}

}  // namespace

CifarSplit::CifarSplit(std::vector<std::uint8_t> coarse_labels,
                       std::vector<std::uint8_t> fine_labels, std::vector<std::uint8_t> images)
    : coarse_labels_(std::move(coarse_labels)),
      fine_labels_(std::move(fine_labels)),
      images_(std::move(images)) {
  if (coarse_labels_.size() != fine_labels_.size() ||
      images_.size() != fine_labels_.size() * kImageBytes) {
    throw std::invalid_argument("CifarSplit: " + std::to_string(coarse_labels_.size()) +
                                " coarse labels, " + std::to_string(fine_labels_.size()) +
                                " fine labels and " + std::to_string(images_.size()) +
                                " image bytes do not describe the same number of records");
  }
}

const std::uint8_t* CifarSplit::image(std::size_t i) const {
  if (i >= size()) {
    throw std::out_of_range("CifarSplit::image: record " + std::to_string(i) +
                            " out of range, split has " + std::to_string(size()) + " records");
  }
  return images_.data() + i * kImageBytes;
}

std::map<std::string, std::int64_t> CifarDataset::split_sizes() const {
  std::map<std::string, std::int64_t> sizes;
  for (const auto& [name, split] : splits) sizes[name] = static_cast<std::int64_t>(split.size());
  return sizes;
}

const CifarSplit& CifarDataset::split(const std::string& name) const {
  auto it = splits.find(name);
  if (it == splits.end()) {
    std::string known;
    for (const auto& [split_name, unused] : splits) {
      known += (known.empty() ? "" : ", ") + split_name;
    }
    throw FormatError(dir.string() + ": no split '" + name + "' (expected one of: " + known + ")");
  }
  return it->second;
}

CifarSplit read_cifar_file(const fs::path& path) {
  const std::vector<std::uint8_t> bytes = read_whole_file(path);
  if (bytes.empty()) {
    throw FormatError(path.string() + ": empty file (expected a positive multiple of " +
                      std::to_string(kRecordBytes) + " bytes, one " + std::to_string(kRecordBytes) +
                      "-byte record per image)");
  }
  if (bytes.size() % kRecordBytes != 0) {
    const std::size_t full = bytes.size() / kRecordBytes;
    throw FormatError(path.string() + ": truncated: size " + std::to_string(bytes.size()) +
                      " bytes is not a multiple of " + std::to_string(kRecordBytes) + "; record " +
                      std::to_string(full) + " has " + std::to_string(bytes.size() % kRecordBytes) +
                      " bytes (expected " + std::to_string(kRecordBytes) + ")");
  }
  const std::size_t count = bytes.size() / kRecordBytes;
  std::vector<std::uint8_t> coarse(count), fine(count), images(count * kImageBytes);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint8_t* record = bytes.data() + i * kRecordBytes;
    if (record[0] >= kNumCoarseLabels) {
      throw FormatError(path.string() + ": record " + std::to_string(i) + ": coarse label " +
                        std::to_string(record[0]) + " out of range (expected 0.." +
                        std::to_string(kNumCoarseLabels - 1) + ")");
    }
    if (record[1] >= kNumFineLabels) {
      throw FormatError(path.string() + ": record " + std::to_string(i) + ": fine label " +
                        std::to_string(record[1]) + " out of range (expected 0.." +
                        std::to_string(kNumFineLabels - 1) + ")");
    }
    coarse[i] = record[0];
    fine[i] = record[1];
    std::memcpy(images.data() + i * kImageBytes, record + kLabelBytes, kImageBytes);
  }
  return CifarSplit(std::move(coarse), std::move(fine), std::move(images));
}

std::vector<std::string> read_label_names(const fs::path& path, std::size_t expected_count) {
  const std::vector<std::uint8_t> bytes = read_whole_file(path);
  std::vector<std::string> lines;
  std::string line;
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  while (!lines.empty() && lines.back().find_first_not_of(" \t") == std::string::npos) {
    lines.pop_back();
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find_first_not_of(" \t") == std::string::npos) {
      throw FormatError(path.string() + ": line " + std::to_string(i + 1) +
                        " is blank (expected one label name per line, " +
                        std::to_string(expected_count) + " lines)");
    }
  }
  if (lines.size() != expected_count) {
    throw FormatError(path.string() + ": has " + std::to_string(lines.size()) +
                      " label names (expected " + std::to_string(expected_count) +
                      ", one per line)");
  }
  return lines;
}

CifarDataset load_cifar100(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw FormatError(dir.string() +
                      ": not a directory (expected a CIFAR-100 dataset directory "
                      "with train.bin, test.bin, fine_label_names.txt and "
                      "coarse_label_names.txt)");
  }
  CifarDataset dataset;
  dataset.dir = dir;
  dataset.fine_label_names = read_label_names(dir / kFineNamesFile, kNumFineLabels);
  dataset.coarse_label_names = read_label_names(dir / kCoarseNamesFile, kNumCoarseLabels);
  dataset.splits["train"] = read_cifar_file(dir / kTrainFile);
  dataset.splits["test"] = read_cifar_file(dir / kTestFile);

  // Each fine label belongs to exactly one coarse label. A violation usually
  // means the two label bytes were swapped or the file is from another format.
  struct FirstSeen {
    int coarse = -1;
    std::string where;
  };
  std::vector<FirstSeen> seen(kNumFineLabels);
  for (const char* name : {"train", "test"}) {  // file order: train first
    const CifarSplit& split = dataset.splits.at(name);
    const std::string file = (dir / (std::string(name) + ".bin")).string();
    for (std::size_t i = 0; i < split.size(); ++i) {
      FirstSeen& first = seen[split.fine_label(i)];
      const int coarse = split.coarse_label(i);
      if (first.coarse < 0) {
        first.coarse = coarse;
        first.where = file + " record " + std::to_string(i);
      } else if (first.coarse != coarse) {
        throw FormatError(file + ": record " + std::to_string(i) + ": fine label " +
                          std::to_string(split.fine_label(i)) + " has coarse label " +
                          std::to_string(coarse) + " (expected " + std::to_string(first.coarse) +
                          ", as at " + first.where + ")");
      }
    }
  }
  return dataset;
}

void append_record(const CifarRecord& record, std::vector<std::uint8_t>& out) {
  if (record.image.size() != kImageBytes) {
    throw std::invalid_argument("append_record: image has " + std::to_string(record.image.size()) +
                                " bytes (expected " + std::to_string(kImageBytes) + ")");
  }
  out.push_back(record.coarse_label);
  out.push_back(record.fine_label);
  out.insert(out.end(), record.image.begin(), record.image.end());
}

void write_file_atomically(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw FormatError(tmp.string() + ": cannot create: " + os_error(errno));
  }
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw FormatError(tmp.string() + ": write failed after " + std::to_string(written) +
                        " bytes: " + os_error(err));
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw FormatError(tmp.string() + ": fsync/close failed: " + os_error(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw FormatError(path.string() + ": rename from " + tmp.string() +
                      " failed: " + os_error(err));
  }
}

void write_label_names(const fs::path& path, const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += name + "\n";
  write_file_atomically(path, std::vector<std::uint8_t>(text.begin(), text.end()));
}

}  // namespace xfer::coordinator::dataset
