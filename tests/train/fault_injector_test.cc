// The training job's test hooks (trainer/train/fault_injector.h): nothing
// unless a test flag is set, and each flag's fault at its exact count.
#include "trainer/train/fault_injector.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "trainer/train/preemption.h"

namespace xfer::trainer::train {
namespace {

struct Aborts {
  std::vector<std::pair<std::string, int>> calls;
  TestFaults::Abort fn() {
    return [this](const std::string& message, int code) { calls.emplace_back(message, code); };
  }
};

TEST(FaultInjectorTest, NoFlagNoFaults) {
  Aborts aborts;
  TrainOptions o;
  const auto faults = make_fault_injector(o, 0, 1, aborts.fn());
  EXPECT_NE(dynamic_cast<NoFaults*>(faults.get()), nullptr);
  o.step_delay_ms = 1;
  EXPECT_NE(dynamic_cast<TestFaults*>(make_fault_injector(o, 0, 1, aborts.fn()).get()), nullptr);
}

TEST(FaultInjectorTest, FailsAfterTheNthEpochOfTheAttempt) {
  Aborts aborts;
  TestFaults faults({2, 0, 0}, 0, 2, aborts.fn());
  faults.after_epoch(1, "head", 1);
  EXPECT_TRUE(aborts.calls.empty());
  faults.after_epoch(2, "head", 2);
  ASSERT_EQ(aborts.calls.size(), 1u);
  EXPECT_EQ(aborts.calls[0].first,
            "injected failure: --fail-after-epochs 2 reached after head epoch 2");
  EXPECT_EQ(aborts.calls[0].second, 3);
}

TEST(FaultInjectorTest, TheLastRankActsPreemptedAtTheNthStep) {
  PreemptionWatch watch;
  Aborts aborts;
  TestFaults first_rank({0, 3, 0}, 0, 2, aborts.fn());
  first_rank.after_step(3);
  EXPECT_FALSE(watch.requested_locally());
  TestFaults last_rank({0, 3, 0}, 1, 2, aborts.fn());
  last_rank.after_step(2);
  EXPECT_FALSE(watch.requested_locally());
  last_rank.after_step(3);
  EXPECT_TRUE(watch.requested_locally());
  EXPECT_EQ(watch.signal_name(), "SIGUSR1");
}

TEST(FaultInjectorTest, EveryStepSleeps) {
  Aborts aborts;
  TestFaults faults({0, 0, 30}, 0, 1, aborts.fn());
  const auto start = std::chrono::steady_clock::now();
  faults.after_step(1);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
}

}  // namespace
}  // namespace xfer::trainer::train
