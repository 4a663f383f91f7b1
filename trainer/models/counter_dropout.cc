#include "trainer/models/counter_dropout.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>

#include "common/vector_clones.h"

namespace xfer::trainer::models {
namespace {

void check_probability(double p) {
  if (!(p >= 0.0 && p < 1.0)) {
    throw std::invalid_argument("dropout probability " + std::to_string(p) +
                                " is out of range (expected 0 <= p < 1)");
  }
}

// One draw from LibTorch's default CPU generator: what torch::manual_seed
// sets.
std::uint64_t draw_seed() {
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get<at::CPUGeneratorImpl>()->random64();
}

// Sebastiano Vigna's splitmix64 finaliser: turns the generator's draw (plus
// a chunk number) into the two 32-bit keys of a chunk's hash.
inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31U);
}

// Chris Wellons' "lowbias32" integer hash: a 32-bit bijection with very low
// avalanche bias. Two rounds, keyed before and between them, give each
// element of a chunk its own uniform 32 bits.
inline std::uint32_t hash32(std::uint32_t x) {
  x ^= x >> 16U;
  x *= 0x7feb352dU;
  x ^= x >> 15U;
  x *= 0x846ca68bU;
  return x ^ (x >> 16U);
}

// The mask of elements [0, n) of one chunk. 32-bit arithmetic only, so the
// loop vectorises (8 or 16 elements a step with AVX2 or AVX-512; built for
// each, chosen at load time by the CPU), where splitmix64 per element cost
// 3 ns each in scalar 64-bit multiplies.
XFER_VECTOR_CLONES void fill_mask(float* out, std::uint32_t n, std::uint32_t key_in,
                                  std::uint32_t key_between, std::uint32_t drop_below,
                                  float scale) {
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint32_t bits = hash32(hash32(i + key_in) ^ key_between);
    out[i] = bits >= drop_below ? scale : 0.0F;
  }
}

}  // namespace

torch::Tensor counter_dropout(const torch::Tensor& input, double p, bool training) {
  check_probability(p);
  if (!training || p == 0.0) return input;
  if (!input.device().is_cpu()) return torch::dropout(input, p, /*train=*/true);
  const std::uint64_t seed = draw_seed();
  // An element is kept when its 32 bits, as a uniform number in [0, 1), are
  // >= p (p resolved to 2^-32).
  const auto drop_below =
      static_cast<std::uint32_t>(std::min(p * 4294967296.0, 4294967295.0));  // p * 2^32
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  torch::Tensor mask = torch::empty(input.sizes(), input.options().dtype(torch::kFloat32));
  float* out = mask.data_ptr<float>();
  const std::int64_t n = mask.numel();
  // Chunks of 2^31 elements, each with its own keys (one chunk in practice).
  constexpr std::int64_t kChunk = std::int64_t{1} << 31U;
  for (std::int64_t first = 0; first < n; first += kChunk) {
    const std::uint64_t keys = mix64(seed + static_cast<std::uint64_t>(first / kChunk));
    fill_mask(out + first, static_cast<std::uint32_t>(std::min(kChunk, n - first)),
              static_cast<std::uint32_t>(keys), static_cast<std::uint32_t>(keys >> 32U), drop_below,
              scale);
  }
  if (input.scalar_type() != torch::kFloat32) mask = mask.to(input.scalar_type());
  return input * mask;
}

CounterDropoutImpl::CounterDropoutImpl(double p) : p_(p) { check_probability(p); }

torch::Tensor CounterDropoutImpl::forward(const torch::Tensor& input) {
  return counter_dropout(input, p_, is_training());
}

}  // namespace xfer::trainer::models
