// What a coordinator client is configured with: where the coordinator is,
// how to authenticate, and how long to wait and retry. Parsed once (from
// flags in coordctl and the trainer) and validated by validate().
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "coordinator/client/backoff.h"

namespace xfer::coordinator::client {

struct ClientOptions {
  // host:port of the coordinator. Default: 127.0.0.1:50051 (the server's
  // default). REQUIRES: non-empty.
  std::string address = "127.0.0.1:50051";

  // File holding the bearer token: its first line, trimmed. Default: empty
  // (no authorization metadata; the server must run without tokens).
  std::string token_file;

  // PEM file of the root certificate(s) that signed the server's
  // certificate. Default: empty (plaintext channel).
  std::string tls_ca_file;

  // Name to check the server's certificate against, when it differs from
  // the host in `address` (e.g. connecting by IP to a cert issued for a
  // hostname). Default: empty (the host in `address`). REQUIRES: tls_ca_file.
  std::string tls_server_name;

  // Deadline of each attempt of a unary call. Default: 30 s. REQUIRES: > 0.
  std::chrono::milliseconds call_deadline{std::chrono::seconds(30)};

  // Deadline of each attempt of a streaming call (StreamShard, Watch,
  // checkpoint Put/Get). A stream reader re-opens a stream that hits it
  // from where it stopped, so the deadline bounds how long a silently dead
  // connection can stall a reader, not how long a healthy stream may run.
  // Keep-alive (below) usually notices a dead connection much sooner.
  // Default: 30 min. REQUIRES: > 0.
  std::chrono::milliseconds stream_deadline{std::chrono::minutes(30)};

  // How long transient failures (UNAVAILABLE; DEADLINE_EXCEEDED for
  // idempotent calls) are retried, counted from the first failure of a call
  // (for streams: since the last message received). 0 disables retries.
  // Default: 5 min, long enough to ride out a coordinator restart.
  // REQUIRES: >= 0.
  std::chrono::milliseconds reconnect_window{std::chrono::minutes(5)};

  // Delays between attempts; also given to gRPC as its reconnect backoff so
  // the channel tries to reconnect as often as we retry.
  BackoffPolicy backoff;

  // Seed of the backoff jitter. Default: random per client (so ranks that
  // lost the coordinator together do not retry in lockstep).
  std::optional<std::uint64_t> jitter_seed;

  // HTTP/2 keep-alive ping interval while calls are open, and how long to
  // wait for its acknowledgement before the connection is declared dead (the
  // open calls then fail UNAVAILABLE and are resumed). 0 turns pings off.
  // The server must accept pings this often (gRPC servers by default refuse
  // pings more often than every 5 min on a connection that sends no data,
  // such as a quiet Watch: the connection is then closed and the watch
  // resumed). Default: 60 s and 20 s. REQUIRES: >= 0 and > 0.
  std::chrono::milliseconds keepalive_time{std::chrono::seconds(60)};
  std::chrono::milliseconds keepalive_timeout{std::chrono::seconds(20)};

  // Largest message sent or received; must match the server's
  // --max-message-bytes. Default: 64 MiB. REQUIRES: 1 MiB .. 1 GiB.
  std::int64_t max_message_bytes = 64 << 20;

  // Data bytes per CheckpointChunk of an upload. Default: 1 MiB.
  // REQUIRES: 1 .. max_message_bytes - 64 KiB (room for the framing).
  std::int64_t chunk_bytes = 1 << 20;
};

// Throws ClientError naming the field, its value and what was expected.
void validate(const ClientOptions& options);

}  // namespace xfer::coordinator::client
