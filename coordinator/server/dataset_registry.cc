#include "coordinator/server/dataset_registry.h"

#include <spdlog/spdlog.h>

#include <regex>
#include <stdexcept>

namespace xfer::coordinator::server {

DatasetSource parse_dataset_flag(const std::string& value) {
  static const std::regex kForm(R"(^([A-Za-z0-9._-]{1,64})=(.+)$)");
  std::smatch match;
  if (!std::regex_match(value, match, kForm)) {
    throw std::invalid_argument("--dataset '" + value +
                                "': expected NAME=DIR with NAME of 1-64 characters from "
                                "[A-Za-z0-9._-], e.g. cifar100=/data/cifar-100");
  }
  return {match[1].str(), match[2].str()};
}

DatasetRegistry::DatasetRegistry(const std::vector<DatasetSource>& sources) {
  for (const auto& source : sources) {
    if (datasets_.count(source.name) != 0) {
      throw std::invalid_argument("--dataset: name '" + source.name +
                                  "' given twice (expected each name once)");
    }
    try {
      auto loaded = std::make_unique<dataset::CifarDataset>(dataset::load_cifar100(source.dir));
      spdlog::info("dataset {}: {} train and {} test records from {}", source.name,
                   loaded->split("train").size(), loaded->split("test").size(), source.dir);
      datasets_[source.name] = std::move(loaded);
    } catch (const dataset::FormatError& e) {
      throw dataset::FormatError("dataset '" + source.name + "': " + e.what());
    }
  }
}

const dataset::CifarDataset* DatasetRegistry::find(const std::string& name) const {
  const auto it = datasets_.find(name);
  return it == datasets_.end() ? nullptr : it->second.get();
}

std::vector<std::string> DatasetRegistry::names() const {
  std::vector<std::string> result;
  for (const auto& [name, unused] : datasets_) result.push_back(name);
  return result;
}

std::string DatasetRegistry::names_joined() const {
  std::string joined;
  for (const auto& [name, unused] : datasets_) joined += (joined.empty() ? "" : ", ") + name;
  return joined.empty() ? std::string("none") : joined;
}

}  // namespace xfer::coordinator::server
