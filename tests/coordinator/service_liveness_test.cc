// Rank liveness (--rank-timeout): a RUNNING run one of whose ranks sends no
// Heartbeat for longer than the timeout is marked FAILED, naming the rank;
// heartbeats keep it RUNNING; a restarted coordinator gives every rank a
// full timeout again; bad heartbeats get the right codes. The rule itself is
// tested on RunRegistry with a fake clock; the server's checker thread and
// the RPC with a real coordinator on 127.0.0.1 and timeouts of 1-2 s.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "coordinator/server/run_registry.h"
#include "tests/coordinator/service_test_util.h"

namespace xfer::coordinator::server::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr milliseconds kTimeout = seconds(60);

// A steady clock the test moves by hand.
class FakeClock {
 public:
  std::chrono::steady_clock::time_point now() const { return now_; }
  void advance(std::chrono::steady_clock::duration d) { now_ += d; }
  RunRegistry::SteadyClock function() {
    return [this] { return now_; };
  }

 private:
  std::chrono::steady_clock::time_point now_{seconds(1000)};
};

v1::StartRunRequest start_request(const std::string& name, int world_size) {
  v1::StartRunRequest request;
  request.set_name(name);
  request.set_dataset("synthetic");
  request.set_world_size(world_size);
  return request;
}

v1::HeartbeatRequest beat(const std::string& run, int rank, int world_size, int attempt) {
  v1::HeartbeatRequest request;
  request.set_run(run);
  request.set_rank(rank);
  request.set_world_size(world_size);
  request.set_attempt(attempt);
  return request;
}

// The registry's answer, failing the test on an error.
v1::HeartbeatResponse answer(RunRegistry& runs, const v1::HeartbeatRequest& request) {
  auto result = runs.heartbeat(request);
  if (auto* error = std::get_if<RunError>(&result)) {
    ADD_FAILURE() << "heartbeat refused: " << error->message;
    return {};
  }
  return std::get<v1::HeartbeatResponse>(result);
}

// ---------------------------------------------------------------- the rule

class LivenessRuleTest : public CoordinatorFixture {
 protected:
  fs::path state_dir() const { return root_ / "registry"; }
  std::unique_ptr<RunRegistry> open_registry() {
    fs::create_directories(state_dir());
    return std::make_unique<RunRegistry>(state_dir(), clock_.function());
  }

  FakeClock clock_;
};

TEST_F(LivenessRuleTest, SilentRankFailsTheRunNamingIt) {
  auto runs = open_registry();
  ASSERT_TRUE(std::holds_alternative<v1::Run>(runs->start(start_request("job", 2))));
  clock_.advance(seconds(50));
  answer(*runs, beat("job", 0, 2, 1));
  clock_.advance(seconds(10));  // rank 1: 60 s, not more: still fine
  EXPECT_TRUE(runs->fail_silent_runs(kTimeout).empty());
  EXPECT_EQ(runs->get("job")->state(), v1::RUN_STATE_RUNNING);

  clock_.advance(milliseconds(500));
  const auto failed = runs->fail_silent_runs(kTimeout);
  ASSERT_EQ(failed.size(), 1u);
  const v1::Run run = *runs->get("job");
  EXPECT_EQ(run.state(), v1::RUN_STATE_FAILED);
  EXPECT_EQ(run.message(), "rank 1 of 2 not heard from for 61 s (attempt 1, rank timeout 60 s)");
  EXPECT_EQ(run.events(run.events_size() - 1), "failed: " + run.message());
  EXPECT_GT(run.ended_unix_ms(), 0);

  // Logged and failed once: the next check finds nothing to do.
  clock_.advance(seconds(100));
  EXPECT_TRUE(runs->fail_silent_runs(kTimeout).empty());

  // The ranks that are still alive learn it from their next heartbeat.
  const v1::HeartbeatResponse reply = answer(*runs, beat("job", 0, 2, 1));
  EXPECT_EQ(reply.state(), v1::RUN_STATE_FAILED);
  EXPECT_EQ(reply.attempt(), 1);
  EXPECT_EQ(reply.message(), run.message());

  // Durable: a restarted coordinator shows the same.
  runs.reset();
  runs = open_registry();
  EXPECT_EQ(runs->get("job")->state(), v1::RUN_STATE_FAILED);
  EXPECT_EQ(runs->get("job")->message(), run.message());
}

