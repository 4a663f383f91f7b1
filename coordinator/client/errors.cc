#include "coordinator/client/errors.h"

#include <utility>

namespace xfer::coordinator::client {

const char* status_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    default:
      return "UNKNOWN_CODE";
  }
}

namespace {

std::string describe(grpc::StatusCode code, const std::string& method, const std::string& address,
                     const std::string& server_message, int attempts) {
  std::string text = method + " to coordinator " + address + " failed: " + status_code_name(code) +
                     " (code " + std::to_string(static_cast<int>(code)) +
                     "): " + (server_message.empty() ? "(no message)" : server_message);
  if (attempts > 1) text += " [gave up after " + std::to_string(attempts) + " attempts]";
  return text;
}

}  // namespace

RpcError::RpcError(grpc::StatusCode code, std::string method, std::string address,
                   std::string server_message, int attempts)
    : std::runtime_error(describe(code, method, address, server_message, attempts)),
      code_(code),
      method_(std::move(method)),
      address_(std::move(address)),
      server_message_(std::move(server_message)),
      attempts_(attempts) {}

}  // namespace xfer::coordinator::client
