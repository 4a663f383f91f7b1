#include "trainer/train/training_job.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
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
#include "trainer/models/autocast_scope.h"
#include "trainer/models/conv_bn_activation.h"
#include "trainer/models/preprocess.h"
#include "trainer/models/state_dict.h"
#include "trainer/models/transfer_model.h"
#include "trainer/train/checkpoint_codec.h"
#include "trainer/train/collective.h"
#include "trainer/train/feature_cache.h"
#include "trainer/train/fused_adam.h"
#include "trainer/train/heartbeat.h"
#include "trainer/train/prediction_samples.h"
#include "trainer/train/preemption.h"
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

// Dropout masks of one step: a pure function of (seed, epoch, rank, step),
// so a step re-run after a resume, even mid-epoch, draws what the first
// attempt drew.
std::uint64_t dropout_seed(std::uint64_t seed, int global_epoch, int rank, std::int64_t step) {
  return mix64(seed ^
               mix64(static_cast<std::uint64_t>(global_epoch) * 1000003ULL +
                     static_cast<std::uint64_t>(rank)) ^
               mix64(static_cast<std::uint64_t>(step)));
}

// Keras' inverse-time decay: the rate of the phase's step k (0-based).
double learning_rate(const PhaseSchedule& schedule, std::int64_t k) {
  return schedule.lr / (1.0 + schedule.decay * static_cast<double>(k));
}

// resume_ after start_run when --resume auto found the run COMPLETED.
constexpr char kAlreadyCompleted[] = "(already completed)";

// What train_epoch ended with.
struct EpochResult {
  MetricTotals totals;  // this rank's train counts of the whole epoch
  double seconds = 0.0;
  bool preempted = false;    // stopped early: the job stores a checkpoint and ends
  double data_wait_s = 0.0;  // of `seconds`, waiting for the prefetcher (this attempt's part)
};

// The prefetcher's next batch, its error prefixed with what was being read.
std::optional<data::Batch> next_batch(data::ShardPrefetcher& prefetcher, const std::string& what) {
  try {
    return prefetcher.next();
  } catch (const std::exception& e) {
    throw std::runtime_error(what + ": " + e.what());
  }
}

// A checkpoint fetched from the coordinator (TrainingJob::fetch_checkpoint).
struct FetchedCheckpoint {
  std::string id;  // empty: none could be used (restoring the best head only)
  std::vector<char> bytes;
  // Rank 0 decoded it while choosing it; the other ranks decode `bytes`.
  std::optional<DecodedCheckpoint> decoded;
};

// Why a stored checkpoint cannot be used. Both read after "checkpoint ID is":
// `brief` in the line that says what was chosen instead ("corrupt
// (DATA_LOSS at the coordinator)"), `detail` with the coordinator's or the
// decoder's own words.
struct Unusable {
  std::string brief;
  std::string detail;
  bool none() const { return brief.empty(); }
};

// This rank's decoded checkpoint: rank 0's own, or decoded from the bytes.
DecodedCheckpoint take_decoded(FetchedCheckpoint& fetched) {
  if (fetched.decoded) {
    DecodedCheckpoint decoded = std::move(*fetched.decoded);
    fetched.decoded.reset();
    return decoded;
  }
  return decode_checkpoint(fetched.bytes, "checkpoint " + fetched.id);
}

// True when `a` was committed before `b`. Ids are "ckpt-" and a zero-padded
// sequence that only grows, so they break a tie of commit times.
bool committed_before(const v1::CheckpointInfo& a, const v1::CheckpointInfo& b) {
  if (a.created_unix_ms() != b.created_unix_ms()) return a.created_unix_ms() < b.created_unix_ms();
  return a.id() < b.id();
}

