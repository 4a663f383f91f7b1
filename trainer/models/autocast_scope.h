// bf16 autocast for the forward passes of a training step, on the CPU or on
// CUDA, for LibTorch 1.13 (Debian, CPU) and 2.x (the GPU machine's PyTorch)
// alike. Backward runs outside the scope, as PyTorch's AMP recipe does.
//
// LibTorch changed the C++ API in 2.4: per-device calls
// (is_enabled/set_enabled for CUDA, is_cpu_enabled/set_cpu_enabled,
// set_autocast_gpu_dtype/set_autocast_cpu_dtype) became
// is_autocast_enabled(device), set_autocast_enabled(device, on),
// get_autocast_dtype(device) and set_autocast_dtype(device, dtype). The old
// names are deprecated wrappers there and may be gone in later releases, so
// the version picks the API at compile time.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define XFER_AUTOCAST_PER_DEVICE_API 1
#else
#define XFER_AUTOCAST_PER_DEVICE_API 0
#endif

namespace xfer::trainer::models {

class AutocastScope {
 public:
  // Does nothing when !on. `cuda` picks the device autocast applies to.
  AutocastScope(bool on, bool cuda, at::ScalarType dtype = at::kBFloat16) : on_(on), cuda_(cuda) {
    if (!on_) return;
    previous_enabled_ = enabled();
    previous_dtype_ = get_dtype();
    set_dtype(dtype);
    set_enabled(true);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!on_) return;
    // Autocast caches the low-precision copies of the weights for the scope:
    // they are stale after the optimizer step, so the outermost scope drops
    // them (Python's torch.autocast.__exit__ does the same).
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set_enabled(previous_enabled_);
    set_dtype(previous_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
#if XFER_AUTOCAST_PER_DEVICE_API
  at::DeviceType device() const { return cuda_ ? at::kCUDA : at::kCPU; }
  bool enabled() const { return at::autocast::is_autocast_enabled(device()); }
  void set_enabled(bool value) const { at::autocast::set_autocast_enabled(device(), value); }
  at::ScalarType get_dtype() const { return at::autocast::get_autocast_dtype(device()); }
  void set_dtype(at::ScalarType dtype) const { at::autocast::set_autocast_dtype(device(), dtype); }
#else
  bool enabled() const {
    return cuda_ ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  }
  void set_enabled(bool value) const {
    if (cuda_) {
      at::autocast::set_enabled(value);
    } else {
      at::autocast::set_cpu_enabled(value);
    }
  }
  at::ScalarType get_dtype() const {
    return cuda_ ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
  }
  void set_dtype(at::ScalarType dtype) const {
    if (cuda_) {
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else {
      at::autocast::set_autocast_cpu_dtype(dtype);
    }
  }
#endif

  bool on_;
  bool cuda_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

}  // namespace xfer::trainer::models
