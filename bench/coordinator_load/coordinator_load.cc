// Load on a coordinator from monitoring clients, while a run goes on:
// `--watchers` clients each follow the run with a Watch stream, `--pollers`
// clients call GetStatus (and Ranks) in a loop, and `--stuck-watchers`
// clients open a Watch and never read it until the end (a hung dashboard).
// Every client has its own channel and so its own TCP connection, as
// separate processes would.
//
//   coordinator_load --coordinator HOST:PORT --run RUN [--token-file F]
//       [--watchers 50] [--pollers 10] [--poll-interval-ms 100] [--stuck-watchers 0]
//       [--feed-ranks 0 --feed-epochs 20 --feed-steps 5] [--json FILE]
//
// Without --feed-ranks the run is someone else's (a training job): the load
// waits for it to appear and stops when it ends. With --feed-ranks W this
// program is also the job: it starts the run with world size W, reports
// --feed-steps steps of a train and a validation split per epoch for each
// rank (one thread per rank), then ends the run; report latencies are
// measured, so stuck watchers that slowed ingestion would show.
//
// At the end the stuck watchers read what was queued for them; each must
// get every event (nothing dropped while it was stuck). Prints one summary
// line (and --json FILE); exits 1 when a call failed or a watcher missed an
// event, 2 on a bad flag.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/flags.h"
#include "common/logging.h"
#include "coordinator/client/coordinator_client.h"
#include "coordinator/client/credentials.h"
#include "xfer/v1/coordinator.grpc.pb.h"

namespace {

namespace client = xfer::coordinator::client;
namespace v1 = xfer::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  client::ClientOptions client;
  std::string run;
  int watchers = 50;
  int pollers = 10;
  int poll_interval_ms = 100;
  int stuck_watchers = 0;
  int feed_ranks = 0;
  int feed_epochs = 20;
  int feed_steps = 5;
  double wait_for_run_s = 120;
  double max_seconds = 3600;
  std::string json_file;
};

// What the clients counted; atomics, added to by every thread.
struct Counts {
  std::atomic<std::int64_t> watch_events{0};
  std::atomic<int> watchers_saw_end{0};
  std::atomic<std::int64_t> stuck_events{0};
  std::atomic<int> stuck_saw_end{0};
  std::atomic<std::int64_t> polls{0};
  std::atomic<std::int64_t> reports{0};
  std::atomic<int> errors{0};
  std::mutex mutex;
  std::int64_t max_report_us = 0;  // GUARDED_BY(mutex)
  std::int64_t max_poll_us = 0;    // GUARDED_BY(mutex)
  std::vector<std::string> first_errors;

