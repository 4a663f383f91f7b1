#include "coordinator/coordctl/commands.h"

#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

#include "common/flags.h"
#include "common/logging.h"
#include "common/posix_filesystem.h"
#include "coordinator/coordctl/format.h"
#include "coordinator/coordctl/json_output.h"
#include "coordinator/coordctl/live_view.h"
#include "coordinator/coordctl/report_html.h"

namespace xfer::coordinator::coordctl {

namespace {

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

// common::init_logging registers a named logger and refuses a second call
// in one process; run_coordctl may run many times in one (the tests).
void set_up_logging(const std::string& level) {
  static std::once_flag once;
  std::call_once(once, [&] { xfer::common::init_logging({"coordctl", std::nullopt, level}); });
  spdlog::set_level(spdlog::level::from_str(level));
}

void print_json(std::ostream& out, const nlohmann::json& value) { out << value.dump(2) << '\n'; }

// Builds the CLI11 app; every parsed value lands in `line`.
void define_flags(CLI::App& app, CommandLine& line) {
  GlobalOptions& g = line.global;
  Command& c = line.command;
  // Global flags may also follow the command (`coordctl metrics r1 --json`).
  app.fallthrough();
  app.require_subcommand(1);
  xfer::common::add_config_flag(app);
  app.add_option("--coordinator", g.coordinator, "Coordinator address host:port")
      ->envname("XFER_COORDINATOR")
      ->capture_default_str();
  app.add_option("--token-file", g.token_file,
                 "File whose first line is the bearer token (admin or read-only)")
      ->envname("XFER_TOKEN_FILE");
  app.add_option("--tls-ca", g.tls_ca, "PEM root certificate: use TLS and trust this CA");
  app.add_option("--tls-server-name", g.tls_server_name,
                 "Name to check the server certificate against (default: the host)")
      ->needs(app.get_option("--tls-ca"));
  app.add_flag("--json", g.json, "Print JSON for scripts instead of tables");
  app.add_option("--timeout", g.timeout_s, "Deadline of each call attempt, seconds")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--retry-for", g.retry_for_s,
                 "Keep retrying an unreachable coordinator this long, seconds (0: no retry)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  xfer::common::add_log_level_flag(app, g.log_level);

  auto* status =
      app.add_subcommand("status", "The coordinator, its datasets and runs (or one run)");
  status->add_option("run", c.run, "Show only this run, in detail");
  status->callback([&c] { c.kind = CommandKind::kStatus; });

  auto* runs = app.add_subcommand("runs", "Every run the coordinator knows");
  runs->callback([&c] { c.kind = CommandKind::kRuns; });

  auto* metrics = app.add_subcommand("metrics", "Per-epoch loss, top-1, top-3 of a run");
  metrics->add_option("run", c.run, "Run name")->required();
  metrics->add_flag("--csv", c.csv, "Print CSV");
  metrics->callback([&c] { c.kind = CommandKind::kMetrics; });

  auto* ranks = app.add_subcommand("ranks", "Latest figures of each rank; marks stragglers");
  ranks->add_option("run", c.run, "Run name")->required();
  ranks
      ->add_option("--threshold", c.straggler_threshold,
                   "A rank below this fraction of the median img/s is a straggler")
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  ranks->callback([&c] { c.kind = CommandKind::kRanks; });

  auto* watch = app.add_subcommand(
      "watch",
      "Follow a run until it ends: a live view on a terminal, else one line per aggregated epoch");
  watch->add_option("run", c.run, "Run name")->required();
  watch->add_option("--from", c.from_sequence, "First event sequence number (0: from the start)")
      ->check(CLI::NonNegativeNumber);
  watch
      ->add_option("--interval", c.interval_s,
                   "Live view: seconds between polls of the ranks' latest figures")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  watch
      ->add_option("--threshold", c.straggler_threshold,
                   "Live view: a rank below this fraction of the median img/s is a straggler")
      ->check(CLI::Range(0.01, 1.0))
      ->capture_default_str();
  watch->callback([&c] { c.kind = CommandKind::kWatch; });

  auto* checkpoints = app.add_subcommand("checkpoints", "List, download or delete checkpoints");
  checkpoints->require_subcommand(1);
  auto* list = checkpoints->add_subcommand("list", "Every stored checkpoint of a run");
  list->add_option("run", c.run, "Run name")->required();
  list->callback([&c] { c.kind = CommandKind::kCheckpointsList; });
  auto* best = checkpoints->add_subcommand("best", "The best checkpoint of a run by its metric");
  best->add_option("run", c.run, "Run name")->required();
  best->add_option("--phase", c.phase, "Only checkpoints of this phase (full, head, finetune)");
  best->callback([&c] { c.kind = CommandKind::kCheckpointsBest; });
  auto* latest = checkpoints->add_subcommand("latest", "The latest checkpoint of a run");
  latest->add_option("run", c.run, "Run name")->required();
  latest->add_option("--phase", c.phase, "Only checkpoints of this phase (full, head, finetune)");
  latest->callback([&c] { c.kind = CommandKind::kCheckpointsLatest; });
  auto* get = checkpoints->add_subcommand("get", "Download a checkpoint (written atomically)");
  get->add_option("id", c.id, "Checkpoint id")->required();
  get->add_option("-o,--output", c.output, "File to write")->required();
  auto* sha = get->add_option("--sha256", c.expect_sha256,
                              "Expected SHA-256 (hex); a mismatch writes nothing");
  get->add_option("--run", c.verify_run,
                  "Look the expected SHA-256 up in this run's checkpoint list")
      ->excludes(sha);
  get->callback([&c] { c.kind = CommandKind::kCheckpointsGet; });
  auto* del = checkpoints->add_subcommand("delete", "Delete a checkpoint (admin token)");
  del->add_option("id", c.id, "Checkpoint id")->required();
  del->callback([&c] { c.kind = CommandKind::kCheckpointsDelete; });

  auto* report = app.add_subcommand(
      "report", "A run's final test report: loss, top-1/3, per-class scores, confusion matrix");
  report->add_option("run", c.run, "Run name")->required();
  report->add_flag("--confusion", c.confusion, "Also print the confusion matrix");
  report->add_option("-o,--output", c.output,
                     "Write a self-contained HTML report (curves, confusion heatmap, per-class "
                     "table, test samples, ranks, config) to this file instead");
  report->callback([&c] { c.kind = CommandKind::kReport; });
}

int watch_run(const CommandLine& line, client::CoordinatorClient& client, std::ostream& out) {
  auto reader = client.watch(line.command.run, line.command.from_sequence);
  int exit_code = kExitOk;
  while (auto event = reader->next()) {
    if (line.global.json) {
      out << event_json(*event).dump() << '\n';
    } else {
      out << event_line(*event) << '\n';
    }
    out.flush();
    if (event->has_run() && event->run().state() == v1::RUN_STATE_FAILED) {
      exit_code = kExitRunFailed;
    }
  }
  return exit_code;
}

// ---- watch on a terminal (live_view.h draws the screen)

// The signal that asked the live view to stop (SIGINT, SIGTERM); 0: none.
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "a signal handler may only touch lock-free");

extern "C" void on_stop_signal(int signal) { g_stop_signal.store(signal); }

// Catches SIGINT and SIGTERM while it lives, so the terminal is restored
// before coordctl exits; puts the previous handlers back.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  bool stopped() const { return g_stop_signal.load() != 0; }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// The terminal while the live view is on it: cursor hidden, screen cleared;
// restored however the view ends (the last frame stays).
class LiveScreen {
 public:
  explicit LiveScreen(std::ostream& out) : out_(out) {
    out_ << kEnterLiveScreen;
    out_.flush();
  }
  ~LiveScreen() {
    out_ << kLeaveLiveScreen;
    out_.flush();
  }
  LiveScreen(const LiveScreen&) = delete;
  LiveScreen& operator=(const LiveScreen&) = delete;

