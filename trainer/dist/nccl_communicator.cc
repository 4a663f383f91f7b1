#include "trainer/dist/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "trainer/dist/nccl_collective.h"
#include "trainer/dist/op_state.h"

namespace xfer::trainer::dist {
namespace {

using Clock = std::chrono::steady_clock;

// Waiting threads poll CUDA events and NCCL's async error this often.
constexpr std::chrono::microseconds kPollSleep{50};

ncclDataType_t nccl_type(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return ncclFloat32;
    case DataType::kFloat64:
      return ncclFloat64;
    case DataType::kInt32:
      return ncclInt32;
    case DataType::kInt64:
      return ncclInt64;
    case DataType::kUInt8:
      return ncclUint8;
  }
  return ncclFloat32;
}

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

std::string nccl_version() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "unknown";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return std::to_string(code / 10000) + "." + std::to_string(code % 10000 / 100) + "." +
         std::to_string(code % 100);
}

struct NcclCommunicator::Impl {
  const World& world;
  MpiCommunicator& host;
  CommunicatorOptions options;
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  std::string version;

  std::mutex mutex;            // serialises launches: NCCL ops are enqueued in one order
  bool broken = false;         // GUARDED_BY(mutex)
  std::string broken_reason;   // GUARDED_BY(mutex)
  std::uint64_t next_seq = 1;  // GUARDED_BY(mutex)

  Impl(const World& w, MpiCommunicator& h, int d, CommunicatorOptions o)
      : world(w), host(h), options(o), device(d), version(nccl_version()) {}

  std::string context(const std::string& op) const {
    return world.where() + " (cuda:" + std::to_string(device) + ", NCCL " + version + "): " + op;
  }

  [[noreturn]] void throw_error(const std::string& op, const std::string& what, const char* file,
                                int line) const {
    throw CollectiveError(context(op) + ": " + what + " [" + file + ":" + std::to_string(line) +
                          "]");
  }

  void check_cuda(cudaError_t rc, const char* call, const std::string& op, const char* file,
                  int line) const {
    if (rc == cudaSuccess) return;
    throw_error(op,
                std::string(call) + " failed: " + cudaGetErrorName(rc) + " (" +
                    cudaGetErrorString(rc) + ")",
                file, line);
  }

  void check_nccl(ncclResult_t rc, const char* call, const std::string& op, const char* file,
                  int line) const {
    if (rc == ncclSuccess || rc == ncclInProgress) return;
    std::string last = comm != nullptr ? ncclGetLastError(comm) : "";
    throw_error(op,
                std::string(call) + " failed: " + ncclGetErrorString(rc) +
                    (last.empty() ? "" : " (" + last + ")"),
                file, line);
  }

  // Waits until the non-blocking communicator is no longer "in progress"
  // (after init and after a group launch). Throws on error or deadline.
  void settle(const std::string& op, Clock::time_point deadline) {
    for (;;) {
      ncclResult_t state = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(comm, &state), "ncclCommGetAsyncError", op, __FILE__,
                 __LINE__);
      if (state == ncclSuccess) return;
      check_nccl(state, "NCCL (asynchronous)", op, __FILE__, __LINE__);
      if (Clock::now() >= deadline) {
        throw CollectiveError(context(op) +
                              ": NCCL still in progress after the collective "
                              "timeout of " +
                              format_seconds(options.timeout.count() / 1000.0) + " s");
      }
      std::this_thread::sleep_for(kPollSleep);
    }
  }

  // Marks the communicator broken and aborts NCCL; keeps the first reason.
  void break_with(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mutex);
    break_locked(reason);
  }

  void break_locked(const std::string& reason) {
    if (broken) return;
    broken = true;
    broken_reason = reason;
    spdlog::error("{}", reason);
    if (comm != nullptr) ncclCommAbort(comm);
    comm = nullptr;
  }
};

