#include "coordinator/server/report_store.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "common/posix_filesystem.h"

namespace xfer::coordinator::server {
namespace {

constexpr char kSuffix[] = ".report.pb";
constexpr char kTempSuffix[] = ".tmp";  // common::write_file_atomically's

// Limits of RunReport.predictions (coordinator.proto): a few images for
// people to look at, not a dataset. 64 CIFAR images are 196 KB.
constexpr int kMaxPredictions = 64;
constexpr int kMaxSampleSide = 1024;  // channels, height and width each
constexpr int kMaxSampleTopClasses = 5;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Shortest text that reads back as the same value ("1.5", "nan", "1e+300").
std::string number(double value) {
  char text[32] = "";
  double back = 0;
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(text, sizeof(text), "%.*g", precision, value);
    if (std::sscanf(text, "%lf", &back) == 1 && back == value) break;
  }
  return text;
}

// A score that must be a fraction: finite, within [0, 1].
std::optional<std::string> invalid_fraction(const std::string& field, double value) {
  if (!std::isfinite(value) || value < 0.0 || value > 1.0) {
    return field + " " + number(value) + " is outside [0, 1] (expected a finite fraction)";
  }
  return std::nullopt;
}

std::optional<std::string> invalid_scores(const v1::RunReport& r) {
  if (!std::isfinite(r.loss())) {
    return "loss " + number(r.loss()) + " is not finite (expected a mean cross-entropy)";
  }
  const std::pair<const char*, double> headline[] = {{"top1", r.top1()},
                                                     {"top3", r.top3()},
                                                     {"macro_precision", r.macro_precision()},
                                                     {"macro_recall", r.macro_recall()},
                                                     {"macro_f1", r.macro_f1()},
                                                     {"weighted_f1", r.weighted_f1()}};
  for (const auto& [field, value] : headline) {
    if (auto problem = invalid_fraction(field, value)) return problem;
  }
  for (int i = 0; i < r.classes_size(); ++i) {
    const auto& c = r.classes(i);
    const std::string prefix = "classes[" + std::to_string(i) + "].";
    if (auto p = invalid_fraction(prefix + "precision", c.precision())) return p;
    if (auto p = invalid_fraction(prefix + "recall", c.recall())) return p;
    if (auto p = invalid_fraction(prefix + "f1", c.f1())) return p;
  }
  return std::nullopt;
}

// The shape and the counts: sizes, indices, the confusion matrix against
// `samples` and each class's support.
std::optional<std::string> invalid_counts(const v1::RunReport& r) {
  const std::int64_t n = r.num_classes();
  if (n < 1 || n > kMaxReportClasses) {
    return "num_classes " + std::to_string(n) + " is out of range (expected 1.." +
           std::to_string(kMaxReportClasses) + ")";
  }
  if (r.classes_size() != n) {
    return "classes has " + std::to_string(r.classes_size()) +
           " entries (expected num_classes = " + std::to_string(n) + ")";
  }
  if (r.confusion_size() != n * n) {
    return "confusion has " + std::to_string(r.confusion_size()) +
           " counts (expected num_classes^2 = " + std::to_string(n * n) + ")";
  }
  if (r.samples() < 0) {
    return "samples " + std::to_string(r.samples()) + " is negative (expected a count)";
  }
  std::int64_t total = 0;
  for (std::int64_t t = 0; t < n; ++t) {
    const auto& c = r.classes(static_cast<int>(t));
    if (c.index() != t) {
      return "classes[" + std::to_string(t) + "].index is " + std::to_string(c.index()) +
             " (expected " + std::to_string(t) + ": classes are listed by index)";
    }
    std::int64_t row = 0;
    for (std::int64_t p = 0; p < n; ++p) {
      const std::int64_t count = r.confusion(static_cast<int>(t * n + p));
      const std::string cell = "confusion[" + std::to_string(t) + "][" + std::to_string(p) + "]";
      if (count < 0) {
        return cell + " = " + std::to_string(count) + " is negative (expected a count)";
      }
      if (__builtin_add_overflow(row, count, &row)) {
        return cell + " = " + std::to_string(count) + " overflows its row's sum";
      }
    }
    if (c.support() != row) {
      return "classes[" + std::to_string(t) + "].support is " + std::to_string(c.support()) +
             " (expected " + std::to_string(row) + ", the sum of confusion row " +
             std::to_string(t) + ")";
    }
    if (__builtin_add_overflow(total, row, &total)) {
      return "confusion row " + std::to_string(t) + " overflows the matrix's sum";
    }
  }
  if (total != r.samples()) {
    return "samples is " + std::to_string(r.samples()) + " (expected " + std::to_string(total) +
           ", the sum of the confusion matrix)";
  }
  return std::nullopt;
}

// The prediction samples: at most kMaxPredictions, each image exactly
// channels x height x width bytes, labels and classes within num_classes,
// probabilities in [0, 1], one per class. Checked after invalid_counts, so
// num_classes is in range.
std::optional<std::string> invalid_sample(const v1::PredictionSample& s, const std::string& name,
                                          std::int64_t num_classes) {
  if (s.index() < 0) {
    return name + ".index " + std::to_string(s.index()) +
           " is negative (expected a position in the split)";
  }
  if (s.label() < 0 || s.label() >= num_classes) {
    return name + ".label " + std::to_string(s.label()) + " is out of range (expected 0.." +
           std::to_string(num_classes - 1) + ")";
  }
  const std::pair<const char*, std::int32_t> dims[] = {
      {"channels", s.channels()}, {"height", s.height()}, {"width", s.width()}};
  for (const auto& [field, value] : dims) {
    if (value < 1 || value > kMaxSampleSide) {
      return name + "." + field + " " + std::to_string(value) + " is out of range (expected 1.." +
             std::to_string(kMaxSampleSide) + ")";
    }
  }
  const std::int64_t pixels = std::int64_t{s.channels()} * s.height() * s.width();
  if (static_cast<std::int64_t>(s.image().size()) != pixels) {
    return name + ".image has " + std::to_string(s.image().size()) +
           " bytes (expected channels x height x width = " + std::to_string(s.channels()) + "x" +
           std::to_string(s.height()) + "x" + std::to_string(s.width()) + " = " +
           std::to_string(pixels) + ")";
  }
  if (s.top_classes_size() > kMaxSampleTopClasses) {
    return name + ".top_classes has " + std::to_string(s.top_classes_size()) +
           " entries (expected at most " + std::to_string(kMaxSampleTopClasses) + ")";
  }
  if (s.top_probabilities_size() != s.top_classes_size()) {
    return name + ".top_probabilities has " + std::to_string(s.top_probabilities_size()) +
           " entries (expected one per top class: " + std::to_string(s.top_classes_size()) + ")";
  }
  for (int k = 0; k < s.top_classes_size(); ++k) {
    const std::string at = "[" + std::to_string(k) + "]";
    if (s.top_classes(k) < 0 || s.top_classes(k) >= num_classes) {
      return name + ".top_classes" + at + " " + std::to_string(s.top_classes(k)) +
             " is out of range (expected 0.." + std::to_string(num_classes - 1) + ")";
    }
    if (auto p = invalid_fraction(name + ".top_probabilities" + at, s.top_probabilities(k))) {
      return p;
    }
  }
  return std::nullopt;
}

std::optional<std::string> invalid_predictions(const v1::RunReport& r) {
  if (r.predictions_size() > kMaxPredictions) {
    return "predictions has " + std::to_string(r.predictions_size()) +
           " samples (expected at most " + std::to_string(kMaxPredictions) + ")";
  }
  for (int i = 0; i < r.predictions_size(); ++i) {
    const std::string name = "predictions[" + std::to_string(i) + "]";
    if (auto problem = invalid_sample(r.predictions(i), name, r.num_classes())) return problem;
  }
  return std::nullopt;
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<std::string> invalid_report(const v1::RunReport& report) {
  if (auto problem = invalid_counts(report)) return problem;
  if (auto problem = invalid_scores(report)) return problem;
  return invalid_predictions(report);
}

ReportStore::ReportStore(const std::filesystem::path& state_dir,
                         std::shared_ptr<common::Filesystem> fs)
    : dir_((state_dir / "reports").string()), fs_(fs ? std::move(fs) : common::posix_filesystem()) {
  fs_->create_dirs(dir_);
  int stored = 0;
  for (const auto& name : fs_->list_dir(dir_)) {
    if (ends_with(name, std::string(kSuffix) + kTempSuffix)) {
      // An interrupted put: the report it was replacing is still in place.
      fs_->remove(dir_ + "/" + name);
      spdlog::warn("removed {}/{}, left by an interrupted report write", dir_, name);
      continue;
    }
    if (!ends_with(name, kSuffix)) continue;
    const std::string run = name.substr(0, name.size() - std::string(kSuffix).size());
    try {
      read_locked(run);
      ++stored;
    } catch (const DamagedReportError& e) {
      damaged_at_open_.push_back(e.what());
    }
  }
  spdlog::info("report store {}: {} reports, {} damaged", dir_, stored, damaged_at_open_.size());
}

std::string ReportStore::file_of(const std::string& run) const {
  return dir_ + "/" + run + kSuffix;
}

bool ReportStore::put(v1::RunReport report) {
  report.set_created_unix_ms(now_unix_ms());
  const std::string bytes = report.SerializeAsString();
  const std::string file = file_of(report.run());
  std::lock_guard<std::mutex> lock(mutex_);
  const bool replaced = fs_->exists(file);
  common::write_file_atomically(*fs_, file, bytes);
  return replaced;
}

std::optional<v1::RunReport> ReportStore::get(const std::string& run) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return read_locked(run);
}

std::optional<v1::RunReport> ReportStore::read_locked(const std::string& run) const {
  const std::string file = file_of(run);
  std::string bytes;
  try {
    if (!fs_->exists(file)) return std::nullopt;
    bytes = fs_->read_file(file);
  } catch (const common::FilesystemError& e) {
    throw DamagedReportError("report file " + file + " cannot be read: " + e.what());
  }
  v1::RunReport report;
  if (!report.ParseFromString(bytes)) {
    throw DamagedReportError("report file " + file + " is damaged: its " +
                             std::to_string(bytes.size()) + " bytes do not parse as a RunReport");
  }
  if (report.run() != run) {
    throw DamagedReportError("report file " + file + " is damaged: it holds the report of run '" +
                             report.run() + "' (expected '" + run + "')");
  }
  if (auto problem = invalid_report(report)) {
    throw DamagedReportError("report file " + file + " is damaged: " + *problem);
  }
  return report;
}

}  // namespace xfer::coordinator::server
