// The client library against in-process test doubles (client_test_doubles.h):
// retries, final codes, deadlines, auth metadata, stream resumption and
// checkpoint transfers.
#include <gtest/gtest.h>

#include <thread>

#include "common/sha256.h"
#include "coordinator/client/coordinator_client.h"
#include "tests/coordinator/client_test_doubles.h"
#include "tests/coordinator/client_test_util.h"

namespace xfer::coordinator::client {
namespace {

using testing::FakeCoordinator;
using testing::fast_options;
using testing::TempDir;

// Runs `call`, expecting an RpcError; returns it.
template <typename Call>
RpcError expect_rpc_error(Call&& call) {
  try {
    call();
  } catch (const RpcError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an RpcError";
  return RpcError(grpc::StatusCode::OK, "", "", "");
}

TEST(ClientRetryTest, UnavailableIsRetriedUntilItSucceeds) {
  FakeCoordinator fake;
  fake.metrics.report_failures = 2;
  CoordinatorClient client(fast_options(fake.address()));
  v1::MetricsReport report;
  report.set_run("r1");
  EXPECT_NO_THROW(client.report(report));
  EXPECT_EQ(fake.metrics.report_calls.load(), 3);
}

TEST(ClientRetryTest, UnavailableBeyondTheWindowSurfacesWithItsCode) {
  FakeCoordinator fake;
  fake.metrics.report_failures = 1000;
  ClientOptions options = fast_options(fake.address());
  options.reconnect_window = std::chrono::milliseconds(0);  // no retries at all
  CoordinatorClient client(options);
  const RpcError error = expect_rpc_error([&] { client.report(v1::MetricsReport()); });
  EXPECT_EQ(error.code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(fake.metrics.report_calls.load(), 1);
}

TEST(ClientRetryTest, InvalidArgumentIsNotRetriedAndNamesMethodAndAddress) {
  FakeCoordinator fake;
  CoordinatorClient client(fast_options(fake.address()));
  const RpcError error = expect_rpc_error([&] { client.history("r1"); });
  EXPECT_EQ(error.code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(fake.metrics.history_calls.load(), 1);
  EXPECT_EQ(error.method(), "History");
  EXPECT_EQ(error.server_message(), "History: run 'r1' is bad");
  const std::string what = error.what();
  EXPECT_NE(what.find("History"), std::string::npos) << what;
  EXPECT_NE(what.find(fake.address()), std::string::npos) << what;
  EXPECT_NE(what.find("INVALID_ARGUMENT"), std::string::npos) << what;
}

TEST(ClientDeadlineTest, ACallThatNeverAnswersEndsWithDeadlineExceeded) {
  FakeCoordinator fake;
  ClientOptions options = fast_options(fake.address());
  options.call_deadline = std::chrono::milliseconds(100);
  options.reconnect_window = std::chrono::milliseconds(0);
  CoordinatorClient client(options);
  const RpcError error = expect_rpc_error([&] { client.ranks("r1"); });
  EXPECT_EQ(error.code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(fake.metrics.ranks_calls.load(), 1);
}

TEST(ClientDeadlineTest, NonIdempotentCallIsNotRepeatedAfterADeadline) {
  FakeCoordinator fake;
  ClientOptions options = fast_options(fake.address());
  options.call_deadline = std::chrono::milliseconds(50);
  CoordinatorClient client(options);  // a 60 s window: only the rule stops a retry
  const RpcError error = expect_rpc_error([&] { client.start_run(v1::StartRunRequest()); });
  EXPECT_EQ(error.code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_EQ(fake.runs.start_calls.load(), 1);
}

TEST(ClientDeadlineTest, IdempotentCallIsRepeatedAfterADeadline) {
  FakeCoordinator fake;
  ClientOptions options = fast_options(fake.address());
  options.call_deadline = std::chrono::milliseconds(30);
  // Room for many attempts even on a busy machine; the test asserts that
  // there was more than one, never how many fit.
  options.reconnect_window = std::chrono::milliseconds(1000);
  CoordinatorClient client(options);
  const RpcError error = expect_rpc_error([&] { client.get_run("r1"); });
  EXPECT_EQ(error.code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_GE(error.attempts(), 2);
  EXPECT_GE(fake.runs.get_calls.load(), 2);
  // An attempt whose deadline passed before the server saw it is not counted
  // there: the server never sees more calls than the client made.
  EXPECT_LE(fake.runs.get_calls.load(), error.attempts());
}

TEST(ClientReportTest, PutAndGetRoundTripAndASecondPutReplaces) {
  FakeCoordinator fake;
  CoordinatorClient client(fast_options(fake.address()));
  v1::RunReport report;
  report.set_run("r1");
  report.set_num_classes(2);
  report.set_top1(0.75);
  EXPECT_FALSE(client.put_report(report).replaced());
  EXPECT_TRUE(client.put_report(report).replaced());
  const v1::RunReport got = client.get_report("r1");
  EXPECT_EQ(got.run(), "r1");
  EXPECT_DOUBLE_EQ(got.top1(), 0.75);
  const RpcError error = expect_rpc_error([&] { client.get_report("r2"); });
  EXPECT_EQ(error.code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(error.method(), "GetReport");
  EXPECT_EQ(error.server_message(), "GetReport: run 'r2' has no report yet");
}

TEST(ClientReportTest, PutReportIsIdempotentSoItIsRepeatedAfterADeadline) {
  FakeCoordinator fake;
  fake.runs.put_report_hangs = 1;
  ClientOptions options = fast_options(fake.address());
  options.call_deadline = std::chrono::milliseconds(100);
  CoordinatorClient client(options);
  v1::RunReport report;
  report.set_run("r1");
  EXPECT_FALSE(client.put_report(report).replaced());
  EXPECT_EQ(fake.runs.put_report_calls.load(), 2);
}

TEST(ClientCheckpointPhaseTest, BestAndLatestSendThePhase) {
  FakeCoordinator fake;
  CoordinatorClient client(fast_options(fake.address()));
  EXPECT_EQ(client.best_checkpoint("r1").id(), "best-head");
  EXPECT_EQ(client.best_checkpoint("r1", "finetune").id(), "best-finetune");
  EXPECT_EQ(client.latest_checkpoint("r1").id(), "latest-head");
  EXPECT_EQ(client.latest_checkpoint("r1", "head").meta().phase(), "head");
  EXPECT_EQ(
      fake.checkpoints.run_requests(),
      (std::vector<std::string>{"best:r1:", "best:r1:finetune", "latest:r1:", "latest:r1:head"}));
  const RpcError error = expect_rpc_error([&] { client.best_checkpoint("r1", "none"); });
  EXPECT_EQ(error.code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(fake.checkpoints.run_requests().size(), 5u);  // NOT_FOUND is not retried
}

TEST(ClientAuthTest, TokenFromTheFileIsSentAsBearerMetadataOnEveryAttempt) {
  FakeCoordinator fake;
  fake.metrics.report_failures = 1;
  TempDir dir;
  ClientOptions options = fast_options(fake.address());
  options.token_file =
      dir.write("token", "  s3cret-token-0123456789 \nsecond line ignored\n").string();
  CoordinatorClient client(options);
  client.report(v1::MetricsReport());
  EXPECT_EQ(fake.metrics.authorizations(),
            (std::vector<std::string>{"Bearer s3cret-token-0123456789",
                                      "Bearer s3cret-token-0123456789"}));
}

TEST(ClientAuthTest, NoTokenFileSendsNoAuthorization) {
  FakeCoordinator fake;
  CoordinatorClient client(fast_options(fake.address()));
  client.report(v1::MetricsReport());
  EXPECT_EQ(fake.metrics.authorizations(), (std::vector<std::string>{""}));
}

TEST(ShardReaderTest, ResumesFromTheNextBatchAfterABreak) {
  FakeCoordinator fake;
  CoordinatorClient client(fast_options(fake.address()));
  v1::StreamShardRequest request;
  request.set_run("r1");
  auto reader = client.stream_shard(request);
  std::vector<std::int64_t> indices;
  while (auto batch = reader->next()) {
    indices.push_back(batch->batch_index());
    EXPECT_EQ(batch->sample_indices(0), batch->batch_index() * 10);
  }
  EXPECT_EQ(indices, (std::vector<std::int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(fake.data.start_batches(), (std::vector<std::int64_t>{0, 2}));
  EXPECT_EQ(reader->reopens(), 1);
  EXPECT_EQ(reader->next_batch_index(), 5);
  EXPECT_EQ(reader->num_batches(), 5);
  EXPECT_FALSE(reader->next().has_value());
}

TEST(ShardReaderTest, StartsAtTheRequestedBatch) {
  FakeCoordinator fake;
  fake.data.break_after = 1000;
  CoordinatorClient client(fast_options(fake.address()));
  v1::StreamShardRequest request;
  request.set_start_batch(3);
  auto reader = client.stream_shard(request);
  EXPECT_EQ(reader->next()->batch_index(), 3);
  EXPECT_EQ(reader->next()->batch_index(), 4);
  EXPECT_FALSE(reader->next().has_value());
}

TEST(ShardReaderTest, EndBatchEndsTheStreamAndABreakResumesInsideTheRange) {
  FakeCoordinator fake;
  fake.data.break_after = 1;
  CoordinatorClient client(fast_options(fake.address()));
  v1::StreamShardRequest request;
  request.set_start_batch(1);
  request.set_end_batch(4);
  auto reader = client.stream_shard(request);
  std::vector<std::int64_t> indices;
  while (auto batch = reader->next()) indices.push_back(batch->batch_index());
  EXPECT_EQ(indices, (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(fake.data.start_batches(), (std::vector<std::int64_t>{1, 2}));
  EXPECT_FALSE(reader->next().has_value());
}

TEST(ShardReaderTest, EndBatchIsHonouredEvenIfTheServerSendsMore) {
  FakeCoordinator fake;
  fake.data.break_after = 1000;
  fake.data.honour_end_batch = false;
  CoordinatorClient client(fast_options(fake.address()));
  v1::StreamShardRequest request;
  request.set_end_batch(2);
  auto reader = client.stream_shard(request);
  EXPECT_EQ(reader->next()->batch_index(), 0);
  EXPECT_EQ(reader->next()->batch_index(), 1);
  EXPECT_FALSE(reader->next().has_value());
}

TEST(ShardReaderTest, AStreamThatEndsBeforeEndBatchIsAProtocolError) {
  FakeCoordinator fake;
  fake.data.break_after = 1000;
  fake.data.end_early_at = 3;
  CoordinatorClient client(fast_options(fake.address()));
  v1::StreamShardRequest request;
  request.set_start_batch(1);
  request.set_end_batch(5);
  auto reader = client.stream_shard(request);
  EXPECT_EQ(reader->next()->batch_index(), 1);
  EXPECT_EQ(reader->next()->batch_index(), 2);
  const RpcError error = expect_rpc_error([&] { reader->next(); });
  EXPECT_EQ(error.code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(std::string(error.what())
                .find("the stream ended after batch 2 where it should have "
                      "ended after batch 4"),
            std::string::npos)
      << error.what();
}

TEST(ShardReaderTest, ABatchOutOfOrderIsAProtocolError) {
  FakeCoordinator fake;
  fake.data.break_after = 1000;
  fake.data.skip_a_batch = true;
  CoordinatorClient client(fast_options(fake.address()));
  auto reader = client.stream_shard(v1::StreamShardRequest());
  ASSERT_EQ(reader->next()->batch_index(), 0);
  const RpcError error = expect_rpc_error([&] { reader->next(); });
  EXPECT_EQ(error.code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(std::string(error.what()).find("where batch 1 was expected"), std::string::npos)
      << error.what();
}

TEST(WatchReaderTest, ResumesAfterTheLastSequenceAndEndsWithTheRun) {
  FakeCoordinator fake;
  CoordinatorClient client(fast_options(fake.address()));
  auto reader = client.watch("r1");
  std::vector<std::int64_t> sequences;
  std::optional<v1::Run> final_state;
  while (auto event = reader->next()) {
    if (event->has_run()) {
      final_state = event->run();
    } else {
      sequences.push_back(event->sequence());
    }
  }
  EXPECT_EQ(sequences, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
  ASSERT_TRUE(final_state.has_value());
  EXPECT_EQ(final_state->state(), v1::RUN_STATE_COMPLETED);
  EXPECT_EQ(fake.metrics.watch_from_sequences(), (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(reader->last_sequence(), 5);
  EXPECT_EQ(reader->reopens(), 1);
}

TEST(WatchReaderTest, StartsFromAGivenSequence) {
  FakeCoordinator fake;
  fake.metrics.watch_calls = 1;  // skip the scripted break
  CoordinatorClient client(fast_options(fake.address()));
  auto reader = client.watch("r1", 4);
  EXPECT_EQ(reader->next()->sequence(), 4);
  EXPECT_EQ(fake.metrics.watch_from_sequences(), (std::vector<std::int64_t>{4}));
}

TEST(WatchReaderTest, AStreamDeadlineReopensTheStreamInsteadOfEndingIt) {
  FakeCoordinator fake;
  fake.metrics.watch_script = testing::FakeMetricsService::WatchScript::kHangFirstCall;
  ClientOptions options = fast_options(fake.address());
  options.stream_deadline = std::chrono::milliseconds(200);
  CoordinatorClient client(options);
  auto reader = client.watch("r1");
  std::vector<std::int64_t> sequences;
  while (auto event = reader->next()) {
    if (!event->has_run()) sequences.push_back(event->sequence());
  }
  EXPECT_EQ(sequences, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(fake.metrics.watch_from_sequences(), (std::vector<std::int64_t>{1, 2}));
}

TEST(WatchReaderTest, CancelFromAnotherThreadEndsABlockedRead) {
  FakeCoordinator fake;
  fake.metrics.watch_script = testing::FakeMetricsService::WatchScript::kHangAlways;
  CoordinatorClient client(fast_options(fake.address()));
  auto reader = client.watch("r1");
  ASSERT_EQ(reader->next()->sequence(), 1);
  // Whether cancel() lands before or during the blocked next(), next()
  // returns nothing and does not throw.
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    reader->cancel();
  });
  EXPECT_FALSE(reader->next().has_value());
  canceller.join();
  EXPECT_FALSE(reader->next().has_value());
}

v1::CheckpointMeta meta_for(const std::string& run) {
  v1::CheckpointMeta meta;
  meta.set_run(run);
  meta.set_phase("head");
  meta.set_epoch(3);
  meta.set_metric_name("val_loss");
  meta.set_metric_value(1.25);
  meta.set_direction(v1::METRIC_DIRECTION_MINIMIZE);
  return meta;
}

std::string blob_of(std::size_t size) {
  std::string blob(size, '\0');
  for (std::size_t i = 0; i < size; ++i) blob[i] = static_cast<char>((i * 131 + 7) % 251);
  return blob;
}

TEST(CheckpointPutTest, RetriedUploadReusesItsIdAndLandsOnce) {
  FakeCoordinator fake;
  ClientOptions options = fast_options(fake.address());
  options.chunk_bytes = 1000;
  CoordinatorClient client(options);
  const std::string blob = blob_of(4500);
  const v1::CheckpointInfo info = client.put_checkpoint_bytes(meta_for("r1"), blob);
  EXPECT_EQ(fake.checkpoints.put_calls.load(), 2);
  const auto ids = fake.checkpoints.upload_ids();
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_EQ(ids[0].size(), 32u);
  const auto stored = fake.checkpoints.stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored.begin()->second, blob);
  EXPECT_EQ(info.sha256(), common::sha256_hex(blob));
  EXPECT_EQ(info.meta().total_bytes(), 4500);
}

TEST(CheckpointPutTest, UploadsAFileAndTwoUploadsGetDistinctIds) {
  FakeCoordinator fake;
  fake.checkpoints.fail_first_put = false;
  TempDir dir;
  const std::string blob = blob_of(3 << 20);  // three default-size chunks
  const auto file = dir.write("model.pt", blob);
  CoordinatorClient client(fast_options(fake.address()));
  client.put_checkpoint_file(meta_for("r1"), file);
  client.put_checkpoint_file(meta_for("r1"), file);
  const auto ids = fake.checkpoints.upload_ids();
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_NE(ids[0], ids[1]);
  for (const auto& [id, bytes] : fake.checkpoints.stored()) EXPECT_EQ(bytes, blob) << id;
}

TEST(CheckpointPutTest, AServerChecksumThatDiffersIsAnError) {
  FakeCoordinator fake;
  fake.checkpoints.fail_first_put = false;
  fake.checkpoints.lie_about_sha = true;
  CoordinatorClient client(fast_options(fake.address()));
  EXPECT_THROW(client.put_checkpoint_bytes(meta_for("r1"), "abc"), ChecksumError);
}

TEST(CheckpointPutTest, AMissingFileIsAClientError) {
  FakeCoordinator fake;
  TempDir dir;
  CoordinatorClient client(fast_options(fake.address()));
  try {
    client.put_checkpoint_file(meta_for("r1"), dir.path() / "missing.pt");
    FAIL() << "expected ClientError";
  } catch (const ClientError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.pt"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fake.checkpoints.put_calls.load(), 0);
}

TEST(CheckpointGetTest, DownloadsAtomicallyAfterABreakAndVerifies) {
  FakeCoordinator fake;
  const std::string blob = blob_of(1000);
  fake.checkpoints.set_blob("c1", blob);
  TempDir dir;
  const auto out = dir.write("out.pt", "previous contents");
  CoordinatorClient client(fast_options(fake.address()));
  const DownloadResult result = client.get_checkpoint("c1", out, common::sha256_hex(blob));
  EXPECT_EQ(fake.checkpoints.get_calls.load(), 2);
  EXPECT_TRUE(result.verified);
  EXPECT_EQ(result.sha256, common::sha256_hex(blob));
  EXPECT_EQ(result.size_bytes, 1000);
  ASSERT_TRUE(result.meta.has_value());
  EXPECT_EQ(result.meta->run(), "r1");
  EXPECT_EQ(testing::read_file(out), blob);
  // Nothing but the destination is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1);
}

TEST(CheckpointGetTest, AChecksumMismatchLeavesTheDestinationUntouched) {
  FakeCoordinator fake;
  fake.checkpoints.break_first_get = false;
  fake.checkpoints.set_blob("c1", blob_of(100));
  TempDir dir;
  const auto out = dir.write("out.pt", "previous contents");
  CoordinatorClient client(fast_options(fake.address()));
  EXPECT_THROW(client.get_checkpoint("c1", out, std::string(64, 'a')), ChecksumError);
  EXPECT_EQ(testing::read_file(out), "previous contents");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator()),
            1);
}

TEST(CheckpointGetTest, WithoutAnExpectedChecksumItComputesOne) {
  FakeCoordinator fake;
  fake.checkpoints.break_first_get = false;
  fake.checkpoints.set_blob("c1", "hello");
  TempDir dir;
  CoordinatorClient client(fast_options(fake.address()));
  const DownloadResult result = client.get_checkpoint("c1", dir.path() / "new.pt");
  EXPECT_FALSE(result.verified);
  EXPECT_EQ(result.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  EXPECT_EQ(testing::read_file(dir.path() / "new.pt"), "hello");
}

TEST(CheckpointGetTest, NotFoundSurfacesAndWritesNothing) {
  FakeCoordinator fake;
  TempDir dir;
  CoordinatorClient client(fast_options(fake.address()));
  const RpcError error =
      expect_rpc_error([&] { client.get_checkpoint("nope", dir.path() / "x.pt"); });
  EXPECT_EQ(error.code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(ClientUnreachableTest, AnAddressWithNothingListeningIsUnavailable) {
  // Bind a port, then close the server: nothing listens there afterwards.
  std::string address;
  { address = FakeCoordinator().address(); }
  ClientOptions options = fast_options(address);
  options.reconnect_window = std::chrono::milliseconds(50);
  CoordinatorClient client(options);
  const RpcError error = expect_rpc_error([&] { client.get_status(); });
  EXPECT_EQ(error.code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(std::string(error.what()).find(address), std::string::npos);
}

}  // namespace
}  // namespace xfer::coordinator::client
