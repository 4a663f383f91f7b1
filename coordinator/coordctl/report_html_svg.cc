#include "coordinator/coordctl/report_html_svg.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "coordinator/coordctl/format.h"

namespace xfer::coordinator::coordctl {
namespace {

// Chart geometry, in SVG user units (the SVG scales with the page).
constexpr double kWidth = 460, kHeight = 270;
constexpr double kLeft = 56, kRight = 14, kTop = 28, kBottom = 40;

const char* metric_name(CurveMetric metric) {
  switch (metric) {
    case CurveMetric::kLoss:
      return "loss";
    case CurveMetric::kTop1:
      return "top1";
    case CurveMetric::kTop3:
      return "top3";
  }
  return "?";
}

double metric_value(const v1::EpochMetrics& e, CurveMetric metric) {
  switch (metric) {
    case CurveMetric::kLoss:
      return e.loss();
    case CurveMetric::kTop1:
      return e.top1();
    case CurveMetric::kTop3:
      return e.top3();
  }
  return NAN;
}

std::string metric_text(double value, CurveMetric metric) {
  return metric == CurveMetric::kLoss ? format_fixed(value, 4) : format_percent(value);
}

// Where each phase's epochs sit on the x axis: phases in the order they
// first appear, each spanning its lowest to its highest epoch.
struct EpochAxis {
  std::vector<std::string> phases;
  std::map<std::string, int> offset;  // the x of the phase's first epoch, minus 1
  std::map<std::string, int> first;   // the phase's lowest epoch number
  int epochs = 0;                     // the last x

