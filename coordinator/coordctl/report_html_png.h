// The pieces the HTML report needs to inline an image: a PNG encoder for
// the dataset's planar uint8 bytes and base64 for a data: URI. The PNG is
// uncompressed (deflate "stored" blocks): a 32x32 RGB image is ~3 KB
// either way, and it keeps coordctl free of a compression dependency.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace xfer::coordinator::coordctl {

// CRC-32 (ISO 3309, as PNG and zlib use it) of `bytes`.
std::uint32_t crc32(std::string_view bytes);
// Adler-32 (RFC 1950) of `bytes`.
std::uint32_t adler32(std::string_view bytes);

// A PNG of `planar`, channels x height x width bytes, channel-major: one
// channel is greyscale, two greyscale + alpha, three RGB, four RGBA; more
// than four keep the first three as RGB. Throws std::invalid_argument when
// a dimension is below 1 or planar.size() != channels * height * width.
std::string encode_png(std::string_view planar, int channels, int height, int width);

// Standard base64 (RFC 4648, with '=' padding).
std::string base64(std::string_view bytes);

}  // namespace xfer::coordinator::coordctl
