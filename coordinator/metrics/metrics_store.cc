#include "coordinator/metrics/metrics_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <sstream>
#include <system_error>
#include <tuple>
#include <utility>

#include "coordinator/metrics/history_file.h"
#include "coordinator/metrics/history_record.h"

namespace xfer::coordinator::metrics {
namespace {

constexpr const char* kHistorySuffix = ".metrics.jsonl";

// (phase, epoch, split): one group of a run.
using GroupKey = std::tuple<std::string, std::int64_t, SplitKind>;
// (rank, step): one report of a group.
using ReportKey = std::pair<int, std::int64_t>;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string group_name(const std::string& run, const GroupKey& key) {
  return "run '" + run + "' phase '" + std::get<0>(key) + "' epoch " +
         std::to_string(std::get<1>(key)) + " split " + to_string(std::get<2>(key));
}

template <typename T>
void compare_field(std::ostringstream& out, const char* name, const T& stored, const T& incoming) {
  if (stored == incoming) return;
  if (out.tellp() > 0) out << ", ";
  out << name << " " << incoming << " (stored: " << stored << ")";
}

// The counted fields that differ between two reports of one key, or "".
std::string counted_differences(const RankReport& stored, const RankReport& incoming) {
  std::ostringstream out;
  out.precision(std::numeric_limits<double>::max_digits10);
  compare_field(out, "world_size", stored.world_size, incoming.world_size);
  compare_field(out, "loss_sum", stored.loss_sum, incoming.loss_sum);
  compare_field(out, "correct_top1", stored.correct_top1, incoming.correct_top1);
  compare_field(out, "correct_top3", stored.correct_top3, incoming.correct_top3);
  compare_field(out, "samples", stored.samples, incoming.samples);
  compare_field(out, "learning_rate", stored.learning_rate, incoming.learning_rate);
  compare_field(out, "end_of_epoch", stored.end_of_epoch, incoming.end_of_epoch);
  return out.str();
}

[[noreturn]] void fail(MetricsError::Code code, const RankReport& report,
                       const std::string& problem) {
  throw MetricsError(code, "metrics report (" + describe_key(report) + "): " + problem);
}

}  // namespace

struct MetricsStore::Group {
  int world_size = 0;
  std::map<ReportKey, RankReport> reports;
  std::map<int, std::int64_t> ended;  // rank -> its end-of-epoch step
  bool complete = false;
};

struct MetricsStore::RunState {
  std::map<GroupKey, Group> groups;
  std::vector<MetricsEvent> events;  // events[i].sequence == i + 1
  std::map<int, RankStatus> ranks;
  int world_size = 0;        // of the latest accepted report
  std::int64_t records = 0;  // lines stored (or replayed)
  std::unique_ptr<HistoryFile> file;
};

MetricsStore::MetricsStore(MetricsStoreOptions options) : options_(std::move(options)) {
  if (options_.state_dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(options_.state_dir, ec);
  if (ec) {
    throw MetricsError(MetricsError::Code::kIo, options_.state_dir.string() +
                                                    ": cannot create the metrics state "
                                                    "directory: " +
                                                    ec.message());
  }
  std::lock_guard<std::mutex> lock(mutex_);
  load_all();
}

MetricsStore::~MetricsStore() = default;

void MetricsStore::load_all() {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.state_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > std::string(kHistorySuffix).size() &&
        name.compare(name.size() - std::string(kHistorySuffix).size(), std::string::npos,
                     kHistorySuffix) == 0) {
      files.push_back(entry.path());
    }
  }
  if (ec) {
    throw MetricsError(MetricsError::Code::kIo, options_.state_dir.string() +
                                                    ": cannot list history files: " + ec.message());
  }
  std::sort(files.begin(), files.end());

  for (const auto& path : files) {
    const std::string file_name = path.filename().string();
    const std::string run =
        file_name.substr(0, file_name.size() - std::string(kHistorySuffix).size());
    std::vector<std::string> lines;
    std::unique_ptr<HistoryFile> file = HistoryFile::open(path, &lines);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const std::string where = path.string() + ":" + std::to_string(i + 1) + ": ";
      HistoryRecord record;
      try {
        record = decode(lines[i]);
      } catch (const std::exception& e) {
        throw MetricsError(MetricsError::Code::kDataLoss,
                           where + "malformed metrics record: " + e.what() +
                               " (expected one JSON record per line; only a torn last line is "
                               "repaired automatically)");
      }
      if (record.report.run != run) {
        throw MetricsError(MetricsError::Code::kDataLoss,
                           where + "record of run '" + record.report.run +
                               "' in the history of run '" + run + "'");
      }
      try {
        if (record.type == HistoryRecord::Type::kDiscardIncomplete) {
          apply_discard(run, record.unix_ms, /*durable=*/false);
        } else {
          apply(record.report, record.unix_ms, /*durable=*/false);
        }
      } catch (const MetricsError& e) {
        throw MetricsError(MetricsError::Code::kDataLoss,
                           where + "stored record cannot be replayed: " + e.what());
      }
    }
    RunState& state = run_state(run);
    state.file = std::move(file);
    spdlog::info("metrics: run '{}': reloaded {} records, {} completed epochs, from {}", run,
                 lines.size(), state.events.size(), path.string());
  }
}

