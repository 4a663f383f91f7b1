// The coordinator process as a library: loads datasets, opens the durable
// stores, serves every service plus the standard gRPC health service, and
// stops cleanly. coordinator_main.cc is flags around this; service tests
// run it in-process on 127.0.0.1 with port 0.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

#include "coordinator/server/options.h"

namespace xfer::coordinator::server {

class Coordinator {
 public:
  // Validates the options, loads every dataset, opens (and recovers) the
  // checkpoint store, the metrics history, the run registry and the run
  // reports, and starts serving. A damaged report file does not stop it: it
  // is logged and listed in GetStatus' errors. Throws std::invalid_argument /
  // std::runtime_error / dataset::FormatError naming what was wrong; nothing is left listening
  // when it throws.
  explicit Coordinator(const CoordinatorOptions& options);
  ~Coordinator();

  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // The port actually bound (the one chosen when options.listen ends in :0).
  int port() const;
  // "host:port" with the bound port.
  std::string address() const;

  // Blocks until shutdown() is called from another thread.
  void wait();
  // Stops accepting calls, cancels open streams after `grace`, flushes the
  // stores. Idempotent.
  void shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  // With options.rank_timeout_s > 0: a thread that marks FAILED every
  // running run with a rank silent for longer (RunRegistry::fail_silent_runs).
  void start_liveness_checker();

  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace xfer::coordinator::server