#define XFER_CUDA_CHECK(impl, op, call) (impl).check_cuda((call), #call, (op), __FILE__, __LINE__)
#define XFER_NCCL_CHECK(impl, op, call) (impl).check_nccl((call), #call, (op), __FILE__, __LINE__)

namespace {

class NcclWork final : public Work {
 public:
  NcclWork(std::shared_ptr<NcclCommunicator::Impl> impl, std::string op, Clock::time_point deadline)
      : impl_(std::move(impl)), op_(std::move(op)), deadline_(deadline) {}

  ~NcclWork() override {
    if (done_event_ != nullptr) cudaEventDestroy(done_event_);
    if (ready_event_ != nullptr) cudaEventDestroy(ready_event_);
  }

  cudaEvent_t* ready_event() { return &ready_event_; }
  cudaEvent_t* done_event() { return &done_event_; }

  bool wait(std::chrono::milliseconds timeout) override {
    std::lock_guard<std::mutex> lock(wait_mutex_);
    if (finished_) {
      if (!error_.empty()) throw CollectiveError(error_);
      return true;
    }
    const Clock::time_point give_up = Clock::now() + timeout;
    Clock::time_point next_probe = Clock::now() + impl_->options.liveness_interval;
    for (;;) {
      std::string failure = poll(next_probe);
      if (!failure.empty()) {
        impl_->break_with(failure);
        finish(failure);
        throw CollectiveError(failure);
      }
      if (finished_) return true;
      if (Clock::now() >= give_up) return false;
      std::this_thread::sleep_for(kPollSleep);
    }
  }

  bool done() const override {
    std::lock_guard<std::mutex> lock(wait_mutex_);
    if (finished_) return true;
    return cudaEventQuery(done_event_) == cudaSuccess;
  }

 private:
  // One check: completion, NCCL's async error, dead local peers, deadline.
  // Returns a failure message, or "" (and sets finished_ on completion).
  std::string poll(Clock::time_point& next_probe) {
    cudaError_t rc = cudaEventQuery(done_event_);
    if (rc == cudaSuccess) {
      finished_ = true;
      return "";
    }
    if (rc != cudaErrorNotReady) {
      return impl_->context(op_) + ": cudaEventQuery failed: " + cudaGetErrorString(rc);
    }
    {
      std::lock_guard<std::mutex> lock(impl_->mutex);
      if (impl_->broken) {
        return impl_->context(op_) + ": communicator aborted: " + impl_->broken_reason;
      }
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(impl_->comm, &state);
      if (state != ncclSuccess && state != ncclInProgress) {
        return impl_->context(op_) + ": NCCL reported " + ncclGetErrorString(state) + " (" +
               ncclGetLastError(impl_->comm) + ")";
      }
    }
    const Clock::time_point now = Clock::now();
    if (impl_->options.liveness_interval.count() > 0 && now >= next_probe) {
      next_probe = now + impl_->options.liveness_interval;
      std::vector<PeerInfo> dead = dead_local_peers(impl_->world.peers(), impl_->world.rank());
      if (!dead.empty()) {
        return impl_->context(op_) + " failed: " + describe_peers(dead) +
               " no longer running (killed or crashed)";
      }
    }
    if (now >= deadline_) {
      return impl_->context(op_) + " timed out after " +
             format_seconds(impl_->options.timeout.count() / 1000.0) +
             " s (the collective timeout): a peer never joined it or is stuck";
    }
    return "";
  }

  void finish(const std::string& error) {
    finished_ = true;
    error_ = error;
  }

  std::shared_ptr<NcclCommunicator::Impl> impl_;
  std::string op_;
  Clock::time_point deadline_;
  cudaEvent_t ready_event_ = nullptr;
  cudaEvent_t done_event_ = nullptr;
  mutable std::mutex wait_mutex_;
  bool finished_ = false;  // GUARDED_BY(wait_mutex_)
  std::string error_;      // GUARDED_BY(wait_mutex_)
};

// The real CUDA and NCCL calls behind collective() (nccl_collective.h), for
// one launch; made and used with impl.mutex held.
class NcclSteps {
 public:
  explicit NcclSteps(const std::shared_ptr<NcclCommunicator::Impl>& owner)
      : owner_(owner), impl(*owner) {}

