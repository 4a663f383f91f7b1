#include "coordinator/checkpoint/manifest.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/sha256.h"

namespace xfer::coordinator::checkpoint {
namespace {

using nlohmann::json;

// JSON has no NaN or infinity; they are written as strings.
json metric_to_json(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  return value;
}

double metric_from_json(const json& value) {
  if (value.is_number()) return value.get<double>();
  const std::string text = value.get<std::string>();
  if (text == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (text == "inf") return std::numeric_limits<double>::infinity();
  if (text == "-inf") return -std::numeric_limits<double>::infinity();
  throw std::invalid_argument("metric_value '" + text + "' (expected a number, nan, inf or -inf)");
}

json record_to_json(const CheckpointRecord& r) {
  return json{{"id", r.id},
              {"sequence", r.sequence},
              {"sha256", r.sha256_hex},
              {"size_bytes", r.size_bytes},
              {"created_unix_ms", r.created_unix_ms},
              {"run", r.meta.run},
              {"phase", r.meta.phase},
              {"epoch", r.meta.epoch},
              {"step", r.meta.step},
              {"metric_name", r.meta.metric_name},
              {"metric_value", metric_to_json(r.meta.metric_value)},
              {"direction", to_string(r.meta.direction)},
              {"upload_id", r.meta.upload_id}};
}

Direction direction_from_string(const std::string& text) {
  if (text == "minimize") return Direction::kMinimize;
  if (text == "maximize") return Direction::kMaximize;
  throw std::invalid_argument("direction '" + text + "' (expected minimize or maximize)");
}

CheckpointRecord record_from_json(const json& j) {
  CheckpointRecord r;
  r.id = j.at("id").get<std::string>();
  r.sequence = j.at("sequence").get<std::int64_t>();
  r.sha256_hex = j.at("sha256").get<std::string>();
  r.size_bytes = j.at("size_bytes").get<std::int64_t>();
  r.created_unix_ms = j.at("created_unix_ms").get<std::int64_t>();
  r.meta.run = j.at("run").get<std::string>();
  r.meta.phase = j.at("phase").get<std::string>();
  r.meta.epoch = j.at("epoch").get<std::int64_t>();
  r.meta.step = j.at("step").get<std::int64_t>();
  r.meta.metric_name = j.at("metric_name").get<std::string>();
  r.meta.metric_value = metric_from_json(j.at("metric_value"));
  r.meta.direction = direction_from_string(j.at("direction").get<std::string>());
  r.meta.upload_id = j.at("upload_id").get<std::string>();
  if (r.sha256_hex.size() != 64) {
    throw std::invalid_argument("checkpoint " + r.id + ": sha256 '" + r.sha256_hex +
                                "' (expected 64 hex digits)");
  }
  return r;
}

}  // namespace

std::string serialize_manifest(const Manifest& manifest) {
  json list = json::array();
  for (const auto& record : manifest.checkpoints) list.push_back(record_to_json(record));
  const json document{{"format", kManifestFormat},
                      {"version", kManifestVersion},
                      {"next_sequence", manifest.next_sequence},
                      {"checkpoints", list},
                      {"checkpoints_sha256", common::sha256_hex(list.dump())}};
  return document.dump(1) + "\n";
}

Manifest parse_manifest(const std::string& text, const std::string& path) {
  const auto damaged = [&](const std::string& what) {
    return CheckpointError(CheckpointError::Code::kDataLoss,
                           "checkpoint manifest " + path + " is damaged: " + what +
                               "; the store refuses to start rather than lose track of "
                               "checkpoints (restore the file or move the folder away)");
  };
  json document;
  try {
    document = json::parse(text);
  } catch (const json::parse_error& e) {
    throw damaged(std::string("not valid JSON (") + e.what() + ")");
  }
  try {
    if (!document.is_object() || document.value("format", "") != kManifestFormat) {
      throw damaged(std::string("no \"format\": \"") + kManifestFormat + "\" field");
    }
    const int version = document.at("version").get<int>();
    if (version != kManifestVersion) {
      throw damaged("version " + std::to_string(version) + " (this build reads version " +
                    std::to_string(kManifestVersion) + ")");
    }
    const json& list = document.at("checkpoints");
    const std::string expected = document.at("checkpoints_sha256").get<std::string>();
    const std::string actual = common::sha256_hex(list.dump());
    if (expected != actual) {
      throw damaged("its checkpoint list has SHA-256 " + actual + " but the manifest records " +
                    expected);
    }
    Manifest manifest;
    manifest.next_sequence = document.at("next_sequence").get<std::int64_t>();
    for (const auto& entry : list) manifest.checkpoints.push_back(record_from_json(entry));
    return manifest;
  } catch (const json::exception& e) {
    throw damaged(std::string("a field is missing or has the wrong type (") + e.what() + ")");
  } catch (const std::invalid_argument& e) {
    throw damaged(e.what());
  }
}

}  // namespace xfer::coordinator::checkpoint
