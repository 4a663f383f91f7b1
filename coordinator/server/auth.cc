#include "coordinator/server/auth.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace xfer::coordinator::server {
namespace {

constexpr std::string_view kBearer = "Bearer ";

// Compares without an early exit, so response time does not leak how many
// leading characters of a guessed token were right.
bool tokens_equal(const std::string& a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Logs a refused call at debug level: the method, the peer and why, never a
// token (a wrong token may be a real one pasted into the wrong place).
grpc::Status refuse(const grpc::ServerContextBase& context, grpc::StatusCode code,
                    const std::string& message) {
  spdlog::debug("auth: refused a call from {}: {}", context.peer(), message);
  return {code, message};
}

}  // namespace

std::optional<std::string> token_file_mode_warning(const std::filesystem::path& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) return std::nullopt;
  const unsigned others = info.st_mode & 077;
  if (others == 0) return std::nullopt;
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
  return "token file " + path.string() + " has mode " + mode + ": its group or other users " +
         ((others & 044) != 0 ? "can read the token" : "have access to it") +
         " (expected 0600 or 0400, owner only: run chmod 600 " + path.string() + ")";
}

bool is_loopback_host(std::string_view host) {
  if (host == "localhost") return true;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

std::string read_token_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("token file " + path.string() + ": cannot be read");
  std::string line;
  std::getline(in, line);
  const auto first = line.find_first_not_of(" \t\r\n");
  const auto last = line.find_last_not_of(" \t\r\n");
  const std::string token = first == std::string::npos ? "" : line.substr(first, last - first + 1);
  if (token.empty()) {
    throw std::runtime_error("token file " + path.string() +
                             ": first line is empty (expected the token)");
  }
  if (token.size() < kMinTokenLength) {
    throw std::runtime_error("token file " + path.string() + ": token has " +
                             std::to_string(token.size()) + " characters (expected at least " +
                             std::to_string(kMinTokenLength) + ")");
  }
  return token;
}

Authorizer::Authorizer(std::optional<std::string> admin_token,
                       std::optional<std::string> read_token)
    : admin_token_(std::move(admin_token)), read_token_(std::move(read_token)) {
  if (admin_token_ && read_token_ && *admin_token_ == *read_token_) {
    throw std::invalid_argument(
        "the admin and read-only tokens are the same (expected two "
        "different tokens, or only one of them)");
  }
}

grpc::Status Authorizer::check(const grpc::ServerContextBase& context, Role required,
                               const char* method) const {
  if (!enabled()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return refuse(context, grpc::StatusCode::UNAUTHENTICATED,
                  std::string(method) +
                      ": no authorization metadata (expected 'authorization: Bearer "
                      "TOKEN'; pass --token-file)");
  }
  const std::string_view value(it->second.data(), it->second.size());
  if (value.substr(0, kBearer.size()) != kBearer) {
    return refuse(context, grpc::StatusCode::UNAUTHENTICATED,
                  std::string(method) + ": authorization metadata is not 'Bearer TOKEN'");
  }
  const std::string_view token = value.substr(kBearer.size());
  if (admin_token_ && tokens_equal(*admin_token_, token)) return grpc::Status::OK;
  if (read_token_ && tokens_equal(*read_token_, token)) {
    if (required == Role::kRead) return grpc::Status::OK;
    return refuse(context, grpc::StatusCode::PERMISSION_DENIED,
                  std::string(method) +
                      ": the read-only token may not call this method (it needs the "
                      "admin token)");
  }
  return refuse(context, grpc::StatusCode::UNAUTHENTICATED,
                std::string(method) +
                    ": unknown token (expected this coordinator's admin or read-only token, "
                    "from its --token-file or --read-token-file)");
}

}  // namespace xfer::coordinator::server
