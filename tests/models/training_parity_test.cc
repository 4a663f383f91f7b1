// One training step of what the trainer runs (TransferModel, cross entropy,
// make_adam + fused_adam_step) against torchvision's efficientnet_b0 and
// torch.optim.Adam with its default eps, from the same weights and batch
// (issue #21). The reference comes from make_training_reference.py, run by
// Debian's /usr/bin/python3, which also writes the same step in float64: the
// log prints how far torchvision's own float32 is from it beside ours, so a
// real difference and float rounding can be told apart.
//
// Dropout is 0 on both sides (CounterDropout draws other masks than
// torch.dropout by design). Stochastic depth is 0, except in one case where
// both sides draw torchvision's masks from the same seed.
#include <gtest/gtest.h>
#include <torch/nn/functional/loss.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/models/test_util.h"
#include "trainer/models/conv_bn_activation.h"
#include "trainer/models/state_dict.h"
#include "trainer/models/transfer_model.h"
#include "trainer/train/fused_adam.h"
#include "trainer/train/train_options.h"

namespace xfer::trainer::models {
namespace {

using testing::TempDir;

// The bounds: per trainable tensor max|g - g_ref| <= 1e-4 max|g_ref|;
// every parameter within 1e-6 after the step.
constexpr double kGradientBound = 1e-4;
constexpr double kParameterBound = 1e-6;
// The issue sets none for these. The float32 cross entropy of O(1) logits
// (and the running statistics, averages over >= 64 values a channel) are
// 1e-7 to 3e-7 (relative) from float64 in torchvision: 1e-5 leaves room for
// another summation order and nothing for a wrong formula.
constexpr double kLossBound = 1e-5;
constexpr double kRunningStatsBound = 1e-5;

// torch.optim.Adam(lr=1e-3), eps left at its default.
constexpr double kLr = 1e-3;
constexpr double kTorchAdamEps = 1e-8;
// Ours: what `trainer train` uses unless --adam-eps says otherwise.
double our_adam_eps() {
  const train::TrainOptions defaults;
  return defaults.adam_eps;
}

constexpr int64_t kNumClasses = 100;
// The seed both sides set right before the forward that draws the
// stochastic-depth masks.
constexpr int kStepSeed = 77;

// At 64 px (the script's default): every conv + BN + SiLU of B0 (features.0,
// 15 expand and 16 depthwise convs, features.8) runs the fused train-mode
// kernel in phase full, and every depthwise conv on a map of at most 16 x 16
// (all but those of features.1.0 and features.2.0, whose inputs are 32 x 32)
// the direct one, wherever backward runs.
constexpr int kFusedBlocks = 33;
constexpr int kDirectDepthwiseBlocks = 14;

// How our side runs the step.
enum class Kernels {
  kOurs,      // channels-last, one thread: the trainer's setting, our kernels on
  kLibTorch,  // the same with both kernels off: LibTorch's operations
  kNchw,      // contiguous tensors, where neither kernel applies
};

struct Case {
  Phase phase;
  Kernels kernels;
  double stochastic_depth = 0;  // for the last block; > 0: the same masks on both sides
};

std::string case_name(const Case& c) {
  std::string name = phase_name(c.phase);
  if (c.stochastic_depth > 0) name += "_stochastic_depth";
  switch (c.kernels) {
    case Kernels::kOurs:
      return name + "_our_kernels";
    case Kernels::kLibTorch:
      return name + "_libtorch_kernels";
    case Kernels::kNchw:
      return name + "_nchw";
  }
  return name;
}

// How gtest names a case in failure messages (not as 16 raw bytes).
void PrintTo(const Case& c, std::ostream* out) { *out << case_name(c); }

// make_training_reference.py's output for one phase.
struct Reference {
  TempDir dir;
  StateDict tensors;

