#include "coordinator/tensorboard/crc32c.h"

#include <array>

namespace xfer::coordinator::tensorboard {
namespace {

constexpr std::uint32_t kPolynomial = 0x82F63B78u;  // 0x1EDC6F41 bit-reversed
constexpr std::uint32_t kMaskDelta = 0xa282ead8u;

// table[b]: the CRC register after shifting byte b through it.
constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t r = b;
    for (int bit = 0; bit < 8; ++bit) r = (r & 1u) ? (r >> 1) ^ kPolynomial : r >> 1;
    table[b] = r;
  }
  return table;
}

constexpr std::array<std::uint32_t, 256> kTable = make_table();

}  // namespace

std::uint32_t crc32c(std::string_view data, std::uint32_t crc) {
  // The register starts at all ones and the result is inverted; inverting a
  // previous result on entry makes the function continue it.
  std::uint32_t r = ~crc;
  for (const char c : data) r = kTable[(r ^ static_cast<unsigned char>(c)) & 0xFFu] ^ (r >> 8);
  return ~r;
}

std::uint32_t mask_crc(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }

std::uint32_t unmask_crc(std::uint32_t masked) {
  const std::uint32_t rotated = masked - kMaskDelta;
  return (rotated << 15) | (rotated >> 17);
}

}  // namespace xfer::coordinator::tensorboard
