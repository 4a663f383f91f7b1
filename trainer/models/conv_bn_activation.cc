#include "trainer/models/conv_bn_activation.h"

#include <torch/autograd.h>
#include <torch/utils.h>

#include <cmath>

#include "trainer/models/batch_norm_silu_kernels.h"
#include "trainer/models/depthwise_conv_kernels.h"

namespace xfer::trainer::models {

namespace nn = torch::nn;

namespace {

bool float_cpu_vector(const torch::Tensor& t) {
  return t.defined() && t.dim() == 1 && t.is_contiguous() && t.scalar_type() == torch::kFloat32 &&
         t.device().is_cpu();
}

std::int64_t rows_of(const torch::Tensor& activation) {
  return activation.numel() / activation.size(1);
}

// y = silu(gamma * (x - mean) * invstd + beta) with the batch's mean and
// invstd given: backward is BatchNorm's training backward (through the
// statistics too) after SiLU's.
class BatchNormSiluFunction : public torch::autograd::Function<BatchNormSiluFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& gamma, const torch::Tensor& beta,
                               const torch::Tensor& mean, const torch::Tensor& invstd) {
    // Per-channel loops, not tensor operations: 33 blocks a step would pay
    // LibTorch's dispatch for each.
    const std::int64_t channels = x.size(1);
    torch::Tensor scale = torch::empty({channels}, torch::kFloat32);
    torch::Tensor shift = torch::empty({channels}, torch::kFloat32);
    {
      const torch::Tensor g = gamma.detach().contiguous();
      const torch::Tensor b = beta.detach().contiguous();
      const float* gp = g.data_ptr<float>();
      const float* bp = b.data_ptr<float>();
      const float* mp = mean.data_ptr<float>();
      const float* ip = invstd.data_ptr<float>();
      float* sp = scale.data_ptr<float>();
      float* hp = shift.data_ptr<float>();
      for (std::int64_t c = 0; c < channels; ++c) {
        sp[c] = gp[c] * ip[c];
        hp[c] = bp[c] - mp[c] * sp[c];
      }
    }
    torch::Tensor y = torch::empty_like(x, x.options(), torch::MemoryFormat::ChannelsLast);
    kernels::affine_silu(x.data_ptr<float>(), rows_of(x), x.size(1), scale.data_ptr<float>(),
                         shift.data_ptr<float>(), y.data_ptr<float>());
    ctx->save_for_backward({x, gamma, beta, mean, invstd});
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor gamma = saved[1].detach().contiguous();
    const torch::Tensor beta = saved[2].detach().contiguous();
    const torch::Tensor& mean = saved[3];
    const torch::Tensor& invstd = saved[4];
    if (!grads[0].defined()) return {{}, {}, {}, {}, {}};
    const torch::Tensor dy =
        grads[0].to(torch::kFloat32).contiguous(torch::MemoryFormat::ChannelsLast);
    const std::int64_t rows = rows_of(x);
    const std::int64_t channels = x.size(1);
    torch::Tensor dz = torch::empty_like(x, x.options(), torch::MemoryFormat::ChannelsLast);
    const auto sums = torch::TensorOptions().dtype(torch::kFloat64);
    torch::Tensor sum_dz = torch::empty({channels}, sums);
    torch::Tensor sum_dz_xhat = torch::empty({channels}, sums);
    kernels::silu_backward_with_sums(
        x.data_ptr<float>(), dy.data_ptr<float>(), rows, channels, mean.data_ptr<float>(),
        invstd.data_ptr<float>(), gamma.data_ptr<float>(), beta.data_ptr<float>(),
        dz.data_ptr<float>(), sum_dz.data_ptr<double>(), sum_dz_xhat.data_ptr<double>());
    torch::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty_like(x, x.options(), torch::MemoryFormat::ChannelsLast);
      kernels::batch_norm_input_gradient(x.data_ptr<float>(), dz.data_ptr<float>(), rows, channels,
                                         mean.data_ptr<float>(), invstd.data_ptr<float>(),
                                         gamma.data_ptr<float>(), sum_dz.data_ptr<double>(),
                                         sum_dz_xhat.data_ptr<double>(), dx.data_ptr<float>());
    }
    torch::Tensor dgamma =
        ctx->needs_input_grad(1) ? sum_dz_xhat.to(torch::kFloat32) : torch::Tensor();
    torch::Tensor dbeta = ctx->needs_input_grad(2) ? sum_dz.to(torch::kFloat32) : torch::Tensor();
    return {dx, dgamma, dbeta, torch::Tensor(), torch::Tensor()};
  }
};

