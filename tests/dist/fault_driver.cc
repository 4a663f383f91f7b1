// A small data-parallel training job that can be told to fail, for
// fault_test.sh: one rank kills itself (SIGKILL), hangs outside any
// collective, or throws, at a given step. The test then checks that every
// rank ends, non-zero, within a bound, and that the output names the failed
// rank and the operation.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>

#include <chrono>
#include <thread>

#include "common/flags.h"
#include "common/logging.h"
#include "tests/dist/small_cnn.h"
#include "trainer/dist/communicators.h"
#include "trainer/dist/dist_flags.h"
#include "trainer/dist/model_sync.h"
#include "trainer/dist/reducer.h"

namespace {

using namespace xfer::trainer::dist;

struct FaultOptions {
  DistOptions dist;
  std::string fail = "none";  // none, kill, hang, throw
  int fail_rank = 1;
  int fail_step = 3;
  int steps = 8;
};

void run(const World& world, const FaultOptions& options) {
  DeviceChoice device = choose_device(world, options.dist.device);
  apply_device(device);
  Communicators comms(world, device, options.dist.comm);
  mpitest::SmallCnn model = mpitest::make_small_cnn(7 + static_cast<std::uint64_t>(world.rank()));
  broadcast_module_state(*model, comms.tensors());
  Reducer reducer(*model, comms.tensors(), options.dist.reducer);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-2));
  const std::int64_t batch = 4;
  for (int step = 1; step <= options.steps; ++step) {
    if (world.rank() == options.fail_rank && step == options.fail_step) {
      spdlog::warn("injecting failure '{}' at step {}", options.fail, step);
      if (options.fail == "kill") ::raise(SIGKILL);
      if (options.fail == "hang") {
        for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
      }
      if (options.fail == "throw") {
        throw std::runtime_error("injected failure: the data stream broke at step " +
                                 std::to_string(step));
      }
    }
    auto [images, labels] =
        mpitest::batch_slice(step, world.size() * batch, world.rank() * batch, batch);
    adam.zero_grad();
    reducer.backward(torch::nn::functional::cross_entropy(model->forward(images), labels));
    adam.step();
    if (options.dist.check_sync_every > 0 && step % options.dist.check_sync_every == 0) {
      check_module_in_sync(*model, comms.tensors(), step);
    }
    spdlog::info("step {} done", step);
  }
  comms.host().barrier("end of training");
  spdlog::info("training finished");
}

}  // namespace

int main(int argc, char** argv) {
  FaultOptions options;
  CLI::App app("dist fault-injection driver (tests only)");
  xfer::common::add_config_flag(app);
  add_dist_flags(app, options.dist);
  app.add_option("--fail", options.fail, "none, kill, hang or throw")
      ->check(CLI::IsMember({"none", "kill", "hang", "throw"}));
  app.add_option("--fail-rank", options.fail_rank, "rank that fails");
  app.add_option("--fail-step", options.fail_step, "step at which it fails");
  app.add_option("--steps", options.steps, "steps to train")->check(CLI::PositiveNumber);
  if (auto rc = xfer::common::parse_flags(app, argc, argv)) return *rc;

  xfer::common::init_logging({"", std::nullopt, "info"});
  std::unique_ptr<World> world;
  try {
    world = World::init(&argc, &argv);
    run(*world, options);
  } catch (const std::exception& e) {
    abort_job((world ? world->where() : std::string("rank ?")) + ": training failed: " + e.what(),
              2);
  }
  world.reset();
  return 0;
}
