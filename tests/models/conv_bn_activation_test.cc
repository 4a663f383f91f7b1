// BatchNorm folding (conv_bn_activation.h): folded and unfolded EfficientNet-B0
// agree in every phase that freezes BatchNorm, in both memory formats; the
// folded weight keeps channels-last strides; phase kFull is untouched.
#include "trainer/models/conv_bn_activation.h"

#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include <cmath>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "tests/models/test_util.h"
#include "trainer/models/batch_norm_silu_kernels.h"
#include "trainer/models/transfer_model.h"

namespace xfer::trainer::models {
namespace {

constexpr int64_t kImageSize = 32;
constexpr int kB0ConvBnBlocks = 49;
// max |folded - unfolded| / max |unfolded|: float rounding only.
constexpr double kTolerance = 1e-4;
// The same per gradient tensor (max error / max |gradient| of that tensor):
// backward sums over the batch and pixels in another order; seen: 6e-5. A
// wrong fold is off by O(1).
constexpr double kGradientTolerance = 1e-3;

std::vector<ConvBnActivationImpl*> conv_bn_blocks(torch::nn::Module& model) {
  std::vector<ConvBnActivationImpl*> blocks;
  for (const auto& m : model.modules(/*include_self=*/false)) {
    if (auto* block = m->as<ConvBnActivationImpl>()) blocks.push_back(block);
  }
  return blocks;
}

int folding_blocks(torch::nn::Module& model) {
  int n = 0;
  for (auto* block : conv_bn_blocks(model)) n += block->folds() ? 1 : 0;
  return n;
}

// Running statistics measured on a batch (as pretraining would have: a fresh
// network's 0 and 1 normalise nothing), then every BatchNorm's statistics and
// affine parameters moved at random, so that a folding that drops or misplaces
// any of gamma, beta, mean, var or eps shows in the outputs. Variances are
// floored at 1e-3 first: a fresh network at 32 px has channels that are
// constant over the batch (variance ~1e-11, so scale 1/sqrt(eps) ~ 316), which
// make the network so ill-conditioned that merely reordering float32
// operations moves its logits by percents (torchvision's own float32 is 5% off
// its float64 there). With the floor, float32 is within ~3e-6 of float64,
// folded or not, and a tolerance of 1e-4 catches a wrong fold.
void perturb_batchnorm(TransferModel& model) {
  const Phase phase = model->phase();
  model->set_phase(Phase::kFull);
  model->train();
  torch::manual_seed(5);
  measure_batch_norm_statistics(*model, [&] {
    model->forward(torch::randn({32, 3, kImageSize, kImageSize}));
  });
  torch::NoGradGuard no_grad;
  for (const auto& m : model->modules(/*include_self=*/false)) {
    auto* bn = m->as<torch::nn::BatchNorm2d>();
    if (bn == nullptr) continue;
    const int64_t n = bn->options.num_features();
    bn->running_var.clamp_min_(1e-3);
    bn->weight.copy_(torch::randn({n}) * 0.2 + 1);
    bn->bias.copy_(torch::randn({n}) * 0.1);
    bn->running_mean.add_(torch::randn({n}) * 0.1 * bn->running_var.sqrt());
    bn->running_var.mul_(torch::rand({n}) * 0.4 + 0.8);
  }
  model->set_phase(phase);
}

TransferModel make_model(Phase phase, torch::MemoryFormat format) {
  TransferModelOptions options;
  options.num_classes = 10;
  options.phase = phase;
  // Deterministic forwards, so folded and unfolded see the same network.
  options.stochastic_depth_prob = 0;
  options.dropout = 0;
  torch::manual_seed(1);
  TransferModel model(options);
  perturb_batchnorm(model);
  model->set_memory_format(format);
  return model;
}

torch::Tensor images(torch::MemoryFormat format) {
  torch::manual_seed(9);
  return torch::randn({4, 3, kImageSize, kImageSize}).contiguous(format);
}

struct Step {
  torch::Tensor logits;
  std::map<std::string, torch::Tensor> grads;  // parameters that got one
};

// One forward (+ backward when `backward`) of `model` as it stands.
Step run_step(TransferModel& model, const torch::Tensor& x, bool backward, uint64_t seed = 0) {
  Step step;
  model->zero_grad(/*set_to_none=*/true);
  torch::manual_seed(seed);
  step.logits = model->forward(x);
  if (!backward) {
    step.logits = step.logits.detach();
    return step;
  }
  const auto labels = torch::arange(x.size(0)) % model->num_classes();
  torch::nn::functional::cross_entropy(step.logits, labels).backward();
  step.logits = step.logits.detach();
  for (const auto& p : model->named_parameters()) {
    if (p.value().grad().defined()) step.grads[p.key()] = p.value().grad().clone();
  }
  return step;
}

const char* format_name(torch::MemoryFormat format) {
  return format == torch::MemoryFormat::ChannelsLast ? "channels-last" : "NCHW";
}

class ModelsFoldBatchNorm : public ::testing::TestWithParam<torch::MemoryFormat> {};

INSTANTIATE_TEST_SUITE_P(Formats, ModelsFoldBatchNorm,
                         ::testing::Values(torch::MemoryFormat::Contiguous,
                                           torch::MemoryFormat::ChannelsLast),
                         [](const auto& param_info) {
                           return param_info.param == torch::MemoryFormat::ChannelsLast
                                      ? std::string("ChannelsLast")
                                      : std::string("Nchw");
                         });

TEST_P(ModelsFoldBatchNorm, FinetuneOutputsAndGradientsMatchUnfolded) {
  const torch::MemoryFormat format = GetParam();
  TransferModel model = make_model(Phase::kFinetune, format);
  model->train();
  const torch::Tensor x = images(format);

  ASSERT_EQ(set_fold_frozen_batch_norm(*model, false), kB0ConvBnBlocks);
  EXPECT_EQ(folding_blocks(*model), 0);
  const Step unfolded = run_step(model, x, /*backward=*/true);
  set_fold_frozen_batch_norm(*model, true);
  EXPECT_EQ(folding_blocks(*model), kB0ConvBnBlocks);
  const Step folded = run_step(model, x, /*backward=*/true);

  // The logits must depend on the input, or a broken network could match.
  EXPECT_GT(testing::relative_error(unfolded.logits[0], unfolded.logits[1]), 0.05);
  EXPECT_LT(testing::relative_error(folded.logits, unfolded.logits), kTolerance)
      << format_name(format);
  // Every trainable tensor, and only those, gets a gradient either way:
  // 81 convolution weights, 32 squeeze-excitation biases, the head's 2.
  ASSERT_EQ(folded.grads.size(), unfolded.grads.size());
  EXPECT_EQ(folded.grads.size(), 81u + 32u + 2u);
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, grad] : unfolded.grads) {
    ASSERT_EQ(folded.grads.count(name), 1u) << name << " has no gradient when folded";
    const torch::Tensor& other = folded.grads.at(name);
    EXPECT_GT(grad.abs().max().item<double>(), 0) << name << ": zero gradient proves nothing";
    const double error = testing::relative_error(other, grad);
    if (error > worst) {
      worst = error;
      worst_name = name;
    }
    EXPECT_LT(error, kGradientTolerance) << name << " gradient, " << format_name(format);
    // The gradient lands in the parameter's layout, as without folding.
    EXPECT_EQ(other.strides(), grad.strides()) << name;
  }
  std::cout << format_name(format) << " finetune, folded vs unfolded: logits "
            << testing::relative_error(folded.logits, unfolded.logits) << ", worst gradient "
            << worst << " (" << worst_name << ")\n";
}

