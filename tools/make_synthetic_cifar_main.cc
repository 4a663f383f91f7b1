// make-synthetic-cifar: writes a learnable synthetic dataset in the CIFAR-100
// binary layout (see tools/synthetic/synthetic_cifar.h), the default data of
// the demo and the tests.
//
//   make-synthetic-cifar --out DIR [--size small|large] [--train N] [--test N]
//                        [--classes C] [--seed S] [--threads T] [--config FILE]
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "common/flags.h"
#include "common/logging.h"
#include "coordinator/dataset/cifar_format.h"
#include "tools/synthetic/synthetic_cifar.h"

namespace synthetic = xfer::tools::synthetic;

namespace {

// A whole decimal uint64. CLI11's own conversion wraps "-1" to 2^64-1 and
// saturates values past 2^64-1; a seed must be exactly what was typed.
const CLI::Validator kUint64(
    [](std::string& text) -> std::string {
      std::uint64_t value = 0;
      const char* end = text.data() + text.size();
      const auto [stop, error] = std::from_chars(text.data(), end, value);
      if (text.empty() || error != std::errc() || stop != end) {
        return "'" + text + "' is not an integer in 0.." +
               std::to_string(std::numeric_limits<std::uint64_t>::max());
      }
      return "";
    },
    /*validator_desc=*/"", /*validator_name=*/"uint64");

}  // namespace

int main(int argc, char** argv) {
  synthetic::SyntheticOptions options;
  std::string out_dir;
  std::string size = synthetic::to_string(options.size);
  std::int64_t train_count = 0;
  std::int64_t test_count = 0;
  std::string log_level = "info";

  CLI::App app{"Write a learnable synthetic dataset in the CIFAR-100 binary layout"};
  xfer::common::add_config_flag(app);
  app.add_option("--out", out_dir, "Output directory (created if missing)")->required();
  app.add_option("--size", size, "Size preset: small (5,000/1,000) or large (50,000/10,000)")
      ->check(CLI::IsMember({"small", "large"}))
      ->capture_default_str();
  // Range checks are left to synthetic::validate, whose messages name the flag.
  CLI::Option* train_flag =
      app.add_option("--train", train_count, "Train records (overrides --size)");
  CLI::Option* test_flag = app.add_option("--test", test_count, "Test records (overrides --size)");
  app.add_option("--classes", options.num_classes, "Fine classes used, 1..100")
      ->capture_default_str();
  app.add_option("--seed", options.seed, "Random seed (same seed, same bytes)")
      ->check(kUint64)
      ->capture_default_str();
  app.add_option("--threads", options.num_threads,
                 "Rendering threads, 0: one per core (does not change the output)")
      ->capture_default_str();
  xfer::common::add_log_level_flag(app, log_level);
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;
  xfer::common::init_logging({"synthetic", std::nullopt, log_level});

  try {
    options.size = synthetic::parse_size_preset(size);
    if (train_flag->count() > 0) options.train_count = train_count;
    if (test_flag->count() > 0) options.test_count = test_count;
    const auto start = std::chrono::steady_clock::now();
    const synthetic::WriteSummary summary = synthetic::write_synthetic_cifar(options, out_dir);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info(
        "wrote synthetic CIFAR-100 to {}: {} train + {} test records, {} classes, "
        "seed {}, {:.1f} MB in {:.2f} s",
        summary.dir.string(), summary.train_count, summary.test_count, options.num_classes,
        options.seed, summary.bytes_written / 1e6, seconds);
  } catch (const std::invalid_argument& e) {
    spdlog::error("{}", e.what());
    return 2;
  } catch (const std::exception& e) {  // output directory or file I/O; names the path
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
