#include "coordinator/server/metrics_service.h"

#include <chrono>
#include <utility>

namespace xfer::coordinator::server {
namespace {

v1::SplitKind to_proto(metrics::SplitKind split) {
  switch (split) {
    case metrics::SplitKind::kTrain:
      return v1::SPLIT_KIND_TRAIN;
    case metrics::SplitKind::kValidation:
      return v1::SPLIT_KIND_VALIDATION;
    case metrics::SplitKind::kTest:
      return v1::SPLIT_KIND_TEST;
  }
  return v1::SPLIT_KIND_UNSPECIFIED;
}

grpc::Status unknown_run(const char* method, const std::string& run) {
  return {grpc::StatusCode::NOT_FOUND, std::string(method) + ": no run '" + run + "'"};
}

}  // namespace

v1::EpochMetrics to_proto(const metrics::EpochMetrics& epoch) {
  v1::EpochMetrics out;
  out.set_phase(epoch.phase);
  out.set_epoch(static_cast<std::int32_t>(epoch.epoch));
  out.set_split(to_proto(epoch.split));
  out.set_loss(epoch.loss);
  out.set_top1(epoch.top1);
  out.set_top3(epoch.top3);
  out.set_samples(epoch.samples);
  out.set_learning_rate(epoch.learning_rate);
  out.set_images_per_second(epoch.images_per_second);
  return out;
}

grpc::Status to_status(const metrics::MetricsError& error, const char* method) {
  const std::string message = std::string(method) + ": " + error.what();
  switch (error.code()) {
    case metrics::MetricsError::Code::kInvalidArgument:
      return {grpc::StatusCode::INVALID_ARGUMENT, message};
    case metrics::MetricsError::Code::kConflict:
      return {grpc::StatusCode::ALREADY_EXISTS, message};
    case metrics::MetricsError::Code::kFailedPrecondition:
      return {grpc::StatusCode::FAILED_PRECONDITION, message};
    case metrics::MetricsError::Code::kDataLoss:
      return {grpc::StatusCode::DATA_LOSS, message};
    case metrics::MetricsError::Code::kIo:
      return {grpc::StatusCode::UNAVAILABLE, message};
  }
  return {grpc::StatusCode::INTERNAL, message};
}

MetricsServiceImpl::MetricsServiceImpl(metrics::MetricsStore& store, const RunRegistry& runs,
                                       RecentErrors& errors, const Authorizer& auth,
                                       ReportObserver on_report)
    : store_(store), runs_(runs), errors_(errors), auth_(auth), on_report_(std::move(on_report)) {}

grpc::Status MetricsServiceImpl::Report(grpc::ServerContext* context,
                                        const v1::MetricsReport* request, v1::ReportAck* response) {
  if (auto status = auth_.check(*context, Role::kAdmin, "Report"); !status.ok()) return status;
  const auto run = runs_.get(request->run());
  if (!run) return unknown_run("Report", request->run());
  if (request->rank() < 0 || request->rank() >= run->world_size()) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "Report: rank " + std::to_string(request->rank()) + " is outside run '" + run->name() +
                "' of world size " + std::to_string(run->world_size()) + " (expected 0.." +
                std::to_string(run->world_size() - 1) + ")"};
  }
  metrics::RankReport report;
  report.run = request->run();
  report.rank = request->rank();
  report.world_size = run->world_size();
  report.phase = request->phase();
  report.epoch = request->epoch();
  report.step = request->step();
  switch (request->split()) {
    case v1::SPLIT_KIND_TRAIN:
      report.split = metrics::SplitKind::kTrain;
      break;
    case v1::SPLIT_KIND_VALIDATION:
      report.split = metrics::SplitKind::kValidation;
      break;
    case v1::SPLIT_KIND_TEST:
      report.split = metrics::SplitKind::kTest;
      break;
    default:
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "Report: split must be SPLIT_KIND_TRAIN, _VALIDATION or _TEST"};
  }
  report.loss_sum = request->loss_sum();
  report.correct_top1 = request->correct_top1();
  report.correct_top3 = request->correct_top3();
  report.samples = request->samples();
  report.images_per_second = request->images_per_second();
  report.data_wait_ms = request->data_wait_ms();
  report.comm_ms = request->comm_ms();
  report.steps_in_epoch = request->steps_in_epoch();
  report.learning_rate = request->learning_rate();
  report.end_of_epoch = request->end_of_epoch();
  try {
    const metrics::ReportResult result = store_.report(report);
    response->set_duplicate(result.duplicate);
    if (on_report_) notify(report, result);
  } catch (const metrics::MetricsError& e) {
    if (e.code() == metrics::MetricsError::Code::kIo ||
        e.code() == metrics::MetricsError::Code::kDataLoss) {
      errors_.add(std::string("metrics history: ") + e.what());
    }
    return to_status(e, "Report");
  }
  return grpc::Status::OK;
}

