// A small EfficientNet-B0 transfer model (5 classes unless told, 32 px), an Adam over
// its trainable parameters, one training step and the model file's
// metadata: what the checkpoint tests encode and decode.
#pragma once

#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <memory>
#include <vector>

#include "trainer/models/model_file.h"
#include "trainer/models/transfer_model.h"

namespace xfer::trainer::train::testing {

inline models::TransferModel small_model(models::Phase phase, int num_classes = 5) {
  models::TransferModelOptions o;
  o.num_classes = num_classes;
  o.dry_run_image_size = 32;
  o.phase = phase;
  torch::manual_seed(1);
  return models::TransferModel(o);
}

inline std::unique_ptr<torch::optim::Adam> adam_over(models::TransferModel& model) {
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  return std::make_unique<torch::optim::Adam>(trainable, torch::optim::AdamOptions(1e-3).eps(1e-7));
}

inline void train_step(models::TransferModel& model, torch::optim::Adam& adam, int seed) {
  torch::manual_seed(seed);
  const torch::Tensor x = torch::randn({4, 3, 32, 32});
  const torch::Tensor y = torch::randint(0, 5, {4}, torch::kInt64);
  adam.zero_grad();
  torch::nn::functional::cross_entropy(model->forward(x), y).backward();
  adam.step();
}

inline models::ModelMetadata metadata() {
  models::ModelMetadata m;
  m.num_classes = 5;
  m.image_size = 32;
  m.labels = {"a", "b", "c", "d", "e"};
  return m;
}

}  // namespace xfer::trainer::train::testing