  void error(const std::string& what) {
    ++errors;
    std::lock_guard<std::mutex> lock(mutex);
    if (first_errors.size() < 5) first_errors.push_back(what);
    spdlog::error("{}", what);
  }
  void latency(std::int64_t& max, Clock::duration took) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
    std::lock_guard<std::mutex> lock(mutex);
    max = std::max(max, us);
  }
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("--tls-ca " + path + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A channel of its own (a local subchannel pool: gRPC would otherwise share
// one connection among channels with equal arguments).
std::shared_ptr<grpc::Channel> own_channel(const client::ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca_file.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read_text(options.tls_ca_file);
    credentials = grpc::SslCredentials(ssl);
  }
  return grpc::CreateCustomChannel(options.address, credentials, args);
}

// Waits until the run exists and is RUNNING (a training job starts it).
bool wait_for_run(const Options& options, const std::atomic<bool>& stop) {
  client::CoordinatorClient probe(options.client);
  const auto until = Clock::now() + std::chrono::duration<double>(options.wait_for_run_s);
  while (!stop && Clock::now() < until) {
    try {
      if (probe.get_run(options.run).state() == v1::RUN_STATE_RUNNING) return true;
    } catch (const client::RpcError& e) {
      if (e.code() != grpc::StatusCode::NOT_FOUND) throw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void watch(const Options& options, Counts& counts, std::mutex& readers_mutex,
           std::vector<client::WatchReader*>& readers) {
  try {
    client::CoordinatorClient watcher(options.client, own_channel(options.client));
    auto reader = watcher.watch(options.run);
    {
      std::lock_guard<std::mutex> lock(readers_mutex);
      readers.push_back(reader.get());
    }
    std::int64_t events = 0;
    bool ended = false;
    while (auto event = reader->next()) {
      if (event->has_run()) {
        ended = event->run().state() != v1::RUN_STATE_RUNNING;
      } else {
        ++events;
      }
    }
    counts.watch_events += events;
    if (ended) ++counts.watchers_saw_end;
    std::lock_guard<std::mutex> lock(readers_mutex);
    readers.erase(std::find(readers.begin(), readers.end(), reader.get()));
  } catch (const std::exception& e) {
    counts.error(std::string("watcher: ") + e.what());
  }
}

void poll(const Options& options, Counts& counts, const std::atomic<bool>& stop) {
  try {
    client::CoordinatorClient poller(options.client, own_channel(options.client));
    while (!stop) {
      const auto start = Clock::now();
      poller.get_status(options.run);
      poller.ranks(options.run);
      counts.latency(counts.max_poll_us, Clock::now() - start);
      ++counts.polls;
      std::this_thread::sleep_for(std::chrono::milliseconds(options.poll_interval_ms));
    }
  } catch (const std::exception& e) {
    counts.error(std::string("poller: ") + e.what());
  }
}

// A Watch call nobody reads until drain().
class StuckWatcher {
 public:
  explicit StuckWatcher(const Options& options) : channel_(own_channel(options.client)) {
    stub_ = v1::MetricsService::NewStub(channel_);
    if (!options.client.token_file.empty()) {
      context_.AddMetadata("authorization",
                           "Bearer " + client::read_token_file(options.client.token_file));
    }
    context_.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::duration<double>(options.max_seconds + 60)));
    v1::WatchRequest request;
    request.set_run(options.run);
    reader_ = stub_->Watch(&context_, request);
  }

  // Ends the call from another thread (the load was stopped early).
  void cancel() { context_.TryCancel(); }

  // Reads everything queued and the rest of the stream.
  void drain(Counts& counts) {
    v1::MetricsEvent event;
    std::int64_t expected = 1;
    bool ended = false;
    while (reader_->Read(&event)) {
      if (event.has_run()) {
        ended = true;
        continue;
      }
      if (event.sequence() != expected) {
        counts.error("stuck watcher: got event " + std::to_string(event.sequence()) +
                     ", expected " + std::to_string(expected));
      }
      expected = event.sequence() + 1;
      ++counts.stuck_events;
    }
    const grpc::Status status = reader_->Finish();
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      counts.error("stuck watcher: Watch ended " + status.error_message());
    }
    if (ended) ++counts.stuck_saw_end;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::MetricsService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::MetricsEvent>> reader_;
};

v1::MetricsReport feed_report(const std::string& run, int rank, int epoch, v1::SplitKind split,
                              int step, bool end) {
  v1::MetricsReport r;
  r.set_run(run);
  r.set_rank(rank);
  r.set_phase("load");
  r.set_epoch(epoch);
  r.set_step(step);
  r.set_split(split);
  r.set_loss_sum(1.5 * (step + 1));
  r.set_correct_top1(2);
  r.set_correct_top3(3);
  r.set_samples(4);
  r.set_images_per_second(100.0);
  r.set_learning_rate(1e-3);
  r.set_end_of_epoch(end);
  return r;
}

// One rank of the fake job: every epoch's train and validation reports.
void feed_rank(const Options& options, int rank, Counts& counts) {
  try {
    client::CoordinatorClient reporter(options.client, own_channel(options.client));
    for (int epoch = 0; epoch < options.feed_epochs; ++epoch) {
      for (const auto split : {v1::SPLIT_KIND_TRAIN, v1::SPLIT_KIND_VALIDATION}) {
        for (int step = 0; step < options.feed_steps; ++step) {
          const auto start = Clock::now();
          reporter.report(
              feed_report(options.run, rank, epoch, split, step, step + 1 == options.feed_steps));
          counts.latency(counts.max_report_us, Clock::now() - start);
          ++counts.reports;
        }
      }
    }
  } catch (const std::exception& e) {
    counts.error("reporter rank " + std::to_string(rank) + ": " + e.what());
  }
}

// User + system CPU time of this process so far.
double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::string summary_json(const Options& o, Counts& c, double seconds) {
  std::lock_guard<std::mutex> lock(c.mutex);
  std::ostringstream out;
  out << "{\"watchers\": " << o.watchers << ", \"watch_events\": " << c.watch_events
      << ", \"watchers_saw_end\": " << c.watchers_saw_end
      << ", \"stuck_watchers\": " << o.stuck_watchers << ", \"stuck_events\": " << c.stuck_events
      << ", \"stuck_saw_end\": " << c.stuck_saw_end << ", \"pollers\": " << o.pollers
      << ", \"polls\": " << c.polls << ", \"max_poll_ms\": " << c.max_poll_us / 1000.0
      << ", \"reports\": " << c.reports << ", \"max_report_ms\": " << c.max_report_us / 1000.0
      << ", \"errors\": " << c.errors << ", \"seconds\": " << seconds
      << ", \"cpu_seconds\": " << cpu_seconds() << "}";
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string log_level = "warn";
  CLI::App app{"Monitoring load on a coordinator: Watch streams and status pollers"};
  app.add_option("--coordinator", o.client.address, "host:port of the coordinator")->required();
  app.add_option("--token-file", o.client.token_file, "file holding the token to use");
  app.add_option("--tls-ca", o.client.tls_ca_file, "PEM root certificate of a TLS coordinator");
  app.add_option("--run", o.run, "run to watch")->required();
  app.add_option("--watchers", o.watchers, "Watch streams that read")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  app.add_option("--stuck-watchers", o.stuck_watchers, "Watch streams never read until the end")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  app.add_option("--pollers", o.pollers, "clients calling GetStatus and Ranks in a loop")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  app.add_option("--poll-interval-ms", o.poll_interval_ms, "pause between a poller's calls")
      ->check(CLI::Range(0, 60000))
      ->capture_default_str();
  app.add_option("--feed-ranks", o.feed_ranks,
                 "start the run with this world size and report for every rank (0: the run is "
                 "a real job's)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--feed-epochs", o.feed_epochs, "epochs reported with --feed-ranks")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--feed-steps", o.feed_steps, "steps per split and epoch with --feed-ranks")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--wait-for-run", o.wait_for_run_s, "seconds to wait for the run to start")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--max-seconds", o.max_seconds, "stop the load after this long in any case")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  app.add_option("--json", o.json_file, "also write the summary as JSON to this file");
  xfer::common::add_log_level_flag(app, log_level);
  if (auto exit_code = xfer::common::parse_flags(app, argc, argv)) return *exit_code;
  xfer::common::init_logging({"load", std::nullopt, log_level});
  o.client.call_deadline = std::chrono::seconds(30);
  o.client.reconnect_window = std::chrono::seconds(10);

  // SIGINT/SIGTERM end the load early (the summary is still printed).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  Counts counts;
  std::atomic<bool> stop{false};
  const auto start = Clock::now();
  try {
    client::validate(o.client);
    if (o.feed_ranks > 0) {
      client::CoordinatorClient starter(o.client);
      v1::StartRunRequest request;
      request.set_name(o.run);
      request.set_world_size(o.feed_ranks);
      // The first dataset served: the fake job streams nothing from it.
      request.set_dataset(starter.get_status().datasets(0));
      starter.start_run(request);
    } else if (!wait_for_run(o, stop)) {
      spdlog::error("run '{}' did not start within --wait-for-run {} s", o.run, o.wait_for_run_s);
      return 1;
    }
  } catch (const std::exception& e) {
    spdlog::error("cannot start the load: {}", e.what());
    return 1;
  }

  std::vector<std::unique_ptr<StuckWatcher>> stuck;
  for (int i = 0; i < o.stuck_watchers; ++i) stuck.push_back(std::make_unique<StuckWatcher>(o));
  std::mutex readers_mutex;
  std::vector<client::WatchReader*> readers;
  std::vector<std::thread> watchers, pollers;
  for (int i = 0; i < o.watchers; ++i) {
    watchers.emplace_back([&] { watch(o, counts, readers_mutex, readers); });
  }
  for (int i = 0; i < o.pollers; ++i) pollers.emplace_back([&] { poll(o, counts, stop); });

  // The watchers end with the run. A fake job ends it itself; a signal or
  // --max-seconds cancels the watchers.
  std::thread stopper([&] {
    timespec timeout{};
    timeout.tv_nsec = 100 * 1000 * 1000;
    const auto until = start + std::chrono::duration<double>(o.max_seconds);
    while (!stop && Clock::now() < until) {
      if (sigtimedwait(&stop_signals, nullptr, &timeout) > 0) break;
    }
    if (stop) return;  // the run ended: every stream ends by itself
    spdlog::warn("stopping the load before the run ended");
    std::lock_guard<std::mutex> lock(readers_mutex);
    for (auto* reader : readers) reader->cancel();
    for (auto& s : stuck) s->cancel();
  });
  if (o.feed_ranks > 0) {
    std::vector<std::thread> ranks;
    for (int rank = 0; rank < o.feed_ranks; ++rank) {
      ranks.emplace_back([&, rank] { feed_rank(o, rank, counts); });
    }
    for (auto& t : ranks) t.join();
    try {
      client::CoordinatorClient(o.client).end_run(o.run, v1::RUN_STATE_COMPLETED, "load feed done");
    } catch (const std::exception& e) {
      counts.error(std::string("EndRun: ") + e.what());
    }
  }
  for (auto& t : watchers) t.join();
  stop = true;
  stopper.join();
  for (auto& t : pollers) t.join();
  for (auto& s : stuck) s->drain(counts);

  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::string json = summary_json(o, counts, seconds);
  std::printf("%s\n", json.c_str());
  if (!o.json_file.empty()) std::ofstream(o.json_file) << json << "\n";
  return counts.errors == 0 ? 0 : 1;
}
