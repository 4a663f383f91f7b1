#include "coordinator/checkpoint/checkpoint_types.h"

namespace xfer::coordinator::checkpoint {

const char* to_string(Direction direction) {
  return direction == Direction::kMaximize ? "maximize" : "minimize";
}

const char* to_string(CheckpointError::Code code) {
  switch (code) {
    case CheckpointError::Code::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case CheckpointError::Code::kNotFound:
      return "NOT_FOUND";
    case CheckpointError::Code::kDataLoss:
      return "DATA_LOSS";
    case CheckpointError::Code::kIo:
      return "IO_ERROR";
  }
  return "UNKNOWN";
}

}  // namespace xfer::coordinator::checkpoint
