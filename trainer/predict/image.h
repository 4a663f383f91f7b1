// Image decoding for predict (PNG and JPEG through Debian's libstb), with no
// LibTorch so it compiles fast and can be used anywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xfer::trainer::predict {

struct RgbImage {
  int width = 0;
  int height = 0;
  // height * width * 3 bytes, row-major, RGB (alpha dropped, grey expanded).
  std::vector<uint8_t> pixels;
};

// Decodes a PNG or JPEG file (stb also reads BMP, GIF, TGA, PSD, PNM; they are
// accepted but not tested). Throws std::runtime_error naming `path` when the
// file cannot be read or is not an image stb can decode, with stb's reason.
RgbImage decode_image_file(const std::string& path);

}  // namespace xfer::trainer::predict