// The order in which the run's other checkpoints are tried when `which`
// ("latest" or "best") is unusable: the store's own orders
// (docs/checkpoints.md). latest: the highest (epoch, step) first, a tie to
// the newer commit; `epoch` counts over all phases and a mid-epoch checkpoint
// carries its finished epochs and a later step, so this is training order.
// best: by the metric in its direction, NaN last, a tie to the earlier commit.
void order_for_fallback(std::vector<v1::CheckpointInfo>& list, const std::string& which) {
  if (which == "latest") {
    std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
      if (a.meta().epoch() != b.meta().epoch()) return a.meta().epoch() > b.meta().epoch();
      if (a.meta().step() != b.meta().step()) return a.meta().step() > b.meta().step();
      return committed_before(b, a);
    });
    return;
  }
  std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
    const double x = a.meta().metric_value();
    const double y = b.meta().metric_value();
    if (std::isnan(x) != std::isnan(y)) return std::isnan(y);
    if (!std::isnan(x) && x != y) {
      return a.meta().direction() == v1::METRIC_DIRECTION_MAXIMIZE ? x > y : x < y;
    }
    return committed_before(a, b);
  });
}

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
  void connect();
  void start_run();
  void build_model();
  // ---- checkpoints at the coordinator
  // What a checkpoint is fetched for. Resuming needs its training state, and
  // without a usable checkpoint there is nothing to resume; restoring the
  // best head checkpoint can go on with the weights in hand.
  enum class CheckpointUse { kResume, kRestoreHead };
  // Checkpoint `which` ("latest", "best" or an id) of the run, among those of
  // `phase` (empty: all), SHA-256 verified, on every rank. "latest" and
  // "best" fall back to the run's other checkpoints, newest (best) first,
  // while the one chosen is corrupt or unusable; an id never does. An empty
  // id: none usable (kRestoreHead only; rank 0 logged why). Collective.
  FetchedCheckpoint fetch_checkpoint(const std::string& which, const std::string& phase,
                                     CheckpointUse use);
  // Rank 0's part of fetch_checkpoint.
  FetchedCheckpoint pick_checkpoint(const std::string& which, const std::string& phase,
                                    CheckpointUse use);
  // Rank 0: downloads `info` and decodes it into `out`, or says why it cannot
  // be used. Failures that say nothing about the checkpoint (the coordinator
  // away, an unknown id, a local file) are thrown.
  Unusable try_checkpoint(const v1::CheckpointInfo& info, CheckpointUse use,
                          FetchedCheckpoint& out);
  // Rank 0: stores a checkpoint at the coordinator and returns its id, or ""
  // after one warning when the coordinator could not store it (full disk, an
  // I/O error, the coordinator away past the client's retries): that costs
  // this checkpoint only. `what` names it, `consequence` ends the warning.
  // A refused request (it would be refused every time) is thrown.
  std::string store_checkpoint(const v1::CheckpointMeta& meta, const std::vector<char>& bytes,
                               const std::string& what, const std::string& consequence);
  // ---- phases and epochs
  // False when the job was preempted during the phase.
  bool run_phase(std::size_t index, int first_epoch, bool resume_optimizer);
  void make_optimizer(double lr);
  // Trains one epoch from batch `start_batch` (0, or where a mid-epoch
  // checkpoint stopped); stops early when the ranks agree to be preempted.
  EpochResult train_epoch(const PhasePlan& plan, int epoch, std::int64_t start_batch);
  // Stores a checkpoint of step `steps_done` of `epoch` and marks the run
  // PREEMPTED. Collective.
  void preempt_mid_epoch(const PhasePlan& plan, int epoch, std::int64_t steps_done,
                         const MetricTotals& totals, double seconds);
  // After an epoch's checkpoint: marks the run PREEMPTED (the checkpoint
  // just stored is where it resumes).
  void preempt_at_boundary(const PhasePlan& plan, int epoch);
  void mark_preempted(const std::string& where);
  // With `samples`, offers it every evaluated batch (the report's images).
  evaluation::ClassificationCounts evaluate(const std::string& split, const char* split_name,
                                            const std::string& phase, int epoch,
                                            PredictionSampler* samples = nullptr);
  // `step`: batches of (phase, epoch, split) done so far, the report's key;
  // `steps_in_epoch`: the rank's planned batches of it (0: not known yet),
  // for progress views (coordctl watch).
  void report(const std::string& phase, int epoch, v1::SplitKind split, const MetricTotals& m,
              double images_per_second, double wait_ms, double lr, bool end_of_epoch,
              std::int64_t step, std::int64_t steps_in_epoch);
  // False when the job is to stop here (preempted after the checkpoint).
  bool end_of_epoch(const PhasePlan& plan, int epoch, const MetricTotals& train_local,
                    double seconds, double data_wait_s);
  void restore_best_head();
  // The test split with the current weights, summed over ranks; its metrics
  // are reported under the phase and epoch just finished.
  evaluation::ClassificationCounts evaluate_test(PredictionSampler* samples = nullptr);
  void finish();

  // What the prefetchers make of the streamed bytes (model_input.h): the
  // finished input on CPU, 32 px [0, 1] floats for CUDA.
  data::InputLayout input_layout() const;
  torch::Tensor to_input(const data::Batch& batch) const;
  // ---- head phase from cached features (feature_cache.h)
  // Decides whether the head phase caches, and with which augmentation.
  void plan_feature_cache();
  // The head's input for a train batch: from the cache when every (sample,
  // flip) of it is there; otherwise the base runs on the batch and on its
  // mirror image, and both views of every sample are cached. A batch that
  // came without images (labels_only) and lacks a row is fetched again
  // whole from `prefetcher` into `batch`.
  torch::Tensor train_features(data::Batch& batch, int global_epoch,
                               data::ShardPrefetcher& prefetcher);
  // The logits of an evaluation batch; validation in the head phase goes
  // through the cache (and fetches a labels-only batch again like
  // train_features).
  torch::Tensor eval_logits(data::Batch& batch, bool cached, data::ShardPrefetcher& prefetcher);
  // `batch` again with its images, for a labels-only batch that lacks rows.
  void fetch_images(data::Batch& batch, data::ShardPrefetcher& prefetcher);
  // The cached rows of cache_keys_ as one [count, width] tensor on the job's
  // device; std::nullopt at the first key that is not cached.
  std::optional<torch::Tensor> cached_rows();
  // Collective, at the end of every cached epoch: each rank sends the rows
  // it computed to every other, so from the next epoch on every rank finds
  // every sample's features whatever its shard.
  void share_cached_features();
  void log_cache_stats(const std::string& what);
  torch::Tensor to_labels(const data::Batch& batch) const;
  v1::StreamShardRequest shard_request(const std::string& split, int global_epoch,
                                       bool train) const;
  std::string where() const { return world_.where(); }
  bool bf16() const { return options_.precision == "bf16"; }
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
  std::unique_ptr<dist::Communicators> comms_;
  std::unique_ptr<client::CoordinatorClient> client_;
  // The run's attempt StartRun returned (every rank), and this rank's
  // heartbeats (heartbeat.h; after client_: stopped before it goes).
  int attempt_ = 0;
  std::unique_ptr<HeartbeatSender> heartbeat_;
  data::AugmentSpec augment_;
  models::ModelMetadata metadata_;
  models::TransferModel model_{nullptr};
  std::unique_ptr<dist::Reducer> reducer_;
  std::unique_ptr<torch::optim::Adam> optimizer_;

  TrainingState state_;
  // --resume as decided at start: options_.resume, or for "auto" "latest"
  // when the run has a checkpoint and "" when it starts afresh.
  std::string resume_;
  std::optional<DecodedCheckpoint> resumed_;
  PreemptionWatch preemption_;
  // Head phase feature cache: planned at start, alive during the head phase.
  bool cache_head_ = false;
  data::AugmentSpec head_augment_;
  std::unique_ptr<FeatureCache> cache_;
  std::vector<std::int64_t> cache_new_keys_;  // computed here since the last share
  std::vector<float> cache_rows_;             // scratch: one batch of rows
  std::vector<std::int64_t> cache_keys_;      // scratch: one batch of keys
  FeatureCacheStats cache_stats_mark_;
  // Every train (val) sample's rows were cached by an earlier pass of this
  // phase: later passes stream labels only (StreamShardRequest.labels_only).
  bool cache_holds_train_ = false;
  bool cache_holds_val_ = false;
  std::int64_t cache_refetched_batches_ = 0;  // since the last stats line
  std::string last_checkpoint_id_;
  double best_val_loss_in_phase_ = std::numeric_limits<double>::infinity();
  double last_lr_ = 0.0;
  int epochs_this_attempt_ = 0;
  std::int64_t steps_this_attempt_ = 0;
  Clock::time_point last_progress_ = Clock::now();
  // Rank 0's progress line, in place on a terminal (--progress).
  ProgressPrinter progress_printer_ = stderr_progress_printer(options_.progress);
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
    std::string resume = options_.resume;
    if (resume == "auto" && existing && existing->state() == v1::RUN_STATE_COMPLETED) {
      // A requeued job whose run finished already: nothing is left to do.
      spdlog::info("--resume auto: run {} is COMPLETED already (attempt {}); nothing to do",
                   options_.run_name, existing->attempt());
      resume_ = kAlreadyCompleted;
      return;
    }
    if (resume == "auto") {
      resume = "";
      if (existing) {
        try {
          const v1::CheckpointInfo latest = client_->latest_checkpoint(options_.run_name, "");
          resume = "latest";
          spdlog::info(
              "--resume auto: run {} exists (attempt {}, {}); continuing from its latest "
              "checkpoint {}",
              options_.run_name, existing->attempt(), v1::RunState_Name(existing->state()),
              latest.id());
        } catch (const client::RpcError& e) {
          if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
          spdlog::info(
              "--resume auto: run {} exists (attempt {}) but has no checkpoint; it "
              "starts over",
              options_.run_name, existing->attempt());
        }
      } else {
        spdlog::info("--resume auto: no run {} at the coordinator yet; starting it",
                     options_.run_name);
      }
    }
    resume_ = resume;
    if (existing && options_.resume.empty()) {
      throw std::runtime_error("run '" + options_.run_name + "' exists already (attempt " +
                               std::to_string(existing->attempt()) + ", " +
                               v1::RunState_Name(existing->state()) +
                               "); pass --resume latest to continue it, or choose another "
                               "--run-name");
    }
    if (!existing && !resume.empty()) {
      throw std::runtime_error("--resume " + options_.resume + ": the coordinator has no run '" +
                               options_.run_name + "' to resume");
    }
    if (existing && existing->dataset() != options_.dataset) {
      throw std::runtime_error("--dataset " + options_.dataset + ": run '" + options_.run_name +
                               "' was started on dataset '" + existing->dataset() + "'");
    }
    // Read-only checks first: a split the dataset cannot give fails the job
    // before anything is started or changed at the coordinator.
    for (const auto& [flag, spec] :
         {std::pair<std::string, std::string>{"--train-split", options_.train_split},
          {"--val-split", options_.val_split},
          {"--test-split", options_.test_split}}) {
      try {
        client_->resolve_split(options_.dataset, spec);
      } catch (const client::RpcError& e) {
        if (e.code() != grpc::StatusCode::INVALID_ARGUMENT) throw;
        throw std::runtime_error(flag + " '" + spec + "': " + e.server_message());
      }
    }
    v1::StartRunRequest request;
    request.set_name(options_.run_name);
    request.set_dataset(options_.dataset);
    request.set_world_size(world_.size());
    request.set_config_json(to_json(options_));
    const v1::Run run = client_->start_run(request);
    attempt_ = run.attempt();
    const v1::DatasetInfo info = client_->get_dataset_info(options_.dataset);
    for (int i = 0; i < options_.num_classes; ++i) {
      labels.push_back(i < info.fine_label_names_size() ? info.fine_label_names(i)
                                                        : "class_" + std::to_string(i));
    }
    spdlog::info("run {} attempt {} on dataset {} with {} ranks ({})", run.name(), run.attempt(),
                 run.dataset(), world_.size(), device_choice_.describe());
    fs::create_directories(options_.run_dir);
  });
  resume_ = broadcast_string(comms_->host(), resume_, "--resume");
  attempt_ = std::stoi(broadcast_string(comms_->host(), std::to_string(attempt_), "run attempt"));
  if (resume_ == kAlreadyCompleted) return;
  progress_.run_started = true;  // on every rank: rank 0's start succeeded
  metadata_.arch = options_.arch;
  metadata_.num_classes = options_.num_classes;
  metadata_.image_size = options_.image_size;
  metadata_.labels = std::move(labels);  // rank 0 only; the others never write model files
  metadata_.base_file = options_.base;
}

