// Preemption: a job asked to stop (Slurm's pre-timeout SIGUSR1, a
// scheduler's SIGTERM) stores a checkpoint of exactly where it stands and
// exits with kExitPreempted, so a later `--resume auto|latest` continues it
// from the same optimizer step.
//
// The signal may reach one rank, some, or all, at any moment. A rank only
// sets a flag in its handler (async-signal-safe); the ranks then agree at the
// next step boundary, collectively (agreed()), so every rank leaves the loop
// after the same step and none is left inside a collective. No LibTorch.
#pragma once

#include <string>

#include "trainer/dist/communicator.h"

namespace xfer::trainer::train {

// Every rank of a preempted job exits with this (EX_TEMPFAIL: "try again
// later"); slurm/train.sbatch requeues the job when it sees it.
inline constexpr int kExitPreempted = 75;

// Installs handlers for SIGUSR1 and SIGTERM for its lifetime (one at a time
// per process) and restores the previous ones when destroyed.
class PreemptionWatch {
 public:
  PreemptionWatch();
  ~PreemptionWatch();
  PreemptionWatch(const PreemptionWatch&) = delete;
  PreemptionWatch& operator=(const PreemptionWatch&) = delete;

  // This rank received a signal (or request_locally() was called).
  bool requested_locally() const;
  // The first signal this rank received, e.g. "SIGUSR1"; "" if none.
  std::string signal_name() const;
  // Acts as if this rank had received `signal_number` (fault injection in
  // tests, and a way to stop a job from inside).
  static void request_locally(int signal_number);

  // Collective: true on every rank iff at least one rank has requested.
  // Call it at the same point of every rank's loop.
  bool agreed(dist::Communicator& comm) const;
};

}  // namespace xfer::trainer::train
