// Choosing a checkpoint and falling back (trainer/train/checkpoint_selection.h)
// against a coordinator in memory: which checkpoints are tried, in which
// order, and what a failure says. The "usable" test is scripted per id.
#include "trainer/train/checkpoint_selection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/train/fake_job_coordinator.h"

namespace xfer::trainer::train {
namespace {

using ::testing::ElementsAre;
using testing::FakeJobCoordinator;
using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Tries checkpoints in order, recording them; those in `bad` are unusable.
struct ScriptedTry {
  std::map<std::string, Unusable> bad;
  std::vector<std::string> tried;
  TryCheckpoint fn() {
    return [this](const v1::CheckpointInfo& info) {
      tried.push_back(info.id());
      const auto found = bad.find(info.id());
      return found == bad.end() ? Unusable{} : found->second;
    };
  }
};

const Unusable kCorrupt{"corrupt (SHA-256 mismatch)", "corrupt (the bytes differ)"};

class CheckpointSelectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Training order: head 1, head 2, mid-epoch of head 3, head 3, finetune 1.
    coordinator_.add_checkpoint("ckpt-1", "head", 1, 10, 0.9, 1000);
    coordinator_.add_checkpoint("ckpt-2", "head", 2, 20, 0.5, 2000);
    coordinator_.add_checkpoint("ckpt-3", "head", 2, 25, kNaN, 3000);
    coordinator_.add_checkpoint("ckpt-4", "head", 3, 30, 0.7, 4000);
    coordinator_.add_checkpoint("ckpt-5", "finetune", 4, 40, 0.6, 5000);
    coordinator_.latest_id = "ckpt-5";
    coordinator_.best_id = "ckpt-2";
    // As the coordinator ranks them (its tests check the ranking): by
    // val_loss, NaN last; by (epoch, step).
    coordinator_.listed_in[v1::CHECKPOINT_ORDER_BEST_FIRST] = {"ckpt-2", "ckpt-5", "ckpt-4",
                                                               "ckpt-1", "ckpt-3"};
    coordinator_.listed_in[v1::CHECKPOINT_ORDER_LATEST_FIRST] = {"ckpt-5", "ckpt-4", "ckpt-3",
                                                                 "ckpt-2", "ckpt-1"};
  }

  std::string select(const std::string& which, const std::string& phase, CheckpointUse use) {
    return select_checkpoint(coordinator_, {"job", which, phase, use}, try_.fn());
  }

  FakeJobCoordinator coordinator_;
  ScriptedTry try_;
};

TEST_F(CheckpointSelectionTest, TheOneAskedForWhenItIsUsable) {
  EXPECT_EQ(select("latest", "", CheckpointUse::kResume), "ckpt-5");
  EXPECT_EQ(select("best", "", CheckpointUse::kResume), "ckpt-2");
  EXPECT_EQ(select("ckpt-3", "", CheckpointUse::kResume), "ckpt-3");
  EXPECT_THAT(try_.tried, ElementsAre("ckpt-5", "ckpt-2", "ckpt-3"));
}

TEST_F(CheckpointSelectionTest, NothingIsListedWhileTheFirstIsUsable) {
  EXPECT_EQ(select("best", "", CheckpointUse::kResume), "ckpt-2");
  EXPECT_TRUE(coordinator_.list_requests.empty());
}

TEST_F(CheckpointSelectionTest, LatestFallsBackInTheCoordinatorsLatestFirstOrder) {
  try_.bad = {{"ckpt-5", kCorrupt}, {"ckpt-4", kCorrupt}};
  EXPECT_EQ(select("latest", "", CheckpointUse::kResume), "ckpt-3");
  EXPECT_THAT(try_.tried, ElementsAre("ckpt-5", "ckpt-4", "ckpt-3"));
  EXPECT_THAT(coordinator_.list_requests,
              ElementsAre(std::pair{v1::CHECKPOINT_ORDER_LATEST_FIRST, std::string()}));
}

TEST_F(CheckpointSelectionTest, BestFallsBackInTheCoordinatorsBestFirstOrder) {
  try_.bad = {
      {"ckpt-2", kCorrupt}, {"ckpt-5", kCorrupt}, {"ckpt-4", kCorrupt}, {"ckpt-1", kCorrupt}};
  EXPECT_EQ(select("best", "", CheckpointUse::kResume), "ckpt-3");
  EXPECT_THAT(try_.tried, ElementsAre("ckpt-2", "ckpt-5", "ckpt-4", "ckpt-1", "ckpt-3"));
  EXPECT_THAT(coordinator_.list_requests,
              ElementsAre(std::pair{v1::CHECKPOINT_ORDER_BEST_FIRST, std::string()}));
}

TEST_F(CheckpointSelectionTest, TheCoordinatorsOrderIsFollowedNotRecomputed) {
  // An order no local rule would give: the trainer must not re-sort it.
  coordinator_.listed_in[v1::CHECKPOINT_ORDER_BEST_FIRST] = {"ckpt-2", "ckpt-3", "ckpt-1",
                                                             "ckpt-5", "ckpt-4"};
  try_.bad = {{"ckpt-2", kCorrupt}, {"ckpt-3", kCorrupt}};
  EXPECT_EQ(select("best", "", CheckpointUse::kResume), "ckpt-1");
  EXPECT_THAT(try_.tried, ElementsAre("ckpt-2", "ckpt-3", "ckpt-1"));
}