  void draw(const std::string& screen) {
    out_ << frame_for_terminal(screen);
    out_.flush();
  }

 private:
  std::ostream& out_;
};

// The Watch stream, read on a thread of its own so the screen keeps being
// redrawn (and Ctrl-C noticed) while no event comes.
class EventFeed {
 public:
  EventFeed(client::CoordinatorClient& client, const std::string& run, std::int64_t from)
      : reader_(client.watch(run, from)), thread_([this] { read(); }) {}
  ~EventFeed() {
    reader_->cancel();
    thread_.join();
  }
  EventFeed(const EventFeed&) = delete;
  EventFeed& operator=(const EventFeed&) = delete;

  // The events received since the last call, waiting up to `timeout` when
  // there are none and the stream has not ended.
  std::vector<v1::MetricsEvent> take(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, timeout, [this] { return !events_.empty() || done_; });
    std::vector<v1::MetricsEvent> out;
    out.swap(events_);
    return out;
  }
  // The stream has ended (the run's final state came, or an error).
  bool done() {
    std::lock_guard<std::mutex> lock(mutex_);
    return done_;
  }
  // What ended the stream, if it failed; rethrown by the caller.
  std::exception_ptr error() {
    std::lock_guard<std::mutex> lock(mutex_);
    return error_;
  }

