// Helpers shared by the metrics store tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>

#include "coordinator/metrics/metrics_types.h"

namespace xfer::coordinator::metrics::testing {

// A report whose counts follow from (rank, step), so tests can compute the
// expected sums in closed form.
inline RankReport make_report(int rank, std::int64_t step, int world_size = 2,
                              std::int64_t epoch = 0, SplitKind split = SplitKind::kTrain,
                              bool end = false, const std::string& phase = "head") {
  RankReport r;
  r.run = "run-1";
  r.rank = rank;
  r.world_size = world_size;
  r.phase = phase;
  r.epoch = epoch;
  r.step = step;
  r.split = split;
  r.samples = 8;
  r.correct_top1 = (rank + step) % 5;
  r.correct_top3 = r.correct_top1 + 2;
  // Not exactly representable sums on purpose: exactness must come from the
  // summation order, not from lucky values.
  r.loss_sum = 0.1 * static_cast<double>(rank + 1) + 0.01 * static_cast<double>(step);
  r.images_per_second = 100.0 + rank;
  r.data_wait_ms = 1.5;
  r.comm_ms = 2.5;
  r.learning_rate = 1e-3 / (1.0 + 1e-6 * static_cast<double>(step));
  r.end_of_epoch = end;
  return r;
}

// A fresh directory under the system temp dir, removed at destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device device;
    path_ = std::filesystem::temp_directory_path() /
            ("xfer-metrics-test-" + std::to_string(device()) + "-" + std::to_string(device()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace xfer::coordinator::metrics::testing
