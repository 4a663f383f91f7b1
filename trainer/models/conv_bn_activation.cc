#include "trainer/models/conv_bn_activation.h"

namespace xfer::trainer::models {

namespace nn = torch::nn;

FoldedConv fold_batch_norm(const torch::Tensor& weight, const nn::BatchNorm2dImpl& bn) {
  const torch::Tensor scale = bn.weight * torch::rsqrt(bn.running_var + bn.options.eps());
  FoldedConv folded;
  folded.bias = bn.bias - bn.running_mean * scale;
  const torch::Tensor channel_scale = scale.view({-1, 1, 1, 1});
  if (weight.suggest_memory_format() == torch::MemoryFormat::ChannelsLast) {
    // Multiplied in [O, kh, kw, I] order, in which a channels-last weight is
    // plainly contiguous, so the product's strides are the channels-last
    // ones. `weight * s` would leave the layout of the product to
    // TensorIterator, which need not keep the strides of size-1 dimensions
    // ([O, I, 1, 1], [C, 1, k, k]) that tell convolution "channels-last".
    folded.weight = (weight.permute({0, 2, 3, 1}) * channel_scale).permute({0, 3, 1, 2});
  } else {
    folded.weight = weight * channel_scale;
  }
  return folded;
}

ConvBnActivationImpl::ConvBnActivationImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                           int64_t groups, bool silu, bool fold)
    : fold_(fold) {
  conv_ = register_module("0", nn::Conv2d(nn::Conv2dOptions(in, out, kernel)
                                              .stride(stride)
                                              .padding((kernel - 1) / 2)
                                              .groups(groups)
                                              .bias(false)));
  bn_ = register_module("1", nn::BatchNorm2d(nn::BatchNorm2dOptions(out).eps(1e-5).momentum(0.1)));
  if (silu) silu_ = register_module("2", nn::SiLU());
}

bool ConvBnActivationImpl::stamp_fold_sources(FoldSources& stamps) const {
  const std::array<const torch::Tensor*, 5> sources{&conv_->weight, &bn_->weight, &bn_->bias,
                                                    &bn_->running_mean, &bn_->running_var};
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const torch::Tensor& t = *sources[i];
    if (t.is_inference()) return false;  // no version counter
    stamps[i] = SourceStamp{t.data_ptr(), static_cast<std::int64_t>(t._version())};
  }
  return true;
}

const FoldedConv& ConvBnActivationImpl::inference_fold() {
  FoldSources stamps;
  if (!stamp_fold_sources(stamps)) {
    inference_fold_ = fold_batch_norm(conv_->weight, *bn_);
    inference_fold_sources_ = FoldSources{};  // never matches: refolded next time
    return inference_fold_;
  }
  if (!inference_fold_.weight.defined() || stamps != inference_fold_sources_) {
    inference_fold_ = fold_batch_norm(conv_->weight, *bn_);
    inference_fold_sources_ = stamps;
  }
  return inference_fold_;
}

torch::Tensor ConvBnActivationImpl::forward(const torch::Tensor& input) {
  const bool inference = c10::InferenceMode::is_enabled();
  // A kept fold is for consecutive InferenceMode forwards only: anything
  // else (a training step, an optimizer update between) drops it.
  if (!inference && inference_fold_.weight.defined()) inference_fold_ = FoldedConv{};
  torch::Tensor x;
  if (folds()) {
    FoldedConv fresh;
    if (!inference) fresh = fold_batch_norm(conv_->weight, *bn_);
    const FoldedConv& folded = inference ? inference_fold() : fresh;
    const auto& options = conv_->options;
    // The constructor gives an explicit padding (never "same"/"valid").
    const auto& padding = c10::get<torch::ExpandingArray<2>>(options.padding());
    x = torch::conv2d(input, folded.weight, folded.bias, options.stride(), padding,
                      options.dilation(), options.groups());
  } else {
    x = bn_->forward(conv_->forward(input));
  }
  if (!silu_.is_empty()) {
    // x is this forward's own fresh output; where autograd records nothing
    // (InferenceMode, NoGradGuard, a frozen block) nobody else holds it.
    x = x.requires_grad() ? silu_->forward(x) : torch::silu_(x);
  }
  return x;
}

int set_fold_frozen_batch_norm(nn::Module& root, bool on) {
  int count = 0;
  for (const auto& module : root.modules(/*include_self=*/true)) {
    if (auto* block = module->as<ConvBnActivationImpl>()) {
      block->set_fold(on);
      ++count;
    }
  }
  return count;
}

}  // namespace xfer::trainer::models
