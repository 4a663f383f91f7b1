// Collectives on CPU memory over MPI.
//
// Threading (the choice the design asked for; docs/distributed.md has the
// long form). One communication thread per MpiCommunicator makes every MPI
// call after construction: it takes operations from a FIFO queue, starts
// each with a non-blocking MPI call (MPI_Iallreduce, MPI_Ibcast, ...) and
// polls MPI_Test until it completes, the deadline passes, or a local peer
// turns out dead. Why not MPI_THREAD_MULTIPLE with calls from the autograd
// thread:
//   * Open MPI progresses non-blocking collectives only inside MPI calls. A
//     collective started from an autograd hook would stall while backward
//     computes; a thread that polls is needed either way to get overlap.
//   * A single caller keeps the order of collectives equal to the order of
//     submission: the cross-rank contract holds by construction.
//   * The poller owns the deadline: it can give up on an operation, which a
//     blocking MPI_Allreduce cannot.
//   * MPI_THREAD_SERIALIZED is enough, and Open MPI takes no per-call locks.
//
// Every rank must construct its MpiCommunicator at the same point (the
// constructor duplicates the MPI communicator, a collective call).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "trainer/dist/communicator.h"
#include "trainer/dist/world.h"

namespace xfer::trainer::dist {

class MpiCommunicator final : public Communicator {
 public:
  // Collective over `world`. `world` must outlive this object.
  // Throws std::invalid_argument for a non-positive timeout.
  explicit MpiCommunicator(const World& world, CommunicatorOptions options = {});

  // Finishes the queued operations (each bounded by the timeout), then stops
  // the communication thread and frees the MPI communicator.
  ~MpiCommunicator() override;

  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override;
  int size() const override;
  const char* backend() const override { return "mpi"; }
  bool supports(DeviceType device) const override { return device == DeviceType::kCpu; }

  std::shared_ptr<Work> allreduce(const Buffer& buffer, ReduceOp op,
                                  const std::string& label) override;
  void broadcast(const Buffer& buffer, int root, const std::string& label) override;
  std::vector<std::byte> allgather(const void* data, std::size_t bytes,
                                   const std::string& label) override;
  void barrier(const std::string& label) override;

  const CommunicatorOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xfer::trainer::dist
