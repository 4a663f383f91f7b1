#include "coordinator/tensorboard/global_epochs.h"

#include <algorithm>

namespace xfer::coordinator::tensorboard {

std::int64_t GlobalEpochs::step(const std::string& phase, std::int64_t epoch) {
  const int index = ordinal(phase);
  std::int64_t offset = 0;
  if (index >= 0) {
    offset = phases_[static_cast<std::size_t>(index)].offset;
  } else {
    // The first phase keeps its numbers; a later one starts past them all.
    offset = any_ ? max_step_ + 1 - epoch : 0;
    phases_.push_back({phase, offset});
  }
  const std::int64_t result = offset + epoch;
  max_step_ = any_ ? std::max(max_step_, result) : result;
  any_ = true;
  return result;
}

int GlobalEpochs::ordinal(const std::string& phase) const {
  for (std::size_t i = 0; i < phases_.size(); ++i) {
    if (phases_[i].name == phase) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace xfer::coordinator::tensorboard
