// `coordctl report RUN -o FILE.html`: one self-contained HTML page about a
// run (inline CSS, SVG and PNG data: URIs, a small inline script; nothing
// fetched, no server needed). Rendered from plain messages, so it is tested
// without a coordinator. In page order, by the ids of their main elements
// (stable: the tests and people's scripts find them by these):
//   #summary    the run: state, attempt, dataset, world size, started, ended,
//               duration, message; the test headline figures
//   #curves     loss, top-1 and top-3 per epoch, train vs validation (test
//               evaluations as markers), phase boundaries marked
//   #samples    the report's prediction samples: image, actual vs predicted,
//               a bar per top class
//   #confusion  the confusion matrix as a heatmap (a <title> per cell)
//   #classes    per-class precision/recall/F1/support, sortable by a click
//               on a header
//   #epochs     per epoch: samples, img/s, seconds (samples / img/s), lr
//   #ranks      per-rank throughput (MetricsService.Ranks)
//   #config     Run.config_json, pretty-printed, and the run's state changes
//   #script-status  set by the page's script once it ran: data-state="ready",
//               data-images-decoded (count); with #selftest in the address
//               also data-selftest ("pass" or what failed)
// Every string from the run (names, labels, config) is HTML-escaped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::coordctl {

struct ReportPageInputs {
  v1::Run run;
  v1::HistoryResponse history;
  // The run's test report; std::nullopt while it has none (a running or
  // failed run): the test sections then say so.
  std::optional<v1::RunReport> report;
  v1::RanksResponse ranks;
  // When the page was made (shown in its footer). 0: not shown.
  std::int64_t generated_unix_ms = 0;
};

// The whole page. A prediction sample whose image does not match its
// shape is shown without the image (the coordinator refuses such reports).
std::string render_report_html(const ReportPageInputs& inputs);

}  // namespace xfer::coordinator::coordctl
