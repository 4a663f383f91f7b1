// The test samples the run's report shows (RunReport.predictions, the HTML
// report's image grid): the first `count` samples of the evaluated split by
// position, whichever rank evaluated them, with the model's top classes and
// softmax probabilities. Positions are the split's (ShardBatch
// sample_indices), so the choice is the same for any world size and any
// batch size: a rank keeps its own lowest positions while it evaluates, and
// gather() merges the ranks' picks.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <vector>

#include "trainer/data/shard_prefetcher.h"
#include "trainer/dist/communicator.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::trainer::train {

class PredictionSampler {
 public:
  // Samples in the report. Default 25: a 5 x 5 grid.
  static constexpr int kDefaultCount = 25;
  // Top classes kept per sample (fewer when the model has fewer classes).
  static constexpr int kTopK = 3;

  // Throws std::invalid_argument unless 1 <= count <= 64 (the coordinator's
  // limit on RunReport.predictions).
  explicit PredictionSampler(int count = kDefaultCount);

  // Considers every sample of an evaluated batch; keeps it while it is among
  // the `count` lowest positions this rank has seen. `logits` is
  // batch.count x num_classes, on any device. Images are stored as the
  // dataset's bytes (the batch's [0, 1] floats times 255, rounded); the
  // batch must be unaugmented (evaluation batches are). Throws
  // std::invalid_argument when the logits do not match the batch.
  void offer(const data::Batch& batch, const torch::Tensor& logits);

  // This rank's kept samples, by position.
  std::vector<v1::PredictionSample> local() const;

  // Collective over `comm` (one allgather of about 80 KB per rank): the
  // `count` lowest positions over all ranks, by position, on every rank.
  std::vector<v1::PredictionSample> gather(dist::Communicator& comm) const;

 private:
  const int count_;
  std::map<std::int64_t, v1::PredictionSample> kept_;  // by position
};

}  // namespace xfer::trainer::train
