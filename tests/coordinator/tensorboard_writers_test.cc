// RunEventWriters over a real MetricsStore: live epochs, per-rank figures,
// restart without duplicates, catching up history, and write failures that
// never reach the reporter.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "coordinator/metrics/metrics_store.h"
#include "coordinator/tensorboard/event_file.h"
#include "coordinator/tensorboard/run_event_writers.h"
#include "metrics_test_util.h"

namespace xfer::coordinator::tensorboard {
namespace {

namespace fs = std::filesystem;
using metrics::MetricsStore;
using metrics::MetricsStoreOptions;
using metrics::RankReport;
using metrics::SplitKind;
using metrics::testing::make_report;
using metrics::testing::TempDir;

// One scalar as read back: what TensorBoard would plot.
struct Point {
  std::string tag;
  std::int64_t step;
  float value;
};

// Every scalar of every event file of `dir`, and how many files there were.
std::vector<Point> read_points(const fs::path& dir, int* files = nullptr) {
  std::vector<Point> points;
  int count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!is_event_file_name(entry.path().filename().string())) continue;
    ++count;
    const EventFileContents contents = read_event_file(entry.path());
    EXPECT_EQ(contents.problem, "");
    EXPECT_FALSE(contents.events.empty());
    if (!contents.events.empty()) {
      EXPECT_EQ(contents.events[0].file_version(), kFileVersion);
    }
    for (const auto& event : contents.events) {
      for (const auto& value : event.summary().value()) {
        points.push_back({value.tag(), event.step(), value.simple_value()});
      }
    }
  }
  if (files != nullptr) *files = count;
  return points;
}

std::map<std::pair<std::string, std::int64_t>, float> by_key(const std::vector<Point>& points) {
  std::map<std::pair<std::string, std::int64_t>, float> out;
  for (const auto& p : points) {
    EXPECT_TRUE(out.emplace(std::make_pair(p.tag, p.step), p.value).second)
        << p.tag << " at step " << p.step << " written twice";
  }
  return out;
}

class TensorBoardWritersTest : public ::testing::Test {
 protected:
  std::unique_ptr<MetricsStore> open_store() {
    return std::make_unique<MetricsStore>(MetricsStoreOptions{tmp_.path() / "state"});
  }
  std::unique_ptr<RunEventWriters> open_writers(const MetricsStore& store) {
    TensorBoardOptions options;
    options.dir = tb_dir();
    return std::make_unique<RunEventWriters>(
        options, store, [this](const std::string& message) { errors_.push_back(message); });
  }
  fs::path tb_dir() const { return tmp_.path() / "tb"; }

  // Two ranks, two steps each, train then validation of (phase, epoch).
  void run_epoch(MetricsStore& store, RunEventWriters* writers, const std::string& phase,
                 std::int64_t epoch) {
    for (SplitKind split : {SplitKind::kTrain, SplitKind::kValidation}) {
      for (int rank = 0; rank < 2; ++rank) {
        for (std::int64_t step = 0; step < 2; ++step) {
          RankReport r = make_report(rank, step, 2, epoch, split, step == 1, phase);
          r.images_per_second = 100.0 * (rank + 1) + static_cast<double>(epoch);
          const auto result = store.report(r);
          if (writers != nullptr) writers->on_report(r, result);
        }
      }
    }
  }

  TempDir tmp_;
  std::vector<std::string> errors_;
};

