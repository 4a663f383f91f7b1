#include "trainer/dist/mpi_communicator.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "trainer/dist/op_state.h"

namespace xfer::trainer::dist {
namespace {

using Clock = std::chrono::steady_clock;

// Polls of MPI_Test before the thread starts sleeping between polls. Spinning
// gives the lowest latency; but on a machine where the ranks' compute threads
// own all cores, a spinning poller steals their time while backward runs.
// After this many empty polls (tens of microseconds) the poller sleeps
// kPollSleep between polls instead.
constexpr int kSpinPolls = 2000;
constexpr std::chrono::microseconds kPollSleep{20};

MPI_Datatype mpi_type(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return MPI_FLOAT;
    case DataType::kFloat64:
      return MPI_DOUBLE;
    case DataType::kInt32:
      return MPI_INT32_T;
    case DataType::kInt64:
      return MPI_INT64_T;
    case DataType::kUInt8:
      return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

std::string mpi_error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(rc);
  return std::string(text, static_cast<std::size_t>(length));
}

template <typename T>
void divide_in_place(void* data, std::size_t count, int divisor) {
  T* values = static_cast<T*>(data);
  const T d = static_cast<T>(divisor);
  for (std::size_t i = 0; i < count; ++i) values[i] /= d;
}

enum class Kind { kAllreduce, kBroadcast, kAllgather, kBarrier };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kAllreduce:
      return "allreduce";
    case Kind::kBroadcast:
      return "broadcast";
    case Kind::kAllgather:
      return "allgather";
    case Kind::kBarrier:
      return "barrier";
  }
  return "collective";
}

struct Operation : OpState {
  Kind kind = Kind::kBarrier;
  std::uint64_t seq = 0;
  Buffer buffer;
  ReduceOp reduce = ReduceOp::kSum;
  int root = 0;
  const void* send = nullptr;
  std::size_t send_bytes = 0;
  std::vector<std::byte> received;
  std::string label;

  std::string name() const {
    std::string out = std::string(kind_name(kind)) + " #" + std::to_string(seq);
    if (!label.empty()) out += " (" + label + ")";
    return out;
  }
};

class MpiWork final : public Work {
 public:
  explicit MpiWork(std::shared_ptr<Operation> op) : op_(std::move(op)) {}
  bool wait(std::chrono::milliseconds timeout) override { return op_->wait_for(timeout); }
  bool done() const override { return op_->finished(); }

 private:
  std::shared_ptr<Operation> op_;
};

}  // namespace

struct MpiCommunicator::Impl {
  const World& world;
  CommunicatorOptions options;
  MPI_Comm comm = MPI_COMM_NULL;

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Operation>> queue;  // GUARDED_BY(mutex)
  bool stopping = false;                         // GUARDED_BY(mutex)
  std::uint64_t next_seq = 1;                    // GUARDED_BY(mutex)
  std::atomic<int> abort_code{-1};

  // Touched only by the communication thread.
  bool broken = false;
  std::string broken_reason;

  std::thread thread;
  std::thread::id thread_id;

  Impl(const World& w, CommunicatorOptions o) : world(w), options(o) {}

