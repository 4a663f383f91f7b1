// The coordinator's metrics: exact aggregation of rank reports, a durable
// history per run, the per-rank straggler view and a watch stream.
//
// Idempotency. A report is identified by (run, rank, phase, epoch, split,
// step). Storing the same key again is a retry: it is acknowledged as a
// duplicate and counted once. The same key with different *counted* content
// (world_size, loss_sum, correct_top1, correct_top3, samples, learning_rate,
// end_of_epoch) is a conflict and an error. The performance figures
// (images/s, data wait, comm) and steps_in_epoch are not compared: a step
// re-run after a crash reproduces the counts, not the timings.
//
// Aggregation. Reports are grouped by (run, phase, epoch, split). The group
// takes its world size W from its first report; later reports must agree. It
// is complete once each of the W ranks has sent a report with end_of_epoch
// set; after that a rank may only repeat what it sent. Completion computes
// the sums, in (rank, step) order so the result does not depend on arrival
// order, and publishes one MetricsEvent with the next sequence number of the
// run. A rank that ended a group can send no new step to it, and its end
// step must be its highest.
//
// Durability. With a state directory each run has `<state_dir>/<run>.metrics.jsonl`:
// one JSON line per accepted report, appended and fsynced before report()
// returns. The constructor reloads every such file by replaying its lines in
// order, which rebuilds the same groups, idempotency keys, events and
// sequence numbers, so a rank retrying after a coordinator restart is still
// not double-counted. A torn last line is dropped (see history_file.h); any
// other malformed line is DATA_LOSS naming the file and line.
//
// Watch. Each run keeps every event it published (one per completed group:
// a few per epoch, so the log stays small). Watchers read it by cursor
// (wait_events / Watcher) and never hold a queue of their own: a slow watcher
// just reads later from where it stopped, and reporters never wait for
// watchers. There is therefore nothing to drop and no resync step.
//
// Thread-safety: every method may be called from any thread. One mutex
// guards the state; report() holds it while it appends and fsyncs, so the
// file order is the order of application (what makes replay exact).
// Reporters are serialised; at a few reports per rank per second that costs
// nothing noticeable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/metrics/metrics_types.h"

namespace xfer::coordinator::metrics {

class HistoryFile;

struct MetricsStoreOptions {
  // Where history files live; created if missing. Empty: memory only,
  // nothing survives a restart (for tests and tools). Default: empty.
  std::filesystem::path state_dir;
};

// A group still waiting for some ranks' end-of-epoch reports.
struct PendingEpoch {
  std::string phase;
  std::int64_t epoch = 0;
  SplitKind split = SplitKind::kTrain;
  int world_size = 0;
  std::vector<int> ended_ranks;  // ascending
  std::int64_t reports = 0;
};

class MetricsStore {
 public:
  // Loads every `*.metrics.jsonl` in options.state_dir. Throws
  // MetricsError(kDataLoss) for a malformed or inconsistent line (naming
  // file and line) and MetricsError(kIo) when the directory or a file cannot
  // be read.
  explicit MetricsStore(MetricsStoreOptions options);
  ~MetricsStore();

  MetricsStore(const MetricsStore&) = delete;
  MetricsStore& operator=(const MetricsStore&) = delete;

  // Validates, checks idempotency and the group rules above, makes the
  // report durable, then counts it. Throws MetricsError: kInvalidArgument
  // (bad field), kConflict (same key, different counts),
  // kFailedPrecondition (world size differs from the group's, a new step
  // after the rank's end of epoch), kIo (history could not be written:
  // nothing was counted, the report may be retried).
  ReportResult report(const RankReport& report);

  // Forgets every group of `run` that is not complete (its reports and
  // their keys), durably. For a job resumed from a checkpoint: the steps it
  // re-runs are then counted afresh instead of conflicting with the crashed
  // attempt's partial reports. Completed groups and events stay. Returns the
  // number of groups dropped. Throws MetricsError(kIo).
  std::size_t discard_incomplete(const std::string& run);

  // Every completed group of `run`, in completion order (empty for an
  // unknown run).
  std::vector<EpochMetrics> history(const std::string& run) const;
  // Groups of `run` still waiting for ranks, ordered by (phase, epoch, split).
  std::vector<PendingEpoch> pending(const std::string& run) const;
  // The latest report of each rank of `run`'s current world size, by rank.
  std::vector<RankStatus> ranks(const std::string& run) const;
  // Runs with at least one stored record, sorted.
  std::vector<std::string> runs() const;
  // Sequence number of `run`'s newest event; 0 when none.
  std::int64_t last_sequence(const std::string& run) const;

  // Events of `run` with sequence >= from_sequence (0 or 1: from the first),
  // at most max_events of them. If there is none yet, waits up to `timeout`
  // for one; returns empty on timeout or after shutdown(). Never blocks
  // reporters.
  std::vector<MetricsEvent> wait_events(const std::string& run, std::int64_t from_sequence,
                                        std::chrono::milliseconds timeout,
                                        std::size_t max_events = 256) const;

  // Wakes every waiter; later wait_events calls return at once. For server
  // shutdown. Reports are still accepted.
  void shutdown();
  // Whether shutdown() was called: a Watch loop's signal to end its stream.
  bool is_shut_down() const;

 private:
  struct Group;
  struct RunState;

  void load_all();
  RunState& run_state(const std::string& run);
  // Checks `report` and applies it to the in-memory state. With `durable`
  // (a live report, not a replayed line) the record is appended to the
  // run's history first. Returns what report() returns.
  ReportResult apply(const RankReport& report, std::int64_t unix_ms, bool durable);
  std::size_t apply_discard(const std::string& run, std::int64_t unix_ms, bool durable);
  // Appends one line to the run's history file (opened on first use); a
  // no-op for a memory-only store.
  void append_record(RunState& state, const std::string& run, const std::string& line);

  // Constant after construction.
  const MetricsStoreOptions options_;

  mutable std::mutex mutex_;
  mutable std::condition_variable event_published_;
  // Guarded by mutex_.
  std::map<std::string, std::unique_ptr<RunState>> runs_;
  bool shut_down_ = false;
};

// A cursor over one run's events, for a Watch stream handler.
//
//   Watcher watcher(store, run, request.from_sequence());
//   while (!context->IsCancelled() && !store.is_shut_down()) {
//     for (const MetricsEvent& e : watcher.next(std::chrono::seconds(1))) send(e);
//   }
//
// Not thread-safe itself (one per stream); the store it reads is.
class Watcher {
 public:
  // REQUIRES: `store` outlives the watcher.
  Watcher(const MetricsStore& store, std::string run, std::int64_t from_sequence)
      : store_(store), run_(std::move(run)), next_(from_sequence < 1 ? 1 : from_sequence) {}

  // The events after those already returned, waiting up to `timeout` when
  // there are none. Empty on timeout.
  std::vector<MetricsEvent> next(std::chrono::milliseconds timeout);
  // Sequence number of the next event this watcher will return.
  std::int64_t cursor() const { return next_; }

 private:
  const MetricsStore& store_;
  std::string run_;
  std::int64_t next_;
};

}  // namespace xfer::coordinator::metrics
