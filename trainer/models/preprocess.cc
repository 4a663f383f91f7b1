#include "trainer/models/preprocess.h"

#include <torch/nn/functional/upsampling.h>

#include <stdexcept>
#include <string>

#include "trainer/models/state_dict.h"

namespace xfer::trainer::models {

torch::Tensor preprocess_imagenet(const torch::Tensor& images, int64_t image_size) {
  if (images.dim() != 4 || images.size(1) != 3) {
    throw std::invalid_argument("preprocess: images have shape " + shape_string(images) +
                                ", expected [N, 3, H, W]");
  }
  if (image_size < 1) {
    throw std::invalid_argument("preprocess: image size " + std::to_string(image_size) +
                                ", expected >= 1");
  }
  torch::Tensor x;
  if (images.scalar_type() == torch::kByte) {
    x = images.to(torch::kFloat32).div_(255.0);
  } else if (images.is_floating_point()) {
    x = images.to(torch::kFloat32);
  } else {
    throw std::invalid_argument(std::string("preprocess: images are ") +
                                c10::toString(images.scalar_type()) +
                                ", expected uint8 or floating point");
  }
  if (x.size(2) != image_size || x.size(3) != image_size) {
    namespace F = torch::nn::functional;
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{image_size, image_size})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  // On the images' device: a CUDA batch is normalised on the GPU.
  const auto mean = torch::tensor({kImageNetMean[0], kImageNetMean[1], kImageNetMean[2]})
                        .view({1, 3, 1, 1})
                        .to(x.device());
  const auto std = torch::tensor({kImageNetStd[0], kImageNetStd[1], kImageNetStd[2]})
                       .view({1, 3, 1, 1})
                       .to(x.device());
  return (x - mean) / std;
}

}  // namespace xfer::trainer::models
