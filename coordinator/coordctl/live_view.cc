#include "coordinator/coordctl/live_view.h"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>
#include <vector>

#include "coordinator/coordctl/format.h"
#include "coordinator/coordctl/table.h"

namespace xfer::coordinator::coordctl {
namespace {

constexpr const char* kReverse = "\x1b[7m";
constexpr const char* kBold = "\x1b[1m";
constexpr const char* kRed = "\x1b[31m";
constexpr const char* kReset = "\x1b[0m";
constexpr int kBarWidth = 30;

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

std::string age(std::int64_t then_unix_ms, std::int64_t now_unix_ms) {
  if (then_unix_ms == 0) return "-";
  const std::int64_t ms = now_unix_ms - then_unix_ms;
  return ms < 0 ? "just now" : format_duration(ms) + " ago";
}

std::string steps_text(std::int64_t step, std::int64_t steps) {
  return steps > 0 ? fmt::format("{}/{}", step, steps) : std::to_string(step);
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The screen as lines, plus which of them to highlight how.
struct Screen {
  enum class Mark { kNone, kHeading, kStraggler, kFailed };
  std::vector<std::pair<std::string, Mark>> lines;

  void add(std::string line, Mark mark = Mark::kNone) { lines.emplace_back(std::move(line), mark); }
  void add_block(const std::string& text) {
    for (auto& line : split_lines(text)) add(std::move(line));
  }
};

void add_run_lines(const LiveViewState& state, Screen& screen) {
  if (!state.run_info) {
    screen.add(fmt::format("run {}", state.run), Screen::Mark::kHeading);
    return;
  }
  const v1::Run& run = *state.run_info;
  std::string line =
      fmt::format("run {} - {} - attempt {} - {} rank{} - dataset {}", run.name(),
                  upper(run_state_name(run.state())), run.attempt(), run.world_size(),
                  run.world_size() == 1 ? "" : "s", run.dataset().empty() ? "-" : run.dataset());
  if (run.started_unix_ms() > 0) {
    const std::int64_t end = run.ended_unix_ms() > 0 ? run.ended_unix_ms()
                                                     : std::max(state.now_unix_ms, std::int64_t{0});
    line += " - " + std::string(run.ended_unix_ms() > 0 ? "ran " : "up ") +
            format_duration(end - run.started_unix_ms());
  }
  screen.add(line,
             run.state() == v1::RUN_STATE_FAILED ? Screen::Mark::kFailed : Screen::Mark::kHeading);
  if (!run.message().empty()) screen.add("message: " + run.message());
}

// Where the job is: rank 0's latest report (the lowest rank that reported).
void add_progress_line(const LiveViewState& state, Screen& screen) {
  if (state.ranks.ranks().empty()) {
    screen.add("no rank has reported yet");
    return;
  }
  const v1::RankStatus* lead = &state.ranks.ranks(0);
  for (const auto& rank : state.ranks.ranks()) {
    if (rank.rank() < lead->rank()) lead = &rank;
  }
  std::string line =
      fmt::format("phase {}  epoch {}  {}  step {}", lead->phase(), lead->epoch(),
                  split_name(lead->split()), steps_text(lead->step(), lead->steps_in_epoch()));
  line += "  " + progress_bar(lead->step(), lead->steps_in_epoch(), kBarWidth);
  if (lead->steps_in_epoch() > 0) {
    const double fraction = std::min(
        1.0, static_cast<double>(lead->step()) / static_cast<double>(lead->steps_in_epoch()));
    line += fmt::format(" {:3.0f}%", 100.0 * fraction);
  }
  screen.add(line);
}

void add_metrics_table(const LiveViewState& state, Screen& screen) {
  Table table({{"latest"},
               {"phase"},
               {"epoch", Table::Align::kRight},
               {"loss", Table::Align::kRight},
               {"top1", Table::Align::kRight},
               {"top3", Table::Align::kRight},
               {"samples", Table::Align::kRight},
               {"img/s", Table::Align::kRight}});
  const std::pair<const char*, const std::optional<v1::EpochMetrics>*> rows[] = {
      {"train", &state.train}, {"validation", &state.validation}, {"test", &state.test}};
  for (const auto& [name, metrics] : rows) {
    if (!*metrics) continue;
    const v1::EpochMetrics& e = **metrics;
    table.add_row({name, e.phase(), std::to_string(e.epoch()), format_fixed(e.loss(), 4),
                   format_percent(e.top1()), format_percent(e.top3()), std::to_string(e.samples()),
                   format_fixed(e.images_per_second(), 1)});
  }
  if (table.empty()) {
    screen.add("no epoch has completed yet");
    return;
  }
  screen.add_block(table.render());
}

void add_ranks_table(const LiveViewState& state, Screen& screen) {
  if (state.ranks.ranks().empty()) return;
  const RanksView view = find_stragglers(state.ranks, state.straggler_threshold);
  Table table({{""},
               {"rank", Table::Align::kRight},
               {"phase"},
               {"epoch", Table::Align::kRight},
               {"split"},
               {"step", Table::Align::kRight},
               {"img/s", Table::Align::kRight},
               {"vs median", Table::Align::kRight},
               {"data wait ms", Table::Align::kRight},
               {"comm ms", Table::Align::kRight},
               {"updated", Table::Align::kRight},
               {"note"}});
  int stragglers = 0;
  for (const auto& row : view.ranks) {
    const auto& rank = row.status;
    stragglers += row.straggler ? 1 : 0;
    table.add_row(
        {row.straggler ? "!" : "", std::to_string(rank.rank()), rank.phase(),
         std::to_string(rank.epoch()), split_name(rank.split()),
         steps_text(rank.step(), rank.steps_in_epoch()), format_fixed(rank.images_per_second(), 1),
         std::isfinite(row.fraction_of_median)
             ? fmt::format("{:.0f}%", 100.0 * row.fraction_of_median)
             : "-",
         format_fixed(rank.data_wait_ms(), 1), format_fixed(rank.comm_ms(), 1),
         age(rank.updated_unix_ms(), state.now_unix_ms), row.straggler ? "straggler" : ""});
  }
  screen.add(fmt::format("ranks: median {} img/s; {} straggler{} (below {:.0f}% of the median)",
                         format_fixed(view.median_images_per_second, 1), stragglers,
                         stragglers == 1 ? "" : "s", 100.0 * state.straggler_threshold));
  // Table::render: the header, a rule, then the rows in the order added.
  const std::vector<std::string> lines = split_lines(table.render());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const bool straggler = i >= 2 && view.ranks[i - 2].straggler;
    screen.add(lines[i], straggler ? Screen::Mark::kStraggler : Screen::Mark::kNone);
  }
}

void add_footer(const LiveViewState& state, Screen& screen) {
  std::string line = format_time_utc(state.now_unix_ms);
  if (state.finished) {
    line += " - the run has ended";
    if (state.run_info) line += ": " + upper(run_state_name(state.run_info->state()));
  } else {
    line += fmt::format(" - every {:g}s - Ctrl-C to quit", state.interval_s);
  }
  line += fmt::format(" - {} epoch{} seen", state.epochs_seen, state.epochs_seen == 1 ? "" : "s");
  screen.add(line);
}

// Cuts a plain line to `columns` (0: no cut).
std::string fit(const std::string& line, int columns) {
  if (columns <= 0 || line.size() <= static_cast<std::size_t>(columns)) return line;
  return line.substr(0, static_cast<std::size_t>(columns));
}

}  // namespace

void apply_event(LiveViewState& state, const v1::MetricsEvent& event) {
  if (event.has_run()) {
    state.run_info = event.run();
    return;
  }
  if (!event.has_epoch()) return;
  const v1::EpochMetrics& epoch = event.epoch();
  ++state.epochs_seen;
  switch (epoch.split()) {
    case v1::SPLIT_KIND_TRAIN:
      state.train = epoch;
      break;
    case v1::SPLIT_KIND_VALIDATION:
      state.validation = epoch;
      break;
    case v1::SPLIT_KIND_TEST:
      state.test = epoch;
      break;
    default:
      break;
  }
}

std::string progress_bar(std::int64_t step, std::int64_t steps, int width) {
  std::string inside(static_cast<std::size_t>(std::max(width, 1)), '.');
  if (steps > 0) {
    const std::int64_t clamped = std::clamp<std::int64_t>(step, 0, steps);
    const auto filled =
        static_cast<std::size_t>(clamped * static_cast<std::int64_t>(inside.size()) / steps);
    std::fill(inside.begin(), inside.begin() + static_cast<std::ptrdiff_t>(filled), '=');
    if (filled < inside.size() && clamped > 0) inside[filled] = '>';
  }
  return "[" + inside + "]";
}

std::string render_live_view(const LiveViewState& state, const LiveViewStyle& style) {
  Screen screen;
  add_run_lines(state, screen);
  add_progress_line(state, screen);
  screen.add("");
  add_metrics_table(state, screen);
  screen.add("");
  add_ranks_table(state, screen);
  if (!state.notice.empty()) screen.add("note: " + state.notice);
  screen.add("");
  add_footer(state, screen);

  std::string out;
  for (const auto& [text, mark] : screen.lines) {
    const std::string line = fit(text, style.columns);
    if (!style.color || mark == Screen::Mark::kNone || line.empty()) {
      out += line;
    } else {
      const char* sgr = mark == Screen::Mark::kStraggler ? kReverse
                        : mark == Screen::Mark::kFailed  ? kRed
                                                         : kBold;
      out += sgr + line + kReset;
    }
    out += '\n';
  }
  return out;
}

std::string frame_for_terminal(const std::string& screen) {
  std::string out = "\x1b[H";
  for (const auto& line : split_lines(screen)) out += line + "\x1b[K\n";
  out += "\x1b[J";
  return out;
}

}  // namespace xfer::coordinator::coordctl
