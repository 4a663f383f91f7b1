#include "trainer/evaluation/evaluation_report.h"

#include <stdexcept>
#include <utility>

namespace xfer::trainer::evaluation {
namespace {

// a / b, or 0 when b == 0 (scikit-learn's zero_division=0).
double ratio(double a, double b) { return b == 0 ? 0.0 : a / b; }

std::string count_text(std::size_t n) { return std::to_string(n); }

// "[3, 7, 9]", at most 10 indices then ", ... (N in all)": an error names the
// mismatch without printing thousands of numbers.
std::string index_list(const std::vector<int>& indices) {
  constexpr std::size_t kShown = 10;
  std::string out = "[";
  for (std::size_t i = 0; i < indices.size() && i < kShown; ++i) {
    out += (i == 0 ? "" : ", ") + std::to_string(indices[i]);
  }
  if (indices.size() > kShown) out += ", ... (" + count_text(indices.size()) + " in all)";
  return out + "]";
}

void check_num_classes(const char* where, int num_classes) {
  if (num_classes < 1 || num_classes > kMaxClasses) {
    throw std::invalid_argument(std::string(where) + ": num_classes is " +
                                std::to_string(num_classes) + ", expected 1.." +
                                std::to_string(kMaxClasses));
  }
}

void check_confusion(const char* where, int num_classes, const std::vector<std::int64_t>& cells) {
  const auto n = static_cast<std::size_t>(num_classes);
  if (cells.size() != n * n) {
    throw std::invalid_argument(std::string(where) + ": confusion has " + count_text(cells.size()) +
                                " cells, expected num_classes^2 = " + count_text(n * n));
  }
  for (std::size_t i = 0; i < cells.size(); ++i) {
    if (cells[i] < 0) {
      throw std::invalid_argument(std::string(where) + ": confusion[" + count_text(i / n) + "][" +
                                  count_text(i % n) + "] is " + std::to_string(cells[i]) +
                                  ", expected a count >= 0");
    }
  }
}

}  // namespace

EvaluationReport summarize(const ClassificationCounts& counts, std::vector<std::string> labels,
                           std::string split, std::string checkpoint_id) {
  // The members are public (ranks all-reduce them in place), so re-check the
  // invariants the constructor established.
  check_num_classes("summarize", counts.num_classes);
  check_confusion("summarize", counts.num_classes, counts.confusion);
  const auto n = static_cast<std::size_t>(counts.num_classes);
  if (labels.empty()) {
    for (std::size_t i = 0; i < n; ++i) labels.push_back("class_" + std::to_string(i));
  } else if (labels.size() != n) {
    throw std::invalid_argument("summarize: labels has " + count_text(labels.size()) +
                                " names, expected num_classes = " + count_text(n) +
                                " (or none for class_<i>)");
  }
  const std::int64_t samples = counts.samples();
  if (counts.top3 < 0 || counts.top3 > samples) {
    throw std::invalid_argument("summarize: top3 is " + std::to_string(counts.top3) +
                                ", expected 0.." + std::to_string(samples) + " (the samples)");
  }

  EvaluationReport report;
  report.split = std::move(split);
  report.checkpoint_id = std::move(checkpoint_id);
  report.num_classes = counts.num_classes;
  report.labels = std::move(labels);
  report.samples = samples;
  report.loss = ratio(counts.loss_sum, static_cast<double>(samples));
  report.top1 = ratio(static_cast<double>(counts.top1()), static_cast<double>(samples));
  report.top3 = ratio(static_cast<double>(counts.top3), static_cast<double>(samples));
  report.confusion = counts.confusion;

  // Column sums: how often each class was predicted.
  std::vector<std::int64_t> predicted(n, 0);
  for (std::size_t t = 0; t < n; ++t) {
    for (std::size_t p = 0; p < n; ++p) predicted[p] += counts.confusion[t * n + p];
  }
  report.classes.resize(n);
  report.absent_classes = absent_classes_of(counts.num_classes, counts.confusion);
  double weighted_f1_sum = 0;
  for (std::size_t c = 0; c < n; ++c) {
    ClassScores& s = report.classes[c];
    const std::int64_t tp = counts.confusion[c * n + c];
    for (std::size_t p = 0; p < n; ++p) s.support += counts.confusion[c * n + p];
    const std::int64_t fp = predicted[c] - tp;
    const std::int64_t fn = s.support - tp;
    s.precision = ratio(static_cast<double>(tp), static_cast<double>(tp + fp));
    s.recall = ratio(static_cast<double>(tp), static_cast<double>(tp + fn));
    // 2tp / (2tp + fp + fn) equals 2pr / (p + r) whenever p + r > 0 and is 0
    // exactly when it is 0; it is what scikit-learn computes, and it avoids
    // rounding the already-rounded p and r once more.
    s.f1 = ratio(2.0 * static_cast<double>(tp), static_cast<double>(2 * tp + fp + fn));
    // An absent class scores 0 everywhere; leaving it out of the sums is
    // what makes the macros scikit-learn's (see the header).
    if (s.support == 0 && predicted[c] == 0) continue;
    report.macro_precision += s.precision;
    report.macro_recall += s.recall;
    report.macro_f1 += s.f1;
    weighted_f1_sum += s.f1 * static_cast<double>(s.support);
  }
  const auto occurring = static_cast<double>(n - report.absent_classes.size());
  report.macro_precision = ratio(report.macro_precision, occurring);
  report.macro_recall = ratio(report.macro_recall, occurring);
  report.macro_f1 = ratio(report.macro_f1, occurring);
  report.weighted_f1 = ratio(weighted_f1_sum, static_cast<double>(samples));
  return report;
}

std::vector<int> absent_classes_of(int num_classes, const std::vector<std::int64_t>& confusion) {
  check_num_classes("absent_classes_of", num_classes);
  const auto n = static_cast<std::size_t>(num_classes);
  if (confusion.size() != n * n) {
    throw std::invalid_argument("absent_classes_of: confusion has " + count_text(confusion.size()) +
                                " cells, expected num_classes^2 = " + count_text(n * n));
  }
  std::vector<bool> occurs(n, false);
  for (std::size_t t = 0; t < n; ++t) {
    for (std::size_t p = 0; p < n; ++p) {
      if (confusion[t * n + p] != 0) occurs[t] = occurs[p] = true;
    }
  }
  std::vector<int> absent;
  for (std::size_t c = 0; c < n; ++c) {
    if (!occurs[c]) absent.push_back(static_cast<int>(c));
  }
  return absent;
}

void validate_report(const EvaluationReport& report) {
  check_num_classes("EvaluationReport", report.num_classes);
  const auto n = static_cast<std::size_t>(report.num_classes);
  if (report.labels.size() != n) {
    throw std::invalid_argument("EvaluationReport: labels has " + count_text(report.labels.size()) +
                                " names, expected num_classes = " + count_text(n));
  }
  if (report.classes.size() != n) {
    throw std::invalid_argument("EvaluationReport: classes has " +
                                count_text(report.classes.size()) +
                                " entries, expected num_classes = " + count_text(n));
  }
  check_confusion("EvaluationReport", report.num_classes, report.confusion);
  // The summary names these classes and says the macros skip them, so a
  // list that disagrees with the matrix would print a false statement.
  const std::vector<int> expected = absent_classes_of(report.num_classes, report.confusion);
  if (report.absent_classes != expected) {
    throw std::invalid_argument(
        "EvaluationReport: absent_classes is " + index_list(report.absent_classes) + ", expected " +
        index_list(expected) + " (the classes whose confusion row and column are all zero)");
  }
}

}  // namespace xfer::trainer::evaluation
