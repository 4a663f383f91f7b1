// What this trainer binary was built with and what it finds at run time:
// the answer to "why is it slow / why does it not use my GPU", printed by
// `trainer --version` and `trainer build-info` (horovodrun --check-build
// plays the same part for Horovod).
#pragma once

#include <string>
#include <vector>

namespace xfer::trainer {

struct BuildInfoLine {
  std::string key;
  std::string value;
};

// One line per component: xfer, compiler, LibTorch (with its threading and
// BLAS back ends), CUDA devices, MPI library, NCCL, gRPC, protobuf, spdlog.
// Safe to call before MPI_Init and on machines without a GPU.
std::vector<BuildInfoLine> collect_build_info();

// `key: value` lines, keys aligned.
std::string format_build_info(const std::vector<BuildInfoLine>& lines);

}  // namespace xfer::trainer
