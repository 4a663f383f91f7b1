// Durability of the metrics store: reload after restart, torn last lines,
// corrupt files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "coordinator/metrics/history_file.h"
#include "coordinator/metrics/history_record.h"
#include "coordinator/metrics/metrics_store.h"
#include "tests/coordinator/metrics_test_util.h"

namespace xfer::coordinator::metrics {
namespace {

using ::testing::HasSubstr;
using testing::make_report;
using testing::TempDir;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::filesystem::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

std::filesystem::path history_path(const TempDir& dir) {
  return dir.path() / "run-1.metrics.jsonl";
}

// Two complete epochs (train and validation), plus a group left pending.
void fill(MetricsStore& store) {
  for (int s = 0; s < 4; ++s) {
    for (int r = 0; r < 3; ++r) store.report(make_report(r, s, 3, 0, SplitKind::kTrain, s == 3));
  }
  for (int r = 0; r < 3; ++r) store.report(make_report(r, 0, 3, 0, SplitKind::kValidation, true));
  store.report(make_report(0, 0, 3, 1));
  store.report(make_report(2, 0, 3, 1, SplitKind::kTrain, true));
}

void expect_same_metrics(const std::vector<EpochMetrics>& a, const std::vector<EpochMetrics>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("event " + std::to_string(i));
    EXPECT_EQ(a[i].run, b[i].run);
    EXPECT_EQ(a[i].phase, b[i].phase);
    EXPECT_EQ(a[i].epoch, b[i].epoch);
    EXPECT_EQ(a[i].split, b[i].split);
    EXPECT_EQ(a[i].world_size, b[i].world_size);
    EXPECT_EQ(a[i].loss_sum, b[i].loss_sum);  // bit-exact through JSON
    EXPECT_EQ(a[i].correct_top1, b[i].correct_top1);
    EXPECT_EQ(a[i].correct_top3, b[i].correct_top3);
    EXPECT_EQ(a[i].samples, b[i].samples);
    EXPECT_EQ(a[i].loss, b[i].loss);
    EXPECT_EQ(a[i].top1, b[i].top1);
    EXPECT_EQ(a[i].top3, b[i].top3);
    EXPECT_EQ(a[i].learning_rate, b[i].learning_rate);
    EXPECT_EQ(a[i].images_per_second, b[i].images_per_second);
    EXPECT_EQ(a[i].reports, b[i].reports);
  }
}

TEST(MetricsHistoryTest, RestartRebuildsAggregatesKeysAndSequences) {
  TempDir dir;
  std::vector<EpochMetrics> before;
  std::vector<RankStatus> ranks_before;
  {
    MetricsStore store({dir.path()});
    fill(store);
    before = store.history("run-1");
    ranks_before = store.ranks("run-1");
    ASSERT_EQ(before.size(), 2u);
  }
  MetricsStore reloaded({dir.path()});
  expect_same_metrics(reloaded.history("run-1"), before);
  EXPECT_EQ(reloaded.last_sequence("run-1"), 2);
  EXPECT_EQ(reloaded.runs(), std::vector<std::string>{"run-1"});

  const auto ranks = reloaded.ranks("run-1");
  ASSERT_EQ(ranks.size(), ranks_before.size());
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    EXPECT_EQ(ranks[i].step, ranks_before[i].step);
    EXPECT_EQ(ranks[i].epoch, ranks_before[i].epoch);
    EXPECT_EQ(ranks[i].updated_unix_ms, ranks_before[i].updated_unix_ms);
  }
  const auto pending = reloaded.pending("run-1");
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].ended_ranks, std::vector<int>{2});

  // Keys survived: retries of reports sent before the restart are duplicates,
  // and changed ones conflict.
  EXPECT_TRUE(reloaded.report(make_report(1, 2, 3)).duplicate);
  EXPECT_TRUE(reloaded.report(make_report(0, 0, 3, 1)).duplicate);
  RankReport changed = make_report(0, 0, 3, 1);
  changed.samples = 1;
  changed.correct_top1 = changed.correct_top3 = 0;
  EXPECT_THROW(reloaded.report(changed), MetricsError);

  // The pending group completes with the next sequence number and the sums
  // of the reports before and after the restart.
  reloaded.report(make_report(0, 1, 3, 1, SplitKind::kTrain, true));
  const auto done = reloaded.report(make_report(1, 0, 3, 1, SplitKind::kTrain, true));
  ASSERT_TRUE(done.completed);
  EXPECT_EQ(done.completed->sequence, 3);
  EXPECT_EQ(done.completed->metrics.reports, 4);
  EXPECT_EQ(done.completed->metrics.samples, 4 * 8);
}