FetchedCheckpoint TrainingJob::fetch_checkpoint(const std::string& which, const std::string& phase,
                                                CheckpointUse use) {
  FetchedCheckpoint fetched;
  on_rank0(comms_->host(), "fetching checkpoint '" + which + "'",
           [&] { fetched = pick_checkpoint(which, phase, use); });
  fetched.id = broadcast_string(comms_->host(), fetched.id, "checkpoint id");
  if (fetched.id.empty()) return fetched;  // every rank: none usable
  fetched.bytes = broadcast_bytes(comms_->host(), fetched.bytes, "checkpoint " + fetched.id);
  return fetched;
}

FetchedCheckpoint TrainingJob::pick_checkpoint(const std::string& which, const std::string& phase,
                                               CheckpointUse use) {
  const bool resume = use == CheckpointUse::kResume;
  const std::string& run = options_.run_name;
  const std::string of_phase = phase.empty() ? "" : " of phase '" + phase + "'";
  const std::string keep_weights =
      "fine-tuning starts from the weights the head phase ended with instead";
  FetchedCheckpoint out;
  v1::CheckpointInfo first;
  try {
    if (which == "latest") {
      first = client_->latest_checkpoint(run, phase);
    } else if (which == "best") {
      first = client_->best_checkpoint(run, phase);
    } else {
      first.set_id(which);
    }
  } catch (const client::RpcError& e) {
    // No head checkpoint at all: every one failed to store (full disk), or
    // they were deleted. The run goes on; there is nothing to restore.
    if (resume || e.code() != grpc::StatusCode::NOT_FOUND) throw;
    spdlog::warn("restoring the best {} checkpoint: run {} has none ({}); {}", phase, run,
                 e.server_message(), keep_weights);
    return out;
  }
  const Unusable first_problem = try_checkpoint(first, use, out);
  if (first_problem.none()) return out;
  if (which != "latest" && which != "best") {
    throw std::runtime_error(
        "--resume " + which + ": checkpoint " + which + " is " + first_problem.detail +
        "; a checkpoint named by its id is never replaced by another: continue from the newest "
        "valid one with --resume latest, or name another (coordctl checkpoints list " +
        run + ")");
  }
  const std::string order = which == "latest" ? "newest" : "best";
  spdlog::warn("checkpoint {} is {}; trying the other checkpoints of run {}{}, {} first",
               first.id(), first_problem.detail, run, of_phase, order);
  const v1::ListCheckpointsResponse listed = client_->list_checkpoints(run);
  std::vector<v1::CheckpointInfo> candidates;
  for (const auto& info : listed.checkpoints()) {
    if (info.id() != first.id() && (phase.empty() || info.meta().phase() == phase)) {
      candidates.push_back(info);
    }
  }
  order_for_fallback(candidates, which);
  std::string tried = first.id() + " (" + first_problem.brief + ")";
  for (const auto& candidate : candidates) {
    Unusable problem;
    try {
      problem = try_checkpoint(candidate, use, out);
    } catch (const client::RpcError& e) {
      // Listed a moment ago, deleted since (by hand or by retention).
      if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
      problem = {"gone", "gone (" + e.server_message() + ")"};
    }
    if (problem.none()) {
      if (resume) {
        spdlog::warn("checkpoint {} is {}; resuming from {}, the {} valid one", first.id(),
                     first_problem.brief, out.id, order);
      } else {
        spdlog::warn("the best {} checkpoint {} is {}; restoring {} instead, the best valid one",
                     phase, first.id(), first_problem.brief, out.id);
      }
      return out;
    }
    spdlog::warn("checkpoint {} is {} too", candidate.id(), problem.detail);
    tried += ", " + candidate.id() + " (" + problem.brief + ")";
  }
  const std::string none = "no checkpoint of run " + run + of_phase + " is usable; tried " + tried;
  if (resume) {
    throw std::runtime_error("--resume " + which + ": " + none +
                             " (the coordinator's errors: coordctl status); nothing to resume "
                             "from: start the run afresh under another --run-name");
  }
  spdlog::warn("restoring the best {} checkpoint: {}; {}", phase, none, keep_weights);
  return out;
}