  std::uint64_t next_seq() { return impl.next_seq++; }
  bool broken() const { return impl.broken; }
  std::string broken_reason() const { return impl.broken_reason; }
  std::string context(const std::string& op) const { return impl.context(op); }
  Clock::time_point deadline() const { return Clock::now() + impl.options.timeout; }

  std::shared_ptr<NcclWork> make_work(const std::string& name, Clock::time_point deadline) {
    return std::make_shared<NcclWork>(owner_, name, deadline);
  }

  void order_after_producer(NcclWork* work, const Buffer& buffer, const std::string& name) {
    auto producer = static_cast<cudaStream_t>(buffer.stream);
    XFER_CUDA_CHECK(impl, name, cudaSetDevice(impl.device));
    XFER_CUDA_CHECK(impl, name,
                    cudaEventCreateWithFlags(work->ready_event(), cudaEventDisableTiming));
    XFER_CUDA_CHECK(impl, name,
                    cudaEventCreateWithFlags(work->done_event(), cudaEventDisableTiming));
    // The collective starts after the kernels that produced the data.
    XFER_CUDA_CHECK(impl, name, cudaEventRecord(*work->ready_event(), producer));
    XFER_CUDA_CHECK(impl, name, cudaStreamWaitEvent(impl.stream, *work->ready_event(), 0));
  }

  void group_start(const std::string& name) { XFER_NCCL_CHECK(impl, name, ncclGroupStart()); }
  void group_end(const std::string& name) { XFER_NCCL_CHECK(impl, name, ncclGroupEnd()); }
  void settle(const std::string& name, Clock::time_point deadline) { impl.settle(name, deadline); }

  void record_done(NcclWork* work, const std::string& name) {
    XFER_CUDA_CHECK(impl, name, cudaEventRecord(*work->done_event(), impl.stream));
  }

  void break_locked(const std::string& reason) { impl.break_locked(reason); }

 private:
  const std::shared_ptr<NcclCommunicator::Impl>& owner_;
  NcclCommunicator::Impl& impl;  // named as in the macros' messages
};

}  // namespace

NcclCommunicator::NcclCommunicator(const World& world, MpiCommunicator& host, int device_index,
                                   CommunicatorOptions options)
    : impl_(std::make_shared<Impl>(world, host, device_index, options)) {
  Impl& impl = *impl_;
  const int devices = cuda_device_count();
  if (device_index < 0 || device_index >= devices) {
    throw std::invalid_argument(impl.context("start-up") + ": device index " +
                                std::to_string(device_index) + " is not one of the " +
                                std::to_string(devices) + " CUDA device(s) on this host");
  }
  const std::string op = "ncclCommInitRankConfig";
  XFER_CUDA_CHECK(impl, op, cudaSetDevice(device_index));

  // Every rank takes part in the id broadcast, even if rank 0 failed to make
  // one: a rank that threw before the broadcast would leave the others
  // waiting (until their timeout) instead of failing together.
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  std::uint8_t ok = 1;
  std::string id_error;
  if (world.rank() == 0) {
    ncclResult_t rc = ncclGetUniqueId(&id);
    if (rc != ncclSuccess) {
      ok = 0;
      id_error = std::string("ncclGetUniqueId failed: ") + ncclGetErrorString(rc);
    }
  }
  host.broadcast(Buffer{&ok, 1, DataType::kUInt8}, 0, "NCCL unique id status");
  if (ok == 0) {
    throw CollectiveError(impl.context(op) + ": " +
                          (world.rank() == 0 ? id_error : "rank 0 could not create the NCCL id"));
  }
  host.broadcast(Buffer{&id, sizeof(id), DataType::kUInt8}, 0, "NCCL unique id");

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const Clock::time_point deadline = Clock::now() + options.timeout;
  XFER_NCCL_CHECK(impl, op,
                  ncclCommInitRankConfig(&impl.comm, world.size(), id, world.rank(), &config));
  try {
    impl.settle(op, deadline);
    XFER_CUDA_CHECK(impl, op, cudaStreamCreateWithFlags(&impl.stream, cudaStreamNonBlocking));
  } catch (const CollectiveError& e) {
    impl.break_with(e.what());
    throw;
  }
  spdlog::info("NCCL {} communicator up on cuda:{} ({} ranks)", impl.version, device_index,
               world.size());
}

