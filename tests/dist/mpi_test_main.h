// Shared by the multi-rank GoogleTest binaries: one World and one MPI
// communicator per process, made by mpi_test_main.cc before any test runs.
//
// Every rank runs every test, so tests must call the same collectives in the
// same order on all ranks whatever their assertions find: use EXPECT_*
// (not ASSERT_*) before a collective.
#pragma once

#include "trainer/dist/mpi_communicator.h"
#include "trainer/dist/world.h"

namespace xfer::trainer::dist::mpitest {

World& world();
MpiCommunicator& comm();

}  // namespace xfer::trainer::dist::mpitest
