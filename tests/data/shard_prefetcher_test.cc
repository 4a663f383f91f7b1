// ShardPrefetcher against a real coordinator on 127.0.0.1 (synthetic data).
#include "trainer/data/shard_prefetcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "coordinator/client/coordinator_client.h"
#include "tests/coordinator/service_test_util.h"

namespace xfer::trainer::data {
namespace {

using coordinator::server::testing::CoordinatorFixture;
namespace client = coordinator::client;
using Clock = std::chrono::steady_clock;

class ShardPrefetcherTest : public CoordinatorFixture {
 protected:
  void SetUp() override {
    CoordinatorFixture::SetUp();
    start();
    // Later restarts listen on the same port, so clients keep their address.
    options_.listen = coordinator_->address();
    start_run("run", 2);
    client_ = std::make_unique<client::CoordinatorClient>(client_options(std::chrono::seconds(2)));
  }
  void TearDown() override {
    client_.reset();
    CoordinatorFixture::TearDown();
  }

  client::ClientOptions client_options(std::chrono::milliseconds reconnect_window) const {
    client::ClientOptions options;
    options.address = coordinator_->address();
    options.reconnect_window = reconnect_window;
    options.backoff.initial = std::chrono::milliseconds(20);
    options.backoff.max = std::chrono::milliseconds(100);
    options.jitter_seed = 1;
    return options;
  }

  void stop_coordinator() {
    stubs_.reset();
    coordinator_->shutdown(std::chrono::milliseconds(0));
    coordinator_.reset();
  }

  static v1::StreamShardRequest request(int batch_size, bool train = true) {
    v1::StreamShardRequest r;
    r.set_run("run");
    r.set_split("train");
    r.set_epoch(2);
    r.set_rank(1);
    r.set_world_size(2);
    r.set_batch_size(batch_size);
    r.set_shuffle(train);
    r.set_seed(5);
    r.set_kind(train ? v1::SHARD_KIND_TRAIN : v1::SHARD_KIND_EVAL);
    return r;
  }

  std::vector<v1::ShardBatch> raw_shard(const v1::StreamShardRequest& r) {
    std::vector<v1::ShardBatch> raw;
    auto reader = client_->stream_shard(r);
    while (auto b = reader->next()) raw.push_back(*b);
    return raw;
  }

  // Every batch of `prefetcher` equals the raw stream's, decoded and
  // augmented with `spec` (seed 5, epoch 2) by augment_to_float.
  static void expect_same_as_raw(ShardPrefetcher& prefetcher,
                                 const std::vector<v1::ShardBatch>& raw, const AugmentSpec& spec) {
    std::size_t i = 0;
    while (auto batch = prefetcher.next()) {
      ASSERT_LT(i, raw.size());
      const v1::ShardBatch& expected = raw[i];
      EXPECT_EQ(batch->batch_index, static_cast<std::int64_t>(i));
      EXPECT_EQ(batch->num_batches, expected.num_batches());
      EXPECT_EQ(batch->dropped_samples, expected.dropped_samples());
      ASSERT_EQ(batch->count, expected.count());
      ASSERT_EQ(batch->labels.size(), static_cast<std::size_t>(batch->count));
      ASSERT_EQ(batch->sample_indices.size(), static_cast<std::size_t>(batch->count));
      for (int k = 0; k < batch->count; ++k) {
        EXPECT_EQ(batch->labels[k], static_cast<unsigned char>(expected.labels()[k]));
        EXPECT_EQ(batch->sample_indices[k], expected.sample_indices(k));
      }
      std::vector<float> floats(static_cast<std::size_t>(batch->count) * kImageBytes);
      augment_to_float(reinterpret_cast<const std::uint8_t*>(expected.images().data()),
                       batch->count, 3, 32, 32, batch->sample_indices.data(), spec, 5, 2,
                       floats.data());
      EXPECT_EQ(batch->images, floats) << "batch " << i;
      EXPECT_EQ(std::string(batch->pixels.begin(), batch->pixels.end()), expected.images())
          << "batch " << i;
      // Later batches are decoded into this one's buffers: they must come
      // out the same as fresh ones.
      prefetcher.recycle(std::move(*batch));
      ++i;
    }
    EXPECT_EQ(i, raw.size());
  }

