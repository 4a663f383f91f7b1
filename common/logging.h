// One log format for every binary: time, level, host, rank, message.
//
//   2026-11-28 15:30:01.123 I host-1 r0 epoch 3/10 ...
//
// The rank is read from the launcher's environment (OMPI_COMM_WORLD_RANK,
// PMIX_RANK, PMI_RANK, SLURM_PROCID) when not given, so lines logged before
// MPI is up already carry it. Processes that are not ranks (the coordinator,
// coordctl, tools) show their component name instead.
#pragma once

#include <optional>
#include <string>

namespace xfer::common {

struct LogOptions {
  // Shown in place of the rank by processes that are not ranks.
  std::string component;
  // Rank to show; when empty, taken from the launcher's environment.
  std::optional<int> rank;
  // trace, debug, info, warn, error, critical or off. Default: info.
  std::string level = "info";
};

// Installs the default spdlog logger (stderr, colour when a terminal) with
// the pattern above. Throws std::invalid_argument for an unknown level.
void init_logging(const LogOptions& options);

// Re-labels every later line with `rank` (after MPI_Init knows it).
void set_log_rank(int rank);

// The rank the launcher gave this process, if any (see above).
std::optional<int> launcher_rank();

// This machine's hostname, or "unknown-host".
std::string hostname();

// The accepted --log-level values, for flag validation and help text.
const char* log_level_names();

}  // namespace xfer::common
