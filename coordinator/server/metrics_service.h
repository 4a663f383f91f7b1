// MetricsService: rank reports in, aggregated epochs and the per-rank view
// out (see metrics/metrics_store.h for the rules).
#pragma once

#include <functional>

#include "coordinator/metrics/metrics_store.h"
#include "coordinator/server/auth.h"
#include "coordinator/server/recent_errors.h"
#include "coordinator/server/run_registry.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace xfer::coordinator::server {

class MetricsServiceImpl final : public v1::MetricsService::Service {
 public:
  // Called after each report the store accepted (duplicates included), with
  // what the store answered: how the TensorBoard writers learn of completed
  // epochs. It runs on the reporting thread, outside the store's lock; what
  // it throws is listed in the recent errors and never fails the report.
  using ReportObserver =
      std::function<void(const metrics::RankReport&, const metrics::ReportResult&)>;

  // Every argument must outlive the service.
  MetricsServiceImpl(metrics::MetricsStore& store, const RunRegistry& runs, RecentErrors& errors,
                     const Authorizer& auth, ReportObserver on_report = nullptr);

  grpc::Status Report(grpc::ServerContext* context, const v1::MetricsReport* request,
                      v1::ReportAck* response) override;
  grpc::Status Watch(grpc::ServerContext* context, const v1::WatchRequest* request,
                     grpc::ServerWriter<v1::MetricsEvent>* writer) override;
  grpc::Status History(grpc::ServerContext* context, const v1::HistoryRequest* request,
                       v1::HistoryResponse* response) override;
  grpc::Status Ranks(grpc::ServerContext* context, const v1::RanksRequest* request,
                     v1::RanksResponse* response) override;

 private:
  void notify(const metrics::RankReport& report, const metrics::ReportResult& result);

  metrics::MetricsStore& store_;
  const RunRegistry& runs_;
  RecentErrors& errors_;
  const Authorizer& auth_;
  const ReportObserver on_report_;
};

// Conversions between the store's structs and the wire messages.
v1::EpochMetrics to_proto(const metrics::EpochMetrics& epoch);
grpc::Status to_status(const metrics::MetricsError& error, const char* method);

}  // namespace xfer::coordinator::server
