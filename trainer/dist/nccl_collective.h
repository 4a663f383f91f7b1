// The launch sequence every NCCL collective shares, written once, as c10d's
// ProcessGroupNCCL::collective(input, output, fn, opType) does:
//   1. name the operation ("allreduce #7 (bucket 3)") from a per-communicator
//      sequence number;
//   2. refuse at once on a communicator broken earlier;
//   3. make the Work, with the deadline of the collective timeout;
//   4. order the launch after the kernels that produced the buffer (device,
//      events, the communicator's stream waits on the producer's);
//   5. inside ncclGroupStart/End, `fn(name)`: the one NCCL call that
//      differs between collectives;
//   6. wait until the non-blocking communicator is no longer "in progress";
//   7. record the completion event the Work polls.
// A CollectiveError from any step breaks the communicator (ncclCommAbort)
// and propagates; other exceptions propagate as they are.
//
// The steps are a template parameter: NcclCommunicator passes the real CUDA
// and NCCL calls (nccl_communicator.cc), the unit test a fake that records
// them and fails on demand (tests/dist/nccl_collective_test.cc). This header
// is free of CUDA, NCCL and LibTorch headers.
#pragma once

#include <cstdint>
#include <string>

#include "trainer/dist/communicator.h"

namespace xfer::trainer::dist {

// The name of collective number `seq` in errors and logs: "allreduce #7" or,
// with a label, "allreduce #7 (bucket 3)".
inline std::string collective_name(const std::string& kind, std::uint64_t seq,
                                   const std::string& label) {
  return kind + " #" + std::to_string(seq) + (label.empty() ? "" : " (" + label + ")");
}

// Launches one collective of kind `kind` ("allreduce", "broadcast") on
// `buffer`; returns the Work. The caller holds the communicator's launch lock
// (the order of launches is the order of the collectives). `Steps` has, each
// called at most once, in this order:
//   std::uint64_t next_seq();                          the op's number
//   bool broken() const;
//   std::string broken_reason() const;
//   std::string context(const std::string& op) const;  "rank 1 of 2 on host (cuda:1, ...): op"
//   Deadline deadline() const;                         now + the collective timeout
//   WorkPtr make_work(const std::string& name, Deadline);
//   void order_after_producer(Work*, const Buffer&, const std::string& name);
//   void group_start(const std::string& name);
//   void group_end(const std::string& name);
//   void settle(const std::string& name, Deadline);
//   void record_done(Work*, const std::string& name);
//   void break_locked(const std::string& reason);      on a CollectiveError
// and `fn(name)` enqueues the collective's own NCCL call between group_start
// and group_end.
template <typename Steps, typename Fn>
auto collective(Steps& steps, const std::string& kind, const std::string& label,
                const Buffer& buffer, Fn&& fn) {
  const std::string name = collective_name(kind, steps.next_seq(), label);
  if (steps.broken()) {
    throw CollectiveError(steps.context(name) +
                          ": communicator broken earlier: " + steps.broken_reason());
  }
  const auto deadline = steps.deadline();
  auto work = steps.make_work(name, deadline);
  try {
    steps.order_after_producer(work.get(), buffer, name);
    steps.group_start(name);
    fn(name);
    steps.group_end(name);
    steps.settle(name, deadline);
    steps.record_done(work.get(), name);
  } catch (const CollectiveError& e) {
    steps.break_locked(e.what());
    throw;
  }
  return work;
}

}  // namespace xfer::trainer::dist
