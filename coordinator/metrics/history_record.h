// One line of a run's metrics history file, as JSON.
//
//   {"type":"report","unix_ms":...,"run":"r1","rank":0,"world_size":2,...}
//   {"type":"discard_incomplete","unix_ms":...,"run":"r1"}
//
// Doubles are written in the shortest form that reads back to the same bits
// (nlohmann::json does so), which is what makes a reloaded store's sums equal
// to the original's, bit for bit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "coordinator/metrics/metrics_types.h"

namespace xfer::coordinator::metrics {

struct HistoryRecord {
  enum class Type {
    kReport,             // a stored RankReport
    kDiscardIncomplete,  // MetricsStore::discard_incomplete() was called
  };
  Type type = Type::kReport;
  // When the coordinator stored the record (Unix time, ms).
  std::int64_t unix_ms = 0;
  // kReport: the report. kDiscardIncomplete: only `run` is set.
  RankReport report;
};

// One line, without the '\n'.
std::string encode(const HistoryRecord& record);

// Parses one line. Throws std::runtime_error saying what is malformed (not
// JSON, a missing or mistyped field, an unknown type or split).
HistoryRecord decode(std::string_view line);

}  // namespace xfer::coordinator::metrics