 private:
  void read() {
    std::exception_ptr error;
    try {
      while (auto event = reader_->next()) {
        std::lock_guard<std::mutex> lock(mutex_);
        events_.push_back(std::move(*event));
        changed_.notify_all();
      }
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = error;
    done_ = true;
    changed_.notify_all();
  }

  std::unique_ptr<client::WatchReader> reader_;
  std::mutex mutex_;
  std::condition_variable changed_;
  // Guarded by mutex_.
  std::vector<v1::MetricsEvent> events_;
  bool done_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // last: starts once the members above exist
};

int stdout_columns() {
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) != 0) return 0;
  return size.ws_col;
}

// GetRun and Ranks, every --interval (read-only RPCs). A failed poll is
// shown on the screen and retried at the next one.
void poll(client::CoordinatorClient& client, LiveViewState& state) {
  try {
    state.ranks = client.ranks(state.run);
    if (!state.finished) state.run_info = client.get_run(state.run);
    state.notice.clear();
  } catch (const client::RpcError& e) {
    state.notice = std::string(e.what()) + " (retrying)";
  }
}

int watch_live(const CommandLine& line, client::CoordinatorClient& client, std::ostream& out) {
  const Command& c = line.command;
  LiveViewState state;
  state.run = c.run;
  state.straggler_threshold = c.straggler_threshold;
  state.interval_s = c.interval_s;
  // An unknown run fails here, before the terminal is touched.
  state.run_info = client.get_run(c.run);
  StopSignals signals;
  EventFeed feed(client, c.run, c.from_sequence);
  LiveScreen screen(out);
  const auto interval = to_ms(c.interval_s);
  auto next_poll = std::chrono::steady_clock::now();
  bool dirty = true;
  while (!signals.stopped()) {
    const bool ended = feed.done();  // before take(): no event is left behind
    for (const auto& event : feed.take(std::chrono::milliseconds(100))) {
      apply_event(state, event);
      dirty = true;
    }
    if (ended) break;
    if (std::chrono::steady_clock::now() >= next_poll) {
      poll(client, state);
      next_poll = std::chrono::steady_clock::now() + interval;
      dirty = true;
    }
    if (dirty) {
      state.now_unix_ms = now_unix_ms();
      screen.draw(render_live_view(state, {true, stdout_columns()}));
      dirty = false;
    }
  }
  if (signals.stopped()) return kExitInterrupted;
  if (const auto error = feed.error()) std::rethrow_exception(error);
  // The run has ended: its final figures, then the last frame stays.
  state.finished = true;
  poll(client, state);
  state.now_unix_ms = now_unix_ms();
  screen.draw(render_live_view(state, {true, stdout_columns()}));
  return state.run_info && state.run_info->state() == v1::RUN_STATE_FAILED ? kExitRunFailed
                                                                           : kExitOk;
}

