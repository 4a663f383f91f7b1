// The model file: what the training job writes for a trained model (the best
// checkpoint, the final model) and what `trainer predict` reads. It carries
// the weights together with what is needed to use them: architecture, class
// count, image size and label names.
//
// On disk it is one pickled dict (torch::pickle_save; Python's torch.load
// reads it, and Python's torch.save of the same dict is read back here):
//
//   "xfer_model_format"  int   kModelFileFormat (1)
//   "arch"               str   "efficientnet_b0" | "torchscript"
//   "num_classes"        int   >= 1
//   "image_size"         int   side of the square input the model was trained at
//   "labels"             [str] empty, or exactly num_classes names
//   "base_file"          str   torchscript: the base file the model was built on
//                              (a hint; predict needs --base); "" otherwise
//   "state_dict"         {str: Tensor}  the whole TransferModel, head included
//
// Other top-level keys are allowed and ignored by readers: the training job
// may keep optimizer state, phase, epoch, ... in the same dict, so one of its
// checkpoints is a model file too.
#pragma once

#include <torch/serialize.h>
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "trainer/models/state_dict.h"

namespace xfer::trainer::models {

inline constexpr int64_t kModelFileFormat = 1;
// Name of the top-level key that tells a model file from a plain state dict.
inline constexpr const char* kModelFileFormatKey = "xfer_model_format";

struct ModelMetadata {
  // "efficientnet_b0" or "torchscript".
  std::string arch = "efficientnet_b0";
  // REQUIRES: >= 1.
  int64_t num_classes = 0;
  // Side of the square images the model was trained on. REQUIRES: >= 1.
  // Default: 224.
  int64_t image_size = 224;
  // Class names by index. REQUIRES: empty or num_classes entries.
  std::vector<std::string> labels;
  // torchscript only: the base file the model was built from. Default: "".
  std::string base_file;
};

// What a weights file held: a model file gives metadata, a plain state dict
// (torchvision's, export_weights.py's) does not.
struct WeightsFile {
  StateDict state_dict;
  std::optional<ModelMetadata> metadata;
};

// Checks the REQUIRES above. Throws std::invalid_argument naming the field,
// its value and what was expected; `source` prefixes the message.
void validate_metadata(const ModelMetadata& metadata, const std::string& source);

// The model file's bytes. `extra` adds top-level entries (keys must not be
// one of the reserved names above). Throws std::invalid_argument for bad
// metadata or a reserved extra key.
std::vector<char> serialize_model_file(
    const ModelMetadata& metadata, const StateDict& state_dict,
    const std::vector<std::pair<std::string, torch::IValue>>& extra = {});

// serialize_model_file written atomically (temporary file, fsync, rename).
void write_model_file(const std::string& path, const ModelMetadata& metadata,
                      const StateDict& state_dict,
                      const std::vector<std::pair<std::string, torch::IValue>>& extra = {});

// Reads a model file or a plain state dict from bytes / a file. Throws
// std::runtime_error naming `source` (the path) when it is unreadable,
// truncated, neither kind, of another format version, or when a metadata
// field has the wrong type or value (the message names the field).
WeightsFile parse_weights(const std::vector<char>& bytes, const std::string& source);
WeightsFile read_weights_file(const std::string& path);

}  // namespace xfer::trainer::models
