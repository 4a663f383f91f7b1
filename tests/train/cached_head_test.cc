// The head phase from cached base features (trainer/train/cached_head.h),
// with a stand-in base (the top-left pixel of each channel, so a mirrored
// view gives another row): when it caches, what it computes once, the
// labels-only batch fetched again, validation rows, and the rows shared
// between two ranks (threads). Also BatchTensors, the batch as the model's
// input on the CPU.
#include "trainer/train/cached_head.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/types.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <vector>

#include "tests/train/thread_world.h"

namespace xfer::trainer::train {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ThreadWorld;

constexpr int kSide = 4;

// value(n, c, h, w) = sample * 1000 + c * 100 + h * 10 + w, channels-last.
data::Batch batch_of(const BatchTensors& tensors, const std::vector<std::int64_t>& samples,
                     std::int64_t index = 0) {
  data::Batch b;
  b.batch_index = index;
  b.num_batches = 4;
  b.count = static_cast<int>(samples.size());
  b.sample_indices = samples;
  b.layout = tensors.layout();
  for (const std::int64_t s : samples) {
    b.labels.push_back(s % 10);
    for (int h = 0; h < kSide; ++h) {
      for (int w = 0; w < kSide; ++w) {
        for (int c = 0; c < 3; ++c) {
          b.images.push_back(static_cast<float>(s * 1000 + c * 100 + h * 10 + w));
        }
      }
    }
  }
  return b;
}

data::Batch labels_only(data::Batch b) {
  b.images.clear();
  return b;
}

class CachedHeadTest : public ::testing::Test {
 protected:
  std::unique_ptr<CachedHead> make(bool flip, int rank = 0) {
    data::AugmentSpec augment;
    augment.flip = flip;
    const fs::path spill =
        fs::temp_directory_path() /
        ("xfer_cached_head_" + std::to_string(::getpid()) + "_" + std::to_string(rank) + ".bin");
    return std::make_unique<CachedHead>(
        std::make_unique<FeatureCache>(3, 1 << 20, spill), augment, 0, tensors_,
        [this](const torch::Tensor& input) {
          ++base_runs_;
          base_rows_ += input.size(0);
          return input.select(3, 0).select(2, 0).contiguous();  // [N, 3]: top-left pixel
        });
  }

  const BatchTensors tensors_{torch::kCPU, torch::MemoryFormat::ChannelsLast, kSide};
  std::atomic<int> base_runs_{0};
  std::atomic<std::int64_t> base_rows_{0};
};

CachedHead::Refetch no_refetch() {
  return [](std::int64_t) -> data::Batch { throw std::logic_error("not expected"); };
}

TEST_F(CachedHeadTest, ThePlanCachesOnlyWhatStaysTheSameEveryEpoch) {
  data::AugmentSpec flip_only;
  flip_only.flip = true;
  data::AugmentSpec bright = flip_only;
  bright.brightness = 0.4F;
  EXPECT_FALSE(plan_head_cache("off", flip_only, 3, true).cache);
  EXPECT_FALSE(plan_head_cache("auto", flip_only, 0, true).cache);
  EXPECT_TRUE(plan_head_cache("auto", flip_only, 3, true).cache);
  const HeadCachePlan auto_bright = plan_head_cache("auto", bright, 3, true);
  EXPECT_FALSE(auto_bright.cache);
  EXPECT_EQ(auto_bright.augment, bright);
  const HeadCachePlan on_bright = plan_head_cache("on", bright, 3, false);
  EXPECT_TRUE(on_bright.cache);
  EXPECT_EQ(on_bright.augment, flip_only);
}

TEST_F(CachedHeadTest, BothViewsAreComputedOnceThenEveryEpochHitsTheCache) {
  auto head = make(/*flip=*/true);
  data::Batch b = batch_of(tensors_, {3, 5});
  const torch::Tensor first = head->train_features(b, 0, no_refetch());
  EXPECT_EQ(base_runs_, 1);
  EXPECT_EQ(base_rows_, 4);  // the batch and its mirror image
  // Each row is the view the prefetcher delivered: the top-left pixel of
  // the image as given.
  EXPECT_TRUE(first.equal(torch::tensor({{3000.F, 3100.F, 3200.F}, {5000.F, 5100.F, 5200.F}})));
  EXPECT_EQ(head->cache().stats().rows, 4);
  for (int epoch = 1; epoch < 6; ++epoch) {
    data::Batch again = labels_only(batch_of(tensors_, {3, 5}));
    const torch::Tensor rows = head->train_features(again, epoch, no_refetch());
    EXPECT_EQ(rows.size(0), 2);
    EXPECT_TRUE(again.images.empty());  // nothing fetched again
  }
  EXPECT_EQ(base_runs_, 1);
}

TEST_F(CachedHeadTest, WithoutFlipsOneViewIsAllThereIs) {
  auto head = make(/*flip=*/false);
  data::Batch b = batch_of(tensors_, {1, 2, 3});
  head->train_features(b, 0, no_refetch());
  EXPECT_EQ(base_rows_, 3);
  EXPECT_EQ(head->cache().stats().rows, 3);
}

TEST_F(CachedHeadTest, ALabelsOnlyBatchMissingRowsIsFetchedAgainWhole) {
  auto head = make(/*flip=*/true);
  data::Batch b = labels_only(batch_of(tensors_, {7}, /*index=*/2));
  std::vector<std::int64_t> asked;
  head->train_features(b, 0, [&](std::int64_t index) {
    asked.push_back(index);
    return batch_of(tensors_, {7}, index);
  });
  EXPECT_EQ(asked, std::vector<std::int64_t>{2});
  EXPECT_FALSE(b.images.empty());
  data::Batch other = labels_only(batch_of(tensors_, {8}, 3));
  try {
    head->train_features(other, 0,
                         [&](std::int64_t index) { return batch_of(tensors_, {9}, index); });
    FAIL() << "a batch of other samples was taken";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("batch 3 asked for again with its images holds other "
                                    "samples"));
  }
}

