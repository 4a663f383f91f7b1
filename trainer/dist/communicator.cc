#include "trainer/dist/communicator.h"

#include <climits>
#include <stdexcept>

namespace xfer::trainer::dist {

const char* name_of(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return "float32";
    case DataType::kFloat64:
      return "float64";
    case DataType::kInt32:
      return "int32";
    case DataType::kInt64:
      return "int64";
    case DataType::kUInt8:
      return "uint8";
  }
  return "unknown type";
}

const char* name_of(DeviceType device) { return device == DeviceType::kCpu ? "cpu" : "cuda"; }

const char* name_of(ReduceOp op) { return op == ReduceOp::kSum ? "sum" : "average"; }

std::size_t size_of(DataType type) {
  switch (type) {
    case DataType::kFloat32:
    case DataType::kInt32:
      return 4;
    case DataType::kFloat64:
    case DataType::kInt64:
      return 8;
    case DataType::kUInt8:
      return 1;
  }
  return 0;
}

namespace {

void validate_buffer(const Communicator& comm, const Buffer& buffer, const char* op) {
  std::string where = std::string(comm.backend()) + " " + op + ": ";
  if (!comm.supports(buffer.device)) {
    throw std::invalid_argument(where + "buffer is in " + name_of(buffer.device) +
                                " memory, which this communicator does not handle (MPI takes "
                                "CPU buffers, NCCL CUDA buffers)");
  }
  if (buffer.count > 0 && buffer.data == nullptr) {
    throw std::invalid_argument(where + "buffer of " + std::to_string(buffer.count) +
                                " elements has a null data pointer");
  }
  // MPI and NCCL counts are int / size_t; MPI's is the binding limit.
  if (buffer.count > static_cast<std::size_t>(INT_MAX)) {
    throw std::invalid_argument(where + "buffer of " + std::to_string(buffer.count) +
                                " elements exceeds the limit of " + std::to_string(INT_MAX) +
                                " per operation; split it (buckets do)");
  }
}

}  // namespace

void validate_allreduce(const Communicator& comm, const Buffer& buffer, ReduceOp op) {
  validate_buffer(comm, buffer, "allreduce");
  if (op == ReduceOp::kAverage && buffer.type != DataType::kFloat32 &&
      buffer.type != DataType::kFloat64) {
    throw std::invalid_argument(std::string(comm.backend()) + " allreduce: average needs a " +
                                "float32 or float64 buffer, got " + name_of(buffer.type) +
                                " (an integer mean would truncate)");
  }
  if (buffer.type == DataType::kUInt8) {
    throw std::invalid_argument(std::string(comm.backend()) +
                                " allreduce: uint8 sums overflow; use int32 or wider");
  }
}

void validate_broadcast(const Communicator& comm, const Buffer& buffer, int root) {
  validate_buffer(comm, buffer, "broadcast");
  if (root < 0 || root >= comm.size()) {
    throw std::invalid_argument(std::string(comm.backend()) + " broadcast: root " +
                                std::to_string(root) + " is not a rank of this world of " +
                                std::to_string(comm.size()) + " (expected 0.." +
                                std::to_string(comm.size() - 1) + ")");
  }
}

}  // namespace xfer::trainer::dist
