#include "bench/gpu/bench_options.h"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <sstream>
#include <stdexcept>

namespace xfer::bench {
namespace {

constexpr char kUsage[] =
    "gpu_step_bench: training steps of our EfficientNet-B0 TransferModel (Adam, cross-entropy),\n"
    "inputs copied from pinned host memory each step; prints one 'result' line per config.\n"
    "\n"
    "  --device cuda|cpu              (default cuda)\n"
    "  --configs PHASE:SIZE:BATCH,... phases head|finetune|full (default finetune:224:64)\n"
    "  --precisions fp32,bf16         bf16 = autocast of forward + loss (default fp32)\n"
    "  --memory-format channels_last|nchw  (default channels_last)\n"
    "  --warmup N --windows N --steps N    untimed steps, then N windows of N steps\n"
    "                                 (default 10, 5, 10); the figure is the median window\n"
    "  --optimizer-steps N            Adam steps timed alone afterwards (default 10)\n"
    "  --num-classes N                (default 100)\n"
    "  --threads N                    intra-op threads, 0 = LibTorch's default (default 0)\n"
    "  --cudnn-benchmark              cuDNN autotuning (default off, as PyTorch)\n"
    "  --seed N                       (default 0)\n"
    "  --parity-dir DIR               no timing: write weights, inputs, logits and gradients\n"
    "                                 for bench/gpu/torch_step_bench.py --parity DIR\n";

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, separator);) parts.push_back(part);
  return parts;
}

int64_t parse_int(const std::string& flag, const std::string& text, int64_t min, int64_t max) {
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < min || value > max) {
    throw std::invalid_argument(flag + " '" + text + "': expected an integer in [" +
                                std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return value;
}

std::vector<StepConfig> parse_configs(const std::string& text) {
  std::vector<StepConfig> configs;
  for (const auto& item : split(text, ',')) {
    const auto fields = split(item, ':');
    if (fields.size() != 3) {
      throw std::invalid_argument("--configs entry '" + item +
                                  "': expected PHASE:SIZE:BATCH, e.g. finetune:224:64");
    }
    if (fields[0] != "head" && fields[0] != "finetune" && fields[0] != "full") {
      throw std::invalid_argument("--configs entry '" + item + "': phase '" + fields[0] +
                                  "', expected head, finetune or full");
    }
    configs.push_back({fields[0],
                       parse_int("--configs size in '" + item + "'", fields[1], 32, 4096),
                       parse_int("--configs batch in '" + item + "'", fields[2], 1, 1 << 20)});
  }
  if (configs.empty()) throw std::invalid_argument("--configs is empty");
  return configs;
}

std::vector<std::string> parse_precisions(const std::string& text) {
  auto precisions = split(text, ',');
  if (precisions.empty()) throw std::invalid_argument("--precisions is empty");
  for (const auto& p : precisions) {
    if (p != "fp32" && p != "bf16") {
      throw std::invalid_argument("--precisions entry '" + p + "': expected fp32 or bf16");
    }
  }
  return precisions;
}

}  // namespace

std::optional<StepBenchOptions> parse_step_bench_options(int argc, char** argv, int* exit_code) {
  StepBenchOptions options;
  *exit_code = 2;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      if (flag == "-h" || flag == "--help") {
        std::fputs(kUsage, stdout);
        *exit_code = 0;
        return std::nullopt;
      }
      if (flag == "--cudnn-benchmark") {
        options.cudnn_benchmark = true;
        continue;
      }
      static const std::set<std::string> kValueFlags = {
          "--device",      "--configs", "--precisions", "--memory-format",
          "--warmup",      "--windows", "--steps",      "--optimizer-steps",
          "--num-classes", "--threads", "--seed",       "--parity-dir"};
      if (kValueFlags.count(flag) == 0) {
        throw std::invalid_argument("unknown flag '" + flag + "' (see --help)");
      }
      if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value (see --help)");
      const std::string value = argv[++i];
      if (flag == "--device") {
        if (value != "cuda" && value != "cpu") {
          throw std::invalid_argument("--device '" + value + "': expected cuda or cpu");
        }
        options.device = value;
      } else if (flag == "--configs") {
        options.configs = parse_configs(value);
      } else if (flag == "--precisions") {
        options.precisions = parse_precisions(value);
      } else if (flag == "--memory-format") {
        if (value != "channels_last" && value != "nchw") {
          throw std::invalid_argument("--memory-format '" + value +
                                      "': expected channels_last or nchw");
        }
        options.channels_last = value == "channels_last";
      } else if (flag == "--warmup") {
        options.warmup = static_cast<int>(parse_int(flag, value, 0, 100000));
      } else if (flag == "--windows") {
        options.windows = static_cast<int>(parse_int(flag, value, 1, 100000));
      } else if (flag == "--steps") {
        options.steps = static_cast<int>(parse_int(flag, value, 1, 100000));
      } else if (flag == "--optimizer-steps") {
        options.optimizer_steps = static_cast<int>(parse_int(flag, value, 0, 100000));
      } else if (flag == "--num-classes") {
        options.num_classes = parse_int(flag, value, 1, 1 << 20);
      } else if (flag == "--threads") {
        options.threads = static_cast<int>(parse_int(flag, value, 0, 4096));
      } else if (flag == "--seed") {
        options.seed = parse_int(flag, value, 0, INT64_MAX);
      } else if (flag == "--parity-dir") {
        if (value.empty()) throw std::invalid_argument("--parity-dir is empty");
        options.parity_dir = value;
      }
    }
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "gpu_step_bench: %s\n", e.what());
    return std::nullopt;
  }
  *exit_code = 0;
  return options;
}

}  // namespace xfer::bench