TEST_P(ModelsFoldBatchNorm, HeadPhaseAndEvaluationMatchUnfolded) {
  const torch::MemoryFormat format = GetParam();
  const torch::Tensor x = images(format);
  for (const Phase phase : {Phase::kHead, Phase::kFinetune, Phase::kFull}) {
    for (const bool training : {true, false}) {
      // kFull in train mode does not fold; its own test covers it.
      if (phase == Phase::kFull && training) continue;
      SCOPED_TRACE(std::string(phase_name(phase)) + (training ? " train()" : " eval()") + ", " +
                   format_name(format));
      TransferModel model = make_model(phase, format);
      model->train(training);
      set_fold_frozen_batch_norm(*model, false);
      const Step unfolded = run_step(model, x, /*backward=*/false);
      set_fold_frozen_batch_norm(*model, true);
      EXPECT_EQ(folding_blocks(*model), kB0ConvBnBlocks);
      const Step folded = run_step(model, x, /*backward=*/false);
      EXPECT_GT(testing::relative_error(unfolded.logits[0], unfolded.logits[1]), 0.05);
      EXPECT_LT(testing::relative_error(folded.logits, unfolded.logits), kTolerance);
    }
  }
}

TEST_P(ModelsFoldBatchNorm, FullPhaseTrainingIsNotFoldedAndBitIdentical) {
  const torch::MemoryFormat format = GetParam();
  TransferModelOptions options;
  options.num_classes = 10;
  options.phase = Phase::kFull;  // stochastic depth and dropout on: same draws
  const torch::Tensor x = images(format);
  std::vector<Step> steps;
  std::vector<std::map<std::string, torch::Tensor>> stats;
  for (const bool fold : {false, true}) {
    options.fold_frozen_batch_norm = fold;
    torch::manual_seed(1);
    TransferModel model(options);
    model->set_memory_format(format);
    model->train();
    EXPECT_EQ(folding_blocks(*model), 0);
    steps.push_back(run_step(model, x, /*backward=*/true, /*seed=*/4));
    std::map<std::string, torch::Tensor> buffers;
    for (const auto& b : model->named_buffers()) buffers[b.key()] = b.value().clone();
    stats.push_back(buffers);
  }
  EXPECT_TRUE(torch::equal(steps[0].logits, steps[1].logits));
  ASSERT_EQ(steps[0].grads.size(), steps[1].grads.size());
  for (const auto& [name, grad] : steps[0].grads) {
    EXPECT_TRUE(torch::equal(grad, steps[1].grads.at(name))) << name;
  }
  // BatchNorm in train mode updated its running statistics, alike.
  for (const auto& [name, buffer] : stats[0]) {
    EXPECT_TRUE(torch::equal(buffer, stats[1].at(name))) << name;
  }
}

