#include "trainer/predict/image.h"

#include <stb_image.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <stdexcept>

namespace xfer::trainer::predict {

RgbImage decode_image_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open image " + path + ": " + std::strerror(errno));
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  if (bytes.empty()) throw std::runtime_error("image " + path + " is empty, expected PNG or JPEG");
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw std::runtime_error("image " + path + " is over 2 GiB, too large to decode");
  }
  int width = 0;
  int height = 0;
  int channels_in_file = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> data(
      stbi_load_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()),
                            static_cast<int>(bytes.size()), &width, &height, &channels_in_file,
                            /*desired_channels=*/3),
      stbi_image_free);
  if (!data) {
    throw std::runtime_error("cannot decode image " + path + " (" + stbi_failure_reason() +
                             "), expected a PNG or JPEG file");
  }
  RgbImage image;
  image.width = width;
  image.height = height;
  const size_t size = static_cast<size_t>(width) * static_cast<size_t>(height) * 3;
  image.pixels.assign(data.get(), data.get() + size);
  return image;
}

}  // namespace xfer::trainer::predict
