#include "coordinator/coordctl/report_html_png.h"

#include <algorithm>
#include <array>
#include <stdexcept>

namespace xfer::coordinator::coordctl {
namespace {

// Deflate's stored blocks hold at most 65535 bytes each.
constexpr std::size_t kMaxStoredBlock = 65535;

std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    std::uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

void put_u32_be(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xFF));
  }
}

// Length, type, data, CRC of type + data.
void put_chunk(std::string& png, const char (&type)[5], std::string_view data) {
  put_u32_be(png, static_cast<std::uint32_t>(data.size()));
  std::string typed(type, 4);
  typed.append(data);
  png.append(typed);
  put_u32_be(png, crc32(typed));
}

// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951, BTYPE 00).
std::string zlib_stored(std::string_view data) {
  std::string out;
  out.push_back(static_cast<char>(0x78));  // deflate, 32 KiB window
  out.push_back(static_cast<char>(0x01));  // no preset dictionary; (0x78 0x01) % 31 == 0
  std::size_t at = 0;
  do {
    const std::size_t length = std::min(kMaxStoredBlock, data.size() - at);
    const bool last = at + length == data.size();
    out.push_back(static_cast<char>(last ? 1 : 0));  // BFINAL, BTYPE 00, byte-aligned
    out.push_back(static_cast<char>(length & 0xFF));
    out.push_back(static_cast<char>(length >> 8));
    out.push_back(static_cast<char>(~length & 0xFF));
    out.push_back(static_cast<char>((~length >> 8) & 0xFF));
    out.append(data.substr(at, length));
    at += length;
  } while (at < data.size());
  put_u32_be(out, adler32(data));
  return out;
}

}  // namespace

std::uint32_t crc32(std::string_view bytes) {
  static const std::array<std::uint32_t, 256> table = make_crc_table();
  std::uint32_t c = 0xFFFFFFFFu;
  for (const char byte : bytes) {
    c = table[(c ^ static_cast<unsigned char>(byte)) & 0xFF] ^ (c >> 8);
  }
  return c ^ 0xFFFFFFFFu;
}

std::uint32_t adler32(std::string_view bytes) {
  constexpr std::uint32_t kMod = 65521;
  std::uint32_t a = 1, b = 0;
  for (const char byte : bytes) {
    a = (a + static_cast<unsigned char>(byte)) % kMod;
    b = (b + a) % kMod;
  }
  return (b << 16) | a;
}

std::string encode_png(std::string_view planar, int channels, int height, int width) {
  if (channels < 1 || height < 1 || width < 1) {
    throw std::invalid_argument("image of " + std::to_string(channels) + "x" +
                                std::to_string(height) + "x" + std::to_string(width) +
                                " (expected channels, height and width of at least 1)");
  }
  const std::size_t plane = static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
  if (planar.size() != plane * static_cast<std::size_t>(channels)) {
    throw std::invalid_argument("image has " + std::to_string(planar.size()) +
                                " bytes (expected channels x height x width = " +
                                std::to_string(plane * static_cast<std::size_t>(channels)) + ")");
  }
  const int kept = channels > 4 ? 3 : channels;
  // PNG colour types by channel count: grey 0, grey + alpha 4, RGB 2, RGBA 6.
  constexpr char kColourType[] = {0, 0, 4, 2, 6};
  // Scanlines, each led by filter type 0 (none), pixels interleaved.
  std::string raw;
  raw.reserve(static_cast<std::size_t>(height) * (1 + static_cast<std::size_t>(width * kept)));
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);
    for (int x = 0; x < width; ++x) {
      const std::size_t at = static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
                             static_cast<std::size_t>(x);
      for (int c = 0; c < kept; ++c)
        raw.push_back(planar[static_cast<std::size_t>(c) * plane + at]);
    }
  }
  std::string header;
  put_u32_be(header, static_cast<std::uint32_t>(width));
  put_u32_be(header, static_cast<std::uint32_t>(height));
  header.push_back(8);  // bits per sample
  header.push_back(kColourType[kept]);
  header.append(3, '\0');  // compression 0, filter 0, no interlace
  std::string png("\x89PNG\r\n\x1a\n", 8);
  put_chunk(png, "IHDR", header);
  put_chunk(png, "IDAT", zlib_stored(raw));
  put_chunk(png, "IEND", "");
  return png;
}

std::string base64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                            static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1]))
                                << 8 |
                            static_cast<unsigned char>(bytes[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out.push_back(kAlphabet[(v >> shift) & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

}  // namespace xfer::coordinator::coordctl
