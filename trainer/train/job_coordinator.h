// The coordinator as the training job sees it: the calls its parts make,
// behind an interface, so that run lifecycle, checkpoint selection and
// metric reports are unit-tested against a fake
// (tests/train/fake_job_coordinator.h). ClientJobCoordinator forwards each
// call to the real gRPC client. Streaming shards and heartbeats keep the
// client itself (ShardPrefetcher, HeartbeatSender).
//
// Every call throws what the client throws: coordinator::client::RpcError
// with the server's status code (NOT_FOUND, DATA_LOSS, ...), ChecksumError
// for a download whose SHA-256 differs. No LibTorch.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::client {
class CoordinatorClient;
}

namespace xfer::trainer::train {

class JobCoordinator {
 public:
  virtual ~JobCoordinator() = default;

  // ---- runs and datasets
  virtual v1::Run get_run(const std::string& name) = 0;
  virtual v1::Run start_run(const v1::StartRunRequest& request) = 0;
  virtual v1::Run end_run(const std::string& name, v1::RunState state,
                          const std::string& message) = 0;
  virtual v1::DatasetInfo get_dataset_info(const std::string& dataset) = 0;
  virtual v1::ResolvedSplit resolve_split(const std::string& dataset, const std::string& spec) = 0;

  // ---- metrics and the report
  virtual void report(const v1::MetricsReport& report) = 0;
  virtual void put_report(const v1::RunReport& report) = 0;

  // ---- checkpoints
  // `phase` empty: among all of the run's checkpoints.
  virtual v1::CheckpointInfo best_checkpoint(const std::string& run, const std::string& phase) = 0;
  virtual v1::CheckpointInfo latest_checkpoint(const std::string& run,
                                               const std::string& phase) = 0;
  // In the coordinator's `order` (CoordinatorClient::list_checkpoints).
  virtual v1::ListCheckpointsResponse list_checkpoints(const std::string& run,
                                                       v1::CheckpointOrder order,
                                                       const std::string& phase) = 0;
  // Downloads checkpoint `id` to `file` atomically, verified against
  // `expected_sha256`; returns the metadata the server sent ahead of the
  // data, if it did.
  virtual std::optional<v1::CheckpointMeta> get_checkpoint(const std::string& id,
                                                           const std::filesystem::path& file,
                                                           const std::string& expected_sha256) = 0;
  virtual v1::CheckpointInfo put_checkpoint(const v1::CheckpointMeta& meta,
                                            std::string_view bytes) = 0;
};

// Forwards every call to `client`, which must outlive it.
class ClientJobCoordinator final : public JobCoordinator {
 public:
  explicit ClientJobCoordinator(coordinator::client::CoordinatorClient& client) : client_(client) {}

  v1::Run get_run(const std::string& name) override;
  v1::Run start_run(const v1::StartRunRequest& request) override;
  v1::Run end_run(const std::string& name, v1::RunState state, const std::string& message) override;
  v1::DatasetInfo get_dataset_info(const std::string& dataset) override;
  v1::ResolvedSplit resolve_split(const std::string& dataset, const std::string& spec) override;
  void report(const v1::MetricsReport& report) override;
  void put_report(const v1::RunReport& report) override;
  v1::CheckpointInfo best_checkpoint(const std::string& run, const std::string& phase) override;
  v1::CheckpointInfo latest_checkpoint(const std::string& run, const std::string& phase) override;
  v1::ListCheckpointsResponse list_checkpoints(const std::string& run, v1::CheckpointOrder order,
                                               const std::string& phase) override;
  std::optional<v1::CheckpointMeta> get_checkpoint(const std::string& id,
                                                   const std::filesystem::path& file,
                                                   const std::string& expected_sha256) override;
  v1::CheckpointInfo put_checkpoint(const v1::CheckpointMeta& meta,
                                    std::string_view bytes) override;

 private:
  coordinator::client::CoordinatorClient& client_;
};

}  // namespace xfer::trainer::train
