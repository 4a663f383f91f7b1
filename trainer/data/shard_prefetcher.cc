#include "trainer/data/shard_prefetcher.h"

#include <chrono>
#include <stdexcept>
#include <string>
#include <utility>

namespace xfer::trainer::data {

ShardPrefetcher::ShardPrefetcher(coordinator::client::CoordinatorClient& client,
                                 const v1::StreamShardRequest& request, PrefetchOptions options)
    : request_(request), options_(std::move(options)) {
  if (options_.queue_depth < 1) {
    throw std::invalid_argument("prefetch queue depth " + std::to_string(options_.queue_depth) +
                                " must be >= 1");
  }
  if (options_.num_classes < 1) {
    throw std::invalid_argument("num_classes " + std::to_string(options_.num_classes) +
                                " must be >= 1");
  }
  reader_ = client.stream_shard(request_);
  thread_ = std::thread([this] { produce(); });
}

ShardPrefetcher::~ShardPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  reader_->cancel();
  changed_.notify_all();
  thread_.join();
}

Batch ShardPrefetcher::decode(const v1::ShardBatch& message, std::int64_t expected_index) const {
  const std::string where =
      "split '" + request_.split() + "' epoch " + std::to_string(request_.epoch()) + " rank " +
      std::to_string(request_.rank()) + " batch " + std::to_string(message.batch_index());
  if (message.batch_index() != expected_index) {
    throw std::runtime_error(where + ": arrived out of order (expected batch " +
                             std::to_string(expected_index) + ")");
  }
  const auto count = static_cast<std::int64_t>(message.count());
  if (count < 1 || static_cast<std::int64_t>(message.images().size()) != count * kImageBytes ||
      static_cast<std::int64_t>(message.labels().size()) != count ||
      message.sample_indices_size() != count) {
    throw std::runtime_error(where + ": malformed: count " + std::to_string(count) + ", " +
                             std::to_string(message.images().size()) + " image bytes (expected " +
                             std::to_string(count * kImageBytes) + "), " +
                             std::to_string(message.labels().size()) + " labels, " +
                             std::to_string(message.sample_indices_size()) + " sample indices");
  }
  Batch batch;
  batch.batch_index = message.batch_index();
  batch.num_batches = message.num_batches();
  batch.count = message.count();
  batch.dropped_samples = message.dropped_samples();
  batch.sample_indices.assign(message.sample_indices().begin(), message.sample_indices().end());
  batch.labels.reserve(static_cast<std::size_t>(count));
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
  batch.images.resize(static_cast<std::size_t>(count * kImageBytes));
  augment_to_float(reinterpret_cast<const std::uint8_t*>(message.images().data()), count,
                   kImageChannels, kImageSide, kImageSide, batch.sample_indices.data(),
                   options_.augment, request_.seed(), request_.epoch(), batch.images.data());
  return batch;
}

void ShardPrefetcher::produce() {
  std::exception_ptr error;
  try {
    std::int64_t expected = request_.start_batch();
    while (auto message = reader_->next()) {
      Batch batch = decode(*message, expected++);
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] {
        return stopping_ || queue_.size() < static_cast<std::size_t>(options_.queue_depth);
      });
      if (stopping_) break;
      reopens_ = reader_->reopens();
      queue_.push_back(std::move(batch));
      max_queue_size_ = std::max(max_queue_size_, queue_.size());
      changed_.notify_all();
    }
  } catch (...) {
    error = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
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

}  // namespace xfer::trainer::data
