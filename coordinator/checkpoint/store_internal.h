// Small pieces the store and its writer share; not part of the API.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "coordinator/checkpoint/checkpoint_types.h"

namespace xfer::coordinator::checkpoint::internal {

// Files with this suffix are writes in progress; recovery deletes them.
inline constexpr char kTempSuffix[] = ".tmp";

// "run 'job' epoch 3 step 300": how errors and logs name a checkpoint.
inline std::string describe_meta(const CheckpointMeta& meta) {
  return "run '" + meta.run + "' epoch " + std::to_string(meta.epoch) + " step " +
         std::to_string(meta.step);
}

inline std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace xfer::coordinator::checkpoint::internal
