#include "trainer/train/checkpoint_codec.h"

#include <torch/types.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

#include "trainer/models/state_dict.h"
#include "trainer/train/fused_adam.h"

namespace xfer::trainer::train {
namespace {

constexpr const char* kTrainingKey = "xfer_training";
constexpr const char* kOptimizerKey = "optimizer_state";

}  // namespace

std::string to_json(const TrainingState& s) {
  nlohmann::json j;
  j["phase"] = s.phase;
  j["epochs_done"] = s.epochs_done;
  j["global_step"] = s.global_step;
  j["phase_step"] = s.phase_step;
  j["global_epoch"] = s.global_epoch;
  j["val_loss"] = s.val_loss;
  j["val_top1"] = s.val_top1;
  j["world_size"] = s.world_size;
  j["batch_size"] = s.batch_size;
  j["seed"] = s.seed;
  if (s.mid_epoch()) {
    j["epoch_steps_done"] = s.epoch_steps_done;
    j["epoch_seconds"] = s.epoch_seconds;
    nlohmann::json partial = nlohmann::json::array();
    for (const PartialTotals& t : s.epoch_partial) {
      partial.push_back(
          {{"loss_sum", t.loss_sum}, {"top1", t.top1}, {"top3", t.top3}, {"samples", t.samples}});
    }
    j["epoch_partial"] = std::move(partial);
  }
  return j.dump();
}

TrainingState training_state_from_json(const std::string& text, const std::string& source) {
  try {
    const auto j = nlohmann::json::parse(text);
    TrainingState s;
    s.phase = j.at("phase").get<std::string>();
    s.epochs_done = j.at("epochs_done").get<int>();
    s.global_step = j.at("global_step").get<std::int64_t>();
    s.phase_step = j.at("phase_step").get<std::int64_t>();
    s.global_epoch = j.at("global_epoch").get<int>();
    // NaN is written as null by nlohmann.
    s.val_loss = j.at("val_loss").is_null() ? std::nan("") : j.at("val_loss").get<double>();
    s.val_top1 = j.at("val_top1").is_null() ? 0.0 : j.at("val_top1").get<double>();
    s.world_size = j.at("world_size").get<int>();
    s.batch_size = j.at("batch_size").get<int>();
    s.seed = j.at("seed").get<std::uint64_t>();
    if (j.contains("epoch_steps_done")) {
      s.epoch_steps_done = j.at("epoch_steps_done").get<std::int64_t>();
      s.epoch_seconds = j.at("epoch_seconds").get<double>();
      for (const auto& t : j.at("epoch_partial")) {
        s.epoch_partial.push_back({t.at("loss_sum").get<double>(), t.at("top1").get<std::int64_t>(),
                                   t.at("top3").get<std::int64_t>(),
                                   t.at("samples").get<std::int64_t>()});
      }
    }
    models::parse_phase(s.phase);
    if (s.epochs_done < 0 || s.global_step < 0 || s.phase_step < 0 || s.global_epoch < 0 ||
        s.epoch_steps_done < 0) {
      throw std::invalid_argument("a negative epoch or step count");
    }
    if (s.mid_epoch() && static_cast<int>(s.epoch_partial.size()) != s.world_size) {
      throw std::invalid_argument("a mid-epoch state with " +
                                  std::to_string(s.epoch_partial.size()) +
                                  " ranks' counts for world size " + std::to_string(s.world_size));
    }
    return s;
  } catch (const std::exception& e) {
    throw std::runtime_error(source + ": key '" + kTrainingKey +
                             "' is not a valid training state (" + e.what() + ")");
  }
}

std::vector<char> encode_checkpoint(const models::ModelMetadata& metadata,
                                    models::TransferModelImpl& model, torch::optim::Adam& optimizer,
                                    const TrainingState& state) {
  c10::Dict<std::string, torch::Tensor> optimizer_state;
  auto& states = optimizer.state();
  for (const auto& item : model.named_parameters()) {
    const auto found = states.find(adam_state_key(item.value()));
    if (found == states.end()) continue;
    const auto& adam = static_cast<const torch::optim::AdamParamState&>(*found->second);
    optimizer_state.insert(item.key() + ".exp_avg",
                           adam.exp_avg().detach().to(torch::kCPU).contiguous());
    optimizer_state.insert(item.key() + ".exp_avg_sq",
                           adam.exp_avg_sq().detach().to(torch::kCPU).contiguous());
    optimizer_state.insert(item.key() + ".step", torch::tensor(adam.step(), torch::kInt64));
  }
  std::vector<std::pair<std::string, torch::IValue>> extra;
  extra.emplace_back(kTrainingKey, torch::IValue(to_json(state)));
  extra.emplace_back(kOptimizerKey, torch::IValue(optimizer_state));
  return models::serialize_model_file(metadata, models::model_state_dict(model), extra);
}

DecodedCheckpoint decode_checkpoint(const std::vector<char>& bytes, const std::string& source) {
  DecodedCheckpoint out;
  out.weights = models::parse_weights(bytes, source);
  const torch::IValue value = models::parse_torch_bytes(bytes, source);
  const auto dict = value.toGenericDict();
  const auto training = dict.find(kTrainingKey);
  if (training == dict.end()) return out;
  if (!training->value().isString()) {
    throw std::runtime_error(source + ": key '" + kTrainingKey + "' is not a string");
  }
  out.state = training_state_from_json(training->value().toStringRef(), source);
  out.has_training_state = true;
  const auto optimizer = dict.find(kOptimizerKey);
  if (optimizer == dict.end()) {
    throw std::runtime_error(source + ": has a training state but no '" + kOptimizerKey + "'");
  }
  out.optimizer_state = models::state_dict_from_ivalue(optimizer->value(), source);
  return out;
}

void restore_optimizer(torch::optim::Adam& optimizer, models::TransferModelImpl& model,
                       const models::StateDict& saved, const std::string& source) {
  auto& states = optimizer.state();
  for (const auto& item : model.named_parameters()) {
    const torch::Tensor& p = item.value();
    if (!p.requires_grad()) continue;
    const torch::Tensor* exp_avg = saved.find(item.key() + ".exp_avg");
    const torch::Tensor* exp_avg_sq = saved.find(item.key() + ".exp_avg_sq");
    const torch::Tensor* step = saved.find(item.key() + ".step");
    if (exp_avg == nullptr || exp_avg_sq == nullptr || step == nullptr) {
      throw std::runtime_error(source + ": no optimizer state for trainable parameter '" +
                               item.key() + "' (the checkpoint was taken in another phase?)");
    }
    if (!exp_avg->sizes().equals(p.sizes()) || !exp_avg_sq->sizes().equals(p.sizes())) {
      throw std::runtime_error(source + ": optimizer state of '" + item.key() + "' has shape " +
                               models::shape_string(*exp_avg) + ", expected " +
                               models::shape_string(p));
    }
    auto adam = std::make_unique<torch::optim::AdamParamState>();
    adam->step(step->item<std::int64_t>());
    // In the parameter's layout (channels-last convolutions), as Adam makes
    // its state: the update then runs over matching strides.
    adam->exp_avg(torch::empty_like(p).copy_(*exp_avg));
    adam->exp_avg_sq(torch::empty_like(p).copy_(*exp_avg_sq));
    states[adam_state_key(p)] = std::move(adam);
  }
}

}  // namespace xfer::trainer::train