TEST_P(ModelsFoldBatchNorm, FinetuneStepsLeaveBatchNormUntouched) {
  const torch::MemoryFormat format = GetParam();
  TransferModel model = make_model(Phase::kFinetune, format);
  std::map<std::string, torch::Tensor> before;
  for (const auto& t : model->named_buffers()) before[t.key()] = t.value().clone();
  for (const auto& t : model->named_parameters()) before[t.key()] = t.value().clone();
  model->train();
  ASSERT_EQ(folding_blocks(*model), kB0ConvBnBlocks);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1));
  const torch::Tensor x = images(format);
  for (int i = 0; i < 2; ++i) {
    run_step(model, x, /*backward=*/true);
    sgd.step();
  }
  int bn_tensors = 0;
  for (auto* block : conv_bn_blocks(*model)) {
    const auto& bn = block->bn();
    for (const auto& t : bn->named_parameters()) {
      ++bn_tensors;
      EXPECT_FALSE(t.value().grad().defined()) << "frozen BatchNorm " << t.key() << " got a grad";
    }
    EXPECT_TRUE(bn->running_mean.defined());
  }
  EXPECT_EQ(bn_tensors, 2 * kB0ConvBnBlocks);
  for (const auto& t : model->named_buffers()) {
    EXPECT_TRUE(torch::equal(t.value(), before.at(t.key()))) << t.key() << " changed";
  }
  for (const auto& t : model->named_parameters()) {
    const bool trains = t.value().requires_grad();
    EXPECT_EQ(torch::equal(t.value(), before.at(t.key())), !trains) << t.key();
  }
}