TEST(MetricsHistoryTest, EveryAcceptedReportIsOneLineOnDisk) {
  TempDir dir;
  MetricsStore store({dir.path()});
  store.report(make_report(0, 0));
  store.report(make_report(0, 0));  // duplicate: not written again
  store.report(make_report(1, 0));
  const std::string data = read_file(history_path(dir));
  EXPECT_EQ(std::count(data.begin(), data.end(), '\n'), 2);
  const HistoryRecord first = decode(data.substr(0, data.find('\n')));
  EXPECT_EQ(first.type, HistoryRecord::Type::kReport);
  EXPECT_EQ(first.report.loss_sum, make_report(0, 0).loss_sum);
  EXPECT_EQ(first.report.learning_rate, make_report(0, 0).learning_rate);
}

TEST(MetricsHistoryTest, TornLastLineIsDroppedAndTruncated) {
  TempDir dir;
  std::vector<EpochMetrics> before;
  {
    MetricsStore store({dir.path()});
    fill(store);
    before = store.history("run-1");
  }
  const std::string intact = read_file(history_path(dir));
  // A crash in the middle of appending rank 1's step 0 of epoch 1: a prefix
  // of its line, without the newline.
  const std::string torn_line =
      encode(HistoryRecord{HistoryRecord::Type::kReport, 1, make_report(1, 0, 3, 1)});
  write_file(history_path(dir), intact + torn_line.substr(0, torn_line.size() / 2));

  {
    MetricsStore reloaded({dir.path()});
    expect_same_metrics(reloaded.history("run-1"), before);
    EXPECT_EQ(read_file(history_path(dir)), intact) << "the torn tail was not truncated";
    // The torn report was never acknowledged; its retry counts once.
    EXPECT_FALSE(reloaded.report(make_report(1, 0, 3, 1)).duplicate);
    EXPECT_TRUE(reloaded.report(make_report(1, 0, 3, 1)).duplicate);
  }
  // Appends after the repair are whole lines: a third start reads them.
  MetricsStore third({dir.path()});
  EXPECT_TRUE(third.report(make_report(1, 0, 3, 1)).duplicate);
  EXPECT_EQ(third.pending("run-1")[0].reports, 3);
}

TEST(MetricsHistoryTest, TornWholeRecordWithoutNewlineIsDroppedToo) {
  TempDir dir;
  { MetricsStore({dir.path()}).report(make_report(0, 0)); }
  const std::string intact = read_file(history_path(dir));
  write_file(history_path(dir),
             intact + encode(HistoryRecord{HistoryRecord::Type::kReport, 1, make_report(1, 0)}));
  MetricsStore reloaded({dir.path()});
  EXPECT_EQ(reloaded.pending("run-1")[0].reports, 1);
  EXPECT_EQ(read_file(history_path(dir)), intact);
}

TEST(MetricsHistoryTest, CorruptMiddleLineIsDataLossNamingFileAndLine) {
  TempDir dir;
  {
    MetricsStore store({dir.path()});
    for (int s = 0; s < 3; ++s) store.report(make_report(0, s));
  }
  std::string data = read_file(history_path(dir));
  const std::size_t second = data.find('\n') + 1;
  data.replace(second, 5, "#####");
  write_file(history_path(dir), data);
  try {
    MetricsStore reloaded({dir.path()});
    FAIL() << "a corrupt history loaded";
  } catch (const MetricsError& e) {
    EXPECT_EQ(e.code(), MetricsError::Code::kDataLoss);
    EXPECT_THAT(e.what(), HasSubstr("run-1.metrics.jsonl:2: malformed metrics record"));
  }
}