TEST_F(LivenessRuleTest, HeartbeatsKeepTheRunRunning) {
  auto runs = open_registry();
  runs->start(start_request("job", 3));
  for (int i = 0; i < 20; ++i) {  // 10 minutes
    clock_.advance(seconds(30));
    for (int rank = 0; rank < 3; ++rank) {
      EXPECT_EQ(answer(*runs, beat("job", rank, 3, 1)).state(), v1::RUN_STATE_RUNNING);
    }
    EXPECT_TRUE(runs->fail_silent_runs(kTimeout).empty()) << "after " << (i + 1) * 30 << " s";
  }
  EXPECT_EQ(runs->get("job")->state(), v1::RUN_STATE_RUNNING);
}

TEST_F(LivenessRuleTest, RanksNeverHeardFromCountFromStartRunAndAreAllNamed) {
  auto runs = open_registry();
  runs->start(start_request("job", 2));
  clock_.advance(seconds(59));
  EXPECT_TRUE(runs->fail_silent_runs(kTimeout).empty());
  clock_.advance(seconds(2));
  ASSERT_EQ(runs->fail_silent_runs(kTimeout).size(), 1u);
  EXPECT_EQ(runs->get("job")->message(),
            "rank 0 of 2 not heard from for 61 s (attempt 1, rank timeout 60 s); also silent: "
            "rank 1 (61 s)");
}

TEST_F(LivenessRuleTest, TheLongestSilentRankIsNamedFirst) {
  auto runs = open_registry();
  runs->start(start_request("job", 4));
  answer(*runs, beat("job", 0, 4, 1));
  answer(*runs, beat("job", 1, 4, 1));
  answer(*runs, beat("job", 3, 4, 1));
  clock_.advance(seconds(5));
  answer(*runs, beat("job", 0, 4, 1));
  answer(*runs, beat("job", 1, 4, 1));
  clock_.advance(seconds(56));  // rank 2: 61 s (since StartRun), rank 3: 61 s, ranks 0, 1: 56 s
  ASSERT_EQ(runs->fail_silent_runs(kTimeout).size(), 1u);
  EXPECT_THAT(runs->get("job")->message(), StartsWith("rank 2 of 4 not heard from for 61 s"));
  EXPECT_THAT(runs->get("job")->message(), HasSubstr("also silent: rank 3 (61 s)"));
  EXPECT_THAT(runs->get("job")->message(), ::testing::Not(HasSubstr("rank 0")));
}

TEST_F(LivenessRuleTest, RestartedCoordinatorGivesEveryRankAFullTimeout) {
  auto runs = open_registry();
  runs->start(start_request("job", 2));
  answer(*runs, beat("job", 0, 2, 1));
  answer(*runs, beat("job", 1, 2, 1));
  runs.reset();  // the coordinator goes down ...
  clock_.advance(std::chrono::minutes(10));
  runs = open_registry();  // ... and comes back 10 minutes later
  EXPECT_TRUE(runs->fail_silent_runs(kTimeout).empty());
  EXPECT_EQ(runs->get("job")->state(), v1::RUN_STATE_RUNNING);
  clock_.advance(seconds(30));
  answer(*runs, beat("job", 0, 2, 1));  // rank 0 comes back, rank 1 does not
  clock_.advance(seconds(29));
  EXPECT_TRUE(runs->fail_silent_runs(kTimeout).empty());
  clock_.advance(seconds(2));
  ASSERT_EQ(runs->fail_silent_runs(kTimeout).size(), 1u);
  EXPECT_THAT(runs->get("job")->message(), StartsWith("rank 1 of 2 not heard from for 61 s"));
}

