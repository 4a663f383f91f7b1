// Helpers shared by the checkpoint store tests.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "coordinator/checkpoint/checkpoint_store.h"
#include "tests/unit/file_test_util.h"

namespace xfer::coordinator::checkpoint::testing {

// A fresh folder under the system temp dir, removed at destruction.
class TempDir : public xfer::testing::TempDir {
 public:
  TempDir() : xfer::testing::TempDir("xfer-checkpoint-test") {}
  // The store's folder inside it (not created: the store makes it).
  std::string store() const { return path() + "/store"; }
};

using xfer::testing::names_in;
using xfer::testing::read_bytes;
using xfer::testing::write_bytes;

inline CheckpointMeta make_meta(const std::string& run, std::int64_t epoch, double metric,
                                Direction direction = Direction::kMinimize,
                                const std::string& upload_id = "") {
  CheckpointMeta meta;
  meta.run = run;
  meta.phase = "head";
  meta.epoch = epoch;
  meta.step = epoch * 100;
  meta.metric_name = direction == Direction::kMinimize ? "val_loss" : "val_top1";
  meta.metric_value = metric;
  meta.direction = direction;
  meta.upload_id = upload_id;
  return meta;
}

// Deterministic bytes that differ per seed, with every byte value present.
inline std::string make_blob(int seed, std::size_t size) {
  std::string blob(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    blob[i] = static_cast<char>((i * 131 + static_cast<std::size_t>(seed) * 7 + i / 251) % 256);
  }
  return blob;
}

// Uploads `blob` in chunks of `chunk` bytes and commits.
inline CheckpointRecord put(CheckpointStore& store, const CheckpointMeta& meta,
                            const std::string& blob, std::size_t chunk = 1000) {
  auto writer = store.begin_put(meta);
  for (std::size_t offset = 0; offset < blob.size(); offset += chunk) {
    writer->append(static_cast<std::int64_t>(offset), std::string_view(blob).substr(offset, chunk));
  }
  return writer->commit();
}

inline std::vector<std::string> ids_of(const std::vector<CheckpointRecord>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records) ids.push_back(r.id);
  return ids;
}

// What the folder must hold when the store holds `records`: their blobs and
// the manifest, nothing else (no temporary files, no unlisted blobs).
inline std::vector<std::string> expected_names(const std::vector<CheckpointRecord>& records) {
  std::vector<std::string> names{"MANIFEST.json"};
  for (const auto& r : records) names.push_back(r.id + ".blob");
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace xfer::coordinator::checkpoint::testing
