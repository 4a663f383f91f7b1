// Exponential backoff with jitter, as gRPC's connection-backoff document
// describes it: the n-th delay is min(initial * multiplier^n, max), scaled by
// a uniform factor in [1 - jitter, 1 + jitter] and capped at max again.
// Jitter spreads the retries of ranks that lost the coordinator at the same
// moment; the seed makes the sequence reproducible in tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace xfer::coordinator::client {

struct BackoffPolicy {
  // First delay. Default: 100 ms. REQUIRES: > 0.
  std::chrono::milliseconds initial{100};
  // Ceiling of every delay. Default: 5 s. REQUIRES: >= initial.
  std::chrono::milliseconds max{5000};
  // Growth per attempt. Default: 2. REQUIRES: >= 1.
  double multiplier = 2.0;
  // Relative spread. Default: 0.2. REQUIRES: 0 <= jitter < 1.
  double jitter = 0.2;
};

// Throws ClientError naming the field when `policy` breaks a REQUIRES.
void validate(const BackoffPolicy& policy);

// Not thread-safe: one per call (or stream) being retried.
class Backoff {
 public:
  Backoff(const BackoffPolicy& policy, std::uint64_t seed);

  // The delay before the next attempt; advances the sequence.
  std::chrono::milliseconds next();
  // Back to the initial delay (after a success).
  void reset();

 private:
  // Constant after construction.
  BackoffPolicy policy_;

  std::mt19937_64 rng_;
  double base_ms_;  // un-jittered delay of the next attempt
};

}  // namespace xfer::coordinator::client
