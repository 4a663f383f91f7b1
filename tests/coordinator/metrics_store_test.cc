#include "coordinator/metrics/metrics_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "tests/coordinator/metrics_test_util.h"

namespace xfer::coordinator::metrics {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::make_report;

// Sends steps 0..steps-1 for every rank, the last one flagged end_of_epoch.
void report_epoch(MetricsStore& store, int world_size, int steps, std::int64_t epoch = 0,
                  SplitKind split = SplitKind::kTrain) {
  for (int s = 0; s < steps; ++s) {
    for (int r = 0; r < world_size; ++r) {
      store.report(make_report(r, s, world_size, epoch, split, s == steps - 1));
    }
  }
}

MetricsError::Code error_code(MetricsStore& store, const RankReport& report, std::string* what) {
  try {
    store.report(report);
  } catch (const MetricsError& e) {
    *what = e.what();
    return e.code();
  }
  ADD_FAILURE() << "report accepted: " << describe_key(report);
  return MetricsError::Code::kIo;
}

TEST(MetricsStoreTest, SumsExactlyOverRanksAndSteps) {
  MetricsStore store({});
  constexpr int kWorld = 3;
  constexpr int kSteps = 5;
  report_epoch(store, kWorld, kSteps);

  // Expected: the same sums taken in (rank, step) order.
  double loss_sum = 0;
  std::int64_t top1 = 0, top3 = 0, samples = 0;
  for (int r = 0; r < kWorld; ++r) {
    for (int s = 0; s < kSteps; ++s) {
      const RankReport rep = make_report(r, s, kWorld);
      loss_sum += rep.loss_sum;
      top1 += rep.correct_top1;
      top3 += rep.correct_top3;
      samples += rep.samples;
    }
  }
  const auto history = store.history("run-1");
  ASSERT_EQ(history.size(), 1u);
  const EpochMetrics& m = history[0];
  EXPECT_EQ(m.samples, kWorld * kSteps * 8);
  EXPECT_EQ(m.samples, samples);
  EXPECT_EQ(m.correct_top1, top1);
  EXPECT_EQ(m.correct_top3, top3);
  EXPECT_EQ(m.loss_sum, loss_sum);  // bit-exact
  EXPECT_EQ(m.loss, loss_sum / static_cast<double>(samples));
  EXPECT_EQ(m.top1, static_cast<double>(top1) / static_cast<double>(samples));
  EXPECT_EQ(m.top3, static_cast<double>(top3) / static_cast<double>(samples));
  EXPECT_EQ(m.reports, kWorld * kSteps);
  EXPECT_EQ(m.world_size, kWorld);
  EXPECT_EQ(m.learning_rate, make_report(0, kSteps - 1).learning_rate);
  EXPECT_EQ(m.images_per_second, 100.0 + 101.0 + 102.0);
  EXPECT_EQ(m.phase, "head");
  EXPECT_EQ(m.split, SplitKind::kTrain);
}

TEST(MetricsStoreTest, AggregateDoesNotDependOnArrivalOrder) {
  std::vector<RankReport> reports;
  for (int r = 0; r < 4; ++r) {
    for (int s = 0; s < 20; ++s) reports.push_back(make_report(r, s, 4, 0, SplitKind::kTrain));
  }
  // Ends go last so every step is in before the group completes.
  for (int r = 0; r < 4; ++r) reports.push_back(make_report(r, 20, 4, 0, SplitKind::kTrain, true));

  MetricsStore in_order({});
  for (const auto& rep : reports) in_order.report(rep);
  std::mt19937 rng(7);
  std::shuffle(reports.begin(), reports.end() - 4, rng);
  MetricsStore shuffled({});
  for (const auto& rep : reports) shuffled.report(rep);

  ASSERT_EQ(in_order.history("run-1").size(), 1u);
  ASSERT_EQ(shuffled.history("run-1").size(), 1u);
  EXPECT_EQ(in_order.history("run-1")[0].loss_sum, shuffled.history("run-1")[0].loss_sum);
}

TEST(MetricsStoreTest, CompletesOnlyAfterEveryRankEnded) {
  MetricsStore store({});
  for (int r = 0; r < 3; ++r) store.report(make_report(r, 0, 3));
  EXPECT_FALSE(store.report(make_report(0, 1, 3, 0, SplitKind::kTrain, true)).completed);
  EXPECT_FALSE(store.report(make_report(2, 1, 3, 0, SplitKind::kTrain, true)).completed);
  EXPECT_TRUE(store.history("run-1").empty());
  EXPECT_EQ(store.last_sequence("run-1"), 0);

  const auto pending = store.pending("run-1");
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_THAT(pending[0].ended_ranks, ElementsAre(0, 2));
  EXPECT_EQ(pending[0].reports, 5);

  const ReportResult last = store.report(make_report(1, 1, 3, 0, SplitKind::kTrain, true));
  ASSERT_TRUE(last.completed);
  EXPECT_EQ(last.completed->sequence, 1);
  EXPECT_EQ(last.completed->metrics.samples, 6 * 8);
  EXPECT_TRUE(store.pending("run-1").empty());
  EXPECT_EQ(store.history("run-1").size(), 1u);
}

TEST(MetricsStoreTest, GroupsAreSeparatePerPhaseEpochAndSplit) {
  MetricsStore store({});
  report_epoch(store, 2, 3, 0, SplitKind::kTrain);
  report_epoch(store, 2, 2, 0, SplitKind::kValidation);
  report_epoch(store, 2, 3, 1, SplitKind::kTrain);
  for (int r = 0; r < 2; ++r) {
    store.report(make_report(r, 0, 2, 0, SplitKind::kTrain, true, "finetune"));
  }
  const auto history = store.history("run-1");
  ASSERT_EQ(history.size(), 4u);
  EXPECT_EQ(history[0].split, SplitKind::kTrain);
  EXPECT_EQ(history[0].samples, 2 * 3 * 8);
  EXPECT_EQ(history[1].split, SplitKind::kValidation);
  EXPECT_EQ(history[1].samples, 2 * 2 * 8);
  EXPECT_EQ(history[2].epoch, 1);
  EXPECT_EQ(history[3].phase, "finetune");
  EXPECT_EQ(history[3].samples, 2 * 8);
  EXPECT_EQ(store.last_sequence("run-1"), 4);
}

TEST(MetricsStoreTest, RetryIsAcknowledgedAndNotCounted) {
  MetricsStore store({});
  const RankReport step0 = make_report(0, 0, 2);
  EXPECT_FALSE(store.report(step0).duplicate);
  EXPECT_TRUE(store.report(step0).duplicate);
  // A retry whose timings differ (a re-run step) is still the same report.
  RankReport retimed = step0;
  retimed.images_per_second = 5;
  retimed.comm_ms = 99;
  EXPECT_TRUE(store.report(retimed).duplicate);

  store.report(make_report(1, 0, 2));
  store.report(make_report(0, 1, 2, 0, SplitKind::kTrain, true));
  const ReportResult done = store.report(make_report(1, 1, 2, 0, SplitKind::kTrain, true));
  ASSERT_TRUE(done.completed);
  EXPECT_EQ(done.completed->metrics.samples, 4 * 8);
  EXPECT_EQ(done.completed->metrics.reports, 4);
  // Retries after completion are duplicates too and publish nothing.
  const ReportResult late = store.report(make_report(1, 1, 2, 0, SplitKind::kTrain, true));
  EXPECT_TRUE(late.duplicate);
  EXPECT_FALSE(late.completed);
  EXPECT_EQ(store.last_sequence("run-1"), 1);
}

TEST(MetricsStoreTest, SameKeyWithOtherCountsIsAConflict) {
  MetricsStore store({});
  store.report(make_report(0, 3, 2));
  RankReport changed = make_report(0, 3, 2);
  changed.loss_sum += 0.5;
  changed.samples = 7;
  changed.correct_top1 = 0;
  changed.correct_top3 = 0;
  std::string what;
  EXPECT_EQ(error_code(store, changed, &what), MetricsError::Code::kConflict);
  EXPECT_THAT(what, HasSubstr("rank 0 phase 'head' epoch 0 split train step 3"));
  EXPECT_THAT(what, HasSubstr("samples 7 (stored: 8)"));
  EXPECT_THAT(what, HasSubstr("loss_sum"));

  RankReport flagged = make_report(0, 3, 2);
  flagged.end_of_epoch = true;
  EXPECT_EQ(error_code(store, flagged, &what), MetricsError::Code::kConflict);
  EXPECT_THAT(what, HasSubstr("end_of_epoch"));
  // The stored report is untouched.
  EXPECT_TRUE(store.report(make_report(0, 3, 2)).duplicate);
}

TEST(MetricsStoreTest, NoNewStepAfterARanksEnd) {
  MetricsStore store({});
  store.report(make_report(0, 4, 2, 0, SplitKind::kTrain, true));
  std::string what;
  EXPECT_EQ(error_code(store, make_report(0, 5, 2), &what),
            MetricsError::Code::kFailedPrecondition);
  EXPECT_THAT(what, HasSubstr("already ended this epoch at step 4"));
}

TEST(MetricsStoreTest, EndMustBeTheRanksLastStep) {
  MetricsStore store({});
  store.report(make_report(1, 9, 2));
  std::string what;
  EXPECT_EQ(error_code(store, make_report(1, 3, 2, 0, SplitKind::kTrain, true), &what),
            MetricsError::Code::kFailedPrecondition);
  EXPECT_THAT(what, HasSubstr("step 9 of this rank is already stored"));
}

TEST(MetricsStoreTest, WorldSizeMustMatchTheGroup) {
  MetricsStore store({});
  store.report(make_report(0, 0, 2));
  std::string what;
  EXPECT_EQ(error_code(store, make_report(2, 0, 3), &what),
            MetricsError::Code::kFailedPrecondition);
  EXPECT_THAT(what, HasSubstr("world_size 3 differs from the 2"));
}

struct InvalidCase {
  const char* name;
  void (*edit)(RankReport&);
  const char* message;
};

class MetricsInvalidReportTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(MetricsInvalidReportTest, IsRejectedWithTheFieldNamed) {
  MetricsStore store({});
  RankReport report = make_report(0, 0, 2);
  GetParam().edit(report);
  std::string what;
  EXPECT_EQ(error_code(store, report, &what), MetricsError::Code::kInvalidArgument);
  EXPECT_THAT(what, HasSubstr(GetParam().message));
  EXPECT_TRUE(store.runs().empty()) << "a rejected report left a trace";
}

INSTANTIATE_TEST_SUITE_P(
    Fields, MetricsInvalidReportTest,
    ::testing::Values(
        InvalidCase{"rank_outside_world", [](RankReport& r) { r.rank = 2; },
                    "rank 2 is out of range (expected 0..1 for world size 2)"},
        InvalidCase{"negative_rank", [](RankReport& r) { r.rank = -1; }, "rank -1"},
        InvalidCase{"world_zero", [](RankReport& r) { r.world_size = 0; },
                    "world_size 0 is out of range"},
        InvalidCase{"empty_run", [](RankReport& r) { r.run = ""; }, "run name '' is invalid"},
        InvalidCase{"path_in_run", [](RankReport& r) { r.run = "a/../b"; },
                    "has a character outside"},
        InvalidCase{"dot_run", [](RankReport& r) { r.run = ".."; }, "not starting with '.'"},
        InvalidCase{"empty_phase", [](RankReport& r) { r.phase = ""; }, "phase '' is invalid"},
        InvalidCase{"upper_phase", [](RankReport& r) { r.phase = "Head"; },
                    "phase 'Head' is invalid"},
        InvalidCase{"negative_epoch", [](RankReport& r) { r.epoch = -1; }, "epoch -1 is negative"},
        InvalidCase{"negative_step", [](RankReport& r) { r.step = -4; }, "step -4 is negative"},
        InvalidCase{"split", [](RankReport& r) { r.split = static_cast<SplitKind>(7); },
                    "split kind 7 is unknown"},
        InvalidCase{"top1_over_top3",
                    [](RankReport& r) {
                      r.correct_top1 = 5;
                      r.correct_top3 = 4;
                    },
                    "correct_top1 5, correct_top3 4, samples 8 are inconsistent"},
        InvalidCase{"top3_over_samples", [](RankReport& r) { r.correct_top3 = 9; },
                    "are inconsistent"},
        InvalidCase{"negative_samples", [](RankReport& r) { r.samples = -1; }, "are inconsistent"},
        InvalidCase{"nan_loss", [](RankReport& r) { r.loss_sum = std::nan(""); },
                    "loss_sum is nan (expected finite and >= 0)"},
        InvalidCase{"negative_loss", [](RankReport& r) { r.loss_sum = -1; }, "loss_sum is -1"},
        InvalidCase{"infinite_rate", [](RankReport& r) { r.images_per_second = INFINITY; },
                    "images_per_second is inf"},
        InvalidCase{"negative_lr", [](RankReport& r) { r.learning_rate = -0.1; },
                    "learning_rate is -0.1"}),
    [](const ::testing::TestParamInfo<InvalidCase>& param) {
      return std::string(param.param.name);
    });

TEST(MetricsStoreTest, RanksViewKeepsTheLatestReportOfEachRank) {
  MetricsStore store({});
  store.report(make_report(0, 0, 2));
  store.report(make_report(1, 0, 2));
  RankReport slow = make_report(1, 1, 2);
  slow.images_per_second = 12;
  slow.data_wait_ms = 40;
  store.report(slow);
  const auto ranks = store.ranks("run-1");
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_EQ(ranks[0].step, 0);
  EXPECT_EQ(ranks[1].step, 1);
  EXPECT_EQ(ranks[1].images_per_second, 12);
  EXPECT_EQ(ranks[1].data_wait_ms, 40);
  EXPECT_GT(ranks[1].updated_unix_ms, 0);

  // The job resumed on one rank: rank 1 is gone, not a straggler.
  store.report(make_report(0, 0, 1, /*epoch=*/1));
  ASSERT_EQ(store.ranks("run-1").size(), 1u);
  EXPECT_EQ(store.ranks("run-1")[0].epoch, 1);
  EXPECT_TRUE(store.ranks("unknown-run").empty());
}

TEST(MetricsStoreTest, DiscardIncompleteForgetsPartialGroupsOnly) {
  MetricsStore store({});
  report_epoch(store, 2, 2, /*epoch=*/0);
  store.report(make_report(0, 0, 2, /*epoch=*/1));
  store.report(make_report(0, 1, 2, /*epoch=*/1, SplitKind::kTrain, true));
  EXPECT_EQ(store.discard_incomplete("run-1"), 1u);
  EXPECT_TRUE(store.pending("run-1").empty());
  EXPECT_EQ(store.history("run-1").size(), 1u);
  EXPECT_EQ(store.discard_incomplete("run-1"), 0u);
  EXPECT_EQ(store.discard_incomplete("unknown-run"), 0u);

  // The resumed attempt re-reports epoch 1 with other figures: no conflict,
  // and only the new figures count.
  RankReport redo = make_report(0, 0, 2, 1);
  redo.loss_sum = 3.0;
  EXPECT_FALSE(store.report(redo).duplicate);
  store.report(make_report(0, 1, 2, 1, SplitKind::kTrain, true));
  store.report(make_report(1, 0, 2, 1));
  const auto done = store.report(make_report(1, 1, 2, 1, SplitKind::kTrain, true));
  ASSERT_TRUE(done.completed);
  EXPECT_EQ(done.completed->sequence, 2);
  EXPECT_EQ(done.completed->metrics.reports, 4);
  // And a completed group is still protected.
  RankReport changed = make_report(0, 0, 2, 0);
  changed.loss_sum = 9;
  std::string what;
  EXPECT_EQ(error_code(store, changed, &what), MetricsError::Code::kConflict);
}

TEST(MetricsStoreTest, ZeroSampleGroupHasNoFigures) {
  MetricsStore store({});
  RankReport empty = make_report(0, 0, 1, 0, SplitKind::kTest, true);
  empty.samples = 0;
  empty.correct_top1 = 0;
  empty.correct_top3 = 0;
  empty.loss_sum = 0;
  const auto done = store.report(empty);
  ASSERT_TRUE(done.completed);
  EXPECT_TRUE(std::isnan(done.completed->metrics.loss));
  EXPECT_TRUE(std::isnan(done.completed->metrics.top1));
}

TEST(MetricsSplitKindTest, RoundTrips) {
  for (SplitKind kind : {SplitKind::kTrain, SplitKind::kValidation, SplitKind::kTest}) {
    EXPECT_EQ(parse_split_kind(to_string(kind)), kind);
  }
  EXPECT_FALSE(parse_split_kind("val"));
}

}  // namespace
}  // namespace xfer::coordinator::metrics
