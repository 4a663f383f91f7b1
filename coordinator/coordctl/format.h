// What coordctl prints for people (aligned tables, key: value blocks, one
// line per watch event) and for spreadsheets (CSV). Pure functions of the
// response messages, so they are tested without a server; anything that
// depends on the clock takes `now_unix_ms`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/coordctl/stragglers.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::coordctl {

// ---- single values
// "running", "completed", "failed", "unspecified".
std::string run_state_name(v1::RunState state);
// "train", "validation", "test", "unspecified".
std::string split_name(v1::SplitKind split);
// "minimize", "maximize", "unspecified".
std::string direction_name(v1::MetricDirection direction);
// Fixed decimals; "-" for NaN or infinity.
std::string format_fixed(double value, int decimals);
// A fraction as a percentage with two decimals ("45.67%"); "-" for NaN.
std::string format_percent(double fraction);
// "512 B", "1.5 KiB", "12.3 MiB", "1.02 GiB".
std::string format_bytes(std::int64_t bytes);
// UTC, "2026-11-28 15:30:01Z"; "-" for 0 (not set).
std::string format_time_utc(std::int64_t unix_ms);
// "45s", "3m07s", "2h03m"; "-" for negative.
std::string format_duration(std::int64_t ms);

// ---- runs and status
// Columns: run, state, dataset, world, attempt, started, duration, message.
// A running run's duration counts to `now_unix_ms`.
std::string runs_table(const std::vector<v1::Run>& runs, std::int64_t now_unix_ms);
// Every field of one run, its config and its state changes.
std::string run_details(const v1::Run& run, std::int64_t now_unix_ms);
// Version, datasets, recent errors and the runs table (or, when the
// response holds the one run asked for, its details).
std::string status_text(const v1::StatusResponse& status, bool one_run, std::int64_t now_unix_ms);

// ---- metrics
// Columns: phase, epoch, split, loss, top1, top3, samples, img/s.
std::string history_table(const v1::HistoryResponse& history);
// Header: phase,epoch,split,loss,top1,top3,samples,learning_rate,images_per_second
// Full precision; empty fields for NaN. Fields are never quoted: phases are
// [a-z0-9_-] and splits fixed names.
std::string history_csv(const v1::HistoryResponse& history);

// Columns: rank, phase, epoch, step, img/s, vs median, data wait ms, comm ms,
// updated; stragglers get "<- straggler" in a last column.
std::string ranks_table(const RanksView& view, double threshold, std::int64_t now_unix_ms);

// One line per event: an aggregated epoch, or the run's new state.
std::string event_line(const v1::MetricsEvent& event);

// ---- checkpoints
// Columns: id, phase, epoch, step, metric, value, size, created, sha256 (first 12 hex).
std::string checkpoints_table(const std::vector<v1::CheckpointInfo>& checkpoints);
// Every field of one checkpoint.
std::string checkpoint_details(const v1::CheckpointInfo& checkpoint);

// ---- reports
// The headline figures (run, split, samples, loss, top-1, top-3, macro
// precision/recall/F1, weighted F1, what the macros average over and, when
// some classes never occur, how many and the first 10 of them), then a
// per-class table (index, label,
// precision, recall, F1, support) sorted by index; with `confusion`, then
// confusion_text() too.
std::string report_text(const v1::RunReport& report, bool confusion);
// The confusion matrix as a table: rows the true class, columns the
// predicted one, both by index. A matrix whose size is not num_classes^2 is
// described instead of printed.
std::string confusion_text(const v1::RunReport& report);

// What a report's macro averages are over. RunReport has no field for it,
// but its confusion matrix tells which classes occur (a non-zero row: in the
// true labels; a non-zero column: in the predictions), and its per-class F1
// tells which definition the stored macro_f1 follows: trainers now average
// over the classes that occur (scikit-learn's classification_report), older
// ones averaged over all num_classes, the absent ones as 0.
struct MacroScope {
  // false when confusion is not num_classes^2 counts: nothing below is known.
  bool known = false;
  int num_classes = 0;
  // How many classes the macros average over: num_classes - absent.size(),
  // or num_classes for an older report whose macro_f1 is the mean over all.
  int averaged = 0;
  std::vector<int> absent;  // classes neither true nor predicted, ascending
};
MacroScope macro_scope(const v1::RunReport& report);
// What the macros average over, in words: "over all 100 classes", "over the
// 10 of 100 classes that occur (in the true labels or the predictions)", "0,
// no class occurs (no samples)", ...
std::string macro_scope_text(const MacroScope& scope);
// The labels ("class <i>" when empty) of the first `named` absent classes,
// then " and N more" if there are others; "" when none is absent.
std::string absent_class_names(const v1::RunReport& report, const MacroScope& scope,
                               std::size_t named);

}  // namespace xfer::coordinator::coordctl
