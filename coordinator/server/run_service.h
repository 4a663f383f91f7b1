// RunService: start, inspect and end runs; the one-screen status.
#pragma once

#include "coordinator/metrics/metrics_store.h"
#include "coordinator/server/auth.h"
#include "coordinator/server/dataset_registry.h"
#include "coordinator/server/recent_errors.h"
#include "coordinator/server/report_store.h"
#include "coordinator/server/run_registry.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace xfer::coordinator::server {

class RunServiceImpl final : public v1::RunService::Service {
 public:
  // Every argument must outlive the service.
  RunServiceImpl(RunRegistry& runs, const DatasetRegistry& datasets, metrics::MetricsStore& metrics,
                 ReportStore& reports, RecentErrors& errors, const Authorizer& auth);

  grpc::Status StartRun(grpc::ServerContext* context, const v1::StartRunRequest* request,
                        v1::Run* response) override;
  grpc::Status GetRun(grpc::ServerContext* context, const v1::GetRunRequest* request,
                      v1::Run* response) override;
  grpc::Status ListRuns(grpc::ServerContext* context, const v1::ListRunsRequest* request,
                        v1::ListRunsResponse* response) override;
  grpc::Status EndRun(grpc::ServerContext* context, const v1::EndRunRequest* request,
                      v1::Run* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::GetStatusRequest* request,
                         v1::StatusResponse* response) override;
  // Admin role. NOT_FOUND for an unknown run, INVALID_ARGUMENT (naming the
  // field) for an inconsistent report, UNAVAILABLE when it cannot be written.
  grpc::Status PutReport(grpc::ServerContext* context, const v1::RunReport* request,
                         v1::PutReportResponse* response) override;
  // Read role. NOT_FOUND for an unknown run or one without a report,
  // DATA_LOSS (naming the file) for a damaged report file.
  grpc::Status GetReport(grpc::ServerContext* context, const v1::GetReportRequest* request,
                         v1::RunReport* response) override;
  // Admin role. Records that a rank of the run's current attempt is alive
  // (RunRegistry::heartbeat has the rules and codes); the answer carries the
  // run's state, attempt and message, so a rank whose run was failed or
  // resumed by another attempt learns it.
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;

 private:
  RunRegistry& runs_;
  const DatasetRegistry& datasets_;
  metrics::MetricsStore& metrics_;
  ReportStore& reports_;
  RecentErrors& errors_;
  const Authorizer& auth_;
};

// Maps a registry result to a gRPC status, filling `response` on success.
grpc::Status to_status(std::variant<v1::Run, RunError> result, v1::Run* response);

}  // namespace xfer::coordinator::server
