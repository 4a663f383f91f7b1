#include "trainer/evaluation/classification_counts.h"

#include <numeric>
#include <stdexcept>
#include <string>

namespace xfer::trainer::evaluation {

ClassificationCounts::ClassificationCounts(int classes) {
  if (classes < 1 || classes > kMaxClasses) {
    throw std::invalid_argument("ClassificationCounts: num_classes is " + std::to_string(classes) +
                                ", expected 1.." + std::to_string(kMaxClasses));
  }
  num_classes = classes;
  confusion.assign(static_cast<std::size_t>(classes) * static_cast<std::size_t>(classes), 0);
}

void ClassificationCounts::add(std::int64_t label, std::int64_t predicted, bool in_top3,
                               double loss) {
  const auto check = [this](const char* name, std::int64_t value) {
    if (value < 0 || value >= num_classes) {
      throw std::invalid_argument("ClassificationCounts::add: " + std::string(name) + " is " +
                                  std::to_string(value) + ", expected 0.." +
                                  std::to_string(num_classes - 1));
    }
  };
  check("label", label);
  check("predicted", predicted);
  confusion[static_cast<std::size_t>(label * num_classes + predicted)] += 1;
  if (in_top3) top3 += 1;
  loss_sum += loss;
}

void ClassificationCounts::merge(const ClassificationCounts& other) {
  if (other.num_classes != num_classes || other.confusion.size() != confusion.size()) {
    throw std::invalid_argument(
        "ClassificationCounts::merge: other has num_classes " + std::to_string(other.num_classes) +
        " (" + std::to_string(other.confusion.size()) + " confusion cells), expected " +
        std::to_string(num_classes) + " (" + std::to_string(confusion.size()) + ")");
  }
  for (std::size_t i = 0; i < confusion.size(); ++i) confusion[i] += other.confusion[i];
  top3 += other.top3;
  loss_sum += other.loss_sum;
}

std::int64_t ClassificationCounts::samples() const {
  return std::accumulate(confusion.begin(), confusion.end(), std::int64_t{0});
}

std::int64_t ClassificationCounts::top1() const {
  std::int64_t correct = 0;
  const auto n = static_cast<std::size_t>(num_classes);
  for (std::size_t i = 0; i < n && i * n + i < confusion.size(); ++i)
    correct += confusion[i * n + i];
  return correct;
}

}  // namespace xfer::trainer::evaluation
