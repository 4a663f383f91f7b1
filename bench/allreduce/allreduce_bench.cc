// All-reduce benchmark (not a test: it prints figures and checks nothing).
//
//   mpirun --allow-run-as-root -np 2 build/bin/allreduce_bench
//
// Part 1, the same bytes three ways, float32 sum/average:
//   raw MPI     MPI_Allreduce(MPI_IN_PLACE) on the main thread
//   comm        MpiCommunicator::allreduce (communication thread, MPI_Iallreduce)
//   reducer     Reducer::reduce_gradients() over a model whose gradients hold
//               that many bytes in 8 tensors, one 25 MiB bucket or more
//               (divides by the world size, then one bucket all-reduce each)
// with algorithm bandwidth (bytes / time) and bus bandwidth (algbw * 2(n-1)/n,
// the traffic each rank's link carries in a ring all-reduce; nccl-tests' names).
//
// Part 2, backward + gradient reduction of an EfficientNet-B0-shaped model at
// 32x32 (fine-tuning: everything but BatchNorm trains), overlap on and off,
// next to backward alone.
//
// Times are the mean over iterations of the slowest rank's time (each
// iteration starts after a barrier).
#include <mpi.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench/allreduce/b0_shaped.h"
#include "common/flags.h"
#include "common/logging.h"
#include "trainer/dist/mpi_communicator.h"
#include "trainer/dist/reducer.h"
#include "trainer/dist/world.h"

namespace {

using namespace xfer::trainer::dist;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::vector<double> sizes_mib = {1, 4, 16, 64};
  int iterations = 20;
  int b0_iterations = 10;
  int b0_batch = 32;
  std::vector<double> b0_bucket_mb = {25, 4, 1};
  int threads = 1;
  bool skip_b0 = false;
};

// Seconds of one call of fn(), the slowest rank's (every rank starts after a
// barrier). Only the main thread calls MPI here, while the communication
// thread is idle between operations, which MPI_THREAD_SERIALIZED allows
// (calls never overlap).
template <typename Fn>
double time_once(const World& world, Fn&& fn) {
  MPI_Barrier(world.comm());
  const Clock::time_point start = Clock::now();
  fn();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, world.comm());
  return seconds;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// A module with `count` float32 parameters in `tensors` tensors and
// gradients already set (what backward would leave).
struct FlatModel : torch::nn::Module {
  FlatModel(std::int64_t count, int tensors) {
    for (int t = 0; t < tensors; ++t) {
      const std::int64_t n = count / tensors + (t < count % tensors ? 1 : 0);
      torch::Tensor p = register_parameter("p" + std::to_string(t), torch::zeros({n}));
      p.mutable_grad() = torch::ones({n});
    }
  }
};

