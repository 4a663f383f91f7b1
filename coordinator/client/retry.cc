#include "coordinator/client/retry.h"

namespace xfer::coordinator::client {

bool is_transient(grpc::StatusCode code, Idempotency idempotency) {
  if (code == grpc::StatusCode::UNAVAILABLE) return true;
  return code == grpc::StatusCode::DEADLINE_EXCEEDED && idempotency == Idempotency::kIdempotent;
}

RetryState::RetryState(const BackoffPolicy& policy, std::uint64_t seed,
                       std::chrono::milliseconds reconnect_window, Clock clock)
    : backoff_(policy, seed),
      window_(reconnect_window),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {}

std::optional<std::chrono::milliseconds> RetryState::on_failure(grpc::StatusCode code,
                                                                Idempotency idempotency) {
  ++failures_;
  if (!is_transient(code, idempotency)) return std::nullopt;
  const auto now = clock_();
  if (!first_failure_) first_failure_ = now;
  const std::chrono::milliseconds delay = backoff_.next();
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - *first_failure_);
  if (elapsed + delay > window_) return std::nullopt;
  return delay;
}

void RetryState::on_progress() {
  first_failure_.reset();
  backoff_.reset();
}

}  // namespace xfer::coordinator::client
