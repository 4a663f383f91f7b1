// The HTML report's charts as inline SVG (no script, no external asset):
// learning curves from the metrics history and the confusion matrix as a
// heatmap. Every text in them is HTML-escaped; every element a person may
// want to read exactly carries a <title> (shown on hover).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::coordctl {

// `text` with & < > " ' replaced by character references: safe in element
// content and in quoted attribute values.
std::string html_escape(std::string_view text);

enum class CurveMetric { kLoss, kTop1, kTop3 };

// One chart of `metric` over the run's epochs: x is the epoch counted over
// all phases in the order they first appear in the history (head 1..H, then
// finetune H+1..), y the metric (loss from 0, accuracies 0..1). Train and
// validation are lines (<polyline class="series train|validation">), test
// evaluations markers; every point is a <circle class="point SPLIT"> with a
// <title>. A dashed <line class="phase-boundary"> separates two phases.
// Non-finite values are left out. An empty history gives a chart that says
// "no epochs yet".
std::string learning_curve_svg(const v1::HistoryResponse& history, CurveMetric metric);

// num_classes^2 <rect class="cell"> (row: true class, column: predicted),
// coloured by the fraction of the true class's samples, each with a <title>
// naming both classes and the count. `class_names` has num_classes entries.
// REQUIRES: report.confusion_size() == num_classes^2 (the coordinator
// checks it).
std::string confusion_svg(const v1::RunReport& report, const std::vector<std::string>& class_names);

}  // namespace xfer::coordinator::coordctl
