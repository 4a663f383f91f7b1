// Reading, writing and applying state-dict files: what Python writes with
// `torch.save(model.state_dict(), FILE)` (the zip format LibTorch's
// torch::pickle_load reads), and what our training job writes.
#pragma once

#include <torch/nn/module.h>
#include <torch/serialize.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace xfer::trainer::models {

// Name -> tensor, in file order.
using StateDict = torch::OrderedDict<std::string, torch::Tensor>;

// Reads any file written by Python's torch.save (zip format, PyTorch >= 1.6)
// or LibTorch's torch::pickle_save, including Python OrderedDicts (state
// dicts) at any depth, which become plain dicts. Throws std::runtime_error
// naming `path` when the file cannot be opened, is empty, truncated or not
// such a file. Never crashes on garbage.
torch::IValue read_torch_file(const std::string& path);
// The same for bytes already in memory; `source` names them in errors.
torch::IValue parse_torch_bytes(const std::vector<char>& bytes, const std::string& source);

// Checks that `value` is a dict of string -> tensor and returns it in order.
// Throws std::runtime_error naming `source` and the offending entry.
StateDict state_dict_from_ivalue(const torch::IValue& value, const std::string& source);

// read_torch_file + state_dict_from_ivalue.
StateDict read_state_dict_file(const std::string& path);

// The dict as an IValue (tensors detached, on the CPU), ready for
// torch::pickle_save or to nest in a larger record.
c10::Dict<std::string, torch::Tensor> state_dict_to_ivalue(const StateDict& dict);

// Writes `dict` so that both read_state_dict_file and Python's torch.load
// read it. Atomic: a temporary file is fsynced and renamed over `path`, so a
// crash leaves the old file or the new one. Throws std::runtime_error naming
// `path` on I/O failure.
void write_state_dict_file(const StateDict& dict, const std::string& path);

// Writes `bytes` to `path` atomically as above.
void write_file_atomically(const std::vector<char>& bytes, const std::string& path);

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
