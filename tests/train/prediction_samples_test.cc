// The report's prediction samples (trainer/train/prediction_samples.h): which
// samples a rank keeps, their bytes, top classes and softmax probabilities,
// and the merge over ranks, through a fake communicator whose allgather
// hands back what each simulated rank sent. No MPI.
#include "trainer/train/prediction_samples.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>

#include <cmath>
#include <cstring>
#include <stdexcept>

namespace xfer::trainer::train {
namespace {

using ::testing::HasSubstr;

constexpr std::size_t kImage = 3 * 32 * 32;

// A batch of `indices`; sample with position p has label p % 10 and every
// pixel equal to p % 256 (the streamed bytes; the model's input floats are
// something else).
data::Batch batch_of(const std::vector<std::int64_t>& indices) {
  data::Batch b;
  b.count = static_cast<int>(indices.size());
  b.sample_indices = indices;
  for (const std::int64_t p : indices) {
    b.labels.push_back(p % 10);
    b.pixels.insert(b.pixels.end(), kImage, static_cast<std::uint8_t>(p % 256));
    b.images.insert(b.images.end(), kImage, -1.5F);
  }
  return b;
}

// Logits whose softmax puts most mass on class (p + 1) % 10, then (p + 2) % 10.
torch::Tensor logits_of(const std::vector<std::int64_t>& indices) {
  torch::Tensor logits = torch::zeros({static_cast<std::int64_t>(indices.size()), 10});
  for (std::size_t i = 0; i < indices.size(); ++i) {
    logits[static_cast<std::int64_t>(i)][(indices[i] + 1) % 10] = 3.0;
    logits[static_cast<std::int64_t>(i)][(indices[i] + 2) % 10] = 2.0;
  }
  return logits;
}

void offer(PredictionSampler& sampler, const std::vector<std::int64_t>& indices) {
  sampler.offer(batch_of(indices), logits_of(indices));
}

std::vector<std::int64_t> indices_of(const std::vector<v1::PredictionSample>& samples) {
  std::vector<std::int64_t> out;
  for (const auto& s : samples) out.push_back(s.index());
  return out;
}

// Rank `rank` of `blobs.size()`: allgather returns every simulated rank's
// blob, this rank's own in its place. Other collectives are not used.
class FakeComm : public dist::Communicator {
 public:
  FakeComm(int rank, std::vector<std::vector<std::byte>>* blobs) : rank_(rank), blobs_(blobs) {}
  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(blobs_->size()); }
  const char* backend() const override { return "fake"; }
  bool supports(dist::DeviceType) const override { return true; }
  std::shared_ptr<dist::Work> allreduce(const dist::Buffer&, dist::ReduceOp,
                                        const std::string&) override {
    throw std::logic_error("not used");
  }
  void broadcast(const dist::Buffer&, int, const std::string&) override {
    throw std::logic_error("not used");
  }
  void barrier(const std::string&) override { throw std::logic_error("not used"); }
  std::vector<std::byte> allgather(const void* data, std::size_t bytes,
                                   const std::string&) override {
    auto& mine = (*blobs_)[static_cast<std::size_t>(rank_)];
    mine.resize(bytes);
    std::memcpy(mine.data(), data, bytes);
    std::vector<std::byte> all;
    for (const auto& blob : *blobs_) {
      if (blob.size() != bytes) throw std::logic_error("a simulated rank has not sent yet");
      all.insert(all.end(), blob.begin(), blob.end());
    }
    return all;
  }

