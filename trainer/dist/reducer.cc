#include "trainer/dist/reducer.h"

#include <c10/util/strides.h>
#include <spdlog/spdlog.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "common/logging.h"
#include "trainer/dist/op_state.h"
#include "trainer/dist/tensor_buffer.h"
#include "trainer/dist/world.h"

namespace xfer::trainer::dist {
namespace {

constexpr std::chrono::seconds kReportGrace{5};

std::string format_mib(std::size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

// Fixed-size summary of a bucket layout for the cross-rank check.
struct LayoutSignature {
  std::int64_t buckets;
  std::int64_t numel;
  std::uint64_t hash;
};

std::uint64_t mix(std::uint64_t hash, std::uint64_t value) {
  // FNV-1a over the 8 bytes of `value`.
  for (int i = 0; i < 8; ++i) {
    hash ^= (value >> (8 * i)) & 0xffu;
    hash *= 1099511628211ull;
  }
  return hash;
}

// A tensor of `sizes` over flat[offset, offset + numel) that shares the
// storage but is not an autograd view: LibTorch 1.13's Optimizer::zero_grad()
// calls detach_() on every gradient, which throws for views (PyTorch's
// Python optimizer special-cases DDP's bucket views; the C++ one does not).
//
// The alias takes the parameter's strides when they describe a dense
// tensor (a channels-last convolution weight is dense with permuted
// strides), as DDP's bucket views do: autograd then accumulates gradients
// of that layout without a strided copy. Every rank lays the same model out
// the same way, so element i of the bucket is the same value everywhere.
torch::Tensor alias_of(const torch::Tensor& flat, std::int64_t offset, const torch::Tensor& param) {
  torch::Tensor alias = torch::empty({0}, flat.options());
  const torch::IntArrayRef sizes = param.sizes();
  if (param.is_non_overlapping_and_dense()) {
    alias.set_(flat.storage(), flat.storage_offset() + offset, sizes, param.strides());
  } else {
    alias.set_(flat.storage(), flat.storage_offset() + offset, sizes,
               c10::contiguous_strides(sizes));
  }
  return alias;
}

}  // namespace

struct Reducer::State {
  struct Bucket {
    BucketInfo info;
    torch::Tensor flat;
    std::vector<torch::Tensor> views;  // one per info.params entry, shaped as the parameter
    std::size_t pending = 0;
    bool launched = false;
    std::shared_ptr<Work> work;
    std::string label;
  };
  struct Slot {
    int bucket = -1;
    std::size_t position = 0;  // index into Bucket::views
  };
  struct Hook {
    std::shared_ptr<torch::autograd::Node> accumulator;
    std::uintptr_t key = 0;
  };

  State(torch::nn::Module& m, Communicator& c, ReducerOptions o) : module(m), comm(c), options(o) {}

  // Constant after construction.
  torch::nn::Module& module;
  Communicator& comm;
  const ReducerOptions options;
  std::vector<std::string> names;
  std::vector<torch::Tensor> params;

  std::mutex mutex;             // hooks may run on autograd worker threads
  std::vector<bool> trainable;  // the set the buckets were built for
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::vector<BucketInfo> infos;
  std::vector<bool> ready;
  std::size_t next_launch = 0;
  bool in_backward = false;
  std::int64_t steps = 0;
  std::vector<TraceEvent> trace;
  std::vector<std::optional<Hook>> hooks;

  std::string where() const {
    return "rank " + std::to_string(comm.rank()) + "/" + std::to_string(comm.size()) + " on " +
           common::hostname();
  }

  std::vector<bool> current_trainable() const {
    std::vector<bool> out(params.size());
    for (std::size_t i = 0; i < params.size(); ++i) out[i] = params[i].requires_grad();
    return out;
  }

  void mark_ready(std::size_t index);
  void launch_ready_buckets();
  void rebuild();
  void check_layout_across_ranks();
  void register_hook(std::size_t index);
};

namespace {

// Runs after AccumulateGrad has updated the parameter's .grad.
class ReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(Reducer::State* state, std::size_t index) : state_(state), index_(index) {}
  torch::autograd::variable_list operator()(
      const torch::autograd::variable_list& outputs,
      const torch::autograd::variable_list& /*inputs*/) override {
    state_->mark_ready(index_);
    return outputs;
  }

