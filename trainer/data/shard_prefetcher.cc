#include "trainer/data/shard_prefetcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>

namespace xfer::trainer::data {

ShardPrefetcher::ShardPrefetcher(coordinator::client::CoordinatorClient& client,
                                 const v1::StreamShardRequest& request, PrefetchOptions options)
    : client_(client), request_(request), options_(std::move(options)) {
  if (options_.queue_depth < 1) {
    throw std::invalid_argument("prefetch queue depth " + std::to_string(options_.queue_depth) +
                                " must be >= 1");
  }
  if (options_.num_classes < 1) {
    throw std::invalid_argument("num_classes " + std::to_string(options_.num_classes) +
                                " must be >= 1");
  }
  check_input_layout(options_.input);
  reader_ = client.stream_shard(request_);
  thread_ = std::thread([this] { produce(); });
}

ShardPrefetcher::~ShardPrefetcher() {
  std::unique_lock<std::mutex> lock(mutex_);
  stopping_ = true;
  changed_.notify_all();  // a thread waiting for room sees stopping_
  // ShardReader::cancel() ends the call in flight and any backoff sleep, but
  // a reopen that checked for cancellation just before could still start a
  // fresh call that nothing cancels. Cancelling again until the thread is
  // out closes that window without touching the reader's internals.
  while (!finished_) {
    lock.unlock();
    reader_->cancel();
    lock.lock();
    changed_.wait_for(lock, std::chrono::milliseconds(50), [this] { return finished_; });
  }
  lock.unlock();
  thread_.join();
}

void ShardPrefetcher::decode(const v1::StreamShardRequest& request, const v1::ShardBatch& message,
                             std::int64_t expected_index, Batch& batch) const {
  const std::string where =
      "split '" + request.split() + "' epoch " + std::to_string(request.epoch()) + " rank " +
      std::to_string(request.rank()) + " batch " + std::to_string(message.batch_index());
  if (message.batch_index() != expected_index) {
    throw std::runtime_error(where + ": arrived out of order (expected batch " +
                             std::to_string(expected_index) + ")");
  }
  const auto count = static_cast<std::int64_t>(message.count());
  const bool with_images = !request.labels_only();
  const std::int64_t image_bytes = with_images ? count * kImageBytes : 0;
  if (count < 1 || static_cast<std::int64_t>(message.images().size()) != image_bytes ||
      static_cast<std::int64_t>(message.labels().size()) != count ||
      message.sample_indices_size() != count) {
    throw std::runtime_error(where + ": malformed: count " + std::to_string(count) + ", " +
                             std::to_string(message.images().size()) + " image bytes (expected " +
                             std::to_string(image_bytes) + "), " +
                             std::to_string(message.labels().size()) + " labels, " +
                             std::to_string(message.sample_indices_size()) + " sample indices");
  }
  batch.batch_index = message.batch_index();
  batch.num_batches = message.num_batches();
  batch.count = message.count();
  batch.dropped_samples = message.dropped_samples();
  batch.sample_indices.assign(message.sample_indices().begin(), message.sample_indices().end());
  batch.labels.clear();
  for (std::int64_t i = 0; i < count; ++i) {
    const auto label = static_cast<unsigned char>(message.labels()[static_cast<std::size_t>(i)]);
    if (label >= options_.num_classes) {
      throw std::runtime_error(where + ": sample at position " +
                               std::to_string(batch.sample_indices[static_cast<std::size_t>(i)]) +
                               " has label " + std::to_string(label) + ", expected 0.." +
                               std::to_string(options_.num_classes - 1) + " (--num-classes " +
                               std::to_string(options_.num_classes) + ")");
    }
    batch.labels.push_back(label);
  }
  batch.layout = options_.input;
  if (!with_images) {
    batch.pixels.clear();
    batch.images.clear();
    return;
  }
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(message.images().data());
  batch.pixels.assign(bytes, bytes + count * kImageBytes);
  batch.images.resize(model_input_floats(count, kImageChannels, options_.input));
  make_model_input(bytes, count, kImageChannels, kImageSide, kImageSide,
                   batch.sample_indices.data(), options_.augment, request.seed(), request.epoch(),
                   options_.input, batch.images.data());
}

void ShardPrefetcher::produce() {
  std::exception_ptr error;
  try {
    std::int64_t expected = request_.start_batch();
    const auto depth = static_cast<std::size_t>(options_.queue_depth);
    for (;;) {
      {
        // Room first, read second: a message read is a batch in memory.
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stopping_ || queue_.size() < depth; });
        if (stopping_) break;
      }
      std::optional<v1::ShardBatch> message = reader_->next();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        reopens_ = reader_->reopens();
        if (!message || stopping_) break;
        ++batches_read_;
      }
      Batch batch;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!spare_.empty()) {
          batch = std::move(spare_.back());
          spare_.pop_back();
        }
      }
      decode(request_, *message, expected++, batch);
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) break;
      queue_.push_back(std::move(batch));
      max_queue_size_ = std::max(max_queue_size_, queue_.size());
      changed_.notify_all();
    }
  } catch (...) {
    error = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  // The error itself is the consumer's to report (next() rethrows it).
  spdlog::debug("shard prefetch of split '{}' epoch {} rank {}/{} {}: {} batches read, {} reopens",
                request_.split(), request_.epoch(), request_.rank(), request_.world_size(),
                error ? "failed" : (stopping_ ? "cancelled" : "done"), batches_read_, reopens_);
  error_ = error;
  finished_ = true;
  changed_.notify_all();
}

std::optional<Batch> ShardPrefetcher::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  const auto start = std::chrono::steady_clock::now();
  changed_.wait(lock, [this] { return !queue_.empty() || finished_; });
  wait_ms_ +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!queue_.empty()) {
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
    changed_.notify_all();
    return batch;
  }
  // Batches taken before a failure were good; the error shows once they are used.
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

void ShardPrefetcher::recycle(Batch&& batch) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (spare_.size() < static_cast<std::size_t>(options_.queue_depth)) {
    spare_.push_back(std::move(batch));
  }
}

Batch ShardPrefetcher::fetch_with_images(std::int64_t batch_index) {
  v1::StreamShardRequest request = request_;
  request.set_labels_only(false);
  request.set_start_batch(batch_index);
  request.set_end_batch(batch_index + 1);
  std::unique_ptr<coordinator::client::ShardReader> reader = client_.stream_shard(request);
  std::optional<v1::ShardBatch> message = reader->next();
  if (!message) {
    throw std::runtime_error(
        "split '" + request.split() + "' epoch " + std::to_string(request.epoch()) + " rank " +
        std::to_string(request.rank()) + ": batch " + std::to_string(batch_index) +
        " asked for again with its images did not come (the stream ended)");
  }
  Batch batch;
  decode(request, *message, batch_index, batch);
  return batch;
}

double ShardPrefetcher::wait_ms() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return wait_ms_;
}

int ShardPrefetcher::reopens() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return reopens_;
}

std::size_t ShardPrefetcher::max_queue_size_seen() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return max_queue_size_;
}

std::int64_t ShardPrefetcher::batches_read() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_read_;
}

}  // namespace xfer::trainer::data