TEST(MetricsHistoryTest, InconsistentStoredRecordIsDataLoss) {
  TempDir dir;
  // Two lines with the same key and different counts can only come from
  // tampering or a bug; replay must not pick one silently.
  const std::string a = encode(HistoryRecord{HistoryRecord::Type::kReport, 1, make_report(0, 0)});
  RankReport other = make_report(0, 0);
  other.samples = 2;
  other.correct_top1 = other.correct_top3 = 0;
  const std::string b = encode(HistoryRecord{HistoryRecord::Type::kReport, 2, other});
  write_file(history_path(dir), a + "\n" + b + "\n");
  try {
    MetricsStore reloaded({dir.path()});
    FAIL() << "conflicting history loaded";
  } catch (const MetricsError& e) {
    EXPECT_EQ(e.code(), MetricsError::Code::kDataLoss);
    EXPECT_THAT(e.what(), HasSubstr(":2: stored record cannot be replayed"));
  }
}

TEST(MetricsHistoryTest, RecordOfAnotherRunIsDataLoss) {
  TempDir dir;
  RankReport foreign = make_report(0, 0);
  foreign.run = "other";
  write_file(history_path(dir),
             encode(HistoryRecord{HistoryRecord::Type::kReport, 1, foreign}) + "\n");
  EXPECT_THROW(MetricsStore({dir.path()}), MetricsError);
}

TEST(MetricsHistoryTest, DiscardSurvivesRestart) {
  TempDir dir;
  {
    MetricsStore store({dir.path()});
    fill(store);
    EXPECT_EQ(store.discard_incomplete("run-1"), 1u);
  }
  MetricsStore reloaded({dir.path()});
  EXPECT_TRUE(reloaded.pending("run-1").empty());
  EXPECT_EQ(reloaded.history("run-1").size(), 2u);
  EXPECT_FALSE(reloaded.report(make_report(0, 0, 3, 1)).duplicate);
}

TEST(MetricsHistoryTest, RunsLiveInSeparateFiles) {
  TempDir dir;
  {
    MetricsStore store({dir.path()});
    RankReport a = make_report(0, 0, 1, 0, SplitKind::kTrain, true);
    RankReport b = a;
    b.run = "run-2";
    store.report(a);
    store.report(b);
  }
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "run-2.metrics.jsonl"));
  MetricsStore reloaded({dir.path()});
  EXPECT_EQ(reloaded.runs(), (std::vector<std::string>{"run-1", "run-2"}));
  EXPECT_EQ(reloaded.history("run-2").size(), 1u);
}

TEST(MetricsHistoryTest, MemoryOnlyStoreWritesNothing) {
  TempDir dir;
  MetricsStore store({});
  store.report(make_report(0, 0));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  EXPECT_EQ(store.runs(), std::vector<std::string>{"run-1"});
}

TEST(MetricsHistoryFileTest, AppendsLinesAndReadsThemBack) {
  TempDir dir;
  const auto path = dir.path() / "lines.jsonl";
  {
    std::vector<std::string> lines;
    auto file = HistoryFile::open(path, &lines);
    EXPECT_TRUE(lines.empty());
    file->append("one");
    file->append("two");
    EXPECT_EQ(file->size(), 8);
  }
  std::vector<std::string> lines;
  auto file = HistoryFile::open(path, &lines);
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(file->size(), 8);
}

TEST(MetricsHistoryFileTest, UnreadablePathIsAnIoErrorNamingIt) {
  TempDir dir;
  std::vector<std::string> lines;
  try {
    HistoryFile::open(dir.path() / "missing-dir" / "x.jsonl", &lines);
    FAIL() << "opened a file in a missing directory";
  } catch (const MetricsError& e) {
    EXPECT_EQ(e.code(), MetricsError::Code::kIo);
    EXPECT_THAT(e.what(), HasSubstr("missing-dir/x.jsonl: cannot open history file"));
  }
}

TEST(MetricsHistoryRecordTest, RejectsMissingFieldsAndUnknownValues) {
  EXPECT_THROW(decode("{\"type\":\"report\",\"unix_ms\":1,\"run\":\"r\"}"), std::runtime_error);
  EXPECT_THROW(decode("{\"type\":\"nope\",\"unix_ms\":1,\"run\":\"r\"}"), std::runtime_error);
  EXPECT_THROW(decode("[1,2]"), std::runtime_error);
  std::string line = encode(HistoryRecord{HistoryRecord::Type::kReport, 1, make_report(0, 0)});
  line.replace(line.find("\"train\""), 7, "\"bogus\"");
  try {
    decode(line);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown split 'bogus'"));
  }
}

}  // namespace
}  // namespace xfer::coordinator::metrics
