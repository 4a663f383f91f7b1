#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/sharding/permutation.h"
#include "coordinator/sharding/shard_plan.h"

namespace xfer::coordinator::sharding {
namespace {

using ::testing::HasSubstr;

const std::vector<std::int64_t> kSizes = {1, 2, 3, 5, 7, 10, 31, 64, 97, 100, 257, 1001};
const std::vector<int> kWorldSizes = {1, 2, 3, 4, 5, 7, 8};
const std::vector<int> kBatchSizes = {1, 2, 3, 5, 8, 16};

ShardRequest make_request(ShardKind kind, int world_size, int rank, int batch_size,
                          std::int64_t epoch = 2, bool shuffle = true) {
  ShardRequest request;
  request.kind = kind;
  request.epoch = epoch;
  request.seed = 1234;
  request.shuffle = shuffle;
  request.world_size = world_size;
  request.rank = rank;
  request.batch_size = batch_size;
  return request;
}

std::vector<ShardPlan> plan_all_ranks(ShardKind kind, std::int64_t n, int world_size,
                                      int batch_size, bool shuffle = true) {
  std::vector<ShardPlan> plans;
  for (int r = 0; r < world_size; ++r) {
    plans.push_back(plan_shard(make_request(kind, world_size, r, batch_size, 2, shuffle), n));
  }
  return plans;
}

// The samples the whole job sees, in step order: step 0 of rank 0, 1, ...,
// then step 1 of every rank, and so on.
std::vector<std::int64_t> global_train_order(const std::vector<ShardPlan>& plans) {
  std::vector<std::int64_t> order;
  for (std::int64_t s = 0; s < plans[0].num_batches(); ++s) {
    for (const ShardPlan& plan : plans) {
      const auto batch = plan.batch(s);
      order.insert(order.end(), batch.begin(), batch.end());
    }
  }
  return order;
}

// Property checks over a grid of (N, W, B, shuffle). The grid runs inside one
// test per property rather than as parameterised tests: 1,000 combinations
// would otherwise be 1,000 ctest entries.
void check_train_shards(std::int64_t n, int w, int b, bool shuffle) {
  const std::int64_t global_batch = std::int64_t{w} * b;
  if (n < global_batch) {
    try {
      plan_shard(make_request(ShardKind::kTrain, w, 0, b), n);
      FAIL() << "expected an error for N=" << n << " < W*B=" << global_batch;
    } catch (const ShardError& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::to_string(n) + " samples"));
      EXPECT_THAT(e.what(), HasSubstr(std::to_string(w) + " ranks x batch " + std::to_string(b)));
    }
    return;
  }
  const std::int64_t steps = n / global_batch;
  const std::vector<ShardPlan> plans = plan_all_ranks(ShardKind::kTrain, n, w, b, shuffle);
  const std::vector<std::int64_t> order =
      shuffle ? epoch_permutation(1234, 2, n) : identity_order(n);

  std::vector<int> seen(static_cast<std::size_t>(n), 0);
  for (int r = 0; r < w; ++r) {
    const ShardPlan& plan = plans[r];
    ASSERT_EQ(plan.num_batches(), steps) << "rank " << r;
    EXPECT_EQ(plan.dropped_samples(), n - steps * global_batch) << "rank " << r;
    EXPECT_EQ(plan.shard_size(), steps * b);
    for (std::int64_t s = 0; s < steps; ++s) {
      ASSERT_EQ(plan.batch_size(s), b);
      for (std::int64_t p : plan.batch(s)) {
        ASSERT_GE(p, 0);
        ASSERT_LT(p, n);
        ++seen[p];
      }
    }
  }
  // Disjoint and covering: each sample once, except exactly the documented
  // remainder, which is the tail of the epoch's order.
  const std::int64_t dropped = n - steps * global_batch;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t p = order[i];
    EXPECT_EQ(seen[p], i < n - dropped ? 1 : 0) << "position " << p << " at order index " << i;
  }
  // Step s reads exactly the s-th global batch of the order.
  const auto global = global_train_order(plans);
  EXPECT_TRUE(std::equal(global.begin(), global.end(), order.begin()));
}

