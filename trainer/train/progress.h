// Rank 0's Keras-like console lines: a progress line during an epoch and one
// summary line at its end. Pure formatting (no LibTorch, no I/O), so the
// exact text is unit-tested and the e2e test can parse it back.
//
//   head 1/3  40/120 [=========>....................] - ETA: 0:21 - loss: 2.1345 - acc: 0.3123 -
//   top3: 0.5012 - 1234 img/s head 1/3 120/120 - 47s 1234 img/s - loss: 2.1345 - acc: 0.3123 -
//   top3: 0.5012 - val_loss: 1.9021 - val_acc: 0.4010 - val_top3: 0.6120 - lr: 1.00e-03 -
//   checkpoint ckpt-00000003 (best)
#pragma once

#include <cstdint>
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
};

// "0:21", "12:05", "1:02:03"; negative or non-finite -> "?".
std::string format_duration(double seconds);

std::string format_progress(const ProgressLine& line);
std::string format_epoch_summary(const EpochSummaryLine& line);

}  // namespace xfer::trainer::train
