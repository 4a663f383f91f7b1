// inspect-dataset: loads a CIFAR-100 directory with the coordinator's reader
// (so every validation the coordinator makes runs here too), then shows what
// the given split specs select and how even_splits would cut them.
//
//   inspect-dataset --data DIR [--split SPEC]... [--parts N]
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/flags.h"
#include "common/logging.h"
#include "coordinator/dataset/cifar_format.h"
#include "coordinator/dataset/split_spec.h"

namespace {

namespace ds = xfer::coordinator::dataset;

struct Options {
  std::string data_dir;
  // Default: the transfer recipe's train, validation and test splits.
  std::vector<std::string> specs = {"train[20%:]", "train[:20%]", "test"};
  // Default: 0 (do not show even splits).
  int parts = 0;
  std::string log_level = "info";
};

// Per-class record counts of one resolved selection.
std::vector<std::int64_t> class_counts(const ds::CifarDataset& dataset,
                                       const ds::ResolvedSplit& split) {
  std::vector<std::int64_t> counts(ds::kNumFineLabels, 0);
  for (const auto& range : split.ranges) {
    const ds::CifarSplit& records = dataset.split(range.split);
    for (std::int64_t i = range.begin; i < range.end; ++i) {
      ++counts[records.fine_label(static_cast<std::size_t>(i))];
    }
  }
  return counts;
}

void print_selection(const ds::CifarDataset& dataset, const ds::ResolvedSplit& split,
                     const std::string& label) {
  const auto counts = class_counts(dataset, split);
  std::int64_t present = 0, lo = -1, hi = 0;
  for (std::int64_t c : counts) {
    if (c == 0) continue;
    ++present;
    lo = lo < 0 ? c : std::min(lo, c);
    hi = std::max(hi, c);
  }
  std::printf("  %-22s %7lld records  %-34s classes %lld, per class %lld..%lld\n", label.c_str(),
              static_cast<long long>(split.size()), split.to_absolute_spec().c_str(),
              static_cast<long long>(present),
              static_cast<long long>(std::max<std::int64_t>(lo, 0)), static_cast<long long>(hi));
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"Validate a CIFAR-100 binary dataset directory and show what split specs select"};
  xfer::common::add_config_flag(app);
  app.add_option("--data", options.data_dir, "Dataset directory (train.bin, test.bin, name files)")
      ->required();
  app.add_option("--split", options.specs, "Split spec to resolve (repeatable, TFDS syntax)")
      ->capture_default_str();
  app.add_option("--parts", options.parts, "Also show the spec cut into N even parts (0: don't)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  xfer::common::add_log_level_flag(app, options.log_level);
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;
  xfer::common::init_logging({"inspect", std::nullopt, options.log_level});

  try {
    const ds::CifarDataset dataset = ds::load_cifar100(options.data_dir);
    spdlog::info("{}: valid CIFAR-100 dataset: train {} records, test {} records", options.data_dir,
                 dataset.split("train").size(), dataset.split("test").size());
    std::printf("dataset %s\n", options.data_dir.c_str());
    std::printf("  fine labels:   %s, %s, ... %s\n", dataset.fine_label_names[0].c_str(),
                dataset.fine_label_names[1].c_str(), dataset.fine_label_names.back().c_str());
    std::printf("  coarse labels: %s, %s, ... %s\n", dataset.coarse_label_names[0].c_str(),
                dataset.coarse_label_names[1].c_str(), dataset.coarse_label_names.back().c_str());
    const auto sizes = dataset.split_sizes();
    for (const auto& spec : options.specs) {
      const ds::ResolvedSplit split = ds::resolve_split(spec, sizes);
      std::printf("split %s\n", spec.c_str());
      print_selection(dataset, split, "selects");
      if (options.parts > 0) {
        const auto parts = ds::even_splits(split, options.parts);
        for (std::size_t i = 0; i < parts.size(); ++i) {
          print_selection(dataset, parts[i],
                          "part " + std::to_string(i) + "/" + std::to_string(options.parts));
        }
      }
    }
  } catch (const ds::FormatError& e) {
    spdlog::error("dataset error: {}", e.what());
    return 2;
  } catch (const ds::SplitSpecError& e) {
    spdlog::error("{}", e.what());
    return 2;
  }
  return 0;
}
