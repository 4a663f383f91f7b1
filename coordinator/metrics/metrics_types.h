// The values the metrics store takes and gives: one rank's report, the
// aggregate of one (run, phase, epoch, split), the per-rank latest figures
// and the error type. Plain structs that map one-to-one onto the
// xfer.v1.MetricsService messages (proto/xfer/v1/coordinator.proto).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace xfer::coordinator::metrics {

enum class SplitKind { kTrain, kValidation, kTest };

// "train", "validation", "test".
const char* to_string(SplitKind split);
// The inverse of to_string; std::nullopt for anything else.
std::optional<SplitKind> parse_split_kind(std::string_view text);

// One rank's figures for one step of one (phase, epoch, split). Counts are
// sums over the step's samples, so aggregates are exact sums, never averages
// of averages.
struct RankReport {
  // Run name. REQUIRES: 1..128 characters of [A-Za-z0-9._-], not starting
  // with '.' (it names the run's history file).
  std::string run;
  // REQUIRES: 0 <= rank < world_size.
  int rank = 0;
  // Ranks of the job. xfer.v1.MetricsReport does not carry it: the service
  // fills it in from the run record. REQUIRES: 1..65536.
  int world_size = 1;
  // Training phase ("full", "head", "finetune"; any name works).
  // REQUIRES: 1..32 characters of [a-z0-9_-].
  std::string phase;
  // REQUIRES: >= 0.
  std::int64_t epoch = 0;
  // Step within the (phase, epoch, split), e.g. the batch index. Together
  // with rank it identifies the report (see MetricsStore). REQUIRES: >= 0.
  std::int64_t step = 0;
  SplitKind split = SplitKind::kTrain;
  // Sum of the per-sample losses of this step. REQUIRES: finite, >= 0.
  double loss_sum = 0.0;
  // Samples whose label is the top-1 / among the top-3 predictions.
  // REQUIRES: 0 <= correct_top1 <= correct_top3 <= samples.
  std::int64_t correct_top1 = 0;
  std::int64_t correct_top3 = 0;
  // REQUIRES: >= 0 (0 is allowed: an end-of-epoch marker with no samples).
  std::int64_t samples = 0;
  // Performance figures: shown per rank, never compared for idempotency.
  // REQUIRES: each finite and >= 0.
  double images_per_second = 0.0;
  double data_wait_ms = 0.0;
  double comm_ms = 0.0;
  // REQUIRES: finite, >= 0.
  double learning_rate = 0.0;
  // The rank's planned steps of this (phase, epoch, split), for progress
  // views; 0: unknown. Shown, never compared. REQUIRES: >= 0.
  std::int64_t steps_in_epoch = 0;
  // This rank has reported every step of this (phase, epoch, split): no new
  // step may follow from it.
  bool end_of_epoch = false;
};

// The aggregate of one (run, phase, epoch, split) over all ranks, published
// once every rank has sent its end-of-epoch report.
struct EpochMetrics {
  std::string run;
  std::string phase;
  std::int64_t epoch = 0;
  SplitKind split = SplitKind::kTrain;
  int world_size = 0;
  // Exact sums over every rank and step.
  double loss_sum = 0.0;
  std::int64_t correct_top1 = 0;
  std::int64_t correct_top3 = 0;
  std::int64_t samples = 0;
  // loss_sum / samples, correct_top1 / samples, correct_top3 / samples; NaN
  // when samples == 0 (nothing was evaluated, so there is no figure).
  double loss = 0.0;
  double top1 = 0.0;
  double top3 = 0.0;
  // Rank 0's learning rate at its last step.
  double learning_rate = 0.0;
  // Sum over ranks of the images/s each sent with its end-of-epoch report.
  double images_per_second = 0.0;
  // Reports that went into the sums (steps x ranks).
  std::int64_t reports = 0;
};

// One entry of the watch stream. Sequence numbers are per run, start at 1
// and have no gaps.
struct MetricsEvent {
  std::int64_t sequence = 0;
  EpochMetrics metrics;
};

// A rank's most recent report: the straggler view.
struct RankStatus {
  int rank = 0;
  int world_size = 0;
  std::string phase;
  std::int64_t epoch = 0;
  SplitKind split = SplitKind::kTrain;
  std::int64_t step = 0;
  double images_per_second = 0.0;
  double data_wait_ms = 0.0;
  double comm_ms = 0.0;
  double learning_rate = 0.0;
  // Of the latest report; 0: unknown.
  std::int64_t steps_in_epoch = 0;
  // When the coordinator stored the report (Unix time, ms).
  std::int64_t updated_unix_ms = 0;
};

// What MetricsStore::report did.
struct ReportResult {
  // The same report was stored before (a retry): nothing was counted again.
  bool duplicate = false;
  // Set when this report completed its (phase, epoch, split).
  std::optional<MetricsEvent> completed;
};

// Every failure of the store. code() tells the service which gRPC status to
// answer with; what() names the report key, the value and what was expected.
class MetricsError : public std::runtime_error {
 public:
  enum class Code {
    kInvalidArgument,     // a field out of range            -> INVALID_ARGUMENT
    kConflict,            // same key, different counts      -> ALREADY_EXISTS
    kFailedPrecondition,  // e.g. a step after end of epoch  -> FAILED_PRECONDITION
    kDataLoss,            // a history file is corrupt       -> DATA_LOSS
    kIo,                  // could not write or sync history -> UNAVAILABLE / INTERNAL
  };

  MetricsError(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Code code() const { return code_; }

 private:
  Code code_;
};

// Throws MetricsError(kInvalidArgument) naming the first field out of range.
void validate(const RankReport& report);

// "run 'r' rank 1 phase head epoch 3 split train step 12": the idempotency
// key, for messages.
std::string describe_key(const RankReport& report);

}  // namespace xfer::coordinator::metrics
