#include "coordinator/checkpoint/checkpoint_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <set>
#include <stdexcept>

#include "common/posix_filesystem.h"
#include "coordinator/checkpoint/manifest.h"
#include "coordinator/checkpoint/retention.h"
#include "coordinator/checkpoint/store_internal.h"

namespace xfer::coordinator::checkpoint {
namespace {

constexpr char kManifestName[] = "MANIFEST.json";
constexpr char kBlobPrefix[] = "ckpt-";
constexpr char kBlobSuffix[] = ".blob";

using Code = CheckpointError::Code;
using common::Filesystem;
using common::FilesystemError;
using internal::describe_meta;
using internal::kTempSuffix;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string id_for(std::int64_t sequence) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%s%08lld", kBlobPrefix, static_cast<long long>(sequence));
  return buffer;
}

// Ids become file names, so only the shape the store itself makes is valid.
bool valid_id(const std::string& id) {
  if (!starts_with(id, kBlobPrefix) || id.size() == sizeof(kBlobPrefix) - 1) return false;
  return std::all_of(id.begin() + sizeof(kBlobPrefix) - 1, id.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

std::string normalize_dir(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

const StoreOptions& validated(const StoreOptions& options) {
  if (options.keep_best < 0 || options.keep_last < 0 || options.keep_best + options.keep_last < 1) {
    throw std::invalid_argument(
        "checkpoint retention keep_best=" + std::to_string(options.keep_best) +
        " keep_last=" + std::to_string(options.keep_last) +
        ": expected non-negative counts that keep at least one checkpoint");
  }
  if (options.max_blob_bytes <= 0) {
    throw std::invalid_argument(
        "checkpoint max_blob_bytes=" + std::to_string(options.max_blob_bytes) + ": expected > 0");
  }
  return options;
}

void validate_meta(const CheckpointMeta& meta) {
  std::string problem;
  if (meta.run.empty()) {
    problem = "the run name is empty";
  } else if (meta.epoch < 0 || meta.step < 0) {
    problem = "epoch " + std::to_string(meta.epoch) + " / step " + std::to_string(meta.step) +
              " (expected both >= 0)";
  } else if (meta.metric_name.empty()) {
    problem = "the metric name is empty (expected the metric it is ranked by, e.g. val_loss)";
  }
  if (!problem.empty()) {
    throw CheckpointError(Code::kInvalidArgument,
                          "checkpoint for " + describe_meta(meta) + ": " + problem);
  }
}

}  // namespace

// ------------------------------------------------------------------ store

CheckpointStore::CheckpointStore(std::string dir, StoreOptions options,
                                 std::shared_ptr<Filesystem> filesystem)
    : dir_(normalize_dir(std::move(dir))),
      manifest_path_(dir_ + "/" + kManifestName),
      options_(validated(options)),
      fs_(filesystem ? std::move(filesystem) : common::posix_filesystem()) {
  if (dir_.empty()) throw std::invalid_argument("checkpoint store: the folder name is empty");
  std::lock_guard<std::mutex> lock(mu_);
  recover();
}

CheckpointStore::~CheckpointStore() = default;

std::string CheckpointStore::blob_path(const std::string& id) const {
  return dir_ + "/" + id + kBlobSuffix;
}

void CheckpointStore::recover() {
  const auto io_error = [&](const FilesystemError& e, const std::string& doing) {
    return CheckpointError(Code::kIo,
                           "checkpoint store " + dir_ + ": cannot " + doing + ": " + e.what(),
                           e.error_number());
  };
  std::vector<std::string> names;
  try {
    fs_->create_dirs(dir_);
    names = fs_->list_dir(dir_);
  } catch (const FilesystemError& e) {
    throw io_error(e, "open the folder");
  }
  std::set<std::string> blob_ids;
  int temp_removed = 0;
  for (const auto& name : names) {
    if (ends_with(name, kTempSuffix)) {
      try {
        fs_->remove(dir_ + "/" + name);
        ++temp_removed;
        spdlog::info("checkpoint store {}: removed {} (a write a crash interrupted)", dir_, name);
      } catch (const FilesystemError& e) {
        throw io_error(e, "remove the temporary file " + name);
      }
    } else if (starts_with(name, kBlobPrefix) && ends_with(name, kBlobSuffix)) {
      blob_ids.insert(name.substr(0, name.size() - (sizeof(kBlobSuffix) - 1)));
    }
  }

  const bool has_manifest = std::find(names.begin(), names.end(), kManifestName) != names.end();
  Manifest manifest;
  bool rewrite = false;
  if (has_manifest) {
    std::string text;
    try {
      text = fs_->read_file(manifest_path_);
    } catch (const FilesystemError& e) {
      throw io_error(e, "read the manifest");
    }
    manifest = parse_manifest(text, manifest_path_);
  } else if (!blob_ids.empty()) {
    // The manifest is written before the first blob ever is, so this is not
    // a crash: someone removed it. Deleting the blobs as orphans would lose
    // every checkpoint, so refuse.
    throw CheckpointError(Code::kDataLoss, "checkpoint store " + dir_ + " holds " +
                                               std::to_string(blob_ids.size()) +
                                               " checkpoint file(s) but no " + kManifestName +
                                               " (expected one beside them); restore it or move "
                                               "the files away");
  } else {
    rewrite = true;  // a new store: write the empty manifest first
  }

  std::int64_t next = manifest.next_sequence;
  int missing = 0;
  for (auto& record : manifest.checkpoints) {
    if (!valid_id(record.id) || records_.count(record.id) != 0) {
      throw CheckpointError(Code::kDataLoss, "checkpoint manifest " + manifest_path_ +
                                                 " is damaged: id '" + record.id +
                                                 "' is malformed or listed twice (expected "
                                                 "unique ids like ckpt-00000001)");
    }
    next = std::max(next, record.sequence + 1);
    if (blob_ids.count(record.id) == 0) {
      ++missing;
      rewrite = true;
      spdlog::warn("checkpoint store {}: dropped {} ({}): its file {} is missing", dir_, record.id,
                   describe_meta(record.meta), blob_path(record.id));
      continue;
    }
    const std::string id = record.id;
    records_.emplace(id, std::move(record));
  }
  next_sequence_ = next;

  int orphans = 0;
  for (const auto& id : blob_ids) {
    if (records_.count(id) != 0) continue;
    // Written by a put the crash stopped before its manifest, or left by a
    // deletion that stopped after it: no manifest lists it.
    try {
      fs_->remove(blob_path(id));
      ++orphans;
      spdlog::info(
          "checkpoint store {}: removed {} (no manifest entry: an interrupted put or "
          "deletion)",
          dir_, blob_path(id));
    } catch (const FilesystemError& e) {
      throw io_error(e, "remove the unlisted file " + blob_path(id));
    }
  }

  if (rewrite) {
    try {
      write_manifest(records_);
    } catch (const FilesystemError& e) {
      throw io_error(e, "write the manifest");
    }
  }
  std::set<std::string> runs;
  for (const auto& [id, record] : records_) runs.insert(record.meta.run);
  spdlog::info(
      "checkpoint store {}: {} checkpoints of {} runs; removed {} temporary and {} unlisted files; "
      "dropped {} entries whose file is missing",
      dir_, records_.size(), runs.size(), temp_removed, orphans, missing);
}

void CheckpointStore::write_manifest(const std::map<std::string, CheckpointRecord>& records) {
  Manifest manifest;
  manifest.next_sequence = next_sequence_;
  for (const auto& [id, record] : records) manifest.checkpoints.push_back(record);
  std::sort(manifest.checkpoints.begin(), manifest.checkpoints.end(),
            [](const auto& a, const auto& b) { return a.sequence < b.sequence; });
  common::write_file_atomically(*fs_, manifest_path_, serialize_manifest(manifest));
}

void CheckpointStore::check_same_metric(const CheckpointMeta& meta) const {
  for (const auto& [id, record] : records_) {
    if (record.meta.run != meta.run) continue;
    if (record.meta.metric_name != meta.metric_name || record.meta.direction != meta.direction) {
      throw CheckpointError(Code::kInvalidArgument,
                            "checkpoint for " + describe_meta(meta) + " is ranked by " +
                                meta.metric_name + " (" + to_string(meta.direction) +
                                ") but the run's checkpoints are ranked by " +
                                record.meta.metric_name + " (" + to_string(record.meta.direction) +
                                "); expected one metric and direction per run");
    }
    return;
  }
}

std::unique_ptr<CheckpointWriter> CheckpointStore::begin_put(const CheckpointMeta& meta) {
  validate_meta(meta);
  std::int64_t sequence = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    check_same_metric(meta);
    sequence = next_sequence_++;
  }
  std::unique_ptr<CheckpointWriter> writer(
      new CheckpointWriter(*this, meta, id_for(sequence), sequence));
  try {
    writer->file_ = fs_->open_writable(writer->temp_path_, Filesystem::OpenMode::kTruncate);
  } catch (const FilesystemError& e) {
    writer->fail_io(e, "creating " + writer->temp_path_);
  }
  return writer;
}

CheckpointRecord CheckpointStore::finish_commit(CheckpointRecord record,
                                                const std::string& final_path) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto drop_blob = [&] {
    try {
      fs_->remove(final_path);
    } catch (const FilesystemError& e) {
      spdlog::warn("checkpoint {}: could not remove {}: {}", record.id, final_path, e.what());
    }
  };
  if (!record.meta.upload_id.empty()) {
    for (const auto& [id, stored] : records_) {
      if (stored.meta.run != record.meta.run || stored.meta.upload_id != record.meta.upload_id) {
        continue;
      }
      drop_blob();
      if (stored.sha256_hex != record.sha256_hex || stored.size_bytes != record.size_bytes) {
        throw CheckpointError(
            Code::kInvalidArgument,
            "checkpoint upload '" + record.meta.upload_id + "' for " + describe_meta(record.meta) +
                " was already stored as " + id + " with SHA-256 " + stored.sha256_hex + " (" +
                std::to_string(stored.size_bytes) + " bytes), but this upload has " +
                record.sha256_hex + " (" + std::to_string(record.size_bytes) +
                " bytes); expected a retry to send the same bytes");
      }
      spdlog::info(
          "checkpoint upload '{}' ({}) retried: it is already stored as {}; nothing "
          "stored twice",
          record.meta.upload_id, describe_meta(record.meta), id);
      return stored;
    }
  }
  try {
    check_same_metric(record.meta);
  } catch (const CheckpointError&) {
    drop_blob();  // another upload ranked by a different metric won the race
    throw;
  }

  auto next = records_;
  next.emplace(record.id, record);
  std::vector<CheckpointRecord> run;
  for (const auto& [id, r] : next) {
    if (r.meta.run == record.meta.run) run.push_back(r);
  }
  const auto keep = retained_ids(run, options_.keep_best, options_.keep_last, record.id);
  std::vector<CheckpointRecord> dropped;
  for (const auto& r : run) {
    if (keep.count(r.id) == 0) {
      dropped.push_back(r);
      next.erase(r.id);
    }
  }
  // Step 3: the commit point.
  try {
    write_manifest(next);
  } catch (const FilesystemError& e) {
    drop_blob();
    const std::string message = "checkpoint " + record.id + " (" + describe_meta(record.meta) +
                                ") was not stored: writing the manifest failed: " + e.what() +
                                "; the previous checkpoints are intact";
    spdlog::error("{}", message);
    throw CheckpointError(Code::kIo, message, e.error_number());
  }
  records_ = std::move(next);
  spdlog::info("checkpoint {} committed: {} phase '{}' {}={} ({}), {} bytes, sha256 {}", record.id,
               describe_meta(record.meta), record.meta.phase, record.meta.metric_name,
               record.meta.metric_value, to_string(record.meta.direction), record.size_bytes,
               record.sha256_hex);
  // Step 4: only now that no durable manifest lists them.
  delete_blobs(dropped);
  return record;
}

void CheckpointStore::delete_blobs(const std::vector<CheckpointRecord>& dropped) {
  for (const auto& r : dropped) {
    try {
      fs_->remove(blob_path(r.id));
      spdlog::info("checkpoint {} ({}) deleted by retention (keep best {} + last {})", r.id,
                   describe_meta(r.meta), options_.keep_best, options_.keep_last);
    } catch (const FilesystemError& e) {
      spdlog::warn(
          "checkpoint {}: dropped from the manifest but its file stays: {}; the next "
          "start removes it",
          r.id, e.what());
    }
  }
}

std::vector<CheckpointRecord> CheckpointStore::run_records(const std::string& run) const {
  std::vector<CheckpointRecord> out;
  for (const auto& [id, record] : records_) {
    if (record.meta.run == run) out.push_back(record);
  }
  return out;
}

std::vector<CheckpointRecord> CheckpointStore::list_all() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<CheckpointRecord> out;
  for (const auto& [id, record] : records_) out.push_back(record);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.sequence < b.sequence; });
  return out;
}

