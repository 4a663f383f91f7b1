// coordctl's output from hand-built response messages: tables, CSV, JSON,
// event lines and straggler marking. No server.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "coordinator/coordctl/format.h"
#include "coordinator/coordctl/json_output.h"
#include "coordinator/coordctl/stragglers.h"
#include "coordinator/coordctl/table.h"
#include "tests/coordinator/coordctl_test_util.h"

namespace xfer::coordinator::coordctl {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// 2026-01-02 03:04:05 UTC.
constexpr std::int64_t kT0 = 1767323045000;

constexpr auto epoch = testing::make_epoch;

v1::HistoryResponse sample_history() {
  v1::HistoryResponse history;
  *history.add_epochs() = epoch("head", 0, v1::SPLIT_KIND_TRAIN, 3.5, 0.2512, 0.4, 40000, 880.25);
  *history.add_epochs() = epoch("head", 0, v1::SPLIT_KIND_VALIDATION, 2.75, 0.375, 0.6, 10000, 0);
  *history.add_epochs() = epoch("finetune", 12, v1::SPLIT_KIND_TEST, kNaN, kNaN, kNaN, 0, 0);
  return history;
}

TEST(TableTest, AlignsColumnsAndTrimsTrailingSpace) {
  Table table({{"name"}, {"n", Table::Align::kRight}, {"note"}});
  table.add_row({"a", "1", ""});
  table.add_row({"longer", "12345", "x"});
  EXPECT_EQ(table.render(),
            "name        n  note\n"
            "------  -----  ----\n"
            "a           1\n"
            "longer  12345  x\n");
}

TEST(TableTest, CountsUtf8CharactersNotBytes) {
  Table table({{"a"}, {"b"}});
  table.add_row({"\xc2\xb5s", "x"});  // "µs": 2 characters, 3 bytes
  EXPECT_EQ(table.render(), "a   b\n--  -\n\xc2\xb5s  x\n");
}

TEST(TableTest, WrongCellCountIsRefused) {
  Table table({{"a"}, {"b"}});
  EXPECT_THROW(table.add_row({"only one"}), std::invalid_argument);
}

TEST(FormatTest, SingleValues) {
  EXPECT_EQ(format_fixed(1.23456, 2), "1.23");
  EXPECT_EQ(format_fixed(kNaN, 2), "-");
  EXPECT_EQ(format_percent(0.4567), "45.67%");
  EXPECT_EQ(format_percent(kNaN), "-");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(50LL << 20), "50.0 MiB");
  EXPECT_EQ(format_time_utc(kT0), "2026-01-02 03:04:05Z");
  EXPECT_EQ(format_time_utc(0), "-");
  EXPECT_EQ(format_duration(45'999), "45s");
  EXPECT_EQ(format_duration(187'000), "3m07s");
  EXPECT_EQ(format_duration(7'380'000), "2h03m");
  EXPECT_EQ(run_state_name(v1::RUN_STATE_FAILED), "failed");
  EXPECT_EQ(split_name(v1::SPLIT_KIND_VALIDATION), "validation");
  EXPECT_EQ(direction_name(v1::METRIC_DIRECTION_MAXIMIZE), "maximize");
}

TEST(HistoryFormatTest, Table) {
  EXPECT_EQ(history_table(sample_history()),
            "phase     epoch  split         loss    top1    top3  samples  img/s\n"
            "--------  -----  ----------  ------  ------  ------  -------  -----\n"
            "head          0  train       3.5000  25.12%  40.00%    40000  880.2\n"
            "head          0  validation  2.7500  37.50%  60.00%    10000    0.0\n"
            "finetune     12  test             -       -       -        0    0.0\n");
  EXPECT_EQ(history_table(v1::HistoryResponse()), "no epochs yet\n");
}

TEST(HistoryFormatTest, CsvHasFullPrecisionAndEmptyFieldsForNaN) {
  EXPECT_EQ(history_csv(sample_history()),
            "phase,epoch,split,loss,top1,top3,samples,learning_rate,images_per_second\n"
            "head,0,train,3.5,0.2512,0.4,40000,0.001,880.25\n"
            "head,0,validation,2.75,0.375,0.6,10000,0.001,0\n"
            "finetune,12,test,,,,0,0.001,0\n");
}

TEST(HistoryFormatTest, JsonFieldsAreStable) {
  const nlohmann::json json = history_json("r1", sample_history());
  EXPECT_EQ(json["run"], "r1");
  ASSERT_EQ(json["epochs"].size(), 3u);
  const auto& first = json["epochs"][0];
  EXPECT_EQ(first["phase"], "head");
  EXPECT_EQ(first["epoch"], 0);
  EXPECT_EQ(first["split"], "train");
  EXPECT_DOUBLE_EQ(first["loss"].get<double>(), 3.5);
  EXPECT_DOUBLE_EQ(first["top1"].get<double>(), 0.2512);
  EXPECT_DOUBLE_EQ(first["top3"].get<double>(), 0.4);
  EXPECT_EQ(first["samples"], 40000);
  EXPECT_DOUBLE_EQ(first["learning_rate"].get<double>(), 0.001);
  EXPECT_DOUBLE_EQ(first["images_per_second"].get<double>(), 880.25);
  EXPECT_TRUE(json["epochs"][2]["loss"].is_null());
  // The output parses back: no NaN tokens that JSON does not allow.
  EXPECT_EQ(nlohmann::json::parse(json.dump()), json);
}

v1::RanksResponse ranks_with(const std::vector<double>& images_per_second) {
  v1::RanksResponse ranks;
  // Added in reverse so the view must sort them.
  for (int i = static_cast<int>(images_per_second.size()) - 1; i >= 0; --i) {
    auto* rank = ranks.add_ranks();
    rank->set_rank(i);
    rank->set_phase("finetune");
    rank->set_epoch(2);
    rank->set_step(100 + i);
    rank->set_images_per_second(images_per_second[static_cast<std::size_t>(i)]);
    rank->set_data_wait_ms(1.5);
    rank->set_comm_ms(2.25);
    rank->set_updated_unix_ms(kT0);
  }
  return ranks;
}

std::vector<bool> straggler_flags(const RanksView& view) {
  std::vector<bool> flags;
  for (const auto& row : view.ranks) flags.push_back(row.straggler);
  return flags;
}

TEST(StragglerTest, BelowEightyPercentOfTheMedianIsMarked) {
  const RanksView view = find_stragglers(ranks_with({100, 79, 80, 120, 300}));
  EXPECT_DOUBLE_EQ(view.median_images_per_second, 100);
  // 79% is below the line; exactly 80% is not.
  EXPECT_EQ(straggler_flags(view), (std::vector<bool>{false, true, false, false, false}));
  EXPECT_DOUBLE_EQ(view.ranks[1].fraction_of_median, 0.79);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(view.ranks[static_cast<std::size_t>(i)].status.rank(), i);
}

TEST(StragglerTest, EvenCountUsesTheMeanOfTheMiddlePair) {
  const RanksView view = find_stragglers(ranks_with({100, 200, 300, 50}));
  EXPECT_DOUBLE_EQ(view.median_images_per_second, 150);
  EXPECT_EQ(straggler_flags(view), (std::vector<bool>{true, false, false, true}));
}

TEST(StragglerTest, RanksWithoutFiguresAndLoneRanksAreNotMarked) {
  EXPECT_EQ(straggler_flags(find_stragglers(ranks_with({100, 0, 100}))),
            (std::vector<bool>{false, false, false}));
  EXPECT_EQ(straggler_flags(find_stragglers(ranks_with({10}))), (std::vector<bool>{false}));
  const RanksView none = find_stragglers(ranks_with({0, 0}));
  EXPECT_EQ(none.median_images_per_second, 0);
  EXPECT_TRUE(std::isnan(none.ranks[0].fraction_of_median));
}

TEST(StragglerTest, ThresholdIsConfigurableAndChecked) {
  EXPECT_EQ(straggler_flags(find_stragglers(ranks_with({100, 90, 100}), 0.95)),
            (std::vector<bool>{false, true, false}));
  EXPECT_THROW(find_stragglers(ranks_with({1}), 0.0), std::invalid_argument);
  EXPECT_THROW(find_stragglers(ranks_with({1}), 1.5), std::invalid_argument);
}

TEST(RanksFormatTest, TableMarksStragglers) {
  const RanksView view = find_stragglers(ranks_with({100, 50, 110}));
  EXPECT_EQ(ranks_table(view, 0.8, kT0 + 3000),
            "rank  phase     epoch  step  img/s  vs median  data wait ms  comm ms  updated  note\n"
            "----  --------  -----  ----  -----  ---------  ------------  -------  -------  "
            "------------\n"
            "   0  finetune      2   100  100.0       100%           1.5      2.2   3s ago\n"
            "   1  finetune      2   101   50.0        50%           1.5      2.2   3s ago  "
            "<- straggler\n"
            "   2  finetune      2   102  110.0       110%           1.5      2.2   3s ago\n"
            "median 100.0 img/s; 1 straggler (below 80% of the median)\n");
  EXPECT_EQ(ranks_table(find_stragglers(v1::RanksResponse()), 0.8, kT0),
            "no rank has reported yet\n");
}

TEST(RanksFormatTest, Json) {
  const RanksView view = find_stragglers(ranks_with({100, 50, 110}));
  const nlohmann::json json = ranks_json("r1", view, 0.8);
  EXPECT_EQ(json["run"], "r1");
  EXPECT_DOUBLE_EQ(json["median_images_per_second"].get<double>(), 100);
  EXPECT_DOUBLE_EQ(json["straggler_threshold"].get<double>(), 0.8);
  ASSERT_EQ(json["ranks"].size(), 3u);
  EXPECT_EQ(json["ranks"][1]["rank"], 1);
  EXPECT_EQ(json["ranks"][1]["straggler"], true);
  EXPECT_EQ(json["ranks"][0]["straggler"], false);
  EXPECT_DOUBLE_EQ(json["ranks"][1]["fraction_of_median"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(json["ranks"][1]["comm_ms"].get<double>(), 2.25);
  EXPECT_EQ(json["ranks"][1]["updated_unix_ms"], kT0);
}

v1::Run sample_run() {
  v1::Run run;
  run.set_name("cifar-b0");
  run.set_dataset("cifar100");
  run.set_world_size(4);
  run.set_state(v1::RUN_STATE_RUNNING);
  run.set_attempt(2);
  run.set_started_unix_ms(kT0);
  run.set_config_json(R"({"epochs": 10})");
  run.add_events("started");
  run.add_events("resumed");
  return run;
}

TEST(RunsFormatTest, TableAndDetails) {
  v1::Run done = sample_run();
  done.set_name("old");
  done.set_state(v1::RUN_STATE_FAILED);
  done.set_attempt(1);
  done.set_ended_unix_ms(kT0 + 45'000);
  done.set_message("rank 3 lost");
  EXPECT_EQ(runs_table({sample_run(), done}, kT0 + 187'000),
            "run       state    dataset   world  attempt  started               duration  message\n"
            "--------  -------  --------  -----  -------  --------------------  --------  "
            "-----------\n"
            "cifar-b0  running  cifar100      4        2  2026-01-02 03:04:05Z     3m07s\n"
            "old       failed   cifar100      4        1  2026-01-02 03:04:05Z       45s  "
            "rank 3 lost\n");
  EXPECT_EQ(runs_table({}, kT0), "no runs\n");
  const std::string details = run_details(sample_run(), kT0 + 1000);
  EXPECT_NE(details.find("state      running\n"), std::string::npos) << details;
  EXPECT_NE(details.find("config     {\"epochs\": 10}\n"), std::string::npos) << details;
  EXPECT_NE(details.find("events\n  started\n  resumed\n"), std::string::npos) << details;
}

TEST(RunsFormatTest, StatusTextAndJson) {
  v1::StatusResponse status;
  status.set_version("0.1.0");
  status.add_datasets("cifar100");
  status.add_datasets("synthetic");
  status.add_errors("checkpoint write failed: disk full");
  *status.add_runs() = sample_run();
  const std::string text = status_text(status, /*one_run=*/false, kT0);
  EXPECT_EQ(text.substr(0, text.find("\n\n") + 2),
            "coordinator 0.1.0\n"
            "datasets    cifar100, synthetic\n"
            "recent errors (1)\n"
            "  checkpoint write failed: disk full\n\n");
  EXPECT_NE(text.find("cifar-b0  running"), std::string::npos) << text;
  EXPECT_NE(status_text(status, /*one_run=*/true, kT0).find("run        cifar-b0\n"),
            std::string::npos);

  const nlohmann::json json = status_json(status);
  EXPECT_EQ(json["version"], "0.1.0");
  EXPECT_EQ(json["datasets"], (nlohmann::json{"cifar100", "synthetic"}));
  EXPECT_EQ(json["errors"].size(), 1u);
  const auto& run = json["runs"][0];
  EXPECT_EQ(run["name"], "cifar-b0");
  EXPECT_EQ(run["state"], "running");
  EXPECT_EQ(run["world_size"], 4);
  EXPECT_EQ(run["attempt"], 2);
  EXPECT_EQ(run["started_unix_ms"], kT0);
  EXPECT_EQ(run["config"]["epochs"], 10);  // parsed, not a string
  EXPECT_EQ(run["events"], (nlohmann::json{"started", "resumed"}));
}

TEST(RunsFormatTest, UnparsableConfigStaysText) {
  v1::Run run = sample_run();
  run.set_config_json("not json");
  EXPECT_EQ(run_json(run)["config"], "not json");
}

TEST(EventFormatTest, EpochAndRunLines) {
  v1::MetricsEvent event;
  event.set_sequence(7);
  *event.mutable_epoch() =
      epoch("head", 3, v1::SPLIT_KIND_VALIDATION, 1.23456, 0.5, 0.75, 10000, 1234.56);
  EXPECT_EQ(event_line(event),
            "#7 head epoch 3 validation: loss 1.2346 top1 50.00% top3 75.00% samples 10000 "
            "img/s 1234.6 lr 0.001");
  const nlohmann::json json = event_json(event);
  EXPECT_EQ(json["sequence"], 7);
  EXPECT_EQ(json["type"], "epoch");
  EXPECT_EQ(json["epoch"]["split"], "validation");

  v1::MetricsEvent end;
  *end.mutable_run() = sample_run();
  end.mutable_run()->set_state(v1::RUN_STATE_COMPLETED);
  end.mutable_run()->set_message("test top1 81%");
  EXPECT_EQ(event_line(end), "run cifar-b0 completed (attempt 2): test top1 81%");
  EXPECT_EQ(event_json(end)["type"], "run");
  EXPECT_EQ(event_json(end)["run"]["state"], "completed");
}

v1::CheckpointInfo sample_checkpoint() {
  v1::CheckpointInfo c;
  c.set_id("cifar-b0-head-e3-s1250");
  c.set_sha256("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  c.set_size_bytes(50LL << 20);
  c.set_created_unix_ms(kT0);
  auto* meta = c.mutable_meta();
  meta->set_run("cifar-b0");
  meta->set_phase("head");
  meta->set_epoch(3);
  meta->set_step(1250);
  meta->set_metric_name("val_loss");
  meta->set_metric_value(1.5);
  meta->set_direction(v1::METRIC_DIRECTION_MINIMIZE);
  return c;
}

TEST(CheckpointFormatTest, TableDetailsAndJson) {
  EXPECT_EQ(checkpoints_table({sample_checkpoint()}),
            "id                      phase  epoch  step  metric                value      size  "
            "created               sha256\n"
            "----------------------  -----  -----  ----  -------------------  ------  --------  "
            "--------------------  ------------\n"
            "cifar-b0-head-e3-s1250  head       3  1250  val_loss (minimize)  1.5000  50.0 MiB  "
            "2026-01-02 03:04:05Z  0123456789ab\n");
  EXPECT_EQ(checkpoints_table({}), "no checkpoints\n");
  const std::string details = checkpoint_details(sample_checkpoint());
  EXPECT_NE(details.find("metric    val_loss = 1.500000 (minimize)\n"), std::string::npos)
      << details;
  EXPECT_NE(details.find("size      50.0 MiB (52428800 bytes)\n"), std::string::npos) << details;

  const nlohmann::json json = checkpoint_json(sample_checkpoint());
  EXPECT_EQ(json["id"], "cifar-b0-head-e3-s1250");
  EXPECT_EQ(json["run"], "cifar-b0");
  EXPECT_EQ(json["epoch"], 3);
  EXPECT_EQ(json["step"], 1250);
  EXPECT_EQ(json["metric_name"], "val_loss");
  EXPECT_DOUBLE_EQ(json["metric_value"].get<double>(), 1.5);
  EXPECT_EQ(json["direction"], "minimize");
  EXPECT_EQ(json["size_bytes"], 50LL << 20);
  EXPECT_EQ(json["sha256"].get<std::string>().size(), 64u);
}

// Two classes, four samples; the classes listed out of index order, as the
// formatter must not rely on the server's order.
v1::RunReport sample_report() {
  v1::RunReport r;
  r.set_run("cifar-b0");
  r.set_split("test");
  r.set_checkpoint_id("cifar-b0-head-e3-s1250");
  r.set_samples(4);
  r.set_loss(0.5);
  r.set_top1(0.75);
  r.set_top3(1.0);
  r.set_num_classes(2);
  r.set_macro_precision(0.8333);
  r.set_macro_recall(0.75);
  r.set_macro_f1(0.7333);
  r.set_weighted_f1(0.7333);
  r.set_created_unix_ms(kT0);
  for (int count : {2, 0, 1, 1}) r.add_confusion(count);
  auto* dog = r.add_classes();
  dog->set_index(1);
  dog->set_label("dog");
  dog->set_precision(1.0);
  dog->set_recall(0.5);
  dog->set_f1(2.0 / 3);
  dog->set_support(2);
  auto* cat = r.add_classes();
  cat->set_index(0);
  cat->set_label("cat");
  cat->set_precision(2.0 / 3);
  cat->set_recall(1.0);
  cat->set_f1(0.8);
  cat->set_support(2);
  return r;
}

TEST(ReportFormatTest, HeadlinesThenOneRowPerClassByIndex) {
  EXPECT_EQ(report_text(sample_report(), false),
            "run:              cifar-b0\n"
            "split:            test\n"
            "samples:          4\n"
            "checkpoint:       cifar-b0-head-e3-s1250\n"
            "created:          2026-01-02 03:04:05Z\n"
            "loss:             0.5000\n"
            "top-1:            75.00%\n"
            "top-3:            100.00%\n"
            "macro precision:  0.8333\n"
            "macro recall:     0.7500\n"
            "macro F1:         0.7333\n"
            "weighted F1:      0.7333\n"
            "macro averages:   over all 2 classes\n"
            "\n"
            "index  label  precision  recall      f1  support\n"
            "-----  -----  ---------  ------  ------  -------\n"
            "    0  cat       0.6667  1.0000  0.8000        2\n"
            "    1  dog       1.0000  0.5000  0.6667        2\n");
}

TEST(ReportFormatTest, ConfusionMatrixRowsAreTrueColumnsPredicted) {
  const std::string text = report_text(sample_report(), true);
  EXPECT_NE(text.find("    1  dog       1.0000  0.5000  0.6667        2\n"
                      "\n"
                      "confusion matrix (rows: true class, columns: predicted)\n"
                      "true\\pred  0  1\n"
                      "---------  -  -\n"
                      "        0  2  0\n"
                      "        1  1  1\n"),
            std::string::npos)
      << text;
  v1::RunReport broken = sample_report();
  broken.mutable_confusion()->RemoveLast();
  EXPECT_EQ(confusion_text(broken),
            "confusion matrix: 3 counts for 2 classes (expected num_classes^2)\n");
}

TEST(ReportFormatTest, JsonHasEveryFieldAndTheMatrixAsRows) {
  v1::RunReport report = sample_report();
  report.set_loss(kNaN);
  const nlohmann::json json = report_json(report);
  EXPECT_EQ(json["run"], "cifar-b0");
  EXPECT_EQ(json["split"], "test");
  EXPECT_EQ(json["checkpoint_id"], "cifar-b0-head-e3-s1250");
  EXPECT_EQ(json["samples"], 4);
  EXPECT_TRUE(json["loss"].is_null());  // NaN, as everywhere in coordctl's JSON
  EXPECT_DOUBLE_EQ(json["top1"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(json["top3"].get<double>(), 1.0);
  EXPECT_EQ(json["num_classes"], 2);
  EXPECT_DOUBLE_EQ(json["macro_precision"].get<double>(), 0.8333);
  EXPECT_DOUBLE_EQ(json["macro_recall"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(json["macro_f1"].get<double>(), 0.7333);
  EXPECT_DOUBLE_EQ(json["weighted_f1"].get<double>(), 0.7333);
  EXPECT_EQ(json["created_unix_ms"], kT0);
  ASSERT_EQ(json["classes"].size(), 2u);
  EXPECT_EQ(json["classes"][0],
            nlohmann::json::parse(R"({"index": 0, "label": "cat", "precision": 0.6666666666666666,
                                      "recall": 1.0, "f1": 0.8, "support": 2})"));
  EXPECT_EQ(json["classes"][1]["label"], "dog");
  EXPECT_EQ(json["confusion"], nlohmann::json::parse("[[2, 0], [1, 1]]"));
  EXPECT_EQ(json["macro_classes"], 2);
  EXPECT_EQ(json["absent_classes"], nlohmann::json::array());
  EXPECT_EQ(json["absent_labels"], nlohmann::json::array());
  EXPECT_EQ(json.size(), 18u) << json.dump();
}

// `classes` of 100, classes 0..occurring-1 each right twice (F1 1), the rest
// absent; macro_f1 as a current trainer stores it (the mean over the classes
// that occur).
v1::RunReport report_with_absent_classes(int occurring) {
  v1::RunReport r;
  r.set_run("r1");
  r.set_num_classes(100);
  r.set_samples(2 * occurring);
  for (int t = 0; t < 100; ++t) {
    auto* c = r.add_classes();
    c->set_index(t);
    c->set_label(t == 12 ? "" : "label" + std::to_string(t));
    const bool occurs = t < occurring;
    c->set_precision(occurs ? 1.0 : 0.0);
    c->set_recall(occurs ? 1.0 : 0.0);
    c->set_f1(occurs ? 1.0 : 0.0);
    c->set_support(occurs ? 2 : 0);
    for (int p = 0; p < 100; ++p) r.add_confusion(p == t && occurs ? 2 : 0);
  }
  r.set_macro_precision(occurring > 0 ? 1.0 : 0.0);
  r.set_macro_recall(occurring > 0 ? 1.0 : 0.0);
  r.set_macro_f1(occurring > 0 ? 1.0 : 0.0);
  r.set_weighted_f1(occurring > 0 ? 1.0 : 0.0);
  return r;
}

TEST(ReportFormatTest, SaysTheMacrosAverageOverTheClassesThatOccurAndNamesTheOthers) {
  const v1::RunReport r = report_with_absent_classes(10);
  const MacroScope scope = macro_scope(r);
  EXPECT_TRUE(scope.known);
  EXPECT_EQ(scope.averaged, 10);
  ASSERT_EQ(scope.absent.size(), 90u);
  EXPECT_EQ(scope.absent.front(), 10);
  EXPECT_EQ(scope.absent.back(), 99);
  const std::string text = report_text(r, false);
  EXPECT_NE(text.find("macro averages:   over the 10 of 100 classes that occur (in the true labels "
                      "or the predictions)\n"
                      "never occur:      90 classes: label10, label11, class 12, label13, label14, "
                      "label15, label16, label17, label18, label19 and 80 more (--json lists them "
                      "all)\n\n"),
            std::string::npos)
      << text;

  const nlohmann::json json = report_json(r);
  EXPECT_EQ(json["macro_classes"], 10);
  ASSERT_EQ(json["absent_classes"].size(), 90u);
  EXPECT_EQ(json["absent_classes"][0], 10);
  EXPECT_EQ(json["absent_labels"][2], "");  // class 12 has no label
  EXPECT_EQ(json["absent_labels"][89], "label99");
}

TEST(ReportFormatTest, AClassOnlyPredictedOccurs) {
  v1::RunReport r = sample_report();
  r.set_num_classes(3);
  r.clear_confusion();
  // cat is predicted as owl once; owl is never true.
  for (int count : {1, 0, 1, 1, 1, 0, 0, 0, 0}) r.add_confusion(count);
  auto* owl = r.add_classes();
  owl->set_index(2);
  owl->set_label("owl");
  EXPECT_TRUE(macro_scope(r).absent.empty());
  EXPECT_NE(report_text(r, false).find("macro averages:   over all 3 classes\n"),
            std::string::npos);
}

TEST(ReportFormatTest, OneAbsentClassAndAnOlderReportAveragingOverAll) {
  v1::RunReport r = report_with_absent_classes(99);
  EXPECT_NE(report_text(r, false).find("over the 99 of 100 classes that occur (in the true labels "
                                       "or the predictions)\n"
                                       "never occur:      1 class: label99\n\n"),
            std::string::npos)
      << report_text(r, false);
  // A trainer from before the fix stored the mean over all 100 classes.
  r.set_macro_f1(0.99);
  const MacroScope scope = macro_scope(r);
  EXPECT_EQ(scope.averaged, 100);
  EXPECT_EQ(scope.absent, std::vector<int>{99});
  EXPECT_NE(report_text(r, false).find(
                "macro averages:   over all 100 classes, the 1 that never occurs counted as 0 (an "
                "older report)\n"
                "never occur:      1 class: label99\n"),
            std::string::npos)
      << report_text(r, false);
  EXPECT_EQ(report_json(r)["macro_classes"], 100);
}

TEST(ReportFormatTest, NoSamplesOrAnUnreadableMatrixSaySo) {
  const v1::RunReport empty = report_with_absent_classes(0);
  const std::string text = report_text(empty, false);
  EXPECT_NE(text.find("macro averages:   0, no class occurs (no samples)\n\n"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("never occur"), std::string::npos) << text;
  EXPECT_EQ(report_json(empty)["macro_classes"], 0);

  v1::RunReport broken = sample_report();
  broken.mutable_confusion()->RemoveLast();
  EXPECT_FALSE(macro_scope(broken).known);
  EXPECT_NE(report_text(broken, false)
                .find("macro averages:   over unknown classes (the confusion matrix is not "
                      "num_classes^2)\n"),
            std::string::npos)
      << report_text(broken, false);
  const nlohmann::json json = report_json(broken);
  EXPECT_TRUE(json["macro_classes"].is_null());
  EXPECT_TRUE(json["absent_classes"].is_null());
  EXPECT_TRUE(json["absent_labels"].is_null());
}

}  // namespace
}  // namespace xfer::coordinator::coordctl
