// The coordinator's client library, used by the trainer and coordctl.
//
// One CoordinatorClient wraps one channel to the coordinator and has a method
// per RPC of proto/xfer/v1/coordinator.proto. Every call:
//   - carries `authorization: Bearer TOKEN` when a token file is configured;
//   - has a deadline (ClientOptions::call_deadline per attempt of a unary
//     call, ClientOptions::stream_deadline per attempt of a stream);
//   - retries transient failures with exponential backoff and jitter for up
//     to ClientOptions::reconnect_window (see retry.h for which failures are
//     transient for which call);
//   - throws RpcError (gRPC code, server message, method, address) when it
//     fails for good, ClientError for local problems (files, options).
//
// Idempotency, which decides whether a DEADLINE_EXCEEDED is retried:
//   idempotent:     GetDatasetInfo, ResolveSplit, GetRun, ListRuns, GetStatus,
//                   PutReport (a repeat stores the same report again: only
//                   created_unix_ms and `replaced` differ), GetReport,
//                   EndRun (the server answers a repeat with the same state),
//                   Report (the server dedups by its key), History, Ranks,
//                   List, Best, Latest, Get, Put (dedup by upload_id),
//                   StreamShard and Watch (resumed from a position);
//   not idempotent: StartRun (a repeat would count another attempt) and
//                   Delete (a repeat fails NOT_FOUND and would hide the first
//                   call's success).
//   never retried:  Heartbeat (one attempt with the caller's deadline: the
//                   next heartbeat is the retry).
//
// Thread-safe: calls may be made from several threads at once. Readers are
// used from one thread (cancel() from any) and may outlive the client.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "coordinator/client/client_options.h"
#include "coordinator/client/errors.h"
#include "coordinator/client/retry.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::client {

namespace detail {
class Connection;
class CancellableSleep;
}  // namespace detail

// One rank's shard of one epoch (DataService.StreamShard), batch by batch.
//
// Batches arrive in order 0, 1, ... (from request.start_batch); a batch out
// of order is a protocol error (RpcError INTERNAL). When the stream breaks
// transiently, or its per-attempt deadline passes, the reader re-opens it
// with start_batch = next_batch_index(): the shard is a pure function of the
// request, so the resumed stream continues exactly where this one stopped.
// The reconnect window counts from the last batch received. A caller that
// wants to resume itself (e.g. after a process restart) opens a new reader
// with start_batch = next_batch_index().
class ShardReader {
 public:
  ShardReader(std::shared_ptr<detail::Connection> connection, v1::StreamShardRequest request);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  // The next batch; std::nullopt at the end of the shard or after cancel().
  // Throws RpcError when the stream fails for good.
  std::optional<v1::ShardBatch> next();

  // Index of the batch next() returns next: the start_batch to resume from.
  std::int64_t next_batch_index() const { return next_index_; }
  // Batches in this rank's shard; std::nullopt until the first batch came.
  std::optional<std::int64_t> num_batches() const { return num_batches_; }
  // How often the stream was re-opened after a failure.
  int reopens() const { return reopens_; }

  // Ends the stream from any thread; next() then returns std::nullopt.
  void cancel();

 private:
  void open();
  std::shared_ptr<detail::Connection> connection_;
  v1::StreamShardRequest request_;
  RetryState retry_;
  std::unique_ptr<detail::CancellableSleep> sleep_;
  std::mutex context_mutex_;
  std::unique_ptr<grpc::ClientContext> context_;  // GUARDED_BY(context_mutex_) for cancel()
  std::unique_ptr<grpc::ClientReader<v1::ShardBatch>> stream_;
  std::int64_t next_index_;
  std::optional<std::int64_t> num_batches_;
  int reopens_ = 0;
  bool done_ = false;
};

// Aggregated metrics events of one run (MetricsService.Watch), as they come.
//
// Events carry sequence numbers 1, 2, ...; after a transient failure the
// reader re-opens the stream from last_sequence() + 1, so no event is lost
// or repeated. The stream ends when the server sends the run's final state
// (an event whose `run` is no longer RUNNING) and closes the call; a call
// closed without that event (e.g. the server shutting down) is treated as
// transient and resumed.
class WatchReader {
 public:
  // `from_sequence`: first sequence wanted (0 or 1: from the beginning).
  WatchReader(std::shared_ptr<detail::Connection> connection, std::string run,
              std::int64_t from_sequence);
  ~WatchReader();
  WatchReader(const WatchReader&) = delete;
  WatchReader& operator=(const WatchReader&) = delete;

  // The next event; std::nullopt once the run has ended (after its final
  // state event was returned) or after cancel(). Throws RpcError.
  std::optional<v1::MetricsEvent> next();

  // Highest sequence number returned so far (0: none).
  std::int64_t last_sequence() const { return last_sequence_; }
  int reopens() const { return reopens_; }

  void cancel();

 private:
  void open();
  std::shared_ptr<detail::Connection> connection_;
  std::string run_;
  RetryState retry_;
  std::unique_ptr<detail::CancellableSleep> sleep_;
  std::mutex context_mutex_;
  std::unique_ptr<grpc::ClientContext> context_;  // GUARDED_BY(context_mutex_) for cancel()
  std::unique_ptr<grpc::ClientReader<v1::MetricsEvent>> stream_;
  std::int64_t last_sequence_;
  int reopens_ = 0;
  bool run_ended_ = false;
  bool done_ = false;
};