  std::string weights() const { return dir.file("weights.pt"); }
  bool has(const std::string& key) const { return tensors.find(key) != nullptr; }
  // Throws (failing the test with the key's name) when absent.
  torch::Tensor get(const std::string& key) const {
    if (!has(key)) {
      throw std::runtime_error("reference.pt in " + dir.file("") + " has no tensor " + key);
    }
    return tensors[key];
  }
};

// Runs the script once per phase and stochastic depth in this process.
const Reference& reference_for(const Case& c) {
  static std::map<std::string, std::unique_ptr<Reference>> cache;
  const std::string key = std::string(phase_name(c.phase)) + std::to_string(c.stochastic_depth);
  auto found = cache.find(key);
  if (found != cache.end()) return *found->second;
  auto reference = std::make_unique<Reference>();
  char eps[32];
  std::snprintf(eps, sizeof(eps), "%.17g", our_adam_eps());
  std::string command = std::string("/usr/bin/python3 ") + XFER_TRAINING_REFERENCE_SCRIPT +
                        " --phase " + phase_name(c.phase) + " --out " + reference->dir.file("") +
                        " --num-classes " + std::to_string(kNumClasses) + " --diagnostic-eps " +
                        eps;
  if (c.stochastic_depth > 0) {
    command += " --stochastic-depth " + std::to_string(c.stochastic_depth) + " --step-seed " +
               std::to_string(kStepSeed);
  }
  if (std::system(command.c_str()) != 0) {
    throw std::runtime_error("reference generator failed: " + command);
  }
  reference->tensors = read_state_dict_file(reference->dir.file("reference.pt"));
  return *cache.emplace(key, std::move(reference)).first->second;
}

// The trainer runs one intra-op thread per rank; our kernels need it.
class OneThread {
 public:
  OneThread() : saved_(torch::get_num_threads()) { torch::set_num_threads(1); }
  ~OneThread() { torch::set_num_threads(saved_); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int saved_;
};

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return max_abs(a.to(torch::kFloat64) - b.to(torch::kFloat64));
}

// One comparison over many tensors: the worst value and every tensor beyond
// the bound, so that a failure prints one message naming them all.
struct Tally {
  double bound = 0;
  double worst = 0;
  std::string worst_name;
  std::vector<std::string> failed;

