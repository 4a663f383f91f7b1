// Faults the end-to-end tests inject into a training job, kept out of the
// production loop: the loop calls a FaultInjector at two points, and the
// job's is NoFaults (which does nothing) unless a test flag is set
// (--fail-after-epochs, --preempt-after-steps, --test-step-delay-ms; hidden
// from --help, docs/training.md "Test hooks"). The same split as
// common/fault_injecting_filesystem.h against the POSIX filesystem. No
// LibTorch.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "trainer/train/train_options.h"

namespace xfer::trainer::train {

class FaultInjector {
 public:
  virtual ~FaultInjector() = default;
  // After each optimizer step, before the ranks agree on preemption;
  // `steps_this_attempt` counts this attempt's steps, this one included.
  virtual void after_step(std::int64_t steps_this_attempt) = 0;
  // After an epoch's checkpoint was stored (or failed to store) on every
  // rank; `epochs_this_attempt` counts this attempt's epochs over all
  // phases, this one included. `phase` and `epoch` name it.
  virtual void after_epoch(int epochs_this_attempt, const std::string& phase, int epoch) = 0;
};

// Production: nothing.
class NoFaults final : public FaultInjector {
 public:
  void after_step(std::int64_t) override {}
  void after_epoch(int, const std::string&, int) override {}
};

// What the test flags ask for (0: off).
struct TestFaultOptions {
  // End the job as a crash would after this many epochs of the attempt.
  int fail_after_epochs = 0;
  // The last rank acts as if it received SIGUSR1 after this many steps.
  std::int64_t preempt_after_steps = 0;
  // Every step sleeps this long.
  int step_delay_ms = 0;

  bool any() const { return fail_after_epochs > 0 || preempt_after_steps > 0 || step_delay_ms > 0; }
};

class TestFaults final : public FaultInjector {
 public:
  // How the job is ended: dist::abort_job (MPI_Abort) in the trainer.
  using Abort = std::function<void(const std::string& message, int exit_code)>;

  TestFaults(TestFaultOptions options, int rank, int world_size, Abort abort);

  // Sleeps step_delay_ms; on the last rank, at step preempt_after_steps,
  // logs "injected preemption" and requests preemption as SIGUSR1 would
  // (PreemptionWatch::request_locally).
  void after_step(std::int64_t steps_this_attempt) override;
  // At epoch fail_after_epochs: abort("injected failure: ...", 3).
  void after_epoch(int epochs_this_attempt, const std::string& phase, int epoch) override;

 private:
  const TestFaultOptions options_;
  const int rank_;
  const int world_size_;
  const Abort abort_;
};

// TestFaults when a test flag of `options` is set, else NoFaults. `abort`
// ends the job (dist::abort_job in the trainer).
std::unique_ptr<FaultInjector> make_fault_injector(const TrainOptions& options, int rank,
                                                   int world_size, TestFaults::Abort abort);

}  // namespace xfer::trainer::train
