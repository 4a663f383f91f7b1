// Small collective steps of the training job, on the host (MPI)
// communicator: sharing a string or a blob from rank 0, letting rank 0 do a
// thing every rank depends on, and summing counts. No LibTorch.
//
// Failure rule (docs/training.md): a step that every rank reaches together
// reports a failure on every rank at once (SharedError, same message
// everywhere), so the ranks end together and cleanly; a failure that only
// one rank sees in the middle of an epoch ends the job with abort_job.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/dist/communicator.h"

namespace xfer::trainer::train {

// Thrown on every rank alike: the job ends, no rank is left waiting.
class SharedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Rank 0's `value` on every rank.
std::string broadcast_string(dist::Communicator& comm, const std::string& value,
                             const std::string& label);
std::vector<char> broadcast_bytes(dist::Communicator& comm, const std::vector<char>& value,
                                  const std::string& label);

// Runs `action` on rank 0 only; if it throws, every rank throws
// SharedError("rank 0: <what>: <message>"). Collective.
void on_rank0(dist::Communicator& comm, const std::string& what,
              const std::function<void()>& action);

// Element-wise sums over ranks, in place. Collective.
void sum_over_ranks(dist::Communicator& comm, std::vector<double>& values,
                    const std::string& label);
void sum_over_ranks(dist::Communicator& comm, std::vector<std::int64_t>& values,
                    const std::string& label);

}  // namespace xfer::trainer::train
