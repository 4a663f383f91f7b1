// trainer: one rank of a data-parallel transfer-learning job.
//
//   trainer --version          versions of everything it was built with
//   trainer build-info         the same, plus what it finds at run time
//
// The `train` and `predict` subcommands arrive with the training job.
#include <cstdio>
#include <iostream>

#include "common/flags.h"
#include "common/logging.h"
#include "trainer/build_info.h"
#include "xfer/config.h"

int main(int argc, char** argv) {
  CLI::App app{"xfer trainer: one rank of a data-parallel transfer-learning job"};
  app.set_version_flag("--version", [] {
    return xfer::trainer::format_build_info(xfer::trainer::collect_build_info());
  });
  app.require_subcommand(1);
  auto* build_info = app.add_subcommand(
      "build-info", "Print the libraries this binary was built with and what it finds at run time");
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;

  if (*build_info) {
    std::cout << xfer::trainer::format_build_info(xfer::trainer::collect_build_info());
    return 0;
  }
  return 1;
}