// Train mode against the plain Sequential conv -> bn -> silu, same
// parameters, on a channels-last input: with the fused BatchNorm + SiLU off,
// bit-identical outputs, gradients and running statistics; fused, the same to
// float rounding (a wrong formula is off by O(1)).
void expect_train_mode_matches_plain(int64_t channels, int64_t groups, int64_t size,
                                     double input_shift, bool fuse) {
  SCOPED_TRACE("channels " + std::to_string(channels) + ", groups " + std::to_string(groups) +
               ", size " + std::to_string(size) + (fuse ? ", fused" : ", unfused"));
  torch::manual_seed(2);
  ConvBnActivation block(channels, channels, /*kernel=*/3, /*stride=*/2, groups, /*silu=*/true,
                         /*fold=*/true);
  block->set_fuse_train(fuse);
  // Unfused means LibTorch's kernels only, direct depthwise convolution too
  // (conv_bn_activation.h); fused keeps it (depthwise blocks here are small).
  if (!fuse) block->set_direct_depthwise_max_pixels(0);
  torch::nn::Sequential plain(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3)
                            .stride(2)
                            .padding(1)
                            .groups(groups)
                            .bias(false)),
      torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels).eps(1e-5).momentum(0.1)),
      torch::nn::SiLU());
  {
    torch::NoGradGuard no_grad;
    // gamma and beta away from 1 and 0, so that misusing either shows.
    block->bn()->weight.uniform_(0.5, 1.5);
    block->bn()->bias.uniform_(-0.5, 0.5);
    const auto ours = block->named_parameters();
    for (auto& p : plain->named_parameters()) p.value().copy_(ours[p.key()]);
  }
  block->train();
  plain->train();
  EXPECT_FALSE(block->folds());
  for (int step = 0; step < 2; ++step) {  // running statistics move twice
    const torch::Tensor x = (torch::randn({3, channels, size, size}) + input_shift)
                                .contiguous(torch::MemoryFormat::ChannelsLast)
                                .requires_grad_();
    const torch::Tensor x_plain = x.detach().clone().requires_grad_();
    const int threads = torch::get_num_threads();
    torch::set_num_threads(1);  // the fused loops are for one thread (more: LibTorch's)
    const torch::Tensor y = block->forward(x);
    EXPECT_EQ(block->fused_last_forward(), fuse);
    torch::set_num_threads(threads);
    const torch::Tensor expected = plain->forward(x_plain);
    // A fixed upstream gradient, different per element.
    const torch::Tensor dy = torch::randn_like(expected);
    (y * dy).sum().backward();
    (expected * dy).sum().backward();
    const auto theirs = plain->named_parameters();
    const auto their_buffers = plain->named_buffers();
    if (!fuse) {
      EXPECT_TRUE(torch::equal(y, expected));
      EXPECT_TRUE(torch::equal(x.grad(), x_plain.grad()));
      for (const auto& p : block->named_parameters()) {
        EXPECT_TRUE(torch::equal(p.value().grad(), theirs[p.key()].grad())) << p.key();
      }
      for (const auto& b : block->named_buffers()) {
        EXPECT_TRUE(torch::equal(b.value(), their_buffers[b.key()])) << b.key();
      }
      continue;
    }
    EXPECT_LT(testing::relative_error(y, expected), 1e-5);
    EXPECT_LT(testing::relative_error(x.grad(), x_plain.grad()), 1e-4);
    for (const auto& p : block->named_parameters()) {
      EXPECT_LT(testing::relative_error(p.value().grad(), theirs[p.key()].grad()), 1e-4) << p.key();
    }
    for (const auto& b : block->named_buffers()) {
      if (b.key().find("num_batches_tracked") != std::string::npos) {
        EXPECT_TRUE(torch::equal(b.value(), their_buffers[b.key()])) << b.key();
      } else {
        EXPECT_LT(testing::relative_error(b.value(), their_buffers[b.key()]), 1e-5) << b.key();
      }
    }
  }
}