  std::unique_ptr<client::CoordinatorClient> client_;
};

TEST_F(ShardPrefetcherTest, DeliversTheRawStreamInOrder) {
  const std::vector<v1::ShardBatch> raw = raw_shard(request(16));
  ASSERT_EQ(raw.size(), kTrainRecords / 32U);
  ShardPrefetcher prefetcher(*client_, request(16), {2, {}, 10});
  expect_same_as_raw(prefetcher, raw, {});
  EXPECT_FALSE(prefetcher.next().has_value());  // stays at the end
  EXPECT_EQ(prefetcher.reopens(), 0);
  EXPECT_GE(prefetcher.wait_ms(), 0.0);
}

TEST_F(ShardPrefetcherTest, AppliesTheSameAugmentationAsAugmentToFloat) {
  const AugmentSpec spec{true, 0.4F};
  const std::vector<v1::ShardBatch> raw = raw_shard(request(16));
  ShardPrefetcher prefetcher(*client_, request(16), {2, spec, 10});
  expect_same_as_raw(prefetcher, raw, spec);
}

TEST_F(ShardPrefetcherTest, EvalShardWithAPartialLastBatch) {
  // 100 samples on rank 1 of 2, batches of 16: 6 full and one of 4.
  const std::vector<v1::ShardBatch> raw = raw_shard(request(16, false));
  ASSERT_EQ(raw.size(), 7U);
  ASSERT_EQ(raw.back().count(), 4);
  ShardPrefetcher prefetcher(*client_, request(16, false), {3, {}, 10});
  expect_same_as_raw(prefetcher, raw, {});
}

TEST_F(ShardPrefetcherTest, ResumesFromStartBatch) {
  const std::vector<v1::ShardBatch> raw = raw_shard(request(16));
  v1::StreamShardRequest resumed = request(16);
  resumed.set_start_batch(4);
  ShardPrefetcher prefetcher(*client_, resumed, {2, {}, 10});
  for (std::size_t i = 4; i < raw.size(); ++i) {
    auto batch = prefetcher.next();
    ASSERT_TRUE(batch.has_value());
    EXPECT_EQ(batch->batch_index, static_cast<std::int64_t>(i));
    EXPECT_EQ(batch->sample_indices, std::vector<std::int64_t>(raw[i].sample_indices().begin(),
                                                               raw[i].sample_indices().end()));
  }
  EXPECT_FALSE(prefetcher.next().has_value());
}

TEST_F(ShardPrefetcherTest, LabelsOnlyBatchesComeBareAndFetchWithImagesRestoresThemWhole) {
  const AugmentSpec spec{true, 0.4F};
  ShardPrefetcher whole(*client_, request(16), {2, spec, 10});
  v1::StreamShardRequest bare_request = request(16);
  bare_request.set_labels_only(true);
  ShardPrefetcher bare(*client_, bare_request, {2, spec, 10});
  std::int64_t batches = 0;
  while (auto expected = whole.next()) {
    auto batch = bare.next();
    ASSERT_TRUE(batch.has_value()) << "batch " << batches;
    EXPECT_EQ(batch->batch_index, expected->batch_index);
    EXPECT_EQ(batch->num_batches, expected->num_batches);
    EXPECT_EQ(batch->count, expected->count);
    EXPECT_EQ(batch->labels, expected->labels);
    EXPECT_EQ(batch->sample_indices, expected->sample_indices);
    EXPECT_TRUE(batch->images.empty());
    EXPECT_TRUE(batch->pixels.empty());
    // Every other batch asked for again, out of order with the stream: the
    // same images, augmented the same way, as the prefetcher with images.
    if (batches % 2 == 1) {
      const Batch again = bare.fetch_with_images(batch->batch_index);
      EXPECT_EQ(again.batch_index, expected->batch_index);
      EXPECT_EQ(again.sample_indices, expected->sample_indices);
      EXPECT_EQ(again.labels, expected->labels);
      EXPECT_EQ(again.pixels, expected->pixels);
      EXPECT_EQ(again.images, expected->images) << "batch " << batches;
    }
    bare.recycle(std::move(*batch));
    ++batches;
  }
  EXPECT_EQ(batches, kTrainRecords / 32);
  EXPECT_FALSE(bare.next().has_value());
  EXPECT_THROW(bare.fetch_with_images(batches), std::runtime_error);  // past the shard
}

TEST_F(ShardPrefetcherTest, NeverReadsMoreThanQueueDepthAhead) {
  constexpr int kDepth = 3;
  ShardPrefetcher prefetcher(*client_, request(1, false), {kDepth, {}, 10});
  // A slow consumer: the producer fills the queue and must stop there.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(prefetcher.batches_read(), kDepth);
  EXPECT_EQ(prefetcher.max_queue_size_seen(), static_cast<std::size_t>(kDepth));
  std::int64_t taken = 0;
  while (prefetcher.next()) {
    ++taken;
    EXPECT_LE(prefetcher.batches_read() - taken, kDepth) << "after batch " << taken;
    if (taken % 20 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      EXPECT_EQ(prefetcher.batches_read() - taken,
                std::min<std::int64_t>(kDepth, kTrainRecords / 2 - taken));
    }
  }
  EXPECT_EQ(taken, kTrainRecords / 2);
  EXPECT_EQ(prefetcher.batches_read(), taken);
  EXPECT_LE(prefetcher.max_queue_size_seen(), static_cast<std::size_t>(kDepth));
}

TEST_F(ShardPrefetcherTest, AnUnknownRunThrowsTheRpcErrorFromNext) {
  v1::StreamShardRequest bad = request(16);
  bad.set_run("no-such-run");
  ShardPrefetcher prefetcher(*client_, bad, {});
  try {
    prefetcher.next();
    FAIL() << "expected an error";
  } catch (const client::RpcError& e) {
    EXPECT_EQ(e.code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(std::string(e.what()).find("no-such-run"), std::string::npos) << e.what();
  }
  // The error stays: a second call throws it again rather than ending the shard.
  EXPECT_THROW(prefetcher.next(), client::RpcError);
}

TEST_F(ShardPrefetcherTest, LabelsOutsideNumClassesAreNamed) {
  ShardPrefetcher prefetcher(*client_, request(16), {2, {}, 1});
  try {
    while (prefetcher.next()) {
    }
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("batch 0"), std::string::npos) << what;
    EXPECT_NE(what.find("sample at position"), std::string::npos) << what;
    EXPECT_NE(what.find("expected 0..0 (--num-classes 1)"), std::string::npos) << what;
  }
}

TEST_F(ShardPrefetcherTest, DestroyingMidStreamWithAFullQueueReturnsPromptly) {
  const auto start = Clock::now();
  {
    ShardPrefetcher prefetcher(*client_, request(1, false), {1, {}, 10});
    ASSERT_TRUE(prefetcher.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the queue is full again
    EXPECT_EQ(prefetcher.batches_read(), 2);
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ShardPrefetcherTest, DestroyingWhileTheStreamReconnectsReturnsPromptly) {
  // The coordinator is gone and the window is a minute: the thread sits in
  // the reader's reconnect loop (a stream read), not on the queue.
  client::CoordinatorClient patient(client_options(std::chrono::seconds(60)));
  stop_coordinator();
  const auto start = Clock::now();
  {
    ShardPrefetcher prefetcher(patient, request(16), {2, {}, 10});
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(prefetcher.batches_read(), 0);
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ShardPrefetcherTest, RidesOutACoordinatorRestart) {
  const std::vector<v1::ShardBatch> raw = raw_shard(request(16));
  client::CoordinatorClient patient(client_options(std::chrono::seconds(60)));
  stop_coordinator();
  ShardPrefetcher prefetcher(patient, request(16), {2, {}, 10});
  std::thread restarter([this] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    start();
  });
  // next() waits through the outage, then the whole shard arrives intact.
  expect_same_as_raw(prefetcher, raw, {});
  restarter.join();
  EXPECT_GE(prefetcher.reopens(), 1);
  EXPECT_GE(prefetcher.wait_ms(), 250.0);
}

TEST_F(ShardPrefetcherTest, BadOptionsAreRejected) {
  EXPECT_THROW(ShardPrefetcher(*client_, request(16), {0, {}, 10}), std::invalid_argument);
  EXPECT_THROW(ShardPrefetcher(*client_, request(16), {1, {}, 0}), std::invalid_argument);
}

}  // namespace
}  // namespace xfer::trainer::data
