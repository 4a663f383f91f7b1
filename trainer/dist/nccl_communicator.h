// Collectives on CUDA memory over NCCL. Compiled when the build found NCCL
// (WITH_NCCL, hence XFER_WITH_NCCL == 1 in xfer/config.h).
//
// How it works:
//   * Rank 0 makes the ncclUniqueId; it travels to the others over the MPI
//     communicator given to the constructor, which also carries the small
//     host-side operations (allgather, barrier).
//   * The NCCL communicator is created non-blocking (ncclConfig_t.blocking =
//     0) so that start-up, every collective and shutdown can be abandoned at
//     a deadline: a rank never sits inside NCCL forever.
//   * Collectives run on the communicator's own CUDA stream, inside
//     ncclGroupStart/End. Each waits (cudaStreamWaitEvent) for the producer
//     stream named in the Buffer, so overlap with the backward kernels is
//     kept while the data dependency holds.
//   * Every CUDA and NCCL call is checked; a failure throws CollectiveError
//     naming the op, rank, host, device and NCCL version. On an error or a
//     timeout the NCCL communicator is aborted (ncclCommAbort) and this
//     object is broken.
//
// The header is free of CUDA, NCCL and LibTorch headers (pimpl).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "trainer/dist/communicator.h"
#include "trainer/dist/mpi_communicator.h"
#include "trainer/dist/world.h"

namespace xfer::trainer::dist {

// CUDA devices the CUDA runtime sees here; 0 when there is no driver or no
// GPU (the runtime tests skip on that).
int cuda_device_count();

// "2.28.9", the NCCL library loaded at run time.
std::string nccl_version();

class NcclCommunicator final : public Communicator {
 public:
  // Collective over `world` (every rank constructs it at the same point).
  // This rank uses CUDA device `device_index` (normally its local rank).
  // `host` carries the unique id and the host-side operations; it and
  // `world` must outlive this object. Throws std::invalid_argument for a bad
  // device index and CollectiveError when NCCL cannot start in time.
  NcclCommunicator(const World& world, MpiCommunicator& host, int device_index,
                   CommunicatorOptions options = {});
  ~NcclCommunicator() override;

  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override;
  int size() const override;
  const char* backend() const override { return "nccl"; }
  bool supports(DeviceType device) const override { return device == DeviceType::kCuda; }

  std::shared_ptr<Work> allreduce(const Buffer& buffer, ReduceOp op,
                                  const std::string& label) override;
  void broadcast(const Buffer& buffer, int root, const std::string& label) override;
  std::vector<std::byte> allgather(const void* data, std::size_t bytes,
                                   const std::string& label) override;
  void barrier(const std::string& label) override;

  // Aborts the NCCL communicator (pending kernels are cancelled); every later
  // operation throws. Idempotent.
  void abort(const std::string& why);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace xfer::trainer::dist
