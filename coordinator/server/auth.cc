#include "coordinator/server/auth.h"

#include <openssl/crypto.h>

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

}  // namespace

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
    return {grpc::StatusCode::UNAUTHENTICATED,
            std::string(method) +
                ": no authorization metadata (expected 'authorization: Bearer "
                "TOKEN'; pass --token-file)"};
  }
  const std::string_view value(it->second.data(), it->second.size());
  if (value.substr(0, kBearer.size()) != kBearer) {
    return {grpc::StatusCode::UNAUTHENTICATED,
            std::string(method) + ": authorization metadata is not 'Bearer TOKEN'"};
  }
  const std::string_view token = value.substr(kBearer.size());
  if (admin_token_ && tokens_equal(*admin_token_, token)) return grpc::Status::OK;
  if (read_token_ && tokens_equal(*read_token_, token)) {
    if (required == Role::kRead) return grpc::Status::OK;
    return {grpc::StatusCode::PERMISSION_DENIED,
            std::string(method) +
                ": the read-only token may not call this method (it needs the "
                "admin token)"};
  }
  return {grpc::StatusCode::UNAUTHENTICATED, std::string(method) + ": unknown token"};
}

}  // namespace xfer::coordinator::server
