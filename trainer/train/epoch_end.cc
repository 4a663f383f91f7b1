#include "trainer/train/epoch_end.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

#include "trainer/models/transfer_model.h"
#include "trainer/train/checkpoint_codec.h"
#include "trainer/train/collective.h"
#include "trainer/train/epoch_loop.h"
#include "trainer/train/run_checkpoints.h"

namespace xfer::trainer::train {

namespace fs = std::filesystem;

std::vector<double> EpochTrainSums::pack() const {
  return {totals.loss_sum,
          static_cast<double>(totals.top1),
          static_cast<double>(totals.top3),
          static_cast<double>(totals.samples),
          data_wait_s,
          seconds};
}

EpochTrainSums EpochTrainSums::unpack(const std::vector<double>& values) {
  EpochTrainSums sums;
  sums.totals.loss_sum = values.at(0);
  sums.totals.top1 = static_cast<std::int64_t>(values.at(1));
  sums.totals.top3 = static_cast<std::int64_t>(values.at(2));
  sums.totals.samples = static_cast<std::int64_t>(values.at(3));
  sums.data_wait_s = values.at(4);
  sums.seconds = values.at(5);
  return sums;
}

double EpochTrainSums::data_wait_share() const {
  return seconds > 0 ? data_wait_s / seconds : -1.0;
}

EpochTrainSums sum_epoch_train(dist::Communicator& comm, const MetricTotals& local,
                               double data_wait_s, double seconds, const std::string& label) {
  std::vector<double> packed = EpochTrainSums{local, data_wait_s, seconds}.pack();
  sum_over_ranks(comm, packed, label);
  return EpochTrainSums::unpack(packed);
}

void record_epoch_end(TrainingState& state, const PhasePlan& plan, int epoch,
                      const MetricTotals& val, int world_size, int batch_size, std::uint64_t seed) {
  state.phase = models::phase_name(plan.phase);
  state.epochs_done = epoch;
  state.global_epoch = plan.first_global_epoch + epoch;
  state.epoch_steps_done = 0;  // an epoch boundary
  state.epoch_seconds = 0.0;
  state.epoch_partial.clear();
  state.val_loss = val.loss();
  state.val_top1 = val.acc();
  state.world_size = world_size;
  state.batch_size = batch_size;
  state.seed = seed;
}

PartialEpoch gather_partial_epoch(dist::Communicator& comm, const MetricTotals& totals,
                                  double seconds) {
  // Each rank fills its own slots; the sum over ranks is every rank's
  // numbers in rank order.
  const auto world = static_cast<std::size_t>(comm.size());
  const auto me = static_cast<std::size_t>(comm.rank());
  std::vector<double> sums(world * 2, 0.0);
  std::vector<std::int64_t> counts(world * 3, 0);
  sums[me * 2] = totals.loss_sum;
  sums[me * 2 + 1] = seconds;
  counts[me * 3] = totals.top1;
  counts[me * 3 + 1] = totals.top3;
  counts[me * 3 + 2] = totals.samples;
  sum_over_ranks(comm, sums, "preemption: partial epoch loss");
  sum_over_ranks(comm, counts, "preemption: partial epoch counts");
  PartialEpoch partial;
  partial.rank0_seconds = sums[0 * 2 + 1];
  partial.ranks.assign(world, {});
  for (std::size_t r = 0; r < world; ++r) {
    partial.ranks[r] = {sums[r * 2], counts[r * 3], counts[r * 3 + 1], counts[r * 3 + 2]};
  }
  return partial;
}

TrainingState mid_epoch_state(const TrainingState& state, const PhasePlan& plan, int epoch,
                              std::int64_t steps_done, const PartialEpoch& partial, int world_size,
                              int batch_size, std::uint64_t seed) {
  TrainingState s = state;
  s.phase = models::phase_name(plan.phase);
  s.epochs_done = epoch - 1;
  s.global_epoch = plan.first_global_epoch + epoch - 1;
  s.val_loss = std::numeric_limits<double>::quiet_NaN();
  s.val_top1 = 0.0;
  s.world_size = world_size;
  s.batch_size = batch_size;
  s.seed = seed;
  s.epoch_steps_done = steps_done;
  s.epoch_seconds = partial.rank0_seconds;
  s.epoch_partial = partial.ranks;
  return s;
}

v1::CheckpointMeta checkpoint_meta(const std::string& run, const std::string& phase,
                                   const TrainingState& state) {
  v1::CheckpointMeta meta;
  meta.set_run(run);
  meta.set_phase(phase);
  // The store orders "latest" by (epoch, step): the epoch count over all
  // phases keeps a fine-tuning checkpoint after every head one, and a
  // mid-epoch checkpoint (same epoch count, later step) after the one of
  // the epoch before and before the one of its epoch's end.
  meta.set_epoch(state.global_epoch);
  meta.set_step(state.global_step);
  meta.set_metric_name("val_loss");
  // Mid-epoch: NaN, not validated, so "best" never picks it.
  meta.set_metric_value(state.val_loss);
  meta.set_direction(v1::METRIC_DIRECTION_MINIMIZE);
  return meta;
}

bool BestCheckpoint::offer(const std::string& id, double val_loss) {
  const bool best = !id.empty() && val_loss < best_val_loss_;
  if (best) best_val_loss_ = val_loss;
  return best;
}

void append_epochs_csv(const fs::path& csv, const EpochRow& row) {
  const bool fresh = !fs::exists(csv);
  std::ofstream out(csv, std::ios::app);
  if (fresh) {
    out << "phase,epoch,step,loss,acc,top3,val_loss,val_acc,val_top3,lr,seconds,"
           "checkpoint\n";
  }
  out << row.phase << ',' << row.epoch << ',' << row.global_step << ','
      << fmt::format("{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6g},{:.3f}", row.train.loss(),
                     row.train.acc(), row.train.acc3(), row.val.loss(), row.val.acc(),
                     row.val.acc3(), row.learning_rate, row.seconds)
      << ',' << row.checkpoint_id << '\n';
  if (!out) throw std::runtime_error("cannot append to " + csv.string());
}

std::string preempted_mid_epoch_where(const std::string& checkpoint_id, const std::string& phase,
                                      int epoch, std::int64_t steps_done,
                                      std::int64_t global_step) {
  return checkpoint_id.empty()
             ? fmt::format(
                   "no checkpoint could be stored at {} epoch {} step {} of it (global step "
                   "{}); the resume starts from the run's latest stored checkpoint",
                   phase, epoch, steps_done, global_step)
             : fmt::format("checkpoint {} stored at {} epoch {} step {} of it (global step {})",
                           checkpoint_id, phase, epoch, steps_done, global_step);
}

std::string preempted_at_boundary_where(const std::string& checkpoint_id, const std::string& phase,
                                        int epoch, std::int64_t global_step) {
  return checkpoint_id.empty()
             ? fmt::format(
                   "no checkpoint could be stored at the end of {} epoch {} (global step {}); "
                   "the resume starts from the run's latest stored checkpoint",
                   phase, epoch, global_step)
             : fmt::format("checkpoint {} stored at the end of {} epoch {} (global step {})",
                           checkpoint_id, phase, epoch, global_step);
}

std::string EpochEnd::finish(const PhasePlan& plan, int epoch, const EpochResult& result,
                             torch::optim::Adam& optimizer) {
  const TrainOptions& options = p_.options;
  const std::string phase = models::phase_name(plan.phase);
  // 1. Every rank's train counts, summed: the numbers the coordinator
  // aggregates from the reports.
  const EpochTrainSums train = sum_epoch_train(p_.host, result.totals, result.data_wait_s,
                                               result.seconds, phase + " epoch train totals");
  // 2. Validation, every sample once over the ranks.
  evaluation::ClassificationCounts val_counts =
      p_.loop.evaluate(options.val_split, "val", phase, epoch);
  sum_counts(p_.host, val_counts, phase + " epoch validation");
  const MetricTotals val = totals_of(val_counts);
  // 3. The epoch boundary's state.
  record_epoch_end(p_.state, plan, epoch, val, p_.host.size(), options.batch_size, options.seed);

  std::string checkpoint_id;
  on_rank0(p_.host, "storing the checkpoint of " + phase + " epoch " + std::to_string(epoch), [&] {
    // 4. The checkpoint, and 5. whether it is the phase's best.
    checkpoint_id = p_.checkpoints.store(
        checkpoint_meta(options.run_name, phase, p_.state),
        encode_checkpoint(p_.metadata, p_.model, optimizer, p_.state),
        phase + " epoch " + std::to_string(epoch), "training continues without it");
    const bool best = best_.offer(checkpoint_id, p_.state.val_loss);

    // 6. The summary line.
    EpochSummaryLine line;
    line.phase = phase;
    line.epoch = epoch;
    line.epochs = plan.schedule.epochs;
    line.steps = result.totals.samples / std::max(1, options.batch_size);
    line.seconds = result.seconds;
    line.images_per_second = result.seconds > 0 ? train.totals.samples / result.seconds : 0.0;
    line.train = train.totals;
    line.val = val;
    line.learning_rate = p_.loop.last_lr();
    line.checkpoint_id = checkpoint_id;
    line.best = best;
    line.data_wait = train.data_wait_share();
    p_.progress.clear();  // the summary takes the progress line's place
    spdlog::info("{}", format_epoch_summary(line));

    // 7. The epoch's row of epochs.csv.
    append_epochs_csv(fs::path(options.run_dir) / "epochs.csv",
                      {phase, epoch, p_.state.global_step, train.totals, val, p_.loop.last_lr(),
                       result.seconds, checkpoint_id});
  });
  return broadcast_string(p_.host, checkpoint_id, "checkpoint id");
}

std::string EpochEnd::store_mid_epoch(const PhasePlan& plan, int epoch, const EpochResult& result,
                                      torch::optim::Adam& optimizer) {
  const TrainOptions& options = p_.options;
  const std::string phase = models::phase_name(plan.phase);
  // Every rank's counts, in rank order: each rank re-reports its own after
  // the resume.
  const PartialEpoch partial = gather_partial_epoch(p_.host, result.totals, result.seconds);
  const TrainingState state = mid_epoch_state(p_.state, plan, epoch, result.steps_done, partial,
                                              p_.host.size(), options.batch_size, options.seed);
  std::string checkpoint_id;
  on_rank0(p_.host, "storing the preemption checkpoint", [&] {
    checkpoint_id = p_.checkpoints.store(
        checkpoint_meta(options.run_name, phase, state),
        encode_checkpoint(p_.metadata, p_.model, optimizer, state),
        fmt::format("{} epoch {} step {} (preemption)", phase, epoch, result.steps_done),
        "the job stops as asked; its next attempt resumes from the run's latest stored "
        "checkpoint");
  });
  return broadcast_string(p_.host, checkpoint_id, "checkpoint id");
}

}  // namespace xfer::trainer::train
