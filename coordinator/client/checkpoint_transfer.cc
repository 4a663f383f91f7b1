// CheckpointService.Put and .Get: the two calls that move blobs in chunks.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <thread>

#include "common/sha256.h"
#include "coordinator/client/connection.h"
#include "coordinator/client/coordinator_client.h"

namespace xfer::coordinator::client {

namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Reads the blob to upload from its start, chunk by chunk; reset() for a retry.
class BlobSource {
 public:
  virtual ~BlobSource() = default;
  virtual std::int64_t size() const = 0;
  virtual void reset() = 0;
  // Up to `max` bytes into `out`; empty at the end.
  virtual void read(std::int64_t max, std::string* out) = 0;
};

class BytesSource : public BlobSource {
 public:
  explicit BytesSource(std::string_view bytes) : bytes_(bytes) {}
  std::int64_t size() const override { return static_cast<std::int64_t>(bytes_.size()); }
  void reset() override { position_ = 0; }
  void read(std::int64_t max, std::string* out) override {
    const std::size_t n =
        std::min<std::size_t>(static_cast<std::size_t>(max), bytes_.size() - position_);
    out->assign(bytes_.data() + position_, n);
    position_ += n;
  }

 private:
  std::string_view bytes_;
  std::size_t position_ = 0;
};

class FileSource : public BlobSource {
 public:
  explicit FileSource(fs::path path) : path_(std::move(path)) {
    std::error_code ec;
    const auto size = fs::file_size(path_, ec);
    if (ec) {
      throw ClientError("checkpoint file " + path_.string() + " cannot be read: " + ec.message() +
                        " (expected a readable regular file)");
    }
    size_ = static_cast<std::int64_t>(size);
    reset();
  }
  std::int64_t size() const override { return size_; }
  void reset() override {
    in_ = std::ifstream(path_, std::ios::binary);
    if (!in_) {
      throw ClientError("checkpoint file " + path_.string() + " cannot be opened: " + errno_text());
    }
  }
  void read(std::int64_t max, std::string* out) override {
    out->resize(static_cast<std::size_t>(max));
    in_.read(out->data(), max);
    if (in_.bad()) {
      throw ClientError("checkpoint file " + path_.string() + ": read failed: " + errno_text());
    }
    out->resize(static_cast<std::size_t>(in_.gcount()));
  }

