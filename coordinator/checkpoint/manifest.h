// The manifest: the one file that says which checkpoints exist. It is JSON,
// written whole and atomically (temporary file, fsync, rename, folder fsync)
// and carries a SHA-256 of its own checkpoint list, so a manifest damaged on
// disk is refused instead of being read as "fewer checkpoints".
//
//   {"format": "xfer-checkpoint-manifest", "version": 1, "next_sequence": 13,
//    "checkpoints": [{"id": ..., "file": ..., "sha256": ..., ...}, ...],
//    "checkpoints_sha256": "<sha256 of the checkpoints array as serialised>"}
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/checkpoint/checkpoint_types.h"

namespace xfer::coordinator::checkpoint {

struct Manifest {
  // The sequence number the next checkpoint gets; never goes down, so an id
  // is never reused.
  std::int64_t next_sequence = 1;
  std::vector<CheckpointRecord> checkpoints;
};

inline constexpr char kManifestFormat[] = "xfer-checkpoint-manifest";
inline constexpr int kManifestVersion = 1;

std::string serialize_manifest(const Manifest& manifest);

// Throws CheckpointError(kDataLoss) naming `path` and what is wrong: not
// JSON, another format or version, a missing or mistyped field, or a list
// whose digest does not match.
Manifest parse_manifest(const std::string& text, const std::string& path);

}  // namespace xfer::coordinator::checkpoint
