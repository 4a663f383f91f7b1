#include "trainer/train/preemption.h"

#include <gtest/gtest.h>

#include <csignal>
#include <stdexcept>

namespace xfer::trainer::train {
namespace {

volatile std::sig_atomic_t g_previous_handler_ran = 0;
extern "C" void previous_handler(int) { g_previous_handler_ran = 1; }

TEST(PreemptionWatch, ASignalSetsTheFlagAndIsNamed) {
  PreemptionWatch watch;
  EXPECT_FALSE(watch.requested_locally());
  EXPECT_EQ(watch.signal_name(), "");
  ASSERT_EQ(std::raise(SIGUSR1), 0);  // would end the process without the handler
  EXPECT_TRUE(watch.requested_locally());
  EXPECT_EQ(watch.signal_name(), "SIGUSR1");
  // The first signal is the one reported.
  ASSERT_EQ(std::raise(SIGTERM), 0);
  EXPECT_EQ(watch.signal_name(), "SIGUSR1");
}

TEST(PreemptionWatch, SigtermToo) {
  PreemptionWatch watch;
  ASSERT_EQ(std::raise(SIGTERM), 0);
  EXPECT_TRUE(watch.requested_locally());
  EXPECT_EQ(watch.signal_name(), "SIGTERM");
}

TEST(PreemptionWatch, StartsClearAndRestoresThePreviousHandlers) {
  std::signal(SIGUSR1, previous_handler);
  {
    PreemptionWatch watch;
    EXPECT_FALSE(watch.requested_locally());  // a fresh watch forgets earlier signals
    PreemptionWatch::request_locally(SIGTERM);
    EXPECT_EQ(watch.signal_name(), "SIGTERM");
  }
  g_previous_handler_ran = 0;
  ASSERT_EQ(std::raise(SIGUSR1), 0);
  EXPECT_EQ(g_previous_handler_ran, 1);
  std::signal(SIGUSR1, SIG_DFL);
}

TEST(PreemptionWatch, OnlyOnePerProcess) {
  PreemptionWatch watch;
  EXPECT_THROW(PreemptionWatch second, std::logic_error);
}

}  // namespace
}  // namespace xfer::trainer::train
