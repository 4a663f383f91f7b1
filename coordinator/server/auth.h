// Bearer-token authorization for the coordinator's RPCs.
//
// Two roles. The admin token (--token-file) may call everything; the
// read-only token (--read-token-file) may call only the monitoring methods
// (those marked [read] in coordinator.proto). With no token files at all,
// every call is allowed: the server then listens on 127.0.0.1 by default, and
// the operator chose an open service.
//
// Tokens travel as `authorization: Bearer TOKEN` metadata. Each handler calls
// Authorizer::check(context, role) first; that one function is the whole auth
// layer, so the rule lives in one place.
#pragma once

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <optional>
#include <string>

namespace xfer::coordinator::server {

enum class Role { kRead, kAdmin };

// Reads a token file: the first line, trimmed of whitespace. Throws
// std::runtime_error naming the file when it is missing, unreadable, empty,
// or shorter than kMinTokenLength characters.
std::string read_token_file(const std::filesystem::path& path);

inline constexpr std::size_t kMinTokenLength = 16;

class Authorizer {
 public:
  // Either token may be absent. REQUIRES: tokens differ when both are given.
  Authorizer(std::optional<std::string> admin_token, std::optional<std::string> read_token);

  bool enabled() const { return admin_token_.has_value() || read_token_.has_value(); }

  // OK when the call's token grants `required`; UNAUTHENTICATED when the
  // token is missing or unknown; PERMISSION_DENIED when the read-only token
  // asks for an admin method. `method` names the call in the message.
  grpc::Status check(const grpc::ServerContextBase& context, Role required,
                     const char* method) const;

 private:
  // Constant after construction.
  std::optional<std::string> admin_token_;
  std::optional<std::string> read_token_;
};

}  // namespace xfer::coordinator::server
