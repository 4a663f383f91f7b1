// The training job's recipe: start (or resume) the run, build the model,
// run the phases in order, finish. Each step's work is in a part of its own
// (training_job.h lists them); this file only puts them in order.
#include "trainer/train/training_job.h"

#include <spdlog/spdlog.h>
#include <torch/optim/adam.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/client/coordinator_client.h"
#include "trainer/data/augment.h"
#include "trainer/dist/communicators.h"
#include "trainer/dist/device.h"
#include "trainer/dist/model_sync.h"
#include "trainer/dist/reducer.h"
#include "trainer/evaluation/evaluation_report.h"
#include "trainer/evaluation/report_files.h"
#include "trainer/evaluation/report_format.h"
#include "trainer/evaluation/report_proto.h"
#include "trainer/models/conv_bn_activation.h"
#include "trainer/models/state_dict.h"
#include "trainer/models/transfer_model.h"
#include "trainer/train/batch_tensors.h"
#include "trainer/train/cached_head.h"
#include "trainer/train/checkpoint_codec.h"
#include "trainer/train/collective.h"
#include "trainer/train/epoch_end.h"
#include "trainer/train/epoch_loop.h"
#include "trainer/train/fault_injector.h"
#include "trainer/train/feature_cache.h"
#include "trainer/train/fused_adam.h"
#include "trainer/train/heartbeat.h"
#include "trainer/train/job_coordinator.h"
#include "trainer/train/phase_plan.h"
#include "trainer/train/prediction_samples.h"
#include "trainer/train/preemption.h"
#include "trainer/train/progress.h"
#include "trainer/train/run_checkpoints.h"
#include "trainer/train/run_lifecycle.h"

namespace xfer::trainer::train {
namespace {

namespace client = coordinator::client;
namespace fs = std::filesystem;

class TrainingJob {
 public:
  TrainingJob(const TrainOptions& options, dist::World& world, JobProgress& progress)
      : options_(options),
        world_(world),
        progress_(progress),
        device_choice_(dist::choose_device(world, options.dist.device)),
        plan_(plan_phases(options)) {}

  JobOutcome run();

 private:
  // ---- start
  void set_up_devices();
  void connect();
  // False when there is nothing to do (--resume auto, the run COMPLETED).
  bool start_run();
  void build_model();
  // The resumed checkpoint's weights and state, or --weights' base, then
  // the same weights on every rank.
  void load_starting_weights();
  void resume_from_checkpoint();
  void load_base_weights();
  // The Reducer buckets the trainable parameters of the first phase run;
  // prepare_for_backward rebuilds them when a phase changes the set.
  void make_reducer(std::size_t first_phase);
  void make_epoch_parts();
  // ---- phases
  // False when the job was preempted during the phase.
  bool run_phase(std::size_t index, int first_epoch, bool resume_optimizer);
  void make_optimizer(double lr);
  std::unique_ptr<CachedHead> make_cached_head();
  void restore_best_head();
  // Stores a checkpoint of where the preempted epoch stopped and marks the
  // run PREEMPTED. Collective.
  void preempt_mid_epoch(const PhasePlan& plan, int epoch, const EpochResult& result);
  // After an epoch's checkpoint: marks the run PREEMPTED (the checkpoint
  // just stored is where it resumes).
  void preempt_at_boundary(const PhasePlan& plan, int epoch);
  void mark_preempted(const std::string& where);
  // ---- end
  // The test split with the current weights, summed over ranks; its metrics
  // are reported under the phase and epoch just finished.
  evaluation::ClassificationCounts evaluate_test(PredictionSampler* samples = nullptr);
  void log_test_after_phase(const PhasePlan& plan);
  void finish();

  std::string last_phase() const { return state_.phase.empty() ? "head" : state_.phase; }
  torch::MemoryFormat memory_format() const {
    return options_.memory_format == "nchw" ? torch::MemoryFormat::Contiguous
                                            : torch::MemoryFormat::ChannelsLast;
  }

  const TrainOptions& options_;
  dist::World& world_;
  JobProgress& progress_;
  const dist::DeviceChoice device_choice_;
  const std::vector<PhasePlan> plan_;

