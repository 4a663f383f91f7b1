// Internal to the client library: the state one CoordinatorClient and every
// reader it opened share (channel, stubs, token, options), and the steps of
// one attempt every call takes. Readers hold a shared_ptr to it, so a reader
// may outlive the client that opened it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "coordinator/client/client_options.h"
#include "coordinator/client/retry.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace xfer::coordinator::client::detail {

class Connection {
 public:
  // Reads the token file and validates the options; throws ClientError.
  Connection(ClientOptions options, std::shared_ptr<grpc::Channel> channel);

  const ClientOptions& options() const { return options_; }
  const std::string& address() const { return options_.address; }

  // Deadline `now + deadline` and the authorization metadata.
  void prepare(grpc::ClientContext& context, std::chrono::milliseconds deadline) const;

  // A retry state with its own jitter seed.
  RetryState new_retry_state();

  // Logs the retry (method, code, message, delay) at warning level.
  void log_retry(const char* method, const grpc::Status& status, std::chrono::milliseconds delay,
                 int attempt) const;

  // Stubs are thread-safe.
  v1::DataService::Stub& data() const { return *data_; }
  v1::RunService::Stub& runs() const { return *runs_; }
  v1::MetricsService::Stub& metrics() const { return *metrics_; }
  v1::CheckpointService::Stub& checkpoints() const { return *checkpoints_; }

 private:
  // Constant after construction.
  ClientOptions options_;
  std::string token_;  // empty: no authorization metadata
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DataService::Stub> data_;
  std::unique_ptr<v1::RunService::Stub> runs_;
  std::unique_ptr<v1::MetricsService::Stub> metrics_;
  std::unique_ptr<v1::CheckpointService::Stub> checkpoints_;
  std::uint64_t base_seed_;

  std::atomic<std::uint64_t> next_seed_{0};
};

// A sleep that cancel() cuts short: readers wait their backoff on it so a
// cancel from another thread does not wait out a 5 s delay.
class CancellableSleep {
 public:
  // Returns false when cancelled (before or during the wait).
  bool sleep_for(std::chrono::milliseconds delay);
  void cancel();
  bool cancelled() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool cancelled_ = false;  // GUARDED_BY(mutex_)
};

}  // namespace xfer::coordinator::client::detail
