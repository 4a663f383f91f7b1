#include "trainer/train/training_job.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/client/coordinator_client.h"
#include "trainer/data/augment.h"
#include "trainer/data/shard_prefetcher.h"
#include "trainer/dist/communicators.h"
#include "trainer/dist/device.h"
#include "trainer/dist/model_sync.h"
#include "trainer/dist/reducer.h"
#include "trainer/evaluation/classification_counts.h"
#include "trainer/evaluation/evaluation_report.h"
#include "trainer/evaluation/report_files.h"
#include "trainer/evaluation/report_format.h"
#include "trainer/evaluation/report_proto.h"
#include "trainer/models/preprocess.h"
#include "trainer/models/state_dict.h"
#include "trainer/models/transfer_model.h"
#include "trainer/train/checkpoint_codec.h"
#include "trainer/train/collective.h"
#include "trainer/train/progress.h"

namespace xfer::trainer::train {
namespace {

namespace client = coordinator::client;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// SplitMix64's finaliser: a good 64-bit mix, used to derive per-epoch seeds.
std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

struct PhasePlan {
  models::Phase phase;
  PhaseSchedule schedule;
  int first_global_epoch = 0;  // global epoch index of the phase's epoch 1
};

std::vector<PhasePlan> plan_phases(const TrainOptions& o) {
  std::vector<PhasePlan> plan;
  int global = 0;
  for (const auto& [phase, schedule] :
       {std::pair{models::Phase::kFull, o.full}, std::pair{models::Phase::kHead, o.head},
        std::pair{models::Phase::kFinetune, o.finetune}}) {
    plan.push_back({phase, schedule, global});
    global += schedule.epochs;
  }
  return plan;
}

int phase_index(models::Phase phase) {
  switch (phase) {
    case models::Phase::kFull:
      return 0;
    case models::Phase::kHead:
      return 1;
    case models::Phase::kFinetune:
      return 2;
  }
  return 0;
}

v1::SplitKind to_split_kind(const std::string& name) {
  if (name == "val") return v1::SPLIT_KIND_VALIDATION;
  if (name == "test") return v1::SPLIT_KIND_TEST;
  return v1::SPLIT_KIND_TRAIN;
}

// The prefetcher's next batch, its error prefixed with what was being read.
std::optional<data::Batch> next_batch(data::ShardPrefetcher& prefetcher, const std::string& what) {
  try {
    return prefetcher.next();
  } catch (const std::exception& e) {
    throw std::runtime_error(what + ": " + e.what());
  }
}

class TrainingJob {
 public:
  TrainingJob(const TrainOptions& options, dist::World& world, JobProgress& progress)
      : options_(options),
        world_(world),
        progress_(progress),
        device_choice_(dist::choose_device(world, options.dist.device)),
        plan_(plan_phases(options)) {}

  void run();

 private:
  // ---- start
  void connect();
  void start_run();
  void build_model();
  std::pair<std::string, std::vector<char>> fetch_checkpoint(const std::string& which,
                                                             const std::string& phase);
  // ---- phases and epochs
  void run_phase(std::size_t index, int first_epoch, bool resume_optimizer);
  void make_optimizer(double lr);
  MetricTotals train_epoch(const PhasePlan& plan, int epoch);
  evaluation::ClassificationCounts evaluate(const std::string& split, const char* split_name,
                                            const std::string& phase, int epoch);
  void report(const std::string& phase, int epoch, v1::SplitKind split, const MetricTotals& m,
              double images_per_second, double wait_ms, double lr, bool end_of_epoch);
  void end_of_epoch(const PhasePlan& plan, int epoch, const MetricTotals& train_local,
                    double seconds);
  void restore_best_head();
  // The test split with the current weights, summed over ranks; its metrics
  // are reported under the phase and epoch just finished.
  evaluation::ClassificationCounts evaluate_test();
  void finish();

  torch::Tensor to_input(const data::Batch& batch) const;
  torch::Tensor to_labels(const data::Batch& batch) const;
  v1::StreamShardRequest shard_request(const std::string& split, int global_epoch,
                                       bool train) const;
  std::string where() const { return world_.where(); }

  const TrainOptions& options_;
  dist::World& world_;
  JobProgress& progress_;
  const dist::DeviceChoice device_choice_;
  const std::vector<PhasePlan> plan_;