void check_eval_shards(std::int64_t n, int w, int b, bool shuffle) {
  const std::vector<ShardPlan> plans = plan_all_ranks(ShardKind::kEval, n, w, b, shuffle);
  const std::vector<std::int64_t> order =
      shuffle ? epoch_permutation(1234, 2, n) : identity_order(n);

  std::vector<std::int64_t> concatenated;
  std::int64_t min_size = n, max_size = 0, min_batches = n, max_batches = 0;
  for (int r = 0; r < w; ++r) {
    const ShardPlan& plan = plans[r];
    EXPECT_EQ(plan.dropped_samples(), 0);
    std::int64_t size = 0;
    for (std::int64_t i = 0; i < plan.num_batches(); ++i) {
      const auto batch = plan.batch(i);
      // Only the last batch of a rank may be partial, and none is empty.
      if (i + 1 < plan.num_batches()) {
        EXPECT_EQ(static_cast<int>(batch.size()), b) << "rank " << r << " batch " << i;
      } else {
        EXPECT_GE(batch.size(), 1u);
        EXPECT_LE(static_cast<int>(batch.size()), b);
      }
      size += static_cast<std::int64_t>(batch.size());
      concatenated.insert(concatenated.end(), batch.begin(), batch.end());
    }
    EXPECT_EQ(size, plan.shard_size());
    min_size = std::min(min_size, size);
    max_size = std::max(max_size, size);
    min_batches = std::min(min_batches, plan.num_batches());
    max_batches = std::max(max_batches, plan.num_batches());
  }
  EXPECT_LE(max_size - min_size, 1) << "ranks differ by more than one sample";
  EXPECT_LE(max_batches - min_batches, 1) << "ranks differ by more than one batch";
  // Rank order gives the epoch's order back: every sample once, whatever W.
  EXPECT_EQ(concatenated, order);
}

template <typename Check>
void for_each_grid_point(Check check) {
  for (std::int64_t n : kSizes) {
    for (int w : kWorldSizes) {
      for (int b : kBatchSizes) {
        for (bool shuffle : {false, true}) {
          SCOPED_TRACE("N=" + std::to_string(n) + " W=" + std::to_string(w) +
                       " B=" + std::to_string(b) + " shuffle=" + std::to_string(shuffle));
          check(n, w, b, shuffle);
          if (::testing::Test::HasFailure()) return;  // one failing point is enough to read
        }
      }
    }
  }
}

TEST(ShardingTrainProperty, EqualDisjointAndCoverAllButTheRemainder) {
  for_each_grid_point(check_train_shards);
}

TEST(ShardingEvalProperty, EverySampleExactlyOnceAndBalanced) {
  for_each_grid_point(check_eval_shards);
}

// The heart of "W ranks x B equals 1 rank x W*B": for a fixed global batch,
// every factorisation into ranks x per-rank batch reads the same samples in
// the same steps.
TEST(ShardingTrainTest, GlobalOrderIsIndependentOfWorldSize) {
  for (std::int64_t n : {60, 61, 100, 143, 1000}) {
    for (int global_batch : {1, 6, 12, 30}) {
      if (n < global_batch) continue;
      const auto reference =
          global_train_order(plan_all_ranks(ShardKind::kTrain, n, 1, global_batch));
      for (int w = 1; w <= global_batch; ++w) {
        if (global_batch % w != 0) continue;
        const auto plans = plan_all_ranks(ShardKind::kTrain, n, w, global_batch / w);
        EXPECT_EQ(global_train_order(plans), reference)
            << "N=" << n << " G=" << global_batch << " W=" << w;
        EXPECT_EQ(plans[0].num_batches(), n / global_batch);
      }
    }
  }
}

