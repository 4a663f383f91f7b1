#include "trainer/predict/report.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

namespace xfer::trainer::predict {

std::vector<Prediction> top_k(const std::vector<double>& probabilities, int64_t k,
                              const std::vector<std::string>& labels) {
  if (k < 1) throw std::invalid_argument("top-k is " + std::to_string(k) + ", expected >= 1");
  if (probabilities.empty()) throw std::invalid_argument("top_k: no class probabilities");
  if (!labels.empty() && labels.size() != probabilities.size()) {
    throw std::invalid_argument("top_k: " + std::to_string(labels.size()) + " labels for " +
                                std::to_string(probabilities.size()) + " classes");
  }
  std::vector<int64_t> order(probabilities.size());
  std::iota(order.begin(), order.end(), 0);
  const auto count = std::min<size_t>(static_cast<size_t>(k), order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(),
                    [&](int64_t a, int64_t b) {
                      const double pa = probabilities[static_cast<size_t>(a)];
                      const double pb = probabilities[static_cast<size_t>(b)];
                      return pa > pb || (pa == pb && a < b);
                    });
  std::vector<Prediction> result;
  for (size_t i = 0; i < count; ++i) {
    const auto index = static_cast<size_t>(order[i]);
    result.push_back(
        {order[i], labels.empty() ? default_label(order[i]) : labels[index], probabilities[index]});
  }
  return result;
}

std::string default_label(int64_t index) { return "class_" + std::to_string(index); }

std::string format_json(const std::vector<Prediction>& predictions) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& p : predictions) {
    // nlohmann's objects keep keys sorted: index, label, probability.
    list.push_back({{"index", p.index}, {"label", p.label}, {"probability", p.probability}});
  }
  return nlohmann::json{{"predictions", list}}.dump() + "\n";
}

std::string format_text(const std::string& image, const std::vector<Prediction>& predictions) {
  std::string out;
  char line[512];
  if (predictions.empty()) return image + ": no prediction\n";
  const Prediction& best = predictions.front();
  if (best.probability < kUncertainBelow) {
    std::snprintf(line, sizeof(line),
                  "%s: uncertain: the top probability %.4f is below %.1f; the top %zu:\n",
                  image.c_str(), best.probability, kUncertainBelow, predictions.size());
  } else {
    std::snprintf(line, sizeof(line), "%s: %s (probability %.4f); the top %zu:\n", image.c_str(),
                  best.label.c_str(), best.probability, predictions.size());
  }
  out += line;
  for (size_t i = 0; i < predictions.size(); ++i) {
    std::snprintf(line, sizeof(line), "  %2zu. %-30s %.4f  (class %lld)\n", i + 1,
                  predictions[i].label.c_str(), predictions[i].probability,
                  static_cast<long long>(predictions[i].index));
    out += line;
  }
  return out;
}

std::vector<std::string> read_labels_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error("cannot open labels file " + path + ": " + std::strerror(errno));
  }
  std::vector<std::string> labels;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  while (!labels.empty() && labels.back().empty()) labels.pop_back();  // trailing blank lines
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i].empty()) {
      throw std::runtime_error("labels file " + path + " line " + std::to_string(i + 1) +
                               " is empty, expected one class name per line");
    }
  }
  if (in.bad()) throw std::runtime_error("cannot read labels file " + path);
  if (labels.empty()) {
    throw std::runtime_error("labels file " + path + " is empty, expected one class name per line");
  }
  return labels;
}

}  // namespace xfer::trainer::predict