TEST(ModelsFoldBatchNormBlock, TrainModeRunsAsConvThenBatchNormThenSilu) {
  for (const bool fuse : {false, true}) {
    // Dense and depthwise; 17 channels leave a tail after any vector width;
    // 2x2 -> 1x1 outputs have a single pixel per sample (as B0's last stage
    // at 32 px); a shifted input has a mean far above its spread.
    expect_train_mode_matches_plain(16, 1, 9, 0.0, fuse);
    expect_train_mode_matches_plain(16, 16, 9, 0.0, fuse);
    expect_train_mode_matches_plain(17, 1, 6, 0.0, fuse);
    expect_train_mode_matches_plain(8, 1, 2, 0.0, fuse);
    expect_train_mode_matches_plain(8, 8, 8, 30.0, fuse);
  }
  // In eval mode the same block folds, and still agrees.
  torch::manual_seed(2);
  ConvBnActivation block(16, 16, 3, 2, 1, /*silu=*/true, /*fold=*/true);
  torch::nn::Sequential plain(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 16, 3).stride(2).padding(1).bias(false)),
      torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(16).eps(1e-5).momentum(0.1)),
      torch::nn::SiLU());
  {
    torch::NoGradGuard no_grad;
    const auto ours = block->named_parameters();
    for (auto& p : plain->named_parameters()) p.value().copy_(ours[p.key()]);
  }
  block->eval();
  plain->eval();
  EXPECT_TRUE(block->folds());
  const torch::Tensor x = torch::randn({2, 16, 9, 9}).contiguous(torch::MemoryFormat::ChannelsLast);
  EXPECT_LT(testing::relative_error(block->forward(x), plain->forward(x)), kTolerance);
}

TEST(ModelsFusedBatchNormSilu, OnlyChannelsLastFloatTrainBatchesAreFused) {
  torch::nn::BatchNorm2d bn(torch::nn::BatchNorm2dOptions(4));
  const torch::Tensor channels_last =
      torch::randn({2, 4, 3, 3}).contiguous(torch::MemoryFormat::ChannelsLast);
  EXPECT_TRUE(fusable_batch_norm_silu(channels_last, *bn));
  EXPECT_TRUE(fusable_batch_norm_silu(torch::randn({2, 4, 1, 1}), *bn));   // both layouts
  EXPECT_FALSE(fusable_batch_norm_silu(torch::randn({2, 4, 3, 3}), *bn));  // NCHW
  EXPECT_FALSE(fusable_batch_norm_silu(channels_last.to(torch::kFloat64), *bn));
  EXPECT_FALSE(fusable_batch_norm_silu(torch::randn({1, 4, 1, 1}), *bn));  // one value
  torch::nn::BatchNorm2d cumulative(torch::nn::BatchNorm2dOptions(4).momentum(c10::nullopt));
  EXPECT_FALSE(fusable_batch_norm_silu(channels_last, *cumulative));
  torch::nn::BatchNorm2d plain(torch::nn::BatchNorm2dOptions(4).affine(false));
  EXPECT_FALSE(fusable_batch_norm_silu(channels_last, *plain));

  // A block fuses with one intra-op thread only.
  ConvBnActivation block(4, 4, /*kernel=*/1, /*stride=*/1, /*groups=*/1, /*silu=*/true,
                         /*fold=*/true);
  block->train();
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  block->forward(channels_last);
  EXPECT_TRUE(block->fused_last_forward());
  torch::set_num_threads(2);
  block->forward(channels_last);
  EXPECT_FALSE(block->fused_last_forward());
  torch::set_num_threads(threads);
}

