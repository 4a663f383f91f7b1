// Closed-form checks of the MPI communicator (run under mpirun -np 1, 2, 3):
// element i of rank r holds r * n + i, so the sum over W ranks is
// n * W * (W - 1) / 2 + W * i. Each rank counts its wrong elements; the test
// fails on any rank's count.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "tests/dist/mpi_test_main.h"
#include "trainer/dist/device.h"
#include "trainer/dist/dist_flags.h"

namespace xfer::trainer::dist {
namespace {

using mpitest::comm;
using mpitest::world;

constexpr auto kWait = std::chrono::seconds(60);

template <typename T>
constexpr DataType type_of() {
  return std::is_same_v<T, float> ? DataType::kFloat32 : DataType::kFloat64;
}

// Wrong elements after an all-reduce of `n` elements, checked against the
// closed form. float32 cannot hold r * n + i exactly once it passes 2^24, so
// the expectation is computed from the same rounded inputs, in double, and
// float32 results may differ from it by the roundings of W - 1 additions.
template <typename T>
std::int64_t wrong_after_allreduce(std::size_t n, ReduceOp op) {
  const int w = comm().size();
  const int r = comm().rank();
  std::vector<T> data(n);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<T>(static_cast<double>(r) * n + i);
  auto work = comm().allreduce(Buffer{data.data(), n, type_of<T>()}, op, "closed form");
  EXPECT_TRUE(work->wait(kWait));
  EXPECT_TRUE(work->done());
  std::int64_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double expected = 0.0;
    for (int q = 0; q < w; ++q) {
      expected += static_cast<double>(static_cast<T>(static_cast<double>(q) * n + i));
    }
    if (op == ReduceOp::kAverage) expected /= w;
    const double got = data[i];
    const double tolerance =
        std::is_same_v<T, float> ? std::abs(expected) * 4 * w * 6e-8 : 0.0;  // exact for f64
    if (std::abs(got - expected) > tolerance) {
      if (wrong < 3) {
        ADD_FAILURE() << "rank " << r << " element " << i << " of " << n << ": got " << got
                      << ", expected " << expected;
      }
      ++wrong;
    }
  }
  // The closed form itself, for the exact float64 case.
  if (std::is_same_v<T, double> && op == ReduceOp::kSum && n > 0) {
    const std::size_t i = n - 1;
    const double closed = static_cast<double>(n) * w * (w - 1) / 2.0 + static_cast<double>(w) * i;
    EXPECT_EQ(static_cast<double>(data[i]), closed);
  }
  return wrong;
}

class ClosedForm : public ::testing::TestWithParam<std::tuple<std::size_t, bool, ReduceOp>> {};

TEST_P(ClosedForm, AllreduceMatches) {
  const auto [n, is_double, op] = GetParam();
  const std::int64_t wrong =
      is_double ? wrong_after_allreduce<double>(n, op) : wrong_after_allreduce<float>(n, op);
  std::vector<std::int64_t> all = comm().allgather_value(wrong, "wrong counts");
  EXPECT_EQ(std::accumulate(all.begin(), all.end(), std::int64_t{0}), 0)
      << "wrong elements summed over ranks, n=" << n;
}

INSTANTIATE_TEST_SUITE_P(SizesTypesOps, ClosedForm,
                         ::testing::Combine(::testing::Values(std::size_t{1}, std::size_t{1023},
                                                              std::size_t{10'000'000}),
                                            ::testing::Bool(),
                                            ::testing::Values(ReduceOp::kSum, ReduceOp::kAverage)),
                         [](const auto& param_info) {
                           return "n" + std::to_string(std::get<0>(param_info.param)) +
                                  (std::get<1>(param_info.param) ? "_float64_" : "_float32_") +
                                  name_of(std::get<2>(param_info.param));
                         });

TEST(Collectives, IntegerSumIsExact) {
  std::vector<std::int64_t> data(5);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = comm().rank() * 1'000'000'000'000LL + i;
  ASSERT_TRUE(
      comm()
          .allreduce(Buffer{data.data(), data.size(), DataType::kInt64}, ReduceOp::kSum, "int64")
          ->wait(kWait));
  const std::int64_t w = comm().size();
  for (std::size_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(data[i], 1'000'000'000'000LL * w * (w - 1) / 2 + w * static_cast<std::int64_t>(i));
  }
}

TEST(Collectives, ManyOutstandingWaitedInReverse) {
  const int w = comm().size();
  std::vector<std::vector<float>> buffers(8, std::vector<float>(4099));
  std::vector<std::shared_ptr<Work>> works;
  for (std::size_t b = 0; b < buffers.size(); ++b) {
    for (std::size_t i = 0; i < buffers[b].size(); ++i) buffers[b][i] = float(b + comm().rank());
    works.push_back(comm().allreduce(Buffer{buffers[b].data(), buffers[b].size()}, ReduceOp::kSum,
                                     "bucket " + std::to_string(b)));
  }
  for (std::size_t b = works.size(); b-- > 0;) EXPECT_TRUE(works[b]->wait(kWait));
  for (std::size_t b = 0; b < buffers.size(); ++b) {
    EXPECT_EQ(buffers[b].front(), float(w * b + w * (w - 1) / 2)) << "buffer " << b;
    EXPECT_EQ(buffers[b].back(), float(w * b + w * (w - 1) / 2)) << "buffer " << b;
  }
}

TEST(Collectives, WaitTimesOutWhileAPeerIsLateThenCompletes) {
  if (comm().size() < 2) GTEST_SKIP() << "needs two ranks";
  // The last rank joins 300 ms late: the others' short wait must report
  // "not yet" (false) without failing the operation; a second wait succeeds.
  const bool late = comm().rank() == comm().size() - 1;
  if (late) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  double value = 1.0;
  auto work = comm().allreduce(Buffer{&value, 1, DataType::kFloat64}, ReduceOp::kSum, "late");
  if (!late) {
    EXPECT_FALSE(work->wait(std::chrono::milliseconds(20)));
    EXPECT_FALSE(work->done());
  }
  EXPECT_TRUE(work->wait(kWait));
  EXPECT_EQ(value, comm().size());
}

TEST(Collectives, BroadcastFromEveryRoot) {
  for (int root = 0; root < comm().size(); ++root) {
    std::vector<double> data(1023, comm().rank() == root ? root + 0.5 : -1.0);
    comm().broadcast(Buffer{data.data(), data.size(), DataType::kFloat64}, root, "bcast");
    for (double v : data) {
      EXPECT_EQ(v, root + 0.5) << "root " << root;
      if (v != root + 0.5) break;
    }
  }
}

TEST(Collectives, AllgatherAndBarrier) {
  struct Value {
    int rank;
    double square;
  };
  std::vector<Value> all =
      comm().allgather_value(Value{comm().rank(), double(comm().rank()) * comm().rank()}, "values");
  ASSERT_EQ(all.size(), static_cast<std::size_t>(comm().size()));
  for (int r = 0; r < comm().size(); ++r) {
    EXPECT_EQ(all[static_cast<std::size_t>(r)].rank, r);
    EXPECT_EQ(all[static_cast<std::size_t>(r)].square, double(r) * r);
  }
  comm().barrier("test barrier");
}

TEST(Collectives, RejectsBadInputsWithoutCommunicating) {
  float f = 0;
  std::int32_t i = 0;
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  {
    std::string m = message([&] {
      comm().allreduce(Buffer{&i, 1, DataType::kInt32}, ReduceOp::kAverage, "x");
    });
    EXPECT_NE(m.find("average needs a float32 or float64 buffer, got int32"), std::string::npos)
        << m;
    m = message([&] {
      comm().allreduce(Buffer{&f, 1, DataType::kFloat32, DeviceType::kCuda}, ReduceOp::kSum, "x");
    });
    EXPECT_NE(m.find("cuda memory"), std::string::npos) << m;
    m = message([&] { comm().allreduce(Buffer{nullptr, 3}, ReduceOp::kSum, "x"); });
    EXPECT_NE(m.find("null data pointer"), std::string::npos) << m;
    m = message([&] { comm().broadcast(Buffer{&f, 1}, comm().size(), "x"); });
    EXPECT_NE(m.find("root " + std::to_string(comm().size()) + " is not a rank"), std::string::npos)
        << m;
    m = message([&] { comm().allgather(nullptr, 0, "x"); });
    EXPECT_NE(m.find("at least one byte"), std::string::npos) << m;
  }
  // Nothing was started: the next collective still pairs up across ranks.
  comm().barrier("after bad inputs");
}

TEST(Collectives, OneMpiCommunicatorPerProcess) {
  // A second one would make MPI calls from a second thread.
  EXPECT_THROW(MpiCommunicator second(world()), std::logic_error);
  CommunicatorOptions bad;
  bad.timeout = std::chrono::milliseconds(0);
  EXPECT_THROW(MpiCommunicator invalid(world(), bad), std::invalid_argument);
}

TEST(WorldTest, TopologyOnOneHost) {
  const World& w = world();
  EXPECT_EQ(w.size(), comm().size());
  ASSERT_EQ(w.peers().size(), static_cast<std::size_t>(w.size()));
  // ctest starts every rank on this machine.
  EXPECT_EQ(w.local_size(), w.size());
  EXPECT_EQ(w.local_rank(), w.rank());
  EXPECT_EQ(w.peers()[static_cast<std::size_t>(w.rank())].pid, static_cast<long>(::getpid()));
  std::set<long> pids;
  for (const PeerInfo& p : w.peers()) {
    EXPECT_EQ(p.host, w.host());
    pids.insert(p.pid);
  }
  EXPECT_EQ(pids.size(), w.peers().size());
  EXPECT_TRUE(dead_local_peers(w.peers(), w.rank()).empty());
  EXPECT_NE(w.where().find("rank " + std::to_string(w.rank()) + "/"), std::string::npos);
}

TEST(WorldTest, DeadLocalPeerIsNamed) {
  // A pid that surely does not exist stands in for a killed rank.
  std::vector<PeerInfo> peers = world().peers();
  PeerInfo ghost{static_cast<int>(peers.size()), 0x3ffffff0, world().host()};
  peers.push_back(ghost);
  std::vector<PeerInfo> dead = dead_local_peers(peers, world().rank());
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(describe_peers(dead), "rank " + std::to_string(ghost.rank) + " (pid " +
                                      std::to_string(ghost.pid) + " on " + world().host() + ")");
}

TEST(DeviceTest, CpuThreadsShareTheHost) {
  DeviceChoice choice = choose_device(world(), DeviceOptions{"cpu", 0});
  EXPECT_FALSE(choice.cuda);
  const int expected = affinity_cpus() < host_cpus()
                           ? affinity_cpus()
                           : std::max(1, host_cpus() / world().local_size());
  EXPECT_EQ(choice.cpu_threads, expected);
  EXPECT_EQ(choose_device(world(), DeviceOptions{"cpu", 3}).cpu_threads, 3);
  EXPECT_EQ(choose_device(world(), DeviceOptions{"cpu", 3}).describe(), "cpu (3 threads)");
  EXPECT_THROW(choose_device(world(), DeviceOptions{"tpu", 0}), std::invalid_argument);
  EXPECT_THROW(choose_device(world(), DeviceOptions{"cpu", -1}), std::invalid_argument);
}

TEST(DistFlags, ParseAndValidate) {
  DistOptions options;
  CLI::App app("test");
  add_dist_flags(app, options);
  std::vector<std::string> args = {"--no-overlap",
                                   "--collective-timeout",
                                   "2.5",
                                   "--bucket-mb",
                                   "0.5",
                                   "--check-sync-every",
                                   "7",
                                   "--threads",
                                   "2"};
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  app.parse(reversed);
  EXPECT_FALSE(options.reducer.overlap);
  EXPECT_EQ(options.comm.timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(options.reducer.timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(options.reducer.bucket_mb, 0.5);
  EXPECT_EQ(options.check_sync_every, 7);
  EXPECT_EQ(options.device.cpu_threads, 2);

  for (std::vector<std::string> bad : {std::vector<std::string>{"0", "--bucket-mb"},
                                       {"-1", "--collective-timeout"},
                                       {"gpu", "--device"},
                                       {"-3", "--check-sync-every"}}) {
    DistOptions fresh;
    CLI::App again("test");
    add_dist_flags(again, fresh);
    EXPECT_THROW(again.parse(bad), CLI::ValidationError) << bad[1];
  }
}

}  // namespace
}  // namespace xfer::trainer::dist
