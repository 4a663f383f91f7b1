#include "coordinator/server/server.h"

#include <grpcpp/ext/health_check_service_server_builder_option.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "coordinator/checkpoint/checkpoint_store.h"
#include "coordinator/metrics/metrics_store.h"
#include "coordinator/server/auth.h"
#include "coordinator/server/checkpoint_service.h"
#include "coordinator/server/data_service.h"
#include "coordinator/server/dataset_registry.h"
#include "coordinator/server/metrics_service.h"
#include "coordinator/server/recent_errors.h"
#include "coordinator/server/report_store.h"
#include "coordinator/server/run_registry.h"
#include "coordinator/server/run_service.h"
#include "coordinator/tensorboard/run_event_writers.h"

namespace xfer::coordinator::server {
namespace {

namespace fs = std::filesystem;

std::string read_pem(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(std::string(flag) + " " + path + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN") == std::string::npos) {
    throw std::invalid_argument(std::string(flag) + " " + path +
                                ": not a PEM file (expected '-----BEGIN ...')");
  }
  return text.str();
}

void ensure_directory(const std::string& dir, const char* flag) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    throw std::invalid_argument(std::string(flag) + " " + dir + ": cannot create directory" +
                                (ec ? " (" + ec.message() + ")" : std::string()));
  }
}

// Get sends blobs in chunks of this size: far below any message limit.
constexpr std::int64_t kCheckpointChunkBytes = 1 << 20;

checkpoint::StoreOptions checkpoint_options(const CoordinatorOptions& options) {
  checkpoint::StoreOptions store;
  store.keep_best = options.keep_best;
  store.keep_last = options.keep_last;
  return store;
}

std::optional<std::string> optional_token(const std::string& path) {
  if (path.empty()) return std::nullopt;
  std::string token = read_token_file(path);
  if (auto warning = token_file_mode_warning(path)) spdlog::warn("{}", *warning);
  return token;
}

std::string listen_host(const std::string& listen) { return listen.substr(0, listen.rfind(':')); }

// The TensorBoard writers, or none without --tensorboard-dir. Their write
// failures go where `coordctl status` shows them.
std::unique_ptr<tensorboard::RunEventWriters> make_tensorboard(const CoordinatorOptions& options,
                                                               const metrics::MetricsStore& store,
                                                               RecentErrors& errors) {
  if (options.tensorboard_dir.empty()) return nullptr;
  tensorboard::TensorBoardOptions tb;
  tb.dir = options.tensorboard_dir;
  return std::make_unique<tensorboard::RunEventWriters>(
      tb, store, [&errors](const std::string& message) { errors.add(message); });
}

// Largest --rank-timeout: a day.
constexpr int kMaxRankTimeoutSeconds = 86400;

// Runs `task` every `period` on its own thread until stop() (or the
// destructor). The task's exceptions are its own business: it catches them.
class PeriodicTask {
 public:
  PeriodicTask(std::chrono::milliseconds period, std::function<void()> task)
      : period_(period), task_(std::move(task)), thread_([this] { loop(); }) {}
  ~PeriodicTask() { stop(); }
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  // Wakes the thread and joins it. Idempotent.
  void stop() {
    std::lock_guard<std::mutex> join_lock(join_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!wake_.wait_for(lock, period_, [this] { return stopping_; })) {
      lock.unlock();
      task_();
      lock.lock();
    }
  }

  const std::chrono::milliseconds period_;
  const std::function<void()> task_;
  std::mutex join_mutex_;  // one stop() joins at a time
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;     // last: starts once the members above exist
};

}  // namespace

