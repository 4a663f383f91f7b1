// The coordinator's data, run and metrics services against a real server on
// 127.0.0.1 (in-process, ephemeral port).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "coordinator/dataset/cifar_format.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/coordinator/service_test_util.h"

namespace xfer::coordinator::server::testing {
namespace {

using ::testing::HasSubstr;

// Runs StreamShard to the end; returns the batches and the final status.
std::pair<std::vector<v1::ShardBatch>, grpc::Status> stream(v1::DataService::Stub& stub,
                                                            const v1::StreamShardRequest& request,
                                                            const std::string& token = "") {
  auto ctx = context(token);
  auto reader = stub.StreamShard(ctx.get(), request);
  std::vector<v1::ShardBatch> batches;
  v1::ShardBatch batch;
  while (reader->Read(&batch)) batches.push_back(batch);
  return {batches, reader->Finish()};
}

v1::StreamShardRequest shard_request(const std::string& run, int rank, int world, int batch) {
  v1::StreamShardRequest request;
  request.set_run(run);
  request.set_split("train[20%:]");
  request.set_epoch(1);
  request.set_rank(rank);
  request.set_world_size(world);
  request.set_batch_size(batch);
  request.set_shuffle(true);
  request.set_seed(7);
  request.set_kind(v1::SHARD_KIND_TRAIN);
  return request;
}

class ServiceTest : public CoordinatorFixture {};

TEST_F(ServiceTest, HealthServiceSaysServing) {
  start();
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(stub->Check(context().get(), request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(ServiceTest, DatasetInfoAndUnknownDataset) {
  start();
  v1::GetDatasetInfoRequest request;
  request.set_dataset("synthetic");
  v1::DatasetInfo info;
  ASSERT_TRUE(stubs_->data->GetDatasetInfo(context().get(), request, &info).ok());
  EXPECT_EQ(info.split_sizes().at("train"), kTrainRecords);
  EXPECT_EQ(info.split_sizes().at("test"), kTestRecords);
  EXPECT_EQ(info.fine_label_names_size(), 100);

  request.set_dataset("imagenet");
  const grpc::Status status = stubs_->data->GetDatasetInfo(context().get(), request, &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no dataset 'imagenet' (served: synthetic)"));
}

TEST_F(ServiceTest, ResolveSplitAndBadSpec) {
  start();
  v1::ResolveSplitRequest request;
  request.set_dataset("synthetic");
  request.set_spec("train[:20%]+test[:10]");
  v1::ResolvedSplit split;
  ASSERT_TRUE(stubs_->data->ResolveSplit(context().get(), request, &split).ok());
  EXPECT_EQ(split.num_examples(), 50);
  ASSERT_EQ(split.ranges_size(), 2);
  EXPECT_EQ(split.ranges(1).split(), "test");

  request.set_spec("train[:120%]");
  const grpc::Status status = stubs_->data->ResolveSplit(context().get(), request, &split);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("invalid split spec 'train[:120%]'"));
}

TEST_F(ServiceTest, StartRunValidatesItsRequest) {
  start();
  v1::Run run;
  v1::StartRunRequest request;
  request.set_dataset("synthetic");
  request.set_world_size(2);
  request.set_name("bad name!");
  grpc::Status status = stubs_->runs->StartRun(context().get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("run name 'bad name!' is invalid"));

  request.set_name("ok");
  request.set_world_size(0);
  status = stubs_->runs->StartRun(context().get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("world_size 0 is out of range"));

  request.set_world_size(2);
  request.set_config_json("{not json");
  status = stubs_->runs->StartRun(context().get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  request.set_config_json("{}");
  request.set_dataset("nope");
  status = stubs_->runs->StartRun(context().get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::GetRunRequest get;
  get.set_name("ghost");
  status = stubs_->runs->GetRun(context().get(), get, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, RunLifecycleResumeAndEnd) {
  start();
  const v1::Run first = start_run("job", 2);
  EXPECT_EQ(first.attempt(), 1);
  EXPECT_EQ(first.state(), v1::RUN_STATE_RUNNING);
  const v1::Run again = start_run("job", 2);
  EXPECT_EQ(again.attempt(), 2);

  v1::EndRunRequest end;
  end.set_name("job");
  end.set_state(v1::RUN_STATE_RUNNING);
  v1::Run run;
  EXPECT_EQ(stubs_->runs->EndRun(context().get(), end, &run).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  end.set_state(v1::RUN_STATE_FAILED);
  end.set_message("rank 1 died");
  ASSERT_TRUE(stubs_->runs->EndRun(context().get(), end, &run).ok());
  EXPECT_EQ(run.state(), v1::RUN_STATE_FAILED);
  end.set_state(v1::RUN_STATE_COMPLETED);
  EXPECT_EQ(stubs_->runs->EndRun(context().get(), end, &run).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  const v1::Run resumed = start_run("job", 2);  // failed, then resumed
  EXPECT_EQ(resumed.attempt(), 3);
  EXPECT_EQ(resumed.state(), v1::RUN_STATE_RUNNING);
  EXPECT_THAT(resumed.events(resumed.events_size() - 1),
              HasSubstr("resumed (attempt 3) from state RUN_STATE_FAILED"));
}

TEST_F(ServiceTest, StreamShardRejectsBadRequests) {
  start();
  start_run("job", 2);
  struct Case {
    std::function<void(v1::StreamShardRequest&)> mutate;
    grpc::StatusCode code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.set_run("ghost"); }, grpc::StatusCode::NOT_FOUND, "no run 'ghost'"},
      {[](auto& r) { r.set_rank(2); }, grpc::StatusCode::INVALID_ARGUMENT,
       "rank 2 is outside the world (expected 0..1)"},
      {[](auto& r) { r.set_rank(-1); }, grpc::StatusCode::INVALID_ARGUMENT, "rank -1"},
      {[](auto& r) { r.set_world_size(3); }, grpc::StatusCode::INVALID_ARGUMENT,
       "world_size 3 differs from run 'job' world size 2"},
      {[](auto& r) { r.set_batch_size(0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "batch_size 0 is out of range"},
      {[](auto& r) { r.set_split("train[:5"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "invalid split spec 'train[:5'"},
      {[](auto& r) { r.set_kind(v1::SHARD_KIND_UNSPECIFIED); }, grpc::StatusCode::INVALID_ARGUMENT,
       "kind must be"},
      {[](auto& r) { r.set_batch_size(200); }, grpc::StatusCode::INVALID_ARGUMENT, ""},
      {[](auto& r) { r.set_start_batch(1000); }, grpc::StatusCode::INVALID_ARGUMENT, ""},
      {[](auto& r) { r.set_end_batch(-1); }, grpc::StatusCode::INVALID_ARGUMENT,
       "end_batch -1 must be 0 (the whole shard) or above start_batch 0"},
      {[](auto& r) {
         r.set_start_batch(2);
         r.set_end_batch(2);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "end_batch 2 must be 0 (the whole shard) or above"},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    v1::StreamShardRequest request = shard_request("job", 0, 2, 8);
    cases[i].mutate(request);
    const auto [batches, status] = stream(*stubs_->data, request);
    EXPECT_TRUE(batches.empty()) << "case " << i;
    EXPECT_EQ(status.error_code(), cases[i].code) << "case " << i << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(cases[i].message)) << "case " << i;
  }
}

TEST_F(ServiceTest, TrainShardsAreEqualDisjointAndMatchTheDataset) {
  start();
  start_run("job", 2);
  const auto dataset = dataset::load_cifar100(root_ / "data");
  // train[20%:] of 200 is records 40..199: 160 samples; global batch 2 x 12
  // = 24 gives 6 steps and drops 16.
  std::set<std::int64_t> seen;
  std::vector<std::int64_t> global_order;
  std::vector<std::vector<v1::ShardBatch>> per_rank(2);
  for (int rank = 0; rank < 2; ++rank) {
    auto [batches, status] = stream(*stubs_->data, shard_request("job", rank, 2, 12));
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(batches.size(), 6u);
    per_rank[rank] = batches;
    for (const auto& batch : batches) {
      EXPECT_EQ(batch.count(), 12);
      EXPECT_EQ(batch.num_batches(), 6);
      EXPECT_EQ(batch.dropped_samples(), 16);
      ASSERT_EQ(batch.images().size(), 12u * dataset::kImageBytes);
      for (int i = 0; i < batch.count(); ++i) {
        const std::int64_t position = batch.sample_indices(i);
        EXPECT_TRUE(seen.insert(position).second) << "sample " << position << " sent twice";
        const std::size_t record = 40 + static_cast<std::size_t>(position);
        EXPECT_EQ(static_cast<std::uint8_t>(batch.labels()[i]),
                  dataset.split("train").fine_label(record));
        EXPECT_EQ(0, std::memcmp(batch.images().data() + i * dataset::kImageBytes,
                                 dataset.split("train").image(record), dataset::kImageBytes));
      }
    }
  }
  EXPECT_EQ(seen.size(), 144u);
  for (int step = 0; step < 6; ++step) {
    for (int rank = 0; rank < 2; ++rank) {
      for (auto index : per_rank[rank][step].sample_indices()) global_order.push_back(index);
    }
  }
  // One rank with the same global batch sees the same samples in the same order.
  start_run("solo", 1);
  const auto [solo, status] = stream(*stubs_->data, shard_request("solo", 0, 1, 24));
  ASSERT_TRUE(status.ok());
  std::vector<std::int64_t> solo_order;
  for (const auto& batch : solo) {
    for (auto index : batch.sample_indices()) solo_order.push_back(index);
  }
  EXPECT_EQ(solo_order, global_order);
}

TEST_F(ServiceTest, EvalShardsCoverEverySampleOnceAndStartBatchResumes) {
  start();
  start_run("job", 3);
  std::multiset<std::int64_t> seen;
  for (int rank = 0; rank < 3; ++rank) {
    v1::StreamShardRequest request = shard_request("job", rank, 3, 4);
    request.set_split("test");
    request.set_kind(v1::SHARD_KIND_EVAL);
    request.set_shuffle(false);
    const auto [batches, status] = stream(*stubs_->data, request);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const auto& batch : batches) {
      for (auto index : batch.sample_indices()) seen.insert(index);
    }
  }
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kTestRecords));
  for (std::int64_t i = 0; i < kTestRecords; ++i) EXPECT_EQ(seen.count(i), 1u) << i;

  v1::StreamShardRequest full = shard_request("job", 1, 3, 4);
  const auto [all, status_all] = stream(*stubs_->data, full);
  full.set_start_batch(2);
  const auto [rest, status_rest] = stream(*stubs_->data, full);
  ASSERT_TRUE(status_all.ok() && status_rest.ok());
  ASSERT_EQ(rest.size() + 2, all.size());
  EXPECT_EQ(rest[0].batch_index(), 2);
  EXPECT_EQ(rest[0].sample_indices(0), all[2].sample_indices(0));
}

TEST_F(ServiceTest, LabelsOnlyBatchesAndEndBatchServeTheSameSamples) {
  start();
  start_run("job", 2);
  // 160 samples, global batch 2 x 12: 6 batches per rank.
  const v1::StreamShardRequest whole = shard_request("job", 1, 2, 12);
  const auto [full, status_full] = stream(*stubs_->data, whole);
  ASSERT_TRUE(status_full.ok()) << status_full.error_message();
  ASSERT_EQ(full.size(), 6u);

  v1::StreamShardRequest labels_only = whole;
  labels_only.set_labels_only(true);
  const auto [bare, status_bare] = stream(*stubs_->data, labels_only);
  ASSERT_TRUE(status_bare.ok()) << status_bare.error_message();
  ASSERT_EQ(bare.size(), full.size());
  for (std::size_t b = 0; b < full.size(); ++b) {
    EXPECT_TRUE(bare[b].images().empty()) << "batch " << b;
    EXPECT_FALSE(full[b].images().empty()) << "batch " << b;
    v1::ShardBatch without_images = full[b];
    without_images.clear_images();
    EXPECT_EQ(bare[b].SerializeAsString(), without_images.SerializeAsString()) << "batch " << b;
  }

  // One batch again, with its images: what a trainer asks for when its
  // cache lacks a row of a labels-only batch.
  v1::StreamShardRequest one = whole;
  one.set_start_batch(3);
  one.set_end_batch(4);
  const auto [single, status_single] = stream(*stubs_->data, one);
  ASSERT_TRUE(status_single.ok()) << status_single.error_message();
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].SerializeAsString(), full[3].SerializeAsString());

  // An end past the shard stops at the shard's end.
  v1::StreamShardRequest past = whole;
  past.set_start_batch(4);
  past.set_end_batch(100);
  const auto [tail, status_tail] = stream(*stubs_->data, past);
  ASSERT_TRUE(status_tail.ok()) << status_tail.error_message();
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[1].SerializeAsString(), full[5].SerializeAsString());
}

v1::MetricsReport report(const std::string& run, int rank, std::int64_t step, bool end) {
  v1::MetricsReport r;
  r.set_run(run);
  r.set_rank(rank);
  r.set_phase("head");
  r.set_epoch(0);
  r.set_step(step);
  r.set_split(v1::SPLIT_KIND_TRAIN);
  r.set_loss_sum(2.0 * (rank + 1));
  r.set_correct_top1(rank + 1);
  r.set_correct_top3(rank + 2);
  r.set_samples(4);
  r.set_images_per_second(100.0 + rank);
  r.set_learning_rate(1e-3);
  r.set_end_of_epoch(end);
  return r;
}

TEST_F(ServiceTest, MetricsAggregateExactlyAndRetriesCountOnce) {
  start();
  start_run("job", 2);
  v1::ReportAck ack;
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(stubs_->metrics->Report(context().get(), report("job", rank, 0, false), &ack).ok());
    EXPECT_FALSE(ack.duplicate());
  }
  // A retry of the same step is acknowledged as a duplicate.
  ASSERT_TRUE(stubs_->metrics->Report(context().get(), report("job", 1, 0, false), &ack).ok());
  EXPECT_TRUE(ack.duplicate());
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(stubs_->metrics->Report(context().get(), report("job", rank, 1, true), &ack).ok());
  }
  v1::HistoryRequest history_request;
  history_request.set_run("job");
  v1::HistoryResponse history;
  ASSERT_TRUE(stubs_->metrics->History(context().get(), history_request, &history).ok());
  ASSERT_EQ(history.epochs_size(), 1);
  const v1::EpochMetrics& epoch = history.epochs(0);
  // Sums over 2 ranks x 2 steps: loss (2 + 4) * 2 = 12 over 16 samples.
  EXPECT_EQ(epoch.samples(), 16);
  EXPECT_DOUBLE_EQ(epoch.loss(), 12.0 / 16);
  EXPECT_DOUBLE_EQ(epoch.top1(), 6.0 / 16);
  EXPECT_DOUBLE_EQ(epoch.top3(), 10.0 / 16);

  v1::RanksRequest ranks_request;
  ranks_request.set_run("job");
  v1::RanksResponse ranks;
  ASSERT_TRUE(stubs_->metrics->Ranks(context().get(), ranks_request, &ranks).ok());
  ASSERT_EQ(ranks.ranks_size(), 2);
  EXPECT_DOUBLE_EQ(ranks.ranks(1).images_per_second(), 101.0);

  // Survives a restart: same history, and a retry is still a duplicate.
  restart();
  ASSERT_TRUE(stubs_->metrics->History(context().get(), history_request, &history).ok());
  ASSERT_EQ(history.epochs_size(), 1);
  EXPECT_EQ(history.epochs(0).samples(), 16);
  ASSERT_TRUE(stubs_->metrics->Report(context().get(), report("job", 0, 1, true), &ack).ok());
  EXPECT_TRUE(ack.duplicate());
}

TEST_F(ServiceTest, MetricsRejectBadReports) {
  start();
  start_run("job", 2);
  v1::ReportAck ack;
  grpc::Status status = stubs_->metrics->Report(context().get(), report("job", 2, 0, false), &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("rank 2 is outside run 'job' of world size 2"));
  status = stubs_->metrics->Report(context().get(), report("ghost", 0, 0, false), &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::MetricsReport bad = report("job", 0, 0, false);
  bad.set_correct_top1(10);  // more correct than samples
  status = stubs_->metrics->Report(context().get(), bad, &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(stubs_->metrics->Report(context().get(), report("job", 0, 0, false), &ack).ok());
  v1::MetricsReport conflicting = report("job", 0, 0, false);
  conflicting.set_samples(5);
  status = stubs_->metrics->Report(context().get(), conflicting, &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(ServiceTest, WatchStreamsEpochsAndEndsWithTheRun) {
  start();
  start_run("job", 1);
  std::vector<v1::MetricsEvent> events;
  grpc::Status watch_status;
  std::thread watcher([&] {
    auto ctx = context();
    v1::WatchRequest request;
    request.set_run("job");
    auto reader = stubs_->metrics->Watch(ctx.get(), request);
    v1::MetricsEvent event;
    while (reader->Read(&event)) events.push_back(event);
    watch_status = reader->Finish();
  });
  v1::ReportAck ack;
  ASSERT_TRUE(stubs_->metrics->Report(context().get(), report("job", 0, 0, true), &ack).ok());
  v1::MetricsReport second = report("job", 0, 0, true);
  second.set_epoch(1);
  ASSERT_TRUE(stubs_->metrics->Report(context().get(), second, &ack).ok());
  v1::EndRunRequest end;
  end.set_name("job");
  end.set_state(v1::RUN_STATE_COMPLETED);
  v1::Run run;
  ASSERT_TRUE(stubs_->runs->EndRun(context().get(), end, &run).ok());
  watcher.join();
  ASSERT_TRUE(watch_status.ok()) << watch_status.error_message();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].sequence(), 1);
  EXPECT_EQ(events[0].epoch().epoch(), 0);
  EXPECT_EQ(events[1].epoch().epoch(), 1);
  ASSERT_TRUE(events[2].has_run());
  EXPECT_EQ(events[2].run().state(), v1::RUN_STATE_COMPLETED);
}

TEST_F(ServiceTest, AuthRejectsMissingWrongAndReadOnlyTokens) {
  enable_auth();
  start();
  v1::StartRunRequest request;
  request.set_name("job");
  request.set_dataset("synthetic");
  request.set_world_size(1);
  v1::Run run;
  grpc::Status status = stubs_->runs->StartRun(context().get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("no authorization metadata"));
  status = stubs_->runs->StartRun(context("wrong-token-0123456789").get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(status.error_message(), HasSubstr("unknown token"));
  status = stubs_->runs->StartRun(context(kReadToken).get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stubs_->runs->StartRun(context(kAdminToken).get(), request, &run).ok());

  // The read-only token may watch: status, history, ranks.
  v1::GetStatusRequest status_request;
  v1::StatusResponse status_response;
  ASSERT_TRUE(
      stubs_->runs->GetStatus(context(kReadToken).get(), status_request, &status_response).ok());
  EXPECT_EQ(status_response.runs_size(), 1);
  v1::HistoryRequest history_request;
  history_request.set_run("job");
  v1::HistoryResponse history;
  EXPECT_TRUE(stubs_->metrics->History(context(kReadToken).get(), history_request, &history).ok());
  // ... but not report.
  v1::ReportAck ack;
  status = stubs_->metrics->Report(context(kReadToken).get(), report("job", 0, 0, false), &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Nothing was counted by the refused report.
  ASSERT_TRUE(
      stubs_->metrics->Report(context(kAdminToken).get(), report("job", 0, 0, false), &ack).ok());
  EXPECT_FALSE(ack.duplicate());
}

TEST_F(ServiceTest, BadStartupOptionsAreRefusedByName) {
  options_.datasets = {{"synthetic", (root_ / "missing").string()}};
  try {
    start();
    FAIL() << "started on a missing dataset";
  } catch (const std::exception& e) {
    EXPECT_THAT(e.what(), HasSubstr("dataset 'synthetic'"));
  }
  options_.datasets = {{"synthetic", (root_ / "data").string()}};
  options_.tls_cert_file = "cert.pem";
  EXPECT_THROW(start(), std::invalid_argument);  // --tls-cert without --tls-key
  options_.tls_cert_file.clear();
  std::ofstream(root_ / "short.token") << "abc\n";
  options_.token_file = (root_ / "short.token").string();
  try {
    start();
    FAIL() << "accepted a 3-character token";
  } catch (const std::exception& e) {
    EXPECT_THAT(e.what(), HasSubstr("token has 3 characters (expected at least 16)"));
  }
}

TEST_F(ServiceTest, PortInUseIsReported) {
  start();
  CoordinatorOptions second = options_;
  second.listen = coordinator_->address();
  second.state_dir = (root_ / "state2").string();
  second.checkpoint_dir = (root_ / "ckpt2").string();
  try {
    Coordinator other(second);
    FAIL() << "two coordinators on one port";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot listen there"));
  }
}

}  // namespace
}  // namespace xfer::coordinator::server::testing
