// The launch sequence NCCL collectives share (trainer/dist/nccl_collective.h),
// driven by a fake of its CUDA and NCCL steps: the order of the calls, the
// names, and what a failure at each step does to the communicator. Needs no
// GPU, NCCL or MPI.
#include "trainer/dist/nccl_collective.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace xfer::trainer::dist {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct FakeWork {
  std::string name;
  int deadline = 0;
};

// Records every step as "step name"; throws CollectiveError at the step
// named in fail_at.
class FakeSteps {
 public:
  std::vector<std::string> calls;
  std::string fail_at;

  std::uint64_t next_seq() { return seq_++; }
  bool broken() const { return broken_; }
  std::string broken_reason() const { return reason_; }
  std::string context(const std::string& op) const { return "rank 1 of 2 on testhost: " + op; }
  int deadline() const { return 42; }

  std::shared_ptr<FakeWork> make_work(const std::string& name, int deadline) {
    step("make_work", name);
    return std::make_shared<FakeWork>(FakeWork{name, deadline});
  }
  void order_after_producer(FakeWork* work, const Buffer& buffer, const std::string& name) {
    EXPECT_EQ(work->name, name);
    EXPECT_EQ(buffer.count, 3u);
    step("order_after_producer", name);
  }
  void group_start(const std::string& name) { step("group_start", name); }
  void group_end(const std::string& name) { step("group_end", name); }
  void settle(const std::string& name, int deadline) {
    EXPECT_EQ(deadline, 42);
    step("settle", name);
  }
  void record_done(FakeWork* work, const std::string& name) {
    EXPECT_EQ(work->name, name);
    step("record_done", name);
  }
  void break_locked(const std::string& reason) {
    calls.push_back("break_locked");
    if (broken_) return;
    broken_ = true;
    reason_ = reason;
  }

  // The collective's own call, as the fn argument.
  void nccl_call(const std::string& name) { step("fn", name); }

 private:
  void step(const std::string& what, const std::string& name) {
    calls.push_back(what + " " + name);
    if (what == fail_at) throw CollectiveError("injected failure in " + what + " of " + name);
  }

  std::uint64_t seq_ = 1;
  bool broken_ = false;
  std::string reason_;
};

float buffer_data[3] = {1, 2, 3};
const Buffer kBuffer{buffer_data, 3, DataType::kFloat32};

std::shared_ptr<FakeWork> launch(FakeSteps& steps, const std::string& kind,
                                 const std::string& label) {
  return collective(steps, kind, label, kBuffer,
                    [&](const std::string& name) { steps.nccl_call(name); });
}

TEST(NcclCollectiveTest, RunsTheStepsInOrderWithTheCallInsideTheGroup) {
  FakeSteps steps;
  auto work = launch(steps, "allreduce", "bucket 3");
  ASSERT_NE(work, nullptr);
  EXPECT_EQ(work->name, "allreduce #1 (bucket 3)");
  EXPECT_EQ(work->deadline, 42);
  const std::string n = " allreduce #1 (bucket 3)";
  EXPECT_THAT(steps.calls,
              ElementsAre("make_work" + n, "order_after_producer" + n, "group_start" + n, "fn" + n,
                          "group_end" + n, "settle" + n, "record_done" + n));
}

TEST(NcclCollectiveTest, NumbersEveryCollectiveOfTheCommunicatorInOneSequence) {
  FakeSteps steps;
  EXPECT_EQ(launch(steps, "allreduce", "grads")->name, "allreduce #1 (grads)");
  EXPECT_EQ(launch(steps, "broadcast", "")->name, "broadcast #2");
  EXPECT_EQ(launch(steps, "allreduce", "")->name, "allreduce #3");
  EXPECT_EQ(collective_name("broadcast", 17, "parameters"), "broadcast #17 (parameters)");
}

// A CollectiveError at any step breaks the communicator with that error,
// stops the launch there, and makes every later collective fail at once
// (numbered still), naming the first reason, without launching anything.
class NcclCollectiveFailureTest : public ::testing::TestWithParam<const char*> {};

TEST_P(NcclCollectiveFailureTest, BreaksTheCommunicatorAndRefusesLaterCollectives) {
  FakeSteps steps;
  steps.fail_at = GetParam();
  try {
    launch(steps, "allreduce", "bucket 0");
    FAIL() << "no error from a failure in " << GetParam();
  } catch (const CollectiveError& e) {
    EXPECT_EQ(std::string(e.what()),
              std::string("injected failure in ") + GetParam() + " of allreduce #1 (bucket 0)");
  }
  ASSERT_FALSE(steps.calls.empty());
  EXPECT_EQ(steps.calls.back(), "break_locked");
  EXPECT_EQ(steps.calls[steps.calls.size() - 2],
            std::string(GetParam()) + " allreduce #1 (bucket 0)");
  EXPECT_TRUE(steps.broken());

  steps.fail_at.clear();
  steps.calls.clear();
  try {
    launch(steps, "broadcast", "parameters");
    FAIL() << "a broken communicator launched a collective";
  } catch (const CollectiveError& e) {
    EXPECT_THAT(e.what(), HasSubstr("rank 1 of 2 on testhost: broadcast #2 (parameters): "
                                    "communicator broken earlier: injected failure in "));
  }
  EXPECT_TRUE(steps.calls.empty()) << "launched on a broken communicator: " << steps.calls[0];
}

INSTANTIATE_TEST_SUITE_P(EveryStep, NcclCollectiveFailureTest,
                         ::testing::Values("order_after_producer", "group_start", "fn", "group_end",
                                           "settle", "record_done"));

// make_work comes before the try: a failure there (no CUDA resource is held
// yet) propagates without breaking the communicator, as before the helper.
TEST(NcclCollectiveTest, AFailureToMakeTheWorkDoesNotBreakTheCommunicator) {
  FakeSteps steps;
  steps.fail_at = "make_work";
  EXPECT_THROW(launch(steps, "allreduce", ""), CollectiveError);
  EXPECT_FALSE(steps.broken());
}

// Only a CollectiveError breaks it: another exception passes through.
TEST(NcclCollectiveTest, OtherExceptionsPropagateWithoutBreaking) {
  FakeSteps steps;
  EXPECT_THROW(collective(steps, "allreduce", "", kBuffer,
                          [](const std::string&) { throw std::logic_error("not NCCL"); }),
               std::logic_error);
  EXPECT_FALSE(steps.broken());
  EXPECT_EQ(launch(steps, "allreduce", "")->name, "allreduce #2");
}

}  // namespace
}  // namespace xfer::trainer::dist
