// Reading the secrets a client is given (a bearer token, a CA certificate)
// and making the channel they secure.
#pragma once

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <memory>
#include <string>

#include "coordinator/client/client_options.h"

namespace xfer::coordinator::client {

// The token in `path`: its first line with surrounding whitespace removed.
// Throws ClientError naming the file when it cannot be read or that line is
// empty (an empty token would silently disable auth on our side only).
std::string read_token_file(const std::filesystem::path& path);

// A channel to options.address: TLS with options.tls_ca_file as the trusted
// root when set, plaintext otherwise. Carries the message-size limits, the
// keep-alive settings and a reconnect backoff matching options.backoff.
// Throws ClientError when the CA file cannot be read or is empty.
std::shared_ptr<grpc::Channel> make_channel(const ClientOptions& options);

}  // namespace xfer::coordinator::client
