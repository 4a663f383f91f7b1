// CheckpointStore: checkpoint blobs on disk with a manifest, crash-safe,
// verified on every read, with best-K + last-K retention per run.
//
// On disk, in one folder:
//   MANIFEST.json          which checkpoints exist, with their SHA-256 (manifest.h)
//   ckpt-00000012.blob     one checkpoint, the uploaded bytes as they came
//   *.tmp                  writes in progress; deleted by recovery
//
// Durability protocol of a put (a crash at any point leaves the previous
// checkpoints and manifest loadable and verifiable):
//   1. bytes go to ckpt-N.blob.tmp while the SHA-256 is computed;
//   2. fsync, close, rename to ckpt-N.blob, fsync of the folder;
//   3. the new manifest (with the checkpoint added and the ones retention
//      drops removed) goes to MANIFEST.json.tmp, fsync, rename over
//      MANIFEST.json, fsync of the folder: this is the commit point;
//   4. only then are the dropped checkpoints' files deleted.
// Until step 3 completes the old manifest is the truth, and a blob it does
// not list is an orphan that recovery deletes.
//
// Recovery (the constructor): reads the manifest (refusing one that is
// damaged rather than forgetting checkpoints), deletes *.tmp files and
// ckpt-*.blob files the manifest does not list, and drops, with a warning,
// entries whose blob is missing. Blobs are not hashed at start-up; every
// read hashes them instead.
//
// Errors: every failure throws CheckpointError with a code (kInvalidArgument,
// kNotFound, kDataLoss, kIo) and a sentence naming the checkpoint, the file,
// the errno text and what was expected. A failed put stores nothing and
// leaves the previous checkpoints intact.
//
// Retention (retention.h: the best keep_best of each phase plus the last
// keep_last) runs at each commit, for the committed checkpoint's run only;
// changed keep_best/keep_last counts take effect at a run's next commit.
//
// One store per folder: there is no cross-process lock, and a second store
// opened on a live folder would delete the first one's uploads in progress
// as stray temporary files.
//
// Thread-safety: all methods may be called from many threads. One mutex
// guards the in-memory manifest and every manifest write; blob bytes are
// written and hashed outside it, so a large upload does not stall
// list()/best()/reads. A CheckpointWriter is used by one thread at a time.
// The store must outlive its writers.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/filesystem.h"
#include "common/sha256.h"
#include "coordinator/checkpoint/checkpoint_types.h"

namespace xfer::coordinator::checkpoint {

class CheckpointStore;

// One upload in progress: chunks in order, then commit() or abort().
// Destroying a writer that was neither committed nor aborted aborts it.
class CheckpointWriter {
 public:
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Appends `data`, which starts at byte `offset` of the blob.
  // Throws kInvalidArgument when `offset` is not exactly the number of bytes
  // received so far (out of order, a gap or an overlap) or the blob would
  // exceed StoreOptions::max_blob_bytes; kIo when the disk fails (full disk,
  // ...). After any error the upload is aborted and every later call fails.
  void append(std::int64_t offset, std::string_view data);

  // Bytes received so far.
  std::int64_t size() const { return received_; }

  // Makes the checkpoint durable (see the protocol in the file comment),
  // applies retention to its run and returns its record. When the upload id
  // already names a stored checkpoint with the same bytes, returns that one
  // and stores nothing (a retried upload lands once); different bytes under
  // the same upload id are kInvalidArgument. Throws kInvalidArgument for an
  // empty blob, kIo when the disk fails (nothing is stored then).
  CheckpointRecord commit();

  // Drops the upload and its temporary file. Idempotent.
  void abort();

  // The id the checkpoint gets if it is committed (a retried upload id gets
  // the stored checkpoint's id instead).
  const std::string& id() const { return id_; }

 private:
  friend class CheckpointStore;
  CheckpointWriter(CheckpointStore& store, CheckpointMeta meta, std::string id,
                   std::int64_t sequence);

  enum class State { kOpen, kCommitted, kAborted, kFailed };
  void require_open(const char* what) const;
  [[noreturn]] void fail_io(const common::FilesystemError& error, const std::string& doing);
  std::string describe() const;
  // Removes the temporary and the final file, logging (not throwing) errors.
  void remove_files() noexcept;

