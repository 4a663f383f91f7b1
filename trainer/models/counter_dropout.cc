#include "trainer/models/counter_dropout.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>

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

// Sebastiano Vigna's splitmix64 finaliser: a bijective mix whose outputs for
// consecutive inputs pass BigCrush; one per element is all a mask needs.
inline std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31U);
}

}  // namespace

torch::Tensor counter_dropout(const torch::Tensor& input, double p, bool training) {
  check_probability(p);
  if (!training || p == 0.0) return input;
  if (!input.device().is_cpu()) return torch::dropout(input, p, /*train=*/true);
  const std::uint64_t seed = draw_seed();
  // Each hash gives two elements 32 bits each; an element is kept when its
  // 32 bits, as a uniform number in [0, 1), are >= p (p resolved to 2^-32).
  const auto drop_below = static_cast<std::uint64_t>(p * 4294967296.0);  // p * 2^32
  const auto scale = static_cast<float>(1.0 / (1.0 - p));
  torch::Tensor mask = torch::empty(input.sizes(), input.options().dtype(torch::kFloat32));
  float* out = mask.data_ptr<float>();
  const std::int64_t n = mask.numel();
  constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
  const auto keep = [&](std::uint64_t bits) { return bits >= drop_below ? scale : 0.0F; };
  std::int64_t i = 0;
  for (; i + 1 < n; i += 2) {
    const std::uint64_t u = mix(seed + static_cast<std::uint64_t>(i) * kGolden);
    out[i] = keep(u & 0xffffffffU);
    out[i + 1] = keep(u >> 32U);
  }
  if (i < n) out[i] = keep(mix(seed + static_cast<std::uint64_t>(i) * kGolden) & 0xffffffffU);
  if (input.scalar_type() != torch::kFloat32) mask = mask.to(input.scalar_type());
  return input * mask;
}

CounterDropoutImpl::CounterDropoutImpl(double p) : p_(p) { check_probability(p); }

torch::Tensor CounterDropoutImpl::forward(const torch::Tensor& input) {
  return counter_dropout(input, p_, is_training());
}

}  // namespace xfer::trainer::models