TEST_F(CachedHeadTest, ValidationRowsAreCachedApartFromTrainRows) {
  auto head = make(/*flip=*/true);
  data::Batch train = batch_of(tensors_, {4});
  head->train_features(train, 0, no_refetch());
  data::Batch val = batch_of(tensors_, {4});
  const torch::Tensor first = head->val_features(val, no_refetch());
  EXPECT_EQ(base_runs_, 2);  // sample 4 of val is not sample 4 of train
  EXPECT_TRUE(first.equal(torch::tensor({{4000.F, 4100.F, 4200.F}})));
  data::Batch again = labels_only(batch_of(tensors_, {4}));
  EXPECT_TRUE(head->val_features(again, no_refetch()).equal(first));
  EXPECT_EQ(base_runs_, 2);
}

TEST_F(CachedHeadTest, AfterSharingEveryRankHasEveryRow) {
  ThreadWorld world(2);
  world.run([&](dist::Communicator& comm) {
    auto head = make(/*flip=*/true, comm.rank());
    const std::int64_t first = comm.rank() * 2;
    data::Batch b = batch_of(tensors_, {first, first + 1});
    head->train_features(b, 0, no_refetch());
    EXPECT_EQ(head->cache().stats().rows, 4);
    head->share(comm, comm.rank() == 0);
    EXPECT_EQ(head->cache().stats().rows, 8);
    for (std::int64_t sample = 0; sample < 4; ++sample) {
      EXPECT_TRUE(head->cache().contains(sample << 1));
      EXPECT_TRUE(head->cache().contains((sample << 1) | 1));
    }
  });
  EXPECT_EQ(base_runs_, 2);  // one per rank; the rest came from the other rank
}

TEST(BatchTensorsTest, OnTheCpuTheInputIsTheBatchsMemoryInItsLayout) {
  for (const auto format : {torch::MemoryFormat::ChannelsLast, torch::MemoryFormat::Contiguous}) {
    const BatchTensors tensors(torch::kCPU, format, 8);
    const data::InputLayout layout = tensors.layout();
    EXPECT_EQ(layout.size, 8);
    EXPECT_EQ(layout.channels_last, format == torch::MemoryFormat::ChannelsLast);
    EXPECT_TRUE(layout.normalize);
    data::Batch b;
    b.count = 2;
    b.layout = layout;
    b.images.resize(2 * 3 * 8 * 8);
    for (std::size_t i = 0; i < b.images.size(); ++i) b.images[i] = static_cast<float>(i);
    b.labels = {4, 1};
    const torch::Tensor input = tensors.input(b);
    EXPECT_EQ(input.sizes(), (std::vector<std::int64_t>{2, 3, 8, 8}));
    EXPECT_TRUE(input.is_contiguous(format));
    EXPECT_EQ(input.data_ptr<float>(), b.images.data());  // no copy
    // Element (1, 2, 3, 4) where the layout puts it.
    const std::int64_t at =
        layout.channels_last ? ((1 * 8 + 3) * 8 + 4) * 3 + 2 : ((1 * 3 + 2) * 8 + 3) * 8 + 4;
    EXPECT_EQ(input[1][2][3][4].item<float>(), static_cast<float>(at));
    const torch::Tensor labels = tensors.labels(b);
    EXPECT_TRUE(labels.equal(torch::tensor({4, 1}, torch::kInt64)));
    EXPECT_NE(labels.data_ptr<std::int64_t>(), b.labels.data());  // a copy
  }
}

}  // namespace
}  // namespace xfer::trainer::train