 private:
  Reducer::State* state_;
  std::size_t index_;
};

}  // namespace

void Reducer::State::register_hook(std::size_t index) {
  if (hooks[index].has_value()) return;
  // The accumulator is held here: autograd keeps only a weak reference, and a
  // new accumulator (without our hook) would be made if this one died.
  std::shared_ptr<torch::autograd::Node> accumulator =
      torch::autograd::impl::grad_accumulator(params[index]);
  if (!accumulator) {
    throw std::invalid_argument("parameter '" + names[index] +
                                "' has no gradient accumulator (not a leaf tensor?)");
  }
  std::uintptr_t key = accumulator->add_post_hook(std::make_unique<ReadyHook>(this, index));
  hooks[index] = Hook{std::move(accumulator), key};
}

void Reducer::State::rebuild() {
  std::lock_guard<std::mutex> lock(mutex);
  if (in_backward) {
    throw std::logic_error("the trainable parameters changed during a backward pass");
  }
  std::vector<bool> now = current_trainable();
  // Parameters leaving the set drop their bucket-view gradients: the
  // optimizer must not apply a stale gradient to a frozen parameter.
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!now[i] && i < trainable.size() && trainable[i] && params[i].grad().defined()) {
      params[i].mutable_grad() = torch::Tensor();
    }
  }
  trainable = now;
  const double cap_bytes = options.bucket_mb * 1024.0 * 1024.0;
  std::vector<Bucket> built;
  std::vector<Slot> new_slots(params.size());
  for (std::size_t k = params.size(); k-- > 0;) {
    if (!trainable[k]) continue;
    const torch::Tensor& p = params[k];
    if (!comm.supports(p.is_cuda() ? DeviceType::kCuda : DeviceType::kCpu)) {
      throw std::invalid_argument("parameter '" + names[k] + "' is on " + p.device().str() +
                                  ", which the " + comm.backend() +
                                  " communicator does not reduce");
    }
    data_type_of(p, names[k]);  // throws for a type the communicators lack
    bool start_new = built.empty();
    if (!start_new) {
      const Bucket& last = built.back();
      const torch::Tensor& first = params[last.info.params.front()];
      start_new = static_cast<double>(last.info.bytes) >= cap_bytes ||
                  first.scalar_type() != p.scalar_type() || first.device() != p.device();
    }
    if (start_new) built.emplace_back();
    Bucket& bucket = built.back();
    new_slots[k] = Slot{static_cast<int>(built.size() - 1), bucket.info.params.size()};
    bucket.info.params.push_back(k);
    bucket.info.numel += p.numel();
    bucket.info.bytes += static_cast<std::size_t>(p.numel()) * p.element_size();
  }

  torch::NoGradGuard no_grad;
  for (std::size_t b = 0; b < built.size(); ++b) {
    Bucket& bucket = built[b];
    const torch::Tensor& first = params[bucket.info.params.front()];
    bucket.flat = torch::zeros({bucket.info.numel}, first.options().requires_grad(false));
    std::int64_t offset = 0;
    for (std::size_t k : bucket.info.params) {
      const torch::Tensor& p = params[k];
      torch::Tensor view = alias_of(bucket.flat, offset, p);
      offset += p.numel();
      if (p.grad().defined()) {
        view.copy_(p.grad());
        params[k].mutable_grad() = view;
      }
      bucket.views.push_back(view);
    }
    bucket.label = "bucket " + std::to_string(b + 1) + " of " + std::to_string(built.size()) +
                   " (" + std::to_string(bucket.info.params.size()) + " tensors, " +
                   format_mib(bucket.info.bytes) + " " + name_of(data_type_of(first, "")) + ")";
  }
  buckets = std::move(built);
  slots = std::move(new_slots);
  infos.clear();
  for (const Bucket& bucket : buckets) infos.push_back(bucket.info);
  ready.assign(params.size(), false);
  for (std::size_t k = 0; k < params.size(); ++k) {
    if (trainable[k]) register_hook(k);
  }
}