// A depthwise block with direct depthwise convolution against the same block
// with LibTorch's, same parameters and input: outputs and every gradient.
void expect_direct_depthwise_matches(int64_t channels, int64_t kernel, int64_t stride, int64_t size,
                                     bool batch_norm_trains) {
  SCOPED_TRACE("channels " + std::to_string(channels) + ", kernel " + std::to_string(kernel) +
               ", stride " + std::to_string(stride) + ", size " + std::to_string(size) +
               (batch_norm_trains ? ", BatchNorm trains" : ", BatchNorm folded"));
  torch::manual_seed(6);
  std::vector<ConvBnActivation> blocks;
  for (int i = 0; i < 2; ++i) {
    blocks.emplace_back(channels, channels, kernel, stride, /*groups=*/channels, /*silu=*/true,
                        /*fold=*/true);
    blocks.back()->set_fuse_train(false);  // the convolution alone differs
  }
  blocks[1]->set_direct_depthwise_max_pixels(0);
  {
    torch::NoGradGuard no_grad;
    blocks[0]->bn()->weight.uniform_(0.5, 1.5);
    blocks[0]->bn()->bias.uniform_(-0.5, 0.5);
    blocks[0]->bn()->running_var.uniform_(0.5, 2.0);
    const auto source = blocks[0]->named_parameters();
    for (auto& p : blocks[1]->named_parameters()) p.value().copy_(source[p.key()]);
    blocks[1]->bn()->running_var.copy_(blocks[0]->bn()->running_var);
  }
  for (auto& block : blocks) {
    block->train();
    if (!batch_norm_trains) {                   // the finetune phase: BatchNorm frozen, folded
      torch::nn::BatchNorm2d bn = block->bn();  // shares the module
      bn->eval();
      bn->weight.set_requires_grad(false);
      bn->bias.set_requires_grad(false);
    }
  }
  const torch::Tensor x = torch::randn({3, channels, size, size})
                              .contiguous(torch::MemoryFormat::ChannelsLast)
                              .requires_grad_();
  std::vector<torch::Tensor> inputs;
  std::vector<torch::Tensor> outputs;
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  for (auto& block : blocks) {
    inputs.push_back(x.detach().clone().requires_grad_());
    outputs.push_back(block->forward(inputs.back()));
  }
  EXPECT_TRUE(blocks[0]->direct_depthwise_last_forward());
  EXPECT_FALSE(blocks[1]->direct_depthwise_last_forward());
  const torch::Tensor dy = torch::randn_like(outputs[1]);
  for (auto& y : outputs) (y * dy).sum().backward();
  torch::set_num_threads(threads);
  EXPECT_LT(testing::relative_error(outputs[0], outputs[1]), 1e-5);
  EXPECT_LT(testing::relative_error(inputs[0].grad(), inputs[1].grad()), 1e-5);
  const auto reference = blocks[1]->named_parameters();
  for (const auto& p : blocks[0]->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    EXPECT_LT(testing::relative_error(p.value().grad(), reference[p.key()].grad()), 1e-4)
        << p.key();
  }
}

TEST(ModelsDirectDepthwise, MatchesLibTorchsConvolutionAndGradients) {
  for (const bool trains : {true, false}) {
    expect_direct_depthwise_matches(40, 5, 1, 1, trains);  // only the centre tap
    expect_direct_depthwise_matches(24, 5, 1, 2, trains);
    expect_direct_depthwise_matches(24, 5, 2, 2, trains);  // 2x2 -> 1x1
    expect_direct_depthwise_matches(17, 3, 1, 7, trains);  // odd map, odd channels
    expect_direct_depthwise_matches(16, 3, 2, 8, trains);
    expect_direct_depthwise_matches(8, 5, 2, 9, trains);
  }
}

