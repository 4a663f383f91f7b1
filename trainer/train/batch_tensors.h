// A streamed batch as the model's tensors, on the job's device and in its
// memory format. On the CPU the prefetcher makes the finished input itself
// (layout(): resized, normalised, in the memory format) and input() only
// wraps its memory; for CUDA the small 32 px [0, 1] batch crosses PCIe and
// the GPU resizes and normalises it.
#pragma once

#include <torch/types.h>

#include "trainer/data/shard_prefetcher.h"

namespace xfer::trainer::train {

class BatchTensors {
 public:
  BatchTensors(torch::Device device, torch::MemoryFormat format, int image_size)
      : device_(device), format_(format), image_size_(image_size) {}

  // What the prefetchers make of the streamed bytes (model_input.h).
  data::InputLayout layout() const;
  // [count, 3, side, side] floats on the device. On the CPU the tensor
  // borrows the batch's memory: the batch must outlive its use.
  torch::Tensor input(const data::Batch& batch) const;
  // [count] int64 labels on the device (a copy).
  torch::Tensor labels(const data::Batch& batch) const;

  torch::Device device() const { return device_; }
  torch::MemoryFormat memory_format() const { return format_; }

 private:
  const torch::Device device_;
  const torch::MemoryFormat format_;
  const int image_size_;
};

}  // namespace xfer::trainer::train
