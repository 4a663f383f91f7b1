// The watch stream: ordering, catch-up from a sequence number, slow watchers,
// concurrent reporters.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "coordinator/metrics/metrics_store.h"
#include "tests/coordinator/metrics_test_util.h"

namespace xfer::coordinator::metrics {
namespace {

using std::chrono::milliseconds;
using testing::make_report;

// Completes epoch `epoch` of a one-rank run with one report.
void complete_epoch(MetricsStore& store, std::int64_t epoch) {
  store.report(make_report(0, 0, 1, epoch, SplitKind::kTrain, true));
}

// Long enough never to expire in a passing test; a broken wake-up then hangs
// until ctest's timeout and fails.
constexpr milliseconds kForever{600000};

TEST(MetricsWatchTest, CatchUpFromASequenceNumber) {
  MetricsStore store({});
  for (int e = 0; e < 5; ++e) complete_epoch(store, e);
  const auto all = store.wait_events("run-1", 0, milliseconds(0));
  ASSERT_EQ(all.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(all[i].sequence, i + 1);
    EXPECT_EQ(all[i].metrics.epoch, i);
  }
  const auto tail = store.wait_events("run-1", 3, milliseconds(0));
  ASSERT_EQ(tail.size(), 3u);
  EXPECT_EQ(tail[0].sequence, 3);
  EXPECT_EQ(tail[2].sequence, 5);
  EXPECT_TRUE(store.wait_events("run-1", 6, milliseconds(1)).empty());
  EXPECT_TRUE(store.wait_events("unknown-run", 0, milliseconds(1)).empty());
  ASSERT_EQ(store.wait_events("run-1", 2, milliseconds(0), /*max_events=*/2).size(), 2u);
}

TEST(MetricsWatchTest, WatcherReceivesLiveEventsInOrder) {
  MetricsStore store({});
  constexpr int kEpochs = 50;
  std::vector<std::int64_t> sequences;
  std::vector<std::int64_t> epochs;
  std::thread watcher_thread([&] {
    Watcher watcher(store, "run-1", 0);
    while (static_cast<int>(sequences.size()) < kEpochs) {
      for (const MetricsEvent& e : watcher.next(kForever)) {
        sequences.push_back(e.sequence);
        epochs.push_back(e.metrics.epoch);
      }
    }
  });
  for (int e = 0; e < kEpochs; ++e) complete_epoch(store, e);
  watcher_thread.join();
  ASSERT_EQ(sequences.size(), static_cast<std::size_t>(kEpochs));
  for (int i = 0; i < kEpochs; ++i) {
    EXPECT_EQ(sequences[i], i + 1);
    EXPECT_EQ(epochs[i], i);
  }
}

TEST(MetricsWatchTest, SlowWatcherNeitherBlocksReportersNorLosesEvents) {
  MetricsStore store({});
  Watcher watcher(store, "run-1", 1);
  // Nobody reads while 1,000 events are published: reporters must not wait.
  for (int e = 0; e < 1000; ++e) complete_epoch(store, e);
  std::int64_t expected = 1;
  while (expected <= 1000) {
    const auto events = watcher.next(milliseconds(0));
    ASSERT_FALSE(events.empty()) << "watcher stalled at " << expected;
    for (const auto& e : events) EXPECT_EQ(e.sequence, expected++);
  }
  EXPECT_EQ(watcher.cursor(), 1001);
}

TEST(MetricsWatchTest, ShutdownWakesWaiters) {
  MetricsStore store({});
  std::vector<MetricsEvent> got{MetricsEvent{}};
  std::thread waiter([&] { got = store.wait_events("run-1", 0, kForever); });
  EXPECT_FALSE(store.is_shut_down());
  store.shutdown();
  waiter.join();
  EXPECT_TRUE(got.empty());
  EXPECT_TRUE(store.is_shut_down());
  // After shutdown, existing events are still served at once.
  complete_epoch(store, 0);
  EXPECT_EQ(store.wait_events("run-1", 0, kForever).size(), 1u);
  EXPECT_TRUE(store.wait_events("run-1", 2, kForever).empty());
}

TEST(MetricsWatchTest, ConcurrentRanksAggregateExactly) {
  testing::TempDir dir;
  MetricsStore store({dir.path()});
  constexpr int kWorld = 4;
  constexpr int kSteps = 30;
  constexpr int kEpochs = 3;
  std::vector<MetricsEvent> seen;
  std::thread watcher_thread([&] {
    Watcher watcher(store, "run-1", 0);
    while (seen.size() < kEpochs) {
      for (const auto& e : watcher.next(kForever)) seen.push_back(e);
    }
  });
  std::vector<std::thread> ranks;
  for (int r = 0; r < kWorld; ++r) {
    ranks.emplace_back([&store, r] {
      for (int e = 0; e < kEpochs; ++e) {
        for (int s = 0; s < kSteps; ++s) {
          const RankReport rep = make_report(r, s, kWorld, e, SplitKind::kTrain, s == kSteps - 1);
          store.report(rep);
          if (s % 7 == 0) store.report(rep);  // a retry
        }
      }
    });
  }
  for (auto& t : ranks) t.join();
  watcher_thread.join();

  // Reference: a single-threaded store fed in (rank, step) order.
  MetricsStore reference({});
  for (int e = 0; e < kEpochs; ++e) {
    for (int r = 0; r < kWorld; ++r) {
      for (int s = 0; s < kSteps; ++s) {
        reference.report(make_report(r, s, kWorld, e, SplitKind::kTrain, s == kSteps - 1));
      }
    }
  }
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kEpochs));
  const auto expected = reference.history("run-1");
  for (int i = 0; i < kEpochs; ++i) {
    EXPECT_EQ(seen[i].sequence, i + 1);
    EXPECT_EQ(seen[i].metrics.samples, kWorld * kSteps * 8);
    EXPECT_EQ(seen[i].metrics.reports, kWorld * kSteps);
    // Epochs may complete out of order under concurrency; match by epoch.
    const auto& want = expected[static_cast<std::size_t>(seen[i].metrics.epoch)];
    EXPECT_EQ(seen[i].metrics.loss_sum, want.loss_sum);
    EXPECT_EQ(seen[i].metrics.correct_top1, want.correct_top1);
  }
}

}  // namespace
}  // namespace xfer::coordinator::metrics