  torch::Device device_{torch::kCPU};
  std::unique_ptr<BatchTensors> batch_tensors_;
  std::unique_ptr<dist::Communicators> comms_;
  std::unique_ptr<client::CoordinatorClient> client_;
  std::unique_ptr<JobCoordinator> coordinator_;
  std::unique_ptr<RunCheckpoints> checkpoints_;
  // The run's attempt StartRun returned (every rank), and this rank's
  // heartbeats (heartbeat.h; after client_: stopped before it goes).
  int attempt_ = 0;
  std::unique_ptr<HeartbeatSender> heartbeat_;
  data::AugmentSpec augment_;
  HeadCachePlan head_cache_;
  models::ModelMetadata metadata_;
  models::TransferModel model_{nullptr};
  std::unique_ptr<dist::Reducer> reducer_;
  std::unique_ptr<torch::optim::Adam> optimizer_;
  std::unique_ptr<FaultInjector> faults_;
  std::unique_ptr<EpochLoop> loop_;
  std::unique_ptr<EpochEnd> epoch_end_;

  TrainingState state_;
  // --resume as decided at start (run_lifecycle.h's RunStart::resume).
  std::string resume_;
  std::optional<DecodedCheckpoint> resumed_;
  PreemptionWatch preemption_;
  std::string last_checkpoint_id_;
  int epochs_this_attempt_ = 0;
  // Rank 0's progress line, in place on a terminal (--progress).
  ProgressPrinter progress_printer_ = stderr_progress_printer(options_.progress);
};

void TrainingJob::set_up_devices() {
  if (device_choice_.cuda) device_ = torch::Device(torch::kCUDA, device_choice_.cuda_index);
  dist::apply_device(device_choice_);
  comms_ = std::make_unique<dist::Communicators>(world_, device_choice_, options_.dist.comm);
  batch_tensors_ = std::make_unique<BatchTensors>(device_, memory_format(), options_.image_size);
  faults_ = make_fault_injector(
      options_, world_.rank(), world_.size(),
      [](const std::string& message, int exit_code) { dist::abort_job(message, exit_code); });
}

void TrainingJob::connect() {
  client::ClientOptions o;
  o.address = options_.coordinator;
  o.token_file = options_.token_file;
  o.tls_ca_file = options_.tls_ca;
  o.reconnect_window =
      std::chrono::milliseconds(static_cast<std::int64_t>(options_.coordinator_retry_s * 1000.0));
  client_ = std::make_unique<client::CoordinatorClient>(std::move(o));
  coordinator_ = std::make_unique<ClientJobCoordinator>(*client_);
  checkpoints_ = std::make_unique<RunCheckpoints>(*coordinator_, comms_->host(), options_.run_name,
                                                  options_.run_dir);
}

bool TrainingJob::start_run() {
  RunStart start = train::start_run(*coordinator_, comms_->host(), options_, world_.size(),
                                    device_choice_.describe());
  attempt_ = start.attempt;
  if (start.already_completed) return false;
  resume_ = start.resume;
  progress_.run_started = true;  // on every rank: rank 0's start succeeded
  metadata_.arch = options_.arch;
  metadata_.num_classes = options_.num_classes;
  metadata_.image_size = options_.image_size;
  metadata_.labels = std::move(start.labels);  // rank 0 only; the others never write model files
  metadata_.base_file = options_.base;
  return true;
}

void TrainingJob::build_model() {
  models::TransferModelOptions mo;
  mo.arch = options_.arch;
  mo.base_path = options_.base;
  mo.num_classes = options_.num_classes;
  mo.dropout = options_.dropout;
  mo.dry_run_image_size = options_.image_size;
  mo.phase = models::Phase::kHead;
  mo.fold_frozen_batch_norm = options_.kernels.fold_frozen_batch_norm;
  mo.counter_dropout = options_.kernels.counter_dropout;
  torch::manual_seed(options_.seed);
  model_ = models::TransferModel(mo);
  if (!options_.kernels.fused_batch_norm_silu) {
    models::set_fuse_train_batch_norm_silu(*model_, false);
  }
  if (!options_.kernels.direct_depthwise) models::set_direct_depthwise_max_pixels(*model_, 0);
  if (!(options_.kernels == KernelSwitches{}) && world_.rank() == 0) {
    spdlog::info("--disable-kernels: {} switched off (LibTorch's own operations run instead)",
                 disabled_kernels_text(options_.kernels));
  }
}

void TrainingJob::load_starting_weights() {
  if (!resume_.empty()) {
    resume_from_checkpoint();
  } else if (!options_.weights.empty()) {
    load_base_weights();
  }
  model_->set_memory_format(memory_format());
  model_->to(device_);
  dist::broadcast_module_state(*model_, comms_->tensors());
}

void TrainingJob::resume_from_checkpoint() {
  FetchedCheckpoint fetched = checkpoints_->fetch(resume_, "", CheckpointUse::kResume);
  const std::string source = "checkpoint " + fetched.id;
  DecodedCheckpoint decoded = take_decoded(fetched);
  fetched.bytes = {};
  if (!decoded.has_training_state) {
    throw SharedError(source + " holds no training state: it cannot be resumed");
  }
  models::load_state_dict(*model_, decoded.weights.state_dict, source);
  state_ = decoded.state;
  last_checkpoint_id_ = fetched.id;
  check_resumable(state_, world_.size(), options_.batch_size, world_.rank(), source,
                  options_.run_name);
  resumed_ = std::move(decoded);
}

void TrainingJob::load_base_weights() {
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

void TrainingJob::make_reducer(std::size_t first_phase) {
  std::size_t phase = first_phase;
  while (phase < plan_.size() && plan_[phase].schedule.epochs == 0) ++phase;
  model_->set_phase(phase < plan_.size() ? plan_[phase].phase : models::Phase::kHead);
  reducer_ = std::make_unique<dist::Reducer>(*model_, comms_->tensors(), options_.dist.reducer);
}

void TrainingJob::make_epoch_parts() {
  loop_ = std::make_unique<EpochLoop>(
      EpochLoopParts{options_, comms_->host(), comms_->tensors(), *client_, *coordinator_, *model_,
                     *reducer_, *batch_tensors_, preemption_, *faults_, progress_printer_, state_});
  // A resumed checkpoint's last step: reports re-sent for its epoch (a
  // finished run's test report) repeat its learning rate.
  if (resumed_) loop_->set_last_lr(learning_rate_at(plan_, state_));
  epoch_end_ =
      std::make_unique<EpochEnd>(EpochEndParts{options_, comms_->host(), *checkpoints_, *loop_,
                                               *model_, metadata_, progress_printer_, state_});
}

void TrainingJob::make_optimizer(double lr) {
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model_->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  optimizer_ = make_adam(trainable, lr, options_.adam_eps);
}

std::unique_ptr<CachedHead> TrainingJob::make_cached_head() {
  const fs::path folder =
      options_.cache_dir.empty() ? fs::temp_directory_path() : fs::path(options_.cache_dir);
  const fs::path spill =
      folder / fmt::format("xfer-features-rank{}-pid{}.bin", world_.rank(), ::getpid());
  auto cache =
      std::make_unique<FeatureCache>(model_->feature_channels(), options_.cache_mb << 20, spill);
  if (world_.rank() == 0) {
    spdlog::info(
        "head phase: training the head from cached base features ({} floats per sample and "
        "flip, computed once; augmentation {}); up to {} MiB per rank in memory, then {}",
        model_->feature_channels(), data::to_string(head_cache_.augment), options_.cache_mb,
        spill.string());
  }
  return std::make_unique<CachedHead>(
      std::move(cache), head_cache_.augment, options_.seed, *batch_tensors_,
      [this](const torch::Tensor& input) { return model_->pooled_features(input); });
}

void TrainingJob::restore_best_head() {
  FetchedCheckpoint best = checkpoints_->fetch("best", "head", CheckpointUse::kRestoreHead);
  // None usable (rank 0 said why): the head phase's last weights stay.
  if (best.id.empty()) return;
  const std::string& id = best.id;
  const DecodedCheckpoint decoded = take_decoded(best);
  models::load_state_dict(*model_, decoded.weights.state_dict, "checkpoint " + id);
  if (world_.rank() == 0) {
    spdlog::info(
        "restored the best head checkpoint {} (head epoch {}, val_loss {:.4f}) before "
        "fine-tuning",
        id, decoded.state.epochs_done, decoded.state.val_loss);
  }
}

bool TrainingJob::run_phase(std::size_t index, int first_epoch, bool resume_optimizer) {
  const PhasePlan& plan = plan_[index];
  const bool head = plan.phase == models::Phase::kHead;
  model_->set_phase(plan.phase);
  make_optimizer(plan.schedule.lr);
  if (resume_optimizer) {
    restore_optimizer(*optimizer_, *model_, resumed_->optimizer_state,
                      "checkpoint " + last_checkpoint_id_);
  } else {
    state_.phase_step = 0;
  }
  epoch_end_->begin_phase();
  // The head phase's feature cache lives as long as the phase.
  const std::unique_ptr<CachedHead> cached_head =
      head && head_cache_.cache ? make_cached_head() : nullptr;
  loop_->begin_phase(*optimizer_, head && head_cache_.cache ? head_cache_.augment : augment_,
                     cached_head.get());
  struct EndPhase {
    EpochLoop& loop;
    ~EndPhase() { loop.end_phase(); }
  } end_phase{*loop_};
  if (world_.rank() == 0) {
    const auto counts = model_->parameter_counts();
    spdlog::info(
        "phase {}: epochs {}..{} of {}, lr {:g}, decay {:g}; {} trainable / {} frozen "
        "parameters",
        models::phase_name(plan.phase), first_epoch, plan.schedule.epochs, plan.schedule.epochs,
        plan.schedule.lr, plan.schedule.decay, counts.trainable, counts.frozen);
  }
  for (int epoch = first_epoch; epoch <= plan.schedule.epochs; ++epoch) {
    // A mid-epoch checkpoint resumes its epoch at the step after its own.
    const std::int64_t start_batch = epoch == first_epoch ? state_.epoch_steps_done : 0;
    const EpochResult result = loop_->train(plan, epoch, start_batch);
    if (result.preempted) {
      preempt_mid_epoch(plan, epoch, result);
      return false;
    }
    last_checkpoint_id_ = epoch_end_->finish(plan, epoch, result, *optimizer_);
    faults_->after_epoch(++epochs_this_attempt_, models::phase_name(plan.phase), epoch);
    if (preemption_.agreed(comms_->host())) {
      preempt_at_boundary(plan, epoch);
      return false;
    }
  }
  return true;
}

void TrainingJob::preempt_mid_epoch(const PhasePlan& plan, int epoch, const EpochResult& result) {
  last_checkpoint_id_ = epoch_end_->store_mid_epoch(plan, epoch, result, *optimizer_);
  mark_preempted(preempted_mid_epoch_where(last_checkpoint_id_, models::phase_name(plan.phase),
                                           epoch, result.steps_done, state_.global_step));
}

void TrainingJob::preempt_at_boundary(const PhasePlan& plan, int epoch) {
  mark_preempted(preempted_at_boundary_where(last_checkpoint_id_, models::phase_name(plan.phase),
                                             epoch, state_.global_step));
}

void TrainingJob::mark_preempted(const std::string& where) {
  const std::string signal =
      preemption_.requested_locally() ? preemption_.signal_name() : "a signal to another rank";
  mark_run_preempted(*coordinator_, comms_->host(), options_.run_name, signal, where);
}

evaluation::ClassificationCounts TrainingJob::evaluate_test(PredictionSampler* samples) {
  evaluation::ClassificationCounts test =
      loop_->evaluate(options_.test_split, "test", last_phase(), state_.epochs_done, samples);
  sum_counts(comms_->host(), test, "test evaluation");
  return test;
}

void TrainingJob::log_test_after_phase(const PhasePlan& plan) {
  evaluation::ClassificationCounts test = evaluate_test();
  if (world_.rank() == 0) {
    const MetricTotals m = totals_of(test);
    spdlog::info("after {}: test loss {:.4f} - acc {:.4f} - top3 {:.4f} ({} samples)",
                 models::phase_name(plan.phase), m.loss(), m.acc(), m.acc3(), m.samples);
  }
}

void TrainingJob::finish() {
  PredictionSampler samples;
  evaluation::ClassificationCounts test = evaluate_test(&samples);
  const std::vector<v1::PredictionSample> predictions = samples.gather(comms_->host());
  on_rank0(comms_->host(), "storing the test report", [&] {
    const evaluation::EvaluationReport report =
        evaluation::summarize(test, metadata_.labels, options_.test_split, last_checkpoint_id_);
    v1::RunReport proto = evaluation::to_proto(report, options_.run_name);
    for (const auto& prediction : predictions) *proto.add_predictions() = prediction;
    coordinator_->put_report(proto);
    evaluation::write_report_files(report, options_.run_dir);
    models::write_file_atomically(encode_checkpoint(metadata_, *model_, *optimizer_, state_),
                                  (fs::path(options_.run_dir) / "model.pt").string());
    spdlog::info(
        "test ({}, {} samples, after {} epoch {}): loss {:.4f} - acc {:.4f} - top3 "
        "{:.4f} - macro F1 {:.4f}",
        options_.test_split, report.samples, last_phase(), state_.epochs_done, report.loss,
        report.top1, report.top3, report.macro_f1);
    for (std::istringstream lines(evaluation::format_summary(report)); !lines.eof();) {
      std::string line;
      std::getline(lines, line);
      if (!line.empty()) spdlog::info("{}", line);
    }
    complete_run(*coordinator_, options_, state_.global_step, loop_->steps_this_attempt(),
                 report.top1, report.top3);
  });
}

JobOutcome TrainingJob::run() {
  set_up_devices();
  try {
    augment_ = data::parse_augment(options_.augment);
  } catch (const std::exception& e) {
    throw SharedError(e.what());  // it names --augment and the expected form
  }
  head_cache_ =
      plan_head_cache(options_.cache_features, augment_,
                      plan_of(plan_, models::Phase::kHead).schedule.epochs, world_.rank() == 0);
  connect();
  if (!start_run()) return JobOutcome::kCompleted;
  heartbeat_ = start_job_heartbeat(*client_, options_, world_, attempt_);
  build_model();
  load_starting_weights();

  // Where to start: after a resume, the epoch after the checkpoint's, or the
  // next phase's first epoch when the checkpoint ended its phase.
  const StartPoint start = start_point(plan_, resumed_ ? &state_ : nullptr);
  make_reducer(start.phase);
  make_epoch_parts();

  int first_epoch = start.epoch;
  bool resume_optimizer = start.resume_optimizer;
  const bool head_runs = plan_of(plan_, models::Phase::kHead).schedule.epochs > 0;
  for (std::size_t phase = start.phase; phase < plan_.size(); ++phase) {
    const PhasePlan& plan = plan_[phase];
    if (plan.schedule.epochs == 0) continue;
    if (plan.phase == models::Phase::kFinetune && head_runs && !resume_optimizer) {
      restore_best_head();
    }
    if (!run_phase(phase, first_epoch, resume_optimizer)) return JobOutcome::kPreempted;
    first_epoch = 1;
    resume_optimizer = false;
    // The seed prints test accuracy after each step of the recipe; the last
    // phase's evaluation is the run's report (finish()).
    if (later_phase_runs(plan_, phase)) log_test_after_phase(plan);
  }
  if (!optimizer_) make_optimizer(1e-3);  // a resumed, finished run: model.pt still needs one
  finish();
  return JobOutcome::kCompleted;
}

}  // namespace

JobOutcome run_training_job(const TrainOptions& options, dist::World& world,
                            JobProgress& progress) {
  TrainingJob job(options, world, progress);
  return job.run();
}

}  // namespace xfer::trainer::train