  std::shared_ptr<Operation> submit(std::shared_ptr<Operation> op) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (stopping) throw std::logic_error("MpiCommunicator used after its destruction began");
      op->seq = next_seq++;
      queue.push_back(op);
    }
    wake.notify_one();
    return op;
  }

  // Blocks the caller until `op` is done; throws its error.
  void wait_blocking(Operation& op) {
    // The communication thread enforces the deadline; waiting slightly
    // longer here only covers a thread that cannot even report.
    if (!op.wait_for(options.timeout + std::chrono::seconds(5))) {
      throw CollectiveError(world.where() + ": " + op.name() + " did not finish within " +
                            format_seconds(options.timeout.count() / 1000.0 + 5) +
                            " s and the communication thread did not report");
    }
  }

  static bool post_abort(void* context, int exit_code) {
    auto* self = static_cast<Impl*>(context);
    if (std::this_thread::get_id() == self->thread_id) return false;
    {
      // Under the mutex so the wake-up cannot fall between the thread's
      // predicate check and its sleep.
      std::lock_guard<std::mutex> lock(self->mutex);
      self->abort_code.store(exit_code);
    }
    self->wake.notify_one();
    return true;
  }

  void abort_if_requested() {
    int code = abort_code.load();
    if (code >= 0) MPI_Abort(MPI_COMM_WORLD, code);
  }

  void run() {
    for (;;) {
      std::shared_ptr<Operation> op;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return stopping || !queue.empty() || abort_code.load() >= 0; });
        if (abort_code.load() >= 0) {
          lock.unlock();
          abort_if_requested();
        }
        if (queue.empty()) {
          if (stopping) return;
          continue;
        }
        op = std::move(queue.front());
        queue.pop_front();
      }
      execute(*op);
    }
  }

  int start(Operation& op, MPI_Request* request) {
    switch (op.kind) {
      case Kind::kAllreduce:
        return MPI_Iallreduce(MPI_IN_PLACE, op.buffer.data, static_cast<int>(op.buffer.count),
                              mpi_type(op.buffer.type), MPI_SUM, comm, request);
      case Kind::kBroadcast:
        return MPI_Ibcast(op.buffer.data, static_cast<int>(op.buffer.count),
                          mpi_type(op.buffer.type), op.root, comm, request);
      case Kind::kAllgather:
        op.received.resize(op.send_bytes * static_cast<std::size_t>(world.size()));
        return MPI_Iallgather(op.send, static_cast<int>(op.send_bytes), MPI_BYTE,
                              op.received.data(), static_cast<int>(op.send_bytes), MPI_BYTE, comm,
                              request);
      case Kind::kBarrier:
        return MPI_Ibarrier(comm, request);
    }
    return MPI_ERR_OTHER;
  }

  void fail(Operation& op, const std::string& why) {
    broken = true;
    broken_reason = world.where() + ": " + op.name() + " " + why;
    // The waiter reports it (abort_job); debug here avoids a double line.
    spdlog::debug("{}", broken_reason);
    op.finish(broken_reason);
  }

  void execute(Operation& op) {
    if (broken) {
      op.finish(world.where() + ": " + op.name() +
                " was not started: the communicator broke earlier (" + broken_reason + ")");
      return;
    }
    MPI_Request request = MPI_REQUEST_NULL;
    const Clock::time_point started = Clock::now();
    int rc = start(op, &request);
    if (rc != MPI_SUCCESS) {
      fail(op, "could not start: " + mpi_error_text(rc));
      return;
    }
    const Clock::time_point deadline = started + options.timeout;
    Clock::time_point next_probe = started + options.liveness_interval;
    int empty_polls = 0;
    for (;;) {
      int flag = 0;
      rc = MPI_Test(&request, &flag, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) {
        fail(op, "failed in MPI: " + mpi_error_text(rc));
        return;
      }
      if (flag != 0) break;
      abort_if_requested();
      const Clock::time_point now = Clock::now();
      const double waited = std::chrono::duration<double>(now - started).count();
      if (options.liveness_interval.count() > 0 && now >= next_probe) {
        next_probe = now + options.liveness_interval;
        std::vector<PeerInfo> dead = dead_local_peers(world.peers(), world.rank());
        if (!dead.empty()) {
          fail(op, "failed: " + describe_peers(dead) + (dead.size() == 1 ? " is" : " are") +
                       " no longer running (killed or "
                       "crashed) after this rank waited " +
                       format_seconds(waited) + " s");
          return;
        }
      }
      if (now >= deadline) {
        fail(op, "timed out after " + format_seconds(waited) +
                     " s (the collective timeout): a peer never joined it or is stuck. Every "
                     "rank must call the same collectives in the same order; peers on this "
                     "host are alive, so look for a rank on another host or one that took a "
                     "different path");
        return;
      }
      if (++empty_polls > kSpinPolls) std::this_thread::sleep_for(kPollSleep);
    }
    if (op.kind == Kind::kAllreduce && op.reduce == ReduceOp::kAverage) {
      if (op.buffer.type == DataType::kFloat32) {
        divide_in_place<float>(op.buffer.data, op.buffer.count, world.size());
      } else {
        divide_in_place<double>(op.buffer.data, op.buffer.count, world.size());
      }
    }
    op.finish("");
  }
};

