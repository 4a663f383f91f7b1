// coordinator: the long-lived gRPC service of a run (see server/server.h).
//
//   coordinator --dataset cifar100=/data/cifar-100 --checkpoint-dir ckpt --state-dir state
//
// SIGINT or SIGTERM stops it cleanly. With --port-file, the bound port is
// written there once it serves (use --listen 127.0.0.1:0 to pick a free one).
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "common/flags.h"
#include "common/logging.h"
#include "coordinator/server/server.h"

namespace {

namespace server = xfer::coordinator::server;

void write_port_file(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << port << "\n";
    if (!out) throw std::runtime_error("--port-file " + path + ": cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("--port-file " + path + ": cannot rename " + tmp);
  }
}

}  // namespace

int main(int argc, char** argv) {
  server::CoordinatorOptions options;
  std::vector<std::string> dataset_flags;
  std::string port_file;
  std::string log_level = "info";

  CLI::App app{"xfer coordinator: streams dataset shards, aggregates metrics, stores checkpoints"};
  xfer::common::add_config_flag(app);
  app.add_option("--listen", options.listen, "HOST:PORT to listen on (port 0: pick a free one)")
      ->capture_default_str();
  app.add_option("--dataset", dataset_flags, "NAME=DIR of a CIFAR-100 binary dataset (repeatable)")
      ->required();
  app.add_option("--checkpoint-dir", options.checkpoint_dir, "Where checkpoints are stored")
      ->required();
  app.add_option("--state-dir", options.state_dir, "Metrics history, run records and run reports")
      ->required();
  app.add_option("--token-file", options.token_file, "File holding the admin token");
  app.add_option("--read-token-file", options.read_token_file,
                 "File holding the read-only (monitoring) token");
  app.add_flag("--insecure", options.insecure,
               "Allow --listen beyond loopback without --token-file (anyone may write)");
  app.add_option("--tls-cert", options.tls_cert_file, "PEM certificate chain (enables TLS)");
  app.add_option("--tls-key", options.tls_key_file, "PEM private key for --tls-cert");
  app.add_option("--max-message-bytes", options.max_message_bytes, "Largest gRPC message")
      ->capture_default_str();
  app.add_option("--max-batch-size", options.max_batch_size, "Largest per-rank batch served")
      ->capture_default_str();
  app.add_option("--keep-best", options.keep_best, "Checkpoints kept per run by best metric")
      ->capture_default_str();
  app.add_option("--keep-last", options.keep_last, "Checkpoints kept per run by recency")
      ->capture_default_str();
  app.add_option("--tensorboard-dir", options.tensorboard_dir,
                 "Write TensorBoard event files here, one directory per run");
  app.add_option("--rank-timeout", options.rank_timeout_s,
                 "Seconds a rank of a running run may send no heartbeat before the run is marked "
                 "FAILED (0: never)")
      ->capture_default_str();
  app.add_option("--port-file", port_file, "Write the bound port to this file once serving");
  // A test hook, hidden from --help (docs/coordinator.md, "Test hooks").
  app.add_option(
         "--test-crash-in-put", options.test_crash_in_put,
         "tests: SIGKILL the coordinator on the first data chunk of the N-th checkpoint Put")
      ->check(CLI::NonNegativeNumber)
      ->group("");
  xfer::common::add_log_level_flag(app, log_level);
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;
  xfer::common::init_logging({"coord", std::nullopt, log_level});

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::unique_ptr<server::Coordinator> coordinator;
  try {
    for (const auto& flag : dataset_flags)
      options.datasets.push_back(server::parse_dataset_flag(flag));
    coordinator = std::make_unique<server::Coordinator>(options);
    if (!port_file.empty()) write_port_file(port_file, coordinator->port());
  } catch (const std::exception& e) {
    spdlog::error("cannot start: {}", e.what());
    return 2;
  }

  std::thread signal_waiter([&] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    spdlog::info("received {}, stopping", signal == SIGINT ? "SIGINT" : "SIGTERM");
    coordinator->shutdown();
  });
  coordinator->wait();
  // wait() also returns if the server stopped for another reason: release
  // the signal thread so the process can exit.
  pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  spdlog::info("coordinator stopped");
  return 0;
}
