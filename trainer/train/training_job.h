// The training job: one rank's whole run of the transfer recipe.
//
//   start      rank 0 starts (or, with --resume, resumes) the run at the
//              coordinator; every rank builds the model; rank 0 loads
//              --weights (base only) or the resumed checkpoint; the model is
//              broadcast from rank 0.
//   phases     full, head, finetune in that order, each with a fresh Adam
//              (as Keras recompiles), skipping phases of 0 epochs. Before
//              fine-tuning the best head checkpoint is restored.
//   epoch      stream this rank's train shard (prefetched, augmented),
//              forward, backward with the bucketed all-reduce, step; report
//              metrics every --report-every steps; validate on the val split
//              (every sample once over the ranks); rank 0 stores a checkpoint
//              ranked by val loss and prints the epoch's summary.
//   preempt    SIGUSR1/SIGTERM on any rank: the ranks agree at the next step
//              boundary, rank 0 stores a checkpoint of that exact step, the
//              run is marked PREEMPTED and the job returns kPreempted
//              (preemption.h); --resume auto|latest continues from that step.
//   end        evaluate the test split, store the report at the coordinator,
//              write model.pt, report.json, classes.csv, confusion.csv and
//              epochs.csv into the run directory, end the run COMPLETED.
//
// Every rank calls run_training_job with the same options. See
// docs/training.md for the resume semantics and the failure rules.
//
// The parts, each with its own unit tests (tests/train/):
//   run_lifecycle.h        start/resume the run, mark it PREEMPTED, COMPLETED
//   checkpoint_selection.h which checkpoint to resume or restore, fallbacks
//   run_checkpoints.h      fetch (download, verify, decode, broadcast), store
//   phase_plan.h           the phases in order, where a (resumed) job starts
//   cached_head.h          the head phase from cached base features
//   epoch_loop.h           the step loop of an epoch, evaluation of a split
//   epoch_end.h            the end of an epoch, in named steps
//   fault_injector.h       the test hooks (nothing in production)
//   job_coordinator.h      the coordinator calls, behind an interface
#pragma once

#include "trainer/dist/world.h"
#include "trainer/train/train_options.h"

namespace xfer::trainer::train {

// What the caller needs to know when the job throws.
struct JobProgress {
  // The run was started (or resumed) at the coordinator by this attempt, so
  // a failure should mark it FAILED there. A refused start (the run exists,
  // the coordinator is unreachable) must leave the run as it was.
  bool run_started = false;
};

enum class JobOutcome {
  kCompleted,  // every planned epoch ran; the report is stored
  kPreempted,  // a signal asked the job to stop: a checkpoint of where it
               // stood is stored, the run is PREEMPTED; exit kExitPreempted
};

// Runs the job on this rank; every rank returns the same outcome. Throws
// SharedError (collective.h) on every rank when a step all ranks take
// together failed; any other exception is this rank's alone, and the caller
// must end the job (dist::abort_job).
JobOutcome run_training_job(const TrainOptions& options, dist::World& world, JobProgress& progress);

}  // namespace xfer::trainer::train
