#include "trainer/train/run_lifecycle.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <utility>

#include "coordinator/client/errors.h"
#include "trainer/train/collective.h"
#include "trainer/train/preemption.h"

namespace xfer::trainer::train {
namespace {

namespace client = coordinator::client;

// What rank 0 broadcasts as the decided resume when --resume auto found the
// run COMPLETED.
constexpr char kAlreadyCompleted[] = "(already completed)";

// --resume auto: "latest" when the run exists and has a checkpoint, else "".
std::string resolve_auto_resume(JobCoordinator& coordinator, const TrainOptions& options,
                                const std::optional<v1::Run>& existing) {
  if (!existing) {
    spdlog::info("--resume auto: no run {} at the coordinator yet; starting it", options.run_name);
    return "";
  }
  try {
    const v1::CheckpointInfo latest = coordinator.latest_checkpoint(options.run_name, "");
    spdlog::info(
        "--resume auto: run {} exists (attempt {}, {}); continuing from its latest "
        "checkpoint {}",
        options.run_name, existing->attempt(), v1::RunState_Name(existing->state()), latest.id());
    return "latest";
  } catch (const client::RpcError& e) {
    if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
    spdlog::info(
        "--resume auto: run {} exists (attempt {}) but has no checkpoint; it "
        "starts over",
        options.run_name, existing->attempt());
    return "";
  }
}

// The run as the coordinator has it, or nullopt when it has none.
std::optional<v1::Run> find_run(JobCoordinator& coordinator, const std::string& name) {
  try {
    return coordinator.get_run(name);
  } catch (const client::RpcError& e) {
    if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
  }
  return std::nullopt;
}

// Read-only checks: the run's existence against --resume, its dataset, and
// every split the job will ask for.
void check_run_options(JobCoordinator& coordinator, const TrainOptions& options,
                       const std::optional<v1::Run>& existing, const std::string& resume) {
  if (existing && options.resume.empty()) {
    throw std::runtime_error("run '" + options.run_name + "' exists already (attempt " +
                             std::to_string(existing->attempt()) + ", " +
                             v1::RunState_Name(existing->state()) +
                             "); pass --resume latest to continue it, or choose another "
                             "--run-name");
  }
  if (!existing && !resume.empty()) {
    throw std::runtime_error("--resume " + options.resume + ": the coordinator has no run '" +
                             options.run_name + "' to resume");
  }
  if (existing && existing->dataset() != options.dataset) {
    throw std::runtime_error("--dataset " + options.dataset + ": run '" + options.run_name +
                             "' was started on dataset '" + existing->dataset() + "'");
  }
  // A split the dataset cannot give fails the job before anything is
  // started or changed at the coordinator.
  for (const auto& [flag, spec] :
       {std::pair<std::string, std::string>{"--train-split", options.train_split},
        {"--val-split", options.val_split},
        {"--test-split", options.test_split}}) {
    try {
      coordinator.resolve_split(options.dataset, spec);
    } catch (const client::RpcError& e) {
      if (e.code() != grpc::StatusCode::INVALID_ARGUMENT) throw;
      throw std::runtime_error(flag + " '" + spec + "': " + e.server_message());
    }
  }
}

}  // namespace

RunStart start_run_at_coordinator(JobCoordinator& coordinator, const TrainOptions& options,
                                  int world_size, const std::string& devices) {
  RunStart start;
  const std::optional<v1::Run> existing = find_run(coordinator, options.run_name);
  std::string resume = options.resume;
  if (resume == "auto" && existing && existing->state() == v1::RUN_STATE_COMPLETED) {
    // A requeued job whose run finished already: nothing is left to do.
    spdlog::info("--resume auto: run {} is COMPLETED already (attempt {}); nothing to do",
                 options.run_name, existing->attempt());
    start.already_completed = true;
    return start;
  }
  if (resume == "auto") resume = resolve_auto_resume(coordinator, options, existing);
  start.resume = resume;
  check_run_options(coordinator, options, existing, resume);
  v1::StartRunRequest request;
  request.set_name(options.run_name);
  request.set_dataset(options.dataset);
  request.set_world_size(world_size);
  request.set_config_json(to_json(options));
  const v1::Run run = coordinator.start_run(request);
  start.attempt = run.attempt();
  const v1::DatasetInfo info = coordinator.get_dataset_info(options.dataset);
  for (int i = 0; i < options.num_classes; ++i) {
    start.labels.push_back(i < info.fine_label_names_size() ? info.fine_label_names(i)
                                                            : "class_" + std::to_string(i));
  }
  spdlog::info("run {} attempt {} on dataset {} with {} ranks ({})", run.name(), run.attempt(),
               run.dataset(), world_size, devices);
  std::filesystem::create_directories(options.run_dir);
  return start;
}

RunStart start_run(JobCoordinator& coordinator, dist::Communicator& host,
                   const TrainOptions& options, int world_size, const std::string& devices) {
  RunStart start;
  on_rank0(host, "starting the run at the coordinator " + options.coordinator,
           [&] { start = start_run_at_coordinator(coordinator, options, world_size, devices); });
  const std::string resume = broadcast_string(
      host, start.already_completed ? std::string(kAlreadyCompleted) : start.resume, "--resume");
  start.attempt = std::stoi(broadcast_string(host, std::to_string(start.attempt), "run attempt"));
  start.already_completed = resume == kAlreadyCompleted;
  start.resume = start.already_completed ? "" : resume;
  return start;
}

void check_resumable(const TrainingState& state, int world_size, int batch_size, int rank,
                     const std::string& source, const std::string& run_name) {
  if (state.mid_epoch() && (state.world_size != world_size || state.batch_size != batch_size)) {
    // The rest of the epoch is the rest of *these* shards: another world
    // size or batch would cut the epoch differently and lose or repeat
    // samples.
    throw SharedError(source + " was taken in the middle of " + state.phase + " epoch " +
                      std::to_string(state.epochs_done + 1) + " with " +
                      std::to_string(state.world_size) + " ranks x batch " +
                      std::to_string(state.batch_size) + "; resume it with the same world " +
                      "size and --batch-size (here " + std::to_string(world_size) + " x " +
                      std::to_string(batch_size) +
                      "), or resume from an end-of-epoch checkpoint with --resume ID (see "
                      "coordctl checkpoints list " +
                      run_name + ")");
  }
  if (state.world_size != world_size || state.batch_size != batch_size) {
    spdlog::warn(
        "resuming with {} ranks x batch {} (global batch {}) where the checkpoint was taken "
        "with {} x {} (global batch {}): the remaining epochs are cut into different steps",
        world_size, batch_size, world_size * batch_size, state.world_size, state.batch_size,
        state.world_size * state.batch_size);
  }
  if (rank != 0) return;
  if (state.mid_epoch()) {
    spdlog::info("resuming {} epoch {} at step {} of it (global step {})", state.phase,
                 state.epochs_done + 1, state.epoch_steps_done + 1, state.global_step + 1);
  } else {
    spdlog::info("resuming after {} epoch {} (step {}, val_loss {:.4f})", state.phase,
                 state.epochs_done, state.global_step, state.val_loss);
  }
}

void mark_run_preempted(JobCoordinator& coordinator, dist::Communicator& host,
                        const std::string& run, const std::string& signal,
                        const std::string& where) {
  on_rank0(host, "marking the run preempted", [&] {
    const std::string message = "preempted (" + signal + "): " + where;
    coordinator.end_run(run, v1::RUN_STATE_PREEMPTED, message);
    spdlog::warn("{}; continue with --resume auto (or latest); exiting with code {}", message,
                 kExitPreempted);
  });
}

void complete_run(JobCoordinator& coordinator, const TrainOptions& options,
                  std::int64_t global_step, std::int64_t steps_this_attempt, double test_top1,
                  double test_top3) {
  coordinator.end_run(options.run_name, v1::RUN_STATE_COMPLETED,
                      fmt::format("{} optimizer steps; test top-1 {:.4f}, top-3 {:.4f}",
                                  global_step, test_top1, test_top3));
  spdlog::info("finished: {} optimizer steps in total ({} this attempt)", global_step,
               steps_this_attempt);
  spdlog::info(
      "model: {}/model.pt; report: {}/report.json (also: coordctl report {}); "
      "checkpoints: coordctl checkpoints list {}",
      options.run_dir, options.run_dir, options.run_name, options.run_name);
}

}  // namespace xfer::trainer::train
