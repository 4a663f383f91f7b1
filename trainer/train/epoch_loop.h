// The epoch loop: one epoch of training on this rank's streamed shard (the
// step loop: forward, backward with the bucketed all-reduce, optimizer step,
// metric reports, progress line, preemption agreement at every step
// boundary), and one pass of evaluation over a split. Every rank runs the
// same number of steps (the coordinator cuts equal train shards), so the
// collectives of one step line up on every rank.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include "trainer/data/augment.h"
#include "trainer/dist/communicator.h"
#include "trainer/evaluation/classification_counts.h"
#include "trainer/train/batch_tensors.h"
#include "trainer/train/phase_plan.h"
#include "trainer/train/progress.h"
#include "trainer/train/training_state.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::client {
class CoordinatorClient;
}
namespace torch::optim {
class Adam;
}
namespace xfer::trainer::dist {
class Reducer;
}
namespace xfer::trainer::models {
class TransferModelImpl;
}

namespace xfer::trainer::train {

class CachedHead;
class FaultInjector;
class JobCoordinator;
class PreemptionWatch;
class PredictionSampler;

// Dropout masks of one step: a pure function of (seed, epoch, rank, step),
// so a step re-run after a resume, even mid-epoch, draws what the first
// attempt drew.
std::uint64_t dropout_seed(std::uint64_t seed, int global_epoch, int rank, std::int64_t step);

// Top-1 and top-3 hits of one batch (top-k of fewer classes when there are
// fewer than 3).
std::pair<std::int64_t, std::int64_t> count_hits(const torch::Tensor& logits,
                                                 const torch::Tensor& labels);

// "val" and "test" as the report's split kind; anything else is train.
v1::SplitKind to_split_kind(const std::string& name);

// Sums one rank's evaluation counts over all ranks, in place. Collective.
void sum_counts(dist::Communicator& comm, evaluation::ClassificationCounts& counts,
                const std::string& label);
MetricTotals totals_of(const evaluation::ClassificationCounts& counts);

// What the loop works with; each must outlive the loop.
struct EpochLoopParts {
  const TrainOptions& options;
  dist::Communicator& host;                        // rank, world size, preemption agreement
  dist::Communicator& tensors;                     // --check-sync-every
  coordinator::client::CoordinatorClient& client;  // shard streams
  JobCoordinator& coordinator;                     // metric reports
  models::TransferModelImpl& model;
  dist::Reducer& reducer;
  const BatchTensors& batch_tensors;
  PreemptionWatch& preemption;
  FaultInjector& faults;
  ProgressPrinter& progress;
  // Advanced with every step (phase_step, global_step); a mid-epoch
  // resume's partial counts are read from it.
  TrainingState& state;
};

// What an epoch of training ended with.
struct EpochResult {
  MetricTotals totals;  // this rank's train counts of the whole epoch
  double seconds = 0.0;
  // Stopped early, after `steps_done` steps: the ranks agreed to be
  // preempted; the job stores a checkpoint of this step and ends.
  bool preempted = false;
  std::int64_t steps_done = 0;
  double data_wait_s = 0.0;  // of `seconds`, waiting for the prefetcher (this attempt's part)
};

class EpochLoop {
 public:
  explicit EpochLoop(EpochLoopParts parts) : p_(parts) {}

  // The phase's optimizer, its train augmentation, and its cached head
  // (null: none); used until the next call.
  void begin_phase(torch::optim::Adam& optimizer, const data::AugmentSpec& augment,
                   CachedHead* cached_head);
  // The phase's cached head is gone: evaluation streams images again.
  void end_phase() { cached_head_ = nullptr; }

  // Trains epoch `epoch` of `plan` from batch `start_batch` (0, or where a
  // mid-epoch checkpoint stopped); stops early when the ranks agree to be
  // preempted (the last step of an epoch is left to the end of the epoch,
  // whose checkpoint is worth more). Collective.
  EpochResult train(const PhasePlan& plan, int epoch, std::int64_t start_batch);

  // This rank's counts over its shard of `split` (`split_name` "val" or
  // "test"), reported under (phase, epoch). Validation goes through the
  // cached head while there is one. With `samples`, offers it every
  // evaluated batch (the report's images).
  evaluation::ClassificationCounts evaluate(const std::string& split, const char* split_name,
                                            const std::string& phase, int epoch,
                                            PredictionSampler* samples = nullptr);

  // The learning rate of the last step taken (or resumed from): reports of
  // its epoch repeat it.
  double last_lr() const { return last_lr_; }
  void set_last_lr(double lr) { last_lr_ = lr; }
  std::int64_t steps_this_attempt() const { return steps_this_attempt_; }

 private:
  using Clock = std::chrono::steady_clock;

  // `step`: batches of (phase, epoch, split) done so far, the report's key;
  // `steps_in_epoch`: the rank's planned batches of it (0: not known yet),
  // for progress views (coordctl watch).
  void report(const std::string& phase, int epoch, v1::SplitKind split, const MetricTotals& m,
              double images_per_second, double wait_ms, double lr, bool end_of_epoch,
              std::int64_t step, std::int64_t steps_in_epoch);
  v1::StreamShardRequest shard_request(const std::string& split, int global_epoch,
                                       bool train) const;
  bool bf16() const { return p_.options.precision == "bf16"; }

  EpochLoopParts p_;
  torch::optim::Adam* optimizer_ = nullptr;
  data::AugmentSpec augment_;
  CachedHead* cached_head_ = nullptr;
  double last_lr_ = 0.0;
  std::int64_t steps_this_attempt_ = 0;
  Clock::time_point last_progress_ = Clock::now();
};

}  // namespace xfer::trainer::train
