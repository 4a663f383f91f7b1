// counter_dropout: the share of kept elements, their scale, the gradient,
// determinism under torch::manual_seed, and the identity cases.
#include "trainer/models/counter_dropout.h"

#include <gtest/gtest.h>

#include <cmath>

namespace xfer::trainer::models {
namespace {

TEST(CounterDropout, KeepsOneMinusPScaledAndTheGradientIsTheMask) {
  torch::manual_seed(3);
  constexpr double kP = 0.3;
  const torch::Tensor input = torch::ones({256, 1280}, torch::requires_grad());
  const torch::Tensor output = counter_dropout(input, kP, /*training=*/true);
  const torch::Tensor kept = output.ne(0);
  const double share = kept.to(torch::kFloat64).mean().item<double>();
  // 327,680 Bernoulli(0.7) draws: the standard error is 0.0008.
  EXPECT_NEAR(share, 1.0 - kP, 0.005);
  const float scale = static_cast<float>(1.0 / (1.0 - kP));
  EXPECT_TRUE(torch::allclose(output.masked_select(kept), torch::full({1}, scale)));
  // Each row and each column gets its own mask (no repeated pattern).
  EXPECT_FALSE(torch::equal(kept[0], kept[1]));
  EXPECT_FALSE(torch::equal(kept.select(1, 0), kept.select(1, 1)));

  output.sum().backward();
  EXPECT_TRUE(torch::equal(input.grad(), output.detach()));  // d(x * mask)/dx = mask, x = 1
}

TEST(CounterDropout, NeighboursAndConsecutiveMasksAreIndependent) {
  // A hash of the index could leave neighbouring elements, or the masks of
  // consecutive calls, correlated; Bernoulli draws are not. For independent
  // keep events of probability q the pair share is q^2.
  torch::manual_seed(5);
  constexpr double kP = 0.5;
  const torch::Tensor input = torch::ones({1 << 20});
  const torch::Tensor first = counter_dropout(input, kP, true).ne(0).to(torch::kFloat64);
  const torch::Tensor second = counter_dropout(input, kP, true).ne(0).to(torch::kFloat64);
  const double q = 1.0 - kP;
  const auto pair_share = [](const torch::Tensor& a, const torch::Tensor& b) {
    return (a * b).mean().item<double>();
  };
  // 2^20 pairs of Bernoulli(0.25): the standard error is 0.0004.
  const int64_t n = input.numel();
  EXPECT_NEAR(pair_share(first.slice(0, 0, n - 1), first.slice(0, 1, n)), q * q, 0.003);
  EXPECT_NEAR(pair_share(first.slice(0, 0, n - 2), first.slice(0, 2, n)), q * q, 0.003);
  EXPECT_NEAR(pair_share(first, second), q * q, 0.003);
  // Every bit position of the index matters: elements 2^k apart too.
  for (int64_t gap : {4, 64, 1024, 65536}) {
    EXPECT_NEAR(pair_share(first.slice(0, 0, n - gap), first.slice(0, gap, n)), q * q, 0.003)
        << "elements " << gap << " apart";
  }
}

TEST(CounterDropout, TorchManualSeedDecidesTheMask) {
  const torch::Tensor input = torch::randn({64, 100});
  torch::manual_seed(11);
  const torch::Tensor first = counter_dropout(input, 0.2, true);
  const torch::Tensor second = counter_dropout(input, 0.2, true);  // the generator moved on
  torch::manual_seed(11);
  const torch::Tensor again = counter_dropout(input, 0.2, true);
  EXPECT_TRUE(torch::equal(first, again));
  EXPECT_FALSE(torch::equal(first, second));
}

TEST(CounterDropout, IdentityInEvalModeOrWithPZero) {
  const torch::Tensor input = torch::randn({8, 16});
  EXPECT_TRUE(counter_dropout(input, 0.5, /*training=*/false).is_same(input));
  EXPECT_TRUE(counter_dropout(input, 0.0, /*training=*/true).is_same(input));
  CounterDropout module(0.5);
  module->eval();
  EXPECT_TRUE(module->forward(input).is_same(input));
  module->train();
  EXPECT_FALSE(torch::equal(module->forward(input), input));
  EXPECT_TRUE(module->parameters().empty());
  EXPECT_TRUE(module->buffers().empty());
}

TEST(CounterDropout, KeepsTheInputsDtype) {
  const torch::Tensor input = torch::ones({32, 32}, torch::kFloat64);
  const torch::Tensor output = counter_dropout(input, 0.5, true);
  EXPECT_EQ(output.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(torch::equal(output.ne(0), output.eq(2.0)));
}

TEST(CounterDropout, AProbabilityOutsideZeroToOneIsRefused) {
  const torch::Tensor input = torch::ones({4});
  EXPECT_THROW(counter_dropout(input, 1.0, true), std::invalid_argument);
  EXPECT_THROW(counter_dropout(input, -0.1, true), std::invalid_argument);
  EXPECT_THROW(counter_dropout(input, std::nan(""), true), std::invalid_argument);
  EXPECT_THROW(CounterDropout(1.5), std::invalid_argument);
}

}  // namespace
}  // namespace xfer::trainer::models
