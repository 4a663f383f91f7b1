// Helpers for tests that write files: a temporary folder, and reading and
// writing bytes behind the back of the code under test (with the standard
// library, not through common's Filesystem). Used by the filesystem tests
// and by the crash tests of the checkpoint store and the metrics history.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace xfer::testing {

// A fresh folder under the system temp dir, removed at destruction.
class TempDir {
 public:
  // `prefix` names the test in the folder's name, for whoever finds one left.
  explicit TempDir(const std::string& prefix = "xfer-test") {
    std::random_device device;
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "-" + std::to_string(device()) + "-" + std::to_string(device()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// The file names in `dir`, sorted.
inline std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace xfer::testing
