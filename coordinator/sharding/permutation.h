// The order in which an epoch visits the samples of a split.
//
// The order is a pure function of (seed, epoch, n): every rank, every restart
// and every world size computes the same one. That is what lets W ranks with
// batch B see exactly the samples one rank with batch W*B sees, and what lets
// a resumed job continue an epoch where it stopped.
//
// We use our own generator (SplitMix64) and our own bounded draw rather than
// std::mt19937 + std::uniform_int_distribution: the engines are specified by
// the standard but the distributions are not, so libstdc++ and libc++ give
// different orders for the same seed. The algorithm below is frozen: changing
// it changes the order of every run and breaks resuming jobs started before
// the change (tests/coordinator/sharding_permutation_test.cc pins it).
#pragma once

#include <cstdint>
#include <vector>

namespace xfer::coordinator::sharding {

// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
// generators", 2014): a 64-bit counter passed through a mixing function.
// Small, fast, passes BigCrush, and trivially portable.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t state) : state_(state) {}

  std::uint64_t next();
  // A uniform draw from [0, bound), without modulo bias (rejection of the
  // top partial block). REQUIRES: bound >= 1.
  std::uint64_t uniform(std::uint64_t bound);

 private:
  std::uint64_t state_;
};

// The stream used for (seed, epoch): both are mixed so that neighbouring
// seeds and neighbouring epochs give unrelated streams.
SplitMix64 epoch_generator(std::uint64_t seed, std::int64_t epoch);

// A permutation of 0..n-1: Fisher-Yates (from the last element down) driven
// by epoch_generator(seed, epoch). Deterministic per (seed, epoch, n).
// Throws std::invalid_argument for n < 0 or epoch < 0, naming the value.
std::vector<std::int64_t> epoch_permutation(std::uint64_t seed, std::int64_t epoch, std::int64_t n);

// 0..n-1 in order: what shuffle=false uses. Throws for n < 0.
std::vector<std::int64_t> identity_order(std::int64_t n);

}  // namespace xfer::coordinator::sharding
