#include "trainer/train/preemption.h"

#include <atomic>
#include <csignal>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "trainer/train/collective.h"

namespace xfer::trainer::train {
namespace {

// Written by the handler; 0 while no signal arrived. A lock-free atomic is
// async-signal-safe (a plain sig_atomic_t would do, but this also orders
// with the loop's reads on other threads).
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);
std::atomic<bool> g_installed{false};

struct sigaction g_previous_usr1;
struct sigaction g_previous_term;

extern "C" void on_preemption_signal(int signal_number) {
  int expected = 0;
  // The first signal is the one reported.
  g_signal.compare_exchange_strong(expected, signal_number);
}

}  // namespace

PreemptionWatch::PreemptionWatch() {
  if (g_installed.exchange(true)) {
    throw std::logic_error("PreemptionWatch: only one may exist per process");
  }
  g_signal.store(0);
  struct sigaction action {};
  action.sa_handler = on_preemption_signal;
  sigemptyset(&action.sa_mask);
  // Restart interrupted system calls: the signal must not turn a read in
  // progress (MPI, gRPC, files) into an error.
  action.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &action, &g_previous_usr1);
  sigaction(SIGTERM, &action, &g_previous_term);
}

PreemptionWatch::~PreemptionWatch() {
  sigaction(SIGUSR1, &g_previous_usr1, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
  g_installed.store(false);
}

bool PreemptionWatch::requested_locally() const { return g_signal.load() != 0; }

std::string PreemptionWatch::signal_name() const {
  switch (g_signal.load()) {
    case 0:
      return "";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "signal " + std::to_string(g_signal.load());
  }
}

void PreemptionWatch::request_locally(int signal_number) { on_preemption_signal(signal_number); }

bool PreemptionWatch::agreed(dist::Communicator& comm) const {
  std::vector<std::int64_t> flag{requested_locally() ? 1 : 0};
  sum_over_ranks(comm, flag, "preemption check");
  return flag[0] > 0;
}

}  // namespace xfer::trainer::train
