#include "trainer/evaluation/report_proto.h"

#include <stdexcept>

namespace xfer::trainer::evaluation {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::invalid_argument("RunReport: " + what);
}

}  // namespace

v1::RunReport to_proto(const EvaluationReport& report, const std::string& run) {
  validate_report(report);
  v1::RunReport out;
  out.set_run(run);
  out.set_split(report.split);
  out.set_checkpoint_id(report.checkpoint_id);
  out.set_samples(report.samples);
  out.set_loss(report.loss);
  out.set_top1(report.top1);
  out.set_top3(report.top3);
  out.set_num_classes(report.num_classes);
  out.mutable_classes()->Reserve(report.num_classes);
  for (int i = 0; i < report.num_classes; ++i) {
    const auto c = static_cast<std::size_t>(i);
    v1::ClassMetrics* m = out.add_classes();
    m->set_index(i);
    m->set_label(report.labels[c]);
    m->set_precision(report.classes[c].precision);
    m->set_recall(report.classes[c].recall);
    m->set_f1(report.classes[c].f1);
    m->set_support(report.classes[c].support);
  }
  out.mutable_confusion()->Add(report.confusion.begin(), report.confusion.end());
  out.set_macro_precision(report.macro_precision);
  out.set_macro_recall(report.macro_recall);
  out.set_macro_f1(report.macro_f1);
  out.set_weighted_f1(report.weighted_f1);
  return out;
}

EvaluationReport from_proto(const v1::RunReport& report) {
  const int n = report.num_classes();
  if (n < 1 || n > kMaxClasses) {
    fail("num_classes is " + std::to_string(n) + ", expected 1.." + std::to_string(kMaxClasses));
  }
  if (report.classes_size() != n) {
    fail("classes has " + std::to_string(report.classes_size()) +
         " entries, expected num_classes = " + std::to_string(n));
  }
  const std::int64_t cells = static_cast<std::int64_t>(n) * n;
  if (report.confusion_size() != cells) {
    fail("confusion has " + std::to_string(report.confusion_size()) +
         " cells, expected num_classes^2 = " + std::to_string(cells));
  }
  if (report.samples() < 0) {
    fail("samples is " + std::to_string(report.samples()) + ", expected >= 0");
  }

  EvaluationReport out;
  out.split = report.split();
  out.checkpoint_id = report.checkpoint_id();
  out.num_classes = n;
  out.samples = report.samples();
  out.loss = report.loss();
  out.top1 = report.top1();
  out.top3 = report.top3();
  out.macro_precision = report.macro_precision();
  out.macro_recall = report.macro_recall();
  out.macro_f1 = report.macro_f1();
  out.weighted_f1 = report.weighted_f1();
  out.confusion.assign(report.confusion().begin(), report.confusion().end());

  std::int64_t total = 0;
  for (int i = 0; i < n; ++i) {
    const v1::ClassMetrics& m = report.classes(i);
    const std::string where = "classes[" + std::to_string(i) + "]";
    if (m.index() != i) {
      fail(where + ".index is " + std::to_string(m.index()) + ", expected " + std::to_string(i) +
           " (classes in index order)");
    }
    std::int64_t row = 0;
    for (int p = 0; p < n; ++p) {
      const std::int64_t count = out.confusion[static_cast<std::size_t>(i) * n + p];
      if (count < 0) {
        fail("confusion[" + std::to_string(i) + "][" + std::to_string(p) + "] is " +
             std::to_string(count) + ", expected a count >= 0");
      }
      row += count;
    }
    if (m.support() != row) {
      fail(where + ".support is " + std::to_string(m.support()) + ", expected " +
           std::to_string(row) + " (row " + std::to_string(i) + " of confusion)");
    }
    total += row;
    out.labels.push_back(m.label().empty() ? "class_" + std::to_string(i) : m.label());
    ClassScores scores;
    scores.precision = m.precision();
    scores.recall = m.recall();
    scores.f1 = m.f1();
    scores.support = m.support();
    out.classes.push_back(scores);
  }
  if (total != out.samples) {
    fail("samples is " + std::to_string(out.samples) + ", expected " + std::to_string(total) +
         " (the sum of confusion)");
  }
  // The proto has no field for them: the matrix determines them exactly.
  out.absent_classes = absent_classes_of(n, out.confusion);
  return out;
}

}  // namespace xfer::trainer::evaluation