TEST(ShardingTrainTest, DroppedSetChangesWithTheEpochWhenShuffling) {
  auto dropped_set = [](std::int64_t epoch) {
    const auto order = epoch_permutation(1234, epoch, 103);
    std::vector<std::int64_t> tail(order.end() - 3, order.end());  // 103 mod 10
    std::sort(tail.begin(), tail.end());
    return tail;
  };
  const ShardPlan plan = plan_shard(make_request(ShardKind::kTrain, 2, 0, 5, 0), 103);
  EXPECT_EQ(plan.dropped_samples(), 3);
  EXPECT_NE(dropped_set(0), dropped_set(1));
}

TEST(ShardingTrainTest, ExactMultipleDropsNothing) {
  const ShardPlan plan = plan_shard(make_request(ShardKind::kTrain, 4, 3, 8), 320);
  EXPECT_EQ(plan.num_batches(), 10);
  EXPECT_EQ(plan.dropped_samples(), 0);
  EXPECT_EQ(train_steps_per_epoch(320, 4, 8), 10);
}

TEST(ShardingTrainTest, UnshuffledIsTheIdentityOrder) {
  const ShardPlan rank1 = plan_shard(make_request(ShardKind::kTrain, 2, 1, 3, 5, false), 13);
  EXPECT_EQ(rank1.batch(0), (std::vector<std::int64_t>{3, 4, 5}));
  EXPECT_EQ(rank1.batch(1), (std::vector<std::int64_t>{9, 10, 11}));
  EXPECT_EQ(rank1.num_batches(), 2);
  EXPECT_EQ(rank1.dropped_samples(), 1);
}

