#include "trainer/train/fault_injector.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <csignal>
#include <thread>
#include <utility>

#include "trainer/train/preemption.h"

namespace xfer::trainer::train {

TestFaults::TestFaults(TestFaultOptions options, int rank, int world_size, Abort abort)
    : options_(options), rank_(rank), world_size_(world_size), abort_(std::move(abort)) {}

void TestFaults::after_step(std::int64_t steps_this_attempt) {
  if (options_.step_delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.step_delay_ms));
  }
  if (options_.preempt_after_steps > 0 && steps_this_attempt == options_.preempt_after_steps &&
      rank_ == world_size_ - 1) {
    spdlog::warn(
        "injected preemption: --preempt-after-steps {} reached; acting as if SIGUSR1 "
        "arrived",
        options_.preempt_after_steps);
    PreemptionWatch::request_locally(SIGUSR1);
  }
}

void TestFaults::after_epoch(int epochs_this_attempt, const std::string& phase, int epoch) {
  if (options_.fail_after_epochs > 0 && epochs_this_attempt == options_.fail_after_epochs) {
    abort_("injected failure: --fail-after-epochs " + std::to_string(options_.fail_after_epochs) +
               " reached after " + phase + " epoch " + std::to_string(epoch),
           3);
  }
}

std::unique_ptr<FaultInjector> make_fault_injector(const TrainOptions& options, int rank,
                                                   int world_size, TestFaults::Abort abort) {
  const TestFaultOptions faults{options.fail_after_epochs, options.preempt_after_steps,
                                options.step_delay_ms};
  if (!faults.any()) return std::make_unique<NoFaults>();
  return std::make_unique<TestFaults>(faults, rank, world_size, std::move(abort));
}

}  // namespace xfer::trainer::train
