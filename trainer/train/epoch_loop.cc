#include "trainer/train/epoch_loop.h"

#include <spdlog/spdlog.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <vector>

#include "trainer/data/shard_prefetcher.h"
#include "trainer/dist/model_sync.h"
#include "trainer/dist/reducer.h"
#include "trainer/models/autocast_scope.h"
#include "trainer/models/transfer_model.h"
#include "trainer/train/cached_head.h"
#include "trainer/train/collective.h"
#include "trainer/train/fault_injector.h"
#include "trainer/train/fused_adam.h"
#include "trainer/train/job_coordinator.h"
#include "trainer/train/prediction_samples.h"
#include "trainer/train/preemption.h"

namespace xfer::trainer::train {
namespace {

// SplitMix64's finaliser: a good 64-bit mix, used to derive per-epoch seeds.
std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The prefetcher's next batch, its error prefixed with what was being read.
std::optional<data::Batch> next_batch(data::ShardPrefetcher& prefetcher, const std::string& what) {
  try {
    return prefetcher.next();
  } catch (const std::exception& e) {
    throw std::runtime_error(what + ": " + e.what());
  }
}

// The batch of `index` again with its images, for the cached head.
CachedHead::Refetch refetch_from(data::ShardPrefetcher& prefetcher) {
  return [&prefetcher](std::int64_t index) { return prefetcher.fetch_with_images(index); };
}

}  // namespace

std::uint64_t dropout_seed(std::uint64_t seed, int global_epoch, int rank, std::int64_t step) {
  return mix64(seed ^
               mix64(static_cast<std::uint64_t>(global_epoch) * 1000003ULL +
                     static_cast<std::uint64_t>(rank)) ^
               mix64(static_cast<std::uint64_t>(step)));
}

std::pair<std::int64_t, std::int64_t> count_hits(const torch::Tensor& logits,
                                                 const torch::Tensor& labels) {
  const std::int64_t k = std::min<std::int64_t>(3, logits.size(1));
  const torch::Tensor topk = std::get<1>(logits.topk(k, 1));
  const torch::Tensor hits = topk.eq(labels.unsqueeze(1));
  const std::int64_t top1 = hits.select(1, 0).sum().item<std::int64_t>();
  const std::int64_t top3 = hits.any(1).sum().item<std::int64_t>();
  return {top1, top3};
}

v1::SplitKind to_split_kind(const std::string& name) {
  if (name == "val") return v1::SPLIT_KIND_VALIDATION;
  if (name == "test") return v1::SPLIT_KIND_TEST;
  return v1::SPLIT_KIND_TRAIN;
}

void sum_counts(dist::Communicator& comm, evaluation::ClassificationCounts& counts,
                const std::string& label) {
  sum_over_ranks(comm, counts.confusion, label + " confusion");
  std::vector<std::int64_t> top3{counts.top3};
  sum_over_ranks(comm, top3, label + " top3");
  counts.top3 = top3[0];
  std::vector<double> loss{counts.loss_sum};
  sum_over_ranks(comm, loss, label + " loss");
  counts.loss_sum = loss[0];
}

MetricTotals totals_of(const evaluation::ClassificationCounts& counts) {
  MetricTotals m;
  m.loss_sum = counts.loss_sum;
  m.top1 = counts.top1();
  m.top3 = counts.top3;
  m.samples = counts.samples();
  return m;
}

void EpochLoop::begin_phase(torch::optim::Adam& optimizer, const data::AugmentSpec& augment,
                            CachedHead* cached_head) {
  optimizer_ = &optimizer;
  augment_ = augment;
  cached_head_ = cached_head;
}

v1::StreamShardRequest EpochLoop::shard_request(const std::string& split, int global_epoch,
                                                bool train) const {
  v1::StreamShardRequest r;
  r.set_run(p_.options.run_name);
  r.set_split(split);
  r.set_epoch(train ? global_epoch : 0);
  r.set_rank(p_.host.rank());
  r.set_world_size(p_.host.size());
  r.set_batch_size(train ? p_.options.batch_size : p_.options.eval_batch_size);
  r.set_shuffle(train);
  r.set_seed(p_.options.seed);
  r.set_kind(train ? v1::SHARD_KIND_TRAIN : v1::SHARD_KIND_EVAL);
  return r;
}

void EpochLoop::report(const std::string& phase, int epoch, v1::SplitKind split,
                       const MetricTotals& m, double images_per_second, double wait_ms, double lr,
                       bool end_of_epoch, std::int64_t step, std::int64_t steps_in_epoch) {
  v1::MetricsReport r;
  r.set_run(p_.options.run_name);
  r.set_rank(p_.host.rank());
  r.set_phase(phase);
  r.set_epoch(epoch);
  // The step within (phase, epoch, split), as MetricsReport asks: with
  // steps_in_epoch it places the rank in its epoch. Unique per report of the
  // group, and the end-of-epoch report carries the highest.
  r.set_step(step);
  r.set_steps_in_epoch(steps_in_epoch);
  r.set_split(split);
  r.set_loss_sum(m.loss_sum);
  r.set_correct_top1(m.top1);
  r.set_correct_top3(m.top3);
  r.set_samples(m.samples);
  r.set_images_per_second(images_per_second);
  r.set_data_wait_ms(wait_ms);
  // comm_ms stays 0: the Reducer does not measure its all-reduce wait.
  r.set_learning_rate(lr);
  r.set_end_of_epoch(end_of_epoch);
  p_.coordinator.report(r);
}

EpochResult EpochLoop::train(const PhasePlan& plan, int epoch, std::int64_t start_batch) {
  const TrainOptions& options = p_.options;
  const std::string phase = models::phase_name(plan.phase);
  const int global_epoch = plan.first_global_epoch + epoch - 1;
  const int rank = p_.host.rank();
  p_.model.train();
  data::PrefetchOptions po;
  po.queue_depth = options.prefetch;
  po.augment = augment_;
  po.num_classes = options.num_classes;
  po.input = p_.batch_tensors.layout();
  v1::StreamShardRequest request = shard_request(options.train_split, global_epoch, true);
  request.set_start_batch(start_batch);
  // From the second pass of a cached head phase on, the features are here:
  // the images would be streamed and decoded only to be dropped.
  request.set_labels_only(cached_head_ != nullptr && cached_head_->holds_train());
  data::ShardPrefetcher prefetcher(p_.client, request, po);

  MetricTotals epoch_totals;
  MetricTotals interval;
  double interval_wait_ms = 0.0;
  double seconds_before = 0.0;  // spent on this epoch by an earlier attempt
  if (start_batch > 0) {
    // Resumed mid-epoch: the coordinator dropped the preempted attempt's
    // partial reports of this epoch when the run restarted, so each rank
    // reports what it had counted before (stored in the checkpoint) once
    // more, and the epoch's totals come out whole.
    const PartialTotals& before = p_.state.epoch_partial.at(static_cast<std::size_t>(rank));
    epoch_totals.loss_sum = before.loss_sum;
    epoch_totals.top1 = before.top1;
    epoch_totals.top3 = before.top3;
    epoch_totals.samples = before.samples;
    seconds_before = p_.state.epoch_seconds;
    // last_lr_ is the checkpoint's last step's, set when it was loaded.
    report(phase, epoch, v1::SPLIT_KIND_TRAIN, epoch_totals, 0.0, 0.0, last_lr_, false, start_batch,
           0);
  }
  const auto start = Clock::now();
  const auto elapsed = [&] { return seconds_since(start); };
  auto interval_start = start;
  std::int64_t step = start_batch;
  last_progress_ = start;
  const std::string reading =
      phase + " epoch " + std::to_string(epoch) + ", train split '" + options.train_split + "'";
  while (auto batch = next_batch(prefetcher, reading)) {
    const bool cached = cached_head_ != nullptr;
    const torch::Tensor input =
        cached ? cached_head_->train_features(*batch, global_epoch, refetch_from(prefetcher))
               : p_.batch_tensors.input(*batch);
    const torch::Tensor labels = p_.batch_tensors.labels(*batch);
    const double lr = learning_rate(plan.schedule, p_.state.phase_step);
    for (auto& group : optimizer_->param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    }
    last_lr_ = lr;
    // Zeroed in place, never set to None (LibTorch 2.x's default): the
    // Reducer's gradients are aliases into its buckets.
#if TORCH_VERSION_MAJOR >= 2
    optimizer_->zero_grad(/*set_to_none=*/false);
#else
    optimizer_->zero_grad();
#endif
    p_.reducer.prepare_for_backward();
    torch::manual_seed(dropout_seed(options.seed, global_epoch, rank, step));
    torch::Tensor logits;
    torch::Tensor loss;
    {
      models::AutocastScope autocast(bf16(), p_.batch_tensors.device().is_cuda());
      logits = cached ? p_.model.head_forward(input) : p_.model.forward(input);
      loss = torch::nn::functional::cross_entropy(logits, labels);
    }
    loss.backward();
    p_.reducer.finalize_backward();
    if (options.kernels.fused_adam) {
      fused_adam_step(*optimizer_);
    } else {
      optimizer_->step();
    }
    ++p_.state.phase_step;
    ++p_.state.global_step;
    ++steps_this_attempt_;
    ++step;

    MetricTotals m;
    {
      torch::NoGradGuard no_grad;
      const auto [top1, top3] = count_hits(logits.detach(), labels);
      m.top1 = top1;
      m.top3 = top3;
      m.samples = batch->count;
      m.loss_sum = loss.item<double>() * batch->count;
    }
    if (!std::isfinite(m.loss_sum)) {
      throw std::runtime_error(phase + " epoch " + std::to_string(epoch) + " step " +
                               std::to_string(step) + ": the loss is " +
                               std::to_string(m.loss_sum / batch->count) +
                               " (diverged; lower the learning rate)");
    }
    epoch_totals.add(m);
    interval.add(m);
    const bool last = batch->batch_index + 1 == batch->num_batches;
    if (step % options.report_every == 0 || last) {
      const double wait = prefetcher.wait_ms();
      const double secs = seconds_since(interval_start);
      report(phase, epoch, v1::SPLIT_KIND_TRAIN, interval,
             secs > 0 ? static_cast<double>(interval.samples) / secs : 0.0, wait - interval_wait_ms,
             lr, last, step, batch->num_batches);
      interval = {};
      interval_wait_ms = wait;
      interval_start = Clock::now();
    }
    if (options.dist.check_sync_every > 0 &&
        p_.state.global_step % options.dist.check_sync_every == 0) {
      dist::check_module_in_sync(p_.model, p_.tensors, p_.state.global_step);
    }
    if (rank == 0 && (seconds_since(last_progress_) >= options.progress_every_s || last)) {
      last_progress_ = Clock::now();
      ProgressLine line;
      line.phase = phase;
      line.epoch = epoch;
      line.epochs = plan.schedule.epochs;
      line.step = step;
      line.steps = batch->num_batches;
      line.train = epoch_totals;
      line.elapsed_s = seconds_before + elapsed();
      const double this_attempt_s = elapsed();
      line.data_wait = this_attempt_s > 0 ? prefetcher.wait_ms() / 1000.0 / this_attempt_s : -1.0;
      line.images_per_second = line.elapsed_s > 0 ? static_cast<double>(epoch_totals.samples) *
                                                        p_.host.size() / line.elapsed_s
                                                  : 0.0;
      p_.progress.show(format_progress(line));
    }
    p_.faults.after_step(steps_this_attempt_);
    // The last step of an epoch is left to the end of the epoch, which
    // checks after the epoch's checkpoint: that one is worth more than a
    // mid-epoch one.
    if (!last && p_.preemption.agreed(p_.host)) {
      return {epoch_totals, seconds_before + elapsed(), true, step, prefetcher.wait_ms() / 1000.0};
    }
    prefetcher.recycle(std::move(*batch));  // its buffers hold a later batch
  }
  if (cached_head_ != nullptr) {
    cached_head_->share(p_.host, rank == 0);
    cached_head_->set_holds_train();
  }
  return {epoch_totals, seconds_before + elapsed(), false, step, prefetcher.wait_ms() / 1000.0};
}

evaluation::ClassificationCounts EpochLoop::evaluate(const std::string& split,
                                                     const char* split_name,
                                                     const std::string& phase, int epoch,
                                                     PredictionSampler* samples) {
  const TrainOptions& options = p_.options;
  torch::NoGradGuard no_grad;
  p_.model.eval();
  data::PrefetchOptions po;
  po.queue_depth = options.prefetch;
  po.num_classes = options.num_classes;
  po.input = p_.batch_tensors.layout();
  const bool cached = cached_head_ != nullptr && std::string(split_name) == "val";
  v1::StreamShardRequest request = shard_request(split, 0, false);
  request.set_labels_only(cached && cached_head_->holds_val() && samples == nullptr);
  data::ShardPrefetcher prefetcher(p_.client, request, po);
  evaluation::ClassificationCounts counts(options.num_classes);
  const auto start = Clock::now();
  const std::string reading = std::string(split_name) + " split '" + split + "'";
  std::int64_t batches = 0;  // evaluated by this rank: the report's step
  while (auto batch = next_batch(prefetcher, reading)) {
    ++batches;
    const torch::Tensor labels = p_.batch_tensors.labels(*batch);
    torch::Tensor logits;
    {
      models::AutocastScope autocast(bf16(), p_.batch_tensors.device().is_cuda());
      logits =
          (cached
               ? p_.model.head_forward(cached_head_->val_features(*batch, refetch_from(prefetcher)))
               : p_.model.forward(p_.batch_tensors.input(*batch)))
              .to(torch::kFloat32);
    }
    if (samples != nullptr) samples->offer(*batch, logits);
    const torch::Tensor losses =
        torch::nn::functional::cross_entropy(
            logits, labels,
            torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
            .to(torch::kCPU, torch::kFloat64);
    const std::int64_t k = std::min<std::int64_t>(3, logits.size(1));
    const torch::Tensor topk = std::get<1>(logits.topk(k, 1)).to(torch::kCPU);
    const torch::Tensor in_top = topk.eq(labels.to(torch::kCPU).unsqueeze(1)).any(1);
    const auto topk_a = topk.accessor<std::int64_t, 2>();
    const auto in_top_a = in_top.accessor<bool, 1>();
    const auto loss_a = losses.accessor<double, 1>();
    for (int i = 0; i < batch->count; ++i) {
      counts.add(batch->labels[static_cast<std::size_t>(i)], topk_a[i][0], in_top_a[i], loss_a[i]);
    }
    prefetcher.recycle(std::move(*batch));
  }
  const MetricTotals m = totals_of(counts);
  const double secs = seconds_since(start);
  report(phase, epoch, to_split_kind(split_name), m, secs > 0 ? m.samples / secs : 0.0,
         prefetcher.wait_ms(), last_lr_, true, batches, batches);
  // An evaluation shard is the same every pass: this rank has its rows now.
  if (cached) cached_head_->set_holds_val();
  return counts;
}

}  // namespace xfer::trainer::train
