#include "trainer/train/progress.h"

#include <spdlog/fmt/fmt.h>

#include <cmath>

namespace xfer::trainer::train {
namespace {

constexpr int kBarWidth = 30;

std::string bar(std::int64_t step, std::int64_t steps) {
  if (steps <= 0) return std::string(kBarWidth, '.');
  const int filled = static_cast<int>(kBarWidth * step / steps);
  std::string out;
  out.reserve(kBarWidth);
  for (int i = 0; i < kBarWidth; ++i) {
    if (i < filled) {
      out += '=';
    } else if (i == filled && step < steps) {
      out += '>';
    } else {
      out += '.';
    }
  }
  if (filled >= kBarWidth) out.back() = '=';
  return out;
}

std::string metrics(const MetricTotals& m, const char* prefix) {
  return fmt::format(" - {0}loss: {1:.4f} - {0}acc: {2:.4f} - {0}top3: {3:.4f}", prefix, m.loss(),
                     m.acc(), m.acc3());
}

std::string head(const std::string& phase, int epoch, int epochs) {
  return fmt::format("{} {}/{}", phase, epoch, epochs);
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  const long long h = total / 3600;
  const long long m = (total / 60) % 60;
  const long long s = total % 60;
  if (h > 0) return fmt::format("{}:{:02}:{:02}", h, m, s);
  return fmt::format("{}:{:02}", m, s);
}

std::string format_progress(const ProgressLine& line) {
  const double eta = line.step > 0 ? line.elapsed_s / static_cast<double>(line.step) *
                                         static_cast<double>(line.steps - line.step)
                                   : -1.0;
  const int width = static_cast<int>(std::to_string(line.steps).size());
  return fmt::format("{} {:>{}}/{} [{}] - ETA: {}{} - {:.0f} img/s",
                     head(line.phase, line.epoch, line.epochs), line.step, width, line.steps,
                     bar(line.step, line.steps), format_duration(eta), metrics(line.train, ""),
                     line.images_per_second);
}

std::string format_epoch_summary(const EpochSummaryLine& line) {
  std::string out = fmt::format("{} {}/{} - {:.0f}s {:.0f} img/s{}{} - lr: {:.2e}",
                                head(line.phase, line.epoch, line.epochs), line.steps, line.steps,
                                line.seconds, line.images_per_second, metrics(line.train, ""),
                                metrics(line.val, "val_"), line.learning_rate);
  if (!line.checkpoint_id.empty()) {
    out += " - checkpoint " + line.checkpoint_id;
    if (line.best) out += " (best)";
  }
  return out;
}

}  // namespace xfer::trainer::train
