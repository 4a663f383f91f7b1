// What predict prints: the top-k classes, as text for people or as JSON for
// programs, and the label file it names classes with. No LibTorch here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace xfer::trainer::predict {

// Below this top probability a prediction is reported as uncertain (the
// seed's rule).
inline constexpr double kUncertainBelow = 0.5;

struct Prediction {
  int64_t index = 0;
  std::string label;
  double probability = 0;
};

// The k most probable classes, most probable first; ties go to the lower
// index. k is capped at the number of classes. `labels` is empty (classes
// are then named by default_label) or has one name per class.
// Throws std::invalid_argument when k < 1, `probabilities` is empty or the
// label count differs from the class count.
std::vector<Prediction> top_k(const std::vector<double>& probabilities, int64_t k,
                              const std::vector<std::string>& labels);

// "class_17": the name of a class nobody named.
std::string default_label(int64_t index);

// Exactly {"predictions":[{"index":I,"label":"NAME","probability":P},...]}
// (no spaces, in the given order), and a newline.
std::string format_json(const std::vector<Prediction>& predictions);

// For people: the winner, or "uncertain" when its probability is below
// kUncertainBelow, then the ranked list.
std::string format_text(const std::string& image, const std::vector<Prediction>& predictions);

// One class name per line (CIFAR's fine_label_names.txt, ImageNet's list from
// tools/export_weights.py --labels-out). Trailing blank lines and '\r' line
// ends are accepted. Throws std::runtime_error naming the file (and line)
// when it cannot be read, is empty or has an empty line.
std::vector<std::string> read_labels_file(const std::string& path);

}  // namespace xfer::trainer::predict
