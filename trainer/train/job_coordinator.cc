#include "trainer/train/job_coordinator.h"

#include "coordinator/client/coordinator_client.h"

namespace xfer::trainer::train {

v1::Run ClientJobCoordinator::get_run(const std::string& name) { return client_.get_run(name); }

v1::Run ClientJobCoordinator::start_run(const v1::StartRunRequest& request) {
  return client_.start_run(request);
}

v1::Run ClientJobCoordinator::end_run(const std::string& name, v1::RunState state,
                                      const std::string& message) {
  return client_.end_run(name, state, message);
}

v1::DatasetInfo ClientJobCoordinator::get_dataset_info(const std::string& dataset) {
  return client_.get_dataset_info(dataset);
}

v1::ResolvedSplit ClientJobCoordinator::resolve_split(const std::string& dataset,
                                                      const std::string& spec) {
  return client_.resolve_split(dataset, spec);
}

void ClientJobCoordinator::report(const v1::MetricsReport& report) { client_.report(report); }

void ClientJobCoordinator::put_report(const v1::RunReport& report) { client_.put_report(report); }

v1::CheckpointInfo ClientJobCoordinator::best_checkpoint(const std::string& run,
                                                         const std::string& phase) {
  return client_.best_checkpoint(run, phase);
}

v1::CheckpointInfo ClientJobCoordinator::latest_checkpoint(const std::string& run,
                                                           const std::string& phase) {
  return client_.latest_checkpoint(run, phase);
}

v1::ListCheckpointsResponse ClientJobCoordinator::list_checkpoints(const std::string& run,
                                                                   v1::CheckpointOrder order,
                                                                   const std::string& phase) {
  return client_.list_checkpoints(run, order, phase);
}

std::optional<v1::CheckpointMeta> ClientJobCoordinator::get_checkpoint(
    const std::string& id, const std::filesystem::path& file, const std::string& expected_sha256) {
  return client_.get_checkpoint(id, file, expected_sha256).meta;
}

v1::CheckpointInfo ClientJobCoordinator::put_checkpoint(const v1::CheckpointMeta& meta,
                                                        std::string_view bytes) {
  return client_.put_checkpoint_bytes(meta, bytes);
}

}  // namespace xfer::trainer::train
