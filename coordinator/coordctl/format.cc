#include "coordinator/coordctl/format.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <vector>

#include "coordinator/coordctl/table.h"

namespace xfer::coordinator::coordctl {

namespace {

using Align = Table::Align;

// Shortest text that reads back to the same double; empty for NaN/inf.
std::string csv_number(double value) {
  if (!std::isfinite(value)) return "";
  return fmt::format("{}", value);
}

std::string run_duration(const v1::Run& run, std::int64_t now_unix_ms) {
  if (run.started_unix_ms() == 0) return "-";
  const std::int64_t end = run.ended_unix_ms() != 0
                               ? run.ended_unix_ms()
                               : (run.state() == v1::RUN_STATE_RUNNING ? now_unix_ms : 0);
  if (end == 0) return "-";
  return format_duration(end - run.started_unix_ms());
}

std::string age(std::int64_t then_unix_ms, std::int64_t now_unix_ms) {
  if (then_unix_ms == 0) return "-";
  const std::int64_t ms = now_unix_ms - then_unix_ms;
  return ms < 0 ? "just now" : format_duration(ms) + " ago";
}

}  // namespace

std::string run_state_name(v1::RunState state) {
  switch (state) {
    case v1::RUN_STATE_RUNNING:
      return "running";
    case v1::RUN_STATE_COMPLETED:
      return "completed";
    case v1::RUN_STATE_FAILED:
      return "failed";
    case v1::RUN_STATE_PREEMPTED:
      return "preempted";
    default:
      return "unspecified";
  }
}

std::string split_name(v1::SplitKind split) {
  switch (split) {
    case v1::SPLIT_KIND_TRAIN:
      return "train";
    case v1::SPLIT_KIND_VALIDATION:
      return "validation";
    case v1::SPLIT_KIND_TEST:
      return "test";
    default:
      return "unspecified";
  }
}

std::string direction_name(v1::MetricDirection direction) {
  switch (direction) {
    case v1::METRIC_DIRECTION_MINIMIZE:
      return "minimize";
    case v1::METRIC_DIRECTION_MAXIMIZE:
      return "maximize";
    default:
      return "unspecified";
  }
}

std::string format_fixed(double value, int decimals) {
  if (!std::isfinite(value)) return "-";
  return fmt::format("{:.{}f}", value, decimals);
}

std::string format_percent(double fraction) {
  if (!std::isfinite(fraction)) return "-";
  return fmt::format("{:.2f}%", 100.0 * fraction);
}

std::string format_bytes(std::int64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024.0 && unit < 3) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format(value < 10.0 ? "{:.2f} {}" : "{:.1f} {}", value, kUnits[unit]);
}

std::string format_time_utc(std::int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%SZ", &utc);
  return text;
}

