// The datasets one coordinator serves, by name (--dataset NAME=DIR,
// repeatable). Every directory is loaded and validated at start-up: a
// coordinator that is up serves only complete, valid datasets.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/dataset/cifar_format.h"

namespace xfer::coordinator::server {

struct DatasetSource {
  std::string name;
  std::string dir;
};

// Parses "NAME=DIR". NAME is 1-64 characters of [A-Za-z0-9._-]. Throws
// std::invalid_argument quoting the flag value and the expected form.
DatasetSource parse_dataset_flag(const std::string& value);

class DatasetRegistry {
 public:
  // Loads every source. Throws std::invalid_argument for a repeated name and
  // dataset::FormatError (prefixed with the dataset's name) for a bad file.
  explicit DatasetRegistry(const std::vector<DatasetSource>& sources);

  // nullptr when unknown.
  const dataset::CifarDataset* find(const std::string& name) const;
  // "a, b, c" for error messages.
  std::string names_joined() const;
  std::vector<std::string> names() const;

 private:
  // Constant after construction: safe to read from any thread.
  std::map<std::string, std::unique_ptr<dataset::CifarDataset>> datasets_;
};

}  // namespace xfer::coordinator::server
