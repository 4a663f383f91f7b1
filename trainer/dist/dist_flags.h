// The data-parallel engine's command-line flags, parsed once into one
// options struct (no LibTorch here).
#pragma once

#include <CLI/CLI.hpp>

#include "trainer/dist/communicator.h"
#include "trainer/dist/device.h"
#include "trainer/dist/reducer_options.h"

namespace xfer::trainer::dist {

struct DistOptions {
  DeviceOptions device;
  // timeout and liveness_interval; --collective-timeout sets both this and
  // reducer.timeout.
  CommunicatorOptions comm;
  ReducerOptions reducer;

  // Compare parameter fingerprints across ranks every this many optimizer
  // steps (check_module_in_sync; about 20 ms for EfficientNet-B0 on CPU).
  // Default: 200. 0 turns the check off. REQUIRES: >= 0.
  int check_sync_every = 200;
};

// Adds --device, --threads, --bucket-mb, --overlap/--no-overlap,
// --collective-timeout SECONDS and --check-sync-every N, each validated by
// CLI11 (a bad value is reported with the flag's name).
void add_dist_flags(CLI::App& app, DistOptions& options);

}  // namespace xfer::trainer::dist
