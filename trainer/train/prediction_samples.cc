#include "trainer/train/prediction_samples.h"

#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace xfer::trainer::train {
namespace {

// The layout of a data::Batch image: 3 x 32 x 32, planar.
constexpr int kChannels = 3;
constexpr int kSide = 32;
constexpr std::size_t kImageBytes = kChannels * kSide * kSide;
// RunReport.predictions' limit (coordinator/server/report_store.cc).
constexpr int kMaxCount = 64;

// One sample as plain bytes, for allgather. index -1: an empty slot.
struct SampleRecord {
  std::int64_t index = -1;
  std::int64_t label = 0;
  std::int32_t top_classes[PredictionSampler::kTopK] = {};
  float top_probabilities[PredictionSampler::kTopK] = {};
  std::int32_t top_count = 0;
  std::uint8_t image[kImageBytes] = {};
};

SampleRecord to_record(const v1::PredictionSample& s) {
  SampleRecord r;
  r.index = s.index();
  r.label = s.label();
  r.top_count = s.top_classes_size();
  for (int k = 0; k < r.top_count; ++k) {
    r.top_classes[k] = s.top_classes(k);
    r.top_probabilities[k] = s.top_probabilities(k);
  }
  std::memcpy(r.image, s.image().data(), kImageBytes);
  return r;
}

v1::PredictionSample from_record(const SampleRecord& r) {
  v1::PredictionSample s;
  s.set_index(r.index);
  s.set_label(static_cast<std::int32_t>(r.label));
  s.set_channels(kChannels);
  s.set_height(kSide);
  s.set_width(kSide);
  s.set_image(reinterpret_cast<const char*>(r.image), kImageBytes);
  for (int k = 0; k < r.top_count; ++k) {
    s.add_top_classes(r.top_classes[k]);
    s.add_top_probabilities(r.top_probabilities[k]);
  }
  return s;
}

}  // namespace

PredictionSampler::PredictionSampler(int count) : count_(count) {
  if (count < 1 || count > kMaxCount) {
    throw std::invalid_argument("prediction samples: count " + std::to_string(count) +
                                " is out of range (expected 1.." + std::to_string(kMaxCount) + ")");
  }
}

void PredictionSampler::offer(const data::Batch& batch, const torch::Tensor& logits) {
  if (logits.dim() != 2 || logits.size(0) != batch.count || logits.size(1) < 1) {
    throw std::invalid_argument("prediction samples: logits of shape " +
                                std::string(c10::str(logits.sizes())) + " (expected " +
                                std::to_string(batch.count) + " x num_classes)");
  }
  const auto full_and_above = [&](std::int64_t index) {
    return static_cast<int>(kept_.size()) >= count_ && index > kept_.rbegin()->first;
  };
  std::vector<int> wanted;
  for (int i = 0; i < batch.count; ++i) {
    if (!full_and_above(batch.sample_indices[static_cast<std::size_t>(i)])) wanted.push_back(i);
  }
  if (wanted.empty()) return;  // the usual case after the first batch: nothing to compute
  const std::int64_t k = std::min<std::int64_t>(kTopK, logits.size(1));
  const auto [top_p, top_c] =
      torch::softmax(logits.detach().to(torch::kCPU, torch::kFloat32), 1).topk(k, 1);
  const auto p = top_p.accessor<float, 2>();
  const auto c = top_c.accessor<std::int64_t, 2>();
  for (const int i : wanted) {
    const std::int64_t index = batch.sample_indices[static_cast<std::size_t>(i)];
    if (full_and_above(index)) continue;  // an earlier sample of this batch took the slot
    v1::PredictionSample s;
    s.set_index(index);
    s.set_label(static_cast<std::int32_t>(batch.labels[static_cast<std::size_t>(i)]));
    s.set_channels(kChannels);
    s.set_height(kSide);
    s.set_width(kSide);
    // The bytes as streamed (evaluation does not augment).
    s.set_image(reinterpret_cast<const char*>(batch.pixels.data()) +
                    static_cast<std::size_t>(i) * kImageBytes,
                kImageBytes);
    for (std::int64_t j = 0; j < k; ++j) {
      s.add_top_classes(static_cast<std::int32_t>(c[i][j]));
      s.add_top_probabilities(p[i][j]);
    }
    kept_[index] = std::move(s);
    if (static_cast<int>(kept_.size()) > count_) kept_.erase(std::prev(kept_.end()));
  }
}

std::vector<v1::PredictionSample> PredictionSampler::local() const {
  std::vector<v1::PredictionSample> out;
  for (const auto& [index, sample] : kept_) out.push_back(sample);
  return out;
}

std::vector<v1::PredictionSample> PredictionSampler::gather(dist::Communicator& comm) const {
  std::vector<SampleRecord> mine(static_cast<std::size_t>(count_));
  std::size_t slot = 0;
  for (const auto& [index, sample] : kept_) mine[slot++] = to_record(sample);
  const std::size_t bytes = mine.size() * sizeof(SampleRecord);
  const std::vector<std::byte> all = comm.allgather(mine.data(), bytes, "prediction samples");
  if (all.size() != bytes * static_cast<std::size_t>(comm.size())) {
    throw std::runtime_error("prediction samples: allgather returned " +
                             std::to_string(all.size()) + " bytes (expected " +
                             std::to_string(bytes) + " from each of " +
                             std::to_string(comm.size()) + " ranks)");
  }
  std::map<std::int64_t, SampleRecord> merged;
  for (std::size_t at = 0; at < all.size(); at += sizeof(SampleRecord)) {
    SampleRecord r;
    std::memcpy(&r, all.data() + at, sizeof(SampleRecord));
    if (r.index >= 0) merged.emplace(r.index, r);
  }
  std::vector<v1::PredictionSample> out;
  for (const auto& [index, record] : merged) {
    if (static_cast<int>(out.size()) == count_) break;
    out.push_back(from_record(record));
  }
  return out;
}

}  // namespace xfer::trainer::train
