// The live screen of `coordctl watch` on a terminal (live_view.h): exact
// lines for a fixed state, stragglers marked with and without colour, the
// progress bar, the latest metrics, and the frame's escape codes.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "coordinator/coordctl/commands.h"
#include "coordinator/coordctl/live_view.h"

namespace xfer::coordinator::coordctl {
namespace {

constexpr std::int64_t kNow = 1'800'000'000'000;  // 2027-01-15 08:00:00Z

v1::RankStatus rank(int index, double images_per_second, std::int64_t step,
                    std::int64_t steps = 120) {
  v1::RankStatus r;
  r.set_rank(index);
  r.set_phase("head");
  r.set_epoch(2);
  r.set_split(v1::SPLIT_KIND_TRAIN);
  r.set_step(step);
  r.set_steps_in_epoch(steps);
  r.set_images_per_second(images_per_second);
  r.set_data_wait_ms(1.5 + index);
  r.set_comm_ms(0.25);
  r.set_updated_unix_ms(kNow - 2000 - 1000 * index);
  return r;
}

v1::MetricsEvent epoch_event(std::int64_t sequence, v1::SplitKind split, int epoch, double loss,
                             double top1, double top3) {
  v1::MetricsEvent event;
  event.set_sequence(sequence);
  auto* e = event.mutable_epoch();
  e->set_phase("head");
  e->set_epoch(epoch);
  e->set_split(split);
  e->set_loss(loss);
  e->set_top1(top1);
  e->set_top3(top3);
  e->set_samples(4000);
  e->set_images_per_second(1234.5);
  return event;
}

// Three ranks, rank 2 at a third of the others' speed; two epochs of
// events, the latest of each split wins.
LiveViewState sample_state() {
  LiveViewState state;
  state.run = "r1";
  v1::Run run;
  run.set_name("r1");
  run.set_dataset("cifar100");
  run.set_world_size(3);
  run.set_state(v1::RUN_STATE_RUNNING);
  run.set_attempt(1);
  run.set_started_unix_ms(kNow - 187'000);
  state.run_info = run;
  apply_event(state, epoch_event(1, v1::SPLIT_KIND_TRAIN, 1, 2.5, 0.2, 0.4));
  apply_event(state, epoch_event(2, v1::SPLIT_KIND_VALIDATION, 1, 2.25, 0.25, 0.45));
  apply_event(state, epoch_event(3, v1::SPLIT_KIND_TRAIN, 2, 1.8765, 0.3123, 0.5012));
  *state.ranks.add_ranks() = rank(2, 100.0, 20);
  *state.ranks.add_ranks() = rank(0, 300.0, 30);
  *state.ranks.add_ranks() = rank(1, 310.0, 31);
  state.now_unix_ms = kNow;
  return state;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The first line holding `needle`; fails the test when there is none.
std::string line_with(const std::string& text, const std::string& needle) {
  for (const auto& line : lines_of(text)) {
    if (line.find(needle) != std::string::npos) return line;
  }
  ADD_FAILURE() << "no line holds '" << needle << "' in:\n" << text;
  return "";
}

TEST(LiveViewProgressBar, FillsWithTheFraction) {
  EXPECT_EQ(progress_bar(0, 10, 10), "[..........]");
  EXPECT_EQ(progress_bar(3, 10, 10), "[===>......]");
  EXPECT_EQ(progress_bar(5, 10, 10), "[=====>....]");
  EXPECT_EQ(progress_bar(10, 10, 10), "[==========]");
  EXPECT_EQ(progress_bar(12, 10, 10), "[==========]");  // past the plan: full, not beyond
  EXPECT_EQ(progress_bar(-3, 10, 4), "[....]");
  EXPECT_EQ(progress_bar(7, 0, 5), "[.....]");  // unknown plan: empty
}

TEST(LiveViewRender, PlainScreenShowsRunProgressMetricsAndRanks) {
  const std::string screen = render_live_view(sample_state(), {/*color=*/false, /*columns=*/0});
  EXPECT_EQ(screen.find('\x1b'), std::string::npos) << "no escape codes without colour";
  const auto lines = lines_of(screen);
  ASSERT_GE(lines.size(), 12u) << screen;
  EXPECT_EQ(lines[0], "run r1 - RUNNING - attempt 1 - 3 ranks - dataset cifar100 - up 3m07s");
  // Rank 0 leads: 30 of 120 steps is a quarter of the bar.
  EXPECT_EQ(lines[1],
            "phase head  epoch 2  train  step 30/120  [=======>......................]  25%");
  // The latest train epoch (2, not 1) and validation epoch 1.
  EXPECT_EQ(line_with(screen, "train       head"),
            "train       head       2  1.8765  31.23%  50.12%     4000  1234.5");
  EXPECT_EQ(line_with(screen, "validation"),
            "validation  head       1  2.2500  25.00%  45.00%     4000  1234.5");
  EXPECT_EQ(line_with(screen, "ranks:"),
            "ranks: median 300.0 img/s; 1 straggler (below 80% of the median)");
  // Rows sorted by rank; the straggler carries the marker and the note.
  EXPECT_EQ(line_with(screen, "vs median"),
            "   rank  phase  epoch  split    step  img/s  vs median  data wait ms  comm ms  "
            "updated  note");
  EXPECT_EQ(line_with(screen, "   0  head"),
            "      0  head       2  train  30/120  300.0       100%           1.5      0.2   "
            "2s ago");
  EXPECT_EQ(line_with(screen, "   2  head"),
            "!     2  head       2  train  20/120  100.0        33%           3.5      0.2   "
            "4s ago  straggler");
  EXPECT_EQ(lines.back(), "2027-01-15 08:00:00Z - every 1s - Ctrl-C to quit - 3 epochs seen");
}

TEST(LiveViewRender, ColourHighlightsOnlyTheStraggler) {
  const std::string screen = render_live_view(sample_state(), {/*color=*/true, /*columns=*/0});
  int reversed = 0;
  for (const auto& line : lines_of(screen)) {
    if (line.rfind("\x1b[7m", 0) == 0) {
      ++reversed;
      EXPECT_NE(line.find("!     2  head"), std::string::npos) << line;
      EXPECT_EQ(line.substr(line.size() - 4), "\x1b[0m") << "the highlight is closed";
    }
  }
  EXPECT_EQ(reversed, 1) << screen;
  // Rank 0 and 1 rows are plain.
  EXPECT_EQ(line_with(screen, "   1  head").rfind("      1", 0), 0u);
}

TEST(LiveViewRender, NoStragglerWhenRanksAreEven) {
  LiveViewState state = sample_state();
  state.ranks.mutable_ranks(0)->set_images_per_second(295.0);
  const std::string screen = render_live_view(state, {true, 0});
  EXPECT_EQ(screen.find("\x1b[7m"), std::string::npos) << screen;
  EXPECT_EQ(screen.find("straggler (below"), std::string::npos);
  EXPECT_NE(screen.find("0 stragglers"), std::string::npos) << screen;
}

TEST(LiveViewRender, ThresholdDecidesWhoIsAStraggler) {
  LiveViewState state = sample_state();
  state.straggler_threshold = 0.3;  // 100 img/s is 33% of the median: not below 30%
  EXPECT_NE(render_live_view(state, {false, 0}).find("0 stragglers (below 30% of the median)"),
            std::string::npos);
}

TEST(LiveViewRender, LinesAreCutToTheTerminalBeforeHighlighting) {
  const std::string screen = render_live_view(sample_state(), {true, 40});
  for (const auto& line : lines_of(screen)) {
    std::string visible = line;
    for (const char* code : {"\x1b[7m", "\x1b[1m", "\x1b[0m", "\x1b[31m"}) {
      for (auto at = visible.find(code); at != std::string::npos; at = visible.find(code)) {
        visible.erase(at, std::string(code).size());
      }
    }
    EXPECT_LE(visible.size(), 40u) << line;
  }
  // The straggler row is cut, yet its highlight is still closed.
  EXPECT_NE(screen.find("\x1b[7m!     2  head       2  train  20/120  10\x1b[0m"),
            std::string::npos)
      << screen;
}

TEST(LiveViewRender, BeforeAnyReport) {
  LiveViewState state;
  state.run = "fresh";
  state.now_unix_ms = kNow;
  state.interval_s = 2.5;
  const auto lines = lines_of(render_live_view(state, {false, 0}));
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines[0], "run fresh");
  EXPECT_EQ(lines[1], "no rank has reported yet");
  EXPECT_EQ(lines[3], "no epoch has completed yet");
  EXPECT_EQ(lines.back(), "2027-01-15 08:00:00Z - every 2.5s - Ctrl-C to quit - 0 epochs seen");
}

TEST(LiveViewRender, FinishedRunShowsItsFinalState) {
  LiveViewState state = sample_state();
  v1::MetricsEvent end;
  v1::Run run = *state.run_info;
  run.set_state(v1::RUN_STATE_FAILED);
  run.set_ended_unix_ms(kNow - 7000);
  run.set_message("rank 1: loss diverged");
  *end.mutable_run() = run;
  apply_event(state, end);
  state.finished = true;
  const std::string screen = render_live_view(state, {true, 0});
  const auto lines = lines_of(screen);
  EXPECT_EQ(lines[0],
            "\x1b[31mrun r1 - FAILED - attempt 1 - 3 ranks - dataset cifar100 - ran 3m00s\x1b[0m");
  EXPECT_EQ(lines[1], "message: rank 1: loss diverged");
  EXPECT_EQ(lines.back(), "2027-01-15 08:00:00Z - the run has ended: FAILED - 3 epochs seen");
}

TEST(LiveViewRender, UnknownPlanAndNotice) {
  LiveViewState state = sample_state();
  for (auto& r : *state.ranks.mutable_ranks()) r.set_steps_in_epoch(0);
  state.notice = "Ranks: UNAVAILABLE (retrying)";
  const std::string screen = render_live_view(state, {false, 0});
  EXPECT_EQ(lines_of(screen)[1],
            "phase head  epoch 2  train  step 30  [..............................]");
  EXPECT_NE(screen.find("\nnote: Ranks: UNAVAILABLE (retrying)\n"), std::string::npos) << screen;
}

TEST(LiveViewApplyEvent, KeepsTheLatestOfEachSplit) {
  LiveViewState state;
  apply_event(state, epoch_event(1, v1::SPLIT_KIND_VALIDATION, 3, 1.0, 0.5, 0.7));
  apply_event(state, epoch_event(2, v1::SPLIT_KIND_TEST, 3, 0.9, 0.55, 0.75));
  EXPECT_FALSE(state.train.has_value());
  ASSERT_TRUE(state.validation.has_value());
  EXPECT_EQ(state.validation->epoch(), 3);
  ASSERT_TRUE(state.test.has_value());
  EXPECT_DOUBLE_EQ(state.test->loss(), 0.9);
  EXPECT_EQ(state.epochs_seen, 2);
}

TEST(LiveViewFrame, RedrawsFromHomeAndErasesLeftovers) {
  EXPECT_EQ(frame_for_terminal("a\nbc\n"), "\x1b[Ha\x1b[K\nbc\x1b[K\n\x1b[J");
  // Entering hides the cursor; leaving shows it and resets attributes.
  EXPECT_NE(std::string(kEnterLiveScreen).find("\x1b[?25l"), std::string::npos);
  EXPECT_NE(std::string(kLeaveLiveScreen).find("\x1b[?25h"), std::string::npos);
  EXPECT_NE(std::string(kLeaveLiveScreen).find("\x1b[0m"), std::string::npos);
}

TEST(LiveViewFlags, IntervalAndThreshold) {
  std::ostringstream out, err;
  auto parsed =
      parse_command_line({"watch", "r1", "--interval", "0.5", "--threshold", "0.6"}, out, err);
  ASSERT_TRUE(std::holds_alternative<CommandLine>(parsed)) << err.str();
  const Command& c = std::get<CommandLine>(parsed).command;
  EXPECT_EQ(c.kind, CommandKind::kWatch);
  EXPECT_DOUBLE_EQ(c.interval_s, 0.5);
  EXPECT_DOUBLE_EQ(c.straggler_threshold, 0.6);
  EXPECT_FALSE(c.live) << "set by run_coordctl from the terminal, never by parsing";

  auto defaults = parse_command_line({"watch", "r1"}, out, err);
  ASSERT_TRUE(std::holds_alternative<CommandLine>(defaults));
  EXPECT_DOUBLE_EQ(std::get<CommandLine>(defaults).command.interval_s, 1.0);

  for (const char* bad : {"0", "-1", "abc"}) {
    std::ostringstream bad_err;
    auto refused = parse_command_line({"watch", "r1", "--interval", bad}, out, bad_err);
    ASSERT_TRUE(std::holds_alternative<int>(refused)) << bad;
    EXPECT_EQ(std::get<int>(refused), kExitUsage);
    EXPECT_NE(bad_err.str().find("--interval"), std::string::npos) << bad_err.str();
  }
}

}  // namespace
}  // namespace xfer::coordinator::coordctl
