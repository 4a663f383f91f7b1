// The NCCL communicator on real GPUs: closed-form all-reduce (sum, average)
// and broadcast on cudaMalloc'd buffers, so it needs no CUDA LibTorch. NCCL
// needs one GPU per rank: on a host with fewer CUDA devices than local ranks
// (every build machine: no GPU at all) each test skips.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <numeric>
#include <vector>

#include "tests/dist/mpi_test_main.h"
#include "trainer/dist/nccl_communicator.h"

namespace xfer::trainer::dist {
namespace {

using mpitest::comm;
using mpitest::world;

class NcclTest : public ::testing::Test {
 protected:
  // Every rank takes the same skip decision only if the GPU counts agree;
  // the decision is therefore made from the gathered counts.
  void SetUp() override {
    const int mine = cuda_device_count() >= world().local_size() ? 1 : 0;
    std::vector<int> all = comm().allgather_value(mine, "nccl test: enough GPUs?");
    if (std::accumulate(all.begin(), all.end(), 0) != comm().size()) {
      GTEST_SKIP() << "needs one CUDA device per rank; this host has " << cuda_device_count()
                   << " for " << world().local_size() << " local rank(s)";
    }
    CommunicatorOptions options;
    options.timeout = std::chrono::seconds(60);
    nccl_ = std::make_unique<NcclCommunicator>(world(), comm(), world().local_rank(), options);
  }
  void TearDown() override { nccl_.reset(); }

  std::unique_ptr<NcclCommunicator> nccl_;
};

template <typename T>
struct DeviceArray {
  explicit DeviceArray(std::size_t n) : count(n) {
    EXPECT_EQ(cudaMalloc(&data, n * sizeof(T)), cudaSuccess);
  }
  ~DeviceArray() { cudaFree(data); }
  void upload(const std::vector<T>& host) {
    EXPECT_EQ(cudaMemcpy(data, host.data(), count * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> host(count);
    EXPECT_EQ(cudaMemcpy(host.data(), data, count * sizeof(T), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return host;
  }
  T* data = nullptr;
  std::size_t count;
};

TEST_F(NcclTest, AllreduceClosedForm) {
  const int w = comm().size();
  const int r = comm().rank();
  for (std::size_t n : {std::size_t{1}, std::size_t{1023}, std::size_t{10'000'000}}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage}) {
      DeviceArray<double> array(n);
      std::vector<double> host(n);
      for (std::size_t i = 0; i < n; ++i) host[i] = static_cast<double>(r) * n + i;
      array.upload(host);
      Buffer buffer{array.data, n, DataType::kFloat64, DeviceType::kCuda, world().local_rank()};
      ASSERT_TRUE(nccl_->allreduce(buffer, op, "closed form")->wait(std::chrono::seconds(60)));
      std::vector<double> out = array.download();
      std::int64_t wrong = 0;
      for (std::size_t i = 0; i < n; ++i) {
        double expected = static_cast<double>(n) * w * (w - 1) / 2.0 + static_cast<double>(w) * i;
        if (op == ReduceOp::kAverage) expected /= w;
        if (std::abs(out[i] - expected) > 1e-9 * std::abs(expected)) ++wrong;
      }
      EXPECT_EQ(wrong, 0) << "n=" << n << " op=" << name_of(op);
    }
  }
}

TEST_F(NcclTest, BroadcastFromLastRank) {
  const int root = comm().size() - 1;
  DeviceArray<float> array(4097);
  array.upload(std::vector<float>(4097, comm().rank() == root ? 2.5f : -1.f));
  nccl_->broadcast(
      Buffer{array.data, array.count, DataType::kFloat32, DeviceType::kCuda, world().local_rank()},
      root, "broadcast");
  for (float v : array.download()) {
    ASSERT_EQ(v, 2.5f);
  }
}

TEST_F(NcclTest, RejectsHostMemory) {
  float value = 0;
  EXPECT_THROW(nccl_->allreduce(Buffer{&value, 1}, ReduceOp::kSum, "host"), std::invalid_argument);
}

TEST(NcclBuild, ReportsItsVersion) {
  // Runs everywhere: the library is linked even without a GPU.
  EXPECT_EQ(nccl_version().rfind("2.", 0), 0u) << nccl_version();
  EXPECT_GE(cuda_device_count(), 0);
}

}  // namespace
}  // namespace xfer::trainer::dist