MetricsStore::RunState& MetricsStore::run_state(const std::string& run) {
  std::unique_ptr<RunState>& state = runs_[run];
  if (!state) state = std::make_unique<RunState>();
  return *state;
}

void MetricsStore::append_record(RunState& state, const std::string& run, const std::string& line) {
  if (options_.state_dir.empty()) return;
  if (!state.file) {
    std::vector<std::string> existing;
    state.file = HistoryFile::open(options_.state_dir / (run + kHistorySuffix), &existing);
    if (!existing.empty()) {
      // Only reachable if someone wrote the file behind our back after startup.
      throw MetricsError(MetricsError::Code::kDataLoss,
                         state.file->path().string() +
                             ": history file appeared after startup with " +
                             std::to_string(existing.size()) + " records (expected none)");
    }
  }
  state.file->append(line);
}

ReportResult MetricsStore::report(const RankReport& report) {
  std::lock_guard<std::mutex> lock(mutex_);
  return apply(report, now_unix_ms(), /*durable=*/true);
}

ReportResult MetricsStore::apply(const RankReport& report, std::int64_t unix_ms, bool durable) {
  validate(report);
  RunState& state = run_state(report.run);
  const GroupKey group_key{report.phase, report.epoch, report.split};
  const ReportKey report_key{report.rank, report.step};

  const auto group_it = state.groups.find(group_key);
  if (group_it != state.groups.end()) {
    const Group& group = group_it->second;
    const auto stored = group.reports.find(report_key);
    if (stored != group.reports.end()) {
      const std::string differences = counted_differences(stored->second, report);
      if (!differences.empty()) {
        fail(MetricsError::Code::kConflict, report,
             "conflicts with the report already stored under this key: " + differences +
                 " (expected a retry to repeat the stored report)");
      }
      return ReportResult{/*duplicate=*/true, std::nullopt};
    }
    if (group.world_size != report.world_size) {
      fail(MetricsError::Code::kFailedPrecondition, report,
           "world_size " + std::to_string(report.world_size) + " differs from the " +
               std::to_string(group.world_size) + " this epoch's first report had (expected " +
               std::to_string(group.world_size) + ")");
    }
    const auto ended = group.ended.find(report.rank);
    if (ended != group.ended.end()) {
      fail(MetricsError::Code::kFailedPrecondition, report,
           "rank " + std::to_string(report.rank) + " already ended this epoch at step " +
               std::to_string(ended->second) + " (expected no new step after end_of_epoch)");
    }
    if (report.end_of_epoch) {
      // The rank's highest stored step: the last entry before (rank + 1, 0).
      const auto next_rank = group.reports.lower_bound(ReportKey{report.rank + 1, 0});
      if (next_rank != group.reports.begin()) {
        const auto last = std::prev(next_rank);
        if (last->first.first == report.rank && last->first.second > report.step) {
          fail(MetricsError::Code::kFailedPrecondition, report,
               "end_of_epoch at step " + std::to_string(report.step) + " but step " +
                   std::to_string(last->first.second) +
                   " of this rank is already stored (expected the end to be its last step)");
        }
      }
    }
  }

  // Durable before counted: a report we acknowledge is on disk.
  if (durable) {
    append_record(state, report.run,
                  encode(HistoryRecord{HistoryRecord::Type::kReport, unix_ms, report}));
  }
  ++state.records;

  Group& group = state.groups[group_key];
  if (group.reports.empty()) group.world_size = report.world_size;
  group.reports.emplace(report_key, report);

  if (state.world_size != report.world_size) {
    // A new world size (a job resumed on another number of ranks): ranks
    // beyond it are gone, not stragglers.
    state.ranks.erase(state.ranks.lower_bound(report.world_size), state.ranks.end());
    state.world_size = report.world_size;
  }
  RankStatus& status = state.ranks[report.rank];
  status.rank = report.rank;
  status.world_size = report.world_size;
  status.phase = report.phase;
  status.epoch = report.epoch;
  status.split = report.split;
  status.step = report.step;
  status.images_per_second = report.images_per_second;
  status.data_wait_ms = report.data_wait_ms;
  status.comm_ms = report.comm_ms;
  status.learning_rate = report.learning_rate;
  status.steps_in_epoch = report.steps_in_epoch;
  status.updated_unix_ms = unix_ms;

  ReportResult result;
  if (!report.end_of_epoch) return result;
  group.ended.emplace(report.rank, report.step);
  if (static_cast<int>(group.ended.size()) < group.world_size) return result;

  group.complete = true;
  EpochMetrics m;
  m.run = report.run;
  m.phase = report.phase;
  m.epoch = report.epoch;
  m.split = report.split;
  m.world_size = group.world_size;
  // Sum in (rank, step) order: the same bits whatever order reports came in.
  for (const auto& [key, r] : group.reports) {
    m.loss_sum += r.loss_sum;
    m.correct_top1 += r.correct_top1;
    m.correct_top3 += r.correct_top3;
    m.samples += r.samples;
    if (key.first == 0) m.learning_rate = r.learning_rate;  // rank 0's last step wins
    if (r.end_of_epoch) m.images_per_second += r.images_per_second;
    ++m.reports;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto samples = static_cast<double>(m.samples);
  m.loss = m.samples > 0 ? m.loss_sum / samples : nan;
  m.top1 = m.samples > 0 ? static_cast<double>(m.correct_top1) / samples : nan;
  m.top3 = m.samples > 0 ? static_cast<double>(m.correct_top3) / samples : nan;

  MetricsEvent event{static_cast<std::int64_t>(state.events.size()) + 1, m};
  state.events.push_back(event);
  result.completed = event;
  event_published_.notify_all();
  return result;
}

std::size_t MetricsStore::discard_incomplete(const std::string& run) {
  std::lock_guard<std::mutex> lock(mutex_);
  return apply_discard(run, now_unix_ms(), /*durable=*/true);
}

std::size_t MetricsStore::apply_discard(const std::string& run, std::int64_t unix_ms,
                                        bool durable) {
  const auto it = runs_.find(run);
  if (it == runs_.end()) return 0;
  RunState& state = *it->second;
  std::size_t incomplete = 0;
  for (const auto& [key, group] : state.groups) incomplete += group.complete ? 0 : 1;
  // Nothing to forget: write nothing (on replay the record is applied as is).
  if (incomplete == 0 && durable) return 0;
  if (durable) {
    HistoryRecord record;
    record.type = HistoryRecord::Type::kDiscardIncomplete;
    record.unix_ms = unix_ms;
    record.report.run = run;
    append_record(state, run, encode(record));
  }
  ++state.records;
  for (auto g = state.groups.begin(); g != state.groups.end();) {
    if (g->second.complete) {
      ++g;
    } else {
      spdlog::info("metrics: discarding incomplete {} ({} reports)", group_name(run, g->first),
                   g->second.reports.size());
      g = state.groups.erase(g);
    }
  }
  return incomplete;
}

std::vector<EpochMetrics> MetricsStore::history(const std::string& run) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<EpochMetrics> out;
  const auto it = runs_.find(run);
  if (it == runs_.end()) return out;
  for (const MetricsEvent& event : it->second->events) out.push_back(event.metrics);
  return out;
}

