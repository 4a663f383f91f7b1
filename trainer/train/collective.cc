#include "trainer/train/collective.h"

#include <chrono>

namespace xfer::trainer::train {
namespace {

template <typename T>
void sum_in_place(dist::Communicator& comm, std::vector<T>& values, dist::DataType type,
                  const std::string& label) {
  if (values.empty() || comm.size() == 1) return;
  dist::Buffer buffer;
  buffer.data = values.data();
  buffer.count = values.size();
  buffer.type = type;
  auto work = comm.allreduce(buffer, dist::ReduceOp::kSum, label);
  // The communicator enforces its own timeout; this wait only returns when
  // the operation completed or failed.
  while (!work->wait(std::chrono::seconds(60))) {
  }
}

}  // namespace

std::vector<char> broadcast_bytes(dist::Communicator& comm, const std::vector<char>& value,
                                  const std::string& label) {
  if (comm.size() == 1) return value;
  std::int64_t size = static_cast<std::int64_t>(value.size());
  dist::Buffer length{&size, 1, dist::DataType::kInt64};
  comm.broadcast(length, 0, label + " (size)");
  std::vector<char> out =
      comm.rank() == 0 ? value : std::vector<char>(static_cast<std::size_t>(size));
  if (size > 0) {
    dist::Buffer data{out.data(), out.size(), dist::DataType::kUInt8};
    comm.broadcast(data, 0, label);
  }
  return out;
}

std::string broadcast_string(dist::Communicator& comm, const std::string& value,
                             const std::string& label) {
  const std::vector<char> bytes = broadcast_bytes(comm, {value.begin(), value.end()}, label);
  return {bytes.begin(), bytes.end()};
}

void on_rank0(dist::Communicator& comm, const std::string& what,
              const std::function<void()>& action) {
  std::string error;
  if (comm.rank() == 0) {
    try {
      action();
    } catch (const std::exception& e) {
      error = e.what();
      if (error.empty()) error = "unknown error";
    }
  }
  error = broadcast_string(comm, error, what);
  if (!error.empty()) throw SharedError("rank 0: " + what + ": " + error);
}

void sum_over_ranks(dist::Communicator& comm, std::vector<double>& values,
                    const std::string& label) {
  sum_in_place(comm, values, dist::DataType::kFloat64, label);
}

void sum_over_ranks(dist::Communicator& comm, std::vector<std::int64_t>& values,
                    const std::string& label) {
  sum_in_place(comm, values, dist::DataType::kInt64, label);
}

}  // namespace xfer::trainer::train
