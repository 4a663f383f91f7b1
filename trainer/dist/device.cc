#include "trainer/dist/device.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <malloc.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

namespace xfer::trainer::dist {

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return host_cpus();
  return std::max(1, CPU_COUNT(&set));
}

int host_cpus() { return std::max(1u, std::thread::hardware_concurrency()); }

std::string DeviceChoice::describe() const {
  if (cuda) return "cuda:" + std::to_string(cuda_index);
  return "cpu (" + std::to_string(cpu_threads) + (cpu_threads == 1 ? " thread)" : " threads)");
}

DeviceChoice choose_device(const World& world, const DeviceOptions& options) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda") {
    throw std::invalid_argument("--device must be auto, cpu or cuda, got '" + options.device + "'");
  }
  if (options.cpu_threads < 0) {
    throw std::invalid_argument("--threads must be >= 0 (0 = automatic), got " +
                                std::to_string(options.cpu_threads));
  }
  DeviceChoice choice;
  const int devices = static_cast<int>(torch::cuda::device_count());
  if (options.device == "cuda" || (options.device == "auto" && devices > 0)) {
    if (world.local_rank() >= devices) {
      throw std::runtime_error(world.where() + " is local rank " +
                               std::to_string(world.local_rank()) +
                               " and needs cuda:" + std::to_string(world.local_rank()) +
                               ", but LibTorch sees " + std::to_string(devices) +
                               " CUDA device(s) here (start one rank per GPU; a CPU-only "
                               "LibTorch sees none)");
    }
    choice.cuda = true;
    choice.cuda_index = world.local_rank();
  }
  if (options.cpu_threads > 0) {
    choice.cpu_threads = options.cpu_threads;
  } else {
    const int allowed = affinity_cpus();
    const int all = host_cpus();
    // A launcher that bound us to some CPUs already did the sharing.
    choice.cpu_threads =
        allowed < all ? allowed : std::max(1, all / std::max(1, world.local_size()));
  }
  return choice;
}

void apply_device(const DeviceChoice& choice) {
  at::set_num_threads(choice.cpu_threads);
  // Debian's LibTorch does its GEMMs (linear layers, some convolution
  // passes) in OpenBLAS, which starts a thread per core and lets idle ones
  // spin in sched_yield between calls: with one rank per core, that spinning
  // takes time from the neighbouring rank. at::set_num_threads does not
  // reach OpenBLAS, so tell it directly when it is the BLAS loaded.
  using SetThreads = void (*)(int);
  if (auto* set_blas_threads =
          reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas_threads(choice.cpu_threads);
  }
  // Every step frees and re-allocates the same activation buffers (hundreds
  // of KiB to tens of MiB). glibc serves the large ones with mmap and gives
  // freed memory back to the kernel, so each step pays page faults and
  // zeroing for memory it just released. Keep it in the heap instead: the
  // process's footprint stays at its peak step, which it needs anyway.
  if (mallopt(M_MMAP_THRESHOLD, 256 << 20) != 1 || mallopt(M_TRIM_THRESHOLD, 1 << 30) != 1) {
    spdlog::debug("mallopt refused the allocator settings; keeping glibc's defaults");
  }
}

}  // namespace xfer::trainer::dist
