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
// labels and classes have num_classes entries; confusion has num_classes^2
// counts >= 0; absent_classes is exactly absent_classes_of(confusion).
struct EvaluationReport {
  std::string split;          // the split evaluated, e.g. "test"
  std::string checkpoint_id;  // the weights evaluated; may be empty
  int num_classes = 0;
  std::vector<std::string> labels;  // class names by index (class_<i> when the dataset had none)
  std::int64_t samples = 0;
  double loss = 0;                   // mean cross-entropy; 0 when samples == 0
  double top1 = 0;                   // fraction in [0, 1]; 0 when samples == 0
  double top3 = 0;                   // fraction in [0, 1]; 0 when samples == 0
  std::vector<ClassScores> classes;  // by class index, every class (absent ones score 0)
  // Unweighted means over the classes that occur: in the truth (support > 0)
  // or in the predictions (predicted at least once). These are scikit-learn's
  // classification_report(y_true, y_pred) macro averages, whose labels are
  // unique_labels(y_true, y_pred). A class that never occurs has nothing to
  // score; counting it as 0 would drag the macros toward 0 whenever the data
  // use few of the model's classes (10 of 100 classes at F1 0.85 read 0.085).
  // A class only predicted (precision 0) or only true (recall 0) does count.
  // 0 when no class occurs (no samples).
  double macro_precision = 0, macro_recall = 0, macro_f1 = 0;
  double weighted_f1 = 0;  // mean of f1 weighted by support; 0 when samples == 0
  // The classes that never occur (support 0 and never predicted), ascending:
  // the macros average over the other num_classes - absent_classes.size().
  std::vector<int> absent_classes;
  // Row-major [true][predicted], as ClassificationCounts::confusion.
  std::vector<std::int64_t> confusion;
};

// Computes the report with scikit-learn's definitions and zero_division=0: a
// 0/0 ratio is 0. Per-class scores are precision_recall_fscore_support with
// average=None and labels=range(num_classes); the macro and weighted means
// are average="macro" / "weighted" without `labels`, i.e. over the classes
// that occur (for "weighted" the same thing: absent classes weigh 0).
// `labels`: empty means class_0, class_1, ...; otherwise exactly num_classes
// names. Throws std::invalid_argument when `labels` has another size or
// `counts` breaks its own invariants (confusion size, negative counts,
// top3 > samples).
EvaluationReport summarize(const ClassificationCounts& counts, std::vector<std::string> labels,
                           std::string split, std::string checkpoint_id);

// The classes whose confusion row and column are all zero (no sample is of
// that class and none was predicted as it), ascending. REQUIRES: `confusion`
// has num_classes^2 cells (else std::invalid_argument).
std::vector<int> absent_classes_of(int num_classes, const std::vector<std::int64_t>& confusion);

// Throws std::invalid_argument naming the field when `report` breaks the
// invariants above. Every function that reads a report calls it first, so a
// hand-built report fails loudly instead of indexing out of range.
void validate_report(const EvaluationReport& report);

}  // namespace xfer::trainer::evaluation
