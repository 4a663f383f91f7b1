#include "coordinator/coordctl/json_output.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "coordinator/coordctl/format.h"

namespace xfer::coordinator::coordctl {

namespace {

using nlohmann::json;

// nlohmann writes NaN as null already; being explicit keeps that a decision
// of ours, not a library default.
json number(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

}  // namespace

json run_json(const v1::Run& run) {
  json config = nullptr;
  if (!run.config_json().empty()) {
    // The trainer's options as an object when they parse, else the raw text.
    config = json::parse(run.config_json(), nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded()) config = run.config_json();
  }
  return {{"name", run.name()},
          {"state", run_state_name(run.state())},
          {"dataset", run.dataset()},
          {"world_size", run.world_size()},
          {"attempt", run.attempt()},
          {"started_unix_ms", run.started_unix_ms()},
          {"ended_unix_ms", run.ended_unix_ms()},
          {"message", run.message()},
          {"config", config},
          {"events", json(std::vector<std::string>(run.events().begin(), run.events().end()))}};
}

json status_json(const v1::StatusResponse& status) {
  json runs = json::array();
  for (const auto& run : status.runs()) runs.push_back(run_json(run));
  return {
      {"version", status.version()},
      {"datasets", std::vector<std::string>(status.datasets().begin(), status.datasets().end())},
      {"errors", std::vector<std::string>(status.errors().begin(), status.errors().end())},
      {"runs", runs}};
}

json runs_json(const v1::ListRunsResponse& response) {
  json runs = json::array();
  for (const auto& run : response.runs()) runs.push_back(run_json(run));
  return {{"runs", runs}};
}

json epoch_json(const v1::EpochMetrics& epoch) {
  return {{"phase", epoch.phase()},
          {"epoch", epoch.epoch()},
          {"split", split_name(epoch.split())},
          {"loss", number(epoch.loss())},
          {"top1", number(epoch.top1())},
          {"top3", number(epoch.top3())},
          {"samples", epoch.samples()},
          {"learning_rate", number(epoch.learning_rate())},
          {"images_per_second", number(epoch.images_per_second())}};
}

json history_json(const std::string& run, const v1::HistoryResponse& history) {
  json epochs = json::array();
  for (const auto& epoch : history.epochs()) epochs.push_back(epoch_json(epoch));
  return {{"run", run}, {"epochs", epochs}};
}

json ranks_json(const std::string& run, const RanksView& view, double threshold) {
  json ranks = json::array();
  for (const auto& row : view.ranks) {
    const auto& rank = row.status;
    ranks.push_back({{"rank", rank.rank()},
                     {"phase", rank.phase()},
                     {"epoch", rank.epoch()},
                     {"step", rank.step()},
                     {"images_per_second", number(rank.images_per_second())},
                     {"data_wait_ms", number(rank.data_wait_ms())},
                     {"comm_ms", number(rank.comm_ms())},
                     {"updated_unix_ms", rank.updated_unix_ms()},
                     {"fraction_of_median", number(row.fraction_of_median)},
                     {"straggler", row.straggler}});
  }
  return {{"run", run},
          {"median_images_per_second", number(view.median_images_per_second)},
          {"straggler_threshold", threshold},
          {"ranks", ranks}};
}

json event_json(const v1::MetricsEvent& event) {
  if (event.has_run()) {
    return {{"sequence", event.sequence()}, {"type", "run"}, {"run", run_json(event.run())}};
  }
  return {{"sequence", event.sequence()}, {"type", "epoch"}, {"epoch", epoch_json(event.epoch())}};
}

json checkpoint_json(const v1::CheckpointInfo& c) {
  const auto& meta = c.meta();
  return {{"id", c.id()},
          {"run", meta.run()},
          {"phase", meta.phase()},
          {"epoch", meta.epoch()},
          {"step", meta.step()},
          {"metric_name", meta.metric_name()},
          {"metric_value", number(meta.metric_value())},
          {"direction", direction_name(meta.direction())},
          {"size_bytes", c.size_bytes()},
          {"created_unix_ms", c.created_unix_ms()},
          {"sha256", c.sha256()}};
}

json checkpoints_json(const std::string& run, const v1::ListCheckpointsResponse& response) {
  json checkpoints = json::array();
  for (const auto& c : response.checkpoints()) checkpoints.push_back(checkpoint_json(c));
  return {{"run", run}, {"checkpoints", checkpoints}};
}

json download_json(const std::string& id, const client::DownloadResult& result) {
  return {{"id", id},
          {"path", result.path.string()},
          {"size_bytes", result.size_bytes},
          {"sha256", result.sha256},
          {"verified", result.verified}};
}

json report_json(const v1::RunReport& r) {
  std::vector<const v1::ClassMetrics*> by_index;
  for (const auto& c : r.classes()) by_index.push_back(&c);
  std::stable_sort(by_index.begin(), by_index.end(),
                   [](const auto* a, const auto* b) { return a->index() < b->index(); });
  json classes = json::array();
  for (const auto* c : by_index) {
    classes.push_back({{"index", c->index()},
                       {"label", c->label()},
                       {"precision", number(c->precision())},
                       {"recall", number(c->recall())},
                       {"f1", number(c->f1())},
                       {"support", c->support()}});
  }
  // Row t holds the counts of true class t by predicted class; a matrix of
  // the wrong size (never stored by the server) is cut to whole rows.
  json confusion = json::array();
  const std::int64_t n = r.num_classes();
  for (std::int64_t t = 0; n > 0 && (t + 1) * n <= r.confusion_size(); ++t) {
    confusion.push_back(json(std::vector<std::int64_t>(r.confusion().begin() + t * n,
                                                       r.confusion().begin() + (t + 1) * n)));
  }
  // What the macros average over (docs/coordctl.md); null when the matrix
  // cannot tell which classes occur.
  const MacroScope scope = macro_scope(r);
  json macro_classes = nullptr, absent_classes = nullptr, absent_labels = nullptr;
  if (scope.known) {
    macro_classes = scope.averaged;
    absent_classes = scope.absent;
    std::vector<std::string> labels(static_cast<std::size_t>(scope.num_classes));
    for (const auto* c : by_index) {
      if (c->index() >= 0 && c->index() < scope.num_classes) {
        labels[static_cast<std::size_t>(c->index())] = c->label();
      }
    }
    absent_labels = json::array();
    for (int c : scope.absent) absent_labels.push_back(labels[static_cast<std::size_t>(c)]);
  }
  return {{"run", r.run()},
          {"split", r.split()},
          {"checkpoint_id", r.checkpoint_id()},
          {"samples", r.samples()},
          {"loss", number(r.loss())},
          {"top1", number(r.top1())},
          {"top3", number(r.top3())},
          {"num_classes", r.num_classes()},
          {"macro_precision", number(r.macro_precision())},
          {"macro_recall", number(r.macro_recall())},
          {"macro_f1", number(r.macro_f1())},
          {"weighted_f1", number(r.weighted_f1())},
          {"macro_classes", std::move(macro_classes)},
          {"absent_classes", std::move(absent_classes)},
          {"absent_labels", std::move(absent_labels)},
          {"created_unix_ms", r.created_unix_ms()},
          {"classes", std::move(classes)},
          {"confusion", std::move(confusion)}};
}

}  // namespace xfer::coordinator::coordctl