int get_checkpoint(const CommandLine& line, client::CoordinatorClient& client, std::ostream& out,
                   std::ostream& err) {
  const Command& c = line.command;
  std::string expected = c.expect_sha256;
  if (!c.verify_run.empty()) {
    const auto list = client.list_checkpoints(c.verify_run);
    for (const auto& info : list.checkpoints()) {
      if (info.id() == c.id) expected = info.sha256();
    }
    if (expected.empty()) {
      err << "coordctl: checkpoint '" << c.id << "' is not among the " << list.checkpoints_size()
          << " checkpoints of run '" << c.verify_run
          << "' (expected an id that `coordctl checkpoints list " << c.verify_run
          << "` shows); nothing was downloaded\n";
      return kExitRpc;
    }
  }
  const client::DownloadResult result = client.get_checkpoint(c.id, c.output, expected);
  if (line.global.json) {
    print_json(out, download_json(c.id, result));
  } else {
    out << "wrote " << result.path.string() << ": " << format_bytes(result.size_bytes)
        << ", sha256 " << result.sha256
        << (result.verified ? " (verified)"
                            : " (not verified: pass --run RUN or --sha256 HEX to check it)")
        << '\n';
  }
  return kExitOk;
}

// report RUN -o FILE: everything the page shows, fetched first, then the
// file written atomically (a failed call leaves no half-written page).
int write_html_report(const CommandLine& line, client::CoordinatorClient& client,
                      std::ostream& out) {
  const Command& c = line.command;
  ReportPageInputs inputs;
  inputs.run = client.get_run(c.run);
  inputs.history = client.history(c.run);
  inputs.ranks = client.ranks(c.run);
  try {
    inputs.report = client.get_report(c.run);
  } catch (const client::RpcError& e) {
    // A run that has not finished has no report yet: the page says so.
    if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
  }
  inputs.generated_unix_ms = now_unix_ms();
  const std::string page = render_report_html(inputs);
  try {
    common::write_file_atomically(*common::posix_filesystem(), c.output, page);
  } catch (const std::exception& e) {
    throw client::ClientError("cannot write the HTML report to " + c.output + ": " + e.what() +
                              " (expected a writable path)");
  }
  if (line.global.json) {
    print_json(out, {{"run", c.run},
                     {"path", c.output},
                     {"bytes", page.size()},
                     {"has_report", inputs.report.has_value()}});
  } else {
    out << "wrote " << c.output << ": " << format_bytes(static_cast<std::int64_t>(page.size()))
        << (inputs.report ? "" : " (the run has no test report yet: curves, ranks and config only)")
        << '\n';
  }
  return kExitOk;
}

}  // namespace

