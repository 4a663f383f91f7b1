#include "coordinator/server/run_service.h"

#include <spdlog/spdlog.h>

#include "xfer/config.h"

namespace xfer::coordinator::server {

grpc::Status to_status(std::variant<v1::Run, RunError> result, v1::Run* response) {
  if (auto* error = std::get_if<RunError>(&result)) {
    return {static_cast<grpc::StatusCode>(error->code), error->message};
  }
  *response = std::get<v1::Run>(std::move(result));
  return grpc::Status::OK;
}

RunServiceImpl::RunServiceImpl(RunRegistry& runs, const DatasetRegistry& datasets,
                               metrics::MetricsStore& metrics, ReportStore& reports,
                               RecentErrors& errors, const Authorizer& auth)
    : runs_(runs),
      datasets_(datasets),
      metrics_(metrics),
      reports_(reports),
      errors_(errors),
      auth_(auth) {}

grpc::Status RunServiceImpl::StartRun(grpc::ServerContext* context,
                                      const v1::StartRunRequest* request, v1::Run* response) {
  if (auto status = auth_.check(*context, Role::kAdmin, "StartRun"); !status.ok()) return status;
  if (datasets_.find(request->dataset()) == nullptr) {
    return {grpc::StatusCode::NOT_FOUND, "StartRun: no dataset '" + request->dataset() +
                                             "' (served: " + datasets_.names_joined() + ")"};
  }
  const grpc::Status status = to_status(runs_.start(*request), response);
  if (status.ok() && response->attempt() > 1) {
    // A resumed job re-runs the steps after its checkpoint: the crashed
    // attempt's partial epochs are dropped so those steps count afresh.
    try {
      const std::size_t dropped = metrics_.discard_incomplete(request->name());
      if (dropped > 0) {
        spdlog::info("run {}: dropped {} incomplete metric groups of the previous attempt",
                     request->name(), dropped);
      }
    } catch (const metrics::MetricsError& e) {
      errors_.add("run " + request->name() + ": " + e.what());
      return {grpc::StatusCode::UNAVAILABLE, std::string("StartRun: ") + e.what()};
    }
  }
  return status;
}

grpc::Status RunServiceImpl::GetRun(grpc::ServerContext* context, const v1::GetRunRequest* request,
                                    v1::Run* response) {
  if (auto status = auth_.check(*context, Role::kRead, "GetRun"); !status.ok()) return status;
  auto run = runs_.get(request->name());
  if (!run) return {grpc::StatusCode::NOT_FOUND, "GetRun: no run '" + request->name() + "'"};
  *response = std::move(*run);
  return grpc::Status::OK;
}

grpc::Status RunServiceImpl::ListRuns(grpc::ServerContext* context, const v1::ListRunsRequest*,
                                      v1::ListRunsResponse* response) {
  if (auto status = auth_.check(*context, Role::kRead, "ListRuns"); !status.ok()) return status;
  for (auto& run : runs_.list()) *response->add_runs() = std::move(run);
  return grpc::Status::OK;
}

grpc::Status RunServiceImpl::EndRun(grpc::ServerContext* context, const v1::EndRunRequest* request,
                                    v1::Run* response) {
  if (auto status = auth_.check(*context, Role::kAdmin, "EndRun"); !status.ok()) return status;
  return to_status(runs_.end(*request), response);
}

grpc::Status RunServiceImpl::GetStatus(grpc::ServerContext* context,
                                       const v1::GetStatusRequest* request,
                                       v1::StatusResponse* response) {
  if (auto status = auth_.check(*context, Role::kRead, "GetStatus"); !status.ok()) return status;
  if (!request->run().empty()) {
    auto run = runs_.get(request->run());
    if (!run) return {grpc::StatusCode::NOT_FOUND, "GetStatus: no run '" + request->run() + "'"};
    *response->add_runs() = std::move(*run);
  } else {
    for (auto& run : runs_.list()) *response->add_runs() = std::move(run);
  }
  for (const auto& name : datasets_.names()) response->add_datasets(name);
  for (const auto& error : errors_.list()) response->add_errors(error);
  response->set_version(XFER_VERSION);
  return grpc::Status::OK;
}

grpc::Status RunServiceImpl::PutReport(grpc::ServerContext* context, const v1::RunReport* request,
                                       v1::PutReportResponse* response) {
  if (auto status = auth_.check(*context, Role::kAdmin, "PutReport"); !status.ok()) return status;
  if (!runs_.get(request->run())) {
    return {grpc::StatusCode::NOT_FOUND, "PutReport: no run '" + request->run() + "'"};
  }
  if (auto problem = invalid_report(*request)) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "PutReport: report of run '" + request->run() + "': " + *problem};
  }
  try {
    response->set_replaced(reports_.put(*request));
  } catch (const common::FilesystemError& e) {
    errors_.add("run " + request->run() + ": report not stored: " + e.what());
    return {grpc::StatusCode::UNAVAILABLE, std::string("PutReport: ") + e.what()};
  }
  spdlog::info("run {}: report {} ({} classes, {} samples of '{}', loss {:.4f}, top-1 {:.4f})",
               request->run(), response->replaced() ? "replaced" : "stored", request->num_classes(),
               request->samples(), request->split(), request->loss(), request->top1());
  return grpc::Status::OK;
}

grpc::Status RunServiceImpl::GetReport(grpc::ServerContext* context,
                                       const v1::GetReportRequest* request,
                                       v1::RunReport* response) {
  if (auto status = auth_.check(*context, Role::kRead, "GetReport"); !status.ok()) return status;
  if (!runs_.get(request->run())) {
    return {grpc::StatusCode::NOT_FOUND, "GetReport: no run '" + request->run() + "'"};
  }
  try {
    auto report = reports_.get(request->run());
    if (!report) {
      return {grpc::StatusCode::NOT_FOUND,
              "GetReport: run '" + request->run() + "' has no report yet"};
    }
    *response = std::move(*report);
  } catch (const DamagedReportError& e) {
    errors_.add(std::string("GetReport: ") + e.what());
    return {grpc::StatusCode::DATA_LOSS, std::string("GetReport: ") + e.what()};
  }
  return grpc::Status::OK;
}

grpc::Status RunServiceImpl::Heartbeat(grpc::ServerContext* context,
                                       const v1::HeartbeatRequest* request,
                                       v1::HeartbeatResponse* response) {
  if (auto status = auth_.check(*context, Role::kAdmin, "Heartbeat"); !status.ok()) return status;
  auto result = runs_.heartbeat(*request);
  if (auto* error = std::get_if<RunError>(&result)) {
    return {static_cast<grpc::StatusCode>(error->code), error->message};
  }
  *response = std::get<v1::HeartbeatResponse>(std::move(result));
  return grpc::Status::OK;
}

}  // namespace xfer::coordinator::server