  explicit Tally(double b) : bound(b) {}
  void add(const std::string& name, double value) { add(name, value, value <= bound); }
  // `within`: the tensor passes (NaN never does).
  void add(const std::string& name, double value, bool within) {
    if (value > worst || worst_name.empty()) {
      worst = value;
      worst_name = name;
    }
    if (!within || std::isnan(value)) failed.push_back(name);
  }
  bool ok() const { return failed.empty(); }
  // "1.2e-05 (features.3.0.block.1.0.weight)".
  std::string worst_str() const {
    std::ostringstream out;
    out << worst << " (" << worst_name << ")";
    return out.str();
  }
  // The worst, then how many tensors and which failed.
  std::string str() const {
    std::ostringstream out;
    out << "worst " << worst_str() << ", bound " << bound;
    if (!failed.empty()) {
      out << "; " << failed.size() << " tensors beyond it:";
      for (size_t i = 0; i < failed.size() && i < 8; ++i) out << " " << failed[i];
      if (failed.size() > 8) out << " ...";
    }
    return out.str();
  }
};

// The scale a tensor's gradient error is measured against: max|g_ref|, except
// where the exact (float64) gradient is zero. A projection BatchNorm's bias
// in phase full is such a case: its output reaches the loss only through
// 1x1 convolutions into train-mode BatchNorms, which remove any per-channel
// shift. Both float32 sides then hold rounding noise (~1e-8) of sums of
// terms the size of the BatchNorm weight's gradient, and a relative error
// of noise against noise means nothing: that weight's max|g_ref| is the
// scale instead.
double gradient_scale(const Reference& reference, const std::string& name) {
  const double scale = max_abs(reference.get("grad." + name));
  const double exact = max_abs(reference.get("grad64." + name));
  const std::string suffix = ".bias";
  if (name.size() > suffix.size() &&
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    const std::string weight = name.substr(0, name.size() - suffix.size()) + ".weight";
    if (reference.has("grad64." + weight)) {
      const double weight_scale = max_abs(reference.get("grad64." + weight));
      if (exact <= 1e-9 * weight_scale) return max_abs(reference.get("grad." + weight));
    }
  }
  return scale;
}

// Bounds |p - p_ref| after one Adam step from the same p, from gradients g
// and g_ref. Adam's first step moves each element by exactly
// -lr * g / (|g| + eps) (m_hat = g, v_hat = g^2), whose derivative
// lr * eps / (|g| + eps)^2 reaches lr / eps = 1e5 at g = 0: an element whose
// gradient is within float32 rounding of zero moves by up to +-lr depending
// on that rounding (torchvision's own float32 step is up to 2e-3 from its
// float64 step there), so no float32 implementation that sums in another
// order can meet 1e-6 on every element. The bound is therefore 1e-6 plus
// what the mean value theorem allows for the gradient difference (itself
// held to 1e-4 above): exact for the step's arithmetic, so a wrong step
// (another eps, a missing bias correction) still fails it.
torch::Tensor propagated_bound(const torch::Tensor& g, const torch::Tensor& g_ref, double eps) {
  const auto g64 = g.to(torch::kFloat64);
  const auto r64 = g_ref.to(torch::kFloat64);
  // Smallest |gradient| between the two: 0 when the sign differs.
  const auto low =
      torch::where(g64 * r64 > 0, torch::minimum(g64.abs(), r64.abs()), torch::zeros_like(g64));
  return kParameterBound + kLr * eps * (g64 - r64).abs() / (low + eps).square();
}

// Which blocks ran our kernels in the latest forward: our kernels ran where
// the trainer runs them, and only there.
void expect_kernels(TransferModel& model, const Case& c, const std::string& label) {
  int fused = 0;
  int direct = 0;
  for (const auto& module : model->modules()) {
    if (const auto* block = module->as<ConvBnActivationImpl>()) {
      fused += block->fused_last_forward() ? 1 : 0;
      direct += block->direct_depthwise_last_forward() ? 1 : 0;
    }
  }
  // The fused kernel is for train-mode BatchNorm (phase full); in phase head
  // the base runs under InferenceMode, folded, where neither applies.
  const bool ours = c.kernels == Kernels::kOurs;
  EXPECT_EQ(fused, ours && c.phase == Phase::kFull ? kFusedBlocks : 0)
      << label << "blocks that ran the fused BatchNorm + SiLU";
  EXPECT_EQ(direct, ours && c.phase != Phase::kHead ? kDirectDepthwiseBlocks : 0)
      << label << "blocks that ran the direct depthwise convolution";
}

// The same trainable set as torchvision, each gradient within 1e-4 of
// torchvision's (relative to max|g_ref|); returns the trainable parameters
// in registration order.
//
// One exception, for float32 rounding the 1e-4 cannot hold: a gradient that
// is a sum with cancellation (over the batch, as the squeeze-excitation
// fc1/fc2 biases and weights are) turns the ~1e-5 relative rounding of the
// activation gradients into ~1e-4. PyTorch itself then misses 1e-4 against
// itself: torchvision run channels-last is 1.7e-4 from torchvision NCHW on
// features.2.0.block.2.fc1.bias in phase full (1.5e-4 from float64, NCHW
// 2e-5). Such a tensor passes when it is no further from the float64
// answer than twice the further of torchvision's float32 NCHW and
// channels-last (make_training_reference.py's spread; the rule
// efficientnet_test holds folded logits to); those are printed by name.
std::vector<torch::Tensor> expect_gradients(TransferModel& model, const Reference& reference,
                                            const std::string& label) {
  int64_t reference_trainable = 0;
  for (const auto& item : reference.tensors) {
    reference_trainable += item.key().rfind("grad.", 0) == 0 ? 1 : 0;
  }
  std::vector<torch::Tensor> trainable;
  Tally ours(kGradientBound);  // vs torchvision float32
  Tally ours_exact(kGradientBound);
  Tally torchvision_exact(kGradientBound);  // the spread
  std::ostringstream rounding;              // tensors passed by the exception
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& p = item.value();
    if (!p.requires_grad()) {
      EXPECT_FALSE(reference.has("grad." + name)) << label << name << " trains in torchvision";
      EXPECT_FALSE(p.grad().defined()) << label << name << " is frozen but has a gradient";
      continue;
    }
    trainable.push_back(p);
    if (!reference.has("grad." + name) || !p.grad().defined()) {
      ADD_FAILURE() << label << name << ": trainable here, frozen in torchvision, or no gradient";
      continue;
    }
    const double scale = gradient_scale(reference, name);
    const double error = max_abs_diff(p.grad(), reference.get("grad." + name)) / scale;
    const double exact = max_abs_diff(p.grad(), reference.get("grad64." + name)) / scale;
    const double spread = reference.get("spread." + name).item<double>() / scale;
    const bool rounding_only = error > kGradientBound && exact <= 2 * spread;
    if (rounding_only) {
      rounding << " " << name << " (" << error << "; vs float64 " << exact << ", torchvision "
               << spread << ")";
    }
    ours.add(name, error, error <= kGradientBound || rounding_only);
    ours_exact.add(name, exact);
    torchvision_exact.add(name, spread);
  }
  EXPECT_EQ(static_cast<int64_t>(trainable.size()), reference_trainable) << label;
  EXPECT_TRUE(ours.ok()) << label << "gradients, max|g - g_ref| / max|g_ref|: " << ours.str()
                         << " (and further from float64 than 2x torchvision's float32)";
  std::cout << label << "gradients, max|g - g_ref| / max|g_ref|: ours vs torchvision "
            << ours.worst_str() << "; vs float64: ours " << ours_exact.worst_str()
            << ", torchvision float32 (NCHW or channels-last) " << torchvision_exact.worst_str()
            << "\n";
  if (!rounding.str().empty()) {
    std::cout << label << "beyond 1e-4 from torchvision, within 2x its float32 error from "
              << "float64:" << rounding.str() << "\n";
  }
  return trainable;
}

// Running statistics: moved as torchvision moves them in phase full,
// untouched otherwise.
void expect_buffers(TransferModel& model, const Case& c, const Reference& reference,
                    const std::string& label) {
  Tally running(kRunningStatsBound);
  for (const auto& item : model->named_buffers()) {
    const std::string& name = item.key();
    const torch::Tensor expected = reference.get("buffer." + name);
    if (c.phase != Phase::kFull || item.value().scalar_type() == torch::kLong) {
      EXPECT_TRUE(torch::equal(item.value().contiguous(), expected))
          << label << name << " differs from torchvision's";
      continue;
    }
    running.add(name, max_abs_diff(item.value(), expected) / max_abs(expected));
  }
  EXPECT_TRUE(running.ok()) << label << "running statistics, relative: " << running.str();
  if (c.phase == Phase::kFull) {
    std::cout << label << "BatchNorm running statistics, relative: " << running.worst_str() << "\n";
  }
}

// After the step, against torch.optim.Adam's default eps (the issue's
// comparison) and, to keep the eps question apart, against torch.optim.Adam
// with our eps: a failure of the second is not the choice of eps.
void expect_parameters(TransferModel& model, const std::map<std::string, torch::Tensor>& before,
                       const Reference& reference, double adam_eps, const std::string& label) {
  Tally strict(kParameterBound);              // max|p - p_ref|: the 1e-6 on every element
  Tally torchvision_strict(kParameterBound);  // torchvision float32 vs float64
  Tally propagated(1.0);                      // |p - p_ref| / propagated_bound
  Tally propagated_same_eps(1.0);
  int64_t over = 0;  // elements further than 1e-6 from torchvision
  int64_t torchvision_over = 0;
  int64_t elements = 0;
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor p = item.value().detach().to(torch::kFloat64);
    const torch::Tensor expected = reference.get("param." + name).to(torch::kFloat64);
    elements += p.numel();
    if (!item.value().requires_grad()) {
      EXPECT_TRUE(torch::equal(item.value(), before.at(name)))
          << label << "frozen " << name << " changed";
      continue;
    }
    const torch::Tensor diff = (p - expected).abs();
    strict.add(name, max_abs(diff));
    over += (diff > kParameterBound).sum().item<int64_t>();
    const torch::Tensor exact_diff =
        (expected - reference.get("param64." + name).to(torch::kFloat64)).abs();
    torchvision_strict.add(name, max_abs(exact_diff));
    torchvision_over += (exact_diff > kParameterBound).sum().item<int64_t>();

    const torch::Tensor g = item.value().grad();
    const torch::Tensor g_ref = reference.get("grad." + name);
    propagated.add(name, max_abs(diff / propagated_bound(g, g_ref, kTorchAdamEps)));
    const torch::Tensor same_eps_diff =
        (p - reference.get("param_eps." + name).to(torch::kFloat64)).abs();
    propagated_same_eps.add(name, max_abs(same_eps_diff / propagated_bound(g, g_ref, adam_eps)));
  }
  EXPECT_TRUE(propagated.ok()) << label << "parameters after make_adam (eps " << adam_eps
                               << ") + fused_adam_step vs torch.optim.Adam (default eps "
                               << kTorchAdamEps
                               << "), |p - p_ref| / (1e-6 + the gradient difference's effect): "
                               << propagated.str() << "; max|p - p_ref| " << strict.worst_str();
  EXPECT_TRUE(propagated_same_eps.ok())
      << label << "parameters after the step vs torch.optim.Adam with the same eps " << adam_eps
      << ", |p - p_ref| / (1e-6 + the gradient difference's effect): " << propagated_same_eps.str();
  std::cout << label << "parameters after the step, max|p - p_ref|: ours " << strict.worst_str()
            << ", " << over << " of " << elements << " elements > 1e-6; torchvision float32 vs "
            << "float64 " << torchvision_strict.worst_str() << ", " << torchvision_over
            << " elements > 1e-6\n"
            << label << "|p - p_ref| / (1e-6 + gradient difference's effect): eps " << adam_eps
            << " vs torch.optim.Adam's default: " << propagated.worst_str()
            << "; same eps: " << propagated_same_eps.worst_str() << "\n";
}

