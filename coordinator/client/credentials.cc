#include "coordinator/client/credentials.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "coordinator/client/errors.h"

namespace xfer::coordinator::client {

namespace {

std::string trim(const std::string& text) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  const auto begin = std::find_if(text.begin(), text.end(), not_space);
  const auto end = std::find_if(text.rbegin(), text.rend(), not_space).base();
  return begin < end ? std::string(begin, end) : std::string();
}

int clamp_to_int(std::int64_t value) {
  return static_cast<int>(std::clamp<std::int64_t>(value, 0, std::numeric_limits<int>::max()));
}

}  // namespace

std::string read_token_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    throw ClientError("token file " + path.string() +
                      " cannot be opened (expected a readable file whose first line is the token)");
  }
  std::string line;
  std::getline(in, line);
  const std::string token = trim(line);
  if (token.empty()) {
    throw ClientError("token file " + path.string() +
                      " is empty (expected the token on its first line)");
  }
  return token;
}

std::shared_ptr<grpc::Channel> make_channel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  const int max_message = clamp_to_int(options.max_message_bytes);
  args.SetMaxReceiveMessageSize(max_message);
  args.SetMaxSendMessageSize(max_message);
  // Reconnect as often as we retry: otherwise gRPC's own backoff (1 s growing
  // to 120 s) would answer our retries with UNAVAILABLE without trying.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, clamp_to_int(options.backoff.initial.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, clamp_to_int(options.backoff.initial.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, clamp_to_int(options.backoff.max.count()));
  if (options.keepalive_time.count() > 0) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, clamp_to_int(options.keepalive_time.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, clamp_to_int(options.keepalive_timeout.count()));
    // A Watch or StreamShard reader sends no data frames of its own; without
    // this gRPC stops pinging after two pings.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    std::ifstream in(options.tls_ca_file, std::ios::binary);
    if (!in) {
      throw ClientError("TLS CA file " + options.tls_ca_file +
                        " cannot be opened (expected a readable PEM file)");
    }
    std::ostringstream pem;
    pem << in.rdbuf();
    if (pem.str().empty()) {
      throw ClientError("TLS CA file " + options.tls_ca_file +
                        " is empty (expected PEM certificates)");
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  return grpc::CreateCustomChannel(options.address, credentials, args);
}

}  // namespace xfer::coordinator::client
