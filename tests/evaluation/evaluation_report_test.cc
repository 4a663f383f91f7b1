// summarize(): scikit-learn's precision / recall / F1 with zero_division=0,
// checked against numbers computed by hand (scikit-learn is not installed).
#include "trainer/evaluation/evaluation_report.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace xfer::trainer::evaluation {
namespace {

// Counts with the given confusion matrix (rows = true class), built through
// add(); every sample counts as top-3 and costs `loss`.
ClassificationCounts counts_from(const std::vector<std::vector<int>>& matrix, double loss = 1.0) {
  ClassificationCounts counts(static_cast<int>(matrix.size()));
  for (std::size_t t = 0; t < matrix.size(); ++t) {
    for (std::size_t p = 0; p < matrix[t].size(); ++p) {
      for (int k = 0; k < matrix[t][p]; ++k) {
        counts.add(static_cast<std::int64_t>(t), static_cast<std::int64_t>(p), true, loss);
      }
    }
  }
  return counts;
}

// Rows: true class, columns: predicted.
//   t0: 3 1 0 0   support 4
//   t1: 1 2 0 1   support 4
//   t2: 1 1 0 0   support 2   (class 2 is never predicted)
//   t3: 0 0 0 0   support 0   (class 3 has no samples, but is predicted once)
// Column sums (predicted): 5 4 0 1.  tp: 3 2 0 0.
//   precision: 3/5 = 0.6, 2/4 = 0.5, 0/0 -> 0, 0/1 = 0
//   recall:    3/4 = 0.75, 2/4 = 0.5, 0/2 = 0, 0/0 -> 0
//   f1:        2*0.6*0.75/1.35 = 2/3, 0.5, 0, 0
//   macro p = 1.1/4 = 0.275, macro r = 1.25/4 = 0.3125,
//   macro f1 = (2/3 + 1/2)/4 = 7/24, weighted f1 = (4*2/3 + 4*1/2)/10 = 7/15
// These are what sklearn.metrics.precision_recall_fscore_support(y_true,
// y_pred, labels=[0, 1, 2, 3], zero_division=0) returns for this matrix.
const std::vector<std::vector<int>> kFourClasses = {
    {3, 1, 0, 0}, {1, 2, 0, 1}, {1, 1, 0, 0}, {0, 0, 0, 0}};

TEST(EvaluationReportTest, PerClassScoresMatchHandComputedSklearnValues) {
  ClassificationCounts counts = counts_from(kFourClasses, /*loss=*/0.5);
  counts.top3 = 8;
  const EvaluationReport r = summarize(counts, {"a", "b", "c", "d"}, "test", "ckpt-7");
  EXPECT_EQ(r.split, "test");
  EXPECT_EQ(r.checkpoint_id, "ckpt-7");
  EXPECT_EQ(r.num_classes, 4);
  EXPECT_EQ(r.labels, (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(r.samples, 10);
  EXPECT_DOUBLE_EQ(r.loss, 0.5);
  EXPECT_DOUBLE_EQ(r.top1, 0.5);
  EXPECT_DOUBLE_EQ(r.top3, 0.8);
  ASSERT_EQ(r.classes.size(), 4u);

  EXPECT_DOUBLE_EQ(r.classes[0].precision, 0.6);
  EXPECT_DOUBLE_EQ(r.classes[0].recall, 0.75);
  EXPECT_DOUBLE_EQ(r.classes[0].f1, 2.0 / 3.0);
  EXPECT_EQ(r.classes[0].support, 4);

  EXPECT_DOUBLE_EQ(r.classes[1].precision, 0.5);
  EXPECT_DOUBLE_EQ(r.classes[1].recall, 0.5);
  EXPECT_DOUBLE_EQ(r.classes[1].f1, 0.5);
  EXPECT_EQ(r.classes[1].support, 4);

  // Never predicted: precision 0/0 -> 0, recall 0/2.
  EXPECT_EQ(r.classes[2].precision, 0.0);
  EXPECT_EQ(r.classes[2].recall, 0.0);
  EXPECT_EQ(r.classes[2].f1, 0.0);
  EXPECT_EQ(r.classes[2].support, 2);

  // No support: recall 0/0 -> 0, precision 0/1 (one false positive).
  EXPECT_EQ(r.classes[3].precision, 0.0);
  EXPECT_EQ(r.classes[3].recall, 0.0);
  EXPECT_EQ(r.classes[3].f1, 0.0);
  EXPECT_EQ(r.classes[3].support, 0);

  // Macro means include the zero classes; weighted F1 weighs by support.
  EXPECT_DOUBLE_EQ(r.macro_precision, 0.275);
  EXPECT_DOUBLE_EQ(r.macro_recall, 0.3125);
  EXPECT_DOUBLE_EQ(r.macro_f1, 7.0 / 24.0);
  EXPECT_DOUBLE_EQ(r.weighted_f1, 7.0 / 15.0);
  EXPECT_EQ(r.confusion, counts.confusion);
}

TEST(EvaluationReportTest, UnequalPrecisionAndRecallGiveTheHarmonicMean) {
  // Binary: t0 = [5 0], t1 = [5 10]. Class 0: p = 5/10, r = 5/5 -> f1 = 2/3.
  // Class 1: p = 10/10, r = 10/15 -> f1 = 2*(2/3)/(5/3) = 0.8.
  const EvaluationReport r = summarize(counts_from({{5, 0}, {5, 10}}), {}, "val", "");
  EXPECT_DOUBLE_EQ(r.classes[0].precision, 0.5);
  EXPECT_DOUBLE_EQ(r.classes[0].recall, 1.0);
  EXPECT_DOUBLE_EQ(r.classes[0].f1, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.classes[1].precision, 1.0);
  EXPECT_DOUBLE_EQ(r.classes[1].recall, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.classes[1].f1, 0.8);
  EXPECT_DOUBLE_EQ(r.macro_f1, (2.0 / 3.0 + 0.8) / 2);
  EXPECT_DOUBLE_EQ(r.weighted_f1, (5 * (2.0 / 3.0) + 15 * 0.8) / 20);
  EXPECT_DOUBLE_EQ(r.top1, 0.75);
}

TEST(EvaluationReportTest, PerfectPredictionsScoreOne) {
  const EvaluationReport r = summarize(counts_from({{4, 0, 0}, {0, 1, 0}, {0, 0, 2}}), {}, "t", "");
  for (const ClassScores& s : r.classes) {
    EXPECT_EQ(s.precision, 1.0);
    EXPECT_EQ(s.recall, 1.0);
    EXPECT_EQ(s.f1, 1.0);
  }
  EXPECT_EQ(r.macro_f1, 1.0);
  EXPECT_EQ(r.weighted_f1, 1.0);
  EXPECT_EQ(r.top1, 1.0);
}

TEST(EvaluationReportTest, EmptyLabelsBecomeClassIndexNames) {
  const EvaluationReport r = summarize(ClassificationCounts(3), {}, "test", "");
  EXPECT_EQ(r.labels, (std::vector<std::string>{"class_0", "class_1", "class_2"}));
}

TEST(EvaluationReportTest, NoSamplesGivesZerosNotNaN) {
  ClassificationCounts counts(3);
  counts.loss_sum = 0;
  const EvaluationReport r = summarize(counts, {}, "test", "");
  EXPECT_EQ(r.samples, 0);
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_EQ(r.top1, 0.0);
  EXPECT_EQ(r.top3, 0.0);
  EXPECT_EQ(r.macro_precision, 0.0);
  EXPECT_EQ(r.macro_recall, 0.0);
  EXPECT_EQ(r.macro_f1, 0.0);
  EXPECT_EQ(r.weighted_f1, 0.0);
  for (const ClassScores& s : r.classes) EXPECT_EQ(s.f1, 0.0);
}

TEST(EvaluationReportTest, LabelsOfTheWrongCountAreRejected) {
  try {
    summarize(ClassificationCounts(3), {"a", "b"}, "test", "");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("labels has 2 names, expected num_classes = 3"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(summarize(ClassificationCounts(1), {"a", "b"}, "test", ""), std::invalid_argument);
}

TEST(EvaluationReportTest, CorruptedCountsAreRejected) {
  ClassificationCounts short_confusion(3);
  short_confusion.confusion.resize(8);
  EXPECT_THROW(summarize(short_confusion, {}, "t", ""), std::invalid_argument);

  ClassificationCounts negative(2);
  negative.confusion[1] = -1;
  EXPECT_THROW(summarize(negative, {}, "t", ""), std::invalid_argument);

  ClassificationCounts too_many_top3 = counts_from({{1, 0}, {0, 1}});
  too_many_top3.top3 = 3;
  try {
    summarize(too_many_top3, {}, "t", "");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("top3 is 3, expected 0..2"), std::string::npos)
        << e.what();
  }
}

TEST(EvaluationReportTest, ValidateReportNamesTheInconsistentField) {
  EvaluationReport r = summarize(counts_from(kFourClasses), {}, "test", "");
  EXPECT_NO_THROW(validate_report(r));
  EvaluationReport bad = r;
  bad.labels.pop_back();
  try {
    validate_report(bad);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("labels"), std::string::npos) << e.what();
  }
  bad = r;
  bad.classes.push_back({});
  EXPECT_THROW(validate_report(bad), std::invalid_argument);
  bad = r;
  bad.confusion.push_back(0);
  EXPECT_THROW(validate_report(bad), std::invalid_argument);
  bad = r;
  bad.num_classes = 0;
  EXPECT_THROW(validate_report(bad), std::invalid_argument);
}

}  // namespace
}  // namespace xfer::trainer::evaluation
