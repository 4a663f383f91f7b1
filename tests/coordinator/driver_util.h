// What the test drivers (tensorboard_report_driver, watch_feed_driver) share:
// a client that starts the driver's run, and a main that turns an exception
// into exit status 1.
#pragma once

#include <chrono>
#include <exception>
#include <iostream>
#include <memory>
#include <string>

#include "coordinator/client/coordinator_client.h"

namespace xfer::coordinator::testing {

// A client of `options` (reconnecting for up to 10 s) that has started run
// `run` of `world_size` ranks on the dataset "synthetic".
inline std::unique_ptr<client::CoordinatorClient> start_driver_run(client::ClientOptions options,
                                                                   const std::string& run,
                                                                   int world_size) {
  options.reconnect_window = std::chrono::seconds(10);
  auto coordinator = std::make_unique<client::CoordinatorClient>(options);
  v1::StartRunRequest start;
  start.set_name(run);
  start.set_dataset("synthetic");
  start.set_world_size(world_size);
  coordinator->start_run(start);
  return coordinator;
}

// Runs `body`; an exception is printed as "NAME: what" and gives exit status 1.
template <typename Body>
int run_driver(const char* name, Body&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace xfer::coordinator::testing
