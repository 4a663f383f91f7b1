// Bucketed gradient all-reduce overlapped with backward: the semantics of
// PyTorch DDP's Reducer, for one process per device.
//
// Buckets. Trainable parameters (requires_grad) are packed, in reverse
// registration order (roughly the order backward produces their gradients),
// into flat buffers of about ReducerOptions::bucket_mb each; one bucket holds
// one dtype on one device. Each parameter's .grad becomes a view into its
// bucket (DDP's gradient_as_bucket_view), so autograd accumulates straight
// into the buffer that is reduced and nothing is copied back afterwards.
// Frozen parameters are not bucketed: in the head phase only the head is
// reduced.
//
// One step:
//   reducer.prepare_for_backward();
//   loss.backward();                 // hooks fire as gradients appear
//   reducer.finalize_backward();     // waits; grads now hold the average
// or simply reducer.backward(loss). A hook on each parameter's gradient
// accumulator marks it ready and divides it by the world size; when a bucket
// is complete it is all-reduced (sum) at once, provided every earlier bucket
// has been launched: launches happen in bucket order on every rank whatever
// order the hooks fire in, which keeps the cross-rank contract.
// finalize_backward() launches what is left (a parameter that got no
// gradient contributes zeros and ends with a zero gradient), waits for every
// bucket and leaves the averaged gradients in .grad.
//
// Phase switch. prepare_for_backward() notices when the set of trainable
// parameters changed (fine-tuning unfreezes the base) and rebuilds the
// buckets. Every rank must change the set at the same step.
//
// Cross-rank contract: all ranks construct the Reducer over the same model
// (same parameters in the same order) and run the same number of backward
// passes. Building checks the bucket layout across ranks (an allgather) and
// throws on every rank if it differs.
//
// Failure: a bucket whose all-reduce fails or does not finish within the
// timeout ends the job (abort_job: the log line names rank, host, op, bucket
// and step; then MPI_Abort). Nothing waits forever.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "trainer/dist/communicator.h"
#include "trainer/dist/reducer_options.h"

namespace xfer::trainer::dist {

struct TraceEvent {
  enum class Kind {
    kHook,    // a parameter's gradient is ready; index = parameter index
    kLaunch,  // a bucket's all-reduce was handed to the communicator; index = bucket
    kDone,    // a bucket's all-reduce completed (seen in finalize); index = bucket
  };
  Kind kind;
  std::size_t index;
};

// A bucket as built: parameter indices (into module.named_parameters()
// order), element count and bytes.
struct BucketInfo {
  std::vector<std::size_t> params;
  std::int64_t numel = 0;
  std::size_t bytes = 0;
};

class Reducer {
 public:
  // Registers hooks on `module`'s trainable parameters and builds the
  // buckets (collective: see above). `module` and `comm` must outlive the
  // Reducer. Throws std::invalid_argument for bad options or a parameter on a
  // device `comm` does not handle, std::runtime_error when the ranks' layouts
  // differ.
  Reducer(torch::nn::Module& module, Communicator& comm, ReducerOptions options = {});
  ~Reducer();

  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  // Call before loss.backward(). Rebuilds the buckets if the trainable set
  // changed since the last build (collective in that case).
  void prepare_for_backward();

  // Call after loss.backward(): reduces what is left and waits for all.
  void finalize_backward();

  // prepare_for_backward(); loss.backward(); finalize_backward().
  void backward(const torch::Tensor& loss);

  // Averages the gradients already in .grad across ranks, with the same
  // buckets and machinery, without a backward pass (for gradients computed
  // elsewhere, and for the benchmark).
  void reduce_gradients();

  const std::vector<BucketInfo>& buckets() const;
  // Values reduced per step: the trainable parameters' total element count.
  std::int64_t reduced_numel() const;
  // Names of all parameters, in index order.
  std::vector<std::string> parameter_names() const;
  // Backward passes finished so far.
  std::int64_t steps() const;

  // The recorded events since the last call (empty unless options.trace).
  std::vector<TraceEvent> take_trace();

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace xfer::trainer::dist
