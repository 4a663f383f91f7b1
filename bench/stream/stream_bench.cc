// How fast the coordinator streams shard batches over loopback, beside a raw
// in-memory gather of the same bytes (the ceiling: no gRPC, no copy to the
// wire). One figure per client count; each client is one rank of a world of
// that size streaming its TRAIN shard of one epoch; last, the same without the
// image bytes (labels_only, what cached head epochs read), over 25 times as
// many epochs (a pass without images is too short to time).
//
//   build/bin/stream_bench [--train N] [--batch B] [--epochs E]
//
// Prints images/s and MB/s (of image bytes) per configuration.
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/dataset/cifar_format.h"
#include "coordinator/dataset/split_spec.h"
#include "coordinator/server/server.h"
#include "coordinator/sharding/shard_plan.h"
#include "tools/synthetic/synthetic_cifar.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
namespace ds = xfer::coordinator::dataset;
using Clock = std::chrono::steady_clock;

struct Figures {
  std::int64_t images = 0;
  double seconds = 0;
};

// Streams `epochs` epochs of rank `rank`'s shard; returns the images read.
std::int64_t stream_rank(const std::string& address, const std::string& run, int rank, int world,
                         int batch, int epochs, bool labels_only) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  auto stub = xfer::v1::DataService::NewStub(channel);
  std::int64_t images = 0;
  for (int epoch = 0; epoch < epochs; ++epoch) {
    xfer::v1::StreamShardRequest request;
    request.set_run(run);
    request.set_split("train");
    request.set_epoch(epoch);
    request.set_rank(rank);
    request.set_world_size(world);
    request.set_batch_size(batch);
    request.set_shuffle(true);
    request.set_seed(1);
    request.set_kind(xfer::v1::SHARD_KIND_TRAIN);
    request.set_labels_only(labels_only);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
    auto reader = stub->StreamShard(&context, request);
    xfer::v1::ShardBatch shard_batch;
    while (reader->Read(&shard_batch)) images += shard_batch.count();
    const grpc::Status status = reader->Finish();
    if (!status.ok()) {
      std::fprintf(stderr, "rank %d: StreamShard failed: %s\n", rank,
                   status.error_message().c_str());
      std::exit(1);
    }
  }
  return images;
}

// Epochs of the labels-only row per epoch of the others.
constexpr int kLabelsOnlyPasses = 25;

Figures grpc_figures(xfer::coordinator::server::Coordinator& coordinator, int world, int batch,
                     int epochs, bool labels_only = false) {
  const std::string run = "bench-" + std::to_string(world) + (labels_only ? "-labels" : "");
  {
    auto stub = xfer::v1::RunService::NewStub(
        grpc::CreateChannel(coordinator.address(), grpc::InsecureChannelCredentials()));
    xfer::v1::StartRunRequest request;
    request.set_name(run);
    request.set_dataset("bench");
    request.set_world_size(world);
    xfer::v1::Run reply;
    grpc::ClientContext context;
    if (!stub->StartRun(&context, request, &reply).ok()) std::exit(1);
  }
  std::vector<std::int64_t> images(static_cast<std::size_t>(world));
  const auto start = Clock::now();
  std::vector<std::thread> clients;
  for (int rank = 0; rank < world; ++rank) {
    clients.emplace_back([&, rank] {
      images[rank] =
          stream_rank(coordinator.address(), run, rank, world, batch, epochs, labels_only);
    });
  }
  for (auto& client : clients) client.join();
  Figures figures;
  figures.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto n : images) figures.images += n;
  return figures;
}

// The same samples gathered into a batch buffer in memory: no gRPC.
Figures memory_figures(const ds::CifarDataset& dataset, int batch, int epochs) {
  const ds::ResolvedSplit split = ds::resolve_split("train", dataset.split_sizes());
  std::vector<std::uint8_t> buffer(static_cast<std::size_t>(batch) * ds::kImageBytes);
  Figures figures;
  const auto start = Clock::now();
  for (int epoch = 0; epoch < epochs; ++epoch) {
    xfer::coordinator::sharding::ShardRequest request;
    request.epoch = epoch;
    request.seed = 1;
    request.batch_size = batch;
    const auto plan = xfer::coordinator::sharding::plan_shard(request, split.size());
    for (std::int64_t b = 0; b < plan.num_batches(); ++b) {
      const auto positions = plan.batch(b);
      for (std::size_t i = 0; i < positions.size(); ++i) {
        const auto [name, index] = split.locate(positions[i]);
        std::memcpy(buffer.data() + i * ds::kImageBytes,
                    dataset.split(*name).image(static_cast<std::size_t>(index)), ds::kImageBytes);
      }
      figures.images += static_cast<std::int64_t>(positions.size());
    }
  }
  figures.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return figures;
}

// MB/s counts image bytes: none for a labels-only stream.
void print(const char* what, const Figures& f, bool with_images = true) {
  const double ips = static_cast<double>(f.images) / f.seconds;
  std::printf("%-34s %9lld images %8.2f s %12.0f images/s %9.1f MB/s\n", what,
              static_cast<long long>(f.images), f.seconds, ips,
              with_images ? ips * static_cast<double>(ds::kImageBytes) / 1e6 : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  int train = 50000, batch = 64, epochs = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int value = std::atoi(argv[i + 1]);
    if (value < 1) {
      std::fprintf(stderr, "%s: expected a positive integer, got '%s'\n", flag.c_str(),
                   argv[i + 1]);
      return 2;
    }
    if (flag == "--train")
      train = value;
    else if (flag == "--batch")
      batch = value;
    else if (flag == "--epochs")
      epochs = value;
    else {
      std::fprintf(stderr, "unknown flag %s (expected --train, --batch, --epochs)\n", flag.c_str());
      return 2;
    }
  }
  const fs::path root =
      fs::temp_directory_path() / ("xfer_stream_bench_" + std::to_string(::getpid()));
  xfer::tools::synthetic::SyntheticOptions data;
  data.train_count = train;
  data.test_count = 100;
  xfer::tools::synthetic::write_synthetic_cifar(data, root / "data");

  xfer::coordinator::server::CoordinatorOptions options;
  options.listen = "127.0.0.1:0";
  options.datasets = {{"bench", (root / "data").string()}};
  options.checkpoint_dir = (root / "ckpt").string();
  options.state_dir = (root / "state").string();
  // Its clients stream without heartbeats: no rank liveness.
  options.rank_timeout_s = 0;
  spdlog::set_level(spdlog::level::warn);
  {
    xfer::coordinator::server::Coordinator coordinator(options);
    std::printf("stream_bench: %d train images, batch %d per rank, %d epochs, loopback\n", train,
                batch, epochs);
    print("in-memory gather (no gRPC)",
          memory_figures(ds::load_cifar100(root / "data"), batch, epochs));
    print("StreamShard, 1 client", grpc_figures(coordinator, 1, batch, epochs));
    print("StreamShard, 2 clients (together)", grpc_figures(coordinator, 2, batch, epochs));
    // What a head phase trained from cached features reads after its first
    // epoch.
    // Without images a pass takes milliseconds, too short to time (one run
    // gave 1.0 M images/s, the next 4.5 M): kLabelsOnlyPasses times as many
    // epochs.
    print("StreamShard labels only, 2 clients",
          grpc_figures(coordinator, 2, batch, epochs * kLabelsOnlyPasses, true), false);
  }
  fs::remove_all(root);
  return 0;
}