TEST(ModelsDirectDepthwise, OnlyWhereBackwardRunsOnSmallMaps) {
  ConvBnActivation block(8, 8, /*kernel=*/3, /*stride=*/1, /*groups=*/8, /*silu=*/true,
                         /*fold=*/true);
  block->train();
  const int threads = torch::get_num_threads();
  torch::set_num_threads(1);
  const auto channels_last = [](torch::Tensor t) {
    return t.contiguous(torch::MemoryFormat::ChannelsLast);
  };
  block->forward(channels_last(torch::randn({2, 8, 4, 4})));
  EXPECT_TRUE(block->direct_depthwise_last_forward());          // the weight trains
  block->forward(channels_last(torch::randn({2, 8, 17, 17})));  // 289 pixels > 256
  EXPECT_FALSE(block->direct_depthwise_last_forward());
  block->forward(torch::randn({2, 8, 4, 4}));  // NCHW
  EXPECT_FALSE(block->direct_depthwise_last_forward());
  {
    torch::NoGradGuard no_grad;  // evaluation: forward only
    block->forward(channels_last(torch::randn({2, 8, 4, 4})));
    EXPECT_FALSE(block->direct_depthwise_last_forward());
  }
  torch::set_num_threads(2);
  block->forward(channels_last(torch::randn({2, 8, 4, 4})));
  EXPECT_FALSE(block->direct_depthwise_last_forward());
  torch::set_num_threads(threads);
  ConvBnActivation dense(8, 8, 3, 1, /*groups=*/1, true, true);
  dense->train();
  torch::set_num_threads(1);
  dense->forward(channels_last(torch::randn({2, 8, 4, 4})));
  EXPECT_FALSE(dense->direct_depthwise_last_forward());
  torch::set_num_threads(threads);
}

TEST(ModelsFusedBatchNormSilu, ExpApproximationIsWithinTwoUlpOverItsRange) {
  double worst = 0.0;
  float worst_at = 0.0F;
  for (float x = -87.0F; x <= 88.0F; x += 0.0137F) {
    const double exact = std::exp(static_cast<double>(x));
    const double error = std::abs(kernels::exp_approx(x) - exact) / exact;
    if (error > worst) {
      worst = error;
      worst_at = x;
    }
  }
  // 2 ulp of float is 2.4e-7 relative.
  EXPECT_LT(worst, 2.4e-7) << "at x = " << worst_at;
  EXPECT_GT(kernels::exp_approx(1000.0F), 1e38F);  // clamped, finite
  EXPECT_TRUE(std::isfinite(kernels::exp_approx(1000.0F)));
  EXPECT_GT(kernels::exp_approx(-1000.0F), 0.0F);
}

TEST(ModelsFoldBatchNormBlock, InferenceModeKeepsTheFoldOnlyWhileItsSourcesAreUnchanged) {
  torch::manual_seed(4);
  ConvBnActivation block(8, 8, /*kernel=*/3, /*stride=*/1, /*groups=*/1, /*silu=*/true,
                         /*fold=*/true);
  block->eval();
  const torch::Tensor x = torch::randn({2, 8, 7, 7});
  // The reference: the same block computed without any kept fold.
  const auto fresh = [&] {
    torch::NoGradGuard no_grad;
    return block->forward(x);
  };
  const auto inference = [&] {
    c10::InferenceMode guard;
    return block->forward(x).clone();
  };
  const torch::Tensor expected = fresh();
  EXPECT_FALSE(block->holds_inference_fold());
  EXPECT_TRUE(torch::equal(inference(), expected));
  EXPECT_TRUE(block->holds_inference_fold());
  EXPECT_TRUE(torch::equal(inference(), expected));  // from the kept fold

  // Each source changed in place (copy_ bumps its version) must show.
  const std::vector<std::pair<const char*, torch::Tensor>> sources = {
      {"conv weight", block->conv()->weight},
      {"bn weight", block->bn()->weight},
      {"bn bias", block->bn()->bias},
      {"running mean", block->bn()->running_mean},
      {"running var", block->bn()->running_var}};
  for (const auto& [name, tensor] : sources) {
    {
      torch::NoGradGuard no_grad;
      tensor.copy_(tensor * 1.5 + 0.25);
    }
    const torch::Tensor changed = fresh();
    EXPECT_FALSE(torch::equal(changed, expected)) << name;
    inference();  // keeps a fold of the changed tensors
    {
      torch::NoGradGuard no_grad;
      tensor.copy_(tensor * 1.25);
    }
    const torch::Tensor kept = inference();  // before fresh(), which drops the fold
    EXPECT_TRUE(torch::equal(kept, fresh())) << name << ": a stale fold was used";
  }

  // A forward outside InferenceMode (a training step) drops it.
  inference();
  EXPECT_TRUE(block->holds_inference_fold());
  fresh();
  EXPECT_FALSE(block->holds_inference_fold());

  // SiLU runs in place only on the block's own output: the input is intact.
  const torch::Tensor before = x.clone();
  inference();
  fresh();
  EXPECT_TRUE(torch::equal(x, before));
}

