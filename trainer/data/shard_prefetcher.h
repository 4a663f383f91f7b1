// One rank's shard of one epoch, read ahead on a background thread.
//
// The thread reads ShardBatch messages (coordinator::client::ShardReader,
// which re-opens a broken stream with backoff and resumes at the next batch,
// so a coordinator restart costs a pause, not the epoch), checks each one,
// turns it into the model's input floats (model_input.h: augmentation,
// scale, resize, normalisation and layout in one pass), and puts it in a
// bounded queue of `queue_depth` batches. The training loop takes batches with next() while
// the thread prepares the following ones, so data loading overlaps compute.
//
// Memory bound: the thread reads a message only when the queue has room, so
// at most queue_depth batches exist between the stream and the consumer
// (queued or being decoded), plus the one the consumer holds. No LibTorch
// here.
//
// Threading: next() from one consumer thread; the const accessors from any
// thread; the destructor must not run concurrently with next().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "coordinator/client/coordinator_client.h"
#include "trainer/data/augment.h"
#include "trainer/data/model_input.h"

namespace xfer::trainer::data {

inline constexpr int kImageChannels = 3;
inline constexpr int kImageSide = 32;
inline constexpr std::int64_t kImageBytes = kImageChannels * kImageSide * kImageSide;

struct Batch {
  std::int64_t batch_index = 0;  // in this rank's shard
  std::int64_t num_batches = 0;  // in this rank's shard
  int count = 0;
  // count x 3 x layout.size x layout.size, augmented, in the layout's order
  // and scale (PrefetchOptions::input). Empty, like `pixels`, when the
  // request was labels_only.
  std::vector<float> images;
  InputLayout layout;
  std::vector<std::uint8_t> pixels;  // count x 3 x 32 x 32 as streamed: not augmented
  std::vector<std::int64_t> labels;
  std::vector<std::int64_t> sample_indices;  // positions in the split
  std::int64_t dropped_samples = 0;
};

struct PrefetchOptions {
  // Batches prepared ahead. REQUIRES: >= 1. Default: 4.
  int queue_depth = 4;
  // Off for evaluation. Default: off.
  AugmentSpec augment;
  // Labels must be below this. REQUIRES: >= 1. Default: 100.
  int num_classes = 100;
  // What Batch::images holds. Default: 32 px [0, 1] floats, NCHW.
  InputLayout input{32, false, false, {0.0F, 0.0F, 0.0F}, {1.0F, 1.0F, 1.0F}};
};

class ShardPrefetcher {
 public:
  // Opens the stream and starts the thread. Augmentation draws with
  // (request.seed(), request.epoch()). With request.labels_only() batches
  // come without images (fetch_with_images gets one back whole). Throws
  // std::invalid_argument for bad options. `client` must outlive this.
  ShardPrefetcher(coordinator::client::CoordinatorClient& client,
                  const v1::StreamShardRequest& request, PrefetchOptions options);
  // Cancels the stream, wakes and joins the thread; returns promptly (within
  // ~50 ms of the stream noticing) even while the thread waits on a full
  // queue, inside a stream read, or in a reconnect backoff.
  ~ShardPrefetcher();
  ShardPrefetcher(const ShardPrefetcher&) = delete;
  ShardPrefetcher& operator=(const ShardPrefetcher&) = delete;

  // The next batch in order; std::nullopt at the end of the shard. Rethrows
  // here what the thread hit: the client's RpcError when the stream failed
  // for good, std::runtime_error (naming the batch and what was wrong) for a
  // malformed batch or a label out of range.
  std::optional<Batch> next();
  // Gives a batch next() returned back once the consumer is done with it: a
  // later batch is decoded into its buffers instead of fresh ones, so a
  // steady epoch allocates no batch memory. Optional.
  void recycle(Batch&& batch);

  // Batch `batch_index` of this shard once more, with its images, augmented
  // exactly as a request with images would have delivered it. Reads it
  // synchronously on the caller's thread over a stream of its own (the
  // prefetch thread goes on meanwhile). For the consumer of a labels_only
  // prefetcher that finds it lacks what it needs of a batch's images.
  // Throws like next().
  Batch fetch_with_images(std::int64_t batch_index);

  // Milliseconds next() has spent waiting for the thread so far.
  double wait_ms() const;
  // How often the stream was re-opened after a failure (as of the thread's
  // last read).
  int reopens() const;

  // For tests of the memory bound. The most batches the queue ever held
  // (never above queue_depth).
  std::size_t max_queue_size_seen() const;
  // Batches taken from the stream so far (queued, being decoded, or already
  // returned by next()); never more than queue_depth ahead of next().
  std::int64_t batches_read() const;

 private:
  void produce();
  // Fills `batch` (reusing its buffers) from the message, an answer to
  // `request`.
  void decode(const v1::StreamShardRequest& request, const v1::ShardBatch& message,
              std::int64_t expected_index, Batch& batch) const;

  // Constant after construction.
  coordinator::client::CoordinatorClient& client_;
  const v1::StreamShardRequest request_;
  const PrefetchOptions options_;
  std::unique_ptr<coordinator::client::ShardReader> reader_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Batch> queue_;         // GUARDED_BY(mutex_)
  std::vector<Batch> spare_;        // GUARDED_BY(mutex_): recycled, at most queue_depth
  bool finished_ = false;           // GUARDED_BY(mutex_): the thread ended
  bool stopping_ = false;           // GUARDED_BY(mutex_): the destructor runs
  std::exception_ptr error_;        // GUARDED_BY(mutex_)
  std::size_t max_queue_size_ = 0;  // GUARDED_BY(mutex_)
  std::int64_t batches_read_ = 0;   // GUARDED_BY(mutex_)
  double wait_ms_ = 0.0;            // GUARDED_BY(mutex_)
  int reopens_ = 0;                 // GUARDED_BY(mutex_): the reader's, as of its last read
  std::thread thread_;
};

}  // namespace xfer::trainer::data
