#include "coordinator/client/backoff.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "coordinator/client/errors.h"

namespace xfer::coordinator::client {

void validate(const BackoffPolicy& policy) {
  if (policy.initial.count() <= 0) {
    throw ClientError("backoff: initial delay is " + std::to_string(policy.initial.count()) +
                      " ms (expected > 0)");
  }
  if (policy.max < policy.initial) {
    throw ClientError("backoff: max delay " + std::to_string(policy.max.count()) +
                      " ms is below the initial delay " + std::to_string(policy.initial.count()) +
                      " ms (expected max >= initial)");
  }
  if (!(policy.multiplier >= 1.0) || !std::isfinite(policy.multiplier)) {
    throw ClientError("backoff: multiplier is " + std::to_string(policy.multiplier) +
                      " (expected a finite value >= 1)");
  }
  if (!(policy.jitter >= 0.0 && policy.jitter < 1.0)) {
    throw ClientError("backoff: jitter is " + std::to_string(policy.jitter) +
                      " (expected 0 <= jitter < 1)");
  }
}

Backoff::Backoff(const BackoffPolicy& policy, std::uint64_t seed)
    : policy_(policy), rng_(seed), base_ms_(static_cast<double>(policy.initial.count())) {
  validate(policy_);
}

std::chrono::milliseconds Backoff::next() {
  const double max_ms = static_cast<double>(policy_.max.count());
  const double base = std::min(base_ms_, max_ms);
  // A uniform factor in [1 - jitter, 1 + jitter], drawn from the seeded engine
  // (generate_canonical is deterministic for a given engine state).
  const double unit = std::generate_canonical<double, 53>(rng_);
  const double factor = 1.0 + policy_.jitter * (2.0 * unit - 1.0);
  const double delay = std::clamp(base * factor, 1.0, max_ms);
  base_ms_ = std::min(base * policy_.multiplier, max_ms);
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(delay)));
}

void Backoff::reset() { base_ms_ = static_cast<double>(policy_.initial.count()); }

}  // namespace xfer::coordinator::client
