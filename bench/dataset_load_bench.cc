// How fast the coordinator loads and validates a CIFAR-100 directory: the
// start-up cost of a coordinator (and of every restart). Prints one line per
// run and the median.
//
//   build/bin/make-synthetic-cifar --out /tmp/cifar-large --size large
//   build/bin/dataset_load_bench /tmp/cifar-large [runs]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "coordinator/dataset/cifar_format.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATASET_DIR [RUNS]\n", argv[0]);
    return 2;
  }
  const int runs = argc > 2 ? std::atoi(argv[2]) : 5;
  if (runs < 1) {
    std::fprintf(stderr, "RUNS must be a positive integer, got '%s'\n", argv[2]);
    return 2;
  }
  namespace ds = xfer::coordinator::dataset;
  std::vector<double> seconds;
  std::size_t records = 0;
  for (int run = 0; run < runs; ++run) {
    const auto start = std::chrono::steady_clock::now();
    try {
      const ds::CifarDataset dataset = ds::load_cifar100(argv[1]);
      records = dataset.split("train").size() + dataset.split("test").size();
    } catch (const ds::FormatError& e) {
      std::fprintf(stderr, "%s\n", e.what());
      return 1;
    }
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    std::printf("run %d: %zu records in %.3f s\n", run, records, seconds.back());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const double megabytes = static_cast<double>(records * ds::kRecordBytes) / 1e6;
  std::printf("load_cifar100: median %.3f s for %zu records (%.0f MB/s, %.0f records/s)\n", median,
              records, megabytes / median, static_cast<double>(records) / median);
  return 0;
}
