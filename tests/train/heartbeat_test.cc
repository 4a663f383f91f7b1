// The trainer's heartbeat thread (trainer/train/heartbeat.h) against a fake
// coordinator call: what it sends and how often, and what each answer does
// (go on, stop quietly, stop the job), including a coordinator that is down.
#include "trainer/train/heartbeat.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "coordinator/client/errors.h"

namespace xfer::trainer::train {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;

HeartbeatOptions options(int attempt = 1) {
  HeartbeatOptions o;
  o.run = "job";
  o.rank = 1;
  o.world_size = 2;
  o.attempt = attempt;
  o.every = milliseconds(20);
  o.deadline = milliseconds(1000);
  return o;
}

v1::HeartbeatResponse reply(v1::RunState state, int attempt, const std::string& message = "") {
  v1::HeartbeatResponse r;
  r.set_state(state);
  r.set_attempt(attempt);
  r.set_message(message);
  return r;
}

// A fake coordinator: records requests, answers what the test set.
class FakeCoordinator {
 public:
  void answer_with(v1::HeartbeatResponse response) {
    std::lock_guard<std::mutex> lock(mutex_);
    response_ = std::move(response);
    fail_ = false;
  }
  void fail_with(grpc::StatusCode code) {
    std::lock_guard<std::mutex> lock(mutex_);
    fail_ = true;
    code_ = code;
  }
  HeartbeatSender::Send send() {
    return [this](const v1::HeartbeatRequest& request) {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(request);
      if (fail_) throw coordinator::client::RpcError(code_, "Heartbeat", "127.0.0.1:1", "down");
      return response_;
    };
  }
  std::size_t calls() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_.size();
  }
  v1::HeartbeatRequest first() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_.at(0);
  }

 private:
  mutable std::mutex mutex_;
  std::vector<v1::HeartbeatRequest> requests_;
  v1::HeartbeatResponse response_ = reply(v1::RUN_STATE_RUNNING, 1);
  bool fail_ = false;
  grpc::StatusCode code_ = grpc::StatusCode::OK;
};

// Records on_stop calls.
struct Stops {
  HeartbeatSender::OnStop callback() {
    return [this](const std::string& reason) {
      std::lock_guard<std::mutex> lock(mutex);
      reasons.push_back(reason);
    };
  }
  std::vector<std::string> list() {
    std::lock_guard<std::mutex> lock(mutex);
    return reasons;
  }
  std::mutex mutex;
  std::vector<std::string> reasons;
};