namespace {
// The records of `phase` (all when it is empty).
std::vector<CheckpointRecord> of_phase(std::vector<CheckpointRecord> records,
                                       const std::string& phase) {
  if (phase.empty()) return records;
  records.erase(std::remove_if(records.begin(), records.end(),
                               [&](const CheckpointRecord& r) { return r.meta.phase != phase; }),
                records.end());
  return records;
}
}  // namespace

std::vector<CheckpointRecord> CheckpointStore::list(const std::string& run, ListOrder order,
                                                    const std::string& phase) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto out = of_phase(run_records(run), phase);
  sort_records(out, order);
  return out;
}

std::optional<CheckpointRecord> CheckpointStore::best(const std::string& run,
                                                      const std::string& phase) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto records = of_phase(run_records(run), phase);
  if (records.empty()) return std::nullopt;
  return *std::min_element(records.begin(), records.end(),
                           [](const auto& a, const auto& b) { return ranks_better(a, b); });
}

std::optional<CheckpointRecord> CheckpointStore::latest(const std::string& run,
                                                        const std::string& phase) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto records = of_phase(run_records(run), phase);
  if (records.empty()) return std::nullopt;
  return *std::max_element(records.begin(), records.end(),
                           [](const auto& a, const auto& b) { return is_later(b, a); });
}

