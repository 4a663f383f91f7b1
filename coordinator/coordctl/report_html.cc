#include "coordinator/coordctl/report_html.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "coordinator/coordctl/format.h"
#include "coordinator/coordctl/report_html_png.h"
#include "coordinator/coordctl/report_html_svg.h"

namespace xfer::coordinator::coordctl {
namespace {

// Nothing may be fetched: the policy allows only inline styles and scripts
// and data: images, so a browser refuses anything else the page asked for.
constexpr std::string_view kHead = R"(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
)";

constexpr std::string_view kStyle = R"(<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 18px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
.muted, .empty { color: #777; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin-top: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card .value { font-size: 20px; font-weight: 600; }
.card .name { color: #666; font-size: 12px; }
.curves { display: flex; flex-wrap: wrap; gap: 12px; }
svg.curve { width: 420px; height: auto; border: 1px solid #eee; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
svg .chart-title { font-size: 13px; font-weight: 600; fill: #222; }
svg .grid { stroke: #eee; }
svg .frame { fill: none; stroke: #999; }
svg .series { fill: none; stroke-width: 2; }
svg .series.train, svg .point.train, svg .legend-mark.train { stroke: #1f77b4; fill: #1f77b4; }
svg .series.validation, svg .point.validation, svg .legend-mark.validation { stroke: #ff7f0e; fill: #ff7f0e; }
svg .series.train, svg .series.validation { fill: none; }
svg .point.test, svg .legend-mark.test { fill: #2ca02c; stroke: #fff; }
svg .phase-boundary { stroke: #888; stroke-dasharray: 4 3; }
svg .phase-name { font-style: italic; fill: #666; }
svg.heatmap { width: 100%; max-width: 760px; height: auto; }
svg.heatmap .cell:hover { stroke: #d62728; stroke-width: 1; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f6f6f6; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " \25B2"; }
table.sortable th[aria-sort="descending"]::after { content: " \25BC"; }
.scroll { max-height: 560px; overflow: auto; display: inline-block; border: 1px solid #eee; }
.grid-samples { display: grid; grid-template-columns: repeat(5, 250px); gap: 12px; }
figure.sample { margin: 0; border: 2px solid #ccc; border-radius: 6px; padding: 8px; }
figure.sample.right { border-color: #2ca02c; }
figure.sample.wrong { border-color: #d62728; }
figure.sample img { width: 96px; height: 96px; image-rendering: pixelated; float: left; }
figure.sample figcaption { font-size: 12px; margin-left: 104px; min-height: 100px; overflow-wrap: anywhere; }
.bars { clear: both; }
.bar-row { display: grid; grid-template-columns: 90px 1fr 48px; gap: 4px; align-items: center; font-size: 11px; }
.bar-label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.bar { background: #eee; height: 10px; border-radius: 2px; }
.bar-fill { display: block; height: 100%; background: #1f77b4; border-radius: 2px; }
.bar-row.actual .bar-fill { background: #2ca02c; }
.bar-value { text-align: right; }
pre.config { background: #f8f8f8; border: 1px solid #eee; padding: 10px; overflow: auto; max-height: 480px; }
footer { margin-top: 40px; color: #888; font-size: 12px; }
</style>
</head>
)";

// Sorting of table.sortable by a click on a header (numbers by the cell's
// data-value), and a status line for tests and people: #script-status gets
// data-state="ready" and the count of images the browser decoded. With
// #selftest in the address, every column is sorted both ways and checked;
// the result lands in data-selftest ("pass" or what failed).
constexpr std::string_view kScript = R"(<script>
(function () {
  "use strict";
  function key(row, column, numeric) {
    var cell = row.cells[column];
    var text = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent;
    if (!numeric) return text.toLowerCase();
    var value = parseFloat(text);
    return isNaN(value) ? -Infinity : value;
  }
  function sortBy(table, column, descending) {
    var header = table.tHead.rows[0].cells[column];
    var numeric = header.getAttribute("data-type") === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, column, numeric), y = key(b, column, numeric);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      th.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }
  function isSorted(table, column, descending) {
    var numeric = table.tHead.rows[0].cells[column].getAttribute("data-type") === "number";
    var rows = table.tBodies[0].rows;
    for (var i = 1; i < rows.length; ++i) {
      var x = key(rows[i - 1], column, numeric), y = key(rows[i], column, numeric);
      if (descending ? x < y : x > y) return false;
    }
    return true;
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.title = "Sort by " + th.textContent;
      th.addEventListener("click", function () {
        sortBy(table, column, th.getAttribute("aria-sort") === "ascending");
      });
    });
  });
  var status = document.getElementById("script-status");
  function report() {
    var images = document.querySelectorAll("#samples img");
    var decoded = 0;
    Array.prototype.forEach.call(images, function (img) {
      if (img.complete && img.naturalWidth > 0) ++decoded;
    });
    status.setAttribute("data-images-decoded", String(decoded));
    status.setAttribute("data-state", "ready");
    if (window.location.hash === "#selftest") {
      var problems = [];
      Array.prototype.forEach.call(tables, function (table) {
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
          [false, true].forEach(function (descending) {
            th.click();
            if (th.getAttribute("aria-sort") !== (descending ? "descending" : "ascending") ||
                !isSorted(table, column, descending)) {
              problems.push(table.id + " column " + th.textContent +
                            (descending ? " descending" : " ascending"));
            }
          });
        });
      });
      status.setAttribute("data-selftest", problems.length ? "failed: " + problems.join(", ") : "pass");
    }
  }
  if (document.readyState === "complete") report(); else window.addEventListener("load", report);
})();
</script>
)";

std::string class_name(const std::vector<std::string>& names, int index) {
  if (index >= 0 && static_cast<std::size_t>(index) < names.size()) {
    return names[static_cast<std::size_t>(index)];
  }
  return "class " + std::to_string(index);
}

std::vector<std::string> class_names_of(const v1::RunReport& report) {
  std::vector<std::string> names;
  for (int i = 0; i < report.num_classes(); ++i) {
    const std::string label = i < report.classes_size() ? report.classes(i).label() : "";
    names.push_back(label.empty() ? "class " + std::to_string(i) : label);
  }
  return names;
}

// A <td> of a number that sorts by its exact value.
std::string number_cell(double value, const std::string& shown) {
  return fmt::format("<td data-value=\"{}\">{}</td>",
                     std::isfinite(value) ? fmt::format("{:.17g}", value) : "", shown);
}

// Under the cards: what the macro cards average over and, when some classes
// never occur, the first few of them (the per-class table has every class).
std::string macro_scope_paragraph(const v1::RunReport& r) {
  constexpr std::size_t kNamed = 10;
  const MacroScope scope = macro_scope(r);
  std::string out = "<p class=\"muted\" id=\"macro-scope\">Macro averages: " +
                    html_escape(macro_scope_text(scope)) + ".";
  if (!scope.absent.empty() && scope.absent.size() < static_cast<std::size_t>(scope.num_classes)) {
    out += fmt::format(" {} {}: {}.", scope.absent.size(),
                       scope.absent.size() == 1 ? "class never occurs" : "classes never occur",
                       html_escape(absent_class_names(r, scope, kNamed)));
  }
  return out + "</p>\n";
}

std::string summary_section(const ReportPageInputs& in) {
  const v1::Run& run = in.run;
  const std::int64_t end = run.ended_unix_ms() > 0 ? run.ended_unix_ms() : in.generated_unix_ms;
  std::string out = "<section id=\"summary\">\n<dl class=\"facts\">\n";
  auto fact = [&](const std::string& name, const std::string& value) {
    out += fmt::format("<dt>{}</dt><dd>{}</dd>\n", name, html_escape(value));
  };
  fact("state", run_state_name(run.state()));
  fact("attempt", std::to_string(run.attempt()));
  fact("dataset", run.dataset());
  fact("world size", std::to_string(run.world_size()));
  fact("started", format_time_utc(run.started_unix_ms()));
  fact("ended", run.ended_unix_ms() > 0 ? format_time_utc(run.ended_unix_ms()) : "-");
  fact("duration", run.started_unix_ms() > 0 && end > 0
                       ? format_duration(end - run.started_unix_ms()) +
                             (run.ended_unix_ms() > 0 ? "" : " so far")
                       : "-");
  if (!run.message().empty()) fact("message", run.message());
  out += "</dl>\n";
  if (in.report) {
    const v1::RunReport& r = *in.report;
    out += fmt::format(
        "<p>Test split <code>{}</code>, {} samples, checkpoint <code>{}</code>, reported {}.</p>\n",
        html_escape(r.split()), r.samples(),
        html_escape(r.checkpoint_id().empty() ? "-" : r.checkpoint_id()),
        html_escape(format_time_utc(r.created_unix_ms())));
    out += "<div class=\"cards\">\n";
    const std::pair<const char*, std::string> cards[] = {
        {"test loss", format_fixed(r.loss(), 4)},
        {"top-1", format_percent(r.top1())},
        {"top-3", format_percent(r.top3())},
        {"macro precision", format_percent(r.macro_precision())},
        {"macro recall", format_percent(r.macro_recall())},
        {"macro F1", format_percent(r.macro_f1())},
        {"weighted F1", format_percent(r.weighted_f1())}};
    for (const auto& [name, value] : cards) {
      out += fmt::format(
          "<div class=\"card\"><div class=\"value\">{}</div><div class=\"name\">{}</div></div>\n",
          value, name);
    }
    out += "</div>\n" + macro_scope_paragraph(r);
  } else {
    out += "<p class=\"empty\">No test report yet: the run stores one when it completes.</p>\n";
  }
  return out + "</section>\n";
}

std::string curves_section(const v1::HistoryResponse& history) {
  std::string out = "<section id=\"curves\">\n<h2>Learning curves</h2>\n<div class=\"curves\">\n";
  for (const CurveMetric metric : {CurveMetric::kLoss, CurveMetric::kTop1, CurveMetric::kTop3}) {
    out += learning_curve_svg(history, metric);
  }
  return out +
         "</div>\n<p class=\"muted\">Epochs are counted over all phases; dashed lines mark where "
         "a phase starts. Test evaluations are the green markers. Hover a point for its "
         "value.</p>\n</section>\n";
}

std::string confusion_section(const v1::RunReport& report, const std::vector<std::string>& names) {
  return "<section id=\"confusion-matrix\">\n<h2>Confusion matrix</h2>\n"
         "<p class=\"muted\">Rows are the true class, columns the predicted one; the colour is "
         "the share of the true class's samples. Hover a cell for the classes and the "
         "count.</p>\n" +
         confusion_svg(report, names) + "</section>\n";
}

std::string classes_section(const v1::RunReport& report, const std::vector<std::string>& names) {
  std::string out =
      "<section id=\"per-class\">\n<h2>Per-class scores</h2>\n"
      "<p class=\"muted\">Click a header to sort.</p>\n<div class=\"scroll\">\n"
      "<table id=\"classes\" class=\"sortable\">\n<thead><tr>"
      "<th data-type=\"number\">index</th><th class=\"text\" data-type=\"text\">class</th>"
      "<th data-type=\"number\">precision</th><th data-type=\"number\">recall</th>"
      "<th data-type=\"number\">F1</th><th data-type=\"number\">support</th>"
      "</tr></thead>\n<tbody>\n";
  for (const auto& c : report.classes()) {
    out += fmt::format("<tr><td data-value=\"{}\">{}</td><td class=\"text\">{}</td>", c.index(),
                       c.index(), html_escape(class_name(names, c.index())));
    out += number_cell(c.precision(), format_percent(c.precision()));
    out += number_cell(c.recall(), format_percent(c.recall()));
    out += number_cell(c.f1(), format_percent(c.f1()));
    out += fmt::format("<td data-value=\"{0}\">{0}</td></tr>\n", c.support());
  }
  return out + "</tbody>\n</table>\n</div>\n</section>\n";
}

std::string sample_figure(const v1::PredictionSample& s, const std::vector<std::string>& names) {
  const bool right = s.top_classes_size() > 0 && s.top_classes(0) == s.label();
  const std::string actual = html_escape(class_name(names, s.label()));
  const std::string predicted =
      s.top_classes_size() > 0 ? html_escape(class_name(names, s.top_classes(0))) : "-";
  std::string out = fmt::format("<figure class=\"sample {}\" data-index=\"{}\">\n",
                                right ? "right" : "wrong", s.index());
  try {
    out += fmt::format("<img alt=\"sample {}: {}\" src=\"data:image/png;base64,{}\">\n", s.index(),
                       actual, base64(encode_png(s.image(), s.channels(), s.height(), s.width())));
  } catch (const std::invalid_argument& e) {
    out += fmt::format("<p class=\"empty\">no image: {}</p>\n", html_escape(e.what()));
  }
  out += fmt::format(
      "<figcaption>sample {}<br>actual: <b>{}</b><br>predicted: <b>{}</b><br>{}</figcaption>\n",
      s.index(), actual, predicted, right ? "right" : "wrong");
  out += "<div class=\"bars\">\n";
  for (int k = 0; k < s.top_classes_size() && k < s.top_probabilities_size(); ++k) {
    const double p = std::isfinite(s.top_probabilities(k))
                         ? std::clamp(static_cast<double>(s.top_probabilities(k)), 0.0, 1.0)
                         : 0.0;
    const std::string name = html_escape(class_name(names, s.top_classes(k)));
    out += fmt::format(
        "<div class=\"bar-row{}\"><span class=\"bar-label\" title=\"{}\">{}</span>"
        "<span class=\"bar\" title=\"{}: {}\"><span class=\"bar-fill\" style=\"width:{:.1f}%\">"
        "</span></span><span class=\"bar-value\">{:.1f}%</span></div>\n",
        s.top_classes(k) == s.label() ? " actual" : "", name, name, name, format_percent(p),
        100 * p, 100 * p);
  }
  return out + "</div>\n</figure>\n";
}

std::string samples_section(const v1::RunReport& report, const std::vector<std::string>& names) {
  std::string out = "<section id=\"predictions\">\n<h2>Test samples</h2>\n";
  if (report.predictions_size() == 0) {
    return out + "<p class=\"empty\">The report holds no prediction samples.</p>\n</section>\n";
  }
  int right = 0;
  for (const auto& s : report.predictions()) {
    right += s.top_classes_size() > 0 && s.top_classes(0) == s.label();
  }
  out += fmt::format(
      "<p class=\"muted\">{} test samples, {} predicted right; bars: the model's top classes "
      "with their softmax probabilities (green: the actual class).</p>\n",
      report.predictions_size(), right);
  out += "<div id=\"samples\" class=\"grid-samples\">\n";
  for (const auto& s : report.predictions()) out += sample_figure(s, names);
  return out + "</div>\n</section>\n";
}

std::string epochs_section(const v1::HistoryResponse& history) {
  std::string out =
      "<section id=\"epochs\">\n<h2>Epochs</h2>\n"
      "<p class=\"muted\">Seconds are samples / img/s (img/s summed over ranks).</p>\n"
      "<div class=\"scroll\">\n<table id=\"epoch-table\" class=\"sortable\">\n<thead><tr>"
      "<th class=\"text\" data-type=\"text\">phase</th><th data-type=\"number\">epoch</th>"
      "<th class=\"text\" data-type=\"text\">split</th><th data-type=\"number\">loss</th>"
      "<th data-type=\"number\">top-1</th><th data-type=\"number\">top-3</th>"
      "<th data-type=\"number\">samples</th><th data-type=\"number\">img/s</th>"
      "<th data-type=\"number\">seconds</th><th data-type=\"number\">learning rate</th>"
      "</tr></thead>\n<tbody>\n";
  for (const auto& e : history.epochs()) {
    const double seconds =
        e.images_per_second() > 0 ? static_cast<double>(e.samples()) / e.images_per_second() : NAN;
    out += fmt::format("<tr><td class=\"text\">{}</td><td>{}</td><td class=\"text\">{}</td>",
                       html_escape(e.phase()), e.epoch(), split_name(e.split()));
    out += number_cell(e.loss(), format_fixed(e.loss(), 4));
    out += number_cell(e.top1(), format_percent(e.top1()));
    out += number_cell(e.top3(), format_percent(e.top3()));
    out += fmt::format("<td>{}</td>", e.samples());
    out += number_cell(e.images_per_second(), format_fixed(e.images_per_second(), 1));
    out += number_cell(seconds, format_fixed(seconds, 1));
    out += number_cell(e.learning_rate(), fmt::format("{:g}", e.learning_rate()));
    out += "</tr>\n";
  }
  return out + "</tbody>\n</table>\n</div>\n</section>\n";
}

std::string ranks_section(const v1::RanksResponse& ranks) {
  std::string out = "<section id=\"ranks\">\n<h2>Ranks</h2>\n";
  if (ranks.ranks_size() == 0)
    return out + "<p class=\"empty\">No rank has reported.</p>\n</section>\n";
  out +=
      "<p class=\"muted\">Each rank's latest report.</p>\n"
      "<table id=\"rank-table\" class=\"sortable\">\n<thead><tr>"
      "<th data-type=\"number\">rank</th><th class=\"text\" data-type=\"text\">phase</th>"
      "<th data-type=\"number\">epoch</th><th class=\"text\" data-type=\"text\">split</th>"
      "<th data-type=\"number\">step</th><th data-type=\"number\">img/s</th>"
      "<th data-type=\"number\">data wait ms</th><th data-type=\"number\">comm ms</th>"
      "<th class=\"text\" data-type=\"text\">updated</th></tr></thead>\n<tbody>\n";
  for (const auto& r : ranks.ranks()) {
    out += fmt::format(
        "<tr><td>{}</td><td class=\"text\">{}</td><td>{}</td><td class=\"text\">{}</td>"
        "<td>{}</td>",
        r.rank(), html_escape(r.phase()), r.epoch(), split_name(r.split()), r.step());
    out += number_cell(r.images_per_second(), format_fixed(r.images_per_second(), 1));
    out += number_cell(r.data_wait_ms(), format_fixed(r.data_wait_ms(), 1));
    out += number_cell(r.comm_ms(), format_fixed(r.comm_ms(), 1));
    out += fmt::format("<td class=\"text\">{}</td></tr>\n", format_time_utc(r.updated_unix_ms()));
  }
  return out + "</tbody>\n</table>\n</section>\n";
}

std::string config_section(const v1::Run& run) {
  std::string out = "<section id=\"config\">\n<h2>Configuration</h2>\n";
  if (run.config_json().empty()) {
    return out + "<p class=\"empty\">The run recorded no configuration.</p>\n</section>\n";
  }
  std::string text;
  try {
    text = nlohmann::json::parse(run.config_json()).dump(2);
  } catch (const nlohmann::json::exception&) {
    out += "<p class=\"muted\">Not valid JSON; shown as stored.</p>\n";
    text = run.config_json();
  }
  out += "<pre class=\"config\">" + html_escape(text) + "</pre>\n";
  if (run.events_size() > 0) {
    out += "<h3>State changes</h3>\n<ol class=\"events\">\n";
    for (const auto& event : run.events()) out += "<li>" + html_escape(event) + "</li>\n";
    out += "</ol>\n";
  }
  return out + "</section>\n";
}

}  // namespace

std::string render_report_html(const ReportPageInputs& in) {
  std::string page(kHead);
  page += "<title>xfer run " + html_escape(in.run.name()) + "</title>\n";
  page += kStyle;
  page += "<body>\n<h1>Run <code>" + html_escape(in.run.name()) + "</code></h1>\n";
  page += summary_section(in);
  page += curves_section(in.history);
  if (in.report) {
    const std::vector<std::string> names = class_names_of(*in.report);
    page += samples_section(*in.report, names);
    page += confusion_section(*in.report, names);
    page += classes_section(*in.report, names);
  }
  page += epochs_section(in.history);
  page += ranks_section(in.ranks);
  page += config_section(in.run);
  page += "<footer>Made by coordctl";
  if (in.generated_unix_ms > 0) page += " at " + format_time_utc(in.generated_unix_ms);
  page += ". <span id=\"script-status\" data-state=\"no-script\"></span></footer>\n";
  page += kScript;
  page += "</body>\n</html>\n";
  return page;
}

}  // namespace xfer::coordinator::coordctl
