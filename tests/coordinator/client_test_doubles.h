// Small in-process gRPC services that stand in for the coordinator in the
// client library's tests: each misbehaves in one scripted way (fails a few
// times, never answers, breaks a stream midway) and records what it saw.
// They implement only what the tests call; everything else answers
// UNIMPLEMENTED (the generated default).
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/sha256.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace xfer::coordinator::client::testing {

// The value of the call's `authorization` metadata ("" when absent).
inline std::string authorization_of(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  return it == metadata.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

// Blocks a handler until the client gives up (deadline or cancel).
inline grpc::Status wait_until_cancelled(grpc::ServerContext* context) {
  while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return {grpc::StatusCode::CANCELLED, "the client went away"};
}

class FakeMetricsService final : public v1::MetricsService::Service {
 public:
  // Report: UNAVAILABLE for the first `report_failures` calls, then OK.
  std::atomic<int> report_failures{0};
  std::atomic<int> report_calls{0};
  std::atomic<int> history_calls{0};
  std::atomic<int> ranks_calls{0};
  std::atomic<int> watch_calls{0};
  // How Watch misbehaves: break the first call with UNAVAILABLE after two
  // events; or go silent (until the client gives up) after one event, on the
  // first call only or on every call.
  enum class WatchScript { kBreakFirstCall, kHangFirstCall, kHangAlways };
  std::atomic<WatchScript> watch_script{WatchScript::kBreakFirstCall};

  std::vector<std::string> authorizations() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return authorizations_;
  }
  std::vector<std::int64_t> watch_from_sequences() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return watch_from_;
  }

  grpc::Status Report(grpc::ServerContext* context, const v1::MetricsReport*,
                      v1::ReportAck*) override {
    record(*context);
    if (report_calls.fetch_add(1) < report_failures.load()) {
      return {grpc::StatusCode::UNAVAILABLE, "scripted outage"};
    }
    return grpc::Status::OK;
  }

  // Always refuses: a final code the client must not retry.
  grpc::Status History(grpc::ServerContext* context, const v1::HistoryRequest* request,
                       v1::HistoryResponse*) override {
    record(*context);
    ++history_calls;
    return {grpc::StatusCode::INVALID_ARGUMENT, "History: run '" + request->run() + "' is bad"};
  }

  // Never answers.
  grpc::Status Ranks(grpc::ServerContext* context, const v1::RanksRequest*,
                     v1::RanksResponse*) override {
    record(*context);
    ++ranks_calls;
    return wait_until_cancelled(context);
  }

  // Events 1..5 then the run's final state, disturbed by `watch_script`.
  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::MetricsEvent>* writer) override {
    record(*context);
    const int call = watch_calls.fetch_add(1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      watch_from_.push_back(request->from_sequence());
    }
    int sent = 0;
    for (std::int64_t sequence = std::max<std::int64_t>(1, request->from_sequence()); sequence <= 5;
         ++sequence) {
      const WatchScript script = watch_script.load();
      if (script == WatchScript::kBreakFirstCall && call == 0 && sent == 2) {
        return {grpc::StatusCode::UNAVAILABLE, "scripted break"};
      }
      if (sent == 1 && (script == WatchScript::kHangAlways ||
                        (script == WatchScript::kHangFirstCall && call == 0))) {
        return wait_until_cancelled(context);
      }
      v1::MetricsEvent event;
      event.set_sequence(sequence);
      event.mutable_epoch()->set_phase("head");
      event.mutable_epoch()->set_epoch(static_cast<std::int32_t>(sequence));
      writer->Write(event);
      ++sent;
    }
    v1::MetricsEvent last;
    last.mutable_run()->set_name(request->run());
    last.mutable_run()->set_state(v1::RUN_STATE_COMPLETED);
    writer->Write(last);
    return grpc::Status::OK;
  }

 private:
  void record(const grpc::ServerContext& context) {
    std::lock_guard<std::mutex> lock(mutex_);
    authorizations_.push_back(authorization_of(context));
  }
  mutable std::mutex mutex_;
  std::vector<std::string> authorizations_;
  std::vector<std::int64_t> watch_from_;
};

class FakeRunService final : public v1::RunService::Service {
 public:
  std::atomic<int> start_calls{0};
  std::atomic<int> get_calls{0};

  // Never answers: a non-idempotent call that must not be repeated.
  grpc::Status StartRun(grpc::ServerContext* context, const v1::StartRunRequest*,
                        v1::Run*) override {
    ++start_calls;
    return wait_until_cancelled(context);
  }
  // Never answers: an idempotent call, repeated until the window is spent.
  grpc::Status GetRun(grpc::ServerContext* context, const v1::GetRunRequest*, v1::Run*) override {
    ++get_calls;
    return wait_until_cancelled(context);
  }

