// The end of an epoch, in named steps, each testable on its own:
//
//   1. sum_epoch_train    every rank's train counts and times, summed
//   2. (validation)       EpochLoop::evaluate on the val split, summed
//   3. record_epoch_end   the training state of the epoch boundary
//   4. store              rank 0 stores the checkpoint (checkpoint_meta)
//   5. BestCheckpoint     tracks the phase's best stored checkpoint
//   6. print              the epoch's summary line (progress.h)
//   7. append_epochs_csv  one row of <run_dir>/epochs.csv
//
// EpochEnd::finish runs them in that order. A preempted epoch ends instead
// with mid_epoch_state and EpochEnd::store_mid_epoch. Fault injection and
// the preemption agreement after the checkpoint are the job's
// (training_job.cc).
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "trainer/dist/communicator.h"
#include "trainer/train/phase_plan.h"
#include "trainer/train/progress.h"
#include "trainer/train/training_state.h"
#include "xfer/v1/coordinator.pb.h"

namespace torch::optim {
class Adam;
}
namespace xfer::trainer::models {
class TransferModelImpl;
struct ModelMetadata;
}  // namespace xfer::trainer::models

namespace xfer::trainer::train {

class EpochLoop;
class RunCheckpoints;
struct EpochResult;

// An epoch's train numbers summed over the ranks. Sent as one all-reduce of
// doubles: pack() and unpack() are that vector's layout.
struct EpochTrainSums {
  MetricTotals totals;
  // Every rank's seconds waiting for data, and in the epoch, summed: their
  // ratio is the mean share of waiting in the summary line.
  double data_wait_s = 0.0;
  double seconds = 0.0;

  std::vector<double> pack() const;
  // REQUIRES: values.size() == pack().size().
  static EpochTrainSums unpack(const std::vector<double>& values);
  // data_wait_s / seconds; negative (not known) when no time passed.
  double data_wait_share() const;
};

// Collective: this rank's train counts and times of the epoch, summed.
EpochTrainSums sum_epoch_train(dist::Communicator& comm, const MetricTotals& local,
                               double data_wait_s, double seconds, const std::string& label);

// The state at the end of epoch `epoch` of `plan`, validated with `val`.
void record_epoch_end(TrainingState& state, const PhasePlan& plan, int epoch,
                      const MetricTotals& val, int world_size, int batch_size, std::uint64_t seed);

// Every rank's train counts of an unfinished epoch, in rank order, and rank
// 0's seconds in it (as its progress line shows). Collective.
struct PartialEpoch {
  std::vector<PartialTotals> ranks;
  double rank0_seconds = 0.0;
};
PartialEpoch gather_partial_epoch(dist::Communicator& comm, const MetricTotals& totals,
                                  double seconds);

// The state of a checkpoint taken after step `steps_done` of epoch `epoch`
// of `plan` (preemption): nothing validated (val_loss NaN), every rank's
// partial counts kept for the resume.
TrainingState mid_epoch_state(const TrainingState& state, const PhasePlan& plan, int epoch,
                              std::int64_t steps_done, const PartialEpoch& partial, int world_size,
                              int batch_size, std::uint64_t seed);

// The checkpoint's metadata at the coordinator: ranked by val_loss (lower is
// better; NaN ranks below every validated one) and ordered by (epoch over
// all phases, global step).
v1::CheckpointMeta checkpoint_meta(const std::string& run, const std::string& phase,
                                   const TrainingState& state);

// The phase's best stored checkpoint so far, by validation loss.
class BestCheckpoint {
 public:
  void reset() { best_val_loss_ = std::numeric_limits<double>::infinity(); }
  // True when the checkpoint `id` ("" when it was not stored: never best)
  // of `val_loss` is the phase's best so far; it is then remembered.
  bool offer(const std::string& id, double val_loss);

 private:
  double best_val_loss_ = std::numeric_limits<double>::infinity();
};

// One row of epochs.csv.
struct EpochRow {
  std::string phase;
  int epoch = 0;
  std::int64_t global_step = 0;
  MetricTotals train;
  MetricTotals val;
  double learning_rate = 0.0;
  double seconds = 0.0;
  std::string checkpoint_id;
};

// Appends `row` to the CSV file `csv`, with the header line first when the
// file does not exist yet. Throws std::runtime_error naming the file.
void append_epochs_csv(const std::filesystem::path& csv, const EpochRow& row);

// "no checkpoint could be stored at ..." / "checkpoint ID stored at ...":
// where a preempted run stands, for its PREEMPTED message.
std::string preempted_mid_epoch_where(const std::string& checkpoint_id, const std::string& phase,
                                      int epoch, std::int64_t steps_done, std::int64_t global_step);
std::string preempted_at_boundary_where(const std::string& checkpoint_id, const std::string& phase,
                                        int epoch, std::int64_t global_step);

// What the end of an epoch works with; each must outlive it.
struct EpochEndParts {
  const TrainOptions& options;
  dist::Communicator& host;
  RunCheckpoints& checkpoints;
  EpochLoop& loop;  // validation, and the last step's learning rate
  models::TransferModelImpl& model;
  const models::ModelMetadata& metadata;
  ProgressPrinter& progress;
  TrainingState& state;
};

class EpochEnd {
 public:
  explicit EpochEnd(EpochEndParts parts) : p_(parts) {}

  // A phase starts: no best checkpoint yet.
  void begin_phase() { best_.reset(); }

  // Steps 1-7 for epoch `epoch` of `plan`, trained as `result` says, with
  // `optimizer`'s state in the checkpoint. Returns the stored checkpoint's
  // id on every rank ("" when it could not be stored). Collective.
  std::string finish(const PhasePlan& plan, int epoch, const EpochResult& result,
                     torch::optim::Adam& optimizer);

  // The checkpoint of a preempted epoch, after step result.steps_done.
  // Returns its id on every rank ("" when it could not be stored).
  // Collective.
  std::string store_mid_epoch(const PhasePlan& plan, int epoch, const EpochResult& result,
                              torch::optim::Adam& optimizer);

 private:
  EpochEndParts p_;
  BestCheckpoint best_;
};

}  // namespace xfer::trainer::train
