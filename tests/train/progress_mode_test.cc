// --progress: how rank 0's progress line reaches a terminal (redrawn in
// place) or a log (a line each time), and the flag that picks one.
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/train/progress.h"
#include "trainer/train/train_options.h"

namespace xfer::trainer::train {
namespace {

// Records what a printer sends to the log and to the terminal.
struct Sinks {
  std::vector<std::string> log;
  std::string terminal;

  ProgressPrinter printer(ProgressMode mode, int columns = 0) {
    return ProgressPrinter(
        mode, [this](const std::string& line) { log.push_back(line); },
        [this](const std::string& text) { terminal += text; }, columns);
  }
};

TEST(ProgressMode, AutoFollowsTheTerminal) {
  EXPECT_EQ(resolve_progress_mode("auto", true), ProgressMode::kTty);
  EXPECT_EQ(resolve_progress_mode("auto", false), ProgressMode::kPlain);
  EXPECT_EQ(resolve_progress_mode("tty", false), ProgressMode::kTty);
  EXPECT_EQ(resolve_progress_mode("plain", true), ProgressMode::kPlain);
  try {
    resolve_progress_mode("fancy", true);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'fancy'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("auto, tty or plain"), std::string::npos) << e.what();
  }
}

TEST(ProgressPrinter, PlainLogsEveryLineAndNeverTouchesTheTerminal) {
  Sinks sinks;
  {
    ProgressPrinter printer = sinks.printer(ProgressMode::kPlain, 80);
    printer.show("head 1/3  40/120");
    printer.show("head 1/3  80/120");
    printer.clear();
  }
  EXPECT_EQ(sinks.log, (std::vector<std::string>{"head 1/3  40/120", "head 1/3  80/120"}));
  EXPECT_EQ(sinks.terminal, "");
}

TEST(ProgressPrinter, TtyRedrawsInPlaceAndClearsBeforeTheSummary) {
  Sinks sinks;
  {
    ProgressPrinter printer = sinks.printer(ProgressMode::kTty);
    printer.show("head 1/3  40/120");
    printer.show("head 1/3 120/120");
    EXPECT_EQ(sinks.terminal, "\rhead 1/3  40/120\x1b[K\rhead 1/3 120/120\x1b[K")
        << "carriage returns, no newline";
    printer.clear();
    EXPECT_EQ(sinks.terminal.substr(sinks.terminal.size() - 4), "\r\x1b[K");
    const std::size_t after_clear = sinks.terminal.size();
    printer.clear();  // nothing shown: nothing written
    EXPECT_EQ(sinks.terminal.size(), after_clear);
  }
  EXPECT_TRUE(sinks.log.empty());
  EXPECT_EQ(sinks.terminal.find('\n'), std::string::npos) << "cleared: the destructor adds none";
}

TEST(ProgressPrinter, TtyCutsToTheTerminalWidth) {
  Sinks sinks;
  ProgressPrinter printer = sinks.printer(ProgressMode::kTty, 11);
  printer.show("finetune 2/15 [=====>....]");
  EXPECT_EQ(sinks.terminal, "\rfinetune 2\x1b[K") << "one column short: no wrap";
  printer.clear();
}

TEST(ProgressPrinter, TtyEndsAShownLineWhenDestroyed) {
  Sinks sinks;
  {
    ProgressPrinter printer = sinks.printer(ProgressMode::kTty);
    printer.show("head 1/3 7/120");
  }  // an error unwinding the job: the next log line starts a line of its own
  EXPECT_EQ(sinks.terminal, "\rhead 1/3 7/120\x1b[K\n");
}

TrainOptions parse(std::vector<std::string> args) {
  CLI::App app;
  TrainOptions options;
  add_train_flags(*app.add_subcommand("train"), options);
  args.insert(args.begin(), "train");
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  app.parse(reversed);
  return options;
}

TEST(ProgressFlag, DefaultsToAutoAndTakesTheThreeModes) {
  EXPECT_EQ(parse({"--run-name", "r"}).progress, "auto");
  for (const char* mode : {"auto", "tty", "plain"}) {
    EXPECT_EQ(parse({"--run-name", "r", "--progress", mode}).progress, mode);
  }
  try {
    parse({"--run-name", "r", "--progress", "fancy"});
    FAIL() << "expected a parse error";
  } catch (const CLI::ParseError& e) {
    EXPECT_NE(std::string(e.what()).find("--progress"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace xfer::trainer::train