  // PutReport: the first `put_report_hangs` calls never answer (the client
  // sees DEADLINE_EXCEEDED); later ones store the report, one per run, as
  // the coordinator does.
  std::atomic<int> put_report_hangs{0};
  std::atomic<int> put_report_calls{0};

  grpc::Status PutReport(grpc::ServerContext* context, const v1::RunReport* request,
                         v1::PutReportResponse* response) override {
    if (put_report_calls.fetch_add(1) < put_report_hangs.load()) {
      return wait_until_cancelled(context);
    }
    std::lock_guard<std::mutex> lock(mutex_);
    response->set_replaced(reports_.count(request->run()) > 0);
    reports_[request->run()] = *request;
    return grpc::Status::OK;
  }

  grpc::Status GetReport(grpc::ServerContext*, const v1::GetReportRequest* request,
                         v1::RunReport* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = reports_.find(request->run());
    if (it == reports_.end()) {
      return {grpc::StatusCode::NOT_FOUND,
              "GetReport: run '" + request->run() + "' has no report yet"};
    }
    *response = it->second;
    return grpc::Status::OK;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, v1::RunReport> reports_;  // GUARDED_BY(mutex_)
};

class FakeDataService final : public v1::DataService::Service {
 public:
  static constexpr std::int64_t kNumBatches = 5;
  // The first call breaks with UNAVAILABLE after this many batches.
  std::atomic<int> break_after{2};
  // Sends batch indices off by one (a protocol error) when set.
  std::atomic<bool> skip_a_batch{false};
  // Stops before request.end_batch() like the real service; when false it
  // sends to the end of the shard whatever end_batch says.
  std::atomic<bool> honour_end_batch{true};
  // >= 0: ends the stream, successfully, before this batch (a protocol error
  // when the client asked for more).
  std::atomic<int> end_early_at{-1};

  std::vector<std::int64_t> start_batches() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return start_batches_;
  }

  grpc::Status StreamShard(grpc::ServerContext*, const v1::StreamShardRequest* request,
                           grpc::ServerWriter<v1::ShardBatch>* writer) override {
    std::size_t call;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      call = start_batches_.size();
      start_batches_.push_back(request->start_batch());
    }
    int sent = 0;
    std::int64_t end = kNumBatches;
    if (honour_end_batch && request->end_batch() > 0) end = std::min(end, request->end_batch());
    if (end_early_at >= 0) end = std::min<std::int64_t>(end, end_early_at);
    for (std::int64_t index = request->start_batch(); index < end; ++index) {
      if (call == 0 && sent == break_after.load()) {
        return {grpc::StatusCode::UNAVAILABLE, "scripted break"};
      }
      v1::ShardBatch batch;
      batch.set_batch_index(skip_a_batch && index > 0 ? index + 1 : index);
      batch.set_num_batches(kNumBatches);
      batch.set_count(1);
      batch.set_labels(std::string(1, static_cast<char>(index)));
      batch.add_sample_indices(index * 10);
      writer->Write(batch);
      ++sent;
    }
    return grpc::Status::OK;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::int64_t> start_batches_;
};

class FakeCheckpointService final : public v1::CheckpointService::Service {
 public:
  // Put: the first call fails UNAVAILABLE after its first data chunk.
  std::atomic<bool> fail_first_put{true};
  // Put: answers a wrong SHA-256.
  std::atomic<bool> lie_about_sha{false};
  // Get: the first call breaks UNAVAILABLE midway.
  std::atomic<bool> break_first_get{true};
  std::atomic<int> put_calls{0};
  std::atomic<int> get_calls{0};

