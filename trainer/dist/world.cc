#include "trainer/dist/world.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "common/logging.h"

namespace xfer::trainer::dist {
namespace {

// Fixed-size record for the start-up allgather: MPI moves bytes, not strings.
struct PeerRecord {
  long pid;
  char host[256];
};

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw std::runtime_error(std::string("MPI start-up failed in ") + what + ": " +
                           std::string(text, static_cast<std::size_t>(length)));
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown MPI thread level";
}

bool process_exists(long pid) {
  // Signal 0 checks existence only. EPERM means it exists but is not ours.
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

struct AbortRoute {
  std::mutex mutex;
  bool (*post)(void*, int) = nullptr;
  void* context = nullptr;
};

AbortRoute& abort_route() {
  static AbortRoute route;
  return route;
}

bool mpi_is_running() {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized != 0 && finalized == 0;
}

}  // namespace

std::unique_ptr<World> World::init(int* argc, char*** argv) {
  std::unique_ptr<World> world(new World());
  int initialized = 0;
  check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
  int provided = MPI_THREAD_SINGLE;
  if (initialized == 0) {
    // Open MPI's non-blocking all-reduce (coll/libnbc) picks a binomial tree
    // for every in-place call, which moves the whole buffer log2(n) times:
    // 2-3x slower than MPI_Allreduce at 4-64 MiB on the build machines. The
    // ring moves 2(n-1)/n of it and matched MPI_Allreduce there
    // (docs/performance.md). A value the user set wins; other MPIs ignore it.
    ::setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "ring", /*overwrite=*/0);
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    world->owns_mpi_ = true;
  } else {
    check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    if (world->owns_mpi_) MPI_Finalize();
    world->owns_mpi_ = false;
    throw std::runtime_error(
        std::string("MPI provides only ") + thread_level_name(provided) +
        "; xfer needs MPI_THREAD_SERIALIZED (its communication thread makes MPI calls). Use an "
        "MPI built with thread support (Open MPI and MPICH are by default)");
  }

  // Errors come back as codes so the communicator can report them with the
  // rank and op, instead of MPI's default handler ending the process.
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &world->comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(world->comm_, MPI_ERRORS_RETURN);
  check_mpi(MPI_Comm_rank(world->comm_, &world->rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(world->comm_, &world->size_), "MPI_Comm_size");

  MPI_Comm local = MPI_COMM_NULL;
  check_mpi(
      MPI_Comm_split_type(world->comm_, MPI_COMM_TYPE_SHARED, world->rank_, MPI_INFO_NULL, &local),
      "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  check_mpi(MPI_Comm_rank(local, &world->local_rank_), "MPI_Comm_rank(local)");
  check_mpi(MPI_Comm_size(local, &world->local_size_), "MPI_Comm_size(local)");
  MPI_Comm_free(&local);

  PeerRecord mine{};
  mine.pid = static_cast<long>(::getpid());
  std::string host = common::hostname();
  std::strncpy(mine.host, host.c_str(), sizeof(mine.host) - 1);
  std::vector<PeerRecord> all(static_cast<std::size_t>(world->size_));
  check_mpi(MPI_Allgather(&mine, sizeof(PeerRecord), MPI_BYTE, all.data(), sizeof(PeerRecord),
                          MPI_BYTE, world->comm_),
            "MPI_Allgather(peer records)");
  for (int r = 0; r < world->size_; ++r) {
    const PeerRecord& record = all[static_cast<std::size_t>(r)];
    world->peers_.push_back(PeerInfo{
        r, record.pid, std::string(record.host, strnlen(record.host, sizeof(record.host)))});
  }
  common::set_log_rank(world->rank_);
  return world;
}

World::~World() {
  if (comm_ != MPI_COMM_NULL && mpi_is_running()) MPI_Comm_free(&comm_);
  if (owns_mpi_ && mpi_is_running()) MPI_Finalize();
}

std::string World::where() const {
  return "rank " + std::to_string(rank_) + "/" + std::to_string(size_) + " on " + host();
}

std::vector<PeerInfo> dead_local_peers(const std::vector<PeerInfo>& peers, int self) {
  std::vector<PeerInfo> dead;
  if (self < 0 || static_cast<std::size_t>(self) >= peers.size()) return dead;
  const std::string& my_host = peers[static_cast<std::size_t>(self)].host;
  for (const PeerInfo& peer : peers) {
    if (peer.rank == self || peer.host != my_host) continue;
    if (!process_exists(peer.pid)) dead.push_back(peer);
  }
  return dead;
}

std::string describe_peers(const std::vector<PeerInfo>& peers) {
  std::string out;
  for (const PeerInfo& peer : peers) {
    if (!out.empty()) out += ", ";
    out += "rank " + std::to_string(peer.rank) + " (pid " + std::to_string(peer.pid) + " on " +
           peer.host + ")";
  }
  return out;
}

void abort_job(const std::string& message, int exit_code) {
  spdlog::critical("{}", message);
  spdlog::default_logger()->flush();
  std::fflush(stderr);
  if (mpi_is_running()) {
    bool posted = false;
    {
      AbortRoute& route = abort_route();
      std::lock_guard<std::mutex> lock(route.mutex);
      if (route.post != nullptr) posted = route.post(route.context, exit_code);
    }
    if (posted) {
      // The communication thread calls MPI_Abort within milliseconds (it
      // polls while a collective runs and wakes on a condition variable
      // otherwise). If it is wedged inside MPI, abort from here after all:
      // ending the job matters more than the threading rule.
      std::this_thread::sleep_for(std::chrono::seconds(10));
    }
    MPI_Abort(MPI_COMM_WORLD, exit_code);
  }
  std::_Exit(exit_code);
}

namespace detail {

void set_abort_route(bool (*post)(void*, int), void* context) {
  AbortRoute& route = abort_route();
  std::lock_guard<std::mutex> lock(route.mutex);
  route.post = post;
  route.context = context;
}

void clear_abort_route(void* context) {
  AbortRoute& route = abort_route();
  std::lock_guard<std::mutex> lock(route.mutex);
  if (route.context == context) {
    route.post = nullptr;
    route.context = nullptr;
  }
}

}  // namespace detail
}  // namespace xfer::trainer::dist