 private:
  fs::path path_;
  std::int64_t size_ = 0;
  std::ifstream in_;
};

// One attempt of Put. Returns the call's status; fills `info` and `sha256`
// (of the bytes sent) when OK.
grpc::Status put_attempt(detail::Connection& connection, const v1::CheckpointMeta& meta,
                         BlobSource& source, v1::CheckpointInfo* info, std::string* sha256) {
  source.reset();
  grpc::ClientContext context;
  connection.prepare(context, connection.options().stream_deadline);
  auto writer = connection.checkpoints().Put(&context, info);
  v1::CheckpointChunk chunk;
  *chunk.mutable_meta() = meta;
  bool open = writer->Write(chunk);
  common::Sha256 hash;
  std::int64_t offset = 0;
  std::string data;
  while (open) {
    source.read(connection.options().chunk_bytes, &data);
    if (data.empty()) break;
    hash.update(data);
    chunk.Clear();
    chunk.set_offset(offset);
    offset += static_cast<std::int64_t>(data.size());
    chunk.set_data(std::move(data));
    open = writer->Write(chunk);
    data = std::string();
  }
  if (open) writer->WritesDone();
  // When a Write failed the stream is broken; Finish tells why.
  const grpc::Status status = writer->Finish();
  if (status.ok() && offset != source.size()) {
    return {grpc::StatusCode::INTERNAL, "the server accepted the upload after " +
                                            std::to_string(offset) + " of " +
                                            std::to_string(source.size()) + " bytes"};
  }
  *sha256 = hash.hex_digest();
  return status;
}

v1::CheckpointInfo put_blob(detail::Connection& connection, v1::CheckpointMeta meta,
                            BlobSource& source) {
  if (meta.upload_id().empty()) meta.set_upload_id(new_upload_id());
  if (meta.total_bytes() != 0 && meta.total_bytes() != source.size()) {
    throw ClientError("checkpoint upload for run '" + meta.run() + "': meta.total_bytes is " +
                      std::to_string(meta.total_bytes()) + " but the blob has " +
                      std::to_string(source.size()) + " bytes (expected 0 or the blob's size)");
  }
  meta.set_total_bytes(source.size());
  RetryState retry = connection.new_retry_state();
  for (;;) {
    v1::CheckpointInfo info;
    std::string sent_sha256;
    const grpc::Status status = put_attempt(connection, meta, source, &info, &sent_sha256);
    if (status.ok()) {
      if (lowercase(info.sha256()) != sent_sha256) {
        throw ChecksumError("checkpoint upload " + meta.upload_id() + " (run '" + meta.run() +
                                "'): the coordinator stored SHA-256 " + info.sha256() +
                                " but the bytes sent hash to " + sent_sha256,
                            sent_sha256, info.sha256());
      }
      return info;
    }
    // Retrying is safe for any transient code: the upload_id makes the
    // server store the blob once.
    const auto delay = retry.on_failure(status.error_code(), Idempotency::kIdempotent);
    if (!delay) {
      throw RpcError(status.error_code(), "Put", connection.address(), status.error_message(),
                     retry.failed_attempts());
    }
    connection.log_retry("Put", status, *delay, retry.failed_attempts());
    std::this_thread::sleep_for(*delay);
  }
}

// A temporary file beside the destination, removed unless committed.
class TempFile {
 public:
  explicit TempFile(const fs::path& destination) : destination_(destination) {
    const fs::path dir = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
    path_ = dir / ("." + destination.filename().string() + ".part-" + new_upload_id());
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw ClientError("cannot create " + path_.string() + " to download into: " + errno_text() +
                        " (expected a writable directory " + dir.string() + ")");
    }
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void truncate() {
    if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) fail("truncate");
  }
  void write(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("write");
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  // fsync, close, rename over the destination, fsync the directory.
  void commit() {
    if (::fsync(fd_) != 0) fail("fsync");
    if (::close(fd_) != 0) {
      fd_ = -1;
      fail("close");
    }
    fd_ = -1;
    if (::rename(path_.c_str(), destination_.c_str()) != 0)
      fail("rename to " + destination_.string());
    committed_ = true;
    const fs::path dir = destination_.has_parent_path() ? destination_.parent_path() : ".";
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      const int rc = ::fsync(dir_fd);
      ::close(dir_fd);
      if (rc != 0) fail("fsync of directory " + dir.string());
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw ClientError("downloading to " + destination_.string() + ": " + what + " of " +
                      path_.string() + " failed: " + errno_text());
  }
  fs::path destination_;
  fs::path path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

v1::CheckpointInfo CoordinatorClient::put_checkpoint_file(v1::CheckpointMeta meta,
                                                          const fs::path& file) {
  FileSource source(file);
  return put_blob(*connection_, std::move(meta), source);
}

v1::CheckpointInfo CoordinatorClient::put_checkpoint_bytes(v1::CheckpointMeta meta,
                                                           std::string_view bytes) {
  BytesSource source(bytes);
  return put_blob(*connection_, std::move(meta), source);
}

DownloadResult CoordinatorClient::get_checkpoint(const std::string& id, const fs::path& out,
                                                 const std::string& expected_sha256) {
  detail::Connection& connection = *connection_;
  v1::GetCheckpointRequest request;
  request.set_id(id);
  TempFile temp(out);
  RetryState retry = connection.new_retry_state();
  for (;;) {
    temp.truncate();
    DownloadResult result;
    result.path = out;
    common::Sha256 hash;
    grpc::ClientContext context;
    connection.prepare(context, connection.options().stream_deadline);
    auto reader = connection.checkpoints().Get(&context, request);
    v1::CheckpointChunk chunk;
    std::string protocol_error;
    while (reader->Read(&chunk)) {
      if (chunk.has_meta()) {
        result.meta = chunk.meta();
        continue;
      }
      if (chunk.offset() != result.size_bytes) {
        protocol_error = "the coordinator sent a chunk at offset " +
                         std::to_string(chunk.offset()) + " where offset " +
                         std::to_string(result.size_bytes) + " was expected";
        context.TryCancel();
        while (reader->Read(&chunk)) {
        }
        break;
      }
      hash.update(chunk.data());
      temp.write(chunk.data());
      result.size_bytes += static_cast<std::int64_t>(chunk.data().size());
    }
    grpc::Status status = reader->Finish();
    if (!protocol_error.empty()) {
      throw RpcError(grpc::StatusCode::INTERNAL, "Get", connection.address(),
                     "checkpoint " + id + ": " + protocol_error + " (protocol error)");
    }
    if (status.ok()) {
      if (result.meta && result.meta->total_bytes() > 0 &&
          result.meta->total_bytes() != result.size_bytes) {
        throw RpcError(grpc::StatusCode::DATA_LOSS, "Get", connection.address(),
                       "checkpoint " + id + ": received " + std::to_string(result.size_bytes) +
                           " bytes but its metadata says " +
                           std::to_string(result.meta->total_bytes()));
      }
      result.sha256 = hash.hex_digest();
      // The caller's digest wins; otherwise the one the server verified
      // before sending (first message of Get).
      const std::string expected = !expected_sha256.empty()
                                       ? expected_sha256
                                       : (result.meta ? result.meta->sha256() : std::string());
      if (!expected.empty()) {
        if (lowercase(expected) != result.sha256) {
          throw ChecksumError("checkpoint " + id + ": downloaded bytes hash to SHA-256 " +
                                  result.sha256 + " but " + expected + " was expected; " +
                                  out.string() + " was not written",
                              expected, result.sha256);
        }
        result.verified = true;
      }
      temp.commit();
      return result;
    }
    const auto delay = retry.on_failure(status.error_code(), Idempotency::kIdempotent);
    if (!delay) {
      throw RpcError(status.error_code(), "Get", connection.address(), status.error_message(),
                     retry.failed_attempts());
    }
    connection.log_retry("Get", status, *delay, retry.failed_attempts());
    std::this_thread::sleep_for(*delay);
  }
}

}  // namespace xfer::coordinator::client