TEST_F(LivenessRuleTest, EndedRunsAreNeverFailed) {
  auto runs = open_registry();
  runs->start(start_request("done", 2));
  runs->start(start_request("stopped", 2));
  v1::EndRunRequest end;
  end.set_name("done");
  end.set_state(v1::RUN_STATE_COMPLETED);
  runs->end(end);
  end.set_name("stopped");
  end.set_state(v1::RUN_STATE_PREEMPTED);
  runs->end(end);
  clock_.advance(std::chrono::hours(1));
  EXPECT_TRUE(runs->fail_silent_runs(kTimeout).empty());
  EXPECT_EQ(runs->get("done")->state(), v1::RUN_STATE_COMPLETED);
  EXPECT_EQ(runs->get("stopped")->state(), v1::RUN_STATE_PREEMPTED);
  // A heartbeat of an ended run is answered with its state, not counted.
  EXPECT_EQ(answer(*runs, beat("done", 0, 2, 1)).state(), v1::RUN_STATE_COMPLETED);
}

TEST_F(LivenessRuleTest, ResumeAfterTheFailureRecordsFailedThenResumed) {
  auto runs = open_registry();
  runs->start(start_request("job", 2));
  clock_.advance(seconds(61));
  ASSERT_EQ(runs->fail_silent_runs(kTimeout).size(), 1u);

  const auto resumed = runs->start(start_request("job", 2));
  ASSERT_TRUE(std::holds_alternative<v1::Run>(resumed));
  const v1::Run run = std::get<v1::Run>(resumed);
  EXPECT_EQ(run.state(), v1::RUN_STATE_RUNNING);
  EXPECT_EQ(run.attempt(), 2);
  EXPECT_TRUE(run.message().empty());
  ASSERT_EQ(run.events_size(), 3);
  EXPECT_EQ(run.events(0), "started with world size 2");
  EXPECT_THAT(run.events(1), StartsWith("failed: rank 0 of 2 not heard from for 61 s (attempt 1"));
  EXPECT_EQ(run.events(2), "resumed (attempt 2) from state RUN_STATE_FAILED with world size 2");

  // A rank of attempt 1 still beating is told about attempt 2 and not
  // counted: attempt 2's ranks count from the resume.
  clock_.advance(seconds(30));
  const v1::HeartbeatResponse stale = answer(*runs, beat("job", 1, 2, 1));
  EXPECT_EQ(stale.attempt(), 2);
  EXPECT_EQ(stale.state(), v1::RUN_STATE_RUNNING);
  answer(*runs, beat("job", 0, 2, 2));
  clock_.advance(seconds(31));
  ASSERT_EQ(runs->fail_silent_runs(kTimeout).size(), 1u);
  EXPECT_THAT(runs->get("job")->message(),
              StartsWith("rank 1 of 2 not heard from for 61 s (attempt 2"));
}

