// The plain values the checkpoint store takes and returns, and its one error
// type. No gRPC here: the CheckpointService maps these to protobuf.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace xfer::coordinator::checkpoint {

// Whether a smaller or a larger metric value is better.
enum class Direction { kMinimize, kMaximize };

const char* to_string(Direction direction);

// The orders CheckpointStore::list() returns a run's checkpoints in (and so
// the List RPC); the rules are in retention.h.
enum class ListOrder {
  kEarliestFirst,  // lowest (epoch, step) first; ties: the earlier commit
  kBestFirst,      // as best() ranks: the first is what best() returns
  kLatestFirst,    // as latest() ranks: the first is what latest() returns
};

// What the uploader says about a checkpoint. The store never looks inside the
// blob itself.
struct CheckpointMeta {
  // REQUIRES: non-empty. Retention, best() and latest() work per run.
  std::string run;
  // Free text, e.g. "head" or "finetune".
  std::string phase;
  // REQUIRES: >= 0.
  std::int64_t epoch = 0;
  // REQUIRES: >= 0.
  std::int64_t step = 0;
  // The metric the checkpoint is ranked by, e.g. "val_loss".
  // REQUIRES: non-empty, and the same name and direction for every
  // checkpoint of a run (otherwise "best" would mean nothing).
  std::string metric_name;
  // NaN is accepted (a diverged run may still want its latest state kept) and
  // ranks worst in either direction.
  double metric_value = 0.0;
  Direction direction = Direction::kMinimize;
  // Chosen by the client and reused when it retries an upload. Empty: none.
  // A commit whose upload id names a stored checkpoint returns that
  // checkpoint instead of storing a second copy.
  std::string upload_id;
};

// A stored checkpoint.
struct CheckpointRecord {
  std::string id;          // e.g. "ckpt-00000012"; unique within a store, never reused
  std::string sha256_hex;  // of the whole blob, 64 lowercase hex digits
  std::int64_t size_bytes = 0;
  std::int64_t created_unix_ms = 0;  // when it was committed
  CheckpointMeta meta;
  // Commit order within the store: the tie-breaker that makes "newest"
  // well defined when two checkpoints share (epoch, step).
  std::int64_t sequence = 0;
};

// Every failure the store reports. code() says what kind, what() says which
// checkpoint, which file and what was expected, in one sentence.
class CheckpointError : public std::runtime_error {
 public:
  enum class Code {
    kInvalidArgument,  // the caller's request was wrong (chunk order, bad meta, ...)
    kNotFound,         // no checkpoint with that id
    kDataLoss,         // stored bytes or the manifest do not match their digest
    kIo,               // the filesystem failed (full disk, fsync error, ...)
  };

  // `error_number`: the errno behind a kIo error (ENOSPC, EIO, ...), 0 when
  // there is none. The service answers a full disk differently from other
  // I/O errors (RESOURCE_EXHAUSTED: retrying cannot help until space is freed).
  CheckpointError(Code code, const std::string& message, int error_number = 0)
      : std::runtime_error(message), code_(code), error_number_(error_number) {}

  Code code() const { return code_; }
  int error_number() const { return error_number_; }

 private:
  Code code_;
  int error_number_;
};

const char* to_string(CheckpointError::Code code);

// Per-store settings (leveldb options.h style).
struct StoreOptions {
  // Retention, per run: after each commit the store keeps the best
  // `keep_best` checkpoints by their metric plus the last `keep_last` by
  // (epoch, step), plus the checkpoint just committed; the rest are deleted.
  // 0 means that rule keeps nothing (keep_best = 0: only the last K are kept).
  // Default: 1 and 2. REQUIRES: both >= 0 and keep_best + keep_last >= 1.
  int keep_best = 1;
  int keep_last = 2;

  // Largest blob one upload may carry; append() refuses more.
  // Default: 16 GiB. REQUIRES: > 0.
  std::int64_t max_blob_bytes = std::int64_t{16} << 30;
};

}  // namespace xfer::coordinator::checkpoint