  torch::Device device_{torch::kCPU};
  std::unique_ptr<dist::Communicators> comms_;
  std::unique_ptr<client::CoordinatorClient> client_;
  data::AugmentSpec augment_;
  models::ModelMetadata metadata_;
  models::TransferModel model_{nullptr};
  std::unique_ptr<dist::Reducer> reducer_;
  std::unique_ptr<torch::optim::Adam> optimizer_;

  TrainingState state_;
  std::optional<DecodedCheckpoint> resumed_;
  std::string last_checkpoint_id_;
  double best_val_loss_in_phase_ = std::numeric_limits<double>::infinity();
  double last_lr_ = 0.0;
  int epochs_this_attempt_ = 0;
  std::int64_t steps_this_attempt_ = 0;
  Clock::time_point last_progress_ = Clock::now();
};

void TrainingJob::connect() {
  client::ClientOptions o;
  o.address = options_.coordinator;
  o.token_file = options_.token_file;
  o.tls_ca_file = options_.tls_ca;
  o.reconnect_window =
      std::chrono::milliseconds(static_cast<std::int64_t>(options_.coordinator_retry_s * 1000.0));
  client_ = std::make_unique<client::CoordinatorClient>(std::move(o));
}

void TrainingJob::start_run() {
  std::vector<std::string> labels;
  on_rank0(comms_->host(), "starting the run at the coordinator " + options_.coordinator, [&] {
    std::optional<v1::Run> existing;
    try {
      existing = client_->get_run(options_.run_name);
    } catch (const client::RpcError& e) {
      if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
    }
    if (existing && options_.resume.empty()) {
      throw std::runtime_error("run '" + options_.run_name + "' exists already (attempt " +
                               std::to_string(existing->attempt()) + ", " +
                               v1::RunState_Name(existing->state()) +
                               "); pass --resume latest to continue it, or choose another "
                               "--run-name");
    }
    if (!existing && !options_.resume.empty()) {
      throw std::runtime_error("--resume " + options_.resume + ": the coordinator has no run '" +
                               options_.run_name + "' to resume");
    }
    if (existing && existing->dataset() != options_.dataset) {
      throw std::runtime_error("--dataset " + options_.dataset + ": run '" + options_.run_name +
                               "' was started on dataset '" + existing->dataset() + "'");
    }
    v1::StartRunRequest request;
    request.set_name(options_.run_name);
    request.set_dataset(options_.dataset);
    request.set_world_size(world_.size());
    request.set_config_json(to_json(options_));
    const v1::Run run = client_->start_run(request);
    const v1::DatasetInfo info = client_->get_dataset_info(options_.dataset);
    for (int i = 0; i < options_.num_classes; ++i) {
      labels.push_back(i < info.fine_label_names_size() ? info.fine_label_names(i)
                                                        : "class_" + std::to_string(i));
    }
    spdlog::info("run {} attempt {} on dataset {} with {} ranks ({})", run.name(), run.attempt(),
                 run.dataset(), world_.size(), device_choice_.describe());
    fs::create_directories(options_.run_dir);
  });
  progress_.run_started = true;  // on every rank: rank 0's start succeeded
  metadata_.arch = options_.arch;
  metadata_.num_classes = options_.num_classes;
  metadata_.image_size = options_.image_size;
  metadata_.labels = std::move(labels);  // rank 0 only; the others never write model files
  metadata_.base_file = options_.base;
}

std::pair<std::string, std::vector<char>> TrainingJob::fetch_checkpoint(const std::string& which,
                                                                        const std::string& phase) {
  std::string id;
  std::vector<char> bytes;
  on_rank0(comms_->host(), "fetching checkpoint '" + which + "'", [&] {
    v1::CheckpointInfo info;
    if (which == "latest") {
      info = client_->latest_checkpoint(options_.run_name, phase);
    } else if (which == "best") {
      info = client_->best_checkpoint(options_.run_name, phase);
    } else {
      info.set_id(which);
    }
    const fs::path dir = fs::path(options_.run_dir) / "checkpoints";
    fs::create_directories(dir);
    const fs::path file = dir / (info.id() + ".pt");
    const auto result = client_->get_checkpoint(info.id(), file, info.sha256());
    if (result.meta && result.meta->run() != options_.run_name) {
      throw std::runtime_error("checkpoint " + info.id() + " belongs to run '" +
                               result.meta->run() + "', not '" + options_.run_name + "'");
    }
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw std::runtime_error("cannot read " + file.string());
    id = info.id();
    spdlog::info("checkpoint {} ({} bytes, SHA-256 verified) from the coordinator", id,
                 bytes.size());
  });
  id = broadcast_string(comms_->host(), id, "checkpoint id");
  bytes = broadcast_bytes(comms_->host(), bytes, "checkpoint " + id);
  return {id, std::move(bytes)};
}

void TrainingJob::build_model() {
  models::TransferModelOptions mo;
  mo.arch = options_.arch;
  mo.base_path = options_.base;
  mo.num_classes = options_.num_classes;
  mo.dropout = options_.dropout;
  mo.dry_run_image_size = options_.image_size;
  mo.phase = models::Phase::kHead;
  torch::manual_seed(options_.seed);
  model_ = models::TransferModel(mo);

  if (!options_.resume.empty()) {
    auto [id, bytes] = fetch_checkpoint(options_.resume, "");
    const std::string source = "checkpoint " + id;
    DecodedCheckpoint decoded = decode_checkpoint(bytes, source);
    if (!decoded.has_training_state) {
      throw SharedError(source + " holds no training state: it cannot be resumed");
    }
    models::load_state_dict(*model_, decoded.weights.state_dict, source);
    state_ = decoded.state;
    last_checkpoint_id_ = id;
    if (options_.resume == "best" || state_.phase != "finetune") {
      // Nothing to do: the phase logic below decides what follows.
    }
    if (state_.world_size != world_.size() || state_.batch_size != options_.batch_size) {
      spdlog::warn(
          "resuming with {} ranks x batch {} (global batch {}) where the checkpoint was taken "
          "with {} x {} (global batch {}): the remaining epochs are cut into different steps",
          world_.size(), options_.batch_size, world_.size() * options_.batch_size,
          state_.world_size, state_.batch_size, state_.world_size * state_.batch_size);
    }
    resumed_ = std::move(decoded);
    if (world_.rank() == 0) {
      spdlog::info("resuming after {} epoch {} (step {}, val_loss {:.4f})", state_.phase,
                   state_.epochs_done, state_.global_step, state_.val_loss);
    }
  } else if (!options_.weights.empty()) {
    on_rank0(comms_->host(), "loading --weights " + options_.weights, [&] {
      const models::WeightsFile file = models::read_weights_file(options_.weights);
      // Transfer learning: the base comes from the file, the head starts
      // fresh (its classes are the new task's).
      models::StateDict base;
      for (const auto& item : file.state_dict) {
        if (item.key().rfind("classifier.", 0) != 0) base.insert(item.key(), item.value());
      }
      const auto result = models::load_state_dict(*model_, base, options_.weights);
      spdlog::info("loaded {} base tensors from {}; the head starts fresh", result.tensors_loaded,
                   options_.weights);
    });
  }
  model_->to(device_);
  dist::broadcast_module_state(*model_, comms_->tensors());
}

void TrainingJob::make_optimizer(double lr) {
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model_->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  // Keras' Adam epsilon (1e-7); betas are the same in both libraries.
  optimizer_ =
      std::make_unique<torch::optim::Adam>(trainable, torch::optim::AdamOptions(lr).eps(1e-7));
}

v1::StreamShardRequest TrainingJob::shard_request(const std::string& split, int global_epoch,
                                                  bool train) const {
  v1::StreamShardRequest r;
  r.set_run(options_.run_name);
  r.set_split(split);
  r.set_epoch(train ? global_epoch : 0);
  r.set_rank(world_.rank());
  r.set_world_size(world_.size());
  r.set_batch_size(train ? options_.batch_size : options_.eval_batch_size);
  r.set_shuffle(train);
  r.set_seed(options_.seed);
  r.set_kind(train ? v1::SHARD_KIND_TRAIN : v1::SHARD_KIND_EVAL);
  return r;
}

torch::Tensor TrainingJob::to_input(const data::Batch& batch) const {
  // from_blob borrows the batch's memory; preprocess_imagenet returns a new
  // tensor (normalising always writes a fresh one), so nothing outlives it.
  const torch::Tensor images = torch::from_blob(const_cast<float*>(batch.images.data()),
                                                {batch.count, 3, 32, 32}, torch::kFloat32);
  return models::preprocess_imagenet(images, options_.image_size).to(device_);
}

torch::Tensor TrainingJob::to_labels(const data::Batch& batch) const {
  return torch::from_blob(const_cast<std::int64_t*>(batch.labels.data()), {batch.count},
                          torch::kInt64)
      .clone()
      .to(device_);
}

// Top-1 and top-3 hits of one batch.
std::pair<std::int64_t, std::int64_t> count_hits(const torch::Tensor& logits,
                                                 const torch::Tensor& labels) {
  const std::int64_t k = std::min<std::int64_t>(3, logits.size(1));
  const torch::Tensor topk = std::get<1>(logits.topk(k, 1));
  const torch::Tensor hits = topk.eq(labels.unsqueeze(1));
  const std::int64_t top1 = hits.select(1, 0).sum().item<std::int64_t>();
  const std::int64_t top3 = hits.any(1).sum().item<std::int64_t>();
  return {top1, top3};
}

void TrainingJob::report(const std::string& phase, int epoch, v1::SplitKind split,
                         const MetricTotals& m, double images_per_second, double wait_ms, double lr,
                         bool end_of_epoch) {
  v1::MetricsReport r;
  r.set_run(options_.run_name);
  r.set_rank(world_.rank());
  r.set_phase(phase);
  r.set_epoch(epoch);
  r.set_step(state_.global_step);
  r.set_split(split);
  r.set_loss_sum(m.loss_sum);
  r.set_correct_top1(m.top1);
  r.set_correct_top3(m.top3);
  r.set_samples(m.samples);
  r.set_images_per_second(images_per_second);
  r.set_data_wait_ms(wait_ms);
  r.set_learning_rate(lr);
  r.set_end_of_epoch(end_of_epoch);
  client_->report(r);
}

MetricTotals TrainingJob::train_epoch(const PhasePlan& plan, int epoch) {
  const std::string phase = models::phase_name(plan.phase);
  const int global_epoch = plan.first_global_epoch + epoch - 1;
  model_->train();
  // Dropout masks: a pure function of (seed, epoch, rank), so an epoch re-run
  // after a resume draws what the crashed attempt drew.
  torch::manual_seed(
      mix64(options_.seed ^ mix64(static_cast<std::uint64_t>(global_epoch) * 1000003ULL +
                                  static_cast<std::uint64_t>(world_.rank()))));
  data::PrefetchOptions po;
  po.queue_depth = options_.prefetch;
  po.augment = augment_;
  po.num_classes = options_.num_classes;
  data::ShardPrefetcher prefetcher(*client_,
                                   shard_request(options_.train_split, global_epoch, true), po);

  MetricTotals epoch_totals;
  MetricTotals interval;
  double interval_wait_ms = 0.0;
  const auto start = Clock::now();
  auto interval_start = start;
  std::int64_t step = 0;
  last_progress_ = start;
  const std::string reading =
      phase + " epoch " + std::to_string(epoch) + ", train split '" + options_.train_split + "'";
  while (auto batch = next_batch(prefetcher, reading)) {
    const torch::Tensor input = to_input(*batch);
    const torch::Tensor labels = to_labels(*batch);
    const double lr =
        plan.schedule.lr / (1.0 + plan.schedule.decay * static_cast<double>(state_.phase_step));
    for (auto& group : optimizer_->param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    }
    last_lr_ = lr;
    optimizer_->zero_grad();
    reducer_->prepare_for_backward();
    const torch::Tensor logits = model_->forward(input);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, labels);
    loss.backward();
    reducer_->finalize_backward();
    optimizer_->step();
    ++state_.phase_step;
    ++state_.global_step;
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
    if (step % options_.report_every == 0 || last) {
      const double wait = prefetcher.wait_ms();
      const double secs = seconds_since(interval_start);
      report(phase, epoch, v1::SPLIT_KIND_TRAIN, interval,
             secs > 0 ? static_cast<double>(interval.samples) / secs : 0.0, wait - interval_wait_ms,
             lr, last);
      interval = {};
      interval_wait_ms = wait;
      interval_start = Clock::now();
    }
    if (options_.dist.check_sync_every > 0 &&
        state_.global_step % options_.dist.check_sync_every == 0) {
      dist::check_module_in_sync(*model_, comms_->tensors(), state_.global_step);
    }
    if (world_.rank() == 0 &&
        (seconds_since(last_progress_) >= options_.progress_every_s || last)) {
      last_progress_ = Clock::now();
      ProgressLine line;
      line.phase = phase;
      line.epoch = epoch;
      line.epochs = plan.schedule.epochs;
      line.step = step;
      line.steps = batch->num_batches;
      line.train = epoch_totals;
      line.elapsed_s = seconds_since(start);
      line.images_per_second = line.elapsed_s > 0 ? static_cast<double>(epoch_totals.samples) *
                                                        world_.size() / line.elapsed_s
                                                  : 0.0;
      spdlog::info("{}", format_progress(line));
    }
  }
  return epoch_totals;
}

evaluation::ClassificationCounts TrainingJob::evaluate(const std::string& split,
                                                       const char* split_name,
                                                       const std::string& phase, int epoch) {
  torch::NoGradGuard no_grad;
  model_->eval();
  data::PrefetchOptions po;
  po.queue_depth = options_.prefetch;
  po.num_classes = options_.num_classes;
  data::ShardPrefetcher prefetcher(*client_, shard_request(split, 0, false), po);
  evaluation::ClassificationCounts counts(options_.num_classes);
  const auto start = Clock::now();
  const std::string reading = std::string(split_name) + " split '" + split + "'";
  while (auto batch = next_batch(prefetcher, reading)) {
    const torch::Tensor labels = to_labels(*batch);
    const torch::Tensor logits = model_->forward(to_input(*batch));
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
  }
  MetricTotals m;
  m.loss_sum = counts.loss_sum;
  m.top1 = counts.top1();
  m.top3 = counts.top3;
  m.samples = counts.samples();
  const double secs = seconds_since(start);
  report(phase, epoch, to_split_kind(split_name), m, secs > 0 ? m.samples / secs : 0.0,
         prefetcher.wait_ms(), last_lr_, true);
  return counts;
}

// Sums one rank's evaluation counts over all ranks, in place.
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

void TrainingJob::end_of_epoch(const PhasePlan& plan, int epoch, const MetricTotals& train_local,
                               double seconds) {
  const std::string phase = models::phase_name(plan.phase);
  // Every rank's train counts, summed: the numbers the coordinator
  // aggregates from the reports.
  std::vector<double> train{train_local.loss_sum, static_cast<double>(train_local.top1),
                            static_cast<double>(train_local.top3),
                            static_cast<double>(train_local.samples)};
  sum_over_ranks(comms_->host(), train, phase + " epoch train totals");
  MetricTotals train_all;
  train_all.loss_sum = train[0];
  train_all.top1 = static_cast<std::int64_t>(train[1]);
  train_all.top3 = static_cast<std::int64_t>(train[2]);
  train_all.samples = static_cast<std::int64_t>(train[3]);

  evaluation::ClassificationCounts val = evaluate(options_.val_split, "val", phase, epoch);
  sum_counts(comms_->host(), val, phase + " epoch validation");
  const MetricTotals val_all = totals_of(val);

  state_.phase = phase;
  state_.epochs_done = epoch;
  state_.global_epoch = plan.first_global_epoch + epoch;
  state_.val_loss = val_all.loss();
  state_.val_top1 = val_all.acc();
  state_.world_size = world_.size();
  state_.batch_size = options_.batch_size;
  state_.seed = options_.seed;

  std::string checkpoint_id;
  bool best = false;
  on_rank0(comms_->host(), "storing the checkpoint of " + phase + " epoch " + std::to_string(epoch),
           [&] {
             const std::vector<char> bytes =
                 encode_checkpoint(metadata_, *model_, *optimizer_, state_);
             v1::CheckpointMeta meta;
             meta.set_run(options_.run_name);
             meta.set_phase(phase);
             // The store orders "latest" by (epoch, step): the epoch count over all
             // phases keeps a fine-tuning checkpoint after every head one.
             meta.set_epoch(state_.global_epoch);
             meta.set_step(state_.global_step);
             meta.set_metric_name("val_loss");
             meta.set_metric_value(state_.val_loss);
             meta.set_direction(v1::METRIC_DIRECTION_MINIMIZE);
             const v1::CheckpointInfo info =
                 client_->put_checkpoint_bytes(meta, std::string_view(bytes.data(), bytes.size()));
             checkpoint_id = info.id();
             best = state_.val_loss < best_val_loss_in_phase_;
             if (best) best_val_loss_in_phase_ = state_.val_loss;

             EpochSummaryLine line;
             line.phase = phase;
             line.epoch = epoch;
             line.epochs = plan.schedule.epochs;
             line.steps = train_local.samples / std::max(1, options_.batch_size);
             line.seconds = seconds;
             line.images_per_second = seconds > 0 ? train_all.samples / seconds : 0.0;
             line.train = train_all;
             line.val = val_all;
             line.learning_rate = last_lr_;
             line.checkpoint_id = checkpoint_id;
             line.best = best;
             spdlog::info("{}", format_epoch_summary(line));

             const fs::path csv = fs::path(options_.run_dir) / "epochs.csv";
             const bool fresh = !fs::exists(csv);
             std::ofstream out(csv, std::ios::app);
             if (fresh) {
               out << "phase,epoch,step,loss,acc,top3,val_loss,val_acc,val_top3,lr,seconds,"
                      "checkpoint\n";
             }
             out << phase << ',' << epoch << ',' << state_.global_step << ','
                 << fmt::format("{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.6g},{:.3f}",
                                train_all.loss(), train_all.acc(), train_all.acc3(), val_all.loss(),
                                val_all.acc(), val_all.acc3(), last_lr_, seconds)
                 << ',' << checkpoint_id << '\n';
             if (!out) throw std::runtime_error("cannot append to " + csv.string());
           });
  last_checkpoint_id_ = broadcast_string(comms_->host(), checkpoint_id, "checkpoint id");
  ++epochs_this_attempt_;
  if (options_.fail_after_epochs > 0 && epochs_this_attempt_ == options_.fail_after_epochs) {
    dist::abort_job("injected failure: --fail-after-epochs " +
                        std::to_string(options_.fail_after_epochs) + " reached after " + phase +
                        " epoch " + std::to_string(epoch),
                    3);
  }
}

void TrainingJob::restore_best_head() {
  auto [id, bytes] = fetch_checkpoint("best", "head");
  const std::string source = "checkpoint " + id;
  const DecodedCheckpoint decoded = decode_checkpoint(bytes, source);
  models::load_state_dict(*model_, decoded.weights.state_dict, source);
  if (world_.rank() == 0) {
    spdlog::info(
        "restored the best head checkpoint {} (head epoch {}, val_loss {:.4f}) before "
        "fine-tuning",
        id, decoded.state.epochs_done, decoded.state.val_loss);
  }
}

void TrainingJob::run_phase(std::size_t index, int first_epoch, bool resume_optimizer) {
  const PhasePlan& plan = plan_[index];
  const std::string phase = models::phase_name(plan.phase);
  model_->set_phase(plan.phase);
  make_optimizer(plan.schedule.lr);
  if (resume_optimizer) {
    restore_optimizer(*optimizer_, *model_, resumed_->optimizer_state,
                      "checkpoint " + last_checkpoint_id_);
  } else {
    state_.phase_step = 0;
  }
  if (first_epoch == 1) best_val_loss_in_phase_ = std::numeric_limits<double>::infinity();
  if (world_.rank() == 0) {
    const auto counts = model_->parameter_counts();
    spdlog::info(
        "phase {}: epochs {}..{} of {}, lr {:g}, decay {:g}; {} trainable / {} frozen "
        "parameters",
        phase, first_epoch, plan.schedule.epochs, plan.schedule.epochs, plan.schedule.lr,
        plan.schedule.decay, counts.trainable, counts.frozen);
  }
  for (int epoch = first_epoch; epoch <= plan.schedule.epochs; ++epoch) {
    const auto start = Clock::now();
    const MetricTotals train = train_epoch(plan, epoch);
    end_of_epoch(plan, epoch, train, seconds_since(start));
  }
}

evaluation::ClassificationCounts TrainingJob::evaluate_test() {
  evaluation::ClassificationCounts test =
      evaluate(options_.test_split, "test", state_.phase.empty() ? "head" : state_.phase,
               state_.epochs_done);
  sum_counts(comms_->host(), test, "test evaluation");
  return test;
}

void TrainingJob::finish() {
  const std::string last_phase = state_.phase.empty() ? "head" : state_.phase;
  evaluation::ClassificationCounts test = evaluate_test();
  on_rank0(comms_->host(), "storing the test report", [&] {
    const evaluation::EvaluationReport report =
        evaluation::summarize(test, metadata_.labels, options_.test_split, last_checkpoint_id_);
    client_->put_report(evaluation::to_proto(report, options_.run_name));
    evaluation::write_report_files(report, options_.run_dir);
    models::write_file_atomically(encode_checkpoint(metadata_, *model_, *optimizer_, state_),
                                  (fs::path(options_.run_dir) / "model.pt").string());
    spdlog::info(
        "test ({}, {} samples, after {} epoch {}): loss {:.4f} - acc {:.4f} - top3 "
        "{:.4f} - macro F1 {:.4f}",
        options_.test_split, report.samples, last_phase, state_.epochs_done, report.loss,
        report.top1, report.top3, report.macro_f1);
    for (std::istringstream lines(evaluation::format_summary(report)); !lines.eof();) {
      std::string line;
      std::getline(lines, line);
      if (!line.empty()) spdlog::info("{}", line);
    }
    client_->end_run(options_.run_name, v1::RUN_STATE_COMPLETED,
                     fmt::format("{} optimizer steps; test top-1 {:.4f}, top-3 {:.4f}",
                                 state_.global_step, report.top1, report.top3));
    spdlog::info("finished: {} optimizer steps in total ({} this attempt)", state_.global_step,
                 steps_this_attempt_);
    spdlog::info(
        "model: {}/model.pt; report: {}/report.json (also: coordctl report {}); "
        "checkpoints: coordctl checkpoints list {}",
        options_.run_dir, options_.run_dir, options_.run_name, options_.run_name);
  });
}

void TrainingJob::run() {
  if (device_choice_.cuda) device_ = torch::Device(torch::kCUDA, device_choice_.cuda_index);
  dist::apply_device(device_choice_);
  comms_ = std::make_unique<dist::Communicators>(world_, device_choice_, options_.dist.comm);
  try {
    augment_ = data::parse_augment(options_.augment);
  } catch (const std::exception& e) {
    throw SharedError(std::string("--augment: ") + e.what());
  }
  connect();
  start_run();
  build_model();

  // Where to start: after a resume, the epoch after the checkpoint's, or the
  // next phase's first epoch when the checkpoint ended its phase.
  std::size_t first_phase = 0;
  int first_epoch = 1;
  bool resume_optimizer = false;
  if (resumed_) {
    const std::size_t done_phase =
        static_cast<std::size_t>(phase_index(models::parse_phase(state_.phase)));
    if (state_.epochs_done < plan_[done_phase].schedule.epochs) {
      first_phase = done_phase;
      first_epoch = state_.epochs_done + 1;
      resume_optimizer = true;
    } else {
      first_phase = done_phase + 1;
    }
  }

  // The Reducer buckets the trainable parameters of the first phase run;
  // prepare_for_backward rebuilds them when a phase changes the set.
  std::size_t phase = first_phase;
  while (phase < plan_.size() && plan_[phase].schedule.epochs == 0) ++phase;
  model_->set_phase(phase < plan_.size() ? plan_[phase].phase : models::Phase::kHead);
  reducer_ = std::make_unique<dist::Reducer>(*model_, comms_->tensors(), options_.dist.reducer);

  for (; phase < plan_.size(); ++phase) {
    const PhasePlan& plan = plan_[phase];
    if (plan.schedule.epochs == 0) continue;
    if (plan.phase == models::Phase::kFinetune && plan_[1].schedule.epochs > 0 &&
        !resume_optimizer) {
      restore_best_head();
    }
    run_phase(phase, first_epoch, resume_optimizer);
    first_epoch = 1;
    resume_optimizer = false;
    bool later_phase = false;
    for (std::size_t p = phase + 1; p < plan_.size(); ++p)
      later_phase |= plan_[p].schedule.epochs > 0;
    // The seed prints test accuracy after each step of the recipe; the last
    // phase's evaluation is the run's report (finish()).
    if (later_phase) {
      evaluation::ClassificationCounts test = evaluate_test();
      if (world_.rank() == 0) {
        const MetricTotals m = totals_of(test);
        spdlog::info("after {}: test loss {:.4f} - acc {:.4f} - top3 {:.4f} ({} samples)",
                     models::phase_name(plan.phase), m.loss(), m.acc(), m.acc3(), m.samples);
      }
    }
  }
  if (!optimizer_) make_optimizer(1e-3);  // a resumed, finished run: model.pt still needs one
  finish();
}

}  // namespace

void run_training_job(const TrainOptions& options, dist::World& world, JobProgress& progress) {
  TrainingJob job(options, world, progress);
  job.run();
}

}  // namespace xfer::trainer::train
