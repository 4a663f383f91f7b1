// CheckpointService against a real coordinator on 127.0.0.1: uploads in
// chunks, verified downloads, best/latest, deletion, corruption and the
// request checks.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/coordinator/service_test_util.h"

namespace xfer::coordinator::server::testing {
namespace {

using ::testing::HasSubstr;

v1::CheckpointMeta meta(const std::string& run, int epoch, double loss) {
  v1::CheckpointMeta m;
  m.set_run(run);
  m.set_phase("head");
  m.set_epoch(epoch);
  m.set_step(epoch * 10);
  m.set_metric_name("val_loss");
  m.set_metric_value(loss);
  m.set_direction(v1::METRIC_DIRECTION_MINIMIZE);
  return m;
}

std::string blob_of(int seed, std::size_t size) {
  std::string blob(size, '\0');
  for (std::size_t i = 0; i < size; ++i) blob[i] = static_cast<char>((i * 131 + seed * 7) % 251);
  return blob;
}

class CheckpointServiceTest : public CoordinatorFixture {
 protected:
  // Uploads `blob` in chunks of `chunk` bytes starting at the given offsets.
  grpc::Status put(const v1::CheckpointMeta& m, const std::string& blob, v1::CheckpointInfo* info,
                   std::size_t chunk = 64 << 10, const std::string& token = "",
                   bool scramble_offsets = false) {
    auto ctx = context(token);
    auto writer = stubs_->checkpoints->Put(ctx.get(), info);
    v1::CheckpointChunk message;
    *message.mutable_meta() = m;
    message.mutable_meta()->set_total_bytes(static_cast<std::int64_t>(blob.size()));
    writer->Write(message);
    for (std::size_t offset = 0; offset < blob.size(); offset += chunk) {
      message.Clear();
      message.set_offset(static_cast<std::int64_t>(scramble_offsets ? offset + 1 : offset));
      message.set_data(blob.substr(offset, chunk));
      if (!writer->Write(message)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // Downloads `id`; returns the status, the data and the first (meta) message.
  std::tuple<grpc::Status, std::string, v1::CheckpointMeta> get(const std::string& id) {
    auto ctx = context();
    v1::GetCheckpointRequest request;
    request.set_id(id);
    auto reader = stubs_->checkpoints->Get(ctx.get(), request);
    v1::CheckpointChunk chunk;
    std::string data;
    v1::CheckpointMeta first;
    while (reader->Read(&chunk)) {
      if (chunk.has_meta()) {
        first = chunk.meta();
      } else {
        EXPECT_EQ(chunk.offset(), static_cast<std::int64_t>(data.size()));
        data += chunk.data();
      }
    }
    return {reader->Finish(), data, first};
  }

  // The ids List returns for `run` in `order` (of `phase`, when not empty).
  std::vector<std::string> listed_ids(const std::string& run, v1::CheckpointOrder order,
                                      const std::string& phase = "") {
    v1::ListCheckpointsRequest request;
    request.set_run(run);
    request.set_order(order);
    request.set_phase(phase);
    v1::ListCheckpointsResponse response;
    const grpc::Status status = stubs_->checkpoints->List(context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::vector<std::string> ids;
    for (const auto& info : response.checkpoints()) ids.push_back(info.id());
    return ids;
  }

  // The stored file holding exactly `blob`.
  fs::path stored_file(const std::string& blob) {
    for (const auto& entry : fs::recursive_directory_iterator(options_.checkpoint_dir)) {
      if (!entry.is_regular_file() || entry.file_size() != blob.size()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      const std::string content((std::istreambuf_iterator<char>(in)), {});
      if (content == blob) return entry.path();
    }
    return {};
  }
};

TEST_F(CheckpointServiceTest, PutListGetBestLatestDelete) {
  options_.keep_best = 5;
  options_.keep_last = 5;
  start();
  start_run("job", 1);
  const std::string first = blob_of(1, 3'000'000);  // several 1 MiB chunks out
  const std::string second = blob_of(2, 1000);
  v1::CheckpointInfo a, b;
  ASSERT_TRUE(put(meta("job", 1, 0.5), first, &a).ok());
  ASSERT_TRUE(put(meta("job", 2, 0.9), second, &b).ok());
  EXPECT_EQ(a.size_bytes(), 3'000'000);
  EXPECT_EQ(a.sha256().size(), 64u);
  EXPECT_NE(a.id(), b.id());

  v1::ListCheckpointsRequest list_request;
  list_request.set_run("job");
  v1::ListCheckpointsResponse list;
  ASSERT_TRUE(stubs_->checkpoints->List(context().get(), list_request, &list).ok());
  ASSERT_EQ(list.checkpoints_size(), 2);

  v1::RunCheckpointRequest run_request;
  run_request.set_run("job");
  v1::CheckpointInfo best, latest;
  ASSERT_TRUE(stubs_->checkpoints->Best(context().get(), run_request, &best).ok());
  ASSERT_TRUE(stubs_->checkpoints->Latest(context().get(), run_request, &latest).ok());
  EXPECT_EQ(best.id(), a.id());    // lower val_loss
  EXPECT_EQ(latest.id(), b.id());  // higher epoch

  const auto [status, data, first_meta] = get(a.id());
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(data == first);
  EXPECT_EQ(first_meta.sha256(), a.sha256());
  EXPECT_EQ(first_meta.total_bytes(), 3'000'000);

  v1::DeleteCheckpointRequest del;
  del.set_id(a.id());
  v1::DeleteCheckpointResponse deleted;
  ASSERT_TRUE(stubs_->checkpoints->Delete(context().get(), del, &deleted).ok());
  EXPECT_EQ(std::get<0>(get(a.id())).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(stubs_->checkpoints->Delete(context().get(), del, &deleted).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Survives a restart.
  restart();
  const auto [after, data_after, unused] = get(b.id());
  ASSERT_TRUE(after.ok()) << after.error_message();
  EXPECT_TRUE(data_after == second);
}

TEST_F(CheckpointServiceTest, ListOrdersAsBestAndLatestRankWithNanAndTies) {
  options_.keep_best = 10;
  options_.keep_last = 10;
  start();
  start_run("job", 1);
  v1::CheckpointInfo nan, e3, e1, e2, e2_again, nan2;
  ASSERT_TRUE(put(meta("job", 5, std::nan("")), "n", &nan).ok());
  ASSERT_TRUE(put(meta("job", 3, 0.4), "3", &e3).ok());
  ASSERT_TRUE(put(meta("job", 1, 0.3), "1", &e1).ok());
  ASSERT_TRUE(put(meta("job", 2, 0.3), "2", &e2).ok());              // ties e1's metric
  ASSERT_TRUE(put(meta("job", 2, 0.1), "2 again", &e2_again).ok());  // ties e2's step
  ASSERT_TRUE(put(meta("job", 0, std::nan("")), "n2", &nan2).ok());

  v1::RunCheckpointRequest run_request;
  run_request.set_run("job");
  v1::CheckpointInfo best, latest;
  ASSERT_TRUE(stubs_->checkpoints->Best(context().get(), run_request, &best).ok());
  ASSERT_TRUE(stubs_->checkpoints->Latest(context().get(), run_request, &latest).ok());

  // Lowest loss first, a tie to the earlier commit, NaN last.
  const auto best_first = listed_ids("job", v1::CHECKPOINT_ORDER_BEST_FIRST);
  EXPECT_THAT(best_first, ::testing::ElementsAre(e2_again.id(), e1.id(), e2.id(), e3.id(), nan.id(),
                                                 nan2.id()));
  EXPECT_EQ(best_first.front(), best.id());
  // Highest (epoch, step) first, a tie to the later commit, NaN or not.
  const auto latest_first = listed_ids("job", v1::CHECKPOINT_ORDER_LATEST_FIRST);
  EXPECT_THAT(latest_first, ::testing::ElementsAre(nan.id(), e3.id(), e2_again.id(), e2.id(),
                                                   e1.id(), nan2.id()));
  EXPECT_EQ(latest_first.front(), latest.id());
  // Unspecified: what List returned before the field existed.
  EXPECT_THAT(
      listed_ids("job", v1::CHECKPOINT_ORDER_UNSPECIFIED),
      ::testing::ElementsAre(nan2.id(), e1.id(), e2.id(), e2_again.id(), e3.id(), nan.id()));
  // Of one phase only.
  EXPECT_THAT(listed_ids("job", v1::CHECKPOINT_ORDER_BEST_FIRST, "finetune"), ::testing::IsEmpty());
  EXPECT_EQ(listed_ids("job", v1::CHECKPOINT_ORDER_BEST_FIRST, "head"), best_first);

  // The same after a restart, which reloads the manifest.
  restart();
  EXPECT_EQ(listed_ids("job", v1::CHECKPOINT_ORDER_BEST_FIRST), best_first);
  EXPECT_EQ(listed_ids("job", v1::CHECKPOINT_ORDER_LATEST_FIRST), latest_first);

  // An order this coordinator does not know is refused, not guessed.
  v1::ListCheckpointsRequest unknown;
  unknown.set_run("job");
  unknown.set_order(static_cast<v1::CheckpointOrder>(7));
  v1::ListCheckpointsResponse response;
  const grpc::Status status = stubs_->checkpoints->List(context().get(), unknown, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("order 7 is not a CheckpointOrder"));
}

TEST_F(CheckpointServiceTest, BestAndLatestOfOnePhase) {
  options_.keep_best = 1;
  options_.keep_last = 1;
  start();
  start_run("job", 1);
  const auto phase_meta = [](const std::string& phase, int epoch, double loss) {
    v1::CheckpointMeta m = meta("job", epoch, loss);
    m.set_phase(phase);
    return m;
  };
  v1::CheckpointInfo h1, h2, f3, f4;
  const grpc::Status first = put(phase_meta("head", 1, 2.0), blob_of(1, 100), &h1);
  ASSERT_TRUE(first.ok()) << first.error_message();
  ASSERT_TRUE(put(phase_meta("head", 2, 1.5), blob_of(2, 100), &h2).ok());
  ASSERT_TRUE(put(phase_meta("finetune", 3, 1.0), blob_of(3, 100), &f3).ok());
  ASSERT_TRUE(put(phase_meta("finetune", 4, 1.2), blob_of(4, 100), &f4).ok());

  // The best and the latest of `phase` ("" = any), or the failed status.
  const auto ask = [&](bool best, const std::string& phase, v1::CheckpointInfo* info) {
    v1::RunCheckpointRequest request;
    request.set_run("job");
    request.set_phase(phase);
    return best ? stubs_->checkpoints->Best(context().get(), request, info)
                : stubs_->checkpoints->Latest(context().get(), request, info);
  };
  v1::CheckpointInfo info;
  ASSERT_TRUE(ask(true, "", &info).ok());
  EXPECT_EQ(info.id(), f3.id());  // the best of all phases
  ASSERT_TRUE(ask(true, "head", &info).ok());
  EXPECT_EQ(info.id(), h2.id());  // kept by retention although f3 ranks better
  EXPECT_EQ(info.meta().phase(), "head");
  ASSERT_TRUE(ask(false, "", &info).ok());
  EXPECT_EQ(info.id(), f4.id());
  ASSERT_TRUE(ask(false, "head", &info).ok());
  EXPECT_EQ(info.id(), h2.id());
  for (const bool best : {true, false}) {
    const grpc::Status status = ask(best, "full", &info);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(status.error_message(), HasSubstr("run 'job' has no checkpoint of phase 'full'"));
  }
  // h1 was neither the best head checkpoint nor the last.
  EXPECT_EQ(std::get<0>(get(h1.id())).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CheckpointServiceTest, RetriedUploadWithSameIdLandsOnce) {
  start();
  start_run("job", 1);
  v1::CheckpointMeta m = meta("job", 1, 0.5);
  m.set_upload_id("upload-123");
  v1::CheckpointInfo first, again;
  ASSERT_TRUE(put(m, blob_of(3, 5000), &first).ok());
  ASSERT_TRUE(put(m, blob_of(3, 5000), &again).ok());
  EXPECT_EQ(first.id(), again.id());
  v1::ListCheckpointsRequest list_request;
  list_request.set_run("job");
  v1::ListCheckpointsResponse list;
  ASSERT_TRUE(stubs_->checkpoints->List(context().get(), list_request, &list).ok());
  EXPECT_EQ(list.checkpoints_size(), 1);
}

TEST_F(CheckpointServiceTest, FlippedByteOnDiskIsDataLossAndShowsInStatus) {
  start();
  start_run("job", 1);
  const std::string blob = blob_of(4, 20000);
  v1::CheckpointInfo info;
  ASSERT_TRUE(put(meta("job", 1, 0.5), blob, &info).ok());
  const fs::path file = stored_file(blob);
  ASSERT_FALSE(file.empty()) << "stored blob not found under " << options_.checkpoint_dir;
  {
    std::fstream io(file, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(12345);
    io.put(static_cast<char>(blob[12345] ^ 0x01));
  }
  const auto [status, data, unused] = get(info.id());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DATA_LOSS) << status.error_message();
  EXPECT_TRUE(data.empty()) << "served bytes of a corrupt checkpoint";
  v1::StatusResponse coordinator_status;
  ASSERT_TRUE(stubs_->runs->GetStatus(context().get(), {}, &coordinator_status).ok());
  ASSERT_GE(coordinator_status.errors_size(), 1);
  EXPECT_THAT(coordinator_status.errors(0), HasSubstr("Get"));
}

TEST_F(CheckpointServiceTest, BadUploadsAreRefusedAndStoreNothing) {
  enable_auth();
  options_.max_message_bytes = 1 << 20;
  start();
  start_run("job", 1, kAdminToken);
  v1::CheckpointInfo info;
  grpc::Status status = put(meta("job", 1, 0.5), blob_of(5, 1000), &info, 1000, kReadToken);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  status = put(meta("job", 1, 0.5), blob_of(5, 1000), &info, 1000, "");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  status = put(meta("ghost", 1, 0.5), blob_of(5, 1000), &info, 1000, kAdminToken);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  status = put(meta("job", 1, 0.5), blob_of(5, 1000), &info, 100, kAdminToken, true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  v1::CheckpointMeta no_direction = meta("job", 1, 0.5);
  no_direction.set_direction(v1::METRIC_DIRECTION_UNSPECIFIED);
  status = put(no_direction, blob_of(5, 1000), &info, 1000, kAdminToken);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // One chunk of 2 MiB is over the 1 MiB message limit.
  status = put(meta("job", 1, 0.5), blob_of(5, 2 << 20), &info, 2 << 20, kAdminToken);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();

  v1::ListCheckpointsRequest list_request;
  list_request.set_run("job");
  v1::ListCheckpointsResponse list;
  ASSERT_TRUE(stubs_->checkpoints->List(context(kReadToken).get(), list_request, &list).ok());
  EXPECT_EQ(list.checkpoints_size(), 0) << "a refused upload was stored";

  // The read-only token may not delete either; the checkpoint survives.
  ASSERT_TRUE(put(meta("job", 1, 0.5), blob_of(6, 1000), &info, 1000, kAdminToken).ok());
  v1::DeleteCheckpointRequest del;
  del.set_id(info.id());
  v1::DeleteCheckpointResponse deleted;
  status = stubs_->checkpoints->Delete(context(kReadToken).get(), del, &deleted);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(stubs_->checkpoints->List(context(kReadToken).get(), list_request, &list).ok());
  EXPECT_EQ(list.checkpoints_size(), 1);
}

}  // namespace
}  // namespace xfer::coordinator::server::testing
