// Backoff delays and the retry rule, with seeded jitter and a fake clock: no
// test here sleeps or reads the wall clock.
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "coordinator/client/backoff.h"
#include "coordinator/client/errors.h"
#include "coordinator/client/retry.h"

namespace xfer::coordinator::client {
namespace {

using std::chrono::milliseconds;

std::vector<std::int64_t> delays(Backoff& backoff, int n) {
  std::vector<std::int64_t> out;
  for (int i = 0; i < n; ++i) out.push_back(backoff.next().count());
  return out;
}

TEST(BackoffTest, WithoutJitterDoublesUpToTheCap) {
  BackoffPolicy policy;
  policy.initial = milliseconds(100);
  policy.max = milliseconds(1000);
  policy.jitter = 0.0;
  Backoff backoff(policy, /*seed=*/1);
  EXPECT_EQ(delays(backoff, 7), (std::vector<std::int64_t>{100, 200, 400, 800, 1000, 1000, 1000}));
  backoff.reset();
  EXPECT_EQ(backoff.next(), milliseconds(100));
}

TEST(BackoffTest, JitterStaysWithinItsBandAndNeverExceedsTheCap) {
  BackoffPolicy policy;  // 100 ms, 5 s, x2, +-20%
  Backoff backoff(policy, /*seed=*/42);
  double base = 100;
  bool some_jitter = false;
  for (int i = 0; i < 12; ++i) {
    const double delay = static_cast<double>(backoff.next().count());
    const double capped = std::min(base, 5000.0);
    EXPECT_GE(delay, std::floor(capped * 0.8)) << "attempt " << i;
    EXPECT_LE(delay, std::min(std::ceil(capped * 1.2), 5000.0)) << "attempt " << i;
    if (delay != capped) some_jitter = true;
    base *= 2;
  }
  EXPECT_TRUE(some_jitter) << "a 20% jitter left every delay at its base value";
}

TEST(BackoffTest, SameSeedSameSequenceOtherSeedOtherSequence) {
  BackoffPolicy policy;
  Backoff a(policy, 7), b(policy, 7), c(policy, 8);
  const auto sequence_a = delays(a, 10);
  EXPECT_EQ(sequence_a, delays(b, 10));
  EXPECT_NE(sequence_a, delays(c, 10));
}

TEST(BackoffTest, RejectsPoliciesThatBreakTheirRequirements) {
  BackoffPolicy zero;
  zero.initial = milliseconds(0);
  EXPECT_THROW(Backoff(zero, 1), ClientError);
  BackoffPolicy inverted;
  inverted.initial = milliseconds(500);
  inverted.max = milliseconds(100);
  EXPECT_THROW(Backoff(inverted, 1), ClientError);
  BackoffPolicy shrinking;
  shrinking.multiplier = 0.5;
  EXPECT_THROW(Backoff(shrinking, 1), ClientError);
  BackoffPolicy wild;
  wild.jitter = 1.0;
  EXPECT_THROW(Backoff(wild, 1), ClientError);
}

TEST(RetryRuleTest, UnavailableAlwaysDeadlineOnlyWhenIdempotent) {
  using grpc::StatusCode;
  EXPECT_TRUE(is_transient(StatusCode::UNAVAILABLE, Idempotency::kIdempotent));
  EXPECT_TRUE(is_transient(StatusCode::UNAVAILABLE, Idempotency::kNotIdempotent));
  EXPECT_TRUE(is_transient(StatusCode::DEADLINE_EXCEEDED, Idempotency::kIdempotent));
  EXPECT_FALSE(is_transient(StatusCode::DEADLINE_EXCEEDED, Idempotency::kNotIdempotent));
  for (StatusCode code :
       {StatusCode::INVALID_ARGUMENT, StatusCode::NOT_FOUND, StatusCode::UNAUTHENTICATED,
        StatusCode::PERMISSION_DENIED, StatusCode::FAILED_PRECONDITION, StatusCode::DATA_LOSS,
        StatusCode::INTERNAL, StatusCode::CANCELLED}) {
    EXPECT_FALSE(is_transient(code, Idempotency::kIdempotent)) << static_cast<int>(code);
  }
}

// A clock the test moves by hand.
struct FakeClock {
  std::chrono::steady_clock::time_point now{};
  RetryState::Clock function() {
    return [this] { return now; };
  }
};

BackoffPolicy no_jitter() {
  BackoffPolicy policy;
  policy.initial = milliseconds(100);
  policy.max = milliseconds(400);
  policy.jitter = 0.0;
  return policy;
}

TEST(RetryStateTest, RetriesUntilTheNextDelayWouldLeaveTheWindow) {
  FakeClock clock;
  RetryState retry(no_jitter(), 1, milliseconds(1000), clock.function());
  std::vector<std::int64_t> waited;
  for (;;) {
    const auto delay = retry.on_failure(grpc::StatusCode::UNAVAILABLE, Idempotency::kIdempotent);
    if (!delay) break;
    waited.push_back(delay->count());
    clock.now += *delay;  // the attempt itself takes no time here
  }
  // 100 + 200 + 400 = 700; another 400 would end at 1100 > 1000.
  EXPECT_EQ(waited, (std::vector<std::int64_t>{100, 200, 400}));
  EXPECT_EQ(retry.failed_attempts(), 4);
}

TEST(RetryStateTest, FinalCodesAreNeverRetried) {
  FakeClock clock;
  RetryState retry(no_jitter(), 1, milliseconds(60000), clock.function());
  EXPECT_FALSE(retry.on_failure(grpc::StatusCode::INVALID_ARGUMENT, Idempotency::kIdempotent));
  EXPECT_FALSE(retry.on_failure(grpc::StatusCode::DEADLINE_EXCEEDED, Idempotency::kNotIdempotent));
}

TEST(RetryStateTest, ZeroWindowMeansNoRetry) {
  FakeClock clock;
  RetryState retry(no_jitter(), 1, milliseconds(0), clock.function());
  EXPECT_FALSE(retry.on_failure(grpc::StatusCode::UNAVAILABLE, Idempotency::kIdempotent));
}

TEST(RetryStateTest, ProgressStartsAFreshWindowAndBackoff) {
  FakeClock clock;
  RetryState retry(no_jitter(), 1, milliseconds(1000), clock.function());
  ASSERT_EQ(retry.on_failure(grpc::StatusCode::UNAVAILABLE, Idempotency::kIdempotent),
            milliseconds(100));
  clock.now += milliseconds(900);
  retry.on_progress();  // a stream delivered a message after reconnecting
  clock.now += milliseconds(5000);
  // Without the reset, 5.9 s after the first failure the window would be
  // spent and the delay would be 200 ms.
  EXPECT_EQ(retry.on_failure(grpc::StatusCode::UNAVAILABLE, Idempotency::kIdempotent),
            milliseconds(100));
}

}  // namespace
}  // namespace xfer::coordinator::client
