// main() for the multi-rank GoogleTest binaries. The process exits non-zero
// when any rank had a failure (the counts are summed, as nccl-tests do), so
// mpirun's exit status and ctest see a failure on any rank.
#include "tests/dist/mpi_test_main.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "common/logging.h"

namespace xfer::trainer::dist::mpitest {
namespace {
std::unique_ptr<World> g_world;
std::unique_ptr<MpiCommunicator> g_comm;
}  // namespace

World& world() { return *g_world; }
MpiCommunicator& comm() { return *g_comm; }

}  // namespace xfer::trainer::dist::mpitest

int main(int argc, char** argv) {
  using namespace xfer::trainer::dist;
  ::testing::InitGoogleTest(&argc, argv);
  xfer::common::init_logging({"", std::nullopt, "warn"});
  mpitest::g_world = World::init(&argc, &argv);
  CommunicatorOptions options;
  // Tests must fail, not hang: far below ctest's TIMEOUT.
  options.timeout = std::chrono::seconds(60);
  mpitest::g_comm = std::make_unique<MpiCommunicator>(*mpitest::g_world, options);

  const int failed = RUN_ALL_TESTS() == 0 ? 0 : 1;
  std::vector<int> all = mpitest::g_comm->allgather_value(failed, "test results");
  int ranks_failed = 0;
  for (int f : all) ranks_failed += f;
  if (mpitest::g_world->rank() == 0 && ranks_failed > 0) {
    std::fprintf(stderr, "%d of %d rank(s) had failing tests\n", ranks_failed,
                 mpitest::g_world->size());
  }
  mpitest::g_comm.reset();
  mpitest::g_world.reset();
  return ranks_failed > 0 ? 1 : 0;
}