TEST_F(TensorBoardWritersTest, LiveEpochsMatchTheHistoryStepByStep) {
  auto store = open_store();
  auto writers = open_writers(*store);
  run_epoch(*store, writers.get(), "head", 1);
  run_epoch(*store, writers.get(), "head", 2);
  run_epoch(*store, writers.get(), "finetune", 1);

  int files = 0;
  const auto points = by_key(read_points(tb_dir() / "run-1", &files));
  EXPECT_EQ(files, 1);
  EXPECT_TRUE(errors_.empty());
  const std::map<std::string, std::int64_t> step_of = {
      {"head1", 1}, {"head2", 2}, {"finetune1", 3}};
  const auto history = store->history("run-1");
  ASSERT_EQ(history.size(), 6u);
  for (const auto& epoch : history) {
    const std::int64_t step = step_of.at(epoch.phase + std::to_string(epoch.epoch));
    const std::string split = metrics::to_string(epoch.split);
    EXPECT_FLOAT_EQ(points.at({split + "/loss", step}), static_cast<float>(epoch.loss));
    EXPECT_FLOAT_EQ(points.at({split + "/top1", step}), static_cast<float>(epoch.top1));
    EXPECT_FLOAT_EQ(points.at({split + "/top3", step}), static_cast<float>(epoch.top3));
    if (epoch.split == SplitKind::kTrain) {
      EXPECT_FLOAT_EQ(points.at({"learning_rate", step}), static_cast<float>(epoch.learning_rate));
      EXPECT_FLOAT_EQ(points.at({"images_per_second", step}),
                      static_cast<float>(epoch.images_per_second));
      EXPECT_FLOAT_EQ(points.at({"rank_0/images_per_second", step}), 100.0f + epoch.epoch);
      EXPECT_FLOAT_EQ(points.at({"rank_1/images_per_second", step}), 200.0f + epoch.epoch);
      EXPECT_FLOAT_EQ(points.at({"phase", step}), epoch.phase == "head" ? 0.0f : 1.0f);
    }
  }
  // 3 train epochs x 8 tags + 3 validation epochs x 3 tags.
  EXPECT_EQ(points.size(), 3u * 8 + 3u * 3);
}

TEST_F(TensorBoardWritersTest, ARetriedReportWritesNothingAgain) {
  auto store = open_store();
  auto writers = open_writers(*store);
  run_epoch(*store, writers.get(), "head", 1);
  const RankReport last = make_report(1, 1, 2, 1, SplitKind::kValidation, true, "head");
  const auto result = store->report(last);
  EXPECT_TRUE(result.duplicate);
  writers->on_report(last, result);
  EXPECT_EQ(read_points(tb_dir() / "run-1").size(), 8u + 3u);
}

TEST_F(TensorBoardWritersTest, ReportersArrivingOutOfOrderLoseNoRankFigure) {
  auto store = open_store();
  auto writers = open_writers(*store);
  // Store everything first: the train epoch completes (sequence 1), then the
  // validation pass (sequence 2)...
  std::vector<std::pair<RankReport, metrics::ReportResult>> calls;
  for (SplitKind split : {SplitKind::kTrain, SplitKind::kValidation}) {
    for (int rank = 0; rank < 2; ++rank) {
      RankReport r = make_report(rank, 0, 2, 1, split, true, "head");
      r.images_per_second = 10.0 + rank;
      calls.emplace_back(r, store->report(r));
    }
  }
  ASSERT_TRUE(calls[1].second.completed && calls[3].second.completed);
  // ... but the observer calls arrive in another order: the validation
  // pass's completer first, the train epoch's completer last.
  for (std::size_t i : {0u, 2u, 3u}) writers->on_report(calls[i].first, calls[i].second);
  EXPECT_FALSE(fs::exists(tb_dir() / "run-1")) << "wrote the train epoch without rank 1's figure";
  writers->on_report(calls[1].first, calls[1].second);
  const auto points = by_key(read_points(tb_dir() / "run-1"));
  EXPECT_EQ(points.size(), 8u + 3u);
  EXPECT_FLOAT_EQ(points.at({"rank_0/images_per_second", 1}), 10.0f);
  EXPECT_FLOAT_EQ(points.at({"rank_1/images_per_second", 1}), 11.0f);
  EXPECT_EQ(points.count({"validation/loss", 1}), 1u);
}

