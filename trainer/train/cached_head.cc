#include "trainer/train/cached_head.h"

#include <spdlog/spdlog.h>
#include <torch/types.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace xfer::trainer::train {

HeadCachePlan plan_head_cache(const std::string& mode, const data::AugmentSpec& augment,
                              int head_epochs, bool leader) {
  HeadCachePlan plan;
  plan.augment = augment;
  if (mode == "off" || head_epochs == 0) return plan;
  if (augment.brightness == 0.0F) {
    plan.cache = true;
  } else if (mode == "on") {
    plan.cache = true;
    plan.augment.brightness = 0.0F;
    if (leader) {
      spdlog::warn(
          "--cache-features on: the head phase trains without brightness augmentation (--augment "
          "{} becomes {} there): a cached feature needs the same input every epoch. Fine-tuning "
          "keeps brightness.",
          data::to_string(augment), data::to_string(plan.augment));
    }
  } else if (leader) {
    spdlog::info(
        "head phase: features are not cached because --augment {} changes the base's input every "
        "epoch; --cache-features on drops brightness in the head phase and caches (much faster), "
        "--cache-features off silences this",
        data::to_string(augment));
  }
  return plan;
}

CachedHead::CachedHead(std::unique_ptr<FeatureCache> cache, data::AugmentSpec augment,
                       std::uint64_t seed, const BatchTensors& tensors, BaseFeatures base)
    : cache_(std::move(cache)),
      augment_(augment),
      seed_(seed),
      tensors_(tensors),
      base_(std::move(base)) {}

void CachedHead::fetch_images(data::Batch& batch, const Refetch& refetch) {
  data::Batch whole = refetch(batch.batch_index);
  if (whole.sample_indices != batch.sample_indices) {
    throw std::runtime_error("batch " + std::to_string(batch.batch_index) +
                             " asked for again with its images holds other samples than the "
                             "labels-only batch (the coordinator's shard order changed)");
  }
  batch = std::move(whole);
  ++refetched_batches_;
}

std::optional<torch::Tensor> CachedHead::cached_rows() {
  const std::int64_t width = cache_->width();
  const auto count = static_cast<std::int64_t>(keys_.size());
  rows_.resize(static_cast<std::size_t>(count * width));
  for (std::int64_t i = 0; i < count; ++i) {
    if (!cache_->find(keys_[static_cast<std::size_t>(i)], rows_.data() + i * width)) {
      return std::nullopt;
    }
  }
  return torch::from_blob(rows_.data(), {count, width}, torch::kFloat32)
      .clone()
      .to(tensors_.device());
}

torch::Tensor CachedHead::train_features(data::Batch& batch, int global_epoch,
                                         const Refetch& refetch) {
  const std::int64_t width = cache_->width();
  const auto count = static_cast<std::size_t>(batch.count);
  keys_.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::int64_t sample = batch.sample_indices[i];
    // The prefetcher drew this flip for the image it delivered.
    const bool flipped = data::draw_augmentation(augment_, seed_, global_epoch, sample).flip;
    keys_[i] = (sample << 1) | (flipped ? 1 : 0);
  }
  if (auto rows = cached_rows()) return *rows;
  // The base on the image as delivered and, when flips are drawn, on its
  // mirror image too (the other flip of the same sample, so later epochs find
  // either), both views in one batch of 2N. Without flips no epoch ever asks
  // for the mirror: one view is all there is to compute.
  if (batch.images.empty()) fetch_images(batch, refetch);
  const torch::Tensor input = tensors_.input(batch);
  const bool both_views = augment_.flip;
  const torch::Tensor features =
      base_(both_views ? torch::cat({input, input.flip({3})}).contiguous(tensors_.memory_format())
                       : input);
  const torch::Tensor given = both_views ? features.slice(0, 0, batch.count) : features;
  const torch::Tensor features_cpu = features.to(torch::kCPU, torch::kFloat32).contiguous();
  const float* rows = features_cpu.data_ptr<float>();
  const auto put = [&](std::int64_t key, std::size_t row) {
    if (cache_->contains(key)) return;
    cache_->put(key, rows + row * static_cast<std::size_t>(width));
    new_keys_.push_back(key);
  };
  for (std::size_t i = 0; i < count; ++i) {
    put(keys_[i], i);
    if (both_views) put(keys_[i] ^ 1, count + i);
  }
  return given;
}