  double x(const v1::EpochMetrics& e) const {
    return offset.at(e.phase()) + (e.epoch() - first.at(e.phase())) + 1;
  }
};

EpochAxis epoch_axis(const v1::HistoryResponse& history) {
  EpochAxis axis;
  std::map<std::string, int> last;
  for (const auto& e : history.epochs()) {
    if (!last.count(e.phase())) {
      axis.phases.push_back(e.phase());
      axis.first[e.phase()] = last[e.phase()] = e.epoch();
    }
    axis.first[e.phase()] = std::min(axis.first[e.phase()], e.epoch());
    last[e.phase()] = std::max(last[e.phase()], e.epoch());
  }
  for (const auto& phase : axis.phases) {
    axis.offset[phase] = axis.epochs;
    axis.epochs += last[phase] - axis.first[phase] + 1;
  }
  return axis;
}

std::string n(double value) { return fmt::format("{:.1f}", value); }

// The "nice" step for about `ticks` intervals over `span`: 1, 2 or 5 x 10^k.
double nice_step(double span, int ticks) {
  const double raw = span / ticks;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0}) {
    if (m * magnitude >= raw) return m * magnitude;
  }
  return 10.0 * magnitude;
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string learning_curve_svg(const v1::HistoryResponse& history, CurveMetric metric) {
  const std::string name = metric_name(metric);
  std::string svg = fmt::format(
      "<svg class=\"curve\" data-metric=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" "
      "aria-label=\"{} per epoch\">\n",
      name, kWidth, kHeight, name);
  svg += fmt::format("<text class=\"chart-title\" x=\"{}\" y=\"16\">{}</text>\n", n(kLeft), name);
  const EpochAxis axis = epoch_axis(history);
  if (axis.epochs == 0) {
    svg += fmt::format("<text class=\"empty\" x=\"{}\" y=\"{}\">no epochs yet</text>\n</svg>\n",
                       n(kWidth / 2), n(kHeight / 2));
    return svg;
  }
  // y range: accuracies 0..1; loss 0..the highest finite value.
  double y_max = 1.0;
  if (metric == CurveMetric::kLoss) {
    y_max = 0.0;
    for (const auto& e : history.epochs()) {
      if (std::isfinite(e.loss())) y_max = std::max(y_max, e.loss());
    }
    if (y_max <= 0.0) y_max = 1.0;
    const double step = nice_step(y_max, 5);
    y_max = std::ceil(y_max / step) * step;
  }
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  const double x_lo = 0.5, x_hi = axis.epochs + 0.5;
  auto x_of = [&](double x) { return kLeft + (x - x_lo) / (x_hi - x_lo) * plot_w; };
  auto y_of = [&](double y) { return kTop + (1.0 - y / y_max) * plot_h; };

  // Grid and y ticks.
  const double y_step = nice_step(y_max, 5);
  for (double y = 0; y <= y_max * (1 + 1e-9); y += y_step) {
    svg += fmt::format("<line class=\"grid\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>", n(kLeft),
                       n(y_of(y)), n(kLeft + plot_w), n(y_of(y)));
    svg += fmt::format(
        "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", n(kLeft - 6),
        n(y_of(y) + 4),
        metric == CurveMetric::kLoss ? fmt::format("{:g}", y) : fmt::format("{:.0f}%", 100 * y));
  }
  // x ticks: every epoch, or a nice step when there are many.
  const int x_step =
      axis.epochs <= 15 ? 1 : static_cast<int>(nice_step(static_cast<double>(axis.epochs), 10));
  for (int x = 1; x <= axis.epochs; x += x_step) {
    svg += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                       n(x_of(x)), n(kTop + plot_h + 16), x);
  }
  svg += fmt::format(
      "<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch "
      "(all phases)</text>\n",
      n(kLeft + plot_w / 2), n(kHeight - 4));
  svg += fmt::format("<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>\n",
                     n(kLeft), n(kTop), n(plot_w), n(plot_h));
  // Phases: a name over each, a boundary between two.
  for (std::size_t p = 0; p < axis.phases.size(); ++p) {
    const std::string& phase = axis.phases[p];
    const double start = axis.offset.at(phase) + 0.5;
    if (p > 0) {
      svg += fmt::format(
          "<line class=\"phase-boundary\" x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\">"
          "<title>{3} starts after {4} epochs</title></line>\n",
          n(x_of(start)), n(kTop), n(kTop + plot_h), html_escape(phase), axis.offset.at(phase));
    }
    svg += fmt::format("<text class=\"phase-name\" x=\"{}\" y=\"{}\">{}</text>\n",
                       n(x_of(start) + 4), n(kTop + 12), html_escape(phase));
  }
  // Series: train and validation as lines, test as markers only.
  const std::pair<v1::SplitKind, bool> series[] = {{v1::SPLIT_KIND_TRAIN, true},
                                                   {v1::SPLIT_KIND_VALIDATION, true},
                                                   {v1::SPLIT_KIND_TEST, false}};
  for (const auto& [split, line] : series) {
    const std::string split_text = split_name(split);
    std::vector<std::pair<double, const v1::EpochMetrics*>> points;
    for (const auto& e : history.epochs()) {
      if (e.split() != split || !std::isfinite(metric_value(e, metric))) continue;
      points.emplace_back(axis.x(e), &e);
    }
    if (points.empty()) continue;
    std::stable_sort(points.begin(), points.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    if (line) {
      std::string coords;
      for (const auto& [x, e] : points) {
        coords +=
            (coords.empty() ? "" : " ") + n(x_of(x)) + "," + n(y_of(metric_value(*e, metric)));
      }
      svg += fmt::format("<polyline class=\"series {}\" points=\"{}\"/>\n", split_text, coords);
    }
    for (const auto& [x, e] : points) {
      const double value = metric_value(*e, metric);
      svg += fmt::format(
          "<circle class=\"point {}\" cx=\"{}\" cy=\"{}\" r=\"{}\"><title>{} epoch {} {}: {} {} "
          "({} samples)</title></circle>\n",
          split_text, n(x_of(x)), n(y_of(value)), line ? 3 : 4.5, html_escape(e->phase()),
          e->epoch(), split_text, name, metric_text(value, metric), e->samples());
    }
  }
  // Legend.
  double legend_x = kLeft + plot_w - 230;
  for (const char* split : {"train", "validation", "test"}) {
    svg += fmt::format(
        "<circle class=\"legend-mark {0}\" cx=\"{1}\" cy=\"12\" r=\"4\"/><text class=\"legend\" "
        "x=\"{2}\" y=\"16\">{0}</text>",
        split, n(legend_x), n(legend_x + 8));
    legend_x += 80;
  }
  svg += "\n</svg>\n";
  return svg;
}

std::string confusion_svg(const v1::RunReport& report,
                          const std::vector<std::string>& class_names) {
  const int classes = report.num_classes();
  // 100 classes fit in 600 units; a few classes get big, labelled cells.
  const double cell = std::clamp(600.0 / std::max(classes, 1), 4.0, 40.0);
  const bool labelled = classes <= 30;
  const double margin = labelled ? 120 : 40;
  const double side = cell * classes;
  std::string svg = fmt::format(
      "<svg id=\"confusion\" class=\"heatmap\" viewBox=\"0 0 {0} {1}\" role=\"img\" "
      "aria-label=\"confusion matrix, {2} classes\">\n",
      // Room on the right for the last column's slanted name.
      n(margin + side + (labelled ? 100 : 10)), n(margin + side + 10), classes);
  svg += fmt::format(
      "<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">"
      "predicted class &#8594;</text>\n",
      n(margin + side / 2), n(margin - (labelled ? 100 : 24)));
  svg += fmt::format(
      "<text class=\"axis-label\" transform=\"translate({},{}) rotate(-90)\" "
      "text-anchor=\"middle\">true class &#8594;</text>\n",
      n(margin - (labelled ? 100 : 24)), n(margin + side / 2));
  for (int t = 0; t < classes; ++t) {
    std::int64_t row_total = 0;
    for (int p = 0; p < classes; ++p) row_total += report.confusion(t * classes + p);
    const std::string true_name = html_escape(class_names[static_cast<std::size_t>(t)]);
    for (int p = 0; p < classes; ++p) {
      const std::int64_t count = report.confusion(t * classes + p);
      const double fraction =
          row_total > 0 ? static_cast<double>(count) / static_cast<double>(row_total) : 0.0;
      // White to dark blue; the diagonal (right answers) to dark green.
      const int r = static_cast<int>(std::lround(255 - fraction * (255 - (p == t ? 0 : 8))));
      const int g = static_cast<int>(std::lround(255 - fraction * (255 - (p == t ? 90 : 48))));
      const int b = static_cast<int>(std::lround(255 - fraction * (255 - (p == t ? 40 : 107))));
      svg += fmt::format(
          "<rect class=\"cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
          "fill=\"rgb({},{},{})\"><title>true {} ({}), predicted {} ({}): {} of {} ({})"
          "</title></rect>\n",
          n(margin + p * cell), n(margin + t * cell), n(cell), n(cell), r, g, b, t, true_name, p,
          html_escape(class_names[static_cast<std::size_t>(p)]), count, row_total,
          format_percent(fraction));
    }
  }
  if (labelled) {
    for (int i = 0; i < classes; ++i) {
      const std::string name = html_escape(class_names[static_cast<std::size_t>(i)]);
      svg += fmt::format("<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                         n(margin - 4), n(margin + (i + 0.5) * cell + 4), name);
      svg +=
          fmt::format("<text class=\"tick\" transform=\"translate({},{}) rotate(-60)\">{}</text>\n",
                      n(margin + (i + 0.5) * cell + 4), n(margin - 4), name);
    }
  }
  svg += fmt::format("<rect class=\"frame\" x=\"{0}\" y=\"{0}\" width=\"{1}\" height=\"{1}\"/>\n",
                     n(margin), n(side));
  svg += "</svg>\n";
  return svg;
}

}  // namespace xfer::coordinator::coordctl
