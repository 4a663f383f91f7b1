// Rank 0's Keras-like console lines: a progress line during an epoch and one
// summary line at its end. The formatting is pure (no LibTorch, no I/O), so
// the exact text is unit-tested and the e2e test can parse it back;
// ProgressPrinter puts the progress line on a terminal or in the log.
//
//   head 1/3  40/120 [=========>....................] - ETA: 0:21 - loss: 2.1345 - acc: 0.3123 -
//   top3: 0.5012 - 1234 img/s - data wait 1%
//   head 1/3 120/120 - 47s 1234 img/s - loss: 2.1345 - acc: 0.3123 - top3: 0.5012 -
//   val_loss: 1.9021 - val_acc: 0.4010 - val_top3: 0.6120 - lr: 1.00e-03 - data wait 1% -
//   checkpoint ckpt-00000003 (best)
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace xfer::trainer::train {

// Counts that add up over steps and ranks.
struct MetricTotals {
  double loss_sum = 0.0;  // sum of per-sample losses
  std::int64_t top1 = 0;
  std::int64_t top3 = 0;
  std::int64_t samples = 0;

  void add(const MetricTotals& other) {
    loss_sum += other.loss_sum;
    top1 += other.top1;
    top3 += other.top3;
    samples += other.samples;
  }
  // Means; 0 when there are no samples.
  double loss() const { return samples > 0 ? loss_sum / static_cast<double>(samples) : 0.0; }
  double acc() const { return samples > 0 ? static_cast<double>(top1) / samples : 0.0; }
  double acc3() const { return samples > 0 ? static_cast<double>(top3) / samples : 0.0; }
};

struct ProgressLine {
  std::string phase;
  int epoch = 1;                   // 1-based, within the phase
  int epochs = 1;                  // of the phase
  std::int64_t step = 0;           // steps done in this epoch
  std::int64_t steps = 0;          // in this epoch
  MetricTotals train;              // this epoch so far (this rank's)
  double images_per_second = 0.0;  // all ranks
  double elapsed_s = 0.0;          // since the epoch started
  // Share of elapsed_s this rank waited for its next batch (the prefetcher
  // had none ready), 0..1; negative: not known, left out of the line.
  double data_wait = -1.0;
};

struct EpochSummaryLine {
  std::string phase;
  int epoch = 1;
  int epochs = 1;
  std::int64_t steps = 0;
  double seconds = 0.0;
  double images_per_second = 0.0;  // all ranks
  MetricTotals train;              // all ranks
  MetricTotals val;                // all ranks
  double learning_rate = 0.0;      // of the epoch's last step
  std::string checkpoint_id;       // "" when none was stored
  bool best = false;               // the checkpoint is the phase's best so far
  // Mean over ranks of the share of the epoch spent waiting for data, 0..1;
  // negative: not known, left out of the line.
  double data_wait = -1.0;
};

// "0:21", "12:05", "1:02:03"; negative or non-finite -> "?".
std::string format_duration(double seconds);

std::string format_progress(const ProgressLine& line);
std::string format_epoch_summary(const EpochSummaryLine& line);

// ---- where the progress line goes (--progress)

enum class ProgressMode {
  kTty,    // one line redrawn in place: a person at a terminal
  kPlain,  // a log line each time: Slurm logs, pipes, files
};

// The mode --progress asks for: "tty", "plain", or "auto" (tty when the log
// goes to a terminal, `log_is_terminal`). Throws std::invalid_argument for
// anything else, naming the value and the accepted ones.
ProgressMode resolve_progress_mode(const std::string& flag, bool log_is_terminal);

// Whether stderr, where common/logging sends every log line, is a terminal.
bool stderr_is_terminal();
// The width of the terminal on stderr in columns; 0 when not known.
int stderr_columns();

// Rank 0's progress line. In plain mode each show() is one log line (today's
// behaviour). In tty mode show() rewrites the current terminal line: a
// carriage return, the text cut to fit (a wrapped line could not be redrawn),
// "erase to end of line", and no newline; clear() erases it so the next log
// line (the epoch summary) takes its place. A log line written in between (a
// warning) starts after the shown text; the destructor ends a line still
// shown with a newline, so an error logged while unwinding starts a line of
// its own.
//
// Not thread-safe: one printer, used by the training loop's thread.
class ProgressPrinter {
 public:
  using Sink = std::function<void(const std::string&)>;

  // `log_line` gets each plain line (spdlog::info in the trainer);
  // `terminal` gets raw text to write and flush (stderr). `columns`: the
  // terminal's width, 0 for no cut.
  ProgressPrinter(ProgressMode mode, Sink log_line, Sink terminal, int columns = 0);
  ~ProgressPrinter();

  ProgressPrinter(const ProgressPrinter&) = delete;
  ProgressPrinter& operator=(const ProgressPrinter&) = delete;

  void show(const std::string& line);
  // Erases the shown line (tty mode); nothing otherwise.
  void clear();
  ProgressMode mode() const { return mode_; }

 private:
  const ProgressMode mode_;
  const Sink log_line_;
  const Sink terminal_;
  const int columns_;
  bool shown_ = false;  // tty: a line is on screen without its newline
};

// The trainer's printer: --progress `flag` resolved against stderr, plain
// lines through spdlog::info, in-place ones written to stderr, cut to its
// width. Throws std::invalid_argument for a bad flag.
ProgressPrinter stderr_progress_printer(const std::string& flag);

}  // namespace xfer::trainer::train
