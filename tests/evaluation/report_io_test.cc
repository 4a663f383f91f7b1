// The report's other forms: RunReport proto, JSON, the CSV files on disk,
// and the terminal summary.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/evaluation/evaluation_report.h"
#include "trainer/evaluation/report_files.h"
#include "trainer/evaluation/report_format.h"
#include "trainer/evaluation/report_proto.h"

namespace xfer::trainer::evaluation {
namespace {

namespace fs = std::filesystem;

ClassificationCounts counts_from(const std::vector<std::vector<int>>& matrix) {
  ClassificationCounts counts(static_cast<int>(matrix.size()));
  for (std::size_t t = 0; t < matrix.size(); ++t) {
    for (std::size_t p = 0; p < matrix[t].size(); ++p) {
      for (int k = 0; k < matrix[t][p]; ++k) {
        counts.add(static_cast<std::int64_t>(t), static_cast<std::int64_t>(p), t == p || k == 0,
                   0.25);
      }
    }
  }
  return counts;
}

// Rows = true class. Column sums 3 2 0; tp 2 1 0.
//   cat:         p = 2/3, r = 2/2 = 1,  f1 = 4/(4+1+0) = 0.8, support 2
//   bird, small: p = 1/2, r = 1/2,      f1 = 2/(2+1+1) = 0.5, support 2
//   say "hi":    p = 0/0 -> 0, r = 0/1, f1 = 0,               support 1
EvaluationReport three_class_report() {
  return summarize(counts_from({{2, 0, 0}, {1, 1, 0}, {0, 1, 0}}),
                   {"cat", "bird, small", "say \"hi\""}, "test", "ckpt-3");
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A fresh directory under the system temp dir, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "xfer_eval_test_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// ---- proto ----

TEST(ReportProtoTest, RoundTripsThroughTheWireFormat) {
  const EvaluationReport r = three_class_report();
  const v1::RunReport message = to_proto(r, "run-42");
  EXPECT_EQ(message.run(), "run-42");
  EXPECT_EQ(message.split(), "test");
  EXPECT_EQ(message.checkpoint_id(), "ckpt-3");
  EXPECT_EQ(message.num_classes(), 3);
  EXPECT_EQ(message.samples(), 5);
  EXPECT_EQ(message.created_unix_ms(), 0);  // the server's to set
  ASSERT_EQ(message.classes_size(), 3);
  EXPECT_EQ(message.classes(1).index(), 1);
  EXPECT_EQ(message.classes(1).label(), "bird, small");
  EXPECT_DOUBLE_EQ(message.classes(0).f1(), 0.8);
  EXPECT_EQ(message.classes(2).support(), 1);
  ASSERT_EQ(message.confusion_size(), 9);
  EXPECT_EQ(message.confusion(3), 1);  // [true 1][predicted 0]

  std::string wire;
  ASSERT_TRUE(message.SerializeToString(&wire));
  v1::RunReport parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  const EvaluationReport back = from_proto(parsed);
  EXPECT_EQ(back.split, r.split);
  EXPECT_EQ(back.checkpoint_id, r.checkpoint_id);
  EXPECT_EQ(back.num_classes, r.num_classes);
  EXPECT_EQ(back.labels, r.labels);
  EXPECT_EQ(back.samples, r.samples);
  EXPECT_EQ(back.loss, r.loss);
  EXPECT_EQ(back.top1, r.top1);
  EXPECT_EQ(back.top3, r.top3);
  ASSERT_EQ(back.classes.size(), r.classes.size());
  for (std::size_t c = 0; c < r.classes.size(); ++c) {
    EXPECT_EQ(back.classes[c].precision, r.classes[c].precision);
    EXPECT_EQ(back.classes[c].recall, r.classes[c].recall);
    EXPECT_EQ(back.classes[c].f1, r.classes[c].f1);
    EXPECT_EQ(back.classes[c].support, r.classes[c].support);
  }
  EXPECT_EQ(back.macro_precision, r.macro_precision);
  EXPECT_EQ(back.macro_recall, r.macro_recall);
  EXPECT_EQ(back.macro_f1, r.macro_f1);
  EXPECT_EQ(back.weighted_f1, r.weighted_f1);
  EXPECT_EQ(back.absent_classes, r.absent_classes);
  EXPECT_EQ(back.confusion, r.confusion);
}

TEST(ReportProtoTest, AbsentClassesAreRecomputedFromTheConfusionMatrix) {
  // The proto has no absent_classes: from_proto derives them, so a report
  // read back still says which classes the macros skip.
  const EvaluationReport r = summarize(
      counts_from({{2, 0, 0, 0}, {0, 0, 0, 0}, {1, 0, 0, 0}, {0, 0, 0, 0}}), {}, "test", "");
  ASSERT_EQ(r.absent_classes, (std::vector<int>{1, 3}));
  const EvaluationReport back = from_proto(to_proto(r, "run"));
  EXPECT_EQ(back.absent_classes, r.absent_classes);
  EXPECT_EQ(back.macro_f1, r.macro_f1);
  EXPECT_NO_THROW(validate_report(back));
}

TEST(ReportProtoTest, EmptyProtoLabelsBecomeClassIndexNames) {
  v1::RunReport message = to_proto(three_class_report(), "run");
  message.mutable_classes(1)->clear_label();
  EXPECT_EQ(from_proto(message).labels, (std::vector<std::string>{"cat", "class_1", "say \"hi\""}));
}

// from_proto's error for `message`, or "" when it accepts it.
std::string from_proto_error(const v1::RunReport& message) {
  try {
    from_proto(message);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(ReportProtoTest, FromProtoRejectsInconsistentMessagesNamingTheField) {
  const v1::RunReport good = to_proto(three_class_report(), "run");
  ASSERT_EQ(from_proto_error(good), "");

  v1::RunReport m = good;
  m.set_num_classes(0);
  EXPECT_NE(from_proto_error(m).find("num_classes is 0"), std::string::npos) << from_proto_error(m);

  m = good;
  m.mutable_classes()->RemoveLast();
  EXPECT_NE(from_proto_error(m).find("classes has 2 entries, expected num_classes = 3"),
            std::string::npos)
      << from_proto_error(m);

  m = good;
  m.add_confusion(0);
  EXPECT_NE(from_proto_error(m).find("confusion has 10 cells, expected num_classes^2 = 9"),
            std::string::npos)
      << from_proto_error(m);

  m = good;
  m.mutable_classes(2)->set_index(7);
  EXPECT_NE(from_proto_error(m).find("classes[2].index is 7"), std::string::npos)
      << from_proto_error(m);

  m = good;
  m.mutable_classes(0)->set_support(9);
  EXPECT_NE(from_proto_error(m).find("classes[0].support is 9, expected 2"), std::string::npos)
      << from_proto_error(m);

  m = good;
  m.set_samples(6);
  EXPECT_NE(from_proto_error(m).find("samples is 6, expected 5"), std::string::npos)
      << from_proto_error(m);

  m = good;
  m.set_confusion(0, -2);
  EXPECT_NE(from_proto_error(m).find("confusion[0][0] is -2"), std::string::npos)
      << from_proto_error(m);

  EXPECT_NE(from_proto_error(v1::RunReport()), "");
}

TEST(ReportProtoTest, ToProtoRejectsAnInvalidReport) {
  EvaluationReport r = three_class_report();
  r.labels.pop_back();
  EXPECT_THROW(to_proto(r, "run"), std::invalid_argument);
}

// ---- JSON ----

TEST(ReportJsonTest, HasEveryFieldInOrderWithConfusionAsRows) {
  const EvaluationReport r = three_class_report();
  const std::string text = to_json(r);
  const auto json = nlohmann::ordered_json::parse(text);
  std::vector<std::string> keys;
  for (const auto& item : json.items()) keys.push_back(item.key());
  EXPECT_EQ(keys,
            (std::vector<std::string>{"split", "checkpoint_id", "num_classes", "labels", "samples",
                                      "loss", "top1", "top3", "classes", "macro_precision",
                                      "macro_recall", "macro_f1", "weighted_f1", "macro_classes",
                                      "absent_classes", "absent_labels", "confusion"}));
  EXPECT_EQ(json["split"], "test");
  EXPECT_EQ(json["checkpoint_id"], "ckpt-3");
  EXPECT_EQ(json["num_classes"], 3);
  EXPECT_EQ(json["labels"], nlohmann::ordered_json({"cat", "bird, small", "say \"hi\""}));
  EXPECT_EQ(json["samples"], 5);
  EXPECT_EQ(json["loss"].get<double>(), r.loss);
  EXPECT_EQ(json["top1"].get<double>(), r.top1);
  EXPECT_EQ(json["top3"].get<double>(), r.top3);
  ASSERT_EQ(json["classes"].size(), 3u);
  const auto& bird = json["classes"][1];
  EXPECT_EQ(bird["index"], 1);
  EXPECT_EQ(bird["label"], "bird, small");
  EXPECT_EQ(bird["precision"].get<double>(), 0.5);
  EXPECT_EQ(bird["recall"].get<double>(), 0.5);
  EXPECT_EQ(bird["f1"].get<double>(), 0.5);
  EXPECT_EQ(bird["support"], 2);
  EXPECT_EQ(json["classes"][0]["precision"].get<double>(), 2.0 / 3.0);  // round-trips exactly
  EXPECT_EQ(json["macro_precision"].get<double>(), r.macro_precision);
  EXPECT_EQ(json["macro_recall"].get<double>(), r.macro_recall);
  EXPECT_EQ(json["macro_f1"].get<double>(), r.macro_f1);
  EXPECT_EQ(json["weighted_f1"].get<double>(), r.weighted_f1);
  EXPECT_EQ(json["macro_classes"], 3);
  EXPECT_EQ(json["absent_classes"], nlohmann::ordered_json::array());
  EXPECT_EQ(json["absent_labels"], nlohmann::ordered_json::array());
  EXPECT_EQ(json["confusion"], nlohmann::ordered_json::parse("[[2,0,0],[1,1,0],[0,1,0]]"));
  // Pretty: one line per field, per class and per confusion row.
  EXPECT_NE(text.find("\n  \"confusion\": [\n    [2,0,0],\n    [1,1,0],\n    [0,1,0]\n  ]\n}\n"),
            std::string::npos)
      << text;
}

TEST(ReportJsonTest, NamesTheAbsentClassesByIndexAndLabel) {
  const EvaluationReport r =
      summarize(counts_from({{2, 0, 0, 0}, {0, 0, 0, 0}, {1, 0, 1, 0}, {0, 0, 0, 0}}),
                {"cat", "dog", "owl", "yak"}, "test", "");
  const auto json = nlohmann::ordered_json::parse(to_json(r));
  EXPECT_EQ(json["macro_classes"], 2);
  EXPECT_EQ(json["absent_classes"], nlohmann::ordered_json::parse("[1, 3]"));
  EXPECT_EQ(json["absent_labels"], nlohmann::ordered_json({"dog", "yak"}));
}

TEST(ReportJsonTest, NonFiniteLossBecomesNullAndBadUtf8DoesNotThrow) {
  EvaluationReport r = three_class_report();
  r.loss = std::numeric_limits<double>::quiet_NaN();
  r.labels[0] = "bad\xff";
  const auto json = nlohmann::json::parse(to_json(r));
  EXPECT_TRUE(json["loss"].is_null());
  EXPECT_EQ(json["labels"][0], "bad\xEF\xBF\xBD");
}

// ---- CSV files ----

const char kClassesCsv[] =
    "index,label,precision,recall,f1,support\n"
    "0,cat,0.6666666666666666,1,0.8,2\n"
    "1,\"bird, small\",0.5,0.5,0.5,2\n"
    "2,\"say \"\"hi\"\"\",0,0,0,1\n";
const char kConfusionCsv[] =
    "true\\predicted,cat,\"bird, small\",\"say \"\"hi\"\"\"\n"
    "cat,2,0,0\n"
    "\"bird, small\",1,1,0\n"
    "\"say \"\"hi\"\"\",0,1,0\n";

TEST(ReportFilesTest, CsvTextsAreExactWithRfc4180Quoting) {
  const EvaluationReport r = three_class_report();
  EXPECT_EQ(classes_csv(r), kClassesCsv);
  EXPECT_EQ(confusion_csv(r), kConfusionCsv);
}

TEST(ReportFilesTest, WritesTheThreeFilesIntoANewNestedDirectory) {
  TempDir temp;
  const fs::path dir = temp.path() / "runs" / "r1" / "eval";
  const EvaluationReport r = three_class_report();
  write_report_files(r, dir);
  EXPECT_EQ(read_file(dir / "classes.csv"), kClassesCsv);
  EXPECT_EQ(read_file(dir / "confusion.csv"), kConfusionCsv);
  EXPECT_EQ(read_file(dir / "report.json"), to_json(r));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"classes.csv", "confusion.csv", "report.json"}))
      << "temporary files left behind";
}

TEST(ReportFilesTest, ReplacesExistingFiles) {
  TempDir temp;
  { std::ofstream(temp.path() / "classes.csv") << "old and much longer content than before\n"; }
  const EvaluationReport r = three_class_report();
  write_report_files(r, temp.path());
  EXPECT_EQ(read_file(temp.path() / "classes.csv"), kClassesCsv);
}

// The runtime_error write_report_files throws for `dir`, or "" if none.
std::string write_error(const EvaluationReport& r, const fs::path& dir) {
  try {
    write_report_files(r, dir);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(ReportFilesTest, DirectoryUnderARegularFileFailsNamingThePath) {
  TempDir temp;
  const fs::path file = temp.path() / "plain";
  { std::ofstream(file) << "x"; }
  const fs::path dir = file / "eval";
  const std::string error = write_error(three_class_report(), dir);
  EXPECT_NE(error.find(dir.string()), std::string::npos) << error;
  EXPECT_NE(error.find("Not a directory"), std::string::npos) << error;  // errno text

  const std::string error2 = write_error(three_class_report(), file);
  EXPECT_NE(error2.find(file.string()), std::string::npos) << error2;
}

TEST(ReportFilesTest, UnwritableDirectoryFailsNamingTheFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  TempDir temp;
  fs::permissions(temp.path(), fs::perms::owner_read | fs::perms::owner_exec);
  const std::string error = write_error(three_class_report(), temp.path());
  EXPECT_NE(error.find((temp.path() / "report.json").string()), std::string::npos) << error;
  EXPECT_NE(error.find("Permission denied"), std::string::npos) << error;
}

TEST(ReportFilesTest, TargetThatCannotBeReplacedFailsNamingItAndCleansUp) {
  // Works as root too: rename() cannot put a file over a non-empty directory.
  TempDir temp;
  fs::create_directories(temp.path() / "confusion.csv" / "occupied");
  const std::string error = write_error(three_class_report(), temp.path());
  EXPECT_NE(error.find((temp.path() / "confusion.csv").string()), std::string::npos) << error;
  EXPECT_NE(error.find("rename"), std::string::npos) << error;
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(temp.path())) {
    names.push_back(entry.path().filename());
  }
  std::sort(names.begin(), names.end());
  // The files before it were written; no temporary file is left.
  EXPECT_EQ(names, (std::vector<std::string>{"classes.csv", "confusion.csv", "report.json"}));
}

TEST(ReportFilesTest, InvalidReportIsRejectedBeforeTouchingDisk) {
  TempDir temp;
  EvaluationReport r = three_class_report();
  r.confusion.pop_back();
  EXPECT_THROW(write_report_files(r, temp.path() / "never"), std::invalid_argument);
  EXPECT_FALSE(fs::exists(temp.path() / "never"));
  EXPECT_THROW(write_report_files(three_class_report(), ""), std::invalid_argument);
}

// ---- terminal summary ----

TEST(ReportSummaryTest, ShowsTheHeadlineNumbersAndTheFiveWorstClasses) {
  // Seven classes; class c has c+1 correct and (for c < 6) one sample
  // mistaken for class c+1, so F1 rises with c except the last, which is
  // perfect: worst five are 0, 1, 2, 3, 4.
  std::vector<std::vector<int>> m(7, std::vector<int>(7, 0));
  for (int c = 0; c < 7; ++c) {
    m[c][c] = c + 1;
    if (c < 6) m[c][c + 1] = 1;
  }
  ClassificationCounts counts = counts_from(m);
  const EvaluationReport r = summarize(counts, {}, "test", "ckpt-9");
  const std::string text = format_summary(r);
  EXPECT_NE(text.find("test: " + std::to_string(r.samples) + " samples, checkpoint ckpt-9"),
            std::string::npos)
      << text;
  char top1[32];
  std::snprintf(top1, sizeof top1, "top-1 %.2f%%", 100 * r.top1);
  EXPECT_NE(text.find(top1), std::string::npos) << text;
  EXPECT_NE(text.find("top-3 "), std::string::npos) << text;
  EXPECT_NE(text.find("loss 0.2500"), std::string::npos) << text;
  EXPECT_NE(text.find("macro F1 "), std::string::npos) << text;
  EXPECT_NE(text.find("weighted F1 "), std::string::npos) << text;
  std::size_t last = 0;
  for (int c = 0; c < 5; ++c) {
    const std::size_t at = text.find("class_" + std::to_string(c));
    ASSERT_NE(at, std::string::npos) << text;
    EXPECT_GT(at, last) << "worst classes out of order:\n" << text;
    last = at;
  }
  EXPECT_EQ(text.find("class_5"), std::string::npos) << text;
  EXPECT_EQ(text.find("class_6"), std::string::npos) << text;
  EXPECT_EQ(text.back(), '\n');
}

TEST(ReportSummaryTest, FewerThanFiveClassesListsThemAll) {
  const std::string text = format_summary(three_class_report());
  EXPECT_NE(text.find("say \"hi\""), std::string::npos) << text;
  EXPECT_NE(text.find("bird, small"), std::string::npos) << text;
  EXPECT_NE(text.find("cat"), std::string::npos) << text;
  // Lowest F1 first: say "hi" (0), bird (0.5), cat (0.8).
  EXPECT_LT(text.find("say \"hi\""), text.find("bird, small")) << text;
  EXPECT_LT(text.find("bird, small"), text.find("cat")) << text;
}

TEST(ReportSummaryTest, AllClassesOccurring) {
  const std::string text = format_summary(three_class_report());
  EXPECT_NE(text.find("  macro averages over all 3 classes\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("never occur"), std::string::npos) << text;
}

TEST(ReportSummaryTest, SaysWhatTheMacrosAverageOverAndNamesTheAbsentClasses) {
  // 100 classes, 10 occurring: class c < 10 right c+1 times and once
  // mistaken for class (c+1) % 10, so its F1 is (c+1)/(c+2).
  std::vector<std::vector<int>> m(100, std::vector<int>(100, 0));
  for (int c = 0; c < 10; ++c) {
    m[c][c] = c + 1;
    m[c][(c + 1) % 10] = 1;
  }
  std::vector<std::string> labels;
  for (int c = 0; c < 100; ++c) labels.push_back("label" + std::to_string(c));
  const std::string text = format_summary(summarize(counts_from(m), labels, "test", ""));
  EXPECT_NE(text.find("  macro averages over the 10 of 100 classes that occur (in the true "
                      "labels or the predictions)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  90 classes never occur: label10, label11, label12, label13, label14, "
                      "label15, label16, label17, label18, label19 and 80 more (the JSON "
                      "report's \"absent_classes\" lists them all)\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("label20"), std::string::npos) << text;
  // The worst classes are the five lowest of those that occur: F1
  // (c+1)/(c+2) rises with c, so classes 0..4, not five empty ones.
  const std::string worst = text.substr(text.find("worst classes by F1:"));
  for (int c = 0; c < 5; ++c) {
    EXPECT_NE(worst.find(" label" + std::to_string(c) + " "), std::string::npos) << text;
  }
  EXPECT_EQ(worst.find("label5"), std::string::npos) << text;
  EXPECT_EQ(worst.find("support 0"), std::string::npos) << text;
}

TEST(ReportSummaryTest, OneAbsentClassIsNamedInTheSingular) {
  const std::string text = format_summary(
      summarize(counts_from({{2, 0, 0}, {0, 1, 0}, {0, 0, 0}}), {"cat", "dog", "yak"}, "test", ""));
  EXPECT_NE(text.find("  macro averages over the 2 of 3 classes that occur"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  1 class never occurs: yak\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("more"), std::string::npos) << text;
}

TEST(ReportSummaryTest, NoSamplesSaysNoClassOccursAndListsNoWorstClasses) {
  const std::string text = format_summary(summarize(ClassificationCounts(3), {}, "test", ""));
  EXPECT_NE(text.find("  macro averages are 0: no class occurs (no samples)\n"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("worst classes"), std::string::npos) << text;
  EXPECT_EQ(text.find("class_0"), std::string::npos) << text;
}

}  // namespace
}  // namespace xfer::trainer::evaluation