torch::Tensor CachedHead::val_features(data::Batch& batch, const Refetch& refetch) {
  const std::int64_t width = cache_->width();
  const auto count = static_cast<std::size_t>(batch.count);
  keys_.resize(count);
  for (std::size_t i = 0; i < count; ++i) keys_[i] = kValidationKeys | batch.sample_indices[i];
  if (auto rows = cached_rows()) return *rows;
  if (batch.images.empty()) fetch_images(batch, refetch);
  const torch::Tensor features = base_(tensors_.input(batch));
  const torch::Tensor features_cpu = features.to(torch::kCPU, torch::kFloat32).contiguous();
  for (std::size_t i = 0; i < count; ++i) {
    cache_->put(keys_[i], features_cpu.data_ptr<float>() + static_cast<std::int64_t>(i) * width);
  }
  return features;
}

void CachedHead::share(dist::Communicator& comm, bool leader) {
  if (comm.size() > 1) {
    const std::int64_t width = cache_->width();
    const std::vector<std::int64_t> counts = comm.allgather_value(
        static_cast<std::int64_t>(new_keys_.size()), "feature cache share (row counts)");
    const std::int64_t most = *std::max_element(counts.begin(), counts.end());
    // Fixed-size records (key, row) in rounds of at most 2048 rows (~10 MiB
    // at B0's width), so no rank holds everyone's rows at once.
    constexpr std::int64_t kRowsPerRound = 2048;
    const std::size_t record =
        sizeof(std::int64_t) + static_cast<std::size_t>(width) * sizeof(float);
    std::vector<std::byte> mine;
    for (std::int64_t first = 0; first < most; first += kRowsPerRound) {
      const std::int64_t rows = std::min(kRowsPerRound, most - first);
      mine.assign(static_cast<std::size_t>(rows) * record, std::byte{0});
      for (std::int64_t j = 0; j < rows; ++j) {
        std::byte* at = mine.data() + static_cast<std::size_t>(j) * record;
        const std::int64_t index = first + j;
        const std::int64_t key = index < static_cast<std::int64_t>(new_keys_.size())
                                     ? new_keys_[static_cast<std::size_t>(index)]
                                     : -1;
        std::memcpy(at, &key, sizeof key);
        if (key >= 0) cache_->read(key, reinterpret_cast<float*>(at + sizeof key));
      }
      const std::vector<std::byte> all =
          comm.allgather(mine.data(), mine.size(), "feature cache share (rows)");
      std::vector<float> row(static_cast<std::size_t>(width));
      for (int r = 0; r < comm.size(); ++r) {
        if (r == comm.rank()) continue;
        for (std::int64_t j = 0; j < rows; ++j) {
          const std::byte* at =
              all.data() + (static_cast<std::size_t>(r) * static_cast<std::size_t>(rows) +
                            static_cast<std::size_t>(j)) *
                               record;
          std::int64_t key = 0;
          std::memcpy(&key, at, sizeof key);
          if (key < 0 || cache_->contains(key)) continue;
          std::memcpy(row.data(), at + sizeof key, row.size() * sizeof(float));
          cache_->put(key, row.data());
        }
      }
    }
  }
  new_keys_.clear();
  log_stats("after the epoch's rows were shared", leader);
}

void CachedHead::log_stats(const std::string& what, bool leader) {
  const FeatureCacheStats now = cache_->stats();
  const std::int64_t hits = now.hits - stats_mark_.hits;
  const std::int64_t misses = now.misses - stats_mark_.misses;
  const std::int64_t refetched = refetched_batches_;
  stats_mark_ = now;
  refetched_batches_ = 0;
  if (!leader) return;
  spdlog::info(
      "feature cache {}: {} rows ({} on disk, {:.0f} MiB in memory); lookups since the last "
      "line: {} hits, {} misses ({:.1f}% hits); {} labels-only batches fetched again with "
      "images",
      what, now.rows, now.rows_on_disk, static_cast<double>(now.bytes_in_memory) / (1 << 20), hits,
      misses, hits + misses > 0 ? 100.0 * static_cast<double>(hits) / (hits + misses) : 0.0,
      refetched);
}

}  // namespace xfer::trainer::train
