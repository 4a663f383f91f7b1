#include "coordinator/metrics/metrics_types.h"

#include <cmath>
#include <sstream>

namespace xfer::coordinator::metrics {
namespace {

constexpr std::size_t kMaxRunNameLength = 128;
constexpr std::size_t kMaxPhaseLength = 32;
constexpr int kMaxWorldSize = 65536;

[[noreturn]] void invalid(const RankReport& report, const std::string& problem) {
  throw MetricsError(MetricsError::Code::kInvalidArgument,
                     "metrics report (" + describe_key(report) + "): " + problem);
}

bool is_run_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool is_phase_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

std::string number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

void check_figure(const RankReport& report, const char* field, double value) {
  if (!std::isfinite(value) || value < 0) {
    invalid(report, std::string(field) + " is " + number(value) + " (expected finite and >= 0)");
  }
}

}  // namespace

const char* to_string(SplitKind split) {
  switch (split) {
    case SplitKind::kTrain:
      return "train";
    case SplitKind::kValidation:
      return "validation";
    case SplitKind::kTest:
      return "test";
  }
  return "unknown";
}

std::optional<SplitKind> parse_split_kind(std::string_view text) {
  if (text == "train") return SplitKind::kTrain;
  if (text == "validation") return SplitKind::kValidation;
  if (text == "test") return SplitKind::kTest;
  return std::nullopt;
}

std::string describe_key(const RankReport& report) {
  return "run '" + report.run + "' rank " + std::to_string(report.rank) + " phase '" +
         report.phase + "' epoch " + std::to_string(report.epoch) + " split " +
         to_string(report.split) + " step " + std::to_string(report.step);
}

void validate(const RankReport& report) {
  if (report.run.empty() || report.run.size() > kMaxRunNameLength || report.run[0] == '.') {
    invalid(report, "run name '" + report.run + "' is invalid (expected 1.." +
                        std::to_string(kMaxRunNameLength) +
                        " characters of A-Z a-z 0-9 . _ -, not starting with '.')");
  }
  for (char c : report.run) {
    if (!is_run_char(c)) {
      invalid(report, "run name '" + report.run +
                          "' has a character outside A-Z a-z 0-9 . _ - (it names a file)");
    }
  }
  if (report.world_size < 1 || report.world_size > kMaxWorldSize) {
    invalid(report, "world_size " + std::to_string(report.world_size) +
                        " is out of range (expected 1.." + std::to_string(kMaxWorldSize) + ")");
  }
  if (report.rank < 0 || report.rank >= report.world_size) {
    invalid(report, "rank " + std::to_string(report.rank) + " is out of range (expected 0.." +
                        std::to_string(report.world_size - 1) + " for world size " +
                        std::to_string(report.world_size) + ")");
  }
  bool phase_ok = !report.phase.empty() && report.phase.size() <= kMaxPhaseLength;
  for (char c : report.phase) phase_ok = phase_ok && is_phase_char(c);
  if (!phase_ok) {
    invalid(report, "phase '" + report.phase + "' is invalid (expected 1.." +
                        std::to_string(kMaxPhaseLength) +
                        " characters of a-z 0-9 _ -, such as full, head or finetune)");
  }
  if (report.epoch < 0) {
    invalid(report, "epoch " + std::to_string(report.epoch) + " is negative (expected >= 0)");
  }
  if (report.step < 0) {
    invalid(report, "step " + std::to_string(report.step) + " is negative (expected >= 0)");
  }
  if (report.split != SplitKind::kTrain && report.split != SplitKind::kValidation &&
      report.split != SplitKind::kTest) {
    invalid(report, "split kind " + std::to_string(static_cast<int>(report.split)) +
                        " is unknown (expected train, validation or test)");
  }
  if (report.samples < 0 || report.correct_top1 < 0 || report.correct_top1 > report.correct_top3 ||
      report.correct_top3 > report.samples) {
    invalid(report, "counts correct_top1 " + std::to_string(report.correct_top1) +
                        ", correct_top3 " + std::to_string(report.correct_top3) + ", samples " +
                        std::to_string(report.samples) +
                        " are inconsistent (expected 0 <= correct_top1 <= correct_top3 <= "
                        "samples)");
  }
  check_figure(report, "loss_sum", report.loss_sum);
  check_figure(report, "images_per_second", report.images_per_second);
  check_figure(report, "data_wait_ms", report.data_wait_ms);
  check_figure(report, "comm_ms", report.comm_ms);
  check_figure(report, "learning_rate", report.learning_rate);
  if (report.steps_in_epoch < 0) {
    invalid(report, "steps_in_epoch " + std::to_string(report.steps_in_epoch) +
                        " is negative (expected the planned steps of the epoch, or 0: unknown)");
  }
}

}  // namespace xfer::coordinator::metrics
