#include "coordinator/client/connection.h"

#include <spdlog/spdlog.h>

#include <random>

#include "coordinator/client/credentials.h"
#include "coordinator/client/errors.h"

namespace xfer::coordinator::client::detail {

Connection::Connection(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)), channel_(std::move(channel)) {
  validate(options_);
  if (!options_.token_file.empty()) token_ = read_token_file(options_.token_file);
  if (!channel_) channel_ = make_channel(options_);
  data_ = v1::DataService::NewStub(channel_);
  runs_ = v1::RunService::NewStub(channel_);
  metrics_ = v1::MetricsService::NewStub(channel_);
  checkpoints_ = v1::CheckpointService::NewStub(channel_);
  if (options_.jitter_seed) {
    base_seed_ = *options_.jitter_seed;
  } else {
    std::random_device device;
    base_seed_ = (static_cast<std::uint64_t>(device()) << 32) ^ device();
  }
}

void Connection::prepare(grpc::ClientContext& context, std::chrono::milliseconds deadline) const {
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
}

RetryState Connection::new_retry_state() {
  // Distinct, reproducible seeds per call: base seed plus a counter, mixed
  // so neighbouring counters do not give correlated engines.
  std::seed_seq seq{base_seed_, next_seed_.fetch_add(1)};
  std::uint32_t words[2];
  seq.generate(words, words + 2);
  const std::uint64_t seed = (static_cast<std::uint64_t>(words[0]) << 32) | words[1];
  return RetryState(options_.backoff, seed, options_.reconnect_window);
}

void Connection::log_retry(const char* method, const grpc::Status& status,
                           std::chrono::milliseconds delay, int attempt) const {
  spdlog::warn(
      "{} to coordinator {}: {} ({}); attempt {} failed, retrying in {} ms "
      "(reconnect window {:.1f} s)",
      method, options_.address, status_code_name(status.error_code()), status.error_message(),
      attempt, delay.count(), options_.reconnect_window.count() / 1000.0);
}

bool CancellableSleep::sleep_for(std::chrono::milliseconds delay) {
  std::unique_lock<std::mutex> lock(mutex_);
  return !cv_.wait_for(lock, delay, [this] { return cancelled_; });
}

void CancellableSleep::cancel() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_ = true;
  }
  cv_.notify_all();
}

bool CancellableSleep::cancelled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_;
}

}  // namespace xfer::coordinator::client::detail
