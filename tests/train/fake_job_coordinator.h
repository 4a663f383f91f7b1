// A coordinator in memory for the training job's unit tests: it holds at
// most one run, a dataset's class names, the run's checkpoints (with their
// bytes) and records every call that changes something. Errors are the
// client's: RpcError with the status code the real coordinator would send.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/client/errors.h"
#include "trainer/train/job_coordinator.h"

namespace xfer::trainer::train::testing {

class FakeJobCoordinator : public JobCoordinator {
 public:
  // ---- what it holds
  std::optional<v1::Run> run;
  v1::DatasetInfo dataset;
  std::set<std::string> bad_splits;  // resolve_split: INVALID_ARGUMENT
  // Best/Latest answer best_id / latest_id (NOT_FOUND when empty or when
  // `phase` differs). List answers, of `phase`, the ids of `listed_in[order]`
  // in that order (the ranking is the real coordinator's, tested there), or
  // `checkpoints` in this order when the test gave none for the order.
  std::vector<v1::CheckpointInfo> checkpoints;
  std::string best_id;
  std::string latest_id;
  std::map<v1::CheckpointOrder, std::vector<std::string>> listed_in;
  std::map<std::string, std::string> blobs;  // id -> bytes get_checkpoint writes
  // get_checkpoint of these ids fails: DATA_LOSS, NOT_FOUND, ... or, with
  // kChecksum, a ChecksumError.
  static constexpr grpc::StatusCode kChecksum = grpc::StatusCode::DO_NOT_USE;
  std::map<std::string, grpc::StatusCode> download_errors;
  std::optional<grpc::StatusCode> put_error;  // put_checkpoint fails with it

  // ---- what it was asked
  std::vector<v1::StartRunRequest> started;
  std::vector<std::pair<v1::RunState, std::string>> ended;
  std::vector<v1::MetricsReport> reports;
  std::vector<v1::CheckpointMeta> stored;
  std::vector<std::string> downloads;
  std::vector<std::pair<v1::CheckpointOrder, std::string>> list_requests;  // (order, phase)

  // A checkpoint of the run.
  v1::CheckpointInfo& add_checkpoint(const std::string& id, const std::string& phase, int epoch,
                                     std::int64_t step, double val_loss, std::int64_t created_ms) {
    v1::CheckpointInfo info;
    info.set_id(id);
    info.set_created_unix_ms(created_ms);
    info.mutable_meta()->set_run("job");
    info.mutable_meta()->set_phase(phase);
    info.mutable_meta()->set_epoch(epoch);
    info.mutable_meta()->set_step(step);
    info.mutable_meta()->set_metric_name("val_loss");
    info.mutable_meta()->set_metric_value(val_loss);
    info.mutable_meta()->set_direction(v1::METRIC_DIRECTION_MINIMIZE);
    checkpoints.push_back(info);
    return checkpoints.back();
  }

  v1::Run get_run(const std::string& name) override {
    if (!run || run->name() != name) throw error(grpc::StatusCode::NOT_FOUND, "no run " + name);
    return *run;
  }
  v1::Run start_run(const v1::StartRunRequest& request) override {
    started.push_back(request);
    v1::Run r = run.value_or(v1::Run{});
    r.set_name(request.name());
    r.set_dataset(request.dataset());
    r.set_attempt(r.attempt() + 1);
    r.set_state(v1::RUN_STATE_RUNNING);
    run = r;
    return r;
  }
  v1::Run end_run(const std::string&, v1::RunState state, const std::string& message) override {
    ended.emplace_back(state, message);
    run->set_state(state);
    return *run;
  }
  v1::DatasetInfo get_dataset_info(const std::string&) override { return dataset; }
  v1::ResolvedSplit resolve_split(const std::string&, const std::string& spec) override {
    if (bad_splits.count(spec) != 0) {
      throw error(grpc::StatusCode::INVALID_ARGUMENT, "split '" + spec + "' is not a spec");
    }
    return {};
  }
  void report(const v1::MetricsReport& report) override { reports.push_back(report); }
  void put_report(const v1::RunReport&) override {}
  v1::CheckpointInfo best_checkpoint(const std::string&, const std::string& phase) override {
    return find(best_id, phase);
  }
  v1::CheckpointInfo latest_checkpoint(const std::string&, const std::string& phase) override {
    return find(latest_id, phase);
  }
  v1::ListCheckpointsResponse list_checkpoints(const std::string&, v1::CheckpointOrder order,
                                               const std::string& phase) override {
    list_requests.emplace_back(order, phase);
    std::vector<v1::CheckpointInfo> in_order;
    if (auto ids = listed_in.find(order); ids != listed_in.end()) {
      for (const auto& id : ids->second) in_order.push_back(by_id(id));
    } else {
      in_order = checkpoints;
    }
    v1::ListCheckpointsResponse response;
    for (const auto& info : in_order) {
      if (phase.empty() || info.meta().phase() == phase) *response.add_checkpoints() = info;
    }
    return response;
  }
  std::optional<v1::CheckpointMeta> get_checkpoint(const std::string& id,
                                                   const std::filesystem::path& file,
                                                   const std::string&) override {
    downloads.push_back(id);
    if (auto failure = download_errors.find(id); failure != download_errors.end()) {
      if (failure->second == kChecksum) {
        throw coordinator::client::ChecksumError("SHA-256 of " + id + " differs", "aa", "bb");
      }
      throw error(failure->second, "checkpoint " + id + " is damaged");
    }
    const auto blob = blobs.find(id);
    if (blob == blobs.end()) throw error(grpc::StatusCode::NOT_FOUND, "no checkpoint " + id);
    std::ofstream(file, std::ios::binary) << blob->second;
    for (const auto& info : checkpoints) {
      if (info.id() == id) return info.meta();
    }
    return std::nullopt;
  }
  v1::CheckpointInfo put_checkpoint(const v1::CheckpointMeta& meta,
                                    std::string_view bytes) override {
    if (put_error) throw error(*put_error, "cannot store");
    stored.push_back(meta);
    v1::CheckpointInfo info;
    info.set_id("ckpt-" + std::to_string(stored.size()));
    *info.mutable_meta() = meta;
    blobs[info.id()] = std::string(bytes);
    return info;
  }

  static coordinator::client::RpcError error(grpc::StatusCode code, const std::string& message) {
    return coordinator::client::RpcError(code, "Fake", "127.0.0.1:1", message);
  }

 private:
  v1::CheckpointInfo find(const std::string& id, const std::string& phase) {
    for (const auto& info : checkpoints) {
      if (info.id() == id && (phase.empty() || info.meta().phase() == phase)) return info;
    }
    throw error(grpc::StatusCode::NOT_FOUND, "no such checkpoint");
  }
  v1::CheckpointInfo by_id(const std::string& id) { return find(id, ""); }
};

}  // namespace xfer::trainer::train::testing