void validate(const CoordinatorOptions& options) {
  const auto colon = options.listen.rfind(':');
  if (options.listen.empty() || colon == std::string::npos || colon + 1 == options.listen.size()) {
    throw std::invalid_argument("--listen '" + options.listen +
                                "': expected HOST:PORT, e.g. 127.0.0.1:50051 (port 0 picks one)");
  }
  const bool has_token = !options.token_file.empty() || !options.read_token_file.empty();
  if (!has_token && !options.insecure && !is_loopback_host(listen_host(options.listen))) {
    throw std::invalid_argument(
        "--listen " + options.listen +
        " is not a loopback address and no --token-file was given: anyone who can reach it "
        "could start runs, report metrics and delete checkpoints (expected --token-file, a "
        "127.0.0.1 address, or --insecure to serve without tokens on purpose)");
  }
  if (options.datasets.empty()) {
    throw std::invalid_argument("no --dataset given (expected at least one NAME=DIR)");
  }
  if (options.checkpoint_dir.empty()) {
    throw std::invalid_argument("--checkpoint-dir is required (where checkpoints are stored)");
  }
  if (options.state_dir.empty()) {
    throw std::invalid_argument("--state-dir is required (metrics history and run records)");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    throw std::invalid_argument("--tls-cert and --tls-key go together (got only one of them)");
  }
  if (options.max_message_bytes < (1 << 20) || options.max_message_bytes > (1 << 30)) {
    throw std::invalid_argument("--max-message-bytes " + std::to_string(options.max_message_bytes) +
                                " is out of range (expected 1 MiB .. 1 GiB)");
  }
  if (options.max_batch_size < 1) {
    throw std::invalid_argument("--max-batch-size must be at least 1");
  }
  if (options.keep_best < 0 || options.keep_last < 0 || options.keep_best + options.keep_last < 1) {
    throw std::invalid_argument("--keep-best " + std::to_string(options.keep_best) +
                                " / --keep-last " + std::to_string(options.keep_last) +
                                ": expected non-negative counts that keep at least one checkpoint");
  }
  if (options.rank_timeout_s < 0 || options.rank_timeout_s > kMaxRankTimeoutSeconds) {
    throw std::invalid_argument("--rank-timeout " + std::to_string(options.rank_timeout_s) +
                                " is out of range (expected 0 to turn the rank liveness check "
                                "off, or 1.." +
                                std::to_string(kMaxRankTimeoutSeconds) + " seconds)");
  }
}

struct Coordinator::State {
  CoordinatorOptions options;
  Authorizer auth;
  DatasetRegistry datasets;
  RunRegistry runs;
  metrics::MetricsStore metrics;
  checkpoint::CheckpointStore checkpoints;
  ReportStore reports;
  RecentErrors errors;
  // Null without --tensorboard-dir.
  std::unique_ptr<tensorboard::RunEventWriters> tensorboard;
  DataServiceImpl data_service;
  RunServiceImpl run_service;
  MetricsServiceImpl metrics_service;
  CheckpointServiceImpl checkpoint_service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::once_flag shutdown_once;
  // Marks runs with a silent rank FAILED (--rank-timeout); null when off.
  // Last: destroyed (joined) before everything it uses.
  std::unique_ptr<PeriodicTask> liveness_checker;

  explicit State(const CoordinatorOptions& opts);
};

Coordinator::State::State(const CoordinatorOptions& opts)
    : options(opts),
      auth(optional_token(opts.token_file), optional_token(opts.read_token_file)),
      datasets(opts.datasets),
      runs(opts.state_dir),
      metrics(metrics::MetricsStoreOptions{fs::path(opts.state_dir) / "metrics"}),
      checkpoints(opts.checkpoint_dir, checkpoint_options(opts)),
      reports(opts.state_dir),
      tensorboard(make_tensorboard(opts, metrics, errors)),
      data_service(datasets, runs, auth, opts.max_batch_size),
      run_service(runs, datasets, metrics, reports, errors, auth),
      metrics_service(
          metrics, runs, errors, auth,
          [this](const metrics::RankReport& report, const metrics::ReportResult& result) {
            if (tensorboard) tensorboard->on_report(report, result);
          }),
      checkpoint_service(checkpoints, runs, errors, auth, kCheckpointChunkBytes,
                         opts.test_crash_in_put) {}

