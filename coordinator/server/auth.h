// Bearer-token authorization for the coordinator's RPCs.
//
// Two roles. The admin token (--token-file) may call everything; the
// read-only token (--read-token-file) may call only the monitoring methods
// (those marked [read] in coordinator.proto). With no token files at all,
// every call is allowed: the server then listens on 127.0.0.1 by default,
// and validate() (server.h) refuses any other address unless --insecure says
// the operator chose an open service.
//
// Tokens travel as `authorization: Bearer TOKEN` metadata. Each handler calls
// Authorizer::check(context, role) first; that one function is the whole auth
// layer, so the rule lives in one place. Nothing here logs or returns a
// token, a received one included: refusals name the method, the peer and the
// reason only.
#pragma once

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace xfer::coordinator::server {

enum class Role { kRead, kAdmin };

// Reads a token file: the first line, trimmed of whitespace. Throws
// std::runtime_error naming the file when it is missing, unreadable, empty,
// or shorter than kMinTokenLength characters.
std::string read_token_file(const std::filesystem::path& path);

inline constexpr std::size_t kMinTokenLength = 16;

// A warning when `path` may be read or written by its group or by others
// (mode & 077), as ssh checks private keys; std::nullopt when only the owner
// has access, or when the mode cannot be read (read_token_file reports that).
// The coordinator logs it and starts anyway: a token file shared with a job's
// group can be deliberate, a world-readable one rarely is.
std::optional<std::string> token_file_mode_warning(const std::filesystem::path& path);

// Whether `host` (the HOST of --listen HOST:PORT) names only the loopback
// interface: 127.0.0.0/8, ::1 (bracketed or not) or localhost. 0.0.0.0, [::],
// other addresses and other names are not.
bool is_loopback_host(std::string_view host);

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