void Reducer::State::check_layout_across_ranks() {
  LayoutSignature mine{static_cast<std::int64_t>(infos.size()), 0, 1469598103934665603ull};
  for (const BucketInfo& info : infos) {
    mine.numel += info.numel;
    mine.hash = mix(mine.hash, static_cast<std::uint64_t>(info.numel));
    for (std::size_t k : info.params) mine.hash = mix(mine.hash, k);
  }
  std::vector<LayoutSignature> all = comm.allgather_value(mine, "reducer bucket layout check");
  for (std::size_t r = 1; r < all.size(); ++r) {
    if (all[r].buckets != all[0].buckets || all[r].numel != all[0].numel ||
        all[r].hash != all[0].hash) {
      throw std::runtime_error(
          where() + ": the gradient buckets differ between ranks: rank 0 has " +
          std::to_string(all[0].buckets) + " buckets of " + std::to_string(all[0].numel) +
          " values, rank " + std::to_string(r) + " has " + std::to_string(all[r].buckets) +
          " buckets of " + std::to_string(all[r].numel) +
          " values (or other parameters in them). Every rank must build the same model with "
          "the same trainable parameters and --bucket-mb");
    }
  }
  spdlog::info(
      "reducer: {} trainable tensors, {} values in {} bucket(s) of <= {} MiB ({})",
      [&] {
        std::size_t n = 0;
        for (const BucketInfo& info : infos) n += info.params.size();
        return n;
      }(),
      mine.numel, infos.size(), options.bucket_mb, comm.backend());
}

void Reducer::State::mark_ready(std::size_t index) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!in_backward) {
    throw std::logic_error("gradient of '" + names[index] +
                           "' arrived outside a reducer step: call "
                           "Reducer::prepare_for_backward() before loss.backward() (or use "
                           "Reducer::backward(loss))");
  }
  const Slot slot = slots[index];
  if (slot.bucket < 0) return;  // frozen when the buckets were built
  if (ready[index]) {
    throw std::logic_error("gradient of '" + names[index] +
                           "' became ready twice in one step; the Reducer expects one backward "
                           "pass per step through each parameter");
  }
  ready[index] = true;
  Bucket& bucket = buckets[static_cast<std::size_t>(slot.bucket)];
  torch::Tensor& view = bucket.views[slot.position];
  torch::NoGradGuard no_grad;
  const torch::Tensor& grad = params[index].grad();
  if (!grad.defined()) {
    view.zero_();
    params[index].mutable_grad() = view;
  } else if (grad.data_ptr() != view.data_ptr()) {
    // First step, or the optimizer set the gradient to None: adopt the view.
    view.copy_(grad);
    params[index].mutable_grad() = view;
  }
  // Dividing here, per gradient, happens while backward runs; the
  // all-reduce is then a plain sum and needs no pass over the bucket after.
  if (options.average && comm.size() > 1) view.div_(comm.size());
  if (options.trace) trace.push_back(TraceEvent{TraceEvent::Kind::kHook, index});
  if (--bucket.pending == 0 && options.overlap) launch_ready_buckets();
}

void Reducer::State::launch_ready_buckets() {
  while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
    Bucket& bucket = buckets[next_launch];
    const std::string label = bucket.label + ", step " + std::to_string(steps + 1);
    try {
      bucket.work = comm.allreduce(buffer_of(bucket.flat, label), ReduceOp::kSum, label);
    } catch (const std::exception& e) {
      abort_job(where() + ": could not start the all-reduce of " + label + ": " + e.what());
    }
    bucket.launched = true;
    if (options.trace) trace.push_back(TraceEvent{TraceEvent::Kind::kLaunch, next_launch});
    ++next_launch;
  }
}

Reducer::Reducer(torch::nn::Module& module, Communicator& comm, ReducerOptions options)
    : state_(std::make_unique<State>(module, comm, options)) {
  if (!(options.bucket_mb > 0.0)) {
    throw std::invalid_argument("--bucket-mb must be > 0, got " +
                                std::to_string(options.bucket_mb));
  }
  if (options.timeout.count() <= 0) {
    throw std::invalid_argument("reducer timeout must be positive, got " +
                                std::to_string(options.timeout.count()) + " ms");
  }
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    state_->names.push_back(item.key());
    state_->params.push_back(item.value());
  }
  state_->hooks.resize(state_->params.size());
  state_->rebuild();
  state_->check_layout_across_ranks();
}

