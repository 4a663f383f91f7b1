// CheckpointWriter, declared in checkpoint_store.h: one upload on its way to
// becoming a durable checkpoint (steps 1-2 of the protocol there).
#include <spdlog/spdlog.h>

#include "coordinator/checkpoint/checkpoint_store.h"
#include "coordinator/checkpoint/store_internal.h"

namespace xfer::coordinator::checkpoint {
namespace {

using Code = CheckpointError::Code;
using common::FilesystemError;
using internal::describe_meta;
using internal::kTempSuffix;

}  // namespace

CheckpointWriter::CheckpointWriter(CheckpointStore& store, CheckpointMeta meta, std::string id,
                                   std::int64_t sequence)
    : store_(store),
      meta_(std::move(meta)),
      id_(std::move(id)),
      sequence_(sequence),
      temp_path_(store.blob_path(id_) + kTempSuffix),
      final_path_(store.blob_path(id_)) {}

CheckpointWriter::~CheckpointWriter() {
  if (state_ == State::kOpen) {
    spdlog::info("checkpoint {} ({}): upload abandoned after {} bytes; nothing stored", id_,
                 describe_meta(meta_), received_);
    file_.reset();
    remove_files();
  }
}

std::string CheckpointWriter::describe() const {
  return "checkpoint " + id_ + " (" + describe_meta(meta_) + ")";
}

void CheckpointWriter::require_open(const char* what) const {
  const char* state = state_ == State::kCommitted ? "committed"
                      : state_ == State::kAborted ? "aborted"
                                                  : "failed";
  if (state_ != State::kOpen) {
    throw CheckpointError(Code::kInvalidArgument, std::string(what) + " on " + describe() +
                                                      ": the upload was already " + state +
                                                      " (expected an open upload)");
  }
}

void CheckpointWriter::remove_files() noexcept {
  for (const std::string& path : {temp_path_, final_path_}) {
    try {
      if (store_.fs_->exists(path)) store_.fs_->remove(path);
    } catch (const std::exception& e) {
      // Recovery deletes what is left (a .tmp file, or a blob the manifest
      // does not list).
      spdlog::warn("{}: could not remove {}: {}", describe(), path, e.what());
    }
  }
}

void CheckpointWriter::fail_io(const FilesystemError& error, const std::string& doing) {
  state_ = State::kFailed;
  file_.reset();
  remove_files();
  const std::string message = describe() + " was not stored: " + doing +
                              " failed: " + error.what() + "; the previous checkpoints are intact";
  spdlog::error("{}", message);
  throw CheckpointError(Code::kIo, message, error.error_number());
}

void CheckpointWriter::append(std::int64_t offset, std::string_view data) {
  require_open("append");
  const auto refuse = [&](const std::string& problem) {
    abort();
    throw CheckpointError(Code::kInvalidArgument, describe() + ": " + problem);
  };
  if (offset != received_) {
    refuse("chunk at offset " + std::to_string(offset) + " but " + std::to_string(received_) +
           " bytes were received (expected offset " + std::to_string(received_) +
           ": chunks in order, without gaps or overlaps); upload aborted");
  }
  const auto size = static_cast<std::int64_t>(data.size());
  if (size > store_.options_.max_blob_bytes - received_) {
    refuse("a chunk of " + std::to_string(size) + " bytes at offset " + std::to_string(offset) +
           " makes the blob larger than the limit of " +
           std::to_string(store_.options_.max_blob_bytes) + " bytes; upload aborted");
  }
  try {
    file_->append(data);
  } catch (const FilesystemError& e) {
    fail_io(e, "writing " + std::to_string(size) + " bytes at offset " + std::to_string(offset));
  }
  hash_.update(data);
  received_ += size;
}

CheckpointRecord CheckpointWriter::commit() {
  require_open("commit");
  if (received_ == 0) {
    abort();
    throw CheckpointError(Code::kInvalidArgument,
                          describe() + ": no bytes were uploaded (expected a non-empty blob)");
  }
  CheckpointRecord record;
  record.id = id_;
  record.sequence = sequence_;
  record.sha256_hex = hash_.hex_digest();
  record.size_bytes = received_;
  record.meta = meta_;
  // Steps 1-2 of the protocol: the blob becomes durable under its own name.
  std::string doing;
  try {
    doing = "fsync of " + temp_path_;
    file_->sync();
    doing = "close of " + temp_path_;
    file_->close();
    file_.reset();
    doing = "rename to " + final_path_;
    store_.fs_->rename(temp_path_, final_path_);
    doing = "fsync of the folder " + store_.dir_;
    store_.fs_->sync_dir(store_.dir_);
  } catch (const FilesystemError& e) {
    fail_io(e, doing);
  }
  record.created_unix_ms = internal::now_unix_ms();
  // A failed finish_commit has already removed the blob.
  state_ = State::kFailed;
  CheckpointRecord stored = store_.finish_commit(std::move(record), final_path_);
  state_ = State::kCommitted;
  return stored;
}

void CheckpointWriter::abort() {
  if (state_ != State::kOpen) return;
  state_ = State::kAborted;
  file_.reset();
  remove_files();
}

}  // namespace xfer::coordinator::checkpoint
