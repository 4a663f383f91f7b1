#include "coordinator/tensorboard/run_event_writers.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <stdexcept>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "coordinator/tensorboard/epoch_scalars.h"
#include "coordinator/tensorboard/event_file.h"
#include "coordinator/tensorboard/global_epochs.h"

namespace xfer::coordinator::tensorboard {
namespace {

namespace fs = std::filesystem;

// (phase, epoch, split): one group of a run, as the store keys it.
using GroupKey = std::tuple<std::string, std::int64_t, metrics::SplitKind>;

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string this_host() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  // A '/' would make the file name a path.
  std::string host(name);
  for (char& c : host) {
    if (c == '/') c = '_';
  }
  return host;
}

TensorBoardOptions with_defaults(TensorBoardOptions options) {
  if (options.host.empty()) options.host = this_host();
  if (options.pid == 0) options.pid = static_cast<int>(::getpid());
  return options;
}

}  // namespace

struct RunEventWriters::RunState {
  RunState(fs::path dir, const TensorBoardOptions& options)
      : file(std::move(dir), options.host, options.pid) {}

  EventFileWriter file;
  GlobalEpochs steps;
  // Sequence number of the next store event to write.
  std::int64_t next_sequence = 1;
  // Train groups not complete yet: each rank's end-of-epoch images/s.
  std::map<GroupKey, std::map<int, double>> rank_images_per_second;
  // Events not written yet (a failed write keeps them here).
  std::vector<::tensorboard::Event> queued;
  // A failure was reported and no write succeeded since.
  bool failing = false;
};

RunEventWriters::RunEventWriters(TensorBoardOptions options, const metrics::MetricsStore& store,
                                 ErrorSink on_error)
    : options_(with_defaults(std::move(options))), store_(store), on_error_(std::move(on_error)) {
  if (options_.dir.empty()) throw std::invalid_argument("--tensorboard-dir is empty");
  std::error_code ec;
  fs::create_directories(options_.dir, ec);
  if (ec || !fs::is_directory(options_.dir)) {
    throw std::runtime_error("--tensorboard-dir " + options_.dir.string() +
                             ": cannot create directory" + (ec ? " (" + ec.message() + ")" : ""));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (const std::string& run : store_.runs()) catch_up_at_start(run);
}

RunEventWriters::~RunEventWriters() = default;

fs::path RunEventWriters::run_dir(const std::string& run) const { return options_.dir / run; }

RunEventWriters::RunState& RunEventWriters::run_state(const std::string& run) {
  std::unique_ptr<RunState>& state = runs_[run];
  if (!state) state = std::make_unique<RunState>(run_dir(run), options_);
  return *state;
}

void RunEventWriters::catch_up_at_start(const std::string& run) {
  RunState& state = run_state(run);
  // (tag, step) of every scalar already in the run's files.
  std::set<std::pair<std::string, std::int64_t>> written;
  std::error_code ec;
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(run_dir(run), ec)) {
    if (!entry.is_regular_file() || !is_event_file_name(entry.path().filename().string())) {
      continue;
    }
    ++files;
    const EventFileContents contents = read_event_file(entry.path());
    // A torn tail is what a crash mid-write leaves: what precedes it counts.
    if (!contents.problem.empty()) spdlog::warn("tensorboard: {}", contents.problem);
    for (const auto& event : contents.events) {
      for (const auto& value : event.summary().value()) written.emplace(value.tag(), event.step());
    }
  }

  const double wall_time = now_seconds();
  std::size_t epochs = 0;
  std::size_t missing = 0;
  for (const metrics::EpochMetrics& epoch : store_.history(run)) {
    ++epochs;
    const std::int64_t step = state.steps.step(epoch.phase, epoch.epoch);
    const std::vector<Scalar> scalars = epoch_scalars(epoch, state.steps.ordinal(epoch.phase), {});
    bool present = false;
    for (const Scalar& scalar : scalars) present = present || written.count({scalar.tag, step}) > 0;
    if (present || scalars.empty()) continue;
    state.queued.push_back(scalars_event(wall_time, step, scalars));
    ++missing;
  }
  state.next_sequence = store_.last_sequence(run) + 1;
  if (missing > 0) {
    spdlog::info(
        "tensorboard: run '{}': {} of {} stored epochs are not in {} ({} event files): "
        "writing them",
        run, missing, epochs, run_dir(run).string(), files);
    flush(run, state);
  }
}

void RunEventWriters::on_report(const metrics::RankReport& report,
                                const metrics::ReportResult& result) {
  std::lock_guard<std::mutex> lock(mutex_);
  RunState& state = run_state(report.run);
  if (report.end_of_epoch && !result.duplicate && report.split == metrics::SplitKind::kTrain) {
    state.rank_images_per_second[{report.phase, report.epoch, report.split}][report.rank] =
        report.images_per_second;
  }
  if (!result.completed) return;

  const double wall_time = now_seconds();
  bool waiting = false;
  while (!waiting) {
    const std::vector<metrics::MetricsEvent> events =
        store_.wait_events(report.run, state.next_sequence, std::chrono::milliseconds(0));
    if (events.empty()) break;
    for (const metrics::MetricsEvent& event : events) {
      const metrics::EpochMetrics& epoch = event.metrics;
      const GroupKey key{epoch.phase, epoch.epoch, epoch.split};
      const auto captured = state.rank_images_per_second.find(key);
      const std::size_t known =
          captured == state.rank_images_per_second.end() ? 0 : captured->second.size();
      // Another reporter completed this epoch and has not come here yet with
      // its rank's figure: leave the epoch, and those after it, to that call.
      if (epoch.split == metrics::SplitKind::kTrain &&
          known < static_cast<std::size_t>(epoch.world_size) &&
          event.sequence != result.completed->sequence) {
        waiting = true;
        break;
      }
      const std::int64_t step = state.steps.step(epoch.phase, epoch.epoch);
      std::map<int, double> ranks;
      if (captured != state.rank_images_per_second.end()) {
        ranks = std::move(captured->second);
        state.rank_images_per_second.erase(captured);
      }
      const std::vector<Scalar> scalars =
          epoch_scalars(epoch, state.steps.ordinal(epoch.phase), ranks);
      if (!scalars.empty()) state.queued.push_back(scalars_event(wall_time, step, scalars));
      state.next_sequence = event.sequence + 1;
    }
  }
  flush(report.run, state);
}

void RunEventWriters::flush(const std::string& run, RunState& state) {
  if (state.queued.empty()) return;
  if (state.queued.size() > kMaxQueuedEvents) {
    const std::size_t dropped = state.queued.size() - kMaxQueuedEvents;
    spdlog::warn(
        "tensorboard: run '{}': dropping the {} oldest unwritten epochs (more than {} "
        "queued while writes fail)",
        run, dropped, kMaxQueuedEvents);
    state.queued.erase(state.queued.begin(),
                       state.queued.begin() + static_cast<std::ptrdiff_t>(dropped));
  }
  const std::string problem = state.file.append(state.queued);
  if (!problem.empty()) {
    if (!state.failing) {
      on_error_("tensorboard: run '" + run + "': " + problem + " (" +
                std::to_string(state.queued.size()) +
                " epochs kept for the next try; metrics are stored as usual)");
    } else {
      spdlog::debug("tensorboard: run '{}': still failing: {}", run, problem);
    }
    state.failing = true;
    return;
  }
  if (state.failing) {
    spdlog::info("tensorboard: run '{}': writing to {} again ({} epochs caught up)", run,
                 state.file.path().string(), state.queued.size());
  }
  state.failing = false;
  state.queued.clear();
}

}  // namespace xfer::coordinator::tensorboard