// A depthwise convolution ([C, 1, k, k] weight, groups == C) by direct
// summation of the taps inside the image (depthwise_conv_kernels.h).
class DepthwiseConvFunction : public torch::autograd::Function<DepthwiseConvFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               std::int64_t stride, std::int64_t padding) {
    const kernels::DepthwiseShape shape = shape_of(x, weight, stride, padding);
    const torch::Tensor taps = taps_channel_last(weight);
    const bool has_bias = bias.numel() > 0;  // empty: none
    torch::Tensor bias_values;
    if (has_bias) bias_values = bias.detach().contiguous();
    torch::Tensor y =
        torch::empty({shape.batch, shape.channels, shape.out_height(), shape.out_width()},
                     x.options().memory_format(torch::MemoryFormat::ChannelsLast));
    kernels::depthwise_forward(shape, x.data_ptr<float>(), taps.data_ptr<float>(),
                               has_bias ? bias_values.data_ptr<float>() : nullptr,
                               y.data_ptr<float>());
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    if (!grads[0].defined()) return {{}, {}, {}, {}, {}};
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor& weight = saved[1];
    const kernels::DepthwiseShape shape =
        shape_of(x, weight, ctx->saved_data["stride"].toInt(), ctx->saved_data["padding"].toInt());
    const torch::Tensor dy =
        grads[0].to(torch::kFloat32).contiguous(torch::MemoryFormat::ChannelsLast);
    const torch::Tensor taps = taps_channel_last(weight);
    torch::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty_like(x, x.options(), torch::MemoryFormat::ChannelsLast);
    }
    torch::Tensor dtaps;
    if (ctx->needs_input_grad(1)) dtaps = torch::empty_like(taps);
    kernels::depthwise_backward(shape, x.data_ptr<float>(), taps.data_ptr<float>(),
                                dy.data_ptr<float>(), dx.defined() ? dx.data_ptr<float>() : nullptr,
                                dtaps.defined() ? dtaps.data_ptr<float>() : nullptr);
    torch::Tensor dweight;
    if (dtaps.defined()) {
      // [k * k, C] back to the weight's [C, 1, k, k], with the weight's strides.
      dweight = torch::empty_like(weight, weight.options(), torch::MemoryFormat::Preserve)
                    .copy_(dtaps.t().reshape(weight.sizes()));
    }
    torch::Tensor dbias;
    if (ctx->needs_input_grad(2)) dbias = dy.sum({0, 2, 3});
    return {dx, dweight, dbias, torch::Tensor(), torch::Tensor()};
  }

 private:
  static kernels::DepthwiseShape shape_of(const torch::Tensor& x, const torch::Tensor& weight,
                                          std::int64_t stride, std::int64_t padding) {
    kernels::DepthwiseShape shape;
    shape.batch = x.size(0);
    shape.channels = x.size(1);
    shape.height = x.size(2);
    shape.width = x.size(3);
    shape.kernel = weight.size(2);
    shape.stride = stride;
    shape.padding = padding;
    return shape;
  }

  // [C, 1, k, k] as [k * k, C], contiguous: each tap's channel vector.
  static torch::Tensor taps_channel_last(const torch::Tensor& weight) {
    return weight.detach().reshape({weight.size(0), -1}).t().contiguous();
  }
};

}  // namespace

bool fusable_batch_norm_silu(const torch::Tensor& input, const nn::BatchNorm2dImpl& bn) {
  return input.dim() == 4 && input.scalar_type() == torch::kFloat32 && input.device().is_cpu() &&
         !input.is_inference() && input.is_contiguous(torch::MemoryFormat::ChannelsLast) &&
         input.size(1) > 0 && rows_of(input) > 1 && bn.options.affine() &&
         bn.options.track_running_stats() && bn.options.momentum().has_value() &&
         bn.num_batches_tracked.defined() && bn.options.num_features() == input.size(1) &&
         float_cpu_vector(bn.weight) && float_cpu_vector(bn.bias) &&
         float_cpu_vector(bn.running_mean) && float_cpu_vector(bn.running_var);
}

torch::Tensor batch_norm_silu_train(const torch::Tensor& input, nn::BatchNorm2dImpl& bn) {
  // Before any raw pointer is read.
  TORCH_CHECK(fusable_batch_norm_silu(input, bn),
              "batch_norm_silu_train: the input or the BatchNorm is not fusable (see "
              "fusable_batch_norm_silu)");
  const std::int64_t channels = input.size(1);
  const std::int64_t rows = rows_of(input);
  torch::Tensor mean = torch::empty({channels}, torch::kFloat32);
  torch::Tensor variance = torch::empty({channels}, torch::kFloat32);
  kernels::channel_mean_variance(input.data_ptr<float>(), rows, channels, mean.data_ptr<float>(),
                                 variance.data_ptr<float>());
  torch::Tensor invstd = torch::empty({channels}, torch::kFloat32);
  {
    // As BatchNorm2d::forward in train mode: the momentum's running averages,
    // the variance unbiased. Loops over the channels (see forward above).
    torch::NoGradGuard no_grad;
    const double momentum = *bn.options.momentum();
    const double eps = bn.options.eps();
    const double unbiased = static_cast<double>(rows) / static_cast<double>(rows - 1);
    bn.num_batches_tracked += 1;
    float* running_mean = bn.running_mean.data_ptr<float>();
    float* running_var = bn.running_var.data_ptr<float>();
    const float* m = mean.data_ptr<float>();
    const float* v = variance.data_ptr<float>();
    float* inv = invstd.data_ptr<float>();
    for (std::int64_t c = 0; c < channels; ++c) {
      inv[c] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(v[c]) + eps));
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * m[c]);
      running_var[c] =
          static_cast<float>((1.0 - momentum) * running_var[c] + momentum * v[c] * unbiased);
    }
    // Written through raw pointers: bump the versions as mul_/add_ would.
    bn.running_mean.unsafeGetTensorImpl()->bump_version();
    bn.running_var.unsafeGetTensorImpl()->bump_version();
  }
  return BatchNormSiluFunction::apply(input, bn.weight, bn.bias, mean, invstd);
}

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

