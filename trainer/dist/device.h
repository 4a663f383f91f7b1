// Which device a rank trains on, and how many CPU threads it uses.
//
// Local rank N takes cuda:N when LibTorch sees CUDA devices (a CUDA build of
// LibTorch on a GPU node); otherwise the rank runs on CPU with its share of
// the cores, so that the ranks of one host do not fight over them.
#pragma once

#include <string>

#include "trainer/dist/world.h"

namespace xfer::trainer::dist {

struct DeviceOptions {
  // "auto": CUDA when available, else CPU. "cpu" or "cuda" force one ("cuda"
  // fails when no device is visible). Default: "auto".
  std::string device = "auto";

  // Intra-op threads for this rank. 0 picks: the CPUs this process may run
  // on when the launcher bound it to a subset, else the host's CPUs divided
  // by the ranks on this host (at least 1). Default: 0.
  // REQUIRES: >= 0.
  int cpu_threads = 0;
};

struct DeviceChoice {
  bool cuda = false;
  // CUDA device index (the local rank) when `cuda`.
  int cuda_index = 0;
  int cpu_threads = 1;

  // "cuda:1" or "cpu (2 threads)".
  std::string describe() const;
};

// Decides the device from `options` and the world's local rank and size.
// Throws std::invalid_argument for a bad option value and std::runtime_error
// when "cuda" is asked for but this host has fewer CUDA devices than ranks.
DeviceChoice choose_device(const World& world, const DeviceOptions& options);

// Sets LibTorch's intra-op thread count (and OpenBLAS's, when loaded), and
// keeps freed memory in the process's heap for the next step (mallopt). For
// CUDA, nothing else: the caller moves its model to `cuda:index`.
void apply_device(const DeviceChoice& choice);

// CPUs this process may run on (sched_getaffinity), and on the host.
int affinity_cpus();
int host_cpus();

}  // namespace xfer::trainer::dist
