#include "coordinator/tensorboard/epoch_scalars.h"

#include <cmath>
#include <string>

namespace xfer::coordinator::tensorboard {
namespace {

void add(std::vector<Scalar>& out, std::string tag, double value) {
  if (std::isfinite(value)) out.push_back({std::move(tag), value});
}

}  // namespace

std::vector<Scalar> epoch_scalars(const metrics::EpochMetrics& epoch, int phase_ordinal,
                                  const std::map<int, double>& rank_images_per_second) {
  std::vector<Scalar> out;
  const std::string split = metrics::to_string(epoch.split);
  add(out, split + "/loss", epoch.loss);
  add(out, split + "/top1", epoch.top1);
  add(out, split + "/top3", epoch.top3);
  if (epoch.split != metrics::SplitKind::kTrain) return out;
  add(out, "learning_rate", epoch.learning_rate);
  add(out, "images_per_second", epoch.images_per_second);
  for (const auto& [rank, images_per_second] : rank_images_per_second) {
    add(out, "rank_" + std::to_string(rank) + "/images_per_second", images_per_second);
  }
  add(out, "phase", phase_ordinal);
  return out;
}

}  // namespace xfer::coordinator::tensorboard
