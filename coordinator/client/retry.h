// When a failed call is tried again. The client's unary calls and its stream
// readers share this one rule:
//
//   - UNAVAILABLE is transient for every call: the server was down,
//     restarting or unreachable, and the request did not take effect.
//   - DEADLINE_EXCEEDED is transient only for idempotent calls: the request
//     may have taken effect, so only calls that are safe to repeat (reads,
//     Report, Put with its upload_id, streams resumed from a position) retry.
//   - Every other code is final and surfaces at once.
//
// Transient failures are retried after Backoff delays until the reconnect
// window, counted from the first failure since the last progress, would be
// exceeded by the next delay.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <optional>

#include "coordinator/client/backoff.h"

namespace xfer::coordinator::client {

enum class Idempotency { kIdempotent, kNotIdempotent };

bool is_transient(grpc::StatusCode code, Idempotency idempotency);

// Not thread-safe: one per logical call or stream.
class RetryState {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // `clock` defaults to std::chrono::steady_clock::now; tests pass a fake one.
  RetryState(const BackoffPolicy& policy, std::uint64_t seed,
             std::chrono::milliseconds reconnect_window, Clock clock = {});

  // Records a failed attempt. Returns the delay to wait before the next
  // attempt, or std::nullopt when the failure is final (not transient, or
  // the window is spent).
  std::optional<std::chrono::milliseconds> on_failure(grpc::StatusCode code,
                                                      Idempotency idempotency);

  // A stream delivered a message: the next failure starts a fresh window and
  // backoff sequence.
  void on_progress();

  // Failed attempts recorded so far, for log and error messages.
  int failed_attempts() const { return failures_; }

 private:
  Backoff backoff_;
  std::chrono::milliseconds window_;
  Clock clock_;
  std::optional<std::chrono::steady_clock::time_point> first_failure_;
  int failures_ = 0;
};

}  // namespace xfer::coordinator::client