std::string format_duration(std::int64_t ms) {
  if (ms < 0) return "-";
  const std::int64_t s = ms / 1000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string runs_table(const std::vector<v1::Run>& runs, std::int64_t now_unix_ms) {
  Table table({{"run"},
               {"state"},
               {"dataset"},
               {"world", Align::kRight},
               {"attempt", Align::kRight},
               {"started"},
               {"duration", Align::kRight},
               {"message"}});
  for (const auto& run : runs) {
    table.add_row({run.name(), run_state_name(run.state()), run.dataset(),
                   std::to_string(run.world_size()), std::to_string(run.attempt()),
                   format_time_utc(run.started_unix_ms()), run_duration(run, now_unix_ms),
                   run.message()});
  }
  if (table.empty()) return "no runs\n";
  return table.render();
}

std::string run_details(const v1::Run& run, std::int64_t now_unix_ms) {
  std::string out;
  out += fmt::format("run        {}\n", run.name());
  out += fmt::format("state      {}\n", run_state_name(run.state()));
  out += fmt::format("dataset    {}\n", run.dataset());
  out += fmt::format("world size {}\n", run.world_size());
  out += fmt::format("attempt    {}\n", run.attempt());
  out += fmt::format("started    {}\n", format_time_utc(run.started_unix_ms()));
  out += fmt::format("ended      {}\n", format_time_utc(run.ended_unix_ms()));
  out += fmt::format("duration   {}\n", run_duration(run, now_unix_ms));
  if (!run.message().empty()) out += fmt::format("message    {}\n", run.message());
  if (!run.config_json().empty()) out += fmt::format("config     {}\n", run.config_json());
  if (run.events_size() > 0) {
    out += "events\n";
    for (const auto& event : run.events()) out += fmt::format("  {}\n", event);
  }
  return out;
}

std::string status_text(const v1::StatusResponse& status, bool one_run, std::int64_t now_unix_ms) {
  std::string out;
  out += fmt::format("coordinator {}\n", status.version().empty() ? "-" : status.version());
  std::string datasets;
  for (const auto& name : status.datasets()) datasets += (datasets.empty() ? "" : ", ") + name;
  out += fmt::format("datasets    {}\n", datasets.empty() ? "-" : datasets);
  if (status.errors_size() > 0) {
    out += fmt::format("recent errors ({})\n", status.errors_size());
    for (const auto& error : status.errors()) out += fmt::format("  {}\n", error);
  }
  out += "\n";
  if (one_run && status.runs_size() == 1) {
    out += run_details(status.runs(0), now_unix_ms);
  } else {
    out += runs_table({status.runs().begin(), status.runs().end()}, now_unix_ms);
  }
  return out;
}

std::string history_table(const v1::HistoryResponse& history) {
  Table table({{"phase"},
               {"epoch", Align::kRight},
               {"split"},
               {"loss", Align::kRight},
               {"top1", Align::kRight},
               {"top3", Align::kRight},
               {"samples", Align::kRight},
               {"img/s", Align::kRight}});
  for (const auto& epoch : history.epochs()) {
    table.add_row({epoch.phase(), std::to_string(epoch.epoch()), split_name(epoch.split()),
                   format_fixed(epoch.loss(), 4), format_percent(epoch.top1()),
                   format_percent(epoch.top3()), std::to_string(epoch.samples()),
                   format_fixed(epoch.images_per_second(), 1)});
  }
  if (table.empty()) return "no epochs yet\n";
  return table.render();
}

std::string history_csv(const v1::HistoryResponse& history) {
  std::string out = "phase,epoch,split,loss,top1,top3,samples,learning_rate,images_per_second\n";
  for (const auto& epoch : history.epochs()) {
    out += fmt::format("{},{},{},{},{},{},{},{},{}\n", epoch.phase(), epoch.epoch(),
                       split_name(epoch.split()), csv_number(epoch.loss()),
                       csv_number(epoch.top1()), csv_number(epoch.top3()), epoch.samples(),
                       csv_number(epoch.learning_rate()), csv_number(epoch.images_per_second()));
  }
  return out;
}

std::string ranks_table(const RanksView& view, double threshold, std::int64_t now_unix_ms) {
  Table table({{"rank", Align::kRight},
               {"phase"},
               {"epoch", Align::kRight},
               {"step", Align::kRight},
               {"img/s", Align::kRight},
               {"vs median", Align::kRight},
               {"data wait ms", Align::kRight},
               {"comm ms", Align::kRight},
               {"updated", Align::kRight},
               {"note"}});
  int stragglers = 0;
  for (const auto& row : view.ranks) {
    const auto& rank = row.status;
    stragglers += row.straggler ? 1 : 0;
    table.add_row({std::to_string(rank.rank()), rank.phase(), std::to_string(rank.epoch()),
                   std::to_string(rank.step()), format_fixed(rank.images_per_second(), 1),
                   std::isfinite(row.fraction_of_median)
                       ? fmt::format("{:.0f}%", 100.0 * row.fraction_of_median)
                       : "-",
                   format_fixed(rank.data_wait_ms(), 1), format_fixed(rank.comm_ms(), 1),
                   age(rank.updated_unix_ms(), now_unix_ms), row.straggler ? "<- straggler" : ""});
  }
  if (table.empty()) return "no rank has reported yet\n";
  std::string out = table.render();
  out += fmt::format("median {} img/s; {} straggler{} (below {:.0f}% of the median)\n",
                     format_fixed(view.median_images_per_second, 1), stragglers,
                     stragglers == 1 ? "" : "s", 100.0 * threshold);
  return out;
}

std::string event_line(const v1::MetricsEvent& event) {
  if (event.has_run()) {
    const auto& run = event.run();
    std::string line = fmt::format("run {} {} (attempt {})", run.name(),
                                   run_state_name(run.state()), run.attempt());
    if (!run.message().empty()) line += ": " + run.message();
    return line;
  }
  const auto& e = event.epoch();
  return fmt::format(
      "#{} {} epoch {} {}: loss {} top1 {} top3 {} samples {} img/s {} lr {}", event.sequence(),
      e.phase(), e.epoch(), split_name(e.split()), format_fixed(e.loss(), 4),
      format_percent(e.top1()), format_percent(e.top3()), e.samples(),
      format_fixed(e.images_per_second(), 1),
      std::isfinite(e.learning_rate()) ? fmt::format("{:g}", e.learning_rate()) : "-");
}

std::string checkpoints_table(const std::vector<v1::CheckpointInfo>& checkpoints) {
  Table table({{"id"},
               {"phase"},
               {"epoch", Align::kRight},
               {"step", Align::kRight},
               {"metric"},
               {"value", Align::kRight},
               {"size", Align::kRight},
               {"created"},
               {"sha256"}});
  for (const auto& c : checkpoints) {
    const auto& meta = c.meta();
    table.add_row({c.id(), meta.phase(), std::to_string(meta.epoch()), std::to_string(meta.step()),
                   meta.metric_name().empty()
                       ? "-"
                       : meta.metric_name() + " (" + direction_name(meta.direction()) + ")",
                   format_fixed(meta.metric_value(), 4), format_bytes(c.size_bytes()),
                   format_time_utc(c.created_unix_ms()), c.sha256().substr(0, 12)});
  }
  if (table.empty()) return "no checkpoints\n";
  return table.render();
}

std::string checkpoint_details(const v1::CheckpointInfo& c) {
  const auto& meta = c.meta();
  std::string out;
  out += fmt::format("id        {}\n", c.id());
  out += fmt::format("run       {}\n", meta.run());
  out += fmt::format("phase     {}\n", meta.phase());
  out += fmt::format("epoch     {}\n", meta.epoch());
  out += fmt::format("step      {}\n", meta.step());
  out +=
      fmt::format("metric    {} = {} ({})\n", meta.metric_name().empty() ? "-" : meta.metric_name(),
                  format_fixed(meta.metric_value(), 6), direction_name(meta.direction()));
  out += fmt::format("size      {} ({} bytes)\n", format_bytes(c.size_bytes()), c.size_bytes());
  out += fmt::format("created   {}\n", format_time_utc(c.created_unix_ms()));
  out += fmt::format("sha256    {}\n", c.sha256());
  return out;
}

std::string report_text(const v1::RunReport& r, bool confusion) {
  std::string out;
  out += "run:              " + r.run() + "\n";
  out += "split:            " + r.split() + "\n";
  out += "samples:          " + std::to_string(r.samples()) + "\n";
  out += "checkpoint:       " + (r.checkpoint_id().empty() ? "-" : r.checkpoint_id()) + "\n";
  out += "created:          " + format_time_utc(r.created_unix_ms()) + "\n";
  out += "loss:             " + format_fixed(r.loss(), 4) + "\n";
  out += "top-1:            " + format_percent(r.top1()) + "\n";
  out += "top-3:            " + format_percent(r.top3()) + "\n";
  out += "macro precision:  " + format_fixed(r.macro_precision(), 4) + "\n";
  out += "macro recall:     " + format_fixed(r.macro_recall(), 4) + "\n";
  out += "macro F1:         " + format_fixed(r.macro_f1(), 4) + "\n";
  out += "weighted F1:      " + format_fixed(r.weighted_f1(), 4) + "\n";
  const MacroScope scope = macro_scope(r);
  out += "macro averages:   " + macro_scope_text(scope) + "\n";
  // Every class absent means no samples, which the line above says already.
  if (!scope.absent.empty() && scope.absent.size() < static_cast<std::size_t>(scope.num_classes)) {
    constexpr std::size_t kNamed = 10;
    out += "never occur:      " + std::to_string(scope.absent.size()) +
           (scope.absent.size() == 1 ? " class: " : " classes: ") +
           absent_class_names(r, scope, kNamed) +
           (scope.absent.size() > kNamed ? " (--json lists them all)" : "") + "\n";
  }
  out += "\n";

  // The server stores classes by index already; sorting keeps the table
  // right for any report, e.g. one read from an older file.
  std::vector<const v1::ClassMetrics*> classes;
  for (const auto& c : r.classes()) classes.push_back(&c);
  std::stable_sort(classes.begin(), classes.end(),
                   [](const auto* a, const auto* b) { return a->index() < b->index(); });
  Table table({{"index", Align::kRight},
               {"label"},
               {"precision", Align::kRight},
               {"recall", Align::kRight},
               {"f1", Align::kRight},
               {"support", Align::kRight}});
  for (const auto* c : classes) {
    table.add_row({std::to_string(c->index()), c->label().empty() ? "-" : c->label(),
                   format_fixed(c->precision(), 4), format_fixed(c->recall(), 4),
                   format_fixed(c->f1(), 4), std::to_string(c->support())});
  }
  out += table.render();
  if (confusion) out += "\n" + confusion_text(r);
  return out;
}

std::string confusion_text(const v1::RunReport& r) {
  const std::int64_t n = r.num_classes();
  if (n < 1 || r.confusion_size() != n * n) {
    return "confusion matrix: " + std::to_string(r.confusion_size()) + " counts for " +
           std::to_string(n) + " classes (expected num_classes^2)\n";
  }
  std::vector<Table::Column> columns{{"true\\pred", Align::kRight}};
  for (std::int64_t p = 0; p < n; ++p) columns.push_back({std::to_string(p), Align::kRight});
  Table matrix(std::move(columns));
  for (std::int64_t t = 0; t < n; ++t) {
    std::vector<std::string> row{std::to_string(t)};
    for (std::int64_t p = 0; p < n; ++p) {
      row.push_back(std::to_string(r.confusion(static_cast<int>(t * n + p))));
    }
    matrix.add_row(std::move(row));
  }
  return "confusion matrix (rows: true class, columns: predicted)\n" + matrix.render();
}

MacroScope macro_scope(const v1::RunReport& r) {
  MacroScope scope;
  scope.num_classes = r.num_classes();
  const std::int64_t n = r.num_classes();
  if (n < 1 || r.confusion_size() != n * n) return scope;
  scope.known = true;
  std::vector<bool> occurs(static_cast<std::size_t>(n), false);
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t p = 0; p < n; ++p) {
      if (r.confusion(static_cast<int>(t * n + p)) != 0) {
        occurs[static_cast<std::size_t>(t)] = occurs[static_cast<std::size_t>(p)] = true;
      }
    }
  }
  for (int c = 0; c < scope.num_classes; ++c) {
    if (!occurs[static_cast<std::size_t>(c)]) scope.absent.push_back(c);
  }
  scope.averaged = scope.num_classes - static_cast<int>(scope.absent.size());
  if (scope.absent.empty() || scope.averaged == 0) return scope;

  // Which mean of the per-class F1 is the stored macro_f1? Rounding differs
  // from the trainer's sum by ~1e-15; the two means differ by mean * absent /
  // num_classes, so 1e-9 tells them apart unless they are equal, and then
  // the report is taken as a current one.
  double occurring_sum = 0, all_sum = 0;
  for (const auto& c : r.classes()) {
    all_sum += c.f1();
    if (c.index() >= 0 && c.index() < n && occurs[static_cast<std::size_t>(c.index())]) {
      occurring_sum += c.f1();
    }
  }
  constexpr double kTolerance = 1e-9;
  const bool matches_occurring =
      std::abs(r.macro_f1() - occurring_sum / scope.averaged) <= kTolerance;
  const bool matches_all = std::abs(r.macro_f1() - all_sum / static_cast<double>(n)) <= kTolerance;
  if (matches_all && !matches_occurring) scope.averaged = scope.num_classes;
  return scope;
}