void MetricsServiceImpl::notify(const metrics::RankReport& report,
                                const metrics::ReportResult& result) {
  try {
    on_report_(report, result);
  } catch (const std::exception& e) {
    errors_.add("metrics observer (" + metrics::describe_key(report) + "): " + e.what());
  }
}

grpc::Status MetricsServiceImpl::Watch(grpc::ServerContext* context,
                                       const v1::WatchRequest* request,
                                       grpc::ServerWriter<v1::MetricsEvent>* writer) {
  if (auto status = auth_.check(*context, Role::kRead, "Watch"); !status.ok()) return status;
  if (!runs_.get(request->run())) return unknown_run("Watch", request->run());
  if (request->from_sequence() < 0) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "Watch: from_sequence " + std::to_string(request->from_sequence()) +
                " is negative (expected 0 for the beginning, or a sequence number)"};
  }
  // Slow and stuck watchers. Each stream reads the run's shared event log by
  // cursor (metrics_store.h): nothing is queued per watcher beyond the batch
  // in hand (at most 256 events), and the store's lock is not held while
  // writing. A client that stops reading fills its HTTP/2 flow-control window;
  // Write() then blocks this handler's thread only, until the client reads,
  // cancels, or its deadline passes, or the server shuts down. Reports go on
  // meanwhile, and the client, reading again, gets every event in order
  // (tests/coordinator/service_slow_watcher_test.cc).
  metrics::Watcher watcher(store_, request->run(), request->from_sequence());
  // After shutdown the store answers at once: stop instead of spinning; the
  // client resumes from its last sequence on a new server.
  while (!context->IsCancelled() && !store_.is_shut_down()) {
    const auto events = watcher.next(std::chrono::milliseconds(500));
    for (const auto& event : events) {
      v1::MetricsEvent out;
      out.set_sequence(event.sequence);
      *out.mutable_epoch() = to_proto(event.metrics);
      if (!writer->Write(out)) return grpc::Status::OK;  // the watcher went away
    }
    if (!events.empty()) continue;
    // Caught up: stop once the run has ended (after its last event).
    const auto run = runs_.get(request->run());
    if (run && run->state() != v1::RUN_STATE_RUNNING &&
        watcher.cursor() > store_.last_sequence(request->run())) {
      v1::MetricsEvent last;
      *last.mutable_run() = *run;
      writer->Write(last);
      return grpc::Status::OK;
    }
  }
  return grpc::Status::OK;
}

grpc::Status MetricsServiceImpl::History(grpc::ServerContext* context,
                                         const v1::HistoryRequest* request,
                                         v1::HistoryResponse* response) {
  if (auto status = auth_.check(*context, Role::kRead, "History"); !status.ok()) return status;
  if (!runs_.get(request->run())) return unknown_run("History", request->run());
  for (const auto& epoch : store_.history(request->run()))
    *response->add_epochs() = to_proto(epoch);
  return grpc::Status::OK;
}

grpc::Status MetricsServiceImpl::Ranks(grpc::ServerContext* context,
                                       const v1::RanksRequest* request,
                                       v1::RanksResponse* response) {
  if (auto status = auth_.check(*context, Role::kRead, "Ranks"); !status.ok()) return status;
  if (!runs_.get(request->run())) return unknown_run("Ranks", request->run());
  for (const auto& rank : store_.ranks(request->run())) {
    auto* out = response->add_ranks();
    out->set_rank(rank.rank);
    out->set_phase(rank.phase);
    out->set_epoch(static_cast<std::int32_t>(rank.epoch));
    out->set_step(rank.step);
    out->set_images_per_second(rank.images_per_second);
    out->set_data_wait_ms(rank.data_wait_ms);
    out->set_comm_ms(rank.comm_ms);
    out->set_updated_unix_ms(rank.updated_unix_ms);
    out->set_split(to_proto(rank.split));
    out->set_steps_in_epoch(rank.steps_in_epoch);
  }
  return grpc::Status::OK;
}

}  // namespace xfer::coordinator::server
