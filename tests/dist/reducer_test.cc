// The Reducer against its specification (run under mpirun -np 1, 2, 3):
//   * equivalence: W ranks x batch B end with the parameters of 1 rank x
//     batch W*B (Adam, K steps), for tiny, small and huge buckets, and across
//     a head -> fine-tune phase switch;
//   * a negative control: without the reducer the same comparison fails, so
//     the check can fail;
//   * overlap: the first bucket's all-reduce is launched before backward's
//     last gradient hook (order, not time);
//   * start-up broadcast, the drift check and model-mismatch errors.
#include "trainer/dist/reducer.h"

#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/dist/mpi_test_main.h"
#include "tests/dist/small_cnn.h"
#include "trainer/dist/model_sync.h"

namespace xfer::trainer::dist {
namespace {

using mpitest::batch_slice;
using mpitest::comm;
using mpitest::make_small_cnn;
using mpitest::SmallCnn;

constexpr std::int64_t kBatch = 4;  // per rank
constexpr int kSteps = 5;
constexpr std::uint64_t kSeed = 7;
constexpr double kRelativeTolerance = 1e-5;

struct Phase {
  bool base_frozen;
  double lr;
  int steps;
  // Adam is the trainer's optimizer, but it is nearly blind to a gradient
  // scale (m / sqrt(v)): a reducer that summed instead of averaging would
  // pass with Adam alone. SGD with momentum sees the scale.
  bool sgd = false;
};

std::unique_ptr<torch::optim::Optimizer> make_optimizer(SmallCnn& model, const Phase& phase) {
  if (phase.sgd) {
    return std::make_unique<torch::optim::SGD>(model->parameters(),
                                               torch::optim::SGDOptions(phase.lr).momentum(0.9));
  }
  return std::make_unique<torch::optim::Adam>(model->parameters(),
                                              torch::optim::AdamOptions(phase.lr));
}

// One rank's training: its slice of each global batch, gradients averaged by
// `reducer` (or not at all when it is null).
void train(SmallCnn& model, Reducer* reducer, const std::vector<Phase>& phases) {
  const std::int64_t w = comm().size();
  std::int64_t step = 0;
  for (const Phase& phase : phases) {
    model->freeze_base(phase.base_frozen);
    std::unique_ptr<torch::optim::Optimizer> optimizer = make_optimizer(model, phase);
    for (int s = 0; s < phase.steps; ++s, ++step) {
      auto [images, labels] = batch_slice(step, w * kBatch, comm().rank() * kBatch, kBatch);
      optimizer->zero_grad();
      torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(images), labels);
      if (reducer != nullptr) {
        reducer->backward(loss);
      } else {
        loss.backward();
      }
      optimizer->step();
    }
  }
}

// The single-process run with the whole global batch.
SmallCnn train_reference(const std::vector<Phase>& phases) {
  SmallCnn model = make_small_cnn(kSeed);
  const std::int64_t global = comm().size() * kBatch;
  std::int64_t step = 0;
  for (const Phase& phase : phases) {
    model->freeze_base(phase.base_frozen);
    std::unique_ptr<torch::optim::Optimizer> optimizer = make_optimizer(model, phase);
    for (int s = 0; s < phase.steps; ++s, ++step) {
      auto [images, labels] = batch_slice(step, global, 0, global);
      optimizer->zero_grad();
      torch::nn::functional::cross_entropy(model->forward(images), labels).backward();
      optimizer->step();
    }
  }
  return model;
}

// Largest ||a - b|| / ||b|| over the parameters, and the tensor it is in.
std::pair<double, std::string> worst_relative_error(SmallCnn& a, SmallCnn& b) {
  auto pa = a->named_parameters();
  auto pb = b->named_parameters();
  double worst = 0.0;
  std::string where;
  for (const auto& item : pa) {
    const torch::Tensor& x = item.value();
    const torch::Tensor& y = pb[item.key()];
    const double rel = ((x - y).norm() / y.norm().clamp_min(1e-30)).item<double>();
    if (rel > worst) {
      worst = rel;
      where = item.key();
    }
  }
  return {worst, where};
}

// Every rank starts from a different initialisation: the broadcast must make
// them rank 0's (which is the reference's).
SmallCnn make_rank_model() {
  SmallCnn model = make_small_cnn(kSeed + static_cast<std::uint64_t>(comm().rank()));
  broadcast_module_state(*model, comm());
  return model;
}

class Equivalence : public ::testing::TestWithParam<std::tuple<double, bool>> {
 protected:
  void SetUp() override { torch::set_num_threads(1); }
};

TEST_P(Equivalence, RanksTimesBatchEqualsOneRankWithGlobalBatch) {
  const auto [bucket_mb, sgd] = GetParam();
  SmallCnn model = make_rank_model();
  ReducerOptions options;
  options.bucket_mb = bucket_mb;
  Reducer reducer(*model, comm(), options);

  const std::size_t trainable = 6;  // conv1, conv2, head: weight and bias
  if (bucket_mb < 1e-6) {
    EXPECT_EQ(reducer.buckets().size(), trainable) << "tiny buckets hold one tensor each";
  } else if (bucket_mb > 1.0) {
    EXPECT_EQ(reducer.buckets().size(), 1u) << "a huge bucket holds all";
  } else {
    EXPECT_GT(reducer.buckets().size(), 1u);
    EXPECT_LT(reducer.buckets().size(), trainable);
  }
  // Reverse registration order: the head's bias comes first.
  const std::vector<std::string> names = reducer.parameter_names();
  EXPECT_EQ(names[reducer.buckets().front().params.front()], "head.bias");

  const std::vector<Phase> phases = {{/*base_frozen=*/false, /*lr=*/1e-2, kSteps, sgd}};
  train(model, &reducer, phases);
  EXPECT_EQ(reducer.steps(), kSteps);
  EXPECT_NO_THROW(check_module_in_sync(*model, comm(), kSteps));

  if (comm().rank() == 0) {
    SmallCnn reference = train_reference(phases);
    auto [error, tensor] = worst_relative_error(model, reference);
    std::printf("%d ranks, %zu bucket(s), %s: worst relative error %.3g in '%s'\n", comm().size(),
                reducer.buckets().size(), sgd ? "SGD" : "Adam", error, tensor.c_str());
    EXPECT_LE(error, kRelativeTolerance)
        << comm().size() << " ranks x batch " << kBatch << " vs 1 x " << comm().size() * kBatch
        << ": worst relative error in '" << tensor << "'";
    // The weights moved: the comparison is not between two initialisations.
    SmallCnn initial = make_small_cnn(kSeed);
    EXPECT_GT(worst_relative_error(model, initial).first, 1e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(BucketSizes, Equivalence,
                         ::testing::Combine(::testing::Values(1e-9, 0.001, 25.0, 1e6),
                                            ::testing::Bool()),
                         [](const auto& param_info) {
                           const double mb = std::get<0>(param_info.param);
                           const std::string buckets = mb < 1e-6   ? "OneTensorPerBucket"
                                                       : mb < 1.0  ? "SmallBuckets"
                                                       : mb < 100. ? "Default25MiB"
                                                                   : "OneBucket";
                           return buckets + (std::get<1>(param_info.param) ? "_SGD" : "_Adam");
                         });

TEST(ReducerTest, PhaseSwitchRebuildsBucketsAndStaysEquivalent) {
  torch::set_num_threads(1);
  SmallCnn model = make_rank_model();
  model->freeze_base(true);
  ReducerOptions options;
  options.bucket_mb = 0.001;
  Reducer reducer(*model, comm(), options);
  const std::int64_t head = model->head->weight.numel() + model->head->bias.numel();
  EXPECT_EQ(reducer.reduced_numel(), head) << "the head phase reduces only the head";

  const std::vector<Phase> phases = {{true, 1e-2, 3}, {false, 1e-3, 3}};
  train(model, &reducer, phases);
  const std::int64_t all = head + model->conv1->weight.numel() + model->conv1->bias.numel() +
                           model->conv2->weight.numel() + model->conv2->bias.numel();
  EXPECT_EQ(reducer.reduced_numel(), all) << "fine-tuning reduces every unfrozen tensor";
  EXPECT_FALSE(model->bn1->weight.grad().defined()) << "frozen BatchNorm got a gradient";
  EXPECT_NO_THROW(check_module_in_sync(*model, comm(), 6));

  if (comm().rank() == 0) {
    SmallCnn reference = train_reference(phases);
    auto [error, tensor] = worst_relative_error(model, reference);
    EXPECT_LE(error, kRelativeTolerance) << "worst in '" << tensor << "'";
  }
}

TEST(ReducerTest, WithoutReductionTheRanksDivergeAndTheChecksSayWhere) {
  if (comm().size() < 2) GTEST_SKIP() << "needs two ranks";
  torch::set_num_threads(1);
  SmallCnn model = make_rank_model();
  const std::vector<Phase> phases = {{false, 1e-2, kSteps}};
  train(model, nullptr, phases);  // local gradients only
  try {
    check_module_in_sync(*model, comm(), kSteps);
    ADD_FAILURE() << "the drift check missed ranks that never reduced";
  } catch (const DivergenceError& e) {
    EXPECT_NE(std::string(e.what()).find("diverged across ranks at step 5"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("on rank 1 differs from rank 0"), std::string::npos)
        << e.what();
  }
  if (comm().rank() == 0) {
    SmallCnn reference = train_reference(phases);
    EXPECT_GT(worst_relative_error(model, reference).first, 100 * kRelativeTolerance)
        << "the equivalence comparison cannot tell reduced from unreduced training";
  }
}

TEST(ReducerTest, SummingInsteadOfAveragingFailsTheEquivalence) {
  if (comm().size() < 2) GTEST_SKIP() << "needs two ranks";
  torch::set_num_threads(1);
  SmallCnn model = make_rank_model();
  ReducerOptions options;
  options.average = false;
  Reducer reducer(*model, comm(), options);
  const std::vector<Phase> phases = {{false, 1e-2, kSteps, /*sgd=*/true}};
  train(model, &reducer, phases);
  EXPECT_NO_THROW(check_module_in_sync(*model, comm(), kSteps)) << "ranks agree, but all wrong";
  if (comm().rank() == 0) {
    SmallCnn reference = train_reference(phases);
    EXPECT_GT(worst_relative_error(model, reference).first, 100 * kRelativeTolerance)
        << "the equivalence check cannot tell a sum from an average";
  }
}

TEST(ReducerTest, FirstBucketLaunchesBeforeBackwardEnds) {
  torch::set_num_threads(1);
  SmallCnn model = make_rank_model();
  ReducerOptions options;
  options.bucket_mb = 1e-9;  // one tensor per bucket
  options.trace = true;
  Reducer reducer(*model, comm(), options);
  auto [images, labels] = batch_slice(0, comm().size() * kBatch, comm().rank() * kBatch, kBatch);
  reducer.backward(torch::nn::functional::cross_entropy(model->forward(images), labels));

  std::vector<TraceEvent> trace = reducer.take_trace();
  std::ptrdiff_t first_launch = -1;
  std::ptrdiff_t last_hook = -1;
  std::vector<std::size_t> launches;
  std::size_t hooks = 0;
  std::size_t done = 0;
  for (std::size_t i = 0; i < trace.size(); ++i) {
    if (trace[i].kind == TraceEvent::Kind::kLaunch) {
      if (first_launch < 0) first_launch = static_cast<std::ptrdiff_t>(i);
      launches.push_back(trace[i].index);
    } else if (trace[i].kind == TraceEvent::Kind::kHook) {
      last_hook = static_cast<std::ptrdiff_t>(i);
      ++hooks;
    } else {
      ++done;
    }
  }
  EXPECT_EQ(hooks, 6u);
  EXPECT_EQ(done, reducer.buckets().size());
  ASSERT_EQ(launches.size(), reducer.buckets().size());
  for (std::size_t b = 0; b < launches.size(); ++b) EXPECT_EQ(launches[b], b) << "launch order";
  EXPECT_GE(first_launch, 0);
  EXPECT_LT(first_launch, last_hook)
      << "bucket 0 was all-reduced only after backward produced its last gradient";
}

TEST(ReducerTest, WithoutOverlapEveryLaunchFollowsBackward) {
  torch::set_num_threads(1);
  SmallCnn model = make_rank_model();
  ReducerOptions options;
  options.bucket_mb = 1e-9;
  options.trace = true;
  options.overlap = false;
  Reducer reducer(*model, comm(), options);
  auto [images, labels] = batch_slice(0, comm().size() * kBatch, comm().rank() * kBatch, kBatch);
  reducer.backward(torch::nn::functional::cross_entropy(model->forward(images), labels));
  std::vector<TraceEvent> trace = reducer.take_trace();
  bool launched = false;
  for (const TraceEvent& e : trace) {
    if (e.kind == TraceEvent::Kind::kLaunch) launched = true;
    if (e.kind == TraceEvent::Kind::kHook) {
      EXPECT_FALSE(launched) << "a launch preceded a hook";
    }
  }
  EXPECT_TRUE(launched);
}

TEST(ReducerTest, ReduceGradientsAveragesExistingGradients) {
  SmallCnn model = make_rank_model();
  Reducer reducer(*model, comm(), ReducerOptions{});
  const double w = comm().size();
  for (auto& p : model->parameters()) {
    if (p.requires_grad()) p.mutable_grad() = torch::full_like(p, comm().rank() + 1.0);
  }
  reducer.reduce_gradients();
  const double expected = (w + 1) / 2;  // mean of 1..W
  for (const auto& item : model->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    EXPECT_TRUE(torch::allclose(item.value().grad(), torch::full_like(item.value(), expected)))
        << item.key();
  }
}

TEST(ReducerTest, SumInsteadOfAverageWhenAsked) {
  SmallCnn model = make_rank_model();
  ReducerOptions options;
  options.average = false;
  Reducer reducer(*model, comm(), options);
  const double w = comm().size();
  for (auto& p : model->parameters()) {
    if (p.requires_grad()) p.mutable_grad() = torch::full_like(p, comm().rank() + 1.0);
  }
  reducer.reduce_gradients();
  for (const auto& item : model->named_parameters()) {
    if (!item.value().requires_grad()) continue;
    EXPECT_TRUE(torch::equal(item.value().grad(), torch::full_like(item.value(), w * (w + 1) / 2)))
        << item.key();
  }
}

TEST(ReducerTest, MisuseIsReportedNotIgnored) {
  SmallCnn model = make_rank_model();
  Reducer reducer(*model, comm(), ReducerOptions{});
  auto [images, labels] = batch_slice(0, kBatch, 0, kBatch);
  torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(images), labels);
  try {
    loss.backward();  // no prepare_for_backward()
    ADD_FAILURE() << "a backward outside a reducer step went unnoticed";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("prepare_for_backward"), std::string::npos) << e.what();
  }
  EXPECT_THROW(reducer.finalize_backward(), std::logic_error);
  EXPECT_THROW(Reducer(*model, comm(), ReducerOptions{0.0}), std::invalid_argument);
  // A parameter added after the Reducer was built is never reduced: refused.
  model->register_parameter("late", torch::zeros({3}));
  try {
    reducer.prepare_for_backward();
    ADD_FAILURE() << "a parameter added after the Reducer was built went unnoticed";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("parameter count changed"), std::string::npos) << e.what();
  }
}

TEST(ModelSync, BroadcastMakesEveryRankEqualToRankZero) {
  SmallCnn model = make_rank_model();
  SmallCnn rank0 = make_small_cnn(kSeed);
  EXPECT_EQ(worst_relative_error(model, rank0).first, 0.0);
  for (const auto& item : model->named_buffers()) {
    EXPECT_TRUE(torch::equal(item.value(), rank0->named_buffers()[item.key()])) << item.key();
  }
  EXPECT_NO_THROW(check_module_in_sync(*model, comm(), 0));
}

TEST(ModelSync, DifferentModelsAreNamedOnEveryRank) {
  if (comm().size() < 2) GTEST_SKIP() << "needs two ranks";
  {
    SmallCnn model = make_small_cnn(kSeed);
    if (comm().rank() == 1) model->register_parameter("extra", torch::zeros({3}));
    try {
      broadcast_module_state(*model, comm());
      ADD_FAILURE() << "a model with an extra tensor on rank 1 was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("rank 1 has"), std::string::npos) << e.what();
    }
  }
  {
    SmallCnn model = make_small_cnn(kSeed);
    model->register_parameter("extra", torch::zeros({comm().rank() == 1 ? 4 : 3}));
    try {
      broadcast_module_state(*model, comm());
      ADD_FAILURE() << "a tensor of another shape on rank 1 was accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(
          std::string(e.what()).find("'extra' [" + std::string(comm().rank() == 1 ? "4" : "3")),
          std::string::npos)
          << e.what();
    }
  }
  comm().barrier("after mismatch tests");
}

}  // namespace
}  // namespace xfer::trainer::dist
