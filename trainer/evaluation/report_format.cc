#include "trainer/evaluation/report_format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace xfer::trainer::evaluation {
namespace {

// ordered_json keeps the keys in the order written, which is the order of the
// struct (nlohmann::json would sort them).
using Json = nlohmann::ordered_json;

// One value on one line. `replace`: a label with invalid UTF-8 must not make
// the whole report unwritable.
std::string compact(const Json& value) {
  return value.dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                    Json::error_handler_t::replace);
}

// `"key": value` lines of the top-level object, joined with ",\n".
class ObjectWriter {
 public:
  void field(const std::string& key, const std::string& rendered_value) {
    out_ += out_.empty() ? "{\n" : ",\n";
    out_ += "  " + compact(Json(key)) + ": " + rendered_value;
  }
  // An array with one element per line, each already rendered.
  void lines(const std::string& key, const std::vector<std::string>& elements) {
    std::string value = "[";
    for (std::size_t i = 0; i < elements.size(); ++i) {
      value += (i == 0 ? "\n    " : ",\n    ") + elements[i];
    }
    value += elements.empty() ? "]" : "\n  ]";
    field(key, value);
  }
  std::string finish() { return out_.empty() ? "{}\n" : out_ + "\n}\n"; }

 private:
  std::string out_;
};

std::string format(const char* fmt, double a) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, a);
  return buf;
}

// The summary's lines on what the macros average over and which classes
// never occur, naming at most kNamed of them.
std::string macro_scope(const EvaluationReport& report) {
  constexpr std::size_t kNamed = 10;
  const std::size_t n = report.classes.size();
  const std::size_t absent = report.absent_classes.size();
  if (absent == 0) return "  macro averages over all " + std::to_string(n) + " classes\n";
  if (absent == n) return "  macro averages are 0: no class occurs (no samples)\n";
  std::string out = "  macro averages over the " + std::to_string(n - absent) + " of " +
                    std::to_string(n) +
                    " classes that occur (in the true labels or the predictions)\n";
  out += "  " + std::to_string(absent) +
         (absent == 1 ? " class never occurs: " : " classes never occur: ");
  for (std::size_t i = 0; i < absent && i < kNamed; ++i) {
    out += (i == 0 ? "" : ", ") + report.labels[static_cast<std::size_t>(report.absent_classes[i])];
  }
  if (absent > kNamed) {
    out += " and " + std::to_string(absent - kNamed) +
           " more (the JSON report's \"absent_classes\" lists them all)";
  }
  return out + "\n";
}

}  // namespace

std::string to_json(const EvaluationReport& report) {
  validate_report(report);
  const auto n = static_cast<std::size_t>(report.num_classes);
  ObjectWriter w;
  w.field("split", compact(Json(report.split)));
  w.field("checkpoint_id", compact(Json(report.checkpoint_id)));
  w.field("num_classes", compact(Json(report.num_classes)));
  w.field("labels", compact(Json(report.labels)));
  w.field("samples", compact(Json(report.samples)));
  w.field("loss", compact(Json(report.loss)));
  w.field("top1", compact(Json(report.top1)));
  w.field("top3", compact(Json(report.top3)));
  std::vector<std::string> classes;
  classes.reserve(n);
  for (std::size_t c = 0; c < n; ++c) {
    const ClassScores& s = report.classes[c];
    Json entry;
    entry["index"] = c;
    entry["label"] = report.labels[c];
    entry["precision"] = s.precision;
    entry["recall"] = s.recall;
    entry["f1"] = s.f1;
    entry["support"] = s.support;
    classes.push_back(compact(entry));
  }
  w.lines("classes", classes);
  w.field("macro_precision", compact(Json(report.macro_precision)));
  w.field("macro_recall", compact(Json(report.macro_recall)));
  w.field("macro_f1", compact(Json(report.macro_f1)));
  w.field("weighted_f1", compact(Json(report.weighted_f1)));
  // What the macros average over. Absent classes as indices for programs
  // and as labels for people reading the file, each list on one line.
  std::vector<std::string> absent_labels;
  absent_labels.reserve(report.absent_classes.size());
  for (int c : report.absent_classes)
    absent_labels.push_back(report.labels[static_cast<std::size_t>(c)]);
  w.field("macro_classes",
          compact(Json(report.num_classes - static_cast<int>(report.absent_classes.size()))));
  w.field("absent_classes", compact(Json(report.absent_classes)));
  w.field("absent_labels", compact(Json(absent_labels)));
  std::vector<std::string> rows;
  rows.reserve(n);
  for (std::size_t t = 0; t < n; ++t) {
    const auto begin = report.confusion.begin() + static_cast<std::ptrdiff_t>(t * n);
    rows.push_back(
        compact(Json(std::vector<std::int64_t>(begin, begin + static_cast<std::ptrdiff_t>(n)))));
  }
  w.lines("confusion", rows);
  return w.finish();
}

std::string format_summary(const EvaluationReport& report) {
  validate_report(report);
  constexpr std::size_t kWorst = 5;
  std::string out = report.split.empty() ? "(unnamed split)" : report.split;
  out += ": " + std::to_string(report.samples) + " samples";
  out += report.checkpoint_id.empty() ? ", no checkpoint" : ", checkpoint " + report.checkpoint_id;
  out += "\n";
  out += "  loss " + format("%.4f", report.loss) + "   top-1 " +
         format("%.2f%%", 100 * report.top1) + "   top-3 " + format("%.2f%%", 100 * report.top3) +
         "\n";
  out += "  macro F1 " + format("%.4f", report.macro_f1) + "   weighted F1 " +
         format("%.4f", report.weighted_f1) + "   macro precision " +
         format("%.4f", report.macro_precision) + "   macro recall " +
         format("%.4f", report.macro_recall) + "\n";
  out += macro_scope(report);

  // Only classes that occur: an absent one has F1 0 by definition, and with
  // 90 of them the list would name 5 classes that say nothing about the model.
  std::vector<bool> absent(report.classes.size(), false);
  for (int c : report.absent_classes) absent[static_cast<std::size_t>(c)] = true;
  std::vector<std::size_t> order;
  for (std::size_t c = 0; c < report.classes.size(); ++c) {
    if (!absent[c]) order.push_back(c);
  }
  if (order.empty()) return out;
  // stable_sort: equal F1 keeps index order, so the summary is deterministic.
  // `<` on a NaN F1 (impossible from summarize) would break strict weak
  // ordering; treat NaN as the worst.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const double fa = report.classes[a].f1, fb = report.classes[b].f1;
    if (std::isnan(fa) || std::isnan(fb)) return std::isnan(fa) && !std::isnan(fb);
    return fa < fb;
  });
  order.resize(std::min(order.size(), kWorst));
  std::size_t width = 0;
  for (std::size_t c : order)
    width = std::max(width, std::min<std::size_t>(report.labels[c].size(), 24));
  out += "  worst classes by F1:\n";
  for (std::size_t c : order) {
    const ClassScores& s = report.classes[c];
    // The label is appended as a string, not through snprintf, so a long one
    // is never cut off; shorter ones are padded to line up the numbers.
    char index[16];
    std::snprintf(index, sizeof index, "    %4zu ", c);
    char numbers[160];
    std::snprintf(numbers, sizeof numbers, "  F1 %.4f  precision %.4f  recall %.4f  support %lld\n",
                  s.f1, s.precision, s.recall, static_cast<long long>(s.support));
    const std::string& label = report.labels[c];
    out +=
        index + label + std::string(width > label.size() ? width - label.size() : 0, ' ') + numbers;
  }
  return out;
}

}  // namespace xfer::trainer::evaluation
