#include "trainer/train/progress.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

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

// " - data wait 3%" (under 10%: one decimal, "0.4%"); "" when not known.
std::string data_wait(double fraction) {
  if (!(fraction >= 0.0)) return "";
  const double percent = std::min(100.0, fraction * 100.0);
  return percent < 10.0 ? fmt::format(" - data wait {:.1f}%", percent)
                        : fmt::format(" - data wait {:.0f}%", percent);
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
  return fmt::format("{} {:>{}}/{} [{}] - ETA: {}{} - {:.0f} img/s{}",
                     head(line.phase, line.epoch, line.epochs), line.step, width, line.steps,
                     bar(line.step, line.steps), format_duration(eta), metrics(line.train, ""),
                     line.images_per_second, data_wait(line.data_wait));
}

ProgressMode resolve_progress_mode(const std::string& flag, bool log_is_terminal) {
  if (flag == "tty") return ProgressMode::kTty;
  if (flag == "plain") return ProgressMode::kPlain;
  if (flag == "auto") return log_is_terminal ? ProgressMode::kTty : ProgressMode::kPlain;
  throw std::invalid_argument("--progress '" + flag + "' is unknown (expected auto, tty or plain)");
}

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

int stderr_columns() {
  winsize size{};
  if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) != 0) return 0;
  return size.ws_col;
}

ProgressPrinter::ProgressPrinter(ProgressMode mode, Sink log_line, Sink terminal, int columns)
    : mode_(mode),
      log_line_(std::move(log_line)),
      terminal_(std::move(terminal)),
      columns_(columns < 0 ? 0 : columns) {}

ProgressPrinter::~ProgressPrinter() {
  if (!shown_) return;
  try {
    terminal_("\n");
  } catch (...) {  // a destructor must not throw; the line stays unended
  }
}

void ProgressPrinter::show(const std::string& line) {
  if (mode_ == ProgressMode::kPlain) {
    log_line_(line);
    return;
  }
  // One column short of the width: writing the last column makes some
  // terminals wrap at once, and a wrapped line cannot be redrawn with \r.
  const std::size_t fit = columns_ > 1 ? static_cast<std::size_t>(columns_ - 1) : line.size();
  terminal_("\r" + line.substr(0, fit) + "\x1b[K");
  shown_ = true;
}

void ProgressPrinter::clear() {
  if (!shown_) return;
  terminal_("\r\x1b[K");
  shown_ = false;
}

ProgressPrinter stderr_progress_printer(const std::string& flag) {
  const ProgressMode mode = resolve_progress_mode(flag, stderr_is_terminal());
  return ProgressPrinter(
      mode, [](const std::string& line) { spdlog::info("{}", line); },
      [](const std::string& text) {
        std::fwrite(text.data(), 1, text.size(), stderr);
        std::fflush(stderr);
      },
      mode == ProgressMode::kTty ? stderr_columns() : 0);
}

std::string format_epoch_summary(const EpochSummaryLine& line) {
  std::string out =
      fmt::format("{} {}/{} - {:.0f}s {:.0f} img/s{}{} - lr: {:.2e}{}",
                  head(line.phase, line.epoch, line.epochs), line.steps, line.steps, line.seconds,
                  line.images_per_second, metrics(line.train, ""), metrics(line.val, "val_"),
                  line.learning_rate, data_wait(line.data_wait));
  if (!line.checkpoint_id.empty()) {
    out += " - checkpoint " + line.checkpoint_id;
    if (line.best) out += " (best)";
  }
  return out;
}

}  // namespace xfer::trainer::train
