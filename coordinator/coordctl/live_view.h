// `coordctl watch` on a terminal: one screen redrawn in place. The run and
// its state, the phase, epoch and progress of the epoch (a bar), the latest
// aggregated train and validation figures, and a per-rank table with the
// stragglers highlighted (reverse video, and a '!' marker that also shows
// without colour).
//
// Pure functions of a LiveViewState (what the watch loop in commands.cc has
// learnt from Watch, GetRun and Ranks), so the exact screen is unit-tested
// without a server or a terminal. The escape sequences the loop writes
// around a frame are here too.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "coordinator/coordctl/stragglers.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::coordctl {

struct LiveViewState {
  // The run asked for; shown until GetRun answers.
  std::string run;
  // The latest record of the run (GetRun, or Watch's final state event).
  std::optional<v1::Run> run_info;
  // The latest aggregated epoch of each split (from Watch).
  std::optional<v1::EpochMetrics> train;
  std::optional<v1::EpochMetrics> validation;
  std::optional<v1::EpochMetrics> test;
  // Aggregated epochs seen so far.
  std::int64_t epochs_seen = 0;
  // The latest Ranks answer; empty until the first one.
  v1::RanksResponse ranks;
  // One line about a problem (a failed poll being retried); "" for none.
  std::string notice;
  // The clock the ages are counted to.
  std::int64_t now_unix_ms = 0;
  // REQUIRES: 0 < threshold <= 1 (as find_stragglers).
  double straggler_threshold = kDefaultStragglerThreshold;
  // Seconds between polls, shown in the footer.
  double interval_s = 1.0;
  // The run has ended and the stream is closed: the footer says so.
  bool finished = false;
};

// Folds one Watch event into `state`: an aggregated epoch becomes the latest
// of its split, a run event replaces run_info.
void apply_event(LiveViewState& state, const v1::MetricsEvent& event);

struct LiveViewStyle {
  // SGR highlighting (reverse video for stragglers, bold headings, red for
  // FAILED). Without it the screen is plain text; the '!' marker remains.
  bool color = true;
  // Lines are cut to this many columns (before highlighting, so escape
  // codes never count); 0: no cut.
  int columns = 0;
};

// "[=========>..........]" with `width` cells inside the brackets; dots
// only when `steps` is unknown (<= 0). REQUIRES: width >= 1.
std::string progress_bar(std::int64_t step, std::int64_t steps, int width);

// The screen: lines separated by '\n', the last one ended too.
std::string render_live_view(const LiveViewState& state, const LiveViewStyle& style);

// Terminal control around frames (ANSI / VT100).
// Before the first frame: hide the cursor, clear the screen.
inline constexpr const char* kEnterLiveScreen = "\x1b[?25l\x1b[2J\x1b[H";
// On exit, normal or not: attributes off, cursor shown again. The last
// frame stays on the screen, followed by a newline.
inline constexpr const char* kLeaveLiveScreen = "\x1b[0m\x1b[?25h";

// One frame as written: cursor home, each line followed by "erase to end of
// line", then "erase below" so a shorter frame leaves nothing behind.
std::string frame_for_terminal(const std::string& screen);

}  // namespace xfer::coordinator::coordctl