TEST(ShardingEvalTest, UnshuffledAssignmentIsContiguous) {
  // 10 samples on 3 ranks: 4, 3, 3, in batches of 2.
  const auto plans = plan_all_ranks(ShardKind::kEval, 10, 3, 2, false);
  EXPECT_EQ(plans[0].positions(), (std::vector<std::int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(plans[1].positions(), (std::vector<std::int64_t>{4, 5, 6}));
  EXPECT_EQ(plans[2].positions(), (std::vector<std::int64_t>{7, 8, 9}));
  EXPECT_EQ(plans[0].num_batches(), 2);
  EXPECT_EQ(plans[1].num_batches(), 2);
  EXPECT_EQ(plans[1].batch(1), (std::vector<std::int64_t>{6}));
}

TEST(ShardingEvalTest, FewerSamplesThanRanksLeavesSomeRanksEmpty) {
  const auto plans = plan_all_ranks(ShardKind::kEval, 2, 5, 4);
  EXPECT_EQ(plans[0].num_batches(), 1);
  EXPECT_EQ(plans[1].num_batches(), 1);
  for (int r = 2; r < 5; ++r) {
    EXPECT_EQ(plans[r].num_batches(), 0) << "rank " << r;
    EXPECT_EQ(plans[r].shard_size(), 0);
  }
}

TEST(ShardingPlanTest, PlansArePureFunctions) {
  const auto request = make_request(ShardKind::kTrain, 3, 1, 4, 7);
  EXPECT_EQ(plan_shard(request, 500).positions(), plan_shard(request, 500).positions());
  auto other_epoch = request;
  other_epoch.epoch = 8;
  EXPECT_NE(plan_shard(request, 500).positions(), plan_shard(other_epoch, 500).positions());
}

class ShardingStartBatchTest : public ::testing::TestWithParam<ShardKind> {};

TEST_P(ShardingStartBatchTest, ResumedPlanIsTheSuffix) {
  for (int w : {1, 3}) {
    for (int r = 0; r < w; ++r) {
      auto request = make_request(GetParam(), w, r, 4);
      const ShardPlan full = plan_shard(request, 101);
      for (std::int64_t k = 0; k <= full.num_batches(); ++k) {
        request.start_batch = k;
        const ShardPlan resumed = plan_shard(request, 101);
        EXPECT_EQ(resumed.start_batch(), k);
        EXPECT_EQ(resumed.num_batches(), full.num_batches());
        for (std::int64_t i = k; i < full.num_batches(); ++i) {
          EXPECT_EQ(resumed.batch(i), full.batch(i)) << "W=" << w << " r=" << r << " k=" << k;
        }
      }
      request.start_batch = full.num_batches() + 1;
      try {
        plan_shard(request, 101);
        FAIL() << "start_batch past the end was accepted";
      } catch (const ShardError& e) {
        EXPECT_THAT(e.what(), HasSubstr("start_batch " + std::to_string(full.num_batches() + 1)));
        EXPECT_THAT(e.what(), HasSubstr("has " + std::to_string(full.num_batches()) + " batches"));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, ShardingStartBatchTest,
                         ::testing::Values(ShardKind::kTrain, ShardKind::kEval));

TEST(ShardingPlanTest, BatchIndexOutOfRangeThrows) {
  const ShardPlan plan = plan_shard(make_request(ShardKind::kTrain, 2, 0, 5), 30);
  EXPECT_THROW(plan.batch(-1), std::out_of_range);
  EXPECT_THROW(plan.batch(plan.num_batches()), std::out_of_range);
}

struct BadRequest {
  std::string name;
  ShardRequest request;
  std::int64_t num_samples;
  std::string expected_message;
};

class ShardingBadRequestTest : public ::testing::TestWithParam<BadRequest> {};

TEST_P(ShardingBadRequestTest, NamesFieldValueAndRange) {
  try {
    plan_shard(GetParam().request, GetParam().num_samples);
    FAIL() << "accepted";
  } catch (const ShardError& e) {
    EXPECT_THAT(e.what(), HasSubstr(GetParam().expected_message));
  }
}

ShardRequest with(void (*edit)(ShardRequest&)) {
  ShardRequest request = make_request(ShardKind::kTrain, 2, 0, 4);
  edit(request);
  return request;
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ShardingBadRequestTest,
    ::testing::Values(
        BadRequest{"world0", with([](ShardRequest& r) { r.world_size = 0; }), 100,
                   "world_size 0 is out of range (expected 1..65536)"},
        BadRequest{"rank_eq_world", with([](ShardRequest& r) { r.rank = 2; }), 100,
                   "rank 2 is out of range (expected 0..1)"},
        BadRequest{"rank_negative", with([](ShardRequest& r) { r.rank = -1; }), 100,
                   "rank -1 is out of range (expected 0..1)"},
        BadRequest{"batch0", with([](ShardRequest& r) { r.batch_size = 0; }), 100,
                   "batch_size 0 is out of range (expected 1..65536)"},
        BadRequest{"batch_huge", with([](ShardRequest& r) { r.batch_size = 1 << 20; }), 100,
                   "batch_size 1048576 is out of range"},
        BadRequest{"epoch_negative", with([](ShardRequest& r) { r.epoch = -1; }), 100,
                   "epoch -1 is out of range"},
        BadRequest{"start_negative", with([](ShardRequest& r) { r.start_batch = -2; }), 100,
                   "start_batch -2 is out of range"},
        BadRequest{"kind", with([](ShardRequest& r) { r.kind = static_cast<ShardKind>(9); }), 100,
                   "kind 9 is unknown (expected train or eval)"},
        BadRequest{"empty_split", with([](ShardRequest&) {}), 0,
                   "the split has 0 samples (expected at least 1)"},
        BadRequest{"too_small", with([](ShardRequest&) {}), 7,
                   "the split has 7 samples, fewer than one global batch of 2 ranks x batch 4 = "
                   "8"}),
    [](const ::testing::TestParamInfo<BadRequest>& param) { return param.param.name; });

}  // namespace
}  // namespace xfer::coordinator::sharding
