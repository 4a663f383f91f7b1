// The errors the client throws. Two kinds, kept apart because the caller
// handles them differently:
//   RpcError    the coordinator answered with (or the channel produced) a
//               non-OK status that is final: not transient, or transient for
//               longer than the reconnect window. Carries the gRPC code.
//   ClientError something local: bad options, an unreadable token or CA
//               file, a file that cannot be read or written.
//   ChecksumError (a ClientError) a downloaded checkpoint whose SHA-256 is
//               not the one expected; nothing was written.
#pragma once

#include <grpcpp/grpcpp.h>

#include <stdexcept>
#include <string>

namespace xfer::coordinator::client {

// "UNAVAILABLE", "NOT_FOUND", ... ("CODE_<n>" for an unknown value).
const char* status_code_name(grpc::StatusCode code);

class RpcError : public std::runtime_error {
 public:
  // `method` is the RPC ("GetRun"), `address` the coordinator, `attempts`
  // how many times the call was tried.
  RpcError(grpc::StatusCode code, std::string method, std::string address,
           std::string server_message, int attempts = 1);

  grpc::StatusCode code() const { return code_; }
  const std::string& method() const { return method_; }
  const std::string& address() const { return address_; }
  // The status message as the server (or gRPC) wrote it.
  const std::string& server_message() const { return server_message_; }
  int attempts() const { return attempts_; }

 private:
  grpc::StatusCode code_;
  std::string method_;
  std::string address_;
  std::string server_message_;
  int attempts_;
};

class ClientError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ChecksumError : public ClientError {
 public:
  ChecksumError(const std::string& what, std::string expected, std::string actual)
      : ClientError(what), expected_(std::move(expected)), actual_(std::move(actual)) {}
  const std::string& expected() const { return expected_; }
  const std::string& actual() const { return actual_; }

 private:
  std::string expected_;
  std::string actual_;
};

}  // namespace xfer::coordinator::client