  // Blobs stored, by upload_id (a retried upload lands once).
  std::map<std::string, std::string> stored() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stored_;
  }
  std::vector<std::string> upload_ids() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return upload_ids_;
  }
  void set_blob(const std::string& id, std::string bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    blobs_[id] = std::move(bytes);
  }

  grpc::Status Put(grpc::ServerContext*, grpc::ServerReader<v1::CheckpointChunk>* reader,
                   v1::CheckpointInfo* response) override {
    const int call = put_calls.fetch_add(1);
    v1::CheckpointChunk chunk;
    if (!reader->Read(&chunk) || !chunk.has_meta()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "Put: the first chunk must carry meta"};
    }
    const v1::CheckpointMeta meta = chunk.meta();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      upload_ids_.push_back(meta.upload_id());
    }
    std::string blob;
    while (reader->Read(&chunk)) {
      if (chunk.offset() != static_cast<std::int64_t>(blob.size())) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "Put: chunk offset out of order"};
      }
      blob += chunk.data();
      if (call == 0 && fail_first_put) return {grpc::StatusCode::UNAVAILABLE, "scripted outage"};
    }
    if (static_cast<std::int64_t>(blob.size()) != meta.total_bytes()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "Put: size differs from total_bytes"};
    }
    std::lock_guard<std::mutex> lock(mutex_);
    stored_[meta.upload_id()] = blob;
    response->set_id("ckpt-" + meta.upload_id().substr(0, 8));
    response->set_sha256(lie_about_sha ? std::string(64, '0') : common::sha256_hex(blob));
    response->set_size_bytes(static_cast<std::int64_t>(blob.size()));
    *response->mutable_meta() = meta;
    return grpc::Status::OK;
  }

  // The (run, phase) of every Best and Latest call, "best:RUN:PHASE" /
  // "latest:RUN:PHASE".
  std::vector<std::string> run_requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return run_requests_;
  }

  // Best / Latest: a checkpoint of the asked phase ("head" when it is
  // empty), id "best-PHASE" / "latest-PHASE"; NOT_FOUND for phase "none".
  grpc::Status Best(grpc::ServerContext*, const v1::RunCheckpointRequest* request,
                    v1::CheckpointInfo* response) override {
    return answer_run_request("best", *request, response);
  }
  grpc::Status Latest(grpc::ServerContext*, const v1::RunCheckpointRequest* request,
                      v1::CheckpointInfo* response) override {
    return answer_run_request("latest", *request, response);
  }

  // Meta first, then the blob in 3-byte chunks.
  grpc::Status Get(grpc::ServerContext*, const v1::GetCheckpointRequest* request,
                   grpc::ServerWriter<v1::CheckpointChunk>* writer) override {
    const int call = get_calls.fetch_add(1);
    std::string blob;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = blobs_.find(request->id());
      if (it == blobs_.end()) {
        return {grpc::StatusCode::NOT_FOUND, "Get: no checkpoint '" + request->id() + "'"};
      }
      blob = it->second;
    }
    v1::CheckpointChunk chunk;
    chunk.mutable_meta()->set_run("r1");
    chunk.mutable_meta()->set_total_bytes(static_cast<std::int64_t>(blob.size()));
    writer->Write(chunk);
    for (std::size_t offset = 0; offset < blob.size(); offset += 3) {
      if (call == 0 && break_first_get && offset >= blob.size() / 2) {
        return {grpc::StatusCode::UNAVAILABLE, "scripted break"};
      }
      chunk.Clear();
      chunk.set_offset(static_cast<std::int64_t>(offset));
      chunk.set_data(blob.substr(offset, 3));
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

 private:
  grpc::Status answer_run_request(const std::string& which, const v1::RunCheckpointRequest& request,
                                  v1::CheckpointInfo* response) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      run_requests_.push_back(which + ":" + request.run() + ":" + request.phase());
    }
    if (request.phase() == "none") {
      return {grpc::StatusCode::NOT_FOUND,
              "run '" + request.run() + "' has no checkpoint of phase 'none'"};
    }
    const std::string phase = request.phase().empty() ? "head" : request.phase();
    response->set_id(which + "-" + phase);
    response->mutable_meta()->set_run(request.run());
    response->mutable_meta()->set_phase(phase);
    response->mutable_meta()->set_epoch(3);
    response->mutable_meta()->set_metric_name("val_loss");
    response->mutable_meta()->set_metric_value(0.25);
    return grpc::Status::OK;
  }

  mutable std::mutex mutex_;
  std::vector<std::string> run_requests_;
  std::map<std::string, std::string> blobs_;
  std::map<std::string, std::string> stored_;
  std::vector<std::string> upload_ids_;
};

// The fakes served on 127.0.0.1 with a free port.
class FakeCoordinator {
 public:
  FakeMetricsService metrics;
  FakeRunService runs;
  FakeDataService data;
  FakeCheckpointService checkpoints;

  FakeCoordinator() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&metrics);
    builder.RegisterService(&runs);
    builder.RegisterService(&data);
    builder.RegisterService(&checkpoints);
    server_ = builder.BuildAndStart();
    if (!server_ || port_ == 0) throw std::runtime_error("FakeCoordinator: could not listen");
  }
  ~FakeCoordinator() {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace xfer::coordinator::client::testing
