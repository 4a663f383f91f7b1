#include "coordinator/sharding/permutation.h"

#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

namespace xfer::coordinator::sharding {
namespace {

constexpr std::uint64_t kGoldenGamma = 0x9E3779B97F4A7C15ULL;

// SplitMix64's finaliser (a variant of MurmurHash3's fmix64).
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

void require_non_negative(const char* what, std::int64_t value) {
  if (value < 0) {
    throw std::invalid_argument(std::string(what) + " is " + std::to_string(value) +
                                " (expected >= 0)");
  }
}

}  // namespace

std::uint64_t SplitMix64::next() {
  state_ += kGoldenGamma;
  return mix64(state_);
}

std::uint64_t SplitMix64::uniform(std::uint64_t bound) {
  // Accept x only below the largest multiple of `bound` that fits in 64 bits,
  // so every residue is equally likely. `limit` is 2^64 - (2^64 mod bound),
  // computed without 128-bit arithmetic; for bound a power of two it wraps to
  // 0, meaning "accept everything".
  const std::uint64_t rejected = (std::numeric_limits<std::uint64_t>::max() % bound + 1) % bound;
  const std::uint64_t limit = 0 - rejected;  // 2^64 - rejected, mod 2^64
  for (;;) {
    const std::uint64_t x = next();
    if (limit == 0 || x < limit) return x % bound;
  }
}

SplitMix64 epoch_generator(std::uint64_t seed, std::int64_t epoch) {
  // Mix the seed first so that (seed, epoch) and (seed + 1, epoch - 1) do not
  // collide, then fold in the epoch and mix again.
  const std::uint64_t state =
      mix64(mix64(seed) ^ (static_cast<std::uint64_t>(epoch) * kGoldenGamma + 1));
  return SplitMix64(state);
}

std::vector<std::int64_t> identity_order(std::int64_t n) {
  require_non_negative("sample count n", n);
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  return order;
}

std::vector<std::int64_t> epoch_permutation(std::uint64_t seed, std::int64_t epoch,
                                            std::int64_t n) {
  require_non_negative("epoch", epoch);
  std::vector<std::int64_t> order = identity_order(n);
  SplitMix64 rng = epoch_generator(seed, epoch);
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng.uniform(static_cast<std::uint64_t>(i) + 1));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

}  // namespace xfer::coordinator::sharding