// What get_checkpoint wrote.
struct DownloadResult {
  std::filesystem::path path;
  // SHA-256 (lowercase hex) of the bytes written, computed here.
  std::string sha256;
  std::int64_t size_bytes = 0;
  // Whether sha256 was compared with an expected value (and matched).
  bool verified = false;
  // The checkpoint's metadata, when the server sent it ahead of the data.
  std::optional<v1::CheckpointMeta> meta;
};

class CoordinatorClient {
 public:
  // Validates the options, reads the token file and creates the channel.
  // Connects lazily: a coordinator that is down shows at the first call.
  // Throws ClientError.
  explicit CoordinatorClient(ClientOptions options);
  // Over an existing channel (tests, or several clients sharing one).
  CoordinatorClient(ClientOptions options, std::shared_ptr<grpc::Channel> channel);
  ~CoordinatorClient();

  const ClientOptions& options() const;

  // ---- DataService
  v1::DatasetInfo get_dataset_info(const std::string& dataset);
  v1::ResolvedSplit resolve_split(const std::string& dataset, const std::string& spec);
  std::unique_ptr<ShardReader> stream_shard(const v1::StreamShardRequest& request);

  // ---- RunService
  v1::Run start_run(const v1::StartRunRequest& request);
  v1::Run get_run(const std::string& name);
  v1::ListRunsResponse list_runs();
  v1::Run end_run(const std::string& name, v1::RunState state, const std::string& message);
  // `run` empty: every run.
  v1::StatusResponse get_status(const std::string& run = "");
  // Stores the run's final evaluation (the test split), replacing an earlier
  // one (response.replaced()). Admin token. INVALID_ARGUMENT names an
  // inconsistent field (sizes, supports vs confusion rows, fractions).
  v1::PutReportResponse put_report(const v1::RunReport& report);
  // NOT_FOUND for an unknown run or one without a report yet; DATA_LOSS when
  // the coordinator's copy is damaged.
  v1::RunReport get_report(const std::string& run);
  // One Heartbeat attempt with its own `deadline`, never retried (the
  // caller's next heartbeat is the retry). Throws RpcError: UNAVAILABLE or
  // DEADLINE_EXCEEDED when the coordinator is down or slow, else the
  // server's code (NOT_FOUND, INVALID_ARGUMENT, ...).
  v1::HeartbeatResponse heartbeat(const v1::HeartbeatRequest& request,
                                  std::chrono::milliseconds deadline);

  // ---- MetricsService
  v1::ReportAck report(const v1::MetricsReport& report);
  std::unique_ptr<WatchReader> watch(const std::string& run, std::int64_t from_sequence = 0);
  v1::HistoryResponse history(const std::string& run);
  v1::RanksResponse ranks(const std::string& run);

  // ---- CheckpointService
  // Uploads a checkpoint in chunks of options().chunk_bytes, the first
  // message carrying `meta`. meta.upload_id, when empty, is set to a fresh
  // random id that every retry of this upload reuses, so the server stores
  // it once; meta.total_bytes is set to the blob's size. The SHA-256 the
  // server returns is checked against the bytes sent (ChecksumError if not).
  // Throws ClientError when the file cannot be read.
  v1::CheckpointInfo put_checkpoint_file(v1::CheckpointMeta meta,
                                         const std::filesystem::path& file);
  v1::CheckpointInfo put_checkpoint_bytes(v1::CheckpointMeta meta, std::string_view bytes);

  // Downloads checkpoint `id` to `out` atomically: a temporary file beside
  // it, fsync, rename, fsync of the directory, so `out` is either the old
  // file or the complete new one. When `expected_sha256` is given (as
  // List/Best/Latest report it) a mismatch throws ChecksumError and leaves
  // `out` untouched. A retried download starts again from byte 0.
  DownloadResult get_checkpoint(const std::string& id, const std::filesystem::path& out,
                                const std::string& expected_sha256 = "");

  // The run's checkpoints in `order` (the coordinator ranks them with the
  // rule Best and Latest use: BEST_FIRST lists Best's answer first,
  // LATEST_FIRST Latest's; UNSPECIFIED: earliest (epoch, step) first); with a
  // non-empty `phase`, that phase's checkpoints only.
  v1::ListCheckpointsResponse list_checkpoints(
      const std::string& run, v1::CheckpointOrder order = v1::CHECKPOINT_ORDER_UNSPECIFIED,
      const std::string& phase = "");
  // The best (by the run's metric) and the latest (highest epoch, step)
  // checkpoint; with a non-empty `phase`, among that phase's checkpoints
  // only (NOT_FOUND when it has none), e.g. the best "head" checkpoint to
  // restore before fine-tuning.
  v1::CheckpointInfo best_checkpoint(const std::string& run, const std::string& phase = "");
  v1::CheckpointInfo latest_checkpoint(const std::string& run, const std::string& phase = "");
  void delete_checkpoint(const std::string& id);

 private:
  std::shared_ptr<detail::Connection> connection_;
};

// A fresh random upload id (32 hex digits).
std::string new_upload_id();

}  // namespace xfer::coordinator::client
