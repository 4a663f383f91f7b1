// FeatureCache: rows of `width` floats by 64-bit key, for the head phase.
//
// In the head phase the base is frozen and in eval mode, so its pooled
// output for one (sample, flip) never changes: the job computes it once and
// trains the head from the cache afterwards (docs/performance.md). Rows live
// in memory up to a byte budget; past it they go to a spill file (written
// once, read back with pread), so a dataset larger than memory still caches.
// No LibTorch here.
//
// Thread-safety: none; one training thread owns it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace xfer::trainer::train {

struct FeatureCacheStats {
  std::int64_t rows = 0;
  std::int64_t rows_on_disk = 0;
  std::int64_t bytes_in_memory = 0;
  std::int64_t hits = 0;    // find() that returned a row
  std::int64_t misses = 0;  // find() that did not
};

class FeatureCache {
 public:
  // width: floats per row (REQUIRES: >= 1). memory_budget_bytes: rows held
  // in memory at most (REQUIRES: >= 0; 0 sends every row to disk).
  // spill_path: the file for rows past the budget; created on first need,
  // removed by the destructor. Throws std::invalid_argument for bad sizes.
  FeatureCache(std::int64_t width, std::int64_t memory_budget_bytes,
               std::filesystem::path spill_path);
  ~FeatureCache();
  FeatureCache(const FeatureCache&) = delete;
  FeatureCache& operator=(const FeatureCache&) = delete;

  std::int64_t width() const { return width_; }
  bool contains(std::int64_t key) const { return index_.count(key) != 0; }

  // Copies the row of `key` into `out` (width floats) and returns true, or
  // returns false when there is none. Throws std::runtime_error naming the
  // spill file when reading it fails.
  bool find(std::int64_t key, float* out);
  // find() without counting a hit or a miss (for copying rows elsewhere).
  bool read(std::int64_t key, float* out);
  // Stores `row` (width floats) under `key`; a key present already keeps its
  // row. Throws std::runtime_error naming the spill file when writing fails.
  void put(std::int64_t key, const float* row);

  // Every key, in insertion order.
  const std::vector<std::int64_t>& keys() const { return keys_; }
  FeatureCacheStats stats() const;
  const std::filesystem::path& spill_path() const { return spill_path_; }

 private:
  struct Location {
    bool on_disk = false;
    std::int64_t slot = 0;  // row in memory_ chunks, or in the spill file
  };
  float* memory_row(std::int64_t slot);

  const std::int64_t width_;
  const std::int64_t row_bytes_;
  const std::int64_t memory_rows_max_;
  const std::filesystem::path spill_path_;
  int spill_fd_ = -1;
  std::int64_t rows_on_disk_ = 0;
  std::int64_t rows_in_memory_ = 0;
  std::int64_t chunk_rows_total_ = 0;             // rows allocated (<= memory_rows_max_)
  std::vector<std::unique_ptr<float[]>> chunks_;  // kChunkRows rows each: no reallocation
  std::unordered_map<std::int64_t, Location> index_;
  std::vector<std::int64_t> keys_;
  std::int64_t hits_ = 0;
  std::int64_t misses_ = 0;
};

}  // namespace xfer::trainer::train
