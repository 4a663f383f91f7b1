#include "trainer/dist/model_sync.h"

#include <spdlog/spdlog.h>
#include <torch/utils.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/logging.h"
#include "trainer/dist/tensor_buffer.h"
#include "trainer/dist/world.h"

namespace xfer::trainer::dist {
namespace {

constexpr std::uint64_t kFnvOffset = 1469598103934665603ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

std::uint64_t fnv(std::uint64_t hash, const void* data, std::size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::size_t i = 0;
  // Eight bytes per step: this runs over every parameter.
  for (; i + 8 <= bytes; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, p + i, 8);
    hash = (hash ^ word) * kFnvPrime;
  }
  for (; i < bytes; ++i) hash = (hash ^ p[i]) * kFnvPrime;
  return hash;
}

std::string where(const Communicator& comm) {
  return "rank " + std::to_string(comm.rank()) + "/" + std::to_string(comm.size()) + " on " +
         common::hostname();
}

std::string shape_of(const torch::Tensor& t) {
  std::string out = "[";
  for (std::int64_t i = 0; i < t.dim(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(t.size(i));
  }
  return out + "] " + std::string(c10::toString(t.scalar_type()));
}

struct Named {
  std::string name;
  torch::Tensor tensor;
};

std::vector<Named> state_of(const torch::nn::Module& module, bool with_buffers) {
  std::vector<Named> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    out.push_back({item.key(), item.value()});
  }
  if (with_buffers) {
    for (const auto& item : module.named_buffers(/*recurse=*/true)) {
      out.push_back({item.key(), item.value()});
    }
  }
  return out;
}

// Runs `fn`; a failed collective ends the job (the peers are at an unknown
// point of the sequence), with `what` added to the message.
template <typename Fn>
auto or_abort(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const CollectiveError& e) {
    abort_job(std::string(e.what()) + " [" + what + "]");
  }
}

// Throws on every rank when the ranks' tensor lists differ.
void check_same_structure(const std::vector<Named>& tensors, Communicator& comm, const char* what) {
  const auto count = static_cast<std::int64_t>(tensors.size());
  std::vector<std::int64_t> counts =
      or_abort(what, [&] { return comm.allgather_value(count, std::string(what) + ": count"); });
  for (std::size_t r = 1; r < counts.size(); ++r) {
    if (counts[r] != counts[0]) {
      throw std::runtime_error(
          where(comm) + ": " + what + ": the ranks' models differ: rank 0 has " +
          std::to_string(counts[0]) + " tensors, rank " + std::to_string(r) + " has " +
          std::to_string(counts[r]) + " (every rank must build the same model)");
    }
  }
  if (tensors.empty()) return;
  std::vector<std::uint64_t> mine;
  for (const Named& named : tensors) {
    std::string signature = named.name + " " + shape_of(named.tensor);
    mine.push_back(fnv(kFnvOffset, signature.data(), signature.size()));
  }
  std::vector<std::byte> raw = or_abort(what, [&] {
    return comm.allgather(mine.data(), mine.size() * sizeof(std::uint64_t),
                          std::string(what) + ": signatures");
  });
  std::vector<std::uint64_t> all(raw.size() / sizeof(std::uint64_t));
  std::memcpy(all.data(), raw.data(), raw.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    for (std::size_t r = 1; r < counts.size(); ++r) {
      if (all[r * tensors.size() + i] != all[i]) {
        throw std::runtime_error(where(comm) + ": " + what +
                                 ": the ranks' models differ at tensor #" + std::to_string(i) +
                                 ", here '" + tensors[i].name + "' " + shape_of(tensors[i].tensor) +
                                 ": rank " + std::to_string(r) +
                                 " has another name, shape or type than rank 0 "
                                 "(every rank must build the same model)");
      }
    }
  }
}

}  // namespace

void broadcast_module_state(torch::nn::Module& module, Communicator& comm) {
  const char* what = "start-up broadcast of the model from rank 0";
  std::vector<Named> tensors = state_of(module, /*with_buffers=*/true);
  check_same_structure(tensors, comm, what);
  torch::NoGradGuard no_grad;
  std::size_t bytes = 0;
  for (const Named& named : tensors) {
    torch::Tensor& t = const_cast<torch::Tensor&>(named.tensor);
    if (!comm.supports(t.is_cuda() ? DeviceType::kCuda : DeviceType::kCpu)) {
      throw std::invalid_argument("tensor '" + named.name + "' is on " + t.device().str() +
                                  ", which the " + comm.backend() +
                                  " communicator does not handle");
    }
    torch::Tensor dense = t.is_contiguous() ? t : t.contiguous();
    or_abort(what, [&] {
      comm.broadcast(buffer_of(dense, named.name), 0, "model tensor '" + named.name + "'");
      return 0;
    });
    if (dense.is_same(t)) {
      // Written in place behind autograd's back: say so, as copy_ would, so
      // whatever keys on the version (the folded weights kept under
      // InferenceMode) sees the new values.
      t.unsafeGetTensorImpl()->bump_version();
    } else {
      t.copy_(dense);
    }
    bytes += static_cast<std::size_t>(t.numel()) * t.element_size();
  }
  spdlog::info("model state broadcast from rank 0: {} tensors, {} bytes", tensors.size(), bytes);
}

void check_module_in_sync(const torch::nn::Module& module, Communicator& comm, std::int64_t step) {
  const char* what = "parameter sync check";
  std::vector<Named> tensors = state_of(module, /*with_buffers=*/false);
  check_same_structure(tensors, comm, what);
  struct Fingerprint {
    std::uint64_t hash;
    double sum;
  };
  std::vector<Fingerprint> mine;
  for (const Named& named : tensors) {
    torch::Tensor host = named.tensor.detach().to(torch::kCPU).contiguous();
    Fingerprint f{fnv(kFnvOffset, host.data_ptr(), host.numel() * host.element_size()), 0.0};
    // A serial sum: the same on every rank whatever its thread count.
    torch::Tensor values = host.to(torch::kFloat64);
    const double* v = values.data_ptr<double>();
    for (std::int64_t i = 0; i < values.numel(); ++i) f.sum += v[i];
    mine.push_back(f);
  }
  if (tensors.empty()) return;
  std::vector<std::byte> raw = or_abort(what, [&] {
    return comm.allgather(mine.data(), mine.size() * sizeof(Fingerprint), "parameter checksums");
  });
  std::vector<Fingerprint> all(raw.size() / sizeof(Fingerprint));
  std::memcpy(all.data(), raw.data(), raw.size());
  const std::size_t n = tensors.size();
  std::string details;
  int differing = 0;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t r = 1; r < all.size() / n; ++r) {
      if (all[r * n + i].hash == all[i].hash) continue;
      if (++differing <= 3) {
        char sums[96];
        std::snprintf(sums, sizeof(sums), "sum %.10g vs %.10g", all[r * n + i].sum, all[i].sum);
        details += (details.empty() ? "" : "; ") + std::string("'") + tensors[i].name +
                   "' on rank " + std::to_string(r) + " differs from rank 0 (" + sums + ")";
      }
    }
  }
  if (differing > 0) {
    throw DivergenceError(where(comm) + ": parameters diverged across ranks at step " +
                          std::to_string(step) + ": " + details + " (" + std::to_string(differing) +
                          " tensor/rank pair(s) in all). Every rank must run the same steps on "
                          "the same averaged gradients");
  }
  spdlog::debug("step {}: parameters identical on all {} ranks ({} tensors)", step, comm.size(), n);
}

}  // namespace xfer::trainer::dist
