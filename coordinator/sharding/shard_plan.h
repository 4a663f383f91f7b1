// Cutting one epoch of a resolved split into per-rank batches.
//
// Positions: a split of N samples has positions 0..N-1 (those of
// dataset::ResolvedSplit; the coordinator turns a position into a record with
// ResolvedSplit::locate()). A position is the sample's "global sample index":
// it does not depend on the world size.
//
// The epoch's order is epoch_permutation(seed, epoch, N) when shuffling, else
// 0..N-1. Both kinds of shard cut that one order:
//
// TRAIN (every rank runs the same number of optimizer steps):
//   global batch G = W * B, steps = floor(N / G). Step s covers
//   order[s*G, (s+1)*G); rank r takes the r-th B-slice of it,
//   order[s*G + r*B, s*G + (r+1)*B). Every rank has exactly `steps` batches of
//   exactly B samples. The last N mod G samples of the order are DROPPED this
//   epoch (not padded); with shuffling a different set is dropped each epoch.
//   The global order depends only on G, never on W: 4 ranks x 8 see, step by
//   step, the same samples as 1 rank x 32. steps == 0 (N < G) is an error.
//
// EVAL (every sample counted exactly once):
//   the order is cut into W contiguous parts, the first N mod W parts one
//   sample longer (as dataset::even_splits does), and each part into batches
//   of B, the last one possibly partial. Nothing is padded or duplicated.
//   Consequence for the trainer: ranks may differ by one sample and by one
//   batch, and a rank gets no batch at all when N < W, so evaluation must not
//   run a collective per batch (a rank with one batch more would wait for a
//   partner forever). Reduce the summed counts once, after the loop.
//   Concatenating the parts in rank order gives the epoch's order back, for
//   any W.
//
// Resuming: start_batch = k skips the first k batches of this rank's shard;
// batch(i) for i >= k is what an unresumed plan returns. k may equal
// num_batches (nothing left); k > num_batches is an error.
//
// Everything here is a pure function of its arguments and thread-safe.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace xfer::coordinator::sharding {

// Upper bounds a request is checked against; they keep W * B far from
// overflow and reject obvious garbage (a negative batch read as unsigned).
inline constexpr int kMaxWorldSize = 65536;
inline constexpr int kMaxBatchSize = 65536;

enum class ShardKind { kTrain, kEval };

// "train" / "eval".
const char* to_string(ShardKind kind);

// A request that cannot be planned: a field out of range, or a split too
// small for one global batch. The message names the field, its value and the
// expected range. The service maps it to INVALID_ARGUMENT.
class ShardError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// What one rank asks for. Mirrors xfer.v1.StreamShardRequest minus the run
// and split spec, which the service resolves into a sample count.
struct ShardRequest {
  ShardKind kind = ShardKind::kTrain;
  // REQUIRES: >= 0.
  std::int64_t epoch = 0;
  // Any value. Default: 0.
  std::uint64_t seed = 0;
  // false: the order is 0..N-1 every epoch (the seed is unused).
  // Default: true.
  bool shuffle = true;
  // REQUIRES: 1 <= world_size <= kMaxWorldSize. Default: 1.
  int world_size = 1;
  // REQUIRES: 0 <= rank < world_size. Default: 0.
  int rank = 0;
  // Per-rank batch size. REQUIRES: 1 <= batch_size <= kMaxBatchSize.
  // Default: 1.
  int batch_size = 1;
  // First batch of this rank's shard to serve. REQUIRES: 0 <= start_batch <=
  // num_batches of the plan. Default: 0.
  std::int64_t start_batch = 0;
};

// Throws ShardError for the first field out of range (the
// start_batch-vs-shard check needs N and is done by plan_shard).
void validate(const ShardRequest& request);

// One rank's shard of one epoch.
class ShardPlan {
 public:
  // Batches in this rank's whole shard, counting those before start_batch
  // (xfer.v1.ShardBatch.num_batches).
  std::int64_t num_batches() const { return num_batches_; }
  // The first batch to serve; batches [start_batch, num_batches) remain.
  std::int64_t start_batch() const { return start_batch_; }
  // TRAIN: samples of the epoch not read by any rank (N mod W*B), the same on
  // every rank. EVAL: always 0.
  std::int64_t dropped_samples() const { return dropped_samples_; }
  // Samples in this rank's whole shard (all batches).
  std::int64_t shard_size() const { return static_cast<std::int64_t>(positions_.size()); }
  // Samples in batch i. Throws std::out_of_range for i outside
  // [0, num_batches).
  int batch_size(std::int64_t i) const;
  // Positions of batch i's samples, in order. Any i in [0, num_batches) is
  // answered, also those before start_batch. Throws std::out_of_range for i
  // outside [0, num_batches).
  std::vector<std::int64_t> batch(std::int64_t i) const;
  // Every position of this rank's shard, batch after batch.
  const std::vector<std::int64_t>& positions() const { return positions_; }

 private:
  friend ShardPlan plan_shard(const ShardRequest& request, std::int64_t num_samples);

  int batch_size_ = 1;
  std::int64_t num_batches_ = 0;
  std::int64_t start_batch_ = 0;
  std::int64_t dropped_samples_ = 0;
  std::vector<std::int64_t> positions_;
};

// The shard of `request.rank` over a split of `num_samples` samples.
// Throws ShardError for an invalid request, num_samples < 1, a TRAIN split
// smaller than one global batch (naming N, W and B), or start_batch beyond
// the shard. The first time a given (N, W, B) drops a TRAIN remainder, this
// logs it once per process at info level.
ShardPlan plan_shard(const ShardRequest& request, std::int64_t num_samples);

// TRAIN steps per epoch for N samples, W ranks and per-rank batch B:
// floor(N / (W*B)). Throws ShardError when that is 0 or an argument is out
// of range. Lets the trainer size its schedule without streaming.
std::int64_t train_steps_per_epoch(std::int64_t num_samples, int world_size, int batch_size);

}  // namespace xfer::coordinator::sharding
