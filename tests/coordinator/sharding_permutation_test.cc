#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <vector>

#include "coordinator/sharding/permutation.h"

namespace xfer::coordinator::sharding {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

bool is_permutation_of_iota(std::vector<std::int64_t> order) {
  std::sort(order.begin(), order.end());
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (order[i] != static_cast<std::int64_t>(i)) return false;
  }
  return true;
}

// The orders below were computed by an independent Python implementation of
// the algorithm documented in permutation.h (SplitMix64, rejection-sampled
// bounded draws, Fisher-Yates from the top). If this test fails, the order of
// every run changed: resumed jobs would see different samples.
TEST(ShardingPermutationTest, MatchesFrozenReferenceOrders) {
  EXPECT_THAT(epoch_permutation(42, 0, 10), ElementsAre(3, 1, 6, 8, 4, 5, 9, 7, 2, 0));
  EXPECT_THAT(epoch_permutation(42, 1, 10), ElementsAre(1, 4, 7, 2, 5, 9, 6, 8, 0, 3));
  EXPECT_THAT(epoch_permutation(0, 0, 16),
              ElementsAre(6, 8, 1, 9, 15, 14, 7, 10, 3, 4, 13, 12, 11, 5, 0, 2));
  EXPECT_THAT(epoch_permutation(UINT64_MAX, 7, 12),
              ElementsAre(3, 9, 6, 7, 0, 11, 2, 1, 8, 4, 10, 5));
}

TEST(ShardingPermutationTest, GeneratorMatchesReferenceStream) {
  SplitMix64 rng = epoch_generator(1, 0);
  EXPECT_EQ(rng.next(), 2837033464341919905ULL);
  EXPECT_EQ(rng.next(), 41079744128078654ULL);
  EXPECT_EQ(rng.next(), 17174375652205655575ULL);
}

TEST(ShardingPermutationTest, IsAPermutationForManySizes) {
  for (std::int64_t n : {0, 1, 2, 3, 7, 64, 1000, 4099}) {
    const auto order = epoch_permutation(9, 3, n);
    EXPECT_EQ(order.size(), static_cast<std::size_t>(n));
    EXPECT_TRUE(is_permutation_of_iota(order)) << "n=" << n;
  }
}

TEST(ShardingPermutationTest, DeterministicPerSeedAndEpoch) {
  for (std::uint64_t seed : {0ULL, 1ULL, 12345ULL}) {
    for (std::int64_t epoch : {0, 1, 17}) {
      EXPECT_EQ(epoch_permutation(seed, epoch, 500), epoch_permutation(seed, epoch, 500))
          << "seed=" << seed << " epoch=" << epoch;
    }
  }
}

TEST(ShardingPermutationTest, DiffersAcrossEpochsAndSeeds) {
  std::set<std::vector<std::int64_t>> seen;
  for (std::int64_t epoch = 0; epoch < 20; ++epoch) {
    seen.insert(epoch_permutation(5, epoch, 200));
  }
  EXPECT_EQ(seen.size(), 20u) << "two epochs of seed 5 share an order";
  EXPECT_NE(epoch_permutation(5, 0, 200), epoch_permutation(6, 0, 200));
  // Neighbouring (seed, epoch) pairs along the diagonal must not collide.
  EXPECT_NE(epoch_permutation(5, 1, 200), epoch_permutation(6, 0, 200));
}

TEST(ShardingPermutationTest, ShuffleIsNotNearlyIdentity) {
  const auto order = epoch_permutation(3, 0, 1000);
  int fixed_points = 0;
  for (std::size_t i = 0; i < order.size(); ++i) fixed_points += order[i] == std::int64_t(i);
  // A uniform permutation has about one fixed point; 20 is a broken shuffle.
  EXPECT_LT(fixed_points, 20);
}

TEST(ShardingPermutationTest, FirstElementIsRoughlyUniform) {
  // Over many epochs every one of 8 positions should come first about 1/8 of
  // the time; a biased bounded draw or an off-by-one in Fisher-Yates shows
  // here (e.g. never or always leaving the last element in place).
  constexpr int kEpochs = 8000;
  std::vector<int> first(8, 0);
  for (int epoch = 0; epoch < kEpochs; ++epoch) ++first[epoch_permutation(11, epoch, 8)[0]];
  for (int i = 0; i < 8; ++i) {
    EXPECT_GT(first[i], kEpochs / 8 - 150) << "position " << i;
    EXPECT_LT(first[i], kEpochs / 8 + 150) << "position " << i;
  }
}

TEST(ShardingSplitMix64Test, UniformStaysInBound) {
  SplitMix64 rng(77);
  for (std::uint64_t bound :
       std::vector<std::uint64_t>{1, 2, 3, 1000, (1ULL << 63) + 1, UINT64_MAX}) {
    for (int i = 0; i < 200; ++i) EXPECT_LT(rng.uniform(bound), bound) << "bound " << bound;
  }
}

TEST(ShardingIdentityOrderTest, IsIota) {
  EXPECT_THAT(identity_order(5), ElementsAreArray({0, 1, 2, 3, 4}));
  EXPECT_TRUE(identity_order(0).empty());
}

TEST(ShardingPermutationTest, RejectsNegativeArguments) {
  EXPECT_THROW(epoch_permutation(1, -1, 10), std::invalid_argument);
  EXPECT_THROW(epoch_permutation(1, 0, -1), std::invalid_argument);
  try {
    epoch_permutation(1, -3, 10);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("epoch is -3"));
  }
}

}  // namespace
}  // namespace xfer::coordinator::sharding