Unusable TrainingJob::try_checkpoint(const v1::CheckpointInfo& info, CheckpointUse use,
                                     FetchedCheckpoint& out) {
  const fs::path dir = fs::path(options_.run_dir) / "checkpoints";
  fs::create_directories(dir);
  const fs::path file = dir / (info.id() + ".pt");
  client::DownloadResult result;
  try {
    // Verified twice: the coordinator hashes the blob before it sends a
    // byte (DATA_LOSS), the client hashes what arrived (ChecksumError).
    result = client_->get_checkpoint(info.id(), file, info.sha256());
  } catch (const client::ChecksumError& e) {
    return {"corrupt (SHA-256 mismatch)", std::string("corrupt (") + e.what() + ")"};
  } catch (const client::RpcError& e) {
    if (e.code() != grpc::StatusCode::DATA_LOSS) throw;
    return {"corrupt (DATA_LOSS at the coordinator)",
            "corrupt (DATA_LOSS: " + e.server_message() + ")"};
  }
  if (result.meta && result.meta->run() != options_.run_name) {
    throw std::runtime_error("checkpoint " + info.id() + " belongs to run '" + result.meta->run() +
                             "', not '" + options_.run_name + "'");
  }
  std::vector<char> bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) throw std::runtime_error("cannot read " + file.string());
  }
  const auto unusable = [&](std::string brief, std::string detail) {
    std::error_code ignored;
    fs::remove(file, ignored);  // the copy would only be mistaken for a good one
    return Unusable{std::move(brief), std::move(detail)};
  };
  DecodedCheckpoint decoded;
  try {
    decoded = decode_checkpoint(bytes, "checkpoint " + info.id());
  } catch (const std::exception& e) {
    // The bytes are the ones stored (their SHA-256 matched): whoever stored
    // them stored something else than a checkpoint.
    return unusable("not a checkpoint file", std::string("not a checkpoint file: ") + e.what());
  }
  if (use == CheckpointUse::kResume && !decoded.has_training_state) {
    return unusable("not resumable (no training state)",
                    "not resumable: it holds no training state (a model file, not a "
                    "checkpoint of training)");
  }
  spdlog::info("checkpoint {} ({} bytes, SHA-256 verified) from the coordinator", info.id(),
               bytes.size());
  out.id = info.id();
  out.bytes = std::move(bytes);
  out.decoded = std::move(decoded);
  return {};
}

