#include "coordinator/server/checkpoint_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <optional>

namespace xfer::coordinator::server {
namespace {

namespace ck = checkpoint;

v1::MetricDirection to_proto(ck::Direction direction) {
  return direction == ck::Direction::kMaximize ? v1::METRIC_DIRECTION_MAXIMIZE
                                               : v1::METRIC_DIRECTION_MINIMIZE;
}

// The store's order for a List request; nullopt for a value this build
// does not know (a newer client's).
std::optional<ck::ListOrder> list_order(v1::CheckpointOrder order) {
  switch (order) {
    case v1::CHECKPOINT_ORDER_UNSPECIFIED:
      return ck::ListOrder::kEarliestFirst;
    case v1::CHECKPOINT_ORDER_BEST_FIRST:
      return ck::ListOrder::kBestFirst;
    case v1::CHECKPOINT_ORDER_LATEST_FIRST:
      return ck::ListOrder::kLatestFirst;
    default:
      return std::nullopt;
  }
}

grpc::Status unknown_run(const char* method, const std::string& run) {
  return {grpc::StatusCode::NOT_FOUND, std::string(method) + ": no run '" + run + "'"};
}

// The --test-crash-in-put hook: dies the way a power cut or the OOM killer
// would end the process, in the middle of an upload (its temporary file on
// disk, nothing committed), with no chance to clean up.
[[noreturn]] void crash_for_test(int put_number, const std::string& id, const std::string& run,
                                 std::int64_t received) {
  spdlog::warn(
      "test hook --test-crash-in-put {}: killing the coordinator (SIGKILL) during the upload of "
      "checkpoint {} of run '{}' after {} bytes",
      put_number, id, run, received);
  spdlog::default_logger()->flush();
  std::raise(SIGKILL);
  std::abort();  // not reached: SIGKILL cannot be caught
}

}  // namespace

v1::CheckpointInfo to_proto(const ck::CheckpointRecord& record) {
  v1::CheckpointInfo info;
  info.set_id(record.id);
  info.set_sha256(record.sha256_hex);
  info.set_size_bytes(record.size_bytes);
  info.set_created_unix_ms(record.created_unix_ms);
  v1::CheckpointMeta* meta = info.mutable_meta();
  meta->set_run(record.meta.run);
  meta->set_phase(record.meta.phase);
  meta->set_epoch(static_cast<std::int32_t>(record.meta.epoch));
  meta->set_step(record.meta.step);
  meta->set_metric_name(record.meta.metric_name);
  meta->set_metric_value(record.meta.metric_value);
  meta->set_direction(to_proto(record.meta.direction));
  meta->set_upload_id(record.meta.upload_id);
  meta->set_total_bytes(record.size_bytes);
  meta->set_sha256(record.sha256_hex);
  return info;
}

CheckpointServiceImpl::CheckpointServiceImpl(ck::CheckpointStore& store, const RunRegistry& runs,
                                             RecentErrors& errors, const Authorizer& auth,
                                             std::int64_t chunk_bytes, int crash_in_put)
    : store_(store),
      runs_(runs),
      errors_(errors),
      auth_(auth),
      chunk_bytes_(chunk_bytes),
      crash_in_put_(crash_in_put) {}

grpc::Status CheckpointServiceImpl::status_of(const ck::CheckpointError& error,
                                              const char* method) {
  const std::string message = std::string(method) + ": " + error.what();
  switch (error.code()) {
    case ck::CheckpointError::Code::kInvalidArgument:
      return {grpc::StatusCode::INVALID_ARGUMENT, message};
    case ck::CheckpointError::Code::kNotFound:
      return {grpc::StatusCode::NOT_FOUND, message};
    case ck::CheckpointError::Code::kDataLoss:
      errors_.add(message);
      return {grpc::StatusCode::DATA_LOSS, message};
    case ck::CheckpointError::Code::kIo:
      errors_.add(message);
      // A full disk is final for this upload: the client's retries (meant
      // for a coordinator that is away) would rewrite the blob into the same
      // full disk for the whole reconnect window. The caller decides (the
      // training job warns and trains on). Other I/O errors may pass.
      if (error.error_number() == ENOSPC || error.error_number() == EDQUOT) {
        return {grpc::StatusCode::RESOURCE_EXHAUSTED, message};
      }
      return {grpc::StatusCode::UNAVAILABLE, message};
  }
  return {grpc::StatusCode::INTERNAL, message};
}

grpc::Status CheckpointServiceImpl::Put(grpc::ServerContext* context,
                                        grpc::ServerReader<v1::CheckpointChunk>* reader,
                                        v1::CheckpointInfo* response) {
  if (auto status = auth_.check(*context, Role::kAdmin, "Put"); !status.ok()) return status;
  v1::CheckpointChunk chunk;
  if (!reader->Read(&chunk)) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "Put: empty stream (expected a first message "
            "with meta, then data chunks)"};
  }
  if (!chunk.has_meta()) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "Put: the first message carries data (expected meta first)"};
  }
  // A copy: the Read() of the data chunks below reuses `chunk`, which frees
  // its meta (a oneof), so a reference would dangle by the total_bytes check.
  const v1::CheckpointMeta wire = chunk.meta();
  if (!runs_.get(wire.run())) return unknown_run("Put", wire.run());
  if (wire.direction() != v1::METRIC_DIRECTION_MINIMIZE &&
      wire.direction() != v1::METRIC_DIRECTION_MAXIMIZE) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "Put: meta.direction must be METRIC_DIRECTION_MINIMIZE or _MAXIMIZE"};
  }
  ck::CheckpointMeta meta;
  meta.run = wire.run();
  meta.phase = wire.phase();
  meta.epoch = wire.epoch();
  meta.step = wire.step();
  meta.metric_name = wire.metric_name();
  meta.metric_value = wire.metric_value();
  meta.direction = wire.direction() == v1::METRIC_DIRECTION_MAXIMIZE ? ck::Direction::kMaximize
                                                                     : ck::Direction::kMinimize;
  meta.upload_id = wire.upload_id();
  const int put_number = ++puts_received_;
  try {
    auto writer = store_.begin_put(meta);
    std::int64_t received = 0;
    while (reader->Read(&chunk)) {
      if (chunk.has_meta()) {
        return {grpc::StatusCode::INVALID_ARGUMENT, "Put: a second meta message at offset " +
                                                        std::to_string(received) +
                                                        " (expected data only after the first)"};
      }
      writer->append(chunk.offset(), chunk.data());
      received += static_cast<std::int64_t>(chunk.data().size());
      // Dies on the first data chunk: the loop never gets to a second one.
      if (put_number == crash_in_put_) crash_for_test(put_number, writer->id(), meta.run, received);
    }
    if (context->IsCancelled()) {
      return {grpc::StatusCode::CANCELLED, "Put: cancelled by the client; nothing stored"};
    }
    if (wire.total_bytes() > 0 && wire.total_bytes() != received) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "Put: received " + std::to_string(received) + " bytes but meta.total_bytes says " +
                  std::to_string(wire.total_bytes()) + "; nothing stored"};
    }
    *response = to_proto(writer->commit());
  } catch (const ck::CheckpointError& e) {
    return status_of(e, "Put");
  }
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::List(grpc::ServerContext* context,
                                         const v1::ListCheckpointsRequest* request,
                                         v1::ListCheckpointsResponse* response) {
  if (auto status = auth_.check(*context, Role::kRead, "List"); !status.ok()) return status;
  if (!runs_.get(request->run())) return unknown_run("List", request->run());
  const auto order = list_order(request->order());
  if (!order) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "List: order " + std::to_string(request->order()) +
                " is not a CheckpointOrder (expected 0 unspecified, 1 best first, 2 latest first)"};
  }
  for (const auto& record : store_.list(request->run(), *order, request->phase())) {
    *response->add_checkpoints() = to_proto(record);
  }
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::Get(grpc::ServerContext* context,
                                        const v1::GetCheckpointRequest* request,
                                        grpc::ServerWriter<v1::CheckpointChunk>* writer) {
  if (auto status = auth_.check(*context, Role::kRead, "Get"); !status.ok()) return status;
  const auto record = store_.find(request->id());
  if (!record) {
    return {grpc::StatusCode::NOT_FOUND, "Get: no checkpoint '" + request->id() + "'"};
  }
  std::string blob;
  try {
    blob = store_.read_verified(request->id());  // never serve unverified bytes
  } catch (const ck::CheckpointError& e) {
    return status_of(e, "Get");
  }
  v1::CheckpointChunk chunk;
  *chunk.mutable_meta() = to_proto(*record).meta();
  if (!writer->Write(chunk)) return grpc::Status::OK;
  for (std::size_t offset = 0; offset < blob.size();
       offset += static_cast<std::size_t>(chunk_bytes_)) {
    if (context->IsCancelled()) return {grpc::StatusCode::CANCELLED, "Get: cancelled"};
    const std::size_t size = std::min(blob.size() - offset, static_cast<std::size_t>(chunk_bytes_));
    chunk.Clear();
    chunk.set_offset(static_cast<std::int64_t>(offset));
    chunk.set_data(blob.data() + offset, size);
    if (!writer->Write(chunk)) return grpc::Status::OK;
  }
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::Best(grpc::ServerContext* context,
                                         const v1::RunCheckpointRequest* request,
                                         v1::CheckpointInfo* response) {
  if (auto status = auth_.check(*context, Role::kRead, "Best"); !status.ok()) return status;
  if (!runs_.get(request->run())) return unknown_run("Best", request->run());
  const auto record = store_.best(request->run(), request->phase());
  if (!record) {
    return {grpc::StatusCode::NOT_FOUND,
            "Best: run '" + request->run() + "' has no checkpoint" +
                (request->phase().empty() ? "" : " of phase '" + request->phase() + "'")};
  }
  *response = to_proto(*record);
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::Latest(grpc::ServerContext* context,
                                           const v1::RunCheckpointRequest* request,
                                           v1::CheckpointInfo* response) {
  if (auto status = auth_.check(*context, Role::kRead, "Latest"); !status.ok()) return status;
  if (!runs_.get(request->run())) return unknown_run("Latest", request->run());
  const auto record = store_.latest(request->run(), request->phase());
  if (!record) {
    return {grpc::StatusCode::NOT_FOUND,
            "Latest: run '" + request->run() + "' has no checkpoint" +
                (request->phase().empty() ? "" : " of phase '" + request->phase() + "'")};
  }
  *response = to_proto(*record);
  return grpc::Status::OK;
}

grpc::Status CheckpointServiceImpl::Delete(grpc::ServerContext* context,
                                           const v1::DeleteCheckpointRequest* request,
                                           v1::DeleteCheckpointResponse*) {
  if (auto status = auth_.check(*context, Role::kAdmin, "Delete"); !status.ok()) return status;
  try {
    store_.remove(request->id());
  } catch (const ck::CheckpointError& e) {
    return status_of(e, "Delete");
  }
  return grpc::Status::OK;
}

}  // namespace xfer::coordinator::server
