// The epoch loop's own rules (trainer/train/epoch_loop.h): dropout seeds as
// a pure function of (seed, epoch, rank, step), top-1/top-3 hits, the
// report's split kinds, and evaluation counts summed over two ranks
// (threads). The loop itself runs end to end in tests/train/*.sh.
#include "trainer/train/epoch_loop.h"

#include <gtest/gtest.h>
#include <torch/types.h>

#include <vector>

#include "tests/train/thread_world.h"

namespace xfer::trainer::train {
namespace {

using testing::ThreadWorld;

TEST(EpochLoopTest, DropoutSeedsAreAPureFunctionOfTheirInputs) {
  EXPECT_EQ(dropout_seed(7, 2, 1, 30), dropout_seed(7, 2, 1, 30));
  EXPECT_NE(dropout_seed(7, 2, 1, 30), dropout_seed(8, 2, 1, 30));
  EXPECT_NE(dropout_seed(7, 2, 1, 30), dropout_seed(7, 3, 1, 30));
  EXPECT_NE(dropout_seed(7, 2, 1, 30), dropout_seed(7, 2, 0, 30));
  EXPECT_NE(dropout_seed(7, 2, 1, 30), dropout_seed(7, 2, 1, 31));
}

TEST(EpochLoopTest, HitsCountTheLabelInTheTopOneAndTopThree) {
  const torch::Tensor logits = torch::tensor({{0.1F, 0.9F, 0.5F, 0.2F},    // 1, 2, 3
                                              {0.9F, 0.1F, 0.2F, 0.3F},    // 0, 3, 2
                                              {0.4F, 0.3F, 0.2F, 0.1F}});  // 0, 1, 2
  const torch::Tensor labels = torch::tensor({1, 2, 3}, torch::kInt64);
  const auto [top1, top3] = count_hits(logits, labels);
  EXPECT_EQ(top1, 1);
  EXPECT_EQ(top3, 2);
  // Two classes: top-3 is every class.
  const auto [one, all] =
      count_hits(torch::tensor({{0.2F, 0.8F}}), torch::tensor({0}, torch::kInt64));
  EXPECT_EQ(one, 0);
  EXPECT_EQ(all, 1);
}

TEST(EpochLoopTest, SplitKinds) {
  EXPECT_EQ(to_split_kind("val"), v1::SPLIT_KIND_VALIDATION);
  EXPECT_EQ(to_split_kind("test"), v1::SPLIT_KIND_TEST);
  EXPECT_EQ(to_split_kind("train"), v1::SPLIT_KIND_TRAIN);
}

TEST(EpochLoopTest, EvaluationCountsAreSummedNotAveraged) {
  ThreadWorld world(2);
  world.run([](dist::Communicator& comm) {
    evaluation::ClassificationCounts counts(3);
    if (comm.rank() == 0) {
      counts.add(0, 0, true, 0.5);
      counts.add(1, 2, true, 1.5);
    } else {
      counts.add(2, 2, true, 0.25);
    }
    sum_counts(comm, counts, "validation");
    const MetricTotals m = totals_of(counts);
    EXPECT_EQ(m.samples, 3);
    EXPECT_EQ(m.top1, 2);
    EXPECT_EQ(m.top3, 3);
    EXPECT_DOUBLE_EQ(m.loss_sum, 2.25);
  });
}

}  // namespace
}  // namespace xfer::trainer::train