class ModelsTrainingParity : public ::testing::TestWithParam<Case> {};

TEST_P(ModelsTrainingParity, OneStepMatchesTorchvisionAndTorchAdam) {
  const Case& c = GetParam();
  const Reference& reference = reference_for(c);
  const std::string label = "[" + case_name(c) + "] ";
  OneThread one_thread;

  TransferModelOptions options;
  options.num_classes = kNumClasses;
  options.dropout = 0;
  options.stochastic_depth_prob = c.stochastic_depth;
  options.phase = c.phase;
  TransferModel model(options);
  const LoadResult loaded = model->load_weights(reference.weights());
  ASSERT_TRUE(loaded.head_loaded);
  ASSERT_EQ(loaded.tensors_loaded, static_cast<int64_t>(model_state_dict(*model).size()));
  torch::Tensor input = reference.get("input");
  if (c.kernels != Kernels::kNchw) {
    model->set_memory_format(torch::MemoryFormat::ChannelsLast);
    input = input.contiguous(torch::MemoryFormat::ChannelsLast);
  }
  if (c.kernels == Kernels::kLibTorch) {
    set_fuse_train_batch_norm_silu(*model, false);
    set_direct_depthwise_max_pixels(*model, 0);
  }
  model->set_phase(c.phase);
  model->train();
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : model->named_parameters()) before[p.key()] = p.value().detach().clone();

  if (c.stochastic_depth > 0) {
    // Otherwise the case would pass whatever our masks.
    ASSERT_GT(reference.get("dropped").item<int64_t>(), 0);
    torch::manual_seed(kStepSeed);
  }
  const torch::Tensor loss =
      torch::nn::functional::cross_entropy(model->forward(input), reference.get("labels"));
  loss.backward();
  expect_kernels(model, c, label);

  const double loss_ref = reference.get("loss").item<double>();
  const double loss_error = std::abs(loss.item<double>() - loss_ref) / std::abs(loss_ref);
  EXPECT_LE(loss_error, kLossBound)
      << label << "loss " << loss.item<double>() << ", torchvision " << loss_ref;
  std::cout << label << "loss " << loss.item<double>() << ", relative error " << loss_error << "\n";

  const std::vector<torch::Tensor> trainable = expect_gradients(model, reference, label);
  expect_buffers(model, c, reference, label);

  // The trainer's optimizer and step.
  const double adam_eps = our_adam_eps();
  const auto optimizer = train::make_adam(trainable, kLr, adam_eps);
  train::fused_adam_step(*optimizer);
  expect_parameters(model, before, reference, adam_eps, label);
}