  CheckpointStore& store_;
  const CheckpointMeta meta_;
  const std::string id_;
  const std::int64_t sequence_;
  const std::string temp_path_;
  const std::string final_path_;
  std::unique_ptr<common::WritableFile> file_;  // null once closed
  common::Sha256 hash_;
  std::int64_t received_ = 0;
  State state_ = State::kOpen;
};

class CheckpointStore {
 public:
  // Opens (creating if needed) the store in `dir` and recovers it (see the
  // file comment). `filesystem` defaults to the real one; tests pass a
  // FaultInjectingFilesystem. Throws std::invalid_argument for bad
  // `options`, CheckpointError(kDataLoss) for a damaged or missing manifest
  // beside stored blobs, CheckpointError(kIo) when the folder cannot be read.
  CheckpointStore(std::string dir, StoreOptions options,
                  std::shared_ptr<common::Filesystem> filesystem = nullptr);
  ~CheckpointStore();
  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  // Starts an upload. Throws kInvalidArgument for bad meta (empty run or
  // metric name, negative epoch or step) or a metric name / direction that
  // differs from the run's stored checkpoints; kIo when the temporary file
  // cannot be created.
  std::unique_ptr<CheckpointWriter> begin_put(const CheckpointMeta& meta);

  // The run's checkpoints in `order` (by default the earliest (epoch, step)
  // first). A non-empty `phase` lists only checkpoints whose meta.phase
  // equals it. Empty for an unknown run.
  std::vector<CheckpointRecord> list(const std::string& run,
                                     ListOrder order = ListOrder::kEarliestFirst,
                                     const std::string& phase = "") const;
  // Every checkpoint of every run, in commit order.
  std::vector<CheckpointRecord> list_all() const;
  // The best by metric and direction (NaN ranks last; ties: the earlier).
  // A non-empty `phase` considers only checkpoints whose meta.phase equals it.
  std::optional<CheckpointRecord> best(const std::string& run, const std::string& phase = "") const;
  // The highest (epoch, step); ties: the newest commit. `phase` as for best().
  std::optional<CheckpointRecord> latest(const std::string& run,
                                         const std::string& phase = "") const;
  std::optional<CheckpointRecord> find(const std::string& id) const;

  // The whole blob, returned only after its SHA-256 matched the manifest.
  // Throws kNotFound for an unknown id, kDataLoss (naming the id, the
  // expected and the actual digest and size) when the bytes differ or the
  // file is gone, kIo when it cannot be read. Whole-blob on purpose: a
  // range could only be checked after it was served.
  std::string read_verified(const std::string& id) const;

  // Deletes a checkpoint: the manifest first (durably), then the file.
  // Throws kNotFound for an unknown id, kIo when the manifest cannot be
  // written (the checkpoint then stays).
  void remove(const std::string& id);

  const std::string& dir() const { return dir_; }
  const StoreOptions& options() const { return options_; }

 private:
  friend class CheckpointWriter;

  // Recovery; see the file comment. Runs in the constructor only.
  void recover();
  // Step 3 onwards of a put, called by CheckpointWriter::commit once the
  // blob is durable in `final_path`.
  CheckpointRecord finish_commit(CheckpointRecord record, const std::string& final_path);
  // Writes a manifest of `records` and next_sequence_ durably; throws
  // FilesystemError. REQUIRES: mu_ held.
  void write_manifest(const std::map<std::string, CheckpointRecord>& records);
  // Throws kInvalidArgument when `meta` ranks by another metric or direction
  // than the run's stored checkpoints. REQUIRES: mu_ held.
  void check_same_metric(const CheckpointMeta& meta) const;
  // Deletes blob files whose entries were already dropped from the durable
  // manifest; failures are logged, recovery retries them.
  void delete_blobs(const std::vector<CheckpointRecord>& dropped);
  std::vector<CheckpointRecord> run_records(const std::string& run) const;  // REQUIRES: mu_ held
  std::string blob_path(const std::string& id) const;

  // Constant after construction.
  const std::string dir_;
  const std::string manifest_path_;
  const StoreOptions options_;
  const std::shared_ptr<common::Filesystem> fs_;

  mutable std::mutex mu_;
  std::map<std::string, CheckpointRecord> records_;  // GUARDED_BY(mu_), by id
  std::int64_t next_sequence_ = 1;                   // GUARDED_BY(mu_)
};

}  // namespace xfer::coordinator::checkpoint
