// Where each rank is in its epoch: the split and planned steps of its
// latest report reach RankStatus, survive a restart (the history file), and
// a negative plan is refused.
#include <gtest/gtest.h>

#include <string>

#include "coordinator/metrics/history_record.h"
#include "coordinator/metrics/metrics_store.h"
#include "tests/coordinator/metrics_test_util.h"

namespace xfer::coordinator::metrics {
namespace {

using testing::make_report;
using testing::TempDir;

RankReport planned(int rank, std::int64_t step, std::int64_t steps, SplitKind split) {
  RankReport r = make_report(rank, step, /*world_size=*/2, /*epoch=*/1, split);
  r.steps_in_epoch = steps;
  return r;
}

TEST(MetricsRankProgress, LatestReportGivesSplitAndPlan) {
  MetricsStore store({});
  store.report(planned(0, 20, 120, SplitKind::kTrain));
  store.report(planned(1, 40, 120, SplitKind::kTrain));
  store.report(planned(0, 3, 7, SplitKind::kValidation));
  const auto ranks = store.ranks("run-1");
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_EQ(ranks[0].rank, 0);
  EXPECT_EQ(ranks[0].split, SplitKind::kValidation);
  EXPECT_EQ(ranks[0].step, 3);
  EXPECT_EQ(ranks[0].steps_in_epoch, 7);
  EXPECT_EQ(ranks[1].split, SplitKind::kTrain);
  EXPECT_EQ(ranks[1].step, 40);
  EXPECT_EQ(ranks[1].steps_in_epoch, 120);
}

TEST(MetricsRankProgress, PlanSurvivesARestart) {
  TempDir dir;
  {
    MetricsStore store({dir.path()});
    store.report(planned(0, 20, 120, SplitKind::kTrain));
    store.report(planned(1, 2, 5, SplitKind::kValidation));
  }
  MetricsStore reloaded({dir.path()});
  const auto ranks = reloaded.ranks("run-1");
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_EQ(ranks[0].steps_in_epoch, 120);
  EXPECT_EQ(ranks[1].split, SplitKind::kValidation);
  EXPECT_EQ(ranks[1].steps_in_epoch, 5);
}

TEST(MetricsRankProgress, PlanIsNotPartOfTheIdempotencyKey) {
  MetricsStore store({});
  EXPECT_FALSE(store.report(planned(0, 20, 120, SplitKind::kTrain)).duplicate);
  // A retry that lost the plan is still the same report, not a conflict.
  EXPECT_TRUE(store.report(planned(0, 20, 0, SplitKind::kTrain)).duplicate);
}

TEST(MetricsRankProgress, NegativePlanIsRefusedByName) {
  MetricsStore store({});
  try {
    store.report(planned(0, 1, -3, SplitKind::kTrain));
    FAIL() << "expected MetricsError";
  } catch (const MetricsError& e) {
    EXPECT_EQ(e.code(), MetricsError::Code::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("steps_in_epoch -3"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(store.ranks("run-1").empty()) << "nothing was stored";
}

TEST(MetricsRankProgress, HistoryLineWithoutThePlanReadsAsUnknown) {
  HistoryRecord record;
  record.unix_ms = 5;
  record.report = planned(1, 9, 30, SplitKind::kTrain);
  const std::string line = encode(record);
  EXPECT_EQ(decode(line).report.steps_in_epoch, 30);
  // A file written before the field existed.
  std::string old = line;
  const auto at = old.find(",\"steps_in_epoch\":30");
  ASSERT_NE(at, std::string::npos) << line;
  old.erase(at, std::string(",\"steps_in_epoch\":30").size());
  EXPECT_EQ(decode(old).report.steps_in_epoch, 0);
  EXPECT_EQ(decode(old).report.step, 9);
}

}  // namespace
}  // namespace xfer::coordinator::metrics
