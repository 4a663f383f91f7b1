#include "trainer/models/model_file.h"

#include <set>
#include <stdexcept>

namespace xfer::trainer::models {
namespace {

const std::set<std::string>& reserved_keys() {
  static const std::set<std::string> keys = {kModelFileFormatKey, "arch",   "num_classes",
                                             "image_size",        "labels", "base_file",
                                             "state_dict"};
  return keys;
}

// The field `key` of a model file, which must exist.
const torch::IValue& field(const c10::impl::GenericDict& dict, const std::string& key,
                           const std::string& source) {
  const auto it = dict.find(torch::IValue(key));
  if (it == dict.end()) {
    throw std::runtime_error(source + " is an xfer model file without the field '" + key +
                             "'; expected the fields xfer_model_format, arch, num_classes, "
                             "image_size, labels, base_file and state_dict");
  }
  return it->value();
}

[[noreturn]] void wrong_type(const std::string& source, const std::string& key,
                             const torch::IValue& value, const std::string& expected) {
  throw std::runtime_error(source + ": model-file field '" + key + "' is a " + value.tagKind() +
                           ", expected " + expected);
}

int64_t int_field(const c10::impl::GenericDict& dict, const std::string& key,
                  const std::string& source) {
  const torch::IValue& value = field(dict, key, source);
  if (!value.isInt()) wrong_type(source, key, value, "an int");
  return value.toInt();
}

std::string string_field(const c10::impl::GenericDict& dict, const std::string& key,
                         const std::string& source) {
  const torch::IValue& value = field(dict, key, source);
  if (!value.isString()) wrong_type(source, key, value, "a string");
  return value.toStringRef();
}

std::vector<std::string> string_list_field(const c10::impl::GenericDict& dict,
                                           const std::string& key, const std::string& source) {
  const torch::IValue& value = field(dict, key, source);
  if (!value.isList()) wrong_type(source, key, value, "a list of strings");
  std::vector<std::string> result;
  for (const torch::IValue& item : value.toListRef()) {
    if (!item.isString()) {
      throw std::runtime_error(source + ": model-file field '" + key + "' item " +
                               std::to_string(result.size()) + " is a " + item.tagKind() +
                               ", expected a string");
    }
    result.push_back(item.toStringRef());
  }
  return result;
}

WeightsFile from_ivalue(const torch::IValue& value, const std::string& source) {
  WeightsFile file;
  if (!value.isGenericDict()) {
    throw std::runtime_error(source + " holds a " + value.tagKind() +
                             ", expected a state dict or an xfer model file (both are dicts)");
  }
  const c10::impl::GenericDict dict = value.toGenericDict();
  if (dict.find(torch::IValue(std::string(kModelFileFormatKey))) == dict.end()) {
    file.state_dict = state_dict_from_ivalue(value, source);
    return file;
  }
  const int64_t format = int_field(dict, kModelFileFormatKey, source);
  if (format != kModelFileFormat) {
    throw std::runtime_error(source + " is an xfer model file of format " + std::to_string(format) +
                             ", this build reads format " + std::to_string(kModelFileFormat));
  }
  ModelMetadata metadata;
  metadata.arch = string_field(dict, "arch", source);
  metadata.num_classes = int_field(dict, "num_classes", source);
  metadata.image_size = int_field(dict, "image_size", source);
  metadata.labels = string_list_field(dict, "labels", source);
  metadata.base_file = string_field(dict, "base_file", source);
  try {
    validate_metadata(metadata, source);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(e.what());
  }
  file.state_dict =
      state_dict_from_ivalue(field(dict, "state_dict", source), source + " (field 'state_dict')");
  file.metadata = std::move(metadata);
  return file;
}

}  // namespace

void validate_metadata(const ModelMetadata& metadata, const std::string& source) {
  if (metadata.arch != "efficientnet_b0" && metadata.arch != "torchscript") {
    throw std::invalid_argument(source + ": arch '" + metadata.arch +
                                "' is unknown, expected efficientnet_b0 or torchscript");
  }
  if (metadata.num_classes < 1) {
    throw std::invalid_argument(source + ": num_classes is " +
                                std::to_string(metadata.num_classes) + ", expected >= 1");
  }
  if (metadata.image_size < 1) {
    throw std::invalid_argument(source + ": image_size is " + std::to_string(metadata.image_size) +
                                ", expected >= 1");
  }
  if (!metadata.labels.empty() &&
      static_cast<int64_t>(metadata.labels.size()) != metadata.num_classes) {
    throw std::invalid_argument(source + ": " + std::to_string(metadata.labels.size()) +
                                " labels for " + std::to_string(metadata.num_classes) +
                                " classes, expected none or one per class");
  }
}

std::vector<char> serialize_model_file(
    const ModelMetadata& metadata, const StateDict& state_dict,
    const std::vector<std::pair<std::string, torch::IValue>>& extra) {
  validate_metadata(metadata, "model file");
  c10::impl::GenericDict dict(c10::StringType::get(), c10::AnyType::get());
  dict.insert(std::string(kModelFileFormatKey), kModelFileFormat);
  dict.insert(std::string("arch"), metadata.arch);
  dict.insert(std::string("num_classes"), metadata.num_classes);
  dict.insert(std::string("image_size"), metadata.image_size);
  dict.insert(std::string("labels"), c10::List<std::string>(metadata.labels));
  dict.insert(std::string("base_file"), metadata.base_file);
  dict.insert(std::string("state_dict"), state_dict_to_ivalue(state_dict));
  for (const auto& [key, value] : extra) {
    if (reserved_keys().count(key)) {
      throw std::invalid_argument("model file: extra entry '" + key +
                                  "' would replace a reserved field");
    }
    dict.insert(key, value);
  }
  return torch::pickle_save(torch::IValue(dict));
}

void write_model_file(const std::string& path, const ModelMetadata& metadata,
                      const StateDict& state_dict,
                      const std::vector<std::pair<std::string, torch::IValue>>& extra) {
  write_file_atomically(serialize_model_file(metadata, state_dict, extra), path);
}

WeightsFile parse_weights(const std::vector<char>& bytes, const std::string& source) {
  return from_ivalue(parse_torch_bytes(bytes, source), source);
}

WeightsFile read_weights_file(const std::string& path) {
  return from_ivalue(read_torch_file(path), path);
}

}  // namespace xfer::trainer::models
