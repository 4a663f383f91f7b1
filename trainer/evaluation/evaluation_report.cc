#include "trainer/evaluation/evaluation_report.h"

#include <stdexcept>
#include <utility>

namespace xfer::trainer::evaluation {
namespace {

// a / b, or 0 when b == 0 (scikit-learn's zero_division=0).
double ratio(double a, double b) { return b == 0 ? 0.0 : a / b; }

std::string count_text(std::size_t n) { return std::to_string(n); }

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
    report.macro_precision += s.precision;
    report.macro_recall += s.recall;
    report.macro_f1 += s.f1;
    weighted_f1_sum += s.f1 * static_cast<double>(s.support);
  }
  report.macro_precision /= static_cast<double>(n);
  report.macro_recall /= static_cast<double>(n);
  report.macro_f1 /= static_cast<double>(n);
  report.weighted_f1 = ratio(weighted_f1_sum, static_cast<double>(samples));
  return report;
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
}

}  // namespace xfer::trainer::evaluation