std::string TrainingJob::store_checkpoint(const v1::CheckpointMeta& meta,
                                          const std::vector<char>& bytes, const std::string& what,
                                          const std::string& consequence) {
  try {
    return client_->put_checkpoint_bytes(meta, std::string_view(bytes.data(), bytes.size())).id();
  } catch (const client::RpcError& e) {
    // RESOURCE_EXHAUSTED: the coordinator's disk is full (final at once).
    // UNAVAILABLE, DEADLINE_EXCEEDED: another I/O error, or the coordinator
    // away, after the client's retries. The store left the previous
    // checkpoints intact and nothing half-written. Anything else is a
    // refused request that the next checkpoint would repeat.
    if (e.code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
        e.code() != grpc::StatusCode::UNAVAILABLE &&
        e.code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      throw;
    }
    spdlog::warn("the checkpoint of {} was not stored: {}; {}", what, e.what(), consequence);
    return {};
  }
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

  if (!resume_.empty()) {
    FetchedCheckpoint fetched = fetch_checkpoint(resume_, "", CheckpointUse::kResume);
    const std::string id = fetched.id;
    const std::string source = "checkpoint " + id;
    DecodedCheckpoint decoded = take_decoded(fetched);
    fetched.bytes = {};
    if (!decoded.has_training_state) {
      throw SharedError(source + " holds no training state: it cannot be resumed");
    }
    models::load_state_dict(*model_, decoded.weights.state_dict, source);
    state_ = decoded.state;
    last_checkpoint_id_ = id;
    if (state_.mid_epoch() &&
        (state_.world_size != world_.size() || state_.batch_size != options_.batch_size)) {
      // The rest of the epoch is the rest of *these* shards: another world
      // size or batch would cut the epoch differently and lose or repeat
      // samples.
      throw SharedError(source + " was taken in the middle of " + state_.phase + " epoch " +
                        std::to_string(state_.epochs_done + 1) + " with " +
                        std::to_string(state_.world_size) + " ranks x batch " +
                        std::to_string(state_.batch_size) + "; resume it with the same world " +
                        "size and --batch-size (here " + std::to_string(world_.size()) + " x " +
                        std::to_string(options_.batch_size) +
                        "), or resume from an end-of-epoch checkpoint with --resume ID (see "
                        "coordctl checkpoints list " +
                        options_.run_name + ")");
    }
    if (state_.world_size != world_.size() || state_.batch_size != options_.batch_size) {
      spdlog::warn(
          "resuming with {} ranks x batch {} (global batch {}) where the checkpoint was taken "
          "with {} x {} (global batch {}): the remaining epochs are cut into different steps",
          world_.size(), options_.batch_size, world_.size() * options_.batch_size,
          state_.world_size, state_.batch_size, state_.world_size * state_.batch_size);
    }
    resumed_ = std::move(decoded);
    {
      // The learning rate of the checkpoint's last step: reports re-sent
      // for that epoch (a finished run's test report) must repeat it.
      const PhasePlan& p =
          plan_[static_cast<std::size_t>(phase_index(models::parse_phase(state_.phase)))];
      last_lr_ = learning_rate(p.schedule, std::max<std::int64_t>(0, state_.phase_step - 1));
    }
    if (world_.rank() == 0) {
      if (state_.mid_epoch()) {
        spdlog::info("resuming {} epoch {} at step {} of it (global step {})", state_.phase,
                     state_.epochs_done + 1, state_.epoch_steps_done + 1, state_.global_step + 1);
      } else {
        spdlog::info("resuming after {} epoch {} (step {}, val_loss {:.4f})", state_.phase,
                     state_.epochs_done, state_.global_step, state_.val_loss);
      }
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
  model_->set_memory_format(memory_format());
  model_->to(device_);
  dist::broadcast_module_state(*model_, comms_->tensors());
}

void TrainingJob::make_optimizer(double lr) {
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model_->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  optimizer_ = make_adam(trainable, lr, options_.adam_eps);
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

data::InputLayout TrainingJob::input_layout() const {
  data::InputLayout layout;
  if (device_.is_cuda()) {
    // The small 32 px [0, 1] batch crosses PCIe; the GPU resizes and
    // normalises (to_input).
    layout.size = data::kImageSide;
    layout.channels_last = false;
    layout.normalize = false;
    return layout;
  }
  layout.size = static_cast<int>(options_.image_size);
  layout.channels_last = memory_format() == torch::MemoryFormat::ChannelsLast;
  layout.normalize = true;
  layout.mean = models::kImageNetMean;
  layout.std = models::kImageNetStd;
  return layout;
}

torch::Tensor TrainingJob::to_input(const data::Batch& batch) const {
  const auto n = static_cast<std::int64_t>(batch.count);
  if (device_.is_cuda()) {
    // [0, 1] floats, NCHW, 32 px (input_layout()). The small batch goes over
    // PCIe from pinned memory without blocking (PyTorch's host allocator
    // keeps the buffer until the copy is done, so the batch is free at
    // once); resizing and normalising then run on the GPU, on the current
    // stream.
    const torch::Tensor images =
        torch::from_blob(const_cast<float*>(batch.images.data()),
                         {n, 3, data::kImageSide, data::kImageSide}, torch::kFloat32);
    torch::Tensor pinned =
        torch::empty(images.sizes(), images.options().pinned_memory(true)).copy_(images);
    return models::preprocess_imagenet(pinned.to(device_, /*non_blocking=*/true),
                                       options_.image_size)
        .contiguous(memory_format());
  }
  // The prefetcher made the model's input already (resized, normalised, in
  // the memory format): no pass over it here. The tensor borrows the batch's
  // memory: the batch outlives the step that uses it (the training loop
  // recycles it after the optimizer step).
  const std::int64_t side = batch.layout.size;
  const std::vector<std::int64_t> sizes{n, 3, side, side};
  const std::vector<std::int64_t> strides =
      batch.layout.channels_last ? std::vector<std::int64_t>{3 * side * side, 1, 3 * side, 3}
                                 : std::vector<std::int64_t>{3 * side * side, side * side, side, 1};
  return torch::from_blob(const_cast<float*>(batch.images.data()), sizes, strides, torch::kFloat32);
}

torch::Tensor TrainingJob::to_labels(const data::Batch& batch) const {
  const torch::Tensor labels = torch::from_blob(const_cast<std::int64_t*>(batch.labels.data()),
                                                {batch.count}, torch::kInt64);
  if (device_.is_cuda()) {
    return torch::empty(labels.sizes(), labels.options().pinned_memory(true))
        .copy_(labels)
        .to(device_, /*non_blocking=*/true);
  }
  return labels.clone();
}

// ---------------------------------------------------------------- feature cache

// Keys: a train row is (sample << 1 | mirrored); validation rows live in
// their own range.
constexpr std::int64_t kValidationKeys = std::int64_t{1} << 62;

void TrainingJob::plan_feature_cache() {
  head_augment_ = augment_;
  cache_head_ = false;
  if (options_.cache_features == "off" || plan_[1].schedule.epochs == 0) return;
  const bool leader = world_.rank() == 0;
  if (augment_.brightness == 0.0F) {
    cache_head_ = true;
  } else if (options_.cache_features == "on") {
    cache_head_ = true;
    head_augment_.brightness = 0.0F;
    if (leader) {
      spdlog::warn(
          "--cache-features on: the head phase trains without brightness augmentation (--augment "
          "{} becomes {} there): a cached feature needs the same input every epoch. Fine-tuning "
          "keeps brightness.",
          data::to_string(augment_), data::to_string(head_augment_));
    }
  } else if (leader) {
    spdlog::info(
        "head phase: features are not cached because --augment {} changes the base's input every "
        "epoch; --cache-features on drops brightness in the head phase and caches (much faster), "
        "--cache-features off silences this",
        data::to_string(augment_));
  }
}

void TrainingJob::fetch_images(data::Batch& batch, data::ShardPrefetcher& prefetcher) {
  data::Batch whole = prefetcher.fetch_with_images(batch.batch_index);
  if (whole.sample_indices != batch.sample_indices) {
    throw std::runtime_error("batch " + std::to_string(batch.batch_index) +
                             " asked for again with its images holds other samples than the "
                             "labels-only batch (the coordinator's shard order changed)");
  }
  batch = std::move(whole);
  ++cache_refetched_batches_;
}

std::optional<torch::Tensor> TrainingJob::cached_rows() {
  const std::int64_t width = cache_->width();
  const auto count = static_cast<std::int64_t>(cache_keys_.size());
  cache_rows_.resize(static_cast<std::size_t>(count * width));
  for (std::int64_t i = 0; i < count; ++i) {
    if (!cache_->find(cache_keys_[static_cast<std::size_t>(i)], cache_rows_.data() + i * width)) {
      return std::nullopt;
    }
  }
  return torch::from_blob(cache_rows_.data(), {count, width}, torch::kFloat32).clone().to(device_);
}

torch::Tensor TrainingJob::train_features(data::Batch& batch, int global_epoch,
                                          data::ShardPrefetcher& prefetcher) {
  const std::int64_t width = cache_->width();
  const auto count = static_cast<std::size_t>(batch.count);
  cache_keys_.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::int64_t sample = batch.sample_indices[i];
    // The prefetcher drew this flip for the image it delivered.
    const bool flipped =
        data::draw_augmentation(head_augment_, options_.seed, global_epoch, sample).flip;
    cache_keys_[i] = (sample << 1) | (flipped ? 1 : 0);
  }
  if (auto rows = cached_rows()) return *rows;
  // The base on the image as delivered and, when flips are drawn, on its
  // mirror image too (the other flip of the same sample, so later epochs find
  // either), both views in one batch of 2N. Without flips no epoch ever asks
  // for the mirror: one view is all there is to compute.
  if (batch.images.empty()) fetch_images(batch, prefetcher);
  const torch::Tensor input = to_input(batch);
  const bool both_views = head_augment_.flip;
  const torch::Tensor features = model_->pooled_features(
      both_views ? torch::cat({input, input.flip({3})}).contiguous(memory_format()) : input);
  const torch::Tensor given = both_views ? features.slice(0, 0, batch.count) : features;
  const torch::Tensor features_cpu = features.to(torch::kCPU, torch::kFloat32).contiguous();
  const float* rows = features_cpu.data_ptr<float>();
  const auto put = [&](std::int64_t key, std::size_t row) {
    if (cache_->contains(key)) return;
    cache_->put(key, rows + row * static_cast<std::size_t>(width));
    cache_new_keys_.push_back(key);
  };
  for (std::size_t i = 0; i < count; ++i) {
    put(cache_keys_[i], i);
    if (both_views) put(cache_keys_[i] ^ 1, count + i);
  }
  return given;
}

torch::Tensor TrainingJob::eval_logits(data::Batch& batch, bool cached,
                                       data::ShardPrefetcher& prefetcher) {
  if (!cached) return model_->forward(to_input(batch));
  const std::int64_t width = cache_->width();
  const auto count = static_cast<std::size_t>(batch.count);
  cache_keys_.resize(count);
  for (std::size_t i = 0; i < count; ++i)
    cache_keys_[i] = kValidationKeys | batch.sample_indices[i];
  if (auto rows = cached_rows()) return model_->head_forward(*rows);
  if (batch.images.empty()) fetch_images(batch, prefetcher);
  const torch::Tensor features = model_->pooled_features(to_input(batch));
  const torch::Tensor features_cpu = features.to(torch::kCPU, torch::kFloat32).contiguous();
  for (std::size_t i = 0; i < count; ++i) {
    cache_->put(cache_keys_[i],
                features_cpu.data_ptr<float>() + static_cast<std::int64_t>(i) * width);
  }
  return model_->head_forward(features);
}

void TrainingJob::share_cached_features() {
  dist::Communicator& comm = comms_->host();
  if (comm.size() > 1) {
    const std::int64_t width = cache_->width();
    const std::vector<std::int64_t> counts = comm.allgather_value(
        static_cast<std::int64_t>(cache_new_keys_.size()), "feature cache share (row counts)");
    const std::int64_t most = *std::max_element(counts.begin(), counts.end());
    // Fixed-size records (key, row) in rounds of at most 2048 rows (~10 MiB
    // at B0's width), so no rank holds everyone's rows at once.
    constexpr std::int64_t kRowsPerRound = 2048;
    const std::size_t record =
        sizeof(std::int64_t) + static_cast<std::size_t>(width) * sizeof(float);
    std::vector<std::byte> mine;
    for (std::int64_t first = 0; first < most; first += kRowsPerRound) {
      const std::int64_t rows = std::min(kRowsPerRound, most - first);
      mine.assign(static_cast<std::size_t>(rows) * record, std::byte{0});
      for (std::int64_t j = 0; j < rows; ++j) {
        std::byte* at = mine.data() + static_cast<std::size_t>(j) * record;
        const std::int64_t index = first + j;
        const std::int64_t key = index < static_cast<std::int64_t>(cache_new_keys_.size())
                                     ? cache_new_keys_[static_cast<std::size_t>(index)]
                                     : -1;
        std::memcpy(at, &key, sizeof key);
        if (key >= 0) cache_->read(key, reinterpret_cast<float*>(at + sizeof key));
      }
      const std::vector<std::byte> all =
          comm.allgather(mine.data(), mine.size(), "feature cache share (rows)");
      std::vector<float> row(static_cast<std::size_t>(width));
      for (int r = 0; r < comm.size(); ++r) {
        if (r == comm.rank()) continue;
        for (std::int64_t j = 0; j < rows; ++j) {
          const std::byte* at =
              all.data() + (static_cast<std::size_t>(r) * static_cast<std::size_t>(rows) +
                            static_cast<std::size_t>(j)) *
                               record;
          std::int64_t key = 0;
          std::memcpy(&key, at, sizeof key);
          if (key < 0 || cache_->contains(key)) continue;
          std::memcpy(row.data(), at + sizeof key, row.size() * sizeof(float));
          cache_->put(key, row.data());
        }
      }
    }
  }
  cache_new_keys_.clear();
  log_cache_stats("after the epoch's rows were shared");
}

void TrainingJob::log_cache_stats(const std::string& what) {
  const FeatureCacheStats now = cache_->stats();
  const std::int64_t hits = now.hits - cache_stats_mark_.hits;
  const std::int64_t misses = now.misses - cache_stats_mark_.misses;
  const std::int64_t refetched = cache_refetched_batches_;
  cache_stats_mark_ = now;
  cache_refetched_batches_ = 0;
  if (world_.rank() != 0) return;
  spdlog::info(
      "feature cache {}: {} rows ({} on disk, {:.0f} MiB in memory); lookups since the last "
      "line: {} hits, {} misses ({:.1f}% hits); {} labels-only batches fetched again with "
      "images",
      what, now.rows, now.rows_on_disk, static_cast<double>(now.bytes_in_memory) / (1 << 20), hits,
      misses, hits + misses > 0 ? 100.0 * static_cast<double>(hits) / (hits + misses) : 0.0,
      refetched);
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
                         bool end_of_epoch, std::int64_t step, std::int64_t steps_in_epoch) {
  v1::MetricsReport r;
  r.set_run(options_.run_name);
  r.set_rank(world_.rank());
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
  client_->report(r);
}

EpochResult TrainingJob::train_epoch(const PhasePlan& plan, int epoch, std::int64_t start_batch) {
  const std::string phase = models::phase_name(plan.phase);
  const int global_epoch = plan.first_global_epoch + epoch - 1;
  model_->train();
  data::PrefetchOptions po;
  po.queue_depth = options_.prefetch;
  po.augment = cache_head_ && plan.phase == models::Phase::kHead ? head_augment_ : augment_;
  po.num_classes = options_.num_classes;
  po.input = input_layout();
  v1::StreamShardRequest request = shard_request(options_.train_split, global_epoch, true);
  request.set_start_batch(start_batch);
  // From the second pass of a cached head phase on, the features are here:
  // the images would be streamed and decoded only to be dropped.
  request.set_labels_only(cache_ != nullptr && plan.phase == models::Phase::kHead &&
                          cache_holds_train_);
  data::ShardPrefetcher prefetcher(*client_, request, po);

  MetricTotals epoch_totals;
  MetricTotals interval;
  double interval_wait_ms = 0.0;
  double seconds_before = 0.0;  // spent on this epoch by an earlier attempt
  if (start_batch > 0) {
    // Resumed mid-epoch: the coordinator dropped the preempted attempt's
    // partial reports of this epoch when the run restarted, so each rank
    // reports what it had counted before (stored in the checkpoint) once
    // more, and the epoch's totals come out whole.
    const PartialTotals& before = state_.epoch_partial.at(static_cast<std::size_t>(world_.rank()));
    epoch_totals.loss_sum = before.loss_sum;
    epoch_totals.top1 = before.top1;
    epoch_totals.top3 = before.top3;
    epoch_totals.samples = before.samples;
    seconds_before = state_.epoch_seconds;
    // last_lr_ is the checkpoint's last step's, set when it was loaded.
    report(phase, epoch, v1::SPLIT_KIND_TRAIN, epoch_totals, 0.0, 0.0, last_lr_, false, start_batch,
           0);
  }
  const auto start = Clock::now();
  auto interval_start = start;
  std::int64_t step = start_batch;
  last_progress_ = start;
  const std::string reading =
      phase + " epoch " + std::to_string(epoch) + ", train split '" + options_.train_split + "'";
  while (auto batch = next_batch(prefetcher, reading)) {
    const bool cached = cache_ != nullptr && plan.phase == models::Phase::kHead;
    const torch::Tensor input =
        cached ? train_features(*batch, global_epoch, prefetcher) : to_input(*batch);
    const torch::Tensor labels = to_labels(*batch);
    const double lr = learning_rate(plan.schedule, state_.phase_step);
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
    reducer_->prepare_for_backward();
    torch::manual_seed(dropout_seed(options_.seed, global_epoch, world_.rank(), step));
    torch::Tensor logits;
    torch::Tensor loss;
    {
      models::AutocastScope autocast(bf16(), device_.is_cuda());
      logits = cached ? model_->head_forward(input) : model_->forward(input);
      loss = torch::nn::functional::cross_entropy(logits, labels);
    }
    loss.backward();
    reducer_->finalize_backward();
    if (options_.kernels.fused_adam) {
      fused_adam_step(*optimizer_);
    } else {
      optimizer_->step();
    }
    if (options_.step_delay_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.step_delay_ms));
    }
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
             lr, last, step, batch->num_batches);
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
      line.elapsed_s = seconds_before + seconds_since(start);
      const double this_attempt_s = seconds_since(start);
      line.data_wait = this_attempt_s > 0 ? prefetcher.wait_ms() / 1000.0 / this_attempt_s : -1.0;
      line.images_per_second = line.elapsed_s > 0 ? static_cast<double>(epoch_totals.samples) *
                                                        world_.size() / line.elapsed_s
                                                  : 0.0;
      progress_printer_.show(format_progress(line));
    }
    if (options_.preempt_after_steps > 0 && steps_this_attempt_ == options_.preempt_after_steps &&
        world_.rank() == world_.size() - 1) {
      spdlog::warn(
          "injected preemption: --preempt-after-steps {} reached; acting as if SIGUSR1 "
          "arrived",
          options_.preempt_after_steps);
      PreemptionWatch::request_locally(SIGUSR1);
    }
    // The last step of an epoch is left to end_of_epoch, which checks after
    // the epoch's checkpoint: that one is worth more than a mid-epoch one.
    if (!last && preemption_.agreed(comms_->host())) {
      preempt_mid_epoch(plan, epoch, step, epoch_totals, seconds_before + seconds_since(start));
      return {epoch_totals, seconds_before + seconds_since(start), true,
              prefetcher.wait_ms() / 1000.0};
    }
    prefetcher.recycle(std::move(*batch));  // its buffers hold a later batch
  }
  if (cache_ != nullptr && plan.phase == models::Phase::kHead) {
    share_cached_features();
    cache_holds_train_ = true;
  }
  return {epoch_totals, seconds_before + seconds_since(start), false,
          prefetcher.wait_ms() / 1000.0};
}

