#include "coordinator/sharding/shard_plan.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>

#include "coordinator/sharding/permutation.h"

namespace xfer::coordinator::sharding {
namespace {

std::string in_range(std::int64_t lo, std::int64_t hi) {
  return "(expected " + std::to_string(lo) + ".." + std::to_string(hi) + ")";
}

void check_range(const char* field, std::int64_t value, std::int64_t lo, std::int64_t hi) {
  if (value < lo || value > hi) {
    throw ShardError(std::string("shard request: ") + field + " " + std::to_string(value) +
                     " is out of range " + in_range(lo, hi));
  }
}

void check_world(std::int64_t num_samples, int world_size, int batch_size) {
  if (num_samples < 1) {
    throw ShardError("shard request: the split has " + std::to_string(num_samples) +
                     " samples (expected at least 1)");
  }
  check_range("world_size", world_size, 1, kMaxWorldSize);
  check_range("batch_size", batch_size, 1, kMaxBatchSize);
}

// Logs the dropped remainder the first time this process plans (N, W, B):
// every rank asks every epoch, and one line says it all.
void log_remainder_once(std::int64_t num_samples, int world_size, int batch_size,
                        std::int64_t steps, std::int64_t dropped) {
  static std::mutex mutex;
  static std::set<std::tuple<std::int64_t, int, int>> seen;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!seen.emplace(num_samples, world_size, batch_size).second) return;
  }
  spdlog::info(
      "train shards: {} samples, {} ranks x batch {} = global batch {}: {} steps per epoch, "
      "the last {} samples of each epoch's order are dropped (not padded)",
      num_samples, world_size, batch_size, std::int64_t{world_size} * batch_size, steps, dropped);
}

}  // namespace

const char* to_string(ShardKind kind) {
  switch (kind) {
    case ShardKind::kTrain:
      return "train";
    case ShardKind::kEval:
      return "eval";
  }
  return "unknown";
}

void validate(const ShardRequest& request) {
  if (request.kind != ShardKind::kTrain && request.kind != ShardKind::kEval) {
    throw ShardError("shard request: kind " + std::to_string(static_cast<int>(request.kind)) +
                     " is unknown (expected train or eval)");
  }
  check_range("epoch", request.epoch, 0, INT64_MAX);
  check_range("world_size", request.world_size, 1, kMaxWorldSize);
  check_range("rank", request.rank, 0, request.world_size - 1);
  check_range("batch_size", request.batch_size, 1, kMaxBatchSize);
  check_range("start_batch", request.start_batch, 0, INT64_MAX);
}

std::int64_t train_steps_per_epoch(std::int64_t num_samples, int world_size, int batch_size) {
  check_world(num_samples, world_size, batch_size);
  const std::int64_t global_batch = std::int64_t{world_size} * batch_size;
  const std::int64_t steps = num_samples / global_batch;
  if (steps == 0) {
    throw ShardError("train shard: the split has " + std::to_string(num_samples) +
                     " samples, fewer than one global batch of " + std::to_string(world_size) +
                     " ranks x batch " + std::to_string(batch_size) + " = " +
                     std::to_string(global_batch) +
                     " (expected at least world_size x batch_size samples; use a smaller "
                     "batch, fewer ranks or a larger split)");
  }
  return steps;
}

int ShardPlan::batch_size(std::int64_t i) const {
  if (i < 0 || i >= num_batches_) {
    throw std::out_of_range("shard batch " + std::to_string(i) + " is out of range " +
                            in_range(0, num_batches_ - 1));
  }
  const std::int64_t begin = i * batch_size_;
  const std::int64_t end = std::min<std::int64_t>(begin + batch_size_, shard_size());
  return static_cast<int>(end - begin);
}

std::vector<std::int64_t> ShardPlan::batch(std::int64_t i) const {
  const int count = batch_size(i);  // checks i
  const auto begin = positions_.begin() + i * batch_size_;
  return std::vector<std::int64_t>(begin, begin + count);
}

ShardPlan plan_shard(const ShardRequest& request, std::int64_t num_samples) {
  validate(request);
  check_world(num_samples, request.world_size, request.batch_size);

  const std::vector<std::int64_t> order =
      request.shuffle ? epoch_permutation(request.seed, request.epoch, num_samples)
                      : identity_order(num_samples);
  const std::int64_t w = request.world_size;
  const std::int64_t b = request.batch_size;
  const std::int64_t r = request.rank;

  ShardPlan plan;
  plan.batch_size_ = request.batch_size;
  if (request.kind == ShardKind::kTrain) {
    const std::int64_t steps =
        train_steps_per_epoch(num_samples, request.world_size, request.batch_size);
    plan.num_batches_ = steps;
    plan.dropped_samples_ = num_samples - steps * w * b;
    plan.positions_.reserve(static_cast<std::size_t>(steps * b));
    for (std::int64_t s = 0; s < steps; ++s) {
      const auto first = order.begin() + s * w * b + r * b;
      plan.positions_.insert(plan.positions_.end(), first, first + b);
    }
    if (plan.dropped_samples_ > 0) {
      log_remainder_once(num_samples, request.world_size, request.batch_size, steps,
                         plan.dropped_samples_);
    }
  } else {
    // Contiguous parts, the first N mod W one longer: part r starts after r
    // parts of N/W and min(r, N mod W) extra samples.
    const std::int64_t base = num_samples / w;
    const std::int64_t extra = num_samples % w;
    const std::int64_t begin = r * base + std::min(r, extra);
    const std::int64_t size = base + (r < extra ? 1 : 0);
    plan.positions_.assign(order.begin() + begin, order.begin() + begin + size);
    plan.num_batches_ = (size + b - 1) / b;
  }

  if (request.start_batch > plan.num_batches_) {
    throw ShardError("shard request: start_batch " + std::to_string(request.start_batch) +
                     " is beyond the end of rank " + std::to_string(request.rank) + "'s " +
                     to_string(request.kind) + " shard, which has " +
                     std::to_string(plan.num_batches_) + " batches (expected 0.." +
                     std::to_string(plan.num_batches_) + ")");
  }
  plan.start_batch_ = request.start_batch;
  return plan;
}

}  // namespace xfer::coordinator::sharding
