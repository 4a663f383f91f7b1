// Reading, writing and applying state-dict files: what Python writes with
// `torch.save(model.state_dict(), FILE)` (the zip format LibTorch's
// torch::pickle_load reads), and what our training job writes.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace xfer::trainer::models {

// Name -> tensor, in file order.
using StateDict = torch::OrderedDict<std::string, torch::Tensor>;

// Reads a state-dict file. Throws std::runtime_error naming `path` when the
// file cannot be read, is truncated or is not torch.save'd data, or when its
// top-level object is not a dict of string -> tensor.
StateDict read_state_dict_file(const std::string& path);

// Writes `dict` so that both read_state_dict_file and Python's torch.load
// read it. Throws std::runtime_error naming `path` on I/O failure.
void write_state_dict_file(const StateDict& dict, const std::string& path);

// The model's parameters and buffers by their full dotted names.
StateDict model_state_dict(const torch::nn::Module& model);

struct LoadOptions {
  // Names starting with this prefix form the replaceable head (classifier).
  // Default: "classifier." (torchvision's EfficientNet and our TransferModel).
  std::string head_prefix = "classifier.";
};

struct LoadResult {
  int64_t tensors_loaded = 0;
  // True when the file's head was copied into the model; false when the model
  // keeps its freshly initialised head (file lacks it, or its shape differs:
  // another number of classes). `head_note` then says why.
  bool head_loaded = false;
  std::string head_note;
};

// Copies `dict` into `model` with the load rules:
//  - every parameter/buffer of the model outside the head must be in `dict`
//    with the same shape (error names the tensor, expected and found shape);
//  - a name in `dict` the model does not have is an error;
//  - the head is loaded only if all its tensors are present with the model's
//    shapes; otherwise the model's head is kept and a message is logged.
// `source` names the file in messages. Nothing is modified when it throws.
LoadResult load_state_dict(torch::nn::Module& model, const StateDict& dict,
                           const std::string& source, const LoadOptions& options = {});

// "[32, 3, 3, 3]".
std::string shape_string(const torch::Tensor& tensor);

}  // namespace xfer::trainer::models
