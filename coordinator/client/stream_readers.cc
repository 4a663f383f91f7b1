#include <algorithm>
#include <utility>

#include "coordinator/client/connection.h"
#include "coordinator/client/coordinator_client.h"

namespace xfer::coordinator::client {

namespace {

// Streams are reads of a position-addressed sequence: repeating one is safe.
constexpr auto kStreamIdempotency = Idempotency::kIdempotent;

}  // namespace

// ---------------------------------------------------------------- ShardReader

ShardReader::ShardReader(std::shared_ptr<detail::Connection> connection,
                         v1::StreamShardRequest request)
    : connection_(std::move(connection)),
      request_(std::move(request)),
      retry_(connection_->new_retry_state()),
      sleep_(std::make_unique<detail::CancellableSleep>()),
      next_index_(request_.start_batch()) {}

ShardReader::~ShardReader() {
  cancel();
  // The stream must be finished before its context goes: drain and Finish.
  if (stream_) {
    v1::ShardBatch ignored;
    while (stream_->Read(&ignored)) {
    }
    stream_->Finish().ok();
  }
}

void ShardReader::open() {
  v1::StreamShardRequest request = request_;
  request.set_start_batch(next_index_);
  auto context = std::make_unique<grpc::ClientContext>();
  connection_->prepare(*context, connection_->options().stream_deadline);
  std::lock_guard<std::mutex> lock(context_mutex_);
  context_ = std::move(context);
  stream_ = connection_->data().StreamShard(context_.get(), request);
}

std::optional<v1::ShardBatch> ShardReader::next() {
  while (!done_) {
    if (sleep_->cancelled()) break;
    if (request_.end_batch() > 0 && next_index_ >= request_.end_batch()) {
      done_ = true;  // all that was asked for came (the destructor finishes the call)
      break;
    }
    if (!stream_) open();
    v1::ShardBatch batch;
    if (stream_->Read(&batch)) {
      if (batch.batch_index() != next_index_) {
        cancel();
        throw RpcError(grpc::StatusCode::INTERNAL, "StreamShard", connection_->address(),
                       "the coordinator sent batch " + std::to_string(batch.batch_index()) +
                           " where batch " + std::to_string(next_index_) +
                           " was expected (protocol error)");
      }
      ++next_index_;
      num_batches_ = batch.num_batches();
      retry_.on_progress();
      return batch;
    }
    const grpc::Status status = stream_->Finish();
    stream_.reset();
    if (sleep_->cancelled()) break;
    if (status.ok()) {
      // A stream asked to stop early (end_batch) ends there; any other ends
      // with the shard.
      const std::int64_t end = request_.end_batch() > 0 && num_batches_
                                   ? std::min(request_.end_batch(), *num_batches_)
                                   : num_batches_.value_or(0);
      if (num_batches_ && next_index_ < end) {
        throw RpcError(grpc::StatusCode::INTERNAL, "StreamShard", connection_->address(),
                       "the stream ended after batch " + std::to_string(next_index_ - 1) +
                           " where it should have ended after batch " + std::to_string(end - 1) +
                           " (shard of " + std::to_string(*num_batches_) +
                           " batches; protocol error)");
      }
      done_ = true;
      break;
    }
    const auto delay = retry_.on_failure(status.error_code(), kStreamIdempotency);
    if (!delay) {
      throw RpcError(status.error_code(), "StreamShard", connection_->address(),
                     status.error_message(), retry_.failed_attempts());
    }
    connection_->log_retry("StreamShard", status, *delay, retry_.failed_attempts());
    if (!sleep_->sleep_for(*delay)) break;
    ++reopens_;
  }
  return std::nullopt;
}

void ShardReader::cancel() {
  sleep_->cancel();
  std::lock_guard<std::mutex> lock(context_mutex_);
  if (context_) context_->TryCancel();
}

// ---------------------------------------------------------------- WatchReader

WatchReader::WatchReader(std::shared_ptr<detail::Connection> connection, std::string run,
                         std::int64_t from_sequence)
    : connection_(std::move(connection)),
      run_(std::move(run)),
      retry_(connection_->new_retry_state()),
      sleep_(std::make_unique<detail::CancellableSleep>()),
      last_sequence_(from_sequence > 0 ? from_sequence - 1 : 0) {}

WatchReader::~WatchReader() {
  cancel();
  if (stream_) {
    v1::MetricsEvent ignored;
    while (stream_->Read(&ignored)) {
    }
    stream_->Finish().ok();
  }
}

void WatchReader::open() {
  v1::WatchRequest request;
  request.set_run(run_);
  request.set_from_sequence(last_sequence_ + 1);
  auto context = std::make_unique<grpc::ClientContext>();
  connection_->prepare(*context, connection_->options().stream_deadline);
  std::lock_guard<std::mutex> lock(context_mutex_);
  context_ = std::move(context);
  stream_ = connection_->metrics().Watch(context_.get(), request);
}

std::optional<v1::MetricsEvent> WatchReader::next() {
  while (!done_) {
    if (sleep_->cancelled()) break;
    if (!stream_) open();
    v1::MetricsEvent event;
    if (stream_->Read(&event)) {
      retry_.on_progress();
      if (event.has_run()) {
        run_ended_ = event.run().state() != v1::RUN_STATE_RUNNING &&
                     event.run().state() != v1::RUN_STATE_UNSPECIFIED;
      }
      if (event.sequence() > 0) {
        // A resumed stream never repeats an event, but be safe against a
        // server that starts a little early.
        if (event.sequence() <= last_sequence_) continue;
        last_sequence_ = event.sequence();
      }
      return event;
    }
    const grpc::Status status = stream_->Finish();
    stream_.reset();
    if (sleep_->cancelled()) break;
    if (status.ok() && run_ended_) {
      done_ = true;
      break;
    }
    // Closed without the run's final state (a server going away closes its
    // streams OK too): resume like any transient failure.
    const grpc::Status effective =
        status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "the Watch stream closed before the run ended")
                    : status;
    const auto delay = retry_.on_failure(effective.error_code(), kStreamIdempotency);
    if (!delay) {
      throw RpcError(effective.error_code(), "Watch", connection_->address(),
                     effective.error_message(), retry_.failed_attempts());
    }
    connection_->log_retry("Watch", effective, *delay, retry_.failed_attempts());
    if (!sleep_->sleep_for(*delay)) break;
    ++reopens_;
  }
  return std::nullopt;
}

void WatchReader::cancel() {
  sleep_->cancel();
  std::lock_guard<std::mutex> lock(context_mutex_);
  if (context_) context_->TryCancel();
}

}  // namespace xfer::coordinator::client