std::variant<CommandLine, int> parse_command_line(const std::vector<std::string>& args,
                                                  std::ostream& out, std::ostream& err) {
  CommandLine line;
  CLI::App app{"coordctl: look at and manage the runs of an xfer coordinator", "coordctl"};
  define_flags(app, line);
  std::vector<const char*> argv{"coordctl"};
  for (const auto& arg : args) argv.push_back(arg.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (line.command.csv && line.global.json) {
    err << "coordctl metrics: --csv and --json both given (expected at most one output format)\n";
    return kExitUsage;
  }
  return line;
}

client::ClientOptions client_options(const GlobalOptions& global) {
  client::ClientOptions options;
  options.address = global.coordinator;
  options.token_file = global.token_file;
  options.tls_ca_file = global.tls_ca;
  options.tls_server_name = global.tls_server_name;
  options.call_deadline = to_ms(global.timeout_s);
  options.reconnect_window = to_ms(global.retry_for_s);
  return options;
}

int execute(const CommandLine& line, client::CoordinatorClient& client, std::ostream& out,
            std::ostream& err) {
  const Command& c = line.command;
  const bool json = line.global.json;
  switch (c.kind) {
    case CommandKind::kStatus: {
      const auto status = client.get_status(c.run);
      if (json) {
        print_json(out, status_json(status));
      } else {
        out << status_text(status, !c.run.empty(), now_unix_ms());
      }
      return kExitOk;
    }
    case CommandKind::kRuns: {
      const auto runs = client.list_runs();
      if (json) {
        print_json(out, runs_json(runs));
      } else {
        out << runs_table({runs.runs().begin(), runs.runs().end()}, now_unix_ms());
      }
      return kExitOk;
    }
    case CommandKind::kMetrics: {
      const auto history = client.history(c.run);
      if (json) {
        print_json(out, history_json(c.run, history));
      } else if (c.csv) {
        out << history_csv(history);
      } else {
        out << history_table(history);
      }
      return kExitOk;
    }
    case CommandKind::kRanks: {
      const RanksView view = find_stragglers(client.ranks(c.run), c.straggler_threshold);
      if (json) {
        print_json(out, ranks_json(c.run, view, c.straggler_threshold));
      } else {
        out << ranks_table(view, c.straggler_threshold, now_unix_ms());
      }
      return kExitOk;
    }
    case CommandKind::kWatch:
      return c.live && !json ? watch_live(line, client, out) : watch_run(line, client, out);
    case CommandKind::kCheckpointsList: {
      const auto list = client.list_checkpoints(c.run);
      if (json) {
        print_json(out, checkpoints_json(c.run, list));
      } else {
        out << checkpoints_table({list.checkpoints().begin(), list.checkpoints().end()});
      }
      return kExitOk;
    }
    case CommandKind::kCheckpointsBest:
    case CommandKind::kCheckpointsLatest: {
      const auto info = c.kind == CommandKind::kCheckpointsBest
                            ? client.best_checkpoint(c.run, c.phase)
                            : client.latest_checkpoint(c.run, c.phase);
      if (json) {
        print_json(out, checkpoint_json(info));
      } else {
        out << checkpoint_details(info);
      }
      return kExitOk;
    }
    case CommandKind::kCheckpointsGet:
      return get_checkpoint(line, client, out, err);
    case CommandKind::kReport: {
      if (!c.output.empty()) return write_html_report(line, client, out);
      const auto report = client.get_report(c.run);
      if (json) {
        print_json(out, report_json(report));
      } else {
        out << report_text(report, c.confusion);
      }
      return kExitOk;
    }
    case CommandKind::kCheckpointsDelete:
      client.delete_checkpoint(c.id);
      if (json) {
        print_json(out, {{"id", c.id}, {"deleted", true}});
      } else {
        out << "deleted checkpoint " << c.id << '\n';
      }
      return kExitOk;
  }
  err << "coordctl: internal error: unhandled command\n";
  return kExitInternal;
}

int run_coordctl(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  auto parsed = parse_command_line(args, out, err);
  if (const int* code = std::get_if<int>(&parsed)) return *code;
  CommandLine& line = std::get<CommandLine>(parsed);
  // The live view needs a terminal to redraw; a pipe or file gets lines.
  line.command.live = &out == &std::cout && ::isatty(STDOUT_FILENO) == 1;
  try {
    set_up_logging(line.global.log_level);
    client::CoordinatorClient client(client_options(line.global));
    return execute(line, client, out, err);
  } catch (const client::RpcError& e) {
    err << "coordctl: " << e.what() << '\n';
    return kExitRpc;
  } catch (const client::ChecksumError& e) {
    err << "coordctl: " << e.what() << '\n';
    return kExitChecksum;
  } catch (const client::ClientError& e) {
    err << "coordctl: " << e.what() << '\n';
    return kExitLocal;
  } catch (const std::exception& e) {
    err << "coordctl: internal error: " << e.what() << '\n';
    return kExitInternal;
  }
}

}  // namespace xfer::coordinator::coordctl
