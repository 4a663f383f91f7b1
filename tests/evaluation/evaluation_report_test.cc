// summarize(): scikit-learn's precision / recall / F1 with zero_division=0,
// checked against numbers computed by hand. sklearn_parity_test.cc checks
// random cases against scikit-learn itself.
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
// The macros average over all four classes because all four occur: class 2
// in the truth only, class 3 in the predictions only. These are what
// sklearn.metrics.precision_recall_fscore_support(y_true, y_pred,
// zero_division=0) returns for this matrix, with average=None / "macro" /
// "weighted" and no `labels` (labels = unique_labels(y_true, y_pred)).
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

  // Macro means include the zero classes that occur; weighted F1 weighs by
  // support.
  EXPECT_TRUE(r.absent_classes.empty());
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

// Issue #21: a 10-class dataset on a 100-class model. Class c (0..9) has c+1
// samples right and one mistaken for class (c+1) % 10, so tp = c+1, fp = 1,
// fn = 1 and p = r = f1 = (c+1)/(c+2). Classes 10..99 never occur: the
// macros are the mean over the ten classes (about 0.8), where the mean over
// all 100 would be a tenth of it.
TEST(EvaluationReportTest, MacrosAverageOnlyTheTenClassesThatOccurOfAHundred) {
  std::vector<std::vector<int>> m(100, std::vector<int>(100, 0));
  double sum = 0;
  for (int c = 0; c < 10; ++c) {
    m[c][c] = c + 1;
    m[c][(c + 1) % 10] = 1;
    sum += (c + 1.0) / (c + 2.0);
  }
  const EvaluationReport r = summarize(counts_from(m), {}, "test", "");
  ASSERT_EQ(r.classes.size(), 100u);  // per-class scores for every class
  for (int c = 0; c < 10; ++c) {
    EXPECT_DOUBLE_EQ(r.classes[c].f1, (c + 1.0) / (c + 2.0)) << c;
  }
  std::vector<int> absent;
  for (int c = 10; c < 100; ++c) {
    absent.push_back(c);
    EXPECT_EQ(r.classes[c].support, 0) << c;
    EXPECT_EQ(r.classes[c].f1, 0.0) << c;
  }
  EXPECT_EQ(r.absent_classes, absent);
  EXPECT_DOUBLE_EQ(r.macro_precision, sum / 10);
  EXPECT_DOUBLE_EQ(r.macro_recall, sum / 10);
  EXPECT_DOUBLE_EQ(r.macro_f1, sum / 10);
  EXPECT_GT(r.macro_f1, 0.79);  // 0.798; over all 100 classes 0.0798
  // Weighted F1 was never affected: absent classes weigh 0.
  double weighted = 0;
  for (int c = 0; c < 10; ++c) weighted += (c + 2) * (c + 1.0) / (c + 2.0);
  EXPECT_DOUBLE_EQ(r.weighted_f1, weighted / r.samples);
}

// Class 2 is predicted once but never true; class 3 never occurs.
//   y_true = [0 0 0 1 1], y_pred = [0 0 2 1 1]
//   class 0: tp 2, fp 0, fn 1: p 1, r 2/3, f1 4/5
//   class 1: tp 2, fp 0, fn 0: p 1, r 1,   f1 1
//   class 2: tp 0, fp 1, fn 0: p 0, r 0/0 -> 0, f1 0
// Over classes 0..2 (scikit-learn's unique_labels): p = 2/3, r = 5/9,
// f1 = 1.8/3 = 0.6; weighted f1 = (3*0.8 + 2*1)/5 = 0.88.
TEST(EvaluationReportTest, AClassOnlyPredictedCountsInTheMacros) {
  const EvaluationReport r =
      summarize(counts_from({{2, 0, 1, 0}, {0, 2, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}), {}, "t", "");
  EXPECT_EQ(r.absent_classes, (std::vector<int>{3}));
  EXPECT_EQ(r.classes[2].support, 0);
  EXPECT_DOUBLE_EQ(r.macro_precision, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.macro_recall, 5.0 / 9.0);
  EXPECT_DOUBLE_EQ(r.macro_f1, 0.6);
  EXPECT_DOUBLE_EQ(r.weighted_f1, 0.88);
}

// Class 2 is true twice but never predicted; class 3 never occurs.
//   y_true = [0 0 1 2 2], y_pred = [0 0 1 0 1]
//   class 0: tp 2, fp 1, fn 0: p 2/3, r 1, f1 4/5
//   class 1: tp 1, fp 1, fn 0: p 1/2, r 1, f1 2/3
//   class 2: tp 0, fp 0, fn 2: p 0/0 -> 0, r 0, f1 0
// Over classes 0..2: p = (2/3 + 1/2)/3 = 7/18, r = 2/3,
// f1 = (4/5 + 2/3)/3 = 22/45; weighted f1 = (2*4/5 + 2/3)/5 = 34/75.
TEST(EvaluationReportTest, AClassOnlyTrueCountsInTheMacros) {
  const EvaluationReport r =
      summarize(counts_from({{2, 0, 0, 0}, {0, 1, 0, 0}, {1, 1, 0, 0}, {0, 0, 0, 0}}), {}, "t", "");
  EXPECT_EQ(r.absent_classes, (std::vector<int>{3}));
  EXPECT_DOUBLE_EQ(r.macro_precision, 7.0 / 18.0);
  EXPECT_DOUBLE_EQ(r.macro_recall, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r.macro_f1, 22.0 / 45.0);
  EXPECT_DOUBLE_EQ(r.weighted_f1, 34.0 / 75.0);
}

TEST(EvaluationReportTest, AbsentClassesAreThoseWithAnEmptyRowAndColumn) {
  ClassificationCounts counts(4);
  counts.add(/*label=*/1, /*predicted=*/3, true, 0);
  EXPECT_EQ(absent_classes_of(4, counts.confusion), (std::vector<int>{0, 2}));
  EXPECT_EQ(absent_classes_of(4, ClassificationCounts(4).confusion),
            (std::vector<int>{0, 1, 2, 3}));
  EXPECT_THROW(absent_classes_of(3, counts.confusion), std::invalid_argument);
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
  // No class occurs, so the macros average over none: 0, not 0/0.
  EXPECT_EQ(r.absent_classes, (std::vector<int>{0, 1, 2}));
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
  bad = r;
  bad.absent_classes = {2};  // class 2 has support 2
  try {
    validate_report(bad);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("absent_classes is [2], expected []"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace xfer::trainer::evaluation