void TrainingJob::preempt_mid_epoch(const PhasePlan& plan, int epoch, std::int64_t steps_done,
                                    const MetricTotals& totals, double seconds) {
  const std::string phase = models::phase_name(plan.phase);
  // Every rank's counts, in rank order: each rank re-reports its own after
  // the resume.
  const auto world = static_cast<std::size_t>(world_.size());
  const auto me = static_cast<std::size_t>(world_.rank());
  std::vector<double> sums(world * 2, 0.0);
  std::vector<std::int64_t> counts(world * 3, 0);
  sums[me * 2] = totals.loss_sum;
  sums[me * 2 + 1] = seconds;
  counts[me * 3] = totals.top1;
  counts[me * 3 + 1] = totals.top3;
  counts[me * 3 + 2] = totals.samples;
  sum_over_ranks(comms_->host(), sums, "preemption: partial epoch loss");
  sum_over_ranks(comms_->host(), counts, "preemption: partial epoch counts");

  TrainingState state = state_;
  state.phase = phase;
  state.epochs_done = epoch - 1;
  state.global_epoch = plan.first_global_epoch + epoch - 1;
  state.val_loss = std::numeric_limits<double>::quiet_NaN();
  state.val_top1 = 0.0;
  state.world_size = world_.size();
  state.batch_size = options_.batch_size;
  state.seed = options_.seed;
  state.epoch_steps_done = steps_done;
  state.epoch_seconds = sums[0 * 2 + 1];  // rank 0's clock, as its progress line shows
  state.epoch_partial.assign(world, {});
  for (std::size_t r = 0; r < world; ++r) {
    state.epoch_partial[r] = {sums[r * 2], counts[r * 3], counts[r * 3 + 1], counts[r * 3 + 2]};
  }

  std::string checkpoint_id;
  on_rank0(comms_->host(), "storing the preemption checkpoint", [&] {
    const std::vector<char> bytes = encode_checkpoint(metadata_, *model_, *optimizer_, state);
    v1::CheckpointMeta meta;
    meta.set_run(options_.run_name);
    meta.set_phase(phase);
    // After the checkpoint of the epoch before (same epoch count, later
    // step), before the one of this epoch's end.
    meta.set_epoch(state.global_epoch);
    meta.set_step(state.global_step);
    meta.set_metric_name("val_loss");
    // Not validated: NaN ranks below every validated checkpoint, so "best"
    // never picks it.
    meta.set_metric_value(std::numeric_limits<double>::quiet_NaN());
    meta.set_direction(v1::METRIC_DIRECTION_MINIMIZE);
    checkpoint_id = store_checkpoint(
        meta, bytes, fmt::format("{} epoch {} step {} (preemption)", phase, epoch, steps_done),
        "the job stops as asked; its next attempt resumes from the run's latest stored "
        "checkpoint");
  });
  last_checkpoint_id_ = broadcast_string(comms_->host(), checkpoint_id, "checkpoint id");
  mark_preempted(
      last_checkpoint_id_.empty()
          ? fmt::format("no checkpoint could be stored at {} epoch {} step {} of it (global step "
                        "{}); the resume starts from the run's latest stored checkpoint",
                        phase, epoch, steps_done, state.global_step)
          : fmt::format("checkpoint {} stored at {} epoch {} step {} of it (global step {})",
                        last_checkpoint_id_, phase, epoch, steps_done, state.global_step));
}