TEST_F(TensorBoardWritersTest, RestartWritesANewFileAndNoEpochTwice) {
  {
    auto store = open_store();
    auto writers = open_writers(*store);
    run_epoch(*store, writers.get(), "head", 1);
    run_epoch(*store, writers.get(), "head", 2);
  }
  auto store = open_store();  // replays the history
  auto writers = open_writers(*store);
  int files = 0;
  EXPECT_EQ(read_points(tb_dir() / "run-1", &files).size(), 2u * 11);
  EXPECT_EQ(files, 1) << "the restart rewrote epochs the first file already had";
  run_epoch(*store, writers.get(), "finetune", 1);
  const auto points = by_key(read_points(tb_dir() / "run-1", &files));
  EXPECT_EQ(files, 2);
  EXPECT_EQ(points.size(), 3u * 11);
  // Numbering continues from the replayed history.
  EXPECT_FLOAT_EQ(points.at({"phase", 3}), 1.0f);
  EXPECT_TRUE(errors_.empty());
}

TEST_F(TensorBoardWritersTest, HistoryNotYetWrittenIsCaughtUpAtStart) {
  {
    auto store = open_store();
    auto writers = open_writers(*store);
    run_epoch(*store, writers.get(), "head", 1);
    // Stored, but the coordinator "crashed" before writing it.
    run_epoch(*store, nullptr, "head", 2);
  }
  auto store = open_store();
  auto writers = open_writers(*store);
  int files = 0;
  const auto points = by_key(read_points(tb_dir() / "run-1", &files));
  EXPECT_EQ(files, 2);
  // Epoch 2 is there, without the per-rank figures the history lacks.
  EXPECT_EQ(points.size(), 11u + 6u + 3u);
  EXPECT_EQ(points.count({"train/loss", 2}), 1u);
  EXPECT_EQ(points.count({"rank_0/images_per_second", 2}), 0u);
}

TEST_F(TensorBoardWritersTest, AnEmptyDirectoryIsFilledFromTheWholeHistory) {
  {
    auto store = open_store();
    run_epoch(*store, nullptr, "head", 1);
    run_epoch(*store, nullptr, "finetune", 1);
  }
  auto store = open_store();
  auto writers = open_writers(*store);
  const auto points = by_key(read_points(tb_dir() / "run-1"));
  EXPECT_EQ(points.size(), 2u * (6 + 3));
  EXPECT_EQ(points.count({"validation/top1", 2}), 1u);
  EXPECT_FLOAT_EQ(points.at({"phase", 2}), 1.0f);
}

TEST_F(TensorBoardWritersTest, WriteFailuresAreReportedOnceAndCaughtUpLater) {
  auto store = open_store();
  auto writers = open_writers(*store);
  fs::create_directories(tb_dir());
  std::ofstream(tb_dir() / "run-1") << "blocks the run directory";
  run_epoch(*store, writers.get(), "head", 1);
  run_epoch(*store, writers.get(), "head", 2);
  ASSERT_EQ(errors_.size(), 1u) << "expected exactly one report for a lasting failure";
  EXPECT_NE(errors_[0].find("run 'run-1'"), std::string::npos) << errors_[0];
  EXPECT_NE(errors_[0].find((tb_dir() / "run-1").string()), std::string::npos) << errors_[0];
  // The store took every report regardless.
  EXPECT_EQ(store->history("run-1").size(), 4u);

  fs::remove(tb_dir() / "run-1");
  run_epoch(*store, writers.get(), "head", 3);
  const auto points = by_key(read_points(tb_dir() / "run-1"));
  EXPECT_EQ(points.size(), 3u * 11);
  EXPECT_EQ(errors_.size(), 1u);
}

TEST(TensorBoardWritersStartTest, AnUncreatableDirectoryIsRefusedByName) {
  TempDir tmp;
  std::ofstream(tmp.path() / "file") << "x";
  MetricsStore store(MetricsStoreOptions{});
  TensorBoardOptions options;
  options.dir = tmp.path() / "file" / "tb";
  try {
    RunEventWriters writers(options, store, [](const std::string&) {});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--tensorboard-dir " + options.dir.string()),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace xfer::coordinator::tensorboard
