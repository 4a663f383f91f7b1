// The runs' final reports (RunService.PutReport / GetReport), one file per
// run: STATE_DIR/reports/<run>.report.pb, the binary RunReport, written
// atomically (temporary file, fsync, rename, fsync of the folder) so a crash
// leaves either the old report or the new one, and a restarted coordinator
// serves what it had.
//
// Files are read on every get() rather than cached: reports are read rarely
// and a 100-class report is ~100 KB, so there is no cache to keep in step
// with the disk, and a file damaged while the coordinator runs is noticed.
//
// Thread-safe: one mutex serialises writes and reads.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/filesystem.h"
#include "xfer/v1/coordinator.pb.h"

namespace xfer::coordinator::server {

// The most classes a report may have: a 10000-class confusion matrix is
// already 10^8 counts, far beyond any gRPC message the server accepts.
inline constexpr int kMaxReportClasses = 10000;

// What is inconsistent in `report`, for INVALID_ARGUMENT: names the field,
// its value and what was expected. std::nullopt when the report is valid:
// 1 <= num_classes <= kMaxReportClasses; num_classes classes, classes[i]
// with index i; num_classes^2 confusion counts, none negative, summing to
// `samples`; each class's support equal to its confusion row sum; loss
// finite; top1, top3 and every precision/recall/F1 (per class, macro,
// weighted) finite and within [0, 1]; at most 64 predictions, each with
// channels x height x width image bytes, label and top_classes below
// num_classes, one top_probability in [0, 1] per top class (at most 5).
std::optional<std::string> invalid_report(const v1::RunReport& report);

// A stored report file that cannot be read or parsed (DATA_LOSS). The
// message names the file.
class DamagedReportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ReportStore {
 public:
  // Creates STATE_DIR/reports if needed, removes the temporary files an
  // interrupted put left, and checks every stored report: a damaged one does
  // not stop the coordinator (the other runs' reports stay readable); it is
  // listed in damaged_at_open() and get() of its run throws. Throws
  // common::FilesystemError when the folder cannot be created or listed.
  explicit ReportStore(const std::filesystem::path& state_dir,
                       std::shared_ptr<common::Filesystem> fs = nullptr);

  // One line per report file found damaged when the store was opened,
  // naming the file and what is wrong with it.
  const std::vector<std::string>& damaged_at_open() const { return damaged_at_open_; }

  // Stores `report` with created_unix_ms set to now. Returns true when it
  // replaced an earlier report of the run (even a damaged one).
  // REQUIRES: invalid_report(report) is empty and report.run() is a valid
  // run name (invalid_run_name), so it is a safe file name.
  // Throws common::FilesystemError (naming the file and the errno text)
  // when the disk fails; the earlier report then stays.
  bool put(v1::RunReport report);

  // The stored report; std::nullopt when the run has none. Throws
  // DamagedReportError naming the file when it cannot be read, does not
  // parse, belongs to another run or is inconsistent.
  std::optional<v1::RunReport> get(const std::string& run) const;

  // The file that holds (or would hold) the run's report.
  std::string file_of(const std::string& run) const;

 private:
  std::optional<v1::RunReport> read_locked(const std::string& run) const;

  // Constant after construction.
  const std::string dir_;
  const std::shared_ptr<common::Filesystem> fs_;
  std::vector<std::string> damaged_at_open_;

  mutable std::mutex mutex_;  // serialises every file access
};

}  // namespace xfer::coordinator::server