NcclCommunicator::~NcclCommunicator() {
  Impl& impl = *impl_;
  std::lock_guard<std::mutex> lock(impl.mutex);
  if (impl.comm != nullptr) {
    // Finalize flushes the issued work; bounded by the timeout, then abort.
    ncclResult_t rc = ncclCommFinalize(impl.comm);
    ncclResult_t state = (rc == ncclSuccess || rc == ncclInProgress) ? ncclInProgress : rc;
    const Clock::time_point deadline = Clock::now() + impl.options.timeout;
    while (state == ncclInProgress && Clock::now() < deadline) {
      if (ncclCommGetAsyncError(impl.comm, &state) != ncclSuccess) break;
      if (state == ncclInProgress) std::this_thread::sleep_for(kPollSleep);
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(impl.comm);
    } else {
      ncclCommAbort(impl.comm);
    }
    impl.comm = nullptr;
  }
  if (impl.stream != nullptr) cudaStreamDestroy(impl.stream);
}

int NcclCommunicator::rank() const { return impl_->world.rank(); }
int NcclCommunicator::size() const { return impl_->world.size(); }

void NcclCommunicator::abort(const std::string& why) { impl_->break_with(why); }

std::shared_ptr<Work> NcclCommunicator::allreduce(const Buffer& buffer, ReduceOp op,
                                                  const std::string& label) {
  validate_allreduce(*this, buffer, op);
  Impl& impl = *impl_;
  std::lock_guard<std::mutex> lock(impl.mutex);
  NcclSteps steps(impl_);
  return collective(steps, "allreduce", label, buffer, [&](const std::string& name) {
    XFER_NCCL_CHECK(
        impl, name,
        ncclAllReduce(buffer.data, buffer.data, buffer.count, nccl_type(buffer.type),
                      op == ReduceOp::kSum ? ncclSum : ncclAvg, impl.comm, impl.stream));
  });
}

void NcclCommunicator::broadcast(const Buffer& buffer, int root, const std::string& label) {
  validate_broadcast(*this, buffer, root);
  Impl& impl = *impl_;
  std::shared_ptr<NcclWork> work;
  {
    std::lock_guard<std::mutex> lock(impl.mutex);
    NcclSteps steps(impl_);
    work = collective(steps, "broadcast", label, buffer, [&](const std::string& name) {
      XFER_NCCL_CHECK(impl, name,
                      ncclBroadcast(buffer.data, buffer.data, buffer.count, nccl_type(buffer.type),
                                    root, impl.comm, impl.stream));
    });
  }
  // The work's own deadline fails it first; this bound only backs it up.
  if (!work->wait(impl.options.timeout + std::chrono::seconds(5))) {
    throw CollectiveError(impl.context("broadcast") + ": did not complete in time");
  }
}

std::vector<std::byte> NcclCommunicator::allgather(const void* data, std::size_t bytes,
                                                   const std::string& label) {
  return impl_->host.allgather(data, bytes, label);
}

void NcclCommunicator::barrier(const std::string& label) { impl_->host.barrier(label); }

}  // namespace xfer::trainer::dist
