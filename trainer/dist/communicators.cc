#include "trainer/dist/communicators.h"

#include <stdexcept>

#include "xfer/config.h"
#if XFER_WITH_NCCL
#include "trainer/dist/nccl_communicator.h"
#endif

namespace xfer::trainer::dist {

Communicators::Communicators(const World& world, const DeviceChoice& device,
                             CommunicatorOptions options)
    : host_(std::make_unique<MpiCommunicator>(world, options)) {
  if (!device.cuda) return;
#if XFER_WITH_NCCL
  tensors_ = std::make_unique<NcclCommunicator>(world, *host_, device.cuda_index, options);
#else
  throw std::runtime_error(world.where() + " trains on cuda:" + std::to_string(device.cuda_index) +
                           " but this build has no NCCL (configure with WITH_NCCL=ON and the "
                           "CUDA toolkit, or run with --device cpu)");
#endif
}

// The NCCL communicator uses the host one: destroy it first.
Communicators::~Communicators() { tensors_.reset(); }

}  // namespace xfer::trainer::dist
