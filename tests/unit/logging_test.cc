#include "common/logging.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <regex>
#include <stdexcept>

namespace xfer::common {
namespace {

using ::testing::HasSubstr;

// Each test installs a fresh logger; spdlog's registry refuses duplicates.
class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spdlog::drop_all();
    unsetenv_all();
  }
  void TearDown() override {
    spdlog::drop_all();
    unsetenv_all();
  }
  static void unsetenv_all() {
    for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
      ::unsetenv(var);
    }
  }
  static std::string log_one_line(const LogOptions& options, const std::string& message) {
    ::testing::internal::CaptureStderr();
    init_logging(options);
    spdlog::info(message);
    spdlog::default_logger()->flush();
    return ::testing::internal::GetCapturedStderr();
  }
};

TEST_F(LoggingTest, LineHasTimeLevelHostComponentAndMessage) {
  const std::string line = log_one_line({"coordinator", std::nullopt, "info"}, "listening");
  const std::regex pattern(
      R"(^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} I (\S+) coordinator listening\n$)");
  std::smatch match;
  ASSERT_TRUE(std::regex_match(line, match, pattern)) << line;
  EXPECT_EQ(match[1].str(), hostname());
}

TEST_F(LoggingTest, RankComesFromLauncherEnvironment) {
  ::setenv("OMPI_COMM_WORLD_RANK", "3", 1);
  EXPECT_EQ(launcher_rank(), 3);
  EXPECT_THAT(log_one_line({"trainer", std::nullopt, "info"}, "hello"), HasSubstr(" r3 hello"));
}

TEST_F(LoggingTest, SlurmRankIsUsedWithoutOpenMpi) {
  ::setenv("SLURM_PROCID", "5", 1);
  EXPECT_EQ(launcher_rank(), 5);
}

TEST_F(LoggingTest, MalformedRankVariableIsIgnored) {
  ::setenv("PMI_RANK", "two", 1);
  EXPECT_EQ(launcher_rank(), std::nullopt);
}

TEST_F(LoggingTest, ExplicitRankWinsAndSetLogRankRelabels) {
  ::setenv("OMPI_COMM_WORLD_RANK", "3", 1);
  ::testing::internal::CaptureStderr();
  init_logging({"trainer", 1, "info"});
  spdlog::info("a");
  set_log_rank(2);
  spdlog::info("b");
  const std::string out = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(out, HasSubstr(" r1 a\n"));
  EXPECT_THAT(out, HasSubstr(" r2 b\n"));
}

TEST_F(LoggingTest, LevelFiltersLines) {
  const std::string out = log_one_line({"x", std::nullopt, "warn"}, "quiet");
  EXPECT_EQ(out, "");
}

TEST_F(LoggingTest, UnknownLevelIsRejectedByName) {
  try {
    init_logging({"x", std::nullopt, "verbose"});
    FAIL() << "accepted level 'verbose'";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown log level 'verbose' (expected one of: trace"));
  }
}

}  // namespace
}  // namespace xfer::common
