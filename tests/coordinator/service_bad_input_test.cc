// The RPC rows of docs/errors.md: every bad request a peer can send gets its
// status code and a message naming what was wrong, and changes nothing.
// Each case stores some state first (two runs, a metrics epoch, a
// checkpoint), takes a snapshot of everything a client can read plus every
// file under the state and checkpoint directories, sends the bad requests,
// and compares the snapshot afterwards. Real coordinator on 127.0.0.1, raw
// stubs (service_test_util.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <iterator>
#include <map>

#include "tests/coordinator/service_test_util.h"

namespace xfer::coordinator::server::testing {
namespace {

using ::testing::HasSubstr;

// Everything a client can read about the stored state, and the files that
// hold it. Equal snapshots: nothing was changed or lost.
struct Snapshot {
  std::string runs;                                // ListRuns
  std::map<std::string, std::string> history;      // run -> History
  std::map<std::string, std::string> ranks;        // run -> Ranks
  std::map<std::string, std::string> checkpoints;  // run -> List
  std::vector<std::string> errors;                 // GetStatus.errors
  std::map<std::string, std::string> files;        // path under root -> size and content hash
};

v1::MetricsReport report(const std::string& run, int rank, std::int64_t step) {
  v1::MetricsReport r;
  r.set_run(run);
  r.set_rank(rank);
  r.set_phase("head");
  r.set_epoch(1);
  r.set_step(step);
  r.set_split(v1::SPLIT_KIND_TRAIN);
  r.set_loss_sum(8.0);
  r.set_correct_top1(2);
  r.set_correct_top3(3);
  r.set_samples(4);
  r.set_images_per_second(100.0);
  r.set_learning_rate(1e-3);
  r.set_end_of_epoch(true);
  return r;
}

v1::CheckpointMeta checkpoint_meta(const std::string& run) {
  v1::CheckpointMeta m;
  m.set_run(run);
  m.set_phase("head");
  m.set_epoch(1);
  m.set_step(10);
  m.set_metric_name("val_loss");
  m.set_metric_value(0.5);
  m.set_direction(v1::METRIC_DIRECTION_MINIMIZE);
  return m;
}

std::string blob_of(std::size_t size, int seed) {
  std::string blob(size, '\0');
  for (std::size_t i = 0; i < size; ++i) blob[i] = static_cast<char>((i * 31 + seed) % 253);
  return blob;
}

// One message of a Put stream: meta, or data at an offset.
struct Chunk {
  bool meta = false;
  std::int64_t offset = 0;
  std::string data;
};
const Chunk kMeta{true, 0, ""};
Chunk chunk_at(std::int64_t offset, std::string bytes) { return {false, offset, std::move(bytes)}; }

class BadInputTest : public CoordinatorFixture {
 protected:
  // Two runs ("job" of 2 ranks, "other" of 1), an epoch of metrics for
  // "job", one stored checkpoint of "job" (blob_).
  void store_some_state() {
    start_run("job", 2, token_);
    start_run("other", 1, token_);
    v1::ReportAck ack;
    for (int rank = 0; rank < 2; ++rank) {
      ASSERT_TRUE(
          stubs_->metrics->Report(context(token_).get(), report("job", rank, 0), &ack).ok());
    }
    blob_ = blob_of(5000, 1);
    const grpc::Status status =
        put({kMeta, chunk_at(0, blob_)}, checkpoint_meta("job"), &stored_, token_);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  // Sends the chunks of one Put, the meta ones carrying `meta`.
  grpc::Status put(const std::vector<Chunk>& chunks, const v1::CheckpointMeta& meta,
                   v1::CheckpointInfo* info, const std::string& token) {
    auto ctx = context(token);
    auto writer = stubs_->checkpoints->Put(ctx.get(), info);
    for (const Chunk& chunk : chunks) {
      v1::CheckpointChunk message;
      if (chunk.meta) {
        *message.mutable_meta() = meta;
      } else {
        message.set_offset(chunk.offset);
        message.set_data(chunk.data);
      }
      if (!writer->Write(message)) break;  // the server ended the call already
    }
    writer->WritesDone();
    return writer->Finish();
  }

  Snapshot snapshot() {
    Snapshot s;
    v1::ListRunsResponse runs;
    EXPECT_TRUE(stubs_->runs->ListRuns(context(token_).get(), {}, &runs).ok());
    s.runs = runs.DebugString();
    for (const auto& run : runs.runs()) {
      v1::HistoryRequest history_request;
      history_request.set_run(run.name());
      v1::HistoryResponse history;
      EXPECT_TRUE(stubs_->metrics->History(context(token_).get(), history_request, &history).ok());
      s.history[run.name()] = history.DebugString();
      v1::RanksRequest ranks_request;
      ranks_request.set_run(run.name());
      v1::RanksResponse ranks;
      EXPECT_TRUE(stubs_->metrics->Ranks(context(token_).get(), ranks_request, &ranks).ok());
      s.ranks[run.name()] = ranks.DebugString();
      v1::ListCheckpointsRequest list_request;
      list_request.set_run(run.name());
      v1::ListCheckpointsResponse list;
      EXPECT_TRUE(stubs_->checkpoints->List(context(token_).get(), list_request, &list).ok());
      s.checkpoints[run.name()] = list.DebugString();
    }
    v1::StatusResponse status;
    EXPECT_TRUE(stubs_->runs->GetStatus(context(token_).get(), {}, &status).ok());
    s.errors.assign(status.errors().begin(), status.errors().end());
    for (const fs::path& dir : {root_ / "state", root_ / "checkpoints"}) {
      for (const auto& entry : fs::recursive_directory_iterator(dir)) {
        if (!entry.is_regular_file()) continue;
        std::ifstream in(entry.path(), std::ios::binary);
        const std::string content((std::istreambuf_iterator<char>(in)), {});
        s.files[fs::relative(entry.path(), root_).string()] =
            std::to_string(content.size()) + " bytes, hash " +
            std::to_string(std::hash<std::string>{}(content));
      }
    }
    return s;
  }

  static void expect_unchanged(const Snapshot& before, const Snapshot& after) {
    EXPECT_EQ(before.runs, after.runs) << "the runs changed";
    EXPECT_EQ(before.history, after.history) << "the metrics history changed";
    EXPECT_EQ(before.ranks, after.ranks) << "the per-rank figures changed";
    EXPECT_EQ(before.checkpoints, after.checkpoints) << "the checkpoint list changed";
    EXPECT_EQ(before.errors, after.errors) << "a client's bad input became a coordinator error";
    EXPECT_EQ(before.files, after.files) << "a file under the state or checkpoint dir changed";
  }

  // The stored checkpoint still downloads, verified, with its bytes.
  void expect_checkpoint_intact() {
    v1::GetCheckpointRequest request;
    request.set_id(stored_.id());
    auto ctx = context(token_);
    auto reader = stubs_->checkpoints->Get(ctx.get(), request);
    v1::CheckpointChunk chunk;
    std::string data;
    while (reader->Read(&chunk)) {
      if (!chunk.has_meta()) data += chunk.data();
    }
    const grpc::Status status = reader->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(data == blob_) << "the stored checkpoint's bytes changed";
  }

  std::string token_;  // sent with the calls that set up and check state
  std::string blob_;
  v1::CheckpointInfo stored_;
};

// Reads a server stream to its end; returns how many messages came, and the status.
template <typename Message, typename Reader>
std::pair<int, grpc::Status> drain(Reader reader) {
  Message message;
  int count = 0;
  while (reader->Read(&message)) ++count;
  return {count, reader->Finish()};
}

v1::StreamShardRequest shard_request(const std::string& run, int rank, int world) {
  v1::StreamShardRequest request;
  request.set_run(run);
  request.set_split("train");
  request.set_rank(rank);
  request.set_world_size(world);
  request.set_batch_size(8);
  request.set_kind(v1::SHARD_KIND_TRAIN);
  return request;
}

std::pair<int, grpc::Status> stream(v1::DataService::Stub& stub,
                                    const v1::StreamShardRequest& request,
                                    const std::string& token = "") {
  auto ctx = context(token);
  return drain<v1::ShardBatch>(stub.StreamShard(ctx.get(), request));
}

// Row "RPCs: a rank outside the world".
TEST_F(BadInputTest, RankOutsideTheWorldIsInvalidArgumentAndChangesNothing) {
  start();
  store_some_state();
  const Snapshot before = snapshot();

  for (const int rank : {2, -1}) {
    const auto [batches, status] = stream(*stubs_->data, shard_request("job", rank, 2));
    EXPECT_EQ(batches, 0);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("StreamShard: rank " + std::to_string(rank) +
                                                  " is outside the world (expected 0..1)"));
  }
  // A rank that believes in another world size.
  const auto [batches, status] = stream(*stubs_->data, shard_request("job", 2, 3));
  EXPECT_EQ(batches, 0);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("StreamShard: world_size 3 differs from run 'job' world size 2"));