// Waits (up to 10 s) until `done` holds.
template <typename Done>
bool eventually(Done done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

TEST(HeartbeatStopReason, OnlyAFailedRunOrAnotherAttemptStopsTheJob) {
  EXPECT_FALSE(heartbeat_stop_reason(reply(v1::RUN_STATE_RUNNING, 3), options(3)));
  EXPECT_FALSE(heartbeat_stop_reason(reply(v1::RUN_STATE_COMPLETED, 3), options(3)));
  EXPECT_FALSE(heartbeat_stop_reason(reply(v1::RUN_STATE_PREEMPTED, 3), options(3)));
  const auto failed = heartbeat_stop_reason(
      reply(v1::RUN_STATE_FAILED, 3, "rank 0 of 2 not heard from for 61 s (attempt 3)"),
      options(3));
  ASSERT_TRUE(failed);
  EXPECT_EQ(*failed,
            "the coordinator marked run 'job' (attempt 3) FAILED: rank 0 of 2 not heard from for "
            "61 s (attempt 3); this job stops (continue the run with --resume latest)");
  const auto resumed = heartbeat_stop_reason(reply(v1::RUN_STATE_RUNNING, 4), options(3));
  ASSERT_TRUE(resumed);
  EXPECT_EQ(*resumed,
            "run 'job' is at attempt 4 (RUN_STATE_RUNNING) at the coordinator, not this job's "
            "attempt 3: another job resumed it, so this one stops");
}

TEST(HeartbeatSender, SendsAtOnceAndThenRepeatedlyWhileRunning) {
  FakeCoordinator coordinator;
  Stops stops;
  HeartbeatSender sender(options(), coordinator.send(), stops.callback());
  ASSERT_TRUE(eventually([&] { return coordinator.calls() >= 5; }));
  sender.stop();
  const v1::HeartbeatRequest first = coordinator.first();
  EXPECT_EQ(first.run(), "job");
  EXPECT_EQ(first.rank(), 1);
  EXPECT_EQ(first.world_size(), 2);
  EXPECT_EQ(first.attempt(), 1);
  EXPECT_TRUE(stops.list().empty());
  // Stopped means stopped.
  const std::size_t calls = coordinator.calls();
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(coordinator.calls(), calls);
  EXPECT_EQ(sender.sent(), static_cast<int>(calls));
}

TEST(HeartbeatSender, FailedRunStopsTheJobOnceWithTheCoordinatorsReason) {
  FakeCoordinator coordinator;
  Stops stops;
  HeartbeatSender sender(options(), coordinator.send(), stops.callback());
  ASSERT_TRUE(eventually([&] { return coordinator.calls() >= 2; }));
  coordinator.answer_with(
      reply(v1::RUN_STATE_FAILED, 1, "rank 0 of 2 not heard from for 11 s (attempt 1)"));
  ASSERT_TRUE(eventually([&] { return !stops.list().empty(); }));
  const std::size_t calls = coordinator.calls();
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(coordinator.calls(), calls) << "heartbeats went on after the stop verdict";
  ASSERT_EQ(stops.list().size(), 1u);
  EXPECT_THAT(stops.list()[0], HasSubstr("FAILED: rank 0 of 2 not heard from for 11 s"));
}

TEST(HeartbeatSender, AnotherAttemptStopsTheJob) {
  FakeCoordinator coordinator;
  coordinator.answer_with(reply(v1::RUN_STATE_RUNNING, 2));
  Stops stops;
  HeartbeatSender sender(options(1), coordinator.send(), stops.callback());
  ASSERT_TRUE(eventually([&] { return !stops.list().empty(); }));
  EXPECT_THAT(stops.list()[0], HasSubstr("at attempt 2"));
  EXPECT_EQ(coordinator.calls(), 1u);
}

TEST(HeartbeatSender, RunEndedByThisAttemptStopsHeartbeatsQuietly) {
  FakeCoordinator coordinator;
  coordinator.answer_with(reply(v1::RUN_STATE_COMPLETED, 1, "90 optimizer steps"));
  Stops stops;
  HeartbeatSender sender(options(), coordinator.send(), stops.callback());
  ASSERT_TRUE(eventually([&] { return coordinator.calls() >= 1; }));
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(coordinator.calls(), 1u);
  EXPECT_TRUE(stops.list().empty());
}

TEST(HeartbeatSender, CoordinatorDownOrRefusingIsIgnored) {
  for (const auto code : {grpc::StatusCode::UNAVAILABLE, grpc::StatusCode::DEADLINE_EXCEEDED,
                          grpc::StatusCode::NOT_FOUND}) {
    SCOPED_TRACE(static_cast<int>(code));
    FakeCoordinator coordinator;
    coordinator.fail_with(code);
    Stops stops;
    HeartbeatSender sender(options(), coordinator.send(), stops.callback());
    ASSERT_TRUE(eventually([&] { return coordinator.calls() >= 3; }));
    // Back again: heartbeats go on and are answered.
    coordinator.answer_with(reply(v1::RUN_STATE_RUNNING, 1));
    const std::size_t calls = coordinator.calls();
    ASSERT_TRUE(eventually([&] { return coordinator.calls() >= calls + 2; }));
    EXPECT_TRUE(stops.list().empty());
  }
}

TEST(HeartbeatSender, StopDuringALongWaitReturnsPromptly) {
  FakeCoordinator coordinator;
  Stops stops;
  HeartbeatOptions o = options();
  o.every = std::chrono::hours(1);
  auto sender = std::make_unique<HeartbeatSender>(o, coordinator.send(), stops.callback());
  ASSERT_TRUE(eventually([&] { return coordinator.calls() >= 1; }));
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    sender.reset();
    stopped = true;
  });
  EXPECT_TRUE(eventually([&] { return stopped.load(); })) << "stop() waited out the period";
  stopper.join();
}

}  // namespace
}  // namespace xfer::trainer::train