Coordinator::Coordinator(const CoordinatorOptions& options) {
  validate(options);
  ensure_directory(options.checkpoint_dir, "--checkpoint-dir");
  ensure_directory(options.state_dir, "--state-dir");
  state_ = std::make_unique<State>(options);
  // A damaged report costs that run its report (GetReport answers DATA_LOSS),
  // not the whole coordinator: say so where `coordctl status` shows it.
  for (const auto& problem : state_->reports.damaged_at_open()) state_->errors.add(problem);

  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({read_pem(options.tls_key_file, "--tls-key"),
                                      read_pem(options.tls_cert_file, "--tls-cert")});
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &state_->port);
  // gRPC sets SO_REUSEPORT by default; two coordinators on one port would
  // then split the calls between them. Refuse instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Clients ping idle streams (a quiet Watch) every 60 s; gRPC's default
  // server would call that abuse and drop the connection.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  builder.RegisterService(&state_->data_service);
  builder.RegisterService(&state_->run_service);
  builder.RegisterService(&state_->metrics_service);
  builder.RegisterService(&state_->checkpoint_service);
  state_->server = builder.BuildAndStart();
  if (!state_->server || state_->port == 0) {
    throw std::runtime_error("--listen " + options.listen +
                             ": cannot listen there (address in use, or not a local address?)");
  }
  state_->server->GetHealthCheckService()->SetServingStatus(true);
  start_liveness_checker();
  spdlog::info("coordinator listening on {} ({}, auth {}, datasets: {}, tensorboard: {})",
               address(), options.tls_cert_file.empty() ? "plaintext" : "TLS",
               state_->auth.enabled() ? "on" : "off", state_->datasets.names_joined(),
               options.tensorboard_dir.empty() ? "off" : options.tensorboard_dir);
  if (!is_loopback_host(listen_host(options.listen))) {
    if (!state_->auth.enabled()) {
      spdlog::warn("--insecure: serving {} without tokens; anyone who reaches it may write",
                   address());
    } else if (options.tls_cert_file.empty()) {
      spdlog::warn("serving {} in plaintext: tokens cross the network readable (use --tls-cert)",
                   address());
    }
  }
}

Coordinator::~Coordinator() { shutdown(); }

int Coordinator::port() const { return state_->port; }

std::string Coordinator::address() const {
  const std::string& listen = state_->options.listen;
  return listen.substr(0, listen.rfind(':')) + ":" + std::to_string(state_->port);
}

void Coordinator::start_liveness_checker() {
  const int timeout_s = state_->options.rank_timeout_s;
  if (timeout_s == 0) {
    spdlog::info(
        "rank liveness check off (--rank-timeout 0): a run whose ranks died stays RUNNING");
    return;
  }
  const std::chrono::milliseconds timeout(std::int64_t{timeout_s} * 1000);
  // A tenth of the timeout, within 0.1..1 s: a silent rank is noticed at
  // most that long after its timeout.
  const auto period =
      std::clamp(timeout / 10, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
  State* state = state_.get();
  state_->liveness_checker = std::make_unique<PeriodicTask>(period, [state, timeout] {
    try {
      state->runs.fail_silent_runs(timeout);
    } catch (const std::exception& e) {
      // runs.json could not be written: say so where `coordctl status` shows it.
      state->errors.add(std::string("rank liveness check: ") + e.what());
      spdlog::error("rank liveness check: {}", e.what());
    }
  });
  spdlog::info(
      "rank liveness: a running run is marked FAILED when one of its ranks sends no "
      "heartbeat for {} s (--rank-timeout)",
      timeout_s);
}

void Coordinator::wait() { state_->server->Wait(); }

void Coordinator::shutdown(std::chrono::milliseconds grace) {
  if (!state_ || !state_->server) return;
  std::call_once(state_->shutdown_once, [&] {
    spdlog::info("coordinator shutting down");
    state_->server->GetHealthCheckService()->SetServingStatus(false);
    if (state_->liveness_checker) state_->liveness_checker->stop();
    state_->metrics.shutdown();  // wakes Watch streams
    state_->server->Shutdown(std::chrono::system_clock::now() + grace);
  });
}

}  // namespace xfer::coordinator::server