TEST_F(LivenessRuleTest, BadHeartbeatsAreRefusedWithTheRightCodes) {
  auto runs = open_registry();
  runs->start(start_request("job", 2));
  struct Case {
    v1::HeartbeatRequest request;
    grpc::StatusCode code;
    std::vector<std::string> named;
  };
  const std::vector<Case> cases = {
      {beat("nope", 0, 2, 1), grpc::StatusCode::NOT_FOUND, {"no run 'nope'"}},
      {beat("job", 2, 2, 1), grpc::StatusCode::INVALID_ARGUMENT, {"rank 2", "world size 2"}},
      {beat("job", -1, 2, 1), grpc::StatusCode::INVALID_ARGUMENT, {"rank -1", "world size 2"}},
      {beat("job", 0, 3, 1),
       grpc::StatusCode::INVALID_ARGUMENT,
       {"world_size 3", "run 'job' world size 2"}},
      {beat("job", 0, 2, 0), grpc::StatusCode::INVALID_ARGUMENT, {"attempt 0", "1..1"}},
      {beat("job", 0, 2, 2), grpc::StatusCode::INVALID_ARGUMENT, {"attempt 2", "1..1"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.request.ShortDebugString());
    auto result = runs->heartbeat(c.request);
    ASSERT_TRUE(std::holds_alternative<RunError>(result));
    const RunError& error = std::get<RunError>(result);
    EXPECT_EQ(error.code, c.code);
    EXPECT_THAT(error.message, StartsWith("Heartbeat: "));
    for (const auto& text : c.named) EXPECT_THAT(error.message, HasSubstr(text));
  }
  // None of them counted as a sign of life.
  clock_.advance(seconds(61));
  EXPECT_EQ(runs->fail_silent_runs(kTimeout).size(), 1u);
}

// ---------------------------------------------------------------- the server

class ServiceLivenessTest : public CoordinatorFixture {
 protected:
  grpc::Status heartbeat(const v1::HeartbeatRequest& request, v1::HeartbeatResponse* response,
                         const std::string& token = "") {
    return stubs_->runs->Heartbeat(context(token).get(), request, response);
  }

  v1::Run get_run(const std::string& name) {
    v1::GetRunRequest request;
    request.set_name(name);
    v1::Run run;
    const grpc::Status status = stubs_->runs->GetRun(context().get(), request, &run);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return run;
  }

  // Polls until the run is no longer RUNNING or `limit` passed.
  v1::Run wait_until_ended(const std::string& name, std::chrono::seconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    v1::Run run = get_run(name);
    while (run.state() == v1::RUN_STATE_RUNNING && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(50));
      run = get_run(name);
    }
    return run;
  }

  // Sends heartbeats for `ranks` every 100 ms on a thread until stopped.
  class Beater {
   public:
    Beater(ServiceLivenessTest& test, std::string run, std::vector<int> ranks, int world)
        : thread_([&test, run, ranks, world, this] {
            while (!stop_) {
              for (int rank : ranks) {
                v1::HeartbeatResponse response;
                test.heartbeat(beat(run, rank, world, 1), &response);
              }
              std::this_thread::sleep_for(milliseconds(100));
            }
          }) {}
    ~Beater() {
      stop_ = true;
      thread_.join();
    }

   private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
  };
};

TEST_F(ServiceLivenessTest, SilentRankFailsTheRunAndTheOthersAreToldSo) {
  options_.rank_timeout_s = 1;
  start();
  start_run("job", 2);
  v1::Run run;
  {
    Beater rank0(*this, "job", {0}, 2);
    run = wait_until_ended("job", seconds(30));
  }
  EXPECT_EQ(run.state(), v1::RUN_STATE_FAILED);
  EXPECT_THAT(run.message(), StartsWith("rank 1 of 2 not heard from for "));
  EXPECT_THAT(run.message(), HasSubstr("(attempt 1, rank timeout 1 s)"));
  EXPECT_THAT(run.message(), ::testing::Not(HasSubstr("rank 0")));
  EXPECT_EQ(run.events(run.events_size() - 1), "failed: " + run.message());

  v1::HeartbeatResponse reply;
  ASSERT_TRUE(heartbeat(beat("job", 0, 2, 1), &reply).ok());
  EXPECT_EQ(reply.state(), v1::RUN_STATE_FAILED);
  EXPECT_EQ(reply.message(), run.message());

  // coordctl status shows it (GetStatus carries the run's message).
  v1::GetStatusRequest request;
  request.set_run("job");
  v1::StatusResponse status;
  ASSERT_TRUE(stubs_->runs->GetStatus(context().get(), request, &status).ok());
  ASSERT_EQ(status.runs_size(), 1);
  EXPECT_EQ(status.runs(0).message(), run.message());

  // Resumed: RUNNING again, the events say failed, then resumed.
  const v1::Run resumed = start_run("job", 2);
  EXPECT_EQ(resumed.state(), v1::RUN_STATE_RUNNING);
  EXPECT_EQ(resumed.attempt(), 2);
  ASSERT_GE(resumed.events_size(), 2);
  EXPECT_THAT(resumed.events(resumed.events_size() - 2), StartsWith("failed: rank 1 of 2"));
  EXPECT_THAT(resumed.events(resumed.events_size() - 1),
              StartsWith("resumed (attempt 2) from state RUN_STATE_FAILED"));
}

