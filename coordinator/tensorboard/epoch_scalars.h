// The scalars written for one aggregated epoch of one split (one
// metrics::EpochMetrics), by tag:
//
//   <split>/loss, <split>/top1, <split>/top3   split = train, validation, test
//   learning_rate                              train only: rank 0's last step
//   images_per_second                          train only: sum over ranks
//   rank_<N>/images_per_second                 train only: rank N's own figure
//                                              from its end-of-epoch report
//   phase                                      train only: the phase's ordinal
//                                              (0 = the run's first phase, e.g.
//                                              head; 1 = finetune): the step
//                                              where it changes is the boundary
//
// A figure that does not exist (loss of an epoch with no samples: NaN) is
// left out rather than drawn as NaN.
#pragma once

#include <map>
#include <vector>

#include "coordinator/metrics/metrics_types.h"
#include "coordinator/tensorboard/event_file.h"

namespace xfer::coordinator::tensorboard {

// `rank_images_per_second`: rank -> images/s, whatever is known (may be
// empty, e.g. for history replayed after a restart).
std::vector<Scalar> epoch_scalars(const metrics::EpochMetrics& epoch, int phase_ordinal,
                                  const std::map<int, double>& rank_images_per_second);

}  // namespace xfer::coordinator::tensorboard