  v1::ReportAck ack;
  for (const int rank : {2, -1}) {
    const grpc::Status report_status =
        stubs_->metrics->Report(context().get(), report("job", rank, 1), &ack);
    EXPECT_EQ(report_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(report_status.error_message(),
                HasSubstr("Report: rank " + std::to_string(rank) +
                          " is outside run 'job' of world size 2 (expected 0..1)"));
  }
  expect_unchanged(before, snapshot());
}

// Row "RPCs: an unknown run": every RPC that names a run.
TEST_F(BadInputTest, UnknownRunIsNotFoundEverywhereAndCreatesNothing) {
  start();
  store_some_state();
  const Snapshot before = snapshot();
  auto& s = *stubs_;
  const std::vector<std::pair<const char*, std::function<grpc::Status()>>> calls = {
      {"StreamShard", [&] { return stream(*s.data, shard_request("ghost", 0, 2)).second; }},
      {"GetRun",
       [&] {
         v1::GetRunRequest r;
         r.set_name("ghost");
         v1::Run out;
         return s.runs->GetRun(context().get(), r, &out);
       }},
      {"EndRun",
       [&] {
         v1::EndRunRequest r;
         r.set_name("ghost");
         r.set_state(v1::RUN_STATE_FAILED);
         v1::Run out;
         return s.runs->EndRun(context().get(), r, &out);
       }},
      {"GetStatus",
       [&] {
         v1::GetStatusRequest r;
         r.set_run("ghost");
         v1::StatusResponse out;
         return s.runs->GetStatus(context().get(), r, &out);
       }},
      {"PutReport",
       [&] {
         v1::RunReport r;
         r.set_run("ghost");
         v1::PutReportResponse out;
         return s.runs->PutReport(context().get(), r, &out);
       }},
      {"GetReport",
       [&] {
         v1::GetReportRequest r;
         r.set_run("ghost");
         v1::RunReport out;
         return s.runs->GetReport(context().get(), r, &out);
       }},
      {"Report",
       [&] {
         v1::ReportAck out;
         return s.metrics->Report(context().get(), report("ghost", 0, 0), &out);
       }},
      {"Watch",
       [&] {
         v1::WatchRequest r;
         r.set_run("ghost");
         auto ctx = context();
         return drain<v1::MetricsEvent>(s.metrics->Watch(ctx.get(), r)).second;
       }},
      {"History",
       [&] {
         v1::HistoryRequest r;
         r.set_run("ghost");
         v1::HistoryResponse out;
         return s.metrics->History(context().get(), r, &out);
       }},
      {"Ranks",
       [&] {
         v1::RanksRequest r;
         r.set_run("ghost");
         v1::RanksResponse out;
         return s.metrics->Ranks(context().get(), r, &out);
       }},
      {"Put",
       [&] {
         v1::CheckpointInfo out;
         return put({kMeta, chunk_at(0, blob_of(100, 2))}, checkpoint_meta("ghost"), &out, "");
       }},
      {"List",
       [&] {
         v1::ListCheckpointsRequest r;
         r.set_run("ghost");
         v1::ListCheckpointsResponse out;
         return s.checkpoints->List(context().get(), r, &out);
       }},
      {"Best",
       [&] {
         v1::RunCheckpointRequest r;
         r.set_run("ghost");
         v1::CheckpointInfo out;
         return s.checkpoints->Best(context().get(), r, &out);
       }},
      {"Latest",
       [&] {
         v1::RunCheckpointRequest r;
         r.set_run("ghost");
         v1::CheckpointInfo out;
         return s.checkpoints->Latest(context().get(), r, &out);
       }},
  };
  for (const auto& [method, call] : calls) {
    SCOPED_TRACE(method);
    const grpc::Status status = call();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(std::string(method) + ": no run 'ghost'"));
  }
  // Checkpoint ids are looked up the same way.
  v1::GetCheckpointRequest get;
  get.set_id("ghost-00000001");
  auto ctx = context();
  const grpc::Status get_status =
      drain<v1::CheckpointChunk>(s.checkpoints->Get(ctx.get(), get)).second;
  EXPECT_EQ(get_status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(get_status.error_message(), HasSubstr("Get: no checkpoint 'ghost-00000001'"));
  v1::DeleteCheckpointRequest del;
  del.set_id("ghost-00000001");
  v1::DeleteCheckpointResponse deleted;
  const grpc::Status delete_status = s.checkpoints->Delete(context().get(), del, &deleted);
  EXPECT_EQ(delete_status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(delete_status.error_message(), HasSubstr("ghost-00000001"));

  expect_unchanged(before, snapshot());
  expect_checkpoint_intact();
}

// Rows "RPCs: an unknown dataset" and "a run resumed on another dataset".
TEST_F(BadInputTest, UnknownOrOtherDatasetStartsNoRun) {
  options_.datasets.push_back({"second", (root_ / "data").string()});
  start();
  store_some_state();
  const Snapshot before = snapshot();
  v1::StartRunRequest request;
  request.set_name("new");
  request.set_dataset("imagenet");
  request.set_world_size(1);
  v1::Run run;
  grpc::Status status = stubs_->runs->StartRun(context().get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(),
              HasSubstr("StartRun: no dataset 'imagenet' (served: second, synthetic)"));
  v1::GetDatasetInfoRequest info_request;
  info_request.set_dataset("imagenet");
  v1::DatasetInfo info;
  status = stubs_->data->GetDatasetInfo(context().get(), info_request, &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("GetDatasetInfo: no dataset 'imagenet'"));
  // Resuming "job" (started on synthetic) on the other served dataset.
  request.set_name("job");
  request.set_dataset("second");
  request.set_world_size(2);
  status = stubs_->runs->StartRun(context().get(), request, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_THAT(status.error_message(),
              HasSubstr("StartRun: run 'job' was started on dataset 'synthetic', not 'second'"));
  expect_unchanged(before, snapshot());
}

// Row "RPCs: checkpoint chunks out of order" (and the other malformed Put streams).
TEST_F(BadInputTest, ChunksOutOfOrderAbortTheUploadAndKeepThePreviousCheckpoint) {
  start();
  store_some_state();
  const Snapshot before = snapshot();
  const std::string a = blob_of(1000, 3);
  const std::string b = blob_of(1000, 4);
  struct Case {
    const char* name;
    std::vector<Chunk> chunks;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"gap",
       {kMeta, chunk_at(0, a), chunk_at(2000, b)},
       "chunk at offset 2000 but 1000 bytes were received (expected offset 1000: chunks in "
       "order, without gaps or overlaps); upload aborted"},
      {"overlap",
       {kMeta, chunk_at(0, a), chunk_at(500, b)},
       "chunk at offset 500 but 1000 bytes were received (expected offset 1000"},
      {"swapped",
       {kMeta, chunk_at(1000, b), chunk_at(0, a)},
       "chunk at offset 1000 but 0 bytes were received (expected offset 0"},
      {"data first",
       {chunk_at(0, a), kMeta},
       "Put: the first message carries data (expected meta first)"},
      {"second meta",
       {kMeta, chunk_at(0, a), kMeta},
       "Put: a second meta message at offset 1000 (expected data only after the first)"},
      {"empty stream", {}, "Put: empty stream (expected a first message with meta"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::CheckpointInfo info;
    const grpc::Status status = put(c.chunks, checkpoint_meta("job"), &info, "");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  // Fewer bytes than the meta announced.
  v1::CheckpointMeta announced = checkpoint_meta("job");
  announced.set_total_bytes(3000);
  v1::CheckpointInfo info;
  const grpc::Status status = put({kMeta, chunk_at(0, a), chunk_at(1000, b)}, announced, &info, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("Put: received 2000 bytes but meta.total_bytes says 3000; nothing stored"));

  expect_unchanged(before, snapshot());
  expect_checkpoint_intact();
}

// Row "RPCs: oversized messages".
TEST_F(BadInputTest, OversizedMessagesAreRefusedAndChangeNothing) {
  options_.max_message_bytes = 1 << 20;
  options_.max_batch_size = 64;
  start();
  store_some_state();
  const Snapshot before = snapshot();

  // A checkpoint chunk over --max-message-bytes.
  v1::CheckpointInfo info;
  grpc::Status status =
      put({kMeta, chunk_at(0, blob_of(2 << 20, 5))}, checkpoint_meta("job"), &info, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("larger than max"));
  // A metrics report over it.
  v1::MetricsReport big = report("job", 0, 1);
  big.set_phase(std::string(2 << 20, 'x'));
  v1::ReportAck ack;
  status = stubs_->metrics->Report(context().get(), big, &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("larger than max"));
  // A batch over --max-batch-size (its ShardBatch messages would be too big).
  v1::StreamShardRequest request = shard_request("job", 0, 2);
  request.set_batch_size(65);
  const auto [batches, shard_status] = stream(*stubs_->data, request);
  EXPECT_EQ(batches, 0);
  EXPECT_EQ(shard_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(shard_status.error_message(),
              HasSubstr("StreamShard: batch_size 65 is out of range (expected 1..64)"));

  expect_unchanged(before, snapshot());
  expect_checkpoint_intact();
}

// Rows "auth: a missing or wrong token" and "a read-only token used to
// write": every write RPC, each with a payload that would succeed with the
// admin token.
TEST_F(BadInputTest, RefusedTokensChangeNothing) {
  enable_auth();
  start();
  token_ = kAdminToken;
  store_some_state();
  const Snapshot before = snapshot();
  auto& s = *stubs_;
  const std::vector<std::pair<const char*, std::function<grpc::Status(const std::string&)>>>
      writes = {
          {"StartRun",
           [&](const std::string& t) {
             v1::StartRunRequest r;
             r.set_name("new");
             r.set_dataset("synthetic");
             r.set_world_size(1);
             v1::Run out;
             return s.runs->StartRun(context(t).get(), r, &out);
           }},
          {"EndRun",
           [&](const std::string& t) {
             v1::EndRunRequest r;
             r.set_name("job");
             r.set_state(v1::RUN_STATE_FAILED);
             v1::Run out;
             return s.runs->EndRun(context(t).get(), r, &out);
           }},
          {"Report",
           [&](const std::string& t) {
             v1::ReportAck out;
             return s.metrics->Report(context(t).get(), report("job", 0, 1), &out);
           }},
          {"StreamShard",
           [&](const std::string& t) {
             const auto [batches, status] = stream(*s.data, shard_request("job", 0, 2), t);
             EXPECT_EQ(batches, 0);
             return status;
           }},
          {"Put",
           [&](const std::string& t) {
             v1::CheckpointInfo out;
             return put({kMeta, chunk_at(0, blob_of(100, 6))}, checkpoint_meta("job"), &out, t);
           }},
          {"Delete",
           [&](const std::string& t) {
             v1::DeleteCheckpointRequest r;
             r.set_id(stored_.id());
             v1::DeleteCheckpointResponse out;
             return s.checkpoints->Delete(context(t).get(), r, &out);
           }},
      };
  for (const auto& [method, call] : writes) {
    SCOPED_TRACE(method);
    grpc::Status status = call("");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(std::string(method) + ": no authorization"));
    status = call("wrong-token-0123456789abcdef");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_THAT(
        status.error_message(),
        HasSubstr(std::string(method) + ": unknown token (expected this coordinator's admin"));
    status = call(kReadToken);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(std::string(method) + ": the read-only"));
  }
  expect_unchanged(before, snapshot());
  expect_checkpoint_intact();
}

// Row "RPCs: a metrics report that contradicts the stored one, or itself".
TEST_F(BadInputTest, ContradictoryReportsAreRefusedAndCountNothing) {
  start();
  store_some_state();
  const Snapshot before = snapshot();
  v1::ReportAck ack;
  v1::MetricsReport conflicting = report("job", 0, 0);  // stored with 4 samples
  conflicting.set_samples(5);
  grpc::Status status = stubs_->metrics->Report(context().get(), conflicting, &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << status.error_message();
  EXPECT_THAT(status.error_message(),
              HasSubstr("conflicts with the report already stored under this key: samples"));
  v1::MetricsReport impossible = report("job", 0, 1);
  impossible.set_correct_top1(10);  // more right than samples
  status = stubs_->metrics->Report(context().get(), impossible, &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  v1::MetricsReport no_split = report("job", 0, 1);
  no_split.set_split(v1::SPLIT_KIND_UNSPECIFIED);
  status = stubs_->metrics->Report(context().get(), no_split, &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(),
              HasSubstr("Report: split must be SPLIT_KIND_TRAIN, _VALIDATION or _TEST"));
  expect_unchanged(before, snapshot());
}

// Row "RPCs: a call the run's state forbids" (an ended run).
TEST_F(BadInputTest, CallsOnAnEndedRunAreFailedPreconditionAndChangeNothing) {
  start();
  store_some_state();
  v1::EndRunRequest end;
  end.set_name("other");
  end.set_state(v1::RUN_STATE_COMPLETED);
  v1::Run run;
  ASSERT_TRUE(stubs_->runs->EndRun(context().get(), end, &run).ok());
  const Snapshot before = snapshot();
  end.set_state(v1::RUN_STATE_FAILED);
  grpc::Status status = stubs_->runs->EndRun(context().get(), end, &run);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("other"));
  const auto [batches, shard_status] = stream(*stubs_->data, shard_request("other", 0, 1));
  EXPECT_EQ(batches, 0);
  EXPECT_EQ(shard_status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(shard_status.error_message(),
              HasSubstr("StreamShard: run 'other' is RUN_STATE_COMPLETED (expected "
                        "RUN_STATE_RUNNING)"));
  expect_unchanged(before, snapshot());
}

}  // namespace
}  // namespace xfer::coordinator::server::testing
