#include "trainer/build_info.h"

#include <ATen/Parallel.h>
#include <google/protobuf/stubs/common.h>
#include <grpcpp/version_info.h>
#include <mpi.h>
#include <spdlog/version.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "xfer/config.h"

#if XFER_WITH_NCCL
#include <nccl.h>
#endif

namespace xfer::trainer {
namespace {

std::string mpi_library() {
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(version, &length);  // allowed before MPI_Init
  std::string text(version, static_cast<std::size_t>(std::max(length, 0)));
  // Open MPI appends the repository revision and date on the same line.
  const auto comma = text.find(',');
  if (comma != std::string::npos) text.resize(comma);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  int major = 0, minor = 0;
  MPI_Get_version(&major, &minor);
  return text + " (MPI standard " + std::to_string(major) + "." + std::to_string(minor) + ")";
}

std::string nccl_library() {
#if XFER_WITH_NCCL
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "compiled in, but ncclGetVersion failed";
  // Since NCCL 2.9 the code is major*10000 + minor*100 + patch.
  const int major = code / 10000, minor = (code % 10000) / 100, patch = code % 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch) +
         " (compiled against " + std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) +
         "." + std::to_string(NCCL_PATCH) + ", CUDA " + XFER_CUDA_TOOLKIT_VERSION + ")";
#else
  return "not built (WITH_NCCL was off or NCCL was not found)";
#endif
}

std::string cuda_devices() {
  if (!torch::cuda::is_available()) return "none (LibTorch is CPU-only or no GPU is visible)";
  return std::to_string(torch::cuda::device_count()) + " visible to LibTorch";
}

// at::get_parallel_info() is a multi-line report; keep the lines that say
// which thread pool and BLAS LibTorch uses.
std::string torch_parallelism() {
  std::istringstream report(at::get_parallel_info());
  std::string line, picked;
  while (std::getline(report, line)) {
    line.erase(0, line.find_first_not_of(" \t"));
    if (line.find("ATen parallel backend") != std::string::npos ||
        line.find("at::get_num_threads") != std::string::npos || line.find("OpenMP") == 0) {
      picked += (picked.empty() ? "" : "; ") + line;
    }
  }
  return picked;
}

}  // namespace

std::vector<BuildInfoLine> collect_build_info() {
  return {
      {"xfer", std::string(XFER_VERSION) + " (" + XFER_BUILD_TYPE + ", " + XFER_COMPILER + ")"},
      {"LibTorch", TORCH_VERSION},
      {"LibTorch threads", torch_parallelism()},
      {"CPU cores", std::to_string(std::thread::hardware_concurrency()) + " (hardware threads)"},
      {"CUDA devices", cuda_devices()},
      {"MPI", mpi_library()},
      {"NCCL", nccl_library()},
      {"gRPC", GRPC_CPP_VERSION_STRING},
      {"protobuf", google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION)},
      {"spdlog", std::to_string(SPDLOG_VER_MAJOR) + "." + std::to_string(SPDLOG_VER_MINOR) + "." +
                     std::to_string(SPDLOG_VER_PATCH)},
  };
}

std::string format_build_info(const std::vector<BuildInfoLine>& lines) {
  std::size_t width = 0;
  for (const auto& line : lines) width = std::max(width, line.key.size());
  std::string text;
  for (const auto& line : lines) {
    text += line.key + ":" + std::string(width - line.key.size() + 1, ' ') + line.value + "\n";
  }
  return text;
}

}  // namespace xfer::trainer
