// coordctl: the command-line client people use to look at a coordinator.
// Everything is in commands.cc (the xfer_coordctl library).
#include <iostream>

#include "coordinator/coordctl/commands.h"

int main(int argc, char** argv) {
  return xfer::coordinator::coordctl::run_coordctl(argc, argv, std::cout, std::cerr);
}