 private:
  int rank_;
  std::vector<std::vector<std::byte>>* blobs_;
};

TEST(PredictionSamplerTest, KeepsTheLowestPositionsWhateverTheOrder) {
  PredictionSampler sampler(4);
  offer(sampler, {9, 3, 12});
  offer(sampler, {7, 1});
  offer(sampler, {20, 0, 5});
  EXPECT_EQ(indices_of(sampler.local()), (std::vector<std::int64_t>{0, 1, 3, 5}));
  offer(sampler, {100, 101});  // all above the kept ones: nothing changes
  EXPECT_EQ(indices_of(sampler.local()), (std::vector<std::int64_t>{0, 1, 3, 5}));
}

TEST(PredictionSamplerTest, StoresTheDatasetBytesLabelAndTopThreeProbabilities) {
  PredictionSampler sampler(2);
  offer(sampler, {200, 7});
  const auto samples = sampler.local();
  ASSERT_EQ(samples.size(), 2u);
  const v1::PredictionSample& s = samples[0];
  EXPECT_EQ(s.index(), 7);
  EXPECT_EQ(s.label(), 7);
  EXPECT_EQ(s.channels(), 3);
  EXPECT_EQ(s.height(), 32);
  EXPECT_EQ(s.width(), 32);
  EXPECT_EQ(s.image(), std::string(kImage, static_cast<char>(7)));
  EXPECT_EQ(samples[1].image(), std::string(kImage, static_cast<char>(200)));
  ASSERT_EQ(s.top_classes_size(), 3);
  EXPECT_EQ(s.top_classes(0), 8);
  EXPECT_EQ(s.top_classes(1), 9);
  // softmax of (3, 2, 0 x 8): e^3 / (e^3 + e^2 + 8).
  const double z = std::exp(3.0) + std::exp(2.0) + 8.0;
  EXPECT_NEAR(s.top_probabilities(0), std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(s.top_probabilities(1), std::exp(2.0) / z, 1e-6);
  EXPECT_NEAR(s.top_probabilities(2), 1.0 / z, 1e-6);
}

TEST(PredictionSamplerTest, FewerClassesThanThreeGiveFewerTopClasses) {
  PredictionSampler sampler(1);
  data::Batch b = batch_of({4});
  b.labels = {1};
  sampler.offer(b, torch::tensor({{0.0f, 1.0f}}));
  const auto samples = sampler.local();
  ASSERT_EQ(samples.size(), 1u);
  ASSERT_EQ(samples[0].top_classes_size(), 2);
  EXPECT_EQ(samples[0].top_classes(0), 1);
  EXPECT_NEAR(samples[0].top_probabilities(0) + samples[0].top_probabilities(1), 1.0, 1e-6);
}

TEST(PredictionSamplerTest, GatherMergesTheRanksLowestPositions) {
  // Two ranks evaluated interleaved positions; the first 5 overall are 0..4
  // whichever rank holds them. Rank 1 keeps 1, 3, 5, 7, 9 locally.
  PredictionSampler rank0(5), rank1(5);
  offer(rank0, {0, 2, 4, 6});
  offer(rank1, {1, 3, 5, 7, 9, 11});
  // Rank 1's blob, as a 1-rank gather sends it; then rank 0 gathers.
  std::vector<std::vector<std::byte>> alone(1);
  FakeComm solo(0, &alone);
  rank1.gather(solo);
  std::vector<std::vector<std::byte>> blobs(2);
  blobs[1] = alone[0];
  FakeComm comm0(0, &blobs);
  const auto merged = rank0.gather(comm0);
  EXPECT_EQ(indices_of(merged), (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(merged[3].image(), std::string(kImage, static_cast<char>(3)));  // from rank 1
  EXPECT_EQ(merged[3].label(), 3);
  EXPECT_EQ(merged[3].top_classes(0), 4);
  EXPECT_EQ(merged[3].SerializeAsString(), rank1.local()[1].SerializeAsString());
  // Rank 1 computes the same answer from the same blobs.
  FakeComm comm1(1, &blobs);
  EXPECT_EQ(indices_of(rank1.gather(comm1)), (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
}

TEST(PredictionSamplerTest, GatherOfFewerSamplesThanTheCount) {
  std::vector<std::vector<std::byte>> blobs(1);
  FakeComm comm(0, &blobs);
  PredictionSampler sampler(25);
  offer(sampler, {2, 1});
  EXPECT_EQ(indices_of(sampler.gather(comm)), (std::vector<std::int64_t>{1, 2}));
  EXPECT_TRUE(PredictionSampler(25).gather(comm).empty());
}

TEST(PredictionSamplerTest, RefusesBadCountsAndMismatchedLogits) {
  EXPECT_THROW(PredictionSampler(0), std::invalid_argument);
  EXPECT_THROW(PredictionSampler(65), std::invalid_argument);
  PredictionSampler sampler;
  try {
    sampler.offer(batch_of({1, 2}), torch::zeros({3, 10}));
    FAIL() << "3 rows of logits for a batch of 2 were accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("logits of shape [3, 10] (expected 2 x num_classes)"));
  }
}

}  // namespace
}  // namespace xfer::trainer::train
