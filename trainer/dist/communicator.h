// The collective operations a data-parallel trainer needs, behind one
// interface: MpiCommunicator (CPU memory) and NcclCommunicator (CUDA memory).
//
// Cross-rank contract. Every rank of the communicator calls the same
// collectives, in the same order, with buffers of the same element count and
// type (and the same root for broadcast). MPI and NCCL match operations by
// their position in that sequence, not by name: a rank that skips one, adds
// one or reorders two waits forever in the real libraries. This class turns
// "forever" into a timeout (CommunicatorOptions::timeout) and an error that
// names the rank, host and operation; it cannot turn a broken sequence into a
// working one.
//
// This header is free of LibTorch on purpose: the trainer's non-tensor code
// (and the benchmark's raw-MPI half) include it without paying for torch
// headers. Tensors become Buffers in tensor_buffer.h.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace xfer::trainer::dist {

enum class DataType { kFloat32, kFloat64, kInt32, kInt64, kUInt8 };
enum class DeviceType { kCpu, kCuda };
enum class ReduceOp { kSum, kAverage };

// "float32", "cuda", "average", ...
const char* name_of(DataType type);
const char* name_of(DeviceType device);
const char* name_of(ReduceOp op);
std::size_t size_of(DataType type);

// Settings every communicator takes.
struct CommunicatorOptions {
  // How long one collective may run on this rank before it counts as failed
  // (and the job is ended). Default: 10 minutes, as c10d's ProcessGroupNCCL.
  // REQUIRES: > 0.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);

  // While a collective waits, how often to check that the peer ranks on this
  // host are still running. A peer that died (SIGKILL, OOM killer) then fails
  // the collective within about this interval instead of after `timeout`.
  // Peers on other hosts are covered only by `timeout`. Default: 1 s; zero
  // turns the check off.
  std::chrono::milliseconds liveness_interval = std::chrono::seconds(1);
};

// A contiguous array the caller owns and keeps alive (and unmodified) until
// the operation on it has completed.
struct Buffer {
  void* data = nullptr;
  // Number of elements (not bytes).
  std::size_t count = 0;
  DataType type = DataType::kFloat32;
  DeviceType device = DeviceType::kCpu;
  // CUDA device index; ignored for CPU buffers.
  int device_index = 0;
  // CUDA stream (a cudaStream_t) on which the data was produced; the
  // collective runs after the work already queued there. nullptr means the
  // legacy default stream. Ignored for CPU buffers.
  void* stream = nullptr;

  std::size_t bytes() const { return count * size_of(type); }
};

// Thrown when a collective fails or times out. After it, the communicator is
// broken: later operations fail at once (the peers are at an unknown point of
// the sequence). The only safe reaction is to end the job: see abort_job() in
// world.h, which the Reducer and the model-sync helpers call.
class CollectiveError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A pending asynchronous operation.
class Work {
 public:
  virtual ~Work() = default;

  // Blocks until the operation completes or `timeout` passes. Returns true
  // when it completed, false when the timeout passed first (the operation
  // goes on; waiting again is allowed). Throws CollectiveError when it failed.
  virtual bool wait(std::chrono::milliseconds timeout) = 0;

  // Non-blocking: true once the operation completed successfully or failed.
  virtual bool done() const = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // "mpi" or "nccl".
  virtual const char* backend() const = 0;
  // True when this communicator reduces buffers of `device` memory.
  virtual bool supports(DeviceType device) const = 0;

  // Starts an in-place all-reduce of `buffer` and returns at once. kAverage
  // divides the sum by size() (floating-point types only). `label` names the
  // operation in errors and logs ("bucket 3 of 7, step 120").
  // Throws std::invalid_argument for a buffer this communicator cannot
  // reduce (the message names what was wrong); CollectiveError when broken.
  virtual std::shared_ptr<Work> allreduce(const Buffer& buffer, ReduceOp op,
                                          const std::string& label) = 0;

  // Copies rank `root`'s buffer to every rank; blocks until done or the
  // timeout. REQUIRES: 0 <= root < size().
  virtual void broadcast(const Buffer& buffer, int root, const std::string& label) = 0;

  // Gathers `bytes` bytes from every rank into one vector, rank 0's first.
  // Host memory only; for small values (counts, checksums, flags).
  virtual std::vector<std::byte> allgather(const void* data, std::size_t bytes,
                                           const std::string& label) = 0;

  // Returns once every rank has called barrier (or throws on timeout).
  virtual void barrier(const std::string& label) = 0;

  // Typed convenience over allgather(): one value per rank.
  template <typename T>
  std::vector<T> allgather_value(const T& value, const std::string& label) {
    static_assert(std::is_trivially_copyable_v<T>, "allgather_value needs plain data");
    std::vector<std::byte> raw = allgather(&value, sizeof(T), label);
    std::vector<T> out(static_cast<std::size_t>(size()));
    std::memcpy(out.data(), raw.data(), raw.size());
    return out;
  }
};

// Checks that `buffer` can be reduced with `op` on `comm`; throws
// std::invalid_argument naming the field that is wrong. Shared by the
// implementations so the messages are the same.
void validate_allreduce(const Communicator& comm, const Buffer& buffer, ReduceOp op);
void validate_broadcast(const Communicator& comm, const Buffer& buffer, int root);

}  // namespace xfer::trainer::dist
