// A real coordinator on 127.0.0.1 with a free port, over a small synthetic
// dataset in a temporary directory, plus raw gRPC stubs to call it. The
// service tests use raw stubs (not the client library) so every status code
// the server returns is seen as it is.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "coordinator/server/server.h"
#include "tools/synthetic/synthetic_cifar.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace xfer::coordinator::server::testing {

namespace fs = std::filesystem;

inline constexpr char kAdminToken[] = "admin-token-0123456789abcdef";
inline constexpr char kReadToken[] = "read-token-0123456789abcdef";

// A context with a deadline (and the token when given).
inline std::unique_ptr<grpc::ClientContext> context(const std::string& token = "") {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  return ctx;
}

class CoordinatorFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    root_ = fs::temp_directory_path() /
            ("xfer_service_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(root_);
    tools::synthetic::SyntheticOptions data;
    data.train_count = kTrainRecords;
    data.test_count = kTestRecords;
    data.num_classes = 10;
    data.seed = 3;
    data.num_threads = 1;
    tools::synthetic::write_synthetic_cifar(data, root_ / "data");
    options_.listen = "127.0.0.1:0";
    options_.datasets = {{"synthetic", (root_ / "data").string()}};
    options_.checkpoint_dir = (root_ / "checkpoints").string();
    options_.state_dir = (root_ / "state").string();
  }

  void TearDown() override {
    stubs_.reset();
    coordinator_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // Token files for the admin and read-only roles.
  void enable_auth() {
    std::ofstream(root_ / "admin.token") << kAdminToken << "\n";
    std::ofstream(root_ / "read.token") << kReadToken << "\n";
    options_.token_file = (root_ / "admin.token").string();
    options_.read_token_file = (root_ / "read.token").string();
  }

  void start() {
    coordinator_ = std::make_unique<Coordinator>(options_);
    connect(grpc::InsecureChannelCredentials());
  }

  void restart() {
    stubs_.reset();
    coordinator_.reset();
    start();
  }

  void connect(const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(coordinator_->address(), credentials, args);
    stubs_ = std::make_unique<Stubs>(channel_);
  }

  v1::Run start_run(const std::string& name, int world_size, const std::string& token = "") {
    v1::StartRunRequest request;
    request.set_name(name);
    request.set_dataset("synthetic");
    request.set_world_size(world_size);
    v1::Run run;
    const grpc::Status status = stubs_->runs->StartRun(context(token).get(), request, &run);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return run;
  }

  struct Stubs {
    explicit Stubs(const std::shared_ptr<grpc::Channel>& channel)
        : data(v1::DataService::NewStub(channel)),
          runs(v1::RunService::NewStub(channel)),
          metrics(v1::MetricsService::NewStub(channel)),
          checkpoints(v1::CheckpointService::NewStub(channel)) {}
    std::unique_ptr<v1::DataService::Stub> data;
    std::unique_ptr<v1::RunService::Stub> runs;
    std::unique_ptr<v1::MetricsService::Stub> metrics;
    std::unique_ptr<v1::CheckpointService::Stub> checkpoints;
  };

  static constexpr int kTrainRecords = 200;
  static constexpr int kTestRecords = 50;

  fs::path root_;
  CoordinatorOptions options_;
  std::unique_ptr<Coordinator> coordinator_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stubs> stubs_;
};

}  // namespace xfer::coordinator::server::testing
