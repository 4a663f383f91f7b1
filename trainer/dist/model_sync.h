// Keeping the ranks' models identical: the start-up broadcast and the
// periodic drift check (--check-sync-every).
//
// Both are collective: every rank calls them at the same point with a model
// of the same structure. Both decide from data every rank holds after an
// allgather, so a failure is detected by all ranks together and they all
// throw: no rank is left waiting.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <stdexcept>

#include "trainer/dist/communicator.h"

namespace xfer::trainer::dist {

// The ranks' parameters differ (thrown on every rank).
class DivergenceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Checks that every rank has the same parameters and buffers (names, shapes,
// types, in order), then copies rank 0's values to all. Throws
// std::runtime_error on every rank, naming the first tensor that differs,
// when the structures differ. Tensors on a device `comm` does not handle go
// through a host copy.
void broadcast_module_state(torch::nn::Module& module, Communicator& comm);

// Compares a bit-exact fingerprint (FNV-1a of the bytes) of every parameter
// across ranks. Ranks that apply the same averaged gradients with the same
// optimizer hold bit-identical parameters, so any difference is a bug (a rank
// that ran a different number of steps, or reduced different data). Throws
// DivergenceError on every rank naming the tensors, ranks and their sums.
// `step` only labels the message.
void check_module_in_sync(const torch::nn::Module& module, Communicator& comm, std::int64_t step);

}  // namespace xfer::trainer::dist