std::vector<PendingEpoch> MetricsStore::pending(const std::string& run) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<PendingEpoch> out;
  const auto it = runs_.find(run);
  if (it == runs_.end()) return out;
  for (const auto& [key, group] : it->second->groups) {
    if (group.complete) continue;
    PendingEpoch p;
    std::tie(p.phase, p.epoch, p.split) = key;
    p.world_size = group.world_size;
    for (const auto& [rank, step] : group.ended) p.ended_ranks.push_back(rank);
    p.reports = static_cast<std::int64_t>(group.reports.size());
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<RankStatus> MetricsStore::ranks(const std::string& run) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<RankStatus> out;
  const auto it = runs_.find(run);
  if (it == runs_.end()) return out;
  for (const auto& [rank, status] : it->second->ranks) out.push_back(status);
  return out;
}

std::vector<std::string> MetricsStore::runs() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  for (const auto& [name, state] : runs_) {
    if (state->records > 0) out.push_back(name);
  }
  return out;
}

std::int64_t MetricsStore::last_sequence(const std::string& run) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = runs_.find(run);
  return it == runs_.end() ? 0 : static_cast<std::int64_t>(it->second->events.size());
}

std::vector<MetricsEvent> MetricsStore::wait_events(const std::string& run,
                                                    std::int64_t from_sequence,
                                                    std::chrono::milliseconds timeout,
                                                    std::size_t max_events) const {
  const std::size_t first = from_sequence < 1 ? 0 : static_cast<std::size_t>(from_sequence - 1);
  std::unique_lock<std::mutex> lock(mutex_);
  auto available = [&]() -> const std::vector<MetricsEvent>* {
    const auto it = runs_.find(run);
    if (it == runs_.end() || it->second->events.size() <= first) return nullptr;
    return &it->second->events;
  };
  event_published_.wait_for(lock, timeout, [&] { return shut_down_ || available() != nullptr; });
  std::vector<MetricsEvent> out;
  const std::vector<MetricsEvent>* events = available();
  if (events == nullptr) return out;
  const std::size_t last = std::min(events->size(), first + max_events);
  out.assign(events->begin() + static_cast<std::ptrdiff_t>(first),
             events->begin() + static_cast<std::ptrdiff_t>(last));
  return out;
}

void MetricsStore::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    shut_down_ = true;
  }
  event_published_.notify_all();
}

bool MetricsStore::is_shut_down() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return shut_down_;
}

std::vector<MetricsEvent> Watcher::next(std::chrono::milliseconds timeout) {
  std::vector<MetricsEvent> events = store_.wait_events(run_, next_, timeout);
  if (!events.empty()) next_ = events.back().sequence + 1;
  return events;
}

}  // namespace xfer::coordinator::metrics
