// `trainer predict`: classify one image file with a trained model.
//
// It reads a plain state dict (torchvision's ImageNet B0 from
// tools/export_weights.py: 1000 classes) or a model file from our training job
// (trainer/models/model_file.h: arch, class count, image size and labels come
// with it), decodes the image, applies the ImageNet preprocessing at the
// model's image size and prints the top-k classes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/predict/report.h"

namespace xfer::trainer::predict {

struct PredictOptions {
  // State dict or model file. REQUIRES: non-empty.
  std::string weights;
  // "efficientnet_b0" or "torchscript". Default: "" = the model file's arch,
  // else efficientnet_b0. A model file of another arch is an error.
  std::string arch;
  // TorchScript base (tools/export_weights.py). REQUIRES: set for
  // arch torchscript, unless the model file's base_file exists.
  std::string base;
  // Default: 0 = the class count of the file's head. Any other value must
  // equal it (predict needs the trained head, it never makes a new one).
  int64_t num_classes = 0;
  // One class name per line. Default: "" = the model file's labels, else
  // class_<index>.
  std::string labels_file;
  // Side the image is resized to. Default: 0 = the model file's image size,
  // else 224.
  int64_t image_size = 0;
  // PNG or JPEG. REQUIRES: non-empty.
  std::string image;
  // REQUIRES: >= 1; capped at the class count. Default: 5.
  int64_t top_k = 5;
};

struct PredictResult {
  std::vector<Prediction> top;  // most probable first
  int64_t num_classes = 0;
  int64_t image_size = 0;
  std::string arch;
};

// Runs the prediction. Throws std::invalid_argument for contradictory or
// missing options and std::runtime_error for unreadable or mismatching files;
// every message names the file or flag and what was expected.
PredictResult predict(const PredictOptions& options);

}  // namespace xfer::trainer::predict
