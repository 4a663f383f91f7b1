// Hand-built messages shared by coordctl's output tests (no server).
#pragma once

#include <cstdint>
#include <string>

#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::coordctl::testing {

// One aggregated epoch as the coordinator's History returns it (learning
// rate 1e-3).
inline v1::EpochMetrics make_epoch(const std::string& phase, int index, v1::SplitKind split,
                                   double loss, double top1, double top3, std::int64_t samples,
                                   double images_per_second) {
  v1::EpochMetrics e;
  e.set_phase(phase);
  e.set_epoch(index);
  e.set_split(split);
  e.set_loss(loss);
  e.set_top1(top1);
  e.set_top3(top3);
  e.set_samples(samples);
  e.set_learning_rate(0.001);
  e.set_images_per_second(images_per_second);
  return e;
}

}  // namespace xfer::coordinator::coordctl::testing