TEST_F(ServiceLivenessTest, HeartbeatsKeepTheRunRunning) {
  options_.rank_timeout_s = 2;
  start();
  start_run("job", 2);
  {
    Beater ranks(*this, "job", {0, 1}, 2);
    std::this_thread::sleep_for(seconds(5));
  }
  EXPECT_EQ(get_run("job").state(), v1::RUN_STATE_RUNNING) << get_run("job").message();
}

TEST_F(ServiceLivenessTest, RestartedCoordinatorDoesNotFailRunsForItsOwnAbsence) {
  options_.rank_timeout_s = 3;
  start();
  start_run("job", 2);
  stubs_.reset();
  coordinator_.reset();
  std::this_thread::sleep_for(seconds(4));  // down for longer than the timeout
  start();
  // Several checks (every 0.3 s) later, before any heartbeat: the ranks have
  // a full timeout from the restart.
  std::this_thread::sleep_for(seconds(1));
  EXPECT_EQ(get_run("job").state(), v1::RUN_STATE_RUNNING) << get_run("job").message();
  {
    Beater ranks(*this, "job", {0, 1}, 2);
    std::this_thread::sleep_for(seconds(3));
    EXPECT_EQ(get_run("job").state(), v1::RUN_STATE_RUNNING) << get_run("job").message();
  }
  // Rank 1 is still checked after the restart.
  v1::Run run;
  {
    Beater rank0(*this, "job", {0}, 2);
    run = wait_until_ended("job", seconds(30));
  }
  EXPECT_EQ(run.state(), v1::RUN_STATE_FAILED);
  EXPECT_THAT(run.message(), StartsWith("rank 1 of 2 not heard from for "));
}

TEST_F(ServiceLivenessTest, ZeroTimeoutTurnsTheCheckOff) {
  options_.rank_timeout_s = 0;
  start();
  start_run("job", 1);
  std::this_thread::sleep_for(milliseconds(2500));
  EXPECT_EQ(get_run("job").state(), v1::RUN_STATE_RUNNING);
  v1::HeartbeatResponse reply;  // still answered
  ASSERT_TRUE(heartbeat(beat("job", 0, 1, 1), &reply).ok());
  EXPECT_EQ(reply.state(), v1::RUN_STATE_RUNNING);
}

TEST_F(ServiceLivenessTest, RankTimeoutOutOfRangeIsRefusedAtStart) {
  for (int bad : {-1, 86401}) {
    options_.rank_timeout_s = bad;
    try {
      Coordinator coordinator(options_);
      ADD_FAILURE() << "--rank-timeout " << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr("--rank-timeout " + std::to_string(bad)));
      EXPECT_THAT(e.what(), HasSubstr("expected 0 to turn the rank liveness check off"));
    }
  }
}

TEST_F(ServiceLivenessTest, BadHeartbeatsGetTheRightCodes) {
  options_.rank_timeout_s = 0;
  start();
  start_run("job", 2);
  v1::HeartbeatResponse reply;
  grpc::Status status = heartbeat(beat("nope", 0, 2, 1), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "Heartbeat: no run 'nope'");

  status = heartbeat(beat("job", 5, 2, 1), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("rank 5 is outside world size 2"));

  status = heartbeat(beat("job", 0, 4, 1), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("world_size 4 differs from run 'job' world size 2 (attempt 1)"));

  // After a resume, a rank of attempt 1 gets the current attempt back.
  start_run("job", 2);
  ASSERT_TRUE(heartbeat(beat("job", 1, 2, 1), &reply).ok());
  EXPECT_EQ(reply.attempt(), 2);
  EXPECT_EQ(reply.state(), v1::RUN_STATE_RUNNING);
}

TEST_F(ServiceLivenessTest, HeartbeatNeedsTheAdminToken) {
  enable_auth();
  options_.rank_timeout_s = 0;
  start();
  start_run("job", 1, kAdminToken);
  v1::HeartbeatResponse reply;
  EXPECT_TRUE(heartbeat(beat("job", 0, 1, 1), &reply, kAdminToken).ok());
  grpc::Status status = heartbeat(beat("job", 0, 1, 1), &reply, kReadToken);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("Heartbeat: the read-only token"));
  status = heartbeat(beat("job", 0, 1, 1), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace xfer::coordinator::server::testing
