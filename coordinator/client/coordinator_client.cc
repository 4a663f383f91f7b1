#include "coordinator/client/coordinator_client.h"

#include <random>
#include <thread>

#include "coordinator/client/connection.h"

namespace xfer::coordinator::client {

namespace {

// One unary call with the retry rule of retry.h. `attempt` makes one call on
// a prepared context and fills `response`.
template <typename Response, typename Attempt>
Response call_unary(detail::Connection& connection, const char* method, Idempotency idempotency,
                    Attempt&& attempt) {
  RetryState retry = connection.new_retry_state();
  for (;;) {
    grpc::ClientContext context;
    connection.prepare(context, connection.options().call_deadline);
    Response response;
    const grpc::Status status = attempt(&context, &response);
    if (status.ok()) return response;
    const auto delay = retry.on_failure(status.error_code(), idempotency);
    if (!delay) {
      throw RpcError(status.error_code(), method, connection.address(), status.error_message(),
                     retry.failed_attempts());
    }
    connection.log_retry(method, status, *delay, retry.failed_attempts());
    std::this_thread::sleep_for(*delay);
  }
}

// One unary RPC, `rpc` of `stub` (a generated method such as
// &v1::RunService::Stub::GetRun), with the retry rule of call_unary.
template <typename Stub, typename Request, typename Response>
Response call(detail::Connection& connection, const char* method, Idempotency idempotency,
              Stub& stub,
              grpc::Status (Stub::*rpc)(grpc::ClientContext*, const Request&, Response*),
              const Request& request) {
  return call_unary<Response>(connection, method, idempotency,
                              [&](grpc::ClientContext* context, Response* response) {
                                return (stub.*rpc)(context, request, response);
                              });
}

constexpr auto kIdempotent = Idempotency::kIdempotent;
constexpr auto kNotIdempotent = Idempotency::kNotIdempotent;

}  // namespace

CoordinatorClient::CoordinatorClient(ClientOptions options)
    : CoordinatorClient(std::move(options), nullptr) {}

CoordinatorClient::CoordinatorClient(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : connection_(std::make_shared<detail::Connection>(std::move(options), std::move(channel))) {}

CoordinatorClient::~CoordinatorClient() = default;

const ClientOptions& CoordinatorClient::options() const { return connection_->options(); }

// ---------------------------------------------------------------- data

v1::DatasetInfo CoordinatorClient::get_dataset_info(const std::string& dataset) {
  v1::GetDatasetInfoRequest request;
  request.set_dataset(dataset);
  return call(*connection_, "GetDatasetInfo", kIdempotent, connection_->data(),
              &v1::DataService::Stub::GetDatasetInfo, request);
}

v1::ResolvedSplit CoordinatorClient::resolve_split(const std::string& dataset,
                                                   const std::string& spec) {
  v1::ResolveSplitRequest request;
  request.set_dataset(dataset);
  request.set_spec(spec);
  return call(*connection_, "ResolveSplit", kIdempotent, connection_->data(),
              &v1::DataService::Stub::ResolveSplit, request);
}

std::unique_ptr<ShardReader> CoordinatorClient::stream_shard(
    const v1::StreamShardRequest& request) {
  return std::make_unique<ShardReader>(connection_, request);
}

// ---------------------------------------------------------------- runs

v1::Run CoordinatorClient::start_run(const v1::StartRunRequest& request) {
  return call(*connection_, "StartRun", kNotIdempotent, connection_->runs(),
              &v1::RunService::Stub::StartRun, request);
}

v1::Run CoordinatorClient::get_run(const std::string& name) {
  v1::GetRunRequest request;
  request.set_name(name);
  return call(*connection_, "GetRun", kIdempotent, connection_->runs(),
              &v1::RunService::Stub::GetRun, request);
}

v1::ListRunsResponse CoordinatorClient::list_runs() {
  const v1::ListRunsRequest request;
  return call(*connection_, "ListRuns", kIdempotent, connection_->runs(),
              &v1::RunService::Stub::ListRuns, request);
}

v1::Run CoordinatorClient::end_run(const std::string& name, v1::RunState state,
                                   const std::string& message) {
  v1::EndRunRequest request;
  request.set_name(name);
  request.set_state(state);
  request.set_message(message);
  return call(*connection_, "EndRun", kIdempotent, connection_->runs(),
              &v1::RunService::Stub::EndRun, request);
}

v1::StatusResponse CoordinatorClient::get_status(const std::string& run) {
  v1::GetStatusRequest request;
  request.set_run(run);
  return call(*connection_, "GetStatus", kIdempotent, connection_->runs(),
              &v1::RunService::Stub::GetStatus, request);
}

v1::PutReportResponse CoordinatorClient::put_report(const v1::RunReport& report) {
  return call(*connection_, "PutReport", kIdempotent, connection_->runs(),
              &v1::RunService::Stub::PutReport, report);
}

v1::RunReport CoordinatorClient::get_report(const std::string& run) {
  v1::GetReportRequest request;
  request.set_run(run);
  return call(*connection_, "GetReport", kIdempotent, connection_->runs(),
              &v1::RunService::Stub::GetReport, request);
}

v1::HeartbeatResponse CoordinatorClient::heartbeat(const v1::HeartbeatRequest& request,
                                                   std::chrono::milliseconds deadline) {
  grpc::ClientContext context;
  connection_->prepare(context, deadline);
  v1::HeartbeatResponse response;
  const grpc::Status status = connection_->runs().Heartbeat(&context, request, &response);
  if (!status.ok()) {
    throw RpcError(status.error_code(), "Heartbeat", connection_->address(),
                   status.error_message());
  }
  return response;
}

// ---------------------------------------------------------------- metrics

v1::ReportAck CoordinatorClient::report(const v1::MetricsReport& report) {
  return call(*connection_, "Report", kIdempotent, connection_->metrics(),
              &v1::MetricsService::Stub::Report, report);
}

std::unique_ptr<WatchReader> CoordinatorClient::watch(const std::string& run,
                                                      std::int64_t from_sequence) {
  return std::make_unique<WatchReader>(connection_, run, from_sequence);
}

v1::HistoryResponse CoordinatorClient::history(const std::string& run) {
  v1::HistoryRequest request;
  request.set_run(run);
  return call(*connection_, "History", kIdempotent, connection_->metrics(),
              &v1::MetricsService::Stub::History, request);
}

v1::RanksResponse CoordinatorClient::ranks(const std::string& run) {
  v1::RanksRequest request;
  request.set_run(run);
  return call(*connection_, "Ranks", kIdempotent, connection_->metrics(),
              &v1::MetricsService::Stub::Ranks, request);
}

// ---------------------------------------------------------------- checkpoints
// (Put and Get are in checkpoint_transfer.cc.)

v1::ListCheckpointsResponse CoordinatorClient::list_checkpoints(const std::string& run,
                                                                v1::CheckpointOrder order,
                                                                const std::string& phase) {
  v1::ListCheckpointsRequest request;
  request.set_run(run);
  request.set_order(order);
  request.set_phase(phase);
  return call(*connection_, "List", kIdempotent, connection_->checkpoints(),
              &v1::CheckpointService::Stub::List, request);
}

v1::CheckpointInfo CoordinatorClient::best_checkpoint(const std::string& run,
                                                      const std::string& phase) {
  v1::RunCheckpointRequest request;
  request.set_run(run);
  request.set_phase(phase);
  return call(*connection_, "Best", kIdempotent, connection_->checkpoints(),
              &v1::CheckpointService::Stub::Best, request);
}

v1::CheckpointInfo CoordinatorClient::latest_checkpoint(const std::string& run,
                                                        const std::string& phase) {
  v1::RunCheckpointRequest request;
  request.set_run(run);
  request.set_phase(phase);
  return call(*connection_, "Latest", kIdempotent, connection_->checkpoints(),
              &v1::CheckpointService::Stub::Latest, request);
}

void CoordinatorClient::delete_checkpoint(const std::string& id) {
  v1::DeleteCheckpointRequest request;
  request.set_id(id);
  call(*connection_, "Delete", kNotIdempotent, connection_->checkpoints(),
       &v1::CheckpointService::Stub::Delete, request);
}

std::string new_upload_id() {
  std::random_device device;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 4; ++i) {
    std::uint32_t word = device();
    for (int j = 0; j < 8; ++j, word >>= 4) id.push_back(kHex[word & 0xf]);
  }
  return id;
}

}  // namespace xfer::coordinator::client
