#include "trainer/train/batch_tensors.h"

#include <torch/types.h>

#include <vector>

#include "trainer/models/preprocess.h"

namespace xfer::trainer::train {

data::InputLayout BatchTensors::layout() const {
  data::InputLayout layout;
  if (device_.is_cuda()) {
    // The small 32 px [0, 1] batch crosses PCIe; the GPU resizes and
    // normalises (input()).
    layout.size = data::kImageSide;
    layout.channels_last = false;
    layout.normalize = false;
    return layout;
  }
  layout.size = image_size_;
  layout.channels_last = format_ == torch::MemoryFormat::ChannelsLast;
  layout.normalize = true;
  layout.mean = models::kImageNetMean;
  layout.std = models::kImageNetStd;
  return layout;
}

torch::Tensor BatchTensors::input(const data::Batch& batch) const {
  const auto n = static_cast<std::int64_t>(batch.count);
  if (device_.is_cuda()) {
    // [0, 1] floats, NCHW, 32 px (layout()). The small batch goes over
    // PCIe from pinned memory without blocking (PyTorch's host allocator
    // keeps the buffer until the copy is done, so the batch is free at
    // once); resizing and normalising then run on the GPU, on the current
    // stream.
    const torch::Tensor images =
        torch::from_blob(const_cast<float*>(batch.images.data()),
                         {n, 3, data::kImageSide, data::kImageSide}, torch::kFloat32);
    torch::Tensor pinned =
        torch::empty(images.sizes(), images.options().pinned_memory(true)).copy_(images);
    return models::preprocess_imagenet(pinned.to(device_, /*non_blocking=*/true), image_size_)
        .contiguous(format_);
  }
  // The prefetcher made the model's input already (resized, normalised, in
  // the memory format): no pass over it here. The tensor borrows the batch's
  // memory: the batch outlives the step that uses it (the training loop
  // recycles it after the optimizer step).
  const std::int64_t side = batch.layout.size;
  const std::vector<std::int64_t> sizes{n, 3, side, side};
  const std::vector<std::int64_t> strides =
      batch.layout.channels_last ? std::vector<std::int64_t>{3 * side * side, 1, 3 * side, 3}
                                 : std::vector<std::int64_t>{3 * side * side, side * side, side, 1};
  return torch::from_blob(const_cast<float*>(batch.images.data()), sizes, strides, torch::kFloat32);
}

torch::Tensor BatchTensors::labels(const data::Batch& batch) const {
  const torch::Tensor labels = torch::from_blob(const_cast<std::int64_t*>(batch.labels.data()),
                                                {batch.count}, torch::kInt64);
  if (device_.is_cuda()) {
    return torch::empty(labels.sizes(), labels.options().pinned_memory(true))
        .copy_(labels)
        .to(device_, /*non_blocking=*/true);
  }
  return labels.clone();
}

}  // namespace xfer::trainer::train
