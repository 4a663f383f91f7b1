// The job as MPI sees it: this process's rank, the ranks on this host, and
// how to end the whole job when something breaks.
//
// MPI threading. World starts MPI with MPI_THREAD_SERIALIZED: after start-up,
// every MPI call of a communicator is made by that communicator's one
// communication thread (see mpi_communicator.h and docs/distributed.md for
// why), and start-up and shutdown happen on the main thread while no
// communication thread runs.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

namespace xfer::trainer::dist {

// One rank of the job, as gathered at start-up.
struct PeerInfo {
  int rank = 0;
  long pid = 0;
  std::string host;
};

class World {
 public:
  // Starts MPI (unless the caller already did) and learns the topology with
  // one allgather of (pid, host) and MPI_Comm_split_type(SHARED). Works under
  // mpirun (Open MPI), srun (Slurm's PMI/PMIx) and as a lone process (a world
  // of one). Throws std::runtime_error when MPI cannot give
  // MPI_THREAD_SERIALIZED. Call once, on the main thread.
  static std::unique_ptr<World> init(int* argc, char*** argv);

  // Finalizes MPI if init() started it. REQUIRES: every communicator made
  // from this world is destroyed first.
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Rank among the processes on this host, and their number.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const std::string& host() const { return peers_[static_cast<std::size_t>(rank_)].host; }
  const std::vector<PeerInfo>& peers() const { return peers_; }

  // A duplicate of MPI_COMM_WORLD owned by this object; communicators
  // duplicate it again so their traffic never mixes.
  MPI_Comm comm() const { return comm_; }

  // "rank 1/3 on host-a" for log lines and errors.
  std::string where() const;

 private:
  World() = default;

  bool owns_mpi_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::vector<PeerInfo> peers_;
};

// Ranks (other than `self`) whose processes live on `self`'s host and no
// longer exist. Used in failure messages: MPI itself cannot say which peer
// failed to join a collective, but a dead local process can be seen.
std::vector<PeerInfo> dead_local_peers(const std::vector<PeerInfo>& peers, int self);

// "rank 1 (pid 4242 on host-a)" for each, comma-separated.
std::string describe_peers(const std::vector<PeerInfo>& peers);

// Logs `message` at critical level, flushes the log, and ends the whole job
// with MPI_Abort(exit_code): Open MPI's mpirun and Slurm's srun then stop
// every other rank. Without MPI (not started, or finalized) the process exits
// with `exit_code`. Safe to call from any thread; when an MPI communication
// thread runs, the abort is made on that thread (MPI_THREAD_SERIALIZED
// allows no concurrent MPI calls).
[[noreturn]] void abort_job(const std::string& message, int exit_code = 1);

namespace detail {
// Registered by the MPI communication thread so abort_job() can hand the
// MPI_Abort call to it. `post` returns false when the caller *is* that thread
// (abort_job then calls MPI_Abort itself).
void set_abort_route(bool (*post)(void* context, int exit_code), void* context);
void clear_abort_route(void* context);
}  // namespace detail

}  // namespace xfer::trainer::dist