INSTANTIATE_TEST_SUITE_P(
    Phases, ModelsTrainingParity,
    ::testing::Values(Case{Phase::kFull, Kernels::kOurs}, Case{Phase::kFull, Kernels::kLibTorch},
                      Case{Phase::kFull, Kernels::kNchw}, Case{Phase::kFinetune, Kernels::kOurs},
                      Case{Phase::kFinetune, Kernels::kLibTorch},
                      Case{Phase::kFinetune, Kernels::kNchw}, Case{Phase::kHead, Kernels::kOurs},
                      Case{Phase::kHead, Kernels::kLibTorch}, Case{Phase::kHead, Kernels::kNchw},
                      Case{Phase::kFull, Kernels::kOurs, /*stochastic_depth=*/0.2}),
    [](const ::testing::TestParamInfo<Case>& param) { return case_name(param.param); });

// The optimizer alone, where the 1e-6 applies to every element: from
// torchvision's own gradients, make_adam + fused_adam_step against
// torch.optim.Adam (default eps) on every trainable parameter of phase full.
TEST(ModelsAdamParity, FusedAdamFromTorchvisionGradientsMatchesTorchAdam) {
  const Reference& reference = reference_for(Case{Phase::kFull, Kernels::kOurs});
  const double adam_eps = our_adam_eps();
  TransferModelOptions options;
  options.num_classes = kNumClasses;
  options.phase = Phase::kFull;
  TransferModel model(options);
  model->load_weights(reference.weights());
  // The layouts the trainer steps: channels-last convolution weights.
  model->set_memory_format(torch::MemoryFormat::ChannelsLast);
  std::vector<torch::Tensor> parameters;
  std::vector<std::string> names;
  for (const auto& item : model->named_parameters()) {
    torch::Tensor p = item.value().detach().clone().set_requires_grad(true);
    // In the parameter's layout, or fused_adam_step falls back to Adam::step.
    p.mutable_grad() = torch::empty_like(p).copy_(reference.get("grad." + item.key()));
    parameters.push_back(p);
    names.push_back(item.key());
  }
  const auto optimizer = train::make_adam(parameters, kLr, adam_eps);
  train::fused_adam_step(*optimizer);
  Tally torch_default(kParameterBound);
  Tally same_eps(kParameterBound);
  int64_t over = 0;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const torch::Tensor diff = (parameters[i].detach().to(torch::kFloat64) -
                                reference.get("param." + names[i]).to(torch::kFloat64))
                                   .abs();
    torch_default.add(names[i], max_abs(diff));
    over += (diff > kParameterBound).sum().item<int64_t>();
    same_eps.add(names[i],
                 max_abs_diff(parameters[i].detach(), reference.get("param_eps." + names[i])));
  }
  EXPECT_TRUE(torch_default.ok())
      << "max|p - p_ref| after make_adam (eps " << adam_eps
      << ", TrainOptions::adam_eps) + fused_adam_step vs torch.optim.Adam (default eps "
      << kTorchAdamEps << "), the same gradients: " << torch_default.str() << "; " << over
      << " elements beyond 1e-6";
  EXPECT_TRUE(same_eps.ok()) << "max|p - p_ref| vs torch.optim.Adam with eps " << adam_eps << ": "
                             << same_eps.str();
  std::cout << "fused_adam_step (eps " << adam_eps << ") vs torch.optim.Adam, max|p - p_ref|: "
            << "default eps " << kTorchAdamEps << ": " << torch_default.worst_str() << ", " << over
            << " elements > 1e-6; eps " << adam_eps << ": " << same_eps.worst_str() << "\n";
}

}  // namespace
}  // namespace xfer::trainer::models
