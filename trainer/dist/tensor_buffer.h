// Tensors as communicator Buffers. Includes LibTorch: only the tensor-side
// files (reducer.cc, model_sync.cc) include this header.
#pragma once

#include <torch/types.h>

#include <stdexcept>
#include <string>

#include "trainer/dist/communicator.h"

#if XFER_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace xfer::trainer::dist {

inline DataType data_type_of(const torch::Tensor& tensor, const std::string& name) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32:
      return DataType::kFloat32;
    case torch::kFloat64:
      return DataType::kFloat64;
    case torch::kInt32:
      return DataType::kInt32;
    case torch::kInt64:
      return DataType::kInt64;
    case torch::kUInt8:
    case torch::kBool:
      return DataType::kUInt8;
    default:
      throw std::invalid_argument("tensor '" + name + "' has type " +
                                  std::string(c10::toString(tensor.scalar_type())) +
                                  "; the communicators take float32, float64, int32, int64, "
                                  "uint8 or bool");
  }
}

// A Buffer over `tensor`'s storage. REQUIRES: tensor is contiguous (or the
// throw names `name`). For CUDA tensors the stream is the current stream of
// its device when LibTorch has CUDA, so the collective runs after the kernels
// that produced the data.
inline Buffer buffer_of(const torch::Tensor& tensor, const std::string& name) {
  if (!tensor.is_contiguous()) {
    throw std::invalid_argument("tensor '" + name + "' is not contiguous; communicators need " +
                                "one dense block (copy it with .contiguous() first)");
  }
  Buffer buffer;
  buffer.data = tensor.data_ptr();
  buffer.count = static_cast<std::size_t>(tensor.numel());
  buffer.type = data_type_of(tensor, name);
  if (tensor.is_cuda()) {
    buffer.device = DeviceType::kCuda;
    buffer.device_index = tensor.get_device();
#if XFER_TORCH_CUDA
    buffer.stream = c10::cuda::getCurrentCUDAStream(tensor.get_device()).stream();
#endif
  } else if (!tensor.is_cpu()) {
    throw std::invalid_argument("tensor '" + name + "' is on " + tensor.device().str() +
                                "; communicators take CPU or CUDA tensors");
  }
  return buffer;
}

}  // namespace xfer::trainer::dist
