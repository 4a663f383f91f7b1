// coordctl's --json output: stable, documented field names (docs/coordctl.md)
// in snake_case, numbers as JSON numbers (int64 too), enums as lowercase
// words, NaN as null. Adding a field is compatible; renaming one is not.
#pragma once

#include <nlohmann/json.hpp>

#include "coordinator/client/coordinator_client.h"
#include "coordinator/coordctl/stragglers.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::coordctl {

nlohmann::json run_json(const v1::Run& run);
nlohmann::json status_json(const v1::StatusResponse& status);
nlohmann::json runs_json(const v1::ListRunsResponse& runs);
nlohmann::json epoch_json(const v1::EpochMetrics& epoch);
nlohmann::json history_json(const std::string& run, const v1::HistoryResponse& history);
nlohmann::json ranks_json(const std::string& run, const RanksView& view, double threshold);
nlohmann::json event_json(const v1::MetricsEvent& event);
nlohmann::json checkpoint_json(const v1::CheckpointInfo& checkpoint);
nlohmann::json checkpoints_json(const std::string& run,
                                const v1::ListCheckpointsResponse& checkpoints);
// Every field of the report; "classes" by index, "confusion" as an array
// of num_classes rows (true class), each of num_classes counts (predicted);
// and, from macro_scope(), "macro_classes" (how many classes the macros
// average over), "absent_classes" (indices of the classes never true nor
// predicted) and "absent_labels" (their labels), all null when the confusion
// matrix is not num_classes^2 counts.
nlohmann::json report_json(const v1::RunReport& report);
nlohmann::json download_json(const std::string& id, const client::DownloadResult& result);

}  // namespace xfer::coordinator::coordctl