bool ConvBnActivationImpl::takes_direct_depthwise(const torch::Tensor& input,
                                                  const torch::Tensor& weight) const {
  // Only where backward will run (never under InferenceMode, which turns
  // GradMode off): forward alone is no faster than oneDNN's.
  if (!torch::GradMode::is_enabled() || !(input.requires_grad() || weight.requires_grad())) {
    return false;
  }
  const auto& options = conv_->options;
  const auto& padding = c10::get<torch::ExpandingArray<2>>(options.padding());
  return direct_depthwise_max_pixels_ > 0 && options.groups() == options.in_channels() &&
         options.groups() == options.out_channels() &&
         options.stride()->at(0) == options.stride()->at(1) && padding->at(0) == padding->at(1) &&
         options.kernel_size()->at(0) == options.kernel_size()->at(1) &&
         options.dilation()->at(0) == 1 && options.dilation()->at(1) == 1 &&
         torch::get_num_threads() == 1 && input.dim() == 4 &&
         input.scalar_type() == torch::kFloat32 && input.device().is_cpu() &&
         input.is_contiguous(torch::MemoryFormat::ChannelsLast) &&
         input.size(2) * input.size(3) <= direct_depthwise_max_pixels_;
}

torch::Tensor ConvBnActivationImpl::convolve(const torch::Tensor& input,
                                             const torch::Tensor& weight,
                                             const torch::Tensor& bias) {
  const auto& options = conv_->options;
  // The constructor gives an explicit padding (never "same"/"valid").
  const auto& padding = c10::get<torch::ExpandingArray<2>>(options.padding());
  direct_depthwise_last_forward_ = takes_direct_depthwise(input, weight);
  if (direct_depthwise_last_forward_) {
    // An undefined tensor cannot be an autograd function's input: no bias is
    // an empty one.
    return DepthwiseConvFunction::apply(input, weight,
                                        bias.defined() ? bias : torch::empty({0}, weight.options()),
                                        options.stride()->at(0), padding->at(0));
  }
  return torch::conv2d(input, weight, bias, options.stride(), padding, options.dilation(),
                       options.groups());
}

torch::Tensor ConvBnActivationImpl::forward(const torch::Tensor& input) {
  const bool inference = c10::InferenceMode::is_enabled();
  // A kept fold is for consecutive InferenceMode forwards only: anything
  // else (a training step, an optimizer update between) drops it.
  if (!inference && inference_fold_.weight.defined()) inference_fold_ = FoldedConv{};
  fused_last_forward_ = false;
  torch::Tensor x;
  if (folds()) {
    FoldedConv fresh;
    if (!inference) fresh = fold_batch_norm(conv_->weight, *bn_);
    const FoldedConv& folded = inference ? inference_fold() : fresh;
    x = convolve(input, folded.weight, folded.bias);
  } else {
    x = convolve(input, conv_->weight, torch::Tensor());
    // The fused loops run on one thread: with more intra-op threads,
    // LibTorch's parallel BatchNorm and SiLU are the faster choice.
    if (fuse_train_ && !silu_.is_empty() && bn_->is_training() && torch::get_num_threads() == 1 &&
        fusable_batch_norm_silu(x, *bn_)) {
      fused_last_forward_ = true;
      return batch_norm_silu_train(x, *bn_);
    }
    x = bn_->forward(x);
  }
  if (!silu_.is_empty()) {
    // x is this forward's own fresh output; where autograd records nothing
    // (InferenceMode, NoGradGuard, a frozen block) nobody else holds it.
    x = x.requires_grad() ? silu_->forward(x) : torch::silu_(x);
  }
  return x;
}

namespace {

// Calls set(block) on every ConvBnActivation below `root` (itself included);
// returns how many there are.
template <typename Set>
int for_each_block(nn::Module& root, Set set) {
  int count = 0;
  for (const auto& module : root.modules(/*include_self=*/true)) {
    if (auto* block = module->as<ConvBnActivationImpl>()) {
      set(*block);
      ++count;
    }
  }
  return count;
}

}  // namespace

int set_fold_frozen_batch_norm(nn::Module& root, bool on) {
  return for_each_block(root, [on](ConvBnActivationImpl& block) { block.set_fold(on); });
}

int set_fuse_train_batch_norm_silu(nn::Module& root, bool on) {
  return for_each_block(root, [on](ConvBnActivationImpl& block) { block.set_fuse_train(on); });
}

int set_direct_depthwise_max_pixels(nn::Module& root, std::int64_t pixels) {
  return for_each_block(root, [pixels](ConvBnActivationImpl& block) {
    block.set_direct_depthwise_max_pixels(pixels);
  });
}

}  // namespace xfer::trainer::models