TEST_F(CheckpointSelectionTest, APhaseLimitsTheFallbacks) {
  coordinator_.best_id = "ckpt-2";
  try_.bad = {{"ckpt-2", kCorrupt}, {"ckpt-4", kCorrupt}};
  EXPECT_EQ(select("best", "head", CheckpointUse::kRestoreHead), "ckpt-1");
  EXPECT_THAT(try_.tried, ElementsAre("ckpt-2", "ckpt-4", "ckpt-1"));
  EXPECT_THAT(coordinator_.list_requests,
              ElementsAre(std::pair{v1::CHECKPOINT_ORDER_BEST_FIRST, std::string("head")}));
}

TEST_F(CheckpointSelectionTest, ACoordinatorThatIgnoresThePhaseStillYieldsOnlyThatPhase) {
  // A coordinator older than ListCheckpointsRequest.phase lists every phase.
  coordinator_.listed_in[v1::CHECKPOINT_ORDER_BEST_FIRST] = {"ckpt-2", "ckpt-5", "ckpt-4",
                                                             "ckpt-1", "ckpt-3"};
  try_.bad = {{"ckpt-2", kCorrupt}};
  struct AllPhases : FakeJobCoordinator {
    v1::ListCheckpointsResponse list_checkpoints(const std::string& run, v1::CheckpointOrder order,
                                                 const std::string&) override {
      return FakeJobCoordinator::list_checkpoints(run, order, "");
    }
  } old;
  old.checkpoints = coordinator_.checkpoints;
  old.best_id = "ckpt-2";
  old.listed_in = coordinator_.listed_in;
  EXPECT_EQ(select_checkpoint(old, {"job", "best", "head", CheckpointUse::kRestoreHead}, try_.fn()),
            "ckpt-4");  // not ckpt-5, a finetune checkpoint ranked before it
}

TEST_F(CheckpointSelectionTest, AnIdIsNeverReplaced) {
  try_.bad = {{"ckpt-4", kCorrupt}};
  try {
    select("ckpt-4", "", CheckpointUse::kResume);
    FAIL() << "an unusable id was replaced";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("--resume ckpt-4: checkpoint ckpt-4 is corrupt (the bytes "
                                    "differ); a checkpoint named by its id is never replaced"));
    EXPECT_THAT(e.what(), HasSubstr("coordctl checkpoints list job"));
  }
  EXPECT_THAT(try_.tried, ElementsAre("ckpt-4"));
}

TEST_F(CheckpointSelectionTest, NothingUsableToResumeNamesEveryTry) {
  for (const auto& info : coordinator_.checkpoints) try_.bad[info.id()] = kCorrupt;
  try_.bad["ckpt-1"] = {"gone", "gone (deleted)"};
  try {
    select("latest", "", CheckpointUse::kResume);
    FAIL() << "resumed from an unusable checkpoint";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("--resume latest: no checkpoint of run job is usable; tried "
                                    "ckpt-5 (corrupt (SHA-256 mismatch)), ckpt-4 (corrupt"));
    EXPECT_THAT(e.what(), HasSubstr("ckpt-1 (gone)"));
    EXPECT_THAT(e.what(), HasSubstr("start the run afresh under another --run-name"));
  }
}

TEST_F(CheckpointSelectionTest, RestoringTheHeadGoesOnWithoutOne) {
  for (const auto& info : coordinator_.checkpoints) try_.bad[info.id()] = kCorrupt;
  EXPECT_EQ(select("best", "head", CheckpointUse::kRestoreHead), "");
  coordinator_.best_id.clear();  // no head checkpoint at all
  EXPECT_EQ(select("best", "head", CheckpointUse::kRestoreHead), "");
}

TEST_F(CheckpointSelectionTest, ResumingWithoutAnyCheckpointIsTheCoordinatorsError) {
  coordinator_.latest_id.clear();
  EXPECT_THROW(select("latest", "", CheckpointUse::kResume), coordinator::client::RpcError);
}

TEST_F(CheckpointSelectionTest, ACheckpointDeletedWhileFallingBackIsSkipped) {
  try_.bad = {{"ckpt-5", kCorrupt}};
  const TryCheckpoint deleted = [&](const v1::CheckpointInfo& info) {
    try_.tried.push_back(info.id());
    if (info.id() == "ckpt-4") {
      throw FakeJobCoordinator::error(grpc::StatusCode::NOT_FOUND, "deleted by retention");
    }
    return info.id() == "ckpt-5" ? kCorrupt : Unusable{};
  };
  EXPECT_EQ(select_checkpoint(coordinator_, {"job", "latest", "", CheckpointUse::kResume}, deleted),
            "ckpt-3");
  EXPECT_THAT(try_.tried, ElementsAre("ckpt-5", "ckpt-4", "ckpt-3"));
}

}  // namespace
}  // namespace xfer::trainer::train