Reducer::~Reducer() {
  for (auto& hook : state_->hooks) {
    if (hook.has_value()) hook->accumulator->del_post_hook(hook->key);
  }
}

void Reducer::prepare_for_backward() {
  State& s = *state_;
  // A parameter registered after the Reducer was built would never be
  // reduced. Counting them walks the whole module tree and names every
  // tensor (11% of a head step trained from cached features), so the count
  // is checked on the first step and every 64th after.
  constexpr std::int64_t kStructureCheckEvery = 64;
  if (s.steps % kStructureCheckEvery == 0 &&
      s.module.parameters(/*recurse=*/true).size() != s.params.size()) {
    throw std::logic_error("the model's parameter count changed from " +
                           std::to_string(s.params.size()) +
                           " after the Reducer was built; build a new Reducer");
  }
  if (s.current_trainable() != s.trainable) {
    spdlog::info("reducer: the trainable parameters changed; rebuilding the buckets");
    s.rebuild();
    s.check_layout_across_ranks();
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.in_backward) {
    throw std::logic_error("prepare_for_backward() called twice without finalize_backward()");
  }
  std::fill(s.ready.begin(), s.ready.end(), false);
  for (State::Bucket& bucket : s.buckets) {
    bucket.pending = bucket.info.params.size();
    bucket.launched = false;
    bucket.work.reset();
  }
  s.next_launch = 0;
  s.in_backward = true;
}

void Reducer::finalize_backward() {
  State& s = *state_;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.in_backward) {
      throw std::logic_error("finalize_backward() without prepare_for_backward()");
    }
    torch::NoGradGuard no_grad;
    // Parameters backward did not reach contribute zeros, on every rank.
    for (State::Bucket& bucket : s.buckets) {
      if (bucket.pending == 0) continue;
      for (std::size_t j = 0; j < bucket.info.params.size(); ++j) {
        const std::size_t k = bucket.info.params[j];
        if (s.ready[k]) continue;
        s.ready[k] = true;
        bucket.views[j].zero_();
        s.params[k].mutable_grad() = bucket.views[j];
      }
      bucket.pending = 0;
    }
    s.launch_ready_buckets();
  }
  for (std::size_t b = 0; b < s.buckets.size(); ++b) {
    State::Bucket& bucket = s.buckets[b];
    const std::string label = bucket.label + ", step " + std::to_string(s.steps + 1);
    bool finished = false;
    try {
      // The communicator fails an operation at its own deadline, with the
      // better message (dead peer or timeout, op number); this bound is the
      // backstop for a communicator that cannot even report.
      finished = bucket.work->wait(s.options.timeout + kReportGrace);
    } catch (const CollectiveError& e) {
      abort_job(e.what());  // names rank, host, op and the bucket label
    }
    if (!finished) {
      abort_job(
          s.where() + ": allreduce of " + label + " did not finish within " +
          format_seconds(std::chrono::duration<double>(s.options.timeout + kReportGrace).count()) +
          " s and the communicator did not report why");
    }
    if (s.options.trace) {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.trace.push_back(TraceEvent{TraceEvent::Kind::kDone, b});
    }
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  s.in_backward = false;
  ++s.steps;
}

void Reducer::backward(const torch::Tensor& loss) {
  prepare_for_backward();
  loss.backward();
  finalize_backward();
}

void Reducer::reduce_gradients() {
  prepare_for_backward();
  for (const BucketInfo& info : state_->infos) {
    for (std::size_t k : info.params) state_->mark_ready(k);
  }
  finalize_backward();
}

const std::vector<BucketInfo>& Reducer::buckets() const { return state_->infos; }

std::int64_t Reducer::reduced_numel() const {
  std::int64_t total = 0;
  for (const BucketInfo& info : state_->infos) total += info.numel;
  return total;
}

std::vector<std::string> Reducer::parameter_names() const { return state_->names; }

std::int64_t Reducer::steps() const { return state_->steps; }

std::vector<TraceEvent> Reducer::take_trace() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  std::vector<TraceEvent> out;
  out.swap(state_->trace);
  return out;
}

}  // namespace xfer::trainer::dist
