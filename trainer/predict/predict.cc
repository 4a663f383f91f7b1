#include "trainer/predict/predict.h"

#include <spdlog/spdlog.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <filesystem>
#include <stdexcept>

#include "trainer/models/model_file.h"
#include "trainer/models/preprocess.h"
#include "trainer/models/transfer_model.h"
#include "trainer/predict/image.h"

namespace xfer::trainer::predict {
namespace {

namespace models = xfer::trainer::models;

// The head's weight: its first dimension is the class count the file was
// trained for.
constexpr const char* kHeadWeight = "classifier.1.weight";

void check_options(const PredictOptions& options) {
  if (options.weights.empty()) throw std::invalid_argument("predict needs --weights FILE");
  if (options.image.empty()) throw std::invalid_argument("predict needs --image FILE");
  if (options.top_k < 1) {
    throw std::invalid_argument("--top-k is " + std::to_string(options.top_k) + ", expected >= 1");
  }
  if (options.num_classes < 0) {
    throw std::invalid_argument("--num-classes is " + std::to_string(options.num_classes) +
                                ", expected >= 1 (or 0: from the weights file)");
  }
  if (options.image_size < 0) {
    throw std::invalid_argument("--image-size is " + std::to_string(options.image_size) +
                                ", expected >= 1 (or 0: from the model file, else 224)");
  }
}

std::string resolve_arch(const PredictOptions& options, const models::WeightsFile& file) {
  if (file.metadata) {
    if (!options.arch.empty() && options.arch != file.metadata->arch) {
      throw std::invalid_argument(options.weights + " is a model file for arch " +
                                  file.metadata->arch + ", but --arch is " + options.arch);
    }
    return file.metadata->arch;
  }
  return options.arch.empty() ? "efficientnet_b0" : options.arch;
}

int64_t resolve_num_classes(const PredictOptions& options, const models::WeightsFile& file) {
  const torch::Tensor* head = file.state_dict.find(kHeadWeight);
  if (head == nullptr || head->dim() != 2) {
    throw std::runtime_error(options.weights + " has no classifier (" + kHeadWeight +
                             " [num_classes, C]); predict needs trained weights with their head: "
                             "torchvision's ImageNet state dict or a model file from training");
  }
  const int64_t in_file = head->size(0);
  if (options.num_classes != 0 && options.num_classes != in_file) {
    throw std::invalid_argument(options.weights + " has a " + std::to_string(in_file) +
                                "-class head (" + kHeadWeight + " " + models::shape_string(*head) +
                                "), but --num-classes is " + std::to_string(options.num_classes));
  }
  return in_file;
}

std::string resolve_base(const PredictOptions& options, const models::WeightsFile& file) {
  if (!options.base.empty()) return options.base;
  if (file.metadata && !file.metadata->base_file.empty() &&
      std::filesystem::exists(file.metadata->base_file)) {
    spdlog::info("using the TorchScript base {} recorded in {}", file.metadata->base_file,
                 options.weights);
    return file.metadata->base_file;
  }
  throw std::invalid_argument(
      "--arch torchscript needs --base FILE (the TorchScript base the "
      "weights were trained on)");
}

std::vector<std::string> resolve_labels(const PredictOptions& options,
                                        const models::WeightsFile& file, int64_t num_classes) {
  std::vector<std::string> labels;
  std::string from;
  if (!options.labels_file.empty()) {
    labels = read_labels_file(options.labels_file);
    from = "labels file " + options.labels_file;
  } else if (file.metadata) {
    labels = file.metadata->labels;
    from = "model file " + options.weights;
  }
  if (!labels.empty() && static_cast<int64_t>(labels.size()) != num_classes) {
    throw std::runtime_error(from + " has " + std::to_string(labels.size()) +
                             " labels, the model has " + std::to_string(num_classes) +
                             " classes; expected one label per class");
  }
  return labels;
}

// [1, 3, H, W] uint8 from row-major RGB bytes.
torch::Tensor to_tensor(const RgbImage& image) {
  const auto hwc = torch::from_blob(const_cast<uint8_t*>(image.pixels.data()),
                                    {image.height, image.width, 3}, torch::kByte);
  return hwc.permute({2, 0, 1}).unsqueeze(0).contiguous();
}

}  // namespace

PredictResult predict(const PredictOptions& options) {
  check_options(options);
  // The image first: it is the cheap thing to get wrong.
  const RgbImage image = decode_image_file(options.image);
  const models::WeightsFile file = models::read_weights_file(options.weights);

  PredictResult result;
  result.arch = resolve_arch(options, file);
  result.num_classes = resolve_num_classes(options, file);
  result.image_size = options.image_size > 0 ? options.image_size
                      : file.metadata        ? file.metadata->image_size
                                             : 224;
  const std::vector<std::string> labels = resolve_labels(options, file, result.num_classes);

  models::TransferModelOptions model_options;
  model_options.arch = result.arch;
  if (result.arch == "torchscript") model_options.base_path = resolve_base(options, file);
  model_options.num_classes = result.num_classes;
  model_options.dry_run_image_size = result.image_size;
  models::TransferModel model(model_options);
  const models::LoadResult loaded = model->load_weights(file, options.weights);
  if (!loaded.head_loaded) {
    // resolve_num_classes matched the class count; another head width (a
    // base of another architecture) ends up here.
    throw std::runtime_error(options.weights + ": the classifier does not fit the model (" +
                             loaded.head_note + ")");
  }
  model->eval();

  spdlog::info("{}: {}x{} image, model {} at {} px, {} classes", options.image, image.width,
               image.height, result.arch, result.image_size, result.num_classes);
  torch::NoGradGuard no_grad;
  const torch::Tensor input = models::preprocess_imagenet(to_tensor(image), result.image_size);
  const torch::Tensor probabilities =
      torch::softmax(model->forward(input), /*dim=*/1).squeeze(0).to(torch::kDouble).contiguous();
  const double* p = probabilities.data_ptr<double>();
  result.top = top_k(std::vector<double>(p, p + probabilities.numel()), options.top_k, labels);
  return result;
}

}  // namespace xfer::trainer::predict