namespace {
// MPI_THREAD_SERIALIZED forbids concurrent MPI calls; two communication
// threads would make them. One MpiCommunicator per process at a time.
std::atomic<int> g_live_communicators{0};
}  // namespace

MpiCommunicator::MpiCommunicator(const World& world, CommunicatorOptions options)
    : impl_(std::make_unique<Impl>(world, options)) {
  if (options.timeout.count() <= 0) {
    throw std::invalid_argument("collective timeout must be positive, got " +
                                std::to_string(options.timeout.count()) + " ms");
  }
  if (options.liveness_interval.count() < 0) {
    throw std::invalid_argument("liveness interval must be >= 0, got " +
                                std::to_string(options.liveness_interval.count()) + " ms");
  }
  if (g_live_communicators.fetch_add(1) != 0) {
    g_live_communicators.fetch_sub(1);
    throw std::logic_error(
        "a second MpiCommunicator in one process: its communication thread would call MPI "
        "concurrently with the first one's (MPI_THREAD_SERIALIZED); share the first");
  }
  int rc = MPI_Comm_dup(world.comm(), &impl_->comm);
  if (rc != MPI_SUCCESS) {
    g_live_communicators.fetch_sub(1);
    throw CollectiveError(world.where() + ": MPI_Comm_dup failed: " + mpi_error_text(rc));
  }
  MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
  impl_->thread_id = impl_->thread.get_id();
  detail::set_abort_route(&Impl::post_abort, impl_.get());
}

MpiCommunicator::~MpiCommunicator() {
  detail::clear_abort_route(impl_.get());
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_one();
  impl_->thread.join();
  // A broken communicator has a request MPI still owns; freeing the
  // communicator under it is not allowed, so it is left to the job's end.
  if (!impl_->broken) MPI_Comm_free(&impl_->comm);
  g_live_communicators.fetch_sub(1);
}

int MpiCommunicator::rank() const { return impl_->world.rank(); }
int MpiCommunicator::size() const { return impl_->world.size(); }
const CommunicatorOptions& MpiCommunicator::options() const { return impl_->options; }

std::shared_ptr<Work> MpiCommunicator::allreduce(const Buffer& buffer, ReduceOp op,
                                                 const std::string& label) {
  validate_allreduce(*this, buffer, op);
  auto operation = std::make_shared<Operation>();
  operation->kind = Kind::kAllreduce;
  operation->buffer = buffer;
  operation->reduce = op;
  operation->label = label;
  return std::make_shared<MpiWork>(impl_->submit(std::move(operation)));
}

void MpiCommunicator::broadcast(const Buffer& buffer, int root, const std::string& label) {
  validate_broadcast(*this, buffer, root);
  auto operation = std::make_shared<Operation>();
  operation->kind = Kind::kBroadcast;
  operation->buffer = buffer;
  operation->root = root;
  operation->label = label;
  impl_->wait_blocking(*impl_->submit(operation));
}

std::vector<std::byte> MpiCommunicator::allgather(const void* data, std::size_t bytes,
                                                  const std::string& label) {
  if (bytes == 0 || data == nullptr) {
    throw std::invalid_argument("allgather needs at least one byte of data, got " +
                                std::to_string(bytes) + (data == nullptr ? " at nullptr" : ""));
  }
  if (bytes > static_cast<std::size_t>(INT_MAX) / static_cast<std::size_t>(size())) {
    throw std::invalid_argument("allgather is for small values; " + std::to_string(bytes) +
                                " bytes per rank is too many");
  }
  auto operation = std::make_shared<Operation>();
  operation->kind = Kind::kAllgather;
  operation->send = data;
  operation->send_bytes = bytes;
  operation->label = label;
  impl_->wait_blocking(*impl_->submit(operation));
  return std::move(operation->received);
}

void MpiCommunicator::barrier(const std::string& label) {
  auto operation = std::make_shared<Operation>();
  operation->kind = Kind::kBarrier;
  operation->label = label;
  impl_->wait_blocking(*impl_->submit(operation));
}

}  // namespace xfer::trainer::dist
