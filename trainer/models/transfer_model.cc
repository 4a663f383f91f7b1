#include "trainer/models/transfer_model.h"

#include <spdlog/spdlog.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <stdexcept>
#include <utility>

#include "trainer/models/counter_dropout.h"
#include "trainer/models/efficientnet.h"

namespace xfer::trainer::models {
namespace {

namespace nn = torch::nn;

// Exposes a TorchScript module's tensors through the nn::Module API, under the
// same names, so that parameters(), named_buffers(), optimizers, the Reducer
// and state-dict loading treat both kinds of base alike. The tensors are the
// script module's own (shared TensorImpl), not copies.
std::shared_ptr<nn::Module> mirror_script(const torch::jit::Module& script) {
  auto mirror = std::make_shared<nn::Module>("ScriptMirror");
  for (const auto& p : script.named_parameters(/*recurse=*/false)) {
    mirror->register_parameter(p.name, p.value, p.value.requires_grad());
  }
  for (const auto& b : script.named_buffers(/*recurse=*/false)) {
    mirror->register_buffer(b.name, b.value);
  }
  for (const auto& child : script.named_children()) {
    mirror->register_module(child.name, mirror_script(child.value));
  }
  return mirror;
}

bool is_batchnorm_type(const torch::jit::Module& module) {
  const auto type_name = module.type()->name();
  return type_name && type_name->name().find("BatchNorm") != std::string::npos;
}

}  // namespace

Phase parse_phase(const std::string& name) {
  if (name == "head") return Phase::kHead;
  if (name == "finetune") return Phase::kFinetune;
  if (name == "full") return Phase::kFull;
  throw std::invalid_argument("unknown phase '" + name + "', expected head, finetune or full");
}

const char* phase_name(Phase phase) {
  switch (phase) {
    case Phase::kHead:
      return "head";
    case Phase::kFinetune:
      return "finetune";
    case Phase::kFull:
      return "full";
  }
  return "?";
}

TransferModelImpl::TransferModelImpl(const TransferModelOptions& options) : options_(options) {
  if (options.num_classes < 1) {
    throw std::invalid_argument("num_classes must be >= 1, got " +
                                std::to_string(options.num_classes));
  }
  if (!(options.dropout >= 0 && options.dropout < 1)) {
    throw std::invalid_argument("dropout must be in [0, 1), got " +
                                std::to_string(options.dropout));
  }
  if (options.arch == "efficientnet_b0") {
    if (!options.base_path.empty()) {
      throw std::invalid_argument("--base " + options.base_path +
                                  " is only for --arch torchscript, not efficientnet_b0");
    }
    features_ =
        register_module("features", make_efficientnet_b0_features(options.stochastic_depth_prob,
                                                                  options.fold_frozen_batch_norm));
    base_ = features_.ptr();
    init_efficientnet_weights(*features_);
    feature_channels_ = EfficientNetB0Impl::kFeatureChannels;
    for (const auto& module : features_->modules(/*include_self=*/false)) {
      if (auto* bn = module->as<nn::BatchNorm2d>()) {
        bn_modules_.push_back(module);
        bn_params_.push_back(bn->weight);
        bn_params_.push_back(bn->bias);
        bn_buffers_.push_back(bn->running_mean);
        bn_buffers_.push_back(bn->running_var);
        bn_buffers_.push_back(bn->num_batches_tracked);
      }
    }
  } else if (options.arch == "torchscript") {
    if (options.base_path.empty()) {
      throw std::invalid_argument("--arch torchscript needs --base FILE (a TorchScript base)");
    }
    try {
      script_ = torch::jit::load(options.base_path);
    } catch (const std::exception& e) {
      std::string cause = e.what();
      throw std::runtime_error("cannot load TorchScript base " + options.base_path + ": " +
                               cause.substr(0, cause.find('\n')));
    }
    is_script_ = true;
    base_ = register_module("base", mirror_script(script_));
    for (const auto& sub : script_.named_modules()) {
      if (!is_batchnorm_type(sub.value)) continue;
      script_batchnorms_.push_back(sub.value);
      for (const auto& p : sub.value.named_parameters(/*recurse=*/false))
        bn_params_.push_back(p.value);
      for (const auto& b : sub.value.named_buffers(/*recurse=*/false))
        bn_buffers_.push_back(b.value);
    }
    // The head's width is whatever the base produces: run it once, in eval
    // mode so BatchNorm statistics are untouched.
    script_.eval();
    torch::NoGradGuard no_grad;
    const auto probe = torch::zeros({1, 3, options.dry_run_image_size, options.dry_run_image_size});
    const auto out = base_forward(probe);
    if (out.dim() != 2 && out.dim() != 4) {
      throw std::runtime_error("TorchScript base " + options.base_path + " returned shape " +
                               shape_string(out) + " for a " + shape_string(probe) +
                               " input, expected [N, C] or [N, C, H, W]");
    }
    feature_channels_ = out.size(1);
  } else {
    throw std::invalid_argument("unknown --arch '" + options.arch +
                                "', expected efficientnet_b0 or torchscript");
  }

  // A new head is initialised as a fresh torch.nn.Linear is (LibTorch's
  // nn::Linear does the same: weight and bias U(-1/sqrt(in), 1/sqrt(in))),
  // which is what a PyTorch script that replaces torchvision's classifier
  // trains. torchvision's own EfficientNet init, U(-1/sqrt(out), 1/sqrt(out))
  // with a zero bias, is 3.6x wider for 1280 -> 100 (bench/accuracy).
  auto linear = nn::Linear(feature_channels_, options.num_classes);
  classifier_ = register_module(
      "classifier", options.counter_dropout
                        ? nn::Sequential(CounterDropout(options.dropout), linear)
                        : nn::Sequential(nn::Dropout(nn::DropoutOptions(options.dropout)), linear));
  set_phase(options.phase);
}

torch::Tensor TransferModelImpl::base_forward(const torch::Tensor& images) {
  if (is_script_) {
    const torch::IValue out = script_.forward({images});
    if (!out.isTensor()) {
      throw std::runtime_error("TorchScript base " + options_.base_path + " returned a " +
                               out.tagKind() +
                               ", expected one tensor (export it with tools/export_weights.py)");
    }
    return out.toTensor();
  }
  return features_->forward(images);
}

torch::Tensor TransferModelImpl::forward(const torch::Tensor& images) {
  if (phase_ == Phase::kHead) return head_forward(pooled_features(images));
  auto x = base_forward(images);
  if (x.dim() == 4) x = torch::adaptive_avg_pool2d(x, {1, 1});
  return classifier_->forward(x.flatten(1));
}

torch::Tensor TransferModelImpl::pooled_features(const torch::Tensor& images) {
  torch::Tensor pooled;
  {
    // The frozen base under InferenceMode: no autograd record, and no
    // version counters or view bookkeeping either (cheaper than NoGradGuard).
    c10::InferenceMode inference;
    auto x = base_forward(images);
    if (x.dim() == 4) x = torch::adaptive_avg_pool2d(x, {1, 1});
    pooled = x.flatten(1);
  }
  // The head saves its input for backward, and autograd refuses inference
  // tensors there: a normal copy of the N x C features, tiny beside the base.
  return pooled.clone();
}

torch::Tensor TransferModelImpl::head_forward(const torch::Tensor& features) {
  return classifier_->forward(features);
}

void TransferModelImpl::set_memory_format(torch::MemoryFormat format) {
  torch::NoGradGuard no_grad;
  // Not t.contiguous(format): a tensor with size-1 dimensions (a 1x1 conv's
  // [O, I, 1, 1] weight, a depthwise conv's [C, 1, k, k]) counts as
  // contiguous in both formats, so that returns it unchanged, with strides
  // from which convolution infers NCHW; it then reorders every activation
  // to NCHW and back (3x slower convolutions at 32 px here). Fresh strides of
  // the format, as PyTorch's Module.to(memory_format=...) gives.
  const auto convert = [format](torch::Tensor t) {
    if (t.dim() == 4 && t.suggest_memory_format() != format) {
      t.set_data(torch::empty_like(t, t.options(), format).copy_(t));
    }
  };
  for (auto& p : parameters()) convert(p);
  for (auto& b : buffers()) convert(b);
  if (is_script_) {
    // The mirror registers the script's own tensors, so this is a no-op
    // unless the script holds tensors the mirror does not list.
    for (const auto& p : script_.parameters()) convert(p);
    for (const auto& b : script_.buffers()) convert(b);
  }
}

void TransferModelImpl::set_phase(Phase phase) {
  phase_ = phase;
  for (auto& p : base_parameters()) p.set_requires_grad(phase != Phase::kHead);
  if (phase == Phase::kFinetune) {
    for (auto& p : bn_params_) p.set_requires_grad(false);
  }
  for (auto& p : head_parameters()) p.set_requires_grad(true);
  apply_modes();
}

void TransferModelImpl::train(bool on) {
  nn::Module::train(on);
  apply_modes();
}

void TransferModelImpl::apply_modes() {
  const bool on = is_training();
  const bool base_on = on && phase_ != Phase::kHead;
  const bool bn_on = on && phase_ == Phase::kFull;
  if (is_script_) {
    script_.train(base_on);
    for (auto& bn : script_batchnorms_) bn.train(bn_on);
  } else {
    features_->train(base_on);
    for (auto& bn : bn_modules_) bn->train(bn_on);
  }
}

ParameterCounts TransferModelImpl::parameter_counts() const {
  ParameterCounts counts;
  for (const auto& p : parameters())
    (p.requires_grad() ? counts.trainable : counts.frozen) += p.numel();
  return counts;
}

std::vector<torch::Tensor> TransferModelImpl::base_parameters() const {
  return base_->parameters();
}

std::vector<torch::Tensor> TransferModelImpl::head_parameters() const {
  return classifier_->parameters();
}

std::vector<torch::Tensor> TransferModelImpl::batchnorm_tensors() const {
  auto all = bn_params_;
  all.insert(all.end(), bn_buffers_.begin(), bn_buffers_.end());
  return all;
}

LoadResult TransferModelImpl::load_weights(const std::string& path) {
  return load_weights(read_weights_file(path), path);
}

LoadResult TransferModelImpl::load_weights(const WeightsFile& file, const std::string& source) {
  if (file.metadata && file.metadata->arch != options_.arch) {
    throw std::runtime_error(source + " is a model file for arch " + file.metadata->arch +
                             ", the model is " + options_.arch);
  }
  LoadResult result = load_state_dict(*this, file.state_dict, source);
  spdlog::info("loaded {} tensors from {} ({})", result.tensors_loaded, source,
               result.head_loaded ? "head loaded" : "new head initialised");
  return result;
}

}  // namespace xfer::trainer::models