std::string macro_scope_text(const MacroScope& scope) {
  const std::string n = std::to_string(scope.num_classes);
  const std::size_t absent = scope.absent.size();
  if (!scope.known) return "over unknown classes (the confusion matrix is not num_classes^2)";
  if (absent == 0) return "over all " + n + " classes";
  if (absent == static_cast<std::size_t>(scope.num_classes)) {
    return "0, no class occurs (no samples)";
  }
  if (scope.averaged == scope.num_classes) {
    return "over all " + n + " classes, the " + std::to_string(absent) +
           (absent == 1 ? " that never occurs" : " that never occur") +
           " counted as 0 (an older report)";
  }
  return "over the " + std::to_string(scope.averaged) + " of " + n +
         " classes that occur (in the true labels or the predictions)";
}

std::string absent_class_names(const v1::RunReport& r, const MacroScope& scope, std::size_t named) {
  // Labels by index: the server lists classes in order, but an older file
  // need not.
  std::vector<std::string> labels(static_cast<std::size_t>(std::max(scope.num_classes, 0)));
  for (const auto& c : r.classes()) {
    if (c.index() >= 0 && c.index() < scope.num_classes) {
      labels[static_cast<std::size_t>(c.index())] = c.label();
    }
  }
  std::string out;
  for (std::size_t i = 0; i < scope.absent.size() && i < named; ++i) {
    const int c = scope.absent[i];
    const std::string& label = labels[static_cast<std::size_t>(c)];
    out += (i == 0 ? "" : ", ") + (label.empty() ? "class " + std::to_string(c) : label);
  }
  if (scope.absent.size() > named) {
    out += " and " + std::to_string(scope.absent.size() - named) + " more";
  }
  return out;
}

}  // namespace xfer::coordinator::coordctl