TEST(ModelsFoldBatchNormLayout, FoldedWeightKeepsChannelsLastStrides) {
  // 1x1 ([O, I, 1, 1]) and depthwise ([C, 1, k, k]) weights count as
  // contiguous in both formats: only their strides tell convolution that they
  // are channels-last, and a folded weight that lost them would send oneDNN
  // back to NCHW for every activation.
  for (const auto format : {torch::MemoryFormat::ChannelsLast, torch::MemoryFormat::Contiguous}) {
    SCOPED_TRACE(format_name(format));
    TransferModel model = make_model(Phase::kFinetune, format);
    int pointwise = 0;
    int depthwise = 0;
    for (const auto& m : model->named_modules()) {
      auto* block = m.value()->as<ConvBnActivationImpl>();
      if (block == nullptr) continue;
      const torch::Tensor& weight = block->conv()->weight;
      ASSERT_EQ(weight.suggest_memory_format(), format) << m.key();
      const FoldedConv folded = fold_batch_norm(weight, *block->bn());
      EXPECT_EQ(folded.weight.sizes(), weight.sizes()) << m.key();
      EXPECT_EQ(folded.weight.strides(), weight.strides()) << m.key();
      EXPECT_EQ(folded.weight.suggest_memory_format(), format) << m.key();
      EXPECT_TRUE(folded.weight.is_contiguous(format)) << m.key();
      if (weight.size(2) == 1 && weight.size(3) == 1) ++pointwise;
      if (weight.size(1) == 1 && weight.size(2) > 1) ++depthwise;
    }
    EXPECT_EQ(pointwise, 32);  // 15 expand (stage 1 has none), 16 project, features.8
    EXPECT_EQ(depthwise, 16);
  }
}

TEST(ModelsFoldBatchNormLayout, NamesAndStateDictAreTorchvisions) {
  TransferModelOptions options;
  options.num_classes = 10;
  std::vector<std::vector<std::string>> names;
  for (const bool fold : {false, true}) {
    options.fold_frozen_batch_norm = fold;
    TransferModel model(options);
    std::vector<std::string> keys;
    for (const auto& item : model_state_dict(*model)) keys.push_back(item.key());
    names.push_back(keys);
  }
  EXPECT_EQ(names[0], names[1]);
  TransferModel model(options);
  const StateDict dict = model_state_dict(*model);
  for (const char* name :
       {"features.0.0.weight", "features.0.1.weight", "features.0.1.running_mean",
        "features.0.1.num_batches_tracked", "features.1.0.block.0.0.weight",
        "features.1.0.block.1.fc1.bias", "features.1.0.block.2.1.running_var",
        "features.8.0.weight", "features.8.1.bias"}) {
    EXPECT_NE(dict.find(name), nullptr) << name;
  }
  EXPECT_EQ(model->batchnorm_tensors().size(), 5u * kB0ConvBnBlocks);
}

}  // namespace
}  // namespace xfer::trainer::models
