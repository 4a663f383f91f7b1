// The head phase trained from cached base features (feature_cache.h holds
// the rows). In the head phase the base is frozen and in eval mode, so its
// pooled output for one (sample, flip) never changes: it is computed once,
// for both flips of a sample, and every later epoch trains the head from the
// cache. Validation rows are cached too. After each epoch the ranks share
// the rows they computed (share()), so from then on every rank finds every
// sample whatever its shard, and later passes stream labels only.
//
// Keys: a train row is (sample << 1 | mirrored); validation rows live in
// their own range (kValidationKeys | sample).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trainer/data/augment.h"
#include "trainer/data/shard_prefetcher.h"
#include "trainer/dist/communicator.h"
#include "trainer/train/batch_tensors.h"
#include "trainer/train/feature_cache.h"

namespace xfer::trainer::train {

// Whether the head phase caches, and the augmentation it trains with.
struct HeadCachePlan {
  bool cache = false;
  data::AugmentSpec augment;  // the head phase's: brightness dropped when caching anyway
};

// --cache-features `mode` ("auto", "on", "off") for a head phase of
// `head_epochs` and the job's `augment`: a cached feature needs the same
// input every epoch, so "auto" caches only without brightness and "on"
// drops brightness in the head phase. The leader logs which and why.
HeadCachePlan plan_head_cache(const std::string& mode, const data::AugmentSpec& augment,
                              int head_epochs, bool leader);

class CachedHead {
 public:
  inline static constexpr std::int64_t kValidationKeys = std::int64_t{1} << 62;

  // The frozen base's pooled features [N, width] of a batch of model inputs.
  using BaseFeatures = std::function<torch::Tensor(const torch::Tensor& input)>;
  // The batch of `batch_index` again, with its images (for a labels-only
  // batch that lacks rows: ShardPrefetcher::fetch_with_images).
  using Refetch = std::function<data::Batch(std::int64_t batch_index)>;

  // `augment`: the head phase's (plan_head_cache); `seed` draws its flips as
  // the prefetcher does. `tensors` must outlive this.
  CachedHead(std::unique_ptr<FeatureCache> cache, data::AugmentSpec augment, std::uint64_t seed,
             const BatchTensors& tensors, BaseFeatures base);

  // The head's input for a train batch of `global_epoch`: from the cache
  // when every (sample, flip) of it is there; otherwise the base runs on the
  // batch and on its mirror image, and both views of every sample are
  // cached. A labels-only batch that lacks a row is fetched again whole
  // into `batch`.
  torch::Tensor train_features(data::Batch& batch, int global_epoch, const Refetch& refetch);
  // The head's input for a validation batch, cached the same way (one view).
  torch::Tensor val_features(data::Batch& batch, const Refetch& refetch);

  // Collective, at the end of every cached epoch: each rank sends the rows
  // it computed to every other, then the leader logs the cache's stats.
  void share(dist::Communicator& comm, bool leader);
  // One line of stats since the last one (the leader logs it; every rank
  // starts a new count).
  void log_stats(const std::string& what, bool leader);

  // Every train (val) sample's rows were cached by an earlier pass of this
  // phase: later passes stream labels only (StreamShardRequest.labels_only).
  bool holds_train() const { return holds_train_; }
  bool holds_val() const { return holds_val_; }
  void set_holds_train() { holds_train_ = true; }
  void set_holds_val() { holds_val_ = true; }

  const FeatureCache& cache() const { return *cache_; }

 private:
  // `batch` again with its images, for a labels-only batch that lacks rows.
  void fetch_images(data::Batch& batch, const Refetch& refetch);
  // The cached rows of keys_ as one [count, width] tensor on the device;
  // std::nullopt at the first key that is not cached.
  std::optional<torch::Tensor> cached_rows();

  const std::unique_ptr<FeatureCache> cache_;
  const data::AugmentSpec augment_;
  const std::uint64_t seed_;
  const BatchTensors& tensors_;
  const BaseFeatures base_;
  std::vector<std::int64_t> new_keys_;  // computed here since the last share
  std::vector<float> rows_;             // scratch: one batch of rows
  std::vector<std::int64_t> keys_;      // scratch: one batch of keys
  FeatureCacheStats stats_mark_;
  bool holds_train_ = false;
  bool holds_val_ = false;
  std::int64_t refetched_batches_ = 0;  // since the last stats line
};

}  // namespace xfer::trainer::train