void TrainingJob::preempt_at_boundary(const PhasePlan& plan, int epoch) {
  mark_preempted(
      last_checkpoint_id_.empty()
          ? fmt::format("no checkpoint could be stored at the end of {} epoch {} (global step {}); "
                        "the resume starts from the run's latest stored checkpoint",
                        models::phase_name(plan.phase), epoch, state_.global_step)
          : fmt::format("checkpoint {} stored at the end of {} epoch {} (global step {})",
                        last_checkpoint_id_, models::phase_name(plan.phase), epoch,
                        state_.global_step));
}

void TrainingJob::mark_preempted(const std::string& where) {
  const std::string signal =
      preemption_.requested_locally() ? preemption_.signal_name() : "a signal to another rank";
  on_rank0(comms_->host(), "marking the run preempted", [&] {
    const std::string message = "preempted (" + signal + "): " + where;
    client_->end_run(options_.run_name, v1::RUN_STATE_PREEMPTED, message);
    spdlog::warn("{}; continue with --resume auto (or latest); exiting with code {}", message,
                 kExitPreempted);
  });
}

evaluation::ClassificationCounts TrainingJob::evaluate(const std::string& split,
                                                       const char* split_name,
                                                       const std::string& phase, int epoch,
                                                       PredictionSampler* samples) {
  torch::NoGradGuard no_grad;
  model_->eval();
  data::PrefetchOptions po;
  po.queue_depth = options_.prefetch;
  po.num_classes = options_.num_classes;
  po.input = input_layout();
  const bool cached = cache_ != nullptr && std::string(split_name) == "val";
  v1::StreamShardRequest request = shard_request(split, 0, false);
  request.set_labels_only(cached && cache_holds_val_ && samples == nullptr);
  data::ShardPrefetcher prefetcher(*client_, request, po);
  evaluation::ClassificationCounts counts(options_.num_classes);
  const auto start = Clock::now();
  const std::string reading = std::string(split_name) + " split '" + split + "'";
  std::int64_t batches = 0;  // evaluated by this rank: the report's step
  while (auto batch = next_batch(prefetcher, reading)) {
    ++batches;
    const torch::Tensor labels = to_labels(*batch);
    torch::Tensor logits;
    {
      models::AutocastScope autocast(bf16(), device_.is_cuda());
      logits = eval_logits(*batch, cached, prefetcher).to(torch::kFloat32);
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
  MetricTotals m;
  m.loss_sum = counts.loss_sum;
  m.top1 = counts.top1();
  m.top3 = counts.top3;
  m.samples = counts.samples();
  const double secs = seconds_since(start);
  report(phase, epoch, to_split_kind(split_name), m, secs > 0 ? m.samples / secs : 0.0,
         prefetcher.wait_ms(), last_lr_, true, batches, batches);
  // An evaluation shard is the same every pass: this rank has its rows now.
  if (cached) cache_holds_val_ = true;
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

bool TrainingJob::end_of_epoch(const PhasePlan& plan, int epoch, const MetricTotals& train_local,
                               double seconds, double data_wait_s) {
  const std::string phase = models::phase_name(plan.phase);
  // Every rank's train counts, summed: the numbers the coordinator
  // aggregates from the reports.
  // The last two: each rank's seconds waiting for data and in the epoch, for
  // the mean share of waiting in the summary line.
  std::vector<double> train{train_local.loss_sum,
                            static_cast<double>(train_local.top1),
                            static_cast<double>(train_local.top3),
                            static_cast<double>(train_local.samples),
                            data_wait_s,
                            seconds};
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
  state_.epoch_steps_done = 0;  // an epoch boundary
  state_.epoch_seconds = 0.0;
  state_.epoch_partial.clear();
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
             const std::string what = phase + " epoch " + std::to_string(epoch);
             checkpoint_id = store_checkpoint(meta, bytes, what, "training continues without it");
             best = !checkpoint_id.empty() && state_.val_loss < best_val_loss_in_phase_;
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
             if (train[5] > 0) line.data_wait = train[4] / train[5];
             progress_printer_.clear();  // the summary takes the progress line's place
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
  if (preemption_.agreed(comms_->host())) {
    preempt_at_boundary(plan, epoch);
    return false;
  }
  return true;
}

void TrainingJob::restore_best_head() {
  FetchedCheckpoint best = fetch_checkpoint("best", "head", CheckpointUse::kRestoreHead);
  // None usable (rank 0 said why): the head phase's last weights stay.
  if (best.id.empty()) return;
  const std::string& id = best.id;
  const std::string source = "checkpoint " + id;
  const DecodedCheckpoint decoded = take_decoded(best);
  models::load_state_dict(*model_, decoded.weights.state_dict, source);
  if (world_.rank() == 0) {
    spdlog::info(
        "restored the best head checkpoint {} (head epoch {}, val_loss {:.4f}) before "
        "fine-tuning",
        id, decoded.state.epochs_done, decoded.state.val_loss);
  }
}

bool TrainingJob::run_phase(std::size_t index, int first_epoch, bool resume_optimizer) {
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
  // The head phase's feature cache lives as long as the phase.
  struct ReleaseCache {
    std::unique_ptr<FeatureCache>& cache;
    ~ReleaseCache() { cache.reset(); }
  } release_cache{cache_};
  if (plan.phase == models::Phase::kHead && cache_head_) {
    const fs::path folder =
        options_.cache_dir.empty() ? fs::temp_directory_path() : fs::path(options_.cache_dir);
    const fs::path spill =
        folder / fmt::format("xfer-features-rank{}-pid{}.bin", world_.rank(), ::getpid());
    cache_ =
        std::make_unique<FeatureCache>(model_->feature_channels(), options_.cache_mb << 20, spill);
    cache_new_keys_.clear();
    cache_stats_mark_ = {};
    cache_holds_train_ = false;
    cache_holds_val_ = false;
    cache_refetched_batches_ = 0;
    if (world_.rank() == 0) {
      spdlog::info(
          "head phase: training the head from cached base features ({} floats per sample and "
          "flip, computed once; augmentation {}); up to {} MiB per rank in memory, then {}",
          model_->feature_channels(), data::to_string(head_augment_), options_.cache_mb,
          spill.string());
    }
  }
  if (world_.rank() == 0) {
    const auto counts = model_->parameter_counts();
    spdlog::info(
        "phase {}: epochs {}..{} of {}, lr {:g}, decay {:g}; {} trainable / {} frozen "
        "parameters",
        phase, first_epoch, plan.schedule.epochs, plan.schedule.epochs, plan.schedule.lr,
        plan.schedule.decay, counts.trainable, counts.frozen);
  }
  for (int epoch = first_epoch; epoch <= plan.schedule.epochs; ++epoch) {
    // A mid-epoch checkpoint resumes its epoch at the step after its own.
    const std::int64_t start_batch = epoch == first_epoch ? state_.epoch_steps_done : 0;
    const EpochResult result = train_epoch(plan, epoch, start_batch);
    if (result.preempted) return false;
    if (!end_of_epoch(plan, epoch, result.totals, result.seconds, result.data_wait_s)) {
      return false;
    }
  }
  return true;
}

evaluation::ClassificationCounts TrainingJob::evaluate_test(PredictionSampler* samples) {
  evaluation::ClassificationCounts test =
      evaluate(options_.test_split, "test", state_.phase.empty() ? "head" : state_.phase,
               state_.epochs_done, samples);
  sum_counts(comms_->host(), test, "test evaluation");
  return test;
}

void TrainingJob::finish() {
  const std::string last_phase = state_.phase.empty() ? "head" : state_.phase;
  PredictionSampler samples;
  evaluation::ClassificationCounts test = evaluate_test(&samples);
  const std::vector<v1::PredictionSample> predictions = samples.gather(comms_->host());
  on_rank0(comms_->host(), "storing the test report", [&] {
    const evaluation::EvaluationReport report =
        evaluation::summarize(test, metadata_.labels, options_.test_split, last_checkpoint_id_);
    v1::RunReport proto = evaluation::to_proto(report, options_.run_name);
    for (const auto& prediction : predictions) *proto.add_predictions() = prediction;
    client_->put_report(proto);
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

JobOutcome TrainingJob::run() {
  if (device_choice_.cuda) device_ = torch::Device(torch::kCUDA, device_choice_.cuda_index);
  dist::apply_device(device_choice_);
  comms_ = std::make_unique<dist::Communicators>(world_, device_choice_, options_.dist.comm);
  try {
    augment_ = data::parse_augment(options_.augment);
  } catch (const std::exception& e) {
    throw SharedError(e.what());  // it names --augment and the expected form
  }
  plan_feature_cache();
  connect();
  start_run();
  if (resume_ == kAlreadyCompleted) return JobOutcome::kCompleted;
  heartbeat_ = start_job_heartbeat(*client_, options_, world_, attempt_);
  build_model();

  // Where to start: after a resume, the epoch after the checkpoint's, or the
  // next phase's first epoch when the checkpoint ended its phase.
  std::size_t first_phase = 0;
  int first_epoch = 1;
  bool resume_optimizer = false;
  if (resumed_) {
    const std::size_t done_phase =
        static_cast<std::size_t>(phase_index(models::parse_phase(state_.phase)));
    if (state_.epochs_done < plan_[done_phase].schedule.epochs || state_.mid_epoch()) {
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
    if (!run_phase(phase, first_epoch, resume_optimizer)) return JobOutcome::kPreempted;
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
  return JobOutcome::kCompleted;
}

}  // namespace

JobOutcome run_training_job(const TrainOptions& options, dist::World& world,
                            JobProgress& progress) {
  TrainingJob job(options, world, progress);
  return job.run();
}

}  // namespace xfer::trainer::train