void bandwidth_table(const World& world, MpiCommunicator& comm, const BenchOptions& options) {
  if (world.rank() == 0) {
    std::printf(
        "\nall-reduce of float32, %d ranks; median of %d iterations, the variants interleaved "
        "so that they share the machine's noise; ms and GB/s (algbw = bytes / time, busbw = "
        "algbw * 2(n-1)/n)\n\n",
        world.size(), options.iterations);
    std::printf(
        "| MiB | raw MPI_Allreduce ms | busbw | communicator ms | busbw | reducer (sum) ms | busbw "
        "| reducer (average) ms | busbw | reducer sum busbw / raw |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  }
  for (double mib : options.sizes_mib) {
    const auto count = static_cast<std::int64_t>(mib * (1 << 20) / 4);
    const double bytes = static_cast<double>(count) * 4;
    std::vector<float> data(static_cast<std::size_t>(count), 1.0f);
    FlatModel sum_model(count, 8);
    FlatModel average_model(count, 8);
    ReducerOptions sum_options;
    sum_options.average = false;
    Reducer sum_reducer(sum_model, comm, sum_options);
    Reducer average_reducer(average_model, comm, ReducerOptions{});
    auto raw = [&] {
      MPI_Allreduce(MPI_IN_PLACE, data.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                    world.comm());
    };
    auto via_comm = [&] {
      comm.allreduce(Buffer{data.data(), static_cast<std::size_t>(count)}, ReduceOp::kSum, "bench")
          ->wait(std::chrono::minutes(1));
    };
    auto summed = [&] { sum_reducer.reduce_gradients(); };
    auto averaged = [&] { average_reducer.reduce_gradients(); };
    for (int i = 0; i < 3; ++i) {  // warm-up: page faults, MPI connections
      raw();
      via_comm();
      summed();
      averaged();
    }
    std::vector<double> t_raw, t_comm, t_sum, t_avg;
    for (int i = 0; i < options.iterations; ++i) {
      t_raw.push_back(time_once(world, raw));
      t_comm.push_back(time_once(world, via_comm));
      t_sum.push_back(time_once(world, summed));
      t_avg.push_back(time_once(world, averaged));
    }
    if (world.rank() == 0) {
      const double factor = 2.0 * (world.size() - 1) / world.size();
      auto busbw = [&](double seconds) { return bytes / seconds / 1e9 * factor; };
      std::printf("| %.0f ", mib);
      for (const std::vector<double>* t : {&t_raw, &t_comm, &t_sum, &t_avg}) {
        const double m = median(*t);
        std::printf("| %.3f | %.2f ", m * 1e3, busbw(m));
      }
      std::printf("| %.2f |\n", busbw(median(t_sum)) / busbw(median(t_raw)));
      std::fflush(stdout);
    }
  }
}

void b0_table(const World& world, MpiCommunicator& comm, const BenchOptions& options) {
  // One model per variant, all with the same weights, so the variants can
  // take turns every iteration and share the machine's noise.
  struct Variant {
    std::string name;
    xfer::bench::B0Shaped model{nullptr};
    std::unique_ptr<Reducer> reducer;
    std::vector<double> seconds;
  };
  std::vector<Variant> variants;
  auto make_model = [] {
    torch::manual_seed(1);
    xfer::bench::B0Shaped model(100);
    model->freeze_batchnorm();
    return model;
  };
  variants.push_back({"backward alone (no reduction)", make_model(), nullptr, {}});
  for (double mb : options.b0_bucket_mb) {
    for (bool overlap : {true, false}) {
      ReducerOptions reducer_options;
      reducer_options.bucket_mb = mb;
      reducer_options.overlap = overlap;
      Variant v{"", make_model(), nullptr, {}};
      v.reducer = std::make_unique<Reducer>(*v.model, comm, reducer_options);
      char name[128];
      std::snprintf(name, sizeof(name), "backward + reduce, %g MiB buckets (%zu), overlap %s", mb,
                    v.reducer->buckets().size(), overlap ? "on" : "off");
      v.name = name;
      variants.push_back(std::move(v));
    }
  }
  std::int64_t trainable = 0;
  std::int64_t all = 0;
  std::int64_t tensors = 0;
  for (const auto& p : variants.front().model->parameters()) {
    all += p.numel();
    ++tensors;
    if (p.requires_grad()) trainable += p.numel();
  }
  torch::Tensor images = torch::randn({options.b0_batch, 3, 32, 32});
  torch::Tensor labels = torch::randint(0, 100, {options.b0_batch}, torch::kInt64);
  for (int i = 0; i < options.b0_iterations + 2; ++i) {
    for (Variant& v : variants) {
      v.model->zero_grad();
      // The forward pass is outside the timed region.
      torch::Tensor loss = torch::nn::functional::cross_entropy(v.model->forward(images), labels);
      const double seconds = time_once(world, [&] {
        if (v.reducer) {
          v.reducer->backward(loss);
        } else {
          loss.backward();
        }
      });
      if (i >= 2) v.seconds.push_back(seconds);  // two warm-up steps
    }
  }
  if (world.rank() == 0) {
    std::printf(
        "\nEfficientNet-B0-shaped model (%lld tensors, %lld values; fine-tuning: %lld trainable "
        "= %.1f MiB of gradients), 32x32, batch %d per rank, %d LibTorch thread(s) per rank; "
        "median of %d steps, variants interleaved\n\n",
        static_cast<long long>(tensors), static_cast<long long>(all),
        static_cast<long long>(trainable), trainable * 4.0 / (1 << 20), options.b0_batch,
        options.threads, options.b0_iterations);
    std::printf("| step part | ms | vs backward alone |\n|---|---:|---:|\n");
    const double base = median(variants.front().seconds);
    for (const Variant& v : variants) {
      const double m = median(v.seconds);
      std::printf("| %s | %.1f | %.3f |\n", v.name.c_str(), m * 1e3, m / base);
    }
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions options;
  CLI::App app("all-reduce benchmark: raw MPI vs communicator vs bucketed reducer; B0 overlap");
  xfer::common::add_config_flag(app);
  app.add_option("--sizes-mib", options.sizes_mib, "message sizes in MiB")->capture_default_str();
  app.add_option("--iterations", options.iterations, "timed iterations per size")
      ->check(CLI::PositiveNumber);
  app.add_option("--b0-iterations", options.b0_iterations, "timed B0 steps per variant")
      ->check(CLI::PositiveNumber);
  app.add_option("--b0-bucket-mb", options.b0_bucket_mb, "bucket sizes for the B0 part")
      ->capture_default_str();
  app.add_option("--b0-batch", options.b0_batch, "B0 batch per rank")->check(CLI::PositiveNumber);
  app.add_option("--threads", options.threads, "LibTorch threads per rank")
      ->check(CLI::PositiveNumber);
  app.add_flag("--skip-b0", options.skip_b0, "only the bandwidth table");
  if (auto rc = xfer::common::parse_flags(app, argc, argv)) return *rc;

  xfer::common::init_logging({"", std::nullopt, "warn"});
  torch::set_num_threads(options.threads);
  std::unique_ptr<World> world = World::init(&argc, &argv);
  {
    MpiCommunicator comm(*world);
    bandwidth_table(*world, comm, options);
    if (!options.skip_b0) b0_table(*world, comm, options);
  }
  world.reset();
  return 0;
}
