// The communicators a rank needs, chosen by device: MPI always (start-up,
// small host values, and CPU tensors), NCCL too for CUDA tensors.
#pragma once

#include <memory>

#include "trainer/dist/communicator.h"
#include "trainer/dist/device.h"
#include "trainer/dist/mpi_communicator.h"
#include "trainer/dist/world.h"

namespace xfer::trainer::dist {

class Communicators {
 public:
  // Collective: every rank calls it at the same point with the same kind of
  // device. Throws std::runtime_error for a CUDA device in a build without
  // NCCL, and what the communicators' constructors throw.
  Communicators(const World& world, const DeviceChoice& device, CommunicatorOptions options);
  ~Communicators();

  // The communicator for gradient and model tensors on the chosen device.
  Communicator& tensors() { return tensors_ != nullptr ? *tensors_ : *host_; }
  // The MPI communicator (CPU memory).
  MpiCommunicator& host() { return *host_; }

 private:
  std::unique_ptr<MpiCommunicator> host_;
  std::unique_ptr<Communicator> tensors_;  // NCCL when on CUDA
};

}  // namespace xfer::trainer::dist
