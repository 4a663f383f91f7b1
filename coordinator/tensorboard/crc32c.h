// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78), the checksum of
// TFRecord framing, plus the "masked" form TFRecord stores. Table-driven,
// one byte at a time: event files are a few KB per epoch, so speed does not
// matter here and the simplest correct code wins.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace xfer::coordinator::tensorboard {

// CRC-32C of `data`. Pass a previous result as `crc` to continue over a
// second piece: crc32c(b, crc32c(a)) == crc32c(a + b).
std::uint32_t crc32c(std::string_view data, std::uint32_t crc = 0);

// TFRecord stores ((crc >> 15) | (crc << 17)) + 0xa282ead8: a CRC of data that
// itself holds CRCs is then not trivially zero.
std::uint32_t mask_crc(std::uint32_t crc);
std::uint32_t unmask_crc(std::uint32_t masked);

}  // namespace xfer::coordinator::tensorboard
