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

class ShardPrefetcherTest : public CoordinatorFixture {
 protected:
  void SetUp() override {
    CoordinatorFixture::SetUp();
    start();
    start_run("run", 2);
    client::ClientOptions options;
    options.address = coordinator_->address();
    options.reconnect_window = std::chrono::seconds(2);
    client_ = std::make_unique<client::CoordinatorClient>(options);
  }
  void TearDown() override {
    client_.reset();
    CoordinatorFixture::TearDown();
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

  std::unique_ptr<client::CoordinatorClient> client_;
};

TEST_F(ShardPrefetcherTest, DeliversTheRawStreamInOrderWithAugmentation) {
  const AugmentSpec spec{true, 0.4F};
  std::vector<v1::ShardBatch> raw;
  auto reader = client_->stream_shard(request(16));
  while (auto b = reader->next()) raw.push_back(*b);
  ASSERT_EQ(raw.size(), kTrainRecords / 32U);

  ShardPrefetcher prefetcher(*client_, request(16), {2, spec, 10});
  std::size_t i = 0;
  while (auto batch = prefetcher.next()) {
    ASSERT_LT(i, raw.size());
    const v1::ShardBatch& expected = raw[i];
    EXPECT_EQ(batch->batch_index, static_cast<std::int64_t>(i));
    EXPECT_EQ(batch->num_batches, expected.num_batches());
    ASSERT_EQ(batch->count, expected.count());
    for (int k = 0; k < batch->count; ++k) {
      EXPECT_EQ(batch->labels[k], static_cast<unsigned char>(expected.labels()[k]));
      EXPECT_EQ(batch->sample_indices[k], expected.sample_indices(k));
    }
    std::vector<float> floats(static_cast<std::size_t>(batch->count) * kImageBytes);
    augment_to_float(reinterpret_cast<const std::uint8_t*>(expected.images().data()), batch->count,
                     3, 32, 32, batch->sample_indices.data(), spec, 5, 2, floats.data());
    EXPECT_EQ(batch->images, floats);
    ++i;
  }
  EXPECT_EQ(i, raw.size());
  EXPECT_FALSE(prefetcher.next().has_value());  // stays at the end
}

TEST_F(ShardPrefetcherTest, TheQueueIsBounded) {
  ShardPrefetcher prefetcher(*client_, request(1, false), {3, {}, 10});
  // A slow consumer: the producer fills the queue and must stop there.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int batches = 0;
  while (prefetcher.next()) {
    ++batches;
    if (batches % 20 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(batches, kTrainRecords / 2);
  EXPECT_EQ(prefetcher.max_queue_size_seen(), 3U);
}

TEST_F(ShardPrefetcherTest, StreamErrorsSurfaceInNext) {
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
}

TEST_F(ShardPrefetcherTest, LabelsOutsideNumClassesAreNamed) {
  ShardPrefetcher prefetcher(*client_, request(16), {2, {}, 1});
  try {
    while (prefetcher.next()) {
    }
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("expected 0..0 (--num-classes 1)"), std::string::npos)
        << e.what();
  }
}

TEST_F(ShardPrefetcherTest, DestroyingMidStreamWithAFullQueueReturnsPromptly) {
  const auto start = std::chrono::steady_clock::now();
  {
    ShardPrefetcher prefetcher(*client_, request(1, false), {1, {}, 10});
    ASSERT_TRUE(prefetcher.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the queue is full again
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(ShardPrefetcherTest, BadOptionsAreRejected) {
  EXPECT_THROW(ShardPrefetcher(*client_, request(16), {0, {}, 10}), std::invalid_argument);
  EXPECT_THROW(ShardPrefetcher(*client_, request(16), {1, {}, 0}), std::invalid_argument);
}

}  // namespace
}  // namespace xfer::trainer::data
