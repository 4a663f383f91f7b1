// ClassificationCounts: construction bounds, add() ranges, and merge() as the
// union of the ranks' samples.
#include "trainer/evaluation/classification_counts.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <vector>

namespace xfer::trainer::evaluation {
namespace {

TEST(ClassificationCountsTest, ConstructorRejectsOutOfRangeClassCounts) {
  EXPECT_THROW(ClassificationCounts(0), std::invalid_argument);
  EXPECT_THROW(ClassificationCounts(-3), std::invalid_argument);
  EXPECT_THROW(ClassificationCounts(kMaxClasses + 1), std::invalid_argument);
  try {
    ClassificationCounts bad(0);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("num_classes is 0, expected 1..10000"), std::string::npos)
        << e.what();
  }
  const ClassificationCounts one(1);
  EXPECT_EQ(one.num_classes, 1);
  EXPECT_EQ(one.confusion.size(), 1u);
  const ClassificationCounts hundred(100);
  EXPECT_EQ(hundred.confusion.size(), 10000u);
  EXPECT_EQ(hundred.samples(), 0);
  EXPECT_EQ(hundred.top1(), 0);
  EXPECT_EQ(hundred.top3, 0);
  EXPECT_EQ(hundred.loss_sum, 0.0);
}

TEST(ClassificationCountsTest, AddCountsRowMajorTrueThenPredicted) {
  ClassificationCounts counts(3);
  counts.add(/*label=*/0, /*predicted=*/0, /*in_top3=*/true, 0.25);
  counts.add(/*label=*/1, /*predicted=*/2, /*in_top3=*/true, 1.5);
  counts.add(/*label=*/1, /*predicted=*/2, /*in_top3=*/false, 2.0);
  counts.add(/*label=*/2, /*predicted=*/2, /*in_top3=*/true, 0.5);
  EXPECT_EQ(counts.confusion, (std::vector<std::int64_t>{1, 0, 0,  //
                                                         0, 0, 2,  //
                                                         0, 0, 1}));
  EXPECT_EQ(counts.samples(), 4);
  EXPECT_EQ(counts.top1(), 2);
  EXPECT_EQ(counts.top3, 3);
  EXPECT_DOUBLE_EQ(counts.loss_sum, 4.25);
}

TEST(ClassificationCountsTest, AddRejectsLabelsAndPredictionsOutOfRangeAndCountsNothing) {
  ClassificationCounts counts(4);
  EXPECT_THROW(counts.add(-1, 0, true, 1.0), std::invalid_argument);
  EXPECT_THROW(counts.add(4, 0, true, 1.0), std::invalid_argument);
  EXPECT_THROW(counts.add(0, -1, true, 1.0), std::invalid_argument);
  EXPECT_THROW(counts.add(0, 4, true, 1.0), std::invalid_argument);
  EXPECT_THROW(counts.add(std::int64_t{1} << 40, 0, true, 1.0), std::invalid_argument);
  EXPECT_EQ(counts.samples(), 0);
  EXPECT_EQ(counts.top3, 0);
  EXPECT_EQ(counts.loss_sum, 0.0);
  try {
    counts.add(0, 7, false, 0.0);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("predicted is 7, expected 0..3"), std::string::npos)
        << e.what();
  }
  try {
    counts.add(-2, 0, false, 0.0);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("label is -2, expected 0..3"), std::string::npos)
        << e.what();
  }
  counts.add(3, 3, true, 0.0);  // the bounds themselves are fine
  EXPECT_EQ(counts.top1(), 1);
}

// Sample i of a deterministic stream: label, prediction, top-3, loss.
struct Sample {
  std::int64_t label, predicted;
  bool in_top3;
  double loss;
};
Sample sample(int i, int classes) {
  return {i % classes, (i * 7 + i / 3) % classes, i % 4 != 0, 0.125 * (i % 9)};
}

TEST(ClassificationCountsTest, MergeOfRanksEqualsCountingTheUnion) {
  constexpr int kClasses = 5;
  constexpr int kSamples = 203;
  for (int ranks : {1, 2, 3, 7}) {
    SCOPED_TRACE("ranks=" + std::to_string(ranks));
    ClassificationCounts all(kClasses);
    std::vector<ClassificationCounts> per_rank(static_cast<std::size_t>(ranks),
                                               ClassificationCounts(kClasses));
    for (int i = 0; i < kSamples; ++i) {
      const Sample s = sample(i, kClasses);
      all.add(s.label, s.predicted, s.in_top3, s.loss);
      per_rank[static_cast<std::size_t>(i % ranks)].add(s.label, s.predicted, s.in_top3, s.loss);
    }
    ClassificationCounts merged(kClasses);
    for (const auto& rank : per_rank) merged.merge(rank);
    EXPECT_EQ(merged.confusion, all.confusion);
    EXPECT_EQ(merged.top3, all.top3);
    EXPECT_DOUBLE_EQ(merged.loss_sum, all.loss_sum);
    EXPECT_EQ(merged.samples(), kSamples);
    EXPECT_EQ(merged.top1(), all.top1());
  }
}

TEST(ClassificationCountsTest, MergeRejectsAnotherClassCountAndChangesNothing) {
  ClassificationCounts a(3);
  a.add(1, 1, true, 1.0);
  ClassificationCounts b(4);
  b.add(2, 2, true, 1.0);
  EXPECT_THROW(a.merge(b), std::invalid_argument);
  ClassificationCounts tampered(3);
  tampered.confusion.pop_back();  // public members: a bad all-reduce could do this
  EXPECT_THROW(a.merge(tampered), std::invalid_argument);
  EXPECT_EQ(a.samples(), 1);
  EXPECT_EQ(a.top3, 1);
  EXPECT_EQ(a.loss_sum, 1.0);
}

}  // namespace
}  // namespace xfer::trainer::evaluation
