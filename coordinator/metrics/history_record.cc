#include "coordinator/metrics/history_record.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace xfer::coordinator::metrics {
namespace {

constexpr const char* kReportType = "report";
constexpr const char* kDiscardType = "discard_incomplete";

template <typename T>
T field(const nlohmann::json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end()) throw std::runtime_error(std::string("missing field '") + name + "'");
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw std::runtime_error(std::string("field '") + name + "' has the wrong type (" +
                             it->type_name() + ")");
  }
}

}  // namespace

std::string encode(const HistoryRecord& record) {
  nlohmann::json j;
  const RankReport& r = record.report;
  j["unix_ms"] = record.unix_ms;
  j["run"] = r.run;
  if (record.type == HistoryRecord::Type::kDiscardIncomplete) {
    j["type"] = kDiscardType;
    return j.dump();
  }
  j["type"] = kReportType;
  j["rank"] = r.rank;
  j["world_size"] = r.world_size;
  j["phase"] = r.phase;
  j["epoch"] = r.epoch;
  j["step"] = r.step;
  j["split"] = to_string(r.split);
  j["loss_sum"] = r.loss_sum;
  j["correct_top1"] = r.correct_top1;
  j["correct_top3"] = r.correct_top3;
  j["samples"] = r.samples;
  j["images_per_second"] = r.images_per_second;
  j["data_wait_ms"] = r.data_wait_ms;
  j["comm_ms"] = r.comm_ms;
  j["learning_rate"] = r.learning_rate;
  j["end_of_epoch"] = r.end_of_epoch;
  j["steps_in_epoch"] = r.steps_in_epoch;
  return j.dump();
}

HistoryRecord decode(std::string_view line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) throw std::runtime_error("not a JSON object");

  HistoryRecord record;
  const auto type = field<std::string>(j, "type");
  record.unix_ms = field<std::int64_t>(j, "unix_ms");
  RankReport& r = record.report;
  r.run = field<std::string>(j, "run");
  if (type == kDiscardType) {
    record.type = HistoryRecord::Type::kDiscardIncomplete;
    return record;
  }
  if (type != kReportType) {
    throw std::runtime_error("unknown record type '" + type + "' (expected " + kReportType +
                             " or " + kDiscardType + ")");
  }
  record.type = HistoryRecord::Type::kReport;
  r.rank = field<int>(j, "rank");
  r.world_size = field<int>(j, "world_size");
  r.phase = field<std::string>(j, "phase");
  r.epoch = field<std::int64_t>(j, "epoch");
  r.step = field<std::int64_t>(j, "step");
  const auto split = field<std::string>(j, "split");
  const auto kind = parse_split_kind(split);
  if (!kind) {
    throw std::runtime_error("unknown split '" + split + "' (expected train, validation or test)");
  }
  r.split = *kind;
  r.loss_sum = field<double>(j, "loss_sum");
  r.correct_top1 = field<std::int64_t>(j, "correct_top1");
  r.correct_top3 = field<std::int64_t>(j, "correct_top3");
  r.samples = field<std::int64_t>(j, "samples");
  r.images_per_second = field<double>(j, "images_per_second");
  r.data_wait_ms = field<double>(j, "data_wait_ms");
  r.comm_ms = field<double>(j, "comm_ms");
  r.learning_rate = field<double>(j, "learning_rate");
  r.end_of_epoch = field<bool>(j, "end_of_epoch");
  // Absent from files written before the field existed: unknown.
  if (j.contains("steps_in_epoch")) r.steps_in_epoch = field<std::int64_t>(j, "steps_in_epoch");
  return record;
}

}  // namespace xfer::coordinator::metrics
