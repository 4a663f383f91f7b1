// Helpers shared by the models tests: temp dirs and the torchvision reference
// generator (tests/models/make_reference.py run by Debian's /usr/bin/python3).
#pragma once

#include <gtest/gtest.h>
#include <torch/types.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "trainer/models/state_dict.h"

namespace xfer::trainer::models::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "xfer_models_test_XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Runs make_reference.py; fails the test (returns false) when it fails.
inline bool make_reference(const std::string& arch, const TempDir& dir,
                           const std::string& extra_args = "") {
  const std::string command = std::string("/usr/bin/python3 ") + XFER_MODELS_REFERENCE_SCRIPT +
                              " --arch " + arch + " --out " + dir.file("") + " " + extra_args;
  const int rc = std::system(command.c_str());
  EXPECT_EQ(rc, 0) << "reference generator failed: " << command;
  return rc == 0;
}

// max |a - b| / max |b|.
inline double relative_error(const torch::Tensor& actual, const torch::Tensor& reference) {
  return (actual - reference).abs().max().item<double>() / reference.abs().max().item<double>();
}

}  // namespace xfer::trainer::models::testing
