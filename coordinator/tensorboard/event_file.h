// TensorBoard event files: Events framed as TFRecords (record_io.h), the
// first one carrying file_version "brain.Event:2", each later one a Summary
// of scalars at a step. TensorBoard reads every file whose name contains
// "tfevents" in a run's directory and merges them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tensorboard/event.pb.h"

namespace xfer::coordinator::tensorboard {

inline constexpr char kFileVersion[] = "brain.Event:2";

struct Scalar {
  std::string tag;   // e.g. "train/loss"
  double value = 0;  // stored as a float32 simple_value, as TensorBoard does
};

::tensorboard::Event file_version_event(double wall_time);
::tensorboard::Event scalars_event(double wall_time, std::int64_t step,
                                   const std::vector<Scalar>& scalars);

// "events.out.tfevents.<unix_seconds>.<host>.<pid>": TensorBoard's own
// naming, so tools that sort or filter event files by name keep working.
std::string event_file_name(std::int64_t unix_seconds, const std::string& host, int pid);

// Appends Events to one event file of a directory. Each append() opens the
// file, writes every record in one go and closes it, so a reader sees whole
// epochs as soon as append() returns and no descriptor stays open per run.
// Not fsynced: a power cut may lose the last epochs of the file (the metrics
// history, which is fsynced, still has them; see run_event_writers.h for how
// a restart fills such gaps).
//
// Not thread-safe; RunEventWriters serialises its calls.
class EventFileWriter {
 public:
  // Nothing is created before the first append(). `host` and `pid` name the
  // file (see event_file_name).
  EventFileWriter(std::filesystem::path dir, std::string host, int pid);

  // Appends `events`. The first successful append creates `dir` if needed and
  // a new file whose first record is file_version. Returns "" on success,
  // else what failed, naming the path. A failed append leaves nothing of
  // itself behind: a partial write is truncated away, or, when that fails
  // too, the file is abandoned and the next append starts a new one.
  std::string append(const std::vector<::tensorboard::Event>& events);

  // The current file; empty until one was created.
  const std::filesystem::path& path() const { return path_; }

 private:
  std::string create_file(int* fd);

  const std::filesystem::path dir_;
  const std::string host_;
  const int pid_;
  std::filesystem::path path_;
};

// Every Event of one file, up to the first bad record. `problem` is empty
// when the whole file parsed, else names the file and what was wrong (a
// torn last record after a crash is one such problem).
struct EventFileContents {
  std::vector<::tensorboard::Event> events;
  std::string problem;
};
EventFileContents read_event_file(const std::filesystem::path& path);

// Whether `name` is an event file name TensorBoard would read.
bool is_event_file_name(const std::string& name);

}  // namespace xfer::coordinator::tensorboard
