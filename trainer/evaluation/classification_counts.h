// The counts of a classification evaluation, kept per rank and summed across
// ranks. Every member is a sum over samples, so the element-wise sum of two
// ranks' counts is exactly the counts of the union of their samples: ranks
// can all-reduce `confusion`, `top3` and `loss_sum` (or merge() gathered
// copies) and summarize() the result once.
#pragma once

#include <cstdint>
#include <vector>

namespace xfer::trainer::evaluation {

// The largest num_classes accepted: the confusion matrix is num_classes^2
// int64s (800 MB at this bound), so anything larger is a bug, not a dataset.
inline constexpr int kMaxClasses = 10000;

struct ClassificationCounts {
  // REQUIRES: 1 <= num_classes <= kMaxClasses, else std::invalid_argument.
  // All counts start at zero.
  explicit ClassificationCounts(int num_classes);

  int num_classes = 0;
  // num_classes * num_classes counts, row-major: confusion[t * num_classes + p]
  // is the number of samples of true class t predicted as p.
  std::vector<std::int64_t> confusion;
  // Samples whose label is among the 3 highest logits (all of them when the
  // model has fewer than 3 classes).
  std::int64_t top3 = 0;
  // Sum of the per-sample cross-entropy (natural log), not the mean.
  double loss_sum = 0.0;

  // Counts one sample. Throws std::invalid_argument naming the value when
  // `label` or `predicted` is outside [0, num_classes); nothing is counted
  // then. `loss` is taken as given (a NaN from a diverged model stays visible
  // in the report instead of being hidden behind an exception).
  void add(std::int64_t label, std::int64_t predicted, bool in_top3, double loss);

  // Adds `other`'s counts to these. Throws std::invalid_argument, changing
  // nothing, when the class counts (or confusion sizes) differ.
  void merge(const ClassificationCounts& other);

  // Every sample counted: the sum of `confusion`.
  std::int64_t samples() const;
  // Samples predicted correctly: the trace of `confusion`.
  std::int64_t top1() const;
};

}  // namespace xfer::trainer::evaluation
