#include "coordinator/client/client_options.h"

#include <string>

#include "coordinator/client/errors.h"

namespace xfer::coordinator::client {

namespace {

void require_positive(std::chrono::milliseconds value, const char* name) {
  if (value.count() <= 0) {
    throw ClientError(std::string("client option ") + name + " is " +
                      std::to_string(value.count()) + " ms (expected > 0)");
  }
}

}  // namespace

void validate(const ClientOptions& options) {
  if (options.address.empty()) {
    throw ClientError("client option address is empty (expected host:port of the coordinator)");
  }
  if (!options.tls_server_name.empty() && options.tls_ca_file.empty()) {
    throw ClientError("client option tls_server_name '" + options.tls_server_name +
                      "' is set without tls_ca_file (expected both, or neither)");
  }
  require_positive(options.call_deadline, "call_deadline");
  require_positive(options.stream_deadline, "stream_deadline");
  if (options.reconnect_window.count() < 0) {
    throw ClientError("client option reconnect_window is " +
                      std::to_string(options.reconnect_window.count()) + " ms (expected >= 0)");
  }
  validate(options.backoff);
  if (options.keepalive_time.count() < 0) {
    throw ClientError("client option keepalive_time is " +
                      std::to_string(options.keepalive_time.count()) +
                      " ms (expected >= 0; 0 turns pings off)");
  }
  require_positive(options.keepalive_timeout, "keepalive_timeout");
  constexpr std::int64_t kMiB = 1 << 20;
  if (options.max_message_bytes < kMiB || options.max_message_bytes > 1024 * kMiB) {
    throw ClientError("client option max_message_bytes is " +
                      std::to_string(options.max_message_bytes) +
                      " (expected 1 MiB .. 1 GiB, matching the server's limit)");
  }
  const std::int64_t max_chunk = options.max_message_bytes - 64 * 1024;
  if (options.chunk_bytes < 1 || options.chunk_bytes > max_chunk) {
    throw ClientError("client option chunk_bytes is " + std::to_string(options.chunk_bytes) +
                      " (expected 1 .. " + std::to_string(max_chunk) +
                      ", below max_message_bytes with room for framing)");
  }
}

}  // namespace xfer::coordinator::client
