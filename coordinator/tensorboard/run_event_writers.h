// The coordinator's TensorBoard output: one directory per run under the
// --tensorboard-dir, holding event files with the run's per-epoch curves
// (tags in epoch_scalars.h, steps in global_epochs.h), so that
// `tensorboard --logdir DIR` shows every run the coordinator knows.
//
//   DIR/<run>/events.out.tfevents.<unix_seconds>.<host>.<pid>
//
// Live. The metrics service calls on_report() after each stored report. When
// a report completed an epoch of a split, the run's new events are taken from
// the store in sequence order (so two reporters completing groups at once
// cannot swap them) and appended to the run's current file in one write,
// which is then visible to a reader (see EventFileWriter). A train epoch
// completed by another reporter whose call has not arrived yet (its rank's
// images/s is still unknown) is left, with the epochs after it, to that call.
//
// Restart. A coordinator process writes its own file per run (TensorBoard
// merges the files of a directory). At construction, before the server takes
// any report, each run's existing event files are read and every epoch of
// the replayed history whose scalars are not there yet at its step is
// written: nothing already written is written twice, and what the previous
// process stored in the history but had not yet written (a crash between the
// two) is caught up. A run directory without files (the flag was just
// turned on, or the directory was deleted) is filled from the whole history.
// Only rank_<N>/images_per_second cannot be rebuilt: the history keeps the
// sum over ranks, not each rank's figure; the same holds for a rank whose
// end-of-epoch report came before a restart that its epoch's completion
// followed.
//
// Errors. Writing never fails a report: a failure (disk full, a directory
// that cannot be created) is passed to the error sink once (then once more
// after each recovery), the events stay queued (up to kMaxQueuedEvents per
// run) and go out with the next epoch's write.
//
// Thread-safe: one mutex serialises every write (a few small writes per
// epoch).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "coordinator/metrics/metrics_store.h"

namespace xfer::coordinator::tensorboard {

struct TensorBoardOptions {
  // REQUIRES: non-empty. Created if missing.
  std::filesystem::path dir;
  // Name the event files. Default: this machine's host name and process id.
  std::string host;
  int pid = 0;
};

class RunEventWriters {
 public:
  // Events kept for a later try while writes fail, per run; older ones are
  // dropped beyond it (with a log line).
  static constexpr std::size_t kMaxQueuedEvents = 10000;

  using ErrorSink = std::function<void(const std::string&)>;

  // Creates options.dir (throws std::runtime_error naming it when that
  // fails), then brings every run of `store` up to date (see Restart above).
  // REQUIRES: `store` outlives this object.
  RunEventWriters(TensorBoardOptions options, const metrics::MetricsStore& store,
                  ErrorSink on_error);
  ~RunEventWriters();

  RunEventWriters(const RunEventWriters&) = delete;
  RunEventWriters& operator=(const RunEventWriters&) = delete;

  // Called after store.report(report) returned `result` (not after it threw).
  void on_report(const metrics::RankReport& report, const metrics::ReportResult& result);

  // The directory of a run's event files.
  std::filesystem::path run_dir(const std::string& run) const;

 private:
  struct RunState;

  RunState& run_state(const std::string& run);
  void catch_up_at_start(const std::string& run);
  // Appends `state`'s queued events to its file, reporting a failure once.
  void flush(const std::string& run, RunState& state);

  // Constant after construction.
  const TensorBoardOptions options_;
  const metrics::MetricsStore& store_;
  const ErrorSink on_error_;

  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<RunState>> runs_;  // GUARDED_BY(mutex_)
};

}  // namespace xfer::coordinator::tensorboard