std::optional<CheckpointRecord> CheckpointStore::find(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = records_.find(id);
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

std::string CheckpointStore::read_verified(const std::string& id) const {
  const auto record = find(id);
  const auto not_found = [&] {
    return CheckpointError(Code::kNotFound, "no checkpoint '" + id + "' in " + dir_);
  };
  if (!record) throw not_found();
  const std::string path = blob_path(id);
  const std::string expected = "the manifest records SHA-256 " + record->sha256_hex + " and " +
                               std::to_string(record->size_bytes) + " bytes";
  std::string bytes;
  try {
    bytes = fs_->read_file(path);
  } catch (const FilesystemError& e) {
    if (e.error_number() != ENOENT) {
      throw CheckpointError(Code::kIo,
                            "checkpoint " + id + ": cannot read " + path + ": " + e.what(),
                            e.error_number());
    }
    if (!find(id)) throw not_found();  // deleted while we were reading it
    const std::string message = "checkpoint " + id + " (" + describe_meta(record->meta) +
                                "): its file " + path + " is missing (" + expected +
                                "); nothing served";
    spdlog::error("{}", message);
    throw CheckpointError(Code::kDataLoss, message);
  }
  const std::string actual = common::sha256_hex(bytes);
  if (actual != record->sha256_hex ||
      static_cast<std::int64_t>(bytes.size()) != record->size_bytes) {
    const std::string message = "checkpoint " + id + " (" + describe_meta(record->meta) + ") in " +
                                path + " is corrupt: its bytes have SHA-256 " + actual + " and " +
                                std::to_string(bytes.size()) + " bytes but " + expected +
                                "; nothing served";
    spdlog::error("{}", message);
    throw CheckpointError(Code::kDataLoss, message);
  }
  return bytes;
}

void CheckpointStore::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = records_.find(id);
  if (it == records_.end()) {
    throw CheckpointError(Code::kNotFound,
                          "no checkpoint '" + id + "' in " + dir_ + " (nothing deleted)");
  }
  const CheckpointRecord record = it->second;
  auto next = records_;
  next.erase(id);
  try {
    write_manifest(next);
  } catch (const FilesystemError& e) {
    const std::string message = "checkpoint " + id +
                                " was not deleted: writing the manifest "
                                "failed: " +
                                e.what();
    spdlog::error("{}", message);
    throw CheckpointError(Code::kIo, message, e.error_number());
  }
  records_ = std::move(next);
  try {
    fs_->remove(blob_path(id));
  } catch (const FilesystemError& e) {
    spdlog::warn(
        "checkpoint {}: deleted from the manifest but its file stays: {}; the next "
        "start removes it",
        id, e.what());
  }
  spdlog::info("checkpoint {} ({}) deleted", id, describe_meta(record.meta));
}

}  // namespace xfer::coordinator::checkpoint
