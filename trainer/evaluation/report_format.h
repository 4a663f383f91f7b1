// Human- and machine-readable renderings of an EvaluationReport.
#pragma once

#include <string>

#include "trainer/evaluation/evaluation_report.h"

namespace xfer::trainer::evaluation {

// Pretty JSON with every field of the report, in declaration order:
// split, checkpoint_id, num_classes, labels, samples, loss, top1, top3,
// classes (objects with index, label, precision, recall, f1, support),
// macro_precision, macro_recall, macro_f1, weighted_f1, macro_classes (how
// many classes the macros average over: num_classes - absent), absent_classes
// (indices) and absent_labels (their labels, same order), and confusion as an
// array of num_classes rows (row t = true class t). Each class and each
// confusion row sits on one line, so a 100-class report stays ~250 lines.
// Doubles are written in shortest round-trip form; a non-finite one (a NaN
// loss from a diverged model) becomes null, as JSON has no NaN. Invalid UTF-8
// in names is replaced by U+FFFD rather than failing the report. Throws
// std::invalid_argument if `report` is invalid (see validate_report).
std::string to_json(const EvaluationReport& report);

// A few lines for a terminal: split and checkpoint, samples, loss, top-1 and
// top-3 accuracy, macro and weighted F1, over how many classes the macros
// average and the labels of the classes that never occur (the first 10, then
// how many more), then the (up to) 5 classes that occur with the lowest F1,
// lowest first, ties by class index (none when no class occurs). Ends with a
// newline.
// Throws std::invalid_argument if `report` is invalid.
std::string format_summary(const EvaluationReport& report);

}  // namespace xfer::trainer::evaluation
