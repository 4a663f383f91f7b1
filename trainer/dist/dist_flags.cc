#include "trainer/dist/dist_flags.h"

#include <chrono>
#include <cmath>

namespace xfer::trainer::dist {

void add_dist_flags(CLI::App& app, DistOptions& options) {
  app.add_option("--device", options.device.device,
                 "auto (cuda:<local rank> when CUDA is available, else CPU), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--threads", options.device.cpu_threads,
                 "CPU threads per rank; 0 = the launcher's binding or cores / ranks per host")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--bucket-mb", options.reducer.bucket_mb,
                 "gradient bucket size in MiB (all-reduced as soon as full)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--overlap,!--no-overlap", options.reducer.overlap,
               "all-reduce buckets while backward runs (default on)");
  app.add_option_function<double>(
         "--collective-timeout",
         [&options](double seconds) {
           const auto ms = std::chrono::milliseconds(std::llround(seconds * 1000.0));
           options.comm.timeout = ms;
           options.reducer.timeout = ms;
         },
         "seconds any collective may take before the job is ended with an error (default 600)")
      ->check(CLI::PositiveNumber);
  app.add_option("--check-sync-every", options.check_sync_every,
                 "compare parameter checksums across ranks every N steps (0 = never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

}  // namespace xfer::trainer::dist
