// Everything the coordinator is configured with, parsed once from flags (or
// a --config file) in coordinator_main.cc and validated by validate().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/server/dataset_registry.h"

namespace xfer::coordinator::server {

struct CoordinatorOptions {
  // host:port to listen on; port 0 picks a free port (tests).
  // Default: 127.0.0.1:50051 (loopback only: opening it wider is a choice).
  std::string listen = "127.0.0.1:50051";

  // Datasets served by name. REQUIRES: at least one.
  std::vector<DatasetSource> datasets;

  // Where checkpoint blobs and their manifest live. REQUIRES: non-empty.
  std::string checkpoint_dir;

  // Metrics history (metrics/), run records (runs.json), run reports
  // (reports/). REQUIRES: non-empty.
  std::string state_dir;

  // Admin token (every RPC) and read-only token (monitoring RPCs), one per
  // file. Default: none (no auth; see auth.h).
  std::string token_file;
  std::string read_token_file;

  // Allow listening on an address other than loopback with no token file
  // (anyone who reaches the port may then write). Default: false: such a
  // --listen is refused at start-up.
  bool insecure = false;

  // TLS: both or neither. Default: plaintext.
  std::string tls_cert_file;
  std::string tls_key_file;

  // Largest gRPC message either way; a ShardBatch of B images is about
  // B * 3 KiB. Default: 64 MiB. REQUIRES: 1 MiB .. 1 GiB.
  std::int64_t max_message_bytes = 64 << 20;

  // Largest per-rank batch StreamShard accepts. Default: 4096.
  int max_batch_size = 4096;

  // Checkpoint retention per run: the best K by the checkpoint's metric plus
  // the last K by (epoch, step). Default: 1 and 2.
  int keep_best = 1;
  int keep_last = 2;

  // Liveness: a RUNNING run one of whose ranks (of its current attempt) has
  // not sent a Heartbeat for longer than this is marked FAILED, naming the
  // rank. A rank not heard from yet counts from StartRun, or from the
  // coordinator's start for runs it loaded at start-up. 0 disables the
  // check. Default: 60. REQUIRES: 0..86400 (a day).
  int rank_timeout_s = 60;

  // Where TensorBoard event files go, one directory per run
  // (coordinator/tensorboard/run_event_writers.h). Created if missing.
  // Default: empty (none are written).
  std::string tensorboard_dir;

  // Test hook (--test-crash-in-put N, hidden): on the first data chunk of
  // the N-th checkpoint Put this process receives, log one line and SIGKILL
  // itself, so a test can kill the coordinator in the middle of an upload
  // deterministically. Default: 0 (off). Never set it in production.
  int test_crash_in_put = 0;
};

// Throws std::invalid_argument naming the flag, the value and what was
// expected.
void validate(const CoordinatorOptions& options);

}  // namespace xfer::coordinator::server
