// The run's life at the coordinator, from the training job's side: starting
// it (or resuming it: --resume latest|best|ID|auto), checking that a resumed
// checkpoint fits this attempt, marking it PREEMPTED, and ending it
// COMPLETED. No LibTorch: the coordinator is a JobCoordinator, so each rule
// is unit-tested with a fake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/dist/communicator.h"
#include "trainer/train/job_coordinator.h"
#include "trainer/train/train_options.h"
#include "trainer/train/training_state.h"

namespace xfer::trainer::train {

struct RunStart {
  // --resume auto found the run COMPLETED: there is nothing left to do.
  bool already_completed = false;
  // --resume as decided: options.resume, or for "auto" "latest" when the
  // run has a checkpoint and "" when it starts afresh.
  std::string resume;
  // The run's attempt StartRun returned.
  int attempt = 0;
  // The dataset's class names, num_classes of them ("class_N" past the
  // dataset's own); rank 0 only.
  std::vector<std::string> labels;
};

// Rank 0: checks the options against what the coordinator holds (an
// existing run needs --resume, a resumed one must exist and keep its
// dataset, every split must resolve), then starts the run (a new attempt)
// and creates the run directory. Nothing is changed at the coordinator
// before every check passed. Throws std::runtime_error naming the flag, or
// the coordinator's RpcError.
RunStart start_run_at_coordinator(JobCoordinator& coordinator, const TrainOptions& options,
                                  int world_size, const std::string& devices);

// Every rank: rank 0 runs start_run_at_coordinator, the others learn the
// decided resume and the attempt. Collective; rank 0's error is a
// SharedError on every rank. `coordinator` is used on rank 0 only.
RunStart start_run(JobCoordinator& coordinator, dist::Communicator& host,
                   const TrainOptions& options, int world_size, const std::string& devices);

// Whether a checkpoint of `state` can be resumed by `world_size` ranks of
// `batch_size`: a mid-epoch one only by the shape that took it (throws
// SharedError naming both shapes and what to do); an end-of-epoch one by any
// (rank 0 warns that the remaining epochs are cut differently). `source`
// names the checkpoint.
void check_resumable(const TrainingState& state, int world_size, int batch_size, int rank,
                     const std::string& source, const std::string& run_name);

// Collective: rank 0 marks the run PREEMPTED with "preempted (<signal>):
// <where>" and logs how to continue.
void mark_run_preempted(JobCoordinator& coordinator, dist::Communicator& host,
                        const std::string& run, const std::string& signal,
                        const std::string& where);

// Rank 0: ends the run COMPLETED with its step count and test accuracy, and
// logs where its files are.
void complete_run(JobCoordinator& coordinator, const TrainOptions& options,
                  std::int64_t global_step, std::int64_t steps_this_attempt, double test_top1,
                  double test_top3);

}  // namespace xfer::trainer::train
