// The report of one evaluation: aggregate accuracy and loss, scikit-learn's
// per-class precision / recall / F1, their macro and support-weighted means,
// and the confusion matrix. Computed once from the counts summed over every
// rank (see classification_counts.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/evaluation/classification_counts.h"

namespace xfer::trainer::evaluation {

struct ClassScores {
  double precision = 0;      // tp / (tp + fp); 0 when the class was never predicted
  double recall = 0;         // tp / (tp + fn); 0 when the class has no samples
  double f1 = 0;             // 2 p r / (p + r); 0 when p + r == 0
  std::int64_t support = 0;  // samples whose true class this is
};

// Invariants (checked by validate_report): num_classes in [1, kMaxClasses];
// labels and classes have num_classes entries; confusion has num_classes^2.
struct EvaluationReport {
  std::string split;          // the split evaluated, e.g. "test"
  std::string checkpoint_id;  // the weights evaluated; may be empty
  int num_classes = 0;
  std::vector<std::string> labels;  // class names by index (class_<i> when the dataset had none)
  std::int64_t samples = 0;
  double loss = 0;                   // mean cross-entropy; 0 when samples == 0
  double top1 = 0;                   // fraction in [0, 1]; 0 when samples == 0
  double top3 = 0;                   // fraction in [0, 1]; 0 when samples == 0
  std::vector<ClassScores> classes;  // by class index
  // Unweighted means over all num_classes classes, including classes with no
  // support or never predicted (they count as 0, as in scikit-learn).
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  double weighted_f1 = 0;  // mean of f1 weighted by support; 0 when samples == 0
  // Row-major [true][predicted], as ClassificationCounts::confusion.
  std::vector<std::int64_t> confusion;
};

// Computes the report with scikit-learn's definitions and zero_division=0
// (precision_recall_fscore_support with average=None / "macro" / "weighted",
// labels=range(num_classes)): a 0/0 ratio is 0.
// `labels`: empty means class_0, class_1, ...; otherwise exactly num_classes
// names. Throws std::invalid_argument when `labels` has another size or
// `counts` breaks its own invariants (confusion size, negative counts,
// top3 > samples).
EvaluationReport summarize(const ClassificationCounts& counts, std::vector<std::string> labels,
                           std::string split, std::string checkpoint_id);

// Throws std::invalid_argument naming the field when `report` breaks the
// invariants above. Every function that reads a report calls it first, so a
// hand-built report fails loudly instead of indexing out of range.
void validate_report(const EvaluationReport& report);

}  // namespace xfer::trainer::evaluation
